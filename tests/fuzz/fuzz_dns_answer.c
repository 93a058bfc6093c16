/* libFuzzer harness for the DNS answer parser (src/dns/parse.c): the bytes a
 * resolver (or anyone spoofing one) sends back. The first byte picks the
 * asked type; the rest is the reply. Beyond "no crash": a parsed answer's
 * records are all of the asked type, its strings are NUL-ended and of their
 * stated length, and a deep copy equals it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "dns/dns_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = {DNS_A, DNS_AAAA, DNS_MX, DNS_TXT, DNS_PTR, DNS_TLSA};
	struct dns_answer a, c;
	uint32_t ttl;

	if (size < 1)
		return 0;
	uint16_t type = types[data[0] % 6];
	if (dns_parse_answer(data + 1, size - 1, "example.com", type, &a, &ttl) < 0)
		return 0;
	x_assert(a.status == DNS_OK || a.status == DNS_NODATA || a.status == DNS_NXDOMAIN ||
		 a.status == DNS_TEMPFAIL);
	x_assert((a.status == DNS_OK) == (a.n > 0));
	x_assert(ttl <= DNS_TTL_MAX);
	for (size_t i = 0; i < a.n; i++) {
		x_assert(a.rr[i].type == type);
		x_assert(a.rr[i].ttl <= 0x7fffffffu);
		if (type == DNS_MX)
			x_assert(strlen(a.rr[i].u.mx.host) <= DNS_NAME_TEXT_MAX);
		if (type == DNS_PTR)
			x_assert(strlen(a.rr[i].u.ptr) <= DNS_NAME_TEXT_MAX);
		if (type == DNS_TXT)
			x_assert(a.rr[i].u.txt.text[a.rr[i].u.txt.len] == '\0');
	}
	dns_answer_copy(&c, &a);
	x_assert(c.n == a.n && c.status == a.status);
	for (size_t i = 0; i < a.n; i++) {
		if (type == DNS_TXT)
			x_assert(memcmp(c.rr[i].u.txt.text, a.rr[i].u.txt.text,
					a.rr[i].u.txt.len + 1) == 0);
		if (type == DNS_TLSA)
			x_assert(memcmp(c.rr[i].u.tlsa.data, a.rr[i].u.tlsa.data,
					a.rr[i].u.tlsa.len) == 0);
	}
	dns_answer_clear(&c);
	dns_answer_clear(&a);
	return 0;
}
