/* STORE and UID STORE (RFC 9051 6.4.6; RFC 7162 3.1.3 UNCHANGEDSINCE),
 * COPY, MOVE and their UID forms (RFC 9051 6.4.7, 6.4.8; RFC 6851; RFC
 * 4315 COPYUID), EXPUNGE and UID EXPUNGE (RFC 9051 6.4.3, RFC 4315 2.1).
 * Every change goes through the store's committer (store_flags, store_copy,
 * store_expunge); the session parks until it is durable. */
#include <inttypes.h>
#include <string.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"
#include "store/store.h"

/* A command parked on the store; the session outlives it (busy). */
struct op {
	struct imap_session *s;
	uint32_t *uids;
	size_t n;
	bool silent;
	bool move;
	char *target;
	/* EXPUNGE: read of \Deleted */
	char *user, *mailbox;
	uint32_t uidvalidity;
	struct imap_idxset set; /* UID EXPUNGE's set */
	bool has_set;
	uint32_t *del;
	size_t n_del, cap_del;
	/* COPY to the selected mailbox: the reply waits for the EXISTS */
	char *reply_code;
	const char *reply_text;
	/* STORE (store_emit): what to apply, the store's results, the next
	 * one to send, the refused ones */
	char fop;
	char *flags;
	uint64_t unchangedsince;
	struct store_flag_results *fr;
	size_t next;
	uint32_t *modv;
	size_t n_mod, cap_mod;
	struct store_uid_range *recent;
	size_t n_recent;
};

static void op_free(struct op *o)
{
	free(o->uids);
	free(o->target);
	free(o->user);
	free(o->mailbox);
	imap_idxset_free(&o->set);
	free(o->del);
	free(o->reply_code);
	free(o->flags);
	store_flag_results_free(o->fr);
	free(o->modv);
	free(o->recent);
	free(o);
}

/* The store's completion came back: false if the session is gone. */
static bool op_back(struct op *o)
{
	struct imap_session *s = o->s;

	if (session_release(&s->base) || !imap_alive(s) || s->sel == NULL) {
		op_free(o);
		return false;
	}
	return true;
}

static const char *store_code(int result)
{
	switch (result) {
	case STORE_NONEXISTENT:
		return "NONEXISTENT";
	case STORE_OVERQUOTA:
		return "OVERQUOTA";
	case STORE_LIMIT:
		return "LIMIT";
	case STORE_CANNOT:
		return "CANNOT";
	default:
		return "UNAVAILABLE";
	}
}

/* ---- STORE ---- */

/* The reply of a STORE of many messages (STORE 1:* on a million: a million
 * FETCH lines, ~40 MB) is made in slices: at most STORE_STEP octets per
 * loop step, and none while the client leaves more than the output limit
 * unread (design.md, "Bounded output"), so neither the loop step nor the
 * session's output grows with the mailbox. The store's results (UID,
 * MODSEQ, flags: ~50 octets a message) are kept until the last line is
 * out. The change itself is one committer transaction (one MODSEQ for the
 * command): split into chunks, other sessions would be told of each chunk
 * as a change of its own (select.c's passes then send a message's FETCH
 * more than once). */
#define STORE_STEP (64 * 1024)  /* most reply octets made in one loop step */
#define STORE_STEP_MSGS 4096    /* most messages taken in one (.SILENT sends none) */

static void store_emit(struct imap_session *s);

static void store_abort(struct imap_session *s)
{
	struct op *o = s->job;

	s->job = NULL;
	op_free(o);
}

static void store_drained(struct imap_session *s)
{
	store_emit(s);
}

/* A STORE reply that used up its step goes on from here, after the loop
 * has served everybody else. */
static void store_continue(void *arg)
{
	struct imap_session *s = arg;

	if (!imap_step_done(s) || s->job == NULL)
		return;
	store_emit(s);
}

/* Yields the loop for the rest of the reply (store_continue). */
static void store_yield(struct imap_session *s)
{
	s->base.busy++;
	loop_post(s->base.l, store_continue, s);
}

static void store_finish(struct imap_session *s, struct op *o)
{
	struct buf mod = BUF_INIT;

	s->job = NULL;
	s->job_abort = NULL;
	s->job_drained = NULL;
	if (o->n_mod > 0) {
		/* RFC 7162 3.1.3: the messages refused by UNCHANGEDSINCE */
		buf_appends(&mod, "MODIFIED ");
		/* sequence numbers are sorted as UIDs are */
		imap_seqset_format(&mod, o->modv, o->n_mod);
		imap_tagged(s, "OK", mod.data, "Conditional STORE failed");
	} else {
		imap_tagged(s, "OK", NULL, "%s completed", s->uid ? "UID STORE" : "STORE");
	}
	buf_free(&mod);
	op_free(o);
	imap_cmd_done(s);
}

