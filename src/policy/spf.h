/* SPF: RFC 7208 check_host() for the MAIL FROM and HELO identities.
 * Owned by src/policy/spf*.c. Every DNS lookup goes through src/dns (on the
 * loop, never blocking); the record parser and the macro expander are pure
 * (spf_int.h, fuzzed). Limits (RFC 7208 4.6.4): 10 DNS-querying terms, 2 void
 * lookups, 10 MX and 10 PTR names per term; include/redirect loops end in
 * permerror; a name of over 253 octets or a label over 63 is never queried. */
#ifndef POSTERN_POLICY_SPF_H
#define POSTERN_POLICY_SPF_H
#include <stdbool.h>

struct dns;

/* RFC 7208 2.6, in RFC 8601 spelling. */
enum spf_result {
	SPF_NONE,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};
/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" */
const char *spf_result_name(enum spf_result r);

struct spf_request {
	const char *ip;       /* the client's address, IPv4 or IPv6 text (v4-mapped v6 = v4) */
	const char *domain;   /* <domain> of check_host: the MAIL FROM domain, or the HELO name */
	const char *sender;   /* <sender>: the MAIL FROM address, or postmaster@HELO name
			       * (RFC 7208 2.4: MAIL FROM <> checks postmaster@helo) */
	const char *helo;     /* %{h}; may be NULL */
	const char *receiver; /* %{r}: our host name */
	const char *default_exp; /* the explanation of a fail without a usable exp= (a
				  * macro-string, RFC 7208 6.2); NULL: a built-in one */
};

struct spf_outcome {
	enum spf_result result;
	const char *domain;      /* the domain checked */
	const char *mechanism;   /* the matching term as written ("ip4:192.0.2.0/24",
				  * "default" when none matched), NULL for none/errors */
	const char *explanation; /* fail: exp= expanded (RFC 7208 6.2), or the default
				  * explanation; NULL otherwise */
	const char *problem;     /* temperror/permerror: why, for logs; NULL otherwise */
};
/* Runs on the loop thread; *o is valid during the call only. */
typedef void spf_cb(void *arg, const struct spf_outcome *o);

struct spf_query;
/* Starts check_host(). The request's strings are copied. cb runs exactly
 * once, never inside this call (a result known at once comes on the next
 * loop pass), unless the query is cancelled first. NULL only when nothing
 * could start (then cb never runs). The whole evaluation is bounded by the
 * lookup limits and src/dns's timeouts; a timeout is temperror. */
struct spf_query *spf_check(struct dns *dns, const struct spf_request *r, spf_cb *cb,
			    void *arg);
/* Cancels *qp if not NULL (cb is not called) and sets it NULL. Not from cb.
 * Safe at any point (its lookups in flight are cancelled); every check must
 * be cancelled or finished before dns_free(). */
void spf_cancel(struct spf_query **qp);

#endif
