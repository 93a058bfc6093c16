/* SEARCH and UID SEARCH (RFC 9051 6.4.4), ESEARCH return options (RFC
 * 4731), SEARCHRES (RFC 5182), the MODSEQ key (RFC 7162 3.1.5).
 *
 * The view is searched in slices on workers: each slice is one snapshot read
 * of a few hundred messages (store_snap_messages), their blobs and MIME
 * caches loaded only when a key needs the content
 * (imap_search_needs_blob), each matched with imap_search_match. The
 * matches (UIDs, 4 octets each) are kept; the response is written at the
 * end, in pieces while the client reads. A text key the full-text index
 * can narrow (store/fts.c) gives candidates first; they are confirmed in
 * parallel (confirm_slice), reading only the header when the keys need no
 * more (docs/design.md, "How SEARCH runs"). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/search_fts.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"
#include "mime/mime.h"
#include "store/store.h"

#define SEARCH_SLICE_MSGS 2000
#define SEARCH_SLICE_BLOB_MSGS 200
/* SORT and THREAD read the MIME caches (~0.5 KB each), a message file only
 * for a message without a current one: a snapshot read (a read transaction)
 * per 1000, not per 200 (100,000 messages: 100 transactions) */
#define SEARCH_SLICE_CACHE_MSGS 1000
#define SEARCH_MAX_KEYS 1000
/* confirming a slice (confirm_slice): message files announced to the
 * kernel (posix_fadvise WILLNEED, their fds held) this far ahead of the
 * one being matched: at most SEARCH_AHEAD + SEARCH_CONFIRM_THREADS fds per
 * slice */
#define SEARCH_AHEAD 32
#define SEARCH_CONFIRM_THREADS 2
#define SEARCH_OUT_STEP (64 * 1024)
/* a body's index text above this is not inflated (its file is read) */
#define SEARCH_TEXT_MAX (256u * 1024 * 1024)

struct search_job {
	struct imap_session *s;
	struct store *st;
	char *user, *mailbox;
	uint32_t uidvalidity;
	struct imap_search q;
	bool needs_blob;
	/* the keys that read the message read only its top-level header
	 * (HEADER and its shortcuts, SENT*): only that part is read */
	bool hdr_only;
	/* the slices are confirmed in parallel (confirm_slice) */
	bool parallel;
	/* ... from the full-text index's text of each body where it has one
	 * (imap_search_text_ready: BODY keys alone), not its message file */
	bool text_ok;
	bool has_modseq_key;
	/* SORT (sort.c): the matches' keys, sorted on a worker at the end;
	 * sort_cache: the MIME caches are loaded (SORT, THREAD) */
	bool sort, sort_cache;
	/* SORT whose search keys read nothing of the message: the store's
	 * narrow rows (STORE_MSG_SORT), the size and sort keys of each body */
	bool sort_keys;
	/* THREAD, likewise (STORE_MSG_THREAD): the thread keys of each body */
	bool thread_keys;
	/* every key that reads the message is SENT* (imap_search_sent_only):
	 * needs_blob is false and the slices read the sort keys, which keep
	 * the sent day (MSI_SENT); a body whose keys lack it reads its file */
	bool sent_rows;
	struct imap_sort_row *rows;
	size_t n_rows, cap_rows;
	/* the server's order of the criteria (sortorder.c), valid for the
	 * view: the matches are taken in its order and nothing is sorted.
	 * order_view: the search keys need only sequence numbers and UIDs: no
	 * slice is read, the view is matched on a worker in that order. */
	struct imap_sort_order *order;
	bool order_view, order_short;
	const uint32_t *view; /* the session's, unchanged while it is parked */
	size_t view_n;
	uint32_t *gone; /* ... less these (imap_sel_gone) */
	size_t n_gone;
	/* no order kept: a row of every message is sorted (row.match marks
	 * the matches) and the order of all (filled) is kept at the end */
	bool fill;
	uint32_t view_max, view_count;
	uint32_t *filled;
	size_t n_filled;
	uint32_t *stored; /* a copy of filled for the store (made on the worker) */
	/* a kept order older than the view, brought up to date (sortmerge.c) */
	struct imap_sort_order *stale;
	struct imap_sort_extend x;
	/* a mailbox of IMAP_SORT_STORED_MIN messages or more: the order is
	 * read from the store first (load), and kept there once made */
	bool load;
	uint32_t loaded_max, *loaded;
	size_t n_loaded;
	/* RETURN (UPDATE) (RFC 5267 4, sort.c): every message's static keys */
	bool ctx_on;
	const struct imap_search_key *leaf[IMAP_CTX_MAX_LEAVES];
	size_t n_leaf;
	uint32_t *cx_uid;
	uint64_t *cx_bits;
	size_t cx_n, cx_cap;
	struct store_uid_range *recent; /* \Recent (select.c) */
	size_t n_recent;
	uint32_t *saved; /* copy of "$" for the workers */
	size_t n_saved;
	/* the slice being read */
	uint32_t *uids, *seqs;
	size_t n;
	uint32_t next_idx; /* index of the view where the next slice starts */
	/* results */
	uint32_t *res_uid, *res_seq;
	uint64_t *res_mod;
	size_t n_res, cap_res;
	uint64_t max_modseq;
	struct cache_save {
		int64_t id;
		struct buf cache;
	} *saves;
	size_t n_saves, cap_saves;
	/* output cursor */
	struct buf out;
	size_t out_i;
	bool aborted, inflight, writing;
	/* imap_search_run: another command takes the matches (SORT, THREAD) */
	const struct imap_search_hooks *hooks;
	/* the full-text index's candidates (store/fts.c), sorted UIDs: only
	 * they are matched when narrowed */
	struct store_fts_q *fq;
	uint32_t *cand;
	size_t n_cand, cand_i;
	bool narrowed;
};

static void job_free(struct search_job *j)
{
	imap_search_free(&j->q);
	free(j->user);
	free(j->mailbox);
	free(j->saved);
	free(j->recent);
	free(j->uids);
	free(j->seqs);
	free(j->res_uid);
	free(j->res_seq);
	free(j->res_mod);
	for (size_t i = 0; i < j->n_rows; i++)
		imap_sort_row_free(&j->rows[i]);
	free(j->rows);
	imap_sort_order_unref(&j->order);
	imap_sort_order_unref(&j->stale);
	free(j->x.uids);
	free(j->filled);
	free(j->stored);
	free(j->loaded);
	free(j->gone);
	free(j->cx_uid);
	free(j->cx_bits);
	for (size_t i = 0; i < j->n_saves; i++)
		buf_free(&j->saves[i].cache);
	free(j->saves);
	buf_free(&j->out);
	imap_search_fts_free(&j->fq);
	free(j->cand);
	free(j);
}

/* The command stops unanswered: imap_search_run's caller frees its part. */
static void job_drop(struct search_job *j)
{
	if (j->hooks != NULL)
		j->hooks->abort(j->hooks->arg);
	job_free(j);
}

static void detach(struct imap_session *s)
{
	s->job = NULL;
	s->job_drained = NULL;
	s->job_abort = NULL;
}

/* ---- matching, on a worker ---- */

int imap_search_load(struct store_snap *sn, const struct store_msg *sm, bool need_blob,
		     struct imap_blob *bl, struct imap_msg *m, struct mime_cache *mc,
		     struct buf *built)
{
	/* SORT's keys come from the cache alone: the blob is read when a
	 * search key needs it or the cache must be built */
	bool have_mc = sm->cache != NULL && mime_cache_open(mc, sm->cache, sm->cache_len);
	char *err = NULL;
	const char *p = "";
	size_t len = 0;
	int fd;

	if (have_mc)
		m->mc = mc;
	if (!need_blob && have_mc)
		return 0;
	if (store_snap_blob_open(sn, sm->blob, &fd, &err) < 0) {
		int e = errno;
		free(err);
		errno = e; /* ENOENT: expunged meanwhile */
		return -1;
	}
	if (imap_blob_load(bl, fd, &p, &len) < 0) {
		p = "";
		len = 0;
	}
	close(fd);
	m->msg = p;
	m->len = len;
	if (!have_mc) {
		mime_cache_build(m->msg, m->len, built);
		if (mime_cache_open(mc, built->data, built->len))
			m->mc = mc;
	}
	return 0;
}

