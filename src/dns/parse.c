/* DNS replies (RFC 1035 4.1) read by hand: c-ares hands over the raw packet,
 * and the cache needs each record's TTL, the AD bit and the SOA of a
 * negative answer, which the ares_parse_* helpers do not all give. Every
 * read is bounds-checked; compression pointers must point strictly backwards
 * (so a loop cannot be built), and a name is at most 255 octets. Pure: no
 * loop, no c-ares. Also the other pure helpers of dns.h. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/endian.h"
#include "core/xmalloc.h"
#include "dns/dns_int.h"

#define T_CNAME 5
#define T_SOA 6
#define C_IN 1

static bool name_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '/' || c == '*';
}

int dns_name_normalize(const char *name, char *out, size_t outsz)
{
	size_t n = strlen(name), label = 0, octets = 0, o = 0;

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0 || o + 1 >= outsz)
				return -1;
			label = 0;
			octets++;
			out[o++] = '.';
			continue;
		}
		if (c == '\\') {
			/* \DDD (RFC 1035 5.1), as read_name writes a byte that is
			 * not a name character: names built by SPF macros
			 * (RFC 7208 7.3) may hold any byte but NUL. */
			unsigned v = 0;
			for (int k = 1; k <= 3; k++) {
				if (i + (size_t)k >= n || name[i + k] < '0' || name[i + k] > '9')
					return -1;
				v = v * 10 + (unsigned)(name[i + k] - '0');
			}
			if (v == 0 || v > 255)
				return -1;
			i += 3;
			c = (unsigned char)v;
			if (!name_char_ok(c)) {
				if (++label > 63 || o + 5 >= outsz)
					return -1;
				octets++;
				o += (size_t)snprintf(out + o, 5, "\\%03u", c);
				continue;
			}
		} else if (!name_char_ok(c)) {
			return -1;
		}
		if (++label > 63 || o + 1 >= outsz)
			return -1;
		octets++;
		out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	/* RFC 1035 2.3.4: 255 octets on the wire = 253 in text. */
	if (label == 0 || octets > 253)
		return -1;
	out[o] = '\0';
	return 0;
}

void dns_name_to_ares(const char *norm, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; norm[i] && o + 2 < outsz; i++) {
		if (norm[i] == '\\' && norm[i + 1] && norm[i + 2] && norm[i + 3]) {
			out[o++] = '\\';
			out[o++] = (char)((norm[i + 1] - '0') * 100 + (norm[i + 2] - '0') * 10 +
					  (norm[i + 3] - '0'));
			i += 3;
		} else {
			out[o++] = norm[i];
		}
	}
	out[o] = '\0';
}

/* Reads the name at *off (advanced past it where it stands) into out as
 * text: lowercase, no trailing dot, "" for the root, bytes other than name
 * characters as \DDD (so a label holding a dot never reads as two). */
static int read_name(const uint8_t *p, size_t len, size_t *off, char *out)
{
	size_t pos = *off, wire = 0, o = 0;
	bool jumped = false;

	for (;;) {
		if (pos >= len)
			return -1;
		uint8_t l = p[pos];
		if ((l & 0xC0) == 0xC0) {
			if (pos + 1 >= len)
				return -1;
			size_t target = ((size_t)(l & 0x3F) << 8) | p[pos + 1];
			/* Strictly backwards: every jump lowers pos, so no loop. */
			if (target >= pos)
				return -1;
			if (!jumped)
				*off = pos + 2;
			jumped = true;
			pos = target;
			continue;
		}
		if (l & 0xC0) /* 01 and 10: extended label types, not used */
			return -1;
		wire += (size_t)l + 1;
		if (wire > 255)
			return -1;
		if (l == 0) {
			if (!jumped)
				*off = pos + 1;
			out[o] = '\0';
			return 0;
		}
		if (pos + 1 + l > len)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (size_t i = 0; i < l; i++) {
			unsigned char c = p[pos + 1 + i];
			if (name_char_ok(c))
				out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			else
				o += (size_t)snprintf(out + o, 5, "\\%03u", c);
		}
		pos += 1 + (size_t)l;
	}
}

/* RFC 2181 8: a TTL with the top bit set is 0. */
static uint32_t ttl_of(uint32_t t)
{
	return t & 0x80000000u ? 0 : t;
}

