/* NOTIFY (RFC 5465): NOTIFY NONE, NOTIFY SET [STATUS] (filter events)...
 *
 * The selected mailbox keeps select.c's machinery (its store subscription,
 * the view, EXISTS / EXPUNGE / FETCH); NOTIFY only lets those updates out
 * while the session sits between commands (RFC 5465 3: "at any time", not
 * only in IDLE), through imap_notify_selected(): SELECTED-DELAYED holds the
 * expunges back for a command that allows them (RFC 5465 6.1).
 *
 * The other mailboxes: one per-user store subscription
 * (store_subscribe_user) marks the state dirty on every committed change of
 * the user; one read on a worker (store_snap_mailboxes: name, subscription,
 * UIDVALIDITY, UIDNEXT, MESSAGES, HIGHESTMODSEQ per mailbox; no message
 * rows) is compared with the state told last, which coalesces any number of
 * changes into one STATUS per mailbox (RFC 5465 5.2) and LIST responses for
 * created, deleted and renamed mailboxes (5.4) and subscription changes
 * (5.5). A read runs once at a time; the result goes out only while the
 * session is between commands (else the read is done again once it is), so
 * nothing queues but the per-mailbox state: memory is one entry per mailbox
 * of the user (bounded by max_mailboxes_per_user). A batch of more than
 * NOTIFY_MAX_BATCH mailbox responses is refused as [NOTIFICATIONOVERFLOW]
 * and NOTIFY is off then (RFC 5465 5.8: the client re-syncs with LIST and
 * STATUS).
 *
 * Not supported: AnnotationChange, MailboxMetadataChange,
 * ServerMetadataChange ([BADEVENT], RFC 5465 5.3, 5.6, 5.7).
 *
 * MessageNew's fetch-att list (RFC 5465 5.2): after the EXISTS of new
 * messages in the selected mailbox, their FETCH responses, read and
 * formatted on a worker (fetch.h's formatter); at most NOTIFY_FETCH_MAX
 * messages per announcement, NOTIFY_FETCH_BYTES of response per message and
 * NOTIFY_FETCH_TOTAL per announcement (the items are meant to be small:
 * headers, flags; a bigger one is left to the client's own FETCH). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"
#include "store/store.h"

#define NOTIFY_MAX_FILTERS 64
#define NOTIFY_MAX_NAMES 1000 /* mailboxes named in one NOTIFY */
#define NOTIFY_MAX_BATCH 200  /* mailbox responses at once; more: overflow */
#define NOTIFY_FETCH_MAX 100  /* new messages FETCHed per announcement */
#define NOTIFY_FETCH_BYTES (256 * 1024) /* per message's FETCH response */
#define NOTIFY_FETCH_TOTAL (1024 * 1024) /* an announcement's FETCHes together */
#define NOTIFY_FETCH_HELD 4   /* announcements' FETCHes held during a command */

struct nfetch;
static void nfetch_free(struct nfetch *j);
struct imap_session;
static bool can_send(const struct imap_session *s);
static void nfetch_send(struct imap_session *s, struct nfetch *j);

enum {
	EV_NEW = 0x01,
	EV_EXPUNGE = 0x02,
	EV_FLAGS = 0x04,
	EV_NAME = 0x08,
	EV_SUBS = 0x10,
};

enum nfilter_type {
	NF_SELECTED,
	NF_SELECTED_DELAYED,
	NF_PERSONAL,
	NF_INBOXES,
	NF_SUBSCRIBED,
	NF_SUBTREE,
	NF_MAILBOXES,
};

struct nfilter {
	enum nfilter_type type;
	unsigned events;
	char **names; /* SUBTREE, MAILBOXES (UTF-8, INBOX normalised) */
	size_t n;
};

struct mbent {
	char *name;
	bool subscribed;
	struct store_mailbox_status st;
};

/* MessageNew's fetch-att list, shared with the reads in flight (the
 * formatter only reads it); released on the loop thread. */
struct fetch_items {
	unsigned refs;
	struct imap_fetch f;
};

static void items_release(struct fetch_items **ip)
{
	struct fetch_items *it = *ip;
	*ip = NULL;
	if (it != NULL && --it->refs == 0) {
		imap_fetch_free(&it->f);
		free(it);
	}
}

