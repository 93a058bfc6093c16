/* mime_extract_text / mime_extract_needle (src/mime/extract.c): each column
 * holds the folded text SEARCH's matcher looks into, so that an index of it
 * can only narrow a search. Table-driven: a message, a column, a needle
 * that must be (or must not be) in it. */
#include <string.h>

#include "mime/extract.h"
#include "mime/mime.h"
#include "../test.h"

static const struct {
	const char *msg;
	int col;
	const char *needle;
	bool in;
} cases[] = {
	/* RFC 2047 subject, decoded and folded */
	{"Subject: =?UTF-8?B?R3LDvMOfZQ==?= all\r\n\r\nx\r\n", MIME_X_SUBJECT, "grüße all", true},
	{"Subject: =?ISO-8859-1?Q?caf=E9?=\r\n\r\nx\r\n", MIME_X_SUBJECT, "café", true},
	/* addresses as SEARCH FROM reads them; an encoded display name */
	{"From: =?UTF-8?Q?Zo=C3=AB?= <zoe@example.net>\r\n\r\nx\r\n", MIME_X_FROM,
	 "zoë <zoe@example.net>", true},
	{"To: a@b.example, \"Bob\" <bob@c.example>\r\n\r\nx\r\n", MIME_X_TO, "bob <bob@c", true},
	/* quoted-printable utf-8 body, Greek folded */
	{"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
	 "\r\n=CE=91=CE=98=CE=97=CE=9D=CE=91 bye=\r\nbye\r\n",
	 MIME_X_BODY, "αθηνα byebye", true},
	/* base64 latin-1 body converted */
	{"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n"
	 "\r\nU3RyYd9l\r\n",
	 MIME_X_BODY, "straße", true},
	/* an attachment's file name is in the headers, its bytes are not text */
	{"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
	 "hello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;"
	 " filename=\"Report-7.pdf\"\r\n\r\nSECRETPDF\r\n--b--\r\n",
	 MIME_X_HDR, "report-7.pdf", true},
	{"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
	 "hello\r\n--b\r\nContent-Type: application/pdf\r\n\r\nSECRETPDF\r\n--b--\r\n",
	 MIME_X_BODY, "secretpdf", false},
	/* "Name: value" of every field, as SEARCH TEXT sees it */
	{"X-Tag: Alpha\r\n\r\nx\r\n", MIME_X_HDR, "x-tag: alpha", true},
	/* text/html: the text a reader sees (html.h), not the markup */
	{"Content-Type: text/html; charset=utf-8\r\n\r\n<p class=\"hid\">caf&eacute; <b>im</b>"
	 "portant</p><script>secret()</script>\r\n",
	 MIME_X_BODY, "café important", true},
	{"Content-Type: text/html; charset=utf-8\r\n\r\n<p class=\"hid\">caf&eacute;</p>\r\n",
	 MIME_X_BODY, "class", false},
	{"Content-Type: text/html; charset=utf-8\r\n\r\n<p>x</p><script>secret()</script>\r\n",
	 MIME_X_BODY, "secret", false},
	{"Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
	 "quoted-printable\r\n\r\n<i>Stra=DF</i>e &Uuml;ber=\r\nall\r\n",
	 MIME_X_BODY, "straße überall", true},
	/* signature fields (mime_extract_unindexed): the base64 values of b= and
	 * bh= are left out, the other tags and the tag names stay; a folded
	 * value goes whole; other fields keep their b= */
	{"DKIM-Signature: v=1; a=rsa-sha256; d=Example.COM; s=s1;\r\n bh=GqvznXXA+8=;\r\n"
	 " b=K02ggHwo\r\n i6jg/Vjx\r\nSubject: x\r\n\r\nx\r\n",
	 MIME_X_HDR, "dkim-signature: v=1; a=rsa-sha256; d=example.com; s=s1;", true},
	{"DKIM-Signature: v=1; a=rsa-sha256; d=Example.COM; s=s1;\r\n bh=GqvznXXA+8=;\r\n"
	 " b=K02ggHwo\r\n i6jg/Vjx\r\nSubject: x\r\n\r\nx\r\n",
	 MIME_X_HDR, "i6jg", false},
	{"DKIM-Signature: v=1; a=rsa-sha256; d=Example.COM; s=s1;\r\n bh=GqvznXXA+8=;\r\n"
	 " b=K02ggHwo\r\n i6jg/Vjx\r\nSubject: x\r\n\r\nx\r\n",
	 MIME_X_HDR, "s=s1; bh=; b=\nsubject: x", true},
	/* a needle across a value's edge is not in the index either */
	{"DKIM-Signature: v=1; d=example.com; bh=GqvznXXA+8=; b=K02ggHwo\r\n\r\nx\r\n",
	 MIME_X_HDR, "bh=gqvz", false},
	{"DKIM-Signature: v=1; d=example.com; bh=GqvznXXA+8=; b=K02ggHwo\r\n\r\nx\r\n",
	 MIME_X_HDR, "gqvz", false},
	{"DKIM-Signature: v=1; d=example.com; bh=GqvznXXA+8=; b=K02ggHwo\r\n\r\nx\r\n",
	 MIME_X_HDR, "k02gg", false},
	{"DKIM-Signature: v=1; d=example.com; bh=GqvznXXA+8=; b=K02ggHwo\r\n\r\nx\r\n",
	 MIME_X_HDR, "bh=; b=", true},
	{"DKIM-Signature: v=1; d=example.com; bh=GqvznXXA+8=; b=K02ggHwo;\r\n\r\nx\r\n",
	 MIME_X_HDR, "bh=; b=;", true},
	{"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.org; s=arc; b=SealSeal9\r\n\r\nx\r\n",
	 MIME_X_HDR, "arc-seal: i=1; a=rsa-sha256; cv=none; d=example.org; s=arc; b=", true},
	{"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.org; s=arc; b=SealSeal9\r\n\r\nx\r\n",
	 MIME_X_HDR, "sealseal", false},
	{"arc-message-signature: i=1; bh=BodyHash7=; h=from:to; b = SigSig7\r\n\r\nx\r\n",
	 MIME_X_HDR, "; h=from:to; b =", true},
	{"arc-message-signature: i=1; bh=BodyHash7=; h=from:to; b = SigSig7\r\n\r\nx\r\n",
	 MIME_X_HDR, "sigsig7", false},
	/* "B=" is another tag (names are case-sensitive), and other fields keep b= */
	{"DKIM-Signature: v=1; B=Upper77; b=lower77\r\n\r\nx\r\n", MIME_X_HDR, "b=upper77", true},
	{"X-Other: a=1; b=KeptKept\r\n\r\nx\r\n", MIME_X_HDR, "b=keptkept", true},
	/* text/plain is not HTML */
	{"Content-Type: text/plain\r\n\r\n<b>x</b> &amp;\r\n", MIME_X_BODY, "<b>x</b> &amp;", true},
	/* a NUL in a body does not end the text */
	{"Subject: s\r\n\r\nab\0cd tail\r\n", MIME_X_BODY, "cd tail", true},
};

