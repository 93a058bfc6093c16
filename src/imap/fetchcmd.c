/* FETCH and UID FETCH (RFC 9051 6.4.5, 6.4.9; RFC 3516 BINARY; RFC 7162
 * CHANGEDSINCE and VANISHED).
 *
 * A FETCH is produced in slices: the loop picks the next few hundred
 * messages of the set, a worker reads them in one snapshot
 * (store_snap_messages), maps each blob that the items need, builds a
 * missing MIME cache, and formats the responses (imap_fetch_format) into the
 * slice's segments; the loop then writes the segments while the client
 * reads: formatted bytes directly, ranges of a blob (a big BODY[] or a
 * decoded BINARY[]) 64 KiB at a time read on a worker, as POP3 RETR does.
 * While one slice is written the next is being read. Output stops at the
 * session's output limit and goes on at the drained event; one loop step
 * writes at most FETCH_STEP octets. So a FETCH 1:* of 100,000 messages holds
 * two slices in memory and never the loop for long.
 *
 * Implicit \Seen (RFC 9051 6.4.5): for BODY[...] without PEEK, in a mailbox
 * selected read-write, the slice's messages get \Seen through store_flags
 * before they are read, and the responses of those that changed carry their
 * new FLAGS. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"
#include "mime/mime.h"
#include "mime/preview.h"
#include "store/store.h"

#define FETCH_SLICE_MSGS 500         /* messages per slice at most */
#define FETCH_SLICE_BLOB_MSGS 64     /* ... when the blobs are read */
#define FETCH_SLICE_BYTES (256 * 1024) /* formatted octets per slice (soft) */
#define FETCH_CHUNK (64 * 1024)      /* blob read per worker job */
#define FETCH_STEP (64 * 1024)       /* octets written per loop step */

struct msg_fd {
	size_t seg_end; /* segments before this index use fd */
	int fd;
};
struct cache_save {
	int64_t id;
	struct buf cache;
};
struct seen_flag {
	uint32_t uid;
	unsigned sys;
};
/* RFC 8970 PREVIEW: a preview computed by the slice (saved by the loop), or
 * a body whose preview a LAZY fetch left to the background */
struct pv_item {
	int64_t id;
	char *text; /* the preview, or the blob's name (lazy) */
};
struct pv_list {
	struct pv_item *v;
	size_t n, cap;
};
/* previews computed in the background per slice at most (LAZY), and such
 * background jobs running at once in the process (more are not started: a
 * later LAZY fetch asks again) */
#define PREVIEW_LAZY_MAX 64
#define PREVIEW_BG_MAX 2
static int pv_bg_running; /* loop thread only */

struct fetch_job;

struct slice {
	struct fetch_job *job;
	/* set by the loop */
	uint32_t *uids, *seqs;
	size_t n;
	struct seen_flag *seen; /* sorted by uid; flags after the implicit \Seen */
	size_t n_seen;
	bool do_vanished;
	/* set by the worker */
	int result;
	char *err;
	size_t n_done;      /* messages of uids[] processed */
	size_t n_found;     /* ... of which the store still had (row and blob) */
	size_t n_blob_gone; /* ... whose row it had but whose blob was gone */
	struct imap_fetch_out out;
	struct msg_fd *fds;
	size_t n_fds, cap_fds;
	struct cache_save *saves;
	size_t n_saves, cap_saves;
	uint32_t *vanished;
	size_t n_van, cap_van;
	struct buf kw;      /* keywords of the slice's messages */
	struct pv_list pv_saves, pv_lazy; /* PREVIEW */
	struct shown {
		uint32_t uid;
		uint64_t modseq;
	} *shown;           /* the state each response shows */
	size_t n_shown;
	/* streaming cursor (loop) */
	size_t seg_i;
	uint64_t seg_pos;   /* octets of the current segment done (input side) */
	uint64_t seg_outpos; /* octets written of the current segment */
	bool dec_started;
	struct imap_decoder dec;
	bool vanished_sent;
};

struct chunk {
	struct fetch_job *job;
	int fd;
	uint64_t off;
	size_t want;
	ssize_t got;
	int err;
	char data[FETCH_CHUNK];
};

