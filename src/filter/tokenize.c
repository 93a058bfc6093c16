/* The statistical filter's tokenizer (bayes.h): a whole message to a set of
 * distinct tokens. Pure (no I/O, no globals), bounded, fuzzed
 * (tests/fuzz/fuzz_tokenize.c).
 *
 * What becomes a token (as SpamBayes' tokenizer, simplified):
 *   - Subject words, "subject:WORD" (RFC 2047 words decoded, RFC 2047 2);
 *   - the From, Reply-To and Return-Path addresses and their domains
 *     (Return-Path only as the first field: the one delivery wrote),
 *     "from:addr@dom", "from-domain:dom" (Received fields are left out: they
 *     name our own relays as much as the sender's);
 *   - a few header facts: "x-mailer:WORD", "ct:TYPE/SUB" of each part,
 *     "charset:NAME", "cte:ENCODING";
 *   - the text of every text/ * part, transfer encoding decoded (RFC 2045
 *     6.7, 6.8), charset converted to UTF-8 (iconv, src/mime), HTML tags
 *     stripped and entities decoded; words lowercased (ASCII, Latin-1,
 *     Greek, Cyrillic), split on anything that is not a letter or digit in
 *     Unicode terms (UTF-8 decoded); CJK and kana runs as character bigrams
 *     (those scripts write no spaces); words of 1 character dropped, longer
 *     than BAYES_WORD_MAX octets summarised as "skip:C:N" (its first
 *     character and length in tens, SpamBayes);
 *   - URL hosts in text and HTML links, "url:host" and its registrable-ish
 *     parent "url:example.com" (the last two labels);
 *   - attachments' names and extensions, "attach:name", "attach-ext:exe".
 * Bounded: the first BAYES_FIELD_MAX octets of each header field, the
 * first BAYES_MAX_TEXT octets of decoded text, at most
 * BAYES_MAX_TOKENS distinct tokens (the rest ignored). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "filter/bayes.h"
#include "mime/mime.h"
#include "mime/mime_int.h"

#define BAYES_MAX_TEXT (512 * 1024)
#define BAYES_MAX_TOKENS 5000
#define BAYES_WORD_MAX 40  /* octets */
#define BAYES_HOST_MAX 100 /* octets of a URL host */
#define BAYES_FIELD_MAX (64 * 1024) /* octets of a header field's value */

struct tk {
	struct bayes_token *v; /* .text is set at the end (tk_finish) */
	size_t *off;           /* v[i]'s text: at texts.data + off[i] */
	size_t n, cap;
	struct buf texts; /* every token's text, NUL-terminated, one block */
	uint64_t *set;    /* open addressing on hash; 0 = empty */
	size_t set_cap;
	size_t text; /* decoded text octets taken so far */
};

/* The set starts small and doubles past 60 % full, up to 8,192 entries
 * (BAYES_MAX_TOKENS fill it to 61 %): a 1 KB message has a hundred tokens,
 * and a 64 KiB table per message cost a memset and, freed, a
 * malloc_consolidate (glibc consolidates on every free of 64 KiB or more). */
#define TK_SET_MIN 512
#define TK_SET_MAX 8192

static void tk_set_put(uint64_t *set, size_t cap, uint64_t h)
{
	size_t mask = cap - 1, i = (size_t)h & mask;
	while (set[i] != 0)
		i = (i + 1) & mask;
	set[i] = h;
}

static void tk_set_grow(struct tk *t)
{
	free(t->set);
	t->set_cap *= 2;
	t->set = xcalloc(t->set_cap, sizeof *t->set);
	for (size_t i = 0; i < t->n; i++) /* the set holds exactly v's hashes */
		tk_set_put(t->set, t->set_cap, t->v[i].hash);
}

/* FNV-1a 64; 0 is kept for "empty" in the set. */
static uint64_t tk_hash(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ull;
	}
	return h ? h : 1;
}

