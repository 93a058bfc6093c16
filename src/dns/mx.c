/* Steps built on dns_lookup: where mail for a domain goes (RFC 5321 5.1,
 * RFC 7505), one relay host's addresses, and forward-confirmed reverse DNS.
 * Each is a composite dns_query holding its sub-lookups; all its callbacks
 * come from the loop, and cancelling it cancels them. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rand.h"
#include "core/xmalloc.h"
#include "dns/dns_int.h"
#include "dns/dns_priv.h"

/* Exchangers looked up at most (Postfix: smtp_mx_address_limit-like bound;
 * a hostile MX list must not start hundreds of lookups). */
#define DNS_MX_HOSTS_MAX 16
#define DNS_ADDRS_MAX 16   /* addresses kept per family and host */
#define DNS_PTR_NAMES_MAX 8 /* PTR names checked forward */

#define INET_V4 1
#define INET_V6 2

struct mx_host {
	struct dns_query *parent;
	char *name;
	uint16_t pref;
	struct dns_query *q6, *q4;
	struct sockaddr_storage addr6[DNS_ADDRS_MAX], addr4[DNS_ADDRS_MAX];
	size_t n6, n4;
	bool temp;
};

struct mx_state {
	dns_mx_cb *cb;
	void *arg;
	int inet;
	char *domain;
	struct dns_query *mxq;
	struct mx_host *hosts;
	size_t n, pending;
	bool implicit;
	enum dns_mx_status status; /* for an answer on the next loop pass */
	struct sockaddr_storage literal;
};

static int inet_mask(const char *inet)
{
	if (inet != NULL && strcmp(inet, "ipv4") == 0)
		return INET_V4;
	if (inet != NULL && strcmp(inet, "ipv6") == 0)
		return INET_V6;
	return INET_V4 | INET_V6;
}

/* The shuffle of equal preferences (RFC 5321 5.1) spreads load, no
 * secret: the thread's cheap generator, not a getrandom(2) per number
 * (glibc 2.36's arc4random). */
static uint32_t rnd32(void *arg)
{
	return rand_u32();
}

static void mx_cancel(struct dns_query *q)
{
	struct mx_state *st = q->ext;
	dns_cancel(&st->mxq);
	for (size_t i = 0; i < st->n; i++) {
		dns_cancel(&st->hosts[i].q6);
		dns_cancel(&st->hosts[i].q4);
	}
}

static void mx_free(struct dns_query *q)
{
	struct mx_state *st = q->ext;
	for (size_t i = 0; i < st->n; i++)
		free(st->hosts[i].name);
	free(st->hosts);
	free(st->domain);
	free(st);
}

static void mx_finish(struct dns_query *q, enum dns_mx_status status)
{
	struct mx_state *st = q->ext;
	struct dns_mx_result r = {.status = status, .implicit = st->implicit};
	struct dns_host *out = NULL;

	if (status == DNS_MX_OK) {
		out = xcalloc(st->n, sizeof(*out));
		for (size_t i = 0; i < st->n; i++) {
			struct mx_host *h = &st->hosts[i];
			if (h->n6 + h->n4 == 0)
				continue; /* RFC 5321 5.1: a host without address is skipped */
			struct dns_host *o = &out[r.n++];
			o->name = h->name;
			o->pref = h->pref;
			o->n_addr = h->n6 + h->n4;
			o->addr = xcalloc(o->n_addr, sizeof(*o->addr));
			/* IPv6 first (RFC 6724's default preference for global
			 * addresses), then IPv4: both are tried. */
			memcpy(o->addr, h->addr6, h->n6 * sizeof(*o->addr));
			memcpy(o->addr + h->n6, h->addr4, h->n4 * sizeof(*o->addr));
		}
		r.hosts = out;
		if (r.n == 0) {
			bool temp = false;
			for (size_t i = 0; i < st->n; i++)
				temp |= st->hosts[i].temp;
			/* Only temporary failures may still turn into hosts. */
			r.status = temp ? DNS_MX_TEMPFAIL : DNS_MX_NXDOMAIN;
		}
	}
	st->cb(st->arg, &r);
	for (size_t i = 0; i < r.n; i++)
		free(out[i].addr);
	free(out);
	dns_query_unlink_free(q);
}

