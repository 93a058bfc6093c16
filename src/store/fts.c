/* The full-text index (store.h, "the full-text index"): SQLite FTS5 with
 * the trigram tokenizer, which answers substring queries (RFC 9051 6.4.4:
 * SEARCH matches substrings, case-insensitively) for needles of three
 * characters or more.
 *
 * Why it only narrows: a needle's trigrams all being in a body does not
 * make the needle a substring of one of its values (the trigrams may be
 * apart, or span two values), and the matcher has rules of its own (a
 * field's value, part by part); so the index gives candidates and the
 * matcher (imap/search.c) confirms them, and the result is the scan's.
 * A needle is queried as the AND of its trigrams (detail=none keeps no
 * positions, so a phrase could not be checked anyway).
 *
 * Writes: the indexer thread reads bodies not indexed yet (messages.fts =
 * 0, oldest first), extracts their text (the extractor runs here, not on the
 * committer), and queues one lazy committer job per batch that inserts them
 * and sets fts = 1, one batch in flight at a time. A delivery's 250 never
 * waits for it; a body not indexed yet is a candidate of every query. An
 * expunged body's entries stay (a contentless FTS5 table of SQLite 3.40
 * can only delete a row given its text again, and its blob is gone): they
 * cost space, never correctness (ids are never reused, candidates are the
 * mailbox's live UIDs); `postern index rebuild` drops them. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define FTS_BATCH_MSGS 64
#define FTS_BATCH_TEXT (1024 * 1024) /* extracted text per job: a short committer step */
#define FTS_IDLE_MS 500              /* polling for new bodies when idle */
#define FTS_MAX_TRIGRAMS 12          /* per needle: enough to be selective */
/* The version of the text the extractor (mime/extract.c) gives, kept as
 * fts_state 'text' (none: 1). An index of an older text could miss what
 * the matcher now finds (2: text/html reduced to its text, mime/html.c:
 * "<b>im</b>portant" holds no trigram "mpo"), so the indexer starts over
 * when it finds one: everything fts = 0 (a candidate of every search, as
 * after `index rebuild --all`) and indexed again. Bump it whenever the
 * extracted text changes. */
#define FTS_TEXT_VERSION 2
#define FTS_TEXT_VERSION_S "2" /* the same, for SQL texts */

struct store_fts {
	struct store *st;
	store_fts_extract_fn *fn;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool stopping, inflight;
	struct store_db rd; /* the indexer's read connection */
};

struct fts_doc {
	int64_t id;
	struct buf cols[STORE_FTS_NCOLS];
};

/* ---- writing (any connection, inside a write transaction) ---- */

static void bind_col(sqlite3_stmt *s, int i, const struct buf *b)
{
	sqlite3_bind_text(s, i, b->data ? b->data : "", (int)b->len, SQLITE_STATIC);
}

/* Inserts (or with del, deletes: the same text) doc's rows. 0 or -1. */
static int doc_write(struct store_db *d, const struct fts_doc *doc, bool del)
{
	static const char ins_body[] = "INSERT INTO fts_body(rowid, body) VALUES (?1, ?2)";
	static const char del_body[] =
		"INSERT INTO fts_body(fts_body, rowid, body) VALUES ('delete', ?1, ?2)";
	static const char ins_head[] = "INSERT INTO fts_head(rowid, hdr) VALUES (?1, ?2)";
	static const char del_head[] =
		"INSERT INTO fts_head(fts_head, rowid, hdr) VALUES ('delete', ?1, ?2)";
	/* the header columns as one text (the same for a delete) */
	struct buf hdr = BUF_INIT;
	for (int c = 0; c < STORE_FTS_BODY; c++) {
		if (doc->cols[c].len == 0)
			continue;
		if (hdr.len > 0)
			buf_appendc(&hdr, '\n');
		buf_append(&hdr, doc->cols[c].data, doc->cols[c].len);
	}
	int ret = -1;
	if (doc->cols[STORE_FTS_BODY].len > 0) {
		sqlite3_stmt *s = store_sql(d, del ? del_body : ins_body, NULL);
		if (s == NULL)
			goto out;
		sqlite3_bind_int64(s, 1, doc->id);
		bind_col(s, 2, &doc->cols[STORE_FTS_BODY]);
		int rc = sqlite3_step(s);
		store_stmt_done(s);
		if (rc != SQLITE_DONE)
			goto out;
	}
	if (hdr.len > 0) {
		sqlite3_stmt *s = store_sql(d, del ? del_head : ins_head, NULL);
		if (s == NULL)
			goto out;
		sqlite3_bind_int64(s, 1, doc->id);
		bind_col(s, 2, &hdr);
		int rc = sqlite3_step(s);
		store_stmt_done(s);
		if (rc != SQLITE_DONE)
			goto out;
	}
	ret = 0;
out:
	buf_free(&hdr);
	return ret;
}

