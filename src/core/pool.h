/* Fixed pool of worker threads for blocking work (password hashing, fsync,
 * anything that may sleep). work(arg) runs on a worker; then done(arg) runs on
 * the loop thread. Jobs are run in submission order per pool, not per caller. */
#ifndef POSTERN_CORE_POOL_H
#define POSTERN_CORE_POOL_H
#include "core/loop.h"

struct pool;

struct pool *pool_new(struct loop *l, int nthreads);
/* A pool for work that grows with the data (IMAP SEARCH, SORT, THREAD, FETCH
 * ranges): its threads ("bulk") run at the background nice value. */
struct pool *pool_new_background(struct loop *l, int nthreads);
/* Background threads (a background pool's, and any thread that calls
 * pool_background_thread: the full-text indexer, SEARCH's confirm
 * helpers) run at this nice value (0..19; Linux keeps it per thread), so
 * that the loop thread, at 0, is scheduled first when both want a CPU: a big
 * SORT, FETCH or index pass then cannot delay every other session's next
 * step. Set it before any such thread starts. Nothing else is niced: the
 * committer and its helpers (a 250 waits for them) and pool_new's workers
 * (logins, SMTP's checks) stay at 0; an unprivileged thread could not come
 * back from a higher value, so a thread's value is fixed for its life. */
void pool_set_background_nice(int nice);
void pool_background_thread(void);
/* Drops the jobs not yet started (neither work nor done runs; their arg is
 * not freed), waits for those running, joins the threads. Call it once the
 * loop no longer runs: done callbacks posted by then are not run either. */
void pool_free(struct pool **pp);
/* done may be NULL. */
void pool_submit(struct pool *p, loop_cb *work, loop_cb *done, void *arg);
/* How many workers wait for a job now (a moment's figure: tests, stats). */
int pool_idle(struct pool *p);

#endif
