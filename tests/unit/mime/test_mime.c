/* Unit tests: addr, header. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/xmalloc.h"
#include "mime/addr.h"
#include "mime/header.h"
#include "../test.h"

#define L10 "abcdefghij"
#define L64 L10 L10 L10 L10 L10 L10 "abcd"
#define D63 L10 L10 L10 L10 L10 L10 "abc"

static void test_addr_parse_path(void)
{
	static const struct {
		const char *in;
		bool allow_null, utf8;
		int rc;
		const char *addr;
	} cases[] = {
	    /* 0 */ {"<>", true, false, 2, ""},
	    {"<>", false, false, -1, NULL},
	    {"<a@b>", false, false, 5, "a@b"},
	    {"<A@EXAMPLE.COM>", false, false, 15, "A@example.com"},
	    {"<\"john doe\"@example.com>", false, false, 24, "\"john doe\"@example.com"},
	    /* 5 */ {"<\"a\\\"b\"@c>", false, false, 10, "\"a\\\"b\"@c"},
	    {"<\"\"@c>", false, false, 6, "\"\"@c"},
	    {"<\"a@b\"@c>", false, false, 9, "\"a@b\"@c"},
	    {"<\"a\rb\"@c>", false, false, -1, NULL},
	    {"<\"a\nb\"@c>", false, false, -1, NULL},
	    /* 10 */ {"<\"ab@c>", false, false, -1, NULL},
	    {"<a..b@c>", false, false, -1, NULL},
	    {"<.a@c>", false, false, -1, NULL},
	    {"<a.@c>", false, false, -1, NULL},
	    {"<a.b.c@d>", false, false, 9, "a.b.c@d"},
	    /* 15 */ {"<@x,@y:u@d>", false, false, 11, "u@d"},
	    {"<@x:u@D.Org>", false, false, 12, "u@d.org"},
	    {"<@x,y:u@d>", false, false, -1, NULL},
	    {"<@x,@y u@d>", false, false, -1, NULL},
	    {"<@:u@d>", false, false, -1, NULL},
	    /* 20 */
	    {"<j\xc3\xb6rg@b\xc3\xbcro.de>", false, true, 16, "j\xc3\xb6rg@b\xc3\xbcro.de"},
	    {"<j\xc3\xb6rg@example.de>", false, false, -1, NULL},
	    {"<a@b\xc3\xbcro.de>", false, false, -1, NULL},
	    {"<\"j\xc3\xb6 rg\"@x>", false, true, 12, "\"j\xc3\xb6 rg\"@x"},
	    {"<\"j\xc3\xb6 rg\"@x>", false, false, -1, NULL},
	    /* 25 */ {"<\xc0\xaf@x>", false, true, -1, NULL},         /* overlong '/' */
	    {"<\xe0\x80\xaf@x>", false, true, -1, NULL},              /* overlong, 3 bytes */
	    {"<a\x80@x>", false, true, -1, NULL},                     /* lone continuation */
	    {"<a\xc3@x>", false, true, -1, NULL},                     /* truncated sequence */
	    {"<\xed\xa0\x80@x>", false, true, -1, NULL},              /* surrogate */
	    /* 30 */ {"<\xf4\x90\x80\x80@x>", false, true, -1, NULL}, /* > U+10FFFF */
	    {"<\xc2\x85@x>", false, true, -1, NULL},                  /* C1 control NEL */
	    {"<\xf0\x9f\x98\x80@x>", false, true, 8, "\xf0\x9f\x98\x80@x"},
	    {"<" L64 "@x>", false, false, 68, L64 "@x"},
	    {"<" L64 "e@x>", false, false, -1, NULL},
	    /* 35 */ {"<a@[127.0.0.1]>", false, false, 15, "a@[127.0.0.1]"},
	    {"<a@[IPv6:::1]>", false, false, 14, "a@[IPv6:::1]"},
	    {"<a@[ipv6:2001:DB8::1]>", false, false, 22, "a@[IPv6:2001:db8::1]"},
	    {"<a@[IPv6:::ffff:1.2.3.4]>", false, false, 25, "a@[IPv6:::ffff:1.2.3.4]"},
	    {"<a@[256.0.0.1]>", false, false, -1, NULL},
	    /* 40 */ {"<a@[1.2.3]>", false, false, -1, NULL},
	    {"<a@[IPv6:1.2.3.4]>", false, false, -1, NULL},
	    {"<a@[::1]>", false, false, -1, NULL},
	    {"<a@[x:foo]>", false, false, -1, NULL},
	    {"<a@[127.0.0.1>", false, false, -1, NULL},
	    /* 45 */ {"<a@-bad.com>", false, false, -1, NULL},
	    {"<a@bad-.com>", false, false, -1, NULL},
	    {"<a@b-a-d.com>", false, false, 13, "a@b-a-d.com"},
	    {"<a@x..com>", false, false, -1, NULL},
	    {"<a@x.com.>", false, false, -1, NULL},
	    /* 50 */ {"<a@.x.com>", false, false, -1, NULL},
	    {"<a@" D63 ".com>", false, false, 71, "a@" D63 ".com"},
	    {"<a@" D63 "d.com>", false, false, -1, NULL},
	    {"<a@b> SIZE=100", false, false, 5, "a@b"}, /* caller reads the rest */
	    {"<a@b>x", false, false, 5, "a@b"},
	    /* 55 */ {"a@b", false, false, -1, NULL},
	    {"<a@b", false, false, -1, NULL},
	    {"<a@b >", false, false, -1, NULL},
	    {"< a@b>", false, false, -1, NULL},
	    {"<a b@c>", false, false, -1, NULL},
	    /* 60 */ {"<a>", false, false, -1, NULL},
	    {"<@b>", false, false, -1, NULL},
	    {"<a@>", false, false, -1, NULL},
	    {"<a@b@c>", false, false, -1, NULL},
	    {"", false, false, -1, NULL},
	    /* 65 */ {"<", false, false, -1, NULL},
	    {"<a@under_score.com>", false, false, -1, NULL},
	    {"<a+tag@example.com>", false, false, 19, "a+tag@example.com"},
	    {"<!#$%&'*+-/=?^_`{|}~@x>", false, false, 23, "!#$%&'*+-/=?^_`{|}~@x"},
	    {"<a(b)@x>", false, false, -1, NULL},
	    /* 70 */ {"<\"a\\\x01\"@x>", false, false, -1, NULL},
	    {"<\"a\x7f\"@x>", false, false, -1, NULL},
	    {"<a@b\xc3\xbcro-.de>", false, true, -1, NULL},
	    {"<a@1.2.3.4>", false, false, 11, "a@1.2.3.4"},
	    {"<\"" L64 "\"@x>", false, false, -1, NULL}, /* quotes count */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *addr = NULL;
		int rc = addr_parse_path(cases[i].in, cases[i].allow_null, cases[i].utf8, &addr);

		CHECK_INT((int)i, rc, cases[i].rc);
		CHECK_STR((int)i, rc > 0 ? addr : NULL, cases[i].addr);
		if (rc > 0)
			free(addr);
	}
}