struct fetch_job {
	struct imap_session *s;
	struct store *st;
	struct pool *workers;
	struct imap_fetch f;
	struct imap_fetch_opts opts;
	char *user, *mailbox;
	uint32_t uidvalidity;
	bool set_seen;
	/* the messages: indices of the view, and the cursor */
	struct imap_idxset set;
	size_t ri;
	uint32_t next_idx;
	bool cursor_done;
	struct store_uid_range *recent; /* \Recent (select.c) */
	size_t n_recent;
	/* the UID set as given (VANISHED) */
	struct store_uid_range *van_ranges;
	size_t n_van_ranges;
	/* implicit \Seen set for messages a slice did not get to: the next
	 * slice's responses carry their FLAGS */
	struct seen_flag *carry;
	size_t n_carry;
	struct slice *cur, *next;  /* being written, being read */
	struct chunk *chunk;       /* a blob read in flight */
	int inflight;              /* worker/committer steps holding the job */
	bool slice_reading;
	bool chunk_reading;
	bool posted;
	bool aborted;
	const char *error;         /* tagged NO text (UNKNOWN-CTE) */
	/* messages of the set another session expunged (finish) */
	bool expunged_before;      /* gone from the snapshot the slice read */
	bool expunged_during;      /* in the snapshot, blob unlinked as it was read */
};

static void pump(struct fetch_job *j);

static void pv_add(struct pv_list *l, int64_t id, char *text)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xrealloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n].id = id;
	l->v[l->n].text = text;
	l->n++;
}

static void pv_free(struct pv_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].text);
	x_free(&l->v);
	l->n = l->cap = 0;
}

static void slice_free(struct slice **sp)
{
	struct slice *sl = *sp;
	if (sl == NULL)
		return;
	for (size_t i = 0; i < sl->n_fds; i++)
		close(sl->fds[i].fd);
	free(sl->fds);
	for (size_t i = 0; i < sl->n_saves; i++)
		buf_free(&sl->saves[i].cache);
	free(sl->saves);
	free(sl->vanished);
	buf_free(&sl->kw);
	pv_free(&sl->pv_saves);
	pv_free(&sl->pv_lazy);
	free(sl->shown);
	imap_fetch_out_free(&sl->out);
	free(sl->uids);
	free(sl->seqs);
	free(sl->seen);
	free(sl->err);
	x_free(sp);
}

static void job_free(struct fetch_job *j)
{
	slice_free(&j->cur);
	slice_free(&j->next);
	free(j->chunk);
	imap_fetch_free(&j->f);
	imap_idxset_free(&j->set);
	free(j->van_ranges);
	free(j->recent);
	free(j->carry);
	free(j->user);
	free(j->mailbox);
	free(j);
}

/* A step of ours ended: false if the job is over (the session stopped) and
 * was freed. */
static bool step_end(struct fetch_job *j)
{
	struct imap_session *s = j->s;

	j->inflight--;
	if (j->aborted || !imap_alive(s)) {
		if (j->inflight == 0) {
			if (s->job == j) {
				s->job = NULL;
				s->job_drained = NULL;
				s->job_abort = NULL;
			}
			job_free(j);
		}
		session_release(&s->base);
		return false;
	}
	session_release(&s->base);
	return true;
}

static void step_begin(struct fetch_job *j)
{
	j->inflight++;
	j->s->base.busy++;
}

/* ---- the worker's half of a slice ---- */

struct slice_ctx {
	struct slice *sl;
	struct store_snap *sn;
	char **err_r;
	bool stop_error;
	struct imap_blob blob; /* the buffer the slice's blobs are read into */
};

static uint32_t slice_seq(const struct slice *sl, uint32_t uid, size_t *idx_r)
{
	return imap_uid_find(sl->uids, sl->n, uid, idx_r) ? sl->seqs[*idx_r] : 0;
}

static const unsigned *slice_seen(const struct slice *sl, uint32_t uid)
{
	for (size_t i = 0; i < sl->n_seen; i++)
		if (sl->seen[i].uid == uid)
			return &sl->seen[i].sys;
	return NULL;
}

/* The preview of a message (RFC 8970), on the worker: the one the store
 * keeps, else (not LAZY) computed from the blob now and saved by the loop
 * after the slice; with LAZY, NIL and the body noted for the background
 * (RFC 8970 3.1: LAZY answers at once with what is available). The blob
 * is m's when the items read it, else read into the slice's buffer (m->msg
 * stays NULL). 0 with *preview_r (heap, NULL for NIL), -1 if the blob is
 * gone (expunged meanwhile). */
