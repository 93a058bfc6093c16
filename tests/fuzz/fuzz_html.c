/* libFuzzer harness for the HTML reducer (src/mime/html.c). Input: any
 * bytes as a text/html part. Checked: the text is the same fed whole and fed
 * in chunks (their sizes taken from the input's first octets), never longer
 * than the input (no reference or separator gives more octets than it
 * took), and its white space is separators only: one ' ' or '\n' between
 * two texts, none at either end, no TAB, CR or FF; valid UTF-8 in gives
 * valid UTF-8 out (references: surrogates, 0 and > U+10FFFF are U+FFFD). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mime/html.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 3629 4: no overlong form, no surrogate, nothing above U+10FFFF */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1);
	memcpy(in, data, size);
	struct buf whole = BUF_INIT, parts = BUF_INIT;
	mime_html_text(in, size, &whole);

	struct mime_html h;
	mime_html_init(&h);
	size_t i = 0, k = 0;
	while (i < size) {
		size_t step = 1 + (size > 0 ? data[k++ % size] % 17 : 0);
		if (step > size - i)
			step = size - i;
		mime_html_feed(&h, in + i, step, &parts);
		i += step;
	}
	mime_html_finish(&h, &parts);

	if (whole.len != parts.len || memcmp(whole.data, parts.data, whole.len) != 0)
		abort();
	if (whole.len > size)
		abort();
	const char *p = whole.data;
	size_t n = whole.len;
	for (size_t j = 0; j < n; j++) {
		bool sp = p[j] == ' ' || p[j] == '\n';
		if (p[j] == '\t' || p[j] == '\r' || p[j] == '\f')
			abort();
		if (sp && (j == 0 || j + 1 == n || p[j + 1] == ' ' || p[j + 1] == '\n'))
			abort();
	}
	if (utf8_ok(data, size) && !utf8_ok((const unsigned char *)p, n))
		abort();
	buf_free(&whole);
	buf_free(&parts);
	free(in);
	return 0;
}
