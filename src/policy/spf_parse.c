/* SPF records and macros, pure (RFC 7208 4.5, 4.6, 5, 6, 7): the record
 * parser finds every syntax error before anything is evaluated, the macro
 * expander builds names and explanations. Strict where the RFC's ABNF is
 * (the openspf suite checks it), bounded everywhere: an expansion never
 * outgrows its buffer, a transformation walks its value once. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "policy/spf_int.h"

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(int c)
{
	return is_alpha(c) || is_digit(c);
}

bool spf_is_spf1(const char *txt, size_t len)
{
	/* RFC 7208 4.5: "v=spf1" exactly, ended by SP or the record's end;
	 * ABNF strings have no case (RFC 5234 2.3). */
	return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

/* ---- macros (RFC 7208 7.1) ---- */

static const char *const delimiters = ".-+,/_=";

struct macro {
	char letter;     /* as written (uppercase: URL-escaped) */
	unsigned digits; /* 0: all parts */
	bool reverse;
	char delims[8]; /* NUL-ended; "" = "." */
};

/* Parses "%{...}" at s[0..len) (s[0] == '%', s[1] == '{'): the octets it
 * takes, or 0 on a syntax error. */
static size_t parse_macro(const char *s, size_t len, int flags, struct macro *m)
{
	size_t i = 2;

	memset(m, 0, sizeof(*m));
	if (i >= len)
		return 0;
	m->letter = s[i++];
	const char *letters = flags & SPF_EXPAND_EXP ? "slodiphcrtv" : "slodiphv";
	char lower = (char)(m->letter >= 'A' && m->letter <= 'Z' ? m->letter + 32 : m->letter);
	if (lower == '\0' || strchr(letters, lower) == NULL)
		return 0;
	while (i < len && is_digit(s[i])) {
		if (m->digits < 1000)
			m->digits = m->digits * 10 + (unsigned)(s[i] - '0');
		i++;
		/* RFC 7208 7.3: "If a DIGIT is specified, the value MUST be
		 * nonzero." */
		if (m->digits == 0)
			return 0;
	}
	if (i < len && (s[i] == 'r' || s[i] == 'R')) {
		m->reverse = true;
		i++;
	}
	size_t nd = 0;
	while (i < len && s[i] != '}') {
		if (s[i] == '\0' || strchr(delimiters, s[i]) == NULL)
			return 0;
		if (strchr(m->delims, s[i]) == NULL && nd + 1 < sizeof(m->delims))
			m->delims[nd++] = s[i];
		i++;
	}
	if (i >= len)
		return 0;
	return i + 1;
}

struct out {
	char *p;
	size_t n, cap; /* cap includes the NUL */
	bool over;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->p == NULL)
		return;
	if (o->n + n + 1 > o->cap) {
		o->over = true;
		return;
	}
	memcpy(o->p + o->n, s, n);
	o->n += n;
	o->p[o->n] = '\0';
}

static void put_url(struct out *o, const char *s, size_t n, bool escape)
{
	static const char hex[] = "0123456789ABCDEF";
	if (!escape) {
		put(o, s, n);
		return;
	}
	/* RFC 7208 7.3: uppercase macros are URL-escaped (RFC 3986: all but
	 * the unreserved characters). */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			put(o, s + i, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			put(o, e, 3);
		}
	}
}

static bool is_delim(char c, const char *delims)
{
	return delims[0] ? strchr(delims, c) != NULL && c != '\0' : c == '.';
}

/* RFC 7208 7.3: split on the delimiters, reverse, keep the right-hand
 * parts, join with "." — in one pass over v. */
static void transform(struct out *o, const char *v, size_t n, const struct macro *m)
{
	bool esc = m->letter >= 'A' && m->letter <= 'Z';
	size_t k = 1;
	for (size_t i = 0; i < n; i++)
		if (is_delim(v[i], m->delims))
			k++;
	size_t want = m->digits == 0 || m->digits > k ? k : m->digits;

	if (!m->reverse) {
		size_t skip = k - want, pos = 0;
		while (skip > 0) {
			if (is_delim(v[pos], m->delims))
				skip--;
			pos++;
		}
		for (size_t i = pos; i < n;) {
			size_t j = i;
			while (j < n && !is_delim(v[j], m->delims))
				j++;
			put_url(o, v + i, j - i, esc);
			if (j < n)
				put(o, ".", 1);
			i = j + 1;
		}
		return;
	}
	/* Reversed: parts want-1 .. 0 of the original order. */
	size_t end = n, cnt = 0;
	for (size_t i = 0; i < n; i++) {
		if (is_delim(v[i], m->delims) && ++cnt == want) {
			end = i;
			break;
		}
	}
	size_t hi = end;
	for (bool first = true;; first = false) {
		size_t lo = hi;
		while (lo > 0 && !is_delim(v[lo - 1], m->delims))
			lo--;
		if (!first)
			put(o, ".", 1);
		put_url(o, v + lo, hi - lo, esc);
		if (lo == 0)
			break;
		hi = lo - 1;
	}
}

