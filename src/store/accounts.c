/* Domains, users, aliases, and recipient resolution. All run on the caller's
 * thread with the main connection; resolution uses cached statements because
 * it runs for every RCPT TO. */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define RESOLVE_DEPTH_MAX 8

/* ---- helpers ---- */

static void ascii_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + ('a' - 'A'));
}

/* Bytes that never appear in an address we store: whitespace, controls and
 * the characters that delimit addresses in headers and commands. UTF-8
 * (>= 0x80) passes for SMTPUTF8. */
static bool addr_char_ok(unsigned char c)
{
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("@<>()[]\\,;:\"", c) == NULL;
}

static bool part_ok(const char *s)
{
	for (; *s; s++)
		if (!addr_char_ok((unsigned char)*s))
			return false;
	return true;
}

int store_addr_split(const char *addr, bool allow_empty_local, char **local_r, char **domain_r,
		     char **err_r)
{
	const char *at = strrchr(addr, '@');
	if (at == NULL) {
		*err_r = xasprintf("invalid address \"%s\": no @domain", addr);
		return -1;
	}
	size_t llen = (size_t)(at - addr);
	const char *domain = at + 1;
	if ((llen == 0 && !allow_empty_local) || llen > STORE_LOCAL_MAX) {
		*err_r = xasprintf("invalid address \"%s\": bad local part length", addr);
		return -1;
	}
	if (*domain == '\0' || strlen(domain) > STORE_DOMAIN_MAX || *domain == '.' ||
	    !part_ok(domain)) {
		*err_r = xasprintf("invalid address \"%s\": bad domain", addr);
		return -1;
	}
	char *local = xstrndup(addr, llen);
	if (!part_ok(local)) {
		*err_r = xasprintf("invalid address \"%s\": bad local part", addr);
		free(local);
		return -1;
	}
	char *dom = xstrdup(domain);
	ascii_lower(local);
	ascii_lower(dom);
	*local_r = local;
	*domain_r = dom;
	return 0;
}

static char *domain_norm(const char *domain, char **err_r)
{
	if (*domain == '\0' || strlen(domain) > STORE_DOMAIN_MAX || *domain == '.' ||
	    !part_ok(domain)) {
		*err_r = xasprintf("invalid domain \"%s\"", domain);
		return NULL;
	}
	char *d = xstrdup(domain);
	ascii_lower(d);
	return d;
}

int64_t store_domain_id(struct store_db *d, const char *domain)
{
	sqlite3_stmt *s = store_stmt(d, STMT_DOMAIN_ID);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, domain, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : rc == SQLITE_DONE ? 0 : -1;
	store_stmt_done(s);
	return id;
}

/* local and domain already normalized. */
static int64_t user_id_norm(struct store_db *d, const char *local, const char *domain)
{
	sqlite3_stmt *s = store_stmt(d, STMT_USER_ID);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, local, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : rc == SQLITE_DONE ? 0 : -1;
	store_stmt_done(s);
	return id;
}

int64_t store_user_id(struct store_db *d, const char *addr, char **err_r)
{
	char *local, *domain;
	if (store_addr_split(addr, false, &local, &domain, err_r) < 0)
		return -1;
	int64_t id = user_id_norm(d, local, domain);
	if (id < 0)
		*err_r = store_db_err(d);
	else if (id == 0)
		*err_r = xasprintf("no such user %s@%s", local, domain);
	free(local);
	free(domain);
	return id;
}