void imap_search_msg(struct imap_msg *m, const struct store_msg *sm)
{
	const char *kw = "";

	memset(m, 0, sizeof *m);
	m->uid = sm->uid;
	m->modseq = sm->modseq;
	m->size = sm->size;
	m->internaldate = sm->internaldate;
	m->internaldate_tz = sm->internaldate_tz;
	m->emailid = sm->message_id; /* RFC 8474 6 */
	m->savedate = sm->savedate;  /* RFC 8514 5 */
	m->sysflags = imap_flags_from_store(sm->flags != NULL ? sm->flags : "", &kw);
	m->keywords = kw != NULL ? kw : "";
}

struct match_ctx {
	struct search_job *j;
	struct store_snap *sn;
	struct imap_blob blob; /* the buffer the slice's blobs are read into */
	char *err;	       /* a message file that could not be read */
};

/* j->sent_rows, a body whose sort keys lack the sent day (made before
 * MSI_SENT): its file is read, as before the keys had it, and its cache
 * built again into built, to be saved: that writes keys with the day
 * (store_cache_save), so the next SEARCH reads no file for it. -1 as
 * imap_search_load (errno). */
static int sent_from_file(struct match_ctx *cx, const struct store_msg *sm, struct imap_msg *m,
			  struct mime_cache *mc, struct buf *built)
{
	struct store_msg b = *sm;
	char *name = NULL, *err = NULL;

	b.cache = NULL; /* built again */
	b.cache_len = 0;
	if (b.blob == NULL) { /* a STORE_MSG_SORT row */
		if (store_snap_blob_name(cx->sn, sm->message_id, &name, &err) < 0) {
			log_err("imap: search: body %" PRId64 ": %s", sm->message_id,
				err != NULL ? err : "error");
			free(err);
			errno = EIO;
			return -1;
		}
		b.blob = name;
	}
	buf_reset(built);
	int r = imap_search_load(cx->sn, &b, true, &cx->blob, m, mc, built);
	int e = errno;
	if (r == 0 && m->len != sm->size)
		buf_reset(built); /* not all read: no cache of it is kept */
	free(name);
	errno = e;
	return r;
}

static int match_each(void *arg, const struct store_msg *sm)
{
	struct match_ctx *cx = arg;
	struct search_job *j = cx->j;
	struct imap_msg m;
	struct mime_cache mc;
	size_t at;
	struct buf built = BUF_INIT;

	if (!imap_uid_find(j->uids, j->n, sm->uid, &at))
		return 0;
	imap_search_msg(&m, sm);
	m.seq = j->seqs[at];
	if (imap_recent_in(j->recent, j->n_recent, sm->uid))
		m.sysflags |= IMAP_F_RECENT;
	/* SORT's keys: the narrow row when the body has one (a bad one is
	 * taken as no keys rather than failing the command), else the cache */
	struct mime_sortinfo si_row;
	const struct mime_sortinfo *si = NULL;
	if (sm->sortkeys != NULL && j->thread_keys) {
		m.thread_keys = sm->sortkeys;
		m.thread_keys_len = sm->sortkeys_len;
	} else if (sm->sortkeys != NULL) {
		if (mime_sort_open(sm->sortkeys, sm->sortkeys_len, &si_row))
			si = &si_row;
		else
			log_warn("imap: search: bad sort keys for body %" PRId64, sm->message_id);
	} else if ((j->needs_blob || j->sort_cache || j->sent_rows) &&
		   imap_search_load(cx->sn, sm, j->needs_blob, &cx->blob, &m, &mc, &built) < 0) {
		if (errno == ENOENT)
			return 0; /* gone meanwhile */
		/* no descriptor left (EMFILE...): the search fails rather than
		 * answering without this message */
		cx->err = xasprintf("blob %s: %s", sm->blob, strerror(errno));
		return 1;
	}
	if (j->sent_rows && m.msg == NULL) {
		/* SENT*: the day the sort keys keep (the row's, else the
		 * cache's), else the file's Date: field */
		const struct mime_sortinfo *ss = si != NULL     ? si
						 : m.mc != NULL ? mime_cache_sort(m.mc)
								: NULL;
		if (ss != NULL && (ss->flags & MSI_SENT)) {
			m.sent_known = true;
			m.sent_day = ss->sent_day;
		} else if (sent_from_file(cx, sm, &m, &mc, &built) < 0) {
			buf_free(&built);
			if (errno == ENOENT)
				return 0;
			cx->err =
			    xasprintf("body %" PRId64 ": %s", sm->message_id, strerror(errno));
			return 1;
		}
	}
	if (j->ctx_on) {
		if (j->cx_n == j->cx_cap) {
			j->cx_cap = j->cx_cap ? j->cx_cap * 2 : 64;
			j->cx_uid = xrealloc(j->cx_uid, j->cx_cap * sizeof *j->cx_uid);
			j->cx_bits = xrealloc(j->cx_bits, j->cx_cap * sizeof *j->cx_bits);
		}
		j->cx_uid[j->cx_n] = m.uid;
		j->cx_bits[j->cx_n++] = imap_ctx_leaf_bits(j->leaf, j->n_leaf, &m);
	}
	bool rows = j->sort && j->order == NULL;
	bool match = imap_search_match(&j->q, &m, j->saved, j->n_saved);
	if (rows && (match || j->fill)) {
		if (j->n_rows == j->cap_rows) {
			/* a row of every message (fill): as many as the view
			 * has, at once (doubling would copy them all, 110 MB at
			 * 1,000,000 messages, while both arrays are held) */
			j->cap_rows = j->cap_rows  ? j->cap_rows * 2
				      : j->fill    ? (j->view_count > 64 ? j->view_count : 64)
						   : 64;
			j->rows = xrealloc(j->rows, j->cap_rows * sizeof *j->rows);
		}
		if (si == NULL && m.mc != NULL)
			si = mime_cache_sort(m.mc);
		imap_sort_row_fill(&j->q, &m, si, &j->rows[j->n_rows]);
		j->rows[j->n_rows++].match = match;
	} else if (!rows && match) {
		if (j->n_res == j->cap_res) {
			j->cap_res = j->cap_res ? j->cap_res * 2 : 64;
			j->res_uid = xrealloc(j->res_uid, j->cap_res * sizeof *j->res_uid);
			j->res_seq = xrealloc(j->res_seq, j->cap_res * sizeof *j->res_seq);
			j->res_mod = xrealloc(j->res_mod, j->cap_res * sizeof *j->res_mod);
		}
		j->res_uid[j->n_res] = m.uid;
		j->res_seq[j->n_res] = m.seq;
		j->res_mod[j->n_res] = m.modseq;
		j->n_res++;
		if (m.modseq > j->max_modseq)
			j->max_modseq = m.modseq;
		if (j->hooks != NULL)
			j->hooks->match(j->hooks->arg, &m);
	}
	if ((j->sort_keys || j->thread_keys || j->sent_rows) && sm->sortkeys == NULL &&
	    built.len == 0 && m.mc != NULL && sm->cache != NULL) {
		/* a body stored before sort_keys (or their thread column), with
		 * a current cache: saving it again writes its keys
		 * (store_cache_save), once */
		buf_append(&built, sm->cache, sm->cache_len);
	}
	if (built.len > 0) {
		if (j->n_saves == j->cap_saves) {
			j->cap_saves = j->cap_saves ? j->cap_saves * 2 : 8;
			j->saves = xrealloc(j->saves, j->cap_saves * sizeof *j->saves);
		}
		j->saves[j->n_saves].id = sm->message_id;
		j->saves[j->n_saves].cache = built;
		j->n_saves++;
	} else {
		buf_free(&built);
	}
	return 0;
}

/* ---- confirming a slice in parallel, on a worker ----
 *
 * A slice that reads message files (BODY, TEXT, HEADER... on the index's
 * candidates, or on every message without an index) is first read from the
 * snapshot into rows (one query), then confirmed by this worker and a
 * helper thread taking rows in turn: reading and decoding use both cores,
 * and the files SEARCH_AHEAD rows ahead are announced to the kernel
 * (posix_fadvise WILLNEED), so a cold cache reads them with many requests
 * in flight instead of one at a time. The results are kept per row and
 * taken in UID order afterwards; the loop is not involved. */

enum { ROW_IDLE, ROW_OPENING, ROW_OPEN, ROW_TAKEN };

struct confirm_row {
	struct store_msg sm; /* flags, blob, cache: copies owned here */
	uint32_t seq;
	uint64_t read_len; /* octets to read: the header's, 0 = the whole file */
	_Atomic int state;  /* ROW_* */
	int fd;             /* ROW_OPEN: opened ahead, -1 if that failed */
	bool matched, gone;
	int err; /* the file could not be opened, not for an expunge (errno) */
	struct buf built; /* a MIME cache built here, to be saved */
};

