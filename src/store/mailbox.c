/* The store side of IMAP: mailbox operations (CREATE, DELETE, RENAME,
 * SUBSCRIBE), the snapshots LIST, STATUS, SELECT and FETCH read from, the
 * expunge log (QRESYNC), and the job machinery every IMAP write shares
 * (struct store_op, see store_int.h).
 *
 * Every write is a job on the committer thread (the only writer), one
 * transaction each; blobs left without a message row are unlinked after
 * COMMIT; the caller's callback and the change notifications come back to
 * the loop thread with loop_post. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define MAX_MAILBOXES_DEFAULT 1000
#define MAX_MAILBOX_NAME_DEFAULT 512 /* octets, the whole hierarchical name */

/* ---- blobs to unlink after COMMIT ---- */

void store_blobs_add(struct store_blobs *b, const char *name)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 8;
		b->v = xrealloc(b->v, b->cap * sizeof *b->v);
	}
	b->v[b->n++] = xstrdup(name);
}

void store_blobs_done(struct store *st, struct store_blobs *b, bool unlink)
{
	for (size_t i = 0; i < b->n; i++) {
		int dir = store_blob_dir(b->v[i]);
		if (unlink && unlinkat(st->blob_dfd[dir], b->v[i], 0) < 0 && errno != ENOENT)
			log_warn("store: unlink blob %s: %s", b->v[i], strerror(errno));
		free(b->v[i]);
	}
	free(b->v);
	*b = (struct store_blobs){0};
}

/* ---- settings ---- */

void store_set_limits(struct store *st, unsigned max_mailboxes_per_user,
		      unsigned max_mailbox_name)
{
	st->max_mailboxes = max_mailboxes_per_user;
	st->max_mailbox_name = max_mailbox_name;
}

void store_set_cache_builder(struct store *st, store_cache_build_fn *fn,
			     store_cache_keys_fn *keys_fn)
{
	st->cache_fn = fn;
	st->cache_keys_fn = keys_fn;
}

static unsigned max_mailboxes(const struct store *st)
{
	return st->max_mailboxes ? st->max_mailboxes : MAX_MAILBOXES_DEFAULT;
}

static unsigned max_name(const struct store *st)
{
	return st->max_mailbox_name ? st->max_mailbox_name : MAX_MAILBOX_NAME_DEFAULT;
}

/* ---- the job machinery ---- */

struct store_op *store_op_new(struct store *st, const char *user)
{
	struct store_op *op = xcalloc(1, sizeof *op);
	op->st = st;
	op->user = xstrdup(user);
	return op;
}

void store_op_note(struct store_op *op, enum store_change_kind kind, int64_t mailbox_id,
		   const uint32_t *uids, size_t n, uint64_t highestmodseq)
{
	op->notes = xrealloc(op->notes, (op->n_notes + 1) * sizeof *op->notes);
	struct store_op_note *nt = &op->notes[op->n_notes++];
	*nt = (struct store_op_note){.kind = kind, .mailbox_id = mailbox_id,
				     .highestmodseq = highestmodseq};
	if (n > 0) {
		nt->uids = xmalloc(n * sizeof *uids);
		memcpy(nt->uids, uids, n * sizeof *uids);
		nt->n_uids = n;
	}
}

static void op_free(struct store_op *op)
{
	free(op->user);
	free(op->name);
	free(op->to);
	free(op->special_use);
	free(op->flags);
	free(op->uids);
	free(op->src);
	free(op->dst);
	store_flag_results_free(op->fr);
	free(op->fr_slot);
	for (size_t i = 0; op->aflags != NULL && i < op->n; i++)
		free(op->aflags[i]);
	free(op->aflags);
	free(op->sps);
	free(op->dates);
	free(op->tzs);
	free(op->errs);
	free(op->renamed);
	for (size_t i = 0; op->caches != NULL && i < op->n; i++)
		buf_free(&op->caches[i]);
	free(op->caches);
	free(op->cache);
	for (size_t i = 0; i < op->n_notes; i++)
		free(op->notes[i].uids);
	free(op->notes);
	store_blobs_done(op->st, &op->blobs, false);
	free(op);
}

static void op_finish(void *arg)
{
	struct store_op *op = arg;
	if (op->done != NULL)
		op->done(op);
	for (size_t i = 0; op->result == STORE_OK && i < op->n_notes; i++) {
		struct store_op_note *nt = &op->notes[i];
		struct store_change ch = {
			.kind = nt->kind,
			.uids = nt->uids,
			.n_uids = nt->n_uids,
			.highestmodseq = nt->highestmodseq,
		};
		store_notify_mailbox(op->st, &ch, nt->mailbox_id);
	}
	if (op->result == STORE_OK && (op->n_notes > 0 || op->user_change))
		store_notify_user(op->st, 0, op->user);
	op_free(op);
}

/* Once the commit is durable (store_job_done). */
static void op_tail(struct store *st, struct store_job *job)
{
	struct store_op *op = (struct store_op *)job;
	/* Committed but not durable (the round's sync failed): never a
	 * positive answer, and the blobs stay, both those the rows dropped
	 * (they may come back after a crash) and those they now use (after
	 * sees STORE_OK: the rows are there). */
	bool failed = st->round_failed && !job->lazy && op->result == STORE_OK;
	/* Only after COMMIT (see the top of expunge.c). */
	store_blobs_done(st, &op->blobs, op->result == STORE_OK && !failed);
	/* the trainer reads the queue now that the rows can be seen (even
	 * when the round's sync failed: committed, they are there to read) */
	if (op->spam_queued && op->result == STORE_OK)
		__atomic_add_fetch(&st->spam_queue_gen, 1, __ATOMIC_RELEASE);
	if (op->after != NULL)
		op->after(op);
	if (failed)
		op->result = STORE_ERROR;
	/* An op nobody waits for and nobody is told about (store_cache_save,
	 * store_preview_save) ends here: posted, it would be lost when it
	 * ends after the loop's last turn (the committer runs what is still
	 * queued at store_close, and loop_free drops what is posted then). */
	if (op->done == NULL && op->n_notes == 0 && !op->user_change) {
		op_free(op);
		return;
	}
	loop_post(st->loop, op_finish, op);
}

