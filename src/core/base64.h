/* Base64 (RFC 4648, standard alphabet, padded). */
#ifndef POSTERN_CORE_BASE64_H
#define POSTERN_CORE_BASE64_H
#include <stddef.h>

/* Returns a heap NUL-terminated string. */
char *base64_encode(const void *p, size_t n);
/* Decodes s (whitespace not allowed) into a heap buffer (NUL-terminated past
 * *n_r). Returns 0, or -1 on invalid input. */
int base64_decode(const char *s, size_t len, unsigned char **out_r, size_t *n_r);

/* The value (0..63) of one character of the standard alphabet, or -1
 * (this includes '='). Inline: the decoders of mime and imap call it per
 * octet. */
static inline int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

#endif
