/* DKIM primitives shared by the verifier, the signer (dkim.c) and ARC:
 * tag lists (RFC 6376 3.2), canonicalization (3.4), body hashes (3.4.3,
 * 3.4.4, 3.7), public keys from DNS (3.6.1), private keys, signing and key
 * generation (RSA, Ed25519 per RFC 8463). Pure CPU, thread-safe: the
 * public-key operations are called on workers. */
#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "core/base64.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "policy/dkim.h"

const char *dkim_result_name(enum dkim_result r)
{
	static const char *const names[] = {"none",   "pass",      "fail",     "policy",
					    "neutral", "temperror", "permerror"};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "none";
}

/* ---- tag lists (RFC 6376 3.2) ---- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* FWS: WSP, and CRLF followed by WSP; we accept bare CR and LF too (they
 * can only be folding inside a header field as hdr.c hands it out). */
static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *v, size_t max)
{
	size_t i = 0;
	int n = 0;
	for (;;) {
		while (i < len && is_fws(s[i]))
			i++;
		if (i == len)
			return n; /* the end, possibly after a trailing ";" */
		/* tag-name = ALPHA *ALNUMPUNC */
		size_t ns = i;
		if (!isalpha((unsigned char)s[i]))
			return -1;
		while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_'))
			i++;
		size_t nl = i - ns;
		while (i < len && is_fws(s[i]))
			i++;
		if (i == len || s[i] != '=')
			return -1;
		i++;
		while (i < len && is_fws(s[i]))
			i++;
		size_t vs = i;
		/* tag-value: VALCHAR (%x21-3A / %x3C-7E) and FWS between them */
		while (i < len && s[i] != ';') {
			unsigned char c = (unsigned char)s[i];
			if (!is_fws((char)c) && (c < 0x21 || c > 0x7e))
				return -1;
			i++;
		}
		size_t ve = i;
		while (ve > vs && is_fws(s[ve - 1]))
			ve--;
		/* A name too long for any tag we know is kept out (it is
		 * unknown, RFC 6376 3.2: ignored), but still syntax-checked. */
		if (nl < sizeof(v[0].name)) {
			for (int j = 0; j < n; j++)
				if (strlen(v[j].name) == nl && memcmp(v[j].name, s + ns, nl) == 0)
					return -1; /* duplicate: RFC 6376 3.2 */
			if ((size_t)n == max)
				return -1; /* absurd tag list */
			memcpy(v[n].name, s + ns, nl);
			v[n].name[nl] = '\0';
			v[n].value = s + vs;
			v[n].len = ve - vs;
			n++;
		}
		if (i == len)
			return n;
		i++; /* ';' */
	}
}

const char *dkim_tag_get(const struct dkim_tag *v, int n, const char *name, size_t *len_r)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0) {
			if (len_r)
				*len_r = v[i].len;
			return v[i].value;
		}
	return NULL;
}

int dkim_b64_decode(const char *s, size_t len, unsigned char **out_r, size_t *n_r)
{
	char *t = xmalloc(len + 1);
	size_t m = 0;
	for (size_t i = 0; i < len; i++)
		if (!is_fws(s[i]))
			t[m++] = s[i];
	t[m] = '\0';
	int r = m == 0 ? -1 : base64_decode(t, m, out_r, n_r);
	free(t);
	return r;
}

/* ---- canonicalization (RFC 6376 3.4) ---- */