static int slice_preview(struct slice_ctx *cx, const struct store_msg *sm,
			 const struct imap_msg *m, char **preview_r)
{
	struct slice *sl = cx->sl;
	struct fetch_job *j = sl->job;
	char *err = NULL;
	if (store_snap_preview(cx->sn, sm->message_id, preview_r, &err) < 0) {
		log_warn("imap fetch: preview uid %" PRIu32 ": %s", sm->uid, err ? err : "error");
		free(err);
		*preview_r = NULL;
		return 0;
	}
	if (*preview_r != NULL)
		return 0;
	if (j->f.preview_lazy) {
		if (sl->pv_lazy.n < PREVIEW_LAZY_MAX)
			pv_add(&sl->pv_lazy, sm->message_id, xstrdup(sm->blob));
		return 0;
	}
	const char *msg = m->msg;
	size_t len = m->len;
	if (msg == NULL) {
		int pfd;
		if (store_snap_blob_open(cx->sn, sm->blob, &pfd, &err) < 0) {
			free(err);
			return -1;
		}
		if (imap_blob_load(&cx->blob, pfd, &msg, &len) < 0) {
			msg = "";
			len = 0;
		}
		close(pfd);
	}
	struct buf text = BUF_INIT, built = BUF_INIT;
	struct mime_cache mc;
	const struct mime_cache *mcp = m->mc;
	if (mcp == NULL && sm->cache != NULL && mime_cache_open(&mc, sm->cache, sm->cache_len))
		mcp = &mc;
	if (mcp == NULL) {
		mime_cache_build(msg, len, &built);
		if (mime_cache_open(&mc, built.data, built.len))
			mcp = &mc;
	}
	mime_preview(msg, len, mcp, &text);
	buf_free(&built);
	*preview_r = xstrdup(text.data != NULL ? text.data : "");
	buf_free(&text);
	pv_add(&sl->pv_saves, sm->message_id, xstrdup(*preview_r));
	return 0;
}

static int slice_each(void *arg, const struct store_msg *sm)
{
	struct slice_ctx *cx = arg;
	struct slice *sl = cx->sl;
	struct fetch_job *j = sl->job;
	struct imap_msg m;
	struct mime_cache mc;
	size_t idx;
	int fd = -1;
	size_t segs_before = sl->out.n_segs;
	bool keep_fd = false;

	imap_search_msg(&m, sm);
	m.seq = slice_seq(sl, sm->uid, &idx);
	if (m.seq == 0)
		return 0;
	if (imap_recent_in(j->recent, j->n_recent, sm->uid))
		m.sysflags |= IMAP_F_RECENT;
	if (sl->shown == NULL)
		sl->shown = xmalloc(sl->n * sizeof *sl->shown);
	sl->shown[sl->n_shown].uid = sm->uid;
	sl->shown[sl->n_shown].modseq = sm->modseq;
	sl->n_shown++;
	if (m.keywords[0] != '\0') {
		buf_appendc(&sl->kw, ' ');
		buf_appends(&sl->kw, m.keywords);
	}
	bool have_cache = j->f.need_cache && sm->cache != NULL &&
			  mime_cache_open(&mc, sm->cache, sm->cache_len);
	if (j->f.need_blob || (j->f.need_cache && !have_cache)) {
		char *err = NULL;
		if (store_snap_blob_open(cx->sn, sm->blob, &fd, &err) < 0) {
			/* Expunged by another session after our snapshot
			 * began (its blob is unlinked after the expunge's
			 * COMMIT): the expected race, not an error; the
			 * message is omitted as if the snapshot had not had
			 * it (finish: RFC 9051 7.1 EXPUNGEISSUED). Anything
			 * else is logged and omitted all the same. */
			if (errno != ENOENT)
				log_warn("imap fetch: open blob uid %" PRIu32 ": %s", sm->uid,
					 err != NULL ? err : "error");
			free(err);
			sl->n_blob_gone++;
			sl->n_done = idx + 1;
			return 0;
		}
		const char *p = "";
		size_t len = 0;
		if (imap_blob_load(&cx->blob, fd, &p, &len) < 0) {
			p = "";
			len = 0;
		}
		m.msg = p;
		m.len = len;
	}
	if (j->f.need_cache) {
		if (!have_cache) {
			if (sl->n_saves == sl->cap_saves) {
				sl->cap_saves = sl->cap_saves ? sl->cap_saves * 2 : 8;
				sl->saves = xrealloc(sl->saves, sl->cap_saves * sizeof *sl->saves);
			}
			struct cache_save *cs = &sl->saves[sl->n_saves++];
			cs->id = sm->message_id;
			buf_init(&cs->cache);
			mime_cache_build(m.msg != NULL ? m.msg : "", m.len, &cs->cache);
			if (!mime_cache_open(&mc, cs->cache.data, cs->cache.len))
				memset(&mc, 0, sizeof mc);
		}
		m.mc = &mc;
	}
	char *preview = NULL;
	if (j->f.need_preview && slice_preview(cx, sm, &m, &preview) < 0) {
		sl->n_blob_gone++;
		sl->n_done = idx + 1;
		if (fd >= 0)
			close(fd);
		return 0;
	}
	m.preview = preview;
	struct imap_fetch_opts opts = j->opts;
	unsigned seen_flags;
	opts.set_flags = slice_seen(sl, sm->uid);
	if (opts.set_flags != NULL && (m.sysflags & IMAP_F_RECENT)) {
		seen_flags = *opts.set_flags | IMAP_F_RECENT;
		opts.set_flags = &seen_flags;
	}
	imap_fetch_format(&j->f, &opts, &m, &sl->out);
	free(preview);
	if (sl->out.error != NULL) {
		if (fd >= 0)
			close(fd);
		sl->n_done = sl->n; /* the command ends here */
		return 1;
	}
	for (size_t i = segs_before; i < sl->out.n_segs; i++)
		if (sl->out.segs[i].kind != IMAP_SEG_BYTES)
			keep_fd = true;
	if (keep_fd) {
		if (sl->n_fds == sl->cap_fds) {
			sl->cap_fds = sl->cap_fds ? sl->cap_fds * 2 : 8;
			sl->fds = xrealloc(sl->fds, sl->cap_fds * sizeof *sl->fds);
		}
		sl->fds[sl->n_fds].seg_end = sl->out.n_segs;
		sl->fds[sl->n_fds].fd = fd;
		sl->n_fds++;
	} else if (fd >= 0) {
		close(fd);
	}
	sl->n_done = idx + 1;
	sl->n_found++;
	if (sl->out.bytes.len >= FETCH_SLICE_BYTES)
		return 1; /* the rest in the next slice */
	return 0;
}

