/* Unit tests for src/policy/dmarc.c, dmarc_query.c and psl.c: the record
 * parser (RFC 7489 6.3, 6.4, the examples of Appendix B and malformed
 * records), the public suffix list (wildcards, exceptions, a private-section
 * name, IDN rules as A-labels, single labels, trailing dots, case), the
 * alignment matrix (relaxed/strict, subdomains), p/sp/pct, and the
 * asynchronous lookup's callback rules (never inside dmarc_lookup_start, free). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "core/loop.h"
#include "dns/dns.h"
#include "policy/dmarc.h"

#define PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"

static struct psl *real_psl;

/* ---- the record parser ---- */

struct rec_case {
	const char *txt;
	int rc;
	enum dmarc_policy p, sp;
	int adkim_strict, aspf_strict, pct;
	const char *fo;
	unsigned ri;
	size_t n_rua;
	const char *rua0;
	size_t n_ruf;
	int fallback;
};

#define N DMARC_P_NONE
#define Q DMARC_P_QUARANTINE
#define R DMARC_P_REJECT
#define BAD(txt) {txt, -1, N, N, 0, 0, 0, NULL, 0, 0, NULL, 0, 0}

static const struct rec_case rec_cases[] = {
	/* 0-3: RFC 7489 Appendix B.2.1-B.2.4 */
	{"v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com", 0, N, N, 0, 0, 100, "0", 86400,
	 1, "mailto:dmarc-feedback@example.com", 0, 0},
	{"v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com; "
	 "ruf=mailto:auth-reports@thirdparty.example.net",
	 0, N, N, 0, 0, 100, "0", 86400, 1, "mailto:dmarc-feedback@example.com", 1, 0},
	{"v=DMARC1; p=quarantine; rua=mailto:dmarc-feedback@example.com; "
	 "ruf=mailto:auth-reports@thirdparty.example.net; pct=25",
	 0, Q, Q, 0, 0, 25, "0", 86400, 1, "mailto:dmarc-feedback@example.com", 1, 0},
	{"v=DMARC1; p=reject; rua=mailto:dmarc-feedback@example.com,"
	 "mailto:tld-test@thirdparty.example.net!10m",
	 0, R, R, 0, 0, 100, "0", 86400, 2, "mailto:dmarc-feedback@example.com", 0, 0},
	/* 4-9: every tag */
	{"v=DMARC1; p=reject; sp=none; adkim=s; aspf=s; pct=0; fo=1:d; rf=afrf; ri=3600", 0, R, N, 1,
	 1, 0, "1:d", 3600, 0, NULL, 0, 0},
	{"v=DMARC1;p=quarantine;adkim=r;aspf=r", 0, Q, Q, 0, 0, 100, "0", 86400, 0, NULL, 0, 0},
	{" v = DMARC1 ; p = reject ; sp = quarantine ; ", 0, R, Q, 0, 0, 100, "0", 86400, 0, NULL,
	 0, 0},
	{"v=DMARC1;\tp=none;;pct=050", 0, N, N, 0, 0, 50, "0", 86400, 0, NULL, 0, 0},
	{"V=DMARC1; P=Reject; ADKIM=S", 0, R, R, 1, 0, 100, "0", 86400, 0, NULL, 0, 0},
	{"v=DMARC1; p=none; fo=0 : 1 : d : s : 1", 0, N, N, 0, 0, 100, "0:1:d:s", 86400, 0, NULL, 0,
	 0},
	/* 10-13: unknown tags are ignored (RFC 7489 6.3) */
	{"v=DMARC1; p=none; foo=bar; x_y=", 0, N, N, 0, 0, 100, "0", 86400, 0, NULL, 0, 0},
	{"v=DMARC1; p=reject; ri=99999999999999999999", 0, R, R, 0, 0, 100, "0", UINT_MAX, 0, NULL,
	 0, 0},
	{"v=DMARC1; p=none; rua=https://example.com/r, MAILTO:a@example.com!50M, mailto:b@x.example",
	 0, N, N, 0, 0, 100, "0", 86400, 2, "mailto:a@example.com!50M", 0, 0},
	{"v=DMARC1; p=none; rua=mailto:a@x!, mailto:b@x!5q, mailto:, mailto:c@x", 0, N, N, 0, 0, 100,
	 "0", 86400, 1, "mailto:c@x", 0, 0},
	/* 14-17: RFC 7489 6.6.3 step 6.1: no valid p=, a valid rua: p=none */
	{"v=DMARC1; rua=mailto:r@example.com", 0, N, N, 0, 0, 100, "0", 86400, 1,
	 "mailto:r@example.com", 0, 1},
	{"v=DMARC1; p=bogus; rua=mailto:r@example.com", 0, N, N, 0, 0, 100, "0", 86400, 1,
	 "mailto:r@example.com", 0, 1},
	{"v=DMARC1; p=reject; sp=bogus; rua=mailto:r@example.com", 0, N, N, 0, 0, 100, "0", 86400,
	 1, "mailto:r@example.com", 0, 1},
	{"v=DMARC1; p=bogus; rua=https://example.com/r", 0, N, N, 0, 0, 100, "0", 86400, 0, NULL,
	 0, 1},
	/* 18: a malformed URI is dropped, not the record */
	{"v=DMARC1; p=none; rua=bad uri", 0, N, N, 0, 0, 100, "0", 86400, 0, NULL, 0, 0},
	/* 19-: invalid */
	BAD("v=DMARC1"),
	BAD("v=DMARC1; p=bogus"),
	BAD("v=DMARC1; p=reject; sp=bogus"),
	BAD("v=dmarc1; p=none"), /* the version is exact (%x-coded in RFC 7489 6.4) */
	BAD("v=DMARC2; p=none"),
	BAD("v=DMARC1p=none"),
	BAD("v=DMARC10; p=none"),
	BAD("p=none; v=DMARC1"), /* v= first */
	BAD(""),
	BAD("v=spf1 -all"),
	BAD("v=DMARC1; p=none; pct=101"),
	BAD("v=DMARC1; p=none; pct=abc"),
	BAD("v=DMARC1; p=none; pct="),
	BAD("v=DMARC1; p=none; pct=1000"),
	BAD("v=DMARC1; p=none; adkim=x"),
	BAD("v=DMARC1; p=none; aspf="),
	BAD("v=DMARC1; p=none; p=reject"), /* RFC 6376 3.2: a repeated tag */
	BAD("v=DMARC1; p=none; v=DMARC1"),
	BAD("v=DMARC1; p=none; garbage"),
	BAD("v=DMARC1; p=none; =x"),
	BAD("v=DMARC1; p=none; fo=2"),
	BAD("v=DMARC1; p=none; fo="),
	BAD("v=DMARC1; p=none; fo=0::1"),
	BAD("v=DMARC1; p=none; ri=-1"),
	BAD("v=DMARC1; p=none; rf="),
	BAD("v=DMARC1; p=reject extra"),
};

