/* Header fields, transfer-encoding and RFC 2047 decoding, charset
 * conversion, text search and the Date: header (see mime.h). */
#include <errno.h>
#include <iconv.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mime/html.h"

#include "core/base64.h"
#include "core/hex.h"
#include "mime/mime.h"
#include "mime/mime_int.h"

/* ---- HEADER.FIELDS (RFC 9051 6.4.5) ---- */

void mime_header_fields(const char *hdr, size_t n, const char *const *names, size_t n_names,
			bool not, struct buf *out)
{
	const char *pos = hdr, *end = hdr + n;
	struct mime_field f;
	size_t i;

	while (mime_field_next(&pos, end, &f)) {
		bool match = false;

		for (i = 0; i < n_names && !match; i++)
			match = mime_field_is(&f, names[i]);
		if (match == not)
			continue;
		buf_append(out, f.name, (size_t)(pos - f.name));
		if (pos[-1] != '\n')
			buf_append(out, "\r\n", 2); /* a truncated last line */
	}
	buf_append(out, "\r\n", 2);
}

/* ---- Content-Transfer-Encoding (RFC 2045 6.7, 6.8) ---- */

/* RFC 2047 4.2 "Q" encoded words (underscore) and the like: =XX, soft line
 * breaks "=" CRLF, trailing whitespace of a line dropped (RFC 2045 6.7 rule
 * 3); a broken "=" is kept as is. Bodies go through mime_qp_step. */
static void qp_decode(const char *in, size_t n, struct buf *out, bool underscore)
{
	size_t i = 0;

	buf_append(out, "", 0); /* keeps out NUL-terminated even when nothing is added */
	buf_reserve(out, n);
	while (i < n) {
		unsigned char c = (unsigned char)in[i];

		if (c == '=') {
			int h, l;
			size_t j;

			if (i + 2 < n && (h = hex_value((unsigned char)in[i + 1])) >= 0 &&
			    (l = hex_value((unsigned char)in[i + 2])) >= 0) {
				buf_appendc(out, (char)(h << 4 | l));
				i += 3;
				continue;
			}
			/* soft line break: "=" [WSP] (CRLF / LF / end) */
			for (j = i + 1; j < n && (in[j] == ' ' || in[j] == '\t'); j++)
				;
			if (j == n) {
				i = n;
				continue;
			}
			if (in[j] == '\n' || (in[j] == '\r' && j + 1 < n && in[j + 1] == '\n')) {
				i = j + (in[j] == '\r' ? 2 : 1);
				continue;
			}
			buf_appendc(out, '=');
			i++;
			continue;
		}
		if (c == ' ' || c == '\t') {
			size_t j;

			for (j = i; j < n && (in[j] == ' ' || in[j] == '\t'); j++)
				;
			if (j == n || in[j] == '\n' || (in[j] == '\r' && j + 1 < n && in[j + 1] == '\n')) {
				i = j; /* trailing whitespace */
				continue;
			}
			buf_append(out, in + i, j - i);
			i = j;
			continue;
		}
		if (c == '_' && underscore)
			c = ' '; /* RFC 2047 4.2 (2) */
		buf_appendc(out, (char)c);
		i++;
	}
}

/* The quoted-printable state machine (mime.h, RFC 2045 6.7) */
enum { QP_TEXT, QP_CR, QP_EQ, QP_EQ1, QP_EQWS, QP_SOFTCR };

static inline bool qp_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static size_t qp_put_ws(struct mime_qp *q, char *out, size_t o)
{
	memcpy(out + o, q->ws, q->n_ws);
	o += q->n_ws;
	q->n_ws = 0;
	return o;
}

