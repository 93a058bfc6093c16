/* DKIM verification and signing (RFC 6376, RFC 8463, RFC 8301), streaming:
 * the header section is split by hdr.c, the body hashes are computed as the
 * body passes (one per distinct canonicalization, hash and l=), the key
 * lookups start when the header section ends, and the public-key work runs
 * on the worker pool in a job that owns everything it touches (so that
 * dkim_verify_free can drop it at any time). The primitives are in
 * dkim_prim.c. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/dkim.h"
#include "policy/dkim_int.h"
#include "policy/hdr.h"

/* ---- verification ---- */

struct vbody {
	enum dkim_canon c;
	enum dkim_alg a; /* RSA_SHA256 for both SHA-256 algorithms */
	int64_t l;
	struct dkim_bodyhash *bh;
	unsigned char digest[64];
	size_t dlen;
};

/* The worker's job: owns the fields and the signatures; v is cleared when
 * the verifier is freed first (then done only frees the job). */
struct vjob {
	struct dkim_verify *v;
	struct kfields fields;
	struct vsig *sigs;
	size_t n_sigs;
	struct vbody *bodies;
	size_t n_bodies;
	time_t now;
	unsigned min_bits, max_bits;
};

struct dkim_verify {
	struct dns *dns;
	struct pool *pool;
	struct dkim_limits lim;
	struct hdr_reader hr;
	struct kfields fields;
	struct vsig *sigs;
	size_t n_sigs;
	unsigned ignored; /* signatures past max_signatures */
	struct vbody *bodies;
	size_t n_bodies;
	bool header_done, finishing, started;
	size_t pending; /* key lookups in flight */
	dkim_verify_cb *cb;
	void *cb_arg;
	struct vjob *job;
	struct dkim_results res;
};

static void vsig_free(struct vsig *s)
{
	dns_cancel(&s->q);
	dkim_vsig_clear(s);
}

static bool on_field(void *arg, const struct hdr_field *f)
{
	struct dkim_verify *v = arg;
	if (f->over_limit || f->name_len == 0)
		return true;
	dkim_kfields_add(&v->fields, f);
	if (!hdr_is(f, "DKIM-Signature"))
		return true;
	if (v->n_sigs >= v->lim.max_signatures) {
		v->ignored++;
		return true;
	}
	v->sigs = xrealloc(v->sigs, (v->n_sigs + 1) * sizeof(*v->sigs));
	struct vsig *s = &v->sigs[v->n_sigs++];
	memset(s, 0, sizeof(*s));
	s->bhi = -1;
	s->owner = v;
	dkim_sig_parse(s, f->raw, f->len, f->truncated, time(NULL));
	return true;
}

static void body_feed(struct dkim_verify *v, const char *p, size_t n)
{
	for (size_t i = 0; i < v->n_bodies; i++)
		dkim_bodyhash_feed(v->bodies[i].bh, p, n);
}

static void key_answer(void *arg, const struct dns_answer *a);

/* The header section has ended: one body hash per distinct (c, hash, l),
 * and the key lookups start (RFC 6376 3.6.2.2: TXT at s._domainkey.d). */
static void header_end(struct dkim_verify *v)
{
	if (v->header_done)
		return;
	v->header_done = true;
	if (v->ignored)
		log_info("dkim signatures=%zu ignored=%u (dkim_max_signatures)", v->n_sigs,
			 v->ignored);
	for (size_t i = 0; i < v->n_sigs; i++) {
		struct vsig *s = &v->sigs[i];
		if (s->result != DKIM_NONE)
			continue;
		enum dkim_alg ha = s->alg == DKIM_ALG_RSA_SHA1 ? DKIM_ALG_RSA_SHA1
							       : DKIM_ALG_RSA_SHA256;
		size_t j;
		for (j = 0; j < v->n_bodies; j++)
			if (v->bodies[j].c == s->bc && v->bodies[j].a == ha && v->bodies[j].l == s->l)
				break;
		if (j == v->n_bodies) {
			v->bodies = xrealloc(v->bodies, (v->n_bodies + 1) * sizeof(*v->bodies));
			struct vbody *b = &v->bodies[v->n_bodies++];
			memset(b, 0, sizeof(*b));
			b->c = s->bc;
			b->a = ha;
			b->l = s->l;
			b->bh = dkim_bodyhash_new(s->bc, ha, s->l);
		}
		s->bhi = (int)j;
	}
	for (size_t i = 0; i < v->n_sigs; i++) {
		struct vsig *s = &v->sigs[i];
		if (s->result != DKIM_NONE)
			continue;
		if (v->dns == NULL) {
			dkim_vsig_set(s, DKIM_TEMPERROR, "no resolver");
			continue;
		}
		char *name = xasprintf("%s._domainkey.%s", s->selector, s->domain);
		if (strlen(name) > DKIM_DOMAIN_MAX) {
			dkim_vsig_set(s, DKIM_PERMERROR, "key name too long");
		} else {
			s->q = dns_lookup(v->dns, name, DNS_TXT, key_answer, s);
			if (s->q)
				v->pending++;
			else
				dkim_vsig_set(s, DKIM_TEMPERROR, "key lookup failed");
		}
		free(name);
	}
}

