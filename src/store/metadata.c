/* The store side of IMAP METADATA (RFC 5464): entry names, the snapshot
 * reads GETMETADATA is made of, SETMETADATA as one committer job (all or
 * nothing, RFC 5464 4.3), and the administrator's server /shared entries
 * for the CLI. Table metadata (schema step 7): see store.h. */
#include "store/store_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/xmalloc.h"

/* ---- names (RFC 5464 3.2) ---- */

const char *store_metadata_name_check(char *name, bool root)
{
	size_t len = strlen(name);

	if (len == 0 || name[0] != '/')
		return "Entry name must begin with /private or /shared";
	if (len > STORE_METADATA_MAX_NAME)
		return "Entry name too long";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		/* 3.2: no "*" or "%", nothing outside ASCII, no octet 0x00 to
		 * 0x19 */
		if (c == '*' || c == '%')
			return "Entry name must not contain '*' or '%'";
		if (c >= 0x80)
			return "Entry name must be ASCII";
		if (c <= 0x19)
			return "Entry name must not contain control characters";
		if (c == '/' && i > 0 && name[i - 1] == '/')
			return "Entry name must not contain \"//\"";
		name[i] = (char)tolower(c); /* 3.2: case-insensitive */
	}
	if (name[len - 1] == '/')
		return "Entry name must not end with '/'";
	/* 3.2: the first component is "private" or "shared"; an entry has at
	 * least two components (the prefix alone names a tree to list) */
	const char *rest = NULL;
	if (strncmp(name, "/private", 8) == 0)
		rest = name + 8;
	else if (strncmp(name, "/shared", 7) == 0)
		rest = name + 7;
	if (rest == NULL || (*rest != '\0' && *rest != '/'))
		return "Entry name must begin with /private or /shared";
	if (*rest == '\0' && !root)
		return "Entry name needs a component after /private or /shared";
	return NULL;
}

/* ---- rows ---- */

/* The cached statement sql with ?1 user_id, ?2 mailbox_id and ?3 name (not
 * copied: it must outlive the statement's use) bound; NULL as store_sql. */
static sqlite3_stmt *entry_sql(struct store_db *d, const char *sql, int64_t user_id,
			       int64_t mailbox_id, const char *name, char **err_r)
{
	sqlite3_stmt *s = store_sql(d, sql, err_r);
	if (s == NULL)
		return NULL;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, mailbox_id);
	sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
	return s;
}

/* Steps s (name, then the value's length or the value) to its end, each row
 * to name_cb if set, else to value_cb, and gives s back. 0, or -1 with
 * *err_r. */
static int rows_each(struct store_db *d, sqlite3_stmt *s, store_metadata_name_cb *name_cb,
		     store_metadata_value_cb *value_cb, void *arg, char **err_r)
{
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		if (name_cb != NULL) {
			name_cb(arg, name, (uint64_t)sqlite3_column_int64(s, 1));
			continue;
		}
		const void *p = sqlite3_column_blob(s, 1);
		int n = sqlite3_column_bytes(s, 1);
		value_cb(arg, name, p != NULL ? p : "", (size_t)n);
	}
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		*err_r = store_db_err(d);
		return -1;
	}
	return 0;
}

/* The user's id and the mailbox's (0: the user's server entries) for a
 * snapshot read or a SETMETADATA job. A store_res: STORE_NONEXISTENT for
 * no such user or mailbox. */
static int scope_ids(struct store_db *d, const char *user, const char *mailbox,
		     int64_t *user_id_r, int64_t *mailbox_id_r, char **err_r)
{
	if (mailbox != NULL) {
		int r = store_db_mailbox(d, user, mailbox, false, user_id_r, mailbox_id_r, NULL,
					 err_r);
		return r == 1 ? STORE_OK : r == 0 ? STORE_NONEXISTENT : STORE_ERROR;
	}
	int64_t id = store_user_id(d, user, err_r);
	if (id <= 0) {
		bool db = id < 0 && *err_r != NULL && strncmp(*err_r, "database", 8) == 0;
		return db ? STORE_ERROR : STORE_NONEXISTENT;
	}
	*user_id_r = id;
	*mailbox_id_r = 0;
	return STORE_OK;
}

