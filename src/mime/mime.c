/* MIME structure cache (see mime.h).
 *
 * Cache format, version 3 (all integers little-endian; version 2 had no
 * sort section and a 44-octet header, version 1 no thread section and a
 * 36-octet header; a cache of another version is not opened, so it is
 * rebuilt from the message and replaced):
 *
 *   offset  size  field
 *   0       4     magic "PMC" + version byte (0x03)
 *   4       4     total length of the cache in bytes
 *   8       4     n_parts (>= 1)
 *   12      8     ENVELOPE string: offset, length (u32 each)
 *   20      8     BODY string: offset, length
 *   28      8     BODYSTRUCTURE string: offset, length
 *   36      8     thread section (threadinfo.h): offset, length
 *   44      8     sort section (sortinfo.h): offset, length
 *   52      48*n  part table, in depth-first order (part 0 = the message):
 *                   u64 header offset, u64 header length (blank line included),
 *                   u64 body offset, u64 body length   (offsets into the message)
 *                   u32 body line count
 *                   u32 first child index, u32 next sibling index (0xffffffff: none;
 *                       always greater than the part's own index, so a walk
 *                       cannot loop)
 *                   u8 kind (0 leaf, 1 multipart, 2 message/rfc822 or global),
 *                   u8 transfer encoding (enum mime_encoding), u16 zero
 *   then the three strings (ENVELOPE, BODY, BODYSTRUCTURE, each parenthesised),
 *   then the thread section, then the sort section.
 *
 * A message/rfc822 part has exactly one child: the encapsulated message (its
 * header and body). A multipart has at least one child (an empty text/plain
 * one when no part was found, as Dovecot writes it).
 *
 * The builder is one pass over the message for the structure (a recursive
 * descent with the stack of the enclosing boundaries, checked at the start of
 * each line, RFC 2046 5.1.1), then one pass over each part's header to write
 * the strings. The strings follow Dovecot 2.3 (tests/data/mime/NAME.expected are
 * its answers); where we differ, the .diff files next to them say why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/endian.h"
#include "core/log.h"
#include "mime/mime.h"
#include "mime/mime_int.h"
#include "mime/sortinfo.h"
#include "mime/threadinfo.h"

#define MC_VERSION 3
#define MC_HDR 52
#define MC_REC 48
#define MC_NONE 0xffffffffu
/* RFC 2231 parameters kept per header field (the rest are ignored) */
#define MIME_MAX_PARAMS 256

enum { K_LEAF, K_MULTIPART, K_MESSAGE };

struct mpart {
	uint64_t hdr_off, hdr_len, body_off, body_len;
	uint32_t lines, first_child, last_child, next;
	uint8_t kind, enc, opaque;
	uint8_t in_mp; /* a part of a multipart (always MIME) */
};

/* a string in a cinfo's storage */
struct sref {
	size_t off, len;
	bool set;
};

struct param {
	size_t koff, klen, voff, vlen;
	unsigned idx, order;
	bool ext, rfc2231;
	const char *base; /* for sorting: the storage at sort time */
};

/* What the Content-* fields of one part header say (RFC 2045, 2183, 3282,
 * 2557, 1864), their IMAP forms ready to write. */
struct cinfo {
	struct buf s, f, kv, jv, bv, cs; /* storage; list, key, joined value, boundary, charset */
	bool in_ct;
	struct param *pr;
	size_t npr, cappr;
	struct sref type, subtype, cte, id, desc, md5, loc, disp;
	struct sref ct_params, disp_params, lang, boundary; /* boundary: in bv */
	size_t n_ct_params;
	bool charset_found, only_usascii, type_ok;
};

struct bnd {
	struct buf b;
};

struct stop {
	size_t at;
	int which;  /* boundary stack level, -1: the end of the message */
	bool strip; /* the line break before the boundary belongs to it (RFC 2046
		     * 5.1.1), not to a header line or a close delimiter line */
};

struct mime_build {
	const char *m;
	size_t len;
	struct mpart *parts;
	size_t n, cap;
	size_t n_real; /* parts counted against MIME_MAX_PARTS */
	struct bnd stack[MIME_MAX_DEPTH + 2];
	size_t nb;
	struct cinfo ci[MIME_MAX_DEPTH + 4];
	size_t ci_used, nb_used; /* how many of ci[] and stack[] were touched */
	struct buf ab, tmp, comment;
};

/* ---- Content-* header parsing ---- */

static const char *sr(const struct cinfo *ci, struct sref r)
{
	return ci->s.data ? ci->s.data + r.off : "";
}

static struct sref sr_begin(const struct cinfo *ci)
{
	struct sref r = {ci->s.len, 0, true};

	return r;
}

static void sr_end(const struct cinfo *ci, struct sref *r)
{
	r->len = ci->s.len - r->off;
}

static int param_cmp(const void *a, const void *b)
{
	const struct param *x = a, *y = b;

	if (x->rfc2231 != y->rfc2231)
		return x->rfc2231 ? 1 : -1;
	if (!x->rfc2231)
		return x->order < y->order ? -1 : 1;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = strncasecmp(x->base + x->koff, y->base + y->koff, n);

	if (c != 0)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->order < y->order ? -1 : 1;
}

/* Appends one "key" "value" pair (IMAP strings) to the list being formatted
 * in ci->f; remembers the boundary and the charset. */
static void param_emit(struct cinfo *ci, const char *k, size_t kl, const char *suffix,
		       const char *v, size_t vl, size_t *count)
{
	if (*count > 0)
		buf_appendc(&ci->f, ' ');
	if (suffix == NULL) {
		if (mime_eq(k, kl, "boundary") && !ci->boundary.set) {
			ci->boundary.set = true;
			buf_reset(&ci->bv);
			buf_append(&ci->bv, v, vl);
		}
		if (mime_eq(k, kl, "charset") && ci->in_ct) {
			if (!ci->charset_found) {
				buf_reset(&ci->cs);
				buf_append(&ci->cs, v, vl);
			}
			ci->charset_found = true;
			ci->only_usascii = *count == 0 && mime_eq(v, vl, "us-ascii");
		}
	}
	if (*count > 0 && !(suffix == NULL && mime_eq(k, kl, "charset")))
		ci->only_usascii = false;
	if (suffix != NULL) {
		buf_reset(&ci->kv);
		buf_append(&ci->kv, k, kl);
		buf_appends(&ci->kv, suffix);
		mime_imap_nstring(&ci->f, ci->kv.data, ci->kv.len);
	} else {
		mime_imap_nstring(&ci->f, kl ? k : "", kl);
	}
	buf_appendc(&ci->f, ' ');
	mime_imap_nstring(&ci->f, vl ? v : "", vl);
	(*count)++;
}

/* RFC 2045 5.1 parameters with RFC 2231 continuations: "name*0", "name*1"
 * joined; an extended value ("name*" or "name*0*") is kept as Dovecot sends
 * it, key "name*" and value "charset'lang'%XX..." (a client decodes it). */
