/* DMARC aggregate reports: the pure parts (XML, compression, the message)
 * here; reading received reports in report_read.c; the run and the timer in
 * report_run.c. */
#include "policy/report.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "core/base64.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "mime/header.h"

/* ---- XML ---- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : (c & 0xf0) == 0xe0 ? 3
		   : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if (n == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
		return 0; /* overlong, surrogates */
	if (n == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
		return 0;
	return n;
}

void report_xml_escape(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	while (*p) {
		switch (*p) {
		case '&':
			buf_appends(out, "&amp;");
			break;
		case '<':
			buf_appends(out, "&lt;");
			break;
		case '>':
			buf_appends(out, "&gt;");
			break;
		case '"':
			buf_appends(out, "&quot;");
			break;
		case '\'':
			buf_appends(out, "&apos;");
			break;
		default:
			if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') {
				buf_appendc(out, '?'); /* XML 1.0 2.2: not a Char */
				break;
			}
			size_t n = utf8_len(p);
			if (n == 0) {
				buf_appendc(out, '?');
				break;
			}
			buf_append(out, p, n);
			p += n;
			continue;
		}
		p++;
	}
}

static void elem(struct buf *out, const char *name, const char *value)
{
	buf_printf(out, "<%s>", name);
	report_xml_escape(out, value);
	buf_printf(out, "</%s>", name);
}

/* The value if it is one of the schema's enumeration (space-separated),
 * else dflt: the document must validate whatever a row holds. */
static const char *pick(const char *v, const char *allowed, const char *dflt)
{
	size_t n = strlen(v);
	for (const char *a = allowed; n > 0 && *a;) {
		size_t k = strcspn(a, " ");
		if (k == n && strncmp(a, v, n) == 0)
			return v;
		a += k + (a[k] == ' ');
	}
	return dflt;
}

#define DISPOSITIONS "none quarantine reject"
#define DMARC_RESULTS "pass fail"
#define OVERRIDES "forwarded sampled_out trusted_forwarder mailing_list local_policy other"
#define DKIM_RESULTS "none pass fail policy neutral temperror permerror"
#define SPF_RESULTS "none neutral pass fail softfail temperror permerror"

/* One distinct record: the fields joined (key) and its count. */
struct agg_rec {
	struct agg_rec *next; /* hash chain */
	uint64_t count;
	size_t nf;
	char **f; /* source_ip, disposition, dkim, spf, reason, comment, envelope_to,
		   * envelope_from, header_from, spf_domain, spf_scope, spf_result,
		   * then (domain, selector, result) per DKIM result */
	char *key;
};
enum { R_IP, R_DISP, R_DKIM, R_SPF, R_REASON, R_COMMENT, R_ENV_TO, R_ENV_FROM, R_HDR_FROM,
       R_SPF_DOMAIN, R_SPF_SCOPE, R_SPF_RESULT, R_N };

#define AGG_BUCKETS 1024

struct report_agg {
	char *domain;
	char *p, *sp, *fo, *rua;
	int pct;
	char adkim, aspf;
	struct agg_rec *buckets[AGG_BUCKETS];
	struct agg_rec **order; /* in first-seen order */
	size_t n, cap;
	uint64_t dropped;
};

struct report_agg *report_agg_new(const char *policy_domain)
{
	struct report_agg *a = xcalloc(1, sizeof *a);
	a->domain = xstrdup(policy_domain);
	a->p = xstrdup("none");
	a->sp = xstrdup("none");
	a->fo = xstrdup("0");
	a->rua = xstrdup("");
	a->pct = 100;
	a->adkim = a->aspf = 'r';
	return a;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = xstrdup(v ? v : "");
}

/* The numeric form the schema's IPAddress pattern accepts: dotted quad, or
 * eight groups of hex digits (RFC 7489 Appendix C has no "::"). false if
 * ip is not an address. */
static bool ip_canon(const char *ip, char *out, size_t outsz)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, ip, &a4) == 1)
		return inet_ntop(AF_INET, &a4, out, (socklen_t)outsz) != NULL;
	if (inet_pton(AF_INET6, ip, &a6) != 1 || outsz < 40)
		return false;
	char *o = out;
	for (int i = 0; i < 8; i++)
		o += sprintf(o, "%s%x", i ? ":" : "", (a6.s6_addr[2 * i] << 8) | a6.s6_addr[2 * i + 1]);
	return true;
}

