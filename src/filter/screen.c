/* The connection stage (screen.h): trusted networks, the local allow/block
 * lists, the per-IP connection rate and the DNS block/allow lists, as
 * Postfix's postscreen does them before the greeting.
 *
 * Order at accept (first that applies wins): trusted_networks (nothing
 * else), the local allow list (no rate limit, no DNSBL: an admin's partner
 * is never throttled), the local block list, the connection rate, then one
 * A query per distinct DNSBL zone (RFC 5782 2.1/2.4), all at once through
 * src/dns. Each answer is matched against the filters of that zone's sites;
 * the weights of the sites that list the client are summed.
 *
 * A decision is made as soon as it is certain: blocked once the score plus
 * every negative weight still pending reaches dnsbl_threshold, allowed once
 * the score plus every positive weight still pending is at or below the
 * allowlist threshold; so a greeting that cannot wait for every answer
 * still gets a right verdict from the answers it has. A lookup that fails
 * (timeout, SERVFAIL: the resolver bounds it) counts as not listed; a zone
 * that starts failing is logged once, and once again when it answers.
 *
 * The local lists are re-read from the store (a) when the CLI's change
 * notice arrives: an inotify watch on <data_dir>/ip_lists.changed, which
 * `postern allow|block` touches after its write; the change takes effect
 * for the next connection, within milliseconds; and (b) when a check once
 * a minute finds the notice's time changed, which covers a watch that
 * could not be set up (inotify limits, a file system without it) for the
 * cost of one stat a minute. Reads run on the loop (see lists_load).
 *
 * The connection rate is counted in a fixed table (SCREEN_RATE_SETS sets
 * of SCREEN_RATE_WAYS entries, about 1.3 MB, allocated only when
 * conn_rate_limit is on): a client hashes (keyed, so nobody can aim at a
 * set) to one set; a new client takes a free or expired entry, else the
 * one seen longest ago is forgotten. Memory never grows with the number of
 * clients; a flood of new addresses can only make the table forget old
 * ones, which costs them at most a fresh window. IPv6 clients are counted
 * per /64 (one host's usual allocation). The window is one minute from a
 * client's first connection in it (as Postfix's anvil). */
#include "filter/screen.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/siphash.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "filter/screen_int.h"
#include "store/store.h"

#define SCREEN_RATE_SETS 4096 /* a power of two */
#define SCREEN_RATE_WAYS 8
#define SCREEN_RATE_WINDOW 60       /* seconds: conn_rate_limit is per minute */
#define SCREEN_RELOAD_MS (60 * 1000) /* the re-read without a notice */
#define SCREEN_WHY_MAX 320

struct rate_entry {
	uint8_t key[17]; /* family, then the address (IPv6: its /64) */
	uint8_t used;
	uint32_t count;
	time_t start; /* the window's first connection */
	time_t last;
};

struct zone {
	char *name;
	bool failing; /* the last lookup failed: logged once until it answers */
	int pos, neg; /* the sum of its sites' positive / negative weights */
};

struct screen {
	struct loop *l;
	struct dns *dns;
	struct store *st;
	struct pool *pool;
	struct cidr_set *trusted, *allow, *block;
	struct dnsbl_site *sites;
	size_t n_sites;
	struct zone *zones;
	size_t n_zones;
	int threshold, allow_threshold, rate_limit;
	struct rate_entry *rate; /* SCREEN_RATE_SETS * SCREEN_RATE_WAYS, or NULL */
	uint64_t rate_k0, rate_k1; /* the rate table's hash key */
	int watchfd;
	struct timer *tick;
	struct timespec stamp; /* the change notice's time at the last read */
};

/* ---- the local lists ---- */

struct lists {
	struct cidr_set *allow, *block;
};

static int list_entry(void *arg, const struct store_ip_entry *e)
{
	struct lists *ls = arg;
	struct cidr_set *set = strcmp(e->list, "allow") == 0   ? ls->allow
			       : strcmp(e->list, "block") == 0 ? ls->block
							       : NULL;
	if (set == NULL || cidr_set_add(set, e->network) < 0)
		log_warn("screen: ip_lists: ignoring entry %s (list %s)", e->network, e->list);
	return 0;
}

static void lists_install(struct screen *s, struct lists *ls)
{
	size_t was_a = cidr_set_count(s->allow), was_b = cidr_set_count(s->block);
	cidr_set_free(&s->allow);
	cidr_set_free(&s->block);
	s->allow = ls->allow;
	s->block = ls->block;
	if (was_a != cidr_set_count(s->allow) || was_b != cidr_set_count(s->block))
		log_info("screen: local lists loaded: allow=%zu block=%zu",
			 cidr_set_count(s->allow), cidr_set_count(s->block));
}

