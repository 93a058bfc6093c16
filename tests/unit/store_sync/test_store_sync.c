/* The committer's round when the sync of the database's log fails
 * (commit.c: round_end): a durable write (delivery, EXPUNGE / POP3 DELE)
 * is never answered positively, and the blobs its transaction dropped are
 * not unlinked (a crash may bring the rows back). The failure is injected
 * by a default SQLite VFS over "unix" whose write-ahead-log files fail
 * xSync while fail_sync is set. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test.h"
#define STORE_FIXTURE_NAME "test_store_sync"
#include "../store_fixture.h"

static volatile bool fail_sync;
static int n_failed_syncs;
static sqlite3_vfs shim_vfs, *real_vfs;
static sqlite3_io_methods wal_methods;
static const sqlite3_io_methods *real_wal_methods;

static int wal_sync(sqlite3_file *f, int flags)
{
	if (fail_sync) {
		__atomic_add_fetch(&n_failed_syncs, 1, __ATOMIC_SEQ_CST);
		return SQLITE_IOERR_FSYNC;
	}
	return real_wal_methods->xSync(f, flags);
}

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	int rc = real_vfs->xOpen(real_vfs, name, f, flags, out);
	if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && f->pMethods != NULL) {
		/* the unix file, with its methods but xSync */
		if (real_wal_methods == NULL) {
			real_wal_methods = f->pMethods;
			wal_methods = *f->pMethods;
			wal_methods.xSync = wal_sync;
		}
		f->pMethods = &wal_methods;
	}
	return rc;
}

static void shim_install(void)
{
	real_vfs = sqlite3_vfs_find("unix");
	shim_vfs = *real_vfs;
	shim_vfs.zName = "failsync";
	shim_vfs.xOpen = shim_open;
	sqlite3_vfs_register(&shim_vfs, 1);
}

struct res {
	bool done;
	int result;
};

static void on_done(void *arg, int result)
{
	struct res *r = arg;
	r->result = result;
	r->done = true;
}

/* A spool holding text. */
static struct store_spool *spool_of(struct env *e, const char *text)
{
	char *err = NULL;
	struct store_spool *sp = store_spool_new(e->st, &err);
	CHECK(sp != NULL);
	store_spool_write(sp, text, strlen(text));
	return sp;
}

static int deliver(struct env *e, int64_t uid)
{
	struct store_spool *sp = spool_of(e, "Subject: x\r\n\r\nbody\r\n");
	struct store_delivery d = {.txid = "t", .mail_from = "", .received = 1,
				   .user_ids = &uid, .n_users = 1};
	struct res r = {0};
	store_commit(e->st, sp, &d, on_done, &r);
	run_until(e->l, &r.done);
	return r.result;
}

static void test_expunge_sync_fails(void)
{
	struct env e = {0};
	CHECK(env_new(&e));
	if (e.st == NULL)
		return;
	int64_t alice = user_id_of(e.st, "alice@example.com");
	CHECK_INT(1, deliver(&e, alice), 0);
	CHECK_INT(2, deliver(&e, alice), 0);
	CHECK_INT(3, count_blobs(), 2);

	/* EXPUNGE (POP3 DELE+QUIT) while the log cannot be synced: an error,
	 * and the blob stays */
	fail_sync = true;
	uint32_t uid1 = 1;
	struct res r = {0};
	store_expunge(e.st, "alice@example.com", NULL, 0, &uid1, 1, on_done, &r);
	run_until(e.l, &r.done);
	CHECK(n_failed_syncs > 0);
	CHECK_INT(4, r.result, -1);
	CHECK_INT(5, count_blobs(), 2);

	/* a delivery in the same state: a temporary failure, not a 250 */
	CHECK(deliver(&e, alice) != 0);
	fail_sync = false;

	/* synced again: the next expunge works and unlinks */
	uint32_t uid2 = 2;
	r = (struct res){0};
	store_expunge(e.st, "alice@example.com", NULL, 0, &uid2, 1, on_done, &r);
	run_until(e.l, &r.done);
	CHECK_INT(6, r.result, 0);
	env_free(&e);
}

struct lease_res {
	bool done;
	int result;
	struct store_queue_lease *l;
};

static void on_lease(void *arg, int result, struct store_queue_lease *l)
{
	struct lease_res *r = arg;
	r->result = result;
	r->l = l;
	r->done = true;
}

