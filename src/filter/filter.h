/* Spam, abuse and virus filtering for the SMTP server: the orchestration of
 * the connection stage (screen.h), greylisting (grey.h), rate and duplicate
 * limits (limit.h), virus scanning (clamd.h), dangerous attachments
 * (attach.h), milters (milter.h) and the statistical filter (bayes.h).
 * Owned by src/filter/filter.c. Like src/policy, the SMTP server calls it at
 * the stage that knows each answer, and nothing here blocks the loop.
 *
 * Stages (MX = the MX listener, not authenticated; SUB = authenticated
 * submission; trusted = a client in trusted_networks):
 *   connect   MX, not trusted: local block/allow lists and the per-IP
 *             connection rate decide at once; DNSBL lookups start and run
 *             during the pregreet wait. drop: 554 greeting.
 *   MAIL      rate limits (messages per hour: user for SUB, client IP for
 *             MX); milters' connect/helo/mail steps.
 *   RCPT      a blocked client (dnsbl_action = enforce) gets 550 5.7.1 for
 *             every recipient (RCPT waits for the DNSBL answers, at most
 *             dns_timeout_ms); recipient rates; milters' rcpt step.
 *   content   every byte (as stored) to clamd, the milters and the duplicate
 *             fingerprint, streaming; a consumer that falls behind pauses the
 *             session's input (filter_content returns true) until resumed.
 *   end       after policy's verdict (SPF/DKIM/DMARC results are signals):
 *             clamd's answer (554 5.7.0 with the signature name), attachments
 *             (554 5.7.1), the milters' end-of-message actions, greylisting
 *             (MX: 451 4.7.1), the duplicate check (451 4.7.1), then the
 *             statistical filter per local recipient: score >= the reject
 *             threshold refuses (550 5.7.1), >= the junk threshold files into
 *             Junk; the X-Spam-* fields join the prefix.
 *   after 250 filter_delivered(): rates and duplicates count the message,
 *             greylisting learns the network, reputations are updated. */
#ifndef POSTERN_FILTER_FILTER_H
#define POSTERN_FILTER_FILTER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct dns;
struct pool;
struct store;
struct config;
struct store_spool;

struct filter;
/* dns may be NULL (no DNSBL). Starts nothing that needs the loop until the
 * first connection. NULL with *err_r (a bad dnsbl_sites, milters,
 * trusted_networks entry). */
struct filter *filter_new(struct loop *l, struct dns *dns, struct pool *pool, struct store *st,
			  const struct config *cfg, char **err_r);
/* Stops timers, closes the clamd and milter connections; every callback
 * still pending is dropped (the sessions are gone by then). */
/* Shutdown's drain: starts no new background work; the number of steps
 * still in flight (the spam trainer's batch), which the drain waits for. */
int filter_stop(struct filter *f);
void filter_free(struct filter **fp);

/* A reply decided by the filter. code 0: go on. */
struct filter_verdict {
	int code;
	const char *ecode;
	const char *text;
};
typedef void filter_cb(void *arg, const struct filter_verdict *v);

/* ---- connection ---- */
struct filter_conn;
/* At accept. mx: the MX listener. Counts the connection (rate) and starts
 * the DNSBL lookups for an untrusted MX client. v (valid until
 * filter_conn_free) is the greeting's verdict: code 0 greet; 421 4.7.0
 * (connection rate); 554 5.7.1 (blocked, dnsbl_action = drop; the local
 * block list is known at once, DNSBL answers when they come: the greeting
 * waits for them only within the pregreet delay). */
struct filter_conn *filter_conn_new(struct filter *f, const char *ip, bool mx,
				    struct filter_verdict *v);
/* After the pregreet delay (or at once when there is none): the greeting's
 * verdict with what the DNSBL answered by now (dnsbl_action = drop). */
void filter_conn_greet(struct filter_conn *c, struct filter_verdict *v);
void filter_conn_free(struct filter_conn **cp);

