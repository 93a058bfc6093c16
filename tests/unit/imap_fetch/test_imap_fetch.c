/* Unit tests: FETCH responses (imap_fetch_format), the streaming decoder of
 * IMAP_SEG_DECODE segments, and SEARCH matching (imap_search_match).
 * Expected responses were checked against Dovecot 2.3.19 on the same
 * messages (differences are noted where postern chooses otherwise). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "../test.h"

/* ---- messages ---- */

/* the multipart message of the Dovecot comparison: part 1 base64 with a
 * NUL, part 2 quoted-printable, part 3 an unknown transfer encoding */
static const char MSG1[] =
    "Date: Tue, 1 Dec 2026 23:30:00 -0500\r\n"
    "From: A <a@example.test>\r\n"
    "Subject: hi\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
    "\r\n"
    "pre\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "aGVsbG8Ad29ybGQ=\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "ab=3Dc=\r\n"
    "d\r\n"
    "--b\r\n"
    "Content-Type: application/x\r\n"
    "Content-Transfer-Encoding: x-uue\r\n"
    "\r\n"
    "zzz\r\n"
    "--b--\r\n";

/* a simple message without Date:, with an empty field */
static const char MSG2[] = "Subject: nodate\r\n"
			   "X-Empty:\r\n"
			   "To: Bob <bob@example.test>\r\n"
			   "\r\n"
			   "body text here\r\n";

struct tmsg {
	struct imap_msg m;
	struct buf cache;
	struct mime_cache mc;
	char *data;
};

static void tmsg_init(struct tmsg *t, const char *msg, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->data = xmalloc(len + 1);
	memcpy(t->data, msg, len);
	t->data[len] = '\0';
	buf_init(&t->cache);
	mime_cache_build(t->data, len, &t->cache);
	CHECK(mime_cache_open(&t->mc, t->cache.data, t->cache.len));
	t->m.seq = 1;
	t->m.uid = 1;
	t->m.modseq = 5;
	t->m.size = len;
	t->m.internaldate = 1796184600; /* 2026-12-02 04:10:00 UTC */
	t->m.internaldate_tz = 0;
	t->m.sysflags = IMAP_F_SEEN | IMAP_F_RECENT;
	t->m.keywords = "";
	t->m.msg = t->data;
	t->m.len = len;
	t->m.mc = &t->mc;
}

static void tmsg_free(struct tmsg *t)
{
	buf_free(&t->cache);
	free(t->data);
}

/* The response as the client would read it: segments resolved. */
static void flatten(const struct imap_fetch_out *o, const struct imap_msg *m, struct buf *out)
{
	for (size_t i = 0; i < o->n_segs; i++) {
		const struct imap_seg *s = &o->segs[i];
		if (s->kind == IMAP_SEG_BYTES) {
			buf_append(out, o->bytes.data + s->off, (size_t)s->len);
		} else if (s->kind == IMAP_SEG_BLOB) {
			buf_append(out, m->msg + s->off, (size_t)s->len);
		} else {
			/* streamed as the server does: odd-sized chunks */
			struct imap_decoder d;
			imap_decoder_init(&d, s->enc, s->skip, s->out_len);
			for (uint64_t k = 0; k < s->len; k += 4093) {
				uint64_t n = s->len - k < 4093 ? s->len - k : 4093;
				imap_decoder_feed(&d, m->msg + s->off + k, (size_t)n, out);
			}
			imap_decoder_finish(&d, out);
		}
	}
}

static struct imap_fetch_item item(enum imap_fetch_kind kind)
{
	struct imap_fetch_item it;
	memset(&it, 0, sizeof(it));
	it.kind = kind;
	return it;
}

/* BODY[...] / BINARY[...] items: path "1.2" and what */
static struct imap_fetch_item sect(enum imap_fetch_kind kind, const char *path,
				   enum mime_section what, const char *label)
{
	struct imap_fetch_item it = item(kind);
	it.peek = true;
	for (const char *p = path; *p;) {
		it.path[it.depth++] = (uint32_t)strtoul(p, (char **)&p, 10);
		if (*p == '.')
			p++;
	}
	it.what = (uint8_t)what;
	it.label = (char *)label;
	return it;
}

static struct imap_fetch_item part(struct imap_fetch_item it, uint64_t off, uint64_t len)
{
	it.partial = true;
	it.p_off = off;
	it.p_len = len;
	return it;
}

/* Formats one item list for t and compares the whole flattened response. */
static void check_fetch(int casenum, struct tmsg *t, struct imap_fetch_item *items, size_t n,
			const struct imap_fetch_opts *opt, const char *want, size_t want_len)
{
	struct imap_fetch f;
	memset(&f, 0, sizeof(f));
	f.v = items;
	f.n = n;
	struct imap_fetch_opts o0;
	memset(&o0, 0, sizeof(o0));
	o0.binary_ok = true;
	struct imap_fetch_out o;
	memset(&o, 0, sizeof(o));
	imap_fetch_format(&f, opt ? opt : &o0, &t->m, &o);
	CHECK(o.error == NULL);
	struct buf got = BUF_INIT;
	flatten(&o, &t->m, &got);
	if (got.len != want_len || memcmp(got.data, want, want_len) != 0) {
		printf("  %s: case %d:\n    got  [", test_cur_name, casenum);
		fwrite(got.data, 1, got.len, stdout);
		printf("]\n    want [");
		fwrite(want, 1, want_len, stdout);
		printf("]\n");
		test_cur_failed = 1;
	}
	buf_free(&got);
	imap_fetch_out_free(&o);
}
#define CHECK_FETCH(c, t, items, opt, want)                                                        \
	check_fetch(c, t, items, sizeof(items) / sizeof(items[0]), opt, want, sizeof(want) - 1)

/* ---- FETCH ---- */

static void test_fetch_simple_items(void)
{
	struct tmsg t;
	tmsg_init(&t, MSG1, sizeof(MSG1) - 1);
	t.m.keywords = "$Forwarded foo";
	struct imap_fetch_item a[] = {item(IMAP_FETCH_FLAGS), item(IMAP_FETCH_RFC822_SIZE),
				      item(IMAP_FETCH_UID), item(IMAP_FETCH_INTERNALDATE)};
	CHECK_FETCH(0, &t, a, NULL,
		    "* 1 FETCH (FLAGS (\\Seen \\Recent $Forwarded foo) RFC822.SIZE 406 UID 1 "
		    "INTERNALDATE \"02-Dec-2026 04:10:00 +0000\")\r\n");
	/* INTERNALDATE in its own zone */
	t.m.internaldate_tz = -5 * 3600;
	t.m.sysflags = IMAP_F_ANSWERED | IMAP_F_DRAFT | IMAP_F_DELETED | IMAP_F_FLAGGED;
	t.m.keywords = "";
	t.m.seq = 7;
	struct imap_fetch_item b[] = {item(IMAP_FETCH_INTERNALDATE), item(IMAP_FETCH_FLAGS)};
	CHECK_FETCH(1, &t, b, NULL,
		    "* 7 FETCH (INTERNALDATE \"01-Dec-2026 23:10:00 -0500\" "
		    "FLAGS (\\Answered \\Flagged \\Deleted \\Draft))\r\n");
	/* UID FETCH: UID added first (RFC 9051 6.4.9), not twice when asked */
	struct imap_fetch_opts uo = {.uid = true, .binary_ok = true};
	t.m.uid = 42;
	t.m.sysflags = 0;
	struct imap_fetch_item c[] = {item(IMAP_FETCH_FLAGS)};
	CHECK_FETCH(2, &t, c, &uo, "* 7 FETCH (UID 42 FLAGS ())\r\n");
	struct imap_fetch_item d[] = {item(IMAP_FETCH_FLAGS), item(IMAP_FETCH_UID)};
	CHECK_FETCH(3, &t, d, &uo, "* 7 FETCH (FLAGS () UID 42)\r\n");
	/* CONDSTORE: MODSEQ in every response (RFC 7162 3.1.4.1) */
	struct imap_fetch_opts mo = {.uid = true, .modseq = true};
	CHECK_FETCH(4, &t, c, &mo, "* 7 FETCH (UID 42 MODSEQ (5) FLAGS ())\r\n");
	struct imap_fetch_item e[] = {item(IMAP_FETCH_MODSEQ)};
	CHECK_FETCH(5, &t, e, &mo, "* 7 FETCH (UID 42 MODSEQ (5))\r\n");
	/* an implicit \Seen: FLAGS reported, with the new flags */
	unsigned seen = IMAP_F_SEEN;
	struct imap_fetch_opts so = {.set_flags = &seen};
	struct imap_fetch_item g[] = {sect(IMAP_FETCH_SECTION, "1", MIME_SECT_BODY, "BODY[1]")};
	g[0].peek = false;
	CHECK_FETCH(6, &t, g, &so, "* 7 FETCH (FLAGS (\\Seen) BODY[1] {16}\r\naGVsbG8Ad29ybGQ=)\r\n");
	struct imap_fetch_item h[] = {g[0], item(IMAP_FETCH_FLAGS)};
	CHECK_FETCH(7, &t, h, &so,
		    "* 7 FETCH (BODY[1] {16}\r\naGVsbG8Ad29ybGQ= FLAGS (\\Seen))\r\n");
	tmsg_free(&t);
}

