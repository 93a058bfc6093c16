/* Delivery status notifications (RFC 3464, RFC 3461) for queued mail: a
 * bounce for recipients that failed permanently or expired, a "delayed"
 * notice, a success notice when NOTIFY=SUCCESS asked and the next hop did not
 * relay DSN. One DSN per message and kind, listing its recipients:
 * multipart/report; report-type=delivery-status, a plain-text part saying in
 * words what happened, the message/delivery-status part, and the original
 * headers (text/rfc822-headers) or, with RET=FULL, the whole message
 * (message/rfc822). The DSN is sent from the null sender (<>) to the
 * original envelope sender: into its INBOX when it is a local account,
 * otherwise queued for outbound delivery. Never to the null sender: a DSN
 * about a DSN is dropped and logged (RFC 3461 6.2, RFC 5321 6.1). */
#ifndef POSTERN_QUEUE_BOUNCE_H
#define POSTERN_QUEUE_BOUNCE_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/pool.h"
#include "store/store.h"

enum bounce_action {
	BOUNCE_FAILED,    /* Action: failed (5xx, or expired after queue_lifetime) */
	BOUNCE_DELAYED,   /* Action: delayed (still retrying) */
	BOUNCE_DELIVERED, /* Action: delivered (NOTIFY=SUCCESS, next hop without DSN) */
	BOUNCE_RELAYED,   /* Action: relayed (NOTIFY=SUCCESS, to a non-DSN next hop) */
};

struct bounce_rcpt {
	const char *rcpt;        /* the address tried */
	const char *orcpt;       /* DSN ORCPT= as received ("rfc822;x@y") or NULL */
	const char *notify;      /* DSN NOTIFY= as received or NULL (= FAILURE,DELAY) */
	enum bounce_action action;
	const char *status;      /* enhanced status "5.1.1", "4.4.1" */
	const char *remote_mta;  /* "mx.example.org" or NULL */
	const char *diag;        /* the next hop's reply, or a local text, or NULL */
	bool diag_remote;        /* diag is the next hop's reply (not our verdict) */
	time_t last_attempt;     /* 0 = unknown */
	time_t will_retry_until; /* for delayed: when the queue gives up */
};

struct bounce_msg {
	const char *queue_id;   /* for logs and the DSN's X-Postern-Queue-ID */
	const char *mail_from;  /* envelope sender of the original, "" = null sender */
	const char *envid;      /* ENVID= or NULL */
	const char *ret;        /* "FULL" / "HDRS" / NULL (= HDRS) */
	time_t received;        /* Arrival-Date */
	int fd;                 /* the original message, read with pread; not closed */
	uint64_t size;
	const struct bounce_rcpt *rcpt;
	size_t n_rcpt;
};

/* Builds and commits the DSN for m: only the recipients whose NOTIFY asks for
 * their action (no NOTIFY: FAILURE and DELAY; NEVER: none) are listed; if none
 * is left, or the sender is the null sender (logged), nothing is sent and
 * cb(arg, 0) follows. The message is read and the DSN built on a worker of p
 * (never on the loop); then it is committed (store_commit: local sender into
 * INBOX, remote sender as a queue entry, then queue_kick through kick(kick_arg)
 * when not NULL). hostname: the Reporting-MTA and the DSN's From:
 * (MAILER-DAEMON@hostname). m and what it points to are copied.
 * cb(arg, result) on the loop: 0 (DSN durable, or nothing to send), -1 (not
 * stored: the caller keeps its entries and tries again later). */
typedef void bounce_cb(void *arg, int result);
void bounce_send(struct store *st, struct pool *p, const char *hostname,
		 const struct bounce_msg *m, void (*kick)(void *kick_arg), void *kick_arg,
		 bounce_cb *cb, void *arg);

/* SRS (policy/srs.h): a DSN whose recipient (the original's envelope sender)
 * is an SRS address of one of our domains goes to the address it decodes to
 * (the original sender of the forwarded mail). secrets: every one verifies;
 * they must stay valid until bounce_set_srs(NULL, 0, 0). Process-wide, set
 * by the daemon at start; unset: such a DSN is routed like any other. */
void bounce_set_srs(char **secrets, size_t n, unsigned max_age);

#endif
