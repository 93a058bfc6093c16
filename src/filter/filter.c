/* Spam, abuse and virus filtering: the orchestration of the parts at each
 * SMTP stage (filter.h). Everything here runs on the loop thread; the work
 * that reads the whole message (attachments, tokens, a milter's header
 * edits) runs on a worker through store_spool_filter.
 *
 * Callbacks to the SMTP server are always the last thing a function does
 * (the server may free the transaction inside them). */
#include "filter/filter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <math.h>
#include <time.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "filter/attach.h"
#include "filter/bayes.h"
#include "filter/clamd.h"
#include "filter/filter_int.h"
#include "filter/grey.h"
#include "filter/limit.h"
#include "filter/milter.h"
#include "filter/reasons.h"
#include "filter/screen.h"
#include "store/store.h"

/* ---- policy signals (RFC 8601 result words as reasons) ----
 * Weights are modest: authentication results say who sent a message, not
 * whether it is spam; a DMARC failure that policy did not enforce (p=none,
 * or dmarc_enforce off) weighs most. Together they stay below the default
 * junk score (5.0): they tip a message only with other evidence. */
struct auth_rule {
	const char *method; /* "spf", "dkim", "dmarc" */
	const char *result;
	const char *rule;
	double score;
	const char *text;
};
static const struct auth_rule auth_rules[] = {
	{"spf", "fail", "SPF_FAIL", 1.5, "the sender's domain does not allow this client to send its mail (SPF fail)"},
	{"spf", "softfail", "SPF_SOFTFAIL", 0.5, "the sender's domain doubts this client may send its mail (SPF softfail)"},
	{"spf", "permerror", "SPF_PERMERROR", 0.5, "the sender's domain publishes a broken SPF record"},
	{"dkim", "fail", "DKIM_INVALID", 1.0, "the message carries a DKIM signature that does not verify"},
	{"dkim", "permerror", "DKIM_INVALID", 0.5, "the message carries a DKIM signature that cannot be checked"},
	{"dmarc", "fail", "DMARC_FAIL", 2.0, "the From: domain's DMARC check failed: the sender may be forged"},
	{"dmarc", "pass", "DMARC_PASS", -1.0, "the From: domain is authenticated (DMARC pass)"},
};

/* ---- the daemon's filter ---- */

struct filter *filter_new(struct loop *l, struct dns *dns, struct pool *pool, struct store *st,
			  const struct config *cfg, char **err_r)
{
	struct filter *f = xcalloc(1, sizeof(*f));
	f->l = l;
	f->dns = dns;
	f->pool = pool;
	f->st = st;
	f->cfg = cfg;
	f->junk_score = filter_score_parse(cfg->spam_junk_score);
	f->reject_score = filter_score_parse(cfg->spam_reject_score);
	f->dnsbl_enforce = strcmp(cfg->dnsbl_action, "enforce") == 0;
	f->dnsbl_drop = strcmp(cfg->dnsbl_action, "drop") == 0;
	f->clamd_accept = strcmp(cfg->clamd_failure, "accept") == 0;
	f->screen = screen_new(l, dns, st, cfg, err_r);
	if (f->screen == NULL)
		goto fail;
	if (cfg->greylist && (f->grey = grey_new(l, st, cfg, err_r)) == NULL)
		goto fail;
	f->limit = limit_new(cfg, filter_notice, f);
	*err_r = NULL;
	f->clamd = clamd_new(l, cfg, err_r);
	if (f->clamd == NULL && *err_r != NULL)
		goto fail;
	if (cfg->attach_check)
		f->attach = attach_rules_new(cfg->attach_block);
	*err_r = NULL;
	f->milters = milter_set_new(l, cfg, err_r);
	if (f->milters == NULL && *err_r != NULL)
		goto fail;
	if (cfg->spam_filter && (f->bayes = bayes_new(l, st, pool, cfg, err_r)) == NULL)
		goto fail;
	return f;
fail:
	filter_free(&f);
	return NULL;
}

int filter_stop(struct filter *f)
{
	return f != NULL ? bayes_stop(f->bayes) + f->jobs : 0;
}

void filter_free(struct filter **fp)
{
	struct filter *f = *fp;
	if (f == NULL)
		return;
	bayes_free(&f->bayes);
	milter_set_free(&f->milters);
	attach_rules_free(&f->attach);
	clamd_free(&f->clamd);
	limit_free(&f->limit);
	grey_free(&f->grey);
	screen_free(&f->screen);
	free(f);
	*fp = NULL;
}

/* ---- connection ---- */

static void conn_verdict(struct filter_conn *c, struct filter_verdict *v)
{
	*v = (struct filter_verdict){0};
	if (c->sc == NULL)
		return;
	const struct screen_result *r = screen_conn_result(c->sc);
	if (r->trusted)
		return;
	if (r->rate_exceeded) {
		v->code = 421;
		v->ecode = "4.7.0";
		v->text = "too many connections from your address, try again later";
	} else if (r->blocked && !r->allowed && c->f->dnsbl_drop) {
		v->code = 554;
		v->ecode = "5.7.1";
		snprintf(c->why, sizeof(c->why), "Service unavailable; %s",
			 r->why != NULL ? r->why : "client blocked");
		v->text = c->why;
	}
}

