/* Base64, RFC 4648 section 4 (standard alphabet, padding required). */
#include "core/base64.h"

#include <stdbool.h>
#include <stdint.h>

#include "core/xmalloc.h"

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *p, size_t n)
{
	const unsigned char *in = p;
	char *out = xmalloc((n + 2) / 3 * 4 + 1);
	char *o = out;
	size_t i;

	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		*o++ = base64_alphabet[v >> 18 & 63];
		*o++ = base64_alphabet[v >> 12 & 63];
		*o++ = base64_alphabet[v >> 6 & 63];
		*o++ = base64_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		*o++ = base64_alphabet[v >> 18 & 63];
		*o++ = base64_alphabet[v >> 12 & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		*o++ = base64_alphabet[v >> 18 & 63];
		*o++ = base64_alphabet[v >> 12 & 63];
		*o++ = base64_alphabet[v >> 6 & 63];
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* Decodes one 4-character quantum. The last quantum may end in "=" or "==";
 * RFC 4648 3.5: the pad bits must be zero, or the encoding is not canonical. */
static int base64_quantum(const char *q, bool last, unsigned char *o, size_t *n_r)
{
	int v[4], i, npad = 0;

	for (i = 0; i < 4; i++) {
		if (q[i] == '=' && last && i >= 2) {
			npad++;
			v[i] = 0;
			continue;
		}
		if (npad > 0)
			return -1; /* data after '=' */
		v[i] = base64_value((unsigned char)q[i]);
		if (v[i] < 0)
			return -1;
	}
	if (npad == 2 && (v[1] & 0x0f) != 0)
		return -1;
	if (npad == 1 && (v[2] & 0x03) != 0)
		return -1;

	uint32_t w =
	    (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];

	o[0] = (unsigned char)(w >> 16);
	o[1] = (unsigned char)(w >> 8);
	o[2] = (unsigned char)w;
	*n_r = 3 - (size_t)npad;
	return 0;
}

int base64_decode(const char *s, size_t len, unsigned char **out_r, size_t *n_r)
{
	unsigned char *out;
	size_t i, n = 0, k;

	/* RFC 4648 3.2: padding is required, so the length is a multiple of 4. */
	if (len % 4 != 0)
		return -1;
	out = xmalloc(len / 4 * 3 + 1);
	for (i = 0; i < len; i += 4) {
		if (base64_quantum(s + i, i + 4 == len, out + n, &k) < 0) {
			free(out);
			return -1;
		}
		n += k;
	}
	out[n] = '\0';
	*out_r = out;
	*n_r = n;
	return 0;
}
