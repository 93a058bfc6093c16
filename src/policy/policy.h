/* Sender authentication for one SMTP transaction: the orchestration of SPF,
 * DKIM (verify and sign), ARC, DMARC and SRS, and the fields postern adds
 * (Authentication-Results, RFC 8601). Owned by src/policy/policy.c and
 * authres.c. The SMTP server calls it at the stage that knows each answer
 * (docs/design.md "Sender authentication"); nothing here blocks the loop:
 * DNS goes through src/dns, public-key work to the worker pool.
 *
 * Inbound (MX role, not authenticated):
 *   MAIL      SPF for MAIL FROM (and HELO) starts; with spf_action = reject
 *             MAIL waits for it (fail: 550 5.7.23, temperror: 451 4.7.24).
 *   RCPT      a local alias that leads to a remote address: policy_forward()
 *             (the message will be SRS-rewritten and ARC-sealed).
 *   content   every byte goes through policy_content(): DKIM and ARC verify
 *             as it streams; Authentication-Results fields claiming our
 *             authserv-id are removed from what reaches the spool (RFC 8601
 *             5: forgery).
 *   end       policy_end() waits for the lookups, evaluates DMARC, records
 *             it for aggregate reports, and gives the verdict: accept (with
 *             the fields to prepend and whether it goes to Junk), or a reply
 *             (550 5.7.1 for p=reject).
 * Submission (authenticated): no checks; policy_end signs with the From:
 * domain's DKIM keys (dual: RSA and Ed25519) when it has any. */
#ifndef POSTERN_POLICY_POLICY_H
#define POSTERN_POLICY_POLICY_H
#include <stdbool.h>
#include <stddef.h>

struct loop;
struct dns;
struct pool;
struct store;
struct config;

/* Daemon-wide: the resolver, workers, store (DKIM keys, DMARC records, the
 * SRS secret), the public suffix list, the signing keys cache. */
struct policy;
/* dns may be NULL (no DNS-based checks: results none). NULL with *err_r. */
struct policy *policy_new(struct loop *l, struct dns *dns, struct pool *pool, struct store *st,
			  const struct config *cfg, char **err_r);
void policy_free(struct policy **pp);
/* The SRS secrets (srs_secrets_load, newest first) for forwarding; owned by
 * the caller, valid until policy_free. None set: no rewriting. */
void policy_set_srs(struct policy *p, char **secrets, size_t n);

struct policy_conn {
	const char *txid;      /* the SMTP transaction's id, for the log line */
	const char *ip;
	const char *helo;      /* may be NULL */
	const char *rdns;      /* forward-confirmed reverse name, NULL if none */
	const char *auth_user; /* NULL: not authenticated */
	bool mx;               /* the MX listener (inbound checks apply) */
	bool rdns_temp;        /* rdns NULL: the reverse lookup failed temporarily */
	/* helo's SPF result (enum spf_result) from an earlier transaction of
	 * this connection (policy_tx_helo_spf): RFC 7208 2.3's check depends on
	 * the client's address and the HELO name only, so it is not asked again
	 * for each message a connection sends */
	bool helo_spf_known;
	int helo_spf;
};

/* A reply decided by policy. code 0: go on. */
struct policy_verdict {
	int code;
	const char *ecode;
	const char *text;
	/* at the end of data, code 0: */
	bool junk;              /* store_delivery.junk */
	const char *prefix;     /* fields to prepend after Return-Path (may be "") */
	size_t prefix_len;
	const char *queue_from; /* store_delivery.queue_from (SRS), or NULL */
};
/* On the loop thread; *v valid during the call (its strings live until
 * policy_tx_free). */
typedef void policy_cb(void *arg, const struct policy_verdict *v);

struct policy_tx;
/* At MAIL FROM (mail_from "" for <>). Strings copied. */
struct policy_tx *policy_tx_new(struct policy *p, const struct policy_conn *c,
				const char *mail_from);
/* The HELO identity's SPF result for the connection to remember (into
 * policy_conn.helo_spf of its next transactions): false while there is none
 * worth keeping (not checked, not finished, or a temporary error). */
bool policy_tx_helo_spf(const struct policy_tx *t, int *result_r);
/* Whether MAIL must wait: true = cb will run once (never inside this call)
 * with the reply to give (code 0: 250); false = answer MAIL now. */
bool policy_mail(struct policy_tx *t, policy_cb *cb, void *arg);
/* An accepted recipient's domain (the first is DMARC's envelope_to in
 * aggregate reports). */
void policy_rcpt(struct policy_tx *t, const char *rcpt_domain);
/* A recipient reached through a local alias of rcpt_domain that leads to a
 * remote address (forwarding). */
void policy_forward(struct policy_tx *t, const char *rcpt_domain);
/* The message's bytes as the client sent them (dot-unstuffing done,
 * submission's inserted Message-ID/Date included), in order, in pieces.
 * out(arg, bytes, n) receives what is to be stored (forged
 * Authentication-Results removed); it may be called later than the bytes
 * it carries were fed (a header field is held until it is complete), and
 * policy_content_end() flushes. */
typedef void policy_out_fn(void *arg, const char *p, size_t n);
void policy_content(struct policy_tx *t, const char *p, size_t n, policy_out_fn *out,
		    void *arg);
void policy_content_end(struct policy_tx *t, policy_out_fn *out, void *arg);
/* After the last byte (and a clean end of data): cb once, never inside this
 * call, with the verdict. */
void policy_end(struct policy_tx *t, policy_cb *cb, void *arg);
/* Cancels what is pending (no callback after this) and frees. */
void policy_tx_free(struct policy_tx **tp);

/* After policy_end's verdict: the results as signals for src/filter (RFC
 * 8601 result words; NULL where nothing was checked, and for submission).
 * Strings valid until policy_tx_free. */
struct policy_results {
	const char *spf, *dkim, *dmarc;
	const char *from_domain; /* the one RFC5322.From domain, or NULL */
	bool dmarc_pass;
};
void policy_results(const struct policy_tx *t, struct policy_results *r);

#endif
