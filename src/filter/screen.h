/* The connection stage (MX listener): trusted networks, the local
 * allow/block lists (CIDR, kept in the store, `postern allow|block`), the
 * per-IP connection rate, and DNS block/allow lists queried asynchronously
 * while the client waits for the greeting (as Postfix's postscreen).
 * Owned by src/filter/screen.c (+ cidr.c, dnsbl.c as it sees fit). */
#ifndef POSTERN_FILTER_SCREEN_H
#define POSTERN_FILTER_SCREEN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "filter/reasons.h"

struct loop;
struct dns;
struct store;
struct config;

/* ---- CIDR sets (pure; fuzzed) ---- */
/* Room for any canonical entry: INET6_ADDRSTRLEN (46, with its NUL) + "/128". */
#define CIDR_TEXT_MAX 50
struct cidr_set;
/* "192.0.2.0/24, 2001:db8::/32, 198.51.100.7" (a bare address is /32 or
 * /128). NULL with *err_r naming the bad entry. */
struct cidr_set *cidr_set_parse(const char *list, char **err_r);
/* Adds one entry; 0 or -1 (not an address/prefix). */
int cidr_set_add(struct cidr_set *s, const char *entry);
struct cidr_set *cidr_set_new(void);
bool cidr_set_match(const struct cidr_set *s, const char *ip);
void cidr_set_free(struct cidr_set **sp);
/* "a.b.c.d/n" or the IPv6 network of ip with prefix len net4/net6 (its
 * host bits zero), written into out. 0 or -1 (not an address). */
int cidr_network(const char *ip, int net4, int net6, char *out, size_t outsize);
/* The canonical form of one entry (what the store keeps): host bits zeroed,
 * the prefix always written, IPv6 as inet_ntop writes it (RFC 5952), an
 * IPv4-mapped IPv6 address as IPv4: "192.0.2.1/24" -> "192.0.2.0/24",
 * "2001:DB8:0::1" -> "2001:db8::1/128". 0 or -1 (not an address/prefix). */
int cidr_canonical(const char *entry, char *out, size_t outsize);
/* Entries in s. */
size_t cidr_set_count(const struct cidr_set *s);

/* ---- DNSBL site list (pure; fuzzed) ---- */
/* One dnsbl_sites entry: zone[=filter][*weight] (Postfix postscreen_dnsbl_sites
 * syntax: filter d.d.d.d where each part is n, [n..m] or [n;m;...]). */
struct dnsbl_site;
/* The whole list; NULL with *err_r on a bad entry. *n_r sites. */
struct dnsbl_site *dnsbl_sites_parse(const char *list, size_t *n_r, char **err_r);
void dnsbl_sites_free(struct dnsbl_site *v, size_t n);
/* Site i's zone (lowercase, no trailing dot), weight, and whether an A
 * record a (network order, 4 octets) is a listing by its filter. Without a
 * filter any 127.0.0.0/8 answer counts except 127.255.255.0/24, the range
 * lists use to say "query refused" (Spamhaus: 127.255.255.252..255); answers
 * outside 127/8 never count (a resolver's NXDOMAIN rewriting, RFC 5782 2.1
 * puts every entry in 127/8). */
const char *dnsbl_site_zone(const struct dnsbl_site *v, size_t i);
int dnsbl_site_weight(const struct dnsbl_site *v, size_t i);
bool dnsbl_site_match(const struct dnsbl_site *v, size_t i, const uint8_t a[4]);
/* The reason's rule for zone: "DNSBL_" + the zone upper-cased, every other
 * character than A-Z and 0-9 made '_' ("DNSBL_ZEN_SPAMHAUS_ORG"). */
void dnsbl_rule_name(const char *zone, char *out, size_t outsize);
/* The query name for ip: "2.0.0.127.zen.spamhaus.org" (IPv6: 32 nibbles,
 * RFC 5782 2.4). 0 or -1. */
int dnsbl_query_name(const char *zone, const char *ip, char *out, size_t outsize);

/* ---- the daemon's screen ---- */
struct screen;
/* Loads the local lists from the store (st->main, at start). NULL with *err_r. */
struct screen *screen_new(struct loop *l, struct dns *dns, struct store *st,
			  const struct config *cfg, char **err_r);
void screen_free(struct screen **sp);
/* Re-reads the local lists now. The screen watches the CLI's change notice
 * itself (store_ip_lists_watch, on l) and checks it once a minute besides,
 * so nobody else needs to call this. */
void screen_reload(struct screen *s);
bool screen_trusted(const struct screen *s, const char *ip);

struct screen_result {
	bool trusted;      /* in trusted_networks: nothing else applies */
	bool allowed;      /* local allow list, or DNSBL score at/below the allowlist threshold */
	bool blocked;      /* local block list, or DNSBL score at/above dnsbl_threshold */
	bool local_block;  /* blocked by the local block list (refused even under
			    * dnsbl_action = ignore) */
	bool rate_exceeded; /* more than conn_rate_limit connections this minute */
	bool done;         /* every DNSBL lookup answered (or failed/timed out) */
	int score;         /* summed weights of the sites that listed the IP */
	const char *why;   /* for a reply: "client [192.0.2.1] blocked using zen.spamhaus.org" */
	struct filter_reasons reasons; /* one per listing (DNSBL_<ZONE>, its weight) */
};
struct screen_conn;
/* At accept: counts the connection, checks the lists and starts the lookups
 * (none for trusted or locally listed clients). */
struct screen_conn *screen_conn_new(struct screen *s, const char *ip, time_t now);
/* Valid until screen_conn_free; updated as answers arrive. */
const struct screen_result *screen_conn_result(const struct screen_conn *c);
/* Until every lookup has answered: cb(arg) once, later, on the loop; false
 * when done already (no callback). Each lookup is bounded by the resolver's
 * timeout; a failed one counts as not listed. */
bool screen_conn_wait(struct screen_conn *c, void (*cb)(void *arg), void *arg);
/* A later call replaces the waiter; cb NULL cancels it (nothing is called):
 * a waiter freed before the answers came must do that. */
void screen_conn_free(struct screen_conn **cp);

#endif
