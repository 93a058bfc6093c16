/* FETCH responses for one message (RFC 9051 6.4.5 / 7.5.2; RFC 3501 6.4.5
 * for the rev1 RFC822.* items; RFC 3516 BINARY; RFC 7162 CONDSTORE).
 *
 * Formats where the RFC leaves a choice follow Dovecot 2.3:
 *  - body sections are always literals, "{0}\r\n" included;
 *  - a part that does not exist is an empty literal (BODY[5], BINARY[5],
 *    BODY[1.TEXT] of a part that is not message/rfc822), BINARY.SIZE 0;
 *  - a partial is echoed with its origin only: "BODY[]<0>";
 *  - UID (UID FETCH) and FLAGS (after an implicit \Seen) added by the server
 *    come first. */
#include "imap/fetch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/xmalloc.h"

/* decoding pass over an encoded part: input chunk */
#define FETCH_DECODE_CHUNK 8192

void imap_fetch_out_reset(struct imap_fetch_out *o)
{
	buf_reset(&o->bytes);
	o->n_segs = 0;
	o->error = NULL;
}

void imap_fetch_out_free(struct imap_fetch_out *o)
{
	buf_free(&o->bytes);
	free(o->segs);
	o->segs = NULL;
	o->n_segs = o->cap_segs = 0;
	o->error = NULL;
}

/* ---- flags ---- */

static const struct {
	const char *name;
	unsigned bit;
} sys_flags[] = {
	/* Dovecot's order (imap_write_flags) */
	{"\\Answered", IMAP_F_ANSWERED}, {"\\Flagged", IMAP_F_FLAGGED},
	{"\\Deleted", IMAP_F_DELETED},   {"\\Seen", IMAP_F_SEEN},
	{"\\Draft", IMAP_F_DRAFT},       {"\\Recent", IMAP_F_RECENT},
};

static unsigned sys_flag_bit(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(sys_flags) / sizeof(sys_flags[0]); i++)
		if (strlen(sys_flags[i].name) == n && strncasecmp(sys_flags[i].name, s, n) == 0)
			return sys_flags[i].bit;
	return 0;
}

void imap_format_flags(struct buf *out, unsigned sysflags, const char *keywords)
{
	bool first = true;
	buf_appendc(out, '(');
	for (size_t i = 0; i < sizeof(sys_flags) / sizeof(sys_flags[0]); i++) {
		if (!(sysflags & sys_flags[i].bit))
			continue;
		if (!first)
			buf_appendc(out, ' ');
		buf_appends(out, sys_flags[i].name);
		first = false;
	}
	for (const char *p = keywords ? keywords : ""; *p;) {
		size_t n = strcspn(p, " ");
		/* a system flag the store wrote after a keyword is not one */
		if (n > 0 && p[0] != '\\') {
			if (!first)
				buf_appendc(out, ' ');
			buf_append(out, p, n);
			first = false;
		}
		p += n;
		p += strspn(p, " ");
	}
	buf_appendc(out, ')');
}

int imap_blob_load(struct imap_blob *bl, int fd, const char **p_r, size_t *len_r)
{
	struct stat st;
	size_t size, got = 0;

	if (bl->map != NULL) {
		munmap(bl->map, bl->maplen);
		bl->map = NULL;
		bl->maplen = 0;
	}
	if (fstat(fd, &st) < 0)
		return -1;
	size = st.st_size > 0 ? (size_t)st.st_size : 0;
	if (size >= IMAP_BLOB_MAP_MIN) {
		void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m != MAP_FAILED) {
			bl->map = m;
			bl->maplen = size;
			*p_r = m;
			*len_r = size;
			return 0;
		}
	}
	buf_reset(&bl->b);
	buf_reserve(&bl->b, size + 1);
	while (got < size) {
		ssize_t r = pread(fd, bl->b.data + got, size - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break; /* shorter than fstat said: what there is */
		got += (size_t)r;
	}
	bl->b.len = got;
	bl->b.data[got] = '\0';
	*p_r = bl->b.data;
	*len_r = got;
	return 0;
}

void imap_blob_free(struct imap_blob *bl)
{
	if (bl->map != NULL)
		munmap(bl->map, bl->maplen);
	bl->map = NULL;
	bl->maplen = 0;
	buf_free(&bl->b);
}