static void tk_add(struct tk *t, const char *p, size_t n)
{
	if (n == 0 || t->n >= BAYES_MAX_TOKENS)
		return;
	uint64_t h = tk_hash(p, n);
	size_t mask = t->set_cap - 1, i = (size_t)h & mask;
	while (t->set[i] != 0) {
		if (t->set[i] == h)
			return;
		i = (i + 1) & mask;
	}
	t->set[i] = h;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 256;
		t->v = xrealloc(t->v, t->cap * sizeof *t->v);
		t->off = xrealloc(t->off, t->cap * sizeof *t->off);
	}
	t->v[t->n].hash = h;
	t->v[t->n].text = NULL;
	t->off[t->n] = t->texts.len;
	buf_append(&t->texts, p, n);
	buf_appendc(&t->texts, '\0');
	t->n++;
	if ((t->n + 1) * 10 > t->set_cap * 6 && t->set_cap < TK_SET_MAX)
		tk_set_grow(t);
}

static void tk_add2(struct tk *t, const char *prefix, const char *p, size_t n)
{
	char tmp[BAYES_WORD_MAX + BAYES_HOST_MAX + 32];
	size_t pl = strlen(prefix);
	if (n > sizeof tmp - pl)
		n = sizeof tmp - pl;
	memcpy(tmp, prefix, pl);
	memcpy(tmp + pl, p, n);
	tk_add(t, tmp, pl + n);
}

/* ---- UTF-8 ---- */

/* Decodes one code point at p (< e); *len_r its octets (1 for an invalid
 * byte, which decodes to U+FFFD). */
static uint32_t utf8_next(const unsigned char *p, const unsigned char *e, size_t *len_r)
{
	uint32_t c = p[0];
	size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
	if (n == 0 || (size_t)(e - p) < n) {
		*len_r = 1;
		return 0xfffd;
	}
	if (n == 1) {
		*len_r = 1;
		return c;
	}
	c &= 0x7f >> n;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			*len_r = 1;
			return 0xfffd;
		}
		c = (c << 6) | (p[i] & 0x3f);
	}
	*len_r = n;
	return c;
}

static size_t utf8_put(uint32_t c, char *out)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | (c >> 6));
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | (c >> 12));
		out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (c >> 18));
	out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* Simple lowercase of the scripts most mail is written in. */
static uint32_t uc_lower(uint32_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c + 32;
	if (c >= 0xc0 && c <= 0xde && c != 0xd7)
		return c + 32;
	if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
		return c + 32;
	if (c >= 0x410 && c <= 0x42f)
		return c + 32;
	if (c >= 0x400 && c <= 0x40f)
		return c + 80;
	if (c >= 0x100 && c <= 0x17f && (c & 1) == 0)
		return c + 1; /* Latin Extended-A pairs (mostly) */
	return c;
}

/* Han, kana: written without spaces. */
static bool uc_cjk(uint32_t c)
{
	return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf) ||
	       (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xf900 && c <= 0xfaff);
}

/* A letter or digit, roughly: ASCII alnum (and ' $ inside words is not
 * kept), everything above U+00BF except the punctuation, symbol and space
 * blocks. */
static bool uc_word(uint32_t c)
{
	if (c < 0x80)
		return isalnum((int)c) || c == '$' || c == '%';
	if (c < 0xc0 || c == 0xd7 || c == 0xf7 || c == 0xfffd)
		return false;
	if (c >= 0x2000 && c <= 0x2bff) /* punctuation, symbols, arrows, box drawing */
		return false;
	if (c >= 0x3000 && c <= 0x303f) /* CJK punctuation */
		return false;
	if (c >= 0xfe30 && c <= 0xfe4f)
		return false;
	if (c >= 0xff00 && c <= 0xff0f)
		return false;
	if (c >= 0x1f000) /* emoji and pictographs */
		return false;
	return true;
}

/* A word of cps code points (lowercased UTF-8 in w, n octets). */
static void word_emit(struct tk *t, const char *prefix, const char *w, size_t n, size_t cps)
{
	if (cps < 2)
		return;
	if (n > BAYES_WORD_MAX) {
		char tmp[32];
		size_t l;
		utf8_next((const unsigned char *)w, (const unsigned char *)w + n, &l);
		int k = snprintf(tmp, sizeof tmp, "skip:%.*s:%zu", (int)l, w, n / 10 * 10);
		tk_add(t, tmp, (size_t)k);
		return;
	}
	if (prefix != NULL)
		tk_add2(t, prefix, w, n);
	else
		tk_add(t, w, n);
}

