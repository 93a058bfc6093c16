/* Private to src/smtp: the server, the session and the transaction.
 *
 * Session states (enum smtp_state):
 *   PREGREET  connected, greeting delayed (MX); any input is a violation
 *   TLSWAIT   implicit TLS handshake or STARTTLS in progress; input ignored
 *   CMD       reading command lines
 *   AUTHLINE  reading a SASL response line (after 334)
 *   DATA      streaming DATA content into the decoder
 *   BDAT      streaming (or discarding) a BDAT chunk of exact size
 * Parked on an async step (password check, commit, delay) and closing are
 * the core session's phases (core/session.h): the protocol state stays what
 * it was (CMD) while parked and is not looked at once closing.
 * Which commands are valid where is expressed by flags in the command table
 * (cmd.c) and enforced by smtp_dispatch() alone. */
#ifndef POSTERN_SMTP_SESSION_H
#define POSTERN_SMTP_SESSION_H
#include <stdbool.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "core/conn.h"
#include "core/session.h"
#include "smtp/data.h"
#include "smtp/parse.h"
#include "smtp/server.h"

struct smtp_session;

/* A client address that passed the pregreet test, and until when it may skip it. */
struct smtp_pregreet_pass {
	char ip[64];
	uint64_t until_ms;
};

struct smtp_server {
	struct loop *l;
	struct pool *workers;
	struct store *st;
	const struct config *cfg;
	SSL_CTX *tls;
	struct session_list sessions;
	uint32_t txseq;
	struct smtp_pregreet_pass *pregreet_passed; /* SMTP_PREGREET_SLOTS, direct-mapped */
	struct auth_login *login; /* the login service, shared by all protocols */
	struct dns *dns;          /* NULL: no reverse DNS (Received says "unknown") */
	struct policy *policy;    /* NULL: no sender authentication (smtp_server_set_policy) */
	struct filter *filter;    /* NULL: no filtering (smtp_server_set_filter) */
	bool stopping; /* smtp_server_shutdown was called */
	/* smtp_server_set_kick: told after a commit that queued remote recipients */
	void (*kick)(void *arg);
	void *kick_arg;
	/* smtp_server_set_srs: SRS secrets (the first signs, all verify), NULL
	 * when srs is off; the caller's, they outlive the server */
	char **srs_secrets;
	size_t n_srs;
	unsigned srs_max_age; /* seconds */
};

enum smtp_state {
	SMTP_S_PREGREET,
	SMTP_S_TLSWAIT,
	SMTP_S_CMD,
	SMTP_S_AUTHLINE,
	SMTP_S_DATA,
	SMTP_S_BDAT,
};

/* A RCPT resolved and waiting for the filter's answer (filter_rcpt). */
struct smtp_pending_rcpt {
	struct smtp_rcpt_args r; /* owned */
	struct store_targets t;  /* local targets (may be empty) */
	char *relay;             /* a remote address to queue to (SRS, submission), or NULL */
	char *domain;            /* for policy_rcpt / policy_forward */
	bool local;              /* resolved in a local domain: t holds its targets */
};

struct smtp_rcpt {
	char *addr;
	char *notify;
	char *orcpt;
};

/* One mail transaction: allocated at MAIL, freed at its end (RSET, EHLO,
 * STARTTLS, the end of data, or the session's end). */
struct smtp_tx {
	char txid[24];
	uint64_t start_ms;
	char *from; /* "" for <> */
	bool smtputf8;
	bool body8;
	bool has8bit; /* the content has octets >= 0x80 (for the outbound queue) */
	char *ret;
	char *envid;
	struct smtp_rcpt *rcpts;
	size_t n_rcpts;
	int64_t *user_ids; /* local accounts, deduplicated */
	size_t n_users;
	struct store_remote_rcpt *remote; /* strings owned (cast away const on free) */
	size_t n_remote;
	/* content */
	struct store_spool *sp;
	struct smtp_data dec;
	bool data_used; /* DATA was given: BDAT no longer allowed */
	bool bdat_used; /* BDAT was given: DATA no longer allowed */
	bool too_big;
	bool write_failed;
	bool spool_wait; /* parked (busy held) until the spool's write in flight ends */
	/* sender authentication (policy.h): MAIL to the end of data */
	struct policy_tx *pol;
	bool content_done; /* the data ended: policy's last bytes never pause the session */
	bool pol_wait; /* busy held for policy_mail/policy_end's callback */
	/* spam, abuse and virus filtering (filter.h): MAIL to the end of data */
	struct filter_tx *flt;
	bool flt_wait;  /* busy held for filter_mail/rcpt/end's callback */
	bool flt_pause; /* busy held: the filter paused the content (filter_content) */
	/* MX: incoming X-Spam-Status / X-Spam-Report fields are removed before
	 * the spool and the filter (a sender must not forge postern's verdict
	 * for users' rules or `postern mail explain`); tx.c strip_feed */
	struct {
		bool on;
		int state;
		bool dropping; /* the current field is dropped (continuations too) */
		size_t hlen;
		char hold[32]; /* the start of a field, until its name is known */
		size_t dropped;
	} strip;
	struct smtp_pending_rcpt *prcpt; /* the RCPT filter_rcpt answers */
	/* policy's end-of-data verdict, kept for the commit after filter_end
	 * (strings live until policy_tx_free) */
	bool pol_done, pol_junk;
	const char *pol_prefix;
	size_t pol_prefix_len;
	const char *pol_queue_from;
	char *ins_msgid; /* header lines to insert (submission) */
	char *ins_date;
	int result; /* reply code logged, 0 while running */
	uint64_t size_declared; /* MAIL FROM SIZE= (RFC 1870), 0 if none */
};

