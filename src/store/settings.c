/* Small named values the daemon keeps (table settings, schema 5): the
 * generated SRS secret. Caller's thread, the main connection (startup and
 * the CLI), as accounts.c. */
#include "store/store_int.h"

#include <string.h>

#include "core/xmalloc.h"

int store_setting_get(struct store *st, const char *name, char **value_r)
{
	*value_r = NULL;
	sqlite3_stmt *s = store_sql(&st->main, "SELECT value FROM settings WHERE name = ?1", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = -1;
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		*value_r = xstrdup(v ? (const char *)v : "");
		r = 1;
	} else if (rc == SQLITE_DONE) {
		r = 0;
	}
	store_stmt_done(s);
	return r;
}

int store_setting_set(struct store *st, const char *name, const char *value, char **err_r)
{
	sqlite3_stmt *s = store_sql(&st->main,
				    "INSERT INTO settings(name, value) VALUES(?1, ?2)"
				    " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
				    err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
	return store_step_done(&st->main, s, err_r);
}
