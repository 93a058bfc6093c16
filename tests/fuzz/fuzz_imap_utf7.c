/* libFuzzer harness for modified UTF-7 (RFC 3501 5.1.3), the mailbox name
 * check and LIST pattern matching (src/imap/parse_utf7.c).
 * Build: make fuzz
 * Input: any bytes, as a modified UTF-7 name and as a UTF-8 name; split at
 * the first NUL (or in the middle) into a LIST pattern and a name.
 * Checks: decode succeeds only with valid UTF-8 output and then
 * encode(decode(x)) == x (one spelling per name); encode of valid UTF-8
 * succeeds and decodes back; the name check only accepts what it promises
 * (valid UTF-8, no controls or wildcards, no empty level) and rewrites only
 * the INBOX prefix; imap_list_match agrees with a naive recursive matcher. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/parse.h"
#include "fuzz_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Naive reference: backtracking over the pattern (inputs kept short). */
static bool ref_match(const char *p, const char *n, char sep, bool inbox, size_t pos)
{
	if (*p == '\0')
		return *n == '\0';
	if (*p == '*' || *p == '%') {
		for (const char *q = n;; q++) {
			if (ref_match(p + 1, q, sep, inbox, pos + (size_t)(q - n)))
				return true;
			if (*q == '\0' || (*p == '%' && *q == sep))
				return false;
		}
	}
	if (*n == '\0')
		return false;
	bool eq = *p == *n;
	if (!eq && inbox && pos < 5 && *p != sep && ((*p | 0x20) == (*n | 0x20)) &&
	    ((*n >= 'A' && *n <= 'Z') || (*n >= 'a' && *n <= 'z')))
		eq = true;
	return eq && ref_match(p + 1, n + 1, sep, inbox, pos + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 512)
		return 0;
	const char *s = (const char *)data;
	struct buf dec = BUF_INIT, enc = BUF_INIT, back = BUF_INIT;

	/* modified UTF-7 -> UTF-8 -> modified UTF-7 */
	if (imap_utf7_decode(s, size, &dec)) {
		x_assert(fuzz_utf8_valid((const unsigned char *)dec.data, dec.len));
		x_assert(imap_utf7_encode(dec.data ? dec.data : "", dec.len, &enc));
		x_assert(enc.len == size && (size == 0 || memcmp(enc.data, s, size) == 0));
	} else {
		x_assert(dec.len == 0);
	}
	buf_reset(&enc);

	/* UTF-8 -> modified UTF-7 -> UTF-8 */
	bool valid = fuzz_utf8_valid(data, size);
	x_assert(imap_utf7_encode(s, size, &enc) == valid);
	if (valid) {
		for (size_t i = 0; i < enc.len; i++)
			x_assert(enc.data[i] >= 0x20 && enc.data[i] <= 0x7e);
		x_assert(imap_utf7_decode(enc.data ? enc.data : "", enc.len, &back));
		x_assert(back.len == size && (size == 0 || memcmp(back.data, s, size) == 0));
	}

	/* the name check */
	char *name = xstrndup(s, size);
	size_t nlen = strlen(name);
	char *orig = xstrdup(name);
	if (imap_mailbox_check(name, 200, 10) == NULL) {
		x_assert(nlen > 0 && nlen <= 200 && fuzz_utf8_valid((unsigned char *)name, nlen));
		x_assert(strpbrk(name, "%*") == NULL && strstr(name, "//") == NULL);
		x_assert(name[0] != '/' && name[nlen - 1] != '/');
		for (size_t i = 0; i < nlen; i++)
			x_assert((unsigned char)name[i] >= 0x20 && name[i] != 0x7f);
		x_assert(strcmp(name + (nlen >= 5 ? 5 : 0), orig + (nlen >= 5 ? 5 : 0)) == 0);
		if (strncasecmp(orig, "INBOX", 5) == 0 && (orig[5] == '\0' || orig[5] == '/'))
			x_assert(strncmp(name, "INBOX", 5) == 0);
		else
			x_assert(strcmp(name, orig) == 0);
	}
	free(orig);
	free(name);

	/* LIST matching against the reference */
	const uint8_t *nul = memchr(data, 0, size);
	size_t cut = nul != NULL ? (size_t)(nul - data) : size / 2;
	char *pat = xstrndup(s, cut);
	char *nm = xstrndup(nul != NULL ? s + cut + 1 : s + cut,
	                    nul != NULL ? size - cut - 1 : size - cut);
	size_t wild = 0;
	for (const char *q = pat; *q != '\0'; q++)
		wild += *q == '*' || *q == '%';
	if (strlen(pat) <= 24 && strlen(nm) <= 24 && wild <= 4) {
		bool inbox = strncmp(nm, "INBOX", 5) == 0 && (nm[5] == '\0' || nm[5] == '/');
		x_assert(imap_list_match(pat, nm, '/') == ref_match(pat, nm, '/', inbox, 0));
	} else {
		(void)imap_list_match(pat, nm, '/');
	}
	free(pat);
	free(nm);
	buf_free(&dec);
	buf_free(&enc);
	buf_free(&back);
	return 0;
}