/* Indexes the docs whose body is still there and not indexed (checked in
 * this transaction: the daemon's indexer and `postern index rebuild` may
 * race, and a body must enter the index once). *n_r: indexed. 0 or -1. */
static int docs_insert(struct store_db *d, const struct fts_doc *docs, size_t n, uint64_t *n_r)
{
	uint64_t added = 0;
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *s = store_sql(d, "UPDATE messages SET fts = 1 WHERE id = ?1 AND fts = 0",
					    NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, docs[i].id);
		int rc = sqlite3_step(s);
		store_stmt_done(s);
		if (rc != SQLITE_DONE)
			return -1;
		if (sqlite3_changes(d->db) == 0)
			continue;
		if (doc_write(d, &docs[i], false) < 0)
			return -1;
		added++;
	}
	sqlite3_stmt *s = store_sql(d, "UPDATE fts_state SET v = v + ?1 WHERE k = 'docs'", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (int64_t)added);
	int rc = sqlite3_step(s);
	store_stmt_done(s);
	*n_r = added;
	return rc == SQLITE_DONE ? 0 : -1;
}

static void docs_free(struct fts_doc *docs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < STORE_FTS_NCOLS; c++)
			buf_free(&docs[i].cols[c]);
	free(docs);
}

/* ---- reading bodies (the indexer thread, the CLI) ---- */

/* The text of the body in blob (cache may be NULL): false if the blob is
 * gone (expunged meanwhile: errno ENOENT) or unreadable (errno). */
static bool doc_extract(struct store *st, store_fts_extract_fn *fn, const char *blob,
			const void *cache, size_t cache_len, struct fts_doc *doc)
{
	int fd = openat(st->blob_dfd[store_blob_dir(blob)], blob, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0)
		return false;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return false;
	}
	if (sb.st_size == 0) {
		fn("", 0, cache, cache_len, doc->cols);
		close(fd);
		return true;
	}
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED) {
		errno = e;
		return false;
	}
	fn(p, (size_t)sb.st_size, cache, cache_len, doc->cols);
	munmap(p, (size_t)sb.st_size);
	return true;
}

/* Reads up to FTS_BATCH_MSGS bodies (FTS_BATCH_TEXT of text) after *after
 * whose fts is 0 (user_id 0: anybody's) and extracts them. *after: the last
 * id seen; *skipped_r counts the bodies that could not be read now (left
 * to a later pass). -1 on a database error. */
