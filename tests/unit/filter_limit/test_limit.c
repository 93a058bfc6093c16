/* Rate and duplicate limits (src/filter/limit.c, fingerprint.c) with a fake
 * clock: the sliding hour windows (N allowed, N+1 refused, freed minute by
 * minute), the duplicate check (distinct recipients, window, exemptions),
 * one notice per sender and hour, the LRU bound, and the fingerprint's
 * normalisation (header skipped, case and whitespace, addresses, numbers,
 * salutations, chunking). */
#include "../test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "filter/limit.h"

#define T0 ((time_t)1800000000) /* a minute boundary: 1800000000 = 30000000 * 60 */

static int notices;
static char last_subject[256], last_body[2048];

static void on_notice(void *arg, const char *subject, const char *body)
{
	notices++;
	snprintf(last_subject, sizeof last_subject, "%s", subject);
	snprintf(last_body, sizeof last_body, "%s", body);
}

static struct config cfg;

static struct limit *setup(const char *const *opts)
{
	char *err = NULL;

	config_free(&cfg);
	config_defaults(&cfg);
	for (size_t i = 0; opts != NULL && opts[i] != NULL; i += 2)
		if (config_set(&cfg, opts[i], opts[i + 1], &err) < 0) {
			printf("config_set %s: %s\n", opts[i], err);
			exit(1);
		}
	notices = 0;
	last_subject[0] = last_body[0] = '\0';
	return limit_new(&cfg, on_notice, NULL);
}

static uint64_t fp_of(const char *msg, size_t piece)
{
	struct limit_fp f;
	size_t n = strlen(msg);

	limit_fp_init(&f);
	for (size_t i = 0; i < n; i += piece)
		limit_fp_feed(&f, msg + i, n - i < piece ? n - i : piece);
	return limit_fp_final(&f);
}

static const struct limit_sender alice = {"alice@example.org", "192.0.2.1", "alice@example.org", false};
static const struct limit_sender bob_sender = {"bob@example.org", "192.0.2.1", "bob@example.org", false};

static void test_user_messages(void)
{
	static const char *const o[] = {"rate_user_messages", "3", NULL};
	struct limit *l = setup(o);
	struct limit_reply r;

	for (int i = 0; i < 3; i++) {
		limit_mail(l, &alice, T0 + i, &r);
		CHECK_INT(i, r.code, 0);
		limit_delivered(l, &alice, 0, NULL, 0, T0 + i);
	}
	limit_mail(l, &alice, T0 + 10, &r);
	CHECK_INT(3, r.code, 451);
	CHECK_STR(3, r.ecode, "4.7.1");
	CHECK_STR(3, r.text, "too many messages within 1h (4, limit 3); try again later");
	CHECK_INT(3, notices, 1);
	CHECK(strstr(last_subject, "alice@example.org") != NULL);
	CHECK(strstr(last_subject, "user_messages") != NULL);
	CHECK(strstr(last_body, "4 messages within 1h, the limit is 3") != NULL);
	/* another user is not affected; the IP key is not used for a user */
	struct limit_sender bob = {"bob@example.org", "192.0.2.1", "bob@example.org", false};
	limit_mail(l, &bob, T0 + 10, &r);
	CHECK_INT(4, r.code, 0);
	/* refused again: no second notice within the hour */
	limit_mail(l, &alice, T0 + 1800, &r);
	CHECK_INT(5, r.code, 451);
	CHECK_INT(5, notices, 1);
	/* 59 minutes later the first minute's messages still count: the
	 * window is the last 60 one-minute buckets */
	limit_mail(l, &alice, T0 + 59 * 60 + 30, &r);
	CHECK_INT(6, r.code, 451);
	/* after an hour they are gone */
	limit_mail(l, &alice, T0 + 3600, &r);
	CHECK_INT(7, r.code, 0);
	limit_free(&l);
	CHECK(l == NULL);
}

