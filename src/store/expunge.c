/* Mailbox status, expunge, and the in-process change notification.
 *
 * Expunge runs on the committer thread (the only writer of cdb, so it
 * serialises with deliveries without any lock of its own): one transaction
 * removes the mailbox entries, bumps HIGHESTMODSEQ and removes the messages
 * left without any reference (store_message_gc: an indexed one is left to
 * the full-text indexer, which unindexes it first: fts.c); their blobs are
 * unlinked only after COMMIT, so a crash in between leaves orphan blobs
 * (removed at start-up), never a row pointing at a missing blob. Completion and notification come back to the
 * loop with loop_post.
 *
 * Subscriptions are a plain list on the loop thread: a handful per mailbox at
 * most, and changes are rare next to reads. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

struct store_sub {
	struct store_sub *next;
	int64_t user_id;
	int64_t mailbox_id;
	bool inbox;
	bool all;  /* store_subscribe_user: every mailbox of user_id */
	bool dead; /* unsubscribed during a notification round; freed after it */
	char *user;
	char *mailbox;
	store_change_cb *cb;
	void *arg;
};

/* RFC 3501 5.1: INBOX is case-insensitive; other names are as stored. */
static const char *mbox_name(const char *mailbox)
{
	return mailbox == NULL || strcasecmp(mailbox, "INBOX") == 0 ? "INBOX" : mailbox;
}

int store_mailbox_status(struct store *st, const char *user, const char *mailbox,
			 struct store_mailbox_status *status_r, char **err_r)
{
	return store_db_mailbox_status(&st->main, user, mailbox, status_r, err_r);
}

/* ---- notification ---- */

static void notify(struct store *st, const struct store_change *proto, int64_t user_id,
		   int64_t mailbox_id)
{
	st->notifying++;
	for (struct store_sub *sub = st->subs; sub != NULL; sub = sub->next) {
		if (sub->dead || sub->all)
			continue;
		bool match = mailbox_id > 0 ? sub->mailbox_id == mailbox_id
					    : sub->user_id == user_id && sub->inbox;
		if (!match)
			continue;
		struct store_change ch = *proto;
		ch.user = sub->user;
		ch.mailbox = sub->mailbox;
		sub->cb(sub->arg, &ch);
	}
	/* Cancellations made by callbacks are freed once no round walks the list. */
	if (--st->notifying == 0 && st->subs_dead) {
		struct store_sub **pp = &st->subs;
		while (*pp != NULL) {
			struct store_sub *sub = *pp;
			if (sub->dead) {
				*pp = sub->next;
				free(sub->user);
				free(sub->mailbox);
				free(sub);
			} else {
				pp = &sub->next;
			}
		}
		st->subs_dead = false;
	}
}

void store_notify_mailbox(struct store *st, const struct store_change *ch, int64_t mailbox_id)
{
	if (st->subs != NULL && mailbox_id > 0)
		notify(st, ch, 0, mailbox_id);
}

void store_notify_delivery(struct store *st, int64_t user_id)
{
	struct store_change ch = {.kind = STORE_CHANGE_NEW};
	if (st->subs != NULL)
		notify(st, &ch, user_id, 0);
}

/* The per-user subscribers (store_subscribe_user) of user_id, or of the
 * user named user (case-insensitive) when user_id is 0. */
void store_notify_user(struct store *st, int64_t user_id, const char *user)
{
	bool any = false;
	for (struct store_sub *sub = st->subs; sub != NULL && !any; sub = sub->next)
		any = sub->all && !sub->dead;
	if (!any)
		return;
	st->notifying++;
	for (struct store_sub *sub = st->subs; sub != NULL; sub = sub->next) {
		if (sub->dead || !sub->all)
			continue;
		if (user_id > 0 ? sub->user_id != user_id
				: user == NULL || strcasecmp(sub->user, user) != 0)
			continue;
		struct store_change ch = {.kind = STORE_CHANGE_NEW, .user = sub->user};
		sub->cb(sub->arg, &ch);
	}
	/* the sweep of cancellations, as at a round's end */
	struct store_change none = {.kind = STORE_CHANGE_NEW};
	st->notifying--;
	notify(st, &none, -1, -1);
}

struct store_sub *store_subscribe_user(struct store *st, const char *user, store_change_cb *cb,
				       void *arg, char **err_r)
{
	struct store_sub *sub = store_subscribe(st, user, NULL, cb, arg, err_r);
	if (sub != NULL) {
		sub->all = true;
		sub->inbox = false;
		sub->mailbox_id = 0;
	}
	return sub;
}

