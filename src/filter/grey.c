/* Greylisting (RFC 6647): skeleton, neutral (every message passes). */
#include "filter/grey.h"

#include "core/xmalloc.h"

struct grey {
	int unused;
};

struct grey *grey_new(struct loop *l, struct store *st, const struct config *cfg, char **err_r)
{
	(void)l;
	(void)st;
	(void)cfg;
	(void)err_r;
	return xcalloc(1, sizeof(struct grey));
}

void grey_free(struct grey **gp)
{
	free(*gp);
	*gp = NULL;
}

enum grey_result grey_check(struct grey *g, const char *ip, const char *mail_from,
			    const char *const *rcpts, size_t n, const char *aligned_domain,
			    time_t now, unsigned *wait_r, const char **why_r)
{
	(void)g;
	(void)ip;
	(void)mail_from;
	(void)rcpts;
	(void)n;
	(void)aligned_domain;
	(void)now;
	*wait_r = 0;
	*why_r = "off";
	return GREY_PASS;
}

void grey_delivered(struct grey *g, const char *ip, const char *aligned_domain, bool spam,
		    time_t now)
{
	(void)g;
	(void)ip;
	(void)aligned_domain;
	(void)spam;
	(void)now;
}
