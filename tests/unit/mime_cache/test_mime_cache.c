/* Unit tests: the MIME cache (src/mime/mime.c) against Dovecot's answers in
 * tests/data/mime/NAME.expected, sections, truncated and corrupt caches, every
 * prefix of the corpus; decoding, encoded words, charsets, dates, search. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "mime/mime.h"
#include "mime/mime_int.h"
#include "mime/subject.h"
#include "../test.h"

#define CORPUS "tests/data/mime"

static char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b = BUF_INIT;
	char tmp[65536];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	*len_r = b.len;
	if (b.data == NULL)
		buf_reserve(&b, 1);
	return b.data;
}

/* the escapes of make-expected: \r \n \\ \" \xHH */
static void unescape(const char *s, size_t n, struct buf *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			buf_appendc(out, s[i]);
			continue;
		}
		i++;
		switch (s[i]) {
		case 'r':
			buf_appendc(out, '\r');
			break;
		case 'n':
			buf_appendc(out, '\n');
			break;
		case 'x': {
			char hex[3] = {s[i + 1], s[i + 2], 0};
			buf_appendc(out, (char)strtol(hex, NULL, 16));
			i += 2;
			break;
		}
		default:
			buf_appendc(out, s[i]);
		}
	}
}

static void to_crlf(const char *p, size_t n, struct buf *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			buf_appendc(out, '\r');
		buf_appendc(out, p[i]);
	}
}

static void show_diff(const char *what, const char *name, const char *got, size_t gn,
		      const char *want, size_t wn)
{
	size_t i = 0;

	while (i < gn && i < wn && got[i] == want[i])
		i++;
	printf("  %s %s differs at byte %zu:\n    got  %.*s\n    want %.*s\n", name, what, i,
	       (int)(gn - i < 200 ? gn - i : 200), got + i, (int)(wn - i < 200 ? wn - i : 200),
	       want + i);
}

/* "2.1.MIME" -> path {2,1}, MIME */
static size_t parse_section(const char *s, uint32_t *path, enum mime_section *what)
{
	size_t depth = 0;

	*what = MIME_SECT_BODY;
	while (*s) {
		if (*s >= '0' && *s <= '9') {
			path[depth++] = (uint32_t)strtoul(s, (char **)&s, 10);
		} else {
			if (strcmp(s, "MIME") == 0)
				*what = MIME_SECT_MIME;
			else if (strcmp(s, "HEADER") == 0)
				*what = MIME_SECT_HEADER;
			else if (strcmp(s, "TEXT") == 0)
				*what = MIME_SECT_TEXT;
			break;
		}
		if (*s == '.')
			s++;
	}
	return depth;
}

static int corpus_checked;

/* "SECTION 2.MIME ..." -> "SECTION 2.MIME", "BODY (..." -> "BODY" (static) */
static const char *item_key(const char *l)
{
	static char keys[64][80];
	static int next;
	char *k = keys[next++ % 64];
	const char *sp = strchr(l, ' ');

	if (sp && strncmp(l, "SECTION ", 8) == 0)
		sp = strchr(sp + 1, ' ');
	snprintf(k, 80, "%.*s", sp ? (int)(sp - l) : (int)strlen(l), l);
	return k;
}

/* mime_parts_list gives the parts of the cache, record for record. */
static void check_parts_list(const char *name, const char *msg, size_t len,
			     const struct mime_cache *mc)
{
	struct mime_part_rec *v;
	size_t n = mime_parts_list(msg, len, &v);
	if (n != mc->n_parts) {
		printf("  %s: mime_parts_list: %zu parts, the cache %u\n", name, n, mc->n_parts);
		test_cur_failed = 1;
	}
	for (uint32_t i = 0; i < mc->n_parts && i < n; i++) {
		struct mime_part_rec r;
		mime_cache_part(mc, i, &r);
		if (r.hdr_off != v[i].hdr_off || r.hdr_len != v[i].hdr_len ||
		    r.body_off != v[i].body_off || r.body_len != v[i].body_len ||
		    r.lines != v[i].lines || r.first_child != v[i].first_child ||
		    r.next != v[i].next || r.kind != v[i].kind || r.enc != v[i].enc) {
			printf("  %s: mime_parts_list: part %u differs\n", name, i);
			test_cur_failed = 1;
		}
	}
	free(v);
}

