/* IMAP URLs (RFC 5092) as CATENATE (RFC 4469 5) and URLAUTH take them: the
 * relative form "/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=a[.b]]"
 * and the absolute "imap://[user[;AUTH=x]@]host[:port]/..." of the same
 * path. Pure (parse.h's rules): no I/O, no globals; unit tested and fuzzed
 * with the other parse*.c files. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/hex.h"
#include "core/xmalloc.h"
#include "imap/parse.h"
#include "imap/parse_url.h"

/* RFC 3986 2.1 pct-encoded, decoded into a NUL-terminated copy; a NUL or a
 * broken escape is refused (NULL). */
static char *pct_decode(const char *s, size_t n)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= n || (h = hex_value((unsigned char)s[i + 1])) < 0 ||
			    (l = hex_value((unsigned char)s[i + 2])) < 0)
				goto bad;
			c = (char)(h * 16 + l);
			i += 2;
		}
		if (c == '\0' || (unsigned char)c < 0x20 || c == 0x7f)
			goto bad;
		buf_append(&b, &c, 1);
	}
	buf_append(&b, "", 0);
	if (b.data == NULL)
		return xstrdup("");
	return b.data;
bad:
	buf_free(&b);
	return NULL;
}

/* nz-number / number (RFC 9051 9), into 32 or 64 bits. */
static bool num64(const char *s, size_t n, uint64_t *v_r)
{
	uint64_t v = 0;

	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*v_r = v;
	return true;
}

static bool num32(const char *s, size_t n, uint32_t *v_r)
{
	uint64_t v;

	if (!num64(s, n, &v) || v == 0 || v > UINT32_MAX)
		return false;
	*v_r = (uint32_t)v;
	return true;
}

/* Case-insensitive search for needle in [s, s+n). */
static const char *find_ci(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; i + k <= n; i++)
		if (strncasecmp(s + i, needle, k) == 0)
			return s + i;
	return NULL;
}

/* RFC 5092 3: iauth's value, "*" / enc-auth-type = 1*achar, achar =
 * unreserved / pct-encoded / sub-delims-sh / "&" / "=" / "~" (checked, not
 * decoded: nothing here uses it, but it is echoed in the URLFETCH answer
 * and signed by GENURLAUTH, so that no control character or space rides
 * in it). */
static bool auth_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c != '\0' && strchr("-._~!$'()*+,&=", c) != NULL))
			continue;
		if (c == '%' && i + 2 < n && hex_value((unsigned char)s[i + 1]) >= 0 &&
		    hex_value((unsigned char)s[i + 2]) >= 0) {
			i += 2;
			continue;
		}
		return false;
	}
	return true;
}

static bool starts_ci(const char *s, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);
	return n >= k && strncasecmp(s, prefix, k) == 0;
}

/* RFC 3339 date-time as RFC 4467 3 takes it ("2030-01-01T00:00:00Z",
 * fractions, a numeric offset), to UTC seconds; false if malformed. */
static bool expire_parse(const char *p, size_t n, int64_t *t_r)
{
	int v[6] = {0};
	static const int width[6] = {4, 2, 2, 2, 2, 2};
	static const char sepc[6] = {'-', '-', 'T', ':', ':', 0};
	size_t i = 0;

	for (int k = 0; k < 6; k++) {
		for (int d = 0; d < width[k]; d++, i++) {
			if (i >= n || p[i] < '0' || p[i] > '9')
				return false;
			v[k] = v[k] * 10 + (p[i] - '0');
		}
		if (sepc[k] != 0) {
			if (i >= n ||
			    (p[i] != sepc[k] && !(k == 2 && (p[i] == 't' || p[i] == ' '))))
				return false;
			i++;
		}
	}
	if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
		return false;
	if (i < n && p[i] == '.') {
		i++;
		size_t f = i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == f)
			return false;
	}
	int64_t off = 0;
	if (i < n && (p[i] == 'Z' || p[i] == 'z')) {
		i++;
	} else if (i + 6 == n && (p[i] == '+' || p[i] == '-') && p[i + 3] == ':') {
		int hh = 0, mm = 0;
		for (int d = 1; d <= 5; d++)
			if (d != 3 && (p[i + d] < '0' || p[i + d] > '9'))
				return false;
		hh = (p[i + 1] - '0') * 10 + (p[i + 2] - '0');
		mm = (p[i + 4] - '0') * 10 + (p[i + 5] - '0');
		if (hh > 23 || mm > 59)
			return false;
		off = (int64_t)(hh * 3600 + mm * 60) * (p[i] == '+' ? 1 : -1);
		i += 6;
	} else {
		return false;
	}
	if (i != n)
		return false;
	/* days from civil (proleptic Gregorian) */
	int64_t y = v[0], m = v[1], d = v[2];
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = era * 146097 + doe - 719468;
	*t_r = days * 86400 + v[3] * 3600 + v[4] * 60 + v[5] - off;
	return true;
}

