/* Unit tests for what the filter's orchestration keeps in the store: spam
 * thresholds per domain and user (table spam_thresholds: set, clear, list,
 * the account's row over its domain's score by score, names without case),
 * and per-recipient Junk (store_delivery.junk_users). Each test works in
 * its own temporary directory with a real loop and pool. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "store/store.h"

#define STORE_FIXTURE_NAME "test_filter_store"
#include "../store_fixture.h"

/* score comparison with NAN meaning "not set" */
static bool same(double a, double b)
{
	return (isnan(a) && isnan(b)) || a == b;
}

static void count_row(void *arg, const char *name, double junk, double reject)
{
	(*(int *)arg)++;
}

static void test_thresholds(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	int64_t alice = user_id_of(e.st, "alice@example.com");
	int64_t bob = user_id_of(e.st, "bob@example.com");
	char *err = NULL;
	double j, r;
	const struct {
		const char *name; /* the row written (NULL: none this step) */
		double junk, reject;
		int64_t *user;
		double want_junk, want_reject;
	} cases[] = {
		/* nothing set: inherited (NAN) */
		{NULL, 0, 0, &alice, NAN, NAN},
		/* the domain's, names without case */
		{"EXAMPLE.com", 3.0, NAN, &alice, 3.0, NAN},
		{NULL, 0, 0, &bob, 3.0, NAN},
		/* alice's own reject; her junk still the domain's */
		{"alice@example.com", NAN, 9.5, &alice, 3.0, 9.5},
		{NULL, 0, 0, &bob, 3.0, NAN},
		/* alice's own junk wins over the domain's */
		{"Alice@Example.COM", 4.0, 9.5, &alice, 4.0, 9.5},
		/* negative scores are scores */
		{"bob@example.com", -2.0, NAN, &bob, -2.0, NAN},
		/* the domain's row cleared: alice keeps hers, bob his junk */
		{"example.com", NAN, NAN, &alice, 4.0, 9.5},
		{NULL, 0, 0, &bob, -2.0, NAN},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (cases[i].name != NULL)
			CHECK_INT((int)i,
				  store_spam_threshold_set(e.st, cases[i].name, cases[i].junk,
							   cases[i].reject, &err),
				  0);
		CHECK_INT((int)i, store_spam_threshold_user(e.st, *cases[i].user, &j, &r), 0);
		if (!same(j, cases[i].want_junk) || !same(r, cases[i].want_reject)) {
			printf("  case %zu: got junk=%g reject=%g\n", i, j, r);
			CHECK(0);
		}
	}
	/* get: a row as written; none for the cleared domain */
	CHECK_INT(0, store_spam_threshold_get(e.st, "ALICE@example.com", &j, &r), 1);
	CHECK(same(j, 4.0) && same(r, 9.5));
	CHECK_INT(1, store_spam_threshold_get(e.st, "example.com", &j, &r), 0);
	CHECK(isnan(j) && isnan(r));
	int n = 0;
	CHECK_INT(2, store_spam_threshold_list(e.st, count_row, &n, &err), 0);
	CHECK_INT(2, n, 2);
	/* an unknown account: nothing */
	CHECK_INT(3, store_spam_threshold_user(e.st, 999999, &j, &r), 0);
	CHECK(isnan(j) && isnan(r));
	env_free(&e);
}

struct commit_wait {
	bool done;
	int result;
};

static void commit_cb(void *arg, int result)
{
	struct commit_wait *w = arg;
	w->done = true;
	w->result = result;
}

static long long count_in(const char *user, const char *mailbox)
{
	char sql[256];
	snprintf(sql, sizeof sql,
		 "SELECT count(*) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id"
		 " JOIN users u ON u.id = b.user_id WHERE u.localpart = '%s' AND b.name = '%s'",
		 user, mailbox);
	return sql_int(sql);
}

static void test_junk_users(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	int64_t ids[3] = {user_id_of(e.st, "alice@example.com"), user_id_of(e.st, "bob@example.com")};
	static const struct {
		bool junk;       /* store_delivery.junk */
		bool per[3];     /* junk_users */
		bool has_per;
		size_t n;        /* user ids: alice, bob (, alice again) */
		long long alice_junk, bob_junk; /* after this case, cumulative */
	} cases[] = {
		{false, {false, true}, true, 2, 0, 1},  /* bob alone to Junk */
		{false, {true, false}, true, 2, 1, 1},  /* alice alone */
		{true, {false, false}, true, 2, 2, 2},  /* junk: everyone's */
		{false, {false, false}, false, 2, 2, 2}, /* neither: INBOX */
		/* alice listed twice: Junk if either entry says so */
		{false, {false, false, true}, true, 3, 3, 2},
	};
	ids[2] = ids[0];
	const char *msg = "Subject: x\r\n\r\nhi\r\n";
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err = NULL;
		struct store_spool *sp = store_spool_new(e.st, &err);
		CHECK(sp != NULL && store_spool_write(sp, msg, strlen(msg)) == 0);
		struct store_delivery d = {
			.txid = "T",
			.mail_from = "s@remote.org",
			.received = 1700000000,
			.user_ids = ids,
			.n_users = cases[i].n,
			.junk = cases[i].junk,
			.junk_users = cases[i].has_per ? cases[i].per : NULL,
		};
		struct commit_wait w = {0};
		store_commit(e.st, sp, &d, commit_cb, &w);
		run_until(e.l, &w.done);
		CHECK_INT((int)i, w.result, 0);
		CHECK_INT((int)i, count_in("alice", "Junk"), cases[i].alice_junk);
		CHECK_INT((int)i, count_in("bob", "Junk"), cases[i].bob_junk);
	}
	/* every message is in exactly one mailbox per recipient */
	CHECK_INT(9, count_in("alice", "INBOX") + count_in("alice", "Junk"), 5);
	CHECK_INT(9, count_in("bob", "INBOX") + count_in("bob", "Junk"), 5);
	env_free(&e);
}

int main(void)
{
	test_run("thresholds", test_thresholds);
	test_run("junk_users", test_junk_users);
	return test_done("test_filter");
}
