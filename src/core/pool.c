/* Worker pool: a mutex+condvar FIFO feeding N threads. Completions go back to
 * the loop through loop_post, so done() always runs on the loop thread. */
#include "core/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

struct pool_job {
	loop_cb *work;
	loop_cb *done;
	void *arg;
	struct pool_job *next;
};

struct pool {
	struct loop *l;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pool_job *head, *tail;
	bool stopping;
	int nthreads;
	pthread_t *threads;
};

static struct pool_job *pool_take(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->head == NULL && !p->stopping)
		pthread_cond_wait(&p->cv, &p->mu);
	struct pool_job *job = p->head;
	if (job) {
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	return job; /* NULL only when stopping and the queue is drained */
}

static void *pool_thread(void *arg)
{
	struct pool *p = arg;
	pthread_setname_np(pthread_self(), "worker"); /* top -H, perf --sort comm */
	struct pool_job *job;
	while ((job = pool_take(p)) != NULL) {
		job->work(job->arg);
		if (job->done)
			loop_post(p->l, job->done, job->arg);
		free(job);
	}
	return NULL;
}

struct pool *pool_new(struct loop *l, int nthreads)
{
	x_assert(nthreads > 0);
	struct pool *p = xcalloc(1, sizeof *p);
	p->l = l;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->threads = xcalloc((size_t)nthreads, sizeof *p->threads);
	for (int i = 0; i < nthreads; i++) {
		int err = pthread_create(&p->threads[i], NULL, pool_thread, p);
		if (err)
			fatal("pool: pthread_create: %s", strerror(err));
		p->nthreads++;
	}
	return p;
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
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	while (left != NULL) {
		struct pool_job *next = left->next;
		free(left);
		left = next;
	}
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	pthread_cond_destroy(&p->cv);
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
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}
