/* FETCH items (RFC 9051 6.4.5 and 9: fetch-att; RFC 3501 6.4.5: RFC822*;
 * RFC 3516 4.2: BINARY; RFC 7162 3.1.4: CHANGEDSINCE, 3.2.6: VANISHED). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "imap/parse.h"
#include "imap/parse_int.h"
#include "mime/mime.h"

#define FETCH_MAX_FIELDS 256 /* header names in one HEADER.FIELDS */

static struct imap_fetch_item *add_item(struct imap_fetch *f, enum imap_fetch_kind kind,
                                        const char *label)
{
	f->v = xrealloc(f->v, (f->n + 1) * sizeof *f->v);
	struct imap_fetch_item *it = &f->v[f->n++];
	memset(it, 0, sizeof *it);
	it->kind = kind;
	it->label = xstrdup(label);
	return it;
}

static const struct {
	const char *name;
	enum imap_fetch_kind kind;
} simple[] = {
    {"FLAGS", IMAP_FETCH_FLAGS},
    {"INTERNALDATE", IMAP_FETCH_INTERNALDATE},
    {"RFC822.SIZE", IMAP_FETCH_RFC822_SIZE},
    {"ENVELOPE", IMAP_FETCH_ENVELOPE},
    {"BODY", IMAP_FETCH_BODY},
    {"BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE},
    {"UID", IMAP_FETCH_UID},
    {"MODSEQ", IMAP_FETCH_MODSEQ},
    {"RFC822", IMAP_FETCH_RFC822},
    {"RFC822.HEADER", IMAP_FETCH_RFC822_HEADER},
    {"RFC822.TEXT", IMAP_FETCH_RFC822_TEXT},
    {"EMAILID", IMAP_FETCH_EMAILID},   /* RFC 8474 5.1 */
    {"THREADID", IMAP_FETCH_THREADID}, /* RFC 8474 5.2 */
    {"SAVEDATE", IMAP_FETCH_SAVEDATE}, /* RFC 8514 4 */
};

static bool upper_eq(const char *s, size_t n, const char *upper)
{
	return strlen(upper) == n && strncasecmp(s, upper, n) == 0;
}

/* header-fld-name = astring; inside the bracket it is an atom or a quoted
 * string (a literal cannot occur inside an atom). Its characters must be
 * a field name's (RFC 5322 3.6.8: printable, no colon). Appends the names
 * to it and the label (upper case, one space apart, as Dovecot echoes). */
static int header_list(const char *s, size_t n, struct imap_fetch_item *it, struct buf *label)
{
	size_t i = 0;
	struct buf name = BUF_INIT;
	int ret = -1;

	if (n < 2 || s[0] != '(' || s[n - 1] != ')')
		return -1;
	s++;
	n -= 2;
	buf_appends(label, " (");
	while (i < n) {
		buf_reset(&name);
		if (s[i] == '"') {
			i++;
			while (i < n && s[i] != '"') {
				if (s[i] == '\\' && i + 1 < n &&
				    (s[i + 1] == '"' || s[i + 1] == '\\'))
					i++;
				else if (s[i] == '\\')
					goto out;
				buf_appendc(&name, s[i++]);
			}
			if (i >= n)
				goto out;
			i++;
		} else {
			while (i < n && s[i] != ' ') {
				if (!imap_is_astring_char((unsigned char)s[i]))
					goto out;
				buf_appendc(&name, s[i++]);
			}
		}
		if (name.len == 0 || it->n_names >= FETCH_MAX_FIELDS)
			goto out;
		for (size_t k = 0; k < name.len; k++) {
			unsigned char c = (unsigned char)name.data[k];
			if (c <= 0x20 || c >= 0x7f || c == ':')
				goto out;
			if (c >= 'a' && c <= 'z')
				name.data[k] = (char)(c - 32);
		}
		it->names = xrealloc(it->names, (it->n_names + 1) * sizeof *it->names);
		it->names[it->n_names++] = xstrdup(name.data);
		if (it->n_names > 1)
			buf_appendc(label, ' ');
		/* the names as atoms, or quoted when they cannot be */
		imap_append_astring(label, name.data, name.len);
		if (i < n) {
			if (s[i] != ' ' || i + 1 >= n)
				goto out;
			i++;
		}
	}
	if (it->n_names == 0)
		goto out;
	buf_appendc(label, ')');
	ret = 0;
out:
	buf_free(&name);
	return ret;
}

/* section-spec inside "[...]" (RFC 9051 9: section-spec); binary: only a
 * section-part (RFC 3516 4.2). The label gets the upper-cased section. */
static int section(const char *s, size_t n, bool binary, struct imap_fetch_item *it,
                   struct buf *label)
{
	size_t i = 0;

	it->what = MIME_SECT_BODY;
	/* section-part = nz-number *("." nz-number) */
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		size_t st = i;
		uint64_t v;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (s[st] == '0' || !imap_parse_u64(s + st, i - st, UINT32_MAX, &v) ||
		    it->depth >= sizeof it->path / sizeof it->path[0])
			return -1;
		it->path[it->depth++] = (uint32_t)v;
		if (i == n)
			break;
		if (s[i] != '.' || i + 1 == n)
			return -1;
		i++;
	}
	buf_append(label, s, i);
	if (i == n)
		return 0;
	if (binary)
		return -1;
	const char *t = s + i;
	size_t tn = n - i;
	if (upper_eq(t, tn, "HEADER")) {
		it->what = MIME_SECT_HEADER;
		buf_appends(label, "HEADER");
	} else if (upper_eq(t, tn, "TEXT")) {
		it->what = MIME_SECT_TEXT;
		buf_appends(label, "TEXT");
	} else if (upper_eq(t, tn, "MIME")) {
		/* section-text "MIME" only after a part number */
		if (it->depth == 0)
			return -1;
		it->what = MIME_SECT_MIME;
		buf_appends(label, "MIME");
	} else if (tn > 18 && strncasecmp(t, "HEADER.FIELDS.NOT ", 18) == 0) {
		it->what = MIME_SECT_HEADER;
		it->fields = it->fields_not = true;
		buf_appends(label, "HEADER.FIELDS.NOT");
		return header_list(t + 18, tn - 18, it, label);
	} else if (tn > 14 && strncasecmp(t, "HEADER.FIELDS ", 14) == 0) {
		it->what = MIME_SECT_HEADER;
		it->fields = true;
		buf_appends(label, "HEADER.FIELDS");
		return header_list(t + 14, tn - 14, it, label);
	} else {
		return -1;
	}
	return 0;
}

