/* IMAP command framing (lines and literals) and the argument tree; the
 * astring/number helpers and output quoting. The grammar is RFC 9051 9
 * (formal syntax), which RFC 3501 9 shares for everything parsed here. */
#include "imap/parse.h"

#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/parse_int.h"

/* ---- reader ---- */

enum {
	RS_LINE,        /* reading line octets */
	RS_DISCARD,     /* a line over the limit: skipping to its LF */
	RS_DISCARD_LIT, /* ... and the {N+} literal it announced (lit_left) */
	RS_LITERAL,     /* reading inline literal octets (lit_left to go) */
	RS_LIT_EVENT,   /* IMAP_READ_LITERAL returned: waiting for the caller */
	RS_LIT_CHECK,   /* apply the inline limits to the announced literal */
	RS_CONT_WAIT,   /* IMAP_READ_CONTINUE returned: feeding means "+" sent */
	RS_EXTERNAL,    /* the caller streams the literal (after its "+") */
	RS_DONE,        /* IMAP_READ_COMMAND returned */
	RS_BAD,         /* IMAP_READ_BAD returned: the next feed starts afresh */
	RS_FATAL,
};

void imap_reader_init(struct imap_reader *r)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->cmd);
	/* Dovecot's default line limit is 64 KB, and imaptest's "id" test
	 * sends a 31 KB line */
	r->max_line = 65536;
	r->max_command = 262144;
	r->max_literal = 65536;
	r->max_nonsync = UINT64_MAX;
	r->state = RS_LINE;
}

static void reader_reset(struct imap_reader *r)
{
	/* A big command's buffer is given back (idle sessions stay small). */
	if (r->cmd.cap > 4096)
		buf_free(&r->cmd);
	else
		buf_reset(&r->cmd);
	r->n_lits = 0;
	r->n_inline = 0;
	if (r->cap_lits > IMAP_MAX_LITERALS) {
		/* a big MULTIAPPEND's table is given back, too */
		x_free(&r->lits);
		r->cap_lits = 0;
	}
	r->line_len = 0;
	r->lit_left = 0;
	r->lit_len = 0;
	r->lit_sync = r->lit_binary = false;
	r->discarding = false;
	r->lit_external_ok = false;
	r->tail_len = 0;
	r->state = RS_LINE;
}

void imap_reader_next(struct imap_reader *r)
{
	r->error = NULL;
	r->error_toobig = false;
	reader_reset(r);
}

void imap_reader_free(struct imap_reader *r)
{
	buf_free(&r->cmd);
	x_free(&r->lits);
	r->cap_lits = 0;
	r->n_lits = 0;
	r->n_inline = 0;
	r->state = RS_LINE;
}

void imap_reader_refuse(struct imap_reader *r)
{
	x_assert(r->state == RS_CONT_WAIT || r->state == RS_LIT_EVENT);
	if (!r->lit_sync) {
		/* a {N+} cannot be refused: its octets are on their way
		 * (RFC 7888 4); the connection cannot be resynchronised */
		r->error = "Literal refused";
		r->error_toobig = true;
		r->state = RS_FATAL;
		return;
	}
	imap_reader_next(r);
}

void imap_reader_inline(struct imap_reader *r)
{
	x_assert(r->state == RS_LIT_EVENT);
	r->lit_external_ok = false;
	r->state = RS_LIT_CHECK;
}

/* A new entry of r->lits. Streamed literals are not counted against
 * IMAP_MAX_LITERALS: each costs its announcement's octets of the command
 * (max_command), and the caller keeps its octets. */
static struct imap_lit *lit_add(struct imap_reader *r)
{
	if (r->n_lits == r->cap_lits) {
		r->cap_lits = r->cap_lits ? r->cap_lits * 2 : 8;
		r->lits = xrealloc(r->lits, r->cap_lits * sizeof *r->lits);
	}
	return &r->lits[r->n_lits++];
}

void imap_reader_external_done(struct imap_reader *r)
{
	x_assert(r->state == RS_LIT_EVENT || r->state == RS_EXTERNAL);
	struct imap_lit *l = lit_add(r);
	l->off = r->cmd.len;
	l->len = (size_t)r->lit_len;
	l->binary = r->lit_binary;
	l->external = true;
	r->lit_external_ok = false;
	r->line_len = 0;
	r->state = RS_LINE;
}