static void test_fetch_cached_structures(void)
{
	struct tmsg t;
	tmsg_init(&t, MSG1, sizeof(MSG1) - 1);
	const char *p;
	size_t n;
	struct buf want = BUF_INIT;
	buf_appends(&want, "* 1 FETCH (ENVELOPE ");
	mime_cache_envelope(&t.mc, &p, &n);
	buf_append(&want, p, n);
	buf_appends(&want, " BODY ");
	mime_cache_body(&t.mc, &p, &n);
	buf_append(&want, p, n);
	buf_appends(&want, " BODYSTRUCTURE ");
	mime_cache_bodystructure(&t.mc, &p, &n);
	buf_append(&want, p, n);
	buf_appends(&want, ")\r\n");
	struct imap_fetch_item a[] = {item(IMAP_FETCH_ENVELOPE), item(IMAP_FETCH_BODY),
				      item(IMAP_FETCH_BODYSTRUCTURE)};
	check_fetch(0, &t, a, 3, NULL, want.data, want.len);
	buf_free(&want);
	/* the whole response, as Dovecot sent it for this message */
	struct imap_fetch_item b[] = {item(IMAP_FETCH_ENVELOPE), item(IMAP_FETCH_BODYSTRUCTURE)};
	CHECK_FETCH(1, &t, b, NULL,
		    "* 1 FETCH (ENVELOPE (\"Tue, 1 Dec 2026 23:30:00 -0500\" \"hi\" "
		    "((\"A\" NIL \"a\" \"example.test\")) ((\"A\" NIL \"a\" \"example.test\")) "
		    "((\"A\" NIL \"a\" \"example.test\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE "
		    "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"base64\" 16 0 NIL "
		    "NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		    "\"quoted-printable\" 10 1 NIL NIL NIL NIL)(\"application\" \"x\" NIL NIL NIL "
		    "\"x-uue\" 3 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n");
	tmsg_free(&t);
}

static void test_fetch_sections(void)
{
	struct tmsg t;
	tmsg_init(&t, MSG1, sizeof(MSG1) - 1);
	/* RFC 3501 6.4.5 rev1 items */
	struct imap_fetch_item a[] = {item(IMAP_FETCH_RFC822_HEADER)};
	CHECK_FETCH(0, &t, a, NULL,
		    "* 1 FETCH (RFC822.HEADER {143}\r\n"
		    "Date: Tue, 1 Dec 2026 23:30:00 -0500\r\n"
		    "From: A <a@example.test>\r\n"
		    "Subject: hi\r\n"
		    "MIME-Version: 1.0\r\n"
		    "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
		    "\r\n)\r\n");
	struct imap_fetch_item b[] = {item(IMAP_FETCH_RFC822_TEXT)};
	check_fetch(1, &t, b, 1, NULL,
		    "* 1 FETCH (RFC822.TEXT {263}\r\n"
		    "pre\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: "
		    "base64\r\n\r\naGVsbG8Ad29ybGQ=\r\n--b\r\nContent-Type: "
		    "text/plain\r\nContent-Transfer-Encoding: "
		    "quoted-printable\r\n\r\nab=3Dc=\r\nd\r\n--b\r\nContent-Type: "
		    "application/x\r\nContent-Transfer-Encoding: x-uue\r\n\r\nzzz\r\n--b--\r\n)\r\n",
		    strlen("* 1 FETCH (RFC822.TEXT {263}\r\n") + 263 + 3);
	struct buf w = BUF_INIT;
	buf_appends(&w, "* 1 FETCH (RFC822 {406}\r\n");
	buf_append(&w, MSG1, 406);
	buf_appends(&w, ")\r\n");
	struct imap_fetch_item c[] = {item(IMAP_FETCH_RFC822)};
	check_fetch(2, &t, c, 1, NULL, w.data, w.len);
	buf_free(&w);

	/* parts, MIME headers, missing parts: as Dovecot answers */
	struct imap_fetch_item d[] = {
	    sect(IMAP_FETCH_SECTION, "1", MIME_SECT_BODY, "BODY[1]"),
	    sect(IMAP_FETCH_SECTION, "5", MIME_SECT_BODY, "BODY[5]"),
	    sect(IMAP_FETCH_SECTION, "1", MIME_SECT_HEADER, "BODY[1.HEADER]"),
	    sect(IMAP_FETCH_SECTION, "1", MIME_SECT_TEXT, "BODY[1.TEXT]"),
	    sect(IMAP_FETCH_SECTION, "1", MIME_SECT_MIME, "BODY[1.MIME]"),
	};
	CHECK_FETCH(3, &t, d, NULL,
		    "* 1 FETCH (BODY[1] {16}\r\naGVsbG8Ad29ybGQ= BODY[5] {0}\r\n"
		    " BODY[1.HEADER] {0}\r\n BODY[1.TEXT] {0}\r\n"
		    " BODY[1.MIME] {63}\r\nContent-Type: text/plain\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n)\r\n");

	/* partials: past the end, cut, zero length, no label given */
	struct imap_fetch_item e[] = {
	    part(sect(IMAP_FETCH_SECTION, "", MIME_SECT_BODY, "BODY[]<10000>"), 10000, 5),
	    part(sect(IMAP_FETCH_SECTION, "", MIME_SECT_BODY, "BODY[]<0>"), 0, 10),
	    part(sect(IMAP_FETCH_SECTION, "2", MIME_SECT_BODY, "BODY[2]<3>"), 3, 100),
	    part(sect(IMAP_FETCH_SECTION, "", MIME_SECT_TEXT, "BODY[TEXT]<0>"), 0, 0),
	    part(sect(IMAP_FETCH_SECTION, "", MIME_SECT_BODY, "BODY[]<406>"), 406, 1),
	    part(sect(IMAP_FETCH_SECTION, "", MIME_SECT_BODY, NULL), 405, 9),
	    part(sect(IMAP_FETCH_SECTION, "1", MIME_SECT_MIME, NULL), 60, 9),
	};
	CHECK_FETCH(4, &t, e, NULL,
		    "* 1 FETCH (BODY[]<10000> {0}\r\n BODY[]<0> {10}\r\nDate: Tue,"
		    " BODY[2]<3> {7}\r\n3Dc=\r\nd BODY[TEXT]<0> {0}\r\n BODY[]<406> {0}\r\n"
		    " BODY[]<405> {1}\r\n\n BODY[1.MIME]<60> {3}\r\n\n\r\n)\r\n");

	/* HEADER.FIELDS (.NOT): names in any case, the label as given */
	char *names1[] = {"subject", "FROM"};
	char *names2[] = {"Subject", "from", "date", "content-type"};
	char *names3[] = {"X-None"};
	struct imap_fetch_item f[] = {
	    sect(IMAP_FETCH_SECTION, "", MIME_SECT_HEADER, "BODY[HEADER.FIELDS (SUBJECT FROM)]"),
	    sect(IMAP_FETCH_SECTION, "", MIME_SECT_HEADER, "BODY[HEADER.FIELDS.NOT (SUBJECT)]<0>"),
	    sect(IMAP_FETCH_SECTION, "", MIME_SECT_HEADER, "BODY[HEADER.FIELDS.NOT (...)]"),
	    sect(IMAP_FETCH_SECTION, "", MIME_SECT_HEADER, "BODY[HEADER.FIELDS (X-NONE)]"),
	    sect(IMAP_FETCH_SECTION, "4", MIME_SECT_HEADER, "BODY[4.HEADER.FIELDS (X-NONE)]"),
	};
	f[0].fields = true, f[0].names = names1, f[0].n_names = 2;
	f[1].fields = f[1].fields_not = true, f[1].names = names1, f[1].n_names = 1;
	f[1] = part(f[1], 0, 7);
	f[2].fields = f[2].fields_not = true, f[2].names = names2, f[2].n_names = 4;
	f[3].fields = true, f[3].names = names3, f[3].n_names = 1;
	f[4].fields = true, f[4].names = names3, f[4].n_names = 1;
	CHECK_FETCH(5, &t, f, NULL,
		    "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {41}\r\n"
		    "From: A <a@example.test>\r\nSubject: hi\r\n\r\n"
		    " BODY[HEADER.FIELDS.NOT (SUBJECT)]<0> {7}\r\nDate: T"
		    " BODY[HEADER.FIELDS.NOT (...)] {21}\r\nMIME-Version: 1.0\r\n\r\n"
		    " BODY[HEADER.FIELDS (X-NONE)] {2}\r\n\r\n"
		    " BODY[4.HEADER.FIELDS (X-NONE)] {0}\r\n)\r\n");
	tmsg_free(&t);
}