static void slice_vanished(void *arg, uint32_t uid)
{
	struct slice *sl = arg;
	if (sl->n_van == sl->cap_van) {
		sl->cap_van = sl->cap_van ? sl->cap_van * 2 : 16;
		sl->vanished = xrealloc(sl->vanished, sl->cap_van * sizeof *sl->vanished);
	}
	sl->vanished[sl->n_van++] = uid;
}

static int slice_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct slice *sl = arg;
	struct fetch_job *j = sl->job;
	struct slice_ctx cx = {sl, sn, err_r, false, {BUF_INIT, NULL, 0}};
	struct store_uid_range *r;
	size_t nr = 0;
	int res;

	if (sl->do_vanished &&
	    store_snap_vanished(sn, j->user, j->mailbox, j->uidvalidity, j->f.changedsince,
				j->van_ranges, j->n_van_ranges, slice_vanished, sl, err_r) < 0) {
		return -1;
	}
	if (sl->n == 0)
		return 0; /* n 0 would mean every message */
	r = xmalloc(sl->n * sizeof *r);
	for (size_t i = 0; i < sl->n; i++) {
		if (nr > 0 && r[nr - 1].hi + 1 == sl->uids[i]) {
			r[nr - 1].hi = sl->uids[i];
		} else {
			r[nr].lo = r[nr].hi = sl->uids[i];
			nr++;
		}
	}
	res = store_snap_messages(sn, j->user, j->mailbox, j->uidvalidity, r, nr, j->f.changedsince,
				  j->f.need_cache ? STORE_MSG_CACHE : STORE_MSG_PLAIN, slice_each,
				  &cx, err_r);
	free(r);
	imap_blob_free(&cx.blob);
	if (res < 0)
		return -1;
	if (sl->out.error == NULL && sl->out.bytes.len < FETCH_SLICE_BYTES)
		sl->n_done = sl->n;
	return 0;
}

/* ---- PREVIEW (LAZY) in the background ---- */

struct pv_bg {
	struct store *st;
	struct pv_list todo; /* id and blob name */
	struct pv_list done; /* id and preview */
};

static int pv_bg_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct pv_bg *b = arg;
	struct imap_blob bl = {BUF_INIT, NULL, 0};
	for (size_t i = 0; i < b->todo.n; i++) {
		char *have = NULL, *err = NULL;
		int fd;
		if (store_snap_preview(sn, b->todo.v[i].id, &have, &err) < 0 || have != NULL) {
			free(have);
			free(err);
			continue; /* computed meanwhile (or unreadable) */
		}
		if (store_snap_blob_open(sn, b->todo.v[i].text, &fd, &err) < 0) {
			free(err);
			continue; /* expunged meanwhile */
		}
		const char *msg = "";
		size_t len = 0;
		if (imap_blob_load(&bl, fd, &msg, &len) < 0) {
			msg = "";
			len = 0;
		}
		close(fd);
		struct buf built = BUF_INIT, text = BUF_INIT;
		struct mime_cache mc;
		mime_cache_build(msg, len, &built);
		bool ok = mime_cache_open(&mc, built.data, built.len);
		mime_preview(msg, len, ok ? &mc : NULL, &text);
		pv_add(&b->done, b->todo.v[i].id, xstrdup(text.data != NULL ? text.data : ""));
		buf_free(&built);
		buf_free(&text);
	}
	imap_blob_free(&bl);
	return 0;
}