unsigned imap_flags_from_store(const char *flags, const char **keywords_r)
{
	unsigned bits = 0;
	const char *kw = NULL;
	for (const char *p = flags ? flags : ""; *p;) {
		p += strspn(p, " ");
		if (!*p)
			break;
		size_t n = strcspn(p, " ");
		unsigned b = p[0] == '\\' ? sys_flag_bit(p, n) : 0;
		if (b)
			bits |= b;
		else if (!kw && p[0] != '\\')
			kw = p;
		p += n;
	}
	/* \Recent is never stored (store.h); keywords_r may still hold system
	 * flags written after a keyword: readers skip words starting with \ */
	if (keywords_r)
		*keywords_r = kw ? kw : "";
	return bits & ~(unsigned)IMAP_F_RECENT;
}

/* ---- the streaming decoder ---- */

void imap_decoder_init(struct imap_decoder *d, enum mime_encoding enc, uint64_t skip,
		       uint64_t out_len)
{
	memset(d, 0, sizeof(*d));
	d->enc = enc;
	d->skip = skip;
	d->out_len = out_len;
}

bool imap_decoder_done(const struct imap_decoder *d)
{
	return d->out_len != UINT64_MAX && d->pos >= d->skip + d->out_len;
}

/* Appends the decoded bytes p/n (positions pos..pos+n) cut to the window. */
static void dec_emit(struct imap_decoder *d, const char *p, size_t n, struct buf *out)
{
	uint64_t lo = d->pos, hi = d->pos + n;
	uint64_t wlo = d->skip;
	uint64_t whi = d->out_len == UINT64_MAX || d->skip + d->out_len < d->skip
			       ? UINT64_MAX
			       : d->skip + d->out_len;
	d->pos = hi;
	if (hi <= wlo || lo >= whi)
		return;
	uint64_t a = lo < wlo ? wlo : lo, b = hi > whi ? whi : hi;
	buf_append(out, p + (a - lo), (size_t)(b - a));
}

/* decoded output is gathered in a small local buffer, then cut */
struct dec_tmp {
	char v[1024];
	size_t n;
};

static inline void tmp_put(struct imap_decoder *d, struct dec_tmp *t, char c, struct buf *out)
{
	if (t->n == sizeof(t->v)) {
		dec_emit(d, t->v, t->n, out);
		t->n = 0;
	}
	t->v[t->n++] = c;
}

static void tmp_flush(struct imap_decoder *d, struct dec_tmp *t, struct buf *out)
{
	if (t->n)
		dec_emit(d, t->v, t->n, out);
	t->n = 0;
}

/* RFC 2045 6.7: one encoded character through mime's state machine */
static inline void qp_char(struct imap_decoder *d, struct dec_tmp *t, char c, struct buf *out)
{
	char v[MIME_QP_OUT_MAX];
	size_t n = mime_qp_step(&d->qp, c, v);
	for (size_t i = 0; i < n; i++)
		tmp_put(d, t, v[i], out);
}

void imap_decoder_feed(struct imap_decoder *d, const char *in, size_t n, struct buf *out)
{
	if (imap_decoder_done(d))
		return;
	if (d->enc != MIME_ENC_BASE64 && d->enc != MIME_ENC_QP) {
		dec_emit(d, in, n, out);
		return;
	}
	struct dec_tmp t;
	t.n = 0;
	for (size_t i = 0; i < n; i++) {
		if (d->enc == MIME_ENC_BASE64) {
			int v = base64_value((unsigned char)in[i]);
			if (v < 0) {
				if (in[i] == '=') { /* padding: the quantum ends */
					d->acc = 0;
					d->bits = 0;
				}
				continue;
			}
			d->acc = (d->acc << 6 | (uint32_t)v) & 0xffffff;
			d->bits += 6;
			if (d->bits >= 8) {
				d->bits -= 8;
				tmp_put(d, &t, (char)(d->acc >> d->bits), out);
			}
		} else {
			qp_char(d, &t, in[i], out);
		}
		if ((i & 4095) == 4095) {
			tmp_flush(d, &t, out);
			if (imap_decoder_done(d))
				return;
		}
	}
	tmp_flush(d, &t, out);
}

void imap_decoder_finish(struct imap_decoder *d, struct buf *out)
{
	struct dec_tmp t;
	t.n = 0;
	if (d->enc == MIME_ENC_QP) {
		char v[MIME_QP_OUT_MAX];
		size_t n = mime_qp_finish(&d->qp, v);
		for (size_t i = 0; i < n; i++)
			tmp_put(d, &t, v[i], out);
	}
	tmp_flush(d, &t, out);
}

