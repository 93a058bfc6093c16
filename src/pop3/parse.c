/* Pure POP3 parsing and encoding: see parse.h. */
#include "pop3/parse.h"

#include <ctype.h>
#include <string.h>

int pop3_parse_command(const char *line, char verb_r[POP3_MAX_VERB + 1], const char **args_r)
{
	size_t n = 0;

	while (line[n] != '\0' && line[n] != ' ') {
		if (n >= POP3_MAX_VERB || !isalnum((unsigned char)line[n]))
			return -1;
		verb_r[n] = (char)toupper((unsigned char)line[n]);
		n++;
	}
	if (n == 0)
		return -1;
	verb_r[n] = '\0';
	*args_r = line[n] == ' ' ? line + n + 1 : line + n;
	return 0;
}

int pop3_parse_numbers(const char *args, uint32_t *v, int min, int max)
{
	const char *p = args;
	int k = 0;

	while (*p != '\0') {
		if (k == max)
			return -1;
		if (k > 0) {
			if (*p != ' ')
				return -1;
			p++;
		}
		if (!isdigit((unsigned char)*p))
			return -1;
		uint64_t n = 0;
		while (isdigit((unsigned char)*p)) {
			n = n * 10 + (uint64_t)(*p - '0');
			if (n > UINT32_MAX)
				return -1;
			p++;
		}
		if (*p != '\0' && *p != ' ')
			return -1;
		v[k++] = (uint32_t)n;
	}
	return k < min ? -1 : k;
}

void pop3_dot_init(struct pop3_dot *d, bool top, uint64_t lines)
{
	memset(d, 0, sizeof *d);
	d->bol = true;
	d->empty = true;
	d->top = top;
	d->lines_left = lines;
	/* TOP 0 with an empty header still stops after the blank line. */
}

/* A line just ended (its LF was copied): TOP bookkeeping. */
static void line_end(struct pop3_dot *d)
{
	if (d->top) {
		if (!d->in_body) {
			if (d->empty) {
				d->in_body = true; /* RFC 1939 7: the blank line is sent */
				if (d->lines_left == 0)
					d->done = true;
			}
		} else if (d->lines_left > 0 && --d->lines_left == 0) {
			d->done = true;
		}
	}
	d->bol = true;
	d->empty = true;
	d->cr = false;
}

int pop3_dot_feed(struct pop3_dot *d, const char *in, size_t n, struct buf *out)
{
	size_t i = 0;

	if (d->done)
		return 1;
	buf_reserve(out, n + n / 64 + 8);
	while (i < n) {
		if (d->bol && in[i] == '.')
			buf_appendc(out, '.'); /* RFC 1939 3: byte-stuffing */
		d->bol = false;
		const char *lf = memchr(in + i, '\n', n - i);
		size_t end = lf != NULL ? (size_t)(lf - in) : n; /* index of LF or n */
		if (end > i) {
			/* The line's bytes before the LF. */
			buf_append(out, in + i, end - i);
			if (d->empty && !(end - i == 1 && in[i] == '\r' && !d->cr))
				d->empty = false;
			d->cr = in[end - 1] == '\r';
		}
		d->in_bytes += end - i;
		i = end;
		if (lf == NULL)
			break;
		if (!d->cr)
			buf_appendc(out, '\r'); /* bare LF: lines end in CRLF on the wire */
		buf_appendc(out, '\n');
		d->in_bytes++;
		i++;
		line_end(d);
		if (d->done)
			return 1;
	}
	return 0;
}

void pop3_dot_end(struct pop3_dot *d, struct buf *out)
{
	if (!d->bol)
		buf_appends(out, d->cr ? "\n" : "\r\n");
	buf_appends(out, ".\r\n");
}
