/* A kept SORT order brought up to date with new mail (imap_sort_order_extend,
 * sort.h), on a worker, instead of sorting every message again.
 *
 * A kept order (sortorder.c) holds every message of a mailbox up to its
 * max_uid in the criteria's order. New mail only adds UIDs above it. The new
 * messages' rows are read and sorted (a narrow read: UID max_uid+1:*), then
 * each goes into the old order at the first place whose message sorts after
 * it, found by binary search: each probe reads that one message's keys (its
 * sort_keys row). Sorted new rows only move right, so each search starts
 * where the last ended. k new messages cost about k * log2(n) single-row
 * reads: 10 into 100,000 are ~170 reads instead of 100,000 rows and a sort.
 *
 * Ties go by sequence number (RFC 5256 3), which follows the UID, so the
 * UID stands in for it: an old message sorts before a new one of equal
 * keys. The order may hold UIDs expunged since it was made (its users skip
 * them); a probe that lands on one takes the next present message to its
 * right, and when none is left before the upper bound, the new message goes
 * at the probe: where in a run of gone messages it lands does not matter to
 * the present ones. */
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/selcmd.h"
#include "imap/sort.h"
#include "mime/mime.h"
#include "mime/sortinfo.h"
#include "store/store.h"

struct rows_acc {
	const struct imap_search *q;
	struct imap_sort_row *rows;
	size_t n, cap;
	bool bad; /* a message without readable keys: no merge */
};

static int row_each(void *arg, const struct store_msg *sm)
{
	struct rows_acc *a = arg;
	struct mime_sortinfo si_row;
	const struct mime_sortinfo *si = NULL;
	struct mime_cache mc;
	struct imap_msg m;

	if (sm->sortkeys != NULL && mime_sort_open(sm->sortkeys, sm->sortkeys_len, &si_row))
		si = &si_row;
	else if (sm->sortkeys == NULL && sm->cache != NULL &&
		 mime_cache_open(&mc, sm->cache, sm->cache_len))
		si = mime_cache_sort(&mc);
	if (si == NULL) {
		a->bad = true; /* keys made elsewhere (a full SORT saves them) */
		return 1;
	}
	imap_search_msg(&m, sm);
	m.seq = sm->uid; /* ties by UID: the same order as by sequence number */
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->rows = xrealloc(a->rows, a->cap * sizeof *a->rows);
	}
	imap_sort_row_fill(a->q, &m, si, &a->rows[a->n++]);
	return 0;
}

static void rows_free(struct rows_acc *a)
{
	for (size_t i = 0; i < a->n; i++)
		imap_sort_row_free(&a->rows[i]);
	free(a->rows);
	a->rows = NULL;
	a->n = a->cap = 0;
}

/* The row of one old message: 0 with *row, 1 if it is gone, -1 (error or
 * unreadable keys: a->bad). */
static int old_row(struct store_snap *sn, const struct imap_sort_extend *x, uint32_t uid,
		   struct rows_acc *a, char **err_r)
{
	const struct store_uid_range r = {uid, uid};
	rows_free(a);
	if (store_snap_messages(sn, x->user, x->mailbox, x->uidvalidity, &r, 1, 0, STORE_MSG_SORT,
				row_each, a, err_r) != STORE_OK || a->bad)
		return -1;
	return a->n == 1 ? 0 : 1;
}

int imap_sort_order_extend(struct store_snap *sn, struct imap_sort_extend *x, char **err_r)
{
	const struct imap_sort_order *o = x->order;
	struct rows_acc fresh = {.q = x->q}, probe = {.q = x->q};
	const struct store_uid_range r = {o->max_uid + 1, x->view_max};
	int res = 1;

	x->uids = NULL;
	x->n = x->n_new = x->probes = 0;
	if (store_snap_messages(sn, x->user, x->mailbox, x->uidvalidity, &r, 1, 0, STORE_MSG_SORT,
				row_each, &fresh, err_r) != STORE_OK) {
		rows_free(&fresh);
		return -1;
	}
	if (fresh.bad || fresh.n > x->max_new)
		goto out;
	imap_sort_rows(x->q, fresh.rows, fresh.n);
	uint32_t *out = xmalloc((o->n + fresh.n + 1) * sizeof *out);
	size_t n_out = 0, lo = 0; /* old entries before lo are placed */
	for (size_t k = 0; k < fresh.n; k++) {
		/* first index in [lo, o->n) whose message sorts after fresh k */
		size_t a = lo, b = o->n;
		while (a < b) {
			size_t mid = a + (b - a) / 2, at = mid;
			int g;
			while ((g = old_row(sn, x, o->uids[at], &probe, err_r)) == 1 && at + 1 < b) {
				x->probes++;
				at++;
			}
			x->probes++;
			if (g < 0) {
				free(out);
				res = probe.bad ? 1 : -1;
				goto out;
			}
			if (g == 1) { /* mid..b-1 all gone: anywhere among them */
				b = mid;
				continue;
			}
			if (imap_sort_row_cmp(x->q, &probe.rows[0], &fresh.rows[k]) > 0)
				b = mid; /* at sorts after: so may earlier ones */
			else
				a = at + 1;
		}
		while (lo < a)
			out[n_out++] = o->uids[lo++];
		out[n_out++] = fresh.rows[k].uid;
	}
	while (lo < o->n)
		out[n_out++] = o->uids[lo++];
	x->uids = out;
	x->n = n_out;
	x->n_new = fresh.n;
	res = 0;
out:
	rows_free(&fresh);
	rows_free(&probe);
	return res;
}
