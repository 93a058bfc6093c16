/* libFuzzer harness for the DATA / BDAT content decoder (src/smtp/data.c).
 * Build: make fuzz (or clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *        -Isrc tests/fuzz/fuzz_smtp_data.c src/smtp/data.c src/mime/header.c
 *        src/core/{xmalloc,buf,log}.c)
 * Input: byte 0 = mode (bit 0: BDAT), insertions (bit 1: Message-ID, bit 2:
 * Date) and max_line (bits 3-7: 1..32, so long lines are frequent); bytes 1-2
 * = where to split the rest into two feed calls. The decoder's output is
 * compared with a plain reference written from the contract in data.h:
 *   - DATA ends exactly after the first CRLF "." CRLF (the content starts
 *     after DATA's CRLF), *used_r is the octets up to it, done is set; no
 *     other sequence ("\n.\n", "\r.\r\n", ...) ends it;
 *   - without insertions the output is the content dot-unstuffed (DATA) or
 *     unchanged (BDAT): exactly so once done, a prefix of it before that;
 *   - with insertions the output is that plus one block (the missing header
 *     lines, with at most one CRLF before or after them) at one place;
 *   - out_bytes counts every byte handed to the callback;
 *   - bare_cr, bare_lf and long_line as defined in data.h.
 * A decoded message may well contain CRLF "." CRLF (from "..", stuffed), so
 * that is not checked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "smtp/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_msgid[] = "Message-ID: <fuzz@example.test>\r\n";
static const char fuzz_date[] = "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n";

struct sink {
	struct buf b;
	uint64_t calls_bytes;
};

static void sink_out(void *arg, const char *p, size_t n)
{
	struct sink *k = arg;

	x_assert(n > 0);
	buf_append(&k->b, p, n);
	k->calls_bytes += n;
}

/* Octets of in[0..n) that a DATA decoder consumes: up to and including the
 * first CRLF "." CRLF, the content being preceded by DATA's own CRLF. 0 if
 * there is none. */
static size_t ref_dot_end(const char *in, size_t n)
{
	if (n >= 3 && memcmp(in, ".\r\n", 3) == 0)
		return 3;
	for (size_t i = 0; i + 5 <= n; i++)
		if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
			return i + 5;
	return 0;
}

/* DATA content in[0..n) (terminator excluded, its CRLF included), unstuffed:
 * a '.' that starts a line (after CRLF, or at the start) is dropped. */
static void ref_unstuff(const char *in, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		bool bol = i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n');
		if (bol && in[i] == '.')
			continue;
		buf_appendc(out, in[i]);
	}
}

struct ref_flags {
	bool bare_cr, bare_lf, long_line;
};

/* The flags for raw octets in[0..n); a CR at the very end counts as bare
 * only if the content is over (end_cr). */
static struct ref_flags ref_flags(const char *in, size_t n, size_t max_line, bool end_cr)
{
	struct ref_flags f = {false, false, false};
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			f.bare_lf = true;
		if (in[i] == '\r' && (i + 1 < n ? in[i + 1] != '\n' : end_cr))
			f.bare_cr = true;
		if (++len > max_line)
			f.long_line = true;
		if (in[i] == '\n')
			len = 0;
	}
	return f;
}

