/* The public suffix list (https://publicsuffix.org/list/, Debian package
 * publicsuffix) for DMARC's organizational domain (RFC 7489 3.2).
 *
 * Both sections of the file are used, ICANN and PRIVATE, as OpenDMARC, mox
 * and most DMARC receivers do: a name under a private suffix
 * (user.github.io) is its own organization, which is what its owner expects
 * of DMARC (another github.io user cannot align with it).
 *
 * The rules go into one open-addressing hash set keyed by the suffix text
 * (lowercase, no trailing dot). Every parent of a rule is in the set too
 * (flag-less), so a lookup walks a domain's suffixes from the right, one hash
 * probe per label, and stops at the first miss. Rules in Unicode (the file's
 * IDN entries) are stored as given and as A-labels (RFC 3492 Punycode with
 * "xn--"), since mail domains come as either. psl_org_domain allocates
 * nothing: it works on a stack copy of the name. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "policy/dmarc.h"

#define PSL_NAME_MAX 253  /* RFC 1035 2.3.4, in text */
#define PSL_LABEL_MAX 63
#define PSL_LABELS_MAX 128

#define PSL_RULE 0x1u /* "example.com": a public suffix */
#define PSL_WILD 0x2u /* "*.example.com": every child of the key is one */
#define PSL_EXC 0x4u  /* "!www.example.com": the key is not one (its parent is) */

struct psl_ent {
	uint64_t h;   /* 0: empty slot */
	uint32_t off; /* into names */
	uint16_t len;
	uint8_t flags;
};

struct psl {
	char *names;
	size_t names_len, names_cap;
	struct psl_ent *tab;
	size_t cap, n; /* cap: a power of two, n <= cap / 2 */
	size_t rules;
};

static uint64_t psl_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h ? h : 1;
}

static const struct psl_ent *psl_find(const struct psl *p, const char *s, size_t n)
{
	uint64_t h = psl_hash(s, n);
	for (size_t i = (size_t)h & (p->cap - 1);; i = (i + 1) & (p->cap - 1)) {
		const struct psl_ent *e = &p->tab[i];
		if (e->h == 0)
			return NULL;
		if (e->h == h && e->len == n && memcmp(p->names + e->off, s, n) == 0)
			return e;
	}
}

static void psl_grow(struct psl *p)
{
	size_t ncap = p->cap ? p->cap * 2 : 4096;
	struct psl_ent *nt = xcalloc(ncap, sizeof(*nt));
	for (size_t i = 0; i < p->cap; i++) {
		if (p->tab[i].h == 0)
			continue;
		size_t k = (size_t)p->tab[i].h & (ncap - 1);
		while (nt[k].h != 0)
			k = (k + 1) & (ncap - 1);
		nt[k] = p->tab[i];
	}
	free(p->tab);
	p->tab = nt;
	p->cap = ncap;
}

static void psl_put(struct psl *p, const char *s, size_t n, uint8_t flags)
{
	if ((p->n + 1) * 2 > p->cap)
		psl_grow(p);
	uint64_t h = psl_hash(s, n);
	size_t i = (size_t)h & (p->cap - 1);
	for (;; i = (i + 1) & (p->cap - 1)) {
		struct psl_ent *e = &p->tab[i];
		if (e->h == 0)
			break;
		if (e->h == h && e->len == n && memcmp(p->names + e->off, s, n) == 0) {
			e->flags |= flags;
			return;
		}
	}
	if (p->names_len + n > p->names_cap) {
		p->names_cap = (p->names_cap + n) * 2;
		p->names = xrealloc(p->names, p->names_cap);
	}
	memcpy(p->names + p->names_len, s, n);
	p->tab[i] = (struct psl_ent){.h = h, .off = (uint32_t)p->names_len, .len = (uint16_t)n,
				     .flags = flags};
	p->names_len += n;
	p->n++;
}

/* A rule and, flag-less, each of its parents (so that lookups can stop at
 * the first suffix that is not in the set). */
static void psl_add(struct psl *p, const char *s, size_t n, uint8_t flags)
{
	psl_put(p, s, n, flags);
	for (size_t i = 0; i < n; i++)
		if (s[i] == '.')
			psl_put(p, s + i + 1, n - i - 1, 0);
	p->rules++;
}

static bool psl_name_ok(char *s, size_t n);

/* ---- RFC 3492 Punycode, for the list's Unicode rules ---- */

enum { PC_BASE = 36, PC_TMIN = 1, PC_TMAX = 26, PC_SKEW = 38, PC_DAMP = 700 };

