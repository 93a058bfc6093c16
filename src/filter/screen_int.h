/* Shared by src/filter/{cidr,dnsbl,screen}.c: parsed addresses and DNSBL
 * sites. Not for other folders (screen.h is the interface). */
#ifndef POSTERN_FILTER_SCREEN_INT_H
#define POSTERN_FILTER_SCREEN_INT_H
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>

struct cidr_set;

/* The next entry of a list option (entries separated by commas and/or white
 * space, OPT_LIST): true with the entry from *start_r to the new *p, false
 * at the end of the list. */
static inline bool screen_list_next(const char **p, const char **start_r)
{
	const char *q = *p;

	while (*q == ',' || isspace((unsigned char)*q))
		q++;
	*start_r = q;
	while (*q != '\0' && *q != ',' && !isspace((unsigned char)*q))
		q++;
	*p = q;
	return q > *start_r;
}

/* A client address: fam 4 (a[0..4)) or 6; an IPv4-mapped IPv6 address is
 * fam 4. */
struct screen_addr {
	uint8_t fam;
	uint8_t a[16];
};
/* A textual address (IPv6 may be in brackets): 0 or -1. */
int screen_addr_parse(const char *ip, struct screen_addr *out);
bool cidr_set_match_addr(const struct cidr_set *s, const struct screen_addr *a);
/* Sorts and indexes s for matching (entries added later are scanned until
 * the next call); duplicates are dropped. */
void cidr_set_finish(struct cidr_set *s);

/* The longest zone accepted: an IPv6 query name has 64 octets of nibbles
 * before it, and a name is at most 253 octets (RFC 1035 2.3.4, without the
 * final dot). */
#define DNSBL_ZONE_MAX (253 - 64)

struct dnsbl_site {
	char *zone;         /* lowercase, no trailing dot */
	int weight;         /* default 1; negative: an allowlist */
	bool filter;        /* false: any 127/8 answer but 127.255.255/24 */
	uint8_t ok[4][32];  /* per octet of the answer, a bitmap of the values that count */
};

#endif