static int batch_read(struct store *st, struct store_db *d, store_fts_extract_fn *fn,
		      int64_t user_id, int64_t *after, struct fts_doc **docs_r, size_t *n_r,
		      size_t *skipped_r)
{
	static const char sql_all[] = "SELECT id, blob, cache FROM messages WHERE fts = 0"
				      " AND id > ?1 ORDER BY id LIMIT ?2";
	static const char sql_user[] =
		"SELECT m.id, m.blob, m.cache FROM messages m WHERE m.fts = 0 AND m.id > ?1"
		" AND m.id IN (SELECT mm.message_id FROM mailbox_messages mm JOIN mailboxes b"
		" ON b.id = mm.mailbox_id WHERE b.user_id = ?3) ORDER BY m.id LIMIT ?2";
	sqlite3_stmt *s = store_sql(d, user_id ? sql_user : sql_all, NULL);
	struct fts_doc *docs = xcalloc(FTS_BATCH_MSGS, sizeof *docs);
	size_t n = 0, text = 0;
	int rc = SQLITE_DONE;

	if (s == NULL) {
		free(docs);
		return -1;
	}
	sqlite3_bind_int64(s, 1, *after);
	sqlite3_bind_int(s, 2, FTS_BATCH_MSGS);
	if (user_id)
		sqlite3_bind_int64(s, 3, user_id);
	while (n < FTS_BATCH_MSGS && text < FTS_BATCH_TEXT && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct fts_doc *doc = &docs[n];
		const char *blob = (const char *)sqlite3_column_text(s, 1);
		doc->id = sqlite3_column_int64(s, 0);
		const void *cache = sqlite3_column_blob(s, 2);
		size_t cache_len = (size_t)sqlite3_column_bytes(s, 2);
		*after = doc->id;
		/* a body whose blob is gone is indexed empty (never a match);
		 * one unreadable for now (EMFILE, ENOMEM...) is skipped: left
		 * fts = 0 (a candidate of every search) for a later pass.
		 * Indexed empty, the index would hide it from every search for
		 * good, while the scan finds it once it can read it. */
		if (blob != NULL && !doc_extract(st, fn, blob, cache, cache_len, doc) &&
		    errno != ENOENT) {
			if (*skipped_r == 0)
				log_warn("store: full-text index: body %s: %s (retried later)", blob,
					 strerror(errno));
			(*skipped_r)++;
			for (int c = 0; c < STORE_FTS_NCOLS; c++)
				buf_free(&doc->cols[c]);
			continue;
		}
		for (int c = 0; c < STORE_FTS_NCOLS; c++)
			text += doc->cols[c].len;
		n++;
	}
	store_stmt_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		docs_free(docs, n);
		return -1;
	}
	*docs_r = docs;
	*n_r = n;
	return 0;
}

/* ---- the indexer thread ---- */

/* A batch for the committer: a plain store_job whose tail (on the committer,
 * after the round) frees it, so that nothing is left for the loop (which may
 * have stopped when the store closes). */
struct fts_job {
	struct store_job job; /* first: the committer sees only this */
	struct store_fts *f;
	struct fts_doc *docs;
	size_t n;
	bool had_index; /* reset_run: an index was there (said in the log) */
};

static void job_tail(struct store *st, struct store_job *job)
{
	struct fts_job *fj = (struct fts_job *)job;
	struct store_fts *f = fj->f;
	docs_free(fj->docs, fj->n);
	free(fj);
	pthread_mutex_lock(&f->mu);
	f->inflight = false;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
}

static void job_run(struct store *st, struct store_job *job)
{
	struct fts_job *fj = (struct fts_job *)job;
	struct store_db *d = &st->cdb;
	uint64_t added;
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0) {
		log_err("store: full-text index: begin: %s", sqlite3_errmsg(d->db));
	} else if (docs_insert(d, fj->docs, fj->n, &added) < 0 ||
		   store_exec(d, "COMMIT", NULL) < 0) {
		log_err("store: full-text index: %zu bodies not indexed: %s", fj->n,
			sqlite3_errmsg(d->db));
		store_exec(d, "ROLLBACK", NULL);
	}
	store_job_done(st, job, job_tail);
}

/* the reset of an index of an older text (FTS_TEXT_VERSION) */
#define FTS_RESET_SQL                                                                              \
	"BEGIN IMMEDIATE;"                                                                         \
	" INSERT INTO fts_body(fts_body) VALUES ('delete-all');"                                  \
	" INSERT INTO fts_head(fts_head) VALUES ('delete-all');"                                  \
	" UPDATE messages SET fts = 0 WHERE fts <> 0;"                                             \
	" UPDATE fts_state SET v = 0 WHERE k = 'docs';"                                            \
	" INSERT OR REPLACE INTO fts_state VALUES ('text', " FTS_TEXT_VERSION_S ");"               \
	" COMMIT;"