struct rrref {
	size_t owner; /* offset of the owner name */
	uint16_t type;
	uint32_t ttl;
	size_t rd, rdlen;
};

/* Reads one resource record's fixed part; rr->owner is where its name is. */
static int read_rr(const uint8_t *p, size_t len, size_t *off, struct rrref *rr, uint16_t *class_r)
{
	char name[DNS_NAME_TEXT_MAX + 8];

	rr->owner = *off;
	if (read_name(p, len, off, name) < 0 || *off + 10 > len)
		return -1;
	rr->type = be16_get(p + *off);
	*class_r = be16_get(p + *off + 2);
	rr->ttl = ttl_of(be32_get(p + *off + 4));
	rr->rdlen = be16_get(p + *off + 8);
	rr->rd = *off + 10;
	if (rr->rd + rr->rdlen > len)
		return -1;
	*off = rr->rd + rr->rdlen;
	return 0;
}

static bool owner_is(const uint8_t *p, size_t len, size_t owner, const char *name)
{
	char buf[DNS_NAME_TEXT_MAX + 8];
	size_t o = owner;
	return read_name(p, len, &o, buf) == 0 && strcmp(buf, name) == 0;
}

/* Fills rr from the rdata of a record of the asked type; -1 if malformed. */
static int read_rdata(const uint8_t *p, size_t len, const struct rrref *ref, struct dns_rr *rr)
{
	const uint8_t *d = p + ref->rd;
	char name[DNS_NAME_TEXT_MAX + 8];
	size_t off;

	memset(rr, 0, sizeof(*rr));
	rr->type = ref->type;
	rr->ttl = ref->ttl;
	switch (ref->type) {
	case DNS_A:
		if (ref->rdlen != 4)
			return -1;
		memcpy(&rr->u.a, d, 4);
		return 0;
	case DNS_AAAA:
		if (ref->rdlen != 16)
			return -1;
		memcpy(&rr->u.aaaa, d, 16);
		return 0;
	case DNS_MX:
		if (ref->rdlen < 3)
			return -1;
		off = ref->rd + 2;
		if (read_name(p, len, &off, name) < 0 || off != ref->rd + ref->rdlen)
			return -1;
		rr->u.mx.pref = be16_get(d);
		rr->u.mx.host = xstrdup(name);
		return 0;
	case DNS_PTR:
		off = ref->rd;
		if (read_name(p, len, &off, name) < 0 || off != ref->rd + ref->rdlen)
			return -1;
		rr->u.ptr = xstrdup(name);
		return 0;
	case DNS_TXT: {
		/* RFC 1035 3.3.14: one or more <character-string>s, joined
		 * (RFC 7208 3.3). */
		char *t = xmalloc(ref->rdlen + 1);
		size_t n = 0, i = 0;
		/* No string at all is illegal, but it is no reason to throw
		 * away the whole answer (other records, other TXT users): it
		 * reads as empty text. */
		while (i < ref->rdlen) {
			size_t l = d[i++];
			if (i + l > ref->rdlen) {
				free(t);
				return -1;
			}
			memcpy(t + n, d + i, l);
			n += l;
			i += l;
		}
		t[n] = '\0';
		rr->u.txt.text = t;
		rr->u.txt.len = n;
		return 0;
	}
	case DNS_TLSA:
		/* RFC 6698 2.1 */
		if (ref->rdlen < 3)
			return -1;
		rr->u.tlsa.usage = d[0];
		rr->u.tlsa.selector = d[1];
		rr->u.tlsa.mtype = d[2];
		rr->u.tlsa.len = ref->rdlen - 3;
		rr->u.tlsa.data = xmalloc(rr->u.tlsa.len + 1);
		memcpy(rr->u.tlsa.data, d + 3, rr->u.tlsa.len);
		return 0;
	case DNS_SRV:
		/* RFC 2782: priority, weight, port, target */
		if (ref->rdlen < 7)
			return -1;
		off = ref->rd + 6;
		if (read_name(p, len, &off, name) < 0 || off != ref->rd + ref->rdlen)
			return -1;
		rr->u.srv.prio = be16_get(d);
		rr->u.srv.weight = be16_get(d + 2);
		rr->u.srv.port = be16_get(d + 4);
		rr->u.srv.target = xstrdup(name);
		return 0;
	}
	return -1;
}

