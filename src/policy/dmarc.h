/* DMARC: RFC 7489 record parsing, organizational domains (the public suffix
 * list, RFC 7489 3.2), identifier alignment, policy evaluation. Owned by
 * src/policy/dmarc.c and psl.c. The parser and evaluator are pure; the
 * lookup (_dmarc.<From domain>, then _dmarc.<organizational domain>, RFC
 * 7489 6.6.3) goes through src/dns. */
#ifndef POSTERN_POLICY_DMARC_H
#define POSTERN_POLICY_DMARC_H
#include <stdbool.h>
#include <stddef.h>

#include "policy/dkim.h"
#include "policy/spf.h"

struct dns;

enum dmarc_result { DMARC_NONE, DMARC_PASS, DMARC_FAIL, DMARC_TEMPERROR, DMARC_PERMERROR };
/* "none", "pass", "fail", "temperror", "permerror" */
const char *dmarc_result_name(enum dmarc_result r);
enum dmarc_policy { DMARC_P_NONE, DMARC_P_QUARANTINE, DMARC_P_REJECT };
/* "none", "quarantine", "reject" */
const char *dmarc_policy_name(enum dmarc_policy p);

#define DMARC_MAX_URIS 8
/* RFC 7489 6.3 */
struct dmarc_record {
	enum dmarc_policy p, sp; /* sp = p when absent */
	bool adkim_strict, aspf_strict;
	int pct;                 /* 0..100, 100 when absent */
	char fo[16];             /* as given, "0" when absent */
	unsigned ri;             /* seconds, 86400 when absent */
	size_t n_rua, n_ruf;
	char *rua[DMARC_MAX_URIS], *ruf[DMARC_MAX_URIS]; /* "mailto:..." URIs, "!size" kept */
	/* Added by the dmarc helper: */
	char rf[16];             /* as given, "afrf" when absent */
	bool p_fallback;         /* RFC 7489 6.6.3 step 6.1: p= was missing or invalid (or sp=
				  * invalid) but rua= valid: read as p=none (sp=none) */
	bool has_sp;             /* sp= was given */
};
/* Parses one TXT record. 0, or -1 (not a DMARC record or invalid: RFC 7489
 * 6.6.3, the record is then ignored). Frees with dmarc_record_free (also
 * after -1: r is then empty). Only "mailto:" URIs are kept in rua/ruf (the
 * one scheme RFC 7489 6.3 makes receivers support; the scheme lowercased),
 * at most DMARC_MAX_URIS each; other URIs are dropped, a malformed one too
 * (RFC 7489 6.3: receivers ignore URIs they cannot use). *err_r, when
 * err_r is not NULL and the result is -1: a static string saying why. */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r);
int dmarc_record_parse_err(const char *txt, size_t len, struct dmarc_record *r,
			   const char **err_r);
/* RFC 7489 6.6.3 steps 2 and 4: does the TXT record start with "v=DMARC1"
 * (the ones that do not are discarded before counting)? */
bool dmarc_record_is_dmarc(const char *txt, size_t len);
void dmarc_record_free(struct dmarc_record *r);

/* The public suffix list, loaded once (dmarc_psl_file). NULL if it cannot be
 * read: then the organizational domain is the last two labels (and a
 * warning is logged). */
struct psl;
struct psl *psl_load(const char *path, char **err_r);
void psl_free(struct psl **pp);
/* RFC 7489 3.2: the organizational domain of domain (lowercase, no trailing
 * dot, into out): the longest matching rule (an exception rule first) plus
 * one label; a domain that is itself a public suffix is its own. p NULL: the
 * last two labels. 0, or -1 if domain is not a domain name or out is too
 * small. No allocation: a few hash probes (one per label from the right). */
int psl_org_domain(const struct psl *p, const char *domain, char *out, size_t outsz);
/* domain with each U-label as its A-label (RFC 3492 Punycode, "xn--"; no
 * IDNA mapping beyond lowercasing ASCII), without a trailing dot, into out:
 * 0, or -1 if domain is not a domain name or out is too small. RFC 8616 6:
 * DMARC looks up and aligns internationalized domains as A-labels. */
int psl_alabels(const char *domain, char *out, size_t outsz);

/* What the message gave. */
struct dmarc_input {
	const char *from_domain;   /* RFC5322.From domain (lowercase); the caller
				    * refuses messages with none or several */
	enum spf_result spf;       /* for MAIL FROM (or HELO when MAIL FROM was <>) */
	const char *spf_domain;
	const struct dkim_results *dkim;
};
struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_policy policy;      /* the policy that applied (p or sp) */
	enum dmarc_policy disposition; /* what to do: policy, or none when pct sampled it out,
					* or when the result is not fail */
	bool spf_aligned, dkim_aligned;
	bool sampled_out;              /* pct < 100 and this message was not selected */
	const char *policy_domain;     /* where the record was found (From or org domain) */
	const struct dmarc_record *record; /* NULL when none */
	const char *problem;           /* temperror/permerror: why */
};
/* Pure: alignment (RFC 7489 3.1) and the result, given the record found at
 * policy_domain (NULL: none). rnd in [0,100) decides pct: the policy applies
 * when rnd < pct; otherwise (RFC 7489 6.6.4) reject becomes quarantine and
 * quarantine none, and sampled_out is set (only for a fail under a policy
 * other than none). sp= applies when policy_domain is not the From domain
 * (the record came from the organizational domain). Alignment is computed
 * for every result (relaxed when there is no record). out->record and
 * out->policy_domain point to rec and policy_domain. */
void dmarc_evaluate(const struct psl *psl, const struct dmarc_input *in,
		    const struct dmarc_record *rec, const char *policy_domain, int rnd,
		    struct dmarc_outcome *out);

/* The record lookup (RFC 7489 6.6.3 steps 1-6), started as soon as the
 * From: domain is known (the header section has ended), in parallel with
 * SPF and the DKIM key lookups; evaluated at the end of data, once SPF and
 * DKIM are known, by dmarc_lookup_evaluate (pure). cb(arg) once on the loop
 * thread when the lookup is over, never inside the call, unless freed first;
 * dmarc_lookup_free inside cb is allowed. Never NULL.
 * Outcomes (RFC 7489 6.6.3): no DMARC record at the From domain nor at its
 * organizational domain, several at one name, or a From domain that is not
 * a domain name: none; a record with a syntax error (and no usable rua for
 * the p=none reading of 6.6.3 step 6): permerror; a DNS timeout or
 * SERVFAIL: temperror. */
struct dmarc_lookup;
typedef void dmarc_lookup_cb(void *arg);
struct dmarc_lookup *dmarc_lookup_start(struct dns *dns, const struct psl *psl,
					const char *from_domain, dmarc_lookup_cb *cb, void *arg);
bool dmarc_lookup_done(const struct dmarc_lookup *l);
/* The outcome for in (in->from_domain is ignored: the lookup's). Not done
 * yet (the end-of-data bound passed): temperror. rnd < 0: random (pct).
 * *o points into l: valid until it is freed. */
void dmarc_lookup_evaluate(const struct dmarc_lookup *l, const struct dmarc_input *in, int rnd,
			   struct dmarc_outcome *o);
void dmarc_lookup_free(struct dmarc_lookup **lp);

#endif
