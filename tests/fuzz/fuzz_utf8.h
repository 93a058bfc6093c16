/* For the harnesses: is p[0..n) valid UTF-8? RFC 3629 4: no overlong form,
 * no surrogate, nothing above U+10FFFF. Written apart from src/ (the
 * harnesses check the parsers against it, so it must not be theirs). */
#ifndef POSTERN_FUZZ_UTF8_H
#define POSTERN_FUZZ_UTF8_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool fuzz_utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t l;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			l = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			l = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			l = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < l)
			return false;
		for (size_t k = 1; k < l; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += l;
	}
	return true;
}

#endif
