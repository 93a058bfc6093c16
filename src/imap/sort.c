/* SORT and UID SORT (RFC 5256 3), SORT=DISPLAY (RFC 5957), ESORT and
 * CONTEXT=SORT (RFC 5267), PARTIAL (RFC 9394).
 *
 * The command runs through the search engine of searchcmd.c (the view read
 * in slices on workers, the search keys matched there); for each match the
 * sort keys are copied from the sort section of its MIME cache, made with
 * the cache (mime/sortinfo.h; imap_sort_row_fill), the rows are sorted on a
 * worker, and the response
 * is written in pieces while the client reads. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"
#include "mime/mime.h"

void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args)
{
	imap_search_cmd(s, args, true);
}

bool imap_sort_needs_cache(const struct imap_search *q)
{
	for (size_t i = 0; i < q->n_sort; i++)
		if (q->sort[i].kind != IMAP_SORT_ARRIVAL && q->sort[i].kind != IMAP_SORT_SIZE)
			return true;
	return false;
}

/* the string key of each criterion (-1: a number) */
static const int str_of[] = {
    [IMAP_SORT_ARRIVAL] = -1,		  [IMAP_SORT_CC] = SORTS_CC,
    [IMAP_SORT_DATE] = -1,		  [IMAP_SORT_FROM] = SORTS_FROM,
    [IMAP_SORT_SIZE] = -1,		  [IMAP_SORT_SUBJECT] = SORTS_SUBJECT,
    [IMAP_SORT_TO] = SORTS_TO,		  [IMAP_SORT_DISPLAYFROM] = SORTS_DFROM,
    [IMAP_SORT_DISPLAYTO] = SORTS_DTO,
};

_Static_assert((int)SORTS_SUBJECT == (int)MIME_SORT_SUBJECT &&
		   (int)SORTS_FROM == (int)MIME_SORT_FROM && (int)SORTS_TO == (int)MIME_SORT_TO &&
		   (int)SORTS_CC == (int)MIME_SORT_CC && (int)SORTS_DFROM == (int)MIME_SORT_DFROM &&
		   (int)SORTS_DTO == (int)MIME_SORT_DTO && (int)SORTS_N == (int)MIME_SORT_N,
	       "sort.h and sortinfo.h key order");

/* the first 8 octets of a key, big-endian, zero-padded: compared as
 * numbers they order keys as strcmp does on those octets */
static uint64_t key_prefix(const char *k, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < 8; i++)
		v = v << 8 | (i < n ? (unsigned char)k[i] : 0);
	return v;
}

void imap_sort_row_fill(const struct imap_search *q, const struct imap_msg *m,
			const struct mime_sortinfo *si, struct imap_sort_row *r)
{
	static const char empty[1] = "";
	bool want[SORTS_N] = {false};
	bool want_date = false;
	size_t total = 0;

	memset(r, 0, sizeof *r);
	r->uid = m->uid;
	r->seq = m->seq;
	r->size = m->size;
	r->modseq = m->modseq;
	r->arrival = (int64_t)m->internaldate;
	r->date = r->arrival;
	for (size_t i = 0; i < q->n_sort; i++) {
		int k = str_of[q->sort[i].kind];
		if (k >= 0)
			want[k] = true;
		want_date |= q->sort[i].kind == IMAP_SORT_DATE;
	}
	/* RFC 5256 2.2: the Date: field, else INTERNALDATE */
	if (want_date && si != NULL && (si->flags & MSI_DATE))
		r->date = si->date;
	/* the keys were made with the cache (sortinfo.h); a key whose field is
	 * missing is the empty string (RFC 5256 3). One block for the row. */
	for (size_t i = 0; i < SORTS_N; i++)
		if (want[i] && si != NULL && si->len[i] > 0)
			total += si->len[i] + 1;
	if (total > 0) {
		char *p = r->keys = xmalloc(total);
		for (size_t i = 0; i < SORTS_N; i++)
			if (want[i] && si != NULL && si->len[i] > 0) {
				memcpy(p, si->key[i], si->len[i] + 1);
				r->str[i] = p;
				p += si->len[i] + 1;
			}
	}
	for (size_t i = 0; i < SORTS_N; i++)
		if (want[i] && r->str[i] == NULL)
			r->str[i] = empty;
	if (q->n_sort > 0 && str_of[q->sort[0].kind] >= 0) {
		const char *k = r->str[str_of[q->sort[0].kind]];
		r->pfx = key_prefix(k, strlen(k));
	}
}