static void test_sliding(void)
{
	/* 2 per hour: one at minute 0, one at minute 30; at minute 60 the first
	 * has left the window, the second has not */
	static const char *const o[] = {"rate_ip_messages", "2", NULL};
	struct limit *l = setup(o);
	struct limit_sender mx = {NULL, "198.51.100.7", "x@remote.test", false};
	struct limit_reply r;

	limit_delivered(l, &mx, 0, NULL, 0, T0);
	limit_delivered(l, &mx, 0, NULL, 0, T0 + 1800);
	limit_mail(l, &mx, T0 + 1801, &r);
	CHECK_INT(1, r.code, 451);
	CHECK_STR(1, r.text, "too many messages within 1h (3, limit 2); try again later");
	limit_mail(l, &mx, T0 + 3600, &r);
	CHECK_INT(2, r.code, 0);
	limit_delivered(l, &mx, 0, NULL, 0, T0 + 3600);
	limit_mail(l, &mx, T0 + 3601, &r);
	CHECK_INT(3, r.code, 451);
	/* a clock that goes back does not free anything */
	limit_mail(l, &mx, T0, &r);
	CHECK_INT(4, r.code, 451);
	/* 0 = off */
	static const char *const off[] = {"rate_ip_messages", "0", NULL};
	limit_free(&l);
	l = setup(off);
	for (int i = 0; i < 100; i++)
		limit_delivered(l, &mx, 0, NULL, 0, T0);
	limit_mail(l, &mx, T0, &r);
	CHECK_INT(5, r.code, 0);
	limit_free(&l);
}

static void test_recipients(void)
{
	static const char *const o[] = {"rate_user_recipients", "5", "dup_exempt",
					 "list@lists.example.org, @news.example.org", NULL};
	struct limit *l = setup(o);
	struct limit_reply r;
	const char *rc[] = {"a@x.test", "b@x.test", "c@x.test"};

	limit_delivered(l, &alice, 1, rc, 3, T0);
	limit_rcpt(l, &alice, 0, T0 + 1, &r);
	CHECK_INT(1, r.code, 0);
	limit_rcpt(l, &alice, 1, T0 + 1, &r);
	CHECK_INT(2, r.code, 0);
	limit_rcpt(l, &alice, 2, T0 + 1, &r); /* 3 + 2 + 1 = 6 > 5 */
	CHECK_INT(3, r.code, 451);
	CHECK_STR(3, r.text, "too many recipients within 1h (6, limit 5); try again later");
	/* exempt by envelope sender, and by @domain: no recipient rate */
	struct limit_sender lst = {"alice@example.org", "192.0.2.1", "List@Lists.Example.org", false};
	limit_rcpt(l, &lst, 100, T0 + 1, &r);
	CHECK_INT(4, r.code, 0);
	struct limit_sender news = {"carol@news.example.org", "192.0.2.1", "x@y.test", false};
	limit_rcpt(l, &news, 100, T0 + 1, &r);
	CHECK_INT(5, r.code, 0);
	limit_free(&l);

	/* an MX client's envelope sender: exempt while it is not known to be
	 * unverified (RCPT), not once SPF did not pass it (the end of data) */
	static const char *const o2[] = {"rate_ip_recipients", "5", "dup_exempt",
					  "list@lists.example.org, @news.example.org", NULL};
	l = setup(o2);
	struct limit_sender mx_list = {NULL, "198.51.100.7", "list@lists.example.org", false};
	limit_rcpt(l, &mx_list, 100, T0 + 1, &r);
	CHECK_INT(6, r.code, 0);
	mx_list.unverified = true;
	limit_rcpt(l, &mx_list, 100, T0 + 1, &r);
	CHECK_INT(7, r.code, 451);
	struct limit_sender mx_dom = {NULL, "198.51.100.7", "x@news.example.org", true};
	limit_rcpt(l, &mx_dom, 100, T0 + 1, &r);
	CHECK_INT(8, r.code, 451);
	mx_dom.unverified = false;
	limit_rcpt(l, &mx_dom, 100, T0 + 1, &r);
	CHECK_INT(9, r.code, 0);
	limit_free(&l);
}

