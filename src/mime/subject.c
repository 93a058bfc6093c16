/* Subjects and collation for SORT and THREAD (subject.h).
 *
 * mime_base_subject follows RFC 5256 2.1 step by step; the grammar it
 * matches (RFC 5256 5, case-insensitive):
 *   subj-refwd   = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
 *   subj-blob    = "[" *BLOBCHAR "]" *WSP
 *   subj-fwd-hdr = "[fwd:"    subj-fwd-trl = "]"
 *   subj-leader  = (*subj-blob subj-refwd) / WSP
 *   subj-trailer = "(fwd)" / WSP
 *   BLOBCHAR     = %x01-5a / %x5c / %x5e-ff  (anything but "[" and "]")
 * mime_casemap_key is RFC 5051 2 (titlecase, then NFKD) through ICU. */
#include <pthread.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf8.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "mime/mime.h"
#include "mime/subject.h"

static int lc(char c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : (unsigned char)c;
}

static bool prefix_ci(const char *p, size_t n, const char *lit)
{
	size_t i, l = strlen(lit);

	if (n < l)
		return false;
	for (i = 0; i < l; i++)
		if (lc(p[i]) != lit[i])
			return false;
	return true;
}

/* Length of a subj-blob at p (brackets and the white space after), 0 if none. */
static size_t blob_len(const char *p, size_t n)
{
	size_t i;

	if (n == 0 || p[0] != '[')
		return 0;
	for (i = 1; i < n && p[i] != '[' && p[i] != ']'; i++)
		;
	if (i >= n || p[i] != ']')
		return 0;
	for (i++; i < n && p[i] == ' '; i++)
		;
	return i;
}

/* Length of a subj-leader's first alternative (*subj-blob subj-refwd) at p,
 * 0 if none. (Single white space is handled by the caller.) */
static size_t refwd_leader_len(const char *p, size_t n)
{
	size_t i = 0, b;

	while ((b = blob_len(p + i, n - i)) > 0)
		i += b;
	if (prefix_ci(p + i, n - i, "re"))
		i += 2;
	else if (prefix_ci(p + i, n - i, "fwd"))
		i += 3;
	else if (prefix_ci(p + i, n - i, "fw"))
		i += 2;
	else
		return 0;
	while (i < n && p[i] == ' ')
		i++;
	i += blob_len(p + i, n - i);
	/* ("fwd" is tried before "fw": after "fw" a "d" can be nothing else) */
	return (i < n && p[i] == ':') ? i + 1 : 0;
}

char *mime_base_subject(const char *raw, size_t len, bool *is_reply_r)
{
	struct buf dec = BUF_INIT;
	char *s, *out;
	size_t n = 0, i, start, end;
	bool reply = false, changed;

	/* 2.1 (1): RFC 2047 words to UTF-8; tabs, continuations and runs of
	 * white space to one space */
	mime_decode_words(raw ? raw : "", raw ? len : 0, &dec);
	s = xmalloc(dec.len + 1);
	for (i = 0; i < dec.len; i++) {
		char c = dec.data[i];

		if (c == '\0')
			continue; /* no NUL in a C string result */
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			if (n > 0 && s[n - 1] == ' ')
				continue;
			c = ' ';
		}
		s[n++] = c;
	}
	buf_free(&dec);
	start = 0;
	end = n;
	for (;;) {
		/* (2): subj-trailer ("(fwd)" or WSP) at the end, repeatedly */
		for (;;) {
			if (end > start && s[end - 1] == ' ') {
				end--;
			} else if (end - start >= 5 && prefix_ci(s + end - 5, 5, "(fwd)")) {
				end -= 5;
				reply = true;
			} else {
				break;
			}
		}
		/* (3)-(5): subj-leader, then one subj-blob when what follows it
		 * is not empty, until neither applies */
		do {
			size_t l;

			changed = false;
			for (;;) {
				if (start < end && s[start] == ' ') {
					start++;
				} else if ((l = refwd_leader_len(s + start, end - start)) > 0) {
					start += l;
					reply = true;
				} else {
					break;
				}
				changed = true;
			}
			l = blob_len(s + start, end - start);
			if (l > 0 && start + l < end) {
				start += l;
				changed = true;
			}
		} while (changed);
		/* (6): "[fwd:" subj-base "]" unwrapped, then from (2) again */
		if (end - start >= 6 && prefix_ci(s + start, end - start, "[fwd:") &&
		    s[end - 1] == ']') {
			start += 5;
			end--;
			reply = true;
			continue;
		}
		break;
	}
	out = xstrndup(s + start, end - start);
	free(s);
	if (is_reply_r != NULL)
		*is_reply_r = reply;
	return out;
}

