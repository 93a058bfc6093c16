/* libFuzzer harness for the CIDR sets (src/filter/cidr.c).
 * Input: a trusted_networks-style list. Checks: cidr_set_parse never
 * crashes and either fails with a message or gives a set; every entry that
 * cidr_canonical accepts has a canonical form that is a fixed point
 * (canonical(canonical(x)) == canonical(x)), that cidr_set_add accepts, and
 * whose network address matches a set holding it; cidr_network agrees. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "filter/screen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entry(const char *e)
{
	char c1[CIDR_TEXT_MAX], c2[CIDR_TEXT_MAX], addr[CIDR_TEXT_MAX], net[CIDR_TEXT_MAX];
	if (cidr_canonical(e, c1, sizeof c1) < 0)
		return;
	if (cidr_canonical(c1, c2, sizeof c2) < 0 || strcmp(c1, c2) != 0)
		abort();
	struct cidr_set *s = cidr_set_new();
	if (cidr_set_add(s, c1) < 0)
		abort();
	strcpy(addr, c1);
	char *slash = strchr(addr, '/');
	if (slash == NULL)
		abort();
	*slash = '\0';
	int len = atoi(slash + 1);
	if (!cidr_set_match(s, addr))
		abort();
	if (cidr_network(addr, len, len, net, sizeof net) < 0 || strcmp(net, c1) != 0)
		abort();
	cidr_set_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096 || memchr(data, 0, size) != NULL)
		return 0;
	char *in = xstrndup((const char *)data, size);
	char *err = NULL;
	struct cidr_set *s = cidr_set_parse(in, &err);
	if ((s == NULL) == (err == NULL))
		abort();
	free(err);
	/* each token alone; together, added one by one (scanned), they match
	 * what the parsed (sorted) set matches */
	struct cidr_set *scan = cidr_set_new();
	static const char *const probes[] = {"192.0.2.1", "2001:db8::1", "10.0.0.1", "::1",
					     "255.255.255.255", "0.0.0.0", "::ffff:10.1.2.3"};
	char *copy = xstrdup(in);
	for (char *save = NULL, *t = strtok_r(copy, ", \t\r\n\v\f", &save); t != NULL;
	     t = strtok_r(NULL, ", \t\r\n\v\f", &save)) {
		check_entry(t);
		cidr_set_add(scan, t);
	}
	if (s != NULL) {
		for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
			if (cidr_set_match(s, probes[i]) != cidr_set_match(scan, probes[i]))
				abort();
		copy = strcpy(copy, in);
		for (char *save = NULL, *t = strtok_r(copy, ", \t\r\n\v\f/", &save); t != NULL;
		     t = strtok_r(NULL, ", \t\r\n\v\f/", &save))
			if (cidr_set_match(s, t) != cidr_set_match(scan, t))
				abort();
	}
	free(copy);
	cidr_set_free(&scan);
	cidr_set_free(&s);
	free(in);
	return 0;
}