void imap_sort_row_free(struct imap_sort_row *r)
{
	x_free(&r->keys);
	memset(r->str, 0, sizeof r->str);
}

static int cmp_u32_sort(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_num(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int row_cmp(const void *a, const void *b, void *arg)
{
	const struct imap_search *q = arg;
	const struct imap_sort_row *x = a, *y = b;

	for (size_t i = 0; i < q->n_sort; i++) {
		int c;
		switch ((enum imap_sort_kind)q->sort[i].kind) {
		case IMAP_SORT_ARRIVAL:
			c = cmp_num(x->arrival, y->arrival);
			break;
		case IMAP_SORT_DATE:
			c = cmp_num(x->date, y->date);
			break;
		case IMAP_SORT_SIZE:
			c = x->size < y->size ? -1 : x->size > y->size;
			break;
		default: {
			int k = str_of[q->sort[i].kind];
			if (i == 0 && x->pfx != y->pfx) {
				c = x->pfx < y->pfx ? -1 : 1;
				break;
			}
			c = strcmp(x->str[k] != NULL ? x->str[k] : "",
				   y->str[k] != NULL ? y->str[k] : "");
			break;
		}
		}
		if (c != 0)
			return q->sort[i].reverse ? -c : c;
	}
	/* RFC 5256 3: equal keys: in order of their sequence numbers (REVERSE
	 * applies to its criterion only, not to this tie-break) */
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int imap_sort_row_cmp(const struct imap_search *q, const struct imap_sort_row *a,
		      const struct imap_sort_row *b)
{
	return row_cmp(a, b, (void *)q);
}

/* The sort runs on a compact array: per row its first criterion as one
 * unsigned number whose order is the criterion's (a string key's 8-octet
 * prefix; REVERSE: complemented), its index and sequence number. Only ties
 * of that number look at the rows (row_cmp), so most comparisons touch 16
 * octets, not two whole rows (100,000 rows: 1.6 MB instead of 11 MB). */
struct sort_ent {
	uint64_t k;
	uint32_t idx, seq;
};

struct sort_ctx {
	const struct imap_search *q;
	const struct imap_sort_row *rows;
	bool only; /* one numeric criterion: ties are by sequence number */
};

static int ent_cmp(const void *a, const void *b, void *arg)
{
	const struct sort_ent *x = a, *y = b;
	const struct sort_ctx *c = arg;

	if (x->k != y->k)
		return x->k < y->k ? -1 : 1;
	if (c->only)
		return x->seq < y->seq ? -1 : x->seq > y->seq;
	return row_cmp(&c->rows[x->idx], &c->rows[y->idx], (void *)c->q);
}

static uint64_t first_key(const struct imap_search *q, const struct imap_sort_row *r)
{
	uint64_t k;

	switch ((enum imap_sort_kind)q->sort[0].kind) {
	case IMAP_SORT_ARRIVAL:
		k = (uint64_t)r->arrival ^ ((uint64_t)1 << 63); /* signed order */
		break;
	case IMAP_SORT_DATE:
		k = (uint64_t)r->date ^ ((uint64_t)1 << 63);
		break;
	case IMAP_SORT_SIZE:
		k = r->size;
		break;
	default:
		k = r->pfx;
		break;
	}
	return q->sort[0].reverse ? ~k : k;
}

void imap_sort_rows(const struct imap_search *q, struct imap_sort_row *rows, size_t n)
{
	struct sort_ctx c = {q, rows, false};
	struct sort_ent *e;
	struct imap_sort_row tmp;
	const uint32_t PLACED = UINT32_MAX; /* n < 2^32: imap_sort_row.seq */

	if (n < 2 || q->n_sort == 0) {
		if (n > 1)
			qsort_r(rows, n, sizeof *rows, row_cmp, (void *)q);
		return;
	}
	c.only = q->n_sort == 1 && str_of[q->sort[0].kind] < 0;
	e = xmalloc(n * sizeof *e);
	for (size_t i = 0; i < n; i++) {
		e[i].k = first_key(q, &rows[i]);
		e[i].idx = (uint32_t)i;
		e[i].seq = rows[i].seq;
	}
	qsort_r(e, n, sizeof *e, ent_cmp, &c);
	/* rows[i] = the old rows[e[i].idx], in place along each cycle of the
	 * permutation (a second array of rows would double the peak: 110 MB
	 * more at 1,000,000 messages); a placed entry's idx becomes PLACED */
	for (size_t i = 0; i < n; i++) {
		if (e[i].idx == PLACED)
			continue;
		if (e[i].idx == i) {
			e[i].idx = PLACED;
			continue;
		}
		tmp = rows[i];
		size_t at = i;
		while (e[at].idx != i) {
			size_t from = e[at].idx;
			rows[at] = rows[from];
			e[at].idx = PLACED;
			at = from;
		}
		rows[at] = tmp;
		e[at].idx = PLACED;
	}
	free(e);
}

/* ---- CONTEXT=SEARCH (RFC 5267 4) ---- */

#include <inttypes.h>

#include "store/store.h"

struct ctx_fresh {
	uint32_t uid;
	uint64_t bits;
	bool match;
};

struct imap_ctx {
	struct imap_ctx *next;
	struct imap_session *s;
	char *tag;
	bool uid, dead;
	int refs;
	struct imap_search q;
	const struct imap_search_key *leaf[IMAP_CTX_MAX_LEAVES];
	size_t n_leaf;
	uint32_t *saved; /* "$" as of the search */
	size_t n_saved;
	/* every message of the view and its static keys' bits */
	uint32_t *uids;
	uint64_t *bits;
	size_t n, cap;
	/* the result as the client knows it (sorted UIDs), and the changes
	 * not told yet: (uid, matches now), in order (a later one wins);
	 * merged at the next flush in one pass (a STORE 1:* costs
	 * O(n log n), never O(n^2)) */
	uint32_t *res;
	size_t n_res, cap_res;
	struct ctx_chg {
		uint32_t uid, ord;
		bool now;
	} *chg;
	size_t n_chg, cap_chg;
	/* new messages evaluated on a worker, not announced yet */
	struct ctx_fresh *fresh;
	size_t n_fresh, cap_fresh;
};

static struct imap_ctx *ctx_list; /* the loop's; few sessions use it */

static bool key_static(enum imap_search_kind k)
{
	switch (k) {
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
	case IMAP_SK_LARGER:
	case IMAP_SK_SMALLER:
	case IMAP_SK_HEADER:
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
	case IMAP_SK_OLDER:
	case IMAP_SK_YOUNGER:
		return true;
	default:
		return false;
	}
}

static int collect(const struct imap_search_key *k, const struct imap_search_key **leaf,
		   size_t *n)
{
	if (key_static(k->kind)) {
		if (*n == IMAP_CTX_MAX_LEAVES)
			return -1;
		leaf[(*n)++] = k;
		return 0;
	}
	for (size_t i = 0; i < k->n_sub; i++)
		if (collect(&k->sub[i], leaf, n) < 0)
			return -1;
	return 0;
}

int imap_ctx_leaves(const struct imap_search *q, const struct imap_search_key **leaf,
		    size_t *n_r)
{
	*n_r = 0;
	return collect(&q->root, leaf, n_r);
}

static bool key_one(const struct imap_search_key *k, const struct imap_msg *m,
		    const uint32_t *saved, size_t n_saved)
{
	struct imap_search t;
	memset(&t, 0, sizeof t);
	t.root = *k; /* shallow: the key's own tree */
	return imap_search_match(&t, m, saved, n_saved);
}

uint64_t imap_ctx_leaf_bits(const struct imap_search_key *const *leaf, size_t n,
			    const struct imap_msg *m)
{
	uint64_t b = 0;
	for (size_t i = 0; i < n; i++)
		if (key_one(leaf[i], m, NULL, 0))
			b |= (uint64_t)1 << i;
	return b;
}

/* q evaluated for m with the static keys' results taken from bits */
static bool ev(const struct imap_ctx *c, const struct imap_search_key *k,
	       const struct imap_msg *m, uint64_t bits)
{
	switch (k->kind) {
	case IMAP_SK_AND:
		for (size_t i = 0; i < k->n_sub; i++)
			if (!ev(c, &k->sub[i], m, bits))
				return false;
		return true;
	case IMAP_SK_OR:
		for (size_t i = 0; i < k->n_sub; i++)
			if (ev(c, &k->sub[i], m, bits))
				return true;
		return false;
	case IMAP_SK_NOT:
		return k->n_sub > 0 && !ev(c, &k->sub[0], m, bits);
	default:
		for (size_t i = 0; i < c->n_leaf; i++)
			if (c->leaf[i] == k)
				return (bits >> i) & 1;
		return key_one(k, m, c->saved, c->n_saved);
	}
}

static void u32_insert(uint32_t **v, size_t *n, size_t *cap, size_t at, uint32_t x)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*v = xrealloc(*v, *cap * sizeof **v);
	}
	memmove(*v + at + 1, *v + at, (*n - at) * sizeof **v);
	(*v)[at] = x;
	(*n)++;
}

static void chg_add(struct imap_ctx *c, uint32_t uid, bool now)
{
	if (c->n_chg == c->cap_chg) {
		c->cap_chg = c->cap_chg ? c->cap_chg * 2 : 16;
		c->chg = xrealloc(c->chg, c->cap_chg * sizeof *c->chg);
	}
	c->chg[c->n_chg].uid = uid;
	c->chg[c->n_chg].ord = (uint32_t)c->n_chg;
	c->chg[c->n_chg].now = now;
	c->n_chg++;
}

static int cmp_chg(const void *a, const void *b)
{
	const struct ctx_chg *x = a, *y = b;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->ord < y->ord ? -1 : x->ord > y->ord;
}

static void ctx_unref(struct imap_ctx *c)
{
	if (--c->refs > 0)
		return;
	imap_search_free(&c->q);
	free(c->tag);
	free(c->saved);
	free(c->uids);
	free(c->bits);
	free(c->res);
	free(c->chg);
	free(c->fresh);
	free(c);
}

static void ctx_unlink(struct imap_ctx *c)
{
	for (struct imap_ctx **pp = &ctx_list; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->dead = true;
	ctx_unref(c);
}

void imap_ctx_start(struct imap_session *s, struct imap_search *q, uint32_t *uids,
		    uint64_t *bits, size_t n, const uint32_t *res, size_t n_res)
{
	struct imap_ctx *c = xcalloc(1, sizeof *c);

	/* RFC 5267 4.2: a new UPDATE search of the same tag replaces it */
	for (struct imap_ctx *o = ctx_list; o != NULL; o = o->next)
		if (o->s == s && strcmp(o->tag, s->tag) == 0) {
			ctx_unlink(o);
			break;
		}
	c->s = s;
	c->tag = xstrdup(s->tag);
	c->uid = s->uid;
	c->refs = 1;
	c->q = *q;
	memset(q, 0, sizeof *q);
	if (imap_ctx_leaves(&c->q, c->leaf, &c->n_leaf) < 0)
		c->n_leaf = 0; /* refused at the start (searchcmd.c) */
	if (s->sel != NULL && s->sel->n_saved > 0) {
		c->saved = xmalloc(s->sel->n_saved * sizeof *c->saved);
		memcpy(c->saved, s->sel->saved, s->sel->n_saved * sizeof *c->saved);
		c->n_saved = s->sel->n_saved;
	}
	c->uids = uids;
	c->bits = bits;
	c->n = c->cap = n;
	if (n_res > 0) {
		c->res = xmalloc(n_res * sizeof *c->res);
		memcpy(c->res, res, n_res * sizeof *c->res);
		qsort(c->res, n_res, sizeof *c->res, cmp_u32_sort);
	}
	c->n_res = c->cap_res = n_res;
	c->next = ctx_list;
	ctx_list = c;
}

void imap_ctx_flags(struct imap_session *s, uint32_t uid, const char *flags, uint64_t modseq)
{
	struct imap_msg m;
	const char *kw = "";
	struct store_uid_range *recent = NULL;
	size_t n_recent = 0, at;
	bool have_recent = false;

	for (struct imap_ctx *c = ctx_list; c != NULL; c = c->next) {
		if (c->s != s || !imap_uid_find(c->uids, c->n, uid, &at))
			continue;
		if (!have_recent) {
			recent = imap_sel_recent(s, &n_recent);
			have_recent = true;
		}
		memset(&m, 0, sizeof m);
		m.uid = uid;
		m.seq = imap_view_seq(s, uid);
		m.modseq = modseq;
		m.sysflags = imap_flags_from_store(flags != NULL ? flags : "", &kw);
		m.keywords = kw != NULL ? kw : "";
		if (imap_recent_in(recent, n_recent, uid))
			m.sysflags |= IMAP_F_RECENT;
		chg_add(c, uid, ev(c, &c->q.root, &m, c->bits[at]));
	}
	free(recent);
}

/* "* ESEARCH (TAG t) [UID] what (pos set)"; nums sorted ascending */
static void send_update(struct imap_ctx *c, const char *what, uint32_t pos, const uint32_t *nums,
			size_t n)
{
	struct buf b = BUF_INIT;

	buf_appends(&b, "* ESEARCH (TAG ");
	imap_append_string(&b, c->tag, strlen(c->tag));
	buf_printf(&b, ")%s %s (%" PRIu32 " ", c->uid ? " UID" : "", what, pos);
	imap_seqset_format(&b, nums, n);
	buf_appends(&b, ")\r\n");
	imap_send(c->s, b.data, b.len);
	buf_free(&b);
}

/* uids (sorted) as sequence numbers (sorted) or UIDs; k of them in view */
static void send_nums(struct imap_ctx *c, const char *what, uint32_t pos, uint32_t *v, size_t n)
{
	size_t k = 0;
	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		uint32_t num = c->uid ? v[i] : imap_view_seq(c->s, v[i]);
		if (num != 0)
			v[k++] = num;
	}
	if (k > 0)
		send_update(c, what, pos, v, k);
}

/* The changes merged into the result in one pass; REMOVEFROM and ADDTO
 * (RFC 5267 4.3) with the position (1-based, in the UID ordered result)
 * of the first message of each. */
static void flush_ctx(struct imap_ctx *c)
{
	uint32_t *nres, *add, *rem, pos_add = 0, pos_rem = 0;
	size_t n_new = 0, n_add = 0, n_rem = 0, i = 0, k = 0;

	if (c->n_chg == 0)
		return;
	qsort(c->chg, c->n_chg, sizeof *c->chg, cmp_chg);
	nres = xmalloc((c->n_res + c->n_chg) * sizeof *nres);
	add = xmalloc(c->n_chg * sizeof *add);
	rem = xmalloc(c->n_chg * sizeof *rem);
	while (i < c->n_res || k < c->n_chg) {
		if (k == c->n_chg || (i < c->n_res && c->res[i] < c->chg[k].uid)) {
			nres[n_new++] = c->res[i++];
			continue;
		}
		uint32_t uid = c->chg[k].uid;
		while (k + 1 < c->n_chg && c->chg[k + 1].uid == uid)
			k++; /* the last change of uid wins */
		bool now = c->chg[k++].now;
		bool was = i < c->n_res && c->res[i] == uid;
		if (was && !now) {
			if (n_rem == 0)
				pos_rem = (uint32_t)i + 1;
			rem[n_rem++] = uid;
		} else if (!was && now) {
			if (n_add == 0)
				pos_add = (uint32_t)n_new + 1;
			add[n_add++] = uid;
		}
		if (now)
			nres[n_new++] = uid;
		if (was)
			i++;
	}
	free(c->res);
	c->res = nres;
	c->n_res = n_new;
	c->cap_res = c->n_res + c->n_chg;
	c->n_chg = 0;
	send_nums(c, "REMOVEFROM", pos_rem, rem, n_rem);
	send_nums(c, "ADDTO", pos_add, add, n_add);
	free(add);
	free(rem);
}

void imap_ctx_flush(struct imap_session *s)
{
	for (struct imap_ctx *c = ctx_list; c != NULL; c = c->next)
		if (c->s == s)
			flush_ctx(c);
}

void imap_ctx_expunge(struct imap_session *s, const uint32_t *uids, size_t n)
{
	for (struct imap_ctx *c = ctx_list; c != NULL; c = c->next) {
		uint32_t *rem, pos = 0;
		size_t n_rem = 0, w = 0, k = 0;

		if (c->s != s)
			continue;
		flush_ctx(c); /* the view is still the one the client knows */
		rem = xmalloc((n ? n : 1) * sizeof *rem);
		for (size_t i = 0; i < c->n_res; i++) {
			while (k < n && uids[k] < c->res[i])
				k++;
			if (k < n && uids[k] == c->res[i]) {
				if (n_rem == 0)
					pos = (uint32_t)i + 1;
				rem[n_rem++] = c->res[i];
			} else {
				c->res[w++] = c->res[i];
			}
		}
		c->n_res = w;
		for (size_t i = 0, wk = 0, kk = 0;; i++) {
			if (i == c->n) {
				c->n = wk;
				break;
			}
			while (kk < n && uids[kk] < c->uids[i])
				kk++;
			if (kk < n && uids[kk] == c->uids[i])
				continue;
			c->uids[wk] = c->uids[i];
			c->bits[wk++] = c->bits[i];
		}
		/* before the EXPUNGE responses: the numbers are still valid */
		send_nums(c, "REMOVEFROM", pos, rem, n_rem);
		free(rem);
	}
}

int imap_ctx_count(const struct imap_session *s)
{
	int n = 0;
	for (const struct imap_ctx *c = ctx_list; c != NULL; c = c->next)
		n += c->s == s;
	return n;
}

void imap_ctx_drop(struct imap_session *s)
{
	struct imap_ctx *c = ctx_list, *next;
	for (; c != NULL; c = next) {
		next = c->next;
		if (c->s == s)
			ctx_unlink(c);
	}
}

struct imap_ctx_sync {
	char *user, *mailbox;
	uint32_t uidvalidity, from;
	struct imap_ctx **ctx;
	size_t n_ctx;
	struct {
		size_t ci;
		struct ctx_fresh f;
	} *v;
	size_t n, cap;
	struct imap_blob blob;
	struct store_snap *sn;
};

struct imap_ctx_sync *imap_ctx_sync_prepare(struct imap_session *s, uint32_t from_uid)
{
	struct imap_ctx_sync *w = NULL;

	for (struct imap_ctx *c = ctx_list; c != NULL; c = c->next) {
		if (c->s != s)
			continue;
		if (w == NULL) {
			w = xcalloc(1, sizeof *w);
			w->user = xstrdup(s->user);
			w->mailbox = xstrdup(s->sel->name);
			w->uidvalidity = s->sel->uidvalidity;
			w->from = from_uid;
		}
		w->ctx = xrealloc(w->ctx, (w->n_ctx + 1) * sizeof *w->ctx);
		w->ctx[w->n_ctx++] = c;
		c->refs++;
	}
	return w;
}

static int sync_each_new(void *arg, const struct store_msg *sm)
{
	struct imap_ctx_sync *w = arg;
	struct imap_msg m;
	struct mime_cache mc;
	struct buf built = BUF_INIT;

	imap_search_msg(&m, sm);
	if (imap_search_load(w->sn, sm, true, &w->blob, &m, &mc, &built) < 0)
		return 0; /* gone meanwhile */
	for (size_t i = 0; i < w->n_ctx; i++) {
		struct imap_ctx *c = w->ctx[i];
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 8;
			w->v = xrealloc(w->v, w->cap * sizeof *w->v);
		}
		w->v[w->n].ci = i;
		w->v[w->n].f.uid = m.uid;
		w->v[w->n].f.bits = imap_ctx_leaf_bits(c->leaf, c->n_leaf, &m);
		w->v[w->n].f.match = imap_search_match(&c->q, &m, c->saved, c->n_saved);
		w->n++;
	}
	buf_free(&built);
	return 0;
}

