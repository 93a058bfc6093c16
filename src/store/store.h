/* The store: accounts, domains, aliases, mailboxes, messages, the outbound
 * queue, and blobs. Nothing above this interface writes SQL or touches blob
 * paths. Backend now: SQLite (WAL, synchronous=FULL) + immutable blob files
 * under <data_dir>/blobs; scale-out (PostgreSQL) later behind the same API.
 *
 * Threads: the store has one connection for the caller's thread ("main": the
 * loop thread in the daemon, the only thread in admin commands), one for the
 * committer thread, and read connections for worker threads.
 *  - Functions without _async or a callback run on the caller's thread and
 *    must stay short there: indexed statements whose cost does not grow with
 *    a mailbox (an account, an alias, one message row).
 *  - store_commit and store_expunge hand the durable part to the committer
 *    thread (group commit); their callbacks run on the loop thread.
 *  - Reads that grow with a mailbox (a maildrop, a listing, later FETCH and
 *    SEARCH) run on a worker of a core pool through store_read() /
 *    store_mail_list_async(): the worker takes a read connection of its own
 *    (opened on first use, kept for reuse; WAL lets readers run beside the
 *    committer), runs the read in one transaction (one consistent snapshot),
 *    and the completion runs on the loop thread (core/pool.h).
 *  - Spool writes of a session's message go to a worker once the spool's
 *    buffer fills (store_spool_async); smaller messages are written by the
 *    committer at commit.
 * Calls that start asynchronous work (store_read, store_mail_list_async,
 * store_spool_*, store_commit, store_expunge) are made from the loop thread.
 *
 * Addresses: "local@domain". Domains are stored and compared lowercase; local
 * parts are compared ASCII-case-insensitively (as Postfix and Dovecot do). */
#ifndef POSTERN_STORE_STORE_H
#define POSTERN_STORE_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/loop.h"
#include "core/pool.h"
#include "core/buf.h"

struct store;

/* Opens (creating if needed) the store in data_dir: database schema, blobs/
 * and spool/ directories (mode 0700). NULL with *err_r on error. Admin
 * commands may open a store while the daemon runs (SQLite WAL). */
struct store *store_open(const char *data_dir, char **err_r);
/* Stops the committer (after finishing queued commits) and closes. */
void store_close(struct store **stp);
/* For the daemon only: takes the data directory's lock (-1 if another daemon
 * holds it), removes the leftovers of a crash (every file in spool/, blob
 * files no message row points to), then starts the committer thread; commit
 * completions are posted to l. */
int store_start(struct store *st, struct loop *l, unsigned commit_delay_us);
/* For admin commands beside a running daemon: starts a committer of their
 * own (completions posted to l), without the lock and without removing
 * anything, so that the IMAP-section writes (which run on a committer) work
 * there too. SQLite serialises its writes with the daemon's. */
int store_start_admin(struct store *st, struct loop *l);
/* Blocks until the committer has finished every commit and job handed to it
 * so far (their completions are then posted to the loop). For shutdown:
 * store_close would wait for them all the same. */
void store_wait_idle(struct store *st);
/* Spool writes and store_spool_filter steps on workers whose completion has
 * not run yet (loop thread): the shutdown's drain waits for them, as a
 * discarded spool is freed by that completion (a client gone in the middle
 * of a literal). */
int store_spool_jobs(const struct store *st);

/* Commits accepted (each store_commit call that completed) and batches
 * (committer rounds, i.e. transactions) so far: commits/batches is the
 * group-commit factor. */
void store_stats(struct store *st, uint64_t *commits_r, uint64_t *batches_r);
/* Helper threads that fdatasync blobs of one batch in parallel (default 4;
 * 0 = the committer syncs them one by one). Call before store_start. */
void store_set_sync_threads(struct store *st, unsigned n);

/* ---- accounts (0 ok, -1 error with *err_r a heap string saying why) ---- */
typedef void store_list_cb(void *arg, const char *name, const char *detail);

int store_domain_add(struct store *st, const char *domain, char **err_r);
/* Refuses while the domain has users; removes its aliases. */
int store_domain_del(struct store *st, const char *domain, char **err_r);
int store_domain_list(struct store *st, store_list_cb *cb, void *arg);
bool store_domain_is_local(struct store *st, const char *domain);
/* One read transaction on the loop's connection around a command's several
 * lookups (RCPT: the domain, the address and its aliases, the quota): one
 * WAL read lock and one check of SQLite's page cache, not one per
 * statement, and one snapshot for them all. Nothing in between may write on
 * that connection. false: not begun (each lookup is then its own, as
 * without it); store_lookups_end only after a true. */
bool store_lookups_begin(struct store *st);
void store_lookups_end(struct store *st);

/* Creates the user (its domain must exist) with INBOX and the special-use
 * mailboxes of STORE_SPECIAL_USE_DEFAULTS, all subscribed, and a quota row
 * without limits. hash: see auth/password.h. */
int store_user_add(struct store *st, const char *addr, const char *hash, char **err_r);
/* Removes the user, its mailboxes and its mailbox entries (blobs with no other
 * reference are removed too). */
int store_user_del(struct store *st, const char *addr, char **err_r);
int store_user_passwd(struct store *st, const char *addr, const char *hash, char **err_r);
/* domain NULL = all; detail is empty. */
int store_user_list(struct store *st, const char *domain, store_list_cb *cb, void *arg);
/* 1 and *hash_r (heap) if the user exists, 0 if not, -1 on error. */
int store_user_hash(struct store *st, const char *addr, char **hash_r);

/* alias "x@domain" or "@domain" (catch-all) -> target address (local or remote).
 * Adding the same alias with another target adds a target (distribution list). */
int store_alias_add(struct store *st, const char *alias, const char *target, char **err_r);
/* target NULL removes every target of alias. */
int store_alias_del(struct store *st, const char *alias, const char *target, char **err_r);
/* name = alias, detail = target; domain NULL = all. */
int store_alias_list(struct store *st, const char *domain, store_list_cb *cb, void *arg);

/* ---- recipients ---- */
struct store_target {
	int64_t user_id; /* > 0: local account; 0: remote address */
	char *addr;      /* the account's address, or the remote address */
};
struct store_targets {
	size_t n;
	struct store_target *v;
};
/* Resolves a recipient in a local domain: exact account, then alias, then the
 * same without "+tag" (plus-addressing), then the domain's catch-all. Aliases
 * expand recursively (depth limit 8); local accounts appear once.
 * postmaster@ a local domain that none of these claims, and "postmaster"
 * alone (RFC 5321 4.5.1 <Postmaster>, any case), resolve to the postmaster
 * target (store_set_postmaster).
 * Returns 1 with targets appended to *t, 0 if no such recipient, -1 on error. */
int store_resolve(struct store *st, const char *addr, struct store_targets *t);
/* The postmaster target: addr (an address, local or remote), or, when addr
 * is NULL or empty, postmaster@ the first local domain among hostname and its
 * parent domains. Both are copied. Unset: no fallback. */
void store_set_postmaster(struct store *st, const char *addr, const char *hostname);
/* The postmaster target's address now (xmalloc), or NULL when there is none
 * (no address set and no local domain among the hostname's). It may itself
 * lead nowhere: store_resolve(st, "postmaster", ...) tells. */
char *store_postmaster(struct store *st);
void store_targets_free(struct store_targets *t);
/* 1 if the authenticated user may use from as envelope/header sender: its own
 * address, its address with +tag, or an alias one of whose targets is the user. */
int store_may_send_as(struct store *st, const char *user, const char *from);

/* ---- delivery ---- */
struct store_spool;
/* A new temporary blob file in spool/. NULL with *err_r on error. */
struct store_spool *store_spool_new(struct store *st, char **err_r);
/* 0, or -1 with errno (ENOSPC, EIO...). Buffered: the write may hit the disk later;
 * errors then surface at a later store_spool_write or at commit (-1 result).
 * Without store_spool_async, a full buffer (64 KiB) is written on the calling
 * thread; with it, on a worker, never on the caller's thread. */
int store_spool_write(struct store_spool *sp, const void *p, size_t n);
/* Called on the loop thread when a worker's write of the spool finished. */
typedef void store_spool_cb(void *arg);
/* From now on, a full buffer is handed to a worker of p (one write in flight
 * at a time, in order) while the caller fills a second buffer; ready(arg)
 * runs on the loop thread after each such write (ready may be NULL). The
 * callback is dropped by store_spool_discard and store_commit. */
void store_spool_async(struct store_spool *sp, struct pool *p, store_spool_cb *ready, void *arg);
/* True while a write is in flight and the second buffer is full too: the
 * caller should stop feeding the spool (pause its input) until ready() runs.
 * Bytes written meanwhile are still accepted (the buffer grows). */