/* On the loop (st->main): an admin's list, read only after it changed;
 * about 1 us an entry (10,000 entries: 10-18 ms, once per `postern block`).
 * A worker would spare the loop that, but a read still running at
 * shutdown could not be freed (pool_free drops its completion). 0 or -1
 * with *err_r. */
static int lists_load(struct screen *s, char **err_r)
{
	struct lists ls = {cidr_set_new(), cidr_set_new()};
	if (store_ip_lists(s->st, NULL, list_entry, &ls, err_r) < 0) {
		cidr_set_free(&ls.allow);
		cidr_set_free(&ls.block);
		return -1;
	}
	cidr_set_finish(ls.allow);
	cidr_set_finish(ls.block);
	lists_install(s, &ls);
	return 0;
}

void screen_reload(struct screen *s)
{
	char *err = NULL;
	if (s->st == NULL)
		return;
	store_ip_lists_stamp(s->st, &s->stamp);
	if (lists_load(s, &err) < 0) {
		log_warn("screen: cannot re-read the local lists: %s (kept the old ones)",
			 err ? err : "?");
		free(err);
	}
}

static void on_notice(void *arg, uint32_t events)
{
	struct screen *s = arg;
	store_mark_drain(s->watchfd);
	screen_reload(s);
}

/* Once a minute: the notice's time stamp (one stat), the lists only if it
 * moved (a notice the watch missed). */
static void on_tick(void *arg)
{
	struct screen *s = arg;
	struct timespec now = {0, 0};
	s->tick = loop_timer_add(s->l, SCREEN_RELOAD_MS, on_tick, s);
	store_ip_lists_stamp(s->st, &now);
	if (now.tv_sec != s->stamp.tv_sec || now.tv_nsec != s->stamp.tv_nsec)
		screen_reload(s);
}

/* ---- set-up ---- */

static void zones_build(struct screen *s)
{
	s->zones = xcalloc(s->n_sites ? s->n_sites : 1, sizeof *s->zones);
	for (size_t i = 0; i < s->n_sites; i++) {
		const char *z = dnsbl_site_zone(s->sites, i);
		int w = dnsbl_site_weight(s->sites, i);
		size_t k;
		for (k = 0; k < s->n_zones; k++)
			if (strcmp(s->zones[k].name, z) == 0)
				break;
		if (k == s->n_zones)
			s->zones[s->n_zones++].name = xstrdup(z);
		if (w > 0)
			s->zones[k].pos += w;
		else
			s->zones[k].neg += w;
	}
}

struct screen *screen_new(struct loop *l, struct dns *dns, struct store *st,
			  const struct config *cfg, char **err_r)
{
	struct screen *s = xcalloc(1, sizeof *s);
	char *err = NULL;

	s->l = l;
	s->dns = dns;
	s->st = st;
	s->watchfd = -1;
	s->threshold = cfg->dnsbl_threshold;
	s->allow_threshold = cfg->dnsbl_allowlist_threshold;
	s->rate_limit = cfg->conn_rate_limit;
	s->trusted = cidr_set_parse(cfg->trusted_networks ? cfg->trusted_networks : "", &err);
	if (s->trusted == NULL) {
		*err_r = xasprintf("trusted_networks: %s", err);
		goto fail;
	}
	s->sites = dnsbl_sites_parse(cfg->dnsbl_sites ? cfg->dnsbl_sites : "", &s->n_sites, &err);
	if (s->sites == NULL) {
		*err_r = err;
		err = NULL;
		goto fail;
	}
	zones_build(s);
	if (s->n_zones > 0 && dns == NULL)
		log_warn("screen: dnsbl_sites set but no resolver: no DNSBL lookups");
	if (s->rate_limit > 0) {
		s->rate = xcalloc((size_t)SCREEN_RATE_SETS * SCREEN_RATE_WAYS, sizeof *s->rate);
		siphash_key(&s->rate_k0, &s->rate_k1);
	}
	s->allow = cidr_set_new();
	s->block = cidr_set_new();
	if (st != NULL) {
		store_ip_lists_stamp(st, &s->stamp);
		if (lists_load(s, &err) < 0) {
			*err_r = xasprintf("ip_lists: %s", err ? err : "?");
			goto fail;
		}
		s->watchfd = store_ip_lists_watch(st);
		if (s->watchfd >= 0 && l != NULL &&
		    loop_add(l, s->watchfd, LOOP_READ, on_notice, s) < 0) {
			close(s->watchfd);
			s->watchfd = -1;
		}
		if (l != NULL)
			s->tick = loop_timer_add(l, SCREEN_RELOAD_MS, on_tick, s);
	}
	log_info("screen: trusted=%zu allow=%zu block=%zu dnsbl_zones=%zu conn_rate_limit=%d",
		 cidr_set_count(s->trusted), cidr_set_count(s->allow), cidr_set_count(s->block),
		 s->n_zones, s->rate_limit);
	return s;
fail:
	free(err);
	screen_free(&s);
	return NULL;
}

