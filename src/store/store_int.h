/* Internals shared by the store's .c files. Not for use outside src/store/. */
#ifndef POSTERN_STORE_STORE_INT_H
#define POSTERN_STORE_STORE_INT_H
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include "store/store.h"

#define STORE_SCHEMA_VERSION 14
#define STORE_BLOB_DIRS 256
#define STORE_BLOB_NAME_LEN 32 /* 16 hex µs + 8 hex counter + 8 hex random */
#define STORE_SPOOL_STOCK 64
/* How long a lazy commit (store_job_done) may stay unsynced when nothing
 * else makes the committer sync the log. */
#define STORE_LAZY_SYNC_MS 200
#define STORE_LOCAL_MAX 64     /* RFC 5321 4.5.3.1.1 */
#define STORE_DOMAIN_MAX 255   /* RFC 5321 4.5.3.1.2 */

/* Every SQL statement run more than once, prepared on first use and cached
 * per connection (a prepared statement belongs to one connection). */
enum store_stmt_id {
	STMT_DOMAIN_ID,
	STMT_USER_ID,
	STMT_USER_HASH,
	STMT_ALIAS_TARGETS,
	STMT_BLOB_EXISTS,
	STMT_BEGIN,
	STMT_BEGIN_READ,
	STMT_COMMIT,
	STMT_ROLLBACK,
	STMT_INS_MESSAGE,
	STMT_RCPT_INBOX,
	STMT_BUMP_INBOX,
	STMT_INS_MAILBOX_MSG,
	STMT_INS_QUEUE,
	STMT_QUOTA_ADD,
	STMT_N
};

/* At least the number of store_sql() literals one connection can run: the
 * committer and the readers run most of them (`grep -c 'store_sql(' src/store/`
 * counts 125 call sites today; 64 was reachable by a daemon that used
 * IMAP, METADATA, the index and the filters). 16 octets a slot. */
#define STORE_SQL_CACHE 256

struct store_db {
	sqlite3 *db;
	sqlite3_stmt *stmts[STMT_N];
	/* store_sql(): statements prepared once per connection, keyed by the
	 * address of their (static) SQL text. */
	struct {
		const char *sql;
		sqlite3_stmt *s;
	} cache[STORE_SQL_CACHE];
	int n_cache;
};

struct store_commit_req;
struct store_sub;

/* Work other than deliveries for the committer thread (it owns the write
 * connection cdb): run() is called there, in queue order, after the
 * deliveries taken in the same round; it owns the job from then on. */
struct store_job {
	struct store_job *next;
	void (*run)(struct store *st, struct store_job *job);
	/* Spools to make durable first (store_append): the committer syncs the
	 * spools of every job of a round together with the round's deliveries
	 * (steps 1 and 2 of commit.c), fills errs[i] and renamed[i] (as
	 * store_spools_durable) and sets synced, before run(). */
	struct store_spool **sps;
	size_t n_sps;
	int *errs;
	bool *renamed;
	bool synced;
	/* Set by the job's owner before queueing: its completion need not wait
	 * for its transaction to be durable (STORE, COPY, MOVE: a crash may undo
	 * the change, never lose mail). It becomes durable with the next sync of
	 * the database's log (commit.c: store_job_done). */
	bool lazy;
	/* store_job_done (committer only) */
	void (*tail)(struct store *st, struct store_job *job);
	struct store_job *tail_next;
};

/* One fsync for the helper threads. */
struct store_sync_item {
	int fd;
	bool datasync;
	int err;
	size_t req; /* caller's index */
};

struct store {
	char *dir;
	int spool_dfd;
	int lock_fd; /* flock held by the daemon (store_start) */
	int blob_dfd[STORE_BLOB_DIRS]; /* kept open: the hot path renames and fsyncs by fd */
	struct store_db main;          /* the caller's (loop) thread */
	struct store_db cdb;           /* the committer thread only */
	struct store_readers *readers; /* workers' read connections (async.c) */
	uint32_t spool_counter;
	/* operations committed (op_tail) that queued spam training: the
	 * trainer reads the queue when it moved (store_spam_queue_gen) */
	uint64_t spam_queue_gen;
	/* the statistical filter's counts kept in memory (spam.c, "the model
	 * cache"): on once the daemon's bayes asks (store_spam_cache_on) */
	uint64_t spam_gen;            /* moves at every change of the counts */
	pthread_mutex_t mc_mu;        /* the fields below */
	bool mc_on;
	uint64_t mc_gen;              /* spam_gen the slots were read at */
	size_t mc_n;                  /* slots in use */
	struct spam_cache_slot *mc_slots; /* SPAM_CACHE_SLOTS, made at first use */
	int spool_jobs; /* loop thread: spool writes and filters on workers (store_spool_jobs) */
	/* the postmaster target (store_set_postmaster) */
	char *postmaster;
	char *hostname;