struct filter_conn *filter_conn_new(struct filter *f, const char *ip, bool mx,
				    struct filter_verdict *v)
{
	struct filter_conn *c = xcalloc(1, sizeof(*c));
	c->f = f;
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
	c->mx = mx;
	c->trusted = screen_trusted(f->screen, ip);
	/* the connection stage: MX, untrusted (filter.h) */
	if (mx && !c->trusted)
		c->sc = screen_conn_new(f->screen, ip, time(NULL));
	conn_verdict(c, v);
	return c;
}

void filter_conn_greet(struct filter_conn *c, struct filter_verdict *v)
{
	conn_verdict(c, v);
}

void filter_conn_free(struct filter_conn **cp)
{
	struct filter_conn *c = *cp;
	if (c == NULL)
		return;
	x_assert(c->wait_tx == NULL);
	screen_conn_free(&c->sc);
	free(c);
	*cp = NULL;
}

/* ---- transaction ---- */

static char *dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct filter_tx *filter_tx_new(struct filter_conn *c, const struct filter_tx_info *i)
{
	struct filter *f = c->f;
	struct filter_tx *t = xcalloc(1, sizeof(*t));
	t->f = f;
	t->c = c;
	t->txid = xstrdup(i->txid);
	t->helo = dup_or_null(i->helo);
	t->rdns = dup_or_null(i->rdns);
	t->auth_user = dup_or_null(i->auth_user);
	t->mail_from = xstrdup(i->mail_from ? i->mail_from : "");
	t->tls = i->tls;
	t->sub = i->auth_user != NULL || !c->mx;
	t->trusted = c->trusted;
	t->limited = t->sub || !t->trusted;
	limit_fp_init(&t->fp);
	/* milters: MX, and submission with milter_submission */
	if (f->milters != NULL && (!t->sub || f->cfg->milter_submission)) {
		struct milter_conn_info mi = {
			.ip = c->ip,
			.port = 0,
			.rdns = t->rdns,
			.helo = t->helo,
			.txid = t->txid,
			.auth_user = t->auth_user,
		};
		t->mt = milter_tx_new(f->milters, &mi);
	}
	return t;
}

static void sender_of(const struct filter_tx *t, struct limit_sender *s)
{
	s->user = t->auth_user;
	s->ip = t->c->ip;
	s->mail_from = t->mail_from;
	/* from the end of data on (filter_end), when SPF's result is known;
	 * SPF not checked at all (spf_action = off): the exemption stands, as
	 * the administrator chose */
	s->unverified = t->end_started && t->auth_user == NULL && t->a_spf != NULL &&
			strcasecmp(t->a_spf, "pass") != 0;
}

static void set_verdict(struct filter_tx *t, struct filter_verdict *v, int code, const char *ecode,
			const char *text)
{
	snprintf(t->ecode, sizeof(t->ecode), "%s", ecode != NULL ? ecode : "");
	snprintf(t->text, sizeof(t->text), "%s", text != NULL ? text : "");
	v->code = code;
	v->ecode = t->ecode[0] != '\0' ? t->ecode : NULL;
	v->text = t->text;
}

/* A milter's answer to a step, as a verdict. DISCARD is remembered: the
 * message is accepted and dropped at the end. */
static void milter_verdict(struct filter_tx *t, const struct milter_reply *r,
			   struct filter_verdict *v)
{
	*v = (struct filter_verdict){0};
	switch (r->action) {
	case MILTER_CONTINUE:
		break;
	case MILTER_DISCARD:
		t->discard = true;
		break;
	case MILTER_REJECT:
		set_verdict(t, v, r->code ? r->code : 550, r->ecode ? r->ecode : "5.7.1",
			    r->text ? r->text : "Message rejected by a content filter");
		break;
	case MILTER_TEMPFAIL:
		set_verdict(t, v, r->code ? r->code : 451, r->ecode ? r->ecode : "4.7.1",
			    r->text ? r->text : "Service temporarily unavailable, try again later");
		break;
	}
}

static void step_done(struct filter_tx *t, const struct filter_verdict *v)
{
	filter_cb *cb = t->cb;
	void *arg = t->cb_arg;
	t->cb = NULL;
	x_free(&t->pending_rcpt);
	if (v->code == 0 && t->pending_accept) {
		t->pending_accept = false;
		/* accepted: this recipient counts for greylisting and limits */
		t->rcpts = xrealloc(t->rcpts, (t->n_rcpts + 1) * sizeof(*t->rcpts));
		t->rcpts[t->n_rcpts++] = t->accept_rcpt;
		t->accept_rcpt = NULL;
	}
	t->pending_accept = false;
	x_free(&t->accept_rcpt);
	cb(arg, v); /* last */
}

static void on_milter_step(void *arg, const struct milter_reply *r)
{
	struct filter_tx *t = arg;
	struct filter_verdict v;
	t->milter_wait = false;
	milter_verdict(t, r, &v);
	step_done(t, &v);
}

