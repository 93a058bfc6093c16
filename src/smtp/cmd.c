/* SMTP commands: one table {name, flags, handler}; smtp_dispatch() enforces
 * every flag's rule in one place, so handlers only do their own work. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/login.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "filter/filter.h"
#include "mime/addr.h"
#include "policy/policy.h"
#include "policy/srs.h"
#include "smtp/parse.h"
#include "smtp/session.h"

#define CMD_HELO 0x001      /* after HELO/EHLO (RFC 5321 4.1.4) */
#define CMD_TLS_SUBM 0x002  /* submission roles: after TLS (or the loopback exception) */
#define CMD_AUTH_SUBM 0x004 /* submission roles: after AUTH (RFC 6409 4.3) */
#define CMD_TX 0x008        /* inside a transaction (after MAIL) */
#define CMD_NOTX 0x010      /* outside a transaction */
#define CMD_RCPT 0x020      /* at least one accepted RCPT */
#define CMD_CHUNK 0x040     /* carries a chunk (BDAT): read even when refused */
#define CMD_NOTLS 0x080     /* before TLS only (STARTTLS) */
#define CMD_NOAUTH 0x100    /* before AUTH only */
#define CMD_AUTHOK 0x200    /* only where AUTH is offered */
#define CMD_REFUSED 0x400   /* also after a 554 greeting (QUIT alone, RFC 5321 3.1) */

struct smtp_cmd {
	const char *name;
	unsigned flags;
	void (*handler)(struct smtp_session *s, const char *args);
};

static const char *hostname(const struct smtp_session *s)
{
	return s->srv->cfg->hostname;
}

/* ---- HELO / EHLO ---- */

/* Keeps the client's name printable for replies, logs and Received. */
static char *clean_helo(const char *args)
{
	size_t n = strcspn(args, " ");
	if (n > 255)
		n = 255;
	char *h = xstrndup(args, n);
	for (char *p = h; *p; p++) {
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || *p == '(' || *p == ')')
			*p = '?';
	}
	return h;
}

static void cmd_helo_common(struct smtp_session *s, const char *args, bool esmtp)
{
	/* RFC 5321 4.1.4: HELO/EHLO implies RSET. */
	smtp_tx_free(s);
	x_free(&s->helo);
	s->helo_spf_known = false;
	s->helo = clean_helo(args);
	s->esmtp = esmtp;
}

static void cmd_ehlo(struct smtp_session *s, const char *args)
{
	const struct config *cfg = s->srv->cfg;
	const char *lines[16];
	char first[300], size[48];
	size_t n = 0;

	if (*args == '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: EHLO hostname");
		return;
	}
	cmd_helo_common(s, args, true);
	snprintf(first, sizeof(first), "%s", hostname(s));
	snprintf(size, sizeof(size), "SIZE %zu", cfg->smtp_max_message_size);
	lines[n++] = first;
	lines[n++] = "PIPELINING";              /* RFC 2920 */
	lines[n++] = size;                      /* RFC 1870 */
	if (!s->base.tls && s->srv->tls != NULL)
		lines[n++] = "STARTTLS";        /* RFC 3207 */
	if (smtp_auth_allowed(s) && s->auth_user == NULL)
		lines[n++] = "AUTH PLAIN LOGIN"; /* RFC 4954 */
	lines[n++] = "ENHANCEDSTATUSCODES";     /* RFC 2034 */
	lines[n++] = "8BITMIME";                /* RFC 6152 */
	lines[n++] = "SMTPUTF8";                /* RFC 6531 */
	lines[n++] = "CHUNKING";                /* RFC 3030 */
	lines[n++] = "DSN";                     /* RFC 3461 */
	smtp_reply_lines(s, 250, lines, n);
}

static void cmd_helo(struct smtp_session *s, const char *args)
{
	if (*args == '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: HELO hostname");
		return;
	}
	cmd_helo_common(s, args, false);
	smtp_reply(s, 250, NULL, "%s", hostname(s));
}

/* ---- MAIL / RCPT ---- */