/* Splits UTF-8 text into words (and CJK bigrams). */
static void text_words(struct tk *t, const char *prefix, const char *s, size_t len)
{
	if (len == 0)
		return;
	const unsigned char *p = (const unsigned char *)s, *e = p + len;
	char w[BAYES_WORD_MAX + 8];
	size_t wn = 0, cps = 0, total = 0;
	uint32_t prev_cjk = 0;
	char pc[4];
	size_t pcn = 0;
	while (p < e) {
		size_t l;
		uint32_t c = utf8_next(p, e, &l);
		p += l;
		if (uc_cjk(c)) {
			if (cps > 0) {
				word_emit(t, prefix, w, total, cps);
				wn = cps = total = 0;
			}
			char cc[4];
			size_t cn = utf8_put(c, cc);
			if (prev_cjk) {
				char bg[8];
				memcpy(bg, pc, pcn);
				memcpy(bg + pcn, cc, cn);
				if (prefix != NULL)
					tk_add2(t, prefix, bg, pcn + cn);
				else
					tk_add(t, bg, pcn + cn);
			}
			memcpy(pc, cc, cn);
			pcn = cn;
			prev_cjk = c;
			continue;
		}
		prev_cjk = 0;
		if (uc_word(c)) {
			char cc[4];
			size_t cn = utf8_put(uc_lower(c), cc);
			if (wn + cn <= BAYES_WORD_MAX + 4) {
				memcpy(w + wn, cc, cn);
				wn += cn;
			}
			total += cn;
			cps++;
			continue;
		}
		if (cps > 0) {
			word_emit(t, prefix, w, total > wn ? total : wn, cps);
			wn = cps = total = 0;
		}
	}
	if (cps > 0)
		word_emit(t, prefix, w, total > wn ? total : wn, cps);
}

/* ---- URLs, HTML ---- */

static void host_emit(struct tk *t, const char *h, size_t n)
{
	char low[BAYES_HOST_MAX];
	if (n == 0 || n > sizeof low)
		return;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)h[i]);
	while (n > 0 && low[n - 1] == '.')
		n--;
	if (n == 0)
		return;
	tk_add2(t, "url:", low, n);
	/* the last two labels: the site behind its many subdomains */
	size_t dots = 0, i = n;
	while (i > 0) {
		if (low[i - 1] == '.' && ++dots == 2)
			break;
		i--;
	}
	if (dots == 2)
		tk_add2(t, "url:", low + i, n - i);
}

/* Every http(s):// URL's host in s. */
static void text_urls(struct tk *t, const char *s, size_t n)
{
	if (n == 0)
		return;
	for (size_t i = 0; i + 7 < n; i++) {
		size_t k;
		if ((s[i] | 0x20) != 'h')
			continue;
		if (strncasecmp(s + i, "http://", 7) == 0)
			k = i + 7;
		else if (i + 8 < n && strncasecmp(s + i, "https://", 8) == 0)
			k = i + 8;
		else
			continue;
		size_t h = k;
		while (k < n && (isalnum((unsigned char)s[k]) || s[k] == '.' || s[k] == '-' ||
				 s[k] == '_' || (unsigned char)s[k] >= 0x80))
			k++;
		/* userinfo ("http://bank.com@evil.example/"): the host follows '@' */
		if (k < n && s[k] == '@') {
			h = ++k;
			while (k < n && (isalnum((unsigned char)s[k]) || s[k] == '.' ||
					 s[k] == '-' || (unsigned char)s[k] >= 0x80))
				k++;
		}
		host_emit(t, s + h, k - h);
		i = k > i ? k - 1 : i;
	}
}

static const struct {
	const char *name;
	uint32_t cp;
} entities[] = {
	{"amp", '&'},   {"lt", '<'},     {"gt", '>'},     {"quot", '"'},  {"apos", '\''},
	{"nbsp", ' '},  {"eacute", 0xe9}, {"egrave", 0xe8}, {"agrave", 0xe0}, {"uuml", 0xfc},
	{"ouml", 0xf6}, {"auml", 0xe4},  {"szlig", 0xdf}, {"ccedil", 0xe7}, {"euro", 0x20ac},
	{"copy", 0xa9}, {"reg", 0xae},
};