static void test_fetch_binary(void)
{
	struct tmsg t;
	tmsg_init(&t, MSG1, sizeof(MSG1) - 1);
	/* RFC 3516: decoded; literal8 only when the content holds a NUL
	 * (Dovecot sends ~{N} for every decoded part) */
	struct imap_fetch_item a[] = {
	    sect(IMAP_FETCH_BINARY, "1", MIME_SECT_BODY, "BINARY[1]"),
	    part(sect(IMAP_FETCH_BINARY, "1", MIME_SECT_BODY, "BINARY[1]<2>"), 2, 3),
	    part(sect(IMAP_FETCH_BINARY, "1", MIME_SECT_BODY, "BINARY[1]<20>"), 20, 3),
	    part(sect(IMAP_FETCH_BINARY, "1", MIME_SECT_BODY, "BINARY[1]<4>"), 4, 3),
	    sect(IMAP_FETCH_BINARY, "2", MIME_SECT_BODY, "BINARY[2]"),
	    sect(IMAP_FETCH_BINARY, "4", MIME_SECT_BODY, "BINARY[4]"),
	    sect(IMAP_FETCH_BINARY_SIZE, "1", MIME_SECT_BODY, "BINARY.SIZE[1]"),
	    sect(IMAP_FETCH_BINARY_SIZE, "2", MIME_SECT_BODY, "BINARY.SIZE[2]"),
	    sect(IMAP_FETCH_BINARY_SIZE, "5", MIME_SECT_BODY, "BINARY.SIZE[5]"),
	};
	CHECK_FETCH(0, &t, a, NULL,
		    "* 1 FETCH (BINARY[1] ~{11}\r\nhello\0world BINARY[1]<2> {3}\r\nllo"
		    " BINARY[1]<20> {0}\r\n BINARY[1]<4> ~{3}\r\no\0w"
		    " BINARY[2] {5}\r\nab=cd BINARY[4] {0}\r\n"
		    " BINARY.SIZE[1] 11 BINARY.SIZE[2] 5 BINARY.SIZE[5] 0)\r\n");
	/* without binary_ok a NUL is still sent in a plain literal */
	struct imap_fetch_opts nb = {.binary_ok = false};
	struct imap_fetch_item b[] = {sect(IMAP_FETCH_BINARY, "1", MIME_SECT_BODY, NULL)};
	CHECK_FETCH(1, &t, b, &nb, "* 1 FETCH (BINARY[1] {11}\r\nhello\0world)\r\n");

	/* an unknown encoding fails the command: [UNKNOWN-CTE] (RFC 3516 4.3),
	 * and nothing of this message is kept; earlier messages stay */
	for (int k = 0; k < 2; k++) {
		struct imap_fetch_item c[] = {
		    item(IMAP_FETCH_UID),
		    sect(k ? IMAP_FETCH_BINARY_SIZE : IMAP_FETCH_BINARY, "3", MIME_SECT_BODY,
			 "BINARY[3]")};
		struct imap_fetch f = {.v = c, .n = 2};
		struct imap_fetch f1 = {.v = c, .n = 1};
		struct imap_fetch_opts o0 = {.binary_ok = true};
		struct imap_fetch_out o;
		memset(&o, 0, sizeof(o));
		imap_fetch_format(&f1, &o0, &t.m, &o);
		CHECK(o.error == NULL);
		size_t len = o.bytes.len, segs = o.n_segs;
		imap_fetch_format(&f, &o0, &t.m, &o);
		CHECK_STR(2 + k, o.error, "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding");
		CHECK_INT(2 + k, o.bytes.len, len);
		CHECK_INT(2 + k, o.n_segs, segs);
		CHECK_INT(2 + k, o.segs[0].len, len);
		imap_fetch_out_reset(&o);
		CHECK(o.error == NULL && o.n_segs == 0 && o.bytes.len == 0);
		imap_fetch_out_free(&o);
	}
	tmsg_free(&t);
}

/* Whole commands through the parser (labels as it makes them): the
 * responses Dovecot gave for the same commands. */
static void check_parsed(int casenum, struct tmsg *t, const char *line,
			 const struct imap_fetch_opts *opt, const char *want, size_t want_len)
{
	struct imap_reader r;
	struct buf in = BUF_INIT;
	struct imap_args a;
	struct imap_fetch f;
	const char *err = NULL;
	memset(&f, 0, sizeof(f));
	imap_reader_init(&r);
	r.max_line = r.max_command = 65536;
	r.max_literal = 65536;
	buf_appends(&in, line);
	buf_appends(&in, "\r\n");
	CHECK_INT(casenum, imap_reader_feed(&r, &in), IMAP_READ_COMMAND);
	CHECK_INT(casenum, imap_parse_command(&r, &a, &err), 0);
	CHECK_INT(casenum, imap_fetch_parse(a.args + 1, &f, &err), 0);
	check_fetch(casenum, t, f.v, f.n, opt, want, want_len);
	imap_fetch_free(&f);
	imap_args_free(&a);
	imap_reader_free(&r);
	buf_free(&in);
}
#define CHECK_PARSED(c, t, line, opt, want) check_parsed(c, t, line, opt, want, sizeof(want) - 1)

static void test_fetch_parsed(void)
{
	struct tmsg t;
	tmsg_init(&t, MSG1, sizeof(MSG1) - 1);
	CHECK_PARSED(0, &t, "a1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject FROM)] BODY.PEEK[5])", NULL,
		     "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {41}\r\n"
		     "From: A <a@example.test>\r\nSubject: hi\r\n\r\n BODY[5] {0}\r\n)\r\n");
	CHECK_PARSED(1, &t,
		     "a1 FETCH 1 (BODY.PEEK[]<10000.5> body.peek[]<0.10> "
		     "BODY.PEEK[HEADER.FIELDS.NOT (Subject)]<0.7> BODY.PEEK[2]<3.100> "
		     "BODY.PEEK[TEXT]<0.1>)",
		     NULL,
		     "* 1 FETCH (BODY[]<10000> {0}\r\n BODY[]<0> {10}\r\nDate: Tue,"
		     " BODY[HEADER.FIELDS.NOT (SUBJECT)]<0> {7}\r\nDate: T"
		     " BODY[2]<3> {7}\r\n3Dc=\r\nd BODY[TEXT]<0> {1}\r\np)\r\n");
	CHECK_PARSED(2, &t, "a1 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[4])", NULL,
		     "* 1 FETCH (BINARY[1] ~{11}\r\nhello\0world BINARY.SIZE[1] 11"
		     " BINARY[4] {0}\r\n)\r\n");
	CHECK_PARSED(3, &t, "a1 FETCH 1 (BODY.PEEK[1.MIME] BODY.PEEK[1.TEXT])", NULL,
		     "* 1 FETCH (BODY[1.MIME] {63}\r\nContent-Type: text/plain\r\n"
		     "Content-Transfer-Encoding: base64\r\n\r\n BODY[1.TEXT] {0}\r\n)\r\n");
	struct imap_fetch_opts uo = {.uid = true};
	CHECK_PARSED(4, &t, "a4 UID FETCH 1 (FLAGS)", &uo,
		     "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\n");
	tmsg_free(&t);
}

