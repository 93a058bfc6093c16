/* The reading side: mailbox and message listings, opening a blob, and the
 * outbound queue listing. The listings whose cost grows with a mailbox take
 * the connection to run on (store_db_*): the caller's own (st->main, admin
 * CLI) or a worker's read connection inside a snapshot (async.c). */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

const char *store_mailbox_norm(const char *name, char **copy_r)
{
	*copy_r = NULL;
	if (name == NULL || strcasecmp(name, "INBOX") == 0)
		return "INBOX";
	if (strncasecmp(name, "INBOX/", 6) == 0 && strncmp(name, "INBOX/", 6) != 0) {
		*copy_r = xasprintf("INBOX/%s", name + 6);
		return *copy_r;
	}
	return name;
}

/* The one lookup of a mailbox row by user and name, for every connection:
 * the loop's (expunge, subscribe, the admin CLI), the committer's, and the
 * workers' snapshots. */
int store_db_mailbox(struct store_db *d, const char *user, const char *mailbox, bool count,
		     int64_t *user_id_r, int64_t *mailbox_id_r,
		     struct store_mailbox_status *status_r, char **err_r)
{
	int64_t uid = store_user_id(d, user, err_r);
	if (uid <= 0)
		return uid < 0 && *err_r != NULL && strncmp(*err_r, "database", 8) == 0 ? -1 : 0;
	sqlite3_stmt *s = store_sql(d,
				    count ? "SELECT b.id, b.uidvalidity, b.uidnext, b.highestmodseq,"
					    " (SELECT count(*) FROM mailbox_messages mm"
					    " WHERE mm.mailbox_id = b.id)"
					    " FROM mailboxes b WHERE b.user_id = ?1 AND b.name = ?2"
					  : "SELECT b.id, b.uidvalidity, b.uidnext, b.highestmodseq, 0"
					    " FROM mailboxes b WHERE b.user_id = ?1 AND b.name = ?2",
				    err_r);
	if (s == NULL)
		return -1;
	char *copy;
	const char *name = store_mailbox_norm(mailbox, &copy);
	sqlite3_bind_int64(s, 1, uid);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s), r;
	if (rc == SQLITE_ROW) {
		if (user_id_r != NULL)
			*user_id_r = uid;
		if (mailbox_id_r != NULL)
			*mailbox_id_r = sqlite3_column_int64(s, 0);
		if (status_r != NULL) {
			status_r->uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
			status_r->uidnext = (uint32_t)sqlite3_column_int64(s, 2);
			status_r->highestmodseq = (uint64_t)sqlite3_column_int64(s, 3);
			status_r->messages = (uint32_t)sqlite3_column_int64(s, 4);
		}
		r = 1;
	} else if (rc == SQLITE_DONE) {
		*err_r = xasprintf("no such mailbox %s for %s", name, user);
		r = 0;
	} else {
		*err_r = store_db_err(d);
		r = -1;
	}
	store_stmt_done(s);
	free(copy);
	return r;
}

/* The mailbox's id, or 0 with *err_r. */
static int64_t mailbox_id_v(struct store_db *d, const char *user, const char *mailbox,
			    uint32_t *uidvalidity_r, char **err_r)
{
	struct store_mailbox_status status;
	int64_t id = 0;
	if (store_db_mailbox(d, user, mailbox, false, NULL, &id, &status, err_r) != 1)
		return 0;
	*uidvalidity_r = status.uidvalidity;
	return id;
}

static int64_t mailbox_id(struct store_db *d, const char *user, const char *mailbox, char **err_r)
{
	uint32_t uidvalidity;
	return mailbox_id_v(d, user, mailbox, &uidvalidity, err_r);
}

static const char *mailbox_name(const char *mailbox)
{
	return mailbox == NULL || strcasecmp(mailbox, "INBOX") == 0 ? "INBOX" : mailbox;
}

int store_db_mailbox_status(struct store_db *d, const char *user, const char *mailbox,
			    struct store_mailbox_status *status_r, char **err_r)
{
	return store_db_mailbox(d, user, mailbox, true, NULL, NULL, status_r, err_r) == 1 ? 0 : -1;
}

