/* mime_preview (RFC 8970 preview text): table of messages and their exact
 * previews; the 256-character cut never splits a UTF-8 sequence. */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "core/buf.h"
#include "mime/mime.h"
#include "mime/preview.h"

static char *preview_of(const char *m)
{
	struct buf cache = BUF_INIT, out = BUF_INIT;
	struct mime_cache mc;
	size_t len = strlen(m);
	mime_cache_build(m, len, &cache);
	CHECK(mime_cache_open(&mc, cache.data, cache.len));
	mime_preview(m, len, &mc, &out);
	char *r = strdup(out.data ? out.data : "");
	buf_free(&cache);
	buf_free(&out);
	return r;
}

#define H "From: a@b\r\nSubject: s\r\n"
#define MIME "MIME-Version: 1.0\r\n"

static const struct {
	const char *msg, *want;
} cases[] = {
    /* no Content-Type: text/plain; white space folded, trimmed */
    {H "\r\n  Hello,\r\n\r\n world\t!  \r\n", "Hello, world !"},
    {H "\r\n", ""},
    /* quoted-printable, UTF-8 */
    {H MIME "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
	    "quoted-printable\r\n\r\ncaf=C3=A9 =\r\nx\r\n",
     "caf\xc3\xa9 x"},
    /* base64, ISO-8859-1 converted */
    {H MIME "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
	    "base64\r\n\r\nZvRyZXQ=\r\n",
     "f\xc3\xb4ret"},
    /* unknown charset: taken as UTF-8, invalid bytes U+FFFD */
    {H MIME "Content-Type: text/plain; charset=x-unknown\r\n\r\na\xff" "b\r\n",
     "a\xef\xbf\xbd" "b"},
    /* HTML: head, style, script, comments dropped; tags break words;
     * character references */
    {H MIME "Content-Type: text/html\r\n\r\n<html><head><title>t</title></head><BODY>"
	    "<STYLE type=x>a{}</STYLE><p>A&amp;B</p><script>s</script><!-- c -->"
	    "<p>&lt;&#65;&#x42;&gt; &bogus; &nbsp;end</p></BODY></html>\r\n",
     "A&B <AB> &bogus; end"},
    /* text/plain preferred over text/html in multipart/alternative */
    {H MIME "Content-Type: multipart/alternative; boundary=q\r\n\r\n--q\r\n"
	    "Content-Type: text/html\r\n\r\n<b>h</b>\r\n--q\r\nContent-Type: text/plain\r\n"
	    "\r\nplain\r\n--q--\r\n",
     "plain"},
    /* html only in the multipart */
    {H MIME "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n"
	    "Content-Type: text/html\r\n\r\n<i>only</i> html\r\n--q--\r\n",
     "only html"},
    /* attachments and non-text parts give nothing */
    {H MIME "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n"
	    "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a\r\n\r\n"
	    "att\r\n--q\r\nContent-Type: image/png\r\n\r\nPNG\r\n--q--\r\n",
     ""},
    {H MIME "Content-Type: application/octet-stream\r\n\r\nbinary\r\n", ""},
    /* control characters and C1 controls are white space */
    {H "\r\na\x01\x7f" "b\xc2\x85" "c\xc2\xa0" "d\r\n", "a b c d"},
};

static void t_table(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = preview_of(cases[i].msg);
		CHECK_STR((int)i, got, cases[i].want);
		free(got);
	}
}

/* 256 characters at most; multi-byte characters are never cut */
static void t_cut(void)
{
	struct buf m = BUF_INIT;
	buf_appends(&m, H MIME "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	for (int i = 0; i < 300; i++)
		buf_appends(&m, "\xe2\x82\xac"); /* U+20AC, 3 octets */
	buf_appends(&m, "\r\n");
	char *got = preview_of(m.data);
	CHECK_INT(0, strlen(got), 256 * 3);
	for (size_t i = 0; i < strlen(got); i += 3)
		CHECK(memcmp(got + i, "\xe2\x82\xac", 3) == 0);
	free(got);
	/* a space at the cut is not kept at the end */
	buf_reset(&m);
	buf_appends(&m, H "\r\n");
	for (int i = 0; i < 255; i++)
		buf_appendc(&m, 'x');
	buf_appends(&m, " yz\r\n");
	got = preview_of(m.data);
	CHECK_INT(1, strlen(got), 255);
	CHECK(got[254] == 'x');
	free(got);
	buf_free(&m);
}

/* a message bigger than what is read: the prefix suffices, and a base64
 * part cut in the middle of a character gives valid UTF-8 */
static void t_big(void)
{
	struct buf m = BUF_INIT;
	buf_appends(&m, H "\r\n");
	for (int i = 0; i < 100000; i++)
		buf_appends(&m, "   \r\n");
	buf_appends(&m, "late\r\n");
	char *got = preview_of(m.data);
	CHECK_STR(0, got, ""); /* only white space in the part's first 16 KiB */
	free(got);
	buf_free(&m);
}

int main(void)
{
	test_run("table", t_table);
	test_run("cut", t_cut);
	test_run("big", t_big);
	return test_done("test_mime_preview");
}
