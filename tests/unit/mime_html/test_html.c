/* mime_html_* (src/mime/html.c): HTML reduced to the text a reader sees.
 * Table-driven (an input, the text it gives), each case also fed in two
 * chunks split at every offset and one octet at a time (a streaming parser
 * gives the same text for every split), and the limits: a tag, a comment
 * or a reference of a megabyte costs no memory but the text it gives. */
#include <stdlib.h>
#include <string.h>

#include "mime/html.h"
#include "../test.h"

static const struct {
	const char *in, *want;
} cases[] = {
    /* 0: references */
    {"caf&eacute; na&iuml;ve", "café naïve"},
    {"&lt;b&gt; &amp; &quot;q&quot; &apos;x", "<b> & \"q\" 'x"},
    {"&#233;&#xE9;&#XE9;&#0233;", "éééé"},
    {"it&#146;s &#128;5", "it\xe2\x80\x99s \xe2\x82\xac"
                          "5"}, /* windows-1252 */
    {"&#0;|&#xD800;|&#x110000;|&#99999999999999;", "\xef\xbf\xbd|\xef\xbf\xbd|\xef\xbf\xbd|"
                                                   "\xef\xbf\xbd"},
    /* 5: without ';': Latin-1 names and numbers only */
    {"&eacute &copy2 &euro &euro; &#65x", "é &copy2 &euro € Ax"},
    {"&unknown; & &; &#; &#x; a&b=c", "&unknown; & &; &#; &#x; a&b=c"},
    {"a&nbsp;b a &nbsp; b x&shy;y z&#x200B;w", "a b a b xy zw"},
    {"&alpha;&Omega;&hearts;&thetasym;", "αΩ♥ϑ"},
    /* 9: tags: inline ones glue, block ones break lines, cells space */
    {"<b>im</b>portant <span class=\"x\">un</span><i>split</i>", "important unsplit"},
    {"a<p>b</p>c<br>d<br/>e<DIV>f</div>", "a\nb\nc\nd\ne\nf"},
    {"<table><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>", "a b\nc"},
    {"a<img src=\"x.png\" alt=\"ALTTEXT\">b", "a b"},
    {"<a href=\"http://x.example/?a=1&b=2\" title='x>y' data=z>link</a>", "link"},
    {"<h1>T</h1><ul><li>one<li>two</ul>", "T\none\ntwo"},
    /* 15: comments, declarations, processing instructions */
    {"a <!-- x <p>y</p> --> b", "a b"},
    {"a<!---->b<!-->c<!--->d<!-- x --!>e<!-- a->b -->f", "abcdef"},
    {"a<![CDATA[ junk ]]>b", "ab"},
    {"a<![CDATA[ junk <p> ]]>b", "a ]]>b"}, /* as a browser: '>' ends it */
    {"<!DOCTYPE html><?xml version=\"1.0\"?>x", "x"},
    {"<![if !supportLists]>1.<![endif]>x", "1.x"},
    {"a</>b</ c>d", "abd"},
    /* 22: script, style, title: content dropped up to the end tag */
    {"a<script>var x = '<p>'; if (a<b) y(); '</scr' + 'ipt'</script>b", "a b"},
    {"a<SCRIPT type=x>s</scriptx> <</ </SCRIPT >b", "a b"},
    {"<style>p{}.secret{}</style>text", "text"},
    {"<html><head><title>T</title><meta charset=utf-8><style>x</style></head>"
     "<body>hi</body></html>",
     "hi"},
    {"a<script/>b</script>c", "a c"},
    /* 27: text that looks like markup */
    {"1 < 2 & 3 > 2, x<3", "1 < 2 & 3 > 2, x<3"},
    /* 28: white space */
    {"  a \r\n\t b  ", "a b"},
    {"<p>a</p>\r\n  <p> b </p>", "a\nb"},
    {"Grüße <i>Straße</i>\xff", "Grüße Straße\xff"},
    /* 31: the end of the part */
    {"text<a href=", "text"},
    {"text<", "text<"},
    {"text&#", "text&#"},
    {"text&#65", "textA"},
    {"text&amp", "text&"},
    {"text<!-- never closed", "text"},
    {"text<script>never closed", "text"},
    /* 38: names too long to matter */
    {"<blockquotexyzabc>a</blockquotexyzabc>b", "ab"},
    {"&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;", "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;"},
    {"", ""},
};

static char *run_split(const char *in, size_t n, size_t k)
{
	struct mime_html h;
	struct buf out = BUF_INIT;

	mime_html_init(&h);
	mime_html_feed(&h, in, k, &out);
	mime_html_feed(&h, in + k, n - k, &out);
	mime_html_finish(&h, &out);
	return out.data;
}

static void t_cases(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf out = BUF_INIT;
		size_t n = strlen(cases[i].in);

		mime_html_text(cases[i].in, n, &out);
		CHECK_STR((int)i, out.data, cases[i].want);
		buf_free(&out);
	}
}

static void t_chunks(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = strlen(cases[i].in);
		for (size_t k = 0; k <= n; k++) {
			char *got = run_split(cases[i].in, n, k);
			if (strcmp(got, cases[i].want) != 0)
				printf("  split at %zu\n", k);
			CHECK_STR((int)i, got, cases[i].want);
			free(got);
		}
		/* one octet at a time */
		struct mime_html h;
		struct buf out = BUF_INIT;
		mime_html_init(&h);
		for (size_t k = 0; k < n; k++)
			mime_html_feed(&h, cases[i].in + k, 1, &out);
		mime_html_finish(&h, &out);
		CHECK_STR((int)i, out.data, cases[i].want);
		buf_free(&out);
	}
}

#define BIG (1024 * 1024)

/* A tag, a quoted value, a comment, script content of a megabyte without
 * their end, fed in 4 KiB chunks: the state stays the struct (no
 * allocation: the output buffer holds only the text around them). */
static void t_bounded(void)
{
	static const struct {
		const char *open, *want;
	} big[] = {
	    {"a<xyz ", "a"},    {"a<p title=\"", "a"}, {"a<!-- ", "a"},
	    {"a<script>", "a"}, {"a<!x", "a"},         {"a<verylongtagname", "a"},
	};
	char *chunk = malloc(4096);
	memset(chunk, 'x', 4096);
	for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
		struct mime_html h;
		struct buf out = BUF_INIT;
		mime_html_init(&h);
		mime_html_feed(&h, big[i].open, strlen(big[i].open), &out);
		for (size_t k = 0; k < BIG / 4096; k++)
			mime_html_feed(&h, chunk, 4096, &out);
		CHECK_INT((int)i, out.len, strlen(big[i].want));
		CHECK_INT((int)i, out.cap <= 64, 1); /* buf's first allocation */
		mime_html_finish(&h, &out);
		CHECK_STR((int)i, out.data, big[i].want);
		buf_free(&out);
	}
	/* a megabyte of '&' and letters: text, as written */
	struct buf in = BUF_INIT, out = BUF_INIT;
	for (size_t k = 0; k < BIG / 8; k++)
		buf_append(&in, "&abcdefg", 8);
	mime_html_text(in.data, in.len, &out);
	CHECK_INT(0, out.len, in.len);
	CHECK(memcmp(out.data, in.data, in.len) == 0);
	buf_free(&in);
	buf_free(&out);
	free(chunk);
}

int main(void)
{
	test_run("cases", t_cases);
	test_run("chunks", t_chunks);
	test_run("bounded", t_bounded);
	return test_done("test_mime_html");
}
