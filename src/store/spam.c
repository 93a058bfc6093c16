/* The statistical filter's tables (schema step 6; src/filter/bayes.h):
 * token counts per user (user 0: the global model), message totals, the
 * training queue filled by IMAP moves and keywords (flags.c, in the same
 * transaction as the change) and what each stored message was trained as
 * (so that a message moved back out of Junk is untrained before it is
 * trained the other way). Counts are written only by the committer (or the
 * CLI's own connection); reads run on a worker's snapshot, one indexed
 * lookup per token. */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"

/* ---- reads ---- */

static int totals_read(struct store_db *d, int64_t user_id, struct store_spam_counts *c_r,
		       char **err_r)
{
	c_r->ham = c_r->spam = 0;
	sqlite3_stmt *s = store_sql(d, "SELECT ham, spam FROM spam_totals WHERE user_id = ?1", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		c_r->ham = sqlite3_column_int64(s, 0);
		c_r->spam = sqlite3_column_int64(s, 1);
	}
	store_stmt_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		*err_r = store_db_err(d);
		return -1;
	}
	return 0;
}

static int tokens_read(struct store_db *d, int64_t user_id, const uint64_t *hashes, size_t n,
		       struct store_spam_counts *c_r, char **err_r)
{
	sqlite3_stmt *s = store_sql(d, "SELECT ham, spam FROM spam_tokens"
				    " WHERE user_id = ?1 AND hash = ?2", err_r);
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		c_r[i].ham = c_r[i].spam = 0;
		sqlite3_bind_int64(s, 1, user_id);
		sqlite3_bind_int64(s, 2, (int64_t)hashes[i]);
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			c_r[i].ham = sqlite3_column_int64(s, 0);
			c_r[i].spam = sqlite3_column_int64(s, 1);
		}
		store_stmt_done(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			*err_r = store_db_err(d);
			return -1;
		}
	}
	return 0;
}

/* ---- the model cache ----
 *
 * The daemon classifies every message against the same models, and most of
 * a message's tokens are common words the last messages had too. Reading
 * each one's counts on a snapshot was a third of the spool job's CPU: one
 * B-tree lookup per token and model, and in WAL mode a read connection
 * drops its page cache at its first read after another connection's
 * commit (every delivery commits), so those lookups read their pages again
 * (pread) for every message. So the counts read (tokens and totals, any
 * model, unknown tokens as zeros; and whether spam_thresholds has any row
 * at all: most servers have none, and then no account's thresholds need a
 * query) are kept here, in one open-addressing
 * table of SPAM_CACHE_SLOTS shared by the workers (one mutex, taken twice
 * per message: the lookups, then the inserts); it is emptied when it is
 * half full.
 *
 * Validity: st->spam_gen moves after every committed change of the counts
 * (train_all, here or, for the CLI's training and thresholds, on the
 * daemon's loop when the mark file they touch changes: store_spam_watch,
 * and, should that watch fail or the file be replaced, the loop's look at
 * the file every second: store_spam_stamp). A snapshot notes
 * the generation before its first read (async.c read_here); its counts
 * enter the cache only if the generation has not moved since, and the
 * cache is emptied when it finds the generation moved. A snapshot older
 * than the cache's generation neither uses nor fills it. Counts committed
 * by another process are seen once the loop has read the mark's event: a
 * few milliseconds after the CLI's COMMIT (at most a second without the
 * watch). */
#define SPAM_CACHE_SLOTS 32768 /* a power of two: 1 MiB */
#define SPAM_CACHE_MAX (SPAM_CACHE_SLOTS / 2)
#define STORE_SPAM_MARK "spam.changed"

enum { MC_EMPTY, MC_TOKEN, MC_TOTALS, MC_THRESHOLDS };

struct spam_cache_slot {
	int64_t user_id;
	uint64_t hash; /* MC_TOKEN: the token's; else 0 */
	int64_t ham, spam;
	int kind;
};

void store_spam_cache_on(struct store *st)
{
	pthread_mutex_lock(&st->mc_mu);
	st->mc_on = true;
	pthread_mutex_unlock(&st->mc_mu);
}

void store_spam_cache_free(struct store *st)
{
	pthread_mutex_lock(&st->mc_mu);
	x_free(&st->mc_slots);
	st->mc_n = 0;
	st->mc_on = false;
	pthread_mutex_unlock(&st->mc_mu);
	pthread_mutex_destroy(&st->mc_mu);
}

