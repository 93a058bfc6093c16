/* Milter packets and header edits (milter_proto.h, milter.h's
 * milter_apply_edits). Pure: no I/O, no globals. */
#include "filter/milter_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/endian.h"
#include "filter/milter.h"

static void put32(struct buf *b, uint32_t v)
{
	unsigned char p[4];
	be32_put(p, v);
	buf_append(b, p, 4);
}

void milter_pkt_put(struct buf *b, char cmd, const void *data, size_t n)
{
	put32(b, (uint32_t)(n + 1));
	buf_appendc(b, cmd);
	if (n > 0)
		buf_append(b, data, n);
}

int milter_pkt_get(const char *p, size_t n, size_t max, char *cmd_r, const char **data_r,
		   size_t *len_r, size_t *used_r)
{
	if (n < 4)
		return 0;
	uint32_t len = be32_get(p);
	if (len == 0 || len - 1 > max)
		return -1;
	if (n - 4 < len)
		return 0;
	*cmd_r = p[4];
	*data_r = p + 5;
	*len_r = len - 1;
	*used_r = 4 + (size_t)len;
	return 1;
}

void milter_optneg_put(struct buf *b, uint32_t version, uint32_t actions, uint32_t proto)
{
	put32(b, 13);
	buf_appendc(b, SMFIC_OPTNEG);
	put32(b, version);
	put32(b, actions);
	put32(b, proto);
}

int milter_optneg_parse(const char *d, size_t n, uint32_t *version, uint32_t *actions,
			uint32_t *proto)
{
	if (n < 12)
		return -1;
	*version = be32_get(d);
	*actions = be32_get(d + 4);
	*proto = be32_get(d + 8);
	return 0;
}

int milter_negotiate(uint32_t version, uint32_t actions, uint32_t proto, uint32_t *actions_r,
		     uint32_t *proto_r)
{
	if (version < 2 || version > MILTER_VERSION)
		return -1;
	*actions_r = actions & MILTER_OUR_ACTIONS;
	proto &= MILTER_OUR_PROTO;
	if (version < 6) /* the flags of versions 2 to 4 (Postfix's MILTER8_V4_PROTO_MASK) */
		proto &= SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT |
			 SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
	if (version < 4) /* SMFIC_DATA came with version 4 */
		proto |= SMFIP_NODATA;
	*proto_r = proto;
	return 0;
}

/* RFC 5322 2.2: a field name is printable US-ASCII but the colon. */
static bool field_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return false;
	return true;
}

int milter_hdr_parse(const char *d, size_t n, bool with_index, uint32_t *index,
		     const char **name, const char **value)
{
	if (with_index) {
		if (n < 4)
			return -1;
		*index = be32_get(d);
		d += 4;
		n -= 4;
	}
	const char *z = memchr(d, '\0', n);
	if (z == NULL)
		return -1;
	const char *v = z + 1;
	size_t rest = n - (size_t)(v - d);
	if (memchr(v, '\0', rest) == NULL)
		return -1;
	if (!field_name_ok(d))
		return -1;
	*name = d;
	*value = v;
	return 0;
}

/* What the cleaning leaves out of a line: white space and control bytes
 * (a line of only these is no line: RFC 5322 3.2.2). */
static bool blank_or_dropped(unsigned char c)
{
	return c == ' ' || c == '\t' || (c < 32 && c != '\r' && c != '\n') || c == 127;
}

void milter_value_clean(const char *v, struct buf *out)
{
	buf_reset(out);
	buf_reserve(out, strlen(v) + 8);
	if (*v == ' ')
		v++;
	while (*v != '\0') {
		unsigned char c = (unsigned char)*v;
		if (c == '\r' || c == '\n') {
			/* a line break inside the value: a fold, never a new field;
			 * a line with nothing but white space goes (RFC 5322 3.2.2:
			 * a folded line never consists of white space alone; some
			 * readers take one for the end of the header section) */
			for (;;) {
				while (*v == '\r' || *v == '\n')
					v++;
				const char *w = v;
				while (*w != '\0' && blank_or_dropped((unsigned char)*w))
					w++;
				if (*w != '\r' && *w != '\n' && *w != '\0')
					break;
				v = w;
				if (*v == '\0')
					break;
			}
			if (*v == '\0')
				break;
			buf_append(out, "\r\n", 2);
			if (*v != ' ' && *v != '\t')
				buf_appendc(out, ' ');
			continue;
		}
		if ((c < 32 && c != '\t') || c == 127) {
			v++;
			continue;
		}
		buf_appendc(out, (char)c);
		v++;
	}
	buf_reserve(out, 1);
	out->data[out->len] = '\0'; /* a C string even when nothing was appended */
}