void dkim_canon_header(enum dkim_canon c, const char *raw, size_t len, struct buf *out)
{
	if (c == DKIM_CANON_SIMPLE) {
		/* 3.4.1: no change at all */
		buf_append(out, raw, len);
		return;
	}
	/* 3.4.2: lowercase name, unfold, WSP runs to one SP, no WSP at the
	 * end of the value nor around the colon. */
	const char *colon = memchr(raw, ':', len);
	size_t nl = colon ? (size_t)(colon - raw) : len;
	size_t ne = nl;
	while (ne > 0 && is_fws(raw[ne - 1]))
		ne--;
	for (size_t i = 0; i < ne; i++)
		if (raw[i] != '\r' && raw[i] != '\n') /* only in a malformed field */
			buf_appendc(out, (char)tolower((unsigned char)raw[i]));
	buf_appendc(out, ':');
	if (colon) {
		bool wsp = false, any = false;
		for (size_t i = nl + 1; i < len; i++) {
			char ch = raw[i];
			if (ch == '\r' || ch == '\n')
				continue;
			if (is_wsp(ch)) {
				wsp = true;
				continue;
			}
			if (wsp && any)
				buf_appendc(out, ' ');
			wsp = false;
			any = true;
			buf_appendc(out, ch);
		}
	}
	buf_append(out, "\r\n", 2);
}

/* ---- body hashes (RFC 6376 3.4.3, 3.4.4, 3.7) ---- */

struct dkim_bodyhash {
	enum dkim_canon canon;
	EVP_MD_CTX *md;
	int64_t limit;   /* octets still to hash, -1: all */
	uint64_t empty_lines; /* empty lines held back (trailing ones are ignored) */
	size_t line_len; /* octets emitted on the current line */
	bool pending_cr, pending_wsp, emitted;
	bool beyond; /* canonical octets came past l= */
	size_t olen;
	char obuf[4096];
};

static void bh_flush(struct dkim_bodyhash *b)
{
	if (b->olen) {
		EVP_DigestUpdate(b->md, b->obuf, b->olen);
		b->olen = 0;
	}
}

static void bh_out(struct dkim_bodyhash *b, const char *p, size_t n)
{
	b->emitted = true;
	if (b->limit >= 0) {
		if ((int64_t)n > b->limit) {
			b->beyond = true;
			n = (size_t)b->limit;
		}
		b->limit -= (int64_t)n;
	}
	while (n) {
		if (b->olen == sizeof(b->obuf))
			bh_flush(b);
		size_t k = sizeof(b->obuf) - b->olen;
		if (k > n)
			k = n;
		memcpy(b->obuf + b->olen, p, k);
		b->olen += k;
		p += k;
		n -= k;
	}
}

static void bh_content(struct dkim_bodyhash *b, char c)
{
	if (b->line_len == 0) {
		/* the empty lines before were not trailing after all */
		for (; b->empty_lines; b->empty_lines--)
			bh_out(b, "\r\n", 2);
	}
	if (b->pending_wsp) {
		bh_out(b, " ", 1);
		b->line_len++;
		b->pending_wsp = false;
	}
	bh_out(b, &c, 1);
	b->line_len++;
}

static void bh_eol(struct dkim_bodyhash *b)
{
	b->pending_wsp = false; /* relaxed: WSP at the end of a line is ignored */
	if (b->line_len == 0) {
		b->empty_lines++;
	} else {
		bh_out(b, "\r\n", 2);
		b->line_len = 0;
	}
}

/* The digests, fetched from OpenSSL's default provider once: a legacy
 * EVP_sha256() is looked up again in its method store (a locked table walk)
 * at every EVP_DigestInit, once per message and signature. */
static EVP_MD *md_sha256, *md_sha1;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch(void)
{
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
}

static const EVP_MD *alg_md(enum dkim_alg a)
{
	pthread_once(&md_once, md_fetch);
	if (a == DKIM_ALG_RSA_SHA1)
		return md_sha1 != NULL ? md_sha1 : EVP_sha1();
	return md_sha256 != NULL ? md_sha256 : EVP_sha256();
}

struct dkim_bodyhash *dkim_bodyhash_new(enum dkim_canon c, enum dkim_alg a, int64_t limit)
{
	struct dkim_bodyhash *b = xcalloc(1, sizeof(*b));
	b->canon = c;
	b->limit = limit < 0 ? -1 : limit;
	b->md = EVP_MD_CTX_new();
	if (b->md == NULL)
		fatal("dkim: EVP_MD_CTX_new");
	EVP_DigestInit_ex(b->md, alg_md(a), NULL);
	return b;
}