/* MAIL refused by a step after the transaction began: no transaction. */
static void mail_refused(struct smtp_session *s, int code, const char *ecode, const char *text)
{
	smtp_reply(s, code, ecode, "%s", text);
	smtp_tx_log(s, code);
	smtp_tx_free(s); /* policy's and the filter's go (text with them) */
}

/* filter_mail's answer (rates, milters), the session parked until now. */
static void on_mail_filter(void *arg, const struct filter_verdict *v)
{
	struct smtp_session *s = arg;

	s->tx->flt_wait = false;
	if (v->code != 0)
		mail_refused(s, v->code, v->ecode, v->text);
	else
		smtp_reply(s, 250, "2.1.0", "Ok");
	if (session_release(&s->base))
		return;
	smtp_session_resume(s);
}

/* The filter's MAIL step (filter.h): true when it answers later (the hold
 * taken: busy and parked, or kept when held already); false when MAIL was
 * answered now. */
static bool mail_filter(struct smtp_session *s, bool held)
{
	struct smtp_tx *tx = s->tx;
	struct filter_verdict v;

	if (tx->flt == NULL) {
		smtp_reply(s, 250, "2.1.0", "Ok");
		return false;
	}
	if (filter_mail(tx->flt, &v, on_mail_filter, s)) {
		tx->flt_wait = true;
		if (!held) {
			s->base.busy++;
			session_park(&s->base);
		}
		return true;
	}
	if (v.code != 0)
		mail_refused(s, v.code, v.ecode, v.text);
	else
		smtp_reply(s, 250, "2.1.0", "Ok");
	return false;
}

/* policy_mail's answer (spf_action = reject: RFC 7208 8.4 fail, 8.6
 * temperror), the session parked until now. */
static void on_mail_policy(void *arg, const struct policy_verdict *v)
{
	struct smtp_session *s = arg;

	s->tx->pol_wait = false;
	if (v->code != 0)
		mail_refused(s, v->code, v->ecode, v->text);
	else if (s->srv != NULL && mail_filter(s, true))
		return; /* the hold passes to the filter's wait */
	if (session_release(&s->base))
		return;
	smtp_session_resume(s);
}

static void cmd_mail(struct smtp_session *s, const char *args)
{
	struct smtp_mail_args m;
	struct smtp_perr e;

	if (smtp_parse_mail(args, &m, &e) < 0) {
		smtp_reply(s, e.code, e.ecode, "%s", e.text);
		return;
	}
	/* RFC 1870 6.1 */
	if (m.has_size && m.size > s->srv->cfg->smtp_max_message_size) {
		smtp_reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
		smtp_mail_args_free(&m);
		return;
	}
	if (s->auth_user != NULL && m.addr[0] != '\0') {
		int k = store_may_send_as(s->srv->st, s->auth_user, m.addr);
		if (k != 1) {
			if (k < 0)
				smtp_reply(s, 451, "4.3.0", "Error: temporary lookup failure");
			else
				smtp_reply(s, 553, "5.7.1",
					   "<%s>: Sender address rejected: not owned by user %s",
					   m.addr, s->auth_user);
			smtp_mail_args_free(&m);
			return;
		}
	}
	smtp_tx_new(s);
	struct smtp_tx *tx = s->tx;
	tx->from = m.addr;
	tx->smtputf8 = m.smtputf8;
	tx->body8 = m.body == SMTP_BODY_8BITMIME;
	tx->ret = m.ret;
	tx->envid = m.envid;
	tx->size_declared = m.has_size ? m.size : 0;
	m.addr = m.ret = m.envid = NULL;
	smtp_mail_args_free(&m);
	if (s->srv->filter != NULL && s->fc != NULL) {
		struct filter_tx_info fi = {
			.txid = tx->txid,
			.helo = s->helo,
			.rdns = s->rdns,
			.auth_user = s->auth_user,
			.mail_from = tx->from,
			.tls = s->base.tls,
		};
		tx->flt = filter_tx_new(s->fc, &fi);
	}
	if (s->srv->policy != NULL) {
		struct policy_conn c = {
			.txid = tx->txid,
			.ip = s->base.ip,
			.helo = s->helo,
			.rdns = s->rdns,
			/* still unanswered counts as a temporary failure */
			.rdns_temp = s->rdns == NULL && (s->rdns_temp || s->rdns_q != NULL),
			.auth_user = s->auth_user,
			.mx = s->role == SMTP_ROLE_MX,
			.helo_spf_known = s->helo_spf_known,
			.helo_spf = s->helo_spf,
		};
		tx->pol = policy_tx_new(s->srv->policy, &c, tx->from);
		/* SPF decides MAIL's answer (spf_action = reject): wait for it */
		if (policy_mail(tx->pol, on_mail_policy, s)) {
			tx->pol_wait = true;
			s->base.busy++;
			session_park(&s->base);
			return;
		}
	}
	mail_filter(s, false);
}