void store_spam_model_changed(struct store *st)
{
	__atomic_add_fetch(&st->spam_gen, 1, __ATOMIC_ACQ_REL);
}

static size_t mc_index(int64_t user_id, uint64_t hash, int kind)
{
	uint64_t x = hash ^ ((uint64_t)user_id * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)kind;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return (size_t)x & (SPAM_CACHE_SLOTS - 1);
}

/* Under mc_mu, slots made: the key's slot, or the empty one it would take
 * (the table is at most half full: there is one). */
static struct spam_cache_slot *mc_find(struct store *st, int64_t user_id, uint64_t hash,
				       int kind)
{
	for (size_t i = mc_index(user_id, hash, kind);; i = (i + 1) & (SPAM_CACHE_SLOTS - 1)) {
		struct spam_cache_slot *sl = &st->mc_slots[i];
		if (sl->kind == MC_EMPTY ||
		    (sl->kind == kind && sl->user_id == user_id && sl->hash == hash))
			return sl;
	}
}

/* Under mc_mu: may sn use and fill the cache? It is emptied first if the
 * counts changed since it was filled. */
static bool mc_usable(struct store_snap *sn)
{
	struct store *st = sn->st;
	if (!st->mc_on)
		return false;
	uint64_t gen = __atomic_load_n(&st->spam_gen, __ATOMIC_ACQUIRE);
	if (st->mc_gen != gen && st->mc_slots != NULL) {
		memset(st->mc_slots, 0, SPAM_CACHE_SLOTS * sizeof *st->mc_slots);
		st->mc_n = 0;
	}
	st->mc_gen = gen;
	return sn->spam_gen == gen;
}

/* Looks up n keys (hashes[i], or 0 for the totals) of user_id: found ones
 * into c_r, the positions of the others into miss (*n_miss). */
static void mc_get(struct store_snap *sn, int64_t user_id, const uint64_t *hashes, size_t n,
		   int kind, struct store_spam_counts *c_r, size_t *miss, size_t *n_miss)
{
	struct store *st = sn->st;
	*n_miss = 0;
	pthread_mutex_lock(&st->mc_mu);
	bool use = mc_usable(sn) && st->mc_slots != NULL;
	for (size_t i = 0; i < n; i++) {
		struct spam_cache_slot *sl = use ? mc_find(st, user_id, hashes[i], kind) : NULL;
		if (sl != NULL && sl->kind != MC_EMPTY) {
			c_r[i].ham = sl->ham;
			c_r[i].spam = sl->spam;
		} else {
			miss[(*n_miss)++] = i;
		}
	}
	pthread_mutex_unlock(&st->mc_mu);
}

/* Keeps the counts read for the positions in miss. */
static void mc_put(struct store_snap *sn, int64_t user_id, const uint64_t *hashes, int kind,
		   const struct store_spam_counts *c, const size_t *miss, size_t n_miss)
{
	struct store *st = sn->st;
	pthread_mutex_lock(&st->mc_mu);
	if (mc_usable(sn)) {
		if (st->mc_slots == NULL)
			st->mc_slots = xcalloc(SPAM_CACHE_SLOTS, sizeof *st->mc_slots);
		for (size_t k = 0; k < n_miss; k++) {
			if (st->mc_n >= SPAM_CACHE_MAX) {
				memset(st->mc_slots, 0, SPAM_CACHE_SLOTS * sizeof *st->mc_slots);
				st->mc_n = 0;
			}
			size_t i = miss[k];
			struct spam_cache_slot *sl = mc_find(st, user_id, hashes[i], kind);
			if (sl->kind == MC_EMPTY)
				st->mc_n++;
			*sl = (struct spam_cache_slot){user_id, hashes[i], c[i].ham, c[i].spam, kind};
		}
	}
	pthread_mutex_unlock(&st->mc_mu);
}

int store_snap_spam_totals(struct store_snap *sn, int64_t user_id, struct store_spam_counts *c_r,
			   char **err_r)
{
	static const uint64_t none = 0;
	size_t miss, n_miss;
	mc_get(sn, user_id, &none, 1, MC_TOTALS, c_r, &miss, &n_miss);
	if (n_miss == 0)
		return 0;
	if (totals_read(sn->d, user_id, c_r, err_r) < 0)
		return -1;
	mc_put(sn, user_id, &none, MC_TOTALS, c_r, &miss, 1);
	return 0;
}

