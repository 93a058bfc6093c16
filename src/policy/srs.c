/* SRS: the Sender Rewriting Scheme (see srs.h for the forms). The hash is
 * HMAC-SHA1 over the part of the local part that follows it, lowercased, so
 * that a next hop changing the case of an address keeps it valid; it is
 * compared in constant time against every secret (rotation). */
#include "policy/srs.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/base64.h"
#include "core/config.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "store/store.h"

#define SRS_HASH_LEN 4
#define SRS_ADDR_MAX 254 /* RFC 5321 4.5.3.1.3: a path is 256 octets with its <> */
#define SRS_DAYS 1024
#define SRS_SECRET_OCTETS 32

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static bool prefix_ci(const char *s, const char *p)
{
	return strncasecmp(s, p, strlen(p)) == 0;
}

static bool is_srs0(const char *local)
{
	return prefix_ci(local, "SRS0=");
}

static bool is_srs1(const char *local)
{
	return prefix_ci(local, "SRS1=");
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* The first SRS_HASH_LEN characters of base64(HMAC-SHA1(secret, lc(data))). */
static void srs_hash(const char *secret, const char *data, size_t len, char out[SRS_HASH_LEN + 1])
{
	char *lc = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++)
		lc[i] = lower(data[i]);
	lc[len] = '\0';
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)lc, len, md, &mdlen);
	free(lc);
	char *b = base64_encode(md, mdlen);
	memcpy(out, b, SRS_HASH_LEN);
	out[SRS_HASH_LEN] = '\0';
	free(b);
}

/* Case-insensitive, in time independent of where the strings differ. */
static bool hash_eq(const char *a, const char *b)
{
	unsigned char d = 0;
	for (size_t i = 0; i < SRS_HASH_LEN; i++)
		d |= (unsigned char)(lower(a[i]) ^ lower(b[i]));
	return d == 0;
}

static unsigned srs_day(time_t now)
{
	return (unsigned)((now < 0 ? 0 : now) / 86400) % SRS_DAYS;
}

static int b32_val(char c)
{
	c = (char)(c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c);
	const char *p = c ? strchr(b32, c) : NULL;
	return p ? (int)(p - b32) : -1;
}

/* "local@our_domain" or NULL when longer than SRS_ADDR_MAX. */
static char *srs_build(const char *secret, const char *tag, const char *rest,
		       const char *our_domain)
{
	char h[SRS_HASH_LEN + 1];
	srs_hash(secret, rest, strlen(rest), h);
	char *out = xasprintf("%s=%s=%s@%s", tag, h, rest, our_domain);
	if (strlen(out) > SRS_ADDR_MAX) {
		free(out);
		return NULL;
	}
	return out;
}

/* An SRS1 local part "SRS1=HHHH=first=<opaque>": *first_r and *opaque_r
 * (heap; opaque begins with the SRS0 separator) or -1 when malformed. */
static int srs1_split(const char *local, char **first_r, char **opaque_r)
{
	const char *p = local + 5; /* "SRS1=" */
	const char *e = strchr(p, '=');
	if (e == NULL || e - p != SRS_HASH_LEN)
		return -1;
	const char *first = e + 1;
	e = strchr(first, '=');
	if (e == NULL || e == first || e[1] == '\0')
		return -1;
	*first_r = xstrndup(first, (size_t)(e - first));
	*opaque_r = xstrdup(e + 1);
	return 0;
}

char *srs_forward(const char *secret, const char *sender, const char *our_domain, time_t now)
{
	const char *at = strrchr(sender, '@');
	/* The null path, or an address without a domain (nothing to return a
	 * bounce to through us): as is. So is an address of our own domain,
	 * which passes SPF at the next hop anyway (an SRS address of ours is
	 * one of them: never wrapped twice). */
	if (*sender == '\0' || at == NULL || at == sender || at[1] == '\0' ||
	    strcasecmp(at + 1, our_domain) == 0)
		return xstrdup(sender);
	/* '=' separates the fields: a domain holding one (no domain name
	 * does) could not be read back; such a sender is left as is. */
	if (strchr(at + 1, '=') != NULL)
		return xstrdup(sender);
	char *local = xstrndup(sender, (size_t)(at - sender));
	const char *domain = at + 1;
	char *out = NULL, *rest = NULL;
	char *first = NULL, *opaque = NULL;
	if (is_srs0(local)) {
		/* Forwarding a forwarder's SRS0 address: SRS1 names its domain
		 * and keeps its opaque part (the bounce goes back through it). */
		rest = xasprintf("%s=%s", domain, local + 4);
	} else if (is_srs1(local) && srs1_split(local, &first, &opaque) == 0) {
		/* Already SRS1: keep the first forwarder, replace the hash. */
		rest = xasprintf("%s=%s", first, opaque);
	}
	if (rest != NULL) {
		out = srs_build(secret, "SRS1", rest, our_domain);
	} else {
		unsigned d = srs_day(now);
		rest = xasprintf("%c%c=%s=%s", b32[(d >> 5) & 31], b32[d & 31], domain, local);
		out = srs_build(secret, "SRS0", rest, our_domain);
	}
	free(rest);
	free(first);
	free(opaque);
	free(local);
	return out;
}

