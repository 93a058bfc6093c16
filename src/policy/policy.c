/* Sender authentication for one SMTP transaction (policy.h): SPF at MAIL,
 * DKIM and ARC verification while the content streams, DMARC at the end,
 * the Authentication-Results field (RFC 8601), DMARC enforcement, ARC
 * sealing and SRS for forwarded mail, DKIM signing for submission.
 *
 * Threads: everything here runs on the loop thread but the public-key work
 * (signing, sealing: a job on the worker pool; verification: inside
 * dkim.c/arc.c, on the pool too). A transaction freed while a job is in
 * flight leaves the job orphaned: its completion frees what it holds.
 * Callbacks to the SMTP server are always the last thing a function does
 * (the server may free the transaction inside them). */
#include "policy/policy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "mime/addr.h"
#include "policy/arc.h"
#include "policy/dkim.h"
#include "policy/dmarc.h"
#include "policy/hdr.h"
#include "policy/policy_int.h"
#include "policy/spf.h"
#include "policy/srs.h"
#include "store/store.h"

/* The signing keys are re-read from the store at most this often (one
 * indexed query; a key's PEM is parsed once, when it first shows up). */
#define KEYS_TTL_MS 60000
/* Header fields kept to find From: (hdr.h bounds) */
/* A header field kept whole up to this: a From: with a long (folded)
 * display name still yields its address. Longer From: fields are refused
 * below (RFC 5322 2.1.1 lines are at most 998 octets; such a field can
 * only be a way around DMARC). */
#define HDR_MAX_FIELD 65536
#define HDR_MAX_FIELDS 1000
/* Submission: the header section held until From: is known (then signed
 * with its domain's keys); past this, the envelope's domain decides. */
#define SIGN_HOLD_MAX (1024 * 1024)
#define MAX_FROM 4
#define MAX_SIGN_KEYS 4

/* One private key of dkim_keys, shared (counted) by the cache and the jobs
 * that sign with it. Counts change on the loop thread only. */
struct pkey {
	int refs;
	int64_t id;
	char *domain, *selector;
	struct dkim_key *key;
	bool rsa;
	time_t active_from, retire_at;
};

struct policy {
	struct loop *l;
	struct dns *dns;
	struct pool *pool;
	struct store *st;
	const struct config *cfg;
	const char *authserv_id;
	struct psl *psl;
	char **srs;
	size_t n_srs;
	struct dkim_limits lim;
	struct pkey **keys;
	size_t n_keys;
	uint64_t keys_ms;
	bool keys_loaded;
	char **noseal; /* domains "no key to seal with" was logged for */
	size_t n_noseal;
	struct policy_tx *txs; /* live transactions (policy_free detaches them) */
	/* DMARC evaluations waiting to be recorded (rec_flush): handed to the
	 * store in batches, one committer transaction each, not one per
	 * message */
	struct rec_pending *recs;
	size_t n_recs;
	struct timer *rec_timer;
};

/* One evaluation to record: the row and every string it points to. */
struct rec_pending {
	struct store_dmarc_row *row;
	struct store_dmarc_dkim *dk;
	char **strs;
	size_t n_strs;
};
/* A batch goes to the store when it is this big, or this old: the rows of a
 * report period's last second are in the store long before its run
 * (report_run.c: 5 s after the end). Shutdown flushes what is left. */
#define REC_BATCH_MAX 256
#define REC_BATCH_MS 1000

struct job;

struct policy_tx {
	struct policy *p;
	struct policy_tx *next, *prev;
	char *txid, *ip, *helo, *rdns, *auth_user, *mail_from;
	bool rdns_temp;
	const char *mail_domain; /* into mail_from, NULL for <> */
	bool inbound;
	/* SPF (RFC 7208): MAIL FROM (or postmaster@HELO for <>), and HELO */
	struct spf_query *spf_q, *spfh_q;
	bool spf_checked, spfh_checked;
	enum spf_result spf, spfh;
	char *spf_domain, *spf_expl, *spf_problem, *spf_mech;
	policy_cb *mail_cb;
	void *mail_arg;
	struct timer *mail_timer;
	char *mail_text;
	/* forwarding */
	char *fwd_domain;
	char *rcpt_domain; /* the first recipient's (aggregate reports) */
	/* the DMARC evaluation to record (store_dmarc_record) once the
	 * transaction is over: off the path between the verdict and the commit */
	struct store_dmarc_row *rec;
	struct store_dmarc_dkim *rec_dk;
	char **rec_strs;
	size_t n_rec_strs;
	/* content */
	bool started, content_ended;
	policy_out_fn *out;
	void *out_arg;
	struct ar_filter arf;
	bool hr_on, body_seen;
	struct hdr_reader hr;
	size_t n_from_fields, n_from;
	bool from_truncated; /* a From: field longer than HDR_MAX_FIELD */
	char *from[MAX_FROM];
	struct dkim_verify *dv;
	struct arc_verify *av;
	bool sign_wanted, sign_decided;
	struct buf sign_hold;
	struct dkim_sign *ds;
	struct pkey *sign_keys[MAX_SIGN_KEYS];
	size_t n_sign_keys;
	char *sign_domain;
	struct arc_seal *as;
	struct pkey *seal_key;
	/* the end */
	policy_cb *end_cb;
	void *end_arg;
	struct timer *end_timer;
	bool ending, dkim_wait, arc_wait, dmarc_started, dmarc_wait, finished;
	struct dkim_results dk;
	bool dk_done;
	struct arc_outcome ao;
	bool ao_done;
	/* the record lookup, started when the header section ends */
	struct dmarc_lookup *dl;
	bool dl_started, dl_wait;
	/* the end-of-data bound (policy_end_wait_ms): what is unfinished then
	 * is temperror */
	struct timer *bound_timer;
	bool bound_hit, dk_timeout, partial;
	bool dmarc_done;
	enum dmarc_result dmarc;
	enum dmarc_policy dmarc_p, dmarc_sp, dmarc_dis;
	bool dmarc_has_record, dmarc_sampled;
	char *dmarc_domain, *dmarc_problem;
	char **res; /* resinfo strings of Authentication-Results */
	size_t n_res;
	struct job *job;
	struct buf prefix;
	char *queue_from, *end_text;
	char *ar_field; /* Authentication-Results, held while the ARC seal is made */
	const char *action;
};

/* ---- the signing keys ---- */

static void pkey_unref(struct pkey **kp)
{
	struct pkey *k = *kp;
	if (k == NULL)
		return;
	*kp = NULL;
	if (--k->refs > 0)
		return;
	dkim_key_free(&k->key);
	free(k->domain);
	free(k->selector);
	free(k);
}

struct keys_load {
	struct policy *p;
	struct pkey **v;
	size_t n, cap;
	time_t now;
};

