/* Base64 (RFC 4648, standard alphabet, padded). */
#ifndef POSTERN_CORE_BASE64_H
#define POSTERN_CORE_BASE64_H
#include <stddef.h>

/* Returns a heap NUL-terminated string. */
char *base64_encode(const void *p, size_t n);
/* Decodes s (whitespace not allowed) into a heap buffer (NUL-terminated past
 * *n_r). Returns 0, or -1 on invalid input. */
int base64_decode(const char *s, size_t len, unsigned char **out_r, size_t *n_r);

#endif