static const char *const many[] = {
    "r0@x.test",  "r1@x.test",  "r2@x.test",  "r3@x.test",  "r4@x.test",  "r5@x.test",
    "r6@x.test",  "r7@x.test",  "r8@x.test",  "r9@x.test",  "r10@x.test", "r11@x.test",
};

static void test_duplicates(void)
{
	static const char *const o[] = {"dup_recipients", "5", "dup_window", "10m", NULL};
	struct limit *l = setup(o);
	struct limit_reply r;
	uint64_t fp = 0x1234;

	/* one recipient per message: 5 pass, the 6th distinct is refused */
	for (int i = 0; i < 5; i++) {
		limit_end(l, &alice, fp, &many[i], 1, T0 + i, &r);
		CHECK_INT(i, r.code, 0);
		limit_delivered(l, &alice, fp, &many[i], 1, T0 + i);
	}
	/* a recipient already counted is not a new one */
	limit_end(l, &alice, fp, &many[2], 1, T0 + 10, &r);
	CHECK_INT(10, r.code, 0);
	limit_end(l, &alice, fp, &many[5], 1, T0 + 10, &r);
	CHECK_INT(11, r.code, 451);
	CHECK_STR(11, r.ecode, "4.7.1");
	CHECK_STR(11, r.text,
		  "too many recipients for the same message within 10m (6, limit 5); try "
		  "again later");
	CHECK_INT(11, notices, 1);
	CHECK(strstr(last_subject, "duplicate") != NULL);
	CHECK(strstr(last_body, "6 distinct recipients of the same message within 10m") !=
	      NULL);
	/* other content is not affected */
	limit_end(l, &alice, fp + 1, &many[5], 1, T0 + 10, &r);
	CHECK_INT(12, r.code, 0);
	/* every further copy is refused; one notice only */
	for (int i = 6; i < 12; i++) {
		limit_end(l, &alice, fp, &many[i], 1, T0 + 20, &r);
		CHECK_INT(i + 100, r.code, 451);
	}
	CHECK_INT(13, notices, 1);
	/* after the window the recipients are forgotten */
	limit_end(l, &alice, fp, &many[6], 1, T0 + 4 + 600, &r);
	CHECK_INT(14, r.code, 0);
	limit_free(&l);

	/* many recipients in one message (the same one twice counts once) */
	l = setup(o);
	limit_end(l, &alice, fp, many, 5, T0, &r);
	CHECK_INT(20, r.code, 0);
	limit_release(l, &alice, fp, many, 5, T0); /* not stored: counts nothing */
	const char *dupl[] = {"a@x.test", "A@X.TEST", "b@x.test"};
	limit_end(l, &alice, fp, dupl, 3, T0, &r);
	CHECK_INT(21, r.code, 0);
	limit_release(l, &alice, fp, dupl, 3, T0);
	limit_end(l, &alice, fp, many, 12, T0, &r);
	CHECK_INT(22, r.code, 451);
	CHECK_STR(22, r.text,
		  "too many recipients for the same message within 10m (6, limit 5); try "
		  "again later");
	limit_delivered(l, &alice, fp, many, 3, T0);
	limit_end(l, &alice, fp, many + 3, 3, T0, &r);
	CHECK_INT(23, r.code, 451);
	limit_end(l, &alice, fp, many + 3, 2, T0, &r);
	CHECK_INT(24, r.code, 0);
	limit_release(l, &alice, fp, many + 3, 2, T0);
	/* fingerprint 0 (no text): not checked */
	limit_end(l, &alice, 0, many, 12, T0, &r);
	CHECK_INT(25, r.code, 0);
	limit_free(&l);

	/* exempt senders: user name, envelope sender */
	static const char *const ex[] = {"dup_recipients", "5", "dup_exempt",
					  "alice@example.org", NULL};
	l = setup(ex);
	for (int i = 0; i < 12; i++)
		limit_delivered(l, &alice, fp, &many[i], 1, T0);
	limit_end(l, &alice, fp, many, 12, T0, &r);
	CHECK_INT(30, r.code, 0);
	limit_free(&l);
	/* dup_recipients 0: off */
	static const char *const off[] = {"dup_recipients", "0", NULL};
	l = setup(off);
	limit_end(l, &alice, fp, many, 12, T0, &r);
	CHECK_INT(31, r.code, 0);
	limit_free(&l);
}