static void check_corpus_file(const char *name)
{
	char path[512];
	size_t mlen, elen;
	char *msg, *exp, *line, *save = NULL;
	struct buf cache = BUF_INIT, want = BUF_INIT, mine = BUF_INIT;
	struct mime_cache mc;
	char *ours[32];
	size_t n_ours = 0;
	static const char *const items[3] = {"ENVELOPE ", "BODY ", "BODYSTRUCTURE "};
	int i;

	snprintf(path, sizeof(path), CORPUS "/%s.eml", name);
	msg = read_file(path, &mlen);
	snprintf(path, sizeof(path), CORPUS "/%s.expected", name);
	exp = read_file(path, &elen);
	if (msg == NULL || exp == NULL) {
		printf("  %s: missing .eml or .expected\n", name);
		test_cur_failed = 1;
		free(msg);
		free(exp);
		return;
	}
	mime_cache_build(msg, mlen, &cache);
	if (!mime_cache_open(&mc, cache.data, cache.len)) {
		printf("  %s: cache does not open\n", name);
		test_cur_failed = 1;
		goto out;
	}
	check_parts_list(name, msg, mlen, &mc);
	/* OURS lines (a deliberate difference, see NAME.diff) replace Dovecot's
	 * line for the same item */
	for (line = strtok_r(exp, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "OURS ", 5) == 0 && n_ours < 32)
			ours[n_ours++] = xstrdup(item_key(line + 5));
	free(exp);
	exp = read_file(path, &elen);
	save = NULL;
	for (line = strtok_r(exp, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *p;
		size_t n, k;
		bool ours_line = strncmp(line, "OURS ", 5) == 0, skip = false;
		const char *l = ours_line ? line + 5 : line;

		if (*line == '#')
			continue;
		for (k = 0; k < n_ours && !ours_line; k++)
			if (strcmp(ours[k], item_key(l)) == 0)
				skip = true;
		if (skip)
			continue;
		for (i = 0; i < 3; i++) {
			if (strncmp(l, items[i], strlen(items[i])) != 0)
				continue;
			if (i == 0)
				mime_cache_envelope(&mc, &p, &n);
			else if (i == 1)
				mime_cache_body(&mc, &p, &n);
			else
				mime_cache_bodystructure(&mc, &p, &n);
			buf_reset(&want);
			unescape(l + strlen(items[i]), strlen(l + strlen(items[i])), &want);
			if (n != want.len || memcmp(p, want.data, n) != 0) {
				show_diff(items[i], name, p, n, want.data, want.len);
				test_cur_failed = 1;
			}
		}
		if (strncmp(l, "SECTION ", 8) == 0) {
			char sect[64];
			uint32_t spath[16];
			enum mime_section what;
			enum mime_encoding enc;
			uint64_t off, len;
			const char *sp = l + 8, *q = strchr(sp, ' ');
			size_t depth;
			int rc;

			if (q == NULL || (size_t)(q - sp) >= sizeof(sect))
				continue;
			memcpy(sect, sp, (size_t)(q - sp));
			sect[q - sp] = '\0';
			buf_reset(&want);
			if (q[1] == '"')
				unescape(q + 2, strlen(q + 2) - 1, &want);
			depth = parse_section(sect, spath, &what);
			rc = mime_cache_section(&mc, spath, depth, what, &off, &len, &enc);
			buf_reset(&mine);
			if (rc == 0) {
				if (off > mlen || len > mlen - off) {
					printf("  %s: section %s outside the message\n", name, sect);
					test_cur_failed = 1;
					continue;
				}
				/* Dovecot answers with CRLF line ends (lf-only.eml) */
				to_crlf(msg + off, (size_t)len, &mine);
			}
			if (mine.len != want.len || memcmp(mine.data, want.data, mine.len) != 0) {
				show_diff(sect, name, mine.data ? mine.data : "", mine.len,
					  want.data ? want.data : "", want.len);
				test_cur_failed = 1;
			}
		}
	}
	corpus_checked++;
out:
	while (n_ours > 0)
		free(ours[--n_ours]);
	free(msg);
	free(exp);
	buf_free(&cache);
	buf_free(&want);
	buf_free(&mine);
}

static char **corpus_names(size_t *n_r)
{
	DIR *d = opendir(CORPUS);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	while (d && (de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (l > 4 && strcmp(de->d_name + l - 4, ".eml") == 0) {
			names = xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = xasprintf("%.*s", (int)(l - 4), de->d_name);
		}
	}
	if (d)
		closedir(d);
	*n_r = n;
	return names;
}

static void test_corpus(void)
{
	size_t n, i;
	char **names = corpus_names(&n);

	CHECK(n >= 15);
	for (i = 0; i < n; i++) {
		check_corpus_file(names[i]);
		free(names[i]);
	}
	free(names);
	CHECK_INT(0, corpus_checked, (int)n);
}

static struct mime_cache build_open(const char *msg, struct buf *cache)
{
	struct mime_cache mc;

	buf_reset(cache);
	mime_cache_build(msg, strlen(msg), cache);
	x_assert(mime_cache_open(&mc, cache->data, cache->len));
	return mc;
}

/* Sections beyond the corpus: deep paths, part 0, MIME of the message. */
static void test_sections(void)
{
	static const char msg[] =
	    "Content-Type: multipart/mixed; boundary=a\r\n\r\n"
	    "--a\r\nContent-Type: message/rfc822\r\n\r\n"
	    "Subject: in\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
	    "--b\r\n\r\nx1\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\neDI=\r\n--b--\r\n"
	    "\r\n--a--\r\n";
	static const struct {
		uint32_t path[4];
		size_t depth;
		enum mime_section what;
		int rc;
		const char *want;
		enum mime_encoding enc;
	} cases[] = {
	    /* 0 */ {{1, 1}, 2, MIME_SECT_BODY, 0, "x1", MIME_ENC_7BIT},
	    {{1, 2}, 2, MIME_SECT_BODY, 0, "eDI=", MIME_ENC_BASE64},
	    {{1, 2}, 2, MIME_SECT_MIME, 0, "Content-Transfer-Encoding: base64\r\n\r\n", MIME_ENC_7BIT},
	    {{1, 1}, 2, MIME_SECT_MIME, 0, "\r\n", MIME_ENC_7BIT},
	    {{1}, 1, MIME_SECT_HEADER, 0,
	     "Subject: in\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n", 0},
	    /* 5 */ {{1, 3}, 2, MIME_SECT_BODY, -1, NULL, 0},
	    {{0}, 1, MIME_SECT_BODY, -1, NULL, 0},
	    {{2}, 1, MIME_SECT_BODY, -1, NULL, 0},
	    {{1, 1}, 2, MIME_SECT_HEADER, -1, NULL, 0},
	    {{1, 1, 1}, 3, MIME_SECT_BODY, 0, "x1", MIME_ENC_7BIT},
	    /* 10 */ {{1, 1, 2}, 3, MIME_SECT_BODY, -1, NULL, 0},
	    {{0}, 0, MIME_SECT_MIME, -1, NULL, 0},
	    {{0}, 0, MIME_SECT_BODY, 0, msg, 0},
	    {{0}, 0, MIME_SECT_HEADER, 0, "Content-Type: multipart/mixed; boundary=a\r\n\r\n", 0},
	};
	struct buf cache = BUF_INIT;
	struct mime_cache mc = build_open(msg, &cache);
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t off = 0, len = 0;
		enum mime_encoding enc = MIME_ENC_OTHER;
		int rc = mime_cache_section(&mc, cases[i].path, cases[i].depth, cases[i].what, &off,
					    &len, &enc);

		CHECK_INT(i, rc, cases[i].rc);
		if (rc == 0 && cases[i].rc == 0) {
			char *got = xasprintf("%.*s", (int)len, msg + off);

			CHECK_STR(i, got, cases[i].want);
			free(got);
			if (cases[i].what == MIME_SECT_BODY && cases[i].depth > 0)
				CHECK_INT(i, enc, cases[i].enc);
		}
	}
	buf_free(&cache);
}

static void test_header_fields(void)
{
	static const char hdr[] = "From: a@b\r\nSubject: one\r\n two\r\nTo: c@d\r\n"
				  "subject: again\r\nX-Cut: end";
	static const char *const names[] = {"Subject", "X-CUT"};
	static const struct {
		bool not;
		size_t n_names;
		const char *want;
	} cases[] = {
	    {false, 2, "Subject: one\r\n two\r\nsubject: again\r\nX-Cut: end\r\n\r\n"},
	    {true, 2, "From: a@b\r\nTo: c@d\r\n\r\n"},
	    {false, 0, "\r\n"},
	    {true, 0, "From: a@b\r\nSubject: one\r\n two\r\nTo: c@d\r\nsubject: again\r\nX-Cut: end\r\n\r\n"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out = BUF_INIT;

		mime_header_fields(hdr, strlen(hdr), names, cases[i].n_names, cases[i].not, &out);
		CHECK_STR(i, out.data, cases[i].want);
		buf_free(&out);
	}
}

static void test_decode(void)
{
	static const struct {
		enum mime_encoding enc;
		const char *in, *want;
		bool ok;
	} cases[] = {
	    /* 0 */ {MIME_ENC_BASE64, "SGVsbG8gV29ybGQ=", "Hello World", true},
	    {MIME_ENC_BASE64, "SGVs\r\nbG8g!!V29y bGQ=", "Hello World", true},
	    {MIME_ENC_BASE64, "SGk=SGk=", "HiHi", true},
	    {MIME_ENC_BASE64, "", "", true},
	    {MIME_ENC_QP, "caf=C3=A9 =\r\nsoft", "caf\xc3\xa9 soft", true},
	    /* 5 */ {MIME_ENC_QP, "a =ZZ b =4", "a =ZZ b =4", true},
	    {MIME_ENC_QP, "trailing   \r\nx=20\r\n", "trailing\r\nx \r\n", true},
	    {MIME_ENC_QP, "lower =e9 end=", "lower \xe9 end", true},
	    {MIME_ENC_QP, "a_b", "a_b", true},
	    {MIME_ENC_7BIT, "as is =41", "as is =41", true},
	    /* 10 */ {MIME_ENC_OTHER, "x", "", false},
	    /* RFC 2045 6.7: "=" + transport padding + line break is a soft
	     * line break; trailing white space dropped, at the end too */
	    {MIME_ENC_QP, "foo\t \t= \r\n=62\r\nfoo = \t\r\nbar", "foo\t \tb\r\nfoo bar", true},
	    {MIME_ENC_QP, "a= \nb=\t\nc  \t", "abc", true},
	    {MIME_ENC_QP, "x= y", "x= y", true},
	    {MIME_ENC_QP, "lf\nonly \n", "lf\r\nonly\r\n", true},
	    /* 15 */ {MIME_ENC_QP, "hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar",
		      "hello\r\nbar\r\nfoo\tbar", true},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out = BUF_INIT;
		bool ok = mime_decode(cases[i].enc, cases[i].in, strlen(cases[i].in), &out);

		CHECK_INT(i, ok, cases[i].ok);
		CHECK_STR(i, out.data ? out.data : "", cases[i].want);
		buf_free(&out);
	}
}

static void test_words(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    /* 0 */ {"=?UTF-8?B?SGVsbG8g?= =?UTF-8?Q?W=C3=B6rld?=", "Hello W\xc3\xb6rld"},
	    {"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld J\xc3\xb8rn Simonsen"},
	    {"a =?iso-8859-1?q?=A1Hola!?= b", "a \xc2\xa1Hola! b"},
	    {"=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"},
	    {"plain\r\n folded", "plain folded"},
	    /* 5 */ {"=?unknown-x?q?abc?= z", "=?unknown-x?q?abc?= z"},
	    {"=?utf-8?q?broken", "=?utf-8?q?broken"},
	    /* a UTF-8 character split across two words is joined first */
	    {"=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?=", "\xc3\xa9\xc3\xa9"},
	    {"=?UTF-8?Q?=C3?= =?UTF-8?Q?=A9?=", "\xc3\xa9"},
	    {"=?utf-8*en?q?lang?=", "lang"},
	    /* 10 */ {"=?iso-8859-1?q?a?= =?utf-8?q?b?=", "ab"},
	    {"x=?utf-8?q?y?=", "xy"},
	    {"", ""},
	    {"=?utf-8?b?/w==?=", "\xef\xbf\xbd"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out = BUF_INIT;

		mime_decode_words(cases[i].in, strlen(cases[i].in), &out);
		CHECK_STR(i, out.data ? out.data : "", cases[i].want);
		buf_free(&out);
	}
}

static void test_to_utf8(void)
{
	static const struct {
		const char *charset, *in, *want;
		bool ok;
	} cases[] = {
	    {"iso-8859-1", "caf\xe9", "caf\xc3\xa9", true},
	    {"UTF-8", "ok \xc3\xa9 bad \xff end", "ok \xc3\xa9 bad \xef\xbf\xbd end", true},
	    {"us-ascii", "abc", "abc", true},
	    {"windows-1252", "\x80", "\xe2\x82\xac", true},
	    {"koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", true},
	    {"no-such-charset", "x", "", false},
	    {"utf-8", "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", true},
	    /* a name glibc's iconv reads as UTF-8 (it drops the octets it
	     * ignores): its decoder passes a 5-octet form on; checked after */
	    {"u\xbatf-8", "a\xfa\xba\xba\xba\xba" "b",
	     "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b", true},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out = BUF_INIT;
		bool ok = mime_to_utf8(cases[i].charset, cases[i].in, strlen(cases[i].in), &out);

		CHECK_INT(i, ok, cases[i].ok);
		CHECK_STR(i, out.data ? out.data : "", cases[i].want);
		buf_free(&out);
	}
	/* UCS-4 past U+10FFFF: glibc writes 5- and 6-octet forms; U+FFFD here */
	static const char ucs4[] = {0x00, 0x00, 0x00, 0x41, 0x7f, 0xff, 0xff, 0xff,
				    0x00, 0x00, 0x00, 0x42};
	struct buf out = BUF_INIT;
	CHECK_INT(100, mime_to_utf8("UCS-4BE", ucs4, sizeof ucs4, &out), true);
	buf_appendc(&out, '\0');
	for (size_t k = 0; k + 1 < out.len; k++)
		CHECK((unsigned char)out.data[k] < 0xf5);
	CHECK(out.data[0] == 'A' && out.data[out.len - 2] == 'B');
	buf_free(&out);
}

static void test_dates(void)
{
	static const struct {
		const char *hdr;
		bool ok;
		long long t;
		int tz;
	} cases[] = {
	    /* 0 */ {"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\r\n", true, 760686745, -28800},
	    {"Date: 1 Jan 2020 00:00 GMT\r\n\r\n", true, 1577836800, 0},
	    {"Date: Thu, 3 Jun 21 20:00:00 EDT\r\n\r\n", true, 1622764800, -14400},
	    {"Date: 3 Jun 99 20:00:00 +0130\r\n\r\n", true, 928434600, 5400},
	    {"Date:   Fri , 04 Jun 2021 08 : 00 : 00 +0100\r\n\r\n", true, 1622790000, 3600},
	    /* 5 */ {"Subject: x\r\n\r\n", false, 0, 0},
	    {"Date: yesterday\r\n\r\n", false, 0, 0},
	    {"Date: 32 Jan 2020 00:00 +0000\r\n\r\n", false, 0, 0},
	    {"Date: 1 Foo 2020 00:00 +0000\r\n\r\n", false, 0, 0},
	    {"Date: 1 Jan 2020 25:00 +0000\r\n\r\n", false, 0, 0},
	    /* 10 */ {"Date: 1 Jan 2020 10:00 +0000\r\n\r\nDate: 2 Jan 2020 10:00 +0000\r\n", true,
		      1577872800, 0},
	    {"Date: 1 Jan 2020 10:00 A\r\n\r\n", true, 1577872800, 0},
	    {"Date: 1 Jan 2020 10:00\r\n\r\n", true, 1577872800, 0},
	    {"Date: 1 Jan 2020 10:00 +99", false, 0, 0},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t t = 0;
		int tz = 0;
		bool ok = mime_message_date(cases[i].hdr, strlen(cases[i].hdr), &t, &tz);

		CHECK_INT(i, ok, cases[i].ok);
		if (ok && cases[i].ok) {
			CHECK_INT(i, t, cases[i].t);
			CHECK_INT(i, tz, cases[i].tz);
		}
	}

	/* the day SENT* compare (RFC 3501 6.4.4): in the field's own zone,
	 * 1970-01-01 (0) without a readable field */
	static const struct {
		const char *hdr;
		int32_t day;
	} days[] = {
	    /* 0: 2026-12-02 23:30 -1100 is 2026-12-03 10:30 UTC: still the 2nd */
	    {"Date: Wed, 2 Dec 2026 23:30:00 -1100\r\n\r\n", 20789},
	    /* 2026-12-03 00:30 +1400 is 2026-12-02 10:30 UTC: the 3rd */
	    {"Date: Thu, 3 Dec 2026 00:30:00 +1400\r\n\r\n", 20790},
	    {"Date: 2 Dec 26 23:59:59 EST\r\n\r\n", 20789},
	    {"Date: 31 Dec 1969 23:00:00 +0000\r\n\r\n", -1},
	    {"Subject: no date\r\n\r\n", 0},
	    /* 5 */ {"Date: garbage\r\n\r\n", 0},
	    {"Date: 1 Jan 2020 10:00 Z\r\n\r\n", 18262},
	};
	for (i = 0; i < sizeof(days) / sizeof(days[0]); i++)
		CHECK_INT(100 + i, mime_message_day(days[i].hdr, strlen(days[i].hdr)), days[i].day);
	CHECK_INT(199, mime_message_day(NULL, 0), 0);
}

static void test_search(void)
{
	static const char msg[] =
	    "From: =?ISO-8859-1?Q?J=F6rg?= <j@example.de>\r\n"
	    "Subject: =?UTF-8?B?0J/RgNC40LLQtdGC?= folded\r\n  line\r\n"
	    "X-Empty:\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=s\r\n\r\n"
	    "--s\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\nCAF=C9 cr=E8me br=FBl=\r\n=E9e\r\n"
	    "--s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n"
	    "X-Part: inner-header-word\r\n\r\nzpHOu8+GzrEgzqnOnM6VzrPOsQ==\r\n"
	    "--s\r\nContent-Type: application/octet-stream\r\n\r\nbinaryneedle\r\n"
	    "--s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	    "MiXeD \xff Case \xc5\xbftra\xc3\x9f" "e \xe2\x82 end\r\n--s--\r\n";
	static const struct {
		int kind; /* 0 header, 1 body, 2 text */
		const char *field, *needle;
		bool want;
	} cases[] = {
	    /* 0 */ {0, "From", "jörg", true},
	    {0, "from", "JÖRG", true},
	    {0, "Subject", "привет", true},
	    {0, "Subject", "ПРИВЕТ FOLDED", true},
	    {0, "Subject", "folded  line", true},
	    /* 5 */ {0, "Subject", "jörg", false},
	    {0, "X-Empty", "", true},
	    {0, "X-Missing", "", false},
	    {0, NULL, "jörg", true},
	    {0, "X-Part", "inner", false},
	    /* 10 */ {1, NULL, "café crème brûlée", true},
	    {1, NULL, "CAFÉ CRÈME", true},
	    {1, NULL, "αλφα ωμεγα", true},
	    {1, NULL, "ΑΛΦΑ", true},
	    {1, NULL, "binaryneedle", false},
	    /* 15 */ {1, NULL, "inner-header-word", false},
	    {2, NULL, "inner-header-word", true},
	    {2, NULL, "ωμεγα", true},
	    {1, NULL, "Subject", false},
	    {2, NULL, "привет", true},
	    /* 20 */ {1, NULL, "", true},
	    {1, NULL, "zpHOu8", false},
	    /* a 7bit UTF-8 part searched in place: ASCII folded, an invalid
	     * octet or a cut sequence as U+FFFD, long s folded to s */
	    {1, NULL, "mixed \xef\xbf\xbd case", true},
	    {1, NULL, "MIXED \xff", false},
	    /* 25 */ {1, NULL, "CASE STRASSE", false},
	    {1, NULL, "case stra\xc3\x9f" "e", true},
	    {1, NULL, "e \xef\xbf\xbd\xef\xbf\xbd end", true},
	};
	struct buf cache = BUF_INIT;
	struct mime_cache mc = build_open(msg, &cache);
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got;

		if (cases[i].kind == 0)
			got = mime_search_header(msg, strlen(msg), &mc, cases[i].field,
						 cases[i].needle);
		else
			got = mime_search_body(msg, strlen(msg), &mc, cases[i].needle,
					       cases[i].kind == 2);
		CHECK_INT(i, got, cases[i].want);
	}
	/* a message shorter than the cache says: nothing read past its end */
	CHECK(!mime_search_body(msg, 10, &mc, "crème", false));
	buf_free(&cache);
}

/* SEARCH FROM/TO/CC/BCC: the address list written back as Dovecot's
 * message_address_write (imaptest search-addresses), then searched. */
static void test_search_address(void)
{
	static const struct {
		const char *value, *text;
	} texts[] = {
	    /* 0 */ {"user-from@domain.org", "user-from@domain.org"},
	    {"RealFrom <user-from@domain.org>", "RealFrom <user-from@domain.org>"},
	    {"<user-from (comment)@ (comment) domain.org>", "user-from@domain.org"},
	    {"user-from@domain.org (RealFrom)", "RealFrom <user-from@domain.org>"},
	    {"user-from1@domain.org, user-from2@domain.org",
	     "user-from1@domain.org, user-from2@domain.org"},
	    /* 5 */ {"groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n"
		     "  groupname2: groupuser3@domain.org;",
		     "groupname: groupuser1@domain.org, groupuser2@domain.org;, groupname2: "
		     "groupuser3@domain.org;"},
	    {"groupname:;", "groupname;"},
	    {"\"Real, From\" <a@b.c>", "\"Real, From\" <a@b.c>"},
	    {"Jane Roe <@route.x:jr@b.c>", "\"Jane Roe\" <@route.x:jr@b.c>"},
	    {"=?utf-8?q?J=C3=B6rg?= <j@b.c>", "=?utf-8?q?J=C3=B6rg?= <j@b.c>"},
	    /* 10 */ {"first.last@b.c", "first.last@b.c"},
	    {"", ""},
	};
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct buf out = BUF_INIT;

		mime_address_text(texts[i].value, strlen(texts[i].value), &out);
		CHECK_STR(i, out.data ? out.data : "", texts[i].text);
		buf_free(&out);
	}

	static const char msg[] =
	    "From: <user-from (comment)@ (comment) domain.org>\r\n"
	    "To: groupname: groupuser1@domain.org;\r\n"
	    "Cc: user-cc@domain.org (RealCc)\r\n"
	    "Bcc: =?utf-8?q?J=C3=B6rg?= <j@b.c>\r\n"
	    "Subject: user-from@domain.org\r\n"
	    "\r\nbody\r\n";
	static const struct {
		const char *field, *needle;
		bool want;
	} cases[] = {
	    /* 0 */ {"From", "user-from@domain.org", true},
	    {"From", "ser-fro", true},
	    {"From", "comment", false},
	    {"From", "", true},
	    {"To", "groupname", true},
	    /* 5 */ {"To", "groupuser1@", true},
	    {"To", "groupuser2", false},
	    {"Cc", "realcc", true},
	    {"Cc", "RealCc <user-cc@domain.org>", true},
	    {"Bcc", "jörg <j@b.c>", true},
	    /* 10 */ {"Reply-To", "", false},
	    {"Subject", "user", true},
	};
	struct buf cache = BUF_INIT;
	struct mime_cache mc = build_open(msg, &cache);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_INT(i, mime_search_address(msg, strlen(msg), &mc, cases[i].field, cases[i].needle),
			  cases[i].want);
	/* HEADER FROM is the raw value, comments included */
	CHECK(mime_search_header(msg, strlen(msg), &mc, "From", "comment"));
	buf_free(&cache);
}

