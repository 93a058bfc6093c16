/* Dangerous attachments (attach.h): the MIME structure of a message walked
 * (RFC 2045, RFC 2046 5.1 multipart, 5.2 message/rfc822), every part's
 * names (RFC 2183 filename, Content-Type name; RFC 2231 and RFC 2047
 * encodings decoded) checked against the blocked extensions, and every
 * part's decoded content sniffed for executables, scripts, macro documents
 * and zip archives carrying one of those. Pure: no I/O, no globals. */
#include "filter/attach.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/endian.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/xmalloc.h"
#include "mime/mime.h"

#define ATTACH_MAX_DEPTH 32      /* attach.h: deeper parts not looked into */
#define ATTACH_MAX_PARTS 5000    /* as MIME_MAX_PARTS */
#define ATTACH_MAX_SECTION 100000 /* RFC 2231 3 continuation numbers above: ignored */
#define ATTACH_MAX_NAME 1024     /* a longer file name is cut (its end kept) */
#define ATTACH_MAX_ZIP_ENTRIES 65536
#define ATTACH_NAME_SHOWN 80     /* octets of a name quoted in the reason */
#define ATTACH_MAX_PLAIN 8       /* plain values of one parameter kept per field */
#define ATTACH_MAX_NAMES 32      /* candidate names kept per part */

struct attach_rules {
	char **ext; /* lower case, without the dot */
	size_t n;
};

struct attach_rules *attach_rules_new(const char *extensions)
{
	struct attach_rules *r = xcalloc(1, sizeof(*r));
	const char *p = extensions != NULL ? extensions : "";

	while (*p != '\0') {
		size_t n;

		while (*p == ',' || *p == ' ' || *p == '\t' || *p == '.')
			p++;
		n = strcspn(p, ", \t");
		if (n == 0)
			break;
		char *e = xmalloc(n + 1);
		for (size_t i = 0; i < n; i++)
			e[i] = (char)tolower((unsigned char)p[i]);
		e[n] = '\0';
		r->ext = xrealloc(r->ext, (r->n + 1) * sizeof(*r->ext));
		r->ext[r->n++] = e;
		p += n;
	}
	return r;
}

void attach_rules_free(struct attach_rules **rp)
{
	struct attach_rules *r = *rp;

	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->ext[i]);
	free(r->ext);
	free(r);
	*rp = NULL;
}

/* ---- names ---- */

/* The last extension of a file name as Windows sees it: trailing dots and
 * spaces are dropped ("a.exe. " opens as a.exe), a path is ignored. Returns
 * a pointer into name (after the dot) and its length, or NULL. */
static const char *name_ext(const char *name, size_t n, size_t *len_r)
{
	while (n > 0 && (name[n - 1] == '.' || name[n - 1] == ' ' || name[n - 1] == '\t' ||
			 name[n - 1] == '\r' || name[n - 1] == '\n'))
		n--;
	for (size_t i = n; i > 0; i--) {
		char c = name[i - 1];

		if (c == '/' || c == '\\')
			return NULL;
		if (c == '.') {
			*len_r = n - i;
			return *len_r > 0 ? name + i : NULL;
		}
	}
	return NULL;
}

/* The blocked extension name ends in, or NULL. */
static const char *rules_match(const struct attach_rules *rules, const char *name, size_t n)
{
	size_t el;
	const char *e = name_ext(name, n, &el);

	if (e == NULL)
		return NULL;
	for (size_t i = 0; i < rules->n; i++)
		if (strlen(rules->ext[i]) == el && strncasecmp(rules->ext[i], e, el) == 0)
			return rules->ext[i];
	return NULL;
}

/* A name as the reason shows it: printable ASCII only (the reason goes into
 * an SMTP reply), at most ATTACH_NAME_SHOWN octets with "..." when cut. */
static void name_shown(const char *name, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 4 < cap; i++) {
		unsigned char c = (unsigned char)name[i];

		if (o >= ATTACH_NAME_SHOWN) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		out[o++] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
	}
	out[o] = '\0';
}

/* ---- the walk ---- */

struct walk {
	const struct attach_rules *rules;
	struct attach_result *r;
	size_t parts;
};

