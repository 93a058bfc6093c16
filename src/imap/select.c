/* The selected mailbox: SELECT, EXAMINE, CLOSE, UNSELECT, CHECK, NOOP
 * updates, the view (sequence numbers <-> UIDs) and the store's change
 * notifications turned into untagged EXISTS / EXPUNGE / VANISHED / FETCH.
 *
 * The view is what the client knows: a sorted array of the UIDs of the
 * messages it was told about, message n being v[n - 1] (RFC 9051 2.3.1.2).
 * It changes only when the client is told (imap_send_updates, our own
 * EXPUNGE/MOVE), so sequence numbers in commands always mean what the client
 * means. It is a plain uint32_t array (4 octets per message); sharing it
 * between sessions that see the same state is a later optimisation.
 *
 * Changes: store_subscribe() announces each committed change on the loop.
 *  - EXPUNGE: the UIDs are remembered (no read needed) and announced at
 *    the next moment RFC 9051 7.5.1 allows (not during FETCH, STORE, SEARCH;
 *    at once in IDLE).
 *  - NEW, FLAGS: one read on a worker of every message whose MODSEQ is above
 *    what the session has synced (store_snap_messages with changedsince):
 *    UIDs at or above the known UIDNEXT are new (EXISTS), the others changed
 *    flags (FETCH FLAGS). Reads are never on the loop; a notification during
 *    a read marks the state dirty and one more read follows. A big change
 *    (a STORE 1:* elsewhere) is read in UID windows of SYNC_WINDOW messages,
 *    each read once the previous one was sent and, in NOOP/CHECK/IDLE, once
 *    the client has read it: memory and output stay bounded.
 *  - DELETED: "* BYE" and close.
 * Our own STORE's changes come back as a notification too; their MODSEQ is
 * noted (imap_sel_own_change) so that the client is not told twice.
 *
 * \Recent (RFC 3501 2.3.2; dropped by IMAP4rev2): see recent_entry below. */
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"
#include "store/store.h"

struct imap_view {
	uint32_t *v;
	uint32_t n, cap;
};

struct flag_upd {
	uint32_t uid;
	uint64_t modseq;
	char *flags;
};

#define OWN_MAX 16

struct imap_selsync {
	uint64_t id;             /* this selection, for completions that outlive it */
	uint64_t synced_modseq;  /* changes up to this MODSEQ were read */
	uint32_t known_uidnext;  /* UIDs from here on are new to the session */
	bool dirty;              /* a NEW/FLAGS notification since the read began */
	bool reading;            /* a read is in flight (it holds busy) */
	/* a big change is read in UID windows (SYNC_WINDOW changed messages
	 * each): the next window starts at scan_from (0: no pass in
	 * progress) once the previous one was sent; scan_modseq is the
	 * HIGHESTMODSEQ of the pass's first snapshot */
	uint32_t scan_from;
	uint64_t scan_modseq;
	bool renamed;            /* our RENAME's notice is to come */
	uint32_t *new_uids;      /* read, not yet announced (EXISTS) */
	size_t n_new, cap_new;
	struct flag_upd *fl;     /* read, not yet announced (FETCH FLAGS) */
	size_t n_fl, cap_fl;
	uint32_t *gone;          /* expunged, not yet announced */
	size_t n_gone, cap_gone;
	uint64_t own[OWN_MAX];   /* MODSEQs of our own STOREs */
	size_t n_own;
	void (*cont)(struct imap_session *s); /* waits for the read (imap_sel_sync) */
	struct buf kw;           /* keywords the client was told of (FLAGS) */
	struct recent_entry *rt; /* the mailbox's \Recent boundary */
	struct store_uid_range *recent; /* this session's recent UIDs */
	size_t n_recent, cap_recent;
	uint32_t recent_told;    /* the last RECENT count sent */
	/* (uid, modseq) the client was shown while a read was in flight: the
	 * read's older state of them is not sent after (imap_sel_reported) */
	struct sync_seen {
		uint32_t uid;
		uint64_t modseq;
	} *shown;
	size_t n_shown, cap_shown;
};

static uint64_t next_sel_id = 1;

static uint32_t view_lower(const struct imap_view *v, uint32_t uid);

/* \Recent (RFC 3501 2.3.2: a message is recent in the one session that is
 * first told of it). Per mailbox (user, name, UIDVALIDITY) the process keeps
 * the lowest UID no read-write session has claimed yet: a SELECT claims
 * every message from there, a session that has the mailbox selected claims
 * new ones as it learns of them; EXAMINE shows them without claiming. The
 * boundary lives in memory: after a restart every message is recent once
 * more (Dovecot loses them with its index, too). One table per process, on
 * the loop thread (with one loop per core it moves into the server). */
struct recent_entry {
	struct recent_entry *next;
	char *user, *mailbox;
	uint32_t uidvalidity;
	uint32_t from;
};
#define RECENT_BUCKETS 1024
static struct recent_entry *recent_table[RECENT_BUCKETS];