/* APPEND of a literal8: parts with Content-Transfer-Encoding binary become
 * base64 (imaptest append-binary); the rest is copied byte for byte. */
static void test_binary_to_base64(void)
{
	static const struct {
		const char *in;
		size_t in_len;
		const char *want; /* NULL: nothing to convert */
	} cases[] = {
	    /* 0: imaptest append-binary */
	    {"From: u@d.org\r\nContent-Type: application/octet-stream\r\n"
	     "Content-Transfer-Encoding: binary\r\n\r\n\0-\xe4\n\r\n\n",
	     99,
	     "From: u@d.org\r\nContent-Type: application/octet-stream\r\n"
	     "Content-Transfer-Encoding: base64\r\n\r\nAC3kCg0KCg=="},
	    /* the CTE field before Content-Type, in a multipart, next to a
	     * text part; the boundary's CRLF is not encoded */
	    {"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n"
	     "Content-Transfer-Encoding: BINARY\r\nContent-Type: image/png\r\n\r\n\x89PNG\0\x01"
	     "\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n",
	     169,
	     "Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n"
	     "Content-Transfer-Encoding: base64\r\nContent-Type: image/png\r\n\r\niVBORwAB"
	     "\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"},
	    /* binary without NUL (8-bit text, bare CR): a plain literal can
	     * carry it, so it is stored as it came */
	    {"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n"
	     "Content-Transfer-Encoding: BINARY\r\nContent-Type: image/png\r\n\r\n\x89PNG\x01\r"
	     "\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n",
	     0, NULL},
	    {"Content-Transfer-Encoding: 8bit\r\n\r\n\xe4\r\n", 0, NULL},
	    {"Content-Type: multipart/mixed; boundary=b\r\n"
	     "Content-Transfer-Encoding: binary\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
	     0, NULL},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = cases[i].in_len ? cases[i].in_len : strlen(cases[i].in);
		struct buf out = BUF_INIT;
		bool got = mime_binary_to_base64(cases[i].in, n, &out);

		CHECK_INT(i, got, cases[i].want != NULL);
		if (cases[i].want != NULL)
			CHECK_STR(i, out.data ? out.data : "", cases[i].want);
		else
			CHECK_INT(i, out.len, 0);
		buf_free(&out);
	}
	/* a long body: 76-character lines, decoding gives the octets back */
	struct buf in = BUF_INIT, out = BUF_INIT, dec = BUF_INIT;
	buf_appends(&in, "Content-Transfer-Encoding: binary\r\n\r\n");
	size_t hdr = in.len;
	for (i = 0; i < 1000; i++)
		buf_appendc(&in, (char)(i * 7));
	CHECK(mime_binary_to_base64(in.data, in.len, &out));
	const char *body = strstr(out.data, "\r\n\r\n") + 4;
	for (const char *p = body; *p; ) {
		const char *e = strstr(p, "\r\n");
		size_t l = e ? (size_t)(e - p) : strlen(p);
		CHECK(l <= 76);
		p += l + (e ? 2 : 0);
	}
	mime_decode(MIME_ENC_BASE64, body, strlen(body), &dec);
	CHECK(dec.len == 1000 && memcmp(dec.data, in.data + hdr, 1000) == 0);
	buf_free(&in);
	buf_free(&out);
	buf_free(&dec);
}