/* ---- RFC 5051 i;unicode-casemap ---- */

static const UNormalizer2 *nfkd_inst;
static pthread_once_t nfkd_once = PTHREAD_ONCE_INIT;

static void nfkd_init(void)
{
	UErrorCode err = U_ZERO_ERROR;
	const UNormalizer2 *n = unorm2_getNFKDInstance(&err);

	nfkd_inst = U_SUCCESS(err) ? n : NULL; /* shared by ICU, never freed */
}

/* Workers call this concurrently (SORT, THREAD). */
static const UNormalizer2 *nfkd(void)
{
	pthread_once(&nfkd_once, nfkd_init);
	return nfkd_inst;
}

char *mime_casemap_key(const char *utf8, size_t len)
{
	struct buf out = BUF_INIT;
	UChar *u16 = NULL, *norm = NULL;
	int32_t i = 0, n16 = 0, cap16, nn;
	const uint8_t *p = (const uint8_t *)(utf8 ? utf8 : "");
	UErrorCode err = U_ZERO_ERROR;
	const UNormalizer2 *nf;
	size_t k;

	if (len > INT32_MAX / 4)
		len = INT32_MAX / 4;
	for (k = 0; k < len && p[k] < 0x80; k++)
		;
	if (k == len) {
		/* ASCII: the titlecase of a-z is A-Z, NFKD changes nothing */
		char *r = xmalloc(len + 1);

		for (k = 0; k < len; k++)
			r[k] = (p[k] >= 'a' && p[k] <= 'z') ? (char)(p[k] - 32) : (char)p[k];
		r[len] = '\0';
		return r;
	}
	/* (1) each character to its titlecase (UnicodeData's simple mapping);
	 * invalid UTF-8 reads as U+FFFD */
	cap16 = (int32_t)len * 2 + 2;
	u16 = xmalloc((size_t)cap16 * sizeof(UChar));
	while (i < (int32_t)len) {
		UChar32 c;

		U8_NEXT(p, i, (int32_t)len, c);
		if (c < 0)
			c = 0xFFFD;
		c = u_totitle(c);
		U16_APPEND_UNSAFE(u16, n16, c);
	}
	/* (2) decomposition NFKD */
	nf = nfkd();
	if (nf != NULL) {
		nn = unorm2_normalize(nf, u16, n16, NULL, 0, &err);
		if (err == U_BUFFER_OVERFLOW_ERROR || U_SUCCESS(err)) {
			err = U_ZERO_ERROR;
			norm = xmalloc(((size_t)nn + 1) * sizeof(UChar));
			nn = unorm2_normalize(nf, u16, n16, norm, nn + 1, &err);
		}
		if (U_SUCCESS(err)) {
			free(u16);
			u16 = norm;
			n16 = nn;
			norm = NULL;
		}
		free(norm);
	}
	/* the key is the UTF-8 of the result: strcmp is i;octet on it */
	buf_reserve(&out, (size_t)n16 * 3 + 1);
	for (i = 0; i < n16;) {
		UChar32 c;
		uint8_t tmp[4];
		int32_t m = 0;

		U16_NEXT(u16, i, n16, c);
		if (U_IS_SURROGATE(c))
			c = 0xFFFD;
		U8_APPEND_UNSAFE(tmp, m, c);
		buf_append(&out, tmp, (size_t)m);
	}
	free(u16);
	if (out.data == NULL)
		return xstrdup("");
	return out.data;
}
