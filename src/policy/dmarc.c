/* DMARC (RFC 7489): the record parser (6.3, 6.4), identifier alignment
 * (3.1) and the policy evaluation (6.6). Pure: no I/O, no globals; the
 * lookup through src/dns is dmarc_query.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "policy/dmarc.h"

const char *dmarc_result_name(enum dmarc_result r)
{
	static const char *const names[] = {"none", "pass", "fail", "temperror", "permerror"};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "none";
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
	static const char *const names[] = {"none", "quarantine", "reject"};
	return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "none";
}

/* ---- the record ---- */

/* RFC 5234 WSP, and the CR LF of a folded line (the DKIM tag-list's FWS,
 * RFC 6376 3.2, which RFC 7489 6.3 adopts). */
static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

struct span {
	const char *p;
	size_t n;
};

static struct span trim(const char *p, size_t n)
{
	while (n > 0 && is_wsp(p[0]))
		p++, n--;
	while (n > 0 && is_wsp(p[n - 1]))
		n--;
	return (struct span){p, n};
}

/* ABNF quoted strings are case-insensitive (RFC 5234 2.3): "p=Reject" is
 * p=reject. The version's "DMARC1" is %x-coded in RFC 7489 6.4: exact. */
static bool span_is(struct span s, const char *word)
{
	size_t n = strlen(word);
	return s.n == n && strncasecmp(s.p, word, n) == 0;
}

static int parse_policy(struct span v, enum dmarc_policy *p)
{
	if (span_is(v, "none"))
		*p = DMARC_P_NONE;
	else if (span_is(v, "quarantine"))
		*p = DMARC_P_QUARANTINE;
	else if (span_is(v, "reject"))
		*p = DMARC_P_REJECT;
	else
		return -1;
	return 0;
}

static int parse_mode(struct span v, bool *strict)
{
	if (span_is(v, "r"))
		*strict = false;
	else if (span_is(v, "s"))
		*strict = true;
	else
		return -1;
	return 0;
}

/* Splits v at sep; each piece trimmed; fn(piece) for each; -1 at the first
 * fn that fails or an empty piece. */
static int for_each_item(struct span v, char sep, int (*fn)(struct span item, void *arg),
			 void *arg)
{
	size_t i = 0;
	for (;;) {
		size_t j = i;
		while (j < v.n && v.p[j] != sep)
			j++;
		struct span item = trim(v.p + i, j - i);
		if (item.n == 0 || fn(item, arg) < 0)
			return -1;
		if (j == v.n)
			return 0;
		i = j + 1;
	}
}

/* RFC 7489 6.4: dmarc-fo = "0" / "1" / "d" / "s", colon-separated. Kept
 * without white space and repeats, so it always fits fo[16]. */
static int fo_item(struct span item, void *arg)
{
	char *fo = arg;
	if (item.n != 1 || item.p[0] == '\0' || strchr("01dsDS", item.p[0]) == NULL)
		return -1;
	char c = (char)(item.p[0] | 0x20);
	if (strchr(fo, c) != NULL)
		return 0;
	size_t n = strlen(fo);
	if (n > 0)
		fo[n++] = ':';
	fo[n++] = c;
	fo[n] = '\0';
	return 0;
}

/* RFC 7489 6.4: dmarc-rfmt = Keyword *(*WSP ":" Keyword), Keyword from RFC
 * 5321 (Ldh-str); kept as given when it fits, else the first keywords. */
struct rf_acc {
	char *rf;
	size_t cap;
};
static int rf_item(struct span item, void *arg)
{
	struct rf_acc *a = arg;
	if (!is_alpha(item.p[0]) || item.p[item.n - 1] == '-')
		return -1;
	for (size_t i = 0; i < item.n; i++)
		if (!is_alpha(item.p[i]) && !is_digit(item.p[i]) && item.p[i] != '-')
			return -1;
	size_t n = strlen(a->rf);
	if (n + (n > 0) + item.n < a->cap) {
		if (n > 0)
			a->rf[n++] = ':';
		for (size_t i = 0; i < item.n; i++)
			a->rf[n++] = (char)(item.p[i] >= 'A' && item.p[i] <= 'Z' ? item.p[i] | 0x20
										   : item.p[i]);
		a->rf[n] = '\0';
	}
	return 0;
}

/* RFC 7489 6.4: dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ],
 * the URI per RFC 3986 3.1 (scheme ":" ...), its commas and "!" encoded. */
