/* SMTP server: listener roles, session lifecycle, input framing, replies,
 * timers. Commands and their handlers are in cmd.c; the content path (DATA,
 * BDAT, commit) in tx.c. */
#include "smtp/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "filter/filter.h"
#include "policy/policy.h"
#include "smtp/session.h"

/* Postfix postscreen's pregreet test, in small: an MX client that talks
 * before the banner is a bot that does not wait for replies. An address that
 * passed is remembered (bounded, direct-mapped: a collision only costs a
 * repeated test) so that real servers do not pay the delay on every session. */
#define SMTP_PREGREET_SLOTS 4096
#define SMTP_PREGREET_TTL_MS (24ULL * 3600 * 1000)
/* How long after connect an MX greeting may wait for the client's verified
 * reverse name (Postfix looks it up before its banner too); after that the
 * Received header says "unknown" unless the answer comes in time. */
#define SMTP_RDNS_WAIT_MS 500
/* Extra seconds on top of our own timers for the conn's backstop timeout. */
#define SMTP_BACKSTOP_S 60

static const char *role_name(enum smtp_role r)
{
	switch (r) {
	case SMTP_ROLE_MX:
		return "mx";
	case SMTP_ROLE_SUBMISSION:
		return "submission";
	case SMTP_ROLE_SUBMISSIONS:
		return "submissions";
	}
	return "?";
}

/* ---- replies ---- */

void smtp_reply(struct smtp_session *s, int code, const char *ecode, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING)
		return;
	n = ecode != NULL ? snprintf(line, sizeof(line), "%03d %s ", code, ecode)
			  : snprintf(line, sizeof(line), "%03d ", code);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 2, fmt, ap);
	va_end(ap);
	/* Text may quote client input: never let it break the reply framing. */
	for (char *p = line; *p; p++) {
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	}
	size_t len = strlen(line);
	memcpy(line + len, "\r\n", 3);
	conn_write(s->base.c, line, len + 2);
	/* RFC 5321 4.2.1: 5yz is a permanent failure; each counts as a client
	 * error toward smtp_max_errors (smtp_check_errors). */
	if (code >= 500)
		s->errors++;
	log_debug("smtp %s < %.*s", s->base.ip, (int)len, line);
}

void smtp_reply_lines(struct smtp_session *s, int code, const char *const *lines, size_t n)
{
	struct buf b = BUF_INIT;

	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING || n == 0)
		return;
	/* RFC 5321 4.2.1: "code-text" for every line but the last. */
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%03d%c%s\r\n", code, i + 1 < n ? '-' : ' ', lines[i]);
	conn_write(s->base.c, b.data, b.len);
	buf_free(&b);
}

/* ---- timers ---- */

/* RFC 5321 4.5.3.2: timeouts; ours is per session state. */
static uint64_t idle_ms(const struct session *base)
{
	const struct smtp_session *s = (const struct smtp_session *)base;
	const struct config *cfg = s->srv->cfg;
	unsigned sec = s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT ? cfg->smtp_data_timeout
									    : cfg->smtp_timeout;
	return sec * 1000u;
}

static void on_timeout(struct session *base)
{
	struct smtp_session *s = smtp_session_of(base);

	if (s->state != SMTP_S_TLSWAIT)
		smtp_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->srv->cfg->hostname);
}

void smtp_set_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->base.phase == SESSION_CLOSING)
		return;
	bool was_data = s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT;
	bool is_data = st == SMTP_S_DATA || st == SMTP_S_BDAT;
	s->state = st;
	/* The data timeout and the command timeout differ: restart the clock. */
	if (was_data != is_data && s->srv != NULL && s->base.c != NULL)
		session_idle_restart(&s->base);
}

/* ---- session lifetime ---- */

static void unlink_session(struct smtp_session *s)
{
	dns_cancel(&s->rdns_q); /* before the server (and its resolver) may go */
	if (s->srv == NULL)
		return;
	session_unlink(&s->base);
	s->srv = NULL;
}

static void session_free(struct session *base)
{
	struct smtp_session *s = smtp_session_of(base);

	unlink_session(s);
	smtp_tx_free(s);
	filter_conn_free(&s->fc); /* after its transaction */
	x_free(&s->helo);
	x_free(&s->auth_user);
	x_free(&s->rdns);
	sasl_server_reset(&s->sasl);
	free(s);
}