/* BODY[...]<...>, BODY.PEEK[...]<...>, BINARY[.PEEK][...]<...>,
 * BINARY.SIZE[...] */
static int section_item(struct imap_fetch *f, const char *s, size_t n)
{
	const char *lb = memchr(s, '[', n);
	const char *rb = n > 0 ? memrchr(s, ']', n) : NULL;
	if (lb == NULL || rb == NULL || rb < lb)
		return -1;
	size_t pre = (size_t)(lb - s);
	enum imap_fetch_kind kind;
	bool peek = false;
	const char *lname;
	if (upper_eq(s, pre, "BODY")) {
		kind = IMAP_FETCH_SECTION, lname = "BODY[";
	} else if (upper_eq(s, pre, "BODY.PEEK")) {
		kind = IMAP_FETCH_SECTION, lname = "BODY[", peek = true;
	} else if (upper_eq(s, pre, "BINARY")) {
		kind = IMAP_FETCH_BINARY, lname = "BINARY[";
	} else if (upper_eq(s, pre, "BINARY.PEEK")) {
		kind = IMAP_FETCH_BINARY, lname = "BINARY[", peek = true;
	} else if (upper_eq(s, pre, "BINARY.SIZE")) {
		kind = IMAP_FETCH_BINARY_SIZE, lname = "BINARY.SIZE[", peek = true;
	} else {
		return -1;
	}
	struct imap_fetch_item it;
	struct buf label = BUF_INIT;
	memset(&it, 0, sizeof it);
	it.kind = kind;
	it.peek = peek;
	buf_appends(&label, lname);
	if (section(lb + 1, (size_t)(rb - lb - 1), kind != IMAP_FETCH_SECTION, &it, &label) < 0)
		goto bad;
	buf_appendc(&label, ']');
	/* partial = "<" number64 "." nz-number64 ">" (RFC 9051 9) */
	const char *p = rb + 1;
	size_t pn = n - (size_t)(p - s);
	if (pn > 0) {
		const char *dot = memchr(p, '.', pn);
		if (kind == IMAP_FETCH_BINARY_SIZE || pn < 5 || p[0] != '<' || p[pn - 1] != '>' ||
		    dot == NULL)
			goto bad;
		size_t ol = (size_t)(dot - p - 1), ll = pn - 2 - ol - 1;
		if (!imap_parse_u64(p + 1, ol, INT64_MAX, &it.p_off) ||
		    !imap_parse_u64(dot + 1, ll, INT64_MAX, &it.p_len) || it.p_len == 0 ||
		    dot[1] == '0')
			goto bad;
		it.partial = true;
		/* echoed with the offset only (RFC 9051 7.5.2 BODY[]<origin>) */
		buf_printf(&label, "<%llu>", (unsigned long long)it.p_off);
	}
	f->v = xrealloc(f->v, (f->n + 1) * sizeof *f->v);
	it.label = xstrndup(label.data, label.len);
	f->v[f->n++] = it;
	buf_free(&label);
	return 0;
bad:
	for (size_t k = 0; k < it.n_names; k++)
		free(it.names[k]);
	free(it.names);
	buf_free(&label);
	return -1;
}