static void keys_row(void *arg, const struct store_dkim_key *row)
{
	struct keys_load *ld = arg;
	struct policy *p = ld->p;
	if (row->retire_at != 0 && row->retire_at <= ld->now)
		return; /* retired for good */
	struct pkey *k = NULL;
	for (size_t i = 0; i < p->n_keys && k == NULL; i++)
		if (p->keys[i]->id == row->id)
			k = p->keys[i];
	if (k != NULL) {
		k->refs++;
		k->active_from = row->active_from;
		k->retire_at = row->retire_at;
	} else {
		char *err = NULL;
		struct dkim_key *dk = dkim_key_load_private(row->private_key, &err);
		if (dk == NULL) {
			log_warn("policy: DKIM key %s/%s unusable: %s", row->domain, row->selector,
				 err ? err : "?");
			free(err);
			return;
		}
		k = xcalloc(1, sizeof *k);
		k->refs = 1;
		k->id = row->id;
		k->domain = xstrdup(row->domain);
		k->selector = xstrdup(row->selector);
		k->key = dk;
		k->rsa = strcmp(dkim_key_alg(dk), "rsa-sha256") == 0;
		k->active_from = row->active_from;
		k->retire_at = row->retire_at;
	}
	if (ld->n == ld->cap) {
		ld->cap = ld->cap ? ld->cap * 2 : 8;
		ld->v = xrealloc(ld->v, ld->cap * sizeof *ld->v);
	}
	ld->v[ld->n++] = k;
}

/* Re-reads dkim_keys when the cache is older than KEYS_TTL_MS. */
static void keys_refresh(struct policy *p)
{
	uint64_t now = loop_now(p->l);
	if (p->keys_loaded && now - p->keys_ms < KEYS_TTL_MS)
		return;
	struct keys_load ld = {.p = p, .now = time(NULL)};
	if (store_dkim_keys(p->st, NULL, keys_row, &ld) < 0) {
		log_warn("policy: DKIM keys not reloaded (store error); the old ones sign");
		for (size_t i = 0; i < ld.n; i++)
			pkey_unref(&ld.v[i]);
		free(ld.v);
		p->keys_ms = now;
		return;
	}
	for (size_t i = 0; i < p->n_keys; i++)
		pkey_unref(&p->keys[i]);
	free(p->keys);
	p->keys = ld.v;
	p->n_keys = ld.n;
	p->keys_ms = now;
	p->keys_loaded = true;
}

/* The keys of domain that sign now (a reference each into v). */
static size_t keys_for(struct policy *p, const char *domain, struct pkey **v, size_t max)
{
	size_t n = 0;
	time_t now = time(NULL);
	if (domain == NULL || *domain == '\0')
		return 0;
	keys_refresh(p);
	for (size_t i = 0; i < p->n_keys && n < max; i++) {
		struct pkey *k = p->keys[i];
		if (strcasecmp(k->domain, domain) != 0 || k->active_from > now ||
		    (k->retire_at != 0 && now >= k->retire_at))
			continue;
		k->refs++;
		v[n++] = k;
	}
	return n;
}

/* ---- the daemon-wide object ---- */

struct policy *policy_new(struct loop *l, struct dns *dns, struct pool *pool, struct store *st,
			  const struct config *cfg, char **err_r)
{
	struct policy *p = xcalloc(1, sizeof *p);
	p->l = l;
	p->dns = dns;
	p->pool = pool;
	p->st = st;
	p->cfg = cfg;
	p->authserv_id = cfg->authserv_id && *cfg->authserv_id ? cfg->authserv_id : cfg->hostname;
	p->lim = (struct dkim_limits){
		.max_signatures = cfg->dkim_max_signatures > 0 ? (unsigned)cfg->dkim_max_signatures : 1,
		.min_rsa_bits = (unsigned)cfg->dkim_min_rsa_bits,
		.max_rsa_bits = (unsigned)cfg->dkim_max_rsa_bits,
		.max_field = HDR_MAX_FIELD,
		.max_fields = HDR_MAX_FIELDS,
	};
	if (cfg->dmarc_verify) {
		char *err = NULL;
		p->psl = psl_load(cfg->dmarc_psl_file, &err);
		if (p->psl == NULL) {
			log_warn("policy: public suffix list %s: %s; organizational domains are"
				 " the last two labels",
				 cfg->dmarc_psl_file, err ? err : "?");
			free(err);
		}
	}
	/* SRS secrets: policy_set_srs (loaded once, by the caller) */
	keys_refresh(p);
	log_info("policy: authserv-id=%s spf=%s dkim_verify=%s dkim_sign=%s dmarc=%s%s arc=%s%s"
		 " srs=%s signing keys=%zu",
		 p->authserv_id, cfg->spf_action, cfg->dkim_verify ? "on" : "off",
		 cfg->dkim_sign ? "on" : "off", cfg->dmarc_verify ? "on" : "off",
		 cfg->dmarc_enforce ? "+enforce" : "", cfg->arc_verify ? "verify" : "off",
		 cfg->arc_seal ? "+seal" : "", cfg->srs ? "on" : "off", p->n_keys);
	return p;
}

static void tx_detach(struct policy_tx *t);

void policy_set_srs(struct policy *p, char **secrets, size_t n)
{
	p->srs = secrets;
	p->n_srs = n;
}

/* ---- DMARC evaluations to record ---- */

static void rec_pending_free(struct rec_pending *r)
{
	free(r->row);
	free(r->dk);
	for (size_t i = 0; i < r->n_strs; i++)
		free(r->strs[i]);
	free(r->strs);
}

/* The batch to the store: one job, one transaction. */
static void rec_flush(struct policy *p)
{
	loop_timer_cancel(p->l, &p->rec_timer);
	if (p->n_recs == 0)
		return;
	struct store_dmarc_row *rows = xcalloc(p->n_recs, sizeof *rows);
	for (size_t i = 0; i < p->n_recs; i++)
		rows[i] = *p->recs[i].row;
	store_dmarc_record_n(p->st, rows, p->n_recs); /* copies */
	free(rows);
	for (size_t i = 0; i < p->n_recs; i++)
		rec_pending_free(&p->recs[i]);
	free(p->recs);
	p->recs = NULL;
	p->n_recs = 0;
}

static void rec_timer_fire(void *arg)
{
	struct policy *p = arg;
	p->rec_timer = NULL;
	rec_flush(p);
}

/* Takes r's row and strings. */
static void rec_add(struct policy *p, const struct rec_pending *r)
{
	if (p->n_recs % 16 == 0)
		p->recs = xrealloc(p->recs, (p->n_recs + 16) * sizeof *p->recs);
	p->recs[p->n_recs++] = *r;
	if (p->n_recs >= REC_BATCH_MAX)
		rec_flush(p);
	else if (p->rec_timer == NULL)
		p->rec_timer = loop_timer_add(p->l, REC_BATCH_MS, rec_timer_fire, p);
}

void policy_free(struct policy **pp)
{
	struct policy *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	rec_flush(p); /* before the store closes (cli/main.c) */
	/* Transactions still alive (sessions parked at shutdown) lose their
	 * lookups: the resolver goes next. */
	while (p->txs != NULL)
		tx_detach(p->txs);
	for (size_t i = 0; i < p->n_keys; i++)
		pkey_unref(&p->keys[i]);
	free(p->keys);
	for (size_t i = 0; i < p->n_noseal; i++)
		free(p->noseal[i]);
	free(p->noseal);
	psl_free(&p->psl);
	free(p);
}