/* Every name a part could be saved under: mail programs differ in which
 * one they take (the RFC 2231 value or the plain one, the first or the last
 * of repeated parameters and fields, filename= or name=), so each of them
 * is checked. */
struct names {
	struct buf v[ATTACH_MAX_NAMES];
	size_t n;
};

static void names_add(struct names *ns, const char *p, size_t n)
{
	if (n == 0 || ns->n >= ATTACH_MAX_NAMES)
		return;
	if (n > ATTACH_MAX_NAME) {
		/* the end is kept: it holds the extension */
		p += n - ATTACH_MAX_NAME;
		n = ATTACH_MAX_NAME;
	}
	buf_append(&ns->v[ns->n++], p, n);
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		buf_free(&ns->v[i]);
	ns->n = 0;
}

/* One part's header, as far as this check needs it. */
struct part_info {
	char type[64];     /* "text/plain", lower case; "" when absent */
	char disp[32];     /* "attachment", "inline", "" */
	enum mime_encoding enc;
	struct buf boundary;
	struct names fnames; /* filename (disposition) values */
	struct names tnames; /* name (content type) values */
};

static void part_info_free(struct part_info *pi)
{
	buf_free(&pi->boundary);
	names_free(&pi->fnames);
	names_free(&pi->tnames);
}

/* The first dangerous finding wins. */
#define set_reason(w, ...)                                                                         \
	do {                                                                                       \
		if (!(w)->r->dangerous) {                                                          \
			(w)->r->dangerous = true;                                                  \
			snprintf((w)->r->why, sizeof(w)->r->why, __VA_ARGS__);                     \
		}                                                                                  \
	} while (0)

/* The end of the header block at p: *body_r the first body octet. RFC 5322
 * 2.1: the header ends at the first empty line; bare LF line ends are
 * accepted. */
static void header_split(const char *p, const char *e, const char **hend_r,
			 const char **body_r)
{
	const char *q = p;

	while (q < e) {
		const char *nl = memchr(q, '\n', (size_t)(e - q));
		size_t ll;

		if (nl == NULL)
			break;
		ll = (size_t)(nl - q);
		if (ll == 0 || (ll == 1 && q[0] == '\r')) {
			*hend_r = q;
			*body_r = nl + 1;
			return;
		}
		q = nl + 1;
	}
	*hend_r = e;
	*body_r = e;
}

/* The next field of [*pos, e): name and the unfolded value (CR and LF
 * removed) in val. false at the end. */
static bool field_next(const char **pos, const char *e, const char **name_r, size_t *nlen_r,
		       struct buf *val)
{
	while (*pos < e) {
		const char *p = *pos, *nl, *colon;

		nl = memchr(p, '\n', (size_t)(e - p));
		const char *le = nl != NULL ? nl : e;
		*pos = nl != NULL ? nl + 1 : e;
		if (*p == ' ' || *p == '\t')
			continue; /* a continuation without a field: skipped */
		colon = memchr(p, ':', (size_t)(le - p));
		if (colon == NULL)
			continue;
		*name_r = p;
		*nlen_r = (size_t)(colon - p);
		while (*nlen_r > 0 && (p[*nlen_r - 1] == ' ' || p[*nlen_r - 1] == '\t'))
			(*nlen_r)--;
		buf_reset(val);
		buf_append(val, colon + 1, (size_t)(le - colon - 1));
		/* RFC 5322 2.2.3: continuation lines start with WSP */
		while (*pos < e && (**pos == ' ' || **pos == '\t')) {
			const char *c = *pos;
			nl = memchr(c, '\n', (size_t)(e - c));
			le = nl != NULL ? nl : e;
			buf_append(val, c, (size_t)(le - c));
			*pos = nl != NULL ? nl + 1 : e;
		}
		size_t o = 0;
		for (size_t i = 0; i < val->len; i++)
			if (val->data[i] != '\r' && val->data[i] != '\n')
				val->data[o++] = val->data[i];
		val->len = o;
		if (val->data != NULL)
			val->data[o] = '\0';
		return true;
	}
	return false;
}

static bool name_is(const char *name, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp(name, s, n) == 0;
}

