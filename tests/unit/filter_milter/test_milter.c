/* Unit tests of the milter client's pure parts (src/filter/milter_proto.c):
 * packet framing, option negotiation, replies, header fields as sent, and
 * milter_apply_edits (add, insert, change, delete; several fields of one
 * name; folded fields). */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "filter/milter.h"
#include "filter/milter_proto.h"
#include "../test.h"

static void test_packets(void)
{
	struct buf b = BUF_INIT;
	milter_pkt_put(&b, SMFIC_HELO, "mx.example\0", 11);
	milter_pkt_put(&b, SMFIC_QUIT, NULL, 0);
	CHECK_INT(1, b.len, 4 + 1 + 11 + 4 + 1);
	CHECK(memcmp(b.data, "\0\0\0\x0cHmx.example\0\0\0\0\x01Q", b.len) == 0);
	char cmd;
	const char *d;
	size_t n, used;
	/* every prefix of the first packet: need more */
	for (size_t k = 0; k < 16; k++)
		CHECK_INT((int)k, milter_pkt_get(b.data, k, 65535, &cmd, &d, &n, &used), 0);
	CHECK_INT(2, milter_pkt_get(b.data, b.len, 65535, &cmd, &d, &n, &used), 1);
	CHECK_INT(3, cmd, 'H');
	CHECK_INT(4, n, 11);
	CHECK_STR(5, d, "mx.example");
	CHECK_INT(6, used, 16);
	CHECK_INT(7, milter_pkt_get(b.data + used, b.len - used, 65535, &cmd, &d, &n, &used), 1);
	CHECK_INT(8, cmd, 'Q');
	CHECK_INT(9, n, 0);
	/* a zero length (no command byte) and one above the bound: errors */
	CHECK_INT(10, milter_pkt_get("\0\0\0\0c", 5, 65535, &cmd, &d, &n, &used), -1);
	CHECK_INT(11, milter_pkt_get("\0\x01\0\x01" "b", 5, 65535, &cmd, &d, &n, &used), -1);
	CHECK_INT(12, milter_pkt_get("\0\x01\0\x01" "b", 5, 65536, &cmd, &d, &n, &used), 0);
	buf_free(&b);
}

static void test_optneg(void)
{
	struct buf b = BUF_INIT;
	milter_optneg_put(&b, MILTER_VERSION, MILTER_OUR_ACTIONS, MILTER_OUR_PROTO);
	char cmd;
	const char *d;
	size_t n, used;
	CHECK_INT(1, milter_pkt_get(b.data, b.len, 65535, &cmd, &d, &n, &used), 1);
	CHECK_INT(2, cmd, 'O');
	CHECK_INT(3, n, 12);
	uint32_t v, a, p;
	CHECK_INT(4, milter_optneg_parse(d, n, &v, &a, &p), 0);
	CHECK_INT(5, v, 6);
	CHECK_INT(6, a, SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE);
	CHECK_INT(7, p, 0x1fffffu & ~SMFIP_RCPT_REJ);
	/* rspamd's reply: version 6, its actions, every NR_* flag (0xff080) */
	CHECK_INT(8, milter_optneg_parse("\0\0\0\x06\0\0\x01\xff\0\x0f\xf0\x80", 12, &v, &a, &p), 0);
	CHECK_INT(9, p, SMFIP_NR_HDR | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL |
			       SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH |
			       SMFIP_NR_BODY);
	CHECK_INT(11, a, 0x1ff);
	CHECK_INT(10, milter_optneg_parse("\0\0\0\x06\0\0", 6, &v, &a, &p), -1);
	buf_free(&b);
}