size_t mime_qp_step(struct mime_qp *q, char c, char *out)
{
	size_t o = 0;

	for (;;) {
		switch (q->state) {
		case QP_TEXT:
			if (c == '=') {
				o = qp_put_ws(q, out, o); /* not trailing: text */
				q->state = QP_EQ;
			} else if (qp_wsp(c)) {
				/* held: dropped if the line ends here (rule 3) */
				if (q->n_ws == MIME_QP_HOLD)
					o = qp_put_ws(q, out, o);
				q->ws[q->n_ws++] = c;
			} else if (c == '\r') {
				q->state = QP_CR;
			} else if (c == '\n') {
				q->n_ws = 0;
				out[o++] = '\r';
				out[o++] = '\n';
			} else {
				o = qp_put_ws(q, out, o);
				out[o++] = c;
			}
			return o;
		case QP_CR:
			q->state = QP_TEXT;
			if (c == '\n') {
				q->n_ws = 0;
				out[o++] = '\r';
				out[o++] = '\n';
				return o;
			}
			o = qp_put_ws(q, out, o); /* a bare CR is text */
			out[o++] = '\r';
			continue; /* c again */
		case QP_EQ:
			if (hex_value((unsigned char)c) >= 0) {
				q->hex1 = c;
				q->state = QP_EQ1;
			} else if (qp_wsp(c)) {
				q->ws[q->n_ws++] = c; /* transport padding? */
				q->state = QP_EQWS;
			} else if (c == '\r') {
				q->state = QP_SOFTCR;
			} else if (c == '\n') {
				q->state = QP_TEXT; /* soft line break */
			} else {
				out[o++] = '=';
				q->state = QP_TEXT;
				continue;
			}
			return o;
		case QP_EQ1:
			q->state = QP_TEXT;
			if (hex_value((unsigned char)c) >= 0) {
				out[o++] = (char)(hex_value((unsigned char)q->hex1) << 4 |
						  hex_value((unsigned char)c));
				return o;
			}
			out[o++] = '='; /* broken =XX: kept as is */
			out[o++] = q->hex1;
			continue;
		case QP_EQWS:
			if (qp_wsp(c) && q->n_ws < MIME_QP_HOLD) {
				q->ws[q->n_ws++] = c;
				return o;
			}
			if (c == '\r') {
				q->state = QP_SOFTCR;
				return o;
			}
			if (c == '\n') {
				q->n_ws = 0; /* soft line break */
				q->state = QP_TEXT;
				return o;
			}
			/* "=" and white space not ending the line: text */
			out[o++] = '=';
			o = qp_put_ws(q, out, o);
			q->state = QP_TEXT;
			continue;
		case QP_SOFTCR:
			q->state = QP_TEXT;
			if (c == '\n') {
				q->n_ws = 0; /* soft line break */
				return o;
			}
			out[o++] = '=';
			o = qp_put_ws(q, out, o);
			out[o++] = '\r';
			continue;
		default:
			q->state = QP_TEXT;
			continue;
		}
	}
}

size_t mime_qp_finish(struct mime_qp *q, char *out)
{
	size_t o = 0;

	switch (q->state) {
	case QP_CR:
		o = qp_put_ws(q, out, o);
		out[o++] = '\r';
		break;
	case QP_EQ1:
		out[o++] = '=';
		out[o++] = q->hex1;
		break;
	case QP_SOFTCR:
		out[o++] = '=';
		o = qp_put_ws(q, out, o);
		out[o++] = '\r';
		break;
	default:
		/* QP_TEXT: trailing white space; QP_EQ, QP_EQWS: a soft line
		 * break before the end (the boundary's CRLF): dropped */
		break;
	}
	q->state = QP_TEXT;
	q->n_ws = 0;
	return o;
}

static void qp_decode_body(const char *in, size_t n, struct buf *out)
{
	struct mime_qp q = {0};
	char tmp[MIME_QP_OUT_MAX];
	size_t i, start = 0;

	buf_append(out, "", 0); /* keeps out NUL-terminated even when nothing is added */
	buf_reserve(out, n);
	for (i = 0; i < n; i++) {
		char c = in[i];

		/* fast path: plain text in the text state is copied in runs */
		if (q.state == QP_TEXT && q.n_ws == 0 && c != '=' && c != '\r' && c != '\n' &&
		    !qp_wsp(c))
			continue;
		buf_append(out, in + start, i - start);
		buf_append(out, tmp, mime_qp_step(&q, c, tmp));
		start = i + 1;
	}
	buf_append(out, in + start, n - start);
	buf_append(out, tmp, mime_qp_finish(&q, tmp));
}