static void reset_run(struct store *st, struct store_job *job)
{
	struct store_db *d = &st->cdb;
	if (store_exec(d, FTS_RESET_SQL, NULL) < 0) {
		log_err("store: full-text index: reset: %s", sqlite3_errmsg(d->db));
		store_exec(d, "ROLLBACK", NULL);
	} else if (((struct fts_job *)job)->had_index) {
		log_info("store: full-text index: made by an older extractor, indexing again");
	}
	store_job_done(st, job, job_tail);
}

/* The text version of the index (read on the indexer's connection): 1 if
 * none is recorded, 0 on an error; *indexed_r: whether any body is indexed
 * (a new database has no version recorded and nothing to index again). */
static int text_version(struct store_fts *f, bool *indexed_r)
{
	static const char sql[] = "SELECT (SELECT v FROM fts_state WHERE k = 'text'),"
				  " EXISTS (SELECT 1 FROM messages WHERE fts <> 0)";
	sqlite3_stmt *s = store_sql(&f->rd, sql, NULL);
	if (s == NULL)
		return 0;
	int v = 0;
	if (sqlite3_step(s) == SQLITE_ROW) {
		v = sqlite3_column_type(s, 0) == SQLITE_NULL ? 1 : sqlite3_column_int(s, 0);
		*indexed_r = sqlite3_column_int(s, 1) != 0;
	}
	store_stmt_done(s);
	return v;
}

static void idle_wait(struct store_fts *f)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)FTS_IDLE_MS * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&f->mu);
	if (!f->stopping)
		pthread_cond_timedwait(&f->cond, &f->mu, &ts);
	pthread_mutex_unlock(&f->mu);
}

static void *indexer_main(void *arg)
{
	struct store_fts *f = arg;
	int64_t after = 0; /* the pass's cursor: bodies skipped stay behind it */
	bool indexed = false;
	int v = text_version(f, &indexed);
	if (v == 0)
		log_err("store: full-text index: %s", sqlite3_errmsg(f->rd.db));
	else if (v < FTS_TEXT_VERSION) {
		/* a committer job, waited for as a batch is */
		struct fts_job *fj = xcalloc(1, sizeof *fj);
		fj->job.run = reset_run;
		fj->f = f;
		fj->had_index = indexed;
		pthread_mutex_lock(&f->mu);
		f->inflight = true;
		pthread_mutex_unlock(&f->mu);
		store_job_queue(f->st, &fj->job);
		pthread_mutex_lock(&f->mu);
		while (f->inflight)
			pthread_cond_wait(&f->cond, &f->mu);
		pthread_mutex_unlock(&f->mu);
	}
	for (;;) {
		pthread_mutex_lock(&f->mu);
		bool stop = f->stopping;
		pthread_mutex_unlock(&f->mu);
		if (stop)
			break;
		struct fts_doc *docs = NULL;
		size_t n = 0, skipped = 0;
		if (batch_read(f->st, &f->rd, f->fn, 0, &after, &docs, &n, &skipped) < 0) {
			log_err("store: full-text index: %s", sqlite3_errmsg(f->rd.db));
			after = 0;
			idle_wait(f);
			continue;
		}
		if (n == 0) {
			free(docs);
			if (skipped > 0)
				continue; /* unreadable bodies only: the ones after them */
			after = 0; /* a new pass (the skipped ones) once idle */
			idle_wait(f);
			continue;
		}
		struct fts_job *fj = xcalloc(1, sizeof *fj);
		fj->job.run = job_run;
		fj->job.lazy = true; /* the index can be rebuilt: no sync of its own */
		fj->f = f;
		fj->docs = docs;
		fj->n = n;
		pthread_mutex_lock(&f->mu);
		f->inflight = true;
		pthread_mutex_unlock(&f->mu);
		store_job_queue(f->st, &fj->job);
		/* one batch at a time: the next read must see this one's rows */
		pthread_mutex_lock(&f->mu);
		while (f->inflight)
			pthread_cond_wait(&f->cond, &f->mu);
		pthread_mutex_unlock(&f->mu);
	}
	return NULL;
}