bool store_spool_busy(const struct store_spool *sp);
size_t store_spool_size(const struct store_spool *sp);
void store_spool_discard(struct store_spool **spp);
/* Rewrites a spool's bytes before its commit (IMAP APPEND of a literal8,
 * RFC 3516 4.4). The caller has written the whole message and writes no
 * more. Once every write of sp has ended, on a worker of p,
 * fn(arg, msg, len, out) runs with the bytes (still in the spool's buffer
 * for a small message, else its file mapped read-only; msg valid during
 * the call only; "" for an empty spool) and out a new spool that fn
 * may write (store_spool_write there runs on that worker); fn returns true
 * if out holds the new content (its file then replaces sp's: sp holds the
 * new bytes), false to keep sp as it is. Then done(arg, result) runs on the
 * loop thread: 0, or -1 if a read or write failed (discard sp then). From
 * the call until done, sp must not be written or committed; a discard
 * meanwhile (the transaction refused while fn reads) takes effect after
 * done, which still runs (its caller then drops the result).
 * Memory: the buffer or the mapping (page cache), not a copy, whatever the
 * size. */
typedef bool store_spool_filter_fn(void *arg, const char *msg, size_t len,
				   struct store_spool *out);
typedef void store_spool_filter_done_fn(void *arg, int result);
void store_spool_filter(struct store_spool *sp, struct pool *p, store_spool_filter_fn *fn,
			store_spool_filter_done_fn *done, void *arg);

struct store_remote_rcpt {
	const char *addr;
	const char *orcpt;  /* DSN ORCPT= as given, or NULL */
	const char *notify; /* DSN NOTIFY= as given, or NULL */
};
struct store_delivery {
	const char *txid;       /* the session's transaction id, for logs */
	const char *mail_from;  /* envelope sender, "" for <> */
	const char *envid;      /* DSN ENVID= or NULL */
	const char *ret;        /* DSN RET= ("FULL"/"HDRS") or NULL */
	const char *auth_user;  /* or NULL */
	time_t received;        /* becomes INTERNALDATE */
	/* local recipients (store_target.user_id), delivered to INBOX. An id
	 * names one account for ever: ids of users, mailboxes and messages are
	 * never reused. */
	const int64_t *user_ids;
	size_t n_users;
	const struct store_remote_rcpt *remote; /* queued for outbound delivery */
	size_t n_remote;
	/* For outbound delivery (RFC 6152, RFC 6531): the content has octets
	 * >= 0x80; the message needs SMTPUTF8 (MAIL FROM carried it). */
	bool body_8bit;
	bool smtputf8;
	/* Sender authentication (src/policy): */
	/* written at the start of the blob, before the spool's bytes: the
	 * Return-Path line, then the fields policy adds (Authentication-Results,
	 * ARC set, DKIM-Signature). The spool may be on disk already (a message
	 * above its buffer): the commit then writes prefix + spool into the new
	 * blob (copy_file_range, on the committer's side, never the loop). */
	const char *prefix;
	size_t prefix_len;
	/* DMARC quarantine (RFC 7489 6.3 p=quarantine): local recipients get it
	 * in their mailbox with special use \Junk (RFC 6154), one named "Junk"
	 * created (with \Junk) when the account has none; not INBOX. */
	bool junk;
	/* Spam filtering (src/filter): per user_ids entry, Junk (as junk) for
	 * that recipient alone; NULL: junk decides for all. Copied. */
	const bool *junk_users;
	/* The remote recipients' queue entries start held (a milter's
	 * quarantine): not tried until `postern queue release`. */
	bool hold;
	/* The envelope sender of the queue entries when it is not mail_from
	 * (SRS for forwarded mail: srs.h), or NULL. Kept in queue.mail_from;
	 * store_queue_msg.mail_from and the queue listing show it. */
	const char *queue_from;
};
/* The result of a commit. Every failure is temporary (the client may try
 * again) and stores nothing: no message row, no mailbox or queue entry, no blob. */
enum store_commit_result {
	STORE_COMMIT_OK = 0,         /* durable */
	STORE_COMMIT_FAILED = -1,    /* disk full, I/O or database error */
	/* A local recipient (its account or its INBOX) was deleted after
	 * store_resolve gave its id: ids are never reused, so the message would
	 * otherwise go nowhere. Resolving the address again decides (550 if it is
	 * gone for good). */
	STORE_COMMIT_RCPT_GONE = -2,
	/* A local recipient is over its quota (452 4.2.2 at end of data). */
	STORE_COMMIT_OVERQUOTA = -5,
};
/* result: an enum store_commit_result. */
typedef void store_commit_cb(void *arg, int result);
/* Takes ownership of sp (a write of it still in flight is waited for first,
 * off the loop thread). Copies d. On the committer thread: flush and fsync
 * the blob, rename it into blobs/, fsync the directory, then one transaction
 * (batched with concurrent commits: group commit) that checks every local
 * recipient still exists and has room for the message (quota: one UPDATE
 * per recipient that checks and counts), stores the message once (with its
 * MIME cache when a builder is set), adds it to each local user's INBOX (new
 * UID, MODSEQ) and creates the queue entries. A delivery
 * with a vanished recipient fails alone (STORE_COMMIT_RCPT_GONE); the others
 * in the batch are stored. Then cb(arg, result) runs on the loop thread. */
void store_commit(struct store *st, struct store_spool *sp, const struct store_delivery *d,
		  store_commit_cb *cb, void *arg);

/* ---- reading (admin CLI now; IMAP/POP3 build on the same tables) ---- */
struct store_mail_info {
	uint32_t uid;
	uint64_t size;     /* octets of the stored message */
	time_t internaldate;
	uint64_t modseq;
	const char *flags; /* space-separated system flags and keywords, may be "" */
};
typedef void store_mail_cb(void *arg, const struct store_mail_info *m);
/* name = mailbox name, detail = "uidvalidity=N uidnext=N highestmodseq=N messages=N" */
int store_mailbox_list(struct store *st, const char *user, store_list_cb *cb, void *arg);
/* mailbox NULL = INBOX. 0, or -1 with *err_r (unknown user or mailbox). */
int store_mail_list(struct store *st, const char *user, const char *mailbox, store_mail_cb *cb,
		    void *arg, char **err_r);
/* Opens the blob of one message read-only: 0 with *fd_r, or -1 with *err_r.
 * uidvalidity: the mailbox's when the caller took uid, or 0 for the mailbox
 * as it is now; a mailbox re-created since (another UIDVALIDITY) is refused. */
int store_mail_open(struct store *st, const char *user, const char *mailbox, uint32_t uidvalidity,
		    uint32_t uid, int *fd_r, char **err_r);
/* Outbound queue: name = "id from", detail = "rcpt attempts next-try". */
int store_queue_list(struct store *st, store_list_cb *cb, void *arg);

/* ---- asynchronous reads (read.c, async.c) ---- */
struct store_mailbox_status;
/* A read transaction on a worker thread's own connection: every read made
 * through it sees the same committed state. Valid during store_read_fn only. */
struct store_snap;
/* Runs on a worker thread. Returns 0 or -1 (with *err_r, heap); passed on
 * to done. May only use sn, its own memory and the memory arg points to
 * (the loop thread does not touch that until done runs). */
typedef int store_read_fn(struct store_snap *sn, void *arg, char **err_r);
/* Runs on the loop thread after fn: result is fn's, or -1 if no snapshot
 * could be taken; err (NULL when result is 0) is valid during the call. */
typedef void store_read_done_cb(void *arg, int result, const char *err);
/* Runs fn(sn, arg) on a worker of p inside one read transaction (BEGIN ...
 * COMMIT on that thread's read connection), then done(arg, ...) on the loop
 * thread: always later, never from inside this call. The daemon frees p
 * before closing st. */
void store_read(struct store *st, struct pool *p, store_read_fn *fn, store_read_done_cb *done,
		void *arg);
/* store_read's work on the calling thread (a worker of the daemon's, in a
 * job of its own that reads as a step of more work): fn(sn, arg) in one read
 * transaction; 0, or -1 with *err_r (xmalloc'd). The read connections must
 * exist: store_readers_init, on the loop thread, before any such call. */
int store_read_here(struct store *st, store_read_fn *fn, void *arg, char **err_r);
/* store_read_here for a few indexed lookups (the statistical filter's
 * counts, a threshold), on a read connection that does not map the file:
 * SQLite drops a connection's mapping at its first read after any commit and
 * maps the file again, and each munmap stops every CPU the daemon runs on
 * (a TLB shootdown) — per message, for reads that gain nothing from it. */
int store_read_lookup(struct store *st, store_read_fn *fn, void *arg, char **err_r);
void store_readers_init(struct store *st);
/* The snapshot's versions of store_mailbox_status and store_mail_list (for
 * store_read_fn; cb runs on the worker thread). */
int store_snap_mailbox_status(struct store_snap *sn, const char *user, const char *mailbox,
			      struct store_mailbox_status *status_r, char **err_r);
int store_snap_mail_list(struct store_snap *sn, const char *user, const char *mailbox,
			 store_mail_cb *cb, void *arg, char **err_r);

/* Loading a mailbox (POP3 login, IMAP SELECT): its status and every message,
 * from one snapshot, on a worker of p. each(arg, m) runs on the worker for
 * every message in UID order (m is valid during the call only); then
 * done(arg, result, status, err) runs on the loop thread: result 0 with
 * status, or -1 with err (unknown user or mailbox, database error), valid
 * during the call only. mailbox NULL = INBOX. */
typedef void store_mail_list_done_cb(void *arg, int result,
				     const struct store_mailbox_status *status, const char *err);
void store_mail_list_async(struct store *st, struct pool *p, const char *user, const char *mailbox,
			   store_mail_cb *each, store_mail_list_done_cb *done, void *arg);

