/* The resolver: c-ares driven by the loop (its sockets through
 * ARES_OPT_SOCK_STATE_CB and ares_process_fd, its timeouts through one loop
 * timer armed from ares_timeout), one c-ares query per (name, type) in flight
 * whatever the number of waiters, and a bounded TTL cache (LRU eviction).
 * Queries are sent raw (ares_send) so that the AD bit can be asked for
 * (RFC 6840 5.7) and the reply read by parse.c. mx.c builds the MX, host and
 * FCrDNS steps on dns_lookup. */
#include <ares.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "dns/dns_int.h"
#include "dns/dns_priv.h"

struct dns_flight {
	struct dns *d;
	struct dns_flight *next, *prev;
	char *name;
	enum dns_type type;
	struct dns_query *waiters; /* Q_LOOKUP queries, via wnext/wprev */
	bool starting;             /* inside ares_send: an answer now is deferred */
	bool done;                 /* answered while starting */
	struct dns_answer ans;
	uint32_t ttl;
	bool cacheable;
	struct timer *later;
};

struct dns_cent {
	struct dns_cent *hnext;       /* hash chain */
	struct dns_cent *lnext, *lprev; /* LRU, most recent first */
	char *key;                    /* "type:name" */
	uint64_t stored_ms, expires_ms;
	struct dns_answer ans;
};

#define DNS_HASH_MIN 64

static uint32_t key_hash(const char *k)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h;
}

/* ---- the query list (every live query, for dns_free) ---- */

void dns_query_link(struct dns *d, struct dns_query *q)
{
	q->d = d;
	q->next = d->queries;
	q->prev = NULL;
	if (d->queries)
		d->queries->prev = q;
	d->queries = q;
}

void dns_query_unlink_free(struct dns_query *q)
{
	struct dns *d = q->d;
	if (q->prev)
		q->prev->next = q->next;
	else
		d->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	loop_timer_cancel(d->l, &q->later);
	free(q->name);
	if (q->free_extra)
		q->free_extra(q);
	free(q);
}

/* ---- the cache ---- */

static void cent_free(struct dns *d, struct dns_cent *e)
{
	uint32_t b = key_hash(e->key) % d->nbuckets;
	for (struct dns_cent **pp = &d->buckets[b]; *pp; pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	}
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		d->lru_head = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	else
		d->lru_tail = e->lprev;
	d->n_cache--;
	dns_answer_clear(&e->ans);
	free(e->key);
	free(e);
}

static struct dns_cent *cache_get(struct dns *d, const char *key)
{
	if (d->nbuckets == 0)
		return NULL;
	for (struct dns_cent *e = d->buckets[key_hash(key) % d->nbuckets]; e; e = e->hnext) {
		if (strcmp(e->key, key) != 0)
			continue;
		if (e->expires_ms <= loop_now(d->l)) {
			cent_free(d, e);
			return NULL;
		}
		/* most recently used first */
		if (e->lprev) {
			e->lprev->lnext = e->lnext;
			if (e->lnext)
				e->lnext->lprev = e->lprev;
			else
				d->lru_tail = e->lprev;
			e->lprev = NULL;
			e->lnext = d->lru_head;
			d->lru_head->lprev = e;
			d->lru_head = e;
		}
		return e;
	}
	return NULL;
}

static void cache_put(struct dns *d, const char *key, const struct dns_answer *a, uint32_t ttl)
{
	struct dns_cent *old;

	if (d->cache_size == 0 || ttl == 0)
		return;
	if ((old = cache_get(d, key)) != NULL)
		cent_free(d, old);
	while (d->n_cache >= d->cache_size && d->lru_tail)
		cent_free(d, d->lru_tail);
	struct dns_cent *e = xcalloc(1, sizeof(*e));
	e->key = xstrdup(key);
	e->stored_ms = loop_now(d->l);
	e->expires_ms = e->stored_ms + (uint64_t)(ttl < DNS_TTL_MAX ? ttl : DNS_TTL_MAX) * 1000;
	dns_answer_copy(&e->ans, a);
	uint32_t b = key_hash(key) % d->nbuckets;
	e->hnext = d->buckets[b];
	d->buckets[b] = e;
	e->lnext = d->lru_head;
	if (d->lru_head)
		d->lru_head->lprev = e;
	d->lru_head = e;
	if (d->lru_tail == NULL)
		d->lru_tail = e;
	d->n_cache++;
}

