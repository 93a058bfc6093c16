/* IMAP server: listener roles, session lifecycle, the input loop (command
 * framing by imap/parse.h's reader, SASL lines, IDLE and APPEND hand-offs),
 * replies, timers, shutdown. Commands are in cmd.c (table and dispatcher)
 * and the files session.h lists. */
#include "imap/server.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"

/* Extra seconds on top of our own idle timer for the conn's backstop. */
#define IMAP_BACKSTOP_S 60
/* Before login a command is at most this long (lines and literals): LOGIN,
 * AUTHENTICATE's SASL-IR and ID (RFC 2971 3.3: 30 pairs of at most 30 and
 * 1024 octets) fit; an anonymous connection does not hold imap_max_command. */
#define IMAP_PREAUTH_MAX_COMMAND (32 * 1024)

_Static_assert(offsetof(struct imap_session, base) == 0, "base must come first");

static void process(struct imap_session *s);

/* ---- replies ---- */

static void buf_vprintf(struct buf *b, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);

static void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	char tmp[256];
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(tmp, sizeof tmp, fmt, aq);
	va_end(aq);
	if (n <= 0)
		return;
	if ((size_t)n < sizeof tmp) {
		buf_append(b, tmp, (size_t)n);
		return;
	}
	buf_reserve(b, (size_t)n + 1);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

bool imap_session_alive(const struct imap_session *s)
{
	return s->srv != NULL && s->base.c != NULL && s->base.phase != SESSION_CLOSING;
}

void imap_send(struct imap_session *s, const void *p, size_t n)
{
	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING)
		return;
	conn_write(s->base.c, p, n);
	s->bytes_out += n;
}

void imap_untagged(struct imap_session *s, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	buf_appends(&b, "* ");
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_appends(&b, "\r\n");
	imap_send(s, b.data, b.len);
	buf_free(&b);
}

void imap_tagged(struct imap_session *s, const char *status, const char *code, const char *fmt,
		 ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	bool bad = strcmp(status, "BAD") == 0;

	if (!imap_session_alive(s))
		return;
	/* RFC 9051 7.5.1: mailbox changes go out before the tagged reply of a
	 * command, EXPUNGEs not after FETCH, STORE and SEARCH. */
	if (s->sel != NULL && s->cmd != NULL && !bad)
		imap_send_updates(s, !(s->cmd->flags & IMAP_CMD_NOUPDATE));
	buf_printf(&b, "%s %s ", s->tag != NULL ? s->tag : "*", status);
	if (code != NULL)
		buf_printf(&b, "[%s] ", code);
	size_t text = b.len;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	/* The text may quote client input: never let it break the framing. */
	for (size_t i = text; i < b.len; i++)
		if (b.data[i] == '\r' || b.data[i] == '\n' || b.data[i] == '\0')
			b.data[i] = ' ';
	log_debug("imap %s < %.*s", s->base.ip, (int)(b.len > 200 ? 200 : b.len), b.data);
	buf_appends(&b, "\r\n");
	imap_send(s, b.data, b.len);
	buf_free(&b);
	if (bad)
		s->errors++;
	else
		s->errors = 0;
}

void imap_bye(struct imap_session *s, const char *code, const char *reason, const char *text)
{
	if (!imap_session_alive(s))
		return;
	if (code != NULL)
		imap_untagged(s, "BYE [%s] %s", code, text);
	else
		imap_untagged(s, "BYE %s", text);
	if (s->result == NULL)
		s->result = reason;
	session_close(&s->base, reason);
}

static void check_errors(struct imap_session *s)
{
	if (imap_session_alive(s) && s->errors >= s->srv->cfg->imap_max_errors)
		imap_bye(s, NULL, "too many errors", "Too many invalid commands");
}

/* Back to reading commands: from inside the input loop it goes on by
 * itself; parked, unparking re-delivers buffered input from the loop;
 * otherwise (an async completion) the loop runs now. */
static void resume(struct imap_session *s)
{
	if (!imap_session_alive(s))
		return;
	if (s->base.phase == SESSION_PARKED)
		session_unpark(&s->base);
	else if (s->in_process)
		s->again = true;
	else
		process(s);
}

void imap_cmd_done(struct imap_session *s)
{
	if (!imap_session_alive(s))
		return;
	s->input = IMAP_IN_CMD;
	check_errors(s);
	resume(s);
}

void imap_input_resume(struct imap_session *s)
{
	if (!imap_session_alive(s))
		return;
	s->input = IMAP_IN_CMD;
	resume(s);
}