/* HTML to text: tags dropped (their href/src hosts kept as url: tokens,
 * a tag ends a word), <script>/<style> content dropped, entities decoded. */
static void html_text(struct tk *t, const char *s, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		char c = s[i];
		if (c == '<') {
			size_t j = i + 1;
			while (j < n && s[j] != '>')
				j++;
			text_urls(t, s + i, j - i);
			bool skip = (j - i >= 7 && strncasecmp(s + i + 1, "script", 6) == 0) ||
				    (j - i >= 6 && strncasecmp(s + i + 1, "style", 5) == 0);
			i = j < n ? j + 1 : n;
			if (skip) /* up to the closing tag */
				while (i + 1 < n && !(s[i] == '<' && s[i + 1] == '/'))
					i++;
			buf_appendc(out, ' ');
			continue;
		}
		if (c == '&') {
			size_t j = i + 1;
			while (j < n && j - i < 10 && s[j] != ';')
				j++;
			if (j < n && s[j] == ';') {
				uint32_t cp = 0;
				if (s[i + 1] == '#') {
					const char *q = s + i + 2;
					cp = (*q == 'x' || *q == 'X')
						     ? (uint32_t)strtoul(q + 1, NULL, 16)
						     : (uint32_t)strtoul(q, NULL, 10);
				} else {
					for (size_t k = 0; k < sizeof entities / sizeof *entities; k++)
						if (strlen(entities[k].name) == j - i - 1 &&
						    strncmp(entities[k].name, s + i + 1, j - i - 1) == 0)
							cp = entities[k].cp;
				}
				if (cp > 0 && cp < 0x110000) {
					char u[4];
					buf_append(out, u, utf8_put(cp, u));
					i = j + 1;
					continue;
				}
			}
		}
		buf_appendc(out, c);
		i++;
	}
}

/* ---- header ---- */

/* Addresses in a From/Reply-To value: every "local@domain" run. */
static void header_addrs(struct tk *t, const char *name, const char *v, size_t n)
{
	char pre[32], dpre[40];
	snprintf(pre, sizeof pre, "%s:", name);
	snprintf(dpre, sizeof dpre, "%s-domain:", name);
	size_t from = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] != '@')
			continue;
		/* the run around this '@': back at most to the end of the last
		 * run looked at, and the loop goes on after it (each octet seen
		 * twice at most: "@@@@..." is linear, not quadratic) */
		size_t a = i, b = i + 1;
		while (a > from && !strchr(" \t\r\n<>\"(),;:", v[a - 1]))
			a--;
		while (b < n && !strchr(" \t\r\n<>\"(),;:", v[b]))
			b++;
		from = b;
		if (b - i < 2 || b - a > BAYES_HOST_MAX) {
			i = b;
			continue;
		}
		char low[BAYES_HOST_MAX + 1];
		for (size_t k = a; k < b; k++)
			low[k - a] = (char)tolower((unsigned char)v[k]);
		tk_add2(t, pre, low, b - a);
		tk_add2(t, dpre, low + (i - a) + 1, b - i - 1);
		i = b;
	}
}

/* A header value's first token (a MIME type, an encoding), lowercased. */
static void header_atom(struct tk *t, const char *prefix, const char *v, size_t n)
{
	char low[64];
	size_t k = 0;
	while (k < n && (v[k] == ' ' || v[k] == '\t'))
		k++;
	size_t j = 0;
	while (k < n && j < sizeof low && !strchr(" \t\r\n;", v[k]))
		low[j++] = (char)tolower((unsigned char)v[k++]);
	if (j > 0)
		tk_add2(t, prefix, low, j);
}

/* A parameter's value (name="x" or name=x) inside a header value: appended
 * to out (RFC 2047 words decoded); false if absent. RFC 2231 continuations
 * (name*0=) are read only in their first piece. */
