/* The store test fixture shared by tests/unit/store, store_async and
 * store_imap: a temporary directory per test (tmpdir, with the data
 * directory at tmpdir/data, so store_open creates it), a store with a real
 * loop and worker pool (struct env), the database read and written directly
 * as another process would, file counts in the data directory, and running
 * the loop until a flag is set.
 *
 * Define STORE_FIXTURE_NAME (the binary's name, for the temporary
 * directory) before including it, after ../test.h. Every function is static
 * inline: a test binary compiles only what it calls. */
#ifndef TESTS_UNIT_STORE_FIXTURE_H
#define TESTS_UNIT_STORE_FIXTURE_H

#include <dirent.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "store/store.h"

#ifndef STORE_FIXTURE_NAME
#error "define STORE_FIXTURE_NAME before including store_fixture.h"
#endif

static char tmpdir[64];

/* ---- the temporary directory ---- */

static inline int fixture_rm_one(const char *path, const struct stat *sb, int flag,
				 struct FTW *ftw)
{
	return remove(path);
}

static inline void dir_new(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/" STORE_FIXTURE_NAME ".XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
}

static inline void dir_remove(void)
{
	nftw(tmpdir, fixture_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* data dir = tmpdir/data, so store_open creates it */
static inline struct store *open_store(void)
{
	char *err = NULL;
	char *path = xasprintf("%s/data", tmpdir);
	struct store *st = store_open(path, &err);
	if (st == NULL)
		printf("  store_open: %s\n", err);
	free(err);
	free(path);
	return st;
}

/* ---- a started store with its loop and a pool of 2 workers ---- */

struct env {
	struct store *st;
	struct loop *l;
	struct pool *p;
};

/* opens and starts the store in tmpdir (made by dir_new) */
static inline bool env_start(struct env *e)
{
	e->st = open_store();
	if (e->st == NULL)
		return false;
	e->l = loop_new();
	if (store_start(e->st, e->l, 0) < 0)
		return false;
	e->p = pool_new(e->l, 2);
	return true;
}

/* a new tmpdir, a started store, the domain example.com with alice and bob */
static inline bool env_new(struct env *e)
{
	dir_new();
	if (!env_start(e))
		return false;
	char *err = NULL;
	if (store_domain_add(e->st, "example.com", &err) < 0 ||
	    store_user_add(e->st, "alice@example.com", "x", &err) < 0 ||
	    store_user_add(e->st, "bob@example.com", "x", &err) < 0) {
		printf("  accounts: %s\n", err);
		free(err);
		return false;
	}
	return true;
}

/* The pool goes before the store (its workers use read connections). */
static inline void env_free(struct env *e)
{
	pool_free(&e->p);
	store_close(&e->st);
	loop_free(&e->l);
	dir_remove();
}

/* ---- the database, read and written directly ---- */

/* the first column of the first row of sql, -999 if there is none */
static inline long long sql_int(const char *sql)
{
	char *path = xasprintf("%s/data/postern.db", tmpdir);
	sqlite3 *db;
	sqlite3_stmt *s;
	long long v = -999;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
			if (sqlite3_step(s) == SQLITE_ROW)
				v = sqlite3_column_int64(s, 0);
			sqlite3_finalize(s);
		} else {
			printf("  sql: %s: %s\n", sql, sqlite3_errmsg(db));
		}
	}
	sqlite3_close(db);
	free(path);
	return v;
}

/* Runs SQL on the database file beside the store (as another process would). */
static inline int sql_exec(const char *sql)
{
	char *path = xasprintf("%s/data/postern.db", tmpdir);
	sqlite3 *db;
	char *msg = NULL;
	int r = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) ==
	    SQLITE_OK) {
		sqlite3_busy_timeout(db, 10000);
		r = sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK ? 0 : -1;
		if (r < 0)
			printf("  sql_exec: %s\n", msg ? msg : sqlite3_errmsg(db));
	}
	sqlite3_free(msg);
	sqlite3_close(db);
	free(path);
	return r;
}

/* ---- files in the data directory ---- */

/* Files in tmpdir/data/sub (skipping empty ones if nonempty_only: the
 * committer keeps a stock of empty spool files ready); -1 if there is no
 * such directory. */
static inline int count_files_x(const char *sub, bool nonempty_only)
{
	int n = 0;
	char path[256];
	snprintf(path, sizeof path, "%s/data/%s", tmpdir, sub);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	struct dirent *de;
	struct stat sb;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' &&
		    (!nonempty_only || (fstatat(dirfd(d), de->d_name, &sb, 0) == 0 && sb.st_size > 0)))
			n++;
	closedir(d);
	return n;
}

static inline int count_files(const char *sub)
{
	return count_files_x(sub, false);
}

/* spool files that hold something (not the committer's empty stock) */
static inline int count_nonempty_spool(void)
{
	int n = count_files_x("spool", true);
	return n < 0 ? 0 : n;
}

static inline int count_blobs(void)
{
	int n = 0;
	for (int i = 0; i < 256; i++) {
		char sub[16];
		snprintf(sub, sizeof sub, "blobs/%02x", i);
		int k = count_files(sub);
		n += k > 0 ? k : 0;
	}
	return n;
}

/* ---- accounts and bodies ---- */

static inline int64_t user_id_of(struct store *st, const char *addr)
{
	struct store_targets t = {0};
	int64_t id = 0;
	if (store_resolve(st, addr, &t) == 1 && t.n == 1)
		id = t.v[0].user_id;
	store_targets_free(&t);
	return id;
}

/* n bytes of a pattern that differs by seed (the caller frees it) */
static inline char *make_body(size_t n, unsigned seed)
{
	char *b = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (char)((i * 31 + seed) % 251);
	return b;
}

/* ---- running the loop until something happened ---- */

static inline void on_deadline(void *arg)
{
	*(bool *)arg = true;
}

static inline void stop_cb(void *arg)
{
	loop_stop(arg);
}

/* Runs the loop for about 1 ms (what is due runs). */
static inline void run_a_bit(struct loop *l)
{
	loop_timer_add(l, 1, stop_cb, l);
	loop_run(l);
}

/* Runs the loop (one wake at a time) until *flag or 30 s. */
static inline void run_until(struct loop *l, const bool *flag)
{
	bool late = false;
	struct timer *t = loop_timer_add(l, 30000, on_deadline, &late);
	while (!*flag && !late)
		run_a_bit(l);
	if (!late)
		loop_timer_cancel(l, &t);
	CHECK(!late);
}

#endif