struct imap_notify {
	uint64_t gen;
	struct nfilter *f;
	size_t n_f;
	bool status;         /* NOTIFY SET STATUS (only at the SET itself) */
	/* the selected mailbox's events (SELECTED or SELECTED-DELAYED) */
	bool have_sel;
	bool sel_delayed;
	unsigned sel_events;
	struct fetch_items *items; /* MessageNew's fetch-att list, or NULL */
	/* FETCH responses read while a command ran (struct nfetch) */
	struct nfetch *held[NOTIFY_FETCH_HELD];
	size_t n_held;
	struct store_sub *sub;
	struct mbent *mb;    /* the state told last, sorted by name */
	size_t n_mb;
	bool reading;        /* a read is in flight (it holds busy) */
	bool dirty;          /* a change since the read began */
	bool due;            /* read while a command ran: read again when idle */
};

static uint64_t next_gen = 1;

static void nfilters_free(struct nfilter *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < f[i].n; k++)
			free(f[i].names[k]);
		free(f[i].names);
	}
	free(f);
}

static void mb_free(struct mbent *mb, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(mb[i].name);
	free(mb);
}

static void state_free(struct imap_notify **np, struct store *st)
{
	struct imap_notify *n = *np;

	if (n == NULL)
		return;
	if (st != NULL)
		store_unsubscribe(st, &n->sub);
	nfilters_free(n->f, n->n_f);
	items_release(&n->items);
	for (size_t i = 0; i < n->n_held; i++)
		nfetch_free(n->held[i]);
	mb_free(n->mb, n->n_mb);
	x_free(np);
}

static void notify_free(struct imap_session *s)
{
	state_free(&s->notify, s->srv != NULL ? s->srv->st : NULL);
}

void imap_notify_free(struct imap_session *s)
{
	notify_free(s);
}

/* ---- which events apply to a mailbox ---- */

static bool is_selected(const struct imap_session *s, const char *name)
{
	return s->sel != NULL && s->sel->name != NULL && strcmp(s->sel->name, name) == 0;
}

/* The events of the filters naming mailbox e (RFC 5465 6: the union of
 * the filters that match; SELECTED is the selected mailbox's alone). */
static unsigned events_for(const struct imap_notify *n, const char *name, bool subscribed)
{
	unsigned ev = 0;

	for (size_t i = 0; i < n->n_f; i++) {
		const struct nfilter *f = &n->f[i];
		bool m = false;
		switch (f->type) {
		case NF_SELECTED:
		case NF_SELECTED_DELAYED:
			break;
		case NF_PERSONAL:
			m = true; /* one namespace: every mailbox of the user */
			break;
		case NF_INBOXES:
			/* RFC 5465 6: where an MDA delivers: INBOX (deliveries
			 * filed elsewhere are a later feature) */
			m = strcmp(name, "INBOX") == 0;
			break;
		case NF_SUBSCRIBED:
			m = subscribed;
			break;
		case NF_SUBTREE:
			for (size_t k = 0; k < f->n && !m; k++) {
				size_t l = strlen(f->names[k]);
				m = strncmp(name, f->names[k], l) == 0 &&
				    (name[l] == '\0' || name[l] == '/');
			}
			break;
		case NF_MAILBOXES:
			for (size_t k = 0; k < f->n && !m; k++)
				m = strcmp(name, f->names[k]) == 0;
			break;
		}
		if (m)
			ev |= f->events;
	}
	return ev;
}

int imap_notify_selected(const struct imap_session *s)
{
	const struct imap_notify *n = s->notify;
	unsigned ev;

	if (n == NULL || s->sel == NULL)
		return 0;
	ev = n->have_sel ? n->sel_events : events_for(n, s->sel->name, false);
	if ((ev & (EV_NEW | EV_EXPUNGE | EV_FLAGS)) == 0)
		return 0;
	return n->have_sel && n->sel_delayed ? 2 : 1;
}

/* ---- responses ---- */

/* "* STATUS name (...)" for the events ev that happened (RFC 5465 5.2:
 * MessageNew: MESSAGES UIDNEXT UIDVALIDITY; MessageExpunge: MESSAGES;
 * FlagChange: UIDVALIDITY HIGHESTMODSEQ, the only way a flag change of a
 * mailbox not selected shows, as Dovecot sends it; with CONDSTORE every
 * STATUS carries HIGHESTMODSEQ). Nothing if no item. */
