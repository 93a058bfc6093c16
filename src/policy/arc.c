/* ARC (RFC 8617): chain validation of inbound mail and sealing of mail
 * postern forwards, built on dkim.h's primitives (tag lists, header
 * canonicalization, body hashes, keys).
 *
 * Both directions collect the header section with hdr.h (bounded by the
 * dkim_limits), group the ARC fields by instance and check the chain's
 * structure (RFC 8617 5.2 steps 1-3) when the header has ended. The verifier
 * then starts the key lookups (TXT s._domainkey.d, src/dns: every AS's and
 * the newest AMS's, at most N + 1) while the body streams through the AMS
 * body hashes; when the message and every lookup have ended, one worker job
 * parses the keys and checks the newest AMS and every AS, newest first (5.2
 * steps 4 and 6), then the older AMS for oldest-pass (step 5). That job
 * owns everything it reads (struct arc_work): arc_verify_free while it runs
 * only orphans it. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/arc.h"
#include "policy/hdr.h"

#define ARC_MAX_INSTANCES 50 /* RFC 8617 4.2.1 */
#define ARC_MAX_TAGS 32      /* tags kept per AMS/AS (more: malformed) */
#define ARC_MAX_BODYHASHES 4 /* distinct c=/a=/l= among the AMS hashed */
#define ARC_MAX_H_NAMES 256  /* names in an AMS's h= (more: invalid; bounds the work) */

const char *arc_result_name(enum arc_result r)
{
	switch (r) {
	case ARC_PASS:
		return "pass";
	case ARC_FAIL:
		return "fail";
	default:
		return "none";
	}
}

/* ---- the header section ---- */
struct arc_field {
	char *raw;
	size_t len, name_len;
	bool truncated;
};

struct arc_msg {
	struct hdr_reader rd;
	struct arc_field *f;
	size_t n, cap;
	bool header_done, arc_lost; /* arc_lost: an ARC field truncated or not kept */
	void (*on_header_end)(void *arg);
	void (*on_body)(void *arg, const char *p, size_t n);
	void *arg;
};

static bool is_arc_name(const char *raw, size_t name_len)
{
	static const char *const names[] = {"ARC-Seal", "ARC-Message-Signature",
					    "ARC-Authentication-Results"};
	for (size_t i = 0; i < 3; i++)
		if (strlen(names[i]) == name_len && strncasecmp(raw, names[i], name_len) == 0)
			return true;
	return false;
}

static bool msg_field(void *arg, const struct hdr_field *hf)
{
	struct arc_msg *m = arg;

	if (hf->over_limit) {
		/* not kept: an ARC field among them makes the chain unknowable */
		if (hf->name_len > 0 && is_arc_name(hf->raw, hf->name_len))
			m->arc_lost = true;
		return true;
	}
	if (hf->name_len > 0 && is_arc_name(hf->raw, hf->name_len) && hf->truncated)
		m->arc_lost = true;
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 32;
		m->f = xrealloc(m->f, m->cap * sizeof *m->f);
	}
	struct arc_field *f = &m->f[m->n++];
	f->raw = xmalloc(hf->len + 1);
	memcpy(f->raw, hf->raw, hf->len);
	f->raw[hf->len] = '\0';
	f->len = hf->len;
	f->name_len = hf->name_len;
	f->truncated = hf->truncated;
	return true;
}

static void msg_header_end(struct arc_msg *m)
{
	if (m->header_done)
		return;
	m->header_done = true;
	if (m->on_header_end)
		m->on_header_end(m->arg);
}

static void msg_body(void *arg, const char *p, size_t n)
{
	struct arc_msg *m = arg;

	msg_header_end(m);
	if (n > 0 && m->on_body)
		m->on_body(m->arg, p, n);
}

static void msg_init(struct arc_msg *m, const struct dkim_limits *lim)
{
	memset(m, 0, sizeof *m);
	hdr_reader_init(&m->rd, lim && lim->max_field ? lim->max_field : 65536,
			lim && lim->max_fields ? lim->max_fields : 1000, msg_field, msg_body, m);
}

static void msg_end(struct arc_msg *m)
{
	hdr_reader_end(&m->rd);
	msg_header_end(m);
}

static void fields_free(struct arc_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(f[i].raw);
	free(f);
}

static void msg_free(struct arc_msg *m)
{
	hdr_reader_free(&m->rd);
	fields_free(m->f, m->n);
	m->f = NULL;
	m->n = m->cap = 0;
}

static bool field_is(const struct arc_field *f, const char *name, size_t len)
{
	return f->name_len == len && strncasecmp(f->raw, name, len) == 0;
}

/* The value after the colon. */
static const char *field_value(const struct arc_field *f, size_t *len_r)
{
	const char *c = memchr(f->raw, ':', f->len);
	if (c == NULL) {
		*len_r = 0;
		return f->raw + f->len;
	}
	*len_r = f->len - (size_t)(c + 1 - f->raw);
	return c + 1;
}

/* ---- the chain ---- */
struct arc_set {
	int aar, ams, as; /* field indexes, -1: none */
	struct dkim_tag ams_t[ARC_MAX_TAGS], as_t[ARC_MAX_TAGS];
	int n_ams_t, n_as_t;
	enum arc_result cv;
};

