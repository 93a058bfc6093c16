/* The outbound queue's store side: leasing due entries, recording the
 * results of an attempt, and the admin operations (store.h, "the outbound
 * queue"). Leases and results are committer jobs (the committer owns the
 * write connection); the admin operations run on the caller's connection
 * (the CLI's). */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

static char *col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? xstrdup((const char *)t) : NULL;
}

/* ---- lease ---- */

struct lease_job {
	struct store_job job; /* first: the committer sees only this */
	struct store *st;
	char *owner;
	time_t now;
	unsigned lease_s;
	size_t max_msgs;
	store_queue_lease_cb *cb;
	void *arg;
	int result;
	struct store_queue_lease *l;
};

void store_queue_msg_free(struct store_queue_msg *m)
{
	for (size_t i = 0; i < m->n_rcpt; i++) {
		free(m->rcpt[i].rcpt);
		free(m->rcpt[i].orcpt);
		free(m->rcpt[i].notify);
		free(m->rcpt[i].last_error);
	}
	free(m->rcpt);
	free(m->domain);
	free(m->mail_from);
	free(m->envid);
	free(m->ret);
	free(m->cache);
	free(m->err);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

int store_queue_unlease_owner(struct store *st, const char *owner)
{
	static const char sql[] = "UPDATE queue SET lease_owner = NULL, lease_until = 0"
	                          " WHERE lease_owner = ?1";
	sqlite3_stmt *s = store_sql(&st->main, sql, NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, owner, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? sqlite3_changes(st->main.db) : -1;
}

void store_queue_lease_free(struct store_queue_lease **lp)
{
	struct store_queue_lease *l = *lp;
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n_msg; i++)
		store_queue_msg_free(&l->msg[i]);
	free(l->msg);
	x_free(lp);
}

/* Groups due at now: a message and a domain, oldest next_try first. Then the
 * due entries of those groups (every due entry of a group goes in one
 * transaction to one destination). The due entries are walked in the
 * next_try index's order and the groups told apart here, stopping at the
 * batch: the work follows the batch, never the size of the queue (a GROUP
 * BY ordered by min(next_try) read every row of the queue, due or not, at
 * every lease, on the committer where every commit waits behind it). */
static const char sql_groups[] =
    "SELECT message_id, domain FROM queue"
    " WHERE next_try <= ?1 AND held = 0 AND lease_until <= ?1 ORDER BY next_try";
static const char sql_group_rcpts[] =
    "UPDATE queue SET lease_owner = ?4, lease_until = ?5"
    " WHERE message_id = ?1 AND domain = ?2 AND next_try <= ?3 AND held = 0"
    " AND lease_until <= ?3"
    " RETURNING id, rcpt, orcpt, notify, attempts, created, delay_notified, last_error,"
    " mail_from";
static const char sql_msg[] =
    "SELECT mail_from, envid, ret, received, size, body_8bit, smtputf8, cache, blob"
    " FROM messages WHERE id = ?1";
static const char sql_next_due[] = "SELECT next_try FROM queue WHERE held = 0 AND lease_until <= ?1"
                                   " ORDER BY next_try LIMIT 1";

/* The length of a leading "Return-Path:" line (CRLF included), or 0. */
static uint64_t return_path_len(int fd, uint64_t size)
{
	char b[1024];
	ssize_t n = pread(fd, b, sizeof b, 0);
	static const char rp[] = "Return-Path:";
	if (n < (ssize_t)sizeof rp || strncasecmp(b, rp, sizeof rp - 1) != 0)
		return 0;
	const char *e = memmem(b, (size_t)n, "\r\n", 2);
	if (e == NULL || (uint64_t)(e - b + 2) > size)
		return 0;
	return (uint64_t)(e - b + 2);
}

static int rcpt_cmp(const void *a, const void *b)
{
	const struct store_queue_rcpt *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int lease_body(struct store *st, struct lease_job *j, struct store_db *d)
{
	sqlite3_stmt *g = store_sql(d, sql_groups, NULL);
	sqlite3_stmt *u = store_sql(d, sql_group_rcpts, NULL);
	sqlite3_stmt *m = store_sql(d, sql_msg, NULL);
	sqlite3_stmt *nd = store_sql(d, sql_next_due, NULL);
	if (g == NULL || u == NULL || m == NULL || nd == NULL)
		return -1;
	struct store_queue_lease *l = j->l;
	sqlite3_bind_int64(g, 1, (int64_t)j->now);
	int rc = SQLITE_DONE;
	size_t cap = 0;
	while (l->n_msg < j->max_msgs && (rc = sqlite3_step(g)) == SQLITE_ROW) {
		int64_t mid = sqlite3_column_int64(g, 0);
		const char *dom = (const char *)sqlite3_column_text(g, 1);
		if (dom == NULL)
			dom = "";
		bool seen = false; /* at most max_msgs groups to look through */
		for (size_t k = l->n_msg; k-- > 0 && !seen;)
			seen = l->msg[k].message_id == mid && strcmp(l->msg[k].domain, dom) == 0;
		if (seen)
			continue;
		if (l->n_msg == cap) {
			cap = cap ? cap * 2 : 8;
			l->msg = xrealloc(l->msg, cap * sizeof *l->msg);
		}
		struct store_queue_msg *qm = &l->msg[l->n_msg++];
		*qm = (struct store_queue_msg){.fd = -1};
		qm->message_id = mid;
		qm->domain = xstrdup(dom);
	}
	store_stmt_done(g);
	if (l->n_msg < j->max_msgs && rc != SQLITE_DONE)
		return -1;
	for (size_t i = 0; i < l->n_msg; i++) {
		struct store_queue_msg *qm = &l->msg[i];
		size_t rcap = 0;
		char *qfrom = NULL;
		sqlite3_bind_int64(u, 1, qm->message_id);
		sqlite3_bind_text(u, 2, qm->domain, -1, SQLITE_STATIC);
		sqlite3_bind_int64(u, 3, (int64_t)j->now);
		sqlite3_bind_text(u, 4, j->owner, -1, SQLITE_STATIC);
		sqlite3_bind_int64(u, 5, (int64_t)j->now + j->lease_s);
		while ((rc = sqlite3_step(u)) == SQLITE_ROW) {
			if (qm->n_rcpt == rcap) {
				rcap = rcap ? rcap * 2 : 4;
				qm->rcpt = xrealloc(qm->rcpt, rcap * sizeof *qm->rcpt);
			}
			struct store_queue_rcpt *r = &qm->rcpt[qm->n_rcpt++];
			r->id = sqlite3_column_int64(u, 0);
			r->rcpt = col_dup(u, 1);
			r->orcpt = col_dup(u, 2);
			r->notify = col_dup(u, 3);
			r->attempts = sqlite3_column_int(u, 4);
			r->created = (time_t)sqlite3_column_int64(u, 5);
			r->delay_notified = sqlite3_column_int(u, 6) != 0;
			r->last_error = col_dup(u, 7);
			if (r->rcpt == NULL)
				r->rcpt = xstrdup("");
			/* The entry's envelope sender: COALESCE(queue.mail_from,
			 * messages.mail_from) (SRS for forwarded mail, srs.h);
			 * one commit gives every entry of a message the same. */
			if (qfrom == NULL)
				qfrom = col_dup(u, 8);
		}
		store_stmt_done(u);
		if (rc != SQLITE_DONE) {
			free(qfrom);
			return -1;
		}
		/* RETURNING gives no order: the recipients in the order queued */
		if (qm->n_rcpt > 1)
			qsort(qm->rcpt, qm->n_rcpt, sizeof *qm->rcpt, rcpt_cmp);
		sqlite3_bind_int64(m, 1, qm->message_id);
		rc = sqlite3_step(m);
		if (rc == SQLITE_ROW) {
			const unsigned char *from = sqlite3_column_text(m, 0);
			qm->mail_from = qfrom ? qfrom : xstrdup(from ? (const char *)from : "");
			qfrom = NULL;
			qm->envid = col_dup(m, 1);
			qm->ret = col_dup(m, 2);
			qm->received = (time_t)sqlite3_column_int64(m, 3);
			qm->size = (uint64_t)sqlite3_column_int64(m, 4);
			qm->body_8bit = sqlite3_column_int(m, 5) != 0;
			qm->smtputf8 = sqlite3_column_int(m, 6) != 0;
			int clen = sqlite3_column_bytes(m, 7);
			const void *c = sqlite3_column_blob(m, 7);
			if (c != NULL && clen > 0) {
				qm->cache = xmalloc((size_t)clen);
				memcpy(qm->cache, c, (size_t)clen);
				qm->cache_len = (size_t)clen;
			}
			const char *blob = (const char *)sqlite3_column_text(m, 8);
			char path[64];
			store_blob_path(blob ? blob : "", path, sizeof path);
			/* relative to blobs/: the directory fds are kept open */
			qm->fd = blob ? openat(st->blob_dfd[store_blob_dir(blob)], blob,
			                       O_RDONLY | O_CLOEXEC)
			              : -1;
			if (qm->fd < 0)
				qm->err =
				    xasprintf("cannot open blob %s: %s", path, strerror(errno));
			else
				qm->return_path_len = return_path_len(qm->fd, qm->size);
		} else {
			qm->mail_from = xstrdup("");
			qm->err = xstrdup("message row missing");
		}
		free(qfrom);
		store_stmt_done(m);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return -1;
	}
	sqlite3_bind_int64(nd, 1, (int64_t)j->now);
	rc = sqlite3_step(nd);
	if (rc == SQLITE_ROW)
		l->next_due = (time_t)sqlite3_column_int64(nd, 0);
	store_stmt_done(nd);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static void lease_finish(void *arg)
{
	struct lease_job *j = arg;
	j->cb(j->arg, j->result, j->result == 0 ? j->l : NULL);
	if (j->result != 0)
		store_queue_lease_free(&j->l);
	free(j->owner);
	free(j);
}

/* A lease that took entries is answered at the end of the committer's round, after the
 * answers of the jobs before it (their tails run in order), never ahead of
 * them: a queue record earlier in the same round answers only then (after
 * the round's sync), and a lease answered first would find that record's
 * entries due again while their job still looked live on the loop
 * (queue.c lease_filter), drop them, and leave them leased in the database
 * for queue_lease (15 minutes) with no attempt. Lazy: the lease itself
 * needs no sync. */
static void lease_tail(struct store *st, struct store_job *job)
{
	loop_post(st->loop, lease_finish, job);
}

static void lease_run(struct store *st, struct store_job *job)
{
	struct lease_job *j = (struct lease_job *)job;
	struct store_db *d = &st->cdb;
	j->l = xcalloc(1, sizeof *j->l);
	j->result = -1;
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) == 0) {
		j->result = lease_body(st, j, d);
		if (j->result == 0 && store_exec(d, "COMMIT", NULL) < 0)
			j->result = -1;
		if (j->result < 0) {
			log_err("store: queue lease: %s", sqlite3_errmsg(d->db));
			store_exec(d, "ROLLBACK", NULL);
		}
	} else {
		log_err("store: queue lease: begin: %s", sqlite3_errmsg(d->db));
	}
	/* nothing leased (the usual poll of an idle queue, or a failure):
	 * nothing its answer could overtake, nothing to sync later */
	if (j->result != 0 || j->l->n_msg == 0) {
		loop_post(st->loop, lease_finish, j);
		return;
	}
	store_job_done(st, job, lease_tail);
}

void store_queue_lease(struct store *st, const char *owner, time_t now, unsigned lease_s,
                       size_t max_msgs, store_queue_lease_cb *cb, void *arg)
{
	struct lease_job *j = xcalloc(1, sizeof *j);
	j->st = st;
	j->owner = xstrdup(owner);
	j->now = now;
	j->lease_s = lease_s;
	j->max_msgs = max_msgs ? max_msgs : 1;
	j->cb = cb;
	j->arg = arg;
	j->job.run = lease_run;
	j->job.lazy = true;
	store_job_queue(st, &j->job);
}

/* ---- results ---- */

struct record_job {
	struct store_job job;
	struct store *st;
	char *owner;
	time_t now;
	struct store_queue_result *v;
	char **errs;
	size_t n;
	store_res_cb *cb;
	void *arg;
	int result;
	struct store_blobs blobs; /* dropped by the transaction */
};

static const char sql_del[] =
    "DELETE FROM queue WHERE id = ?1 AND lease_owner = ?2 RETURNING message_id";
static const char sql_retry[] =
    "UPDATE queue SET attempts = attempts + 1, next_try = ?3, last_error = ?4,"
    " last_attempt = ?5, delay_notified = delay_notified OR ?6,"
    " lease_owner = NULL, lease_until = 0 WHERE id = ?1 AND lease_owner = ?2";
static const char sql_unlease[] =
    "UPDATE queue SET lease_owner = NULL, lease_until = 0 WHERE id = ?1 AND lease_owner = ?2";

static int record_body(struct record_job *j, struct store_db *d, struct store_blobs *b)
{
	sqlite3_stmt *del = store_sql(d, sql_del, NULL);
	sqlite3_stmt *retry = store_sql(d, sql_retry, NULL);
	sqlite3_stmt *unl = store_sql(d, sql_unlease, NULL);
	if (del == NULL || retry == NULL || unl == NULL)
		return -1;
	int64_t gc_id = 0;
	for (size_t i = 0; i < j->n; i++) {
		const struct store_queue_result *r = &j->v[i];
		sqlite3_stmt *s = r->outcome == STORE_QUEUE_DONE    ? del
		                  : r->outcome == STORE_QUEUE_RETRY ? retry
		                                                    : unl;
		sqlite3_bind_int64(s, 1, r->id);
		sqlite3_bind_text(s, 2, j->owner, -1, SQLITE_STATIC);
		if (r->outcome == STORE_QUEUE_RETRY) {
			sqlite3_bind_int64(s, 3, (int64_t)r->next_try);
			if (j->errs[i])
				sqlite3_bind_text(s, 4, j->errs[i], -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 5, (int64_t)j->now);
			sqlite3_bind_int(s, 6, r->delay_notified);
		}
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			gc_id = sqlite3_column_int64(s, 0);
			rc = sqlite3_step(s);
		}
		store_stmt_done(s);
		if (rc != SQLITE_DONE)
			return -1;
	}
	/* one message per call (store.h): collected once, at the end */
	return gc_id != 0 ? store_message_gc(j->st, d, gc_id, b) : 0;
}