static bool header_param(const char *v, size_t n, const char *param, struct buf *out)
{
	size_t pl = strlen(param);
	for (size_t i = 0; i + pl < n; i++) {
		if ((i > 0 && !strchr(" \t;\n", v[i - 1])) || strncasecmp(v + i, param, pl) != 0)
			continue;
		size_t k = i + pl;
		if (k < n && v[k] == '*') /* RFC 2231: name*=utf-8''x or name*0= */
			while (k < n && v[k] != '=')
				k++;
		if (k >= n || v[k] != '=')
			continue;
		k++;
		size_t a = k;
		if (k < n && v[k] == '"') {
			a = ++k;
			while (k < n && v[k] != '"')
				k++;
		} else {
			while (k < n && !strchr(" \t\r\n;", v[k]))
				k++;
		}
		const char *p = v + a;
		size_t len = k - a;
		const char *q = memmem(p, len, "''", 2); /* RFC 2231 4: charset'lang'value */
		if (q != NULL) {
			len -= (size_t)(q + 2 - p);
			p = q + 2;
		}
		mime_decode_words(p, len, out);
		return true;
	}
	return false;
}

static void part_header(struct tk *t, const char *h, size_t n, bool top, bool *html_r,
			bool *attach_r)
{
	const char *pos = h, *end = h + n;
	struct mime_field f;
	struct buf tmp = {0};
	*html_r = false;
	*attach_r = false;
	bool first = true;
	for (; mime_field_next(&pos, end, &f); first = false) {
		/* a field's first BAYES_FIELD_MAX octets only: a folded Subject
		 * of megabytes is not read whole (the text bound, for headers) */
		if (f.value_len > BAYES_FIELD_MAX)
			f.value_len = BAYES_FIELD_MAX;
		if (top && mime_field_is(&f, "Subject")) {
			buf_reset(&tmp);
			mime_decode_words(f.value, f.value_len, &tmp);
			text_words(t, "subject:", tmp.data ? tmp.data : "", tmp.len);
			text_urls(t, tmp.data ? tmp.data : "", tmp.len);
		} else if (top && mime_field_is(&f, "From")) {
			header_addrs(t, "from", f.value, f.value_len);
			buf_reset(&tmp);
			mime_decode_words(f.value, f.value_len, &tmp);
			/* the display name's words */
			size_t k = 0;
			while (k < tmp.len && tmp.data[k] != '<' && tmp.data[k] != '@')
				k++;
			if (k < tmp.len && tmp.data[k] == '<')
				text_words(t, "from-name:", tmp.data, k);
		} else if (top && mime_field_is(&f, "Reply-To")) {
			header_addrs(t, "reply-to", f.value, f.value_len);
		} else if (top && first && mime_field_is(&f, "Return-Path")) {
			/* RFC 5321 4.4: the final delivery's Return-Path is the
			 * message's first field (the store writes it so); one
			 * further down came from the sender, who could otherwise
			 * borrow the envelope senders the model learned as ham */
			header_addrs(t, "return-path", f.value, f.value_len);
		} else if (top && (mime_field_is(&f, "X-Mailer") || mime_field_is(&f, "User-Agent"))) {
			buf_reset(&tmp);
			mime_decode_words(f.value, f.value_len, &tmp);
			text_words(t, "x-mailer:", tmp.data ? tmp.data : "", tmp.len);
		} else if (mime_field_is(&f, "Content-Type")) {
			header_atom(t, "ct:", f.value, f.value_len);
			*html_r = f.value_len >= 9 && memmem(f.value, f.value_len < 40 ? f.value_len : 40,
							     "html", 4) != NULL;
			buf_reset(&tmp);
			if (header_param(f.value, f.value_len, "charset", &tmp) && tmp.len > 0)
				header_atom(t, "charset:", tmp.data, tmp.len);
			buf_reset(&tmp);
			if (header_param(f.value, f.value_len, "name", &tmp)) {
				*attach_r = true;
				text_words(t, "attach:", tmp.data, tmp.len);
				const char *dot = tmp.len ? memrchr(tmp.data, '.', tmp.len) : NULL;
				if (dot != NULL)
					header_atom(t, "attach-ext:", dot + 1,
						    tmp.len - (size_t)(dot + 1 - tmp.data));
			}
		} else if (mime_field_is(&f, "Content-Transfer-Encoding")) {
			header_atom(t, "cte:", f.value, f.value_len);
		} else if (mime_field_is(&f, "Content-Disposition")) {
			if (f.value_len >= 10 && strncasecmp(f.value, "attachment", 10) == 0)
				*attach_r = true;
			buf_reset(&tmp);
			if (header_param(f.value, f.value_len, "filename", &tmp)) {
				*attach_r = true;
				text_words(t, "attach:", tmp.data, tmp.len);
				const char *dot = tmp.len ? memrchr(tmp.data, '.', tmp.len) : NULL;
				if (dot != NULL)
					header_atom(t, "attach-ext:", dot + 1,
						    tmp.len - (size_t)(dot + 1 - tmp.data));
			}
		}
	}
	buf_free(&tmp);
}

