/* Unit tests for the pure parts of src/dns: MX ordering, reverse names, name
 * normalisation and the answer parser on crafted replies (compression,
 * pointer loops, truncation, CNAME chains, negative answers). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dns/dns_int.h"

/* ---- dns_mx_order ---- */

static uint32_t seq_rnd(void *arg)
{
	uint32_t *x = arg;
	*x = *x * 1103515245u + 12345u;
	return *x >> 8;
}

static void test_mx_order(void)
{
	struct dns_mx_pref mx[] = {{20, "c"}, {10, "a"}, {30, "e"}, {10, "b"}, {20, "d"}};
	uint32_t seed = 1;
	int seen_a_first = 0, seen_b_first = 0;

	for (int round = 0; round < 200; round++) {
		struct dns_mx_pref m[5];
		memcpy(m, mx, sizeof(m));
		dns_mx_order(m, 5, seq_rnd, &seed);
		for (int i = 1; i < 5; i++)
			CHECK_INT(round, m[i - 1].pref <= m[i].pref, 1);
		CHECK_STR(round, m[4].host, "e");
		/* each name exactly once */
		int mask = 0;
		for (int i = 0; i < 5; i++)
			mask |= 1 << (m[i].host[0] - 'a');
		CHECK_INT(round, mask, 0x1f);
		if (strcmp(m[0].host, "a") == 0)
			seen_a_first++;
		else
			seen_b_first++;
	}
	/* RFC 5321 5.1: equal preferences are shuffled, both orders occur */
	CHECK(seen_a_first > 50 && seen_b_first > 50);
	dns_mx_order(mx, 0, seq_rnd, &seed);
	dns_mx_order(mx, 1, seq_rnd, &seed);
	CHECK_STR(1, mx[0].host, "c");
}

/* ---- dns_reverse_name ---- */

