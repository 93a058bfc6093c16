/* The outbound SMTP client (see client.h).
 *
 * One struct smtp_client per connection, a state machine driven by the
 * conn's callbacks and one timer:
 *
 *   CONNECT (non-blocking connect, connect_timeout)
 *   -> [IMPLICIT: TLS handshake] -> GREETING -> EHLO (-> HELO on refusal)
 *   -> [STARTTLS -> TLS handshake -> EHLO] -> [AUTH] -> READY (open_cb)
 *   READY -> a transaction: [RSET] MAIL RCPT... DATA (one write when the
 *   server offers PIPELINING, RFC 2920 3.1: DATA last in the group; replies
 *   matched in order), the message pumped block by block on the conn's
 *   drain notification, "." -> READY (done_cb)
 *
 * Every wait is under the timer: command_timeout for a reply to a command
 * (RFC 5321 4.5.3.2.1-5), data_timeout per data block written and for the
 * reply to the final dot (4.5.3.2.5-6). A reply that breaks the grammar or
 * a limit (src/smtp/reply.h) ends the connection: TEMP for whatever is open.
 *
 * STARTTLS with tls MAY: a failed handshake is retried once, at once, on a
 * new connection without TLS (the contract's "retry without TLS"; as Postfix
 * with smtp_tls_security_level=may). ENCRYPT and VERIFY: no STARTTLS or a
 * failed handshake is TEMP.
 *
 * Ownership: the conn's on_close always follows conn_close, so a client
 * whose conn exists is freed only there; smtp_client_close marks it dropped
 * (no callback runs after that) and lets on_close free it. */
#include "smtp/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/conn.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "mime/downgrade.h"
#include "smtp/reply.h"

/* One block of the message per drain; the conn holds at most about
 * CLIENT_BLOCK * 3 (base64/QP growth) + CLIENT_LOW octets of it. */
#define CLIENT_BLOCK (64 * 1024)
#define CLIENT_LOW (16 * 1024)
/* RFC 5321 4.5.3.1.6: a text line is at most 998 octets plus CRLF. */
#define CLIENT_LINE_MAX 998

enum cstate {
	ST_CONNECT,
	ST_TLS, /* handshake in progress (implicit or after STARTTLS) */
	ST_GREETING,
	ST_EHLO,
	ST_HELO,
	ST_STARTTLS,
	ST_AUTH,      /* AUTH PLAIN, or AUTH LOGIN (wait 334) */
	ST_AUTH_USER, /* AUTH LOGIN: user sent */
	ST_AUTH_PASS, /* AUTH LOGIN: password sent */
	ST_READY,
	ST_TX,        /* replies of RSET/MAIL/RCPT/DATA */
	ST_DATA,      /* pumping the message */
	ST_DOT,       /* waiting for the reply to the final dot */
	ST_DOT_EMPTY, /* 354 with no recipient accepted: "." sent, reply ignored */
	ST_DEAD,
};

/* The wire form of the message (RFC 5321 4.5.2, 4.5.3.1.6, 2.3.8): CRLF line
 * ends (a lone LF or CR becomes CRLF), a dot doubled at the start of a line,
 * a line over 998 octets broken. */
struct wire {
	bool bol; /* at the beginning of a line */
	bool cr;  /* a CR held */
	unsigned len;
};

struct smtp_client {
	struct loop *l;
	struct smtp_client_config cfg;
	struct smtp_client_target t;
	enum smtp_client_tls tls_mode; /* t.tls, or NONE on the retry without TLS */
	enum cstate st;
	int fd; /* while connecting */
	bool fd_registered;
	struct conn *conn;
	struct timer *timer;
	struct timer *cb_timer;
	bool dropped;   /* smtp_client_close was called */
	bool opened;    /* open_cb ran */
	bool tls_retry; /* MAY: this connection is the one without TLS */

	smtp_client_open_cb *open_cb;
	void *open_arg;
	smtp_client_done_cb *done_cb;
	void *done_arg;

	struct smtp_reply reply;
	struct smtp_ehlo ehlo;
	bool esmtp;
	bool need_rset;
	char *diag; /* a local diagnostic for a deferred callback */
	enum smtp_status fail_status;

	struct smtp_client_info info;
	char peer[160];
	char *tls_info;

	/* the transaction */
	struct smtp_client_msg *m;
	bool pipelining;
	bool rset_first;
	size_t step;      /* the next reply: 0 RSET, 1 MAIL, 2 + i RCPT i, 2 + n DATA */
	size_t sent_upto; /* without pipelining: the last step written */
	bool *accepted;
	size_t n_accepted;
	bool mail_ok;
	uint64_t data_off;
	bool downgrade;
	struct mime_dg dg;
	struct wire w;
	struct buf out;
	char *block;        /* CLIENT_BLOCK octets read from the message */
	bool deferred_done; /* a local verdict: done_cb from the loop */
};

