/* core/zstream: raw deflate both ways (RFC 1951, as RFC 4978 uses it). The
 * peer is either another zstream or zlib itself with windowBits -15, as an
 * IMAP client would be. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/buf.h"
#include "core/zstream.h"
#include "../test.h"

/* Deterministic text with repeats (compressible) or noise (not). */
static void fill(struct buf *b, size_t n, unsigned seed, int noise)
{
	uint32_t x = seed * 2654435761u + 1;
	buf_reset(b);
	while (b->len < n) {
		if (noise) {
			x = x * 1103515245u + 12345u;
			buf_appendc(b, (char)(x >> 16));
		} else {
			char line[80];
			int k = snprintf(line, sizeof line, "* %u FETCH (FLAGS (\\Seen) UID %u)\r\n",
					 (unsigned)(b->len / 40), seed);
			buf_append(b, line, (size_t)k);
		}
	}
	b->len = n;
}

/* A peer: zlib's raw inflater, the client side of the test. */
static int peer_inflate(z_stream *s, const struct buf *in, struct buf *out)
{
	s->next_in = (Bytef *)in->data;
	s->avail_in = (uInt)in->len;
	do {
		buf_reserve(out, 65536);
		s->next_out = (Bytef *)out->data + out->len;
		s->avail_out = 65536;
		int r = inflate(s, Z_SYNC_FLUSH);
		out->len += 65536 - s->avail_out;
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -1;
	} while (s->avail_in > 0 || s->avail_out == 0);
	return 0;
}

/* Output: every burst, once flushed, decodes completely at the peer and
 * ends with the sync flush marker; settings from tiny to zlib's largest,
 * with and without releasing the deflater between bursts. */
static void test_deflate_bursts(void)
{
	static const struct {
		int level, wbits, memlevel;
		int release;
		size_t size;
		int noise;
	} cases[] = {
	    {6, 14, 7, 1, 100, 0},     {6, 14, 7, 1, 300000, 0}, {6, 14, 7, 1, 200000, 1},
	    {6, 14, 7, 0, 300000, 0},  {1, 9, 1, 1, 50000, 0},   {9, 15, 9, 0, 70000, 1},
	    {-1, 15, 8, 1, 1, 0},      {6, 8, 7, 1, 5000, 0}, /* 8: raised to 9 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct zstream_params p = {cases[i].level, cases[i].wbits, cases[i].memlevel,
					   cases[i].release};
		struct zstream *z = zstream_new(&p);
		CHECK(z != NULL);
		z_stream peer;
		memset(&peer, 0, sizeof peer);
		CHECK(inflateInit2(&peer, -15) == Z_OK);
		struct buf plain = BUF_INIT, wire = BUF_INIT, got = BUF_INIT;
		for (unsigned burst = 0; burst < 3; burst++) {
			fill(&plain, cases[i].size, burst + (unsigned)i, cases[i].noise);
			buf_reset(&wire);
			buf_reset(&got);
			/* in pieces, as a session writes */
			for (size_t off = 0; off < plain.len; off += 7777) {
				size_t n = plain.len - off < 7777 ? plain.len - off : 7777;
				CHECK_INT(i, zstream_deflate(z, plain.data + off, n, &wire), 0);
			}
			CHECK(zstream_dirty(z));
			CHECK_INT(i, zstream_flush(z, &wire), 0);
			CHECK(!zstream_dirty(z));
			CHECK(wire.len >= 4 && memcmp(wire.data + wire.len - 4, "\0\0\377\377", 4) == 0);
			size_t before = wire.len;
			CHECK_INT(i, zstream_flush(z, &wire), 0); /* clean: nothing */
			CHECK_INT(i, wire.len, before);
			CHECK_INT(i, peer_inflate(&peer, &wire, &got), 0);
			CHECK_INT(i, got.len, plain.len);
			CHECK(got.len == plain.len && memcmp(got.data, plain.data, plain.len) == 0);
			if (!cases[i].noise && plain.len > 10000)
				CHECK(wire.len < plain.len / 4);
		}
		unsigned long long a, b;
		zstream_totals(z, &a, &b);
		CHECK_INT(i, a, 3 * cases[i].size);
		if (cases[i].release)
			CHECK(zstream_memory(z) < 1024); /* nothing held between bursts */
		inflateEnd(&peer);
		buf_free(&plain);
		buf_free(&wire);
		buf_free(&got);
		zstream_free(&z);
		CHECK(z == NULL);
	}
}

