/* HTML reduced to text (see html.h). The states follow the HTML5 tokenizer
 * (WHATWG HTML 13.2.5): data, tag open, end tag open, tag name, attribute
 * value (double/single quoted), markup declaration, comment, bogus comment,
 * RAWTEXT (script, style; title's RCDATA is dropped the same way) and the
 * character reference states (13.2.5.72-80). */
#include "mime/html.h"

#include <stdlib.h>
#include <string.h>

#include "core/hex.h"

enum {
	S_TEXT,    /* data */
	S_LT,      /* after '<' */
	S_ENDLT,   /* after "</" */
	S_NAME,    /* a tag name */
	S_ATTR,    /* inside a tag, after its name */
	S_EQ,      /* after '=' in a tag: a value may be quoted */
	S_DQ,      /* "value" */
	S_SQ,      /* 'value' */
	S_DECL,    /* after "<!": aux = the dashes seen (0, 1) */
	S_COMMENT, /* aux: 0, 1 or 2 dashes before, 3 "--!" */
	S_BOGUS,   /* "<!x", "<?", "</ ": up to '>' */
	S_RAW,     /* content of raw (a RAWTEXT element): aux = octets of
	            * "</name" matched */
	S_ENT,     /* after '&': a name in ent */
	S_NUM,     /* after "&#": decimal digits, aux = digits seen (capped) */
	S_HEX,     /* after "&#x": hex digits */
};

enum { SEP_NONE, SEP_SPACE, SEP_LINE };

/* What an element is for the text (K_RAW: its content is dropped too). */
enum { K_INLINE, K_SPACE, K_LINE, K_RAW };

static const struct element {
	const char *name;
	uint8_t kind;
} elements[] = {
    /* sorted (strcmp): bsearch */
    {"address", K_LINE},  {"article", K_LINE},    {"aside", K_LINE},   {"blockquote", K_LINE},
    {"body", K_LINE},     {"br", K_LINE},         {"button", K_SPACE}, {"caption", K_LINE},
    {"center", K_LINE},   {"dd", K_LINE},         {"details", K_LINE}, {"dialog", K_LINE},
    {"dir", K_LINE},      {"div", K_LINE},        {"dl", K_LINE},      {"dt", K_LINE},
    {"fieldset", K_LINE}, {"figcaption", K_LINE}, {"figure", K_LINE},  {"footer", K_LINE},
    {"form", K_LINE},     {"frame", K_LINE},      {"h1", K_LINE},      {"h2", K_LINE},
    {"h3", K_LINE},       {"h4", K_LINE},         {"h5", K_LINE},      {"h6", K_LINE},
    {"head", K_LINE},     {"header", K_LINE},     {"hr", K_LINE},      {"html", K_LINE},
    {"iframe", K_LINE},   {"img", K_SPACE},       {"input", K_SPACE},  {"legend", K_LINE},
    {"li", K_LINE},       {"main", K_LINE},       {"menu", K_LINE},    {"nav", K_LINE},
    {"noscript", K_LINE}, {"ol", K_LINE},         {"option", K_SPACE}, {"p", K_LINE},
    {"pre", K_LINE},      {"script", K_RAW},      {"section", K_LINE}, {"select", K_SPACE},
    {"style", K_RAW},     {"summary", K_LINE},    {"table", K_LINE},   {"tbody", K_LINE},
    {"td", K_SPACE},      {"textarea", K_SPACE},  {"tfoot", K_LINE},   {"th", K_SPACE},
    {"thead", K_LINE},    {"title", K_RAW},       {"tr", K_LINE},      {"ul", K_LINE},
};

/* HTML 4.01 24.2-24.4 (the Latin-1, symbol and special sets) and &apos;
 * (XHTML, HTML5), sorted by strcmp: bsearch. */