static struct recent_entry *recent_get(const char *user, const char *mailbox, uint32_t uidvalidity)
{
	uint32_t h = 2166136261u;
	for (const char *p = user; *p; p++)
		h = (h ^ (unsigned char)(*p | 0x20)) * 16777619u;
	for (const char *p = mailbox; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h ^= uidvalidity;
	struct recent_entry **b = &recent_table[h % RECENT_BUCKETS], *e;
	for (e = *b; e != NULL; e = e->next)
		if (e->uidvalidity == uidvalidity && strcasecmp(e->user, user) == 0 &&
		    strcmp(e->mailbox, mailbox) == 0)
			return e;
	e = xcalloc(1, sizeof *e);
	e->user = xstrdup(user);
	e->mailbox = xstrdup(mailbox);
	e->uidvalidity = uidvalidity;
	e->from = 1;
	e->next = *b;
	*b = e;
	return e;
}

uint32_t imap_recent_boundary(const char *user, const char *mailbox, uint32_t uidvalidity)
{
	return recent_get(user, mailbox, uidvalidity)->from;
}

static void recent_add(struct imap_selsync *y, uint32_t lo, uint32_t hi)
{
	if (lo > hi)
		return;
	if (y->n_recent > 0 && y->recent[y->n_recent - 1].hi + 1 >= lo) {
		if (hi > y->recent[y->n_recent - 1].hi)
			y->recent[y->n_recent - 1].hi = hi;
		return;
	}
	if (y->n_recent == y->cap_recent) {
		y->cap_recent = y->cap_recent ? y->cap_recent * 2 : 2;
		y->recent = xrealloc(y->recent, y->cap_recent * sizeof *y->recent);
	}
	y->recent[y->n_recent].lo = lo;
	y->recent[y->n_recent].hi = hi;
	y->n_recent++;
}

/* A message the session learns of: recent if nobody claimed it. */
static void recent_learn(struct imap_session *s, uint32_t uid)
{
	struct imap_selsync *y = s->sel->sync;
	if (y->rt == NULL || uid < y->rt->from)
		return;
	recent_add(y, uid, uid);
	if (!s->sel->readonly)
		y->rt->from = uid + 1;
}

bool imap_recent_in(const struct store_uid_range *r, size_t n, uint32_t uid)
{
	for (size_t i = 0; i < n; i++)
		if (uid >= r[i].lo && uid <= r[i].hi)
			return true;
	return false;
}

struct store_uid_range *imap_sel_recent(const struct imap_session *s, size_t *n_r)
{
	const struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;
	size_t n = y != NULL ? y->n_recent : 0;
	struct store_uid_range *r = xmalloc((n ? n : 1) * sizeof *r);
	if (n > 0)
		memcpy(r, y->recent, n * sizeof *r);
	*n_r = n;
	return r;
}

uint32_t *imap_sel_gone(const struct imap_session *s, size_t *n_r)
{
	const struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;
	size_t n = y != NULL ? y->n_gone : 0;
	uint32_t *v = NULL;
	if (n > 0) {
		v = xmalloc(n * sizeof *v);
		memcpy(v, y->gone, n * sizeof *v);
	}
	*n_r = n;
	return v;
}

/* Messages of the view that are recent. */
static uint32_t recent_count(const struct imap_session *s)
{
	const struct imap_selsync *y = s->sel->sync;
	const struct imap_view *v = s->sel->view;
	uint32_t n = 0;
	for (size_t i = 0; i < y->n_recent && v != NULL; i++) {
		uint32_t a = view_lower(v, y->recent[i].lo);
		uint32_t b = y->recent[i].hi == UINT32_MAX ? v->n : view_lower(v, y->recent[i].hi + 1);
		n += b - a;
	}
	return n;
}

static bool kw_known(const struct buf *kw, const char *w, size_t len)
{
	const char *p = kw->len > 0 ? kw->data : NULL;
	while (p != NULL && *p != '\0') {
		const char *e = strchr(p, ' ');
		size_t pl = e != NULL ? (size_t)(e - p) : strlen(p);
		if (pl == len && strncasecmp(p, w, len) == 0)
			return true;
		p = e != NULL ? e + 1 : NULL;
	}
	return false;
}

static void send_flag_lists(struct imap_session *s)
{
	struct imap_selsync *y = s->sel->sync;
	struct buf b = BUF_INIT;
	const char *kw = y->kw.len > 0 ? y->kw.data : NULL;

	buf_appends(&b, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	if (kw != NULL)
		buf_printf(&b, " %s", kw);
	buf_appends(&b, ")\r\n");
	if (s->sel->readonly) {
		buf_appends(&b, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
	} else {
		buf_appends(&b, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
		if (kw != NULL)
			buf_printf(&b, " %s", kw);
		buf_appends(&b, " \\*)] Flags permitted\r\n");
	}
	imap_send(s, b.data, b.len);
	buf_free(&b);
}

void imap_sel_keywords(struct imap_session *s, const char *flags)
{
	struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;
	bool added = false;

	if (y == NULL || flags == NULL)
		return;
	for (const char *p = flags; *p != '\0';) {
		p += strspn(p, " ");
		size_t n = strcspn(p, " ");
		if (n > 0 && p[0] != '\\' && !kw_known(&y->kw, p, n)) {
			if (y->kw.len > 0)
				buf_appendc(&y->kw, ' ');
			buf_append(&y->kw, p, n);
			added = true;
		}
		p += n;
	}
	if (added && imap_alive(s))
		send_flag_lists(s);
}

bool imap_alive(const struct imap_session *s)
{
	return imap_session_alive(s);
}

/* ---- the view ---- */

static struct imap_view *view_of(const struct imap_session *s)
{
	return s->sel != NULL ? s->sel->view : NULL;
}

uint32_t imap_view_count(const struct imap_session *s)
{
	const struct imap_view *v = view_of(s);
	return v != NULL ? v->n : 0;
}

const uint32_t *imap_view_uids(const struct imap_session *s)
{
	const struct imap_view *v = view_of(s);
	return v != NULL ? v->v : NULL;
}

/* Index of the first UID >= uid. */
static uint32_t view_lower(const struct imap_view *v, uint32_t uid)
{
	size_t at;

	imap_uid_find(v->v, v->n, uid, &at);
	return (uint32_t)at;
}

uint32_t imap_view_seq(const struct imap_session *s, uint32_t uid)
{
	const struct imap_view *v = view_of(s);
	uint32_t i;

	if (v == NULL)
		return 0;
	i = view_lower(v, uid);
	return i < v->n && v->v[i] == uid ? i + 1 : 0;
}

uint32_t imap_view_uid(const struct imap_session *s, uint32_t seq)
{
	const struct imap_view *v = view_of(s);
	return v != NULL && seq >= 1 && seq <= v->n ? v->v[seq - 1] : 0;
}

static void view_append(struct imap_view *v, const uint32_t *uids, size_t n)
{
	if (v->n + n > v->cap) {
		size_t cap = v->cap ? v->cap : 16;
		while (cap < v->n + n)
			cap *= 2;
		v->v = xrealloc(v->v, cap * sizeof *v->v);
		v->cap = (uint32_t)cap;
	}
	memcpy(v->v + v->n, uids, n * sizeof *uids);
	v->n += (uint32_t)n;
}

static void view_free(struct imap_view **vp)
{
	if (*vp == NULL)
		return;
	free((*vp)->v);
	x_free(vp);
}

/* ---- sets ---- */

static void idx_add(struct imap_idxset *set, size_t *cap, uint32_t lo, uint32_t hi)
{
	if (set->n > 0 && set->v[set->n - 1].hi + 1 >= lo) {
		if (hi > set->v[set->n - 1].hi) {
			set->count += hi - set->v[set->n - 1].hi;
			set->v[set->n - 1].hi = hi;
		}
		return;
	}
	if (set->n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		set->v = xrealloc(set->v, *cap * sizeof *set->v);
	}
	set->v[set->n].lo = lo;
	set->v[set->n].hi = hi;
	set->n++;
	set->count += (uint64_t)hi - lo + 1;
}

/* The sorted UIDs uids (e.g. the saved result) as indices of the view. */
static void idx_from_uids(const struct imap_view *v, const uint32_t *uids, size_t n,
			  struct imap_idxset *set, size_t *cap)
{
	uint32_t i = 0;

	for (size_t k = 0; k < n && v != NULL; k++) {
		while (i < v->n && v->v[i] < uids[k])
			i++;
		if (i < v->n && v->v[i] == uids[k])
			idx_add(set, cap, i, i);
	}
}

int imap_idxset_parse(struct imap_session *s, const struct imap_arg *a, bool uid,
		      struct imap_idxset *set, const char **err_r)
{
	struct imap_view *v = view_of(s);
	struct imap_seqset ss = {0};
	size_t cap = 0;
	uint32_t n = v != NULL ? v->n : 0;

	memset(set, 0, sizeof *set);
	if (a->type != IMAP_ARG_ATOM ||
	    imap_seqset_parse(a->str, a->len, 10000, &ss) < 0) {
		*err_r = "Invalid sequence set";
		return -1;
	}
	if (ss.dollar) {
		/* RFC 5182 2.1: "$" is the saved result (UIDs), empty if none */
		if (s->sel != NULL)
			idx_from_uids(v, s->sel->saved, s->sel->n_saved, set, &cap);
		imap_seqset_free(&ss);
		return 0;
	}
	if (!uid) {
		/* RFC 9051 6.4.1... a sequence number beyond the view is an
		 * error ("*" alone in an empty mailbox too, as Dovecot) */
		for (size_t i = 0; i < ss.n; i++) {
			uint32_t hi = ss.v[i].hi, lo = ss.v[i].lo;
			if ((hi != IMAP_STAR && hi > n) || (lo != IMAP_STAR && lo > n) ||
			    n == 0) {
				imap_seqset_free(&ss);
				*err_r = "Invalid messageset";
				return -1;
			}
		}
		imap_seqset_resolve(&ss, n);
		for (size_t i = 0; i < ss.n; i++)
			if (ss.v[i].lo >= 1)
				idx_add(set, &cap, ss.v[i].lo - 1, ss.v[i].hi - 1);
	} else {
		/* RFC 9051 6.4.9: UIDs not in the mailbox are ignored; "*" is the
		 * highest UID in use */
		imap_seqset_resolve(&ss, n > 0 ? v->v[n - 1] : 0);
		for (size_t i = 0; i < ss.n && n > 0; i++) {
			uint32_t lo = view_lower(v, ss.v[i].lo);
			uint32_t hi = ss.v[i].hi == UINT32_MAX ? n
							       : view_lower(v, ss.v[i].hi + 1);
			if (lo < hi)
				idx_add(set, &cap, lo, hi - 1);
		}
	}
	imap_seqset_free(&ss);
	return 0;
}

void imap_idxset_free(struct imap_idxset *set)
{
	x_free(&set->v);
	set->n = 0;
	set->count = 0;
}

uint32_t *imap_idxset_uids(const struct imap_session *s, const struct imap_idxset *set,
			   size_t *n_r)
{
	const struct imap_view *v = view_of(s);
	uint32_t *u = xmalloc((set->count ? set->count : 1) * sizeof *u);
	size_t n = 0;

	for (size_t i = 0; i < set->n && v != NULL; i++)
		for (uint32_t k = set->v[i].lo; k <= set->v[i].hi && k < v->n; k++)
			u[n++] = v->v[k];
	*n_r = n;
	return u;
}

/* ---- small helpers ---- */

void imap_flags_to_store(struct buf *out, unsigned sys, const char *kw)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{IMAP_F_ANSWERED, "\\Answered"}, {IMAP_F_FLAGGED, "\\Flagged"},
		{IMAP_F_DELETED, "\\Deleted"},   {IMAP_F_SEEN, "\\Seen"},
		{IMAP_F_DRAFT, "\\Draft"},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (sys & names[i].bit) {
			if (out->len > 0)
				buf_appendc(out, ' ');
			buf_appends(out, names[i].name);
		}
	if (kw != NULL && *kw != '\0') {
		if (out->len > 0)
			buf_appendc(out, ' ');
		buf_appends(out, kw);
	}
	buf_reserve(out, 1); /* data is a C string even when empty */
	out->data[out->len] = '\0';
}

void imap_reply_reading(struct imap_session *s, const char *status, const char *code,
			const char *text)
{
	struct buf b = BUF_INIT;
	size_t tlen = 0;
	const char *tag = imap_reader_tag(&s->rd, &tlen);

	if (tag != NULL)
		buf_append(&b, tag, tlen);
	else
		buf_appendc(&b, '*');
	buf_printf(&b, " %s ", status);
	if (code != NULL)
		buf_printf(&b, "[%s] ", code);
	buf_printf(&b, "%s\r\n", text);
	imap_send(s, b.data, b.len);
	buf_free(&b);
}

/* Writes a flag list of the store's form as FETCH sends it. */
static void append_flags(struct buf *b, const char *flags, bool recent)
{
	const char *kw = NULL;
	unsigned sys = imap_flags_from_store(flags != NULL ? flags : "", &kw);
	imap_format_flags(b, sys | (recent ? IMAP_F_RECENT : 0), kw);
}

/* ---- change notification ---- */

static void sync_start(struct imap_session *s);

static bool uid_in(const uint32_t *v, size_t n, uint32_t uid)
{
	size_t at;

	return imap_uid_find(v, n, uid, &at);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Adds uids to the sorted, unique y->gone. A quiet session collects one
 * notification per EXPUNGE elsewhere: only the new UIDs are sorted and
 * then merged from the end, so each costs O(n log n + gone), never a sort
 * of everything collected so far. */
static void gone_add(struct imap_selsync *y, const uint32_t *uids, size_t n)
{
	uint32_t *nw = xmalloc(n * sizeof *nw);
	size_t m = 0;

	memcpy(nw, uids, n * sizeof *uids);
	qsort(nw, n, sizeof *nw, cmp_u32);
	for (size_t i = 0; i < n; i++)
		if ((m == 0 || nw[m - 1] != nw[i]) && !uid_in(y->gone, y->n_gone, nw[i]))
			nw[m++] = nw[i];
	if (y->n_gone + m > y->cap_gone) {
		y->cap_gone = (y->n_gone + m) * 2;
		y->gone = xrealloc(y->gone, y->cap_gone * sizeof *y->gone);
	}
	/* merge from the back: nothing is overwritten before it is read */
	size_t i = y->n_gone, k = m, w = y->n_gone + m;
	while (k > 0) {
		if (i > 0 && y->gone[i - 1] > nw[k - 1])
			y->gone[--w] = y->gone[--i];
		else
			y->gone[--w] = nw[--k];
	}
	y->n_gone += m;
	free(nw);
}

static void update_pending(struct imap_session *s)
{
	struct imap_selsync *y = s->sel->sync;
	s->sel->pending = y->n_new > 0 || y->n_fl > 0 || y->n_gone > 0;
}

static void on_change(void *arg, const struct store_change *ch)
{
	struct imap_session *s = arg;
	struct imap_selsync *y;

	if (s->sel == NULL || (y = s->sel->sync) == NULL)
		return;
	switch (ch->kind) {
	case STORE_CHANGE_DELETED:
		if (y->renamed) {
			/* our own RENAME (imap_sel_renamed): still selected */
			y->renamed = false;
			return;
		}
		/* RFC 9051 7.1.5: the mailbox is gone under the session */
		store_unsubscribe(s->srv->st, &s->sel->sub);
		if (imap_alive(s)) {
			/* not inside a response being streamed (a literal) */
			if (s->job == NULL || s->job_drained == NULL)
				imap_untagged(s, "BYE Selected mailbox was deleted, have to disconnect");
			session_close(&s->base, "mailbox deleted");
		}
		return;
	case STORE_CHANGE_EXPUNGE:
		if (ch->n_uids > 0) {
			gone_add(y, ch->uids, ch->n_uids);
			update_pending(s);
		}
		break;
	case STORE_CHANGE_FLAGS:
		if (ch->highestmodseq != 0) {
			bool own = false;
			for (size_t i = 0; i < y->n_own; i++)
				own |= y->own[i] == ch->highestmodseq;
			if (own)
				return;
		}
		/* fallthrough */
	case STORE_CHANGE_NEW:
		y->dirty = true;
		/* during a pass in windows the next window waits for the
		 * client; the pass's end reads this change (sync_done) */
		if (!y->reading && y->scan_from == 0)
			sync_start(s);
		return;
	}
	if (s->input == IMAP_IN_IDLE && imap_alive(s))
		imap_send_updates(s, true);
	else if (s->notify != NULL)
		imap_notify_idle(s); /* RFC 5465: between commands too */
}

/* One read of the changes (on a worker): its results are flag updates
 * (struct flag_upd), turned into the pending ones in place. A read takes
 * at most SYNC_WINDOW changed messages, from UID `from` on; the rest is
 * read once those were sent (more, next_uid), so that a STORE 1:* on a
 * big mailbox elsewhere costs a bounded amount of memory and output per
 * step here (DESIGN: the loop never waits, and output is bounded). A
 * window also ends past SYNC_WINDOW_BYTES of flags: a message's flags may
 * hold many long keywords, and a window is held about three times (the
 * read's results, the pending updates, the FETCH lines written). */
#define SYNC_WINDOW 1000
#define SYNC_WINDOW_BYTES (256 * 1024)
struct sync_job {
	struct imap_session *s;
	uint64_t sel_id;
	char *user, *mailbox;
	uint32_t uidvalidity;
	uint64_t since;
	uint32_t from;
	bool more;
	uint32_t next_uid;
	struct store_mailbox_status status;
	struct flag_upd *v;
	size_t n, cap;
	size_t bytes; /* of the flags in v */
	struct imap_ctx_sync *ctx; /* new messages for CONTEXT=SEARCH (sort.c) */
};

static int sync_each(void *arg, const struct store_msg *m)
{
	struct sync_job *j = arg;
	if (j->n == SYNC_WINDOW || j->bytes >= SYNC_WINDOW_BYTES) {
		j->more = true;
		j->next_uid = m->uid;
		return 1;
	}
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 16;
		j->v = xrealloc(j->v, j->cap * sizeof *j->v);
	}
	j->v[j->n].uid = m->uid;
	j->v[j->n].modseq = m->modseq;
	j->v[j->n].flags = xstrdup(m->flags != NULL ? m->flags : "");
	j->bytes += strlen(j->v[j->n].flags);
	j->n++;
	return 0;
}

static int sync_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct sync_job *j = arg;
	if (store_snap_mailbox_status(sn, j->user, j->mailbox, &j->status, err_r) < 0)
		return -1;
	if (j->status.uidvalidity != j->uidvalidity) {
		*err_r = xstrdup("mailbox replaced");
		return -1;
	}
	struct store_uid_range r = {j->from, UINT32_MAX};
	if (j->ctx != NULL && imap_ctx_sync_work(sn, j->ctx, err_r) < 0)
		return -1;
	return store_snap_messages(sn, j->user, j->mailbox, j->uidvalidity, &r, 1, j->since,
				   STORE_MSG_PLAIN, sync_each, j, err_r) < 0
		   ? -1
		   : 0;
}

static void sync_job_free(struct sync_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->v[i].flags);
	free(j->v);
	free(j->user);
	free(j->mailbox);
	free(j);
}

/* Pending flag updates are kept sorted by UID (one read's results come in
 * UID order; a later read's are merged in, newer winning), so that a big
 * change (a STORE 1:* elsewhere) costs O(n), never O(n^2), on the loop. */
static struct flag_upd *fl_find(struct imap_selsync *y, uint32_t uid)
{
	size_t lo = 0, hi = y->n_fl;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (y->fl[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < y->n_fl && y->fl[lo].uid == uid ? &y->fl[lo] : NULL;
}

/* Merges nw (n entries, sorted, flags owned) into y->fl. */
static void fl_merge(struct imap_selsync *y, struct flag_upd *nw, size_t n)
{
	struct flag_upd *out;
	size_t i = 0, k = 0, w = 0;

	if (n == 0) {
		free(nw);
		return;
	}
	if (y->n_fl == 0) {
		free(y->fl);
		y->fl = nw;
		y->n_fl = y->cap_fl = n;
		return;
	}
	out = xmalloc((y->n_fl + n) * sizeof *out);
	while (i < y->n_fl || k < n) {
		if (k == n || (i < y->n_fl && y->fl[i].uid < nw[k].uid)) {
			out[w++] = y->fl[i++];
		} else if (i == y->n_fl || nw[k].uid < y->fl[i].uid) {
			out[w++] = nw[k++];
		} else {
			free(y->fl[i++].flags); /* the newer read wins */
			out[w++] = nw[k++];
		}
	}
	free(y->fl);
	free(nw);
	y->fl = out;
	y->n_fl = w;
	y->cap_fl = y->n_fl + n;
}

/* shown[] sorted by (uid, modseq) */
static int cmp_seen(const void *a, const void *b)
{
	const struct sync_seen *x = a, *y = b;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->modseq < y->modseq ? -1 : x->modseq > y->modseq;
}

/* The client was shown uid as of modseq or later while the read ran. */
static bool shown_since(const struct imap_selsync *y, uint32_t uid, uint64_t modseq)
{
	size_t lo = 0, hi = y->n_shown;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (y->shown[mid].uid <= uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* lo - 1: the last entry of uid, the one with the highest modseq */
	return lo > 0 && y->shown[lo - 1].uid == uid && y->shown[lo - 1].modseq >= modseq;
}

static void sync_done(void *arg, int result, const char *err)
{
	struct sync_job *j = arg;
	struct imap_session *s = j->s;
	struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;
	void (*cont)(struct imap_session *s) = NULL;

	imap_ctx_sync_done(s, j->ctx); /* sort.c */
	j->ctx = NULL;
	if (y == NULL || y->id != j->sel_id) {
		/* unselected meanwhile */
		sync_job_free(j);
		session_release(&s->base);
		return;
	}
	y->reading = false;
	if (result < 0) {
		log_warn("imap %s: mailbox sync: %s", s->base.ip, err != NULL ? err : "error");
		/* read again at the client's next NOOP (or the next change),
		 * from the last complete pass: never at once (a read that keeps
		 * failing would loop), never forgotten (the change is unread) */
		y->scan_from = 0;
		y->dirty = true;
	} else {
		/* the pending updates are written over the read's results
		 * (n_nw <= i): no second array of them */
		struct flag_upd *nw = j->v;
		size_t n_nw = 0;
		/* a FETCH 1:* during the read may have shown every message:
		 * sorted once, looked up by halving (never n x m on the loop) */
		if (y->n_shown > 1)
			qsort(y->shown, y->n_shown, sizeof *y->shown, cmp_seen);
		for (size_t i = 0; i < j->n; i++) {
			struct flag_upd *r = &j->v[i];
			bool own = false;
			bool stale = shown_since(y, r->uid, r->modseq);
			if (stale && r->uid < y->known_uidnext) {
				x_free(&r->flags);
				continue;
			}
			if (r->uid >= y->known_uidnext) {
				if (y->n_new == y->cap_new) {
					y->cap_new = y->cap_new ? y->cap_new * 2 : 16;
					y->new_uids = xrealloc(y->new_uids,
							       y->cap_new * sizeof *y->new_uids);
				}
				y->new_uids[y->n_new++] = r->uid;
				y->known_uidnext = r->uid + 1;
				recent_learn(s, r->uid);
				x_free(&r->flags);
				continue;
			}
			for (size_t k = 0; k < y->n_own; k++)
				own |= y->own[k] == r->modseq;
			if (!own) {
				char *fl = r->flags; /* taken */
				r->flags = NULL;
				nw[n_nw].uid = r->uid;
				nw[n_nw].modseq = r->modseq;
				nw[n_nw].flags = fl;
				n_nw++;
			} else {
				x_free(&r->flags);
			}
		}
		/* every string of j->v is taken or freed */
		j->v = NULL;
		j->n = 0;
		if (n_nw > 0 && n_nw < j->cap)
			nw = xrealloc(nw, n_nw * sizeof *nw);
		fl_merge(y, nw, n_nw);
		if (j->more) {
			/* the window is full: the pass goes on from next_uid
			 * once these were sent; synced_modseq stays */
			if (y->scan_from == 0)
				y->scan_modseq = j->status.highestmodseq;
			y->scan_from = j->next_uid;
		} else {
			/* the pass is complete as of its first snapshot; what
			 * changed since in the windows already read is read
			 * again by one more (short) pass */
			uint64_t done = j->status.highestmodseq;
			if (y->scan_from != 0) {
				done = y->scan_modseq;
				if (j->status.highestmodseq > done)
					y->dirty = true;
			}
			y->scan_from = 0;
			if (done > y->synced_modseq)
				y->synced_modseq = done;
		}
		/* our own changes up to here were seen by this read */
		size_t w = 0;
		for (size_t k = 0; k < y->n_own; k++)
			if (y->own[k] > y->synced_modseq)
				y->own[w++] = y->own[k];
		y->n_own = w;
		/* HIGHESTMODSEQ only once every change below it was read */
		if (!j->more && j->status.highestmodseq > s->sel->highestmodseq)
			s->sel->highestmodseq = j->status.highestmodseq;
	}
	sync_job_free(j);
	y->n_shown = 0;
	update_pending(s);
	if (result == 0 && y->scan_from != 0) {
		/* a window of a big change: a command waiting for the read
		 * (NOOP, CHECK...) or IDLE gets it now, and the next window
		 * is read once the client has read it (sel_drained); else it
		 * waits for the next moment updates may be sent
		 * (imap_send_updates goes on) */
		if (session_release(&s->base) || !imap_alive(s))
			return;
		if (y->cont != NULL || s->input == IMAP_IN_IDLE)
			imap_send_updates(s, true); /* then windows_next */
		return;
	}
	if (y->dirty && result == 0) {
		sync_start(s);
	} else {
		cont = y->cont;
		y->cont = NULL;
	}
	if (session_release(&s->base))
		return;
	if (!imap_alive(s))
		return;
	if (cont != NULL)
		cont(s);
	else if (s->input == IMAP_IN_IDLE && s->sel != NULL)
		imap_send_updates(s, true);
	else if (s->notify != NULL)
		imap_notify_idle(s); /* RFC 5465: between commands too */
}

/* The client read the output down: the next window of a pass. */
static void sel_drained(struct imap_session *s)
{
	struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;

	if (s->job_drained == sel_drained)
		s->job_drained = NULL;
	if (y != NULL && y->scan_from != 0 && !y->reading)
		sync_start(s);
}

/* During a pass in windows, once a window was sent: the next one is read
 * now if the output has room, else once the client has read it down
 * (sel_drained), so that a client that does not read holds a window and
 * the output limit, never the whole change. */
static void windows_next(struct imap_session *s)
{
	struct imap_selsync *y = s->sel->sync;
	if (y->scan_from == 0 || y->reading || s->srv == NULL)
		return;
	if (session_output_room(&s->base)) {
		sync_start(s);
		return;
	}
	if (s->job_drained == NULL || s->job_drained == sel_drained) {
		s->job_drained = sel_drained;
		session_output_wait(&s->base);
	}
	/* else a command's long response owns the drained event: the next
	 * window starts when the updates are sent at its end
	 * (imap_send_updates) */
}

static void sync_start(struct imap_session *s)
{
	struct imap_selsync *y = s->sel->sync;
	struct sync_job *j;

	if (s->srv == NULL)
		return;
	j = xcalloc(1, sizeof *j);
	j->s = s;
	j->sel_id = y->id;
	j->user = xstrdup(s->user);
	j->mailbox = xstrdup(s->sel->name);
	j->uidvalidity = s->sel->uidvalidity;
	j->since = y->synced_modseq;
	j->from = y->scan_from != 0 ? y->scan_from : 1;
	j->ctx = imap_ctx_sync_prepare(s, y->known_uidnext);
	y->dirty = false;
	y->reading = true;
	s->base.busy++;
	store_read(s->srv->st, s->srv->workers, sync_work, sync_done, j);
}

void imap_sel_sync(struct imap_session *s, void (*cont)(struct imap_session *s))
{
	struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;

	if (y == NULL) {
		cont(s);
		return;
	}
	y->cont = cont;
	if (!y->reading)
		sync_start(s);
	else
		y->dirty = true; /* the read in flight may predate our change */
}

void imap_sel_reported(struct imap_session *s, uint32_t uid, uint64_t modseq)
{
	struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;

	if (y == NULL)
		return;
	/* a pending update older than what the client was just shown would
	 * take its flags (and MODSEQ) back */
	struct flag_upd *f = y->n_fl > 0 ? fl_find(y, uid) : NULL;
	if (f != NULL && f->modseq <= modseq)
		x_free(&f->flags); /* skipped when sending */
	if (y->reading) {
		if (y->n_shown == y->cap_shown) {
			y->cap_shown = y->cap_shown ? y->cap_shown * 2 : 16;
			y->shown = xrealloc(y->shown, y->cap_shown * sizeof *y->shown);
		}
		y->shown[y->n_shown].uid = uid;
		y->shown[y->n_shown].modseq = modseq;
		y->n_shown++;
	}
}

void imap_sel_renamed(struct imap_session *s, const char *name)
{
	if (s->sel == NULL || s->sel->sync == NULL)
		return;
	free(s->sel->name);
	s->sel->name = xstrdup(name);
	if (s->sel->sub != NULL && s->srv != NULL)
		store_sub_rename(s->sel->sub, name);
	/* the subscription follows the mailbox (by id); the rename's own
	 * "deleted" notice comes right after this, in the same loop step */
	s->sel->sync->renamed = true;
}

void imap_sel_own_change(struct imap_session *s, uint64_t modseq)
{
	struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;

	if (y == NULL || modseq == 0)
		return;
	if (modseq > s->sel->highestmodseq)
		s->sel->highestmodseq = modseq;
	/* called once per message of a STORE, all of one MODSEQ: kept once
	 * (copies would push the earlier STOREs' out of own[]) */
	if (y->n_own > 0 && y->own[y->n_own - 1] == modseq)
		return;
	if (y->n_own == OWN_MAX) {
		memmove(y->own, y->own + 1, (OWN_MAX - 1) * sizeof *y->own);
		y->n_own--;
	}
	y->own[y->n_own++] = modseq;
	/* A MODSEQ is one transaction on this mailbox: ours coming right
	 * after what was read means nothing else changed in between, and
	 * its rows (all ours: skipped when read) need no reading. Without
	 * this, the next read after a STORE 1:* on 100,000 messages read
	 * them all back, in windows, before another session's new message
	 * reached IDLE (bench/bigbox: ~1.9 s). */
	if (!y->reading && y->scan_from == 0 && modseq == y->synced_modseq + 1)
		y->synced_modseq = modseq;
}

/* Sends "* VANISHED uids" (sorted). */
static void send_vanished(struct imap_session *s, const char *earlier, const uint32_t *uids,
			  size_t n)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "* VANISHED %s", earlier);
	imap_seqset_format(&b, uids, n);
	buf_appends(&b, "\r\n");
	imap_send(s, b.data, b.len);
	buf_free(&b);
}

/* Removes uids (sorted) from the view, telling the client. */
static void view_remove(struct imap_session *s, const uint32_t *uids, size_t n)
{
	struct imap_view *v = s->sel->view;
	uint32_t *seqs = xmalloc((n ? n : 1) * sizeof *seqs);
	uint32_t *vuids = xmalloc((n ? n : 1) * sizeof *vuids);
	size_t m = 0, w = 0, k = 0;

	imap_ctx_expunge(s, uids, n); /* RFC 5267 4.3: REMOVEFROM first (sort.c) */

	for (uint32_t i = 0; i < v->n; i++) {
		while (k < n && uids[k] < v->v[i])
			k++;
		if (k < n && uids[k] == v->v[i]) {
			seqs[m] = i + 1;
			vuids[m++] = v->v[i];
		} else {
			v->v[w++] = v->v[i];
		}
	}
	v->n = (uint32_t)w;
	if (m > 0) {
		if (s->qresync) {
			/* RFC 7162 3.2.10 */
			send_vanished(s, "", vuids, m);
		} else {
			/* RFC 9051 7.5.1: each EXPUNGE renumbers the messages
			 * after it; from the highest down, the numbers sent are
			 * the ones the client has */
			for (size_t i = m; i-- > 0;)
				imap_untagged(s, "%" PRIu32 " EXPUNGE", seqs[i]);
		}
	}
	free(seqs);
	free(vuids);
}

void imap_sel_expunged(struct imap_session *s, const uint32_t *uids, size_t n)
{
	if (s->sel == NULL)
		return;
	view_remove(s, uids, n);
}

void imap_send_updates(struct imap_session *s, bool expunges_allowed)
{
	struct imap_selsync *y;
	struct imap_view *v;

	if (s->sel == NULL || (y = s->sel->sync) == NULL || !imap_alive(s))
		return;
	if (s->cmd != NULL && strcmp(s->cmd->name, "LOGOUT") == 0)
		return; /* nothing after the BYE */
	v = s->sel->view;
	/* a new message expunged before it was announced is never announced */
	if (y->n_gone > 0 && y->n_new > 0) {
		size_t w = 0, wg = 0;
		for (size_t i = 0; i < y->n_new; i++)
			if (!uid_in(y->gone, y->n_gone, y->new_uids[i]))
				y->new_uids[w++] = y->new_uids[i];
		for (size_t i = 0; i < y->n_gone; i++)
			if (!uid_in(y->new_uids, y->n_new, y->gone[i]))
				y->gone[wg++] = y->gone[i];
		y->n_new = w;
		y->n_gone = wg;
	}
	if (expunges_allowed && y->n_gone > 0) {
		view_remove(s, y->gone, y->n_gone);
		/* UIDs not in the view: expunged before we knew them. A read in
		 * flight may still bring them as new: keep them until it ends. */
		if (!y->reading)
			y->n_gone = 0;
	}
	if (y->n_new > 0) {
		view_append(v, y->new_uids, y->n_new);
		s->sel->uidnext = y->known_uidnext;
		size_t n_new = y->n_new;
		y->n_new = 0;
		imap_untagged(s, "%" PRIu32 " EXISTS", v->n);
		imap_ctx_new(s, y->new_uids, n_new); /* RFC 5267 4.3 (sort.c) */
		if (s->notify != NULL) /* RFC 5465 5.2 fetch-att */
			imap_notify_new(s, v->v + v->n - n_new, n_new);
		if (!s->rev2) {
			uint32_t rc = recent_count(s);
			if (rc != y->recent_told) /* RFC 3501 7.3.2 */
				imap_untagged(s, "%" PRIu32 " RECENT", rc);
			y->recent_told = rc;
		}
	}
	for (size_t i = 0; i < y->n_fl; i++) {
		struct flag_upd *f = &y->fl[i];
		uint32_t seq = f->flags != NULL ? imap_view_seq(s, f->uid) : 0;
		if (seq != 0) {
			struct buf b = BUF_INIT;
			imap_sel_keywords(s, f->flags);
			buf_printf(&b, "* %" PRIu32 " FETCH (", seq);
			if (s->qresync || s->uid)
				buf_printf(&b, "UID %" PRIu32 " ", f->uid);
			buf_appends(&b, "FLAGS ");
			append_flags(&b, f->flags, imap_recent_in(y->recent, y->n_recent, f->uid));
			if (s->condstore)
				buf_printf(&b, " MODSEQ (%" PRIu64 ")", f->modseq);
			buf_appends(&b, ")\r\n");
			imap_send(s, b.data, b.len);
			buf_free(&b);
			imap_ctx_flags(s, f->uid, f->flags, f->modseq); /* sort.c */
		}
		free(f->flags);
	}
	y->n_fl = 0;
	imap_ctx_flush(s); /* RFC 5267 4.3: ADDTO/REMOVEFROM (sort.c) */
	update_pending(s);
	/* a pass in windows: the next one once these are out (bounded) */
	windows_next(s);
}

/* ---- selecting ---- */

static void sel_free(struct imap_session *s, struct imap_selected **selp)
{
	struct imap_selected *sel = *selp;
	struct imap_selsync *y;

	if (sel == NULL)
		return;
	if (s->srv != NULL)
		store_unsubscribe(s->srv->st, &sel->sub);
	if (s->job_drained == sel_drained)
		s->job_drained = NULL;
	view_free(&sel->view);
	imap_ctx_drop(s); /* sort.c */
	if ((y = sel->sync) != NULL) {
		for (size_t i = 0; i < y->n_fl; i++)
			free(y->fl[i].flags);
		free(y->fl);
		free(y->new_uids);
		free(y->gone);
		buf_free(&y->kw);
		free(y->recent);
		free(y->shown);
		free(y);
	}
	free(sel->saved);
	free(sel->name);
	x_free(selp);
}

/* CLOSE's expunge when the session does not wait for it (imap_unselect with
 * expunge_deleted_first): the \Deleted messages are read on a worker, then
 * expunged; nothing refers to the session. */
struct close_job {
	struct store *st;
	char *user, *mailbox;
	uint32_t uidvalidity;
	uint32_t *uids;
	size_t n, cap;
};

static int deleted_each(void *arg, const struct store_msg *m)
{
	struct close_job *j = arg;
	const char *kw;

	if (!(imap_flags_from_store(m->flags != NULL ? m->flags : "", &kw) & IMAP_F_DELETED))
		return 0;
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 16;
		j->uids = xrealloc(j->uids, j->cap * sizeof *j->uids);
	}
	j->uids[j->n++] = m->uid;
	return 0;
}

static int close_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct close_job *j = arg;
	return store_snap_messages(sn, j->user, j->mailbox, j->uidvalidity, NULL, 0, 0,
				   STORE_MSG_PLAIN, deleted_each, j, err_r) < 0
		   ? -1
		   : 0;
}