void screen_free(struct screen **sp)
{
	struct screen *s = *sp;
	if (s == NULL)
		return;
	if (s->tick != NULL)
		loop_timer_cancel(s->l, &s->tick);
	if (s->watchfd >= 0) {
		if (s->l != NULL)
			loop_del(s->l, s->watchfd);
		close(s->watchfd);
	}
	cidr_set_free(&s->trusted);
	cidr_set_free(&s->allow);
	cidr_set_free(&s->block);
	dnsbl_sites_free(s->sites, s->n_sites);
	for (size_t i = 0; i < s->n_zones; i++)
		free(s->zones[i].name);
	free(s->zones);
	free(s->rate);
	free(s);
	*sp = NULL;
}

bool screen_trusted(const struct screen *s, const char *ip)
{
	return cidr_set_match(s->trusted, ip);
}

/* ---- connection rate ---- */

/* Keyed (SipHash): clients choose their addresses. */
static uint64_t rate_hash(const struct screen *s, const uint8_t *key, size_t n)
{
	return siphash24(s->rate_k0, s->rate_k1, key, n);
}

/* Counts one connection; true when it is over the limit. */
static bool rate_count(struct screen *s, const struct screen_addr *a, time_t now)
{
	uint8_t key[17] = {0};
	key[0] = a->fam;
	memcpy(key + 1, a->a, a->fam == 4 ? 4 : 8); /* IPv6: per /64 */
	struct rate_entry *set =
	    &s->rate[(rate_hash(s, key, sizeof key) & (SCREEN_RATE_SETS - 1)) * SCREEN_RATE_WAYS];
	struct rate_entry *e = NULL, *victim = &set[0];
	for (int i = 0; i < SCREEN_RATE_WAYS; i++) {
		if (set[i].used && memcmp(set[i].key, key, sizeof key) == 0) {
			e = &set[i];
			break;
		}
		/* a free entry, else the one seen longest ago */
		if (victim->used && (!set[i].used || set[i].last < victim->last))
			victim = &set[i];
	}
	if (e == NULL) {
		e = victim;
		memcpy(e->key, key, sizeof key);
		e->used = 1;
		e->count = 0;
		e->start = now;
	}
	if (now - e->start >= SCREEN_RATE_WINDOW || now < e->start) {
		e->start = now;
		e->count = 0;
	}
	e->last = now;
	if (e->count < UINT32_MAX)
		e->count++;
	return e->count > (uint32_t)s->rate_limit;
}

/* ---- a connection ---- */

struct zone_query {
	struct screen_conn *c;
	size_t zone;
	struct dns_query *q;
};

struct screen_conn {
	struct screen *s;
	char ip[INET6_ADDRSTRLEN];
	struct screen_result res;
	struct zone_query *zq;
	size_t n_zq, pending;
	int pos_pending, neg_pending;
	int best_weight; /* the listing named in why */
	void (*cb)(void *arg);
	void *cb_arg;
	char why[SCREEN_WHY_MAX];
};

/* The verdict from the answers so far: only what the pending ones cannot
 * change (see the top of the file). */
static void conn_decide(struct screen_conn *c)
{
	struct screen *s = c->s;
	int score = c->res.score;
	if (score + c->neg_pending >= s->threshold)
		c->res.blocked = true;
	if (s->allow_threshold != 0 && score + c->pos_pending <= s->allow_threshold)
		c->res.allowed = true;
}

static void conn_answer(struct screen_conn *c, size_t zi, const struct dns_answer *a)
{
	struct screen *s = c->s;
	struct zone *z = &s->zones[zi];
	char rule[DNSBL_ZONE_MAX + 8];

	c->pos_pending -= z->pos;
	c->neg_pending -= z->neg;
	if (a->status == DNS_TEMPFAIL || a->status == DNS_BADNAME) {
		if (!z->failing)
			log_warn("screen: dnsbl zone=%s lookup failed (%s): its clients count as "
				 "not listed until it answers",
				 z->name, a->status == DNS_TEMPFAIL ? "timeout or server failure"
								    : "bad name");
		z->failing = true;
		return;
	}
	if (z->failing)
		log_info("screen: dnsbl zone=%s answers again", z->name);
	z->failing = false;
	if (a->status != DNS_OK)
		return; /* NXDOMAIN, NODATA: not listed */
	dnsbl_rule_name(z->name, rule, sizeof rule);
	for (size_t i = 0; i < s->n_sites; i++) {
		if (strcmp(dnsbl_site_zone(s->sites, i), z->name) != 0)
			continue;
		const uint8_t *hit = NULL;
		for (size_t k = 0; k < a->n && hit == NULL; k++)
			if (a->rr[k].type == DNS_A &&
			    dnsbl_site_match(s->sites, i, (const uint8_t *)&a->rr[k].u.a))
				hit = (const uint8_t *)&a->rr[k].u.a;
		if (hit == NULL)
			continue;
		int w = dnsbl_site_weight(s->sites, i);
		c->res.score += w;
		filter_reasons_add(&c->res.reasons, rule, w, "client %s is listed in %s (%u.%u.%u.%u)%s",
				   c->ip, z->name, hit[0], hit[1], hit[2], hit[3],
				   w < 0 ? ", an allowlist" : "");
		if (w > c->best_weight) {
			c->best_weight = w;
			snprintf(c->why, sizeof c->why, "client [%s] blocked using %s", c->ip, z->name);
		}
	}
}

