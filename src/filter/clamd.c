/* Virus scanning with clamd over INSTREAM (clamd.h). Skeleton: no scanning
 * yet (clamd_new returns NULL, as for an empty clamd_socket). */
#include "filter/clamd.h"

#include <stdlib.h>

struct clamd *clamd_new(struct loop *l, const struct config *cfg, char **err_r)
{
	(void)l;
	(void)cfg;
	*err_r = NULL;
	return NULL;
}

void clamd_free(struct clamd **cp)
{
	*cp = NULL;
}

struct clamd_scan *clamd_scan_new(struct clamd *c)
{
	(void)c;
	return NULL;
}

bool clamd_scan_feed(struct clamd_scan *s, const char *p, size_t n, void (*resume)(void *arg),
		     void *arg)
{
	(void)s;
	(void)p;
	(void)n;
	(void)resume;
	(void)arg;
	return false;
}

void clamd_scan_end(struct clamd_scan *s, clamd_cb *cb, void *arg)
{
	(void)s;
	(void)cb;
	(void)arg;
}

void clamd_scan_free(struct clamd_scan **sp)
{
	*sp = NULL;
}
