/* SORT (RFC 5256 3, RFC 5957, RFC 5267 ESORT/CONTEXT=SORT): the sort keys
 * of a message and their order (sort.c). The search engine (searchcmd.c)
 * reads the view in slices on workers and, for SORT, asks
 * imap_sort_row_fill for each matching message's keys there; the rows are
 * sorted on a worker (imap_sort_rows) before the response is written. */
#ifndef POSTERN_IMAP_SORT_H
#define POSTERN_IMAP_SORT_H
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "imap/fetch.h"
#include "imap/parse.h"

struct store_snap;

struct mime_sortinfo;

struct imap_session;

/* string keys, each the i;unicode-casemap key (RFC 5051) of the value */
enum { SORTS_SUBJECT, SORTS_FROM, SORTS_TO, SORTS_CC, SORTS_DFROM, SORTS_DTO, SORTS_N };

struct imap_sort_row {
	uint32_t uid, seq;
	uint64_t size, modseq;
	int64_t arrival, date;
	/* the first criterion's key's first 8 octets (big-endian) when it is
	 * a string: most comparisons end there */
	uint64_t pfx;
	bool match; /* the search keys match (a row of every message: sort cache) */
	const char *str[SORTS_N]; /* only those the criteria use, else NULL */
	char *keys;		  /* the block str[] point into (or NULL) */
};

/* true if the criteria need the message's MIME cache (header keys) */
bool imap_sort_needs_cache(const struct imap_search *q);
/* The keys of m (on a worker) from si, its sort section (the store's
 * sort_keys or m's MIME cache; NULL when imap_sort_needs_cache is false,
 * or when the message has neither: its string keys are then ""). */
void imap_sort_row_fill(const struct imap_search *q, const struct imap_msg *m,
			const struct mime_sortinfo *si, struct imap_sort_row *r);
/* Sorts rows by the criteria, ties by sequence number (RFC 5256 3). */
void imap_sort_rows(const struct imap_search *q, struct imap_sort_row *rows, size_t n);
void imap_sort_row_free(struct imap_sort_row *r);

/* The server's cache of SORT orders (sortorder.c): per account, mailbox and
 * list of criteria, every message's UID in the criteria's order, as made by
 * a SORT of a view whose highest UID was max_uid; valid for every view whose
 * highest UID is at most that. On the loop; a job reading uids on a worker
 * holds a reference (get), dropped with imap_sort_order_unref. */
struct imap_sort_order {
	struct imap_sort_order *prev, *next; /* the cache's use order */
	struct imap_sort_order *hnext;       /* the cache's bucket */
	uint32_t hash;
	bool cached; /* in the cache (not evicted, replaced or forgotten) */
	int refs;
	char *user;
	uint32_t uidvalidity;
	uint8_t crit[IMAP_SORT_MAX_CRIT]; /* kind << 1 | reverse */
	size_t n_crit;
	uint32_t max_uid;
	uint32_t *uids;
	size_t n;
};
struct imap_sort_orders;
/* A kept order (or a stored one, read in the same snapshot: order then needs
 * only max_uid, uids and n) made for a view whose highest UID is below
 * view_max, brought up to date (sortmerge.c) on a worker, in a read snapshot:
 * the messages above its max_uid (at most max_new of them) are sorted and put
 * into it by binary search, reading one message's keys per probe. 0 with uids (xmalloc,
 * n: the order for view_max) and the figures; 1 when it cannot be done that
 * way (more new messages, keys not kept apart: the caller sorts every
 * message); -1 with *err_r. */
struct imap_sort_extend {
	/* in */
	const struct imap_search *q;
	const struct imap_sort_order *order; /* referenced by the caller */
	const char *user, *mailbox;
	uint32_t uidvalidity, view_max;
	size_t max_new;
	/* out */
	uint32_t *uids;
	size_t n, n_new, probes;
};
int imap_sort_order_extend(struct store_snap *sn, struct imap_sort_extend *x, char **err_r);
/* The criteria's order of two rows, ties by their seq (imap_sort_rows's) */
int imap_sort_row_cmp(const struct imap_search *q, const struct imap_sort_row *a,
		      const struct imap_sort_row *b);
/* The kept order for q even if made for fewer messages than view_max has
 * (for imap_sort_order_extend), referenced; NULL if none. */
struct imap_sort_order *imap_sort_order_get_any(struct imap_sort_orders *c, const char *user,
						uint32_t uidvalidity, const struct imap_search *q);
/* orders of this many messages or more are also kept in the store
 * (store_sort_order_save), for the first SORT of another process */