/* RFC 5322 3.2.2 CFWS: white space and (nested) comments. */
static const char *skip_cfws(const char *p, const char *e)
{
	while (p < e) {
		if (*p == ' ' || *p == '\t') {
			p++;
		} else if (*p == '(') {
			int depth = 0;
			for (; p < e; p++) {
				if (*p == '\\' && p + 1 < e)
					p++;
				else if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0) {
					p++;
					break;
				}
			}
		} else {
			break;
		}
	}
	return p;
}

static bool tspecial(char c)
{
	/* RFC 2045 5.1 tspecials, and white space */
	return strchr("()<>@,;:\\\"/[]?= \t", c) != NULL;
}

/* RFC 2231 3 continuations of one parameter: name*0, name*1*, ... */
struct rfc2231 {
	struct buf plain[ATTACH_MAX_PLAIN]; /* name= (RFC 2047 words possible), repeated */
	size_t n_plain;
	/* every section (mail programs put no limit on their number: a cap
	 * here would hide an extension in a late one), values in svals */
	struct sect {
		unsigned idx;
		bool encoded;
		size_t seq, off, len;
	} *sect;
	size_t n_sect, cap_sect;
	struct buf svals;
	bool have0;
	bool any;
};

static void rfc2231_free(struct rfc2231 *a)
{
	for (size_t i = 0; i < a->n_plain; i++)
		buf_free(&a->plain[i]);
	free(a->sect);
	buf_free(&a->svals);
}

/* RFC 2231 4: %XX octets */
static void pct_decode(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		int h, l;

		if (p[i] == '%' && i + 2 < n && (h = hex_value((unsigned char)p[i + 1])) >= 0 &&
		    (l = hex_value((unsigned char)p[i + 2])) >= 0) {
			buf_appendc(out, (char)(h * 16 + l));
			i += 2;
		} else {
			buf_appendc(out, p[i]);
		}
	}
}

static int sect_cmp(const void *x, const void *y)
{
	const struct sect *a = x, *b = y;

	if (a->idx != b->idx)
		return a->idx < b->idx ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* The parameter's value, decoded to UTF-8 (as far as the charset is known)
 * into out. RFC 2231 sections win over a plain value when they start at 0. */
static void rfc2231_value(struct rfc2231 *a, struct buf *out)
{
	buf_reset(out);
	if (a->have0) {
		struct buf raw = BUF_INIT;
		char charset[64] = "";
		unsigned want = 0;

		/* n log n: sections may come in any order (RFC 2231 3) */
		qsort(a->sect, a->n_sect, sizeof(*a->sect), sect_cmp);
		for (size_t k = 0; k < a->n_sect; k++) {
			const struct sect *sc = &a->sect[k];

			if (sc->idx < want)
				continue; /* a repeated number: the first one */
			if (sc->idx > want)
				break; /* a gap ends the value */
			want++;
			const char *v = a->svals.data + sc->off;
			size_t n = sc->len;

			if (sc->idx == 0 && sc->encoded) {
				/* RFC 2231 4: charset'language'value */
				const char *q1 = memchr(v, '\'', n), *q2;
				if (q1 != NULL && (q2 = memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - v))) != NULL) {
					size_t cl = (size_t)(q1 - v);
					if (cl < sizeof charset) {
						memcpy(charset, v, cl);
						charset[cl] = '\0';
					}
					n -= (size_t)(q2 + 1 - v);
					v = q2 + 1;
				}
			}
			if (sc->encoded)
				pct_decode(v, n, &raw);
			else
				buf_append(&raw, v, n);
		}
		if (raw.len > 0 && (charset[0] == '\0' ||
				    !mime_to_utf8(charset, raw.data, raw.len, out)))
			buf_append(out, raw.data, raw.len);
		buf_free(&raw);
		return;
	}
	if (a->n_plain > 0 && a->plain[0].len > 0) {
		/* RFC 2047 5 forbids encoded words in a quoted string; mail
		 * programs write them in file names all the same */
		mime_decode_words(a->plain[0].data, a->plain[0].len, out);
	}
}

/* A parameter attribute=value of the field being parsed: kept when it is
 * the one wanted (want: "boundary", "filename", "name"). */