static void record_finish(void *arg)
{
	struct record_job *j = arg;
	if (j->cb)
		j->cb(j->arg, j->result);
	for (size_t i = 0; i < j->n; i++)
		free(j->errs[i]);
	free(j->errs);
	free(j->v);
	free(j->owner);
	free(j);
}

/* Once the commit is durable (store_job_done): only then may the blobs whose
 * last reference it dropped go; a crash in between leaves orphan blobs,
 * which store_start removes. A failed sync unlinks nothing (the rows may
 * come back) and answers an error. */
static void record_tail(struct store *st, struct store_job *job)
{
	struct record_job *j = (struct record_job *)job;
	if (st->round_failed)
		j->result = -1;
	store_blobs_done(st, &j->blobs, j->result == 0);
	loop_post(st->loop, record_finish, j);
}

static void record_run(struct store *st, struct store_job *job)
{
	struct record_job *j = (struct record_job *)job;
	struct store_db *d = &st->cdb;
	j->result = -1;
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) == 0) {
		j->result = record_body(j, d, &j->blobs);
		if (j->result == 0 && store_exec(d, "COMMIT", NULL) < 0)
			j->result = -1;
		if (j->result < 0) {
			log_err("store: queue record: %s", sqlite3_errmsg(d->db));
			store_exec(d, "ROLLBACK", NULL);
		}
	} else {
		log_err("store: queue record: begin: %s", sqlite3_errmsg(d->db));
	}
	/* cdb commits with synchronous = NORMAL: the blobs go once the
	 * round's sync made the removal durable (record_tail). */
	store_job_done(st, job, record_tail);
}