void report_agg_add(struct report_agg *a, const struct store_dmarc_row *row)
{
	set_str(&a->p, pick(row->p, DISPOSITIONS, "none"));
	set_str(&a->sp, pick(row->sp[0] ? row->sp : row->p, DISPOSITIONS, "none"));
	set_str(&a->fo, row->fo[0] ? row->fo : "0");
	set_str(&a->rua, row->rua);
	a->pct = row->pct < 0 ? 0 : row->pct > 100 ? 100 : row->pct;
	a->adkim = row->adkim == 's' ? 's' : 'r';
	a->aspf = row->aspf == 's' ? 's' : 'r';

	char ip[48];
	if (!ip_canon(row->source_ip, ip, sizeof ip)) {
		a->dropped++;
		return;
	}
	size_t nd = row->n_dkim < STORE_DMARC_MAX_DKIM ? row->n_dkim : STORE_DMARC_MAX_DKIM;
	size_t nf = R_N + 3 * nd;
	const char **v = xcalloc(nf, sizeof *v);
	v[R_IP] = ip;
	v[R_DISP] = pick(row->disposition, DISPOSITIONS, "none");
	v[R_DKIM] = pick(row->dkim, DMARC_RESULTS, "fail");
	v[R_SPF] = pick(row->spf, DMARC_RESULTS, "fail");
	v[R_REASON] = pick(row->reason, OVERRIDES, "");
	v[R_COMMENT] = v[R_REASON][0] ? row->reason_comment : "";
	v[R_ENV_TO] = row->envelope_to;
	v[R_ENV_FROM] = row->envelope_from;
	v[R_HDR_FROM] = row->header_from;
	v[R_SPF_DOMAIN] = row->spf_domain;
	v[R_SPF_SCOPE] = pick(row->spf_scope, "helo mfrom", "mfrom");
	v[R_SPF_RESULT] = pick(row->spf_result, SPF_RESULTS, "none");
	for (size_t i = 0; i < nd; i++) {
		v[R_N + 3 * i] = row->dkim_results[i].domain;
		v[R_N + 3 * i + 1] = row->dkim_results[i].selector;
		v[R_N + 3 * i + 2] = pick(row->dkim_results[i].result, DKIM_RESULTS, "neutral");
	}
	struct buf key = BUF_INIT;
	for (size_t i = 0; i < nf; i++) {
		buf_appends(&key, v[i] ? v[i] : "");
		buf_appendc(&key, '\x1f');
	}
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < key.len; i++)
		h = (h ^ (unsigned char)key.data[i]) * 16777619u;
	struct agg_rec **bp = &a->buckets[h % AGG_BUCKETS];
	for (struct agg_rec *r = *bp; r != NULL; r = r->next) {
		if (strcmp(r->key, key.data) == 0) {
			r->count++;
			goto out;
		}
	}
	if (a->n >= REPORT_MAX_RECORDS) {
		if (a->dropped++ == 0)
			log_warn("dmarc report: more than %u records for domain=%s; the rest dropped",
				 REPORT_MAX_RECORDS, a->domain);
		goto out;
	}
	struct agg_rec *r = xcalloc(1, sizeof *r);
	r->count = 1;
	r->nf = nf;
	r->f = xcalloc(nf, sizeof *r->f);
	for (size_t i = 0; i < nf; i++)
		r->f[i] = xstrdup(v[i] ? v[i] : "");
	r->key = xstrdup(key.data);
	r->next = *bp;
	*bp = r;
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 16;
		a->order = xrealloc(a->order, a->cap * sizeof *a->order);
	}
	a->order[a->n++] = r;
out:
	buf_free(&key);
	free(v);
}

size_t report_agg_records(const struct report_agg *a)
{
	return a->n;
}

const char *report_agg_rua(const struct report_agg *a)
{
	return a->rua;
}

const char *report_agg_domain(const struct report_agg *a)
{
	return a->domain;
}

