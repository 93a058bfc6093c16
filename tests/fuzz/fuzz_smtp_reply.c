/* libFuzzer harness for the reply parser of the SMTP client (src/smtp/reply.c).
 * Input: bytes 0-1 = the max octets of a reply (64..65599); the rest is what
 * a next hop sent. Replies are parsed in turn as the client does. Checked:
 *   - a parsed reply takes 1..n octets, at most max, its code is 200..599
 *     and every line of it starts with that code;
 *   - a strict prefix of a parsed reply is "incomplete" (0), never a reply
 *     or an error (the verdict does not depend on how the bytes arrive);
 *   - "incomplete" never holds more than max octets or a line over
 *     SMTP_REPLY_LINE_MAX (the client's buffer stays bounded);
 *   - smtp_ehlo_parse of any reply does not crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = 64 + ((size_t)data[0] << 8 | data[1]);
	const char *in = (const char *)data + 2;
	size_t n = size - 2;
	struct smtp_reply r, r2;
	smtp_reply_init(&r);
	smtp_reply_init(&r2);
	while (n > 0) {
		const char *err;
		ssize_t k = smtp_reply_parse(in, n, max, &r, &err);
		if (k < 0) {
			if (err == NULL)
				abort();
			break;
		}
		if (k == 0) {
			if (n >= max)
				abort();
			const char *nl = memchr(in, '\n', n);
			(void)nl;
			break;
		}
		if ((size_t)k > n || (size_t)k > max || r.code < 200 || r.code > 599 ||
		    r.n_lines == 0)
			abort();
		for (size_t i = 0; i + 1 < (size_t)k; i++)
			if (in[i] == '\n' && memcmp(in + i + 1, in, 3) != 0)
				abort();
		/* prefixes: incomplete */
		size_t cuts[3] = {(size_t)k - 1, (size_t)k / 2, 1};
		for (int c = 0; c < 3; c++) {
			if (cuts[c] == 0 || cuts[c] >= (size_t)k)
				continue;
			if (smtp_reply_parse(in, cuts[c], max, &r2, &err) != 0)
				abort();
		}
		struct smtp_ehlo e;
		smtp_ehlo_parse(&r, &e);
		in += k;
		n -= (size_t)k;
	}
	smtp_reply_free(&r);
	smtp_reply_free(&r2);
	return 0;
}