static void test_notice_hourly(void)
{
	static const char *const o[] = {"rate_user_messages", "1", NULL};
	struct limit *l = setup(o);
	struct limit_reply r;

	limit_delivered(l, &alice, 0, NULL, 0, T0);
	limit_mail(l, &alice, T0 + 1, &r);
	limit_mail(l, &alice, T0 + 2, &r);
	CHECK_INT(1, notices, 1);
	limit_delivered(l, &alice, 0, NULL, 0, T0 + 3599);
	limit_mail(l, &alice, T0 + 3601, &r);
	CHECK_INT(2, r.code, 451);
	CHECK_INT(2, notices, 2);
	limit_free(&l);
	/* limit_notify = no: refused, but no notice */
	static const char *const quiet[] = {"rate_user_messages", "1", "limit_notify", "no", NULL};
	l = setup(quiet);
	limit_delivered(l, &alice, 0, NULL, 0, T0);
	limit_mail(l, &alice, T0 + 1, &r);
	CHECK_INT(3, r.code, 451);
	CHECK_INT(3, notices, 0);
	limit_free(&l);
}

static void test_lru(void)
{
	/* more senders than the table holds: the oldest are forgotten, the
	 * recent ones kept, memory stays bounded */
	static const char *const o[] = {"rate_ip_messages", "1", NULL};
	struct limit *l = setup(o);
	struct limit_reply r;
	char ip[32];

	for (int i = 0; i < 10000; i++) {
		snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
		struct limit_sender s = {NULL, ip, "", false};
		limit_delivered(l, &s, 0, NULL, 0, T0);
	}
	struct limit_sender first = {NULL, "10.0.0.1", "", false};
	limit_mail(l, &first, T0, &r);
	CHECK_INT(1, r.code, 0); /* forgotten */
	snprintf(ip, sizeof ip, "10.%d.%d.1", 9999 / 256, 9999 % 256);
	struct limit_sender last = {NULL, ip, "", false};
	limit_mail(l, &last, T0, &r);
	CHECK_INT(2, r.code, 451);
	limit_free(&l);
}

/* Several transactions of one sender between limit_end and limit_delivered
 * (parallel sessions of a compromised account): each go-on is held as in
 * flight, so the ones after the limit are refused before any is stored. On
 * the old code limit_end counted nothing: all of them passed. */