static void add_user(struct smtp_tx *tx, int64_t id)
{
	/* One message to many local recipients is stored once per user. */
	for (size_t i = 0; i < tx->n_users; i++) {
		if (tx->user_ids[i] == id)
			return;
	}
	tx->user_ids = xrealloc(tx->user_ids, (tx->n_users + 1) * sizeof(*tx->user_ids));
	tx->user_ids[tx->n_users++] = id;
}

static void add_remote(struct smtp_tx *tx, const char *addr, const struct smtp_rcpt_args *r)
{
	for (size_t i = 0; i < tx->n_remote; i++) {
		if (strcasecmp(tx->remote[i].addr, addr) == 0)
			return;
	}
	tx->remote = xrealloc(tx->remote, (tx->n_remote + 1) * sizeof(*tx->remote));
	struct store_remote_rcpt *rr = &tx->remote[tx->n_remote++];
	rr->addr = xstrdup(addr);
	rr->orcpt = r->orcpt ? xstrdup(r->orcpt) : NULL;
	rr->notify = r->notify ? xstrdup(r->notify) : NULL;
}

/* A recipient resolved and let through: into the transaction, 250. */
static void rcpt_accept(struct smtp_session *s, struct smtp_pending_rcpt *p)
{
	struct smtp_tx *tx = s->tx;
	const char *dom = p->domain != NULL ? p->domain : hostname(s);

	if (p->relay != NULL)
		add_remote(tx, p->relay, &p->r);
	for (size_t i = 0; i < p->t.n; i++) {
		if (p->t.v[i].user_id > 0) {
			add_user(tx, p->t.v[i].user_id);
		} else {
			add_remote(tx, p->t.v[i].addr, &p->r);
			/* a local alias leading elsewhere: forwarded mail
			 * (SRS, ARC seal: policy.h) */
			if (s->auth_user == NULL && tx->pol != NULL)
				policy_forward(tx->pol, dom);
		}
	}
	if (tx->pol != NULL)
		policy_rcpt(tx->pol, dom);
	tx->rcpts = xrealloc(tx->rcpts, (tx->n_rcpts + 1) * sizeof(*tx->rcpts));
	tx->rcpts[tx->n_rcpts].addr = p->r.addr;
	tx->rcpts[tx->n_rcpts].notify = p->r.notify;
	tx->rcpts[tx->n_rcpts].orcpt = p->r.orcpt;
	tx->n_rcpts++;
	p->r.addr = p->r.notify = p->r.orcpt = NULL;
	smtp_reply(s, 250, "2.1.5", "Ok");
}

/* The filter's answer to the pending RCPT. */
static void rcpt_answer(struct smtp_session *s, const struct filter_verdict *v)
{
	struct smtp_tx *tx = s->tx;

	if (v->code != 0)
		/* the filter's text is the reply's whole text (it names a list,
		 * a limit, or is a milter's own) */
		smtp_reply(s, v->code, v->ecode, "%s", v->text);
	else
		rcpt_accept(s, tx->prcpt);
	smtp_pending_rcpt_free(tx);
}

/* filter_rcpt's answer (DNS lists, rates, milters), the session parked. */
static void on_rcpt_filter(void *arg, const struct filter_verdict *v)
{
	struct smtp_session *s = arg;

	s->tx->flt_wait = false;
	rcpt_answer(s, v);
	if (session_release(&s->base))
		return;
	smtp_session_resume(s);
}

