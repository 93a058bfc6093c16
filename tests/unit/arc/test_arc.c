/* ARC (src/policy/arc.c): the structural checks of RFC 8617 5.2 steps 1-3
 * as a table (missing and duplicate fields, instance gaps, i= range, cv
 * rules, tags an AS/AMS must or must not have), the verifier's callback
 * discipline (from the loop, never inside finish; free with a lookup or a
 * worker job in flight), and the sealer's output (one well-formed set, i=N+1,
 * nothing on a chain that ended with cv=fail). Signatures against real keys
 * are checked end to end with dkimpy (tests/e2e/test_arc.py). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../test.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "dns/dns.h"
#include "policy/arc.h"

#define MSG_TAIL "From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n"

static void add_aar(struct buf *b, int i)
{
	buf_printf(b, "ARC-Authentication-Results: i=%d; mx.example.test; spf=pass\r\n", i);
}
static void add_ams(struct buf *b, int i)
{
	buf_printf(b,
		   "ARC-Message-Signature: i=%d; a=rsa-sha256; c=relaxed/relaxed;\r\n"
		   "\td=example.test; s=sel; h=from:subject; bh=AAAA; b=AAAA\r\n",
		   i);
}
static void add_as(struct buf *b, int i, const char *cv)
{
	buf_printf(b, "ARC-Seal: i=%d; a=rsa-sha256; cv=%s; d=example.test; s=sel; b=AAAA\r\n", i,
		   cv);
}
static void add_set(struct buf *b, int i)
{
	add_as(b, i, i == 1 ? "none" : "pass");
	add_ams(b, i);
	add_aar(b, i);
}

struct scase {
	const char *header; /* NULL: built by build() */
	enum arc_result want;
	int instances;
	const char *reason;
};

static void check_header(int casenum, const char *h, enum arc_result want, int inst,
			 const char *reason)
{
	int n = -1;
	const char *why = "unset";
	enum arc_result r = arc_check_structure(h, strlen(h), &n, &why);
	CHECK_INT(casenum, r, want);
	CHECK_INT(casenum, n, inst);
	CHECK_STR(casenum, why, reason);
}