static void pv_bg_done(void *arg, int result, const char *err)
{
	struct pv_bg *b = arg;
	for (size_t i = 0; i < b->done.n; i++)
		store_preview_save(b->st, b->done.v[i].id, b->done.v[i].text);
	pv_free(&b->todo);
	pv_free(&b->done);
	free(b);
	pv_bg_running--;
}

static void preview_background(struct store *st, struct pool *workers, struct pv_list *l)
{
	if (pv_bg_running >= PREVIEW_BG_MAX) {
		pv_free(l);
		free(l);
		return;
	}
	pv_bg_running++;
	struct pv_bg *b = xcalloc(1, sizeof *b);
	b->st = st;
	b->todo = *l;
	free(l);
	store_read(st, workers, pv_bg_work, pv_bg_done, b);
}

/* ---- the loop's half ---- */

static void slice_done(void *arg, int result, const char *err)
{
	struct slice *sl = arg;
	struct fetch_job *j = sl->job;

	j->slice_reading = false;
	sl->result = result;
	if (result < 0)
		sl->err = xstrdup(err != NULL ? err : "error");
	if (!step_end(j))
		return; /* freed with the job (j->next is sl) */
	for (size_t i = 0; i < sl->n_saves; i++)
		store_cache_save(j->st, sl->saves[i].id, sl->saves[i].cache.data,
				 sl->saves[i].cache.len);
	for (size_t i = 0; i < sl->pv_saves.n; i++)
		store_preview_save(j->st, sl->pv_saves.v[i].id, sl->pv_saves.v[i].text);
	if (sl->pv_lazy.n > 0) {
		/* RFC 8970 3.1 LAZY: computed in the background for a later
		 * FETCH; the job owns the list, not the session */
		struct pv_list *l = xmalloc(sizeof *l);
		*l = sl->pv_lazy;
		memset(&sl->pv_lazy, 0, sizeof sl->pv_lazy);
		preview_background(j->st, j->workers, l);
	}
	/* where the next slice starts: after what this one processed */
	if (result == 0 && sl->n_done < sl->n && sl->out.error == NULL) {
		/* stopped early: back up the cursor to the first message left */
		j->cursor_done = false;
		struct imap_idxset *set = &j->set;
		uint32_t seq = sl->seqs[sl->n_done]; /* 1-based index in the view */
		for (size_t i = 0; i < set->n; i++)
			if (seq - 1 >= set->v[i].lo && seq - 1 <= set->v[i].hi) {
				j->ri = i;
				j->next_idx = seq - 1;
				break;
			}
	}
	/* every message of the slice the client named is in the view, so one
	 * the snapshot did not have (or whose blob was gone) was expunged by
	 * another session; with CHANGEDSINCE the store leaves out the
	 * unchanged ones on purpose */
	if (result == 0 && sl->out.error == NULL) {
		if (sl->n_blob_gone > 0)
			j->expunged_during = true;
		if (j->f.changedsince == 0 && sl->n_found + sl->n_blob_gone < sl->n_done)
			j->expunged_before = true;
	}
	if (result == 0 && sl->n_done < sl->n && sl->n_seen > 0) {
		uint32_t first = sl->uids[sl->n_done];
		free(j->carry);
		j->carry = xmalloc(sl->n_seen * sizeof *j->carry);
		j->n_carry = 0;
		for (size_t i = 0; i < sl->n_seen; i++)
			if (sl->seen[i].uid >= first)
				j->carry[j->n_carry++] = sl->seen[i];
	}
	if (sl->out.error != NULL) {
		j->error = sl->out.error;
		j->cursor_done = true;
	}
	pump(j);
}

static void seen_done(void *arg, int result, struct store_flag_results *r)
{
	struct slice *sl = arg;
	struct fetch_job *j = sl->job;

	if (result == 0) {
		const struct store_flag_result *v = r->v;
		size_t n = r->n;
		sl->seen = xmalloc((n + j->n_carry + 1) * sizeof *sl->seen);
		for (size_t i = 0; i < j->n_carry; i++)
			sl->seen[sl->n_seen++] = j->carry[i];
		j->n_carry = 0;
		for (size_t i = 0; i < n; i++) {
			const char *kw;
			if (!v[i].changed)
				continue;
			sl->seen[sl->n_seen].uid = v[i].uid;
			sl->seen[sl->n_seen].sys = imap_flags_from_store(v[i].flags, &kw);
			sl->n_seen++;
			if (j->s->sel != NULL)
				imap_sel_own_change(j->s, v[i].modseq);
		}
	}
	store_flag_results_free(r);
	if (!step_end(j))
		return;
	step_begin(j);
	store_read(j->st, j->workers, slice_work, slice_done, sl);
}

