/* libFuzzer harness for the full-text index's extractor (src/mime/extract.c)
 * against the matcher (mime_text.c). Input: byte 0 = needle length (mod
 * 16), then the needle, then the message. Checked: every needle the
 * matcher finds (SEARCH BODY, TEXT, SUBJECT, FROM) is, folded as the index
 * folds it (mime_extract_needle), a substring of the column the index
 * queries for it (store/fts.c: BODY the body column, TEXT the body or the
 * header columns), so the index, which only narrows, never drops a
 * message the scan would find; and the columns are valid UTF-8 (the
 * trigram tokenizer reads them as such). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mime/extract.h"
#include "mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool utf8_ok(const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t l;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			l = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			l = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			l = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < l)
			return false;
		for (size_t k = 1; k < l; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += l;
	}
	return true;
}

static bool has(const struct buf *col, const struct buf *n)
{
	return n->len == 0 ||
	       (col->len >= n->len && memmem(col->data, col->len, n->data, n->len) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t nl = data[0] % 16;
	if (size < 1 + nl)
		return 0;
	char needle[17];
	memcpy(needle, data + 1, nl);
	needle[nl] = '\0';
	if (strlen(needle) != nl)
		return 0; /* a NUL: not an IMAP string */
	size_t len = size - 1 - nl;
	char *msg = malloc(len ? len : 1);
	memcpy(msg, data + 1 + nl, len);

	struct buf cols[MIME_X_N], folded = BUF_INIT, built = BUF_INIT;
	for (int c = 0; c < MIME_X_N; c++)
		cols[c] = (struct buf)BUF_INIT;
	mime_extract_text(msg, len, NULL, 0, cols);
	for (int c = 0; c < MIME_X_N; c++)
		if (!utf8_ok((const unsigned char *)cols[c].data, cols[c].len))
			abort();
	if (mime_extract_needle(needle, &folded)) {
		struct mime_cache mc;
		mime_cache_build(msg, len, &built);
		if (!mime_cache_open(&mc, built.data, built.len))
			abort();
		if (mime_search_body(msg, len, &mc, needle, false) &&
		    !has(&cols[MIME_X_BODY], &folded))
			abort();
		if (mime_search_body(msg, len, &mc, needle, true) &&
		    !has(&cols[MIME_X_BODY], &folded) && !has(&cols[MIME_X_HDR], &folded))
			abort();
		if (mime_search_header(msg, len, &mc, "Subject", needle) &&
		    !has(&cols[MIME_X_SUBJECT], &folded))
			abort();
		if (mime_search_address(msg, len, &mc, "From", needle) &&
		    !has(&cols[MIME_X_FROM], &folded))
			abort();
	}
	for (int c = 0; c < MIME_X_N; c++)
		buf_free(&cols[c]);
	buf_free(&folded);
	buf_free(&built);
	free(msg);
	return 0;
}
