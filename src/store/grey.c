/* Greylisting state (RFC 6647) kept across restarts: src/filter/grey.c
 * holds it in memory and hands what changed here in batches, at most about
 * once a second, as lazy jobs on the committer (nobody waits for them; they
 * become durable with the committer's next round or within
 * STORE_LAZY_SYNC_MS). At start it is read back on st->main. */
#include "store/store_int.h"

#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

struct grey_job {
	struct store_job job; /* first: the committer sees only this */
	struct store_grey_batch *b;
};

void store_grey_batch_free(struct store_grey_batch **bp)
{
	struct store_grey_batch *b = *bp;
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->n_t; i++) {
		free(b->t[i].net);
		free(b->t[i].sender);
		free(b->t[i].rcpt);
	}
	for (size_t i = 0; i < b->n_nets; i++)
		free(b->nets[i].net);
	for (size_t i = 0; i < b->n_reps; i++)
		free(b->reps[i].domain);
	free(b->t);
	free(b->nets);
	free(b->reps);
	free(b);
	*bp = NULL;
}

static int prune(struct store_db *d, const char *sql, time_t before)
{
	if (before == 0)
		return 0;
	sqlite3_stmt *s = store_sql(d, sql, NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)before);
	return store_step_done(d, s, NULL);
}

static int batch_write(struct store_db *d, const struct store_grey_batch *b)
{
	for (size_t i = 0; i < b->n_t; i++) {
		sqlite3_stmt *s = store_sql(d,
					    "INSERT OR REPLACE INTO greylist (net, sender, rcpt,"
					    " first_seen) VALUES (?1, ?2, ?3, ?4)",
					    NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_text(s, 1, b->t[i].net, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, b->t[i].sender, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, b->t[i].rcpt, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)b->t[i].first_seen);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	for (size_t i = 0; i < b->n_nets; i++) {
		sqlite3_stmt *s = store_sql(d,
					    "INSERT OR REPLACE INTO grey_networks (net, allowed_until)"
					    " VALUES (?1, ?2)",
					    NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_text(s, 1, b->nets[i].net, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)b->nets[i].allowed_until);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	for (size_t i = 0; i < b->n_reps; i++) {
		sqlite3_stmt *s = store_sql(d,
					    "INSERT OR REPLACE INTO grey_reputation (domain, good, bad,"
					    " last_seen) VALUES (?1, ?2, ?3, ?4)",
					    NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_text(s, 1, b->reps[i].domain, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, b->reps[i].good);
		sqlite3_bind_int64(s, 3, b->reps[i].bad);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)b->reps[i].last_seen);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	/* indexed range deletes (greylist_first_seen, ...) */
	if (prune(d, "DELETE FROM greylist WHERE first_seen < ?1", b->prune_t) < 0 ||
	    prune(d, "DELETE FROM grey_networks WHERE allowed_until < ?1", b->prune_nets) < 0 ||
	    prune(d, "DELETE FROM grey_reputation WHERE last_seen < ?1", b->prune_reps) < 0)
		return -1;
	return 0;
}

static int batch_run(struct store_db *d, const struct store_grey_batch *b)
{
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0) {
		log_err("store: grey: begin failed: %s", sqlite3_errmsg(d->db));
		return -1;
	}
	if (batch_write(d, b) < 0 || store_exec(d, "COMMIT", NULL) < 0) {
		log_err("store: grey: save failed: %s", sqlite3_errmsg(d->db));
		store_exec(d, "ROLLBACK", NULL);
		return -1;
	}
	return 0;
}

static void job_tail(struct store *st, struct store_job *job)
{
	struct grey_job *j = (struct grey_job *)job;
	store_grey_batch_free(&j->b);
	free(j);
}

static void job_run(struct store *st, struct store_job *job)
{
	struct grey_job *j = (struct grey_job *)job;
	batch_run(&st->cdb, j->b);
	store_job_done(st, job, job_tail);
}

static void job_queue(struct store *st, struct store_grey_batch *b, bool lazy)
{
	struct grey_job *j = xcalloc(1, sizeof(*j));
	j->b = b;
	j->job.run = job_run;
	j->job.lazy = lazy;
	store_job_queue(st, &j->job);
}

void store_grey_save(struct store *st, struct store_grey_batch *b)
{
	if (!st->started || !st->committer_running) {
		/* no committer (a tool, a test): write it now */
		batch_run(&st->main, b);
		store_grey_batch_free(&b);
		return;
	}
	job_queue(st, b, true);
}

int store_grey_save_now(struct store *st, struct store_grey_batch *b)
{
	if (st->started && st->committer_running) {
		/* after every save queued before it; durable (not lazy) */
		job_queue(st, b, false);
		store_wait_idle(st);
		return 0;
	}
	int r = batch_run(&st->main, b);
	store_grey_batch_free(&b);
	return r;
}

int store_grey_load(struct store *st, time_t t_since, time_t now, time_t rep_since, size_t max,
		    const struct store_grey_load_cb *cb, char **err_r)
{
	struct store_db *d = &st->main;
	sqlite3_stmt *s;
	int rc;
	/* the newest max rows, oldest first (the caller's expiry order) */
	s = store_sql(d,
		      "SELECT net, sender, rcpt, first_seen FROM (SELECT * FROM greylist"
		      " WHERE first_seen >= ?1 ORDER BY first_seen DESC LIMIT ?2)"
		      " ORDER BY first_seen",
		      err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)t_since);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb->triplet(cb->arg, (const char *)sqlite3_column_text(s, 0),
			    (const char *)sqlite3_column_text(s, 1),
			    (const char *)sqlite3_column_text(s, 2),
			    (time_t)sqlite3_column_int64(s, 3));
	store_stmt_done(s);
	if (rc != SQLITE_DONE)
		goto fail;
	s = store_sql(d,
		      "SELECT net, allowed_until FROM (SELECT * FROM grey_networks"
		      " WHERE allowed_until >= ?1 ORDER BY allowed_until DESC LIMIT ?2)"
		      " ORDER BY allowed_until",
		      err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)now);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb->net(cb->arg, (const char *)sqlite3_column_text(s, 0),
			(time_t)sqlite3_column_int64(s, 1));
	store_stmt_done(s);
	if (rc != SQLITE_DONE)
		goto fail;
	s = store_sql(d,
		      "SELECT domain, good, bad, last_seen FROM (SELECT * FROM grey_reputation"
		      " WHERE last_seen >= ?1 ORDER BY last_seen DESC LIMIT ?2)"
		      " ORDER BY last_seen",
		      err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)rep_since);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb->rep(cb->arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
			sqlite3_column_int64(s, 2), (time_t)sqlite3_column_int64(s, 3));
	store_stmt_done(s);
	if (rc != SQLITE_DONE)
		goto fail;
	return 0;
fail:
	if (err_r)
		*err_r = xasprintf("greylist: %s", sqlite3_errmsg(d->db));
	return -1;
}