static void test_parallel(void)
{
	static const char *const o[] = {"dup_recipients", "5", "dup_window", "10m",
					"rate_user_messages", "8", "rate_user_recipients", "30",
					NULL};
	struct limit *l = setup(o);
	struct limit_reply r;
	uint64_t fp = 0x77;

	/* 12 sessions, one recipient each, same body: 5 pass, 7 refused */
	int pass = 0;
	for (int i = 0; i < 12; i++) {
		limit_mail(l, &alice, T0, &r);
		CHECK_INT(i, r.code, 0);
		limit_end(l, &alice, fp, &many[i], 1, T0, &r);
		if (r.code == 0)
			pass++;
		else
			CHECK_INT(100 + i, r.code, 451);
	}
	CHECK_INT(1, pass, 5);
	/* held messages count at MAIL too: 5 in flight, 8 per hour */
	limit_end(l, &alice, fp + 1, &many[0], 1, T0, &r);
	limit_end(l, &alice, fp + 2, &many[0], 1, T0, &r);
	limit_end(l, &alice, fp + 3, &many[0], 1, T0, &r);
	CHECK_INT(2, r.code, 0);
	limit_mail(l, &alice, T0, &r); /* 8 held + 1 */
	CHECK_INT(3, r.code, 451);
	CHECK_STR(3, r.text, "too many messages within 1h (9, limit 8); try again later");
	limit_end(l, &alice, fp + 4, &many[0], 1, T0, &r);
	CHECK_INT(4, r.code, 451);
	/* release three of the others: room again */
	limit_release(l, &alice, fp + 1, &many[0], 1, T0);
	limit_release(l, &alice, fp + 2, &many[0], 1, T0);
	limit_release(l, &alice, fp + 3, &many[0], 1, T0);
	limit_mail(l, &alice, T0, &r);
	CHECK_INT(5, r.code, 0);
	/* confirm two of the five, release three: three more distinct
	 * recipients of the body fit, not four */
	limit_delivered(l, &alice, fp, &many[0], 1, T0 + 1);
	limit_delivered(l, &alice, fp, &many[1], 1, T0 + 1);
	limit_release(l, &alice, fp, &many[2], 1, T0 + 1);
	limit_release(l, &alice, fp, &many[3], 1, T0 + 1);
	limit_release(l, &alice, fp, &many[4], 1, T0 + 1);
	limit_end(l, &alice, fp, many + 6, 4, T0 + 2, &r);
	CHECK_INT(6, r.code, 451);
	limit_end(l, &alice, fp, many + 6, 3, T0 + 2, &r);
	CHECK_INT(7, r.code, 0);
	limit_release(l, &alice, fp, many + 6, 3, T0 + 2);
	/* recipients in flight count for the recipient rate: 2 sent, 28 held */
	const char *rc[28];
	char buf[28][32];
	for (int i = 0; i < 28; i++) {
		snprintf(buf[i], sizeof buf[i], "q%d@y.test", i);
		rc[i] = buf[i];
	}
	limit_end(l, &alice, 0, rc, 28, T0 + 3, &r);
	CHECK_INT(8, r.code, 0);
	limit_rcpt(l, &alice, 0, T0 + 3, &r);
	CHECK_INT(9, r.code, 451);
	limit_end(l, &alice, 0, rc, 1, T0 + 3, &r);
	CHECK_INT(10, r.code, 451);
	CHECK_STR(10, r.text, "too many recipients within 1h (31, limit 30); try again later");
	limit_release(l, &alice, 0, rc, 28, T0 + 3);
	limit_rcpt(l, &alice, 0, T0 + 3, &r);
	CHECK_INT(11, r.code, 0);
	/* a reservation never confirmed nor released is dropped after 10
	 * minutes, even while the sender keeps making others (a lost session
	 * cannot block a busy sender) */
	limit_end(l, &alice, 0, rc, 28, T0 + 4, &r);
	CHECK_INT(12, r.code, 0);
	limit_rcpt(l, &alice, 0, T0 + 300, &r);
	CHECK_INT(13, r.code, 451);
	limit_end(l, &alice, 0, rc, 0, T0 + 300, &r); /* another, never ended */
	CHECK_INT(13, r.code, 0);
	limit_rcpt(l, &alice, 0, T0 + 599, &r);
	CHECK_INT(14, r.code, 451);
	limit_rcpt(l, &alice, 0, T0 + 600, &r);
	CHECK_INT(14, r.code, 0);
	/* a release of recipients never held changes no duplicate count */
	limit_release(l, &alice, fp, many, 3, T0 + 606);
	limit_release(l, &bob_sender, fp, many, 3, T0 + 606);
	limit_end(l, &alice, fp, many + 2, 3, T0 + 606, &r);
	CHECK_INT(15, r.code, 0);
	limit_delivered(l, &alice, fp, many + 2, 3, T0 + 606);
	/* 0 and 1 left the window; 2,3,4 + 5,6,7 */
	limit_end(l, &alice, fp, many + 5, 3, T0 + 607, &r);
	CHECK_INT(16, r.code, 451);
	/* held recipients of a body never confirmed nor released stop counting
	 * after 10 minutes */
	limit_end(l, &alice, fp + 9, many, 5, T0 + 3600, &r);
	CHECK_INT(17, r.code, 0);
	limit_end(l, &alice, fp + 9, many + 5, 1, T0 + 3600 + 599, &r);
	CHECK_INT(18, r.code, 451);
	limit_end(l, &alice, fp + 9, many + 5, 5, T0 + 3600 + 600, &r);
	CHECK_INT(19, r.code, 0);
	limit_free(&l);
}