static void close_job_free(struct close_job *j)
{
	free(j->user);
	free(j->mailbox);
	free(j->uids);
	free(j);
}

static void close_expunged(void *arg, int result)
{
	close_job_free(arg);
}

static void close_read(void *arg, int result, const char *err)
{
	struct close_job *j = arg;

	if (result < 0 || j->n == 0) {
		close_job_free(j);
		return;
	}
	store_expunge(j->st, j->user, j->mailbox, j->uidvalidity, j->uids, j->n, close_expunged,
		      j);
}

void imap_unselect(struct imap_session *s, bool expunge_deleted_first)
{
	if (s->sel == NULL)
		return;
	if (expunge_deleted_first && !s->sel->readonly && s->srv != NULL) {
		struct close_job *j = xcalloc(1, sizeof *j);
		j->st = s->srv->st;
		j->user = xstrdup(s->user);
		j->mailbox = xstrdup(s->sel->name);
		j->uidvalidity = s->sel->uidvalidity;
		store_read(s->srv->st, s->srv->workers, close_work, close_read, j);
	}
	sel_free(s, &s->sel);
}

/* The load of a mailbox at SELECT, on a worker. */
struct load_job {
	struct imap_session *s;
	char *user, *mailbox;
	bool want_counts;
	struct store_mailbox mb;   /* name/special_use not kept */
	bool found;
	uint32_t first_unseen;     /* (want_counts) */
	struct imap_view *view;
	/* keywords in use (for FLAGS), space-separated, unique */
	struct buf kw;
	size_t n_kw;
	/* QRESYNC (RFC 7162 3.2.5) */
	bool qr;
	uint32_t qr_uidvalidity;
	uint64_t qr_modseq;
	struct store_uid_range *qr_ranges;
	size_t qr_n;
	struct imap_seqset qr_known;
	uint32_t *vanished;
	size_t n_van, cap_van;
	struct flag_upd *changed;
	size_t n_ch, cap_ch;
};

