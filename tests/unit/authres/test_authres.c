/* Unit tests for src/policy/authres.c: the forged Authentication-Results
 * filter (RFC 8601 5) fed in every split, the From: domains (RFC 7489
 * 6.6.1) and the field's syntax (RFC 8601 2.2). */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "policy/policy_int.h"

static void collect(void *arg, const char *p, size_t n)
{
	buf_append(arg, p, n);
}

static const struct {
	const char *in, *want;
} filter_cases[] = {
	/* ours: dropped, continuation lines too */
	{"Authentication-Results: mx.b.test; spf=pass\r\nSubject: x\r\n\r\nbody\r\n",
	 "Subject: x\r\n\r\nbody\r\n"},
	{"Subject: x\r\nauthentication-results:MX.B.TEST;\r\n\tdkim=pass\r\n header.d=x\r\nTo: y\r\n\r\nb",
	 "Subject: x\r\nTo: y\r\n\r\nb"},
	/* CFWS before the id: comments, folding */
	{"Authentication-Results: (forged)\r\n (really) mx.b.test; none\r\n\r\n", "\r\n"},
	{"Authentication-Results : \"mx.b.test\"; none\r\n\r\n", "\r\n"},
	/* the scan resumed across feeds: nested comments with quoted-pairs,
	 * WSP before the colon, folds inside and between comments */
	{"Authentication-Results  \t : (a (b \\) c)\r\n d) (e)\r\n\tmx.b.test; x\r\nY: 1\r\n\r\n",
	 "Y: 1\r\n\r\n"},
	{"Authentication-Results: (a \\( b)mx.b.test; x\r\n\r\n", "\r\n"},
	{"Authentication-Results: (a) ) mx.b.test; x\r\n\r\nb", NULL},
	{"Authentication-Results: (a)\rmx.b.test; x\r\n\r\nb", NULL},
	{"Authentication-Results: (a (b) mx.b.test; x\r\nY: 1\r\n\r\nb", NULL},
	/* another id, or ours as a prefix: kept */
	{"Authentication-Results: mx.a.test; spf=pass\r\n\r\nb", NULL},
	{"Authentication-Results: mx.b.test.evil; spf=pass\r\n\r\nb", NULL},
	{"Authentication-Results: mx.b.tes; spf=pass\r\n\r\nb", NULL},
	{"Authentication-Results-X: mx.b.test; spf=pass\r\n\r\nb", NULL},
	{"ARC-Authentication-Results: i=1; mx.b.test; spf=pass\r\n\r\nb", NULL},
	/* with a version after the id (RFC 8601 2.2 authres-version) */
	{"Authentication-Results: mx.b.test 1; spf=pass\r\n\r\nb", "\r\nb"},
	/* no id before the field ends: kept */
	{"Authentication-Results:\r\nX: y\r\n\r\nb", NULL},
	/* the body is never looked at */
	{"S: x\r\n\r\nAuthentication-Results: mx.b.test; spf=pass\r\n", NULL},
	/* no header at all, no empty line */
	{"\r\nAuthentication-Results: mx.b.test; x\r\n", NULL},
	{"Authentication-Results: mx.b.test; x\r\n", ""},
	{"Subject: unterminated", NULL},
	{"Authentication-Results: mx.b.", NULL},
};

static void test_filter(void)
{
	for (size_t i = 0; i < sizeof filter_cases / sizeof filter_cases[0]; i++) {
		const char *in = filter_cases[i].in;
		const char *want = filter_cases[i].want ? filter_cases[i].want : in;
		size_t n = strlen(in);
		/* every split into two pieces, and one octet at a time */
		for (size_t cut = 0; cut <= n + 1; cut++) {
			struct ar_filter f;
			struct buf out = BUF_INIT;
			ar_filter_init(&f, "mx.b.test");
			if (cut <= n) {
				ar_filter_feed(&f, in, cut, collect, &out);
				ar_filter_feed(&f, in + cut, n - cut, collect, &out);
			} else {
				for (size_t k = 0; k < n; k++)
					ar_filter_feed(&f, in + k, 1, collect, &out);
			}
			ar_filter_end(&f, collect, &out);
			buf_appendc(&out, '\0');
			if (strcmp(out.data, want) != 0) {
				CHECK_STR((int)(i * 1000 + cut), out.data, want);
				cut = n + 2;
			}
			ar_filter_free(&f);
			buf_free(&out);
		}
	}
}