static void test_structure_table(void)
{
	static const struct scase cases[] = {
		/* 1: no ARC field: none (5.2 step 1) */
		{MSG_TAIL, ARC_NONE, 0, NULL},
		/* 2: one set, cv=none */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=e.test; s=s; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s; h=from; bh=AA; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_PASS, 1, NULL},
		/* 3: names are case-insensitive, folding and FWS around = are fine */
		{"arc-seal: i = 1 ; a=rsa-sha256;\r\n cv=none; d=e.test; s=s; b=AA\r\n"
		 "ARC-MESSAGE-SIGNATURE:i=1;a=rsa-sha256;d=e.test;s=s;h=from;bh=AA;b=AA\r\n"
		 "arc-authentication-results:\r\n\ti=1 ; e.test; none\r\n" MSG_TAIL,
		 ARC_PASS, 1, NULL},
		/* 4: one set lacks its AMS (5.2 step 3.1) */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=e.test; s=s; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "incomplete ARC set"},
		/* 5: i=0 is no instance */
		{"ARC-Seal: i=0; a=rsa-sha256; cv=none; d=e.test; s=s; b=AA\r\n" MSG_TAIL, ARC_FAIL,
		 0, "malformed ARC-Seal"},
		/* 6: i= not a number */
		{"ARC-Message-Signature: i=one; a=rsa-sha256; d=e; s=s; h=from; bh=AA; b=AA\r\n"
		 MSG_TAIL,
		 ARC_FAIL, 0, "malformed ARC-Message-Signature"},
		/* 7: an AAR without i= */
		{"ARC-Authentication-Results: e.test; spf=pass\r\n" MSG_TAIL, ARC_FAIL, 0,
		 "malformed ARC-Authentication-Results"},
		/* 8: a duplicate tag makes the tag list malformed (RFC 6376 3.2) */
		{"ARC-Seal: i=1; i=1; a=rsa-sha256; cv=none; d=e.test; s=s; b=AA\r\n" MSG_TAIL,
		 ARC_FAIL, 0, "malformed ARC-Seal"},
		/* 9: i=51: more than 50 sets (4.2.1, 5.2 step 1) */
		{"ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=e.test; s=s; b=AA\r\n" MSG_TAIL,
		 ARC_FAIL, 51, "more than 50 ARC sets"},
		/* 10: an absurd i= is the same */
		{"ARC-Authentication-Results: i=99999999999999999999; e; none\r\n" MSG_TAIL,
		 ARC_FAIL, 51, "more than 50 ARC sets"},
		/* 11: the AS must not have h= (4.1.3) */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=e.test; s=s; h=from; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s; h=from; bh=AA; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "ARC-Seal with h="},
		/* 12: the AMS must not cover ARC-Seal (4.1.2) */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=e.test; s=s; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s;\r\n"
		 " h=from : arc-seal; bh=AA; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "ARC-Message-Signature covers ARC-Seal"},
		/* 13: an AS without d= */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=none; s=s; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s; h=from; bh=AA; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "ARC-Seal lacks a required tag"},
		/* 14: an AMS without bh= */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=e.test; s=s; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s; h=from; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "ARC-Message-Signature lacks a required tag"},
		/* 15: cv=pass on instance 1 (5.2 step 3.3) */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=pass; d=e.test; s=s; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s; h=from; bh=AA; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "ARC-Seal i=1 without cv=none"},
		/* 16: an unknown cv */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=maybe; d=e.test; s=s; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s; h=from; bh=AA; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "an ARC-Seal says cv=fail or an unknown cv"},
		/* 17: the newest AS says cv=fail (5.2 step 2) */
		{"ARC-Seal: i=1; a=rsa-sha256; cv=fail; d=e.test; s=s; b=AA\r\n"
		 "ARC-Message-Signature: i=1; a=rsa-sha256; d=e.test; s=s; h=from; bh=AA; b=AA\r\n"
		 "ARC-Authentication-Results: i=1; e.test; none\r\n" MSG_TAIL,
		 ARC_FAIL, 1, "the newest ARC-Seal says cv=fail"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		check_header((int)i + 1, cases[i].header, cases[i].want, cases[i].instances,
			     cases[i].reason);
}