/* RFC 2045 6.8: characters outside the alphabet are ignored; "=" ends a
 * quantum (what follows is decoded too: concatenated base64). */
static void b64_decode(const char *in, size_t n, struct buf *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i;

	buf_append(out, "", 0);
	buf_reserve(out, n / 4 * 3 + 3);
	for (i = 0; i < n; i++) {
		int v = base64_value((unsigned char)in[i]);

		if (v < 0) {
			if (in[i] == '=') {
				acc = 0;
				bits = 0;
			}
			continue;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_appendc(out, (char)(acc >> bits));
			acc &= (1u << bits) - 1;
		}
	}
}

bool mime_decode(enum mime_encoding enc, const char *in, size_t n, struct buf *out)
{
	switch (enc) {
	case MIME_ENC_7BIT:
	case MIME_ENC_8BIT:
	case MIME_ENC_BINARY:
		buf_append(out, in, n);
		return true;
	case MIME_ENC_QP:
		qp_decode_body(in, n, out);
		return true;
	case MIME_ENC_BASE64:
		b64_decode(in, n, out);
		return true;
	case MIME_ENC_OTHER:
		break;
	}
	return false;
}

/* ---- charsets ---- */

static void put_utf8(struct buf *out, uint32_t cp)
{
	char b[4];

	if (cp < 0x80) {
		buf_appendc(out, (char)cp);
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		buf_append(out, b, 2);
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		buf_append(out, b, 3);
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		buf_append(out, b, 4);
	}
}

/* One UTF-8 sequence at p (RFC 3629 4): its length, or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp_r)
{
	uint32_t cp;
	size_t len, i;

	if (p[0] < 0x80) {
		*cp_r = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	*cp_r = cp;
	return len;
}

static void utf8_copy(const char *in, size_t n, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0;

	buf_append(out, "", 0);
	buf_reserve(out, n);
	while (i < n) {
		uint32_t cp;
		size_t l;
		size_t j = i;

		while (j < n && p[j] < 0x80)
			j++;
		buf_append(out, in + i, j - i);
		i = j;
		if (i == n)
			break;
		l = utf8_seq(p + i, n - i, &cp);
		if (l == 0) {
			put_utf8(out, 0xfffd);
			i++;
		} else {
			buf_append(out, in + i, l);
			i += l;
		}
	}
}

/* The charsets mime_to_utf8 takes as UTF-8 (checked and copied). */
static bool charset_utf8(const char *charset)
{
	return charset == NULL || *charset == '\0' || strcasecmp(charset, "utf-8") == 0 ||
	       strcasecmp(charset, "utf8") == 0 || strcasecmp(charset, "us-ascii") == 0 ||
	       strcasecmp(charset, "ascii") == 0;
}

bool mime_to_utf8(const char *charset, const char *in, size_t n, struct buf *out)
{
	iconv_t cd;
	char *ip = (char *)in;
	size_t il = n;
	char tmp[4096];

	if (charset_utf8(charset)) {
		utf8_copy(in, n, out);
		return true;
	}
	cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return false;
	/* iconv's output is checked as UTF-8 input is: glibc's own UTF-8 (a
	 * charset name it reads as "UTF-8" once it drops the bytes it ignores,
	 * such as "u\xbatf-8") and UCS-4 pass code points past U+10FFFF on as
	 * 5- and 6-octet sequences, which no reader of ours may get (the
	 * preview's fuzzer found one) */
	struct buf raw = BUF_INIT;
	while (il > 0) {
		char *op = tmp;
		size_t ol = sizeof(tmp);
		size_t r = iconv(cd, &ip, &il, &op, &ol);
		int e = errno;

		buf_append(&raw, tmp, (size_t)(op - tmp));
		if (r != (size_t)-1)
			break;
		if (e == E2BIG)
			continue;
		/* EILSEQ, EINVAL: one byte replaced, go on */
		put_utf8(&raw, 0xfffd);
		ip++;
		il--;
		iconv(cd, NULL, NULL, NULL, NULL);
	}
	/* flush a stateful encoding's end */
	{
		char *op = tmp;
		size_t ol = sizeof(tmp);

		if (iconv(cd, NULL, NULL, &op, &ol) != (size_t)-1)
			buf_append(&raw, tmp, (size_t)(op - tmp));
	}
	iconv_close(cd);
	utf8_copy(raw.data != NULL ? raw.data : "", raw.len, out);
	buf_free(&raw);
	return true;
}