struct confirm {
	struct search_job *j;
	struct store_snap *sn;
	struct confirm_row *rows;
	size_t n, cap;
	_Atomic size_t next;  /* the next row to match */
	_Atomic size_t ahead; /* the next row to announce */
	/* an open ahead failed for want of a descriptor (EMFILE...): the
	 * files are no longer opened ahead in this slice, so that the ones
	 * held drain and each row can still open its own */
	atomic_bool ahead_off;
	/* the descriptors this slice closed after reading (row_open_own waits
	 * for one while the other thread holds the last) */
	_Atomic unsigned released;
	/* a row could not have a descriptor at all: the slice fails, the
	 * rows left are not read */
	atomic_bool failed;
};

static int collect_each(void *arg, const struct store_msg *sm)
{
	struct confirm *c = arg;
	struct search_job *j = c->j;
	size_t at;

	if (!imap_uid_find(j->uids, j->n, sm->uid, &at))
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->rows = xrealloc(c->rows, c->cap * sizeof *c->rows);
	}
	struct confirm_row *r = &c->rows[c->n++];
	memset(r, 0, sizeof *r);
	r->sm = *sm;
	r->sm.flags = xstrdup(sm->flags != NULL ? sm->flags : "");
	r->sm.blob = xstrdup(sm->blob);
	r->sm.cache = NULL;
	r->sm.cache_len = 0;
	if (sm->cache != NULL && sm->cache_len > 0) {
		void *p = xmalloc(sm->cache_len);
		memcpy(p, sm->cache, sm->cache_len);
		r->sm.cache = p;
		r->sm.cache_len = sm->cache_len;
	}
	r->sm.ftext = NULL;
	if (sm->ftext != NULL && sm->ftext_raw <= SEARCH_TEXT_MAX) {
		void *p = xmalloc(sm->ftext_len ? sm->ftext_len : 1);
		memcpy(p, sm->ftext, sm->ftext_len);
		r->sm.ftext = p;
	}
	r->seq = j->seqs[at];
	r->fd = -1;
	atomic_init(&r->state, ROW_IDLE);
	if (j->hdr_only && r->sm.cache != NULL) {
		struct mime_cache mc;
		if (mime_cache_open(&mc, r->sm.cache, r->sm.cache_len))
			r->read_len = mime_cache_header_end(&mc);
		/* the part table is checked against the cache only (up to 4 GiB):
		 * a header end past the message is a cache of something else,
		 * and the buffer is reserved before reading; the whole file then */
		if (r->read_len > r->sm.size)
			r->read_len = 0;
	}
	return 0;
}

static void rows_free(struct confirm *c)
{
	for (size_t i = 0; i < c->n; i++) {
		struct confirm_row *r = &c->rows[i];
		if (r->fd >= 0)
			close(r->fd);
		free((char *)r->sm.flags);
		free((char *)r->sm.blob);
		free((void *)r->sm.cache);
		free((void *)r->sm.ftext);
		buf_free(&r->built);
	}
	free(c->rows);
	c->rows = NULL;
	c->n = c->cap = 0;
}

static int row_open(struct confirm *c, struct confirm_row *r)
{
	char *err = NULL;
	int fd;
	if (store_snap_blob_open(c->sn, r->sm.blob, &fd, &err) < 0) {
		int e = errno;
		free(err);
		errno = e; /* ENOENT: expunged meanwhile */
		return -1;
	}
	return fd;
}

/* Closes one file held ahead (a row announced but not taken yet), whose
 * row then opens its own when matched: true if there was one. */
static bool ahead_steal(struct confirm *c)
{
	size_t lim = atomic_load(&c->ahead);
	if (lim > c->n)
		lim = c->n;
	for (size_t k = atomic_load(&c->next); k < lim; k++) {
		struct confirm_row *r = &c->rows[k];
		int want = ROW_OPEN;
		if (!atomic_compare_exchange_strong(&r->state, &want, ROW_OPENING))
			continue;
		bool had = r->fd >= 0;
		if (had)
			close(r->fd);
		r->fd = -1;
		atomic_store(&r->state, ROW_OPEN);
		if (had)
			return true;
	}
	return false;
}

/* r's file on a descriptor of its own. Without one (EMFILE, ENFILE) it is
 * not a failure while one can be had: a file held ahead is closed for it,
 * or it waits for the other thread to close the one it reads (the two
 * threads race for the last descriptors, and the announcements of either
 * may take one just before the other opens); or for one the rest of the
 * process held a moment. It fails when none was freed for
 * ROW_OPEN_WAIT_US, and then the slice fails. -1 with errno set. */
#define ROW_OPEN_WAIT_US 50000
#define ROW_OPEN_POLL_US 200
static int row_open_own(struct confirm *c, struct confirm_row *r)
{
	unsigned seen = atomic_load(&c->released), waited = 0;
	for (;;) {
		int fd = row_open(c, r);
		if (fd >= 0 || (errno != EMFILE && errno != ENFILE))
			return fd;
		int e = errno;
		atomic_store(&c->ahead_off, true);
		if (atomic_load(&c->failed))
			return errno = e, -1;
		if (ahead_steal(c))
			continue;
		unsigned now = atomic_load(&c->released);
		if (now != seen) {
			seen = now;
			waited = 0;
		} else if (waited >= ROW_OPEN_WAIT_US / ROW_OPEN_POLL_US) {
			atomic_store(&c->failed, true);
			return errno = e, -1;
		}
		waited++;
		struct timespec ts = {0, ROW_OPEN_POLL_US * 1000L};
		nanosleep(&ts, NULL);
	}
}

/* Announces the files of the rows up to lim (exclusive). */
static void announce(struct confirm *c, size_t lim)
{
	if (lim > c->n)
		lim = c->n;
	for (;;) {
		size_t k = atomic_load(&c->ahead);
		if (k >= lim || atomic_load(&c->ahead_off))
			return;
		if (!atomic_compare_exchange_weak(&c->ahead, &k, k + 1))
			continue;
		struct confirm_row *r = &c->rows[k];
		int want = ROW_IDLE;
		if (r->sm.ftext != NULL)
			continue; /* its text, not its file (confirm_text) */
		if (!atomic_compare_exchange_strong(&r->state, &want, ROW_OPENING))
			continue; /* being matched already */
		r->fd = row_open(c, r);
		if (r->fd >= 0)
			posix_fadvise(r->fd, 0, (off_t)r->read_len, POSIX_FADV_WILLNEED);
		else if (errno != ENOENT)
			atomic_store(&c->ahead_off, true);
		atomic_store(&r->state, ROW_OPEN);
	}
}

/* Matches r on the index's text of its body (j->text_ok): false if that
 * text does not inflate to its length (then the file is read). */
static bool confirm_text(struct confirm *c, struct confirm_row *r, struct buf *tb)
{
	struct search_job *j = c->j;
	uLongf n = (uLongf)r->sm.ftext_raw;
	buf_reset(tb);
	buf_reserve(tb, (size_t)n + 1);
	if (uncompress((Bytef *)tb->data, &n, r->sm.ftext, (uLong)r->sm.ftext_len) != Z_OK ||
	    n != (uLongf)r->sm.ftext_raw) {
		log_warn("imap: search: the index's text of body %" PRId64 " is damaged; reading"
			 " its file",
			 r->sm.message_id);
		return false;
	}
	tb->len = (size_t)n;
	struct imap_msg m;
	imap_search_msg(&m, &r->sm);
	m.seq = r->seq;
	if (imap_recent_in(j->recent, j->n_recent, r->sm.uid))
		m.sysflags |= IMAP_F_RECENT;
	m.body_text = tb->data;
	m.body_text_len = tb->len;
	r->matched = imap_search_match(&j->q, &m, j->saved, j->n_saved);
	return true;
}