static void param_take(struct rfc2231 *a, const char *want, const char *attr, size_t alen,
		       const char *val, size_t vlen)
{
	size_t wl = strlen(want);

	if (alen < wl || strncasecmp(attr, want, wl) != 0)
		return;
	if (alen == wl) {
		if (a->n_plain < ATTACH_MAX_PLAIN)
			buf_append(&a->plain[a->n_plain++], val, vlen);
		return;
	}
	if (attr[wl] != '*')
		return;
	/* RFC 2231 3, 4: name*, name*N, name*N* */
	const char *q = attr + wl + 1, *e = attr + alen;
	unsigned idx = 0;
	bool encoded = false, digits = false;

	if (q == e) {
		encoded = true;
	} else {
		for (; q < e && *q >= '0' && *q <= '9'; q++) {
			digits = true;
			if (idx < 100000)
				idx = idx * 10 + (unsigned)(*q - '0');
		}
		if (!digits)
			return;
		if (q < e && *q == '*') {
			encoded = true;
			q++;
		}
		if (q != e)
			return;
	}
	if (idx >= ATTACH_MAX_SECTION)
		return;
	if (a->n_sect == a->cap_sect) {
		a->cap_sect = a->cap_sect ? 2 * a->cap_sect : 8;
		a->sect = xrealloc(a->sect, a->cap_sect * sizeof(*a->sect));
	}
	a->sect[a->n_sect] = (struct sect){idx, encoded, a->n_sect, a->svals.len, vlen};
	a->n_sect++;
	if (idx == 0)
		a->have0 = true;
	a->any = true;
	buf_append(&a->svals, val, vlen);
	buf_appendc(&a->svals, '\0'); /* svals.data never NULL once a section is in */
}

/* RFC 2045 5.1 "type/subtype; attribute=value; ..." (or a disposition
 * "attachment; filename=..."): the lower-case first word into first, the
 * parameter named want decoded into out; with all, every value it was given
 * (the RFC 2231 one, each plain one) added there too. */
static void parse_field(const char *v, size_t n, char *first, size_t firstcap, const char *want,
			struct buf *out, struct names *all)
{
	const char *p = v, *e = v + n, *s;
	struct rfc2231 a;
	struct buf val = BUF_INIT;
	size_t o = 0;

	memset(&a, 0, sizeof a);
	p = skip_cfws(p, e);
	s = p;
	while (p < e && *p != ';' && *p != ' ' && *p != '\t' && *p != '(')
		p++;
	for (const char *c = s; c < p && o + 1 < firstcap; c++)
		first[o++] = (char)tolower((unsigned char)*c);
	first[o] = '\0';
	while (p < e) {
		const char *an, *ae;

		/* a broken parameter: skipped up to the next ';' */
		if (*p != ';') {
			p++;
			continue;
		}
		p = skip_cfws(p + 1, e);
		an = p;
		while (p < e && !tspecial(*p))
			p++;
		ae = p;
		p = skip_cfws(p, e);
		if (an == ae || p >= e || *p != '=')
			continue;
		p = skip_cfws(p + 1, e);
		buf_reset(&val);
		if (p < e && *p == '"') {
			/* RFC 5322 3.2.4 quoted-string */
			for (p++; p < e && *p != '"'; p++) {
				if (*p == '\\' && p + 1 < e)
					p++;
				buf_appendc(&val, *p);
			}
			if (p < e)
				p++;
		} else {
			/* a token; unquoted values with white space (broken,
			 * frequent) taken up to ';' */
			const char *vs = p;
			while (p < e && *p != ';')
				p++;
			const char *ve = p;
			while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			buf_append(&val, vs, (size_t)(ve - vs));
		}
		param_take(&a, want, an, (size_t)(ae - an), val.data != NULL ? val.data : "",
			   val.len);
	}
	rfc2231_value(&a, out);
	if (out->len > ATTACH_MAX_NAME)
		buf_consume(out, out->len - ATTACH_MAX_NAME);
	if (all != NULL) {
		struct buf d = BUF_INIT;

		if (a.have0)
			names_add(all, out->data, out->len);
		for (size_t i = 0; i < a.n_plain; i++) {
			buf_reset(&d);
			if (a.plain[i].len > 0)
				mime_decode_words(a.plain[i].data, a.plain[i].len, &d);
			names_add(all, d.data, d.len);
		}
		buf_free(&d);
	}
	rfc2231_free(&a);
	buf_free(&val);
}

