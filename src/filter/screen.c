/* The connection stage (screen.h). Skeleton: neutral (nothing listed,
 * nothing trusted, no lookups) until the real one lands. */
#include "filter/screen.h"

#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

struct cidr_set {
	int unused;
};

struct cidr_set *cidr_set_new(void)
{
	return xcalloc(1, sizeof(struct cidr_set));
}

struct cidr_set *cidr_set_parse(const char *list, char **err_r)
{
	(void)list;
	(void)err_r;
	return cidr_set_new();
}

int cidr_set_add(struct cidr_set *s, const char *entry)
{
	(void)s;
	(void)entry;
	return 0;
}

bool cidr_set_match(const struct cidr_set *s, const char *ip)
{
	(void)s;
	(void)ip;
	return false;
}

void cidr_set_free(struct cidr_set **sp)
{
	free(*sp);
	*sp = NULL;
}

int cidr_network(const char *ip, int net4, int net6, char *out, size_t outsize)
{
	(void)ip;
	(void)net4;
	(void)net6;
	(void)out;
	(void)outsize;
	return -1;
}

struct dnsbl_site {
	int unused;
};

struct dnsbl_site *dnsbl_sites_parse(const char *list, size_t *n_r, char **err_r)
{
	(void)list;
	(void)err_r;
	*n_r = 0;
	return xcalloc(1, sizeof(struct dnsbl_site));
}

void dnsbl_sites_free(struct dnsbl_site *v, size_t n)
{
	(void)n;
	free(v);
}

int dnsbl_query_name(const char *zone, const char *ip, char *out, size_t outsize)
{
	(void)zone;
	(void)ip;
	(void)out;
	(void)outsize;
	return -1;
}

struct screen {
	int unused;
};

struct screen *screen_new(struct loop *l, struct dns *dns, struct store *st,
			  const struct config *cfg, char **err_r)
{
	(void)l;
	(void)dns;
	(void)st;
	(void)cfg;
	(void)err_r;
	return xcalloc(1, sizeof(struct screen));
}

void screen_free(struct screen **sp)
{
	free(*sp);
	*sp = NULL;
}

void screen_reload(struct screen *s)
{
	(void)s;
}

bool screen_trusted(const struct screen *s, const char *ip)
{
	(void)s;
	(void)ip;
	return false;
}

struct screen_conn {
	struct screen_result res;
};

struct screen_conn *screen_conn_new(struct screen *s, const char *ip, time_t now)
{
	struct screen_conn *c = xcalloc(1, sizeof(*c));

	(void)s;
	(void)ip;
	(void)now;
	c->res.done = true;
	c->res.why = "";
	return c;
}

const struct screen_result *screen_conn_result(const struct screen_conn *c)
{
	return &c->res;
}

bool screen_conn_wait(struct screen_conn *c, void (*cb)(void *arg), void *arg)
{
	(void)c;
	(void)cb;
	(void)arg;
	return false;
}

void screen_conn_free(struct screen_conn **cp)
{
	if (*cp == NULL)
		return;
	filter_reasons_free(&(*cp)->res.reasons);
	free(*cp);
	*cp = NULL;
}
