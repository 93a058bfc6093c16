/* The built-in statistical spam filter (bayes.h). Skeleton: neutral (every
 * verdict 0.5, untrained, no points) until the classifier lands. */
#include <stdlib.h>

#include "core/loop.h"
#include "core/xmalloc.h"
#include "filter/bayes.h"

struct bayes {
	struct loop *loop;
};

struct bayes_job {
	struct timer *timer;
	struct bayes *b;
	size_t n;
	bayes_cb *cb;
	void *arg;
};

struct bayes *bayes_new(struct loop *l, struct store *st, struct pool *pool,
			const struct config *cfg, char **err_r)
{
	struct bayes *b = xcalloc(1, sizeof(*b));
	b->loop = l;
	return b;
}

void bayes_free(struct bayes **bp)
{
	x_free(bp);
}

static void job_fire(void *arg)
{
	struct bayes_job *j = arg;
	struct bayes_verdict *v = xcalloc(j->n ? j->n : 1, sizeof(*v));
	for (size_t i = 0; i < j->n; i++) {
		v[i].prob = 0.5;
		v[i].untrained = true;
	}
	j->timer = NULL;
	j->cb(j->arg, v, j->n);
	free(v);
	free(j);
}

struct bayes_job *bayes_classify(struct bayes *b, struct bayes_tokens *t,
				 const int64_t *user_ids, size_t n, bayes_cb *cb, void *arg)
{
	bayes_tokens_free(t);
	struct bayes_job *j = xcalloc(1, sizeof(*j));
	j->b = b;
	j->n = n;
	j->cb = cb;
	j->arg = arg;
	j->timer = loop_timer_add(b->loop, 0, job_fire, j);
	return j;
}

void bayes_job_cancel(struct bayes_job **jp)
{
	if (*jp == NULL)
		return;
	loop_timer_cancel((*jp)->b->loop, &(*jp)->timer);
	x_free(jp);
}