#define IMAP_SORT_STORED_MIN 1000
/* q's criteria as the key's octets (IMAP_SORT_MAX_CRIT at most) */
void imap_sort_crit(const struct imap_search *q, uint8_t *crit, size_t *n_r);
/* max_bytes: the entries' memory (imap_sort_cache_size); 0: none kept */
struct imap_sort_orders *imap_sort_orders_new(size_t max_bytes);
void imap_sort_orders_free(struct imap_sort_orders **cp);
/* true if an order of n messages may be kept (c may be NULL: false) */
bool imap_sort_orders_fit(const struct imap_sort_orders *c, size_t n);
/* The order of q's criteria for the mailbox, referenced, if one valid for a
 * view whose highest UID is view_max is kept; NULL otherwise (an older one
 * is dropped). */
struct imap_sort_order *imap_sort_order_get(struct imap_sort_orders *c, const char *user,
					    uint32_t uidvalidity, const struct imap_search *q,
					    uint32_t view_max);
/* Keeps uids (xmalloc'd, taken over; every message of a view whose highest
 * UID was max_uid, in q's order), replacing an older order of the same key. */
void imap_sort_order_put(struct imap_sort_orders *c, const char *user, uint32_t uidvalidity,
			 const struct imap_search *q, uint32_t max_uid, uint32_t *uids, size_t n);
void imap_sort_order_unref(struct imap_sort_order **op);
/* o out of the cache (if still in it), freed with its last reference */
void imap_sort_order_forget(struct imap_sort_orders *c, struct imap_sort_order *o);

/* searchcmd.c: a message of a snapshot read as an imap_msg (no content),
 * then its content: the MIME cache (built into built when the store has
 * none) and, when need_blob or to build the cache, the blob loaded into bl;
 * -1 if the message is gone meanwhile. */
struct store_msg;
void imap_search_msg(struct imap_msg *m, const struct store_msg *sm);
int imap_search_load(struct store_snap *sn, const struct store_msg *sm, bool need_blob,
		     struct imap_blob *bl, struct imap_msg *m, struct mime_cache *mc,
		     struct buf *built);
/* SEARCH / SORT (searchcmd.c): parses args and runs the search. */
void imap_search_cmd(struct imap_session *s, const struct imap_arg *args, bool sort);

#endif

/* ---- CONTEXT=SEARCH (RFC 5267 4): SEARCH RETURN (UPDATE ...) ----
 * The result is kept up to date as flags change, messages arrive and are
 * expunged: ESEARCH ADDTO / REMOVEFROM before the next tagged reply. The
 * keys that depend on a message's content or other fixed data (dates,
 * sizes, header and body text: "static" keys) are evaluated once per
 * message on a worker, their results kept as bits (at most
 * IMAP_CTX_MAX_LEAVES static keys); flag changes are then evaluated on the
 * loop from those bits. */
#define IMAP_CTX_MAX_LEAVES 64
/* updating results kept per session at the most (memory: 12 octets per
 * message of the view each) */
#define IMAP_CTX_MAX_SESSION 8
int imap_ctx_count(const struct imap_session *s);
struct imap_search_key;
/* The static keys of q in a fixed order; -1 if there are too many. */
int imap_ctx_leaves(const struct imap_search *q, const struct imap_search_key **leaf,
		    size_t *n_r);
/* The bits of the static keys for m (on a worker; m with its content). */
uint64_t imap_ctx_leaf_bits(const struct imap_search_key *const *leaf, size_t n,
			    const struct imap_msg *m);
/* The search is done: q (taken over, emptied), every message of the view
 * (uids sorted, their bits; both taken), the result (sorted UIDs). */
void imap_ctx_start(struct imap_session *s, struct imap_search *q, uint32_t *uids,
		    uint64_t *bits, size_t n, const uint32_t *res, size_t n_res);
/* select.c / storecmd.c hooks */
void imap_ctx_flags(struct imap_session *s, uint32_t uid, const char *flags, uint64_t modseq);
/* uids (sorted) are being expunged, the view still holds them */
void imap_ctx_expunge(struct imap_session *s, const uint32_t *uids, size_t n);
void imap_ctx_flush(struct imap_session *s);
void imap_ctx_drop(struct imap_session *s);
/* New messages: prepared on the loop when a read of changes starts (NULL:
 * no context), run on its worker, merged when it ends (and freed), then
 * imap_ctx_new when they are announced. */
struct imap_ctx_sync;
struct imap_ctx_sync *imap_ctx_sync_prepare(struct imap_session *s, uint32_t from_uid);
int imap_ctx_sync_work(struct store_snap *sn, struct imap_ctx_sync *w, char **err_r);
void imap_ctx_sync_done(struct imap_session *s, struct imap_ctx_sync *w);
void imap_ctx_new(struct imap_session *s, const uint32_t *uids, size_t n);
void imap_cmd_cancelupdate(struct imap_session *s, const struct imap_arg *args);