static void op_run(struct store *st, struct store_job *job)
{
	struct store_op *op = (struct store_op *)job;
	struct store_db *d = &st->cdb;
	op->result = STORE_OK;
	if (op->prep != NULL)
		op->prep(op);
	if (op->result == STORE_OK && op->body != NULL) {
		if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0) {
			log_err("store: begin failed: %s", sqlite3_errmsg(d->db));
			op->result = STORE_ERROR;
		} else {
			op->result = op->body(op, d);
			if (op->result == STORE_ERROR)
				log_err("store: %s: %s", op->user, sqlite3_errmsg(d->db));
			if (op->result == STORE_OK && store_exec(d, "COMMIT", NULL) < 0) {
				log_err("store: commit failed: %s", sqlite3_errmsg(d->db));
				op->result = STORE_ERROR;
			}
			if (op->result != STORE_OK)
				store_exec(d, "ROLLBACK", NULL);
		}
	}
	store_job_done(st, job, op_tail);
}

void store_op_queue(struct store_op *op)
{
	op->job.run = op_run;
	store_job_queue(op->st, &op->job);
}

/* ---- names ---- */

static bool utf8_ok(const unsigned char *p)
{
	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2
			: (*p & 0xf8) == 0xf0 ? 3 : -1;
		if (n < 0 || (n == 1 && *p < 0xc2))
			return false;
		p++;
		for (int i = 0; i < n; i++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;
	}
	return true;
}

/* A name the store keeps: UTF-8 (RFC 9051 5.1), no empty level, no control
 * characters, no LIST wildcards (RFC 9051 5.1: they cannot be matched
 * literally); STORE_LIMIT if too long. */
static int name_check(const struct store *st, const char *name)
{
	size_t len = strlen(name);
	if (len > max_name(st))
		return STORE_LIMIT;
	if (len == 0 || name[0] == '/' || name[len - 1] == '/' || strstr(name, "//") != NULL)
		return STORE_CANNOT;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '%' || *p == '*')
			return STORE_CANNOT;
	return utf8_ok((const unsigned char *)name) ? STORE_OK : STORE_CANNOT;
}

/* RFC 6154 2: the registered spelling of use, or NULL if unknown. */
static const char *special_use_canon(const char *use)
{
	static const char *const uses[] = {"\\All",  "\\Archive", "\\Drafts", "\\Flagged",
					   "\\Junk", "\\Sent",    "\\Trash"};
	for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++)
		if (strcasecmp(use, uses[i]) == 0)
			return uses[i];
	return NULL;
}

/* 1 and *id_r, 0 none, -1 error. */
static int mailbox_find(struct store_db *d, int64_t user_id, const char *name, int64_t *id_r)
{
	sqlite3_stmt *s = store_sql(d, "SELECT id FROM mailboxes WHERE user_id = ?1 AND name = ?2",
				    NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && id_r != NULL)
		*id_r = sqlite3_column_int64(s, 0);
	store_stmt_done(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int insert_one(struct store *st, struct store_db *d, int64_t user_id, const char *name,
		      const char *special_use)
{
	sqlite3_stmt *s = store_sql(d, "SELECT count(*) FROM mailboxes WHERE user_id = ?1", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	store_stmt_done(s);
	if (n < 0)
		return STORE_ERROR;
	if ((uint64_t)n >= max_mailboxes(st))
		return STORE_LIMIT;
	uint32_t uidvalidity;
	char *err = NULL;
	if (store_uidvalidity_next(d, &uidvalidity, &err) < 0) {
		log_err("store: %s", err);
		free(err);
		return STORE_ERROR;
	}
	s = store_sql(d, "INSERT INTO mailboxes(user_id, name, uidvalidity, special_use)"
			 " VALUES(?1, ?2, ?3, ?4)", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, uidvalidity);
	if (special_use != NULL)
		sqlite3_bind_text(s, 4, special_use, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 4);
	int rc = sqlite3_step(s);
	bool dup = rc != SQLITE_DONE &&
		   sqlite3_extended_errcode(d->db) == SQLITE_CONSTRAINT_UNIQUE;
	store_stmt_done(s);
	return rc == SQLITE_DONE ? STORE_OK : dup ? STORE_EXISTS : STORE_ERROR;
}

int store_mailbox_insert(struct store *st, struct store_db *d, int64_t user_id,
			 const char *name, const char *special_use, bool parents)
{
	/* RFC 9051 6.3.4: the missing superior levels are created too. */
	for (const char *p = strchr(name, '/'); parents && p != NULL; p = strchr(p + 1, '/')) {
		char *parent = xstrndup(name, (size_t)(p - name));
		int r = mailbox_find(d, user_id, parent, NULL);
		if (r == 0)
			r = insert_one(st, d, user_id, parent, NULL);
		else
			r = r < 0 ? STORE_ERROR : STORE_OK;
		free(parent);
		if (r != STORE_OK)
			return r;
	}
	return insert_one(st, d, user_id, name, special_use);
}

int store_user_init(struct store_db *d, int64_t user_id, char **err_r)
{
	static const struct {
		const char *name, *use;
	} defaults[] = {STORE_SPECIAL_USE_DEFAULTS};
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
		uint32_t uidvalidity;
		if (store_uidvalidity_next(d, &uidvalidity, err_r) < 0)
			return -1;
		sqlite3_stmt *s = store_sql(d, "INSERT INTO mailboxes(user_id, name, uidvalidity,"
					       " special_use) VALUES(?1, ?2, ?3, ?4)", err_r);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, user_id);
		sqlite3_bind_text(s, 2, defaults[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, uidvalidity);
		sqlite3_bind_text(s, 4, defaults[i].use, -1, SQLITE_STATIC);
		if (store_step_done(d, s, NULL) < 0)
			goto fail;
	}
	static const char *const steps[] = {
		"INSERT OR IGNORE INTO subscriptions(user_id, name) SELECT user_id, name"
		" FROM mailboxes WHERE user_id = ?1",
		"INSERT INTO quotas(user_id) VALUES(?1)",
	};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		sqlite3_stmt *s = store_sql(d, steps[i], err_r);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, user_id);
		if (store_step_done(d, s, NULL) < 0)
			goto fail;
	}
	return 0;
fail:
	*err_r = store_db_err(d);
	return -1;
}