static bool hash_ok(const char *const *secrets, size_t n, const char *hash, const char *rest)
{
	bool ok = false;
	for (size_t i = 0; i < n; i++) {
		char h[SRS_HASH_LEN + 1];
		srs_hash(secrets[i], rest, strlen(rest), h);
		ok |= hash_eq(h, hash); /* every secret, whatever matched */
	}
	return ok;
}

int srs_reverse(const char *const *secrets, size_t n_secrets, const char *addr, time_t now,
		unsigned max_age, char **orig_r, const char **why_r)
{
	*orig_r = NULL;
	*why_r = NULL;
	bool srs0 = is_srs0(addr), srs1 = is_srs1(addr);
	if (!srs0 && !srs1)
		return 0;
	const char *at = strrchr(addr, '@');
	char *local = at ? xstrndup(addr, (size_t)(at - addr)) : xstrdup(addr);
	int r = -1;
	*why_r = "malformed SRS address";
	const char *hash = local + 5;
	const char *e = strchr(hash, '=');
	if (e == NULL || e - hash != SRS_HASH_LEN)
		goto out;
	const char *rest = e + 1;
	if (srs0) {
		/* TT=domain=local */
		int t1 = b32_val(rest[0]), t2 = t1 < 0 ? -1 : b32_val(rest[1]);
		if (t2 < 0 || rest[2] != '=')
			goto out;
		const char *dom = rest + 3;
		const char *de = strchr(dom, '=');
		if (de == NULL || de == dom || de[1] == '\0')
			goto out;
		if (!hash_ok(secrets, n_secrets, hash, rest)) {
			*why_r = "forged hash";
			goto out;
		}
		/* Days since the timestamp, across the wrap of the 1024-day
		 * cycle; a stamp from the future reads as very old. */
		unsigned tt = (unsigned)(t1 << 5 | t2);
		unsigned age = (srs_day(now) + SRS_DAYS - tt) % SRS_DAYS;
		if ((unsigned long long)age * 86400 > max_age) {
			*why_r = "expired timestamp";
			goto out;
		}
		*orig_r = xasprintf("%s@%.*s", de + 1, (int)(de - dom), dom);
	} else {
		/* first=<opaque>: back to the first forwarder's SRS0 address */
		const char *fe = strchr(rest, '=');
		if (fe == NULL || fe == rest || fe[1] == '\0')
			goto out;
		if (!hash_ok(secrets, n_secrets, hash, rest)) {
			*why_r = "forged hash";
			goto out;
		}
		*orig_r = xasprintf("SRS0%s@%.*s", fe + 1, (int)(fe - rest), rest);
	}
	*why_r = NULL;
	r = 1;
out:
	free(local);
	return r;
}

void srs_secrets_free(char ***vp)
{
	char **v = *vp;
	if (v == NULL)
		return;
	for (size_t i = 0; v[i] != NULL; i++) {
		explicit_bzero(v[i], strlen(v[i]));
		free(v[i]);
	}
	free(v);
	*vp = NULL;
}

static void push(char ***v, size_t *n, char *s)
{
	*v = xrealloc(*v, (*n + 2) * sizeof **v);
	(*v)[(*n)++] = s;
	(*v)[*n] = NULL;
}

char **srs_secrets_load(struct store *st, const struct config *cfg, size_t *n_r)
{
	char **v = NULL;
	size_t n = 0;
	const char *list = cfg->srs_secret ? cfg->srs_secret : "";
	/* comma (or blank) separated: the first signs, all verify */
	for (const char *p = list; *p;) {
		size_t k = strcspn(p, ", \t");
		if (k > 0)
			push(&v, &n, xstrndup(p, k));
		p += k;
		p += strspn(p, ", \t");
	}
	if (n > 0) {
		*n_r = n;
		return v;
	}
	if (st == NULL) {
		log_err("srs: no srs_secret configured and no store to keep one");
		return NULL;
	}
	char *val = NULL;
	int k = store_setting_get(st, "srs_secret", &val);
	if (k < 0) {
		log_err("srs: cannot read the stored secret");
		return NULL;
	}
	if (k == 0 || val[0] == '\0') {
		free(val);
		unsigned char raw[SRS_SECRET_OCTETS];
		if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
			log_err("srs: getrandom failed");
			return NULL;
		}
		val = base64_encode(raw, sizeof raw);
		explicit_bzero(raw, sizeof raw);
		char *err = NULL;
		if (store_setting_set(st, "srs_secret", val, &err) < 0) {
			log_err("srs: cannot save the generated secret: %s", err ? err : "?");
			free(err);
			free(val);
			return NULL;
		}
		log_info("srs: generated a secret, kept in the store (setting srs_secret)");
	}
	push(&v, &n, val);
	*n_r = n;
	return v;
}
