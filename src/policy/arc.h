/* ARC: RFC 8617 chain validation of inbound mail and sealing of mail
 * postern forwards. Owned by src/policy/arc.c; built on dkim.h's primitives.
 * Streaming like the DKIM verifier (fed the message as received). */
#ifndef POSTERN_POLICY_ARC_H
#define POSTERN_POLICY_ARC_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/buf.h"
#include "policy/dkim.h"

struct dns;
struct pool;

/* RFC 8617 4.4 cv= values, and the chain's result for Authentication-Results. */
enum arc_result { ARC_NONE, ARC_PASS, ARC_FAIL };
const char *arc_result_name(enum arc_result r); /* "none", "pass", "fail" */

struct arc_outcome {
	enum arc_result result;
	int instances;        /* the chain's highest i= (0 when none) */
	const char *reason;   /* fail: why (logs, AR comment); NULL otherwise */
	/* pass: the domains that sealed, oldest first (for policy and logs) */
	size_t n_domains;
	char **domains;
	/* pass: RFC 8617 5.2 step 5, the lowest instance of the unbroken run
	 * of AMS that still validate down from the newest; 0 when every AMS
	 * does (AR: "header.oldest-pass", RFC 8617 10.1). -1: not computed. */
	int oldest_pass;
	/* fail: only because a key lookup failed temporarily (DNS timeout,
	 * SERVFAIL): a later try may pass. The sealer adds nothing then. */
	bool temporary;
};
typedef void arc_cb(void *arg, const struct arc_outcome *o);

struct arc_verify;
/* At most 50 ARC sets (RFC 8617 4.2.1); longer chains fail. */
struct arc_verify *arc_verify_new(struct dns *dns, struct pool *pool,
				  const struct dkim_limits *lim);
void arc_verify_feed(struct arc_verify *v, const char *p, size_t n);
/* After the last byte; cb on the loop thread, never inside this call. */
void arc_verify_finish(struct arc_verify *v, arc_cb *cb, void *arg);
/* The same, but when the outcome needs no key and no signature (no ARC
 * field, or a chain that fails on its structure) it is given at once:
 * true with *now (strings valid until v is freed), cb never called; the
 * common message without ARC costs no worker hand-off. false: cb later, as
 * arc_verify_finish. */
bool arc_verify_end(struct arc_verify *v, struct arc_outcome *now, arc_cb *cb, void *arg);
void arc_verify_free(struct arc_verify **vp);

/* Sealing (RFC 8617 5.1): fed the message as it will be forwarded (the same
 * bytes the verifier saw); finish adds, for instance i = the chain's + 1,
 * ARC-Authentication-Results (ar: this hop's results, the text after the
 * authserv-id), ARC-Message-Signature and ARC-Seal (cv = chain result),
 * appended to out in that order, each CRLF ended. rsa-sha256 only (the key
 * must be RSA): RFC 8617 takes a= from DKIM, but the receivers that check
 * ARC (Google, Microsoft, dkimpy's defaults) verify rsa-sha256 seals only.
 * chain->result fail: a full set with cv=fail whose AS covers only the new
 * set (RFC 8617 5.1.2). Nothing is added (0 returned, out unchanged) when
 * the newest AS already says cv=fail (5.1 step 1: the chain is over), when
 * instance 51 would be needed (4.2.1), when ARC fields are present but
 * chain->result is none (never validated: no cv could be claimed), or when
 * the chain failed only temporarily (chain->temporary: a DNS outage must
 * not end a chain for good; the next hop can still validate it).
 * Pure CPU: finish on a worker. */
struct arc_seal;
struct arc_seal *arc_seal_new(const struct dkim_signer_key *key, time_t now,
			      const struct dkim_limits *lim);
void arc_seal_feed(struct arc_seal *s, const char *p, size_t n);
/* authserv_id, ar: "spf=pass smtp.mailfrom=...; dkim=pass ...";
 * chain: the verifier's outcome for this message. 0 or -1. */
int arc_seal_finish(struct arc_seal *s, const char *authserv_id, const char *ar,
		    const struct arc_outcome *chain, struct buf *out);
void arc_seal_free(struct arc_seal **sp);

/* Exposed for tests: the structural checks of RFC 8617 5.2 steps 1-3 over a
 * header section (no keys, no signatures). ARC_NONE: no ARC field;
 * ARC_PASS: well formed; ARC_FAIL with *reason_r (static text).
 * *instances_r: the highest i= (51 for "more than 50"). */
enum arc_result arc_check_structure(const char *header, size_t len, int *instances_r,
				    const char **reason_r);

#endif