struct store_sub *store_subscribe(struct store *st, const char *user, const char *mailbox,
				  store_change_cb *cb, void *arg, char **err_r)
{
	int64_t user_id = 0, mailbox_id = 0;
	char *err = NULL;
	if (store_db_mailbox(&st->main, user, mailbox, false, &user_id, &mailbox_id, NULL, &err) !=
	    1) {
		*err_r = err;
		return NULL;
	}
	struct store_sub *sub = xcalloc(1, sizeof *sub);
	sub->user_id = user_id;
	sub->mailbox_id = mailbox_id;
	sub->inbox = strcmp(mbox_name(mailbox), "INBOX") == 0;
	sub->user = xstrdup(user);
	sub->mailbox = xstrdup(mbox_name(mailbox));
	sub->cb = cb;
	sub->arg = arg;
	sub->next = st->subs;
	st->subs = sub;
	return sub;
}

void store_unsubscribe(struct store *st, struct store_sub **subp)
{
	struct store_sub *sub = *subp;
	if (sub == NULL)
		return;
	*subp = NULL;
	if (st->notifying > 0) {
		/* A round is walking the list: unlinking now would break it. */
		sub->dead = true;
		st->subs_dead = true;
		return;
	}
	for (struct store_sub **pp = &st->subs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == sub) {
			*pp = sub->next;
			break;
		}
	}
	free(sub->user);
	free(sub->mailbox);
	free(sub);
}

/* ---- expunge ---- */

struct expunge_job {
	struct store_job job; /* first: the committer sees only this */
	struct store *st;
	int64_t mailbox_id;
	uint32_t *uids; /* asked for; then those actually removed */
	size_t n_uids;
	uint64_t highestmodseq;
	char **blobs;
	size_t n_blobs;
	store_expunge_cb *cb;
	void *arg;
	int result;
	int64_t user_id; /* for store_notify_user */
};

static void expunge_job_free(struct expunge_job *j)
{
	for (size_t i = 0; i < j->n_blobs; i++)
		free(j->blobs[i]);
	free(j->blobs);
	free(j->uids);
	free(j);
}

static void expunge_done(void *arg)
{
	struct expunge_job *j = arg;
	struct store *st = j->st;

	if (j->cb != NULL)
		j->cb(j->arg, j->result);
	if (j->result == 0 && j->n_uids > 0 && j->mailbox_id > 0 && st->subs != NULL) {
		struct store_change ch = {
			.kind = STORE_CHANGE_EXPUNGE,
			.uids = j->uids,
			.n_uids = j->n_uids,
			.highestmodseq = j->highestmodseq,
		};
		notify(st, &ch, 0, j->mailbox_id);
		store_notify_user(st, j->user_id, NULL);
	}
	expunge_job_free(j);
}

/* Inside the transaction. 0 or -1. The entries go with their expunge log
 * rows (QRESYNC) and their quota (mailbox.c). */
static int expunge_rows(struct store *st, struct expunge_job *j)
{
	struct store_blobs blobs = {0};
	int r = store_entries_remove(st, &st->cdb, j->mailbox_id, j->uids, &j->n_uids, true,
				     &j->highestmodseq, &blobs);
	j->blobs = blobs.v;
	j->n_blobs = blobs.n;
	return r;
}

static void expunge_tail(struct store *st, struct store_job *job);

/* On the committer thread. */
static void expunge_run(struct store *st, struct store_job *job)
{
	struct expunge_job *j = (struct expunge_job *)job;

	j->result = -1;
	if (store_exec(&st->cdb, "BEGIN IMMEDIATE", NULL) == 0) {
		if (expunge_rows(st, j) == 0 && store_exec(&st->cdb, "COMMIT", NULL) == 0) {
			j->result = 0;
		} else {
			log_err("store: expunge failed: %s", sqlite3_errmsg(st->cdb.db));
			store_exec(&st->cdb, "ROLLBACK", NULL);
		}
	} else {
		log_err("store: expunge: begin failed: %s", sqlite3_errmsg(st->cdb.db));
	}
	if (j->result < 0) {
		j->n_uids = 0;
		for (size_t i = 0; i < j->n_blobs; i++)
			x_free(&j->blobs[i]);
		j->n_blobs = 0;
	}
	store_job_done(st, job, expunge_tail);
}

/* Once the commit is durable (store_job_done). */
static void expunge_tail(struct store *st, struct store_job *job)
{
	struct expunge_job *j = (struct expunge_job *)job;
	/* The log sync failed: the removal is not durable, so no positive
	 * answer and no unlink (a crash may bring the rows back, and they
	 * would point at nothing). The blobs leak rather than mail is lost. */
	if (st->round_failed && j->result == 0)
		j->result = -1;
	/* Only after COMMIT (see the top of this file). */
	for (size_t i = 0; j->result == 0 && i < j->n_blobs; i++) {
		int dir = store_blob_dir(j->blobs[i]);
		if (unlinkat(st->blob_dfd[dir], j->blobs[i], 0) < 0 && errno != ENOENT)
			log_warn("store: unlink blob %s: %s", j->blobs[i], strerror(errno));
	}
	loop_post(st->loop, expunge_done, j);
}