/* iurlauth-rump [":" mechanism ":" urlauth] (RFC 4467 3):
 * [";EXPIRE=" datetime] ";URLAUTH=" access, then optionally
 * ":" mechanism ":" 32*HEXDIG. s: the URL's start, [p, e) the part. */
static int urlauth_parse(struct imap_url *u, const char *s, const char *p, const char *e)
{
	const char *q;

	if (starts_ci(p, (size_t)(e - p), ";EXPIRE=")) {
		p += 8;
		q = find_ci(p, (size_t)(e - p), ";URLAUTH=");
		if (q == NULL || !expire_parse(p, (size_t)(q - p), &u->expire) || u->expire <= 0)
			return -1;
		p = q;
	}
	if (!starts_ci(p, (size_t)(e - p), ";URLAUTH="))
		return -1;
	p += 9;
	q = memchr(p, ':', (size_t)(e - p));
	const char *ae = q != NULL ? q : e;
	/* access = ("submit+" / "user+") enc-user / "authuser" / "anonymous" */
	size_t pre = 0;
	if (starts_ci(p, (size_t)(ae - p), "submit+"))
		pre = 7;
	else if (starts_ci(p, (size_t)(ae - p), "user+"))
		pre = 5;
	if (pre > 0) {
		if (ae == p + pre)
			return -1;
		char *name = pct_decode(p + pre, (size_t)(ae - p - pre));
		if (name == NULL)
			return -1;
		u->access = xmalloc(pre + strlen(name) + 1);
		memcpy(u->access, pre == 7 ? "submit+" : "user+", pre);
		strcpy(u->access + pre, name);
		free(name);
	} else if ((size_t)(ae - p) == 8 && strncasecmp(p, "authuser", 8) == 0) {
		u->access = xstrdup("authuser");
	} else if ((size_t)(ae - p) == 9 && strncasecmp(p, "anonymous", 9) == 0) {
		u->access = xstrdup("anonymous");
	} else {
		return -1;
	}
	u->rump_len = (size_t)(ae - s);
	if (q == NULL)
		return 0;
	/* ":" mechanism ":" urlauth; mechanism = "INTERNAL" / 1*(ALPHA /
	 * DIGIT / "-" / "."), urlauth = 32*HEXDIG */
	const char *m = q + 1;
	const char *me = memchr(m, ':', (size_t)(e - m));
	if (me == NULL || me == m)
		return -1;
	for (const char *x = m; x < me; x++)
		if (!((*x >= 'a' && *x <= 'z') || (*x >= 'A' && *x <= 'Z') ||
		      (*x >= '0' && *x <= '9') || *x == '-' || *x == '.'))
			return -1;
	const char *t = me + 1;
	if (e - t < 32)
		return -1;
	for (const char *x = t; x < e; x++)
		if (hex_value((unsigned char)*x) < 0)
			return -1;
	u->mech = xstrndup(m, (size_t)(me - m));
	u->token = xstrndup(t, (size_t)(e - t));
	return 0;
}

void imap_url_free(struct imap_url *u)
{
	free(u->user);
	free(u->host);
	free(u->mailbox);
	free(u->section);
	free(u->urlauth);
	free(u->access);
	free(u->mech);
	free(u->token);
	memset(u, 0, sizeof *u);
}