static void client_fail(struct smtp_client *c, enum smtp_status st, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

/* How many open_cb / done_cb calls are on this thread's stack (for
 * smtp_client_close). Not kept in the client: a callback may free it. */
static _Thread_local int cb_depth;

/* ---- small helpers ---- */

static void client_arm(struct smtp_client *c, unsigned secs);

static void client_free(struct smtp_client *c)
{
	loop_timer_cancel(c->l, &c->timer);
	loop_timer_cancel(c->l, &c->cb_timer);
	if (c->fd >= 0) {
		if (c->fd_registered)
			loop_del(c->l, c->fd);
		close(c->fd);
	}
	if (c->downgrade)
		mime_dg_free(&c->dg);
	smtp_reply_free(&c->reply);
	buf_free(&c->out);
	free(c->block);
	free(c->accepted);
	free(c->diag);
	free(c->tls_info);
	free((char *)c->t.host);
	free((char *)c->cfg.helo);
	free((char *)c->t.auth_user);
	if (c->t.auth_pass) {
		explicit_bzero((char *)c->t.auth_pass, strlen(c->t.auth_pass));
		free((char *)c->t.auth_pass);
	}
	free(c);
}

static void client_send(struct smtp_client *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void client_send(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	if (c->conn)
		conn_writes(c->conn, s);
	free(s);
}

/* RFC 5321 4.2.1: only 2yz is a positive completion. A 3yz is an
 * intermediate reply: to the final dot, or to DATA in place of 354
 * (handled before), it completes nothing, so the recipient is not done. */
static enum smtp_status code_status(int code)
{
	if (code >= 200 && code < 300)
		return SMTP_ST_OK;
	return code >= 500 ? SMTP_ST_PERM : SMTP_ST_TEMP;
}

static void rcpt_set(struct smtp_client_rcpt *r, enum smtp_status st, int code, const char *enh,
                     const char *text)
{
	r->status = st;
	r->code = code;
	snprintf(r->enh, sizeof r->enh, "%s", enh ? enh : "");
	free(r->reply);
	r->reply = xstrdup(text ? text : "");
}

/* The enhanced code of a reply, or one made of its class (RFC 3463 3.1:
 * X.0.0 when nothing more precise is known). */
static void reply_enh(const struct smtp_reply *r, char *enh, size_t n)
{
	if (r->enh[0])
		snprintf(enh, n, "%s", r->enh);
	else
		snprintf(enh, n, "%d.0.0", r->code / 100 == 2 ? 2 : r->code / 100 == 5 ? 5 : 4);
}

/* ---- the end of a transaction, of the connection ---- */

static void client_tx_reset(struct smtp_client *c)
{
	free(c->accepted);
	c->accepted = NULL;
	c->n_accepted = 0;
	if (c->downgrade)
		mime_dg_free(&c->dg);
	c->downgrade = false;
	buf_free(&c->out);
	free(c->block);
	c->block = NULL;
}

static void client_done(struct smtp_client *c, bool conn_ok)
{
	struct smtp_client_msg *m = c->m;
	smtp_client_done_cb *cb = c->done_cb;
	void *arg = c->done_arg;
	c->m = NULL;
	c->done_cb = NULL;
	client_tx_reset(c);
	if (m == NULL || cb == NULL || c->dropped)
		return;
	cb_depth++;
	cb(arg, c, m, conn_ok); /* may free c (smtp_client_close) */
	cb_depth--;
}

/* A transaction cut short: what is not final is TEMP with diag. */
static void client_tx_abort(struct smtp_client *c, const char *diag)
{
	struct smtp_client_msg *m = c->m;
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n_rcpt; i++)
		if (m->rcpt[i].status == SMTP_ST_NONE || m->rcpt[i].status == SMTP_ST_OK)
			rcpt_set(&m->rcpt[i], SMTP_ST_TEMP, 0, "4.4.2", diag);
	client_done(c, false);
}

static void client_open_done(struct smtp_client *c, bool ok, enum smtp_status st, const char *diag)
{
	if (c->opened || c->dropped)
		return;
	c->opened = true;
	if (ok)
		c->st = ST_READY;
	cb_depth++;
	c->open_cb(c->open_arg, c, ok, ok ? SMTP_ST_NONE : st, diag); /* may free c */
	cb_depth--;
}

/* The connection is unusable: close it, tell whoever waits. */
static void client_fail(struct smtp_client *c, enum smtp_status st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *diag = xvasprintf(fmt, ap);
	va_end(ap);
	enum cstate was = c->st;
	c->st = ST_DEAD;
	loop_timer_cancel(c->l, &c->timer);
	if (c->conn)
		conn_close(c->conn);
	log_debug("smtp client %s: %s", c->peer, diag);
	if (!c->opened)
		client_open_done(c, false, st, diag);
	else if (c->m && was != ST_READY)
		client_tx_abort(c, diag);
	free(diag);
}

static void client_on_timer(void *arg)
{
	struct smtp_client *c = arg;
	c->timer = NULL;
	if (c->st == ST_TLS && c->tls_mode == SMTP_TLS_MAY && !c->opened && c->conn) {
		/* a handshake that hangs fails as one that breaks: on_close
		 * retries without TLS */
		conn_close(c->conn);
		return;
	}
	const char *what = "a reply";
	switch (c->st) {
	case ST_CONNECT:
		what = "the connection";
		break;
	case ST_TLS:
		what = "the TLS handshake";
		break;
	case ST_GREETING:
		what = "the greeting";
		break;
	case ST_DATA:
		what = "the message data to be sent";
		break;
	case ST_DOT:
		what = "the reply to the end of data";
		break;
	default:
		break;
	}
	client_fail(c, SMTP_ST_TEMP, "timeout waiting for %s", what);
}

/* RFC 5321 4.5.3.2: each wait has its own limit. */
static void client_arm(struct smtp_client *c, unsigned secs)
{
	loop_timer_cancel(c->l, &c->timer);
	c->timer = loop_timer_add(c->l, (uint64_t)(secs ? secs : 300) * 1000, client_on_timer, c);
}

/* ---- the session ---- */

static void client_connect(struct smtp_client *c);
static void client_pump(struct smtp_client *c);

static void client_ehlo(struct smtp_client *c)
{
	memset(&c->ehlo, 0, sizeof c->ehlo);
	c->st = ST_EHLO;
	client_send(c, "EHLO %s\r\n", c->cfg.helo);
	client_arm(c, c->cfg.command_timeout);
}

static void client_auth_or_ready(struct smtp_client *c)
{
	const char *u = c->t.auth_user, *pw = c->t.auth_pass ? c->t.auth_pass : "";
	if (u == NULL || u[0] == '\0') {
		loop_timer_cancel(c->l, &c->timer);
		client_open_done(c, true, SMTP_ST_NONE, NULL);
		return;
	}
	/* RFC 4954 4: no password in the clear. */
	if (!conn_is_tls(c->conn)) {
		client_fail(c, SMTP_ST_TEMP, "AUTH refused: the connection is not encrypted");
		return;
	}
	if (c->ehlo.auth_plain) {
		/* RFC 4616 2: authzid NUL authcid NUL passwd */
		size_t ul = strlen(u), pl = strlen(pw);
		char *raw = xmalloc(ul + pl + 2);
		raw[0] = '\0';
		memcpy(raw + 1, u, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, pw, pl);
		char *b = base64_encode(raw, ul + pl + 2);
		explicit_bzero(raw, ul + pl + 2);
		free(raw);
		c->st = ST_AUTH;
		client_send(c, "AUTH PLAIN %s\r\n", b);
		explicit_bzero(b, strlen(b));
		free(b);
	} else if (c->ehlo.auth_login) {
		c->st = ST_AUTH;
		client_send(c, "AUTH LOGIN\r\n");
	} else {
		client_fail(c, SMTP_ST_TEMP, "AUTH: the server offers neither PLAIN nor LOGIN");
		return;
	}
	client_arm(c, c->cfg.command_timeout);
}

static void client_after_ehlo(struct smtp_client *c)
{
	bool want = c->tls_mode == SMTP_TLS_MAY || c->tls_mode == SMTP_TLS_ENCRYPT ||
	            c->tls_mode == SMTP_TLS_VERIFY;
	if (want && !conn_is_tls(c->conn)) {
		if (c->ehlo.starttls && c->cfg.tls_ctx) {
			c->st = ST_STARTTLS;
			client_send(c, "STARTTLS\r\n");
			client_arm(c, c->cfg.command_timeout);
			return;
		}
		if (c->tls_mode != SMTP_TLS_MAY) {
			client_fail(c, SMTP_ST_TEMP, "TLS required but STARTTLS is not offered");
			return;
		}
	}
	client_auth_or_ready(c);
}

static void client_start_tls(struct smtp_client *c)
{
	bool verify =
	    c->tls_mode == SMTP_TLS_VERIFY || (c->tls_mode == SMTP_TLS_IMPLICIT && c->t.verify);
	c->st = ST_TLS;
	if (c->cfg.tls_ctx == NULL ||
	    conn_starttls_client(c->conn, c->cfg.tls_ctx, c->t.host, verify) < 0) {
		client_fail(c, SMTP_ST_TEMP, "TLS could not start");
		return;
	}
	client_arm(c, c->cfg.command_timeout);
}

static void client_on_tls(struct conn *conn, void *arg)
{
	struct smtp_client *c = arg;
	if (c->dropped || c->st != ST_TLS)
		return;
	free(c->tls_info);
	c->tls_info = xstrdup(conn_tls_info(conn));
	c->info.tls = c->tls_info;
	c->info.tls_verified = conn_tls_verified(conn);
	log_debug("smtp client %s: TLS %s%s", c->peer, c->tls_info,
	          c->info.tls_verified ? " (verified)" : "");
	if (c->tls_mode == SMTP_TLS_IMPLICIT) {
		c->st = ST_GREETING;
		client_arm(c, c->cfg.command_timeout);
		return;
	}
	/* RFC 3207 4.2: forget what was learnt before TLS, say EHLO again. */
	client_ehlo(c);
}

/* ---- the transaction ---- */

static bool present(const char *s)
{
	return s && s[0];
}

static void client_write_step(struct smtp_client *c, size_t step)
{
	struct smtp_client_msg *m = c->m;
	if (step == 0) {
		client_send(c, "RSET\r\n");
	} else if (step == 1) {
		struct buf b = BUF_INIT;
		buf_printf(&b, "MAIL FROM:<%s>", m->mail_from ? m->mail_from : "");
		if (c->ehlo.size) /* RFC 1870 6 */
			buf_printf(&b, " SIZE=%llu", (unsigned long long)m->size);
		if (m->body_8bit && c->ehlo.eightbitmime) /* RFC 6152 2 */
			buf_appends(&b, " BODY=8BITMIME");
		if (m->smtputf8 && c->ehlo.smtputf8) /* RFC 6531 3.4 */
			buf_appends(&b, " SMTPUTF8");
		if (c->ehlo.dsn) { /* RFC 3461 4.3, 4.4 */
			if (present(m->ret))
				buf_printf(&b, " RET=%s", m->ret);
			if (present(m->envid))
				buf_printf(&b, " ENVID=%s", m->envid);
		}
		buf_appends(&b, "\r\n");
		conn_write(c->conn, b.data, b.len);
		buf_free(&b);
	} else if (step < 2 + m->n_rcpt) {
		const struct smtp_client_rcpt *r = &m->rcpt[step - 2];
		struct buf b = BUF_INIT;
		buf_printf(&b, "RCPT TO:<%s>", r->addr);
		if (c->ehlo.dsn) { /* RFC 3461 4.1, 4.2 */
			if (present(r->notify))
				buf_printf(&b, " NOTIFY=%s", r->notify);
			if (present(r->orcpt))
				buf_printf(&b, " ORCPT=%s", r->orcpt);
		}
		buf_appends(&b, "\r\n");
		conn_write(c->conn, b.data, b.len);
		buf_free(&b);
	} else {
		client_send(c, "DATA\r\n");
	}
	c->sent_upto = step;
}

/* Deferred local verdicts (SIZE, SMTPUTF8): done_cb from the loop. */
static void client_on_cb_timer(void *arg)
{
	struct smtp_client *c = arg;
	c->cb_timer = NULL;
	if (c->deferred_done) {
		c->deferred_done = false;
		client_done(c, c->st == ST_READY);
	}
}

static void client_local_verdict(struct smtp_client *c, enum smtp_status st, const char *enh,
                                 const char *diag)
{
	struct smtp_client_msg *m = c->m;
	for (size_t i = 0; i < m->n_rcpt; i++)
		rcpt_set(&m->rcpt[i], st, 0, enh, diag);
	c->deferred_done = true;
	if (c->cb_timer == NULL)
		c->cb_timer = loop_timer_add(c->l, 0, client_on_cb_timer, c);
}

void smtp_client_send(struct smtp_client *c, struct smtp_client_msg *m, smtp_client_done_cb *cb,
                      void *arg)
{
	c->m = m;
	c->done_cb = cb;
	c->done_arg = arg;
	m->dsn_relayed = false;
	for (size_t i = 0; i < m->n_rcpt; i++)
		rcpt_set(&m->rcpt[i], SMTP_ST_NONE, 0, "", "");
	if (c->st != ST_READY) {
		for (size_t i = 0; i < m->n_rcpt; i++)
			rcpt_set(&m->rcpt[i], SMTP_ST_TEMP, 0, "4.4.2", "connection not ready");
		c->deferred_done = true;
		if (c->cb_timer == NULL)
			c->cb_timer = loop_timer_add(c->l, 0, client_on_cb_timer, c);
		return;
	}
	/* RFC 6531 3.2 / RFC 3463 5.6.7: no way to carry it. */
	if (m->smtputf8 && !c->ehlo.smtputf8) {
		client_local_verdict(
		    c, SMTP_ST_PERM, "5.6.7",
		    "the next hop does not support SMTPUTF8, which the message needs");
		return;
	}
	/* RFC 1870 6.1: do not send what the server said it refuses. */
	if (c->ehlo.size && c->ehlo.size_max > 0 && m->size > c->ehlo.size_max) {
		char d[160];
		snprintf(d, sizeof d, "message size %llu exceeds the next hop's limit of %llu",
		         (unsigned long long)m->size, (unsigned long long)c->ehlo.size_max);
		client_local_verdict(c, SMTP_ST_PERM, "5.3.4", d);
		return;
	}
	c->accepted = xcalloc(m->n_rcpt ? m->n_rcpt : 1, sizeof *c->accepted);
	c->n_accepted = 0;
	c->mail_ok = false;
	c->downgrade = m->body_8bit && !c->ehlo.eightbitmime;
	if (c->downgrade) {
		mime_dg_init(&c->dg, m->mime_cache, m->mime_cache_len);
		c->dg.pos = m->offset; /* the cache's offsets count from the file's start */
	}
	m->dsn_relayed = c->ehlo.dsn && (m->envid || m->ret);
	for (size_t i = 0; i < m->n_rcpt && c->ehlo.dsn; i++)
		if (m->rcpt[i].notify || m->rcpt[i].orcpt)
			m->dsn_relayed = true;
	c->pipelining = c->ehlo.pipelining;
	c->rset_first = c->need_rset;
	c->need_rset = false;
	c->step = c->rset_first ? 0 : 1;
	c->st = ST_TX;
	if (c->pipelining) {
		/* RFC 2920 3.1: RSET, MAIL, RCPT... and DATA last, in one write. */
		for (size_t s = c->step; s <= 2 + m->n_rcpt; s++)
			client_write_step(c, s);
	} else {
		client_write_step(c, c->step);
	}
	client_arm(c, c->cfg.command_timeout);
}

/* The message's replies end: what is still open takes the reply r. */
static void client_tx_final(struct smtp_client *c, const struct smtp_reply *r)
{
	struct smtp_client_msg *m = c->m;
	char enh[16];
	reply_enh(r, enh, sizeof enh);
	for (size_t i = 0; i < m->n_rcpt; i++)
		if (c->accepted[i])
			rcpt_set(&m->rcpt[i], code_status(r->code), r->code, enh, r->full.data);
	c->st = ST_READY;
	loop_timer_cancel(c->l, &c->timer);
	client_done(c, true);
}

static void client_tx_reply(struct smtp_client *c)
{
	struct smtp_client_msg *m = c->m;
	const struct smtp_reply *r = &c->reply;
	size_t n = m->n_rcpt;
	char enh[16];
	reply_enh(r, enh, sizeof enh);
	size_t step = c->step++;

	if (step == 0) {
		if (r->code / 100 != 2) {
			client_fail(c, SMTP_ST_TEMP, "RSET refused: %s", r->full.data);
			return;
		}
	} else if (step == 1) {
		c->mail_ok = r->code / 100 == 2;
		if (!c->mail_ok) {
			/* RFC 5321 3.3: the transaction did not start; every
			 * recipient takes MAIL's answer. */
			for (size_t i = 0; i < n; i++)
				rcpt_set(&m->rcpt[i],
				         code_status(r->code) == SMTP_ST_OK ? SMTP_ST_TEMP
				                                            : code_status(r->code),
				         r->code, enh, r->full.data);
			if (!c->pipelining) {
				c->need_rset = true;
				c->st = ST_READY;
				loop_timer_cancel(c->l, &c->timer);
				client_done(c, true);
				return;
			}
		}
	} else if (step < 2 + n) {
		struct smtp_client_rcpt *rc = &m->rcpt[step - 2];
		if (c->mail_ok) {
			if (r->code / 100 == 2) {
				c->accepted[step - 2] = true;
				c->n_accepted++;
			} else {
				rcpt_set(rc,
				         code_status(r->code) == SMTP_ST_OK ? SMTP_ST_TEMP
				                                            : code_status(r->code),
				         r->code, enh, r->full.data);
			}
		}
		if (!c->pipelining && step + 1 == 2 + n && c->n_accepted == 0) {
			/* no recipient: no DATA (the MAIL stands: RSET next time) */
			c->need_rset = true;
			c->st = ST_READY;
			loop_timer_cancel(c->l, &c->timer);
			client_done(c, true);
			return;
		}
	} else {
		/* DATA */
		if (r->code == 354 && c->n_accepted > 0) {
			c->st = ST_DATA;
			c->data_off = 0;
			c->w = (struct wire){.bol = true};
			client_pump(c);
			return;
		}
		if (r->code == 354) {
			/* RFC 2920 3.1: DATA accepted though no recipient was:
			 * an empty message ends it, its reply is ignored. */
			c->st = ST_DOT_EMPTY;
			client_send(c, ".\r\n");
			client_arm(c, c->cfg.data_timeout);
			return;
		}
		if (r->code / 100 == 2 || r->code / 100 == 3) {
			/* RFC 5321 4.3.2: DATA's only positive reply is 354. A
			 * 250 before the data was sent accepts nothing: taking
			 * it as the final reply would mark mail delivered that
			 * never left. */
			client_fail(c, SMTP_ST_TEMP, "DATA answered %d instead of 354: %s", r->code,
			            r->full.data);
			return;
		}
		c->need_rset = c->mail_ok;
		if (c->n_accepted > 0)
			client_tx_final(c, r);
		else {
			c->st = ST_READY;
			loop_timer_cancel(c->l, &c->timer);
			client_done(c, true);
		}
		return;
	}
	if (!c->pipelining && c->step > c->sent_upto) {
		client_write_step(c, c->step);
	}
	client_arm(c, c->cfg.command_timeout);
}

/* ---- the message on the wire ---- */

static void wire_put(struct wire *w, struct buf *out, const char *p, size_t n)
{
	buf_reserve(out, n + n / 64 + 8);
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (w->cr) {
			w->cr = false;
			buf_append(out, "\r\n", 2); /* CRLF, or a lone CR as a line end */
			w->bol = true;
			w->len = 0;
			if (ch == '\n')
				continue;
		}
		if (ch == '\r') {
			w->cr = true;
			continue;
		}
		if (ch == '\n') {
			buf_append(out, "\r\n", 2); /* a bare LF */
			w->bol = true;
			w->len = 0;
			continue;
		}
		/* Broken only when the line would exceed 998 octets: a line of
		 * exactly 998 (legal, RFC 5322 2.1.1) followed by its own CRLF
		 * must not gain an empty line (in the header, one ends it). */
		if (w->len >= CLIENT_LINE_MAX) {
			buf_append(out, "\r\n", 2);
			w->bol = true;
			w->len = 0;
		}
		/* RFC 5321 4.5.2; 4.5.3.1.6: the doubled dot is not counted */
		if (w->bol && ch == '.')
			buf_appendc(out, '.');
		buf_appendc(out, ch);
		w->bol = false;
		w->len++;
	}
}

