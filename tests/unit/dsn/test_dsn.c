/* Unit tests: the DSN builder (mime/dsn.h) and bounce_send (queue/bounce.h)
 * against a real store in a temporary directory. With DSN_SAMPLE_DIR set,
 * every DSN built here is also written there (case-N.eml) for
 * tests/e2e/test_bounce.py to parse with Python's email package. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "mime/dsn.h"
#include "queue/bounce.h"
#include "store/store.h"
#include "../test.h"

struct mem {
	const char *p;
	size_t n;
	int fail_at; /* reads at or past this offset fail (-1: never) */
	size_t max_read;
};

static ssize_t mem_read(void *arg, void *p, size_t n, uint64_t off)
{
	struct mem *m = arg;
	if (m->fail_at >= 0 && off + n > (uint64_t)m->fail_at) {
		errno = EIO;
		return -1;
	}
	if (off >= m->n)
		return 0;
	if (n > m->n - off)
		n = m->n - off;
	if (m->max_read && n > m->max_read)
		n = m->max_read; /* short reads, as pread may give */
	memcpy(p, m->p + off, n);
	return (ssize_t)n;
}

static int buf_write(void *arg, const void *p, size_t n)
{
	buf_append(arg, p, n);
	return 0;
}

static int sample_no;

/* The report most cases build: one recipient rc, from h.org to s@h.org. */
static struct dsn_report report_for(struct dsn_rcpt *rc, const char *boundary)
{
	return (struct dsn_report){.hostname = "h.org",
	                           .to = "s@h.org",
	                           .now = 1,
	                           .msgid = "m@h.org",
	                           .boundary = boundary,
	                           .rcpt = rc,
	                           .n_rcpt = 1};
}

/* Builds the DSN of r over orig; returns it (heap, NUL-terminated) or NULL. */
static char *build(const struct dsn_report *r, const char *orig, size_t n)
{
	struct mem m = {orig, n, -1, 0};
	struct buf b = BUF_INIT;
	char *err = NULL;
	if (dsn_write(r, mem_read, &m, n, buf_write, &b, &err) != 0) {
		printf("  dsn_write: %s\n", err ? err : "?");
		free(err);
		buf_free(&b);
		return NULL;
	}
	const char *dir = getenv("DSN_SAMPLE_DIR");
	if (dir != NULL) {
		char *path = xasprintf("%s/case-%d.eml", dir, sample_no++);
		FILE *f = fopen(path, "wb");
		if (f != NULL) {
			fwrite(b.data, 1, b.len, f);
			fclose(f);
		}
		free(path);
	}
	buf_appends(&b, ""); /* NUL-terminated even when empty */
	return b.data;
}

/* Every line ends in CRLF, no bare CR or LF, at most 998 octets before it
 * (RFC 5322 2.1.1). */
static bool lines_ok(const char *s)
{
	size_t col = 0;
	for (; *s; s++) {
		if (*s == '\r') {
			if (s[1] != '\n')
				return false;
			s++;
			col = 0;
		} else if (*s == '\n') {
			return false;
		} else if (++col > 998) {
			return false;
		}
	}
	return col == 0;
}

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static const char orig1[] = "Received: from x\r\nSubject: hi\r\nFrom: a@b.org\r\n\r\nbody line\r\n";

static const struct dsn_rcpt rcpt1[2] = {
    {.rcpt = "bob@example.net",
     .action = DSN_FAILED,
     .status = "5.1.1",
     .remote_mta = "mx.example.net",
     .diag = "550 5.1.1 <bob@example.net>: no such user",
     .diag_remote = true,
     .last_attempt = 1764644400},
    {.rcpt = "carol@example.net",
     .orcpt = "rfc822;Carol+2Bx@example.net",
     .action = DSN_DELAYED,
     .status = "4.4.1",
     .diag = "connect to mx.example.net: Connection refused",
     .last_attempt = 1764644400,
     .will_retry_until = 1765000000},
};

static struct dsn_report report1(void)
{
	return (struct dsn_report){.hostname = "mail.example.org",
	                           .to = "alice@example.org",
	                           .queue_id = "Q1",
	                           .envid = "ENV+2B1",
	                           .arrival = 1764640000,
	                           .now = 1764644500,
	                           .msgid = "Q1.dsn@mail.example.org",
	                           .boundary = "B1/mail.example.org",
	                           .rcpt = rcpt1,
	                           .n_rcpt = 2};
}