static void test_record_parse(void)
{
	for (size_t i = 0; i < sizeof(rec_cases) / sizeof(rec_cases[0]); i++) {
		const struct rec_case *c = &rec_cases[i];
		struct dmarc_record r;
		int rc = dmarc_record_parse(c->txt, strlen(c->txt), &r);
		CHECK_INT(i, rc, c->rc);
		if (rc == 0 && c->rc == 0) {
			CHECK_INT(i, r.p, c->p);
			CHECK_INT(i, r.sp, c->sp);
			CHECK_INT(i, r.adkim_strict, c->adkim_strict);
			CHECK_INT(i, r.aspf_strict, c->aspf_strict);
			CHECK_INT(i, r.pct, c->pct);
			CHECK_STR(i, r.fo, c->fo);
			CHECK_INT(i, r.ri, c->ri);
			CHECK_INT(i, r.n_rua, c->n_rua);
			CHECK_STR(i, r.n_rua ? r.rua[0] : NULL, c->rua0);
			CHECK_INT(i, r.n_ruf, c->n_ruf);
			CHECK_INT(i, r.p_fallback, c->fallback);
		}
		if (rc < 0)
			CHECK_INT(i, r.n_rua + r.n_ruf, 0);
		dmarc_record_free(&r);
	}
}

