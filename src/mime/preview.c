/* RFC 8970 preview text (see preview.h). */
#include "mime/preview.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/hex.h"
#include "mime/mime_int.h"

/* Encoded octets of a part read at most: 256 characters of text are at most
 * 1 KiB of UTF-8; the rest is room for white space, markup and <style>. */
#define PREVIEW_PLAIN_MAX (16 * 1024)
#define PREVIEW_HTML_MAX (256 * 1024)

enum ptype { P_OTHER, P_PLAIN, P_HTML };

/* The part header's Content-Type (RFC 2045 5.1; none = text/plain) and
 * whether Content-Disposition says attachment (RFC 2183 2). */
static enum ptype part_type(const char *hdr, size_t n)
{
	const char *pos = hdr, *end = hdr + n;
	struct mime_field f;
	enum ptype t = P_PLAIN;
	struct buf tok = BUF_INIT;

	while (mime_field_next(&pos, end, &f)) {
		struct mime_rp rp = {f.value, f.value + f.value_len, NULL};
		if (mime_field_is(&f, "Content-Type")) {
			buf_reset(&tok);
			/* mime_rp_token: 0 when the token ends the value */
			if (mime_rp_token(&rp, &tok) < 0 || !mime_eq(tok.data, tok.len, "text")) {
				t = P_OTHER;
				continue;
			}
			if (mime_rp_skip(&rp) <= 0 || *rp.p != '/') {
				t = P_OTHER;
				continue;
			}
			rp.p++;
			buf_reset(&tok);
			if (mime_rp_token(&rp, &tok) < 0)
				t = P_OTHER;
			else if (mime_eq(tok.data, tok.len, "plain"))
				t = P_PLAIN;
			else if (mime_eq(tok.data, tok.len, "html"))
				t = P_HTML;
			else
				t = P_OTHER;
		} else if (mime_field_is(&f, "Content-Disposition")) {
			buf_reset(&tok);
			if (mime_rp_token(&rp, &tok) >= 0 && mime_eq(tok.data, tok.len, "attachment")) {
				buf_free(&tok);
				return P_OTHER;
			}
		}
	}
	buf_free(&tok);
	return t;
}

/* The output under construction: white space folded, characters counted. */
struct pv {
	struct buf *out;
	size_t start;
	size_t chars;
	bool space;  /* a space is pending (not written before text) */
	bool full;
};

static size_t utf8_len(unsigned char c)
{
	return c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* One character (a UTF-8 sequence of valid input: mime_to_utf8 gave it). */
static void pv_char(struct pv *v, const char *p, size_t n)
{
	unsigned char c = (unsigned char)p[0];
	if (v->full)
		return;
	/* white space and controls (C0, DEL, NBSP U+00A0) fold to one space */
	if (c <= 0x20 || c == 0x7f || (n == 2 && c == 0xc2 && (unsigned char)p[1] == 0xa0) ||
	    (n == 2 && c == 0xc2 && (unsigned char)p[1] < 0xa0)) {
		v->space = true;
		return;
	}
	if (v->space && v->out->len > v->start) {
		if (v->chars + 1 >= MIME_PREVIEW_CHARS) {
			v->full = true;
			return;
		}
		buf_appendc(v->out, ' ');
		v->chars++;
	}
	v->space = false;
	buf_append(v->out, p, n);
	if (++v->chars >= MIME_PREVIEW_CHARS)
		v->full = true;
}

/* Feeds text (UTF-8) character by character. */
static void pv_text(struct pv *v, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && !v->full) {
		size_t l = utf8_len((unsigned char)p[i]);
		if (l > n - i)
			break; /* a sequence cut by the prefix we read */
		pv_char(v, p + i, l);
		i += l;
	}
}

static void put_cp(struct pv *v, uint32_t cp)
{
	char b[4];
	size_t n;
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	pv_char(v, b, n);
}

static const struct {
	const char *name;
	uint32_t cp;
} entities[] = {
    {"amp", '&'},     {"lt", '<'},      {"gt", '>'},      {"quot", '"'},
    {"apos", '\''},   {"nbsp", 0xa0},   {"copy", 0xa9},   {"reg", 0xae},
    {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013}, {"rsquo", 0x2019},
    {"lsquo", 0x2018}, {"rdquo", 0x201d}, {"ldquo", 0x201c}, {"euro", 0x20ac},
};