static void rr_clear(struct dns_rr *rr)
{
	switch (rr->type) {
	case DNS_MX:
		free(rr->u.mx.host);
		break;
	case DNS_PTR:
		free(rr->u.ptr);
		break;
	case DNS_TXT:
		free(rr->u.txt.text);
		break;
	case DNS_TLSA:
		free(rr->u.tlsa.data);
		break;
	case DNS_SRV:
		free(rr->u.srv.target);
		break;
	}
}

void dns_answer_clear(struct dns_answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		rr_clear(&a->rr[i]);
	free(a->rr);
	memset(a, 0, sizeof(*a));
}

void dns_answer_copy(struct dns_answer *dst, const struct dns_answer *src)
{
	*dst = *src;
	dst->rr = src->n ? xcalloc(src->n, sizeof(*dst->rr)) : NULL;
	for (size_t i = 0; i < src->n; i++) {
		struct dns_rr *r = &dst->rr[i];
		*r = src->rr[i];
		switch (r->type) {
		case DNS_MX:
			r->u.mx.host = xstrdup(r->u.mx.host);
			break;
		case DNS_PTR:
			r->u.ptr = xstrdup(r->u.ptr);
			break;
		case DNS_TXT:
			r->u.txt.text = xmalloc(r->u.txt.len + 1);
			memcpy(r->u.txt.text, src->rr[i].u.txt.text, r->u.txt.len + 1);
			break;
		case DNS_TLSA:
			r->u.tlsa.data = xmalloc(r->u.tlsa.len + 1);
			memcpy(r->u.tlsa.data, src->rr[i].u.tlsa.data, r->u.tlsa.len);
			break;
		case DNS_SRV:
			r->u.srv.target = xstrdup(r->u.srv.target);
			break;
		}
	}
}

int dns_parse_answer(const uint8_t *p, size_t len, const char *qname, uint16_t qtype,
		     struct dns_answer *a, uint32_t *ttl_r)
{
	char name[DNS_NAME_TEXT_MAX + 8], target[DNS_NAME_TEXT_MAX + 8];
	struct rrref *an = NULL;
	size_t off = 12;
	uint32_t chain_ttl = DNS_TTL_MAX, neg_ttl = 0;
	uint16_t cls;

	memset(a, 0, sizeof(*a));
	*ttl_r = 0;
	if (len < 12)
		return -1;
	uint16_t flags = be16_get(p + 2), qd = be16_get(p + 4), anc = be16_get(p + 6), nsc = be16_get(p + 8);
	if (!(flags & 0x8000) || ((flags >> 11) & 0xF) != 0)
		return -1; /* not a response, or not a standard query's */
	unsigned rcode = flags & 0xF;
	a->authenticated = (flags & 0x0020) != 0; /* RFC 4035 3.2.3 */
	if (rcode != 0 && rcode != 3) {
		a->status = DNS_TEMPFAIL; /* SERVFAIL, REFUSED, FORMERR, ... */
		return 0;
	}
	for (unsigned i = 0; i < qd; i++) {
		if (read_name(p, len, &off, name) < 0 || off + 4 > len)
			return -1;
		off += 4;
	}
	an = anc ? xcalloc(anc, sizeof(*an)) : NULL;
	for (unsigned i = 0; i < anc; i++) {
		if (read_rr(p, len, &off, &an[i], &cls) < 0)
			goto bad;
		if (cls != C_IN)
			an[i].type = 0; /* ignored */
	}
	/* RFC 2308 5: a negative answer is cached for the SOA's TTL, at most
	 * its MINIMUM field. */
	for (unsigned i = 0; i < nsc; i++) {
		struct rrref ns;
		if (read_rr(p, len, &off, &ns, &cls) < 0)
			goto bad;
		if (ns.type == T_SOA && cls == C_IN) {
			size_t o = ns.rd;
			if (read_name(p, len, &o, name) < 0 || read_name(p, len, &o, name) < 0 ||
			    o + 20 != ns.rd + ns.rdlen)
				goto bad;
			uint32_t min = ttl_of(be32_get(p + o + 16));
			neg_ttl = ns.ttl < min ? ns.ttl : min;
		}
	}
	/* The additional section is not read: nothing there is trusted. */