/* Owned by the core session's lifetime rules (core/session.h): freed when the
 * conn is gone and no async step holds it (base.busy). */
struct smtp_session {
	struct session base; /* first: the core's callbacks hand back &s->base */
	struct smtp_server *srv; /* NULL once unlinked (closed, or the server freed) */
	enum smtp_role role;
	enum smtp_state state;
	/* base.timer: the pre-greet delay, then the idle timeout;
	 * base.delay: the delayed reply to a failed AUTH */
	char *helo;
	bool esmtp;
	/* policy's SPF result for this HELO name (policy_tx_helo_spf), for the
	 * next transactions; forgotten with the name */
	bool helo_spf_known;
	int helo_spf;
	char *auth_user;
	int errors;
	struct sasl_server sasl; /* the AUTH exchange (state AUTHLINE) */
	/* BDAT chunk being read */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_discard;
	uint64_t bdat_size; /* octets announced by the current BDAT */
	bool bdat_abort;    /* after the discarded chunk, end the transaction */
	int bdat_code; /* reply to give after a discarded chunk */
	const char *bdat_ecode;
	const char *bdat_text;
	struct smtp_tx *tx;
	struct filter_conn *fc; /* the filter's view of the connection, or NULL */
	/* The client's forward-confirmed reverse name (RFC 5321 4.4 Received
	 * "from" clause): looked up from connect; NULL while unknown. */
	struct dns_query *rdns_q;
	char *rdns;
	bool rdns_temp; /* no name: the lookup failed temporarily (iprev temperror) */
	bool rdns_wait; /* the greeting waits (a short bound) for rdns_q */
	bool refused;   /* greeted 554 (a blocked client): only QUIT now (RFC 5321 3.1) */
};

static inline struct smtp_session *smtp_session_of(struct session *base)
{
	return (struct smtp_session *)base;
}
_Static_assert(offsetof(struct smtp_session, base) == 0, "base must come first");

/* server.c */
void smtp_reply(struct smtp_session *s, int code, const char *ecode, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
/* Multi-line reply: "code-line\r\n" ... "code last\r\n" (n >= 1). */
void smtp_reply_lines(struct smtp_session *s, int code, const char *const *lines, size_t n);
/* Closing, parking and async holds: session_close(), session_park(),
 * session_unpark() (with the state back to CMD), session_release() on
 * &s->base. */
void smtp_set_state(struct smtp_session *s, enum smtp_state st);
/* The end of an async step that parked s (its reply already given): back to
 * reading commands, or, once the server is stopping, 421 and close. */
void smtp_session_resume(struct smtp_session *s);
void smtp_reset_session(struct smtp_session *s);
bool smtp_auth_allowed(const struct smtp_session *s);

/* tx.c */
void smtp_tx_new(struct smtp_session *s);
void smtp_tx_free(struct smtp_session *s);
/* Frees tx->prcpt (a RCPT waiting for the filter), if any. */
void smtp_pending_rcpt_free(struct smtp_tx *tx);
/* Opens the spool, writes the trace fields, starts the decoder. 0 or -1. */
int smtp_content_start(struct smtp_session *s, enum smtp_data_mode mode);
/* Logs the transaction's line once (result: the reply code just given, or
 * -1 = aborted). Called after the reply: a code the session could no longer
 * send (conn gone, or closing) is logged as "unsent-CODE". */
void smtp_tx_log(struct smtp_session *s, int result);

/* cmd.c */
void smtp_dispatch(struct smtp_session *s, char *line);
/* A command line that cannot be parsed (unknown verb, NUL byte): the reply;
 * if it is a BDAT line all the same ("BDAT\t5", "BDAT 5\0"), a chunk of
 * unknown size follows, so the connection is closed (421) too. */
void smtp_bad_command(struct smtp_session *s, const char *line, const char *text);
void smtp_auth_line(struct smtp_session *s, char *line);
/* tx.c: the data ended (DATA terminator / BDAT LAST) / a chunk was read */
void smtp_data_done(struct smtp_session *s);
void smtp_bdat_chunk_done(struct smtp_session *s);

#endif