	/* committer */
	struct loop *loop;
	unsigned commit_delay_us;
	bool started;
	bool stopping;
	bool committer_running;
	bool stocker_running;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct store_commit_req *head, *tail;
	struct store_job *jobs_head, *jobs_tail; /* under mu */
	bool working;          /* the committer holds a batch or jobs (under mu) */
	/* committer thread only (store_job_done): the round's job tails, in
	 * order; whether one of them waits for durability; whether cdb has
	 * commits that are not yet synced (lazy ones), and since when */
	struct store_job *tails_head, *tails_tail;
	bool round_sync;
	/* round_end: this round's sync of the log failed; the tails of its
	 * durable (non-lazy) jobs answer an error and unlink nothing. */
	bool round_failed;
	bool unsynced;
	uint64_t unsynced_ms;
	pthread_cond_t idle;   /* broadcast when it is done with them */
	/* change subscribers (loop thread only) */
	struct store_sub *subs;
	int notifying;  /* depth of notification rounds in progress */
	bool subs_dead; /* some subs were cancelled during a round */
	uint64_t n_commits, n_batches; /* under mu */
	/* spool files created ahead by the committer (under mu): creating a file
	 * contends with the committer's renames in spool/, which must not stall
	 * the loop thread */
	size_t stock_n;
	pthread_t stocker;
	pthread_cond_t stock_cond;
	int stock_fd[STORE_SPOOL_STOCK];
	char stock_name[STORE_SPOOL_STOCK][STORE_BLOB_NAME_LEN + 1];
	/* the cache builder (store_prebuild): large messages get their MIME
	 * cache built here before they reach the committer (under mu) */
	bool builder_running, builder_stopping;
	pthread_t builder;
	pthread_cond_t build_cond;
	struct store_prebuild *build_head, *build_tail;
	unsigned building; /* items taken by the builder and not yet handed on */

	/* helpers that run fdatasync in parallel: one journal commit serves many */
	unsigned n_syncers;
	pthread_t *syncers;
	pthread_mutex_t sync_mu;
	pthread_cond_t sync_go, sync_done;
	uint64_t sync_gen;
	struct store_sync_item *sync_items;
	size_t sync_n, sync_next, sync_finished;
	bool sync_quit;

	/* IMAP (mailbox.c, flags.c, quota.c) */
	store_cache_build_fn *cache_fn;
	store_cache_keys_fn *cache_keys_fn;
	unsigned max_mailboxes, max_mailbox_name;

	/* the full-text indexer (fts.c), NULL when off */
	struct store_fts *fts;
	/* an indexed body losing its last reference waits for the indexer to
	 * delete its entries (messages.fts = 2, store_message_gc): set when
	 * the option fts is on (store_fts_start, store_fts_unindex) */
	bool fts_unindex;
};

/* A read snapshot (async.c): a worker's read connection inside BEGIN. */
struct store_snap {
	struct store *st;
	struct store_db *d;
	uint64_t spam_gen; /* st->spam_gen before the snapshot's first read */
};

/* The model cache's end (store_close). */
void store_spam_cache_free(struct store *st);
/* Through the model cache (spam.c): 1 when spam_thresholds has no row, 0
 * when it has (or the cache is off), -1 when the read failed. */
int store_snap_thresholds_none(struct store_snap *sn);
/* The counts or thresholds changed on this connection (committed): this
 * process's generation moves and the mark a running daemon watches is
 * touched. */
void store_spam_mark_changed(struct store *st);

/* Blob names collected inside a transaction, unlinked after its COMMIT (a
 * crash in between leaves orphan blobs, which store_start removes). */
struct store_blobs {
	char **v;
	size_t n, cap;
};
void store_blobs_add(struct store_blobs *b, const char *name);
/* Unlinks every blob (if unlink) and frees the list. */
void store_blobs_done(struct store *st, struct store_blobs *b, bool unlink);
/* fts.c, inside a write transaction on d: message id goes if nothing refers
 * to it any more (no mailbox entry, no queue entry): its row is deleted and
 * its blob added to blobs (unlinked after COMMIT), or, when it is indexed
 * and st->fts_unindex, it is left to the indexer (fts = 2: row and blob
 * kept until its entries are deleted). 0 or -1. */
int store_message_gc(struct store *st, struct store_db *d, int64_t id, struct store_blobs *blobs);