/* The filter's RCPT step (filter.h) for a resolved recipient (p taken). */
static void rcpt_filter(struct smtp_session *s, struct smtp_pending_rcpt *p)
{
	struct smtp_tx *tx = s->tx;
	struct filter_verdict v = {0};
	int64_t uid = 0;

	tx->prcpt = p;
	if (tx->flt == NULL) {
		rcpt_answer(s, &v);
		return;
	}
	for (size_t i = 0; i < p->t.n && uid == 0; i++)
		uid = p->t.v[i].user_id;
	if (filter_rcpt(tx->flt, p->r.addr, uid, &v, on_rcpt_filter, s)) {
		/* pipelined commands wait in the input buffer (RFC 2920 3.1) */
		tx->flt_wait = true;
		s->base.busy++;
		session_park(&s->base);
		return;
	}
	rcpt_answer(s, &v);
}

/* RCPT's checks and lookups: the pending recipient to hand to the filter,
 * or NULL when it was answered here. It runs inside cmd_rcpt's read
 * transaction on the loop's connection: reads only (a write would join
 * that transaction); the filter's steps come after it. */
static struct smtp_pending_rcpt *rcpt_resolve(struct smtp_session *s, const char *args)
{
	struct smtp_tx *tx = s->tx;
	struct smtp_rcpt_args r;
	struct smtp_perr e;
	struct store *st = s->srv->st;

	if (smtp_parse_rcpt(args, tx->smtputf8, &r, &e) < 0) {
		smtp_reply(s, e.code, e.ecode, "%s", e.text);
		return NULL;
	}
	/* RFC 5321 4.5.3.1.8 */
	if (tx->n_rcpts >= (size_t)s->srv->cfg->smtp_max_recipients) {
		smtp_reply(s, 452, "4.5.3", "Error: too many recipients");
		smtp_rcpt_args_free(&r);
		return NULL;
	}
	struct smtp_pending_rcpt *p = xcalloc(1, sizeof(*p));
	/* RFC 5321 4.5.1: <Postmaster> (no domain, any case; the parser gives
	 * "postmaster") must be accepted: the store resolves it to the
	 * postmaster target, whatever the relay rules. */
	bool postmaster = strcmp(r.addr, "postmaster") == 0;
	const char *domain = addr_domain(r.addr);
	/* ---- SRS (srs.h): a bounce coming home to an SRS address of ours ---- */
	if (s->srv->n_srs > 0 && domain != NULL && store_domain_is_local(st, domain)) {
		char *orig = NULL;
		const char *why = NULL;
		int k = srs_reverse((const char *const *)s->srv->srs_secrets, s->srv->n_srs, r.addr,
				    time(NULL), s->srv->srs_max_age, &orig, &why);
		if (k < 0) {
			/* RFC 3463 X.7.1 (delivery not authorized, message
			 * refused): the address is well formed and the domain
			 * ours, but its hash or age does not let us relay to what
			 * it names; 5.1.1 would wrongly say no such mailbox. */
			log_info("smtp srs refused rcpt=%s: %s", r.addr, why);
			smtp_reply(s, 550, "5.7.1", "<%s>: invalid SRS address", r.addr);
			smtp_rcpt_args_free(&r);
			free(p);
			return NULL;
		}
		const char *od = k > 0 ? addr_domain(orig) : NULL;
		if (k > 0 && (od == NULL || !store_domain_is_local(st, od))) {
			/* The original sender, wherever it is: relayed whatever
			 * the relay rules (our hash says we sent it out). */
			p->relay = orig;
			p->domain = xstrdup(domain);
			p->r = r;
			return p;
		}
		if (k > 0) {
			/* A sender of another of our domains: resolved below
			 * as any local recipient. */
			free(r.addr);
			r.addr = orig;
			domain = od;
		}
	}
	/* ---- end SRS ---- */
	p->domain = domain != NULL ? xstrdup(domain) : NULL;
	if (postmaster || (domain != NULL && store_domain_is_local(st, domain))) {
		int k = store_resolve(st, r.addr, &p->t);
		if (k <= 0) {
			if (k < 0)
				smtp_reply(s, 451, "4.3.0", "<%s>: Temporary lookup failure", r.addr);
			else
				smtp_reply(s, 550, "5.1.1",
					   "<%s>: Recipient address rejected: User unknown",
					   r.addr);
			p->r = r;
			tx->prcpt = p;
			smtp_pending_rcpt_free(tx);
			return NULL;
		}
		/* RFC 3463 X.2.2, temporary as Postfix and Dovecot's LMTP do by
		 * default (quota_full_tempfail): the account may be emptied. The
		 * size declared at MAIL (RFC 1870 6.2: a recipient's own limit
		 * may refuse it at RCPT) counts: a message that cannot fit is
		 * refused for that recipient alone, not at the end of data for
		 * every recipient (store_commit lets it take an account with
		 * room left over its limit when other recipients wait for it). */
		for (size_t i = 0; i < p->t.n; i++) {
			if (p->t.v[i].user_id > 0 &&
			    !store_quota_fits(st, p->t.v[i].user_id, tx->size_declared)) {
				smtp_reply(s, 452, "4.2.2", "<%s>: Mailbox full", r.addr);
				p->r = r;
				tx->prcpt = p;
				smtp_pending_rcpt_free(tx);
				return NULL;
			}
		}
	} else if (s->auth_user != NULL) {
		/* Authenticated submission to another domain: queued. */
		p->relay = xstrdup(r.addr);
	} else {
		smtp_reply(s, 554, "5.7.1", "<%s>: Relay access denied", r.addr);
		smtp_rcpt_args_free(&r);
		free(p->domain);
		free(p);
		return NULL;
	}
	p->r = r;
	return p;
}

