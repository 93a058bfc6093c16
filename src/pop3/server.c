/* POP3 server: listener roles, session lifecycle, input framing, replies,
 * timers, the maildrop lock table. Commands are in cmd.c; RETR/TOP streaming
 * in retr.c. */
#include "pop3/server.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/sasl.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "pop3/session.h"

/* Extra seconds on top of our own idle timer for the conn's backstop. */
#define POP3_BACKSTOP_S 60

/* ---- replies ---- */

static void reply_v(struct pop3_session *s, bool ok, const char *code, const char *fmt,
		    va_list ap) PRINTF_LIKE(4, 0);

static void reply_v(struct pop3_session *s, bool ok, const char *code, const char *fmt,
		    va_list ap)
{
	char line[512];
	int n;

	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING)
		return;
	if (ok)
		n = snprintf(line, sizeof line, "+OK ");
	else if (code != NULL)
		n = snprintf(line, sizeof line, "-ERR [%s] ", code); /* RFC 2449 8 */
	else
		n = snprintf(line, sizeof line, "-ERR ");
	vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
	/* Text may quote client input: never let it break the framing. */
	for (char *p = line; *p; p++) {
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	}
	size_t len = strlen(line);
	if (len > 0 && line[len - 1] == ' ')
		len--;
	memcpy(line + len, "\r\n", 3);
	conn_write(s->base.c, line, len + 2);
	log_debug("pop3 %s < %.*s", s->base.ip, (int)len, line);
}

void pop3_reply(struct pop3_session *s, bool ok, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_v(s, ok, code, fmt, ap);
	va_end(ap);
	if (!ok)
		s->errors++;
}

void pop3_reply_err(struct pop3_session *s, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_v(s, false, code, fmt, ap);
	va_end(ap);
}

void pop3_reply_multi(struct pop3_session *s, const char *first, const struct buf *body)
{
	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING)
		return;
	struct buf b = BUF_INIT;
	buf_printf(&b, "+OK %s\r\n", first);
	if (body->len > 0)
		buf_append(&b, body->data, body->len);
	buf_appends(&b, ".\r\n"); /* RFC 1939 3 */
	conn_write(s->base.c, b.data, b.len);
	buf_free(&b);
}

void pop3_send_raw(struct pop3_session *s, const void *p, size_t n)
{
	if (s->base.c == NULL)
		return;
	conn_write(s->base.c, p, n);
	s->bytes_out += n;
}

/* ---- timers ---- */

static uint64_t idle_ms(const struct session *base)
{
	const struct pop3_session *s = (const struct pop3_session *)base;
	return (uint64_t)s->srv->cfg->pop3_timeout * 1000u;
}

/* RFC 1939 3: the autologout timer; "the server MUST NOT enter UPDATE". */
static void on_timeout(struct session *base)
{
	struct pop3_session *s = pop3_session_of(base);

	if (s->state == POP3_S_SEND) {
		/* The reader stalled mid-response: no -ERR can be framed there. */
		s->result = "send timeout";
		return;
	}
	if (s->state != POP3_S_TLSWAIT)
		pop3_reply_err(s, NULL, "autologout: idle for too long");
	s->result = "timeout";
}

void pop3_set_state(struct pop3_session *s, enum pop3_state st)
{
	if (s->base.phase == SESSION_CLOSING)
		return;
	s->state = st;
}

/* ---- locks ---- */

int pop3_lock(struct pop3_server *srv, const char *user)
{
	for (size_t i = 0; i < srv->n_locks; i++)
		if (strcmp(srv->locks[i], user) == 0)
			return -1;
	if (srv->n_locks == srv->cap_locks) {
		srv->cap_locks = srv->cap_locks ? srv->cap_locks * 2 : 16;
		srv->locks = xrealloc(srv->locks, srv->cap_locks * sizeof *srv->locks);
	}
	srv->locks[srv->n_locks++] = xstrdup(user);
	return 0;
}

void pop3_unlock(struct pop3_server *srv, const char *user)
{
	for (size_t i = 0; i < srv->n_locks; i++) {
		if (strcmp(srv->locks[i], user) == 0) {
			free(srv->locks[i]);
			srv->locks[i] = srv->locks[--srv->n_locks];
			return;
		}
	}
}

void pop3_maildrop_free(struct pop3_maildrop **mp)
{
	struct pop3_maildrop *m = *mp;
	if (m == NULL)
		return;
	free(m->user);
	free(m->v);
	free(m);
	*mp = NULL;
}

/* ---- session lifetime ---- */