static void append_status(const struct imap_session *s, struct buf *b, const char *name,
			  const struct store_mailbox_status *st, unsigned ev)
{
	bool messages = ev & (EV_NEW | EV_EXPUNGE);
	bool uidnext = ev & EV_NEW;
	bool uidvalidity = ev & (EV_NEW | EV_FLAGS);
	bool modseq = (ev & EV_FLAGS) || (s->condstore && (ev & (EV_NEW | EV_EXPUNGE)));
	const char *sp = "";

	if (!messages && !uidnext && !uidvalidity && !modseq)
		return;
	buf_appends(b, "* STATUS ");
	imap_append_mailbox(s, b, name);
	buf_appends(b, " (");
	if (messages) {
		buf_printf(b, "MESSAGES %" PRIu32, st->messages);
		sp = " ";
	}
	if (uidnext) {
		buf_printf(b, "%sUIDNEXT %" PRIu32, sp, st->uidnext);
		sp = " ";
	}
	if (uidvalidity) {
		buf_printf(b, "%sUIDVALIDITY %" PRIu32, sp, st->uidvalidity);
		sp = " ";
	}
	if (modseq)
		buf_printf(b, "%sHIGHESTMODSEQ %" PRIu64, sp, st->highestmodseq);
	buf_appends(b, ")\r\n");
}

/* "* LIST (attrs) "/" name [("OLDNAME" (old))]" (RFC 5465 5.4, RFC 5258). */
static void append_list(const struct imap_session *s, struct buf *b, const char *attrs,
			const char *name, const char *oldname)
{
	buf_printf(b, "* LIST (%s) \"/\" ", attrs);
	imap_append_mailbox(s, b, name);
	if (oldname != NULL) {
		buf_appends(b, " (\"OLDNAME\" (");
		imap_append_mailbox(s, b, oldname);
		buf_appends(b, "))");
	}
	buf_appends(b, "\r\n");
}

static int cmp_mbent(const void *a, const void *b)
{
	return strcmp(((const struct mbent *)a)->name, ((const struct mbent *)b)->name);
}

static const struct mbent *mb_find(const struct mbent *v, size_t n, const char *name)
{
	struct mbent key = {.name = (char *)name};
	return n > 0 ? bsearch(&key, v, n, sizeof *v, cmp_mbent) : NULL;
}

/* The responses that tell the change from the old state to nw; returns
 * how many. */
static size_t diff(const struct imap_session *s, const struct imap_notify *n,
		   const struct mbent *nw, size_t n_nw, struct buf *b)
{
	size_t count = 0;

	/* gone: deleted, or renamed (a new name with the same UIDVALIDITY,
	 * RENAME keeps it: RFC 9051 6.3.6) */
	for (size_t i = 0; i < n->n_mb; i++) {
		const struct mbent *o = &n->mb[i];
		if (mb_find(nw, n_nw, o->name) != NULL)
			continue;
		bool renamed = false;
		for (size_t k = 0; k < n_nw && !renamed; k++)
			renamed = nw[k].st.uidvalidity == o->st.uidvalidity &&
				  mb_find(n->mb, n->n_mb, nw[k].name) == NULL;
		if (renamed)
			continue; /* told with the new name */
		if (events_for(n, o->name, o->subscribed) & EV_NAME) {
			append_list(s, b, "\\NonExistent", o->name, NULL);
			count++;
		}
	}
	for (size_t k = 0; k < n_nw; k++) {
		const struct mbent *e = &nw[k];
		const struct mbent *o = mb_find(n->mb, n->n_mb, e->name);
		unsigned ev = events_for(n, e->name, e->subscribed);
		if (o == NULL) {
			const char *old = NULL;
			for (size_t i = 0; i < n->n_mb && old == NULL; i++)
				if (n->mb[i].st.uidvalidity == e->st.uidvalidity &&
				    mb_find(nw, n_nw, n->mb[i].name) == NULL)
					old = n->mb[i].name;
			if (old != NULL)
				ev |= events_for(n, old, false);
			if (ev & EV_NAME) {
				append_list(s, b, e->subscribed && (ev & EV_SUBS) ? "\\Subscribed" : "",
					    e->name, old);
				count++;
			}
			continue;
		}
		if (o->subscribed != e->subscribed && (ev & EV_SUBS)) {
			/* RFC 5465 5.5: LIST with the mailbox's attributes */
			append_list(s, b, e->subscribed ? "\\Subscribed" : "", e->name, NULL);
			count++;
		}
		if (is_selected(s, e->name))
			continue; /* select.c tells it */
		unsigned hit = 0;
		if (o->st.uidvalidity != e->st.uidvalidity) {
			hit = EV_NEW | EV_EXPUNGE | EV_FLAGS;
		} else {
			uint32_t added = e->st.uidnext - o->st.uidnext;
			if (added > 0)
				hit |= EV_NEW;
			if ((uint64_t)o->st.messages + added > e->st.messages)
				hit |= EV_EXPUNGE;
			if (hit == 0 && e->st.highestmodseq != o->st.highestmodseq)
				hit |= EV_FLAGS;
		}
		size_t before = b->len;
		append_status(s, b, e->name, &e->st, hit & ev);
		if (b->len != before)
			count++;
	}
	return count;
}