struct arc_chain {
	enum arc_result structure; /* NONE: no ARC fields; PASS: well formed; FAIL */
	int n;                     /* the highest instance seen (1..50 when well formed) */
	const char *reason;
	bool newest_cv_fail;       /* the newest AS says cv=fail (RFC 8617 5.1 step 1) */
	struct arc_set set[ARC_MAX_INSTANCES + 1]; /* [1..n] */
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A tag's value with FWS at both ends trimmed, as a NUL-ended heap copy. */
static char *tag_dup(const struct dkim_tag *t, int n, const char *name)
{
	size_t len;
	const char *v = dkim_tag_get(t, n, name, &len);
	if (v == NULL)
		return NULL;
	while (len > 0 && is_wsp(*v))
		v++, len--;
	while (len > 0 && is_wsp(v[len - 1]))
		len--;
	return xstrndup(v, len);
}

/* A tag's value compared with s (FWS trimmed, case-insensitive). */
static bool tag_eq(const struct dkim_tag *t, int n, const char *name, const char *s)
{
	char *v = tag_dup(t, n, name);
	bool eq = v && strcasecmp(v, s) == 0;
	free(v);
	return eq;
}

/* i= as a number: 1..50, 0 when not digits, 51 for anything larger. */
static int instance_of(const char *v, size_t len)
{
	size_t i = 0;
	int n = 0;

	while (i < len && is_wsp(v[i]))
		i++;
	if (i == len || !isdigit((unsigned char)v[i]))
		return 0;
	for (; i < len && isdigit((unsigned char)v[i]); i++)
		if (n <= ARC_MAX_INSTANCES)
			n = n * 10 + (v[i] - '0');
	while (i < len && is_wsp(v[i]))
		i++;
	if (i != len)
		return 0;
	return n > ARC_MAX_INSTANCES ? ARC_MAX_INSTANCES + 1 : n;
}

/* RFC 8617 4.1.1: the AAR starts with "i=<n>;" (CFWS allowed around). */
static int aar_instance(const char *v, size_t len)
{
	size_t i = 0;
	while (i < len && is_wsp(v[i]))
		i++;
	if (i == len || (v[i] != 'i' && v[i] != 'I'))
		return 0;
	i++;
	while (i < len && is_wsp(v[i]))
		i++;
	if (i == len || v[i] != '=')
		return 0;
	i++;
	const char *semi = memchr(v + i, ';', len - i);
	if (semi == NULL)
		return 0;
	return instance_of(v + i, (size_t)(semi - (v + i)));
}

/* An empty chain. The tag arrays are not cleared: only n_ams_t / n_as_t of
 * them are ever read. (A memset of the whole struct, about 100 KB, cost
 * more CPU per inbound message than the rest of ARC verification: perf,
 * bench/auth-bench.) */
static void chain_reset(struct arc_chain *c)
{
	c->structure = ARC_NONE;
	c->n = 0;
	c->reason = NULL;
	c->newest_cv_fail = false;
	for (int i = 0; i <= ARC_MAX_INSTANCES; i++) {
		struct arc_set *s = &c->set[i];
		s->aar = s->ams = s->as = -1;
		s->n_ams_t = s->n_as_t = 0;
		s->cv = 0;
	}
}

/* The next name of an h= list (RFC 6376 3.5: names separated by ':', FWS
 * around each) from *pos: [*name_r, *name_r + *len_r), possibly empty.
 * false when the list is done. */
static bool h_next(const char *h, size_t hlen, size_t *pos, const char **name_r, size_t *len_r)
{
	size_t a = *pos, b = a;
	if (h == NULL || a > hlen)
		return false;
	while (b < hlen && h[b] != ':')
		b++;
	size_t x = a, y = b;
	while (x < y && is_wsp(h[x]))
		x++;
	while (y > x && is_wsp(h[y - 1]))
		y--;
	*name_r = h + x;
	*len_r = y - x;
	*pos = b + 1;
	return true;
}

/* Fills c from the fields (RFC 8617 5.2 steps 1-3). */
static void chain_parse(const struct arc_field *f, size_t n, bool arc_lost, struct arc_chain *c)
{
	bool dup = false, bad = false, too_many = false;
	const char *why = NULL;

	chain_reset(c);
	for (size_t k = 0; k < n; k++) {
		const struct arc_field *fk = &f[k];
		size_t vlen;
		const char *v;
		int inst;

		if (fk->name_len == 0 || !is_arc_name(fk->raw, fk->name_len))
			continue;
		c->structure = ARC_PASS;
		v = field_value(fk, &vlen);
		if (field_is(fk, "ARC-Authentication-Results", 26)) {
			inst = aar_instance(v, vlen);
			if (inst == 0) {
				bad = true, why = why ? why : "malformed ARC-Authentication-Results";
				continue;
			}
			if (inst > ARC_MAX_INSTANCES) {
				too_many = true;
				continue;
			}
			if (c->set[inst].aar >= 0)
				dup = true;
			c->set[inst].aar = (int)k;
		} else {
			bool seal = field_is(fk, "ARC-Seal", 8);
			struct dkim_tag tags[ARC_MAX_TAGS];
			int nt = dkim_tags_parse(v, vlen, tags, ARC_MAX_TAGS);
			size_t ilen;
			const char *iv = nt > 0 ? dkim_tag_get(tags, nt, "i", &ilen) : NULL;

			inst = iv ? instance_of(iv, ilen) : 0;
			if (nt < 0 || inst == 0) {
				bad = true;
				why = why ? why
					  : seal ? "malformed ARC-Seal" : "malformed ARC-Message-Signature";
				continue;
			}
			if (inst > ARC_MAX_INSTANCES) {
				too_many = true;
				continue;
			}
			struct arc_set *s = &c->set[inst];
			if (seal) {
				if (s->as >= 0)
					dup = true;
				s->as = (int)k;
				memcpy(s->as_t, tags, sizeof tags);
				s->n_as_t = nt;
			} else {
				if (s->ams >= 0)
					dup = true;
				s->ams = (int)k;
				memcpy(s->ams_t, tags, sizeof tags);
				s->n_ams_t = nt;
			}
		}
		if (inst > c->n)
			c->n = inst;
	}
	if (c->structure == ARC_NONE)
		return;
	c->structure = ARC_FAIL;
	if (too_many) {
		/* RFC 8617 5.2 step 1: more than 50 sets */
		c->reason = "more than 50 ARC sets";
		c->n = ARC_MAX_INSTANCES + 1;
		return;
	}
	if (c->n > 0 && c->set[c->n].as >= 0) {
		const struct arc_set *s = &c->set[c->n];
		if (tag_eq(s->as_t, s->n_as_t, "cv", "fail"))
			c->newest_cv_fail = true;
	}
	if (c->newest_cv_fail) {
		c->reason = "the newest ARC-Seal says cv=fail"; /* 5.2 step 2 */
		return;
	}
	if (arc_lost) {
		c->reason = "ARC field too long or past the header limit";
		return;
	}
	if (bad) {
		c->reason = why;
		return;
	}
	if (dup) {
		c->reason = "duplicate ARC field for one instance"; /* 5.2 step 3.1 */
		return;
	}
	for (int i = 1; i <= c->n; i++) {
		struct arc_set *s = &c->set[i];
		if (s->aar < 0 || s->ams < 0 || s->as < 0) {
			/* 5.2 steps 3.1 and 3.2: one of each, instances 1..N */
			c->reason = s->aar < 0 && s->ams < 0 && s->as < 0 ? "ARC instance missing"
								       : "incomplete ARC set";
			return;
		}
		/* 4.1.3 / 4.1.2: the tags an AS and an AMS must have */
		static const char *const as_req[] = {"a", "b", "cv", "d", "s"};
		static const char *const ams_req[] = {"a", "b", "bh", "d", "h", "s"};
		for (size_t k = 0; k < sizeof as_req / sizeof as_req[0]; k++)
			if (dkim_tag_get(s->as_t, s->n_as_t, as_req[k], &(size_t){0}) == NULL) {
				c->reason = "ARC-Seal lacks a required tag";
				return;
			}
		for (size_t k = 0; k < sizeof ams_req / sizeof ams_req[0]; k++)
			if (dkim_tag_get(s->ams_t, s->n_ams_t, ams_req[k], &(size_t){0}) == NULL) {
				c->reason = "ARC-Message-Signature lacks a required tag";
				return;
			}
		if (dkim_tag_get(s->as_t, s->n_as_t, "h", &(size_t){0}) != NULL) {
			c->reason = "ARC-Seal with h="; /* 4.1.3: h= not allowed */
			return;
		}
		/* 4.1.2: the AMS never covers ARC-Seal */
		size_t hlen, pos = 0, nlen;
		const char *h = dkim_tag_get(s->ams_t, s->n_ams_t, "h", &hlen), *name;
		while (h_next(h, hlen, &pos, &name, &nlen))
			if (nlen == 8 && strncasecmp(name, "ARC-Seal", 8) == 0) {
				c->reason = "ARC-Message-Signature covers ARC-Seal";
				return;
			}
		/* 5.2 step 3.3: cv=none for instance 1, pass for the others */
		if (tag_eq(s->as_t, s->n_as_t, "cv", "none"))
			s->cv = ARC_NONE;
		else if (tag_eq(s->as_t, s->n_as_t, "cv", "pass"))
			s->cv = ARC_PASS;
		else
			s->cv = ARC_FAIL;
		if (s->cv == ARC_FAIL) {
			c->reason = "an ARC-Seal says cv=fail or an unknown cv";
			return;
		}
		if ((i == 1) != (s->cv == ARC_NONE)) {
			c->reason = i == 1 ? "ARC-Seal i=1 without cv=none"
					   : "ARC-Seal i>1 without cv=pass";
			return;
		}
	}
	c->structure = ARC_PASS;
}

enum arc_result arc_check_structure(const char *header, size_t len, int *instances_r,
				    const char **reason_r)
{
	struct arc_msg m;
	struct arc_chain *c = xmalloc(sizeof *c);
	enum arc_result r;

	msg_init(&m, NULL);
	hdr_reader_feed(&m.rd, header, len);
	msg_end(&m);
	chain_parse(m.f, m.n, m.arc_lost, c);
	r = c->structure;
	*instances_r = c->n;
	*reason_r = c->reason;
	msg_free(&m);
	free(c);
	return r;
}

/* ---- hash inputs ---- */

/* [*start, *end) of the b= tag's value in f->raw (RFC 6376 3.5: deleted,
 * surrounding whitespace included, for the hash). 0 or -1 when absent. */
static int b_value_span(const struct arc_field *f, size_t *start, size_t *end)
{
	size_t vlen;
	const char *v = field_value(f, &vlen);
	size_t base = (size_t)(v - f->raw), i = 0;

	/* the final CRLF is not part of the value */
	if (vlen >= 2 && v[vlen - 2] == '\r' && v[vlen - 1] == '\n')
		vlen -= 2;
	while (i < vlen) {
		while (i < vlen && is_wsp(v[i]))
			i++;
		size_t ns = i;
		while (i < vlen && v[i] != '=' && v[i] != ';' && !is_wsp(v[i]))
			i++;
		size_t ne = i;
		while (i < vlen && is_wsp(v[i]))
			i++;
		bool is_b = ne - ns == 1 && (v[ns] == 'b');
		if (i < vlen && v[i] == '=')
			i++;
		size_t vs = i;
		while (i < vlen && v[i] != ';')
			i++;
		if (is_b) {
			*start = base + vs;
			*end = base + i;
			return 0;
		}
		i++; /* the ';' */
	}
	return -1;
}

/* f canonicalized with its b= value emptied and without its final CRLF
 * (RFC 6376 3.7: the signature field itself ends the hash input). */
static void canon_self(enum dkim_canon canon, const struct arc_field *f, struct buf *out)
{
	struct buf tmp = BUF_INIT;
	size_t s, e;

	if (b_value_span(f, &s, &e) == 0) {
		buf_append(&tmp, f->raw, s);
		buf_append(&tmp, f->raw + e, f->len - e);
	} else {
		buf_append(&tmp, f->raw, f->len);
	}
	size_t before = out->len;
	dkim_canon_header(canon, tmp.data, tmp.len, out);
	if (out->len >= before + 2 && out->data[out->len - 2] == '\r' &&
	    out->data[out->len - 1] == '\n')
		out->len -= 2;
	out->data[out->len] = '\0';
	buf_free(&tmp);
}

/* RFC 6376 5.4.2 / 3.7: for each name in h=, the last field of that name
 * not used yet (bottom up); names without such a field add nothing. skip:
 * the signature field itself (never selected). */
static void canon_selected(enum dkim_canon canon, const struct arc_field *f, size_t n,
			   const char *h, size_t hlen, size_t skip, struct buf *out)
{
	bool *used = xcalloc(n ? n : 1, sizeof *used);
	size_t pos = 0, nlen;
	const char *name;

	while (h_next(h, hlen, &pos, &name, &nlen)) {
		if (nlen == 0)
			continue;
		for (size_t k = n; k-- > 0;) {
			if (used[k] || k == skip || !field_is(&f[k], name, nlen))
				continue;
			used[k] = true;
			dkim_canon_header(canon, f[k].raw, f[k].len, out);
			break;
		}
	}
	free(used);
}

/* RFC 8617 5.1.1: the sets 1..upto in increasing instance order, AAR, AMS,
 * AS in each, relaxed; the AS of upto with b= emptied, last, without CRLF. */
static void seal_input(const struct arc_field *f, const struct arc_chain *c, int from, int upto,
		       struct buf *out)
{
	for (int i = from; i <= upto; i++) {
		const struct arc_set *s = &c->set[i];
		dkim_canon_header(DKIM_CANON_RELAXED, f[s->aar].raw, f[s->aar].len, out);
		dkim_canon_header(DKIM_CANON_RELAXED, f[s->ams].raw, f[s->ams].len, out);
		if (i < upto)
			dkim_canon_header(DKIM_CANON_RELAXED, f[s->as].raw, f[s->as].len, out);
		else
			canon_self(DKIM_CANON_RELAXED, &f[s->as], out);
	}
}

/* A base64 tag value with its FWS removed, decoded. 0 or -1. */
static int tag_b64(const struct dkim_tag *t, int n, const char *name, unsigned char **out_r,
		   size_t *len_r)
{
	size_t len;
	const char *v = dkim_tag_get(t, n, name, &len);
	if (v == NULL)
		return -1;
	char *s = xmalloc(len + 1);
	size_t k = 0;
	for (size_t i = 0; i < len; i++)
		if (!is_wsp(v[i]))
			s[k++] = v[i];
	int r = base64_decode(s, k, out_r, len_r);
	free(s);
	return r;
}

static int alg_of(const struct dkim_tag *t, int n, enum dkim_alg *a)
{
	if (tag_eq(t, n, "a", "rsa-sha256"))
		*a = DKIM_ALG_RSA_SHA256;
	else if (tag_eq(t, n, "a", "ed25519-sha256"))
		*a = DKIM_ALG_ED25519_SHA256;
	else
		return -1; /* rsa-sha1 too: RFC 8301 3.1, never valid */
	return 0;
}

/* c= of an AMS: header and body canonicalization (RFC 6376 3.5; absent:
 * simple/simple, the DKIM default the AMS inherits, RFC 8617 4.1.2). */
static int canon_of(const struct dkim_tag *t, int n, enum dkim_canon *hc, enum dkim_canon *bc)
{
	char *v = tag_dup(t, n, "c");
	int r = 0;

	*hc = *bc = DKIM_CANON_SIMPLE;
	if (v != NULL) {
		char *slash = strchr(v, '/');
		if (slash)
			*slash++ = '\0';
		if (strcasecmp(v, "relaxed") == 0)
			*hc = DKIM_CANON_RELAXED;
		else if (strcasecmp(v, "simple") != 0)
			r = -1;
		if (slash && strcasecmp(slash, "relaxed") == 0)
			*bc = DKIM_CANON_RELAXED;
		else if (slash && strcasecmp(slash, "simple") != 0)
			r = -1;
	}
	free(v);
	return r;
}

/* ---- verification ---- */
struct arc_key {
	char *selector, *domain; /* domain lowercase */
	struct dns_query *q;
	struct arc_verify *v;
	int status; /* 0 pending, 1 a record, -1 temporary failure, -2 none */
	char *txt;
	size_t txt_len;
};

/* Everything the worker reads and writes; owned by the verifier until the
 * job starts, by the job afterwards. */
struct arc_work {
	struct arc_field *f;
	size_t n;
	struct arc_chain *chain;
	struct arc_key *keys;
	size_t n_keys;
	/* index into keys / bh, -1: none */
	int key_ams[ARC_MAX_INSTANCES + 1], key_as[ARC_MAX_INSTANCES + 1];
	int ams_bh[ARC_MAX_INSTANCES + 1];
	unsigned char bh[ARC_MAX_BODYHASHES][64];
	size_t bh_len[ARC_MAX_BODYHASHES];
	struct dkim_limits lim;
	/* the result */
	struct arc_outcome out;
	char reason[128];
};

struct arc_job {
	struct arc_verify *v; /* NULL: orphaned (the verifier was freed) */
	struct arc_work *w;
};

struct arc_verify {
	struct dns *dns;
	struct pool *pool;
	struct dkim_limits lim;
	struct arc_msg m;
	struct arc_work *w;
	/* the body hashes the AMS need, as the body streams */
	struct {
		enum dkim_canon c;
		enum dkim_alg a;
		int64_t limit;
		struct dkim_bodyhash *h;
	} bh[ARC_MAX_BODYHASHES];
	int n_bh;
	size_t pending;
	bool finished, submitted;
	arc_cb *cb;
	void *cb_arg;
	struct arc_job *job;
};

static void work_free(struct arc_work *w)
{
	if (w == NULL)
		return;
	fields_free(w->f, w->n);
	free(w->chain);
	for (size_t i = 0; i < w->n_keys; i++) {
		dns_cancel(&w->keys[i].q);
		free(w->keys[i].selector);
		free(w->keys[i].domain);
		free(w->keys[i].txt);
	}
	free(w->keys);
	for (size_t i = 0; i < w->out.n_domains; i++)
		free(w->out.domains[i]);
	free(w->out.domains);
	free(w);
}

static void work_fail(struct arc_work *w, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void work_fail(struct arc_work *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->reason, sizeof w->reason, fmt, ap);
	va_end(ap);
	w->out.result = ARC_FAIL;
	w->out.reason = w->reason;
}

/* Checks one signature with key slot k; 1 valid, 0 not (reason set). */
static int work_sig(struct arc_work *w, int k, const struct dkim_tag *t, int nt,
		    const struct buf *input, const char *what, int inst)
{
	struct arc_key *key = &w->keys[k];
	enum dkim_alg alg;
	unsigned char *sig = NULL;
	size_t sig_len;
	char *err = NULL;
	int ok = 0;

	if (key->status == -1) {
		snprintf(w->reason, sizeof w->reason, "%s i=%d: key lookup failed (temporary)",
			 what, inst);
		w->out.temporary = true;
		return 0;
	}
	if (key->status != 1) {
		snprintf(w->reason, sizeof w->reason, "%s i=%d: no key", what, inst);
		return 0;
	}
	if (alg_of(t, nt, &alg) < 0) {
		snprintf(w->reason, sizeof w->reason, "%s i=%d: unsupported algorithm", what,
			 inst);
		return 0;
	}
	struct dkim_pubkey *pk = dkim_pubkey_parse(key->txt, key->txt_len, &err);
	if (pk == NULL) {
		snprintf(w->reason, sizeof w->reason, "%s i=%d: bad key (%s)", what, inst,
			 err ? err : "?");
		free(err);
		return 0;
	}
	unsigned bits = dkim_pubkey_bits(pk);
	if (alg == DKIM_ALG_RSA_SHA256 &&
	    ((w->lim.min_rsa_bits && bits < w->lim.min_rsa_bits) ||
	     (w->lim.max_rsa_bits && bits > w->lim.max_rsa_bits))) {
		snprintf(w->reason, sizeof w->reason, "%s i=%d: RSA key of %u bits", what, inst,
			 bits);
	} else if (tag_b64(t, nt, "b", &sig, &sig_len) < 0) {
		snprintf(w->reason, sizeof w->reason, "%s i=%d: b= is not base64", what, inst);
	} else {
		int r = dkim_pubkey_verify(pk, alg, input->data, input->len, sig, sig_len);
		if (r == 1)
			ok = 1;
		else
			snprintf(w->reason, sizeof w->reason, "%s i=%d: %s", what, inst,
				 r < 0 ? "key type does not match a=" : "signature did not verify");
	}
	free(sig);
	dkim_pubkey_free(&pk);
	return ok;
}

/* The AMS of instance i against the message (RFC 8617 5.2 step 4: as a
 * DKIM-Signature, RFC 6376 6.1.3): 1 valid, 0 not (w->reason says why).
 * in: scratch, reset by the caller. */
static int ams_check(struct arc_work *w, int i, struct buf *in)
{
	const struct arc_set *s = &w->chain->set[i];
	enum dkim_canon hc, bc;
	unsigned char *bh = NULL;
	size_t bh_len = 0, hlen;
	const char *h = dkim_tag_get(s->ams_t, s->n_ams_t, "h", &hlen);
	int k = w->ams_bh[i];

	if (canon_of(s->ams_t, s->n_ams_t, &hc, &bc) < 0 || k < 0) {
		work_fail(w, "ARC-Message-Signature i=%d: bad c=, a= or l=", i);
		return 0;
	}
	size_t names = 1;
	for (size_t j = 0; j < hlen; j++)
		names += h[j] == ':';
	if (names > ARC_MAX_H_NAMES) {
		work_fail(w, "ARC-Message-Signature i=%d: h= names too many fields", i);
		return 0;
	}
	if (tag_b64(s->ams_t, s->n_ams_t, "bh", &bh, &bh_len) < 0 || bh_len != w->bh_len[k] ||
	    memcmp(bh, w->bh[k], bh_len) != 0) {
		free(bh);
		work_fail(w, "ARC-Message-Signature i=%d: body hash did not verify", i);
		return 0;
	}
	free(bh);
	if (w->key_ams[i] < 0) {
		work_fail(w, "ARC-Message-Signature i=%d: bad s= or d=", i);
		return 0;
	}
	canon_selected(hc, w->f, w->n, h, hlen, (size_t)s->ams, in);
	canon_self(hc, &w->f[s->ams], in);
	return work_sig(w, w->key_ams[i], s->ams_t, s->n_ams_t, in, "ARC-Message-Signature", i);
}

/* RFC 8617 5.2 steps 4-7, on a worker. */
static void work_run(void *arg)
{
	struct arc_job *job = arg;
	struct arc_work *w = job->w;
	struct arc_chain *c = w->chain;
	struct buf in = BUF_INIT;

	w->out.instances = c->n;
	if (c->structure != ARC_PASS) {
		w->out.result = c->structure;
		w->out.reason = c->reason;
		return;
	}
	/* step 4: the newest AMS */
	if (!ams_check(w, c->n, &in)) {
		w->out.result = ARC_FAIL;
		w->out.reason = w->reason;
		goto out;
	}
	/* step 6: every AS, newest first */
	for (int i = c->n; i >= 1; i--) {
		const struct arc_set *si = &c->set[i];
		buf_reset(&in);
		seal_input(w->f, c, 1, i, &in);
		if (!work_sig(w, w->key_as[i], si->as_t, si->n_as_t, &in, "ARC-Seal", i)) {
			w->out.result = ARC_FAIL;
			w->out.reason = w->reason;
			goto out;
		}
	}
	/* step 5 (after 6: only a passing chain needs it): the older AMS,
	 * newest first; oldest-pass is the lowest instance of the unbroken
	 * run of valid ones, 0 when all are valid */
	w->out.oldest_pass = 0;
	for (int i = c->n - 1; i >= 1; i--) {
		buf_reset(&in);
		if (!ams_check(w, i, &in)) {
			w->out.oldest_pass = i + 1;
			break;
		}
	}
	/* step 7 (an older AMS's failure above is no reason) */
	w->out.result = ARC_PASS;
	w->out.reason = NULL;
	w->out.temporary = false;
	w->out.domains = xcalloc((size_t)c->n, sizeof *w->out.domains);
	for (int i = 1; i <= c->n; i++) {
		char *d = tag_dup(c->set[i].as_t, c->set[i].n_as_t, "d");
		for (char *p = d; p && *p; p++)
			*p = (char)tolower((unsigned char)*p);
		w->out.domains[w->out.n_domains++] = d ? d : xstrdup("");
	}
out:
	buf_free(&in);
}

static void work_done(void *arg)
{
	struct arc_job *job = arg;
	struct arc_verify *v = job->v;
	struct arc_work *w = job->w;

	if (v != NULL) {
		v->job = NULL;
		if (w->out.result == ARC_FAIL)
			log_info("arc verify result=fail i=%d reason=%s", w->out.instances,
				 w->out.reason ? w->out.reason : "");
		/* cb may free v: nothing of v is touched afterwards */
		v->cb(v->cb_arg, &w->out);
	}
	work_free(w);
	free(job);
}

static void verify_submit(struct arc_verify *v)
{
	struct arc_job *job = xcalloc(1, sizeof *job);

	v->submitted = true;
	job->v = v;
	job->w = v->w;
	v->w = NULL;
	v->job = job;
	pool_submit(v->pool, work_run, work_done, job);
}

static void key_answer(void *arg, const struct dns_answer *a)
{
	struct arc_key *k = arg;
	struct arc_verify *v = k->v;

	k->q = NULL;
	if (a->status == DNS_OK && a->n > 0) {
		k->status = 1;
		k->txt = xstrndup(a->rr[0].u.txt.text, a->rr[0].u.txt.len);
		k->txt_len = a->rr[0].u.txt.len;
	} else {
		k->status = a->status == DNS_TEMPFAIL ? -1 : -2;
	}
	if (--v->pending == 0 && v->finished)
		verify_submit(v);
}

static bool dns_label_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 253)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
			return false;
	return true;
}

