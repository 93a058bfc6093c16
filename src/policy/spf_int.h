/* Private to src/policy/spf*.c: the pure SPF record parser and macro
 * expander (spf_parse.c), shared by the evaluator (spf.c), the unit tests and
 * the fuzz harness. Nothing here touches the loop or DNS. */
#ifndef POSTERN_POLICY_SPF_INT_H
#define POSTERN_POLICY_SPF_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/spf.h"

#define SPF_MAX_DNS_TERMS 10 /* RFC 7208 4.6.4 */
#define SPF_MAX_VOID 2       /* RFC 7208 4.6.4 */
#define SPF_MAX_NAMES 10     /* MX and PTR names per term, RFC 7208 4.6.4 */
#define SPF_NAME_MAX 253     /* RFC 7208 7.3: a domain name in text */
#define SPF_LABEL_MAX 63
/* An expansion longer than this is an error (an explanation) or is cut to
 * its last SPF_NAME_MAX octets by labels (a domain name, RFC 7208 7.3). */
#define SPF_EXPAND_MAX 4096
/* A name of at most 253 octets with each written \DDD, NUL-ended */
#define SPF_ESC_MAX 1024

enum spf_mech {
	SPF_M_ALL,
	SPF_M_INCLUDE,
	SPF_M_A,
	SPF_M_MX,
	SPF_M_PTR,
	SPF_M_IP4,
	SPF_M_IP6,
	SPF_M_EXISTS,
};

/* One directive (RFC 7208 4.6.1). Offsets are into the record's text. */
struct spf_term {
	uint8_t mech;            /* enum spf_mech */
	uint8_t result;          /* enum spf_result of the qualifier (5.2: "+" when none) */
	uint8_t cidr4;           /* 0..32, 32 when not given */
	uint8_t cidr6;           /* 0..128, 128 when not given */
	uint32_t off, len;       /* the term as written */
	uint32_t spec, spec_len; /* domain-spec; spec_len 0: <domain> itself */
	uint8_t addr[16];        /* ip4 (first 4) / ip6 network */
};

struct spf_record {
	char *text; /* a copy, NUL-ended */
	size_t len;
	struct spf_term *terms; /* the mechanisms, in order */
	size_t n;
	/* RFC 7208 6: at most one of each; len 0 = absent */
	uint32_t redirect, redirect_len;
	uint32_t exp, exp_len;
};

/* RFC 7208 4.5: does txt begin with "v=spf1" (any case) followed by a space
 * or its end? */
bool spf_is_spf1(const char *txt, size_t len);

/* Parses a whole record (RFC 7208 4.6, 12: every syntax error anywhere is a
 * permerror, found before anything is evaluated). 0: *rec filled (free with
 * spf_record_free); -1: err (size errsz) says why, *rec empty. */
int spf_record_parse(const char *txt, size_t len, struct spf_record *rec, char *err, size_t errsz);
void spf_record_free(struct spf_record *rec);

/* Checks a domain-spec (RFC 7208 7.1: a macro-string ending in a macro or a
 * valid toplabel): 0 or -1. */
int spf_domain_spec_check(const char *s, size_t len);

/* The values of the macro letters (RFC 7208 7.3). */
struct spf_macro_env {
	const char *s, *l, *o; /* <sender>, its local-part, its domain */
	const char *d;         /* the current <domain> */
	const char *h;         /* HELO/EHLO domain */
	const char *r;         /* the receiving host */
	const char *p;         /* the validated name; NULL: not known (see below) */
	int family;            /* AF_INET or AF_INET6: <ip> */
	const uint8_t *ip;     /* 4 or 16 octets */
	long long t;           /* now */
};

#define SPF_EXPAND_EXP 0x1    /* an explanation-string: c, r, t and spaces allowed */
#define SPF_EXPAND_DOMAIN 0x2 /* a domain: lowercased (DNS names have no case) */

/* Does the macro-string use %{p}? (The caller resolves it first.) */
bool spf_macro_uses_p(const char *s, size_t len);
/* Expands the macro-string s[0..len) (RFC 7208 7) into out (outsz bytes,
 * NUL-ended); env NULL only checks the syntax. 0, or -1: a syntax error, or
 * the expansion would exceed outsz - 1 (err says which). */
int spf_macro_expand(const char *s, size_t len, const struct spf_macro_env *env, int flags,
                     char *out, size_t outsz, char *err, size_t errsz);

/* An expanded domain made ready to look up (RFC 7208 4.3, 7.3): a trailing
 * dot dropped, labels removed from the left while it is over 253 octets.
 * 0: name is it (in place); -1: it cannot be queried (an empty label, a
 * label over 63 octets, a NUL or 8-bit byte) and counts as nonexistent. */
int spf_name_prepare(char *name);
/* name in dns_lookup's form: bytes other than letters, digits, '-', '_', as
 * \DDD. 0, or -1 if out is too small. */
int spf_name_escape(const char *name, char *out, size_t outsz);

/* The client address: "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (taken
 * as IPv4, RFC 7208 5). 0: *family and ip (16 bytes) filled; -1: not one. */
int spf_ip_parse(const char *text, int *family, uint8_t ip[16]);
/* Does ip (of family) fall in net/bits of the same family? */
bool spf_cidr_match(int family, const uint8_t *ip, const uint8_t *net, unsigned bits);

#endif