/* RFC 8970 3: fetch-att =/ "PREVIEW" [SP "(" preview-mod *(SP preview-mod)
 * ")"], preview-mod = "LAZY" (the only one defined). *ap is at PREVIEW; a
 * following list of modifiers is consumed. */
static int preview_item(struct imap_fetch *f, const struct imap_arg **ap)
{
	const struct imap_arg *a = *ap;
	bool lazy = false;
	if (a[1].type == IMAP_ARG_LIST && imap_arg_atom_is(&a[1].list[0], "LAZY")) {
		for (const struct imap_arg *m = a[1].list; m->type != IMAP_ARG_EOL; m++)
			if (!imap_arg_atom_is(m, "LAZY"))
				return -1;
		lazy = true;
		*ap = a + 1;
	}
	struct imap_fetch_item *it = add_item(f, IMAP_FETCH_PREVIEW, "PREVIEW");
	it->peek = lazy;
	return 0;
}

/* One item at *ap (left on the item's last argument). */
static int one_item(struct imap_fetch *f, const struct imap_arg **ap)
{
	const struct imap_arg *a = *ap;
	if (a->type != IMAP_ARG_ATOM)
		return -1;
	if (upper_eq(a->str, a->len, "PREVIEW"))
		return preview_item(f, ap);
	for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
		if (upper_eq(a->str, a->len, simple[i].name)) {
			add_item(f, simple[i].kind, simple[i].name);
			return 0;
		}
	return section_item(f, a->str, a->len);
}

static void finish(struct imap_fetch *f)
{
	for (size_t i = 0; i < f->n; i++) {
		struct imap_fetch_item *it = &f->v[i];
		switch (it->kind) {
		case IMAP_FETCH_RFC822:
		case IMAP_FETCH_RFC822_TEXT:
			f->sets_seen = true;
			f->need_blob = f->need_cache = true;
			break;
		case IMAP_FETCH_SECTION:
		case IMAP_FETCH_BINARY:
			f->sets_seen |= !it->peek;
			f->need_blob = f->need_cache = true;
			break;
		case IMAP_FETCH_RFC822_HEADER:
		case IMAP_FETCH_BINARY_SIZE:
			f->need_blob = f->need_cache = true;
			break;
		case IMAP_FETCH_ENVELOPE:
		case IMAP_FETCH_BODY:
		case IMAP_FETCH_BODYSTRUCTURE:
			f->need_cache = true;
			break;
		case IMAP_FETCH_PREVIEW:
			/* the blob is read only for a preview not cached yet
			 * (fetchcmd.c); peek = LAZY */
			f->preview_lazy = (!f->need_preview || f->preview_lazy) && it->peek;
			f->need_preview = true;
			break;
		default:
			break;
		}
	}
}

/* fetch-modifiers (RFC 4466 2.4): "(" CHANGEDSINCE n [VANISHED] ")" in any
 * order (RFC 7162 3.1.4.1, 3.2.6). */