static const struct entity {
	char name[9];
	uint32_t cp;
} entities[] = {
    {"AElig", 0xc6},     {"Aacute", 0xc1},   {"Acirc", 0xc2},     {"Agrave", 0xc0},
    {"Alpha", 0x391},    {"Aring", 0xc5},    {"Atilde", 0xc3},    {"Auml", 0xc4},
    {"Beta", 0x392},     {"Ccedil", 0xc7},   {"Chi", 0x3a7},      {"Dagger", 0x2021},
    {"Delta", 0x394},    {"ETH", 0xd0},      {"Eacute", 0xc9},    {"Ecirc", 0xca},
    {"Egrave", 0xc8},    {"Epsilon", 0x395}, {"Eta", 0x397},      {"Euml", 0xcb},
    {"Gamma", 0x393},    {"Iacute", 0xcd},   {"Icirc", 0xce},     {"Igrave", 0xcc},
    {"Iota", 0x399},     {"Iuml", 0xcf},     {"Kappa", 0x39a},    {"Lambda", 0x39b},
    {"Mu", 0x39c},       {"Ntilde", 0xd1},   {"Nu", 0x39d},       {"OElig", 0x152},
    {"Oacute", 0xd3},    {"Ocirc", 0xd4},    {"Ograve", 0xd2},    {"Omega", 0x3a9},
    {"Omicron", 0x39f},  {"Oslash", 0xd8},   {"Otilde", 0xd5},    {"Ouml", 0xd6},
    {"Phi", 0x3a6},      {"Pi", 0x3a0},      {"Prime", 0x2033},   {"Psi", 0x3a8},
    {"Rho", 0x3a1},      {"Scaron", 0x160},  {"Sigma", 0x3a3},    {"THORN", 0xde},
    {"Tau", 0x3a4},      {"Theta", 0x398},   {"Uacute", 0xda},    {"Ucirc", 0xdb},
    {"Ugrave", 0xd9},    {"Upsilon", 0x3a5}, {"Uuml", 0xdc},      {"Xi", 0x39e},
    {"Yacute", 0xdd},    {"Yuml", 0x178},    {"Zeta", 0x396},     {"aacute", 0xe1},
    {"acirc", 0xe2},     {"acute", 0xb4},    {"aelig", 0xe6},     {"agrave", 0xe0},
    {"alefsym", 0x2135}, {"alpha", 0x3b1},   {"amp", 0x26},       {"and", 0x2227},
    {"ang", 0x2220},     {"apos", 0x27},     {"aring", 0xe5},     {"asymp", 0x2248},
    {"atilde", 0xe3},    {"auml", 0xe4},     {"bdquo", 0x201e},   {"beta", 0x3b2},
    {"brvbar", 0xa6},    {"bull", 0x2022},   {"cap", 0x2229},     {"ccedil", 0xe7},
    {"cedil", 0xb8},     {"cent", 0xa2},     {"chi", 0x3c7},      {"circ", 0x2c6},
    {"clubs", 0x2663},   {"cong", 0x2245},   {"copy", 0xa9},      {"crarr", 0x21b5},
    {"cup", 0x222a},     {"curren", 0xa4},   {"dArr", 0x21d3},    {"dagger", 0x2020},
    {"darr", 0x2193},    {"deg", 0xb0},      {"delta", 0x3b4},    {"diams", 0x2666},
    {"divide", 0xf7},    {"eacute", 0xe9},   {"ecirc", 0xea},     {"egrave", 0xe8},
    {"empty", 0x2205},   {"emsp", 0x2003},   {"ensp", 0x2002},    {"epsilon", 0x3b5},
    {"equiv", 0x2261},   {"eta", 0x3b7},     {"eth", 0xf0},       {"euml", 0xeb},
    {"euro", 0x20ac},    {"exist", 0x2203},  {"fnof", 0x192},     {"forall", 0x2200},
    {"frac12", 0xbd},    {"frac14", 0xbc},   {"frac34", 0xbe},    {"frasl", 0x2044},
    {"gamma", 0x3b3},    {"ge", 0x2265},     {"gt", 0x3e},        {"hArr", 0x21d4},
    {"harr", 0x2194},    {"hearts", 0x2665}, {"hellip", 0x2026},  {"iacute", 0xed},
    {"icirc", 0xee},     {"iexcl", 0xa1},    {"igrave", 0xec},    {"image", 0x2111},
    {"infin", 0x221e},   {"int", 0x222b},    {"iota", 0x3b9},     {"iquest", 0xbf},
    {"isin", 0x2208},    {"iuml", 0xef},     {"kappa", 0x3ba},    {"lArr", 0x21d0},
    {"lambda", 0x3bb},   {"lang", 0x2329},   {"laquo", 0xab},     {"larr", 0x2190},
    {"lceil", 0x2308},   {"ldquo", 0x201c},  {"le", 0x2264},      {"lfloor", 0x230a},
    {"lowast", 0x2217},  {"loz", 0x25ca},    {"lrm", 0x200e},     {"lsaquo", 0x2039},
    {"lsquo", 0x2018},   {"lt", 0x3c},       {"macr", 0xaf},      {"mdash", 0x2014},
    {"micro", 0xb5},     {"middot", 0xb7},   {"minus", 0x2212},   {"mu", 0x3bc},
    {"nabla", 0x2207},   {"nbsp", 0xa0},     {"ndash", 0x2013},   {"ne", 0x2260},
    {"ni", 0x220b},      {"not", 0xac},      {"notin", 0x2209},   {"nsub", 0x2284},
    {"ntilde", 0xf1},    {"nu", 0x3bd},      {"oacute", 0xf3},    {"ocirc", 0xf4},
    {"oelig", 0x153},    {"ograve", 0xf2},   {"oline", 0x203e},   {"omega", 0x3c9},
    {"omicron", 0x3bf},  {"oplus", 0x2295},  {"or", 0x2228},      {"ordf", 0xaa},
    {"ordm", 0xba},      {"oslash", 0xf8},   {"otilde", 0xf5},    {"otimes", 0x2297},
    {"ouml", 0xf6},      {"para", 0xb6},     {"part", 0x2202},    {"permil", 0x2030},
    {"perp", 0x22a5},    {"phi", 0x3c6},     {"pi", 0x3c0},       {"piv", 0x3d6},
    {"plusmn", 0xb1},    {"pound", 0xa3},    {"prime", 0x2032},   {"prod", 0x220f},
    {"prop", 0x221d},    {"psi", 0x3c8},     {"quot", 0x22},      {"rArr", 0x21d2},
    {"radic", 0x221a},   {"rang", 0x232a},   {"raquo", 0xbb},     {"rarr", 0x2192},
    {"rceil", 0x2309},   {"rdquo", 0x201d},  {"real", 0x211c},    {"reg", 0xae},
    {"rfloor", 0x230b},  {"rho", 0x3c1},     {"rlm", 0x200f},     {"rsaquo", 0x203a},
    {"rsquo", 0x2019},   {"sbquo", 0x201a},  {"scaron", 0x161},   {"sdot", 0x22c5},
    {"sect", 0xa7},      {"shy", 0xad},      {"sigma", 0x3c3},    {"sigmaf", 0x3c2},
    {"sim", 0x223c},     {"spades", 0x2660}, {"sub", 0x2282},     {"sube", 0x2286},
    {"sum", 0x2211},     {"sup", 0x2283},    {"sup1", 0xb9},      {"sup2", 0xb2},
    {"sup3", 0xb3},      {"supe", 0x2287},   {"szlig", 0xdf},     {"tau", 0x3c4},
    {"there4", 0x2234},  {"theta", 0x3b8},   {"thetasym", 0x3d1}, {"thinsp", 0x2009},
    {"thorn", 0xfe},     {"tilde", 0x2dc},   {"times", 0xd7},     {"trade", 0x2122},
    {"uArr", 0x21d1},    {"uacute", 0xfa},   {"uarr", 0x2191},    {"ucirc", 0xfb},
    {"ugrave", 0xf9},    {"uml", 0xa8},      {"upsih", 0x3d2},    {"upsilon", 0x3c5},
    {"uuml", 0xfc},      {"weierp", 0x2118}, {"xi", 0x3be},       {"yacute", 0xfd},
    {"yen", 0xa5},       {"yuml", 0xff},     {"zeta", 0x3b6},     {"zwj", 0x200d},
    {"zwnj", 0x200c},
};

