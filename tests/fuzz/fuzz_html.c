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
#include "fuzz_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	if (fuzz_utf8_valid(data, size) && !fuzz_utf8_valid((const unsigned char *)p, n))
		abort();
	buf_free(&whole);
	buf_free(&parts);
	free(in);
	return 0;
}
