/* libFuzzer harness for the POP3 parsers and the multi-line encoder
 * (src/pop3/parse.c).
 * Build: make fuzz (or clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *        -Isrc tests/fuzz/fuzz_pop3_cmd.c src/pop3/parse.c src/core/{xmalloc,buf,log}.c)
 * Input: byte 0 = min (bits 0-1) and max (bits 2-3) for pop3_parse_numbers,
 * TOP mode (bit 4) and its line count (bits 5-7); bytes 1-2 = split point;
 * the rest is a command line, and also message content for the encoder.
 * Checks: the keyword is 1..8 upper-case alphanumerics; numbers come back in
 * range and print back to the same values; the encoder's output, fed in two
 * chunks, decodes (RFC 1939 3) to exactly the content with every line ended
 * by CRLF (cut after the header, blank line and N lines in TOP mode). */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "pop3/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_command(const char *line)
{
	char *verb = xmalloc(POP3_MAX_VERB + 1); /* exact size: ASan sees overruns */
	const char *args = NULL;

	if (pop3_parse_command(line, verb, &args) == 0) {
		size_t n = strlen(verb);

		x_assert(n >= 1 && n <= POP3_MAX_VERB);
		for (size_t i = 0; i < n; i++)
			x_assert((verb[i] >= 'A' && verb[i] <= 'Z') ||
			         (verb[i] >= '0' && verb[i] <= '9'));
		x_assert(args >= line + n && args <= line + strlen(line));
	}
	free(verb);
}

static void fuzz_numbers(const char *args, int min, int max)
{
	uint32_t *v = xmalloc(max > 0 ? (size_t)max * sizeof *v : 1), w[4];
	struct buf b = BUF_INIT;
	int k = pop3_parse_numbers(args, v, min, max);

	if (k >= 0) {
		x_assert(k >= min && k <= max);
		x_assert((k == 0) == (args[0] == '\0'));
		for (int i = 0; i < k; i++)
			buf_printf(&b, "%s%" PRIu32, i > 0 ? " " : "", v[i]);
		x_assert(pop3_parse_numbers(b.len > 0 ? b.data : "", w, min, max) == k);
		x_assert(k == 0 || memcmp(v, w, (size_t)k * sizeof *v) == 0);
	}
	buf_free(&b);
	free(v);
}

/* The expected decoded output: the content's lines (split at LF), each ended
 * by CRLF (a bare LF becomes CRLF, a last line without LF gets CRLF or, after
 * a CR, LF); in TOP mode only the header, the first blank line and `lines`
 * more. A line is blank if it is empty or only a CR. */
static void ref_content(const char *in, size_t n, bool top, unsigned lines, struct buf *ref)
{
	bool in_body = false;
	size_t i = 0;

	while (i < n) {
		const char *lf = memchr(in + i, '\n', n - i);
		size_t end = lf != NULL ? (size_t)(lf - in) : n;
		bool blank = end == i || (end == i + 1 && in[i] == '\r');

		buf_append(ref, in + i, end - i);
		buf_appends(ref, end > i && in[end - 1] == '\r' ? "\n" : "\r\n");
		i = lf != NULL ? end + 1 : n;
		if (!top)
			continue;
		if (!in_body) {
			if (blank) {
				in_body = true;
				if (lines == 0)
					return;
			}
		} else if (--lines == 0) {
			return;
		}
	}
}

/* Undoes RFC 1939 3: checks the ".\r\n" end and that every LF follows a CR,
 * and removes the stuffing dot from lines starting with '.'. */
static void decode_multiline(const struct buf *out, struct buf *dec)
{
	x_assert(out->len >= 3 && memcmp(out->data + out->len - 3, ".\r\n", 3) == 0);
	x_assert(out->len == 3 || (out->len >= 5 && out->data[out->len - 4] == '\n'));
	for (size_t i = 0; i + 3 < out->len; i++) {
		bool bol = i == 0 || out->data[i - 1] == '\n';
		if (out->data[i] == '\n')
			x_assert(i > 0 && out->data[i - 1] == '\r');
		if (bol && out->data[i] == '.') {
			/* only the terminator is a lone dot at a line start */
			x_assert(out->data[i + 1] == '.');
			continue;
		}
		buf_appendc(dec, out->data[i]);
	}
}

static void fuzz_dot(const char *in, size_t n, size_t split, bool top, unsigned lines)
{
	struct pop3_dot d;
	struct buf out = BUF_INIT, dec = BUF_INIT, ref = BUF_INIT;
	char *a = xmalloc(split), *b = xmalloc(n - split);

	if (split > 0)
		memcpy(a, in, split);
	if (n > split)
		memcpy(b, in + split, n - split);
	pop3_dot_init(&d, top, lines);
	if (pop3_dot_feed(&d, a, split, &out) == 0) {
		x_assert(!d.done && d.in_bytes == split);
		if (pop3_dot_feed(&d, b, n - split, &out) == 0)
			x_assert(!d.done && d.in_bytes == n);
	}
	x_assert(top || !d.done);
	pop3_dot_end(&d, &out);
	decode_multiline(&out, &dec);
	ref_content(in, n, top, lines, &ref);
	x_assert(dec.len == ref.len && (ref.len == 0 || memcmp(dec.data, ref.data, ref.len) == 0));
	x_assert(d.in_bytes <= n);
	free(a);
	free(b);
	buf_free(&out);
	buf_free(&dec);
	buf_free(&ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	const char *in = (const char *)data + 3;
	size_t n = size - 3;
	char *line = xstrndup(in, n);
	int min = data[0] & 3, max = (data[0] >> 2) & 3;

	fuzz_command(line);
	fuzz_numbers(line, min, max);
	const char *sp = strchr(line, ' ');
	if (sp != NULL)
		fuzz_numbers(sp + 1, min, max);
	fuzz_dot(in, n, ((size_t)data[1] << 8 | data[2]) % (n + 1), data[0] & 0x10, data[0] >> 5);
	free(line);
	return 0;
}