void report_agg_free(struct report_agg **ap)
{
	struct report_agg *a = *ap;
	if (a == NULL)
		return;
	*ap = NULL;
	for (size_t i = 0; i < a->n; i++) {
		struct agg_rec *r = a->order[i];
		for (size_t k = 0; k < r->nf; k++)
			free(r->f[k]);
		free(r->f);
		free(r->key);
		free(r);
	}
	free(a->order);
	free(a->domain);
	free(a->p);
	free(a->sp);
	free(a->fo);
	free(a->rua);
	free(a);
}

/* RFC 7489 Appendix C: the elements in the schema's order (xs:sequence). */
void report_agg_xml(const struct report_agg *a, const struct report_meta *m, struct buf *out)
{
	char adkim[2] = {a->adkim, 0}, aspf[2] = {a->aspf, 0};
	buf_appends(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n");
	buf_appends(out, "  <version>1.0</version>\n  <report_metadata>\n    ");
	elem(out, "org_name", m->org_name);
	buf_appends(out, "\n    ");
	elem(out, "email", m->email);
	buf_appends(out, "\n    ");
	elem(out, "report_id", m->report_id);
	buf_printf(out, "\n    <date_range><begin>%lld</begin><end>%lld</end></date_range>\n",
		   (long long)m->begin, (long long)m->end);
	buf_appends(out, "  </report_metadata>\n  <policy_published>\n    ");
	elem(out, "domain", a->domain);
	buf_appends(out, "\n    ");
	elem(out, "adkim", adkim);
	elem(out, "aspf", aspf);
	elem(out, "p", a->p);
	elem(out, "sp", a->sp);
	buf_printf(out, "<pct>%d</pct>", a->pct);
	elem(out, "fo", a->fo);
	buf_appends(out, "\n  </policy_published>\n");
	for (size_t i = 0; i < a->n; i++) {
		struct agg_rec *r = a->order[i];
		char **f = r->f;
		buf_appends(out, "  <record>\n    <row>");
		elem(out, "source_ip", f[R_IP]);
		buf_printf(out, "<count>%llu</count>", (unsigned long long)r->count);
		buf_appends(out, "<policy_evaluated>");
		elem(out, "disposition", f[R_DISP]);
		elem(out, "dkim", f[R_DKIM]);
		elem(out, "spf", f[R_SPF]);
		if (f[R_REASON][0]) {
			buf_appends(out, "<reason>");
			elem(out, "type", f[R_REASON]);
			if (f[R_COMMENT][0])
				elem(out, "comment", f[R_COMMENT]);
			buf_appends(out, "</reason>");
		}
		buf_appends(out, "</policy_evaluated></row>\n    <identifiers>");
		if (f[R_ENV_TO][0])
			elem(out, "envelope_to", f[R_ENV_TO]);
		elem(out, "envelope_from", f[R_ENV_FROM]);
		elem(out, "header_from", f[R_HDR_FROM]);
		buf_appends(out, "</identifiers>\n    <auth_results>");
		for (size_t k = R_N; k + 2 < r->nf; k += 3) {
			buf_appends(out, "<dkim>");
			elem(out, "domain", f[k]);
			if (f[k + 1][0])
				elem(out, "selector", f[k + 1]);
			elem(out, "result", f[k + 2]);
			buf_appends(out, "</dkim>");
		}
		buf_appends(out, "<spf>");
		elem(out, "domain", f[R_SPF_DOMAIN]);
		elem(out, "scope", f[R_SPF_SCOPE]);
		elem(out, "result", f[R_SPF_RESULT]);
		buf_appends(out, "</spf></auth_results>\n  </record>\n");
	}
	buf_appends(out, "</feedback>\n");
}

/* ---- compression ---- */

int report_gzip(const void *in, size_t n, struct buf *out)
{
	z_stream z = {0};
	/* 15 + 16: a gzip header and trailer (RFC 1952), not zlib's */
	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	size_t bound = deflateBound(&z, (uLong)n) + 32;
	buf_reserve(out, bound);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)out->data + out->len;
	z.avail_out = (uInt)bound;
	int rc = deflate(&z, Z_FINISH);
	if (rc == Z_STREAM_END)
		out->len += z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END)
		return -1;
	out->data[out->len] = '\0';
	return 0;
}