#define SEL_MAX_KEYWORDS 256

static void note_keywords(struct load_job *j, const char *flags)
{
	const char *kw = NULL;
	imap_flags_from_store(flags, &kw);
	while (kw != NULL && *kw != '\0' && j->n_kw < SEL_MAX_KEYWORDS) {
		const char *e = strchr(kw, ' ');
		size_t len = e != NULL ? (size_t)(e - kw) : strlen(kw);
		bool have = false;
		if (len > 0 && kw[0] != '\\') {
			const char *p = j->kw.data;
			while (p != NULL && *p != '\0') {
				const char *pe = strchr(p, ' ');
				size_t pl = pe != NULL ? (size_t)(pe - p) : strlen(p);
				if (pl == len && strncasecmp(p, kw, len) == 0) {
					have = true;
					break;
				}
				p = pe != NULL ? pe + 1 : NULL;
			}
			if (!have) {
				if (j->kw.len > 0)
					buf_appendc(&j->kw, ' ');
				buf_append(&j->kw, kw, len);
				j->n_kw++;
			}
		}
		kw = e != NULL ? e + 1 : NULL;
	}
}

/* Whether a stored flag list has \Seen (space-separated, store form). */
static bool flags_have_seen(const char *flags)
{
	for (const char *p = flags; (p = strstr(p, "\\Seen")) != NULL; p += 5)
		if ((p == flags || p[-1] == ' ') && (p[5] == '\0' || p[5] == ' '))
			return true;
	return false;
}

