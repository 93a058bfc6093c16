/* `postern dmarc check FROM_DOMAIN SPF_RESULT SPF_DOMAIN [DKIM_DOMAIN=RESULT ...]`:
 * the DMARC evaluation the daemon would make (RFC 7489 6.6), with the record
 * looked up through the configured resolver (dns_resolver) and the public
 * suffix list of dmarc_psl_file. Prints
 *   dmarc=<result> policy=<p> disposition=<...> policy_domain=<...|-> spf_aligned=yes|no
 *     dkim_aligned=yes|no sampled_out=yes|no     (one line)
 *   record: v=DMARC1; p=...; sp=...; ...        (the record as parsed, when one was found)
 *   problem: ...                                (temperror/permerror/none: why, if known)
 * Exit 0, 75 on temperror, 2 on a usage error.
 * `postern dmarc check --org DOMAIN` prints DOMAIN's organizational domain
 * (RFC 7489 3.2); exit 1 when DOMAIN is not a domain name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/dmarc.h"

/* The result names of RFC 8601, here rather than spf_result_name() and
 * dkim_result_name() so that this file needs nothing but dmarc. */
static const char *const spf_names[] = {"none", "neutral", "pass", "fail",
					"softfail", "temperror", "permerror"};
static const char *const dkim_names[] = {"none",    "pass",      "fail",     "policy",
					 "neutral", "temperror", "permerror"};

static int name_index(const char *const *names, size_t n, const char *s, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], s, len) == 0)
			return (int)i;
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: postern dmarc check FROM_DOMAIN SPF_RESULT SPF_DOMAIN "
			"[DKIM_DOMAIN=RESULT ...]\n"
			"       postern dmarc check --org DOMAIN\n"
			"SPF_RESULT: none neutral pass fail softfail temperror permerror; "
			"SPF_DOMAIN - for none\n"
			"RESULT: none pass fail policy neutral temperror permerror\n");
}

static void print_uris(const char *tag, char *const *v, size_t n)
{
	if (n == 0)
		return;
	printf("; %s=", tag);
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? "," : "", v[i]);
}

static void dkim_free(struct dkim_results *dk)
{
	for (size_t i = 0; i < dk->n; i++)
		free(dk->v[i].domain);
	free(dk->v);
}

struct check_cli {
	struct loop *l;
	const struct dmarc_input *in;
	struct dmarc_lookup *dl;
	int ret;
};

/* The lookup is over: evaluated as the daemon does at the end of data
 * (policy.c: dmarc_lookup_evaluate, pct drawn at random). */
static void check_done(void *arg)
{
	struct check_cli *c = arg;
	struct dmarc_outcome out;
	const struct dmarc_outcome *o = &out;
	dmarc_lookup_evaluate(c->dl, c->in, -1, &out);
	const struct dmarc_record *r = o->record;

	printf("dmarc=%s policy=%s disposition=%s policy_domain=%s spf_aligned=%s "
	       "dkim_aligned=%s sampled_out=%s\n",
	       dmarc_result_name(o->result), dmarc_policy_name(o->policy),
	       dmarc_policy_name(o->disposition), o->policy_domain ? o->policy_domain : "-",
	       o->spf_aligned ? "yes" : "no", o->dkim_aligned ? "yes" : "no",
	       o->sampled_out ? "yes" : "no");
	if (r != NULL) {
		printf("record: v=DMARC1; p=%s; sp=%s; adkim=%s; aspf=%s; pct=%d; fo=%s; rf=%s; "
		       "ri=%u",
		       dmarc_policy_name(r->p), dmarc_policy_name(r->sp),
		       r->adkim_strict ? "s" : "r", r->aspf_strict ? "s" : "r", r->pct, r->fo,
		       r->rf, r->ri);
		print_uris("rua", r->rua, r->n_rua);
		print_uris("ruf", r->ruf, r->n_ruf);
		printf("\n");
	}
	if (o->problem != NULL)
		printf("problem: %s\n", o->problem);
	c->ret = o->result == DMARC_TEMPERROR ? 75 : 0;
	loop_stop(c->l);
}

int cli_dmarc_check(const struct config *cfg, int argc, char **argv)
{
	char *err = NULL;

	if (argc == 2 && strcmp(argv[0], "--org") == 0) {
		char out[256];
		struct psl *psl = psl_load(cfg->dmarc_psl_file, &err);
		free(err);
		int rc = psl_org_domain(psl, argv[1], out, sizeof(out));
		psl_free(&psl);
		if (rc < 0) {
			fprintf(stderr, "postern: not a domain name: %s\n", argv[1]);
			return 1;
		}
		printf("%s\n", out);
		return 0;
	}
	if (argc < 3) {
		usage();
		return 2;
	}
	int spf = name_index(spf_names, sizeof(spf_names) / sizeof(spf_names[0]), argv[1],
			     strlen(argv[1]));
	if (spf < 0) {
		usage();
		return 2;
	}
	size_t n = (size_t)argc - 3;
	struct dkim_sig_result *v = xcalloc(n ? n : 1, sizeof(*v));
	struct dkim_results dk = {n, v};
	for (size_t i = 0; i < n; i++) {
		const char *a = argv[3 + i], *eq = strrchr(a, '=');
		int res = eq ? name_index(dkim_names, sizeof(dkim_names) / sizeof(dkim_names[0]),
					  eq + 1, strlen(eq + 1))
			     : -1;
		if (res < 0) {
			dk.n = i;
			dkim_free(&dk);
			usage();
			return 2;
		}
		v[i].result = (enum dkim_result)res;
		v[i].domain = eq > a ? xstrndup(a, (size_t)(eq - a)) : NULL;
	}
	/* the daemon's setting: no list, the last two labels (warned) */
	struct psl *psl = psl_load(cfg->dmarc_psl_file, &err);
	free(err);
	struct cli_loop lp;
	if (cli_loop_open(&lp, cfg, CLI_LOOP_DNS) < 0) {
		dkim_free(&dk);
		psl_free(&psl);
		return 1;
	}
	/* the domain as the daemon would pass it: without its terminal "." is up
	 * to the lookup; an argument of "-" or "" is no SPF domain */
	const char *spf_domain = strcmp(argv[2], "-") == 0 || argv[2][0] == '\0' ? NULL : argv[2];
	struct dmarc_input in = {argv[0], (enum spf_result)spf, spf_domain, &dk};
	struct check_cli c = {.l = lp.l, .in = &in, .ret = 1};
	c.dl = dmarc_lookup_start(lp.dns, psl, argv[0], check_done, &c);
	loop_run(c.l);
	dmarc_lookup_free(&c.dl);
	cli_loop_close(&lp);
	psl_free(&psl);
	dkim_free(&dk);
	return c.ret;
}
