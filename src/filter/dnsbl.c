/* DNS block/allow list sites (screen.h): the dnsbl_sites syntax, query
 * names and answer filters. Pure; fuzzed by tests/fuzz/fuzz_dnsbl.c.
 *
 * The syntax is Postfix's postscreen_dnsbl_sites: zone[=filter][*weight],
 * entries separated by commas or white space. filter is d.d.d.d, where each
 * d is a number 0..255 or a bracketed list of numbers and ranges separated
 * by ';' ("127.0.0.[2..11]", "127.0.[0..255].[1;3..5]"); weight is an
 * integer, default 1, negative for an allowlist (list.dnswl.org). A zone
 * may appear more than once with different filters and weights; each entry
 * whose filter matches adds its weight once. */
#include "filter/screen.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "filter/screen_int.h"

#define DNSBL_WEIGHT_MAX 100000

/* A number 0..255 at *pp (at most 3 digits); advances. 0 or -1. */
static int octet(const char **pp, const char *end, int *v)
{
	const char *p = *pp;
	int n = 0, d = 0;
	while (p < end && isdigit((unsigned char)*p) && d < 4) {
		n = n * 10 + (*p++ - '0');
		d++;
	}
	if (d == 0 || d > 3 || n > 255)
		return -1;
	*v = n;
	*pp = p;
	return 0;
}

static void bit_set(uint8_t *bm, int lo, int hi)
{
	for (int v = lo; v <= hi; v++)
		bm[v / 8] |= (uint8_t)(1u << (v % 8));
}

/* filter: d.d.d.d. 0 or -1. */
static int filter_parse(const char *p, const char *end, struct dnsbl_site *s)
{
	for (int i = 0; i < 4; i++) {
		int lo, hi;
		if (i > 0) {
			if (p == end || *p != '.')
				return -1;
			p++;
		}
		if (p < end && *p == '[') {
			p++;
			for (;;) {
				if (octet(&p, end, &lo) < 0)
					return -1;
				hi = lo;
				if (end - p >= 2 && p[0] == '.' && p[1] == '.') {
					p += 2;
					if (octet(&p, end, &hi) < 0 || hi < lo)
						return -1;
				}
				bit_set(s->ok[i], lo, hi);
				if (p < end && *p == ';') {
					p++;
					continue;
				}
				if (p < end && *p == ']') {
					p++;
					break;
				}
				return -1;
			}
		} else {
			if (octet(&p, end, &lo) < 0)
				return -1;
			bit_set(s->ok[i], lo, lo);
		}
	}
	return p == end ? 0 : -1;
}

/* A zone: LDH labels (and '_', which some lists' names carry), 1..63
 * octets each, DNSBL_ZONE_MAX in all; lowercased into out. 0 or -1. */