/* ---- output segments ---- */

struct fetch_ctx {
	const struct imap_fetch_opts *opt;
	const struct imap_msg *m;
	struct imap_fetch_out *o;
	size_t mark; /* bytes not yet in a segment start here */
	struct buf tmp;
};

static struct imap_seg *seg_push(struct imap_fetch_out *o)
{
	if (o->n_segs == o->cap_segs) {
		o->cap_segs = o->cap_segs ? o->cap_segs * 2 : 8;
		o->segs = xrealloc(o->segs, o->cap_segs * sizeof(*o->segs));
	}
	struct imap_seg *s = &o->segs[o->n_segs++];
	memset(s, 0, sizeof(*s));
	return s;
}

/* Closes the bytes written since the last segment into a BYTES segment
 * (extending the previous one when contiguous). */
static void seg_bytes(struct fetch_ctx *c)
{
	struct imap_fetch_out *o = c->o;
	size_t n = o->bytes.len - c->mark;
	if (n == 0)
		return;
	struct imap_seg *last = o->n_segs ? &o->segs[o->n_segs - 1] : NULL;
	if (last && last->kind == IMAP_SEG_BYTES && last->off + last->len == c->mark) {
		last->len += n;
	} else {
		struct imap_seg *s = seg_push(o);
		s->kind = IMAP_SEG_BYTES;
		s->off = c->mark;
		s->len = n;
	}
	c->mark = o->bytes.len;
}

static void seg_range(struct fetch_ctx *c, enum imap_seg_kind kind, enum mime_encoding enc,
		      uint64_t off, uint64_t len, uint64_t skip, uint64_t out_len)
{
	seg_bytes(c);
	struct imap_seg *s = seg_push(c->o);
	s->kind = kind;
	s->enc = enc;
	s->off = off;
	s->len = len;
	s->skip = skip;
	s->out_len = out_len;
}

static void literal_prefix(struct buf *b, uint64_t n, bool binary)
{
	buf_printf(b, "%s{%llu}\r\n", binary ? "~" : "", (unsigned long long)n);
}

/* A literal of the message's bytes [off, off+len): copied when small (and the
 * message is mapped), else streamed from the blob. */
static void literal_blob(struct fetch_ctx *c, uint64_t off, uint64_t len, bool binary)
{
	struct buf *b = &c->o->bytes;
	literal_prefix(b, len, binary);
	if (len == 0)
		return;
	if (len <= IMAP_FETCH_INLINE && c->m->msg && off + len <= c->m->len)
		buf_append(b, c->m->msg + off, (size_t)len);
	else
		seg_range(c, IMAP_SEG_BLOB, MIME_ENC_7BIT, off, len, 0, 0);
}

/* <off.len> of the partial applied to a content of n octets */
static void partial_cut(const struct imap_fetch_item *it, uint64_t n, uint64_t *skip_r,
			uint64_t *len_r)
{
	if (!it->partial) {
		*skip_r = 0;
		*len_r = n;
		return;
	}
	if (it->p_off >= n) {
		*skip_r = n;
		*len_r = 0;
		return;
	}
	*skip_r = it->p_off;
	*len_r = n - it->p_off < it->p_len ? n - it->p_off : it->p_len;
}

/* The response name of an item when the parser gave none: BODY[1.2.HEADER]<5> */
static void item_label(struct buf *b, const struct imap_fetch_item *it)
{
	if (it->label) {
		buf_appends(b, it->label);
		return;
	}
	buf_appends(b, it->kind == IMAP_FETCH_BINARY        ? "BINARY["
		       : it->kind == IMAP_FETCH_BINARY_SIZE ? "BINARY.SIZE["
							    : "BODY[");
	for (uint8_t i = 0; i < it->depth; i++)
		buf_printf(b, "%s%u", i ? "." : "", it->path[i]);
	static const char *const what[] = {"", "HEADER", "TEXT", "MIME"};
	if (it->fields) {
		buf_printf(b, "%sHEADER.FIELDS%s (", it->depth ? "." : "",
			   it->fields_not ? ".NOT" : "");
		for (size_t i = 0; i < it->n_names; i++)
			buf_printf(b, "%s%s", i ? " " : "", it->names[i]);
		buf_appendc(b, ')');
	} else if (it->what > 0 && it->what < 4) {
		buf_printf(b, "%s%s", it->depth ? "." : "", what[it->what]);
	}
	buf_appendc(b, ']');
	if (it->partial)
		buf_printf(b, "<%llu>", (unsigned long long)it->p_off);
}