static void wire_end(struct wire *w, struct buf *out)
{
	if (w->cr || !w->bol)
		buf_append(out, "\r\n", 2);
	w->cr = false;
	w->bol = true;
	buf_append(out, ".\r\n", 3);
}

static void client_pump(struct smtp_client *c)
{
	struct smtp_client_msg *m = c->m;
	if (c->block == NULL)
		c->block = xmalloc(CLIENT_BLOCK);
	char *block = c->block;
	buf_reset(&c->out);
	if (c->data_off < m->size) {
		size_t want = m->size - c->data_off < CLIENT_BLOCK ? (size_t)(m->size - c->data_off)
		                                                   : CLIENT_BLOCK;
		ssize_t got;
		do
			got = pread(m->fd, block, want, (off_t)(m->offset + c->data_off));
		while (got < 0 && errno == EINTR);
		if (got <= 0) {
			/* A local problem: the connection cannot be trusted with
			 * the rest, so it ends and the message is retried. */
			client_fail(c, SMTP_ST_TEMP, "reading the message: %s",
			            got < 0 ? strerror(errno) : "unexpected end of file");
			return;
		}
		c->data_off += (uint64_t)got;
		if (c->downgrade) {
			struct buf tmp = BUF_INIT;
			mime_dg_feed(&c->dg, block, (size_t)got, &tmp);
			if (c->data_off >= m->size)
				mime_dg_finish(&c->dg, &tmp);
			wire_put(&c->w, &c->out, tmp.data, tmp.len);
			buf_free(&tmp);
			if (mime_dg_failed(&c->dg)) {
				for (size_t i = 0; i < m->n_rcpt; i++)
					if (c->accepted[i])
						rcpt_set(&m->rcpt[i], SMTP_ST_PERM, 0, "5.6.3",
						         "the message cannot be converted to "
						         "7 bits for a next hop without 8BITMIME");
				client_fail(c, SMTP_ST_TEMP, "8BITMIME downgrade failed");
				return;
			}
		} else {
			wire_put(&c->w, &c->out, block, (size_t)got);
		}
	}
	if (c->data_off >= m->size) {
		wire_end(&c->w, &c->out);
		conn_write(c->conn, c->out.data, c->out.len);
		buf_free(&c->out);
		c->st = ST_DOT;
		client_arm(c, c->cfg.data_timeout);
		return;
	}
	conn_write(c->conn, c->out.data, c->out.len);
	buf_reset(&c->out);
	/* RFC 5321 4.5.3.2.5: each block has data_timeout to leave. */
	conn_notify_drain(c->conn, CLIENT_LOW);
	client_arm(c, c->cfg.data_timeout);
}