bool filter_mail(struct filter_tx *t, struct filter_verdict *v, filter_cb *cb, void *arg)
{
	struct filter *f = t->f;
	*v = (struct filter_verdict){0};
	/* rates: the user for submission, the client IP for MX (trusted: none) */
	if (t->limited && f->limit != NULL) {
		struct limit_sender s;
		struct limit_reply r = {0};
		sender_of(t, &s);
		limit_mail(f->limit, &s, time(NULL), &r);
		if (r.code != 0) {
			set_verdict(t, v, r.code, r.ecode, r.text);
			log_info("filter id=%s limit at MAIL: %s", t->txid, r.text);
			return false;
		}
	}
	if (t->mt != NULL) {
		t->cb = cb;
		t->cb_arg = arg;
		if (milter_mail(t->mt, t->mail_from, on_milter_step, t)) {
			t->milter_wait = true;
			return true;
		}
		t->cb = NULL;
	}
	return false;
}

/* The rest of RCPT's checks once the DNSBL answers are in: rates, then the
 * milters' rcpt step. */
static bool rcpt_rest(struct filter_tx *t, struct filter_verdict *v)
{
	struct filter *f = t->f;
	*v = (struct filter_verdict){0};
	/* drop: the greeting refused what was known by then; what answered
	 * later is enforced here. The local block list is the administrator's
	 * own decision: enforced under dnsbl_action = ignore too (which is for
	 * trying DNS lists out) */
	if (t->c->sc != NULL) {
		const struct screen_result *r = screen_conn_result(t->c->sc);
		if (r->blocked && !r->allowed && !r->trusted &&
		    (f->dnsbl_enforce || f->dnsbl_drop || r->local_block)) {
			/* filter.h: every recipient refused, naming the list */
			set_verdict(t, v, 550, "5.7.1",
				    r->why != NULL ? r->why : "client blocked");
			return false;
		}
	}
	if (t->limited && f->limit != NULL) {
		struct limit_sender s;
		struct limit_reply r = {0};
		sender_of(t, &s);
		limit_rcpt(f->limit, &s, t->n_rcpts, time(NULL), &r);
		if (r.code != 0) {
			set_verdict(t, v, r.code, r.ecode, r.text);
			log_info("filter id=%s limit at RCPT: %s", t->txid, r.text);
			return false;
		}
	}
	if (t->mt != NULL && milter_rcpt(t->mt, t->pending_rcpt, on_milter_step, t)) {
		t->milter_wait = true;
		return true;
	}
	return false;
}

/* screen_conn_wait's callback: on the conn, which outlives a transaction
 * freed meanwhile (then wait_tx is NULL). */
static void on_dnsbl_rcpt(void *arg)
{
	struct filter_conn *c = arg;
	struct filter_tx *t = c->wait_tx;
	struct filter_verdict v;
	if (t == NULL)
		return;
	c->wait_tx = NULL;
	t->dnsbl_wait = false;
	if (rcpt_rest(t, &v))
		return;
	step_done(t, &v);
}

bool filter_rcpt(struct filter_tx *t, const char *rcpt, int64_t user_id,
		 struct filter_verdict *v, filter_cb *cb, void *arg)
{
	struct filter *f = t->f;
	(void)user_id; /* the local accounts come with filter_tx_users */
	*v = (struct filter_verdict){0};
	t->cb = cb;
	t->cb_arg = arg;
	t->pending_rcpt = xstrdup(rcpt);
	t->accept_rcpt = xstrdup(rcpt);
	t->pending_accept = true;
	/* a blocked client (dnsbl_action = enforce): RCPT waits for the DNSBL
	 * answers (each bounded by the resolver's timeout) */
	if (t->c->sc != NULL && (f->dnsbl_enforce || f->dnsbl_drop) &&
	    screen_conn_wait(t->c->sc, on_dnsbl_rcpt, t->c)) {
		t->c->wait_tx = t;
		t->dnsbl_wait = true;
		return true;
	}
	if (rcpt_rest(t, v))
		return true;
	/* answered now: the verdict's strings live in t */
	t->cb = NULL;
	if (v->code == 0) {
		t->rcpts = xrealloc(t->rcpts, (t->n_rcpts + 1) * sizeof(*t->rcpts));
		t->rcpts[t->n_rcpts++] = t->accept_rcpt;
		t->accept_rcpt = NULL;
	}
	t->pending_accept = false;
	x_free(&t->accept_rcpt);
	x_free(&t->pending_rcpt);
	return false;
}

void filter_tx_users(struct filter_tx *t, const int64_t *user_ids, size_t n)
{
	free(t->users);
	t->users = xcalloc(n ? n : 1, sizeof(*t->users));
	if (n > 0)
		memcpy(t->users, user_ids, n * sizeof(*t->users));
	t->n_users = n;
}

/* ---- content ---- */

static void content_resume(struct filter_tx *t)
{
	if (!t->paused || t->clamd_paused || t->milter_paused)
		return;
	t->paused = false;
	void (*resume)(void *) = t->resume;
	t->resume = NULL;
	if (resume != NULL)
		resume(t->resume_arg); /* last */
}

static void on_clamd_resume(void *arg)
{
	struct filter_tx *t = arg;
	t->clamd_paused = false;
	content_resume(t);
}

static void on_milter_resume(void *arg)
{
	struct filter_tx *t = arg;
	t->milter_paused = false;
	content_resume(t);
}