static void t_columns(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf cols[MIME_X_N];
		memset(cols, 0, sizeof cols);
		const char *m = cases[i].msg;
		size_t len = strlen(m);
		if (i == sizeof cases / sizeof cases[0] - 1)
			len = strlen(m) + 1 + strlen(m + strlen(m) + 1); /* past the NUL */
		mime_extract_text(m, len, NULL, 0, cols);
		struct buf *c = &cols[cases[i].col];
		bool found = c->len > 0 && memmem(c->data, c->len, cases[i].needle,
						  strlen(cases[i].needle)) != NULL;
		CHECK_INT((int)i, found, cases[i].in);
		for (int k = 0; k < MIME_X_N; k++)
			buf_free(&cols[k]);
	}
}

static void t_needle(void)
{
	struct buf b = BUF_INIT;
	CHECK(mime_extract_needle("ΑΘΗΝΑ Café", &b));
	CHECK_STR(0, b.data, "αθηνα café");
	buf_reset(&b);
	CHECK(!mime_extract_needle("bad \xff byte", &b));
	buf_free(&b);
}

/* Deterministic: the full-text index deletes a body's entries by giving
 * its text again (store/fts.c), so the text must be the same every time:
 * twice without a cache, and with the stored MIME cache, byte for byte. */
static void t_deterministic(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf a[MIME_X_N], b[MIME_X_N], c[MIME_X_N], cache = BUF_INIT;
		memset(a, 0, sizeof a);
		memset(b, 0, sizeof b);
		memset(c, 0, sizeof c);
		const char *m = cases[i].msg;
		size_t len = strlen(m);
		if (i == sizeof cases / sizeof cases[0] - 1)
			len = strlen(m) + 1 + strlen(m + strlen(m) + 1); /* past the NUL */
		mime_extract_text(m, len, NULL, 0, a);
		mime_extract_text(m, len, NULL, 0, b);
		mime_cache_build(m, len, &cache);
		mime_extract_text(m, len, cache.data, cache.len, c);
		for (int k = 0; k < MIME_X_N; k++) {
			CHECK_INT((int)i, a[k].len == b[k].len && a[k].len == c[k].len, true);
			if (a[k].len == b[k].len && a[k].len == c[k].len && a[k].len > 0) {
				CHECK_INT((int)i, memcmp(a[k].data, b[k].data, a[k].len), 0);
				CHECK_INT((int)i, memcmp(a[k].data, c[k].data, a[k].len), 0);
			}
			buf_free(&a[k]);
			buf_free(&b[k]);
			buf_free(&c[k]);
		}
		buf_free(&cache);
	}
}

