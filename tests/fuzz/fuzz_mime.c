/* libFuzzer harness for the MIME cache and the text functions (src/mime/).
 * Build: make fuzz. Input: byte 0 = options (bits 0-2: which section kind
 * and path set, bit 3: corrupt one byte of the cache), byte 1 = a needle
 * length; the rest is the message. Beyond "no crash, no read outside the
 * message" (the message is copied to an exact-size buffer), it checks that
 *   - the cache of any input opens;
 *   - ENVELOPE, BODY and BODYSTRUCTURE are well-formed IMAP: balanced
 *     parentheses, quoted strings without CR, LF or 8-bit bytes, literals
 *     {N}\r\n followed by N bytes, atoms and numbers;
 *   - every section resolves inside the message;
 *   - a corrupted cache is rejected or stays inside its bytes;
 *   - the literal8 conversion (mime_binary_to_base64) runs on any input;
 *   - BINARY's decoding (mime_binary_decode, URLFETCH's BINARY) runs on any
 *     input, with and without keep_cte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "mime/mime.h"
#include "mime/mime_int.h"

/* the sort section's keys (sortinfo.h) lie inside the cache, each its
 * length long and NUL-terminated */
static void check_sort(const struct mime_cache *mc, const struct buf *cache)
{
	const struct mime_sortinfo *so = mime_cache_sort(mc);

	for (int k = 0; k < MIME_SORT_N; k++)
		x_assert(so->key[k] >= cache->data &&
			 so->key[k] + so->len[k] < cache->data + cache->len &&
			 strlen(so->key[k]) == so->len[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_sink(void *arg, const char *p, size_t n)
{
	buf_append(arg, p, n);
}

/* RFC 9051 9: a body/envelope is a parenthesised list of nstrings, numbers
 * and lists */
static void check_imap(const char *p, size_t n)
{
	size_t i = 0;
	int depth = 0;
	enum { OPEN, TOKEN, CLOSE, SPACE } last = OPEN;

	x_assert(n >= 2 && p[0] == '(' && p[n - 1] == ')');
	while (i < n) {
		char c = p[i];

		if (c == '(') {
			/* "((" "( (" and ")(" (the parts of a multipart) */
			x_assert(last != TOKEN);
			depth++;
			i++;
			last = OPEN;
			continue;
		} else if (c == ')') {
			x_assert(depth > 0 && last != SPACE);
			depth--;
			i++;
			x_assert(depth > 0 || i == n);
			last = CLOSE;
			continue;
		} else if (c == ' ') {
			x_assert(last == TOKEN || last == CLOSE);
			i++;
			last = SPACE;
			continue;
		} else if (c == '"') {
			x_assert(last == OPEN || last == SPACE);
			for (i++; i < n && p[i] != '"'; i++) {
				unsigned char q = (unsigned char)p[i];

				x_assert(q != '\r' && q != '\n' && q != 0 && q < 0x80);
				if (q == '\\') {
					i++;
					x_assert(i < n && (p[i] == '"' || p[i] == '\\'));
				}
			}
			x_assert(i < n);
			i++;
		} else if (c == '{') {
			size_t len = 0;

			for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
				len = len * 10 + (size_t)(p[i] - '0');
			x_assert(i + 3 <= n && p[i] == '}' && p[i + 1] == '\r' && p[i + 2] == '\n');
			i += 3;
			x_assert(len <= n - i);
			x_assert(memchr(p + i, '\0', len) == NULL);
			i += len;
		} else if (c >= '0' && c <= '9') {
			while (i < n && p[i] >= '0' && p[i] <= '9')
				i++;
		} else {
			x_assert(n - i >= 3 && memcmp(p + i, "NIL", 3) == 0);
			i += 3;
		}
		last = TOKEN;
	}
	x_assert(depth == 0);
}

static void exercise(const char *msg, size_t len, const struct mime_cache *mc, uint8_t opt,
                     const char *needle, bool trusted)
{
	static const uint32_t paths[][3] = {{1, 1, 1}, {2, 1, 2}, {1, 2, 1}, {3, 2, 1},
	                                    {2, 2, 2}, {1, 3, 1}, {4, 1, 1}, {2, 1, 1}};
	const uint32_t *path = paths[opt & 7];
	size_t depth;
	int w;

	for (depth = 0; depth <= 3; depth++)
		for (w = MIME_SECT_BODY; w <= MIME_SECT_MIME; w++) {
			uint64_t off, l;
			enum mime_encoding enc;

			if (mime_cache_section(mc, path, depth, (enum mime_section)w, &off, &l,
			                       &enc) == 0) {
				if (!trusted)
					continue;
				x_assert(off <= len && l <= len - off);
				if (w == MIME_SECT_HEADER || w == MIME_SECT_MIME) {
					static const char *const names[] = {"Subject", "From",
					                                    "Content-Type"};
					struct buf out = BUF_INIT;

					mime_header_fields(msg + off, (size_t)l, names, 3, opt & 1,
					                   &out);
					buf_free(&out);
				} else {
					struct buf out = BUF_INIT;

					(void)mime_decode(enc, msg + off, (size_t)l, &out);
					buf_free(&out);
				}
			}
		}
	(void)mime_search_header(msg, len, mc, (opt & 16) ? NULL : "Subject", needle);
	(void)mime_search_body(msg, len, mc, needle, opt & 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf cache = BUF_INIT, words = BUF_INIT;
	struct mime_cache mc;
	const char *p;
	size_t n, len, nl;
	char *msg, needle[16];
	uint8_t opt;
	time_t t;
	int tz;

	if (size < 2)
		return 0;
	opt = data[0];
	len = size - 2;
	msg = xmalloc(len ? len : 1);
	memcpy(msg, data + 2, len);
	nl = data[1] % 8 < len ? data[1] % 8 : len;
	memcpy(needle, msg, nl);
	needle[nl] = '\0';

	mime_cache_build(msg, len, &cache);
	x_assert(mime_cache_open(&mc, cache.data, cache.len));
	/* mime_parts_list: the cache's parts, record for record */
	struct mime_part_rec *pl;
	x_assert(mime_parts_list(msg, len, &pl) == mc.n_parts);
	for (uint32_t i = 0; i < mc.n_parts; i++) {
		struct mime_part_rec r;
		mime_cache_part(&mc, i, &r);
		x_assert(r.hdr_off == pl[i].hdr_off && r.hdr_len == pl[i].hdr_len &&
			 r.body_off == pl[i].body_off && r.body_len == pl[i].body_len &&
			 r.lines == pl[i].lines && r.first_child == pl[i].first_child &&
			 r.next == pl[i].next && r.kind == pl[i].kind && r.enc == pl[i].enc);
	}
	free(pl);
	mime_cache_envelope(&mc, &p, &n);
	check_imap(p, n);
	mime_cache_body(&mc, &p, &n);
	check_imap(p, n);
	mime_cache_bodystructure(&mc, &p, &n);
	check_imap(p, n);
	check_sort(&mc, &cache);
	exercise(msg, len, &mc, opt, needle, true);
	(void)mime_message_date(msg, len, &t, &tz);
	mime_decode_words(msg, len < 4096 ? len : 4096, &words);

	if ((opt & 8) && cache.len > 0) {
		size_t at = (size_t)data[1] * 7 % cache.len;

		cache.data[at] ^= (char)(opt | 1);
		if (mime_cache_open(&mc, cache.data, cache.len)) {
			mime_cache_bodystructure(&mc, &p, &n);
			x_assert(p >= cache.data && p + n <= cache.data + cache.len);
			check_sort(&mc, &cache);
			exercise(msg, len, &mc, opt, needle, false);
		}
	}
	/* the literal8 conversion (binary.c): out untouched when false */
	struct buf conv = BUF_INIT;
	if (!mime_binary_to_base64(msg, len, &conv))
		x_assert(conv.len == 0);
	buf_free(&conv);
	/* BINARY's decoding (binary.c, urlauth.c) */
	struct buf dec = BUF_INIT;
	(void)mime_binary_decode(msg, len, (opt & 16) != 0, fuzz_sink, &dec);
	buf_free(&dec);
	buf_free(&cache);
	buf_free(&words);
	free(msg);
	return 0;
}
