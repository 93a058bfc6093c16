/* Spool files and the group committer.
 *
 * A session streams DATA into a spool file (user-space buffered; once its
 * 64 KiB buffer fills, a worker writes it while the session fills a second
 * one: store_spool_async). store_commit
 * queues the spool and the delivery for the committer thread, which takes every
 * pending commit at once and, per batch:
 *   1. writes each spool's remaining buffer and fdatasyncs it (in parallel, so
 *      one journal commit of the file system serves many files),
 *   2. renames each into blobs/<xx>/ and fsyncs each touched directory once,
 *   3. runs ONE transaction with every message, mailbox entry and queue entry,
 *   4. posts each session's callback to the loop.
 * Order matters: a message row never exists before its blob is durable, so a
 * crash leaves at worst an orphan blob, which store_open removes. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/xmalloc.h"

#define SPOOL_BUF_SIZE (64 * 1024)

/* Async writing: the loop thread appends to bbuf; when it holds a full
 * buffer and no write is in flight, bbuf and wbuf swap and a worker writes
 * wbuf. Only one write is in flight, so the file gets the bytes in order.
 * While a write is in flight the worker alone touches fd, wbuf, wlen and
 * werr. When a commit comes in meanwhile, the committer waits for the
 * worker's write (wstate, under wmu), or does the write itself if no worker
 * has started it yet: the commit path never waits for the loop to relay a
 * completion, nor for a busy pool to get round to the job. The completion on the
 * loop thread (writing) then starts the next write or wakes the session; a
 * spool discarded or freed meanwhile is freed by it (the loop thread owns
 * the spool's lifetime). */
struct store_spool {
	struct store *st;
	int fd;
	int err; /* sticky errno of a failed write: surfaces at commit */
	size_t size;
	size_t blen, bcap;
	char *bbuf;
	/* store_spool_async */
	struct pool *pool;
	store_spool_cb *ready;
	void *ready_arg;
	bool writing;   /* loop thread: a write's completion has not run yet */
	bool discarded; /* loop thread: freed during a write; the completion frees */
	bool committed; /* loop thread: store_commit took it */
	bool unlink_at_free;
	bool in_buf; /* committer: the whole message is in bbuf (for the cache) */
	struct spool_filter *filter; /* store_spool_filter waiting for a write */
	/* store_delivery.prefix, still to be written before the spool's bytes
	 * (spool_prefix_apply, on the builder or the committer) */
	char *prefix;
	size_t prefix_len;
	pthread_mutex_t wmu;
	pthread_cond_t wcv;
	enum { W_IDLE, W_QUEUED, W_RUNNING, W_TAKEN } wstate; /* under wmu */
	char *wbuf;
	size_t wlen, wcap;
	int werr;
	char name[STORE_BLOB_NAME_LEN + 1];
};

struct store_commit_rcpt {
	char *addr, *orcpt, *notify;
};

struct store_commit_req {
	struct store_commit_req *next;
	struct store *st;
	struct store_spool *sp;
	char *txid, *mail_from, *envid, *ret, *auth_user;
	char *queue_from; /* queue.mail_from (SRS), or NULL */
	bool junk;        /* local recipients: their \Junk mailbox, not INBOX */
	bool *junk_users; /* per user_ids entry (store_delivery.junk_users), or NULL */
	bool hold;        /* the queue entries start held (store_delivery.hold) */
	time_t received;
	int tz; /* the server's zone at received, seconds east (INTERNALDATE) */
	int64_t *user_ids;
	int64_t *junk_ids; /* per user: the \Junk mailbox it went to, 0 INBOX */
	size_t n_users;
	struct store_commit_rcpt *remote;
	size_t n_remote;
	store_commit_cb *cb;
	void *arg;
	int err;  /* errno of the blob's failure, 0 while fine */
	bool renamed;
	bool empty; /* no recipients: nothing to store, success */
	bool gone;  /* a local recipient no longer exists: nothing stored */
	bool overquota; /* a local recipient is over its quota: nothing stored */
	struct buf cache; /* the MIME cache (store_set_cache_builder) */
	int result;
	bool body_8bit, smtputf8; /* messages.body_8bit, .smtputf8 (outbound) */
};

/* ---- spool ---- */

static void spool_name(struct store *st, char *name)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	uint64_t us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	uint32_t rnd = rand_u32();
	snprintf(name, STORE_BLOB_NAME_LEN + 1, "%016llx%08x%08x", (unsigned long long)us,
		 __atomic_add_fetch(&st->spool_counter, 1, __ATOMIC_RELAXED), rnd);
}

static bool stock_take(struct store *st, struct store_spool *sp)
{
	bool got = false;
	pthread_mutex_lock(&st->mu);
	if (st->stock_n > 0) {
		st->stock_n--;
		sp->fd = st->stock_fd[st->stock_n];
		memcpy(sp->name, st->stock_name[st->stock_n], sizeof sp->name);
		got = true;
	}
	if (st->stock_n < STORE_SPOOL_STOCK / 2)
		pthread_cond_signal(&st->stock_cond);
	pthread_mutex_unlock(&st->mu);
	return got;
}

/* On the stocker thread: creating files in spool/ takes ~0.5 ms each on the
 * dev VM under commit load (journal handles), too slow for the loop or the
 * committer. */