/* A message with a text part of n bytes and a base64 part of m bytes. */
static void big_message(struct buf *msg, size_t n, size_t m, bool nul, uint64_t *b64_off_r,
			struct buf *raw)
{
	buf_appends(msg, "Subject: big\r\nMIME-Version: 1.0\r\n"
			 "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n");
	for (size_t i = 0; i < n; i++)
		buf_appendc(msg, i % 78 == 76 ? '\r' : i % 78 == 77 ? '\n' : 'a' + (char)(i % 26));
	buf_appends(msg, "\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	*b64_off_r = msg->len;
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < m; i++)
		buf_appendc(raw, nul || i % 97 ? (char)(i * 7 + 1) : (char)1);
	if (!nul)
		for (size_t i = 0; i < m; i++)
			if (raw->data[i] == 0)
				raw->data[i] = 1;
	const unsigned char *r = (const unsigned char *)raw->data;
	size_t col = 0;
	for (size_t i = 0; i < m; i += 3) {
		uint32_t v = (uint32_t)r[i] << 16 | (i + 1 < m ? (uint32_t)r[i + 1] << 8 : 0) |
			     (i + 2 < m ? r[i + 2] : 0);
		char q[4] = {al[v >> 18 & 63], al[v >> 12 & 63], i + 1 < m ? al[v >> 6 & 63] : '=',
			     i + 2 < m ? al[v & 63] : '='};
		buf_append(msg, q, 4);
		if ((col += 4) == 76) {
			buf_appends(msg, "\r\n");
			col = 0;
		}
	}
	buf_appends(msg, "\r\n--x--\r\n");
}

static void test_fetch_large(void)
{
	struct buf msg = BUF_INIT, raw = BUF_INIT;
	uint64_t b64off;
	size_t tlen = 100000, blen = 150000;
	big_message(&msg, tlen, blen, true, &b64off, &raw);
	struct tmsg t;
	tmsg_init(&t, msg.data, msg.len);

	/* a literal over IMAP_FETCH_INLINE is a blob range, not copied */
	struct imap_fetch_item a[] = {sect(IMAP_FETCH_SECTION, "1", MIME_SECT_BODY, "BODY[1]")};
	struct imap_fetch f = {.v = a, .n = 1};
	struct imap_fetch_opts o0 = {.binary_ok = true};
	struct imap_fetch_out o;
	memset(&o, 0, sizeof(o));
	imap_fetch_format(&f, &o0, &t.m, &o);
	CHECK_INT(0, o.n_segs, 3);
	CHECK_INT(0, o.segs[0].kind, IMAP_SEG_BYTES);
	CHECK_INT(0, o.segs[1].kind, IMAP_SEG_BLOB);
	CHECK_INT(0, o.segs[1].len, tlen);
	CHECK(memcmp(t.data + o.segs[1].off, "abcdef", 6) == 0);
	CHECK_INT(0, o.segs[2].kind, IMAP_SEG_BYTES);
	CHECK(o.bytes.len < 100);
	struct buf got = BUF_INIT;
	flatten(&o, &t.m, &got);
	CHECK(got.len == 29 + tlen + 3 && memcmp(got.data, "* 1 FETCH (BODY[1] {100000}\r\n", 29) == 0);
	/* a second message appended: its first bytes join the last segment */
	t.m.seq = 2;
	struct imap_fetch_item u[] = {item(IMAP_FETCH_UID)};
	struct imap_fetch fu = {.v = u, .n = 1};
	imap_fetch_format(&fu, &o0, &t.m, &o);
	CHECK_INT(1, o.n_segs, 3);
	CHECK_INT(1, o.segs[2].len, 3 + strlen("* 2 FETCH (UID 1)\r\n"));
	imap_fetch_out_reset(&o);
	t.m.seq = 1;

	/* BINARY of a large base64 part: a decode segment; its announced size
	 * is what the streaming decoder produces */
	struct imap_fetch_item b[] = {
	    sect(IMAP_FETCH_BINARY, "2", MIME_SECT_BODY, "BINARY[2]"),
	    part(sect(IMAP_FETCH_BINARY, "2", MIME_SECT_BODY, "BINARY[2]<1000>"), 1000, 70000),
	    part(sect(IMAP_FETCH_BINARY, "2", MIME_SECT_BODY, "BINARY[2]<100000>"), 100000,
		 1000000),
	    sect(IMAP_FETCH_BINARY_SIZE, "2", MIME_SECT_BODY, "BINARY.SIZE[2]"),
	};
	struct imap_fetch fb = {.v = b, .n = 4};
	imap_fetch_format(&fb, &o0, &t.m, &o);
	CHECK_INT(2, o.n_segs, 5);
	CHECK_INT(2, o.segs[1].kind, IMAP_SEG_DECODE);
	CHECK_INT(2, o.segs[1].enc, MIME_ENC_BASE64);
	CHECK_INT(2, o.segs[1].off, b64off);
	CHECK_INT(2, o.segs[1].skip, 0);
	CHECK_INT(2, o.segs[1].out_len, blen);
	CHECK_INT(2, o.segs[3].kind, IMAP_SEG_DECODE);
	CHECK_INT(2, o.segs[3].skip, 1000);
	CHECK_INT(2, o.segs[3].out_len, 70000);
	buf_reset(&got);
	flatten(&o, &t.m, &got);
	struct buf want = BUF_INIT;
	buf_appends(&want, "* 1 FETCH (BINARY[2] ~{150000}\r\n");
	buf_append(&want, raw.data, blen);
	buf_appends(&want, " BINARY[2]<1000> ~{70000}\r\n");
	buf_append(&want, raw.data + 1000, 70000);
	buf_appends(&want, " BINARY[2]<100000> ~{50000}\r\n");
	buf_append(&want, raw.data + 100000, 50000);
	buf_appends(&want, " BINARY.SIZE[2] 150000)\r\n");
	CHECK_INT(2, got.len, want.len);
	CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
	imap_fetch_out_free(&o);
	tmsg_free(&t);

	/* no NUL in the decoded content: a plain literal */
	buf_reset(&msg);
	buf_reset(&raw);
	big_message(&msg, 10, 100000, false, &b64off, &raw);
	tmsg_init(&t, msg.data, msg.len);
	memset(&o, 0, sizeof(o));
	struct imap_fetch fc = {.v = b, .n = 1};
	imap_fetch_format(&fc, &o0, &t.m, &o);
	buf_reset(&got);
	flatten(&o, &t.m, &got);
	buf_reset(&want);
	buf_appends(&want, "* 1 FETCH (BINARY[2] {100000}\r\n");
	buf_append(&want, raw.data, 100000);
	buf_appends(&want, ")\r\n");
	CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
	imap_fetch_out_free(&o);
	tmsg_free(&t);

	buf_free(&got);
	buf_free(&want);
	buf_free(&msg);
	buf_free(&raw);
}

/* Every part of every message of the MIME corpus: BINARY[part] (through
 * the segments and the streaming decoder) is what mime_decode gives for the
 * part's body, and BINARY.SIZE agrees with it; BODY[part] is the bytes. */