/* The exact DSN: headers, the three parts, ORCPT and ENVID decoded from
 * xtext, Will-Retry-Until for the delayed recipient, the original's header
 * only (no RET). */
static void test_exact(void)
{
	static const char want[] =
	    "From: Mail Delivery System <MAILER-DAEMON@mail.example.org>\r\n"
	    "To: <alice@example.org>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Date: Tue, 2 Dec 2025 03:01:40 +0000\r\n"
	    "Message-ID: <Q1.dsn@mail.example.org>\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "X-Postern-Queue-ID: Q1\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"B1/mail.example.org\"\r\n"
	    "\r\n"
	    "This is a MIME-encapsulated message.\r\n"
	    "\r\n"
	    "--B1/mail.example.org\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "\r\n"
	    "This is the mail system at host mail.example.org.\r\n"
	    "\r\n"
	    "Your message could not be delivered to one or more of its recipients, and the\r\n"
	    "mail system has given up on them. The reasons are listed below; the message,\r\n"
	    "or its header, is attached.\r\n"
	    "\r\n"
	    "If you need help, write to the postmaster of mail.example.org and include this\r\n"
	    "report.\r\n"
	    "\r\n"
	    "<bob@example.net>: delivery failed (status 5.1.1); host mx.example.net said:\r\n"
	    "    550 5.1.1 <bob@example.net>: no such user\r\n"
	    "\r\n"
	    "<carol@example.net>: delivery delayed (status 4.4.1): connect to\r\n"
	    "    mx.example.net: Connection refused\r\n"
	    "\r\n"
	    "--B1/mail.example.org\r\n"
	    "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n"
	    "\r\n"
	    "Reporting-MTA: dns; mail.example.org\r\n"
	    "X-Postern-Queue-ID: Q1\r\n"
	    "X-Postern-Sender: rfc822; alice@example.org\r\n"
	    "Original-Envelope-Id: ENV+1\r\n"
	    "Arrival-Date: Tue, 2 Dec 2025 01:46:40 +0000\r\n"
	    "\r\n"
	    "Final-Recipient: rfc822; bob@example.net\r\n"
	    "Action: failed\r\n"
	    "Status: 5.1.1\r\n"
	    "Remote-MTA: dns; mx.example.net\r\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user\r\n"
	    "Last-Attempt-Date: Tue, 2 Dec 2025 03:00:00 +0000\r\n"
	    "\r\n"
	    "Original-Recipient: rfc822;Carol+x@example.net\r\n"
	    "Final-Recipient: rfc822; carol@example.net\r\n"
	    "Action: delayed\r\n"
	    "Status: 4.4.1\r\n"
	    "Diagnostic-Code: X-Postern; connect to mx.example.net: Connection refused\r\n"
	    "Last-Attempt-Date: Tue, 2 Dec 2025 03:00:00 +0000\r\n"
	    "Will-Retry-Until: Sat, 6 Dec 2025 05:46:40 +0000\r\n"
	    "\r\n"
	    "--B1/mail.example.org\r\n"
	    "Content-Description: Undelivered Message Headers\r\n"
	    "Content-Type: text/rfc822-headers\r\n"
	    "\r\n"
	    "Received: from x\r\n"
	    "Subject: hi\r\n"
	    "From: a@b.org\r\n"
	    "\r\n"
	    "--B1/mail.example.org--\r\n";
	struct dsn_report r = report1();
	char *got = build(&r, orig1, strlen(orig1));
	CHECK_STR(1, got, want);
	CHECK(got && lines_ok(got));
	free(got);
}