/* ---- c-ares on the loop ---- */

static void arm_timer(struct dns *d);

static void on_sock(void *arg, uint32_t events)
{
	struct dns_sock *ds = arg;
	struct dns *d = ds->d;
	ares_socket_t fd = ds->fd;

	ares_process_fd(d->ch, events & (LOOP_READ | LOOP_ERROR) ? fd : ARES_SOCKET_BAD,
			events & LOOP_WRITE ? fd : ARES_SOCKET_BAD);
	arm_timer(d);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	uint32_t ev = (readable ? LOOP_READ : 0) | (writable ? LOOP_WRITE : 0);
	struct dns_sock **pp, *ds;

	for (pp = &d->socks; (ds = *pp) != NULL && ds->fd != fd; pp = &ds->next)
		;
	if (ev == 0) {
		if (ds != NULL) {
			loop_del(d->l, fd);
			*pp = ds->next;
			free(ds);
		}
		return;
	}
	if (ds != NULL) {
		if (loop_mod(d->l, fd, ev) < 0)
			log_err("dns: watching socket %d: %m", (int)fd);
		return;
	}
	ds = xcalloc(1, sizeof(*ds));
	ds->d = d;
	ds->fd = fd;
	if (loop_add(d->l, fd, ev, on_sock, ds) < 0) {
		log_err("dns: watching socket %d: %m", (int)fd);
		free(ds);
		return;
	}
	ds->next = d->socks;
	d->socks = ds;
}

static void on_timeout(void *arg)
{
	struct dns *d = arg;
	d->tmo = NULL;
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_timer(d);
}

static void arm_timer(struct dns *d)
{
	struct timeval tv, *tvp;

	if (d->freeing)
		return;
	loop_timer_cancel(d->l, &d->tmo);
	tvp = ares_timeout(d->ch, NULL, &tv);
	if (tvp == NULL)
		return;
	/* +1: never wake before c-ares thinks the time has come. */
	uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + (uint64_t)tvp->tv_usec / 1000 + 1;
	d->tmo = loop_timer_add(d->l, ms, on_timeout, d);
}

struct dns *dns_new(struct loop *l, const struct dns_config *cfg, char **err_r)
{
	static bool lib_ready;
	struct ares_options o;
	int rc;

	if (!lib_ready) {
		if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
			*err_r = xasprintf("c-ares: %s", ares_strerror(rc));
			return NULL;
		}
		lib_ready = true;
	}
	struct dns *d = xcalloc(1, sizeof(*d));
	d->l = l;
	memset(&o, 0, sizeof(o));
	o.timeout = (int)(cfg->timeout_ms > 0 ? cfg->timeout_ms : 3000);
	o.tries = cfg->tries > 0 ? cfg->tries : 3;
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = d;
	/* ares_send sends our packet as it is: no search list, no hosts file. */
	rc = ares_init_options(&d->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
						ARES_OPT_SOCK_STATE_CB);
	if (rc != ARES_SUCCESS) {
		*err_r = xasprintf("c-ares: %s", ares_strerror(rc));
		free(d);
		return NULL;
	}
	if (cfg->servers != NULL && cfg->servers[0] != '\0') {
		/* "ip", "ip:port", "[ipv6]:port", comma-separated. */
		char *list = xstrdup(cfg->servers);
		size_t w = 0;
		for (size_t i = 0; list[i]; i++)
			if (list[i] != ' ')
				list[w++] = list[i];
		list[w] = '\0';
		rc = ares_set_servers_ports_csv(d->ch, list);
		free(list);
		if (rc != ARES_SUCCESS) {
			*err_r = xasprintf("dns_resolver %s: %s", cfg->servers, ares_strerror(rc));
			ares_destroy(d->ch);
			free(d);
			return NULL;
		}
	}
	d->cache_size = cfg->cache_size;
	if (d->cache_size > 0) {
		d->nbuckets = d->cache_size < DNS_HASH_MIN ? DNS_HASH_MIN : d->cache_size;
		if (d->nbuckets > 1u << 20)
			d->nbuckets = 1u << 20;
		d->buckets = xcalloc(d->nbuckets, sizeof(*d->buckets));
	}
	return d;
}