static void on_mx_later(void *arg)
{
	struct dns_query *q = arg;
	struct mx_state *st = q->ext;
	q->later = NULL;
	mx_finish(q, st->status);
}

static void add_addrs(struct mx_host *h, const struct dns_answer *a)
{
	for (size_t i = 0; i < a->n; i++) {
		if (a->rr[i].type == DNS_AAAA && h->n6 < DNS_ADDRS_MAX) {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->addr6[h->n6++];
			s->sin6_family = AF_INET6;
			s->sin6_addr = a->rr[i].u.aaaa;
		} else if (a->rr[i].type == DNS_A && h->n4 < DNS_ADDRS_MAX) {
			struct sockaddr_in *s = (struct sockaddr_in *)&h->addr4[h->n4++];
			s->sin_family = AF_INET;
			s->sin_addr = a->rr[i].u.a;
		}
	}
	if (a->status == DNS_TEMPFAIL)
		h->temp = true;
}

static void host_done(struct mx_host *h)
{
	struct dns_query *q = h->parent;
	struct mx_state *st = q->ext;
	if (--st->pending == 0)
		mx_finish(q, DNS_MX_OK);
}

static void on_aaaa(void *arg, const struct dns_answer *a)
{
	struct mx_host *h = arg;
	h->q6 = NULL;
	add_addrs(h, a);
	host_done(h);
}

static void on_a(void *arg, const struct dns_answer *a)
{
	struct mx_host *h = arg;
	h->q4 = NULL;
	add_addrs(h, a);
	host_done(h);
}

/* Looks up every host's addresses; hosts[] is complete and stays put. */
static void start_hosts(struct dns_query *q)
{
	struct mx_state *st = q->ext;
	for (size_t i = 0; i < st->n; i++) {
		struct mx_host *h = &st->hosts[i];
		h->parent = q;
		if (st->inet & INET_V6) {
			st->pending++;
			h->q6 = dns_lookup(q->d, h->name, DNS_AAAA, on_aaaa, h);
		}
		if (st->inet & INET_V4) {
			st->pending++;
			h->q4 = dns_lookup(q->d, h->name, DNS_A, on_a, h);
		}
	}
}

static void on_mx(void *arg, const struct dns_answer *a)
{
	struct dns_query *q = arg;
	struct mx_state *st = q->ext;

	st->mxq = NULL;
	switch (a->status) {
	case DNS_TEMPFAIL:
		mx_finish(q, DNS_MX_TEMPFAIL);
		return;
	case DNS_NXDOMAIN:
	case DNS_BADNAME:
		mx_finish(q, DNS_MX_NXDOMAIN);
		return;
	case DNS_NODATA:
		/* RFC 5321 5.1: no MX, the name exists: the implicit MX (its
		 * own A/AAAA, preference 0). No address at all: permanent. */
		st->implicit = true;
		st->n = 1;
		st->hosts = xcalloc(1, sizeof(*st->hosts));
		st->hosts[0].name = xstrdup(st->domain);
		start_hosts(q);
		return;
	case DNS_OK:
		break;
	}
	/* RFC 7505 3: a single MX "0 ." says the domain takes no mail. A "."
	 * beside real exchangers is a misconfiguration: it is skipped. */
	if (a->n == 1 && a->rr[0].u.mx.host[0] == '\0') {
		mx_finish(q, DNS_MX_NULL);
		return;
	}
	struct dns_mx_pref *mx = xcalloc(a->n, sizeof(*mx));
	size_t n = 0;
	for (size_t i = 0; i < a->n; i++) {
		const char *h = a->rr[i].u.mx.host;
		bool dup = h[0] == '\0';
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(mx[j].host, h) == 0;
		if (!dup)
			mx[n++] = (struct dns_mx_pref){a->rr[i].u.mx.pref, h};
	}
	dns_mx_order(mx, n, rnd32, NULL);
	if (n == 0) {
		free(mx);
		mx_finish(q, DNS_MX_NULL);
		return;
	}
	st->n = n < DNS_MX_HOSTS_MAX ? n : DNS_MX_HOSTS_MAX;
	st->hosts = xcalloc(st->n, sizeof(*st->hosts));
	for (size_t i = 0; i < st->n; i++) {
		st->hosts[i].name = xstrdup(mx[i].host);
		st->hosts[i].pref = mx[i].pref;
	}
	free(mx);
	start_hosts(q);
}