/* ---- the transaction ---- */

static void on_spf(void *arg, const struct spf_outcome *o);
static void on_spfh(void *arg, const struct spf_outcome *o);

static bool spf_on(const struct policy *p)
{
	return p->dns != NULL && strcmp(p->cfg->spf_action, "off") != 0;
}

struct policy_tx *policy_tx_new(struct policy *p, const struct policy_conn *c,
				const char *mail_from)
{
	struct policy_tx *t = xcalloc(1, sizeof *t);
	t->p = p;
	t->next = p->txs;
	if (p->txs != NULL)
		p->txs->prev = t;
	p->txs = t;
	t->txid = xstrdup(c->txid ? c->txid : "-");
	t->ip = xstrdup(c->ip ? c->ip : "");
	t->helo = c->helo ? xstrdup(c->helo) : NULL;
	t->rdns = c->rdns ? xstrdup(c->rdns) : NULL;
	t->rdns_temp = c->rdns == NULL && c->rdns_temp;
	t->auth_user = c->auth_user ? xstrdup(c->auth_user) : NULL;
	t->mail_from = xstrdup(mail_from ? mail_from : "");
	t->mail_domain = *t->mail_from ? addr_domain(t->mail_from) : NULL;
	t->inbound = c->mx && c->auth_user == NULL;
	buf_init(&t->sign_hold);
	buf_init(&t->prefix);
	t->action = "accept";
	if (!t->inbound || !spf_on(p))
		return t;
	/* RFC 7208 2.4: MAIL FROM <> is checked as postmaster@<HELO>. */
	struct spf_request r = {
		.ip = t->ip,
		.helo = t->helo,
		.receiver = p->cfg->hostname,
	};
	char *pm = NULL;
	if (t->mail_domain != NULL) {
		r.domain = t->mail_domain;
		r.sender = t->mail_from;
	} else if (t->helo != NULL) {
		pm = xasprintf("postmaster@%s", t->helo);
		r.domain = t->helo;
		r.sender = pm;
	}
	if (r.domain != NULL) {
		t->spf_domain = xstrdup(r.domain);
		t->spf_q = spf_check(p->dns, &r, on_spf, t);
		if (t->spf_q == NULL) {
			t->spf_checked = true;
			t->spf = SPF_TEMPERROR;
			t->spf_problem = xstrdup("the check could not start");
		}
	}
	/* RFC 7208 2.3: the HELO identity, when it is not what was checked;
	 * known already when an earlier transaction of the connection had it */
	bool helo_check = p->cfg->spf_helo && t->helo != NULL && t->mail_domain != NULL;
	if (helo_check && c->helo_spf_known) {
		t->spfh_checked = true;
		t->spfh = (enum spf_result)c->helo_spf;
	} else if (helo_check) {
		free(pm);
		pm = xasprintf("postmaster@%s", t->helo);
		r.domain = t->helo;
		r.sender = pm;
		t->spfh_q = spf_check(p->dns, &r, on_spfh, t);
		if (t->spfh_q == NULL) {
			t->spfh_checked = true;
			t->spfh = SPF_TEMPERROR;
		}
	}
	free(pm);
	return t;
}

static void end_step(struct policy_tx *t);

/* MAIL's answer (spf_action = reject): RFC 7372 3.2 / RFC 7208 8.4, 8.6. */
static void mail_reply(struct policy_tx *t)
{
	struct policy_verdict v = {0};
	free(t->mail_text);
	t->mail_text = NULL;
	if (t->spf == SPF_FAIL) {
		v.code = 550;
		v.ecode = "5.7.23";
		t->mail_text = xasprintf("SPF check failed for %s: %s", t->spf_domain,
					 t->spf_expl ? t->spf_expl : "sender not authorized");
		v.text = t->mail_text;
	} else if (t->spf == SPF_TEMPERROR) {
		v.code = 451;
		v.ecode = "4.7.24";
		t->mail_text = xasprintf("SPF temporary error for %s: %s, try again later",
					 t->spf_domain, t->spf_problem ? t->spf_problem : "DNS");
		v.text = t->mail_text;
	}
	policy_cb *cb = t->mail_cb;
	t->mail_cb = NULL;
	cb(t->mail_arg, &v); /* last: the server may free t */
}

static void on_mail_timer(void *arg)
{
	struct policy_tx *t = arg;
	t->mail_timer = NULL;
	mail_reply(t);
}

bool policy_mail(struct policy_tx *t, policy_cb *cb, void *arg)
{
	if (t->p == NULL || !t->inbound || strcmp(t->p->cfg->spf_action, "reject") != 0 ||
	    (t->spf_q == NULL && !t->spf_checked))
		return false;
	if (t->spf_q == NULL && t->spf != SPF_FAIL && t->spf != SPF_TEMPERROR)
		return false;
	t->mail_cb = cb;
	t->mail_arg = arg;
	if (t->spf_q == NULL) /* known already: answered on the next pass */
		t->mail_timer = loop_timer_add(t->p->l, 0, on_mail_timer, t);
	return true;
}

static void spf_store(struct policy_tx *t, const struct spf_outcome *o)
{
	t->spf_checked = true;
	t->spf = o->result;
	t->spf_expl = o->explanation ? xstrdup(o->explanation) : NULL;
	t->spf_problem = o->problem ? xstrdup(o->problem) : NULL;
	t->spf_mech = o->mechanism ? xstrdup(o->mechanism) : NULL;
}

static void on_spf(void *arg, const struct spf_outcome *o)
{
	struct policy_tx *t = arg;
	t->spf_q = NULL;
	spf_store(t, o);
	if (t->spf == SPF_TEMPERROR || t->spf == SPF_PERMERROR)
		log_info("policy id=%s spf %s for %s: %s", t->txid, spf_result_name(t->spf),
			 t->spf_domain, t->spf_problem ? t->spf_problem : "-");
	if (t->mail_cb != NULL) {
		mail_reply(t);
		return;
	}
	if (t->ending)
		end_step(t);
}

static void on_spfh(void *arg, const struct spf_outcome *o)
{
	struct policy_tx *t = arg;
	t->spfh_q = NULL;
	t->spfh_checked = true;
	t->spfh = o->result;
	if (t->ending)
		end_step(t);
}

bool policy_tx_helo_spf(const struct policy_tx *t, int *result_r)
{
	if (t->p == NULL || !t->spfh_checked || t->spfh == SPF_TEMPERROR)
		return false;
	*result_r = (int)t->spfh;
	return true;
}

void policy_rcpt(struct policy_tx *t, const char *rcpt_domain)
{
	if (t->rcpt_domain == NULL && rcpt_domain != NULL)
		t->rcpt_domain = xstrdup(rcpt_domain);
}

void policy_forward(struct policy_tx *t, const char *rcpt_domain)
{
	if (t->fwd_domain == NULL && rcpt_domain != NULL)
		t->fwd_domain = xstrdup(rcpt_domain);
}

/* ---- content ---- */