/* Takes the next messages of the set into a new slice and starts reading it. */
static void slice_start(struct fetch_job *j)
{
	struct slice *sl;
	const uint32_t *uids = imap_view_uids(j->s);
	/* a PREVIEW not cached yet reads the blob too */
	size_t max = j->f.need_blob || j->f.need_cache || (j->f.need_preview && !j->f.preview_lazy)
			     ? FETCH_SLICE_BLOB_MSGS
			     : FETCH_SLICE_MSGS;

	sl = xcalloc(1, sizeof *sl);
	sl->job = j;
	sl->uids = xmalloc(max * sizeof *sl->uids);
	sl->seqs = xmalloc(max * sizeof *sl->seqs);
	while (sl->n < max && j->ri < j->set.n) {
		struct imap_idx_range *r = &j->set.v[j->ri];
		if (j->next_idx < r->lo)
			j->next_idx = r->lo;
		if (j->next_idx > r->hi || j->next_idx >= imap_view_count(j->s)) {
			j->ri++;
			continue;
		}
		sl->uids[sl->n] = uids[j->next_idx];
		sl->seqs[sl->n] = j->next_idx + 1;
		sl->n++;
		j->next_idx++;
	}
	if (j->ri >= j->set.n)
		j->cursor_done = true;
	if (j->f.vanished && j->van_ranges != NULL) {
		sl->do_vanished = true;
		j->f.vanished = false; /* once, with the first slice */
	}
	j->next = sl;
	j->slice_reading = true;
	if (j->set_seen && sl->n > 0) {
		step_begin(j);
		store_flags(j->st, j->user, j->mailbox, j->uidvalidity, sl->uids, sl->n, '+',
			    "\\Seen", 0, seen_done, sl);
		return;
	}
	step_begin(j);
	store_read(j->st, j->workers, slice_work, slice_done, sl);
}

static void finish(struct fetch_job *j)
{
	struct imap_session *s = j->s;
	const char *error = j->error;
	bool uid = s->uid;
	bool before = j->expunged_before, during = j->expunged_during;

	s->job = NULL;
	s->job_drained = NULL;
	s->job_abort = NULL;
	job_free(j);
	if (error != NULL)
		imap_tagged(s, "NO", NULL, "%s", error);
	else if (during)
		/* RFC 9051 7.1 EXPUNGEISSUED, RFC 2180 4.1.3: a message was
		 * expunged by another session while it was being read; the
		 * others were sent (as Dovecot answers) */
		imap_tagged(s, "NO", "EXPUNGEISSUED", "Some of the requested messages no longer exist");
	else if (before && !uid)
		/* a FETCH by sequence number named messages another session
		 * had expunged (the client is told at its next command that
		 * may carry EXPUNGE, RFC 9051 7.5.1): they are left out, the
		 * others sent, and the code tells the client to NOOP soon
		 * (RFC 9051 7.1, RFC 2180 4.1.2). A UID FETCH ignores UIDs
		 * that no longer exist (RFC 9051 6.4.9). */
		imap_tagged(s, "OK", "EXPUNGEISSUED", "Some messages were already expunged");
	else
		imap_tagged(s, "OK", NULL, "%s completed", uid ? "UID FETCH" : "FETCH");
	imap_cmd_done(s);
}

static int fd_of_seg(const struct slice *sl, size_t seg)
{
	for (size_t i = 0; i < sl->n_fds; i++)
		if (seg < sl->fds[i].seg_end)
			return sl->fds[i].fd;
	return -1;
}

static void chunk_work(void *arg)
{
	struct chunk *c = arg;
	ssize_t r;
	do
		r = pread(c->fd, c->data, c->want, (off_t)c->off);
	while (r < 0 && errno == EINTR);
	c->got = r;
	c->err = r < 0 ? errno : 0;
}