/* ---- the read ---- */

struct nread {
	struct imap_session *s;
	uint64_t gen;
	char *user;
	bool initial;        /* the NOTIFY SET command waits for it */
	struct mbent *mb;
	size_t n, cap;
};

static void nread_free(struct nread *j)
{
	mb_free(j->mb, j->n);
	free(j->user);
	free(j);
}

static void nread_each(void *arg, const struct store_mailbox *m)
{
	struct nread *j = arg;
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 16;
		j->mb = xrealloc(j->mb, j->cap * sizeof *j->mb);
	}
	j->mb[j->n].name = xstrdup(m->name);
	j->mb[j->n].subscribed = m->subscribed;
	j->mb[j->n].st = m->status;
	j->n++;
}

static int nread_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct nread *j = arg;
	int r = store_snap_mailboxes(sn, j->user, false, nread_each, j, err_r);
	if (r < 0)
		return -1;
	if (j->n > 1)
		qsort(j->mb, j->n, sizeof *j->mb, cmp_mbent);
	return 0;
}

static void read_start(struct imap_session *s, bool initial);

/* Between commands (or in IDLE): nothing being read or run, output
 * drained. */
static bool can_send(const struct imap_session *s)
{
	return imap_session_alive(s) && (s->input == IMAP_IN_CMD || s->input == IMAP_IN_IDLE) &&
	       s->base.phase == SESSION_OPEN && s->job == NULL && !s->logout &&
	       session_output_room(&s->base);
}

static void overflow(struct imap_session *s)
{
	/* RFC 5465 5.8: then as NOTIFY NONE */
	imap_untagged(s, "OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is off");
	log_info("imap %s: notify overflow user=%s", s->base.ip, s->user);
	notify_free(s);
}

static void take_state(struct imap_notify *n, struct nread *j)
{
	mb_free(n->mb, n->n_mb);
	n->mb = j->mb;
	n->n_mb = j->n;
	j->mb = NULL;
	j->n = 0;
}

static void initial_done(struct imap_session *s, struct nread *j, int result)
{
	struct imap_notify *n = s->notify;

	if (result < 0) {
		notify_free(s);
		imap_tagged(s, "NO", "UNAVAILABLE", "Mailboxes cannot be read now");
		imap_cmd_done(s);
		return;
	}
	if (n->status) {
		/* RFC 5465 3.1 (STATUS indicator): the state of every
		 * non-selected mailbox the events name, now */
		struct buf b = BUF_INIT;
		for (size_t i = 0; i < j->n; i++) {
			if (is_selected(s, j->mb[i].name))
				continue;
			unsigned ev = events_for(n, j->mb[i].name, j->mb[i].subscribed);
			append_status(s, &b, j->mb[i].name, &j->mb[i].st, ev);
		}
		if (b.len > 0)
			imap_send(s, b.data, b.len);
		buf_free(&b);
		n->status = false;
	}
	take_state(n, j);
	/* a change during the read: read again once the command is over */
	if (n->dirty)
		n->due = true;
	imap_tagged(s, "OK", NULL, "NOTIFY completed");
	imap_cmd_done(s);
}

static void nread_done(void *arg, int result, const char *err)
{
	struct nread *j = arg;
	struct imap_session *s = j->s;
	struct imap_notify *n = s->notify;

	if (session_release(&s->base) || !imap_session_alive(s)) {
		nread_free(j);
		return;
	}
	if (n == NULL || n->gen != j->gen) {
		/* NOTIFY NONE or another SET meanwhile */
		nread_free(j);
		return;
	}
	n->reading = false;
	if (result < 0)
		log_warn("imap %s: notify read: %s", s->base.ip, err != NULL ? err : "error");
	if (j->initial) {
		initial_done(s, j, result);
		nread_free(j);
		return;
	}
	if (result < 0) {
		nread_free(j);
		return;
	}
	if (!can_send(s)) {
		/* a command runs: read again once it is over (imap_notify_idle) */
		n->due = true;
		nread_free(j);
		return;
	}
	struct buf b = BUF_INIT;
	size_t count = diff(s, n, j->mb, j->n, &b);
	if (count > NOTIFY_MAX_BATCH) {
		buf_free(&b);
		nread_free(j);
		overflow(s);
		return;
	}
	if (b.len > 0)
		imap_send(s, b.data, b.len);
	buf_free(&b);
	take_state(n, j);
	nread_free(j);
	if (n->dirty)
		read_start(s, false);
}

