/* DKIM signature parsing and header-hash input (RFC 6376 3.5, 3.7, 5.4.2):
 * the pure part of the verifier and signer (dkim.c), kept apart so that the
 * fuzzer (tests/fuzz/fuzz_dkim_sig.c) runs it without a loop or resolver.
 * Private to src/policy/dkim*.c (dkim_int.h). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "policy/dkim_int.h"

/* ---- header fields kept ---- */

void dkim_kfields_add(struct kfields *f, const struct hdr_field *h)
{
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 16;
		f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
	}
	struct kfield *k = &f->v[f->n++];
	k->raw = xmalloc(h->len + 1);
	memcpy(k->raw, h->raw, h->len);
	k->raw[h->len] = '\0';
	k->len = h->len;
	k->name_len = h->name_len;
}

void dkim_kfields_free(struct kfields *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i].raw);
	free(f->v);
	f->v = NULL;
	f->n = f->cap = 0;
}

/* RFC 6376 5.4.2: the fields named in h=, each taken bottom-up (the last
 * instance not yet used), canonicalized; a name without (another) instance
 * contributes nothing. */
void dkim_header_data(const struct kfields *f, const struct hname *h, size_t nh,
			enum dkim_canon c, struct buf *out)
{
	bool *used = xcalloc(f->n ? f->n : 1, sizeof(bool));
	for (size_t i = 0; i < nh; i++) {
		for (size_t j = f->n; j-- > 0;) {
			const struct kfield *k = &f->v[j];
			if (used[j] || k->name_len != h[i].len ||
			    strncasecmp(k->raw, h[i].p, h[i].len) != 0)
				continue;
			used[j] = true;
			dkim_canon_header(c, k->raw, k->len, out);
			break;
		}
	}
	free(used);
}

/* The signature field itself with b='s value emptied (RFC 6376 3.5 b=,
 * 3.7), canonicalized, without its final CRLF. b_off/b_len: the value's
 * place in raw. */
void dkim_sig_field_data(const char *raw, size_t len, size_t b_off, size_t b_len,
			   enum dkim_canon c, struct buf *out)
{
	struct buf t = BUF_INIT;
	buf_append(&t, raw, b_off);
	buf_append(&t, raw + b_off + b_len, len - b_off - b_len);
	size_t start = out->len;
	dkim_canon_header(c, t.data, t.len, out);
	if (out->len >= start + 2 && out->data[out->len - 2] == '\r' &&
	    out->data[out->len - 1] == '\n') {
		out->len -= 2;
		out->data[out->len] = '\0';
	}
	buf_free(&t);
}

void dkim_vsig_set(struct vsig *s, enum dkim_result r, const char *reason)
{
	if (s->result != DKIM_NONE)
		return;
	s->result = r;
	s->reason = reason ? xstrdup(reason) : NULL;
}

static char *dup_lower(const char *p, size_t n)
{
	char *s = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)tolower((unsigned char)p[i]);
	s[n] = '\0';
	return s;
}

/* A domain name as d= and the i= domain may be: labels of letters, digits,
 * hyphens (and underscores, seen in practice), no empty label. */
