/* The server's cache of SORT orders (sort.h: imap_sort_order_get/put).
 *
 * A mailbox's messages never change their sort keys (the Date:, Subject:,
 * address fields of a body, its size, its INTERNALDATE), only which messages
 * are there; UIDs only grow, and a UID below the highest one a view holds is
 * never given to a new message. So the order of every message of a mailbox
 * by a list of criteria, made for a view whose highest UID was max_uid,
 * stays the order of every later view whose highest UID is at most max_uid:
 * such a view is the same messages less the expunged ones, and a subset of
 * an ordered list is ordered (ties are broken by sequence number, which
 * follows the UID). A view with a higher UID makes the SORT read and sort
 * again, and that SORT replaces the entry.
 *
 * Entries are keyed by the account, the mailbox's UIDVALIDITY (store-wide
 * unique since schema step 2, never reused, kept by RENAME: fetch.h) and the
 * criteria. The account too: before step 2 an INBOX took its creation time
 * as its UIDVALIDITY, so the INBOXes of accounts made in the same second
 * share one in a database from then (the migration keeps them, as clients
 * cache them), and one account's order would answer another's SORT. The
 * least recently used go when the entries' size passes imap_sort_cache_size.
 * An entry is found through a hash of its key, not by walking the list: a
 * client can make one small entry per list of criteria (16 MiB holds some
 * 150,000 of one message), and a walk of them all on the loop per SORT
 * stalled every session (100,000 entries: +0.6 ms per SORT). The loop owns the
 * cache; a job holds a reference on an entry it reads on a worker (its UIDs
 * do not change once made), so an entry evicted or replaced meanwhile is
 * freed by the last unref. Each process keeps its own; as it depends only on
 * the mailbox's data, processes sharing a database need no coordination. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "imap/sort.h"

/* the first bucket count; doubled when the entries outnumber the buckets */
#define ORDERS_BUCKETS 64

struct imap_sort_orders {
	struct imap_sort_order *head, *tail; /* most recently used first */
	struct imap_sort_order **bucket;     /* chained by hnext */
	size_t n_bucket, n;
	size_t bytes, max_bytes;
};

static size_t order_bytes(const struct imap_sort_order *o)
{
	return sizeof *o + strlen(o->user) + 1 + o->n * sizeof *o->uids;
}

void imap_sort_crit(const struct imap_search *q, uint8_t *crit, size_t *n_r)
{
	for (size_t i = 0; i < q->n_sort; i++)
		crit[i] = (uint8_t)(q->sort[i].kind << 1 | (q->sort[i].reverse ? 1 : 0));
	*n_r = q->n_sort;
}

/* FNV-1a of the key (the account's name without case, as it is compared) */
static uint32_t key_hash(const char *user, uint32_t uidvalidity, const uint8_t *crit, size_t n)
{
	uint32_t h = 2166136261u;
	for (const char *p = user; *p; p++)
		h = (h ^ (unsigned char)(*p | 0x20)) * 16777619u;
	for (int i = 0; i < 4; i++)
		h = (h ^ ((uidvalidity >> (8 * i)) & 0xff)) * 16777619u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ crit[i]) * 16777619u;
	return h;
}

static void lru_unlink(struct imap_sort_orders *c, struct imap_sort_order *o)
{
	if (o->prev != NULL)
		o->prev->next = o->next;
	else
		c->head = o->next;
	if (o->next != NULL)
		o->next->prev = o->prev;
	else
		c->tail = o->prev;
	o->prev = o->next = NULL;
}

static void lru_push(struct imap_sort_orders *c, struct imap_sort_order *o)
{
	o->prev = NULL;
	o->next = c->head;
	if (c->head != NULL)
		c->head->prev = o;
	else
		c->tail = o;
	c->head = o;
}

static void grow(struct imap_sort_orders *c)
{
	size_t nb = c->n_bucket * 2;
	struct imap_sort_order **b = xcalloc(nb, sizeof *b);
	for (size_t i = 0; i < c->n_bucket; i++) {
		struct imap_sort_order *o = c->bucket[i], *next;
		for (; o != NULL; o = next) {
			next = o->hnext;
			o->hnext = b[o->hash & (nb - 1)];
			b[o->hash & (nb - 1)] = o;
		}
	}
	free(c->bucket);
	c->bucket = b;
	c->n_bucket = nb;
}

/* into the cache: the list's head, its bucket, its bytes */
static void cache_add(struct imap_sort_orders *c, struct imap_sort_order *o)
{
	if (c->n + 1 > c->n_bucket)
		grow(c);
	struct imap_sort_order **b = &c->bucket[o->hash & (c->n_bucket - 1)];
	o->hnext = *b;
	*b = o;
	lru_push(c, o);
	c->n++;
	c->bytes += order_bytes(o);
	o->cached = true;
}

static void order_free(struct imap_sort_order *o)
{
	free(o->user);
	free(o->uids);
	free(o);
}