/* zlib's raw deflater as the peer (windowBits 15, the client's choice),
 * sync-flushed per command. */
static void peer_deflate(z_stream *s, const void *p, size_t n, int flush, struct buf *out)
{
	s->next_in = (Bytef *)(uintptr_t)p;
	s->avail_in = (uInt)n;
	do {
		buf_reserve(out, 65536);
		s->next_out = (Bytef *)out->data + out->len;
		s->avail_out = 65536;
		deflate(s, flush);
		out->len += 65536 - s->avail_out;
	} while (s->avail_out == 0);
}

/* Input: bursts whose back-references reach into earlier ones decode right
 * when the inflater was released between them (its history kept), fed in
 * one piece or a byte at a time; between bursts only the history is held. */
static void test_inflate_history(void)
{
	static const struct {
		int release;
		size_t step; /* feed size; 0: all at once */
	} cases[] = {{1, 0}, {1, 1}, {1, 13}, {0, 0}, {0, 1}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct zstream_params p = zstream_default_params;
		p.release_idle = cases[i].release;
		struct zstream *z = zstream_new(&p);
		z_stream peer;
		memset(&peer, 0, sizeof peer);
		CHECK(deflateInit2(&peer, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);
		static const char *cmds[] = {
		    "a1 LOGIN alice@example.test \"a long password here\"\r\n",
		    "a2 SELECT INBOX\r\n",
		    "a3 LOGIN alice@example.test \"a long password here\"\r\n", /* refers back */
		    "a4 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\n",
		    "a5 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\n",
		};
		size_t history = 0;
		for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
			struct buf wire = BUF_INIT, got = BUF_INIT;
			peer_deflate(&peer, cmds[k], strlen(cmds[k]), Z_SYNC_FLUSH, &wire);
			size_t step = cases[i].step ? cases[i].step : wire.len;
			for (size_t off = 0; off < wire.len; off += step) {
				size_t n = wire.len - off < step ? wire.len - off : step;
				zstream_feed(z, wire.data + off, n);
				CHECK(zstream_inflate(z, &got, 1 << 20) >= 0);
			}
			CHECK_INT(i * 10 + k, got.len, strlen(cmds[k]));
			CHECK(got.len == strlen(cmds[k]) && memcmp(got.data, cmds[k], got.len) == 0);
			CHECK_INT(i, zstream_pending_input(z), 0);
			history += strlen(cmds[k]);
			if (cases[i].release)
				CHECK(zstream_memory(z) < 512 + history);
			else
				CHECK(zstream_memory(z) > 32768);
			buf_free(&wire);
			buf_free(&got);
		}
		deflateEnd(&peer);
		zstream_free(&z);
	}
}

/* A decompression bomb: 32 MiB of zeros in ~32 KiB. Each call decodes at
 * most up to the limit, the rest waits compressed; all of it comes out in
 * bounded steps. */
