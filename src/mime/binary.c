/* APPEND of a literal8 (RFC 3516 4.4): binary parts holding a NUL rewritten
 * as base64 (see mime.h). The output is produced in bounded pieces through
 * a sink, so that a message of any size can go straight to a spool file:
 * the caller's memory is the MIME cache of the message (bounded by
 * MIME_MAX_PARTS) plus one line of base64, never a copy of the message. */
#include <string.h>

#include "core/base64.h"
#include "core/xmalloc.h"
#include "mime/mime.h"
#include "mime/mime_int.h"

/* base64 of this many octets per sink call: 57-octet lines (76 characters,
 * RFC 2045 6.8) of one chunk at a time */
#define B64_LINES_PER_CHUNK 256
#define B64_LINE 57

static bool part_ok(const struct mime_part_rec *r, size_t len)
{
	return r->hdr_off <= len && r->hdr_len <= len - r->hdr_off && r->body_off <= len &&
	       r->body_len <= len - r->body_off;
}

/* If part i is one to convert: true with [*cte, *cte_end) its
 * Content-Transfer-Encoding field (with its line end). */
static bool part_wanted(const char *msg, size_t len, const struct mime_part_rec *r,
			uint64_t done, const char **cte_r, const char **cte_end_r)
{
	struct mime_field f;
	const char *pos, *end, *cte = NULL, *cte_end = NULL;
	unsigned n_cte = 0;

	if (r->kind != MIME_KIND_LEAF || !part_ok(r, len) || r->hdr_off < done ||
	    r->body_off < r->hdr_off + r->hdr_len)
		return false;
	pos = msg + r->hdr_off;
	end = pos + r->hdr_len;
	while (mime_field_next(&pos, end, &f)) {
		if (mime_field_is(&f, "Content-Transfer-Encoding")) {
			const char *v = f.value, *ve = f.value + f.value_len;

			/* "binary", on one line (as Dovecot) */
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			if (!mime_eq(v, (size_t)(ve - v), "binary"))
				n_cte++; /* another one: left alone */
			cte = f.name;
			cte_end = pos;
			n_cte++;
		}
	}
	if (n_cte != 1 || cte_end[-1] != '\n')
		return false;
	/* only NUL cannot travel in a plain literal (RFC 9051 4.3, CHAR8):
	 * other binary content is stored as it came */
	if (memchr(msg + r->body_off, '\0', (size_t)r->body_len) == NULL)
		return false;
	*cte_r = cte;
	*cte_end_r = cte_end;
	return true;
}

bool mime_binary_convert(const char *msg, size_t len, mime_sink_fn *sink, void *arg)
{
	struct buf cache = BUF_INIT;
	struct mime_cache mc;
	uint64_t done = 0;
	bool any = false;
	uint32_t i;
	char *line = NULL;

	mime_cache_build(msg, len, &cache);
	if (!mime_cache_open(&mc, cache.data, cache.len)) {
		buf_free(&cache);
		return false;
	}
	for (i = 0; i < mc.n_parts; i++) {
		struct mime_part_rec r;
		const char *cte, *cte_end;
		uint64_t k;

		mime_cache_part(&mc, i, &r);
		if (!part_wanted(msg, len, &r, done, &cte, &cte_end))
			continue;
		if (line == NULL)
			line = xmalloc(B64_LINES_PER_CHUNK * 78);
		sink(arg, msg + done, (size_t)(cte - (msg + done)));
		sink(arg, "Content-Transfer-Encoding: base64\r\n", 35);
		sink(arg, cte_end, (size_t)(msg + r.body_off - cte_end));
		/* RFC 2045 6.8: lines of at most 76 characters (57 octets each);
		 * the line break before the boundary stays the boundary's */
		size_t fill = 0;
		for (k = 0; k < r.body_len; k += B64_LINE) {
			size_t n = r.body_len - k < B64_LINE ? (size_t)(r.body_len - k) : B64_LINE;
			char *e = base64_encode(msg + r.body_off + k, n);
			size_t el = strlen(e);

			if (k > 0) {
				line[fill++] = '\r';
				line[fill++] = '\n';
			}
			memcpy(line + fill, e, el);
			fill += el;
			free(e);
			if (fill > (B64_LINES_PER_CHUNK - 1) * 78) {
				sink(arg, line, fill);
				fill = 0;
			}
		}
		if (fill > 0)
			sink(arg, line, fill);
		done = r.body_off + r.body_len;
		any = true;
	}
	if (any)
		sink(arg, msg + done, (size_t)(len - done));
	free(line);
	buf_free(&cache);
	return any;
}

static void buf_sink(void *arg, const char *p, size_t n)
{
	buf_append(arg, p, n);
}

bool mime_binary_to_base64(const char *msg, size_t len, struct buf *out)
{
	/* nothing can qualify without a NUL: no parse at all */
	if (memchr(msg, '\0', len) == NULL)
		return false;
	return mime_binary_convert(msg, len, buf_sink, out);
}

/* ---- the other way: BINARY of a multipart or message part (RFC 3516) ---- */

bool mime_binary_decode(const char *msg, size_t len, bool keep_cte, mime_sink_fn *sink,
			void *arg)
{
	struct buf cache = BUF_INIT, dec = BUF_INIT;
	struct mime_cache mc;
	uint64_t done = 0;

	mime_cache_build(msg, len, &cache);
	if (!mime_cache_open(&mc, cache.data, cache.len)) {
		buf_free(&cache);
		return false;
	}
	for (uint32_t i = 0; i < mc.n_parts; i++) {
		struct mime_part_rec r;

		mime_cache_part(&mc, i, &r);
		if (r.kind != MIME_KIND_LEAF || !part_ok(&r, len) || r.hdr_off < done ||
		    r.body_off < r.hdr_off + r.hdr_len ||
		    (r.enc != MIME_ENC_BASE64 && r.enc != MIME_ENC_QP))
			continue;
		if (keep_cte) {
			sink(arg, msg + done, (size_t)(r.body_off - done));
		} else {
			/* as Dovecot: the Content-Transfer-Encoding fields
			 * dropped, "binary" added at the end of the header */
			const char *pos = msg + r.hdr_off, *end = pos + r.hdr_len;
			const char *from = msg + done;
			struct mime_field f;
			const char *last = pos;
			while (mime_field_next(&pos, end, &f)) {
				if (mime_field_is(&f, "Content-Transfer-Encoding")) {
					sink(arg, from, (size_t)(f.name - from));
					from = pos;
				}
				last = pos;
			}
			sink(arg, from, (size_t)(last - from));
			sink(arg, "Content-Transfer-Encoding: binary\r\n", 35);
			sink(arg, last, (size_t)(msg + r.body_off - last));
		}
		buf_reset(&dec);
		mime_decode((enum mime_encoding)r.enc, msg + r.body_off, (size_t)r.body_len, &dec);
		if (dec.len > 0)
			sink(arg, dec.data, dec.len);
		done = r.body_off + r.body_len;
	}
	sink(arg, msg + done, (size_t)(len - done));
	buf_free(&dec);
	buf_free(&cache);
	return true;
}
