/* The streaming 8BITMIME downgrade (src/mime/downgrade.c): exact outputs,
 * in one piece and one octet at a time. */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "core/buf.h"
#include "mime/downgrade.h"
#include "mime/mime.h"

/* Converts msg with (cache) or without its MIME cache, whole and octet by
 * octet; both must give the same bytes. Returns them (static buffer). */
static const char *conv(const char *msg, bool cache, bool *failed)
{
	static struct buf out;
	struct buf c = BUF_INIT, one = BUF_INIT;
	size_t n = strlen(msg);
	struct mime_dg d;
	buf_reset(&out);
	if (cache)
		mime_cache_build(msg, n, &c);
	mime_dg_init(&d, cache ? c.data : NULL, c.len);
	mime_dg_feed(&d, msg, n, &out);
	mime_dg_finish(&d, &out);
	if (failed)
		*failed = mime_dg_failed(&d);
	mime_dg_free(&d);
	mime_dg_init(&d, cache ? c.data : NULL, c.len);
	for (size_t i = 0; i < n; i++)
		mime_dg_feed(&d, msg + i, 1, &one);
	mime_dg_finish(&d, &one);
	mime_dg_free(&d);
	if (one.len != out.len || memcmp(one.data, out.data, out.len) != 0)
		printf("  chunking changes the output: \"%s\" vs \"%s\"\n", one.data, out.data);
	CHECK(one.len == out.len && memcmp(one.data, out.data, out.len) == 0);
	buf_free(&one);
	buf_free(&c);
	buf_appendc(&out, '\0');
	out.len--;
	return out.data;
}

static void t_nonmime(void)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
	    /* RFC 1428: 8-bit text without MIME becomes text/plain;
	     * charset=unknown-8bit, quoted-printable */
	    {"Subject: s\r\n\r\ncaf\xc3\xa9\r\n",
	     "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n"
	     "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"},
	    /* its own Content-Type is kept; an old CTE goes */
	    {"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
	     "\r\n\xc3\xa9\r\n",
	     "Content-Type: text/plain; charset=utf-8\r\nMIME-Version: 1.0\r\n"
	     "Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n"},
	    /* RFC 2045 6.7: "=", trailing white space, lone CR, bare LF */
	    {"A: b\n\na=b \r\nt\t\nx\ry \n",
	     "A: b\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n"
	     "Content-Transfer-Encoding: quoted-printable\r\n\na=3Db=20\r\nt=09\r\nx=0Dy=20\r\n"},
	    /* no header at all */
	    {"\r\n\xff", "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n"
	                 "Content-Transfer-Encoding: quoted-printable\r\n\r\n=FF"},
	    /* a header without end */
	    {"Subject: x",
	     "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n"
	     "Content-Transfer-Encoding: quoted-printable\r\n\r\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK_STR((int)i, conv(cases[i].in, false, NULL), cases[i].want);
		/* the cache of a single-part message says the same */
		CHECK_STR((int)i + 100, conv(cases[i].in, true, NULL), cases[i].want);
	}
}

static void t_soft_breaks(void)
{
	/* RFC 2045 6.7 rule 5: encoded lines at most 76 characters */
	char in[300] = "MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
	size_t h = strlen(in);
	for (int i = 0; i < 100; i++)
		in[h + (size_t)i] = i % 2 ? 'a' : '\xe9';
	in[h + 100] = '\0';
	const char *out = conv(in, true, NULL);
	const char *body = strstr(out, "\r\n\r\n");
	CHECK(body != NULL);
	if (body == NULL)
		return;
	body += 4;
	size_t line = 0, total = 0;
	for (const char *p = body; *p; p++) {
		CHECK((unsigned char)*p < 0x80);
		if (*p == '\n') {
			line = 0;
			continue;
		}
		if (*p == '\r')
			continue;
		line++;
		CHECK(line <= 76);
		total++;
	}
	/* 50 "=E9" and 50 "a": 200 characters, in 3 lines with 2 soft breaks */
	CHECK_INT(1, total, 200 + 2);
	CHECK(strstr(out, "Content-Transfer-Encoding: quoted-printable\r\n") != NULL);
	CHECK(strstr(out, "8bit") == NULL);
}

static void t_multipart(void)
{
	static const char in[] =
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "pre\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
	    "\r\n\x00\x01\xff\r\n"
	    "--b\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n"
	    "--b--\r\n";
	static const char want[] =
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "pre\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9t=C3=A9\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nAAH/\r\n"
	    "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n"
	    "\r\nplain ascii\r\n"
	    "--b--\r\n";
	/* the NUL octet: feed with explicit lengths */
	struct buf c = BUF_INIT, out = BUF_INIT;
	size_t n = sizeof in - 1;
	mime_cache_build(in, n, &c);
	struct mime_dg d;
	mime_dg_init(&d, c.data, c.len);
	mime_dg_feed(&d, in, 100, &out);
	mime_dg_feed(&d, in + 100, n - 100, &out);
	mime_dg_finish(&d, &out);
	CHECK(!mime_dg_failed(&d));
	mime_dg_free(&d);
	CHECK_INT(1, out.len, sizeof want - 1);
	buf_appendc(&out, '\0');
	CHECK_STR(2, out.data, want);
	buf_free(&c);
	buf_free(&out);
}

static void t_base64_lines(void)
{
	/* RFC 2045 6.8: 76 characters a line */
	struct buf in = BUF_INIT;
	buf_appends(&in, "MIME-Version: 1.0\r\nContent-Type: image/png\r\n"
	                 "Content-Transfer-Encoding: 8bit\r\n\r\n");
	for (int i = 0; i < 200; i++)
		buf_appendc(&in, (char)(0x80 + i % 100));
	const char *out = conv(in.data, true, NULL);
	const char *body = strstr(out, "base64\r\n\r\n");
	CHECK(body != NULL);
	if (body) {
		body += 10;
		/* 200 octets: 268 characters: 76 + 76 + 76 + 40 */
		CHECK_INT(1, strlen(body), 268 + 6);
		CHECK(body[76] == '\r' && body[154] == '\r' && body[232] == '\r');
	}
	buf_free(&in);
}

static void t_header_limit(void)
{
	/* a header the converter cannot hold: failed (RFC 3463 5.6.3) */
	struct buf in = BUF_INIT;
	while (in.len <= MIME_DG_HDR_MAX + 10)
		buf_appends(&in, "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
	buf_appends(&in, "\r\n\xe9\r\n");
	bool failed = false;
	conv(in.data, false, &failed);
	CHECK(failed);
	buf_free(&in);
}

int main(void)
{
	test_run("nonmime", t_nonmime);
	test_run("soft_breaks", t_soft_breaks);
	test_run("multipart", t_multipart);
	test_run("base64_lines", t_base64_lines);
	test_run("header_limit", t_header_limit);
	return test_done("test_mime_downgrade");
}
