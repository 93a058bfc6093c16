/* Unit tests for the IMAP command parser (src/imap/parse*.c): framing of
 * lines and literals (fed whole and one octet at a time, which must give the
 * same events), limits, the argument tree, and every typed helper. */
#include <stdlib.h>

#include "../test.h"
#include "../imap_fixture.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "imap/parse.h"
#include "mime/mime.h"

/* ---- framing ---- */

enum drive_mode { DM_ACCEPT, DM_REFUSE, DM_EVENTS_INLINE, DM_EVENTS_EXTERNAL, DM_EVENTS_REFUSE };

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
	r.want_literal_events = mode >= DM_EVENTS_INLINE;
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
				} else if (mode == DM_EVENTS_REFUSE) {
					imap_reader_refuse(&r);
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

/* Which limit a long line hits does not depend on how it was split (fuzz):
 * the command limit binds here, whole or octet by octet. */
static void test_framing_limits(void)
{
	static const char in[] =
	    "a X {5}\r\n12345 yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\nb NOOP\r\n";
	struct imap_reader lim;
	imap_reader_init(&lim);
	lim.max_line = 40;
	lim.max_command = 30;
	for (size_t step = 0; step <= 7; step++) {
		struct buf out = BUF_INIT;
		drive(in, sizeof in - 1, step, DM_ACCEPT, &lim, &out);
		CHECK_STR((int)step, out.data, "+;Ba|Command too long;Cb|NOOP|;");
		buf_free(&out);
	}
	imap_reader_free(&lim);
}

/* Streamed literals (APPEND's messages) are not limited in number, only by
 * the command's length; inline ones are (IMAP_MAX_LITERALS): a {N} past it
 * is BAD, a {N+} FATAL. */
static void test_many_literals(void)
{
	struct buf in = BUF_INIT, want = BUF_INIT, out = BUF_INIT;
	size_t i;

	buf_appends(&in, "a APPEND box");
	for (i = 0; i < 300; i++)
		buf_appends(&in, " {1+}\r\nx");
	buf_appends(&in, "\r\n");
	for (i = 0; i < 300; i++)
		buf_appends(&want, "L1+;");
	buf_appends(&want, "Ca|APPEND|box");
	for (i = 0; i < 300; i++)
		buf_appends(&want, " {1:X}");
	buf_appends(&want, ";");
	drive(in.data, in.len, 0, DM_EVENTS_EXTERNAL, NULL, &out);
	CHECK_STR(0, out.data, want.data);
	buf_reset(&out);
	drive(in.data, in.len, 7, DM_EVENTS_EXTERNAL, NULL, &out);
	CHECK_STR(1, out.data, want.data);

	/* inline: the 65th {1+} is fatal, the 65th {1} refused with BAD */
	buf_reset(&out);
	buf_reset(&want);
	drive(in.data, in.len, 0, DM_ACCEPT, NULL, &out);
	CHECK_STR(2, out.data, "FToo many literals in command;");
	buf_reset(&in);
	buf_appends(&in, "b X");
	for (i = 0; i < 65; i++)
		buf_appends(&in, " {1}\r\ny");
	buf_appends(&in, "\r\nc NOOP\r\n");
	buf_reset(&out);
	drive(in.data, in.len, 0, DM_ACCEPT, NULL, &out);
	for (i = 0; i < 64; i++)
		buf_appends(&want, "+;");
	buf_appends(&want, "Bb|Too many literals in command;");
	CHECK(out.len > want.len && memcmp(out.data, want.data, want.len) == 0);
	buf_free(&in);
	buf_free(&want);
	buf_free(&out);
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
	    {"a LOGIN {3}\r\nfoo {3}\r\nbar\r\n", DM_ACCEPT, 0, 0, "+;+;Ca|LOGIN|{3:foo} {3:bar};"},
	    {"a LOGIN {3+}\r\nfoo {3+}\r\nbar\r\n", DM_ACCEPT, 0, 0, "Ca|LOGIN|{3:foo} {3:bar};"},
	    {"a LOGIN {3}\r\nb NOOP\r\n", DM_REFUSE, 0, 0, "+;Cb|NOOP|;"},
	    {"a APPEND x ~{4+}\r\n\0\r\n\x01\r\n", DM_ACCEPT, 0, 0, "Ca|APPEND|x ~{4:\0\r\n\x01};"},
	    {"a LOGIN {0}\r\n {0+}\r\n\r\n", DM_ACCEPT, 0, 0, "+;Ca|LOGIN|{0:} {0:};"},
	    /* literal octets are not scanned for CRLF or announcements */
	    {"a X {5}\r\n{1}\r\n\r\n", DM_ACCEPT, 0, 0, "+;Ca|X|{5:{1}\r\n};"},
	    /* limits: a long line, reported once after its LF, tag kept */
	    {"t1 NOOP aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nt2 NOOP\r\n", DM_ACCEPT, 16, 0,
	     "Bt1|Line too long;Ct2|NOOP|;"},
	    /* an over-long line ending in {N+}: its octets are skipped too */
	    {"t1 NOOP aaaaaaaaaaaaaaaaaaaa {3+}\r\nx\r\n t {2+}\r\n\r\n\r\nt2 NOOP\r\n", DM_ACCEPT,
	     16, 0, "Bt1|Line too long;Ct2|NOOP|;"},
	    {"t1 NOOP aaaaaaaaaaaaaaaaaaaa {0+}\r\n rest\r\nt2 NOOP\r\n", DM_ACCEPT, 16, 0,
	     "Bt1|Line too long;Ct2|NOOP|;"},
	    {"t1 NOOP aaaaaaaaaaaaaaaaaaaa {3}\r\nt2 NOOP\r\n", DM_ACCEPT, 16, 0,
	     "Bt1|Line too long;Ct2|NOOP|;"},
	    {"t1 NOOP aaaaaaaaaaaaaaaaaaaa {30+}\r\n", DM_ACCEPT, 16, 10, "FLine too long;"},
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
	    /* refused at the event: a {N} drops the command, a {N+} is fatal */
	    {"a APPEND x {100}\r\nb NOOP\r\n", DM_EVENTS_REFUSE, 0, 0, "L100;Cb|NOOP|;"},
	    {"a APPEND x {100+}\r\nb NOOP\r\n", DM_EVENTS_REFUSE, 0, 0, "L100+;FLiteral refused;"},
	    {"a APPEND x {100+}\r\n", DM_EVENTS_INLINE, 0, 10, "L100+;FLiteral too big;"},
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

static void test_args(void)
{
	static const struct {
		const char *line;
		const char *want; /* rendered "tag|NAME|args", or "E<err>" */
	} cases[] = {
	    {"a fetch 1 body.peek[header.fields (From To)]<0.100>",
	     "a|FETCH|1 body.peek[header.fields (From To)]<0.100>"},
	    {"a FETCH 1:* (FLAGS BODY[1.2.MIME] BODY[])",
	     "a|FETCH|1:* (FLAGS BODY[1.2.MIME] BODY[])"},
	    {"a LIST \"\" ~foo", "a|LIST|\"\" ~foo"},
	    {"a SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}",
	     "a|SELECT|!#$&'+,-.0123456789:;<=>?@^_`|[}"},
	    {"a LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*",
	     "a|LIST|\"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*"},
	    {"a STORE 1 +FLAGS NIL", "a|STORE|1 +FLAGS NIL"},
	    {"a SEARCH nil", "a|SEARCH|NIL"},
	    {"a SELECT \"a\\\\b\\\"c\"", "a|SELECT|\"a\\b\"c\""},
	    {"a SELECT \"Entw\xc3\xbcrfe\"", "a|SELECT|\"Entw\xc3\xbcrfe\""},
	    {"a SELECT \"x\xc3\"", "EInvalid 8-bit character in quoted string"},
	    {"a SELECT \"x\x01\"", "a|SELECT|\"x\x01\""},
	    {"a SELECT x\xc3\xbc", "EInvalid character in atom"},
	    {"a NOOP ((((((((((((((((x))))))))))))))))",
	     "a|NOOP|((((((((((((((((x))))))))))))))))"},
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

	CHECK(parse_line("a LOGIN user \"pass word\" NIL 42 4294967296 x]y x%y \"\"", &a, &err) ==
	      0);
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

static void set_render(const struct imap_seqset *set, struct buf *out)
{
	if (set->dollar)
		buf_appendc(out, '$');
	for (size_t i = 0; i < set->n; i++) {
		if (i > 0)
			buf_appendc(out, ',');
		if (set->v[i].hi == IMAP_STAR && set->v[i].lo == IMAP_STAR)
			buf_appends(out, "*");
		else if (set->v[i].hi == IMAP_STAR)
			buf_printf(out, "%u:*", set->v[i].lo);
		else if (set->v[i].lo == set->v[i].hi)
			buf_printf(out, "%u", set->v[i].lo);
		else
			buf_printf(out, "%u:%u", set->v[i].lo, set->v[i].hi);
	}
}

static void test_seqset(void)
{
	static const struct {
		const char *in;
		size_t max;
		int ret;
		const char *parsed;
		uint32_t resolve_max;
		const char *resolved;
	} cases[] = {
	    {"1:3,5,7:*", 0, 0, "1:3,5,7:*", 10, "1:3,5,7:10"},
	    {"5:*", 0, 0, "5:*", 3, "3:5"}, /* RFC 9051 6.4.8 */
	    {"*:5", 0, 0, "5:*", 3, "3:5"},
	    {"*", 0, 0, "*", 7, "7"},
	    {"*", 0, 0, "*", 0, ""},
	    {"1:*", 0, 0, "1:*", 0, ""},
	    {"1,2:*", 0, 0, "1:*", 0, ""},
	    {"3,1,2", 0, 0, "1:3", 5, "1:3"},
	    {"10:1,20", 0, 0, "1:10,20", 30, "1:10,20"},
	    {"1,1,1", 0, 0, "1", 1, "1"},
	    {"$", 0, 0, "$", 5, "$"},
	    {"4294967295", 0, 0, "4294967294", 1, "4294967294"},
	    {"4294967296", 0, -1, NULL, 0, NULL},
	    {"0", 0, -1, NULL, 0, NULL},
	    {"1:0", 0, -1, NULL, 0, NULL},
	    {"01", 0, -1, NULL, 0, NULL},
	    {"", 0, -1, NULL, 0, NULL},
	    {"1,", 0, -1, NULL, 0, NULL},
	    {",1", 0, -1, NULL, 0, NULL},
	    {"1::2", 0, -1, NULL, 0, NULL},
	    {"1:2:3", 0, -1, NULL, 0, NULL},
	    {"$,1", 0, -1, NULL, 0, NULL},
	    {"a", 0, -1, NULL, 0, NULL},
	    {"-1", 0, -1, NULL, 0, NULL},
	    {"1,2,3", 2, -1, NULL, 0, NULL},
	    {"1,2", 2, 0, "1:2", 2, "1:2"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct imap_seqset set;
		int r = imap_seqset_parse(cases[i].in, strlen(cases[i].in), cases[i].max, &set);
		CHECK_INT((int)i, r, cases[i].ret);
		if (r == 0) {
			struct buf b = BUF_INIT;
			set_render(&set, &b);
			CHECK_STR((int)i, b.data ? b.data : "", cases[i].parsed);
			buf_reset(&b);
			imap_seqset_resolve(&set, cases[i].resolve_max);
			set_render(&set, &b);
			CHECK_STR((int)i, b.data ? b.data : "", cases[i].resolved);
			buf_free(&b);
		}
		imap_seqset_free(&set);
	}
	struct imap_seqset set;
	CHECK(imap_seqset_parse("2:4,8,10:*", 10, 0, &set) == 0);
	CHECK(!imap_seqset_contains(&set, 1) && imap_seqset_contains(&set, 2) &&
	      imap_seqset_contains(&set, 4) && !imap_seqset_contains(&set, 5) &&
	      imap_seqset_contains(&set, 8) && !imap_seqset_contains(&set, 9) &&
	      imap_seqset_contains(&set, 1000000));
	imap_seqset_resolve(&set, 12);
	CHECK(imap_seqset_contains(&set, 12) && !imap_seqset_contains(&set, 13));
	imap_seqset_free(&set);

	static const struct {
		uint32_t v[8];
		size_t n;
		const char *want;
	} fmt[] = {
	    {{1, 2, 3, 5}, 4, "1:3,5"},
	    {{7}, 1, "7"},
	    {{0}, 0, ""},
	    {{1, 3, 5, 6, 7, 4294967295u}, 6, "1,3,5:7,4294967295"},
	};
	for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
		struct buf b = BUF_INIT;
		imap_seqset_format(&b, fmt[i].v, fmt[i].n);
		CHECK_STR((int)i, b.data ? b.data : "", fmt[i].want);
		buf_free(&b);
	}
}

static void test_flags(void)
{
	static const struct {
		const char *args; /* after "a STORE 1 FLAGS " */
		bool list_form;   /* through imap_parse_flags on args[0] */
		int ret;
		unsigned sys;
		const char *kw;
	} cases[] = {
	    {"(\\Seen \\ANSWERED \\flagged \\Deleted \\draft)", true, 0, 31, ""},
	    {"(\\Seen $Forwarded foo $Forwarded FOO)", true, 0, IMAP_F_SEEN, "$Forwarded foo"},
	    {"()", true, 0, 0, ""},
	    {"\\Seen", true, 0, IMAP_F_SEEN, ""},
	    {"NIL", true, 0, 0, "NIL"},
	    {"(\\Recent)", true, -1, 0, ""},
	    {"(\\Foo)", true, -1, 0, ""},
	    {"(\\*)", true, -1, 0, ""},
	    {"(\"quoted\")", true, -1, 0, ""},
	    {"(a]b)", true, -1, 0, ""},
	    {"((\\Seen))", true, -1, 0, ""},
	    {"\\Seen \\Deleted kw", false, 0, IMAP_F_SEEN | IMAP_F_DELETED, "kw"},
	    {"(\\Seen) \\Deleted", false, -1, 0, ""},
	    {"(\\Seen \\Deleted)", false, 0, IMAP_F_SEEN | IMAP_F_DELETED, ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[256];
		struct imap_args a;
		const char *err;
		snprintf(line, sizeof line, "a STORE 1 FLAGS %s", cases[i].args);
		CHECK_INT((int)i, parse_line(line, &a, &err), 0);
		struct buf kw = BUF_INIT;
		unsigned sys = 99;
		int r = cases[i].list_form ? imap_parse_flags(&a.args[2], &sys, &kw)
		                           : imap_parse_flag_args(&a.args[2], &sys, &kw);
		CHECK_INT((int)i, r, cases[i].ret);
		if (r == 0) {
			CHECK_INT((int)i, sys, cases[i].sys);
			CHECK_STR((int)i, kw.data ? kw.data : "", cases[i].kw);
		}
		buf_free(&kw);
		imap_args_free(&a);
	}
	CHECK(imap_flag_bit("\\recent", 7) == IMAP_F_RECENT);
	CHECK_STR(0, imap_flag_name(IMAP_F_ANSWERED), "\\Answered");
}

static void test_dates(void)
{
	static const struct {
		const char *in;
		bool ok;
		int32_t day;
	} dates[] = {
	    {"1-Feb-1994", true, 8797},     {"01-feb-1994", true, 8797},
	    {"\"1-Feb-1994\"", true, 8797}, {"1-Jan-1970", true, 0},
	    {"31-Dec-1969", true, -1},      {"29-Feb-2000", true, 11016},
	    {"29-Feb-1900", false, 0},      {"29-Feb-2001", false, 0},
	    {"31-Apr-2001", false, 0},      {"0-Jan-2001", false, 0},
	    {"001-Jan-2001", false, 0},     {"1-Foo-2001", false, 0},
	    {"1-Jan-01", false, 0},         {"1-Jan-20011", false, 0},
	    {" 1-Jan-2001", false, 0},      {"", false, 0},
	};
	for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++) {
		int32_t d = 12345;
		bool ok = imap_parse_date(dates[i].in, strlen(dates[i].in), &d);
		CHECK_INT((int)i, ok, dates[i].ok);
		if (ok)
			CHECK_INT((int)i, d, dates[i].day);
	}
	static const struct {
		const char *in;
		bool ok;
		long long t;
		int tz;
		const char *fmt;
	} dts[] = {
	    {"17-Jul-1996 02:44:25 -0700", true, 837596665, -420, "\"17-Jul-1996 02:44:25 -0700\""},
	    {"\" 7-Jul-1996 02:44:25 +0200\"", true, 836700265, 120,
	     "\"07-Jul-1996 02:44:25 +0200\""},
	    {"07-Jul-1996 02:44:25 +0000", true, 836707465, 0, "\"07-Jul-1996 02:44:25 +0000\""},
	    {"1-Jan-1970 00:00:00 +0100", true, -3600, 60, "\"01-Jan-1970 00:00:00 +0100\""},
	    {"17-Jul-1996 24:00:00 +0000", false, 0, 0, NULL},
	    {"17-Jul-1996 02:44 +0000", false, 0, 0, NULL},
	    {"17-Jul-1996 02:44:25 0000", false, 0, 0, NULL},
	    {"17-Jul-1996 02:44:25 +0060", false, 0, 0, NULL},
	    {"17-Jul-1996 02:44:25 -8700", false, 0, 0, NULL}, /* fuzz: zone hours */
	    {"17-Jul-1996 02:44:25 +00000", false, 0, 0, NULL},
	    {"17-Jul-1996", false, 0, 0, NULL},
	};
	for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
		time_t t = 0;
		int tz = 0;
		bool ok = imap_parse_datetime(dts[i].in, strlen(dts[i].in), &t, &tz);
		CHECK_INT((int)i, ok, dts[i].ok);
		if (!ok)
			continue;
		CHECK_INT((int)i, t, dts[i].t);
		CHECK_INT((int)i, tz, dts[i].tz);
		struct buf b = BUF_INIT;
		imap_format_datetime(&b, t, tz);
		CHECK_STR((int)i, b.data, dts[i].fmt);
		buf_free(&b);
	}
}

static void test_utf7(void)
{
	static const struct {
		const char *utf7;
		const char *utf8; /* NULL: invalid */
	} cases[] = {
	    {"INBOX", "INBOX"},
	    {"&-", "&"},
	    {"a&-b", "a&b"},
	    {"p&AOQA5A-", "p\xc3\xa4\xc3\xa4"},
	    {"~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	     "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
	    {"&2D3eAQ-", "\xf0\x9f\x98\x81"}, /* U+1F601 as a surrogate pair */
	    {"&AAE-", "\x01"},
	    {"&AGE-", NULL},      /* "a" must not be encoded */
	    {"&ACY-", NULL},      /* "&" is "&-" */
	    {"&AOQ-&AOQ-", NULL}, /* two adjacent shifts */
	    {"&AOQ", NULL},       /* unterminated */
	    {"&AOQA-", NULL},     /* 6 leftover bits */
	    {"&AOR-", NULL},      /* non-zero padding bits */
	    {"&AO-", NULL},       /* too short */
	    {"&A*Q-", NULL},      /* bad base64 */
	    {"&AOQ/AOQ-", NULL},  /* "/" is "," in modified BASE64 */
	    {"&2D0-", NULL},      /* lone high surrogate */
	    {"&3gE-", NULL},      /* lone low surrogate */
	    {"\xc3\xa4", NULL},   /* 8-bit is not modified UTF-7 */
	    {"a\tb", NULL},
	    {"&-&AOQ-", "&\xc3\xa4"},
	    {"&AOQ-&-", "\xc3\xa4&"},
	    {"", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf d = BUF_INIT, e = BUF_INIT;
		bool ok = imap_utf7_decode(cases[i].utf7, strlen(cases[i].utf7), &d);
		CHECK_INT((int)i, ok, cases[i].utf8 != NULL);
		if (ok && cases[i].utf8 != NULL) {
			CHECK_STR((int)i, d.data ? d.data : "", cases[i].utf8);
			CHECK(imap_utf7_encode(cases[i].utf8, strlen(cases[i].utf8), &e));
			CHECK_STR((int)i, e.data ? e.data : "", cases[i].utf7);
		}
		CHECK_INT((int)i, d.len, ok ? d.len : 0);
		buf_free(&d);
		buf_free(&e);
	}
	struct buf e = BUF_INIT;
	CHECK(!imap_utf7_encode("\xc3", 1, &e));
	CHECK(!imap_utf7_encode("\xed\xa0\x80", 3, &e)); /* a surrogate in UTF-8 */
	CHECK(!imap_utf7_encode("\xc0\x80", 2, &e));     /* overlong */
	CHECK(e.len == 0);
	buf_free(&e);
}

static void test_mailbox(void)
{
	static const struct {
		const char *in;
		const char *out; /* NULL: invalid */
	} cases[] = {
	    {"INBOX", "INBOX"},
	    {"inbox", "INBOX"},
	    {"iNbOx/sub", "INBOX/sub"},
	    {"inboxes", "inboxes"},
	    {"a/b/c", "a/b/c"},
	    {"Entw\xc3\xbcrfe", "Entw\xc3\xbcrfe"},
	    {"", NULL},
	    {"/a", NULL},
	    {"a/", NULL},
	    {"a//b", NULL},
	    {"a*", NULL},
	    {"a%b", NULL},
	    {"a\x01", NULL},
	    {"a\x7f", NULL},
	    {"a\xc2\x85", NULL},
	    {"a\xff", NULL},
	    {"a/b/c/d/e", NULL}, /* 5 levels over 4 */
	    {"0123456789012345678901234567890123456789", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "%s", cases[i].in);
		const char *err = imap_mailbox_check(name, 32, 4);
		CHECK_INT((int)i, err == NULL, cases[i].out != NULL);
		if (err == NULL && cases[i].out != NULL)
			CHECK_STR((int)i, name, cases[i].out);
	}
}

static void test_list_match(void)
{
	static const struct {
		const char *pattern, *name;
		bool match;
	} cases[] = {
	    {"*", "a/b/c", true},
	    {"%", "a/b/c", false},
	    {"%", "a", true},
	    {"a/%", "a/b", true},
	    {"a/%", "a/b/c", false},
	    {"a/*", "a/b/c", true},
	    {"a*", "a", true},
	    {"a*c", "a/b/c", true},
	    {"a%c", "a/b/c", false},
	    {"a%c", "abc", true},
	    {"%/%", "a/b", true},
	    {"%/%", "a/b/c", false},
	    {"*/%", "a/b/c", true},
	    {"inbox", "INBOX", true},
	    {"InBoX/%", "INBOX/x", true},
	    {"INBOX/X", "INBOX/x", false},
	    {"inb*", "INBOX", true},
	    {"inbox", "inboxes", false},
	    {"Inboxes", "inboxes", false},
	    {"", "a", false},
	    {"a**%%b", "axxb", true},
	    {"%*%", "a/b", true},
	    {"x", "a", false},
	    {"a", "a", true},
	    {"a", "ab", false},
	    {"ab", "a", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT((int)i, imap_list_match(cases[i].pattern, cases[i].name, '/'),
		          cases[i].match);
	/* a long name goes through the heap-allocated rows */
	char longname[600];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	longname[300] = '/';
	CHECK(imap_list_match("x*x", longname, '/'));
	CHECK(!imap_list_match("x%x", longname, '/'));
}

/* "a FETCH 1 <args>" through imap_fetch_parse: labels joined with ",", then
 * "|seen" when some item sets \Seen, "|cs=N" and "|v" for the modifiers. */
static void test_fetch(void)
{
	static const struct {
		const char *args;
		const char *want; /* NULL: error */
	} cases[] = {
	    {"ALL", "FLAGS,INTERNALDATE,RFC822.SIZE,ENVELOPE"},
	    {"fast", "FLAGS,INTERNALDATE,RFC822.SIZE"},
	    {"Full", "FLAGS,INTERNALDATE,RFC822.SIZE,ENVELOPE,BODY"},
	    {"(ALL)", NULL},
	    {"()", NULL},
	    {"", NULL},
	    {"flags", "FLAGS"},
	    {"(uid flags internaldate rfc822.size envelope body bodystructure modseq)",
	     "UID,FLAGS,INTERNALDATE,RFC822.SIZE,ENVELOPE,BODY,BODYSTRUCTURE,MODSEQ"},
	    {"rfc822", "RFC822|seen"},
	    {"rfc822.header", "RFC822.HEADER"},
	    {"rfc822.text", "RFC822.TEXT|seen"},
	    {"body[]", "BODY[]|seen"},
	    {"body.peek[]", "BODY[]"},
	    {"body.peek[header]", "BODY[HEADER]"},
	    {"body.peek[text]<0.3>", "BODY[TEXT]<0>"},
	    {"body.peek[text]<5.2>", "BODY[TEXT]<5>"},
	    {"body[1.2.3.mime]", "BODY[1.2.3.MIME]|seen"},
	    {"body.peek[1.1.header]", "BODY[1.1.HEADER]"},
	    {"body.peek[2.text]", "BODY[2.TEXT]"},
	    {"body.peek[1]", "BODY[1]"},
	    {"body.peek[header.fields (from subject X-foo)]",
	     "BODY[HEADER.FIELDS (FROM SUBJECT X-FOO)]"},
	    {"body.peek[1.header.fields.not (date \"x-y\")]<0.100>",
	     "BODY[1.HEADER.FIELDS.NOT (DATE X-Y)]<0>"},
	    {"(body.peek[header.fields (from from)])", "BODY[HEADER.FIELDS (FROM FROM)]"},
	    {"binary.peek[1]", "BINARY[1]"},
	    {"binary[2.1]<10.10>", "BINARY[2.1]<10>|seen"},
	    {"binary.peek[]", "BINARY[]"},
	    {"binary.size[1]", "BINARY.SIZE[1]"},
	    {"binary.size[]", "BINARY.SIZE[]"},
	    {"(binary.size[1] binary.peek[1])", "BINARY.SIZE[1],BINARY[1]"},
	    {"binary.size[1]<0.1>", NULL},
	    {"binary.peek[header]", NULL},
	    {"binary.peek[1.mime]", NULL},
	    {"body[mime]", NULL},
	    {"body[0]", NULL},
	    {"body[01]", NULL},
	    {"body[1.]", NULL},
	    {"body[.1]", NULL},
	    {"body[1..2]", NULL},
	    {"body[header.fields]", NULL},
	    {"body[header.fields ()]", NULL},
	    {"body[header.fields (a:b)]", NULL},
	    {"body[header.fields (a  b)]", NULL},
	    {"body[header.fields (a)x]", NULL},
	    {"body[text]<1>", NULL},
	    {"body[text]<1.0>", NULL},
	    {"body[text]<x.1>", NULL},
	    {"body[text]<1.2", NULL},
	    {"body[foo]", NULL},
	    {"body.peek", NULL},
	    {"foo", NULL},
	    {"\"flags\"", NULL},
	    {"(flags (uid))", NULL},
	    {"flags extra", NULL},
	    {"(flags) (changedsince 12345)", "FLAGS,MODSEQ|cs=12345"},
	    {"(flags modseq) (changedsince 0)", "FLAGS,MODSEQ|cs=0"},
	    {"(uid) (changedsince 5 vanished)", "UID,MODSEQ|cs=5|v"},
	    {"(uid) (vanished changedsince 5)", "UID,MODSEQ|cs=5|v"},
	    {"(uid) (vanished)", NULL},
	    {"(uid) (changedsince)", NULL},
	    {"(uid) (changedsince x)", NULL},
	    {"(uid) (changedsince 1 changedsince 2)", NULL},
	    {"(uid) ()", NULL},
	    {"(uid) (foo)", NULL},
	    {"body[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16]",
	     "BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16]|seen"},
	    {"body[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17]", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[512];
		struct imap_args a;
		const char *err = NULL;
		snprintf(line, sizeof line, "a FETCH 1 %s", cases[i].args);
		CHECK_INT((int)i, parse_line(line, &a, &err), 0);
		struct imap_fetch f;
		int r = imap_fetch_parse(&a.args[1], &f, &err);
		CHECK_INT((int)i, r, cases[i].want ? 0 : -1);
		if (r == 0 && cases[i].want != NULL) {
			struct buf b = BUF_INIT;
			for (size_t k = 0; k < f.n; k++)
				buf_printf(&b, "%s%s", k ? "," : "", f.v[k].label);
			if (f.sets_seen)
				buf_appends(&b, "|seen");
			if (f.has_changedsince)
				buf_printf(&b, "|cs=%llu", (unsigned long long)f.changedsince);
			if (f.vanished)
				buf_appends(&b, "|v");
			CHECK_STR((int)i, b.data, cases[i].want);
			buf_free(&b);
			imap_fetch_free(&f);
		} else if (r < 0) {
			CHECK(err != NULL);
		}
		imap_args_free(&a);
	}

	/* the fields of one item */
	struct imap_args a;
	const char *err;
	struct imap_fetch f;
	CHECK(parse_line("a FETCH 1 (body.peek[2.1.header.fields.not (to cc)]<7.9> envelope)", &a,
	                 &err) == 0);
	CHECK(imap_fetch_parse(&a.args[1], &f, &err) == 0);
	CHECK(f.n == 2 && f.v[0].kind == IMAP_FETCH_SECTION && f.v[0].peek && f.v[0].depth == 2 &&
	      f.v[0].path[0] == 2 && f.v[0].path[1] == 1 && f.v[0].what == MIME_SECT_HEADER &&
	      f.v[0].fields && f.v[0].fields_not && f.v[0].n_names == 2 &&
	      strcmp(f.v[0].names[0], "TO") == 0 && strcmp(f.v[0].names[1], "CC") == 0 &&
	      f.v[0].partial && f.v[0].p_off == 7 && f.v[0].p_len == 9);
	CHECK(f.v[1].kind == IMAP_FETCH_ENVELOPE && !f.sets_seen && f.need_blob && f.need_cache);
	imap_fetch_free(&f);
	imap_args_free(&a);
	CHECK(parse_line("a FETCH 1 (flags uid)", &a, &err) == 0);
	CHECK(imap_fetch_parse(&a.args[1], &f, &err) == 0);
	CHECK(!f.need_blob && !f.need_cache);
	imap_fetch_free(&f);
	imap_args_free(&a);
}

static void key_render(const struct imap_search_key *k, struct buf *out)
{
	static const char *const names[] = {
	    [IMAP_SK_ALL] = "ALL",       [IMAP_SK_AND] = "AND",
	    [IMAP_SK_OR] = "OR",         [IMAP_SK_NOT] = "NOT",
	    [IMAP_SK_SEQSET] = "SEQ",    [IMAP_SK_UIDSET] = "UID",
	    [IMAP_SK_FLAG] = "FLAG",     [IMAP_SK_UNFLAG] = "UNFLAG",
	    [IMAP_SK_KEYWORD] = "KW",    [IMAP_SK_UNKEYWORD] = "UNKW",
	    [IMAP_SK_NEW] = "NEW",       [IMAP_SK_OLD] = "OLD",
	    [IMAP_SK_BEFORE] = "BEFORE", [IMAP_SK_ON] = "ON",
	    [IMAP_SK_SINCE] = "SINCE",   [IMAP_SK_SENTBEFORE] = "SENTBEFORE",
	    [IMAP_SK_SENTON] = "SENTON", [IMAP_SK_SENTSINCE] = "SENTSINCE",
	    [IMAP_SK_LARGER] = "LARGER", [IMAP_SK_SMALLER] = "SMALLER",
	    [IMAP_SK_HEADER] = "HEADER", [IMAP_SK_BODY] = "BODY",
	    [IMAP_SK_TEXT] = "TEXT",     [IMAP_SK_MODSEQ] = "MODSEQ",
	    [IMAP_SK_OLDER] = "OLDER",   [IMAP_SK_YOUNGER] = "YOUNGER",
	};
	buf_appends(out, names[k->kind]);
	switch (k->kind) {
	case IMAP_SK_AND:
	case IMAP_SK_OR:
	case IMAP_SK_NOT:
		buf_appendc(out, '(');
		for (size_t i = 0; i < k->n_sub; i++) {
			if (i > 0)
				buf_appendc(out, ' ');
			key_render(&k->sub[i], out);
		}
		buf_appendc(out, ')');
		break;
	case IMAP_SK_SEQSET:
	case IMAP_SK_UIDSET:
		buf_appendc(out, ':');
		set_render(&k->set, out);
		break;
	case IMAP_SK_FLAG:
	case IMAP_SK_UNFLAG:
		buf_printf(out, ":%u", k->flags);
		break;
	case IMAP_SK_KEYWORD:
	case IMAP_SK_UNKEYWORD:
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		buf_printf(out, ":%s", k->str);
		break;
	case IMAP_SK_HEADER:
		buf_printf(out, ":%s%s:%s", k->flags & IMAP_SK_F_ADDRESS ? "@" : "", k->str2, k->str);
		break;
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		buf_printf(out, ":%d", (int)k->day);
		break;
	case IMAP_SK_LARGER:
	case IMAP_SK_SMALLER:
	case IMAP_SK_MODSEQ:
	case IMAP_SK_OLDER:
	case IMAP_SK_YOUNGER:
		buf_printf(out, ":%llu", (unsigned long long)k->num);
		break;
	default:
		break;
	}
}

static void test_search(void)
{
	static const struct {
		const char *args;
		const char *want; /* NULL: error; "!cs": bad charset */
	} cases[] = {
	    {"ALL", "AND(ALL)"},
	    {"all", "AND(ALL)"},
	    {"", NULL},
	    {"1:3,5 UID 10:*", "AND(SEQ:1:3,5 UID:10:*)"},
	    {"$", "AND(SEQ:$)"},
	    {"UID $", "AND(UID:$)"},
	    {"answered deleted draft flagged seen recent",
	     "AND(FLAG:2 FLAG:8 FLAG:16 FLAG:4 FLAG:1 FLAG:32)"},
	    {"unanswered undeleted undraft unflagged unseen new old",
	     "AND(UNFLAG:2 UNFLAG:8 UNFLAG:16 UNFLAG:4 UNFLAG:1 NEW OLD)"},
	    {"FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
	     "AND(FLAG:4 SINCE:8797 NOT(HEADER:@FROM:Smith))"},
	    {"before 1-Jan-1970 on \"2-jan-1970\" sentbefore 1-Jan-1970 senton 1-Jan-1970 "
	     "sentsince 1-Jan-1970",
	     "AND(BEFORE:0 ON:1 SENTBEFORE:0 SENTON:0 SENTSINCE:0)"},
	    {"before 1-Jan-70", NULL},
	    {"before", NULL},
	    {"from a to b cc c bcc d subject e",
	     "AND(HEADER:@FROM:a HEADER:@TO:b HEADER:@CC:c HEADER:@BCC:d HEADER:SUBJECT:e)"},
	    /* HEADER FROM: the raw field, not the address list */
	    {"header from a", "AND(HEADER:from:a)"},
	    {"subject NIL", "AND(HEADER:SUBJECT:NIL)"},
	    {"body nil text \"x y\"", "AND(BODY:nil TEXT:x y)"},
	    {"header x-foo \"\"", "AND(HEADER:x-foo:)"},
	    {"header \"\" x", NULL},
	    {"header a:b x", NULL},
	    {"header subject", NULL},
	    {"keyword $Forwarded unkeyword foo", "AND(KW:$Forwarded UNKW:foo)"},
	    {"keyword \\Seen", NULL},
	    {"keyword", NULL},
	    {"larger 100 smaller 4294967296", "AND(LARGER:100 SMALLER:4294967296)"},
	    {"larger x", NULL},
	    {"larger -1", NULL},
	    {"older 10 younger 20", "AND(OLDER:10 YOUNGER:20)"},
	    {"older 0", NULL},
	    {"OR seen flagged", "AND(OR(FLAG:1 FLAG:4))"},
	    {"OR OR seen flagged draft", "AND(OR(OR(FLAG:1 FLAG:4) FLAG:16))"},
	    {"OR seen", NULL},
	    {"NOT", NULL},
	    {"NOT NOT seen", "AND(NOT(NOT(FLAG:1)))"},
	    {"(seen flagged) (deleted)", "AND(AND(FLAG:1 FLAG:4) AND(FLAG:8))"},
	    {"()", NULL},
	    {"OR (seen flagged) NOT (1:2)", "AND(OR(AND(FLAG:1 FLAG:4) NOT(AND(SEQ:1:2))))"},
	    {"modseq 5", "AND(MODSEQ:5)"},
	    {"modseq \"/flags/\\\\draft\" all 620162338", "AND(MODSEQ:620162338)"},
	    {"modseq \"/flags/$x\" priv 0", "AND(MODSEQ:0)"},
	    {"modseq \"/foo/x\" all 1", NULL},
	    {"modseq \"/flags/x\" bogus 1", NULL},
	    {"modseq x", NULL},
	    {"foo", NULL},
	    {"0", NULL},
	    {"1:x", NULL},
	    {"\"seen\"", NULL},
	    {"uid", NULL},
	    {"uid foo", NULL},
	    {"CHARSET UTF-8 TEXT \"\xc3\xa4\"", "AND(TEXT:\xc3\xa4)|UTF-8"},
	    {"charset us-ascii all", "AND(ALL)|us-ascii"},
	    {"CHARSET ISO-8859-1 TEXT x", "!cs"},
	    {"CHARSET", NULL},
	    {"CHARSET UTF-8", NULL},
	    {"RETURN (MIN MAX) ALL", "AND(ALL)|esearch min max"},
	    {"RETURN () ALL", "AND(ALL)|esearch all"},
	    {"RETURN (count save all) CHARSET UTF-8 1:*",
	     "AND(SEQ:1:*)|UTF-8|esearch all count save"},
	    {"RETURN (partial 1:*) all", NULL},
	    {"RETURN (partial 1) all", NULL},
	    {"RETURN ALL", NULL},
	    {"RETURN (MIN)", NULL},
	    {"ALL RETURN (MIN)", NULL},
	    {"ALL CHARSET UTF-8", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[512];
		struct imap_args a;
		const char *err = NULL;
		bool badcs = false;
		snprintf(line, sizeof line, "a SEARCH %s", cases[i].args);
		if (parse_line(line, &a, &err) != 0) {
			CHECK_INT((int)i, -1, 0);
			continue;
		}
		struct imap_search sr;
		int r = imap_search_parse(a.args, 100, &sr, &badcs, &err);
		const char *want = cases[i].want;
		bool want_cs = want != NULL && strcmp(want, "!cs") == 0;
		CHECK_INT((int)i, r, want != NULL && !want_cs ? 0 : -1);
		CHECK_INT((int)i, badcs, want_cs);
		if (r == 0) {
			struct buf b = BUF_INIT;
			key_render(&sr.root, &b);
			if (sr.charset)
				buf_printf(&b, "|%s", sr.charset);
			if (sr.esearch)
				buf_printf(&b, "|esearch%s%s%s%s%s", sr.ret_min ? " min" : "",
				           sr.ret_max ? " max" : "", sr.ret_all ? " all" : "",
				           sr.ret_count ? " count" : "",
				           sr.ret_save ? " save" : "");
			CHECK_STR((int)i, b.data, want);
			buf_free(&b);
			imap_search_free(&sr);
		} else {
			CHECK(err != NULL);
		}
		imap_args_free(&a);
	}

	/* a literal string that is not UTF-8 */
	struct imap_arg lit[3] = {
	    {.type = IMAP_ARG_ATOM, .str = "TEXT", .len = 4},
	    {.type = IMAP_ARG_LITERAL, .str = "\xc3", .len = 1},
	    {.type = IMAP_ARG_EOL, .str = ""},
	};
	{
		const char *e;
		bool bc;
		struct imap_search s2;
		CHECK(imap_search_parse(lit, 10, &s2, &bc, &e) == -1 && !bc);
		lit[1].str = "\xc3\xa4";
		lit[1].len = 2;
		CHECK(imap_search_parse(lit, 10, &s2, &bc, &e) == 0);
		imap_search_free(&s2);
	}

	/* limits: keys and OR/NOT depth */
	struct buf line = BUF_INIT;
	struct imap_args a;
	const char *err;
	bool badcs;
	struct imap_search sr;
	buf_appends(&line, "a SEARCH");
	for (int i = 0; i < 10; i++)
		buf_appends(&line, " SEEN");
	CHECK(parse_line(line.data, &a, &err) == 0);
	CHECK(imap_search_parse(a.args, 9, &sr, &badcs, &err) == -1);
	CHECK(imap_search_parse(a.args, 10, &sr, &badcs, &err) == 0);
	imap_search_free(&sr);
	imap_args_free(&a);
	buf_reset(&line);
	buf_appends(&line, "a SEARCH");
	for (int i = 0; i < IMAP_SEARCH_MAX_DEPTH + 1; i++)
		buf_appends(&line, " NOT");
	buf_appends(&line, " SEEN");
	CHECK(parse_line(line.data, &a, &err) == 0);
	CHECK(imap_search_parse(a.args, 10000, &sr, &badcs, &err) == -1);
	imap_args_free(&a);
	buf_free(&line);
}

/* Every command line of imaptest's scripted tests (tests/imaptest/tests,
 * the commands real servers are checked with) parses, and the FETCH,
 * SEARCH and STORE ones of "ok" lines parse as their typed values too.
 * Variables ($mailbox, $uid...) become "1"; "$$" is "$"; lines with
 * literal blocks ({{{) are left out. */
static void check_imaptest_line(const char *file, const char *expect, const char *cmd)
{
	struct imap_args a;
	const char *err = NULL;
	static char line[65536];
	snprintf(line, sizeof line, "t %s", cmd);
	if (parse_line(line, &a, &err) != 0) {
		printf("  imaptest %s: %s: %s\n", file, cmd, err);
		CHECK(strcmp(expect, "ok") != 0);
		imap_args_free(&a);
		return;
	}
	if (strcmp(expect, "ok") != 0) {
		imap_args_free(&a);
		return;
	}
	const struct imap_arg *args = a.args;
	const char *name = a.name;
	bool uid = strncmp(name, "UID ", 4) == 0;
	if (uid)
		name += 4;
	if (strcmp(name, "FETCH") == 0 || strcmp(name, "STORE") == 0) {
		struct imap_seqset set;
		int r = args[0].type == IMAP_ARG_ATOM
		            ? imap_seqset_parse(args[0].str, args[0].len, 0, &set)
		            : -1;
		if (r != 0)
			printf("  imaptest %s: %s: bad set\n", file, cmd);
		CHECK(r == 0);
		imap_seqset_free(&set);
		if (strcmp(name, "FETCH") == 0) {
			struct imap_fetch f;
			r = imap_fetch_parse(&args[1], &f, &err);
			if (r != 0)
				printf("  imaptest %s: %s: %s\n", file, cmd, err);
			CHECK(r == 0);
			if (r == 0)
				imap_fetch_free(&f);
		} else {
			unsigned sys;
			struct buf kw = BUF_INIT;
			/* STORE set item [modifiers] flags */
			const struct imap_arg *fl = &args[2];
			if (args[1].type == IMAP_ARG_LIST)
				fl = &args[3];
			r = imap_parse_flag_args(fl, &sys, &kw);
			if (r != 0)
				printf("  imaptest %s: %s: bad flags\n", file, cmd);
			CHECK(r == 0);
			buf_free(&kw);
		}
	} else if (strcmp(name, "SEARCH") == 0) {
		struct imap_search sr;
		bool bc;
		int r = imap_search_parse(args, 1000, &sr, &bc, &err);
		if (r != 0)
			printf("  imaptest %s: %s: %s\n", file, cmd, err);
		CHECK(r == 0);
		if (r == 0)
			imap_search_free(&sr);
	}
	imap_args_free(&a);
}

static void test_imaptest_commands(void)
{
	/* every file but the extensions of a later issue (CONTEXT=SEARCH,
	 * PARTIAL, SORT, THREAD, NOTIFY, URLAUTH) */
	static const char *const files[] = {
	    "append",
	    "append-binary",
	    "atoms",
	    "catenate",
	    "catenate-multiappend",
	    "close",
	    "copy",
	    "esearch",
	    "esearch-condstore",
	    "expunge",
	    "expunge2",
	    "fetch",
	    "fetch-binary-mime",
	    "fetch-binary-mime-base64",
	    "fetch-binary-mime-qp",
	    "fetch-body",
	    "fetch-body-message-rfc822",
	    "fetch-body-message-rfc822-mime",
	    "fetch-body-message-rfc822-x2",
	    "fetch-body-mime",
	    "fetch-bodystructure",
	    "fetch-envelope",
	    "id",
	    "list",
	    "listext",
	    "logout",
	    "move",
	    "multiappend",
	    "mutf7",
	    "nil",
	    "pipeline",
	    "search-addresses",
	    "search-body",
	    "search-date",
	    "search-flags",
	    "search-header",
	    "search-sets",
	    "search-size",
	    "select",
	    "store",
	    "subscribe",
	    "uidplus",
	    "uidvalidity",
	    "uidvalidity-rename",
	    "broken/search-intdate",
	};
	size_t lines = 0;
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[256];
		snprintf(path, sizeof path, "tests/imaptest/tests/%s", files[i]);
		FILE *fp = fopen(path, "r");
		if (fp == NULL)
			continue;
		static char buf[65536];
		while (fgets(buf, sizeof buf, fp) != NULL) {
			char *p = buf;
			buf[strcspn(buf, "\r\n")] = '\0';
			while (*p >= '0' && *p <= '9')
				p++;
			if (p != buf && *p == ' ')
				p++;
			else
				p = buf;
			const char *expect = strncmp(p, "ok ", 3) == 0    ? "ok"
			                     : strncmp(p, "no ", 3) == 0  ? "no"
			                     : strncmp(p, "bad ", 4) == 0 ? "bad"
			                                                  : NULL;
			if (expect == NULL || strstr(p, "{{{") != NULL)
				continue;
			p += strlen(expect) + 1;
			if (*p == '[')
				continue; /* an expected response code, not a command */
			/* substitute the variables */
			struct buf cmd = BUF_INIT;
			for (const char *q = p; *q != '\0'; q++) {
				if (q[0] == '$' && q[1] == '$') {
					buf_appendc(&cmd, '$');
					q++;
				} else if (q[0] == '$' && q[1] == '{') {
					const char *e = strchr(q, '}');
					buf_appendc(&cmd, '1');
					q = e != NULL ? e : q + strlen(q) - 1;
				} else if (q[0] == '$' &&
				           ((q[1] >= 'a' && q[1] <= 'z') || q[1] == '_')) {
					buf_appendc(&cmd, '1');
					while ((q[1] >= 'a' && q[1] <= 'z') ||
					       (q[1] >= '0' && q[1] <= '9') || q[1] == '_')
						q++;
				} else {
					buf_appendc(&cmd, *q);
				}
			}
			check_imaptest_line(files[i], expect, cmd.data ? cmd.data : "");
			buf_free(&cmd);
			lines++;
		}
		fclose(fp);
	}
	/* when the checkout has them, there are hundreds */
	FILE *probe = fopen("tests/imaptest/tests/fetch", "r");
	if (probe != NULL) {
		CHECK(lines > 300);
		fclose(probe);
	}
}

/* Commands from the RFCs' examples: they frame, parse, and their typed
 * arguments parse (kind: F fetch after a set, S search, T store flags after
 * set and item, - none). */
static void test_rfc_examples(void)
{
	static const struct {
		const char *stream;
		char kind;
		const char *name;
	} cases[] = {
	    {"A001 LOGIN SMITH SESAME\r\n", '-', "LOGIN"}, /* RFC 9051 6.2.3 */
	    {"A142 SELECT INBOX\r\n", '-', "SELECT"},      /* 6.3.2 */
	    {"A682 LIST \"\" *\r\n", '-', "LIST"},         /* 6.3.9 */
	    {"A202 LIST ~/Mail/ %\r\n", '-', "LIST"},
	    {"A02 LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN)\r\n", '-', "LIST"},
	    {"A01 LIST \"\" (\"foo\" \"foo/*\")\r\n", '-', "LIST"},
	    {"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n", '-', "STATUS"},
	    {"A003 APPEND saved-messages (\\Seen) {14}\r\nDate: x\r\n\r\nhi\r\n", '-', "APPEND"},
	    {"A003 APPEND saved-messages (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {3+}\r\nhi!\r\n",
	     '-', "APPEND"},
	    {"A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", 'S', "SEARCH"},
	    {"A283 SEARCH TEXT \"string not in mailbox\"\r\n", 'S', "SEARCH"},
	    {"A284 SEARCH CHARSET UTF-8 TEXT "
	     "{12}\r\n\xd0\x9d\xd0\xb0\xd1\x82\xd0\xb0\xd1\x88\xd0\xb0\r\n",
	     'S', "SEARCH"},
	    {"A285 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", 'S',
	     "SEARCH"}, /* RFC 4731 */
	    {"A283 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", 'S',
	     "SEARCH"}, /* RFC 5182 */
	    {"A286 UID SEARCH 1:100 UID 443:557\r\n", 'S', "UID SEARCH"},
	    {"A160 SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n", 'S',
	     "SEARCH"}, /* RFC 7162 */
	    {"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n", 'F', "FETCH"},
	    {"A999 UID FETCH 4827313:4828442 FLAGS\r\n", 'F', "UID FETCH"},
	    {"A284 FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)\r\n", 'F', "FETCH"},
	    {"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n", 'F', "UID FETCH"},
	    {"t FETCH 1 (BINARY.PEEK[1]<0.100> BINARY.SIZE[1])\r\n", 'F', "FETCH"}, /* RFC 3516 */
	    {"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n", 'T', "STORE"},
	    {"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n", 'T',
	     "UID STORE"},
	    {"A300 COPY 2:4 MEETING\r\n", '-', "COPY"},
	    {"a UID MOVE 42:69 foo\r\n", '-', "UID MOVE"},
	    {"A02 ENABLE UTF8=ACCEPT\r\n", '-', "ENABLE"},
	    {"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\")\r\n", '-', "ID"},
	    {"a ID NIL\r\n", '-', "ID"},
	    {"A01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n", '-', "AUTHENTICATE"},
	    {"A003 APPEND Drafts ~{5}\r\na\0b\r\n\r\n", '-', "APPEND"},
	    {"A001 SELECT INBOX (CONDSTORE)\r\n", '-', "SELECT"},
	    {"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n", '-',
	     "SELECT"},
	    {"a GETQUOTAROOT INBOX\r\n", '-', "GETQUOTAROOT"},
	    {"a idle\r\n", '-', "IDLE"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct imap_reader r;
		struct buf in = BUF_INIT;
		size_t n = strlen(cases[i].stream);
		if (strstr(cases[i].stream, "~{5}") != NULL)
			n = strlen("A003 APPEND Drafts ~{5}\r\n") + 5 + 2;
		imap_reader_init(&r);
		buf_append(&in, cases[i].stream, n);
		enum imap_read_result res;
		while ((res = imap_reader_feed(&r, &in)) == IMAP_READ_CONTINUE)
			;
		CHECK_INT((int)i, res, IMAP_READ_COMMAND);
		CHECK_INT((int)i, in.len, 0);
		struct imap_args a;
		const char *err = NULL;
		int ret = imap_parse_command(&r, &a, &err);
		CHECK_INT((int)i, ret, 0);
		if (ret == 0) {
			CHECK_STR((int)i, a.name, cases[i].name);
			if (cases[i].kind == 'F') {
				struct imap_fetch f;
				struct imap_seqset set;
				CHECK_INT((int)i,
				          imap_seqset_parse(a.args[0].str, a.args[0].len, 0, &set),
				          0);
				imap_seqset_free(&set);
				CHECK_INT((int)i, imap_fetch_parse(&a.args[1], &f, &err), 0);
				imap_fetch_free(&f);
			} else if (cases[i].kind == 'S') {
				struct imap_search sr;
				bool bc;
				CHECK_INT((int)i, imap_search_parse(a.args, 100, &sr, &bc, &err),
				          0);
				imap_search_free(&sr);
			} else if (cases[i].kind == 'T') {
				unsigned sys;
				struct buf kw = BUF_INIT;
				const struct imap_arg *fl =
				    &a.args[a.args[1].type == IMAP_ARG_LIST ? 3 : 2];
				CHECK_INT((int)i, imap_parse_flag_args(fl, &sys, &kw), 0);
				CHECK_INT((int)i, sys, IMAP_F_DELETED);
				buf_free(&kw);
			}
		}
		imap_args_free(&a);
		imap_reader_free(&r);
		buf_free(&in);
	}
}

int main(void)
{
	test_run("framing", test_framing);
	test_run("framing_limits", test_framing_limits);
	test_run("many_literals", test_many_literals);
	test_run("args", test_args);
	test_run("values", test_values);
	test_run("seqset", test_seqset);
	test_run("flags", test_flags);
	test_run("dates", test_dates);
	test_run("utf7", test_utf7);
	test_run("mailbox", test_mailbox);
	test_run("list_match", test_list_match);
	test_run("fetch", test_fetch);
	test_run("search", test_search);
	test_run("imaptest_commands", test_imaptest_commands);
	test_run("rfc_examples", test_rfc_examples);
	return test_done("test_imap_parse");
}
