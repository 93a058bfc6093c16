/* Dangerous attachments (attach.h). Skeleton: finds nothing yet. */
#include "filter/attach.h"

#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

struct attach_rules {
	int unused;
};

struct attach_rules *attach_rules_new(const char *extensions)
{
	(void)extensions;
	return xcalloc(1, sizeof(struct attach_rules));
}

void attach_rules_free(struct attach_rules **rp)
{
	free(*rp);
	*rp = NULL;
}

int attach_check(const struct attach_rules *rules, const char *msg, size_t len,
		 struct attach_result *r)
{
	(void)rules;
	(void)msg;
	(void)len;
	memset(r, 0, sizeof(*r));
	return 0;
}