static void on_closed(struct session *base, const char *reason)
{
	struct smtp_session *s = smtp_session_of(base);

	log_info("smtp close client=%s reason=%s errors=%d time=%llums", s->base.ip, reason,
		 s->errors, (unsigned long long)(loop_now(s->base.l) - s->base.connect_ms));
	/* A commit or password check still in flight keeps the session listed
	 * until it ends (session_free): shutdown waits for it. */
	if (s->base.busy == 0)
		unlink_session(s);
}

/* ---- input ---- */

static void check_errors(struct smtp_session *s)
{
	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING || s->srv == NULL)
		return;
	if (s->srv->cfg->smtp_max_errors > 0 && s->errors >= s->srv->cfg->smtp_max_errors) {
		smtp_reply(s, 421, "4.7.0", "%s Error: too many errors", s->srv->cfg->hostname);
		session_close(&s->base, "too many errors");
	}
}

/* Frames one command (or SASL) line. false: need more input. */
static bool read_line(struct smtp_session *s, struct buf *rb)
{
	char *line;
	size_t len;
	int r = session_read_line(rb, s->srv->cfg->smtp_max_line, &s->base.discarding, &line,
				  &len);

	if (r == 0)
		return false;
	if (r < 0) {
		/* RFC 5321 4.5.3.1.4 */
		if (s->state == SMTP_S_AUTHLINE) {
			sasl_server_reset(&s->sasl);
			smtp_set_state(s, SMTP_S_CMD);
		}
		smtp_reply(s, 500, "5.5.2", "Error: line too long");
		return true;
	}
	if (strlen(line) != len && s->state == SMTP_S_AUTHLINE) {
		/* The refusal ends a SASL exchange (RFC 4954 4, RFC 5034 4):
		 * the next line is a command, not the SASL response. */
		sasl_server_reset(&s->sasl);
		smtp_set_state(s, SMTP_S_CMD);
		smtp_reply(s, 500, "5.5.2", "Error: NUL byte in command");
	} else if (strlen(line) != len)
		smtp_bad_command(s, line, "Error: NUL byte in command");
	else if (s->state == SMTP_S_AUTHLINE)
		smtp_auth_line(s, line);
	else
		smtp_dispatch(s, line);
	/* The line may hold a password (AUTH PLAIN initial response). */
	explicit_bzero(line, len);
	free(line);
	return true;
}

static void greet(struct smtp_session *s);

static void process(struct smtp_session *s)
{
	/* session_input_ok: also stops while the client is not reading our
	 * replies (RFC 2920 pipelining lets it send many commands at once), so
	 * pipelined commands cannot pile up output. */
	while (s->srv != NULL && session_input_ok(&s->base)) {
		struct buf *rb = &s->base.c->rbuf;
		size_t used;

		switch (s->state) {
		case SMTP_S_PREGREET:
			if (rb->len > 0 && s->rdns_wait) {
				/* Our own wait for the reverse name (the client passed
				 * or skipped the pregreet test): not a violation; greet
				 * now and answer what it sent (Received says "unknown"
				 * unless the name comes before it is written). */
				s->rdns_wait = false;
				loop_timer_cancel(s->base.l, &s->base.timer);
				greet(s);
				return;
			}
			if (rb->len > 0) {
				smtp_reply(s, 554, "5.5.0",
					   "SMTP protocol violation: input before greeting");
				session_close(&s->base, "pregreet");
			}
			return;
		case SMTP_S_TLSWAIT:
			return;
		case SMTP_S_CMD:
		case SMTP_S_AUTHLINE:
			if (!read_line(s, rb))
				return;
			break;
		case SMTP_S_DATA:
			if (rb->len == 0)
				return;
			if (smtp_data_feed(&s->tx->dec, rb->data, rb->len, &used) == 1) {
				buf_consume(rb, used);
				smtp_data_done(s);
			} else {
				buf_consume(rb, used);
				return;
			}
			break;
		case SMTP_S_BDAT:
			if (s->bdat_left > 0) {
				if (rb->len == 0)
					return;
				size_t n = rb->len;
				if ((uint64_t)n > s->bdat_left)
					n = (size_t)s->bdat_left;
				if (!s->bdat_discard)
					smtp_data_feed(&s->tx->dec, rb->data, n, &used);
				buf_consume(rb, n);
				s->bdat_left -= n;
			}
			if (s->bdat_left > 0)
				return;
			smtp_bdat_chunk_done(s);
			break;
		}
		check_errors(s);
	}
}

static void on_input(struct session *base)
{
	process(smtp_session_of(base));
}