static uint32_t pc_adapt(uint32_t delta, uint32_t numpoints, int first)
{
	uint32_t k = 0;
	delta = first ? delta / PC_DAMP : delta / 2;
	delta += delta / numpoints;
	while (delta > ((PC_BASE - PC_TMIN) * PC_TMAX) / 2) {
		delta /= PC_BASE - PC_TMIN;
		k += PC_BASE;
	}
	return k + (PC_BASE - PC_TMIN + 1) * delta / (delta + PC_SKEW);
}

static char pc_digit(uint32_t d)
{
	return (char)(d < 26 ? 'a' + d : '0' + d - 26);
}

/* Decodes UTF-8 s[0..n) into cp (at most cpmax): the count, or -1. */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, size_t cpmax)
{
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		uint32_t c = s[i];
		size_t more;
		if (c < 0x80)
			more = 0;
		else if ((c & 0xE0) == 0xC0)
			more = 1, c &= 0x1F;
		else if ((c & 0xF0) == 0xE0)
			more = 2, c &= 0x0F;
		else if ((c & 0xF8) == 0xF0)
			more = 3, c &= 0x07;
		else
			return -1;
		for (size_t j = 1; j <= more; j++) {
			if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
				return -1;
			c = (c << 6) | (s[i + j] & 0x3F);
		}
		if (c > 0x10FFFF || k == cpmax)
			return -1;
		cp[k++] = c;
		i += more + 1;
	}
	return (int)k;
}

/* The A-label of one UTF-8 label (RFC 3492 6.3, "xn--" prefix of RFC 5890
 * 2.3.2.1) into out: its length, or -1 when it does not fit or is not UTF-8. */
static int punycode_label(const char *label, size_t n, char *out, size_t outsz)
{
	uint32_t cp[PSL_LABEL_MAX * 4];
	int ncp = utf8_decode((const unsigned char *)label, n, cp, sizeof(cp) / sizeof(cp[0]));
	size_t o = 0;

	if (ncp < 0 || outsz < 5)
		return -1;
	memcpy(out, "xn--", 4);
	o = 4;
	uint32_t basic = 0;
	for (int i = 0; i < ncp; i++)
		if (cp[i] < 0x80) {
			if (o + 1 >= outsz)
				return -1;
			out[o++] = (char)cp[i];
			basic++;
		}
	if (basic > 0) {
		if (o + 1 >= outsz)
			return -1;
		out[o++] = '-';
	}
	uint32_t cpn = 0x80, delta = 0, bias = 72, h = basic;
	while (h < (uint32_t)ncp) {
		uint32_t m = UINT32_MAX;
		for (int i = 0; i < ncp; i++)
			if (cp[i] >= cpn && cp[i] < m)
				m = cp[i];
		if ((uint64_t)delta + (uint64_t)(m - cpn) * (h + 1) > UINT32_MAX)
			return -1;
		delta += (m - cpn) * (h + 1);
		cpn = m;
		for (int i = 0; i < ncp; i++) {
			if (cp[i] < cpn && ++delta == 0)
				return -1;
			if (cp[i] != cpn)
				continue;
			uint32_t q = delta;
			for (uint32_t k = PC_BASE;; k += PC_BASE) {
				uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
				if (q < t)
					break;
				if (o + 1 >= outsz)
					return -1;
				out[o++] = pc_digit(t + (q - t) % (PC_BASE - t));
				q = (q - t) / (PC_BASE - t);
			}
			if (o + 1 >= outsz)
				return -1;
			out[o++] = pc_digit(q);
			bias = pc_adapt(delta, h + 1, h == basic);
			delta = 0;
			h++;
		}
		delta++;
		cpn++;
	}
	return o > PSL_LABEL_MAX ? -1 : (int)o;
}

/* A rule's name with each non-ASCII label as its A-label: 0, or -1. */
static int psl_to_alabels(const char *s, size_t n, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		bool ascii = true;
		while (j < n && s[j] != '.') {
			if ((unsigned char)s[j] >= 0x80)
				ascii = false;
			j++;
		}
		if (o > 0) {
			if (o + 1 >= outsz)
				return -1;
			out[o++] = '.';
		}
		if (ascii) {
			if (o + (j - i) >= outsz)
				return -1;
			memcpy(out + o, s + i, j - i);
			o += j - i;
		} else {
			int k = punycode_label(s + i, j - i, out + o, outsz - o);
			if (k < 0)
				return -1;
			o += (size_t)k;
		}
		i = j + 1;
	}
	if (o > PSL_NAME_MAX)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int psl_alabels(const char *name, char *out, size_t outsz)
{
	char buf[PSL_NAME_MAX + 2];
	size_t n = strnlen(name, PSL_NAME_MAX + 2);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > PSL_NAME_MAX)
		return -1;
	memcpy(buf, name, n);
	buf[n] = '\0';
	if (!psl_name_ok(buf, n))
		return -1;
	return psl_to_alabels(buf, n, out, outsz) < 0 ? -1 : 0;
}