static enum mime_encoding parse_cte(const char *v, size_t n)
{
	const char *p = skip_cfws(v, v + n), *s = p;

	while (p < v + n && !tspecial(*p))
		p++;
	size_t l = (size_t)(p - s);
	if (name_is(s, l, "base64"))
		return MIME_ENC_BASE64;
	if (name_is(s, l, "quoted-printable"))
		return MIME_ENC_QP;
	if (name_is(s, l, "8bit"))
		return MIME_ENC_8BIT;
	if (name_is(s, l, "binary"))
		return MIME_ENC_BINARY;
	return MIME_ENC_7BIT;
}

static void part_header(const char *h, const char *he, bool digest, struct part_info *pi)
{
	const char *pos = h, *name;
	size_t nlen;
	struct buf val = BUF_INIT;
	bool have_type = false;

	memset(pi, 0, sizeof(*pi));
	/* RFC 2046 5.1.5: in a multipart/digest the default is message/rfc822 */
	strcpy(pi->type, digest ? "message/rfc822" : "text/plain");
	pi->enc = MIME_ENC_7BIT;
	while (field_next(&pos, he, &name, &nlen, &val)) {
		const char *v = val.data != NULL ? val.data : "";

		if (name_is(name, nlen, "content-type")) {
			char dummy[8];
			struct buf nm = BUF_INIT;

			if (!have_type) {
				have_type = true;
				parse_field(v, val.len, pi->type, sizeof pi->type, "boundary",
					    &pi->boundary, NULL);
			}
			/* a repeated field's names count too (a program may
			 * take the last one) */
			parse_field(v, val.len, dummy, sizeof dummy, "name", &nm, &pi->tnames);
			buf_free(&nm);
		} else if (name_is(name, nlen, "content-disposition")) {
			char disp[sizeof pi->disp];
			struct buf nm = BUF_INIT;

			parse_field(v, val.len, disp, sizeof disp, "filename", &nm, &pi->fnames);
			if (pi->disp[0] == '\0')
				memcpy(pi->disp, disp, sizeof disp);
			buf_free(&nm);
		} else if (name_is(name, nlen, "content-transfer-encoding")) {
			pi->enc = parse_cte(v, val.len);
		}
	}
	buf_free(&val);
}

/* ---- content ---- */

/* UTF-16LE of an ASCII name at p (as OLE2 directory entries hold names),
 * case-insensitive: [MS-CFB] 2.6.4 compares entry names in upper case, so
 * Office opens a storage "vba" as "VBA" */