static void greet(struct smtp_session *s)
{
	s->base.greeted = true;
	smtp_set_state(s, SMTP_S_CMD);
	session_idle_restart(&s->base);
	session_backstop(&s->base);
	/* RFC 5321 4.3.1 / 3.1 */
	smtp_reply(s, 220, NULL, "%s ESMTP postern", s->srv->cfg->hostname);
	if (s->base.c != NULL && s->base.c->rbuf.len > 0)
		process(s);
}

static struct smtp_pregreet_pass *pregreet_slot(struct smtp_server *srv, const char *ip)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const char *p = ip; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &srv->pregreet_passed[h % SMTP_PREGREET_SLOTS];
}

static bool pregreet_known(struct smtp_server *srv, const char *ip)
{
	const struct smtp_pregreet_pass *p = pregreet_slot(srv, ip);
	return strcmp(p->ip, ip) == 0 && p->until_ms > loop_now(srv->l);
}

static bool greet_pending(const struct smtp_session *s)
{
	return s->srv != NULL && s->base.c != NULL && s->base.phase != SESSION_CLOSING &&
	       s->state == SMTP_S_PREGREET;
}

static void on_rdns_wait(void *arg)
{
	struct smtp_session *s = arg;

	s->base.timer = NULL;
	s->rdns_wait = false;
	if (greet_pending(s))
		greet(s);
}

/* The greeting, or (MX) a short wait for the reverse name first. */
static void greet_or_wait(struct smtp_session *s)
{
	uint64_t waited = loop_now(s->base.l) - s->base.connect_ms;

	if (s->role == SMTP_ROLE_MX && s->rdns_q != NULL && waited < SMTP_RDNS_WAIT_MS) {
		s->rdns_wait = true;
		s->base.timer = loop_timer_add(s->base.l, SMTP_RDNS_WAIT_MS - waited,
					       on_rdns_wait, s);
		return;
	}
	greet(s);
}

static void on_rdns(void *arg, const char *name, bool tempfail)
{
	struct smtp_session *s = arg;

	s->rdns_q = NULL;
	s->rdns_temp = tempfail;
	if (name != NULL)
		s->rdns = xstrdup(name);
	if (s->rdns_wait) {
		s->rdns_wait = false;
		loop_timer_cancel(s->base.l, &s->base.timer);
		if (greet_pending(s))
			greet(s);
	}
}

void smtp_server_set_dns(struct smtp_server *srv, struct dns *dns)
{
	srv->dns = dns;
}

void smtp_server_set_policy(struct smtp_server *srv, struct policy *p)
{
	srv->policy = p;
}

void smtp_server_set_filter(struct smtp_server *srv, struct filter *f)
{
	srv->filter = f;
}

/* The connection stage's verdict on the greeting (filter.h): false when s
 * was refused (421 rate, 554 blocked) and is closing. */
static bool filter_greeting_ok(struct smtp_session *s, const struct filter_verdict *v)
{
	if (v->code == 0)
		return true;
	/* RFC 5321 3.1: a 554 greeting (then only QUIT) or 421 */
	log_info("smtp refused client=%s: %d %s", s->base.ip, v->code, v->text);
	if (v->code == 554 && s->role == SMTP_ROLE_MX) {
		/* the server MUST wait for QUIT, and SHOULD answer anything
		 * else with 503 (check_rules); smtp_max_errors and the idle
		 * timeout bound a client that never sends it */
		s->refused = true;
		s->base.greeted = true;
		smtp_set_state(s, SMTP_S_CMD);
		session_idle_restart(&s->base);
		smtp_reply(s, v->code, v->ecode, "%s %s", s->srv->cfg->hostname, v->text);
		if (s->base.c != NULL && s->base.c->rbuf.len > 0)
			process(s);
		return false;
	}
	smtp_reply(s, v->code, v->ecode, "%s %s", s->srv->cfg->hostname, v->text);
	session_close(&s->base, v->code == 421 ? "connection rate" : "blocked");
	return false;
}

void smtp_server_set_srs(struct smtp_server *srv, char **secrets, size_t n, unsigned max_age)
{
	srv->srs_secrets = secrets;
	srv->n_srs = secrets != NULL ? n : 0;
	srv->srs_max_age = max_age;
}