/* ---- removing entries (expunge, MOVE, RENAME INBOX) ---- */

int store_entries_remove(struct store *st, struct store_db *d, int64_t mailbox_id, uint32_t *uids,
			 size_t *n, bool quota, uint64_t *modseq_r, struct store_blobs *blobs)
{
	sqlite3_stmt *del = store_sql(d, "DELETE FROM mailbox_messages WHERE mailbox_id = ?1"
				      " AND uid = ?2 RETURNING message_id,"
				      " (SELECT size FROM messages WHERE id = message_id)", NULL);
	sqlite3_stmt *bump = store_sql(d, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1"
				       " WHERE id = ?1 RETURNING highestmodseq, user_id", NULL);
	sqlite3_stmt *log = store_sql(d, "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq)"
				      " VALUES(?1, ?2, ?3)", NULL);
	int r = -1;
	size_t kept = 0;
	int64_t bytes = 0, user_id = 0;
	if (del == NULL || bump == NULL || log == NULL)
		goto out;
	for (size_t i = 0; i < *n; i++) {
		sqlite3_bind_int64(del, 1, mailbox_id);
		sqlite3_bind_int64(del, 2, uids[i]);
		int rc = sqlite3_step(del);
		int64_t msg_id = rc == SQLITE_ROW ? sqlite3_column_int64(del, 0) : 0;
		if (rc == SQLITE_ROW) {
			bytes += sqlite3_column_int64(del, 1);
			rc = sqlite3_step(del); /* RETURNING: run to the end */
		}
		sqlite3_reset(del);
		if (rc != SQLITE_DONE)
			goto out;
		if (msg_id == 0)
			continue; /* already gone: not an error */
		uids[kept++] = uids[i];
		if (store_message_gc(st, d, msg_id, blobs) < 0)
			goto out;
	}
	*n = kept;
	if (kept == 0) {
		r = 0;
		goto out;
	}
	/* RFC 7162 3.2: an expunge is a change: the mailbox's MODSEQ moves. */
	sqlite3_bind_int64(bump, 1, mailbox_id);
	int rc = sqlite3_step(bump);
	if (rc == SQLITE_ROW) {
		*modseq_r = (uint64_t)sqlite3_column_int64(bump, 0);
		user_id = sqlite3_column_int64(bump, 1);
		rc = sqlite3_step(bump);
	}
	if (rc != SQLITE_DONE)
		goto out;
	/* RFC 7162 3.2.5.1: VANISHED (EARLIER) needs the expunged UIDs with
	 * the MODSEQ of their expunge. */
	for (size_t i = 0; i < kept; i++) {
		sqlite3_bind_int64(log, 1, mailbox_id);
		sqlite3_bind_int64(log, 2, uids[i]);
		sqlite3_bind_int64(log, 3, (int64_t)*modseq_r);
		rc = sqlite3_step(log);
		sqlite3_reset(log);
		if (rc != SQLITE_DONE)
			goto out;
	}
	if (quota && store_quota_add(d, user_id, -bytes, -(int64_t)kept) < 0)
		goto out;
	r = 0;
out:
	store_stmt_done(del);
	store_stmt_done(bump);
	store_stmt_done(log);
	return r;
}

/* ---- CREATE, DELETE, RENAME, SUBSCRIBE ---- */

static void res_done(struct store_op *op)
{
	if (op->res_cb != NULL)
		op->res_cb(op->arg, op->result);
}

/* The user's id: STORE_OK, or STORE_NONEXISTENT / STORE_ERROR. */
static int op_user(struct store_op *op, struct store_db *d, int64_t *user_id_r)
{
	char *err = NULL;
	int64_t id = store_user_id(d, op->user, &err);
	int r = id > 0 ? STORE_OK : id == 0 ? STORE_NONEXISTENT : STORE_ERROR;
	if (r == STORE_ERROR && err != NULL && strncmp(err, "database", 8) != 0)
		r = STORE_NONEXISTENT; /* not an address */
	free(err);
	*user_id_r = id;
	return r;
}

static int create_body(struct store_op *op, struct store_db *d)
{
	int64_t user_id;
	int r = op_user(op, d, &user_id);
	if (r != STORE_OK)
		return r;
	if (strcmp(op->name, "INBOX") == 0)
		return STORE_EXISTS;
	if ((r = name_check(op->st, op->name)) != STORE_OK)
		return r;
	if (op->special_use != NULL && special_use_canon(op->special_use) == NULL)
		return STORE_CANNOT;
	r = mailbox_find(d, user_id, op->name, NULL);
	if (r != 0)
		return r < 0 ? STORE_ERROR : STORE_EXISTS;
	return store_mailbox_insert(op->st, d, user_id, op->name, op->special_use, true);
}

/* The name as stored: INBOX normalised, one trailing separator dropped
 * (RFC 9051 6.3.4: "foo/" creates "foo"). */
static char *name_dup(const char *name)
{
	char *copy;
	const char *n = store_mailbox_norm(name, &copy);
	char *r = xstrdup(n);
	free(copy);
	size_t len = strlen(r);
	if (len > 1 && r[len - 1] == '/')
		r[len - 1] = '\0';
	return r;
}

void store_mailbox_create(struct store *st, const char *user, const char *name,
			  const char *special_use, store_res_cb *cb, void *arg)
{
	struct store_op *op = store_op_new(st, user);
	op->name = name_dup(name);
	/* RFC 6154: the attribute as registered, whatever the case given */
	if (special_use != NULL && special_use_canon(special_use) != NULL)
		special_use = special_use_canon(special_use);
	op->special_use = special_use ? xstrdup(special_use) : NULL;
	op->body = create_body;
	op->user_change = true;
	op->done = res_done;
	op->res_cb = cb;
	op->arg = arg;
	store_op_queue(op);
}