static void on_closed(struct session *base, const char *reason)
{
	struct pop3_session *s = pop3_session_of(base);

	log_info("pop3 session client=%s user=%s retr=%u top=%u dele=%u bytes=%llu result=%s "
		 "time=%llums",
		 s->base.ip, s->auth_user ? s->auth_user : "-", s->n_retr, s->n_top, s->n_dele,
		 (unsigned long long)s->bytes_out, s->result ? s->result : reason,
		 (unsigned long long)(loop_now(s->base.l) - s->base.connect_ms));
	/* RFC 1939 6: no QUIT, no UPDATE: nothing is deleted. */
}

static void on_stop(struct session *base)
{
	pop3_send_abort(pop3_session_of(base));
}

static void on_drained(struct session *base)
{
	pop3_send_drained(pop3_session_of(base));
}

/* Takes s off the server's list and releases its maildrop lock. A session
 * whose conn closed while an async step (password check, the expunge of
 * UPDATE) runs stays listed, holding its lock, until that step ends: a new
 * login must not see a maildrop that is still changing. */
static void unlink_session(struct pop3_session *s)
{
	struct pop3_server *srv = s->srv;

	if (srv == NULL)
		return;
	session_unlink(&s->base);
	if (s->maildrop != NULL)
		pop3_unlock(srv, s->maildrop->user);
	s->srv = NULL;
}

static void session_free(struct session *base)
{
	struct pop3_session *s = pop3_session_of(base);

	pop3_send_abort(s);
	unlink_session(s);
	pop3_maildrop_free(&s->maildrop);
	x_free(&s->user_arg);
	sasl_server_reset(&s->sasl);
	x_free(&s->auth_user);
	free(s);
}

/* ---- input ---- */

void pop3_check_errors(struct pop3_session *s)
{
	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING || s->srv == NULL)
		return;
	if (s->errors >= s->srv->cfg->pop3_max_errors) {
		pop3_reply_err(s, NULL, "too many errors, closing");
		s->result = "too many errors";
		session_close(&s->base, "too many errors");
	}
}

/* Frames one line. false: need more input. */
static bool read_line(struct pop3_session *s, struct buf *rb)
{
	/* RFC 2449 4 for commands; a SASL response may be longer (RFC 5034 4). */
	size_t max = s->state == POP3_S_AUTHLINE ? SASL_MAX_B64 + 2 : POP3_MAX_LINE;
	char *line;
	size_t len;
	int r = session_read_line(rb, max, &s->base.discarding, &line, &len);

	if (r == 0)
		return false;
	if (r < 0) {
		if (s->state == POP3_S_AUTHLINE) {
			sasl_server_reset(&s->sasl);
			pop3_set_state(s, POP3_S_CMD);
		}
		pop3_reply(s, false, NULL, "line too long (limit %zu octets)", max);
		return true;
	}
	if (strlen(line) != len) {
		/* The refusal ends a SASL exchange (RFC 4954 4, RFC 5034 4):
		 * the next line is a command, not the SASL response. */
		if (s->state == POP3_S_AUTHLINE) {
			sasl_server_reset(&s->sasl);
			pop3_set_state(s, POP3_S_CMD);
		}
		pop3_reply(s, false, NULL, "NUL byte in command");
	}
	else if (s->state == POP3_S_AUTHLINE)
		pop3_auth_line(s, line);
	else
		pop3_dispatch(s, line);
	/* The line may hold a password (PASS, AUTH PLAIN). */
	explicit_bzero(line, len);
	free(line);
	return true;
}

static void process(struct pop3_session *s)
{
	/* session_input_ok: also stops while the client is not reading our
	 * replies, so pipelined commands cannot pile up output. */
	while (s->srv != NULL && session_input_ok(&s->base)) {
		switch (s->state) {
		case POP3_S_TLSWAIT:
		case POP3_S_SEND:
			return;
		case POP3_S_CMD:
		case POP3_S_AUTHLINE:
			if (!read_line(s, &s->base.c->rbuf))
				return;
			break;
		}
		pop3_check_errors(s);
	}
}

static void on_input(struct session *base)
{
	process(pop3_session_of(base));
}

static void greet(struct pop3_session *s)
{
	s->base.greeted = true;
	pop3_set_state(s, POP3_S_CMD);
	session_idle_restart(&s->base);
	session_backstop(&s->base);
	/* RFC 1939 4. No APOP timestamp: APOP needs plaintext passwords here. */
	pop3_reply(s, true, NULL, "%s POP3 postern ready", s->srv->cfg->hostname);
	if (s->base.c != NULL && s->base.c->rbuf.len > 0)
		process(s);
}

static void on_tls_ready(struct session *base)
{
	struct pop3_session *s = pop3_session_of(base);

	if (!s->base.greeted) {
		greet(s); /* implicit TLS */
		return;
	}
	/* RFC 2595 4: after STLS the client starts over; conn_starttls dropped
	 * whatever plaintext was pipelined behind STLS. */
	x_free(&s->user_arg);
	pop3_set_state(s, POP3_S_CMD);
	session_idle_restart(&s->base);
	if (s->base.c->rbuf.len > 0)
		process(s);
}