/* Reads r's file (or its header) into bl and matches it. */
static void confirm_row(struct confirm *c, struct confirm_row *r, struct imap_blob *bl)
{
	struct search_job *j = c->j;
	int want = ROW_IDLE, fd;

	if (r->sm.ftext != NULL && confirm_text(c, r, &bl->b))
		return;
	/* taken from ROW_IDLE (not announced) or ROW_OPEN (announced: its
	 * file, if it could be opened and was not closed for another row);
	 * ROW_OPENING is short (an open and an fadvise, or a close) */
	for (;;) {
		if (atomic_compare_exchange_strong(&r->state, &want, ROW_TAKEN)) {
			fd = want == ROW_OPEN ? r->fd : -1;
			r->fd = -1;
			break;
		}
		if (want == ROW_OPENING) {
			sched_yield();
			want = ROW_IDLE;
		}
	}
	if (fd < 0) /* not opened ahead: now, with a descriptor of its own */
		fd = row_open_own(c, r);
	if (fd < 0) {
		/* expunged meanwhile; any other failure (no descriptor left)
		 * fails the search rather than leaving the message out of the
		 * answer as if it did not match */
		r->gone = true;
		if (errno != ENOENT)
			r->err = errno;
		return;
	}
	struct imap_msg m;
	struct mime_cache mc;
	bool have_mc = r->sm.cache != NULL &&
		       mime_cache_open(&mc, r->sm.cache, r->sm.cache_len);
	const char *p = "";
	size_t len = 0;
	if (have_mc && r->read_len > 0) {
		/* the header alone */
		buf_reset(&bl->b);
		buf_reserve(&bl->b, (size_t)r->read_len + 1);
		while (len < r->read_len) {
			ssize_t n = pread(fd, bl->b.data + len, (size_t)r->read_len - len,
					  (off_t)len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		p = bl->b.data;
	} else if (imap_blob_load(bl, fd, &p, &len) < 0) {
		p = "";
		len = 0;
	}
	close(fd);
	atomic_fetch_add(&c->released, 1);
	imap_search_msg(&m, &r->sm);
	m.seq = r->seq;
	if (imap_recent_in(j->recent, j->n_recent, r->sm.uid))
		m.sysflags |= IMAP_F_RECENT;
	m.msg = p;
	m.len = len;
	if (have_mc) {
		m.mc = &mc;
	} else {
		mime_cache_build(p, len, &r->built);
		if (mime_cache_open(&mc, r->built.data, r->built.len))
			m.mc = &mc;
	}
	r->matched = imap_search_match(&j->q, &m, j->saved, j->n_saved);
}

static void confirm_run(struct confirm *c)
{
	struct imap_blob bl = {BUF_INIT, NULL, 0};
	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);
		if (i >= c->n || atomic_load(&c->failed))
			break;
		announce(c, i + SEARCH_AHEAD);
		confirm_row(c, &c->rows[i], &bl);
	}
	imap_blob_free(&bl);
}

static void *confirm_helper(void *arg)
{
	pool_background_thread();
	confirm_run(arg);
	return NULL;
}

/* The slice j->uids read and matched in parallel (a SEARCH whose keys read
 * the message, without SORT, CONTEXT or hooks): the matches appended to
 * j's results in UID order. */
static int confirm_slice(struct search_job *j, struct store_snap *sn,
			 const struct store_uid_range *r, size_t nr, char **err_r)
{
	struct confirm c = {.j = j, .sn = sn};
	pthread_t helpers[SEARCH_CONFIRM_THREADS - 1];
	size_t started = 0;

	atomic_init(&c.next, 0);
	atomic_init(&c.ahead, 0);
	atomic_init(&c.ahead_off, false);
	atomic_init(&c.released, 0);
	atomic_init(&c.failed, false);
	int res = store_snap_messages(sn, j->user, j->mailbox, j->uidvalidity, r, nr, 0,
				      j->text_ok ? STORE_MSG_CACHE_TEXT : STORE_MSG_CACHE,
				      collect_each, &c, err_r);
	if (res < 0) {
		rows_free(&c);
		return -1;
	}
	announce(&c, SEARCH_AHEAD);
	/* a helper only when there is enough to share */
	for (size_t t = 0; c.n > 4 && t < SEARCH_CONFIRM_THREADS - 1; t++)
		if (pthread_create(&helpers[started], NULL, confirm_helper, &c) == 0)
			started++;
	confirm_run(&c);
	for (size_t t = 0; t < started; t++)
		pthread_join(helpers[t], NULL);
	for (size_t i = 0; i < c.n; i++)
		if (c.rows[i].err != 0) {
			*err_r = xasprintf("blob %s: %s", c.rows[i].sm.blob, strerror(c.rows[i].err));
			rows_free(&c);
			return -1;
		}
	for (size_t i = 0; i < c.n; i++) {
		struct confirm_row *row = &c.rows[i];
		if (row->gone)
			continue;
		if (row->matched) {
			if (j->n_res == j->cap_res) {
				j->cap_res = j->cap_res ? j->cap_res * 2 : 64;
				j->res_uid = xrealloc(j->res_uid, j->cap_res * sizeof *j->res_uid);
				j->res_seq = xrealloc(j->res_seq, j->cap_res * sizeof *j->res_seq);
				j->res_mod = xrealloc(j->res_mod, j->cap_res * sizeof *j->res_mod);
			}
			j->res_uid[j->n_res] = row->sm.uid;
			j->res_seq[j->n_res] = row->seq;
			j->res_mod[j->n_res] = row->sm.modseq;
			j->n_res++;
			if (row->sm.modseq > j->max_modseq)
				j->max_modseq = row->sm.modseq;
		}
		if (row->built.len > 0) {
			if (j->n_saves == j->cap_saves) {
				j->cap_saves = j->cap_saves ? j->cap_saves * 2 : 8;
				j->saves = xrealloc(j->saves, j->cap_saves * sizeof *j->saves);
			}
			j->saves[j->n_saves].id = row->sm.message_id;
			j->saves[j->n_saves].cache = row->built;
			j->n_saves++;
			row->built = (struct buf)BUF_INIT;
		}
	}
	rows_free(&c);
	return 0;
}

static int search_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct search_job *j = arg;
	struct match_ctx cx = {j, sn, {BUF_INIT, NULL, 0}, NULL};
	struct store_uid_range *r;
	size_t nr = 0;
	int res;

	if (j->n == 0)
		return 0;
	r = xmalloc(j->n * sizeof *r);
	for (size_t i = 0; i < j->n; i++) {
		if (nr > 0 && r[nr - 1].hi + 1 == j->uids[i]) {
			r[nr - 1].hi = j->uids[i];
		} else {
			r[nr].lo = r[nr].hi = j->uids[i];
			nr++;
		}
	}
	if (j->parallel)
		res = confirm_slice(j, sn, r, nr, err_r);
	else
		res = store_snap_messages(sn, j->user, j->mailbox, j->uidvalidity, r, nr, 0,
					  j->sort_keys                     ? STORE_MSG_SORT
					  : j->thread_keys                 ? STORE_MSG_THREAD
					  : j->sent_rows && !j->sort_cache ? STORE_MSG_SORT
					  : j->needs_blob || j->sort_cache ? STORE_MSG_CACHE
									   : STORE_MSG_PLAIN,
					  match_each, &cx, err_r);
	if (cx.err != NULL && res >= 0) {
		*err_r = cx.err;
		res = -1;
	} else {
		free(cx.err);
	}
	free(r);
	imap_blob_free(&cx.blob);
	return res < 0 ? -1 : 0;
}

/* ---- the response ---- */

static void write_out(struct search_job *j);

static const char *done_text(const struct search_job *j)
{
	if (j->sort)
		return j->s->uid ? "UID SORT completed" : "SORT completed";
	return j->s->uid ? "UID SEARCH completed" : "SEARCH completed";
}