int store_snap_spam_tokens(struct store_snap *sn, int64_t user_id, const uint64_t *hashes,
			   size_t n, struct store_spam_counts *c_r, char **err_r)
{
	if (n == 0)
		return 0;
	size_t *miss = xcalloc(n, sizeof *miss), n_miss;
	mc_get(sn, user_id, hashes, n, MC_TOKEN, c_r, miss, &n_miss);
	int r = 0;
	if (n_miss > 0) {
		/* the missing ones, read together, then put in place */
		uint64_t *mh = xcalloc(n_miss, sizeof *mh);
		struct store_spam_counts *mc = xcalloc(n_miss, sizeof *mc);
		for (size_t k = 0; k < n_miss; k++)
			mh[k] = hashes[miss[k]];
		r = tokens_read(sn->d, user_id, mh, n_miss, mc, err_r);
		if (r == 0) {
			for (size_t k = 0; k < n_miss; k++)
				c_r[miss[k]] = mc[k];
			mc_put(sn, user_id, hashes, MC_TOKEN, c_r, miss, n_miss);
		}
		free(mh);
		free(mc);
	}
	free(miss);
	return r;
}

int store_snap_thresholds_none(struct store_snap *sn)
{
	static const uint64_t none = 0;
	if (!sn->st->mc_on) /* set before the workers start */
		return 0;
	struct store_spam_counts c;
	size_t miss, n_miss;
	mc_get(sn, 0, &none, 1, MC_THRESHOLDS, &c, &miss, &n_miss);
	if (n_miss == 0)
		return c.ham == 0;
	sqlite3_stmt *s = store_sql(sn->d, "SELECT EXISTS (SELECT 1 FROM spam_thresholds)", NULL);
	if (s == NULL)
		return -1;
	int rc = sqlite3_step(s);
	int any = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
	store_stmt_done(s);
	if (any < 0)
		return -1;
	c = (struct store_spam_counts){any, 0};
	mc_put(sn, 0, &none, MC_THRESHOLDS, &c, &miss, 1);
	return any == 0;
}

void store_spam_mark_changed(struct store *st)
{
	store_spam_model_changed(st);
	/* a running daemon's model cache (store_spam_watch) */
	if (store_mark_touch(st, STORE_SPAM_MARK) < 0)
		log_warn("store: cannot touch %s/%s: %s (a running daemon keeps the counts and "
			 "thresholds it read until its next training or restart)",
			 st->dir, STORE_SPAM_MARK, strerror(errno));
}

void store_spam_stamp(struct store *st, struct store_stamp *r)
{
	store_mark_stamp(st, STORE_SPAM_MARK, r);
}

int store_spam_watch(struct store *st)
{
	return store_mark_watch(st, STORE_SPAM_MARK);
}

int store_spam_totals(struct store *st, int64_t user_id, struct store_spam_counts *c_r,
		      char **err_r)
{
	return totals_read(&st->main, user_id, c_r, err_r);
}

int store_spam_tokens(struct store *st, int64_t user_id, const uint64_t *hashes, size_t n,
		      struct store_spam_counts *c_r, char **err_r)
{
	return tokens_read(&st->main, user_id, hashes, n, c_r, err_r);
}

int64_t store_spam_user_id(struct store *st, const char *addr, char **err_r)
{
	int64_t id = store_user_id(&st->main, addr, err_r);
	return id > 0 ? id : -1;
}

int store_spam_users(struct store *st, store_spam_user_cb *cb, void *arg, char **err_r)
{
	sqlite3_stmt *s = store_sql(&st->main,
				    "SELECT t.user_id, t.ham, t.spam, coalesce(u.localpart || '@' ||"
				    " d.name, ''), (SELECT count(*) FROM spam_tokens k"
				    " WHERE k.user_id = t.user_id) FROM spam_totals t"
				    " LEFT JOIN users u ON u.id = t.user_id"
				    " LEFT JOIN domains d ON d.id = u.domain_id ORDER BY t.user_id",
				    err_r);
	if (s == NULL)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_spam_counts c = {sqlite3_column_int64(s, 1),
					      sqlite3_column_int64(s, 2)};
		cb(arg, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 3), &c,
		   sqlite3_column_int64(s, 4));
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		*err_r = store_db_err(&st->main);
		return -1;
	}
	return 0;
}

