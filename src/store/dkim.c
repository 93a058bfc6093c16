/* DKIM signing keys (table dkim_keys, schema 5): listing, adding, retiring
 * and deleting, on st->main (the CLI; the daemon at start). Private keys
 * never leave the store except to the signer. */
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "store/store_int.h"

static const char *col_text(sqlite3_stmt *s, int i)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	return t ? t : "";
}

int store_dkim_keys(struct store *st, const char *domain, store_dkim_key_cb *cb, void *arg)
{
	static const char sql_all[] =
		"SELECT id, domain, selector, alg, private_key, public_key, created, active_from,"
		" retire_at FROM dkim_keys ORDER BY domain, active_from, id";
	static const char sql_one[] =
		"SELECT id, domain, selector, alg, private_key, public_key, created, active_from,"
		" retire_at FROM dkim_keys WHERE domain = ?1 ORDER BY domain, active_from, id";
	sqlite3_stmt *s = store_sql(&st->main, domain ? sql_one : sql_all, NULL);
	if (s == NULL)
		return -1;
	if (domain)
		sqlite3_bind_text(s, 1, domain, -1, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_dkim_key k = {
			.id = sqlite3_column_int64(s, 0),
			.domain = col_text(s, 1),
			.selector = col_text(s, 2),
			.alg = col_text(s, 3),
			.private_key = col_text(s, 4),
			.public_key = col_text(s, 5),
			.created = (time_t)sqlite3_column_int64(s, 6),
			.active_from = (time_t)sqlite3_column_int64(s, 7),
			.retire_at = (time_t)sqlite3_column_int64(s, 8),
		};
		cb(arg, &k);
	}
	store_stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int64_t store_dkim_key_add(struct store *st, const struct store_dkim_key *k, char **err_r)
{
	if (k->domain == NULL || k->selector == NULL || k->alg == NULL || k->private_key == NULL ||
	    k->public_key == NULL || k->selector[0] == '\0') {
		*err_r = xstrdup("incomplete key");
		return -1;
	}
	if (!store_domain_is_local(st, k->domain)) {
		*err_r = xasprintf("%s is not a local domain", k->domain);
		return -1;
	}
	sqlite3_stmt *s = store_sql(&st->main,
				    "INSERT INTO dkim_keys(domain, selector, alg, private_key,"
				    " public_key, created, active_from, retire_at)"
				    " VALUES(lower(?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
				    err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, k->domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, k->selector, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, k->alg, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, k->private_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, k->public_key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)k->created);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)k->active_from);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)k->retire_at);
	int64_t id = -1;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		id = sqlite3_last_insert_rowid(st->main.db);
	else if (sqlite3_extended_errcode(st->main.db) == SQLITE_CONSTRAINT_UNIQUE)
		*err_r = xasprintf("selector %s already exists for %s", k->selector, k->domain);
	else
		*err_r = store_db_err(&st->main);
	store_stmt_done(s);
	return id;
}

int store_dkim_keys_retire(struct store *st, const char *domain, time_t when,
			   const int64_t *keep, size_t n_keep, char **err_r)
{
	/* The keys that sign now or later: not yet retired (retire_at 0 or in
	 * the future). */
	sqlite3_stmt *s = store_sql(&st->main,
				    "SELECT id FROM dkim_keys WHERE domain = ?1"
				    " AND (retire_at = 0 OR retire_at > ?2)",
				    err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)time(NULL));
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(s, 0);
		bool kept = false;
		for (size_t i = 0; i < n_keep; i++)
			if (keep[i] == id)
				kept = true;
		if (kept)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			ids = xrealloc(ids, cap * sizeof(*ids));
		}
		ids[n++] = id;
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		*err_r = store_db_err(&st->main);
		free(ids);
		return -1;
	}
	sqlite3_stmt *u =
		store_sql(&st->main, "UPDATE dkim_keys SET retire_at = ?2 WHERE id = ?1", err_r);
	int changed = 0;
	for (size_t i = 0; u && i < n; i++) {
		sqlite3_bind_int64(u, 1, ids[i]);
		sqlite3_bind_int64(u, 2, (sqlite3_int64)when);
		if (store_step_done(&st->main, u, err_r) < 0) {
			free(ids);
			return -1;
		}
		changed++;
	}
	free(ids);
	return u ? changed : -1;
}

int store_dkim_key_del(struct store *st, const char *domain, const char *selector,
		       char **err_r)
{
	sqlite3_stmt *s = store_sql(&st->main,
				    "DELETE FROM dkim_keys WHERE domain = ?1 AND selector = ?2", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, selector, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = -1;
	if (rc == SQLITE_DONE)
		r = sqlite3_changes(st->main.db) > 0 ? 1 : 0;
	else
		*err_r = store_db_err(&st->main);
	store_stmt_done(s);
	return r;
}