/* 1 if name has children, 0 if not, -1 error. */
static int has_children(struct store_db *d, int64_t user_id, const char *name)
{
	sqlite3_stmt *s = store_sql(d, "SELECT 1 FROM mailboxes WHERE user_id = ?1"
				    " AND substr(name, 1, length(?2) + 1) = ?2 || '/' LIMIT 1", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	store_stmt_done(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Every UID of a mailbox, ascending (*uids_r: xmalloc, NULL when empty).
 * 0, or -1 on a database error. */
static int mailbox_uids(struct store_db *d, int64_t mailbox_id, uint32_t **uids_r, size_t *n_r)
{
	sqlite3_stmt *s = store_sql(d, "SELECT uid FROM mailbox_messages WHERE mailbox_id = ?1"
				    " ORDER BY uid", NULL);
	size_t n = 0, cap = 0;
	uint32_t *uids = NULL;
	int rc;

	*uids_r = NULL;
	*n_r = 0;
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			uids = xrealloc(uids, cap * sizeof *uids);
		}
		uids[n++] = (uint32_t)sqlite3_column_int64(s, 0);
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		free(uids);
		return -1;
	}
	*uids_r = uids;
	*n_r = n;
	return 0;
}

static int delete_body(struct store_op *op, struct store_db *d)
{
	int64_t user_id, id;
	int r = op_user(op, d, &user_id);
	if (r != STORE_OK)
		return r;
	if (strcmp(op->name, "INBOX") == 0)
		return STORE_CANNOT; /* RFC 9051 6.3.5 */
	if ((r = mailbox_find(d, user_id, op->name, &id)) != 1)
		return r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	if ((r = has_children(d, user_id, op->name)) != 0)
		return r < 0 ? STORE_ERROR : STORE_HASCHILDREN;
	/* The messages first: their bodies may go, and the quota follows. */
	size_t n;
	uint32_t *uids;
	if (mailbox_uids(d, id, &uids, &n) < 0)
		return STORE_ERROR;
	uint64_t modseq = 0;
	r = store_entries_remove(op->st, d, id, uids, &n, true, &modseq, &op->blobs) == 0 ? STORE_OK
										      : STORE_ERROR;
	free(uids);
	if (r != STORE_OK)
		return r;
	/* RFC 5464 4.1: its METADATA entries go with it (a mailbox created
	 * later under the name starts without them). */
	sqlite3_stmt *s = store_sql(d, "DELETE FROM metadata WHERE user_id = ?1"
				    " AND mailbox_id = ?2", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, id);
	if (store_step_done(d, s, NULL) < 0)
		return STORE_ERROR;
	/* The expunge log goes with the mailbox (ON DELETE CASCADE). */
	s = store_sql(d, "DELETE FROM mailboxes WHERE id = ?1", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, id);
	if (store_step_done(d, s, NULL) < 0)
		return STORE_ERROR;
	store_op_note(op, STORE_CHANGE_DELETED, id, NULL, 0, 0);
	return STORE_OK;
}

void store_mailbox_delete(struct store *st, const char *user, const char *name,
			  store_res_cb *cb, void *arg)
{
	struct store_op *op = store_op_new(st, user);
	op->name = name_dup(name);
	op->body = delete_body;
	op->user_change = true;
	op->done = res_done;
	op->res_cb = cb;
	op->arg = arg;
	store_op_queue(op);
}

/* RENAME INBOX (RFC 9051 6.3.6): a new mailbox gets every message of INBOX,
 * which stays, empty. */
static int rename_inbox(struct store_op *op, struct store_db *d, int64_t user_id, int64_t inbox)
{
	int r = store_mailbox_insert(op->st, d, user_id, op->to, NULL, true);
	int64_t to_id;
	if (r != STORE_OK)
		return r;
	if (mailbox_find(d, user_id, op->to, &to_id) != 1)
		return STORE_ERROR;
	/* RFC 5464 4.1: INBOX's METADATA entries are copied to the new
	 * mailbox and stay on INBOX. */
	sqlite3_stmt *s = store_sql(d, "INSERT OR REPLACE INTO metadata(user_id, mailbox_id, name,"
				    " value) SELECT user_id, ?3, name, value FROM metadata"
				    " WHERE user_id = ?1 AND mailbox_id = ?2", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, inbox);
	sqlite3_bind_int64(s, 3, to_id);
	if (store_step_done(d, s, NULL) < 0)
		return STORE_ERROR;
	size_t n;
	uint32_t *uids;
	if (mailbox_uids(d, inbox, &uids, &n) < 0)
		return STORE_ERROR;
	r = n == 0 ? STORE_OK : store_copy_entries(op, d, user_id, inbox, to_id, uids, n, true);
	free(uids);
	return r;
}

static int rename_body(struct store_op *op, struct store_db *d)
{
	int64_t user_id, from_id;
	int r = op_user(op, d, &user_id);
	if (r != STORE_OK)
		return r;
	if ((r = mailbox_find(d, user_id, op->name, &from_id)) != 1)
		return r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	if (strcmp(op->to, "INBOX") == 0 || strcmp(op->to, op->name) == 0)
		return STORE_EXISTS;
	if ((r = name_check(op->st, op->to)) != STORE_OK)
		return r;
	size_t flen = strlen(op->name), tlen = strlen(op->to);
	if (tlen > flen && strncmp(op->to, op->name, flen) == 0 && op->to[flen] == '/')
		return STORE_CANNOT; /* into its own child */
	if ((r = mailbox_find(d, user_id, op->to, NULL)) != 0)
		return r < 0 ? STORE_ERROR : STORE_EXISTS;
	if (strcmp(op->name, "INBOX") == 0)
		return rename_inbox(op, d, user_id, from_id);

	/* The mailbox and every level below it, in one go. */
	sqlite3_stmt *s = store_sql(d, "SELECT id, name FROM mailboxes WHERE user_id = ?1"
				    " AND (name = ?2 OR substr(name, 1, length(?2) + 1) = ?2 || '/')",
				    NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_text(s, 2, op->name, -1, SQLITE_STATIC);
	size_t n = 0, cap = 0;
	int64_t *ids = NULL;
	char **names = NULL;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			ids = xrealloc(ids, cap * sizeof *ids);
			names = xrealloc(names, cap * sizeof *names);
		}
		ids[n] = sqlite3_column_int64(s, 0);
		names[n++] = xasprintf("%s%s", op->to,
				       (const char *)sqlite3_column_text(s, 1) + flen);
	}
	store_stmt_done(s);
	r = rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
	/* Missing parents of the new name (RFC 9051 6.3.6). */
	for (const char *p = strchr(op->to, '/'); r == STORE_OK && p != NULL;
	     p = strchr(p + 1, '/')) {
		char *parent = xstrndup(op->to, (size_t)(p - op->to));
		int k = mailbox_find(d, user_id, parent, NULL);
		r = k < 0 ? STORE_ERROR : k == 0 ? insert_one(op->st, d, user_id, parent, NULL)
						 : STORE_OK;
		free(parent);
	}
	static const char *const steps[] = {
		"UPDATE mailboxes SET name = ?2 WHERE id = ?1",
		/* subscriptions follow the mailbox, as in Dovecot */
		"UPDATE OR IGNORE subscriptions SET name = ?2 WHERE user_id = ?3 AND name = ?4",
	};
	for (size_t i = 0; r == STORE_OK && i < n; i++) {
		if (strlen(names[i]) > max_name(op->st)) {
			r = STORE_LIMIT;
			break;
		}
		char *old = xasprintf("%s%s", op->name, names[i] + tlen);
		for (size_t k = 0; r == STORE_OK && k < 2; k++) {
			s = store_sql(d, steps[k], NULL);
			if (s == NULL) {
				r = STORE_ERROR;
				break;
			}
			sqlite3_bind_int64(s, 1, ids[i]);
			sqlite3_bind_text(s, 2, names[i], -1, SQLITE_STATIC);
			if (k == 1) {
				sqlite3_bind_int64(s, 3, user_id);
				sqlite3_bind_text(s, 4, old, -1, SQLITE_STATIC);
			}
			rc = sqlite3_step(s);
			if (rc != SQLITE_DONE)
				r = sqlite3_extended_errcode(d->db) == SQLITE_CONSTRAINT_UNIQUE
					    ? STORE_EXISTS
					    : STORE_ERROR;
			store_stmt_done(s);
		}
		free(old);
		/* Sessions holding it by id see it go (RFC 9051 6.3.6). */
		store_op_note(op, STORE_CHANGE_DELETED, ids[i], NULL, 0, 0);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(ids);
	return r;
}

void store_mailbox_rename(struct store *st, const char *user, const char *from, const char *to,
			  store_res_cb *cb, void *arg)
{
	struct store_op *op = store_op_new(st, user);
	op->name = name_dup(from);
	op->to = name_dup(to);
	op->body = rename_body;
	op->user_change = true;
	op->done = res_done;
	op->res_cb = cb;
	op->arg = arg;
	store_op_queue(op);
}

static int subscribe_body(struct store_op *op, struct store_db *d)
{
	int64_t user_id;
	int r = op_user(op, d, &user_id);
	if (r != STORE_OK)
		return r;
	if (op->on && (r = name_check(op->st, op->name)) != STORE_OK)
		return r;
	sqlite3_stmt *s = store_sql(d, op->on ? "INSERT OR IGNORE INTO subscriptions(user_id, name)"
						" VALUES(?1, ?2)"
					      : "DELETE FROM subscriptions WHERE user_id = ?1"
						" AND name = ?2", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_text(s, 2, op->name, -1, SQLITE_STATIC);
	return store_step_done(d, s, NULL) < 0 ? STORE_ERROR : STORE_OK;
}

void store_mailbox_subscribe(struct store *st, const char *user, const char *name, bool on,
			     store_res_cb *cb, void *arg)
{
	struct store_op *op = store_op_new(st, user);
	op->name = name_dup(name);
	op->on = on;
	op->body = subscribe_body;
	op->user_change = true;
	op->done = res_done;
	op->res_cb = cb;
	op->arg = arg;
	store_op_queue(op);
}

/* ---- the MIME cache of a stored message ---- */

int store_db_sort_keys(struct store_db *d, const struct store *st, int64_t message_id,
		       const void *cache, size_t len)
{
	struct store_cache_keys k = {0};
	if (st->cache_keys_fn == NULL)
		return 0;
	sqlite3_stmt *s;
	if (len == 0 || !st->cache_keys_fn(cache, len, &k)) {
		/* none (an empty cache: not built), or keys that would no
		 * longer be this cache's */
		s = store_sql(d, "DELETE FROM sort_keys WHERE message_id = ?1", NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, message_id);
		return store_step_done(d, s, NULL);
	}
	s = store_sql(d,
		      "INSERT OR REPLACE INTO sort_keys(message_id, size, keys, thread)"
		      " SELECT id, size, ?2, ?3 FROM messages WHERE id = ?1",
		      NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, message_id);
	sqlite3_bind_blob(s, 2, k.sort, (int)k.sort_len, SQLITE_STATIC);
	if (k.thread != NULL)
		sqlite3_bind_blob(s, 3, k.thread, (int)k.thread_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
	return store_step_done(d, s, NULL);
}

static int cache_body(struct store_op *op, struct store_db *d)
{
	/* a cache the reader rejected (an older version of the format) is
	 * replaced; the same bytes are not written again (but its sort keys
	 * are: a cache saved again may be one from before sort_keys) */
	sqlite3_stmt *s = store_sql(d, "UPDATE messages SET cache = ?2 WHERE id = ?1"
				    " AND (cache IS NULL OR cache <> ?2)", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, op->message_id);
	if (op->cache_len > 0)
		sqlite3_bind_blob(s, 2, op->cache, (int)op->cache_len, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(s, 2, 0);
	if (store_step_done(d, s, NULL) < 0 ||
	    store_db_sort_keys(d, op->st, op->message_id, op->cache, op->cache_len) < 0)
		return STORE_ERROR;
	return STORE_OK;
}

void store_cache_save(struct store *st, int64_t message_id, const void *cache, size_t len)
{
	if (len > (size_t)INT32_MAX)
		return;
	struct store_op *op = store_op_new(st, "-");
	op->message_id = message_id;
	op->cache = xmalloc(len ? len : 1);
	memcpy(op->cache, cache, len);
	op->cache_len = len;
	op->body = cache_body;
	store_op_queue(op);
}

/* ---- snapshots ---- */

static int snap_user(struct store_snap *sn, const char *user, int64_t *user_id_r, char **err_r)
{
	int64_t id = store_user_id(sn->d, user, err_r);
	if (id > 0) {
		*user_id_r = id;
		return STORE_OK;
	}
	if (id == 0 || strncmp(*err_r, "database", 8) != 0)
		return STORE_NONEXISTENT;
	return STORE_ERROR;
}

/* The columns of a mailbox row, with or without the counts. */
#define MB_COLS                                                                                    \
	"SELECT b.name, b.special_use, EXISTS(SELECT 1 FROM subscriptions s"                       \
	" WHERE s.user_id = b.user_id AND s.name = b.name), b.uidvalidity, b.uidnext,"             \
	" b.highestmodseq, (SELECT count(*) FROM mailbox_messages mm WHERE mm.mailbox_id = b.id)"
#define MB_COUNTS                                                                                  \
	", (SELECT count(*) FROM mailbox_messages mm WHERE mm.mailbox_id = b.id"                   \
	" AND instr(' ' || mm.flags || ' ', ' \\Seen ') = 0),"                                     \
	" (SELECT count(*) FROM mailbox_messages mm WHERE mm.mailbox_id = b.id"                    \
	" AND instr(' ' || mm.flags || ' ', ' \\Deleted ') > 0),"                                  \
	" (SELECT coalesce(sum(m.size), 0) FROM mailbox_messages mm JOIN messages m"               \
	" ON m.id = mm.message_id WHERE mm.mailbox_id = b.id),"                                    \
	" (SELECT min(mm.uid) FROM mailbox_messages mm WHERE mm.mailbox_id = b.id"                 \
	" AND instr(' ' || mm.flags || ' ', ' \\Seen ') = 0)"

static void mailbox_from_row(sqlite3_stmt *s, bool counts, store_mailbox_cb *cb, void *arg)
{
	struct store_mailbox mb = {
		.name = (const char *)sqlite3_column_text(s, 0),
		.special_use = (const char *)sqlite3_column_text(s, 1),
		.subscribed = sqlite3_column_int(s, 2) != 0,
		.status = {
			.uidvalidity = (uint32_t)sqlite3_column_int64(s, 3),
			.uidnext = (uint32_t)sqlite3_column_int64(s, 4),
			.highestmodseq = (uint64_t)sqlite3_column_int64(s, 5),
			.messages = (uint32_t)sqlite3_column_int64(s, 6),
		},
	};
	if (counts) {
		mb.unseen = (uint32_t)sqlite3_column_int64(s, 7);
		mb.deleted = (uint32_t)sqlite3_column_int64(s, 8);
		mb.size = (uint64_t)sqlite3_column_int64(s, 9);
		mb.first_unseen_uid = (uint32_t)sqlite3_column_int64(s, 10);
	}
	cb(arg, &mb);
}

static int mailboxes_read(struct store_snap *sn, const char *user, const char *name,
			  bool want_counts, store_mailbox_cb *cb, void *arg, char **err_r)
{
	static const char all[] = MB_COLS " FROM mailboxes b WHERE b.user_id = ?1 ORDER BY b.name";
	static const char all_c[] =
		MB_COLS MB_COUNTS " FROM mailboxes b WHERE b.user_id = ?1 ORDER BY b.name";
	static const char one[] = MB_COLS " FROM mailboxes b WHERE b.user_id = ?1 AND b.name = ?2";
	static const char one_c[] =
		MB_COLS MB_COUNTS " FROM mailboxes b WHERE b.user_id = ?1 AND b.name = ?2";
	int64_t user_id;
	int r = snap_user(sn, user, &user_id, err_r);
	if (r != STORE_OK)
		return r;
	sqlite3_stmt *s = store_sql(sn->d, name ? (want_counts ? one_c : one)
						: (want_counts ? all_c : all), err_r);
	if (s == NULL)
		return STORE_ERROR;
	char *copy = NULL;
	sqlite3_bind_int64(s, 1, user_id);
	if (name != NULL)
		sqlite3_bind_text(s, 2, store_mailbox_norm(name, &copy), -1, SQLITE_STATIC);
	int rc, rows = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		mailbox_from_row(s, want_counts, cb, arg);
		rows++;
	}
	r = rc != SQLITE_DONE ? STORE_ERROR : name != NULL && rows == 0 ? STORE_NONEXISTENT
									: STORE_OK;
	if (r == STORE_ERROR)
		*err_r = store_db_err(sn->d);
	else if (r == STORE_NONEXISTENT)
		*err_r = xasprintf("no such mailbox %s", name);
	store_stmt_done(s);
	free(copy);
	return r;
}

int store_snap_mailboxes(struct store_snap *sn, const char *user, bool want_counts,
			 store_mailbox_cb *cb, void *arg, char **err_r)
{
	return mailboxes_read(sn, user, NULL, want_counts, cb, arg, err_r);
}

int store_snap_mailbox(struct store_snap *sn, const char *user, const char *name,
		       bool want_counts, store_mailbox_cb *cb, void *arg, char **err_r)
{
	return mailboxes_read(sn, user, name ? name : "INBOX", want_counts, cb, arg, err_r);
}

int store_snap_subscriptions(struct store_snap *sn, const char *user, store_list_cb *cb,
			     void *arg, char **err_r)
{
	int64_t user_id;
	int r = snap_user(sn, user, &user_id, err_r);
	if (r != STORE_OK)
		return r;
	sqlite3_stmt *s = store_sql(sn->d, "SELECT name FROM subscriptions WHERE user_id = ?1"
				    " ORDER BY name", err_r);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, user_id);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0), "");
	if (rc != SQLITE_DONE)
		*err_r = store_db_err(sn->d);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
}

