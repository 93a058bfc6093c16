/* Delivery status notifications: the builder of an RFC 3464 report
 * (multipart/report; report-type=delivery-status). Pure: no store, no loop;
 * the original message is read through a callback in blocks and the DSN goes
 * out through another, so that RET=FULL never needs the whole original in
 * memory (the prefix is built in memory, the original copied block by block,
 * then the closing delimiter). Any thread; nothing global.
 *
 * Layout (RFC 3464 2, RFC 6522 3):
 *   header: From: MAILER-DAEMON@hostname, To: the envelope sender, Subject,
 *           Date, Message-ID, Auto-Submitted: auto-replied (RFC 3834 5),
 *           MIME-Version, Content-Type: multipart/report
 *   1. text/plain: what happened, in words, one paragraph per recipient
 *   2. message/delivery-status: per-message and per-recipient fields
 *   3. text/rfc822-headers (the original header section), or with RET=FULL
 *      message/rfc822 (the whole original) when it is at most full_max
 *      octets (larger: headers only, as Postfix's bounce_size_limit does;
 *      the headers too at most full_max octets, cut at a line end).
 * Every line ends in CRLF and is at most 998 octets before it (RFC 5322
 * 2.1.1): long texts are folded at spaces, and a run without spaces longer
 * than DSN_HARD_LINE is cut. The original is copied as it is (it came over
 * SMTP: CRLF, lines within 1000 octets). */
#ifndef POSTERN_MIME_DSN_H
#define POSTERN_MIME_DSN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define DSN_FOLD_WIDTH 78  /* RFC 5322 2.1.1 SHOULD */
#define DSN_HARD_LINE 900  /* well below RFC 5322 2.1.1's 998 MUST */
#define DSN_DIAG_MAX 2000  /* a next hop's text beyond this is cut ("...") */
#define DSN_FULL_MAX 51200 /* default cap for RET=FULL (Postfix: 50000) */

enum dsn_action {
	DSN_FAILED,    /* RFC 3464 2.3.3 "failed" */
	DSN_DELAYED,   /* "delayed" */
	DSN_DELIVERED, /* "delivered" */
	DSN_RELAYED,   /* "relayed" */
};

struct dsn_rcpt {
	const char *rcpt;  /* Final-Recipient: rfc822;rcpt */
	const char *orcpt; /* ORCPT= as received ("rfc822;x+40y") or NULL */
	enum dsn_action action;
	const char *status;      /* "5.1.1"; NULL or malformed: X.0.0 of the action */
	const char *remote_mta;  /* Remote-MTA: dns;... or NULL */
	const char *diag;        /* the next hop's reply, or a local text; or NULL */
	/* diag is what the next hop replied (Diagnostic-Code: smtp;). false: diag
	 * is our own verdict (over the next hop's SIZE, SMTPUTF8 not offered,
	 * connection lost...), written "X-Postern;" even when remote_mta is set:
	 * RFC 3464 2.3.6 keeps "smtp" for the remote MTA's own words. */
	bool diag_remote;
	time_t last_attempt;     /* 0 = not written */
	time_t will_retry_until; /* written for DSN_DELAYED when not 0 */
};

struct dsn_report {
	const char *hostname; /* Reporting-MTA, From: MAILER-DAEMON@hostname */
	const char *to;       /* the original envelope sender */
	const char *queue_id; /* X-Postern-Queue-ID, or NULL */
	const char *envid;    /* ENVID= as received (xtext), or NULL */
	time_t arrival;       /* Arrival-Date; 0 = not written */
	time_t now;           /* Date: */
	const char *msgid;    /* Message-ID without <> */
	/* The boundary to start from; when it occurs in the generated text or
	 * in the part of the original that goes in, "=<n>" is appended
	 * (n = 1, 2...) until it does not (RFC 2046 5.1.1). */
	const char *boundary;
	bool full;         /* RET=FULL */
	uint64_t full_max; /* RET=FULL only up to this size; 0 = DSN_FULL_MAX */
	const struct dsn_rcpt *rcpt;
	size_t n_rcpt;
	/* The original cannot be read (its blob is gone): the DSN says so and
	 * has no third part (RFC 6522 3: optional); rd is never called. */
	bool no_original;
};

/* Reads up to n octets of the original at offset off: the count (0 at its
 * end), or -1 on error. */
typedef ssize_t dsn_read_fn(void *arg, void *p, size_t n, uint64_t off);
/* Writes n octets of the DSN: 0, or -1 on error. */
typedef int dsn_write_fn(void *arg, const void *p, size_t n);

/* The kind of the whole report from its recipients: DSN_FAILED if any
 * failed, else DSN_DELAYED if any is delayed, else DSN_DELIVERED. */
enum dsn_action dsn_kind(const struct dsn_rcpt *rcpt, size_t n);
/* "Undelivered Mail Returned to Sender", "Delayed Mail (still being
 * retried)", "Successful Mail Delivery Report". */
const char *dsn_subject(enum dsn_action kind);
/* RFC 3461 4: decodes "+XX" of xtext into out (xmalloc). NULL when s is not
 * valid xtext or decodes to a control or non-ASCII octet. */
char *dsn_xtext_decode(const char *s);

/* Writes the whole DSN for r (n_rcpt >= 1) through wr, reading the original
 * (size octets) through rd. 0, or -1 with *err_r (heap) when reading or
 * writing failed (nothing more is written then). */
int dsn_write(const struct dsn_report *r, dsn_read_fn *rd, void *rd_arg, uint64_t size,
              dsn_write_fn *wr, void *wr_arg, char **err_r);

#endif