/* Whether a stored flag list has a keyword (a flag not starting with '\'). */
static bool flags_have_keyword(const char *flags)
{
	for (const char *p = flags; *p != '\0'; p++)
		if ((p == flags || p[-1] == ' ') && *p != '\\' && *p != ' ')
			return true;
	return false;
}

static int load_each(void *arg, uint32_t uid, uint64_t modseq, const char *flags)
{
	struct load_job *j = arg;

	view_append(j->view, &uid, 1);
	if (flags[0] != '\0' && flags_have_keyword(flags))
		note_keywords(j, flags);
	/* RFC 3501 7.1: [UNSEEN n], the first message without \Seen */
	if (j->want_counts && j->first_unseen == 0 && !flags_have_seen(flags))
		j->first_unseen = uid;
	if (j->qr && modseq > j->qr_modseq &&
	    (j->qr_known.n == 0 || imap_seqset_contains(&j->qr_known, uid))) {
		if (j->n_ch == j->cap_ch) {
			j->cap_ch = j->cap_ch ? j->cap_ch * 2 : 16;
			j->changed = xrealloc(j->changed, j->cap_ch * sizeof *j->changed);
		}
		j->changed[j->n_ch].uid = uid;
		j->changed[j->n_ch].modseq = modseq;
		j->changed[j->n_ch].flags = xstrdup(flags);
		j->n_ch++;
	}
	return 0;
}

