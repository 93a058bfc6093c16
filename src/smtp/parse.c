/* SMTP command line parsing. See parse.h. */
#include "smtp/parse.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "mime/addr.h"

/* RFC 3461 4.4 / 4.2: lengths of ENVID and ORCPT values. */
#define SMTP_ENVID_MAX 100
#define SMTP_ORCPT_MAX 500

static int perr(struct smtp_perr *err, int code, const char *ecode, const char *text)
{
	err->code = code;
	err->ecode = ecode;
	err->text = text;
	return -1;
}

int smtp_parse_verb(const char *line, char *verb, size_t verbsz, const char **args_r)
{
	size_t i = 0;

	while (isalpha((unsigned char)line[i])) {
		if (i + 1 >= verbsz)
			return -1;
		verb[i] = (char)toupper((unsigned char)line[i]);
		i++;
	}
	verb[i] = '\0';
	if (i == 0 || (line[i] != '\0' && line[i] != ' '))
		return -1;
	while (line[i] == ' ')
		i++;
	*args_r = line + i;
	return 0;
}

bool smtp_xtext_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			/* hexchar: "+" followed by two upper-case hex digits */
			for (int k = 1; k <= 2; k++) {
				unsigned char h = i + k < len ? (unsigned char)s[i + k] : 0;
				if (!isdigit(h) && !(h >= 'A' && h <= 'F'))
					return false;
			}
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return true;
}

/* Parses "<path>" at *pp (spaces before it tolerated); advances *pp. */
static int parse_path(const char **pp, bool allow_null, bool utf8, bool allow_postmaster,
		      char **addr_r)
{
	const char *p = *pp;

	while (*p == ' ')
		p++;
	/* RFC 5321 4.5.1: "<Postmaster>" without a domain must be accepted. */
	if (allow_postmaster && strncasecmp(p, "<postmaster>", 12) == 0) {
		*addr_r = xstrdup("postmaster");
		*pp = p + 12;
		return 0;
	}
	int n = addr_parse_path(p, allow_null, utf8, addr_r);
	if (n <= 0)
		return -1;
	*pp = p + n;
	return 0;
}

/* One ESMTP parameter "keyword[=value]" (RFC 5321 4.1.2). */
struct param {
	char key[32];
	const char *val; /* NULL when absent */
	size_t vlen;
};

/* Splits the next parameter off *pp. Returns 1 with *pm, 0 at the end, -1 on
 * bad syntax. */
static int next_param(const char **pp, bool utf8, struct param *pm)
{
	const char *p = *pp;
	size_t k = 0;

	while (*p == ' ')
		p++;
	if (*p == '\0') {
		*pp = p;
		return 0;
	}
	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	if (!isalnum((unsigned char)*p))
		return -1;
	while (isalnum((unsigned char)*p) || *p == '-') {
		if (k + 1 >= sizeof(pm->key))
			return -1;
		pm->key[k++] = (char)toupper((unsigned char)*p);
		p++;
	}
	pm->key[k] = '\0';
	pm->val = NULL;
	pm->vlen = 0;
	if (*p == '=') {
		p++;
		pm->val = p;
		/* esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 too with SMTPUTF8 */
		while (*p != '\0' && *p != ' ') {
			unsigned char c = (unsigned char)*p;
			if (c == '=' || c < 33 || c == 127 || (c > 127 && !utf8))
				return -1;
			p++;
		}
		pm->vlen = (size_t)(p - pm->val);
		if (pm->vlen == 0)
			return -1;
	}
	if (*p != '\0' && *p != ' ')
		return -1;
	*pp = p;
	return 1;
}

static bool val_is(const struct param *pm, const char *s)
{
	return pm->vlen == strlen(s) && strncasecmp(pm->val, s, pm->vlen) == 0;
}

static char *val_upper(const struct param *pm)
{
	char *s = xstrndup(pm->val, pm->vlen);
	for (char *q = s; *q; q++)
		*q = (char)toupper((unsigned char)*q);
	return s;
}

static const char *skip_prefix(const char *args, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncasecmp(args, prefix, n) == 0 ? args + n : NULL;
}

void smtp_mail_args_free(struct smtp_mail_args *m)
{
	x_free(&m->addr);
	x_free(&m->ret);
	x_free(&m->envid);
	x_free(&m->auth);
	memset(m, 0, sizeof(*m));
}