static void client_on_drain(struct conn *conn, void *arg)
{
	struct smtp_client *c = arg;
	if (c->dropped || c->st != ST_DATA)
		return;
	client_pump(c);
}

/* ---- replies ---- */

static void client_reply(struct smtp_client *c)
{
	const struct smtp_reply *r = &c->reply;
	int cls = r->code / 100;
	log_debug("smtp client %s: <- %s", c->peer, r->full.data);
	switch (c->st) {
	case ST_GREETING:
		if (cls == 2) {
			client_ehlo(c);
		} else {
			/* RFC 5321 3.1: 554 instead of 220: QUIT and go. */
			if (c->conn)
				conn_writes(c->conn, "QUIT\r\n");
			client_fail(c, cls == 5 ? SMTP_ST_PERM : SMTP_ST_TEMP, "greeting: %s",
			            r->full.data);
		}
		break;
	case ST_EHLO:
		if (cls == 2) {
			smtp_ehlo_parse(r, &c->ehlo);
			c->esmtp = true;
			c->info.esmtp = true;
			client_after_ehlo(c);
		} else if (r->code == 421) {
			client_fail(c, SMTP_ST_TEMP, "EHLO: %s", r->full.data);
		} else {
			/* RFC 5321 3.2: an old server: HELO instead */
			c->st = ST_HELO;
			client_send(c, "HELO %s\r\n", c->cfg.helo);
			client_arm(c, c->cfg.command_timeout);
		}
		break;
	case ST_HELO:
		if (cls == 2) {
			memset(&c->ehlo, 0, sizeof c->ehlo);
			c->esmtp = false;
			c->info.esmtp = false;
			client_after_ehlo(c);
		} else {
			client_fail(c, cls == 5 ? SMTP_ST_PERM : SMTP_ST_TEMP, "HELO: %s",
			            r->full.data);
		}
		break;
	case ST_STARTTLS:
		if (r->code == 220) {
			client_start_tls(c);
		} else if (c->tls_mode == SMTP_TLS_MAY) {
			client_auth_or_ready(c);
		} else {
			client_fail(c, SMTP_ST_TEMP, "STARTTLS: %s", r->full.data);
		}
		break;
	case ST_AUTH:
		if (r->code == 235) { /* RFC 4954 6: AUTH PLAIN with its initial response */
			loop_timer_cancel(c->l, &c->timer);
			client_open_done(c, true, SMTP_ST_NONE, NULL);
		} else if (r->code == 334 && !c->ehlo.auth_plain) {
			char *b = base64_encode(c->t.auth_user, strlen(c->t.auth_user));
			c->st = ST_AUTH_USER;
			client_send(c, "%s\r\n", b);
			free(b);
			client_arm(c, c->cfg.command_timeout);
		} else {
			client_fail(c, SMTP_ST_TEMP, "AUTH: %s", r->full.data);
		}
		break;
	case ST_AUTH_USER:
		if (r->code == 334) {
			const char *pw = c->t.auth_pass ? c->t.auth_pass : "";
			char *b = base64_encode(pw, strlen(pw));
			c->st = ST_AUTH_PASS;
			client_send(c, "%s\r\n", b);
			explicit_bzero(b, strlen(b));
			free(b);
			client_arm(c, c->cfg.command_timeout);
		} else {
			client_fail(c, SMTP_ST_TEMP, "AUTH: %s", r->full.data);
		}
		break;
	case ST_AUTH_PASS:
		if (r->code == 235) {
			loop_timer_cancel(c->l, &c->timer);
			client_open_done(c, true, SMTP_ST_NONE, NULL);
		} else {
			client_fail(c, SMTP_ST_TEMP, "AUTH: %s", r->full.data);
		}
		break;
	case ST_TX:
		client_tx_reply(c);
		break;
	case ST_DOT:
		client_tx_final(c, r);
		break;
	case ST_DOT_EMPTY:
		c->need_rset = true;
		c->st = ST_READY;
		loop_timer_cancel(c->l, &c->timer);
		client_done(c, true);
		break;
	default:
		/* Nothing asked: a 421 while idle, or junk. */
		client_fail(c, SMTP_ST_TEMP, "unexpected reply: %s", r->full.data);
		break;
	}
}