/* ---- mailbox state, expunge, change notification (expunge.c) ---- */
struct store_mailbox_status {
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	uint32_t messages;
};
/* mailbox NULL = INBOX. 0, or -1 with *err_r (unknown user or mailbox). */
int store_mailbox_status(struct store *st, const char *user, const char *mailbox,
			 struct store_mailbox_status *status_r, char **err_r);

/* result: 0 done (UIDs that were already gone are ignored), -1 failure
 * (nothing removed). */
typedef void store_expunge_cb(void *arg, int result);
/* Removes the messages with the given UIDs from the mailbox (mailbox NULL =
 * INBOX). Copies uids. On the committer thread, in one transaction: deletes
 * the mailbox entries, bumps HIGHESTMODSEQ, deletes the messages no other
 * mailbox entry or queue entry refers to, logs the UIDs for QRESYNC
 * (store_snap_vanished) and lowers the owner's quota usage; after COMMIT their blobs are
 * unlinked (an fd opened before stays readable). Then, on the loop thread,
 * cb(arg, result) — always later, never from inside this call — and then the
 * change notification (STORE_CHANGE_EXPUNGE) to the mailbox's subscribers.
 * uidvalidity: the mailbox's UIDVALIDITY when the caller took its UIDs, or
 * 0 for the mailbox as it is now. If the mailbox was deleted and re-created
 * since (the same name, another UIDVALIDITY), the UIDs name other messages:
 * nothing is removed and the result is -1.
 * Requires store_start. */
void store_expunge(struct store *st, const char *user, const char *mailbox, uint32_t uidvalidity,
		   const uint32_t *uids, size_t n, store_expunge_cb *cb, void *arg);

/* In-process announcements of mailbox changes, so that sessions holding a
 * mailbox (IMAP IDLE, NOOP) learn of them without polling. Loop thread only. */
enum store_change_kind {
	STORE_CHANGE_NEW,     /* a delivery was committed (uids: none; re-read from uidnext) */
	STORE_CHANGE_EXPUNGE, /* uids were expunged */
	STORE_CHANGE_FLAGS,   /* the flags of uids changed (re-read them) */
	STORE_CHANGE_DELETED, /* the mailbox was deleted or renamed away */
};
struct store_change {
	enum store_change_kind kind;
	const char *user;    /* as given to store_subscribe */
	const char *mailbox; /* "INBOX" or the stored name */
	const uint32_t *uids; /* valid during the callback only */
	size_t n_uids;
	uint64_t highestmodseq; /* after the change; 0 if not known (NEW) */
};
typedef void store_change_cb(void *arg, const struct store_change *ch);
struct store_sub;
/* Calls cb(arg, change) on the loop thread after each change to the mailbox
 * (mailbox NULL = INBOX) is committed. NULL with *err_r if the user or mailbox
 * does not exist. A callback may unsubscribe itself or any other subscriber. */
struct store_sub *store_subscribe(struct store *st, const char *user, const char *mailbox,
				  store_change_cb *cb, void *arg, char **err_r);
/* Cancels and frees *subp if not NULL; sets *subp = NULL. No callback for it
 * follows, even within the notification round in progress. */
void store_unsubscribe(struct store *st, struct store_sub **subp);
/* The subscriber's mailbox was renamed by the subscriber itself (IMAP
 * RENAME of the selected mailbox): the subscription follows it. */
void store_sub_rename(struct store_sub *sub, const char *mailbox);
/* A per-user subscription (IMAP NOTIFY, RFC 5465): cb(arg, ch) on the loop
 * thread after any committed change to any mailbox of user (deliveries,
 * APPEND, COPY/MOVE, flags, expunges, CREATE, DELETE, RENAME, SUBSCRIBE),
 * with ch->kind STORE_CHANGE_NEW and ch->mailbox NULL: the subscriber reads
 * again what it needs (one call per committed operation; coalescing is the
 * subscriber's). NULL with *err_r if the user does not exist. Cancelled by
 * store_unsubscribe. */
struct store_sub *store_subscribe_user(struct store *st, const char *user, store_change_cb *cb,
				       void *arg, char **err_r);
/* Mailbox deletes and renames by another process (the admin CLI) do not
 * reach this process's subscribers by themselves. The admin process calls
 * store_mailboxes_changed() after such a change (it touches a marker file
 * in the data directory); the daemon watches the marker
 * (store_mailboxes_watch: an inotify fd for its loop, -1 if not possible)
 * and on each event calls store_mailboxes_recheck(st, fd) on the loop
 * thread: every subscription whose mailbox (by name and id) is gone gets
 * STORE_CHANGE_DELETED. One indexed read per subscription, on an admin
 * change only. */
void store_mailboxes_changed(struct store *st);
int store_mailboxes_watch(struct store *st);
void store_mailboxes_recheck(struct store *st, int fd);

/* ==== IMAP: mailboxes, message state, quotas, the MIME cache ============
 * (mailbox.c, flags.c, ...: the store side of IMAP.) Mailbox names are
 * UTF-8 with '/' as the hierarchy separator; "INBOX" is stored as "INBOX".
 * Every write below runs on the committer (the only writer) in one
 * transaction, and its callback runs on the loop thread, always later, never
 * from inside the call. Reads that grow with a mailbox run in store_read()
 * snapshots (store_snap_*). Operations on a selected mailbox name it by name
 * and the UIDVALIDITY the caller holds (0 = as it is now): a mailbox deleted
 * and re-created since gives STORE_CHANGED, nothing done. */

/* Results of the operations below (negative: nothing was changed). */
enum store_res {
	STORE_OK = 0,
	STORE_ERROR = -1,       /* database or disk error: [SERVERBUG]/[UNAVAILABLE] */
	STORE_NONEXISTENT = -3, /* no such mailbox: [NONEXISTENT] (or [TRYCREATE]
				 * for a COPY/MOVE/APPEND target) */
	STORE_EXISTS = -4,      /* [ALREADYEXISTS] */
	STORE_OVERQUOTA = -5,   /* [OVERQUOTA] */
	STORE_LIMIT = -6,       /* too many mailboxes, name too long: [LIMIT] */
	STORE_CHANGED = -7,     /* UIDVALIDITY changed: the mailbox was replaced */
	STORE_HASCHILDREN = -8, /* DELETE of a mailbox with children: [INUSE] */
	STORE_CANNOT = -9,      /* DELETE INBOX, RENAME into itself: [CANNOT] */
};
typedef void store_res_cb(void *arg, int result);

/* Special-use attributes (RFC 6154), one per mailbox at most. Every new user
 * gets INBOX plus Drafts, Sent, Trash, Junk and Archive with these (and
 * existing users get them at the schema migration). */
#define STORE_SPECIAL_USE_DEFAULTS {"Drafts", "\\Drafts"}, {"Sent", "\\Sent"}, \
	{"Trash", "\\Trash"}, {"Junk", "\\Junk"}, {"Archive", "\\Archive"}

/* Limits (set once after store_open; 0 = the default). */
void store_set_limits(struct store *st, unsigned max_mailboxes_per_user,
		      unsigned max_mailbox_name);

/* CREATE (RFC 9051 6.3.4): also creates missing parent levels ("a/b/c"
 * creates "a" and "a/b" when absent). special_use NULL or "\\Sent" etc.
 * STORE_EXISTS if name exists (INBOX in any case always exists).
 * STORE_CANNOT for a name the store does not keep (empty level, control
 * characters, '%' or '*', not UTF-8) or an unknown special use (RFC 6154
 * [USEATTR]); STORE_LIMIT for too many mailboxes or a name too long. One
 * trailing '/' is dropped. */
void store_mailbox_create(struct store *st, const char *user, const char *name,
			  const char *special_use, store_res_cb *cb, void *arg);
/* DELETE (6.3.5): removes the mailbox and its messages (blobs with no other
 * reference too), its subscription stays (RFC 9051 allows; LSUB shows it).
 * STORE_CANNOT for INBOX; STORE_HASCHILDREN if it has children (Dovecot's
 * rule: delete the children first). Subscribers of the mailbox get
 * STORE_CHANGE_DELETED. */
void store_mailbox_delete(struct store *st, const char *user, const char *name,
			  store_res_cb *cb, void *arg);
/* RENAME (6.3.6): the mailbox and every child level ("a" -> "b" also renames
 * "a/x" to "b/x"); missing parents of the new name are created; UIDVALIDITY
 * kept. INBOX: a new mailbox `to` is created, every message of INBOX is moved
 * into it (new UIDs there, expunged from INBOX), INBOX stays (children of
 * INBOX are not renamed). STORE_EXISTS if `to` exists, STORE_NONEXISTENT if
 * `from` does not, STORE_CANNOT for renaming into its own child. */
void store_mailbox_rename(struct store *st, const char *user, const char *from, const char *to,
			  store_res_cb *cb, void *arg);
/* SUBSCRIBE/UNSUBSCRIBE (6.3.7, 6.3.8): subscriptions are names, kept apart
 * from mailboxes (a name that does not exist may be subscribed). Both are
 * idempotent (STORE_OK when already so). RENAME carries the subscriptions of
 * the renamed mailboxes to their new names (as Dovecot does). */
void store_mailbox_subscribe(struct store *st, const char *user, const char *name, bool on,
			     store_res_cb *cb, void *arg);