bool filter_content(struct filter_tx *t, const char *p, size_t n, void (*resume)(void *arg),
		    void *arg)
{
	struct filter *f = t->f;
	if (n == 0)
		return false;
	t->size += n;
	limit_fp_feed(&t->fp, p, n);
	if (f->clamd != NULL && !t->clamd_started) {
		t->clamd_started = true;
		t->cs = clamd_scan_new(f->clamd);
	}
	if (t->cs != NULL && !t->clamd_paused &&
	    clamd_scan_feed(t->cs, p, n, on_clamd_resume, t))
		t->clamd_paused = true;
	else if (t->cs != NULL && t->clamd_paused)
		clamd_scan_feed(t->cs, p, n, on_clamd_resume, t);
	if (t->mt != NULL && !t->milter_paused && milter_feed(t->mt, p, n, on_milter_resume, t))
		t->milter_paused = true;
	else if (t->mt != NULL && t->milter_paused)
		milter_feed(t->mt, p, n, on_milter_resume, t);
	if (!t->clamd_paused && !t->milter_paused)
		return false;
	if (t->paused)
		return false; /* told already: one resume */
	t->paused = true;
	t->resume = resume;
	t->resume_arg = arg;
	return true;
}

/* ---- the end of data ---- */

static void end_finish(struct filter_tx *t);
static void end_after_parts(struct filter_tx *t);
static void spool_start(struct filter_tx *t);

static void end_reply(struct filter_tx *t, int code, const char *ecode, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
static void end_reply(struct filter_tx *t, int code, const char *ecode, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->text, sizeof(t->text), fmt, ap);
	va_end(ap);
	snprintf(t->ecode, sizeof(t->ecode), "%s", ecode);
	t->end_code = code;
}

static void on_clamd_end(void *arg, const struct clamd_result *r)
{
	struct filter_tx *t = arg;
	t->clamd_wait = false;
	t->clamd_status = r->status;
	t->clamd_name = dup_or_null(r->name);
	end_after_parts(t);
}

static void copy_milter_result(struct filter_tx *t, const struct milter_result *r)
{
	t->m_action = r->reply.action;
	t->m_code = r->reply.code;
	t->m_ecode = dup_or_null(r->reply.ecode);
	t->m_text = dup_or_null(r->reply.text);
	t->m_quarantine = r->quarantine;
	t->m_quarantine_why = dup_or_null(r->quarantine_why);
	t->edits = xcalloc(r->n_edits ? r->n_edits : 1, sizeof(*t->edits));
	for (size_t i = 0; i < r->n_edits; i++) {
		t->edits[i].kind = r->edits[i].kind;
		t->edits[i].index = r->edits[i].index;
		t->edits[i].name = xstrdup(r->edits[i].name ? r->edits[i].name : "");
		t->edits[i].value = xstrdup(r->edits[i].value ? r->edits[i].value : "");
	}
	t->n_edits = r->n_edits;
}

static void on_milter_end(void *arg, const struct milter_result *r)
{
	struct filter_tx *t = arg;
	t->milter_wait = false;
	copy_milter_result(t, r);
	t->milter_done = true;
	end_after_parts(t);
}

/* A worker, in one read snapshot: the Bayes verdicts (when asked) and each
 * user's thresholds (end_score), so that the loop thread does not open a
 * read of its own for them. */
static int spool_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct spool_job *j = arg;
	if (j->verdicts != NULL) {
		bayes_classify(sn, &j->tokens, j->users, j->n_users, j->verdicts);
		j->classified = true;
	}
	for (size_t i = 0; i < j->n_users; i++)
		if (store_snap_spam_threshold_user(sn, j->users[i], &j->thr_junk[i],
						   &j->thr_reject[i]) < 0) {
			*err_r = xstrdup("spam_thresholds read failed");
			return -1;
		}
	return 0;
}

/* A worker: what needs the whole message (pure work on the mapped bytes). */
static bool spool_work(void *arg, const char *msg, size_t len, struct store_spool *out)
{
	struct spool_job *j = arg;
	if (j->attach != NULL)
		attach_check(j->attach, msg, len, &j->ar);
	if (j->tokenize) {
		bayes_tokenize(msg, len, &j->tokens);
		if (j->bayes != NULL && j->tokens.n > 0)
			j->verdicts = xcalloc(j->n_users, sizeof(*j->verdicts));
		/* a failed read leaves the thresholds to the loop (filter_thresholds) */
		char *err = NULL;
		j->thr_junk = xcalloc(j->n_users, sizeof(*j->thr_junk));
		j->thr_reject = xcalloc(j->n_users, sizeof(*j->thr_reject));
		if (store_read_lookup(j->st, spool_read, j, &err) < 0) {
			x_free(&j->thr_junk);
			x_free(&j->thr_reject);
		}
		if (j->verdicts != NULL && !j->classified) { /* the snapshot did not start */
			log_warn("filter: read for the spam verdict failed: %s", err ? err : "?");
			bayes_unclassified(j->verdicts, j->n_users);
		}
		free(err);
	}
	if (j->n_edits == 0)
		return false;
	struct buf b = BUF_INIT;
	if (milter_apply_edits(msg, len, j->edits, j->n_edits, &b) < 0) {
		buf_free(&b);
		return false;
	}
	int w = store_spool_write(out, b.data, b.len);
	buf_free(&b);
	if (w < 0) {
		j->write_failed = true;
		return false;
	}
	j->rewrote = true;
	return true;
}