static void test_record_details(void)
{
	struct dmarc_record r;
	char txt[1024];
	const char *err = NULL;

	/* at most DMARC_MAX_URIS kept */
	strcpy(txt, "v=DMARC1; p=none; rua=");
	for (int i = 0; i < 12; i++)
		sprintf(txt + strlen(txt), "%smailto:r%d@example.com", i ? "," : "", i);
	CHECK_INT(0, dmarc_record_parse(txt, strlen(txt), &r), 0);
	CHECK_INT(0, r.n_rua, DMARC_MAX_URIS);
	CHECK_STR(0, r.rua[7], "mailto:r7@example.com");
	dmarc_record_free(&r);

	/* the length is the record's, not strlen: a NUL inside is a bad value */
	static const char nul[] = "v=DMARC1; p=no\0ne";
	CHECK_INT(1, dmarc_record_parse(nul, sizeof(nul) - 1, &r), -1);
	static const char nulfo[] = "v=DMARC1; p=none; fo=\0";
	CHECK_INT(2, dmarc_record_parse(nulfo, sizeof(nulfo) - 1, &r), -1);
	/* only the first len octets count */
	CHECK_INT(3, dmarc_record_parse("v=DMARC1; p=none; pct=5x", 23, &r), 0);
	CHECK_INT(3, r.pct, 5);

	/* rf kept; has_sp; sp = p when absent */
	CHECK_INT(4, dmarc_record_parse_err("v=DMARC1; p=quarantine; rf=AFRF:iodef", 37, &r, &err),
		  0);
	CHECK_STR(4, r.rf, "afrf:iodef");
	CHECK_INT(4, r.has_sp, 0);
	CHECK_INT(4, r.sp, DMARC_P_QUARANTINE);

	/* the reason */
	CHECK_INT(5, dmarc_record_parse_err("v=DMARC1; p=x", 13, &r, &err), -1);
	CHECK_STR(5, err, "p= is not none, quarantine or reject");
	CHECK_INT(6, dmarc_record_parse_err("v=DMARC1", 8, &r, &err), -1);
	CHECK_STR(6, err, "no p= tag");

	/* the discard filter of RFC 7489 6.6.3 step 2 */
	static const struct {
		const char *txt;
		bool is;
	} f[] = {{"v=DMARC1; p=none", true}, {"v=DMARC1", true},	 {"v=DMARC1 ;", true},
		 {"v=DMARC1; p=bogus", true}, {"v=spf1 -all", false},	 {"v=DMARC1x", false},
		 {"x v=DMARC1", false},	      {"google-site-verif", false}, {"", false}};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		CHECK_INT(10 + i, dmarc_record_is_dmarc(f[i].txt, strlen(f[i].txt)), f[i].is);

	CHECK_STR(20, dmarc_result_name(DMARC_PERMERROR), "permerror");
	CHECK_STR(21, dmarc_policy_name(DMARC_P_QUARANTINE), "quarantine");
}

/* ---- the public suffix list ---- */

static void test_psl_real(void)
{
	static const struct {
		const char *in, *org;
	} c[] = {
		{"example.com", "example.com"},
		{"mail.example.com", "example.com"},
		{"example.co.uk", "example.co.uk"},
		{"a.b.example.co.uk", "example.co.uk"},
		{"co.uk", "co.uk"}, /* itself a public suffix: its own organization */
		{"uk", "uk"},
		/* *.ck and !www.ck */
		{"foo.bar.ck", "foo.bar.ck"},
		{"a.foo.bar.ck", "foo.bar.ck"},
		{"bar.ck", "bar.ck"},
		{"www.ck", "www.ck"},
		{"a.www.ck", "www.ck"},
		{"a.b.www.ck", "www.ck"},
		/* *.kawasaki.jp and !city.kawasaki.jp */
		{"x.y.kawasaki.jp", "x.y.kawasaki.jp"},
		{"www.city.kawasaki.jp", "city.kawasaki.jp"},
		/* the PRIVATE section is used */
		{"alice.github.io", "alice.github.io"},
		{"www.alice.github.io", "alice.github.io"},
		{"github.io", "github.io"},
		/* single labels, an unknown top-level domain (the "*" rule) */
		{"localhost", "localhost"},
		{"com", "com"},
		{"a.b.example.zzunknown", "example.zzunknown"},
		/* trailing dot, case */
		{"mail.Example.COM.", "example.com"},
		{"MAIL.EXAMPLE.CO.UK", "example.co.uk"},
		/* IDN rules, as given and as A-labels (RFC 3492) */
		{"a.b.\xe5\x85\xac\xe5\x8f\xb8.cn", "b.\xe5\x85\xac\xe5\x8f\xb8.cn"},
		{"a.b.xn--55qx5d.cn", "b.xn--55qx5d.cn"},
		{"x.y.xn--aroport-bya.ci", "y.xn--aroport-bya.ci"},
		{"x.y.a\xc3\xa9roport.ci", "y.a\xc3\xa9roport.ci"},
	};
	char out[256];
	CHECK(real_psl != NULL);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int rc = psl_org_domain(real_psl, c[i].in, out, sizeof(out));
		CHECK_INT(i, rc, 0);
		CHECK_STR(i, rc == 0 ? out : NULL, c[i].org);
	}
}