static void on_pregreet(void *arg)
{
	struct smtp_session *s = arg;

	s->base.timer = NULL;
	if (s->srv == NULL || s->base.c == NULL || s->base.phase == SESSION_CLOSING ||
	    s->state != SMTP_S_PREGREET)
		return;
	if (s->fc != NULL) {
		/* what the DNS lists answered during the wait */
		struct filter_verdict v;
		filter_conn_greet(s->fc, &v);
		if (!filter_greeting_ok(s, &v))
			return;
	}
	/* Only a client greeted remembers its pass: one dropped (dnsbl_action
	 * = drop) would skip the wait next time, and with it the lists'
	 * answers that the greeting waits for. */
	struct smtp_pregreet_pass *p = pregreet_slot(s->srv, s->base.ip);
	snprintf(p->ip, sizeof(p->ip), "%s", s->base.ip);
	p->until_ms = loop_now(s->base.l) + SMTP_PREGREET_TTL_MS;
	greet_or_wait(s);
}

void smtp_reset_session(struct smtp_session *s)
{
	smtp_tx_free(s);
	x_free(&s->helo);
	s->helo_spf_known = false;
	x_free(&s->auth_user);
	sasl_server_reset(&s->sasl);
	s->esmtp = false;
}

static void on_tls_ready(struct session *base)
{
	struct smtp_session *s = smtp_session_of(base);

	if (!s->base.greeted) {
		greet(s); /* implicit TLS (submissions) */
		return;
	}
	/* RFC 3207 4.2: after STARTTLS the session starts over (no greeting). */
	smtp_reset_session(s);
	smtp_set_state(s, SMTP_S_CMD);
	session_idle_restart(&s->base);
	if (s->base.c->rbuf.len > 0)
		process(s);
}

static const struct session_ops smtp_session_ops = {
	.name = "smtp",
	.input = on_input,
	.tls_ready = on_tls_ready,
	.idle_ms = idle_ms,
	.timeout = on_timeout,
	.closed = on_closed,
	.free = session_free,
};

bool smtp_auth_allowed(const struct smtp_session *s)
{
	/* RFC 4954 4: no plaintext passwords on an unprotected channel, except
	 * from loopback when configured (local webmail, tests). */
	return s->base.tls || (s->base.loopback && s->srv->cfg->smtp_auth_plaintext_loopback);
}

void smtp_server_set_kick(struct smtp_server *srv, void (*kick)(void *arg), void *arg)
{
	srv->kick = kick;
	srv->kick_arg = arg;
}

void smtp_server_accept(struct smtp_server *srv, int fd, enum smtp_role role)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	SSL_CTX *ctx = role == SMTP_ROLE_SUBMISSIONS ? srv->tls : NULL;
	const struct config *cfg = srv->cfg;

	s->srv = srv;
	s->role = role;
	s->state = role == SMTP_ROLE_SUBMISSIONS ? SMTP_S_TLSWAIT : SMTP_S_PREGREET;
	if (role == SMTP_ROLE_SUBMISSIONS && ctx == NULL) {
		log_err("smtp: submissions listener without TLS context; closing");
		close(fd);
		free(s);
		return;
	}
	if (session_open(&s->base, &smtp_session_ops, srv->l, &srv->sessions, fd, ctx) < 0) {
		free(s);
		return;
	}
	unsigned sec = cfg->smtp_timeout > cfg->smtp_data_timeout ? cfg->smtp_timeout
								  : cfg->smtp_data_timeout;
	s->base.backstop_ms = (sec + SMTP_BACKSTOP_S) * 1000u;
	s->base.output_limit = (unsigned)cfg->session_output_limit; /* at most 1 GiB */
	log_info("smtp connect client=%s port=%d role=%s", s->base.ip, s->base.c->peer_port,
		 role_name(role));

	/* Connection limits, total and per IP. */
	int same = session_list_count_ip(&srv->sessions, s->base.ip);
	if ((cfg->smtp_max_connections > 0 && srv->sessions.n > cfg->smtp_max_connections) ||
	    (cfg->smtp_max_connections_per_ip > 0 && same > cfg->smtp_max_connections_per_ip)) {
		if (role != SMTP_ROLE_SUBMISSIONS)
			smtp_reply(s, 421, "4.7.0", "%s Error: too many connections",
				   cfg->hostname);
		session_close(&s->base, "too many connections");
		return;
	}
	session_backstop(&s->base);
	/* The connection stage (filter.h): rate, local lists; the DNSBL
	 * lookups start and run during the pregreet wait. */
	if (srv->filter != NULL) {
		struct filter_verdict v;
		s->fc = filter_conn_new(srv->filter, s->base.ip, role == SMTP_ROLE_MX, &v);
		if (role != SMTP_ROLE_SUBMISSIONS && !filter_greeting_ok(s, &v))
			return;
	}
	/* RFC 5321 4.4: the Received "from" clause names the client's verified
	 * reverse name; looked up now, used if there by the time it is written. */
	if (srv->dns != NULL)
		s->rdns_q = dns_verify_ptr_ex(srv->dns, s->base.ip, on_rdns, s);
	if (role == SMTP_ROLE_SUBMISSIONS) {
		session_idle_restart(&s->base); /* handshake must finish in time */
	} else if (role == SMTP_ROLE_MX && cfg->smtp_pregreet_delay_ms > 0 &&
		   !pregreet_known(srv, s->base.ip)) {
		s->base.timer = loop_timer_add(srv->l, (uint64_t)cfg->smtp_pregreet_delay_ms,
					       on_pregreet, s);
	} else {
		greet_or_wait(s);
	}
}