static void spool_job_free(struct spool_job *j)
{
	free(j->thr_junk);
	free(j->thr_reject);
	bayes_tokens_free(&j->tokens);
	if (j->verdicts != NULL)
		for (size_t i = 0; i < j->n_users; i++)
			bayes_verdict_free(&j->verdicts[i]);
	free(j->verdicts);
	free(j->users);
	for (size_t i = 0; i < j->n_edits; i++) {
		free(j->edits[i].name);
		free(j->edits[i].value);
	}
	free(j->edits);
	free(j);
}

static void end_after_spool(struct filter_tx *t);
/* The verdicts per local recipient: their reasons join the score. */
static void bayes_take(struct filter_tx *t, const struct bayes_verdict *v, size_t n)
{
	t->bayes_done = true;
	t->bayes = xcalloc(t->n_users ? t->n_users : 1, sizeof(*t->bayes));
	for (size_t i = 0; i < n && i < t->n_users; i++)
		filter_reasons_merge(&t->bayes[i], &v[i].reasons);
}

static void on_spool_done(void *arg, int result)
{
	struct spool_job *j = arg;
	struct filter_tx *t = j->t;
	j->f->jobs--;
	if (t == NULL) { /* orphaned: the transaction went meanwhile */
		spool_job_free(j);
		return;
	}
	t->job = NULL;
	t->job_result = result;
	t->job_ar = j->ar;
	t->rewritten = j->rewrote;
	if (j->write_failed)
		t->job_result = -1;
	if (j->verdicts != NULL)
		bayes_take(t, j->verdicts, j->n_users);
	if (j->thr_junk != NULL && j->n_users == t->n_users) {
		t->thr_junk = j->thr_junk;
		t->thr_reject = j->thr_reject;
		j->thr_junk = j->thr_reject = NULL;
	}
	spool_job_free(j);
	t->spool_done = true;
	if (!t->early) {
		end_after_spool(t);
		return;
	}
	end_after_parts(t);
}

/* clamd and the milters have answered (or were not asked); and, when the
 * steps overlap (t->early), the spool job and the statistical filter too.
 * The verdicts are then taken in the same order either way: clamd, the
 * milters, the spool job's, greylisting, limits, the score. */
static void end_after_parts(struct filter_tx *t)
{
	struct filter *f = t->f;
	if (!t->end_started || t->clamd_wait || t->milter_wait)
		return; /* (clamd may answer before filter_end: it waits for it) */
	if (t->early && !t->spool_done)
		return;
	/* clamd (filter.h): INFECTED refuses, ERROR per clamd_failure */
	if (t->cs != NULL) {
		switch (t->clamd_status) {
		case CLAMD_INFECTED:
			end_reply(t, 554, "5.7.0", "message contains a virus (%s)",
				  t->clamd_name ? t->clamd_name : "unknown");
			t->action = "virus";
			end_finish(t);
			return;
		case CLAMD_ERROR:
			log_warn("filter id=%s clamd failed: %s", t->txid,
				 t->clamd_name ? t->clamd_name : "?");
			if (!f->clamd_accept) {
				end_reply(t, 451, "4.7.0",
					  "virus scanner unavailable, try again later");
				t->action = "tempfail";
				end_finish(t);
				return;
			}
			break;
		case CLAMD_UNSCANNED:
			log_info("filter id=%s not scanned for viruses (larger than clamd_max_size)",
				 t->txid);
			break;
		case CLAMD_CLEAN:
			break;
		}
	}
	if (t->milter_done) {
		if (t->m_action == MILTER_REJECT || t->m_action == MILTER_TEMPFAIL) {
			bool rej = t->m_action == MILTER_REJECT;
			end_reply(t, t->m_code ? t->m_code : (rej ? 550 : 451),
				  t->m_ecode ? t->m_ecode : (rej ? "5.7.1" : "4.7.1"), "%s",
				  t->m_text ? t->m_text
					    : (rej ? "Message rejected by a content filter"
						   : "Service temporarily unavailable, try again later"));
			t->action = rej ? "milter-reject" : "milter-tempfail";
			end_finish(t);
			return;
		}
		if (t->m_action == MILTER_DISCARD)
			t->discard = true;
		if (t->m_quarantine)
			filter_reasons_add(&t->common, "MILTER_QUARANTINE", 0.0,
					   "a content filter quarantined the message%s%s",
					   t->m_quarantine_why ? ": " : "",
					   t->m_quarantine_why ? t->m_quarantine_why : "");
	}
	if (t->early) {
		end_after_spool(t);
		return;
	}
	spool_start(t);
}

/* The whole message on a worker: attachments, tokens, header edits that are
 * not a plain addition (ADD goes into the prefix). Its answer comes through
 * on_spool_done, never inside this call. */