int imap_ctx_sync_work(struct store_snap *sn, struct imap_ctx_sync *w, char **err_r)
{
	struct store_uid_range r = {w->from, UINT32_MAX};
	int res;

	w->sn = sn;
	res = store_snap_messages(sn, w->user, w->mailbox, w->uidvalidity, &r, 1, 0,
				  STORE_MSG_CACHE, sync_each_new, w, err_r);
	imap_blob_free(&w->blob);
	return res < 0 ? -1 : 0;
}

void imap_ctx_sync_done(struct imap_session *s, struct imap_ctx_sync *w)
{
	(void)s;
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n; i++) {
		struct imap_ctx *c = w->ctx[w->v[i].ci];
		if (c->dead)
			continue;
		if (c->n_fresh == c->cap_fresh) {
			c->cap_fresh = c->cap_fresh ? c->cap_fresh * 2 : 8;
			c->fresh = xrealloc(c->fresh, c->cap_fresh * sizeof *c->fresh);
		}
		c->fresh[c->n_fresh++] = w->v[i].f;
	}
	for (size_t i = 0; i < w->n_ctx; i++)
		ctx_unref(w->ctx[i]);
	free(w->ctx);
	free(w->v);
	free(w->user);
	free(w->mailbox);
	free(w);
}

static int cmp_fresh(const void *a, const void *b)
{
	const struct ctx_fresh *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

void imap_ctx_new(struct imap_session *s, const uint32_t *uids, size_t n)
{
	for (struct imap_ctx *c = ctx_list; c != NULL; c = c->next) {
		size_t w = 0;
		if (c->s != s)
			continue;
		qsort(c->fresh, c->n_fresh, sizeof *c->fresh, cmp_fresh);
		for (size_t i = 0; i < n; i++) {
			struct ctx_fresh f = {uids[i], 0, false};
			size_t lo = 0, hi = c->n_fresh, at;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (c->fresh[mid].uid < uids[i])
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < c->n_fresh && c->fresh[lo].uid == uids[i]) {
				f = c->fresh[lo];
				c->fresh[lo].uid = 0; /* taken */
			}
			if (imap_uid_find(c->uids, c->n, uids[i], &at))
				continue;
			size_t old_cap = c->cap;
			u32_insert(&c->uids, &c->n, &c->cap, at, uids[i]);
			if (c->cap != old_cap)
				c->bits = xrealloc(c->bits, c->cap * sizeof *c->bits);
			memmove(c->bits + at + 1, c->bits + at, (c->n - 1 - at) * sizeof *c->bits);
			c->bits[at] = f.bits;
			if (f.match)
				chg_add(c, uids[i], true);
		}
		for (size_t i = 0; i < c->n_fresh; i++)
			if (c->fresh[i].uid != 0)
				c->fresh[w++] = c->fresh[i];
		c->n_fresh = w;
	}
}

/* CANCELUPDATE tag... (RFC 5267 4.2) */
void imap_cmd_cancelupdate(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Missing tag");
		return;
	}
	for (const struct imap_arg *a = args; a->type != IMAP_ARG_EOL; a++) {
		const char *t;
		size_t n;
		if (a->type != IMAP_ARG_QUOTED && a->type != IMAP_ARG_LITERAL) {
			imap_tagged(s, "BAD", NULL, "Invalid tag");
			return;
		}
		if (!imap_arg_astring(a, &t, &n)) {
			imap_tagged(s, "BAD", NULL, "Invalid tag");
			return;
		}
		for (struct imap_ctx *c = ctx_list; c != NULL; c = c->next)
			if (c->s == s && strlen(c->tag) == n && memcmp(c->tag, t, n) == 0) {
				ctx_unlink(c);
				break;
			}
	}
	imap_tagged(s, "OK", NULL, "CANCELUPDATE completed");
}