static bool buf_eq(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* True if out is ref with blk inserted at one place. */
static bool is_insertion(const struct buf *out, const struct buf *ref, const char *blk, size_t blen)
{
	size_t pre = 0, suf = 0;

	if (out->len != ref->len + blen)
		return false;
	while (pre < ref->len && out->data[pre] == ref->data[pre])
		pre++;
	while (suf < ref->len && out->data[out->len - 1 - suf] == ref->data[ref->len - 1 - suf])
		suf++;
	for (size_t p = ref->len - suf; p <= pre; p++)
		if (memcmp(out->data + p, blk, blen) == 0)
			return true;
	return false;
}

static void check_insertion(const struct smtp_data *d, const struct buf *out, const struct buf *ref)
{
	struct buf ins = BUF_INIT, blk = BUF_INIT;

	if (!d->saw_msgid && d->ins_msgid != NULL)
		buf_appends(&ins, d->ins_msgid);
	if (!d->saw_date && d->ins_date != NULL)
		buf_appends(&ins, d->ins_date);
	if (ins.len == 0) {
		/* Nothing missing: unchanged, but for the blank line supplied
		 * before body text in the header section (never at the end). */
		x_assert(buf_eq(out, ref) || (is_insertion(out, ref, "\r\n", 2) && ref->len > 0 &&
		                              out->data[out->len - 1] == ref->data[ref->len - 1]));
	} else {
		/* ins alone, ins CRLF (body without a blank line), CRLF ins (BDAT
		 * content that ends inside a header line) */
		bool ok = is_insertion(out, ref, ins.data, ins.len);
		buf_append(&blk, ins.data, ins.len);
		buf_appends(&blk, "\r\n");
		ok = ok || is_insertion(out, ref, blk.data, blk.len);
		buf_reset(&blk);
		buf_appends(&blk, "\r\n");
		buf_append(&blk, ins.data, ins.len);
		ok = ok || is_insertion(out, ref, blk.data, blk.len);
		x_assert(ok);
	}
	buf_free(&ins);
	buf_free(&blk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	bool bdat = data[0] & 1, ins_msgid = data[0] & 2, ins_date = data[0] & 4;
	size_t max_line = 1 + (data[0] >> 3);
	const char *in = (const char *)data + 3;
	size_t n = size - 3;
	size_t split = ((size_t)data[1] << 8 | data[2]) % (n + 1);
	struct sink k = {BUF_INIT, 0};
	struct buf ref = BUF_INIT;
	struct smtp_data d;
	size_t used1 = 0, used2 = 0, consumed;
	int r;

	smtp_data_init(&d, bdat ? SMTP_DATA_BDAT : SMTP_DATA_DOT, max_line, sink_out, &k);
	smtp_data_set_insert(&d, ins_msgid ? fuzz_msgid : NULL, ins_date ? fuzz_date : NULL);

	/* Each part in its own exact-size allocation, so that reading past
	 * either one is seen. */
	char *a = xmalloc(split), *b = xmalloc(n - split);
	memcpy(a, in, split);
	memcpy(b, in + split, n - split);
	r = smtp_data_feed(&d, a, split, &used1);
	if (r == 1) {
		x_assert(used1 <= split);
		consumed = used1;
	} else {
		x_assert(r == 0 && used1 == split && !d.done);
		r = smtp_data_feed(&d, b, n - split, &used2);
		x_assert(r == 0 || r == 1);
		x_assert(used2 <= n - split && (r == 1 || used2 == n - split));
		consumed = split + used2;
	}
	free(a);
	free(b);
	x_assert(d.out_bytes == k.calls_bytes && k.b.len == k.calls_bytes);

	if (bdat) {
		x_assert(r == 0 && consumed == n && !d.done);
		smtp_data_finish(&d);
		x_assert(d.done && d.out_bytes == k.calls_bytes && k.b.len == k.calls_bytes);
		buf_append(&ref, in, n);
	} else {
		size_t end = ref_dot_end(in, n);
		x_assert(r == (end > 0) && d.done == (r == 1));
		x_assert(consumed == (end > 0 ? end : n));
		/* the content: the CRLF before the dot is the message's */
		ref_unstuff(in, end > 0 ? (end >= 5 ? end - 3 : 0) : n, &ref);
	}

	struct ref_flags f = ref_flags(in, consumed, max_line, bdat);
	x_assert(d.bare_lf == f.bare_lf);
	x_assert(d.bare_cr == f.bare_cr);
	x_assert(d.long_line == f.long_line);
	x_assert(smtp_data_bad_eol(&d) == (f.bare_cr || f.bare_lf));

	if (d.done) {
		check_insertion(&d, &k.b, &ref);
	} else {
		/* Not over yet: a prefix of the content (insertions come only
		 * once the header section ends), at most a line start held. */
		x_assert(k.b.len <= ref.len || ins_msgid || ins_date);
		if (!ins_msgid && !ins_date) {
			x_assert(k.b.len == 0 || memcmp(k.b.data, ref.data, k.b.len) == 0);
			x_assert(ref.len - k.b.len <= sizeof d.pfx + 2);
		}
	}
	buf_free(&ref);
	buf_free(&k.b);
	return 0;
}
