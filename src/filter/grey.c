/* Greylisting (RFC 6647) on the MX listener, decided at the end of data.
 *
 * Three tables in memory, on the loop thread: the triplets (client network,
 * envelope sender, recipient -> first_seen), the networks that passed (->
 * allowed_until) and the sender domains' reputations (DMARC-aligned mail
 * accepted: good / judged spam: bad). Each is a hash (SipHash with a random
 * key: the strings come from clients) over a list in expiry order, capped at
 * GREY_MAX_ENTRIES (the oldest goes first when full). Expired entries are
 * pruned from the list's head a few at a time on each call, never in a scan
 * that grows with the table. Changes are saved lazily (store_grey_save, a
 * fire-and-forget committer job at most once every GREY_FLUSH_MS) and what
 * is left at grey_free.
 *
 * The network of a client is its address with greylist_net4/6 prefix bits
 * kept (cidr_network, src/filter/cidr.c).
 *
 * A fourth table, in memory only, counts the new triplets each network
 * recorded in the current hour (greylist_net_new; IPv6 counted per /48, or
 * greylist_net6 if shorter, so that a client holding a /48 does not get
 * 65,536 budgets): past it, a network's new triplets are deferred but not
 * recorded. Without it one client could send thousands of transactions a
 * second with made-up senders and recipients and, once the table is full,
 * push out the triplets of real senders waiting for their retry (each would
 * be "new" again at every retry), and grow the stored table as fast. */
#include "filter/grey.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/siphash.h"
#include "core/xmalloc.h"
#include "filter/screen.h"
#include "store/store.h"

#define GREY_MAX_ENTRIES 100000 /* per table */
#define GREY_PRUNE_STEP 16      /* expired entries freed per call, per table */
#define GREY_FLUSH_MS 1000      /* changes wait at most this long to be saved */
#define GREY_DB_PRUNE_S 3600    /* expired rows deleted from the store this often */
#define GREY_PART_MAX 320       /* bytes of a sender, recipient or domain kept */
#define GREY_NET_MAX 64         /* "ffff:...:ffff/128" */
#define GREY_NEW_WINDOW 3600    /* greylist_net_new counts per this many seconds */
#define GREY_NEW_NET6 48        /* IPv6 prefix of a budget's network, at most */

struct gent {
	struct gent *hnext;         /* bucket chain */
	struct gent *prev, *next;   /* expiry order, oldest first */
	struct gent *dprev, *dnext; /* not saved yet */
	bool dirty;
	time_t t;                   /* first_seen / allowed_until / last_seen */
	int64_t good, bad;          /* reputations; a budget's count, and logged */
	uint64_t hash;
	size_t klen;
	char key[]; /* "net\0sender\0rcpt" / "net" / "domain", NUL-terminated */
};

struct gtab {
	struct gent **buckets;
	size_t nbuckets; /* power of two */
	struct gent *head, *tail;
	struct gent *dhead, *dtail;
	size_t n, nd, max; /* entries, of which not saved, cap */
	time_t keep; /* an entry is expired when t + keep < now */
	bool full_logged;
};

struct grey {
	struct loop *l;
	struct store *st;
	bool on;
	time_t delay, expire, allow;
	int net4, net6;
	int net_new; /* greylist_net_new */
	uint64_t k0, k1; /* SipHash key */
	struct gtab trip, nets, reps;
	struct gtab news; /* network -> new triplets this window (t: its start) */
	struct timer *flush_timer;
	time_t last_now, last_db_prune;
};

/* ---- hashing ---- */

/* of len bytes (NULs included) */
static uint64_t grey_hash(const struct grey *g, const char *key, size_t len)
{
	return siphash24(g->k0, g->k1, key, len);
}

/* ---- one table ---- */

static void gtab_init(struct gtab *t, size_t max, time_t keep)
{
	t->nbuckets = 16;
	while (t->nbuckets < max && t->nbuckets < ((size_t)1 << 24))
		t->nbuckets <<= 1;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	t->max = max;
	t->keep = keep;
}

