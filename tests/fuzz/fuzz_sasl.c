/* libFuzzer harness for SASL decoding, the SASL server state machine and
 * base64 (src/auth/sasl.c, src/core/base64.c).
 * Build: clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *        tests/fuzz/fuzz_sasl.c src/auth/sasl.c src/core/{base64,xmalloc,buf,log}.c
 * Checks RFC 4616 invariants on every accepted message, that base64
 * encode/decode round-trip the raw bytes, and drives the state machine with
 * the input's lines ("MECH [initial-response]", then client lines). */
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

/* An exchange is open exactly after SASL_CONTINUE; DONE hands over three
 * strings; nothing leaks (ASan) or outlives sasl_server_reset. */
static void fuzz_sasl_server(const char *text)
{
	char *copy = xstrdup(text), *save = NULL;
	char *line = strtok_r(copy, "\n", &save);
	struct sasl_server ss = {0};
	struct sasl_out out;
	enum sasl_status st;

	if (line == NULL) {
		free(copy);
		return;
	}
	char *ir = strchr(line, ' ');
	if (ir != NULL)
		*ir++ = '\0';
	st = sasl_server_start(&ss, line, ir, &out);
	for (;;) {
		x_assert(sasl_server_active(&ss) == (st == SASL_CONTINUE));
		if (st == SASL_CONTINUE)
			x_assert(out.challenge != NULL);
		if (st == SASL_MALFORMED)
			x_assert(out.error != NULL);
		if (st == SASL_DONE) {
			x_assert(out.creds.authzid && out.creds.authcid && out.creds.password);
			sasl_creds_clear(&out.creds);
		}
		if (st != SASL_CONTINUE || (line = strtok_r(NULL, "\n", &save)) == NULL)
			break;
		st = sasl_server_step(&ss, line, &out);
	}
	sasl_server_reset(&ss);
	free(copy);
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
	fuzz_sasl_server(s);
	free(s);
	return 0;
}
