/* Private to src/dns: the resolver's state (dns.c) and the query object that
 * dns.c (lookups) and mx.c (MX, host and FCrDNS steps) share. Loop thread
 * only. */
#ifndef POSTERN_DNS_DNS_PRIV_H
#define POSTERN_DNS_DNS_PRIV_H
#include <ares.h>
#include <stdbool.h>

#include "dns/dns.h"

struct dns_flight;
struct dns_cent;

struct dns_sock {
	struct dns_sock *next;
	struct dns *d;
	ares_socket_t fd;
};

struct dns {
	struct loop *l;
	ares_channel ch;
	struct timer *tmo;          /* c-ares' next timeout */
	struct dns_sock *socks;     /* sockets watched for c-ares */
	struct dns_flight *flights; /* c-ares queries in flight */
	struct dns_query *queries;  /* every live query (dns_free frees them) */
	bool freeing;
	/* cache: hash of "type:name" + LRU list, at most cache_size entries */
	size_t cache_size, n_cache, nbuckets;
	struct dns_cent **buckets;
	struct dns_cent *lru_head, *lru_tail;
};

enum dns_qkind { DNS_Q_LOOKUP, DNS_Q_MX, DNS_Q_HOST, DNS_Q_PTR };

struct dns_query {
	struct dns *d;
	struct dns_query *next, *prev; /* d->queries */
	enum dns_qkind kind;
	struct timer *later; /* an answer given on the next loop pass */
	/* DNS_Q_LOOKUP */
	char *name; /* normalised */
	enum dns_type type;
	dns_cb *cb;
	void *arg;
	enum dns_status status; /* for an answer without a reply (BADNAME) */
	struct dns_flight *flight;
	struct dns_query *wnext, *wprev; /* the flight's waiters */
	/* composite steps (mx.c): cancel stops their sub-queries (dns_cancel);
	 * free_extra frees what they own (also called by dns_free, which frees
	 * the sub-queries itself). */
	void (*cancel)(struct dns_query *q);
	void (*free_extra)(struct dns_query *q);
	void *ext;
};

void dns_query_link(struct dns *d, struct dns_query *q);
/* Unlinks q, cancels q->later, calls free_extra, frees q. */
void dns_query_unlink_free(struct dns_query *q);
void dns_lookup_start(struct dns_query *q);

#endif
