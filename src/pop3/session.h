/* Private to src/pop3: the server and the session.
 *
 * RFC 1939 states: AUTHORIZATION (s->maildrop == NULL), TRANSACTION
 * (s->maildrop != NULL), UPDATE (after QUIT, while the expunge runs).
 * Input states (enum pop3_state):
 *   TLSWAIT   implicit TLS handshake or STLS in progress; input ignored
 *   CMD       reading command lines
 *   AUTHLINE  reading a SASL response line (after "+ ")
 *   SEND      streaming a RETR/TOP/LIST/UIDL response; input parked
 *             (session_park) until it ends
 * Parked on an async step (password check, failed-login delay, expunge at
 * QUIT) and closing are the core session's phases (core/session.h): the
 * state stays what it was while parked and is not looked at once closing.
 * Which commands are valid where is expressed by flags in the command table
 * (cmd.c) and enforced by pop3_dispatch() alone. */
#ifndef POSTERN_POP3_SESSION_H
#define POSTERN_POP3_SESSION_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth/sasl.h"
#include "core/conn.h"
#include "core/session.h"
#include "pop3/parse.h"
#include "pop3/server.h"

struct pop3_session;
struct pop3_read; /* retr.c */
struct buf;

/* Appends the next lines of a listing (CRLF-terminated, not starting with
 * "."), a few KiB at most, advancing s->send_next; returns true when the
 * listing is complete. */
typedef bool pop3_fill_fn(struct pop3_session *s, struct buf *out);

struct pop3_server {
	struct loop *l;
	struct pool *workers;
	struct store *st;
	const struct config *cfg;
	SSL_CTX *tls;
	struct session_list sessions;
	/* Maildrop locks (RFC 1939 8: one session per maildrop): canonical
	 * (lower-case) user names of sessions in TRANSACTION or UPDATE. */
	char **locks;
	size_t n_locks, cap_locks;
	struct auth_login *login; /* the login service, shared by all protocols */
};

enum pop3_state {
	POP3_S_TLSWAIT,
	POP3_S_CMD,
	POP3_S_AUTHLINE,
	POP3_S_SEND,
};

/* The snapshot of INBOX taken at login: message n is v[n - 1]. */
struct pop3_msg {
	uint32_t uid;
	bool deleted;
	uint64_t size;
};
struct pop3_maildrop {
	char *user;  /* canonical: also the lock key */
	uint32_t uidvalidity;
	struct pop3_msg *v;
	size_t n;
	size_t n_deleted;
	uint64_t deleted_bytes;
	uint64_t total_bytes;
};

/* Owned by the core session's lifetime rules (core/session.h): freed when the
 * conn is gone and no async step holds it (base.busy). */
struct pop3_session {
	struct session base; /* first: the core's callbacks hand back &s->base */
	/* NULL once unlinked: at the session's end (it stays listed, holding its
	 * maildrop lock, while an async step runs after the conn went away), or
	 * when the server is freed */
	struct pop3_server *srv;
	enum pop3_role role;
	enum pop3_state state;
	/* base.timer: the idle timeout; base.delay: the delayed reply to a
	 * failed login */
	int errors;
	int auth_failures; /* in this session */
	bool utf8;         /* RFC 6856 UTF8 given */
	bool quitting;     /* UPDATE state */
	/* A multi-line response streamed as the client reads (retr.c): RETR/TOP
	 * read the blob send_fd through dot; a listing calls send_fill. RETR/TOP
	 * read the blob on a worker, one chunk at a time, into send_rd
	 * (allocated for the response, freed at its end); while send_reading,
	 * the worker owns send_fd and send_rd, and base.busy holds the session.
	 * A listing sets send_reading too while its next slice is posted to the
	 * loop. (Ordered so that an idle session has no padding to pay for.) */
	bool send_reading;
	int send_fd;
	struct pop3_read *send_rd;
	char *user_arg;    /* USER given, waiting for PASS */
	struct sasl_server sasl; /* the AUTH exchange (state AUTHLINE) */
	struct pop3_maildrop *maildrop; /* TRANSACTION state */
	char *auth_user;                /* for the log */
	struct pop3_dot dot;
	pop3_fill_fn *send_fill;
	size_t send_next; /* the listing's cursor: index into maildrop->v */
	/* for the session's log line */
	unsigned n_retr, n_top, n_dele;
	uint64_t bytes_out;
	const char *result;
};

static inline struct pop3_session *pop3_session_of(struct session *base)
{
	return (struct pop3_session *)base;
}
_Static_assert(offsetof(struct pop3_session, base) == 0, "base must come first");

/* server.c */
/* "+OK text" or "-ERR [code] text" (code may be NULL). -ERR replies for
 * client mistakes count toward pop3_max_errors (count_error). */
void pop3_reply(struct pop3_session *s, bool ok, const char *code, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
/* A -ERR that is not the client's protocol error (auth failure, IN-USE...). */
void pop3_reply_err(struct pop3_session *s, const char *code, const char *fmt, ...)
	PRINTF_LIKE(3, 4);
/* "+OK first" then body (lines already CRLF-terminated and dot-stuffed),
 * then ".\r\n". */
void pop3_reply_multi(struct pop3_session *s, const char *first, const struct buf *body);
/* Raw bytes of a multi-line response in progress (retr.c). */
void pop3_send_raw(struct pop3_session *s, const void *p, size_t n);
/* Closing, parking and async holds: session_close(), session_park(),
 * session_unpark() (with the state back to CMD), session_release() on
 * &s->base. */
void pop3_set_state(struct pop3_session *s, enum pop3_state st);
bool pop3_creds_allowed(const struct pop3_session *s);
/* Lock table: 0 locked for s, -1 in use. */
int pop3_lock(struct pop3_server *srv, const char *user);
void pop3_unlock(struct pop3_server *srv, const char *user);
void pop3_maildrop_free(struct pop3_maildrop **mp);
/* Closes if the session reached pop3_max_errors. */
void pop3_check_errors(struct pop3_session *s);

/* cmd.c */
void pop3_dispatch(struct pop3_session *s, char *line);
void pop3_auth_line(struct pop3_session *s, char *line);

/* retr.c: streams message n (1-based) of the maildrop; top: TOP's line count. */
void pop3_send_message(struct pop3_session *s, size_t n, bool top, uint64_t lines);
/* retr.c: "+OK first", then fill's lines as the client reads, then ".". */
void pop3_send_listing(struct pop3_session *s, const char *first, pop3_fill_fn *fill);
/* retr.c: the client read the output down (ops->drained): produce more. */
void pop3_send_drained(struct pop3_session *s);
void pop3_send_abort(struct pop3_session *s);

#endif
