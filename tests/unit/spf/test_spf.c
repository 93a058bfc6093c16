/* SPF (RFC 7208): the pure record parser and macro expander (spf_parse.c),
 * and check_host()'s promises on the loop (spf.c): the callback never runs
 * inside spf_check, a DNS timeout is temperror, cancelling at any point is
 * safe. The whole evaluation against real DNS answers is tested end to end
 * by tests/e2e/test_spf_suite.py (the openspf suite). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../test.h"
#include "core/loop.h"
#include "dns/dns.h"
#include "policy/spf.h"
#include "policy/spf_int.h"

/* ---- records ---- */

static void test_is_spf1(void)
{
	static const struct {
		const char *txt;
		bool want;
	} cases[] = {
	    {"v=spf1", true},        {"v=spf1 -all", true}, {"V=SpF1 ~all", true},
	    {"v=spf10", false},      {"v=spf1-all", false}, {" v=spf1 -all", false},
	    {"v=spf2.0/pra", false}, {"", false},           {"v=spf", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_INT(i, spf_is_spf1(cases[i].txt, strlen(cases[i].txt)), cases[i].want);
}

static void test_record_parse(void)
{
	static const struct {
		const char *txt;
		int ok;      /* 0 or -1 */
		int n;       /* mechanisms */
		int mech0;   /* first mechanism's kind, -1: none */
		int result0; /* its qualifier's result */
		int cidr4, cidr6;
	} cases[] = {
	    {"v=spf1", 0, 0, -1, 0, 0, 0},
	    {"v=spf1 -all", 0, 1, SPF_M_ALL, SPF_FAIL, 32, 128},
	    {"v=spf1  a  -all ", 0, 2, SPF_M_A, SPF_PASS, 32, 128}, /* 4.6.1: 1*SP, 4.5 *SP */
	    {"v=spf1 ~include:_spf.example.com", 0, 1, SPF_M_INCLUDE, SPF_SOFTFAIL, 32, 128},
	    {"v=spf1 ?mx:mail.example.com/24//64", 0, 1, SPF_M_MX, SPF_NEUTRAL, 24, 64},
	    {"v=spf1 a//0 -all", 0, 2, SPF_M_A, SPF_PASS, 32, 0},
	    {"v=spf1 a/0", 0, 1, SPF_M_A, SPF_PASS, 0, 128},
	    {"v=spf1 A:Example.COM", 0, 1, SPF_M_A, SPF_PASS, 32, 128}, /* names have no case */
	    {"v=spf1 ip4:192.0.2.0/24", 0, 1, SPF_M_IP4, SPF_PASS, 24, 128},
	    {"v=spf1 ip6:2001:db8::/32 -ip6:::1.1.1.1/0", 0, 2, SPF_M_IP6, SPF_PASS, 32, 32},
	    {"v=spf1 ptr ptr:example.com exists:%{ir}.bl.example.com", 0, 3, SPF_M_PTR, SPF_PASS,
	     32, 128},
	    {"v=spf1 a:foo:bar/baz.example.com", 0, 1, SPF_M_A, SPF_PASS, 32, 128},
	    {"v=spf1 redirect=_spf.example.com", 0, 0, -1, 0, 0, 0},
	    {"v=spf1 -all exp=explain.%{d}", 0, 1, SPF_M_ALL, SPF_FAIL, 32, 128},
	    {"v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4", 0, 1, SPF_M_IP4, SPF_PASS, 32, 128},
	    {"v=spf1 default=+ -all", 0, 1, SPF_M_ALL, SPF_FAIL, 32, 128},
	    {"v=spf1 a:foo.example.xn--zckzah", 0, 1, SPF_M_A, SPF_PASS, 32, 128},
	    {"v=spf1 a:%{H}", 0, 1, SPF_M_A, SPF_PASS, 32, 128},
	    {"v=spf1 a:macro%%percent%_%_space%-url-space.example.com", 0, 1, SPF_M_A, SPF_PASS, 32,
	     128},
	    /* errors, each a permerror (RFC 7208 4.6: found anywhere) */
	    {"v=spf1 ip4:1.2.3.4 -all moo", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 -all.", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 -all:foo", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 -all/8", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ptr/0", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ptr:", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a/33", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a//129", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a/24/64", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a/024", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:museum", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:museum.", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:111.222.33.44", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:abc.123", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:example.-com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:example.com:8080", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:foo-bar", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 include", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 include:ip5.example.com/24", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 exists", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 exists:mail.example.com/24", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4:1.2.3", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4:1.2.3.4/33", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4:1.2.3.4/032", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4:1.2.3.4//32", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4:1.2.3.4:8080", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4:01.2.3.4", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip6", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip6::CAFE::BABE", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip6:::1/129", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip6:::1//33", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 redirect:example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 redirect=", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 redirect=-all", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 redirect=a.example.com redirect=a.example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 exp=", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 exp=a.example.com exp=b.example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 exp=%{r}.example.com", -1, 0, -1, 0, 0,
	     0}, /* 7.1: c, r, t only in explanations */
	    {"v=spf1 1up=foo", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 =all", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 moo.cow/far_out=man:dog/cat", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 foo=%abc", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 exists:%(ir).sbl.example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 exists:foo%.sbl.example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:%{a}.example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:%{d0}.example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:ctrl.example.com\rptr -all", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 ip4:192.0.2.5\n include:x.example.com", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 a:\xef\xbb\xbfgarbage.example.net -all", -1, 0, -1, 0, 0, 0},
	    {"v=spf1 \x96"
	     "all",
	     -1, 0, -1, 0, 0, 0},
	    {"v=spf1 mx:example.com/", -1, 0, -1, 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spf_record rec;
		char err[160] = "";
		int rc =
		    spf_record_parse(cases[i].txt, strlen(cases[i].txt), &rec, err, sizeof(err));
		CHECK_INT(i, rc, cases[i].ok);
		if (rc < 0) {
			CHECK(err[0] != '\0');
			continue;
		}
		CHECK_INT(i, rec.n, cases[i].n);
		if (cases[i].mech0 >= 0 && rec.n > 0) {
			CHECK_INT(i, rec.terms[0].mech, cases[i].mech0);
			CHECK_INT(i, rec.terms[0].result, cases[i].result0);
			CHECK_INT(i, rec.terms[0].cidr4, cases[i].cidr4);
			CHECK_INT(i, rec.terms[0].cidr6, cases[i].cidr6);
		}
		spf_record_free(&rec);
	}

	/* the parts it keeps: a term as written, its domain-spec, the modifiers */
	struct spf_record rec;
	char err[160];
	const char *t = "v=spf1 -mx:mail.%{d}/24 ip6:2001:DB8::/48 redirect=_spf.example.com "
	                "exp=why.example.com";
	CHECK_INT(100, spf_record_parse(t, strlen(t), &rec, err, sizeof(err)), 0);
	CHECK_INT(101, rec.n, 2);
	if (rec.n == 2) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%.*s", (int)rec.terms[0].len,
		         rec.text + rec.terms[0].off);
		CHECK_STR(102, buf, "-mx:mail.%{d}/24");
		snprintf(buf, sizeof(buf), "%.*s", (int)rec.terms[0].spec_len,
		         rec.text + rec.terms[0].spec);
		CHECK_STR(103, buf, "mail.%{d}");
		snprintf(buf, sizeof(buf), "%.*s", (int)rec.redirect_len, rec.text + rec.redirect);
		CHECK_STR(104, buf, "_spf.example.com");
		snprintf(buf, sizeof(buf), "%.*s", (int)rec.exp_len, rec.text + rec.exp);
		CHECK_STR(105, buf, "why.example.com");
		uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8};
		CHECK(memcmp(rec.terms[1].addr, want, 16) == 0);
		CHECK_INT(106, rec.terms[1].cidr6, 48);
	}
	spf_record_free(&rec);
	/* a NUL inside the record (TXT may hold one) is no record character */
	CHECK_INT(107, spf_record_parse("v=spf1 a:foo.example.com\0", 25, &rec, err, sizeof(err)),
	          -1);
}

