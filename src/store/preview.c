/* The preview of a stored body (RFC 8970, IMAP PREVIEW): computed once by
 * the reader (src/imap/fetchcmd.c, on a worker) and kept in
 * messages.preview (schema 7; NULL: not computed yet, "" is a preview too).
 * Copies share the body, so they share the preview. The write goes through
 * the committer, as the MIME cache's (store_cache_save). */
#include "store/store_int.h"

#include <string.h>

#include "core/xmalloc.h"

int store_snap_preview(struct store_snap *sn, int64_t message_id, char **preview_r,
		       char **err_r)
{
	sqlite3_stmt *s = store_sql(sn->d, "SELECT preview FROM messages WHERE id = ?1", err_r);
	*preview_r = NULL;
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, message_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		const char *t = (const char *)sqlite3_column_text(s, 0);
		*preview_r = xstrdup(t != NULL ? t : "");
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		*err_r = store_db_err(sn->d);
		store_stmt_done(s);
		return -1;
	}
	store_stmt_done(s);
	return 0;
}

static int preview_body(struct store_op *op, struct store_db *d)
{
	sqlite3_stmt *s = store_sql(d, "UPDATE messages SET preview = ?2 WHERE id = ?1"
				    " AND preview IS NULL", NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, op->message_id);
	sqlite3_bind_text(s, 2, op->cache, (int)op->cache_len, SQLITE_STATIC);
	return store_step_done(d, s, NULL) < 0 ? STORE_ERROR : STORE_OK;
}

void store_preview_save(struct store *st, int64_t message_id, const char *text)
{
	size_t len = strlen(text);
	if (len > STORE_PREVIEW_MAX)
		return;
	struct store_op *op = store_op_new(st, "-");
	op->message_id = message_id;
	op->cache = xstrdup(text);
	op->cache_len = len;
	op->body = preview_body;
	store_op_queue(op);
}