static bool utf16_at(const unsigned char *p, size_t avail, const char *s)
{
	size_t n = strlen(s);

	if (avail < 2 * n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (toupper(p[2 * i]) != toupper((unsigned char)s[i]) || p[2 * i + 1] != 0)
			return false;
	return true;
}

/* [MS-CFB] 2.6: directory entries are 128 octets at sector boundaries (so
 * at offsets that are multiples of 128 in the file); a name of up to 31
 * UTF-16 characters and its length in octets (with the NUL) at 64. A VBA
 * project lives in a storage "VBA" with a stream "_VBA_PROJECT" ([MS-OVBA]
 * 2.2); Excel and PowerPoint keep it in "_VBA_PROJECT_CUR". */
static bool ole2_has_vba(const unsigned char *d, size_t n)
{
	static const char *const names[] = {"VBA", "_VBA_PROJECT", "_VBA_PROJECT_CUR"};

	for (size_t off = 512; off + 128 <= n; off += 128) {
		uint16_t nl = le16_get(d + off + 64);

		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
			if (nl == 2 * (strlen(names[i]) + 1) && utf16_at(d + off, 64, names[i]))
				return true;
	}
	return false;
}

static const char *base_name(const char *p, size_t n, size_t *len_r)
{
	size_t i = n;

	while (i > 0 && p[i - 1] != '/' && p[i - 1] != '\\')
		i--;
	*len_r = n - i;
	return p + i;
}

/* One entry name of a zip archive: a blocked extension, or an OOXML macro
 * project. */
static void zip_entry(struct walk *w, const char *shown, const char *nm, size_t nl)
{
	const char *ext;
	size_t bl;
	const char *bn = base_name(nm, nl, &bl);
	char ename[ATTACH_NAME_SHOWN + 8];

	if (w->r->dangerous)
		return;
	if (name_is(bn, bl, "vbaProject.bin")) {
		/* ECMA-376 / [MS-OFFMACRO]: the VBA project of a .docm, .xlsm... */
		set_reason(w, "attachment \"%s\" is a document with macros", shown);
		return;
	}
	ext = rules_match(w->rules, nm, nl);
	if (ext != NULL) {
		name_shown(bn, bl, ename, sizeof ename);
		set_reason(w, "attachment \"%s\" contains \"%s\": .%s files are not accepted", shown,
			   ename, ext);
	}
}

/* A zip archive (PKWARE APPNOTE 4.3): the entry names from the central
 * directory (as unzip and Explorer list them); when there is none (a
 * truncated or damaged archive), from the local file headers. */
/* 4.3.16: the end of central directory record, 22 octets and a comment
 * of at most 65535, in the last 65557 octets; (size_t)-1 when none. */
static size_t zip_eocd(const unsigned char *d, size_t n)
{
	if (n >= 22)
		for (size_t i = n - 22 + 1; i > 0 && n - (i - 1) <= 22 + 65535; i--)
			if (memcmp(d + i - 1, "PK\5\6", 4) == 0)
				return i - 1;
	return (size_t)-1;
}

static void zip_check(struct walk *w, const char *shown, const unsigned char *d, size_t n)
{
	size_t eocd = zip_eocd(d, n);

	if (eocd != (size_t)-1) {
		uint32_t count = le16_get(d + eocd + 10), size = le32_get(d + eocd + 12);
		uint32_t off = le32_get(d + eocd + 16);
		size_t p;

		/* data prepended to the archive (a self-extractor's stub) shifts
		 * every offset: the directory ends where the record starts */
		if ((size_t)off + 4 > n || memcmp(d + off, "PK\1\2", 4) != 0)
			off = size <= eocd ? (uint32_t)(eocd - size) : 0;
		p = off;
		for (uint32_t k = 0; k < count && k < ATTACH_MAX_ZIP_ENTRIES; k++) {
			if (p + 46 > n || memcmp(d + p, "PK\1\2", 4) != 0)
				break;
			size_t nl = le16_get(d + p + 28), xl = le16_get(d + p + 30), cl = le16_get(d + p + 32);
			if (p + 46 + nl > n)
				break;
			zip_entry(w, shown, (const char *)d + p + 46, nl);
			p += 46 + nl + xl + cl;
		}
	}
	/* 4.3.7 local file headers, wherever their signature is, also when a
	 * central directory was read: it can lie (list "a.txt" for a local
	 * entry "a.exe"), and streaming extractors go by the local headers */
	const unsigned char *q = d, *e = d + n;
	for (size_t k = 0; k < ATTACH_MAX_ZIP_ENTRIES && !w->r->dangerous; k++) {
		q = memmem(q, (size_t)(e - q), "PK\3\4", 4);
		if (q == NULL || q + 30 > e)
			break;
		size_t nl = le16_get(q + 26);
		if (q + 30 + nl <= e)
			zip_entry(w, shown, (const char *)q + 30, nl);
		q += 4;
	}
}

/* What the decoded content of a part is, when it is dangerous whatever its
 * name. script: a shebang counts (an attachment, not a message's text). */
static void sniff(struct walk *w, const char *shown, const unsigned char *d, size_t n,
		  bool script)
{
	const char *what = NULL;

	if (n >= 64 && d[0] == 'M' && d[1] == 'Z') {
		/* PE/COFF: e_lfanew at 0x3c points to "PE\0\0" */
		uint32_t pe = le32_get(d + 0x3c);
		if ((size_t)pe + 4 <= n && memcmp(d + pe, "PE\0\0", 4) == 0)
			what = "an executable (Windows PE)";
	} else if (n >= 4 && memcmp(d, "\177ELF", 4) == 0) {
		what = "an executable (ELF)";
	} else if (n >= 4 && (memcmp(d, "\xfe\xed\xfa\xce", 4) == 0 ||
			      memcmp(d, "\xfe\xed\xfa\xcf", 4) == 0 ||
			      memcmp(d, "\xce\xfa\xed\xfe", 4) == 0 ||
			      memcmp(d, "\xcf\xfa\xed\xfe", 4) == 0 ||
			      memcmp(d, "\xca\xfe\xba\xbe", 4) == 0)) {
		/* CAFEBABE: a Mach-O universal binary or a Java class */
		what = "an executable (Mach-O or Java)";
	} else if (script && n >= 3 && d[0] == '#' && d[1] == '!' &&
		   (d[2] == '/' || d[2] == ' ')) {
		what = "a script";
	} else if (n >= 512 && memcmp(d, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8) == 0) {
		if (ole2_has_vba(d, n))
			what = "a document with macros";
	} else if ((n >= 4 && (memcmp(d, "PK\3\4", 4) == 0 || memcmp(d, "PK\5\6", 4) == 0)) ||
		   zip_eocd(d, n) != (size_t)-1) {
		/* a zip, also behind prepended data (a polyglot "GIF89a...PK"):
		 * 7-Zip, WinRAR and unzip find an archive by its end record */
		zip_check(w, shown, d, n);
		return;
	}
	if (what != NULL)
		set_reason(w, "attachment \"%s\" is %s", shown, what);
}

static void walk_entity(struct walk *w, const char *p, const char *e, int depth, bool digest);

/* Files embedded in a text part: mail programs (Thunderbird's untyped text,
 * Outlook) show a uuencoded block ("begin 644 NAME", POSIX uuencode) and a
 * yEnc one ("=ybegin ... name=NAME") as attachments. Their names are
 * checked; one pass over the text. */
static void text_embedded(struct walk *w, const char *p, const char *e)
{
	while (p < e && !w->r->dangerous) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		const char *le = nl != NULL ? nl : e, *nm = NULL;

		if (le > p && le[-1] == '\r')
			le--;
		if (le - p > 6 && memcmp(p, "begin ", 6) == 0) {
			const char *q = p + 6;
			while (q < le && *q >= '0' && *q <= '7')
				q++;
			if (q - (p + 6) >= 3 && q - (p + 6) <= 4 && q < le && *q == ' ')
				nm = q + 1;
		} else if (le - p > 8 && memcmp(p, "=ybegin ", 8) == 0) {
			const char *q = memmem(p, (size_t)(le - p), " name=", 6);
			if (q != NULL)
				nm = q + 6;
		}
		if (nm != NULL && nm < le) {
			const char *ext = rules_match(w->rules, nm, (size_t)(le - nm));
			if (ext != NULL) {
				char sh[ATTACH_NAME_SHOWN + 8];
				name_shown(nm, (size_t)(le - nm), sh, sizeof sh);
				set_reason(w, "attachment \"%s\": .%s files are not accepted", sh, ext);
			}
		}
		p = nl != NULL ? nl + 1 : e;
	}
}