static int cmp_uid(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void finish(struct search_job *j, const char *status, const char *code, const char *text)
{
	struct imap_session *s = j->s;

	detach(s);
	if (j->ctx_on && strcmp(status, "OK") == 0 && s->sel != NULL) {
		imap_ctx_start(s, &j->q, j->cx_uid, j->cx_bits, j->cx_n, j->res_uid, j->n_res);
		j->cx_uid = NULL;
		j->cx_bits = NULL;
	}
	job_free(j);
	imap_tagged(s, status, code, "%s", text);
	imap_cmd_done(s);
}

static void fmt_nums(struct buf *b, const uint32_t *v, size_t n)
{
	buf_reserve(b, n * 11);
	for (size_t i = 0; i < n; i++) {
		buf_appendc(b, ' ');
		buf_append_u64(b, v[i]);
	}
}

/* RFC 9394 3.1 / RFC 5267 4.4: the positions lo..hi (1-based; negative:
 * counted from the end) of the n results, as [*from, *to). */
static void partial_slice(const struct imap_search *q, size_t n, size_t *from, size_t *to)
{
	int64_t lo = q->partial_lo, hi = q->partial_hi;
	if (lo < 0) { /* -1 is the last */
		lo += (int64_t)n + 1;
		hi += (int64_t)n + 1;
	}
	if (lo < 1)
		lo = 1;
	if (hi > (int64_t)n)
		hi = (int64_t)n;
	*from = *to = 0;
	if (lo <= hi) {
		*from = (size_t)lo - 1;
		*to = (size_t)hi;
	}
}

/* Builds the response into j->out. For the plain SEARCH / SORT response
 * (which may be long) the numbers are added by write_out as the client
 * reads. */
static void respond(struct search_job *j)
{
	struct imap_session *s = j->s;
	struct imap_search *q = &j->q;
	const uint32_t *nums = s->uid ? j->res_uid : j->res_seq;
	bool esearch = q->esearch || (s->rev2 && !j->sort);

	/* RFC 5182 2.4: SAVE keeps the UIDs of what MIN/MAX (when only they
	 * are asked with SAVE) or of the whole result */
	if (q->ret_save && s->sel != NULL) {
		free(s->sel->saved);
		s->sel->saved = NULL;
		s->sel->n_saved = 0;
		if (j->n_res > 0) {
			bool only_minmax = (q->ret_min || q->ret_max) && !q->ret_all &&
					   !q->ret_count;
			uint32_t *v = xmalloc(j->n_res * sizeof *v);
			size_t n = 0;
			if (only_minmax) {
				if (q->ret_min)
					v[n++] = j->res_uid[0];
				if (q->ret_max && (n == 0 || v[0] != j->res_uid[j->n_res - 1]))
					v[n++] = j->res_uid[j->n_res - 1];
			} else {
				memcpy(v, j->res_uid, j->n_res * sizeof *v);
				n = j->n_res;
			}
			if (j->sort) /* "$" is kept in UID order (search.c) */
				qsort(v, n, sizeof *v, cmp_uid);
			s->sel->saved = v;
			s->sel->n_saved = n;
		}
	}
	buf_reset(&j->out);
	if (!esearch) {
		buf_appends(&j->out, j->sort ? "* SORT" : "* SEARCH");
		j->out_i = 0;
		j->writing = true;
		write_out(j);
		return;
	}
	bool any = q->ret_min || q->ret_max || q->ret_all || q->ret_count || q->ret_partial;
	if (q->ret_save && !any && q->esearch) {
		/* RFC 5182 2.4: SAVE alone: no ESEARCH response */
		finish(j, "OK", NULL, done_text(j));
		return;
	}
	if (!any && !q->ret_update) /* RFC 4731 3.1: RETURN () means ALL */
		q->ret_all = true;
	buf_appends(&j->out, "* ESEARCH (TAG ");
	imap_append_string(&j->out, s->tag, strlen(s->tag));
	buf_appends(&j->out, ")");
	if (s->uid)
		buf_appends(&j->out, " UID");
	if (j->n_res > 0) {
		/* RFC 5267 3: for SORT, the first and last in the sort order */
		if (q->ret_min)
			buf_printf(&j->out, " MIN %" PRIu32, nums[0]);
		if (q->ret_max)
			buf_printf(&j->out, " MAX %" PRIu32, nums[j->n_res - 1]);
	}
	if (q->ret_count)
		buf_printf(&j->out, " COUNT %zu", j->n_res);
	if (q->ret_all && j->n_res > 0) {
		buf_appends(&j->out, " ALL ");
		if (j->sort)
			imap_seqset_format(&j->out, nums, j->n_res);
		else
			imap_seqset_format(&j->out, nums, j->n_res);
	}
	if (q->ret_partial) {
		/* RFC 9394 3.1: PARTIAL (range set-or-NIL) */
		size_t from, to;
		partial_slice(q, j->n_res, &from, &to);
		if (q->partial_lo < 0)
			buf_printf(&j->out, " PARTIAL (%" PRId64 ":%" PRId64 " ", q->partial_hi,
				   q->partial_lo);
		else
			buf_printf(&j->out, " PARTIAL (%" PRId64 ":%" PRId64 " ", q->partial_lo,
				   q->partial_hi);
		if (from < to)
			imap_seqset_format(&j->out, nums + from, to - from);
		else
			buf_appends(&j->out, "NIL");
		buf_appends(&j->out, ")");
	}
	if (j->has_modseq_key && j->n_res > 0 && (q->ret_all || q->ret_min || q->ret_max)) {
		/* RFC 7162 3.1.5 (RFC 4731 with CONDSTORE): the highest
		 * mod-sequence of the messages the response names */
		uint64_t mod = j->max_modseq;
		if (!q->ret_all) {
			mod = 0;
			if (q->ret_min)
				mod = j->res_mod[0];
			if (q->ret_max && j->res_mod[j->n_res - 1] > mod)
				mod = j->res_mod[j->n_res - 1];
		}
		buf_printf(&j->out, " MODSEQ %" PRIu64, mod);
	}
	buf_appends(&j->out, "\r\n");
	j->out_i = j->n_res; /* nothing more to add */
	j->writing = true;
	write_out(j);
}

static void write_out(struct search_job *j)
{
	struct imap_session *s = j->s;
	const uint32_t *nums = s->uid ? j->res_uid : j->res_seq;
	bool esearch = j->q.esearch || (s->rev2 && !j->sort);

	while (imap_alive(s)) {
		if (!session_output_room(&s->base)) {
			session_output_wait(&s->base);
			return;
		}
		if (!esearch && j->out_i < j->n_res) {
			size_t n = j->n_res - j->out_i;
			if (n > 4096)
				n = 4096;
			fmt_nums(&j->out, nums + j->out_i, n);
			j->out_i += n;
			if (j->out_i == j->n_res) {
				/* RFC 7162 3.1.5 */
				if (j->has_modseq_key && j->n_res > 0)
					buf_printf(&j->out, " (MODSEQ %" PRIu64 ")", j->max_modseq);
				buf_appends(&j->out, "\r\n");
			}
		} else if (!esearch && j->n_res == 0 && j->out.len > 0 &&
			   j->out.data[j->out.len - 1] != '\n') {
			buf_appends(&j->out, "\r\n");
		}
		if (j->out.len > 0) {
			size_t n = j->out.len > SEARCH_OUT_STEP ? SEARCH_OUT_STEP : j->out.len;
			imap_send(s, j->out.data, n);
			buf_consume(&j->out, n);
			continue;
		}
		finish(j, "OK", NULL, done_text(j));
		return;
	}
}

/* ---- SORT: the rows sorted on a worker ---- */

static void res_alloc(struct search_job *j, size_t n)
{
	j->cap_res = n;
	j->res_uid = xrealloc(j->res_uid, (n + 1) * sizeof *j->res_uid);
	j->res_seq = xrealloc(j->res_seq, (n + 1) * sizeof *j->res_seq);
	j->res_mod = xrealloc(j->res_mod, (n + 1) * sizeof *j->res_mod);
}

static void sort_work(void *arg)
{
	struct search_job *j = arg;

	imap_sort_rows(&j->q, j->rows, j->n_rows);
	if (j->fill) {
		j->filled = xmalloc((j->n_rows + 1) * sizeof *j->filled);
		j->n_filled = j->n_rows;
	}
	res_alloc(j, j->n_rows);
	j->n_res = 0;
	for (size_t i = 0; i < j->n_rows; i++) {
		struct imap_sort_row *r = &j->rows[i];
		if (j->fill)
			j->filled[i] = r->uid;
		if (r->match) {
			j->res_uid[j->n_res] = r->uid;
			j->res_seq[j->n_res] = r->seq;
			j->res_mod[j->n_res++] = r->modseq;
			if (r->modseq > j->max_modseq)
				j->max_modseq = r->modseq;
		}
		imap_sort_row_free(r);
	}
	x_free(&j->rows);
	j->n_rows = j->cap_rows = 0;
	if (j->fill && j->n_filled >= IMAP_SORT_STORED_MIN) {
		free(j->stored);
		j->stored = xmalloc(j->n_filled * sizeof *j->stored);
		memcpy(j->stored, j->filled, j->n_filled * sizeof *j->stored);
	}
}

/* SEARCH whose keys need only sequence numbers and UIDs: the view matched
 * on a worker, no store read */
static void view_work(void *arg)
{
	struct search_job *j = arg;

	size_t at;

	res_alloc(j, j->view_n);
	j->n_res = 0;
	for (size_t i = 0; i < j->view_n; i++) {
		struct imap_msg m = {0};
		m.uid = j->view[i];
		m.seq = (uint32_t)i + 1;
		if (imap_uid_find(j->gone, j->n_gone, m.uid, &at) ||
		    !imap_search_match(&j->q, &m, j->saved, j->n_saved))
			continue;
		j->res_uid[j->n_res] = m.uid;
		j->res_seq[j->n_res] = m.seq;
		j->res_mod[j->n_res++] = 0;
	}
}

/* The matches in the kept order: the view's messages matched here
 * (order_view), or the slices' matches (in UID order) looked up. */
static void order_work(void *arg)
{
	struct search_job *j = arg;
	const struct imap_sort_order *o = j->order;
	uint32_t *uid = xmalloc((o->n + 1) * sizeof *uid);
	uint32_t *seq = xmalloc((o->n + 1) * sizeof *seq);
	uint64_t *mod = xmalloc((o->n + 1) * sizeof *mod);
	size_t n = 0, at, skip;

	for (size_t i = 0; i < o->n; i++) {
		if (j->order_view) {
			struct imap_msg m = {0};
			if (!imap_uid_find(j->view, j->view_n, o->uids[i], &at))
				continue; /* expunged before this view */
			if (imap_uid_find(j->gone, j->n_gone, o->uids[i], &skip))
				continue; /* since */
			m.uid = o->uids[i];
			m.seq = (uint32_t)at + 1;
			if (!imap_search_match(&j->q, &m, j->saved, j->n_saved))
				continue;
			uid[n] = m.uid;
			seq[n] = m.seq;
			mod[n++] = 0;
		} else if (imap_uid_find(j->res_uid, j->n_res, o->uids[i], &at)) {
			uid[n] = j->res_uid[at];
			seq[n] = j->res_seq[at];
			mod[n++] = j->res_mod[at];
		}
	}
	/* every match of the slices is in the order (sortorder.c); if not, the
	 * loop sorts again without it */
	j->order_short = !j->order_view && n < j->n_res;
	free(j->res_uid);
	free(j->res_seq);
	free(j->res_mod);
	j->res_uid = uid;
	j->res_seq = seq;
	j->res_mod = mod;
	j->n_res = n;
	j->cap_res = o->n;
}

/* A worker step of j ended: false (j freed) if the command stopped. */
static bool job_back(struct search_job *j)
{
	struct imap_session *s = j->s;

	j->inflight = false;
	if (j->aborted || !imap_alive(s)) {
		if (s->job == j)
			detach(s);
		job_drop(j);
		session_release(&s->base);
		return false;
	}
	session_release(&s->base);
	return true;
}

static void slice_next(struct search_job *j);

static void view_done(void *arg)
{
	struct search_job *j = arg;

	if (job_back(j))
		respond(j);
}

/* the kept order lacked a match (never expected): sorted again without it */
static void sort_again(struct search_job *j)
{
	log_err("imap %s: sort: the kept order of %s lacks a message; sorting again",
		j->s->base.ip, j->mailbox);
	imap_sort_order_forget(j->s->srv->sort_orders, j->order);
	imap_sort_order_unref(&j->order);
	j->order_view = j->order_short = false;
	j->n_res = 0;
	j->max_modseq = 0;
	j->next_idx = 0;
	j->sort_keys = true;
	j->sort_cache = imap_sort_needs_cache(&j->q);
	slice_next(j);
}

static void sort_done(void *arg)
{
	struct search_job *j = arg;

	if (!job_back(j))
		return;
	if (j->order_short) {
		sort_again(j);
		return;
	}
	if (j->filled != NULL) {
		log_debug("imap %s: sort: order of %zu messages kept", j->s->base.ip, j->n_filled);
		if (j->stored != NULL) {
			uint8_t crit[IMAP_SORT_MAX_CRIT];
			size_t n;
			imap_sort_crit(&j->q, crit, &n);
			store_sort_order_save(j->st, j->user, j->mailbox, j->uidvalidity, crit, n,
					      j->view_max, j->stored, j->n_filled);
			j->stored = NULL;
		}
		imap_sort_order_put(j->s->srv->sort_orders, j->user, j->uidvalidity, &j->q, j->view_max,
				    j->filled, j->n_filled);
		j->filled = NULL;
	}
	respond(j);
}

/* ---- slices ---- */

static size_t slice_max(const struct search_job *j)
{
	if (j->needs_blob)
		return SEARCH_SLICE_BLOB_MSGS;
	if (j->sort_keys || j->thread_keys)
		return SEARCH_SLICE_MSGS;
	return j->sort_cache ? SEARCH_SLICE_CACHE_MSGS : SEARCH_SLICE_MSGS;
}

/* imap_search_run: the matches were handed to hooks->match; the caller's
 * done takes the (still parked) session over. */
static void hand_over(struct search_job *j, int result)
{
	struct imap_session *s = j->s;
	const struct imap_search_hooks *h = j->hooks;

	detach(s);
	job_free(j);
	h->done(h->arg, s, result);
}

static void search_done(void *arg, int result, const char *err)
{
	struct search_job *j = arg;
	struct imap_session *s = j->s;

	if (!job_back(j))
		return;
	for (size_t i = 0; i < j->n_saves; i++) {
		store_cache_save(j->st, j->saves[i].id, j->saves[i].cache.data,
				 j->saves[i].cache.len);
		buf_free(&j->saves[i].cache);
	}
	j->n_saves = 0;
	if (result < 0) {
		log_err("imap %s: search: %s", s->base.ip, err != NULL ? err : "error");
		if (j->hooks != NULL) {
			hand_over(j, -1);
			return;
		}
		if (j->q.ret_save && s->sel != NULL) {
			/* RFC 5182 2.1: a failed SAVE empties "$" */
			x_free(&s->sel->saved);
			s->sel->n_saved = 0;
		}
		finish(j, "NO", "UNAVAILABLE", "Mailbox cannot be searched now");
		return;
	}
	slice_next(j);
}

static void slice_next(struct search_job *j)
{
	struct imap_session *s = j->s;
	uint32_t count = imap_view_count(s);
	const uint32_t *uids = imap_view_uids(s);
	size_t max = slice_max(j);

	if (j->next_idx >= count || (j->narrowed && j->cand_i >= j->n_cand)) {
		if (j->sort) {
			j->inflight = true;
			s->base.busy++;
			pool_submit(s->srv->bulk, j->order != NULL ? order_work : sort_work,
				    sort_done, j);
		} else if (j->hooks != NULL) {
			hand_over(j, 0);
		} else {
			respond(j);
		}
		return;
	}
	j->n = 0;
	while (j->n < max && j->next_idx < count) {
		if (j->narrowed) { /* skip the UIDs the index ruled out */
			while (j->cand_i < j->n_cand && j->cand[j->cand_i] < uids[j->next_idx])
				j->cand_i++;
			if (j->cand_i == j->n_cand)
				break;
			if (j->cand[j->cand_i] != uids[j->next_idx]) {
				j->next_idx++;
				continue;
			}
		}
		j->uids[j->n] = uids[j->next_idx];
		j->seqs[j->n] = j->next_idx + 1;
		j->n++;
		j->next_idx++;
	}
	j->inflight = true;
	s->base.busy++;
	store_read(j->st, s->srv->bulk, search_work, search_done, j);
}

/* ---- the full-text index: candidates first (store/fts.c) ---- */

/* true if every key of k that reads the message reads only its top-level
 * header (imap/search.c: HEADER with SUBJECT, FROM, TO, CC, BCC; SENT*
 * read the Date: field) */
static bool keys_hdr_only(const struct imap_search_key *k)
{
	if (k->kind == IMAP_SK_BODY || k->kind == IMAP_SK_TEXT)
		return false;
	for (size_t i = 0; i < k->n_sub; i++)
		if (!keys_hdr_only(&k->sub[i]))
			return false;
	return true;
}

static int cand_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct search_job *j = arg;
	int r = store_fts_candidates(sn, j->user, j->mailbox, j->uidvalidity, j->fq, &j->cand,
				     &j->n_cand, err_r);
	j->narrowed = r == 1;
	/* the candidates are confirmed in parallel, reading only the header
	 * where the keys need no more (a search the index cannot narrow reads
	 * every message, one after the other, as without an index) */
	j->parallel = j->narrowed && !j->sort && j->hooks == NULL;
	j->hdr_only = j->parallel && keys_hdr_only(&j->q.root);
	j->text_ok = j->parallel && imap_search_text_ready(&j->q);
	return r < 0 ? -1 : 0;
}