static int modifiers(struct imap_fetch *f, const struct imap_arg *list, const char **err_r)
{
	bool have_cs = false;
	for (const struct imap_arg *m = list; m->type != IMAP_ARG_EOL; m++) {
		if (imap_arg_atom_is(m, "CHANGEDSINCE") && !have_cs) {
			m++;
			/* mod-sequence-valzer: 0 allowed */
			if (!imap_arg_number64(m, &f->changedsince)) {
				*err_r = "Invalid CHANGEDSINCE modseq";
				return -1;
			}
			have_cs = true;
		} else if (imap_arg_atom_is(m, "VANISHED") && !f->vanished) {
			f->vanished = true;
		} else {
			*err_r = "Invalid FETCH modifier";
			return -1;
		}
	}
	if (list->type == IMAP_ARG_EOL) {
		*err_r = "Empty FETCH modifier list";
		return -1;
	}
	if (f->vanished && !have_cs) {
		*err_r = "VANISHED requires CHANGEDSINCE"; /* RFC 7162 3.2.6 */
		return -1;
	}
	f->has_changedsince = have_cs;
	return 0;
}

int imap_fetch_parse(const struct imap_arg *args, struct imap_fetch *f, const char **err_r)
{
	memset(f, 0, sizeof *f);
	const struct imap_arg *a = args;
	*err_r = "Invalid fetch attribute";

	if (a->type == IMAP_ARG_ATOM && upper_eq(a->str, a->len, "ALL")) {
		/* macros (RFC 9051 6.4.5) */
		add_item(f, IMAP_FETCH_FLAGS, "FLAGS");
		add_item(f, IMAP_FETCH_INTERNALDATE, "INTERNALDATE");
		add_item(f, IMAP_FETCH_RFC822_SIZE, "RFC822.SIZE");
		add_item(f, IMAP_FETCH_ENVELOPE, "ENVELOPE");
	} else if (a->type == IMAP_ARG_ATOM && upper_eq(a->str, a->len, "FAST")) {
		add_item(f, IMAP_FETCH_FLAGS, "FLAGS");
		add_item(f, IMAP_FETCH_INTERNALDATE, "INTERNALDATE");
		add_item(f, IMAP_FETCH_RFC822_SIZE, "RFC822.SIZE");
	} else if (a->type == IMAP_ARG_ATOM && upper_eq(a->str, a->len, "FULL")) {
		add_item(f, IMAP_FETCH_FLAGS, "FLAGS");
		add_item(f, IMAP_FETCH_INTERNALDATE, "INTERNALDATE");
		add_item(f, IMAP_FETCH_RFC822_SIZE, "RFC822.SIZE");
		add_item(f, IMAP_FETCH_ENVELOPE, "ENVELOPE");
		add_item(f, IMAP_FETCH_BODY, "BODY");
	} else if (a->type == IMAP_ARG_LIST) {
		if (a->list[0].type == IMAP_ARG_EOL)
			goto bad;
		for (const struct imap_arg *it = a->list; it->type != IMAP_ARG_EOL; it++)
			if (one_item(f, &it) < 0)
				goto bad;
	} else if (a->type == IMAP_ARG_EOL) {
		*err_r = "Missing fetch attributes";
		goto bad;
	} else if (one_item(f, &a) < 0) {
		goto bad;
	}
	a++;
	if (a->type == IMAP_ARG_LIST) {
		if (modifiers(f, a->list, err_r) < 0)
			goto bad;
		a++;
	}
	if (a->type != IMAP_ARG_EOL) {
		*err_r = "Unexpected arguments after FETCH attributes";
		goto bad;
	}
	/* CHANGEDSINCE implies MODSEQ in every response (RFC 7162 3.1.4.1) */
	if (f->has_changedsince) {
		bool have = false;
		for (size_t i = 0; i < f->n; i++)
			have |= f->v[i].kind == IMAP_FETCH_MODSEQ;
		if (!have)
			add_item(f, IMAP_FETCH_MODSEQ, "MODSEQ");
	}
	finish(f);
	*err_r = NULL;
	return 0;
bad:
	imap_fetch_free(f);
	return -1;
}

void imap_fetch_free(struct imap_fetch *f)
{
	for (size_t i = 0; i < f->n; i++) {
		for (size_t k = 0; k < f->v[i].n_names; k++)
			free(f->v[i].names[k]);
		free(f->v[i].names);
		free(f->v[i].label);
	}
	x_free(&f->v);
	f->n = 0;
}