static int section_range(const struct fetch_ctx *c, const uint32_t *path, size_t depth,
			 enum mime_section what, uint64_t *off_r, uint64_t *len_r,
			 enum mime_encoding *enc_r)
{
	const struct imap_msg *m = c->m;
	if (m->mc) {
		if (mime_cache_section(m->mc, path, depth, what, off_r, len_r, enc_r) < 0)
			return -1;
		/* a cache that does not fit the message (it is checked
		 * against itself only) never sends bytes past its end */
		if (m->msg && (*off_r > m->len || *len_r > m->len - *off_r))
			return -1;
		return 0;
	}
	if (depth == 0 && what == MIME_SECT_BODY && m->msg) {
		*off_r = 0;
		*len_r = m->len;
		*enc_r = MIME_ENC_7BIT;
		return 0;
	}
	return -1;
}

/* BODY[section]<partial>, RFC822, RFC822.HEADER, RFC822.TEXT */
static void fetch_section(struct fetch_ctx *c, const struct imap_fetch_item *it,
			  enum mime_section what)
{
	struct buf *b = &c->o->bytes;
	uint64_t off, len, skip, n;
	enum mime_encoding enc;
	if (section_range(c, it->path, it->depth, what, &off, &len, &enc) < 0) {
		literal_prefix(b, 0, false); /* a missing part: empty, as Dovecot */
		return;
	}
	if (it->fields) {
		/* HEADER.FIELDS (.NOT): built, then cut (header-sized) */
		buf_reset(&c->tmp);
		if (c->m->msg && off + len <= c->m->len)
			mime_header_fields(c->m->msg + off, (size_t)len,
					   (const char *const *)it->names, it->n_names,
					   it->fields_not, &c->tmp);
		partial_cut(it, c->tmp.len, &skip, &n);
		literal_prefix(b, n, false);
		buf_append(b, c->tmp.data + skip, (size_t)n);
		return;
	}
	partial_cut(it, len, &skip, &n);
	literal_blob(c, off + skip, n, false);
}

/* The decoded size of the cut [skip, skip+len) of an encoded range, and
 * whether it holds a NUL; the decoded bytes themselves in *inline_r when
 * they fit IMAP_FETCH_INLINE. One pass, in chunks, through the decoder the
 * server streams with. */
static uint64_t decode_pass(struct fetch_ctx *c, enum mime_encoding enc, uint64_t off,
			    uint64_t len, uint64_t skip, uint64_t max, bool *nul_r, bool *inline_r)
{
	struct imap_decoder d;
	imap_decoder_init(&d, enc, skip, max);
	const char *p = c->m->msg + off;
	uint64_t total = 0;
	bool keep = true;
	*nul_r = false;
	buf_reset(&c->tmp);
	for (uint64_t done = 0;;) {
		bool last = done == len;
		size_t before = c->tmp.len;
		if (last) {
			imap_decoder_finish(&d, &c->tmp);
		} else {
			size_t k = len - done > FETCH_DECODE_CHUNK ? FETCH_DECODE_CHUNK
								   : (size_t)(len - done);
			imap_decoder_feed(&d, p + done, k, &c->tmp);
			done += k;
		}
		size_t got = c->tmp.len - before;
		total += got;
		if (!*nul_r && got && memchr(c->tmp.data + before, 0, got))
			*nul_r = true;
		if (keep && c->tmp.len > IMAP_FETCH_INLINE)
			keep = false;
		if (!keep)
			buf_reset(&c->tmp);
		if (last || imap_decoder_done(&d))
			break;
	}
	*inline_r = keep;
	return total;
}