void dkim_bodyhash_feed(struct dkim_bodyhash *b, const char *p, size_t n)
{
	bool relaxed = b->canon == DKIM_CANON_RELAXED;
	size_t i = 0;
	while (i < n) {
		if (b->limit == 0 && b->beyond)
			return; /* l= reached and passed: the rest does not count */
		/* inside a line with nothing held back: copy the run of octets
		 * that need no decision (no CR; relaxed: no WSP) at once */
		if (!b->pending_cr && !b->pending_wsp && b->line_len > 0) {
			size_t j = i;
			if (relaxed && b->limit < 0) {
				/* straight into the output buffer; WSP runs inside the
				 * line become one SP, a run that may end the line
				 * stays for the slow path */
				size_t ol = b->olen, start = i;
				while (i < n) {
					char c = p[i];
					if (c == '\r')
						break;
					size_t k = i + 1;
					if (c == ' ' || c == '\t') {
						while (k < n && (p[k] == ' ' || p[k] == '\t'))
							k++;
						if (k == n || p[k] == '\r')
							break;
						c = ' ';
					}
					if (ol == sizeof(b->obuf)) {
						b->olen = ol;
						bh_flush(b);
						ol = 0;
					}
					b->obuf[ol++] = c;
					b->line_len++;
					i = k;
				}
				b->olen = ol;
				if (i > start)
					continue;
				j = i;
			} else if (relaxed) {
				while (j < n && p[j] != '\r' && p[j] != ' ' && p[j] != '\t')
					j++;
			} else {
				const char *cr = memchr(p + i, '\r', n - i);
				j = cr ? (size_t)(cr - p) : n;
			}
			if (j > i) {
				bh_out(b, p + i, j - i);
				b->line_len += j - i;
				i = j;
				continue;
			}
		}
		char c = p[i++];
		if (b->pending_cr) {
			b->pending_cr = false;
			if (c == '\n') {
				bh_eol(b);
				continue;
			}
			bh_content(b, '\r'); /* a bare CR is content */
		}
		if (c == '\r') {
			b->pending_cr = true;
		} else if (relaxed && is_wsp(c)) {
			b->pending_wsp = true;
		} else {
			bh_content(b, c);
		}
	}
}

size_t dkim_bodyhash_final(struct dkim_bodyhash *b, unsigned char out[64])
{
	if (b->pending_cr) {
		b->pending_cr = false;
		bh_content(b, '\r');
	}
	/* 3.4.3 / 3.4.4: a body not ending in CRLF gets one */
	if (b->line_len > 0)
		bh_eol(b);
	/* 3.4.3: an empty simple body is one CRLF; 3.4.4: an empty relaxed
	 * body is empty (RFC 6376 errata 3951). */
	if (b->canon == DKIM_CANON_SIMPLE && !b->emitted)
		bh_out(b, "\r\n", 2);
	bh_flush(b);
	unsigned int n = 0;
	EVP_DigestFinal_ex(b->md, out, &n);
	return n;
}

bool dkim_bodyhash_beyond(const struct dkim_bodyhash *b)
{
	return b->beyond;
}

void dkim_bodyhash_free(struct dkim_bodyhash **bp)
{
	struct dkim_bodyhash *b = *bp;
	if (b == NULL)
		return;
	EVP_MD_CTX_free(b->md);
	free(b);
	*bp = NULL;
}

/* ---- public keys (RFC 6376 3.6.1) ---- */

struct dkim_pubkey {
	EVP_PKEY *pkey;
	bool ed25519;
	bool allow_sha1, allow_sha256; /* h= */
	bool strict, testing;          /* t=s, t=y */
	unsigned bits;
};

/* true if the colon-separated list val contains word (ASCII
 * case-insensitive), FWS around the items ignored. */
static bool list_has(const char *val, size_t len, const char *word)
{
	size_t wl = strlen(word), i = 0;
	while (i <= len) {
		size_t s = i;
		while (i < len && val[i] != ':')
			i++;
		size_t e = i;
		while (s < e && is_fws(val[s]))
			s++;
		while (e > s && is_fws(val[e - 1]))
			e--;
		if (e - s == wl && strncasecmp(val + s, word, wl) == 0)
			return true;
		i++;
	}
	return false;
}

