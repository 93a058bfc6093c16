/* src/mime/subject.c: RFC 5256 2.1 base subjects, RFC 5051 casemap keys. */
#include <stdlib.h>

#include "mime/subject.h"
#include "../test.h"

static const struct {
	const char *raw, *base;
	int reply;
} base_cases[] = {
	/* plain, empty, white space (2.1 step 1) */
	{"foo", "foo", 0},
	{"", "", 0},
	{"   ", "", 0},
	{"  foo \t  bar  ", "foo bar", 0},
	{"foo\r\n\tbar", "foo bar", 0},
	{"foo\r\n bar\r\n", "foo bar", 0},
	/* subj-leader / subj-refwd (steps 3, 5), any case */
	{"Re: foo", "foo", 1},
	{"re: Re: RE: foo", "foo", 1},
	{"Re:foo", "foo", 1},
	{"Re :foo", "foo", 1},
	{"Fwd: foo", "foo", 1},
	{"FW: foo", "foo", 1},
	{"fw : foo", "foo", 1},
	{"Re[2]: foo", "foo", 1},
	{"Re [list]: foo", "foo", 1},
	{"Re: Fwd: re[3]: foo", "foo", 1},
	{"Re:", "", 1},
	{"Ref: foo", "Ref: foo", 0},
	{"Reply: foo", "Reply: foo", 0},
	{"Fwdd: foo", "Fwdd: foo", 0},
	{"foo Re: bar", "foo Re: bar", 0},
	/* subj-trailer (step 2) */
	{"foo (fwd)", "foo", 1},
	{"foo (FWD) (fwd)  ", "foo", 1},
	{"foo(fwd)", "foo", 1},
	{"(fwd) foo", "(fwd) foo", 0},
	{"re: (fwd)", "", 1},
	/* subj-blob (step 4): removed only when text remains after it */
	{"[PATCH] foo", "foo", 0},
	{"[PATCH]foo", "foo", 0},
	{"[list] Re: foo", "foo", 1},
	{"[a] [b] Re: [c] Re: foo", "foo", 1},
	{"Re: [list] foo", "foo", 1},
	{"Re: [list] Re: foo", "foo", 1},
	{"[PATCH]", "[PATCH]", 0},
	{"[a][b]", "[b]", 0},
	{"[a] [b]  ", "[b]", 0},
	{"[]", "[]", 0},
	{"[] foo", "foo", 0},
	{"[unclosed foo", "[unclosed foo", 0},
	{"foo [bar]", "foo [bar]", 0},
	/* subj-fwd (step 6), nested with leaders and trailers */
	{"[fwd: foo]", "foo", 1},
	{"[FWD: foo]", "foo", 1},
	{"[fwd:foo]", "foo", 1},
	{"Re: [fwd: Re: x]", "x", 1},
	{"[fwd: [fwd: x]]", "x", 1},
	{"Re: [fwd: Re: x] (fwd)", "x", 1},
	{"[fwd: Re: [list] x (fwd)]", "x", 1},
	{"[x] [fwd: y]", "y", 1},
	{"[fwd: foo] bar", "bar", 0}, /* a subj-blob (step 4) */
	{"[fwd: foo", "[fwd: foo", 0},
	/* RFC 2047 words are decoded first (step 1), then the rules apply */
	{"=?UTF-8?Q?Re=3A_caf=C3=A9?=", "caf\xc3\xa9", 1},
	{"=?iso-8859-1?q?Re:_?= =?iso-8859-1?q?hello?=", "hello", 1},
	{"Re: =?utf-8?B?W2xpc3RdIGhlbGxv?=", "hello", 1},
	{"=?utf-8?q?=5Bfwd=3A_x=5D?=", "x", 1},
	{"=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab", 0},
	{"=?x-unknown?q?foo?= bar", "=?x-unknown?q?foo?= bar", 0},
};

static void test_base(void)
{
	size_t i;

	for (i = 0; i < sizeof(base_cases) / sizeof(base_cases[0]); i++) {
		bool reply = !base_cases[i].reply;
		char *b = mime_base_subject(base_cases[i].raw, strlen(base_cases[i].raw), &reply);

		CHECK_STR((int)i, b, base_cases[i].base);
		CHECK_INT((int)i, reply, base_cases[i].reply);
		free(b);
	}
}

static void test_base_edges(void)
{
	char *b;

	b = mime_base_subject(NULL, 0, NULL);
	CHECK_STR(0, b, "");
	free(b);
	/* len bounds the input: "Re: foo" of "Re: foobar" */
	b = mime_base_subject("Re: foobar", 7, NULL);
	CHECK_STR(1, b, "foo");
	free(b);
	/* 8-bit bytes are BLOBCHARs */
	b = mime_base_subject("[\xc3\xa9] x", 6, NULL);
	CHECK_STR(2, b, "x");
	free(b);
}

static const struct {
	const char *a, *b;
	int cmp; /* sign of strcmp(key(a), key(b)) */
} key_cases[] = {
	{"abc", "ABC", 0},
	{"abc", "abd", -1},
	{"a", "B", -1},
	{"caf\xc3\xa9", "CAF\xc3\x89", 0},         /* é and É */
	{"caf\xc3\xa9", "cafe\xcc\x81", 0},         /* precomposed vs decomposed */
	{"\xc7\x86", "\xc7\x84", 0},                /* dž / DŽ both title Dž */
	{"\xcf\x83", "\xcf\x82", 0},                /* σ / ς title Σ */
	{"\xef\xbc\xa1", "a", 0},                   /* fullwidth Ａ: NFKD A */
	{"\xc3\xa4", "a", 1},                       /* ä: A + U+0308 after A */
	{"", "", 0},
	{"", "a", -1},
};

static int sign(int x)
{
	return x < 0 ? -1 : x > 0;
}

static void test_casemap(void)
{
	size_t i;

	for (i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
		char *ka = mime_casemap_key(key_cases[i].a, strlen(key_cases[i].a));
		char *kb = mime_casemap_key(key_cases[i].b, strlen(key_cases[i].b));

		CHECK_INT((int)i, sign(strcmp(ka, kb)), key_cases[i].cmp);
		free(ka);
		free(kb);
	}
}

static void test_casemap_exact(void)
{
	char *k;

	k = mime_casemap_key("hello World", 11);
	CHECK_STR(0, k, "HELLO WORLD");
	free(k);
	k = mime_casemap_key("caf\xc3\xa9", 5);
	CHECK_STR(1, k, "CAFE\xcc\x81");
	free(k);
	/* invalid UTF-8 reads as U+FFFD */
	k = mime_casemap_key("a\xff", 2);
	CHECK_STR(2, k, "A\xef\xbf\xbd");
	free(k);
	k = mime_casemap_key("abc", 2);
	CHECK_STR(3, k, "AB");
	free(k);
}

int main(void)
{
	test_run("base_subject", test_base);
	test_run("base_subject_edges", test_base_edges);
	test_run("casemap_order", test_casemap);
	test_run("casemap_exact", test_casemap_exact);
	return test_done("test_subject");
}