static void client_on_data(struct conn *conn, void *arg)
{
	struct smtp_client *c = arg;
	while (!c->dropped && c->st != ST_DEAD && conn->rbuf.len > 0) {
		const char *err;
		ssize_t n = smtp_reply_parse(conn->rbuf.data, conn->rbuf.len, c->cfg.max_reply,
		                             &c->reply, &err);
		if (n == 0)
			return;
		if (n < 0) {
			client_fail(c, SMTP_ST_TEMP, "bad reply from the next hop: %s", err);
			return;
		}
		buf_consume(&conn->rbuf, (size_t)n);
		client_reply(c);
		if (c->st == ST_TLS || c->st == ST_DATA)
			break; /* rbuf is the TLS layer's now / nothing is due */
	}
	if (c->st == ST_DATA && conn->rbuf.len > 0 && !c->dropped) {
		/* RFC 2920: no reply is due while the message is sent: a
		 * server that talks now has given up on it. */
		const char *err;
		ssize_t n = smtp_reply_parse(conn->rbuf.data, conn->rbuf.len, c->cfg.max_reply,
		                             &c->reply, &err);
		if (n != 0)
			client_fail(c, SMTP_ST_TEMP, "the next hop spoke during DATA: %s",
			            n > 0 ? c->reply.full.data : err);
	}
}