/* The mailbox a selected-state read names: STORE_OK with its id, or
 * STORE_NONEXISTENT / STORE_CHANGED / STORE_ERROR with *err_r. */
static int snap_selected(struct store_snap *sn, const char *user, const char *mailbox,
			 uint32_t uidvalidity, int64_t *id_r, char **err_r)
{
	struct store_mailbox_status status;
	int r = store_db_mailbox(sn->d, user, mailbox, false, NULL, id_r, &status, err_r);
	if (r != 1)
		return r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	if (uidvalidity != 0 && status.uidvalidity != uidvalidity) {
		*err_r = xasprintf("mailbox re-created (UIDVALIDITY %u, now %u)", uidvalidity,
				   status.uidvalidity);
		return STORE_CHANGED;
	}
	return STORE_OK;
}

/* STORE_MSG_SORT, a body without sort keys yet: what STORE_MSG_CACHE
 * reads of it (the reader builds and saves its cache, which writes them) */
static int snap_body(struct store_snap *sn, struct store_msg *m, sqlite3_stmt **q_r, char **err_r)
{
	sqlite3_stmt *q =
	    store_sql(sn->d, "SELECT size, blob, cache FROM messages WHERE id = ?1", err_r);
	if (q == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(q, 1, m->message_id);
	if (sqlite3_step(q) != SQLITE_ROW) {
		*err_r = store_db_err(sn->d);
		store_stmt_done(q);
		return STORE_ERROR;
	}
	m->size = (uint64_t)sqlite3_column_int64(q, 0);
	m->blob = (const char *)sqlite3_column_text(q, 1);
	if (sqlite3_column_type(q, 2) != SQLITE_NULL) {
		m->cache = sqlite3_column_blob(q, 2);
		m->cache_len = (size_t)sqlite3_column_bytes(q, 2);
		if (m->cache == NULL)
			m->cache = ""; /* an empty cache is still a cache */
	}
	*q_r = q; /* m points into its row until it is reset */
	return STORE_OK;
}

int store_snap_blob_name(struct store_snap *sn, int64_t message_id, char **blob_r, char **err_r)
{
	sqlite3_stmt *q = store_sql(sn->d, "SELECT blob FROM messages WHERE id = ?1", err_r);
	if (q == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(q, 1, message_id);
	if (sqlite3_step(q) != SQLITE_ROW || sqlite3_column_type(q, 0) == SQLITE_NULL) {
		*err_r = store_db_err(sn->d);
		store_stmt_done(q);
		return STORE_ERROR;
	}
	*blob_r = xstrdup((const char *)sqlite3_column_text(q, 0));
	store_stmt_done(q);
	return STORE_OK;
}

int store_snap_messages(struct store_snap *sn, const char *user, const char *mailbox,
			uint32_t uidvalidity, const struct store_uid_range *ranges, size_t n,
			uint64_t changedsince, enum store_msg_want want, store_msg_cb *cb,
			void *arg, char **err_r)
{
#define SNAP_MSGS_COLS                                                                             \
	"SELECT mm.uid, mm.modseq, mm.flags, mm.internaldate, mm.internaldate_tz, m.size,"         \
	" m.id, m.blob, mm.savedate"
#define SNAP_MSGS_WHERE                                                                            \
	" WHERE mm.mailbox_id = ?1 AND mm.uid BETWEEN ?2 AND ?3 AND mm.modseq > ?4"                \
	" ORDER BY mm.uid"
	static const char *const sql[] = {
	    [STORE_MSG_PLAIN] = SNAP_MSGS_COLS ", NULL FROM mailbox_messages mm JOIN messages m"
					       " ON m.id = mm.message_id" SNAP_MSGS_WHERE,
	    [STORE_MSG_CACHE] = SNAP_MSGS_COLS ", m.cache FROM mailbox_messages mm JOIN messages m"
					       " ON m.id = mm.message_id" SNAP_MSGS_WHERE,
	    [STORE_MSG_CACHE_TEXT] = SNAP_MSGS_COLS
	    ", m.cache, t.len, t.body FROM mailbox_messages mm JOIN messages m"
	    " ON m.id = mm.message_id LEFT JOIN fts_text t ON t.message_id = m.id" SNAP_MSGS_WHERE,
	    /* the narrow rows alone: no messages row is read (its cache makes
	     * it long) unless a body has no sort keys */
	    [STORE_MSG_SORT] = "SELECT mm.uid, mm.modseq, mm.flags, mm.internaldate,"
			       " mm.internaldate_tz, m.size, mm.message_id, NULL, mm.savedate,"
			       " m.keys FROM mailbox_messages mm LEFT JOIN sort_keys m"
			       " ON m.message_id = mm.message_id" SNAP_MSGS_WHERE,
	    [STORE_MSG_THREAD] = "SELECT mm.uid, mm.modseq, mm.flags, mm.internaldate,"
				 " mm.internaldate_tz, m.size, mm.message_id, NULL, mm.savedate,"
				 " m.thread FROM mailbox_messages mm LEFT JOIN sort_keys m"
				 " ON m.message_id = mm.message_id" SNAP_MSGS_WHERE,
	};
#undef SNAP_MSGS_COLS
#undef SNAP_MSGS_WHERE
	int64_t id;
	int r = snap_selected(sn, user, mailbox, uidvalidity, &id, err_r);
	if (r != STORE_OK)
		return r;
	sqlite3_stmt *s = store_sql(sn->d, sql[want], err_r);
	if (s == NULL)
		return STORE_ERROR;
	const struct store_uid_range all = {1, UINT32_MAX};
	bool stop = false;
	for (size_t i = 0; r == STORE_OK && !stop && i < (n ? n : 1); i++) {
		const struct store_uid_range *rg = n ? &ranges[i] : &all;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, rg->lo);
		sqlite3_bind_int64(s, 3, rg->hi);
		sqlite3_bind_int64(s, 4, (int64_t)changedsince);
		int rc;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const char *flags = (const char *)sqlite3_column_text(s, 2);
			struct store_msg m = {
				.uid = (uint32_t)sqlite3_column_int64(s, 0),
				.modseq = (uint64_t)sqlite3_column_int64(s, 1),
				.flags = flags ? flags : "",
				.internaldate = (time_t)sqlite3_column_int64(s, 3),
				.internaldate_tz = sqlite3_column_int(s, 4),
				.size = (uint64_t)sqlite3_column_int64(s, 5),
				.message_id = sqlite3_column_int64(s, 6),
				.blob = (const char *)sqlite3_column_text(s, 7),
				.savedate = (time_t)sqlite3_column_int64(s, 8),
			};
			sqlite3_stmt *q = NULL;
			bool keys = want == STORE_MSG_SORT || want == STORE_MSG_THREAD;
			/* an empty value (x'': SQLite gives no pointer) is no
			 * keys either: the body's cache is read (blob and cache
			 * set, as the callers need them), and saving it again
			 * writes the row anew */
			if (keys && (m.sortkeys = sqlite3_column_blob(s, 9)) != NULL) {
				m.sortkeys_len = (size_t)sqlite3_column_bytes(s, 9);
			} else if (keys) {
				if ((r = snap_body(sn, &m, &q, err_r)) != STORE_OK)
					break;
			} else if (want != STORE_MSG_PLAIN &&
				   sqlite3_column_type(s, 9) != SQLITE_NULL) {
				m.cache = sqlite3_column_blob(s, 9);
				m.cache_len = (size_t)sqlite3_column_bytes(s, 9);
				if (m.cache == NULL)
					m.cache = ""; /* an empty cache is still a cache */
			}
			if (want == STORE_MSG_CACHE_TEXT &&
			    sqlite3_column_type(s, 11) == SQLITE_BLOB) {
				m.ftext_raw = (uint64_t)sqlite3_column_int64(s, 10);
				m.ftext = sqlite3_column_blob(s, 11);
				m.ftext_len = (size_t)sqlite3_column_bytes(s, 11);
			}
			int stop_here = cb(arg, &m);
			if (q != NULL)
				store_stmt_done(q);
			if (stop_here != 0) {
				stop = true;
				break;
			}
		}
		if (r == STORE_OK && !stop && rc != SQLITE_DONE) {
			*err_r = store_db_err(sn->d);
			r = STORE_ERROR;
		}
		store_stmt_done(s);
	}
	return r;
}