static void parse_params(struct cinfo *ci, struct mime_rp *rp, struct sref *out, size_t *count)
{
	size_t i, j;
	unsigned idx = 0;
	bool ext = false;

	ci->npr = 0;
	while (rp->p < rp->e) {
		struct param pa = {0};
		int ret;

		/* a broken parameter: one byte skipped, then the next ';' looked
		 * for (as Dovecot, which so also loses a ';' right after it) */
		if (*rp->p != ';') {
			rp->p++;
			continue;
		}
		rp->p++;
		if (mime_rp_skip(rp) <= 0)
			break;
		pa.koff = ci->s.len;
		if (mime_rp_token(rp, &ci->s) <= 0 || rp->p >= rp->e || *rp->p != '=') {
			if (rp->p < rp->e)
				rp->p++;
			continue;
		}
		pa.klen = ci->s.len - pa.koff;
		rp->p++;
		pa.voff = ci->s.len;
		ret = mime_rp_skip(rp);
		if (ret < 0)
			break;
		if (ret == 0) {
			/* "name=" at the end: an empty value */
		} else if (*rp->p == '"') {
			ret = mime_rp_quoted(rp, &ci->s);
		} else if (*rp->p == '=') {
			/* broken "name==?utf-8?b?...?=": taken up to WSP or ';' */
			const char *st = rp->p;

			while (rp->p < rp->e && *rp->p != ';' && *rp->p != ' ' && *rp->p != '\t' &&
			       *rp->p != '\r' && *rp->p != '\n')
				rp->p++;
			buf_append(&ci->s, st, (size_t)(rp->p - st));
			ret = mime_rp_skip(rp);
		} else {
			ret = mime_rp_token(rp, &ci->s);
		}
		if (ret < 0) {
			if (rp->p < rp->e)
				rp->p++;
			continue;
		}
		pa.vlen = ci->s.len - pa.voff;
		if (ci->npr >= MIME_MAX_PARAMS)
			continue;
		/* RFC 2231 3 and 4: name*N, name*, name*N* */
		const char *k = ci->s.data + pa.koff, *star = memchr(k, '*', pa.klen);
		if (star != NULL) {
			const char *q = star, *ke = k + pa.klen;

			if (q + 1 < ke) {
				q++;
				idx = 0;
				for (; q < ke && *q >= '0' && *q <= '9'; q++)
					if (idx < 100000)
						idx = idx * 10 + (unsigned)(*q - '0');
			}
			if (q < ke && *q == '*') {
				ext = true;
				q++;
			} else {
				ext = false;
			}
			if (q == ke) {
				pa.rfc2231 = true;
				pa.idx = idx;
				pa.ext = ext;
				pa.klen = (size_t)(star - k);
			}
		}
		pa.order = (unsigned)ci->npr;
		if (ci->npr == ci->cappr) {
			ci->cappr = ci->cappr ? ci->cappr * 2 : 8;
			ci->pr = xrealloc(ci->pr, ci->cappr * sizeof(*ci->pr));
		}
		ci->pr[ci->npr++] = pa;
	}

	/* plain parameters first, in order; then the RFC 2231 ones sorted by
	 * name and index, joined when the indexes run 0, 1, 2... (as Dovecot) */
	for (i = 0; i < ci->npr; i++)
		ci->pr[i].base = ci->s.data;
	if (ci->npr > 1)
		qsort(ci->pr, ci->npr, sizeof(*ci->pr), param_cmp);
	buf_reset(&ci->f);
	*count = 0;
	for (i = 0; i < ci->npr; i = j) {
		struct param *pa = &ci->pr[i];
		const char *d = ci->s.data;
		bool seq = true;

		if (!pa->rfc2231) {
			j = i + 1;
			param_emit(ci, d + pa->koff, pa->klen, NULL, d + pa->voff, pa->vlen, count);
			continue;
		}
		for (j = i; j < ci->npr && ci->pr[j].rfc2231 && ci->pr[j].klen == pa->klen &&
			    strncasecmp(d + ci->pr[j].koff, d + pa->koff, pa->klen) == 0;
		     j++)
			if (ci->pr[j].idx != j - i)
				seq = false;
		if (seq) {
			size_t k;

			buf_reset(&ci->jv);
			for (k = i; k < j; k++)
				buf_append(&ci->jv, d + ci->pr[k].voff, ci->pr[k].vlen);
			param_emit(ci, d + pa->koff, pa->klen, pa->ext ? "*" : NULL,
				   ci->jv.data ? ci->jv.data : "", ci->jv.len, count);
		} else {
			size_t k;

			for (k = i; k < j; k++) {
				char suffix[24];

				snprintf(suffix, sizeof(suffix), "*%u%s", ci->pr[k].idx,
					 ci->pr[k].ext ? "*" : "");
				param_emit(ci, d + ci->pr[k].koff, ci->pr[k].klen, suffix,
					   d + ci->pr[k].voff, ci->pr[k].vlen, count);
			}
		}
	}
	if (*count > 0) {
		*out = sr_begin(ci);
		buf_append(&ci->s, ci->f.data, ci->f.len);
		sr_end(ci, out);
	}

}

static void ci_reset(struct cinfo *ci)
{
	struct cinfo z = {0};

	buf_reset(&ci->s);
	z.s = ci->s;
	z.f = ci->f;
	z.kv = ci->kv;
	z.jv = ci->jv;
	z.bv = ci->bv;
	z.cs = ci->cs;
	z.pr = ci->pr;
	z.cappr = ci->cappr;
	*ci = z;
}

static void ci_free(struct cinfo *ci)
{
	buf_free(&ci->s);
	buf_free(&ci->f);
	buf_free(&ci->kv);
	buf_free(&ci->jv);
	buf_free(&ci->bv);
	buf_free(&ci->cs);
	free(ci->pr);
}

static struct sref ci_raw(struct cinfo *ci, const struct mime_field *f)
{
	struct sref r = sr_begin(ci);

	buf_append(&ci->s, f->value, f->value_len);
	sr_end(ci, &r);
	return r;
}

/* RFC 2045 5.1 Content-Type := type "/" subtype *(";" parameter). A broken
 * value keeps what could be read (type, maybe subtype) and no parameters. */
static void parse_content_type(struct cinfo *ci, const struct mime_field *f)
{
	struct mime_rp rp = {f->value, f->value + f->value_len, NULL};

	/* A broken value is sent as type "" and subtype "", except a lone type
	 * ("text"), kept with subtype "" (Dovecot). */
	ci->type = sr_begin(ci);
	if (mime_rp_skip(&rp) <= 0 || mime_rp_token(&rp, &ci->s) < 0) {
		ci->s.len = ci->type.off;
		return;
	}
	sr_end(ci, &ci->type);
	if (rp.p >= rp.e)
		return;
	if (*rp.p != '/') {
		ci->s.len = ci->type.off;
		ci->type.len = 0;
		return;
	}
	rp.p++;
	ci->subtype = sr_begin(ci);
	if (mime_rp_skip(&rp) <= 0 || mime_rp_token(&rp, &ci->s) < 0 ||
	    (rp.p < rp.e && *rp.p != ';')) {
		ci->s.len = ci->type.off;
		ci->type.len = 0;
		ci->subtype.set = false;
		return;
	}
	sr_end(ci, &ci->subtype);
	ci->type_ok = true;
	ci->in_ct = true;
	parse_params(ci, &rp, &ci->ct_params, &ci->n_ct_params);
	ci->in_ct = false;
}

/* The Content-* fields of the header [h, h + n) (the first of each wins, as
 * Dovecot; Content-Disposition also while no parameters were seen). */
static void parse_cinfo(struct cinfo *ci, const char *h, size_t n, bool in_mp)
{
	const char *pos = h;
	struct mime_field f;
	bool is_mime = in_mp;

	ci_reset(ci);
	while (mime_field_next(&pos, h + n, &f)) {
		if (f.name_len < 8 || strncasecmp(f.name, "Content-", 8) != 0) {
			if (mime_eq(f.name, f.name_len, "MIME-Version"))
				is_mime = true;
			continue;
		}
		const char *nm = f.name + 8;
		size_t nl = f.name_len - 8;

		if (mime_eq(nm, nl, "Type")) {
			if (!ci->type.set)
				parse_content_type(ci, &f);
		} else if (mime_eq(nm, nl, "Transfer-Encoding")) {
			/* RFC 2045 6.1: one token */
			struct mime_rp rp = {f.value, f.value + f.value_len, NULL};
			struct sref r;

			if (ci->cte.set || mime_rp_skip(&rp) <= 0)
				continue;
			r = sr_begin(ci);
			if (mime_rp_token(&rp, &ci->s) == 0) {
				sr_end(ci, &r);
				ci->cte = r;
			}
		} else if (mime_eq(nm, nl, "ID")) {
			if (!ci->id.set)
				ci->id = ci_raw(ci, &f);
		} else if (mime_eq(nm, nl, "Description")) {
			if (!ci->desc.set)
				ci->desc = ci_raw(ci, &f);
		} else if (mime_eq(nm, nl, "MD5")) {
			if (!ci->md5.set)
				ci->md5 = ci_raw(ci, &f);
		} else if (mime_eq(nm, nl, "Location")) {
			if (!ci->loc.set)
				ci->loc = ci_raw(ci, &f);
		} else if (mime_eq(nm, nl, "Language")) {
			/* RFC 3282 2: 1#Language-tag */
			struct mime_rp rp = {f.value, f.value + f.value_len, NULL};
			size_t count = 0;

			if (ci->lang.set)
				continue;
			buf_reset(&ci->f);
			(void)mime_rp_skip(&rp);
			for (;;) {
				buf_reset(&ci->kv);
				if (mime_rp_atom(&rp, &ci->kv) < 0)
					break;
				if (count++ > 0)
					buf_appendc(&ci->f, ' ');
				mime_imap_nstring(&ci->f, ci->kv.data, ci->kv.len);
				if (rp.p >= rp.e || *rp.p != ',')
					break;
				rp.p++;
				(void)mime_rp_skip(&rp);
			}
			if (count > 0) {
				ci->lang = sr_begin(ci);
				buf_append(&ci->s, ci->f.data, ci->f.len);
				sr_end(ci, &ci->lang);
			}
		} else if (mime_eq(nm, nl, "Disposition")) {
			/* RFC 2183 2 */
			struct mime_rp rp = {f.value, f.value + f.value_len, NULL};
			struct sref r;
			size_t count;

			if (ci->disp_params.set || mime_rp_skip(&rp) <= 0)
				continue;
			r = sr_begin(ci);
			if (mime_rp_token(&rp, &ci->s) < 0)
				continue;
			sr_end(ci, &r);
			ci->disp = r;
			ci->disp_params.set = false;
			parse_params(ci, &rp, &ci->disp_params, &count);
		}
	}
	/* A message (not a part of a multipart) with neither MIME-Version nor
	 * Content-Type is not MIME: its other Content-* fields are ignored
	 * (RFC 2045 4; Dovecot, which takes Content-Type alone as MIME too). */
	if (!is_mime && !ci->type.set)
		ci_reset(ci);
}

