/* Unit tests for the outbound scheduler's pure decisions (queue/route.h):
 * the retry schedule, relay routing, the relay host's address, the verdict
 * per recipient, the delay notice, NOTIFY keywords; and the work of the
 * store's lease (store_queue_lease) against the size of the queue. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test.h"
#define STORE_FIXTURE_NAME "test_queue"
#include "../store_fixture.h"
#include "queue/route.h"
#include "store/store_int.h"

static void test_backoff(void)
{
	static const struct {
		unsigned min, max;
		int attempts;
		unsigned want;
	} cases[] = {
	    {300, 14400, 1, 300}, /* first retry: queue_retry_min */
	    {300, 14400, 2, 600}, /* doubled */
	    {300, 14400, 3, 1200},
	    {300, 14400, 6, 9600},
	    {300, 14400, 7, 14400}, /* capped at queue_retry_max */
	    {300, 14400, 1000, 14400},
	    {1, 8, 0, 1}, /* 0 attempts: as the first */
	    {1, 8, 4, 8},
	    {1, 8, 5, 8},
	    {10, 5, 3, 10}, /* max below min: min */
	    {0, 0, 1, 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i, queue_backoff(cases[i].min, cases[i].max, cases[i].attempts),
		          cases[i].want);
}

static void test_relay_applies(void)
{
	static const struct {
		const char *relay, *domains, *domain;
		bool want;
	} cases[] = {
	    {"", "", "example.org", false},
	    {NULL, NULL, "example.org", false},
	    {"smtp.isp.example:587", "", "example.org", true},
	    {"smtp.isp.example:587", "example.org", "example.org", true},
	    {"smtp.isp.example:587", "EXAMPLE.org", "example.ORG", true},
	    {"smtp.isp.example:587", "a.example, example.org", "example.org", true},
	    {"smtp.isp.example:587", "a.example,b.example", "example.org", false},
	    {"smtp.isp.example:587", "sub.example.org", "example.org", false},
	    {"smtp.isp.example:587", "example.org", "sub.example.org", false},
	    {"smtp.isp.example:587", " , ", "example.org", true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i, queue_relay_applies(cases[i].relay, cases[i].domains, cases[i].domain),
		          cases[i].want);
}

static void test_hostport(void)
{
	static const struct {
		const char *in;
		int ret;
		const char *host;
		unsigned port;
	} cases[] = {
	    {"smtp.example:587", 0, "smtp.example", 587},
	    {"smtp.example", 0, "smtp.example", 25},
	    {"127.0.0.3:2525", 0, "127.0.0.3", 2525},
	    {"[::1]:465", 0, "::1", 465},
	    {"[::1]", 0, "::1", 25},
	    {"::1", -1, NULL, 0},
	    {"smtp.example:0", -1, NULL, 0},
	    {"smtp.example:65536", -1, NULL, 0},
	    {"smtp.example:", -1, NULL, 0},
	    {":25", -1, NULL, 0},
	    {"[::1]x", -1, NULL, 0},
	    {"smtp.example:25x", -1, NULL, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *host = NULL, *err = NULL;
		unsigned port = 0;
		int r = queue_parse_hostport(cases[i].in, 25, &host, &port, &err);
		CHECK_INT(i, r, cases[i].ret);
		if (r == 0) {
			CHECK_STR(i, host, cases[i].host);
			CHECK_INT(i, port, cases[i].port);
		} else {
			CHECK(err != NULL);
		}
		free(host);
		free(err);
	}
}

static void test_verdict(void)
{
	/* retry 60 s doubling to 600 s, lifetime 1000 s */
	static const struct {
		int status;
		time_t now, created;
		int attempts;
		enum queue_verdict want;
		time_t next;
	} cases[] = {
	    {1, 100, 0, 0, QUEUE_V_SENT, 0},
	    {1, 5000, 0, 9, QUEUE_V_SENT, 0}, /* delivered late is still delivered */
	    {-1, 100, 0, 0, QUEUE_V_BOUNCE, 0},
	    {0, 100, 0, 0, QUEUE_V_RETRY, 160},  /* first failure: +60 */
	    {0, 200, 0, 1, QUEUE_V_RETRY, 320},  /* second: +120 */
	    {0, 900, 0, 5, QUEUE_V_RETRY, 1500}, /* capped at 600 */
	    {0, 999, 0, 5, QUEUE_V_RETRY, 1599},
	    {0, 1000, 0, 5, QUEUE_V_EXPIRED, 0}, /* lifetime reached: bounce */
	    {0, 3000, 0, 0, QUEUE_V_EXPIRED, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		time_t next = 0;
		enum queue_verdict v =
		    queue_verdict(cases[i].status, cases[i].now, cases[i].created,
		                  cases[i].attempts, 60, 600, 1000, &next);
		CHECK_INT(i, v, cases[i].want);
		if (v == QUEUE_V_RETRY)
			CHECK_INT(i, next, cases[i].next);
	}
}

static void test_delay_due(void)
{
	static const struct {
		time_t now, created;
		unsigned warning;
		bool notified, want;
	} cases[] = {
	    {100, 0, 0, false, false},   /* 0: never */
	    {100, 0, 200, false, false}, /* not yet */
	    {200, 0, 200, false, true},  {5000, 0, 200, false, true},
	    {5000, 0, 200, true, false}, /* once */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i,
		          queue_delay_due(cases[i].now, cases[i].created, cases[i].warning,
		                          cases[i].notified),
		          cases[i].want);
}

static void test_notify(void)
{
	static const struct {
		const char *notify, *kw;
		bool want;
	} cases[] = {
	    {NULL, "SUCCESS", false},
	    {"SUCCESS", "SUCCESS", true},
	    {"success,failure", "SUCCESS", true},
	    {"FAILURE,DELAY", "SUCCESS", false},
	    {"FAILURE,SUCCESS", "SUCCESS", true},
	    {"NEVER", "FAILURE", false},
	    {"SUCCESSX", "SUCCESS", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i, queue_notify_has(cases[i].notify, cases[i].kw), cases[i].want);
}

struct lease_res {
	bool done;
	int result;
	size_t n_msg;
};

static void on_lease(void *arg, int result, struct store_queue_lease *l)
{
	struct lease_res *r = arg;
	r->result = result;
	r->n_msg = l ? l->n_msg : 0;
	store_queue_lease_free(&l);
	r->done = true;
}

static int lease_ops; /* progress-handler calls: every 100 VM instructions */

static int count_ops(void *arg)
{
	__atomic_add_fetch(&lease_ops, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/* The VM work (in hundreds of instructions) of one lease of at most 10
 * groups, with n_later entries not due and n_due due ones (one message
 * each) in the queue. */
static int lease_work(int n_later, int n_due)
{
	struct env e = {0};
	CHECK(env_new(&e));
	if (e.st == NULL)
		return -1;
	long long now = (long long)time(NULL);
	char *sql = xasprintf(
	    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
	    " INSERT INTO queue(message_id, rcpt, domain, attempts, next_try, created)"
	    " SELECT 1000000 + i, 'r' || i || '@later.example', 'later.example', 1, %lld, %lld"
	    " FROM n;"
	    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
	    " INSERT INTO queue(message_id, rcpt, domain, attempts, next_try, created)"
	    " SELECT 2000000 + i, 'r' || i || '@due.example', 'due.example', 0, %lld, %lld"
	    " FROM n;",
	    n_later, now + 3600, now, n_due, now - 10, now);
	CHECK_INT(1, sql_exec(sql), 0);
	free(sql);
	/* the committer is idle between jobs: its connection is ours to watch */
	lease_ops = 0;
	sqlite3_progress_handler(e.st->cdb.db, 100, count_ops, NULL);
	struct lease_res r = {0};
	store_queue_lease(e.st, "test", (time_t)now, 600, 10, on_lease, &r);
	run_until(e.l, &r.done);
	int ops = __atomic_load_n(&lease_ops, __ATOMIC_SEQ_CST);
	CHECK_INT(2, r.result, 0);
	CHECK_INT(3, (int)r.n_msg, n_due < 10 ? n_due : 10);
	env_free(&e);
	return ops;
}

/* The lease runs on the committer, where every delivery's commit waits
 * behind it, and it runs at every kick: its work must follow the batch it
 * takes, not the size of the queue (20,000 entries deferred to later, or
 * 20,000 due of which it takes 10). */
static void test_lease_work(void)
{
	int small = lease_work(100, 20);
	int later = lease_work(20000, 20);
	int due = lease_work(100, 20000);
	printf("  lease work (x100 VM instructions): small %d, 20000 later %d, 20000 due %d\n",
	       small, later, due);
	CHECK(small > 0);
	CHECK(later <= 2 * small + 20);
	CHECK(due <= 2 * small + 20);
}

/* A lease in the same committer round as a record of the same entries:
 * the record's answer (after the round's sync) comes first on the loop,
 * then the lease's. Answered the other way round, the lease found the
 * recorded entry due again while its job still looked live on the loop,
 * which dropped it and left it leased for queue_lease with no attempt (an
 * e2e test saw its retries stop under load). The first lease holds the
 * committer (a progress handler that waits for the test) while the record
 * and the second lease are queued, so that both land in the next round. */
static int hold_state; /* 0: not yet, 1: holding, 2: let go (by the test) */

/* Holds the committer, once, until the test lets it go (at most 5 s). */
static int hold_once(void *arg)
{
	(void)arg;
	int zero = 0;
	if (!__atomic_compare_exchange_n(&hold_state, &zero, 1, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return 0;
	for (int i = 0; i < 5000 && __atomic_load_n(&hold_state, __ATOMIC_SEQ_CST) == 1; i++) {
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int answer_seq;

struct rec_res {
	bool done;
	int result, seq;
};

static void on_record(void *arg, int result)
{
	struct rec_res *r = arg;
	r->result = result;
	r->seq = ++answer_seq;
	r->done = true;
}

struct seq_lease {
	struct lease_res r;
	int seq;
};

static void on_seq_lease(void *arg, int result, struct store_queue_lease *l)
{
	struct seq_lease *s = arg;
	s->seq = ++answer_seq;
	on_lease(&s->r, result, l);
}

static void test_lease_after_record(void)
{
	struct env e = {0};
	CHECK(env_new(&e));
	if (e.st == NULL)
		return;
	long long now = (long long)time(NULL);
	char *sql = xasprintf("INSERT INTO queue(id, message_id, rcpt, domain, attempts, next_try,"
			      " created, lease_owner, lease_until)"
			      " VALUES (7, 3000000, 'r@due.example', 'due.example', 0, %lld, %lld,"
			      " 'test', %lld)",
			      now - 10, now - 10, now + 600);
	CHECK_INT(1, sql_exec(sql), 0);
	free(sql);
	hold_state = 0;
	answer_seq = 0;
	sqlite3_progress_handler(e.st->cdb.db, 10, hold_once, NULL);
	struct seq_lease first = {0}, second = {0};
	store_queue_lease(e.st, "test", (time_t)now, 600, 10, on_seq_lease, &first);
	for (int i = 0; i < 2000 && __atomic_load_n(&hold_state, __ATOMIC_SEQ_CST) == 0; i++) {
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT(2, __atomic_load_n(&hold_state, __ATOMIC_SEQ_CST), 1);
	/* the attempt failed for now: due again at once */
	struct store_queue_result qr = {.id = 7, .outcome = STORE_QUEUE_RETRY,
					.next_try = (time_t)now - 1};
	struct rec_res rec = {0};
	store_queue_record(e.st, "test", (time_t)now, &qr, 1, on_record, &rec);
	store_queue_lease(e.st, "test", (time_t)now, 600, 10, on_seq_lease, &second);
	__atomic_store_n(&hold_state, 2, __ATOMIC_SEQ_CST); /* both wait for the next round */
	run_until(e.l, &second.r.done);
	run_until(e.l, &rec.done);
	run_until(e.l, &first.r.done);
	sqlite3_progress_handler(e.st->cdb.db, 0, NULL, NULL);
	CHECK_INT(3, first.r.n_msg, 0); /* leased already when it ran */
	CHECK_INT(4, rec.result, 0);
	CHECK_INT(5, second.r.result, 0);
	CHECK_INT(6, second.r.n_msg, 1); /* the record made it due again */
	CHECK(rec.seq < second.seq);
	env_free(&e);
}

int main(void)
{
	test_run("backoff", test_backoff);
	test_run("relay_applies", test_relay_applies);
	test_run("hostport", test_hostport);
	test_run("verdict", test_verdict);
	test_run("delay_due", test_delay_due);
	test_run("notify", test_notify);
	test_run("lease_work", test_lease_work);
	test_run("lease_after_record", test_lease_after_record);
	return test_done("test_queue");
}