/* A mailbox as LIST / STATUS / SELECT see it. The counts beyond `messages`
 * are computed only when asked (want_counts), as they grow with the box. */
struct store_mailbox {
	const char *name;        /* UTF-8 */
	const char *special_use; /* "\\Sent" ..., or NULL */
	bool subscribed;
	struct store_mailbox_status status;
	uint32_t unseen;         /* messages without \Seen (want_counts) */
	uint32_t deleted;        /* messages with \Deleted (want_counts) */
	uint64_t size;           /* sum of message sizes (want_counts) */
	uint32_t first_unseen_uid; /* (want_counts) 0 if none */
};
typedef void store_mailbox_cb(void *arg, const struct store_mailbox *mb);
/* The store_snap_* functions return a store_res (STORE_OK, or negative with
 * *err_r): an unknown user is STORE_NONEXISTENT. */
/* Every mailbox of user, in name order (cb on the worker). */
int store_snap_mailboxes(struct store_snap *sn, const char *user, bool want_counts,
			 store_mailbox_cb *cb, void *arg, char **err_r);
/* One mailbox; STORE_NONEXISTENT (as the return value) if absent. */
int store_snap_mailbox(struct store_snap *sn, const char *user, const char *name,
		       bool want_counts, store_mailbox_cb *cb, void *arg, char **err_r);
/* The subscribed names of user, in name order, whether they exist or not. */
int store_snap_subscriptions(struct store_snap *sn, const char *user, store_list_cb *cb,
			     void *arg, char **err_r);

/* One message of a mailbox, for SELECT, FETCH, SEARCH (valid during the
 * callback only). flags: system flags as IMAP atoms and keywords,
 * space-separated ("\\Seen \\Flagged $Forwarded"), never "\\Recent". */
struct store_msg {
	uint32_t uid;
	uint64_t modseq;
	const char *flags;
	time_t internaldate;
	int internaldate_tz;   /* the zone given at APPEND/delivery, seconds east */
	uint64_t size;
	int64_t message_id;    /* the stored body (shared by copies) */
	const char *blob;      /* the blob's name (store_snap_blob_open) */
	const void *cache;     /* the MIME cache, or NULL if none yet (mime.h) */
	size_t cache_len;
	time_t savedate;       /* when it arrived in this mailbox */
	/* STORE_MSG_SORT: the sort section (sortinfo.h); STORE_MSG_THREAD: the
	 * thread section (threadinfo.h) */
	const void *sortkeys;
	size_t sortkeys_len;
	/* STORE_MSG_CACHE_TEXT: the full-text index's BODY text of the body
	 * (STORE_FTS_BODY, as the extractor gave it), zlib-deflated, and its
	 * length inflated; NULL when the index has none for it (not indexed
	 * yet) */
	const void *ftext;
	size_t ftext_len;
	uint64_t ftext_raw;
};
typedef int store_msg_cb(void *arg, const struct store_msg *m); /* nonzero stops */
struct store_uid_range {
	uint32_t lo, hi;
};
/* What store_snap_messages reads of each message besides its entry. */
enum store_msg_want {
	STORE_MSG_PLAIN,      /* no cache */
	STORE_MSG_CACHE,      /* cache/cache_len */
	STORE_MSG_SORT,       /* sortkeys/sortkeys_len from sort_keys, blob NULL; a
			       * body without them yet (no row, NULL or an empty
			       * value) comes as STORE_MSG_CACHE */
	STORE_MSG_CACHE_TEXT, /* cache, and ftext (LEFT JOIN fts_text) */
	STORE_MSG_THREAD,     /* as STORE_MSG_SORT, with the thread section */
};
/* The messages of a mailbox whose UID is in ranges (sorted; n 0 = all), in
 * UID order, with modseq > changedsince (0 = all), each with what want
 * says. STORE_CHANGED if uidvalidity (non-zero) differs, STORE_NONEXISTENT
 * if the mailbox is gone. */
int store_snap_messages(struct store_snap *sn, const char *user, const char *mailbox,
			uint32_t uidvalidity, const struct store_uid_range *ranges, size_t n,
			uint64_t changedsince, enum store_msg_want want, store_msg_cb *cb,
			void *arg, char **err_r);
/* SELECT / EXAMINE (RFC 9051 6.3.2): the mailbox's status (messages = the
 * entries seen) and each entry's UID, MODSEQ and flags in UID order, in one
 * pass over the mailbox's own entries (no join with the messages table, no
 * per-message body data): cb(arg, uid, modseq, flags) runs on the worker,
 * flags valid during the call only; nonzero stops. STORE_NONEXISTENT if the
 * user or the mailbox does not exist (mailbox NULL = INBOX). */
typedef int store_entry_cb(void *arg, uint32_t uid, uint64_t modseq, const char *flags);
int store_snap_entries(struct store_snap *sn, const char *user, const char *mailbox,
		       struct store_mailbox_status *status_r, store_entry_cb *cb, void *arg,
		       char **err_r);
/* Opens a message's blob read-only on the worker (0 with *fd_r, or -1 with
 * errno kept: ENOENT when the message was expunged after the snapshot began). */
int store_snap_blob_open(struct store_snap *sn, const char *blob, int *fd_r, char **err_r);
/* The blob's name of body message_id (a STORE_MSG_SORT row has none), a
 * copy the caller frees. STORE_OK, or STORE_ERROR with *err_r. */
int store_snap_blob_name(struct store_snap *sn, int64_t message_id, char **blob_r, char **err_r);
/* QRESYNC (RFC 7162 3.2.5.1): the UIDs expunged from the mailbox with a
 * MODSEQ above since, in UID order, restricted to ranges (n 0 = all). The
 * expunge log keeps every expunge for the life of the mailbox (one row per
 * UID; ranges of UIDs could compress it later). */
int store_snap_vanished(struct store_snap *sn, const char *user, const char *mailbox,
			uint32_t uidvalidity, uint64_t since, const struct store_uid_range *ranges,
			size_t n, void (*cb)(void *arg, uint32_t uid),
			void *arg, char **err_r);

/* APPEND / MULTIAPPEND (RFC 9051 6.3.12, RFC 3502): n spools (ownership
 * taken) into mailbox of user, in one transaction: all or none. flags[i]
 * (may be "" or NULL) in the same form as store_msg.flags; dates[i] (0 =
 * now) and tzs[i]. Quota is checked (STORE_OVERQUOTA); the mailbox must exist
 * (STORE_NONEXISTENT: [TRYCREATE]). cb gets the mailbox's UIDVALIDITY and the
 * first new UID (the others follow consecutively): APPENDUID (RFC 4315).
 * Durable (group commit, the same as SMTP) before cb. */
typedef void store_append_cb(void *arg, int result, uint32_t uidvalidity, uint32_t first_uid);
void store_append(struct store *st, const char *user, const char *mailbox,
		  struct store_spool **sps, size_t n, const char *const *flags,
		  const time_t *dates, const int *tzs, store_append_cb *cb, void *arg);

/* STORE (RFC 9051 6.4.6, RFC 7162 3.1.3): changes the flags of the messages
 * with the given UIDs (sorted): op '+' adds, '-' removes, '=' replaces.
 * \Recent is never stored. unchangedsince (0 = none): a message whose modseq
 * is above it is not changed and is reported with changed = false
 * ([MODIFIED]). A message whose flags end up the same is not given a new
 * modseq (changed = false, modified = false). Every changed message gets
 * the mailbox's next MODSEQ (one per call). cb gets each message still
 * present with its flags after the call. Subscribers get STORE_CHANGE_FLAGS.
 * r (NULL when result < 0) is the callback's from then on: it may keep it
 * past its return (an IMAP STORE's reply is sent in slices as the client
 * reads) and frees it with store_flag_results_free. */
struct store_flag_result {
	uint32_t uid;
	uint64_t modseq;
	const char *flags; /* one of the results' distinct strings */
	bool changed;   /* its flags were changed by this call */
	bool modified;  /* refused by unchangedsince */
};
/* The entries point into one table of distinct flag strings: a STORE 1:* on
 * a million messages has a handful, so whoever takes the results (on the
 * event loop) frees, and looks for new keywords in, a handful of strings,
 * not a million. */
struct store_flag_results {
	struct store_flag_result *v; /* one per message still present, in UID order */
	size_t n;
	char **flags; /* the distinct flag strings */
	size_t n_flags;
};
typedef void store_flags_cb(void *arg, int result, struct store_flag_results *r);
void store_flag_results_free(struct store_flag_results *r);
void store_flags(struct store *st, const char *user, const char *mailbox, uint32_t uidvalidity,
		 const uint32_t *uids, size_t n, char op, const char *flags,
		 uint64_t unchangedsince, store_flags_cb *cb, void *arg);
/* The same, taking uids (malloc'd, n of them; freed by the store): a STORE
 * 1:* on a million messages hands over its 4 MB list instead of a copy
 * made on the event loop. */
void store_flags_take(struct store *st, const char *user, const char *mailbox,
		      uint32_t uidvalidity, uint32_t *uids, size_t n, char op, const char *flags,
		      uint64_t unchangedsince, store_flags_cb *cb, void *arg);