void store_queue_record(struct store *st, const char *owner, time_t now,
                        const struct store_queue_result *v, size_t n, store_res_cb *cb, void *arg)
{
	struct record_job *j = xcalloc(1, sizeof *j);
	j->st = st;
	j->owner = xstrdup(owner);
	j->now = now;
	j->n = n;
	j->v = xcalloc(n ? n : 1, sizeof *j->v);
	j->errs = xcalloc(n ? n : 1, sizeof *j->errs);
	for (size_t i = 0; i < n; i++) {
		j->v[i] = v[i];
		j->errs[i] = v[i].last_error ? xstrdup(v[i].last_error) : NULL;
		j->v[i].last_error = NULL;
	}
	j->cb = cb;
	j->arg = arg;
	j->job.run = record_run;
	store_job_queue(st, &j->job);
}

/* ---- admin ---- */

int store_queue_entries(struct store *st, int64_t message_id, store_queue_entry_cb *cb, void *arg,
                        char **err_r)
{
	static const char sql[] =
	    "SELECT q.message_id, q.id, COALESCE(q.mail_from, m.mail_from), q.rcpt, q.last_error, q.attempts,"
	    " q.created, q.next_try, q.lease_until, q.held, q.delay_notified, m.size"
	    " FROM queue q JOIN messages m ON m.id = q.message_id"
	    " WHERE ?1 = 0 OR q.message_id = ?1 ORDER BY q.next_try, q.message_id, q.id";
	sqlite3_stmt *s = store_sql(&st->main, sql, err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, message_id);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_queue_entry e = {
		    .message_id = sqlite3_column_int64(s, 0),
		    .id = sqlite3_column_int64(s, 1),
		    .mail_from = (const char *)sqlite3_column_text(s, 2),
		    .rcpt = (const char *)sqlite3_column_text(s, 3),
		    .last_error = (const char *)sqlite3_column_text(s, 4),
		    .attempts = sqlite3_column_int(s, 5),
		    .created = (time_t)sqlite3_column_int64(s, 6),
		    .next_try = (time_t)sqlite3_column_int64(s, 7),
		    .lease_until = (time_t)sqlite3_column_int64(s, 8),
		    .held = sqlite3_column_int(s, 9) != 0,
		    .delay_notified = sqlite3_column_int(s, 10) != 0,
		    .size = (uint64_t)sqlite3_column_int64(s, 11),
		};
		if (e.mail_from == NULL)
			e.mail_from = "";
		if (e.rcpt == NULL)
			e.rcpt = "";
		cb(arg, &e);
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		*err_r = store_db_err(&st->main);
		return -1;
	}
	return 0;
}