static bool on_field(void *arg, const struct hdr_field *f)
{
	struct policy_tx *t = arg;
	if (!hdr_is(f, "From"))
		return true;
	t->n_from_fields++;
	if (f->truncated)
		t->from_truncated = true;
	size_t len;
	const char *v = hdr_value(f, &len);
	char *d[MAX_FROM];
	size_t n = authres_from_domains(v, len, d, MAX_FROM);
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t k = 0; k < t->n_from && !dup; k++)
			dup = strcmp(t->from[k], d[i]) == 0;
		if (dup || t->n_from == MAX_FROM)
			free(d[i]);
		else
			t->from[t->n_from++] = d[i];
	}
	return true;
}

static void sign_decide(struct policy_tx *t);
static void dmarc_begin(struct policy_tx *t);

static void on_body(void *arg, const char *p, size_t n)
{
	struct policy_tx *t = arg;
	t->body_seen = true;
	dmarc_begin(t);
	if (t->sign_wanted && !t->sign_decided)
		sign_decide(t);
}

/* What goes on to the spool (forged Authentication-Results gone): the ARC
 * sealer and the DKIM signer see exactly these bytes. */
static void filtered(void *arg, const char *p, size_t n)
{
	struct policy_tx *t = arg;
	if (t->as != NULL)
		arc_seal_feed(t->as, p, n);
	if (t->ds != NULL) {
		dkim_sign_feed(t->ds, p, n);
	} else if (t->sign_wanted && !t->sign_decided) {
		buf_append(&t->sign_hold, p, n);
		if (t->sign_hold.len > SIGN_HOLD_MAX)
			sign_decide(t);
	}
	t->out(t->out_arg, p, n);
}

static bool noseal_logged(struct policy *p, const char *domain)
{
	for (size_t i = 0; i < p->n_noseal; i++)
		if (strcasecmp(p->noseal[i], domain) == 0)
			return true;
	if (p->n_noseal < 256) {
		p->noseal = xrealloc(p->noseal, (p->n_noseal + 1) * sizeof *p->noseal);
		p->noseal[p->n_noseal++] = xstrdup(domain);
	}
	return false;
}

static void content_start(struct policy_tx *t)
{
	struct policy *p = t->p;
	const struct config *cfg = p->cfg;
	t->started = true;
	ar_filter_init(&t->arf, p->authserv_id);
	if (t->inbound) {
		if (cfg->dkim_verify && p->dns != NULL)
			t->dv = dkim_verify_new(p->dns, p->pool, &p->lim);
		if (cfg->arc_verify && p->dns != NULL)
			t->av = arc_verify_new(p->dns, p->pool, &p->lim);
		if (t->fwd_domain != NULL && cfg->arc_seal) {
			struct pkey *k[MAX_SIGN_KEYS];
			size_t n = keys_for(p, t->fwd_domain, k, MAX_SIGN_KEYS);
			/* RFC 8617 4.1.2 / 7.2: rsa-sha256 is the algorithm ARC uses */
			for (size_t i = 0; i < n; i++) {
				if (t->seal_key == NULL && k[i]->rsa)
					t->seal_key = k[i];
				else
					pkey_unref(&k[i]);
			}
			if (t->seal_key != NULL) {
				struct dkim_signer_key sk = {t->seal_key->key, t->seal_key->domain,
							     t->seal_key->selector};
				t->as = arc_seal_new(&sk, time(NULL), &p->lim);
			} else if (!noseal_logged(p, t->fwd_domain)) {
				log_warn("policy: no RSA DKIM key for %s: mail forwarded from it is"
					 " not ARC-sealed (postern dkim keygen %s)",
					 t->fwd_domain, t->fwd_domain);
			}
		}
	} else if (cfg->dkim_sign && t->auth_user != NULL) {
		t->sign_wanted = true;
	}
	if ((t->inbound && cfg->dmarc_verify) || t->sign_wanted) {
		hdr_reader_init(&t->hr, HDR_MAX_FIELD, HDR_MAX_FIELDS, on_field, on_body, t);
		t->hr_on = true;
	}
}

/* Submission: the keys of the From: domain, else of the envelope's. */
static void sign_decide(struct policy_tx *t)
{
	struct policy *p = t->p;
	t->sign_decided = true;
	const char *cand[2] = {t->n_from == 1 ? t->from[0] : NULL, t->mail_domain};
	for (size_t i = 0; i < 2 && t->n_sign_keys == 0; i++) {
		t->n_sign_keys = keys_for(p, cand[i], t->sign_keys, MAX_SIGN_KEYS);
		if (t->n_sign_keys > 0)
			t->sign_domain = xstrdup(cand[i]);
	}
	if (t->n_sign_keys > 0) {
		struct dkim_signer_key sk[MAX_SIGN_KEYS];
		for (size_t i = 0; i < t->n_sign_keys; i++)
			sk[i] = (struct dkim_signer_key){t->sign_keys[i]->key,
							 t->sign_keys[i]->domain,
							 t->sign_keys[i]->selector};
		t->ds = dkim_sign_new(sk, t->n_sign_keys, time(NULL), &p->lim);
		if (t->ds != NULL && t->sign_hold.len > 0)
			dkim_sign_feed(t->ds, t->sign_hold.data, t->sign_hold.len);
	}
	buf_free(&t->sign_hold);
	buf_init(&t->sign_hold);
}

void policy_content(struct policy_tx *t, const char *p, size_t n, policy_out_fn *out, void *arg)
{
	if (t->p == NULL) {
		out(arg, p, n);
		return;
	}
	if (!t->started)
		content_start(t);
	if (t->dv != NULL)
		dkim_verify_feed(t->dv, p, n);
	if (t->av != NULL)
		arc_verify_feed(t->av, p, n);
	if (t->hr_on)
		hdr_reader_feed(&t->hr, p, n);
	t->out = out;
	t->out_arg = arg;
	ar_filter_feed(&t->arf, p, n, filtered, t);
}

void policy_content_end(struct policy_tx *t, policy_out_fn *out, void *arg)
{
	if (t->p == NULL || t->content_ended)
		return;
	if (!t->started)
		content_start(t);
	t->content_ended = true;
	t->out = out;
	t->out_arg = arg;
	if (t->hr_on)
		hdr_reader_end(&t->hr);
	ar_filter_end(&t->arf, filtered, t);
	if (t->sign_wanted && !t->sign_decided)
		sign_decide(t);
	if (t->arf.dropped > 0)
		log_info("policy id=%s: %zu Authentication-Results field(s) claiming %s removed",
			 t->txid, t->arf.dropped, t->p->authserv_id);
}

/* ---- the end ---- */

static void res_add(struct policy_tx *t, struct buf *b)
{
	buf_appendc(b, '\0');
	t->res = xrealloc(t->res, (t->n_res + 1) * sizeof *t->res);
	t->res[t->n_res++] = xstrdup(b->data);
	buf_reset(b);
}

