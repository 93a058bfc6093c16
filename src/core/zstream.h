/* A raw-deflate stream pair (RFC 1951, zlib with negative windowBits): the
 * byte filter behind IMAP COMPRESS=DEFLATE (RFC 4978) and any protocol that
 * compresses a whole connection the same way (NNTP COMPRESS, RFC 8054).
 * Nothing protocol-specific here: src/core/conn.c runs a connection's
 * bytes through it once conn_compress() is called.
 *
 * Output: zstream_deflate() compresses into a caller's buf without flushing
 * (later bytes may share blocks and history with earlier ones);
 * zstream_flush() ends a burst with Z_SYNC_FLUSH so that the peer can
 * decode everything sent so far (RFC 4978 4: the server flushes at the end
 * of each response burst). Input: zstream_feed() queues compressed bytes,
 * zstream_inflate() decodes them into a buf up to a limit, so that a
 * decompression bomb costs at most the limit, never the expansion.
 *
 * Memory: zlib's state is allocated through a counting allocator
 * (zstream_memory); with release_idle both zlib states are released between
 * bursts and made again lazily (see struct zstream_params). */
#ifndef POSTERN_CORE_ZSTREAM_H
#define POSTERN_CORE_ZSTREAM_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/buf.h"

struct zstream;

struct zstream_params {
	int level;       /* 1..9, Z_DEFAULT_COMPRESSION is -1 */
	int window_bits; /* of our deflater, 9..15 (the peer's is always 15) */
	int mem_level;   /* 1..9 */
	/* Drop the deflater's state after each zstream_flush: an idle
	 * connection then holds no compressor (a new raw-deflate stream after
	 * a sync flush continues the peer's decoding seamlessly, since a raw
	 * stream has no header and we never send a final block); the price is
	 * the history between bursts. And drop the inflater's state when the
	 * input decoded ends on a block boundary, keeping its history only. */
	bool release_idle;
};

/* Defaults: the values conn.c uses (see zstream.c for the figures). */
extern const struct zstream_params zstream_default_params;

/* NULL if zlib cannot allocate. */
struct zstream *zstream_new(const struct zstream_params *params);
void zstream_free(struct zstream **zp);

/* Compresses n bytes, appending what zlib emits to out. 0, -1 on error. */
int zstream_deflate(struct zstream *z, const void *p, size_t n, struct buf *out);
/* Bytes were compressed since the last flush. */
bool zstream_dirty(const struct zstream *z);
/* Z_SYNC_FLUSH: everything compressed so far leaves in out, ending on a
 * byte boundary (the empty stored block 00 00 FF FF). No-op when clean. */
int zstream_flush(struct zstream *z, struct buf *out);

/* Queues n compressed bytes for zstream_inflate. */
void zstream_feed(struct zstream *z, const void *p, size_t n);
/* Compressed bytes queued and not yet decoded. */
size_t zstream_pending_input(const struct zstream *z);
/* Decodes queued input, appending to out while out->len < max. Returns the
 * bytes appended (0 when out is full or no input is queued), -1 on corrupt
 * data or on data after the peer's final block. */
ssize_t zstream_inflate(struct zstream *z, struct buf *out, size_t max);

/* Bytes zlib holds for this stream now (both directions), and the struct. */
size_t zstream_memory(const struct zstream *z);
/* Totals since creation, for logs and tests. */
void zstream_totals(const struct zstream *z, unsigned long long *in_plain,
		    unsigned long long *out_compressed);

#endif