static void read_start(struct imap_session *s, bool initial)
{
	struct imap_notify *n = s->notify;
	struct nread *j;

	if (s->srv == NULL)
		return;
	j = xcalloc(1, sizeof *j);
	j->s = s;
	j->gen = n->gen;
	j->user = xstrdup(s->user);
	j->initial = initial;
	n->reading = true;
	n->dirty = false;
	n->due = false;
	s->base.busy++;
	store_read(s->srv->st, s->srv->workers, nread_work, nread_done, j);
}

static void on_user_change(void *arg, const struct store_change *ch)
{
	struct imap_session *s = arg;
	struct imap_notify *n = s->notify;

	(void)ch;
	if (n == NULL)
		return;
	if (n->reading) {
		n->dirty = true;
		return;
	}
	if (!imap_session_alive(s))
		return;
	read_start(s, false);
}

void imap_notify_idle(struct imap_session *s)
{
	struct imap_notify *n = s->notify;

	if (n == NULL || !can_send(s))
		return;
	/* the selected mailbox's updates held during a command */
	if (s->sel != NULL && s->sel->pending) {
		int push = imap_notify_selected(s);
		if (push != 0)
			imap_send_updates(s, push == 1);
		if (s->notify == NULL)
			return;
	}
	while (n->n_held > 0 && can_send(s)) {
		struct nfetch *j = n->held[0];
		memmove(n->held, n->held + 1, (n->n_held - 1) * sizeof *n->held);
		n->n_held--;
		nfetch_send(s, j);
	}
	if (n->due && !n->reading)
		read_start(s, false);
}

/* ---- MessageNew's fetch-att (RFC 5465 5.2) ---- */

struct nfetch {
	struct imap_session *s;
	uint64_t gen;
	char *user, *mailbox;
	uint32_t uidvalidity;
	struct fetch_items *items; /* a reference */
	struct imap_fetch_opts opts;
	uint32_t *uids;           /* sorted */
	uint32_t *seqs;           /* their sequence numbers when asked */
	size_t n;
	struct store_uid_range *recent; /* \Recent (select.c), as FETCH */
	size_t n_recent;
	struct store_snap *sn;    /* during the work */
	struct imap_blob blob;
	struct buf out;           /* the responses, flat */
	struct imap_fetch_out fo;
};

static void nfetch_free(struct nfetch *j)
{
	items_release(&j->items);
	imap_fetch_out_free(&j->fo);
	imap_blob_free(&j->blob);
	buf_free(&j->out);
	free(j->user);
	free(j->mailbox);
	free(j->uids);
	free(j->seqs);
	free(j->recent);
	free(j);
}

static void nfetch_segments(struct nfetch *j, const struct imap_msg *m)
{
	for (size_t i = 0; i < j->fo.n_segs; i++) {
		const struct imap_seg *g = &j->fo.segs[i];
		if (g->kind == IMAP_SEG_BYTES) {
			buf_append(&j->out, j->fo.bytes.data + g->off, g->len);
		} else if (m->msg != NULL && g->off + g->len <= m->len) {
			if (g->kind == IMAP_SEG_BLOB) {
				buf_append(&j->out, m->msg + g->off, g->len);
			} else {
				struct imap_decoder d;
				imap_decoder_init(&d, g->enc, g->skip, g->out_len);
				imap_decoder_feed(&d, m->msg + g->off, g->len, &j->out);
				imap_decoder_finish(&d, &j->out);
			}
		}
	}
}

static uint64_t nfetch_size(const struct imap_fetch_out *fo)
{
	uint64_t n = 0;
	for (size_t i = 0; i < fo->n_segs; i++)
		n += fo->segs[i].kind == IMAP_SEG_DECODE ? fo->segs[i].out_len : fo->segs[i].len;
	return n;
}

