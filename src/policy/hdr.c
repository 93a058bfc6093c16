/* The streaming header-section reader (hdr.h). One field is held at a time:
 * a field is complete only when the next line does not begin with WSP (RFC
 * 5322 2.2.3), so the reader hands a field out when it sees the first octet
 * of the following line, or the empty line that ends the header. */
#include "policy/hdr.h"

#include <string.h>
#include <strings.h>

enum {
	S_SOL,    /* at the start of a line */
	S_CR_SOL, /* a CR at the start of a line: the empty line, or not */
	S_LINE,   /* inside a line */
};

void hdr_reader_init(struct hdr_reader *r, size_t max_field, size_t max_fields,
		     hdr_field_fn *on_field, hdr_body_fn *on_body, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->on_field = on_field;
	r->on_body = on_body;
	r->arg = arg;
	r->max_field = max_field;
	r->max_fields = max_fields;
	buf_init(&r->cur);
	r->state = S_SOL;
}

void hdr_reader_free(struct hdr_reader *r)
{
	buf_free(&r->cur);
}

static void append(struct hdr_reader *r, const char *p, size_t n)
{
	if (r->stopped)
		return;
	size_t room = r->cur.len < r->max_field ? r->max_field - r->cur.len : 0;
	if (n > room) {
		r->cur_truncated = true;
		n = room;
	}
	buf_append(&r->cur, p, n);
}

/* The name: up to the colon of the first line, without trailing WSP. */
static size_t name_len(const char *p, size_t len)
{
	size_t i = 0;
	while (i < len && p[i] != ':' && p[i] != '\r' && p[i] != '\n')
		i++;
	if (i == len || p[i] != ':')
		return 0;
	size_t n = i;
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0 || p[0] == ' ' || p[0] == '\t')
		return 0;
	return n;
}

/* Hands out the field held, if any. */
static void emit(struct hdr_reader *r)
{
	if (r->cur.len == 0 || r->stopped) {
		buf_reset(&r->cur);
		r->cur_truncated = false;
		return;
	}
	struct hdr_field f = {
		.raw = r->cur.data,
		.len = r->cur.len,
		.name_len = name_len(r->cur.data, r->cur.len),
		.truncated = r->cur_truncated,
		.over_limit = r->n_fields >= r->max_fields,
	};
	r->n_fields++;
	if (!r->on_field(r->arg, &f))
		r->stopped = true;
	buf_reset(&r->cur);
	r->cur_truncated = false;
}

static void body_starts(struct hdr_reader *r)
{
	emit(r);
	r->in_body = true;
}

void hdr_reader_feed(struct hdr_reader *r, const char *p, size_t n)
{
	const char *end = p + n;

	while (p < end && !r->in_body) {
		switch (r->state) {
		case S_SOL:
			if (*p == ' ' || *p == '\t') {
				/* a continuation; before any field it starts a malformed one */
			} else if (*p == '\r') {
				r->state = S_CR_SOL;
				p++;
				continue;
			} else if (*p == '\n') {
				body_starts(r); /* a bare LF line: lenient */
				p++;
				continue;
			} else {
				emit(r);
			}
			r->state = S_LINE;
			break;
		case S_CR_SOL:
			if (*p == '\n') {
				body_starts(r);
				p++;
				continue;
			}
			/* a line beginning with a lone CR: not a field */
			emit(r);
			append(r, "\r", 1);
			r->state = S_LINE;
			break;
		case S_LINE: {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *stop = nl ? nl + 1 : end;
			append(r, p, (size_t)(stop - p));
			p = stop;
			if (nl)
				r->state = S_SOL;
			break;
		}
		}
	}
	if (p < end && r->on_body != NULL)
		r->on_body(r->arg, p, (size_t)(end - p));
}

void hdr_reader_end(struct hdr_reader *r)
{
	if (r->in_body)
		return;
	if (r->state == S_CR_SOL)
		append(r, "\r", 1);
	emit(r);
	r->in_body = true;
}

bool hdr_is(const struct hdr_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->name_len == n && strncasecmp(f->raw, name, n) == 0;
}

const char *hdr_value(const struct hdr_field *f, size_t *len_r)
{
	const char *colon = f->name_len ? memchr(f->raw, ':', f->len) : NULL;
	if (colon == NULL) {
		*len_r = 0;
		return f->raw + f->len;
	}
	*len_r = f->len - (size_t)(colon + 1 - f->raw);
	return colon + 1;
}
