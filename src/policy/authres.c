/* The pure parts of policy (policy_int.h): the filter that drops forged
 * Authentication-Results fields (RFC 8601 5), the From: domains DMARC needs
 * (RFC 7489 6.6.1), and the Authentication-Results field's syntax (RFC 8601
 * 2.2; RFC 2045 5.1 token / quoted-string values). */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "policy/policy_int.h"

enum { S_LSTART, S_CR, S_HOLD, S_PASS, S_DROP, S_BODY };

/* RFC 2045 5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials> */
static bool is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* RFC 5322 3.2.3 atext */
static bool is_atext(unsigned char c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL) || c >= 0x80;
}

void ar_filter_init(struct ar_filter *f, const char *id)
{
	memset(f, 0, offsetof(struct ar_filter, hold));
	f->id = xstrdup(id);
	f->state = S_LSTART;
	f->dropped = 0;
}

void ar_filter_free(struct ar_filter *f)
{
	x_free(&f->id);
}

/* The decision, resumable: *pos is where the scan got to in an earlier call
 * on a shorter prefix of the same field (0: from the start), *depth the
 * comment nesting there. Every octet of CFWS is looked at once per field,
 * not once per call (a byte-by-byte caller made the old full rescan
 * quadratic: 1 KiB of comment per field, 2 s of loop time per 4 MB). */
static int decide_from(const char *h, size_t n, const char *id, size_t *pos, int *depth)
{
	static const char name[] = "Authentication-Results";
	const size_t nl = sizeof name - 1;
	size_t i = *pos;

	if (i == 0 || *depth < 0) {
		/* the field name (RFC 5322 3.6.8), WSP before the colon allowed
		 * (4.5.1 obs; *depth -1: the name matched, the scan is in that WSP) */
		if (i == 0) {
			for (; i < n && h[i] != ':' && h[i] != ' ' && h[i] != '\t'; i++)
				if (i >= nl ||
				    tolower((unsigned char)h[i]) != tolower((unsigned char)name[i]))
					return 0;
			if (i == n)
				return -1;
			if (i != nl)
				return 0;
		}
		while (i < n && (h[i] == ' ' || h[i] == '\t'))
			i++;
		if (i == n) {
			*pos = i;
			*depth = -1;
			return -1;
		}
		if (h[i++] != ':')
			return 0;
		*pos = i;
		*depth = 0;
	}
	/* CFWS (RFC 5322 3.2.2) before the authserv-id */
	for (;;) {
		if (i >= n) {
			*pos = i;
			return -1;
		}
		char c = h[i];
		if (*depth > 0) {
			/* RFC 5322 3.2.2 ccontent: a quoted-pair, a nested comment, any other octet */
			if (c == '\\') {
				if (i + 1 >= n) {
					*pos = i;
					return -1;
				}
				i += 2;
			} else {
				if (c == '(')
					(*depth)++;
				else if (c == ')')
					(*depth)--;
				i++;
			}
		} else if (c == ' ' || c == '\t') {
			i++;
		} else if (c == '\r' || c == '\n') {
			/* a fold goes on with WSP; anything else ends the field */
			size_t k = i + (c == '\r' ? 1 : 0);
			if (k >= n) {
				*pos = i;
				return -1;
			}
			if (c == '\r' && h[k] != '\n')
				return 0;
			if (k + 1 >= n) {
				*pos = i;
				return -1;
			}
			if (h[k + 1] != ' ' && h[k + 1] != '\t')
				return 0;
			i = k + 1;
		} else if (c == '(') {
			(*depth)++;
			i++;
		} else {
			break;
		}
	}
	*pos = i;
	char v[256];
	size_t vl = 0;
	if (h[i] == '"') {
		/* RFC 5322 3.2.4 quoted-string */
		for (i++;; i++) {
			if (i >= n)
				return -1;
			if (h[i] == '"')
				break;
			if (h[i] == '\\' && ++i >= n)
				return -1;
			if (h[i] == '\r' || h[i] == '\n')
				continue;
			if (vl + 1 >= sizeof v)
				return 0;
			v[vl++] = h[i];
		}
	} else {
		size_t start = i;
		while (i < n && is_token_char((unsigned char)h[i]))
			i++;
		if (i == n)
			return -1;
		if (i == start || i - start >= sizeof v)
			return 0;
		vl = i - start;
		memcpy(v, h + start, vl);
	}
	v[vl] = '\0';
	return strcasecmp(v, id) == 0 ? 1 : 0;
}

int ar_filter_decide(const char *h, size_t n, const char *id)
{
	size_t pos = 0;
	int depth = 0;
	return decide_from(h, n, id, &pos, &depth);
}

static void hold_flush(struct ar_filter *f, ar_out_fn *out, void *arg)
{
	if (f->hlen > 0)
		out(arg, f->hold, f->hlen);
	f->hlen = 0;
}