static bool val_is(const char *v, size_t len, const char *word)
{
	return v && strlen(word) == len && strncasecmp(v, word, len) == 0;
}

#define DKIM_KEY_MAX_TAGS 32

/* Parsed keys by record text: decoding an RSA key costs several times the
 * verification itself (OpenSSL 3's decoders), and the same senders' keys
 * come back all day. Workers share it under the mutex; a hit hands out its
 * own copy with a reference on the EVP_PKEY (immutable once made). */
#define DKIM_KEY_CACHE 64
#define DKIM_KEY_CACHE_MAX_TXT 4096
static struct {
	char *txt;
	size_t len;
	struct dkim_pubkey *k;
	uint64_t used;
} key_cache[DKIM_KEY_CACHE];
static uint64_t key_cache_clock;
static pthread_mutex_t key_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static struct dkim_pubkey *pubkey_copy(const struct dkim_pubkey *k)
{
	struct dkim_pubkey *c = xmalloc(sizeof(*c));
	*c = *k;
	EVP_PKEY_up_ref(c->pkey);
	return c;
}

static struct dkim_pubkey *key_cache_get(const char *txt, size_t len)
{
	struct dkim_pubkey *k = NULL;
	pthread_mutex_lock(&key_cache_lock);
	for (size_t i = 0; i < DKIM_KEY_CACHE; i++)
		if (key_cache[i].txt && key_cache[i].len == len &&
		    memcmp(key_cache[i].txt, txt, len) == 0) {
			key_cache[i].used = ++key_cache_clock;
			k = pubkey_copy(key_cache[i].k);
			break;
		}
	pthread_mutex_unlock(&key_cache_lock);
	return k;
}

static void key_cache_put(const char *txt, size_t len, const struct dkim_pubkey *k)
{
	if (len > DKIM_KEY_CACHE_MAX_TXT)
		return;
	pthread_mutex_lock(&key_cache_lock);
	size_t v = 0; /* an empty slot, or the least recently used */
	for (size_t i = 0; i < DKIM_KEY_CACHE; i++) {
		if (key_cache[i].txt == NULL) {
			v = i;
			break;
		}
		if (key_cache[i].used < key_cache[v].used)
			v = i;
	}
	if (key_cache[v].txt) {
		free(key_cache[v].txt);
		dkim_pubkey_free(&key_cache[v].k);
	}
	key_cache[v].txt = xmalloc(len + 1);
	memcpy(key_cache[v].txt, txt, len);
	key_cache[v].txt[len] = '\0';
	key_cache[v].len = len;
	key_cache[v].k = pubkey_copy(k);
	key_cache[v].used = ++key_cache_clock;
	pthread_mutex_unlock(&key_cache_lock);
}

static struct dkim_pubkey *pubkey_parse(const char *txt, size_t len, char **err_r);

struct dkim_pubkey *dkim_pubkey_parse(const char *txt, size_t len, char **err_r)
{
	struct dkim_pubkey *k = key_cache_get(txt, len);
	if (k)
		return k;
	k = pubkey_parse(txt, len, err_r);
	if (k)
		key_cache_put(txt, len, k);
	return k;
}

