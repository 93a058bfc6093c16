/* RFC 5322 / RFC 2045 lexical helpers and the IMAP string writers (see
 * mime_int.h). Every function reads only inside the range it is given. */
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "mime/mime_int.h"

bool mime_eq(const char *p, size_t n, const char *s)
{
	size_t sn = strlen(s);

	return n == sn && strncasecmp(p, s, n) == 0;
}

/* RFC 5322 2.2: a field is "name:" then a value, continued on the lines that
 * start with WSP (2.2.3). The header ends at the first empty line. */
bool mime_field_next(const char **pos, const char *end, struct mime_field *f)
{
	const char *p = *pos;

	while (p < end) {
		const char *ls = p, *colon, *nl, *ve;

		if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
			break; /* the blank line */
		nl = memchr(p, '\n', (size_t)(end - p));
		p = nl ? nl + 1 : end;
		/* continuation lines */
		while (p < end && (*p == ' ' || *p == '\t')) {
			nl = memchr(p, '\n', (size_t)(end - p));
			p = nl ? nl + 1 : end;
		}
		colon = memchr(ls, ':', (size_t)(p - ls));
		if (colon == NULL || colon == ls || *ls == ' ' || *ls == '\t')
			continue;
		f->name = ls;
		f->name_len = (size_t)(colon - ls);
		/* RFC 5322 4.5.8: WSP allowed before the colon */
		while (f->name_len > 0 &&
		       (ls[f->name_len - 1] == ' ' || ls[f->name_len - 1] == '\t'))
			f->name_len--;
		ve = p;
		if (ve > colon && ve[-1] == '\n')
			ve--;
		if (ve > colon && ve[-1] == '\r')
			ve--;
		f->value = colon + 1;
		while (f->value < ve && (*f->value == ' ' || *f->value == '\t'))
			f->value++;
		if (f->value > ve)
			f->value = ve;
		f->value_len = (size_t)(ve - f->value);
		if (f->name_len == 0)
			continue;
		*pos = p;
		return true;
	}
	*pos = p;
	return false;
}

bool mime_field_is(const struct mime_field *f, const char *name)
{
	return mime_eq(f->name, f->name_len, name);
}

int mime_rp_skip(struct mime_rp *rp)
{
	while (rp->p < rp->e) {
		char c = *rp->p;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			rp->p++;
			continue;
		}
		if (c != '(')
			return 1;
		/* RFC 5322 3.2.2 comment, nested, with quoted-pairs */
		int level = 1;
		rp->p++;
		if (rp->comment)
			buf_reset(rp->comment);
		while (rp->p < rp->e && level > 0) {
			c = *rp->p++;
			if (c == '\\' && rp->p < rp->e) {
				c = *rp->p++;
			} else if (c == '(') {
				level++;
			} else if (c == ')') {
				if (--level == 0)
					break;
			} else if (c == '\r' || c == '\n') {
				continue;
			}
			if (rp->comment)
				buf_appendc(rp->comment, c);
		}
		if (level > 0) {
			if (rp->comment)
				buf_reset(rp->comment); /* unterminated: no comment */
			return -1;
		}
	}
	return 0;
}