static void sink_append(void *arg, const char *p, size_t n)
{
	buf_append(arg, p, n);
}

/* BINARY of a multipart / message part (URLAUTH=BINARY, as Dovecot): the
 * base64 and quoted-printable leaves decoded, their encoding field moved to
 * the end of their header as "binary" (or kept); the rest as it was. */
static void test_binary_decode(void)
{
	static const char in[] =
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n"
	    "--b\r\nContent-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\n"
	    "aGVs\r\nbG8=\r\n"
	    "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n"
	    "--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
	    "--b--\r\npost\r\n";
	static const char want[] =
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n"
	    "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n"
	    "hello\r\n"
	    "--b\r\nContent-Transfer-Encoding: binary\r\n\r\na=bc\r\n"
	    "--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
	    "--b--\r\npost\r\n";
	static const char want_keep[] =
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n"
	    "--b\r\nContent-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\n"
	    "hello\r\n"
	    "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=bc\r\n"
	    "--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
	    "--b--\r\npost\r\n";
	struct buf out = BUF_INIT;

	CHECK(mime_binary_decode(in, strlen(in), false, sink_append, &out));
	buf_appendc(&out, '\0');
	CHECK_STR(1, out.data, want);
	buf_reset(&out);
	CHECK(mime_binary_decode(in, strlen(in), true, sink_append, &out));
	buf_appendc(&out, '\0');
	CHECK_STR(2, out.data, want_keep);
	/* nothing to decode: the message as it is */
	buf_reset(&out);
	static const char plain[] = "a: b\r\n\r\nbody";
	CHECK(mime_binary_decode(plain, strlen(plain), false, sink_append, &out));
	CHECK(out.len == strlen(plain) && memcmp(out.data, plain, out.len) == 0);
	buf_free(&out);
}

