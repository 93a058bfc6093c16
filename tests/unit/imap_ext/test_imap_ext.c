/* Unit tests of issue 9's small extensions in the pure IMAP code: parsing
 * of FETCH EMAILID/THREADID/SAVEDATE/PREVIEW [(LAZY)] (RFC 8474, 8514,
 * 8970) and of SEARCH EMAILID/THREADID/SAVED*, SAVEDATESUPPORTED, OLDER/
 * YOUNGER (RFC 8474 6, RFC 8514 5, RFC 5032); their formatting
 * (imap_fetch_format) and matching (imap_search_match). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test.h"
#include "../imap_fixture.h"
#include "core/buf.h"
#include "imap/fetch.h"
#include "imap/parse.h"

/* the message every case formats or matches */
static struct imap_msg base_msg(void)
{
	struct imap_msg m;
	memset(&m, 0, sizeof m);
	m.seq = 3;
	m.uid = 7;
	m.size = 10;
	m.internaldate = 1000000000; /* 2001-09-09 01:46:40 UTC */
	m.keywords = "";
	m.emailid = 42;
	m.savedate = 1780000000;     /* 2026-05-28 20:26:40 UTC */
	m.preview = "hi \"there\"";
	return m;
}

/* "a FETCH 3 <args>": the formatted response, or "BAD" when the parser
 * refuses; "|lazy" / "|pv" for the PREVIEW flags. */