/* ---- RFC 2047 encoded words ---- */

/* "=?charset?X?text?=" at p (RFC 2047 2): true with its parts. */
static bool encoded_word(const char *p, const char *e, const char **cs, size_t *csl, char *enc,
			 const char **txt, size_t *txl, const char **end_r)
{
	const char *q, *t;

	if (e - p < 8 || p[0] != '=' || p[1] != '?')
		return false;
	q = p + 2;
	*cs = q;
	while (q < e && *q != '?' && *q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
		q++;
	if (q >= e || *q != '?' || q == *cs)
		return false;
	*csl = (size_t)(q - *cs);
	if (e - q < 4 || q[2] != '?')
		return false;
	*enc = q[1];
	if (*enc != 'B' && *enc != 'b' && *enc != 'Q' && *enc != 'q')
		return false;
	t = q + 3;
	*txt = t;
	while (t + 1 < e && !(t[0] == '?' && t[1] == '=') && *t != ' ' && *t != '\t' &&
	       *t != '\r' && *t != '\n')
		t++;
	if (t + 1 >= e || t[0] != '?' || t[1] != '=')
		return false;
	*txl = (size_t)(t - *txt);
	*end_r = t + 2;
	return true;
}

struct words {
	struct buf pending, charset;
	struct buf *out;
	const char *raw; /* the undecoded text of the pending words */
	size_t raw_len;
};

static void words_flush(struct words *w)
{
	if (w->raw_len == 0)
		return;
	if (!mime_to_utf8(w->charset.data, w->pending.data ? w->pending.data : "", w->pending.len,
			  w->out))
		buf_append(w->out, w->raw, w->raw_len); /* unknown charset: as is */
	buf_reset(&w->pending);
	w->raw_len = 0;
}

void mime_decode_words(const char *in, size_t n, struct buf *out)
{
	struct words w = {BUF_INIT, BUF_INIT, out, NULL, 0};
	const char *p = in, *e = in + n, *ws = NULL;
	bool after_word = false;

	while (p < e) {
		const char *cs, *txt, *we;
		size_t csl, txl;
		char enc;

		if (*p == '\r' || *p == '\n') {
			p++; /* RFC 5322 2.2.3 unfolding */
			continue;
		}
		if (*p == ' ' || *p == '\t') {
			if (ws == NULL)
				ws = p;
			p++;
			continue;
		}
		if (encoded_word(p, e, &cs, &csl, &enc, &txt, &txl, &we)) {
			const char *star = memchr(cs, '*', csl); /* RFC 2231 5 language */

			if (star)
				csl = (size_t)(star - cs);
			/* RFC 2047 6.2: whitespace between encoded words is dropped;
			 * words of one charset are joined before conversion */
			if (w.raw_len > 0 && !(w.charset.len == csl &&
					       strncasecmp(w.charset.data, cs, csl) == 0))
				words_flush(&w);
			if (w.raw_len == 0) {
				if (ws && !after_word)
					for (; ws < p; ws++)
						if (*ws != '\r' && *ws != '\n')
							buf_appendc(out, *ws);
				buf_reset(&w.charset);
				buf_append(&w.charset, cs, csl);
				w.raw = p;
			}
			if (enc == 'B' || enc == 'b')
				b64_decode(txt, txl, &w.pending);
			else
				qp_decode(txt, txl, &w.pending, true);
			w.raw_len = (size_t)(we - w.raw);
			ws = NULL;
			after_word = true;
			p = we;
			continue;
		}
		after_word = false;
		words_flush(&w);
		if (ws) {
			/* folded whitespace is kept (unfolding removes CRLF only) */
			const char *q;

			for (q = ws; q < p; q++)
				if (*q != '\r' && *q != '\n')
					buf_appendc(out, *q);
			ws = NULL;
		}
		{
			const char *s = p;

			while (p < e && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' &&
			       !(p + 1 < e && p > s && p[0] == '=' && p[1] == '?'))
				p++;
			if (p == s)
				p++;
			buf_append(out, s, (size_t)(p - s));
		}
	}
	words_flush(&w);
	if (ws) {
		const char *q;

		for (q = ws; q < e; q++)
			if (*q != '\r' && *q != '\n')
				buf_appendc(out, *q);
	}
	buf_free(&w.pending);
	buf_free(&w.charset);
}

/* ---- search (RFC 9051 6.4.4) ---- */

/* Unicode simple case folding (CaseFolding.txt, status C and S) for ASCII,
 * Latin-1, Latin Extended-A, Greek and Cyrillic. */
static uint32_t fold_cp(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if (c == 0xb5)
		return 0x3bc;
	if (c >= 0xc0 && c <= 0xde && c != 0xd7)
		return c + 32;
	if (c >= 0x100 && c <= 0x17f) {
		if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149)
			return c;
		if (c == 0x178)
			return 0xff;
		if (c == 0x17f)
			return 's';
		if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
			return (c & 1) ? c + 1 : c;
		return (c & 1) ? c : c + 1;
	}
	if (c >= 0x386 && c <= 0x3ff) {
		if (c == 0x386)
			return 0x3ac;
		if (c >= 0x388 && c <= 0x38a)
			return c + 37;
		if (c == 0x38c)
			return 0x3cc;
		if (c == 0x38e || c == 0x38f)
			return c + 63;
		if (c >= 0x391 && c <= 0x3ab && c != 0x3a2)
			return c + 32;
		if (c == 0x3c2)
			return 0x3c3;
		if (c >= 0x3d8 && c <= 0x3ef)
			return (c & 1) ? c : c + 1;
		return c;
	}
	if (c >= 0x400 && c <= 0x52f) {
		if (c <= 0x40f)
			return c + 80;
		if (c <= 0x42f)
			return c + 32;
		if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) ||
		    (c >= 0x4d0 && c <= 0x52f))
			return (c & 1) ? c : c + 1;
		if (c == 0x4c0)
			return 0x4cf;
		if (c >= 0x4c1 && c <= 0x4ce)
			return (c & 1) ? c + 1 : c;
	}
	return c;
}

