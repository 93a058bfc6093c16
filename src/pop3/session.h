/* Private to src/pop3: the server and the session.
 *
 * RFC 1939 states: AUTHORIZATION (s->maildrop == NULL), TRANSACTION
 * (s->maildrop != NULL), UPDATE (after QUIT, while the expunge runs).
 * Input states (enum pop3_state):
 *   TLSWAIT   implicit TLS handshake or STLS in progress; input ignored
 *   CMD       reading command lines
 *   AUTHLINE  reading a SASL response line (after "+ ")
 *   WAIT      parked on an async step (password check, failed-login delay,
 *             expunge at QUIT); the conn is paused, the step resumes it
 *   SEND      streaming a RETR/TOP response; input paused until it ends
 *   CLOSING   pop3_close() was called; nothing more is processed
 * Which commands are valid where is expressed by flags in the command table
 * (cmd.c) and enforced by pop3_dispatch() alone. */
#ifndef POSTERN_POP3_SESSION_H
#define POSTERN_POP3_SESSION_H
#include <stdbool.h>
#include <stdint.h>

#include "auth/throttle.h"
#include "core/conn.h"
#include "pop3/parse.h"
#include "pop3/server.h"

struct pop3_session;

struct pop3_server {
	struct loop *l;
	struct pool *workers;
	struct store *st;
	const struct config *cfg;
	SSL_CTX *tls;
	struct throttle *fail_ip;   /* failed logins per client IP */
	struct throttle *fail_user; /* failed logins per account name */
	struct pop3_session *sessions; /* doubly linked */
	int nsessions;
	/* Maildrop locks (RFC 1939 8: one session per maildrop): canonical
	 * (lower-case) user names of sessions in TRANSACTION or UPDATE. */
	char **locks;
	size_t n_locks, cap_locks;
	struct auth_login *login; /* password checks, shared by all protocols */
};

enum pop3_state {
	POP3_S_TLSWAIT,
	POP3_S_CMD,
	POP3_S_AUTHLINE,
	POP3_S_WAIT,
	POP3_S_SEND,
	POP3_S_CLOSING,
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

struct pop3_session {
	struct pop3_server *srv; /* NULL once the server is freed */
	struct pop3_session *prev, *next;
	struct loop *l;
	struct conn *c; /* NULL once closed */
	enum pop3_role role;
	enum pop3_state state;
	uint64_t connect_ms;
	uint64_t last_input_ms;
	struct timer *timer; /* idle timeout */
	struct timer *delay; /* delayed reply (failed login) */
	bool greeted;
	bool tls;
	bool loopback;
	bool utf8;       /* RFC 6856 UTF8 given */
	int errors;
	int auth_failures; /* in this session */
	bool discarding;   /* dropping an over-long line up to its LF */
	int busy;          /* async steps in flight holding a pointer to s */
	const char *close_reason;
	char *user_arg;    /* USER given, waiting for PASS */
	/* SASL exchange */
	int auth_mech; /* 0 none, 1 PLAIN, 2 LOGIN */
	char *auth_login_user;
	struct pop3_maildrop *maildrop; /* TRANSACTION state */
	char *auth_user;                /* for the log */
	bool quitting;                  /* UPDATE state */
	/* RETR/TOP in progress */
	int send_fd;
	struct pop3_dot dot;
	struct timer *pace;
	uint64_t send_progress_ms;
	size_t send_last_pending;
	/* for the session's log line */
	unsigned n_retr, n_top, n_dele;
	uint64_t bytes_out;
	const char *result;
	char ip[64];
};

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
void pop3_close(struct pop3_session *s, const char *reason);
void pop3_park(struct pop3_session *s);
void pop3_unpark(struct pop3_session *s);
/* Drops an async hold; true if the session was freed meanwhile. */
bool pop3_release(struct pop3_session *s);
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
void pop3_send_abort(struct pop3_session *s);

#endif