void ar_filter_feed(struct ar_filter *f, const char *p, size_t n, ar_out_fn *out, void *arg)
{
	size_t i = 0;

	while (i < n) {
		switch (f->state) {
		case S_BODY:
			out(arg, p + i, n - i);
			return;
		case S_PASS:
		case S_DROP: {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t k = nl != NULL ? (size_t)(nl - (p + i)) + 1 : n - i;
			if (f->state == S_PASS)
				out(arg, p + i, k);
			i += k;
			if (nl != NULL)
				f->state = S_LSTART;
			break;
		}
		case S_LSTART: {
			char c = p[i];
			if (c == ' ' || c == '\t') {
				/* a continuation of the field before */
				f->state = f->dropping ? S_DROP : S_PASS;
				break;
			}
			f->dropping = false;
			if (c == '\r' || c == '\n') {
				/* the empty line that ends the header section */
				out(arg, p + i, 1);
				i++;
				f->state = c == '\r' ? S_CR : S_BODY;
				break;
			}
			f->state = S_HOLD;
			f->hlen = 0;
			f->pos = 0;
			f->depth = 0;
			break;
		}
		case S_CR:
			if (p[i] == '\n') {
				out(arg, p + i, 1);
				i++;
				f->state = S_BODY;
			} else {
				f->state = S_PASS; /* a lone CR: not ours to judge */
			}
			break;
		case S_HOLD: {
			unsigned char c = (unsigned char)p[i];
			if (f->hlen > 0 && f->hold[f->hlen - 1] == '\n' && c != ' ' && c != '\t') {
				/* the field ended undecided: it passes */
				hold_flush(f, out, arg);
				f->state = S_LSTART;
				break;
			}
			f->hold[f->hlen++] = (char)c;
			i++;
			int d;
			if (f->hlen > 23 && f->hlen < AR_HOLD_MAX &&
			    (isalnum(c) || c == '.' || c == '-' || c == '_'))
				d = -1; /* inside a token: nothing new to decide */
			else
				d = decide_from(f->hold, f->hlen, f->id, &f->pos, &f->depth);
			/* An Authentication-Results field whose authserv-id is still
			 * unknown after AR_HOLD_MAX octets (a long comment or fold before
			 * it) is removed: passing it would let anyone forge ours behind
			 * 1 KiB of CFWS. RFC 8601 5 allows removing any such field. */
			if (d == -1 && f->hlen >= AR_HOLD_MAX)
				d = 1;
			if (d == 1) {
				f->dropping = true;
				f->dropped++;
				f->hlen = 0;
				f->state = c == '\n' ? S_LSTART : S_DROP;
			} else if (d == 0) {
				hold_flush(f, out, arg);
				f->state = c == '\n' ? S_LSTART : S_PASS;
			}
			break;
		}
		}
	}
}

void ar_filter_end(struct ar_filter *f, ar_out_fn *out, void *arg)
{
	if (f->state == S_HOLD)
		hold_flush(f, out, arg);
	f->state = S_BODY;
}

size_t authres_from_domains(const char *s, size_t len, char **v, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len && n < max) {
		char c = s[i];
		if (c == '(') {
			int depth = 0;
			for (; i < len; i++) {
				if (s[i] == '\\')
					i++;
				else if (s[i] == '(')
					depth++;
				else if (s[i] == ')' && --depth == 0)
					break;
			}
			i++;
		} else if (c == '"') {
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			i++;
		} else if (c == '@') {
			/* "x@ domain", "x@(c) domain": CFWS before the domain is allowed
			 * (RFC 5322 3.2.2, 4.4 obs-domain); MUAs show the domain, so DMARC
			 * must see it too */
			size_t at = i++;
			for (;;) {
				while (i < len && strchr(" \t\r\n", s[i]) != NULL)
					i++;
				if (i >= len || s[i] != '(')
					break;
				for (int depth = 0; i < len; i++) {
					if (s[i] == '\\')
						i++;
					else if (s[i] == '(')
						depth++;
					else if (s[i] == ')' && --depth == 0)
						break;
				}
				i++;
			}
			size_t start = i;
			while (i < len && strchr(" \t\r\n>,;()<\"[]", s[i]) == NULL)
				i++;
			size_t dl = i - start;
			while (dl > 0 && s[start + dl - 1] == '.')
				dl--;
			/* "<@a,@b:x@y>": a source route's hops are not addresses */
			if (dl == 0 || (i < len && s[i] == ',' && at >= 1 && s[at - 1] == '<'))
				continue;
			char *d = xstrndup(s + start, dl);
			for (char *q = d; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			bool dup = false;
			for (size_t k = 0; k < n && !dup; k++)
				dup = strcmp(v[k], d) == 0;
			if (dup)
				free(d);
			else
				v[n++] = d;
		} else {
			i++;
		}
	}
	return n;
}

static bool dot_atoms(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(is_atext((unsigned char)s[i]) || (s[i] == '.' && s[i + 1] != '.')))
			return false;
	return true;
}

void authres_value(struct buf *b, const char *v)
{
	size_t n = strlen(v);
	bool token = n > 0;
	for (size_t i = 0; i < n && token; i++)
		token = is_token_char((unsigned char)v[i]);
	const char *at = strrchr(v, '@');
	/* RFC 8601 2.2: pvalue = value / [ [ local-part ] "@" ] domain-name */
	bool addr = at != NULL && (at == v || dot_atoms(v, (size_t)(at - v))) &&
		    dot_atoms(at + 1, strlen(at + 1));
	if (token || addr) {
		buf_append(b, v, n);
		return;
	}
	buf_append(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c == 0x7f)
			continue;
		if (c == '"' || c == '\\')
			buf_append(b, "\\", 1);
		buf_append(b, v + i, 1);
	}
	buf_append(b, "\"", 1);
}

void authres_comment(struct buf *b, const char *text)
{
	buf_append(b, " (", 2);
	for (const char *p = text; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f)
			continue;
		if (c == '(' || c == ')' || c == '\\')
			buf_append(b, "\\", 1);
		buf_append(b, p, 1);
	}
	buf_append(b, ")", 1);
}

void authres_field(struct buf *out, const char *authserv_id, const char *const *res, size_t n)
{
	buf_append(out, "Authentication-Results: ", 24);
	authres_value(out, authserv_id);
	if (n == 0) {
		buf_append(out, "; none\r\n", 8);
		return;
	}
	/* RFC 8601 2.2: resinfo separated by ";", folded one a line */
	for (size_t i = 0; i < n; i++) {
		buf_append(out, ";\r\n\t", 4);
		buf_append(out, res[i], strlen(res[i]));
	}
	buf_append(out, "\r\n", 2);
}