static void cmd_rcpt(struct smtp_session *s, const char *args)
{
	struct store *st = s->srv->st;
	/* every lookup of this RCPT in one read transaction */
	bool lookups = store_lookups_begin(st);
	struct smtp_pending_rcpt *p = rcpt_resolve(s, args);
	if (lookups)
		store_lookups_end(st);
	if (p != NULL)
		rcpt_filter(s, p);
}

/* ---- DATA / BDAT ---- */

static void cmd_data(struct smtp_session *s, const char *args)
{
	struct smtp_tx *tx = s->tx;

	if (*args != '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	/* RFC 3030 2: DATA and BDAT do not mix in one transaction. */
	if (tx->bdat_used) {
		smtp_reply(s, 503, "5.5.1", "Error: DATA after BDAT");
		return;
	}
	if (smtp_content_start(s, SMTP_DATA_DOT) < 0) {
		smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
		return;
	}
	tx->data_used = true;
	smtp_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	smtp_set_state(s, SMTP_S_DATA);
}

/* After a BDAT whose chunk will not be read: the stream cannot be
 * resynchronised, so the channel is closed (RFC 5321 3.8: with 421). */
static void bdat_close(struct smtp_session *s)
{
	smtp_reply(s, 421, "4.5.0", "%s Error: BDAT chunk not read, closing connection",
		   hostname(s));
	session_close(&s->base, "bdat error");
}

/* Reads (and drops) the announced chunk, then replies (smtp_bdat_chunk_done). */
static void bdat_refuse(struct smtp_session *s, int code, const char *ecode, const char *text,
			bool abort_tx)
{
	s->bdat_discard = true;
	s->bdat_abort = abort_tx;
	s->bdat_code = code;
	s->bdat_ecode = ecode;
	s->bdat_text = text;
	if (s->bdat_left == 0)
		smtp_bdat_chunk_done(s);
	else
		smtp_set_state(s, SMTP_S_BDAT);
}

static void cmd_bdat(struct smtp_session *s, const char *args)
{
	struct smtp_tx *tx = s->tx;

	/* size and LAST were parsed by the dispatcher (CMD_CHUNK) */
	if (!tx->bdat_used) {
		if (smtp_content_start(s, SMTP_DATA_BDAT) < 0) {
			bdat_refuse(s, 451, "4.3.0", "Error: queue file write error", true);
			return;
		}
		tx->bdat_used = true;
	}
	s->bdat_discard = false;
	if (s->bdat_left == 0)
		smtp_bdat_chunk_done(s);
	else
		smtp_set_state(s, SMTP_S_BDAT);
}

/* ---- small commands ---- */

static void cmd_rset(struct smtp_session *s, const char *args)
{
	if (*args != '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: RSET");
		return;
	}
	smtp_tx_free(s);
	smtp_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 221, "2.0.0", "Bye");
	session_close(&s->base, "quit");
}