static const struct session_ops pop3_session_ops = {
	.name = "pop3",
	.input = on_input,
	.tls_ready = on_tls_ready,
	.idle_ms = idle_ms,
	.timeout = on_timeout,
	.stop = on_stop,
	.drained = on_drained,
	.closed = on_closed,
	.free = session_free,
};

bool pop3_creds_allowed(const struct pop3_session *s)
{
	/* RFC 2595 2.2 / RFC 8314: no plaintext passwords on an unprotected
	 * channel, except from loopback when configured. */
	return s->base.tls || (s->base.loopback && s->srv->cfg->pop3_auth_plaintext_loopback);
}

void pop3_server_accept(struct pop3_server *srv, int fd, enum pop3_role role)
{
	SSL_CTX *ctx = role == POP3_ROLE_POP3S ? srv->tls : NULL;

	if (role == POP3_ROLE_POP3S && ctx == NULL) {
		log_err("pop3: pop3s listener without TLS context; closing");
		close(fd);
		return;
	}
	struct pop3_session *s = xcalloc(1, sizeof *s);
	const struct config *cfg = srv->cfg;
	s->srv = srv;
	s->role = role;
	s->send_fd = -1;
	s->state = role == POP3_ROLE_POP3S ? POP3_S_TLSWAIT : POP3_S_CMD;
	if (session_open(&s->base, &pop3_session_ops, srv->l, &srv->sessions, fd, ctx) < 0) {
		free(s);
		return;
	}
	s->base.backstop_ms = (cfg->pop3_timeout + POP3_BACKSTOP_S) * 1000u;
	s->base.output_limit = (unsigned)cfg->session_output_limit; /* at most 1 GiB */
	log_debug("pop3 connect client=%s port=%d role=%s", s->base.ip, s->base.c->peer_port,
		  role == POP3_ROLE_POP3S ? "pop3s" : "pop3");

	int same = session_list_count_ip(&srv->sessions, s->base.ip);
	if (srv->sessions.n > cfg->pop3_max_connections ||
	    same > cfg->pop3_max_connections_per_ip) {
		if (role != POP3_ROLE_POP3S)
			pop3_reply_err(s, "SYS/TEMP", "too many connections, try again later");
		s->result = "too many connections";
		session_close(&s->base, "too many connections");
		return;
	}
	session_backstop(&s->base);
	if (role == POP3_ROLE_POP3S)
		session_idle_restart(&s->base); /* the handshake must finish in time */
	else
		greet(s);
}

/* ---- the server ---- */

struct pop3_server *pop3_server_new(struct loop *l, struct pool *workers, struct store *st,
				    const struct config *cfg, SSL_CTX *tls, struct auth_login *login)
{
	struct pop3_server *srv = xcalloc(1, sizeof *srv);

	srv->l = l;
	srv->workers = workers;
	srv->st = st;
	srv->cfg = cfg;
	srv->tls = tls;
	srv->login = login;
	return srv;
}

static void shutdown_session(struct pop3_session *s)
{
	/* In the middle of a RETR/TOP response a -ERR line would read as
	 * message content, in a TLS handshake as garbage: the cut response
	 * and the close say enough. */
	if (s->state != POP3_S_SEND && s->state != POP3_S_TLSWAIT)
		pop3_reply_err(s, "SYS/TEMP", "server shutting down");
	s->result = "shutdown";
	session_close(&s->base, "shutdown");
}

static void shutdown_one(struct session *b, void *arg)
{
	shutdown_session(pop3_session_of(b));
}

/* A session parked on an async step keeps it: the expunge of a QUIT ends
 * with its real answer and the close (RFC 1939 6: the client must learn
 * whether its deletions were made); a login ends open, and the next call
 * closes it. */
int pop3_server_shutdown(struct pop3_server *srv, int *busy_r)
{
	return session_list_shutdown(&srv->sessions, shutdown_one, NULL, busy_r);
}

void pop3_server_free(struct pop3_server **srvp)
{
	struct pop3_server *srv = *srvp;

	if (srv == NULL)
		return;
	while (srv->sessions.head != NULL) {
		struct pop3_session *s = pop3_session_of(srv->sessions.head);
		shutdown_session(s);
		/* The conn's on_close (from the loop) or the async step's end
		 * frees the session. */
		unlink_session(s);
	}
	for (size_t i = 0; i < srv->n_locks; i++)
		free(srv->locks[i]);
	free(srv->locks);
	free(srv);
	*srvp = NULL;
}
