/* Message state for IMAP: APPEND (durable through the committer's blob
 * steps, as a delivery), STORE (flags, RFC 7162 MODSEQ rules), COPY and
 * MOVE (bodies shared, RFC 6851 atomic). Each is one store_op job
 * (mailbox.c). Flags are kept as one space-separated string per entry,
 * normalised: the system flags first in a fixed order with their canonical
 * spelling, then the keywords in the order they were first set; no
 * duplicates (RFC 9051 2.3.2: flag names are case-insensitive), never
 * \Recent. */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

/* ---- flags ---- */

static const char *const system_flags[] = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen",
					   "\\Draft"};
#define N_SYSTEM 5
#define MAX_FLAG_TOKENS 256 /* keywords per message beyond which more are dropped */

struct flag_set {
	bool sys[N_SYSTEM];
	size_t n;
	char *kw[MAX_FLAG_TOKENS];
};

static bool set_has_kw(const struct flag_set *f, const char *kw, size_t len)
{
	for (size_t i = 0; i < f->n; i++)
		if (strlen(f->kw[i]) == len && strncasecmp(f->kw[i], kw, len) == 0)
			return true;
	return false;
}

/* Applies one token: on adds it, else removes it. */
static void set_token(struct flag_set *f, const char *t, size_t len, bool on)
{
	for (int i = 0; i < N_SYSTEM; i++) {
		if (strlen(system_flags[i]) == len && strncasecmp(system_flags[i], t, len) == 0) {
			f->sys[i] = on;
			return;
		}
	}
	if (t[0] == '\\')
		return; /* \Recent (RFC 9051: never stored) and unknown system flags */
	if (on) {
		if (!set_has_kw(f, t, len) && f->n < MAX_FLAG_TOKENS)
			f->kw[f->n++] = xstrndup(t, len);
		return;
	}
	for (size_t i = 0; i < f->n; i++) {
		if (strlen(f->kw[i]) == len && strncasecmp(f->kw[i], t, len) == 0) {
			free(f->kw[i]);
			memmove(&f->kw[i], &f->kw[i + 1], (f->n - i - 1) * sizeof f->kw[0]);
			f->n--;
			return;
		}
	}
}

static void set_apply(struct flag_set *f, const char *s, bool on)
{
	while (s != NULL && *s) {
		while (*s == ' ')
			s++;
		size_t len = strcspn(s, " ");
		if (len > 0)
			set_token(f, s, len, on);
		s += len;
	}
}

/* The normalised string of f into b (reset first). */
static void set_format(const struct flag_set *f, struct buf *b)
{
	buf_reset(b);
	buf_appends(b, "");
	for (int i = 0; i < N_SYSTEM; i++) {
		if (!f->sys[i])
			continue;
		if (b->len)
			buf_appendc(b, ' ');
		buf_appends(b, system_flags[i]);
	}
	for (size_t i = 0; i < f->n; i++) {
		if (b->len)
			buf_appendc(b, ' ');
		buf_appends(b, f->kw[i]);
	}
}

static char *set_string(const struct flag_set *f)
{
	struct buf b = BUF_INIT;
	set_format(f, &b);
	return b.data;
}

static void set_free(struct flag_set *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->kw[i]);
	f->n = 0;
}

static void set_copy(struct flag_set *dst, const struct flag_set *src)
{
	memcpy(dst->sys, src->sys, sizeof dst->sys);
	for (size_t i = 0; i < src->n; i++)
		dst->kw[i] = xstrdup(src->kw[i]);
	dst->n = src->n;
}

/* The normalised form of a flag list. */
static char *flags_norm(const char *s)
{
	struct flag_set f = {0};
	set_apply(&f, s, true);
	char *r = set_string(&f);
	set_free(&f);
	return r;
}

/* The same set of flags, whatever the order? */
static bool set_equal(const struct flag_set *a, const struct flag_set *b)
{
	if (memcmp(a->sys, b->sys, sizeof a->sys) != 0 || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!set_has_kw(b, a->kw[i], strlen(a->kw[i])))
			return false;
	return true;
}

/* ---- APPEND ---- */

