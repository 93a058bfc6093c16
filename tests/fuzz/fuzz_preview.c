/* libFuzzer harness for the RFC 8970 preview text (src/mime/preview.c).
 * Input: the message. Beyond "no crash, no read outside the message" (copied
 * to an exact-size buffer), it checks that the preview is valid UTF-8 of at
 * most MIME_PREVIEW_CHARS characters, without control characters, without
 * a space at either end or two in a row (RFC 8970 3.2: no CR, LF). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "mime/mime.h"
#include "mime/preview.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *msg = xmalloc(size ? size : 1);
	memcpy(msg, data, size);
	struct buf cache = BUF_INIT, out = BUF_INIT;
	struct mime_cache mc;
	mime_cache_build(msg, size, &cache);
	x_assert(mime_cache_open(&mc, cache.data, cache.len));
	mime_preview(msg, size, &mc, &out);
	const unsigned char *p = (const unsigned char *)(out.data ? out.data : "");
	size_t n = out.len, chars = 0;
	x_assert(strlen((const char *)p) == n);
	x_assert(n == 0 || (p[0] != ' ' && p[n - 1] != ' '));
	for (size_t i = 0; i < n; chars++) {
		unsigned char c = p[i];
		size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
			  : (c & 0xf8) == 0xf0 ? 4 : 0;
		x_assert(l > 0 && i + l <= n);
		for (size_t k = 1; k < l; k++)
			x_assert((p[i + k] & 0xc0) == 0x80);
		x_assert(c >= 0x20 && c != 0x7f);
		x_assert(!(c == ' ' && i + 1 < n && p[i + 1] == ' '));
		i += l;
	}
	x_assert(chars <= MIME_PREVIEW_CHARS);
	buf_free(&cache);
	buf_free(&out);
	free(msg);
	return 0;
}