/* Every truncation and every single-byte change of a cache is rejected or
 * stays inside the cache. */
static void test_corrupt_cache(void)
{
	size_t mlen, i;
	char *msg = read_file(CORPUS "/rfc822-attachment.eml", &mlen);
	struct buf cache = BUF_INIT;
	struct mime_cache mc;

	x_assert(msg != NULL);
	mime_cache_build(msg, mlen, &cache);
	CHECK(mime_cache_open(&mc, cache.data, cache.len));
	for (i = 0; i < cache.len; i++)
		CHECK_INT(i, mime_cache_open(&mc, cache.data, i), false);
	CHECK(!mime_cache_open(&mc, NULL, 0));
	for (i = 0; i < cache.len; i++) {
		unsigned char *c = (unsigned char *)cache.data, saved = c[i];
		unsigned v;

		for (v = 0; v < 256; v += 85) {
			c[i] = (unsigned char)(saved ^ (v | 1));
			if (mime_cache_open(&mc, cache.data, cache.len)) {
				const char *p;
				size_t n;
				uint32_t path[3] = {2, 1, 1};
				uint64_t off, len;
				enum mime_encoding enc;
				int d;

				mime_cache_envelope(&mc, &p, &n);
				CHECK(p >= cache.data && p + n <= cache.data + cache.len);
				mime_cache_bodystructure(&mc, &p, &n);
				CHECK(p >= cache.data && p + n <= cache.data + cache.len);
				for (d = 0; d <= 3; d++)
					(void)mime_cache_section(&mc, path, (size_t)d, MIME_SECT_TEXT, &off,
								 &len, &enc);
				(void)mime_search_body(msg, mlen, &mc, "x", true);
				/* the thread section's strings end inside it */
				const struct mime_thread *th = mime_cache_thread(&mc);
				const char *r = th->refs;
				CHECK(strlen(th->subj) < cache.len);
				for (uint32_t k = 0; k < th->n_refs; k++)
					r = mime_thread_next(r);
				CHECK(th->n_refs == 0 || r <= cache.data + cache.len);
				/* the sort section's keys end inside it */
				const struct mime_sortinfo *so = mime_cache_sort(&mc);
				for (int k = 0; k < MIME_SORT_N; k++)
					CHECK(so->key[k] >= cache.data &&
					      so->key[k] + so->len[k] < cache.data + cache.len &&
					      so->key[k][so->len[k]] == '\0');
			}
		}
		c[i] = saved;
	}
	/* an older version is rejected */
	cache.data[3] = 0;
	CHECK(!mime_cache_open(&mc, cache.data, cache.len));
	buf_free(&cache);
	free(msg);
}