static void test_reverse_name(void)
{
	static const struct {
		const char *ip;
		size_t outsz;
		int rc;
		const char *want;
	} cases[] = {
		{"127.0.0.1", 100, 0, "1.0.0.127.in-addr.arpa"},
		{"192.0.2.45", 100, 0, "45.2.0.192.in-addr.arpa"},
		{"2001:db8::567:89ab", 100, 0,
		 "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
		{"::1", 100, 0,
		 "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"},
		{"not an ip", 100, -1, NULL},
		{"1.2.3", 100, -1, NULL},
		{"", 100, -1, NULL},
		{"127.0.0.1", 10, -1, NULL},
		{"::1", 72, -1, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[128] = "";
		int rc = dns_reverse_name(cases[i].ip, out, cases[i].outsz);
		CHECK_INT(i, rc, cases[i].rc);
		if (rc == 0)
			CHECK_STR(i, out, cases[i].want);
	}
}

/* ---- dns_name_normalize ---- */

static void test_name_normalize(void)
{
	static const struct {
		const char *in;
		const char *want; /* NULL: -1 */
	} cases[] = {
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"_25._tcp.mx.example.com", "_25._tcp.mx.example.com"},
		{"a", "a"},
		{"", NULL},
		{".", NULL},
		{"a..b", NULL},
		{".a", NULL},
		{"a b.com", NULL},
		{"a\\.b", NULL},
		{"exa\xc3\xa9mple.com", NULL},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", NULL}, /* 64 */
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com"}, /* 63 */
		/* \DDD (RFC 1035 5.1): any byte but NUL, as read_name writes it;
		 * a name character so written is itself (SPF macros, RFC 7208 7.3) */
		{"Foo\\058bar\\047baz.Example.com", "foo\\058bar/baz.example.com"},
		{"macro\\037percent\\032\\032space.test", "macro\\037percent\\032\\032space.test"},
		{"\\065\\046b.test", "a\\046b.test"},
		{"a\\000b.test", NULL},
		{"a\\256.test", NULL},
		{"a\\05.test", NULL},
		{"a\\05", NULL},
		{"a\\", NULL},
		/* 63 octets, 3 of them escaped: fine; 64: too long */
		{"\\032\\032\\032aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
		 "\\032\\032\\032aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com"},
		{"\\032\\032\\032aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[DNS_NAME_TEXT_MAX];
		int rc = dns_name_normalize(cases[i].in, out, sizeof(out));
		CHECK_INT(i, rc, cases[i].want ? 0 : -1);
		if (rc == 0)
			CHECK_STR(i, out, cases[i].want);
	}
	/* 254 characters: over RFC 1035's 255 octets on the wire */
	char long_name[300];
	memset(long_name, 'a', 254);
	for (int i = 50; i < 254; i += 51)
		long_name[i] = '.';
	long_name[254] = '\0';
	char out[DNS_NAME_TEXT_MAX];
	CHECK_INT(100, dns_name_normalize(long_name, out, sizeof(out)), -1);
	long_name[253] = '\0';
	CHECK_INT(101, dns_name_normalize(long_name, out, sizeof(out)), 0);
	/* the limit counts octets, not the text of their escapes */
	char esc[1200];
	size_t o = 0;
	for (int i = 0; i < 253; i++)
		o += (size_t)snprintf(esc + o, sizeof(esc) - o, "%s", i % 50 == 49 ? "." : "\\058");
	CHECK_INT(102, dns_name_normalize(esc, out, sizeof(out)), 0);
	snprintf(esc + o, sizeof(esc) - o, "\\058");
	CHECK_INT(103, dns_name_normalize(esc, out, sizeof(out)), -1);
	/* the output's size is checked */
	char small[8];
	CHECK_INT(104, dns_name_normalize("a\\058b.test", small, sizeof(small)), -1);
	CHECK_INT(105, dns_name_normalize("ab.test", small, sizeof(small)), 0);
	CHECK_INT(106, dns_name_normalize("abc.test", small, sizeof(small)), -1);
}

/* ---- dns_name_to_ares: the escapes c-ares 1.18 reads ---- */

static void test_name_to_ares(void)
{
	char out[64];
	dns_name_to_ares("foo\\058bar\\032x.example.com", out, sizeof(out));
	CHECK_STR(1, out, "foo\\:bar\\ x.example.com");
	dns_name_to_ares("a\\046b.test", out, sizeof(out));
	CHECK_STR(2, out, "a\\.b.test");
	dns_name_to_ares("plain.test", out, sizeof(out));
	CHECK_STR(3, out, "plain.test");
}

/* ---- the answer parser ---- */

struct pkt {
	uint8_t b[2048];
	size_t n;
};

static void put(struct pkt *p, const void *d, size_t n)
{
	memcpy(p->b + p->n, d, n);
	p->n += n;
}
static void put8(struct pkt *p, unsigned v)
{
	p->b[p->n++] = (uint8_t)v;
}
static void put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8);
	put8(p, v & 0xff);
}
static void put32(struct pkt *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p, v & 0xffff);
}
/* "mx.example.com" as labels */
static void put_name(struct pkt *p, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		put8(p, (unsigned)l);
		put(p, name, l);
		name += l + (dot ? 1 : 0);
	}
	put8(p, 0);
}
static void header(struct pkt *p, unsigned flags, unsigned an, unsigned ns)
{
	p->n = 0;
	put16(p, 0x1234);
	put16(p, flags);
	put16(p, 1);
	put16(p, an);
	put16(p, ns);
	put16(p, 0);
}
/* question at offset 12 */
static void question(struct pkt *p, const char *name, unsigned type)
{
	put_name(p, name);
	put16(p, type);
	put16(p, 1);
}
static void rr_head(struct pkt *p, unsigned type, uint32_t ttl, unsigned rdlen)
{
	put16(p, type);
	put16(p, 1);
	put32(p, ttl);
	put16(p, rdlen);
}

static void test_parse_mx_compressed(void)
{
	struct pkt p;
	struct dns_answer a;
	uint32_t ttl;

	header(&p, 0x81a0, 2, 0); /* QR RD RA AD */
	question(&p, "example.com", 15);
	/* owner: pointer to the question name (offset 12) */
	put16(&p, 0xc00c);
	rr_head(&p, 15, 3600, 2 + 5);
	put16(&p, 10);
	put8(&p, 2);
	put(&p, "mx", 2);
	put16(&p, 0xc00c); /* mx.example.com */
	put16(&p, 0xc00c);
	rr_head(&p, 15, 600, 2 + 1);
	put16(&p, 20);
	put8(&p, 0); /* "." */
	CHECK_INT(1, dns_parse_answer(p.b, p.n, "example.com", 15, &a, &ttl), 0);
	CHECK_INT(2, a.status, DNS_OK);
	CHECK_INT(3, a.n, 2);
	CHECK_INT(4, a.authenticated, 1);
	CHECK_INT(5, ttl, 600);
	if (a.n == 2) {
		CHECK_STR(6, a.rr[0].u.mx.host, "mx.example.com");
		CHECK_INT(7, a.rr[0].u.mx.pref, 10);
		CHECK_INT(8, a.rr[0].ttl, 3600);
		CHECK_STR(9, a.rr[1].u.mx.host, "");
	}
	dns_answer_clear(&a);

	/* every truncation of it is malformed, none crashes */
	for (size_t cut = 0; cut < p.n; cut++) {
		int rc = dns_parse_answer(p.b, cut, "example.com", 15, &a, &ttl);
		CHECK_INT((int)cut, rc, -1);
		dns_answer_clear(&a);
	}
}