static void on_body(void *arg, const char *p, size_t n)
{
	struct dkim_verify *v = arg;
	header_end(v);
	body_feed(v, p, n);
}

struct dkim_verify *dkim_verify_new(struct dns *dns, struct pool *pool,
				    const struct dkim_limits *lim)
{
	struct dkim_verify *v = xcalloc(1, sizeof(*v));
	v->dns = dns;
	v->pool = pool;
	v->lim = *lim;
	hdr_reader_init(&v->hr, lim->max_field, lim->max_fields, on_field, on_body, v);
	return v;
}

void dkim_verify_feed(struct dkim_verify *v, const char *p, size_t n)
{
	if (v->finishing)
		return;
	hdr_reader_feed(&v->hr, p, n);
	if (v->hr.in_body)
		header_end(v); /* the empty line came without body bytes yet */
}

static void verify_one(struct vjob *j, struct vsig *s)
{
	if (s->result != DKIM_NONE)
		return;
	char *err = NULL;
	struct dkim_pubkey *k = dkim_pubkey_parse(s->key_txt, s->key_len, &err);
	if (k == NULL) {
		/* RFC 6376 3.6.1 p=: an empty value means the key was revoked */
		dkim_vsig_set(s, strcmp(err, "key revoked") == 0 ? DKIM_FAIL : DKIM_PERMERROR, err);
		free(err);
		return;
	}
	s->key_bits = dkim_pubkey_bits(k);
	bool ed = s->alg == DKIM_ALG_ED25519_SHA256;
	/* RFC 6376 6.1.2 */
	if (!dkim_pubkey_allows(k, s->alg)) {
		bool ktype_ok = dkim_pubkey_is_ed25519(k) == ed;
		dkim_vsig_set(s, DKIM_PERMERROR,
			 ktype_ok ? "key h= does not allow the hash" : "key type does not match a=");
	} else if (!ed && (s->key_bits < j->min_bits || s->key_bits > j->max_bits)) {
		char *r = xasprintf("RSA key of %u bits", s->key_bits);
		dkim_vsig_set(s, DKIM_PERMERROR, r); /* RFC 8301 3.2 */
		free(r);
	} else if (dkim_pubkey_strict(k) &&
		   strcasecmp(strchr(s->auid, '@') + 1, s->domain) != 0) {
		dkim_vsig_set(s, DKIM_PERMERROR, "key t=s: i= is a subdomain of d=");
	} else {
		/* RFC 6376 6.1.3: the body hash first, then the signature */
		const struct vbody *b = &j->bodies[s->bhi];
		if (b->dlen != s->bh_len || memcmp(b->digest, s->bh, b->dlen) != 0) {
			dkim_vsig_set(s, DKIM_FAIL, "body hash did not verify");
		} else {
			struct buf data = BUF_INIT;
			dkim_header_data(&j->fields, s->h, s->nh, s->hc, &data);
			dkim_sig_field_data(s->raw, s->raw_len, s->b_off, s->b_len, s->hc, &data);
			int r = dkim_pubkey_verify(k, s->alg, data.data, data.len, s->b,
						   s->b_len_dec);
			buf_free(&data);
			if (r < 0)
				dkim_vsig_set(s, DKIM_PERMERROR, "key type does not match a=");
			else if (r == 0)
				dkim_vsig_set(s, DKIM_FAIL, "signature did not verify");
			else if (s->alg == DKIM_ALG_RSA_SHA1)
				dkim_vsig_set(s, DKIM_POLICY, "rsa-sha1 is weak"); /* RFC 8301 3.1 */
			else
				dkim_vsig_set(s, DKIM_PASS, NULL);
		}
	}
	dkim_pubkey_free(&k);
}