/* The thread section (threadinfo.h): the first of each field, References'
 * last MIME_THREAD_MAX_REFS, In-Reply-To when References has no ID, IDs
 * without white space, cut at a NUL; a broken section is rejected. */
static void test_thread_section(void)
{
	struct buf m = BUF_INIT, c = BUF_INIT;
	struct mime_cache mc;
	const struct mime_thread *th;
	const char *r;

	buf_appends(&m, "Subject: Re: [list] Hello\r\n"
			"Message-ID: (c) <a b@x>\r\nMessage-ID: <second@x>\r\n"
			"In-Reply-To: <irt@x>\r\nReferences: junk (<no@x>) \r\n");
	for (int i = 0; i < 300; i++)
		buf_printf(&m, " <r%d@x>", i);
	buf_appends(&m, "\r\nDate: Wed, 02 Dec 2026 10:00:00 +0100\r\n\r\nbody\r\n");
	mime_cache_build(m.data, m.len, &c);
	CHECK(mime_cache_open(&mc, c.data, c.len));
	th = mime_cache_thread(&mc);
	CHECK_INT(1, th->flags, THI_DATE | THI_MSGID | THI_REPLY);
	CHECK_INT(2, (long long)th->date, 1796202000LL);
	CHECK_STR(3, th->msgid, "ab@x");
	CHECK_INT(4, th->n_refs, MIME_THREAD_MAX_REFS);
	CHECK_STR(5, th->refs, "r44@x");
	r = th->refs;
	for (int i = 1; i < MIME_THREAD_MAX_REFS; i++)
		r = mime_thread_next(r);
	CHECK_STR(6, r, "r299@x");
	CHECK(th->subj[0] != '\0');

	/* no valid References ID: In-Reply-To's first; no Message-ID, no Date */
	buf_reset(&m);
	buf_reset(&c);
	buf_appends(&m, "References: nothing\r\nIn-Reply-To: <p@x> <q@x>\r\n"
			"Message-ID: not an id\r\n\r\n");
	mime_cache_build(m.data, m.len, &c);
	CHECK(mime_cache_open(&mc, c.data, c.len));
	th = mime_cache_thread(&mc);
	CHECK_INT(7, th->flags, 0);
	CHECK(th->msgid == NULL);
	CHECK_INT(8, th->n_refs, 1);
	CHECK_STR(9, th->refs, "p@x");
	CHECK_STR(10, th->subj, "");

	/* a NUL inside an ID cuts it */
	buf_reset(&m);
	buf_reset(&c);
	{
		static const char nul_id[] = "Message-ID: <ab\0cd@x>\r\n\r\n";

		buf_append(&m, nul_id, sizeof nul_id - 1);
	}
	mime_cache_build(m.data, m.len, &c);
	CHECK(mime_cache_open(&mc, c.data, c.len));
	CHECK_STR(11, mime_cache_thread(&mc)->msgid, "ab");

	/* sections that do not open */
	{
		struct mime_thread t;
		struct buf b = BUF_INIT;

		static const char two[] = "References: <a@x> <b@x>\r\n\r\n";

		mime_thread_build(two, sizeof two - 1, &b);
		CHECK(mime_thread_open(b.data, b.len, &t));
		CHECK_INT(12, t.n_refs, 2);
		CHECK(!mime_thread_open(b.data, b.len - 1, &t)); /* a string cut */
		b.data[9] = 3;                                 /* 3 refs, 2 there */
		CHECK(!mime_thread_open(b.data, b.len, &t));
		b.data[9] = 2;
		b.data[0] = 8;                                 /* unknown flag */
		CHECK(!mime_thread_open(b.data, b.len, &t));
		b.data[0] = 0;
		buf_appendc(&b, 'x');                          /* bytes after */
		CHECK(!mime_thread_open(b.data, b.len, &t));
		buf_free(&b);
	}
	buf_free(&m);
	buf_free(&c);
}