struct uri_acc {
	char **v;
	size_t *n;
	size_t valid; /* syntactically valid URIs, any scheme */
};
static int uri_item(struct span item, void *arg)
{
	struct uri_acc *a = arg;
	size_t bang = 0;

	while (bang < item.n && item.p[bang] != '!')
		bang++;
	struct span uri = {item.p, bang};
	if (bang < item.n) {
		/* the size limit */
		size_t i = bang + 1, digits = 0;
		while (i < item.n && is_digit(item.p[i]))
			i++, digits++;
		if (i < item.n && item.p[i] != '\0' && strchr("kmgtKMGT", item.p[i]) != NULL)
			i++;
		if (digits == 0 || i != item.n)
			return 0; /* malformed: this URI is ignored */
	}
	size_t colon = 0;
	if (uri.n == 0 || !is_alpha(uri.p[0]))
		return 0;
	while (colon < uri.n && uri.p[colon] != ':') {
		char c = uri.p[colon];
		if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.')
			return 0;
		colon++;
	}
	if (colon == uri.n || colon + 1 == uri.n)
		return 0;
	for (size_t i = colon + 1; i < uri.n; i++) {
		unsigned char c = (unsigned char)uri.p[i];
		if (c <= 0x20 || c >= 0x7f || c == ';')
			return 0;
	}
	a->valid++;
	if (colon != 6 || strncasecmp(uri.p, "mailto", 6) != 0 || *a->n >= DMARC_MAX_URIS)
		return 0;
	char *s = xstrndup(item.p, item.n);
	memcpy(s, "mailto", 6);
	a->v[(*a->n)++] = s;
	return 0;
}

static int uri_list(struct span v, char **out, size_t *n, size_t *valid)
{
	struct uri_acc a = {out, n, 0};
	/* a malformed URI never fails the list; an empty item (",,") does not
	 * either: it is no URI */
	size_t i = 0;
	for (;;) {
		size_t j = i;
		while (j < v.n && v.p[j] != ',')
			j++;
		struct span item = trim(v.p + i, j - i);
		if (item.n > 0)
			uri_item(item, &a);
		if (j == v.n)
			break;
		i = j + 1;
	}
	*valid += a.valid;
	return 0;
}

enum {
	T_P = 1 << 0,
	T_SP = 1 << 1,
	T_ADKIM = 1 << 2,
	T_ASPF = 1 << 3,
	T_PCT = 1 << 4,
	T_FO = 1 << 5,
	T_RF = 1 << 6,
	T_RI = 1 << 7,
	T_RUA = 1 << 8,
	T_RUF = 1 << 9,
};

static const struct {
	const char *name;
	unsigned bit;
} dmarc_tags[] = {
	{"p", T_P},	{"sp", T_SP}, {"adkim", T_ADKIM}, {"aspf", T_ASPF}, {"pct", T_PCT},
	{"fo", T_FO}, {"rf", T_RF}, {"ri", T_RI},	  {"rua", T_RUA},   {"ruf", T_RUF},
};

/* The version tag at the start: "v" *WSP "=" *WSP "DMARC1", then the end,
 * white space or ";". Leading white space is allowed (RFC 6376 3.2's
 * tag-spec starts with [FWS]). Returns the offset past it, or 0. */
static size_t version_end(const char *txt, size_t len)
{
	size_t i = 0;
	while (i < len && is_wsp(txt[i]))
		i++;
	if (i >= len || (txt[i] != 'v' && txt[i] != 'V'))
		return 0;
	i++;
	while (i < len && is_wsp(txt[i]))
		i++;
	if (i >= len || txt[i] != '=')
		return 0;
	i++;
	while (i < len && is_wsp(txt[i]))
		i++;
	if (len - i < 6 || memcmp(txt + i, "DMARC1", 6) != 0)
		return 0;
	i += 6;
	size_t k = i;
	while (k < len && is_wsp(txt[k]))
		k++;
	if (k < len && txt[k] != ';')
		return 0;
	return i;
}

bool dmarc_record_is_dmarc(const char *txt, size_t len)
{
	return version_end(txt, len) > 0;
}

void dmarc_record_free(struct dmarc_record *r)
{
	for (size_t i = 0; i < r->n_rua; i++)
		free(r->rua[i]);
	for (size_t i = 0; i < r->n_ruf; i++)
		free(r->ruf[i]);
	r->n_rua = r->n_ruf = 0;
}

static void record_defaults(struct dmarc_record *r)
{
	memset(r, 0, sizeof(*r));
	r->pct = 100;
	strcpy(r->fo, "0");
	strcpy(r->rf, "afrf");
	r->ri = 86400;
}