/* A character reference at p ("&...;"): its length (0 if not one). */
static size_t entity(struct pv *v, const char *p, size_t n)
{
	size_t i = 1;
	uint32_t cp = 0;
	if (n > 2 && p[1] == '#') {
		bool hex = n > 3 && (p[2] == 'x' || p[2] == 'X');
		i = hex ? 3 : 2;
		size_t st = i;
		for (; i < n && i < st + 8; i++) {
			char c = p[i];
			int d = -1;
			if (hex)
				d = hex_value((unsigned char)c);
			else if (c >= '0' && c <= '9')
				d = c - '0';
			if (d < 0)
				break;
			cp = cp * (hex ? 16 : 10) + (uint32_t)d;
		}
		if (i == st || i >= n || p[i] != ';')
			return 0;
		put_cp(v, cp);
		return i + 1;
	}
	while (i < n && i < 10 && ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')))
		i++;
	if (i >= n || p[i] != ';')
		return 0;
	for (size_t k = 0; k < sizeof entities / sizeof entities[0]; k++)
		if (strlen(entities[k].name) == i - 1 && memcmp(entities[k].name, p + 1, i - 1) == 0) {
			put_cp(v, entities[k].cp);
			return i + 1;
		}
	return 0;
}

static bool tag_is(const char *p, size_t n, const char *name)
{
	size_t k = strlen(name);
	return n > k && mime_eq(p, k, name) &&
	       (p[k] == '>' || p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n' ||
		p[k] == '/');
}

/* HTML (UTF-8 already) reduced to text: tags are word breaks. */
static void pv_html(struct pv *v, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && !v->full) {
		if (p[i] == '<') {
			const char *t = p + i + 1;
			size_t tn = n - i - 1;
			const char *close = NULL;
			if (tn >= 3 && memcmp(t, "!--", 3) == 0) {
				const char *e = memmem(t + 3, tn - 3, "-->", 3);
				i = e ? (size_t)(e - p) + 3 : n;
				continue;
			}
			if (tag_is(t, tn, "script"))
				close = "</script";
			else if (tag_is(t, tn, "style"))
				close = "</style";
			else if (tag_is(t, tn, "head"))
				close = "</head";
			if (close != NULL) {
				/* skip to the end tag (case-insensitive) */
				size_t k = i + 1, cl = strlen(close);
				while (k + cl <= n && !mime_eq(p + k, cl, close))
					k++;
				i = k;
			}
			const char *e = memchr(p + i, '>', n - i);
			i = e ? (size_t)(e - p) + 1 : n;
			v->space = true;
			continue;
		}
		if (p[i] == '&') {
			size_t k = entity(v, p + i, n - i);
			if (k > 0) {
				i += k;
				continue;
			}
		}
		size_t l = utf8_len((unsigned char)p[i]);
		if (l > n - i)
			break;
		pv_char(v, p + i, l);
		i += l;
	}
}

void mime_preview(const char *msg, size_t len, const struct mime_cache *mc, struct buf *out)
{
	struct mime_part_rec r;
	uint32_t plain = MIME_NO_PART, html = MIME_NO_PART;
	struct pv v = {out, out->len, 0, false, false};

	buf_append(out, "", 0);
	for (uint32_t i = 0; mc != NULL && i < mc->n_parts && plain == MIME_NO_PART; i++) {
		mime_cache_part(mc, i, &r);
		if (r.kind != MIME_KIND_LEAF || r.hdr_off > len || r.hdr_len > len - r.hdr_off ||
		    r.body_off > len || r.body_len > len - r.body_off)
			continue;
		enum ptype t = part_type(msg + r.hdr_off, (size_t)r.hdr_len);
		if (t == P_PLAIN)
			plain = i;
		else if (t == P_HTML && html == MIME_NO_PART)
			html = i;
	}
	uint32_t use = plain != MIME_NO_PART ? plain : html;
	if (use == MIME_NO_PART)
		return;
	mime_cache_part(mc, use, &r);
	size_t max = use == plain ? PREVIEW_PLAIN_MAX : PREVIEW_HTML_MAX;
	size_t blen = (size_t)r.body_len < max ? (size_t)r.body_len : max;
	const char *body = msg + r.body_off;
	struct buf dec = BUF_INIT, utf = BUF_INIT, cs = BUF_INIT;
	enum mime_encoding enc = (enum mime_encoding)r.enc;
	if (enc == MIME_ENC_QP || enc == MIME_ENC_BASE64) {
		mime_decode(enc, body, blen, &dec);
		body = dec.data ? dec.data : "";
		blen = dec.len;
	}
	mime_text_charset(msg + r.hdr_off, (size_t)r.hdr_len, &cs);
	buf_append(&cs, "", 0);
	if (!mime_to_utf8(cs.data, body, blen, &utf))
		mime_to_utf8("utf-8", body, blen, &utf);
	if (use == plain)
		pv_text(&v, utf.data ? utf.data : "", utf.len);
	else
		pv_html(&v, utf.data ? utf.data : "", utf.len);
	buf_free(&dec);
	buf_free(&utf);
	buf_free(&cs);
}