static void dk_copy(struct policy_tx *t, const struct dkim_results *r)
{
	t->dk.n = r->n;
	t->dk.v = xcalloc(r->n ? r->n : 1, sizeof *t->dk.v);
	for (size_t i = 0; i < r->n; i++) {
		const struct dkim_sig_result *s = &r->v[i];
		struct dkim_sig_result *d = &t->dk.v[i];
		*d = *s;
		d->domain = s->domain ? xstrdup(s->domain) : NULL;
		d->selector = s->selector ? xstrdup(s->selector) : NULL;
		d->auid = s->auid ? xstrdup(s->auid) : NULL;
		d->algorithm = s->algorithm ? xstrdup(s->algorithm) : NULL;
		d->reason = s->reason ? xstrdup(s->reason) : NULL;
	}
}

static void dk_free(struct dkim_results *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].domain);
		free(r->v[i].selector);
		free(r->v[i].auid);
		free(r->v[i].algorithm);
		free(r->v[i].reason);
	}
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

static void on_dkim(void *arg, const struct dkim_results *r)
{
	struct policy_tx *t = arg;
	t->dkim_wait = false;
	dk_copy(t, r);
	t->dk_done = true;
	end_step(t);
}

static void arc_take(struct policy_tx *t, const struct arc_outcome *o)
{
	t->arc_wait = false;
	t->ao = *o; /* the strings copied below */
	t->ao.instances = o->instances;
	t->ao.reason = o->reason ? xstrdup(o->reason) : NULL;
	t->ao.n_domains = o->n_domains;
	t->ao.domains = xcalloc(o->n_domains ? o->n_domains : 1, sizeof *t->ao.domains);
	for (size_t i = 0; i < o->n_domains; i++)
		t->ao.domains[i] = xstrdup(o->domains[i]);
	t->ao_done = true;
}

static void on_arc(void *arg, const struct arc_outcome *o)
{
	struct policy_tx *t = arg;
	arc_take(t, o);
	end_step(t);
}

/* A copy owned by t (freed with it). */
static const char *rec_str(struct policy_tx *t, const char *v)
{
	t->rec_strs = xrealloc(t->rec_strs, (t->n_rec_strs + 1) * sizeof *t->rec_strs);
	return t->rec_strs[t->n_rec_strs++] = xstrdup(v ? v : "");
}

/* RFC 7489 7.2: the evaluation, for the aggregate report to the record's rua;
 * handed to the store when the transaction ends (policy_tx_free). */
static void dmarc_record(struct policy_tx *t, const struct dmarc_outcome *o)
{
	const struct dmarc_record *r = o->record;
	size_t n = 0;
	t->rec_dk = xcalloc(STORE_DMARC_MAX_DKIM, sizeof *t->rec_dk);
	for (size_t i = 0; i < t->dk.n && n < STORE_DMARC_MAX_DKIM; i++) {
		if (t->dk.v[i].domain == NULL)
			continue;
		t->rec_dk[n++] = (struct store_dmarc_dkim){
			rec_str(t, t->dk.v[i].domain), rec_str(t, t->dk.v[i].selector),
			dkim_result_name(t->dk.v[i].result)};
	}
	struct buf rua = BUF_INIT;
	for (size_t i = 0; i < r->n_rua; i++)
		buf_printf(&rua, "%s%s", i ? " " : "", r->rua[i]);
	buf_appendc(&rua, '\0');
	t->rec = xcalloc(1, sizeof *t->rec);
	*t->rec = (struct store_dmarc_row){
		/* copies: the row outlives t (rec_flush) */
		.time = time(NULL),
		.source_ip = rec_str(t, t->ip),
		.header_from = rec_str(t, t->from[0]),
		.envelope_from = rec_str(t, t->mail_domain),
		.envelope_to = rec_str(t, t->rcpt_domain),
		.policy_domain = rec_str(t, o->policy_domain),
		.p = dmarc_policy_name(r->p),
		.sp = dmarc_policy_name(r->sp),
		.pct = r->pct,
		.adkim = r->adkim_strict ? 's' : 'r',
		.aspf = r->aspf_strict ? 's' : 'r',
		.fo = rec_str(t, r->fo),
		.rua = rec_str(t, rua.data),
		/* what was done: enforcement off is the local policy's override */
		.disposition = dmarc_policy_name(t->p->cfg->dmarc_enforce ? o->disposition
									   : DMARC_P_NONE),
		.dkim = o->dkim_aligned ? "pass" : "fail",
		.spf = o->spf_aligned ? "pass" : "fail",
		.reason = o->sampled_out ? "sampled_out"
			  : (!t->p->cfg->dmarc_enforce && o->disposition != DMARC_P_NONE)
			      ? "local_policy"
			      : "",
		.dkim_results = t->rec_dk,
		.n_dkim = n,
		.spf_domain = rec_str(t, t->spf_domain),
		.spf_scope = t->mail_domain ? "mfrom" : "helo",
		.spf_result = t->spf_checked ? spf_result_name(t->spf) : "none",
	};
	buf_free(&rua);
}

static void dmarc_take(struct policy_tx *t, const struct dmarc_outcome *o)
{
	if (t->p->cfg->dmarc_reports && o->record != NULL && o->policy_domain != NULL)
		dmarc_record(t, o);
	t->dmarc_wait = false;
	t->dmarc_done = true;
	t->dmarc = o->result;
	t->dmarc_dis = o->disposition;
	t->dmarc_sampled = o->sampled_out;
	t->dmarc_has_record = o->record != NULL;
	if (o->record != NULL) {
		t->dmarc_p = o->record->p;
		t->dmarc_sp = o->record->sp;
	}
	t->dmarc_domain = o->policy_domain ? xstrdup(o->policy_domain) : NULL;
	t->dmarc_problem = o->problem ? xstrdup(o->problem) : NULL;
	bool temp = t->partial || (t->spf_checked && t->spf == SPF_TEMPERROR);
	for (size_t i = 0; i < t->dk.n; i++)
		temp = temp || t->dk.v[i].result == DKIM_TEMPERROR;
	if (t->dmarc == DMARC_FAIL && temp) {
		/* RFC 7489 11.2 temperror: SPF or DKIM failed temporarily (or did
		 * not finish within the end-of-data bound), so no aligned pass is
		 * not known to be a fail; a DNS outage never becomes a 5xx or a
		 * quarantine (issue 10, "Bad input") */
		t->dmarc = DMARC_TEMPERROR;
		t->dmarc_dis = DMARC_P_NONE;
		free(t->dmarc_problem);
		t->dmarc_problem = xstrdup(t->partial ? "SPF or DKIM did not finish in time"
						      : "SPF or DKIM failed temporarily");
	}
}

static void on_dl(void *arg)
{
	struct policy_tx *t = arg;
	t->dl_wait = false;
	if (t->ending)
		end_step(t);
}

/* RFC 7489 6.6.3: the record lookup starts as soon as the From: domain is
 * known, in parallel with SPF and the DKIM key lookups; it is evaluated at
 * the end of data (end_step), so a DNS outage costs one timeout, not two in
 * a row. */
static void dmarc_begin(struct policy_tx *t)
{
	struct policy *p = t->p;
	if (t->dl_started || p == NULL || !t->inbound || !p->cfg->dmarc_verify || p->dns == NULL ||
	    t->n_from != 1 || t->n_from_fields != 1)
		return;
	t->dl_started = true;
	t->dl_wait = true;
	t->dl = dmarc_lookup_start(p->dns, p->psl, t->from[0], on_dl, t);
}