static struct dkim_pubkey *pubkey_parse(const char *txt, size_t len, char **err_r)
{
	struct dkim_tag t[DKIM_KEY_MAX_TAGS];
	int n = dkim_tags_parse(txt, len, t, DKIM_KEY_MAX_TAGS);
	if (n < 0) {
		*err_r = xstrdup("malformed key record");
		return NULL;
	}
	size_t l;
	const char *v = dkim_tag_get(t, n, "v", &l);
	/* v= if present must be the first tag and be DKIM1 */
	if (v && (strcmp(t[0].name, "v") != 0 || !val_is(v, l, "DKIM1"))) {
		*err_r = xstrdup("key record: bad v=");
		return NULL;
	}
	bool ed = false;
	v = dkim_tag_get(t, n, "k", &l);
	if (v && val_is(v, l, "ed25519"))
		ed = true;
	else if (v && !val_is(v, l, "rsa")) {
		*err_r = xstrdup("key record: unknown k=");
		return NULL;
	}
	v = dkim_tag_get(t, n, "s", &l);
	if (v && !list_has(v, l, "*") && !list_has(v, l, "email")) {
		*err_r = xstrdup("key record: not for email (s=)");
		return NULL;
	}
	const char *p = dkim_tag_get(t, n, "p", &l);
	if (p == NULL) {
		*err_r = xstrdup("key record: no p=");
		return NULL;
	}
	size_t pl = l;
	bool empty = true;
	for (size_t i = 0; i < pl; i++)
		if (!is_fws(p[i]))
			empty = false;
	if (empty) {
		*err_r = xstrdup("key revoked");
		return NULL;
	}
	unsigned char *der;
	size_t dn;
	if (dkim_b64_decode(p, pl, &der, &dn) < 0) {
		*err_r = xstrdup("key record: bad base64 in p=");
		return NULL;
	}
	EVP_PKEY *pk = NULL;
	if (ed) {
		/* RFC 8463 4.2: the raw 32-octet public key */
		if (dn == 32)
			pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, dn);
	} else {
		/* RFC 6376 3.6.1: SubjectPublicKeyInfo; some publish the bare
		 * RSAPublicKey (PKCS#1), accepted too. */
		const unsigned char *q = der;
		pk = d2i_PUBKEY(NULL, &q, (long)dn);
		if (pk == NULL) {
			q = der;
			pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)dn);
		}
		if (pk && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
			EVP_PKEY_free(pk);
			pk = NULL;
		}
	}
	free(der);
	if (pk == NULL) {
		*err_r = xstrdup("key record: p= is not a valid key");
		return NULL;
	}
	struct dkim_pubkey *k = xcalloc(1, sizeof(*k));
	k->pkey = pk;
	k->ed25519 = ed;
	k->bits = ed ? 256 : (unsigned)EVP_PKEY_get_bits(pk);
	v = dkim_tag_get(t, n, "h", &l);
	k->allow_sha1 = v == NULL || list_has(v, l, "sha1");
	k->allow_sha256 = v == NULL || list_has(v, l, "sha256");
	v = dkim_tag_get(t, n, "t", &l);
	if (v) {
		k->strict = list_has(v, l, "s");
		k->testing = list_has(v, l, "y");
	}
	return k;
}

unsigned dkim_pubkey_bits(const struct dkim_pubkey *k)
{
	return k->bits;
}

bool dkim_pubkey_allows(const struct dkim_pubkey *k, enum dkim_alg a)
{
	switch (a) {
	case DKIM_ALG_RSA_SHA256:
		return !k->ed25519 && k->allow_sha256;
	case DKIM_ALG_RSA_SHA1:
		return !k->ed25519 && k->allow_sha1;
	case DKIM_ALG_ED25519_SHA256:
		return k->ed25519 && k->allow_sha256;
	}
	return false;
}

bool dkim_pubkey_is_ed25519(const struct dkim_pubkey *k)
{
	return k->ed25519;
}

bool dkim_pubkey_strict(const struct dkim_pubkey *k)
{
	return k->strict;
}

bool dkim_pubkey_testing(const struct dkim_pubkey *k)
{
	return k->testing;
}

void dkim_pubkey_free(struct dkim_pubkey **kp)
{
	struct dkim_pubkey *k = *kp;
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
	*kp = NULL;
}

/* Ed25519 (RFC 8463 3): the input of the signature is the SHA-256 digest of
 * the canonicalized header data. */
static void sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;
	EVP_Digest(data, len, out, &n, alg_md(DKIM_ALG_RSA_SHA256), NULL);
}

