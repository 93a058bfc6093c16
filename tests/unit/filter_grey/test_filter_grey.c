/* Unit tests for greylisting (src/filter/grey.c, src/store/grey.c): the
 * triplet life cycle on a fake clock (now is a parameter), the networks
 * (greylist_net4/6), auto-allowlisting, reputation, the caps and the
 * incremental pruning, and the state kept in the store across a restart
 * (written on st->main without a committer, and by the loop's timer through
 * the committer). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "filter/grey.h"
#include "store/store.h"

#define STORE_FIXTURE_NAME "test_filter_grey"
#include "../store_fixture.h"

#define DELAY 300
#define EXPIRE (2 * 86400)
#define ALLOW (35 * 86400)
#define T0 1000000 /* the fake clock's start */

static struct config cfg;

static void cfg_reset(void)
{
	config_free(&cfg);
	config_defaults(&cfg);
	cfg.greylist = true;
	cfg.greylist_delay = DELAY;
	cfg.greylist_expire = EXPIRE;
	cfg.greylist_allow_time = ALLOW;
	cfg.greylist_net4 = 24;
	cfg.greylist_net6 = 64;
}

static struct grey *grey_mem(void)
{
	char *err = NULL;
	struct grey *g = grey_new(NULL, NULL, &cfg, &err);
	CHECK(g != NULL);
	free(err);
	return g;
}

/* One step of a scenario: a check (rcpts "|"-separated) or, when deliver,
 * grey_delivered; then the expected result, wait and reason. */
struct step {
	time_t at;
	const char *ip, *from, *rcpts, *aligned;
	bool deliver, spam;
	enum grey_result want;
	unsigned wait;
	const char *why;
};

static void run_steps(struct grey *g, const struct step *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct step *s = &v[i];
		if (s->deliver) {
			grey_delivered(g, s->ip, s->aligned, s->spam, true, s->at);
			continue;
		}
		char buf[512];
		const char *r[8];
		size_t nr = 0;
		snprintf(buf, sizeof buf, "%s", s->rcpts);
		for (char *p = strtok(buf, "|"); p != NULL && nr < 8; p = strtok(NULL, "|"))
			r[nr++] = p;
		unsigned wait = 12345;
		enum grey_why why = GREY_WHY_OFF;
		enum grey_result got =
			grey_check(g, s->ip, s->from, r, nr, s->aligned, s->at, &wait, &why);
		CHECK_INT((int)i, got, s->want);
		CHECK_INT((int)i, wait, s->wait);
		CHECK_STR((int)i, grey_why_text(why), s->why);
	}
}

#define STEPS(g, v) run_steps(g, v, sizeof(v) / sizeof(v[0]))

static void test_off(void)
{
	cfg_reset();
	cfg.greylist = false;
	struct grey *g = grey_mem();
	static const struct step v[] = {
		{T0, "192.0.2.1", "a@example.org", "u@local.test", NULL, false, false, GREY_PASS,
		 0, "off"},
	};
	STEPS(g, v);
	grey_delivered(g, "192.0.2.1", "example.org", false, true, T0);
	size_t t, nn, d;
	grey_counts(g, &t, &nn, &d);
	CHECK(t == 0 && nn == 0 && d == 0);
	grey_free(&g);
	CHECK(g == NULL);
}

/* greylist_expire not longer than greylist_delay: no retry could pass */
static void test_bad_config(void)
{
	cfg_reset();
	cfg.greylist_delay = 3600;
	cfg.greylist_expire = 3600;
	char *err = NULL;
	struct grey *g = grey_new(NULL, NULL, &cfg, &err);
	CHECK(g == NULL);
	CHECK_STR(1, err, "greylist_expire (3600s) must be longer than greylist_delay (3600s)");
	free(err);
	cfg.greylist = false; /* off: not checked */
	err = NULL;
	g = grey_new(NULL, NULL, &cfg, &err);
	CHECK(g != NULL && err == NULL);
	grey_free(&g);
}

/* RFC 6647: the first attempt is deferred, an early retry too (with the
 * time left), a retry after the delay passes; its network is then allowed
 * for any sender and recipient; another network is not. */