static int nfetch_each(void *arg, const struct store_msg *sm)
{
	struct nfetch *j = arg;
	struct imap_msg m;
	struct mime_cache mc;
	struct buf cache = BUF_INIT;
	size_t k = 0;

	while (k < j->n && j->uids[k] != sm->uid)
		k++;
	if (k == j->n)
		return 0;
	imap_search_msg(&m, sm); /* as FETCH: EMAILID and SAVEDATE too */
	m.seq = j->seqs[k];
	if (imap_recent_in(j->recent, j->n_recent, sm->uid))
		m.sysflags |= IMAP_F_RECENT;
	bool have_cache = j->items->f.need_cache && sm->cache != NULL &&
			  mime_cache_open(&mc, sm->cache, sm->cache_len);
	if (j->items->f.need_blob || (j->items->f.need_cache && !have_cache)) {
		int fd = -1;
		char *err = NULL;
		const char *p = "";
		size_t len = 0;
		if (store_snap_blob_open(j->sn, sm->blob, &fd, &err) < 0) {
			free(err); /* expunged meanwhile: no FETCH for it */
			return 0;
		}
		if (imap_blob_load(&j->blob, fd, &p, &len) < 0) {
			p = "";
			len = 0;
		}
		close(fd);
		m.msg = p;
		m.len = len;
	}
	if (j->items->f.need_cache) {
		if (!have_cache) {
			mime_cache_build(m.msg != NULL ? m.msg : "", m.len, &cache);
			if (!mime_cache_open(&mc, cache.data, cache.len))
				memset(&mc, 0, sizeof mc);
		}
		m.mc = &mc;
	}
	imap_fetch_out_reset(&j->fo);
	imap_fetch_format(&j->items->f, &j->opts, &m, &j->fo);
	/* too big or failed: left to the client's own FETCH; so is whatever
	 * would take the announcement past NOTIFY_FETCH_TOTAL (it is held
	 * whole, NOTIFY_FETCH_HELD times, for a client that does not read) */
	uint64_t size = nfetch_size(&j->fo);
	if (j->fo.error == NULL && size <= NOTIFY_FETCH_BYTES &&
	    j->out.len + size <= NOTIFY_FETCH_TOTAL)
		nfetch_segments(j, &m);
	buf_free(&cache);
	return 0;
}

static int nfetch_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct nfetch *j = arg;
	struct store_uid_range r = {j->uids[0], j->uids[j->n - 1]};

	j->sn = sn;
	int res = store_snap_messages(sn, j->user, j->mailbox, j->uidvalidity, &r, 1, 0,
				      j->items->f.need_cache, nfetch_each, j, err_r);
	j->sn = NULL;
	return res < 0 ? -1 : 0;
}

/* Sends j's responses if their numbers are still the client's (nothing
 * was expunged in between; else the client FETCHes them itself). */
static void nfetch_send(struct imap_session *s, struct nfetch *j)
{
	bool same = s->sel != NULL && s->sel->uidvalidity == j->uidvalidity;
	for (size_t i = 0; i < j->n && same; i++)
		same = imap_view_seq(s, j->uids[i]) == j->seqs[i];
	if (same)
		imap_send(s, j->out.data, j->out.len);
	nfetch_free(j);
}

static void nfetch_done(void *arg, int result, const char *err)
{
	struct nfetch *j = arg;
	struct imap_session *s = j->s;

	if (session_release(&s->base) || !imap_session_alive(s)) {
		nfetch_free(j);
		return;
	}
	if (result < 0) {
		log_warn("imap %s: notify fetch: %s", s->base.ip, err != NULL ? err : "error");
		nfetch_free(j);
		return;
	}
	struct imap_notify *n = s->notify;
	if (n == NULL || n->gen != j->gen || j->out.len == 0) {
		nfetch_free(j);
		return;
	}
	if (!can_send(s)) {
		/* not inside a command's response: after it (imap_notify_idle) */
		if (n->n_held == NOTIFY_FETCH_HELD) {
			nfetch_free(n->held[0]);
			memmove(n->held, n->held + 1, (NOTIFY_FETCH_HELD - 1) * sizeof *n->held);
			n->n_held--;
		}
		n->held[n->n_held++] = j;
		return;
	}
	nfetch_send(s, j);
}

void imap_notify_new(struct imap_session *s, const uint32_t *uids, size_t n)
{
	struct imap_notify *nt = s->notify;
	struct nfetch *j;

	if (nt == NULL || nt->items == NULL || n == 0 || s->sel == NULL || s->srv == NULL)
		return;
	if (n > NOTIFY_FETCH_MAX) {
		uids += n - NOTIFY_FETCH_MAX; /* the newest */
		n = NOTIFY_FETCH_MAX;
	}
	j = xcalloc(1, sizeof *j);
	j->items = nt->items;
	j->items->refs++;
	j->s = s;
	j->gen = nt->gen;
	j->user = xstrdup(s->user);
	j->mailbox = xstrdup(s->sel->name);
	j->uidvalidity = s->sel->uidvalidity;
	j->opts.binary_ok = true;
	j->opts.utf8 = s->utf8;
	j->opts.modseq = s->condstore;
	j->recent = imap_sel_recent(s, &j->n_recent);
	j->uids = xmalloc(n * sizeof *j->uids);
	j->seqs = xmalloc(n * sizeof *j->seqs);
	for (size_t i = 0; i < n; i++) {
		j->uids[i] = uids[i];
		j->seqs[i] = imap_view_seq(s, uids[i]);
	}
	j->n = n;
	s->base.busy++;
	store_read(s->srv->st, s->srv->workers, nfetch_work, nfetch_done, j);
}