static void client_on_close(struct conn *conn, void *arg, enum conn_close_reason why)
{
	struct smtp_client *c = arg;
	c->conn = NULL;
	if (c->dropped) {
		client_free(c);
		return;
	}
	if (c->st == ST_TLS && c->tls_mode == SMTP_TLS_MAY && !c->opened) {
		/* MAY: try again at once without TLS (see the top). */
		log_info("smtp client %s: %s; retrying without TLS", c->peer,
		         conn_tls_error(conn)[0]    ? conn_tls_error(conn)
		         : why == CONN_CLOSED_BY_US ? "TLS handshake timed out"
		                                    : "TLS handshake failed");
		c->tls_mode = SMTP_TLS_NONE;
		c->tls_retry = true;
		client_connect(c);
		return;
	}
	if (c->st != ST_DEAD) {
		const char *e = why == CONN_TIMEOUT ? "timeout"
		                : why == CONN_EOF   ? "connection closed by the next hop"
		                                    : "connection error";
		if (c->st == ST_TLS && conn_tls_error(conn)[0])
			e = conn_tls_error(conn);
		client_fail(c, SMTP_ST_TEMP, "%s", e);
	}
}

static const struct conn_handler client_handler = {
    .on_data = client_on_data,
    .on_close = client_on_close,
    .on_tls = client_on_tls,
    .on_drain = client_on_drain,
};