/* Committer, before the transaction: steps 1 and 2 of a commit were done
 * for every spool with the round's deliveries (commit.c, batch_blobs; all
 * or none here), then the caches. */
static void append_prep(struct store_op *op)
{
	if (!op->job.synced) /* not reached: every queued job is synced first */
		store_spools_durable(op->st, op->sps, op->n, op->errs, op->renamed);
	for (size_t i = 0; i < op->n; i++) {
		if (op->errs[i] != 0) {
			log_err("store: append for %s: blob %s: %s", op->user,
				store_spool_blob(op->sps[i]), strerror(op->errs[i]));
			op->result = STORE_ERROR;
		}
	}
	for (size_t i = 0; op->result == STORE_OK && op->st->cache_fn != NULL && i < op->n; i++)
		if (op->caches[i].len == 0) /* not built by store_prebuild */
			store_spool_cache(op->st, op->sps[i], &op->caches[i]);
}

static int append_body(struct store_op *op, struct store_db *d)
{
	int64_t user_id, mailbox_id;
	char *err = NULL;
	int r = store_db_mailbox(d, op->user, op->name, false, &user_id, &mailbox_id, NULL, &err);
	free(err);
	if (r != 1)
		return r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	int64_t bytes = 0;
	for (size_t i = 0; i < op->n; i++)
		bytes += (int64_t)store_spool_size(op->sps[i]);
	if ((r = store_quota_add(d, user_id, bytes, (int64_t)op->n)) != 1)
		return r < 0 ? STORE_ERROR : STORE_OVERQUOTA;
	/* RFC 7162 3.1: one MODSEQ for the call; RFC 9051 2.3.1.1: UIDs in order. */
	sqlite3_stmt *s = store_sql(d, "UPDATE mailboxes SET uidnext = uidnext + ?2,"
				    " highestmodseq = highestmodseq + 1 WHERE id = ?1"
				    " RETURNING uidvalidity, uidnext - ?2, highestmodseq", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int64(s, 2, (int64_t)op->n);
	int rc = sqlite3_step(s);
	int64_t modseq = 0, first = 0;
	if (rc == SQLITE_ROW) {
		op->dst_uidvalidity = (uint32_t)sqlite3_column_int64(s, 0);
		first = sqlite3_column_int64(s, 1);
		modseq = sqlite3_column_int64(s, 2);
		rc = sqlite3_step(s);
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE || first <= 0)
		return STORE_ERROR;
	if (first + (int64_t)op->n - 1 > (int64_t)UINT32_MAX)
		return STORE_LIMIT; /* RFC 9051 2.3.1.1: UIDs are 32 bits */
	op->first_uid = (uint32_t)first;
	sqlite3_stmt *ins_msg = store_stmt(d, STMT_INS_MESSAGE);
	sqlite3_stmt *ins = store_sql(d, "INSERT INTO mailbox_messages(mailbox_id, uid, message_id,"
				      " flags, modseq, internaldate, internaldate_tz, savedate)"
				      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", NULL);
	if (ins_msg == NULL || ins == NULL)
		return STORE_ERROR;
	time_t now = time(NULL);
	for (size_t i = 0; i < op->n; i++) {
		time_t date = op->dates[i] ? op->dates[i] : now;
		sqlite3_bind_text(ins_msg, 1, store_spool_blob(op->sps[i]), -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins_msg, 2, (int64_t)store_spool_size(op->sps[i]));
		sqlite3_bind_int64(ins_msg, 3, (int64_t)date);
		sqlite3_bind_text(ins_msg, 4, "", -1, SQLITE_STATIC);
		sqlite3_bind_text(ins_msg, 7, op->user, -1, SQLITE_STATIC);
		if (op->st->cache_fn == NULL)
			sqlite3_bind_null(ins_msg, 8);
		else if (op->caches[i].len == 0)
			sqlite3_bind_zeroblob(ins_msg, 8, 0);
		else
			sqlite3_bind_blob(ins_msg, 8, op->caches[i].data, (int)op->caches[i].len,
					  SQLITE_STATIC);
		if (store_step_done(d, ins_msg, NULL) < 0)
			return STORE_ERROR;
		int64_t msg_id = sqlite3_last_insert_rowid(d->db);
		if (store_db_sort_keys(d, op->st, msg_id, op->caches[i].data, op->caches[i].len) <
		    0)
			return STORE_ERROR;
		sqlite3_bind_int64(ins, 1, mailbox_id);
		sqlite3_bind_int64(ins, 2, first + (int64_t)i);
		sqlite3_bind_int64(ins, 3, msg_id);
		sqlite3_bind_text(ins, 4, op->aflags[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 5, modseq);
		sqlite3_bind_int64(ins, 6, (int64_t)date);
		sqlite3_bind_int(ins, 7, op->tzs[i]);
		sqlite3_bind_int64(ins, 8, (int64_t)now);
		if (store_step_done(d, ins, NULL) < 0)
			return STORE_ERROR;
	}
	store_op_note(op, STORE_CHANGE_NEW, mailbox_id, NULL, 0, (uint64_t)modseq);
	return STORE_OK;
}

/* Committer, after: a blob renamed into blobs/ but not stored goes. */
static void append_after(struct store_op *op)
{
	for (size_t i = 0; i < op->n; i++) {
		if (op->result != STORE_OK && op->renamed[i]) {
			const char *name = store_spool_blob(op->sps[i]);
			if (unlinkat(op->st->blob_dfd[store_blob_dir(name)], name, 0) < 0 &&
			    errno != ENOENT)
				log_warn("store: unlink blob %s: %s", name, strerror(errno));
		}
	}
}

static void append_done(struct store_op *op)
{
	for (size_t i = 0; i < op->n; i++)
		store_spool_release(op->sps[i], op->renamed[i]);
	op->append_cb(op->arg, op->result, op->result == STORE_OK ? op->dst_uidvalidity : 0,
		      op->result == STORE_OK ? op->first_uid : 0);
}

static void append_queue(void *arg)
{
	store_op_queue(arg);
}

void store_append(struct store *st, const char *user, const char *mailbox,
		  struct store_spool **sps, size_t n, const char *const *flags,
		  const time_t *dates, const int *tzs, store_append_cb *cb, void *arg)
{
	struct store_op *op = store_op_new(st, user);
	char *copy;
	op->name = xstrdup(store_mailbox_norm(mailbox, &copy));
	free(copy);
	op->n = n;
	op->sps = xcalloc(n ? n : 1, sizeof *op->sps);
	op->aflags = xcalloc(n ? n : 1, sizeof *op->aflags);
	op->dates = xcalloc(n ? n : 1, sizeof *op->dates);
	op->tzs = xcalloc(n ? n : 1, sizeof *op->tzs);
	op->errs = xcalloc(n ? n : 1, sizeof *op->errs);
	op->renamed = xcalloc(n ? n : 1, sizeof *op->renamed);
	op->caches = xcalloc(n ? n : 1, sizeof *op->caches);
	for (size_t i = 0; i < n; i++) {
		op->sps[i] = sps[i];
		op->aflags[i] = flags_norm(flags ? flags[i] : NULL);
		op->dates[i] = dates ? dates[i] : 0;
		op->tzs[i] = tzs ? tzs[i] : 0;
	}
	store_spools_take(op->sps, n);
	op->job.sps = op->sps;
	op->job.n_sps = n;
	op->job.errs = op->errs;
	op->job.renamed = op->renamed;
	op->prep = append_prep;
	op->body = n > 0 ? append_body : NULL;
	op->after = append_after;
	op->done = append_done;
	op->append_cb = cb;
	op->arg = arg;
	/* large messages get their cache off the committer first */
	store_prebuild(st, op->sps, n, op->caches, append_queue, op);
}

/* ---- STORE ---- */

/* The mailbox a selected-state write names: STORE_OK with ids, else
 * STORE_NONEXISTENT / STORE_CHANGED / STORE_ERROR. */
static int selected(struct store_op *op, struct store_db *d, const char *name,
		    uint32_t uidvalidity, int64_t *user_id_r, int64_t *mailbox_id_r,
		    uint32_t *uidvalidity_r)
{
	struct store_mailbox_status status;
	char *err = NULL;
	int r = store_db_mailbox(d, op->user, name, false, user_id_r, mailbox_id_r, &status, &err);
	free(err);
	if (r != 1)
		return r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	if (uidvalidity != 0 && status.uidvalidity != uidvalidity)
		return STORE_CHANGED; /* RFC 9051 2.3.1.1: the UIDs are another mailbox's */
	if (uidvalidity_r != NULL)
		*uidvalidity_r = status.uidvalidity;
	return STORE_OK;
}

static uint32_t fr_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* The results' copy of the flag string s (store.h, struct
 * store_flag_results): one per distinct string, found by hash (FNV-1a,
 * open addressing, at most half full). */
static const char *fr_intern(struct store_op *op, const char *s, size_t len)
{
	struct store_flag_results *r = op->fr;
	uint32_t h = fr_hash(s, len);

	if (2 * (r->n_flags + 1) > op->n_fr_slot) {
		size_t n = op->n_fr_slot ? 2 * op->n_fr_slot : 16;
		uint32_t *slot = xcalloc(n, sizeof *slot);
		for (size_t i = 0; i < r->n_flags; i++) {
			size_t k = fr_hash(r->flags[i], strlen(r->flags[i])) & (n - 1);
			while (slot[k] != 0)
				k = (k + 1) & (n - 1);
			slot[k] = (uint32_t)i + 1;
		}
		free(op->fr_slot);
		op->fr_slot = slot;
		op->n_fr_slot = n;
		r->flags = xrealloc(r->flags, (n / 2) * sizeof *r->flags);
	}
	size_t k = h & (op->n_fr_slot - 1);
	for (; op->fr_slot[k] != 0; k = (k + 1) & (op->n_fr_slot - 1)) {
		const char *t = r->flags[op->fr_slot[k] - 1];
		if (strncmp(t, s, len) == 0 && t[len] == '\0')
			return t;
	}
	r->flags[r->n_flags] = xstrndup(s, len);
	op->fr_slot[k] = (uint32_t)++r->n_flags;
	return r->flags[r->n_flags - 1];
}

static int flags_body(struct store_op *op, struct store_db *d)
{
	int64_t user_id, mailbox_id;
	int r = selected(op, d, op->name, op->uidvalidity, &user_id, &mailbox_id, NULL);
	if (r != STORE_OK)
		return r;
	sqlite3_stmt *get = store_sql(d, "SELECT flags, modseq, message_id FROM mailbox_messages"
				      " WHERE mailbox_id = ?1 AND uid = ?2", NULL);
	sqlite3_stmt *set = store_sql(d, "UPDATE mailbox_messages SET flags = ?3, modseq = ?4"
				      " WHERE mailbox_id = ?1 AND uid = ?2", NULL);
	if (get == NULL || set == NULL)
		return STORE_ERROR;
	op->fr = xcalloc(1, sizeof *op->fr);
	op->fr->v = xcalloc(op->n ? op->n : 1, sizeof *op->fr->v);
	struct buf fb = BUF_INIT;
	uint32_t *changed = xcalloc(op->n ? op->n : 1, sizeof *changed);
	size_t n_changed = 0;
	uint64_t modseq = 0;
	r = STORE_OK;
	for (size_t i = 0; r == STORE_OK && i < op->n; i++) {
		sqlite3_bind_int64(get, 1, mailbox_id);
		sqlite3_bind_int64(get, 2, op->uids[i]);
		int rc = sqlite3_step(get);
		if (rc != SQLITE_ROW) {
			store_stmt_done(get);
			if (rc != SQLITE_DONE)
				r = STORE_ERROR;
			continue; /* expunged meanwhile: not reported */
		}
		struct flag_set cur = {0}, next = {0};
		set_apply(&cur, (const char *)sqlite3_column_text(get, 0), true);
		uint64_t cur_modseq = (uint64_t)sqlite3_column_int64(get, 1);
		int64_t message_id = sqlite3_column_int64(get, 2);
		store_stmt_done(get);
		struct store_flag_result *fr = &op->fr->v[op->fr->n++];
		fr->uid = op->uids[i];
		fr->modseq = cur_modseq;
		if (op->unchangedsince != 0 && cur_modseq > op->unchangedsince) {
			/* RFC 7162 3.1.3: changed since the client looked: refused */
			fr->modified = true;
			set_format(&cur, &fb);
			fr->flags = fr_intern(op, fb.data, fb.len);
			set_free(&cur);
			continue;
		}
		if (op->fop != '=')
			set_copy(&next, &cur);
		set_apply(&next, op->flags, op->fop != '-');
		if (set_equal(&cur, &next)) {
			set_format(&cur, &fb);
			fr->flags = fr_intern(op, fb.data, fb.len);
		} else {
			if (modseq == 0) {
				/* RFC 7162 3.1.3: one new MODSEQ for this call */
				sqlite3_stmt *b = store_sql(d, "UPDATE mailboxes SET highestmodseq ="
							    " highestmodseq + 1 WHERE id = ?1"
							    " RETURNING highestmodseq", NULL);
				if (b == NULL) {
					r = STORE_ERROR;
				} else {
					sqlite3_bind_int64(b, 1, mailbox_id);
					if (sqlite3_step(b) == SQLITE_ROW) {
						modseq = (uint64_t)sqlite3_column_int64(b, 0);
						if (sqlite3_step(b) != SQLITE_DONE)
							r = STORE_ERROR;
					} else {
						r = STORE_ERROR;
					}
					store_stmt_done(b);
				}
			}
			char *s = set_string(&next);
			if (r == STORE_OK) {
				sqlite3_bind_int64(set, 1, mailbox_id);
				sqlite3_bind_int64(set, 2, op->uids[i]);
				sqlite3_bind_text(set, 3, s, -1, SQLITE_STATIC);
				sqlite3_bind_int64(set, 4, (int64_t)modseq);
				if (sqlite3_step(set) != SQLITE_DONE)
					r = STORE_ERROR;
				store_stmt_done(set);
			}
			/* $Junk / $NotJunk set: the spam filter learns (spam.c) */
			char *was = set_string(&cur);
			int queued = r == STORE_OK ? store_spam_keywords(d, user_id, message_id,
									 was, s)
						   : 0;
			if (queued < 0)
				r = STORE_ERROR;
			else if (queued > 0)
				op->spam_queued = true;
			free(was);
			fr->flags = fr_intern(op, s, strlen(s));
			free(s);
			fr->modseq = modseq;
			fr->changed = true;
			changed[n_changed++] = fr->uid;
		}
		set_free(&cur);
		set_free(&next);
	}
	if (r == STORE_OK && n_changed > 0)
		store_op_note(op, STORE_CHANGE_FLAGS, mailbox_id, changed, n_changed, modseq);
	free(changed);
	buf_free(&fb);
	return r;
}

void store_flag_results_free(struct store_flag_results *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_flags; i++)
		free(r->flags[i]);
	free(r->flags);
	free(r->v);
	free(r);
}

static void flags_done(struct store_op *op)
{
	if (op->flags_cb == NULL || op->result != STORE_OK) {
		if (op->flags_cb != NULL)
			op->flags_cb(op->arg, op->result, NULL);
		return;
	}
	/* the results are the callback's (store.h) */
	struct store_flag_results *r = op->fr;
	op->fr = NULL;
	op->flags_cb(op->arg, op->result, r);
}

void store_flags_take(struct store *st, const char *user, const char *mailbox,
		      uint32_t uidvalidity, uint32_t *uids, size_t n, char op_, const char *flags,
		      uint64_t unchangedsince, store_flags_cb *cb, void *arg)
{
	struct store_op *op = store_op_new(st, user);
	char *copy;
	op->name = xstrdup(store_mailbox_norm(mailbox, &copy));
	free(copy);
	op->uidvalidity = uidvalidity;
	op->uids = uids;
	op->n = n;
	op->fop = op_;
	op->flags = xstrdup(flags ? flags : "");
	op->unchangedsince = unchangedsince;
	op->body = flags_body;
	op->done = flags_done;
	op->flags_cb = cb;
	op->arg = arg;
	/* A flag change is answered before the log is synced (as Dovecot's
	 * mail_fsync = optimized): a crash right after may undo it, never lose
	 * mail; the next sync (at most STORE_LAZY_SYNC_MS later) keeps it. */
	op->job.lazy = true;
	store_op_queue(op);
}

void store_flags(struct store *st, const char *user, const char *mailbox, uint32_t uidvalidity,
		 const uint32_t *uids, size_t n, char op_, const char *flags,
		 uint64_t unchangedsince, store_flags_cb *cb, void *arg)
{
	uint32_t *copy = xcalloc(n ? n : 1, sizeof *copy);

	if (n > 0)
		memcpy(copy, uids, n * sizeof *uids);
	store_flags_take(st, user, mailbox, uidvalidity, copy, n, op_, flags, unchangedsince, cb,
			 arg);
}

/* ---- COPY, MOVE ---- */

int store_copy_entries(struct store_op *op, struct store_db *d, int64_t user_id, int64_t src_id,
		       int64_t dst_id, const uint32_t *uids, size_t n, bool move)
{
	sqlite3_stmt *get = store_sql(d, "SELECT mm.message_id, mm.flags, mm.internaldate,"
				      " mm.internaldate_tz, m.size FROM mailbox_messages mm"
				      " JOIN messages m ON m.id = mm.message_id"
				      " WHERE mm.mailbox_id = ?1 AND mm.uid = ?2", NULL);
	if (get == NULL)
		return STORE_ERROR;
	struct entry {
		int64_t msg;
		char *flags;
		int64_t date;
		int tz;
	} *e = xcalloc(n ? n : 1, sizeof *e);
	op->src = xcalloc(n ? n : 1, sizeof *op->src);
	op->dst = xcalloc(n ? n : 1, sizeof *op->dst);
	size_t k = 0;
	int64_t bytes = 0;
	int r = STORE_OK;
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(get, 1, src_id);
		sqlite3_bind_int64(get, 2, uids[i]);
		int rc = sqlite3_step(get);
		if (rc == SQLITE_ROW) {
			const char *f = (const char *)sqlite3_column_text(get, 1);
			e[k] = (struct entry){sqlite3_column_int64(get, 0), xstrdup(f ? f : ""),
					      sqlite3_column_int64(get, 2),
					      sqlite3_column_int(get, 3)};
			bytes += sqlite3_column_int64(get, 4);
			op->src[k++] = uids[i];
		}
		store_stmt_done(get);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			r = STORE_ERROR;
			goto out;
		}
	}
	op->n_pairs = k;
	sqlite3_stmt *s = store_sql(d, "UPDATE mailboxes SET uidnext = uidnext + ?2,"
				    " highestmodseq = highestmodseq + (?2 > 0) WHERE id = ?1"
				    " RETURNING uidvalidity, uidnext - ?2, highestmodseq", NULL);
	if (s == NULL) {
		r = STORE_ERROR;
		goto out;
	}
	sqlite3_bind_int64(s, 1, dst_id);
	sqlite3_bind_int64(s, 2, (int64_t)k);
	int rc = sqlite3_step(s);
	int64_t first = 0, modseq = 0;
	if (rc == SQLITE_ROW) {
		op->dst_uidvalidity = (uint32_t)sqlite3_column_int64(s, 0);
		first = sqlite3_column_int64(s, 1);
		modseq = sqlite3_column_int64(s, 2);
		rc = sqlite3_step(s);
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		r = STORE_ERROR;
		goto out;
	}
	if (k == 0)
		goto out; /* nothing to copy: OK, no change */
	if (first + (int64_t)k - 1 > (int64_t)UINT32_MAX) {
		r = STORE_LIMIT;
		goto out;
	}
	/* RFC 9208 5.1: a copy adds to the account; a move within it does not. */
	if (!move && (r = store_quota_add(d, user_id, bytes, (int64_t)k)) != 1) {
		r = r < 0 ? STORE_ERROR : STORE_OVERQUOTA;
		goto out;
	}
	r = STORE_OK;
	sqlite3_stmt *ins = store_sql(d, "INSERT INTO mailbox_messages(mailbox_id, uid, message_id,"
				      " flags, modseq, internaldate, internaldate_tz, savedate)"
				      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", NULL);
	if (ins == NULL) {
		r = STORE_ERROR;
		goto out;
	}
	time_t now = time(NULL);
	for (size_t i = 0; i < k; i++) {
		op->dst[i] = (uint32_t)(first + (int64_t)i);
		sqlite3_bind_int64(ins, 1, dst_id);
		sqlite3_bind_int64(ins, 2, op->dst[i]);
		sqlite3_bind_int64(ins, 3, e[i].msg);
		sqlite3_bind_text(ins, 4, e[i].flags, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 5, modseq);
		sqlite3_bind_int64(ins, 6, e[i].date);
		sqlite3_bind_int(ins, 7, e[i].tz);
		sqlite3_bind_int64(ins, 8, (int64_t)now);
		if (store_step_done(d, ins, NULL) < 0) {
			r = STORE_ERROR;
			goto out;
		}
	}
	store_op_note(op, STORE_CHANGE_NEW, dst_id, NULL, 0, (uint64_t)modseq);
	/* into or out of Junk: the spam filter learns (spam.c) */
	for (size_t i = 0; i < k; i++) {
		int queued = store_spam_copied(d, user_id, src_id, dst_id, e[i].msg);
		if (queued < 0) {
			r = STORE_ERROR;
			goto out;
		}
		if (queued > 0)
			op->spam_queued = true;
	}
	if (move) {
		/* RFC 6851 3.3: the same transaction: both or neither. */
		uint32_t *gone = xmalloc(k * sizeof *gone);
		memcpy(gone, op->src, k * sizeof *gone);
		size_t n_gone = k;
		uint64_t src_modseq = 0;
		if (store_entries_remove(op->st, d, src_id, gone, &n_gone, false, &src_modseq,
					 &op->blobs) < 0)
			r = STORE_ERROR;
		else
			store_op_note(op, STORE_CHANGE_EXPUNGE, src_id, gone, n_gone, src_modseq);
		free(gone);
	}
out:
	for (size_t i = 0; i < k; i++)
		free(e[i].flags);
	free(e);
	return r;
}

