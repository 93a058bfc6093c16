/* Unit tests for the IMAP command parser (src/imap/parse*.c): framing of
 * lines and literals (fed whole and one octet at a time, which must give the
 * same events), limits, the argument tree, and every typed helper. */
#include <stdlib.h>

#include "../test.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "imap/parse.h"

/* ---- framing ---- */

enum drive_mode { DM_ACCEPT, DM_REFUSE, DM_EVENTS_INLINE, DM_EVENTS_EXTERNAL };

/* Renders one argument tree as text: atoms bare, quoted as "..", literals as
 * {len:bytes} (external as {len:X}), lists in (), NIL as NIL. */
static void render_args(const struct imap_arg *a, struct buf *out)
{
	for (size_t i = 0; a[i].type != IMAP_ARG_EOL; i++) {
		if (i > 0)
			buf_appendc(out, ' ');
		switch (a[i].type) {
		case IMAP_ARG_ATOM:
			buf_append(out, a[i].str, a[i].len);
			break;
		case IMAP_ARG_NIL:
			buf_appends(out, "NIL");
			break;
		case IMAP_ARG_QUOTED:
			buf_appendc(out, '"');
			buf_append(out, a[i].str, a[i].len);
			buf_appendc(out, '"');
			break;
		case IMAP_ARG_LITERAL:
			buf_printf(out, "%s{%zu:", a[i].binary ? "~" : "", a[i].len);
			if (a[i].external)
				buf_appendc(out, 'X');
			else
				buf_append(out, a[i].str, a[i].len);
			buf_appendc(out, '}');
			break;
		case IMAP_ARG_LIST:
			buf_appendc(out, '(');
			render_args(a[i].list, out);
			buf_appendc(out, ')');
			break;
		default:
			break;
		}
	}
}

/* Feeds src in chunks of `step` octets (0: all at once) and writes a
 * transcript: "+" CONTINUE, "L<n>" LITERAL, "C<tag>|<name>|<args>" or
 * "E<err>" per command, "B<err>" BAD, "F<err>" FATAL. */
static void drive(const char *src, size_t n, size_t step, enum drive_mode mode,
		  const struct imap_reader *limits, struct buf *out)
{
	struct imap_reader r;
	struct buf in = BUF_INIT;
	size_t pos = 0;

	imap_reader_init(&r);
	if (limits != NULL) {
		r.max_line = limits->max_line;
		r.max_command = limits->max_command;
		r.max_literal = limits->max_literal;
		r.max_nonsync = limits->max_nonsync;
	}
	r.want_literal_events = mode == DM_EVENTS_INLINE || mode == DM_EVENTS_EXTERNAL;
	for (;;) {
		if (pos < n) {
			size_t k = step == 0 || n - pos < step ? n - pos : step;
			buf_append(&in, src + pos, k);
			pos += k;
		}
		enum imap_read_result res;
		bool fatal = false;
		while ((res = imap_reader_feed(&r, &in)) != IMAP_READ_MORE) {
			if (res == IMAP_READ_COMMAND) {
				struct imap_args a;
				const char *err;
				if (imap_parse_command(&r, &a, &err) == 0) {
					buf_printf(out, "C%s|%s|", a.tag, a.name);
					render_args(a.args, out);
				} else {
					buf_printf(out, "E%s|%s", a.tag ? a.tag : "-", err);
				}
				buf_appendc(out, ';');
				imap_args_free(&a);
				imap_reader_next(&r);
			} else if (res == IMAP_READ_CONTINUE) {
				buf_appends(out, "+;");
				if (mode == DM_REFUSE)
					imap_reader_refuse(&r);
			} else if (res == IMAP_READ_LITERAL) {
				buf_printf(out, "L%llu%s;", (unsigned long long)r.lit_len,
					   r.lit_sync ? "" : "+");
				if (mode == DM_EVENTS_INLINE) {
					imap_reader_inline(&r);
				} else {
					/* stream: take the octets from our input */
					uint64_t left = r.lit_len;
					while (left > 0) {
						if (in.len == 0) {
							if (pos == n)
								break;
							buf_append(&in, src + pos, 1);
							pos++;
						}
						size_t k = in.len < left ? in.len : (size_t)left;
						buf_consume(&in, k);
						left -= k;
					}
					if (left > 0)
						goto end;
					imap_reader_external_done(&r);
				}
			} else if (res == IMAP_READ_BAD) {
				size_t tl = 0;
				const char *tag = imap_reader_tag(&r, &tl);
				buf_printf(out, "B%.*s|%s%s;", (int)tl, tag ? tag : "", r.error,
					   r.error_toobig ? " TOOBIG" : "");
			} else {
				buf_printf(out, "F%s;", r.error);
				fatal = true;
				break;
			}
		}
		if (fatal || pos == n)
			break;
	}
end:
	imap_reader_free(&r);
	buf_free(&in);
}