void imap_sort_order_unref(struct imap_sort_order **op)
{
	struct imap_sort_order *o = *op;

	*op = NULL;
	if (o != NULL && --o->refs == 0)
		order_free(o);
}

/* out of the cache; freed now unless a job still reads it */
static void order_drop(struct imap_sort_orders *c, struct imap_sort_order *o)
{
	struct imap_sort_order **p = &c->bucket[o->hash & (c->n_bucket - 1)];
	while (*p != o)
		p = &(*p)->hnext;
	*p = o->hnext;
	o->hnext = NULL;
	lru_unlink(c, o);
	c->n--;
	c->bytes -= order_bytes(o);
	o->cached = false;
	imap_sort_order_unref(&o);
}

static struct imap_sort_order *order_find(struct imap_sort_orders *c, const char *user,
					  uint32_t uidvalidity, const uint8_t *crit, size_t n,
					  uint32_t hash)
{
	for (struct imap_sort_order *o = c->bucket[hash & (c->n_bucket - 1)]; o != NULL;
	     o = o->hnext)
		if (o->hash == hash && o->uidvalidity == uidvalidity && o->n_crit == n &&
		    memcmp(o->crit, crit, n) == 0 && strcasecmp(o->user, user) == 0)
			return o;
	return NULL;
}

void imap_sort_order_forget(struct imap_sort_orders *c, struct imap_sort_order *o)
{
	if (c != NULL && o != NULL && o->cached)
		order_drop(c, o);
}

struct imap_sort_orders *imap_sort_orders_new(size_t max_bytes)
{
	struct imap_sort_orders *c = xcalloc(1, sizeof *c);
	c->max_bytes = max_bytes;
	c->n_bucket = ORDERS_BUCKETS;
	c->bucket = xcalloc(c->n_bucket, sizeof *c->bucket);
	return c;
}

void imap_sort_orders_free(struct imap_sort_orders **cp)
{
	struct imap_sort_orders *c = *cp;

	if (c == NULL)
		return;
	while (c->head != NULL)
		order_drop(c, c->head);
	free(c->bucket);
	free(c);
	*cp = NULL;
}

bool imap_sort_orders_fit(const struct imap_sort_orders *c, size_t n)
{
	return c != NULL && n > 0 &&
	       sizeof(struct imap_sort_order) + n * sizeof(uint32_t) <= c->max_bytes;
}

/* q's entry for the account and mailbox, not referenced; NULL if none */
static struct imap_sort_order *order_lookup(struct imap_sort_orders *c, const char *user,
					    uint32_t uidvalidity, const struct imap_search *q)
{
	uint8_t crit[IMAP_SORT_MAX_CRIT];
	size_t n;

	if (c == NULL || c->max_bytes == 0)
		return NULL;
	imap_sort_crit(q, crit, &n);
	return order_find(c, user, uidvalidity, crit, n, key_hash(user, uidvalidity, crit, n));
}

struct imap_sort_order *imap_sort_order_get(struct imap_sort_orders *c, const char *user,
					    uint32_t uidvalidity, const struct imap_search *q,
					    uint32_t view_max)
{
	struct imap_sort_order *o = order_lookup(c, user, uidvalidity, q);

	if (o == NULL)
		return NULL;
	if (o->max_uid < view_max) { /* newer messages: made again */
		order_drop(c, o);
		return NULL;
	}
	lru_unlink(c, o);
	lru_push(c, o);
	o->refs++;
	return o;
}

struct imap_sort_order *imap_sort_order_get_any(struct imap_sort_orders *c, const char *user,
						uint32_t uidvalidity, const struct imap_search *q)
{
	struct imap_sort_order *o = order_lookup(c, user, uidvalidity, q);

	if (o != NULL)
		o->refs++;
	return o;
}

void imap_sort_order_put(struct imap_sort_orders *c, const char *user, uint32_t uidvalidity,
			 const struct imap_search *q, uint32_t max_uid, uint32_t *uids, size_t n)
{
	uint8_t crit[IMAP_SORT_MAX_CRIT];
	size_t n_crit;
	struct imap_sort_order *o;

	if (!imap_sort_orders_fit(c, n)) {
		free(uids);
		return;
	}
	imap_sort_crit(q, crit, &n_crit);
	uint32_t hash = key_hash(user, uidvalidity, crit, n_crit);
	if ((o = order_find(c, user, uidvalidity, crit, n_crit, hash)) != NULL) {
		if (o->max_uid > max_uid) { /* a newer one is there already */
			free(uids);
			return;
		}
		order_drop(c, o);
	}
	o = xcalloc(1, sizeof *o);
	o->user = xstrdup(user);
	o->uidvalidity = uidvalidity;
	memcpy(o->crit, crit, n_crit);
	o->n_crit = n_crit;
	o->hash = hash;
	o->max_uid = max_uid;
	o->uids = uids;
	o->n = n;
	o->refs = 1; /* the cache's */
	cache_add(c, o);
	while (c->bytes > c->max_bytes && c->tail != NULL && c->tail != o)
		order_drop(c, c->tail);
}