/* ---- reads ---- */

int store_snap_metadata_scope(struct store_snap *sn, const char *user, const char *mailbox,
			      int64_t *user_id_r, int64_t *mailbox_id_r, char **err_r)
{
	return scope_ids(sn->d, user, mailbox, user_id_r, mailbox_id_r, err_r);
}

int store_snap_metadata_names(struct store_snap *sn, int64_t user_id, int64_t mailbox_id,
			      store_metadata_name_cb *cb, void *arg, char **err_r)
{
	sqlite3_stmt *s = store_sql(sn->d, "SELECT name, length(value) FROM metadata"
				    " WHERE user_id = ?1 AND mailbox_id = ?2 ORDER BY name",
				    err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, mailbox_id);
	return rows_each(sn->d, s, cb, NULL, arg, err_r);
}

static int value_get(struct store_db *d, int64_t user_id, int64_t mailbox_id, const char *name,
		     struct buf *out, char **err_r)
{
	sqlite3_stmt *s = entry_sql(d, "SELECT value FROM metadata WHERE user_id = ?1"
				    " AND mailbox_id = ?2 AND name = ?3", user_id, mailbox_id, name,
				    err_r);
	if (s == NULL)
		return -1;
	int rc = sqlite3_step(s), r = 0;
	if (rc == SQLITE_ROW) {
		const void *p = sqlite3_column_blob(s, 0);
		int n = sqlite3_column_bytes(s, 0);
		if (p != NULL && n > 0)
			buf_append(out, p, (size_t)n);
		r = 1;
	} else if (rc != SQLITE_DONE) {
		*err_r = store_db_err(d);
		r = -1;
	}
	store_stmt_done(s);
	return r;
}

int store_snap_metadata_get(struct store_snap *sn, int64_t user_id, int64_t mailbox_id,
			    const char *name, struct buf *out, char **err_r)
{
	return value_get(sn->d, user_id, mailbox_id, name, out, err_r);
}

