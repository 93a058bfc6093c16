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
#define POP3_THROTTLE_KEYS 65536

/* ---- replies ---- */

static void reply_v(struct pop3_session *s, bool ok, const char *code, const char *fmt,
		    va_list ap) PRINTF_LIKE(4, 0);

static void reply_v(struct pop3_session *s, bool ok, const char *code, const char *fmt,
		    va_list ap)
{
	char line[512];
	int n;

	if (s->c == NULL || s->state == POP3_S_CLOSING)
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
	conn_write(s->c, line, len + 2);
	log_debug("pop3 %s < %.*s", s->ip, (int)len, line);
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
	if (s->c == NULL || s->state == POP3_S_CLOSING)
		return;
	struct buf b = BUF_INIT;
	buf_printf(&b, "+OK %s\r\n", first);
	if (body->len > 0)
		buf_append(&b, body->data, body->len);
	buf_appends(&b, ".\r\n"); /* RFC 1939 3 */
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
}

void pop3_send_raw(struct pop3_session *s, const void *p, size_t n)
{
	if (s->c == NULL)
		return;
	conn_write(s->c, p, n);
	s->bytes_out += n;
}

/* ---- timers ---- */

static void on_idle(void *arg);

static void timer_arm(struct pop3_session *s, uint64_t ms)
{
	loop_timer_cancel(s->l, &s->timer);
	s->timer = loop_timer_add(s->l, ms, on_idle, s);
}

static uint64_t idle_ms(const struct pop3_session *s)
{
	return (uint64_t)s->srv->cfg->pop3_timeout * 1000u;
}

/* RFC 1939 3: the autologout timer; "the server MUST NOT enter UPDATE". */
static void on_idle(void *arg)
{
	struct pop3_session *s = arg;

	s->timer = NULL;
	if (s->srv == NULL || s->c == NULL || s->state == POP3_S_CLOSING)
		return;
	if (s->state == POP3_S_WAIT || s->state == POP3_S_SEND) {
		/* our own step (SEND watches its own progress in retr.c) */
		timer_arm(s, idle_ms(s));
		return;
	}
	uint64_t now = loop_now(s->l), limit = idle_ms(s);
	if (now - s->last_input_ms < limit) {
		timer_arm(s, limit - (now - s->last_input_ms));
		return;
	}
	if (s->state != POP3_S_TLSWAIT)
		pop3_reply_err(s, NULL, "autologout: idle for too long");
	s->result = "timeout";
	pop3_close(s, "timeout");
}

static void backstop(struct pop3_session *s)
{
	conn_set_timeout(s->c, (s->srv->cfg->pop3_timeout + POP3_BACKSTOP_S) * 1000u);
}

void pop3_set_state(struct pop3_session *s, enum pop3_state st)
{
	if (s->state == POP3_S_CLOSING)
		return;
	s->state = st;
}

/* ---- parking ---- */

void pop3_park(struct pop3_session *s)
{
	pop3_set_state(s, POP3_S_WAIT);
	if (s->c != NULL) {
		conn_pause(s->c);
		conn_set_timeout(s->c, 0);
	}
}

