/* DMARC policy discovery (RFC 7489 6.6.3) through src/dns: the TXT records
 * at _dmarc.<From domain>, then (none there) at _dmarc.<organizational
 * domain>, then the evaluation of dmarc.c. Kept apart from the pure parser
 * so that the fuzz harness links without the resolver.
 *
 * Every path starts with a dns_lookup, whose callback never runs inside the
 * call (src/dns answers even a cache hit or a bad name on the next loop
 * pass), so dmarc_check's callback never does either. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/dmarc.h"

struct dmarc_query {
	struct dns *dns;
	const struct psl *psl;
	struct dns_query *dq;
	dmarc_cb *cb;
	void *arg;
	int rnd;         /* < 0: draw one */
	bool in_cb;      /* cb is running: dmarc_cancel leaves the freeing to us */
	bool bad_from;   /* the From domain is not a domain name */
	bool at_org;     /* the second lookup (organizational domain) */
	enum spf_result spf;
	char *spf_domain;
	struct dkim_results dkim; /* results and d= only */
	struct dmarc_record rec;
	char from[256], org[256], qname[272];
	/* dmarc_lookup_start: the lookup only, evaluated later */
	bool lookup_only, done, found;
	enum dmarc_result pre;   /* !found: none, temperror or permerror */
	const char *where;       /* q->from, q->org or NULL */
	const char *problem;     /* NULL or problem_buf / a literal */
	char problem_buf[128];
	dmarc_lookup_cb *lcb;
};

static void dmarc_query_free(struct dmarc_query *q)
{
	for (size_t i = 0; i < q->dkim.n; i++)
		free(q->dkim.v[i].domain);
	free(q->dkim.v);
	free(q->spf_domain);
	dmarc_record_free(&q->rec);
	free(q);
}

static void dmarc_finish(struct dmarc_query *q, const struct dmarc_outcome *o)
{
	q->in_cb = true;
	q->cb(q->arg, o);
	dmarc_query_free(q);
}

static void dmarc_input_of(const struct dmarc_query *q, struct dmarc_input *in)
{
	in->from_domain = q->bad_from ? NULL : q->from;
	in->spf = q->spf;
	in->spf_domain = q->spf_domain;
	in->dkim = &q->dkim;
}

/* none, temperror or permerror, with the alignment still computed (for
 * logs and reports). */
static void dmarc_finish_without(struct dmarc_query *q, enum dmarc_result r, const char *where,
				 const char *problem)
{
	struct dmarc_input in;
	struct dmarc_outcome o;

	if (q->lookup_only) {
		q->done = true;
		q->pre = r;
		q->where = where;
		if (problem != NULL) {
			snprintf(q->problem_buf, sizeof(q->problem_buf), "%s", problem);
			q->problem = q->problem_buf;
		}
		q->lcb(q->arg); /* last: it may free q */
		return;
	}
	dmarc_input_of(q, &in);
	dmarc_evaluate(q->psl, &in, NULL, where, 0, &o);
	o.result = r;
	o.problem = problem;
	dmarc_finish(q, &o);
}

static void dmarc_lookup(struct dmarc_query *q, const char *domain);

static void dmarc_on_txt(void *arg, const struct dns_answer *a)
{
	struct dmarc_query *q = arg;
	const char *where = q->at_org ? q->org : q->from;
	const struct dns_rr *found = NULL;
	size_t n = 0;
	char problem[128];

	q->dq = NULL;
	if (q->bad_from) {
		dmarc_finish_without(q, DMARC_NONE, NULL, "the From domain is not a domain name");
		return;
	}
	if (a->status == DNS_TEMPFAIL) {
		log_info("dmarc lookup failed temporarily name=%s", q->qname);
		dmarc_finish_without(q, DMARC_TEMPERROR, where, "DNS lookup failed temporarily");
		return;
	}
	/* RFC 7489 6.6.3 steps 2 and 4: records not starting with v=DMARC1
	 * are discarded. */
	for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
		if (a->rr[i].type != DNS_TXT ||
		    !dmarc_record_is_dmarc(a->rr[i].u.txt.text, a->rr[i].u.txt.len))
			continue;
		found = &a->rr[i];
		n++;
	}
	if (n == 0) {
		/* Step 3: the organizational domain, if different. NXDOMAIN,
		 * NODATA and a name too long to ask are all "no record". */
		if (!q->at_org && strcmp(q->org, q->from) != 0) {
			q->at_org = true;
			dmarc_lookup(q, q->org);
			return;
		}
		dmarc_finish_without(q, DMARC_NONE, NULL, NULL);
		return;
	}
	if (n > 1) {
		/* Step 5: several records, no DMARC processing. */
		log_info("dmarc several records name=%s count=%zu", q->qname, n);
		dmarc_finish_without(q, DMARC_NONE, NULL, "several DMARC records");
		return;
	}
	const char *err = NULL;
	if (dmarc_record_parse_err(found->u.txt.text, found->u.txt.len, &q->rec, &err) < 0) {
		/* RFC 7489 11.2 (and 6.6.3 step 6.2): a syntactically incorrect
		 * record is a permanent error; no policy applies. */
		snprintf(problem, sizeof(problem), "invalid DMARC record: %s", err);
		log_info("dmarc invalid record name=%s problem=%s", q->qname, err);
		dmarc_finish_without(q, DMARC_PERMERROR, where, problem);
		return;
	}
	struct dmarc_input in;
	struct dmarc_outcome o;
	if (q->lookup_only) {
		q->done = true;
		q->found = true;
		q->where = q->at_org ? q->org : q->from;
		q->lcb(q->arg); /* last: it may free q */
		return;
	}
	dmarc_input_of(q, &in);
	int rnd = q->rnd >= 0 ? q->rnd % 100 : (int)arc4random_uniform(100);
	dmarc_evaluate(q->psl, &in, &q->rec, where, rnd, &o);
	if (q->rec.p_fallback)
		o.problem = "no valid p= (read as p=none, RFC 7489 6.6.3)";
	dmarc_finish(q, &o);
}

