/* libFuzzer harness for IMAP URLs (RFC 5092; src/imap/parse_url.c) and
 * their section as a FETCH item.
 * Build: make fuzz
 * Input: any bytes, as a URL.
 * Checks: no crash or sanitizer report; a URL that parses has a mailbox and
 * a UID > 0, decoded strings hold no NUL or control character; the section of a parsed URL either fails or gives one
 * BODY[] section item; a URL with an iurlauth part (RFC 4467 3) has an
 * access identifier, a rump inside the input ending with it, and either
 * both mechanism and token (32+ hex digits) or neither. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/parse.h"
#include "imap/parse_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void clean(const char *s)
{
	if (s == NULL)
		return;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_url u;
	struct imap_fetch f;

	if (imap_url_parse((const char *)data, size, &u) < 0)
		return 0;
	if (u.mailbox == NULL || u.mailbox[0] == '\0' || u.uid == 0)
		abort();
	clean(u.user);
	clean(u.host);
	clean(u.mailbox);
	clean(u.section);
	clean(u.access);
	if (u.urlauth != NULL) {
		if (u.access == NULL || u.rump_len == 0 || u.rump_len > size ||
		    (u.mech == NULL) != (u.token == NULL))
			abort();
		if (u.token != NULL && strlen(u.token) < 32)
			abort();
		if (u.mech == NULL && u.rump_len != size)
			abort();
	} else if (u.access != NULL || u.mech != NULL || u.token != NULL) {
		abort();
	}
	if (imap_url_section(u.section, &f) == 0) {
		if (f.n != 1 || f.v[0].kind != IMAP_FETCH_SECTION)
			abort();
		imap_fetch_free(&f);
	}
	imap_url_free(&u);
	return 0;
}