bool imap_step_done(struct imap_session *s)
{
	if (session_release(&s->base))
		return false;
	return imap_session_alive(s);
}

/* ---- timers ---- */

static uint64_t idle_ms(const struct session *base)
{
	const struct imap_session *s = (const struct imap_session *)base;
	const struct config *cfg = s->srv->cfg;

	/* RFC 9051 5.4: at least 30 minutes once authenticated; a client that
	 * has not logged in gets less. */
	return (uint64_t)(s->user != NULL ? cfg->imap_idle_timeout : cfg->imap_preauth_timeout) *
	       1000u;
}

static void on_timeout(struct session *base)
{
	struct imap_session *s = imap_session_of(base);

	if (s->job != NULL) {
		/* The reader stalled mid-response: no BYE can be framed there. */
		s->result = "send timeout";
		return;
	}
	s->result = "timeout";
	if (s->input != IMAP_IN_TLSWAIT)
		imap_untagged(s, "BYE Autologout; idle for too long"); /* RFC 9051 5.4 */
}

/* ---- session lifetime ---- */

static void on_closed(struct session *base, const char *reason)
{
	struct imap_session *s = imap_session_of(base);

	log_info("imap session client=%s user=%s cmds=%u bytes=%llu result=%s time=%llums",
		 s->base.ip, s->user ? s->user : "-", s->n_cmds,
		 (unsigned long long)s->bytes_out, s->result ? s->result : reason,
		 (unsigned long long)(loop_now(s->base.l) - s->base.connect_ms));
}

static void stop_job(struct imap_session *s)
{
	void (*abort_fn)(struct imap_session *) = s->job_abort;

	s->job_abort = NULL;
	s->job_drained = NULL;
	if (abort_fn != NULL)
		abort_fn(s);
	s->job = NULL;
}

static void on_stop(struct session *base)
{
	struct imap_session *s = imap_session_of(base);

	stop_job(s);
	imap_append_abort(s);
	sasl_server_reset(&s->sasl);
}

static void on_drained(struct session *base)
{
	struct imap_session *s = imap_session_of(base);

	if (s->job_drained != NULL)
		s->job_drained(s);
}

/* The selected mailbox holds a store subscription: dropped while the store
 * is still there, once nothing in flight uses the session. */
static void unlink_session(struct imap_session *s)
{
	if (s->srv == NULL)
		return;
	if (s->sel != NULL && s->base.busy == 0)
		imap_unselect(s, false);
	imap_notify_free(s);
	session_unlink(&s->base);
	s->srv = NULL;
}

static void session_free(struct session *base)
{
	struct imap_session *s = imap_session_of(base);

	on_stop(base);
	unlink_session(s);
	imap_reader_free(&s->rd);
	sasl_server_reset(&s->sasl);
	x_free(&s->tag);
	x_free(&s->user);
	free(s);
}

/* ---- input ---- */

/* The tag of the command being read, for a reply to a command the reader
 * dropped (RFC 9051 7.1: a tagged BAD when the tag could be read). */
static void reader_tag(struct imap_session *s)
{
	size_t n;
	const char *tag = imap_reader_tag(&s->rd, &n);

	x_free(&s->tag);
	if (tag != NULL)
		s->tag = xstrndup(tag, n);
}

/* The name of the command being read (after its tag), to know whether a
 * literal is an APPEND's message. */
static bool reading_append(const struct imap_session *s)
{
	const char *p = s->rd.cmd.data, *end = p + s->rd.cmd.len;

	if (p == NULL)
		return false;
	const char *sp = memchr(p, ' ', s->rd.cmd.len);
	if (sp == NULL)
		return false;
	sp++;
	/* RFC 8508: REPLACE and UID REPLACE take a message as APPEND does */
	return (end - sp > 7 && strncasecmp(sp, "APPEND ", 7) == 0) ||
	       (end - sp > 8 && strncasecmp(sp, "REPLACE ", 8) == 0) ||
	       (end - sp > 12 && strncasecmp(sp, "UID REPLACE ", 12) == 0);
}

