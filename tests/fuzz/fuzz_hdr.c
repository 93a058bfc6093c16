/* libFuzzer harness for the streaming header reader (src/policy/hdr.c).
 * Input: byte 0 = max_field (1..256), byte 1 = max_fields (0..255), bytes
 * 2-3 = where to split the rest into two feed calls. Checked: the fields
 * handed out, concatenated, then the body, equal what one feed of the whole
 * input gives (the result does not depend on how the input is cut); every
 * field is nonempty, at most max_field octets, its name within it. ('|'
 * marks a body piece and is dropped from both sides before comparing.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "policy/hdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct acc {
	struct buf b;
	size_t max_field;
};

static bool on_field(void *arg, const struct hdr_field *f)
{
	struct acc *a = arg;
	if (f->len == 0 || f->len > a->max_field || f->name_len > f->len)
		abort();
	buf_printf(&a->b, "<%zu%d%d>", f->name_len, f->truncated, f->over_limit);
	buf_append(&a->b, f->raw, f->len);
	return true;
}

static void on_body(void *arg, const char *p, size_t n)
{
	struct acc *a = arg;
	buf_appendc(&a->b, '|');
	buf_append(&a->b, p, n);
}

static void run(const char *p, size_t n, size_t split, size_t max_field, size_t max_fields,
		struct acc *a)
{
	struct hdr_reader r;
	buf_init(&a->b);
	a->max_field = max_field;
	hdr_reader_init(&r, max_field, max_fields, on_field, on_body, a);
	hdr_reader_feed(&r, p, split);
	hdr_reader_feed(&r, p + split, n - split);
	hdr_reader_end(&r);
	hdr_reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	size_t max_field = (size_t)data[0] + 1, max_fields = data[1];
	size_t split = ((size_t)data[2] << 8 | data[3]);
	const char *p = (const char *)data + 4;
	size_t n = size - 4;
	if (split > n)
		split = n;
	struct acc whole, cut;
	run(p, n, n, max_field, max_fields, &whole);
	run(p, n, split, max_field, max_fields, &cut);
	/* body pieces may come in one or two calls: compare without markers */
	struct buf w = BUF_INIT, c = BUF_INIT;
	for (size_t i = 0; i < whole.b.len; i++)
		if (whole.b.data[i] != '|')
			buf_appendc(&w, whole.b.data[i]);
	for (size_t i = 0; i < cut.b.len; i++)
		if (cut.b.data[i] != '|')
			buf_appendc(&c, cut.b.data[i]);
	if (w.len != c.len || (w.len && memcmp(w.data, c.data, w.len) != 0))
		abort();
	buf_free(&w);
	buf_free(&c);
	buf_free(&whole.b);
	buf_free(&cut.b);
	return 0;
}