/* RSA verification contexts kept per thread: a worker verifies one
 * message after another, mostly with the same few keys (key_cache hands out
 * the same EVP_PKEY), and EVP_DigestVerifyInit fetches the signature
 * algorithm from OpenSSL's method store every time (a locked table walk in
 * OpenSSL 3.0: a third of an RSA-2048 verification's CPU, perf under
 * bench/filter-bench). A context is used by its own thread only and holds a
 * reference on its key, so a key in the set is never another one at the
 * same address. Freed at the thread's exit (vctx_set_free, the destructor
 * of the thread-specific key). */
#define VCTX_PER_THREAD 8
struct vctx_set {
	struct {
		EVP_PKEY *pkey;
		enum dkim_alg alg;
		EVP_PKEY_CTX *ctx;
		uint64_t used;
	} v[VCTX_PER_THREAD];
	uint64_t clock;
};
static pthread_key_t vctx_key;
static pthread_once_t vctx_once = PTHREAD_ONCE_INIT;
static bool vctx_ok;

static void vctx_set_free(void *p)
{
	struct vctx_set *set = p;
	for (size_t i = 0; i < VCTX_PER_THREAD; i++)
		if (set->v[i].ctx != NULL) {
			EVP_PKEY_CTX_free(set->v[i].ctx);
			EVP_PKEY_free(set->v[i].pkey);
		}
	free(set);
}

static void vctx_init(void)
{
	vctx_ok = pthread_key_create(&vctx_key, vctx_set_free) == 0;
}

/* The calling thread's context verifying (pk, a) signatures of a digest, or
 * NULL (then the caller verifies the slower way). */
static EVP_PKEY_CTX *vctx_get(EVP_PKEY *pk, enum dkim_alg a)
{
	pthread_once(&vctx_once, vctx_init);
	if (!vctx_ok)
		return NULL;
	struct vctx_set *set = pthread_getspecific(vctx_key);
	if (set == NULL) {
		set = xcalloc(1, sizeof *set);
		if (pthread_setspecific(vctx_key, set) != 0) {
			free(set);
			return NULL;
		}
	}
	size_t victim = 0; /* an empty entry, or the least recently used */
	for (size_t i = 0; i < VCTX_PER_THREAD; i++) {
		if (set->v[i].ctx != NULL && set->v[i].pkey == pk && set->v[i].alg == a) {
			set->v[i].used = ++set->clock;
			return set->v[i].ctx;
		}
		if (set->v[i].used < set->v[victim].used)
			victim = i;
	}
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, alg_md(a)) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	if (set->v[victim].ctx != NULL) {
		EVP_PKEY_CTX_free(set->v[victim].ctx);
		EVP_PKEY_free(set->v[victim].pkey);
	}
	EVP_PKEY_up_ref(pk);
	set->v[victim].pkey = pk;
	set->v[victim].alg = a;
	set->v[victim].ctx = ctx;
	set->v[victim].used = ++set->clock;
	return ctx;
}

int dkim_pubkey_verify(const struct dkim_pubkey *k, enum dkim_alg a, const void *data,
		       size_t len, const unsigned char *sig, size_t sig_len)
{
	bool want_ed = a == DKIM_ALG_ED25519_SHA256;
	if (want_ed != k->ed25519)
		return -1;
	EVP_PKEY_CTX *vc = want_ed ? NULL : vctx_get(k->pkey, a);
	if (vc != NULL) {
		/* RSASSA-PKCS1-v1_5 (RFC 8017 8.2.2) of the digest: what
		 * EVP_DigestVerify does with md */
		unsigned char h[EVP_MAX_MD_SIZE];
		unsigned int hl = 0;
		if (EVP_Digest(data, len, h, &hl, alg_md(a), NULL) != 1)
			return 0;
		return EVP_PKEY_verify(vc, sig, sig_len, h, hl) == 1;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		fatal("dkim: EVP_MD_CTX_new");
	int r = 0;
	if (want_ed) {
		unsigned char h[32];
		sha256(data, len, h);
		if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) == 1)
			r = EVP_DigestVerify(ctx, sig, sig_len, h, sizeof(h)) == 1;
	} else {
		const EVP_MD *md = alg_md(a);
		if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, k->pkey) == 1)
			r = EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	return r;
}