static int zone_parse(const char *p, const char *end, char **out)
{
	if (end > p && end[-1] == '.')
		end--;
	size_t n = (size_t)(end - p), label = 0;
	if (n == 0 || n > DNSBL_ZONE_MAX)
		return -1;
	for (const char *q = p; q < end; q++) {
		if (*q == '.') {
			if (label == 0)
				return -1;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_')
			return -1;
		if (++label > 63)
			return -1;
	}
	if (label == 0)
		return -1;
	char *z = xstrndup(p, n);
	for (char *c = z; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	*out = z;
	return 0;
}

static int weight_parse(const char *p, const char *end, int *w)
{
	bool neg = false;
	long v = 0;
	if (p < end && (*p == '-' || *p == '+'))
		neg = *p++ == '-';
	if (p == end)
		return -1;
	for (; p < end; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = v * 10 + (*p - '0');
		if (v > DNSBL_WEIGHT_MAX)
			return -1;
	}
	*w = (int)(neg ? -v : v);
	return 0;
}

static int site_parse(const char *p, const char *end, struct dnsbl_site *s)
{
	memset(s, 0, sizeof *s);
	s->weight = 1;
	const char *star = memchr(p, '*', (size_t)(end - p));
	const char *fend = star ? star : end;
	const char *eq = memchr(p, '=', (size_t)(fend - p));
	if (star != NULL && weight_parse(star + 1, end, &s->weight) < 0)
		return -1;
	if (eq != NULL) {
		s->filter = true;
		if (filter_parse(eq + 1, fend, s) < 0)
			return -1;
	}
	return zone_parse(p, eq ? eq : fend, &s->zone);
}

struct dnsbl_site *dnsbl_sites_parse(const char *list, size_t *n_r, char **err_r)
{
	struct dnsbl_site *v = NULL;
	size_t n = 0, cap = 0;
	const char *p = list, *start;

	while (screen_list_next(&p, &start)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = xrealloc(v, cap * sizeof *v);
		}
		if (site_parse(start, p, &v[n]) < 0) {
			free(v[n].zone);
			if (err_r)
				*err_r = xasprintf("dnsbl_sites: bad entry \"%.*s\" "
						   "(zone[=d.d.d.d][*weight])",
						   (int)(p - start > 100 ? 100 : p - start), start);
			dnsbl_sites_free(v, n);
			*n_r = 0;
			return NULL;
		}
		n++;
	}
	*n_r = n;
	/* an empty list is a valid one: a non-NULL pointer the caller frees */
	return v != NULL ? v : xcalloc(1, sizeof *v);
}

void dnsbl_sites_free(struct dnsbl_site *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].zone);
	free(v);
}

const char *dnsbl_site_zone(const struct dnsbl_site *v, size_t i)
{
	return v[i].zone;
}

int dnsbl_site_weight(const struct dnsbl_site *v, size_t i)
{
	return v[i].weight;
}

bool dnsbl_site_match(const struct dnsbl_site *v, size_t i, const uint8_t a[4])
{
	const struct dnsbl_site *s = &v[i];
	if (!s->filter)
		/* RFC 5782 2.1: entries are in 127.0.0.0/8; 127.255.255.x is
		 * what lists answer a refused query with (Spamhaus 2.3.x) */
		return a[0] == 127 && !(a[1] == 255 && a[2] == 255);
	for (int k = 0; k < 4; k++)
		if (!(s->ok[k][a[k] / 8] & (1u << (a[k] % 8))))
			return false;
	return true;
}

void dnsbl_rule_name(const char *zone, char *out, size_t outsize)
{
	size_t o = 0;
	if (outsize == 0)
		return;
	for (const char *p = "DNSBL_"; *p && o + 1 < outsize; p++)
		out[o++] = *p;
	for (const char *p = zone; *p && o + 1 < outsize; p++) {
		unsigned char c = (unsigned char)*p;
		out[o++] = isalnum(c) && c < 0x80 ? (char)toupper(c) : '_';
	}
	out[o] = '\0';
}

/* RFC 5782 2.1 (IPv4: the octets reversed) and 2.4 (IPv6: the 32 nibbles
 * reversed, lowercase hex), then the zone. */
int dnsbl_query_name(const char *zone, const char *ip, char *out, size_t outsize)
{
	static const char hex[] = "0123456789abcdef";
	struct screen_addr a;
	size_t o = 0, zl = strlen(zone);
	int r;

	if (zl > 0 && zone[zl - 1] == '.')
		zl--;
	if (zl == 0 || screen_addr_parse(ip, &a) < 0)
		return -1;
	if (a.fam == 4) {
		r = snprintf(out, outsize, "%u.%u.%u.%u.", a.a[3], a.a[2], a.a[1], a.a[0]);
		if (r < 0 || (size_t)r >= outsize)
			return -1;
		o = (size_t)r;
	} else {
		if (outsize < 64 + 1)
			return -1;
		for (int i = 15; i >= 0; i--) {
			out[o++] = hex[a.a[i] & 0xf];
			out[o++] = '.';
			out[o++] = hex[a.a[i] >> 4];
			out[o++] = '.';
		}
	}
	if (o + zl + 1 > outsize || o + zl > 253)
		return -1;
	memcpy(out + o, zone, zl);
	out[o + zl] = '\0';
	return 0;
}