static enum mime_encoding cte_enc(const struct cinfo *ci)
{
	const char *p = sr(ci, ci->cte);
	size_t n = ci->cte.len;

	if (!ci->cte.set || mime_eq(p, n, "7bit"))
		return MIME_ENC_7BIT;
	if (mime_eq(p, n, "8bit"))
		return MIME_ENC_8BIT;
	if (mime_eq(p, n, "binary"))
		return MIME_ENC_BINARY;
	if (mime_eq(p, n, "quoted-printable"))
		return MIME_ENC_QP;
	if (mime_eq(p, n, "base64"))
		return MIME_ENC_BASE64;
	return MIME_ENC_OTHER;
}

/* ---- structure ---- */

static uint32_t part_new(struct mime_build *b, uint32_t parent, bool forced)
{
	struct mpart *p;
	uint32_t i;

	if (!forced && b->n_real >= MIME_MAX_PARTS)
		return MC_NONE;
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 8;
		b->parts = xrealloc(b->parts, b->cap * sizeof(*b->parts));
	}
	i = (uint32_t)b->n++;
	if (!forced)
		b->n_real++;
	p = &b->parts[i];
	memset(p, 0, sizeof(*p));
	p->first_child = p->last_child = p->next = MC_NONE;
	if (parent != MC_NONE) {
		struct mpart *pp = &b->parts[parent];

		p->in_mp = pp->kind == K_MULTIPART;
		if (pp->last_child == MC_NONE)
			pp->first_child = i;
		else
			b->parts[pp->last_child].next = i;
		pp->last_child = i;
	}
	return i;
}

/* RFC 2046 5.1.1: a boundary line is "--" boundary at the start of a line
 * (anything may follow: transport padding, or "--" for the close). Any
 * enclosing boundary also ends a part; when several match, the longest wins,
 * then the innermost (as Dovecot). */
static int boundary_at(const struct mime_build *b, size_t pos)
{
	const char *m = b->m + pos;
	size_t avail = b->len - pos, i, best_len = 0;
	int best = -1;

	if (avail < 2 || m[0] != '-' || m[1] != '-')
		return -1;
	for (i = b->nb; i-- > 0;) {
		const struct buf *bb = &b->stack[i].b;

		if (avail - 2 >= bb->len && memcmp(m + 2, bb->data, bb->len) == 0 &&
		    (best < 0 || bb->len > best_len)) {
			best = (int)i;
			best_len = bb->len;
		}
	}
	return best;
}

static size_t next_line(const struct mime_build *b, size_t pos)
{
	const char *nl = memchr(b->m + pos, '\n', b->len - pos);

	return nl ? (size_t)(nl - b->m) + 1 : b->len;
}

static struct stop scan_body(const struct mime_build *b, size_t pos)
{
	struct stop st = {b->len, -1, false};
	size_t start = pos;

	if (b->nb == 0)
		return st;
	while (pos < b->len) {
		int w = boundary_at(b, pos);

		if (w >= 0) {
			st.at = pos;
			st.which = w;
			st.strip = pos > start;
			return st;
		}
		pos = next_line(b, pos);
	}
	return st;
}

static uint32_t count_lines(const char *p, size_t n)
{
	uint32_t lines = 0;
	const char *e = p + n;

	while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		lines++;
		p++;
	}
	return lines;
}

/* the body ends before the line break that precedes a boundary line */
static size_t body_end(const struct mime_build *b, size_t body_off, struct stop st)
{
	size_t end = st.at;

	if (st.which >= 0 && st.strip && end > body_off && b->m[end - 1] == '\n') {
		end--;
		if (end > body_off && b->m[end - 1] == '\r')
			end--;
	}
	return end;
}

static struct stop parse_part(struct mime_build *b, uint32_t idx, size_t start, unsigned depth,
			      bool in_digest);

static void part_finish(struct mime_build *b, uint32_t idx, struct stop st)
{
	struct mpart *p = &b->parts[idx];
	size_t end = body_end(b, (size_t)p->body_off, st);

	p->body_len = end - p->body_off;
	if (p->kind != K_MULTIPART)
		p->lines = count_lines(b->m + p->body_off, (size_t)p->body_len);
}

/* RFC 2046 5.1: the body of a multipart, from pos; returns where the
 * enclosing part ends. */
static struct stop parse_multipart(struct mime_build *b, uint32_t idx, size_t pos,
				   const char *bnd, size_t bnd_len, unsigned depth, bool digest)
{
	struct stop st;
	int level;
	uint32_t last = MC_NONE;

	if (bnd == NULL || b->nb >= MIME_MAX_DEPTH + 2)
		return scan_body(b, pos);
	level = (int)b->nb;
	if (b->nb >= b->nb_used)
		b->stack[level].b = (struct buf)BUF_INIT; /* first touched */
	buf_reset(&b->stack[level].b);
	buf_append(&b->stack[level].b, bnd, bnd_len);
	b->nb++;
	if (b->nb > b->nb_used)
		b->nb_used = b->nb;
	st = scan_body(b, pos); /* the preamble */
	while (st.which == level) {
		size_t q = st.at + 2 + bnd_len, line_next = next_line(b, st.at);

		if (q + 2 <= b->len && b->m[q] == '-' && b->m[q + 1] == '-') {
			/* the close delimiter; the epilogue belongs to no part */
			b->nb--;
			return scan_body(b, line_next);
		}
		if (line_next == b->len && b->m[b->len - 1] != '\n') {
			/* a delimiter cut by the end of the message ends the last
			 * part but starts none (Dovecot) */
			b->nb--;
			return scan_body(b, b->len);
		}
		uint32_t child = part_new(b, idx, false);
		if (child == MC_NONE) {
			/* over MIME_MAX_PARTS: the rest goes to the last part */
			st = scan_body(b, line_next);
			while (st.which == level) {
				q = st.at + 2 + bnd_len;
				if (q + 2 <= b->len && b->m[q] == '-' && b->m[q + 1] == '-')
					break;
				st = scan_body(b, next_line(b, st.at));
			}
			if (last != MC_NONE)
				part_finish(b, last, st);
			if (st.which == level) {
				b->nb--;
				return scan_body(b, next_line(b, st.at));
			}
			break;
		}
		last = child;
		st = parse_part(b, child, line_next, depth, digest);
	}
	b->nb = (size_t)level;
	return st;
}

/* One part from its header at start (the message itself, a part of a
 * multipart, or the message inside a message/rfc822 part). */
static struct cinfo *ci_at(struct mime_build *b, unsigned depth)
{
	size_t i = depth < MIME_MAX_DEPTH + 2 ? depth : MIME_MAX_DEPTH + 2;

