/* A milter client: the Sendmail milter protocol (version 6, as Postfix
 * speaks it: libmilter's SMFIC_* commands and SMFIR_* replies, 4-byte
 * big-endian lengths), so that rspamd's milter proxy, OpenDKIM,
 * clamav-milter and others plug in. Every configured milter (milters, in
 * order) talks to one SMTP transaction over its own non-blocking
 * connection on the loop: connect, helo, mail, rcpt steps as they happen,
 * header fields and body chunks (SMFIC_BODY, at most 64 KiB each) as the
 * message streams, end of message at the end of data. Steps the milter
 * declined in negotiation (SMFIP_NO*) are skipped; SMFIP_NR_* replies not
 * awaited. Each step is bounded by milter_timeout; a milter down, late or
 * breaking the protocol is handled per milter_failure. Owned by
 * src/filter/milter.c (+ milter_proto.c, pure and fuzzed). */
#ifndef POSTERN_FILTER_MILTER_H
#define POSTERN_FILTER_MILTER_H
#include <stdbool.h>
#include <stddef.h>

struct loop;
struct config;
struct buf;

struct milter_set;
/* NULL when milters is empty; with *err_r when an entry cannot be parsed. */
struct milter_set *milter_set_new(struct loop *l, const struct config *cfg, char **err_r);
void milter_set_free(struct milter_set **mp);

enum milter_action {
	MILTER_CONTINUE,   /* go on (SMFIR_CONTINUE / ACCEPT / a skipped step) */
	MILTER_REJECT,     /* 5xx: code/ecode/text (SMFIR_REJECT: 550 5.7.1) */
	MILTER_TEMPFAIL,   /* 4xx (SMFIR_TEMPFAIL: 451 4.7.1; a failure per milter_failure) */
	MILTER_DISCARD,    /* accept and drop silently (SMFIR_DISCARD) */
};
struct milter_reply {
	enum milter_action action;
	int code;          /* the SMTP reply for REJECT/TEMPFAIL (SMFIR_REPLYCODE or the default) */
	const char *ecode;
	const char *text;
};
typedef void milter_cb(void *arg, const struct milter_reply *r);

/* A header change asked for at the end of message. */
enum milter_edit_kind {
	MILTER_ADD,    /* SMFIR_ADDHEADER: append to the header section */
	MILTER_INSERT, /* SMFIR_INSHEADER: at index (0 = first) */
	MILTER_CHANGE, /* SMFIR_CHGHEADER: the index-th (1-based) field of that name
			* gets value (which may be empty); added if there is none */
	MILTER_DELETE, /* SMFIR_CHGHEADER with no value at all (libmilter's
			* smfi_chgheader with NULL): that field goes */
};
struct milter_edit {
	enum milter_edit_kind kind;
	unsigned index;
	char *name, *value;
};
struct milter_result {
	struct milter_reply reply;
	bool quarantine;           /* SMFIR_QUARANTINE: deliver to Junk */
	const char *quarantine_why;
	struct milter_edit *edits; /* in the order received, every milter's */
	size_t n_edits;
};
typedef void milter_end_cb(void *arg, const struct milter_result *r);

struct milter_conn_info {
	const char *ip;
	unsigned port;
	const char *rdns;  /* may be NULL ("[ip]" is sent) */
	const char *helo;  /* may be NULL */
	const char *txid;  /* the queue id macro {i} */
	const char *auth_user; /* {auth_authen}, may be NULL */
};
struct milter_tx;
/* At MAIL: connects to every milter and negotiates (SMFIC_OPTNEG). */
struct milter_tx *milter_tx_new(struct milter_set *m, const struct milter_conn_info *i);
/* The connect, helo and mail steps (SMFIC_CONNECT, HELO, MAIL with the
 * ESMTP arguments). true: cb will run once later; false: nothing to wait for
 * (every milter skips these, or none is connected). */
bool milter_mail(struct milter_tx *t, const char *from, milter_cb *cb, void *arg);
bool milter_rcpt(struct milter_tx *t, const char *rcpt, milter_cb *cb, void *arg);
/* The message's bytes in order (SMFIC_DATA first, then headers, EOH, body
 * chunks). true: pause input until resume(arg) (once). */
bool milter_feed(struct milter_tx *t, const char *p, size_t n, void (*resume)(void *arg),
		 void *arg);
/* SMFIC_BODYEOB: cb once, later. */
void milter_end(struct milter_tx *t, milter_end_cb *cb, void *arg);
/* SMFIC_ABORT/QUIT, closes, no callback after this. */
void milter_tx_free(struct milter_tx **tp);

/* Applies edits to a complete message (pure; runs on a worker): writes the
 * new message into out (header fields changed, inserted, deleted; the body
 * unchanged). 0, or -1 when msg has no header section to edit. */
int milter_apply_edits(const char *msg, size_t len, const struct milter_edit *e, size_t n,
		       struct buf *out);

#endif
