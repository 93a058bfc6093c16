/* libFuzzer harness for the milter packets and header edits
 * (src/filter/milter_proto.c). Input: byte 0 picks what the rest is:
 *   0: a stream of milter replies, parsed packet by packet as the client
 *      does (length bound 4096), each reply's data through the parser of
 *      its kind (optneg, header change, reply code) and the value cleaner:
 *      a cleaned value never holds a line break that is not followed by
 *      white space, nor a control character but HTAB;
 *   1: a message (up to the first NUL) and edits built from the rest (one
 *      per line: kind digit, index digit, "name\tvalue"): milter_apply_edits
 *      keeps the body intact (checked for a one-line header section);
 *   2: a header field through milter_field_split.
 * Round trip: every packet milter_pkt_put writes parses back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "filter/milter.h"
#include "filter/milter_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clean(const char *v)
{
	struct buf b = BUF_INIT;
	milter_value_clean(v, &b);
	for (size_t i = 0; i < b.len; i++) {
		unsigned char c = (unsigned char)b.data[i];
		if (c == '\r') {
			if (i + 2 >= b.len || b.data[i + 1] != '\n' ||
			    (b.data[i + 2] != ' ' && b.data[i + 2] != '\t'))
				abort();
			/* a folded line holds more than white space (RFC 5322 3.2.2) */
			size_t j = i + 2;
			while (j < b.len && (b.data[j] == ' ' || b.data[j] == '\t'))
				j++;
			if (j == b.len || b.data[j] == '\r')
				abort();
			i++;
			continue;
		}
		if ((c < 32 && c != '\t') || c == 127)
			abort();
	}
	buf_free(&b);
}

static void replies(const char *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		char cmd;
		const char *d;
		size_t len, used;
		int r = milter_pkt_get(p + off, n - off, 4096, &cmd, &d, &len, &used);
		if (r <= 0)
			break;
		if (used != len + 5 || d != p + off + 5)
			abort();
		uint32_t v, a, pr, idx;
		const char *name, *value;
		int code;
		char ecode[16], text[256];
		switch (cmd) {
		case 'O':
			milter_optneg_parse(d, len, &v, &a, &pr);
			break;
		case 'h':
		case 'i':
		case 'm':
			if (milter_hdr_parse(d, len, cmd != 'h', &idx, &name, &value) == 0)
				check_clean(value);
			break;
		case 'y':
			if (milter_replycode_parse(d, len, &code, ecode, sizeof(ecode), text,
						   sizeof(text)) == 0) {
				if (code < 400 || code > 599 || strlen(text) >= sizeof(text))
					abort();
				if (ecode[0] != '\0' && ecode[0] != '0' + code / 100)
					abort();
				for (const char *t = text; *t; t++)
					if ((unsigned char)*t < 32)
						abort();
			}
			break;
		}
		/* round trip */
		struct buf b = BUF_INIT;
		milter_pkt_put(&b, cmd, d, len);
		char c2;
		const char *d2;
		size_t l2, u2;
		if (milter_pkt_get(b.data, b.len, 4096, &c2, &d2, &l2, &u2) != 1 || c2 != cmd ||
		    l2 != len || (len > 0 && memcmp(d2, d, len) != 0))
			abort();
		buf_free(&b);
		off += used;
	}
}

static void edits(const char *p, size_t n)
{
	const char *z = memchr(p, '\0', n);
	size_t mlen = z != NULL ? (size_t)(z - p) : n;
	struct milter_edit e[16];
	size_t ne = 0;
	char *rest = z != NULL ? strndup(z + 1, n - mlen - 1) : strdup("");
	char *save = NULL;
	for (char *line = strtok_r(rest, "\n", &save); line != NULL && ne < 16;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strlen(line) < 2)
			continue;
		char *tab = strchr(line + 2, '\t');
		if (tab != NULL)
			*tab = '\0';
		e[ne].kind = (enum milter_edit_kind)((unsigned char)line[0] % 4); /* ADD..DELETE */
		e[ne].index = (unsigned char)line[1] % 8;
		e[ne].name = line + 2;
		e[ne].value = tab != NULL ? tab + 1 : (char *)"";
		ne++;
	}
	struct buf out = BUF_INIT;
	/* the body (after the first empty line) is kept byte for byte when
	 * every line before it is a field or a continuation: then the output
	 * ends with it */
	int r = milter_apply_edits(p, mlen, e, ne, &out);
	const char *blank = memmem(p, mlen, "\r\n\r\n", 4);
	if (r == 0 && blank != NULL && memchr(p, '\n', (size_t)(blank - p)) == NULL &&
	    memchr(p, ':', (size_t)(blank - p)) != NULL && p[0] != ' ' && p[0] != '\t') {
		size_t bl = mlen - (size_t)(blank + 2 - p);
		if (out.len < bl || memcmp(out.data + out.len - bl, blank + 2, bl) != 0)
			abort();
	}
	buf_free(&out);
	free(rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	struct buf name = BUF_INIT, value = BUF_INIT;
	switch (data[0] % 3) {
	case 0:
		replies(p, n);
		break;
	case 1:
		edits(p, n);
		break;
	case 2:
		if (milter_field_split(p, n, data[0] & 4, &name, &value) == 0 &&
		    ((name.len > 0 && memchr(name.data, '\0', name.len) != NULL) ||
		     (value.len > 0 && memchr(value.data, '\0', value.len) != NULL)))
			abort(); /* a NUL would split the packet's name or value */
		break;
	}
	buf_free(&name);
	buf_free(&value);
	return 0;
}