/* store.c */
sqlite3_stmt *store_stmt(struct store_db *d, enum store_stmt_id id);
/* The cached statement for a static SQL text on connection d, prepared on
 * first use; NULL with *err_r (or a log line when err_r is NULL) on error.
 * Give it back with store_stmt_done(), never sqlite3_finalize(). */
sqlite3_stmt *store_sql(struct store_db *d, const char *sql, char **err_r);
/* Resets (and clears bindings of) a cached statement after use. */
void store_stmt_done(sqlite3_stmt *s);
char *store_db_err(struct store_db *d);
/* Runs sql (no rows) on connection d: 0, or -1 with *err_r when err_r is not
 * NULL. BEGIN, BEGIN IMMEDIATE, COMMIT and ROLLBACK, which frame every read
 * and write, run as statements prepared once per connection. */
int store_exec(struct store_db *d, const char *sql, char **err_r);
/* Runs a cached statement that returns no row (INSERT, UPDATE, DELETE) on
 * connection d to its end and gives it back (store_stmt_done). 0, or -1 with
 * *err_r when err_r is not NULL. s may be NULL (what store_stmt or store_sql
 * returned on error): -1, *err_r left as store_sql set it (store_stmt has
 * logged it), so `store_step_done(d, store_sql(d, SQL, err_r), err_r)` reads
 * as one step. */