	/* zeroed when first touched (build_parse does not clear the array) */
	while (b->ci_used <= i)
		memset(&b->ci[b->ci_used++], 0, sizeof b->ci[0]);
	return &b->ci[i];
}

static struct stop parse_part(struct mime_build *b, uint32_t idx, size_t start, unsigned depth,
			      bool in_digest)
{
	struct cinfo *ci = ci_at(b, depth);
	struct stop st = {b->len, -1, false};
	size_t pos = start, hdr_end = b->len, body_off = b->len;
	bool cut = false, blank = false;
	size_t blank_at = 0;
	uint8_t kind = K_LEAF;

	/* RFC 5322 2.1: the header ends at the first empty line */
	while (pos < b->len) {
		const char *m = b->m + pos;

		if (b->nb > 0 && (st.which = boundary_at(b, pos)) >= 0) {
			/* a header cut by a boundary: its last line break goes to
			 * the boundary, and the enclosing part keeps it (Dovecot) */
			st.at = pos;
			cut = true;
			hdr_end = body_off = pos;
			if (hdr_end > start && b->m[hdr_end - 1] == '\n')
				hdr_end--;
			if (hdr_end > start && b->m[hdr_end - 1] == '\r')
				hdr_end--;
			break;
		}
		if (*m == '\n' || (*m == '\r' && pos + 1 < b->len && m[1] == '\n')) {
			body_off = hdr_end = pos + (*m == '\n' ? 1 : 2);
			blank = true;
			blank_at = pos;
			break;
		}
		pos = next_line(b, pos);
	}
	if (!cut && !blank)
		hdr_end = body_off = b->len;
	b->parts[idx].hdr_off = start;
	b->parts[idx].hdr_len = hdr_end - start;
	b->parts[idx].body_off = body_off;

	parse_cinfo(ci, b->m + start, hdr_end - start, b->parts[idx].in_mp);
	b->parts[idx].enc = (uint8_t)cte_enc(ci);
	if (!ci->type.set) {
		/* RFC 2046 5.1.5: in a digest the default is message/rfc822 */
		if (in_digest)
			kind = K_MESSAGE;
	} else if (ci->type_ok && mime_eq(sr(ci, ci->type), ci->type.len, "multipart")) {
		kind = K_MULTIPART;
	} else if (ci->type_ok && mime_eq(sr(ci, ci->type), ci->type.len, "message") &&
		   (mime_eq(sr(ci, ci->subtype), ci->subtype.len, "rfc822") ||
		    mime_eq(sr(ci, ci->subtype), ci->subtype.len, "global"))) {
		/* RFC 6532 3.7: message/global is read as message/rfc822 */
		kind = K_MESSAGE;
	}
	if (kind != K_LEAF && (depth >= MIME_MAX_DEPTH || b->len > MIME_MAX_MESSAGE)) {
		b->parts[idx].opaque = 1;
		kind = K_LEAF;
	}
	b->parts[idx].kind = kind;
	if (blank && b->nb > 0) {
		/* An enclosing boundary right after the blank line takes its line
		 * break: the header ends before it (Dovecot). Not a multipart's
		 * own first boundary. */
		int w = boundary_at(b, body_off);
		const struct buf *own = &ci->bv;

		if (w >= 0 &&
		    !(kind == K_MULTIPART && ci->boundary.set &&
		      own->len >= b->stack[w].b.len && b->len - body_off >= 2 + own->len &&
		      memcmp(b->m + body_off + 2, own->data, own->len) == 0)) {
			hdr_end = blank_at;
			b->parts[idx].hdr_len = hdr_end - start;
		}
	}

	if (kind == K_MULTIPART) {
		bool digest = mime_eq(sr(ci, ci->subtype), ci->subtype.len, "digest");

		if (!cut) {
			/* the boundary is copied onto the stack by parse_multipart */
			st = parse_multipart(b, idx, body_off, ci->boundary.set ? ci->bv.data : NULL,
					     ci->bv.len, depth + 1, digest);
		}
		part_finish(b, idx, st);
		if (b->parts[idx].first_child == MC_NONE) {
			/* no part: an empty text/plain one at the end, as Dovecot */
			uint32_t c = part_new(b, idx, true);
			uint64_t at = b->parts[idx].body_off + b->parts[idx].body_len;

			b->parts[c].hdr_off = b->parts[c].body_off = at;
		}
		return st;
	}
	if (kind == K_MESSAGE) {
		uint32_t c = part_new(b, idx, true);

		if (!cut) {
			st = parse_part(b, c, body_off, depth + 1, false);
		} else {
			b->parts[c].hdr_off = b->parts[c].body_off = body_off;
		}
		part_finish(b, idx, st);
		return st;
	}
	if (!cut)
		st = scan_body(b, body_off);
	part_finish(b, idx, st);
	return st;
}

/* ---- ENVELOPE (RFC 9051 7.5.2), addresses as Dovecot parses them ---- */

struct addr {
	struct sref name, route, mailbox, domain; /* in b->ab */
	const char *c_route, *c_mailbox, *c_domain; /* constants */
};

struct aparse {
	struct buf *ab, *comment; /* scratch: the strings of a, the last comment */
	struct mime_rp rp;
	struct buf *out;
	struct addr a;
	size_t count;
	/* text: written as Dovecot's message_address_write (SEARCH FROM/TO/
	 * CC/BCC) instead of ENVELOPE address structures */
	bool text, in_group, first;
	size_t text_start;
};

static char cur(const struct aparse *ap)
{
	return ap->rp.p < ap->rp.e ? *ap->rp.p : '\0';
}

static void a_reset(struct aparse *ap)
{
	memset(&ap->a, 0, sizeof(ap->a));
	buf_reset(ap->ab);
}

static void a_str(struct aparse *ap, struct sref r, const char *c, bool humans)
{
	struct buf *ab = ap->ab;

	if (c != NULL)
		mime_imap_nstring(ap->out, c, strlen(c));
	else if (!r.set)
		buf_append(ap->out, "NIL", 3);
	else if (humans)
		mime_imap_humans(ap->out, ab->data ? ab->data + r.off : "", r.len);
	else
		mime_imap_nstring(ap->out, ab->data ? ab->data + r.off : "", r.len);
}

/* an atom as it is, else a quoted-string (RFC 5322 3.2.4); dot: '.' is
 * allowed unquoted (a local part) */
static void t_maybe_quote(struct buf *out, const char *p, size_t n, bool dot)
{
	size_t i;

	for (i = 0; i < n && (mime_rp_atom_char(p[i]) || (dot && p[i] == '.')); i++)
		;
	if (i == n) {
		buf_append(out, p, n);
		return;
	}
	buf_appendc(out, '"');
	for (i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\')
			buf_appendc(out, '\\');
		buf_appendc(out, p[i]);
	}
	buf_appendc(out, '"');
}

static void t_str(struct aparse *ap, struct sref r, const char *c, bool quote, bool dot)
{
	const char *p = c != NULL ? c : ap->ab->data ? ap->ab->data + r.off : "";
	size_t n = c != NULL ? strlen(c) : r.set ? r.len : 0;

	/* a phrase with encoded words is written as it is (decoded later) */
	if (quote && !memmem(p, n, "=?", 2))
		t_maybe_quote(ap->out, p, n, dot);
	else
		buf_append(ap->out, p, n);
}

static bool a_set(struct sref r, const char *c)
{
	return c != NULL || (r.set && r.len > 0);
}

/* One address as Dovecot's message_address_write writes it: "local@domain",
 * "Name <@route:local@domain>", "group: a@b, c@d;" */