static void job_work(void *arg)
{
	struct vjob *j = arg;
	for (size_t i = 0; i < j->n_sigs; i++)
		verify_one(j, &j->sigs[i]);
}

static void job_free(struct vjob *j)
{
	dkim_kfields_free(&j->fields);
	for (size_t i = 0; i < j->n_sigs; i++)
		vsig_free(&j->sigs[i]);
	free(j->sigs);
	for (size_t i = 0; i < j->n_bodies; i++)
		dkim_bodyhash_free(&j->bodies[i].bh);
	free(j->bodies);
	free(j);
}

static void job_done(void *arg)
{
	struct vjob *j = arg;
	struct dkim_verify *v = j->v;
	if (v == NULL) { /* the verifier was freed meanwhile */
		job_free(j);
		return;
	}
	v->job = NULL;
	v->res.n = j->n_sigs;
	v->res.v = xcalloc(j->n_sigs ? j->n_sigs : 1, sizeof(*v->res.v));
	for (size_t i = 0; i < j->n_sigs; i++) {
		struct vsig *s = &j->sigs[i];
		struct dkim_sig_result *r = &v->res.v[i];
		r->result = s->result == DKIM_NONE ? DKIM_PERMERROR : s->result;
		r->domain = s->domain;
		r->selector = s->selector;
		r->auid = s->auid;
		r->algorithm = s->algorithm;
		r->key_bits = s->key_bits;
		memcpy(r->b_prefix, s->b_prefix, sizeof(r->b_prefix));
		r->reason = s->reason;
		s->domain = s->selector = s->auid = s->algorithm = s->reason = NULL;
		log_info("dkim result=%s bits=%u d=%s s=%s a=%s reason=%s",
			 dkim_result_name(r->result), r->key_bits, r->domain ? r->domain : "-",
			 r->selector ? r->selector : "-", r->algorithm ? r->algorithm : "-",
			 r->reason ? r->reason : "-");
	}
	job_free(j);
	v->cb(v->cb_arg, &v->res);
}

/* Every lookup has ended and the message too: the job takes the fields,
 * the signatures and the body digests to a worker. */
static void start_job(struct dkim_verify *v)
{
	if (v->started || !v->finishing || v->pending > 0)
		return;
	v->started = true;
	struct vjob *j = xcalloc(1, sizeof(*j));
	j->v = v;
	j->fields = v->fields;
	memset(&v->fields, 0, sizeof(v->fields));
	j->sigs = v->sigs;
	j->n_sigs = v->n_sigs;
	v->sigs = NULL;
	v->n_sigs = 0;
	j->bodies = v->bodies;
	j->n_bodies = v->n_bodies;
	v->bodies = NULL;
	v->n_bodies = 0;
	j->now = time(NULL);
	j->min_bits = v->lim.min_rsa_bits;
	j->max_bits = v->lim.max_rsa_bits;
	v->job = j;
	pool_submit(v->pool, job_work, job_done, j);
}

static void key_answer(void *arg, const struct dns_answer *a)
{
	struct vsig *s = arg;
	s->q = NULL;
	switch (a->status) {
	case DNS_OK:
		/* RFC 6376 3.6.2.2: several records: we use the first */
		s->key_len = a->rr[0].u.txt.len;
		s->key_txt = xmalloc(s->key_len + 1);
		memcpy(s->key_txt, a->rr[0].u.txt.text, s->key_len);
		s->key_txt[s->key_len] = '\0';
		break;
	case DNS_NODATA:
	case DNS_NXDOMAIN:
	case DNS_BADNAME:
		dkim_vsig_set(s, DKIM_PERMERROR, "no key");
		break;
	default:
		dkim_vsig_set(s, DKIM_TEMPERROR, "key lookup failed");
		break;
	}
	struct dkim_verify *v = s->owner;
	v->pending--;
	start_job(v);
}

void dkim_verify_finish(struct dkim_verify *v, dkim_verify_cb *cb, void *arg)
{
	x_assert(!v->finishing);
	hdr_reader_end(&v->hr);
	header_end(v);
	v->cb = cb;
	v->cb_arg = arg;
	v->finishing = true;
	for (size_t i = 0; i < v->n_bodies; i++)
		v->bodies[i].dlen = dkim_bodyhash_final(v->bodies[i].bh, v->bodies[i].digest);
	start_job(v);
}