/* ---- transaction ---- */
struct filter_tx_info {
	const char *txid;
	const char *helo;      /* may be NULL */
	const char *rdns;      /* may be NULL */
	const char *auth_user; /* NULL: not authenticated */
	const char *mail_from; /* "" for <> */
	bool tls;
};
struct filter_tx;
/* At MAIL. Strings copied. */
struct filter_tx *filter_tx_new(struct filter_conn *c, const struct filter_tx_info *i);
/* true: cb will run once (never inside this call) with MAIL's reply (code
 * 0: 250); false: *v holds it now. */
bool filter_mail(struct filter_tx *t, struct filter_verdict *v, filter_cb *cb, void *arg);
/* A recipient (before it is accepted): user_id its local account (0 when
 * remote). Same contract as filter_mail. */
bool filter_rcpt(struct filter_tx *t, const char *rcpt, int64_t user_id,
		 struct filter_verdict *v, filter_cb *cb, void *arg);
/* The stored bytes, in order (what the spool receives). Returns true when
 * the session must stop reading its input until resume(arg) runs (once). */
bool filter_content(struct filter_tx *t, const char *p, size_t n, void (*resume)(void *arg),
		    void *arg);

/* What policy (src/policy) concluded, as signals. */
struct filter_auth {
	const char *spf;      /* RFC 8601 result words: "pass", "fail", ... or NULL */
	const char *dkim;     /* the best DKIM result, or NULL */
	const char *dmarc;    /* "pass", "fail", "none", ... or NULL */
	const char *from_domain; /* RFC5322.From domain, or NULL */
	bool dmarc_aligned;   /* DMARC passed: from_domain is authenticated */
	bool dmarc_enforced;  /* DMARC failed and the domain's policy was applied
			       * (p=quarantine: everyone's Junk already) */
};
/* The end-of-data verdict. code 0: store, with: */
struct filter_end_verdict {
	int code;
	const char *ecode;
	const char *text;
	const char *prefix;  /* header fields to add (X-Spam-*, milters'), may be "" */
	size_t prefix_len;
	const bool *junk;    /* per local recipient (the order of filter_rcpt's
			      * user_ids), or NULL: none to Junk */
	bool rewritten;      /* the spool was rewritten (a milter changed or
			      * deleted header fields): commit it as it is now */
	bool discard;        /* a milter said DISCARD: answer 250, store nothing */
	bool quarantine;     /* a milter said QUARANTINE: every local recipient
			      * gets it in Junk (store_delivery.junk), remote ones
			      * are queued held (store_delivery.hold) */
};
typedef void filter_end_cb(void *arg, const struct filter_end_verdict *v);
/* The last byte is in (before policy's end, whose DKIM and DMARC work then
 * overlaps these): ends clamd's stream now and, when no milter can edit the
 * message, starts the worker step over sp (the complete spool, as for
 * filter_end; filter_tx_users first). Optional; filter_end does it
 * otherwise. No callback from it. */
void filter_data_end(struct filter_tx *t, struct store_spool *sp);
/* After the last byte and policy's verdict. sp: the complete spool (read,
 * and rewritten for a milter's header changes, on a worker; not written,
 * committed or discarded by the caller until cb). cb once, never inside. */
void filter_end(struct filter_tx *t, const struct filter_auth *a, struct store_spool *sp,
		filter_end_cb *cb, void *arg);
/* The local accounts the message goes to (the caller's deduplicated
 * user_ids, in its order; copied): before filter_end. The thresholds, the
 * statistical filter and filter_end_verdict.junk are per entry of it. */
void filter_tx_users(struct filter_tx *t, const int64_t *user_ids, size_t n);
/* true while filter_end's worker step (store_spool_filter on the caller's
 * spool) is in flight: the transaction must not be freed before it ends
 * (at shutdown such a wait is short and is let finish). */
bool filter_tx_worker_busy(const struct filter_tx *t);
/* The message was committed (250): counts for rates, duplicates,
 * greylisting and reputation. */
void filter_delivered(struct filter_tx *t);
/* Cancels what is pending (no callback after this) and frees. */
void filter_tx_free(struct filter_tx **tp);

#endif
