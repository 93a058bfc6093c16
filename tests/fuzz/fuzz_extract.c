/* libFuzzer harness for the full-text index's extractor (src/mime/extract.c)
 * against the matcher (mime_text.c). Input: byte 0 = needle length (mod
 * 16), then the needle, then the message. Checked: every needle the
 * matcher finds (SEARCH BODY, TEXT, SUBJECT, FROM) is, folded as the index
 * folds it (mime_extract_needle), a substring of the column the index
 * queries for it (store/fts.c: BODY the body column, TEXT the body or the
 * header columns), so the index, which only narrows, never drops a
 * message the scan would find; and the columns are valid UTF-8 (the
 * trigram tokenizer reads them as such). The one exception, TEXT in a
 * message with a signature field (mime_extract_unindexed: its b= and bh=
 * values are not in the header column), is not checked for TEXT: a message
 * naming one of those fields anywhere skips that check. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mime/extract.h"
#include "mime/mime.h"
#include "fuzz_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool has(const struct buf *col, const struct buf *n)
{
	return n->len == 0 ||
	       (col->len >= n->len && memmem(col->data, col->len, n->data, n->len) != NULL);
}

/* True if msg names a field whose values the index leaves out (anywhere,
 * case-insensitively: a superset of the fields the extractor strips). */
static bool names_signature(const char *msg, size_t len)
{
	static const char *const names[] = {"dkim-signature", "arc-seal",
					    "arc-message-signature"};
	char *low = malloc(len ? len : 1);
	for (size_t i = 0; i < len; i++)
		low[i] = (char)tolower((unsigned char)msg[i]);
	bool found = false;
	for (size_t i = 0; i < sizeof names / sizeof names[0] && !found; i++)
		found = memmem(low, len, names[i], strlen(names[i])) != NULL;
	free(low);
	return found;
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
		if (!fuzz_utf8_valid((const unsigned char *)cols[c].data, cols[c].len))
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
		    !has(&cols[MIME_X_BODY], &folded) && !has(&cols[MIME_X_HDR], &folded) &&
		    !names_signature(msg, len))
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