int store_snap_entries(struct store_snap *sn, const char *user, const char *mailbox,
		       struct store_mailbox_status *status_r, store_entry_cb *cb, void *arg,
		       char **err_r)
{
	int64_t id;
	int r = store_db_mailbox(sn->d, user, mailbox != NULL ? mailbox : "INBOX", false, NULL,
				 &id, status_r, err_r);
	if (r != 1)
		return r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	/* the primary key (mailbox_id, uid) of a WITHOUT ROWID table: one
	 * range scan of the mailbox's rows, in UID order */
	sqlite3_stmt *s = store_sql(sn->d, "SELECT uid, modseq, flags FROM mailbox_messages"
				    " WHERE mailbox_id = ?1 ORDER BY uid", err_r);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, id);
	int rc;
	uint32_t n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *flags = (const char *)sqlite3_column_text(s, 2);
		n++;
		if (cb(arg, (uint32_t)sqlite3_column_int64(s, 0),
		       (uint64_t)sqlite3_column_int64(s, 1), flags != NULL ? flags : "") != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		*err_r = store_db_err(sn->d);
	store_stmt_done(s);
	status_r->messages = n;
	return rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
}

int store_snap_blob_open(struct store_snap *sn, const char *blob, int *fd_r, char **err_r)
{
	int fd = openat(sn->st->blob_dfd[store_blob_dir(blob)], blob, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		*err_r = xasprintf("blob %s: %s", blob, strerror(e));
		errno = e; /* ENOENT: expunged meanwhile (callers tell it apart) */
		return STORE_ERROR;
	}
	*fd_r = fd;
	return STORE_OK;
}