static void test_fetch_corpus(void)
{
	static const char *const names[] = {
	    "8bit-headers", "addresses", "alternative", "bad-encodings", "digest",
	    "disposition-language", "encoded-words", "groups", "header-quirks", "huge-header",
	    "lf-only", "message-global", "missing-boundary-param", "missing-final-boundary",
	    "missing-from-date", "mixed-attachment", "nested", "no-content-type",
	    "no-mime-version", "quoted-printable", "rfc822-attachment", "rfc822-plain", "simple",
	    "truncated-header"};
	int checked = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[128];
		snprintf(path, sizeof(path), "tests/data/mime/%s.eml", names[i]);
		FILE *fp = fopen(path, "rb");
		if (!fp) {
			printf("  cannot read %s\n", path);
			test_cur_failed = 1;
			continue;
		}
		struct buf msg = BUF_INIT;
		char chunk[4096];
		size_t n;
		while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
			buf_append(&msg, chunk, n);
		fclose(fp);
		struct tmsg t;
		tmsg_init(&t, msg.data ? msg.data : "", msg.len);
		/* parts 1..6 and 1.1..6.6 */
		for (uint32_t a = 1; a <= 6; a++) {
			for (uint32_t b = 0; b <= 6; b++) {
				uint32_t p[2] = {a, b};
				size_t depth = b ? 2 : 1;
				uint64_t off, len;
				enum mime_encoding enc;
				if (mime_cache_section(&t.mc, p, depth, MIME_SECT_BODY, &off, &len, &enc) <
				    0)
					continue;
				struct imap_fetch_item it[2] = {item(IMAP_FETCH_BINARY),
								item(IMAP_FETCH_BINARY_SIZE)};
				for (int k = 0; k < 2; k++) {
					it[k].path[0] = a, it[k].path[1] = b;
					it[k].depth = (uint8_t)depth;
					it[k].label = k ? "S" : "B";
				}
				struct imap_fetch f = {.v = it, .n = 2};
				struct imap_fetch_opts o0 = {.binary_ok = true};
				struct imap_fetch_out o;
				memset(&o, 0, sizeof(o));
				imap_fetch_format(&f, &o0, &t.m, &o);
				if (enc == MIME_ENC_OTHER) {
					CHECK(o.error != NULL);
					imap_fetch_out_free(&o);
					continue;
				}
				struct buf got = BUF_INIT, want = BUF_INIT, dec = BUF_INIT;
				flatten(&o, &t.m, &got);
				if (enc == MIME_ENC_BASE64 || enc == MIME_ENC_QP)
					mime_decode(enc, t.data + off, (size_t)len, &dec);
				else
					buf_append(&dec, t.data + off, (size_t)len);
				bool nul = dec.len && memchr(dec.data, 0, dec.len);
				buf_printf(&want, "* 1 FETCH (B %s{%zu}\r\n", nul ? "~" : "", dec.len);
				buf_append(&want, dec.data, dec.len);
				buf_printf(&want, " S %zu)\r\n", dec.len);
				if (got.len != want.len || memcmp(got.data, want.data, want.len)) {
					printf("  %s part %u.%u: BINARY differs from mime_decode\n",
					       names[i], a, b);
					test_cur_failed = 1;
				}
				checked++;
				buf_free(&got);
				buf_free(&want);
				buf_free(&dec);
				imap_fetch_out_free(&o);
			}
		}
		tmsg_free(&t);
		buf_free(&msg);
	}
	CHECK(checked > 30);
}

/* ---- the streaming decoder ---- */

static void test_decoder_chunks(void)
{
	static const struct {
		enum mime_encoding enc;
		const char *in;
		const char *out;
		size_t out_len;
	} cases[] = {
	    /* 0 */ {MIME_ENC_BASE64, "aGVsbG8Ad29ybGQ=", "hello\0world", 11},
	    {MIME_ENC_BASE64, "aGVs\r\nbG8=\r\n", "hello", 5},
	    {MIME_ENC_BASE64, "aGk=aGk=", "hihi", 4},
	    {MIME_ENC_BASE64, "a!G@k=", "hi", 2},
	    {MIME_ENC_BASE64, "", "", 0},
	    /* 5 */ {MIME_ENC_BASE64, "/+/+AAEC", "\xff\xef\xfe\x00\x01\x02", 6},
	    {MIME_ENC_QP, "ab=3Dc=\r\nd", "ab=cd", 5},
	    {MIME_ENC_QP, "trailing \t \r\nx", "trailing\r\nx", 11},
	    {MIME_ENC_QP, "a=\nb=\r\nc", "abc", 3},
	    {MIME_ENC_QP, "bad=ZZ=4", "bad=ZZ=4", 8},
	    /* 10 */ {MIME_ENC_QP, "x \t=\r\ny", "x \ty", 4},
	    /* a lone "=" at the end: the soft break before the boundary */
	    {MIME_ENC_QP, "end=", "end", 3},
	    {MIME_ENC_QP, "a\rb\r", "a\rb\r", 4},
	    {MIME_ENC_QP, "=3d=C3=A9=00z", "=\xc3\xa9\0z", 5},
	    {MIME_ENC_QP, "a  b \n", "a  b\r\n", 6},
	    /* 15 */ {MIME_ENC_QP, "=\rx", "=\rx", 3},
	    {MIME_ENC_QP, "tail  ", "tail", 4},
	    {MIME_ENC_7BIT, "as is=3D", "as is=3D", 8},
	    /* Dovecot's BINARY[1] of this part: the same 28 bytes */
	    {MIME_ENC_QP, "trailing \t \r\nx \t=\r\ny=3d\r\na  b \nend \r\n",
	     "trailing\r\nx \ty=\r\na  b\r\nend\r\n", 28},
	    /* 20: RFC 2045 6.7 transport padding: "=" then white space then
	     * the line break is a soft line break */
	    {MIME_ENC_QP, "foo\t \t= \r\n=62", "foo\t \tb", 7},
	    {MIME_ENC_QP, "foo = \t\r\nbar", "foo bar", 7},
	    {MIME_ENC_QP, "a= \nb=\t\t\r\nc", "abc", 3},
	    {MIME_ENC_QP, "a= b", "a= b", 4},
	    {MIME_ENC_QP, "a=  \rb", "a=  \rb", 6},
	    /* 25 */ {MIME_ENC_QP, "end= \t", "end", 3},
	    {MIME_ENC_QP, "hello  \r\nbar=\r\n\r\nx", "hello\r\nbar\r\nx", 13},
	    /* imaptest fetch-binary-mime-qp: Dovecot's 65 bytes */
	    {MIME_ENC_QP,
	     "hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\n"
	     "foo =\r\n=62\r\nfoo  \r\nbar=\r\n\r\nfoo_bar\r\n",
	     "hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\n"
	     "foo_bar\r\n",
	     65},
	    /* a run of white space longer than the hold: text up to its last 80 */
	    {MIME_ENC_QP,
	     "a" "                                        " "                                        "
	     "   \r\nb",
	     "a" "                                        " "                                        "
	     "\r\nb",
	     84},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t n = strlen(cases[c].in), w = cases[c].out_len;
		/* every split point, every cut */
		for (size_t split = 0; split <= n; split++) {
			for (size_t skip = 0; skip <= w + 1; skip++) {
				for (size_t len = 0; len <= w + 1; len++) {
					struct imap_decoder d;
					struct buf out = BUF_INIT;
					imap_decoder_init(&d, cases[c].enc, skip, len);
					imap_decoder_feed(&d, cases[c].in, split, &out);
					imap_decoder_feed(&d, cases[c].in + split, n - split, &out);
					imap_decoder_finish(&d, &out);
					size_t ws = skip > w ? w : skip;
					size_t wl = w - ws < len ? w - ws : len;
					if (out.len != wl ||
					    memcmp(out.data ? out.data : "", cases[c].out + ws, wl)) {
						printf("  case %zu split %zu skip %zu len %zu: got "
						       "%zu bytes, want %zu\n",
						       c, split, skip, len, out.len, wl);
						test_cur_failed = 1;
					}
					buf_free(&out);
				}
			}
		}
		/* byte by byte, whole output (out_len "all") */
		struct imap_decoder d;
		struct buf out = BUF_INIT;
		imap_decoder_init(&d, cases[c].enc, 0, UINT64_MAX);
		for (size_t i = 0; i < n; i++)
			imap_decoder_feed(&d, cases[c].in + i, 1, &out);
		imap_decoder_finish(&d, &out);
		CHECK_INT((int)c, out.len, w);
		if (out.len != w || memcmp(out.data ? out.data : "", cases[c].out, w)) {
			printf("  case %zu: byte by byte: got \"%.*s\"\n", c, (int)out.len,
			       out.data ? out.data : "");
			test_cur_failed = 1;
		}
		CHECK(!imap_decoder_done(&d));
		buf_free(&out);
		/* mime_decode (SEARCH) gives the same bytes */
		struct buf dec = BUF_INIT;
		mime_decode(cases[c].enc, cases[c].in, n, &dec);
		CHECK_INT((int)c, dec.len, w);
		CHECK(dec.len == w && memcmp(dec.data ? dec.data : "", cases[c].out, w) == 0);
		buf_free(&dec);
	}
	/* random inputs made of the characters that change state: any split
	 * into chunks gives what one feed gives, and a cut is a slice of it */
	static const char alpha[] = "=\r\n \t3dDAZz+/aG!";
	unsigned seed = 12345;
	for (int r = 0; r < 3000; r++) {
		char in[48];
		seed = seed * 1103515245 + 12345;
		size_t n = (seed >> 16) % sizeof(in);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245 + 12345;
			in[i] = alpha[(seed >> 16) % (sizeof(alpha) - 1)];
		}
		enum mime_encoding enc = r & 1 ? MIME_ENC_QP : MIME_ENC_BASE64;
		struct imap_decoder d1;
		struct buf whole = BUF_INIT;
		imap_decoder_init(&d1, enc, 0, UINT64_MAX);
		imap_decoder_feed(&d1, in, n, &whole);
		imap_decoder_finish(&d1, &whole);
		struct buf dec = BUF_INIT;
		mime_decode(enc, in, n, &dec);
		if (dec.len != whole.len || (dec.len && memcmp(dec.data, whole.data, dec.len))) {
			printf("  random %d: the decoder and mime_decode differ\n", r);
			test_cur_failed = 1;
		}
		buf_free(&dec);
		for (size_t split = 0; split <= n; split++) {
			size_t skip = split % (whole.len + 1), len = (whole.len + 2) / 2;
			size_t wl = whole.len - skip < len ? whole.len - skip : len;
			struct imap_decoder d2;
			struct buf out = BUF_INIT;
			imap_decoder_init(&d2, enc, skip, len);
			/* three chunks: [0,split/2) [split/2,split) [split,n) */
			imap_decoder_feed(&d2, in, split / 2, &out);
			imap_decoder_feed(&d2, in + split / 2, split - split / 2, &out);
			imap_decoder_feed(&d2, in + split, n - split, &out);
			imap_decoder_finish(&d2, &out);
			if (out.len != wl || (wl && memcmp(out.data, whole.data + skip, wl))) {
				printf("  random %d split %zu: got %zu bytes, want %zu\n", r, split,
				       out.len, wl);
				test_cur_failed = 1;
			}
			buf_free(&out);
		}
		buf_free(&whole);
	}
	/* done() once the cut is complete: the rest of the input is not needed */
	struct imap_decoder d;
	struct buf out = BUF_INIT;
	imap_decoder_init(&d, MIME_ENC_BASE64, 1, 3);
	imap_decoder_feed(&d, "aGVsbG8A", 8, &out);
	CHECK(imap_decoder_done(&d));
	CHECK(out.len == 3 && memcmp(out.data, "ell", 3) == 0);
	buf_free(&out);
}

