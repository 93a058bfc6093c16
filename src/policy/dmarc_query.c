/* DMARC policy discovery (RFC 7489 6.6.3) through src/dns: the TXT records
 * at _dmarc.<From domain>, then (none there) at _dmarc.<organizational
 * domain>, then the evaluation of dmarc.c. Kept apart from the pure parser
 * so that the fuzz harness links without the resolver.
 *
 * Every path starts with a dns_lookup, whose callback never runs inside the
 * call (src/dns answers even a cache hit or a bad name on the next loop
 * pass), so dmarc_lookup_start's callback never does either. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/dmarc.h"

struct dmarc_lookup {
	struct dns *dns;
	const struct psl *psl;
	struct dns_query *dq;
	dmarc_lookup_cb *cb;
	void *arg;
	bool bad_from;   /* the From domain is not a domain name */
	bool at_org;     /* the second lookup (organizational domain) */
	struct dmarc_record rec;
	char from[256], org[256], qname[272];
	bool done, found;
	enum dmarc_result pre;   /* !found: none, temperror or permerror */
	const char *where;       /* l->from, l->org or NULL */
	const char *problem;     /* NULL or problem_buf / a literal */
	char problem_buf[128];
};

/* The lookup is over: none, temperror or permerror (!found), or a record. */
static void lookup_over(struct dmarc_lookup *q, bool found, enum dmarc_result r,
			const char *where, const char *problem)
{
	q->done = true;
	q->found = found;
	q->pre = r;
	q->where = where;
	if (problem != NULL) {
		snprintf(q->problem_buf, sizeof(q->problem_buf), "%s", problem);
		q->problem = q->problem_buf;
	}
	q->cb(q->arg); /* last: it may free q */
}

static void dmarc_lookup(struct dmarc_lookup *q, const char *domain);

static void dmarc_on_txt(void *arg, const struct dns_answer *a)
{
	struct dmarc_lookup *q = arg;
	const char *where = q->at_org ? q->org : q->from;
	const struct dns_rr *found = NULL;
	size_t n = 0;
	char problem[128];

	q->dq = NULL;
	if (q->bad_from) {
		lookup_over(q, false, DMARC_NONE, NULL, "the From domain is not a domain name");
		return;
	}
	if (a->status == DNS_TEMPFAIL) {
		log_info("dmarc lookup failed temporarily name=%s", q->qname);
		lookup_over(q, false, DMARC_TEMPERROR, where, "DNS lookup failed temporarily");
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
		lookup_over(q, false, DMARC_NONE, NULL, NULL);
		return;
	}
	if (n > 1) {
		/* Step 5: several records, no DMARC processing. */
		log_info("dmarc several records name=%s count=%zu", q->qname, n);
		lookup_over(q, false, DMARC_NONE, NULL, "several DMARC records");
		return;
	}
	const char *err = NULL;
	if (dmarc_record_parse_err(found->u.txt.text, found->u.txt.len, &q->rec, &err) < 0) {
		/* RFC 7489 11.2 (and 6.6.3 step 6.2): a syntactically incorrect
		 * record is a permanent error; no policy applies. */
		snprintf(problem, sizeof(problem), "invalid DMARC record: %s", err);
		log_info("dmarc invalid record name=%s problem=%s", q->qname, err);
		lookup_over(q, false, DMARC_PERMERROR, where, problem);
		return;
	}
	lookup_over(q, true, DMARC_NONE, where, NULL);
}

static void dmarc_lookup(struct dmarc_lookup *q, const char *domain)
{
	snprintf(q->qname, sizeof(q->qname), "_dmarc.%s", domain);
	/* A name over 253 octets is refused by src/dns as a bad name: no record. */
	q->dq = dns_lookup(q->dns, q->qname, DNS_TXT, dmarc_on_txt, q);
}

struct dmarc_lookup *dmarc_lookup_start(struct dns *dns, const struct psl *psl,
					const char *from_domain, dmarc_lookup_cb *cb, void *arg)
{
	struct dmarc_lookup *q = xcalloc(1, sizeof(*q));

	q->dns = dns;
	q->psl = psl;
	q->arg = arg;
	q->cb = cb;
	/* RFC 8616 6: an internationalized From domain is looked up (and
	 * aligned) as A-labels; psl_alabels also lowercases and drops a
	 * trailing dot. */
	const char *from = from_domain ? from_domain : "";
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

bool dmarc_lookup_done(const struct dmarc_lookup *l)
{
	return l->done;
}

void dmarc_lookup_evaluate(const struct dmarc_lookup *q, const struct dmarc_input *in, int rnd,
			   struct dmarc_outcome *o)
{
	struct dmarc_input i2 = *in;

	/* aligned against the A-label form looked up (RFC 8616 6) */
	i2.from_domain = q->bad_from ? NULL : q->from;
	if (!q->done || !q->found) {
		/* none, temperror or permerror, with the alignment still
		 * computed (for logs and reports) */
		dmarc_evaluate(q->psl, &i2, NULL, q->done ? q->where : NULL, 0, o);
		o->result = q->done ? q->pre : DMARC_TEMPERROR;
		o->problem = q->done ? q->problem : "DNS lookup did not finish in time";
		return;
	}
	/* RFC 7489 6.6.4 sampling, drawn only when pct= asks for it (at
	 * pct=100 every draw applies the policy): unpredictable, and no
	 * getrandom call per message for the usual record */
	if (rnd < 0)
		rnd = q->rec.pct < 100 ? (int)arc4random_uniform(100) : 0;
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
	dns_cancel(&l->dq);
	dmarc_record_free(&l->rec);
	free(l);
}