/* HTML5 13.2.5.80: numeric references 0x80-0x9F are windows-1252 (0: left
 * as the C1 code point) */
static const uint16_t cp1252[32] = {
    0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017d, 0,      0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178,
};

#define CP_MAX 0x10ffff

static inline bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* an octet of text that needs no look: not '<', '&', white space */
static inline bool is_plain(unsigned char c)
{
	return c > '<' || (c != '<' && c != '&' && !is_ws(c));
}

static inline bool is_alpha(unsigned char c)
{
	return (unsigned)((c | 0x20) - 'a') < 26u;
}

static inline bool is_alnum(unsigned char c)
{
	return is_alpha(c) || (unsigned)(c - '0') < 10u;
}

static void sep(struct mime_html *h, int kind)
{
	if (kind > h->pend)
		h->pend = (uint8_t)kind;
}

/* text: the pending separator first (none before the first text) */
static void emit(struct mime_html *h, struct buf *out, const char *p, size_t n)
{
	if (h->pend != SEP_NONE && h->started)
		buf_appendc(out, h->pend == SEP_LINE ? '\n' : ' ');
	h->pend = SEP_NONE;
	h->started = true;
	buf_append(out, p, n);
}

/* a decoded reference: white space is white space, invisible characters
 * vanish, what is not a character becomes U+FFFD */