/* Chains built set by set: gaps, duplicates, cv on later instances, 50 sets. */
static void test_structure_built(void)
{
	struct buf b = BUF_INIT;

	/* 1: sets 1..3, newest on top */
	for (int i = 3; i >= 1; i--)
		add_set(&b, i);
	buf_appends(&b, MSG_TAIL);
	check_header(1, b.data, ARC_PASS, 3, NULL);

	/* 2: order in the header does not matter (sets found by i=) */
	buf_reset(&b);
	for (int i = 1; i <= 3; i++)
		add_set(&b, i);
	buf_appends(&b, MSG_TAIL);
	check_header(2, b.data, ARC_PASS, 3, NULL);

	/* 3: instance 2 of 3 missing (5.2 step 3.2) */
	buf_reset(&b);
	add_set(&b, 3);
	add_set(&b, 1);
	buf_appends(&b, MSG_TAIL);
	check_header(3, b.data, ARC_FAIL, 3, "ARC instance missing");

	/* 4: instance 1 missing */
	buf_reset(&b);
	add_set(&b, 2);
	buf_appends(&b, MSG_TAIL);
	check_header(4, b.data, ARC_FAIL, 2, "ARC instance missing");

	/* 5: two AMS for instance 1 (5.2 step 3.1) */
	buf_reset(&b);
	add_set(&b, 2);
	add_set(&b, 1);
	add_ams(&b, 1);
	buf_appends(&b, MSG_TAIL);
	check_header(5, b.data, ARC_FAIL, 2, "duplicate ARC field for one instance");

	/* 6: two AAR for the newest instance */
	buf_reset(&b);
	add_aar(&b, 1);
	add_set(&b, 1);
	buf_appends(&b, MSG_TAIL);
	check_header(6, b.data, ARC_FAIL, 1, "duplicate ARC field for one instance");

	/* 7: cv=none on instance 2 */
	buf_reset(&b);
	add_as(&b, 2, "none");
	add_ams(&b, 2);
	add_aar(&b, 2);
	add_set(&b, 1);
	buf_appends(&b, MSG_TAIL);
	check_header(7, b.data, ARC_FAIL, 2, "ARC-Seal i>1 without cv=pass");

	/* 8: an older AS says cv=fail, the newest pass */
	buf_reset(&b);
	add_set(&b, 2);
	add_as(&b, 1, "fail");
	add_ams(&b, 1);
	add_aar(&b, 1);
	buf_appends(&b, MSG_TAIL);
	check_header(8, b.data, ARC_FAIL, 2, "an ARC-Seal says cv=fail or an unknown cv");

	/* 9: 50 sets: the most there may be */
	buf_reset(&b);
	for (int i = 50; i >= 1; i--)
		add_set(&b, i);
	buf_appends(&b, MSG_TAIL);
	check_header(9, b.data, ARC_PASS, 50, NULL);

	/* 10: 51 sets: fail (4.2.1) */
	buf_reset(&b);
	for (int i = 51; i >= 1; i--)
		add_set(&b, i);
	buf_appends(&b, MSG_TAIL);
	check_header(10, b.data, ARC_FAIL, 51, "more than 50 ARC sets");

	/* 11: a message without a body (all header) */
	buf_reset(&b);
	add_set(&b, 1);
	check_header(11, b.data, ARC_PASS, 1, NULL);
	buf_free(&b);
}

/* ---- the verifier's callback ---- */
struct vres {
	struct loop *l;
	int calls;
	bool in_finish;
	bool called_in_finish;
	enum arc_result result;
	int instances;
	char reason[160];
};

static void vres_cb(void *arg, const struct arc_outcome *o)
{
	struct vres *r = arg;
	r->calls++;
	r->called_in_finish |= r->in_finish;
	r->result = o->result;
	r->instances = o->instances;
	snprintf(r->reason, sizeof r->reason, "%s", o->reason ? o->reason : "");
	loop_stop(r->l);
}

static void stop_cb(void *arg)
{
	loop_stop(arg);
}

static const struct dkim_limits limits = {5, 1024, 8192, 65536, 1000};

/* Feeds msg in pieces of step octets; returns the outcome via r. */
static void verify_msg(struct loop *l, struct pool *p, struct dns *dns, const char *msg,
		       size_t step, struct vres *r)
{
	struct arc_verify *v = arc_verify_new(dns, p, &limits);
	size_t len = strlen(msg);

	memset(r, 0, sizeof *r);
	r->l = l;
	for (size_t i = 0; i < len; i += step)
		arc_verify_feed(v, msg + i, len - i < step ? len - i : step);
	r->in_finish = true;
	arc_verify_finish(v, vres_cb, r);
	r->in_finish = false;
	struct timer *t = loop_timer_add(l, 5000, stop_cb, l);
	loop_run(l);
	if (r->calls)
		loop_timer_cancel(l, &t);
	arc_verify_free(&v);
}

struct free_in_cb {
	struct loop *l;
	struct arc_verify *v;
	int calls;
};

static void free_cb(void *arg, const struct arc_outcome *o)
{
	struct free_in_cb *fc = arg;
	fc->calls++;
	arc_verify_free(&fc->v);
	loop_stop(fc->l);
}

