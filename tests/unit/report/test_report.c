/* Unit tests for DMARC aggregate reports (src/policy/report*.c) and their
 * rows in the store (src/store/dmarc.c): XML escaping of hostile names and
 * addresses, aggregation, gzip and zip decoding with their bounds, rua URIs,
 * the report message and finding the report in it again, the period. */
#include "../test.h"
#define STORE_FIXTURE_NAME "test_report"
#include "../store_fixture.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <zlib.h>

#include "core/buf.h"
#include "policy/report.h"

/* ---- XML escaping ---- */

static void test_escape(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"example.com", "example.com"},
		{"<evil>&co", "&lt;evil&gt;&amp;co"},
		{"a\"b'c", "a&quot;b&apos;c"},
		{"x\x01y\x1fz\x7f", "x?y?z\x7f"},      /* C0 controls are not XML 1.0 Chars */
		{"tab\there", "tab\there"},
		{"caf\xc3\xa9", "caf\xc3\xa9"},         /* valid UTF-8 kept */
		{"bad\xc3(\xff\xfe", "bad?(??"},        /* invalid UTF-8 replaced */
		{"\xed\xa0\x80", "???"},                /* a surrogate */
		{"]]><!--", "]]&gt;&lt;!--"},
		{"", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf b = BUF_INIT;
		report_xml_escape(&b, cases[i].in);
		CHECK_STR((int)i, b.data ? b.data : "", cases[i].want);
		buf_free(&b);
	}
}

/* ---- aggregation and the document ---- */

static struct store_dmarc_row row_base(void)
{
	static const struct store_dmarc_dkim dk[] = {{"example.com", "sel1", "pass"},
						      {"other.example", "", "fail"}};
	return (struct store_dmarc_row){
		.time = 1000,
		.source_ip = "192.0.2.1",
		.header_from = "example.com",
		.envelope_from = "example.com",
		.envelope_to = "rcpt.example",
		.policy_domain = "example.com",
		.p = "reject",
		.sp = "quarantine",
		.pct = 100,
		.adkim = 'r',
		.aspf = 's',
		.fo = "1",
		.rua = "mailto:reports@example.com",
		.disposition = "none",
		.dkim = "pass",
		.spf = "fail",
		.reason = "",
		.reason_comment = "",
		.dkim_results = dk,
		.n_dkim = 2,
		.spf_domain = "example.com",
		.spf_scope = "mfrom",
		.spf_result = "softfail",
	};
}

