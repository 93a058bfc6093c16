/* DKIM: RFC 6376 verification and signing, RSA-SHA256 and Ed25519-SHA256
 * (RFC 8463). rsa-sha1 is checked but never counts as valid (RFC 8301 3.1):
 * its result is DKIM_POLICY with the reason "rsa-sha1 is weak". Owned by
 * src/policy/dkim*.c.
 *
 * Streaming: the verifier and the signer are fed the message exactly as
 * received (after SMTP dot-unstuffing, CRLF line ends), in pieces; the body
 * hashes are computed as the bytes pass (one per distinct canonicalization,
 * algorithm and l= among the signatures), never with a second pass over the
 * blob. Header fields are kept (bounded, hdr.h) for the header hash.
 * Public-key operations run on the worker pool, never on the loop.
 *
 * The primitives below the high-level API are shared with ARC (arc.c):
 * tag lists, canonicalization, body hashes, keys. */
#ifndef POSTERN_POLICY_DKIM_H
#define POSTERN_POLICY_DKIM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"

struct dns;
struct pool;
struct hdr_field;

/* RFC 8601 2.7.1 result names. */
enum dkim_result {
	DKIM_NONE,      /* no signature */
	DKIM_PASS,
	DKIM_FAIL,      /* signature or body hash did not verify, or key revoked */
	DKIM_POLICY,    /* verified but unacceptable (e.g. rsa-sha1, l= covering too little) */
	DKIM_NEUTRAL,   /* syntactically bad signature (not verifiable) */
	DKIM_TEMPERROR, /* key lookup failed temporarily */
	DKIM_PERMERROR, /* key missing, malformed, too small/large, alg mismatch */
};
/* "none", "pass", "fail", "policy", "neutral", "temperror", "permerror" */
const char *dkim_result_name(enum dkim_result r);

struct dkim_limits {
	unsigned max_signatures; /* DKIM-Signature fields verified; the rest ignored */
	unsigned min_rsa_bits, max_rsa_bits;
	size_t max_field;        /* octets of one header field kept (longer: truncated) */
	size_t max_fields;       /* header fields kept for signing/verifying */
};

/* ---- verification ---- */
struct dkim_sig_result {
	enum dkim_result result;
	char *domain;    /* d= (lowercase), or NULL if unparseable */
	char *selector;  /* s= */
	char *auid;      /* i= (or "@" d= when absent) */
	char *algorithm; /* a= as written */
	unsigned key_bits; /* RSA modulus bits, 256 for Ed25519; 0 if no key */
	char b_prefix[16]; /* first 8+ characters of b= (RFC 6008 header.b) */
	char *reason;    /* for AR comments and logs, NULL on pass */
};
struct dkim_results {
	size_t n;
	struct dkim_sig_result *v; /* in the order of the fields in the message */
};
typedef void dkim_verify_cb(void *arg, const struct dkim_results *r);

struct dkim_verify;
/* dns: keys are looked up (TXT selector._domainkey.domain) as soon as the
 * header section has ended, while the body still arrives. pool: where the
 * public-key operations run. */
struct dkim_verify *dkim_verify_new(struct dns *dns, struct pool *pool,
				    const struct dkim_limits *lim);
void dkim_verify_feed(struct dkim_verify *v, const char *p, size_t n);
/* After the last byte: when every key lookup has ended, verifies (on a
 * worker) and calls cb on the loop thread, never inside this call. *r is
 * valid during the call. No signature: n = 0. */
void dkim_verify_finish(struct dkim_verify *v, dkim_verify_cb *cb, void *arg);
/* Frees; cancels lookups and a pending cb (a worker job in flight finishes
 * and is dropped). */
void dkim_verify_free(struct dkim_verify **vp);

/* ---- signing ---- */
/* One private key (loaded from the store: store_dkim_keys). */
struct dkim_key;
/* pem: a PKCS#8 private key, RSA or Ed25519. NULL with *err_r. */
struct dkim_key *dkim_key_load_private(const char *pem, char **err_r);
void dkim_key_free(struct dkim_key **kp);
/* "rsa-sha256" or "ed25519-sha256" */
const char *dkim_key_alg(const struct dkim_key *k);

struct dkim_signer_key {
	const struct dkim_key *key;
	const char *domain;   /* d= */
	const char *selector; /* s= */
};
struct dkim_sign;
/* Relaxed/relaxed, the header list of RFC 6376 5.4.1 with From, Subject, To,
 * Date (and Cc, Reply-To, Message-ID... when present) signed once more than
 * they occur (oversigning: a field added later breaks the signature). One
 * DKIM-Signature per key (dual signing: RSA and Ed25519). now: t=. The
 * keys (struct dkim_key) must outlive the signer; domain and selector are
 * copied. */