/* ---- the command ---- */


static int parse_names(struct imap_session *s, const struct imap_arg *a, struct nfilter *f,
		       size_t *total)
{
	const struct imap_arg *v = a->type == IMAP_ARG_LIST ? a->list : a;
	size_t cnt = a->type == IMAP_ARG_LIST ? 0 : 1;

	if (a->type == IMAP_ARG_LIST)
		while (v[cnt].type != IMAP_ARG_EOL)
			cnt++;
	if (cnt == 0 || *total + cnt > NOTIFY_MAX_NAMES) {
		imap_tagged(s, "BAD", NULL, cnt == 0 ? "Mailbox expected" : "Too many mailboxes");
		return -1;
	}
	f->names = xcalloc(cnt, sizeof *f->names);
	for (size_t i = 0; i < cnt; i++) {
		char *name = imap_mailbox_arg(s, &v[i]);
		if (name == NULL)
			return -1; /* answered */
		f->names[f->n++] = name;
	}
	*total += cnt;
	return 0;
}

/* The event list of a filter. 0, or -1 after the tagged reply. */
static int parse_events(struct imap_session *s, struct imap_notify *n, const struct imap_arg *a,
			struct nfilter *f)
{
	bool sel = f->type == NF_SELECTED || f->type == NF_SELECTED_DELAYED;

	if (imap_arg_atom_is(a, "NONE")) {
		f->events = 0;
		return 0;
	}
	if (a->type != IMAP_ARG_LIST || a->list[0].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Event list expected");
		return -1;
	}
	for (const struct imap_arg *e = a->list; e->type != IMAP_ARG_EOL; e++) {
		if (imap_arg_atom_is(e, "MessageNew")) {
			f->events |= EV_NEW;
			if (e[1].type == IMAP_ARG_LIST) {
				/* RFC 5465 5.2: fetch-att for the selected
				 * mailbox only */
				const char *err = NULL;
				if (!sel) {
					imap_tagged(s, "BAD", NULL,
						    "MessageNew fetch attributes are for SELECTED only");
					return -1;
				}
				items_release(&n->items);
				n->items = xcalloc(1, sizeof *n->items);
				n->items->refs = 1;
				struct imap_arg one[2] = {e[1], {.type = IMAP_ARG_EOL}};
				if (imap_fetch_parse(one, &n->items->f, &err) < 0) {
					imap_tagged(s, "BAD", NULL, "%s",
						    err != NULL ? err : "Invalid fetch attributes");
					return -1;
				}
				e++;
			}
		} else if (imap_arg_atom_is(e, "MessageExpunge")) {
			f->events |= EV_EXPUNGE;
		} else if (imap_arg_atom_is(e, "FlagChange")) {
			f->events |= EV_FLAGS;
		} else if (imap_arg_atom_is(e, "MailboxName")) {
			f->events |= EV_NAME;
		} else if (imap_arg_atom_is(e, "SubscriptionChange")) {
			f->events |= EV_SUBS;
		} else if (e->type == IMAP_ARG_ATOM) {
			/* RFC 5465 5: an event we do not support (AnnotationChange
			 * without METADATA notifications, the METADATA events, an
			 * unknown name): NO [BADEVENT (the ones we do)] */
			imap_tagged(s, "NO",
				    "BADEVENT (MessageNew MessageExpunge FlagChange MailboxName"
				    " SubscriptionChange)",
				    "Unsupported event");
			return -1;
		} else {
			imap_tagged(s, "BAD", NULL, "Invalid event");
			return -1;
		}
	}
	/* RFC 5465 6: mailbox events are not for the selected mailbox */
	if (sel && (f->events & (EV_NAME | EV_SUBS))) {
		imap_tagged(s, "BAD", NULL, "MailboxName/SubscriptionChange are not for SELECTED");
		return -1;
	}
	return 0;
}