static void load_vanished(void *arg, uint32_t uid)
{
	struct load_job *j = arg;
	if (j->n_van == j->cap_van) {
		j->cap_van = j->cap_van ? j->cap_van * 2 : 16;
		j->vanished = xrealloc(j->vanished, j->cap_van * sizeof *j->vanished);
	}
	j->vanished[j->n_van++] = uid;
}

/* One pass over the mailbox's entries (store_snap_entries: UID, MODSEQ,
 * flags; no message data): the view, the keywords, the first unseen. What a
 * command needs of a message beyond that is read when it runs (FETCH,
 * SEARCH read their slices), so the selected mailbox keeps 4 octets per
 * message. */
static int load_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct load_job *j = arg;
	int r = store_snap_entries(sn, j->user, j->mailbox, &j->mb.status, load_each, j, err_r);
	if (r == STORE_NONEXISTENT) {
		j->found = false;
		return 0;
	}
	if (r < 0)
		return -1;
	j->found = true;
	j->mb.first_unseen_uid = j->first_unseen;
	if (j->qr && j->qr_uidvalidity == j->mb.status.uidvalidity &&
	    store_snap_vanished(sn, j->user, j->mailbox, j->mb.status.uidvalidity, j->qr_modseq,
				j->qr_ranges, j->qr_n, load_vanished, j, err_r) < 0)
		return -1;
	return 0;
}