struct dkim_sign *dkim_sign_new(const struct dkim_signer_key *keys, size_t n, time_t now,
				const struct dkim_limits *lim);
void dkim_sign_feed(struct dkim_sign *s, const char *p, size_t n);
/* After the last byte: appends the DKIM-Signature fields (folded, CRLF
 * ended) to out. Pure CPU: call it on a worker. 0, or -1 (a key failed). */
int dkim_sign_finish(struct dkim_sign *s, struct buf *out);
void dkim_sign_free(struct dkim_sign **sp);

/* Generates a key: "rsa" (2048 bits) or "ed25519". *pem_r: PKCS#8 PEM;
 * *pub_r: the base64 p= value for the DNS record. 0 or -1 with *err_r. */
int dkim_keygen(const char *type, char **pem_r, char **pub_r, char **err_r);
/* The TXT record to publish: "v=DKIM1; k=rsa; p=..." */
char *dkim_dns_record(const char *alg, const char *pub);

/* ---- primitives shared with ARC ---- */
/* RFC 6376 3.2 tag=value lists. */
struct dkim_tag {
	char name[16];
	const char *value; /* into the parsed text, FWS inside kept */
	size_t len;
};
/* Parses s (len octets); fills at most max tags. Returns the count, or -1
 * if malformed (bad tag name, duplicate tag). */
int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *v, size_t max);
/* The value of tag name, or NULL; *len_r its length. */
const char *dkim_tag_get(const struct dkim_tag *v, int n, const char *name, size_t *len_r);

enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED };
enum dkim_alg { DKIM_ALG_RSA_SHA256, DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA1 };
/* RFC 6376 3.4.1 / 3.4.2: one header field (as received, with its CRLF) in
 * canonical form, appended to out. */
void dkim_canon_header(enum dkim_canon c, const char *raw, size_t len, struct buf *out);

/* A body hash (RFC 6376 3.4.3 / 3.4.4, 3.7), fed the body in pieces. */
struct dkim_bodyhash;
/* limit: l= octets of canonical body hashed, or -1 for all. */
struct dkim_bodyhash *dkim_bodyhash_new(enum dkim_canon c, enum dkim_alg a, int64_t limit);
void dkim_bodyhash_feed(struct dkim_bodyhash *b, const char *p, size_t n);
/* The digest (32 or 20 octets) into out; returns its length. Call once. */
size_t dkim_bodyhash_final(struct dkim_bodyhash *b, unsigned char out[64]);
void dkim_bodyhash_free(struct dkim_bodyhash **bp);

/* A public key from its DNS TXT record (RFC 6376 3.6.1). NULL with *err_r
 * (malformed, revoked: p= empty, unknown k=). */
struct dkim_pubkey;
struct dkim_pubkey *dkim_pubkey_parse(const char *txt, size_t len, char **err_r);
unsigned dkim_pubkey_bits(const struct dkim_pubkey *k);
void dkim_pubkey_free(struct dkim_pubkey **kp);
/* The key may be used with a (k= matches the algorithm, h= allows its hash). */
bool dkim_pubkey_allows(const struct dkim_pubkey *k, enum dkim_alg a);
/* k=ed25519 (else RSA). */
bool dkim_pubkey_is_ed25519(const struct dkim_pubkey *k);
/* t=s: i= must be exactly d=, not a subdomain (RFC 6376 3.6.1). */
bool dkim_pubkey_strict(const struct dkim_pubkey *k);
/* t=y: the domain is testing DKIM. */
bool dkim_pubkey_testing(const struct dkim_pubkey *k);
/* Base64 with FWS inside (b=, bh=, p=) into a heap buffer. 0 or -1. */
int dkim_b64_decode(const char *s, size_t len, unsigned char **out_r, size_t *n_r);
/* Verifies sig over the data that was hashed (RSA: PKCS#1 v1.5 over the
 * digest of data; Ed25519: over the SHA-256 digest, RFC 8463 3). data is
 * the canonicalized header input. 1 valid, 0 invalid, -1 wrong key type. */
int dkim_pubkey_verify(const struct dkim_pubkey *k, enum dkim_alg a, const void *data,
		       size_t len, const unsigned char *sig, size_t sig_len);
/* Signs data likewise; the signature's base64 appended to out. 0 or -1. */
int dkim_key_sign(const struct dkim_key *k, const void *data, size_t len, struct buf *out);

#endif