/* ---- the server ---- */

struct smtp_server *smtp_server_new(struct loop *l, struct pool *workers, struct store *st,
				    const struct config *cfg, SSL_CTX *tls, struct auth_login *login)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	struct timespec ts;

	srv->l = l;
	srv->workers = workers;
	srv->st = st;
	srv->cfg = cfg;
	srv->tls = tls;
	srv->login = login;
	srv->pregreet_passed = xcalloc(SMTP_PREGREET_SLOTS, sizeof(*srv->pregreet_passed));
	clock_gettime(CLOCK_REALTIME, &ts);
	srv->txseq = (uint32_t)ts.tv_nsec;
	return srv;
}

/* Ends s at shutdown: 421 (RFC 5321 3.8), then close. */
static void shutdown_session(struct smtp_session *s, const char *hostname)
{
	/* not in the middle of a TLS handshake (as on_timeout) */
	if (s->state != SMTP_S_TLSWAIT)
		smtp_reply(s, 421, "4.3.2", "%s Service shutting down", hostname);
	session_close(&s->base, "shutdown");
}

void smtp_session_resume(struct smtp_session *s)
{
	if (s->srv == NULL || s->srv->stopping) {
		/* The real answer was given; nothing more is read. */
		shutdown_session(s, s->srv != NULL ? s->srv->cfg->hostname : "postern");
		return;
	}
	session_unpark(&s->base);
}

static void shutdown_one(struct session *b, void *arg)
{
	struct smtp_server *srv = arg;
	shutdown_session(smtp_session_of(b), srv->cfg->hostname);
}

/* A session parked on an async step would lose its answer if closed now:
 * for a commit, a 421 to a message that is in fact stored makes the sender
 * send it again. Those are left to finish (smtp_session_resume closes them);
 * every other session is told 421 now. */
int smtp_server_shutdown(struct smtp_server *srv, int *busy_r)
{
	srv->stopping = true;
	return session_list_shutdown(&srv->sessions, shutdown_one, srv, busy_r);
}

void smtp_server_cancel_policy(struct smtp_server *srv)
{
	struct session *next;
	for (struct session *b = srv->sessions.head; b != NULL; b = next) {
		next = b->next;
		struct smtp_session *s = smtp_session_of(b);
		if (s->tx == NULL)
			continue;
		struct smtp_tx *tx = s->tx;
		if (tx->flt_wait && !filter_tx_worker_busy(tx->flt)) {
			/* waiting for clamd, a milter or the DNS lists: nothing
			 * was stored, the 421 is the truth */
			tx->flt_wait = false;
			filter_tx_free(&tx->flt);
			shutdown_session(s, srv->cfg->hostname);
			if (session_release(&s->base))
				continue;
		}
		if (tx->flt_pause) {
			/* its input paused by the filter (clamd or a milter
			 * reading slowly): the message is not complete */
			tx->flt_pause = false;
			filter_tx_free(&tx->flt);
			shutdown_session(s, srv->cfg->hostname);
			if (session_release(&s->base))
				continue;
		}
		if (!tx->pol_wait)
			continue;
		/* Nothing of it was stored: the 421 is the truth. */
		tx->pol_wait = false;
		policy_tx_free(&tx->pol);
		shutdown_session(s, srv->cfg->hostname);
		session_release(&s->base);
	}
}

void smtp_server_free(struct smtp_server **srvp)
{
	struct smtp_server *srv = *srvp;

	if (srv == NULL)
		return;
	while (srv->sessions.head != NULL) {
		struct smtp_session *s = smtp_session_of(srv->sessions.head);
		shutdown_session(s, srv->cfg->hostname);
		/* The conn's on_close (from the loop) frees the session. */
		unlink_session(s);
	}
	free(srv->pregreet_passed);
	free(srv);
	*srvp = NULL;
}