static void emit_cp(struct mime_html *h, struct buf *out, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp >= 0x80 && cp <= 0x9f && cp1252[cp - 0x80] != 0)
		cp = cp1252[cp - 0x80];
	if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == 0xa0) {
		sep(h, SEP_SPACE);
		return;
	}
	if (cp == 0xad || (cp >= 0x200b && cp <= 0x200f) || cp == 0x2060 || cp == 0xfeff)
		return;
	if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > CP_MAX)
		cp = 0xfffd;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	emit(h, out, b, n);
}

static int ent_cmp(const void *k, const void *e)
{
	return strcmp((const char *)k, ((const struct entity *)e)->name);
}

static int elem_cmp(const void *k, const void *e)
{
	return strcmp((const char *)k, ((const struct element *)e)->name);
}

/* The named reference in h->ent (ent_len octets); semi: ended by ';'.
 * Without ';' only the Latin-1 names count (HTML5's legacy names). */
static bool ent_lookup(const struct mime_html *h, bool semi, uint32_t *cp_r)
{
	char key[MIME_HTML_ENT_MAX + 1];

	if (h->ent_len == 0 || h->ent_len > 8)
		return false;
	memcpy(key, h->ent, h->ent_len);
	key[h->ent_len] = '\0';
	const void *e = bsearch(key, entities, sizeof entities / sizeof entities[0],
	                        sizeof entities[0], ent_cmp);
	if (e == NULL)
		return false;
	uint32_t cp = ((const struct entity *)e)->cp;
	if (!semi && (cp >= 0x100 || cp == '\''))
		return false;
	*cp_r = cp;
	return true;
}

/* The named reference ends (at c, not consumed unless ';'): decoded or
 * written as it was. */
static void ent_end(struct mime_html *h, struct buf *out, bool semi)
{
	uint32_t cp;

	if (ent_lookup(h, semi, &cp)) {
		emit_cp(h, out, cp);
		return;
	}
	char raw[MIME_HTML_ENT_MAX + 2];
	raw[0] = '&';
	memcpy(raw + 1, h->ent, h->ent_len);
	size_t n = 1 + (size_t)h->ent_len;
	if (semi)
		raw[n++] = ';';
	emit(h, out, raw, n);
}

/* A numeric reference ends (HTML5 13.2.5.80): "&#" or "&#x" without a
 * digit is text. */
static void num_end(struct mime_html *h, struct buf *out)
{
	if (h->aux == 0) {
		emit(h, out, h->ent, h->ent_len);
		return;
	}
	emit_cp(h, out, h->num);
}