/* Inflates in (window: zlib's windowBits) into out, at most max bytes. */
static int inflate_all(const void *in, size_t n, int window, size_t max, struct buf *out,
		       const char **err_r)
{
	z_stream z = {0};
	if (inflateInit2(&z, window) != Z_OK) {
		*err_r = "inflate init failed";
		return -1;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)n;
	size_t start = out->len;
	int rc = Z_OK;
	while (rc != Z_STREAM_END) {
		if (out->len - start >= max) {
			*err_r = "too large";
			rc = Z_MEM_ERROR;
			break;
		}
		size_t room = 64 * 1024;
		if (room > max - (out->len - start))
			room = max - (out->len - start);
		buf_reserve(out, room + 1);
		z.next_out = (Bytef *)out->data + out->len;
		z.avail_out = (uInt)room;
		rc = inflate(&z, Z_NO_FLUSH);
		out->len += room - z.avail_out;
		if (rc == Z_STREAM_END)
			break;
		if (rc != Z_OK || (z.avail_in == 0 && z.avail_out != 0)) {
			*err_r = rc == Z_DATA_ERROR ? "corrupt compressed data"
						    : "truncated compressed data";
			rc = Z_DATA_ERROR;
			break;
		}
	}
	inflateEnd(&z);
	if (out->cap > 0)
		out->data[out->len] = '\0';
	return rc == Z_STREAM_END ? 0 : -1;
}

int report_gunzip(const void *in, size_t n, size_t max, struct buf *out, const char **err_r)
{
	const unsigned char *p = in;
	if (n < 18 || p[0] != 0x1f || p[1] != 0x8b) {
		*err_r = "not gzip data";
		return -1;
	}
	return inflate_all(in, n, 15 + 16, max, out, err_r);
}

static uint32_t le16(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const unsigned char *p)
{
	return le16(p) | le16(p + 2) << 16;
}

/* PKWARE APPNOTE 4.3: the end of central directory record (at most 64 KiB
 * of comment after it), its first central directory header, then that
 * entry's local header and data. */
int report_unzip(const void *in, size_t n, size_t max, struct buf *out, const char **err_r)
{
	const unsigned char *p = in;
	*err_r = "not a zip archive";
	if (n < 22)
		return -1;
	size_t eocd = n - 22, low = n - 22 > 65535 ? n - 22 - 65535 : 0;
	while (le32(p + eocd) != 0x06054b50) {
		if (eocd == low)
			return -1;
		eocd--;
	}
	uint32_t entries = le16(p + eocd + 10), cd = le32(p + eocd + 16);
	if (entries == 0) {
		*err_r = "empty zip archive";
		return -1;
	}
	*err_r = "malformed zip archive";
	if ((size_t)cd + 46 > eocd || le32(p + cd) != 0x02014b50)
		return -1;
	uint32_t flags = le16(p + cd + 8), method = le16(p + cd + 10);
	uint32_t csize = le32(p + cd + 20), usize = le32(p + cd + 24), loc = le32(p + cd + 42);
	if ((size_t)loc + 30 > n || le32(p + loc) != 0x04034b50)
		return -1;
	size_t data = (size_t)loc + 30 + le16(p + loc + 26) + le16(p + loc + 28);
	if (data > n || csize > n - data)
		return -1;
	if (flags & 1) {
		*err_r = "encrypted zip entry";
		return -1;
	}
	if (usize > max) {
		*err_r = "too large";
		return -1;
	}
	if (method == 0) {
		if (csize != usize)
			return -1;
		buf_append(out, p + data, csize);
		return 0;
	}
	if (method != 8) {
		*err_r = "unsupported zip compression method";
		return -1;
	}
	return inflate_all(p + data, csize, -15, max, out, err_r); /* raw deflate */
}

/* ---- rua ---- */