static int copy_body(struct store_op *op, struct store_db *d)
{
	int64_t user_id, src_id, dst_id, dst_user;
	int r = selected(op, d, op->name, op->uidvalidity, &user_id, &src_id, NULL);
	if (r != STORE_OK)
		return r;
	if ((r = selected(op, d, op->to, 0, &dst_user, &dst_id, NULL)) != STORE_OK)
		return r;
	return store_copy_entries(op, d, user_id, src_id, dst_id, op->uids, op->n, op->move);
}

static void copy_done(struct store_op *op)
{
	bool ok = op->result == STORE_OK;
	if (op->copy_cb != NULL)
		op->copy_cb(op->arg, op->result, ok ? op->dst_uidvalidity : 0, ok ? op->src : NULL,
			    ok ? op->dst : NULL, ok ? op->n_pairs : 0);
}

void store_copy(struct store *st, const char *user, const char *from, uint32_t uidvalidity,
		const uint32_t *uids, size_t n, const char *to, bool move, store_copy_cb *cb,
		void *arg)
{
	struct store_op *op = store_op_new(st, user);
	char *copy;
	op->name = xstrdup(store_mailbox_norm(from, &copy));
	free(copy);
	op->to = xstrdup(store_mailbox_norm(to, &copy));
	free(copy);
	op->uidvalidity = uidvalidity;
	op->uids = xcalloc(n ? n : 1, sizeof *op->uids);
	if (n > 0)
		memcpy(op->uids, uids, n * sizeof *uids);
	op->n = n;
	op->move = move;
	op->body = copy_body;
	op->done = copy_done;
	op->copy_cb = cb;
	op->arg = arg;
	/* COPY adds references to blobs already durable: answered before the
	 * log is synced like STORE (a crash may undo it; the source is intact).
	 * MOVE may free blobs, which are unlinked only after a durable commit. */
	op->job.lazy = !move;
	store_op_queue(op);
}
