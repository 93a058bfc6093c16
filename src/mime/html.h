/* HTML reduced to the text a reader sees, for SEARCH BODY/TEXT (the matcher,
 * mime_text.c) and the full-text index (extract.c), which must see the same
 * text (RFC 9051 6.4.4: SEARCH BODY matches "the body of the message"; of a
 * text/html part that is its rendered text, not its markup).
 *
 * A streaming state machine (the states of the HTML5 tokenizer it follows,
 * WHATWG HTML 13.2.5, simplified): it takes the part in chunks of any size,
 * split anywhere, and gives the same text for every split. Its state is the
 * struct below and nothing else: a tag name, an entity name and a few
 * counters of fixed size, whatever the input (a tag without '>' of a
 * gigabyte costs no memory). Input: UTF-8 (the part's charset converted
 * already); bytes >= 0x80 are copied unchanged.
 *
 * What it produces:
 *   - tags are dropped; an inline element ("<b>im</b>portant") is no word
 *     break; a block element (p, div, br, li, tr, h1-h6, table...) is a
 *     line break, a cell or a replaced element (td, th, img, input...) a
 *     space;
 *   - comments ("<!-- -->"), "<!...>" and "<?...>" are dropped, with no
 *     break (Outlook's "<![if ...]>" markers; "<![CDATA[" is a bogus
 *     comment in HTML content, as in a browser);
 *   - the content of <script>, <style> and <title> is dropped (up to the
 *     matching end tag; the element is a word break); the rest of <head>
 *     (meta, link) is tags, and text there is shown by a browser too;
 *   - character references are decoded to UTF-8: the 253 named ones of
 *     HTML 4 (Latin-1, symbols and Greek, special) and &apos;, numeric
 *     &#N; &#xH; (0x80-0x9F as windows-1252, as HTML5 reads them; 0,
 *     surrogates and out of range as U+FFFD); the Latin-1 names and numeric
 *     references also without ';'; an unknown one stays as written;
 *     invisible ones (&shy;, &zwnj;, &zwj;, &lrm;, &rlm;, &#x200B;) vanish;
 *   - white space (and &nbsp;) runs become one space, or one line break if
 *     a block boundary is among them; none at either end;
 *   - attribute values are not text: alt and title text is not kept (a
 *     reader does not see it; an href would make every link's URL match).
 * Pure: no I/O, no globals. */
#ifndef POSTERN_MIME_HTML_H
#define POSTERN_MIME_HTML_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define MIME_HTML_NAME_MAX 12 /* the longest tag name that matters is 10 */
#define MIME_HTML_ENT_MAX 32  /* the longest entity name is 8 ("thetasym") */

struct mime_html {
	uint8_t state, pend, aux, raw;
	bool started, closing;
	uint8_t name_len, ent_len; /* name_len MIME_HTML_NAME_MAX + 1: too long */
	uint32_t num;              /* a numeric reference's value (capped) */
	char name[MIME_HTML_NAME_MAX];
	char ent[MIME_HTML_ENT_MAX];
};

void mime_html_init(struct mime_html *h);
/* Appends to out the text of the next n octets of the part. */
void mime_html_feed(struct mime_html *h, const char *in, size_t n, struct buf *out);
/* The end of the part: what a pending reference or '<' gives; h is then as
 * after mime_html_init. */
void mime_html_finish(struct mime_html *h, struct buf *out);
/* The three steps on one whole text. */
void mime_html_text(const char *in, size_t n, struct buf *out);

#endif
