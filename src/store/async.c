/* Reads on worker threads: a store_read() job takes a read connection (one
 * per concurrently reading thread, opened on first use and kept), runs the
 * caller's function inside one read transaction, gives the connection back
 * and posts the completion to the loop (core/pool.h).
 *
 * Why connections are pooled rather than owned by a thread: the pool's
 * workers are the core's, shared with password hashing, and do not know the
 * store. A connection is used by one thread at a time (the idle list hands it
 * over under a mutex), which is all SQLite's multi-thread mode asks; their
 * number never exceeds the number of threads reading at once. Their prepared
 * statements stay cached with them (store_sql). */
#include "store/store_int.h"

#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

/* Two kinds of read connection: [1] maps the file (READER_MMAP), [0] does
 * not (store_read_lookup). */
struct store_readers {
	pthread_mutex_t mu;
	struct store_db **idle[2]; /* connections not in use */
	size_t n_idle[2], cap[2];
	size_t n_open[2];
};

struct read_job {
	struct store *st;
	store_read_fn *fn;
	store_read_done_cb *done;
	void *arg;
	int result;
	char *err;
};

/* ---- read connections ---- */

static void reader_close(struct store_db *d)
{
	for (int i = 0; i < STMT_N; i++)
		sqlite3_finalize(d->stmts[i]);
	for (int i = 0; i < d->n_cache; i++)
		sqlite3_finalize(d->cache[i].s);
	if (d->db)
		sqlite3_close(d->db);
	free(d);
}

/* A read connection maps up to this much of the database file (SQLite's
 * mmap_size): the pages SORT, THREAD and SEARCH read (rows and their MIME
 * caches) are then copied from the page cache instead of one pread() per
 * page. The risk: an I/O error on a mapped page is a SIGBUS, not an error
 * code (docs/design.md). The WAL is read as before. */
#define READER_MMAP " PRAGMA mmap_size = 268435456;"

/* On a worker: a new read connection (map: with READER_MMAP), or NULL
 * with *err_r. */
static struct store_db *reader_open(struct store *st, bool map, char **err_r)
{
	struct store_db *d = xcalloc(1, sizeof *d);
	char *path = xasprintf("%s/postern.db", st->dir);
	/* NOMUTEX: one thread at a time (see above). query_only: a read
	 * connection never writes, whatever a caller's function tries. */
	int rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	free(path);
	if (rc != SQLITE_OK) {
		*err_r = xasprintf("open read connection: %s",
				   d->db ? sqlite3_errmsg(d->db) : "cannot open");
		reader_close(d);
		return NULL;
	}
	sqlite3_busy_timeout(d->db, 10000);
	if (store_exec(d, "PRAGMA query_only = ON; PRAGMA foreign_keys = ON;", err_r) < 0 ||
	    (map && store_exec(d, READER_MMAP, err_r) < 0)) {
		reader_close(d);
		return NULL;
	}
	return d;
}

static struct store_db *reader_get(struct store *st, bool map, char **err_r)
{
	struct store_readers *r = st->readers;
	struct store_db *d = NULL;
	pthread_mutex_lock(&r->mu);
	if (r->n_idle[map] > 0)
		d = r->idle[map][--r->n_idle[map]];
	pthread_mutex_unlock(&r->mu);
	if (d != NULL)
		return d;
	d = reader_open(st, map, err_r);
	if (d != NULL) {
		pthread_mutex_lock(&r->mu);
		r->n_open[map]++;
		pthread_mutex_unlock(&r->mu);
	}
	return d;
}

static void reader_put(struct store *st, bool map, struct store_db *d)
{
	struct store_readers *r = st->readers;
	pthread_mutex_lock(&r->mu);
	if (r->n_idle[map] == r->cap[map]) {
		r->cap[map] = r->cap[map] ? r->cap[map] * 2 : 8;
		r->idle[map] = xrealloc(r->idle[map], r->cap[map] * sizeof *r->idle[map]);
	}
	r->idle[map][r->n_idle[map]++] = d;
	pthread_mutex_unlock(&r->mu);
}

