/* Growable byte buffer. data is always NUL-terminated past len (when cap > 0),
 * so text in a buf can be used as a C string; binary content is fine too.
 * A buf with cap == 0 owns no memory: idle connections keep empty bufs at no cost. */
#ifndef POSTERN_CORE_BUF_H
#define POSTERN_CORE_BUF_H
#include <stddef.h>
#include "core/xmalloc.h"

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_init(struct buf *b);
/* Frees the memory; b is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Makes room for at least n more bytes past len. */
void buf_reserve(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_appends(struct buf *b, const char *s);
void buf_appendc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* v in decimal, as "%llu" but without printf's parsing (long SEARCH, SORT
 * and FETCH responses write numbers by the thousand). */
void buf_append_u64(struct buf *b, unsigned long long v);
/* Removes the first n bytes (n <= len). When the buffer becomes empty and is
 * large, its memory is released. */
void buf_consume(struct buf *b, size_t n);
/* len = 0, memory kept. */
void buf_reset(struct buf *b);

#endif