int store_fts_start(struct store *st, store_fts_extract_fn *fn)
{
	struct store_fts *f = xcalloc(1, sizeof *f);
	char *path = xasprintf("%s/postern.db", st->dir);
	char *err = NULL;
	int rc = sqlite3_open_v2(path, &f->rd.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	free(path);
	if (rc != SQLITE_OK || store_exec(&f->rd, "PRAGMA query_only = ON", &err) < 0) {
		log_err("store: full-text index: %s", err ? err : sqlite3_errmsg(f->rd.db));
		free(err);
		sqlite3_close(f->rd.db);
		free(f);
		return -1;
	}
	sqlite3_busy_timeout(f->rd.db, 10000);
	f->st = st;
	f->fn = fn;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cond, NULL);
	if (pthread_create(&f->thread, NULL, indexer_main, f) != 0) {
		log_err("store: full-text index: cannot start the indexer");
		pthread_mutex_destroy(&f->mu);
		pthread_cond_destroy(&f->cond);
		sqlite3_close(f->rd.db);
		free(f);
		return -1;
	}
	st->fts = f;
	return 0;
}

void store_fts_stop(struct store *st)
{
	struct store_fts *f = st->fts;
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->mu);
	f->stopping = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	for (int i = 0; i < STMT_N; i++)
		sqlite3_finalize(f->rd.stmts[i]);
	for (int i = 0; i < f->rd.n_cache; i++)
		sqlite3_finalize(f->rd.cache[i].s);
	sqlite3_close(f->rd.db);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cond);
	free(f);
	st->fts = NULL;
}

bool store_fts_on(const struct store *st)
{
	return st->fts != NULL;
}

/* ---- queries ---- */

/* Appends the FTS5 query of needle (folded UTF-8): the AND of at most
 * FTS_MAX_TRIGRAMS of its trigrams, spread over it. false if it has fewer
 * than STORE_FTS_MIN_NEEDLE characters. */
static bool needle_query(const char *needle, struct buf *out)
{
	size_t starts[4096], n = 0, len = strlen(needle);
	for (size_t i = 0; i < len; i++) {
		if (((unsigned char)needle[i] & 0xc0) == 0x80)
			continue;
		if (n == sizeof starts / sizeof starts[0]) {
			len = i; /* the first characters are plenty */
			break;
		}
		starts[n++] = i;
	}
	if (n < STORE_FTS_MIN_NEEDLE)
		return false;
	size_t nt = n - 2, want = nt < FTS_MAX_TRIGRAMS ? nt : FTS_MAX_TRIGRAMS;
	size_t last = (size_t)-1;
	buf_appendc(out, '(');
	for (size_t k = 0; k < want; k++) {
		size_t t = want == 1 ? 0 : k * (nt - 1) / (want - 1);
		if (t == last)
			continue;
		last = t;
		size_t a = starts[t], b = t + 3 < n ? starts[t + 3] : len;
		if (k > 0)
			buf_appends(out, " AND ");
		buf_appendc(out, '"');
		for (size_t i = a; i < b; i++) {
			if (needle[i] == '"')
				buf_appendc(out, '"');
			buf_appendc(out, needle[i]);
		}
		buf_appendc(out, '"');
	}
	buf_appendc(out, ')');
	return true;
}

struct qbuild {
	struct buf sql;
	char **params;
	size_t n_params;
};

static void add_param(struct qbuild *qb, struct buf *b)
{
	qb->params = xrealloc(qb->params, (qb->n_params + 1) * sizeof *qb->params);
	buf_appendc(b, '\0');
	qb->params[qb->n_params++] = xstrdup(b->data);
	buf_printf(&qb->sql, "?%zu", qb->n_params + 1); /* ?1 is the mailbox */
}

/* Appends a predicate on m.id implied by every match of q; false if q
 * cannot narrow (the predicate would be TRUE). */
