/* Unit tests for the store's work on worker threads: store_read snapshots,
 * store_mail_list_async, and spool buffers written by a worker
 * (store_spool_async). A binary of its own (test.h keeps its counters per
 * file), beside tests/unit/store. Each test works in its own temporary
 * directory and runs a real loop and pool. */
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "store/store.h"

#define STORE_FIXTURE_NAME "test_store_async"
#include "../store_fixture.h"

/* ---- deliveries ---- */

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

static void deliver_spool(struct env *e, struct store_spool *sp, const char *user,
			  struct commit_wait *w)
{
	int64_t id = user_id_of(e->st, user);
	struct store_delivery d = {
		.txid = "T",
		.mail_from = "sender@remote.org",
		.received = 1700000000,
		.user_ids = &id,
		.n_users = 1,
	};
	store_commit(e->st, sp, &d, commit_cb, w);
}

static int deliver(struct env *e, const char *user, size_t n, unsigned seed)
{
	char *err = NULL, *b = make_body(n, seed);
	struct store_spool *sp = store_spool_new(e->st, &err);
	struct commit_wait w = {0};
	CHECK(sp != NULL);
	store_spool_write(sp, b, n);
	free(b);
	deliver_spool(e, sp, user, &w);
	run_until(e->l, &w.done);
	return w.result;
}

static void check_content(struct env *e, const char *user, uint32_t uid, const char *body,
			  size_t n)
{
	int fd = -1;
	char *err = NULL;
	if (store_mail_open(e->st, user, NULL, 0, uid, &fd, &err) != 0) {
		printf("  store_mail_open %s %u: %s\n", user, uid, err);
		free(err);
		CHECK(0);
		return;
	}
	char *got = xmalloc(n + 1);
	size_t have = 0;
	ssize_t r;
	while (have < n + 1 && (r = read(fd, got + have, n + 1 - have)) > 0)
		have += (size_t)r;
	CHECK_INT(uid, have, n);
	CHECK(have == n && memcmp(got, body, n) == 0);
	free(got);
	close(fd);
}

/* ---- store_mail_list_async ---- */

struct load {
	char text[512]; /* "uid:size;..." built on the worker */
	bool done;
	int result;
	struct store_mailbox_status status;
	char err[128];
};

static void load_each(void *arg, const struct store_mail_info *m)
{
	struct load *ld = arg;
	size_t n = strlen(ld->text);
	snprintf(ld->text + n, sizeof ld->text - n, "%s%u:%llu", n ? ";" : "", m->uid,
		 (unsigned long long)m->size);
}

static void load_done(void *arg, int result, const struct store_mailbox_status *status,
		      const char *err)
{
	struct load *ld = arg;
	ld->done = true;
	ld->result = result;
	if (status != NULL)
		ld->status = *status;
	snprintf(ld->err, sizeof ld->err, "%s", err ? err : "");
}

