/* libFuzzer harness for the streaming 8BITMIME downgrade (src/mime/downgrade.c).
 * Input: byte 0 bit 0 = use the message's MIME cache (else none); bytes 1-2
 * = where to split the message; the rest is the message. Checked:
 *   - the output does not depend on the chunking (whole vs two pieces vs
 *     one octet at a time for short messages);
 *   - every encoded body line is at most 76 characters: the output of a
 *     message whose header has no 8-bit octet, without cache, holds no
 *     octet >= 0x80 at all (one quoted-printable part). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mime/downgrade.h"
#include "mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(const char *msg, size_t n, const struct buf *cache, size_t split, size_t step,
                struct buf *out)
{
	struct mime_dg d;
	mime_dg_init(&d, cache ? cache->data : NULL, cache ? cache->len : 0);
	if (step) {
		for (size_t i = 0; i < n; i += step)
			mime_dg_feed(&d, msg + i, n - i < step ? n - i : step, out);
	} else {
		mime_dg_feed(&d, msg, split, out);
		mime_dg_feed(&d, msg + split, n - split, out);
	}
	mime_dg_finish(&d, out);
	mime_dg_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	bool use_cache = data[0] & 1;
	const char *msg = (const char *)data + 3;
	size_t n = size - 3;
	size_t split = ((size_t)data[1] << 8 | data[2]) % (n + 1);
	struct buf cache = BUF_INIT, a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;
	if (use_cache)
		mime_cache_build(msg, n, &cache);
	run(msg, n, use_cache ? &cache : NULL, n, 0, &a);
	run(msg, n, use_cache ? &cache : NULL, split, 0, &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		abort();
	if (n < 4096) {
		run(msg, n, use_cache ? &cache : NULL, 0, 1, &c);
		if (a.len != c.len || memcmp(a.data, c.data, a.len) != 0)
			abort();
	}
	if (!use_cache) {
		/* the header ends at the first empty line; 8-bit octets there stay */
		const char *h = memmem(msg, n, "\n\n", 2), *h2 = memmem(msg, n, "\n\r\n", 3);
		if (h == NULL || (h2 && h2 < h))
			h = h2;
		size_t hl = h ? (size_t)(h - msg) : n;
		bool hdr8 = false;
		for (size_t i = 0; i < hl; i++)
			if ((unsigned char)msg[i] >= 0x80)
				hdr8 = true;
		if (!hdr8 && n > 0 && msg[0] != '\n' && msg[0] != '\r')
			for (size_t i = 0; i < a.len; i++)
				if ((unsigned char)a.data[i] >= 0x80)
					abort();
	}
	buf_free(&cache);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
	return 0;
}