static void a_emit_text(struct aparse *ap)
{
	struct buf *out = ap->out;
	struct addr *a = &ap->a;

	if (!ap->first)
		buf_append(out, ", ", 2);
	ap->first = false;
	if (!a->domain.set && a->c_domain == NULL) {
		/* a group's start (mailbox: its name) or end (nothing) */
		if (!ap->in_group) {
			if (a_set(a->mailbox, a->c_mailbox))
				t_str(ap, a->mailbox, a->c_mailbox, true, false);
			else
				buf_append(out, "\"\"", 2);
			buf_append(out, ": ", 2);
			ap->first = true;
		} else {
			if (out->len >= ap->text_start + 2)
				out->len -= 2; /* the ", " or ": " */
			buf_appendc(out, ';');
		}
		ap->in_group = !ap->in_group;
	} else if (!a_set(a->name, NULL) && !a_set(a->route, a->c_route)) {
		if (a_set(a->mailbox, a->c_mailbox)) {
			t_str(ap, a->mailbox, a->c_mailbox, true, true);
			buf_appendc(out, '@');
			t_str(ap, a->domain, a->c_domain, false, false);
		}
	} else {
		if (a_set(a->name, NULL))
			t_str(ap, a->name, NULL, true, false);
		buf_append(out, " <", 2);
		if (a_set(a->route, a->c_route)) {
			t_str(ap, a->route, a->c_route, false, false);
			buf_appendc(out, ':');
		}
		t_str(ap, a->mailbox, a->c_mailbox, true, true);
		buf_appendc(out, '@');
		t_str(ap, a->domain, a->c_domain, false, false);
		buf_appendc(out, '>');
	}
	ap->count++;
	a_reset(ap);
}

static void a_emit(struct aparse *ap)
{
	if (ap->text) {
		a_emit_text(ap);
		return;
	}
	buf_appendc(ap->out, '(');
	a_str(ap, ap->a.name, NULL, true);
	buf_appendc(ap->out, ' ');
	a_str(ap, ap->a.route, ap->a.c_route, false);
	buf_appendc(ap->out, ' ');
	a_str(ap, ap->a.mailbox, ap->a.c_mailbox, false);
	buf_appendc(ap->out, ' ');
	a_str(ap, ap->a.domain, ap->a.c_domain, false);
	buf_appendc(ap->out, ')');
	ap->count++;
	a_reset(ap);
}

/* RFC 9051 7.5.2: a missing mailbox or host is sent as Dovecot does */
static void a_emit_fixed(struct aparse *ap)
{
	if (!ap->a.mailbox.set && ap->a.c_mailbox == NULL)
		ap->a.c_mailbox = "MISSING_MAILBOX";
	if (!ap->a.domain.set && ap->a.c_domain == NULL)
		ap->a.c_domain = "MISSING_DOMAIN";
	a_emit(ap);
}

static struct sref a_begin(struct aparse *ap)
{
	struct sref r = {ap->ab->len, 0, true};

	return r;
}

static void a_end(struct aparse *ap, struct sref *r)
{
	r->len = ap->ab->len - r->off;
}

/* RFC 5322 3.4.1 local-part, with obs-local-part (4.4): words and dots,
 * leniently (".a..b" is kept as it is, as Dovecot does) */
static int a_local_part(struct aparse *ap)
{
	struct sref r = a_begin(ap);
	int ret = -1;
	bool dot = true;

	for (;;) {
		char c = cur(ap);

		if (c == '"') {
			ret = mime_rp_quoted(&ap->rp, ap->ab);
		} else if (c == '.' || (c != '\0' && mime_rp_atom_char(c))) {
			const char *s0 = ap->rp.p;

			while (ap->rp.p < ap->rp.e &&
			       (*ap->rp.p == '.' || mime_rp_atom_char(*ap->rp.p)))
				ap->rp.p++;
			buf_append(ap->ab, s0, (size_t)(ap->rp.p - s0));
			ret = mime_rp_skip(&ap->rp);
		} else {
			break;
		}
		if (ret <= 0)
			break;
		dot = ap->ab->len > r.off && ap->ab->data[ap->ab->len - 1] == '.';
		if (!dot && cur(ap) != '.')
			break;
	}
	if (ret < 0 || ap->ab->len == r.off) {
		ap->ab->len = r.off;
		return -1;
	}
	a_end(ap, &r);
	ap->a.mailbox = r;
	return ret;
}

static int a_domain(struct aparse *ap)
{
	struct sref r = a_begin(ap);
	int ret = mime_rp_domain(&ap->rp, ap->ab);

	if (ret < 0)
		return -1;
	a_end(ap, &r);
	ap->a.domain = r;
	return ret;
}

/* RFC 5322 4.4 obs-angle-addr: "<" [obs-route] addr-spec ">" */
static int a_angle_addr(struct aparse *ap)
{
	/* anything but a complete "<...>" is a syntax error */
	ap->rp.p++; /* '<' */
	if (mime_rp_skip(&ap->rp) <= 0)
		return -1;
	if (cur(ap) == '@') {
		/* obs-domain-list = "@" domain *(*(CFWS / ",") [CFWS] "@" domain) */
		struct sref r = a_begin(ap);

		while (cur(ap) == '@') {
			if (ap->ab->len > r.off)
				buf_appendc(ap->ab, ',');
			buf_appendc(ap->ab, '@');
			if (mime_rp_domain(&ap->rp, ap->ab) <= 0)
				break;
			while (mime_rp_skip(&ap->rp) > 0 && cur(ap) == ',')
				ap->rp.p++;
		}
		a_end(ap, &r);
		if (cur(ap) == ':') {
			ap->a.route = r;
			ap->rp.p++;
		} else {
			/* the local part is still read after a broken route */
			ap->a.route.set = false;
			ap->a.c_route = "INVALID_ROUTE";
		}
		if (mime_rp_skip(&ap->rp) <= 0)
			return -1;
	}
	if (cur(ap) == '>') {
		/* "<>" (or "<@route>"): no mailbox, no host */
		ap->rp.p++;
		return mime_rp_skip(&ap->rp);
	}
	if (a_local_part(ap) <= 0)
		return -1;
	if (cur(ap) == '@' && a_domain(ap) <= 0)
		return -1;
	if (cur(ap) != '>')
		return -1;
	ap->rp.p++;
	return mime_rp_skip(&ap->rp);
}

/* name-addr = [display-name] angle-addr */
static int a_name_addr(struct aparse *ap)
{
	struct sref r = a_begin(ap);

	if (mime_rp_phrase(&ap->rp, ap->ab) <= 0 || cur(ap) != '<')
		return -1;
	a_end(ap, &r);
	if (r.len > 0)
		ap->a.name = r;
	if (a_angle_addr(ap) < 0) {
		ap->a.domain.set = false;
		ap->a.c_domain = "SYNTAX_ERROR";
	}
	return ap->rp.p < ap->rp.e;
}

/* addr-spec = local-part "@" domain. A comment after it is the name
 * ("jane@example.org (Jane Roe)"); a local part without "@domain" followed
 * by more words is a display name without address (Dovecot 2.3). */
static int a_addr_spec(struct aparse *ap)
{
	int ret, ret2 = -2;

	buf_reset(ap->comment);
	ret = a_local_part(ap);
	if (ret != 0 && cur(ap) == '@') {
		ret2 = a_domain(ap);
		if (ret2 <= 0)
			ret = ret2;
	}
	if (ap->comment->len > 0) {
		struct sref r = a_begin(ap);

		buf_append(ap->ab, ap->comment->data, ap->comment->len);
		a_end(ap, &r);
		ap->a.name = r;
	} else if (ret2 == -2) {
		size_t before;
		struct sref r = a_begin(ap);

		if (ap->a.mailbox.set) {
			/* a copy within ab: room first, so the source cannot move */
			buf_reserve(ap->ab, ap->a.mailbox.len);
			buf_append(ap->ab, ap->ab->data + ap->a.mailbox.off, ap->a.mailbox.len);
		}
		buf_appendc(ap->ab, ' ');
		before = ap->ab->len;
		(void)mime_rp_phrase(&ap->rp, ap->ab);
		if (ap->ab->len != before) {
			a_end(ap, &r);
			ap->a.mailbox.set = false;
			ap->a.name = r;
		}
	}
	return ret;
}

static int a_mailbox(struct aparse *ap)
{
	const char *start = ap->rp.p;
	int ret;

	a_reset(ap);
	if ((ret = a_name_addr(ap)) < 0) {
		a_reset(ap);
		ap->rp.p = start;
		ret = a_addr_spec(ap);
	}
	a_emit_fixed(ap);
	return ret;
}

/* RFC 5322 3.4 group = display-name ":" [group-list] ";" [CFWS]; written as
 * RFC 9051 7.5.2 says: (NIL NIL name NIL) members (NIL NIL NIL NIL) */
