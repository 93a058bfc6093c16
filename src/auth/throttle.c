/* Login failure throttling: a sliding window of failure times per key.
 *
 * Each key keeps its last max_failures failure times in a ring; the key is
 * blocked while the ring is full and its oldest entry is younger than the
 * window. Keys live in a chained hash table (keyed SipHash, so clients that
 * pick account names cannot build long chains) and on an LRU list ordered by
 * last failure, whose head is evicted when max_keys is reached. */
#include "auth/throttle.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "core/siphash.h"
#include "core/xmalloc.h"

struct throttle_entry {
	char *key;
	struct throttle_entry *hnext;               /* hash chain */
	struct throttle_entry *lru_prev, *lru_next; /* head = stalest */
	unsigned n, head;                           /* ring: times[head] is the oldest */
	uint64_t times[];                           /* max_failures slots */
};

struct throttle {
	unsigned max_failures, window_s, max_keys, nkeys;
	size_t nbuckets; /* power of two */
	struct throttle_entry **buckets;
	struct throttle_entry *lru_head, *lru_tail;
	uint64_t k0, k1; /* SipHash key */
};

static uint64_t throttle_hash(const struct throttle *t, const char *key)
{
	return siphash24(t->k0, t->k1, key, strlen(key));
}

struct throttle *throttle_new(unsigned max_failures, unsigned window_s, unsigned max_keys)
{
	struct throttle *t = xcalloc(1, sizeof(*t));
	x_assert(max_failures > 0 && max_keys > 0);
	t->max_failures = max_failures;
	t->window_s = window_s;
	t->max_keys = max_keys;
	t->nbuckets = 16;
	while (t->nbuckets < max_keys && t->nbuckets < ((size_t)1 << 30))
		t->nbuckets <<= 1;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	siphash_key(&t->k0, &t->k1);
	return t;
}

static struct throttle_entry **throttle_slot(struct throttle *t, const char *key)
{
	struct throttle_entry **ep = &t->buckets[throttle_hash(t, key) & (t->nbuckets - 1)];

	while (*ep != NULL && strcmp((*ep)->key, key) != 0)
		ep = &(*ep)->hnext;
	return ep;
}

static void throttle_lru_unlink(struct throttle *t, struct throttle_entry *e)
{
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else
		t->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else
		t->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void throttle_lru_append(struct throttle *t, struct throttle_entry *e)
{
	e->lru_prev = t->lru_tail;
	e->lru_next = NULL;
	if (t->lru_tail != NULL)
		t->lru_tail->lru_next = e;
	else
		t->lru_head = e;
	t->lru_tail = e;
}

/* Removes the entry at *ep (a hash slot) from both structures. */
static void throttle_remove(struct throttle *t, struct throttle_entry **ep)
{
	struct throttle_entry *e = *ep;

	*ep = e->hnext;
	throttle_lru_unlink(t, e);
	t->nkeys--;
	free(e->key);
	free(e);
}

/* Drops failures that have left the window ending at now. */
static void throttle_expire(const struct throttle *t, struct throttle_entry *e, uint64_t now)
{
	while (e->n > 0) {
		uint64_t oldest = e->times[e->head];

		if (now >= oldest && now - oldest >= t->window_s) {
			e->head = (e->head + 1) % t->max_failures;
			e->n--;
		} else {
			break;
		}
	}
}

bool throttle_blocked(struct throttle *t, const char *key, uint64_t now)
{
	struct throttle_entry **ep = throttle_slot(t, key);
	struct throttle_entry *e = *ep;

	if (e == NULL)
		return false;
	throttle_expire(t, e, now);
	if (e->n == 0) {
		throttle_remove(t, ep);
		return false;
	}
	return e->n >= t->max_failures;
}

unsigned throttle_count(struct throttle *t, const char *key, uint64_t now, uint64_t *last_r)
{
	struct throttle_entry **ep = throttle_slot(t, key);
	struct throttle_entry *e = *ep;

	if (e == NULL)
		return 0;
	throttle_expire(t, e, now);
	if (e->n == 0) {
		throttle_remove(t, ep);
		return 0;
	}
	if (last_r != NULL)
		*last_r = e->times[(e->head + e->n - 1) % t->max_failures];
	return e->n;
}

void throttle_fail(struct throttle *t, const char *key, uint64_t now)
{
	struct throttle_entry **ep = throttle_slot(t, key);
	struct throttle_entry *e = *ep;

	if (e == NULL) {
		if (t->nkeys >= t->max_keys) {
			/* Evict the stalest; it may share our chain, so look again. */
			throttle_remove(t, throttle_slot(t, t->lru_head->key));
			ep = throttle_slot(t, key);
		}
		e = xcalloc(1, sizeof(*e) + t->max_failures * sizeof(e->times[0]));
		e->key = xstrdup(key);
		*ep = e;
		t->nkeys++;
	} else {
		throttle_lru_unlink(t, e);
	}
	throttle_lru_append(t, e);
	throttle_expire(t, e, now);
	/* A full ring forgets its oldest entry: only the newest max_failures matter. */
	if (e->n == t->max_failures) {
		e->head = (e->head + 1) % t->max_failures;
		e->n--;
	}
	e->times[(e->head + e->n) % t->max_failures] = now;
	e->n++;
}

void throttle_unfail(struct throttle *t, const char *key, uint64_t when)
{
	struct throttle_entry **ep = throttle_slot(t, key);
	struct throttle_entry *e = *ep;
	unsigned i;

	if (e == NULL)
		return;
	for (i = 0; i < e->n; i++)
		if (e->times[(e->head + i) % t->max_failures] == when)
			break;
	if (i == e->n)
		return;
	/* Close the gap: the newer entries move one slot toward the oldest. */
	for (; i + 1 < e->n; i++)
		e->times[(e->head + i) % t->max_failures] =
		    e->times[(e->head + i + 1) % t->max_failures];
	if (--e->n == 0)
		throttle_remove(t, ep);
}

void throttle_clear(struct throttle *t, const char *key)
{
	struct throttle_entry **ep = throttle_slot(t, key);

	if (*ep != NULL)
		throttle_remove(t, ep);
}

void throttle_free(struct throttle **tp)
{
	struct throttle *t = *tp;

	if (t == NULL)
		return;
	while (t->lru_head != NULL)
		throttle_remove(t, throttle_slot(t, t->lru_head->key));
	free(t->buckets);
	x_free(tp);
}
