/* libFuzzer harness for SASL decoding and base64 (src/auth/sasl.c,
 * src/core/base64.c).
 * Build: clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *        tests/fuzz/fuzz_sasl.c src/auth/sasl.c src/core/{base64,xmalloc,buf,log}.c
 * Checks RFC 4616 invariants on every accepted message and that base64
 * encode/decode round-trip the raw bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "core/base64.h"
#include "core/log.h"
#include "core/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_sasl_roundtrip(const uint8_t *data, size_t size)
{
	char *enc = base64_encode(data, size);
	unsigned char *dec = NULL;
	size_t n = 0;

	x_assert(base64_decode(enc, strlen(enc), &dec, &n) == 0);
	x_assert(n == size && memcmp(dec, data, size) == 0);
	free(dec);
	free(enc);
}

/* The raw input as a PLAIN message, so the NUL-splitting sees every shape. */
static void fuzz_sasl_plain_raw(const uint8_t *data, size_t size)
{
	char *b64 = base64_encode(data, size);
	char *z = NULL, *u = NULL, *p = NULL;

	if (sasl_plain_decode(b64, &z, &u, &p) == 0) {
		x_assert(u[0] != '\0' && p[0] != '\0');
		free(z);
		free(u);
		free(p);
	}
	free(b64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xstrndup((const char *)data, size);
	char *z = NULL, *u = NULL, *p = NULL, *t = NULL;
	unsigned char *dec = NULL;
	size_t n = 0;

	if (sasl_plain_decode(s, &z, &u, &p) == 0) {
		x_assert(u[0] != '\0' && p[0] != '\0');
		x_assert(strlen(z) + strlen(u) + strlen(p) + 2 <= SASL_MAX_DECODED);
		free(z);
		free(u);
		free(p);
	}
	if (sasl_login_decode(s, &t) == 0) {
		x_assert(strlen(t) <= SASL_MAX_DECODED);
		free(t);
	}
	/* Whatever decodes re-encodes to the same text (the decoder is strict). */
	if (base64_decode(s, strlen(s), &dec, &n) == 0) {
		char *enc = base64_encode(dec, n);

		x_assert(strcmp(enc, s) == 0);
		free(enc);
		free(dec);
	}
	fuzz_sasl_roundtrip(data, size);
	fuzz_sasl_plain_raw(data, size);
	free(s);
	return 0;
}