/* The queue's record of a delivered entry drops the message's last
 * reference: its blob goes only once that is durable, never on a failed
 * sync (a crash would bring the entry back, pointing at nothing). The
 * message is queued for a remote recipient and leased first. */
static int64_t leased_entry;

static int queue_prepare(struct env *e, struct store_spool **sp)
{
	struct store_remote_rcpt rc = {.addr = "x@remote.example"};
	struct store_delivery d = {.txid = "t", .mail_from = "alice@example.com",
				   .received = 1, .remote = &rc, .n_remote = 1};
	struct res r = {0};
	store_commit(e->st, *sp, &d, on_done, &r);
	*sp = NULL;
	run_until(e->l, &r.done);
	CHECK_INT(1, r.result, 0);
	CHECK_INT(2, count_blobs(), 1);

	struct lease_res lr = {0};
	store_queue_lease(e->st, "test", time(NULL) + 10, 600, 10, on_lease, &lr);
	run_until(e->l, &lr.done);
	CHECK_INT(3, lr.result, 0);
	if (lr.result != 0 || lr.l->n_msg != 1 || lr.l->msg[0].n_rcpt != 1) {
		CHECK(false);
		store_queue_lease_free(&lr.l);
		return -1;
	}
	leased_entry = lr.l->msg[0].rcpt[0].id;
	store_queue_lease_free(&lr.l);
	return 0;
}

static int queue_write(struct env *e, struct store_spool **sp)
{
	struct store_queue_result qr = {.id = leased_entry, .outcome = STORE_QUEUE_DONE};
	struct res r = {0};
	store_queue_record(e->st, "test", time(NULL), &qr, 1, on_done, &r);
	run_until(e->l, &r.done);
	return r.result;
}

static void on_append(void *arg, int result, uint32_t uidvalidity, uint32_t first_uid)
{
	struct res *r = arg;
	r->result = result;
	r->done = true;
}

/* APPEND whose transaction committed but could not be synced: not OK, and
 * its blob stays (the row that uses it is in the database). */
static int append_write(struct env *e, struct store_spool **sp)
{
	struct res r = {0};
	store_append(e->st, "alice@example.com", "INBOX", sp, 1, NULL, NULL, NULL, on_append,
		     &r);
	run_until(e->l, &r.done);
	return r.result;
}

/* A write whose transaction commits while the log cannot be synced: it is
 * not answered positively, and the blobs stay. */
static const struct sync_case {
	const char *name;
	const char *text; /* the message spooled for prepare / write */
	int (*prepare)(struct env *e, struct store_spool **sp); /* synced; NULL: none */
	int (*write)(struct env *e, struct store_spool **sp);   /* under the failure */
	int want;   /* the result: exactly this (exact), or anything but this */
	bool exact;
	int messages; /* rows in messages afterwards; -1: not checked */
	int blobs;
} sync_cases[] = {
    {"queue_record_sync_fails", "Subject: x\r\n\r\nbody\r\n", queue_prepare, queue_write,
     -1, true, -1, 1},
    {"append_sync_fails", "Subject: a\r\n\r\nbody\r\n", NULL, append_write, STORE_OK,
     false, 1, 1},
};

static void test_write_sync_fails(void)
{
	for (size_t i = 0; i < sizeof sync_cases / sizeof sync_cases[0]; i++) {
		const struct sync_case *c = &sync_cases[i];
		printf("  case %s\n", c->name);
		struct env e = {0};
		CHECK(env_new(&e));
		if (e.st == NULL)
			return;
		struct store_spool *sp = spool_of(&e, c->text);
		if (c->prepare != NULL && c->prepare(&e, &sp) < 0) {
			env_free(&e);
			continue;
		}
		fail_sync = true;
		int result = c->write(&e, &sp);
		fail_sync = false;
		if (c->exact)
			CHECK_INT(4, result, c->want);
		else
			CHECK(result != c->want);
		if (c->messages >= 0)
			CHECK_INT(5, sql_int("SELECT count(*) FROM messages"), c->messages);
		CHECK_INT(6, count_blobs(), c->blobs);
		env_free(&e);
	}
}

int main(void)
{
	shim_install();
	test_run("expunge_sync_fails", test_expunge_sync_fails);
	test_run("write_sync_fails", test_write_sync_fails);
	return test_done("test_store_sync");
}
