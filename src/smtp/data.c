/* DATA / BDAT content decoder. See data.h.
 *
 * Two layers per byte: the raw layer (line ends, dot-unstuffing, the
 * terminator, bare CR/LF and line length) hands content bytes to the header
 * layer, which classifies each line of the header section from its first
 * few bytes (held in pfx) and writes the missing header lines at the end of
 * the section. Output is gathered in a stack buffer and handed out in runs. */
#include "smtp/data.h"

#include <string.h>

#include "mime/header.h"

struct obuf {
	struct smtp_data *d;
	size_t n;
	char b[4096];
};

static void ob_flush(struct obuf *o)
{
	if (o->n == 0)
		return;
	o->d->out(o->d->arg, o->b, o->n);
	o->d->out_bytes += o->n;
	o->n = 0;
}

static void ob_put(struct obuf *o, const char *p, size_t n)
{
	while (n > 0) {
		if (o->n == sizeof(o->b))
			ob_flush(o);
		size_t k = sizeof(o->b) - o->n;
		if (k > n)
			k = n;
		memcpy(o->b + o->n, p, k);
		o->n += k;
		p += k;
		n -= k;
	}
}

static inline void ob_putc(struct obuf *o, char c)
{
	if (o->n == sizeof(o->b))
		ob_flush(o);
	o->b[o->n++] = c;
}

void smtp_data_init(struct smtp_data *d, enum smtp_data_mode mode, size_t max_line,
		    smtp_data_out_cb *out, void *arg)
{
	memset(d, 0, sizeof(*d));
	d->mode = mode;
	d->max_line = max_line;
	d->out = out;
	d->arg = arg;
	/* The first byte starts a line (DATA's own CRLF precedes it). */
	d->bol = true;
	d->in_headers = true;
	d->hcollect = true;
}

void smtp_data_set_insert(struct smtp_data *d, const char *msgid_line, const char *date_line)
{
	d->ins_msgid = msgid_line;
	d->ins_date = date_line;
}

bool smtp_data_bad_eol(const struct smtp_data *d)
{
	return d->bare_cr || d->bare_lf;
}

/* Writes the header lines the message lacks (submission, RFC 6409 8.2/8.3). */
static void hdr_insert_missing(struct smtp_data *d, struct obuf *o)
{
	if (!d->saw_msgid && d->ins_msgid != NULL)
		ob_put(o, d->ins_msgid, strlen(d->ins_msgid));
	if (!d->saw_date && d->ins_date != NULL)
		ob_put(o, d->ins_date, strlen(d->ins_date));
}

enum hclass { H_WAIT, H_FIELD, H_BLANK, H_OTHER };

static bool is_ftext(unsigned char c)
{
	/* RFC 5322 3.6.8: ftext = %d33-57 / %d59-126 */
	return c >= 33 && c <= 126 && c != ':';
}

/* Classifies the held line start after its newest byte c was appended. */
static enum hclass hdr_classify(struct smtp_data *d, unsigned char c)
{
	if (d->pfx_len == 1) {
		if (c == ' ' || c == '\t')
			return H_FIELD; /* folded continuation of the previous field */
		if (c == '\r' || is_ftext(c))
			return H_WAIT;
		return H_OTHER;
	}
	if (d->pfx[0] == '\r')
		return c == '\n' ? H_BLANK : H_OTHER;
	if (c == ':')
		return H_FIELD;
	if (c == ' ' || c == '\t') {
		d->hwsp = true;
		return H_WAIT;
	}
	if (is_ftext(c) && !d->hwsp)
		return H_WAIT;
	return H_OTHER;
}

static void hdr_byte(struct smtp_data *d, struct obuf *o, unsigned char c)
{
	if (!d->in_headers) {
		ob_putc(o, (char)c);
		return;
	}
	if (!d->hcollect) {
		ob_putc(o, (char)c);
		if (c == '\n' && d->hprev == '\r') {
			d->hcollect = true;
			d->pfx_len = 0;
			d->hwsp = false;
		}
		d->hprev = c;
		return;
	}
	d->pfx[d->pfx_len++] = (char)c;
	d->hprev = c;
	enum hclass k = hdr_classify(d, c);
	if (k == H_WAIT && d->pfx_len == sizeof(d->pfx))
		k = H_FIELD; /* a very long field name: not one we look for */
	switch (k) {
	case H_WAIT:
		return;
	case H_FIELD:
		if (header_is(d->pfx, d->pfx_len, "Message-ID"))
			d->saw_msgid = true;
		else if (header_is(d->pfx, d->pfx_len, "Date"))
			d->saw_date = true;
		break;
	case H_BLANK:
		hdr_insert_missing(d, o);
		d->in_headers = false;
		d->saw_eoh = true;
		break;
	case H_OTHER:
		/* Body text without a separating blank line: end the header
		 * section here and supply the blank line it lacks. */
		if (d->ins_msgid != NULL || d->ins_date != NULL) {
			hdr_insert_missing(d, o);
			ob_put(o, "\r\n", 2);
		}
		d->in_headers = false;
		break;
	}
	d->hcollect = false;
	ob_put(o, d->pfx, d->pfx_len);
	d->pfx_len = 0;
}