/* The key slot for (s=, d=) of tags, its lookup started if new and start
 * is set; -1 if unusable (or new and not to be started). */
static int key_slot(struct arc_verify *v, const struct dkim_tag *t, int nt, bool start)
{
	struct arc_work *w = v->w;
	char *sel = tag_dup(t, nt, "s"), *dom = tag_dup(t, nt, "d");

	if (sel == NULL || dom == NULL || !dns_label_ok(sel) || !dns_label_ok(dom)) {
		free(sel);
		free(dom);
		return -1;
	}
	for (char *p = dom; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (size_t i = 0; i < w->n_keys; i++)
		if (strcasecmp(w->keys[i].selector, sel) == 0 &&
		    strcmp(w->keys[i].domain, dom) == 0) {
			free(sel);
			free(dom);
			return (int)i;
		}
	if (!start) {
		free(sel);
		free(dom);
		return -1;
	}
	struct arc_key *k = &w->keys[w->n_keys];
	memset(k, 0, sizeof *k);
	k->selector = sel;
	k->domain = dom;
	k->v = v;
	char *name = xasprintf("%s._domainkey.%s", sel, dom);
	k->q = v->dns ? dns_lookup(v->dns, name, DNS_TXT, key_answer, k) : NULL;
	free(name);
	if (k->q != NULL)
		v->pending++;
	else
		k->status = -1;
	return (int)w->n_keys++;
}

/* The body hash an AMS needs (c=, a=, l=), shared by the AMS that agree,
 * started if new; -1 when unusable or past ARC_MAX_BODYHASHES (the newest
 * AMS comes first, so it always gets one). */
static int bh_slot(struct arc_verify *v, const struct dkim_tag *t, int nt)
{
	enum dkim_canon hc, bc;
	enum dkim_alg alg;
	int64_t limit = -1;

	if (canon_of(t, nt, &hc, &bc) < 0 || alg_of(t, nt, &alg) < 0)
		return -1;
	char *l = tag_dup(t, nt, "l");
	if (l != NULL) {
		char *end;
		long long x = strtoll(l, &end, 10);
		bool ok = isdigit((unsigned char)l[0]) && *end == '\0' && x >= 0;
		free(l);
		if (!ok)
			return -1;
		limit = x;
	}
	for (int k = 0; k < v->n_bh; k++)
		if (v->bh[k].c == bc && v->bh[k].a == alg && v->bh[k].limit == limit)
			return k;
	if (v->n_bh == ARC_MAX_BODYHASHES)
		return -1;
	v->bh[v->n_bh].c = bc;
	v->bh[v->n_bh].a = alg;
	v->bh[v->n_bh].limit = limit;
	v->bh[v->n_bh].h = dkim_bodyhash_new(bc, alg, limit);
	return v->n_bh++;
}

static void verify_header_end(void *arg)
{
	struct arc_verify *v = arg;
	struct arc_work *w = v->w;
	struct arc_chain *c = w->chain;

	chain_parse(v->m.f, v->m.n, v->m.arc_lost, c);
	if (c->structure != ARC_PASS)
		return;
	/* one slot per distinct key: every AS and the newest AMS (at most
	 * N + 1 lookups per message); an older AMS only checked for
	 * oldest-pass with a key one of those has (the usual case: one key
	 * signs a hop's AMS and AS) */
	w->keys = xcalloc((size_t)c->n + 1, sizeof *w->keys);
	for (int i = 1; i <= c->n; i++)
		w->key_as[i] = key_slot(v, c->set[i].as_t, c->set[i].n_as_t, true);
	for (int i = c->n; i >= 1; i--) {
		w->key_ams[i] = key_slot(v, c->set[i].ams_t, c->set[i].n_ams_t, i == c->n);
		w->ams_bh[i] = bh_slot(v, c->set[i].ams_t, c->set[i].n_ams_t);
	}
	for (int i = 1; i <= c->n; i++)
		if (w->key_as[i] < 0) {
			c->structure = ARC_FAIL;
			c->reason = "ARC-Seal with a bad s= or d=";
		}
	if (w->key_ams[c->n] < 0) {
		c->structure = ARC_FAIL;
		c->reason = "ARC-Message-Signature with a bad s= or d=";
	}
}

static void verify_body(void *arg, const char *p, size_t n)
{
	struct arc_verify *v = arg;
	for (int k = 0; k < v->n_bh; k++)
		dkim_bodyhash_feed(v->bh[k].h, p, n);
}

struct arc_verify *arc_verify_new(struct dns *dns, struct pool *pool,
				  const struct dkim_limits *lim)
{
	struct arc_verify *v = xcalloc(1, sizeof *v);

	v->dns = dns;
	v->pool = pool;
	if (lim)
		v->lim = *lim;
	v->w = xcalloc(1, sizeof *v->w);
	v->w->chain = xmalloc(sizeof *v->w->chain);
	chain_reset(v->w->chain);
	for (int i = 0; i <= ARC_MAX_INSTANCES; i++)
		v->w->key_ams[i] = v->w->key_as[i] = v->w->ams_bh[i] = -1;
	v->w->out.oldest_pass = -1;
	v->w->lim = v->lim;
	msg_init(&v->m, lim);
	v->m.on_header_end = verify_header_end;
	v->m.on_body = verify_body;
	v->m.arg = v;
	return v;
}

void arc_verify_feed(struct arc_verify *v, const char *p, size_t n)
{
	if (!v->finished)
		hdr_reader_feed(&v->m.rd, p, n);
}

static void finish_async(struct arc_verify *v, arc_cb *cb, void *arg)
{
	struct arc_work *w = v->w;

	v->finished = true;
	v->cb = cb;
	v->cb_arg = arg;
	for (int k = 0; k < v->n_bh; k++) {
		w->bh_len[k] = dkim_bodyhash_final(v->bh[k].h, w->bh[k]);
		dkim_bodyhash_free(&v->bh[k].h);
	}
	v->n_bh = 0;
	/* the worker owns the fields from now on */
	w->f = v->m.f;
	w->n = v->m.n;
	v->m.f = NULL;
	v->m.n = v->m.cap = 0;
	/* the callback always comes from the loop: through the pool even when
	 * there is nothing to check */
	if (v->pending == 0)
		verify_submit(v);
}

void arc_verify_finish(struct arc_verify *v, arc_cb *cb, void *arg)
{
	x_assert(!v->finished);
	msg_end(&v->m);
	finish_async(v, cb, arg);
}

bool arc_verify_end(struct arc_verify *v, struct arc_outcome *now, arc_cb *cb, void *arg)
{
	struct arc_work *w = v->w;
	const struct arc_chain *c = w->chain;

	x_assert(!v->finished);
	msg_end(&v->m);
	if (v->pending == 0 && c->structure != ARC_PASS) {
		/* none, or a chain that fails on its structure (RFC 8617 5.2
		 * steps 1-3): no key, no signature, nothing for a worker */
		v->finished = true;
		w->out.instances = c->n;
		w->out.result = c->structure;
		w->out.reason = c->reason;
		if (c->structure == ARC_FAIL)
			log_info("arc verify result=fail i=%d reason=%s", c->n,
				 c->reason ? c->reason : "");
		*now = w->out;
		return true;
	}
	finish_async(v, cb, arg);
	return false;
}

void arc_verify_free(struct arc_verify **vp)
{
	struct arc_verify *v = *vp;

	if (v == NULL)
		return;
	if (v->job)
		v->job->v = NULL; /* the job finishes and its result is dropped */
	work_free(v->w);      /* cancels the lookups in flight */
	for (int k = 0; k < v->n_bh; k++)
		dkim_bodyhash_free(&v->bh[k].h);
	msg_free(&v->m);
	free(v);
	*vp = NULL;
}

/* ---- sealing ---- */
struct arc_seal {
	struct dkim_signer_key key;
	char *domain, *selector;
	time_t now;
	struct arc_msg m;
	struct dkim_bodyhash *bh;
};

static void seal_header_end(void *arg)
{
	struct arc_seal *s = arg;
	/* 5.1.1 via 4.1.2: the AMS postern writes is relaxed/relaxed */
	s->bh = dkim_bodyhash_new(DKIM_CANON_RELAXED, DKIM_ALG_RSA_SHA256, -1);
}

static void seal_body(void *arg, const char *p, size_t n)
{
	struct arc_seal *s = arg;
	dkim_bodyhash_feed(s->bh, p, n);
}

struct arc_seal *arc_seal_new(const struct dkim_signer_key *key, time_t now,
			      const struct dkim_limits *lim)
{
	struct arc_seal *s = xcalloc(1, sizeof *s);

	s->domain = xstrdup(key->domain);
	s->selector = xstrdup(key->selector);
	s->key.key = key->key;
	s->key.domain = s->domain;
	s->key.selector = s->selector;
	s->now = now;
	msg_init(&s->m, lim);
	s->m.on_header_end = seal_header_end;
	s->m.on_body = seal_body;
	s->m.arg = s;
	return s;
}

void arc_seal_feed(struct arc_seal *s, const char *p, size_t n)
{
	hdr_reader_feed(&s->m.rd, p, n);
}

/* The header fields the AMS signs (RFC 6376 5.4.1's list); the first four
 * are signed once more than they occur, like DKIM signing does. */
static const char *const seal_headers[] = {
	"From", "Subject", "To", "Date", "Cc", "Reply-To", "Message-ID", "In-Reply-To",
	"References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-ID", "Content-Description", "Resent-Date", "Resent-From", "Resent-To",
	"Resent-Cc", "Resent-Sender", "Resent-Message-ID", "Sender", "List-Id", "List-Help",
	"List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
};
#define SEAL_OVERSIGNED 4

/* Appends "b=" and the signature of input folded in lines of 72. */
static int sign_append(const struct dkim_key *k, const struct buf *input, struct buf *hdr)
{
	struct buf sig = BUF_INIT;
	if (dkim_key_sign(k, input->data, input->len, &sig) < 0) {
		buf_free(&sig);
		return -1;
	}
	for (size_t i = 0; i < sig.len; i += 72) {
		if (i > 0)
			buf_appends(hdr, "\r\n\t");
		buf_append(hdr, sig.data + i, sig.len - i < 72 ? sig.len - i : 72);
	}
	buf_appends(hdr, "\r\n");
	buf_free(&sig);
	return 0;
}

/* hdr (ending in "b=") as a field for canon_self. */
static void canon_unsigned(const struct buf *hdr, struct buf *out)
{
	struct arc_field f;
	struct buf t = BUF_INIT;

	buf_append(&t, hdr->data, hdr->len);
	buf_appends(&t, "\r\n");
	f.raw = t.data;
	f.len = t.len;
	f.name_len = (size_t)(strchr(t.data, ':') - t.data);
	f.truncated = false;
	canon_self(DKIM_CANON_RELAXED, &f, out);
	buf_free(&t);
}

/* "ARC-Authentication-Results: i=N; id; ar" (RFC 8617 4.1.1); longer than
 * 78 octets (RFC 5322 2.1.1), folded after each "; " that separates
 * results (outside comments and quoted strings), as Authentication-Results
 * fields are. */
static void aar_field(struct buf *out, int inst, const char *authserv_id, const char *ar)
{
	size_t start = out->len;
	buf_printf(out, "ARC-Authentication-Results: i=%d; %s; %s", inst, authserv_id, ar);
	if (out->len - start <= 78) {
		buf_appends(out, "\r\n");
		return;
	}
	out->len = start;
	buf_printf(out, "ARC-Authentication-Results: i=%d; %s;\r\n\t", inst, authserv_id);
	int depth = 0;
	bool quoted = false;
	for (const char *p = ar; *p; p++) {
		if (quoted) {
			if (*p == '\\' && p[1])
				buf_appendc(out, *p++);
			else if (*p == '"')
				quoted = false;
		} else if (*p == '"') {
			quoted = true;
		} else if (*p == '(') {
			depth++;
		} else if (*p == ')' && depth > 0) {
			depth--;
		} else if (*p == ';' && depth == 0 && p[1] == ' ') {
			buf_appends(out, ";\r\n\t");
			p++;
			continue;
		}
		buf_appendc(out, *p);
	}
	buf_appends(out, "\r\n");
}

int arc_seal_finish(struct arc_seal *s, const char *authserv_id, const char *ar,
		    const struct arc_outcome *chain, struct buf *out)
{
	struct arc_chain *c = xmalloc(sizeof *c);
	struct buf aar = BUF_INIT, ams = BUF_INIT, as = BUF_INIT, in = BUF_INIT;
	unsigned char bh[64];
	size_t bh_len;
	enum arc_result cv;
	int ret = -1, inst;

	msg_end(&s->m);
	chain_parse(s->m.f, s->m.n, s->m.arc_lost, c);
	if (c->newest_cv_fail) {
		/* RFC 8617 5.1 step 1: nothing more to add */
		log_info("arc seal skipped: the chain already says cv=fail");
		ret = 0;
		goto done;
	}
	if (chain && chain->result == ARC_FAIL && chain->temporary) {
		log_info("arc seal skipped: the chain could not be validated now (key lookup)");
		ret = 0;
		goto done;
	}
	if (c->structure == ARC_NONE)
		cv = ARC_NONE;
	else if (chain && chain->result == ARC_PASS && c->structure == ARC_PASS)
		cv = ARC_PASS;
	else if (chain && chain->result == ARC_NONE) {
		/* ARC fields present but never validated: no cv to claim (an
		 * unverified "pass" would be a lie, cv=none is only for i=1) */
		log_info("arc seal skipped: the chain was not validated");
		ret = 0;
		goto done;
	} else
		cv = ARC_FAIL;
	inst = c->n + 1; /* 5.1 step 2 */
	if (inst > ARC_MAX_INSTANCES) {
		log_info("arc seal skipped: the chain has %d instances already", c->n);
		ret = 0;
		goto done;
	}
	if (dkim_key_alg(s->key.key) == NULL || strcmp(dkim_key_alg(s->key.key), "rsa-sha256") != 0)
		goto done;

	/* 5.1 step 3.1: ARC-Authentication-Results (RFC 8617 4.1.1) */
	aar_field(&aar, inst, authserv_id, ar && *ar ? ar : "none");

	/* 5.1 step 3.2: ARC-Message-Signature, relaxed/relaxed (4.1.2) */
	bh_len = dkim_bodyhash_final(s->bh, bh);
	char *bh64 = base64_encode(bh, bh_len);
	buf_printf(&ams,
		   "ARC-Message-Signature: i=%d; a=rsa-sha256; c=relaxed/relaxed;\r\n"
		   "\td=%s; s=%s; t=%lld;\r\n\th=",
		   inst, s->domain, s->selector, (long long)s->now);
	size_t line = 3;
	bool first = true;
	for (size_t k = 0; k < sizeof seal_headers / sizeof seal_headers[0]; k++) {
		size_t len = strlen(seal_headers[k]), count = 0;
		for (size_t j = 0; j < s->m.n; j++)
			if (field_is(&s->m.f[j], seal_headers[k], len))
				count++;
		if (k < SEAL_OVERSIGNED)
			count++;
		for (size_t j = 0; j < count; j++) {
			if (!first) {
				buf_appendc(&ams, ':');
				line++;
			}
			if (line + len > 72) {
				buf_appends(&ams, "\r\n\t");
				line = 1;
			}
			buf_appends(&ams, seal_headers[k]);
			line += len;
			first = false;
		}
	}
	buf_printf(&ams, ";\r\n\tbh=%s;\r\n\tb=", bh64);
	free(bh64);
	{
		size_t hpos = (size_t)(strstr(ams.data, "\th=") - ams.data) + 3;
		size_t hend = (size_t)(strstr(ams.data + hpos, ";") - ams.data);
		canon_selected(DKIM_CANON_RELAXED, s->m.f, s->m.n, ams.data + hpos, hend - hpos,
			       (size_t)-1, &in);
	}
	canon_unsigned(&ams, &in);
	if (sign_append(s->key.key, &in, &ams) < 0)
		goto done;

	/* 5.1 step 3.3: ARC-Seal over the sets (5.1.1), or only the new one
	 * when the chain failed (5.1.2) */
	buf_printf(&as, "ARC-Seal: i=%d; a=rsa-sha256; t=%lld; cv=%s;\r\n\td=%s; s=%s;\r\n\tb=",
		   inst, (long long)s->now, arc_result_name(cv), s->domain, s->selector);
	buf_reset(&in);
	if (cv == ARC_PASS)
		for (int i = 1; i <= c->n; i++) {
			const struct arc_set *si = &c->set[i];
			const struct arc_field *f = s->m.f;
			dkim_canon_header(DKIM_CANON_RELAXED, f[si->aar].raw, f[si->aar].len, &in);
			dkim_canon_header(DKIM_CANON_RELAXED, f[si->ams].raw, f[si->ams].len, &in);
			dkim_canon_header(DKIM_CANON_RELAXED, f[si->as].raw, f[si->as].len, &in);
		}
	dkim_canon_header(DKIM_CANON_RELAXED, aar.data, aar.len, &in);
	dkim_canon_header(DKIM_CANON_RELAXED, ams.data, ams.len, &in);
	canon_unsigned(&as, &in);
	if (sign_append(s->key.key, &in, &as) < 0)
		goto done;

	buf_append(out, aar.data, aar.len);
	buf_append(out, ams.data, ams.len);
	buf_append(out, as.data, as.len);
	ret = 0;
done:
	buf_free(&aar);
	buf_free(&ams);
	buf_free(&as);
	buf_free(&in);
	free(c);
	return ret;
}

void arc_seal_free(struct arc_seal **sp)
{
	struct arc_seal *s = *sp;

	if (s == NULL)
		return;
	msg_free(&s->m);
	dkim_bodyhash_free(&s->bh);
	free(s->domain);
	free(s->selector);
	free(s);
	*sp = NULL;
}