static void test_verify_callbacks(void)
{
	struct loop *l = loop_new();
	struct pool *p = pool_new(l, 1);
	struct vres r;
	struct buf b = BUF_INIT;

	/* 1: no chain: none, from the loop */
	verify_msg(l, p, NULL, MSG_TAIL, 7, &r);
	CHECK_INT(1, r.calls, 1);
	CHECK_INT(1, r.called_in_finish, 0);
	CHECK_INT(1, r.result, ARC_NONE);
	CHECK_INT(1, r.instances, 0);

	/* 2: a structural failure is reported the same way */
	buf_reset(&b);
	add_set(&b, 2);
	buf_appends(&b, MSG_TAIL);
	verify_msg(l, p, NULL, b.data, 3, &r);
	CHECK_INT(2, r.calls, 1);
	CHECK_INT(2, r.called_in_finish, 0);
	CHECK_INT(2, r.result, ARC_FAIL);
	CHECK_STR(2, r.reason, "ARC instance missing");

	/* 3: a well-formed chain whose keys cannot be looked up (no resolver):
	 * fail, the reason naming the newest AMS's key */
	buf_reset(&b);
	add_set(&b, 1);
	buf_appends(&b, MSG_TAIL);
	verify_msg(l, p, NULL, b.data, 1, &r);
	CHECK_INT(3, r.calls, 1);
	CHECK_INT(3, r.result, ARC_FAIL);
	CHECK_INT(3, r.instances, 1);
	CHECK_STR(3, r.reason, "ARC-Message-Signature i=1: body hash did not verify");

	/* 3b: an AMS whose h= names more than 256 fields: refused before any
	 * hashing (bounded work per message) */
	buf_reset(&b);
	add_as(&b, 1, "none");
	buf_appends(&b, "ARC-Message-Signature: i=1; a=rsa-sha256; d=example.test; s=sel; h=from");
	for (int i = 0; i < 256; i++)
		buf_appends(&b, ":to");
	buf_appends(&b, "; bh=AAAA; b=AAAA\r\n");
	add_aar(&b, 1);
	buf_appends(&b, MSG_TAIL);
	verify_msg(l, p, NULL, b.data, 4096, &r);
	CHECK_INT(3, r.result, ARC_FAIL);
	CHECK_STR(3, r.reason, "ARC-Message-Signature i=1: h= names too many fields");
	buf_reset(&b);
	add_set(&b, 1);
	buf_appends(&b, MSG_TAIL);

	/* 4: freed right after finish, the worker job in flight: no callback,
	 * the job's result is dropped (ASan: nothing leaks, nothing is used
	 * after free) */
	struct arc_verify *v = arc_verify_new(NULL, p, &limits);
	memset(&r, 0, sizeof r);
	r.l = l;
	arc_verify_feed(v, b.data, b.len);
	arc_verify_finish(v, vres_cb, &r);
	arc_verify_free(&v);
	CHECK(v == NULL);
	loop_timer_add(l, 200, stop_cb, l);
	loop_run(l);
	CHECK_INT(4, r.calls, 0);

	/* 5: the callback frees the verifier (the usual caller) */
	struct free_in_cb fc = {.l = l};
	fc.v = arc_verify_new(NULL, p, &limits);
	arc_verify_feed(fc.v, MSG_TAIL, strlen(MSG_TAIL));
	arc_verify_finish(fc.v, free_cb, &fc);
	struct timer *t = loop_timer_add(l, 5000, stop_cb, l);
	loop_run(l);
	if (fc.calls)
		loop_timer_cancel(l, &t);
	CHECK_INT(5, fc.calls, 1);
	CHECK(fc.v == NULL);

	/* 7: arc_verify_end: no ARC field gives none at once (no worker, no
	 * callback); a structurally broken chain fail at once; a well-formed
	 * chain goes to the worker (false, the callback later) */
	struct arc_outcome now;
	memset(&r, 0, sizeof r);
	r.l = l;
	v = arc_verify_new(NULL, p, &limits);
	arc_verify_feed(v, MSG_TAIL, strlen(MSG_TAIL));
	CHECK(arc_verify_end(v, &now, vres_cb, &r));
	CHECK_INT(7, now.result, ARC_NONE);
	CHECK_INT(7, now.instances, 0);
	arc_verify_free(&v);
	struct buf gap = BUF_INIT;
	add_set(&gap, 2);
	buf_appends(&gap, MSG_TAIL);
	v = arc_verify_new(NULL, p, &limits);
	arc_verify_feed(v, gap.data, gap.len);
	CHECK(arc_verify_end(v, &now, vres_cb, &r));
	CHECK_INT(8, now.result, ARC_FAIL);
	CHECK(now.reason != NULL);
	arc_verify_free(&v);
	buf_free(&gap);
	v = arc_verify_new(NULL, p, &limits);
	arc_verify_feed(v, b.data, b.len);
	CHECK(!arc_verify_end(v, &now, vres_cb, &r));
	t = loop_timer_add(l, 5000, stop_cb, l);
	loop_run(l);
	if (r.calls)
		loop_timer_cancel(l, &t);
	CHECK_INT(9, r.calls, 1);
	arc_verify_free(&v);

	/* 6: freed before finish, in the middle of the body */
	v = arc_verify_new(NULL, p, &limits);
	arc_verify_feed(v, b.data, b.len - 3);
	arc_verify_free(&v);
	arc_verify_free(&v); /* twice: a no-op */

	buf_free(&b);
	pool_free(&p);
	loop_free(&l);
}