static void test_lifecycle(void)
{
	cfg_reset();
	struct grey *g = grey_mem();
	static const struct step v[] = {
		/* 0 */ {T0, "192.0.2.1", "a@example.org", "u@local.test", NULL, false, false,
			 GREY_DEFER, DELAY, "new"},
		/* 1 */ {T0 + 100, "192.0.2.1", "a@example.org", "u@local.test", NULL, false,
			 false, GREY_DEFER, DELAY - 100, "too early"},
		/* 2: the case of the addresses does not matter; same /24 */
		{T0 + 299, "192.0.2.200", "A@Example.ORG", "U@LOCAL.test", NULL, false, false,
		 GREY_DEFER, 1, "too early"},
		/* 3 */ {T0 + DELAY, "192.0.2.1", "a@example.org", "u@local.test", NULL, false,
			 false, GREY_PASS, 0, "retry"},
		/* 4: not delivered yet: another sender is still new */
		{T0 + DELAY, "192.0.2.1", "b@example.org", "u@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		/* 5 */ {T0 + DELAY, "192.0.2.1", NULL, NULL, NULL, true, false, 0, 0, NULL},
		/* 6: auto-allowlisted network */
		{T0 + DELAY + 1, "192.0.2.77", "c@other.example", "v@local.test", NULL, false,
		 false, GREY_PASS, 0, "allowed network"},
		/* 7: another network, the same triplet */
		{T0 + DELAY + 1, "198.51.100.1", "a@example.org", "u@local.test", NULL, false,
		 false, GREY_DEFER, DELAY, "new"},
		/* 8: the null sender */
		{T0 + DELAY + 1, "203.0.113.5", "", "u@local.test", NULL, false, false, GREY_DEFER,
		 DELAY, "new"},
		/* 9 */ {T0 + 2 * DELAY + 1, "203.0.113.5", "", "u@local.test", NULL, false,
			 false, GREY_PASS, 0, "retry"},
		/* 10: the allowance ends after greylist_allow_time */
		{T0 + DELAY + ALLOW + 1, "192.0.2.77", "c@other.example", "v@local.test", NULL,
		 false, false, GREY_DEFER, DELAY, "new"},
	};
	STEPS(g, v);
	grey_free(&g);
}

/* Several recipients: every triplet is recorded; the wait is the longest. */
static void test_recipients(void)
{
	cfg_reset();
	struct grey *g = grey_mem();
	static const struct step v[] = {
		{T0, "192.0.2.1", "a@example.org", "u1@local.test", NULL, false, false, GREY_DEFER,
		 DELAY, "new"},
		{T0 + 200, "192.0.2.1", "a@example.org", "u2@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		/* u1 may pass, u2 not yet, u3 new */
		{T0 + DELAY, "192.0.2.1", "a@example.org", "u1@local.test|u2@local.test", NULL,
		 false, false, GREY_DEFER, 200, "too early"},
		{T0 + DELAY, "192.0.2.1", "a@example.org", "u1@local.test|u3@local.test", NULL,
		 false, false, GREY_DEFER, DELAY, "new"},
		{T0 + 200 + DELAY, "192.0.2.1", "a@example.org", "u1@local.test|u2@local.test",
		 NULL, false, false, GREY_PASS, 0, "retry"},
		/* a duplicate recipient counts once */
		{T0 + 200 + DELAY, "192.0.2.1", "a@example.org",
		 "u1@local.test|U1@local.test|u2@local.test", NULL, false, false, GREY_PASS, 0,
		 "retry"},
	};
	STEPS(g, v);
	grey_free(&g);
}

/* A retry after greylist_expire starts over. */
static void test_expire(void)
{
	cfg_reset();
	struct grey *g = grey_mem();
	static const struct step v[] = {
		{T0, "192.0.2.1", "a@example.org", "u@local.test", NULL, false, false, GREY_DEFER,
		 DELAY, "new"},
		{T0 + EXPIRE, "192.0.2.1", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_PASS, 0, "retry"},
		{T0 + EXPIRE + 1, "192.0.2.1", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		{T0 + EXPIRE + 1 + DELAY, "192.0.2.1", "a@example.org", "u@local.test", NULL,
		 false, false, GREY_PASS, 0, "retry"},
	};
	STEPS(g, v);
	grey_free(&g);
}

/* IPv6 /64 (greylist_net6), IPv4-mapped addresses count as IPv4, a host
 * prefix (net4 = 32), and something that is not an address. */
static void test_networks(void)
{
	cfg_reset();
	struct grey *g = grey_mem();
	static const struct step v[] = {
		{T0, "2001:db8:1:2::10", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		{T0 + DELAY, "2001:db8:1:2:ffff:ffff:ffff:ffff", "a@example.org", "u@local.test",
		 NULL, false, false, GREY_PASS, 0, "retry"},
		{T0 + DELAY, "2001:db8:1:3::10", "a@example.org", "u@local.test", NULL, false,
		 false, GREY_DEFER, DELAY, "new"},
		{T0, "::ffff:192.0.2.1", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		{T0 + DELAY, "192.0.2.9", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_PASS, 0, "retry"},
		{T0, "not an address", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		{T0 + DELAY, "not an address", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_PASS, 0, "retry"},
	};
	STEPS(g, v);
	grey_free(&g);

	cfg_reset();
	cfg.greylist_net4 = 32;
	g = grey_mem();
	static const struct step w[] = {
		{T0, "192.0.2.1", "a@example.org", "u@local.test", NULL, false, false, GREY_DEFER,
		 DELAY, "new"},
		{T0 + DELAY, "192.0.2.2", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		{T0 + DELAY, "192.0.2.1", "a@example.org", "u@local.test", NULL, false, false,
		 GREY_PASS, 0, "retry"},
	};
	STEPS(g, w);
	grey_free(&g);
}

/* A DMARC-aligned domain whose mail was accepted skips greylisting from any
 * network; mail judged spam lowers it; a spam message allows no network. */
static unsigned check1(struct grey *g, const char *ip, const char *from, const char *rcpt,
		       const char *aligned, time_t now, enum grey_result want, const char *want_why);

static void test_reputation(void)
{
	cfg_reset();
	struct grey *g = grey_mem();
	static const struct step v[] = {
		/* 0: unknown domain: greylisted */
		{T0, "192.0.2.1", "a@example.org", "u@local.test", "example.org", false, false,
		 GREY_DEFER, DELAY, "new"},
		/* 1: judged spam: no network allowance, bad = 1 */
		{T0 + 1, "192.0.2.1", NULL, NULL, "example.org", true, true, 0, 0, NULL},
		{T0 + 2, "192.0.2.1", "a@example.org", "u2@local.test", "example.org", false,
		 false, GREY_DEFER, DELAY, "new"},
		/* 3, 4: two good messages (good 2 > bad 1) */
		{T0 + 3, "198.51.100.1", NULL, NULL, "Example.ORG", true, false, 0, 0, NULL},
		{T0 + 3, "198.51.100.1", NULL, NULL, "example.org", true, false, 0, 0, NULL},
		{T0 + 4, "203.0.113.1", "b@example.org", "u@local.test", "example.org", false,
		 false, GREY_PASS, 0, "reputation"},
		/* not aligned (NULL): the reputation does not apply */
		{T0 + 4, "203.0.113.1", "b@example.org", "u@local.test", NULL, false, false,
		 GREY_DEFER, DELAY, "new"},
		/* another domain */
		{T0 + 4, "203.0.113.1", "b@example.net", "u@local.test", "example.net", false,
		 false, GREY_DEFER, DELAY, "new"},
		/* 8, 9: two spam: bad 3 > good 2 */
		{T0 + 5, "203.0.113.99", NULL, NULL, "example.org", true, true, 0, 0, NULL},
		{T0 + 5, "203.0.113.99", NULL, NULL, "example.org", true, true, 0, 0, NULL},
		{T0 + 6, "203.0.113.1", "c@example.org", "u@local.test", "example.org", false,
		 false, GREY_DEFER, DELAY, "new"},
	};
	STEPS(g, v);
	size_t t, nn, d;
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(1, nn, 1); /* 198.51.100.0/24 only: spam allows no network */
	CHECK_INT(2, d, 1);
	grey_free(&g);

	/* a pass on the domain's reputation allows no network (allow_net
	 * false): another sender from that network is greylisted */
	g = grey_mem();
	grey_delivered(g, "198.51.100.1", "example.org", false, true, T0);
	CHECK_INT(3, check1(g, "203.0.113.1", "b@example.org", "u@local.test", "example.org", T0 + 1,
			    GREY_PASS, "reputation"), 0);
	grey_delivered(g, "203.0.113.1", "example.org", false, false, T0 + 1);
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(4, nn, 1);
	check1(g, "203.0.113.7", "x@elsewhere.example", "u@local.test", NULL, T0 + 2, GREY_DEFER,
	       "new");
	grey_free(&g);
}

/* A full table forgets its oldest entry. */
static void test_cap(void)
{
	cfg_reset();
	struct grey *g = grey_mem();
	grey_set_max(g, 3);
	const char *r[1];
	unsigned wait;
	enum grey_why why;
	char addr[32];
	for (int i = 0; i < 5; i++) {
		snprintf(addr, sizeof addr, "u%d@local.test", i);
		r[0] = addr;
		CHECK_INT(i, grey_check(g, "192.0.2.1", "a@example.org", r, 1, NULL, T0 + i, &wait,
					&why),
			  GREY_DEFER);
	}
	size_t t, nn, d;
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(1, t, 3);
	/* u0 was forgotten: new again; u4 is remembered */
	r[0] = "u4@local.test";
	CHECK_INT(2, grey_check(g, "192.0.2.1", "a@example.org", r, 1, NULL, T0 + 4 + DELAY, &wait,
				&why),
		  GREY_PASS);
	r[0] = "u0@local.test";
	CHECK_INT(3, grey_check(g, "192.0.2.1", "a@example.org", r, 1, NULL, T0 + 4 + DELAY, &wait,
				&why),
		  GREY_DEFER);
	CHECK_STR(3, grey_why_text(why), "new");
	for (int i = 0; i < 5; i++) {
		snprintf(addr, sizeof addr, "192.0.%d.1", i);
		grey_delivered(g, addr, NULL, false, true, T0 + 1000);
	}
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(4, nn, 3);
	grey_free(&g);
}

/* One check of one new recipient; the result, with *why_r. */
static enum grey_result new1(struct grey *g, const char *ip, const char *rcpt, time_t at,
			       unsigned *wait_r, enum grey_why *why_r)
{
	const char *r[1] = {rcpt};
	return grey_check(g, ip, "a@example.org", r, 1, NULL, at, wait_r, why_r);
}

/* greylist_net_new: a network records at most that many new triplets an
 * hour; past it, its new ones are deferred but not recorded, so that a
 * flood from one network cannot push out another's waiting triplet. */
static void test_net_budget(void)
{
	cfg_reset();
	cfg.greylist_net_new = 3;
	struct grey *g = grey_mem();
	grey_set_max(g, 5);
	unsigned wait;
	enum grey_why why;
	char addr[64];
	size_t t, nn, d;
	/* a sender waiting for its retry, from 198.51.100.0/24 */
	CHECK_INT(1, new1(g, "198.51.100.7", "real@local.test", T0, &wait, &why), GREY_DEFER);
	CHECK_STR(1, grey_why_text(why), "new");
	/* a flood of made-up recipients from 192.0.2.0/24: three recorded */
	for (int i = 0; i < 1000; i++) {
		snprintf(addr, sizeof addr, "u%d@local.test", i);
		CHECK_INT(2, new1(g, i % 2 ? "192.0.2.1" : "192.0.2.200", addr, T0 + 1, &wait,
				    &why),
			  GREY_DEFER);
		CHECK_STR(2, grey_why_text(why), i < 3 ? "new" : "network budget");
		CHECK_INT(2, wait, DELAY);
	}
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(3, t, 4);
	/* the real sender's retry passes: its triplet was not pushed out */
	CHECK_INT(4, new1(g, "198.51.100.7", "real@local.test", T0 + DELAY, &wait, &why),
		  GREY_PASS);
	CHECK_STR(4, grey_why_text(why), "retry");
	/* a recorded triplet of the flooding network passes too, and its
	 * network is then allowed (auto-allowlisting): the budget costs a
	 * real sender in that network one recorded triplet, no more */
	CHECK_INT(5, new1(g, "192.0.2.1", "u0@local.test", T0 + 1 + DELAY, &wait, &why),
		  GREY_PASS);
	grey_delivered(g, "192.0.2.1", NULL, false, true, T0 + 1 + DELAY);
	CHECK_INT(5, new1(g, "192.0.2.9", "u999@local.test", T0 + 2 + DELAY, &wait, &why),
		  GREY_PASS);
	CHECK_STR(5, grey_why_text(why), "allowed network");
	/* the budget is per hour: 203.0.113.0/24 spends it, then records again */
	for (int i = 0; i < 4; i++) {
		snprintf(addr, sizeof addr, "w%d@local.test", i);
		CHECK_INT(6, new1(g, "203.0.113.5", addr, T0 + 10, &wait, &why), GREY_DEFER);
		CHECK_STR(6, grey_why_text(why), i < 3 ? "new" : "network budget");
	}
	CHECK_INT(7, new1(g, "203.0.113.5", "w3@local.test", T0 + 10 + 3599, &wait, &why),
		  GREY_DEFER);
	CHECK_STR(7, grey_why_text(why), "network budget");
	CHECK_INT(8, new1(g, "203.0.113.5", "w3@local.test", T0 + 10 + 3600, &wait, &why),
		  GREY_DEFER);
	CHECK_STR(8, grey_why_text(why), "new");
	CHECK_INT(9, new1(g, "203.0.113.5", "w3@local.test", T0 + 10 + 3600 + DELAY, &wait, &why),
		  GREY_PASS);
	grey_free(&g);

	/* a message's new triplets are recorded together: 198.51.100.0/24 has
	 * one left of three; a message to five records all five (a retry must
	 * not find some of them new again), the next message none */
	g = grey_mem();
	for (int i = 0; i < 2; i++) {
		snprintf(addr, sizeof addr, "m%d@local.test", i);
		CHECK_INT(20, new1(g, "198.51.100.1", addr, T0, &wait, &why), GREY_DEFER);
	}
	const char *five[] = {"f0@local.test", "f1@local.test", "f2@local.test", "f3@local.test",
			      "f4@local.test"};
	CHECK_INT(21, grey_check(g, "198.51.100.1", "a@example.org", five, 5, NULL, T0, &wait, &why),
		  GREY_DEFER);
	CHECK_STR(21, grey_why_text(why), "new");
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(22, t, 7);
	CHECK_INT(23, grey_check(g, "198.51.100.1", "a@example.org", five, 5, NULL, T0 + DELAY, &wait,
				 &why),
		  GREY_PASS);
	CHECK_INT(24, new1(g, "198.51.100.1", "late@local.test", T0, &wait, &why), GREY_DEFER);
	CHECK_STR(24, grey_why_text(why), "network budget");
	grey_free(&g);

	/* IPv6: one budget per /48 (two /64s of it share it), another /48 has its own */
	g = grey_mem();
	for (int i = 0; i < 4; i++) {
		snprintf(addr, sizeof addr, "v%d@local.test", i);
		CHECK_INT(10, new1(g, i % 2 ? "2001:db8:1:1::1" : "2001:db8:1:2::1", addr, T0,
				     &wait, &why),
			  GREY_DEFER);
		CHECK_STR(10, grey_why_text(why), i < 3 ? "new" : "network budget");
	}
	CHECK_INT(11, new1(g, "2001:db8:2::1", "v9@local.test", T0, &wait, &why), GREY_DEFER);
	CHECK_STR(11, grey_why_text(why), "new");
	grey_free(&g);

	/* 0: no cap */
	cfg.greylist_net_new = 0;
	g = grey_mem();
	for (int i = 0; i < 50; i++) {
		snprintf(addr, sizeof addr, "n%d@local.test", i);
		CHECK_INT(12, new1(g, "192.0.2.1", addr, T0, &wait, &why), GREY_DEFER);
		CHECK_STR(12, grey_why_text(why), "new");
	}
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(13, t, 50);
	grey_free(&g);

	/* greylist_delay = 0: new triplets pass, and the reason says why (not
	 * "retry"), past the budget too */
	cfg.greylist_net_new = 1;
	cfg.greylist_delay = 0;
	g = grey_mem();
	CHECK_INT(14, new1(g, "192.0.2.1", "d0@local.test", T0, &wait, &why), GREY_PASS);
	CHECK_STR(14, grey_why_text(why), "no delay");
	CHECK_INT(15, new1(g, "192.0.2.1", "d1@local.test", T0, &wait, &why), GREY_PASS);
	CHECK_STR(15, grey_why_text(why), "no delay (network budget: not recorded)");
	CHECK_INT(16, new1(g, "192.0.2.1", "d0@local.test", T0 + 1, &wait, &why), GREY_PASS);
	CHECK_STR(16, grey_why_text(why), "retry");
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(17, t, 1);
	grey_free(&g);
}

/* Expired entries go a few per call (GREY_PRUNE_STEP = 16), never all at
 * once: the cost of one call does not grow with the table. */
static void test_prune_incremental(void)
{
	cfg_reset();
	struct grey *g = grey_mem();
	const char *r[1];
	unsigned wait;
	enum grey_why why;
	char addr[32];
	for (int i = 0; i < 100; i++) {
		snprintf(addr, sizeof addr, "u%d@local.test", i);
		r[0] = addr;
		grey_check(g, "192.0.2.1", "a@example.org", r, 1, NULL, T0, &wait, &why);
	}
	size_t t, nn, d;
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(1, t, 100);
	r[0] = "other@local.test";
	grey_check(g, "192.0.2.1", "a@example.org", r, 1, NULL, T0 + EXPIRE + 1, &wait, &why);
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(2, t, 100 - 16 + 1);
	for (int i = 0; i < 10; i++)
		grey_check(g, "192.0.2.1", "a@example.org", r, 1, NULL, T0 + EXPIRE + 1, &wait,
			   &why);
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(3, t, 1); /* only the one not expired */
	grey_free(&g);
}

/* ---- the store ---- */

static struct grey *grey_store(struct loop *l, struct store *st)
{
	char *err = NULL;
	struct grey *g = grey_new(l, st, &cfg, &err);
	if (g == NULL)
		printf("  grey_new: %s\n", err);
	free(err);
	CHECK(g != NULL);
	return g;
}

static unsigned check1(struct grey *g, const char *ip, const char *from, const char *rcpt,
		       const char *aligned, time_t now, enum grey_result want, const char *want_why)
{
	const char *r[1] = {rcpt};
	unsigned wait = 0;
	enum grey_why why = GREY_WHY_OFF;
	CHECK_INT(0, grey_check(g, ip, from, r, 1, aligned, now, &wait, &why), want);
	CHECK_STR(0, grey_why_text(why), want_why);
	return wait;
}

/* Saved at grey_free, loaded by the next grey_new (no committer: written on
 * st->main); the networks are stored as CIDR, the addresses lowercase. */
static void test_restart(void)
{
	cfg_reset();
	dir_new();
	struct store *st = open_store();
	CHECK(st != NULL);
	if (st == NULL)
		return;
	time_t now = time(NULL);
	struct grey *g = grey_store(NULL, st);
	check1(g, "192.0.2.7", "A@Example.org", "U@Local.Test", NULL, now, GREY_DEFER, "new");
	check1(g, "2001:db8:aa:bb:1:2:3:4", "", "u@local.test", NULL, now, GREY_DEFER, "new");
	grey_delivered(g, "198.51.100.9", "good.example", false, true, now);
	grey_free(&g);
	CHECK_INT(1, sql_int("SELECT count(*) FROM greylist"), 2);
	CHECK_INT(2, sql_int("SELECT count(*) FROM greylist WHERE net = '192.0.2.0/24' AND"
			     " sender = 'a@example.org' AND rcpt = 'u@local.test'"),
		  1);
	CHECK_INT(3, sql_int("SELECT count(*) FROM greylist WHERE net = '2001:db8:aa:bb::/64'"
			     " AND sender = ''"),
		  1);
	CHECK_INT(4, sql_int("SELECT allowed_until FROM grey_networks WHERE net ="
			     " '198.51.100.0/24'"),
		  now + ALLOW);
	CHECK_INT(5, sql_int("SELECT good FROM grey_reputation WHERE domain = 'good.example'"), 1);
	/* rows that expired are not loaded */
	char sql[256];
	snprintf(sql, sizeof sql,
		 "INSERT INTO greylist VALUES ('203.0.113.0/24', 'old@example.org',"
		 " 'u@local.test', %lld)",
		 (long long)(now - EXPIRE - 10));
	CHECK(sql_exec(sql) == 0);

	g = grey_store(NULL, st);
	size_t t, nn, d;
	grey_counts(g, &t, &nn, &d);
	CHECK_INT(6, t, 2);
	CHECK_INT(7, nn, 1);
	CHECK_INT(8, d, 1);
	CHECK_INT(9, check1(g, "192.0.2.8", "a@example.org", "u@local.test", NULL, now + 10,
			    GREY_DEFER, "too early"),
		  DELAY - 10);
	check1(g, "192.0.2.8", "a@example.org", "u@local.test", NULL, now + DELAY, GREY_PASS,
	       "retry");
	check1(g, "198.51.100.1", "x@y.example", "u@local.test", NULL, now + DELAY, GREY_PASS,
	       "allowed network");
	check1(g, "203.0.113.1", "z@good.example", "u@local.test", "good.example", now + DELAY,
	       GREY_PASS, "reputation");
	check1(g, "203.0.113.1", "old@example.org", "u@local.test", NULL, now + DELAY, GREY_DEFER,
	       "new");
	/* a flush writes the changes and deletes the expired rows */
	snprintf(sql, sizeof sql,
		 "INSERT INTO greylist VALUES ('203.0.113.0/24', 'gone@example.org',"
		 " 'u@local.test', %lld)",
		 (long long)(now - EXPIRE - 10));
	CHECK(sql_exec(sql) == 0);
	grey_flush(g);
	CHECK_INT(10, sql_int("SELECT count(*) FROM greylist WHERE sender = 'gone@example.org'"),
		  0);
	snprintf(sql, sizeof sql,
		 "SELECT first_seen FROM greylist WHERE sender = 'old@example.org' AND"
		 " net = '203.0.113.0/24'");
	CHECK_INT(11, sql_int(sql), now + DELAY);
	grey_free(&g);
	store_close(&st);
	dir_remove();
}

static bool timer_done;
static void on_timer(void *arg)
{
	timer_done = true;
}

/* In the daemon, a change reaches the store within GREY_FLUSH_MS through
 * the committer, without grey_free. */
static void test_lazy_save(void)
{
	cfg_reset();
	struct env e;
	dir_new();
	CHECK(env_start(&e));
	time_t now = time(NULL);
	struct grey *g = grey_store(e.l, e.st);
	check1(g, "192.0.2.7", "a@example.org", "u@local.test", NULL, now, GREY_DEFER, "new");
	grey_delivered(g, "192.0.2.7", NULL, false, true, now);
	CHECK_INT(1, sql_int("SELECT count(*) FROM greylist"), 0);
	timer_done = false;
	loop_timer_add(e.l, 1500, on_timer, NULL);
	run_until(e.l, &timer_done);
	store_wait_idle(e.st);
	CHECK_INT(2, sql_int("SELECT count(*) FROM greylist"), 1);
	CHECK_INT(3, sql_int("SELECT count(*) FROM grey_networks"), 1);
	/* and what is left at grey_free, through the committer */
	check1(g, "198.51.100.7", "a@example.org", "u@local.test", NULL, now, GREY_DEFER, "new");
	grey_free(&g);
	CHECK_INT(4, sql_int("SELECT count(*) FROM greylist"), 2);
	pool_free(&e.p);
	store_close(&e.st);
	loop_free(&e.l);
	dir_remove();
}

/* The reasons: a text each for the log, and only a real retry or an
 * allowed network allows the network at delivery (RFC 6647 2.2). */
static void test_why(void)
{
	static const struct {
		enum grey_why why;
		const char *text;
		bool allows;
	} v[] = {
		{GREY_WHY_OFF, "off", false},
		{GREY_WHY_ALLOWED_NET, "allowed network", true},
		{GREY_WHY_REPUTATION, "reputation", false},
		{GREY_WHY_RETRY, "retry", true},
		{GREY_WHY_NO_DELAY, "no delay", false},
		{GREY_WHY_NO_DELAY_CAPPED, "no delay (network budget: not recorded)", false},
		{GREY_WHY_NEW, "new", false},
		{GREY_WHY_TOO_EARLY, "too early", false},
		{GREY_WHY_BUDGET, "network budget", false},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		CHECK_STR((int)i, grey_why_text(v[i].why), v[i].text);
		CHECK_INT((int)i, grey_why_allows_net(v[i].why), v[i].allows);
	}
}

int main(void)
{
	log_set_level(LOG_ERR);
	test_run("off", test_off);
	test_run("bad_config", test_bad_config);
	test_run("lifecycle", test_lifecycle);
	test_run("recipients", test_recipients);
	test_run("expire", test_expire);
	test_run("networks", test_networks);
	test_run("reputation", test_reputation);
	test_run("cap", test_cap);
	test_run("net_budget", test_net_budget);
	test_run("prune_incremental", test_prune_incremental);
	test_run("restart", test_restart);
	test_run("lazy_save", test_lazy_save);
	test_run("why", test_why);
	config_free(&cfg);
	return test_done("test_filter_grey");
}
