/* Asynchronous DNS on the event loop (c-ares: its sockets are watched by the
 * loop, no thread, no blocking call), with timeouts, retries and a small cache
 * that honours TTLs. Used by outbound delivery (MX, A, AAAA), inbound
 * (verified reverse DNS for Received) and later by SPF/DKIM/DMARC (TXT) and
 * DANE (TLSA).
 *
 * Why c-ares: it is a small, well-kept Debian library (libc-ares-dev) built to
 * be driven by someone else's event loop, so queries cost a socket and a
 * callback, not a thread. DNSSEC (for DANE) can come later by asking a
 * validating resolver and checking the AD bit; libunbound would validate
 * itself but brings its own threads or processes.
 *
 * Callbacks always run from the loop, never inside the call that started the
 * query (a cache hit is answered on the next loop pass), and exactly once
 * unless the query is cancelled first. The answer passed to a callback is
 * valid only during the callback. */
#ifndef POSTERN_DNS_DNS_H
#define POSTERN_DNS_DNS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "core/loop.h"

struct dns;
struct dns_query;

struct dns_config {
	const char *servers; /* "ip[:port],[ipv6]:port,..."; NULL or "" = /etc/resolv.conf */
	unsigned timeout_ms; /* per try */
	int tries;
	size_t cache_size;   /* answers kept; 0 = no cache */
};

/* NULL with *err_r (heap) when the resolver cannot be set up. */
struct dns *dns_new(struct loop *l, const struct dns_config *cfg, char **err_r);
/* Cancels every pending query (their callbacks are not called) and frees. */
void dns_free(struct dns **dp);
/* The loop d runs on (for users that defer their own callbacks, as SPF does). */
struct loop *dns_loop(const struct dns *d);

enum dns_type {
	DNS_A = 1,
	DNS_PTR = 12,
	DNS_MX = 15,
	DNS_TXT = 16,
	DNS_AAAA = 28,
	DNS_SRV = 33, /* RFC 2782 (postern dns check: RFC 6186 records) */
	DNS_TLSA = 52,
};

enum dns_status {
	DNS_OK = 0,        /* records in the answer (n > 0) */
	DNS_NODATA = 1,    /* the name exists, no record of this type */
	DNS_NXDOMAIN = 2,  /* the name does not exist: permanent */
	DNS_TEMPFAIL = -1, /* timeout, SERVFAIL, REFUSED, network: try later */
	DNS_BADNAME = -2,  /* the name is not a valid domain name: permanent */
};

struct dns_rr {
	uint16_t type; /* enum dns_type */
	uint32_t ttl;
	union {
		struct in_addr a;
		struct in6_addr aaaa;
		struct {
			uint16_t pref;
			char *host; /* lowercase, no trailing dot; "" for a null MX (RFC 7505) */
		} mx;
		struct {
			char *text; /* the record's strings concatenated (RFC 7208 3.3), NUL-ended */
			size_t len;
		} txt;
		char *ptr; /* lowercase, no trailing dot */
		struct {
			uint16_t prio, weight, port;
			char *target; /* lowercase, no trailing dot; "" for "." */
		} srv;
		struct {
			uint8_t usage, selector, mtype;
			uint8_t *data;
			size_t len;
		} tlsa;
	} u;
};

struct dns_answer {
	enum dns_status status;
	bool authenticated; /* the AD bit was set (a validating resolver vouched for it) */
	size_t n;
	struct dns_rr *rr; /* only records of the asked type (CNAMEs followed) */
};

typedef void dns_cb(void *arg, const struct dns_answer *a);

/* Starts a query; NULL only when it could not even start (then cb is never
 * called). name: a domain name without trailing dot, or with one. */
struct dns_query *dns_lookup(struct dns *d, const char *name, enum dns_type type, dns_cb *cb,
			     void *arg);
/* Cancels *qp if not NULL (its callback is not called) and sets it NULL.
 * Must not be called from inside the query's own callback. */
void dns_cancel(struct dns_query **qp);

/* ---- mail exchangers (RFC 5321 5.1) ---- */
struct dns_host {
	char *name;                   /* the exchanger's name */
	uint16_t pref;
	size_t n_addr;
	struct sockaddr_storage *addr; /* port 0; IPv6 before IPv4 when both */
};
enum dns_mx_status {
	DNS_MX_OK = 0,        /* hosts[] in the order to try them, each with >= 1 address */
	DNS_MX_NULL = 1,      /* null MX (RFC 7505): the domain accepts no mail; permanent */
	DNS_MX_NXDOMAIN = 2,  /* no such domain, or no MX and no address: permanent */
	DNS_MX_TEMPFAIL = -1, /* a lookup failed temporarily and nothing usable was found */
};
struct dns_mx_result {
	enum dns_mx_status status;
	bool implicit; /* no MX record: the domain's own A/AAAA (RFC 5321 5.1) */
	size_t n;
	struct dns_host *hosts;
};
typedef void dns_mx_cb(void *arg, const struct dns_mx_result *r);
/* Resolves where mail for domain goes: MX records sorted by preference, equal
 * preferences shuffled, each host's AAAA and A looked up (as inet asks:
 * "all", "ipv4", "ipv6"); hosts without any address are left out; when there
 * is no MX, the domain itself (implicit MX). A null MX is a permanent failure;
 * so is an MX list naming only hosts that do not exist. The result (hosts,
 * names, addresses) is valid during cb only. Cancel with dns_cancel. */
struct dns_query *dns_resolve_mx(struct dns *d, const char *domain, const char *inet,
				 dns_mx_cb *cb, void *arg);
/* The same for one host name (a relayhost): one dns_host with its addresses;
 * status DNS_MX_OK, DNS_MX_NXDOMAIN or DNS_MX_TEMPFAIL. An IP literal ("1.2.3.4",
 * "[::1]") is answered without a query. */
struct dns_query *dns_resolve_host(struct dns *d, const char *host, const char *inet,
				   dns_mx_cb *cb, void *arg);

/* Pure, for the resolver and its unit tests: sorts mx[0..n) by preference and
 * shuffles each run of equal preferences with rnd (a random-number function
 * returning a uniform uint32_t; arg passed to it). */
struct dns_mx_pref {
	uint16_t pref;
	const char *host;
};
void dns_mx_order(struct dns_mx_pref *mx, size_t n, uint32_t (*rnd)(void *arg), void *arg);

/* ---- reverse DNS ---- */
/* "4.3.2.1.in-addr.arpa" or the ip6.arpa nibble name for a textual address:
 * 0, or -1 when ip is not an address or out is too small. Pure. */
int dns_reverse_name(const char *ip, char *out, size_t outsz);
typedef void dns_name_cb(void *arg, const char *name);
/* Forward-confirmed reverse DNS: the PTR names of ip whose A/AAAA records
 * include ip again; cb gets the first such name, or NULL (no PTR, no match,
 * failure or timeout). */
struct dns_query *dns_verify_ptr(struct dns *d, const char *ip, dns_name_cb *cb, void *arg);
/* The same, and tempfail: no name, and a lookup failed temporarily (timeout,
 * SERVFAIL) rather than answering "no such name" (RFC 8601 2.7.3: iprev
 * temperror vs fail). */
typedef void dns_ptr_cb(void *arg, const char *name, bool tempfail);
struct dns_query *dns_verify_ptr_ex(struct dns *d, const char *ip, dns_ptr_cb *cb, void *arg);

#endif