static void store_emit(struct imap_session *s)
{
	struct op *o = s->job;
	const struct store_flag_result *v = o->fr->v;
	struct buf b = BUF_INIT;
	size_t slice = 0, taken = 0;

	while (o->next < o->fr->n) {
		if (!session_output_room(&s->base)) {
			/* the client reads the output down first (store_drained) */
			session_output_wait(&s->base);
			buf_free(&b);
			return;
		}
		if (slice >= STORE_STEP || taken >= STORE_STEP_MSGS) {
			/* conn_write hands output to the kernel at once, so a fast
			 * reader never leaves the output limit: bound one loop
			 * step's work by itself */
			store_yield(s);
			buf_free(&b);
			return;
		}
		const struct store_flag_result *r = &v[o->next++];
		taken++;
		uint32_t seq = imap_view_seq(s, r->uid);
		if (seq == 0)
			continue;
		if (r->changed) {
			imap_sel_own_change(s, r->modseq);
			imap_ctx_flags(s, r->uid, r->flags, r->modseq); /* sort.c */
		}
		if (r->modified) {
			if (o->n_mod == o->cap_mod) {
				o->cap_mod = o->cap_mod ? 2 * o->cap_mod : 64;
				o->modv = xrealloc(o->modv, o->cap_mod * sizeof *o->modv);
			}
			o->modv[o->n_mod++] = s->uid ? r->uid : seq;
			continue;
		}
		imap_sel_reported(s, r->uid, r->modseq);
		if (o->silent && !(s->condstore && r->changed))
			continue;
		buf_reset(&b);
		buf_printf(&b, "* %" PRIu32 " FETCH (", seq);
		if (!o->silent) {
			const char *kw;
			unsigned sys = imap_flags_from_store(r->flags, &kw);
			buf_appends(&b, "FLAGS ");
			if (imap_recent_in(o->recent, o->n_recent, r->uid))
				sys |= IMAP_F_RECENT;
			imap_format_flags(&b, sys, kw);
		}
		if (s->uid) /* RFC 9051 6.4.9 */
			buf_printf(&b, "%sUID %" PRIu32, o->silent ? "" : " ", r->uid);
		/* RFC 7162 3.1.3: MODSEQ even with .SILENT for what changed */
		if (s->condstore)
			buf_printf(&b, "%sMODSEQ (%" PRIu64 ")",
				   (o->silent && !s->uid) ? "" : " ", r->modseq);
		buf_appends(&b, ")\r\n");
		imap_send(s, b.data, b.len);
		slice += b.len;
	}
	buf_free(&b);
	store_flag_results_free(o->fr);
	o->fr = NULL;
	o->next = 0;
	store_finish(s, o);
}

static void store_done(void *arg, int result, struct store_flag_results *r)
{
	struct op *o = arg;
	struct imap_session *s = o->s;

	if (!op_back(o)) {
		store_flag_results_free(r);
		return;
	}
	if (result < 0) {
		/* what the store applied before the failure stays (as after a crash) */
		s->job = NULL;
		s->job_abort = NULL;
		s->job_drained = NULL;
		op_free(o);
		imap_tagged(s, "NO", store_code(result), "STORE failed");
		imap_cmd_done(s);
		return;
	}
	o->fr = r;
	o->next = 0;
	free(o->recent);
	o->recent = imap_sel_recent(s, &o->n_recent);
	/* the keywords new to the session first: their FLAGS list goes before
	 * the FETCH lines that carry them (the results' distinct flag strings,
	 * not one per message: a STORE 1:* has a handful) */
	for (size_t i = 0; !o->silent && i < r->n_flags; i++)
		imap_sel_keywords(s, r->flags[i]);
	s->job = o;
	s->job_abort = store_abort;
	s->job_drained = store_drained;
	store_emit(s);
}

/* Hands the UIDs to the store (the session is parked). */
static void store_hand(struct imap_session *s, struct op *o)
{
	s->job = NULL; /* the op is the store's until store_done */
	s->job_abort = NULL;
	s->job_drained = NULL;
	s->base.busy++;
	/* the store takes the list (all of it: no copy of 4 MB per million
	 * messages on the loop) */
	store_flags_take(s->srv->st, s->user, s->sel->name, s->sel->uidvalidity, o->uids, o->n, o->fop,
			 o->flags, o->unchangedsince, store_done, o);
	o->uids = NULL;
}

