/* Spam thresholds per domain and user (table spam_thresholds, schema 6):
 * `postern spam threshold` writes them, the daemon reads a recipient's at
 * the end of data: in the statistical filter's worker job when it runs
 * (store_snap_spam_threshold_user, a reader's snapshot), else on the loop
 * through the main connection; short indexed reads (as settings.c). */
#include "store/store_int.h"

#include <math.h>
#include <string.h>

#include "core/xmalloc.h"

static double col_score(sqlite3_stmt *s, int i)
{
	return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

static void bind_score(sqlite3_stmt *s, int i, double v)
{
	if (isnan(v))
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_double(s, i, v);
}

int store_spam_threshold_get(struct store *st, const char *name, double *junk_r,
			     double *reject_r)
{
	*junk_r = *reject_r = NAN;
	sqlite3_stmt *s = store_sql(&st->main,
				    "SELECT junk_score, reject_score FROM spam_thresholds"
				    " WHERE name = ?1",
				    NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = -1;
	if (rc == SQLITE_ROW) {
		*junk_r = col_score(s, 0);
		*reject_r = col_score(s, 1);
		r = 1;
	} else if (rc == SQLITE_DONE) {
		r = 0;
	}
	store_stmt_done(s);
	return r;
}

int store_spam_threshold_set(struct store *st, const char *name, double junk, double reject,
			     char **err_r)
{
	bool del = isnan(junk) && isnan(reject);
	sqlite3_stmt *s = store_sql(&st->main,
				    del ? "DELETE FROM spam_thresholds WHERE name = ?1"
					: "INSERT INTO spam_thresholds(name, junk_score, reject_score)"
					  " VALUES(?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET"
					  " junk_score = excluded.junk_score,"
					  " reject_score = excluded.reject_score",
				    err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (!del) {
		bind_score(s, 2, junk);
		bind_score(s, 3, reject);
	}
	if (store_step_done(&st->main, s, err_r) < 0)
		return -1;
	store_spam_mark_changed(st); /* a running daemon's cache knows the table empty */
	return 0;
}

int store_spam_threshold_list(struct store *st, store_threshold_cb *cb, void *arg,
			      char **err_r)
{
	sqlite3_stmt *s = store_sql(&st->main,
				    "SELECT name, junk_score, reject_score FROM spam_thresholds"
				    " ORDER BY name",
				    err_r);
	if (s == NULL)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0), col_score(s, 1), col_score(s, 2));
	store_stmt_done(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (err_r)
		*err_r = store_db_err(&st->main);
	return -1;
}

static int threshold_read(struct store_db *d, int64_t user_id, double *junk_r, double *reject_r)
{
	/* [0] the domain's row, [1] the account's (is_user 1), which wins score
	 * by score; no ORDER BY: a sorter per message cost more than the rows */
	double junk[2] = {NAN, NAN}, reject[2] = {NAN, NAN};
	sqlite3_stmt *s = store_sql(d,
				    "SELECT t.name <> d.name, t.junk_score, t.reject_score"
				    " FROM users u JOIN domains d ON d.id = u.domain_id"
				    " JOIN spam_thresholds t ON t.name = d.name"
				    "  OR t.name = u.localpart || '@' || d.name"
				    " WHERE u.id = ?1",
				    NULL);
	*junk_r = *reject_r = NAN;
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int k = sqlite3_column_int(s, 0) != 0;
		junk[k] = col_score(s, 1);
		reject[k] = col_score(s, 2);
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE)
		return -1;
	*junk_r = isnan(junk[1]) ? junk[0] : junk[1];
	*reject_r = isnan(reject[1]) ? reject[0] : reject[1];
	return 0;
}

int store_spam_threshold_user(struct store *st, int64_t user_id, double *junk_r,
			      double *reject_r)
{
	return threshold_read(&st->main, user_id, junk_r, reject_r);
}

int store_snap_spam_threshold_user(struct store_snap *sn, int64_t user_id, double *junk_r,
				   double *reject_r)
{
	int none = store_snap_thresholds_none(sn);
	if (none < 0)
		return -1;
	if (none) {
		*junk_r = *reject_r = NAN; /* the configured defaults */
		return 0;
	}
	return threshold_read(sn->d, user_id, junk_r, reject_r);
}