static int a_group(struct aparse *ap)
{
	struct sref r;
	int ret;

	a_reset(ap);
	r = a_begin(ap);
	if (mime_rp_phrase(&ap->rp, ap->ab) <= 0 || cur(ap) != ':')
		return -1;
	a_end(ap, &r);
	ap->rp.p++;
	ret = mime_rp_skip(&ap->rp);
	ap->a.mailbox = r;
	a_emit(ap);
	if (ret > 0 && cur(ap) != ';') {
		for (;;) {
			if (a_mailbox(ap) <= 0) {
				ret = -1;
				break;
			}
			if (cur(ap) != ',')
				break;
			ap->rp.p++;
			if (mime_rp_skip(&ap->rp) <= 0) {
				ret = -1;
				break;
			}
		}
	}
	if (ret >= 0) {
		if (cur(ap) != ';') {
			ret = -1;
		} else {
			ap->rp.p++;
			ret = mime_rp_skip(&ap->rp);
		}
	}
	a_emit(ap);
	return ret == 0 ? 0 : 1;
}

/* RFC 5322 3.4 address-list: appends its addresses; false if there is none */
static bool parse_addresses(struct aparse *ap, const char *p, size_t n)
{
	int ret;

	ap->rp.p = p;
	ap->rp.e = p + n;
	ap->rp.comment = ap->comment;
	if (mime_rp_skip(&ap->rp) <= 0)
		return false;
	for (;;) {
		const char *start = ap->rp.p;

		if ((ret = a_group(ap)) < 0) {
			ap->rp.p = start;
			ret = a_mailbox(ap);
		}
		if (ret == 0 || cur(ap) != ',')
			break;
		ap->rp.p++;
		if ((ret = mime_rp_skip(&ap->rp)) <= 0) {
			if (ret < 0) {
				a_reset(ap);
				a_emit_fixed(ap);
			}
			break;
		}
	}
	return true;
}

static bool write_addresses(struct mime_build *b, const char *p, size_t n, struct buf *out)
{
	struct aparse ap = {.ab = &b->ab, .comment = &b->comment, .out = out};

	return parse_addresses(&ap, p, n);
}

void mime_address_text(const char *p, size_t n, struct buf *out)
{
	struct buf ab = BUF_INIT, comment = BUF_INIT;
	struct aparse ap = {.ab = &ab, .comment = &comment, .out = out, .text = true,
			    .first = true, .text_start = out->len};

	buf_append(out, "", 0);
	(void)parse_addresses(&ap, p, n);
	if (ap.in_group)
		buf_appendc(out, ';'); /* an unclosed group */
	buf_free(&ab);
	buf_free(&comment);
}

/* The addresses of every field named name in [h, h + n), from the first
 * one at from: one list (Dovecot joins repeated address fields). false,
 * nothing written, if there is no address. */
static bool write_address_fields(struct mime_build *b, const char *h, size_t n, const char *from,
				 const char *name, struct buf *out)
{
	const char *pos = from;
	struct mime_field f;
	size_t start = out->len;
	bool any = false;

	buf_appendc(out, '(');
	while (mime_field_next(&pos, h + n, &f))
		if (mime_field_is(&f, name) && write_addresses(b, f.value, f.value_len, out))
			any = true;
	if (!any) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
		return false;
	}
	buf_appendc(out, ')');
	return true;
}

enum { E_DATE, E_SUBJECT, E_FROM, E_SENDER, E_REPLY_TO, E_TO, E_CC, E_BCC, E_IN_REPLY_TO,
       E_MESSAGE_ID, E_N };
static const char *const env_names[E_N] = {"Date", "Subject",  "From", "Sender",
					   "Reply-To", "To", "Cc", "Bcc",
					   "In-Reply-To", "Message-ID"};

/* RFC 9051 7.5.2 ENVELOPE of the header [h, h + n); the last of each field
 * wins (as Dovecot). Sender and Reply-To default to From. */
static void write_envelope(struct mime_build *b, const char *h, size_t n, struct buf *out)
{
	struct mime_field f, fields[E_N];
	const char *first[E_N];
	bool have[E_N] = {false};
	const char *pos = h;
	int i;

	while (mime_field_next(&pos, h + n, &f))
		for (i = 0; i < E_N; i++)
			if (mime_field_is(&f, env_names[i])) {
				if (!have[i])
					first[i] = f.name;
				fields[i] = f;
				have[i] = true;
			}
	buf_appendc(out, '(');
	for (i = 0; i < E_N; i++) {
		if (i > 0)
			buf_appendc(out, ' ');
		if (!have[i]) {
			if ((i == E_SENDER || i == E_REPLY_TO) && have[E_FROM] &&
			    write_address_fields(b, h, n, first[E_FROM], env_names[E_FROM], out))
				continue;
			buf_append(out, "NIL", 3);
		} else if (i == E_SUBJECT) {
			mime_imap_humans(out, fields[i].value, fields[i].value_len);
		} else if (i == E_DATE || i == E_IN_REPLY_TO || i == E_MESSAGE_ID) {
			mime_imap_nolf(out, fields[i].value, fields[i].value_len, &b->tmp);
		} else if (!write_address_fields(b, h, n, first[i], env_names[i], out)) {
			if ((i == E_SENDER || i == E_REPLY_TO) && have[E_FROM] &&
			    write_address_fields(b, h, n, first[E_FROM], env_names[E_FROM], out))
				continue;
			buf_append(out, "NIL", 3);
		}
	}
	buf_appendc(out, ')');
}

/* ---- BODY / BODYSTRUCTURE (RFC 9051 7.5.2) ---- */

static void w_sref(struct buf *out, const struct cinfo *ci, struct sref r)
{
	if (!r.set)
		buf_append(out, "NIL", 3);
	else
		mime_imap_nstring(out, r.len ? sr(ci, r) : "", r.len);
}

static void w_nolf(struct mime_build *b, struct buf *out, const struct cinfo *ci, struct sref r)
{
	if (!r.set)
		buf_append(out, "NIL", 3);
	else
		mime_imap_nolf(out, r.len ? sr(ci, r) : "", r.len, &b->tmp);
}

static void w_list(struct buf *out, const struct cinfo *ci, struct sref r)
{
	if (!r.set) {
		buf_append(out, "NIL", 3);
		return;
	}
	buf_appendc(out, '(');
	buf_append(out, sr(ci, r), r.len);
	buf_appendc(out, ')');
}

static void w_disposition(struct buf *out, const struct cinfo *ci)
{
	if (!ci->disp.set) {
		buf_append(out, "NIL", 3);
		return;
	}
	buf_appendc(out, '(');
	w_sref(out, ci, ci->disp);
	buf_appendc(out, ' ');
	w_list(out, ci, ci->disp_params);
	buf_appendc(out, ')');
}

/* Dovecot sends the defaults for a plain 7-bit text/plain message (only
 * charset=us-ascii, no other Content-* field) whatever their case. */
static bool plain_7bit(const struct cinfo *ci)
{
	if (ci->type.set && !mime_eq(sr(ci, ci->type), ci->type.len, "text"))
		return false;
	if (ci->subtype.set && !mime_eq(sr(ci, ci->subtype), ci->subtype.len, "plain"))
		return false;
	if (ci->n_ct_params > 0 && !(ci->n_ct_params == 1 && ci->only_usascii))
		return false;
	if (ci->cte.set && !mime_eq(sr(ci, ci->cte), ci->cte.len, "7bit"))
		return false;
	return !ci->id.set && !ci->desc.set && !ci->md5.set && !ci->disp.set && !ci->lang.set &&
	       !ci->loc.set;
}

static void write_part(struct mime_build *b, uint32_t idx, unsigned depth, bool ext,
		       struct buf *out)
{
	struct cinfo *ci = ci_at(b, depth);
	const struct mpart *p = &b->parts[idx];
	uint32_t c;
	bool text;

