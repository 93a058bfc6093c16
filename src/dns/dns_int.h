/* Private to src/dns: the pure answer parser (parse.c) shared by the resolver
 * (dns.c), the MX/host/PTR steps (mx.c), the unit tests and the fuzz harness.
 * Nothing here touches the loop or c-ares. */
#ifndef POSTERN_DNS_DNS_INT_H
#define POSTERN_DNS_DNS_INT_H
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

/* A name in text: at most 255 wire octets (RFC 1035 2.3.4), each escaped as
 * \DDD at worst. */
#define DNS_NAME_TEXT_MAX 1024
/* How far a CNAME chain is followed inside one answer. */
#define DNS_CNAME_MAX 16
/* Cache TTL ceiling (a hostile TTL must not pin an entry): one day. */
#define DNS_TTL_MAX 86400u

/* Normalises a query name into out (lowercase, no trailing dot): 0, or -1
 * when it is not a valid domain name (empty label, label over 63 octets, name
 * over 253, a byte outside letters, digits, '-', '_', '/', '*' unless written
 * \DDD). Any other byte but NUL may be given as \DDD (RFC 1035 5.1), and is
 * kept so (a name character given so is written as itself), the form in
 * which replies are read: SPF's macros build such names (RFC 7208 7.3). Pure. */
int dns_name_normalize(const char *name, char *out, size_t outsz);
/* A normalised name in the escape form c-ares' ares_create_query reads (a
 * backslash before the byte itself; 1.18 does not read \DDD). Pure. */
void dns_name_to_ares(const char *norm, char *out, size_t outsz);

/* Parses the reply p[0..len) to the question (qname, normalised; qtype).
 * 0: *a filled (heap; free with dns_answer_clear): status from the RCODE
 * (NOERROR with records OK, without NODATA; NXDOMAIN; anything else
 * TEMPFAIL), records of qtype owned by qname or by the end of its CNAME
 * chain (RFC 1034 3.6.2), TTLs lowered to the chain's; *ttl_r the time the
 * answer may be cached: the records' least TTL, for NXDOMAIN/NODATA the SOA's
 * (RFC 2308 5), 0 = do not cache. -1: a malformed reply (*a empty). */
int dns_parse_answer(const uint8_t *p, size_t len, const char *qname, uint16_t qtype,
		     struct dns_answer *a, uint32_t *ttl_r);
void dns_answer_clear(struct dns_answer *a);
/* A deep copy of src into dst. */
void dns_answer_copy(struct dns_answer *dst, const struct dns_answer *src);

#endif