/* A name's shape: 1..253 octets, labels of 1..63, no control characters,
 * spaces or DEL. Lowercases ASCII in place. */
static bool psl_name_ok(char *s, size_t n)
{
	size_t label = 0;
	if (n == 0 || n > PSL_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (c <= 0x20 || c == 0x7f || ++label > PSL_LABEL_MAX)
			return false;
		if (c >= 'A' && c <= 'Z')
			s[i] = (char)(c + 32);
	}
	return label > 0;
}

struct psl *psl_load(const char *path, char **err_r)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	size_t bad = 0;

	if (f == NULL) {
		*err_r = xasprintf("%s: %s", path, strerror(errno));
		log_warn("dmarc psl unreadable path=%s error=%s: organizational domains are the "
			 "last two labels",
			 path, strerror(errno));
		return NULL;
	}
	struct psl *p = xcalloc(1, sizeof(*p));
	psl_grow(p);
	while ((len = getline(&line, &cap, f)) >= 0) {
		/* The list's format: one rule per line, up to the first white
		 * space; "//" comments; "*." wildcards; "!" exceptions. */
		size_t n = 0;
		while (n < (size_t)len && line[n] != ' ' && line[n] != '\t' && line[n] != '\r' &&
		       line[n] != '\n')
			n++;
		if (n == 0 || (n >= 2 && line[0] == '/' && line[1] == '/'))
			continue;
		char *s = line;
		uint8_t flags = PSL_RULE;
		if (s[0] == '!') {
			flags = PSL_EXC;
			s++, n--;
		} else if (n >= 2 && s[0] == '*' && s[1] == '.') {
			flags = PSL_WILD;
			s += 2, n -= 2;
		}
		if (!psl_name_ok(s, n) || memchr(s, '*', n) != NULL) {
			bad++;
			continue;
		}
		psl_add(p, s, n, flags);
		bool ascii = true;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)s[i] >= 0x80)
				ascii = false;
		if (!ascii) {
			char a[PSL_NAME_MAX + 64];
			int an = psl_to_alabels(s, n, a, sizeof(a));
			if (an > 0)
				psl_add(p, a, (size_t)an, flags);
			else
				bad++;
		}
	}
	free(line);
	fclose(f);
	if (p->rules == 0) {
		*err_r = xasprintf("%s: no rules", path);
		log_warn("dmarc psl empty path=%s: organizational domains are the last two labels",
			 path);
		psl_free(&p);
		return NULL;
	}
	log_debug("dmarc psl loaded path=%s rules=%zu skipped=%zu", path, p->rules, bad);
	return p;
}

void psl_free(struct psl **pp)
{
	struct psl *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	free(p->names);
	free(p->tab);
	free(p);
}

int psl_org_domain(const struct psl *p, const char *domain, char *out, size_t outsz)
{
	char buf[PSL_NAME_MAX + 2];
	size_t off[PSL_LABELS_MAX], nl = 0;
	size_t n = strnlen(domain, PSL_NAME_MAX + 2);

	if (n > 0 && domain[n - 1] == '.')
		n--; /* an absolute name: the same domain */
	if (n == 0 || n > PSL_NAME_MAX)
		return -1;
	memcpy(buf, domain, n);
	buf[n] = '\0';
	if (!psl_name_ok(buf, n))
		return -1;
	off[nl++] = 0;
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '.')
			off[nl++] = i + 1; /* at most 127 labels in 253 octets */

	/* RFC 7489 3.2 steps 3-4: the longest matching suffix, an exception rule
	 * first (the list's algorithm); no rule: the top label ("*" default). */
	size_t ps = nl - 1, exc = SIZE_MAX;
	if (p != NULL) {
		for (size_t j = nl; j-- > 0;) {
			const struct psl_ent *e = psl_find(p, buf + off[j], n - off[j]);
			if (e == NULL)
				break;
			if (e->flags & PSL_RULE)
				ps = j;
			if ((e->flags & PSL_WILD) && j > 0)
				ps = j - 1;
			if (e->flags & PSL_EXC)
				exc = j;
		}
		if (exc != SIZE_MAX)
			ps = exc + 1 < nl ? exc + 1 : nl - 1;
	} else if (nl >= 2) {
		ps = nl - 1; /* no list: the last two labels */
	}
	/* The suffix plus one label; a domain that is itself a public suffix is
	 * its own organizational domain (nothing else can align with it). */
	size_t org = ps > 0 ? off[ps - 1] : 0;
	if (n - org + 1 > outsz)
		return -1;
	memcpy(out, buf + org, n - org);
	out[n - org] = '\0';
	return 0;
}