/* The resinfo of RFC 8601 2.7 for this message, into t->res. */
static void build_results(struct policy_tx *t)
{
	struct policy *p = t->p;
	struct buf b = BUF_INIT;

	/* RFC 8601 2.7.3: iprev, the FCrDNS name as a comment */
	if (p->dns != NULL) {
		/* RFC 8601 2.7.3: temperror when the lookup failed temporarily
		 * (or had not finished by MAIL), fail when no name was confirmed */
		buf_appends(&b, t->rdns != NULL ? "iprev=pass"
			    : t->rdns_temp  ? "iprev=temperror"
					    : "iprev=fail");
		if (t->rdns == NULL)
			authres_comment(&b, t->rdns_temp ? "reverse DNS lookup failed temporarily"
							 : "no forward-confirmed reverse name");
		buf_appends(&b, " policy.iprev=");
		authres_value(&b, t->ip);
		if (t->rdns != NULL)
			authres_comment(&b, t->rdns);
		res_add(t, &b);
	}
	/* RFC 8601 2.7.2: spf, smtp.mailfrom (or smtp.helo for <>) */
	if (t->spf_checked) {
		buf_printf(&b, "spf=%s", spf_result_name(t->spf));
		if (t->spf_problem != NULL)
			authres_comment(&b, t->spf_problem);
		else if (t->spf_mech != NULL && t->spf == SPF_PASS)
			authres_comment(&b, t->spf_mech);
		if (t->mail_domain != NULL) {
			buf_appends(&b, " smtp.mailfrom=");
			authres_value(&b, t->mail_domain);
		} else {
			buf_appends(&b, " smtp.helo=");
			authres_value(&b, t->spf_domain);
		}
		res_add(t, &b);
	}
	if (t->spfh_checked) {
		buf_printf(&b, "spf=%s smtp.helo=", spf_result_name(t->spfh));
		authres_value(&b, t->helo);
		res_add(t, &b);
	}
	/* RFC 8601 2.7.1, RFC 6008: one dkim result per signature */
	if (t->dk_timeout) {
		buf_appends(&b, "dkim=temperror");
		authres_comment(&b, "verification did not finish in time");
		res_add(t, &b);
	}
	if (t->dk_done && t->dk.n == 0) {
		buf_appends(&b, "dkim=none");
		res_add(t, &b);
	}
	for (size_t i = 0; t->dk_done && i < t->dk.n; i++) {
		const struct dkim_sig_result *s = &t->dk.v[i];
		buf_printf(&b, "dkim=%s", dkim_result_name(s->result));
		if (s->reason != NULL) {
			authres_comment(&b, s->reason);
		} else if (s->key_bits > 0) {
			char c[32];
			snprintf(c, sizeof c, "%u-bit key", s->key_bits);
			authres_comment(&b, c);
		}
		const char *props[][2] = {
			{"header.d", s->domain}, {"header.i", s->auid}, {"header.s", s->selector},
			{"header.a", s->algorithm}, {"header.b", s->b_prefix[0] ? s->b_prefix : NULL}};
		for (size_t k = 0; k < sizeof props / sizeof props[0]; k++) {
			if (props[k][1] == NULL)
				continue;
			buf_printf(&b, " %s=", props[k][0]);
			if (k == 4) {
				char b8[9];
				snprintf(b8, sizeof b8, "%s", props[k][1]);
				authres_value(&b, b8);
			} else {
				authres_value(&b, props[k][1]);
			}
		}
		res_add(t, &b);
	}
	/* RFC 7489 11.2 */
	if (t->dmarc_done) {
		buf_printf(&b, "dmarc=%s", dmarc_result_name(t->dmarc));
		if (t->dmarc_problem != NULL) {
			authres_comment(&b, t->dmarc_problem);
		} else if (t->dmarc_has_record) {
			char c[96];
			snprintf(c, sizeof c, "p=%s sp=%s dis=%s%s", dmarc_policy_name(t->dmarc_p),
				 dmarc_policy_name(t->dmarc_sp), dmarc_policy_name(t->dmarc_dis),
				 t->dmarc_sampled ? " pct" : "");
			authres_comment(&b, c);
		}
		if (t->n_from == 1) {
			buf_appends(&b, " header.from=");
			authres_value(&b, t->from[0]);
		}
		res_add(t, &b);
	}
	/* RFC 8617 4.4 / 9.2: arc, with smtp.remote-ip */
	if (t->ao_done) {
		buf_printf(&b, "arc=%s", arc_result_name(t->ao.result));
		if (t->ao.reason != NULL)
			authres_comment(&b, t->ao.reason);
		/* RFC 8617 10.1 */
		if (t->ao.result == ARC_PASS && t->ao.oldest_pass > 0)
			buf_printf(&b, " header.oldest-pass=%d", t->ao.oldest_pass);
		buf_appends(&b, " smtp.remote-ip=");
		authres_value(&b, t->ip);
		res_add(t, &b);
	}
	buf_free(&b);
}

/* ---- public-key work on the pool ---- */

struct job {
	struct policy_tx *t; /* NULL: orphaned (the transaction was freed) */
	struct dkim_sign *ds;
	struct arc_seal *as;
	struct pkey *keys[MAX_SIGN_KEYS + 1];
	size_t n_keys;
	char *authserv_id, *ar;
	struct arc_outcome chain;
	struct buf out_dkim, out_arc;
	int rc_dkim, rc_arc;
};

static void job_work(void *arg)
{
	struct job *j = arg;
	if (j->ds != NULL)
		j->rc_dkim = dkim_sign_finish(j->ds, &j->out_dkim);
	if (j->as != NULL)
		j->rc_arc = arc_seal_finish(j->as, j->authserv_id, j->ar, &j->chain, &j->out_arc);
}

static void finish(struct policy_tx *t);

static void job_done(void *arg)
{
	struct job *j = arg;
	struct policy_tx *t = j->t;
	if (t != NULL) {
		t->job = NULL;
		if (j->as != NULL) {
			if (j->rc_arc == 0)
				buf_append(&t->prefix, j->out_arc.data, j->out_arc.len);
			else
				log_warn("policy id=%s: ARC seal failed", t->txid);
		}
		if (t->ar_field != NULL)
			buf_appends(&t->prefix, t->ar_field);
		if (j->ds != NULL) {
			if (j->rc_dkim == 0)
				buf_append(&t->prefix, j->out_dkim.data, j->out_dkim.len);
			else
				log_warn("policy id=%s: DKIM signing failed", t->txid);
		}
	}
	dkim_sign_free(&j->ds);
	arc_seal_free(&j->as);
	for (size_t i = 0; i < j->n_keys; i++)
		pkey_unref(&j->keys[i]);
	free(j->authserv_id);
	free(j->ar);
	free((char *)j->chain.reason);
	for (size_t i = 0; i < j->chain.n_domains; i++)
		free(j->chain.domains[i]);
	free(j->chain.domains);
	buf_free(&j->out_dkim);
	buf_free(&j->out_arc);
	free(j);
	if (t != NULL)
		finish(t); /* last */
}