static void chunk_done(void *arg)
{
	struct chunk *c = arg;
	struct fetch_job *j = c->job;
	struct slice *sl = j->cur;
	struct imap_seg *g;
	struct buf out = BUF_INIT;

	j->chunk_reading = false;
	if (!step_end(j))
		return;
	g = &sl->out.segs[sl->seg_i];
	if (c->got < 0) {
		log_err("imap %s: fetch: read message: %s", j->s->base.ip, strerror(c->err));
		session_close(&j->s->base, "read error");
		return;
	}
	if (c->got == 0) {
		/* the blob is shorter than the cache said: pad, so that the
		 * literal keeps its announced size */
		size_t want = (size_t)(g->len - sl->seg_pos);
		memset(c->data, ' ', want > FETCH_CHUNK ? FETCH_CHUNK : want);
		c->got = (ssize_t)(want > FETCH_CHUNK ? FETCH_CHUNK : want);
	}
	sl->seg_pos += (uint64_t)c->got;
	if (g->kind == IMAP_SEG_BLOB) {
		imap_send(j->s, c->data, (size_t)c->got);
		sl->seg_outpos += (uint64_t)c->got;
	} else {
		imap_decoder_feed(&sl->dec, c->data, (size_t)c->got, &out);
		if (sl->seg_pos >= g->len)
			imap_decoder_finish(&sl->dec, &out);
		uint64_t left = g->out_len - sl->seg_outpos;
		size_t n = out.len > left ? (size_t)left : out.len;
		if (n > 0)
			imap_send(j->s, out.data, n);
		sl->seg_outpos += n;
		buf_free(&out);
	}
	pump(j);
}

static void step_continue(void *arg)
{
	struct fetch_job *j = arg;
	j->posted = false;
	if (!step_end(j))
		return;
	pump(j);
}

/* Writes what may be written now; returns when waiting for a worker, the
 * client or the next loop step. */
static void pump(struct fetch_job *j)
{
	struct imap_session *s = j->s;
	size_t step = 0;

	if (j->chunk_reading || j->posted)
		return;
	while (imap_alive(s)) {
		if (j->cur == NULL) {
			if (j->next != NULL && !j->slice_reading) {
				j->cur = j->next;
				j->next = NULL;
				if (j->cur->kw.len > 0) /* before the responses show them */
					imap_sel_keywords(s, j->cur->kw.data);
				for (size_t i = 0; i < j->cur->n_shown; i++)
					imap_sel_reported(s, j->cur->shown[i].uid,
							  j->cur->shown[i].modseq);
				if (j->cur->result < 0) {
					log_err("imap %s: fetch: %s", s->base.ip, j->cur->err);
					j->error = "[UNAVAILABLE] Mailbox cannot be read now";
					j->cursor_done = true;
				}
			}
			if (j->next == NULL && !j->slice_reading && !j->cursor_done)
				slice_start(j); /* read ahead while this one is written */
			if (j->cur == NULL) {
				if (j->slice_reading)
					return; /* slice_done goes on */
				finish(j);
				return;
			}
		}
		struct slice *sl = j->cur;
		if (!sl->vanished_sent) {
			sl->vanished_sent = true;
			if (sl->n_van > 0) {
				/* RFC 7162 3.2.6 */
				struct buf b = BUF_INIT;
				buf_appends(&b, "* VANISHED (EARLIER) ");
				imap_seqset_format(&b, sl->vanished, sl->n_van);
				buf_appends(&b, "\r\n");
				imap_send(s, b.data, b.len);
				buf_free(&b);
			}
			if (sl->out.n_segs == 0 && sl->out.bytes.len > 0) {
				/* formatted bytes only, no segment list */
				imap_send(s, sl->out.bytes.data, sl->out.bytes.len);
				sl->out.bytes.len = 0;
			}
		}
		if (sl->seg_i >= sl->out.n_segs || sl->result < 0) {
			slice_free(&j->cur);
			continue;
		}
		if (!session_output_room(&s->base)) {
			session_output_wait(&s->base); /* job_drained goes on */
			return;
		}
		if (step >= FETCH_STEP) {
			j->posted = true;
			step_begin(j);
			loop_post(s->base.l, step_continue, j);
			return;
		}
		struct imap_seg *g = &sl->out.segs[sl->seg_i];
		if (g->kind == IMAP_SEG_BYTES) {
			uint64_t left = g->len - sl->seg_pos;
			size_t n = left > FETCH_STEP ? FETCH_STEP : (size_t)left;
			imap_send(s, sl->out.bytes.data + g->off + sl->seg_pos, n);
			sl->seg_pos += n;
			step += n;
			if (sl->seg_pos >= g->len) {
				sl->seg_i++;
				sl->seg_pos = sl->seg_outpos = 0;
			}
			continue;
		}
		/* BLOB / DECODE */
		uint64_t want_out = g->kind == IMAP_SEG_BLOB ? g->len : g->out_len;
		if (g->kind == IMAP_SEG_DECODE && !sl->dec_started) {
			imap_decoder_init(&sl->dec, g->enc, g->skip, g->out_len);
			sl->dec_started = true;
		}
		if (sl->seg_outpos >= want_out ||
		    (g->kind == IMAP_SEG_DECODE && sl->seg_pos >= g->len)) {
			if (sl->seg_outpos < want_out) {
				/* the decoder gave less than announced: pad */
				uint64_t pad = want_out - sl->seg_outpos;
				char sp[256];
				memset(sp, ' ', sizeof sp);
				while (pad > 0) {
					size_t n = pad > sizeof sp ? sizeof sp : (size_t)pad;
					imap_send(s, sp, n);
					pad -= n;
				}
			}
			sl->seg_i++;
			sl->seg_pos = sl->seg_outpos = 0;
			sl->dec_started = false;
			continue;
		}
		int fd = fd_of_seg(sl, sl->seg_i);
		if (fd < 0 || s->srv == NULL) {
			session_close(&s->base, "fetch: no blob");
			return;
		}
		if (j->chunk == NULL)
			j->chunk = xmalloc(sizeof *j->chunk);
		j->chunk->job = j;
		j->chunk->fd = fd;
		j->chunk->off = g->off + sl->seg_pos;
		uint64_t left = g->len - sl->seg_pos;
		j->chunk->want = left > FETCH_CHUNK ? FETCH_CHUNK : (size_t)left;
		j->chunk_reading = true;
		step_begin(j);
		pool_submit(j->workers, chunk_work, chunk_done, j->chunk);
		return;
	}
}