/* Case-folds the UTF-8 text [in, in + n) into out (replacing its content).
 * ASCII runs, most of the text of most mail, go through a tight loop that
 * writes into the buffer directly; other code points through fold_cp. An
 * invalid sequence is kept byte by byte, or with fix becomes U+FFFD (so that
 * fold(in, fix) is what folding utf8_copy(in) gave, in one pass and without
 * the copy). */
static void fold_text(const char *in, size_t n, struct buf *out, bool fix)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, o = 0;
	char *d;

	buf_reset(out);
	buf_reserve(out, n + 8);
	d = out->data;
	while (i < n) {
		uint32_t cp;
		size_t l;

		while (i < n && p[i] < 0x80) {
			unsigned char c = p[i++];
			d[o++] = (char)((unsigned)c - 'A' < 26u ? c + 32 : c);
		}
		if (i == n)
			break;
		/* room for 4 more octets and the rest of the input */
		if (out->cap - o < n - i + 8) {
			out->len = o;
			buf_reserve(out, n - i + 8);
			d = out->data;
		}
		l = utf8_seq(p + i, n - i, &cp);
		if (l == 0) {
			if (fix) {
				d[o++] = (char)0xef;
				d[o++] = (char)0xbf;
				d[o++] = (char)0xbd;
			} else {
				d[o++] = (char)p[i];
			}
			i++;
			continue;
		}
		cp = fold_cp(cp);
		if (cp < 0x80) {
			d[o++] = (char)cp;
		} else if (cp < 0x800) {
			d[o++] = (char)(0xc0 | cp >> 6);
			d[o++] = (char)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			d[o++] = (char)(0xe0 | cp >> 12);
			d[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			d[o++] = (char)(0x80 | (cp & 0x3f));
		} else {
			d[o++] = (char)(0xf0 | cp >> 18);
			d[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
			d[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			d[o++] = (char)(0x80 | (cp & 0x3f));
		}
		i += l;
	}
	out->len = o;
	d[o] = '\0';
}

static void fold(const char *in, size_t n, struct buf *out)
{
	fold_text(in, n, out, false);
}

/* mime_int.h: the search's folding for the full-text index (extract.c) */
void mime_search_fold(const char *in, size_t n, struct buf *out)
{
	fold_text(in, n, out, true);
}

/* mime_int.h: the text of a text leaf as SEARCH BODY reads it */
const char *mime_body_text(const char *body, size_t n, const char *charset, bool html,
			   struct buf *conv, struct buf *red, size_t *len_r)
{
	if (!charset_utf8(charset)) {
		buf_reset(conv);
		if (!mime_to_utf8(charset, body, n, conv))
			utf8_copy(body, n, conv);
		body = conv->data ? conv->data : "";
		n = conv->len;
	}
	if (html) {
		buf_reset(red);
		mime_html_text(body, n, red);
		body = red->data ? red->data : "";
		n = red->len;
	}
	*len_r = n;
	return body;
}

struct searcher {
	struct buf needle, hay, tmp, tmp2, html, charset;
};

static bool s_match(struct searcher *s, const char *text, size_t n)
{
	if (s->needle.len == 0)
		return true;
	fold(text, n, &s->hay);
	return s->hay.len >= s->needle.len &&
	       memmem(s->hay.data, s->hay.len, s->needle.data, s->needle.len) != NULL;
}

static void s_free(struct searcher *s)
{
	buf_free(&s->needle);
	buf_free(&s->hay);
	buf_free(&s->tmp);
	buf_free(&s->tmp2);
	buf_free(&s->html);
	buf_free(&s->charset);
}

static bool s_init(struct searcher *s, const char *needle)
{
	memset(s, 0, sizeof(*s));
	fold(needle, strlen(needle), &s->needle);
	return true;
}

/* the header fields of [h, h + n) named field (all when NULL), unfolded
 * and RFC 2047 decoded */
static bool s_header(struct searcher *s, const char *h, size_t n, const char *field)
{
	const char *pos = h;
	struct mime_field f;

	while (mime_field_next(&pos, h + n, &f)) {
		if (field != NULL && !mime_field_is(&f, field))
			continue;
		buf_reset(&s->tmp);
		if (field == NULL) {
			/* SEARCH TEXT: the field name too */
			buf_append(&s->tmp, f.name, f.name_len);
			buf_append(&s->tmp, ": ", 2);
		}
		mime_decode_words(f.value, f.value_len, &s->tmp);
		if (s_match(s, s->tmp.data ? s->tmp.data : "", s->tmp.len))
			return true;
	}
	return false;
}

static bool part_ok(const struct mime_part_rec *r, size_t len)
{
	return r->hdr_off <= len && r->hdr_len <= len - r->hdr_off && r->body_off <= len &&
	       r->body_len <= len - r->body_off;
}

/* The header alone is within len: a search of the top-level header may be
 * given only the header's octets (mime_cache_header_end). */
static bool hdr_ok(const struct mime_part_rec *r, size_t len)
{
	return r->hdr_off <= len && r->hdr_len <= len - r->hdr_off;
}

uint64_t mime_cache_header_end(const struct mime_cache *mc)
{
	struct mime_part_rec r;

	if (mc->n_parts == 0)
		return 0;
	mime_cache_part(mc, 0, &r);
	return r.hdr_off + r.hdr_len;
}

bool mime_search_header(const char *msg, size_t len, const struct mime_cache *mc,
			const char *field, const char *needle)
{
	struct mime_part_rec r;
	struct searcher s;
	bool found;

	if (mc->n_parts == 0)
		return false;
	mime_cache_part(mc, 0, &r);
	if (!hdr_ok(&r, len))
		return false;
	s_init(&s, needle);
	found = s_header(&s, msg + r.hdr_off, (size_t)r.hdr_len, field);
	s_free(&s);
	return found;
}

bool mime_search_address(const char *msg, size_t len, const struct mime_cache *mc,
			 const char *field, const char *needle)
{
	struct mime_part_rec r;
	struct searcher s;
	struct mime_field f;
	struct buf raw = BUF_INIT;
	const char *pos, *end;
	bool found = false;

	if (mc->n_parts == 0)
		return false;
	mime_cache_part(mc, 0, &r);
	if (!hdr_ok(&r, len))
		return false;
	s_init(&s, needle);
	pos = msg + r.hdr_off;
	end = pos + r.hdr_len;
	while (!found && mime_field_next(&pos, end, &f)) {
		if (!mime_field_is(&f, field))
			continue;
		buf_reset(&raw);
		mime_address_text(f.value, f.value_len, &raw);
		buf_reset(&s.tmp);
		mime_decode_words(raw.data ? raw.data : "", raw.len, &s.tmp);
		found = s_match(&s, s.tmp.data ? s.tmp.data : "", s.tmp.len);
	}
	buf_free(&raw);
	s_free(&s);
	return found;
}

bool mime_search_body(const char *msg, size_t len, const struct mime_cache *mc,
		      const char *needle, bool text)
{
	struct searcher s;
	bool found = false;
	uint32_t i;

	s_init(&s, needle);
	for (i = 0; i < mc->n_parts && !found; i++) {
		struct mime_part_rec r;

		mime_cache_part(mc, i, &r);
		if (!part_ok(&r, len))
			continue;
		if (text && s_header(&s, msg + r.hdr_off, (size_t)r.hdr_len, NULL)) {
			found = true;
			break;
		}
		bool html;
		if (r.kind != MIME_KIND_LEAF ||
		    !mime_text_type(msg + r.hdr_off, (size_t)r.hdr_len, &s.charset, &html))
			continue;
		/* the body as stored for 7bit/8bit/binary (no copy), else
		 * decoded (an unknown encoding is searched as it is) */
		const char *body = msg + r.body_off;
		size_t blen = (size_t)r.body_len;
		enum mime_encoding enc = (enum mime_encoding)r.enc;
		if (enc == MIME_ENC_QP || enc == MIME_ENC_BASE64) {
			buf_reset(&s.tmp);
			mime_decode(enc, body, blen, &s.tmp);
			body = s.tmp.data ? s.tmp.data : "";
			blen = s.tmp.len;
		}
		if (s.needle.len == 0) {
			found = true;
		} else {
			body = mime_body_text(body, blen, s.charset.data, html, &s.tmp2, &s.html,
					      &blen);
			/* checked and folded in one pass (fold_text) */
			fold_text(body, blen, &s.hay, true);
			found = s.hay.len >= s.needle.len &&
				memmem(s.hay.data, s.hay.len, s.needle.data, s.needle.len) != NULL;
		}
	}
	s_free(&s);
	return found;
}

/* ---- Date: (RFC 5322 3.3, obsolete forms 4.3) ---- */

struct dp {
	const char *p, *e;
};

static void d_skip(struct dp *d)
{
	struct mime_rp rp = {d->p, d->e, NULL};

	(void)mime_rp_skip(&rp);
	d->p = rp.p;
}

static int d_num(struct dp *d, int maxdigits, int *digits_r)
{
	int v = 0, n = 0;

	while (d->p < d->e && *d->p >= '0' && *d->p <= '9' && n < maxdigits) {
		v = v * 10 + (*d->p++ - '0');
		n++;
	}
	*digits_r = n;
	return n ? v : -1;
}

static size_t d_word(struct dp *d, char *w, size_t wsz)
{
	size_t n = 0;

	while (d->p < d->e && ((*d->p >= 'a' && *d->p <= 'z') || (*d->p >= 'A' && *d->p <= 'Z'))) {
		if (n + 1 < wsz)
			w[n++] = *d->p;
		d->p++;
	}
	w[n] = '\0';
	return n;
}

static bool parse_date(const char *v, size_t n, time_t *t_r, int *tz_r)
{
	static const char months[12][4] = {"jan", "feb", "mar", "apr", "may", "jun",
					   "jul", "aug", "sep", "oct", "nov", "dec"};
	static const struct {
		const char *name;
		int hours;
	} zones[] = {{"ut", 0},   {"gmt", 0},  {"z", 0},    {"est", -5}, {"edt", -4},
		     {"cst", -6}, {"cdt", -5}, {"mst", -7}, {"mdt", -6}, {"pst", -8},
		     {"pdt", -7}};
	struct dp d = {v, v + n};
	struct tm tm;
	char w[16];
	int day, mon = -1, year, hh, mm, ss = 0, digits, tz = 0, i;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	d_skip(&d);
	/* [ day-of-week "," ] */
	if (d.p < d.e && !(*d.p >= '0' && *d.p <= '9')) {
		if (d_word(&d, w, sizeof(w)) == 0)
			return false;
		d_skip(&d);
		if (d.p < d.e && *d.p == ',')
			d.p++;
		d_skip(&d);
	}
	if ((day = d_num(&d, 2, &digits)) < 1 || day > 31)
		return false;
	d_skip(&d);
	if (d_word(&d, w, sizeof(w)) < 3)
		return false;
	for (i = 0; i < 12; i++)
		if (strncasecmp(w, months[i], 3) == 0)
			mon = i;
	if (mon < 0)
		return false;
	d_skip(&d);
	if ((year = d_num(&d, 4, &digits)) < 0)
		return false;
	if (digits == 2)
		year += year < 50 ? 2000 : 1900; /* RFC 5322 4.3 */
	else if (digits == 3)
		year += 1900;
	d_skip(&d);
	if ((hh = d_num(&d, 2, &digits)) < 0 || hh > 23)
		return false;
	d_skip(&d);
	if (d.p >= d.e || *d.p != ':')
		return false;
	d.p++;
	d_skip(&d);
	if ((mm = d_num(&d, 2, &digits)) < 0 || mm > 59)
		return false;
	d_skip(&d);
	if (d.p < d.e && *d.p == ':') {
		d.p++;
		d_skip(&d);
		if ((ss = d_num(&d, 2, &digits)) < 0 || ss > 60)
			return false;
		d_skip(&d);
	}
	if (d.p < d.e && (*d.p == '+' || *d.p == '-')) {
		int sign = *d.p++ == '-' ? -1 : 1, z = d_num(&d, 4, &digits);

		if (digits != 4 || z % 100 > 59)
			return false;
		tz = sign * ((z / 100) * 3600 + (z % 100) * 60);
	} else if (d_word(&d, w, sizeof(w)) > 0) {
		/* RFC 5322 4.3 obs-zone; military zones count as -0000 */
		for (i = 0; i < (int)(sizeof(zones) / sizeof(zones[0])); i++)
			if (strcasecmp(w, zones[i].name) == 0)
				tz = zones[i].hours * 3600;
	}
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	t = timegm(&tm);
	if (t == (time_t)-1 && !(year == 1969 && mon == 11 && day == 31))
		return false;
	*t_r = t - tz;
	*tz_r = tz;
	return true;
}

bool mime_message_date(const char *msg, size_t len, time_t *t_r, int *tz_r)
{
	const char *pos = msg;
	struct mime_field f;

	while (mime_field_next(&pos, msg + len, &f))
		if (mime_field_is(&f, "Date"))
			return parse_date(f.value, f.value_len, t_r, tz_r);
	return false;
}

int32_t mime_message_day(const char *msg, size_t len)
{
	time_t t;
	int tz;

	if (msg == NULL || !mime_message_date(msg, len, &t, &tz))
		return 0;
	int64_t local = (int64_t)t + tz;
	int64_t d = local / 86400;
	if (local % 86400 < 0)
		d--; /* floor for instants before 1970 */
	return (int32_t)d;
}
