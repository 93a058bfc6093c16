/* Text extraction for the full-text index (see extract.h). Each column
 * mirrors one matcher of mime_text.c step by step: the same parts, the same
 * decoders (mime_decode, mime_decode_words, mime_to_utf8,
 * mime_address_text) and the same folding (mime_search_fold). A value of
 * the matcher is always a substring of a column, so every needle it finds
 * is in the column too (RFC 9051 6.4.4: substring, case-insensitive). */
#include "mime/extract.h"

#include <string.h>
#include <strings.h>

#include "mime/mime.h"
#include "mime/mime_int.h"

struct xctx {
	struct buf raw, dec, fold, html, charset;
	struct buf *cols;
};

/* Folds [p, p + n) and appends it to column c, "\n" first if not empty;
 * NUL octets become "\n" (an FTS5 tokenizer stops at a NUL). */
static void put(struct xctx *x, int c, const char *p, size_t n)
{
	struct buf *col = &x->cols[c];
	mime_search_fold(p, n, &x->fold);
	if (col->len > 0)
		buf_appendc(col, '\n');
	size_t at = col->len;
	buf_append(col, x->fold.data ? x->fold.data : "", x->fold.len);
	for (size_t i = at; i < col->len; i++)
		if (col->data[i] == '\0')
			col->data[i] = '\n';
}

static bool part_ok(const struct mime_part_rec *r, size_t len)
{
	return r->hdr_off <= len && r->hdr_len <= len - r->hdr_off && r->body_off <= len &&
	       r->body_len <= len - r->body_off;
}

/* mime_search_header / mime_search_address on the top-level header */
static void top_header(struct xctx *x, const char *h, size_t n)
{
	static const struct {
		const char *name;
		int col;
	} addr[] = {{"From", MIME_X_FROM}, {"To", MIME_X_TO}, {"Cc", MIME_X_CC}, {"Bcc", MIME_X_BCC}};
	const char *pos = h;
	struct mime_field f;

	while (mime_field_next(&pos, h + n, &f)) {
		if (mime_field_is(&f, "Subject")) {
			buf_reset(&x->dec);
			mime_decode_words(f.value, f.value_len, &x->dec);
			put(x, MIME_X_SUBJECT, x->dec.data ? x->dec.data : "", x->dec.len);
			continue;
		}
		for (size_t i = 0; i < sizeof addr / sizeof addr[0]; i++) {
			if (!mime_field_is(&f, addr[i].name))
				continue;
			buf_reset(&x->raw);
			mime_address_text(f.value, f.value_len, &x->raw);
			buf_reset(&x->dec);
			mime_decode_words(x->raw.data ? x->raw.data : "", x->raw.len, &x->dec);
			put(x, addr[i].col, x->dec.data ? x->dec.data : "", x->dec.len);
		}
	}
}

/* The fields whose signature values are left out of the index (see
 * mime_extract_unindexed). */
static bool signature_field(const char *name, size_t len)
{
	static const char *const names[] = {"DKIM-Signature", "ARC-Seal",
					    "ARC-Message-Signature"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (mime_eq(name, len, names[i]))
			return true;
	return false;
}

bool mime_extract_unindexed(const char *field)
{
	return signature_field(field, strlen(field));
}

static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A signature field's tag-list (RFC 6376 3.2, RFC 8617 4.1) into out, the
 * values of its tags "b" (the signature) and "bh" (the body hash) left out:
 * "b=" stays, what follows up to the next ";" goes. Tag names are
 * case-sensitive (RFC 6376 3.2). */
static void strip_signature(const char *v, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		size_t end = i;
		while (end < n && v[end] != ';')
			end++;
		const char *eq = memchr(v + i, '=', end - i);
		size_t a = i, b = eq != NULL ? (size_t)(eq - v) : i;
		while (a < b && is_fws(v[a]))
			a++;
		while (b > a && is_fws(v[b - 1]))
			b--;
		bool drop = eq != NULL && ((b - a == 1 && v[a] == 'b') ||
					   (b - a == 2 && v[a] == 'b' && v[a + 1] == 'h'));
		buf_append(out, v + i, drop ? (size_t)(eq + 1 - (v + i)) : end - i);
		if (end < n)
			buf_appendc(out, ';');
		i = end + 1;
	}
}

/* s_header(..., NULL) of mime_text.c: "Name: " and the decoded value; a
 * signature field without its base64 values (mime_extract_unindexed) */
static void all_fields(struct xctx *x, const char *h, size_t n)
{
	const char *pos = h;
	struct mime_field f;

	while (mime_field_next(&pos, h + n, &f)) {
		const char *v = f.value;
		size_t vlen = f.value_len;
		if (signature_field(f.name, f.name_len)) {
			buf_reset(&x->raw);
			strip_signature(f.value, f.value_len, &x->raw);
			v = x->raw.data ? x->raw.data : "";
			vlen = x->raw.len;
		}
		buf_reset(&x->dec);
		buf_append(&x->dec, f.name, f.name_len);
		buf_append(&x->dec, ": ", 2);
		mime_decode_words(v, vlen, &x->dec);
		put(x, MIME_X_HDR, x->dec.data, x->dec.len);
	}
}

void mime_extract_text(const char *msg, size_t len, const void *cache, size_t cache_len,
		       struct buf *cols)
{
	struct xctx x = {BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, cols};
	struct buf built = BUF_INIT;
	struct mime_cache mc;

	if (cache == NULL || !mime_cache_open(&mc, cache, cache_len)) {
		mime_cache_build(msg, len, &built);
		if (!mime_cache_open(&mc, built.data, built.len)) {
			buf_free(&built);
			return;
		}
	}
	for (uint32_t i = 0; i < mc.n_parts; i++) {
		struct mime_part_rec r;

		mime_cache_part(&mc, i, &r);
		if (!part_ok(&r, len))
			continue;
		if (i == 0)
			top_header(&x, msg + r.hdr_off, (size_t)r.hdr_len);
		all_fields(&x, msg + r.hdr_off, (size_t)r.hdr_len);
		/* mime_search_body: text leaves, decoded, in UTF-8 */
		bool html;
		if (r.kind != MIME_KIND_LEAF ||
		    !mime_text_type(msg + r.hdr_off, (size_t)r.hdr_len, &x.charset, &html))
			continue;
		const char *body = msg + r.body_off;
		size_t blen = (size_t)r.body_len;
		enum mime_encoding enc = (enum mime_encoding)r.enc;
		if (enc == MIME_ENC_QP || enc == MIME_ENC_BASE64) {
			buf_reset(&x.raw);
			mime_decode(enc, body, blen, &x.raw);
			body = x.raw.data ? x.raw.data : "";
			blen = x.raw.len;
		}
		body = mime_body_text(body, blen, x.charset.data, html, &x.dec, &x.html, &blen);
		put(&x, MIME_X_BODY, body, blen);
	}
	buf_free(&built);
	buf_free(&x.raw);
	buf_free(&x.dec);
	buf_free(&x.fold);
	buf_free(&x.html);
	buf_free(&x.charset);
}

bool mime_extract_needle(const char *needle, struct buf *out)
{
	struct buf chk = BUF_INIT;
	size_t n = strlen(needle);
	bool ok;

	/* valid UTF-8 is what mime_to_utf8("utf-8") copies unchanged */
	mime_to_utf8("utf-8", needle, n, &chk);
	ok = n == 0 || (chk.len == n && memcmp(chk.data, needle, n) == 0);
	buf_free(&chk);
	if (ok)
		mime_search_fold(needle, n, out);
	return ok;
}