/* COPY / MOVE (RFC 9051 6.4.7, 6.4.8; RFC 6851): copies the messages with
 * the given UIDs (sorted; missing ones skipped) to `to` (body shared, not
 * duplicated; flags and INTERNALDATE kept; new UIDs), and with move removes
 * them from the source in the same transaction (expunge log, notifications:
 * STORE_CHANGE_EXPUNGE on the source, STORE_CHANGE_NEW on `to`). Quota
 * checked. cb: the target's UIDVALIDITY and the pairs (src[i] -> dst[i]) for
 * COPYUID (RFC 4315). */
typedef void store_copy_cb(void *arg, int result, uint32_t dst_uidvalidity, const uint32_t *src,
			   const uint32_t *dst, size_t n);
void store_copy(struct store *st, const char *user, const char *from, uint32_t uidvalidity,
		const uint32_t *uids, size_t n, const char *to, bool move, store_copy_cb *cb,
		void *arg);

/* Quota (RFC 9208: STORAGE in KiB on the wire, MESSAGE): limits per account,
 * 0 = none; usage over every mailbox of the account, kept as counters in the
 * same transactions that add or remove messages. A delivery (store_commit)
 * to an account at its limit, or one the message would take over it when no
 * other recipient waits for the message, fails with STORE_COMMIT_OVERQUOTA;
 * with other recipients the account may go over by this one message (as
 * Dovecot's quota_grace), so one full mailbox cannot block the others' copy
 * for ever (commit.c, quota_count). SMTP asks store_quota_full() and
 * store_quota_fits() at RCPT. */
int store_quota_set(struct store *st, const char *user, uint64_t storage_bytes, uint64_t messages,
		    char **err_r);
struct store_quota {
	uint64_t storage_limit, storage_used; /* octets */
	uint64_t message_limit, message_used;
};
int store_quota_get(struct store *st, const char *user, struct store_quota *q_r, char **err_r);
int store_snap_quota(struct store_snap *sn, const char *user, struct store_quota *q_r,
		     char **err_r);
/* For SMTP RCPT (loop thread, one indexed row): true if the account is at
 * or over a limit already. */
bool store_quota_full(struct store *st, int64_t user_id);
/* For SMTP RCPT with a declared size (RFC 1870; 0 = unknown): false if the
 * account is full already or one more message of that size would take it
 * over a limit. */
bool store_quota_fits(struct store *st, int64_t user_id, uint64_t size);

/* The MIME cache (mime/mime.h): the store does not include mime headers; the
 * daemon and the CLI give it the builder. With a builder set, every message
 * committed (store_commit, store_append) gets its cache in the same
 * transaction (built from the spool's bytes: on the committer, or for a
 * message above STORE_CACHE_INLINE_MAX on a builder thread before it).
 * Messages stored before have none (store_msg.cache NULL), or one the
 * reader rejects (mime_cache_open: an older version): the reader builds it
 * from the blob and may save it with store_cache_save. */
/* Messages above this size get their cache built on the store's builder
 * thread before they reach the committer (still in the same transaction as
 * their row): parsing tens of MB must not hold other sessions' commits. */
#define STORE_CACHE_INLINE_MAX (256 * 1024)
typedef void store_cache_build_fn(const char *msg, size_t len, struct buf *out);
/* SORT's and THREAD's keys are also kept apart from the cache (table
 * sort_keys, one narrow row per body: the sort section of the cache,
 * mime/sortinfo.h, the thread section, mime/threadinfo.h, and the size),
 * written with the cache wherever it is written: a SORT or THREAD reads them
 * (store_snap_messages, STORE_MSG_SORT, STORE_MSG_THREAD) instead of every
 * cache. keys_fn finds the sections in a cache (false: not a cache of the
 * current format). */
struct store_cache_keys {
	const void *sort, *thread;
	size_t sort_len, thread_len;
};
typedef bool store_cache_keys_fn(const void *cache, size_t len, struct store_cache_keys *k);
void store_set_cache_builder(struct store *st, store_cache_build_fn *fn,
			     store_cache_keys_fn *keys_fn);
/* Any thread (requires store_start); copies cache; a job on the committer
 * that sets it unless the message has these bytes already (an older
 * cache is replaced: the message is immutable, so a rebuilt cache of the
 * current version is the one to keep). */
void store_cache_save(struct store *st, int64_t message_id, const void *cache, size_t len);

/* ==== the outbound queue (queue.c) ======================================
 * Entries are the remote recipients store_commit queued, one row each. The
 * scheduler (src/queue) leases due entries before an attempt: lease owner
 * and expiry are written in the same transaction that picks them, so two
 * daemons sharing one store (later) never take the same entry, and a daemon
 * killed mid-delivery loses nothing (the lease expires, the entry is due
 * again: a duplicate is possible, a loss is not). Every write runs on the
 * committer; callbacks run on the loop thread, always later. The queue id
 * shown to admins and in logs is the message's id (all recipients of one
 * message share it, as in Postfix). */

/* One leased recipient. */
struct store_queue_rcpt {
	int64_t id;          /* the entry */
	char *rcpt;
	char *orcpt;         /* DSN ORCPT= or NULL */
	char *notify;        /* DSN NOTIFY= or NULL */
	int attempts;        /* before this one */
	time_t created;      /* when it was queued */
	bool delay_notified; /* the "delayed" DSN went out */
	char *last_error;    /* NULL if none */
};
/* The due recipients of one message for one domain, leased together. */
struct store_queue_msg {
	int64_t message_id;
	char *domain;    /* lowercase */
	char *mail_from; /* "" for <> */
	char *envid, *ret; /* DSN, or NULL */
	time_t received;
	uint64_t size;
	/* octets of the blob's leading "Return-Path: <...>" line, 0 if none:
	 * RFC 5321 4.4, added for final delivery, not sent on to a next hop */
	uint64_t return_path_len;
	bool body_8bit, smtputf8;
	void *cache;     /* the MIME cache or NULL */
	size_t cache_len;
	int fd;          /* the blob, opened read-only on the committer; -1 if it
			  * could not be opened (then err says why) */
	char *err;
	struct store_queue_rcpt *rcpt;
	size_t n_rcpt;
};
struct store_queue_lease {
	struct store_queue_msg *msg;
	size_t n_msg;
	/* the earliest next_try among entries neither held nor leased after
	 * this lease; 0 when there is none */
	time_t next_due;
};
/* Leases up to max_msgs groups (message, domain) whose entries are due at
 * now (next_try <= now, not held, lease free or expired) until now + lease_s
 * for owner, in one transaction on the committer, opens their blobs, and
 * hands the result to cb on the loop thread: result 0 with *l (the caller
 * owns it: store_queue_lease_free), or -1 (database error; l NULL). */
typedef void store_queue_lease_cb(void *arg, int result, struct store_queue_lease *l);
void store_queue_lease(struct store *st, const char *owner, time_t now, unsigned lease_s,
		       size_t max_msgs, store_queue_lease_cb *cb, void *arg);
/* Closes the fds and frees. */
void store_queue_lease_free(struct store_queue_lease **lp);
/* Frees what one message of a lease holds (closes its fd), not m itself:
 * for a caller that moved it out of the lease (then set n_msg 0 before
 * store_queue_lease_free). */
void store_queue_msg_free(struct store_queue_msg *m);
/* At the daemon's start (caller's thread, before any lease): the leases
 * owner held before a crash are released, as nothing of it is in flight any
 * more: those entries are due at once rather than when the lease expires.
 * Returns the entries released, or -1. */
int store_queue_unlease_owner(struct store *st, const char *owner);

/* The outcome of one attempt for one entry. */
enum store_queue_outcome {
	STORE_QUEUE_DONE,  /* delivered, bounced, or given up: the row goes */
	STORE_QUEUE_RETRY, /* attempts + 1, next_try, last_error, lease cleared */
	STORE_QUEUE_UNLEASE, /* nothing tried (shutdown): the lease is cleared */
};
struct store_queue_result {
	int64_t id;
	enum store_queue_outcome outcome;
	time_t next_try;       /* RETRY */
	const char *last_error; /* RETRY, may be NULL */
	bool delay_notified;   /* RETRY: the "delayed" DSN went out now */
};
/* Records the results of one message's attempt in one transaction (only
 * entries still leased by owner are changed): DONE rows are deleted, and the
 * message row with its blob when nothing refers to it any more (no mailbox
 * entry, no queue entry). now: the attempt's time (last_attempt). cb(arg,
 * 0 or -1) on the loop thread; v is copied. */
void store_queue_record(struct store *st, const char *owner, time_t now,
			const struct store_queue_result *v, size_t n, store_res_cb *cb, void *arg);

/* ---- admin (the caller's thread, st->main: the CLI) ---- */
struct store_queue_entry {
	int64_t message_id, id;
	const char *mail_from, *rcpt, *last_error; /* last_error may be NULL */
	int attempts;
	time_t created, next_try, lease_until;
	bool held, delay_notified;
	uint64_t size;
};
typedef void store_queue_entry_cb(void *arg, const struct store_queue_entry *e);
/* Every entry (message_id 0) or those of one message, by next_try. 0 or -1. */
int store_queue_entries(struct store *st, int64_t message_id, store_queue_entry_cb *cb,
			void *arg, char **err_r);