static void spool_start(struct filter_tx *t)
{
	struct filter *f = t->f;
	t->spool_started = true;
	struct spool_job *j = xcalloc(1, sizeof(*j));
	j->t = t;
	j->attach = f->attach;
	j->tokenize = f->bayes != NULL && !t->sub && t->n_users > 0;
	if (j->tokenize) {
		/* tokenized and classified in one hop (one worker's read) */
		j->bayes = f->bayes;
		j->st = f->st;
		j->n_users = t->n_users;
		j->users = xcalloc(t->n_users, sizeof(*j->users));
		memcpy(j->users, t->users, t->n_users * sizeof(*j->users));
	}
	/* every non-ADD edit, in order (ADD fields go into the prefix); the
	 * job's own copies: it may outlive t */
	j->edits = xcalloc(t->n_edits ? t->n_edits : 1, sizeof(*j->edits));
	for (size_t i = 0; i < t->n_edits; i++) {
		if (t->edits[i].kind == MILTER_ADD)
			continue;
		struct milter_edit *e = &j->edits[j->n_edits++];
		e->kind = t->edits[i].kind;
		e->index = t->edits[i].index;
		e->name = xstrdup(t->edits[i].name);
		e->value = xstrdup(t->edits[i].value);
	}
	if (j->attach == NULL && !j->tokenize && j->n_edits == 0) {
		spool_job_free(j);
		t->spool_done = true;
		if (!t->early)
			end_after_spool(t);
		return;
	}
	t->job = j;
	j->f = f;
	f->jobs++;
	store_spool_filter(t->sp, f->pool, spool_work, on_spool_done, j);
}

static void end_score(struct filter_tx *t);

static void end_after_spool(struct filter_tx *t)
{
	struct filter *f = t->f;
	if (t->job_result < 0) {
		end_reply(t, 451, "4.3.0", "Error: queue file read error");
		t->action = "tempfail";
		end_finish(t);
		return;
	}
	if (t->job_ar.dangerous) {
		end_reply(t, 554, "5.7.1", "%s", t->job_ar.why);
		t->action = "attachment";
		end_finish(t);
		return;
	}
	/* greylisting (RFC 6647): MX only, not trusted nor allowlisted */
	const struct screen_result *sr = t->c->sc != NULL ? screen_conn_result(t->c->sc) : NULL;
	bool allowed = sr != NULL && sr->allowed;
	if (f->grey != NULL && !t->sub && !t->trusted && !allowed && t->n_rcpts > 0) {
		unsigned wait = 0;
		enum grey_why why = GREY_WHY_OFF;
		enum grey_result gr =
			grey_check(f->grey, t->c->ip, t->mail_from, (const char *const *)t->rcpts,
				   t->n_rcpts, t->aligned_domain, time(NULL), &wait, &why);
		/* the log line says why it passed, too (a retry, an allowed
		 * network, reputation) */
		if (why != GREY_WHY_OFF)
			t->grey_why = grey_why_text(why);
		/* auto-allowlisting follows a real retry (RFC 6647 2.2), or
		 * renews an allowed network: not a pass on the domain's
		 * reputation, nor one with greylist_delay = 0 */
		t->grey_allow = grey_why_allows_net(why);
		if (gr == GREY_DEFER) {
			/* the attempt counts against the client's message rate */
			if (t->limited && f->limit != NULL) {
				struct limit_sender s;
				sender_of(t, &s);
				limit_deferred(f->limit, &s, time(NULL));
			}
			/* RFC 6647 2.1: a temporary failure the sender retries */
			end_reply(t, 451, "4.7.1", "Greylisted, please try again in %u seconds",
				  wait);
			t->action = "greylist";
			end_finish(t);
			return;
		}
	}
	/* the duplicate check (a flood of one body to many recipients) */
	if (t->limited && f->limit != NULL) {
		struct limit_sender s;
		struct limit_reply r = {0};
		sender_of(t, &s);
		t->fp_value = limit_fp_final(&t->fp);
		t->fp_final = true;
		limit_end(f->limit, &s, t->fp_value, (const char *const *)t->rcpts, t->n_rcpts,
			  time(NULL), &r);
		if (r.code != 0) {
			end_reply(t, r.code, r.ecode ? r.ecode : "4.7.1", "%s", r.text);
			t->action = "limit";
			end_finish(t);
			return;
		}
		/* held as in flight: limit_delivered confirms it, or
		 * filter_tx_free releases it (the message was not stored) */
		t->limit_held = true;
	}
	if (t->discard) {
		t->action = "discard";
		end_finish(t);
		return;
	}
	/* the statistical filter's verdicts came with the spool job's answer */
	end_score(t);
}

/* The policy signals and the DNSBL listings: the part of the score every
 * recipient shares. */
static void common_reasons(struct filter_tx *t)
{
	const struct screen_result *sr = t->c->sc != NULL ? screen_conn_result(t->c->sc) : NULL;
	if (sr != NULL)
		filter_reasons_merge(&t->common, &sr->reasons);
	const char *res[3] = {t->a_spf, t->a_dkim, t->a_dmarc};
	static const char *const methods[3] = {"spf", "dkim", "dmarc"};
	for (size_t m = 0; m < 3; m++) {
		if (res[m] == NULL)
			continue;
		if (m == 2 && t->a_dmarc_enforced) {
			/* the domain's own policy decided (p=quarantine: Junk
			 * for everyone): named, not counted twice, so that it
			 * cannot tip the message over the reject score */
			filter_reasons_add(&t->common, "DMARC_FAIL", 0.0, "%s",
					   "the From: domain's DMARC check failed: its policy "
					   "(quarantine) sent the message to Junk");
			continue;
		}
		for (size_t i = 0; i < sizeof(auth_rules) / sizeof(auth_rules[0]); i++) {
			const struct auth_rule *r = &auth_rules[i];
			if (strcmp(r->method, methods[m]) == 0 && strcasecmp(r->result, res[m]) == 0) {
				filter_reasons_add(&t->common, r->rule, r->score, "%s", r->text);
				break;
			}
		}
	}
}