static struct dns_query *mx_query_new(struct dns *d, enum dns_qkind kind, const char *name,
				      const char *inet, dns_mx_cb *cb, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	struct mx_state *st = xcalloc(1, sizeof(*st));

	q->kind = kind;
	q->cancel = mx_cancel;
	q->free_extra = mx_free;
	q->ext = st;
	st->cb = cb;
	st->arg = arg;
	st->inet = inet_mask(inet);
	st->domain = xstrdup(name);
	dns_query_link(d, q);
	return q;
}

struct dns_query *dns_resolve_mx(struct dns *d, const char *domain, const char *inet,
				 dns_mx_cb *cb, void *arg)
{
	struct dns_query *q = mx_query_new(d, DNS_Q_MX, domain, inet, cb, arg);
	struct mx_state *st = q->ext;
	st->mxq = dns_lookup(d, domain, DNS_MX, on_mx, q);
	return q;
}

struct dns_query *dns_resolve_host(struct dns *d, const char *host, const char *inet,
				   dns_mx_cb *cb, void *arg)
{
	struct dns_query *q = mx_query_new(d, DNS_Q_HOST, host, inet, cb, arg);
	struct mx_state *st = q->ext;
	char lit[INET6_ADDRSTRLEN + 2];
	size_t len = strlen(host);

	st->n = 1;
	st->hosts = xcalloc(1, sizeof(*st->hosts));
	st->hosts[0].name = xstrdup(host);
	st->hosts[0].parent = q;
	/* An address literal, bare or in brackets (RFC 5321 4.1.3): no query. */
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(lit)) {
		memcpy(lit, host + 1, len - 2);
		lit[len - 2] = '\0';
		if (strncasecmp(lit, "IPv6:", 5) == 0)
			memmove(lit, lit + 5, strlen(lit + 5) + 1);
	} else {
		snprintf(lit, sizeof(lit), "%s", host);
	}
	struct mx_host *h = &st->hosts[0];
	struct sockaddr_in *s4 = (struct sockaddr_in *)&h->addr4[0];
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->addr6[0];
	if (inet_pton(AF_INET, lit, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		h->n4 = 1;
	} else if (inet_pton(AF_INET6, lit, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		h->n6 = 1;
	}
	if (h->n4 + h->n6 > 0) {
		st->status = DNS_MX_OK;
		q->later = loop_timer_add(d->l, 0, on_mx_later, q);
		return q;
	}
	start_hosts(q);
	return q;
}

/* ---- forward-confirmed reverse DNS ---- */

struct ptr_name {
	struct dns_query *parent;
	char *name;
	struct dns_query *fq;
	bool match;
};

struct ptr_state {
	dns_name_cb *cb;
	dns_ptr_cb *cb2; /* dns_verify_ptr_ex */
	bool temp;       /* a lookup failed temporarily (no name confirmed) */
	void *arg;
	int family;
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} ip;
	struct dns_query *ptrq;
	struct ptr_name names[DNS_PTR_NAMES_MAX];
	size_t n, pending;
};

static void ptr_cancel(struct dns_query *q)
{
	struct ptr_state *st = q->ext;
	dns_cancel(&st->ptrq);
	for (size_t i = 0; i < st->n; i++)
		dns_cancel(&st->names[i].fq);
}

static void ptr_free(struct dns_query *q)
{
	struct ptr_state *st = q->ext;
	for (size_t i = 0; i < st->n; i++)
		free(st->names[i].name);
	free(st);
}