enum store_queue_admin_op {
	STORE_QUEUE_RETRY_NOW, /* next_try = now (held entries stay held) */
	STORE_QUEUE_HOLD,      /* not tried until released */
	STORE_QUEUE_RELEASE,   /* held no more, due now */
	STORE_QUEUE_DELETE,    /* removed without a bounce (the message row and blob
				* too when nothing else refers to them) */
};
/* Applies op to the entries of message_id (0 = every entry). Returns the
 * number of entries changed (0: no such queue id), or -1 with *err_r.
 * DELETE of an entry under lease: the attempt in flight may still deliver
 * it; its result then finds no row (nothing happens). */
int store_queue_admin(struct store *st, enum store_queue_admin_op op, int64_t message_id,
		      char **err_r);

/* ==== settings (settings.c) ============================================
 * Small named values the daemon keeps (the generated SRS secret). Caller's
 * thread, st->main (startup and the CLI). */
/* 1 with *value_r (heap), 0 if unset, -1 on error. */
int store_setting_get(struct store *st, const char *name, char **value_r);
int store_setting_set(struct store *st, const char *name, const char *value, char **err_r);

/* ==== DKIM keys (dkim.c) ===============================================
 * Rows of dkim_keys. Caller's thread, st->main (the CLI; the daemon at start
 * and when it reloads keys). A key signs at time t when active_from <= t and
 * (retire_at == 0 or t < retire_at). */
struct store_dkim_key {
	int64_t id;
	const char *domain, *selector, *alg; /* alg: "rsa-sha256" | "ed25519-sha256" */
	const char *private_key;             /* PKCS#8 PEM */
	const char *public_key;              /* base64 (the record's p=) */
	time_t created, active_from, retire_at;
};
typedef void store_dkim_key_cb(void *arg, const struct store_dkim_key *k);
/* domain NULL: every domain. Ordered by domain, active_from. 0 or -1. */
int store_dkim_keys(struct store *st, const char *domain, store_dkim_key_cb *cb, void *arg);
/* k->id is ignored. Returns the new key's id, or -1 with *err_r (duplicate
 * selector, domain not local). */
int64_t store_dkim_key_add(struct store *st, const struct store_dkim_key *k, char **err_r);
/* Sets retire_at of every key of domain that signs now or later and is not
 * in keep (the new keys' ids), to when. Returns the keys changed or -1. */
int store_dkim_keys_retire(struct store *st, const char *domain, time_t when,
			   const int64_t *keep, size_t n_keep, char **err_r);
/* Deletes one key by domain and selector. 1 deleted, 0 none, -1 error. */
int store_dkim_key_del(struct store *st, const char *domain, const char *selector,
		       char **err_r);

/* ==== DMARC (dmarc.c) ==================================================
 * Evaluations recorded for aggregate reports (RFC 7489 7.2) and reports
 * received for our domains. The declarations are the dmarc-reports work's.
 * Strings, not the policy module's enums: the store sits below src/policy. */
struct store_dmarc_dkim {
	const char *domain, *selector; /* d= and s= of the signature */
	const char *result;            /* RFC 8601 2.7.1: pass, fail, neutral, ... */
};
#define STORE_DMARC_MAX_DKIM 16
/* One DMARC evaluation of an inbound message (RFC 7489 7.2.1, Appendix C).
 * NULL strings are stored as "". */
struct store_dmarc_row {
	time_t time;
	const char *source_ip;       /* the connecting client, numeric */
	const char *header_from;     /* RFC5322.From domain */
	const char *envelope_from;   /* RFC5321.MailFrom domain ("" for <>) */
	const char *envelope_to;     /* RFC5321.RcptTo domain (the first) */
	/* the record that applied and where it was found */
	const char *policy_domain;
	const char *p, *sp;          /* none | quarantine | reject */
	int pct;
	char adkim, aspf;            /* 'r' | 's' */
	const char *fo;
	const char *rua;             /* the record's rua URIs, space-separated; "" if none */
	/* policy_evaluated */
	const char *disposition;     /* none | quarantine | reject */
	const char *dkim, *spf;      /* aligned results: pass | fail */
	const char *reason;          /* PolicyOverrideType (sampled_out, local_policy...) or "" */
	const char *reason_comment;
	/* auth_results, uninterpreted */
	const struct store_dmarc_dkim *dkim_results;
	size_t n_dkim;               /* at most STORE_DMARC_MAX_DKIM are kept */
	const char *spf_domain;
	const char *spf_scope;       /* mfrom | helo */
	const char *spf_result;      /* RFC 7208 2.6: none, neutral, pass, ... */
};
/* Fire and forget: copies row and queues its INSERT as a job on the
 * committer (batched with the round's commits, never waited for by the
 * caller; a failure is logged). Any thread; requires store_start (or
 * store_start_admin). */
void store_dmarc_record(struct store *st, const struct store_dmarc_row *row);
/* The same for n rows: one job, one transaction (policy hands them over in
 * batches: one committer transaction per batch, not per message). */
void store_dmarc_record_n(struct store *st, const struct store_dmarc_row *rows, size_t n);
/* Fire and forget, on the committer: deletes the rows older than before. */
void store_dmarc_prune(struct store *st, time_t before);
/* Reads the rows with since <= time < until whose record had a rua, ordered
 * by policy domain then time: cb(arg, row) on the worker (row and its
 * strings valid during the call; dkim_results parsed back). cb returns
 * nonzero to stop. 0 or -1 with *err_r. */
typedef int store_dmarc_row_cb(void *arg, const struct store_dmarc_row *row);
int store_snap_dmarc_rows(struct store_snap *sn, time_t since, time_t until,
			  store_dmarc_row_cb *cb, void *arg, char **err_r);
/* The same on the caller's thread (st->main), for tests and the CLI. */
int store_dmarc_rows(struct store *st, time_t since, time_t until, store_dmarc_row_cb *cb,
		     void *arg, char **err_r);

/* ==== filtering (issue 11): each section belongs to one part ============
 * Declarations are added by the part that owns the section; the tables are
 * schema step 6 (store.c). Writes run on the committer (fire and forget or
 * with a callback on the loop), reads that grow with data on a worker
 * (store_snap_*), short indexed reads for the CLI and start-up on st->main. */

/* ---- IP allow/block lists (screen.c; the screen part) ---- */
/* Table ip_lists: one row per canonical network (cidr_canonical), in the
 * "allow" or the "block" list. The CLI writes on st->main, then calls
 * store_ip_lists_changed so that a running daemon re-reads them. */
struct store_ip_entry {
	const char *network; /* canonical CIDR */
	const char *list;    /* "allow" | "block" */
	const char *comment; /* "" when none */
	time_t created;
};
/* Adds network to list (or moves it there from the other list, with the new
 * comment). 0 or -1 with *err_r. */
int store_ip_list_add(struct store *st, const char *network, const char *list,
		      const char *comment, char **err_r);
/* 1 removed, 0 not in that list, -1 with *err_r. */
int store_ip_list_del(struct store *st, const char *network, const char *list, char **err_r);
/* Every entry (list NULL) or those of one list, ordered by list then
 * network; cb returns nonzero to stop. 0 or -1 with *err_r. On st->main
 * (the CLI, start-up); store_snap_ip_lists in a store_read. */
typedef int store_ip_entry_cb(void *arg, const struct store_ip_entry *e);
int store_ip_lists(struct store *st, const char *list, store_ip_entry_cb *cb, void *arg,
		   char **err_r);
int store_snap_ip_lists(struct store_snap *sn, const char *list, store_ip_entry_cb *cb,
			void *arg, char **err_r);
/* The change notice: touches <data_dir>/ip_lists.changed. The daemon
 * watches it (store_ip_lists_watch: an inotify descriptor for the loop,
 * readable after a change; drain it with store_mark_drain), -1 when it
 * cannot (logged; the screen also checks the notice's time once a minute). */
void store_ip_lists_changed(struct store *st);
int store_ip_lists_watch(struct store *st);
/* Reads a change notice's inotify descriptor (store_ip_lists_watch,
 * store_spam_watch) dry: non-blocking, the events themselves unused. */
void store_mark_drain(int fd);
/* The notice's modification time (one stat): {0, 0} when there is none. */
void store_ip_lists_stamp(struct store *st, struct timespec *ts_r);


/* ---- greylisting state (grey.c; the grey part) ---- */
/* src/filter/grey.c keeps the state in memory and saves what changed here,
 * lazily. Rows are replaced whole (the newest values win: the committer
 * runs the jobs in queue order). */
struct store_grey_triplet {
	char *net, *sender, *rcpt; /* lowercase; sender "" for <> */
	time_t first_seen;
};
struct store_grey_net {
	char *net;
	time_t allowed_until;
};
struct store_grey_rep {
	char *domain;
	int64_t good, bad;
	time_t last_seen;
};
struct store_grey_batch {
	struct store_grey_triplet *t;
	size_t n_t;
	struct store_grey_net *nets;
	size_t n_nets;
	struct store_grey_rep *reps;
	size_t n_reps;
	/* rows older than these are deleted (0: no pruning): triplets whose
	 * first_seen, networks whose allowed_until, domains whose last_seen is
	 * before it */
	time_t prune_t, prune_nets, prune_reps;
};
/* Fire and forget: a lazy job on the committer (one transaction); takes
 * ownership of b (heap, its arrays and strings) whatever happens. */
