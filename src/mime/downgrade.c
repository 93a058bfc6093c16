/* The 8BITMIME downgrade, streaming (see downgrade.h).
 *
 * A plan of the parts to convert is made from the MIME cache first (their
 * header and body ranges, in message order); feeding then walks the input
 * once: bytes outside those ranges pass as they are, a part's header is
 * held until its end and written back with the new
 * Content-Transfer-Encoding, its body goes through the part's encoder. */
#include "mime/downgrade.h"

#include <string.h>

#include "mime/mime.h"
#include "mime/mime_int.h"

#define DG_UNKNOWN UINT64_MAX /* header: up to the blank line; body: to the end */

enum { DG_NONE, DG_QP, DG_B64 };

struct mime_dg_part {
	uint64_t hdr_off, hdr_end, body_off, body_end;
	uint8_t enc;
	bool top; /* the message's own header (MIME-Version decides) */
};

static void dg_add(struct mime_dg *d, uint64_t ho, uint64_t he, uint64_t bo, uint64_t be,
                   uint8_t enc, bool top)
{
	d->parts = xrealloc(d->parts, (d->n_parts + 1) * sizeof *d->parts);
	d->parts[d->n_parts++] = (struct mime_dg_part){ho, he, bo, be, enc, top};
}

void mime_dg_init(struct mime_dg *d, const void *cache, size_t cache_len)
{
	struct mime_cache mc;
	memset(d, 0, sizeof *d);
	buf_init(&d->hdr);
	if (cache == NULL || !mime_cache_open(&mc, cache, cache_len)) {
		dg_add(d, 0, DG_UNKNOWN, DG_UNKNOWN, DG_UNKNOWN, MIME_ENC_8BIT, true);
		return;
	}
	uint64_t done = 0;
	for (uint32_t i = 0; i < mc.n_parts; i++) {
		struct mime_part_rec r;
		mime_cache_part(&mc, i, &r);
		if (r.kind != MIME_KIND_LEAF ||
		    (r.enc != MIME_ENC_7BIT && r.enc != MIME_ENC_8BIT && r.enc != MIME_ENC_BINARY))
			continue;
		/* A cache of another message cannot make the walk go back. */
		uint64_t he = r.hdr_off + r.hdr_len, be = r.body_off + r.body_len;
		if (r.hdr_off < done || he < r.hdr_off || r.body_off < he || be < r.body_off)
			continue;
		dg_add(d, r.hdr_off, he, r.body_off, be, r.enc, i == 0);
		done = be;
	}
}

bool mime_dg_failed(const struct mime_dg *d)
{
	return d->failed;
}

void mime_dg_free(struct mime_dg *d)
{
	free(d->parts);
	buf_free(&d->hdr);
	memset(d, 0, sizeof *d);
}

/* ---- encoders ---- */

static const char hex[] = "0123456789ABCDEF";

/* RFC 2045 6.7 rule 5: encoded lines are at most 76 characters; a soft
 * line break "=" ends a line that goes on. */
static void qp_put(struct mime_dg *d, struct buf *out, const char *s, size_t n)
{
	if (d->col + n > 75) {
		buf_append(out, "=\r\n", 3);
		d->col = 0;
	}
	buf_append(out, s, n);
	d->col = (uint8_t)(d->col + n);
}

static void qp_enc(struct mime_dg *d, struct buf *out, unsigned char c)
{
	char e[3] = {'=', hex[c >> 4], hex[c & 15]};
	qp_put(d, out, e, 3);
}

/* The held white space: literal when text follows it on the line, encoded
 * before a line end (rule 3: trailing white space would be lost). */
static void qp_flush_ws(struct mime_dg *d, struct buf *out, bool at_eol)
{
	if (d->ws == 0)
		return;
	char w = d->ws;
	d->ws = 0;
	if (at_eol)
		qp_enc(d, out, (unsigned char)w);
	else
		qp_put(d, out, &w, 1);
}

static void qp_byte(struct mime_dg *d, struct buf *out, unsigned char c)
{
	if (d->cr) {
		d->cr = false;
		if (c == '\n') {
			qp_flush_ws(d, out, true);
			buf_append(out, "\r\n", 2); /* rule 4: a line break is CRLF */
			d->col = 0;
			return;
		}
		qp_flush_ws(d, out, false);
		qp_enc(d, out, '\r'); /* a lone CR is data */
	}
	if (c == '\r') {
		d->cr = true;
	} else if (c == '\n') {
		/* a bare LF ends a line too (the wire is CRLF only) */
		qp_flush_ws(d, out, true);
		buf_append(out, "\r\n", 2);
		d->col = 0;
	} else if (c == ' ' || c == '\t') {
		qp_flush_ws(d, out, false);
		d->ws = (char)c;
	} else {
		qp_flush_ws(d, out, false);
		/* rule 2: 33..126 except "=" as themselves */
		if (c >= 33 && c <= 126 && c != '=') {
			char ch = (char)c;
			qp_put(d, out, &ch, 1);
		} else {
			qp_enc(d, out, c);
		}
	}
}