static void cmd_vrfy(struct smtp_session *s, const char *args)
{
	if (*args == '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	/* RFC 5321 3.5.3: no address harvesting. */
	smtp_reply(s, 252, "2.5.0", "Cannot VRFY user, but will accept message");
}

static void cmd_expn(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 502, "5.5.1", "Error: command not implemented");
}

static void cmd_help(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 214, "2.0.0",
		   "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
}

static void cmd_forbidden(struct smtp_session *s, const char *args)
{
	/* An HTTP or proxy request sent to the mail port (cross-protocol). */
	smtp_reply(s, 221, "2.7.0", "Error: I can break rules, too. Goodbye.");
	session_close(&s->base, "forbidden command");
}

static void cmd_starttls(struct smtp_session *s, const char *args)
{
	if (*args != '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: STARTTLS");
		return;
	}
	if (s->srv->tls == NULL) {
		smtp_reply(s, 454, "4.7.0", "TLS not available");
		return;
	}
	smtp_reply(s, 220, "2.0.0", "Ready to start TLS");
	smtp_set_state(s, SMTP_S_TLSWAIT);
	/* conn_starttls flushes the 220, drops pipelined plaintext (RFC 3207
	 * 4.2, command injection) and calls on_tls when done. */
	if (conn_starttls(s->base.c, s->srv->tls) < 0)
		session_close(&s->base, "starttls failed");
}

/* ---- AUTH (RFC 4954) ---- */

static void auth_fail_reply(void *arg)
{
	struct smtp_session *s = arg;

	s->base.delay = NULL;
	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING)
		return;
	smtp_reply(s, 535, "5.7.8", "Error: authentication failed");
	if (s->srv != NULL && s->srv->cfg->smtp_max_errors > 0 &&
	    s->errors >= s->srv->cfg->smtp_max_errors) {
		smtp_reply(s, 421, "4.7.0", "%s Error: too many errors", hostname(s));
		session_close(&s->base, "too many errors");
		return;
	}
	smtp_session_resume(s); /* at shutdown: the 535 was given, then 421 */
}

/* The login service's verdict (auth/login.h) in SMTP terms. */
static void auth_done(struct session *base, const struct auth_outcome *o)
{
	struct smtp_session *s = smtp_session_of(base);

	switch (o->verdict) {
	case AUTH_OK:
		s->auth_user = xstrdup(o->user);
		log_info("smtp auth ok client=%s user=%s", s->base.ip, s->auth_user);
		smtp_reply(s, 235, "2.7.0", "Authentication successful");
		break;
	case AUTH_FAIL:
		if (o->close) {
			smtp_reply(s, 421, "4.7.0", "%s Error: too many failed logins", hostname(s));
			session_close(&s->base, "too many failed logins");
			return;
		}
		/* The 535 comes after the service's delay: guessing slows down. */
		if (s->base.phase != SESSION_PARKED)
			session_park(&s->base);
		loop_timer_cancel(s->base.l, &s->base.delay);
		s->base.delay = loop_timer_add(s->base.l, o->delay_ms, auth_fail_reply, s);
		return;
	case AUTH_BLOCKED:
		smtp_reply(s, 454, "4.7.0", "Error: too many failed logins, try again later");
		s->errors++; /* see AUTH_WAIT */
		break;
	case AUTH_WAIT:
		smtp_reply(s, 454, "4.7.0",
			   "Error: too many failed logins for this account, try again in %u seconds",
			   o->retry_s);
		/* A 4yz is no error (smtp_reply), but a client repeating a
		 * refused AUTH gets a log line each time: smtp_max_errors
		 * bounds them per session as it does 5yz replies. */
		s->errors++;
		break;
	case AUTH_TEMPFAIL:
		smtp_reply(s, 454, "4.7.0", "Temporary authentication failure");
		break;
	}
	if (s->base.phase == SESSION_PARKED)
		smtp_session_resume(s);
}