static void test_psl_bad(void)
{
	char out[256], long_label[80], long_name[300];
	memset(long_label, 'a', 64);
	strcpy(long_label + 64, ".com");
	memset(long_name, 0, sizeof(long_name));
	for (int i = 0; i < 127; i++)
		strcat(long_name, "a.");
	strcat(long_name, "com"); /* 257 octets */
	const char *bad[] = {"", ".", "a..b", ".example.com", "a b.com", "exa\tmple.com",
			     "example.com..", long_label, long_name};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(i, psl_org_domain(real_psl, bad[i], out, sizeof(out)), -1);
	/* out too small */
	CHECK_INT(20, psl_org_domain(real_psl, "a.example.com", out, 11), -1);
	CHECK_INT(21, psl_org_domain(real_psl, "a.example.com", out, 12), 0);
	CHECK_STR(21, out, "example.com");
	/* 63-octet labels and 253 octets are fine */
	memset(long_label, 'b', 63);
	strcpy(long_label + 63, ".com");
	CHECK_INT(22, psl_org_domain(real_psl, long_label, out, sizeof(out)), 0);
	CHECK_STR(22, out, long_label);
	long_name[253] = '\0'; /* "a.a.....a.a" minus the end: 253 octets */
	long_name[252] = 'z';
	CHECK_INT(23, psl_org_domain(real_psl, long_name, out, sizeof(out)), 0);
	CHECK_STR(23, out, "a.z");
}

static void test_psl_alabels(void)
{
	static const struct {
		const char *in, *out;
	} c[] = {
		{"Mail.Example.COM.", "mail.example.com"},
		{"b\xc3\xbc" "cher.example", "xn--bcher-kva.example"},
		{"www.\xe5\x85\xac\xe5\x8f\xb8.cn", "www.xn--55qx5d.cn"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"a..b", NULL},
		{"", NULL},
		{"bad\xff.example", NULL}, /* not UTF-8 */
	};
	char out[256];
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int rc = psl_alabels(c[i].in, out, sizeof(out));
		CHECK_INT(i, rc, c[i].out ? 0 : -1);
		CHECK_STR(i, rc == 0 ? out : NULL, c[i].out);
	}
	CHECK_INT(10, psl_alabels("b\xc3\xbc" "cher.example", out, 21), -1);
	CHECK_INT(11, psl_alabels("b\xc3\xbc" "cher.example", out, 22), 0);
}

static void test_psl_none(void)
{
	char out[256];
	char *err = NULL;
	/* no list: the last two labels */
	CHECK_INT(0, psl_org_domain(NULL, "a.b.example.co.uk", out, sizeof(out)), 0);
	CHECK_STR(0, out, "co.uk");
	CHECK_INT(1, psl_org_domain(NULL, "Localhost.", out, sizeof(out)), 0);
	CHECK_STR(1, out, "localhost");
	CHECK(psl_load("/nonexistent/psl.dat", &err) == NULL);
	CHECK(err != NULL && strstr(err, "/nonexistent/psl.dat") != NULL);
	free(err);
}