/* Hands the signer and the sealer (with their keys) to a job. */
static void job_start(struct policy_tx *t, const char *ar)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->t = t;
	buf_init(&j->out_dkim);
	buf_init(&j->out_arc);
	j->ds = t->ds;
	t->ds = NULL;
	for (size_t i = 0; i < t->n_sign_keys; i++) {
		j->keys[j->n_keys++] = t->sign_keys[i];
		t->sign_keys[i] = NULL;
	}
	t->n_sign_keys = 0;
	if (t->as != NULL) {
		j->as = t->as;
		t->as = NULL;
		j->keys[j->n_keys++] = t->seal_key;
		t->seal_key = NULL;
		j->authserv_id = xstrdup(t->p->authserv_id);
		j->ar = xstrdup(ar);
		j->chain = t->ao; /* the strings copied below */
		j->chain.reason = t->ao.reason ? xstrdup(t->ao.reason) : NULL;
		j->chain.n_domains = t->ao.n_domains;
		j->chain.domains = xcalloc(t->ao.n_domains ? t->ao.n_domains : 1, sizeof(char *));
		for (size_t i = 0; i < t->ao.n_domains; i++)
			j->chain.domains[i] = xstrdup(t->ao.domains[i]);
	}
	t->job = j;
	pool_submit(t->p->pool, job_work, job_done, j);
}

static void log_line(struct policy_tx *t)
{
	struct buf d = BUF_INIT;
	for (size_t i = 0; t->dk_done && i < t->dk.n; i++)
		buf_printf(&d, "%s%s", i ? "," : "", dkim_result_name(t->dk.v[i].result));
	buf_appendc(&d, '\0');
	if (t->inbound)
		log_info("policy id=%s spf=%s dkim=%s dmarc=%s arc=%s action=%s%s%s", t->txid,
			 t->spf_checked ? spf_result_name(t->spf) : "-",
			 t->dk_done ? (t->dk.n ? d.data : "none") : "-",
			 t->dmarc_done ? dmarc_result_name(t->dmarc) : "-",
			 t->ao_done ? arc_result_name(t->ao.result) : "-", t->action,
			 t->fwd_domain ? " forward=" : "", t->fwd_domain ? t->fwd_domain : "");
	else if (t->sign_domain != NULL)
		log_info("policy id=%s submission signed d=%s keys=%zu", t->txid, t->sign_domain,
			 t->n_sign_keys);
	buf_free(&d);
}

/* The verdict (the prefix complete). */
static void finish(struct policy_tx *t)
{
	struct policy_verdict v = {0};
	t->finished = true;
	if (t->end_text != NULL) {
		v.code = 550;
		v.ecode = "5.7.1";
		v.text = t->end_text;
	} else {
		v.junk = strcmp(t->action, "junk") == 0;
		v.prefix = t->prefix.len ? t->prefix.data : "";
		v.prefix_len = t->prefix.len;
		v.queue_from = t->queue_from;
	}
	log_line(t);
	policy_cb *cb = t->end_cb;
	t->end_cb = NULL;
	cb(t->end_arg, &v); /* last: the server may free t */
}

static void end_step(struct policy_tx *t)
{
	struct policy *p = t->p;
	if (t->finished || t->end_cb == NULL || t->spf_q != NULL || t->spfh_q != NULL ||
	    t->dkim_wait || t->arc_wait || t->dmarc_wait || t->job != NULL)
		return;
	/* DMARC (RFC 7489 6.6): once SPF and DKIM are known */
	if (t->inbound && p->cfg->dmarc_verify && !t->dmarc_started) {
		dmarc_begin(t); /* a header section without a body */
		if (t->dl_wait)
			return;
		t->dmarc_started = true;
		if (t->n_from != 1 || t->n_from_fields != 1) {
			/* RFC 7489 6.6.1: no usable From: domain. Never refused for it. */
			t->dmarc_done = true;
			t->dmarc = t->n_from == 0 ? DMARC_NONE : DMARC_PERMERROR;
			t->dmarc_problem = xstrdup(t->n_from == 0 ? "no From: domain"
								  : "several From: domains");
		} else if (p->dns == NULL) {
			t->dmarc_done = true;
			t->dmarc = DMARC_NONE;
		} else if (t->dl != NULL) {
			struct dmarc_input in = {
				.from_domain = t->from[0],
				.spf = t->spf_checked ? t->spf : SPF_NONE,
				.spf_domain = t->spf_domain,
				.dkim = &t->dk,
			};
			struct dmarc_outcome o;
			dmarc_lookup_evaluate(t->dl, &in, -1, &o);
			dmarc_take(t, &o);
			dmarc_lookup_free(&t->dl);
		} else {
			/* the bound passed before the lookup finished */
			t->dmarc_done = true;
			t->dmarc = DMARC_TEMPERROR;
			t->dmarc_problem = xstrdup("DNS lookup did not finish in time");
		}
	}
	loop_timer_cancel(p->l, &t->bound_timer);
	struct buf ar = BUF_INIT;
	if (t->inbound) {
		build_results(t);
		/* RFC 7489 6.3 / 10.3: the disposition */
		if (t->dmarc_done && t->dmarc == DMARC_FAIL && p->cfg->dmarc_enforce) {
			if (t->dmarc_dis == DMARC_P_REJECT) {
				t->action = "reject";
				t->end_text = xasprintf("Message rejected: DMARC policy of %s"
							" (p=reject): %s",
							t->dmarc_domain ? t->dmarc_domain : "?",
							"not authenticated by an aligned SPF or DKIM");
			} else if (t->dmarc_dis == DMARC_P_QUARANTINE) {
				t->action = "junk";
			}
		}
		/* Its address may be cut off: DMARC cannot be evaluated, and
		 * letting such a message through would let anyone escape a
		 * domain's p=reject with a long display name. */
		if (t->from_truncated && p->cfg->dmarc_verify && p->cfg->dmarc_enforce &&
		    t->end_text == NULL) {
			t->action = "reject";
			t->end_text = xasprintf("Message rejected: From: header field over %d octets",
						HDR_MAX_FIELD);
		}
		for (size_t i = 0; i < t->n_res; i++)
			buf_printf(&ar, "%s%s", i ? "; " : "", t->res[i]);
		buf_appendc(&ar, '\0');
	}
	if (t->end_text == NULL && t->inbound) {
		if (t->fwd_domain != NULL && p->cfg->srs && p->srs != NULL && p->n_srs > 0) {
			t->queue_from = srs_forward(p->srs[0], t->mail_from, t->fwd_domain,
						    time(NULL));
			if (strcmp(t->action, "accept") == 0)
				t->action = "forward";
		}
		struct buf field = BUF_INIT;
		authres_field(&field, p->authserv_id, (const char *const *)t->res, t->n_res);
		if (t->as != NULL) {
			/* the ARC set goes above the Authentication-Results field */
			job_start(t, ar.data);
			/* the field is appended when the job is done: keep it */
			t->ar_field = xstrndup(field.data, field.len);
			buf_free(&field);
			buf_free(&ar);
			return;
		}
		buf_append(&t->prefix, field.data, field.len);
		buf_free(&field);
	}
	buf_free(&ar);
	if (t->end_text == NULL && t->ds != NULL) {
		job_start(t, "");
		return;
	}
	finish(t); /* last */
}

