/* libFuzzer harness for the dangerous-attachment check (src/filter/attach.c).
 * Input: the whole message. Checked: attach_check returns 0, a finding has a
 * reason that is printable ASCII within its buffer, no finding has an empty
 * reason; the result does not depend on bytes past the input (ASan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter/attach.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct attach_rules *rules;
	struct attach_result r;
	/* an exact copy, so that a read past the end is caught */
	char *msg = malloc(size ? size : 1);

	if (rules == NULL)
		rules = attach_rules_new("exe, js, scr, docm, bat, vbs, zip");
	memcpy(msg, data, size);
	if (attach_check(rules, msg, size, &r) != 0)
		abort();
	if (r.dangerous) {
		size_t n = strnlen(r.why, sizeof r.why);
		if (n == 0 || n == sizeof r.why)
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)r.why[i] < 0x20 || (unsigned char)r.why[i] >= 0x7f)
				abort();
	} else if (r.why[0] != '\0') {
		abort();
	}
	free(msg);
	return 0;
}
