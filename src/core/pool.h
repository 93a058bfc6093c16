/* Fixed pool of worker threads for blocking work (password hashing, fsync,
 * anything that may sleep). work(arg) runs on a worker; then done(arg) runs on
 * the loop thread. Jobs are run in submission order per pool, not per caller. */
#ifndef POSTERN_CORE_POOL_H
#define POSTERN_CORE_POOL_H
#include "core/loop.h"

struct pool;

struct pool *pool_new(struct loop *l, int nthreads);
/* Drops the jobs not yet started (neither work nor done runs; their arg is
 * not freed), waits for those running, joins the threads. Call it once the
 * loop no longer runs: done callbacks posted by then are not run either. */
void pool_free(struct pool **pp);
/* done may be NULL. */
void pool_submit(struct pool *p, loop_cb *work, loop_cb *done, void *arg);
/* How many workers wait for a job now (a moment's figure: tests, stats). */
int pool_idle(struct pool *p);

#endif