/* Parses "SET [STATUS] (filter events) ..." into n. 0, or -1 answered. */
static int parse_set(struct imap_session *s, const struct imap_arg *a, struct imap_notify *n)
{
	size_t total = 0;

	if (imap_arg_atom_is(a, "STATUS")) {
		n->status = true;
		a++;
	}
	if (a->type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Event group expected");
		return -1;
	}
	for (; a->type != IMAP_ARG_EOL; a++) {
		const struct imap_arg *g = a->list;
		struct nfilter f = {0};
		if (a->type != IMAP_ARG_LIST || g[0].type != IMAP_ARG_ATOM) {
			imap_tagged(s, "BAD", NULL, "Event group expected");
			return -1;
		}
		if (n->n_f == NOTIFY_MAX_FILTERS) {
			imap_tagged(s, "BAD", NULL, "Too many event groups");
			return -1;
		}
		const struct imap_arg *ev = &g[1];
		if (imap_arg_atom_is(&g[0], "SELECTED")) {
			f.type = NF_SELECTED;
		} else if (imap_arg_atom_is(&g[0], "SELECTED-DELAYED")) {
			f.type = NF_SELECTED_DELAYED;
		} else if (imap_arg_atom_is(&g[0], "PERSONAL")) {
			f.type = NF_PERSONAL;
		} else if (imap_arg_atom_is(&g[0], "INBOXES")) {
			f.type = NF_INBOXES;
		} else if (imap_arg_atom_is(&g[0], "SUBSCRIBED")) {
			f.type = NF_SUBSCRIBED;
		} else if (imap_arg_atom_is(&g[0], "SUBTREE") ||
			   imap_arg_atom_is(&g[0], "MAILBOXES")) {
			f.type = imap_arg_atom_is(&g[0], "SUBTREE") ? NF_SUBTREE : NF_MAILBOXES;
			if (g[1].type == IMAP_ARG_EOL) {
				imap_tagged(s, "BAD", NULL, "Mailbox expected");
				return -1;
			}
			/* appended first, so that n frees the names on error */
			n->f = xrealloc(n->f, (n->n_f + 1) * sizeof *n->f);
			n->f[n->n_f++] = f;
			if (parse_names(s, &g[1], &n->f[n->n_f - 1], &total) < 0)
				return -1;
			f = n->f[--n->n_f];
			ev = &g[2];
		} else {
			imap_tagged(s, "BAD", NULL, "Unknown event group");
			return -1;
		}
		n->f = xrealloc(n->f, (n->n_f + 1) * sizeof *n->f);
		n->f[n->n_f++] = f;
		if (ev->type == IMAP_ARG_EOL || ev[1].type != IMAP_ARG_EOL) {
			imap_tagged(s, "BAD", NULL, "Event list expected");
			return -1;
		}
		if (parse_events(s, n, ev, &n->f[n->n_f - 1]) < 0)
			return -1;
		if (f.type == NF_SELECTED || f.type == NF_SELECTED_DELAYED) {
			if (n->have_sel) {
				imap_tagged(s, "BAD", NULL, "SELECTED given twice");
				return -1;
			}
			n->have_sel = true;
			n->sel_delayed = f.type == NF_SELECTED_DELAYED;
			n->sel_events = n->f[n->n_f - 1].events;
		}
	}
	return 0;
}

void imap_cmd_notify(struct imap_session *s, const struct imap_arg *args)
{
	struct imap_notify *n;
	char *err = NULL;

	if (imap_arg_atom_is(&args[0], "NONE")) {
		if (args[1].type != IMAP_ARG_EOL) {
			imap_tagged(s, "BAD", NULL, "NOTIFY NONE takes no arguments");
			return;
		}
		/* RFC 5465 3.2 */
		notify_free(s);
		imap_tagged(s, "OK", NULL, "NOTIFY completed");
		return;
	}
	if (!imap_arg_atom_is(&args[0], "SET")) {
		imap_tagged(s, "BAD", NULL, "NOTIFY SET or NOTIFY NONE expected");
		return;
	}
	/* parsed into a new state: a failed SET leaves the old one */
	n = xcalloc(1, sizeof *n);
	if (parse_set(s, &args[1], n) < 0) {
		state_free(&n, NULL);
		return;
	}
	/* RFC 5465 3.1: a SET replaces what was set before */
	notify_free(s);
	s->notify = n;
	n->gen = next_gen++;
	n->sub = store_subscribe_user(s->srv->st, s->user, on_user_change, s, &err);
	if (n->sub == NULL) {
		log_warn("imap %s: notify: %s", s->base.ip, err != NULL ? err : "error");
		free(err);
		notify_free(s);
		imap_tagged(s, "NO", "UNAVAILABLE", "Notifications are not available now");
		return;
	}
	/* the state to compare with (and the STATUS indicator's responses) */
	session_park(&s->base);
	read_start(s, true);
}
