/* SMTP paths and mailboxes: RFC 5321 4.1.2 grammar, RFC 5321 4.5.3.1 size
 * limits, RFC 6531 3.3 UTF-8 extensions. Strict: whatever the grammar does
 * not allow is an error (no bare addresses, no spaces inside <>). */
#include "mime/addr.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/xmalloc.h"

/* RFC 5321 4.5.3.1.1-3 */
#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_PATH_MAX 256
/* RFC 1035 2.3.4 */
#define ADDR_LABEL_MAX 63

/* Length of the well-formed UTF-8 sequence for one non-ASCII character at p
 * (RFC 3629 4: no overlongs, no surrogates, nothing past U+10FFFF), or 0.
 * C1 controls (U+0080..U+009F) are refused too: no control characters in
 * addresses. p is NUL-terminated, and NUL is never a continuation byte. */
static size_t addr_utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		if (c == 0xc2)
			lo = 0xa0; /* U+0080..U+009F are C1 controls */
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* > U+10FFFF */
	} else {
		return 0; /* ASCII, lone continuation, C0/C1 leads, F5..FF */
	}
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

/* RFC 5322 3.2.3 atext; RFC 6531 3.3 adds UTF8-non-ascii. Returns the
 * character's length at p, or 0 if it is not atext. */