static void test_kinds(void)
{
	static const struct {
		enum dsn_action a;
		const char *subject, *action, *status, *intro, *part3;
	} cases[] = {
	    {DSN_FAILED, "Subject: Undelivered Mail Returned to Sender\r\n", "Action: failed\r\n",
	     "Status: 5.0.0\r\n", "could not be delivered",
	     "Content-Description: Undelivered Message Headers\r\n"},
	    {DSN_DELAYED, "Subject: Delayed Mail (still being retried)\r\n", "Action: delayed\r\n",
	     "Status: 4.0.0\r\n", "has not been delivered yet",
	     "Content-Description: Delayed Message Headers\r\n"},
	    {DSN_DELIVERED, "Subject: Successful Mail Delivery Report\r\n", "Action: delivered\r\n",
	     "Status: 2.0.0\r\n", "was delivered to the recipients",
	     "Content-Description: Delivered Message Headers\r\n"},
	    {DSN_RELAYED, "Subject: Successful Mail Delivery Report\r\n", "Action: relayed\r\n",
	     "Status: 2.0.0\r\n", "no delivery notifications",
	     "Content-Description: Delivered Message Headers\r\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		/* a malformed status falls back to X.0.0 of the action */
		struct dsn_rcpt rc = {.rcpt = "x@y.org", .action = cases[i].a, .status = "9.9"};
		struct dsn_report r = report_for(&rc, "b");
		char *got = build(&r, orig1, strlen(orig1));
		CHECK(got != NULL);
		if (got == NULL)
			continue;
		CHECK_INT((int)i, strstr(got, cases[i].subject) != NULL, 1);
		CHECK_INT((int)i, strstr(got, cases[i].action) != NULL, 1);
		CHECK_INT((int)i, strstr(got, cases[i].status) != NULL, 1);
		CHECK_INT((int)i, strstr(got, cases[i].intro) != NULL, 1);
		CHECK_INT((int)i, strstr(got, cases[i].part3) != NULL, 1);
		/* no ENVID, no ORCPT, no arrival, no queue id: fields left out */
		CHECK_INT((int)i, strstr(got, "Original-Envelope-Id") == NULL, 1);
		CHECK_INT((int)i, strstr(got, "Original-Recipient") == NULL, 1);
		CHECK_INT((int)i, strstr(got, "Arrival-Date") == NULL, 1);
		CHECK_INT((int)i, strstr(got, "X-Postern-Queue-ID") == NULL, 1);
		CHECK_INT((int)i, strstr(got, "Will-Retry-Until") == NULL, 1);
		CHECK_INT((int)i, strstr(got, "Auto-Submitted: auto-replied\r\n") != NULL, 1);
		CHECK_INT((int)i, lines_ok(got), 1);
		free(got);
	}
}

/* RET=FULL: the whole original as message/rfc822 up to full_max; above it,
 * the header only (text/rfc822-headers). */
static void test_ret_full(void)
{
	static const struct {
		bool full;
		uint64_t full_max;
		bool whole;
	} cases[] = {
	    {false, 0, false},
	    {true, 0, true},
	    {true, sizeof orig1 - 1, true},
	    {true, sizeof orig1 - 2, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct dsn_report r = report1();
		r.full = cases[i].full;
		r.full_max = cases[i].full_max;
		char *got = build(&r, orig1, strlen(orig1));
		CHECK(got != NULL);
		if (got == NULL)
			continue;
		if (cases[i].whole) {
			char *want = xasprintf("Content-Description: Undelivered Message\r\n"
			                       "Content-Type: message/rfc822\r\n\r\n%s"
			                       "\r\n--B1/mail.example.org--\r\n",
			                       orig1);
			CHECK_INT((int)i, strstr(got, want) != NULL, 1);
			free(want);
		} else {
			CHECK_INT((int)i,
			          strstr(got, "Content-Type: text/rfc822-headers\r\n\r\n"
			                      "Received: from x\r\nSubject: hi\r\nFrom: a@b.org\r\n"
			                      "\r\n--B1/mail.example.org--\r\n") != NULL,
			          1);
			CHECK_INT((int)i, strstr(got, "body line") == NULL, 1);
		}
		free(got);
	}
}

/* An original without an empty line is all header: headers-only (RET=HDRS,
 * or RET=FULL over the cap) is capped as well, cut at a line end. */
static void test_headers_capped(void)
{
	const size_t lines = 20000; /* 20000 * 26 octets: about 10 times the cap */
	struct buf o = BUF_INIT;
	for (size_t i = 0; i < lines; i++)
		buf_printf(&o, "X-Filler-%05zu: 0123456789\r\n", i);
	for (int full = 0; full <= 1; full++) {
		struct dsn_report r = report1();
		r.full = full;
		char *got = build(&r, o.data, o.len);
		CHECK(got != NULL);
		if (got == NULL)
			continue;
		CHECK_INT(full, strlen(got) < DSN_FULL_MAX + 8192, 1);
		CHECK_INT(full, lines_ok(got), 1);
		/* the last included line is whole, then the closing delimiter */
		CHECK_INT(full, strstr(got, ": 0123456789\r\n\r\n--B1/mail.example.org--\r\n") != NULL,
		          1);
		free(got);
	}
	buf_free(&o);
}

/* Originals of odd shapes: no empty line (all header), bare LF (copied as
 * CRLF), an empty
 * header section, no final CRLF. */
static void test_original_shapes(void)
{
	static const struct {
		const char *orig;
		bool full;
		const char *tail;
	} cases[] = {
	    {"Subject: x\r\nFrom: y", false,
	     "text/rfc822-headers\r\n\r\nSubject: x\r\nFrom: y\r\n\r\n--@@--\r\n"},
	    {"Subject: x\nFrom: y\n\nbody\n", false,
	     "text/rfc822-headers\r\n\r\nSubject: x\r\nFrom: y\r\n\r\n--@@--\r\n"},
	    {"\r\nbody only\r\n", false, "text/rfc822-headers\r\n\r\n\r\n--@@--\r\n"},
	    {"Subject: x\r\n\r\nno final crlf", true,
	     "message/rfc822\r\n\r\nSubject: x\r\n\r\nno final crlf\r\n\r\n--@@--\r\n"},
	    {"", true, "message/rfc822\r\n\r\n\r\n--@@--\r\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct dsn_rcpt rc = {.rcpt = "x@y.org", .action = DSN_FAILED};
		struct dsn_report r = report_for(&rc, "@@");
		r.full = cases[i].full;
		char *got = build(&r, cases[i].orig, strlen(cases[i].orig));
		CHECK(got != NULL);
		if (got == NULL)
			continue;
		size_t gl = strlen(got), tl = strlen(cases[i].tail);
		CHECK_INT((int)i, gl >= tl && strcmp(got + gl - tl, cases[i].tail) == 0, 1);
		free(got);
	}
}

/* RFC 2046 5.1.1: the boundary never occurs in the content; "=n" is added
 * until it does not: in the original (also across the 64 KiB block edge of
 * the streaming copy, and with short reads), in a next hop's text. */
static void test_boundary(void)
{
	/* 0: the original holds "--B" and "--B=1": B=2 */
	{
		const char *o = "Subject: --B and --B=1\r\n\r\nx\r\n";
		struct dsn_rcpt rc = {.rcpt = "x@y.org", .action = DSN_FAILED};
		struct dsn_report r = report_for(&rc, "B");
		char *got = build(&r, o, strlen(o));
		CHECK(got && strstr(got, "\tboundary=\"B=2\"\r\n") != NULL);
		CHECK(got && count(got, "\r\n--B=2\r\n") == 3 &&
		      count(got, "\r\n--B=2--\r\n") == 1);
		free(got);
	}
	/* 1: the next hop's reply names the boundary */
	{
		struct dsn_rcpt rc = {.rcpt = "x@y.org",
		                      .action = DSN_FAILED,
		                      .remote_mta = "mx",
		                      .diag = "550 no --B here",
		                      .diag_remote = true};
		struct dsn_report r = report_for(&rc, "B");
		char *got = build(&r, orig1, strlen(orig1));
		CHECK(got && strstr(got, "\tboundary=\"B=1\"\r\n") != NULL);
		free(got);
	}
	/* 2, 3: RET=FULL of 200 KB with the boundary straddling the first block
	 * edge (65536), whole reads and 1000-octet short reads */
	for (int shortr = 0; shortr < 2; shortr++) {
		size_t n = 200000;
		char *o = xmalloc(n + 1);
		memcpy(o, "Subject: big\r\n\r\n", 16);
		for (size_t i = 16; i < n; i++)
			o[i] = (i % 76 == 74) ? '\r' : (i % 76 == 75) ? '\n' : 'a' + (char)(i % 26);
		memcpy(o + 65536 - 3, "BNDRY", 5);
		o[n] = '\0';
		struct dsn_rcpt rc = {.rcpt = "x@y.org", .action = DSN_FAILED};
		struct dsn_report r = report_for(&rc, "BNDRY");
		r.full = true;
		r.full_max = 1000000;
		struct mem m = {o, n, -1, shortr ? 1000 : 0};
		struct buf b = BUF_INIT;
		char *err = NULL;
		CHECK_INT(2 + shortr, dsn_write(&r, mem_read, &m, n, buf_write, &b, &err), 0);
		buf_appends(&b, "");
		CHECK_INT(2 + shortr, strstr(b.data, "\tboundary=\"BNDRY=1\"\r\n") != NULL, 1);
		/* the original went in whole and unchanged */
		CHECK_INT(2 + shortr, memmem(b.data, b.len, o, n) != NULL, 1);
		free(err);
		buf_free(&b);
		free(o);
	}
}

/* Long or hostile next-hop texts: folded at spaces to 78 columns (RFC 5322
 * 2.2.3), a run without spaces cut below 998, CR/LF cannot start a field,
 * more than DSN_DIAG_MAX cut with "...". */
static void test_long_diag(void)
{
	struct buf d = BUF_INIT;
	for (int i = 0; i < 60; i++)
		buf_printf(&d, "word%02d ", i);
	char *longword = xmalloc(3001);
	memset(longword, 'x', 3000);
	longword[3000] = '\0';
	static const char *inject = "550 bad\r\nAction: delivered\r\nStatus: 2.0.0";
	const char *diags[] = {d.data, longword, inject};
	for (int i = 0; i < 3; i++) {
		struct dsn_rcpt rc = {.rcpt = "x@y.org",
		                      .action = DSN_FAILED,
		                      .remote_mta = "mx.y.org",
		                      .diag = diags[i],
		                      .diag_remote = true};
		struct dsn_report r = report_for(&rc, "b");
		char *got = build(&r, orig1, strlen(orig1));
		CHECK(got != NULL);
		if (got == NULL)
			continue;
		CHECK_INT(i, lines_ok(got), 1);
		if (i == 0) {
			/* folded: continuation lines start with a space, unfold back */
			CHECK_INT(i, strstr(got, "Diagnostic-Code: smtp; word00 word01") != NULL,
			          1);
			const char *p = strstr(got, "Diagnostic-Code:");
			const char *end = p ? strstr(p, "\r\n\r\n") : NULL;
			CHECK(p && end);
			if (p && end) {
				struct buf u = BUF_INIT;
				for (const char *q = p; q < end; q++) {
					if (q[0] == '\r' && q[1] == '\n' && q[2] == ' ') {
						q++;
						continue;
					}
					if (q[0] == '\r' && q[1] == '\n')
						break;
					buf_appendc(&u, *q);
				}
				CHECK(u.len <= 78 * 10); /* sanity */
				char *want = xasprintf("Diagnostic-Code: smtp; %.*s",
				                       (int)d.len - 1, d.data);
				CHECK_STR(i, u.data, want);
				free(want);
				buf_free(&u);
			}
			CHECK_INT(i, strstr(got, "\r\n word") != NULL, 1);
		} else if (i == 1) {
			CHECK_INT(i, strstr(got, "xxx...") != NULL, 1);
			CHECK_INT(i, count(got, "x") >= 2 * DSN_DIAG_MAX, 1);
		} else {
			CHECK_INT(i, strstr(got, "\r\nAction: delivered") == NULL, 1);
			CHECK_INT(i, strstr(got, "\r\nStatus: 2.0.0") == NULL, 1);
			CHECK_INT(
			    i,
			    strstr(got, "smtp; 550 bad Action: delivered Status: 2.0.0\r\n") !=
			        NULL,
			    1);
		}
		free(got);
	}
	free(longword);
	buf_free(&d);
}

/* 8-bit octets in what goes in: the parts say 8bit (RFC 2045 6.4, RFC 6152). */
static void test_8bit(void)
{
	const char *o = "Subject: caf\xc3\xa9\r\n\r\nx\r\n";
	struct dsn_rcpt rc = {.rcpt = "x@y.org", .action = DSN_FAILED};
	struct dsn_report r = report_for(&rc, "b");
	char *got = build(&r, o, strlen(o));
	CHECK(got && count(got, "Content-Transfer-Encoding: 8bit\r\n") == 2);
	free(got);
	got = build(&r, orig1, strlen(orig1));
	CHECK(got && strstr(got, "Content-Transfer-Encoding") == NULL);
	free(got);
}

static void test_read_error(void)
{
	struct dsn_rcpt rc = {.rcpt = "x@y.org", .action = DSN_FAILED};
	struct dsn_report r = report_for(&rc, "b");
	struct mem m = {orig1, strlen(orig1), 5, 0};
	struct buf b = BUF_INIT;
	char *err = NULL;
	CHECK_INT(1, dsn_write(&r, mem_read, &m, m.n, buf_write, &b, &err), -1);
	CHECK(err != NULL && strstr(err, "read original") != NULL);
	CHECK_INT(2, b.len, 0);
	free(err);
	buf_free(&b);
}

static void test_xtext(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"abc", "abc"},  {"a+2Bb", "a+b"}, {"+3D+2B", "=+"},
	    {"a+2b", NULL}, /* RFC 3461 4: upper-case hex only */
	    {"a+2", NULL},   {"a+", NULL},     {"a b", NULL},
	    {"a=b", NULL},   {"a+0Ab", NULL}, /* decodes to LF */
	    {"a+C3b", NULL},                  /* decodes to 8-bit */
	    {"", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = dsn_xtext_decode(cases[i].in);
		CHECK_STR((int)i, got, cases[i].want);
		free(got);
	}
}

static void test_kind(void)
{
	struct dsn_rcpt v[3] = {
	    {.action = DSN_DELIVERED}, {.action = DSN_DELAYED}, {.action = DSN_FAILED}};
	CHECK_INT(1, dsn_kind(v, 1), DSN_DELIVERED);
	CHECK_INT(2, dsn_kind(v, 2), DSN_DELAYED);
	CHECK_INT(3, dsn_kind(v, 3), DSN_FAILED);
	CHECK_INT(4, dsn_kind(v + 2, 1), DSN_FAILED);
}

/* ---- bounce_send against a real store ---- */

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

struct waiter {
	struct loop *l;
	int result, calls;
	bool timed_out;
	int kicks;
};

static void sent_cb(void *arg, int result)
{
	struct waiter *w = arg;
	w->result = result;
	w->calls++;
	loop_stop(w->l);
}

static void kick_cb(void *arg)
{
	struct waiter *w = arg;
	w->kicks++;
}

static void timeout_cb(void *arg)
{
	struct waiter *w = arg;
	w->timed_out = true;
	loop_stop(w->l);
}

static void wait_sent(struct waiter *w)
{
	struct timer *t = loop_timer_add(w->l, 30000, timeout_cb, w);
	loop_run(w->l);
	if (!w->timed_out)
		loop_timer_cancel(w->l, &t);
	CHECK(!w->timed_out);
	CHECK_INT(0, w->calls, 1);
}

struct list_acc {
	int n;
	uint32_t last_uid;
};
static void mail_cb(void *arg, const struct store_mail_info *m)
{
	struct list_acc *a = arg;
	a->n++;
	a->last_uid = m->uid;
}
static void queue_cb(void *arg, const char *name, const char *detail)
{
	struct buf *b = arg;
	buf_printf(b, "%s|%s;", name, detail);
}

static int inbox_count(struct store *st, const char *user, uint32_t *last_uid)
{
	struct list_acc a = {0};
	char *err = NULL;
	if (store_mail_list(st, user, NULL, mail_cb, &a, &err) != 0) {
		printf("  store_mail_list: %s\n", err);
		free(err);
		return -1;
	}
	if (last_uid)
		*last_uid = a.last_uid;
	return a.n;
}

/* A verdict of ours after connecting (over the next hop's SIZE, SMTPUTF8 not
 * offered, connection lost before the final reply) names the Remote-MTA but
 * is not the remote's words: RFC 3464 2.3.6 keeps "smtp;" for those. */
static void test_local_verdict(void)
{
	static const struct {
		const char *status, *diag;
		bool remote;
		const char *want;
	} t[] = {
	    {"5.3.4", "message size 900000 exceeds the next hop's SIZE 1000", false,
	     "Diagnostic-Code: X-Postern; message size 900000 exceeds the next hop's"},
	    {"5.6.7", "SMTPUTF8 needed and not offered", false,
	     "Diagnostic-Code: X-Postern; SMTPUTF8 needed and not offered\r\n"},
	    {"4.4.2", "connection lost", false, "Diagnostic-Code: X-Postern; connection lost\r\n"},
	    {"5.1.1", "550 5.1.1 no such user", true,
	     "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct dsn_rcpt rc = {.rcpt = "x@y.org",
		                      .action = DSN_FAILED,
		                      .status = t[i].status,
		                      .remote_mta = "mx.y.org",
		                      .diag = t[i].diag,
		                      .diag_remote = t[i].remote};
		struct dsn_report r = report_for(&rc, "b");
		char *got = build(&r, orig1, strlen(orig1));
		CHECK(got != NULL);
		if (got == NULL)
			continue;
		CHECK_INT((int)i, strstr(got, t[i].want) != NULL, 1);
		CHECK_INT((int)i, strstr(got, "Remote-MTA: dns; mx.y.org\r\n") != NULL, 1);
		CHECK_INT((int)i, count(got, "smtp;") == (t[i].remote ? 1 : 0), 1);
		CHECK_INT((int)i, strstr(got, "host mx.y.org said:") != NULL, t[i].remote);
		free(got);
	}
}

static void test_bounce_send(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_dsn.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		CHECK(0);
		return;
	}
	char *path = xasprintf("%s/data", tmpdir), *err = NULL;
	struct store *st = store_open(path, &err);
	free(path);
	CHECK(st != NULL);
	if (st == NULL) {
		free(err);
		return;
	}
	struct loop *l = loop_new();
	struct pool *p = pool_new(l, 2);
	CHECK_INT(1, store_domain_add(st, "example.org", &err), 0);
	CHECK_INT(2, store_user_add(st, "alice@example.org", "x", &err), 0);
	CHECK_INT(3, store_alias_add(st, "list@example.org", "alice@example.org", &err), 0);
	CHECK_INT(4, store_alias_add(st, "list@example.org", "far@remote.net", &err), 0);
	CHECK_INT(5, store_start(st, l, 0), 0);

	char orig_path[128];
	snprintf(orig_path, sizeof orig_path, "%s/orig", tmpdir);
	FILE *f = fopen(orig_path, "wb");
	fputs(orig1, f);
	fclose(f);
	int fd = open(orig_path, O_RDONLY);
	CHECK(fd >= 0);

	struct bounce_rcpt rc[3] = {
	    {.rcpt = "bob@example.net",
	     .action = BOUNCE_FAILED,
	     .status = "5.1.1",
	     .remote_mta = "mx.example.net",
	     .diag = "550 5.1.1 no such user",
	     .diag_remote = true},
	    {.rcpt = "quiet@example.net", .notify = "NEVER", .action = BOUNCE_FAILED},
	    {.rcpt = "ok@example.net", .notify = "FAILURE", .action = BOUNCE_DELIVERED},
	};
	struct bounce_msg m = {.queue_id = "QB1",
	                       .mail_from = "alice@example.org",
	                       .ret = "FULL",
	                       .received = 1764640000,
	                       .fd = fd,
	                       .size = strlen(orig1),
	                       .rcpt = rc,
	                       .n_rcpt = 3};
	struct waiter w = {.l = l};

	/* 1: local sender: one DSN in its INBOX, listing bob only */
	bounce_send(st, p, "mail.example.org", &m, kick_cb, &w, sent_cb, &w);
	close(fd); /* bounce_send copied what it needs */
	fd = -1;
	wait_sent(&w);
	CHECK_INT(10, w.result, 0);
	CHECK_INT(11, w.kicks, 0);
	uint32_t uid = 0;
	CHECK_INT(12, inbox_count(st, "alice@example.org", &uid), 1);
	int bfd = -1;
	if (store_mail_open(st, "alice@example.org", NULL, 0, uid, &bfd, &err) == 0) {
		char blob[16384];
		ssize_t n = read(bfd, blob, sizeof blob - 1);
		close(bfd);
		blob[n > 0 ? n : 0] = '\0';
		CHECK_INT(13,
		          strncmp(blob,
		                  "Return-Path: <>\r\nFrom: Mail Delivery System "
		                  "<MAILER-DAEMON@mail.example.org>\r\nTo: "
		                  "<alice@example.org>\r\nSubject: Undelivered Mail "
		                  "Returned to Sender\r\n",
		                  136),
		          0);
		CHECK_INT(14, strstr(blob, "Final-Recipient: rfc822; bob@example.net\r\n") != NULL,
		          1);
		CHECK_INT(15, strstr(blob, "quiet@example.net") == NULL, 1);
		CHECK_INT(16, strstr(blob, "ok@example.net") == NULL, 1);
		CHECK_INT(17, strstr(blob, "X-Postern-Queue-ID: QB1\r\n") != NULL, 1);
		char *whole = xasprintf("Content-Type: message/rfc822\r\n\r\n%s", orig1);
		CHECK_INT(18, strstr(blob, whole) != NULL, 1); /* RET=FULL */
		free(whole);
		CHECK_INT(19, lines_ok(blob + 0), 1);
	} else {
		printf("  store_mail_open: %s\n", err);
		free(err);
		err = NULL;
		CHECK(0);
	}

	fd = open(orig_path, O_RDONLY);
	/* 2: null sender: dropped, nothing stored, cb 0 */
	m.fd = fd;
	m.mail_from = "";
	w.calls = 0;
	bounce_send(st, p, "mail.example.org", &m, kick_cb, &w, sent_cb, &w);
	wait_sent(&w);
	CHECK_INT(20, w.result, 0);
	CHECK_INT(21, inbox_count(st, "alice@example.org", NULL), 1);

	/* 3: nobody asked (NEVER and FAILURE-only for a success): nothing */
	m.mail_from = "alice@example.org";
	m.rcpt = rc + 1;
	m.n_rcpt = 2;
	w.calls = 0;
	bounce_send(st, p, "mail.example.org", &m, kick_cb, &w, sent_cb, &w);
	wait_sent(&w);
	CHECK_INT(30, w.result, 0);
	CHECK_INT(31, inbox_count(st, "alice@example.org", NULL), 1);

	/* 4: a remote sender: one queue entry from <>, then the kick */
	m.mail_from = "someone@remote.net";
	m.rcpt = rc;
	m.n_rcpt = 1;
	w.calls = 0;
	bounce_send(st, p, "mail.example.org", &m, kick_cb, &w, sent_cb, &w);
	wait_sent(&w);
	CHECK_INT(40, w.result, 0);
	CHECK_INT(41, w.kicks, 1);
	struct buf q = BUF_INIT;
	store_queue_list(st, queue_cb, &q);
	buf_appends(&q, "");
	CHECK_INT(42, count(q.data, "someone@remote.net"), 1);
	buf_free(&q);

	/* 5: an unknown local sender: dropped (logged), cb 0 */
	m.mail_from = "nobody@example.org";
	w.calls = 0;
	bounce_send(st, p, "mail.example.org", &m, kick_cb, &w, sent_cb, &w);
	wait_sent(&w);
	CHECK_INT(50, w.result, 0);

	/* 6: a local alias with a local and a remote target: INBOX and queue */
	m.mail_from = "list@example.org";
	w.calls = 0;
	w.kicks = 0;
	bounce_send(st, p, "mail.example.org", &m, kick_cb, &w, sent_cb, &w);
	wait_sent(&w);
	CHECK_INT(60, w.result, 0);
	CHECK_INT(61, w.kicks, 1);
	CHECK_INT(62, inbox_count(st, "alice@example.org", NULL), 2);
	store_queue_list(st, queue_cb, &q);
	buf_appends(&q, "");
	CHECK_INT(63, count(q.data, "far@remote.net"), 1);
	buf_free(&q);

	/* 7: the original's blob is gone (fd -1): the DSN goes without it,
	 * result 0, not an error retried for ever */
	m.mail_from = "alice@example.org";
	m.fd = -1;
	w.calls = 0;
	bounce_send(st, p, "mail.example.org", &m, kick_cb, &w, sent_cb, &w);
	wait_sent(&w);
	CHECK_INT(70, w.result, 0);
	uid = 0;
	CHECK_INT(71, inbox_count(st, "alice@example.org", &uid), 3);
	bfd = -1;
	if (store_mail_open(st, "alice@example.org", NULL, 0, uid, &bfd, &err) == 0) {
		char blob[16384];
		ssize_t n = read(bfd, blob, sizeof blob - 1);
		close(bfd);
		blob[n > 0 ? n : 0] = '\0';
		CHECK_INT(72, strstr(blob, "Content-Type: message/delivery-status") != NULL, 1);
		CHECK_INT(73, strstr(blob, "text/rfc822-headers") == NULL, 1);
		CHECK_INT(74, strstr(blob, "could not be read any more") != NULL, 1);
		CHECK_INT(75, strstr(blob, "Subject: hi") == NULL, 1);
	} else {
		free(err);
		CHECK(0);
	}

	close(fd);
	pool_free(&p);
	store_close(&st);
	loop_free(&l);
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	setenv("TZ", "UTC", 1);
	test_run("exact", test_exact);
	test_run("kinds", test_kinds);
	test_run("ret_full", test_ret_full);
	test_run("headers_capped", test_headers_capped);
	test_run("original_shapes", test_original_shapes);
	test_run("boundary", test_boundary);
	test_run("long_diag", test_long_diag);
	test_run("8bit", test_8bit);
	test_run("read_error", test_read_error);
	test_run("xtext", test_xtext);
	test_run("kind", test_kind);
	test_run("local_verdict", test_local_verdict);
	test_run("bounce_send", test_bounce_send);
	return test_done("test_dsn");
}
