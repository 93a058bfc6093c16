/* The milter client (milter.h). Skeleton: no milter is ever configured
 * (milter_set_new returns NULL), every step goes on at once. */
#include "filter/milter.h"

#include <stdlib.h>

#include "core/buf.h"

struct milter_set *milter_set_new(struct loop *l, const struct config *cfg, char **err_r)
{
	(void)l;
	(void)cfg;
	(void)err_r;
	return NULL;
}

void milter_set_free(struct milter_set **mp)
{
	*mp = NULL;
}

struct milter_tx *milter_tx_new(struct milter_set *m, const struct milter_conn_info *i)
{
	return NULL;
}

bool milter_mail(struct milter_tx *t, const char *from, milter_cb *cb, void *arg)
{
	return false;
}

bool milter_rcpt(struct milter_tx *t, const char *rcpt, milter_cb *cb, void *arg)
{
	return false;
}

bool milter_feed(struct milter_tx *t, const char *p, size_t n, void (*resume)(void *arg),
		 void *arg)
{
	return false;
}

void milter_end(struct milter_tx *t, milter_end_cb *cb, void *arg)
{
	static const struct milter_result none = {{MILTER_CONTINUE, 0, NULL, NULL}, false, NULL,
						  NULL, 0};
	cb(arg, &none);
}

void milter_tx_free(struct milter_tx **tp)
{
	*tp = NULL;
}

int milter_apply_edits(const char *msg, size_t len, const struct milter_edit *e, size_t n,
		       struct buf *out)
{
	buf_append(out, msg, len);
	return 0;
}