static void test_framing(void)
{
	static const struct {
		const char *in;
		enum drive_mode mode;
		size_t max_line, max_literal;
		const char *want;
	} cases[] = {
		{"a NOOP\r\n", DM_ACCEPT, 0, 0, "Ca|NOOP|;"},
		{"a noop\n", DM_ACCEPT, 0, 0, "Ca|NOOP|;"}, /* bare LF */
		{"a1 uid fetch 1:* (FLAGS)\r\nb2 LOGOUT\r\n", DM_ACCEPT, 0, 0,
		 "Ca1|UID FETCH|1:* (FLAGS);Cb2|LOGOUT|;"},
		{"a LOGIN {3}\r\nfoo {3}\r\nbar\r\n", DM_ACCEPT, 0, 0,
		 "+;+;Ca|LOGIN|{3:foo} {3:bar};"},
		{"a LOGIN {3+}\r\nfoo {3+}\r\nbar\r\n", DM_ACCEPT, 0, 0, "Ca|LOGIN|{3:foo} {3:bar};"},
		{"a LOGIN {3}\r\nb NOOP\r\n", DM_REFUSE, 0, 0, "+;Cb|NOOP|;"},
		{"a APPEND x ~{4+}\r\n\0\r\n\x01\r\n", DM_ACCEPT, 0, 0, "Ca|APPEND|x ~{4:\0\r\n\x01};"},
		{"a LOGIN {0}\r\n {0+}\r\n\r\n", DM_ACCEPT, 0, 0, "+;Ca|LOGIN|{0:} {0:};"},
		/* literal octets are not scanned for CRLF or announcements */
		{"a X {5}\r\n{1}\r\n\r\n", DM_ACCEPT, 0, 0, "+;Ca|X|{5:{1}\r\n};"},
		/* limits: a long line, reported once after its LF, tag kept */
		{"t1 NOOP aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nt2 NOOP\r\n", DM_ACCEPT, 16, 0,
		 "Bt1|Line too long;Ct2|NOOP|;"},
		{"t1 APPEND x {100}\r\nt2 NOOP\r\n", DM_ACCEPT, 0, 10,
		 "Bt1|Literal too big TOOBIG;Ct2|NOOP|;"},
		{"t1 APPEND x {100+}\r\nxxxx", DM_ACCEPT, 0, 10, "FLiteral too big;"},
		{"t1 APPEND x {99999999999999999999999}\r\nt2 NOOP\r\n", DM_ACCEPT, 0, 10,
		 "Bt1|Literal too big TOOBIG;Ct2|NOOP|;"},
		/* events: sync literal: LITERAL, then (inline) CONTINUE */
		{"a LOGIN {3}\r\nfoo {3+}\r\nbar\r\n", DM_EVENTS_INLINE, 0, 0,
		 "L3;+;L3+;Ca|LOGIN|{3:foo} {3:bar};"},
		{"a APPEND x {3}\r\nfoo (\\Seen) {3+}\r\nbar\r\n", DM_EVENTS_EXTERNAL, 0, 0,
		 "L3;L3+;Ca|APPEND|x {3:X} (\\Seen) {3:X};"},
		{"a APPEND x {100}\r\nb NOOP\r\n", DM_EVENTS_INLINE, 0, 10,
		 "L100;Ba|Literal too big TOOBIG;Cb|NOOP|;"},
		{"a APPEND x {100}\r\n", DM_EVENTS_EXTERNAL, 0, 10, "L100;"},
		/* errors of the argument tree */
		{"\r\n", DM_ACCEPT, 0, 0, "E-|Empty command;"},
		{"abc\r\n", DM_ACCEPT, 0, 0, "Eabc|Missing command;"},
		{"a+ NOOP\r\n", DM_ACCEPT, 0, 0, "E-|Invalid tag;"},
		{"a UID\r\n", DM_ACCEPT, 0, 0, "Ea|Missing UID command;"},
		{"a SELECT \"x\r\n", DM_ACCEPT, 0, 0, "Ea|Missing '\"';"},
		{"a SELECT \"x\\n\"\r\n", DM_ACCEPT, 0, 0, "Ea|Invalid escape in quoted string;"},
		{"a SELECT \"x {3}\r\nabc\"\r\n", DM_ACCEPT, 0, 0,
		 "+;Ea|Literal inside a quoted string;"},
		{"a FETCH 1 (FLAGS\r\n", DM_ACCEPT, 0, 0, "Ea|Missing ')';"},
		{"a FETCH 1 FLAGS)\r\n", DM_ACCEPT, 0, 0, "Ea|Unexpected ')';"},
		{"a FETCH 1 (a)(b)\r\n", DM_ACCEPT, 0, 0, "Ea|Missing space between arguments;"},
		{"a LOGIN {3}x\r\n", DM_ACCEPT, 0, 0, "Ea|Invalid literal;"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct imap_reader lim;
		imap_reader_init(&lim);
		if (cases[i].max_line)
			lim.max_line = cases[i].max_line;
		if (cases[i].max_literal)
			lim.max_literal = cases[i].max_literal;
		/* the literal case with NULs: its length is explicit */
		size_t n = strlen(cases[i].in);
		if (strstr(cases[i].in, "~{4+}") != NULL)
			n = strlen("a APPEND x ~{4+}\r\n") + 4 + 2;
		struct buf whole = BUF_INIT, bytes = BUF_INIT, want = BUF_INIT;
		drive(cases[i].in, n, 0, cases[i].mode, &lim, &whole);
		drive(cases[i].in, n, 1, cases[i].mode, &lim, &bytes);
		const char *w = cases[i].want;
		size_t wn = strlen(w);
		if (strstr(w, "~{4:") != NULL)
			wn = strlen("Ca|APPEND|x ~{4:") + 4 + 2;
		buf_append(&want, w, wn);
		if (whole.len != want.len || memcmp(whole.data, want.data, want.len) != 0)
			CHECK_STR((int)i, whole.data, want.data);
		if (bytes.len != want.len || memcmp(bytes.data, want.data, want.len) != 0)
			CHECK_STR((int)i, bytes.data, want.data);
		buf_free(&whole);
		buf_free(&bytes);
		buf_free(&want);
		imap_reader_free(&lim);
	}
}

/* One command line (no literals) through the reader and the parser. */
static int parse_line(const char *line, struct imap_args *a, const char **err)
{
	struct imap_reader r;
	struct buf in = BUF_INIT;
	imap_reader_init(&r);
	buf_appends(&in, line);
	buf_appends(&in, "\r\n");
	enum imap_read_result res = imap_reader_feed(&r, &in);
	int ret = -2;
	if (res == IMAP_READ_COMMAND)
		ret = imap_parse_command(&r, a, err);
	imap_reader_free(&r);
	buf_free(&in);
	return ret;
}

static void test_args(void)
{
	static const struct {
		const char *line;
		const char *want; /* rendered "tag|NAME|args", or "E<err>" */
	} cases[] = {
		{"a fetch 1 body.peek[header.fields (From To)]<0.100>",
		 "a|FETCH|1 body.peek[header.fields (From To)]<0.100>"},
		{"a FETCH 1:* (FLAGS BODY[1.2.MIME] BODY[])", "a|FETCH|1:* (FLAGS BODY[1.2.MIME] BODY[])"},
		{"a LIST \"\" ~foo", "a|LIST|\"\" ~foo"},
		{"a SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}", "a|SELECT|!#$&'+,-.0123456789:;<=>?@^_`|[}"},
		{"a LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*",
		 "a|LIST|\"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*"},
		{"a STORE 1 +FLAGS NIL", "a|STORE|1 +FLAGS NIL"},
		{"a SEARCH nil", "a|SEARCH|NIL"},
		{"a SELECT \"a\\\\b\\\"c\"", "a|SELECT|\"a\\b\"c\""},
		{"a SELECT \"Entw\xc3\xbcrfe\"", "a|SELECT|\"Entw\xc3\xbcrfe\""},
		{"a SELECT \"x\xc3\"", "EInvalid 8-bit character in quoted string"},
		{"a SELECT \"x\x01\"", "a|SELECT|\"x\x01\""},
		{"a SELECT x\xc3\xbc", "EInvalid character in atom"},
		{"a NOOP ((((((((((((((((x))))))))))))))))", "a|NOOP|((((((((((((((((x))))))))))))))))"},
		{"a NOOP (((((((((((((((((x)))))))))))))))))", "EToo deep nesting of lists"},
		{"a NOOP ()", "a|NOOP|()"},
		{"a NOOP (a \"b\" (c) NIL)", "a|NOOP|(a \"b\" (c) NIL)"},
		{"* NOOP", "EInvalid tag"},
		{"a\"b NOOP", "EInvalid tag"},
		{"a] NOOP", "a]|NOOP|"},
		{"a NOOP x\"y", "EInvalid character in atom"},
		{"a uid  fetch 1 uid", "EMissing command"},
		{"a uid fetch 1 uid", "a|UID FETCH|1 uid"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct imap_args a;
		const char *err = NULL;
		struct buf out = BUF_INIT;
		int r = parse_line(cases[i].line, &a, &err);
		if (r == 0) {
			buf_printf(&out, "%s|%s|", a.tag, a.name);
			render_args(a.args, &out);
		} else {
			buf_printf(&out, "E%s", err ? err : "?");
		}
		CHECK_STR((int)i, out.data, cases[i].want);
		imap_args_free(&a);
		buf_free(&out);
	}
}

static void test_values(void)
{
	struct imap_args a;
	const char *err, *s;
	size_t n;
	uint32_t u;
	uint64_t u64;

	CHECK(parse_line("a LOGIN user \"pass word\" NIL 42 4294967296 x]y x%y \"\"", &a, &err) == 0);
	const struct imap_arg *v = a.args;
	CHECK(imap_arg_astring(&v[0], &s, &n) && n == 4 && strcmp(s, "user") == 0);
	CHECK(imap_arg_astring(&v[1], &s, &n) && n == 9 && strcmp(s, "pass word") == 0);
	CHECK(imap_arg_string(&v[1], &s, &n));
	CHECK(!imap_arg_string(&v[0], &s, &n));
	CHECK(imap_arg_astring(&v[2], &s, &n) && strcmp(s, "NIL") == 0);
	CHECK(imap_arg_atom_is(&v[2], "NIL"));
	CHECK(imap_arg_number(&v[3], &u) && u == 42);
	CHECK(!imap_arg_number(&v[4], &u));
	CHECK(imap_arg_number64(&v[4], &u64) && u64 == 4294967296ull);
	CHECK(imap_arg_astring(&v[5], &s, &n));
	CHECK(!imap_arg_astring(&v[6], &s, &n)); /* list-wildcards are not ASTRING-CHARs */
	CHECK(imap_arg_astring(&v[7], &s, &n) && n == 0);
	CHECK(imap_arg_atom_is(&v[0], "USER"));
	CHECK(!imap_arg_atom_is(&v[1], "PASS WORD"));
	CHECK(v[8].type == IMAP_ARG_EOL);
	imap_args_free(&a);

	static const struct {
		const char *in;
		const char *astring, *string;
	} out[] = {
		{"INBOX", "INBOX", "\"INBOX\""},
		{"", "\"\"", "\"\""},
		{"NIL", "\"NIL\"", "\"NIL\""},
		{"a b", "\"a b\"", "\"a b\""},
		{"a\"\\", "\"a\\\"\\\\\"", "\"a\\\"\\\\\""},
		{"x]", "x]", "\"x]\""},
		{"a%", "\"a%\"", "\"a%\""},
		{"\xc3\xbc", "{2}\r\n\xc3\xbc", "{2}\r\n\xc3\xbc"},
		{"a\r\nb", "{4}\r\na\r\nb", "{4}\r\na\r\nb"},
	};
	for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
		struct buf b1 = BUF_INIT, b2 = BUF_INIT;
		imap_append_astring(&b1, out[i].in, strlen(out[i].in));
		imap_append_string(&b2, out[i].in, strlen(out[i].in));
		CHECK_STR((int)i, b1.data, out[i].astring);
		CHECK_STR((int)i, b2.data, out[i].string);
		buf_free(&b1);
		buf_free(&b2);
	}
	struct buf b = BUF_INIT;
	imap_append_nstring(&b, NULL, 0);
	CHECK_STR(0, b.data, "NIL");
	buf_free(&b);
}

int main(void)
{
	test_run("framing", test_framing);
	test_run("args", test_args);
	test_run("values", test_values);
	return test_done("test_imap_parse");
}