static const char *line_end(const char *p, const char *e, const char **next_r)
{
	const char *nl = memchr(p, '\n', (size_t)(e - p));

	*next_r = nl != NULL ? nl + 1 : e;
	if (nl == NULL)
		return e;
	return nl > p && nl[-1] == '\r' ? nl - 1 : nl;
}

/* RFC 2046 5.1.1: "--" boundary at the start of a line, then "--" for the
 * last one, then transport padding. 1 delimiter, 2 close, 0 not one. */
static int boundary_line(const char *p, const char *le, const struct buf *b)
{
	size_t n = (size_t)(le - p);
	int ret = 1;

	if (n < 2 + b->len || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b->data, b->len) != 0)
		return 0;
	p += 2 + b->len;
	if (le - p >= 2 && p[0] == '-' && p[1] == '-') {
		ret = 2;
		p += 2;
	}
	for (; p < le; p++)
		if (*p != ' ' && *p != '\t')
			return 0;
	return ret;
}

static void walk_multipart(struct walk *w, const char *p, const char *e,
			   const struct buf *boundary, int depth, bool digest)
{
	const char *part = NULL;

	while (p < e && !w->r->dangerous) {
		const char *next, *le = line_end(p, e, &next);
		int b = boundary_line(p, le, boundary);

		if (b != 0) {
			if (part != NULL) {
				/* the line end before the delimiter belongs to it */
				const char *pe = p;
				if (pe > part && pe[-1] == '\n')
					pe--;
				if (pe > part && pe[-1] == '\r')
					pe--;
				walk_entity(w, part, pe, depth + 1, digest);
			}
			if (b == 2)
				return;
			part = next;
		}
		p = next;
	}
	/* no closing delimiter (truncated mail): the last part runs to the end */
	if (part != NULL && !w->r->dangerous)
		walk_entity(w, part, e, depth + 1, digest);
}

