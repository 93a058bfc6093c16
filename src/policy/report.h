/* DMARC aggregate reports (RFC 7489 7.2, Appendix C): building and sending
 * them from the evaluations the store recorded (store_dmarc_record), and
 * reading the reports others send to us.
 *
 * Threads: a report run (report_run_start) gathers the rows, builds the XML,
 * compresses it and writes the messages' spools on a worker of the pool; the
 * loop thread only looks up the external-destination authorizations (RFC
 * 7489 7.1, through src/dns), resolves the recipients (one indexed row each)
 * and hands the messages to store_commit. The pure functions below (XML,
 * gzip, zip, parsing) run on any thread. */
#ifndef POSTERN_POLICY_REPORT_H
#define POSTERN_POLICY_REPORT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "store/store.h"

struct config;
struct dns;

/* Bounds of what is read (received reports) and built. */
#define REPORT_MAX_XML (16u << 20)        /* decompressed XML */
#define REPORT_MAX_RECORDS 100000         /* distinct records per report */

/* ---- building (pure) ---- */

/* XML character data for s (RFC 7489 Appendix C is XML 1.0): & < > " '
 * escaped, control characters other than TAB/LF/CR and invalid UTF-8 bytes
 * written as '?', so that hostile names cannot break the document. */
void report_xml_escape(struct buf *out, const char *s);

/* The rows of one policy domain, aggregated into records (one per distinct
 * source IP, disposition, evaluated results, reason, identifiers and auth
 * results) with their counts. */
struct report_agg;
struct report_agg *report_agg_new(const char *policy_domain);
/* Adds one row (of this policy domain); the policy published is the latest
 * row's. Rows beyond REPORT_MAX_RECORDS distinct records are counted into
 * nothing (and logged once). */
void report_agg_add(struct report_agg *a, const struct store_dmarc_row *row);
size_t report_agg_records(const struct report_agg *a);
/* The rua URIs of the latest row (space-separated). */
const char *report_agg_rua(const struct report_agg *a);
const char *report_agg_domain(const struct report_agg *a);
void report_agg_free(struct report_agg **ap);

struct report_meta {
	const char *org_name;  /* dmarc_report_org or the hostname */
	const char *email;     /* the report address */
	const char *report_id;
	time_t begin, end;
};
/* The document of RFC 7489 Appendix C for a, appended to out. */
void report_agg_xml(const struct report_agg *a, const struct report_meta *m, struct buf *out);

/* gzip (RFC 1952) of in, appended to out. 0 or -1. */
int report_gzip(const void *in, size_t n, struct buf *out);
/* Decoders for received reports: the decompressed bytes appended to out, at
 * most max of them (more is an error). 0, or -1 with *err_r (static text).
 * report_unzip takes the first entry of a zip archive (stored or deflated),
 * located through the central directory. */
int report_gunzip(const void *in, size_t n, size_t max, struct buf *out, const char **err_r);
int report_unzip(const void *in, size_t n, size_t max, struct buf *out, const char **err_r);

/* A rua URI (RFC 7489 6.2, 6.3): "mailto:addr[!size[k|m|g|t]]", the address
 * %-decoded into addr. *limit_r: the size limit in octets, 0 when none.
 * 0, or -1 if it is not a usable mailto URI. */
int report_rua_parse(const char *uri, char *addr, size_t addrsz, uint64_t *limit_r);

/* The MIME message of one report (RFC 7489 7.2.1.1), appended to out (CRLF
 * line ends). to: the recipients for the To field (comma-separated). */
struct report_mail {
	const char *from;       /* the report address */
	const char *to;
	const char *hostname;   /* for the Message-ID and the filename's receiver */
	const char *org_name;
	const char *policy_domain;
	const char *report_id;
	time_t begin, end, now;
	const void *gz;         /* the compressed XML */
	size_t gz_len;
};
void report_mail_build(const struct report_mail *m, struct buf *out);

/* ---- receiving (pure) ---- */