const char *imap_reader_tag(const struct imap_reader *r, size_t *len_r)
{
	size_t n = 0;

	while (n < r->cmd.len && imap_is_tag_char((unsigned char)r->cmd.data[n]))
		n++;
	if (n == 0 || n >= r->cmd.len || r->cmd.data[n] != ' ')
		return NULL;
	*len_r = n;
	return r->cmd.data;
}

/* A line ending in "{N}", "{N+}", "~{N}" or "~{N+}" (RFC 9051 9 literal,
 * RFC 7888 literal+, RFC 3516 literal8): 1 with the values, else 0. A number
 * too big for 64 bits is reported as UINT64_MAX (over every limit). */
static int literal_announced(const char *line, size_t n, uint64_t *len_r, bool *sync_r,
                             bool *binary_r)
{
	if (n < 3 || line[n - 1] != '}')
		return 0;
	size_t e = n - 1; /* the '}' */
	bool sync = true;
	if (line[e - 1] == '+') {
		sync = false;
		e--;
	}
	size_t d = e;
	while (d > 0 && line[d - 1] >= '0' && line[d - 1] <= '9')
		d--;
	if (d == e || d == 0 || line[d - 1] != '{')
		return 0;
	uint64_t v = 0;
	for (size_t i = d; i < e; i++) {
		unsigned dig = (unsigned)(line[i] - '0');
		if (v > (UINT64_MAX - dig) / 10) {
			v = UINT64_MAX;
			break;
		}
		v = v * 10 + dig;
	}
	*len_r = v;
	*sync_r = sync;
	*binary_r = d >= 2 && line[d - 2] == '~';
	return 1;
}

/* The inline limits for the announced literal (RFC 9051 4.3, RFC 7888 4). */
static enum imap_read_result literal_check(struct imap_reader *r)
{
	uint64_t room = r->max_command > r->cmd.len ? r->max_command - r->cmd.len : 0;
	bool many = r->n_inline >= IMAP_MAX_LITERALS;
	bool over = r->lit_len > r->max_literal || r->lit_len > room || many;

	if (!r->lit_sync && (over || r->lit_len > r->max_nonsync)) {
		r->error = many ? "Too many literals in command" : "Literal too big";
		r->error_toobig = !many;
		r->state = RS_FATAL;
		return IMAP_READ_FATAL;
	}
	if (over) {
		/* A refused synchronising literal is never sent (RFC 9051
		 * 4.3): the command is dropped here, its octets not awaited. */
		r->error = many ? "Too many literals in command" : "Literal too big";
		r->error_toobig = !many;
		r->state = RS_BAD;
		return IMAP_READ_BAD;
	}
	r->lit_start = r->cmd.len;
	r->lit_left = r->lit_len;
	if (r->lit_sync) {
		r->state = RS_CONT_WAIT;
		return IMAP_READ_CONTINUE;
	}
	r->state = RS_LITERAL;
	return IMAP_READ_MORE;
}

/* A line ended (its LF consumed; the CR, if any, dropped from cmd). */
static enum imap_read_result line_end(struct imap_reader *r)
{
	size_t start = r->cmd.len - r->line_len;
	uint64_t n;
	bool sync, binary;

	if (!literal_announced(r->cmd.data + start, r->line_len, &n, &sync, &binary)) {
		r->state = RS_DONE;
		return IMAP_READ_COMMAND;
	}
	r->lit_len = n;
	r->lit_sync = sync;
	r->lit_binary = binary;
	r->line_len = 0;
	if (r->want_literal_events) {
		if (!sync && n > r->max_nonsync) {
			r->error = "Literal too big";
			r->error_toobig = true;
			r->state = RS_FATAL;
			return IMAP_READ_FATAL;
		}
		r->lit_external_ok = true;
		r->state = RS_LIT_EVENT;
		return IMAP_READ_LITERAL;
	}
	return literal_check(r);
}

/* Keeps the last octets of an over-long line. */
static void tail_add(struct imap_reader *r, const char *p, size_t n)
{
	size_t cap = sizeof r->tail;
	if (n >= cap) {
		memcpy(r->tail, p + n - cap, cap);
		r->tail_len = (unsigned char)cap;
		return;
	}
	size_t keep = r->tail_len + n > cap ? cap - n : r->tail_len;
	memmove(r->tail, r->tail + r->tail_len - keep, keep);
	memcpy(r->tail + keep, p, n);
	r->tail_len = (unsigned char)(keep + n);
}

