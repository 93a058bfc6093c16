/* Private to src/policy/dkim*.c: the parsed DKIM-Signature and the header
 * fields kept, shared by the verifier, the signer (dkim.c) and the pure
 * parsing (dkim_sig.c). */
#ifndef POSTERN_POLICY_DKIM_INT_H
#define POSTERN_POLICY_DKIM_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "policy/dkim.h"
#include "policy/hdr.h"

#define DKIM_SIG_MAX_TAGS 32 /* tags in one DKIM-Signature; more: malformed */
#define DKIM_DOMAIN_MAX 253  /* RFC 1035 2.3.4 */
#define DKIM_FOLD 78         /* RFC 5322 2.1.1: lines SHOULD be at most 78 */

struct kfield {
	char *raw;
	size_t len, name_len;
};

struct kfields {
	struct kfield *v;
	size_t n, cap;
};

/* A name in an h= list, or the signer's list. */
struct hname {
	const char *p;
	size_t len;
};

struct dkim_verify;
struct dns_query;

struct vsig {
	enum dkim_result result; /* DKIM_NONE: not decided yet */
	char *reason;
	char *domain, *selector, *auid, *algorithm;
	char b_prefix[16];
	unsigned key_bits;
	/* parsed */
	enum dkim_alg alg;
	enum dkim_canon hc, bc;
	int64_t l;
	char *raw; /* the field, a copy */
	size_t raw_len, b_off, b_len;
	struct hname *h;
	size_t nh;
	unsigned char *bh, *b;
	size_t bh_len, b_len_dec;
	int bhi; /* index of its body hash */
	/* the key */
	struct dkim_verify *owner;
	struct dns_query *q;
	char *key_txt;
	size_t key_len;
};

/* A copy of f appended. */
void dkim_kfields_add(struct kfields *f, const struct hdr_field *h);
void dkim_kfields_free(struct kfields *f);
/* RFC 6376 5.4.2: the fields named in h (bottom-up), canonicalized. */
void dkim_header_data(const struct kfields *f, const struct hname *h, size_t nh,
		      enum dkim_canon c, struct buf *out);
/* The signature field with b= emptied, canonicalized, no final CRLF. */
void dkim_sig_field_data(const char *raw, size_t len, size_t b_off, size_t b_len,
			 enum dkim_canon c, struct buf *out);
/* Parses the field raw (RFC 6376 3.5, 6.1.1) into s (zeroed by the caller);
 * a signature that cannot be verified gets its result and reason here. */
void dkim_sig_parse(struct vsig *s, const char *raw, size_t len, bool truncated, time_t now);
/* Sets the result once (the first verdict stays). */
void dkim_vsig_set(struct vsig *s, enum dkim_result r, const char *reason);
/* Frees what parsing and the lookup allocated (not the query). */
void dkim_vsig_clear(struct vsig *s);

#endif
