/* Hexadecimal digits, for the decoders of %XX (RFC 3986 2.1, RFC 2231 4),
 * =XX (RFC 2045 6.7) and &#x...; (HTML) escapes. */
#ifndef POSTERN_CORE_HEX_H
#define POSTERN_CORE_HEX_H

/* The value (0..15) of a hex digit, either case, or -1. The argument is an
 * unsigned char so that an octet of 0x80 or more is -1 whatever the
 * signedness of char: callers holding a char cast it. Inline: the decoders
 * call it per octet. */
static inline int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