static void test_psl_file(void)
{
	/* The file format: comments, blank lines, text after white space,
	 * CRLF, upper case, bad lines skipped. */
	char path[] = "/tmp/test_dmarc_psl_XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	fputs("// comment\n\ncom\r\nCO.UK extra text\n*.wild.test\n!ok.wild.test\n"
	      "a..bad\nnet // trailing comment\n*\n",
	      f);
	fclose(f);
	char *err = NULL;
	struct psl *p = psl_load(path, &err);
	unlink(path);
	CHECK(p != NULL);
	static const struct {
		const char *in, *org;
	} c[] = {
		{"a.b.example.com", "example.com"},
		{"a.example.co.uk", "example.co.uk"},
		{"a.b.c.wild.test", "b.c.wild.test"},
		{"a.ok.wild.test", "ok.wild.test"},
		{"a.b.example.net", "example.net"},
		/* not in this list: the top label is the suffix */
		{"a.b.example.org", "example.org"},
		{"a.b.co.jp", "co.jp"},
	};
	char out[256];
	for (size_t i = 0; p && i < sizeof(c) / sizeof(c[0]); i++) {
		CHECK_INT(i, psl_org_domain(p, c[i].in, out, sizeof(out)), 0);
		CHECK_STR(i, out, c[i].org);
	}
	psl_free(&p);
	CHECK(p == NULL);

	/* no rules at all: NULL */
	char path2[] = "/tmp/test_dmarc_psl_XXXXXX";
	fd = mkstemp(path2);
	f = fdopen(fd, "w");
	fputs("// nothing\n", f);
	fclose(f);
	p = psl_load(path2, &err);
	unlink(path2);
	CHECK(p == NULL);
	CHECK(err != NULL);
	free(err);
}

/* ---- alignment (RFC 7489 3.1) ---- */

struct align_case {
	const char *from;
	enum spf_result spf;
	const char *spf_domain;
	const char *dkim; /* "d=result,d=result" */
	const char *record;
	int spf_aligned, dkim_aligned;
	enum dmarc_result result;
};