static void test_filter_long(void)
{
	/* an Authentication-Results field whose id is unknown after the
	 * hold-back (1 KiB of CFWS before ours) is removed, continuations too,
	 * whatever the split: passing it let a forged "mx.b.test" through */
	static const char *const pads[] = {"(c)", " ", "\r\n ", "(x\r\n y)"};
	for (size_t k = 0; k < sizeof pads / sizeof pads[0]; k++) {
		struct buf in = BUF_INIT;
		buf_appends(&in, "X: 1\r\nAuthentication-Results: ");
		for (int i = 0; i < 3000; i++)
			buf_appends(&in, pads[k]);
		buf_appends(&in, " mx.b.test; dkim=pass\r\n\theader.d=b.test\r\nY: 2\r\n\r\nb");
		for (size_t step = 1; step <= 4096; step *= 8) {
			struct buf out = BUF_INIT;
			struct ar_filter f;
			ar_filter_init(&f, "mx.b.test");
			for (size_t o = 0; o < in.len; o += step)
				ar_filter_feed(&f, in.data + o, in.len - o < step ? in.len - o : step,
					       collect, &out);
			ar_filter_end(&f, collect, &out);
			buf_appendc(&out, '\0');
			CHECK_STR((int)(k * 10000 + step), out.data, "X: 1\r\nY: 2\r\n\r\nb");
			CHECK(f.dropped == 1);
			ar_filter_free(&f);
			buf_free(&out);
		}
		buf_free(&in);
	}
	/* another field as long passes whole, byte-exact */
	struct buf in = BUF_INIT, out = BUF_INIT;
	buf_appends(&in, "Comments: ");
	for (int i = 0; i < 3000; i++)
		buf_appends(&in, "(c)");
	buf_appends(&in, " mx.b.test; none\r\n\r\nb");
	struct ar_filter f;
	ar_filter_init(&f, "mx.b.test");
	ar_filter_feed(&f, in.data, in.len, collect, &out);
	ar_filter_end(&f, collect, &out);
	CHECK(out.len == in.len && memcmp(out.data, in.data, in.len) == 0);
	ar_filter_free(&f);
	buf_free(&in);
	buf_free(&out);
}

static void test_from_domains(void)
{
	static const struct {
		const char *v, *want;
	} cases[] = {
		{" a@Example.COM\r\n", "example.com"},
		{" \"Name, with @ at\" <x@a.test>\r\n", "a.test"},
		{" Name (c@comment.test) <x@a.test.>", "a.test"},
		{" x@a.test, y@b.test", "a.test b.test"},
		{" x@a.test, y@A.test", "a.test"},
		{" group: x@a.test, y@b.test;", "a.test b.test"},
		{" undisclosed-recipients:;", ""},
		{" \"x@y\"@q.test", "q.test"},
		{"", ""},
		/* CFWS after the "@" (RFC 5322 4.4 obs-domain, 3.2.2): the domain is
		 * still there; skipping it made the message DMARC "none" */
		{" ceo@ bank.test", "bank.test"},
		{" <ceo@\r\n\tBank.Test>", "bank.test"},
		{" ceo@(x (y)) bank.test", "bank.test"},
		{" ceo@ (x)\r\n (y)", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *v[4];
		size_t n = authres_from_domains(cases[i].v, strlen(cases[i].v), v, 4);
		struct buf b = BUF_INIT;
		for (size_t k = 0; k < n; k++) {
			buf_printf(&b, "%s%s", k ? " " : "", v[k]);
			free(v[k]);
		}
		buf_appendc(&b, '\0');
		CHECK_STR((int)i, b.data, cases[i].want);
		buf_free(&b);
	}
}

static void test_field(void)
{
	struct buf b = BUF_INIT;
	authres_value(&b, "example.com");
	buf_appends(&b, " ");
	authres_value(&b, "user@example.com");
	buf_appends(&b, " ");
	authres_value(&b, "ab/c+d=");
	buf_appends(&b, " ");
	authres_value(&b, "a \"q\" b");
	authres_comment(&b, "bad (x) \\ y\r\n");
	buf_appendc(&b, '\0');
	CHECK_STR(0, b.data,
		  "example.com user@example.com \"ab/c+d=\" \"a \\\"q\\\" b\" (bad \\(x\\) \\\\ y)");
	buf_reset(&b);
	const char *res[] = {"spf=pass smtp.mailfrom=a.test", "dmarc=pass header.from=a.test"};
	authres_field(&b, "mx.b.test", res, 2);
	buf_appendc(&b, '\0');
	CHECK_STR(1, b.data,
		  "Authentication-Results: mx.b.test;\r\n\tspf=pass smtp.mailfrom=a.test;\r\n"
		  "\tdmarc=pass header.from=a.test\r\n");
	buf_reset(&b);
	authres_field(&b, "mx.b.test", NULL, 0);
	buf_appendc(&b, '\0');
	CHECK_STR(2, b.data, "Authentication-Results: mx.b.test; none\r\n");
	buf_free(&b);
}

int main(void)
{
	test_run("filter", test_filter);
	test_run("filter_long", test_filter_long);
	test_run("from_domains", test_from_domains);
	test_run("field", test_field);
	return test_done("test_authres");
}