static void qp_end(struct mime_dg *d, struct buf *out)
{
	if (d->cr) {
		d->cr = false;
		qp_flush_ws(d, out, false);
		qp_enc(d, out, '\r');
	}
	qp_flush_ws(d, out, true);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 2045 6.8: lines of at most 76 characters. */
static void b64_quad(struct mime_dg *d, struct buf *out, size_t n)
{
	char q[4];
	unsigned v = (unsigned)d->b3[0] << 16 | (n > 1 ? (unsigned)d->b3[1] << 8 : 0) |
	             (n > 2 ? d->b3[2] : 0);
	q[0] = b64[(v >> 18) & 63];
	q[1] = b64[(v >> 12) & 63];
	q[2] = n > 1 ? b64[(v >> 6) & 63] : '=';
	q[3] = n > 2 ? b64[v & 63] : '=';
	if (d->col >= 76) {
		buf_append(out, "\r\n", 2);
		d->col = 0;
	}
	buf_append(out, q, 4);
	d->col = (uint8_t)(d->col + 4);
}

static void b64_bytes(struct mime_dg *d, struct buf *out, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		d->b3[d->nb++] = p[i];
		if (d->nb == 3) {
			b64_quad(d, out, 3);
			d->nb = 0;
		}
	}
}

static void b64_end(struct mime_dg *d, struct buf *out)
{
	if (d->nb > 0)
		b64_quad(d, out, d->nb);
	d->nb = 0;
}

static void enc_bytes(struct mime_dg *d, struct buf *out, const char *p, size_t n)
{
	if (d->mode == DG_QP) {
		buf_reserve(out, n + n / 2);
		for (size_t i = 0; i < n; i++)
			qp_byte(d, out, (unsigned char)p[i]);
	} else if (d->mode == DG_B64) {
		buf_reserve(out, n / 3 * 4 + n / 50 + 8);
		b64_bytes(d, out, (const unsigned char *)p, n);
	} else {
		buf_append(out, p, n);
	}
}

static void enc_end(struct mime_dg *d, struct buf *out)
{
	if (d->mode == DG_QP)
		qp_end(d, out);
	else if (d->mode == DG_B64)
		b64_end(d, out);
	d->mode = DG_NONE;
	d->col = 0;
}

/* ---- headers ---- */

/* Where the blank line of the header block [h, h + n) starts (n if none). */
static size_t hdr_blank(const char *h, size_t n)
{
	if (n >= 2 && h[n - 1] == '\n' && h[n - 2] == '\r' && (n == 2 || h[n - 3] == '\n'))
		return n - 2;
	if (n >= 1 && h[n - 1] == '\n' && (n == 1 || h[n - 2] == '\n'))
		return n - 1;
	return n;
}

/* Writes the held header back with the new fields; chooses the encoder. */
static void hdr_rewrite(struct mime_dg *d, const struct mime_dg_part *pt, struct buf *out)
{
	const char *h = d->hdr.data ? d->hdr.data : "", *end = h + d->hdr.len;
	size_t blank = hdr_blank(h, d->hdr.len);
	const char *bl = h + blank;
	struct mime_field f;
	const char *pos = h, *copied = h;
	bool has_mv = false, has_ct = false;

	/* The fields that decide. */
	while (mime_field_next(&pos, bl, &f)) {
		if (mime_field_is(&f, "MIME-Version"))
			has_mv = true;
		else if (mime_field_is(&f, "Content-Type"))
			has_ct = true;
	}
	bool nonmime = pt->top && !has_mv;
	struct buf cs = BUF_INIT;
	bool text = mime_text_charset(h, blank, &cs);
	buf_free(&cs);
	if (nonmime || pt->enc == MIME_ENC_7BIT || (text && pt->enc == MIME_ENC_8BIT))
		d->mode = DG_QP;
	else
		d->mode = DG_B64;

	pos = h;
	while (mime_field_next(&pos, bl, &f)) {
		if (mime_field_is(&f, "Content-Transfer-Encoding")) {
			buf_append(out, copied, (size_t)(f.name - copied));
			copied = pos;
		}
	}
	buf_append(out, copied, (size_t)(bl - copied));
	if (bl > h && bl[-1] != '\n')
		buf_append(out, "\r\n", 2); /* a header cut short (no line end) */
	if (nonmime) {
		buf_appends(out, "MIME-Version: 1.0\r\n");
		if (!has_ct)
			buf_appends(out, "Content-Type: text/plain; charset=unknown-8bit\r\n");
	}
	buf_appends(out, d->mode == DG_QP ? "Content-Transfer-Encoding: quoted-printable\r\n"
	                                  : "Content-Transfer-Encoding: base64\r\n");
	if (bl < end)
		buf_append(out, bl, (size_t)(end - bl));
	else
		buf_append(out, "\r\n", 2); /* the header had no end: now it has */
	buf_reset(&d->hdr);
	d->col = 0;
	d->hdr_done = true;
}