/* The SASL state machine's answer (auth/sasl.h) framed in SMTP. */
static void auth_sasl(struct smtp_session *s, enum sasl_status st, struct sasl_out *out)
{
	switch (st) {
	case SASL_CONTINUE:
		/* RFC 4954 4: "334" SP base64 challenge */
		smtp_reply(s, 334, NULL, "%s", out->challenge);
		smtp_set_state(s, SMTP_S_AUTHLINE);
		break;
	case SASL_DONE:
		auth_login_start(s->srv->login, &s->base, &out->creds, auth_done);
		break;
	case SASL_CANCELLED:
		smtp_reply(s, 501, "5.7.0", "Authentication cancelled");
		break;
	case SASL_MALFORMED:
		smtp_reply(s, 501, "5.5.2", "Error: %s", out->error);
		break;
	case SASL_NOMECH:
		smtp_reply(s, 504, "5.5.4", "Error: unsupported authentication mechanism");
		break;
	}
}

static void cmd_auth(struct smtp_session *s, const char *args)
{
	char mech[32];
	size_t n = strcspn(args, " ");
	const char *ir = args + n;
	struct sasl_out out;

	while (*ir == ' ')
		ir++;
	if (n == 0 || n >= sizeof(mech)) {
		smtp_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism");
		return;
	}
	memcpy(mech, args, n);
	mech[n] = '\0';
	if (auth_login_blocked(s->srv->login, s->base.ip)) {
		smtp_reply(s, 454, "4.7.0", "Error: too many failed logins, try again later");
		s->errors++; /* as the service's refusals (auth_done) */
		return;
	}
	/* RFC 4954 4: the initial response is optional; "=" is an empty one. */
	auth_sasl(s, sasl_server_start(&s->sasl, mech, *ir != '\0' ? ir : NULL, &out), &out);
}

void smtp_auth_line(struct smtp_session *s, char *line)
{
	struct sasl_out out;

	smtp_set_state(s, SMTP_S_CMD);
	auth_sasl(s, sasl_server_step(&s->sasl, line, &out), &out);
}

/* ---- the table and the dispatcher ---- */

static const struct smtp_cmd smtp_cmds[] = {
	{"EHLO", 0, cmd_ehlo},
	{"HELO", 0, cmd_helo},
	{"MAIL", CMD_HELO | CMD_TLS_SUBM | CMD_AUTH_SUBM | CMD_NOTX, cmd_mail},
	{"RCPT", CMD_TX, cmd_rcpt},
	{"DATA", CMD_TX | CMD_RCPT, cmd_data},
	{"BDAT", CMD_CHUNK | CMD_TX | CMD_RCPT, cmd_bdat},
	{"RSET", 0, cmd_rset},
	{"NOOP", 0, cmd_noop},
	{"QUIT", CMD_REFUSED, cmd_quit},
	{"VRFY", 0, cmd_vrfy},
	{"EXPN", 0, cmd_expn},
	{"HELP", 0, cmd_help},
	{"STARTTLS", CMD_HELO | CMD_NOTLS, cmd_starttls},
	{"AUTH", CMD_HELO | CMD_TLS_SUBM | CMD_NOAUTH | CMD_AUTHOK | CMD_NOTX, cmd_auth},
	/* Postfix smtpd_forbidden_commands */
	{"GET", 0, cmd_forbidden},
	{"POST", 0, cmd_forbidden},
	{"PUT", 0, cmd_forbidden},
	{"HEAD", 0, cmd_forbidden},
	{"CONNECT", 0, cmd_forbidden},
};

struct rule_err {
	int code;
	const char *ecode;
	const char *text;
};