static void load_job_free(struct load_job *j)
{
	view_free(&j->view);
	buf_free(&j->kw);
	free(j->user);
	free(j->mailbox);
	free(j->qr_ranges);
	imap_seqset_free(&j->qr_known);
	free(j->vanished);
	for (size_t i = 0; i < j->n_ch; i++)
		free(j->changed[i].flags);
	free(j->changed);
	free(j);
}

static void load_done(void *arg, int result, const char *err)
{
	struct load_job *j = arg;
	struct imap_session *s = j->s;
	struct imap_selected *sel;
	bool examine = s->cmd != NULL && strcasecmp(s->cmd->name, "EXAMINE") == 0;
	struct buf b = BUF_INIT;

	if (!imap_alive(s) || s->sel == NULL) {
		load_job_free(j);
		session_release(&s->base);
		return;
	}
	session_release(&s->base);
	sel = s->sel;
	if (result < 0 || !j->found) {
		if (result < 0)
			log_err("imap %s: select: %s", s->base.ip, err != NULL ? err : "error");
		sel_free(s, &s->sel);
		if (result < 0)
			imap_tagged(s, "NO", "UNAVAILABLE", "Mailbox cannot be read now");
		else
			imap_tagged(s, "NO", "NONEXISTENT", "Mailbox does not exist");
		load_job_free(j);
		imap_cmd_done(s);
		return;
	}
	sel->view = j->view;
	j->view = NULL;
	/* what an idle session keeps: 4 octets per message, no slack */
	if (sel->view->cap > sel->view->n + 16) {
		sel->view->cap = sel->view->n + 16;
		sel->view->v = xrealloc(sel->view->v, sel->view->cap * sizeof *sel->view->v);
	}
	sel->uidvalidity = j->mb.status.uidvalidity;
	sel->uidnext = j->mb.status.uidnext;
	sel->highestmodseq = j->mb.status.highestmodseq;
	sel->sync->synced_modseq = sel->highestmodseq;
	sel->sync->known_uidnext = sel->uidnext;
	if (sel->view->n > 0 && sel->view->v[sel->view->n - 1] >= sel->sync->known_uidnext)
		sel->sync->known_uidnext = sel->view->v[sel->view->n - 1] + 1;
	if (j->kw.len > 0)
		buf_append(&sel->sync->kw, j->kw.data, j->kw.len);
	/* \Recent: what nobody claimed yet; SELECT claims it, EXAMINE does not */
	/* IMAP4rev2 has no \Recent (RFC 9051 E.): such a session neither
	 * shows nor claims it */
	sel->sync->rt = s->rev2 ? NULL : recent_get(s->user, sel->name, sel->uidvalidity);
	if (sel->sync->rt != NULL && sel->sync->known_uidnext > sel->sync->rt->from) {
		recent_add(sel->sync, sel->sync->rt->from, sel->sync->known_uidnext - 1);
		if (!examine)
			sel->sync->rt->from = sel->sync->known_uidnext;
	}
	sel->sync->recent_told = recent_count(s);

	/* RFC 9051 6.3.2 (and RFC 3501 6.3.1 for rev1) */
	buf_appends(&b, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	if (j->kw.len > 0)
		buf_printf(&b, " %s", j->kw.data);
	buf_appends(&b, ")\r\n");
	imap_send(s, b.data, b.len);
	imap_untagged(s, "%" PRIu32 " EXISTS", sel->view->n);
	if (!s->rev2) {
		imap_untagged(s, "%" PRIu32 " RECENT", sel->sync->recent_told);
		if (j->mb.first_unseen_uid != 0) {
			uint32_t seq = imap_view_seq(s, j->mb.first_unseen_uid);
			if (seq != 0)
				imap_untagged(s, "OK [UNSEEN %" PRIu32 "] First unseen", seq);
		}
	}
	imap_untagged(s, "OK [UIDVALIDITY %" PRIu32 "] UIDs valid", sel->uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %" PRIu32 "] Predicted next UID", sel->uidnext);
	/* RFC 8474 4.3: the MAILBOXID in SELECT/EXAMINE (fetch.h: the id) */
	imap_untagged(s, "OK [MAILBOXID (" IMAP_MAILBOXID_FMT ")] Ok", sel->uidvalidity);
	buf_reset(&b);
	if (examine) {
		buf_appends(&b, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
	} else {
		buf_appends(&b, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
		if (j->kw.len > 0)
			buf_printf(&b, " %s", j->kw.data);
		buf_appends(&b, " \\*)] Flags permitted\r\n");
	}
	imap_send(s, b.data, b.len);
	/* RFC 7162 3.1.2.1: a server with persistent mod-sequences sends
	 * HIGHESTMODSEQ on every successful SELECT/EXAMINE */
	imap_untagged(s, "OK [HIGHESTMODSEQ %" PRIu64 "] Highest", sel->highestmodseq);
	if (j->qr && j->qr_uidvalidity == sel->uidvalidity) {
		/* RFC 7162 3.2.5.1: VANISHED (EARLIER) then the changes */
		if (j->n_van > 0)
			send_vanished(s, "(EARLIER) ", j->vanished, j->n_van);
		for (size_t i = 0; i < j->n_ch; i++) {
			uint32_t seq = imap_view_seq(s, j->changed[i].uid);
			if (seq == 0)
				continue;
			buf_reset(&b);
			buf_printf(&b, "* %" PRIu32 " FETCH (UID %" PRIu32 " FLAGS ", seq,
				   j->changed[i].uid);
			append_flags(&b, j->changed[i].flags,
				     imap_recent_in(sel->sync->recent, sel->sync->n_recent,
						    j->changed[i].uid));
			buf_printf(&b, " MODSEQ (%" PRIu64 "))\r\n", j->changed[i].modseq);
			imap_send(s, b.data, b.len);
		}
	}
	buf_free(&b);
	load_job_free(j);
	if (examine)
		imap_tagged(s, "OK", "READ-ONLY", "EXAMINE completed");
	else
		imap_tagged(s, "OK", "READ-WRITE", "SELECT completed");
	imap_cmd_done(s);
}

/* Parses "(QRESYNC (uidvalidity modseq [known-uids [seq-match-data]]))" or
 * "(CONDSTORE)". 0 or -1 (BAD). */
static int select_params(struct imap_session *s, const struct imap_arg *a, struct load_job *j,
			 const char **err_r)
{
	for (const struct imap_arg *p = a->list; p->type != IMAP_ARG_EOL; p++) {
		if (imap_arg_atom_is(p, "CONDSTORE")) {
			s->condstore = true; /* RFC 7162 3.1.8 */
			continue;
		}
		if (!imap_arg_atom_is(p, "QRESYNC")) {
			*err_r = "Unknown SELECT parameter";
			return -1;
		}
		/* RFC 7162 3.2.5: only after ENABLE QRESYNC */
		if (!s->qresync) {
			*err_r = "QRESYNC not enabled";
			return -1;
		}
		p++;
		if (p->type != IMAP_ARG_LIST) {
			*err_r = "Invalid QRESYNC parameter";
			return -1;
		}
		const struct imap_arg *q = p->list;
		uint64_t mod;
		if (!imap_arg_number(&q[0], &j->qr_uidvalidity) || j->qr_uidvalidity == 0 ||
		    q[1].type == IMAP_ARG_EOL || !imap_arg_number64(&q[1], &mod)) {
			*err_r = "Invalid QRESYNC parameter";
			return -1;
		}
		j->qr = true;
		j->qr_modseq = mod;
		if (q[2].type != IMAP_ARG_EOL) {
			if (q[2].type != IMAP_ARG_ATOM ||
			    imap_seqset_parse(q[2].str, q[2].len, 10000, &j->qr_known) < 0 ||
			    j->qr_known.dollar) {
				*err_r = "Invalid known-uids";
				return -1;
			}
			imap_seqset_resolve(&j->qr_known, UINT32_MAX - 1);
			j->qr_ranges = xmalloc((j->qr_known.n ? j->qr_known.n : 1) *
					       sizeof *j->qr_ranges);
			for (size_t i = 0; i < j->qr_known.n; i++) {
				j->qr_ranges[i].lo = j->qr_known.v[i].lo;
				j->qr_ranges[i].hi = j->qr_known.v[i].hi;
			}
			j->qr_n = j->qr_known.n;
			/* q[3], the sequence match data, is optional help for
			 * the server (3.2.5.2); the known-uids range is exact */
			if (q[3].type != IMAP_ARG_EOL &&
			    (q[3].type != IMAP_ARG_LIST || q[4].type != IMAP_ARG_EOL)) {
				*err_r = "Invalid QRESYNC parameter";
				return -1;
			}
		}
		s->condstore = true;
	}
	return 0;
}

void imap_cmd_select(struct imap_session *s, const struct imap_arg *args)
{
	bool examine = strcasecmp(s->cmd->name, "EXAMINE") == 0;
	const char *err = NULL;
	char *name;
	struct load_job *j;
	char *serr = NULL;

	if (args[0].type == IMAP_ARG_EOL ||
	    (args[1].type != IMAP_ARG_EOL &&
	     (args[1].type != IMAP_ARG_LIST || args[2].type != IMAP_ARG_EOL))) {
		imap_tagged(s, "BAD", NULL, "Invalid arguments");
		return;
	}
	name = imap_mailbox_arg(s, &args[0]);
	if (name == NULL)
		return; /* answered */
	j = xcalloc(1, sizeof *j);
	if (args[1].type == IMAP_ARG_LIST && select_params(s, &args[1], j, &err) < 0) {
		imap_tagged(s, "BAD", NULL, "%s", err);
		free(name);
		load_job_free(j);
		return;
	}
	/* RFC 9051 6.3.2: a SELECT first deselects, even if it then fails;
	 * CLOSED tells a client that follows it (RFC 7162 3.2.11) */
	if (s->sel != NULL) {
		imap_unselect(s, false);
		if (s->rev2 || s->qresync)
			imap_untagged(s, "OK [CLOSED] Previous mailbox closed");
	}
	s->sel = xcalloc(1, sizeof *s->sel);
	s->sel->name = name;
	s->sel->readonly = examine;
	s->sel->sync = xcalloc(1, sizeof *s->sel->sync);
	s->sel->sync->id = next_sel_id++;
	s->sel->sub = store_subscribe(s->srv->st, s->user, name, on_change, s, &serr);
	if (s->sel->sub == NULL) {
		free(serr);
		sel_free(s, &s->sel);
		load_job_free(j);
		imap_tagged(s, "NO", "NONEXISTENT", "Mailbox does not exist");
		return;
	}
	j->s = s;
	j->user = xstrdup(s->user);
	j->mailbox = xstrdup(name);
	j->want_counts = !s->rev2;
	j->view = xcalloc(1, sizeof *j->view);
	session_park(&s->base);
	s->base.busy++;
	store_read(s->srv->st, s->srv->workers, load_work, load_done, j);
}

/* ---- CLOSE, UNSELECT, CHECK, NOOP ---- */

struct closecmd {
	struct imap_session *s;
	uint64_t sel_id;
	char *user, *mailbox;
	uint32_t uidvalidity;
	uint32_t *uids;
	size_t n, cap;
};

static void closecmd_free(struct closecmd *c)
{
	free(c->user);
	free(c->mailbox);
	free(c->uids);
	free(c);
}

static void closecmd_finish(struct imap_session *s, struct closecmd *c)
{
	closecmd_free(c);
	/* RFC 9051 6.4.1: no untagged EXPUNGE for CLOSE */
	sel_free(s, &s->sel);
	imap_tagged(s, "OK", NULL, "CLOSE completed");
	imap_cmd_done(s);
}

static void closecmd_expunged(void *arg, int result)
{
	struct closecmd *c = arg;
	struct imap_session *s = c->s;

	if (session_release(&s->base)) {
		closecmd_free(c);
		return;
	}
	if (!imap_alive(s)) {
		closecmd_free(c);
		return;
	}
	closecmd_finish(s, c);
}

static int closecmd_each(void *arg, const struct store_msg *m)
{
	struct closecmd *c = arg;
	const char *kw;

	if (!(imap_flags_from_store(m->flags != NULL ? m->flags : "", &kw) & IMAP_F_DELETED))
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->uids = xrealloc(c->uids, c->cap * sizeof *c->uids);
	}
	c->uids[c->n++] = m->uid;
	return 0;
}

static int closecmd_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct closecmd *c = arg;
	return store_snap_messages(sn, c->user, c->mailbox, c->uidvalidity, NULL, 0, 0,
				   STORE_MSG_PLAIN, closecmd_each, c, err_r) < 0
		   ? -1
		   : 0;
}

static void closecmd_read(void *arg, int result, const char *err)
{
	struct closecmd *c = arg;
	struct imap_session *s = c->s;

	if (!imap_alive(s)) {
		closecmd_free(c);
		session_release(&s->base);
		return;
	}
	if (result < 0 || c->n == 0) {
		session_release(&s->base);
		closecmd_finish(s, c);
		return;
	}
	/* the hold on s passes to the expunge */
	store_expunge(s->srv->st, c->user, c->mailbox, c->uidvalidity, c->uids, c->n,
		      closecmd_expunged, c);
}

void imap_cmd_close(struct imap_session *s, const struct imap_arg *args)
{
	struct closecmd *c;

	if (args[0].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "CLOSE takes no arguments");
		return;
	}
	if (s->sel->readonly) {
		/* RFC 9051 6.4.1: EXAMINE: nothing is expunged */
		sel_free(s, &s->sel);
		imap_tagged(s, "OK", NULL, "CLOSE completed");
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->s = s;
	c->sel_id = s->sel->sync->id;
	c->user = xstrdup(s->user);
	c->mailbox = xstrdup(s->sel->name);
	c->uidvalidity = s->sel->uidvalidity;
	session_park(&s->base);
	s->base.busy++;
	store_read(s->srv->st, s->srv->workers, closecmd_work, closecmd_read, c);
}

void imap_cmd_unselect(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "UNSELECT takes no arguments");
		return;
	}
	/* RFC 3691 */
	sel_free(s, &s->sel);
	imap_tagged(s, "OK", NULL, "UNSELECT completed");
}

