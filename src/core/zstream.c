/* Raw-deflate stream pair over zlib (see zstream.h).
 *
 * Memory per stream (measured by tests/unit/zstream and reported by
 * zstream_memory): zlib's deflate state is about (1 << (window_bits + 2)) +
 * (1 << (mem_level + 9)) bytes plus ~6 KB, the inflate state ~7 KB plus a
 * 32 KB window once the first byte is decoded (the peer may use a 32 KB
 * window: RFC 4978 names no other, so ours cannot be smaller). The defaults
 * below keep an active deflater at ~70 KB; release_idle frees it after each
 * burst, and the inflater once the peer's input ends on a block boundary
 * (its sync flush), keeping only the history the peer has sent (at most
 * 32 KB, typically a few hundred bytes of commands): an idle compressed
 * connection holds that and this struct. */
#include "core/zstream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/xmalloc.h"

#define ZSTREAM_CHUNK 16384

const struct zstream_params zstream_default_params = {
	.level = 6,
	.window_bits = 14,
	.mem_level = 7,
	.release_idle = true,
};

struct zstream {
	struct zstream_params params;
	z_stream d;          /* deflater (ours -> peer) */
	z_stream i;          /* inflater (peer -> ours) */
	bool d_live;         /* d holds zlib state */
	bool i_live;         /* i holds zlib state (else dict is its history) */
	bool dirty;          /* input given to d since the last flush */
	bool ended;          /* the peer sent its final block */
	unsigned char *dict; /* the inflater's history while i is released */
	uInt dict_len;
	struct buf in;       /* compressed input not yet decoded, from in_off */
	size_t in_off;
	size_t mem;          /* bytes allocated by zlib for d and i */
	unsigned long long plain_out, comp_out;
};

/* zlib's allocations carry their size in front, for the count. */
union zs_hdr {
	size_t n;
	max_align_t align;
};

static voidpf zs_alloc(voidpf opaque, uInt items, uInt size)
{
	struct zstream *z = opaque;
	size_t n = (size_t)items * size;
	union zs_hdr *h = malloc(sizeof *h + n);
	if (h == NULL)
		return Z_NULL;
	h->n = n;
	z->mem += n;
	return h + 1;
}

static void zs_release(voidpf opaque, voidpf p)
{
	struct zstream *z = opaque;
	if (p == NULL)
		return;
	union zs_hdr *h = (union zs_hdr *)p - 1;
	z->mem -= h->n;
	free(h);
}