/* The sort section (sortinfo.h): the keys SORT compares, made with the
 * cache from its ENVELOPE; a broken section is rejected. */
static void test_sort_section(void)
{
	struct buf m = BUF_INIT, c = BUF_INIT;
	struct mime_cache mc;
	const struct mime_sortinfo *si;
	char *k;

	buf_appends(&m, "Subject: Re: [list] Hello =?utf-8?q?W=C3=B6rld?= (fwd)\r\n"
			"From: =?utf-8?q?J=C3=BCrgen?= <Juergen@Example.ORG>, b@x\r\n"
			"To: \"  \" <To@Example.org>\r\nCc: group: c@x;\r\n"
			"Date: Wed, 02 Dec 2026 10:00:00 +0100\r\n\r\nbody\r\n");
	mime_cache_build(m.data, m.len, &c);
	CHECK(mime_cache_open(&mc, c.data, c.len));
	si = mime_cache_sort(&mc);
	CHECK_INT(1, si->flags, MSI_DATE | MSI_SENT);
	CHECK_INT(2, si->date, 1796202000LL);
	CHECK_INT(2, si->sent_day, 20789); /* 2026-12-02 */
	k = mime_casemap_key("Hello Wörld", strlen("Hello Wörld"));
	CHECK_STR(3, si->key[MIME_SORT_SUBJECT], k);
	CHECK_INT(4, si->len[MIME_SORT_SUBJECT], strlen(k));
	free(k);
	k = mime_casemap_key("Juergen", 7);
	CHECK_STR(5, si->key[MIME_SORT_FROM], k);
	free(k);
	k = mime_casemap_key("Jürgen", strlen("Jürgen"));
	CHECK_STR(6, si->key[MIME_SORT_DFROM], k);
	free(k);
	/* a blank display name: the addr-spec (RFC 5957 3) */
	k = mime_casemap_key("To@Example.org", 14);
	CHECK_STR(7, si->key[MIME_SORT_DTO], k);
	free(k);
	/* a group's start counts as the first address (its name, as Dovecot) */
	k = mime_casemap_key("group", 5);
	CHECK_STR(8, si->key[MIME_SORT_CC], k);
	free(k);

	/* nothing: every key empty, no date */
	buf_reset(&m);
	buf_reset(&c);
	buf_appends(&m, "X: y\r\n\r\n");
	mime_cache_build(m.data, m.len, &c);
	CHECK(mime_cache_open(&mc, c.data, c.len));
	si = mime_cache_sort(&mc);
	CHECK_INT(9, si->flags, MSI_SENT); /* no Date: the sent day is 1970-01-01 */
	CHECK_INT(9, si->sent_day, 0);
	for (int i = 0; i < MIME_SORT_N; i++) {
		CHECK_STR(10 + i, si->key[i], "");
		CHECK_INT(20 + i, si->len[i], 0);
	}

	/* sections that do not open */
	{
		struct mime_sortinfo t;
		struct buf b = BUF_INIT;
		static const char env[] = "(NIL \"abc\" NIL NIL NIL NIL NIL NIL NIL NIL)";

		/* without a message: no sent day, as a section made before
		 * MSI_SENT, which still opens */
		mime_sort_build(env, sizeof env - 1, NULL, 0, &b);
		CHECK(mime_sort_open(b.data, b.len, &t));
		CHECK_INT(30, t.flags, 0);
		CHECK(t.len[MIME_SORT_SUBJECT] > 0);
		CHECK(!mime_sort_open(b.data, b.len - 1, &t)); /* a key cut */
		b.data[0] = 4;                                 /* unknown flag */
		CHECK(!mime_sort_open(b.data, b.len, &t));
		b.data[0] = MSI_SENT; /* the day announced, not there */
		CHECK(!mime_sort_open(b.data, b.len, &t));
		b.data[0] = 0;
		b.data[9] += 1; /* the subject's length past its NUL */
		CHECK(!mime_sort_open(b.data, b.len, &t));
		b.data[9] -= 1;
		buf_appendc(&b, 'x'); /* bytes after */
		CHECK(!mime_sort_open(b.data, b.len, &t));
		buf_free(&b);

		/* with a message: the day follows the keys */
		static const char hdr[] = "Date: Wed, 2 Dec 2026 23:30:00 -1100\r\n\r\n";
		mime_sort_build(env, sizeof env - 1, hdr, sizeof hdr - 1, &b);
		CHECK(mime_sort_open(b.data, b.len, &t));
		CHECK_INT(31, t.flags, MSI_SENT);
		CHECK_INT(32, t.sent_day, 20789);
		CHECK(!mime_sort_open(b.data, b.len - 1, &t)); /* the day cut */
		b.data[0] = 0; /* the day there, not announced: bytes after */
		CHECK(!mime_sort_open(b.data, b.len, &t));
		b.data[0] = MSI_SENT;
		buf_appendc(&b, 'x'); /* bytes after the day */
		CHECK(!mime_sort_open(b.data, b.len, &t));
		buf_free(&b);
	}
	buf_free(&m);
	buf_free(&c);
}

/* Every prefix of every corpus message builds a cache that opens, whose
 * sections stay inside the prefix (under SAN=1: no read past the end). */
