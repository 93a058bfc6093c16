/* Quotas (RFC 9208): a row per user with its limits (0 = none) and its
 * usage, counted in the same transaction as every change to the user's
 * mailbox entries (delivery, APPEND, COPY, expunge, MOVE, DELETE), so that
 * reading it is one indexed row and never a sum over the mailboxes. A user
 * deleted takes its row with it (ON DELETE CASCADE). */
#include "store/store_int.h"

#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

int store_quota_add(struct store_db *d, int64_t user_id, int64_t bytes, int64_t msgs)
{
	sqlite3_stmt *s;
	if (bytes <= 0 && msgs <= 0)
		s = store_sql(d, "UPDATE quotas SET storage_used = max(storage_used + ?2, 0),"
			      " message_used = max(message_used + ?3, 0) WHERE user_id = ?1", NULL);
	else
		s = store_stmt(d, STMT_QUOTA_ADD);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, bytes);
	sqlite3_bind_int64(s, 3, msgs);
	if (store_step_done(d, s, NULL) < 0)
		return -1;
	return sqlite3_changes(d->db) > 0 || (bytes <= 0 && msgs <= 0) ? 1 : 0;
}

static int quota_read(struct store_db *d, const char *user, struct store_quota *q_r, char **err_r)
{
	int64_t id = store_user_id(d, user, err_r);
	if (id <= 0)
		return -1;
	sqlite3_stmt *s = store_sql(d, "SELECT storage_limit, storage_used, message_limit,"
				    " message_used FROM quotas WHERE user_id = ?1", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s), r = -1;
	if (rc == SQLITE_ROW) {
		q_r->storage_limit = (uint64_t)sqlite3_column_int64(s, 0);
		q_r->storage_used = (uint64_t)sqlite3_column_int64(s, 1);
		q_r->message_limit = (uint64_t)sqlite3_column_int64(s, 2);
		q_r->message_used = (uint64_t)sqlite3_column_int64(s, 3);
		r = 0;
	} else if (rc == SQLITE_DONE) {
		*err_r = xasprintf("no quota row for %s", user);
	} else {
		*err_r = store_db_err(d);
	}
	store_stmt_done(s);
	return r;
}

int store_quota_get(struct store *st, const char *user, struct store_quota *q_r, char **err_r)
{
	return quota_read(&st->main, user, q_r, err_r);
}

int store_snap_quota(struct store_snap *sn, const char *user, struct store_quota *q_r,
		     char **err_r)
{
	return quota_read(sn->d, user, q_r, err_r) == 0 ? STORE_OK : STORE_ERROR;
}

/* A limit below the usage is allowed (RFC 9208 4.1.4 SETQUOTA): the account
 * then takes nothing more until it is under it again. */
int store_quota_set(struct store *st, const char *user, uint64_t storage_bytes, uint64_t messages,
		    char **err_r)
{
	if (storage_bytes > INT64_MAX || messages > INT64_MAX) {
		*err_r = xasprintf("limit too large");
		return -1;
	}
	int64_t id = store_user_id(&st->main, user, err_r);
	if (id <= 0)
		return -1;
	sqlite3_stmt *s = store_sql(&st->main, "UPDATE quotas SET storage_limit = ?2,"
				    " message_limit = ?3 WHERE user_id = ?1", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (int64_t)storage_bytes);
	sqlite3_bind_int64(s, 3, (int64_t)messages);
	return store_step_done(&st->main, s, err_r);
}

bool store_quota_full(struct store *st, int64_t user_id)
{
	sqlite3_stmt *s = store_sql(&st->main, "SELECT (storage_limit > 0 AND storage_used >="
				    " storage_limit) OR (message_limit > 0 AND message_used >="
				    " message_limit) FROM quotas WHERE user_id = ?1", NULL);
	if (s == NULL)
		return false; /* the commit checks again */
	sqlite3_bind_int64(s, 1, user_id);
	bool full = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) != 0;
	store_stmt_done(s);
	return full;
}

bool store_quota_fits(struct store *st, int64_t user_id, uint64_t size)
{
	if (size > INT64_MAX)
		size = INT64_MAX;
	sqlite3_stmt *s = store_sql(&st->main, "SELECT (storage_limit > 0 AND (storage_used >="
				    " storage_limit OR storage_used + ?2 > storage_limit)) OR"
				    " (message_limit > 0 AND message_used >= message_limit)"
				    " FROM quotas WHERE user_id = ?1", NULL);
	if (s == NULL)
		return true; /* the commit checks again */
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, (int64_t)size);
	bool over = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) != 0;
	store_stmt_done(s);
	return !over;
}