static bool domain_ok(const char *d, size_t n)
{
	if (n == 0 || n > DKIM_DOMAIN_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_' || c >= 0x80) {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

static bool parse_uint(const char *p, size_t n, int64_t *out)
{
	if (n == 0 || n > 18)
		return false; /* 18 digits fit in int64_t */
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return true;
}

static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Splits a colon-separated list (h=, q=) into trimmed names. */
static struct hname *split_colon(const char *p, size_t n, size_t *count_r)
{
	size_t cnt = 1;
	for (size_t i = 0; i < n; i++)
		if (p[i] == ':')
			cnt++;
	struct hname *h = xcalloc(cnt, sizeof(*h));
	size_t k = 0, i = 0;
	while (i <= n) {
		size_t s = i;
		while (i < n && p[i] != ':')
			i++;
		size_t e = i;
		while (s < e && is_fws(p[s]))
			s++;
		while (e > s && is_fws(p[e - 1]))
			e--;
		h[k].p = p + s;
		h[k].len = e - s;
		k++;
		i++;
	}
	*count_r = k;
	return h;
}

/* RFC 6376 3.5, 6.1.1: parses one DKIM-Signature field into s; a signature
 * that cannot be used gets its result here (neutral: not verifiable). */
void dkim_sig_parse(struct vsig *s, const char *raw, size_t len, bool truncated, time_t now)
{
	s->raw = xmalloc(len + 1);
	memcpy(s->raw, raw, len);
	s->raw[len] = '\0';
	s->raw_len = len;
	s->l = -1;
	if (truncated) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "signature field too long");
		return;
	}
	const char *val = memchr(s->raw, ':', s->raw_len);
	if (val == NULL) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "malformed signature");
		return;
	}
	val++;
	size_t vlen = s->raw_len - (size_t)(val - s->raw);
	struct dkim_tag t[DKIM_SIG_MAX_TAGS];
	int n = dkim_tags_parse(val, vlen, t, DKIM_SIG_MAX_TAGS);
	if (n < 0) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "malformed tag list");
		return;
	}
	size_t l;
	const char *v;
	/* the identity first, so that even a bad signature is reported with it */
	if ((v = dkim_tag_get(t, n, "d", &l)) != NULL && domain_ok(v, l))
		s->domain = dup_lower(v, l);
	if ((v = dkim_tag_get(t, n, "s", &l)) != NULL && domain_ok(v, l))
		s->selector = xstrndup(v, l);
	if ((v = dkim_tag_get(t, n, "a", &l)) != NULL)
		s->algorithm = xstrndup(v, l);
	const char *bv = dkim_tag_get(t, n, "b", &l);
	if (bv) {
		s->b_off = (size_t)(bv - s->raw);
		s->b_len = l;
		size_t k = 0;
		for (size_t i = 0; i < l && k < sizeof(s->b_prefix) - 1; i++)
			if (!is_fws(bv[i]))
				s->b_prefix[k++] = bv[i];
		s->b_prefix[k] = '\0';
	}
	static const char *const required[] = {"v", "a", "b", "bh", "d", "h", "s"};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (dkim_tag_get(t, n, required[i], NULL) == NULL) {
			char *r = xasprintf("missing %s=", required[i]);
			dkim_vsig_set(s, DKIM_NEUTRAL, r);
			free(r);
			return;
		}
	v = dkim_tag_get(t, n, "v", &l);
	if (l != 1 || v[0] != '1') {
		dkim_vsig_set(s, DKIM_NEUTRAL, "unsupported version");
		return;
	}
	if (s->domain == NULL) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "bad d=");
		return;
	}
	if (s->selector == NULL) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "bad s=");
		return;
	}
	if (strcasecmp(s->algorithm, "rsa-sha256") == 0)
		s->alg = DKIM_ALG_RSA_SHA256;
	else if (strcasecmp(s->algorithm, "ed25519-sha256") == 0)
		s->alg = DKIM_ALG_ED25519_SHA256;
	else if (strcasecmp(s->algorithm, "rsa-sha1") == 0)
		s->alg = DKIM_ALG_RSA_SHA1;
	else {
		dkim_vsig_set(s, DKIM_NEUTRAL, "unknown algorithm");
		return;
	}
	/* c=: header[/body], simple when absent (RFC 6376 3.5) */
	s->hc = s->bc = DKIM_CANON_SIMPLE;
	if ((v = dkim_tag_get(t, n, "c", &l)) != NULL) {
		const char *slash = memchr(v, '/', l);
		size_t hl = slash ? (size_t)(slash - v) : l;
		for (int part = 0; part < (slash ? 2 : 1); part++) {
			const char *p = part ? slash + 1 : v;
			size_t pl = part ? l - hl - 1 : hl;
			enum dkim_canon c;
			if (pl == 6 && strncasecmp(p, "simple", 6) == 0)
				c = DKIM_CANON_SIMPLE;
			else if (pl == 7 && strncasecmp(p, "relaxed", 7) == 0)
				c = DKIM_CANON_RELAXED;
			else {
				dkim_vsig_set(s, DKIM_NEUTRAL, "bad c=");
				return;
			}
			if (part == 0)
				s->hc = c;
			else
				s->bc = c;
		}
	}
	if ((v = dkim_tag_get(t, n, "q", &l)) != NULL) {
		size_t nq;
		struct hname *q = split_colon(v, l, &nq);
		bool ok = false;
		for (size_t i = 0; i < nq; i++)
			if (q[i].len == 7 && strncasecmp(q[i].p, "dns/txt", 7) == 0)
				ok = true;
		free(q);
		if (!ok) {
			dkim_vsig_set(s, DKIM_NEUTRAL, "unsupported q=");
			return;
		}
	}
	v = dkim_tag_get(t, n, "h", &l);
	s->h = split_colon(v, l, &s->nh);
	bool from = false;
	for (size_t i = 0; i < s->nh; i++) {
		if (s->h[i].len == 0) {
			dkim_vsig_set(s, DKIM_NEUTRAL, "bad h=");
			return;
		}
		if (s->h[i].len == 4 && strncasecmp(s->h[i].p, "from", 4) == 0)
			from = true;
	}
	if (!from) { /* RFC 6376 5.4: From MUST be signed */
		dkim_vsig_set(s, DKIM_NEUTRAL, "From not signed");
		return;
	}
	if ((v = dkim_tag_get(t, n, "i", &l)) != NULL) {
		const char *at = memchr(v, '@', l);
		size_t dl = at ? l - (size_t)(at + 1 - v) : 0;
		size_t ml = strlen(s->domain);
		/* RFC 6376 3.5 i=: the domain is d= or a subdomain of it */
		bool within = at && domain_ok(at + 1, dl) &&
			      (dl == ml || (dl > ml && at[dl - ml] == '.')) &&
			      strncasecmp(at + 1 + dl - ml, s->domain, ml) == 0;
		if (!within) {
			dkim_vsig_set(s, DKIM_NEUTRAL, "i= not within d=");
			return;
		}
		s->auid = xstrndup(v, l);
	} else {
		s->auid = xasprintf("@%s", s->domain);
	}
	if ((v = dkim_tag_get(t, n, "l", &l)) != NULL && !parse_uint(v, l, &s->l)) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "bad l=");
		return;
	}
	int64_t ts = -1, x = -1;
	if ((v = dkim_tag_get(t, n, "t", &l)) != NULL && !parse_uint(v, l, &ts)) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "bad t=");
		return;
	}
	if ((v = dkim_tag_get(t, n, "x", &l)) != NULL) {
		if (!parse_uint(v, l, &x) || (ts >= 0 && x < ts)) {
			dkim_vsig_set(s, DKIM_NEUTRAL, "bad x=");
			return;
		}
	}
	v = dkim_tag_get(t, n, "bh", &l);
	if (dkim_b64_decode(v, l, &s->bh, &s->bh_len) < 0) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "bad base64 in bh=");
		return;
	}
	if (dkim_b64_decode(bv, s->b_len, &s->b, &s->b_len_dec) < 0) {
		dkim_vsig_set(s, DKIM_NEUTRAL, "bad base64 in b=");
		return;
	}
	/* RFC 6376 3.5 x=: past the expiration the signature is invalid */
	if (x >= 0 && (int64_t)now > x) {
		dkim_vsig_set(s, DKIM_FAIL, "signature expired");
		return;
	}
}

void dkim_vsig_clear(struct vsig *s)
{
	free(s->reason);
	free(s->domain);
	free(s->selector);
	free(s->auid);
	free(s->algorithm);
	free(s->raw);
	free(s->h);
	free(s->bh);
	free(s->b);
	free(s->key_txt);
	memset(s, 0, sizeof(*s));
}
