/* Kept SORT orders on disk (schema 13, table sort_orders): the IMAP server's
 * orders (imap/sortorder.c) of big mailboxes, so that the first SORT of a new
 * process (a restart) or of another one sharing the database reads one row of
 * 4 octets per message instead of every message's keys. Per mailbox and
 * criteria (opaque octets to the store): the highest UID of the view it was
 * made for and the UIDs in order, little-endian. At most
 * STORE_SORT_ORDERS_MAX rows per mailbox (the most recently written stay): a
 * client naming ever new criteria lists cannot grow the database. The rows go
 * with the mailbox (ON DELETE CASCADE); an order is only replaced by one
 * made for a higher UID. */
#include "store/store_int.h"

#include <inttypes.h>
#include <string.h>

#include "core/endian.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define STORE_SORT_ORDERS_MAX 8

int store_snap_sort_order(struct store_snap *sn, const char *user, const char *mailbox,
			  uint32_t uidvalidity, const void *crit, size_t crit_len,
			  uint32_t *max_uid_r, uint32_t **uids_r, size_t *n_r, char **err_r)
{
	struct store_mailbox_status status;
	int64_t mailbox_id;
	int r = store_db_mailbox(sn->d, user, mailbox, false, NULL, &mailbox_id, &status, err_r);

	*uids_r = NULL;
	*n_r = 0;
	if (r != 1)
		return r < 0 ? -1 : 1;
	free(*err_r);
	*err_r = NULL;
	if (uidvalidity != 0 && status.uidvalidity != uidvalidity)
		return 1;
	sqlite3_stmt *s = store_sql(sn->d,
				    "SELECT max_uid, uids FROM sort_orders"
				    " WHERE mailbox_id = ?1 AND crit = ?2",
				    err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_blob(s, 2, crit, (int)crit_len, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	r = 1;
	if (rc == SQLITE_ROW) {
		const unsigned char *p = sqlite3_column_blob(s, 1);
		size_t len = (size_t)sqlite3_column_bytes(s, 1);
		int64_t max = sqlite3_column_int64(s, 0);
		if (len % 4 != 0 || max <= 0 || max > UINT32_MAX || (len > 0 && p == NULL)) {
			log_warn("store: a damaged sort order of mailbox %" PRId64
				 " is left unused",
				 mailbox_id);
		} else {
			size_t n = len / 4;
			uint32_t *v = xmalloc((n ? n : 1) * sizeof *v);
			for (size_t i = 0; i < n; i++)
				v[i] = le32_get(p + 4 * i);
			*uids_r = v;
			*n_r = n;
			*max_uid_r = (uint32_t)max;
			r = 0;
		}
	} else if (rc != SQLITE_DONE) {
		*err_r = store_db_err(sn->d);
		r = -1;
	}
	store_stmt_done(s);
	return r;
}

static int order_body(struct store_op *op, struct store_db *d)
{
	int64_t mailbox_id;
	struct store_mailbox_status status;
	char *err = NULL;
	int r = store_db_mailbox(d, op->user, op->name, false, NULL, &mailbox_id, &status, &err);

	free(err);
	if (r != 1)
		return r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	if (status.uidvalidity != op->uidvalidity)
		return STORE_CHANGED;
	/* the UIDs little-endian, in place (op->uids is ours) */
	for (size_t i = 0; i < op->n; i++)
		le32_put(&op->uids[i], op->uids[i]);
	sqlite3_stmt *s = store_sql(
	    d,
	    "INSERT INTO sort_orders(mailbox_id, crit, max_uid, uids, written)"
	    " VALUES(?1, ?2, ?3, ?4, (SELECT coalesce(max(written), 0) + 1 FROM sort_orders"
	    " WHERE mailbox_id = ?1))"
	    " ON CONFLICT(mailbox_id, crit) DO UPDATE SET max_uid = excluded.max_uid,"
	    " uids = excluded.uids, written = excluded.written"
	    " WHERE excluded.max_uid >= sort_orders.max_uid",
	    NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_blob(s, 2, op->cache, (int)op->cache_len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, op->first_uid);
	sqlite3_bind_blob(s, 4, op->uids, (int)(op->n * 4), SQLITE_STATIC);
	if (store_step_done(d, s, NULL) < 0)
		return STORE_ERROR;
	s = store_sql(d,
		      "DELETE FROM sort_orders WHERE mailbox_id = ?1 AND written <"
		      " (SELECT written FROM sort_orders WHERE mailbox_id = ?1"
		      " ORDER BY written DESC LIMIT 1 OFFSET ?2)",
		      NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int(s, 2, STORE_SORT_ORDERS_MAX - 1);
	return store_step_done(d, s, NULL) < 0 ? STORE_ERROR : STORE_OK;
}

void store_sort_order_save(struct store *st, const char *user, const char *mailbox,
			   uint32_t uidvalidity, const void *crit, size_t crit_len,
			   uint32_t max_uid, uint32_t *uids, size_t n)
{
	if (n == 0 || n > (size_t)INT32_MAX / 4 || crit_len == 0) {
		free(uids);
		return;
	}
	struct store_op *op = store_op_new(st, user);
	op->name = xstrdup(mailbox);
	op->uidvalidity = uidvalidity;
	op->cache = xmalloc(crit_len);
	memcpy(op->cache, crit, crit_len);
	op->cache_len = crit_len;
	op->first_uid = max_uid; /* the order's highest UID */
	op->uids = uids;
	op->n = n;
	op->body = order_body;
	store_op_queue(op);
}