/* A resolver pointed at a UDP socket that never answers: the key lookup
 * is in flight when the verifier is freed. */
static void test_verify_free_dns_in_flight(void)
{
	struct loop *l = loop_new();
	struct pool *p = pool_new(l, 1);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	char servers[64], *err = NULL;
	struct buf b = BUF_INIT;
	struct vres r = {.l = l};

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	snprintf(servers, sizeof servers, "127.0.0.1:%u", ntohs(sa.sin_port));
	struct dns_config dc = {servers, 5000, 1, 0};
	struct dns *dns = dns_new(l, &dc, &err);
	CHECK(dns != NULL);
	free(err);
	if (dns == NULL)
		goto out;
	add_set(&b, 1);
	buf_appends(&b, MSG_TAIL);

	/* 1: finished, waiting for the key: freed, no callback */
	struct arc_verify *v = arc_verify_new(dns, p, &limits);
	arc_verify_feed(v, b.data, b.len);
	arc_verify_finish(v, vres_cb, &r);
	loop_timer_add(l, 50, stop_cb, l);
	loop_run(l);
	arc_verify_free(&v);
	loop_timer_add(l, 50, stop_cb, l);
	loop_run(l);
	CHECK_INT(1, r.calls, 0);

	/* 2: the header ended (lookup started), the body still streaming */
	v = arc_verify_new(dns, p, &limits);
	arc_verify_feed(v, b.data, b.len - 2);
	loop_timer_add(l, 20, stop_cb, l);
	loop_run(l);
	arc_verify_free(&v);
	CHECK_INT(2, r.calls, 0);
	dns_free(&dns);
out:
	close(fd);
	buf_free(&b);
	pool_free(&p);
	loop_free(&l);
}