int dmarc_record_parse_err(const char *txt, size_t len, struct dmarc_record *r,
			   const char **err_r)
{
	const char *err = NULL, *dummy;
	unsigned seen = 0;
	bool p_bad = false, sp_bad = false;
	size_t valid_rua = 0, valid_ruf = 0;

	if (err_r == NULL)
		err_r = &dummy;
	record_defaults(r);
	size_t i = version_end(txt, len);
	if (i == 0) {
		*err_r = "not a DMARC record (no v=DMARC1 first)";
		return -1;
	}
	/* RFC 7489 6.3: tag-value pairs as in RFC 6376 3.2, separated by ";". */
	while (i < len && err == NULL) {
		size_t j = i;
		while (j < len && txt[j] != ';')
			j++;
		struct span seg = trim(txt + i, j - i);
		i = j + 1;
		if (seg.n == 0)
			continue; /* ";;" and the optional final ";" */
		size_t eq = 0;
		while (eq < seg.n && seg.p[eq] != '=')
			eq++;
		if (eq == seg.n) {
			err = "a tag without \"=\"";
			break;
		}
		struct span name = trim(seg.p, eq), v = trim(seg.p + eq + 1, seg.n - eq - 1);
		if (name.n == 0 || !is_alpha(name.p[0])) {
			err = "malformed tag name";
			break;
		}
		for (size_t k = 0; k < name.n; k++)
			if (!is_alpha(name.p[k]) && !is_digit(name.p[k]) && name.p[k] != '_')
				err = "malformed tag name";
		unsigned bit = 0;
		for (size_t k = 0; k < sizeof(dmarc_tags) / sizeof(dmarc_tags[0]); k++)
			if (span_is(name, dmarc_tags[k].name))
				bit = dmarc_tags[k].bit;
		if (err != NULL)
			break;
		if (bit == 0) {
			if (span_is(name, "v"))
				err = "v= repeated";
			continue; /* RFC 7489 6.3: unknown tags MUST be ignored */
		}
		if (seen & bit) {
			/* RFC 6376 3.2: a repeated tag makes the whole list invalid */
			err = "a tag repeated";
			break;
		}
		seen |= bit;
		switch (bit) {
		case T_P:
			p_bad = parse_policy(v, &r->p) < 0;
			break;
		case T_SP:
			sp_bad = parse_policy(v, &r->sp) < 0;
			r->has_sp = true;
			break;
		case T_ADKIM:
			if (parse_mode(v, &r->adkim_strict) < 0)
				err = "adkim= is not r or s";
			break;
		case T_ASPF:
			if (parse_mode(v, &r->aspf_strict) < 0)
				err = "aspf= is not r or s";
			break;
		case T_PCT: {
			/* 1*3DIGIT, 0..100 */
			int pct = 0;
			bool ok = v.n >= 1 && v.n <= 3;
			for (size_t k = 0; ok && k < v.n; k++)
				if (is_digit(v.p[k]))
					pct = pct * 10 + (v.p[k] - '0');
				else
					ok = false;
			if (!ok || pct > 100)
				err = "pct= is not 0..100";
			else
				r->pct = pct;
			break;
		}
		case T_FO:
			r->fo[0] = '\0';
			if (for_each_item(v, ':', fo_item, r->fo) < 0)
				err = "fo= is not 0, 1, d, s";
			break;
		case T_RF: {
			struct rf_acc a = {r->rf, sizeof(r->rf)};
			r->rf[0] = '\0';
			if (for_each_item(v, ':', rf_item, &a) < 0)
				err = "rf= is not a list of keywords";
			break;
		}
		case T_RI: {
			/* 1*32DIGIT: a larger number than fits is as good as forever */
			unsigned long long ri = 0;
			bool ok = v.n >= 1 && v.n <= 32;
			for (size_t k = 0; ok && k < v.n; k++) {
				if (!is_digit(v.p[k]))
					ok = false;
				else if (ri <= UINT_MAX)
					ri = ri * 10 + (unsigned)(v.p[k] - '0');
			}
			if (!ok)
				err = "ri= is not a number";
			else
				r->ri = ri > UINT_MAX ? UINT_MAX : (unsigned)ri;
			break;
		}
		case T_RUA:
			uri_list(v, r->rua, &r->n_rua, &valid_rua);
			break;
		case T_RUF:
			uri_list(v, r->ruf, &r->n_ruf, &valid_ruf);
			break;
		}
	}
	if (err == NULL && !(seen & T_P))
		p_bad = true;
	if (err == NULL && (p_bad || sp_bad)) {
		/* RFC 7489 6.6.3 step 6: no valid p= (or an invalid sp=): with a
		 * usable rua, as if the record said p=none; else not applied. */
		if (valid_rua > 0) {
			r->p = r->sp = DMARC_P_NONE;
			r->p_fallback = true;
		} else {
			err = p_bad ? (seen & T_P ? "p= is not none, quarantine or reject"
						  : "no p= tag")
				    : "sp= is not none, quarantine or reject";
		}
	} else if (err == NULL && !r->has_sp) {
		r->sp = r->p; /* RFC 7489 6.3 sp: absent, p applies to subdomains */
	}
	if (err != NULL) {
		dmarc_record_free(r);
		record_defaults(r);
		*err_r = err;
		return -1;
	}
	if (r->fo[0] == '\0')
		strcpy(r->fo, "0");
	return 0;
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r)
{
	return dmarc_record_parse_err(txt, len, r, NULL);
}