static void cand_done(void *arg, int result, const char *err)
{
	struct search_job *j = arg;
	if (result < 0) { /* the scan still answers */
		log_warn("imap %s: search index: %s", j->s->base.ip, err != NULL ? err : "error");
		j->narrowed = false;
		j->parallel = j->hdr_only = j->text_ok = false;
	}
	search_done(arg, 0, NULL);
}

static void search_drained(struct imap_session *s)
{
	struct search_job *j = s->job;
	if (j != NULL && j->writing)
		write_out(j);
}

static void search_abort(struct imap_session *s)
{
	struct search_job *j = s->job;

	detach(s);
	if (j == NULL)
		return;
	j->aborted = true;
	if (!j->inflight)
		job_drop(j);
}

/* "*" in the sets of the keys: the highest sequence number or UID. */
static void resolve_keys(struct imap_session *s, struct imap_search_key *k, bool *modseq)
{
	uint32_t n = imap_view_count(s);
	if (k->kind == IMAP_SK_SEQSET && !k->set.dollar)
		imap_seqset_resolve(&k->set, n);
	else if (k->kind == IMAP_SK_UIDSET && !k->set.dollar)
		imap_seqset_resolve(&k->set, n > 0 ? imap_view_uid(s, n) : 0);
	else if (k->kind == IMAP_SK_MODSEQ)
		*modseq = true;
	for (size_t i = 0; i < k->n_sub; i++)
		resolve_keys(s, &k->sub[i], modseq);
}