static void test_mail_list_async(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	CHECK_INT(1, deliver(&e, "alice@example.com", 10, 1), 0);
	CHECK_INT(2, deliver(&e, "alice@example.com", 70000, 2), 0);
	CHECK_INT(3, deliver(&e, "bob@example.com", 5, 3), 0);
	struct store_mailbox_status want;
	char *err = NULL;
	CHECK_INT(4, store_mailbox_status(e.st, "alice@example.com", NULL, &want, &err), 0);

	static const struct {
		const char *user, *mailbox;
		int result;
		const char *text, *err;
	} cases[] = {
		{"alice@example.com", NULL, 0, "1:10;2:70000", ""},
		{"ALICE@Example.com", "inbox", 0, "1:10;2:70000", ""},
		{"bob@example.com", "INBOX", 0, "1:5", ""},
		{"carol@example.com", NULL, -1, "", "no such user carol@example.com"},
		{"alice@example.com", "Nosuch", -1, "", "no such mailbox Nosuch for alice@example.com"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct load ld = {.result = 99};
		store_mail_list_async(e.st, e.p, cases[i].user, cases[i].mailbox, load_each,
				      load_done, &ld);
		CHECK(!ld.done); /* never from inside the call */
		run_until(e.l, &ld.done);
		CHECK_INT((int)i, ld.result, cases[i].result);
		CHECK_STR((int)i, ld.text, cases[i].text);
		CHECK_STR((int)i, ld.err, cases[i].err);
		if (i == 0) {
			CHECK_INT(10, ld.status.uidvalidity, want.uidvalidity);
			CHECK_INT(11, ld.status.uidnext, 3);
			CHECK_INT(12, ld.status.messages, 2);
		}
	}
	env_free(&e);
}

/* ---- one snapshot: a commit between two reads of one store_read ---- */

struct snap_test {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool status_read, committed, done;
	int result;
	struct store_mailbox_status status;
	int n_listed;
};

static void count_each(void *arg, const struct store_mail_info *m)
{
	((struct snap_test *)arg)->n_listed++;
}

/* On the worker: status, then wait for the test to commit a message, then
 * the list. */
static int snap_fn(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_test *t = arg;
	if (store_snap_mailbox_status(sn, "alice@example.com", NULL, &t->status, err_r) < 0)
		return -1;
	pthread_mutex_lock(&t->mu);
	t->status_read = true;
	pthread_cond_broadcast(&t->cv);
	while (!t->committed)
		pthread_cond_wait(&t->cv, &t->mu);
	pthread_mutex_unlock(&t->mu);
	return store_snap_mail_list(sn, "alice@example.com", NULL, count_each, t, err_r);
}

static void snap_done(void *arg, int result, const char *err)
{
	struct snap_test *t = arg;
	t->done = true;
	t->result = result;
}

static void test_snapshot(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	CHECK_INT(1, deliver(&e, "alice@example.com", 100, 1), 0);
	struct snap_test t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	store_read(e.st, e.p, snap_fn, snap_done, &t);
	pthread_mutex_lock(&t.mu);
	while (!t.status_read)
		pthread_cond_wait(&t.cv, &t.mu);
	pthread_mutex_unlock(&t.mu);
	/* the snapshot is open on the worker: a second message is committed */
	CHECK_INT(2, deliver(&e, "alice@example.com", 200, 2), 0);
	pthread_mutex_lock(&t.mu);
	t.committed = true;
	pthread_cond_broadcast(&t.cv);
	pthread_mutex_unlock(&t.mu);
	run_until(e.l, &t.done);
	CHECK_INT(3, t.result, 0);
	CHECK_INT(4, t.status.messages, 1);
	CHECK_INT(5, t.n_listed, 1); /* the list is from the status's snapshot */
	/* a new read sees both */
	struct load ld = {0};
	store_mail_list_async(e.st, e.p, "alice@example.com", NULL, load_each, load_done, &ld);
	run_until(e.l, &ld.done);
	CHECK_STR(6, ld.text, "1:100;2:200");
	CHECK_INT(7, ld.status.messages, 2);
	env_free(&e);
}

/* ---- spool buffers written by a worker ---- */

struct ready_count {
	int n;
};

static void on_ready(void *arg)
{
	((struct ready_count *)arg)->n++;
}

/* Writes body in odd chunks, waiting (as a session pauses its input)
 * whenever the spool says it is busy. */
static void spool_feed(struct env *e, struct store_spool *sp, const char *body, size_t n,
		       struct ready_count *rc)
{
	size_t chunk = 7;
	for (size_t off = 0; off < n; off += chunk, chunk = chunk * 3 + 1) {
		if (chunk > 300000)
			chunk = 1001;
		size_t m = n - off < chunk ? n - off : chunk;
		CHECK_INT(1, store_spool_write(sp, body + off, m), 0);
		while (store_spool_busy(sp)) {
			int before = rc->n;
			bool ready = false;
			while (!ready) {
				run_a_bit(e->l);
				ready = rc->n > before;
			}
		}
	}
}

static void test_spool_async(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	char *err = NULL;
	static const size_t sizes[] = {100, 65536, 65537, 200000, 3000000};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		char *b = make_body(n, (unsigned)i);
		struct ready_count rc = {0};
		struct store_spool *sp = store_spool_new(e.st, &err);
		CHECK(sp != NULL);
		store_spool_async(sp, e.p, on_ready, &rc);
		spool_feed(&e, sp, b, n, &rc);
		CHECK_INT((int)i, store_spool_size(sp), n);
		/* committed at once: a write may still be in flight */
		struct commit_wait w = {0};
		deliver_spool(&e, sp, "alice@example.com", &w);
		run_until(e.l, &w.done);
		CHECK_INT((int)i, w.result, 0);
		check_content(&e, "alice@example.com", (uint32_t)i + 1, b, n);
		if (n < 65536)
			CHECK_INT((int)i, rc.n, 0); /* small: written by the committer only */
		free(b);
	}

	/* discarded while a write is in flight: the worker's completion frees it */
	char *b = make_body(500000, 9);
	struct store_spool *sp = store_spool_new(e.st, &err);
	struct ready_count rc = {0};
	store_spool_async(sp, e.p, on_ready, &rc);
	store_spool_write(sp, b, 500000);
	store_spool_discard(&sp);
	CHECK(sp == NULL);
	/* The write finishes on the worker and its completion, on the loop,
	 * frees and unlinks the spool (pool_free would drop a job not yet
	 * started: it must not be relied on here). At most about 10 s. */
	for (int k = 0; k < 10000 && count_nonempty_spool() != 0; k++)
		run_a_bit(e.l);
	for (int k = 0; k < 20; k++) /* anything else posted */
		run_a_bit(e.l);
	CHECK_INT(20, rc.n, 0); /* no callback after the discard */
	CHECK_INT(21, count_nonempty_spool(), 0);
	free(b);
	env_free(&e);
}

