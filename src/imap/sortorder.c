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
 * cache them), and one account's order would answer another's SORT; the least recently used
 * go when the entries' size passes imap_sort_cache_size. The loop owns the
 * cache; a job holds a reference on an entry it reads on a worker (its UIDs
 * do not change once made), so an entry evicted or replaced meanwhile is
 * freed by the last unref. Each process keeps its own; as it depends only on
 * the mailbox's data, processes sharing a database need no coordination. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "imap/sort.h"

struct imap_sort_orders {
	struct imap_sort_order *head, *tail; /* most recently used first */
	size_t bytes, max_bytes;
};

static size_t order_bytes(const struct imap_sort_order *o)
{
	return sizeof *o + strlen(o->user) + 1 + o->n * sizeof *o->uids;
}

static void order_crit(const struct imap_search *q, uint8_t *crit, size_t *n_r)
{
	for (size_t i = 0; i < q->n_sort; i++)
		crit[i] = (uint8_t)(q->sort[i].kind << 1 | (q->sort[i].reverse ? 1 : 0));
	*n_r = q->n_sort;
}

static void order_unlink(struct imap_sort_orders *c, struct imap_sort_order *o)
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
	c->bytes -= order_bytes(o);
}

static void order_push(struct imap_sort_orders *c, struct imap_sort_order *o)
{
	o->prev = NULL;
	o->next = c->head;
	if (c->head != NULL)
		c->head->prev = o;
	else
		c->tail = o;
	c->head = o;
	c->bytes += order_bytes(o);
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
	order_unlink(c, o);
	imap_sort_order_unref(&o);
}

static struct imap_sort_order *order_find(struct imap_sort_orders *c, const char *user,
					  uint32_t uidvalidity, const struct imap_search *q)
{
	uint8_t crit[IMAP_SORT_MAX_CRIT];
	size_t n;

	order_crit(q, crit, &n);
	for (struct imap_sort_order *o = c->head; o != NULL; o = o->next)
		if (o->uidvalidity == uidvalidity && o->n_crit == n &&
		    memcmp(o->crit, crit, n) == 0 && strcasecmp(o->user, user) == 0)
			return o;
	return NULL;
}

void imap_sort_order_forget(struct imap_sort_orders *c, struct imap_sort_order *o)
{
	if (c != NULL && o != NULL && (c->head == o || o->prev != NULL))
		order_drop(c, o);
}

struct imap_sort_orders *imap_sort_orders_new(size_t max_bytes)
{
	struct imap_sort_orders *c = xcalloc(1, sizeof *c);
	c->max_bytes = max_bytes;
	return c;
}

void imap_sort_orders_free(struct imap_sort_orders **cp)
{
	struct imap_sort_orders *c = *cp;

	if (c == NULL)
		return;
	while (c->head != NULL)
		order_drop(c, c->head);
	free(c);
	*cp = NULL;
}

bool imap_sort_orders_fit(const struct imap_sort_orders *c, size_t n)
{
	return c != NULL && n > 0 &&
	       sizeof(struct imap_sort_order) + n * sizeof(uint32_t) <= c->max_bytes;
}

struct imap_sort_order *imap_sort_order_get(struct imap_sort_orders *c, const char *user,
					    uint32_t uidvalidity, const struct imap_search *q,
					    uint32_t view_max)
{
	struct imap_sort_order *o;

	if (c == NULL || c->max_bytes == 0 || (o = order_find(c, user, uidvalidity, q)) == NULL)
		return NULL;
	if (o->max_uid < view_max) { /* newer messages: made again */
		order_drop(c, o);
		return NULL;
	}
	order_unlink(c, o);
	order_push(c, o);
	o->refs++;
	return o;
}

void imap_sort_order_put(struct imap_sort_orders *c, const char *user, uint32_t uidvalidity,
			 const struct imap_search *q, uint32_t max_uid, uint32_t *uids, size_t n)
{
	struct imap_sort_order *o;

	if (!imap_sort_orders_fit(c, n)) {
		free(uids);
		return;
	}
	if ((o = order_find(c, user, uidvalidity, q)) != NULL) {
		if (o->max_uid > max_uid) { /* a newer one is there already */
			free(uids);
			return;
		}
		order_drop(c, o);
	}
	o = xcalloc(1, sizeof *o);
	o->user = xstrdup(user);
	o->uidvalidity = uidvalidity;
	order_crit(q, o->crit, &o->n_crit);
	o->max_uid = max_uid;
	o->uids = uids;
	o->n = n;
	o->refs = 1; /* the cache's */
	order_push(c, o);
	while (c->bytes > c->max_bytes && c->tail != NULL && c->tail != o)
		order_drop(c, c->tail);
}