/* Users and MX client IPs are separate tables: a flood of distinct client
 * IPs does not evict a user's counters (on the old code one shared LRU
 * table of 4096 senders: 4096 deliveries from new IPs reset the user). */
static void test_tables(void)
{
	static const char *const o[] = {"rate_user_messages", "1", "rate_ip_messages", "1",
					NULL};
	struct limit *l = setup(o);
	struct limit_reply r;
	char ip[64];

	limit_end(l, &alice, 0, NULL, 0, T0, &r);
	limit_delivered(l, &alice, 0, NULL, 0, T0);
	for (int i = 0; i < 5000; i++) {
		snprintf(ip, sizeof ip, "2001:db8:%x::1", i);
		struct limit_sender s = {NULL, ip, "", false};
		limit_delivered(l, &s, 0, NULL, 0, T0 + 1);
	}
	limit_mail(l, &alice, T0 + 2, &r);
	CHECK_INT(1, r.code, 451);
	limit_free(&l);
}

/* An IPv6 client is limited by its /64, an IPv4-mapped one by its IPv4
 * address (on the old code each address was a new sender: rotating the
 * interface identifier escaped every per-IP limit). */
static void test_ipv6(void)
{
	static const char *const o[] = {"rate_ip_messages", "2", NULL};
	struct limit *l = setup(o);
	struct limit_reply r;
	struct limit_sender a = {NULL, "2001:db8:1:2::1", "x@r.test", false};
	struct limit_sender b = {NULL, "2001:DB8:1:2:aaaa:bbbb:cccc:dddd", "x@r.test", false};
	struct limit_sender c = {NULL, "2001:db8:1:3::1", "x@r.test", false};
	struct limit_sender m = {NULL, "::ffff:192.0.2.9", "x@r.test", false};
	struct limit_sender v4 = {NULL, "192.0.2.9", "x@r.test", false};

	limit_delivered(l, &a, 0, NULL, 0, T0);
	limit_delivered(l, &b, 0, NULL, 0, T0);
	limit_mail(l, &b, T0, &r);
	CHECK_INT(1, r.code, 451);
	limit_mail(l, &c, T0, &r); /* another /64 */
	CHECK_INT(2, r.code, 0);
	limit_delivered(l, &m, 0, NULL, 0, T0);
	limit_delivered(l, &v4, 0, NULL, 0, T0);
	limit_mail(l, &v4, T0, &r);
	CHECK_INT(3, r.code, 451);
	limit_free(&l);
}

static const char HDR1[] = "Received: from a\r\nMessage-ID: <1@x>\r\nTo: alice@x.test\r\n"
			   "Subject: Offer\r\n\r\n";
static const char HDR2[] = "Received: from b by c\r\nMessage-ID: <2@y>\r\nTo: bob@x.test\r\n"
			   "Subject: Offer\r\n\r\n";