static size_t addr_atext_len(const char *p, bool utf8)
{
	unsigned char c = (unsigned char)*p;

	if (c >= 0x80)
		return utf8 ? addr_utf8_len((const unsigned char *)p) : 0;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* RFC 5321 4.1.2 Dot-string = Atom *("." Atom): no leading, trailing or
 * doubled dots. */
static int addr_dot_string(const char **pp, bool utf8)
{
	const char *p = *pp;

	for (;;) {
		size_t k, natext = 0;

		while ((k = addr_atext_len(p, utf8)) > 0) {
			p += k;
			natext++;
		}
		if (natext == 0)
			return -1;
		if (*p != '.')
			break;
		p++;
	}
	*pp = p;
	return 0;
}

/* RFC 5321 4.1.2 Quoted-string = DQUOTE *QcontentSMTP DQUOTE;
 * qtextSMTP = %d32-33 / %d35-91 / %d93-126, quoted-pairSMTP = "\" %d32-126;
 * RFC 6531 3.3 adds UTF8-non-ascii to qtextSMTP. NUL, CR and LF never pass. */
static int addr_quoted_string(const char **pp, bool utf8)
{
	const char *p = *pp;

	if (*p++ != '"')
		return -1;
	for (;;) {
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			break;
		if (c == '\\') {
			unsigned char q = (unsigned char)p[1];

			if (q < 32 || q > 126)
				return -1;
			p += 2;
		} else if (c >= 32 && c <= 126) {
			p++;
		} else if (c >= 0x80 && utf8) {
			size_t k = addr_utf8_len((const unsigned char *)p);

			if (k == 0)
				return -1;
			p += k;
		} else {
			return -1;
		}
	}
	*pp = p + 1;
	return 0;
}

/* RFC 5321 4.1.2 Local-part = Dot-string / Quoted-string; 4.5.3.1.1 limit. */
static int addr_local_part(const char **pp, bool utf8)
{
	const char *start = *pp;
	int rc = **pp == '"' ? addr_quoted_string(pp, utf8) : addr_dot_string(pp, utf8);

	if (rc < 0 || (size_t)(*pp - start) > ADDR_LOCAL_MAX)
		return -1;
	return 0;
}

/* Length of one label character at p: Let-dig or '-' (RFC 5321 4.1.2), or
 * a UTF-8 character of a U-label (RFC 6531 3.3) when utf8; 0 otherwise. */
static size_t addr_label_char_len(const char *p, bool utf8)
{
	unsigned char c = (unsigned char)*p;

	if (c >= 0x80)
		return utf8 ? addr_utf8_len((const unsigned char *)p) : 0;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')
		return 1;
	return 0;
}

/* RFC 5321 4.1.2 Domain = sub-domain *("." sub-domain), sub-domain =
 * Let-dig [Ldh-str]: no hyphen first or last; 63 octets a label (RFC 1035
 * 2.3.4), 255 in all (RFC 5321 4.5.3.1.2). */
static int addr_hostname(const char **pp, bool utf8)
{
	const char *p = *pp, *start = *pp;

	for (;;) {
		const char *label = p;
		size_t k;

		while ((k = addr_label_char_len(p, utf8)) > 0)
			p += k;
		if (p == label || (size_t)(p - label) > ADDR_LABEL_MAX)
			return -1;
		if (label[0] == '-' || p[-1] == '-')
			return -1;
		if (*p != '.')
			break;
		p++;
	}
	if ((size_t)(p - start) > ADDR_DOMAIN_MAX)
		return -1;
	*pp = p;
	return 0;
}

/* RFC 5321 4.1.3 address-literal = "[" ( IPv4-address-literal /
 * IPv6-address-literal / General-address-literal ) "]". The first two are
 * checked with inet_pton; general literals have no defined tags and are
 * refused. The tag "IPv6:" is case-insensitive (RFC 5234 2.3). */
static int addr_literal(const char **pp)
{
	const char *p = *pp + 1, *end = strchr(p, ']');
	char text[INET6_ADDRSTRLEN + 1];
	unsigned char bin[16];
	size_t len;
	int af = AF_INET;

	if (**pp != '[' || end == NULL)
		return -1;
	if (strncasecmp(p, "IPv6:", 5) == 0) {
		af = AF_INET6;
		p += 5;
	}
	len = (size_t)(end - p);
	if (len == 0 || len >= sizeof(text))
		return -1;
	memcpy(text, p, len);
	text[len] = '\0';
	if (inet_pton(af, text, bin) != 1)
		return -1;
	*pp = end + 1;
	return 0;
}

/* Appends the domain [d, end), lowercased (ASCII only: RFC 6531 leaves
 * U-labels as they are); a literal gets the canonical tag "IPv6:". */
static void addr_append_domain(struct buf *b, const char *d, const char *end)
{
	if (*d == '[' && strncasecmp(d + 1, "IPv6:", 5) == 0) {
		buf_appends(b, "[IPv6:");
		d += 6;
	}
	for (; d < end; d++) {
		char c = *d;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		buf_appendc(b, c);
	}
}

/* RFC 5321 4.1.2 Mailbox = Local-part "@" ( Domain / address-literal ).
 * Appends the normalized mailbox to b when b is not NULL. */
static int addr_mailbox(const char **pp, bool utf8, struct buf *b)
{
	const char *local = *pp, *at, *domain;

	if (addr_local_part(pp, utf8) < 0)
		return -1;
	at = *pp;
	if (*at != '@')
		return -1;
	domain = at + 1;
	*pp = domain;
	if (*domain == '[' ? addr_literal(pp) < 0 : addr_hostname(pp, utf8) < 0)
		return -1;
	if ((size_t)(*pp - domain) > ADDR_DOMAIN_MAX)
		return -1;
	if (b != NULL) {
		buf_append(b, local, (size_t)(domain - local));
		addr_append_domain(b, domain, *pp);
	}
	return 0;
}

/* RFC 5321 4.1.2 A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain,
 * followed by ":". Parsed and thrown away (RFC 5321 C). */
static int addr_source_route(const char **pp, bool utf8)
{
	const char *p = *pp;

	for (;;) {
		if (*p++ != '@')
			return -1;
		if (addr_hostname(&p, utf8) < 0)
			return -1;
		if (*p == ':')
			break;
		if (*p++ != ',')
			return -1;
	}
	*pp = p + 1;
	return 0;
}

int addr_parse_path(const char *s, bool allow_null, bool utf8, char **addr_r)
{
	const char *p = s;
	struct buf b = BUF_INIT;

	if (*p++ != '<')
		return -1;
	/* RFC 5321 4.1.1.2 Reverse-path = Path / "<>" */
	if (*p == '>') {
		if (!allow_null)
			return -1;
		*addr_r = xstrdup("");
		return 2;
	}
	if (*p == '@' && addr_source_route(&p, utf8) < 0)
		return -1;
	if (addr_mailbox(&p, utf8, &b) < 0 || *p++ != '>' || (size_t)(p - s) > ADDR_PATH_MAX) {
		buf_free(&b);
		return -1;
	}
	*addr_r = b.data;
	return (int)(p - s);
}

bool addr_is_valid(const char *addr, bool utf8)
{
	const char *p = addr;

	if (addr_mailbox(&p, utf8, NULL) < 0 || *p != '\0')
		return false;
	/* The path limit counts the angle brackets. */
	return (size_t)(p - addr) + 2 <= ADDR_PATH_MAX;
}

const char *addr_domain(const char *addr)
{
	/* A quoted local part may hold '@'; a domain never does. */
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : NULL;
}

bool addr_has_8bit(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s >= 0x80)
			return true;
	}
	return false;
}

bool addr_is_valid_domain(const char *d, bool utf8)
{
	const char *p = d;

	return addr_hostname(&p, utf8) == 0 && *p == '\0';
}
