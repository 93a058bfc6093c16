/* Mailbox names: modified UTF-7 (RFC 3501 5.1.3), name validation, and
 * LIST pattern matching (RFC 9051 6.3.9). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "core/xmalloc.h"
#include "imap/parse.h"
#include "imap/parse_int.h"

/* Modified BASE64 (RFC 2152 with "," for "/", no padding). */
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_val(unsigned char c)
{
	/* the standard alphabet's but for "," in place of "/" */
	return c == ',' ? 63 : c == '/' ? -1 : base64_value(c);
}

static void put_utf8(struct buf *out, uint32_t cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, u, n);
}

/* Only the canonical encoding is accepted, so that a name has one spelling
 * (encode(decode(x)) == x): printable ASCII is never shifted, "&" is "&-",
 * a shift holds whole UTF-16 units with zero padding bits (fewer than 6),
 * surrogates come in pairs, and two shifts are never adjacent. */
bool imap_utf7_decode(const char *s, size_t len, struct buf *out)
{
	size_t start = out->len;
	bool prev_shift = false; /* the previous octets ended a (non-empty) shift */
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			goto bad;
		if (c != '&') {
			buf_appendc(out, (char)c);
			prev_shift = false;
			i++;
			continue;
		}
		i++;
		if (i < len && s[i] == '-') {
			buf_appendc(out, '&');
			prev_shift = false;
			i++;
			continue;
		}
		if (prev_shift)
			goto bad; /* "&AOQ-&AOQ-" is spelled "&AOQA5A-" */
		uint32_t bits = 0, hi = 0;
		unsigned nbits = 0;
		bool any = false;
		for (;;) {
			if (i >= len)
				goto bad; /* unterminated shift */
			c = (unsigned char)s[i++];
			if (c == '-')
				break;
			int v = b64_val(c);
			if (v < 0)
				goto bad;
			bits = bits << 6 | (uint32_t)v;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t u = (bits >> nbits) & 0xffff;
			bits &= (1u << nbits) - 1;
			any = true;
			if (hi != 0) {
				if (u < 0xdc00 || u > 0xdfff)
					goto bad;
				put_utf8(out, 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00));
				hi = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				hi = u;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				goto bad;
			} else if (u >= 0x20 && u <= 0x7e) {
				goto bad; /* printable ASCII is never encoded */
			} else {
				put_utf8(out, u);
			}
		}
		if (!any || hi != 0 || nbits >= 6 || bits != 0)
			goto bad;
		prev_shift = true;
	}
	return true;
bad:
	out->len = start;
	if (out->cap > 0)
		out->data[start] = '\0';
	return false;
}

struct shift {
	bool on;
	uint32_t bits;
	unsigned nbits;
};

static void shift_unit(struct buf *out, struct shift *sh, uint16_t u)
{
	if (!sh->on) {
		buf_appendc(out, '&');
		sh->on = true;
	}
	sh->bits = sh->bits << 16 | u;
	sh->nbits += 16;
	while (sh->nbits >= 6) {
		sh->nbits -= 6;
		buf_appendc(out, b64[(sh->bits >> sh->nbits) & 0x3f]);
	}
	sh->bits &= (1u << sh->nbits) - 1;
}

static void shift_end(struct buf *out, struct shift *sh)
{
	if (!sh->on)
		return;
	if (sh->nbits > 0)
		buf_appendc(out, b64[(sh->bits << (6 - sh->nbits)) & 0x3f]);
	buf_appendc(out, '-');
	sh->on = false;
	sh->bits = 0;
	sh->nbits = 0;
}