static int zs_deflate_init(struct zstream *z)
{
	memset(&z->d, 0, sizeof z->d);
	z->d.zalloc = zs_alloc;
	z->d.zfree = zs_release;
	z->d.opaque = z;
	/* Negative windowBits: raw deflate, no zlib header or checksum
	 * (RFC 4978 3: DEFLATE as RFC 1951 defines it). */
	if (deflateInit2(&z->d, z->params.level, Z_DEFLATED, -z->params.window_bits,
			 z->params.mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	z->d_live = true;
	return 0;
}

static int zs_inflate_init(struct zstream *z)
{
	memset(&z->i, 0, sizeof z->i);
	z->i.zalloc = zs_alloc;
	z->i.zfree = zs_release;
	z->i.opaque = z;
	/* The peer's window may be anything up to 32 KB: accept the largest. */
	if (inflateInit2(&z->i, -15) != Z_OK)
		return -1;
	z->i_live = true;
	/* Raw inflate takes a dictionary at any time: the history kept when
	 * the state was released, so back-references into it still work. */
	if (z->dict_len > 0 && inflateSetDictionary(&z->i, z->dict, z->dict_len) != Z_OK)
		return -1;
	free(z->dict);
	z->dict = NULL;
	z->dict_len = 0;
	return 0;
}

/* After all queued input was decoded: at a block boundary on a byte
 * boundary (the peer's sync flush ends there), the inflater's whole state
 * is its history; keep that (as long as the peer has sent, at most 32 KB)
 * and free the rest. inflate() reports the boundary in data_type: 128 when
 * waiting for a block header, the low 6 bits the bits left over. */
static void zs_inflate_release(struct zstream *z)
{
	if (!z->params.release_idle || !z->i_live || z->ended)
		return;
	if (!(z->i.data_type & 128) || (z->i.data_type & 63) != 0)
		return;
	uInt n = 0;
	if (inflateGetDictionary(&z->i, Z_NULL, &n) != Z_OK)
		return;
	unsigned char *d = NULL;
	if (n > 0) {
		d = xmalloc(n);
		if (inflateGetDictionary(&z->i, d, &n) != Z_OK) {
			free(d);
			return;
		}
	}
	inflateEnd(&z->i);
	z->i_live = false;
	z->dict = d;
	z->dict_len = n;
}

struct zstream *zstream_new(const struct zstream_params *params)
{
	struct zstream *z = xcalloc(1, sizeof *z);
	z->params = params != NULL ? *params : zstream_default_params;
	if (z->params.window_bits < 9)
		z->params.window_bits = 9; /* zlib refuses 8 for raw deflate */
	if (z->params.window_bits > 15)
		z->params.window_bits = 15;
	buf_init(&z->in);
	if (!z->params.release_idle && (zs_inflate_init(z) < 0 || zs_deflate_init(z) < 0)) {
		zstream_free(&z);
		return NULL;
	}
	return z;
}

void zstream_free(struct zstream **zp)
{
	struct zstream *z = *zp;
	if (z == NULL)
		return;
	if (z->d_live)
		deflateEnd(&z->d);
	if (z->i_live)
		inflateEnd(&z->i);
	free(z->dict);
	buf_free(&z->in);
	free(z);
	*zp = NULL;
}

/* Runs the deflater over its input with flush, appending to out. */
static int zs_run(struct zstream *z, int flush, struct buf *out)
{
	for (;;) {
		buf_reserve(out, ZSTREAM_CHUNK);
		size_t room = out->cap - out->len - 1; /* buf keeps a NUL */
		z->d.next_out = (Bytef *)out->data + out->len;
		z->d.avail_out = (uInt)room;
		int r = deflate(&z->d, flush);
		size_t made = room - z->d.avail_out;
		out->len += made;
		out->data[out->len] = '\0';
		z->comp_out += made;
		if (r == Z_STREAM_ERROR)
			return -1;
		/* Done when zlib had room left over: all input taken and, for
		 * a flush, all of it emitted. Z_BUF_ERROR: nothing to do. */
		if (z->d.avail_out > 0 && z->d.avail_in == 0)
			return 0;
		if (r == Z_BUF_ERROR && made == 0)
			return 0;
	}
}

int zstream_deflate(struct zstream *z, const void *p, size_t n, struct buf *out)
{
	if (n == 0)
		return 0;
	if (!z->d_live && zs_deflate_init(z) < 0)
		return -1;
	const Bytef *src = p;
	while (n > 0) {
		uInt take = n > (1u << 30) ? (1u << 30) : (uInt)n;
		z->d.next_in = (Bytef *)(uintptr_t)src;
		z->d.avail_in = take;
		if (zs_run(z, Z_NO_FLUSH, out) < 0)
			return -1;
		src += take;
		n -= take;
		z->plain_out += take;
	}
	z->dirty = true;
	return 0;
}

bool zstream_dirty(const struct zstream *z)
{
	return z->dirty;
}

int zstream_flush(struct zstream *z, struct buf *out)
{
	if (!z->dirty)
		return 0;
	z->d.next_in = Z_NULL;
	z->d.avail_in = 0;
	if (zs_run(z, Z_SYNC_FLUSH, out) < 0)
		return -1;
	z->dirty = false;
	if (z->params.release_idle) {
		/* Byte-aligned after the sync flush and no final block sent:
		 * the next burst starts a fresh raw stream that the peer's
		 * inflater reads as more blocks of the same stream. */
		deflateEnd(&z->d);
		z->d_live = false;
	}
	return 0;
}

void zstream_feed(struct zstream *z, const void *p, size_t n)
{
	if (z->in_off > 0 && z->in_off == z->in.len) {
		buf_reset(&z->in);
		z->in_off = 0;
	}
	buf_append(&z->in, p, n);
}

size_t zstream_pending_input(const struct zstream *z)
{
	return z->in.len - z->in_off;
}

ssize_t zstream_inflate(struct zstream *z, struct buf *out, size_t max)
{
	size_t made_total = 0;
	while (zstream_pending_input(z) > 0 && out->len < max) {
		if (z->ended)
			return -1; /* bytes after the final block */
		if (!z->i_live && zs_inflate_init(z) < 0)
			return -1;
		size_t room = max - out->len;
		if (room > ZSTREAM_CHUNK)
			room = ZSTREAM_CHUNK;
		buf_reserve(out, room);
		size_t avail = zstream_pending_input(z);
		z->i.next_in = (Bytef *)z->in.data + z->in_off;
		z->i.avail_in = avail > (1u << 30) ? (1u << 30) : (uInt)avail;
		uInt given = z->i.avail_in;
		z->i.next_out = (Bytef *)out->data + out->len;
		z->i.avail_out = (uInt)room;
		int r = inflate(&z->i, Z_SYNC_FLUSH);
		size_t made = room - z->i.avail_out;
		z->in_off += given - z->i.avail_in;
		out->len += made;
		out->data[out->len] = '\0';
		made_total += made;
		if (r == Z_STREAM_END) {
			z->ended = true;
			continue;
		}
		if (r == Z_BUF_ERROR && made == 0 && given == z->i.avail_in)
			break;
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -1; /* Z_DATA_ERROR, Z_NEED_DICT, Z_MEM_ERROR */
	}
	if (z->in_off == z->in.len) {
		/* all decoded: an idle stream keeps no input memory */
		buf_free(&z->in);
		z->in_off = 0;
		zs_inflate_release(z);
	} else if (z->in_off >= ZSTREAM_CHUNK) {
		buf_consume(&z->in, z->in_off);
		z->in_off = 0;
	}
	return (ssize_t)made_total;
}

size_t zstream_memory(const struct zstream *z)
{
	return sizeof *z + z->mem + z->in.cap + z->dict_len;
}

void zstream_totals(const struct zstream *z, unsigned long long *in_plain,
		    unsigned long long *out_compressed)
{
	*in_plain = z->plain_out;
	*out_compressed = z->comp_out;
}
