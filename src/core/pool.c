/* Worker pool: a mutex-guarded FIFO of jobs feeding N threads. Completions go
 * back to the loop through loop_post, so done() always runs on the loop
 * thread.
 *
 * A job wakes the worker that went idle last (a stack of idle workers, each
 * waiting on its own condition variable), not any of them: one condition
 * variable shared by all wakes the one waiting longest in glibc, so a light
 * load (one SORT's slices, one after the other) rotated over every worker,
 * and each warmed its malloc arena and CPU caches in turn. */
#include "core/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

struct pool_job {
	loop_cb *work;
	loop_cb *done;
	void *arg;
	struct pool_job *next;
};

struct pool_worker {
	struct pool *p;
	pthread_t thread;
	pthread_cond_t cv;
	bool idle; /* on p->idle (under p->mu) */
};

struct pool {
	struct loop *l;
	pthread_mutex_t mu;
	struct pool_job *head, *tail;
	bool stopping;
	int nthreads;
	bool background; /* pool_new_background */
	struct pool_worker *workers;
	struct pool_worker **idle; /* the stack of idle workers, last idle on top */
	int n_idle;
};

static void idle_remove(struct pool *p, struct pool_worker *w)
{
	for (int i = 0; i < p->n_idle; i++)
		if (p->idle[i] == w) {
			memmove(&p->idle[i], &p->idle[i + 1], (size_t)(p->n_idle - i - 1) * sizeof *p->idle);
			p->n_idle--;
			break;
		}
	w->idle = false;
}

static struct pool_job *pool_take(struct pool_worker *w)
{
	struct pool *p = w->p;
	pthread_mutex_lock(&p->mu);
	while (p->head == NULL && !p->stopping) {
		/* a submit pops it (idle false) and signals it; a spurious or
		 * a lost race (another worker took the job) waits again */
		w->idle = true;
		p->idle[p->n_idle++] = w;
		while (w->idle && !p->stopping)
			pthread_cond_wait(&w->cv, &p->mu);
		if (w->idle)
			idle_remove(p, w);
	}
	struct pool_job *job = p->head;
	if (job) {
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	return job; /* NULL only when stopping and the queue is drained */
}

static int background_nice; /* set before any thread starts */

void pool_set_background_nice(int nice)
{
	background_nice = nice;
}

void pool_background_thread(void)
{
	/* per thread on Linux (setpriority(2), NOTES); raising the value
	 * needs no privilege. A failure only leaves the thread at 0. */
	if (background_nice > 0 &&
	    setpriority(PRIO_PROCESS, (id_t)gettid(), background_nice) < 0)
		log_warn("pool: setpriority: %s", strerror(errno));
}

static void *pool_thread(void *arg)
{
	struct pool_worker *w = arg;
	struct pool *p = w->p;
	/* top -H, perf --sort comm */
	pthread_setname_np(pthread_self(), p->background ? "bulk" : "worker");
	if (p->background)
		pool_background_thread();
	struct pool_job *job;
	while ((job = pool_take(w)) != NULL) {
		job->work(job->arg);
		if (job->done)
			loop_post(p->l, job->done, job->arg);
		free(job);
	}
	return NULL;
}

static struct pool *pool_start(struct loop *l, int nthreads, bool background)
{
	x_assert(nthreads > 0);
	struct pool *p = xcalloc(1, sizeof *p);
	p->l = l;
	p->background = background;
	pthread_mutex_init(&p->mu, NULL);
	p->workers = xcalloc((size_t)nthreads, sizeof *p->workers);
	p->idle = xcalloc((size_t)nthreads, sizeof *p->idle);
	for (int i = 0; i < nthreads; i++) {
		struct pool_worker *w = &p->workers[i];
		w->p = p;
		pthread_cond_init(&w->cv, NULL);
		int err = pthread_create(&w->thread, NULL, pool_thread, w);
		if (err)
			fatal("pool: pthread_create: %s", strerror(err));
		p->nthreads++;
	}
	return p;
}

struct pool *pool_new(struct loop *l, int nthreads)
{
	return pool_start(l, nthreads, false);
}

struct pool *pool_new_background(struct loop *l, int nthreads)
{
	return pool_start(l, nthreads, true);
}

void pool_free(struct pool **pp)
{
	struct pool *p = *pp;
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	/* Jobs not started are dropped: their done callbacks could not run
	 * anyway (the loop has stopped), and running them all first would hold
	 * shutdown for as long as the queue is (a password hash each). */
	struct pool_job *left = p->head;
	p->head = p->tail = NULL;
	for (int i = 0; i < p->nthreads; i++)
		pthread_cond_signal(&p->workers[i].cv);
	pthread_mutex_unlock(&p->mu);
	while (left != NULL) {
		struct pool_job *next = left->next;
		free(left);
		left = next;
	}
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->workers[i].thread, NULL);
	for (int i = 0; i < p->nthreads; i++)
		pthread_cond_destroy(&p->workers[i].cv);
	free(p->workers);
	free(p->idle);
	pthread_mutex_destroy(&p->mu);
	x_free(pp);
}

void pool_submit(struct pool *p, loop_cb *work, loop_cb *done, void *arg)
{
	struct pool_job *job = xmalloc(sizeof *job);
	job->work = work;
	job->done = done;
	job->arg = arg;
	job->next = NULL;
	pthread_mutex_lock(&p->mu);
	x_assert(!p->stopping);
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	struct pool_worker *w = NULL;
	if (p->n_idle > 0) {
		w = p->idle[--p->n_idle];
		w->idle = false;
	}
	pthread_mutex_unlock(&p->mu);
	/* Signalled after the unlock: woken under it, the worker at once
	 * blocked on the mutex the loop still held (a futex wait and wake
	 * more per job). Its idle flag, cleared above, is what it waits
	 * on; a signal that comes after it woke by itself finds no waiter,
	 * or wakes it once in vain (it waits again while idle). */
	if (w != NULL)
		pthread_cond_signal(&w->cv);
}

int pool_idle(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	int n = p->n_idle;
	pthread_mutex_unlock(&p->mu);
	return n;
}
