/* Unit tests for the SMTP pure parsers: command lines, DATA and BDAT decoders. */
#include <stdint.h>
#include <stdlib.h>

#include "../test.h"
#include "core/buf.h"
#include "smtp/data.h"
#include "smtp/parse.h"

/* ---- command verbs ---- */
static void test_verb(void)
{
	static const struct {
		const char *line;
		int ret;
		const char *verb;
		const char *args;
	} cases[] = {
		{"EHLO example.org", 0, "EHLO", "example.org"},
		{"ehlo   example.org", 0, "EHLO", "example.org"},
		{"QUIT", 0, "QUIT", ""},
		{"MaIl FROM:<a@b>", 0, "MAIL", "FROM:<a@b>"},
		{"", -1, NULL, NULL},
		{" NOOP", -1, NULL, NULL},
		{"NO0P", -1, NULL, NULL},
		{"STARTTLSXXXXXXXXXXXXX", -1, NULL, NULL},
		{"DATA\t", -1, NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char verb[16];
		const char *args = NULL;
		int r = smtp_parse_verb(cases[i].line, verb, sizeof(verb), &args);
		CHECK_INT(i, r, cases[i].ret);
		if (r == 0) {
			CHECK_STR(i, verb, cases[i].verb);
			CHECK_STR(i, args, cases[i].args);
		}
	}
}

/* ---- MAIL FROM ---- */
static void test_mail(void)
{
	static const struct {
		const char *args;
		int ret;      /* 0 or the reply code */
		const char *addr;
		uint64_t size; /* 0 = no SIZE */
		int body;
		int utf8;
		const char *ret_p;
		const char *envid;
	} cases[] = {
		/* 0 */ {"FROM:<a@example.org>", 0, "a@example.org", 0, SMTP_BODY_NONE, 0, NULL, NULL},
		{"from:<a@Example.ORG>", 0, "a@example.org", 0, 0, 0, NULL, NULL},
		{"FROM: <a@example.org>", 0, "a@example.org", 0, 0, 0, NULL, NULL},
		{"FROM:<>", 0, "", 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> SIZE=12345", 0, "a@example.org", 12345, 0, 0, NULL, NULL},
		/* 5 */ {"FROM:<a@example.org> size=1 body=8bitmime", 0, "a@example.org", 1,
		 SMTP_BODY_8BITMIME, 0, NULL, NULL},
		{"FROM:<a@example.org> BODY=7BIT", 0, "a@example.org", 0, SMTP_BODY_7BIT, 0, NULL,
		 NULL},
		{"FROM:<a@example.org> BODY=BINARYMIME", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> RET=hdrs ENVID=QQ+2B1", 0, "a@example.org", 0, 0, 0, "HDRS",
		 "QQ+2B1"},
		{"FROM:<a@example.org> RET=ALL", 501, NULL, 0, 0, 0, NULL, NULL},
		/* 10 */ {"FROM:<a@example.org> ENVID=a+zz", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> ENVID=a=b", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> FOO=bar", 555, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> XFORWARD", 555, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> SIZE=abc", 501, NULL, 0, 0, 0, NULL, NULL},
		/* 15 */ {"FROM:<a@example.org> SIZE=1 SIZE=2", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> SIZE=", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> AUTH=<>", 0, "a@example.org", 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> AUTH=u+40example.org", 0, "a@example.org", 0, 0, 0, NULL,
		 NULL},
		{"FROM:a@example.org", 501, NULL, 0, 0, 0, NULL, NULL},
		/* 20 */ {"FROM <a@example.org>", 501, NULL, 0, 0, 0, NULL, NULL},
		{"TO:<a@example.org>", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org>SIZE=1", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<j\xc3\xb6rg@example.org> SMTPUTF8", 0, "j\xc3\xb6rg@example.org", 0, 0, 1,
		 NULL, NULL},
		/* 25 */ {"FROM:<j\xc3\xb6rg@example.org>", 553, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> SMTPUTF8=yes", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<a@example.org>   SIZE=10  ", 0, "a@example.org", 10, 0, 0, NULL, NULL},
		{"FROM:<a@example.org> SIZE=99999999999999999999999", 501, NULL, 0, 0, 0, NULL,
		 NULL},
		{"FROM:<@relay.example:a@example.org>", 0, "a@example.org", 0, 0, 0, NULL, NULL},
		/* 30 */ {"FROM:<a@example.org> =x", 501, NULL, 0, 0, 0, NULL, NULL},
		{"FROM:<\"a b\"@example.org>", 0, "\"a b\"@example.org", 0, 0, 0, NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_mail_args m;
		struct smtp_perr err = {0, NULL, NULL};
		int r = smtp_parse_mail(cases[i].args, &m, &err);
		if (cases[i].ret == 0) {
			CHECK_INT(i, r, 0);
			if (r != 0) {
				printf("    case %zu: error %d %s %s\n", i, err.code, err.ecode,
				       err.text);
				continue;
			}
			CHECK_STR(i, m.addr, cases[i].addr);
			CHECK_INT(i, m.has_size ? m.size : 0, cases[i].size);
			CHECK_INT(i, m.body, cases[i].body);
			CHECK_INT(i, m.smtputf8, cases[i].utf8);
			CHECK_STR(i, m.ret, cases[i].ret_p);
			CHECK_STR(i, m.envid, cases[i].envid);
			smtp_mail_args_free(&m);
		} else {
			CHECK_INT(i, r, -1);
			CHECK_INT(i, err.code, cases[i].ret);
			CHECK(m.addr == NULL);
		}
	}
}

/* ---- RCPT TO ---- */
static void test_rcpt(void)
{
	static const struct {
		const char *args;
		int utf8;
		int ret;
		const char *addr;
		const char *notify;
		const char *orcpt;
	} cases[] = {
		/* 0 */ {"TO:<b@example.org>", 0, 0, "b@example.org", NULL, NULL},
		{"to: <b@example.org>", 0, 0, "b@example.org", NULL, NULL},
		{"TO:<Postmaster>", 0, 0, "postmaster", NULL, NULL},
		{"TO:<>", 0, 501, NULL, NULL, NULL},
		{"TO:<b@example.org> NOTIFY=success,failure", 0, 0, "b@example.org",
		 "SUCCESS,FAILURE", NULL},
		/* 5 */ {"TO:<b@example.org> NOTIFY=NEVER", 0, 0, "b@example.org", "NEVER", NULL},
		{"TO:<b@example.org> NOTIFY=NEVER,DELAY", 0, 501, NULL, NULL, NULL},
		{"TO:<b@example.org> NOTIFY=DELAY,DELAY", 0, 501, NULL, NULL, NULL},
		{"TO:<b@example.org> NOTIFY=SUCCESS,", 0, 501, NULL, NULL, NULL},
		{"TO:<b@example.org> ORCPT=rfc822;b+40example.org", 0, 0, "b@example.org", NULL,
		 "rfc822;b+40example.org"},
		/* 10 */ {"TO:<b@example.org> ORCPT=b@example.org", 0, 501, NULL, NULL, NULL},
		{"TO:<b@example.org> ORCPT=x400;foo", 0, 501, NULL, NULL, NULL},
		{"TO:<b@example.org> SIZE=10", 0, 555, NULL, NULL, NULL},
		{"TO:<j\xc3\xb6rg@example.org>", 0, 553, NULL, NULL, NULL},
		{"TO:<j\xc3\xb6rg@example.org>", 1, 0, "j\xc3\xb6rg@example.org", NULL, NULL},
		/* 15 */ {"TO:<b@ex\xc3\xa4mple.org>", 1, 0, "b@ex\xc3\xa4mple.org", NULL, NULL},
		{"TO:<b@ex\xc3\xa4mple.org>", 0, 553, NULL, NULL, NULL},
		{"TO:b@example.org", 0, 501, NULL, NULL, NULL},
		{"FROM:<b@example.org>", 0, 501, NULL, NULL, NULL},
		{"TO:<b@@example.org>", 0, 501, NULL, NULL, NULL},
		/* 20 */ {"TO:<b@example.org> ORCPT=utf-8;j\xc3\xb6rg@example.org", 1, 0,
		 "b@example.org", NULL, "utf-8;j\xc3\xb6rg@example.org"},
		{"TO:<b@example.org> ORCPT=utf-8;j\xc3\xb6rg@example.org", 0, 501, NULL, NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_rcpt_args r;
		struct smtp_perr err = {0, NULL, NULL};
		int k = smtp_parse_rcpt(cases[i].args, cases[i].utf8, &r, &err);
		if (cases[i].ret == 0) {
			CHECK_INT(i, k, 0);
			if (k != 0) {
				printf("    case %zu: error %d %s %s\n", i, err.code, err.ecode,
				       err.text);
				continue;
			}
			CHECK_STR(i, r.addr, cases[i].addr);
			CHECK_STR(i, r.notify, cases[i].notify);
			CHECK_STR(i, r.orcpt, cases[i].orcpt);
			smtp_rcpt_args_free(&r);
		} else {
			CHECK_INT(i, k, -1);
			CHECK_INT(i, err.code, cases[i].ret);
		}
	}
}

static void test_bdat_parse(void)
{
	static const struct {
		const char *args;
		int ret;
		uint64_t size;
		int last;
	} cases[] = {
		{"100", 0, 100, 0},       {"0 LAST", 0, 0, 1},   {"12 last", 0, 12, 1},
		{"12  LAST  ", 0, 12, 1}, {"", -1, 0, 0},        {"LAST", -1, 0, 0},
		{"12LAST", -1, 0, 0},     {"12 LASTX", -1, 0, 0}, {"-1", -1, 0, 0},
		{"1 2", -1, 0, 0},        {"9999999999999999999999", -1, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t size = 0;
		bool last = false;
		int r = smtp_parse_bdat(cases[i].args, &size, &last);
		CHECK_INT(i, r, cases[i].ret);
		if (r == 0) {
			CHECK_INT(i, size, cases[i].size);
			CHECK_INT(i, last, cases[i].last);
		}
	}
}

static void test_xtext(void)
{
	CHECK(smtp_xtext_valid("abc", 3));
	CHECK(smtp_xtext_valid("a+2Bb", 5));
	CHECK(!smtp_xtext_valid("a+2bb", 5));
	CHECK(!smtp_xtext_valid("a+2", 3));
	CHECK(!smtp_xtext_valid("a b", 3));
	CHECK(!smtp_xtext_valid("a=b", 3));
}

/* ---- DATA decoder ---- */
static void collect(void *arg, const char *p, size_t n)
{
	buf_append(arg, p, n);
}

struct dres {
	int ret;
	size_t used;
	struct buf out;
	struct smtp_data d;
};

/* Feeds in in pieces of at most step bytes (0 = all at once). */
static void decode(enum smtp_data_mode mode, const char *in, size_t len, size_t step,
		   size_t max_line, const char *ins_id, const char *ins_date, struct dres *r)
{
	size_t off = 0;

	buf_init(&r->out);
	buf_reserve(&r->out, 1);
	r->out.data[0] = '\0';
	smtp_data_init(&r->d, mode, max_line, collect, &r->out);
	smtp_data_set_insert(&r->d, ins_id, ins_date);
	r->ret = 0;
	while (off < len) {
		size_t n = step == 0 || len - off < step ? len - off : step;
		size_t used = 0;
		r->ret = smtp_data_feed(&r->d, in + off, n, &used);
		off += used;
		if (r->ret == 1)
			break;
	}
	r->used = off;
	if (mode == SMTP_DATA_BDAT)
		smtp_data_finish(&r->d);
}

static void test_data_basic(void)
{
	static const struct {
		const char *in;
		int ret;
		const char *out; /* decoded message */
		size_t used;     /* octets consumed when done */
		int bare;
	} cases[] = {
		/* 0 */ {"Subject: x\r\n\r\nhello\r\n.\r\n", 1, "Subject: x\r\n\r\nhello\r\n", 24, 0},
		{".\r\n", 1, "", 3, 0},
		{"a\r\n.\r\nMAIL FROM:<>\r\n", 1, "a\r\n", 6, 0},
		{"..\r\n.\r\n", 1, ".\r\n", 7, 0},
		{"..x\r\n...\r\n.\r\n", 1, ".x\r\n..\r\n", 13, 0},
		/* 5 */ {"a\r\n.b\r\n.\r\n", 1, "a\r\nb\r\n", 10, 0},
		/* smuggling variants: never the end, flagged */
		{"a\n.\nb\r\n.\r\n", 1, "a\n.\nb\r\n", 10, 1},
		{"a\r.\rb\r\n.\r\n", 1, "a\r.\rb\r\n", 10, 1},
		{"a\n.\r\nb\r\n.\r\n", 1, "a\n.\r\nb\r\n", 11, 1},
		{"a\r\n.\nb\r\n.\r\n", 1, "a\r\n\nb\r\n", 11, 1},
		/* 10 */ {"a\r\n.\rb\r\n.\r\n", 1, "a\r\n\rb\r\n", 11, 1},
		{"a\r\r\n.\r\n", 1, "a\r\r\n", 7, 1},
		{"a\r\n.\r\r\n.\r\n", 1, "a\r\n\r\r\n", 10, 1},
		{"a\n.\n", 0, "a\n.\n", 4, 1},
		{"a\r\n.x", 0, "a\r\nx", 5, 0},
		/* 15 */ {"a\r\n", 0, "a\r\n", 3, 0},
		{"\r\n.\r\n", 1, "\r\n", 5, 0},
		{"x\r\n\n.\r\n.\r\n", 1, "x\r\n\n.\r\n", 10, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dres r;
		decode(SMTP_DATA_DOT, cases[i].in, strlen(cases[i].in), 0, 1000, NULL, NULL, &r);
		CHECK_INT(i, r.ret, cases[i].ret);
		CHECK_STR(i, r.out.data, cases[i].out);
		CHECK_INT(i, r.used, cases[i].used);
		CHECK_INT(i, smtp_data_bad_eol(&r.d), cases[i].bare);
		CHECK_INT(i, r.d.out_bytes, strlen(cases[i].out));
		buf_free(&r.out);
	}
}

/* CRLF.CRLF and stuffing split at every boundary and in every chunk size. */
static void test_data_splits(void)
{
	const char *in = "Subject: t\r\n\r\nline\r\n..dot\r\n\r\nx\r\n.\r\nQUIT\r\n";
	const char *want = "Subject: t\r\n\r\nline\r\n.dot\r\n\r\nx\r\n";
	size_t len = strlen(in), want_used = len - strlen("QUIT\r\n");
	int casenum = 0;

	for (size_t step = 1; step <= len; step++) {
		struct dres r;
		decode(SMTP_DATA_DOT, in, len, step, 1000, NULL, NULL, &r);
		CHECK_INT(casenum, r.ret, 1);
		CHECK_STR(casenum, r.out.data, want);
		CHECK_INT(casenum, r.used, want_used);
		CHECK_INT(casenum, smtp_data_bad_eol(&r.d), 0);
		buf_free(&r.out);
		casenum++;
	}
	/* Two pieces split at every position. */
	for (size_t cut = 0; cut <= len; cut++) {
		struct smtp_data d;
		struct buf out = BUF_INIT;
		size_t used1 = 0, used2 = 0;
		int r1, r2 = 0;
		buf_appends(&out, "");
		smtp_data_init(&d, SMTP_DATA_DOT, 1000, collect, &out);
		r1 = smtp_data_feed(&d, in, cut, &used1);
		if (r1 == 0)
			r2 = smtp_data_feed(&d, in + cut, len - cut, &used2);
		CHECK_INT(cut, r1 || r2, 1);
		CHECK_INT(cut, used1 + used2, want_used);
		CHECK_STR(cut, out.data, want);
		buf_free(&out);
	}
	/* Smuggling sequences fed byte by byte: never the end. */
	static const char *const smuggle[] = {"a\n.\n", "a\r.\r", "a\n.\r\n", "a\r\n.\n",
					      "a\r.\r\n", "a\r\n.\r", "a\n.\r"};
	for (size_t i = 0; i < sizeof(smuggle) / sizeof(smuggle[0]); i++) {
		struct dres r;
		decode(SMTP_DATA_DOT, smuggle[i], strlen(smuggle[i]), 1, 1000, NULL, NULL, &r);
		CHECK_INT(i, r.ret, 0);
		if (strcmp(smuggle[i], "a\r\n.\r") != 0)
			CHECK_INT(i, smtp_data_bad_eol(&r.d), 1);
		buf_free(&r.out);
	}
}

static void test_data_long_line(void)
{
	static const struct {
		size_t linelen; /* octets incl. CRLF */
		int flagged;
	} cases[] = {{10, 0}, {1000, 0}, {1001, 1}, {5000, 1}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf in = BUF_INIT;
		for (size_t k = 0; k + 2 < cases[i].linelen; k++)
			buf_appendc(&in, 'x');
		buf_appends(&in, "\r\nshort\r\n.\r\n");
		struct dres r;
		decode(SMTP_DATA_DOT, in.data, in.len, 7, 1000, NULL, NULL, &r);
		CHECK_INT(i, r.ret, 1);
		CHECK_INT(i, r.d.long_line, cases[i].flagged);
		CHECK_INT(i, r.out.len, in.len - 3);
		buf_free(&in);
		buf_free(&r.out);
	}
	/* A dot-stuffed line counts its dot (raw length). */
	struct buf in = BUF_INIT;
	buf_appendc(&in, '.');
	for (size_t k = 0; k < 998; k++)
		buf_appendc(&in, 'y');
	buf_appends(&in, "\r\n.\r\n");
	struct dres r;
	decode(SMTP_DATA_DOT, in.data, in.len, 0, 1000, NULL, NULL, &r);
	CHECK_INT(100, r.d.long_line, 1);
	buf_free(&in);
	buf_free(&r.out);
}

#define MID "Message-ID: <x@h>\r\n"
#define DATE "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"

static void test_data_headers(void)
{
	static const struct {
		const char *in;
		const char *out;
		int msgid, date, eoh;
	} cases[] = {
		/* 0 */ {"Subject: a\r\n\r\nbody\r\n.\r\n", "Subject: a\r\n" MID DATE "\r\nbody\r\n", 0,
		 0, 1},
		{"Subject: a\r\nMessage-ID: <m@x>\r\n\r\nb\r\n.\r\n",
		 "Subject: a\r\nMessage-ID: <m@x>\r\n" DATE "\r\nb\r\n", 1, 0, 1},
		{"date: now\r\nmessage-id : <m@x>\r\n\r\n.\r\n",
		 "date: now\r\nmessage-id : <m@x>\r\n\r\n", 1, 1, 1},
		{"Subject: a\r\n.\r\n", "Subject: a\r\n" MID DATE, 0, 0, 0},
		{".\r\n", MID DATE, 0, 0, 0},
		/* 5 */ {"Subject: a\r\n b\r\n\tc\r\n\r\nx\r\n.\r\n",
		 "Subject: a\r\n b\r\n\tc\r\n" MID DATE "\r\nx\r\n", 0, 0, 1},
		/* a body line in the header section: end it there, add the blank line */
		{"Subject: a\r\nhello world\r\n.\r\n",
		 "Subject: a\r\n" MID DATE "\r\nhello world\r\n", 0, 0, 0},
		{"Subject: a\r\n\r\nMessage-ID: <late@x>\r\n.\r\n",
		 "Subject: a\r\n" MID DATE "\r\nMessage-ID: <late@x>\r\n", 0, 0, 1},
		/* the folded continuation does not count as a Date: field */
		{"Subject: a\r\n Date: x\r\n\r\n.\r\n", "Subject: a\r\n Date: x\r\n" MID DATE "\r\n",
		 0, 0, 1},
		{"X-Very-Long-Header-Name-That-Goes-On-And-On-And-On-Beyond-The-Prefix-Buffer-Size-"
		 "Yes: 1\r\n\r\n.\r\n",
		 "X-Very-Long-Header-Name-That-Goes-On-And-On-And-On-Beyond-The-Prefix-Buffer-Size-"
		 "Yes: 1\r\n" MID DATE "\r\n",
		 0, 0, 1},
		/* 10 */ {"..Subject: a\r\n\r\n.\r\n", ".Subject: a\r\n" MID DATE "\r\n", 0, 0, 1},
		{"Date : x\r\n\r\n.\r\n", "Date : x\r\n" MID "\r\n", 0, 1, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t step = 0; step <= 3; step++) {
			struct dres r;
			decode(SMTP_DATA_DOT, cases[i].in, strlen(cases[i].in), step, 1000, MID, DATE,
			       &r);
			int cn = (int)(i * 10 + step);
			CHECK_INT(cn, r.ret, 1);
			CHECK_STR(cn, r.out.data, cases[i].out);
			CHECK_INT(cn, r.d.saw_msgid, cases[i].msgid);
			CHECK_INT(cn, r.d.saw_date, cases[i].date);
			CHECK_INT(cn, r.d.saw_eoh, cases[i].eoh);
			CHECK_INT(cn, r.d.out_bytes, strlen(cases[i].out));
			buf_free(&r.out);
		}
	}
	/* Without insert lines, the message passes through unchanged. */
	struct dres r;
	const char *in = "Subject: a\r\nhello\r\n.\r\n";
	decode(SMTP_DATA_DOT, in, strlen(in), 1, 1000, NULL, NULL, &r);
	CHECK_STR(200, r.out.data, "Subject: a\r\nhello\r\n");
	buf_free(&r.out);
}

/* ---- BDAT decoder ---- */
static void test_bdat_decoder(void)
{
	static const struct {
		const char *in;
		const char *out;
		int bare;
	} cases[] = {
		{"Subject: a\r\n\r\n..x\r\n.\r\n", "Subject: a\r\n\r\n..x\r\n.\r\n", 0},
		{"a\r\nb", "a\r\nb", 0},
		{"a\nb\r\n", "a\nb\r\n", 1},
		{"a\rb\r\n", "a\rb\r\n", 1},
		{"a\r\nb\r", "a\r\nb\r", 1},
		{"\0\1\2\r\n", "\0\1\2\r\n", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].in);
		if (i == 5)
			len = 5;
		for (size_t step = 0; step <= 2; step++) {
			struct dres r;
			decode(SMTP_DATA_BDAT, cases[i].in, len, step, 1000, NULL, NULL, &r);
			int cn = (int)(i * 10 + step);
			CHECK_INT(cn, r.ret, 0);
			CHECK_INT(cn, r.used, len);
			CHECK_INT(cn, r.out.len, len);
			CHECK(memcmp(r.out.data, cases[i].in, len) == 0);
			CHECK_INT(cn, smtp_data_bad_eol(&r.d), cases[i].bare);
			buf_free(&r.out);
		}
	}
	/* CRLF split across chunks is not bare. */
	struct smtp_data d;
	struct buf out = BUF_INIT;
	size_t used;
	smtp_data_init(&d, SMTP_DATA_BDAT, 1000, collect, &out);
	smtp_data_feed(&d, "a\r", 2, &used);
	smtp_data_feed(&d, "\nb\r", 3, &used);
	smtp_data_feed(&d, "\n", 1, &used);
	smtp_data_finish(&d);
	CHECK(!smtp_data_bad_eol(&d));
	CHECK(d.done);
	buf_free(&out);

	/* Header insertion in BDAT, message without final CRLF and body. */
	struct dres r;
	decode(SMTP_DATA_BDAT, "Subject: a", 10, 3, 1000, MID, DATE, &r);
	CHECK_STR(300, r.out.data, "Subject: a\r\n" MID DATE);
	buf_free(&r.out);
	decode(SMTP_DATA_BDAT, "Subject: a\r\n\r\nb", 16, 1, 1000, MID, NULL, &r);
	CHECK_STR(301, r.out.data, "Subject: a\r\n" MID "\r\nb");
	buf_free(&r.out);
	/* Nothing missing: no CRLF added after a last line without one (fuzz_smtp_data). */
	decode(SMTP_DATA_BDAT, "Message-ID: <m@x>\r\nDate: x\r\nSubject: a", 38, 2, 1000, MID, DATE,
	       &r);
	CHECK_STR(302, r.out.data, "Message-ID: <m@x>\r\nDate: x\r\nSubject: a");
	buf_free(&r.out);
	decode(SMTP_DATA_BDAT, "Message-ID:\xff\xffP", 14, 0, 1000, MID, NULL, &r);
	CHECK_STR(303, r.out.data, "Message-ID:\xff\xffP");
	buf_free(&r.out);
	/* Long line in BDAT */
	struct buf in = BUF_INIT;
	for (int k = 0; k < 1200; k++)
		buf_appendc(&in, 'z');
	decode(SMTP_DATA_BDAT, in.data, in.len, 100, 1000, NULL, NULL, &r);
	CHECK(r.d.long_line);
	buf_free(&r.out);
	buf_free(&in);
}

int main(void)
{
	test_run("verb", test_verb);
	test_run("mail", test_mail);
	test_run("rcpt", test_rcpt);
	test_run("bdat_parse", test_bdat_parse);
	test_run("xtext", test_xtext);
	test_run("data_basic", test_data_basic);
	test_run("data_splits", test_data_splits);
	test_run("data_long_line", test_data_long_line);
	test_run("data_headers", test_data_headers);
	test_run("bdat_decoder", test_bdat_decoder);
	return test_done("test_smtp");
}