static void flight_free(struct dns_flight *f)
{
	struct dns *d = f->d;
	if (f->prev)
		f->prev->next = f->next;
	else
		d->flights = f->next;
	if (f->next)
		f->next->prev = f->prev;
	loop_timer_cancel(d->l, &f->later);
	dns_answer_clear(&f->ans);
	free(f->name);
	free(f);
}

void dns_free(struct dns **dp)
{
	struct dns *d = *dp;
	if (d == NULL)
		return;
	d->freeing = true;
	/* No callback of ours runs from here on: queries are freed as they are. */
	while (d->queries)
		dns_query_unlink_free(d->queries);
	ares_destroy(d->ch); /* ends its queries with ARES_EDESTRUCTION */
	while (d->flights)
		flight_free(d->flights);
	while (d->socks) {
		struct dns_sock *ds = d->socks;
		d->socks = ds->next;
		loop_del(d->l, ds->fd);
		free(ds);
	}
	loop_timer_cancel(d->l, &d->tmo);
	while (d->lru_head)
		cent_free(d, d->lru_head);
	free(d->buckets);
	free(d);
	*dp = NULL;
}

/* ---- lookups ---- */

static void waiter_remove(struct dns_query *q)
{
	if (q->flight == NULL)
		return;
	if (q->wprev)
		q->wprev->wnext = q->wnext;
	else
		q->flight->waiters = q->wnext;
	if (q->wnext)
		q->wnext->wprev = q->wprev;
	q->flight = NULL;
	q->wnext = q->wprev = NULL;
}

static void deliver(struct dns_query *q, const struct dns_answer *a)
{
	q->cb(q->arg, a);
	dns_query_unlink_free(q);
}

/* Answers every waiter of f, then frees f. A callback may start or cancel
 * other queries (even waiters of f: they are taken one at a time). */
static void flight_dispatch(struct dns_flight *f)
{
	struct dns_query *q;

	if (f->cacheable) {
		char key[DNS_NAME_TEXT_MAX + 16];
		snprintf(key, sizeof(key), "%d:%s", (int)f->type, f->name);
		cache_put(f->d, key, &f->ans, f->ttl);
	}
	/* Off the list first: a callback's new lookup of the same name starts
	 * a new flight rather than joining this finished one. */
	if (f->prev)
		f->prev->next = f->next;
	else
		f->d->flights = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->next = f->prev = NULL;
	while ((q = f->waiters) != NULL) {
		waiter_remove(q);
		deliver(q, &f->ans);
	}
	dns_answer_clear(&f->ans);
	loop_timer_cancel(f->d->l, &f->later);
	free(f->name);
	free(f);
}

static void on_flight_later(void *arg)
{
	struct dns_flight *f = arg;
	f->later = NULL;
	flight_dispatch(f);
}

static void on_ares(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_flight *f = arg;
	struct dns *d = f->d;

	if (d->freeing || status == ARES_EDESTRUCTION)
		return; /* dns_free frees the flight */
	memset(&f->ans, 0, sizeof(f->ans));
	f->cacheable = false;
	if (status == ARES_SUCCESS && abuf != NULL) {
		if (dns_parse_answer(abuf, (size_t)alen, f->name, (uint16_t)f->type, &f->ans,
				     &f->ttl) < 0) {
			log_warn("dns: malformed reply name=%s type=%d", f->name, (int)f->type);
			f->ans.status = DNS_TEMPFAIL;
		} else {
			f->cacheable = f->ans.status != DNS_TEMPFAIL;
		}
	} else {
		/* ETIMEOUT, ECONNREFUSED, ESERVFAIL, EREFUSED (c-ares tried every
		 * server), ... : try later. */
		f->ans.status = DNS_TEMPFAIL;
		log_debug("dns: lookup failed name=%s type=%d error=%s", f->name, (int)f->type,
			 ares_strerror(status));
	}
	if (f->starting) {
		f->done = true;
		return;
	}
	flight_dispatch(f);
}