/* End of content: the header section, if still open, gets its insertions. */
static void hdr_end(struct smtp_data *d, struct obuf *o)
{
	if (!d->in_headers)
		return;
	if (d->pfx_len > 0) {
		ob_put(o, d->pfx, d->pfx_len);
		d->hprev = (unsigned char)d->pfx[d->pfx_len - 1];
		d->pfx_len = 0;
		d->hcollect = false;
	}
	/* Nothing missing: the content stays as sent, without a CRLF added. */
	if ((d->saw_msgid || d->ins_msgid == NULL) && (d->saw_date || d->ins_date == NULL))
		return;
	/* Only BDAT content can end inside a line; close it first. */
	if (!d->hcollect && !(d->hprev == '\n'))
		ob_put(o, "\r\n", 2);
	hdr_insert_missing(d, o);
	d->in_headers = false;
}

/* The raw layer's normal path for one byte (not a leading dot). */
static inline void raw_byte(struct smtp_data *d, struct obuf *o, unsigned char c)
{
	if (d->cr) {
		if (c != '\n')
			d->bare_cr = true;
	} else if (c == '\n') {
		d->bare_lf = true;
	}
	/* RFC 5321 4.1.1.4: only CRLF ends a line; a bare LF starts nothing. */
	d->bol = d->cr && c == '\n';
	d->cr = c == '\r';
	if (c == '\n')
		d->line_len = 0;
	hdr_byte(d, o, c);
}

/* Fast path: inside a line (not at its start, no CR pending, no header
 * field name being collected), a run of bytes other than CR and LF changes no
 * state but the line length, so it is copied whole instead of byte by byte. */
static size_t plain_run(struct smtp_data *d, struct obuf *o, const char *p, size_t n)
{
	if (d->dot != 0 || d->bol || d->cr || (d->in_headers && d->hcollect))
		return 0;
	size_t k = 0;
	while (k < n && p[k] != '\r' && p[k] != '\n')
		k++;
	if (k == 0)
		return 0;
	d->line_len += k;
	if (d->line_len > d->max_line)
		d->long_line = true;
	if (d->in_headers)
		d->hprev = (unsigned char)p[k - 1];
	ob_put(o, p, k);
	return k;
}

int smtp_data_feed(struct smtp_data *d, const char *p, size_t n, size_t *used_r)
{
	struct obuf o;
	size_t i;

	o.d = d;
	o.n = 0;
	for (i = 0; i < n; i++) {
		size_t run = plain_run(d, &o, p + i, n - i);
		if (run > 0) {
			i += run - 1; /* the loop adds the last one */
			continue;
		}
		unsigned char c = (unsigned char)p[i];

		/* RFC 5321 4.5.3.1.6: text line limit, CRLF included. */
		if (++d->line_len > d->max_line)
			d->long_line = true;
		if (d->mode == SMTP_DATA_DOT) {
			if (d->dot == 1) {
				if (c == '\r') {
					d->dot = 2; /* maybe the terminator: hold the CR */
					continue;
				}
				d->dot = 0; /* the dot was stuffing (RFC 5321 4.5.2) */
			} else if (d->dot == 2) {
				d->dot = 0;
				if (c == '\n') {
					/* CRLF "." CRLF: the end of the data */
					hdr_end(d, &o);
					ob_flush(&o);
					d->done = true;
					*used_r = i + 1;
					return 1;
				}
				/* ".\r" then something else: that CR is bare. */
				d->cr = false;
				raw_byte(d, &o, '\r');
			} else if (d->bol && c == '.') {
				d->dot = 1;
				d->bol = false;
				continue;
			}
		}
		raw_byte(d, &o, c);
	}
	ob_flush(&o);
	*used_r = n;
	return 0;
}

void smtp_data_finish(struct smtp_data *d)
{
	struct obuf o;

	o.d = d;
	o.n = 0;
	if (d->cr)
		d->bare_cr = true; /* the content ended right after a CR */
	d->cr = false;
	hdr_end(d, &o);
	ob_flush(&o);
	d->done = true;
}