void store_grey_save(struct store *st, struct store_grey_batch *b);
/* At shutdown, blocking: through the committer if it runs (waiting until it
 * is idle, so that every earlier save is written first), else on st->main.
 * Takes ownership of b. 0 or -1 (logged). */
int store_grey_save_now(struct store *st, struct store_grey_batch *b);
void store_grey_batch_free(struct store_grey_batch **bp);
/* The saved state (st->main, at start): triplets with first_seen >= t_since,
 * networks with allowed_until >= now, domains with last_seen >= rep_since;
 * at most max of each, the newest, given oldest first. 0 or -1 with *err_r. */
struct store_grey_load_cb {
	void (*triplet)(void *arg, const char *net, const char *sender, const char *rcpt,
			time_t first_seen);
	void (*net)(void *arg, const char *net, time_t allowed_until);
	void (*rep)(void *arg, const char *domain, int64_t good, int64_t bad, time_t last_seen);
	void *arg;
};
int store_grey_load(struct store *st, time_t t_since, time_t now, time_t rep_since, size_t max,
		    const struct store_grey_load_cb *cb, char **err_r);


/* ---- the statistical filter's tokens and training queue (spam.c; the
 * bayes part) ---- */
struct store_spam_counts {
	int64_t ham, spam; /* messages trained as such that held the token */
};
/* The messages trained for user_id (0: the global model): zeros if none. */
int store_snap_spam_totals(struct store_snap *sn, int64_t user_id, struct store_spam_counts *c_r,
			   char **err_r);
/* c_r[i]: the counts of hashes[i] for user_id (zeros when unknown); one
 * indexed lookup per token (PRIMARY KEY (user_id, hash)). */
int store_snap_spam_tokens(struct store_snap *sn, int64_t user_id, const uint64_t *hashes,
			   size_t n, struct store_spam_counts *c_r, char **err_r);
/* The model cache (spam.c): the daemon's snapshots keep the counts they
 * read in memory, valid until the counts change (st->spam_gen). On from the
 * call (the daemon's bayes_new); the CLI reads without it. */
void store_spam_cache_on(struct store *st);
/* The counts changed (a committed training of this process; the daemon's
 * loop when store_spam_watch's descriptor turns readable). Any thread. */
void store_spam_model_changed(struct store *st);
/* An inotify descriptor (or -1, logged) readable when another process
 * (the CLI's store_spam_train) changed the counts; drain it with
 * store_mark_drain, then call store_spam_model_changed. */
int store_spam_watch(struct store *st);
/* A mark file's identity and time (store_mark_stamp). */
struct store_stamp {
	uint64_t ino;
	struct timespec mtime;
};
void store_spam_stamp(struct store *st, struct store_stamp *r);
/* The same on st->main (CLI). */
int store_spam_totals(struct store *st, int64_t user_id, struct store_spam_counts *c_r,
		      char **err_r);
int store_spam_tokens(struct store *st, int64_t user_id, const uint64_t *hashes, size_t n,
		      struct store_spam_counts *c_r, char **err_r);
/* The id of an account (st->main), or -1 with *err_r. */
int64_t store_spam_user_id(struct store *st, const char *addr, char **err_r);
/* Every model with training (spam_totals), its account ("" for user 0) and
 * its number of tokens. */
typedef void store_spam_user_cb(void *arg, int64_t user_id, const char *user,
				const struct store_spam_counts *c, int64_t tokens);
int store_spam_users(struct store *st, store_spam_user_cb *cb, void *arg, char **err_r);

/* The training queue (spam_train), filled by IMAP (flags.c: a message
 * moved or copied into a \Junk mailbox: spam; out of one, not into Trash:
 * ham; $Junk / $NotJunk set by STORE) in the transaction of the change. */
struct store_spam_queued {
	int64_t id, user_id, message_id;
	bool spam;
	char *blob; /* NULL: the message is gone */
};
/* How many of this process's operations queued training so far (a
 * counter: the trainer reads the queue when it moved; other processes
 * do not move it). Any thread. */
uint64_t store_spam_queue_gen(struct store *st);
/* The oldest max rows (heap array, store_spam_queued_free). */
int store_snap_spam_queue(struct store_snap *sn, size_t max, struct store_spam_queued **v_r,
			  size_t *n_r, char **err_r);
void store_spam_queued_free(struct store_spam_queued *v, size_t n);

/* Training: for each item, its queue row (queue_id, 0: none) is deleted;
 * unless skip, the token counts and totals of user_id gain one message of
 * the class. message_id != 0: spam_trained says what the message was
 * trained as; trained the same way already: nothing; the other way: its
 * counts are taken back first (untrain) then trained anew. One transaction. */
struct store_spam_train {
	int64_t queue_id;
	int64_t user_id;
	int64_t message_id;
	bool spam, skip;
	uint64_t *hashes; /* heap */
	size_t n;
};
/* On the committer (lazy: a crash may lose the last moment's training);
 * takes v (heap array of n); cb (may be NULL) on the loop. */
void store_spam_train_async(struct store *st, struct store_spam_train *v, size_t n,
			    store_res_cb *cb, void *arg);
/* On st->main, for the CLI (v stays the caller's). */
int store_spam_train(struct store *st, const struct store_spam_train *v, size_t n, char **err_r);
void store_spam_train_free(struct store_spam_train *v, size_t n);
/* The blob of message UID of user's mailbox, read-only (st->main; CLI). */
int store_spam_message_open(struct store *st, const char *user, const char *mailbox, uint32_t uid,
			    int *fd_r, char **err_r);


/* ---- spam thresholds per domain and user (filter.c; the integ part) ---- */
/* Scores are NAN when not set (inherited: user, then domain, then the
 * spam_junk_score / spam_reject_score options). The main connection: the
 * CLI, and the daemon's short indexed read at the end of data. */
/* The row of name (a domain or an address): 1 found, 0 none, -1 error. */
int store_spam_threshold_get(struct store *st, const char *name, double *junk_r,
			     double *reject_r);
/* Sets the row of name (NAN: inherit); both NAN deletes it. 0, or -1 with *err_r. */
int store_spam_threshold_set(struct store *st, const char *name, double junk, double reject,
			     char **err_r);
typedef void store_threshold_cb(void *arg, const char *name, double junk, double reject);
/* Every row, by name. 0, or -1 with *err_r. */
int store_spam_threshold_list(struct store *st, store_threshold_cb *cb, void *arg,
			      char **err_r);
/* A local account's thresholds: its own row's, else its domain's (each
 * score on its own), NAN where neither sets one. 0, or -1. */
int store_spam_threshold_user(struct store *st, int64_t user_id, double *junk_r,
			      double *reject_r);
/* The same in a read snapshot (a worker: store_read_here). */
int store_snap_spam_threshold_user(struct store_snap *sn, int64_t user_id, double *junk_r,
				   double *reject_r);


/* ---- message previews (preview.c; issue 9, the ext part) ---- */
/* RFC 8970 PREVIEW: the text kept for a stored body (messages.preview),
 * computed once by the reader. At most STORE_PREVIEW_MAX octets (256
 * characters of UTF-8). */
#define STORE_PREVIEW_MAX 1024
/* In a snapshot: 0 with *preview_r (heap; NULL when not computed yet), or -1
 * with *err_r. */
int store_snap_preview(struct store_snap *sn, int64_t message_id, char **preview_r,
		       char **err_r);
/* Any thread (requires store_start): a job on the committer that sets the
 * preview unless the body has one already (copies text). */
void store_preview_save(struct store *st, int64_t message_id, const char *text);
/* Kept SORT orders (sort_orders.c, imap/sortorder.c): in a snapshot, the
 * order of the mailbox's messages for crit (opaque octets): 0 with *uids_r
 * (xmalloc, *n_r UIDs) and the highest UID of the view it was made for, 1
 * when there is none (or the mailbox is another now), -1 with *err_r. */
int store_snap_sort_order(struct store_snap *sn, const char *user, const char *mailbox,
			  uint32_t uidvalidity, const void *crit, size_t crit_len,
			  uint32_t *max_uid_r, uint32_t **uids_r, size_t *n_r, char **err_r);
/* Any thread (requires store_start); copies crit and takes uids (xmalloc,
 * freed by the store; made by the caller off the loop, as it grows with the
 * mailbox): a job on the committer that keeps the order unless one for a
 * higher UID is there. */
void store_sort_order_save(struct store *st, const char *user, const char *mailbox,
			   uint32_t uidvalidity, const void *crit, size_t crit_len,
			   uint32_t max_uid, uint32_t *uids, size_t n);

/* ==== IMAP METADATA (metadata.c; RFC 5464; issue 9, the metadata part) ===
 * Table metadata: (user_id, mailbox_id, name) -> value. mailbox_id 0: server
 * entries; user_id 0 with mailbox_id 0: the server's /shared entries (the
 * administrator's, `postern metadata`); every other row belongs to its
 * user (a mailbox's /shared entries are stored like its /private ones:
 * there are no shared mailboxes). Names are stored lowercase (RFC 5464
 * 3.2: case-insensitive); values are octets (literal8 may hold NUL). A
 * mailbox's rows follow it on RENAME (its id is kept), are copied to the
 * new mailbox by RENAME INBOX (4.1), go with DELETE and with the user. */
