/* Rate and duplicate limits (limit.h). Skeleton: allows everything. */
#include "filter/limit.h"

#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

struct limit {
	limit_notice_fn *notice;
	void *notice_arg;
};

struct limit *limit_new(const struct config *cfg, limit_notice_fn *notice, void *notice_arg)
{
	struct limit *l = xcalloc(1, sizeof(*l));

	l->notice = notice;
	l->notice_arg = notice_arg;
	return l;
}

void limit_free(struct limit **lp)
{
	free(*lp);
	*lp = NULL;
}

void limit_mail(struct limit *l, const struct limit_sender *s, time_t now,
		struct limit_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void limit_rcpt(struct limit *l, const struct limit_sender *s, size_t n_so_far, time_t now,
		struct limit_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void limit_fp_init(struct limit_fp *f)
{
	memset(f, 0, sizeof(*f));
}

void limit_fp_feed(struct limit_fp *f, const char *p, size_t n)
{
	f->body_bytes += n;
}

uint64_t limit_fp_final(struct limit_fp *f)
{
	return 0;
}

void limit_end(struct limit *l, const struct limit_sender *s, uint64_t fp,
	       const char *const *rcpts, size_t n, time_t now, struct limit_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void limit_delivered(struct limit *l, const struct limit_sender *s, uint64_t fp,
		     const char *const *rcpts, size_t n, time_t now)
{
}