static xmlDoc *parse(const struct buf *b)
{
	return xmlReadMemory(b->data, (int)b->len, "t.xml", NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static char *xpath_text(xmlNode *n, const char *const *path)
{
	for (; *path && n; path++) {
		xmlNode *c = n->children;
		while (c && !(c->type == XML_ELEMENT_NODE && strcmp((char *)c->name, *path) == 0))
			c = c->next;
		n = c;
	}
	return n ? (char *)xmlNodeGetContent(n) : NULL;
}

static void test_aggregate(void)
{
	struct report_agg *a = report_agg_new("example.com");
	struct store_dmarc_row r = row_base();
	for (int i = 0; i < 3; i++)
		report_agg_add(a, &r);
	r.source_ip = "2001:db8::1"; /* another record, IPv6 */
	r.disposition = "quarantine";
	r.reason = "sampled_out";
	r.reason_comment = "pct";
	report_agg_add(a, &r);
	r.source_ip = "not an ip"; /* dropped */
	report_agg_add(a, &r);
	CHECK_INT(1, report_agg_records(a), 2);

	struct report_meta m = {.org_name = "Org <&>", .email = "dmarc@example.net",
				.report_id = "id.1", .begin = 86400, .end = 172799};
	struct buf b = BUF_INIT;
	report_agg_xml(a, &m, &b);
	xmlDoc *doc = parse(&b);
	CHECK(doc != NULL);
	if (doc != NULL) {
		xmlNode *root = xmlDocGetRootElement(doc);
		static const char *const org[] = {"report_metadata", "org_name", NULL};
		static const char *const count[] = {"record", "row", "count", NULL};
		static const char *const ip[] = {"record", "row", "source_ip", NULL};
		static const char *const sp[] = {"policy_published", "sp", NULL};
		char *t;
		CHECK_STR(2, t = xpath_text(root, org), "Org <&>");
		xmlFree(t);
		CHECK_STR(3, t = xpath_text(root, count), "3");
		xmlFree(t);
		CHECK_STR(4, t = xpath_text(root, ip), "192.0.2.1");
		xmlFree(t);
		CHECK_STR(5, t = xpath_text(root, sp), "quarantine");
		xmlFree(t);
		xmlFreeDoc(doc);
	}
	/* the IPv6 address in the schema's form (eight groups) */
	CHECK(strstr(b.data, "<source_ip>2001:db8:0:0:0:0:0:1</source_ip>") != NULL);
	CHECK(strstr(b.data, "<reason><type>sampled_out</type><comment>pct</comment></reason>") !=
	      NULL);
	CHECK(strstr(b.data, "<dkim><domain>other.example</domain><result>fail</result></dkim>") !=
	      NULL);
	buf_free(&b);
	report_agg_free(&a);
	CHECK(a == NULL);
}

/* Names and addresses from the outside (From domains, DKIM d=, the rua)
 * cannot break the document: it stays well-formed, the values read back as
 * they were (escaped, not interpreted), and values outside the schema's
 * enumerations are replaced by valid ones. */
static void test_hostile(void)
{
	static const char *const evil[] = {
		"</header_from><injected/>",
		"a&b;<![CDATA[x]]>",
		"\"quoted' \x01\x02 \xff",
		"<!DOCTYPE x [<!ENTITY e \"boom\">]>&e;",
	};
	for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
		struct store_dmarc_dkim dk[] = {{evil[i], evil[i], "<pass/>"}};
		struct store_dmarc_row r = row_base();
		r.header_from = evil[i];
		r.envelope_from = evil[i];
		r.spf_domain = evil[i];
		r.fo = evil[i];
		r.disposition = "</disposition>";
		r.spf_result = evil[i];
		r.dkim_results = dk;
		r.n_dkim = 1;
		struct report_agg *a = report_agg_new(evil[i]);
		report_agg_add(a, &r);
		struct report_meta m = {.org_name = evil[i], .email = evil[i], .report_id = evil[i]};
		struct buf b = BUF_INIT;
		report_agg_xml(a, &m, &b);
		xmlDoc *doc = parse(&b);
		CHECK_INT((int)i, doc != NULL, 1);
		if (doc != NULL) {
			xmlNode *root = xmlDocGetRootElement(doc);
			static const char *const hf[] = {"record", "identifiers", "header_from",
							  NULL};
			static const char *const disp[] = {"record", "row", "policy_evaluated",
							    "disposition", NULL};
			static const char *const dres[] = {"record", "auth_results", "dkim",
							    "result", NULL};
			char *t = xpath_text(root, hf);
			struct buf want = BUF_INIT;
			/* what report_xml_escape keeps, unescaped: controls and bad
			 * bytes as '?' */
			for (const unsigned char *p = (const unsigned char *)evil[i]; *p; p++)
				buf_appendc(&want, (*p < 0x20 || *p >= 0x80) ? '?' : (char)*p);
			CHECK_STR((int)i, t, want.data);
			xmlFree(t);
			CHECK_STR((int)i, t = xpath_text(root, disp), "none");
			xmlFree(t);
			CHECK_STR((int)i, t = xpath_text(root, dres), "neutral");
			xmlFree(t);
			CHECK(doc->intSubset == NULL);
			xmlFreeDoc(doc);
			buf_free(&want);
		}
		buf_free(&b);
		report_agg_free(&a);
	}
}

/* ---- compression ---- */

static void test_gzip(void)
{
	const char *text = "<feedback>hello hello hello hello</feedback>\n";
	struct buf gz = BUF_INIT, out = BUF_INIT;
	const char *err = NULL;
	CHECK_INT(1, report_gzip(text, strlen(text), &gz), 0);
	CHECK(gz.len > 18 && (unsigned char)gz.data[0] == 0x1f &&
	      (unsigned char)gz.data[1] == 0x8b);
	CHECK_INT(2, report_gunzip(gz.data, gz.len, 1024, &out, &err), 0);
	CHECK_STR(3, out.data, text);
	buf_reset(&out);
	/* the bound: more than max decompressed bytes is an error */
	CHECK_INT(4, report_gunzip(gz.data, gz.len, 10, &out, &err), -1);
	CHECK_STR(5, err, "too large");
	buf_reset(&out);
	/* truncated */
	CHECK_INT(6, report_gunzip(gz.data, gz.len - 12, 1024, &out, &err), -1);
	buf_reset(&out);
	/* corrupt */
	gz.data[12] ^= 0x55;
	gz.data[13] ^= 0xff;
	CHECK_INT(7, report_gunzip(gz.data, gz.len, 1024, &out, &err), -1);
	buf_reset(&out);
	CHECK_INT(8, report_gunzip("not gzip at all, no", 19, 1024, &out, &err), -1);
	CHECK_STR(9, err, "not gzip data");
	/* a bomb: 8 MiB of zeros is ~8 KiB compressed; the bound stops it */
	size_t big = 8u << 20;
	char *zeros = calloc(1, big);
	struct buf bomb = BUF_INIT;
	buf_reset(&out);
	CHECK_INT(10, report_gzip(zeros, big, &bomb), 0);
	CHECK_INT(11, report_gunzip(bomb.data, bomb.len, 1u << 20, &out, &err), -1);
	CHECK(out.len <= (1u << 20));
	free(zeros);
	buf_free(&bomb);
	buf_free(&gz);
	buf_free(&out);
}

static void put16(struct buf *b, uint32_t v)
{
	unsigned char c[2] = {v & 0xff, (v >> 8) & 0xff};
	buf_append(b, c, 2);
}

static void put32(struct buf *b, uint32_t v)
{
	put16(b, v & 0xffff);
	put16(b, v >> 16);
}

/* A one-entry zip archive (APPNOTE 4.3) of data, stored (method 0) or
 * deflated (8); with a data descriptor flag (sizes 0 in the local header,
 * as streaming writers do) when ddesc. */
static void make_zip(struct buf *z, const char *data, int method, bool ddesc)
{
	size_t n = strlen(data);
	struct buf comp = BUF_INIT;
	if (method == 8) {
		z_stream s = {0};
		deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
		buf_reserve(&comp, deflateBound(&s, n) + 16);
		s.next_in = (Bytef *)data;
		s.avail_in = (uInt)n;
		s.next_out = (Bytef *)comp.data;
		s.avail_out = (uInt)comp.cap;
		deflate(&s, Z_FINISH);
		comp.len = s.total_out;
		deflateEnd(&s);
	} else {
		buf_append(&comp, data, n);
	}
	uint32_t crc = (uint32_t)crc32(0, (const Bytef *)data, (uInt)n);
	const char *name = "r.xml";
	put32(z, 0x04034b50);
	put16(z, 20);
	put16(z, ddesc ? 8 : 0);
	put16(z, (uint32_t)method);
	put32(z, 0);
	put32(z, ddesc ? 0 : crc);
	put32(z, ddesc ? 0 : (uint32_t)comp.len);
	put32(z, ddesc ? 0 : (uint32_t)n);
	put16(z, (uint32_t)strlen(name));
	put16(z, 0);
	buf_appends(z, name);
	buf_append(z, comp.data, comp.len);
	if (ddesc) {
		put32(z, 0x08074b50);
		put32(z, crc);
		put32(z, (uint32_t)comp.len);
		put32(z, (uint32_t)n);
	}
	uint32_t cd = (uint32_t)z->len;
	put32(z, 0x02014b50);
	put16(z, 20);
	put16(z, 20);
	put16(z, ddesc ? 8 : 0);
	put16(z, (uint32_t)method);
	put32(z, 0);
	put32(z, crc);
	put32(z, (uint32_t)comp.len);
	put32(z, (uint32_t)n);
	put16(z, (uint32_t)strlen(name));
	put16(z, 0);
	put16(z, 0);
	put16(z, 0);
	put16(z, 0);
	put32(z, 0);
	put32(z, 0); /* local header at 0 */
	buf_appends(z, name);
	uint32_t cdlen = (uint32_t)z->len - cd;
	put32(z, 0x06054b50);
	put16(z, 0);
	put16(z, 0);
	put16(z, 1);
	put16(z, 1);
	put32(z, cdlen);
	put32(z, cd);
	put16(z, 0);
	buf_free(&comp);
}

static void test_zip(void)
{
	const char *text = "<feedback><x>zip zip zip zip zip</x></feedback>";
	static const struct {
		int method;
		bool ddesc;
	} cases[] = {{0, false}, {8, false}, {8, true}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf z = BUF_INIT, out = BUF_INIT;
		const char *err = NULL;
		make_zip(&z, text, cases[i].method, cases[i].ddesc);
		CHECK_INT((int)i, report_unzip(z.data, z.len, 4096, &out, &err), 0);
		CHECK_STR((int)i, out.data, text);
		buf_reset(&out);
		CHECK_INT((int)i, report_unzip(z.data, z.len, 8, &out, &err), -1);
		buf_reset(&out);
		/* cut anywhere: an error, never a read outside */
		for (size_t cut = 0; cut < z.len; cut += 7) {
			buf_reset(&out);
			int rc = report_unzip(z.data, cut, 4096, &out, &err);
			CHECK(rc == -1 || rc == 0);
		}
		buf_free(&z);
		buf_free(&out);
	}
	struct buf out = BUF_INIT;
	const char *err = NULL;
	CHECK_INT(9, report_unzip("PK\5\6", 4, 100, &out, &err), -1);
	buf_free(&out);
}

/* ---- rua ---- */

static void test_rua(void)
{
	static const struct {
		const char *uri;
		int rc;
		const char *addr;
		uint64_t limit;
	} cases[] = {
		{"mailto:reports@example.com", 0, "reports@example.com", 0},
		{"MAILTO:r@example.com!10m", 0, "r@example.com", 10u << 20},
		{"mailto:r@example.com!500", 0, "r@example.com", 500},
		{"mailto:r%40x@example.com!1k", 0, "r@x@example.com", 1024},
		{"mailto:r@example.com!", -1, NULL, 0},
		{"mailto:r@example.com!10x", -1, NULL, 0},
		{"https://example.com/r", -1, NULL, 0},
		{"mailto:noat", -1, NULL, 0},
		{"mailto:a b@example.com", -1, NULL, 0},
		{"mailto:a%0d%0aBcc:x@example.com", -1, NULL, 0},
		{"mailto:r@example.com?subject=x", 0, "r@example.com", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char addr[320];
		uint64_t limit = 99;
		int rc = report_rua_parse(cases[i].uri, addr, sizeof addr, &limit);
		CHECK_INT((int)i, rc, cases[i].rc);
		if (rc == 0) {
			CHECK_STR((int)i, addr, cases[i].addr);
			CHECK_INT((int)i, limit, cases[i].limit);
		}
	}
}

/* ---- the message, and finding the report in it ---- */

static void test_mail_roundtrip(void)
{
	struct report_agg *a = report_agg_new("example.com");
	struct store_dmarc_row r = row_base();
	report_agg_add(a, &r);
	report_agg_add(a, &r);
	struct report_meta m = {.org_name = "mx.example.net", .email = "dmarc@example.net",
				.report_id = "42.1.abc", .begin = 86400, .end = 172799};
	struct buf xml = BUF_INIT, gz = BUF_INIT, msg = BUF_INIT, back = BUF_INIT,
		   desc = BUF_INIT;
	report_agg_xml(a, &m, &xml);
	CHECK_INT(1, report_gzip(xml.data, xml.len, &gz), 0);
	struct report_mail mail = {
		.from = "dmarc@example.net",
		.to = "<reports@example.com>",
		.hostname = "mx.example.net",
		.org_name = "mx.example.net\r\nBcc: evil@example.org",
		.policy_domain = "example.com\r\nX-Evil: 1",
		.report_id = "42.1.abc",
		.begin = 86400,
		.end = 172799,
		.now = 200000,
		.gz = gz.data,
		.gz_len = gz.len,
	};
	report_mail_build(&mail, &msg);
	CHECK(strstr(msg.data, "Subject: Report Domain: example.com__X-Evil__1 Submitter: "
			       "mx.example.net  Bcc: evil@example.org Report-ID: <42.1.abc>\r\n") !=
	      NULL);
	CHECK(strstr(msg.data, "\r\nBcc:") == NULL && strstr(msg.data, "\r\nX-Evil") == NULL);
	CHECK(strstr(msg.data, "filename=\"mx.example.net!example.com__X-Evil__1!86400!172799!"
			       "42.1.abc.xml.gz\"") != NULL);
	CHECK(strstr(msg.data, "Content-Type: application/gzip") != NULL);
	const char *err = NULL;
	CHECK_INT(2, report_extract(msg.data, msg.len, &back, &err), 1);
	CHECK_INT(3, back.len, xml.len);
	CHECK(back.data != NULL && memcmp(back.data, xml.data, xml.len) == 0);
	CHECK_INT(4, report_describe(back.data, back.len, &desc, &err), 0);
	CHECK_STR(5, desc.data,
		  "report org=mx.example.net report_id=42.1.abc domain=example.com begin=86400"
		  " end=172799\npolicy p=reject sp=quarantine pct=100 adkim=r aspf=s\n"
		  "record source_ip=192.0.2.1 count=2 disposition=none dkim=pass spf=fail"
		  " header_from=example.com\n");
	buf_free(&xml);
	buf_free(&gz);
	buf_free(&msg);
	buf_free(&back);
	buf_free(&desc);
	report_agg_free(&a);
}

static void test_extract(void)
{
	static const struct {
		const char *msg;
		int rc;
		const char *xml;
	} cases[] = {
		/* not a report */
		{"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n", 0, NULL},
		/* a single-part text/xml report */
		{"Subject: r\r\nContent-Type: text/xml\r\n\r\n<feedback/>\r\n", 1,
		 "<feedback/>\r\n"},
		/* an attachment named .xml.gz that is not gzip: malformed */
		{"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: "
		 "text/plain\r\n\r\nx\r\n--b\r\nContent-Type: application/octet-stream\r\n"
		 "Content-Disposition: attachment; filename=\"r.xml.gz\"\r\n"
		 "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--b--\r\n",
		 -1, NULL},
		/* a zip named by type, nested in a multipart/alternative */
		{"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: "
		 "multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\n"
		 "x\r\n--i\r\nContent-Type: application/zip\r\n\r\nnot a zip\r\n--i--\r\n--o--\r\n",
		 -1, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf xml = BUF_INIT;
		const char *err = NULL;
		int rc = report_extract(cases[i].msg, strlen(cases[i].msg), &xml, &err);
		CHECK_INT((int)i, rc, cases[i].rc);
		if (rc == 1)
			CHECK_STR((int)i, xml.data, cases[i].xml);
		buf_free(&xml);
	}
}

static void test_describe_bad(void)
{
	static const char *const bad[] = {
		"<feedback><report_metadata>",                       /* not well-formed */
		"<html><body/></html>",                              /* not a report */
		"<!DOCTYPE feedback [<!ENTITY a \"aaaa\">]><feedback><report_metadata/>"
		"<policy_published/></feedback>",                    /* DTD refused */
		"<!DOCTYPE feedback SYSTEM \"http://127.0.0.1:1/x.dtd\"><feedback/>",
		"<feedback><record/></feedback>",                    /* no metadata */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct buf out = BUF_INIT;
		const char *err = NULL;
		CHECK_INT((int)i, report_describe(bad[i], strlen(bad[i]), &out, &err), -1);
		CHECK(err != NULL);
		buf_free(&out);
	}
}

static void test_period(void)
{
	time_t b, e;
	report_period(86400 * 100 + 3600, 86400, &b, &e);
	CHECK_INT(1, b, 86400 * 99);
	CHECK_INT(2, e, 86400 * 100);
	report_period(86400 * 100, 86400, &b, &e); /* exactly at midnight */
	CHECK_INT(3, b, 86400 * 99);
	CHECK_INT(4, e, 86400 * 100);
	report_period(7200 + 59, 3600, &b, &e);
	CHECK_INT(5, b, 3600);
	CHECK_INT(6, e, 7200);
}

/* ---- the store's rows ---- */

struct got {
	int n;
	char ips[8][64];
	char dkim[8][128];
	char rua[8][128];
};

static int got_row(void *arg, const struct store_dmarc_row *r)
{
	struct got *g = arg;
	if (g->n < 8) {
		snprintf(g->ips[g->n], sizeof g->ips[0], "%s %s %c%c %d", r->source_ip,
			 r->policy_domain, r->adkim, r->aspf, r->pct);
		struct buf b = BUF_INIT;
		for (size_t i = 0; i < r->n_dkim; i++)
			buf_printf(&b, "%s[%s|%s|%s]", i ? "," : "", r->dkim_results[i].domain,
				   r->dkim_results[i].selector, r->dkim_results[i].result);
		snprintf(g->dkim[g->n], sizeof g->dkim[0], "%s", b.data ? b.data : "");
		snprintf(g->rua[g->n], sizeof g->rua[0], "%s", r->rua);
		buf_free(&b);
	}
	g->n++;
	return 0;
}

static void test_store_rows(void)
{
	struct env e;
	CHECK(env_new(&e));
	struct store_dmarc_row r = row_base();
	r.time = 5000;
	store_dmarc_record(e.st, &r);
	struct store_dmarc_dkim dk[] = {{"evil domain\nwith lf", NULL, "pass"}};
	r.time = 6000;
	r.source_ip = "192.0.2.9";
	r.policy_domain = "a.example";
	r.dkim_results = dk;
	r.n_dkim = 1;
	store_dmarc_record(e.st, &r);
	r.time = 7000;
	r.rua = ""; /* no rua: not read for reports */
	store_dmarc_record(e.st, &r);
	store_wait_idle(e.st);
	CHECK_INT(1, sql_int("SELECT count(*) FROM dmarc_rows"), 3);
	struct got g = {0};
	char *err = NULL;
	CHECK_INT(2, store_dmarc_rows(e.st, 0, 10000, got_row, &g, &err), 0);
	CHECK_INT(3, g.n, 2);
	/* ordered by policy domain */
	CHECK_STR(4, g.ips[0], "192.0.2.9 a.example rs 100");
	CHECK_STR(5, g.dkim[0], "[evil||pass]");
	CHECK_STR(6, g.ips[1], "192.0.2.1 example.com rs 100");
	CHECK_STR(7, g.dkim[1], "[example.com|sel1|pass],[other.example||fail]");
	CHECK_STR(8, g.rua[1], "mailto:reports@example.com");
	memset(&g, 0, sizeof g);
	CHECK_INT(9, store_dmarc_rows(e.st, 5500, 10000, got_row, &g, &err), 0);
	CHECK_INT(10, g.n, 1);
	store_dmarc_prune(e.st, 6500);
	store_wait_idle(e.st);
	CHECK_INT(11, sql_int("SELECT count(*) FROM dmarc_rows"), 1);
	/* a batch: one job, every row (the committer's transaction count) */
	struct store_dmarc_row batch[3];
	for (int i = 0; i < 3; i++) {
		batch[i] = row_base();
		batch[i].time = 8000 + i;
	}
	batch[1].source_ip = "198.51.100.1";
	store_dmarc_record_n(e.st, batch, 3);
	store_dmarc_record_n(e.st, batch, 0); /* nothing */
	store_wait_idle(e.st);
	CHECK_INT(12, sql_int("SELECT count(*) FROM dmarc_rows WHERE time >= 8000"), 3);
	CHECK_INT(13, sql_int("SELECT count(*) FROM dmarc_rows WHERE source_ip = '198.51.100.1'"),
		  1);
	env_free(&e);
}

int main(void)
{
	test_run("escape", test_escape);
	test_run("aggregate", test_aggregate);
	test_run("hostile", test_hostile);
	test_run("gzip", test_gzip);
	test_run("zip", test_zip);
	test_run("rua", test_rua);
	test_run("mail_roundtrip", test_mail_roundtrip);
	test_run("extract", test_extract);
	test_run("describe_bad", test_describe_bad);
	test_run("period", test_period);
	test_run("store_rows", test_store_rows);
	xmlCleanupParser();
	return test_done("test_report");
}