	if (p->kind == K_MULTIPART) {
		for (c = p->first_child; c != MC_NONE; c = b->parts[c].next) {
			buf_appendc(out, '(');
			write_part(b, c, depth + 1, ext, out);
			buf_appendc(out, ')');
		}
		p = &b->parts[idx];
		parse_cinfo(ci, b->m + p->hdr_off, (size_t)p->hdr_len, p->in_mp);
		buf_appendc(out, ' ');
		mime_imap_nstring(out, ci->subtype.len ? sr(ci, ci->subtype) : "", ci->subtype.len);
		if (!ext)
			return;
		buf_appendc(out, ' ');
		w_list(out, ci, ci->ct_params);
		buf_appendc(out, ' ');
		w_disposition(out, ci);
		buf_appendc(out, ' ');
		w_list(out, ci, ci->lang);
		buf_appendc(out, ' ');
		w_nolf(b, out, ci, ci->loc);
		return;
	}
	parse_cinfo(ci, b->m + p->hdr_off, (size_t)p->hdr_len, p->in_mp);
	if ((idx == 0 && p->kind == K_LEAF && plain_7bit(ci)) || p->opaque) {
		buf_printf(out, "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" %llu %u",
			   (unsigned long long)p->body_len, p->lines);
		if (ext)
			buf_appends(out, " NIL NIL NIL NIL");
		return;
	}
	if (p->kind == K_MESSAGE) {
		text = false;
		if (!ci->type.set || mime_eq(sr(ci, ci->subtype), ci->subtype.len, "rfc822"))
			buf_appends(out, "\"message\" \"rfc822\"");
		else {
			w_sref(out, ci, ci->type);
			buf_appendc(out, ' ');
			w_sref(out, ci, ci->subtype);
		}
	} else if (!ci->type.set) {
		text = true;
		buf_appends(out, "\"text\" \"plain\"");
	} else if (mime_eq(sr(ci, ci->type), ci->type.len, "multipart")) {
		/* "multipart" that could not be read as one (no subtype) */
		text = false;
		buf_appends(out, "\"application\" \"octet-stream\"");
	} else {
		text = mime_eq(sr(ci, ci->type), ci->type.len, "text");
		w_sref(out, ci, ci->type);
		buf_appendc(out, ' ');
		mime_imap_nstring(out, ci->subtype.len ? sr(ci, ci->subtype) : "", ci->subtype.len);
	}
	buf_appendc(out, ' ');
	if (ci->ct_params.set) {
		buf_appendc(out, '(');
		buf_append(out, sr(ci, ci->ct_params), ci->ct_params.len);
		if (text && !ci->charset_found)
			buf_appends(out, " \"charset\" \"us-ascii\"");
		buf_appendc(out, ')');
	} else if (text) {
		buf_appends(out, "(\"charset\" \"us-ascii\")");
	} else {
		buf_append(out, "NIL", 3);
	}
	buf_appendc(out, ' ');
	w_nolf(b, out, ci, ci->id);
	buf_appendc(out, ' ');
	w_nolf(b, out, ci, ci->desc);
	buf_appendc(out, ' ');
	if (ci->cte.set)
		w_sref(out, ci, ci->cte);
	else
		buf_appends(out, "\"7bit\"");
	buf_printf(out, " %llu", (unsigned long long)p->body_len);
	if (text) {
		buf_printf(out, " %u", p->lines);
	} else if (p->kind == K_MESSAGE) {
		const struct mpart *m = &b->parts[p->first_child];
		uint32_t lines = p->lines;

		buf_appendc(out, ' ');
		write_envelope(b, b->m + m->hdr_off, (size_t)m->hdr_len, out);
		buf_append(out, " (", 2);
		/* the child's cinfo is one level down: ours stays valid */
		write_part(b, p->first_child, depth + 1, ext, out);
		buf_printf(out, ") %u", lines);
	}
	if (!ext)
		return;
	buf_appendc(out, ' ');
	w_nolf(b, out, ci, ci->md5);
	buf_appendc(out, ' ');
	w_disposition(out, ci);
	buf_appendc(out, ' ');
	w_list(out, ci, ci->lang);
	buf_appendc(out, ' ');
	w_nolf(b, out, ci, ci->loc);
}

/* ---- the cache ---- */

/* Parses msg's part structure into b. Only the scalars are cleared: the
 * arrays ci[] and stack[] (some 18 KB, most never used) are cleared entry
 * by entry when first touched (ci_at, parse_multipart). */
static void build_parse(struct mime_build *b, const char *msg, size_t len)
{
	b->m = msg;
	b->len = len;
	b->parts = NULL;
	b->n = b->cap = b->n_real = 0;
	b->nb = b->ci_used = b->nb_used = 0;
	b->ab = b->tmp = b->comment = (struct buf)BUF_INIT;
	(void)part_new(b, MC_NONE, true);
	(void)parse_part(b, 0, 0, 0, false);
}

static void build_free(struct mime_build *b)
{
	free(b->parts);
	for (size_t i = 0; i < b->nb_used; i++)
		buf_free(&b->stack[i].b);
	for (size_t i = 0; i < b->ci_used; i++)
		ci_free(&b->ci[i]);
	buf_free(&b->ab);
	buf_free(&b->tmp);
	buf_free(&b->comment);
}

static void part_rec(const struct mpart *p, struct mime_part_rec *r)
{
	r->hdr_off = p->hdr_off;
	r->hdr_len = p->hdr_len;
	r->body_off = p->body_off;
	r->body_len = p->body_len;
	r->lines = p->lines;
	r->first_child = p->opaque ? MC_NONE : p->first_child;
	r->next = p->next;
	r->kind = p->opaque ? K_LEAF : p->kind;
	r->enc = p->enc;
}

size_t mime_parts_list(const char *msg, size_t len, struct mime_part_rec **out)
{
	struct mime_build b;

	build_parse(&b, msg, len);
	*out = xmalloc((b.n ? b.n : 1) * sizeof **out);
	for (size_t i = 0; i < b.n; i++)
		part_rec(&b.parts[i], &(*out)[i]);
	size_t n = b.n;
	build_free(&b);
	return n;
}

void mime_cache_build(const char *msg, size_t len, struct buf *out)
{
	struct mime_build b;
	size_t start = out->len, i, s_env, s_body, s_bs, s_th, s_so;
	unsigned char *h;

	build_parse(&b, msg, len);

	buf_reserve(out, MC_HDR + b.n * MC_REC + 512);
	out->len += MC_HDR + b.n * MC_REC;
	for (i = 0; i < b.n; i++) {
		unsigned char *r = (unsigned char *)out->data + start + MC_HDR + i * MC_REC;
		struct mime_part_rec pr;

		part_rec(&b.parts[i], &pr);
		le64_put(r, pr.hdr_off);
		le64_put(r + 8, pr.hdr_len);
		le64_put(r + 16, pr.body_off);
		le64_put(r + 24, pr.body_len);
		le32_put(r + 32, pr.lines);
		le32_put(r + 36, pr.first_child);
		le32_put(r + 40, pr.next);
		r[44] = pr.kind;
		r[45] = pr.enc;
		r[46] = r[47] = 0;
	}
	s_env = out->len;
	write_envelope(&b, msg, (size_t)b.parts[0].hdr_len, out);
	s_body = out->len;
	buf_appendc(out, '(');
	write_part(&b, 0, 0, false, out);
	buf_appendc(out, ')');
	s_bs = out->len;
	buf_appendc(out, '(');
	write_part(&b, 0, 0, true, out);
	buf_appendc(out, ')');
	s_th = out->len;
	mime_thread_build(msg, len, out);
	s_so = out->len;
	/* env points into out: mime_sort_build reads it all before appending */
	mime_sort_build(out->data + s_env, s_body - s_env, msg, len, out);

	h = (unsigned char *)out->data + start;
	memcpy(h, "PMC", 3);
	h[3] = MC_VERSION;
	le32_put(h + 4, (uint32_t)(out->len - start));
	le32_put(h + 8, (uint32_t)b.n);
	le32_put(h + 12, (uint32_t)(s_env - start));
	le32_put(h + 16, (uint32_t)(s_body - s_env));
	le32_put(h + 20, (uint32_t)(s_body - start));
	le32_put(h + 24, (uint32_t)(s_bs - s_body));
	le32_put(h + 28, (uint32_t)(s_bs - start));
	le32_put(h + 32, (uint32_t)(s_th - s_bs));
	le32_put(h + 36, (uint32_t)(s_th - start));
	le32_put(h + 40, (uint32_t)(s_so - s_th));
	le32_put(h + 44, (uint32_t)(s_so - start));
	le32_put(h + 48, (uint32_t)(out->len - s_so));
	build_free(&b);
}