static int domain_first(struct store_db *d, const char *hostname, char **domain_r, char **err_r)
{
	/* mx.example.org, then example.org (never a bare top-level label) */
	for (const char *h = hostname; h != NULL && strchr(h, '.') != NULL;
	     h = strchr(h, '.') + 1) {
		char *low = xstrdup(h);
		size_t n = strlen(low);
		while (n > 0 && low[n - 1] == '.')
			low[--n] = '\0';
		for (char *p = low; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		int64_t id = store_domain_id(d, low);
		if (id < 0) {
			free(low);
			*err_r = store_db_err(d);
			return -1;
		}
		if (id > 0) {
			*domain_r = low;
			return 1;
		}
		free(low);
	}
	sqlite3_stmt *s = store_sql(d, "SELECT name FROM domains ORDER BY id LIMIT 1", err_r);
	if (s == NULL)
		return -1;
	int rc = sqlite3_step(s), r = 0;
	if (rc == SQLITE_ROW) {
		*domain_r = xstrdup((const char *)sqlite3_column_text(s, 0));
		r = 1;
	} else if (rc != SQLITE_DONE) {
		*err_r = store_db_err(d);
		r = -1;
	}
	store_stmt_done(s);
	return r;
}

int store_snap_metadata_domain(struct store_snap *sn, const char *hostname, char **domain_r,
			       char **err_r)
{
	return domain_first(sn->d, hostname, domain_r, err_r);
}

int store_metadata_domain(struct store *st, const char *hostname, char **domain_r,
			  char **err_r)
{
	return domain_first(&st->main, hostname, domain_r, err_r);
}

/* ---- writes ---- */

static int64_t count_rows(struct store_db *d, int64_t user_id, int64_t mailbox_id, bool all)
{
	sqlite3_stmt *s = store_sql(d, all ? "SELECT count(*) FROM metadata WHERE user_id = ?1"
					   : "SELECT count(*) FROM metadata WHERE user_id = ?1"
					     " AND mailbox_id = ?2", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	if (!all)
		sqlite3_bind_int64(s, 2, mailbox_id);
	int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	store_stmt_done(s);
	return n;
}

/* 1 the row exists, 0 not, -1 error. */
static int row_exists(struct store_db *d, int64_t user_id, int64_t mailbox_id, const char *name)
{
	sqlite3_stmt *s = entry_sql(d, "SELECT 1 FROM metadata WHERE user_id = ?1"
				    " AND mailbox_id = ?2 AND name = ?3", user_id, mailbox_id, name,
				    NULL);
	if (s == NULL)
		return -1;
	int rc = sqlite3_step(s);
	store_stmt_done(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Sets or deletes one entry inside the caller's transaction; *n_box and
 * *n_user (the rows of the mailbox / of the user; -1: not counted) follow.
 * A store_res: STORE_LIMIT for a new entry beyond a limit (0: none). */
static int entry_write(struct store_db *d, int64_t user_id, int64_t mailbox_id,
		       const struct store_metadata_set *e, unsigned max_entries,
		       unsigned max_user_entries, int64_t *n_box, int64_t *n_user)
{
	int ex = row_exists(d, user_id, mailbox_id, e->name);
	if (ex < 0)
		return STORE_ERROR;
	sqlite3_stmt *s;
	if (e->value == NULL) {
		if (ex == 0)
			return STORE_OK;
		s = entry_sql(d, "DELETE FROM metadata WHERE user_id = ?1 AND mailbox_id = ?2"
			      " AND name = ?3", user_id, mailbox_id, e->name, NULL);
		if (s == NULL)
			return STORE_ERROR;
		if (store_step_done(d, s, NULL) < 0)
			return STORE_ERROR;
		if (*n_box > 0)
			(*n_box)--;
		if (*n_user > 0)
			(*n_user)--;
		return STORE_OK;
	}
	if (ex == 0) {
		/* RFC 5464 4.1: limits on the number of entries, at least 10 */
		if (*n_box < 0 && (*n_box = count_rows(d, user_id, mailbox_id, false)) < 0)
			return STORE_ERROR;
		if (max_entries > 0 && *n_box >= max_entries)
			return STORE_LIMIT;
		if (max_user_entries > 0 && *n_user < 0 &&
		    (*n_user = count_rows(d, user_id, 0, true)) < 0)
			return STORE_ERROR;
		if (max_user_entries > 0 && *n_user >= max_user_entries)
			return STORE_LIMIT;
	}
	s = entry_sql(d, "INSERT OR REPLACE INTO metadata(user_id, mailbox_id, name, value)"
		      " VALUES(?1, ?2, ?3, ?4)", user_id, mailbox_id, e->name, NULL);
	if (s == NULL)
		return STORE_ERROR;
	/* a NULL pointer would bind NULL: "" keeps an empty value a value */
	sqlite3_bind_blob(s, 4, e->len > 0 ? e->value : "", (int)e->len, SQLITE_STATIC);
	if (store_step_done(d, s, NULL) < 0)
		return STORE_ERROR;
	if (ex == 0) {
		if (*n_box >= 0)
			(*n_box)++;
		if (*n_user >= 0)
			(*n_user)++;
	}
	return STORE_OK;
}

struct meta_job {
	struct store_job job; /* first: the committer sees only this */
	struct store *st;
	char *user, *mailbox;
	struct store_metadata_set *v;
	size_t n;
	unsigned max_entries, max_user_entries;
	int result;
	store_res_cb *cb;
	void *arg;
};

static int meta_body(struct meta_job *j, struct store_db *d)
{
	char *err = NULL;
	int64_t user_id = 0, mailbox_id = 0;
	int r = scope_ids(d, j->user, j->mailbox, &user_id, &mailbox_id, &err);
	free(err);
	int64_t n_box = -1, n_user = -1;
	for (size_t i = 0; r == STORE_OK && i < j->n; i++)
		r = entry_write(d, user_id, mailbox_id, &j->v[i], j->max_entries,
				j->max_user_entries, &n_box, &n_user);
	return r;
}

static void meta_free(struct meta_job *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free((char *)j->v[i].name);
		free((void *)j->v[i].value);
	}
	free(j->v);
	free(j->user);
	free(j->mailbox);
	free(j);
}

static void meta_finish(void *arg)
{
	struct meta_job *j = arg;
	if (j->cb != NULL)
		j->cb(j->arg, j->result);
	meta_free(j);
}

static void meta_tail(struct store *st, struct store_job *job)
{
	struct meta_job *j = (struct meta_job *)job;
	/* committed but not made durable: never a positive answer */
	if (st->round_failed && j->result == STORE_OK)
		j->result = STORE_ERROR;
	loop_post(st->loop, meta_finish, j);
}

static void meta_run(struct store *st, struct store_job *job)
{
	struct meta_job *j = (struct meta_job *)job;
	struct store_db *d = &st->cdb;
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0) {
		log_err("store: metadata: begin failed: %s", sqlite3_errmsg(d->db));
		j->result = STORE_ERROR;
	} else {
		j->result = meta_body(j, d);
		if (j->result == STORE_ERROR)
			log_err("store: metadata %s: %s", j->user, sqlite3_errmsg(d->db));
		if (j->result == STORE_OK && store_exec(d, "COMMIT", NULL) < 0) {
			log_err("store: metadata: commit failed: %s", sqlite3_errmsg(d->db));
			j->result = STORE_ERROR;
		}
		/* RFC 5464 4.3: one entry refused, none changed */
		if (j->result != STORE_OK)
			store_exec(d, "ROLLBACK", NULL);
	}
	store_job_done(st, job, meta_tail);
}

void store_metadata_set(struct store *st, const char *user, const char *mailbox,
			const struct store_metadata_set *v, size_t n, unsigned max_entries,
			unsigned max_user_entries, store_res_cb *cb, void *arg)
{
	struct meta_job *j = xcalloc(1, sizeof *j);
	j->st = st;
	j->user = xstrdup(user);
	j->mailbox = mailbox != NULL ? xstrdup(mailbox) : NULL;
	j->v = xcalloc(n ? n : 1, sizeof *j->v);
	for (size_t i = 0; i < n; i++) {
		j->v[i].name = xstrdup(v[i].name);
		if (v[i].value != NULL) {
			void *p = xmalloc(v[i].len ? v[i].len : 1);
			memcpy(p, v[i].value, v[i].len);
			j->v[i].value = p;
			j->v[i].len = v[i].len;
		}
	}
	j->n = n;
	j->max_entries = max_entries;
	j->max_user_entries = max_user_entries;
	j->cb = cb;
	j->arg = arg;
	j->job.run = meta_run;
	store_job_queue(st, &j->job);
}

/* ---- the server's /shared entries (the CLI, st->main) ---- */

int store_metadata_server_set(struct store *st, const char *name, const void *value,
			      size_t len, unsigned max_entries, char **err_r)
{
	struct store_db *d = &st->main;
	if (store_exec(d, "BEGIN IMMEDIATE", err_r) < 0)
		return -1;
	int ex = row_exists(d, 0, 0, name);
	struct store_metadata_set e = {name, value, len};
	int64_t n_box = -1, n_user = -1;
	int r = ex < 0 ? STORE_ERROR : entry_write(d, 0, 0, &e, max_entries, 0, &n_box, &n_user);
	if (r == STORE_OK && store_exec(d, "COMMIT", err_r) < 0)
		r = STORE_ERROR;
	else if (r == STORE_LIMIT)
		*err_r = xasprintf("too many server entries (imap_metadata_max_entries %u)",
				   max_entries);
	else if (r != STORE_OK)
		*err_r = store_db_err(d);
	if (r != STORE_OK) {
		store_exec(d, "ROLLBACK", NULL);
		return -1;
	}
	return value == NULL && ex == 0 ? 0 : 1;
}

int store_metadata_server_list(struct store *st, store_metadata_value_cb *cb, void *arg,
			       char **err_r)
{
	struct store_db *d = &st->main;
	sqlite3_stmt *s = store_sql(d, "SELECT name, value FROM metadata WHERE user_id = 0"
				    " AND mailbox_id = 0 ORDER BY name", err_r);
	if (s == NULL)
		return -1;
	return rows_each(d, s, NULL, cb, arg, err_r);
}