static void ptr_finish(struct dns_query *q)
{
	struct ptr_state *st = q->ext;
	const char *name = NULL;
	for (size_t i = 0; i < st->n && name == NULL; i++)
		if (st->names[i].match)
			name = st->names[i].name;
	if (st->cb2 != NULL)
		st->cb2(st->arg, name, name == NULL && st->temp);
	else
		st->cb(st->arg, name);
	dns_query_unlink_free(q);
}

static void on_ptr_later(void *arg)
{
	struct dns_query *q = arg;
	q->later = NULL;
	ptr_finish(q);
}

static void on_forward(void *arg, const struct dns_answer *a)
{
	struct ptr_name *pn = arg;
	struct dns_query *q = pn->parent;
	struct ptr_state *st = q->ext;

	pn->fq = NULL;
	if (a->status == DNS_TEMPFAIL)
		st->temp = true;
	for (size_t i = 0; i < a->n && !pn->match; i++) {
		if (st->family == AF_INET && a->rr[i].type == DNS_A)
			pn->match = memcmp(&a->rr[i].u.a, &st->ip.v4, 4) == 0;
		else if (st->family == AF_INET6 && a->rr[i].type == DNS_AAAA)
			pn->match = memcmp(&a->rr[i].u.aaaa, &st->ip.v6, 16) == 0;
	}
	if (--st->pending == 0)
		ptr_finish(q);
}

static void on_ptr(void *arg, const struct dns_answer *a)
{
	struct dns_query *q = arg;
	struct ptr_state *st = q->ext;
	char norm[DNS_NAME_TEXT_MAX + 8];

	st->ptrq = NULL;
	if (a->status == DNS_TEMPFAIL)
		st->temp = true;
	for (size_t i = 0; i < a->n && st->n < DNS_PTR_NAMES_MAX; i++) {
		if (dns_name_normalize(a->rr[i].u.ptr, norm, sizeof(norm)) < 0)
			continue;
		struct ptr_name *pn = &st->names[st->n++];
		pn->parent = q;
		pn->name = xstrdup(norm);
	}
	if (st->n == 0) {
		ptr_finish(q);
		return;
	}
	st->pending = st->n;
	for (size_t i = 0; i < st->n; i++)
		st->names[i].fq = dns_lookup(q->d, st->names[i].name,
					     st->family == AF_INET ? DNS_A : DNS_AAAA, on_forward,
					     &st->names[i]);
}

struct dns_query *dns_verify_ptr(struct dns *d, const char *ip, dns_name_cb *cb, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	struct ptr_state *st = xcalloc(1, sizeof(*st));
	char rev[DNS_NAME_TEXT_MAX], v4text[INET_ADDRSTRLEN];

	q->kind = DNS_Q_PTR;
	q->cancel = ptr_cancel;
	q->free_extra = ptr_free;
	q->ext = st;
	st->cb = cb;
	st->arg = arg;
	dns_query_link(d, q);
	if (inet_pton(AF_INET, ip, &st->ip.v4) == 1) {
		st->family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, &st->ip.v6) == 1) {
		st->family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&st->ip.v6)) { /* ::ffff:a.b.c.d is IPv4 */
			memcpy(&st->ip.v4, &st->ip.v6.s6_addr[12], 4);
			st->family = AF_INET;
		}
	}
	if (st->family == AF_INET)
		ip = inet_ntop(AF_INET, &st->ip.v4, v4text, sizeof(v4text));
	if (st->family == 0 || dns_reverse_name(ip, rev, sizeof(rev)) < 0) {
		q->later = loop_timer_add(d->l, 0, on_ptr_later, q);
		return q;
	}
	st->ptrq = dns_lookup(d, rev, DNS_PTR, on_ptr, q);
	return q;
}

struct dns_query *dns_verify_ptr_ex(struct dns *d, const char *ip, dns_ptr_cb *cb, void *arg)
{
	struct dns_query *q = dns_verify_ptr(d, ip, NULL, arg);
	struct ptr_state *st = q->ext;
	st->cb2 = cb;
	return q;
}