#define STORE_METADATA_MAX_NAME 1024 /* octets of an entry name */
/* RFC 5464 3.2: an entry name; lowercases it in place. root: "/private"
 * and "/shared" alone are accepted (GETMETADATA with DEPTH); a name to set
 * needs a second component. NULL if valid, else a static reason (a BAD). */
const char *store_metadata_name_check(char *name, bool root);
/* The rows of (user, mailbox) in a snapshot: mailbox NULL = the user's
 * server entries. STORE_OK with *user_id_r and *mailbox_id_r (0 for the
 * server), STORE_NONEXISTENT (user or mailbox), STORE_ERROR with *err_r. */
int store_snap_metadata_scope(struct store_snap *sn, const char *user, const char *mailbox,
			      int64_t *user_id_r, int64_t *mailbox_id_r, char **err_r);
/* Every entry of (user_id, mailbox_id), in name order: cb(arg, name, size)
 * on the worker (name valid during the call). 0 or -1 with *err_r. */
typedef void store_metadata_name_cb(void *arg, const char *name, uint64_t size);
int store_snap_metadata_names(struct store_snap *sn, int64_t user_id, int64_t mailbox_id,
			      store_metadata_name_cb *cb, void *arg, char **err_r);
/* One value, appended to out: 1 found, 0 none, -1 with *err_r. */
int store_snap_metadata_get(struct store_snap *sn, int64_t user_id, int64_t mailbox_id,
			    const char *name, struct buf *out, char **err_r);
/* The domain of the server's /shared/admin default (mailto:postmaster@):
 * the first local domain among hostname and its parents, else the domain
 * added first. 1 with *domain_r (heap), 0 when there is no domain, -1. */
int store_snap_metadata_domain(struct store_snap *sn, const char *hostname, char **domain_r,
			       char **err_r);
int store_metadata_domain(struct store *st, const char *hostname, char **domain_r,
			  char **err_r);
/* SETMETADATA (4.3): every entry of v, in order, in one transaction on the
 * committer: value NULL deletes, else sets (copied). All or nothing: cb
 * gets STORE_OK, STORE_NONEXISTENT (user or mailbox gone), STORE_LIMIT (a
 * new entry beyond max_entries for the mailbox, or the server, or beyond
 * max_user_entries for the user: [METADATA TOOMANY]) or STORE_ERROR.
 * mailbox NULL: the user's server entries. Names: checked and lowercase. */
struct store_metadata_set {
	const char *name;
	const void *value; /* NULL: delete */
	size_t len;
};
void store_metadata_set(struct store *st, const char *user, const char *mailbox,
			const struct store_metadata_set *v, size_t n, unsigned max_entries,
			unsigned max_user_entries, store_res_cb *cb, void *arg);
/* The server's /shared entries (user 0), for the CLI on st->main. set:
 * value NULL deletes (1 deleted, 0 there was none), else 1 set; -1 with
 * *err_r (also for a new entry beyond max_entries). list: every entry in
 * name order with its value (valid during cb). 0 or -1 with *err_r. */
int store_metadata_server_set(struct store *st, const char *name, const void *value,
			      size_t len, unsigned max_entries, char **err_r);
typedef void store_metadata_value_cb(void *arg, const char *name, const void *value,
				     size_t len);
int store_metadata_server_list(struct store *st, store_metadata_value_cb *cb, void *arg,
			       char **err_r);


/* ---- the full-text index (fts.c; issue 9) ----
 * SEARCH's text keys are answered from an index that only NARROWS: it gives
 * the UIDs of a mailbox that may match (a superset), and the matcher
 * confirms each. Indexed per stored body (messages.id), so a body in several
 * mailboxes is indexed once. The text comes from an extractor (mime's
 * mime_extract_text: decoded, case-folded as SEARCH folds); needles are
 * given folded the same way. The SQLite backend: FTS5 trigram tables; a
 * PostgreSQL backend would use pg_trgm behind the same calls. Indexing runs
 * on the store's indexer thread (texts extracted there, inserted by the
 * committer in lazy jobs), never in a delivery's path; a body not indexed
 * yet (new mail, a store from before schema 8) is always a candidate. An
 * indexed body expunged for good is unindexed there too (its text extracted
 * again: its blob is kept until then; fts.c says how). */
enum {
	STORE_FTS_SUBJECT,
	STORE_FTS_FROM,
	STORE_FTS_TO,
	STORE_FTS_CC,
	STORE_FTS_BCC,
	STORE_FTS_HDR,  /* every header field of every part, "Name: value" */
	STORE_FTS_BODY, /* the text parts */
	STORE_FTS_NCOLS
};
/* Appends each column's text to cols[0..STORE_FTS_NCOLS-1]; cache may be
 * NULL (see mime/extract.h, whose mime_extract_text is one). */
typedef void store_fts_extract_fn(const char *msg, size_t len, const void *cache,
				  size_t cache_len, struct buf *cols);
/* Starts the indexer (after store_start; the daemon, when the option fts is
 * on). version: the extractor's (MIME_EXTRACT_VERSION). An index made by
 * another extractor (its version or its texts of built-in samples differ)
 * is emptied first and re-made in the background: its entries could not be
 * deleted exactly. 0 or -1. store_close stops it. */
int store_fts_start(struct store *st, store_fts_extract_fn *fn, unsigned version);
/* The option fts is on (the CLI): an indexed body losing its last reference
 * (`postern user del`) is left to the daemon's indexer to unindex. */
void store_fts_unindex(struct store *st);
/* The option fts is off (the daemon): the bodies left to the indexer go now
 * (their entries stay until a rebuild; an error is logged). */
void store_fts_off(struct store *st);
void store_fts_stop(struct store *st);
/* true while the indexer runs (the index may answer searches). */
bool store_fts_on(const struct store *st);
/* A query: AND / OR of terms; a term is a needle (folded, at least
 * STORE_FTS_MIN_NEEDLE characters: shorter ones cannot narrow) in any of
 * the columns of the bitmask cols (1u << STORE_FTS_*). */
#define STORE_FTS_MIN_NEEDLE 3
enum store_fts_op { STORE_FTS_AND, STORE_FTS_OR, STORE_FTS_TERM };
struct store_fts_q {
	enum store_fts_op op;
	unsigned cols;
	char *needle;
	struct store_fts_q *sub;
	size_t n_sub;
};
/* In a snapshot (a worker): the UIDs of the mailbox that may match q,
 * sorted (heap array in *uids_r, n in *n_r): 1; 0 if the index cannot
 * narrow q (nothing allocated: search everything); or a STORE_* error < 0
 * with *err_r. */
int store_fts_candidates(struct store_snap *sn, const char *user, const char *mailbox,
			 uint32_t uidvalidity, const struct store_fts_q *q, uint32_t **uids_r,
			 size_t *n_r, char **err_r);
/* postern index stats (main connection). */
struct store_fts_stats {
	/* bodies stored, indexed, waiting to be indexed; expunged ones waiting
	 * to be unindexed; the entries left of expunged ones (a rebuild drops
	 * them) */
	uint64_t messages, indexed, pending, unindex, dead;
	uint64_t mail_bytes, index_bytes;
};
int store_fts_stats(struct store *st, struct store_fts_stats *r, char **err_r);
/* postern index rebuild (main connection, alongside a running daemon):
 * user NULL empties the index (dropping the entries of expunged bodies)
 * and indexes every body; else re-indexes the bodies in user's mailboxes.
 * *n_r: the scope's bodies indexed at the end (by this call or by a running
 * daemon's indexer, which works on the same queue). A user's rebuild needs
 * an index made by this extractor (version, as store_fts_start). 0, or -1
 * with *err_r. */
int store_fts_rebuild(struct store *st, const char *user, store_fts_extract_fn *fn,
		      unsigned version, uint64_t *n_r, char **err_r);

/* ==== URLAUTH (urlauth.c; RFC 4467 7) ====
 * Table urlauth_keys: the mailbox access key of each mailbox (its owner's),
 * STORE_URLAUTH_KEY random octets, made on first use, deleted by RESETKEY
 * (then made anew by the next GENURLAUTH). A key follows its mailbox on
 * RENAME (the id is kept) and goes with DELETE and with the user. */
#define STORE_URLAUTH_KEY 32
/* In a snapshot: 1 with the key and the mailbox's UIDVALIDITY, 0 (no such
 * user or mailbox, or no key yet), -1 with *err_r. */
int store_snap_urlauth_key(struct store_snap *sn, const char *user, const char *mailbox,
			   uint32_t *uidvalidity_r, unsigned char *key_r, char **err_r);
/* Any thread (requires store_start): a committer job that gives the key of
 * (user, mailbox), made if there is none. cb(arg, result, key) on the loop:
 * STORE_OK with the key (valid during the call), STORE_NONEXISTENT,
 * STORE_ERROR. */
typedef void store_urlauth_key_cb(void *arg, int result, const unsigned char *key);
void store_urlauth_key(struct store *st, const char *user, const char *mailbox,
		       store_urlauth_key_cb *cb, void *arg);
/* RESETKEY: deletes the key of (user, mailbox), or of every mailbox of the
 * user (mailbox NULL). cb: STORE_OK, STORE_NONEXISTENT, STORE_ERROR. */
void store_urlauth_reset(struct store *st, const char *user, const char *mailbox,
			 store_res_cb *cb, void *arg);

#endif