static bool range_ok(uint32_t off, uint32_t len, size_t n)
{
	return off <= n && len <= n - off;
}

bool mime_cache_open(struct mime_cache *mc, const void *p, size_t n)
{
	const unsigned char *c = p;
	uint32_t i, np;

	memset(mc, 0, sizeof(*mc));
	if (p == NULL || n < MC_HDR || memcmp(c, "PMC", 3) != 0 || c[3] != MC_VERSION ||
	    le32_get(c + 4) != n)
		return false;
	np = le32_get(c + 8);
	if (np == 0 || np > (n - MC_HDR) / MC_REC)
		return false;
	mc->p = c;
	mc->n = n;
	mc->n_parts = np;
	mc->parts_off = MC_HDR;
	mc->envelope_off = le32_get(c + 12);
	mc->envelope_len = le32_get(c + 16);
	mc->body_off = le32_get(c + 20);
	mc->body_len = le32_get(c + 24);
	mc->bs_off = le32_get(c + 28);
	mc->bs_len = le32_get(c + 32);
	mc->th_off = le32_get(c + 36);
	mc->th_len = le32_get(c + 40);
	mc->so_off = le32_get(c + 44);
	mc->so_len = le32_get(c + 48);
	if (!range_ok(mc->so_off, mc->so_len, n) ||
	    !mime_sort_open(c + mc->so_off, mc->so_len, &mc->so))
		goto bad;
	if (!range_ok(mc->th_off, mc->th_len, n) ||
	    !mime_thread_open(c + mc->th_off, mc->th_len, &mc->th))
		goto bad;
	if (!range_ok(mc->envelope_off, mc->envelope_len, n) ||
	    !range_ok(mc->body_off, mc->body_len, n) || !range_ok(mc->bs_off, mc->bs_len, n) ||
	    mc->envelope_off < MC_HDR + (size_t)np * MC_REC)
		goto bad;
	for (i = 0; i < np; i++) {
		const unsigned char *r = c + MC_HDR + (size_t)i * MC_REC;
		uint64_t ho = le64_get(r), hl = le64_get(r + 8), bo = le64_get(r + 16), bl = le64_get(r + 24);
		uint32_t fc = le32_get(r + 36), nx = le32_get(r + 40);

		if (ho > MIME_MAX_MESSAGE * 2 || hl > MIME_MAX_MESSAGE * 2 ||
		    bo > MIME_MAX_MESSAGE * 2 || bl > MIME_MAX_MESSAGE * 2 || ho + hl > bo)
			goto bad;
		if ((fc != MC_NONE && (fc <= i || fc >= np)) || (nx != MC_NONE && (nx <= i || nx >= np)))
			goto bad;
		if (r[44] > K_MESSAGE || r[45] > MIME_ENC_OTHER)
			goto bad;
		if (r[44] != K_LEAF && fc == MC_NONE)
			goto bad;
	}
	return true;
bad:
	memset(mc, 0, sizeof(*mc));
	return false;
}

void mime_cache_envelope(const struct mime_cache *mc, const char **p, size_t *n)
{
	*p = (const char *)mc->p + mc->envelope_off;
	*n = mc->envelope_len;
}

const struct mime_thread *mime_cache_thread(const struct mime_cache *mc)
{
	return &mc->th;
}

const struct mime_sortinfo *mime_cache_sort(const struct mime_cache *mc)
{
	return &mc->so;
}

bool mime_cache_key_sections(const void *p, size_t n, const void **so_r, size_t *so_len_r,
			     const void **th_r, size_t *th_len_r)
{
	struct mime_cache mc;
	if (!mime_cache_open(&mc, p, n))
		return false;
	*so_r = mc.p + mc.so_off;
	*so_len_r = mc.so_len;
	*th_r = mc.p + mc.th_off;
	*th_len_r = mc.th_len;
	return true;
}

void mime_cache_body(const struct mime_cache *mc, const char **p, size_t *n)
{
	*p = (const char *)mc->p + mc->body_off;
	*n = mc->body_len;
}

void mime_cache_bodystructure(const struct mime_cache *mc, const char **p, size_t *n)
{
	*p = (const char *)mc->p + mc->bs_off;
	*n = mc->bs_len;
}

void mime_cache_part(const struct mime_cache *mc, uint32_t i, struct mime_part_rec *r)
{
	const unsigned char *c = mc->p + mc->parts_off + (size_t)i * MC_REC;

	r->hdr_off = le64_get(c);
	r->hdr_len = le64_get(c + 8);
	r->body_off = le64_get(c + 16);
	r->body_len = le64_get(c + 24);
	r->lines = le32_get(c + 32);
	r->first_child = le32_get(c + 36);
	r->next = le32_get(c + 40);
	r->kind = c[44];
	r->enc = c[45];
}

bool mime_text_type(const char *hdr, size_t n, struct buf *charset, bool *html_r)
{
	struct cinfo ci;
	bool text;

	memset(&ci, 0, sizeof(ci));
	parse_cinfo(&ci, hdr, n, true);
	text = !ci.type.set || mime_eq(sr(&ci, ci.type), ci.type.len, "text");
	*html_r = text && ci.type.set && ci.subtype.set &&
		  mime_eq(sr(&ci, ci.subtype), ci.subtype.len, "html");
	buf_reset(charset);
	if (text && ci.charset_found)
		buf_append(charset, ci.cs.data, ci.cs.len);
	ci_free(&ci);
	return text;
}

bool mime_text_charset(const char *hdr, size_t n, struct buf *charset)
{
	bool html;

	return mime_text_type(hdr, n, charset, &html);
}

/* RFC 9051 6.4.5 part numbers: the parts of a multipart are numbered from 1;
 * a part that is not a multipart has only part 1, itself; below a
 * message/rfc822 part the numbers address the encapsulated message's parts
 * (Dovecot's reading, tests/data/mime/NAME.expected). */
int mime_cache_section(const struct mime_cache *mc, const uint32_t *path, size_t depth,
		       enum mime_section what, uint64_t *off_r, uint64_t *len_r,
		       enum mime_encoding *enc_r)
{
	struct mime_part_rec r, c;
	uint32_t cur = 0;
	size_t i;

	if (mc->n_parts == 0)
		return -1;
	mime_cache_part(mc, 0, &r);
	for (i = 0; i < depth; i++) {
		uint32_t k = path[i];

		if (k == 0)
			return -1;
		if (i > 0 && r.kind == K_MESSAGE) {
			cur = r.first_child;
			mime_cache_part(mc, cur, &r);
		}
		if (r.kind == K_MULTIPART) {
			uint32_t ch = r.first_child;

			while (--k > 0 && ch != MC_NONE) {
				mime_cache_part(mc, ch, &c);
				ch = c.next;
			}
			if (ch == MC_NONE)
				return -1;
			cur = ch;
			mime_cache_part(mc, cur, &r);
		} else if (k != 1 || (i > 0 && cur == 0)) {
			/* a leaf is its own part 1, except the message itself:
			 * BODY[1.1] of a one-part message is empty (Dovecot) */
			return -1;
		}
	}
	*enc_r = MIME_ENC_7BIT;
	switch (what) {
	case MIME_SECT_BODY:
		if (depth == 0) {
			*off_r = 0;
			*len_r = r.body_off + r.body_len;
		} else {
			*off_r = r.body_off;
			*len_r = r.body_len;
			*enc_r = (enum mime_encoding)r.enc;
		}
		return 0;
	case MIME_SECT_MIME:
		if (depth == 0)
			return -1;
		*off_r = r.hdr_off;
		*len_r = r.hdr_len;
		return 0;
	case MIME_SECT_HEADER:
	case MIME_SECT_TEXT:
		if (depth > 0) {
			if (r.kind != K_MESSAGE)
				return -1;
			mime_cache_part(mc, r.first_child, &r);
		}
		if (what == MIME_SECT_HEADER) {
			*off_r = r.hdr_off;
			*len_r = r.hdr_len;
		} else {
			*off_r = r.body_off;
			*len_r = r.body_len;
		}
		return 0;
	}
	return -1;
}