static bool build(struct qbuild *qb, const struct store_fts_q *q)
{
	if (q->op == STORE_FTS_TERM) {
		struct buf fq = BUF_INIT;
		unsigned head = q->cols & ((1u << STORE_FTS_BODY) - 1);
		bool body = q->cols & (1u << STORE_FTS_BODY);
		if (q->needle == NULL || (!head && !body) || !needle_query(q->needle, &fq)) {
			buf_free(&fq);
			return false;
		}
		buf_appendc(&qb->sql, '(');
		if (body) {
			struct buf p = BUF_INIT;
			buf_append(&p, fq.data, fq.len);
			buf_appends(&qb->sql, "m.id IN (SELECT rowid FROM fts_body WHERE fts_body MATCH ");
			add_param(qb, &p);
			buf_appendc(&qb->sql, ')');
			buf_free(&p);
		}
		if (head) { /* one table for every header column */
			struct buf p = BUF_INIT;
			buf_append(&p, fq.data, fq.len);
			if (body)
				buf_appends(&qb->sql, " OR ");
			buf_appends(&qb->sql, "m.id IN (SELECT rowid FROM fts_head WHERE fts_head MATCH ");
			add_param(qb, &p);
			buf_appendc(&qb->sql, ')');
			buf_free(&p);
		}
		buf_appendc(&qb->sql, ')');
		buf_free(&fq);
		return true;
	}
	/* AND: the children that narrow; OR: only if every child narrows */
	size_t mark = qb->sql.len, mark_p = qb->n_params, used = 0;
	buf_appendc(&qb->sql, '(');
	for (size_t i = 0; i < q->n_sub; i++) {
		size_t m2 = qb->sql.len, p2 = qb->n_params;
		if (used > 0)
			buf_appends(&qb->sql, q->op == STORE_FTS_AND ? " AND " : " OR ");
		if (build(qb, &q->sub[i])) {
			used++;
			continue;
		}
		qb->sql.len = m2;
		while (qb->n_params > p2)
			free(qb->params[--qb->n_params]);
		if (q->op == STORE_FTS_OR) {
			used = 0;
			break;
		}
	}
	if (used == 0) {
		qb->sql.len = mark;
		while (qb->n_params > mark_p)
			free(qb->params[--qb->n_params]);
		return false;
	}
	buf_appendc(&qb->sql, ')');
	return true;
}

int store_fts_candidates(struct store_snap *sn, const char *user, const char *mailbox,
			 uint32_t uidvalidity, const struct store_fts_q *q, uint32_t **uids_r,
			 size_t *n_r, char **err_r)
{
	struct qbuild qb = {BUF_INIT, NULL, 0};
	struct store_mailbox_status status;
	int64_t mailbox_id;
	int ret = 0;

	if (!store_fts_on(sn->st))
		return 0;
	buf_appends(&qb.sql, "SELECT mm.uid FROM mailbox_messages mm JOIN messages m"
			     " ON m.id = mm.message_id WHERE mm.mailbox_id = ?1 AND (m.fts = 0 OR ");
	if (!build(&qb, q)) {
		buf_free(&qb.sql);
		free(qb.params);
		return 0;
	}
	buf_appends(&qb.sql, ") ORDER BY mm.uid");
	int r = store_db_mailbox(sn->d, user, mailbox, false, NULL, &mailbox_id, &status, err_r);
	if (r != 1) {
		ret = r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	} else if (uidvalidity != 0 && status.uidvalidity != uidvalidity) {
		*err_r = xasprintf("mailbox re-created");
		ret = STORE_CHANGED;
	} else {
		sqlite3_stmt *s = NULL;
		buf_appendc(&qb.sql, '\0');
		if (sqlite3_prepare_v2(sn->d->db, qb.sql.data, -1, &s, NULL) != SQLITE_OK) {
			*err_r = store_db_err(sn->d);
			ret = STORE_ERROR;
		} else {
			uint32_t *v = NULL;
			size_t n = 0, cap = 0;
			int rc;
			sqlite3_bind_int64(s, 1, mailbox_id);
			for (size_t i = 0; i < qb.n_params; i++)
				sqlite3_bind_text(s, (int)i + 2, qb.params[i], -1, SQLITE_STATIC);
			while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
				if (n == cap) {
					cap = cap ? cap * 2 : 256;
					v = xrealloc(v, cap * sizeof *v);
				}
				v[n++] = (uint32_t)sqlite3_column_int64(s, 0);
			}
			if (rc != SQLITE_DONE) {
				*err_r = store_db_err(sn->d);
				free(v);
				ret = STORE_ERROR;
			} else {
				*uids_r = v;
				*n_r = n;
				ret = 1;
			}
		}
		sqlite3_finalize(s);
	}
	for (size_t i = 0; i < qb.n_params; i++)
		free(qb.params[i]);
	free(qb.params);
	buf_free(&qb.sql);
	return ret;
}