static int64_t count_rows(struct store *st, const char *sql, int64_t id)
{
	sqlite3_stmt *s = store_sql(&st->main, sql, NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	store_stmt_done(s);
	return n;
}

/* ---- domains ---- */

int store_domain_add(struct store *st, const char *domain, char **err_r)
{
	char *d = domain_norm(domain, err_r);
	if (d == NULL)
		return -1;
	sqlite3_stmt *s = store_sql(&st->main, "INSERT INTO domains(name) VALUES(?1)", err_r);
	int r = -1;
	if (s) {
		sqlite3_bind_text(s, 1, d, -1, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		if (rc == SQLITE_DONE)
			r = 0;
		else if (sqlite3_extended_errcode(st->main.db) == SQLITE_CONSTRAINT_UNIQUE)
			*err_r = xasprintf("domain %s already exists", d);
		else
			*err_r = store_db_err(&st->main);
		store_stmt_done(s);
	}
	free(d);
	return r;
}

static int domain_del_locked(struct store *st, const char *d, char **err_r)
{
	int64_t id = store_domain_id(&st->main, d);
	if (id < 0) {
		*err_r = store_db_err(&st->main);
		return -1;
	}
	if (id == 0) {
		*err_r = xasprintf("no such domain %s", d);
		return -1;
	}
	int64_t n = count_rows(st, "SELECT count(*) FROM users WHERE domain_id = ?1", id);
	if (n != 0) {
		*err_r = n < 0 ? store_db_err(&st->main)
			       : xasprintf("domain %s has %lld user%s; delete them first", d,
					   (long long)n, n == 1 ? "" : "s");
		return -1;
	}
	/* Aliases go with the domain (ON DELETE CASCADE). */
	sqlite3_stmt *s = store_sql(&st->main, "DELETE FROM domains WHERE id = ?1", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	return store_step_done(&st->main, s, err_r);
}

int store_domain_del(struct store *st, const char *domain, char **err_r)
{
	char *d = domain_norm(domain, err_r);
	if (d == NULL)
		return -1;
	int r = store_exec(&st->main, "BEGIN IMMEDIATE", err_r);
	if (r == 0) {
		r = domain_del_locked(st, d, err_r);
		if (r == 0)
			r = store_exec(&st->main, "COMMIT", err_r);
		if (r < 0)
			store_exec(&st->main, "ROLLBACK", NULL);
	}
	free(d);
	return r;
}

int store_domain_list(struct store *st, store_list_cb *cb, void *arg)
{
	sqlite3_stmt *s = store_sql(&st->main,
			       "SELECT d.name, (SELECT count(*) FROM users u WHERE u.domain_id = d.id)"
			       " FROM domains d ORDER BY d.name",
			       NULL);
	if (s == NULL)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		char detail[64];
		snprintf(detail, sizeof detail, "users=%lld", (long long)sqlite3_column_int64(s, 1));
		cb(arg, (const char *)sqlite3_column_text(s, 0), detail);
	}
	store_stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

bool store_domain_is_local(struct store *st, const char *domain)
{
	char *err = NULL;
	char *d = domain_norm(domain, &err);
	free(err);
	if (d == NULL)
		return false;
	bool local = store_domain_id(&st->main, d) > 0;
	free(d);
	return local;
}

bool store_lookups_begin(struct store *st)
{
	return store_exec(&st->main, "BEGIN", NULL) == 0; /* prepared once (store_exec) */
}

void store_lookups_end(struct store *st)
{
	/* Read only: nothing to lose. But a transaction left open would hold
	 * every later lookup on an old snapshot and the WAL's checkpoints
	 * back: rolled back if the COMMIT did not end it. */
	if (store_exec(&st->main, "COMMIT", NULL) < 0 || !sqlite3_get_autocommit(st->main.db))
		(void)store_exec(&st->main, "ROLLBACK", NULL);
}

/* ---- users ---- */

static int user_add_locked(struct store *st, const char *local, const char *domain,
			   const char *hash, char **err_r)
{
	int64_t did = store_domain_id(&st->main, domain);
	if (did <= 0) {
		*err_r = did < 0 ? store_db_err(&st->main) : xasprintf("no such domain %s", domain);
		return -1;
	}
	sqlite3_stmt *s = store_sql(&st->main,
			       "INSERT INTO users(domain_id, localpart, password_hash, created)"
			       " VALUES(?1, ?2, ?3, ?4)",
			       err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, did);
	sqlite3_bind_text(s, 2, local, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
	if (sqlite3_step(s) != SQLITE_DONE) {
		if (sqlite3_extended_errcode(st->main.db) == SQLITE_CONSTRAINT_UNIQUE)
			*err_r = xasprintf("user %s@%s already exists", local, domain);
		else
			*err_r = store_db_err(&st->main);
		store_stmt_done(s);
		return -1;
	}
	store_stmt_done(s);
	int64_t uid = sqlite3_last_insert_rowid(st->main.db);
	/* RFC 3501 2.3.1.1: UIDVALIDITY must change if a mailbox name is reused
	 * with other UIDs, across delete/re-create too: a store-wide counter. */
	uint32_t uidvalidity;
	if (store_uidvalidity_next(&st->main, &uidvalidity, err_r) < 0)
		return -1;
	s = store_sql(&st->main, "INSERT INTO mailboxes(user_id, name, uidvalidity) VALUES(?1, 'INBOX', ?2)",
		 err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, uid);
	sqlite3_bind_int64(s, 2, (int64_t)uidvalidity);
	if (store_step_done(&st->main, s, err_r) < 0)
		return -1;
	/* RFC 6154: Drafts, Sent, Trash, Junk, Archive; subscriptions; quota */
	return store_user_init(&st->main, uid, err_r);
}

int store_user_add(struct store *st, const char *addr, const char *hash, char **err_r)
{
	char *local, *domain;
	if (store_addr_split(addr, false, &local, &domain, err_r) < 0)
		return -1;
	int r = store_exec(&st->main, "BEGIN IMMEDIATE", err_r);
	if (r == 0) {
		r = user_add_locked(st, local, domain, hash ? hash : "", err_r);
		if (r == 0)
			r = store_exec(&st->main, "COMMIT", err_r);
		if (r < 0)
			store_exec(&st->main, "ROLLBACK", NULL);
	}
	free(local);
	free(domain);
	return r;
}

struct blob_list {
	size_t n, cap;
	char **v;
};

static void blob_list_add(struct blob_list *bl, const char *name)
{
	if (bl->n == bl->cap) {
		bl->cap = bl->cap ? bl->cap * 2 : 16;
		bl->v = xrealloc(bl->v, bl->cap * sizeof *bl->v);
	}
	bl->v[bl->n++] = xstrdup(name);
}

static void blob_list_free(struct blob_list *bl)
{
	for (size_t i = 0; i < bl->n; i++)
		free(bl->v[i]);
	free(bl->v);
}

/* Deletes the user's rows; messages left with no mailbox entry and no queue
 * entry are deleted too and their blob names collected in *bl. */
static int user_del_locked(struct store *st, int64_t uid, struct blob_list *bl, char **err_r)
{
	static const char *const steps[] = {
		/* candidates first, while the entries still point at them */
		"CREATE TEMP TABLE IF NOT EXISTS user_del_msgs(id INTEGER PRIMARY KEY)",
		"DELETE FROM temp.user_del_msgs",
		"INSERT OR IGNORE INTO temp.user_del_msgs SELECT mm.message_id FROM"
		" mailbox_messages mm JOIN mailboxes m ON m.id = mm.mailbox_id WHERE m.user_id = ?1",
		"DELETE FROM mailbox_messages WHERE mailbox_id IN"
		" (SELECT id FROM mailboxes WHERE user_id = ?1)",
		"DELETE FROM mailboxes WHERE user_id = ?1",
		/* RFC 5464: the user's METADATA entries, server ones too */
		"DELETE FROM metadata WHERE user_id = ?1",
		"DELETE FROM users WHERE id = ?1",
		"DELETE FROM temp.user_del_msgs WHERE id IN (SELECT message_id FROM mailbox_messages)"
		" OR id IN (SELECT message_id FROM queue)",
	};
	/* the indexed ones wait for the indexer (store_message_gc) */
	static const char keep[] = "UPDATE messages SET fts = 2 WHERE fts = 1 AND id IN"
				   " (SELECT id FROM temp.user_del_msgs)";
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		sqlite3_stmt *s = store_sql(&st->main, steps[i], err_r);
		if (s == NULL)
			return -1;
		if (sqlite3_bind_parameter_count(s) > 0)
			sqlite3_bind_int64(s, 1, uid);
		if (store_step_done(&st->main, s, err_r) < 0)
			return -1;
	}
	if (st->fts_unindex) {
		sqlite3_stmt *k = store_sql(&st->main, keep, err_r);
		if (k == NULL || store_step_done(&st->main, k, err_r) < 0)
			return -1;
	}
	sqlite3_stmt *s = store_sql(&st->main,
			       "DELETE FROM messages WHERE id IN (SELECT id FROM temp.user_del_msgs)"
			       " AND fts <> 2 RETURNING blob",
			       err_r);
	if (s == NULL)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		blob_list_add(bl, (const char *)sqlite3_column_text(s, 0));
	store_stmt_done(s);
	if (rc != SQLITE_DONE) {
		*err_r = store_db_err(&st->main);
		return -1;
	}
	return 0;
}

int store_user_del(struct store *st, const char *addr, char **err_r)
{
	int64_t uid = store_user_id(&st->main, addr, err_r);
	if (uid <= 0)
		return -1;
	struct blob_list bl = {0};
	int r = store_exec(&st->main, "BEGIN IMMEDIATE", err_r);
	if (r == 0) {
		r = user_del_locked(st, uid, &bl, err_r);
		if (r == 0)
			r = store_exec(&st->main, "COMMIT", err_r);
		if (r < 0)
			store_exec(&st->main, "ROLLBACK", NULL);
	}
	/* Only after COMMIT: a crash before it keeps rows and blobs; a crash
	 * after leaves orphan blobs, which store_open removes. */
	for (size_t i = 0; r == 0 && i < bl.n; i++) {
		int dir = store_blob_dir(bl.v[i]);
		if (unlinkat(st->blob_dfd[dir], bl.v[i], 0) < 0 && errno != ENOENT)
			log_warn("store: unlink blob %s: %s", bl.v[i], strerror(errno));
	}
	blob_list_free(&bl);
	return r;
}

int store_user_passwd(struct store *st, const char *addr, const char *hash, char **err_r)
{
	int64_t uid = store_user_id(&st->main, addr, err_r);
	if (uid <= 0)
		return -1;
	sqlite3_stmt *s = store_sql(&st->main, "UPDATE users SET password_hash = ?1 WHERE id = ?2", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, uid);
	return store_step_done(&st->main, s, err_r);
}

/* Runs a listing whose ?1 is a domain filter (NULL: all); each row's first
 * column is the name, its second (when present) the detail. */
static int list_by_domain(struct store *st, const char *sql, const char *domain,
			  store_list_cb *cb, void *arg)
{
	sqlite3_stmt *s = store_sql(&st->main, sql, NULL);
	if (s == NULL)
		return -1;
	char *d = NULL;
	if (domain) {
		d = xstrdup(domain);
		ascii_lower(d);
		sqlite3_bind_text(s, 1, d, -1, SQLITE_STATIC);
	}
	int rc;
	bool detail = sqlite3_column_count(s) > 1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0),
		   detail ? (const char *)sqlite3_column_text(s, 1) : "");
	store_stmt_done(s);
	free(d);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_user_list(struct store *st, const char *domain, store_list_cb *cb, void *arg)
{
	return list_by_domain(st,
			      "SELECT u.localpart || '@' || d.name FROM users u"
			      " JOIN domains d ON d.id = u.domain_id"
			      " WHERE ?1 IS NULL OR d.name = ?1 ORDER BY d.name, u.localpart",
			      domain, cb, arg);
}

int store_user_hash(struct store *st, const char *addr, char **hash_r)
{
	char *local, *domain, *err = NULL;
	if (store_addr_split(addr, false, &local, &domain, &err) < 0) {
		free(err);
		return 0; /* not an address: no such user */
	}
	sqlite3_stmt *s = store_stmt(&st->main, STMT_USER_HASH);
	int r = -1;
	if (s) {
		sqlite3_bind_text(s, 1, domain, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, local, -1, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*hash_r = xstrdup((const char *)sqlite3_column_text(s, 0));
			r = 1;
		} else if (rc == SQLITE_DONE) {
			r = 0;
		}
		store_stmt_done(s);
	}
	free(local);
	free(domain);
	return r;
}

/* ---- aliases ---- */

/* Splits the alias and normalizes the target; checks the alias's domain. */
static int alias_prepare(struct store *st, const char *alias, const char *target,
			 int64_t *did_r, char **local_r, char **target_r, char **err_r)
{
	char *local, *domain;
	if (store_addr_split(alias, true, &local, &domain, err_r) < 0)
		return -1;
	int64_t did = store_domain_id(&st->main, domain);
	if (did <= 0) {
		*err_r = did < 0 ? store_db_err(&st->main) : xasprintf("no such domain %s", domain);
		goto fail;
	}
	*target_r = NULL;
	if (target) {
		char *tl, *td;
		if (store_addr_split(target, false, &tl, &td, err_r) < 0)
			goto fail;
		*target_r = xasprintf("%s@%s", tl, td);
		free(tl);
		free(td);
	}
	free(domain);
	*did_r = did;
	*local_r = local;
	return 0;
fail:
	free(local);
	free(domain);
	return -1;
}

int store_alias_add(struct store *st, const char *alias, const char *target, char **err_r)
{
	int64_t did;
	char *local, *t;
	if (alias_prepare(st, alias, target, &did, &local, &t, err_r) < 0)
		return -1;
	int r = -1;
	sqlite3_stmt *s =
		store_sql(&st->main, "INSERT INTO aliases(domain_id, localpart, target) VALUES(?1, ?2, ?3)", err_r);
	if (s) {
		sqlite3_bind_int64(s, 1, did);
		sqlite3_bind_text(s, 2, local, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, t, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_DONE)
			r = 0;
		else if (sqlite3_extended_errcode(st->main.db) == SQLITE_CONSTRAINT_UNIQUE)
			*err_r = xasprintf("alias %s -> %s already exists", alias, t);
		else
			*err_r = store_db_err(&st->main);
		store_stmt_done(s);
	}
	free(local);
	free(t);
	return r;
}

int store_alias_del(struct store *st, const char *alias, const char *target, char **err_r)
{
	int64_t did;
	char *local, *t;
	if (alias_prepare(st, alias, target, &did, &local, &t, err_r) < 0)
		return -1;
	int r = -1;
	sqlite3_stmt *s = store_sql(&st->main,
			       "DELETE FROM aliases WHERE domain_id = ?1 AND localpart = ?2"
			       " AND (?3 IS NULL OR target = ?3)",
			       err_r);
	if (s) {
		sqlite3_bind_int64(s, 1, did);
		sqlite3_bind_text(s, 2, local, -1, SQLITE_STATIC);
		if (t)
			sqlite3_bind_text(s, 3, t, -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			*err_r = store_db_err(&st->main);
		else if (sqlite3_changes(st->main.db) == 0)
			*err_r = t ? xasprintf("no such alias %s -> %s", alias, t)
				   : xasprintf("no such alias %s", alias);
		else
			r = 0;
		store_stmt_done(s);
	}
	free(local);
	free(t);
	return r;
}

int store_alias_list(struct store *st, const char *domain, store_list_cb *cb, void *arg)
{
	return list_by_domain(st,
			      "SELECT a.localpart || '@' || d.name, a.target FROM aliases a"
			      " JOIN domains d ON d.id = a.domain_id"
			      " WHERE ?1 IS NULL OR d.name = ?1 ORDER BY d.name, a.localpart, a.id",
			      domain, cb, arg);
}

/* ---- resolution ---- */

struct resolve_ctx {
	struct store *st;
	struct store_targets *t;
	struct blob_list seen; /* aliases already expanded: loops end, fan-in is cheap */
};

static void targets_add(struct store_targets *t, int64_t user_id, const char *addr)
{
	for (size_t i = 0; i < t->n; i++) {
		if (user_id > 0 ? t->v[i].user_id == user_id
				: t->v[i].user_id == 0 && strcasecmp(t->v[i].addr, addr) == 0)
			return;
	}
	t->v = xrealloc(t->v, (t->n + 1) * sizeof *t->v);
	t->v[t->n].user_id = user_id;
	t->v[t->n].addr = xstrdup(addr);
	t->n++;
}

static bool seen_has(struct resolve_ctx *c, const char *key)
{
	for (size_t i = 0; i < c->seen.n; i++)
		if (strcmp(c->seen.v[i], key) == 0)
			return true;
	return false;
}

/* The targets of one alias, copied out: the cached statement is reused by
 * the recursion. -1 on database error, else the count. */
static int alias_targets(struct store *st, int64_t did, const char *local, struct blob_list *out)
{
	sqlite3_stmt *s = store_stmt(&st->main, STMT_ALIAS_TARGETS);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, did);
	sqlite3_bind_text(s, 2, local, -1, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		blob_list_add(out, (const char *)sqlite3_column_text(s, 0));
	store_stmt_done(s);
	return rc == SQLITE_DONE ? (int)out->n : -1;
}

static int resolve_addr(struct resolve_ctx *c, const char *addr, int depth);

/* 1 if local@domain is an alias (expanded into c->t), 0 if not, -1 on error. */
static int expand_alias(struct resolve_ctx *c, int64_t did, const char *local,
			const char *domain, int depth)
{
	struct blob_list targets = {0};
	int n = alias_targets(c->st, did, local, &targets);
	if (n <= 0) {
		blob_list_free(&targets);
		return n;
	}
	char *key = xasprintf("%s@%s", local, domain);
	int r = 1;
	if (seen_has(c, key)) {
		/* already expanded: a loop or a second path to the same list */
	} else if (depth >= RESOLVE_DEPTH_MAX) {
		log_warn("store: alias %s: nested deeper than %d, not expanded", key,
			 RESOLVE_DEPTH_MAX);
	} else {
		blob_list_add(&c->seen, key);
		for (size_t i = 0; i < targets.n && r >= 0; i++)
			if (resolve_addr(c, targets.v[i], depth + 1) < 0)
				r = -1;
	}
	free(key);
	blob_list_free(&targets);
	return r;
}

/* Account, then alias, for one local part. */
static int resolve_local(struct resolve_ctx *c, int64_t did, const char *local,
			 const char *domain, int depth)
{
	int64_t uid = user_id_norm(&c->st->main, local, domain);
	if (uid < 0)
		return -1;
	if (uid > 0) {
		char *a = xasprintf("%s@%s", local, domain);
		targets_add(c->t, uid, a);
		free(a);
		return 1;
	}
	return expand_alias(c, did, local, domain, depth);
}

static int resolve_addr(struct resolve_ctx *c, const char *addr, int depth)
{
	char *local, *domain, *err = NULL;
	if (store_addr_split(addr, false, &local, &domain, &err) < 0) {
		free(err);
		return 0;
	}
	int r;
	int64_t did = store_domain_id(&c->st->main, domain);
	if (did < 0) {
		r = -1;
	} else if (did == 0) {
		if (depth == 0) {
			r = 0; /* not ours to resolve */
		} else {
			targets_add(c->t, 0, addr);
			r = 1;
		}
	} else {
		r = resolve_local(c, did, local, domain, depth);
		char *plus = strchr(local, '+');
		if (r == 0 && plus && plus != local) {
			*plus = '\0';
			r = resolve_local(c, did, local, domain, depth);
		}
		if (r == 0)
			r = expand_alias(c, did, "", domain, depth);
	}
	free(local);
	free(domain);
	return r;
}

void store_set_postmaster(struct store *st, const char *addr, const char *hostname)
{
	x_free(&st->postmaster);
	x_free(&st->hostname);
	if (addr != NULL && *addr != '\0')
		st->postmaster = xstrdup(addr);
	if (hostname != NULL && *hostname != '\0')
		st->hostname = xstrdup(hostname);
}

char *store_postmaster(struct store *st)
{
	if (st->postmaster != NULL)
		return xstrdup(st->postmaster);
	/* mx.example.org, then example.org; never a bare top-level label */
	for (const char *d = st->hostname; d != NULL && strchr(d, '.') != NULL;
	     d = strchr(d, '.') + 1) {
		char *err = NULL, *norm = domain_norm(d, &err);
		free(err);
		int64_t did = norm != NULL ? store_domain_id(&st->main, norm) : 0;
		free(norm);
		if (did > 0)
			return xasprintf("postmaster@%s", d);
	}
	return NULL;
}

/* 1 if addr is <Postmaster> or postmaster[+tag]@ a local domain, 0 if not,
 * -1 on error. */
static int is_postmaster(struct store *st, const char *addr)
{
	char *local, *domain, *err = NULL;

	if (strcasecmp(addr, "postmaster") == 0)
		return 1;
	if (store_addr_split(addr, false, &local, &domain, &err) < 0) {
		free(err);
		return 0;
	}
	int r = 0;
	/* postmaster+tag@ too, as plus-addressing gives every other name */
	if (strcmp(local, "postmaster") == 0 || strncmp(local, "postmaster+", 11) == 0) {
		int64_t did = store_domain_id(&st->main, domain);
		r = did < 0 ? -1 : did > 0;
	}
	free(local);
	free(domain);
	return r;
}

int store_resolve(struct store *st, const char *addr, struct store_targets *t)
{
	struct resolve_ctx c = {.st = st, .t = t};
	size_t before = t->n;
	int r = strcasecmp(addr, "postmaster") == 0 ? 0 : resolve_addr(&c, addr, 0);
	/* RFC 5321 4.5.1: every domain's postmaster reaches someone. The
	 * target is resolved as an alias's would be (a remote one is queued);
	 * it never falls back again, so postmaster@ itself cannot loop. */
	if (r == 0 && (r = is_postmaster(st, addr)) > 0) {
		char *pm = store_postmaster(st);
		r = pm != NULL ? resolve_addr(&c, pm, 1) : 0;
		free(pm);
	}
	blob_list_free(&c.seen);
	if (r < 0)
		return -1;
	/* An alias whose targets all lead nowhere is no recipient either. */
	return t->n > before ? 1 : 0;
}

void store_targets_free(struct store_targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].addr);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/* Does the alias local@domain (exactly, not the catch-all) lead to uid? */
static int alias_reaches(struct store *st, int64_t did, const char *local, const char *domain,
			 int64_t uid)
{
	struct store_targets t = {0};
	struct resolve_ctx c = {.st = st, .t = &t};
	int r = expand_alias(&c, did, local, domain, 0);
	if (r > 0) {
		r = 0;
		for (size_t i = 0; i < t.n; i++)
			if (t.v[i].user_id == uid)
				r = 1;
	}
	blob_list_free(&c.seen);
	store_targets_free(&t);
	return r;
}

int store_may_send_as(struct store *st, const char *user, const char *from)
{
	char *ul, *ud, *fl, *fd, *err = NULL;
	if (store_addr_split(user, false, &ul, &ud, &err) < 0) {
		free(err);
		return 0;
	}
	if (store_addr_split(from, false, &fl, &fd, &err) < 0) {
		free(err);
		free(ul);
		free(ud);
		return 0;
	}
	int r = 0;
	char *plus = strchr(fl, '+');
	if (plus && plus != fl)
		*plus = '\0'; /* fl is now the base; the full part is kept in from */
	bool same_domain = strcmp(ud, fd) == 0;
	if (same_domain && strcmp(ul, fl) == 0)
		r = 1; /* itself, or itself+tag (if ul had '+', from must match fully below) */
	if (r == 0) {
		int64_t uid = user_id_norm(&st->main, ul, ud);
		int64_t did = store_domain_id(&st->main, fd);
		if (uid < 0 || did < 0) {
			r = -1;
		} else if (uid > 0 && did > 0) {
			char *full = NULL, *dom = NULL;
			if (store_addr_split(from, false, &full, &dom, &err) == 0) {
				if (same_domain && strcmp(ul, full) == 0)
					r = 1; /* a user whose own local part contains '+' */
				if (r == 0)
					r = alias_reaches(st, did, full, fd, uid);
				if (r == 0 && plus)
					r = alias_reaches(st, did, fl, fd, uid);
			}
			free(full);
			free(dom);
		}
	}
	free(ul);
	free(ud);
	free(fl);
	free(fd);
	return r;
}