static void expand_letter(struct out *o, const struct macro *m, const struct spf_macro_env *env)
{
	char buf[128];
	const char *v = NULL;
	char lower = (char)(m->letter >= 'A' && m->letter <= 'Z' ? m->letter + 32 : m->letter);

	switch (lower) {
	case 's':
		v = env->s;
		break;
	case 'l':
		v = env->l;
		break;
	case 'o':
		v = env->o;
		break;
	case 'd':
		v = env->d;
		break;
	case 'h':
		v = env->h;
		break;
	case 'r':
		v = env->r;
		break;
	case 'p':
		v = env->p;
		break;
	case 'v':
		v = env->family == AF_INET6 ? "ip6" : "in-addr";
		break;
	case 'i':
		if (env->family == AF_INET6) {
			/* RFC 7208 7.3: dot-format nibbles, "intended for use
			 * in %{ir}". Uppercase hex, as the reference
			 * implementation and the openspf suite spell them (in
			 * a domain it is lowercased like every domain). */
			static const char hex[] = "0123456789ABCDEF";
			size_t b = 0;
			for (int i = 0; i < 16; i++) {
				buf[b++] = hex[env->ip[i] >> 4];
				buf[b++] = '.';
				buf[b++] = hex[env->ip[i] & 15];
				buf[b++] = i < 15 ? '.' : '\0';
			}
			v = buf;
			break;
		}
		/* IPv4: the dotted quad for both */
		__attribute__((fallthrough));
	case 'c':
		v = inet_ntop(env->family, env->ip, buf, sizeof(buf));
		break;
	case 't':
		snprintf(buf, sizeof(buf), "%lld", env->t);
		v = buf;
		break;
	}
	if (v == NULL)
		v = "unknown";
	transform(o, v, strlen(v), m);
}

/* The shared walk: checks s[0..len) as a macro-string (or an
 * explanation-string) and, when env is given, expands it into o.
 * *ends_macro: whether the last token was a macro-expand. */
static int walk(const char *s, size_t len, const struct spf_macro_env *env, int flags,
                struct out *o, bool *ends_macro, char *err, size_t errsz)
{
	bool last_macro = false;

	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c != '%') {
			/* macro-literal = %x21-24 / %x26-7E; SP in explanations */
			if (!((c >= 0x21 && c <= 0x7e) || (c == ' ' && (flags & SPF_EXPAND_EXP)))) {
				snprintf(err, errsz, "invalid character 0x%02x", c);
				return -1;
			}
			put(o, s + i, 1);
			i++;
			last_macro = false;
			continue;
		}
		if (i + 1 >= len) {
			snprintf(err, errsz, "'%%' at the end");
			return -1;
		}
		switch (s[i + 1]) {
		case '%':
			put(o, "%", 1);
			i += 2;
			break;
		case '_':
			put(o, " ", 1);
			i += 2;
			break;
		case '-':
			put(o, "%20", 3);
			i += 2;
			break;
		case '{': {
			struct macro m;
			size_t n = parse_macro(s + i, len - i, flags, &m);
			if (n == 0) {
				snprintf(err, errsz, "invalid macro at \"%.*s\"",
				         (int)(len - i > 12 ? 12 : len - i), s + i);
				return -1;
			}
			if (env != NULL)
				expand_letter(o, &m, env);
			i += n;
			break;
		}
		default:
			/* RFC 7208 7.1: '%' followed by anything else */
			snprintf(err, errsz, "'%%' not followed by '{', '%%', '_' or '-'");
			return -1;
		}
		last_macro = true;
	}
	if (ends_macro)
		*ends_macro = last_macro;
	return 0;
}

bool spf_macro_uses_p(const char *s, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (s[i] == '%' && s[i + 1] == '%') {
			i++;
			continue;
		}
		if (s[i] == '%' && s[i + 1] == '{' && (s[i + 2] == 'p' || s[i + 2] == 'P'))
			return true;
	}
	return false;
}