static void check_cont(struct imap_session *s)
{
	imap_tagged(s, "OK", NULL, "%s completed", s->cmd != NULL ? s->cmd->name : "NOOP");
	imap_cmd_done(s);
}

/* True if a change was announced and is not read yet, or a pass in
 * windows is not over (its first window read between commands, the rest
 * waiting for the client: scan_from). */
static bool sync_needed(const struct imap_session *s)
{
	const struct imap_selsync *y = s->sel != NULL ? s->sel->sync : NULL;
	return y != NULL && (y->dirty || y->reading || y->scan_from != 0);
}

void imap_cmd_check(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "CHECK takes no arguments");
		return;
	}
	/* RFC 3501 6.4.1: everything is durable already; a chance for the
	 * updates, as NOOP */
	if (!sync_needed(s)) {
		imap_tagged(s, "OK", NULL, "CHECK completed");
		return;
	}
	session_park(&s->base);
	imap_sel_sync(s, check_cont);
}

void imap_selected_noop(struct imap_session *s)
{
	/* RFC 9051 6.1.2: NOOP is how a client polls: the changes announced
	 * so far are read first, so that the tagged OK follows them (the
	 * caller answers when we did not park) */
	if (!sync_needed(s))
		return;
	session_park(&s->base);
	imap_sel_sync(s, check_cont);
}

void imap_enable_condstore(struct imap_session *s)
{
	if (s->condstore)
		return;
	s->condstore = true;
	if (s->sel != NULL)
		imap_untagged(s, "OK [HIGHESTMODSEQ %" PRIu64 "] Highest", s->sel->highestmodseq);
}