/* ---- administration (the CLI, on st->main) ---- */

static int64_t q_int(struct store_db *d, const char *sql, char **err_r)
{
	sqlite3_stmt *s;
	int64_t v = -1;
	if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
		*err_r = store_db_err(d);
		return -1;
	}
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	else
		*err_r = store_db_err(d);
	sqlite3_finalize(s);
	return v;
}

int store_fts_stats(struct store *st, struct store_fts_stats *r, char **err_r)
{
	struct store_db *d = &st->main;
	int64_t v[6];
	static const char *const sql[6] = {
		"SELECT count(*) FROM messages",
		"SELECT count(*) FROM messages WHERE fts = 1",
		"SELECT v FROM fts_state WHERE k = 'docs'",
		"SELECT coalesce(sum(size), 0) FROM messages",
		"SELECT (SELECT coalesce(sum(length(block)), 0) FROM fts_body_data) +"
		" (SELECT coalesce(sum(length(block)), 0) FROM fts_head_data) +"
		" (SELECT count(*) * 16 + coalesce(sum(length(term)), 0) FROM fts_body_idx) +"
		" (SELECT count(*) * 16 + coalesce(sum(length(term)), 0) FROM fts_head_idx)",
		"SELECT count(*) FROM messages WHERE fts = 0",
	};
	/* one snapshot: the indexer may commit between the counts */
	if (store_exec(d, "BEGIN", err_r) < 0)
		return -1;
	for (int i = 0; i < 6; i++)
		if ((v[i] = q_int(d, sql[i], err_r)) < 0) {
			store_exec(d, "ROLLBACK", NULL);
			return -1;
		}
	store_exec(d, "COMMIT", NULL);
	r->messages = (uint64_t)v[0];
	r->indexed = (uint64_t)v[1];
	r->dead = v[2] > v[1] ? (uint64_t)(v[2] - v[1]) : 0;
	r->mail_bytes = (uint64_t)v[3];
	r->index_bytes = (uint64_t)v[4];
	r->pending = (uint64_t)v[5];
	return 0;
}

/* Re-indexes the indexed bodies of user_id: each one's rows deleted (given
 * the same text again) and inserted, fts left 1. */
static int reindex_user(struct store *st, store_fts_extract_fn *fn, int64_t user_id,
			uint64_t *n_r, char **err_r)
{
	static const char sql[] =
		"SELECT m.id, m.blob, m.cache FROM messages m WHERE m.fts = 1 AND m.id > ?1"
		" AND m.id IN (SELECT mm.message_id FROM mailbox_messages mm JOIN mailboxes b"
		" ON b.id = mm.mailbox_id WHERE b.user_id = ?2) ORDER BY m.id LIMIT 64";
	struct store_db *d = &st->main;
	int64_t after = 0;
	for (;;) {
		struct fts_doc *docs = xcalloc(64, sizeof *docs);
		size_t n = 0;
		sqlite3_stmt *s = store_sql(d, sql, err_r);
		if (s == NULL) {
			free(docs);
			return -1;
		}
		sqlite3_bind_int64(s, 1, after);
		sqlite3_bind_int64(s, 2, user_id);
		while (n < 64 && sqlite3_step(s) == SQLITE_ROW) {
			const char *blob = (const char *)sqlite3_column_text(s, 1);
			docs[n].id = after = sqlite3_column_int64(s, 0);
			if (blob != NULL)
				doc_extract(st, fn, blob, sqlite3_column_blob(s, 2),
					    (size_t)sqlite3_column_bytes(s, 2), &docs[n]);
			n++;
		}
		store_stmt_done(s);
		if (n == 0) {
			free(docs);
			return 0;
		}
		int r = store_exec(d, "BEGIN IMMEDIATE", err_r);
		for (size_t i = 0; r == 0 && i < n; i++)
			if (doc_write(d, &docs[i], true) < 0 || doc_write(d, &docs[i], false) < 0)
				r = -1;
		if (r == 0 && store_exec(d, "COMMIT", err_r) < 0)
			r = -1;
		if (r < 0) {
			if (*err_r == NULL)
				*err_r = store_db_err(d);
			store_exec(d, "ROLLBACK", NULL);
		}
		docs_free(docs, n);
		if (r < 0)
			return -1;
		*n_r += n;
	}
}