bool imap_utf7_encode(const char *s, size_t len, struct buf *out)
{
	size_t start = out->len;
	struct shift sh = {false, 0, 0};
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c <= 0x7e) {
			shift_end(out, &sh);
			if (c == '&')
				buf_appends(out, "&-");
			else
				buf_appendc(out, (char)c);
			i++;
			continue;
		}
		size_t u = imap_utf8_len((const unsigned char *)s + i, len - i);
		if (u == 0) {
			out->len = start;
			if (out->cap > 0)
				out->data[start] = '\0';
			return false;
		}
		uint32_t cp = u == 1 ? c : c & (0x7fu >> u);
		for (size_t k = 1; k < u; k++)
			cp = cp << 6 | ((unsigned char)s[i + k] & 0x3f);
		i += u;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			shift_unit(out, &sh, (uint16_t)(0xd800 + (cp >> 10)));
			shift_unit(out, &sh, (uint16_t)(0xdc00 + (cp & 0x3ff)));
		} else {
			shift_unit(out, &sh, (uint16_t)cp);
		}
	}
	shift_end(out, &sh);
	return true;
}

/* ---- names ---- */

const char *imap_mailbox_check(char *name, size_t max_len, unsigned max_levels)
{
	size_t len = strlen(name);
	if (len == 0)
		return "Empty mailbox name";
	if (len > max_len)
		return "Mailbox name too long";
	unsigned levels = 1;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)name[i];
		size_t u = imap_utf8_len((const unsigned char *)name + i, len - i);
		if (u == 0)
			return "Mailbox name is not valid UTF-8";
		/* C0 and C1 controls, DEL (RFC 9051 5.1: SHOULD NOT) */
		if (c < 0x20 || c == 0x7f || (c == 0xc2 && (unsigned char)name[i + 1] < 0xa0))
			return "Control character in mailbox name";
		if (c == '%' || c == '*')
			return "Wildcard character in mailbox name";
		if (c == IMAP_HIER_SEP) {
			if (i == 0 || i + 1 == len || name[i + 1] == IMAP_HIER_SEP)
				return "Empty level in mailbox name";
			if (++levels > max_levels)
				return "Mailbox name has too many levels";
		}
		i += u;
	}
	/* INBOX is case-insensitive (RFC 9051 5.1), also as a parent */
	if (strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == IMAP_HIER_SEP))
		memcpy(name, "INBOX", 5);
	return NULL;
}

/* ---- LIST patterns ---- */

/* "*" matches any run of characters, "%" any run without the hierarchy
 * separator (RFC 9051 6.3.9). A dynamic programme over the name: cur[j]
 * says whether the pattern so far can match name[0..j). The INBOX prefix of
 * a name compares case-insensitively. */
bool imap_list_match(const char *pattern, const char *name, char sep)
{
	size_t n = strlen(name);
	size_t inbox =
	    strncmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == sep) ? 5 : 0;
	bool stack[2][256];
	bool *cur = stack[0], *next = stack[1], *heap = NULL;
	if (n + 1 > 256) {
		heap = xmalloc(2 * (n + 1) * sizeof *heap);
		cur = heap;
		next = heap + n + 1;
	}
	memset(cur, 0, (n + 1) * sizeof *cur);
	cur[0] = true;
	for (const char *p = pattern; *p != '\0'; p++) {
		char pc = *p;
		if ((pc == '*' || pc == '%') && p[1] == pc)
			continue; /* "**" is "*" */
		bool any = false;
		if (pc == '*' || pc == '%') {
			bool run = false;
			for (size_t j = 0; j <= n; j++) {
				if (cur[j])
					run = true;
				else if (pc == '%' && j > 0 && name[j - 1] == sep)
					run = false;
				next[j] = run;
				if (j > 0 && pc == '%' && name[j - 1] == sep && !cur[j])
					next[j] = false;
				any |= next[j];
			}
		} else {
			next[0] = false;
			for (size_t j = 1; j <= n; j++) {
				char nc = name[j - 1];
				bool eq = nc == pc ||
				          (j <= inbox && (nc | 0x20) == (pc | 0x20) && pc != sep);
				next[j] = cur[j - 1] && eq;
				any |= next[j];
			}
		}
		bool *t = cur;
		cur = next;
		next = t;
		if (!any)
			break;
	}
	bool res = cur[n];
	free(heap);
	return res;
}