int imap_url_parse(const char *s, size_t n, struct imap_url *u)
{
	const char *e = s + n, *p, *q;

	memset(u, 0, sizeof *u);
	if (starts_ci(s, n, "imap://")) {
		/* RFC 5092 3: iserver = [iuserinfo "@"] host [":" port] */
		p = s + 7;
		q = memchr(p, '/', (size_t)(e - p));
		if (q == NULL)
			goto bad;
		const char *at = NULL;
		for (const char *x = p; x < q; x++)
			if (*x == '@')
				at = x;
		const char *host = p;
		if (at != NULL) {
			const char *ue = find_ci(p, (size_t)(at - p), ";AUTH=");
			if (ue == NULL)
				ue = at;
			else if (!auth_ok(ue + 6, (size_t)(at - ue - 6)))
				goto bad;
			if (ue > p && (u->user = pct_decode(p, (size_t)(ue - p))) == NULL)
				goto bad;
			host = at + 1;
		}
		const char *colon = memchr(host, ':', (size_t)(q - host));
		const char *he = colon != NULL ? colon : q;
		if (he == host)
			goto bad;
		if (colon != NULL) {
			uint64_t port;
			if (!num64(colon + 1, (size_t)(q - colon - 1), &port) || port > 65535)
				goto bad;
		}
		if ((u->host = pct_decode(host, (size_t)(he - host))) == NULL)
			goto bad;
		p = q;
	} else {
		p = s;
	}
	/* "/" enc-mailbox [uidvalidity] iuid [isection] [ipartial] [iurlauth]
	 * (RFC 5092 3, the message part of an imessagepart) */
	if (p >= e || *p != '/')
		goto bad;
	p++;
	q = find_ci(p, (size_t)(e - p), "/;UID=");
	if (q == NULL)
		goto bad;
	{
		const char *mbe = q;
		const char *uv = find_ci(p, (size_t)(q - p), ";UIDVALIDITY=");
		if (uv != NULL) {
			const char *v = uv + 13;
			if (!num32(v, (size_t)(q - v), &u->uidvalidity))
				goto bad;
			mbe = uv;
		}
		if (mbe == p || (u->mailbox = pct_decode(p, (size_t)(mbe - p))) == NULL)
			goto bad;
	}
	p = q + 6;
	/* the rest: UID, then optional "/;SECTION=", "/;PARTIAL=", and the
	 * URLAUTH parts ";EXPIRE=", ";URLAUTH=" (RFC 4467 3) */
	q = p;
	while (q < e && *q != '/' && *q != ';')
		q++;
	if (!num32(p, (size_t)(q - p), &u->uid))
		goto bad;
	p = q;
	if (starts_ci(p, (size_t)(e - p), "/;SECTION=")) {
		p += 10;
		q = p;
		while (q < e && *q != '/' && *q != ';')
			q++;
		if (q == p || (u->section = pct_decode(p, (size_t)(q - p))) == NULL)
			goto bad;
		p = q;
	}
	if (starts_ci(p, (size_t)(e - p), "/;PARTIAL=")) {
		p += 10;
		q = p;
		while (q < e && *q != '.' && *q != '/' && *q != ';')
			q++;
		if (!num64(p, (size_t)(q - p), &u->partial_off))
			goto bad;
		u->partial = true;
		if (q < e && *q == '.') {
			const char *l = ++q;
			while (q < e && *q != '/' && *q != ';')
				q++;
			if (!num64(l, (size_t)(q - l), &u->partial_len) || u->partial_len == 0)
				goto bad;
		}
		p = q;
	}
	if (p < e) {
		/* iurlauth (RFC 4467 3): kept whole for the URLAUTH commands */
		if (*p != ';')
			goto bad;
		u->urlauth = xstrndup(p, (size_t)(e - p));
		if (urlauth_parse(u, s, p, e) < 0)
			goto bad;
	}
	return 0;
bad:
	imap_url_free(u);
	return -1;
}

int imap_url_section(const char *section, struct imap_fetch *f)
{
	struct buf b = BUF_INIT;
	const char *err;
	int ret;

	memset(f, 0, sizeof *f);
	buf_appends(&b, "BODY.PEEK[");
	if (section != NULL)
		buf_appends(&b, section);
	buf_appends(&b, "]");
	struct imap_arg args[2] = {
	    {.type = IMAP_ARG_ATOM, .str = b.data, .len = b.len},
	    {.type = IMAP_ARG_EOL},
	};
	ret = imap_fetch_parse(args, f, &err);
	if (ret == 0 && (f->n != 1 || f->v[0].kind != IMAP_FETCH_SECTION || f->v[0].partial)) {
		imap_fetch_free(f);
		ret = -1;
	}
	buf_free(&b);
	return ret;
}