static void stock_refill(struct store *st)
{
	for (;;) {
		pthread_mutex_lock(&st->mu);
		bool full = st->stock_n >= STORE_SPOOL_STOCK || st->stopping;
		pthread_mutex_unlock(&st->mu);
		if (full)
			return;
		char name[STORE_BLOB_NAME_LEN + 1];
		spool_name(st, name);
		int fd = openat(st->spool_dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return; /* store_spool_new creates its own and reports the error */
		pthread_mutex_lock(&st->mu);
		/* spool_restock may have filled it meanwhile */
		bool room = st->stock_n < STORE_SPOOL_STOCK;
		if (room) {
			st->stock_fd[st->stock_n] = fd;
			memcpy(st->stock_name[st->stock_n], name, sizeof name);
			st->stock_n++;
		}
		pthread_mutex_unlock(&st->mu);
		if (!room) {
			close(fd);
			unlinkat(st->spool_dfd, name, 0);
			return;
		}
	}
}

static void *stocker_main(void *arg)
{
	struct store *st = arg;
	pthread_setname_np(pthread_self(), "stocker"); /* top -H, perf --sort comm */
	pthread_mutex_lock(&st->mu);
	while (!st->stopping) {
		if (st->stock_n >= STORE_SPOOL_STOCK / 2) {
			pthread_cond_wait(&st->stock_cond, &st->mu);
			continue;
		}
		pthread_mutex_unlock(&st->mu);
		stock_refill(st);
		pthread_mutex_lock(&st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

static void stock_free(struct store *st)
{
	for (size_t i = 0; i < st->stock_n; i++) {
		close(st->stock_fd[i]);
		unlinkat(st->spool_dfd, st->stock_name[i], 0);
	}
	st->stock_n = 0;
}

struct store_spool *store_spool_new(struct store *st, char **err_r)
{
	struct store_spool *sp = xcalloc(1, sizeof *sp);
	sp->st = st;
	for (int tries = 0; !stock_take(st, sp); tries++) {
		spool_name(st, sp->name);
		sp->fd = openat(st->spool_dfd, sp->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
				0600);
		if (sp->fd >= 0)
			break;
		if (errno != EEXIST || tries >= 3) {
			*err_r = xasprintf("create spool file: %s", strerror(errno));
			free(sp);
			return NULL;
		}
	}
	sp->bbuf = xmalloc(SPOOL_BUF_SIZE);
	sp->bcap = SPOOL_BUF_SIZE;
	pthread_mutex_init(&sp->wmu, NULL);
	pthread_cond_init(&sp->wcv, NULL);
	return sp;
}

static int spool_flush(struct store_spool *sp)
{
	if (sp->blen == 0)
		return 0;
	if (fdio_write_all(sp->fd, sp->bbuf, sp->blen) < 0) {
		sp->err = errno;
		return -1;
	}
	sp->blen = 0;
	return 0;
}

static void spool_write_work(void *arg)
{
	struct store_spool *sp = arg;
	pthread_mutex_lock(&sp->wmu);
	bool mine = sp->wstate == W_QUEUED;
	if (mine)
		sp->wstate = W_RUNNING;
	pthread_mutex_unlock(&sp->wmu);
	if (!mine)
		return; /* the committer took it */
	int err = fdio_write_all(sp->fd, sp->wbuf, sp->wlen) < 0 ? errno : 0;
	pthread_mutex_lock(&sp->wmu);
	sp->werr = err;
	sp->wstate = W_IDLE;
	pthread_cond_broadcast(&sp->wcv);
	pthread_mutex_unlock(&sp->wmu);
}

static void spool_write_done(void *arg);
static void spool_filter_start(struct store_spool *sp);

/* Hands the full buffer to a worker; the caller keeps filling the other. */
static void spool_write_start(struct store_spool *sp)
{
	char *b = sp->wbuf;
	size_t cap = sp->wcap;
	sp->wbuf = sp->bbuf;
	sp->wcap = sp->bcap;
	sp->wlen = sp->blen;
	if (b == NULL) {
		b = xmalloc(SPOOL_BUF_SIZE);
		cap = SPOOL_BUF_SIZE;
	}
	sp->bbuf = b;
	sp->bcap = cap;
	sp->blen = 0;
	sp->writing = true;
	sp->wstate = W_QUEUED; /* no other thread looks at it yet */
	sp->st->spool_jobs++;
	pool_submit(sp->pool, spool_write_work, spool_write_done, sp);
}

static void spool_free(struct store_spool *sp, bool unlink_spool);

/* Committer thread: the write in flight (if any) has ended; 0, or -1 with
 * sp->err set if it failed. */
static int spool_write_wait(struct store_spool *sp)
{
	if (sp->pool == NULL)
		return 0;
	pthread_mutex_lock(&sp->wmu);
	bool take = sp->wstate == W_QUEUED;
	if (take)
		sp->wstate = W_TAKEN;
	while (sp->wstate == W_RUNNING)
		pthread_cond_wait(&sp->wcv, &sp->wmu);
	int err = sp->werr;
	pthread_mutex_unlock(&sp->wmu);
	if (take && fdio_write_all(sp->fd, sp->wbuf, sp->wlen) < 0)
		err = errno;
	if (err && !sp->err)
		sp->err = err;
	return sp->err ? -1 : 0;
}

/* The worker's completion, on the loop thread. */
static void spool_write_done(void *arg)
{
	struct store_spool *sp = arg;
	sp->writing = false;
	sp->st->spool_jobs--;
	if (sp->discarded) {
		if (sp->filter != NULL) {
			/* its done still runs (an orphan's: nothing kept), and
			 * frees the spool after it */
			spool_filter_start(sp);
			return;
		}
		spool_free(sp, sp->unlink_at_free);
		return;
	}
	if (sp->committed)
		return; /* the committer has it (and waited for this write) */
	if (sp->werr && !sp->err)
		sp->err = sp->werr;
	if (sp->filter != NULL) {
		spool_filter_start(sp); /* the rest is written by the filter */
		return;
	}
	if (!sp->err && sp->blen >= SPOOL_BUF_SIZE)
		spool_write_start(sp);
	/* Last: the callback may discard the spool. */
	if (sp->ready != NULL)
		sp->ready(sp->ready_arg);
}

int store_spool_jobs(const struct store *st)
{
	return st->spool_jobs;
}

void store_spool_async(struct store_spool *sp, struct pool *p, store_spool_cb *ready, void *arg)
{
	sp->pool = p;
	sp->ready = ready;
	sp->ready_arg = arg;
}

bool store_spool_busy(const struct store_spool *sp)
{
	return sp->writing && sp->blen >= SPOOL_BUF_SIZE;
}

int store_spool_write(struct store_spool *sp, const void *p, size_t n)
{
	if (sp->err) {
		errno = sp->err;
		return -1;
	}
	if (sp->pool != NULL) {
		/* Never touches the disk here: a full buffer goes to a worker. */
		if (sp->blen + n > sp->bcap) {
			while (sp->blen + n > sp->bcap)
				sp->bcap *= 2;
			sp->bbuf = xrealloc(sp->bbuf, sp->bcap);
		}
		memcpy(sp->bbuf + sp->blen, p, n);
		sp->blen += n;
		sp->size += n;
		if (sp->blen >= SPOOL_BUF_SIZE && !sp->writing)
			spool_write_start(sp);
		return 0;
	}
	if (sp->blen + n > SPOOL_BUF_SIZE) {
		if (spool_flush(sp) < 0)
			return -1;
		if (n >= SPOOL_BUF_SIZE) {
			/* large chunk: no point copying it through the buffer */
			if (fdio_write_all(sp->fd, p, n) < 0) {
				sp->err = errno;
				return -1;
			}
			sp->size += n;
			return 0;
		}
	}
	memcpy(sp->bbuf + sp->blen, p, n);
	sp->blen += n;
	sp->size += n;
	return 0;
}

size_t store_spool_size(const struct store_spool *sp)
{
	return sp->size;
}

/* A spool whose file never got a byte goes back to the stock instead of
 * being unlinked: creating a file costs far more than the rest of a small
 * message's spooling (ext4's inode allocation), and store_spool_filter
 * hands every filtered message a replacement spool it rarely writes. */
static bool spool_restock(struct store_spool *sp)
{
	struct store *st = sp->st;
	bool kept = false;
	struct stat sb;
	if (sp->fd < 0 || sp->err || fstat(sp->fd, &sb) < 0 || sb.st_size != 0)
		return false;
	pthread_mutex_lock(&st->mu);
	if (st->stock_n < STORE_SPOOL_STOCK && !st->stopping) {
		st->stock_fd[st->stock_n] = sp->fd;
		memcpy(st->stock_name[st->stock_n], sp->name, sizeof sp->name);
		st->stock_n++;
		kept = true;
	}
	pthread_mutex_unlock(&st->mu);
	if (kept)
		sp->fd = -1;
	return kept;
}

static void spool_free(struct store_spool *sp, bool unlink_spool)
{
	if (sp->writing || sp->filter != NULL) {
		/* The worker's completion (a write's, or store_spool_filter's)
		 * is still to run: it frees. */
		sp->discarded = true;
		sp->unlink_at_free = unlink_spool;
		return;
	}
	if (unlink_spool && spool_restock(sp))
		unlink_spool = false;
	if (sp->fd >= 0)
		close(sp->fd);
	if (unlink_spool)
		unlinkat(sp->st->spool_dfd, sp->name, 0);
	free(sp->bbuf);
	free(sp->wbuf);
	free(sp->prefix);
	pthread_mutex_destroy(&sp->wmu);
	pthread_cond_destroy(&sp->wcv);
	free(sp);
}

void store_spool_discard(struct store_spool **spp)
{
	struct store_spool *sp = *spp;
	if (sp == NULL)
		return;
	*spp = NULL;
	sp->ready = NULL;
	spool_free(sp, true); /* or the completion of a write in flight does */
}

/* ---- rewriting a spool (store_spool_filter) ---- */

struct spool_filter {
	struct store_spool *sp;
	struct pool *pool;
	store_spool_filter_fn *fn;
	store_spool_filter_done_fn *done;
	void *arg;
	int result;
};

/* Worker: the spool is the filter's alone (no write in flight, the loop
 * thread waits for done). A spool whose bytes are all still in its buffer
 * (a small message: nothing written to its file yet) is filtered there, so
 * that it stays in memory and a later prefix is prepended without a copy
 * of the file (spool_prefix_apply); otherwise its last bytes are written
 * and the file mapped read-only (page cache, not the process's heap). The
 * replacement is written through a spool of its own without async (writes
 * on this thread); unused, its file goes back to the stock. */
static void spool_filter_work(void *arg)
{
	struct spool_filter *f = arg;
	struct store_spool *sp = f->sp, *out;
	struct store *st = sp->st;
	char *err = NULL;
	void *m = NULL;
	const char *msg = "";
	int fd = -1;

	f->result = -1;
	if (sp->err)
		return;
	bool in_memory = sp->blen == sp->size;
	if (in_memory) {
		if (sp->size > 0)
			msg = sp->bbuf;
	} else {
		if (spool_flush(sp) < 0)
			return;
		fd = openat(st->spool_dfd, sp->name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		if (sp->size > 0 &&
		    (m = mmap(NULL, sp->size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
			close(fd);
			return;
		}
		if (m != NULL)
			msg = m;
	}
	out = store_spool_new(st, &err);
	free(err);
	bool replaced = out != NULL && f->fn(f->arg, msg, sp->size, out);
	if (m != NULL)
		munmap(m, sp->size);
	if (fd >= 0)
		close(fd);
	if (out == NULL)
		return;
	if (!replaced) {
		spool_free(out, true);
		f->result = 0;
		return;
	}
	if (out->err || spool_flush(out) < 0) {
		spool_free(out, true);
		return;
	}
	/* out's file takes the place of sp's (sp's buffered bytes are the old
	 * content: dropped) */
	close(sp->fd);
	unlinkat(st->spool_dfd, sp->name, 0);
	sp->fd = out->fd;
	memcpy(sp->name, out->name, sizeof sp->name);
	sp->size = out->size;
	sp->blen = 0;
	out->fd = -1;
	spool_free(out, false);
	f->result = 0;
}

static void spool_filter_done(void *arg)
{
	struct spool_filter *f = arg;
	struct store_spool *sp = f->sp;
	/* discarded during the job: nobody holds sp now (done may discard
	 * it too, through its caller, which then frees it at once) */
	bool discarded = sp->discarded;

	sp->st->spool_jobs--;
	sp->filter = NULL;
	f->done(f->arg, f->result);
	free(f);
	if (discarded)
		spool_free(sp, sp->unlink_at_free);
}

static void spool_filter_start(struct store_spool *sp)
{
	sp->st->spool_jobs++;
	pool_submit(sp->filter->pool, spool_filter_work, spool_filter_done, sp->filter);
}

void store_spool_filter(struct store_spool *sp, struct pool *p, store_spool_filter_fn *fn,
			store_spool_filter_done_fn *done, void *arg)
{
	struct spool_filter *f = xcalloc(1, sizeof *f);

	*f = (struct spool_filter){sp, p, fn, done, arg, 0};
	sp->filter = f;
	if (!sp->writing)
		spool_filter_start(sp);
	/* else spool_write_done starts it once the write in flight ended */
}

/* ---- requests ---- */

static char *xstrdup_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void req_free(struct store_commit_req *req)
{
	if (req->sp)
		spool_free(req->sp, !req->renamed);
	free(req->txid);
	free(req->mail_from);
	free(req->envid);
	free(req->ret);
	free(req->auth_user);
	free(req->queue_from);
	free(req->user_ids);
	free(req->junk_ids);
	free(req->junk_users);
	for (size_t i = 0; i < req->n_remote; i++) {
		free(req->remote[i].addr);
		free(req->remote[i].orcpt);
		free(req->remote[i].notify);
	}
	free(req->remote);
	buf_free(&req->cache);
	free(req);
}

/* Any thread: hands a request to the committer. */
static void commit_enqueue(void *arg)
{
	struct store_commit_req *req = arg;
	struct store *st = req->st;
	pthread_mutex_lock(&st->mu);
	if (st->tail)
		st->tail->next = req;
	else
		st->head = req;
	st->tail = req;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->mu);
}

void store_commit(struct store *st, struct store_spool *sp, const struct store_delivery *d,
		  store_commit_cb *cb, void *arg)
{
	x_assert(st->started);
	struct store_commit_req *req = xcalloc(1, sizeof *req);
	req->st = st;
	req->sp = sp;
	req->txid = xstrdup(d->txid ? d->txid : "-");
	req->mail_from = xstrdup(d->mail_from ? d->mail_from : "");
	req->envid = xstrdup_null(d->envid);
	req->ret = xstrdup_null(d->ret);
	req->auth_user = xstrdup_null(d->auth_user);
	req->queue_from = xstrdup_null(d->queue_from);
	req->junk = d->junk;
	req->hold = d->hold;
	if (d->prefix_len > 0) {
		sp->prefix = xmalloc(d->prefix_len);
		memcpy(sp->prefix, d->prefix, d->prefix_len);
		sp->prefix_len = d->prefix_len;
	}
	req->body_8bit = d->body_8bit;
	req->smtputf8 = d->smtputf8;
	req->received = d->received;
	struct tm tm;
	if (localtime_r(&req->received, &tm) != NULL)
		req->tz = (int)tm.tm_gmtoff;
	/* duplicates would file the message twice into one INBOX */
	req->user_ids = xcalloc(d->n_users ? d->n_users : 1, sizeof *req->user_ids);
	req->junk_ids = xcalloc(d->n_users ? d->n_users : 1, sizeof *req->junk_ids);
	if (d->junk_users != NULL)
		req->junk_users = xcalloc(d->n_users ? d->n_users : 1, sizeof *req->junk_users);
	for (size_t i = 0; i < d->n_users; i++) {
		size_t j;
		for (j = 0; j < req->n_users; j++)
			if (req->user_ids[j] == d->user_ids[i])
				break;
		if (req->junk_users != NULL)
			/* a user listed twice: Junk if either entry says so */
			req->junk_users[j] = req->junk_users[j] || d->junk_users[i];
		if (j == req->n_users)
			req->user_ids[req->n_users++] = d->user_ids[i];
	}
	req->n_remote = d->n_remote;
	req->remote = xcalloc(d->n_remote ? d->n_remote : 1, sizeof *req->remote);
	for (size_t i = 0; i < d->n_remote; i++) {
		req->remote[i].addr = xstrdup(d->remote[i].addr);
		req->remote[i].orcpt = xstrdup_null(d->remote[i].orcpt);
		req->remote[i].notify = xstrdup_null(d->remote[i].notify);
	}
	req->cb = cb;
	req->arg = arg;

	/* A write still in flight: the committer (or the builder) waits for it
	 * (batch_blobs). */
	sp->ready = NULL;
	sp->committed = true;
	store_prebuild(st, &req->sp, 1, &req->cache, commit_enqueue, req);
}

static void commit_done(void *arg)
{
	struct store_commit_req *req = arg;
	req->cb(req->arg, req->result);
	/* Sessions holding the INBOX hear of it only once it is durable. */
	for (size_t i = 0; req->result == 0 && !req->empty && i < req->n_users; i++) {
		if (req->junk_ids[i] > 0) {
			/* quarantined: the sessions holding that Junk mailbox (an
			 * IDLE there hears of it, RFC 2177), not the INBOX's */
			struct store_change ch = {.kind = STORE_CHANGE_NEW};
			store_notify_mailbox(req->st, &ch, req->junk_ids[i]);
		} else {
			store_notify_delivery(req->st, req->user_ids[i]);
		}
		store_notify_user(req->st, req->user_ids[i], NULL);
	}
	req_free(req);
}

void store_job_queue(struct store *st, struct store_job *job)
{
	x_assert(st->started);
	job->next = NULL;
	pthread_mutex_lock(&st->mu);
	if (st->jobs_tail)
		st->jobs_tail->next = job;
	else
		st->jobs_head = job;
	st->jobs_tail = job;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->mu);
}

/* ---- step 1: data to disk ---- */

static void sync_item_run(struct store_sync_item *it)
{
	if (it->err == 0 && (it->datasync ? fdatasync(it->fd) : fsync(it->fd)) < 0)
		it->err = errno;
}

/* Helpers take items by index until none are left; the committer helps too. */
static void sync_run_items(struct store *st, uint64_t gen)
{
	for (;;) {
		pthread_mutex_lock(&st->sync_mu);
		if (st->sync_gen != gen || st->sync_next >= st->sync_n) {
			pthread_mutex_unlock(&st->sync_mu);
			return;
		}
		struct store_sync_item *it = &st->sync_items[st->sync_next++];
		pthread_mutex_unlock(&st->sync_mu);
		sync_item_run(it);
		pthread_mutex_lock(&st->sync_mu);
		if (++st->sync_finished == st->sync_n)
			pthread_cond_signal(&st->sync_done);
		pthread_mutex_unlock(&st->sync_mu);
	}
}

static void *syncer_main(void *arg)
{
	struct store *st = arg;
	pthread_setname_np(pthread_self(), "syncer"); /* top -H, perf --sort comm */
	uint64_t seen = 0;
	pthread_mutex_lock(&st->sync_mu);
	for (;;) {
		while (st->sync_gen == seen && !st->sync_quit)
			pthread_cond_wait(&st->sync_go, &st->sync_mu);
		if (st->sync_quit)
			break;
		seen = st->sync_gen;
		pthread_mutex_unlock(&st->sync_mu);
		sync_run_items(st, seen);
		pthread_mutex_lock(&st->sync_mu);
	}
	pthread_mutex_unlock(&st->sync_mu);
	return NULL;
}

/* fsyncs every item, in parallel when helpers exist: concurrent fsyncs on one
 * file system share journal commits and device flushes, sequential ones
 * pay for one each (measured: ~1 ms each on the dev VM). */
static void sync_items(struct store *st, struct store_sync_item *v, size_t n)
{
	if (st->n_syncers == 0 || n <= 1) {
		for (size_t i = 0; i < n; i++)
			sync_item_run(&v[i]);
		return;
	}
	pthread_mutex_lock(&st->sync_mu);
	st->sync_items = v;
	st->sync_n = n;
	st->sync_next = 0;
	st->sync_finished = 0;
	uint64_t gen = ++st->sync_gen;
	pthread_cond_broadcast(&st->sync_go);
	pthread_mutex_unlock(&st->sync_mu);
	sync_run_items(st, gen);
	pthread_mutex_lock(&st->sync_mu);
	while (st->sync_finished < st->sync_n)
		pthread_cond_wait(&st->sync_done, &st->sync_mu);
	st->sync_items = NULL;
	pthread_mutex_unlock(&st->sync_mu);
}

static int blob_dir(const struct store_spool *sp)
{
	return store_blob_dir(sp->name);
}

/* Writes sp->prefix (store_delivery.prefix) before the spool's bytes, on the
 * builder or the committer (never the loop), after every write of the spool
 * ended. A message still wholly in the buffer gets the prefix put in front
 * of it there (one write later, and the MIME cache is built from the
 * buffer); one partly on disk already is copied into a new spool file =
 * prefix + the old file's content (copy_file_range: the kernel copies, no
 * trip through user space), which then takes the old one's place. The
 * durability steps (fdatasync, rename, directory fsync) are the caller's as
 * for any spool. 0, or -1 with sp->err set. */
static int spool_prefix_apply(struct store *st, struct store_spool *sp)
{
	if (sp->prefix == NULL)
		return 0;
	if (sp->err)
		return -1;
	if (sp->blen == sp->size) {
		size_t n = sp->prefix_len + sp->blen;
		char *b = xmalloc(n > SPOOL_BUF_SIZE ? n : SPOOL_BUF_SIZE);
		memcpy(b, sp->prefix, sp->prefix_len);
		memcpy(b + sp->prefix_len, sp->bbuf, sp->blen);
		free(sp->bbuf);
		sp->bbuf = b;
		sp->bcap = n > SPOOL_BUF_SIZE ? n : SPOOL_BUF_SIZE;
		sp->blen = sp->size = n;
		x_free(&sp->prefix);
		return 0;
	}
	if (spool_flush(sp) < 0)
		return -1;
	char name[STORE_BLOB_NAME_LEN + 1];
	int in = openat(st->spool_dfd, sp->name, O_RDONLY | O_CLOEXEC), out = -1;
	for (int tries = 0; in >= 0 && out < 0 && tries < 4; tries++) {
		spool_name(st, name);
		out = openat(st->spool_dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out < 0 && errno != EEXIST)
			break;
	}
	int err = 0;
	if (in < 0 || out < 0 || fdio_write_all(out, sp->prefix, sp->prefix_len) < 0)
		err = errno;
	loff_t off = 0;
	while (!err && (size_t)off < sp->size) {
		ssize_t k = copy_file_range(in, &off, out, NULL, sp->size - (size_t)off, 0);
		if (k > 0)
			continue;
		if (k == 0) {
			err = EIO; /* the file is shorter than what was written to it */
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
			   errno == EOPNOTSUPP) {
			/* no kernel copy here: through a buffer */
			char buf[65536];
			ssize_t r = pread(in, buf, sizeof buf, off);
			if (r <= 0)
				err = r == 0 ? EIO : errno;
			else if (fdio_write_all(out, buf, (size_t)r) < 0)
				err = errno;
			else
				off += r;
		} else {
			err = errno;
		}
	}
	if (in >= 0)
		close(in);
	if (err) {
		if (out >= 0) {
			close(out);
			unlinkat(st->spool_dfd, name, 0);
		}
		sp->err = err;
		return -1;
	}
	/* the new file takes the old one's place */
	close(sp->fd);
	unlinkat(st->spool_dfd, sp->name, 0);
	sp->fd = out;
	memcpy(sp->name, name, sizeof sp->name);
	sp->size += sp->prefix_len;
	x_free(&sp->prefix);
	return 0;
}

/* Steps 1 and 2 for the whole batch. Afterwards req->err == 0 means the blob
 * is complete, durable and in blobs/.
 *
 * The rename comes first and the file's data and its directory are then
 * synced together: both must be durable before the metadata commit, but not
 * in any order between themselves. A crash in between leaves at worst a
 * partial blob in blobs/ that no message row names, which start-up removes
 * (store_start). That saves one sequential fsync per batch. */
void store_spools_durable(struct store *st, struct store_spool **sps, size_t n, int *errs,
			  bool *renamed)
{
	struct store_sync_item *items = xcalloc(2 * n + 1, sizeof *items);
	bool touched[STORE_BLOB_DIRS] = {false};
	size_t n_items = 0;

	for (size_t i = 0; i < n; i++) {
		struct store_spool *sp = sps[i];
		errs[i] = 0;
		renamed[i] = false;
		/* sp->err: a write made on the caller's thread failed earlier */
		if (spool_write_wait(sp) < 0 || sp->err || spool_prefix_apply(st, sp) < 0) {
			errs[i] = sp->err;
			continue;
		}
		/* Nothing was written to the file yet: the buffer holds it all. */
		sp->in_buf = sp->blen == sp->size;
		if (spool_flush(sp) < 0) {
			errs[i] = sp->err;
			continue;
		}
		/* Start writeback of every file before waiting on any. */
		sync_file_range(sp->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		int dir = blob_dir(sp);
		if (renameat(st->spool_dfd, sp->name, st->blob_dfd[dir], sp->name) < 0) {
			errs[i] = errno;
			continue;
		}
		renamed[i] = true;
		touched[dir] = true;
		items[n_items++] = (struct store_sync_item){.fd = sp->fd, .datasync = true, .req = i};
	}
	size_t n_files = n_items;
	for (int dir = 0; dir < STORE_BLOB_DIRS; dir++)
		if (touched[dir])
			items[n_items++] = (struct store_sync_item){.fd = st->blob_dfd[dir],
								    .req = (size_t)dir};
	sync_items(st, items, n_items);
	for (size_t k = 0; k < n_items; k++) {
		if (items[k].err == 0)
			continue;
		if (k < n_files) {
			errs[items[k].req] = items[k].err;
			continue;
		}
		/* The names in this directory may not survive a crash: fail them. */
		int dir = (int)items[k].req;
		for (size_t i = 0; i < n; i++)
			if (renamed[i] && !errs[i] && blob_dir(sps[i]) == dir)
				errs[i] = items[k].err;
	}
	free(items);
}

/* Steps 1 and 2 for a round: the batch's deliveries and the spools of the
 * jobs taken with it (store_append), synced together so that one journal
 * commit serves them all. */
static void batch_blobs(struct store *st, struct store_commit_req **v, size_t n,
			struct store_job *jobs)
{
	size_t total = n;
	for (struct store_job *j = jobs; j != NULL; j = j->next)
		total += j->n_sps;
	if (total == 0)
		return;
	struct store_spool **sps = xcalloc(total, sizeof *sps);
	int *errs = xcalloc(total, sizeof *errs);
	bool *renamed = xcalloc(total, sizeof *renamed);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		sps[k++] = v[i]->sp;
	for (struct store_job *j = jobs; j != NULL; j = j->next)
		for (size_t i = 0; i < j->n_sps; i++)
			sps[k++] = j->sps[i];
	store_spools_durable(st, sps, total, errs, renamed);
	for (size_t i = 0; i < n; i++) {
		v[i]->err = errs[i];
		v[i]->renamed = renamed[i];
	}
	k = n;
	for (struct store_job *j = jobs; j != NULL; j = j->next) {
		for (size_t i = 0; i < j->n_sps; i++, k++) {
			j->errs[i] = errs[k];
			j->renamed[i] = renamed[k];
		}
		j->synced = true;
	}
	free(sps);
	free(errs);
	free(renamed);
}

/* The cache is built from the bytes as they are on disk now: the buffer
 * when it holds the whole message, else the synced blob mapped read-only
 * (the spool's own fd is write-only). */
void store_spool_cache(struct store *st, struct store_spool *sp, struct buf *out)
{
	if (st->cache_fn == NULL)
		return;
	if (sp->in_buf || sp->size == 0) {
		st->cache_fn(sp->size ? sp->bbuf : "", sp->size, out);
		return;
	}
	int fd = openat(st->blob_dfd[blob_dir(sp)], sp->name, O_RDONLY | O_CLOEXEC);
	void *p = fd >= 0 ? mmap(NULL, sp->size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
	if (p == MAP_FAILED) {
		log_warn("store: cache of %s not built: %s", sp->name, strerror(errno));
	} else {
		st->cache_fn(p, sp->size, out);
		munmap(p, sp->size);
	}
	if (fd >= 0)
		close(fd);
}

/* ---- the cache builder ---- */

struct store_prebuild {
	struct store_prebuild *next;
	struct store_spool **sps;
	size_t n;
	struct buf *out;
	void (*then)(void *arg);
	void *arg;
};

static bool prebuild_wanted(const struct store_spool *sp)
{
	return sp->size > STORE_CACHE_INLINE_MAX;
}

void store_prebuild(struct store *st, struct store_spool **sps, size_t n, struct buf *out,
		    void (*then)(void *arg), void *arg)
{
	bool any = false;
	for (size_t i = 0; i < n && st->cache_fn != NULL; i++)
		any = any || prebuild_wanted(sps[i]);
	if (!any || !st->builder_running) {
		then(arg);
		return;
	}
	struct store_prebuild *b = xcalloc(1, sizeof *b);
	*b = (struct store_prebuild){NULL, sps, n, out, then, arg};
	pthread_mutex_lock(&st->mu);
	if (st->build_tail)
		st->build_tail->next = b;
	else
		st->build_head = b;
	st->build_tail = b;
	pthread_cond_signal(&st->build_cond);
	pthread_mutex_unlock(&st->mu);
}

/* Builder thread: the bytes as they will be stored (every write done), read
 * from the spool file; the committer renames it only after then(). A spool
 * whose write failed gets nothing here: the committer fails it. */
static void prebuild_one(struct store *st, struct store_spool *sp, struct buf *out)
{
	if (spool_write_wait(sp) < 0 || sp->err || spool_prefix_apply(st, sp) < 0 ||
	    spool_flush(sp) < 0)
		return;
	int fd = openat(st->spool_dfd, sp->name, O_RDONLY | O_CLOEXEC);
	void *p = fd >= 0 ? mmap(NULL, sp->size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
	if (p != MAP_FAILED) {
		st->cache_fn(p, sp->size, out);
		munmap(p, sp->size);
	}
	if (fd >= 0)
		close(fd);
}

static void *builder_main(void *arg)
{
	struct store *st = arg;
	pthread_setname_np(pthread_self(), "cache-builder"); /* top -H, perf --sort comm */
	pthread_mutex_lock(&st->mu);
	for (;;) {
		while (st->build_head == NULL && !st->builder_stopping)
			pthread_cond_wait(&st->build_cond, &st->mu);
		struct store_prebuild *b = st->build_head;
		if (b == NULL)
			break; /* stopping, and nothing left */
		st->build_head = b->next;
		if (st->build_head == NULL)
			st->build_tail = NULL;
		st->building++;
		pthread_mutex_unlock(&st->mu);
		for (size_t i = 0; i < b->n; i++)
			if (prebuild_wanted(b->sps[i]))
				prebuild_one(st, b->sps[i], &b->out[i]);
		b->then(b->arg);
		free(b);
		pthread_mutex_lock(&st->mu);
		st->building--;
		pthread_cond_broadcast(&st->idle);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

void store_spools_take(struct store_spool **sps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sps[i]->ready = NULL;
		sps[i]->committed = true;
	}
}

const char *store_spool_blob(const struct store_spool *sp)
{
	return sp->name;
}

void store_spool_release(struct store_spool *sp, bool renamed)
{
	spool_free(sp, !renamed);
}

/* ---- step 3: metadata ---- */

static void bind_text_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* RFC 6154 2: the account's mailbox with special use \Junk (the oldest if
 * several), "Junk" created with it when the account has none (in the
 * commit's transaction), or a plain "Junk" when that name is taken by a
 * mailbox without it. 1 with *id_r, 0 if none could be had (too many
 * mailboxes: INBOX then), -1 on error. */
static int junk_mailbox(struct store *st, struct store_db *d, int64_t user_id, int64_t *id_r)
{
	static const char *const find[] = {
		"SELECT id FROM mailboxes WHERE user_id = ?1 AND special_use = '\\Junk'"
		" ORDER BY id LIMIT 1",
		"SELECT id FROM mailboxes WHERE user_id = ?1 AND name = 'Junk'",
	};
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < sizeof find / sizeof find[0]; i++) {
			sqlite3_stmt *s = store_sql(d, find[i], NULL);
			if (s == NULL)
				return -1;
			sqlite3_bind_int64(s, 1, user_id);
			int rc = sqlite3_step(s);
			if (rc == SQLITE_ROW)
				*id_r = sqlite3_column_int64(s, 0);
			store_stmt_done(s);
			if (rc == SQLITE_ROW)
				return 1;
			if (rc != SQLITE_DONE)
				return -1;
		}
		if (round > 0)
			break;
		int r = store_mailbox_insert(st, d, user_id, "Junk", "\\Junk", false);
		if (r == STORE_LIMIT) {
			log_warn("store: user id %lld has no Junk mailbox and cannot have one more;"
				 " quarantined mail goes to INBOX",
				 (long long)user_id);
			return 0;
		}
		if (r != STORE_OK)
			return -1;
		sqlite3_stmt *s = store_sql(d, "INSERT OR IGNORE INTO subscriptions(user_id, name)"
					       " VALUES(?1, 'Junk')", NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, user_id);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	return 0;
}

/* into INBOX, or (junk) the account's \Junk mailbox */
static int insert_entry(struct store *st, struct store_db *d, int64_t user_id, int64_t msg_id,
			time_t received, int tz, bool junk, int64_t *junk_r)
{
	int64_t junk_id = 0;
	int k = junk ? junk_mailbox(st, d, user_id, &junk_id) : 0;
	if (k < 0)
		return -1;
	*junk_r = k > 0 ? junk_id : 0;
	sqlite3_stmt *s;
	if (k > 0) {
		s = store_sql(d, "UPDATE mailboxes SET uidnext = uidnext + 1,"
				 " highestmodseq = highestmodseq + 1 WHERE id = ?1"
				 " RETURNING id, uidnext - 1, highestmodseq", NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, junk_id);
	} else {
		s = store_stmt(d, STMT_BUMP_INBOX);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, user_id);
	}
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		/* rcpts_exist() said it was there, under the same write lock */
		store_stmt_done(s);
		log_err("store: user id %lld has no INBOX", (long long)user_id);
		return -1;
	}
	if (rc != SQLITE_ROW) {
		store_stmt_done(s);
		return -1;
	}
	int64_t mailbox_id = sqlite3_column_int64(s, 0);
	int64_t uid = sqlite3_column_int64(s, 1);
	int64_t modseq = sqlite3_column_int64(s, 2);
	/* RETURNING rows are only final once the statement has run to its end. */
	if (store_step_done(d, s, NULL) < 0)
		return -1;
	s = store_stmt(d, STMT_INS_MAILBOX_MSG);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int64(s, 2, uid);
	sqlite3_bind_int64(s, 3, msg_id);
	sqlite3_bind_int64(s, 4, modseq);
	sqlite3_bind_int64(s, 5, (int64_t)received);
	sqlite3_bind_int(s, 6, tz);
	return store_step_done(d, s, NULL);
}

/* 1 if every local recipient still has its INBOX, 0 if one was deleted since
 * RCPT TO, -1 on error. Inside the write transaction, so the answer holds
 * until COMMIT (user_del takes the same lock). */
static int rcpts_exist(struct store_db *d, struct store_commit_req *req)
{
	for (size_t i = 0; i < req->n_users; i++) {
		sqlite3_stmt *s = store_stmt(d, STMT_RCPT_INBOX);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, req->user_ids[i]);
		int rc = sqlite3_step(s);
		store_stmt_done(s);
		if (rc == SQLITE_DONE) {
			log_warn("store: %s: recipient user id %lld was deleted after RCPT TO;"
				 " not stored, temporary failure",
				 req->txid, (long long)req->user_ids[i]);
			return 0;
		}
		if (rc != SQLITE_ROW)
			return -1;
	}
	return 1;
}

/* 1 if the account is at or over a limit (store_quota_full's rule, on the
 * committer's connection), 0 if not, -1 on error. */
static int quota_at_limit(struct store_db *d, int64_t user_id)
{
	sqlite3_stmt *s = store_sql(d, "SELECT (storage_limit > 0 AND storage_used >="
				    " storage_limit) OR (message_limit > 0 AND message_used >="
				    " message_limit) FROM quotas WHERE user_id = ?1", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	int rc = sqlite3_step(s);
	int r = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) != 0 : rc == SQLITE_DONE ? 0 : -1;
	store_stmt_done(s);
	return r;
}

/* Counts without checking the limits (the grace below). */
static int quota_force(struct store_db *d, int64_t user_id, int64_t bytes)
{
	sqlite3_stmt *s = store_sql(d, "UPDATE quotas SET storage_used = storage_used + ?2,"
				    " message_used = message_used + 1 WHERE user_id = ?1", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	sqlite3_bind_int64(s, 2, bytes);
	return store_step_done(d, s, NULL);
}

/* RFC 9208 5.1: counts the message against every local recipient's quota,
 * one UPDATE each. 1 counted, 0 refused (nothing counted: the ones already
 * counted are taken back), -1 error.
 * SMTP has one reply at end of data for every recipient, and RCPT refuses
 * only an account at or over its limit already (store_quota_full, 452
 * 4.2.2). A message that does not fit an account still under its limit is
 * therefore refused only when it has no other recipient: refusing it for
 * all would come back on every retry (the retry's RCPT accepts that account
 * again) and hold the other recipients' copy hostage until the sender gives
 * up. With other recipients, such an account takes this last message over
 * its limit (as Dovecot's quota_grace lets the message that crosses the
 * limit in); the next delivery's RCPT refuses it. An account already at its
 * limit (it filled up after RCPT) refuses the whole delivery: the retry's
 * RCPT then refuses that recipient alone. */
static int quota_count(struct store_db *d, struct store_commit_req *req)
{
	int64_t size = (int64_t)req->sp->size;
	bool *over = xcalloc(req->n_users ? req->n_users : 1, sizeof *over);
	size_t n_over = 0;
	int r = 1;
	for (size_t i = 0; i < req->n_users && r == 1; i++) {
		int k = store_quota_add(d, req->user_ids[i], size, 1);
		if (k < 0)
			r = -1;
		else if (k == 0)
			over[i] = true, n_over++;
	}
	if (r == 1 && n_over > 0) {
		if (n_over == req->n_users && req->n_remote == 0)
			r = 0; /* nobody else waits for this message */
		for (size_t i = 0; i < req->n_users && r == 1; i++) {
			if (!over[i])
				continue;
			int k = quota_at_limit(d, req->user_ids[i]);
			if (k != 0)
				r = k < 0 ? -1 : 0;
		}
		for (size_t i = 0; i < req->n_users && r == 1; i++)
			if (over[i] && quota_force(d, req->user_ids[i], size) < 0)
				r = -1;
	}
	if (r != 1) {
		/* take back what was counted (the caller rolls back on -1 anyway) */
		for (size_t i = 0; i < req->n_users && r == 0; i++)
			if (!over[i] && store_quota_add(d, req->user_ids[i], -size, -1) < 0)
				r = -1;
		if (r == 0)
			log_info("store: %s: a recipient is over quota; not stored", req->txid);
	}
	free(over);
	return r;
}

static int insert_one(struct store_db *d, struct store_commit_req *req, time_t now)
{
	sqlite3_stmt *s = store_stmt(d, STMT_INS_MESSAGE);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, req->sp->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (int64_t)req->sp->size);
	sqlite3_bind_int64(s, 3, (int64_t)req->received);
	sqlite3_bind_text(s, 4, req->mail_from, -1, SQLITE_STATIC);
	bind_text_null(s, 5, req->envid);
	bind_text_null(s, 6, req->ret);
	bind_text_null(s, 7, req->auth_user);
	if (req->st->cache_fn == NULL)
		sqlite3_bind_null(s, 8);
	else if (req->cache.len == 0)
		sqlite3_bind_zeroblob(s, 8, 0);
	else
		sqlite3_bind_blob(s, 8, req->cache.data, (int)req->cache.len, SQLITE_STATIC);
	sqlite3_bind_int(s, 9, req->body_8bit);
	sqlite3_bind_int(s, 10, req->smtputf8);
	if (store_step_done(d, s, NULL) < 0)
		return -1;
	int64_t msg_id = sqlite3_last_insert_rowid(d->db);
	if (store_db_sort_keys(d, req->st, msg_id, req->cache.data, req->cache.len) < 0)
		return -1;
	for (size_t i = 0; i < req->n_users; i++)
		if (insert_entry(req->st, d, req->user_ids[i], msg_id, req->received, req->tz,
				 req->junk || (req->junk_users != NULL && req->junk_users[i]),
				 &req->junk_ids[i]) < 0)
			return -1;
	for (size_t i = 0; i < req->n_remote; i++) {
		s = store_stmt(d, STMT_INS_QUEUE);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, msg_id);
		sqlite3_bind_text(s, 2, req->remote[i].addr, -1, SQLITE_STATIC);
		bind_text_null(s, 3, req->remote[i].orcpt);
		bind_text_null(s, 4, req->remote[i].notify);
		sqlite3_bind_int64(s, 5, (int64_t)now);
		sqlite3_bind_int64(s, 6, (int64_t)now);
		/* the domain the scheduler groups by (the part after the last '@') */
		const char *at = strrchr(req->remote[i].addr, '@');
		if (at != NULL)
			sqlite3_bind_text(s, 7, at + 1, -1, SQLITE_STATIC);
		bind_text_null(s, 8, req->queue_from);
		sqlite3_bind_int(s, 9, req->hold);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	return 0;
}

static int batch_metadata(struct store *st, struct store_commit_req **v, size_t n)
{
	struct store_db *d = &st->cdb;
	time_t now = time(NULL);
	if (store_step_done(d, store_stmt(d, STMT_BEGIN), NULL) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (v[i]->err || v[i]->empty)
			continue;
		int ok = rcpts_exist(d, v[i]);
		if (ok < 0)
			goto rollback;
		v[i]->gone = ok == 0;
		if (!v[i]->gone && (ok = quota_count(d, v[i])) < 0)
			goto rollback;
		v[i]->overquota = !v[i]->gone && ok == 0;
		if (!v[i]->gone && !v[i]->overquota && insert_one(d, v[i], now) < 0)
			goto rollback;
	}
	if (store_step_done(d, store_stmt(d, STMT_COMMIT), NULL) < 0)
		goto rollback;
	return 0;
rollback:
	log_err("store: commit of %zu messages failed: %s", n, sqlite3_errmsg(d->db));
	store_step_done(d, store_stmt(d, STMT_ROLLBACK), NULL);
	return -1;
fail:
	log_err("store: begin failed: %s", sqlite3_errmsg(d->db));
	return -1;
}

/* ---- the committer ---- */

static void blob_unlink(struct store *st, struct store_commit_req *req)
{
	if (!req->renamed)
		return; /* still in spool/: req_free unlinks it */
	if (unlinkat(st->blob_dfd[blob_dir(req->sp)], req->sp->name, 0) < 0 && errno != ENOENT)
		log_warn("store: unlink blob %s: %s", req->sp->name, strerror(errno));
}

static void unsynced(struct store *st);

static void batch_run(struct store *st, struct store_commit_req *list, struct store_job *jobs)
{
	size_t n = 0;
	for (struct store_commit_req *r = list; r; r = r->next)
		n++;
	struct store_commit_req **v = xmalloc(n * sizeof *v);
	n = 0;
	for (struct store_commit_req *r = list; r; r = r->next)
		v[n++] = r;

	/* A delivery with no recipient (all filtered away) stores nothing. */
	for (size_t i = 0; i < n; i++)
		v[i]->empty = v[i]->n_users == 0 && v[i]->n_remote == 0;
	batch_blobs(st, v, n, jobs);
	size_t n_ok = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i]->empty) {
			blob_unlink(st, v[i]);
		} else if (v[i]->err) {
			log_err("store: %s: blob %s: %s", v[i]->txid, v[i]->sp->name,
				strerror(v[i]->err));
			blob_unlink(st, v[i]);
			v[i]->result = STORE_COMMIT_FAILED;
		} else {
			n_ok++;
		}
	}
	/* Outside the transaction: CPU work on bytes already durable. */
	for (size_t i = 0; st->cache_fn != NULL && i < n; i++)
		if (!v[i]->empty && !v[i]->err && v[i]->cache.len == 0)
			store_spool_cache(st, v[i]->sp, &v[i]->cache);
	int r = n_ok ? batch_metadata(st, v, n) : 0;
	for (size_t i = 0; i < n; i++) {
		struct store_commit_req *req = v[i];
		if (!req->err && !req->empty && r < 0) {
			blob_unlink(st, req);
			req->result = STORE_COMMIT_FAILED;
		} else if (!req->err && !req->empty && req->gone) {
			blob_unlink(st, req);
			req->result = STORE_COMMIT_RCPT_GONE;
		} else if (!req->err && !req->empty && req->overquota) {
			blob_unlink(st, req);
			req->result = STORE_COMMIT_OVERQUOTA;
		}
		/* The fd is no longer needed; close it here rather than on the loop. */
		close(req->sp->fd);
		req->sp->fd = -1;
		/* answered by round_end, once the database's log is synced */
	}
	if (r == 0 && n_ok > 0)
		unsynced(st);
	pthread_mutex_lock(&st->mu);
	st->n_commits += n;
	st->n_batches++;
	pthread_mutex_unlock(&st->mu);
	free(v);
}

/* ---- durability of the round ---- */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* cdb committed something that is not synced yet. */
static void unsynced(struct store *st)
{
	if (!st->unsynced)
		st->unsynced_ms = mono_ms();
	st->unsynced = true;
}

/* Makes every transaction committed so far durable: one sync of the
 * database's write-ahead log, what SQLite does at each COMMIT with
 * synchronous = FULL (the log is append-only in commit order, so one sync
 * covers every earlier commit of every connection). cdb runs with
 * synchronous = NORMAL, so the committer pays this once per round instead
 * of once per job. 0, or -1 (logged). */
static int log_sync(struct store *st)
{
	if (!st->unsynced)
		return 0;
	sqlite3_file *f = NULL;
	int rc = sqlite3_file_control(st->cdb.db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
	/* No open log file: nothing was written through it. */
	if (rc == SQLITE_OK && f != NULL && f->pMethods != NULL)
		rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
	if (rc != SQLITE_OK) {
		log_err("store: sync of the database log failed: %s", sqlite3_errstr(rc));
		return -1;
	}
	st->unsynced = false;
	return 0;
}

void store_job_done(struct store *st, struct store_job *job,
		    void (*tail)(struct store *st, struct store_job *job))
{
	job->tail = tail;
	job->tail_next = NULL;
	if (st->tails_tail)
		st->tails_tail->tail_next = job;
	else
		st->tails_head = job;
	st->tails_tail = job;
	unsynced(st); /* conservatively: it may have committed */
	if (!job->lazy)
		st->round_sync = true;
}

/* After the round's deliveries (list) and jobs have committed: one sync if
 * anything in the round must be durable before it is answered, then the
 * answers, in order. A delivery whose commit cannot be made durable is
 * answered with a temporary failure: the client retries, which may store it
 * twice but never loses it. */
static void round_end(struct store *st, struct store_commit_req *list)
{
	bool need = st->round_sync;
	for (struct store_commit_req *r = list; r != NULL && !need; r = r->next)
		need = r->result == 0 && !r->empty;
	st->round_failed = need && log_sync(st) < 0;
	if (st->round_failed)
		for (struct store_commit_req *r = list; r != NULL; r = r->next)
			if (r->result == 0 && !r->empty)
				r->result = STORE_COMMIT_FAILED;
	while (list != NULL) {
		struct store_commit_req *r = list;
		list = r->next;
		loop_post(st->loop, commit_done, r);
	}
	struct store_job *j = st->tails_head;
	st->tails_head = st->tails_tail = NULL;
	st->round_sync = false;
	while (j != NULL) {
		struct store_job *next = j->tail_next;
		j->tail(st, j); /* may post the job's end, which frees it */
		j = next;
	}
	st->round_failed = false;
}

/* Waits (under mu) for work; lazy commits left unsynced are synced after
 * STORE_LAZY_SYNC_MS without new work. */
static void wait_work(struct store *st)
{
	while (st->head == NULL && st->jobs_head == NULL && !st->stopping) {
		if (!st->unsynced) {
			pthread_cond_wait(&st->cond, &st->mu);
			continue;
		}
		uint64_t now = mono_ms(), due = st->unsynced_ms + STORE_LAZY_SYNC_MS;
		if (now >= due) {
			pthread_mutex_unlock(&st->mu);
			log_sync(st);
			st->unsynced = false; /* a failure was logged; do not spin on it */
			pthread_mutex_lock(&st->mu);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (due - now) * 1000000;
		ts.tv_sec += (time_t)(ns / 1000000000);
		ts.tv_nsec = (long)(ns % 1000000000);
		pthread_cond_timedwait(&st->cond, &st->mu, &ts);
	}
}

static void *committer_main(void *arg)
{
	struct store *st = arg;
	pthread_setname_np(pthread_self(), "committer"); /* top -H, perf --sort comm */
	/* Durability is the round's (round_end), not each COMMIT's. */
	if (store_exec(&st->cdb, "PRAGMA synchronous = NORMAL", NULL) < 0)
		log_warn("store: cdb stays synchronous = FULL: %s", sqlite3_errmsg(st->cdb.db));
	pthread_mutex_lock(&st->mu);
	for (;;) {
		wait_work(st);
		if (st->head == NULL && st->jobs_head == NULL)
			break; /* stopping, and nothing left */
		if (st->commit_delay_us && st->head != NULL && !st->stopping) {
			/* let concurrent sessions join this batch */
			pthread_mutex_unlock(&st->mu);
			usleep(st->commit_delay_us);
			pthread_mutex_lock(&st->mu);
		}
		struct store_commit_req *list = st->head;
		struct store_job *jobs = st->jobs_head;
		st->head = st->tail = NULL;
		st->jobs_head = st->jobs_tail = NULL;
		st->working = true;
		pthread_mutex_unlock(&st->mu);
		if (list != NULL)
			batch_run(st, list, jobs);
		else
			batch_blobs(st, NULL, 0, jobs);
		while (jobs != NULL) {
			struct store_job *j = jobs;
			jobs = j->next;
			j->run(st, j);
		}
		round_end(st, list);
		pthread_mutex_lock(&st->mu);
		st->working = false;
		pthread_cond_broadcast(&st->idle);
	}
	pthread_mutex_unlock(&st->mu);
	log_sync(st); /* lazy commits, before the daemon exits */
	return NULL;
}

int store_committer_start(struct store *st)
{
	st->syncers = xcalloc(st->n_syncers ? st->n_syncers : 1, sizeof *st->syncers);
	for (unsigned i = 0; i < st->n_syncers; i++) {
		if (pthread_create(&st->syncers[i], NULL, syncer_main, st) != 0) {
			log_err("store: cannot start sync thread");
			st->n_syncers = i;
			break;
		}
	}
	int e = pthread_create(&st->thread, NULL, committer_main, st);
	if (e != 0) {
		log_err("store: cannot start committer: %s", strerror(e));
		st->started = true; /* so that stop joins the syncers */
		store_committer_stop(st);
		st->started = false;
		return -1;
	}
	st->committer_running = true;
	if (pthread_create(&st->builder, NULL, builder_main, st) == 0)
		st->builder_running = true;
	else
		log_warn("store: no cache builder thread; the committer builds every cache");
	if (pthread_create(&st->stocker, NULL, stocker_main, st) == 0)
		st->stocker_running = true;
	else
		log_warn("store: no spool stocker thread; spool files are created on demand");
	return 0;
}

void store_wait_idle(struct store *st)
{
	if (!st->started || !st->committer_running)
		return;
	pthread_mutex_lock(&st->mu);
	while (st->head != NULL || st->jobs_head != NULL || st->working ||
	       st->build_head != NULL || st->building)
		pthread_cond_wait(&st->idle, &st->mu);
	pthread_mutex_unlock(&st->mu);
}

/* Also called on a failed start, when only the syncers run. */
void store_committer_stop(struct store *st)
{
	if (st->builder_running) {
		/* it hands what it still holds to the committer first */
		pthread_mutex_lock(&st->mu);
		st->builder_stopping = true;
		pthread_cond_signal(&st->build_cond);
		pthread_mutex_unlock(&st->mu);
		pthread_join(st->builder, NULL);
		st->builder_running = false;
	}
	if (st->committer_running) {
		pthread_mutex_lock(&st->mu);
		st->stopping = true;
		pthread_cond_signal(&st->cond);
		pthread_mutex_unlock(&st->mu);
		pthread_join(st->thread, NULL);
		st->committer_running = false;
		if (st->stocker_running) {
			pthread_mutex_lock(&st->mu);
			pthread_cond_signal(&st->stock_cond);
			pthread_mutex_unlock(&st->mu);
			pthread_join(st->stocker, NULL);
			st->stocker_running = false;
		}
		stock_free(st);
	}
	pthread_mutex_lock(&st->sync_mu);
	st->sync_quit = true;
	pthread_cond_broadcast(&st->sync_go);
	pthread_mutex_unlock(&st->sync_mu);
	for (unsigned i = 0; i < st->n_syncers; i++)
		pthread_join(st->syncers[i], NULL);
	x_free(&st->syncers);
}