/* One step of command input. false: nothing more can be done now. */
static bool read_command(struct imap_session *s)
{
	struct imap_reader *r = &s->rd;

	switch (imap_reader_feed(r, &s->base.c->rbuf)) {
	case IMAP_READ_MORE:
		return false;
	case IMAP_READ_CONTINUE:
		/* RFC 9051 7.5: the command continuation request of a
		 * synchronising literal. */
		imap_send(s, "+ OK\r\n", 6);
		return true;
	case IMAP_READ_LITERAL:
		/* An APPEND's message goes to a spool (append.c), every other
		 * literal is held in the command. */
		if (reading_append(s) && imap_append_literal(s))
			return true;
		imap_reader_inline(r);
		return true;
	case IMAP_READ_BAD:
		reader_tag(s);
		s->cmd = NULL;
		if (r->error_toobig)
			/* a {N} over the limit, refused before its octets
			 * (RFC 9051 7.1 TOOBIG, RFC 7888 4) */
			imap_tagged(s, "NO", "TOOBIG", "%s", r->error ? r->error : "too big");
		else
			imap_tagged(s, "BAD", NULL, "%s", r->error ? r->error : "invalid command");
		imap_reader_next(r);
		return true;
	case IMAP_READ_FATAL:
		/* RFC 7888 4: a non-synchronising literal over the limit. */
		imap_bye(s, r->error_toobig ? "TOOBIG" : NULL, "command too big",
			 r->error ? r->error : "command too big");
		return false;
	case IMAP_READ_COMMAND:
		imap_dispatch(s);
		return true;
	}
	return false;
}

static void process(struct imap_session *s)
{
	if (s->in_process) {
		s->again = true;
		return;
	}
	s->in_process = true;
	/* session_input_ok: also stops while the client is not reading our
	 * replies, so pipelined commands cannot pile up output. */
	while (s->srv != NULL && session_input_ok(&s->base)) {
		enum imap_input before = s->input;
		size_t len = s->base.c->rbuf.len;
		bool more = true;

		s->again = false;
		switch (s->input) {
		case IMAP_IN_TLSWAIT:
			more = false;
			break;
		case IMAP_IN_CMD:
			more = read_command(s);
			break;
		case IMAP_IN_AUTH:
			imap_auth_input(s);
			break;
		case IMAP_IN_IDLE:
			imap_idle_input(s);
			break;
		case IMAP_IN_APPEND:
			imap_append_input(s);
			break;
		}
		check_errors(s);
		if (!more)
			break;
		/* A hook that took nothing and changed nothing waits for input. */
		if (s->base.c != NULL && s->input == before && before != IMAP_IN_CMD &&
		    s->base.c->rbuf.len == len && !s->again)
			break;
	}
	s->in_process = false;
	if (s->notify != NULL)
		imap_notify_idle(s); /* RFC 5465: between commands */
}

static void on_input(struct session *base)
{
	process(imap_session_of(base));
}

static void greet(struct imap_session *s)
{
	struct buf b = BUF_INIT;

	s->base.greeted = true;
	s->input = IMAP_IN_CMD;
	session_idle_restart(&s->base);
	session_backstop(&s->base);
	/* RFC 9051 7.1.1: the greeting; the capabilities save a round trip. */
	imap_capability(s, &b);
	imap_untagged(s, "OK [CAPABILITY %s] postern ready", b.data);
	buf_free(&b);
	if (s->base.c != NULL && s->base.c->rbuf.len > 0)
		process(s);
}

static void on_tls_ready(struct session *base)
{
	struct imap_session *s = imap_session_of(base);

	if (!s->base.greeted) {
		greet(s); /* implicit TLS */
		return;
	}
	/* RFC 9051 6.2.1: after STARTTLS the client starts over (capabilities
	 * again); conn_starttls dropped whatever plaintext was pipelined behind
	 * it (command injection). */
	imap_reader_next(&s->rd);
	s->input = IMAP_IN_CMD;
	session_idle_restart(&s->base);
	if (s->base.c->rbuf.len > 0)
		process(s);
}

static const struct session_ops imap_session_ops = {
	.name = "imap",
	.input = on_input,
	.tls_ready = on_tls_ready,
	.idle_ms = idle_ms,
	.timeout = on_timeout,
	.stop = on_stop,
	.drained = on_drained,
	.closed = on_closed,
	.free = session_free,
};

void imap_input_limits(struct imap_session *s)
{
	const struct config *cfg = s->srv->cfg;
	size_t max = cfg->imap_max_command;

	if (s->user == NULL && max > IMAP_PREAUTH_MAX_COMMAND)
		max = IMAP_PREAUTH_MAX_COMMAND;
	s->rd.max_line = cfg->imap_max_line < max ? cfg->imap_max_line : max;
	s->rd.max_command = max;
	/* Inline literals (every one but an APPEND's message) are part of the
	 * command; the message is bounded by imap_max_literal in append.c. */
	s->rd.max_literal = max;
}

bool imap_creds_allowed(const struct imap_session *s)
{
	/* RFC 9051 6.2.3, RFC 8314: no plaintext passwords on an unprotected
	 * channel, except from loopback when configured. */
	return s->base.tls || (s->base.loopback && s->srv->cfg->imap_auth_plaintext_loopback);
}