static void walk_entity(struct walk *w, const char *p, const char *e, int depth, bool digest)
{
	const char *he, *body;
	struct part_info pi;

	if (w->r->dangerous)
		return;
	/* what is not looked into could hide anything: a structure beyond
	 * the limits is refused (mail programs show parts at any depth) */
	if (depth > ATTACH_MAX_DEPTH) {
		set_reason(w, "MIME parts nested deeper than %d levels are not accepted",
			   ATTACH_MAX_DEPTH);
		return;
	}
	if (w->parts >= ATTACH_MAX_PARTS) {
		set_reason(w, "messages of more than %d MIME parts are not accepted",
			   ATTACH_MAX_PARTS);
		return;
	}
	w->parts++;
	header_split(p, e, &he, &body);
	part_header(p, he, digest, &pi);

	if (strncmp(pi.type, "multipart/", 10) == 0 && pi.boundary.len > 0) {
		walk_multipart(w, body, e, &pi.boundary, depth,
			       strcmp(pi.type, "multipart/digest") == 0);
		part_info_free(&pi);
		return;
	}

	char shown[ATTACH_NAME_SHOWN + 8] = "";
	bool named = false;
	for (size_t i = 0; i < pi.fnames.n + pi.tnames.n && !w->r->dangerous; i++) {
		struct buf *nm = i < pi.fnames.n ? &pi.fnames.v[i] : &pi.tnames.v[i - pi.fnames.n];
		const char *ext;

		if (nm->len == 0)
			continue;
		if (!named) {
			name_shown(nm->data, nm->len, shown, sizeof shown);
			named = true;
		}
		ext = rules_match(w->rules, nm->data, nm->len);
		/* a NUL inside (RFC 2231 %00) ends the name for the C APIs that
		 * open it: "a.exe%00.pdf" is a.exe there */
		size_t cut = strnlen(nm->data, nm->len);
		if (ext == NULL && cut < nm->len)
			ext = rules_match(w->rules, nm->data, cut);
		if (ext != NULL) {
			char sh[ATTACH_NAME_SHOWN + 8];
			name_shown(nm->data, nm->len, sh, sizeof sh);
			set_reason(w, "attachment \"%s\": .%s files are not accepted", sh, ext);
		}
	}
	if (!named)
		strcpy(shown, "(no name)");

	if (!w->r->dangerous) {
		struct buf dec = BUF_INIT;
		const unsigned char *d = (const unsigned char *)body;
		size_t n = (size_t)(e - body);
		bool is_message = strcmp(pi.type, "message/rfc822") == 0 ||
				  strcmp(pi.type, "message/global") == 0;

		if (pi.enc == MIME_ENC_BASE64 || pi.enc == MIME_ENC_QP) {
			mime_decode(pi.enc, body, n, &dec);
			d = (const unsigned char *)(dec.data != NULL ? dec.data : "");
			n = dec.len;
		}
		if (is_message) {
			/* RFC 2046 5.2.1: an encapsulated message, walked as one */
			walk_entity(w, (const char *)d, (const char *)d + n, depth + 1, false);
		} else {
			bool attachment = named || strcmp(pi.disp, "attachment") == 0 ||
					  strncmp(pi.type, "text/", 5) != 0;
			sniff(w, shown, d, n, attachment);
			if (strncmp(pi.type, "text/", 5) == 0)
				text_embedded(w, (const char *)d, (const char *)d + n);
		}
		buf_free(&dec);
	}
	part_info_free(&pi);
}

int attach_check(const struct attach_rules *rules, const char *msg, size_t len,
		 struct attach_result *r)
{
	struct walk w = {rules, r, 0};

	memset(r, 0, sizeof(*r));
	if (msg == NULL || len == 0)
		return 0;
	walk_entity(&w, msg, msg + len, 0, false);
	return 0;
}