static void end_score(struct filter_tx *t)
{
	struct filter *f = t->f;
	/* Scores count on the MX listener (submission is the users' own mail);
	 * a milter's quarantine counts on both */
	if (t->sub) {
		/* quarantined: everyone's Junk through the verdict's quarantine */
		t->action = t->m_quarantine ? "quarantine" : "accept";
		end_finish(t);
		return;
	}
	size_t n = t->n_users;
	t->junk = xcalloc(n ? n : 1, sizeof(*t->junk));
	bool all_reject = n > 0;
	bool any_junk = false;
	double first_score = t->common.score, first_required = f->junk_score;
	bool first_spam = false;
	struct filter_reasons first = FILTER_REASONS_INIT;
	for (size_t i = 0; i < n; i++) {
		struct filter_reasons r = FILTER_REASONS_INIT;
		filter_reasons_merge(&r, &t->common);
		if (t->bayes != NULL)
			filter_reasons_merge(&r, &t->bayes[i]);
		double junk = f->junk_score, reject = f->reject_score;
		if (t->thr_junk != NULL) {
			/* read by the spool job (spool_read) */
			if (!isnan(t->thr_junk[i]))
				junk = t->thr_junk[i];
			if (!isnan(t->thr_reject[i]))
				reject = t->thr_reject[i];
		} else {
			filter_thresholds(f, t->users[i], &junk, &reject);
		}
		bool is_reject = r.score >= reject;
		/* refused for this recipient, but taken for the others: Junk;
		 * and Junk whatever the score when a milter quarantined it or
		 * policy applied the domain's p=quarantine (the store files it
		 * there anyway: the fields, the log and greylisting say so) */
		bool is_junk = r.score >= junk || is_reject || t->m_quarantine ||
			       t->a_dmarc_enforced;
		if (!is_reject)
			all_reject = false;
		t->junk[i] = is_junk;
		any_junk = any_junk || is_junk;
		if (i == 0) {
			first_score = r.score;
			first_required = junk;
			first_spam = is_junk;
			first = r;
		} else {
			filter_reasons_free(&r);
		}
	}
	if (n == 0)
		filter_reasons_merge(&first, &t->common);
	t->score = first_score;
	/* the rules for the log line */
	for (size_t i = 0; i < first.n; i++)
		buf_printf(&t->rules, "%s%s", i ? "," : "", first.v[i].rule);
	if (all_reject) {
		/* every recipient would refuse it: refused for all (nothing
		 * stored); else those who want it see it in Junk */
		end_reply(t, 550, "5.7.1", "Message rejected as spam (score %.1f)", first_score);
		t->action = "reject";
		filter_reasons_free(&first);
		end_finish(t);
		return;
	}
	t->action = t->m_quarantine ? "quarantine" : any_junk ? "junk" : "accept";
	/* X-Spam-*: one set per message, the first local recipient's verdict */
	if (f->cfg->spam_header)
		filter_reasons_header(&first, first_spam, first_required, &t->spam_fields);
	filter_reasons_free(&first);
	end_finish(t);
}

static void log_end(struct filter_tx *t)
{
	buf_appendc(&t->rules, '\0');
	log_info("filter id=%s score=%.1f action=%s reasons=%s%s%s", t->txid, t->score,
		 t->action ? t->action : "accept", t->rules.len > 1 ? t->rules.data : "-",
		 t->grey_why ? " greylist=" : "", t->grey_why ? t->grey_why : "");
}

static void end_finish(struct filter_tx *t)
{
	struct filter_end_verdict v = {0};
	loop_timer_cancel(t->f->l, &t->end_timer);
	if (t->end_code != 0) {
		v.code = t->end_code;
		v.ecode = t->ecode;
		v.text = t->text;
	} else {
		/* the milters' added fields, then the X-Spam-* fields */
		for (size_t i = 0; i < t->n_edits; i++) {
			const struct milter_edit *e = &t->edits[i];
			if (e->kind == MILTER_ADD && e->name[0] != '\0')
				buf_printf(&t->prefix, "%s: %s\r\n", e->name, e->value);
		}
		if (t->spam_fields.len > 0)
			buf_append(&t->prefix, t->spam_fields.data, t->spam_fields.len);
		v.prefix = t->prefix.len ? t->prefix.data : "";
		v.prefix_len = t->prefix.len;
		v.junk = t->junk;
		v.rewritten = t->rewritten;
		v.discard = t->discard;
		v.quarantine = t->m_quarantine;
	}
	log_end(t);
	filter_end_cb *cb = t->end_cb;
	t->end_cb = NULL;
	t->ended = true;
	cb(t->end_arg, &v); /* last */
}