/* Looks for an aggregate report in a stored message: an attachment of type
 * application/gzip (or x-gzip), application/zip (x-zip-compressed), text/xml
 * or application/xml, or a file named *.xml.gz, *.zip, *.xml; the first one
 * is decoded and decompressed into xml. 1 found, 0 not a report, -1 a
 * report that cannot be decoded (*err_r, static text). */
int report_extract(const char *msg, size_t len, struct buf *xml, const char **err_r);
/* Parses a report's XML (libxml2: no network, no entity expansion, no DTD
 * loading, REPORT_MAX_XML bytes at most) and appends its description to out:
 *   org=... report_id=... domain=... begin=... end=... (UTC)
 *   policy p=... sp=... pct=... adkim=... aspf=...
 *   record source_ip=... count=... disposition=... dkim=... spf=... header_from=...
 * one line each, values with control characters replaced. 0, or -1 with
 * *err_r (static text) when it is not a well-formed aggregate report. */
int report_describe(const char *xml, size_t len, struct buf *out, const char **err_r);

/* ---- running ---- */

/* One report run: the rows with since <= time < until, one report per
 * policy domain with a rua, sent to each authorized address (RFC 7489 7.1:
 * an address outside the policy domain's organizational domain needs
 * "<policy-domain>._report._dmarc.<its domain>" TXT "v=DMARC1..."; a
 * temporary DNS failure skips that address for this run; "!size" limits
 * honoured). Local addresses are delivered to their mailboxes, remote ones
 * queued; kick(kick_arg) runs after a commit with remote recipients. At the
 * end the rows older than until - 2 intervals are deleted, and done(arg,
 * reports sent (messages committed), or -1 if the rows could not be read)
 * runs on the loop thread. cfg, dns, st and p must outlive the run. */
struct report_run;
/* sent: reports committed, -1 (rows unreadable) or REPORT_RUN_CANCELLED. */
#define REPORT_RUN_CANCELLED (-2)
typedef void report_done_cb(void *arg, int sent);
struct report_run *report_run_start(struct loop *l, struct pool *p, struct store *st,
				    struct dns *dns, const struct config *cfg, time_t since,
				    time_t until, void (*kick)(void *), void *kick_arg,
				    report_done_cb *done, void *arg);

/* Cancels a run (loop thread, e.g. at shutdown), so that nothing of it
 * outlives the daemon: its DNS queries are cancelled at once and the run
 * ends here; a step on a worker stops early and the run ends when its
 * completion comes back to the loop; commits already handed to the store
 * finish (those reports are stored: the run ends normally). done(arg,
 * REPORT_RUN_CANCELLED) runs when it ends unsent, possibly inside this
 * call. r must not be used after done. */
void report_run_cancel(struct report_run *r);

/* The daemon's timer: a run every dmarc_report_interval (when dmarc_reports
 * is on), over the interval that just ended; with an interval of one day
 * the periods are UTC days (00:00:00 to 24:00:00). A run still going when
 * the next is due makes that one wait.
 * The end of the last period reported is kept in the store (setting
 * "dmarc_report_end"): at start, periods that ended since (the daemon was
 * down) are reported at once, in one run with one report per policy domain
 * and period (RFC 7489 7.2: reports cover common, aligned periods, so each
 * missed period keeps its own). A first start reports nothing earlier. */
struct report_timer;
struct report_timer *report_timer_new(struct loop *l, struct pool *p, struct store *st,
				      struct dns *dns, const struct config *cfg,
				      void (*kick)(void *), void *kick_arg);
/* Shutdown, from the drain (loop running): no new run; the one in flight
 * is cancelled (report_run_cancel). Returns 1 while that run is still
 * ending (call again on the next tick), 0 when nothing is left. */
int report_timer_stop(struct report_timer *rt);
/* Stops (as report_timer_stop) and frees the timer; a run still ending
 * (the drain was cut short) frees it when it ends. */
void report_timer_free(struct report_timer **tp);
/* The period that ends at or before now for interval (seconds): [*begin_r,
 * *end_r). Aligned to multiples of interval since the epoch (UTC days for
 * 86400). */
void report_period(time_t now, unsigned interval, time_t *begin_r, time_t *end_r);

#endif