/* true if every key is answered from the sequence number and UID alone */
static bool keys_seq_only(const struct imap_search_key *k)
{
	if (k->kind != IMAP_SK_ALL && k->kind != IMAP_SK_AND && k->kind != IMAP_SK_OR &&
	    k->kind != IMAP_SK_NOT && k->kind != IMAP_SK_SEQSET && k->kind != IMAP_SK_UIDSET)
		return false;
	for (size_t i = 0; i < k->n_sub; i++)
		if (!keys_seq_only(&k->sub[i]))
			return false;
	return true;
}

/* true if a set at the top of the program leaves out most of the view (UID
 * SORT ... UID 99000:*): such a SORT sorts its matches only rather than
 * every message for an order to keep */
static bool narrow(const struct imap_session *s, const struct imap_search_key *root)
{
	uint32_t n = imap_view_count(s);
	const uint32_t *v = imap_view_uids(s);

	for (size_t i = 0; i < root->n_sub; i++) {
		const struct imap_search_key *k = &root->sub[i];
		uint64_t in = 0;
		if ((k->kind != IMAP_SK_SEQSET && k->kind != IMAP_SK_UIDSET) || k->set.dollar)
			continue;
		for (size_t r = 0; r < k->set.n; r++) {
			uint32_t lo = k->set.v[r].lo, hi = k->set.v[r].hi;
			size_t a, b;
			if (k->kind == IMAP_SK_SEQSET) {
				if (lo <= n)
					in += (hi < n ? hi : n) - lo + 1;
				continue;
			}
			imap_uid_find(v, n, lo, &a);
			if (hi == UINT32_MAX)
				b = n;
			else
				imap_uid_find(v, n, hi + 1, &b);
			in += b > a ? b - a : 0;
		}
		if (in * 2 < n)
			return true;
	}
	return false;
}

/* j->order (held) is used: the slices only match, if anything */
static void order_use(struct search_job *j, const char *how)
{
	struct imap_session *s = j->s;

	j->sort_keys = j->sort_cache = false;
	j->fill = false;
	j->order_view = keys_seq_only(&j->q.root);
	j->view = imap_view_uids(s);
	j->view_n = imap_view_count(s);
	j->gone = imap_sel_gone(s, &j->n_gone);
	log_debug("imap %s: sort: a %s order of %zu messages (%s)", s->base.ip, how, j->order->n,
		  j->order_view ? "no read" : "matches read");
}

/* At most this many new messages are merged into a kept order: each costs
 * about log2(n) random one-row reads, several times a row of the full
 * sort's sequential read, so k log2(n) stays below n / 8 (1,000,000
 * messages: ~6,000; 100,000: ~700); at least 64. More are sorted with the
 * rest. */
static size_t extend_max(size_t n)
{
	size_t lg = 1;
	while (lg < 63 && ((size_t)1 << lg) < n)
		lg++;
	size_t k = n / (8 * lg);
	return k > 64 ? k : 64;
}

/* true if few enough of the n messages of view (its UIDs, ascending) are
 * above max_uid to merge them into an order made for max_uid (a binary
 * search; on the loop, or on a worker while the session is parked) */
static bool few_new(const uint32_t *view, uint32_t n, uint32_t max_uid)
{
	size_t at;

	imap_uid_find(view, n, max_uid + 1, &at);
	return n - at <= extend_max(n);
}

/* the merged order's copy for the store, made on the worker */
static void extend_work_stored(struct search_job *j)
{
	if (j->x.n >= IMAP_SORT_STORED_MIN) {
		j->stored = xmalloc(j->x.n * sizeof *j->stored);
		memcpy(j->stored, j->x.uids, j->x.n * sizeof *j->stored);
	}
}

/* A stored order (store/sort_orders.c), on a worker. One made before the
 * view's newest messages gets them merged in here, in the same snapshot,
 * as a kept one does (extend_work), when few enough are new (the view is
 * the parked session's: few_new); else it is left unused and every
 * message sorted. */
static int load_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct search_job *j = arg;
	uint8_t crit[IMAP_SORT_MAX_CRIT];
	size_t n;

	imap_sort_crit(&j->q, crit, &n);
	if (store_snap_sort_order(sn, j->user, j->mailbox, j->uidvalidity, crit, n, &j->loaded_max,
				  &j->loaded, &j->n_loaded, err_r) < 0)
		return -1;
	if (j->loaded == NULL || j->loaded_max >= j->view_max)
		return 0;
	if (!few_new(j->view, (uint32_t)j->view_n, j->loaded_max)) {
		x_free(&j->loaded);
		return 0;
	}
	const struct imap_sort_order old = {
	    .max_uid = j->loaded_max, .uids = j->loaded, .n = j->n_loaded};
	j->x = (struct imap_sort_extend){.q = &j->q,
					 .order = &old,
					 .user = j->user,
					 .mailbox = j->mailbox,
					 .uidvalidity = j->uidvalidity,
					 .view_max = j->view_max,
					 .max_new = extend_max(j->view_count)};
	int r = imap_sort_order_extend(sn, &j->x, err_r);
	j->x.order = NULL;
	x_free(&j->loaded);
	if (r == 0)
		extend_work_stored(j);
	return r < 0 ? -1 : 0;
}

static void search_go(struct search_job *j);

/* j->x.uids: a kept or stored (from) order with the new mail merged in;
 * stored again from IMAP_SORT_STORED_MIN messages on (j->stored), kept, and
 * used for this SORT */
static void merged_use(struct search_job *j, const char *from)
{
	struct imap_session *s = j->s;

	log_debug("imap %s: sort: %zu new messages merged into a %s order (%zu reads)", s->base.ip,
		  j->x.n_new, from, j->x.probes);
	if (j->stored != NULL) {
		uint8_t crit[IMAP_SORT_MAX_CRIT];
		size_t n;
		imap_sort_crit(&j->q, crit, &n);
		store_sort_order_save(j->st, j->user, j->mailbox, j->uidvalidity, crit, n,
				      j->view_max, j->stored, j->x.n);
		j->stored = NULL;
	}
	imap_sort_order_put(s->srv->sort_orders, j->user, j->uidvalidity, &j->q, j->view_max,
			    j->x.uids, j->x.n);
	j->x.uids = NULL;
	j->order =
	    imap_sort_order_get(s->srv->sort_orders, j->user, j->uidvalidity, &j->q, j->view_max);
	if (j->order != NULL) {
		j->fill = false;
		order_use(j, "merged");
	}
}

static void load_done(void *arg, int result, const char *err)
{
	struct search_job *j = arg;
	struct imap_session *s = j->s;

	if (!job_back(j))
		return;
	if (result < 0) { /* sorted as without one */
		log_warn("imap %s: sort: stored order: %s", s->base.ip,
			 err != NULL ? err : "error");
	} else if (j->x.uids != NULL) {
		merged_use(j, "stored");
	} else if (j->loaded != NULL && j->loaded_max >= j->view_max) {
		imap_sort_order_put(s->srv->sort_orders, j->user, j->uidvalidity, &j->q,
				    j->loaded_max, j->loaded, j->n_loaded);
		j->loaded = NULL;
		j->order = imap_sort_order_get(s->srv->sort_orders, j->user, j->uidvalidity, &j->q,
					       j->view_max);
		if (j->order != NULL)
			order_use(j, "stored");
	}
	x_free(&j->loaded);
	x_free(&j->x.uids);
	x_free(&j->stored);
	search_go(j);
}

/* A kept order made before the view's newest messages (referenced), if
 * few enough are new to merge them in (sortmerge.c) */
static struct imap_sort_order *extendable(struct imap_session *s, struct search_job *j, uint32_t n)
{
	struct imap_sort_order *o = imap_sort_order_get_any(s->srv->sort_orders, j->user,
							    j->uidvalidity, &j->q);