/* No cache: the header ends at the first empty line. Returns the length of
 * the header block in [h, h + n) including its blank line, or 0. */
static size_t hdr_find_end(const char *h, size_t n, size_t from)
{
	size_t i = from > 2 ? from - 2 : 0;
	/* an empty header: the message starts with its blank line */
	if (n >= 1 && h[0] == '\n')
		return 1;
	if (n >= 2 && h[0] == '\r' && h[1] == '\n')
		return 2;
	for (; i < n; i++) {
		if (h[i] != '\n')
			continue;
		if (i + 1 < n && h[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && h[i + 1] == '\r' && h[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

void mime_dg_feed(struct mime_dg *d, const char *p, size_t n, struct buf *out)
{
	while (n > 0) {
		if (d->cur >= d->n_parts || d->failed) {
			buf_append(out, p, n);
			d->pos += n;
			return;
		}
		struct mime_dg_part *pt = &d->parts[d->cur];
		size_t k;
		if (d->pos < pt->hdr_off) {
			k = (size_t)min64(n, pt->hdr_off - d->pos);
			buf_append(out, p, k);
		} else if (pt->hdr_end == DG_UNKNOWN) {
			size_t had = d->hdr.len;
			k = (size_t)min64(n, MIME_DG_HDR_MAX + 3 - had);
			buf_append(&d->hdr, p, k);
			size_t e = hdr_find_end(d->hdr.data, d->hdr.len, had);
			if (e == 0 && d->hdr.len > MIME_DG_HDR_MAX) {
				d->failed = true;
				buf_append(out, d->hdr.data, d->hdr.len);
				buf_reset(&d->hdr);
			} else if (e > 0) {
				/* the header ends inside this chunk: the rest is body */
				k = e - had;
				d->hdr.len = e;
				pt->hdr_end = pt->body_off = pt->hdr_off + e;
				hdr_rewrite(d, pt, out);
			}
		} else if (d->pos < pt->hdr_end) {
			k = (size_t)min64(n, pt->hdr_end - d->pos);
			if (d->hdr.len + k > MIME_DG_HDR_MAX) {
				d->failed = true;
				buf_append(out, d->hdr.data, d->hdr.len);
				buf_reset(&d->hdr);
				continue;
			}
			buf_append(&d->hdr, p, k);
			if (d->pos + k == pt->hdr_end)
				hdr_rewrite(d, pt, out);
		} else if (d->pos < pt->body_off) {
			k = (size_t)min64(n, pt->body_off - d->pos);
			buf_append(out, p, k);
		} else {
			if (!d->hdr_done)
				hdr_rewrite(d, pt, out); /* an empty header range */
			k = (size_t)min64(n, pt->body_end - d->pos);
			enc_bytes(d, out, p, k);
			if (d->pos + k == pt->body_end) {
				enc_end(d, out);
				d->cur++;
				d->hdr_done = false;
			}
		}
		p += k;
		n -= k;
		d->pos += k;
	}
}

void mime_dg_finish(struct mime_dg *d, struct buf *out)
{
	if (d->cur < d->n_parts && !d->failed) {
		struct mime_dg_part *pt = &d->parts[d->cur];
		if (d->pos >= pt->hdr_off && (pt->hdr_end == DG_UNKNOWN || d->pos < pt->hdr_end)) {
			/* the message ended inside the header: no body */
			if (d->pos > pt->hdr_off || pt->hdr_end == DG_UNKNOWN)
				hdr_rewrite(d, pt, out);
		} else if (d->pos >= pt->body_off) {
			if (!d->hdr_done)
				hdr_rewrite(d, pt, out);
			enc_end(d, out);
		}
	}
	d->cur = d->n_parts;
}