/* The matcher (mime_search_body) finds a needle exactly when the body
 * column holds it, on HTML parts. */
static void t_matcher(void)
{
	static const char *msgs[] = {
		"Content-Type: text/html; charset=utf-8\r\n\r\n<div title=\"t\">caf&eacute; "
		"<b>im</b>portant &lt;tag&gt;</div><p>next</p><style>.x{}</style>\r\n",
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: "
		"text/plain\r\n\r\nplain <b>bold</b>\r\n--b\r\nContent-Type: text/html\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\nPGk+aHRtbDwvaT4mYW1wOyZuYnNwO3RleHQ=\r\n"
		"--b--\r\n",
	};
	static const char *needles[] = {"café", "important", "<tag>", "div", "title", "\nnext",
					"important <tag>", ".x", "<b>bold", "html& text",
					"i>", "&amp;", "CAFÉ IMPORTANT"};
	int c = 0;
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		struct buf cols[MIME_X_N], cache = BUF_INIT, nd = BUF_INIT;
		struct mime_cache mc;
		size_t len = strlen(msgs[i]);
		memset(cols, 0, sizeof cols);
		mime_extract_text(msgs[i], len, NULL, 0, cols);
		mime_cache_build(msgs[i], len, &cache);
		CHECK(mime_cache_open(&mc, cache.data, cache.len));
		for (size_t k = 0; k < sizeof needles / sizeof needles[0]; k++, c++) {
			bool scan = mime_search_body(msgs[i], len, &mc, needles[k], false);
			buf_reset(&nd);
			CHECK(mime_extract_needle(needles[k], &nd));
			const struct buf *b = &cols[MIME_X_BODY];
			bool col = b->len > 0 && memmem(b->data, b->len, nd.data, nd.len) != NULL;
			CHECK_INT(c, col, scan);
		}
		for (int k = 0; k < MIME_X_N; k++)
			buf_free(&cols[k]);
		buf_free(&cache);
		buf_free(&nd);
	}
	/* and what it finds */
	const char *m = msgs[0];
	struct buf cache = BUF_INIT;
	struct mime_cache mc;
	mime_cache_build(m, strlen(m), &cache);
	CHECK(mime_cache_open(&mc, cache.data, cache.len));
	CHECK(mime_search_body(m, strlen(m), &mc, "CAFÉ IMPORTANT <tag>", false));
	CHECK(!mime_search_body(m, strlen(m), &mc, "div", false));
	CHECK(!mime_search_body(m, strlen(m), &mc, "title", false));
	CHECK(!mime_search_body(m, strlen(m), &mc, ".x{", false));
	buf_free(&cache);
}

static void t_unindexed(void)
{
	CHECK(mime_extract_unindexed("DKIM-Signature"));
	CHECK(mime_extract_unindexed("dkim-signature"));
	CHECK(mime_extract_unindexed("ARC-Seal"));
	CHECK(mime_extract_unindexed("Arc-Message-Signature"));
	CHECK(!mime_extract_unindexed("ARC-Authentication-Results"));
	CHECK(!mime_extract_unindexed("Authentication-Results"));
	CHECK(!mime_extract_unindexed("DKIM"));
	CHECK(!mime_extract_unindexed(""));
}

int main(void)
{
	test_run("unindexed", t_unindexed);
	test_run("matcher", t_matcher);
	test_run("columns", t_columns);
	test_run("needle", t_needle);
	test_run("deterministic", t_deterministic);
	return test_done("test_mime_extract");
}