static void on_cache_later(void *arg)
{
	struct dns_query *q = arg;
	struct dns *d = q->d;
	char key[DNS_NAME_TEXT_MAX + 16];

	q->later = NULL;
	snprintf(key, sizeof(key), "%d:%s", (int)q->type, q->name);
	struct dns_cent *e = cache_get(d, key);
	if (e == NULL) {
		/* Expired or evicted since: ask again. */
		dns_lookup_start(q);
		return;
	}
	/* The TTLs left, not those stored. */
	uint32_t age = (uint32_t)((loop_now(d->l) - e->stored_ms) / 1000);
	struct dns_answer a = e->ans;
	struct dns_rr *rr = a.n ? xcalloc(a.n, sizeof(*rr)) : NULL;
	for (size_t i = 0; i < a.n; i++) {
		rr[i] = e->ans.rr[i];
		rr[i].ttl = rr[i].ttl > age ? rr[i].ttl - age : 0;
	}
	a.rr = rr;
	q->cb(q->arg, &a); /* the entry cannot go away during cb: rr holds copies of its pointers */
	free(rr);
	dns_query_unlink_free(q);
}

static void on_answer_later(void *arg)
{
	struct dns_query *q = arg;
	struct dns_answer a = {.status = q->status};
	q->later = NULL;
	deliver(q, &a);
}

/* Joins or starts the flight for q (a Q_LOOKUP with its name normalised). */
void dns_lookup_start(struct dns_query *q)
{
	struct dns *d = q->d;
	struct dns_flight *f;
	unsigned char *buf = NULL;
	int buflen = 0;

	for (f = d->flights; f; f = f->next)
		if (f->type == q->type && strcmp(f->name, q->name) == 0)
			break;
	if (f == NULL) {
		char wire[DNS_NAME_TEXT_MAX + 8];
		dns_name_to_ares(q->name, wire, sizeof(wire));
		int rc = ares_create_query(wire, 1 /* C_IN */, (int)q->type, 0, 1, &buf, &buflen,
					   0);
		if (rc != ARES_SUCCESS) {
			q->status = rc == ARES_EBADNAME ? DNS_BADNAME : DNS_TEMPFAIL;
			q->later = loop_timer_add(d->l, 0, on_answer_later, q);
			return;
		}
		buf[3] |= 0x20; /* AD: report authenticated data (RFC 6840 5.7) */
		f = xcalloc(1, sizeof(*f));
		f->d = d;
		f->name = xstrdup(q->name);
		f->type = q->type;
		f->next = d->flights;
		if (d->flights)
			d->flights->prev = f;
		d->flights = f;
		f->starting = true;
		ares_send(d->ch, buf, buflen, on_ares, f);
		ares_free_string(buf);
		f->starting = false;
		if (f->done) /* answered inside ares_send: from the loop instead */
			f->later = loop_timer_add(d->l, 0, on_flight_later, f);
		arm_timer(d);
	}
	q->flight = f;
	q->wprev = NULL;
	q->wnext = f->waiters;
	if (f->waiters)
		f->waiters->wprev = q;
	f->waiters = q;
}

static void free_lookup(struct dns_query *q)
{
	waiter_remove(q);
}

struct dns_query *dns_lookup(struct dns *d, const char *name, enum dns_type type, dns_cb *cb,
			     void *arg)
{
	char norm[DNS_NAME_TEXT_MAX + 8], key[DNS_NAME_TEXT_MAX + 16];
	struct dns_query *q = xcalloc(1, sizeof(*q));

	q->kind = DNS_Q_LOOKUP;
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	q->free_extra = free_lookup;
	dns_query_link(d, q);
	if (dns_name_normalize(name, norm, sizeof(norm)) < 0) {
		q->status = DNS_BADNAME;
		q->later = loop_timer_add(d->l, 0, on_answer_later, q);
		return q;
	}
	q->name = xstrdup(norm);
	snprintf(key, sizeof(key), "%d:%s", (int)type, norm);
	if (cache_get(d, key) != NULL) {
		/* Callbacks never run inside the call: the next loop pass. */
		q->later = loop_timer_add(d->l, 0, on_cache_later, q);
		return q;
	}
	dns_lookup_start(q);
	return q;
}

struct loop *dns_loop(const struct dns *d)
{
	return d->l;
}

void dns_cancel(struct dns_query **qp)
{
	struct dns_query *q = *qp;
	if (q == NULL)
		return;
	*qp = NULL;
	if (q->cancel)
		q->cancel(q);
	dns_query_unlink_free(q);
}