/* The end-of-data bound: a resolver that does not answer keeps no client
 * longer than this after the last byte (RFC 8601 2.7: what is unfinished is
 * temperror; issue 10: a DNS outage never gives a 5xx). */
#define POLICY_END_WAIT_MAX_MS 2000

static void on_bound(void *arg)
{
	struct policy_tx *t = arg;
	t->bound_timer = NULL;
	t->bound_hit = true;
	if (t->spf_q != NULL) {
		spf_cancel(&t->spf_q);
		t->spf_checked = true;
		t->spf = SPF_TEMPERROR;
		free(t->spf_problem);
		t->spf_problem = xstrdup("DNS lookup did not finish in time");
		t->partial = true;
		log_info("policy id=%s spf temperror for %s: did not finish in time", t->txid,
			 t->spf_domain ? t->spf_domain : "-");
	}
	if (t->spfh_q != NULL) {
		spf_cancel(&t->spfh_q);
		t->spfh_checked = true;
		t->spfh = SPF_TEMPERROR;
	}
	if (t->dkim_wait) {
		dkim_verify_free(&t->dv);
		t->dkim_wait = false;
		t->dk_timeout = true;
		t->partial = true;
	}
	if (t->arc_wait) {
		arc_verify_free(&t->av);
		t->arc_wait = false;
	}
	if (t->dl_wait) {
		dmarc_lookup_free(&t->dl);
		t->dl_wait = false;
		log_info("policy id=%s dmarc temperror: lookup did not finish in time", t->txid);
	}
	end_step(t);
}

static void on_end_timer(void *arg)
{
	struct policy_tx *t = arg;
	t->end_timer = NULL;
	end_step(t);
}

void policy_end(struct policy_tx *t, policy_cb *cb, void *arg)
{
	t->end_cb = cb;
	t->end_arg = arg;
	t->ending = true;
	if (t->p == NULL) {
		/* detached (shutdown): nothing more will come */
		return;
	}
	if (!t->started)
		content_start(t);
	if (t->dv != NULL) {
		t->dkim_wait = true;
		dkim_verify_finish(t->dv, on_dkim, t);
	} else if (t->inbound && t->p->cfg->dkim_verify && t->p->dns != NULL) {
		t->dk_done = true; /* no verifier could start: no results */
	}
	if (t->av != NULL) {
		struct arc_outcome now;
		t->arc_wait = true;
		if (arc_verify_end(t->av, &now, on_arc, t)) {
			arc_take(t, &now); /* end_step runs from end_timer below */
			arc_verify_free(&t->av);
		}
	}
	int wait = t->p->cfg->dns_timeout_ms;
	if (wait > POLICY_END_WAIT_MAX_MS)
		wait = POLICY_END_WAIT_MAX_MS;
	if (wait < 1000)
		wait = 1000; /* room for the public-key work of a loaded pool */
	t->bound_timer = loop_timer_add(t->p->l, wait, on_bound, t);
	t->end_timer = loop_timer_add(t->p->l, 0, on_end_timer, t);
}

/* Cancels what t waits for (its callbacks will not come). */
static void tx_cancel(struct policy_tx *t)
{
	struct policy *p = t->p;
	spf_cancel(&t->spf_q);
	spf_cancel(&t->spfh_q);
	dmarc_lookup_free(&t->dl);
	loop_timer_cancel(p->l, &t->bound_timer);
	dkim_verify_free(&t->dv);
	arc_verify_free(&t->av);
	loop_timer_cancel(p->l, &t->mail_timer);
	loop_timer_cancel(p->l, &t->end_timer);
	if (t->job != NULL) {
		t->job->t = NULL; /* its completion frees it */
		t->job = NULL;
	}
}

static void tx_detach(struct policy_tx *t)
{
	struct policy *p = t->p;
	tx_cancel(t);
	for (size_t i = 0; i < t->n_sign_keys; i++)
		pkey_unref(&t->sign_keys[i]);
	t->n_sign_keys = 0;
	pkey_unref(&t->seal_key);
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		p->txs = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	t->next = t->prev = NULL;
	t->p = NULL;
}

void policy_tx_free(struct policy_tx **tp)
{
	struct policy_tx *t = *tp;
	if (t == NULL)
		return;
	*tp = NULL;
	if (t->rec != NULL && t->p != NULL) {
		rec_add(t->p, &(struct rec_pending){t->rec, t->rec_dk, t->rec_strs, t->n_rec_strs});
	} else {
		rec_pending_free(&(struct rec_pending){t->rec, t->rec_dk, t->rec_strs,
							t->n_rec_strs});
	}
	if (t->p != NULL)
		tx_detach(t);
	if (t->started)
		ar_filter_free(&t->arf);
	if (t->hr_on)
		hdr_reader_free(&t->hr);
	dkim_sign_free(&t->ds);
	arc_seal_free(&t->as);
	buf_free(&t->sign_hold);
	buf_free(&t->prefix);
	for (size_t i = 0; i < t->n_from; i++)
		free(t->from[i]);
	dk_free(&t->dk);
	free((char *)t->ao.reason);
	for (size_t i = 0; i < t->ao.n_domains; i++)
		free(t->ao.domains[i]);
	free(t->ao.domains);
	for (size_t i = 0; i < t->n_res; i++)
		free(t->res[i]);
	free(t->res);
	free(t->txid);
	free(t->ip);
	free(t->helo);
	free(t->rdns);
	free(t->auth_user);
	free(t->mail_from);
	free(t->spf_domain);
	free(t->spf_expl);
	free(t->spf_problem);
	free(t->spf_mech);
	free(t->mail_text);
	free(t->fwd_domain);
	free(t->rcpt_domain);
	free(t->sign_domain);
	free(t->dmarc_domain);
	free(t->dmarc_problem);
	free(t->queue_from);
	free(t->end_text);
	free(t->ar_field);
	free(t);
}

/* ---- the results as signals (src/filter) ---- */

void policy_results(const struct policy_tx *t, struct policy_results *r)
{
	*r = (struct policy_results){0};
	if (!t->inbound)
		return;
	r->spf = t->spf_checked ? spf_result_name(t->spf) : NULL;
	if (t->dk_done) {
		/* the best: pass over fail over the first of the others */
		enum dkim_result best = DKIM_NONE;
		for (size_t i = 0; i < t->dk.n; i++) {
			enum dkim_result x = t->dk.v[i].result;
			if (x == DKIM_PASS || best == DKIM_NONE ||
			    (x == DKIM_FAIL && best != DKIM_PASS))
				best = x;
		}
		r->dkim = dkim_result_name(best);
	}
	r->dmarc = t->dmarc_done ? dmarc_result_name(t->dmarc) : NULL;
	r->from_domain = t->n_from == 1 ? t->from[0] : NULL;
	r->dmarc_pass = t->dmarc_done && t->dmarc == DMARC_PASS;
}