int store_queue_admin(struct store *st, enum store_queue_admin_op op, int64_t message_id,
                      char **err_r)
{
	static const char *const sqls[] = {
	    [STORE_QUEUE_RETRY_NOW] = "UPDATE queue SET next_try = ?2"
	                              " WHERE ?1 = 0 OR message_id = ?1",
	    [STORE_QUEUE_HOLD] = "UPDATE queue SET held = 1 WHERE ?1 = 0 OR message_id = ?1",
	    [STORE_QUEUE_RELEASE] = "UPDATE queue SET held = 0, next_try = ?2"
	                            " WHERE held AND (?1 = 0 OR message_id = ?1)",
	    [STORE_QUEUE_DELETE] = "DELETE FROM queue WHERE ?1 = 0 OR message_id = ?1"
	                           " RETURNING message_id",
	};
	struct store_db *d = &st->main;
	struct store_blobs blobs = {0};
	int64_t *ids = NULL;
	size_t n_ids = 0;
	int changed = -1;
	if (store_exec(d, "BEGIN IMMEDIATE", err_r) < 0)
		return -1;
	sqlite3_stmt *s = store_sql(d, sqls[op], err_r);
	if (s == NULL)
		goto out;
	sqlite3_bind_int64(s, 1, message_id);
	if (op != STORE_QUEUE_HOLD && op != STORE_QUEUE_DELETE)
		sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(s, 0);
		if (n_ids == 0 || ids[n_ids - 1] != id) {
			ids = xrealloc(ids, (n_ids + 1) * sizeof *ids);
			ids[n_ids++] = id;
		}
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		*err_r = store_db_err(d);
		goto out;
	}
	changed = sqlite3_changes(d->db);
	for (size_t i = 0; i < n_ids; i++)
		if (store_message_gc(st, d, ids[i], &blobs) < 0) {
			*err_r = store_db_err(d);
			changed = -1;
			goto out;
		}
	if (store_exec(d, "COMMIT", err_r) < 0)
		changed = -1;
out:
	if (changed < 0)
		store_exec(d, "ROLLBACK", NULL);
	store_blobs_done(st, &blobs, changed >= 0);
	free(ids);
	return changed;
}