/* The LF of an over-long line: if it announced a {N+}, its octets follow
 * whatever we answer (RFC 7888 4), so they are skipped (0) to stay in step
 * with the client, or, over the literal limits, the reader is fatal. A {N}
 * is never sent once the command is refused (RFC 9051 4.3). -1: done. */
static int discarded_line_end(struct imap_reader *r)
{
	uint64_t n;
	bool sync, binary;
	size_t len = r->tail_len;
	if (len > 0 && r->tail[len - 1] == '\r')
		len--;
	r->tail_len = 0;
	if (!literal_announced(r->tail, len, &n, &sync, &binary) || sync)
		return -1;
	if (n > r->max_literal || n > r->max_nonsync) {
		r->error_toobig = true;
		r->state = RS_FATAL;
		return -1;
	}
	r->lit_left = n;
	r->state = n > 0 ? RS_DISCARD_LIT : RS_DISCARD;
	return 0;
}

enum imap_read_result imap_reader_feed(struct imap_reader *r, struct buf *in)
{
	size_t i = 0;
	enum imap_read_result res = IMAP_READ_MORE;

	switch (r->state) {
	case RS_DONE:
		return IMAP_READ_COMMAND;
	case RS_FATAL:
		return IMAP_READ_FATAL;
	case RS_LIT_EVENT:
		return IMAP_READ_LITERAL;
	case RS_BAD:
		imap_reader_next(r);
		break;
	case RS_CONT_WAIT:
		/* the caller sent "+ ...": the octets come now */
		r->state = RS_LITERAL;
		break;
	case RS_LIT_CHECK:
		res = literal_check(r);
		if (res != IMAP_READ_MORE)
			return res;
		break;
	default:
		break;
	}

	while (i < in->len) {
		const char *p = in->data + i;
		size_t avail = in->len - i;

		if (r->state == RS_DISCARD_LIT) {
			size_t skip = avail < r->lit_left ? avail : (size_t)r->lit_left;
			i += skip;
			r->lit_left -= skip;
			if (r->lit_left == 0)
				r->state = RS_DISCARD;
			continue;
		}
		if (r->state == RS_LITERAL) {
			size_t take = avail < r->lit_left ? avail : (size_t)r->lit_left;
			buf_append(&r->cmd, p, take);
			i += take;
			r->lit_left -= take;
			if (r->lit_left == 0) {
				struct imap_lit *l = lit_add(r);
				r->n_inline++;
				l->off = r->lit_start;
				l->len = (size_t)r->lit_len;
				l->binary = r->lit_binary;
				l->external = false;
				r->line_len = 0;
				r->state = RS_LINE;
			}
			continue;
		}
		const char *lf = memchr(p, '\n', avail);
		size_t n = lf != NULL ? (size_t)(lf - p) : avail;

		if (r->state == RS_DISCARD) {
			i += lf != NULL ? n + 1 : n;
			tail_add(r, p, n);
			if (lf == NULL)
				continue;
			if (discarded_line_end(r) == 0)
				continue; /* skip its {N+} literal, then the rest */
			if (r->state == RS_FATAL) {
				res = IMAP_READ_FATAL;
				break;
			}
			/* the over-long line is gone, up to its LF: report once */
			r->state = RS_BAD;
			res = IMAP_READ_BAD;
			break;
		}
		/* RS_LINE: the line's octets, limits checked before storing */
		size_t keep = n;
		if (lf != NULL && n > 0 && p[n - 1] == '\r')
			keep = n - 1; /* CRLF; a bare LF is tolerated */
		else if (lf == NULL && n > 0 && p[n - 1] == '\r')
			keep = n - 1; /* maybe a CR of CRLF: counted when the LF comes */
		size_t line_room = r->max_line > r->line_len ? r->max_line - r->line_len : 0;
		size_t cmd_room = r->max_command > r->cmd.len ? r->max_command - r->cmd.len : 0;
		if (keep > line_room || keep > cmd_room) {
			/* which limit binds does not depend on how the
			 * input was split: both rooms shrink together */
			r->error = line_room < cmd_room ? "Line too long" : "Command too long";
			r->error_toobig = false;
			/* keep what fits so that the tag can still be read */
			size_t fit = line_room < cmd_room ? line_room : cmd_room;
			buf_append(&r->cmd, p, fit);
			r->line_len += fit;
			r->state = RS_DISCARD;
			/* the tail so far: the line's octets held in cmd, which
			 * the DISCARD state sees again from p on */
			r->tail_len = 0;
			tail_add(r, r->cmd.data + r->cmd.len - r->line_len, r->line_len - fit);
			continue; /* the DISCARD state consumes from p on */
		}
		if (lf == NULL) {
			/* A lone trailing CR stays in the input until the next
			 * octet shows whether it ends the line. */
			buf_append(&r->cmd, p, keep);
			r->line_len += keep;
			i += keep;
			if (keep < n && i + 1 == in->len && keep == n - 1)
				break;
			continue;
		}
		buf_append(&r->cmd, p, keep);
		r->line_len += keep;
		i += n + 1;
		res = line_end(r);
		if (res != IMAP_READ_MORE)
			break;
	}
	buf_consume(in, i);
	return res;
}