void pop3_unpark(struct pop3_session *s)
{
	if (s->c == NULL || s->state == POP3_S_CLOSING)
		return;
	pop3_set_state(s, POP3_S_CMD);
	s->last_input_ms = loop_now(s->l);
	timer_arm(s, idle_ms(s));
	backstop(s);
	conn_resume(s->c); /* pipelined commands in rbuf: on_data again */
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

static void session_log(struct pop3_session *s, const char *reason)
{
	log_info("pop3 session client=%s user=%s retr=%u top=%u dele=%u bytes=%llu result=%s "
		 "time=%llums",
		 s->ip, s->auth_user ? s->auth_user : "-", s->n_retr, s->n_top, s->n_dele,
		 (unsigned long long)s->bytes_out, s->result ? s->result : reason,
		 (unsigned long long)(loop_now(s->l) - s->connect_ms));
}

static void unlink_session(struct pop3_session *s);

static void session_free(struct pop3_session *s)
{
	pop3_send_abort(s);
	loop_timer_cancel(s->l, &s->timer);
	loop_timer_cancel(s->l, &s->delay);
	unlink_session(s);
	pop3_maildrop_free(&s->maildrop);
	x_free(&s->user_arg);
	x_free(&s->auth_login_user);
	x_free(&s->auth_user);
	free(s);
}

bool pop3_release(struct pop3_session *s)
{
	x_assert(s->busy > 0);
	s->busy--;
	if (s->c == NULL && s->busy == 0) {
		session_free(s);
		return true;
	}
	return false;
}

void pop3_close(struct pop3_session *s, const char *reason)
{
	if (s->c == NULL || s->state == POP3_S_CLOSING)
		return;
	s->state = POP3_S_CLOSING;
	if (s->close_reason == NULL)
		s->close_reason = reason;
	loop_timer_cancel(s->l, &s->timer);
	loop_timer_cancel(s->l, &s->delay);
	pop3_send_abort(s);
	conn_close(s->c);
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
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	srv->nsessions--;
	if (s->maildrop != NULL)
		pop3_unlock(srv, s->maildrop->user);
	s->srv = NULL;
}

static void on_close(struct conn *c, void *arg, enum conn_close_reason why)
{
	struct pop3_session *s = arg;
	static const char *const whys[] = {"closed", "eof", "error", "timeout"};
	const char *reason = s->close_reason;

	if (reason == NULL)
		reason = (unsigned)why < 4 ? whys[why] : "?";
	session_log(s, reason);
	s->c = NULL;
	s->state = POP3_S_CLOSING;
	loop_timer_cancel(s->l, &s->timer);
	loop_timer_cancel(s->l, &s->delay);
	pop3_send_abort(s);
	/* RFC 1939 6: no QUIT, no UPDATE: nothing is deleted. An async step in
	 * flight still points at s; its completion frees the session. */
	if (s->busy == 0)
		session_free(s);
}

/* ---- input ---- */

void pop3_check_errors(struct pop3_session *s)
{
	if (s->c == NULL || s->state == POP3_S_CLOSING || s->srv == NULL)
		return;
	if (s->errors >= s->srv->cfg->pop3_max_errors) {
		pop3_reply_err(s, NULL, "too many errors, closing");
		s->result = "too many errors";
		pop3_close(s, "too many errors");
	}
}

/* Frames one line. false: need more input. */
static bool read_line(struct pop3_session *s, struct buf *rb)
{
	/* RFC 2449 4 for commands; a SASL response may be longer (RFC 5034 4). */
	size_t max = s->state == POP3_S_AUTHLINE ? SASL_MAX_B64 + 2 : POP3_MAX_LINE;
	char *lf = rb->len > 0 ? memchr(rb->data, '\n', rb->len) : NULL;

	if (lf == NULL) {
		/* Longer than any valid line already: drop it as it comes, never
		 * buffering more than one read. */
		if (rb->len >= max) {
			s->discarding = true;
			buf_consume(rb, rb->len);
		}
		return false;
	}
	size_t total = (size_t)(lf - rb->data) + 1;
	if (s->discarding || total > max) {
		buf_consume(rb, total);
		s->discarding = false;
		if (s->state == POP3_S_AUTHLINE) {
			s->auth_mech = 0;
			x_free(&s->auth_login_user);
			pop3_set_state(s, POP3_S_CMD);
		}
		pop3_reply(s, false, NULL, "line too long (limit %zu octets)", max);
		return true;
	}
	size_t len = total - 1;
	if (len > 0 && rb->data[len - 1] == '\r')
		len--;
	char *line = xstrndup(rb->data, len);
	buf_consume(rb, total);
	if (strlen(line) != len)
		pop3_reply(s, false, NULL, "NUL byte in command");
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
	while (s->c != NULL && s->srv != NULL) {
		switch (s->state) {
		case POP3_S_TLSWAIT:
		case POP3_S_WAIT:
		case POP3_S_SEND:
		case POP3_S_CLOSING:
			return;
		case POP3_S_CMD:
		case POP3_S_AUTHLINE:
			if (!read_line(s, &s->c->rbuf))
				return;
			break;
		}
		pop3_check_errors(s);
	}
}

static void on_data(struct conn *c, void *arg)
{
	struct pop3_session *s = arg;

	s->last_input_ms = loop_now(s->l);
	process(s);
}

static void greet(struct pop3_session *s)
{
	s->greeted = true;
	pop3_set_state(s, POP3_S_CMD);
	s->last_input_ms = loop_now(s->l);
	timer_arm(s, idle_ms(s));
	backstop(s);
	/* RFC 1939 4. No APOP timestamp: APOP needs plaintext passwords here. */
	pop3_reply(s, true, NULL, "%s POP3 postern ready", s->srv->cfg->hostname);
	if (s->c != NULL && s->c->rbuf.len > 0)
		process(s);
}

static void on_tls(struct conn *c, void *arg)
{
	struct pop3_session *s = arg;

	if (s->srv == NULL || s->c == NULL || s->state == POP3_S_CLOSING)
		return;
	s->tls = true;
	log_debug("pop3 %s tls %s", s->ip, conn_tls_info(c));
	if (!s->greeted) {
		greet(s); /* implicit TLS */
		return;
	}
	/* RFC 2595 4: after STLS the client starts over; conn_starttls dropped
	 * whatever plaintext was pipelined behind STLS. */
	x_free(&s->user_arg);
	pop3_set_state(s, POP3_S_CMD);
	s->last_input_ms = loop_now(s->l);
	timer_arm(s, idle_ms(s));
	if (c->rbuf.len > 0)
		process(s);
}

static const struct conn_handler pop3_conn_handler = {
	.on_data = on_data,
	.on_close = on_close,
	.on_tls = on_tls,
};

bool pop3_creds_allowed(const struct pop3_session *s)
{
	/* RFC 2595 2.2 / RFC 8314: no plaintext passwords on an unprotected
	 * channel, except from loopback when configured. */
	return s->tls || (s->loopback && s->srv->cfg->pop3_auth_plaintext_loopback);
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
	s->srv = srv;
	s->l = srv->l;
	s->role = role;
	s->send_fd = -1;
	s->connect_ms = s->last_input_ms = loop_now(srv->l);
	s->state = role == POP3_ROLE_POP3S ? POP3_S_TLSWAIT : POP3_S_CMD;
	s->c = conn_new(srv->l, fd, ctx, &pop3_conn_handler, s);
	if (s->c == NULL) {
		free(s);
		return;
	}
	snprintf(s->ip, sizeof s->ip, "%s", s->c->peer_ip);
	s->loopback = conn_peer_is_loopback(s->c);
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	log_debug("pop3 connect client=%s port=%d role=%s", s->ip, s->c->peer_port,
		  role == POP3_ROLE_POP3S ? "pop3s" : "pop3");

	int same = 0;
	for (struct pop3_session *o = srv->sessions; o != NULL; o = o->next)
		if (strcmp(o->ip, s->ip) == 0)
			same++;
	const struct config *cfg = srv->cfg;
	if (srv->nsessions > cfg->pop3_max_connections ||
	    same > cfg->pop3_max_connections_per_ip) {
		if (role != POP3_ROLE_POP3S)
			pop3_reply_err(s, "SYS/TEMP", "too many connections, try again later");
		s->result = "too many connections";
		pop3_close(s, "too many connections");
		return;
	}
	backstop(s);
	if (role == POP3_ROLE_POP3S)
		timer_arm(s, idle_ms(s)); /* the handshake must finish in time */
	else
		greet(s);
}

/* ---- the server ---- */

struct pop3_server *pop3_server_new(struct loop *l, struct pool *workers, struct store *st,
				    const struct config *cfg, SSL_CTX *tls, struct auth_login *login)
{
	struct pop3_server *srv = xcalloc(1, sizeof *srv);
	unsigned max = (unsigned)(cfg->auth_max_failures > 0 ? cfg->auth_max_failures : 1);

	srv->l = l;
	srv->workers = workers;
	srv->st = st;
	srv->cfg = cfg;
	srv->tls = tls;
	srv->login = login;
	srv->fail_ip = throttle_new(max, cfg->auth_failure_window, POP3_THROTTLE_KEYS);
	/* Per account, twice the per-IP budget: guessing from many addresses is
	 * slowed down without letting one address lock a user out cheaply. */
	srv->fail_user = throttle_new(2 * max, cfg->auth_failure_window, POP3_THROTTLE_KEYS);
	return srv;
}

void pop3_server_free(struct pop3_server **srvp)
{
	struct pop3_server *srv = *srvp;

	if (srv == NULL)
		return;
	while (srv->sessions != NULL) {
		struct pop3_session *s = srv->sessions;
		pop3_reply_err(s, "SYS/TEMP", "server shutting down");
		s->result = "shutdown";
		pop3_close(s, "shutdown");
		/* The conn's on_close (from the loop) or the async step's end
		 * frees the session. */
		unlink_session(s);
	}
	throttle_free(&srv->fail_ip);
	throttle_free(&srv->fail_user);
	for (size_t i = 0; i < srv->n_locks; i++)
		free(srv->locks[i]);
	free(srv->locks);
	free(srv);
	*srvp = NULL;
}