static void test_inflate_bounded(void)
{
	z_stream peer;
	memset(&peer, 0, sizeof peer);
	CHECK(deflateInit2(&peer, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);
	struct buf zeros = BUF_INIT, wire = BUF_INIT, out = BUF_INIT;
	buf_reserve(&zeros, 1 << 20);
	memset(zeros.data, 0, 1 << 20);
	zeros.len = 1 << 20;
	for (int k = 0; k < 32; k++)
		peer_deflate(&peer, zeros.data, zeros.len, k == 31 ? Z_SYNC_FLUSH : Z_NO_FLUSH, &wire);
	CHECK(wire.len < 64 * 1024);
	struct zstream *z = zstream_new(NULL);
	zstream_feed(z, wire.data, wire.len);
	size_t total = 0, maxcap = 0;
	int calls = 0;
	const size_t limit = 64 * 1024;
	for (;;) {
		ssize_t r = zstream_inflate(z, &out, limit);
		CHECK(r >= 0);
		if (r <= 0)
			break;
		calls++;
		CHECK(out.len <= limit);
		if (out.cap > maxcap)
			maxcap = out.cap;
		for (size_t i = 0; i < out.len; i++)
			if (out.data[i] != 0) {
				CHECK(!"nonzero byte");
				break;
			}
		total += out.len;
		buf_reset(&out); /* the session took it */
	}
	CHECK_INT(0, total, 32 << 20);
	CHECK(calls >= 512);
	CHECK(maxcap <= 2 * limit);
	CHECK_INT(0, zstream_pending_input(z), 0);
	/* out full: nothing decoded, nothing lost */
	peer_deflate(&peer, "abc\r\n", 5, Z_SYNC_FLUSH, &wire);
	buf_reset(&wire);
	peer_deflate(&peer, "def\r\n", 5, Z_SYNC_FLUSH, &wire);
	zstream_feed(z, wire.data, wire.len);
	buf_append(&out, "x", 1);
	CHECK_INT(0, zstream_inflate(z, &out, 1), 0);
	CHECK(zstream_pending_input(z) > 0);
	CHECK_INT(0, zstream_inflate(z, &out, 100), 5);
	CHECK_STR(0, out.data, "xdef\r\n");
	deflateEnd(&peer);
	zstream_free(&z);
	buf_free(&zeros);
	buf_free(&wire);
	buf_free(&out);
}

/* Corrupt input and input after the peer's final block are errors. */
static void test_inflate_errors(void)
{
	struct buf out = BUF_INIT, wire = BUF_INIT;
	struct zstream *z = zstream_new(NULL);
	zstream_feed(z, "\xff\xff\xff\xff", 4); /* block type 3: reserved */
	CHECK_INT(0, zstream_inflate(z, &out, 1024), -1);
	zstream_free(&z);

	z_stream peer;
	memset(&peer, 0, sizeof peer);
	CHECK(deflateInit2(&peer, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	peer_deflate(&peer, "bye\r\n", 5, Z_FINISH, &wire);
	deflateEnd(&peer);
	z = zstream_new(NULL);
	zstream_feed(z, wire.data, wire.len);
	CHECK_INT(1, zstream_inflate(z, &out, 1024), 5);
	zstream_feed(z, "\0", 1);
	CHECK_INT(1, zstream_inflate(z, &out, 1024), -1);
	zstream_free(&z);
	buf_free(&out);
	buf_free(&wire);
}

/* The figures behind the defaults (printed; make unit shows them). */
static void test_memory_figures(void)
{
	struct buf plain = BUF_INIT, wire = BUF_INIT;
	fill(&plain, 100000, 1, 0);
	static const struct zstream_params ps[] = {
	    {6, 15, 8, 0}, {6, 14, 7, 0}, {6, 12, 5, 0}, {6, 14, 7, 1}};
	for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
		struct zstream *z = zstream_new(&ps[i]);
		buf_reset(&wire);
		zstream_deflate(z, plain.data, plain.len, &wire);
		size_t busy = zstream_memory(z);
		zstream_flush(z, &wire);
		printf("  zstream wbits %d memlevel %d release %d: %zu bytes busy, %zu idle, "
		       "100 KB of FETCH lines -> %zu\n",
		       ps[i].window_bits, ps[i].mem_level, ps[i].release_idle, busy,
		       zstream_memory(z), wire.len);
		CHECK(busy > zstream_memory(z) || !ps[i].release_idle);
		zstream_free(&z);
	}
	buf_free(&plain);
	buf_free(&wire);
}

int main(void)
{
	test_run("deflate_bursts", test_deflate_bursts);
	test_run("inflate_history", test_inflate_history);
	test_run("inflate_bounded", test_inflate_bounded);
	test_run("inflate_errors", test_inflate_errors);
	test_run("memory_figures", test_memory_figures);
	return test_done("test_zstream");
}