static void test_parse_pointer_loops(void)
{
	struct pkt p;
	struct dns_answer a;
	uint32_t ttl;

	/* an answer owner pointing at itself */
	header(&p, 0x8180, 1, 0);
	question(&p, "example.com", 1);
	size_t at = p.n;
	put16(&p, 0xc000 | (unsigned)at);
	rr_head(&p, 1, 60, 4);
	put32(&p, 0x7f000001);
	CHECK_INT(1, dns_parse_answer(p.b, p.n, "example.com", 1, &a, &ttl), -1);

	/* a forward pointer (could make a two-step loop) */
	header(&p, 0x8180, 1, 0);
	question(&p, "example.com", 1);
	at = p.n;
	put16(&p, 0xc000 | (unsigned)(at + 2));
	put16(&p, 0xc000 | (unsigned)at);
	rr_head(&p, 1, 60, 4);
	put32(&p, 0x7f000001);
	CHECK_INT(2, dns_parse_answer(p.b, p.n, "example.com", 1, &a, &ttl), -1);

	/* the question name itself a pointer to itself */
	header(&p, 0x8180, 0, 0);
	put16(&p, 0xc00c);
	put16(&p, 1);
	put16(&p, 1);
	CHECK_INT(3, dns_parse_answer(p.b, p.n, "example.com", 1, &a, &ttl), -1);

	/* a label type 01 (extended) */
	header(&p, 0x8180, 0, 0);
	put8(&p, 0x41);
	put8(&p, 0);
	put16(&p, 1);
	put16(&p, 1);
	CHECK_INT(4, dns_parse_answer(p.b, p.n, "example.com", 1, &a, &ttl), -1);

}

static void test_parse_long_name(void)
{
	struct pkt p;
	struct dns_answer a;
	uint32_t ttl;

	/* Questions whose names grow by one 10-octet label each, built by
	 * backward pointers: "abcdefghi" + the previous name. 25 labels (250
	 * octets + root) are fine; the 26th (261 octets) breaks RFC 1035's
	 * 255-octet limit. */
	for (int nq = 25; nq <= 26; nq++) {
		header(&p, 0x8180, 0, 0);
		p.b[5] = (uint8_t)nq;
		size_t prev = 0;
		for (int i = 0; i < nq; i++) {
			size_t here = p.n;
			put8(&p, 9);
			put(&p, "abcdefghi", 9);
			if (i == 0)
				put8(&p, 0);
			else
				put16(&p, 0xc000 | (unsigned)prev);
			put16(&p, 12);
			put16(&p, 1);
			prev = here;
		}
		CHECK_INT(nq, dns_parse_answer(p.b, p.n, "abcdefghi", 12, &a, &ttl),
			  nq == 25 ? 0 : -1);
		if (nq == 25)
			CHECK_INT(nq, a.status, DNS_NODATA);
		dns_answer_clear(&a);
	}
}