static struct gent *gtab_find(struct gtab *t, const char *key, size_t klen, uint64_t h)
{
	for (struct gent *e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return e;
	return NULL;
}

static void list_unlink(struct gtab *t, struct gent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		t->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		t->tail = e->prev;
	e->prev = e->next = NULL;
}

static void list_append(struct gtab *t, struct gent *e)
{
	e->next = NULL;
	e->prev = t->tail;
	if (t->tail)
		t->tail->next = e;
	else
		t->head = e;
	t->tail = e;
}

static void dirty_unlink(struct gtab *t, struct gent *e)
{
	if (!e->dirty)
		return;
	if (e->dprev)
		e->dprev->dnext = e->dnext;
	else
		t->dhead = e->dnext;
	if (e->dnext)
		e->dnext->dprev = e->dprev;
	else
		t->dtail = e->dprev;
	e->dprev = e->dnext = NULL;
	e->dirty = false;
	t->nd--;
}

static void gtab_remove(struct gtab *t, struct gent *e)
{
	struct gent **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	list_unlink(t, e);
	dirty_unlink(t, e);
	t->n--;
	free(e);
}

/* A new entry at the tail (the newest); the oldest goes when full. */
static struct gent *gtab_add(struct gtab *t, const char *name, const char *key, size_t klen,
			     uint64_t h, time_t tm)
{
	while (t->n >= t->max && t->head != NULL) {
		if (!t->full_logged) {
			log_warn("grey: %s table full (%zu entries): the oldest are forgotten",
				 name, t->max);
			t->full_logged = true;
		}
		gtab_remove(t, t->head);
	}
	struct gent *e = xcalloc(1, sizeof(*e) + klen + 1);
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	e->klen = klen;
	e->hash = h;
	e->t = tm;
	size_t b = h & (t->nbuckets - 1);
	e->hnext = t->buckets[b];
	t->buckets[b] = e;
	list_append(t, e);
	t->n++;
	return e;
}

/* e's time changed to the newest: it moves to the tail. */
static void gtab_touch(struct gtab *t, struct gent *e, time_t tm)
{
	e->t = tm;
	if (t->tail != e) {
		list_unlink(t, e);
		list_append(t, e);
	}
}

static void gtab_prune(struct gtab *t, time_t now, int limit)
{
	while (limit-- > 0 && t->head != NULL && t->head->t + t->keep < now)
		gtab_remove(t, t->head);
}

static void gtab_clear(struct gtab *t)
{
	while (t->head != NULL) {
		struct gent *e = t->head;
		t->head = e->next;
		free(e);
	}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

/* ---- saving ---- */

static void on_flush_timer(void *arg);

static void mark_dirty(struct grey *g, struct gtab *t, struct gent *e)
{
	if (!e->dirty) {
		e->dirty = true;
		e->dnext = NULL;
		e->dprev = t->dtail;
		if (t->dtail)
			t->dtail->dnext = e;
		else
			t->dhead = e;
		t->dtail = e;
		t->nd++;
	}
	if (g->l != NULL && g->flush_timer == NULL)
		g->flush_timer = loop_timer_add(g->l, GREY_FLUSH_MS, on_flush_timer, g);
}

/* What changed since the last save, as a batch (NULL: nothing). */
static struct store_grey_batch *take_batch(struct grey *g)
{
	struct store_grey_batch *b = xcalloc(1, sizeof(*b));
	if (g->trip.dhead)
		b->t = xcalloc(g->trip.nd, sizeof(*b->t));
	while (g->trip.dhead) {
		struct gent *e = g->trip.dhead;
		const char *sender = e->key + strlen(e->key) + 1;
		const char *rcpt = sender + strlen(sender) + 1;
		struct store_grey_triplet *r = &b->t[b->n_t++];
		r->net = xstrdup(e->key);
		r->sender = xstrdup(sender);
		r->rcpt = xstrdup(rcpt);
		r->first_seen = e->t;
		dirty_unlink(&g->trip, e);
	}
	if (g->nets.dhead)
		b->nets = xcalloc(g->nets.nd, sizeof(*b->nets));
	while (g->nets.dhead) {
		struct gent *e = g->nets.dhead;
		b->nets[b->n_nets].net = xstrdup(e->key);
		b->nets[b->n_nets++].allowed_until = e->t;
		dirty_unlink(&g->nets, e);
	}
	if (g->reps.dhead)
		b->reps = xcalloc(g->reps.nd, sizeof(*b->reps));
	while (g->reps.dhead) {
		struct gent *e = g->reps.dhead;
		struct store_grey_rep *r = &b->reps[b->n_reps++];
		r->domain = xstrdup(e->key);
		r->good = e->good;
		r->bad = e->bad;
		r->last_seen = e->t;
		dirty_unlink(&g->reps, e);
	}
	/* rows that expired (or were forgotten when a table was full) go from
	 * the store now and then, in the same job */
	time_t now = g->last_now;
	if (now > 0 && now - g->last_db_prune >= GREY_DB_PRUNE_S) {
		g->last_db_prune = now;
		if (now > g->expire)
			b->prune_t = now - g->expire;
		b->prune_nets = now;
		if (now > g->allow)
			b->prune_reps = now - g->allow;
	}
	if (b->n_t == 0 && b->n_nets == 0 && b->n_reps == 0 && b->prune_nets == 0) {
		store_grey_batch_free(&b);
		return NULL;
	}
	return b;
}

void grey_flush(struct grey *g)
{
	struct store_grey_batch *b = take_batch(g);
	if (b == NULL)
		return;
	if (g->st != NULL)
		store_grey_save(g->st, b);
	else
		store_grey_batch_free(&b);
}

static void on_flush_timer(void *arg)
{
	struct grey *g = arg;
	g->flush_timer = NULL; /* freed by the loop */
	grey_flush(g);
}

/* ---- keys ---- */

/* The client's network: ip with net4 (IPv4, or IPv4-mapped IPv6) or net6
 * prefix bits kept, "a.b.c.d/n" or "x:...::/n" (screen.h's cidr_network).
 * Anything that is not an address keys as itself (cut to fit). */
static void grey_network(const char *ip, int net4, int net6, char *out, size_t outsize)
{
	if (cidr_network(ip, net4, net6, out, outsize) < 0)
		snprintf(out, outsize, "%.*s", GREY_NET_MAX - 1, ip);
}

/* Lowercase copy of s into p (at most GREY_PART_MAX bytes), NUL after it;
 * returns the bytes written, the NUL included. */
static size_t put_lower(char *p, const char *s)
{
	size_t n = 0;
	for (; s[n] != '\0' && n < GREY_PART_MAX; n++)
		p[n] = (char)tolower((unsigned char)s[n]);
	p[n] = '\0';
	return n + 1;
}

/* ---- loading ---- */

static void load_triplet(void *arg, const char *net, const char *sender, const char *rcpt,
			 time_t first_seen)
{
	struct grey *g = arg;
	char key[GREY_NET_MAX + 2 * (GREY_PART_MAX + 1)];
	size_t klen = put_lower(key, net);
	if (klen > GREY_NET_MAX)
		return;
	klen += put_lower(key + klen, sender);
	klen += put_lower(key + klen, rcpt) - 1;
	uint64_t h = grey_hash(g, key, klen);
	if (gtab_find(&g->trip, key, klen, h) == NULL)
		gtab_add(&g->trip, "triplet", key, klen, h, first_seen);
}

static void load_net(void *arg, const char *net, time_t allowed_until)
{
	struct grey *g = arg;
	size_t klen = strlen(net);
	if (klen >= GREY_NET_MAX)
		return;
	uint64_t h = grey_hash(g, net, klen);
	if (gtab_find(&g->nets, net, klen, h) == NULL)
		gtab_add(&g->nets, "network", net, klen, h, allowed_until);
}

static void load_rep(void *arg, const char *domain, int64_t good, int64_t bad, time_t last_seen)
{
	struct grey *g = arg;
	char key[GREY_PART_MAX + 1];
	size_t klen = put_lower(key, domain) - 1;
	uint64_t h = grey_hash(g, key, klen);
	struct gent *e = gtab_find(&g->reps, key, klen, h);
	if (e == NULL)
		e = gtab_add(&g->reps, "reputation", key, klen, h, last_seen);
	e->good = good;
	e->bad = bad;
}

/* ---- the API ---- */

struct grey *grey_new(struct loop *l, struct store *st, const struct config *cfg, char **err_r)
{
	struct grey *g = xcalloc(1, sizeof(*g));
	siphash_key(&g->k0, &g->k1);
	g->l = l;
	g->st = st;
	g->on = cfg->greylist;
	g->delay = cfg->greylist_delay;
	g->expire = cfg->greylist_expire;
	g->allow = cfg->greylist_allow_time;
	g->net4 = cfg->greylist_net4;
	g->net6 = cfg->greylist_net6;
	g->net_new = cfg->greylist_net_new;
	if (!g->on)
		return g;
	if (g->expire <= g->delay) {
		/* no retry could ever pass */
		*err_r = xasprintf("greylist_expire (%us) must be longer than greylist_delay (%us)",
				   cfg->greylist_expire, cfg->greylist_delay);
		free(g);
		return NULL;
	}
	/* the triplet waits for its retry until first_seen + expire; a network
	 * is allowed until allowed_until; a domain's reputation is kept for
	 * greylist_allow_time after its last message */
	gtab_init(&g->trip, GREY_MAX_ENTRIES, g->expire);
	gtab_init(&g->nets, GREY_MAX_ENTRIES, 0);
	gtab_init(&g->reps, GREY_MAX_ENTRIES, g->allow);
	gtab_init(&g->news, GREY_MAX_ENTRIES, GREY_NEW_WINDOW);
	if (st != NULL) {
		time_t now = time(NULL);
		struct store_grey_load_cb cb = {load_triplet, load_net, load_rep, g};
		if (store_grey_load(st, now - g->expire, now, now - g->allow, GREY_MAX_ENTRIES, &cb,
				    err_r) < 0) {
			grey_free(&g);
			return NULL;
		}
		log_info("grey: loaded triplets=%zu networks=%zu domains=%zu", g->trip.n,
			 g->nets.n, g->reps.n);
	}
	return g;
}

void grey_free(struct grey **gp)
{
	struct grey *g = *gp;
	if (g == NULL)
		return;
	if (g->l != NULL)
		loop_timer_cancel(g->l, &g->flush_timer);
	if (g->on) {
		struct store_grey_batch *b = take_batch(g);
		if (b != NULL && g->st != NULL)
			store_grey_save_now(g->st, b);
		else
			store_grey_batch_free(&b);
	}
	gtab_clear(&g->trip);
	gtab_clear(&g->nets);
	gtab_clear(&g->reps);
	gtab_clear(&g->news);
	free(g);
	*gp = NULL;
}

static void prune_step(struct grey *g, time_t now)
{
	g->last_now = now;
	gtab_prune(&g->trip, now, GREY_PRUNE_STEP);
	gtab_prune(&g->nets, now, GREY_PRUNE_STEP);
	gtab_prune(&g->reps, now, GREY_PRUNE_STEP);
	gtab_prune(&g->news, now, GREY_PRUNE_STEP);
}

/* The client network's budget entry (greylist_net_new), its window
 * started again when over. NULL: no cap. */
static struct gent *budget_get(struct grey *g, const char *ip, time_t now)
{
	if (g->net_new <= 0)
		return NULL;
	char net[GREY_NET_MAX];
	grey_network(ip, g->net4, g->net6 < GREY_NEW_NET6 ? g->net6 : GREY_NEW_NET6, net,
		     sizeof net);
	size_t nlen = strlen(net);
	uint64_t h = grey_hash(g, net, nlen);
	struct gent *e = gtab_find(&g->news, net, nlen, h);
	if (e != NULL && (e->t + GREY_NEW_WINDOW <= now || e->t > now)) {
		/* a new window (or the clock went back) */
		gtab_touch(&g->news, e, now);
		e->good = e->bad = 0;
	}
	if (e == NULL)
		e = gtab_add(&g->news, "network budget", net, nlen, h, now);
	return e;
}

/* A message's new triplets are recorded together or not at all: a message
 * whose triplets pass together must not have some of them "new" again at
 * each retry. So the budget is checked once, at the message's first new
 * triplet, and may be overrun by one message's recipients. */
static bool budget_open(struct grey *g, struct gent *b)
{
	if (b == NULL || b->good < g->net_new)
		return true;
	if (!b->bad) {
		b->bad = 1;
		log_warn("grey: network %s recorded %d new triplets within %ds (greylist_net_new):"
			 " its further new ones are deferred, not recorded", b->key, g->net_new,
			 GREY_NEW_WINDOW);
	}
	return false;
}

static struct gent *rep_find(struct grey *g, const char *domain, bool add, time_t now)
{
	char key[GREY_PART_MAX + 1];
	size_t klen = put_lower(key, domain) - 1;
	uint64_t h = grey_hash(g, key, klen);
	struct gent *e = gtab_find(&g->reps, key, klen, h);
	if (e == NULL && add)
		e = gtab_add(&g->reps, "reputation", key, klen, h, now);
	return e;
}

/* RFC 6647: a known good sender need not be greylisted; ours are
 * the DMARC-aligned domains whose mail was accepted before and was judged
 * spam less often than not. */
static bool rep_good(const struct gent *e)
{
	return e != NULL && e->good >= 1 && e->good > e->bad;
}

enum grey_result grey_check(struct grey *g, const char *ip, const char *mail_from,
			    const char *const *rcpts, size_t n, const char *aligned_domain,
			    time_t now, unsigned *wait_r, enum grey_why *why_r)
{
	*wait_r = 0;
	if (!g->on) {
		*why_r = GREY_WHY_OFF;
		return GREY_PASS;
	}
	prune_step(g, now);
	char net[GREY_NET_MAX];
	grey_network(ip, g->net4, g->net6, net, sizeof net);
	size_t nlen = strlen(net);
	struct gent *e = gtab_find(&g->nets, net, nlen, grey_hash(g, net, nlen));
	if (e != NULL && e->t >= now) {
		*why_r = GREY_WHY_ALLOWED_NET;
		return GREY_PASS;
	}
	if (aligned_domain != NULL && *aligned_domain != '\0' &&
	    rep_good(rep_find(g, aligned_domain, false, now))) {
		*why_r = GREY_WHY_REPUTATION;
		return GREY_PASS;
	}
	char key[GREY_NET_MAX + 2 * (GREY_PART_MAX + 1)];
	memcpy(key, net, nlen + 1);
	size_t slen = put_lower(key + nlen + 1, mail_from != NULL ? mail_from : "");
	bool defer = false, any_new = false, capped = false;
	int budget = -1; /* unknown yet, 0 closed, 1 open */
	struct gent *b = NULL;
	time_t wait = 0;
	for (size_t i = 0; i < n; i++) {
		size_t klen = nlen + 1 + slen + put_lower(key + nlen + 1 + slen, rcpts[i]) - 1;
		uint64_t h = grey_hash(g, key, klen);
		struct gent *t = gtab_find(&g->trip, key, klen, h);
		if (t != NULL && t->t + g->expire < now) {
			/* a retry after greylist_expire starts over */
			gtab_touch(&g->trip, t, now);
			mark_dirty(g, &g->trip, t);
			any_new = true;
		} else if (t == NULL) {
			if (budget < 0) {
				b = budget_get(g, ip, now);
				budget = budget_open(g, b);
			}
			if (!budget) {
				/* deferred as if new, but not remembered */
				capped = true;
				if (g->delay > 0) {
					defer = true;
					if (g->delay > wait)
						wait = g->delay;
				}
				continue;
			}
			if (b != NULL)
				b->good++;
			t = gtab_add(&g->trip, "triplet", key, klen, h, now);
			mark_dirty(g, &g->trip, t);
			any_new = true;
		}
		if (now - t->t < g->delay) {
			time_t w = t->t + g->delay - now;
			if (w > g->delay) /* the clock went back */
				w = g->delay;
			if (w > wait)
				wait = w;
			defer = true;
		}
	}
	if (!defer) {
		/* with greylist_delay = 0 a new triplet passes at once */
		*why_r = capped ? GREY_WHY_NO_DELAY_CAPPED : any_new ? GREY_WHY_NO_DELAY : GREY_WHY_RETRY;
		return GREY_PASS;
	}
	*wait_r = (unsigned)wait;
	*why_r = capped ? GREY_WHY_BUDGET : any_new ? GREY_WHY_NEW : GREY_WHY_TOO_EARLY;
	return GREY_DEFER;
}

const char *grey_why_text(enum grey_why why)
{
	switch (why) {
	case GREY_WHY_OFF:
		return "off";
	case GREY_WHY_ALLOWED_NET:
		return "allowed network";
	case GREY_WHY_REPUTATION:
		return "reputation";
	case GREY_WHY_RETRY:
		return "retry";
	case GREY_WHY_NO_DELAY:
		return "no delay";
	case GREY_WHY_NO_DELAY_CAPPED:
		return "no delay (network budget: not recorded)";
	case GREY_WHY_NEW:
		return "new";
	case GREY_WHY_TOO_EARLY:
		return "too early";
	case GREY_WHY_BUDGET:
		return "network budget";
	}
	return "?";
}

bool grey_why_allows_net(enum grey_why why)
{
	return why == GREY_WHY_RETRY || why == GREY_WHY_ALLOWED_NET;
}

void grey_delivered(struct grey *g, const char *ip, const char *aligned_domain, bool spam,
		    bool allow_net, time_t now)
{
	if (!g->on)
		return;
	prune_step(g, now);
	if (!spam && allow_net) {
		/* auto-allowlisting (RFC 6647): the network passed (or was
		 * allowed already: renewed) */
		char net[GREY_NET_MAX];
		grey_network(ip, g->net4, g->net6, net, sizeof net);
		size_t nlen = strlen(net);
		uint64_t h = grey_hash(g, net, nlen);
		struct gent *e = gtab_find(&g->nets, net, nlen, h);
		if (e == NULL)
			e = gtab_add(&g->nets, "network", net, nlen, h, now + g->allow);
		else
			gtab_touch(&g->nets, e, now + g->allow);
		mark_dirty(g, &g->nets, e);
	}
	if (aligned_domain != NULL && *aligned_domain != '\0') {
		struct gent *e = rep_find(g, aligned_domain, true, now);
		gtab_touch(&g->reps, e, now);
		if (spam)
			e->bad++;
		else
			e->good++;
		mark_dirty(g, &g->reps, e);
	}
}

void grey_set_max(struct grey *g, size_t max)
{
	if (!g->on || max == 0)
		return;
	g->trip.max = g->nets.max = g->reps.max = g->news.max = max;
}

void grey_counts(const struct grey *g, size_t *triplets_r, size_t *networks_r,
		 size_t *domains_r)
{
	*triplets_r = g->trip.n;
	*networks_r = g->nets.n;
	*domains_r = g->reps.n;
}