int store_snap_spam_queue(struct store_snap *sn, size_t max, struct store_spam_queued **v_r,
			  size_t *n_r, char **err_r)
{
	*v_r = NULL;
	*n_r = 0;
	sqlite3_stmt *s = store_sql(sn->d, "SELECT q.id, q.user_id, q.message_id, q.spam, m.blob"
				    " FROM spam_train q LEFT JOIN messages m ON m.id = q.message_id"
				    " ORDER BY q.id LIMIT ?1", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (int64_t)max);
	struct store_spam_queued *v = xcalloc(max ? max : 1, sizeof *v);
	size_t n = 0;
	int rc;
	while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *blob = (const char *)sqlite3_column_text(s, 4);
		v[n].id = sqlite3_column_int64(s, 0);
		v[n].user_id = sqlite3_column_int64(s, 1);
		v[n].message_id = sqlite3_column_int64(s, 2);
		v[n].spam = sqlite3_column_int(s, 3) != 0;
		v[n].blob = blob != NULL ? xstrdup(blob) : NULL;
		n++;
	}
	if (n == max)
		rc = SQLITE_DONE;
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		*err_r = store_db_err(sn->d);
		store_spam_queued_free(v, n);
		return -1;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

void store_spam_queued_free(struct store_spam_queued *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].blob);
	free(v);
}

/* ---- the queue, from IMAP (flags.c), inside the caller's transaction ---- */

uint64_t store_spam_queue_gen(struct store *st)
{
	return __atomic_load_n(&st->spam_queue_gen, __ATOMIC_ACQUIRE);
}

int store_spam_queue_add(struct store_db *d, int64_t user_id, int64_t message_id, bool spam)
{
	sqlite3_stmt *s = store_sql(d, "INSERT INTO spam_train(user_id, message_id, spam, queued)"
				    " VALUES(?1, ?2, ?3, ?4)", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, message_id);
	sqlite3_bind_int(s, 3, spam);
	sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
	return store_step_done(d, s, NULL) < 0 ? -1 : 1;
}

int store_spam_mailbox_kind(struct store_db *d, int64_t mailbox_id)
{
	sqlite3_stmt *s = store_sql(d, "SELECT coalesce(special_use, ''), name FROM mailboxes"
				    " WHERE id = ?1", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	int kind = 0;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *use = (const char *)sqlite3_column_text(s, 0);
		const char *name = (const char *)sqlite3_column_text(s, 1);
		/* RFC 6154 2: \Junk; a plain "Junk"/"Spam" without special use too */
		if (strcmp(use, "\\Junk") == 0 || strcasecmp(name, "Junk") == 0 ||
		    strcasecmp(name, "Spam") == 0)
			kind = STORE_SPAM_MB_JUNK;
		else if (strcmp(use, "\\Trash") == 0 || strcasecmp(name, "Trash") == 0)
			kind = STORE_SPAM_MB_TRASH;
	}
	store_stmt_done(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? kind : -1;
}

/* ---- training (committer, or the CLI's connection) ---- */

static int counts_add(struct store_db *d, int64_t user_id, const uint64_t *h, size_t n, bool spam,
		      int delta)
{
	static const char *const sql[2] = {
		"INSERT INTO spam_tokens(user_id, hash, ham, spam, last_seen)"
		" VALUES(?1, ?2, max(?3, 0), 0, ?4) ON CONFLICT(user_id, hash) DO UPDATE SET"
		" ham = max(ham + ?3, 0), last_seen = ?4",
		"INSERT INTO spam_tokens(user_id, hash, ham, spam, last_seen)"
		" VALUES(?1, ?2, 0, max(?3, 0), ?4) ON CONFLICT(user_id, hash) DO UPDATE SET"
		" spam = max(spam + ?3, 0), last_seen = ?4",
	};
	sqlite3_stmt *s = store_sql(d, sql[spam], NULL);
	sqlite3_stmt *t = store_sql(d, spam ? "INSERT INTO spam_totals(user_id, ham, spam)"
					      " VALUES(?1, 0, max(?2, 0)) ON CONFLICT(user_id)"
					      " DO UPDATE SET spam = max(spam + ?2, 0)"
					    : "INSERT INTO spam_totals(user_id, ham, spam)"
					      " VALUES(?1, max(?2, 0), 0) ON CONFLICT(user_id)"
					      " DO UPDATE SET ham = max(ham + ?2, 0)",
				    NULL);
	if (s == NULL || t == NULL)
		return -1;
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 1, user_id);
		sqlite3_bind_int64(s, 2, (int64_t)h[i]);
		sqlite3_bind_int(s, 3, delta);
		sqlite3_bind_int64(s, 4, now);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	sqlite3_bind_int64(t, 1, user_id);
	sqlite3_bind_int(t, 2, delta);
	if (store_step_done(d, t, NULL) < 0)
		return -1;
	if (delta < 0) {
		/* tokens no message mentions any more */
		sqlite3_stmt *z = store_sql(d, "DELETE FROM spam_tokens WHERE user_id = ?1 AND"
					    " hash = ?2 AND ham = 0 AND spam = 0", NULL);
		if (z == NULL)
			return -1;
		for (size_t i = 0; i < n; i++) {
			sqlite3_bind_int64(z, 1, user_id);
			sqlite3_bind_int64(z, 2, (int64_t)h[i]);
			if (store_step_done(d, z, NULL) < 0)
				return -1;
		}
	}
	return 0;
}