/* ---- alignment and evaluation ---- */

static size_t name_len(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && s[n - 1] == '.' ? n - 1 : n;
}

/* RFC 7489 3.1.1, 3.1.2: strict, the same name; relaxed, the same
 * organizational domain. Case-insensitive; a trailing dot ignored. */
static bool has_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

static bool dmarc_aligned(const struct psl *psl, const char *a, const char *b, bool strict)
{
	char oa[256], ob[256], xa[256], xb[256];

	/* RFC 8616 6: internationalized names compare as A-labels. */
	if (has_8bit(a)) {
		if (psl_alabels(a, xa, sizeof(xa)) < 0)
			return false;
		a = xa;
	}
	if (has_8bit(b)) {
		if (psl_alabels(b, xb, sizeof(xb)) < 0)
			return false;
		b = xb;
	}
	size_t na = name_len(a), nb = name_len(b);

	if (na == 0 || nb == 0)
		return false;
	if (na == nb && strncasecmp(a, b, na) == 0)
		return true;
	if (strict)
		return false;
	if (psl_org_domain(psl, a, oa, sizeof(oa)) < 0 || psl_org_domain(psl, b, ob, sizeof(ob)) < 0)
		return false;
	return strcmp(oa, ob) == 0;
}

void dmarc_evaluate(const struct psl *psl, const struct dmarc_input *in,
		    const struct dmarc_record *rec, const char *policy_domain, int rnd,
		    struct dmarc_outcome *out)
{
	bool adkim_strict = rec ? rec->adkim_strict : false;
	bool aspf_strict = rec ? rec->aspf_strict : false;
	const char *from = in->from_domain;

	memset(out, 0, sizeof(*out));
	out->result = DMARC_NONE;
	out->policy = out->disposition = DMARC_P_NONE;
	out->record = rec;
	out->policy_domain = policy_domain;
	if (from == NULL || from[0] == '\0')
		return;
	/* RFC 7489 3.1.2: SPF counts only when it passed. */
	out->spf_aligned = in->spf == SPF_PASS && in->spf_domain != NULL &&
			   dmarc_aligned(psl, in->spf_domain, from, aspf_strict);
	/* RFC 7489 3.1.1: any passing signature whose d= aligns. */
	for (size_t i = 0; in->dkim != NULL && i < in->dkim->n && !out->dkim_aligned; i++) {
		const struct dkim_sig_result *s = &in->dkim->v[i];
		if (s->result == DKIM_PASS && s->domain != NULL &&
		    dmarc_aligned(psl, s->domain, from, adkim_strict))
			out->dkim_aligned = true;
	}
	if (rec == NULL)
		return;
	/* RFC 7489 6.6.2: pass when either identifier passes and aligns. */
	out->result = out->spf_aligned || out->dkim_aligned ? DMARC_PASS : DMARC_FAIL;
	/* RFC 7489 6.3 sp: a record found at the organizational domain (not the
	 * From domain itself) gives sp to the From domain, its subdomain. */
	bool sub = policy_domain != NULL && (name_len(policy_domain) != name_len(from) ||
					     strncasecmp(policy_domain, from, name_len(from)) != 0);
	out->policy = sub ? rec->sp : rec->p;
	if (out->result != DMARC_FAIL)
		return;
	out->disposition = out->policy;
	/* RFC 7489 6.6.4: pct selects the messages the policy applies to; the
	 * others get the next policy down (reject -> quarantine -> none). */
	if (out->policy != DMARC_P_NONE && rnd >= rec->pct) {
		out->sampled_out = true;
		out->disposition = out->policy == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
	}
}
