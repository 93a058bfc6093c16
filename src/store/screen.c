/* The local IP allow/block lists of the connection stage (table ip_lists,
 * schema 6): written by `postern allow|block` on the main connection, read
 * by the daemon's screen at start and after each change notice.
 *
 * The change notice is a marker file, as for mailboxes (expunge.c): the CLI
 * touches <data_dir>/ip_lists.changed after its write has committed, the
 * daemon watches the file with inotify and re-reads the lists, and looks
 * at its time once a minute in case the watch missed it. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define STORE_IP_LISTS_MARK "ip_lists.changed"

int store_ip_list_add(struct store *st, const char *network, const char *list,
		      const char *comment, char **err_r)
{
	sqlite3_stmt *s = store_sql(&st->main,
				    "INSERT INTO ip_lists(network, list, comment, created)"
				    " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(network) DO UPDATE"
				    " SET list = excluded.list, comment = excluded.comment,"
				    " created = excluded.created",
				    err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, network, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, list, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, comment ? comment : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	return store_step_done(&st->main, s, err_r);
}

int store_ip_list_del(struct store *st, const char *network, const char *list, char **err_r)
{
	sqlite3_stmt *s = store_sql(&st->main,
				    "DELETE FROM ip_lists WHERE network = ?1 AND list = ?2", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, network, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, list, -1, SQLITE_STATIC);
	if (store_step_done(&st->main, s, err_r) < 0)
		return -1;
	return sqlite3_changes(st->main.db) > 0 ? 1 : 0;
}

static int lists_read(struct store_db *d, const char *list, store_ip_entry_cb *cb, void *arg,
		      char **err_r)
{
	sqlite3_stmt *s = store_sql(d,
				    "SELECT network, list, comment, created FROM ip_lists"
				    " WHERE ?1 IS NULL OR list = ?1 ORDER BY list, network",
				    err_r);
	if (s == NULL)
		return -1;
	if (list != NULL)
		sqlite3_bind_text(s, 1, list, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 1);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *net = (const char *)sqlite3_column_text(s, 0);
		const char *l = (const char *)sqlite3_column_text(s, 1);
		const char *c = (const char *)sqlite3_column_text(s, 2);
		struct store_ip_entry e = {
		    .network = net ? net : "",
		    .list = l ? l : "",
		    .comment = c ? c : "",
		    .created = (time_t)sqlite3_column_int64(s, 3),
		};
		if (cb(arg, &e) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	int ret = rc == SQLITE_DONE ? 0 : -1;
	if (ret < 0 && err_r)
		*err_r = store_db_err(d);
	store_stmt_done(s);
	return ret;
}

int store_ip_lists(struct store *st, const char *list, store_ip_entry_cb *cb, void *arg,
		   char **err_r)
{
	return lists_read(&st->main, list, cb, arg, err_r);
}

int store_snap_ip_lists(struct store_snap *sn, const char *list, store_ip_entry_cb *cb,
			void *arg, char **err_r)
{
	return lists_read(sn->d, list, cb, arg, err_r);
}

void store_ip_lists_changed(struct store *st)
{
	if (store_mark_touch(st, STORE_IP_LISTS_MARK) < 0)
		log_warn("store: cannot touch %s/%s: %s (a running daemon sees the change "
			 "within a minute)",
			 st->dir, STORE_IP_LISTS_MARK, strerror(errno));
}

int store_ip_lists_watch(struct store *st)
{
	return store_mark_watch(st, STORE_IP_LISTS_MARK);
}

void store_ip_lists_stamp(struct store *st, struct timespec *ts_r)
{
	struct store_stamp r;
	store_mark_stamp(st, STORE_IP_LISTS_MARK, &r);
	*ts_r = r.mtime;
}