static void on_end_start(void *arg)
{
	struct filter_tx *t = arg;
	t->end_timer = NULL;
	end_after_parts(t);
}

void filter_end(struct filter_tx *t, const struct filter_auth *a, struct store_spool *sp,
		filter_end_cb *cb, void *arg)
{
	t->end_cb = cb;
	t->end_arg = arg;
	t->sp = sp;
	if (a != NULL) {
		t->a_spf = dup_or_null(a->spf);
		t->a_dkim = dup_or_null(a->dkim);
		t->a_dmarc = dup_or_null(a->dmarc);
		if (a->dmarc_aligned && a->from_domain != NULL)
			t->aligned_domain = xstrdup(a->from_domain);
		t->a_dmarc_enforced = a->dmarc_enforced;
	}
	if (!t->sub)
		common_reasons(t);
	t->resume = NULL; /* no resume wanted after the data's end */
	t->end_started = true;
	filter_data_end(t, sp); /* the spool job, if it did not start yet */
	if (t->mt != NULL) {
		t->milter_wait = true;
		milter_end(t->mt, on_milter_end, t);
	}
	if (!t->clamd_wait && !t->milter_wait)
		/* cb never inside this call */
		t->end_timer = loop_timer_add(t->f->l, 0, on_end_start, t);
}

void filter_data_end(struct filter_tx *t, struct store_spool *sp)
{
	/* No milter: nothing can edit the message or end it before the spool
	 * job, which then starts now on a worker, while policy verifies DKIM
	 * and looks up DMARC and while clamd scans, instead of after them (a
	 * refusal meanwhile orphans it: its result is dropped, the spool freed
	 * after it, store_spool_discard). */
	if (t->mt == NULL && sp != NULL && !t->spool_started) {
		t->sp = sp;
		t->early = true;
		spool_start(t);
	}
	if (t->cs == NULL || t->clamd_ended)
		return;
	t->clamd_ended = true;
	t->clamd_wait = true;
	clamd_scan_end(t->cs, on_clamd_end, t); /* its answer: a timer, never here */
}

bool filter_tx_worker_busy(const struct filter_tx *t)
{
	return t != NULL && t->job != NULL;
}

void filter_delivered(struct filter_tx *t)
{
	struct filter *f = t->f;
	time_t now = time(NULL);
	if (t->limited && f->limit != NULL) {
		struct limit_sender s;
		sender_of(t, &s);
		if (!t->fp_final) {
			t->fp_value = limit_fp_final(&t->fp);
			t->fp_final = true;
		}
		limit_delivered(f->limit, &s, t->fp_value, (const char *const *)t->rcpts,
				t->n_rcpts, now);
		t->limit_held = false;
	}
	if (f->grey != NULL && !t->sub && !t->trusted) {
		/* Junk for anyone (a milter's quarantine and policy's
		 * p=quarantine count even with no local recipient) */
		bool spam = t->m_quarantine || t->a_dmarc_enforced;
		for (size_t i = 0; t->junk != NULL && i < t->n_users; i++)
			spam = spam || t->junk[i];
		grey_delivered(f->grey, t->c->ip, t->aligned_domain, spam, t->grey_allow, now);
	}
}

void filter_tx_free(struct filter_tx **tp)
{
	struct filter_tx *t = *tp;
	if (t == NULL)
		return;
	struct filter *f = t->f;
	/* limit_end let it go on but it was not stored (refused later, a
	 * discard, a commit failure, the session gone): not counted */
	if (t->limit_held && f->limit != NULL) {
		struct limit_sender s;
		sender_of(t, &s);
		limit_release(f->limit, &s, t->fp_value, (const char *const *)t->rcpts, t->n_rcpts,
			      time(NULL));
	}
	if (t->c->wait_tx == t)
		t->c->wait_tx = NULL; /* screen's wait is the conn's: its cb finds none */
	loop_timer_cancel(f->l, &t->end_timer);
	if (t->job != NULL)
		t->job->t = NULL; /* the worker's result is dropped when it comes */
	clamd_scan_free(&t->cs);
	milter_tx_free(&t->mt);
	free(t->txid);
	free(t->helo);
	free(t->rdns);
	free(t->auth_user);
	free(t->mail_from);
	free(t->pending_rcpt);
	free(t->accept_rcpt);
	for (size_t i = 0; i < t->n_rcpts; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	free(t->users);
	free(t->a_spf);
	free(t->a_dkim);
	free(t->a_dmarc);
	free(t->aligned_domain);
	free(t->clamd_name);
	free(t->m_ecode);
	free(t->m_text);
	free(t->m_quarantine_why);
	for (size_t i = 0; i < t->n_edits; i++) {
		free(t->edits[i].name);
		free(t->edits[i].value);
	}
	free(t->edits);
	for (size_t i = 0; t->bayes != NULL && i < t->n_users; i++)
		filter_reasons_free(&t->bayes[i]);
	free(t->bayes);
	free(t->thr_junk);
	free(t->thr_reject);
	free(t->junk);
	filter_reasons_free(&t->common);
	buf_free(&t->prefix);
	buf_free(&t->spam_fields);
	buf_free(&t->rules);
	free(t);
	*tp = NULL;
}