static inline int store_step_done(struct store_db *d, sqlite3_stmt *s, char **err_r)
{
	if (s == NULL)
		return -1;
	int rc = sqlite3_step(s);
	store_stmt_done(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (err_r != NULL)
		*err_r = store_db_err(d);
	return -1;
}
/* A change mark: the file <data dir>/mark that the admin CLI touches after a
 * change the daemon must notice (store_mark_touch: 0, or -1 with errno) and
 * the daemon watches (store_mark_watch: an inotify descriptor for IN_ATTRIB
 * and IN_CLOSE_WRITE on it, or -1, logged). */
int store_mark_touch(struct store *st, const char *mark);
int store_mark_watch(struct store *st, const char *mark);
/* The mark file's identity and time ({0} when it is missing): what a
 * watch misses (it failed to start; the file was removed or replaced)
 * shows as a change here. */
void store_mark_stamp(struct store *st, const char *mark, struct store_stamp *r);
/* blobs/ subdirectory (0..255) of a blob name. */
int store_blob_dir(const char *name);
/* "xx/name" relative to blobs/, for messages. */
void store_blob_path(const char *name, char *path, size_t size);
/* The UIDVALIDITY for a new mailbox: strictly greater than every one handed
 * out before by this store, nonzero, 32 bits. Call inside the write
 * transaction that creates the mailbox (the counter is a row of the same
 * database). 0, or -1 with *err_r. */
int store_uidvalidity_next(struct store_db *d, uint32_t *uidvalidity_r, char **err_r);

/* accounts.c: address helpers */
/* Splits "local@domain" at the last '@' into lowercase copies. local may be
 * empty only if allow_empty_local (catch-all "@domain"). 0 or -1 with *err_r. */
int store_addr_split(const char *addr, bool allow_empty_local, char **local_r, char **domain_r,
		     char **err_r);
/* Domain id or 0 if not local, -1 on database error. */
int64_t store_domain_id(struct store_db *d, const char *domain);
/* User id or 0 if none, -1 on database error. */
int64_t store_user_id(struct store_db *d, const char *addr, char **err_r);

/* commit.c */
int store_committer_start(struct store *st);
/* Queues a job for the committer (any thread; requires store_start). */
void store_job_queue(struct store *st, struct store_job *job);
/* Committer, from a job's run(), after its COMMIT (or ROLLBACK): tail(st,
 * job) does what may only follow a durable commit (unlinking blobs the
 * transaction freed, posting the completion to the loop). The committer
 * runs its jobs' transactions without a sync each (cdb is synchronous =
 * NORMAL), then syncs the database's log once for the whole round (with
 * the round's deliveries) and only then runs the tails, in job order:
 * group commit for IMAP writes as for SMTP. A round of lazy jobs only
 * skips the sync; their commits become durable with the next one (at
 * most STORE_LAZY_SYNC_MS later). */
void store_job_done(struct store *st, struct store_job *job,
		    void (*tail)(struct store *st, struct store_job *job));

/* Spools handed to the committer by store_append (flags.c). Loop thread:
 * store_spools_take marks them taken (like store_commit). Committer:
 * store_spools_durable runs steps 1 and 2 of a commit on them (flush,
 * fdatasync, rename into blobs/, directory fsync, in parallel as for a
 * batch): errs[i] 0 means durable in blobs/; renamed[i] says where the file
 * is. store_spool_cache builds the MIME cache of a durable spool (no-op
 * without a builder). Loop thread: store_spool_release frees a spool (the
 * spool file is unlinked unless renamed). */
void store_spools_take(struct store_spool **sps, size_t n);
void store_spools_durable(struct store *st, struct store_spool **sps, size_t n, int *errs,
			  bool *renamed);
void store_spool_cache(struct store *st, struct store_spool *sp, struct buf *out);
const char *store_spool_blob(const struct store_spool *sp);
void store_spool_release(struct store_spool *sp, bool renamed);
/* Large messages (above STORE_CACHE_INLINE_MAX) get their MIME cache built on
 * the store's builder thread before they are handed to the committer, so that
 * building it (mapping and parsing tens of MB can take hundreds of ms) never
 * holds the other sessions' commits: then(arg) runs on the builder thread
 * once out[i] holds the cache of each large sps[i] (out[i] stays empty for
 * the others and on failure: the committer builds those). Without a builder
 * or without a large spool, then(arg) runs at once on the calling thread.
 * Loop thread, after store_spools_take / store_commit took the spools. */
void store_prebuild(struct store *st, struct store_spool **sps, size_t n, struct buf *out,
		    void (*then)(void *arg), void *arg);

/* read.c: the reads on a given connection (main, the committer's, or a
 * worker's). */
/* RFC 9051 5.1: INBOX is case-insensitive, also as the first level of a
 * hierarchical name; NULL is INBOX. Other names are as given. Returns name
 * or "INBOX"; for "inbox/x" a heap copy in *copy_r (free it), else NULL. */
const char *store_mailbox_norm(const char *name, char **copy_r);
/* The mailbox row: 1 found, 0 no such user or mailbox, -1 error (*err_r set
 * unless 1). status_r may be NULL; its messages is counted only with count
 * (the count grows with the mailbox). user_id_r, mailbox_id_r may be NULL. */
int store_db_mailbox(struct store_db *d, const char *user, const char *mailbox, bool count,
		     int64_t *user_id_r, int64_t *mailbox_id_r,
		     struct store_mailbox_status *status_r, char **err_r);
int store_db_mailbox_status(struct store_db *d, const char *user, const char *mailbox,
			    struct store_mailbox_status *status_r, char **err_r);
int store_db_mail_list(struct store_db *d, const char *user, const char *mailbox,
		       store_mail_cb *cb, void *arg, char **err_r);
/* Writer: the sort_keys row of message_id from its cache (store.h,
 * store_cache_keys_fn), or no row for a cache the keys_fn does not read;
 * nothing without a keys_fn. 0, or -1 on a database error. */
int store_db_sort_keys(struct store_db *d, const struct store *st, int64_t message_id,
		       const void *cache, size_t len);

/* async.c: closes the workers' read connections (store_close, after the
 * pools that used them are gone). */
void store_readers_free(struct store *st);

/* expunge.c: announces a committed delivery to the user's INBOX subscribers
 * (loop thread). */
void store_notify_delivery(struct store *st, int64_t user_id);
/* The per-user subscribers (store_subscribe_user) of user_id, or of user by
 * name when user_id is 0 (expunge.c). */
void store_notify_user(struct store *st, int64_t user_id, const char *user);
/* Announces ch to the subscribers of mailbox_id (loop thread). */
void store_notify_mailbox(struct store *st, const struct store_change *ch, int64_t mailbox_id);

/* mailbox.c: inside a write transaction on d. */
/* Removes the entries with the given UIDs (sorted) from the mailbox: the
 * expunge log gets them with the mailbox's next MODSEQ (one per call,
 * *modseq_r), messages left without any reference go (store_message_gc: their
 * blobs added to blobs, or left to the indexer), and with quota the owner's usage goes down. uids is
 * compacted to the UIDs actually removed (*n updated). 0 or -1. */
int store_entries_remove(struct store *st, struct store_db *d, int64_t mailbox_id, uint32_t *uids, size_t *n,
			 bool quota, uint64_t *modseq_r, struct store_blobs *blobs);
/* A new user's rows beyond INBOX: the default special-use mailboxes, the
 * subscriptions of those and INBOX, the quota row. 0 or -1 with *err_r. */
int store_user_init(struct store_db *d, int64_t user_id, char **err_r);
/* ---- IMAP write operations (mailbox.c, flags.c) ----
 * One job type for every IMAP write: on the committer, prep (may be NULL)
 * runs outside the transaction (blob syncing), then body inside BEGIN
 * IMMEDIATE ... COMMIT (rolled back unless it returns STORE_OK), then after
 * (may be NULL) with the final result. On the loop thread, done gives the
 * caller its callback; then the notes are announced (only after success)
 * and everything is freed. */
struct store_op_note {
	enum store_change_kind kind;
	int64_t mailbox_id;
	uint32_t *uids;
	size_t n_uids;
	uint64_t highestmodseq;
};

struct store_op {
	struct store_job job; /* first: the committer sees only this */
	struct store *st;
	void (*prep)(struct store_op *op);
	int (*body)(struct store_op *op, struct store_db *d);
	void (*after)(struct store_op *op);
	void (*done)(struct store_op *op);
	int result;
	char *user, *name, *to, *special_use, *flags;
	uint32_t uidvalidity;
	bool on, move;
	bool spam_queued; /* the transaction queued spam training (flags.c) */
	char fop;
	uint64_t unchangedsince;
	uint32_t *uids;
	size_t n;
	/* results */
	uint32_t dst_uidvalidity, first_uid;
	uint32_t *src, *dst;
	size_t n_pairs;
	struct store_flag_results *fr;
	uint32_t *fr_slot; /* fr->flags by hash (flags.c): index + 1, 0 free */
	size_t n_fr_slot;
	/* append */
	struct store_spool **sps;
	char **aflags;
	time_t *dates;
	int *tzs, *errs;
	bool *renamed;
	struct buf *caches;
	/* cache save */
	int64_t message_id;
	void *cache;
	size_t cache_len;
	/* the caller's callback (one of) and argument */
	store_res_cb *res_cb;
	store_append_cb *append_cb;
	store_flags_cb *flags_cb;
	store_copy_cb *copy_cb;
	void *arg;
	struct store_blobs blobs;
	struct store_op_note *notes;
	size_t n_notes;
	bool user_change; /* CREATE, DELETE, RENAME, SUBSCRIBE: store_notify_user */
};
struct store_op *store_op_new(struct store *st, const char *user);
/* Queues op (requires store_start); its done runs later on the loop. */
void store_op_queue(struct store_op *op);
/* Adds a note; uids are copied. */
void store_op_note(struct store_op *op, enum store_change_kind kind, int64_t mailbox_id,
		   const uint32_t *uids, size_t n, uint64_t highestmodseq);
/* Moves n entries of src_id (UIDs uids, sorted; missing ones skipped) into
 * dst_id with new UIDs, keeping flags and dates; with move, removes them
 * from src_id (expunge log; quota unchanged), else counts them against
 * user_id's quota (STORE_OVERQUOTA). Fills op->src/dst/n_pairs and
 * op->dst_uidvalidity, and the notes. A store_res. */
int store_copy_entries(struct store_op *op, struct store_db *d, int64_t user_id, int64_t src_id,
		       int64_t dst_id, const uint32_t *uids, size_t n, bool move);
/* Creates name (and its missing parents) for user_id. A store_res. */
int store_mailbox_insert(struct store *st, struct store_db *d, int64_t user_id,
			 const char *name, const char *special_use, bool parents);

/* quota.c: counts bytes and msgs (may be negative) against user_id's quota:
 * 1 done, 0 over a limit (nothing changed; never for a decrease), -1 error. */
int store_quota_add(struct store_db *d, int64_t user_id, int64_t bytes, int64_t msgs);
void store_committer_stop(struct store *st);

/* spam.c: the training queue, inside the caller's transaction (flags.c) */
enum { STORE_SPAM_MB_OTHER, STORE_SPAM_MB_JUNK, STORE_SPAM_MB_TRASH };
/* STORE_SPAM_MB_* of a mailbox, -1 on error. */
int store_spam_mailbox_kind(struct store_db *d, int64_t mailbox_id);
/* Queues a training row (in the caller's transaction): 1 (queued), -1 on error. */
int store_spam_queue_add(struct store_db *d, int64_t user_id, int64_t message_id, bool spam);
/* COPY/MOVE of message_id from src to dst: queues spam (into a Junk
 * mailbox from elsewhere) or ham (out of Junk, not into Trash). 1 if it
 * queued (the caller sets op->spam_queued), 0 if not, -1 on error. */
int store_spam_copied(struct store_db *d, int64_t user_id, int64_t src_id, int64_t dst_id,
		      int64_t message_id);
/* STORE: flags before and after (space-separated): $Junk gained queues
 * spam, $NotJunk gained ham (RFC 5788 keywords, as Thunderbird sets them).
 * As store_spam_copied. */
int store_spam_keywords(struct store_db *d, int64_t user_id, int64_t message_id,
			const char *before, const char *after);

#endif