/* The cross-cutting rules, in order; first failure wins. */
static bool check_rules(struct smtp_session *s, unsigned f, struct rule_err *e)
{
	bool subm = s->role != SMTP_ROLE_MX;

#define FAIL(c, ec, t)                                                                             \
	do {                                                                                       \
		e->code = (c);                                                                     \
		e->ecode = (ec);                                                                   \
		e->text = (t);                                                                     \
		return false;                                                                      \
	} while (0)
	/* RFC 5321 3.1: after a 554 greeting the server waits for QUIT and
	 * SHOULD answer anything else with 503 */
	if (s->refused && !(f & CMD_REFUSED))
		FAIL(503, "5.5.1", "Error: service unavailable, only QUIT is accepted");
	if ((f & CMD_NOTLS) && s->base.tls)
		FAIL(503, "5.5.1", "Error: TLS already active");
	if ((f & CMD_HELO) && s->helo == NULL)
		FAIL(503, "5.5.1", "Error: send HELO/EHLO first");
	if ((f & CMD_TLS_SUBM) && subm && !smtp_auth_allowed(s))
		FAIL(530, "5.7.0", "Must issue a STARTTLS command first");
	if ((f & CMD_NOAUTH) && s->auth_user != NULL)
		FAIL(503, "5.5.1", "Error: already authenticated");
	if ((f & CMD_AUTHOK) && !smtp_auth_allowed(s))
		FAIL(503, "5.5.1", "Error: authentication not enabled");
	if ((f & CMD_AUTH_SUBM) && subm && s->auth_user == NULL)
		FAIL(530, "5.7.0", "Authentication required");
	if ((f & CMD_NOTX) && s->tx != NULL)
		FAIL(503, "5.5.1", "Error: nested MAIL command");
	if ((f & CMD_TX) && s->tx == NULL)
		FAIL(503, "5.5.1", "Error: need MAIL command");
	/* RFC 5321 3.3: DATA without a valid recipient */
	if ((f & CMD_RCPT) && s->tx->n_rcpts == 0)
		FAIL(554, "5.5.1", "Error: no valid recipients");
#undef FAIL
	return true;
}

void smtp_bad_command(struct smtp_session *s, const char *line, const char *text)
{
	smtp_reply(s, 500, "5.5.2", "%s", text);
	/* Where its chunk ends is unknown: its bytes must never be read as
	 * commands (as after a BDAT syntax error). */
	if (strncasecmp(line, "BDAT", 4) == 0 && !isalpha((unsigned char)line[4]))
		bdat_close(s);
}

void smtp_dispatch(struct smtp_session *s, char *line)
{
	char verb[16];
	const char *args;
	const struct smtp_cmd *cmd = NULL;
	struct rule_err e;

	if (smtp_parse_verb(line, verb, sizeof(verb), &args) == 0) {
		for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
			if (strcmp(verb, smtp_cmds[i].name) == 0) {
				cmd = &smtp_cmds[i];
				break;
			}
		}
	}
	if (cmd == NULL) {
		smtp_bad_command(s, line, "Error: command not recognized");
		return;
	}
	if (cmd->flags & CMD_CHUNK) {
		/* The chunk follows the command line whatever the verdict: its
		 * size must be known to stay in sync (RFC 3030 2). */
		uint64_t size;
		bool last;
		if (smtp_parse_bdat(args, &size, &last) < 0) {
			/* Where the chunk ends is unknown: its bytes, which may
			 * hold anything, must never be read as commands. */
			smtp_reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
			bdat_close(s);
			return;
		}
		s->bdat_left = s->bdat_size = size;
		s->bdat_last = last;
		if (!check_rules(s, cmd->flags, &e)) {
			bdat_refuse(s, e.code, e.ecode, e.text, false);
			return;
		}
		if (s->tx->data_used) {
			bdat_refuse(s, 503, "5.5.1", "Error: BDAT after DATA", false);
			return;
		}
		cmd->handler(s, args);
		return;
	}
	if (!check_rules(s, cmd->flags, &e)) {
		smtp_reply(s, e.code, e.ecode, "%s", e.text);
		return;
	}
	cmd->handler(s, args);
}
