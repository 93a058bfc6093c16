/* SRS: the Sender Rewriting Scheme for forwarded mail (the SRS0/SRS1 forms
 * of Shevek's "Sender Rewriting Scheme" paper, as libsrs2 and postsrsd
 * write them). Pure; owned by src/policy/srs.c.
 *
 *   SRS0=HHHH=TT=orig-domain=orig-local@our-domain
 *   SRS1=HHHH=first-domain==SRS0-opaque-part@our-domain  (forwarding an SRS0 address)
 *
 * HHHH: the first 4 characters of base64(HMAC-SHA1(secret, the rest,
 * lowercased)); TT: days since the epoch mod 1024 in base32 (2 characters).
 * Comparison is case-insensitive (mail systems change case). */
#ifndef POSTERN_POLICY_SRS_H
#define POSTERN_POLICY_SRS_H
#include <stddef.h>
#include <time.h>

/* The envelope sender for mail forwarded from our_domain: sender rewritten
 * (an SRS0 or SRS1 address, or sender as is when it is "" (<>), has no
 * domain, or is already an address of our_domain: an SRS address of ours,
 * or a local sender, which passes SPF at the next hop anyway). Returns a heap string, or NULL when the result
 * would exceed 254 octets... (then the caller forwards with the sender as is). */
char *srs_forward(const char *secret, const char *sender, const char *our_domain, time_t now);

/* Reverses an SRS address of ours. Returns 1 with *orig_r (heap) the address
 * to send to, 0 if addr is not an SRS address (starts neither SRS0= nor
 * SRS1=, any case), -1 if it is one but forged (no secret's hash matches),
 * expired (older than max_age seconds) or malformed; *why_r then says which
 * (static text). */
int srs_reverse(const char *const *secrets, size_t n_secrets, const char *addr, time_t now,
		unsigned max_age, char **orig_r, const char **why_r);

struct store;
struct config;
/* The SRS secrets: cfg->srs_secret's list when set, else the one kept in the
 * store's settings ("srs_secret"), generated (32 random octets, base64) and
 * saved at the first call. Returns a NULL-terminated heap array of heap
 * strings (free with srs_secrets_free), *n_r the count (>= 1), or NULL after
 * logging why. Caller's thread (the daemon's start, the CLI). */
char **srs_secrets_load(struct store *st, const struct config *cfg, size_t *n_r);
void srs_secrets_free(char ***vp);

#endif