static const struct align_case align_cases[] = {
	/* 0-5: SPF relaxed / strict */
	{"example.com", SPF_PASS, "example.com", "", "v=DMARC1; p=reject", 1, 0, DMARC_PASS},
	{"example.com", SPF_PASS, "bounce.example.com", "", "v=DMARC1; p=reject", 1, 0, DMARC_PASS},
	{"example.com", SPF_PASS, "bounce.example.com", "", "v=DMARC1; p=reject; aspf=s", 0, 0,
	 DMARC_FAIL},
	{"news.example.com", SPF_PASS, "bounce.example.com", "", "v=DMARC1; p=reject", 1, 0,
	 DMARC_PASS},
	{"example.com", SPF_PASS, "EXAMPLE.COM.", "", "v=DMARC1; p=reject; aspf=s", 1, 0,
	 DMARC_PASS},
	{"example.com", SPF_PASS, "example.net", "", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	/* 6-9: SPF must pass */
	{"example.com", SPF_FAIL, "example.com", "", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	{"example.com", SPF_SOFTFAIL, "example.com", "", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	{"example.com", SPF_NEUTRAL, "example.com", "", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	{"example.com", SPF_PASS, NULL, "", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	/* 10-11: the public suffix decides: two registrations under co.uk, two
	 * github.io users */
	{"a.example.co.uk", SPF_PASS, "b.example.co.uk", "", "v=DMARC1; p=reject", 1, 0,
	 DMARC_PASS},
	{"example.co.uk", SPF_PASS, "other.co.uk", "", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	{"alice.github.io", SPF_PASS, "bob.github.io", "", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	/* 13-: DKIM */
	{"example.com", SPF_NONE, NULL, "example.com=pass", "v=DMARC1; p=reject", 0, 1, DMARC_PASS},
	{"sub.example.com", SPF_NONE, NULL, "example.com=pass", "v=DMARC1; p=reject", 0, 1,
	 DMARC_PASS},
	{"sub.example.com", SPF_NONE, NULL, "example.com=pass", "v=DMARC1; p=reject; adkim=s", 0, 0,
	 DMARC_FAIL},
	{"example.com", SPF_NONE, NULL, "Example.COM=pass", "v=DMARC1; p=reject; adkim=s", 0, 1,
	 DMARC_PASS},
	{"example.com", SPF_NONE, NULL, "example.com=fail,other.example=pass", "v=DMARC1; p=reject",
	 0, 0, DMARC_FAIL},
	{"example.com", SPF_NONE, NULL, "example.com=fail,mail.example.com=pass",
	 "v=DMARC1; p=reject", 0, 1, DMARC_PASS},
	{"example.com", SPF_NONE, NULL, "example.com=policy,example.com=neutral,example.com=temperror",
	 "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	{"example.com", SPF_NONE, NULL, "=pass", "v=DMARC1; p=reject", 0, 0, DMARC_FAIL},
	/* RFC 8616 6: internationalized names align as A-labels */
	{"b\xc3\xbc" "cher.example", SPF_PASS, "mail.xn--bcher-kva.example",
	 "xn--bcher-kva.example=pass", "v=DMARC1; p=reject; adkim=s", 1, 1, DMARC_PASS},
	{"xn--bcher-kva.example", SPF_PASS, "b\xc3\xbc" "cher.example", "", "v=DMARC1; p=reject; aspf=s", 1, 0,
	 DMARC_PASS},
	/* both */
	{"example.com", SPF_PASS, "example.com", "example.com=pass", "v=DMARC1; p=reject", 1, 1,
	 DMARC_PASS},
	/* no record: none, alignment still reported (relaxed) */
	{"example.com", SPF_PASS, "bounce.example.com", "example.com=pass", NULL, 1, 1, DMARC_NONE},
};

static enum dkim_result dkim_parse_result(const char *s, size_t n)
{
	static const char *const names[] = {"none",    "pass",	   "fail",     "policy",
					    "neutral", "temperror", "permerror"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncmp(s, names[i], n) == 0)
			return (enum dkim_result)i;
	return DKIM_NONE;
}

/* "d=result,d=result" into r (domains heap-allocated; "" domain = NULL). */
static void dkim_fill(const char *spec, struct dkim_results *r, struct dkim_sig_result *v,
		      size_t max)
{
	r->n = 0;
	r->v = v;
	while (*spec && r->n < max) {
		const char *end = strchr(spec, ',');
		size_t len = end ? (size_t)(end - spec) : strlen(spec);
		const char *eq = memchr(spec, '=', len);
		memset(&v[r->n], 0, sizeof(v[r->n]));
		v[r->n].domain = eq > spec ? strndup(spec, (size_t)(eq - spec)) : NULL;
		v[r->n].result = dkim_parse_result(eq + 1, len - (size_t)(eq + 1 - spec));
		r->n++;
		spec += len + (end != NULL);
	}
}

static void dkim_clear(struct dkim_results *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].domain);
	r->n = 0;
}

static void test_alignment(void)
{
	for (size_t i = 0; i < sizeof(align_cases) / sizeof(align_cases[0]); i++) {
		const struct align_case *c = &align_cases[i];
		struct dkim_sig_result v[4];
		struct dkim_results dk;
		struct dmarc_record rec;
		struct dmarc_outcome o;
		dkim_fill(c->dkim, &dk, v, 4);
		struct dmarc_input in = {c->from, c->spf, c->spf_domain, &dk};
		if (c->record)
			CHECK_INT(i, dmarc_record_parse(c->record, strlen(c->record), &rec), 0);
		dmarc_evaluate(real_psl, &in, c->record ? &rec : NULL, c->from, 0, &o);
		CHECK_INT(i, o.spf_aligned, c->spf_aligned);
		CHECK_INT(i, o.dkim_aligned, c->dkim_aligned);
		CHECK_INT(i, o.result, c->result);
		CHECK(o.record == (c->record ? &rec : NULL));
		if (c->result != DMARC_FAIL)
			CHECK_INT(i, o.disposition, DMARC_P_NONE);
		else
			CHECK_INT(i, o.disposition, DMARC_P_REJECT);
		if (c->record)
			dmarc_record_free(&rec);
		dkim_clear(&dk);
	}
}

/* ---- policy: p, sp, pct (RFC 7489 6.3, 6.6.4) ---- */

struct policy_case {
	const char *record, *policy_domain, *from;
	int rnd;
	enum dmarc_policy policy, disposition;
	int sampled_out;
};

static const struct policy_case policy_cases[] = {
	/* 0-2 */
	{"v=DMARC1; p=reject", "example.com", "example.com", 0, R, R, 0},
	{"v=DMARC1; p=quarantine", "example.com", "example.com", 99, Q, Q, 0},
	{"v=DMARC1; p=none", "example.com", "example.com", 0, N, N, 0},
	/* 3-8: pct */
	{"v=DMARC1; p=reject; pct=0", "example.com", "example.com", 0, R, Q, 1},
	{"v=DMARC1; p=quarantine; pct=0", "example.com", "example.com", 0, Q, N, 1},
	{"v=DMARC1; p=none; pct=0", "example.com", "example.com", 0, N, N, 0},
	{"v=DMARC1; p=reject; pct=50", "example.com", "example.com", 49, R, R, 0},
	{"v=DMARC1; p=reject; pct=50", "example.com", "example.com", 50, R, Q, 1},
	{"v=DMARC1; p=reject; pct=100", "example.com", "example.com", 99, R, R, 0},
	/* 9-14: sp applies to a From domain below the policy domain */
	{"v=DMARC1; p=reject; sp=quarantine", "example.com", "sub.example.com", 0, Q, Q, 0},
	{"v=DMARC1; p=reject; sp=none", "example.com", "a.b.example.com", 0, N, N, 0},
	{"v=DMARC1; p=reject; sp=quarantine", "example.com", "example.com", 0, R, R, 0},
	{"v=DMARC1; p=quarantine", "example.com", "sub.example.com", 0, Q, Q, 0},
	{"v=DMARC1; p=reject; sp=none", "sub.example.com", "sub.example.com", 0, R, R, 0},
	{"v=DMARC1; p=none; sp=reject; pct=0", "example.com", "sub.example.com", 0, R, Q, 1},
	/* 15: the trailing dot and case of the policy domain do not make a subdomain */
	{"v=DMARC1; p=reject; sp=none", "Example.com.", "example.com", 0, R, R, 0},
};

static void test_policy(void)
{
	for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
		const struct policy_case *c = &policy_cases[i];
		struct dkim_results dk = {0, NULL};
		struct dmarc_record rec;
		struct dmarc_outcome o;
		struct dmarc_input in = {c->from, SPF_FAIL, c->from, &dk};
		CHECK_INT(i, dmarc_record_parse(c->record, strlen(c->record), &rec), 0);
		dmarc_evaluate(real_psl, &in, &rec, c->policy_domain, c->rnd, &o);
		CHECK_INT(i, o.result, DMARC_FAIL);
		CHECK_INT(i, o.policy, c->policy);
		CHECK_INT(i, o.disposition, c->disposition);
		CHECK_INT(i, o.sampled_out, c->sampled_out);
		CHECK_STR(i, o.policy_domain, c->policy_domain);
		/* a pass is never acted on, whatever the policy */
		in.spf = SPF_PASS;
		dmarc_evaluate(real_psl, &in, &rec, c->policy_domain, c->rnd, &o);
		CHECK_INT(100 + i, o.result, DMARC_PASS);
		CHECK_INT(100 + i, o.policy, c->policy);
		CHECK_INT(100 + i, o.disposition, DMARC_P_NONE);
		CHECK_INT(100 + i, o.sampled_out, 0);
		dmarc_record_free(&rec);
	}
	/* no From domain: none */
	struct dmarc_outcome o;
	struct dmarc_input in = {NULL, SPF_PASS, "example.com", NULL};
	dmarc_evaluate(real_psl, &in, NULL, NULL, 0, &o);
	CHECK_INT(200, o.result, DMARC_NONE);
	CHECK_INT(200, o.spf_aligned, 0);
}

/* ---- the lookup: callbacks and cancel ---- */

struct async_ctx {
	struct loop *l;
	int calls;
	int in_call; /* set while dmarc_lookup_start runs */
	int called_inside;
	enum dmarc_result result;
	char problem[128];
	struct dmarc_lookup *dl;
};

static void async_cb(void *arg)
{
	struct async_ctx *c = arg;
	struct dmarc_input in = {NULL, SPF_PASS, "example.com", NULL};
	struct dmarc_outcome o;
	c->calls++;
	if (c->in_call)
		c->called_inside = 1;
	CHECK(dmarc_lookup_done(c->dl));
	dmarc_lookup_evaluate(c->dl, &in, 0, &o);
	c->result = o.result;
	snprintf(c->problem, sizeof(c->problem), "%s", o.problem ? o.problem : "");
	dmarc_lookup_free(&c->dl); /* allowed inside cb */
	loop_stop(c->l);
}

static void stop_loop(void *arg)
{
	loop_stop(arg);
}

static void test_async(void)
{
	struct async_ctx c = {.l = loop_new()};
	char *err = NULL;
	/* A resolver on a port where nothing answers (the discard port, closed
	 * on loopback): refused, a temporary failure. */
	struct dns_config dc = {"127.0.0.1:9", 200, 1, 16};
	struct dns *dns = dns_new(c.l, &dc, &err);
	CHECK(dns != NULL);

	/* a From domain that is not a domain name: none, but not inside */
	c.in_call = 1;
	c.dl = dmarc_lookup_start(dns, real_psl, "bad..name", async_cb, &c);
	c.in_call = 0;
	CHECK(c.dl != NULL);
	CHECK(!dmarc_lookup_done(c.dl));
	CHECK_INT(0, c.calls, 0);
	loop_run(c.l);
	CHECK_INT(0, c.calls, 1);
	CHECK_INT(0, c.called_inside, 0);
	CHECK_INT(0, c.result, DMARC_NONE);
	CHECK_STR(0, c.problem, "the From domain is not a domain name");
	CHECK(c.dl == NULL);

	/* no answer: temperror */
	c.calls = 0;
	c.dl = dmarc_lookup_start(dns, real_psl, "example.com", async_cb, &c);
	struct timer *t = loop_timer_add(c.l, 5000, stop_loop, c.l);
	loop_run(c.l);
	loop_timer_cancel(c.l, &t);
	CHECK_INT(1, c.calls, 1);
	CHECK_INT(1, c.result, DMARC_TEMPERROR);
	CHECK_STR(1, c.problem, "DNS lookup failed temporarily");

	/* not done at the end-of-data bound: temperror */
	struct dmarc_lookup *l2 = dmarc_lookup_start(dns, real_psl, "example.com", async_cb, &c);
	struct dmarc_input in = {NULL, SPF_PASS, "example.com", NULL};
	struct dmarc_outcome o;
	dmarc_lookup_evaluate(l2, &in, 0, &o);
	CHECK_INT(2, o.result, DMARC_TEMPERROR);
	CHECK_STR(2, o.problem, "DNS lookup did not finish in time");

	/* freed at once and while waiting: the callback never runs */
	c.calls = 0;
	dmarc_lookup_free(&l2);
	CHECK(l2 == NULL);
	dmarc_lookup_free(&l2); /* NULL: nothing */
	l2 = dmarc_lookup_start(dns, real_psl, "bad..name", async_cb, &c);
	dmarc_lookup_free(&l2);
	t = loop_timer_add(c.l, 400, stop_loop, c.l);
	loop_run(c.l);
	CHECK_INT(3, c.calls, 0);

	dns_free(&dns);
	loop_free(&c.l);
}

int main(void)
{
	char *err = NULL;
	real_psl = psl_load(PSL_FILE, &err);
	if (real_psl == NULL) {
		printf("cannot load %s: %s\n", PSL_FILE, err);
		free(err);
	}
	test_run("record_parse", test_record_parse);
	test_run("record_details", test_record_details);
	test_run("psl_real", test_psl_real);
	test_run("psl_bad", test_psl_bad);
	test_run("psl_alabels", test_psl_alabels);
	test_run("psl_none", test_psl_none);
	test_run("psl_file", test_psl_file);
	test_run("alignment", test_alignment);
	test_run("policy", test_policy);
	test_run("async", test_async);
	psl_free(&real_psl);
	return test_done("test_dmarc");
}