static int mail_param(struct smtp_mail_args *m, const struct param *pm, struct smtp_perr *err)
{
	if (strcmp(pm->key, "SIZE") == 0) {
		/* RFC 1870 3: size-value = 1*20DIGIT */
		if (m->has_size || pm->val == NULL || pm->vlen > 20)
			return perr(err, 501, "5.5.4", "Bad SIZE parameter");
		uint64_t v = 0;
		for (size_t i = 0; i < pm->vlen; i++) {
			if (!isdigit((unsigned char)pm->val[i]))
				return perr(err, 501, "5.5.4", "Bad SIZE parameter");
			unsigned d = (unsigned)(pm->val[i] - '0');
			v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
		}
		m->has_size = true;
		m->size = v;
	} else if (strcmp(pm->key, "BODY") == 0) {
		/* RFC 6152 2 (8BITMIME); BINARYMIME is not offered */
		if (m->body != SMTP_BODY_NONE || pm->val == NULL)
			return perr(err, 501, "5.5.4", "Bad BODY parameter");
		if (val_is(pm, "7BIT"))
			m->body = SMTP_BODY_7BIT;
		else if (val_is(pm, "8BITMIME"))
			m->body = SMTP_BODY_8BITMIME;
		else
			return perr(err, 501, "5.5.4", "Unsupported BODY type");
	} else if (strcmp(pm->key, "SMTPUTF8") == 0) {
		/* RFC 6531 3.4: no value */
		if (m->smtputf8 || pm->val != NULL)
			return perr(err, 501, "5.5.4", "Bad SMTPUTF8 parameter");
		m->smtputf8 = true;
	} else if (strcmp(pm->key, "RET") == 0) {
		/* RFC 3461 4.3 */
		if (m->ret != NULL || pm->val == NULL || !(val_is(pm, "FULL") || val_is(pm, "HDRS")))
			return perr(err, 501, "5.5.4", "Bad RET parameter");
		m->ret = val_upper(pm);
	} else if (strcmp(pm->key, "ENVID") == 0) {
		/* RFC 3461 4.4 */
		if (m->envid != NULL || pm->val == NULL || pm->vlen > SMTP_ENVID_MAX ||
		    !smtp_xtext_valid(pm->val, pm->vlen))
			return perr(err, 501, "5.5.4", "Bad ENVID parameter");
		m->envid = xstrndup(pm->val, pm->vlen);
	} else if (strcmp(pm->key, "AUTH") == 0) {
		/* RFC 4954 5: AUTH=<> or AUTH=xtext mailbox; accepted, not trusted */
		if (m->auth != NULL || pm->val == NULL ||
		    !(val_is(pm, "<>") || smtp_xtext_valid(pm->val, pm->vlen)))
			return perr(err, 501, "5.5.4", "Bad AUTH parameter");
		m->auth = xstrndup(pm->val, pm->vlen);
	} else {
		return perr(err, 555, "5.5.4", "Unsupported MAIL parameter");
	}
	return 0;
}