static void test_fingerprint(void)
{
	static const char body[] =
	    "Dear alice@x.test,\r\n\r\nYour account needs verification. Click the link below "
	    "to keep your mailbox active:\r\nhttps://evil.test/v?id=3f2a9c81d0e7&u=alice\r\n"
	    "Thanks, the team\r\n";
	static const struct {
		const char *a, *b;
		bool same;
	} cases[] = {
	    /* 0: headers differ, bodies equal */
	    {"From: x\r\n\r\nHello world, this is the same text in both messages.\r\n",
	     "From: y\r\nTo: z\r\n\r\nHello world, this is the same text in both messages.\r\n",
	     true},
	    /* 1: case and whitespace folded, blank lines ignored */
	    {"\r\nHello   world,\tTHIS is the same text in both messages.\r\n",
	     "\r\n  hello world, this is the\r\n\r\nsame text in both messages.  \r\n", false},
	    {"\r\nHello   world,\tTHIS is the same text in both messages.\r\n",
	     "\r\n\r\n  hello world, this is the same text in both messages.  \r\n\r\n", true},
	    /* 3: a different text */
	    {"\r\nHello world, this is the same text in both messages.\r\n",
	     "\r\nHello world, this is another text in both messages.\r\n", false},
	    /* 4: addresses masked; ids and numbers masked */
	    {"\r\nWrite to alice@x.test about order 12345 ref 9f8e7d6c5b4a (long enough text).\r\n",
	     "\r\nWrite to bob@y.test about order 67890 ref 0a1b2c3d4e5f (long enough text).\r\n",
	     true},
	    /* 5: salutation lines with names dropped */
	    {"\r\nDear Alice,\r\nWe have a great offer for you today, reply to learn more about "
	     "it.\r\n",
	     "\r\nHi Bob Smith!\r\nWe have a great offer for you today, reply to learn more about "
	     "it.\r\n",
	     true},
	    /* 6: but a long line starting with a greeting word is kept */
	    {"\r\nHello there my friend, we have a great offer for you today, reply now.\r\n",
	     "\r\nHello here my friend, we have a great offer for you today, reply now.\r\n",
	     false},
	    /* 7: short bodies: the Subject decides */
	    {"Subject: lunch?\r\n\r\nok\r\n", "Subject: the report\r\n\r\nok\r\n", false},
	    {"Subject: lunch?\r\n\r\nok\r\n", "Subject:  Lunch?\r\n\r\nok\r\n", true},
	    /* 9: folded Subject continues */
	    {"Subject: a\r\n b\r\n\r\nok\r\n", "Subject: a\r\n\r\nok\r\n", false},
	    /* 10: LF-only line ends work too */
	    {"A: b\nSubject: s\n\nsame body text here, long enough to stand alone as a body without any subject.\n",
	     "A: c\r\n\r\nsame body text here, long enough to stand alone as a body without any subject.\r\n", true},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t a = fp_of(cases[i].a, 1000), b = fp_of(cases[i].b, 1000);
		CHECK_INT((int)i, a == b, cases[i].same);
		CHECK_INT((int)i, a != 0, 1);
	}
	/* a per-recipient greeting with the address: same; in any chunking */
	char m1[1024], m2[1024];
	snprintf(m1, sizeof m1, "%s%s", HDR1, body);
	snprintf(m2, sizeof m2, "%s%s", HDR2, body);
	char *p = strstr(m2, "Dear alice@x.test");
	memcpy(p, "Dear bob@xyz.test,", 18); /* same length: the rest stays */
	uint64_t want = fp_of(m1, 1000);
	for (size_t piece = 1; piece < 40; piece++) {
		CHECK_INT((int)piece, fp_of(m1, piece) == want, 1);
		CHECK_INT((int)piece, fp_of(m2, piece) == want, 1);
	}
	/* nothing significant: no fingerprint */
	CHECK_INT(50, fp_of("From: x\r\n\r\n\r\n  \r\n", 7), 0);
	CHECK_INT(51, fp_of("From: x\r\nSubject: y\r\n", 7), fp_of("Subject: y\r\n\r\n", 3));
	CHECK_INT(52, fp_of("", 1), 0);
	/* a long token is hashed in pieces, deterministically */
	char lng[600];
	memset(lng, 'q', sizeof lng);
	memcpy(lng, "\r\n\r\n", 4);
	lng[sizeof lng - 1] = '\0';
	CHECK_INT(53, fp_of(lng, 1) == fp_of(lng, 599), 1);
}

int main(void)
{
	test_run("user_messages", test_user_messages);
	test_run("sliding", test_sliding);
	test_run("recipients", test_recipients);
	test_run("duplicates", test_duplicates);
	test_run("notice_hourly", test_notice_hourly);
	test_run("lru", test_lru);
	test_run("parallel", test_parallel);
	test_run("tables", test_tables);
	test_run("ipv6", test_ipv6);
	test_run("fingerprint", test_fingerprint);
	config_free(&cfg);
	return test_done("test_filter_limit");
}