static void text_append(char *text, size_t tcap, size_t *tl, const char *s, size_t n)
{
	for (size_t i = 0; i < n && *tl + 1 < tcap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 32 || c == 127)
			c = ' ';
		text[(*tl)++] = (char)c;
	}
	text[*tl] = '\0';
}

/* RFC 3463 2: class "." subject "." detail; class 2, 4 or 5, subject and
 * detail 1 to 3 digits. */
static bool ecode_ok(const char *s, size_t n)
{
	if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t k = 0;
		while (i < n && s[i] >= '0' && s[i] <= '9' && k < 4)
			i++, k++;
		if (k == 0 || k > 3)
			return false;
		if (part == 0) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
	}
	return i == n;
}

int milter_replycode_parse(const char *d, size_t n, int *code, char *ecode, size_t ecap,
			   char *text, size_t tcap)
{
	const char *z = memchr(d, '\0', n);
	if (z != NULL)
		n = (size_t)(z - d);
	if (n < 3 || d[0] < '4' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' ||
	    d[2] > '9')
		return -1;
	if (n > 3 && d[3] != ' ' && d[3] != '-' && d[3] != '\r')
		return -1;
	*code = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
	ecode[0] = '\0';
	size_t tl = 0;
	text[0] = '\0';
	const char *p = d, *end = d + n;
	bool first = true;
	while (p < end) {
		const char *eol = p;
		while (eol < end && *eol != '\r' && *eol != '\n')
			eol++;
		const char *s = p;
		/* each line: the code, then an optional enhanced code (RFC 3463) */
		if (eol - s >= 3 && memcmp(s, d, 3) == 0)
			s += 3;
		else if (!first)
			return -1;
		if (s < eol && (*s == ' ' || *s == '-'))
			s++;
		const char *e = s;
		while (e < eol && (e == s ? (*e >= '2' && *e <= '5') : (*e == '.' || (*e >= '0' && *e <= '9'))))
			e++;
		if (e > s + 4 && (e == eol || *e == ' ') && ecode_ok(s, (size_t)(e - s))) {
			if (first && (size_t)(e - s) < ecap) {
				memcpy(ecode, s, (size_t)(e - s));
				ecode[e - s] = '\0';
			}
			s = e;
			while (s < eol && *s == ' ')
				s++;
		}
		if (tl > 0 && s < eol)
			text_append(text, tcap, &tl, " ", 1);
		text_append(text, tcap, &tl, s, (size_t)(eol - s));
		first = false;
		p = eol;
		while (p < end && (*p == '\r' || *p == '\n'))
			p++;
	}
	/* RFC 3463 2: the enhanced code's class is the reply's */
	if (ecode[0] != '\0' && ecode[0] != d[0]) {
		if (ecap > 6)
			snprintf(ecode, ecap, "%c.7.1", d[0]);
		else
			ecode[0] = '\0';
	}
	/* RFC 5321 3.8, 4.2.3: 421 closes the channel, which a filter's verdict
	 * does not (Postfix's smtpd hangs up after it): the temporary failure
	 * is kept as 451, the session goes on */
	if (*code == 421)
		*code = 451;
	return 0;
}

int milter_field_split(const char *f, size_t n, bool leadspc, struct buf *name,
		       struct buf *value)
{
	const char *colon = memchr(f, ':', n);
	if (colon == NULL)
		return -1;
	const char *ne = colon;
	while (ne > f && (ne[-1] == ' ' || ne[-1] == '\t'))
		ne--;
	/* A NUL (SMTP carries it; RFC 5322 does not allow it) would end the
	 * name or the value in the NUL-separated packet: "From\0<x@y>\0: z"
	 * would reach the milter as a From field that no reader of the stored
	 * message sees. It goes as a space. */
	buf_reset(name);
	for (const char *p = f; p < ne; p++)
		buf_appendc(name, *p == '\0' ? ' ' : *p);
	buf_reset(value);
	buf_reserve(value, n);
	const char *v = colon + 1, *end = f + n;
	/* the field's own final line break is not part of the value */
	if (end > v && end[-1] == '\n')
		end--;
	if (end > v && end[-1] == '\r')
		end--;
	if (!leadspc && v < end && *v == ' ')
		v++; /* as Sendmail: one space after the colon eaten */
	for (; v < end; v++) {
		if (*v == '\r' && v + 1 < end && v[1] == '\n')
			continue; /* CRLF inside: LF */
		buf_appendc(value, *v == '\0' ? ' ' : *v);
	}
	return 0;
}

/* ---- milter_apply_edits ---- */