int smtp_parse_mail(const char *args, struct smtp_mail_args *m, struct smtp_perr *err)
{
	const char *p = skip_prefix(args, "FROM:");
	struct param pm;
	int r;

	memset(m, 0, sizeof(*m));
	if (p == NULL)
		return perr(err, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
	/* UTF-8 is checked after the parameters: SMTPUTF8 comes after the path. */
	if (parse_path(&p, true, true, false, &m->addr) < 0)
		return perr(err, 501, "5.1.7", "Bad sender address syntax");
	if (*p != '\0' && *p != ' ') {
		smtp_mail_args_free(m);
		return perr(err, 501, "5.1.7", "Bad sender address syntax");
	}
	while ((r = next_param(&p, false, &pm)) == 1) {
		if (mail_param(m, &pm, err) < 0) {
			smtp_mail_args_free(m);
			return -1;
		}
	}
	if (r < 0) {
		smtp_mail_args_free(m);
		return perr(err, 501, "5.5.4", "Bad MAIL parameter syntax");
	}
	/* RFC 6531 3.6.1 */
	if (!m->smtputf8 && addr_has_8bit(m->addr)) {
		smtp_mail_args_free(m);
		return perr(err, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
	}
	return 0;
}

void smtp_rcpt_args_free(struct smtp_rcpt_args *r)
{
	x_free(&r->addr);
	x_free(&r->notify);
	x_free(&r->orcpt);
}

/* RFC 3461 4.1: "NEVER" or a comma list of SUCCESS, FAILURE, DELAY. */
static bool notify_valid(const char *v, size_t n)
{
	static const char *const words[] = {"SUCCESS", "FAILURE", "DELAY"};
	unsigned seen = 0;
	size_t i = 0;

	if (n == 5 && strncasecmp(v, "NEVER", 5) == 0)
		return true;
	while (i < n) {
		size_t j = i;
		while (j < n && v[j] != ',')
			j++;
		size_t k;
		for (k = 0; k < 3; k++) {
			if (j - i == strlen(words[k]) && strncasecmp(v + i, words[k], j - i) == 0)
				break;
		}
		if (k == 3 || (seen & (1u << k)))
			return false;
		seen |= 1u << k;
		if (j == n)
			return true;
		i = j + 1;
		if (i == n)
			return false; /* trailing comma */
	}
	return false;
}

/* RFC 3461 4.2: ORCPT=addr-type ";" xtext; RFC 6533 adds utf-8-addr-xtext. */
static bool orcpt_valid(const char *v, size_t n, bool utf8)
{
	const char *semi = memchr(v, ';', n);

	if (semi == NULL || n > SMTP_ORCPT_MAX)
		return false;
	size_t tlen = (size_t)(semi - v);
	const char *x = semi + 1;
	size_t xlen = n - tlen - 1;
	if (xlen == 0)
		return false;
	if (tlen == 6 && strncasecmp(v, "rfc822", 6) == 0)
		return smtp_xtext_valid(x, xlen);
	if (tlen == 5 && strncasecmp(v, "utf-8", 5) == 0) {
		/* utf-8-addr-xtext / utf-8-addr-unitext: printable, no '+' '=' raw */
		for (size_t i = 0; i < xlen; i++) {
			unsigned char c = (unsigned char)x[i];
			if (c < 33 || c == 127 || c == '=' || (c > 127 && !utf8))
				return false;
		}
		return true;
	}
	return false;
}

int smtp_parse_rcpt(const char *args, bool utf8, struct smtp_rcpt_args *r,
		    struct smtp_perr *err)
{
	const char *p = skip_prefix(args, "TO:");
	struct param pm;
	int k;

	memset(r, 0, sizeof(*r));
	if (p == NULL)
		return perr(err, 501, "5.5.4", "Syntax: RCPT TO:<address>");
	if (parse_path(&p, false, true, true, &r->addr) < 0)
		return perr(err, 501, "5.1.3", "Bad recipient address syntax");
	if (*p != '\0' && *p != ' ') {
		smtp_rcpt_args_free(r);
		return perr(err, 501, "5.1.3", "Bad recipient address syntax");
	}
	/* RFC 6531 3.6.1 */
	if (!utf8 && addr_has_8bit(r->addr)) {
		smtp_rcpt_args_free(r);
		return perr(err, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
	}
	while ((k = next_param(&p, utf8, &pm)) == 1) {
		if (strcmp(pm.key, "NOTIFY") == 0) {
			if (r->notify != NULL || pm.val == NULL || !notify_valid(pm.val, pm.vlen)) {
				smtp_rcpt_args_free(r);
				return perr(err, 501, "5.5.4", "Bad NOTIFY parameter");
			}
			r->notify = val_upper(&pm);
		} else if (strcmp(pm.key, "ORCPT") == 0) {
			if (r->orcpt != NULL || pm.val == NULL ||
			    !orcpt_valid(pm.val, pm.vlen, utf8)) {
				smtp_rcpt_args_free(r);
				return perr(err, 501, "5.5.4", "Bad ORCPT parameter");
			}
			r->orcpt = xstrndup(pm.val, pm.vlen);
		} else {
			smtp_rcpt_args_free(r);
			return perr(err, 555, "5.5.4", "Unsupported RCPT parameter");
		}
	}
	if (k < 0) {
		smtp_rcpt_args_free(r);
		return perr(err, 501, "5.5.4", "Bad RCPT parameter syntax");
	}
	return 0;
}

int smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r)
{
	const char *p = args;
	uint64_t v = 0;
	int nd = 0;

	/* RFC 3030 2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF */
	while (isdigit((unsigned char)*p)) {
		if (++nd > 18) /* < 10^18: no overflow, and far beyond any size limit */
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
		p++;
	}
	if (nd == 0)
		return -1;
	*last_r = false;
	if (*p != ' ' && *p != '\0')
		return -1;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "LAST", 4) == 0) {
		*last_r = true;
		p += 4;
		while (*p == ' ')
			p++;
	}
	if (*p != '\0')
		return -1;
	*size_r = v;
	return 0;
}