/* ---- private keys ---- */

struct dkim_key {
	EVP_PKEY *pkey;
	bool ed25519;
};

struct dkim_key *dkim_key_load_private(const char *pem, char **err_r)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL)
		fatal("dkim: BIO_new_mem_buf");
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pk == NULL) {
		*err_r = xstrdup("not a PEM private key");
		return NULL;
	}
	int id = EVP_PKEY_get_base_id(pk);
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
		EVP_PKEY_free(pk);
		*err_r = xstrdup("not an RSA or Ed25519 key");
		return NULL;
	}
	struct dkim_key *k = xcalloc(1, sizeof(*k));
	k->pkey = pk;
	k->ed25519 = id == EVP_PKEY_ED25519;
	return k;
}

void dkim_key_free(struct dkim_key **kp)
{
	struct dkim_key *k = *kp;
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
	*kp = NULL;
}

const char *dkim_key_alg(const struct dkim_key *k)
{
	return k->ed25519 ? "ed25519-sha256" : "rsa-sha256";
}

int dkim_key_sign(const struct dkim_key *k, const void *data, size_t len, struct buf *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		fatal("dkim: EVP_MD_CTX_new");
	unsigned char h[32];
	const void *in = data;
	size_t inlen = len;
	const EVP_MD *md = alg_md(DKIM_ALG_RSA_SHA256);
	if (k->ed25519) {
		sha256(data, len, h);
		in = h;
		inlen = sizeof(h);
		md = NULL;
	}
	int r = -1;
	size_t sl = 0;
	if (EVP_DigestSignInit(ctx, NULL, md, NULL, k->pkey) == 1 &&
	    EVP_DigestSign(ctx, NULL, &sl, in, inlen) == 1) {
		unsigned char *sig = xmalloc(sl ? sl : 1);
		if (EVP_DigestSign(ctx, sig, &sl, in, inlen) == 1) {
			char *b64 = base64_encode(sig, sl);
			buf_appends(out, b64);
			free(b64);
			r = 0;
		}
		free(sig);
	}
	EVP_MD_CTX_free(ctx);
	return r;
}

int dkim_keygen(const char *type, char **pem_r, char **pub_r, char **err_r)
{
	bool ed = strcmp(type, "ed25519") == 0;
	if (!ed && strcmp(type, "rsa") != 0) {
		*err_r = xasprintf("unknown key type %s", type);
		return -1;
	}
	EVP_PKEY *pk = ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
			  : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (pk == NULL) {
		*err_r = xstrdup("key generation failed");
		return -1;
	}
	int r = -1;
	BIO *bio = BIO_new(BIO_s_mem());
	unsigned char *der = NULL;
	size_t dn = 0;
	if (ed) {
		der = xmalloc(32);
		dn = 32;
		if (EVP_PKEY_get_raw_public_key(pk, der, &dn) != 1)
			dn = 0;
	} else {
		int l = i2d_PUBKEY(pk, &der);
		dn = l > 0 ? (size_t)l : 0;
	}
	/* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") */
	if (bio && dn > 0 && PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) == 1) {
		char *mem;
		long ml = BIO_get_mem_data(bio, &mem);
		*pem_r = xmalloc((size_t)ml + 1);
		memcpy(*pem_r, mem, (size_t)ml);
		(*pem_r)[ml] = '\0';
		*pub_r = base64_encode(der, dn);
		r = 0;
	} else {
		*err_r = xstrdup("key encoding failed");
	}
	if (ed)
		free(der);
	else
		OPENSSL_free(der);
	BIO_free(bio);
	EVP_PKEY_free(pk);
	return r;
}

char *dkim_dns_record(const char *alg, const char *pub)
{
	bool ed = strncmp(alg, "ed25519", 7) == 0;
	return xasprintf("v=DKIM1; k=%s; p=%s", ed ? "ed25519" : "rsa", pub);
}