/* RFC 5321 4.5.3.1.2/3: 255-octet domain passes; the path limit is 256. */
static void test_addr_limits(void)
{
	char dom[300], *path, *addr = NULL;
	size_t n = 0;

	/* 63+1+63+1+63+1+63 = 255 */
	for (int i = 0; i < 4; i++)
		n += (size_t)snprintf(dom + n, sizeof(dom) - n, "%s%s", i ? "." : "", D63);
	CHECK_INT(0, strlen(dom), 255);
	CHECK_INT(0, addr_is_valid_domain(dom, false), true);
	path = xasprintf("<@%s:a@b>", dom);
	CHECK_INT(1, addr_parse_path(path, false, false, &addr), -1); /* 264 > 256 */
	free(path);
	path = xasprintf("<a@%s>", dom);
	CHECK_INT(2, addr_parse_path(path, false, false, &addr), -1); /* 259 > 256 */
	free(path);
	dom[251] = '\0'; /* "<a@" + 251 + ">" = 255 */
	path = xasprintf("<a@%s>", dom);
	CHECK_INT(3, addr_parse_path(path, false, false, &addr), 255);
	free(addr);
	free(path);
	strcat(dom, "x");
	CHECK_INT(4, strlen(dom), 252);
	path = xasprintf("<a@%s>", dom);
	CHECK_INT(5, addr_parse_path(path, false, false, &addr), 256);
	free(addr);
	free(path);
	path = xasprintf("<ab@%s>", dom);
	CHECK_INT(6, addr_parse_path(path, false, false, &addr), -1);
	free(path);
	strcat(dom, "xxxx"); /* 256: a domain longer than 255 */
	CHECK_INT(7, addr_is_valid_domain(dom, false), false);
}