/* ---- sealing ---- */
static void test_seal(void)
{
	char *pem = NULL, *pub = NULL, *err = NULL;
	struct buf out = BUF_INIT, msg = BUF_INIT, all = BUF_INIT;
	struct dkim_key *k;

	CHECK_INT(0, dkim_keygen("rsa", &pem, &pub, &err), 0);
	k = pem ? dkim_key_load_private(pem, &err) : NULL;
	CHECK(k != NULL);
	if (k == NULL)
		goto out;
	struct dkim_signer_key sk = {k, "relay.test", "arc1"};

	/* 1: no chain: i=1, cv=none; AAR, AMS, AS in that order */
	buf_appends(&msg, MSG_TAIL);
	struct arc_outcome none = {ARC_NONE, 0, NULL, 0, NULL, -1, false};
	struct arc_seal *s = arc_seal_new(&sk, 1700000000, &limits);
	arc_seal_feed(s, msg.data, msg.len);
	CHECK_INT(1, arc_seal_finish(s, "relay.test", "spf=pass smtp.mailfrom=a.test", &none, &out),
		  0);
	arc_seal_free(&s);
	static const char head[] = "ARC-Authentication-Results: i=1; relay.test; spf=pass "
				   "smtp.mailfrom=a.test\r\nARC-Message-Signature: i=1; "
				   "a=rsa-sha256; c=relaxed/relaxed;\r\n\td=relay.test; "
				   "s=arc1; t=1700000000;\r\n\th=";
	CHECK(strncmp(out.data, head, strlen(head)) == 0);
	CHECK(strstr(out.data, "\r\nARC-Seal: i=1; a=rsa-sha256; t=1700000000; cv=none;") != NULL);
	CHECK(strstr(out.data, "h=From:From:Subject:Subject:To:Date;") != NULL);
	buf_append(&all, out.data, out.len);
	buf_append(&all, msg.data, msg.len);
	check_header(1, all.data, ARC_PASS, 1, NULL);

	/* 2: on a chain that passed: i=2, cv=pass, still well formed */
	struct arc_outcome pass = {ARC_PASS, 1, NULL, 0, NULL, -1, false};
	buf_reset(&out);
	s = arc_seal_new(&sk, 1700000001, &limits);
	arc_seal_feed(s, all.data, all.len);
	CHECK_INT(2, arc_seal_finish(s, "relay.test", "arc=pass", &pass, &out), 0);
	arc_seal_free(&s);
	CHECK(strstr(out.data, "ARC-Seal: i=2; a=rsa-sha256; t=1700000001; cv=pass;") != NULL);
	buf_reset(&msg);
	buf_append(&msg, out.data, out.len);
	buf_append(&msg, all.data, all.len);
	check_header(2, msg.data, ARC_PASS, 2, NULL);

	/* 3: on a failed chain: i=3 with cv=fail (5.1.2) */
	struct arc_outcome fail = {ARC_FAIL, 2, "x", 0, NULL, -1, false};
	buf_reset(&out);
	s = arc_seal_new(&sk, 1700000002, &limits);
	arc_seal_feed(s, msg.data, msg.len);
	CHECK_INT(3, arc_seal_finish(s, "relay.test", "", &fail, &out), 0);
	arc_seal_free(&s);
	CHECK(strstr(out.data, "ARC-Authentication-Results: i=3; relay.test; none\r\n") != NULL);
	CHECK(strstr(out.data, "ARC-Seal: i=3; a=rsa-sha256; t=1700000002; cv=fail;") != NULL);
	buf_reset(&all);
	buf_append(&all, out.data, out.len);
	buf_append(&all, msg.data, msg.len);

	/* 4: a chain ending in cv=fail gets nothing more (5.1 step 1) */
	buf_reset(&out);
	s = arc_seal_new(&sk, 1700000003, &limits);
	arc_seal_feed(s, all.data, all.len);
	CHECK_INT(4, arc_seal_finish(s, "relay.test", "", &fail, &out), 0);
	arc_seal_free(&s);
	CHECK_INT(4, out.len, 0);

	/* 5: ARC fields that were never validated (chain none): no seal */
	s = arc_seal_new(&sk, 1700000004, &limits);
	arc_seal_feed(s, msg.data, msg.len);
	CHECK_INT(5, arc_seal_finish(s, "relay.test", "", &none, &out), 0);
	arc_seal_free(&s);
	CHECK_INT(5, out.len, 0);

	/* 5b: a chain that failed only for a DNS timeout: no seal */
	struct arc_outcome tempfail = {ARC_FAIL, 2, "x", 0, NULL, -1, true};
	s = arc_seal_new(&sk, 1700000004, &limits);
	arc_seal_feed(s, msg.data, msg.len);
	CHECK_INT(5, arc_seal_finish(s, "relay.test", "", &tempfail, &out), 0);
	arc_seal_free(&s);
	CHECK_INT(5, out.len, 0);

	/* 6: 50 sets already: no 51st */
	buf_reset(&msg);
	for (int i = 50; i >= 1; i--)
		add_set(&msg, i);
	buf_appends(&msg, MSG_TAIL);
	struct arc_outcome pass50 = {ARC_PASS, 50, NULL, 0, NULL, -1, false};
	s = arc_seal_new(&sk, 1700000005, &limits);
	arc_seal_feed(s, msg.data, msg.len);
	CHECK_INT(6, arc_seal_finish(s, "relay.test", "", &pass50, &out), 0);
	arc_seal_free(&s);
	CHECK_INT(6, out.len, 0);

	/* 8: a long AAR is folded after each result, not inside a comment or
	 * a quoted string */
	buf_reset(&msg);
	buf_appends(&msg, MSG_TAIL);
	s = arc_seal_new(&sk, 1700000007, &limits);
	arc_seal_feed(s, msg.data, msg.len);
	CHECK_INT(8,
		  arc_seal_finish(s, "mx.relay.test",
				  "spf=pass (a; b) smtp.mailfrom=a.test; dkim=fail "
				  "reason=\"x; y\" header.d=a.test; dmarc=pass header.from=a.test",
				  &none, &out),
		  0);
	arc_seal_free(&s);
	CHECK(strncmp(out.data,
		      "ARC-Authentication-Results: i=1; mx.relay.test;\r\n"
		      "\tspf=pass (a; b) smtp.mailfrom=a.test;\r\n"
		      "\tdkim=fail reason=\"x; y\" header.d=a.test;\r\n"
		      "\tdmarc=pass header.from=a.test\r\nARC-Message-Signature: ",
		      strlen("ARC-Authentication-Results: i=1; mx.relay.test;\r\n"
			     "\tspf=pass (a; b) smtp.mailfrom=a.test;\r\n"
			     "\tdkim=fail reason=\"x; y\" header.d=a.test;\r\n"
			     "\tdmarc=pass header.from=a.test\r\nARC-Message-Signature: ")) == 0);
	buf_reset(&out);

	/* 7: an Ed25519 key is refused (ARC seals with rsa-sha256) */
	char *epem = NULL, *epub = NULL;
	CHECK_INT(7, dkim_keygen("ed25519", &epem, &epub, &err), 0);
	struct dkim_key *ek = epem ? dkim_key_load_private(epem, &err) : NULL;
	if (ek) {
		struct dkim_signer_key esk = {ek, "relay.test", "ed"};
		buf_reset(&msg);
		buf_appends(&msg, MSG_TAIL);
		s = arc_seal_new(&esk, 1700000006, &limits);
		arc_seal_feed(s, msg.data, msg.len);
		CHECK_INT(7, arc_seal_finish(s, "relay.test", "", &none, &out), -1);
		arc_seal_free(&s);
		CHECK_INT(7, out.len, 0);
		dkim_key_free(&ek);
	}
	free(epem);
	free(epub);
	dkim_key_free(&k);
out:
	free(err);
	free(pem);
	free(pub);
	buf_free(&out);
	buf_free(&msg);
	buf_free(&all);
}

int main(void)
{
	test_run("structure_table", test_structure_table);
	test_run("structure_built", test_structure_built);
	test_run("verify_callbacks", test_verify_callbacks);
	test_run("verify_free_dns_in_flight", test_verify_free_dns_in_flight);
	test_run("seal", test_seal);
	return test_done("test_arc");
}