static void t_fetch(void)
{
	static const struct {
		const char *args, *want;
	} cases[] = {
	    {"EMAILID", "* 3 FETCH (EMAILID (E42))\r\n"},
	    {"(emailid threadid)", "* 3 FETCH (EMAILID (E42) THREADID NIL)\r\n"},
	    {"SAVEDATE", "* 3 FETCH (SAVEDATE \"28-May-2026 20:26:40 +0000\")\r\n"},
	    {"(SAVEDATE INTERNALDATE)",
	     "* 3 FETCH (SAVEDATE \"28-May-2026 20:26:40 +0000\" "
	     "INTERNALDATE \"09-Sep-2001 01:46:40 +0000\")\r\n"},
	    {"PREVIEW", "* 3 FETCH (PREVIEW \"hi \\\"there\\\"\")\r\n|pv"},
	    {"preview (lazy)", "* 3 FETCH (PREVIEW \"hi \\\"there\\\"\")\r\n|pv|lazy"},
	    {"(UID PREVIEW (LAZY) FLAGS)",
	     "* 3 FETCH (UID 7 PREVIEW \"hi \\\"there\\\"\" FLAGS ())\r\n|pv|lazy"},
	    /* one PREVIEW without LAZY: the command waits for it */
	    {"(PREVIEW (LAZY) PREVIEW)",
	     "* 3 FETCH (PREVIEW \"hi \\\"there\\\"\" PREVIEW \"hi \\\"there\\\"\")\r\n|pv"},
	    {"(PREVIEW (LAZY LAZY))", "* 3 FETCH (PREVIEW \"hi \\\"there\\\"\")\r\n|pv|lazy"},
	    {"(PREVIEW (FUZZY))", "BAD"},
	    {"(PREVIEW (LAZY X))", "BAD"},
	    {"(PREVIEW ())", "BAD"},
	    {"(PREVIEW LAZY)", "BAD"},
	    {"(EMAILID (x))", "BAD"},
	    /* a list after a single PREVIEW that is not LAZY: fetch modifiers */
	    {"PREVIEW (CHANGEDSINCE 1)", "* 3 FETCH (PREVIEW \"hi \\\"there\\\"\" MODSEQ (0))\r\n|pv"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[256];
		struct imap_args a;
		const char *err = NULL;
		snprintf(line, sizeof line, "a FETCH 3 %s", cases[i].args);
		CHECK_INT((int)i, parse_line(line, &a, &err), 0);
		struct imap_fetch f;
		int r = imap_fetch_parse(&a.args[1], &f, &err);
		if (r < 0) {
			CHECK_STR((int)i, "BAD", cases[i].want);
			imap_args_free(&a);
			continue;
		}
		struct imap_msg m = base_msg();
		struct imap_fetch_opts opt = {0};
		struct imap_fetch_out o;
		memset(&o, 0, sizeof o);
		imap_fetch_format(&f, &opt, &m, &o);
		struct buf b = BUF_INIT;
		buf_append(&b, o.bytes.data, o.bytes.len);
		if (f.need_preview)
			buf_appends(&b, "|pv");
		if (f.preview_lazy)
			buf_appends(&b, "|lazy");
		CHECK_STR((int)i, b.data, cases[i].want);
		CHECK(!f.need_blob); /* none of these reads the message itself */
		buf_free(&b);
		imap_fetch_out_free(&o);
		imap_fetch_free(&f);
		imap_args_free(&a);
	}
	/* NIL when there is no preview (LAZY, not computed) or no save date;
	 * a non-ASCII preview is a literal before UTF8=ACCEPT */
	struct imap_args a;
	const char *err;
	struct imap_fetch f;
	CHECK(parse_line("a FETCH 1 (PREVIEW SAVEDATE)", &a, &err) == 0);
	CHECK(imap_fetch_parse(&a.args[1], &f, &err) == 0);
	struct imap_msg m = base_msg();
	m.preview = NULL;
	m.savedate = 0;
	struct imap_fetch_opts opt = {0};
	struct imap_fetch_out o;
	memset(&o, 0, sizeof o);
	imap_fetch_format(&f, &opt, &m, &o);
	m.preview = "caf\xc3\xa9";
	imap_fetch_format(&f, &opt, &m, &o);
	/* UTF8=ACCEPT enabled: a quoted string (RFC 6855 3) */
	opt.utf8 = true;
	m.preview = "\"caf\xc3\xa9\\\"";
	imap_fetch_format(&f, &opt, &m, &o);
	CHECK_STR(0, o.bytes.data,
		  "* 3 FETCH (PREVIEW NIL SAVEDATE NIL)\r\n"
		  "* 3 FETCH (PREVIEW {5}\r\ncaf\xc3\xa9 SAVEDATE NIL)\r\n"
		  "* 3 FETCH (PREVIEW \"\\\"caf\xc3\xa9\\\\\\\"\" SAVEDATE NIL)\r\n");
	imap_fetch_out_free(&o);
	imap_fetch_free(&f);
	imap_args_free(&a);
}

/* "a SEARCH <args>" against base_msg: "1" match, "0" no match, "BAD" */
static void t_search(void)
{
	time_t now = time(NULL);
	static const struct {
		const char *args, *want;
	} cases[] = {
	    {"EMAILID E42", "1"},
	    {"emailid E43", "0"},
	    {"EMAILID e42", "0"},
	    {"EMAILID E042", "0"},
	    {"EMAILID M42", "0"},
	    {"EMAILID E99999999999999999999999", "0"},
	    {"EMAILID a_b-C9", "0"},
	    {"NOT EMAILID E42", "0"},
	    {"EMAILID", "BAD"},
	    {"EMAILID E.1", "BAD"},
	    {"EMAILID \"E42\"", "BAD"},
	    {"THREADID T1", "0"},
	    {"NOT THREADID T1", "1"},
	    {"THREADID ()", "BAD"},
	    {"SAVEDON 28-May-2026", "1"},
	    {"SAVEDON 9-Sep-2001", "0"},
	    {"ON 9-Sep-2001", "1"},
	    {"SAVEDBEFORE 28-May-2026", "0"},
	    {"SAVEDBEFORE 29-May-2026", "1"},
	    {"SAVEDSINCE 28-May-2026", "1"},
	    {"SAVEDSINCE 29-May-2026", "0"},
	    {"SAVEDSINCE", "BAD"},
	    {"SAVEDON 28-Foo-2026", "BAD"},
	    {"SAVEDATESUPPORTED", "1"},
	    {"SAVEDATESUPPORTED ALL", "1"},
	    /* WITHIN: the INTERNALDATE (2001) is older than any interval
	     * below 25 years; YOUNGER/OLDER are complements */
	    {"OLDER 1", "1"},
	    {"YOUNGER 1", "0"},
	    {"YOUNGER 4000000000", "1"},
	    {"OLDER 4000000000", "0"},
	    {"OLDER 0", "BAD"},
	    {"YOUNGER 4294967296", "BAD"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[256];
		struct imap_args a;
		const char *err = NULL;
		bool bc;
		snprintf(line, sizeof line, "a SEARCH %s", cases[i].args);
		CHECK_INT((int)i, parse_line(line, &a, &err), 0);
		struct imap_search s;
		int r = imap_search_parse(a.args, 100, &s, &bc, &err);
		if (r < 0) {
			CHECK_STR((int)i, "BAD", cases[i].want);
			imap_args_free(&a);
			continue;
		}
		struct imap_msg m = base_msg();
		CHECK(!imap_search_needs_blob(&s));
		CHECK_STR((int)i, imap_search_match(&s, &m, NULL, 0) ? "1" : "0", cases[i].want);
		imap_search_free(&s);
		imap_args_free(&a);
	}
	/* WITHIN at the edges, in seconds (RFC 5032 3): OLDER n matches an
	 * INTERNALDATE at or before now - n, YOUNGER n one at or after it */
	struct imap_args a;
	const char *err;
	bool bc;
	struct imap_search o, y;
	CHECK(parse_line("a SEARCH OLDER 100", &a, &err) == 0);
	CHECK(imap_search_parse(a.args, 10, &o, &bc, &err) == 0);
	imap_args_free(&a);
	CHECK(parse_line("a SEARCH YOUNGER 100", &a, &err) == 0);
	CHECK(imap_search_parse(a.args, 10, &y, &bc, &err) == 0);
	imap_args_free(&a);
	struct imap_msg m = base_msg();
	m.internaldate = now - 200;
	CHECK(imap_search_match(&o, &m, NULL, 0) && !imap_search_match(&y, &m, NULL, 0));
	m.internaldate = now - 10;
	CHECK(!imap_search_match(&o, &m, NULL, 0) && imap_search_match(&y, &m, NULL, 0));
	m.internaldate = now + 3600; /* in the future: young */
	CHECK(!imap_search_match(&o, &m, NULL, 0) && imap_search_match(&y, &m, NULL, 0));
	imap_search_free(&o);
	imap_search_free(&y);
}

static void t_emailid_parse(void)
{
	int64_t id = 0;
	CHECK(imap_emailid_parse("E1", &id) && id == 1);
	CHECK(imap_emailid_parse("E9223372036854775799", &id) && id == 9223372036854775799LL);
	CHECK(!imap_emailid_parse("E9223372036854775808", &id));
	CHECK(!imap_emailid_parse("E", &id));
	CHECK(!imap_emailid_parse("E0", &id));
	CHECK(!imap_emailid_parse("E1x", &id));
	CHECK(!imap_emailid_parse("", &id));
}

int main(void)
{
	test_run("fetch", t_fetch);
	test_run("search", t_search);
	test_run("emailid_parse", t_emailid_parse);
	return test_done("test_imap_ext");
}