void dkim_verify_free(struct dkim_verify **vp)
{
	struct dkim_verify *v = *vp;
	if (v == NULL)
		return;
	if (v->job)
		v->job->v = NULL; /* job_done frees it */
	hdr_reader_free(&v->hr);
	dkim_kfields_free(&v->fields);
	for (size_t i = 0; i < v->n_sigs; i++)
		vsig_free(&v->sigs[i]);
	free(v->sigs);
	for (size_t i = 0; i < v->n_bodies; i++)
		dkim_bodyhash_free(&v->bodies[i].bh);
	free(v->bodies);
	for (size_t i = 0; i < v->res.n; i++) {
		struct dkim_sig_result *r = &v->res.v[i];
		free(r->domain);
		free(r->selector);
		free(r->auid);
		free(r->algorithm);
		free(r->reason);
	}
	free(v->res.v);
	free(v);
	*vp = NULL;
}

/* ---- signing ---- */

/* RFC 6376 5.4.1: the fields a signer SHOULD sign, when present; those
 * with `over` are also listed once more than they occur (oversigning: a
 * copy added in transit breaks the signature), the first four even when
 * absent. */
static const struct {
	const char *name;
	bool over, always;
} sign_fields[] = {
	{"From", true, true},         {"To", true, true},
	{"Subject", true, true},      {"Date", true, true},
	{"Cc", true, false},          {"Reply-To", true, false},
	{"Message-ID", true, false},  {"In-Reply-To", true, false},
	{"References", true, false},  {"MIME-Version", true, false},
	{"Content-Type", true, false}, {"Resent-Date", false, false},
	{"Resent-From", false, false}, {"Resent-Sender", false, false},
	{"Resent-To", false, false},  {"Resent-Cc", false, false},
	{"List-Id", false, false},    {"List-Help", false, false},
	{"List-Unsubscribe", false, false}, {"List-Subscribe", false, false},
	{"List-Post", false, false},  {"List-Owner", false, false},
	{"List-Archive", false, false},
};

struct skey {
	const struct dkim_key *key;
	char *domain, *selector;
};

struct dkim_sign {
	struct skey *keys;
	size_t n_keys;
	time_t now;
	struct hdr_reader hr;
	struct kfields fields;
	struct dkim_bodyhash *bh;
};

static bool sign_on_field(void *arg, const struct hdr_field *f)
{
	struct dkim_sign *s = arg;
	if (!f->over_limit && f->name_len > 0)
		dkim_kfields_add(&s->fields, f);
	return true;
}

static void sign_on_body(void *arg, const char *p, size_t n)
{
	struct dkim_sign *s = arg;
	dkim_bodyhash_feed(s->bh, p, n);
}

struct dkim_sign *dkim_sign_new(const struct dkim_signer_key *keys, size_t n, time_t now,
				const struct dkim_limits *lim)
{
	struct dkim_sign *s = xcalloc(1, sizeof(*s));
	s->keys = xcalloc(n ? n : 1, sizeof(*s->keys));
	for (size_t i = 0; i < n; i++) {
		s->keys[i].key = keys[i].key;
		s->keys[i].domain = xstrdup(keys[i].domain);
		s->keys[i].selector = xstrdup(keys[i].selector);
	}
	s->n_keys = n;
	s->now = now;
	/* relaxed/relaxed, SHA-256 for both algorithms: one body hash */
	s->bh = dkim_bodyhash_new(DKIM_CANON_RELAXED, DKIM_ALG_RSA_SHA256, -1);
	hdr_reader_init(&s->hr, lim->max_field, lim->max_fields, sign_on_field, sign_on_body, s);
	return s;
}

void dkim_sign_feed(struct dkim_sign *s, const char *p, size_t n)
{
	hdr_reader_feed(&s->hr, p, n);
}

/* Appends text to the field being built, folding before it when the line
 * would pass DKIM_FOLD (sep: what goes before text on the same line). */
static void fold_add(struct buf *out, size_t *col, const char *sep, const char *text, size_t n)
{
	size_t sl = strlen(sep);
	if (*col + sl + n > DKIM_FOLD && *col > 1) {
		buf_appends(out, "\r\n\t");
		*col = 8; /* a tab counts as up to 8 columns */
	} else {
		buf_appends(out, sep);
		*col += sl;
	}
	buf_append(out, text, n);
	*col += n;
}