/* ---- SEARCH ---- */

static int32_t day(int y, int mon, int mday)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	return (int32_t)(timegm(&tm) / 86400);
}

static struct imap_search_key key(enum imap_search_kind k)
{
	struct imap_search_key v;
	memset(&v, 0, sizeof(v));
	v.kind = k;
	return v;
}

static struct imap_search_key dkey(enum imap_search_kind k, int32_t d)
{
	struct imap_search_key v = key(k);
	v.day = d;
	return v;
}

static struct imap_search_key skey(enum imap_search_kind k, const char *str, const char *str2)
{
	struct imap_search_key v = key(k);
	v.str = (char *)str;
	v.str2 = (char *)str2;
	return v;
}

static struct imap_search_key nkey(enum imap_search_kind k, uint64_t n)
{
	struct imap_search_key v = key(k);
	v.num = n;
	v.flags = (unsigned)n;
	return v;
}

static bool match1(struct imap_search_key k, const struct imap_msg *m, const uint32_t *saved,
		   size_t n_saved)
{
	struct imap_search s;
	memset(&s, 0, sizeof(s));
	s.root = key(IMAP_SK_AND);
	s.root.sub = &k;
	s.root.n_sub = 1;
	return imap_search_match(&s, m, saved, n_saved);
}

static void test_search_keys(void)
{
	struct tmsg t1, t2;
	tmsg_init(&t1, MSG1, sizeof(MSG1) - 1);
	tmsg_init(&t2, MSG2, sizeof(MSG2) - 1);
	struct imap_msg *m1 = &t1.m, *m2 = &t2.m;
	m1->seq = 3, m1->uid = 30, m1->sysflags = IMAP_F_SEEN | IMAP_F_FLAGGED;
	m1->keywords = "$Forwarded Foo";
	m2->seq = 4, m2->uid = 40, m2->sysflags = IMAP_F_RECENT, m2->modseq = 9;
	struct imap_range r34[] = {{3, 3}, {7, 9}}, r40[] = {{35, IMAP_STAR - 1}};
	uint32_t saved[] = {5, 30, 31};
	struct {
		struct imap_search_key k;
		bool want1, want2;
	} cases[] = {
	    /* 0 */ {key(IMAP_SK_ALL), true, true},
	    {nkey(IMAP_SK_FLAG, IMAP_F_SEEN), true, false},
	    {nkey(IMAP_SK_FLAG, IMAP_F_SEEN | IMAP_F_FLAGGED), true, false},
	    {nkey(IMAP_SK_UNFLAG, IMAP_F_DELETED), true, true},
	    {nkey(IMAP_SK_FLAG, IMAP_F_RECENT), false, true},
	    /* 5 */ {skey(IMAP_SK_KEYWORD, "foo", NULL), true, false},
	    {skey(IMAP_SK_KEYWORD, "$forwarded", NULL), true, false},
	    {skey(IMAP_SK_KEYWORD, "Fo", NULL), false, false},
	    {skey(IMAP_SK_UNKEYWORD, "foo", NULL), false, true},
	    {key(IMAP_SK_NEW), false, true},
	    /* 10 */ {key(IMAP_SK_OLD), true, false},
	    {nkey(IMAP_SK_LARGER, 406), false, false},
	    {nkey(IMAP_SK_LARGER, 405), true, false},
	    {nkey(IMAP_SK_SMALLER, 407), true, true},
	    {nkey(IMAP_SK_SMALLER, sizeof(MSG2) - 1), false, false},
	    /* 15 */ {nkey(IMAP_SK_MODSEQ, 6), false, true},
	    {nkey(IMAP_SK_MODSEQ, 5), true, true},
	    /* SUBJECT/FROM/TO/... are HEADER keys; "" matches a present field */
	    {skey(IMAP_SK_HEADER, "HI", "Subject"), true, false},
	    {skey(IMAP_SK_HEADER, "", "subject"), true, true},
	    {skey(IMAP_SK_HEADER, "", "X-Empty"), false, true},
	    /* 20 */ {skey(IMAP_SK_HEADER, "", "Bcc"), false, false},
	    {skey(IMAP_SK_HEADER, "x", "X-Empty"), false, false},
	    {skey(IMAP_SK_HEADER, "example.test", "From"), true, false},
	    {skey(IMAP_SK_HEADER, "bob", "To"), false, true},
	    {skey(IMAP_SK_BODY, "b=c", NULL), true, false},
	    /* 25 */ {skey(IMAP_SK_BODY, "Subject", NULL), false, false},
	    {skey(IMAP_SK_TEXT, "nodate", NULL), false, true},
	    {skey(IMAP_SK_TEXT, "TEXT HERE", NULL), false, true},
	    {skey(IMAP_SK_BODY, "text", NULL), false, true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_INT((int)i, match1(cases[i].k, m1, NULL, 0), cases[i].want1);
		CHECK_INT((int)i, match1(cases[i].k, m2, NULL, 0), cases[i].want2);
	}
	/* sequence sets, UID sets, $ (RFC 5182: the saved UIDs) */
	struct imap_search_key sq = key(IMAP_SK_SEQSET), us = key(IMAP_SK_UIDSET);
	sq.set.v = r34, sq.set.n = 2;
	us.set.v = r40, us.set.n = 1;
	CHECK_INT(100, match1(sq, m1, NULL, 0), true);
	CHECK_INT(101, match1(sq, m2, NULL, 0), false);
	CHECK_INT(102, match1(us, m1, NULL, 0), false);
	CHECK_INT(103, match1(us, m2, NULL, 0), true);
	sq.set.dollar = us.set.dollar = true;
	sq.set.n = us.set.n = 0;
	CHECK_INT(104, match1(sq, m1, saved, 3), true);
	CHECK_INT(105, match1(sq, m2, saved, 3), false);
	CHECK_INT(106, match1(us, m1, saved, 3), true);
	CHECK_INT(107, match1(us, m1, NULL, 0), false);

	/* AND / OR / NOT trees */
	struct imap_search_key subs[] = {nkey(IMAP_SK_FLAG, IMAP_F_SEEN),
					 skey(IMAP_SK_HEADER, "nodate", "Subject")};
	struct imap_search_key or = key(IMAP_SK_OR), not = key(IMAP_SK_NOT), and = key(IMAP_SK_AND);
	or.sub = subs, or.n_sub = 2;
	not.sub = &subs[0], not.n_sub = 1;
	and.sub = subs, and.n_sub = 2;
	CHECK_INT(110, match1(or, m1, NULL, 0), true);
	CHECK_INT(111, match1(or, m2, NULL, 0), true);
	CHECK_INT(112, match1(and, m1, NULL, 0), false);
	CHECK_INT(113, match1(not, m1, NULL, 0), false);
	CHECK_INT(114, match1(not, m2, NULL, 0), true);
	struct imap_search_key notor = key(IMAP_SK_NOT);
	notor.sub = &or, notor.n_sub = 1;
	CHECK_INT(115, match1(notor, m2, NULL, 0), false);

	/* needs_blob: only keys that read the message */
	struct imap_search s;
	memset(&s, 0, sizeof(s));
	s.root = key(IMAP_SK_AND);
	s.root.sub = &sq, s.root.n_sub = 1;
	CHECK(!imap_search_needs_blob(&s));
	s.root.sub = &not;
	CHECK(!imap_search_needs_blob(&s));
	s.root.sub = &notor;
	CHECK(imap_search_needs_blob(&s));
	struct imap_search_key sent = dkey(IMAP_SK_SENTON, 0);
	s.root.sub = &sent;
	CHECK(imap_search_needs_blob(&s));
	/* sent_only: SENT* the only keys that read the message (the sort
	 * keys answer them) */
	CHECK(imap_search_sent_only(&s));
	struct imap_search_key both[] = {sent, notor}, sflag[] = {sent, subs[0]};
	struct imap_search_key sor = key(IMAP_SK_OR);
	sor.sub = sflag, sor.n_sub = 2;
	s.root.sub = &sor;
	CHECK(imap_search_sent_only(&s));
	s.root.sub = both, s.root.n_sub = 2; /* and a HEADER key */
	CHECK(imap_search_needs_blob(&s));
	CHECK(!imap_search_sent_only(&s));
	s.root.sub = &sq, s.root.n_sub = 1; /* nothing reads the message */
	CHECK(!imap_search_sent_only(&s));
	tmsg_free(&t1);
	tmsg_free(&t2);
}

static void test_search_dates(void)
{
	struct tmsg t1, t2;
	tmsg_init(&t1, MSG1, sizeof(MSG1) - 1);
	tmsg_init(&t2, MSG2, sizeof(MSG2) - 1);
	/* INTERNALDATE 2026-12-02 04:30 UTC = 1 Dec 23:30 -0500 */
	t1.m.internaldate = (time_t)day(2026, 12, 2) * 86400 + 4 * 3600 + 30 * 60;
	t1.m.internaldate_tz = -5 * 3600;
	int32_t d1 = day(2026, 12, 1), d2 = day(2026, 12, 2), d3 = day(2026, 12, 3);
	struct {
		struct imap_search_key k;
		int tz;
		bool want;
	} cases[] = {
	    /* in its own zone (-0500) it is 1 Dec */
	    /* 0 */ {dkey(IMAP_SK_ON, d1), -18000, true},
	    {dkey(IMAP_SK_ON, d2), -18000, false},
	    {dkey(IMAP_SK_BEFORE, d2), -18000, true},
	    {dkey(IMAP_SK_BEFORE, d1), -18000, false},
	    {dkey(IMAP_SK_SINCE, d1), -18000, true},
	    /* 5 */ {dkey(IMAP_SK_SINCE, d2), -18000, false},
	    /* the same instant stored in UTC is 2 Dec */
	    {dkey(IMAP_SK_ON, d1), 0, false},
	    {dkey(IMAP_SK_ON, d2), 0, true},
	    {dkey(IMAP_SK_SINCE, d2), 0, true},
	    /* +1400: 2 Dec 18:30 */
	    {dkey(IMAP_SK_ON, d2), 14 * 3600, true},
	    /* 10: -1200 (1 Dec 16:30), -0430 (2 Dec 00:00 exactly) */
	    {dkey(IMAP_SK_ON, d1), -12 * 3600, true},
	    {dkey(IMAP_SK_ON, d2), -(4 * 3600 + 30 * 60), true},
	    {dkey(IMAP_SK_ON, d2), -(4 * 3600 + 31 * 60), false},
	    {dkey(IMAP_SK_BEFORE, d3), 0, true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t1.m.internaldate_tz = cases[i].tz;
		CHECK_INT((int)i, match1(cases[i].k, &t1.m, NULL, 0), cases[i].want);
	}
	/* SENT*: the Date: header "Tue, 1 Dec 2026 23:30:00 -0500" is 1 Dec in
	 * its zone (4:30 on 2 Dec in UTC); INTERNALDATE plays no part */
	t1.m.internaldate = 0;
	CHECK_INT(20, match1(dkey(IMAP_SK_SENTON, d1), &t1.m, NULL, 0), true);
	CHECK_INT(21, match1(dkey(IMAP_SK_SENTON, d2), &t1.m, NULL, 0), false);
	CHECK_INT(22, match1(dkey(IMAP_SK_SENTBEFORE, d2), &t1.m, NULL, 0), true);
	CHECK_INT(23, match1(dkey(IMAP_SK_SENTBEFORE, d1), &t1.m, NULL, 0), false);
	CHECK_INT(24, match1(dkey(IMAP_SK_SENTSINCE, d1), &t1.m, NULL, 0), true);
	CHECK_INT(25, match1(dkey(IMAP_SK_SENTSINCE, d2), &t1.m, NULL, 0), false);
	/* no Date: dated 1970-01-01, as Dovecot (SENTBEFORE matches) */
	t2.m.internaldate = t1.m.internaldate;
	CHECK_INT(26, match1(dkey(IMAP_SK_SENTBEFORE, day(2000, 1, 1)), &t2.m, NULL, 0), true);
	CHECK_INT(27, match1(dkey(IMAP_SK_SENTSINCE, day(2000, 1, 1)), &t2.m, NULL, 0), false);
	CHECK_INT(28, match1(dkey(IMAP_SK_SENTON, 0), &t2.m, NULL, 0), true);
	/* the day the sort keys keep (sent_known) is taken, not the message's */
	t1.m.sent_known = true;
	t1.m.sent_day = d2;
	CHECK_INT(40, match1(dkey(IMAP_SK_SENTON, d2), &t1.m, NULL, 0), true);
	CHECK_INT(41, match1(dkey(IMAP_SK_SENTON, d1), &t1.m, NULL, 0), false);
	t1.m.sent_known = false;
	struct imap_msg bare = t1.m; /* no message loaded, a day kept */
	bare.msg = NULL;
	bare.len = 0;
	bare.sent_known = true;
	bare.sent_day = d1;
	CHECK_INT(42, match1(dkey(IMAP_SK_SENTON, d1), &bare, NULL, 0), true);
	CHECK_INT(43, match1(dkey(IMAP_SK_SENTBEFORE, d1), &bare, NULL, 0), false);
	bare.sent_known = false; /* neither: 1970-01-01 */
	CHECK_INT(44, match1(dkey(IMAP_SK_SENTON, 0), &bare, NULL, 0), true);
	/* a Date: in +1400 just after midnight */
	static const char m3[] = "Date: Wed, 2 Dec 2026 00:30:00 +1400\r\n\r\nx\r\n";
	struct tmsg t3;
	tmsg_init(&t3, m3, sizeof(m3) - 1);
	CHECK_INT(29, match1(dkey(IMAP_SK_SENTON, d2), &t3.m, NULL, 0), true);
	CHECK_INT(30, match1(dkey(IMAP_SK_SENTON, d1), &t3.m, NULL, 0), false);
	/* before 1970 */
	t3.m.internaldate = -3600;
	t3.m.internaldate_tz = 0;
	CHECK_INT(31, match1(dkey(IMAP_SK_ON, -1), &t3.m, NULL, 0), true);
	CHECK_INT(32, match1(dkey(IMAP_SK_BEFORE, 0), &t3.m, NULL, 0), true);
	tmsg_free(&t1);
	tmsg_free(&t2);
	tmsg_free(&t3);
}

static void resolve_sets(struct imap_search_key *k, uint32_t max_seq, uint32_t max_uid)
{
	if (k->kind == IMAP_SK_SEQSET)
		imap_seqset_resolve(&k->set, max_seq);
	if (k->kind == IMAP_SK_UIDSET)
		imap_seqset_resolve(&k->set, max_uid);
	for (size_t i = 0; i < k->n_sub; i++)
		resolve_sets(&k->sub[i], max_seq, max_uid);
}

/* Whole SEARCH commands through the parser, against MSG1 (seq 3, UID 30,
 * \Seen, keyword Foo) and MSG2 (seq 4, UID 40, \Recent); the answers
 * Dovecot gave on the same two messages where it applies. */
static void test_search_parsed(void)
{
	struct tmsg t1, t2;
	tmsg_init(&t1, MSG1, sizeof(MSG1) - 1);
	tmsg_init(&t2, MSG2, sizeof(MSG2) - 1);
	t1.m.seq = 3, t1.m.uid = 30, t1.m.sysflags = IMAP_F_SEEN, t1.m.keywords = "Foo";
	t2.m.seq = 4, t2.m.uid = 40, t2.m.sysflags = IMAP_F_RECENT, t2.m.modseq = 9;
	t1.m.internaldate = (time_t)day(2026, 12, 2) * 86400 + 4 * 3600 + 30 * 60;
	t1.m.internaldate_tz = -5 * 3600;
	t2.m.internaldate = t1.m.internaldate;
	uint32_t saved[] = {40};
	static const struct {
		const char *keys;
		bool want1, want2;
	} cases[] = {
	    /* 0 */ {"KEYWORD foo", true, false},
	    {"SENTON 1-Dec-2026", true, false},
	    {"SENTON 2-Dec-2026", false, false},
	    {"SENTBEFORE 1-Jan-2000", false, true},
	    {"SENTSINCE 1-Jan-2000", true, false},
	    /* 5 */ {"HEADER X-Empty \"\"", false, true},
	    {"HEADER Date \"\"", true, false},
	    {"SUBJECT \"\"", true, true},
	    {"BCC \"\"", false, false},
	    {"UNKEYWORD foo", false, true},
	    /* 10 */ {"TEXT nodate", false, true},
	    {"BODY subject", false, false},
	    {"ON 1-Dec-2026", true, false},
	    /* the same instant: 1 Dec in -0500 (MSG1), 2 Dec in UTC (MSG2) */
	    {"ON 2-Dec-2026", false, true},
	    {"SINCE 2-Dec-2026 UNSEEN", false, true},
	    /* 15 */ {"OR SEEN NEW", true, true},
	    {"NOT UID 40", true, false},
	    {"3,7:*", true, true},
	    {"UID $", false, true},
	    {"$ RECENT", false, true},
	    /* 20 */ {"(FROM a@example OR TO bob SUBJECT hi) LARGER 100", true, false},
	    {"MODSEQ 6", false, true},
	    {"SMALLER 100 OLD", false, false},
	    {"SUBJECT HI FROM \"A <a@\"", true, false},
	    {"1:3", true, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_reader r;
		struct buf in = BUF_INIT;
		struct imap_args a;
		struct imap_search s;
		const char *err = NULL;
		bool bad_cs = false;
		memset(&s, 0, sizeof(s));
		imap_reader_init(&r);
		r.max_line = r.max_command = r.max_literal = 65536;
		buf_printf(&in, "a SEARCH %s\r\n", cases[i].keys);
		CHECK_INT((int)i, imap_reader_feed(&r, &in), IMAP_READ_COMMAND);
		CHECK_INT((int)i, imap_parse_command(&r, &a, &err), 0);
		CHECK_INT((int)i, imap_search_parse(a.args, 1000, &s, &bad_cs, &err), 0);
		resolve_sets(&s.root, 4, 40);
		CHECK_INT((int)i, imap_search_match(&s, &t1.m, saved, 1), cases[i].want1);
		CHECK_INT((int)i, imap_search_match(&s, &t2.m, saved, 1), cases[i].want2);
		imap_search_free(&s);
		imap_args_free(&a);
		imap_reader_free(&r);
		buf_free(&in);
	}
	tmsg_free(&t1);
	tmsg_free(&t2);
}

static void test_flags_store(void)
{
	const char *kw;
	CHECK_INT(0, imap_flags_from_store("\\Seen \\Flagged $Forwarded foo", &kw),
		  IMAP_F_SEEN | IMAP_F_FLAGGED);
	CHECK_STR(0, kw, "$Forwarded foo");
	CHECK_INT(1, imap_flags_from_store("", &kw), 0);
	CHECK_STR(1, kw, "");
	CHECK_INT(2, imap_flags_from_store("foo \\deleted \\Draft \\Answered", &kw),
		  IMAP_F_DELETED | IMAP_F_DRAFT | IMAP_F_ANSWERED);
	struct buf b = BUF_INIT;
	imap_format_flags(&b, IMAP_F_DELETED, kw);
	CHECK_STR(2, b.data, "(\\Deleted foo)");
	buf_reset(&b);
	imap_format_flags(&b, 0, "");
	CHECK_STR(3, b.data, "()");
	buf_reset(&b);
	imap_format_flags(&b, 63, "a");
	CHECK_STR(4, b.data, "(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\Recent a)");
	buf_free(&b);
}

int main(void)
{
	test_run("fetch_simple_items", test_fetch_simple_items);
	test_run("fetch_cached_structures", test_fetch_cached_structures);
	test_run("fetch_sections", test_fetch_sections);
	test_run("fetch_binary", test_fetch_binary);
	test_run("fetch_parsed", test_fetch_parsed);
	test_run("fetch_large", test_fetch_large);
	test_run("fetch_corpus", test_fetch_corpus);
	test_run("decoder_chunks", test_decoder_chunks);
	test_run("search_keys", test_search_keys);
	test_run("search_dates", test_search_dates);
	test_run("search_parsed", test_search_parsed);
	test_run("flags_store", test_flags_store);
	return test_done("test_imap_fetch");
}