struct hfield {
	const char *p; /* original bytes, or NULL: text */
	size_t len;
	char *text;    /* a new or changed field, "name: value\r\n" */
	const char *name;
	size_t name_len;
	bool deleted;
};

static size_t line_end(const char *msg, size_t len, size_t i)
{
	const char *nl = memchr(msg + i, '\n', len - i);
	return nl != NULL ? (size_t)(nl - msg) + 1 : len;
}

static bool is_blank_line(const char *p, size_t n)
{
	return (n == 1 && p[0] == '\n') || (n == 2 && p[0] == '\r' && p[1] == '\n');
}

static void field_set(struct hfield *h, const char *name, const char *value)
{
	struct buf v = BUF_INIT;
	milter_value_clean(value, &v);
	free(h->text);
	h->text = xasprintf("%s: %s\r\n", name, v.data != NULL ? v.data : "");
	buf_free(&v);
	h->p = NULL;
	h->len = strlen(h->text);
	h->name = h->text;
	h->name_len = strlen(name);
}

int milter_apply_edits(const char *msg, size_t len, const struct milter_edit *e, size_t n,
		       struct buf *out)
{
	/* the header section: fields up to the empty line (RFC 5322 2.1) */
	size_t cap = 16, nf = 0, i = 0;
	struct hfield *hf = xcalloc(cap + n, sizeof(*hf));
	while (i < len) {
		size_t le = line_end(msg, len, i);
		if (is_blank_line(msg + i, le - i))
			break;
		const char *colon = memchr(msg + i, ':', le - i);
		if (msg[i] == ' ' || msg[i] == '\t') {
			if (nf == 0)
				break; /* a continuation with nothing to continue */
			hf[nf - 1].len += le - i;
			i = le;
			continue;
		}
		if (colon == NULL)
			break; /* not a field: the header section ends here */
		if (nf == cap) {
			cap *= 2;
			hf = xrealloc(hf, (cap + n) * sizeof(*hf));
		}
		const char *ne = colon;
		while (ne > msg + i && (ne[-1] == ' ' || ne[-1] == '\t'))
			ne--;
		hf[nf] = (struct hfield){.p = msg + i, .len = le - i, .name = msg + i,
					 .name_len = (size_t)(ne - (msg + i))};
		nf++;
		i = le;
	}
	if (nf == 0) {
		free(hf);
		return -1;
	}
	size_t body = i;
	for (size_t k = 0; k < n; k++) {
		const struct milter_edit *ed = &e[k];
		const char *name = ed->name != NULL ? ed->name : "";
		const char *value = ed->value != NULL ? ed->value : "";
		if (!field_name_ok(name))
			continue;
		size_t at = nf; /* where a new field goes: appended by default */
		if (ed->kind == MILTER_CHANGE || ed->kind == MILTER_DELETE) {
			/* the index-th field of that name (1-based), as counted now */
			unsigned seen = 0;
			size_t found = nf;
			for (size_t j = 0; j < nf; j++) {
				if (hf[j].deleted || hf[j].name_len != strlen(name) ||
				    strncasecmp(hf[j].name, name, hf[j].name_len) != 0)
					continue;
				if (++seen == (ed->index ? ed->index : 1)) {
					found = j;
					break;
				}
			}
			if (found < nf) {
				if (ed->kind == MILTER_DELETE)
					hf[found].deleted = true;
				else
					field_set(&hf[found], name, value);
				continue;
			}
			/* none to change: added, as Sendmail and Postfix do;
			 * none to delete: nothing */
			if (ed->kind == MILTER_DELETE)
				continue;
		} else if (ed->kind == MILTER_INSERT) {
			/* index 0 = first, counting the fields present now */
			size_t vis = 0;
			for (at = 0; at < nf; at++) {
				if (hf[at].deleted)
					continue;
				if (vis == ed->index)
					break;
				vis++;
			}
		}
		if (nf == cap + n) /* cannot happen: room for every edit */
			continue;
		memmove(&hf[at + 1], &hf[at], (nf - at) * sizeof(*hf));
		hf[at] = (struct hfield){0};
		field_set(&hf[at], name, value);
		nf++;
	}
	buf_reserve(out, len + 256);
	for (size_t j = 0; j < nf; j++) {
		if (!hf[j].deleted) {
			const char *f = hf[j].p != NULL ? hf[j].p : hf[j].text;
			buf_append(out, f, hf[j].len);
			/* the last line had no line break: the next field needs one */
			if (hf[j].len > 0 && f[hf[j].len - 1] != '\n' && j + 1 < nf)
				buf_append(out, "\r\n", 2);
		}
		free(hf[j].text);
	}
	free(hf);
	buf_append(out, msg + body, len - body);
	return 0;
}
