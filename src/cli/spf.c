/* `postern spf check`: RFC 7208 check_host() for a client, through the
 * resolver the daemon would use.
 *
 *   postern spf check [--helo] [--explanation TEXT] IP HELO SENDER
 *   postern spf check --batch [--helo] [--explanation TEXT] < lines
 *
 * SENDER is the MAIL FROM address, "" for <> (then postmaster@HELO is
 * checked, RFC 7208 2.4); --helo checks the HELO identity instead (2.3).
 * Output: result=NAME, then mechanism=, explanation=, problem= as they
 * apply. --explanation sets the default explanation of a fail (a
 * macro-string). --batch reads "IP<TAB>HELO<TAB>SENDER" lines, runs them
 * all at once and prints each case's lines in input order, each block ended
 * by an empty line. Exit status 0 (whatever the result), 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/spf.h"

#define SPF_CLI_INFLIGHT 256

struct spf_job {
	struct spf_cli *c;
	char *ip, *helo, *sender;
	struct spf_query *q;
	char *out; /* the block printed for it */
	bool started;
};

struct spf_cli {
	struct loop *l;
	struct dns *dns;
	const struct config *cfg;
	bool helo_identity;
	const char *default_exp;
	struct spf_job *jobs;
	size_t n, next, running, done;
};

/* Appends "key=value\n", control characters as \xNN. */
static void add_line(char **out, size_t *len, const char *key, const char *v)
{
	size_t vl = strlen(v), need = *len + strlen(key) + 2 + vl * 4 + 1;
	*out = xrealloc(*out, need + 1);
	size_t o = *len + (size_t)sprintf(*out + *len, "%s=", key);
	for (size_t i = 0; i < vl; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch < 0x20 || ch == 0x7f)
			o += (size_t)sprintf(*out + o, "\\x%02x", ch);
		else
			(*out)[o++] = (char)ch;
	}
	(*out)[o++] = '\n';
	(*out)[o] = '\0';
	*len = o;
}

static void start_jobs(struct spf_cli *c);

static void on_result(void *arg, const struct spf_outcome *o)
{
	struct spf_job *j = arg;
	struct spf_cli *c = j->c;
	size_t len = 0;

	j->q = NULL;
	add_line(&j->out, &len, "result", spf_result_name(o->result));
	if (o->mechanism)
		add_line(&j->out, &len, "mechanism", o->mechanism);
	if (o->explanation)
		add_line(&j->out, &len, "explanation", o->explanation);
	if (o->problem)
		add_line(&j->out, &len, "problem", o->problem);
	c->running--;
	c->done++;
	start_jobs(c);
	if (c->done == c->n)
		loop_stop(c->l);
}

static void start_one(struct spf_cli *c, struct spf_job *j)
{
	const char *sender = j->sender, *domain;
	char *pm = NULL;

	j->started = true;
	if (c->helo_identity || sender[0] == '\0') {
		/* RFC 7208 2.3, 2.4: the HELO identity, postmaster@HELO */
		pm = xasprintf("postmaster@%s", j->helo);
		sender = pm;
		domain = j->helo;
	} else {
		const char *at = strrchr(sender, '@');
		domain = at ? at + 1 : sender;
	}
	struct spf_request r = {
	    .ip = j->ip,
	    .domain = domain,
	    .sender = sender,
	    .helo = j->helo,
	    .receiver = c->cfg->hostname,
	    .default_exp = c->default_exp,
	};
	j->q = spf_check(c->dns, &r, on_result, j);
	free(pm);
	if (j->q == NULL) {
		j->out = xasprintf("error=not an IP address: %s\n", j->ip);
		c->done++;
		return;
	}
	c->running++;
}

static void start_jobs(struct spf_cli *c)
{
	while (c->next < c->n && c->running < SPF_CLI_INFLIGHT)
		start_one(c, &c->jobs[c->next++]);
}

static void on_kick(void *arg)
{
	struct spf_cli *c = arg;
	start_jobs(c);
	if (c->done == c->n)
		loop_stop(c->l);
}

static int spf_usage(void)
{
	fprintf(stderr, "usage: postern spf check [--helo] [--explanation TEXT] IP HELO SENDER\n"
	                "       postern spf check --batch [--helo] [--explanation TEXT]"
	                "  (lines IP<TAB>HELO<TAB>SENDER on stdin)\n");
	return 2;
}

static char *field(char **p)
{
	char *s = *p, *tab = strchr(s, '\t');
	if (tab) {
		*tab = '\0';
		*p = tab + 1;
	} else {
		*p = s + strlen(s);
	}
	return xstrdup(s);
}

int cli_spf(const struct config *cfg, int argc, char **argv)
{
	struct spf_cli c = {.cfg = cfg};
	bool batch = false;
	int i = 1;

	if (argc < 1 || strcmp(argv[0], "check") != 0)
		return spf_usage();
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--helo") == 0) {
			c.helo_identity = true;
		} else if (strcmp(argv[i], "--batch") == 0) {
			batch = true;
		} else if (strcmp(argv[i], "--explanation") == 0 && i + 1 < argc) {
			c.default_exp = argv[++i];
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			return spf_usage();
		}
	}
	if (batch) {
		if (i != argc)
			return spf_usage();
		char *line = NULL;
		size_t cap = 0, alloc = 0;
		ssize_t n;
		while ((n = getline(&line, &cap, stdin)) >= 0) {
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0] == '\0')
				continue;
			if (c.n == alloc) {
				alloc = alloc ? alloc * 2 : 64;
				c.jobs = xrealloc(c.jobs, alloc * sizeof(*c.jobs));
			}
			struct spf_job *j = &c.jobs[c.n++];
			memset(j, 0, sizeof(*j));
			char *p = line;
			j->ip = field(&p);
			j->helo = field(&p);
			j->sender = field(&p);
		}
		free(line);
	} else {
		if (argc - i != 3)
			return spf_usage();
		c.jobs = xcalloc(1, sizeof(*c.jobs));
		c.n = 1;
		c.jobs[0].ip = xstrdup(argv[i]);
		c.jobs[0].helo = xstrdup(argv[i + 1]);
		c.jobs[0].sender = xstrdup(argv[i + 2]);
	}
	for (size_t k = 0; k < c.n; k++)
		c.jobs[k].c = &c;

	int ret = 0;
	struct cli_loop lp;
	if (cli_loop_open(&lp, cfg, CLI_LOOP_DNS) < 0) {
		ret = 1;
	} else {
		c.l = lp.l;
		c.dns = lp.dns;
		if (c.n > 0) {
			struct timer *kick = loop_timer_add(c.l, 0, on_kick, &c);
			(void)kick;
			loop_run(c.l);
		}
	}
	for (size_t k = 0; k < c.n; k++) {
		struct spf_job *j = &c.jobs[k];
		if (j->out)
			fputs(j->out, stdout);
		else if (c.dns != NULL)
			printf("error=not run\n");
		if (batch)
			putchar('\n');
		if (!batch && j->out && strncmp(j->out, "error=", 6) == 0)
			ret = 2;
		spf_cancel(&j->q);
		free(j->out);
		free(j->ip);
		free(j->helo);
		free(j->sender);
	}
	free(c.jobs);
	if (c.l != NULL)
		cli_loop_close(&lp);
	return ret;
}