static void test_prefixes(void)
{
	size_t n, k;
	char **names = corpus_names(&n);
	struct buf cache = BUF_INIT;

	for (k = 0; k < n; k++) {
		char path[512];
		size_t mlen, len;
		char *msg;

		snprintf(path, sizeof(path), CORPUS "/%s.eml", names[k]);
		msg = read_file(path, &mlen);
		x_assert(msg != NULL);
		for (len = 0; len <= mlen; len += mlen > 5000 ? 37 : 1) {
			/* an exact-size copy, so ASan sees any read past the end */
			char *copy = xmalloc(len ? len : 1);
			struct mime_cache mc;
			uint32_t p1, p2, paths[3];

			memcpy(copy, msg, len);
			buf_reset(&cache);
			mime_cache_build(copy, len, &cache);
			if (!mime_cache_open(&mc, cache.data, cache.len)) {
				printf("  %s: prefix %zu: cache does not open\n", names[k], len);
				test_cur_failed = 1;
				free(copy);
				break;
			}
			for (p1 = 1; p1 <= 3; p1++)
				for (p2 = 0; p2 <= 2; p2++) {
					enum mime_section w;

					paths[0] = p1;
					paths[1] = p2;
					for (w = MIME_SECT_BODY; w <= MIME_SECT_MIME; w++) {
						uint64_t off, l;
						enum mime_encoding enc;

						if (mime_cache_section(&mc, paths, p2 ? 2 : 1, w, &off,
								       &l, &enc) == 0 &&
						    (off > len || l > len - off)) {
							printf("  %s: prefix %zu: section outside\n",
							       names[k], len);
							test_cur_failed = 1;
						}
					}
				}
			(void)mime_search_body(copy, len, &mc, "zz", true);
			(void)mime_search_header(copy, len, &mc, NULL, "zz");
			free(copy);
		}
		free(msg);
		free(names[k]);
	}
	free(names);
	buf_free(&cache);
}

/* Limits: deep nesting and many parts stay bounded and well-formed. */
static void test_limits(void)
{
	struct buf msg = BUF_INIT, cache = BUF_INIT;
	struct mime_cache mc;
	const char *p;
	size_t n, i;
	int depth = 0, maxdepth = 0;

	for (i = 0; i < 100; i++)
		buf_printf(&msg, "Content-Type: multipart/mixed; boundary=b%zu\r\n\r\n--b%zu\r\n", i, i);
	buf_appends(&msg, "\r\nleaf\r\n");
	mime_cache_build(msg.data, msg.len, &cache);
	CHECK(mime_cache_open(&mc, cache.data, cache.len));
	mime_cache_bodystructure(&mc, &p, &n);
	for (i = 0; i < n; i++) {
		depth += p[i] == '(' ? 1 : p[i] == ')' ? -1 : 0;
		if (depth > maxdepth)
			maxdepth = depth;
	}
	CHECK_INT(0, depth, 0);
	CHECK(maxdepth <= 2 * MIME_MAX_DEPTH + 4);

	buf_reset(&msg);
	buf_reset(&cache);
	buf_appends(&msg, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
	for (i = 0; i < MIME_MAX_PARTS + 100; i++)
		buf_appends(&msg, "--x\r\n\r\np\r\n");
	buf_appends(&msg, "--x--\r\n");
	mime_cache_build(msg.data, msg.len, &cache);
	CHECK(mime_cache_open(&mc, cache.data, cache.len));
	CHECK(mc.n_parts <= MIME_MAX_PARTS + 1);
	{
		uint32_t path[1] = {MIME_MAX_PARTS - 1};
		uint64_t off, len;
		enum mime_encoding enc;

		CHECK_INT(1, mime_cache_section(&mc, path, 1, MIME_SECT_BODY, &off, &len, &enc), 0);
		path[0] = MIME_MAX_PARTS + 1;
		CHECK_INT(2, mime_cache_section(&mc, path, 1, MIME_SECT_BODY, &off, &len, &enc), -1);
	}
	buf_free(&msg);
	buf_free(&cache);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Not a test: prints the time to build the cache of a 1 KB and a 1 MB
 * message (no timed assertion). */
static void test_speed(void)
{
	struct buf small = BUF_INIT, big = BUF_INIT, cache = BUF_INIT;
	int i, reps;
	double t0, t1;

	buf_appends(&small, "Return-Path: <sender@example.com>\r\n"
			    "Received: from client.example.com (client.example.com [192.0.2.1])\r\n"
			    "\tby mx.example.org with ESMTPS id 4XYZ; Tue, 1 Jun 2021 10:00:00 +0000\r\n"
			    "From: Sender Name <sender@example.com>\r\nTo: rcpt@example.org\r\n"
			    "Subject: a one kilobyte message\r\nDate: Tue, 1 Jun 2021 10:00:00 +0000\r\n"
			    "Message-ID: <1234567890@example.com>\r\nMIME-Version: 1.0\r\n"
			    "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	while (small.len < 1024)
		buf_appends(&small, "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n");
	buf_appends(&big, "From: a@example.com\r\nTo: b@example.org\r\nSubject: big\r\n"
			  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
			  "--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--zz\r\n"
			  "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	while (big.len < 1024 * 1024)
		buf_appends(&big, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\r\n");
	buf_appends(&big, "--zz--\r\n");

	for (reps = 20000, i = 0, t0 = now_ns(); i < reps; i++) {
		buf_reset(&cache);
		mime_cache_build(small.data, small.len, &cache);
	}
	t1 = now_ns();
	printf("  mime_cache_build: %zu-byte message: %.0f ns/message (CPU time)\n", small.len, (t1 - t0) / reps);
	for (reps = 50, i = 0, t0 = now_ns(); i < reps; i++) {
		buf_reset(&cache);
		mime_cache_build(big.data, big.len, &cache);
	}
	t1 = now_ns();
	printf("  mime_cache_build: %zu-byte message: %.0f ns/message (CPU time)\n", big.len, (t1 - t0) / reps);
	buf_free(&small);
	buf_free(&big);
	buf_free(&cache);
}

int main(void)
{
	test_run("corpus", test_corpus);
	test_run("sections", test_sections);
	test_run("header_fields", test_header_fields);
	test_run("decode", test_decode);
	test_run("words", test_words);
	test_run("to_utf8", test_to_utf8);
	test_run("dates", test_dates);
	test_run("search", test_search);
	test_run("search_address", test_search_address);
	test_run("binary_to_base64", test_binary_to_base64);
	test_run("corrupt_cache", test_corrupt_cache);
	test_run("thread_section", test_thread_section);
	test_run("sort_section", test_sort_section);
	test_run("prefixes", test_prefixes);
	test_run("limits", test_limits);
	test_run("binary_decode", test_binary_decode);
	test_run("speed", test_speed);
	return test_done("test_mime_cache");
}