static void test_parse_cname_chain(void)
{
	struct pkt p;
	struct dns_answer a;
	uint32_t ttl;

	header(&p, 0x8180, 4, 0);
	question(&p, "www.example.com", 1);
	/* www.example.com CNAME a.example.net (ttl 100) */
	put16(&p, 0xc00c);
	rr_head(&p, 5, 100, 15);
	size_t a_at = p.n;
	put_name(&p, "a.example.net");
	/* an unrelated A record for another name */
	put_name(&p, "other.example.com");
	rr_head(&p, 1, 50, 4);
	put32(&p, 0x0a000001);
	/* a.example.net CNAME b.example.net (ttl 200) */
	put16(&p, 0xc000 | (unsigned)a_at);
	rr_head(&p, 5, 200, 4);
	put8(&p, 1);
	put8(&p, 'b');
	put16(&p, 0xc000 | (unsigned)(a_at + 2)); /* example.net */
	/* B.Example.NET A 192.0.2.1 (ttl 300): case-insensitive match */
	put_name(&p, "B.Example.NET");
	rr_head(&p, 1, 300, 4);
	put32(&p, 0xc0000201);
	CHECK_INT(1, dns_parse_answer(p.b, p.n, "www.example.com", 1, &a, &ttl), 0);
	CHECK_INT(2, a.status, DNS_OK);
	CHECK_INT(3, a.n, 1);
	CHECK_INT(4, ttl, 100); /* the chain's least TTL */
	if (a.n == 1) {
		CHECK_INT(5, a.rr[0].ttl, 100);
		CHECK_INT(6, ntohl(a.rr[0].u.a.s_addr), 0xc0000201);
	}
	CHECK_INT(7, a.authenticated, 0);
	dns_answer_clear(&a);

	/* a CNAME loop: a -> b -> a, no address: NODATA, bounded */
	header(&p, 0x8180, 2, 0);
	question(&p, "a.test", 1);
	put_name(&p, "a.test");
	rr_head(&p, 5, 60, 8);
	put_name(&p, "b.test");
	put_name(&p, "b.test");
	rr_head(&p, 5, 60, 8);
	put_name(&p, "a.test");
	CHECK_INT(8, dns_parse_answer(p.b, p.n, "a.test", 1, &a, &ttl), 0);
	CHECK_INT(9, a.status, DNS_NODATA);
	dns_answer_clear(&a);
}

static void test_parse_negative(void)
{
	struct pkt p;
	struct dns_answer a;
	uint32_t ttl;

	/* NXDOMAIN with SOA: cached for min(SOA TTL, MINIMUM) (RFC 2308 5) */
	header(&p, 0x8183, 0, 1);
	question(&p, "nope.example.com", 1);
	put_name(&p, "example.com");
	rr_head(&p, 6, 900, 0);
	size_t rd = p.n;
	put_name(&p, "ns.example.com");
	put_name(&p, "hostmaster.example.com");
	put32(&p, 1);
	put32(&p, 2);
	put32(&p, 3);
	put32(&p, 4);
	put32(&p, 300);
	p.b[rd - 2] = (uint8_t)((p.n - rd) >> 8);
	p.b[rd - 1] = (uint8_t)((p.n - rd) & 0xff);
	CHECK_INT(1, dns_parse_answer(p.b, p.n, "nope.example.com", 1, &a, &ttl), 0);
	CHECK_INT(2, a.status, DNS_NXDOMAIN);
	CHECK_INT(3, ttl, 300);
	CHECK_INT(4, a.n, 0);
	dns_answer_clear(&a);

	/* the same as NOERROR: NODATA */
	p.b[3] = 0x80;
	CHECK_INT(5, dns_parse_answer(p.b, p.n, "nope.example.com", 1, &a, &ttl), 0);
	CHECK_INT(6, a.status, DNS_NODATA);
	dns_answer_clear(&a);

	/* SERVFAIL, REFUSED: temporary, never cached */
	static const unsigned rcodes[] = {1, 2, 4, 5};
	for (size_t i = 0; i < 4; i++) {
		header(&p, 0x8180 | rcodes[i], 0, 0);
		question(&p, "x.test", 1);
		CHECK_INT(10 + (int)i, dns_parse_answer(p.b, p.n, "x.test", 1, &a, &ttl), 0);
		CHECK_INT(20 + (int)i, a.status, DNS_TEMPFAIL);
		CHECK_INT(30 + (int)i, ttl, 0);
		dns_answer_clear(&a);
	}
	/* not a response */
	header(&p, 0x0100, 0, 0);
	question(&p, "x.test", 1);
	CHECK_INT(40, dns_parse_answer(p.b, p.n, "x.test", 1, &a, &ttl), -1);
}