/* ---- connecting ---- */

static void client_connected(struct smtp_client *c)
{
	loop_del(c->l, c->fd);
	c->fd_registered = false;
	int fd = c->fd;
	c->fd = -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	smtp_reply_free(&c->reply);
	smtp_reply_init(&c->reply);
	c->conn = conn_new(c->l, fd, NULL, &client_handler, c);
	if (c->tls_mode == SMTP_TLS_IMPLICIT) {
		client_start_tls(c);
		return;
	}
	c->st = ST_GREETING;
	client_arm(c, c->cfg.command_timeout);
}

static void client_on_connect_io(void *arg, uint32_t events)
{
	struct smtp_client *c = arg;
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		loop_del(c->l, c->fd);
		c->fd_registered = false;
		close(c->fd);
		c->fd = -1;
		client_fail(c, SMTP_ST_TEMP, "connect: %s", strerror(err));
		return;
	}
	client_connected(c);
}

static void client_on_connect_now(void *arg)
{
	struct smtp_client *c = arg;
	c->cb_timer = NULL;
	if (c->diag) {
		char *d = c->diag;
		c->diag = NULL;
		client_fail(c, SMTP_ST_TEMP, "%s", d);
		free(d);
	}
}

static void client_connect(struct smtp_client *c)
{
	c->st = ST_CONNECT;
	memset(&c->ehlo, 0, sizeof c->ehlo);
	c->esmtp = false;
	c->fd = socket(c->t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int r = -1;
	if (c->fd >= 0) {
		do
			r = connect(c->fd, (const struct sockaddr *)&c->t.addr, c->t.addrlen);
		while (r < 0 && errno == EINTR);
	}
	if (c->fd < 0 || (r < 0 && errno != EINPROGRESS)) {
		/* Reported from the loop, never inside smtp_client_open. */
		c->diag = xasprintf("connect: %s", strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		c->cb_timer = loop_timer_add(c->l, 0, client_on_connect_now, c);
		return;
	}
	if (loop_add(c->l, c->fd, LOOP_WRITE, client_on_connect_io, c) < 0) {
		c->diag = xasprintf("connect: epoll: %s", strerror(errno));
		close(c->fd);
		c->fd = -1;
		c->cb_timer = loop_timer_add(c->l, 0, client_on_connect_now, c);
		return;
	}
	c->fd_registered = true;
	client_arm(c, c->cfg.connect_timeout);
}

struct smtp_client *smtp_client_open(struct loop *l, const struct smtp_client_config *cfg,
                                     const struct smtp_client_target *t, smtp_client_open_cb *cb,
                                     void *arg)
{
	struct smtp_client *c = xcalloc(1, sizeof *c);
	c->l = l;
	c->cfg = *cfg;
	c->cfg.helo = xstrdup(cfg->helo && cfg->helo[0] ? cfg->helo : "localhost");
	if (c->cfg.max_reply == 0)
		c->cfg.max_reply = 64 * 1024;
	c->t = *t;
	c->t.host = xstrdup(t->host ? t->host : "");
	c->t.auth_user = t->auth_user && t->auth_user[0] ? xstrdup(t->auth_user) : NULL;
	c->t.auth_pass = t->auth_pass ? xstrdup(t->auth_pass) : NULL;
	c->tls_mode = t->tls;
	c->fd = -1;
	c->open_cb = cb;
	c->open_arg = arg;
	smtp_reply_init(&c->reply);
	buf_init(&c->out);

	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (t->addr.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&t->addr;
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
		port = ntohs(s->sin_port);
	} else if (t->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)&t->addr;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
		port = ntohs(s->sin6_port);
	}
	snprintf(c->peer, sizeof c->peer, "%s[%s]:%d", c->t.host, ip, port);
	c->info.peer = c->peer;
	c->info.tls = "";
	client_connect(c);
	return c;
}

const struct smtp_client_info *smtp_client_info(const struct smtp_client *c)
{
	return &c->info;
}

void smtp_client_close(struct smtp_client **cp)
{
	struct smtp_client *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->dropped = true;
	loop_timer_cancel(c->l, &c->timer);
	loop_timer_cancel(c->l, &c->cb_timer);
	if (c->conn == NULL) {
		client_free(c);
		return;
	}
	if (cb_depth == 0) {
		/* Not from one of our callbacks: the caller is done with the
		 * connection now (the queue's shutdown), and the loop may not
		 * run again to deliver a deferred on_close (the client and its
		 * conn would leak). Torn down at once: a transaction in flight
		 * is cut before its final dot, so the next hop keeps nothing;
		 * on_close runs inside conn_abort and frees c. */
		c->st = ST_DEAD;
		conn_abort(c->conn);
		return;
	}
	/* RFC 5321 4.1.1.10: QUIT when idle; we do not wait for its 221. */
	if (c->st == ST_READY)
		conn_writes(c->conn, "QUIT\r\n");
	c->st = ST_DEAD;
	conn_close(c->conn); /* on_close frees c, from the loop */
}

void smtp_client_msg_reset(struct smtp_client_msg *m)
{
	for (size_t i = 0; i < m->n_rcpt; i++) {
		free(m->rcpt[i].reply);
		m->rcpt[i].reply = NULL;
		m->rcpt[i].status = SMTP_ST_NONE;
		m->rcpt[i].code = 0;
		m->rcpt[i].enh[0] = '\0';
	}
	m->dsn_relayed = false;
}
