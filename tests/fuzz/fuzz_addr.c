/* libFuzzer harness for the SMTP path parser (src/mime/addr.c).
 * Build: clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *        tests/fuzz/fuzz_addr.c src/mime/addr.c src/core/{xmalloc,buf,log}.c
 * The first byte picks the flags; the rest is the input line. Beyond "no
 * crash", it checks that whatever parses is valid by addr_is_valid and parses
 * again to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "mime/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_addr_check(const char *s, size_t len, bool allow_null, bool utf8)
{
	char *addr = NULL, *again = NULL, *path;
	int rc = addr_parse_path(s, allow_null, utf8, &addr);

	if (rc < 0)
		return;
	x_assert(rc >= 2 && (size_t)rc <= len && s[rc - 1] == '>');
	if (addr[0] == '\0') {
		x_assert(allow_null && rc == 2);
	} else {
		x_assert(addr_is_valid(addr, utf8));
		x_assert(utf8 || !addr_has_8bit(addr));
		x_assert(addr_domain(addr) != NULL);
		path = xasprintf("<%s>", addr);
		x_assert(addr_parse_path(path, false, utf8, &again) == (int)strlen(path));
		x_assert(strcmp(again, addr) == 0);
		free(again);
		free(path);
	}
	free(addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size == 0)
		return 0;
	s = xstrndup((const char *)data + 1, size - 1);
	fuzz_addr_check(s, strlen(s), data[0] & 1, data[0] & 2);
	(void)addr_is_valid(s, data[0] & 2);
	(void)addr_is_valid_domain(s, data[0] & 2);
	(void)addr_domain(s);
	free(s);
	return 0;
}