static void test_addr_helpers(void)
{
	static const struct {
		const char *addr;
		bool utf8, valid;
		const char *domain;
	} cases[] = {
	    {"a@b", false, true, "b"},          {"A@Example.COM", false, true, "Example.COM"},
	    {"\"x@y\"@z", false, true, "z"},    {"a@[127.0.0.1]", false, true, "[127.0.0.1]"},
	    {"", false, false, NULL},           {"nodomain", false, false, NULL},
	    {"<a@b>", false, false, "b>"},      {"a@b ", false, false, "b "},
	    {"j\xc3\xb6rg@x", true, true, "x"}, {"j\xc3\xb6rg@x", false, false, "x"},
	    {"a..b@x", false, false, "x"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_INT((int)i, addr_is_valid(cases[i].addr, cases[i].utf8), cases[i].valid);
		CHECK_STR((int)i, addr_domain(cases[i].addr), cases[i].domain);
	}
	CHECK_INT(20, addr_has_8bit("plain"), false);
	CHECK_INT(21, addr_has_8bit("b\xc3\xbcro"), true);
	CHECK_INT(22, addr_has_8bit(""), false);
}

static void test_addr_domain_check(void)
{
	static const struct {
		const char *d;
		bool utf8, want;
	} cases[] = {
	    {"example.com", false, true},
	    {"EXAMPLE.com", false, true},
	    {"x", false, true},
	    {"a-b.c", false, true},
	    {"", false, false},
	    {"-a.com", false, false},
	    {"a-.com", false, false},
	    {"a..com", false, false},
	    {"a.com.", false, false},
	    {"a_b.com", false, false},
	    {"[127.0.0.1]", false, false},
	    {"b\xc3\xbcro.de", true, true},
	    {"b\xc3\xbcro.de", false, false},
	    {"b\xc3.de", true, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_INT((int)i, addr_is_valid_domain(cases[i].d, cases[i].utf8), cases[i].want);
}

static void test_header_is(void)
{
	static const struct {
		const char *line, *name;
		bool want;
	} cases[] = {
	    {"Subject: hi", "Subject", true},
	    {"subject: hi", "SUBJECT", true},
	    {"Subject : hi", "Subject", true},
	    {"Subject\t: hi", "Subject", true},
	    {"Subject:", "Subject", true},
	    {"Subjects: hi", "Subject", false},
	    {"Subject hi", "Subject", false},
	    {"Subject", "Subject", false},
	    {"Sub: x", "Subject", false},
	    {"X-Subject: x", "Subject", false},
	    {" Subject: x", "Subject", false},
	    {"Received: x", "", false},
	    {"DKIM-Signature: v=1", "dkim-signature", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *l = cases[i].line;

		CHECK_INT((int)i, header_is(l, strlen(l), cases[i].name), cases[i].want);
	}
	/* len is honoured: the colon past len does not count. */
	CHECK_INT(100, header_is("To: x", 2, "To"), false);
	CHECK_INT(101, header_is("To: x", 3, "To"), true);
}

static void test_header_date(void)
{
	static const struct {
		const char *tz;
		time_t t;
		const char *want;
	} cases[] = {
	    {"UTC0", 0, "Thu, 1 Jan 1970 00:00:00 +0000"},
	    {"UTC0", 1795417930, "Mon, 23 Nov 2026 07:12:10 +0000"},
	    {"EST5EDT,M3.2.0,M11.1.0", 1795417930, "Mon, 23 Nov 2026 02:12:10 -0500"},
	    {"EST5EDT,M3.2.0,M11.1.0", 1783000000, "Thu, 2 Jul 2026 09:46:40 -0400"},
	    {"IST-5:30", 1795417930, "Mon, 23 Nov 2026 12:42:10 +0530"},
	    {"NST3:30", 1795417930, "Mon, 23 Nov 2026 03:42:10 -0330"},
	    {"UTC0", 951782400, "Tue, 29 Feb 2000 00:00:00 +0000"},
	};
	const char *old = getenv("TZ");
	char *saved = old ? xstrdup(old) : NULL;
	char out[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("TZ", cases[i].tz, 1);
		tzset();
		header_date(cases[i].t, out, sizeof(out));
		CHECK_STR((int)i, out, cases[i].want);
	}
	header_date(0, out, 5); /* truncates, stays NUL-terminated */
	CHECK_INT(50, strlen(out), 4);
	if (saved) {
		setenv("TZ", saved, 1);
		free(saved);
	} else {
		unsetenv("TZ");
	}
	tzset();
}

int main(void)
{
	test_run("addr_parse_path", test_addr_parse_path);
	test_run("addr_limits", test_addr_limits);
	test_run("addr_helpers", test_addr_helpers);
	test_run("addr_domain_check", test_addr_domain_check);
	test_run("header_is", test_header_is);
	test_run("header_date", test_header_date);
	return test_done("test_mime");
}