static void test_negotiate(void)
{
	static const struct {
		uint32_t ver, act, proto;
		int ret;
		uint32_t act_r, proto_r;
	} cases[] = {
		/* rspamd 3.4: v6, every action, every NR_* flag */
		{6, 0x1ff, 0xff080, 0, 0x31, 0xff080},
		/* flags we did not offer are dropped (RCPT_REJ, MDS sizes) */
		{6, 0x01, 0x30000800u | SMFIP_NOHDRS, 0, 0x01, SMFIP_NOHDRS},
		/* version 2: no DATA, no NR_* even if asked */
		{2, 0x10, SMFIP_NR_HDR | SMFIP_NOBODY, 0, 0x10, SMFIP_NOBODY | SMFIP_NODATA},
		/* version 4: DATA, no SKIP/LEADSPC */
		{4, 0, SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NODATA, 0, 0, SMFIP_NODATA},
		{1, 0, 0, -1, 0, 0},
		{7, 0, 0, -1, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t a = 0, p = 0;
		CHECK_INT((int)i, milter_negotiate(cases[i].ver, cases[i].act, cases[i].proto, &a, &p),
			  cases[i].ret);
		if (cases[i].ret == 0) {
			CHECK_INT((int)i, a, cases[i].act_r);
			CHECK_INT((int)i, p, cases[i].proto_r);
		}
	}
}

static void test_hdr_reply(void)
{
	uint32_t idx = 99;
	const char *name, *value;
	CHECK_INT(1, milter_hdr_parse("X-Spam\0Yes\0", 11, false, &idx, &name, &value), 0);
	CHECK_STR(2, name, "X-Spam");
	CHECK_STR(3, value, "Yes");
	CHECK_INT(4, milter_hdr_parse("\0\0\0\x02Subject\0\0", 13, true, &idx, &name, &value), 0);
	CHECK_INT(5, idx, 2);
	CHECK_STR(6, value, "");
	static const struct {
		const char *d;
		size_t n;
	} bad[] = {
		{"X-Spam\0Yes", 10},     /* value not terminated */
		{"X-Spam", 6},           /* name not terminated */
		{"\0Yes\0", 5},          /* empty name */
		{"X Spam\0Yes\0", 11},   /* space in the name */
		{"X:Spam\0Yes\0", 11},   /* colon in the name */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT((int)i + 10, milter_hdr_parse(bad[i].d, bad[i].n, false, &idx, &name, &value),
			  -1);
	CHECK_INT(20, milter_hdr_parse("\0\0\0", 3, true, &idx, &name, &value), -1);

	static const struct {
		const char *in, *out;
	} clean[] = {
		{"Yes", "Yes"},
		{" Yes", "Yes"},                          /* HDR_LEADSPC's space */
		{"a\n\tb", "a\r\n\tb"},                   /* LF fold */
		{"a\r\n b", "a\r\n b"},                   /* CRLF fold */
		{"a\nBcc: x@example", "a\r\n Bcc: x@example"}, /* never a new field */
		{"a\r\n\r\nbody", "a\r\n body"},           /* never the header's end */
		{"a\x01\x7f" "b\tc", "ab\tc"},
		{"trailing\n", "trailing"},
		{"a\n \nb", "a\r\n b"},                  /* no line of white space only */
		{"x\n\t", "x"},
		{"x\n \x01\t\r\n\ty", "x\r\n\ty"},
		{"x\n  y", "x\r\n  y"},
	};
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < sizeof(clean) / sizeof(clean[0]); i++) {
		milter_value_clean(clean[i].in, &b);
		CHECK_STR((int)i + 30, b.data, clean[i].out);
	}
	buf_free(&b);
	/* nothing left: still a C string, in a fresh buffer too (the fuzzer
	 * found field_set reading past it) */
	struct buf fresh = BUF_INIT;
	milter_value_clean("\x01\n", &fresh);
	CHECK_INT(50, fresh.len, 0);
	CHECK_STR(51, fresh.data, "");
	buf_free(&fresh);
	struct milter_edit e = {MILTER_ADD, 0, "X-E", "\x01"};
	struct buf out = BUF_INIT;
	CHECK_INT(52, milter_apply_edits("A: 1\r\n\r\n", 8, &e, 1, &out), 0);
	buf_appendc(&out, '\0');
	CHECK_STR(53, out.data, "A: 1\r\nX-E: \r\n\r\n");
	buf_free(&out);
}

static void test_replycode(void)
{
	static const struct {
		const char *in;
		int ret, code;
		const char *ecode, *text;
	} cases[] = {
		{"554 5.7.1 Spam message rejected", 0, 554, "5.7.1", "Spam message rejected"},
		{"451 4.7.1 Try again later", 0, 451, "4.7.1", "Try again later"},
		{"550 No enhanced code", 0, 550, "", "No enhanced code"},
		{"550", 0, 550, "", ""},
		{"550 4.7.1 class mismatch", 0, 550, "5.7.1", "class mismatch"},
		{"550-5.7.1 first\r\n550 5.7.1 second", 0, 550, "5.7.1", "first second"},
		{"550 5.7.1 bad\x01" "ctl", 0, 550, "5.7.1", "bad ctl"},
		{"250 ok", -1, 0, NULL, NULL},
		{"55", -1, 0, NULL, NULL},
		{"5501 x", -1, 0, NULL, NULL},
		{"550-5.7.1 a\r\n451 4.7.1 b", -1, 0, NULL, NULL},
		/* RFC 3463 2: subject and detail are 1 to 3 digits */
		{"550 5.1234.1 odd", 0, 550, "", "5.1234.1 odd"},
		{"550 5.7.1000 odd", 0, 550, "", "5.7.1000 odd"},
		{"550 5.7. odd", 0, 550, "", "5.7. odd"},
		{"550 5.7.12 ok", 0, 550, "5.7.12", "ok"},
		{"550 2.0.0 wrong class", 0, 550, "5.7.1", "wrong class"},
		/* 421 would promise a close the session does not do (RFC 5321 3.8) */
		{"421 4.7.0 go away", 0, 451, "4.7.0", "go away"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = 0;
		char ecode[16], text[128];
		int r = milter_replycode_parse(cases[i].in, strlen(cases[i].in) + 1, &code, ecode,
					       sizeof(ecode), text, sizeof(text));
		CHECK_INT((int)i, r, cases[i].ret);
		if (r == 0) {
			CHECK_INT((int)i, code, cases[i].code);
			CHECK_STR((int)i, ecode, cases[i].ecode);
			CHECK_STR((int)i, text, cases[i].text);
		}
	}
}

static void test_field_split(void)
{
	static const struct {
		const char *field;
		bool leadspc;
		int ret;
		const char *name, *value;
	} cases[] = {
		{"Subject: hello\r\n", false, 0, "Subject", "hello"},
		{"Subject: hello\r\n", true, 0, "Subject", " hello"},
		{"Subject:  two\r\n", false, 0, "Subject", " two"},
		{"Subject:\thello\r\n", false, 0, "Subject", "\thello"},
		{"Subject : spaced\r\n", false, 0, "Subject", "spaced"},
		{"Received: from a\r\n\tby b\r\n (c)\r\n", false, 0, "Received",
		 "from a\n\tby b\n (c)"},
		{"X-Empty:\r\n", false, 0, "X-Empty", ""},
		{"no colon\r\n", false, -1, NULL, NULL},
	};
	struct buf name = BUF_INIT, value = BUF_INIT;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = milter_field_split(cases[i].field, strlen(cases[i].field), cases[i].leadspc,
					   &name, &value);
		CHECK_INT((int)i, r, cases[i].ret);
		if (r == 0) {
			buf_appendc(&name, '\0');
			buf_appendc(&value, '\0');
			CHECK_STR((int)i, name.data, cases[i].name);
			CHECK_STR((int)i, value.data, cases[i].value);
		}
	}
	/* a NUL goes as a space: the packet's NULs separate name and value */
	static const struct {
		const char *field;
		size_t len;
		const char *name, *value;
	} nul[] = {
		{"From\0<ceo@bank.example>\0: x\r\n", 29, "From <ceo@bank.example> ", "x"},
		{"Subject: hidden\0VIAGRA\r\n", 24, "Subject", "hidden VIAGRA"},
	};
	for (size_t i = 0; i < sizeof(nul) / sizeof(nul[0]); i++) {
		CHECK_INT(100 + (int)i, milter_field_split(nul[i].field, nul[i].len, false, &name, &value),
			  0);
		CHECK_INT(100 + (int)i, (int)name.len, (int)strlen(nul[i].name));
		CHECK_INT(100 + (int)i, (int)value.len, (int)strlen(nul[i].value));
		buf_appendc(&name, '\0');
		buf_appendc(&value, '\0');
		CHECK_STR(100 + (int)i, name.data, nul[i].name);
		CHECK_STR(100 + (int)i, value.data, nul[i].value);
	}
	buf_free(&name);
	buf_free(&value);
}

#define MSG                                                                                        \
	"Received: from a\r\n\tby b\r\n"                                                           \
	"X-Spam: old1\r\n"                                                                         \
	"Subject: hi\r\n"                                                                          \
	"x-spam: old2\r\n"                                                                         \
	"\r\n"                                                                                     \
	"X-Spam: in the body\r\n"

static void test_apply_edits(void)
{
	static const struct {
		struct milter_edit e[3];
		size_t n;
		const char *out;
	} cases[] = {
		/* 0: nothing */
		{{{0}}, 0, MSG},
		/* 1: add: after the last field, before the empty line */
		{{{MILTER_ADD, 0, "X-Added", "yes"}}, 1,
		 "Received: from a\r\n\tby b\r\nX-Spam: old1\r\nSubject: hi\r\nx-spam: old2\r\n"
		 "X-Added: yes\r\n\r\nX-Spam: in the body\r\n"},
		/* 2: insert at 0: the first field */
		{{{MILTER_INSERT, 0, "DKIM-Signature", "v=1;\n\tb=x"}}, 1,
		 "DKIM-Signature: v=1;\r\n\tb=x\r\n" MSG},
		/* 3: insert at 1: after the folded Received (one field) */
		{{{MILTER_INSERT, 1, "X-I", "1"}}, 1,
		 "Received: from a\r\n\tby b\r\nX-I: 1\r\nX-Spam: old1\r\nSubject: hi\r\n"
		 "x-spam: old2\r\n\r\nX-Spam: in the body\r\n"},
		/* 4: change the 2nd X-Spam (names case-insensitive) */
		{{{MILTER_CHANGE, 2, "X-Spam", "Yes"}}, 1,
		 "Received: from a\r\n\tby b\r\nX-Spam: old1\r\nSubject: hi\r\nX-Spam: Yes\r\n"
		 "\r\nX-Spam: in the body\r\n"},
		/* 5: delete both X-Spam fields (the body's stays), as rspamd does */
		{{{MILTER_DELETE, 2, "X-Spam", ""}, {MILTER_DELETE, 1, "X-Spam", ""}}, 2,
		 "Received: from a\r\n\tby b\r\nSubject: hi\r\n\r\nX-Spam: in the body\r\n"},
		/* 6: delete the 1st, then the "1st" is the old 2nd */
		{{{MILTER_DELETE, 1, "X-Spam", ""}, {MILTER_CHANGE, 1, "X-Spam", "new"}}, 2,
		 "Received: from a\r\n\tby b\r\nSubject: hi\r\nX-Spam: new\r\n\r\n"
		 "X-Spam: in the body\r\n"},
		/* 7: change of a field that is not there: added; deletion: nothing */
		{{{MILTER_CHANGE, 1, "X-New", "v"}, {MILTER_DELETE, 3, "X-Spam", ""}}, 2,
		 "Received: from a\r\n\tby b\r\nX-Spam: old1\r\nSubject: hi\r\nx-spam: old2\r\n"
		 "X-New: v\r\n\r\nX-Spam: in the body\r\n"},
		/* 8: change the folded field: replaced whole */
		{{{MILTER_CHANGE, 1, "Received", "x"}}, 1,
		 "Received: x\r\nX-Spam: old1\r\nSubject: hi\r\nx-spam: old2\r\n\r\n"
		 "X-Spam: in the body\r\n"},
		/* 9: insert past the end: appended; a bad name: ignored */
		{{{MILTER_INSERT, 99, "X-Last", "z"}, {MILTER_ADD, 0, "Bad Name", "z"}}, 2,
		 "Received: from a\r\n\tby b\r\nX-Spam: old1\r\nSubject: hi\r\nx-spam: old2\r\n"
		 "X-Last: z\r\n\r\nX-Spam: in the body\r\n"},
		/* 10: a value that tries to start a field of its own is folded */
		{{{MILTER_CHANGE, 1, "Subject", "a\nBcc: x@example"}}, 1,
		 "Received: from a\r\n\tby b\r\nX-Spam: old1\r\nSubject: a\r\n Bcc: x@example\r\n"
		 "x-spam: old2\r\n\r\nX-Spam: in the body\r\n"},
		/* 11: a change to an empty value keeps the field, empty (a
		 * deletion is MILTER_DELETE) */
		{{{MILTER_CHANGE, 1, "Subject", ""}}, 1,
		 "Received: from a\r\n\tby b\r\nX-Spam: old1\r\nSubject: \r\n"
		 "x-spam: old2\r\n\r\nX-Spam: in the body\r\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out = BUF_INIT;
		CHECK_INT((int)i, milter_apply_edits(MSG, strlen(MSG), cases[i].e, cases[i].n, &out), 0);
		buf_appendc(&out, '\0');
		CHECK_STR((int)i, out.data, cases[i].out);
		buf_free(&out);
	}
	/* headers only, no final line break: an added field gets its own line */
	struct milter_edit add = {MILTER_ADD, 0, "X-A", "1"};
	struct buf out = BUF_INIT;
	CHECK_INT(20, milter_apply_edits("Subject: x", 10, &add, 1, &out), 0);
	buf_appendc(&out, '\0');
	CHECK_STR(21, out.data, "Subject: x\r\nX-A: 1\r\n");
	buf_reset(&out);
	/* no header section */
	CHECK_INT(22, milter_apply_edits("\r\nbody\r\n", 8, &add, 1, &out), -1);
	CHECK_INT(23, milter_apply_edits(" folded\r\n", 9, &add, 1, &out), -1);
	CHECK_INT(24, milter_apply_edits("", 0, &add, 1, &out), -1);
	/* LF-only messages keep their line ends */
	buf_reset(&out);
	CHECK_INT(25, milter_apply_edits("A: 1\nB: 2\n\nbody\n", 16, &add, 1, &out), 0);
	buf_appendc(&out, '\0');
	CHECK_STR(26, out.data, "A: 1\nB: 2\nX-A: 1\r\n\nbody\n");
	buf_free(&out);
}

int main(void)
{
	test_run("packets", test_packets);
	test_run("optneg", test_optneg);
	test_run("negotiate", test_negotiate);
	test_run("hdr_reply", test_hdr_reply);
	test_run("replycode", test_replycode);
	test_run("field_split", test_field_split);
	test_run("apply_edits", test_apply_edits);
	return test_done("test_filter_milter");
}