void store_expunge(struct store *st, const char *user, const char *mailbox, uint32_t uidvalidity,
		   const uint32_t *uids, size_t n, store_expunge_cb *cb, void *arg)
{
	x_assert(st->started);
	struct expunge_job *j = xcalloc(1, sizeof *j);
	struct store_mailbox_status status;
	char *err = NULL;
	int64_t user_id = 0;

	j->st = st;
	j->cb = cb;
	j->arg = arg;
	j->job.run = expunge_run;
	int found = store_db_mailbox(&st->main, user, mailbox, false, &user_id, &j->mailbox_id,
				     &status, &err);
	if (found == 1 && uidvalidity != 0 && status.uidvalidity != uidvalidity) {
		/* Deleted and re-created since the caller listed it (RFC 3501
		 * 2.3.1.1): its UIDs are not this mailbox's. Mailbox ids are never
		 * reused, so the id taken here stays this mailbox's until the job runs. */
		err = xasprintf("%s of %s was re-created (UIDVALIDITY %" PRIu32 ", now %" PRIu32
				"); not removed",
				mbox_name(mailbox), user, uidvalidity, status.uidvalidity);
		found = 0;
	}
	j->user_id = user_id;
	if (found != 1) {
		log_warn("store: expunge: %s", err ? err : "lookup failed");
		free(err);
		j->result = -1;
		loop_post(st->loop, expunge_done, j);
		return;
	}
	j->uids = xcalloc(n ? n : 1, sizeof *j->uids);
	if (n > 0)
		memcpy(j->uids, uids, n * sizeof *uids);
	j->n_uids = n;
	if (n == 0) {
		loop_post(st->loop, expunge_done, j);
		return;
	}
	store_job_queue(st, &j->job);
}

/* ---- mailbox changes made by another process (the admin CLI) ----
 * The in-process notices above do not reach a daemon from `postern mailbox
 * delete|rename`: that process touches a marker file after its change, the
 * daemon watches it (inotify) and checks each subscription's mailbox again:
 * one that is gone or now has another name gets STORE_CHANGE_DELETED (an
 * IMAP session says BYE, as Dovecot when a mailbox is deleted underneath). */
#define STORE_MAILBOXES_MARK "mailboxes.changed"

void store_sub_rename(struct store_sub *sub, const char *mailbox)
{
	free(sub->mailbox);
	sub->mailbox = xstrdup(mbox_name(mailbox));
}

void store_mailboxes_changed(struct store *st)
{
	store_mark_touch(st, STORE_MAILBOXES_MARK);
}

int store_mailboxes_watch(struct store *st)
{
	return store_mark_watch(st, STORE_MAILBOXES_MARK);
}

void store_mailboxes_recheck(struct store *st, int fd)
{
	char ev[4096];
	size_t n = 0, cap = 0;
	struct store_sub **gone = NULL;

	while (read(fd, ev, sizeof ev) > 0)
		;
	/* INBOX always exists (RFC 9051 6.3.6); the others by name and id */
	for (struct store_sub *sub = st->subs; sub != NULL; sub = sub->next) {
		int64_t user_id = 0, mailbox_id = 0;
		char *err = NULL;
		if (sub->dead || sub->inbox || sub->all)
			continue;
		int r = store_db_mailbox(&st->main, sub->user, sub->mailbox, false, &user_id,
					 &mailbox_id, NULL, &err);
		free(err);
		if (r < 0 || (r == 1 && mailbox_id == sub->mailbox_id))
			continue; /* an error: maybe next time */
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			gone = xrealloc(gone, cap * sizeof *gone);
		}
		gone[n++] = sub;
	}
	st->notifying++;
	for (size_t i = 0; i < n; i++) {
		struct store_change ch = {.kind = STORE_CHANGE_DELETED};
		if (gone[i]->dead)
			continue;
		ch.user = gone[i]->user;
		ch.mailbox = gone[i]->mailbox;
		gone[i]->cb(gone[i]->arg, &ch);
	}
	free(gone);
	/* per-user subscribers read their user's mailboxes again */
	for (struct store_sub *sub = st->subs; sub != NULL; sub = sub->next) {
		struct store_change ch = {.kind = STORE_CHANGE_NEW};
		if (sub->dead || !sub->all)
			continue;
		ch.user = sub->user;
		sub->cb(sub->arg, &ch);
	}
	/* the same sweep as a notification round's end */
	struct store_change none = {.kind = STORE_CHANGE_NEW};
	st->notifying--;
	notify(st, &none, -1, -1);
}