int store_snap_vanished(struct store_snap *sn, const char *user, const char *mailbox,
			uint32_t uidvalidity, uint64_t since, const struct store_uid_range *ranges,
			size_t n, void (*cb)(void *arg, uint32_t uid), void *arg, char **err_r)
{
	int64_t id;
	int r = snap_selected(sn, user, mailbox, uidvalidity, &id, err_r);
	if (r != STORE_OK)
		return r;
	sqlite3_stmt *s = store_sql(sn->d, "SELECT uid FROM expunged WHERE mailbox_id = ?1"
				    " AND uid BETWEEN ?2 AND ?3 AND modseq > ?4 ORDER BY uid", err_r);
	if (s == NULL)
		return STORE_ERROR;
	const struct store_uid_range all = {1, UINT32_MAX};
	for (size_t i = 0; r == STORE_OK && i < (n ? n : 1); i++) {
		const struct store_uid_range *rg = n ? &ranges[i] : &all;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, rg->lo);
		sqlite3_bind_int64(s, 3, rg->hi);
		sqlite3_bind_int64(s, 4, (int64_t)since);
		int rc;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW)
			cb(arg, (uint32_t)sqlite3_column_int64(s, 0));
		if (rc != SQLITE_DONE) {
			*err_r = store_db_err(sn->d);
			r = STORE_ERROR;
		}
		store_stmt_done(s);
	}
	return r;
}
