/* libFuzzer harness for SRS (src/policy/srs.c, included here with stubs for
 * the store calls it makes when loading secrets).
 * Input: "secret\naddress". Checks: srs_reverse never crashes and returns
 * -1/0/1 with its outputs consistent; an address rewritten by srs_forward
 * (when it fits) reverses to the original with the same secret, and is
 * refused as forged with another one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/srs.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int store_setting_get(struct store *st, const char *name, char **value_r)
{
	*value_r = NULL;
	return 0;
}

int store_setting_set(struct store *st, const char *name, const char *value, char **err_r)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1024 || memchr(data, 0, size) != NULL)
		return 0;
	char *in = xstrndup((const char *)data, size);
	char *nl = strchr(in, '\n');
	const char *secret = "k", *addr = in;
	if (nl != NULL) {
		*nl = '\0';
		secret = in;
		addr = nl + 1;
	}
	const char *const secrets[] = {secret, "other"};
	time_t now = (time_t)20000 * 86400;
	char *orig = NULL;
	const char *why = NULL;
	int r = srs_reverse(secrets, 2, addr, now, 21 * 86400, &orig, &why);
	x_assert(r >= -1 && r <= 1);
	x_assert((r == 1) == (orig != NULL));
	x_assert((r == -1) == (why != NULL));
	free(orig);

	const char *at = strrchr(addr, '@');
	char *fwd = srs_forward(secret, addr, "fwd.test", now);
	if (fwd != NULL && strcmp(fwd, addr) != 0) {
		x_assert(strlen(fwd) <= 254);
		/* rewritten: ours, SRS, and back to the original */
		orig = NULL;
		r = srs_reverse(secrets, 1, fwd, now + 86400, 21 * 86400, &orig, &why);
		x_assert(r == 1);
		if (strncasecmp(fwd, "SRS0=", 5) == 0) {
			x_assert(orig != NULL && strcmp(orig, addr) == 0);
		} else {
			/* SRS1: the first forwarder's SRS0 address */
			x_assert(orig != NULL && strncasecmp(orig, "SRS0", 4) == 0);
		}
		free(orig);
		const char *const wrong[] = {"not-the-secret"};
		orig = NULL;
		if (strcmp(secret, wrong[0]) != 0) {
			r = srs_reverse(wrong, 1, fwd, now, 21 * 86400, &orig, &why);
			/* 1 only by a 24-bit hash collision (case-folded) */
			if (r == 1)
				free(orig);
		}
	}
	(void)at;
	free(fwd);
	free(in);
	return 0;
}