static int tok_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct bayes_token *)a)->hash, y = ((const struct bayes_token *)b)->hash;
	return x < y ? -1 : x > y;
}

void bayes_tokenize(const char *msg, size_t len, struct bayes_tokens *out)
{
	struct tk t = {0};
	t.set_cap = TK_SET_MIN; /* grows in tk_add, at most TK_SET_MAX */
	t.set = xcalloc(t.set_cap, sizeof *t.set);
	struct buf dec = {0}, utf = {0}, txt = {0}, cs = {0};
	struct mime_part_rec *parts;
	size_t n_parts = mime_parts_list(msg, len, &parts);
	for (size_t i = 0; i < n_parts && t.n < BAYES_MAX_TOKENS; i++) {
		struct mime_part_rec r = parts[i];
		if (r.hdr_off > len || r.hdr_len > len - r.hdr_off || r.body_off > len ||
		    r.body_len > len - r.body_off)
			continue;
		bool html, attach;
		part_header(&t, msg + r.hdr_off, (size_t)r.hdr_len, i == 0, &html, &attach);
		if (r.kind != MIME_KIND_LEAF || attach || t.text >= BAYES_MAX_TEXT)
			continue;
		buf_reset(&cs);
		if (!mime_text_charset(msg + r.hdr_off, (size_t)r.hdr_len, &cs))
			continue; /* not text: only its name counts */
		size_t blen = (size_t)r.body_len;
		/* encoded text is at most 4/3 of the text: bound what is decoded */
		if (blen > (BAYES_MAX_TEXT - t.text) * 2)
			blen = (BAYES_MAX_TEXT - t.text) * 2;
		buf_reset(&dec);
		if (!mime_decode((enum mime_encoding)r.enc, msg + r.body_off, blen, &dec))
			buf_append(&dec, msg + r.body_off, blen);
		buf_reset(&utf);
		if (cs.len == 0 || !mime_to_utf8(cs.data, dec.data ? dec.data : "", dec.len, &utf))
			mime_to_utf8("utf-8", dec.data ? dec.data : "", dec.len, &utf);
		const char *s = utf.data ? utf.data : "";
		size_t n = utf.len;
		if (html) {
			buf_reset(&txt);
			html_text(&t, s, n, &txt);
			s = txt.data ? txt.data : "";
			n = txt.len;
		}
		if (n > BAYES_MAX_TEXT - t.text)
			n = BAYES_MAX_TEXT - t.text;
		t.text += n;
		text_urls(&t, s, n);
		text_words(&t, NULL, s, n);
	}
	free(parts);
	buf_free(&dec);
	buf_free(&utf);
	buf_free(&txt);
	buf_free(&cs);
	free(t.set);
	/* the texts' block moves no more: the pointers into it, then the sort */
	out->texts = t.texts.data;
	for (size_t i = 0; i < t.n; i++)
		t.v[i].text = out->texts + t.off[i];
	free(t.off);
	if (t.n > 1)
		qsort(t.v, t.n, sizeof *t.v, tok_cmp);
	out->v = t.v;
	out->n = t.n;
}

void bayes_tokens_free(struct bayes_tokens *t)
{
	free(t->v);
	free(t->texts);
	t->v = NULL;
	t->texts = NULL;
	t->n = 0;
}
