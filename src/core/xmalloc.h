/* Allocation that never returns NULL: on failure the process logs and aborts
 * (docs/style.md, rule 2). Nobody writes out-of-memory paths. */
#ifndef POSTERN_CORE_XMALLOC_H
#define POSTERN_CORE_XMALLOC_H
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a new heap string; the caller frees it. */
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);
char *xvasprintf(const char *fmt, va_list ap) PRINTF_LIKE(1, 0);

/* Frees *pp and sets it to NULL. */
#define x_free(pp)                                                                                 \
	do {                                                                                       \
		free(*(pp));                                                                       \
		*(pp) = NULL;                                                                      \
	} while (0)

#endif