int dkim_sign_finish(struct dkim_sign *s, struct buf *out)
{
	hdr_reader_end(&s->hr);
	unsigned char bh[64];
	size_t bhl = dkim_bodyhash_final(s->bh, bh);
	char *bh64 = base64_encode(bh, bhl);
	/* the h= list: names in sign_fields order, each as often as it occurs
	 * (plus one when oversigned) */
	size_t nh = 0;
	struct hname h[256];
	for (size_t i = 0; i < sizeof(sign_fields) / sizeof(sign_fields[0]); i++) {
		size_t nl = strlen(sign_fields[i].name), count = 0;
		for (size_t j = 0; j < s->fields.n; j++)
			if (s->fields.v[j].name_len == nl &&
			    strncasecmp(s->fields.v[j].raw, sign_fields[i].name, nl) == 0)
				count++;
		if (count == 0 && !sign_fields[i].always)
			continue;
		if (sign_fields[i].over)
			count++;
		for (size_t k = 0; k < count && nh < sizeof(h) / sizeof(h[0]); k++) {
			h[nh].p = sign_fields[i].name;
			h[nh].len = nl;
			nh++;
		}
	}
	struct buf data = BUF_INIT;
	dkim_header_data(&s->fields, h, nh, DKIM_CANON_RELAXED, &data);
	size_t hdr_len = data.len;
	int ret = 0;
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct skey *k = &s->keys[i];
		struct buf f = BUF_INIT;
		size_t col = 0;
		char *t;
		buf_appends(&f, "DKIM-Signature:");
		col = f.len;
		fold_add(&f, &col, " ", "v=1;", 4);
		t = xasprintf("a=%s;", dkim_key_alg(k->key));
		fold_add(&f, &col, " ", t, strlen(t));
		free(t);
		fold_add(&f, &col, " ", "c=relaxed/relaxed;", 18);
		t = xasprintf("d=%s;", k->domain);
		fold_add(&f, &col, " ", t, strlen(t));
		free(t);
		t = xasprintf("s=%s;", k->selector);
		fold_add(&f, &col, " ", t, strlen(t));
		free(t);
		t = xasprintf("t=%lld;", (long long)s->now);
		fold_add(&f, &col, " ", t, strlen(t));
		free(t);
		/* h=: folded between names (FWS around ':' is allowed, RFC 6376 3.5) */
		for (size_t j = 0; j < nh; j++) {
			t = xasprintf("%s%.*s%s", j == 0 ? "h=" : "", (int)h[j].len, h[j].p,
				      j + 1 == nh ? ";" : ":");
			fold_add(&f, &col, j == 0 ? " " : "", t, strlen(t));
			free(t);
		}
		t = xasprintf("bh=%s;", bh64);
		fold_add(&f, &col, " ", t, strlen(t));
		free(t);
		fold_add(&f, &col, " ", "b=", 2);
		size_t b_off = f.len;
		buf_appends(&f, "\r\n");
		/* the header hash input: the signed fields, then this field with
		 * b= empty and no final CRLF (RFC 6376 3.7) */
		data.len = hdr_len;
		dkim_sig_field_data(f.data, f.len, b_off, 0, DKIM_CANON_RELAXED, &data);
		f.len = b_off;
		struct buf sig = BUF_INIT;
		if (dkim_key_sign(k->key, data.data, data.len, &sig) < 0) {
			log_warn("dkim sign failed d=%s s=%s", k->domain, k->selector);
			ret = -1;
		} else {
			/* b= folded in pieces that fill each line */
			size_t off = 0;
			while (off < sig.len) {
				size_t room = col < DKIM_FOLD ? DKIM_FOLD - col : 0;
				if (room < 8) {
					buf_appends(&f, "\r\n\t");
					col = 8;
					room = DKIM_FOLD - col;
				}
				size_t take = sig.len - off < room ? sig.len - off : room;
				buf_append(&f, sig.data + off, take);
				col += take;
				off += take;
			}
			buf_appends(&f, "\r\n");
			buf_append(out, f.data, f.len);
		}
		buf_free(&sig);
		buf_free(&f);
	}
	buf_free(&data);
	free(bh64);
	return ret;
}

void dkim_sign_free(struct dkim_sign **sp)
{
	struct dkim_sign *s = *sp;
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n_keys; i++) {
		free(s->keys[i].domain);
		free(s->keys[i].selector);
	}
	free(s->keys);
	hdr_reader_free(&s->hr);
	dkim_kfields_free(&s->fields);
	dkim_bodyhash_free(&s->bh);
	free(s);
	*sp = NULL;
}