void store_readers_free(struct store *st)
{
	struct store_readers *r = st->readers;
	if (r == NULL)
		return;
	/* Every job has finished (the pools are freed before the store): all
	 * connections are idle. */
	for (int m = 0; m < 2; m++) {
		x_assert(r->n_idle[m] == r->n_open[m]);
		for (size_t i = 0; i < r->n_idle[m]; i++)
			reader_close(r->idle[m][i]);
		free(r->idle[m]);
	}
	pthread_mutex_destroy(&r->mu);
	x_free(&st->readers);
}

/* ---- store_read ---- */

static void readers_init(struct store *st)
{
	if (st->readers == NULL) {
		st->readers = xcalloc(1, sizeof *st->readers);
		pthread_mutex_init(&st->readers->mu, NULL);
	}
}

void store_readers_init(struct store *st)
{
	readers_init(st);
}

static int read_here(struct store *st, bool map, store_read_fn *fn, void *arg, char **err_r)
{
	struct store_db *d = reader_get(st, map, err_r);
	if (d == NULL)
		return -1;
	int result = -1;
	/* A deferred BEGIN: the snapshot starts at the first read and holds
	 * until COMMIT; in WAL mode it waits for nobody and nobody waits for it. */
	if (store_exec(d, "BEGIN", err_r) == 0) {
		struct store_snap sn = {.st = st, .d = d,
					.spam_gen = __atomic_load_n(&st->spam_gen, __ATOMIC_ACQUIRE)};
		result = fn(&sn, arg, err_r);
		if (result < 0 && *err_r == NULL)
			*err_r = xstrdup("read failed");
		store_exec(d, "COMMIT", NULL); /* read-only: nothing to lose */
	}
	reader_put(st, map, d);
	return result;
}

int store_read_here(struct store *st, store_read_fn *fn, void *arg, char **err_r)
{
	return read_here(st, true, fn, arg, err_r);
}

int store_read_lookup(struct store *st, store_read_fn *fn, void *arg, char **err_r)
{
	return read_here(st, false, fn, arg, err_r);
}

static void read_work(void *arg)
{
	struct read_job *job = arg;
	job->result = store_read_here(job->st, job->fn, job->arg, &job->err);
}

static void read_done(void *arg)
{
	struct read_job *job = arg;
	job->done(job->arg, job->result, job->result == 0 ? NULL : job->err);
	free(job->err);
	free(job);
}

void store_read(struct store *st, struct pool *p, store_read_fn *fn, store_read_done_cb *done,
		void *arg)
{
	/* Made on the loop thread, before any worker can look at it. */
	readers_init(st);
	struct read_job *job = xcalloc(1, sizeof *job);
	job->st = st;
	job->fn = fn;
	job->done = done;
	job->arg = arg;
	pool_submit(p, read_work, read_done, job);
}

int store_snap_mailbox_status(struct store_snap *sn, const char *user, const char *mailbox,
			      struct store_mailbox_status *status_r, char **err_r)
{
	return store_db_mailbox_status(sn->d, user, mailbox, status_r, err_r);
}

int store_snap_mail_list(struct store_snap *sn, const char *user, const char *mailbox,
			 store_mail_cb *cb, void *arg, char **err_r)
{
	return store_db_mail_list(sn->d, user, mailbox, cb, arg, err_r);
}

/* ---- loading a mailbox ---- */

struct list_job {
	char *user, *mailbox;
	store_mail_cb *each;
	store_mail_list_done_cb *done;
	void *arg;
	struct store_mailbox_status status;
};

static int list_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct list_job *lj = arg;
	if (store_snap_mailbox_status(sn, lj->user, lj->mailbox, &lj->status, err_r) < 0)
		return -1;
	return store_snap_mail_list(sn, lj->user, lj->mailbox, lj->each, lj->arg, err_r);
}

static void list_done(void *arg, int result, const char *err)
{
	struct list_job *lj = arg;
	lj->done(lj->arg, result, result == 0 ? &lj->status : NULL, err);
	free(lj->user);
	free(lj->mailbox);
	free(lj);
}

void store_mail_list_async(struct store *st, struct pool *p, const char *user, const char *mailbox,
			   store_mail_cb *each, store_mail_list_done_cb *done, void *arg)
{
	struct list_job *lj = xcalloc(1, sizeof *lj);
	lj->user = xstrdup(user);
	lj->mailbox = mailbox ? xstrdup(mailbox) : NULL;
	lj->each = each;
	lj->done = done;
	lj->arg = arg;
	store_read(st, p, list_read, list_done, lj);
}