/* BINARY[section]<partial> and BINARY.SIZE[section] (RFC 3516 4.2) */
static void fetch_binary(struct fetch_ctx *c, const struct imap_fetch_item *it, bool size_only)
{
	struct buf *b = &c->o->bytes;
	uint64_t off, len;
	enum mime_encoding enc;
	if (section_range(c, it->path, it->depth, MIME_SECT_BODY, &off, &len, &enc) < 0 ||
	    !c->m->msg || off + len > c->m->len) {
		if (size_only)
			buf_appendc(b, '0');
		else
			literal_prefix(b, 0, false);
		return;
	}
	if (it->depth == 0)
		enc = MIME_ENC_7BIT; /* the message itself has no transfer encoding */
	if (enc == MIME_ENC_OTHER) {
		/* RFC 3516 4.3: the command fails */
		c->o->error = "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding";
		return;
	}
	if (enc != MIME_ENC_BASE64 && enc != MIME_ENC_QP) {
		uint64_t skip, n;
		if (size_only) {
			buf_printf(b, "%llu", (unsigned long long)len);
			return;
		}
		partial_cut(it, len, &skip, &n);
		bool nul = n && memchr(c->m->msg + off + skip, 0, (size_t)n);
		literal_blob(c, off + skip, n, nul && c->opt->binary_ok);
		return;
	}
	uint64_t skip = !size_only && it->partial ? it->p_off : 0;
	uint64_t max = !size_only && it->partial ? it->p_len : UINT64_MAX;
	bool nul, in;
	uint64_t n = decode_pass(c, enc, off, len, skip, max, &nul, &in);
	if (size_only) {
		buf_printf(b, "%llu", (unsigned long long)n);
		return;
	}
	literal_prefix(b, n, nul && c->opt->binary_ok);
	if (n == 0)
		return;
	if (in) {
		buf_append(b, c->tmp.data, c->tmp.len);
	} else {
		seg_range(c, IMAP_SEG_DECODE, enc, off, len, skip, n);
	}
}

static bool has_item(const struct imap_fetch *f, enum imap_fetch_kind k)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->v[i].kind == k)
			return true;
	return false;
}

static void sep(struct buf *b, bool *first)
{
	if (!*first)
		buf_appendc(b, ' ');
	*first = false;
}

static void fetch_flags(struct fetch_ctx *c)
{
	unsigned fl = c->opt->set_flags ? *c->opt->set_flags : c->m->sysflags;
	buf_appends(&c->o->bytes, "FLAGS ");
	imap_format_flags(&c->o->bytes, fl, c->m->keywords);
}

static void fetch_cached(struct fetch_ctx *c,
			 void (*get)(const struct mime_cache *, const char **, size_t *))
{
	const char *p;
	size_t n;
	if (!c->m->mc) {
		buf_appends(&c->o->bytes, "NIL");
		return;
	}
	get(c->m->mc, &p, &n);
	buf_append(&c->o->bytes, p, n);
}