void imap_server_accept(struct imap_server *srv, int fd, enum imap_role role)
{
	SSL_CTX *ctx = role == IMAP_ROLE_IMAPS ? srv->tls : NULL;
	const struct config *cfg = srv->cfg;

	if (role == IMAP_ROLE_IMAPS && ctx == NULL) {
		log_err("imap: imaps listener without TLS context; closing");
		close(fd);
		return;
	}
	struct imap_session *s = xcalloc(1, sizeof *s);
	s->srv = srv;
	s->role = role;
	s->input = role == IMAP_ROLE_IMAPS ? IMAP_IN_TLSWAIT : IMAP_IN_CMD;
	imap_reader_init(&s->rd);
	imap_input_limits(s);
	s->rd.want_literal_events = true;
	if (session_open(&s->base, &imap_session_ops, srv->l, &srv->sessions, fd, ctx) < 0) {
		imap_reader_free(&s->rd);
		free(s);
		return;
	}
	s->base.backstop_ms =
		(cfg->imap_idle_timeout > cfg->imap_preauth_timeout ? cfg->imap_idle_timeout
								    : cfg->imap_preauth_timeout) *
			1000u +
		IMAP_BACKSTOP_S * 1000u;
	s->base.output_limit = (unsigned)cfg->session_output_limit;
	log_debug("imap connect client=%s port=%d role=%s", s->base.ip, s->base.c->peer_port,
		  role == IMAP_ROLE_IMAPS ? "imaps" : "imap");

	int same = session_list_count_ip(&srv->sessions, s->base.ip);
	if (srv->sessions.n > cfg->imap_max_connections ||
	    same > cfg->imap_max_connections_per_ip) {
		s->result = "too many connections";
		if (role != IMAP_ROLE_IMAPS)
			imap_untagged(s, "BYE [UNAVAILABLE] Too many connections, try again later");
		session_close(&s->base, "too many connections");
		return;
	}
	session_backstop(&s->base);
	if (role == IMAP_ROLE_IMAPS)
		session_idle_restart(&s->base); /* the handshake must finish in time */
	else
		greet(s);
}

/* ---- the server ---- */

struct imap_server *imap_server_new(struct loop *l, struct pool *workers, struct pool *bulk,
				    struct store *st, const struct config *cfg, SSL_CTX *tls,
				    struct auth_login *login)
{
	struct imap_server *srv = xcalloc(1, sizeof *srv);

	srv->l = l;
	srv->workers = workers;
	srv->bulk = bulk;
	srv->st = st;
	srv->cfg = cfg;
	srv->tls = tls;
	srv->login = login;
	srv->sort_orders = imap_sort_orders_new(cfg->imap_sort_cache_size);
	return srv;
}

static void shutdown_session(struct imap_session *s)
{
	/* In the middle of a long response (a FETCH literal) a BYE would read
	 * as its content, in a TLS handshake as garbage: the cut response and
	 * the close say enough. */
	if (s->job == NULL && s->input != IMAP_IN_TLSWAIT)
		imap_untagged(s, "BYE [UNAVAILABLE] Server shutting down");
	if (s->result == NULL)
		s->result = "shutdown";
	session_close(&s->base, "shutdown");
}

static void shutdown_one(struct session *b, void *arg)
{
	shutdown_session(imap_session_of(b));
}

/* RFC 9051 7.1.5: BYE to sessions waiting on nothing. A session parked on
 * an async step (a commit of APPEND, STORE, EXPUNGE; a password check)
 * finishes it and gets its real answer first; the next call closes it. */
int imap_server_shutdown(struct imap_server *srv, int *busy_r)
{
	return session_list_shutdown(&srv->sessions, shutdown_one, NULL, busy_r);
}

void imap_server_free(struct imap_server **srvp)
{
	struct imap_server *srv = *srvp;

	if (srv == NULL)
		return;
	while (srv->sessions.head != NULL) {
		struct imap_session *s = imap_session_of(srv->sessions.head);
		if (s->base.c != NULL && s->base.phase != SESSION_CLOSING)
			shutdown_session(s);
		unlink_session(s);
		/* The loop has stopped: a conn still flushing to a client that does
		 * not read (a FETCH cut by the shutdown) would never get to its
		 * on_close, which frees the session. Close it now; a session with an
		 * async step in flight is freed by the step's end. */
		if (s->base.c != NULL)
			conn_abort(s->base.c);
	}
	imap_sort_orders_free(&srv->sort_orders);
	free(srv);
	*srvp = NULL;
}