/* One item, inside the transaction: untrain what spam_trained says the
 * message was trained as (if it was the other way), then train. */
static int train_one(struct store_db *d, const struct store_spam_train *it)
{
	if (it->queue_id != 0) {
		sqlite3_stmt *q = store_sql(d, "DELETE FROM spam_train WHERE id = ?1", NULL);
		if (q == NULL)
			return -1;
		sqlite3_bind_int64(q, 1, it->queue_id);
		if (store_step_done(d, q, NULL) < 0)
			return -1;
	}
	if (it->skip)
		return 0;
	if (it->message_id != 0) {
		sqlite3_stmt *g = store_sql(d, "SELECT spam FROM spam_trained WHERE user_id = ?1"
					    " AND message_id = ?2", NULL);
		if (g == NULL)
			return -1;
		sqlite3_bind_int64(g, 1, it->user_id);
		sqlite3_bind_int64(g, 2, it->message_id);
		int rc = sqlite3_step(g);
		int was = rc == SQLITE_ROW ? sqlite3_column_int(g, 0) : -1;
		store_stmt_done(g);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return -1;
		if (was == (int)it->spam)
			return 0; /* already trained so */
		if (was >= 0 && counts_add(d, it->user_id, it->hashes, it->n, was != 0, -1) < 0)
			return -1;
		sqlite3_stmt *u = store_sql(d, "INSERT OR REPLACE INTO spam_trained(user_id,"
					    " message_id, spam) VALUES(?1, ?2, ?3)", NULL);
		if (u == NULL)
			return -1;
		sqlite3_bind_int64(u, 1, it->user_id);
		sqlite3_bind_int64(u, 2, it->message_id);
		sqlite3_bind_int(u, 3, it->spam);
		if (store_step_done(d, u, NULL) < 0)
			return -1;
	}
	return counts_add(d, it->user_id, it->hashes, it->n, it->spam, 1);
}

static int train_all(struct store_db *d, const struct store_spam_train *v, size_t n)
{
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (train_one(d, &v[i]) < 0) {
			store_exec(d, "ROLLBACK", NULL);
			return -1;
		}
	if (store_exec(d, "COMMIT", NULL) < 0) {
		store_exec(d, "ROLLBACK", NULL);
		return -1;
	}
	return 0;
}

int store_spam_train(struct store *st, const struct store_spam_train *v, size_t n, char **err_r)
{
	if (train_all(&st->main, v, n) < 0) {
		*err_r = store_db_err(&st->main);
		return -1;
	}
	store_spam_mark_changed(st);
	return 0;
}

struct train_job {
	struct store_job job; /* first: the committer sees only this */
	struct store *st;
	struct store_spam_train *v;
	size_t n;
	int result;
	store_res_cb *cb;
	void *arg;
};