static void dmarc_lookup(struct dmarc_query *q, const char *domain)
{
	snprintf(q->qname, sizeof(q->qname), "_dmarc.%s", domain);
	/* A name over 253 octets is refused by src/dns as a bad name: no record. */
	q->dq = dns_lookup(q->dns, q->qname, DNS_TXT, dmarc_on_txt, q);
}

struct dmarc_query *dmarc_check_rnd(struct dns *dns, const struct psl *psl,
				    const struct dmarc_input *in, int rnd, dmarc_cb *cb, void *arg)
{
	struct dmarc_query *q = xcalloc(1, sizeof(*q));

	q->dns = dns;
	q->psl = psl;
	q->cb = cb;
	q->arg = arg;
	q->rnd = rnd;
	q->spf = in->spf;
	q->spf_domain = in->spf_domain ? xstrdup(in->spf_domain) : NULL;
	if (in->dkim != NULL && in->dkim->n > 0) {
		q->dkim.v = xcalloc(in->dkim->n, sizeof(*q->dkim.v));
		q->dkim.n = in->dkim->n;
		for (size_t i = 0; i < in->dkim->n; i++) {
			q->dkim.v[i].result = in->dkim->v[i].result;
			if (in->dkim->v[i].domain)
				q->dkim.v[i].domain = xstrdup(in->dkim->v[i].domain);
		}
	}
	/* RFC 8616 6: an internationalized From domain is looked up (and
	 * aligned) as A-labels; psl_alabels also lowercases and drops a
	 * trailing dot. */
	const char *from = in->from_domain ? in->from_domain : "";
	if (psl_alabels(from, q->from, sizeof(q->from)) < 0 ||
	    psl_org_domain(psl, q->from, q->org, sizeof(q->org)) < 0) {
		/* Still through the resolver (a bad name, answered on the next
		 * loop pass), so that cb never runs inside this call. */
		q->bad_from = true;
		q->dq = dns_lookup(dns, "", DNS_TXT, dmarc_on_txt, q);
		return q;
	}
	dmarc_lookup(q, q->from);
	return q;
}

struct dmarc_query *dmarc_check(struct dns *dns, const struct psl *psl,
				const struct dmarc_input *in, dmarc_cb *cb, void *arg)
{
	return dmarc_check_rnd(dns, psl, in, -1, cb, arg);
}

void dmarc_cancel(struct dmarc_query **qp)
{
	struct dmarc_query *q = *qp;
	if (q == NULL)
		return;
	*qp = NULL;
	if (q->in_cb)
		return; /* freed when cb returns */
	dns_cancel(&q->dq);
	dmarc_query_free(q);
}

struct dmarc_lookup {
	struct dmarc_query q;
};

struct dmarc_lookup *dmarc_lookup_start(struct dns *dns, const struct psl *psl,
					const char *from_domain, dmarc_lookup_cb *cb, void *arg)
{
	struct dmarc_lookup *l = xcalloc(1, sizeof(*l));
	struct dmarc_query *q = &l->q;

	q->dns = dns;
	q->psl = psl;
	q->arg = arg;
	q->lcb = cb;
	q->rnd = -1;
	q->lookup_only = true;
	const char *from = from_domain ? from_domain : "";
	if (psl_alabels(from, q->from, sizeof(q->from)) < 0 ||
	    psl_org_domain(psl, q->from, q->org, sizeof(q->org)) < 0) {
		q->bad_from = true;
		q->dq = dns_lookup(dns, "", DNS_TXT, dmarc_on_txt, q);
		return l;
	}
	dmarc_lookup(q, q->from);
	return l;
}

bool dmarc_lookup_done(const struct dmarc_lookup *l)
{
	return l->q.done;
}

void dmarc_lookup_evaluate(const struct dmarc_lookup *l, const struct dmarc_input *in, int rnd,
			   struct dmarc_outcome *o)
{
	const struct dmarc_query *q = &l->q;
	struct dmarc_input i2 = *in;

	/* aligned against the A-label form looked up (RFC 8616 6) */
	i2.from_domain = q->bad_from ? NULL : q->from;
	if (!q->done || !q->found) {
		dmarc_evaluate(q->psl, &i2, NULL, q->done ? q->where : NULL, 0, o);
		o->result = q->done ? q->pre : DMARC_TEMPERROR;
		o->problem = q->done ? q->problem : "DNS lookup did not finish in time";
		return;
	}
	if (rnd < 0)
		rnd = (int)arc4random_uniform(100);
	dmarc_evaluate(q->psl, &i2, &q->rec, q->where, rnd % 100, o);
	if (q->rec.p_fallback)
		o->problem = "no valid p= (read as p=none, RFC 7489 6.6.3)";
}

void dmarc_lookup_free(struct dmarc_lookup **lp)
{
	struct dmarc_lookup *l = *lp;
	if (l == NULL)
		return;
	*lp = NULL;
	dns_cancel(&l->q.dq);
	dmarc_query_free(&l->q);
}