int store_mailbox_list(struct store *st, const char *user, store_list_cb *cb, void *arg)
{
	char *err = NULL;
	int64_t uid = store_user_id(&st->main, user, &err);
	if (uid <= 0) {
		free(err);
		return -1;
	}
	sqlite3_stmt *s = store_sql(&st->main,
			       "SELECT b.name, b.uidvalidity, b.uidnext, b.highestmodseq,"
			       " (SELECT count(*) FROM mailbox_messages mm WHERE mm.mailbox_id = b.id)"
			       " FROM mailboxes b WHERE b.user_id = ?1"
			       " ORDER BY b.name <> 'INBOX', b.name",
			       NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, uid);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		char detail[160];
		snprintf(detail, sizeof detail,
			 "uidvalidity=%lld uidnext=%lld highestmodseq=%lld messages=%lld",
			 (long long)sqlite3_column_int64(s, 1), (long long)sqlite3_column_int64(s, 2),
			 (long long)sqlite3_column_int64(s, 3), (long long)sqlite3_column_int64(s, 4));
		cb(arg, (const char *)sqlite3_column_text(s, 0), detail);
	}
	store_stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_mail_list(struct store *st, const char *user, const char *mailbox, store_mail_cb *cb,
		    void *arg, char **err_r)
{
	return store_db_mail_list(&st->main, user, mailbox, cb, arg, err_r);
}

int store_db_mail_list(struct store_db *d, const char *user, const char *mailbox,
		       store_mail_cb *cb, void *arg, char **err_r)
{
	int64_t mbid = mailbox_id(d, user, mailbox, err_r);
	if (mbid == 0)
		return -1;
	sqlite3_stmt *s = store_sql(d,
			       "SELECT mm.uid, m.size, mm.internaldate, mm.modseq, mm.flags"
			       " FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id"
			       " WHERE mm.mailbox_id = ?1 ORDER BY mm.uid",
			       err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mbid);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_mail_info m = {
			.uid = (uint32_t)sqlite3_column_int64(s, 0),
			.size = (uint64_t)sqlite3_column_int64(s, 1),
			.internaldate = (time_t)sqlite3_column_int64(s, 2),
			.modseq = (uint64_t)sqlite3_column_int64(s, 3),
			.flags = (const char *)sqlite3_column_text(s, 4),
		};
		if (m.flags == NULL)
			m.flags = "";
		cb(arg, &m);
	}
	if (rc != SQLITE_DONE)
		*err_r = store_db_err(d);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_mail_open(struct store *st, const char *user, const char *mailbox, uint32_t uidvalidity,
		    uint32_t uid, int *fd_r, char **err_r)
{
	uint32_t now_uidvalidity = 0;
	int64_t mbid = mailbox_id_v(&st->main, user, mailbox, &now_uidvalidity, err_r);
	if (mbid == 0)
		return -1;
	if (uidvalidity != 0 && uidvalidity != now_uidvalidity) {
		/* deleted and re-created since: uid names another message */
		*err_r = xasprintf("%s of %s was re-created (UIDVALIDITY %u, now %u)",
				   mailbox_name(mailbox), user, uidvalidity, now_uidvalidity);
		return -1;
	}
	sqlite3_stmt *s = store_sql(&st->main,
			       "SELECT m.blob FROM mailbox_messages mm JOIN messages m"
			       " ON m.id = mm.message_id WHERE mm.mailbox_id = ?1 AND mm.uid = ?2",
			       err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mbid);
	sqlite3_bind_int64(s, 2, uid);
	int rc = sqlite3_step(s);
	int r = -1;
	if (rc == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		char path[64];
		store_blob_path(name, path, sizeof path);
		int fd = openat(st->blob_dfd[store_blob_dir(name)], name,
				O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			*fd_r = fd;
			r = 0;
		} else {
			*err_r = xasprintf("blob %s: %s", path, strerror(errno));
		}
	} else if (rc == SQLITE_DONE) {
		*err_r = xasprintf("no message with UID %u in %s of %s", uid, mailbox_name(mailbox),
				   user);
	} else {
		*err_r = store_db_err(&st->main);
	}
	store_stmt_done(s);
	return r;
}

int store_queue_list(struct store *st, store_list_cb *cb, void *arg)
{
	sqlite3_stmt *s = store_sql(&st->main,
			       "SELECT q.id, m.mail_from, q.rcpt, q.attempts, q.next_try"
			       " FROM queue q JOIN messages m ON m.id = q.message_id"
			       " ORDER BY q.next_try, q.id",
			       NULL);
	if (s == NULL)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *from = (const char *)sqlite3_column_text(s, 1);
		char *name = xasprintf("%lld %s", (long long)sqlite3_column_int64(s, 0),
				       from && *from ? from : "<>");
		time_t next = (time_t)sqlite3_column_int64(s, 4);
		struct tm tm;
		char when[32];
		gmtime_r(&next, &tm);
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
		char *detail = xasprintf("%s %lld %s", (const char *)sqlite3_column_text(s, 2),
					 (long long)sqlite3_column_int64(s, 3), when);
		cb(arg, name, detail);
		free(name);
		free(detail);
	}
	store_stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}