int spf_macro_expand(const char *s, size_t len, const struct spf_macro_env *env, int flags,
                     char *out, size_t outsz, char *err, size_t errsz)
{
	struct out o = {.p = env ? out : NULL, .cap = outsz};
	char e[96];

	if (err == NULL) {
		err = e;
		errsz = sizeof(e);
	}
	if (o.p != NULL) {
		if (outsz == 0)
			return -1;
		out[0] = '\0';
	}
	if (walk(s, len, env, flags, &o, NULL, err, errsz) < 0)
		return -1;
	if (o.over) {
		snprintf(err, errsz, "expansion over %zu octets", outsz - 1);
		return -1;
	}
	if (o.p != NULL && (flags & SPF_EXPAND_DOMAIN)) {
		for (size_t i = 0; i < o.n; i++)
			if (out[i] >= 'A' && out[i] <= 'Z')
				out[i] = (char)(out[i] + 32);
	}
	return 0;
}

/* RFC 7208 7.1: toplabel = ( *alphanum ALPHA *alphanum ) /
 * ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static bool toplabel_ok(const char *s, size_t n)
{
	bool alpha = false, dash = false;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (is_alpha(s[i]))
			alpha = true;
		else if (s[i] == '-')
			dash = true;
		else if (!is_digit(s[i]))
			return false;
	}
	return dash ? is_alnum(s[0]) && is_alnum(s[n - 1]) : alpha;
}

int spf_domain_spec_check(const char *s, size_t len)
{
	char err[96];
	bool ends_macro = false;
	struct out o = {0};

	/* domain-spec = macro-string domain-end
	 * domain-end  = ( "." toplabel [ "." ] ) / macro-expand */
	if (len == 0 || walk(s, len, NULL, 0, &o, &ends_macro, err, sizeof(err)) < 0)
		return -1;
	if (ends_macro)
		return 0;
	size_t t = len;
	if (s[t - 1] == '.')
		t--;
	size_t dot = t;
	while (dot > 0 && s[dot - 1] != '.')
		dot--;
	if (dot == 0)
		return -1; /* no "." before the toplabel: a single label */
	return toplabel_ok(s + dot, t - dot) ? 0 : -1;
}

/* ---- names ---- */

int spf_name_prepare(char *name)
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		name[--n] = '\0';
	/* RFC 7208 7.3: over 253 octets, labels go from the left. */
	while (n > SPF_NAME_MAX) {
		char *dot = strchr(name, '.');
		if (dot == NULL)
			return -1;
		size_t cut = (size_t)(dot - name) + 1;
		memmove(name, name + cut, n - cut + 1);
		n -= cut;
	}
	if (n == 0)
		return -1;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (c < 0x20 || c > 0x7e || ++label > SPF_LABEL_MAX) {
			return -1;
		}
	}
	return label == 0 ? -1 : 0;
}

int spf_name_escape(const char *name, char *out, size_t outsz)
{
	size_t o = 0;
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (is_alnum(c) || c == '-' || c == '_' || c == '.') {
			if (o + 2 > outsz)
				return -1;
			out[o++] = (char)c;
		} else {
			if (o + 5 > outsz)
				return -1;
			o += (size_t)snprintf(out + o, 5, "\\%03u", c);
		}
	}
	if (o + 1 > outsz)
		return -1;
	out[o] = '\0';
	return 0;
}

int spf_ip_parse(const char *text, int *family, uint8_t ip[16])
{
	struct in6_addr a6;

	memset(ip, 0, 16);
	if (inet_pton(AF_INET, text, ip) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, &a6) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		/* RFC 7208 5: an IPv4-mapped IPv6 address is IPv4. */
		*family = AF_INET;
		memcpy(ip, a6.s6_addr + 12, 4);
		return 0;
	}
	*family = AF_INET6;
	memcpy(ip, a6.s6_addr, 16);
	return 0;
}