void imap_fetch_format(const struct imap_fetch *f, const struct imap_fetch_opts *opt,
		       const struct imap_msg *m, struct imap_fetch_out *o)
{
	struct fetch_ctx c = {.opt = opt, .m = m, .o = o, .mark = o->bytes.len};
	struct buf *b = &o->bytes;
	size_t start_bytes = o->bytes.len, start_segs = o->n_segs;
	uint64_t start_last_len = o->n_segs ? o->segs[o->n_segs - 1].len : 0;
	bool first = true;

	buf_init(&c.tmp);
	buf_printf(b, "* %u FETCH (", m->seq);
	/* RFC 9051 6.4.9: UID FETCH always answers with UID */
	if (opt->uid && !has_item(f, IMAP_FETCH_UID)) {
		sep(b, &first);
		buf_printf(b, "UID %u", m->uid);
	}
	/* RFC 7162 3.1.4.1: MODSEQ in every FETCH once CONDSTORE is on */
	if (opt->modseq && !has_item(f, IMAP_FETCH_MODSEQ)) {
		sep(b, &first);
		buf_printf(b, "MODSEQ (%llu)", (unsigned long long)m->modseq);
	}
	/* RFC 9051 6.4.5: the \Seen a BODY[] sets is reported */
	if (opt->set_flags && !has_item(f, IMAP_FETCH_FLAGS)) {
		sep(b, &first);
		fetch_flags(&c);
	}
	for (size_t i = 0; i < f->n && !o->error; i++) {
		const struct imap_fetch_item *it = &f->v[i];
		sep(b, &first);
		switch (it->kind) {
		case IMAP_FETCH_FLAGS:
			fetch_flags(&c);
			break;
		case IMAP_FETCH_INTERNALDATE:
			buf_appends(b, "INTERNALDATE ");
			/* imap_format_datetime takes minutes east (parse.c);
			 * internaldate_tz is in seconds, as the store keeps it */
			imap_format_datetime(b, m->internaldate, m->internaldate_tz / 60);
			break;
		case IMAP_FETCH_RFC822_SIZE:
			buf_printf(b, "RFC822.SIZE %llu", (unsigned long long)m->size);
			break;
		case IMAP_FETCH_ENVELOPE:
			buf_appends(b, "ENVELOPE ");
			fetch_cached(&c, mime_cache_envelope);
			break;
		case IMAP_FETCH_BODY:
			buf_appends(b, "BODY ");
			fetch_cached(&c, mime_cache_body);
			break;
		case IMAP_FETCH_BODYSTRUCTURE:
			buf_appends(b, "BODYSTRUCTURE ");
			fetch_cached(&c, mime_cache_bodystructure);
			break;
		case IMAP_FETCH_UID:
			buf_printf(b, "UID %u", m->uid);
			break;
		case IMAP_FETCH_MODSEQ:
			buf_printf(b, "MODSEQ (%llu)", (unsigned long long)m->modseq);
			break;
		case IMAP_FETCH_RFC822: /* RFC 3501 6.4.5: = BODY[] */
		case IMAP_FETCH_RFC822_HEADER:
		case IMAP_FETCH_RFC822_TEXT: {
			struct imap_fetch_item whole = {.kind = IMAP_FETCH_SECTION};
			enum mime_section w = it->kind == IMAP_FETCH_RFC822          ? MIME_SECT_BODY
					      : it->kind == IMAP_FETCH_RFC822_HEADER ? MIME_SECT_HEADER
										 : MIME_SECT_TEXT;
			buf_appends(b, it->kind == IMAP_FETCH_RFC822          ? "RFC822 "
				       : it->kind == IMAP_FETCH_RFC822_HEADER ? "RFC822.HEADER "
									      : "RFC822.TEXT ");
			fetch_section(&c, &whole, w);
			break;
		}
		case IMAP_FETCH_SECTION:
			item_label(b, it);
			buf_appendc(b, ' ');
			fetch_section(&c, it, (enum mime_section)it->what);
			break;
		case IMAP_FETCH_BINARY:
		case IMAP_FETCH_BINARY_SIZE:
			item_label(b, it);
			buf_appendc(b, ' ');
			fetch_binary(&c, it, it->kind == IMAP_FETCH_BINARY_SIZE);
			break;
		case IMAP_FETCH_EMAILID: /* RFC 8474 5.1: "EMAILID" SP "(" objectid ")" */
			buf_printf(b, "EMAILID (" IMAP_EMAILID_FMT ")", (long long)m->emailid);
			break;
		case IMAP_FETCH_THREADID:
			/* RFC 8474 5.2: NIL when the server does not compute
			 * threads for the message (here: never stored) */
			buf_appends(b, "THREADID NIL");
			break;
		case IMAP_FETCH_SAVEDATE:
			/* RFC 8514 4: the save date (kept as an instant, shown
			 * in UTC); NIL when unknown */
			buf_appends(b, "SAVEDATE ");
			if (m->savedate > 0)
				imap_format_datetime(b, m->savedate, 0);
			else
				buf_appends(b, "NIL");
			break;
		case IMAP_FETCH_PREVIEW:
			/* RFC 8970 3.2: nstring; NIL when not available (LAZY) */
			buf_appends(b, "PREVIEW ");
			if (m->preview != NULL && opt->utf8) {
				/* RFC 6855 3 / RFC 9051 4.3: UTF-8 in a quoted
				 * string once enabled; the text has no controls
				 * (mime/preview.h) */
				buf_appendc(b, '"');
				for (const char *q = m->preview; *q != '\0'; q++) {
					if (*q == '"' || *q == '\\')
						buf_appendc(b, '\\');
					buf_appendc(b, *q);
				}
				buf_appendc(b, '"');
			} else {
				imap_append_nstring(b, m->preview,
						    m->preview ? strlen(m->preview) : 0);
			}
			break;
		}
	}
	buf_free(&c.tmp);
	if (o->error) {
		/* nothing of this message is sent: undo what it appended */
		o->bytes.len = start_bytes;
		if (o->bytes.cap)
			o->bytes.data[start_bytes] = '\0';
		o->n_segs = start_segs;
		if (start_segs)
			o->segs[start_segs - 1].len = start_last_len;
		return;
	}
	buf_appends(b, ")\r\n");
	seg_bytes(&c);
}