/* RFC 2045 5.1 token: not tspecials, SPACE or CTLs (8-bit accepted) */
static const bool mime_token_tab[256] = {
    ['!'] = 1, ['#' ... '\''] = 1, ['*' ... '+'] = 1, ['-' ... '.'] = 1, ['0' ... '9'] = 1,
    ['A' ... 'Z'] = 1, ['^' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

static bool mime_is_token(unsigned char c)
{
	return mime_token_tab[c];
}

int mime_rp_token(struct mime_rp *rp, struct buf *out)
{
	const char *s = rp->p;

	while (rp->p < rp->e && mime_is_token((unsigned char)*rp->p))
		rp->p++;
	if (rp->p == s)
		return -1;
	buf_append(out, s, (size_t)(rp->p - s));
	return mime_rp_skip(rp);
}

int mime_rp_quoted(struct mime_rp *rp, struct buf *out)
{
	/* an unterminated string keeps what came before its last line break or
	 * quoted-pair (Dovecot appends the text in such chunks) */
	size_t keep = out->len;

	rp->p++; /* '"' */
	while (rp->p < rp->e) {
		const char *s = rp->p;

		while (rp->p < rp->e && *rp->p != '"' && *rp->p != '\\' && *rp->p != '\r' &&
		       *rp->p != '\n')
			rp->p++;
		if (rp->p > s)
			buf_append(out, s, (size_t)(rp->p - s));
		if (rp->p == rp->e)
			break;
		char c = *rp->p++;

		if (c == '"')
			return mime_rp_skip(rp);
		if (c == '\\') {
			if (rp->p == rp->e)
				break;
			buf_appendc(out, *rp->p++);
			keep = out->len;
		} else if (c == '\n') {
			keep = out->len; /* RFC 5322 3.2.2 unfolding: CRLF removed */
		} else if (c == '\r' && !(rp->p < rp->e && *rp->p == '\n')) {
			buf_appendc(out, c);
		}
	}
	out->len = keep;
	if (out->data)
		out->data[keep] = '\0';
	return -1;
}

/* RFC 5322 3.2.3 atext; 8-bit bytes too (RFC 6532 3.2) */
static const bool mime_atext_tab[256] = {
    ['!'] = 1, ['#' ... '\''] = 1, ['*' ... '+'] = 1, ['-'] = 1, ['/' ... '9'] = 1, ['='] = 1,
    ['?'] = 1, ['A' ... 'Z'] = 1, ['^' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

static bool mime_is_atext(unsigned char c)
{
	return mime_atext_tab[c];
}

bool mime_rp_atom_char(char c)
{
	return mime_is_atext((unsigned char)c);
}

int mime_rp_atom(struct mime_rp *rp, struct buf *out)
{
	const char *s = rp->p;

	while (rp->p < rp->e && mime_is_atext((unsigned char)*rp->p))
		rp->p++;
	if (rp->p == s)
		return -1;
	buf_append(out, s, (size_t)(rp->p - s));
	return mime_rp_skip(rp);
}

/* RFC 5322 3.2.3 dot-atom, with the CFWS around dots of 4.4 */
int mime_rp_dot_atom(struct mime_rp *rp, struct buf *out)
{
	int ret = mime_rp_atom(rp, out);

	while (ret > 0 && *rp->p == '.') {
		buf_appendc(out, '.');
		rp->p++;
		if ((ret = mime_rp_skip(rp)) <= 0)
			return -1;
		ret = mime_rp_atom(rp, out);
	}
	return ret;
}

/* RFC 5322 3.2.5 phrase, with obs-phrase (4.1: "." allowed); words joined by
 * one space. An empty phrase before '<' is accepted (name-addr without a
 * display name). */
int mime_rp_phrase(struct mime_rp *rp, struct buf *out)
{
	int ret;
	size_t start = out->len;

	if (rp->p >= rp->e)
		return 0;
	if (*rp->p == '<')
		return 1;
	if (*rp->p == '.')
		return -1;
	for (;;) {
		if (out->len > start)
			buf_appendc(out, ' ');
		if (*rp->p == '"') {
			ret = mime_rp_quoted(rp, out);
		} else {
			const char *s = rp->p;

			while (rp->p < rp->e &&
			       (mime_is_atext((unsigned char)*rp->p) || *rp->p == '.'))
				rp->p++;
			if (rp->p == s)
				return out->len > start ? 1 : -1;
			buf_append(out, s, (size_t)(rp->p - s));
			ret = mime_rp_skip(rp);
		}
		if (ret <= 0)
			return ret;
		if (!mime_is_atext((unsigned char)*rp->p) && *rp->p != '"' && *rp->p != '.')
			return 1;
	}
}

int mime_rp_domain(struct mime_rp *rp, struct buf *out)
{
	rp->p++; /* '@' */
	if (mime_rp_skip(rp) <= 0)
		return -1;
	if (*rp->p == '[') {
		/* RFC 5322 3.4.1 domain-literal, kept with its brackets */
		const char *s = rp->p;

		while (rp->p < rp->e && *rp->p != ']') {
			if (*rp->p == '\\' && rp->p + 1 < rp->e)
				rp->p++;
			rp->p++;
		}
		if (rp->p == rp->e)
			return -1;
		rp->p++;
		buf_append(out, s, (size_t)(rp->p - s));
		return mime_rp_skip(rp);
	}
	return mime_rp_dot_atom(rp, out);
}

/* Dovecot switches from a quoted string to a literal after 4 escaped
 * characters (a literal is shorter then). */
#define MIME_QUOTED_MAX_ESCAPES 4

/* A NUL in a header value is sent as U+FFFD, as Dovecot's header parser
 * does (an IMAP string cannot hold NUL, RFC 9051 4.3). Returns a copy in
 * tmp when there is one, else p. */
static const char *mime_nul_fix(const char *p, size_t *n, struct buf *tmp)
{
	size_t i;

	if (memchr(p, '\0', *n) == NULL)
		return p;
	buf_reset(tmp);
	for (i = 0; i < *n; i++) {
		if (p[i] == '\0')
			buf_append(tmp, "\xef\xbf\xbd", 3);
		else
			buf_appendc(tmp, p[i]);
	}
	*n = tmp->len;
	return tmp->data;
}

static void mime_literal(struct buf *out, const char *p, size_t n)
{
	buf_printf(out, "{%zu}\r\n", n);
	buf_append(out, p, n);
}

void mime_imap_nstring(struct buf *out, const char *p, size_t n)
{
	size_t i, escapes = 0;
	struct buf nul = BUF_INIT;

	if (p == NULL) {
		buf_append(out, "NIL", 3);
		return;
	}
	p = mime_nul_fix(p, &n, &nul);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '"' || c == '\\') {
			if (escapes++ < MIME_QUOTED_MAX_ESCAPES)
				continue;
			mime_literal(out, p, n);
			buf_free(&nul);
			return;
		}
		if (c == '\r' || c == '\n' || c >= 0x80) {
			mime_literal(out, p, n);
			buf_free(&nul);
			return;
		}
	}
	buf_reserve(out, n + escapes + 2);
	buf_appendc(out, '"');
	if (escapes == 0) {
		buf_append(out, p, n);
	} else {
		for (i = 0; i < n; i++) {
			if (p[i] == '"' || p[i] == '\\')
				buf_appendc(out, '\\');
			buf_appendc(out, p[i]);
		}
	}
	buf_appendc(out, '"');
	buf_free(&nul);
}

void mime_imap_nolf(struct buf *out, const char *p, size_t n, struct buf *tmp)
{
	size_t i;

	if (p == NULL) {
		buf_append(out, "NIL", 3);
		return;
	}
	if (memchr(p, '\n', n) == NULL && memchr(p, '\r', n) == NULL) {
		mime_imap_nstring(out, p, n);
		return;
	}
	buf_reset(tmp);
	for (i = 0; i < n; i++) {
		char c = p[i], next = i + 1 < n ? p[i + 1] : '\0';

		if (c != '\r' && c != '\n')
			buf_appendc(tmp, c);
		else if (next != ' ' && next != '\t' && next != '\r' && next != '\n' && next != 0)
			buf_appendc(tmp, ' '); /* lines joined without whitespace */
	}
	mime_imap_nstring(out, tmp->data ? tmp->data : "", tmp->len);
}

void mime_imap_humans(struct buf *out, const char *p, size_t n)
{
	size_t i, remove = 0, start;
	bool lwsp = true, prefix = true, modify = false;
	struct buf nul = BUF_INIT;

	p = mime_nul_fix(p, &n, &nul);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		switch (c) {
		case '\r':
		case '\n':
		case '\t':
			modify = true;
			/* fall through */
		case ' ':
			if (lwsp) {
				modify = true;
				remove++;
			}
			lwsp = true;
			break;
		case '"':
		case '\\':
			modify = true;
			lwsp = false;
			break;
		default:
			if (c >= 0x80)
				modify = true;
			lwsp = false;
			break;
		}
		if (!lwsp)
			prefix = false;
	}
	if (lwsp && n > 0 && !prefix) {
		modify = true;
		remove++;
	}
	if (!modify) {
		buf_appendc(out, '"');
		buf_append(out, p, n);
		buf_appendc(out, '"');
		buf_free(&nul);
		return;
	}
	if (n == remove) {
		buf_append(out, "\"\"", 2);
		buf_free(&nul);
		return;
	}
	buf_printf(out, "{%zu}\r\n", n - remove);
	start = out->len;
	lwsp = true;
	prefix = true;
	for (i = 0; i < n; i++) {
		char c = p[i];

		if (c == '\r' || c == '\n' || c == '\t' || c == ' ') {
			if (!lwsp)
				buf_appendc(out, ' ');
			lwsp = true;
		} else {
			lwsp = false;
			buf_appendc(out, c);
		}
		if (!lwsp)
			prefix = false;
	}
	if (lwsp && n > 0 && !prefix) {
		out->len--;
		out->data[out->len] = '\0';
	}
	x_assert(out->len - start == n - remove);
	buf_free(&nul);
}