bool spf_cidr_match(int family, const uint8_t *ip, const uint8_t *net, unsigned bits)
{
	unsigned max = family == AF_INET ? 32 : 128;
	if (bits > max)
		bits = max;
	unsigned full = bits / 8, rest = bits % 8;
	if (memcmp(ip, net, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (ip[full] & mask) == (net[full] & mask);
}

/* ---- records (RFC 7208 4.6, 5, 6) ---- */

/* "/" ( "0" / %x31-39 0*n DIGIT ) with a value <= max: the value, or -1. */
static int cidr_value(const char *s, size_t n, unsigned max)
{
	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return -1;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return v <= max ? (int)v : -1;
}

/* The length of a trailing "/" 1*DIGIT of s[0..n), 0 if none. */
static size_t trailing_cidr(const char *s, size_t n)
{
	size_t i = n;
	while (i > 0 && is_digit(s[i - 1]))
		i--;
	if (i == n || i == 0 || s[i - 1] != '/')
		return 0;
	return n - i + 1;
}

struct mech_name {
	const char *name;
	enum spf_mech mech;
};

static const struct mech_name mech_names[] = {
    {"all", SPF_M_ALL}, {"include", SPF_M_INCLUDE}, {"a", SPF_M_A},     {"mx", SPF_M_MX},
    {"ptr", SPF_M_PTR}, {"ip4", SPF_M_IP4},         {"ip6", SPF_M_IP6}, {"exists", SPF_M_EXISTS},
};

static int parse_mechanism(const char *rec, size_t a, size_t b, struct spf_term *t, char *err,
                           size_t errsz)
{
	const char *s = rec + a;
	size_t n = b - a, i = 0;

	memset(t, 0, sizeof(*t));
	t->off = (uint32_t)a;
	t->len = (uint32_t)n;
	t->cidr4 = 32;
	t->cidr6 = 128;
	t->result = SPF_PASS;
	switch (s[0]) {
	case '+':
		i = 1;
		break;
	case '-':
		t->result = SPF_FAIL, i = 1;
		break;
	case '~':
		t->result = SPF_SOFTFAIL, i = 1;
		break;
	case '?':
		t->result = SPF_NEUTRAL, i = 1;
		break;
	}
	size_t name = i;
	while (i < n && is_alnum(s[i]))
		i++;
	size_t nlen = i - name;
	const struct mech_name *mn = NULL;
	for (size_t k = 0; k < sizeof(mech_names) / sizeof(mech_names[0]); k++)
		if (strlen(mech_names[k].name) == nlen &&
		    strncasecmp(mech_names[k].name, s + name, nlen) == 0)
			mn = &mech_names[k];
	if (mn == NULL) {
		snprintf(err, errsz, "unknown mechanism \"%.*s\"", (int)(n > 40 ? 40 : n), s);
		return -1;
	}
	t->mech = (uint8_t)mn->mech;
	const char *r = s + i; /* the rest: [":" ...] ["/" ...] */
	size_t rn = n - i;

	switch (mn->mech) {
	case SPF_M_ALL:
		if (rn != 0)
			goto bad;
		return 0;
	case SPF_M_INCLUDE:
	case SPF_M_EXISTS:
		/* ":" domain-spec, no CIDR */
		if (rn < 2 || r[0] != ':' || spf_domain_spec_check(r + 1, rn - 1) < 0)
			goto bad;
		t->spec = (uint32_t)(a + i + 1);
		t->spec_len = (uint32_t)(rn - 1);
		return 0;
	case SPF_M_PTR:
		if (rn == 0)
			return 0;
		if (rn < 2 || r[0] != ':' || spf_domain_spec_check(r + 1, rn - 1) < 0)
			goto bad;
		t->spec = (uint32_t)(a + i + 1);
		t->spec_len = (uint32_t)(rn - 1);
		return 0;
	case SPF_M_A:
	case SPF_M_MX: {
		/* [ ":" domain-spec ] [ ip4-cidr-length ] [ "/" ip6-cidr-length ] */
		size_t end = rn, c = trailing_cidr(r, end);
		int v;
		if (c > 0 && end - c > 0 && r[end - c - 1] == '/') {
			if ((v = cidr_value(r + end - c + 1, c - 1, 128)) < 0)
				goto bad;
			t->cidr6 = (uint8_t)v;
			end -= c + 1;
			c = trailing_cidr(r, end);
		}
		if (c > 0) {
			if ((v = cidr_value(r + end - c + 1, c - 1, 32)) < 0)
				goto bad;
			t->cidr4 = (uint8_t)v;
			end -= c;
		}
		if (end == 0)
			return 0;
		if (r[0] != ':' || end < 2 || spf_domain_spec_check(r + 1, end - 1) < 0)
			goto bad;
		t->spec = (uint32_t)(a + i + 1);
		t->spec_len = (uint32_t)(end - 1);
		return 0;
	}
	case SPF_M_IP4:
	case SPF_M_IP6: {
		bool v6 = mn->mech == SPF_M_IP6;
		char net[64];
		if (rn < 2 || r[0] != ':')
			goto bad;
		const char *slash = memchr(r, '/', rn);
		size_t nl = (slash ? (size_t)(slash - r) : rn) - 1;
		if (nl == 0 || nl >= sizeof(net))
			goto bad;
		memcpy(net, r + 1, nl);
		net[nl] = '\0';
		if (inet_pton(v6 ? AF_INET6 : AF_INET, net, t->addr) != 1)
			goto bad;
		if (slash) {
			int v = cidr_value(slash + 1, rn - (size_t)(slash - r) - 1, v6 ? 128 : 32);
			if (v < 0)
				goto bad;
			if (v6)
				t->cidr6 = (uint8_t)v;
			else
				t->cidr4 = (uint8_t)v;
		}
		return 0;
	}
	}
bad:
	snprintf(err, errsz, "invalid mechanism \"%.*s\"", (int)(n > 60 ? 60 : n), s);
	return -1;
}

int spf_record_parse(const char *txt, size_t len, struct spf_record *rec, char *err, size_t errsz)
{
	memset(rec, 0, sizeof(*rec));
	if (!spf_is_spf1(txt, len)) {
		snprintf(err, errsz, "not an SPF record");
		return -1;
	}
	/* At most one term per two octets ("a" and a space). */
	size_t max_terms = len / 2 + 1, n = 0;
	char *text = xmalloc(len + 1);
	memcpy(text, txt, len);
	text[len] = '\0';
	struct spf_term *terms = xmalloc(max_terms * sizeof(*terms));

	for (size_t i = 6; i < len;) {
		/* terms = *( 1*SP ( directive / modifier ) ); record ends *SP */
		if (text[i] == ' ') {
			i++;
			continue;
		}
		if (i > 0 && text[i - 1] != ' ')
			goto bad_sep;
		size_t a = i;
		while (i < len && text[i] != ' ')
			i++;
		size_t b = i;
		/* modifier = name "=" macro-string; name = ALPHA *( ALPHA /
		 * DIGIT / "-" / "_" / "." ) */
		size_t k = a;
		if (is_alpha(text[k])) {
			while (k < b && (is_alnum(text[k]) || text[k] == '-' || text[k] == '_' ||
			                 text[k] == '.'))
				k++;
		}
		if (k > a && k < b && text[k] == '=') {
			const char *v = text + k + 1;
			size_t vl = b - k - 1, nl = k - a;
			bool redirect = nl == 8 && strncasecmp(text + a, "redirect", 8) == 0;
			bool exp = nl == 3 && strncasecmp(text + a, "exp", 3) == 0;
			if (redirect || exp) {
				/* RFC 7208 6: once each */
				if ((redirect && rec->redirect_len) || (exp && rec->exp_len)) {
					snprintf(err, errsz, "%s= twice",
					         redirect ? "redirect" : "exp");
					goto bad;
				}
				if (spf_domain_spec_check(v, vl) < 0) {
					snprintf(err, errsz, "invalid %s=\"%.*s\"",
					         redirect ? "redirect" : "exp",
					         (int)(vl > 60 ? 60 : vl), v);
					goto bad;
				}
				if (redirect) {
					rec->redirect = (uint32_t)(k + 1);
					rec->redirect_len = (uint32_t)vl;
				} else {
					rec->exp = (uint32_t)(k + 1);
					rec->exp_len = (uint32_t)vl;
				}
			} else {
				/* RFC 7208 6: unknown modifiers are ignored,
				 * but must be syntactically valid (A: macro-string). */
				char e[96];
				if (spf_macro_expand(v, vl, NULL, SPF_EXPAND_EXP, NULL, 0, e,
				                     sizeof(e)) < 0) {
					snprintf(err, errsz, "invalid modifier \"%.*s\": %s",
					         (int)(b - a > 40 ? 40 : b - a), text + a, e);
					goto bad;
				}
			}
			continue;
		}
		if (parse_mechanism(text, a, b, &terms[n], err, errsz) < 0)
			goto bad;
		n++;
	}
	rec->text = text;
	rec->len = len;
	rec->terms = terms;
	rec->n = n;
	return 0;
bad_sep:
	snprintf(err, errsz, "terms not separated by a space");
bad:
	free(text);
	free(terms);
	memset(rec, 0, sizeof(*rec));
	return -1;
}

void spf_record_free(struct spf_record *rec)
{
	free(rec->text);
	free(rec->terms);
	memset(rec, 0, sizeof(*rec));
}