static void train_finish(void *arg)
{
	struct train_job *j = arg;
	if (j->cb != NULL)
		j->cb(j->arg, j->result);
	store_spam_train_free(j->v, j->n);
	free(j);
}

static void train_tail(struct store *st, struct store_job *job)
{
	struct train_job *j = (struct train_job *)job;
	if (st->round_failed)
		j->result = -1;
	loop_post(st->loop, train_finish, j);
}

static void train_run(struct store *st, struct store_job *job)
{
	struct train_job *j = (struct train_job *)job;
	j->result = train_all(&st->cdb, j->v, j->n);
	if (j->result < 0)
		log_err("store: spam training failed: %s", sqlite3_errmsg(st->cdb.db));
	else
		store_spam_model_changed(st); /* committed: visible to snapshots from now */
	store_job_done(st, job, train_tail);
}

void store_spam_train_async(struct store *st, struct store_spam_train *v, size_t n,
			    store_res_cb *cb, void *arg)
{
	struct train_job *j = xcalloc(1, sizeof *j);
	j->st = st;
	j->v = v;
	j->n = n;
	j->cb = cb;
	j->arg = arg;
	j->job.run = train_run;
	j->job.lazy = true; /* counts: a crash may lose the last second's training */
	store_job_queue(st, &j->job);
}

void store_spam_train_free(struct store_spam_train *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].hashes);
	free(v);
}

/* ---- `postern mail explain` ---- */

int store_spam_message_open(struct store *st, const char *user, const char *mailbox, uint32_t uid,
			    int *fd_r, char **err_r)
{
	int64_t mailbox_id;
	struct store_mailbox_status status;
	int r = store_db_mailbox(&st->main, user, mailbox, false, NULL, &mailbox_id, &status,
				 err_r);
	if (r != 1) {
		if (r == 0 && *err_r == NULL)
			*err_r = xasprintf("no mailbox %s for %s", mailbox, user);
		return -1;
	}
	sqlite3_stmt *s = store_sql(&st->main, "SELECT m.blob FROM mailbox_messages mm"
				    " JOIN messages m ON m.id = mm.message_id"
				    " WHERE mm.mailbox_id = ?1 AND mm.uid = ?2", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int64(s, 2, uid);
	int rc = sqlite3_step(s);
	char *blob = rc == SQLITE_ROW ? xstrdup((const char *)sqlite3_column_text(s, 0)) : NULL;
	store_stmt_done(s);
	if (blob == NULL) {
		*err_r = rc == SQLITE_DONE ? xasprintf("no message with UID %u in %s", uid, mailbox)
					   : store_db_err(&st->main);
		return -1;
	}
	struct store_snap sn = {.st = st, .d = &st->main};
	r = store_snap_blob_open(&sn, blob, fd_r, err_r);
	free(blob);
	return r == STORE_OK ? 0 : -1;
}

/* ---- IMAP hooks (flags.c), inside its transaction ---- */

int store_spam_copied(struct store_db *d, int64_t user_id, int64_t src_id, int64_t dst_id,
		      int64_t message_id)
{
	int from = store_spam_mailbox_kind(d, src_id), to = store_spam_mailbox_kind(d, dst_id);
	if (from < 0 || to < 0)
		return -1;
	if (to == STORE_SPAM_MB_JUNK && from != STORE_SPAM_MB_JUNK)
		return store_spam_queue_add(d, user_id, message_id, true);
	if (from == STORE_SPAM_MB_JUNK && to == STORE_SPAM_MB_OTHER)
		return store_spam_queue_add(d, user_id, message_id, false);
	return 0;
}

static bool has_kw(const char *flags, const char *kw)
{
	size_t n = strlen(kw);
	for (const char *p = flags; p != NULL && *p != '\0';) {
		size_t l = strcspn(p, " ");
		if (l == n && strncasecmp(p, kw, n) == 0)
			return true;
		p += l;
		p += strspn(p, " ");
	}
	return false;
}

int store_spam_keywords(struct store_db *d, int64_t user_id, int64_t message_id,
			const char *before, const char *after)
{
	if (has_kw(after, "$Junk") && !has_kw(before, "$Junk"))
		return store_spam_queue_add(d, user_id, message_id, true);
	if (has_kw(after, "$NotJunk") && !has_kw(before, "$NotJunk"))
		return store_spam_queue_add(d, user_id, message_id, false);
	return 0;
}