static void fetch_drained(struct imap_session *s)
{
	struct fetch_job *j = s->job;
	if (j != NULL)
		pump(j);
}

static void fetch_abort(struct imap_session *s)
{
	struct fetch_job *j = s->job;

	s->job = NULL;
	s->job_drained = NULL;
	s->job_abort = NULL;
	if (j == NULL)
		return;
	j->aborted = true;
	if (j->inflight == 0)
		job_free(j);
}

void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args)
{
	struct fetch_job *j;
	const char *err = NULL;

	if (args[0].type == IMAP_ARG_EOL || args[1].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Missing arguments");
		return;
	}
	j = xcalloc(1, sizeof *j);
	if (imap_fetch_parse(&args[1], &j->f, &err) < 0) {
		imap_tagged(s, "BAD", NULL, "%s", err != NULL ? err : "Invalid FETCH items");
		job_free(j);
		return;
	}
	/* RFC 7162 3.2.6: VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE */
	if (j->f.vanished && (!s->qresync || !s->uid || j->f.changedsince == 0)) {
		imap_tagged(s, "BAD", NULL, "VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE");
		job_free(j);
		return;
	}
	if (imap_idxset_parse(s, &args[0], s->uid, &j->set, &err) < 0) {
		imap_tagged(s, "BAD", NULL, "%s", err);
		job_free(j);
		return;
	}
	bool modseq_item = j->f.changedsince != 0;
	for (size_t i = 0; i < j->f.n; i++)
		modseq_item |= j->f.v[i].kind == IMAP_FETCH_MODSEQ;
	if (modseq_item)
		imap_enable_condstore(s); /* RFC 7162 3.1: an enabling command */
	if (j->f.vanished) {
		struct imap_seqset ss = {0};
		if (imap_seqset_parse(args[0].str, args[0].len, 10000, &ss) == 0 && !ss.dollar) {
			imap_seqset_resolve(&ss, s->sel->uidnext > 1 ? s->sel->uidnext - 1 : 1);
			j->van_ranges = xmalloc((ss.n ? ss.n : 1) * sizeof *j->van_ranges);
			for (size_t i = 0; i < ss.n; i++) {
				j->van_ranges[i].lo = ss.v[i].lo;
				j->van_ranges[i].hi = ss.v[i].hi;
			}
			j->n_van_ranges = ss.n;
		}
		imap_seqset_free(&ss);
	}
	if (j->set.count == 0 && j->van_ranges == NULL) {
		job_free(j);
		imap_tagged(s, "OK", NULL, "%s completed", s->uid ? "UID FETCH" : "FETCH");
		return;
	}
	j->s = s;
	j->st = s->srv->st;
	/* a range of more than a slice is bulk work (niced, core/pool.h); a
	 * client opening a message stays beside the logins */
	j->workers = j->set.count > FETCH_SLICE_MSGS ? s->srv->bulk : s->srv->workers;
	j->user = xstrdup(s->user);
	j->mailbox = xstrdup(s->sel->name);
	j->uidvalidity = s->sel->uidvalidity;
	j->set_seen = j->f.sets_seen && !s->sel->readonly;
	j->opts.uid = s->uid;
	j->opts.binary_ok = true;
	j->opts.utf8 = s->utf8 || s->rev2;
	j->opts.modseq = s->condstore;
	j->recent = imap_sel_recent(s, &j->n_recent);
	if (j->set.count == 0)
		j->cursor_done = false; /* one empty slice carries the VANISHED */
	s->job = j;
	s->job_drained = fetch_drained;
	s->job_abort = fetch_abort;
	session_park(&s->base);
	pump(j);
}