/* ---- character classes (RFC 9051 9) ---- */

/* ATOM-CHAR: any CHAR except atom-specials ("(" ")" "{" SP CTL "%" "*"
 * DQUOTE "\" "]"). */
bool imap_is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

/* ASTRING-CHAR = ATOM-CHAR / resp-specials */
bool imap_is_astring_char(unsigned char c)
{
	return c == ']' || imap_is_atom_char(c);
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
bool imap_is_tag_char(unsigned char c)
{
	return c != '+' && imap_is_astring_char(c);
}

/* Characters accepted in an atom of the argument tree: ATOM-CHAR plus
 * list-wildcards (list-mailbox, "*" of sequence sets), resp-specials
 * (astring) and "\" (flags). Each typed helper checks its own grammar. */
static bool arg_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

/* Length of a valid UTF-8 sequence at s (at most n octets), 0 if invalid
 * (RFC 3629 4: no overlongs, no surrogates, at most U+10FFFF). */
size_t imap_utf8_len(const unsigned char *s, size_t n)
{
	if (n == 0)
		return 0;
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp, min;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, cp = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, cp = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool imap_utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t u = imap_utf8_len((const unsigned char *)s + i, n - i);
		if (u == 0)
			return false;
		i += u;
	}
	return true;
}

/* ---- arena for the argument tree ---- */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(16) char data[];
};