/* ---- a spool discarded during store_spool_filter ---- */

struct filter_probe {
	const char *want; /* the bytes fn must see */
	size_t n;
	int calls, same, done;
	int result;
};

static bool probe_fn(void *arg, const char *msg, size_t len, struct store_spool *out)
{
	struct filter_probe *p = arg;
	(void)out;
	usleep(100 * 1000); /* the loop discards the spool meanwhile */
	p->calls++;
	p->same = len == p->n && memcmp(msg, p->want, len) == 0;
	return false;
}

static void probe_done(void *arg, int result)
{
	struct filter_probe *p = arg;
	p->done++;
	p->result = result;
}

/* The filter's worker step over a spool whose transaction was refused
 * meanwhile (policy's verdict while the statistical filter reads, filter.c):
 * the discard waits for the step, done still runs once, the bytes stay
 * intact while fn reads them, and the spool is freed after. Sizes: in the
 * buffer (small), and on file with a write still in flight (async). */
static void test_spool_filter_discard(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	char *err = NULL;
	static const size_t sizes[] = {3000, 60000, 500000};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		char *b = make_body(n, (unsigned)i + 20);
		struct ready_count rc = {0};
		struct filter_probe p = {.want = b, .n = n};
		struct store_spool *sp = store_spool_new(e.st, &err);
		CHECK(sp != NULL);
		store_spool_async(sp, e.p, on_ready, &rc);
		CHECK_INT((int)i, store_spool_write(sp, b, n), 0);
		store_spool_filter(sp, e.p, probe_fn, probe_done, &p);
		store_spool_discard(&sp);
		CHECK(sp == NULL);
		for (int k = 0; k < 10000 && p.done == 0; k++)
			run_a_bit(e.l);
		for (int k = 0; k < 20; k++) /* anything else posted */
			run_a_bit(e.l);
		CHECK_INT((int)i, p.calls, 1);
		CHECK_INT((int)i, p.same, 1);
		CHECK_INT((int)i, p.done, 1);
		CHECK_INT((int)i, p.result, 0);
		CHECK_INT((int)i, rc.n, 0); /* no ready callback after the discard */
		CHECK_INT((int)i, count_nonempty_spool(), 0);
		free(b);
	}
	env_free(&e);
}

int main(void)
{
	test_run("mail_list_async", test_mail_list_async);
	test_run("snapshot", test_snapshot);
	test_run("spool_async", test_spool_async);
	test_run("spool_filter_discard", test_spool_filter_discard);
	return test_done("test_store_async");
}
