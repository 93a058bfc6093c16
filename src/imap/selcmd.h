/* Private to src/imap: the handlers of the selected-state commands and of
 * APPEND (select.c, idle.c, fetchcmd.c, searchcmd.c, storecmd.c, append.c),
 * named in the command table (cmd.c). */
#ifndef POSTERN_IMAP_SELCMD_H
#define POSTERN_IMAP_SELCMD_H
#include "imap/session.h"

/* select.c */
void imap_cmd_select(struct imap_session *s, const struct imap_arg *args);  /* SELECT, EXAMINE
									      * (s->cmd->name) */
void imap_cmd_close(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_unselect(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_check(struct imap_session *s, const struct imap_arg *args);
/* NOOP in the selected state: sends the pending updates (auth.c's NOOP calls
 * it when s->sel is set). */
void imap_selected_noop(struct imap_session *s);
/* idle.c */
void imap_cmd_idle(struct imap_session *s, const struct imap_arg *args);
/* Input in state IMAP_IN_IDLE (server.c's input hook calls it). */
void imap_idle_input(struct imap_session *s);
/* fetchcmd.c, searchcmd.c, storecmd.c: the UID form has s->uid set */
void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_search(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_store(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_copy(struct imap_session *s, const struct imap_arg *args);  /* COPY, MOVE */
void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *args); /* also UID EXPUNGE */
/* issue 9's extensions, one file each (placeholders answer BAD until built):
 * sort.c SORT/UID SORT (RFC 5256, 5957, 5267); thread.c THREAD/UID THREAD
 * (RFC 5256); compress.c COMPRESS (RFC 4978); metadata.c GETMETADATA,
 * SETMETADATA (RFC 5464); notify.c NOTIFY (RFC 5465); append.c REPLACE
 * (RFC 8508); urlauth.c GENURLAUTH, RESETKEY, URLFETCH (RFC 4467). */
void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_thread(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_compress(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_getmetadata(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_setmetadata(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_notify(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_replace(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_genurlauth(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_resetkey(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_urlfetch(struct imap_session *s, const struct imap_arg *args);
/* searchcmd.c: the search of SEARCH run for another command (SORT,
 * THREAD). q (imap_search_parse'd; taken over: *q is emptied) selects the
 * messages of the view, read in slices on workers as SEARCH does; each
 * matching message goes to match(arg, m) on the worker, in view order, one
 * slice at a time (m->msg/len loaded when needs_blob, m->mc when
 * needs_cache (or needs_blob): the message is read only when its cache is
 * missing or of an older version; m valid during the
 * call only). Then done(arg, s, result) on the loop with the session still
 * parked: result 0 (all matched), or -1 (the store failed: the caller
 * answers). abort(arg) instead of done when the session stops meanwhile
 * (on the loop, once no match call runs any more). hooks must outlive the
 * run. */
struct imap_msg;
struct imap_search_hooks {
	/* thread_keys: match reads the thread section (imap_msg.thread_keys
	 * from the narrow row, else imap_msg.mc: the cache is loaded) */
	bool needs_blob, thread_keys;
	void (*match)(void *arg, const struct imap_msg *m);
	void (*done)(void *arg, struct imap_session *s, int result);
	void (*abort)(void *arg);
	void *arg;
};
void imap_search_run(struct imap_session *s, struct imap_search *q,
		     const struct imap_search_hooks *hooks);
/* append.c */
void imap_cmd_append(struct imap_session *s, const struct imap_arg *args);
/* The reader announced a literal (IMAP_READ_LITERAL) while reading an
 * APPEND: true if append.c takes it (state IMAP_IN_APPEND: the octets go
 * into a spool; at the end it calls imap_reader_external_done() and
 * imap_input_resume()); false to hold it inline. May refuse the APPEND
 * (too big for APPENDLIMIT or the quota: tagged NO [TOOBIG]/[OVERQUOTA]
 * before a synchronising literal's "+"). */
bool imap_append_literal(struct imap_session *s);
void imap_append_input(struct imap_session *s);
/* The session stops: drop spools of an unfinished APPEND. */
void imap_append_abort(struct imap_session *s);

/* server.c: back to reading commands after IMAP_IN_APPEND/IDLE; runs what is
 * already buffered. */
void imap_input_resume(struct imap_session *s);

/* ---- shared by the selected-state files (select.c defines them) ---- */

/* The session can still take output and go on (imap_session_alive). */
bool imap_alive(const struct imap_session *s);
/* A set of messages of the view as ranges of 0-based indices [lo, hi]
 * (sorted, disjoint): what a sequence set, a UID set or "$" names among the
 * messages the client knows. */
struct imap_idx_range {
	uint32_t lo, hi;
};
struct imap_idxset {
	struct imap_idx_range *v;
	size_t n;
	uint64_t count; /* messages in it */
};
/* Resolves a sequence-set argument (sequence numbers, or UIDs with uid) to
 * indices of the view. "$" is the saved search result. 0, or -1 with *err_r
 * (a BAD: syntax, or a sequence number beyond the view, RFC 9051 6.4.1... a
 * UID set never fails for numbers that do not exist). */
int imap_idxset_parse(struct imap_session *s, const struct imap_arg *a, bool uid,
		      struct imap_idxset *set, const char **err_r);
void imap_idxset_free(struct imap_idxset *set);
/* The UIDs of the set, sorted (xmalloc). */
uint32_t *imap_idxset_uids(const struct imap_session *s, const struct imap_idxset *set,
			   size_t *n_r);
/* The store's flag string ("\\Seen kw") for system flag bits and keywords. */
void imap_flags_to_store(struct buf *out, unsigned sys, const char *kw);
/* Brings the selection up to date with the store (a read on a worker of the
 * changes announced so far, joined if one is running) and then calls
 * cont(s) on the loop. The session must be parked. */
void imap_sel_sync(struct imap_session *s, void (*cont)(struct imap_session *s));
/* Our own STORE gave these messages modseq: the change notification of it
 * is not repeated to us as an unsolicited FETCH. */
void imap_sel_own_change(struct imap_session *s, uint64_t modseq);
/* Our own EXPUNGE/MOVE removed uids (sorted): EXPUNGE (or VANISHED with
 * QRESYNC) responses now, and out of the view. */
void imap_sel_expunged(struct imap_session *s, const uint32_t *uids, size_t n);
/* CONDSTORE enabled by a command (RFC 7162 3.1): sends the HIGHESTMODSEQ
 * untagged OK when a mailbox is selected. */
void imap_enable_condstore(struct imap_session *s);
/* The view's UIDs (n = imap_view_count), sorted; valid until the view
 * changes (only imap_send_updates and imap_sel_expunged change it). */
const uint32_t *imap_view_uids(const struct imap_session *s);
/* Sends "tag status [code] text" while a command is being read (APPEND's
 * refusals of a literal): s->tag is not set yet. */
void imap_reply_reading(struct imap_session *s, const char *status, const char *code,
			const char *text);
/* \Recent (RFC 3501 2.3.2), select.c: the session's recent UIDs as ranges
 * (a copy for a worker, xmalloc; *n_r may be 0), and whether a UID is in
 * such ranges. */
struct store_uid_range *imap_sel_recent(const struct imap_session *s, size_t *n_r);
bool imap_recent_in(const struct store_uid_range *r, size_t n, uint32_t uid);
/* The view's UIDs expunged in the store that the client was not told of yet
 * (sorted; a copy for a worker, xmalloc, NULL when *n_r is 0): a search that
 * does not read the store leaves them out, as one that reads it does. */
uint32_t *imap_sel_gone(const struct imap_session *s, size_t *n_r);
/* A binary search of sorted UIDs v[0..n): whether uid is among them, and in
 * *at_r its index, or where it would go when it is not (the first index
 * whose UID is higher; n past the end). Inline: called per message. */
static inline bool imap_uid_find(const uint32_t *v, size_t n, uint32_t uid, size_t *at_r)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at_r = lo;
	return lo < n && v[lo] == uid;
}
/* Keywords (RFC 9051 7.3.5): before a FETCH response shows a keyword the
 * client was not told of, "* FLAGS" and "* OK [PERMANENTFLAGS]" announce it.
 * flags: a store flag string or space-separated keywords. */
void imap_sel_keywords(struct imap_session *s, const char *flags);
/* For STATUS RECENT (mailbox.c): the lowest UID of the mailbox that no
 * session has claimed as \Recent yet (messages from there on are recent);
 * 1 when the mailbox was not selected since the daemon started. */
uint32_t imap_recent_boundary(const char *user, const char *mailbox, uint32_t uidvalidity);
/* The client was shown uid's flags as of modseq (a FETCH or STORE
 * response): pending or in-flight older updates of it are dropped. */
void imap_sel_reported(struct imap_session *s, uint32_t uid, uint64_t modseq);
/* RENAME of the selected mailbox (or of a parent) by the session itself
 * succeeded (RFC 9051 6.3.6; Dovecot keeps it selected): the selection
 * goes on under name; the store's notice of the old name going away, which
 * follows, does not end the session. */
void imap_sel_renamed(struct imap_session *s, const char *name);

#endif