static void on_dnsbl(void *arg, const struct dns_answer *a)
{
	struct zone_query *q = arg;
	struct screen_conn *c = q->c;

	q->q = NULL; /* answered: nothing to cancel */
	conn_answer(c, q->zone, a);
	c->pending--;
	conn_decide(c);
	if (c->pending > 0)
		return;
	c->res.done = true;
	/* exact now: nothing pending */
	c->res.blocked = c->res.score >= c->s->threshold;
	c->res.allowed = c->s->allow_threshold != 0 && c->res.score <= c->s->allow_threshold;
	if (c->res.reasons.n > 0)
		log_info("screen: client=%s dnsbl score=%d%s%s", c->ip, c->res.score,
			 c->res.blocked ? " blocked" : "", c->res.allowed ? " allowlisted" : "");
	void (*cb)(void *) = c->cb;
	c->cb = NULL;
	if (cb != NULL)
		cb(c->cb_arg); /* last: it may free c */
}

struct screen_conn *screen_conn_new(struct screen *s, const char *ip, time_t now)
{
	struct screen_conn *c = xcalloc(1, sizeof *c);
	struct screen_addr a;

	c->s = s;
	c->res.why = c->why;
	snprintf(c->ip, sizeof c->ip, "%s", ip);
	c->res.done = true;
	if (screen_addr_parse(ip, &a) < 0)
		return c; /* not an IP client (a test's socket pair): nothing applies */
	if (cidr_set_match_addr(s->trusted, &a)) {
		c->res.trusted = true;
		return c;
	}
	if (cidr_set_match_addr(s->allow, &a)) {
		c->res.allowed = true;
		return c;
	}
	if (cidr_set_match_addr(s->block, &a)) {
		c->res.blocked = true;
		c->res.local_block = true;
		snprintf(c->why, sizeof c->why, "client [%s] blocked by local policy", c->ip);
		log_info("screen: client=%s blocked by the local block list", c->ip);
		return c;
	}
	if (s->rate != NULL && rate_count(s, &a, now)) {
		c->res.rate_exceeded = true;
		snprintf(c->why, sizeof c->why, "too many connections from [%s]", c->ip);
		log_info("screen: client=%s over conn_rate_limit=%d per minute", c->ip,
			 s->rate_limit);
		return c;
	}
	if (s->dns == NULL || s->n_zones == 0)
		return c;
	c->zq = xcalloc(s->n_zones, sizeof *c->zq);
	for (size_t i = 0; i < s->n_zones; i++) {
		char name[256];
		if (dnsbl_query_name(s->zones[i].name, ip, name, sizeof name) < 0)
			continue;
		struct zone_query *q = &c->zq[c->n_zq];
		q->c = c;
		q->zone = i;
		q->q = dns_lookup(s->dns, name, DNS_A, on_dnsbl, q);
		if (q->q == NULL) {
			if (!s->zones[i].failing)
				log_warn("screen: dnsbl zone=%s: cannot start a lookup", s->zones[i].name);
			s->zones[i].failing = true;
			continue;
		}
		c->n_zq++;
		c->pending++;
		c->pos_pending += s->zones[i].pos;
		c->neg_pending += s->zones[i].neg;
	}
	c->res.done = c->pending == 0;
	return c;
}

const struct screen_result *screen_conn_result(const struct screen_conn *c)
{
	return &c->res;
}

bool screen_conn_wait(struct screen_conn *c, void (*cb)(void *arg), void *arg)
{
	if (c->res.done)
		return false;
	c->cb = cb;
	c->cb_arg = arg;
	return true;
}

void screen_conn_free(struct screen_conn **cp)
{
	struct screen_conn *c = *cp;
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_zq; i++)
		dns_cancel(&c->zq[i].q);
	free(c->zq);
	filter_reasons_free(&c->res.reasons);
	free(c);
	*cp = NULL;
}