	if (o == NULL || o->max_uid >= j->view_max)
		goto no; /* none, or current: imap_sort_order_get takes it */
	if (!few_new(imap_view_uids(s), n, o->max_uid) || narrow(s, &j->q.root))
		goto no;
	return o;
no:
	imap_sort_order_unref(&o);
	return NULL;
}

static int extend_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct search_job *j = arg;
	int r = imap_sort_order_extend(sn, &j->x, err_r);

	if (r == 0)
		extend_work_stored(j);
	j->x.order = NULL; /* (the job's reference stays in j->stale) */
	return r < 0 ? -1 : (r == 0 ? 0 : 1);
}

static void extend_done(void *arg, int result, const char *err)
{
	struct search_job *j = arg;
	struct imap_session *s = j->s;

	if (!job_back(j))
		return;
	imap_sort_order_unref(&j->stale);
	if (result == 0 && j->x.uids != NULL) {
		merged_use(j, "kept");
	} else if (result < 0) { /* sorted as without one */
		log_warn("imap %s: sort: merging new mail: %s", s->base.ip,
			 err != NULL ? err : "error");
	}
	x_free(&j->x.uids);
	x_free(&j->stored);
	search_go(j);
}

static void search_start(struct imap_session *s, struct search_job *j)
{
	size_t max;

	resolve_keys(s, &j->q.root, &j->has_modseq_key);
	if (j->has_modseq_key)
		imap_enable_condstore(s); /* RFC 7162 3.1 */
	j->s = s;
	j->st = s->srv->st;
	j->user = xstrdup(s->user);
	j->mailbox = xstrdup(s->sel->name);
	j->uidvalidity = s->sel->uidvalidity;
	j->needs_blob = imap_search_needs_blob(&j->q) ||
			(j->hooks != NULL && j->hooks->needs_blob);
	if (j->needs_blob && (j->hooks == NULL || !j->hooks->needs_blob) &&
	    imap_search_sent_only(&j->q)) {
		/* SENT* alone: the sort keys keep the day (match_each) */
		j->needs_blob = false;
		j->sent_rows = true;
	}
	if (j->hooks != NULL && j->hooks->thread_keys) {
		j->sort_cache = true; /* the cache alone, as for SORT */
		/* THREAD with SENT* keys: the caches, which hold the thread
		 * keys and the sent day (STORE_MSG_THREAD has no sort keys) */
		j->thread_keys = !j->needs_blob && !j->sent_rows;
	}
	j->sort_keys = j->sort && !j->needs_blob;
	if (j->sort_keys && j->hooks == NULL && imap_view_count(s) > 0) {
		uint32_t n = imap_view_count(s);
		j->view_max = imap_view_uid(s, n);
		j->view_count = n;
		j->stale = extendable(s, j, n);
		if (j->stale == NULL)
			j->order = imap_sort_order_get(s->srv->sort_orders, j->user, j->uidvalidity,
						       &j->q, j->view_max);
		if (j->order != NULL) {
			order_use(j, "kept");
		} else {
			j->fill = imap_sort_orders_fit(s->srv->sort_orders, n) && !narrow(s, &j->q.root);
			j->load = j->fill && n >= IMAP_SORT_STORED_MIN && j->stale == NULL;
		}
	}
	j->recent = imap_sel_recent(s, &j->n_recent);
	if (s->sel->n_saved > 0) {
		j->saved = xmalloc(s->sel->n_saved * sizeof *j->saved);
		memcpy(j->saved, s->sel->saved, s->sel->n_saved * sizeof *j->saved);
		j->n_saved = s->sel->n_saved;
	}
	max = slice_max(j);
	j->uids = xmalloc(max * sizeof *j->uids);
	j->seqs = xmalloc(max * sizeof *j->seqs);
	s->job = j;
	s->job_drained = search_drained;
	s->job_abort = search_abort;
	session_park(&s->base);
	/* the index narrows what the slices read (not for a result kept up to
	 * date: CONTEXT=SEARCH evaluates every message's keys) */
	if (j->needs_blob && !j->ctx_on && store_fts_on(j->st) &&
	    (j->fq = imap_search_fts_query(&j->q))) {
		j->inflight = true;
		s->base.busy++;
		store_read(j->st, s->srv->bulk, cand_work, cand_done, j);
		return;
	}
	if (j->stale != NULL) { /* a kept order brought up to date first */
		j->x = (struct imap_sort_extend){.q = &j->q,
						 .order = j->stale,
						 .user = j->user,
						 .mailbox = j->mailbox,
						 .uidvalidity = j->uidvalidity,
						 .view_max = j->view_max,
						 .max_new = extend_max(j->view_count)};
		j->inflight = true;
		s->base.busy++;
		store_read(j->st, s->srv->bulk, extend_work, extend_done, j);
		return;
	}
	if (j->load) { /* a stored order first (new mail merged in: load_work) */
		j->view = imap_view_uids(s);
		j->view_n = imap_view_count(s);
		j->inflight = true;
		s->base.busy++;
		store_read(j->st, s->srv->bulk, load_work, load_done, j);
		return;
	}
	search_go(j);
}

/* the first step after search_start's (and a stored order's read) */
static void search_go(struct search_job *j)
{
	struct imap_session *s = j->s;

	if (j->order_view) {
		j->inflight = true;
		s->base.busy++;
		pool_submit(s->srv->bulk, order_work, sort_done, j);
		return;
	}
	if (!j->sort && j->hooks == NULL && !j->ctx_on && imap_view_count(s) > 0 &&
	    keys_seq_only(&j->q.root)) {
		j->view = imap_view_uids(s);
		j->view_n = imap_view_count(s);
		j->gone = imap_sel_gone(s, &j->n_gone);
		j->inflight = true;
		s->base.busy++;
		pool_submit(s->srv->bulk, view_work, view_done, j);
		return;
	}
	slice_next(j);
}

void imap_search_run(struct imap_session *s, struct imap_search *q,
		     const struct imap_search_hooks *hooks)
{
	struct search_job *j = xcalloc(1, sizeof *j);

	j->q = *q;
	memset(q, 0, sizeof *q);
	j->hooks = hooks;
	search_start(s, j);
}

void imap_cmd_search(struct imap_session *s, const struct imap_arg *args)
{
	imap_search_cmd(s, args, false);
}

void imap_search_cmd(struct imap_session *s, const struct imap_arg *args, bool sort)
{
	struct search_job *j = xcalloc(1, sizeof *j);
	bool bad_charset = false;
	const char *err = NULL;
	int r = sort ? imap_sort_parse(args, SEARCH_MAX_KEYS, &j->q, &bad_charset, &err)
		     : imap_search_parse(args, SEARCH_MAX_KEYS, &j->q, &bad_charset, &err);

	if (r < 0) {
		if (j->q.ret_save && s->sel != NULL) {
			x_free(&s->sel->saved);
			s->sel->n_saved = 0;
		}
		job_free(j);
		if (bad_charset) /* RFC 9051 6.4.4 */
			imap_tagged(s, "NO", "BADCHARSET (US-ASCII UTF-8)", "Unsupported charset");
		else
			imap_tagged(s, "BAD", NULL, "%s", err != NULL ? err : "Invalid search");
		return;
	}
	if (!sort && s->utf8 && j->q.charset != NULL) {
		/* RFC 6855 3 (erratum 4029): no CHARSET once UTF8=ACCEPT is
		 * enabled (conflicting charset labels) */
		if (j->q.ret_save && s->sel != NULL) {
			x_free(&s->sel->saved);
			s->sel->n_saved = 0;
		}
		job_free(j);
		imap_tagged(s, "BAD", NULL, "SEARCH CHARSET is not allowed with UTF8=ACCEPT");
		return;
	}
	j->sort = sort;
	j->sort_cache = sort && imap_sort_needs_cache(&j->q);
	if (j->q.ret_update) {
		/* RFC 5267 4.2: CONTEXT=SEARCH; a result the server does not
		 * keep up to date (SORT's, one with too many keys, beyond the
		 * limit per session) is answered, with NOUPDATE */
		if (sort || imap_ctx_leaves(&j->q, j->leaf, &j->n_leaf) < 0 ||
		    imap_ctx_count(s) >= IMAP_CTX_MAX_SESSION) {
			struct buf b = BUF_INIT;
			imap_append_string(&b, s->tag, strlen(s->tag));
			imap_untagged(s, "NO [NOUPDATE %s] Result not kept up to date", b.data);
			buf_free(&b);
		} else {
			j->ctx_on = true;
		}
	}
	search_start(s, j);
}
