/* Fixed pool of worker threads for blocking work (password hashing, fsync,
 * anything that may sleep). work(arg) runs on a worker; then done(arg) runs on
 * the loop thread. Jobs are run in submission order per pool, not per caller. */
#ifndef POSTERN_CORE_POOL_H
#define POSTERN_CORE_POOL_H
#include "core/loop.h"

struct pool;

struct pool *pool_new(struct loop *l, int nthreads);
/* Waits for queued jobs to finish, joins the threads; their done callbacks are
 * posted to the loop but not run if the loop no longer runs. */
void pool_free(struct pool **pp);
/* done may be NULL. */
void pool_submit(struct pool *p, loop_cb *work, loop_cb *done, void *arg);

#endif