/* A tag is complete (at its '>'). */
static void tag_end(struct mime_html *h)
{
	char key[MIME_HTML_NAME_MAX + 1];

	h->state = S_TEXT;
	if (h->name_len > MIME_HTML_NAME_MAX)
		return;
	memcpy(key, h->name, h->name_len);
	key[h->name_len] = '\0';
	const struct element *e = bsearch(key, elements, sizeof elements / sizeof elements[0],
	                                  sizeof elements[0], elem_cmp);
	if (e == NULL)
		return;
	size_t i = (size_t)(e - elements);
	switch (elements[i].kind) {
	case K_SPACE:
		sep(h, SEP_SPACE);
		break;
	case K_LINE:
		sep(h, SEP_LINE);
		break;
	case K_RAW:
		/* a start tag (self-closing too, as HTML5 reads <script/>)
		 * opens its content; an end tag outside it is nothing */
		sep(h, SEP_SPACE);
		if (!h->closing) {
			h->state = S_RAW;
			h->raw = (uint8_t)i;
			h->aux = 0;
		}
		break;
	default:
		break;
	}
}

static void name_add(struct mime_html *h, unsigned char c)
{
	if (h->name_len < MIME_HTML_NAME_MAX)
		h->name[h->name_len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	else
		h->name_len = MIME_HTML_NAME_MAX + 1;
}

void mime_html_init(struct mime_html *h)
{
	memset(h, 0, sizeof(*h));
}

void mime_html_feed(struct mime_html *h, const char *in, size_t n, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];

		switch (h->state) {
		case S_TEXT: {
			/* a run of text, single spaces between words included
			 * (what collapsing them gives) */
			size_t j = i;
			while (j < n) {
				if (is_plain(p[j]))
					j++;
				else if (p[j] == ' ' && j > i && j + 1 < n && is_plain(p[j + 1]))
					j += 2;
				else
					break;
			}
			if (j > i) {
				emit(h, out, in + i, j - i);
				i = j;
				continue;
			}
			if (c == '<') {
				h->state = S_LT;
			} else if (c == '&') {
				h->state = S_ENT;
				h->ent_len = 0;
			} else {
				sep(h, SEP_SPACE);
			}
			i++;
			continue;
		}
		case S_LT:
			h->closing = false;
			h->name_len = 0;
			if (is_alpha(c)) {
				h->state = S_NAME;
				name_add(h, c);
			} else if (c == '/') {
				h->state = S_ENDLT;
			} else if (c == '!') {
				h->state = S_DECL;
				h->aux = 0;
			} else if (c == '?') {
				h->state = S_BOGUS;
			} else {
				/* "a < b", "<3": text (13.2.5.6) */
				h->state = S_TEXT;
				emit(h, out, "<", 1);
				continue; /* c again, as text */
			}
			i++;
			continue;
		case S_ENDLT:
			if (is_alpha(c)) {
				h->state = S_NAME;
				h->closing = true;
				name_add(h, c);
			} else if (c == '>') {
				h->state = S_TEXT; /* "</>": nothing */
			} else {
				h->state = S_BOGUS;
			}
			i++;
			continue;
		case S_NAME:
			if (c == '>')
				tag_end(h);
			else if (is_ws(c) || c == '/')
				h->state = S_ATTR;
			else
				name_add(h, c);
			i++;
			continue;
		case S_ATTR:
		case S_EQ:
			if (h->state == S_ATTR && c != '>' && c != '=') {
				/* nothing else changes the state */
				while (i < n && p[i] != '>' && p[i] != '=')
					i++;
				continue;
			}
			if (c == '>') {
				tag_end(h);
			} else if (h->state == S_EQ && (c == '"' || c == '\'')) {
				h->state = c == '"' ? S_DQ : S_SQ;
			} else if (c == '=') {
				h->state = S_EQ;
			} else if (!is_ws(c)) {
				h->state = S_ATTR;
			}
			i++;
			continue;
		case S_DQ:
		case S_SQ: {
			const void *q = memchr(in + i, h->state == S_DQ ? '"' : '\'', n - i);
			if (q == NULL) {
				i = n;
				continue;
			}
			i = (size_t)((const char *)q - in) + 1;
			h->state = S_ATTR;
			continue;
		}
		case S_DECL:
			if (c == '-' && h->aux == 0) {
				h->aux = 1;
				i++;
			} else if (c == '-') {
				/* "<!--": "<!-->" and "<!--->" close at once
				 * (13.2.5.44, 45) */
				h->state = S_COMMENT;
				h->aux = 2;
				i++;
			} else {
				h->state = S_BOGUS; /* c again: '>' ends it */
			}
			continue;
		case S_COMMENT:
			if (c == '-')
				h->aux = h->aux == 0 ? 1 : h->aux == 3 ? 1 : 2;
			else if (c == '!')
				h->aux = h->aux == 2 ? 3 : 0;
			else if (c == '>' && h->aux >= 2)
				h->state = S_TEXT; /* "-->", "--!>" (13.2.5.50, 52) */
			else
				h->aux = 0;
			i++;
			continue;
		case S_BOGUS: {
			const void *gt = memchr(in + i, '>', n - i);
			if (gt == NULL) {
				i = n;
				continue;
			}
			i = (size_t)((const char *)gt - in) + 1;
			h->state = S_TEXT;
			continue;
		}
		case S_RAW: {
			/* up to "</name" and a white space, '/' or '>' */
			const char *nm = elements[h->raw].name;
			size_t nl = strlen(nm);
			if (h->aux == 0) {
				const void *lt = memchr(in + i, '<', n - i);
				if (lt == NULL) {
					i = n;
					continue;
				}
				i = (size_t)((const char *)lt - in) + 1;
				h->aux = 1;
				continue;
			}
			if (h->aux == 1) {
				h->aux = c == '/' ? 2 : c == '<' ? 1 : 0;
			} else if (h->aux < 2 + nl) {
				unsigned char lc = c >= 'A' && c <= 'Z' ? c + 32 : c;
				if (lc == (unsigned char)nm[h->aux - 2])
					h->aux++;
				else
					h->aux = c == '<' ? 1 : 0;
			} else if (is_ws(c) || c == '/' || c == '>') {
				/* the end tag: read on as a tag */
				h->closing = true;
				h->name_len = (uint8_t)nl;
				memcpy(h->name, nm, nl);
				h->state = S_ATTR;
				continue; /* c again: '>' ends it */
			} else {
				h->aux = c == '<' ? 1 : 0;
			}
			i++;
			continue;
		}
		case S_ENT:
			if (h->ent_len == 0 && c == '#') {
				h->state = S_NUM;
				h->ent[0] = '&';
				h->ent[1] = '#';
				h->ent_len = 2;
				h->aux = 0;
				h->num = 0;
				i++;
			} else if (is_alnum(c) && h->ent_len < MIME_HTML_ENT_MAX) {
				h->ent[h->ent_len++] = (char)c;
				i++;
			} else if (c == ';') {
				h->state = S_TEXT;
				ent_end(h, out, true);
				i++;
			} else {
				/* c again, as text (an over-long name is text) */
				h->state = S_TEXT;
				ent_end(h, out, false);
			}
			continue;
		case S_NUM:
		case S_HEX: {
			int v = -1;
			if (h->state == S_NUM && h->aux == 0 && h->ent_len == 2 &&
			    (c == 'x' || c == 'X')) {
				h->state = S_HEX;
				h->ent[h->ent_len++] = (char)c;
				i++;
				continue;
			}
			if (h->state == S_HEX)
				v = hex_value(c);
			else if ((unsigned)(c - '0') < 10u)
				v = c - '0';
			if (v >= 0) {
				uint32_t base = h->state == S_HEX ? 16 : 10;
				h->num = h->num > CP_MAX ? CP_MAX + 1 : h->num * base + (uint32_t)v;
				h->aux = 1;
				i++;
				continue;
			}
			h->state = S_TEXT;
			num_end(h, out);
			if (c == ';' && h->aux != 0)
				i++;
			continue;
		}
		}
	}
}

void mime_html_finish(struct mime_html *h, struct buf *out)
{
	switch (h->state) {
	case S_LT:
		emit(h, out, "<", 1);
		break;
	case S_ENT:
		ent_end(h, out, false);
		break;
	case S_NUM:
	case S_HEX:
		num_end(h, out);
		break;
	default:
		break; /* an unterminated tag or comment is dropped (13.2.5) */
	}
	buf_append(out, "", 0);
	mime_html_init(h);
}

void mime_html_text(const char *in, size_t n, struct buf *out)
{
	struct mime_html h;

	mime_html_init(&h);
	mime_html_feed(&h, in, n, out);
	mime_html_finish(&h, out);
}
