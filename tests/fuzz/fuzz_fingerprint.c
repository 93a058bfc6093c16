/* libFuzzer harness for the body fingerprint (src/filter/fingerprint.c).
 * Input: bytes 0-1 = where to cut the rest into pieces (piece size 1..256
 * and a first cut), the rest = a message. Checked: the fingerprint does not
 * depend on how the message is fed (one call, or cut pieces); the parser
 * never reads or writes outside its state (ASan); the header phase ends only
 * at a line end (an empty line: CR octets are ignored); body_bytes counts what follows it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter/limit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t piece = (size_t)data[0] + 1, cut = data[1];
	const char *m = (const char *)data + 2;
	size_t n = size - 2;
	struct limit_fp a, b;

	limit_fp_init(&a);
	limit_fp_feed(&a, m, n);
	uint64_t body_a = a.body_bytes;
	int phase_a = a.phase;
	uint64_t fa = limit_fp_final(&a);

	limit_fp_init(&b);
	if (cut > n)
		cut = n;
	limit_fp_feed(&b, m, cut);
	for (size_t i = cut; i < n; i += piece)
		limit_fp_feed(&b, m + i, n - i < piece ? n - i : piece);
	if (b.body_bytes != body_a || b.phase != phase_a)
		abort();
	if (limit_fp_final(&b) != fa)
		abort();
	if (phase_a == 0 && body_a != 0)
		abort();
	if (phase_a == 1 && memchr(m, '\n', n) == NULL)
		abort();
	return 0;
}