int report_rua_parse(const char *uri, char *addr, size_t addrsz, uint64_t *limit_r)
{
	*limit_r = 0;
	if (strncasecmp(uri, "mailto:", 7) != 0)
		return -1;
	const char *p = uri + 7, *bang = strchr(p, '!');
	const char *end = bang ? bang : p + strlen(p);
	size_t o = 0;
	for (; p < end; p++) {
		int c = (unsigned char)*p;
		if (c == '%' && end - p >= 3 && hex_value((unsigned char)p[1]) >= 0 &&
		    hex_value((unsigned char)p[2]) >= 0) {
			c = hex_value((unsigned char)p[1]) * 16 + hex_value((unsigned char)p[2]);
			p += 2;
		}
		if (c == '?')
			break; /* RFC 6068 hfields: not ours */
		if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' || o + 1 >= addrsz)
			return -1;
		addr[o++] = (char)c;
	}
	addr[o] = '\0';
	const char *at = strrchr(addr, '@');
	if (at == NULL || at == addr || at[1] == '\0')
		return -1;
	if (bang != NULL) {
		/* RFC 7489 6.2: "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] */
		const char *d = bang + 1;
		uint64_t v = 0;
		if (!isdigit((unsigned char)*d))
			return -1;
		for (; isdigit((unsigned char)*d); d++) {
			if (v > (UINT64_MAX - 9) / 10)
				return -1;
			v = v * 10 + (uint64_t)(*d - '0');
		}
		int shift = 0;
		switch (tolower((unsigned char)*d)) {
		case 'k': shift = 10; d++; break;
		case 'm': shift = 20; d++; break;
		case 'g': shift = 30; d++; break;
		case 't': shift = 40; d++; break;
		}
		if (*d != '\0')
			return -1;
		*limit_r = shift && v > (UINT64_MAX >> shift) ? UINT64_MAX : v << shift;
		if (*limit_r == 0)
			*limit_r = 1; /* "!0": nothing fits */
	}
	return 0;
}

/* ---- the message ---- */

/* A token safe in a header field and a file name: [A-Za-z0-9._-], anything
 * else as '_' (names come from DNS and From fields). */
static void safe_token(struct buf *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		buf_appendc(out, isalnum(c) || c == '.' || c == '-' || c == '_' ? (char)c : '_');
	}
}

/* Header text without line breaks or control characters. */
static void safe_text(struct buf *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		buf_appendc(out, c < 0x20 || c == 0x7f ? ' ' : (char)c);
	}
}

void report_mail_build(const struct report_mail *m, struct buf *out)
{
	char date[64];
	header_date(m->now, date, sizeof date);
	struct buf fname = BUF_INIT, org = BUF_INIT, dom = BUF_INIT, id = BUF_INIT;
	safe_token(&dom, m->policy_domain);
	safe_token(&id, m->report_id);
	safe_text(&org, m->org_name);
	/* RFC 7489 7.2.1.1: filename = receiver "!" policy-domain "!" begin-timestamp
	 * "!" end-timestamp [ "!" unique-id ] "." extension */
	safe_token(&fname, m->hostname);
	buf_printf(&fname, "!%s!%lld!%lld!%s.xml.gz", dom.data, (long long)m->begin,
		   (long long)m->end, id.data);
	buf_printf(out, "From: <%s>\r\n", m->from);
	buf_appends(out, "To: ");
	safe_text(out, m->to);
	buf_printf(out, "\r\nDate: %s\r\n", date);
	/* RFC 7489 7.2.1.1: the Subject's form */
	buf_printf(out, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", dom.data,
		   org.data, id.data);
	buf_printf(out, "Message-ID: <dmarc-%s@", id.data);
	safe_token(out, m->hostname);
	buf_appends(out, ">\r\nMIME-Version: 1.0\r\n");
	char boundary[64];
	snprintf(boundary, sizeof boundary, "=_dmarc_report_%s", id.data);
	boundary[sizeof boundary - 1] = '\0';
	buf_printf(out, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
	buf_printf(out, "This is a DMARC aggregate report (RFC 7489) in MIME format.\r\n");
	buf_printf(out, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
	buf_printf(out, "DMARC aggregate report for %s from %s, %lld to %lld.\r\n", dom.data,
		   org.data, (long long)m->begin, (long long)m->end);
	buf_printf(out, "--%s\r\nContent-Type: application/gzip; name=\"%s\"\r\n", boundary,
		   fname.data);
	buf_printf(out, "Content-Transfer-Encoding: base64\r\n"
			"Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", fname.data);
	char *b64 = base64_encode(m->gz, m->gz_len);
	size_t n = strlen(b64);
	for (size_t i = 0; i < n; i += 76) {
		buf_append(out, b64 + i, n - i < 76 ? n - i : 76);
		buf_appends(out, "\r\n");
	}
	free(b64);
	buf_printf(out, "--%s--\r\n", boundary);
	buf_free(&fname);
	buf_free(&org);
	buf_free(&dom);
	buf_free(&id);
}
