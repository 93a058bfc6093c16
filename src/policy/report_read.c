/* Reading the aggregate reports others send us (RFC 7489 7.2.1): finding
 * the report in a message (src/mime's cache gives the parts), decoding and
 * decompressing it, parsing its XML with libxml2. */
#include "policy/report.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "core/xmalloc.h"
#include "mime/mime.h"

#define REPORT_MAX_DEPTH 4     /* multipart nesting looked into */
#define REPORT_MAX_PARTS 64    /* parts looked at per message */
#define REPORT_MAX_ENCODED (64u << 20)

/* The value of header field name in the header block [h, h + n), unfolded,
 * into out (empty when absent). */
static void header_value(const char *h, size_t n, const char *name, struct buf *out)
{
	size_t nl = strlen(name);
	buf_reset(out);
	const char *e = h + n;
	for (const char *p = h; p < e;) {
		const char *eol = memchr(p, '\n', (size_t)(e - p));
		const char *le = eol ? eol : e;
		if ((size_t)(le - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			for (;;) {
				buf_append(out, v, (size_t)(le - v));
				if (le >= e || le + 1 >= e || (le[1] != ' ' && le[1] != '\t'))
					break;
				v = le + 1;
				eol = memchr(v, '\n', (size_t)(e - v));
				le = eol ? eol : e;
			}
			for (size_t i = 0; i < out->len; i++)
				if (out->data[i] == '\r' || out->data[i] == '\n' || out->data[i] == '\t')
					out->data[i] = ' ';
			return;
		}
		p = le + 1;
	}
}

/* The media type (lowercase) of a Content-Type value, into type. */
static void media_type(const char *v, char *type, size_t sz)
{
	while (*v == ' ')
		v++;
	size_t o = 0;
	for (; *v && *v != ';' && *v != ' ' && *v != '(' && o + 1 < sz; v++)
		type[o++] = (char)tolower((unsigned char)*v);
	type[o] = '\0';
}

/* A parameter (name= or filename=) of a header value, unquoted, into out. */
static void param(const char *v, const char *name, char *out, size_t sz)
{
	size_t nl = strlen(name);
	out[0] = '\0';
	for (const char *p = strchr(v, ';'); p != NULL; p = strchr(p + 1, ';')) {
		const char *q = p + 1;
		while (*q == ' ')
			q++;
		if (strncasecmp(q, name, nl) != 0 || q[nl] != '=')
			continue;
		q += nl + 1;
		size_t o = 0;
		if (*q == '"') {
			for (q++; *q && *q != '"' && o + 1 < sz; q++)
				out[o++] = *q;
		} else {
			for (; *q && *q != ';' && *q != ' ' && o + 1 < sz; q++)
				out[o++] = *q;
		}
		out[o] = '\0';
		return;
	}
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

enum kind { K_NONE, K_GZIP, K_ZIP, K_XML };

static enum kind part_kind(const char *type, const char *fname)
{
	if (strcmp(type, "application/gzip") == 0 || strcmp(type, "application/x-gzip") == 0 ||
	    ends_with(fname, ".gz"))
		return K_GZIP;
	if (strcmp(type, "application/zip") == 0 || strcmp(type, "application/x-zip") == 0 ||
	    strcmp(type, "application/x-zip-compressed") == 0 || ends_with(fname, ".zip"))
		return K_ZIP;
	if (strcmp(type, "text/xml") == 0 || strcmp(type, "application/xml") == 0 ||
	    ends_with(fname, ".xml"))
		return K_XML;
	return K_NONE;
}

struct walk {
	const char *msg;
	size_t len;
	struct mime_cache mc;
	int parts;
	struct buf hv;
	/* the first candidate */
	bool found;
	enum kind kind;
	uint32_t path[REPORT_MAX_DEPTH + 1];
	size_t depth;
};

/* The part at path/depth with header [h, h + hn): a candidate, or a
 * multipart to look into. */
static void walk_part(struct walk *w, uint32_t *path, size_t depth, const char *h, size_t hn)
{
	if (w->found || ++w->parts > REPORT_MAX_PARTS)
		return;
	char type[128], fname[256], name[256];
	header_value(h, hn, "Content-Type", &w->hv);
	media_type(w->hv.len ? w->hv.data : "text/plain", type, sizeof type);
	param(w->hv.len ? w->hv.data : "", "name", name, sizeof name);
	if (strncmp(type, "multipart/", 10) == 0) {
		if (depth >= REPORT_MAX_DEPTH)
			return;
		for (uint32_t i = 1; !w->found && w->parts <= REPORT_MAX_PARTS; i++) {
			uint64_t off, n;
			enum mime_encoding enc;
			path[depth] = i;
			if (mime_cache_section(&w->mc, path, depth + 1, MIME_SECT_MIME, &off, &n,
					       &enc) < 0 ||
			    off + n > w->len)
				break;
			walk_part(w, path, depth + 1, w->msg + off, (size_t)n);
		}
		return;
	}
	header_value(h, hn, "Content-Disposition", &w->hv);
	param(w->hv.len ? w->hv.data : "", "filename", fname, sizeof fname);
	enum kind k = part_kind(type, fname[0] ? fname : name);
	if (k == K_NONE)
		return;
	w->found = true;
	w->kind = k;
	memcpy(w->path, path, depth * sizeof *path);
	w->depth = depth;
}

int report_extract(const char *msg, size_t len, struct buf *xml, const char **err_r)
{
	struct buf cache = BUF_INIT;
	mime_cache_build(msg, len, &cache);
	struct walk w = {.msg = msg, .len = len};
	int ret = 0;
	if (!mime_cache_open(&w.mc, cache.data, cache.len)) {
		buf_free(&cache);
		return 0;
	}
	uint64_t off, n;
	enum mime_encoding enc;
	uint32_t path[REPORT_MAX_DEPTH + 1] = {0};
	if (mime_cache_section(&w.mc, NULL, 0, MIME_SECT_HEADER, &off, &n, &enc) == 0 &&
	    off + n <= len) {
		char type[128];
		header_value(msg + off, (size_t)n, "Content-Type", &w.hv);
		media_type(w.hv.len ? w.hv.data : "text/plain", type, sizeof type);
		if (strncmp(type, "multipart/", 10) == 0) {
			walk_part(&w, path, 0, msg + off, (size_t)n);
		} else {
			/* a single-part message: its body is part 1 */
			walk_part(&w, path, 0, msg + off, (size_t)n);
			if (w.found) {
				w.path[0] = 1;
				w.depth = 1;
			}
		}
	}
	if (!w.found)
		goto out;
	ret = -1;
	*err_r = "attachment not found";
	if (mime_cache_section(&w.mc, w.path, w.depth, MIME_SECT_BODY, &off, &n, &enc) < 0 ||
	    off + n > len)
		goto out;
	if (n > REPORT_MAX_ENCODED) {
		*err_r = "attachment too large";
		goto out;
	}
	struct buf raw = BUF_INIT;
	if (!mime_decode(enc, msg + off, (size_t)n, &raw)) {
		*err_r = "unknown transfer encoding";
		buf_free(&raw);
		goto out;
	}
	const unsigned char *r = (const unsigned char *)raw.data;
	/* the content decides when it says so plainly */
	enum kind k = w.kind;
	if (raw.len >= 2 && r[0] == 0x1f && r[1] == 0x8b)
		k = K_GZIP;
	else if (raw.len >= 4 && memcmp(r, "PK\3\4", 4) == 0)
		k = K_ZIP;
	int rc = 0;
	if (k == K_GZIP)
		rc = report_gunzip(raw.data, raw.len, REPORT_MAX_XML, xml, err_r);
	else if (k == K_ZIP)
		rc = report_unzip(raw.data, raw.len, REPORT_MAX_XML, xml, err_r);
	else if (raw.len > REPORT_MAX_XML) {
		*err_r = "too large";
		rc = -1;
	} else
		buf_append(xml, raw.data, raw.len);
	buf_free(&raw);
	ret = rc < 0 ? -1 : 1;
out:
	buf_free(&w.hv);
	buf_free(&cache);
	return ret;
}

/* ---- XML ---- */

static xmlNode *child(xmlNode *n, const char *name)
{
	for (xmlNode *c = n ? n->children : NULL; c != NULL; c = c->next)
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
			return c;
	return NULL;
}

/* key=value with the element's text (whitespace trimmed; control
 * characters and spaces inside as '_'; "-" when absent). */
static void field(struct buf *out, const char *key, xmlNode *n)
{
	buf_printf(out, " %s=", key);
	xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
	const char *s = t ? (const char *)t : "";
	while (isspace((unsigned char)*s))
		s++;
	size_t len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len == 0)
		buf_appendc(out, '-');
	for (size_t i = 0; i < len && i < 256; i++) {
		unsigned char c = (unsigned char)s[i];
		buf_appendc(out, c <= 0x20 || c == 0x7f ? '_' : (char)c);
	}
	xmlFree(t);
}

int report_describe(const char *xml, size_t len, struct buf *out, const char **err_r)
{
	if (len > REPORT_MAX_XML) {
		*err_r = "too large";
		return -1;
	}
	/* No network, no entity substitution (no XML_PARSE_NOENT), no DTD
	 * loading; errors not printed. */
	xmlDoc *doc = xmlReadMemory(xml, (int)len, "report.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (doc == NULL) {
		*err_r = "malformed XML";
		return -1;
	}
	int ret = -1;
	xmlNode *root = xmlDocGetRootElement(doc);
	if (doc->intSubset != NULL) {
		*err_r = "document type declarations are not accepted";
		goto out;
	}
	if (root == NULL || strcmp((const char *)root->name, "feedback") != 0) {
		*err_r = "not a DMARC aggregate report (no <feedback>)";
		goto out;
	}
	xmlNode *md = child(root, "report_metadata"), *pp = child(root, "policy_published");
	if (md == NULL || pp == NULL) {
		*err_r = "not a DMARC aggregate report (no report_metadata or policy_published)";
		goto out;
	}
	xmlNode *dr = child(md, "date_range");
	buf_appends(out, "report");
	field(out, "org", child(md, "org_name"));
	field(out, "report_id", child(md, "report_id"));
	field(out, "domain", child(pp, "domain"));
	field(out, "begin", child(dr, "begin"));
	field(out, "end", child(dr, "end"));
	buf_appends(out, "\npolicy");
	field(out, "p", child(pp, "p"));
	field(out, "sp", child(pp, "sp"));
	field(out, "pct", child(pp, "pct"));
	field(out, "adkim", child(pp, "adkim"));
	field(out, "aspf", child(pp, "aspf"));
	buf_appends(out, "\n");
	for (xmlNode *r = root->children; r != NULL; r = r->next) {
		if (r->type != XML_ELEMENT_NODE || strcmp((const char *)r->name, "record") != 0)
			continue;
		xmlNode *row = child(r, "row"), *pe = child(row, "policy_evaluated");
		buf_appends(out, "record");
		field(out, "source_ip", child(row, "source_ip"));
		field(out, "count", child(row, "count"));
		field(out, "disposition", child(pe, "disposition"));
		field(out, "dkim", child(pe, "dkim"));
		field(out, "spf", child(pe, "spf"));
		field(out, "header_from", child(child(r, "identifiers"), "header_from"));
		buf_appends(out, "\n");
	}
	ret = 0;
out:
	xmlFreeDoc(doc);
	return ret;
}