void *imap_arena_alloc(void **mem, size_t n)
{
	struct chunk *c = *mem;
	n = (n + 15) & ~(size_t)15;
	if (c == NULL || c->cap - c->used < n) {
		size_t cap = n > 2048 ? n : 2048;
		struct chunk *nc = xmalloc(sizeof *nc + cap);
		nc->used = 0;
		nc->cap = cap;
		if (c != NULL && n > 2048) {
			/* a big block goes behind the current chunk */
			nc->next = c->next;
			c->next = nc;
		} else {
			nc->next = c;
			*mem = nc;
		}
		c = nc;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

char *imap_arena_strndup(void **mem, const char *s, size_t n)
{
	char *p = imap_arena_alloc(mem, n + 1);
	if (n > 0)
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void imap_arena_free(void **mem)
{
	struct chunk *c = *mem;
	while (c != NULL) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	*mem = NULL;
}

/* ---- the argument tree ---- */

struct pctx {
	const char *s;
	size_t len;
	const struct imap_lit *lits;
	size_t n_lits, k;    /* next literal */
	size_t pos, seg_end; /* the current segment ends where literal k starts */
	void **mem;
	const char *err;
	struct buf tmp;
};

static void seg_update(struct pctx *p)
{
	p->seg_end = p->k < p->n_lits ? p->lits[p->k].off : p->len;
}

struct argv {
	struct imap_arg *v;
	size_t n, cap;
};

static struct imap_arg *argv_add(struct argv *av)
{
	if (av->n == av->cap) {
		av->cap = av->cap ? av->cap * 2 : 8;
		av->v = xrealloc(av->v, av->cap * sizeof *av->v);
	}
	struct imap_arg *a = &av->v[av->n++];
	memset(a, 0, sizeof *a);
	return a;
}

static int parse_quoted(struct pctx *p, struct imap_arg *a)
{
	/* quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR = <any TEXT-CHAR
	 * except quoted-specials> / "\" quoted-specials / UTF8-2/3/4
	 * (RFC 9051 9; RFC 3501 allows only 7-bit). */
	size_t i = p->pos + 1;
	buf_reset(&p->tmp);
	while (i < p->seg_end) {
		unsigned char c = (unsigned char)p->s[i];
		if (c == '"') {
			a->type = IMAP_ARG_QUOTED;
			a->len = p->tmp.len;
			a->str =
			    imap_arena_strndup(p->mem, p->tmp.data ? p->tmp.data : "", p->tmp.len);
			p->pos = i + 1;
			return 0;
		}
		if (c == '\\') {
			if (i + 1 >= p->seg_end || (p->s[i + 1] != '\\' && p->s[i + 1] != '"')) {
				p->err = "Invalid escape in quoted string";
				return -1;
			}
			buf_appendc(&p->tmp, p->s[i + 1]);
			i += 2;
			continue;
		}
		if (c == '\0' || c == '\r' || c == '\n') {
			p->err = "Invalid character in quoted string";
			return -1;
		}
		if (c >= 0x80) {
			size_t u = imap_utf8_len((const unsigned char *)p->s + i, p->seg_end - i);
			if (u == 0) {
				p->err = "Invalid 8-bit character in quoted string";
				return -1;
			}
			buf_append(&p->tmp, p->s + i, u);
			i += u;
			continue;
		}
		buf_appendc(&p->tmp, (char)c);
		i++;
	}
	p->err = p->k < p->n_lits ? "Literal inside a quoted string" : "Missing '\"'";
	return -1;
}

static int parse_literal(struct pctx *p, struct imap_arg *a)
{
	size_t i = p->pos;
	bool binary = false;
	if (p->s[i] == '~') {
		binary = true;
		i++;
	}
	/* the announcement must end the segment, with literal k after it */
	if (p->k >= p->n_lits) {
		p->err = "Invalid literal";
		return -1;
	}
	const struct imap_lit *l = &p->lits[p->k];
	i++; /* '{' */
	uint64_t v = 0;
	size_t d = i;
	while (i < p->seg_end && p->s[i] >= '0' && p->s[i] <= '9') {
		if (v > (UINT64_MAX - 9) / 10) {
			p->err = "Invalid literal";
			return -1;
		}
		v = v * 10 + (uint64_t)(p->s[i] - '0');
		i++;
	}
	if (i == d || i >= p->seg_end) {
		p->err = "Invalid literal";
		return -1;
	}
	if (p->s[i] == '+')
		i++;
	if (i + 1 != p->seg_end || p->s[i] != '}' || v != l->len || binary != l->binary) {
		p->err = "Invalid literal";
		return -1;
	}
	a->type = IMAP_ARG_LITERAL;
	a->binary = binary;
	a->external = l->external;
	a->len = l->len;
	if (l->external) {
		a->str = "";
		p->pos = l->off;
	} else {
		a->str = imap_arena_strndup(p->mem, p->s + l->off, l->len);
		p->pos = l->off + l->len;
	}
	p->k++;
	seg_update(p);
	return 0;
}

/* Whether an atom's '[' at i opens a section that closes with ']' within the
 * segment: inside it, spaces and parentheses are part of the atom
 * (BODY[HEADER.FIELDS (A B)]). Returns the index after ']', or 0. */
static size_t bracket_end(const struct pctx *p, size_t i)
{
	for (size_t j = i + 1; j < p->seg_end; j++) {
		unsigned char c = (unsigned char)p->s[j];
		if (c == ']')
			return j + 1;
		if (c < 0x20 || c >= 0x7f || c == '[' || c == '{')
			return 0;
	}
	return 0;
}

static int parse_atom(struct pctx *p, struct imap_arg *a)
{
	size_t i = p->pos;
	while (i < p->seg_end) {
		unsigned char c = (unsigned char)p->s[i];
		if (c == '[') {
			size_t e = bracket_end(p, i);
			i = e ? e : i + 1;
			continue;
		}
		if (!arg_atom_char(c))
			break;
		i++;
	}
	if (i == p->pos) {
		p->err = "Invalid character in argument";
		return -1;
	}
	if (i < p->seg_end && p->s[i] != ' ' && p->s[i] != ')') {
		p->err = p->s[i] == '{' ? "Invalid literal" : "Invalid character in atom";
		return -1;
	}
	a->len = i - p->pos;
	a->str = imap_arena_strndup(p->mem, p->s + p->pos, a->len);
	a->type = a->len == 3 && strcasecmp(a->str, "NIL") == 0 ? IMAP_ARG_NIL : IMAP_ARG_ATOM;
	p->pos = i;
	return 0;
}

static struct imap_arg *parse_list(struct pctx *p, unsigned depth, bool inner)
{
	struct argv av = {NULL, 0, 0};
	bool need_sep = false;
	struct imap_arg *res = NULL;

	for (;;) {
		bool had_space = false;
		while (p->pos < p->seg_end && p->s[p->pos] == ' ') {
			p->pos++;
			had_space = true;
		}
		if (p->pos >= p->seg_end) {
			if (p->k < p->n_lits) {
				p->err = "Invalid literal";
				goto fail;
			}
			if (inner) {
				p->err = "Missing ')'";
				goto fail;
			}
			break;
		}
		char c = p->s[p->pos];
		if (c == ')') {
			if (!inner) {
				p->err = "Unexpected ')'";
				goto fail;
			}
			p->pos++;
			break;
		}
		if (need_sep && !had_space) {
			p->err = "Missing space between arguments";
			goto fail;
		}
		struct imap_arg *a = argv_add(&av);
		if (c == '(') {
			if (depth + 1 > IMAP_MAX_DEPTH) {
				p->err = "Too deep nesting of lists";
				goto fail;
			}
			p->pos++;
			struct imap_arg *sub = parse_list(p, depth + 1, true);
			if (sub == NULL)
				goto fail;
			a = &av.v[av.n - 1]; /* av.v may have moved? no: not touched */
			a->type = IMAP_ARG_LIST;
			a->list = sub;
			a->str = "";
			for (a->len = 0; sub[a->len].type != IMAP_ARG_EOL; a->len++)
				;
		} else if (c == '"') {
			if (parse_quoted(p, a) < 0)
				goto fail;
		} else if (c == '{' ||
		           (c == '~' && p->pos + 1 < p->seg_end && p->s[p->pos + 1] == '{')) {
			if (parse_literal(p, a) < 0)
				goto fail;
		} else if (parse_atom(p, a) < 0) {
			goto fail;
		}
		need_sep = true;
	}
	struct imap_arg *eol = argv_add(&av);
	eol->type = IMAP_ARG_EOL;
	eol->str = "";
	res = imap_arena_alloc(p->mem, av.n * sizeof *res);
	memcpy(res, av.v, av.n * sizeof *res);
fail:
	free(av.v);
	return res;
}

int imap_parse_command(const struct imap_reader *r, struct imap_args *a, const char **err_r)
{
	struct pctx p = {0};
	memset(a, 0, sizeof *a);
	p.s = r->cmd.data ? r->cmd.data : "";
	p.len = r->cmd.len;
	p.lits = r->lits;
	p.n_lits = r->n_lits;
	p.mem = &a->mem;
	seg_update(&p);

	/* tag SP */
	size_t i = 0;
	while (i < p.seg_end && imap_is_tag_char((unsigned char)p.s[i]))
		i++;
	if (p.len == 0) {
		*err_r = "Empty command";
		return -1;
	}
	if (i == p.len && p.n_lits == 0) {
		a->tag = imap_arena_strndup(p.mem, p.s, i);
		*err_r = "Missing command";
		return -1;
	}
	if (i == 0 || i >= p.seg_end || p.s[i] != ' ') {
		*err_r = "Invalid tag";
		return -1;
	}
	a->tag = imap_arena_strndup(p.mem, p.s, i);
	i++;
	/* command name: an atom, case-insensitive; "UID" joins the next */
	struct buf name = BUF_INIT;
	for (int word = 0; word < 2; word++) {
		size_t st = i;
		while (i < p.seg_end && imap_is_atom_char((unsigned char)p.s[i]))
			i++;
		if (i == st || (i < p.seg_end && p.s[i] != ' ')) {
			*err_r = i == st ? "Missing command" : "Invalid command name";
			buf_free(&name);
			return -1;
		}
		if (word == 1)
			buf_appendc(&name, ' ');
		for (size_t j = st; j < i; j++) {
			char c = p.s[j];
			buf_appendc(&name, c >= 'a' && c <= 'z' ? (char)(c - 32) : c);
		}
		if (word == 0 && strcmp(name.data, "UID") == 0 && i < p.seg_end) {
			i++;
			continue;
		}
		break;
	}
	a->name = imap_arena_strndup(p.mem, name.data, name.len);
	buf_free(&name);
	if (strcmp(a->name, "UID") == 0) {
		*err_r = "Missing UID command";
		return -1;
	}
	p.pos = i;
	a->args = parse_list(&p, 0, false);
	buf_free(&p.tmp);
	if (a->args == NULL) {
		*err_r = p.err;
		return -1;
	}
	return 0;
}

void imap_args_free(struct imap_args *a)
{
	imap_arena_free(&a->mem);
	a->tag = a->name = NULL;
	a->args = NULL;
}

/* ---- typed values ---- */

bool imap_arg_astring(const struct imap_arg *a, const char **s_r, size_t *len_r)
{
	switch (a->type) {
	case IMAP_ARG_ATOM:
		for (size_t i = 0; i < a->len; i++)
			if (!imap_is_astring_char((unsigned char)a->str[i]))
				return false;
		break;
	case IMAP_ARG_NIL:
	case IMAP_ARG_QUOTED:
		break;
	case IMAP_ARG_LITERAL:
		if (a->binary || a->external || memchr(a->str, '\0', a->len) != NULL)
			return false;
		break;
	default:
		return false;
	}
	*s_r = a->str;
	*len_r = a->len;
	return true;
}

bool imap_arg_string(const struct imap_arg *a, const char **s_r, size_t *len_r)
{
	if (a->type != IMAP_ARG_QUOTED && a->type != IMAP_ARG_LITERAL)
		return false;
	if (a->binary || a->external)
		return false;
	*s_r = a->str;
	*len_r = a->len;
	return true;
}

bool imap_arg_atom_is(const struct imap_arg *a, const char *upper)
{
	if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NIL)
		return false;
	return strlen(upper) == a->len && strcasecmp(a->str, upper) == 0;
}

bool imap_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *n_r)
{
	uint64_t v = 0;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*n_r = v;
	return true;
}

bool imap_arg_number(const struct imap_arg *a, uint32_t *n_r)
{
	uint64_t v;
	if (a->type != IMAP_ARG_ATOM || !imap_parse_u64(a->str, a->len, UINT32_MAX, &v))
		return false;
	*n_r = (uint32_t)v;
	return true;
}

/* mod-sequence-value: 63-bit (RFC 7162 7) */
bool imap_arg_number64(const struct imap_arg *a, uint64_t *n_r)
{
	if (a->type != IMAP_ARG_ATOM)
		return false;
	return imap_parse_u64(a->str, a->len, INT64_MAX, n_r);
}

/* ---- output ---- */

static bool quotable(const char *s, size_t len)
{
	/* TEXT-CHAR, 7-bit: 8-bit text goes as a literal, which every client
	 * accepts (RFC 3501 4.3); quoted UTF-8 is for IMAP4rev2 only. */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c == '\r' || c == '\n' || c >= 0x80)
			return false;
	}
	return len <= 1024;
}

void imap_append_string(struct buf *out, const char *s, size_t len)
{
	if (!quotable(s, len)) {
		buf_printf(out, "{%zu}\r\n", len);
		buf_append(out, s, len);
		return;
	}
	buf_reserve(out, len + 2);
	buf_appendc(out, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_appendc(out, '\\');
		buf_appendc(out, s[i]);
	}
	buf_appendc(out, '"');
}

void imap_append_astring(struct buf *out, const char *s, size_t len)
{
	bool atom = len > 0 && !(len == 3 && strncasecmp(s, "NIL", 3) == 0);
	for (size_t i = 0; atom && i < len; i++)
		atom = imap_is_astring_char((unsigned char)s[i]);
	if (atom)
		buf_append(out, s, len);
	else
		imap_append_string(out, s, len);
}

void imap_append_nstring(struct buf *out, const char *s, size_t len)
{
	if (s == NULL)
		buf_appends(out, "NIL");
	else
		imap_append_string(out, s, len);
}