void imap_cmd_store(struct imap_session *s, const struct imap_arg *args)
{
	struct imap_idxset set;
	const struct imap_arg *a = &args[1];
	const char *err = NULL;
	uint64_t unchangedsince = 0;
	bool have_unchanged = false;
	char op = '=';
	bool silent = false;
	unsigned sys = 0;
	struct buf kw = BUF_INIT, flags = BUF_INIT;
	struct op *o;

	if (args[0].type == IMAP_ARG_EOL || args[1].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Missing arguments");
		return;
	}
	/* RFC 7162 3.1.3: STORE set (UNCHANGEDSINCE n) item value */
	if (a->type == IMAP_ARG_LIST) {
		const struct imap_arg *m = a->list;
		if (!imap_arg_atom_is(&m[0], "UNCHANGEDSINCE") || m[1].type == IMAP_ARG_EOL ||
		    !imap_arg_number64(&m[1], &unchangedsince) || m[2].type != IMAP_ARG_EOL) {
			imap_tagged(s, "BAD", NULL, "Invalid STORE modifier");
			return;
		}
		have_unchanged = true;
		a++;
	}
	if (a->type != IMAP_ARG_ATOM || a[1].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Invalid STORE item");
		return;
	}
	{
		const char *p = a->str;
		size_t len = a->len;
		if (len > 0 && (p[0] == '+' || p[0] == '-')) {
			op = p[0];
			p++;
			len--;
		}
		if (len == 12 && strncasecmp(p, "FLAGS.SILENT", 12) == 0)
			silent = true;
		else if (!(len == 5 && strncasecmp(p, "FLAGS", 5) == 0)) {
			imap_tagged(s, "BAD", NULL, "Invalid STORE item");
			return;
		}
	}
	/* the flags: one list, or flags as separate atoms (RFC 3501 allows
	 * "STORE 1 +FLAGS \Seen \Deleted") */
	{
		const struct imap_arg *f = &a[1];
		if (f->type == IMAP_ARG_LIST) {
			if (f[1].type != IMAP_ARG_EOL || imap_parse_flags(f, &sys, &kw) < 0) {
				buf_free(&kw);
				imap_tagged(s, "BAD", NULL, "Invalid flags");
				return;
			}
		} else {
			for (; f->type != IMAP_ARG_EOL; f++) {
				unsigned one = 0;
				if (f->type == IMAP_ARG_NIL) {
					/* "NIL" is an atom here (a keyword), as
					 * Dovecot takes it */
					if (kw.len > 0)
						buf_appendc(&kw, ' ');
					buf_appends(&kw, "NIL");
					continue;
				}
				if (imap_parse_flags(f, &one, &kw) < 0) {
					buf_free(&kw);
					imap_tagged(s, "BAD", NULL, "Invalid flags");
					return;
				}
				sys |= one;
			}
		}
	}
	if (imap_idxset_parse(s, &args[0], s->uid, &set, &err) < 0) {
		buf_free(&kw);
		imap_tagged(s, "BAD", NULL, "%s", err);
		return;
	}
	if (have_unchanged)
		imap_enable_condstore(s); /* RFC 7162 3.1 */
	if (s->sel->readonly) {
		imap_idxset_free(&set);
		buf_free(&kw);
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	if (set.count == 0) {
		imap_idxset_free(&set);
		buf_free(&kw);
		imap_tagged(s, "OK", NULL, "%s completed", s->uid ? "UID STORE" : "STORE");
		return;
	}
	if (have_unchanged && unchangedsince == 0) {
		/* RFC 7162 3.1.3: UNCHANGEDSINCE 0 fails for every message */
		struct buf mod = BUF_INIT;
		size_t n = 0;
		uint32_t *v = imap_idxset_uids(s, &set, &n);
		if (!s->uid)
			for (size_t i = 0; i < n; i++)
				v[i] = imap_view_seq(s, v[i]);
		buf_appends(&mod, "MODIFIED ");
		imap_seqset_format(&mod, v, n);
		imap_tagged(s, "OK", mod.data, "Conditional STORE failed");
		buf_free(&mod);
		free(v);
		imap_idxset_free(&set);
		buf_free(&kw);
		return;
	}
	imap_flags_to_store(&flags, sys, kw.len > 0 ? kw.data : "");
	buf_free(&kw);
	o = xcalloc(1, sizeof *o);
	o->s = s;
	o->silent = silent;
	o->uids = imap_idxset_uids(s, &set, &o->n);
	o->fop = op;
	o->flags = xstrdup(flags.data != NULL ? flags.data : "");
	buf_free(&flags);
	o->unchangedsince = unchangedsince;
	imap_idxset_free(&set);
	session_park(&s->base);
	store_hand(s, o);
}

/* ---- COPY, MOVE ---- */

static void copy_reply(struct imap_session *s)
{
	struct op *o = s->job;
	s->job = NULL;
	if (o->reply_code != NULL)
		imap_tagged(s, "OK", o->reply_code, "%s", o->reply_text);
	else
		imap_tagged(s, "OK", NULL, "%s", o->reply_text);
	op_free(o);
	imap_cmd_done(s);
}

static void copy_done(void *arg, int result, uint32_t dst_uidvalidity, const uint32_t *src,
		      const uint32_t *dst, size_t n)
{
	struct op *o = arg;
	struct imap_session *s = o->s;
	struct buf code = BUF_INIT;

	if (!op_back(o))
		return;
	if (result < 0) {
		const char *c = result == STORE_NONEXISTENT ? "TRYCREATE" : store_code(result);
		const char *t = result == STORE_NONEXISTENT ? "Mailbox does not exist"
				: result == STORE_OVERQUOTA ? "Quota exceeded"
							    : "COPY failed";
		op_free(o);
		imap_tagged(s, "NO", c, "%s", t);
		imap_cmd_done(s);
		return;
	}
	if (n > 0) {
		/* RFC 4315 3: COPYUID uidvalidity source-uids dest-uids, in
		 * corresponding order (src sorted, dst ascending) */
		buf_printf(&code, "COPYUID %" PRIu32 " ", dst_uidvalidity);
		imap_seqset_format(&code, src, n);
		buf_appendc(&code, ' ');
		imap_seqset_format(&code, dst, n);
	}
	if (o->move) {
		/* RFC 6851 4.3: COPYUID in an untagged OK before the
		 * expunges, which are sent now (a MOVE is not FETCH/STORE/
		 * SEARCH) */
		if (n > 0)
			imap_untagged(s, "OK [%s] Moved UIDs.", code.data);
		imap_sel_expunged(s, o->uids, o->n);
		buf_free(&code);
		bool self = strcmp(o->target, s->sel->name) == 0;
		o->reply_text = s->uid ? "UID MOVE completed" : "MOVE completed";
		if (self) {
			s->job = o;
			imap_sel_sync(s, copy_reply);
			return;
		}
		op_free(o);
		imap_tagged(s, "OK", NULL, "%s", s->uid ? "UID MOVE completed" : "MOVE completed");
		imap_cmd_done(s);
		return;
	}
	o->reply_code = n > 0 ? xstrdup(code.data) : NULL;
	o->reply_text = s->uid ? "UID COPY completed" : "COPY completed";
	buf_free(&code);
	if (strcmp(o->target, s->sel->name) == 0) {
		/* a copy into the selected mailbox: its EXISTS before the OK */
		s->job = o;
		imap_sel_sync(s, copy_reply);
		return;
	}
	s->job = o;
	copy_reply(s);
}

void imap_cmd_copy(struct imap_session *s, const struct imap_arg *args)
{
	bool move = strcasestr(s->cmd->name, "MOVE") != NULL;
	struct imap_idxset set;
	const char *err = NULL;
	char *target;
	struct op *o;

	if (args[0].type == IMAP_ARG_EOL || args[1].type == IMAP_ARG_EOL ||
	    args[2].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Invalid arguments");
		return;
	}
	if (imap_idxset_parse(s, &args[0], s->uid, &set, &err) < 0) {
		imap_tagged(s, "BAD", NULL, "%s", err);
		return;
	}
	target = imap_mailbox_arg(s, &args[1]);
	if (target == NULL) {
		imap_idxset_free(&set);
		return; /* answered */
	}
	if (move && s->sel->readonly) {
		imap_idxset_free(&set);
		free(target);
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	o = xcalloc(1, sizeof *o);
	o->s = s;
	o->move = move;
	o->target = target;
	o->uids = imap_idxset_uids(s, &set, &o->n);
	imap_idxset_free(&set);
	if (o->n == 0) {
		/* RFC 9051 6.4.7: nothing to copy is a success (no COPYUID) */
		op_free(o);
		imap_tagged(s, "OK", NULL, "%s completed", s->cmd->name);
		return;
	}
	session_park(&s->base);
	s->base.busy++;
	store_copy(s->srv->st, s->user, s->sel->name, s->sel->uidvalidity, o->uids, o->n,
		   o->target, move, copy_done, o);
}

/* ---- EXPUNGE, UID EXPUNGE ---- */

static void expunge_done(void *arg, int result)
{
	struct op *o = arg;
	struct imap_session *s = o->s;

	if (!op_back(o))
		return;
	if (result < 0) {
		op_free(o);
		imap_tagged(s, "NO", "UNAVAILABLE", "EXPUNGE failed");
		imap_cmd_done(s);
		return;
	}
	/* RFC 9051 7.5.1: our own expunges, as EXPUNGE or VANISHED */
	imap_sel_expunged(s, o->del, o->n_del);
	op_free(o);
	imap_tagged(s, "OK", NULL, "%s completed", s->uid ? "UID EXPUNGE" : "EXPUNGE");
	imap_cmd_done(s);
}

static int expunge_each(void *arg, const struct store_msg *m)
{
	struct op *o = arg;
	const char *kw;

	if (!(imap_flags_from_store(m->flags != NULL ? m->flags : "", &kw) & IMAP_F_DELETED))
		return 0;
	if (o->n_del == o->cap_del) {
		o->cap_del = o->cap_del ? o->cap_del * 2 : 16;
		o->del = xrealloc(o->del, o->cap_del * sizeof *o->del);
	}
	o->del[o->n_del++] = m->uid;
	return 0;
}

static int expunge_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct op *o = arg;
	struct store_uid_range *r = NULL;
	size_t nr = 0;
	int res;

	if (o->has_set) {
		/* UID EXPUNGE (RFC 4315 2.1): only the given UIDs */
		if (o->n == 0)
			return 0;
		r = xmalloc(o->n * sizeof *r);
		for (size_t i = 0; i < o->n; i++) {
			if (nr > 0 && r[nr - 1].hi + 1 == o->uids[i]) {
				r[nr - 1].hi = o->uids[i];
			} else {
				r[nr].lo = r[nr].hi = o->uids[i];
				nr++;
			}
		}
	}
	res = store_snap_messages(sn, o->user, o->mailbox, o->uidvalidity, r, nr, 0,
				  STORE_MSG_PLAIN, expunge_each, o, err_r);
	free(r);
	return res < 0 ? -1 : 0;
}

static void expunge_read(void *arg, int result, const char *err)
{
	struct op *o = arg;
	struct imap_session *s = o->s;

	if (!imap_alive(s) || s->sel == NULL) {
		session_release(&s->base);
		op_free(o);
		return;
	}
	if (result < 0) {
		session_release(&s->base);
		log_err("imap %s: expunge: %s", s->base.ip, err != NULL ? err : "error");
		op_free(o);
		imap_tagged(s, "NO", "UNAVAILABLE", "EXPUNGE failed");
		imap_cmd_done(s);
		return;
	}
	/* only what the client knows: a message it was not told about yet
	 * is not expunged under it */
	size_t w = 0;
	for (size_t i = 0; i < o->n_del; i++)
		if (imap_view_seq(s, o->del[i]) != 0)
			o->del[w++] = o->del[i];
	o->n_del = w;
	if (o->n_del == 0) {
		session_release(&s->base);
		op_free(o);
		imap_tagged(s, "OK", NULL, "%s completed", s->uid ? "UID EXPUNGE" : "EXPUNGE");
		imap_cmd_done(s);
		return;
	}
	/* the hold on s passes to the expunge */
	store_expunge(s->srv->st, o->user, o->mailbox, o->uidvalidity, o->del, o->n_del,
		      expunge_done, o);
}

void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *args)
{
	struct op *o;
	const char *err = NULL;

	if (s->sel->readonly) {
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	o = xcalloc(1, sizeof *o);
	o->s = s;
	if (s->uid) {
		if (args[0].type == IMAP_ARG_EOL || args[1].type != IMAP_ARG_EOL ||
		    imap_idxset_parse(s, &args[0], true, &o->set, &err) < 0) {
			op_free(o);
			imap_tagged(s, "BAD", NULL, "%s", err != NULL ? err : "Invalid arguments");
			return;
		}
		o->has_set = true;
		o->uids = imap_idxset_uids(s, &o->set, &o->n);
	} else if (args[0].type != IMAP_ARG_EOL) {
		op_free(o);
		imap_tagged(s, "BAD", NULL, "EXPUNGE takes no arguments");
		return;
	}
	o->user = xstrdup(s->user);
	o->mailbox = xstrdup(s->sel->name);
	o->uidvalidity = s->sel->uidvalidity;
	session_park(&s->base);
	s->base.busy++;
	store_read(s->srv->st, s->srv->workers, expunge_work, expunge_read, o);
}
