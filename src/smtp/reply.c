/* Strict parsing of SMTP replies and EHLO keywords (see reply.h). */
#include "smtp/reply.h"

#include <string.h>
#include <strings.h>

void smtp_reply_init(struct smtp_reply *r)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->lines);
	buf_init(&r->full);
}

void smtp_reply_free(struct smtp_reply *r)
{
	buf_free(&r->lines);
	buf_free(&r->full);
	memset(r, 0, sizeof *r);
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

size_t smtp_enh_code(const char *t, size_t n, int code_class)
{
	size_t i = 0, k;
	if (n < 5 || t[0] != (char)('0' + code_class) ||
	    (code_class != 2 && code_class != 4 && code_class != 5) || t[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (k = 0; i < n && k < 3 && digit(t[i]); k++, i++)
			;
		if (k == 0 || (i < n && digit(t[i])))
			return 0;
		if (part == 0) {
			if (i >= n || t[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && t[i] != ' ')
		return 0;
	return i;
}

ssize_t smtp_reply_parse(const char *in, size_t n, size_t max, struct smtp_reply *r,
                         const char **err_r)
{
	size_t pos = 0;
	int code = 0;
	size_t lines = 0;

	*err_r = NULL;
	buf_reset(&r->lines);
	buf_reset(&r->full);
	r->code = 0;
	r->enh[0] = '\0';
	r->n_lines = 0;
	for (;;) {
		const char *line = in + pos;
		size_t avail = n - pos;
		const char *nl = memchr(
		    line, '\n', avail < SMTP_REPLY_LINE_MAX + 1 ? avail : SMTP_REPLY_LINE_MAX + 1);
		if (nl == NULL) {
			if (avail > SMTP_REPLY_LINE_MAX) {
				*err_r = "reply line too long";
				return -1;
			}
			if (n >= max) {
				*err_r = "reply too long";
				return -1;
			}
			/* What arrived of this line must already look right. */
			for (size_t i = 0; i < avail && i < 3; i++)
				if (!digit(line[i])) {
					*err_r = "malformed reply code";
					return -1;
				}
			return 0;
		}
		size_t len = (size_t)(nl - line); /* without LF */
		size_t end = pos + len + 1;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (end > max) {
			*err_r = "reply too long";
			return -1;
		}
		if (memchr(line, '\r', len) || memchr(line, '\0', len)) {
			*err_r = "CR or NUL inside a reply line";
			return -1;
		}
		if (len < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) ||
		    line[0] < '2' || line[0] > '5' || line[1] > '5') {
			*err_r = "malformed reply code";
			return -1;
		}
		int lc = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (lines > 0 && lc != code) {
			*err_r = "reply code changes inside a multi-line reply";
			return -1;
		}
		code = lc;
		bool last;
		if (len == 3)
			last = true;
		else if (line[3] == ' ')
			last = true;
		else if (line[3] == '-')
			last = false;
		else {
			*err_r = "malformed reply line";
			return -1;
		}
		if (++lines > SMTP_REPLY_MAX_LINES) {
			*err_r = "too many reply lines";
			return -1;
		}
		const char *text = len > 4 ? line + 4 : line + len;
		size_t tlen = len > 4 ? len - 4 : 0;
		buf_append(&r->lines, text, tlen);
		buf_appendc(&r->lines, '\n');
		if (lines > 1)
			buf_appends(&r->full, " / ");
		buf_append(&r->full, line, len);
		if (lines == 1) {
			size_t el = smtp_enh_code(text, tlen, code / 100);
			if (el > 0 && el < sizeof r->enh) {
				memcpy(r->enh, text, el);
				r->enh[el] = '\0';
			}
		}
		pos = end;
		if (last)
			break;
	}
	r->code = code;
	r->n_lines = lines;
	return (ssize_t)pos;
}

/* Next whitespace-separated word of [*p, e). */
static bool word(const char **p, const char *e, const char **w, size_t *wl)
{
	while (*p < e && (**p == ' ' || **p == '\t'))
		(*p)++;
	if (*p >= e)
		return false;
	*w = *p;
	while (*p < e && **p != ' ' && **p != '\t')
		(*p)++;
	*wl = (size_t)(*p - *w);
	return true;
}

static bool kw(const char *w, size_t wl, const char *s)
{
	return wl == strlen(s) && strncasecmp(w, s, wl) == 0;
}

static void auth_mechs(const char *p, const char *e, struct smtp_ehlo *x)
{
	const char *w;
	size_t wl;
	while (word(&p, e, &w, &wl)) {
		if (kw(w, wl, "PLAIN"))
			x->auth_plain = true;
		else if (kw(w, wl, "LOGIN"))
			x->auth_login = true;
	}
}

void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *x)
{
	memset(x, 0, sizeof *x);
	if (r->code != 250 || r->lines.len == 0)
		return;
	const char *p = r->lines.data, *end = p + r->lines.len;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	p = nl ? nl + 1 : end; /* the first line is the server's name and greeting */
	while (p < end) {
		const char *le = memchr(p, '\n', (size_t)(end - p));
		const char *q = p, *w;
		size_t wl;
		if (le == NULL)
			le = end;
		if (word(&q, le, &w, &wl)) {
			if (kw(w, wl, "PIPELINING"))
				x->pipelining = true;
			else if (kw(w, wl, "8BITMIME"))
				x->eightbitmime = true;
			else if (kw(w, wl, "SMTPUTF8"))
				x->smtputf8 = true;
			else if (kw(w, wl, "DSN"))
				x->dsn = true;
			else if (kw(w, wl, "STARTTLS"))
				x->starttls = true;
			else if (kw(w, wl, "CHUNKING"))
				x->chunking = true;
			else if (kw(w, wl, "AUTH"))
				auth_mechs(q, le, x);
			else if (wl > 5 && strncasecmp(w, "AUTH=", 5) == 0)
				auth_mechs(w + 5, le, x); /* the pre-RFC 4954 form */
			else if (kw(w, wl, "SIZE")) {
				/* RFC 1870 4: "SIZE" [SP number]; 0 or none: no limit */
				const char *v;
				size_t vl;
				uint64_t n = 0;
				bool ok = true;
				x->size = true;
				if (word(&q, le, &v, &vl)) {
					for (size_t i = 0; i < vl; i++) {
						if (!digit(v[i]) || n > UINT64_MAX / 10 - 9) {
							ok = false;
							break;
						}
						n = n * 10 + (uint64_t)(v[i] - '0');
					}
				}
				x->size_max = ok ? n : 0;
			}
		}
		p = le + 1;
	}
}