static void test_domain_spec(void)
{
	static const struct {
		const char *s;
		int want;
	} cases[] = {
	    {"example.com", 0},
	    {"example.com.", 0},
	    {"%{d}", 0},
	    {"foo.%{d2}", 0},
	    {"%{ir}.%{v}._spf.%{d2}", 0},
	    {"a.xn--zckzah", 0},
	    {"a.1-2", 0},
	    {"foo.%%", 0},
	    {"", -1},
	    {"museum", -1},
	    {"museum.", -1},
	    {"a.123", -1},
	    {"a.-com", -1},
	    {"a.com-", -1},
	    {"a.com:80", -1},
	    {"%{d}x", -1},
	    {"a.b..", -1},
	    {"a.%{r}", -1},
	    {"a.com}", -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_INT(i, spf_domain_spec_check(cases[i].s, strlen(cases[i].s)), cases[i].want);
}

/* ---- macros (RFC 7208 7.4 and more) ---- */

static void test_macro_expand(void)
{
	uint8_t ip4[16] = {192, 0, 2, 3}, ip6[16];
	inet_pton(AF_INET6, "2001:db8::cb01", ip6);
	struct spf_macro_env e4 = {
	    .s = "strong-bad@email.example.com",
	    .l = "strong-bad",
	    .o = "email.example.com",
	    .d = "email.example.com",
	    .h = "mx.example.org",
	    .r = "mx.receiver.example",
	    .p = "mx.example.org",
	    .family = AF_INET,
	    .ip = ip4,
	    .t = 1700000000,
	};
	struct spf_macro_env e6 = e4;
	e6.family = AF_INET6;
	e6.ip = ip6;
	static const struct {
		const char *in;
		int v6, flags;
		const char *want; /* NULL: -1 */
	} cases[] = {
	    /* RFC 7208 7.4 */
	    {"%{s}", 0, 0, "strong-bad@email.example.com"},
	    {"%{o}", 0, 0, "email.example.com"},
	    {"%{d}", 0, 0, "email.example.com"},
	    {"%{d4}", 0, 0, "email.example.com"},
	    {"%{d3}", 0, 0, "email.example.com"},
	    {"%{d2}", 0, 0, "example.com"},
	    {"%{d1}", 0, 0, "com"},
	    {"%{dr}", 0, 0, "com.example.email"},
	    {"%{d2r}", 0, 0, "example.email"},
	    {"%{l}", 0, 0, "strong-bad"},
	    {"%{l-}", 0, 0, "strong.bad"},
	    {"%{lr}", 0, 0, "strong-bad"},
	    {"%{lr-}", 0, 0, "bad.strong"},
	    {"%{l1r-}", 0, 0, "strong"},
	    {"%{ir}.%{v}._spf.%{d2}", 0, SPF_EXPAND_DOMAIN, "3.2.0.192.in-addr._spf.example.com"},
	    {"%{lr-}.lp._spf.%{d2}", 0, SPF_EXPAND_DOMAIN, "bad.strong.lp._spf.example.com"},
	    {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", 0, SPF_EXPAND_DOMAIN,
	     "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
	    {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", 0, SPF_EXPAND_DOMAIN,
	     "3.2.0.192.in-addr.strong.lp._spf.example.com"},
	    {"%{d2}.trusted-domains.example.net", 0, SPF_EXPAND_DOMAIN,
	     "example.com.trusted-domains.example.net"},
	    {"%{ir}.%{v}._spf.%{d2}", 1, SPF_EXPAND_DOMAIN,
	     "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example."
	     "com"},
	    /* the rest of 7.1-7.3 */
	    {"%%%_%-", 0, 0, "% %20"},
	    {"%{p}.%{h}", 0, 0, "mx.example.org.mx.example.org"},
	    {"%{c} %{r} %{t}", 0, SPF_EXPAND_EXP, "192.0.2.3 mx.receiver.example 1700000000"},
	    {"%{c}", 1, SPF_EXPAND_EXP, "2001:db8::cb01"},
	    {"%{i}", 1, SPF_EXPAND_EXP,
	     "2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.C.B.0.1"},
	    {"%{v}", 1, 0, "ip6"},
	    {"%{S}", 0, 0, "strong-bad%40email.example.com"},
	    {"%{L}", 0, 0, "strong-bad"},
	    {"%{D2R}", 0, 0, "example.email"},
	    {"%{l+-}", 0, 0, "strong.bad"},
	    {"%{d9999}", 0, 0, "email.example.com"},
	    {"%{dR}", 0, 0, "com.example.email"},
	    {"%{D}", 0, SPF_EXPAND_DOMAIN, "email.example.com"},
	    {"x %{c}", 0, 0, NULL}, /* c only in explanations, SP too */
	    {"%{r}", 0, 0, NULL},
	    {"%{t}", 0, 0, NULL},
	    {"%{x}", 0, SPF_EXPAND_EXP, NULL},
	    {"%{d0}", 0, 0, NULL},
	    {"%{d", 0, 0, NULL},
	    {"%{d!}", 0, 0, NULL},
	    {"%x", 0, 0, NULL},
	    {"%", 0, 0, NULL},
	    {"a\x80", 0, SPF_EXPAND_EXP, NULL},
	    {"a\tb", 0, SPF_EXPAND_EXP, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[512], err[96];
		int rc = spf_macro_expand(cases[i].in, strlen(cases[i].in), cases[i].v6 ? &e6 : &e4,
		                          cases[i].flags, out, sizeof(out), err, sizeof(err));
		CHECK_INT(i, rc, cases[i].want ? 0 : -1);
		if (rc == 0 && cases[i].want)
			CHECK_STR(i, out, cases[i].want);
		/* syntax only (env NULL) agrees */
		CHECK_INT(i,
		          spf_macro_expand(cases[i].in, strlen(cases[i].in), NULL, cases[i].flags,
		                           NULL, 0, err, sizeof(err)),
		          cases[i].want ? 0 : -1);
	}
	/* upper-case macros are URL-escaped (7.3; the openspf upper-macro case) */
	struct spf_macro_env e = e4;
	e.l = "~jack&jill=up-a_b3.c";
	char out[128];
	CHECK_INT(200, spf_macro_expand("l=%{L}", 6, &e, SPF_EXPAND_EXP, out, sizeof(out), NULL, 0),
	          0);
	CHECK_STR(201, out, "l=~jack%26jill%3Dup-a_b3.c");
	/* "unknown" stands for a value that is missing */
	e.p = NULL;
	CHECK_INT(202, spf_macro_expand("%{p}", 4, &e, 0, out, sizeof(out), NULL, 0), 0);
	CHECK_STR(203, out, "unknown");
	/* an expansion never outgrows its buffer */
	char small[8];
	CHECK_INT(204, spf_macro_expand("%{s}", 4, &e4, 0, small, sizeof(small), NULL, 0), -1);
	CHECK_INT(205, spf_macro_expand("%{d1}", 5, &e4, 0, small, sizeof(small), NULL, 0), 0);
	CHECK_STR(206, small, "com");
	CHECK(spf_macro_uses_p("a.%{p}.b", 8));
	CHECK(spf_macro_uses_p("%{P2r}", 6));
	CHECK(!spf_macro_uses_p("%%{p}", 5));
	CHECK(!spf_macro_uses_p("%{d}.p", 6));
}

/* ---- names ---- */

static const char *want_buf(const char *sl)
{
	static char w[300];
	snprintf(w, sizeof(w), "%s.%s.%s.%s.%s.%s.%s.%s.example.com", sl, sl, sl, sl, sl, sl, sl,
	         sl);
	return w;
}

static void test_name_prepare(void)
{
	char label63[64], name[600];
	memset(label63, 'a', 63);
	label63[63] = '\0';
	static const struct {
		const char *in, *want; /* want NULL: -1 */
	} cases[] = {
	    {"example.com.", "example.com"},
	    {"example.com", "example.com"},
	    {"macro%percent  space%20url-space.example.com",
	     "macro%percent  space%20url-space.example.com"},
	    {"mail.example...com", NULL},
	    {".example.com", NULL},
	    {"", NULL},
	    {".", NULL},
	    {"a\x80.example.com", NULL},
	    {"a\tb.example.com", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(name, sizeof(name), "%s", cases[i].in);
		int rc = spf_name_prepare(name);
		CHECK_INT(i, rc, cases[i].want ? 0 : -1);
		if (rc == 0)
			CHECK_STR(i, name, cases[i].want);
	}
	snprintf(name, sizeof(name), "%s.example.com", label63);
	CHECK_INT(50, spf_name_prepare(name), 0);
	snprintf(name, sizeof(name), "a%s.example.com", label63);
	CHECK_INT(51, spf_name_prepare(name), -1);
	/* RFC 7208 7.3: over 253 octets, labels go from the left (the
	 * openspf domain-name-truncation case: 258 octets, then 251) */
	const char *sl = "somewhat.long.exp.example.com";
	snprintf(name, sizeof(name), "foobar.%s.%s.%s.%s.%s.%s.%s.%s.example.com", sl, sl, sl, sl,
	         sl, sl, sl, sl);
	CHECK_INT(52, strlen(name), 258);
	CHECK_INT(53, spf_name_prepare(name), 0);
	CHECK_STR(54, name, want_buf(sl));
	/* a long label alone cannot be cut */
	snprintf(name, sizeof(name), "a.%s%s%s%s%s", label63, label63, label63, label63, label63);
	CHECK_INT(56, spf_name_prepare(name), -1);
}

static void test_name_escape(void)
{
	char out[64];
	CHECK_INT(1, spf_name_escape("Foo:bar/baz.example.com", out, sizeof(out)), 0);
	CHECK_STR(2, out, "Foo\\058bar\\047baz.example.com");
	CHECK_INT(3, spf_name_escape("a b%.test", out, sizeof(out)), 0);
	CHECK_STR(4, out, "a\\032b\\037.test");
	CHECK_INT(5, spf_name_escape("::::::::::::::::", out, sizeof(out)), -1);
}

static void test_ip_and_cidr(void)
{
	static const struct {
		const char *ip;
		int family; /* 0: invalid */
	} ips[] = {
	    {"192.0.2.1", AF_INET},      {"2001:db8::1", AF_INET6},
	    {"::ffff:1.2.3.4", AF_INET}, {"::FFFF:1.2.3.4", AF_INET},
	    {"::1.2.3.4", AF_INET6},     {"1.2.3", 0},
	    {"example.com", 0},          {"", 0},
	};
	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		int fam = 0;
		uint8_t ip[16];
		int rc = spf_ip_parse(ips[i].ip, &fam, ip);
		CHECK_INT(i, rc, ips[i].family ? 0 : -1);
		if (rc == 0)
			CHECK_INT(i, fam, ips[i].family);
	}
	int fam;
	uint8_t ip[16], net[16];
	spf_ip_parse("::ffff:1.2.3.4", &fam, ip);
	CHECK(ip[0] == 1 && ip[3] == 4);

	static const struct {
		const char *ip, *net;
		unsigned bits;
		bool want;
	} cidrs[] = {
	    {"192.0.2.77", "192.0.2.0", 24, true},
	    {"192.0.3.77", "192.0.2.0", 24, false},
	    {"192.0.2.77", "192.0.2.64", 26, true},
	    {"192.0.2.77", "192.0.2.128", 25, false},
	    {"1.2.3.4", "9.9.9.9", 0, true},
	    {"1.2.3.4", "1.2.3.4", 32, true},
	    {"1.2.3.5", "1.2.3.4", 32, false},
	    {"1.2.3.5", "1.2.3.4", 31, true},
	    {"2001:db8::1", "2001:db8::", 32, true},
	    {"2001:db9::1", "2001:db8::", 32, false},
	    {"cafe:babe:8000::", "cafe:babe:8000::", 33, true},
	    {"cafe:babe:c000::", "cafe:babe:8000::", 33, true},
	    {"cafe:babe:4000::", "cafe:babe:8000::", 33, false},
	    {"2001:db8::1", "::", 0, true},
	    {"2001:db8::1", "2001:db8::2", 128, false},
	    {"2001:db8::1", "2001:db8::1", 128, true},
	};
	for (size_t i = 0; i < sizeof(cidrs) / sizeof(cidrs[0]); i++) {
		int f1, f2;
		spf_ip_parse(cidrs[i].ip, &f1, ip);
		spf_ip_parse(cidrs[i].net, &f2, net);
		CHECK_INT(i, f1, f2);
		CHECK_INT(i, spf_cidr_match(f1, ip, net, cidrs[i].bits), cidrs[i].want);
	}
}

/* ---- on the loop ---- */

struct got {
	struct loop *l;
	int calls;
	enum spf_result result;
	bool inside; /* set while spf_check runs */
	bool called_inside;
	char problem[200];
};

static void on_done(void *arg, const struct spf_outcome *o)
{
	struct got *g = arg;
	g->calls++;
	g->result = o->result;
	g->called_inside |= g->inside;
	snprintf(g->problem, sizeof(g->problem), "%s", o->problem ? o->problem : "");
	loop_stop(g->l);
}

static void on_stop(void *arg)
{
	loop_stop(arg);
}

/* A UDP socket that never answers: every lookup through it times out. */
static int blackhole(char *server, size_t n)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	snprintf(server, n, "127.0.0.1:%u", ntohs(sa.sin_port));
	return fd;
}

static void test_async(void)
{
	char server[64];
	int bh = blackhole(server, sizeof(server));
	CHECK(bh >= 0);
	struct loop *l = loop_new();
	struct dns_config dc = {.servers = server, .timeout_ms = 100, .tries = 1, .cache_size = 16};
	char *err = NULL;
	struct dns *dns = dns_new(l, &dc, &err);
	CHECK(dns != NULL);
	if (dns == NULL) {
		free(err);
		loop_free(&l);
		return;
	}
	struct got g = {.l = l};
	struct spf_request r = {.ip = "192.0.2.1",
	                        .domain = "example.test",
	                        .sender = "a@example.test",
	                        .helo = "mx.example.test"};

	/* a <domain> that is no domain: none, on the next loop pass */
	r.domain = "[192.0.2.1]";
	g.inside = true;
	struct spf_query *q = spf_check(dns, &r, on_done, &g);
	g.inside = false;
	CHECK(q != NULL);
	CHECK_INT(1, g.calls, 0);
	loop_run(l);
	CHECK_INT(2, g.calls, 1);
	CHECK_INT(3, g.result, SPF_NONE);
	CHECK(!g.called_inside);

	/* a single-label domain: none (RFC 7208 4.3) */
	r.domain = "localhost";
	g.calls = 0;
	q = spf_check(dns, &r, on_done, &g);
	loop_run(l);
	CHECK_INT(4, g.calls, 1);
	CHECK_INT(5, g.result, SPF_NONE);

	/* not an address: nothing starts */
	r.domain = "example.test";
	r.ip = "example.test";
	CHECK(spf_check(dns, &r, on_done, &g) == NULL);
	r.ip = "192.0.2.1";

	/* the record lookup times out: temperror */
	g.calls = 0;
	q = spf_check(dns, &r, on_done, &g);
	CHECK(q != NULL);
	loop_run(l);
	CHECK_INT(6, g.calls, 1);
	CHECK_INT(7, g.result, SPF_TEMPERROR);
	CHECK(g.problem[0] != '\0');

	/* cancelled while its lookup is in flight: no callback, nothing left
	 * (the sanitizers' leak check); then a second cancel is a no-op */
	g.calls = 0;
	q = spf_check(dns, &r, on_done, &g);
	spf_cancel(&q);
	CHECK(q == NULL);
	spf_cancel(&q);
	/* cancelled before its immediate answer was delivered */
	r.domain = "localhost";
	q = spf_check(dns, &r, on_done, &g);
	spf_cancel(&q);
	struct timer *t = loop_timer_add(l, 300, on_stop, l);
	(void)t;
	loop_run(l);
	CHECK_INT(8, g.calls, 0);

	/* several at once, one cancelled: the others still answer */
	r.domain = "example.test";
	struct spf_query *qs[3];
	g.calls = 0;
	for (int i = 0; i < 3; i++)
		qs[i] = spf_check(dns, &r, on_done, &g);
	spf_cancel(&qs[1]);
	while (g.calls < 2)
		loop_run(l);
	CHECK_INT(9, g.calls, 2);

	/* dns_free with a check pending: the check must be cancelled first
	 * (as every user does); here, cancelled */
	q = spf_check(dns, &r, on_done, &g);
	spf_cancel(&q);
	dns_free(&dns);
	loop_free(&l);
	close(bh);
}

int main(void)
{
	test_run("is_spf1", test_is_spf1);
	test_run("record_parse", test_record_parse);
	test_run("domain_spec", test_domain_spec);
	test_run("macro_expand", test_macro_expand);
	test_run("name_prepare", test_name_prepare);
	test_run("name_escape", test_name_escape);
	test_run("ip_and_cidr", test_ip_and_cidr);
	test_run("async", test_async);
	return test_done("test_spf");
}