int store_fts_rebuild(struct store *st, const char *user, store_fts_extract_fn *fn,
		      uint64_t *n_r, char **err_r)
{
	struct store_db *d = &st->main;
	int64_t user_id = 0;
	*n_r = 0;
	if (user != NULL) {
		user_id = store_user_id(d, user, err_r);
		if (user_id <= 0) {
			if (user_id == 0 && *err_r == NULL)
				*err_r = xasprintf("%s: no such user", user);
			return -1;
		}
		if (reindex_user(st, fn, user_id, n_r, err_r) < 0)
			return -1;
	} else if (store_exec(d,
			      "BEGIN IMMEDIATE;"
			      " INSERT INTO fts_body(fts_body) VALUES ('delete-all');"
			      " INSERT INTO fts_head(fts_head) VALUES ('delete-all');"
			      " UPDATE messages SET fts = 0 WHERE fts <> 0;"
			      " UPDATE fts_state SET v = 0 WHERE k = 'docs';"
			      " INSERT OR REPLACE INTO fts_state VALUES ('text', " FTS_TEXT_VERSION_S ");"
			      " COMMIT;",
			      err_r) < 0) {
		store_exec(d, "ROLLBACK", NULL);
		return -1;
	}
	/* the bodies not indexed yet (all of them after delete-all) */
	int64_t after = 0;
	for (;;) {
		struct fts_doc *docs;
		size_t n;
		uint64_t added = 0;
		size_t skipped = 0;
		if (batch_read(st, d, fn, user_id, &after, &docs, &n, &skipped) < 0) {
			*err_r = store_db_err(d);
			return -1;
		}
		if (n == 0 && skipped > 0) { /* left to the daemon's indexer */
			free(docs);
			continue;
		}
		if (n == 0) {
			free(docs);
			break;
		}
		int r = store_exec(d, "BEGIN IMMEDIATE", err_r);
		if (r == 0 && docs_insert(d, docs, n, &added) < 0)
			r = -1;
		if (r == 0 && store_exec(d, "COMMIT", err_r) < 0)
			r = -1;
		if (r < 0) {
			if (*err_r == NULL)
				*err_r = store_db_err(d);
			store_exec(d, "ROLLBACK", NULL);
		}
		docs_free(docs, n);
		if (r < 0)
			return -1;
		*n_r += added;
	}
	/* FTS5 'optimize': one segment per table, the smallest index */
	if (user == NULL)
		store_exec(d,
			   "INSERT INTO fts_body(fts_body) VALUES ('optimize');"
			   " INSERT INTO fts_head(fts_head) VALUES ('optimize');",
			   NULL);
	/* What is indexed now in the scope, whoever did it: a running daemon's
	 * indexer takes the same waiting bodies as this loop, and either may
	 * write one first. */
	static const char count_sql[] =
		"SELECT count(*) FROM messages m WHERE m.fts = 1 AND (?1 = 0 OR m.id IN"
		" (SELECT mm.message_id FROM mailbox_messages mm JOIN mailboxes b"
		" ON b.id = mm.mailbox_id WHERE b.user_id = ?1))";
	sqlite3_stmt *s = store_sql(d, count_sql, err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*n_r = (uint64_t)sqlite3_column_int64(s, 0);
	store_stmt_done(s);
	if (rc != SQLITE_ROW) {
		*err_r = store_db_err(d);
		return -1;
	}
	return 0;
}
