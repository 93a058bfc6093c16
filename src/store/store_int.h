/* Internals shared by the store's .c files. Not for use outside src/store/. */
#ifndef POSTERN_STORE_STORE_INT_H
#define POSTERN_STORE_STORE_INT_H
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include "store/store.h"

#define STORE_SCHEMA_VERSION 2
#define STORE_BLOB_DIRS 256
#define STORE_BLOB_NAME_LEN 32 /* 16 hex µs + 8 hex counter + 8 hex random */
#define STORE_SPOOL_STOCK 64
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
	STMT_COMMIT,
	STMT_ROLLBACK,
	STMT_INS_MESSAGE,
	STMT_RCPT_INBOX,
	STMT_BUMP_INBOX,
	STMT_INS_MAILBOX_MSG,
	STMT_INS_QUEUE,
	STMT_N
};

#define STORE_SQL_CACHE 64

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

	/* helpers that run fdatasync in parallel: one journal commit serves many */
	unsigned n_syncers;
	pthread_t *syncers;
	pthread_mutex_t sync_mu;
	pthread_cond_t sync_go, sync_done;
	uint64_t sync_gen;
	struct store_sync_item *sync_items;
	size_t sync_n, sync_next, sync_finished;
	bool sync_quit;
};

/* store.c */
sqlite3_stmt *store_stmt(struct store_db *d, enum store_stmt_id id);
/* The cached statement for a static SQL text on connection d, prepared on
 * first use; NULL with *err_r (or a log line when err_r is NULL) on error.
 * Give it back with store_stmt_done(), never sqlite3_finalize(). */
sqlite3_stmt *store_sql(struct store_db *d, const char *sql, char **err_r);
/* Resets (and clears bindings of) a cached statement after use. */
void store_stmt_done(sqlite3_stmt *s);
char *store_db_err(struct store_db *d);
int store_exec(struct store_db *d, const char *sql, char **err_r);
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

/* read.c: the reads on a given connection (main or a worker's). */
int store_db_mailbox_status(struct store_db *d, const char *user, const char *mailbox,
			    struct store_mailbox_status *status_r, char **err_r);
int store_db_mail_list(struct store_db *d, const char *user, const char *mailbox,
		       store_mail_cb *cb, void *arg, char **err_r);

/* async.c: closes the workers' read connections (store_close, after the
 * pools that used them are gone). */
void store_readers_free(struct store *st);

/* expunge.c: announces a committed delivery to the user's INBOX subscribers
 * (loop thread). */
void store_notify_delivery(struct store *st, int64_t user_id);
void store_committer_stop(struct store *st);

#endif