	/* RFC 1034 3.6.2 / 4.3.2: follow the CNAME chain from qname. */
	snprintf(target, sizeof(target), "%s", qname);
	for (int hop = 0; hop < DNS_CNAME_MAX; hop++) {
		bool moved = false;
		for (unsigned i = 0; i < anc && !moved; i++) {
			if (an[i].type != T_CNAME || qtype == T_CNAME ||
			    !owner_is(p, len, an[i].owner, target))
				continue;
			size_t o = an[i].rd;
			if (read_name(p, len, &o, name) < 0 || o != an[i].rd + an[i].rdlen)
				goto bad;
			snprintf(target, sizeof(target), "%s", name);
			if (an[i].ttl < chain_ttl)
				chain_ttl = an[i].ttl;
			moved = true;
		}
		if (!moved)
			break;
	}
	size_t n = 0;
	for (unsigned i = 0; i < anc; i++)
		if (an[i].type == qtype && owner_is(p, len, an[i].owner, target))
			n++;
	a->rr = n ? xcalloc(n, sizeof(*a->rr)) : NULL;
	uint32_t min_ttl = chain_ttl;
	for (unsigned i = 0; i < anc; i++) {
		if (an[i].type != qtype || !owner_is(p, len, an[i].owner, target))
			continue;
		struct dns_rr *rr = &a->rr[a->n];
		if (read_rdata(p, len, &an[i], rr) < 0)
			goto bad;
		a->n++;
		if (rr->ttl > chain_ttl)
			rr->ttl = chain_ttl;
		if (rr->ttl < min_ttl)
			min_ttl = rr->ttl;
	}
	free(an);
	if (rcode == 3) {
		/* RFC 6604 3: NXDOMAIN speaks of the chain's last name. */
		for (size_t i = 0; i < a->n; i++)
			rr_clear(&a->rr[i]);
		free(a->rr);
		a->rr = NULL;
		a->n = 0;
		a->status = DNS_NXDOMAIN;
		*ttl_r = neg_ttl < DNS_TTL_MAX ? neg_ttl : DNS_TTL_MAX;
	} else if (a->n == 0) {
		a->status = DNS_NODATA;
		*ttl_r = neg_ttl < DNS_TTL_MAX ? neg_ttl : DNS_TTL_MAX;
	} else {
		a->status = DNS_OK;
		*ttl_r = min_ttl;
	}
	return 0;
bad:
	free(an);
	dns_answer_clear(a);
	return -1;
}

/* ---- pure helpers of dns.h ---- */

int dns_reverse_name(const char *ip, char *out, size_t outsz)
{
	struct in_addr v4;
	struct in6_addr v6;
	int n;

	if (inet_pton(AF_INET, ip, &v4) == 1) {
		const uint8_t *b = (const uint8_t *)&v4;
		/* RFC 1035 3.5 */
		n = snprintf(out, outsz, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
		return n < 0 || (size_t)n >= outsz ? -1 : 0;
	}
	if (inet_pton(AF_INET6, ip, &v6) == 1) {
		/* RFC 3596 2.5: 32 nibbles, lowest first, then "ip6.arpa". */
		static const char hex[] = "0123456789abcdef";
		if (outsz < 64 + 9)
			return -1;
		char *o = out;
		for (int i = 15; i >= 0; i--) {
			*o++ = hex[v6.s6_addr[i] & 0xF];
			*o++ = '.';
			*o++ = hex[v6.s6_addr[i] >> 4];
			*o++ = '.';
		}
		memcpy(o, "ip6.arpa", 9);
		return 0;
	}
	return -1;
}

static int cmp_pref(const void *x, const void *y)
{
	const struct dns_mx_pref *a = x, *b = y;
	return (int)a->pref - (int)b->pref;
}

void dns_mx_order(struct dns_mx_pref *mx, size_t n, uint32_t (*rnd)(void *arg), void *arg)
{
	if (n < 2)
		return;
	qsort(mx, n, sizeof(*mx), cmp_pref);
	/* RFC 5321 5.1: equal preferences in random order (Fisher-Yates per
	 * run; the modulo bias of 32 random bits over a handful is nothing). */
	for (size_t start = 0; start < n;) {
		size_t end = start + 1;
		while (end < n && mx[end].pref == mx[start].pref)
			end++;
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + rnd(arg) % (i - start + 1);
			struct dns_mx_pref t = mx[i];
			mx[i] = mx[j];
			mx[j] = t;
		}
		start = end;
	}
}