static void test_parse_rdata(void)
{
	struct pkt p;
	struct dns_answer a;
	uint32_t ttl;

	/* TXT: strings joined (RFC 7208 3.3) */
	header(&p, 0x8180, 1, 0);
	question(&p, "example.com", 16);
	put16(&p, 0xc00c);
	rr_head(&p, 16, 0x80000001u, 12); /* top bit: TTL 0 (RFC 2181 8) */
	put8(&p, 6);
	put(&p, "v=spf1", 6);
	put8(&p, 4);
	put(&p, " -al", 4);
	CHECK_INT(1, dns_parse_answer(p.b, p.n, "example.com", 16, &a, &ttl), 0);
	CHECK_INT(2, a.n, 1);
	if (a.n == 1) {
		CHECK_STR(3, a.rr[0].u.txt.text, "v=spf1 -al");
		CHECK_INT(4, a.rr[0].u.txt.len, 10);
		CHECK_INT(5, a.rr[0].ttl, 0);
	}
	dns_answer_clear(&a);

	/* a TXT record without any string (illegal): empty text, and the
	 * answer's other records are kept */
	header(&p, 0x8180, 2, 0);
	question(&p, "example.com", 16);
	put16(&p, 0xc00c);
	rr_head(&p, 16, 60, 0);
	put16(&p, 0xc00c);
	rr_head(&p, 16, 60, 7);
	put8(&p, 6);
	put(&p, "v=spf1", 6);
	CHECK_INT(40, dns_parse_answer(p.b, p.n, "example.com", 16, &a, &ttl), 0);
	CHECK_INT(41, a.n, 2);
	if (a.n == 2) {
		CHECK_STR(42, a.rr[0].u.txt.text, "");
		CHECK_INT(43, a.rr[0].u.txt.len, 0);
		CHECK_STR(44, a.rr[1].u.txt.text, "v=spf1");
	}
	dns_answer_clear(&a);

	/* a TXT string running past its rdata: malformed */
	header(&p, 0x8180, 1, 0);
	question(&p, "example.com", 16);
	put16(&p, 0xc00c);
	rr_head(&p, 16, 60, 3);
	put8(&p, 9);
	put(&p, "ab", 2);
	CHECK_INT(6, dns_parse_answer(p.b, p.n, "example.com", 16, &a, &ttl), -1);

	/* an A record of 5 octets: malformed */
	header(&p, 0x8180, 1, 0);
	question(&p, "example.com", 1);
	put16(&p, 0xc00c);
	rr_head(&p, 1, 60, 5);
	put32(&p, 1);
	put8(&p, 1);
	CHECK_INT(7, dns_parse_answer(p.b, p.n, "example.com", 1, &a, &ttl), -1);

	/* TLSA 3 1 1 <32 octets> (RFC 6698 2.1) */
	header(&p, 0x8180, 1, 0);
	question(&p, "_25._tcp.mx.example.com", 52);
	put16(&p, 0xc00c);
	rr_head(&p, 52, 60, 35);
	put8(&p, 3);
	put8(&p, 1);
	put8(&p, 1);
	for (int i = 0; i < 32; i++)
		put8(&p, (unsigned)i);
	CHECK_INT(8, dns_parse_answer(p.b, p.n, "_25._tcp.mx.example.com", 52, &a, &ttl), 0);
	CHECK_INT(9, a.n, 1);
	if (a.n == 1) {
		CHECK_INT(10, a.rr[0].u.tlsa.usage, 3);
		CHECK_INT(11, a.rr[0].u.tlsa.len, 32);
		CHECK_INT(12, a.rr[0].u.tlsa.data[31], 31);
	}
	/* the deep copy owns its own data */
	struct dns_answer c;
	dns_answer_copy(&c, &a);
	dns_answer_clear(&a);
	CHECK_INT(13, c.n, 1);
	if (c.n == 1)
		CHECK_INT(14, c.rr[0].u.tlsa.data[5], 5);
	dns_answer_clear(&c);

	/* a PTR whose label holds a dot and a space: escaped, never two labels */
	header(&p, 0x8180, 1, 0);
	question(&p, "1.0.0.127.in-addr.arpa", 12);
	put16(&p, 0xc00c);
	rr_head(&p, 12, 60, 10);
	put8(&p, 3);
	put(&p, "a.b", 3);
	put8(&p, 4);
	put(&p, "c d\n", 4);
	put8(&p, 0);
	CHECK_INT(15, dns_parse_answer(p.b, p.n, "1.0.0.127.in-addr.arpa", 12, &a, &ttl), 0);
	if (a.n == 1)
		CHECK_STR(16, a.rr[0].u.ptr, "a\\046b.c\\032d\\010");
	dns_answer_clear(&a);
}

int main(void)
{
	test_run("mx_order", test_mx_order);
	test_run("reverse_name", test_reverse_name);
	test_run("name_normalize", test_name_normalize);
	test_run("name_to_ares", test_name_to_ares);
	test_run("parse_mx_compressed", test_parse_mx_compressed);
	test_run("parse_pointer_loops", test_parse_pointer_loops);
	test_run("parse_long_name", test_parse_long_name);
	test_run("parse_cname_chain", test_parse_cname_chain);
	test_run("parse_negative", test_parse_negative);
	test_run("parse_rdata", test_parse_rdata);
	return test_done("test_dns");
}
