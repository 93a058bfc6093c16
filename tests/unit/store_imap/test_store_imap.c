/* Unit tests for the IMAP section of the store (store.h): mailbox CREATE,
 * DELETE, RENAME (INBOX too), SUBSCRIBE, the snapshots, APPEND (atomic),
 * STORE (RFC 7162 MODSEQ rules), COPY/MOVE, the expunge log, quotas (the
 * counters against a full recount after a random mix of operations), the
 * MIME cache hook, change notifications, and the migration of a version 2
 * data directory. Each test works in its own temporary directory with a
 * real loop, pool and committer. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "store/store.h"

#define STORE_FIXTURE_NAME "test_store_imap"
#include "../store_fixture.h"

/* ---- waiting for results ---- */

struct wait {
	bool done;
	int result;
	uint32_t uidvalidity, first_uid;
	char text[1024]; /* flags results or copy pairs */
	size_t n;
	size_t n_flags;     /* flags results: their distinct strings */
	bool flags_pooled;  /* every entry's string is one of those */
};

static void res_cb(void *arg, int result)
{
	struct wait *w = arg;
	w->done = true;
	w->result = result;
}

static void append_cb(void *arg, int result, uint32_t uidvalidity, uint32_t first_uid)
{
	struct wait *w = arg;
	w->done = true;
	w->result = result;
	w->uidvalidity = uidvalidity;
	w->first_uid = first_uid;
}

static void flags_cb(void *arg, int result, struct store_flag_results *r)
{
	struct wait *w = arg;
	const struct store_flag_result *v = r != NULL ? r->v : NULL;
	size_t n = r != NULL ? r->n : 0;
	w->done = true;
	w->result = result;
	w->n = n;
	w->n_flags = r != NULL ? r->n_flags : 0;
	w->flags_pooled = true;
	for (size_t i = 0; i < n; i++) {
		bool in = false;
		for (size_t k = 0; k < r->n_flags; k++)
			in |= v[i].flags == r->flags[k];
		w->flags_pooled &= in;
	}
	for (size_t i = 0; i < w->n_flags; i++)
		for (size_t k = 0; k < i; k++)
			if (strcmp(r->flags[i], r->flags[k]) == 0)
				w->flags_pooled = false; /* not distinct */
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(w->text);
		snprintf(w->text + len, sizeof w->text - len, "%s%u:%llu:%s%s%s", len ? ";" : "",
			 v[i].uid, (unsigned long long)v[i].modseq, v[i].flags,
			 v[i].changed ? ":C" : "", v[i].modified ? ":M" : "");
	}
	store_flag_results_free(r); /* the callback's (store.h) */
}

static void copy_cb(void *arg, int result, uint32_t dst_uidvalidity, const uint32_t *src,
		    const uint32_t *dst, size_t n)
{
	struct wait *w = arg;
	w->done = true;
	w->result = result;
	w->uidvalidity = dst_uidvalidity;
	w->n = n;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(w->text);
		snprintf(w->text + len, sizeof w->text - len, "%s%u>%u", len ? "," : "", src[i],
			 dst[i]);
	}
}

static int mb_create(struct env *e, const char *user, const char *name, const char *use)
{
	struct wait w = {0};
	store_mailbox_create(e->st, user, name, use, res_cb, &w);
	CHECK(!w.done); /* never from inside the call */
	run_until(e->l, &w.done);
	return w.result;
}

static int mb_delete(struct env *e, const char *user, const char *name)
{
	struct wait w = {0};
	store_mailbox_delete(e->st, user, name, res_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

static int mb_rename(struct env *e, const char *user, const char *from, const char *to)
{
	struct wait w = {0};
	store_mailbox_rename(e->st, user, from, to, res_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

static int mb_subscribe(struct env *e, const char *user, const char *name, bool on)
{
	struct wait w = {0};
	store_mailbox_subscribe(e->st, user, name, on, res_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

static struct store_spool *spool_of(struct env *e, const char *text, size_t len)
{
	char *err = NULL;
	struct store_spool *sp = store_spool_new(e->st, &err);
	CHECK(sp != NULL);
	free(err);
	if (sp != NULL && len > 0)
		CHECK(store_spool_write(sp, text, len) == 0);
	return sp;
}

/* Appends n messages "msg<i>" (or texts) with the given flags. */
static struct wait append_n(struct env *e, const char *user, const char *mailbox, size_t n,
			    const char *flags)
{
	struct store_spool *sps[16];
	const char *fl[16];
	time_t dates[16];
	int tzs[16];
	for (size_t i = 0; i < n; i++) {
		char text[64];
		int len = snprintf(text, sizeof text, "Subject: m%zu\r\n\r\nbody %zu\r\n", i, i);
		sps[i] = spool_of(e, text, (size_t)len);
		fl[i] = flags;
		dates[i] = 1700000000 + (time_t)i;
		tzs[i] = 3600;
	}
	struct wait w = {0};
	store_append(e->st, user, mailbox, sps, n, fl, dates, tzs, append_cb, &w);
	CHECK(!w.done);
	run_until(e->l, &w.done);
	return w;
}

static int deliver(struct env *e, const char *user, const char *text, size_t len)
{
	struct store_targets t = {0};
	int64_t id = 0;
	if (store_resolve(e->st, user, &t) == 1 && t.n == 1)
		id = t.v[0].user_id;
	store_targets_free(&t);
	struct store_spool *sp = spool_of(e, text, len);
	struct store_delivery d = {.txid = "T", .mail_from = "x@remote.org",
				   .received = 1700000000, .user_ids = &id, .n_users = 1};
	struct wait w = {0};
	store_commit(e->st, sp, &d, res_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

static struct wait flags_op(struct env *e, const char *user, const char *mailbox,
			    uint32_t uidvalidity, const uint32_t *uids, size_t n, char op,
			    const char *flags, uint64_t unchangedsince)
{
	struct wait w = {0};
	store_flags(e->st, user, mailbox, uidvalidity, uids, n, op, flags, unchangedsince,
		    flags_cb, &w);
	run_until(e->l, &w.done);
	return w;
}

static struct wait copy_op(struct env *e, const char *user, const char *from,
			   uint32_t uidvalidity, const uint32_t *uids, size_t n, const char *to,
			   bool move)
{
	struct wait w = {0};
	store_copy(e->st, user, from, uidvalidity, uids, n, to, move, copy_cb, &w);
	run_until(e->l, &w.done);
	return w;
}

static int expunge(struct env *e, const char *user, const char *mailbox, const uint32_t *uids,
		   size_t n)
{
	struct wait w = {0};
	store_expunge(e->st, user, mailbox, 0, uids, n, res_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

/* ---- snapshots, as text ---- */

struct snap_req {
	const char *user, *mailbox;
	uint32_t uidvalidity;
	const struct store_uid_range *ranges;
	size_t n;
	uint64_t since;
	bool counts, cache, sortkeys, threadkeys;
	int ret;
	char text[2048];
	bool done;
};

static void text_add(char *text, size_t size, const char *s)
{
	size_t len = strlen(text);
	snprintf(text + len, size - len, "%s%s", len ? ";" : "", s);
}

static void mailbox_cb(void *arg, const struct store_mailbox *mb)
{
	struct snap_req *r = arg;
	char line[256];
	if (r->counts)
		snprintf(line, sizeof line, "%s%s%s%s %u/%u unseen=%u deleted=%u size=%llu first=%u",
			 mb->name, mb->special_use ? ":" : "",
			 mb->special_use ? mb->special_use : "", mb->subscribed ? "*" : "",
			 mb->status.messages, mb->status.uidnext, mb->unseen, mb->deleted,
			 (unsigned long long)mb->size, mb->first_unseen_uid);
	else
		snprintf(line, sizeof line, "%s%s%s%s %u", mb->name, mb->special_use ? ":" : "",
			 mb->special_use ? mb->special_use : "", mb->subscribed ? "*" : "",
			 mb->status.messages);
	text_add(r->text, sizeof r->text, line);
}

static int read_mailboxes(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_req *r = arg;
	if (r->mailbox != NULL)
		r->ret = store_snap_mailbox(sn, r->user, r->mailbox, r->counts, mailbox_cb, r,
					    err_r);
	else
		r->ret = store_snap_mailboxes(sn, r->user, r->counts, mailbox_cb, r, err_r);
	return 0;
}

static void list_cb(void *arg, const char *name, const char *detail)
{
	struct snap_req *r = arg;
	text_add(r->text, sizeof r->text, name);
}

static int read_subs(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_req *r = arg;
	r->ret = store_snap_subscriptions(sn, r->user, list_cb, r, err_r);
	return 0;
}

static int msg_cb(void *arg, const struct store_msg *m)
{
	struct snap_req *r = arg;
	char line[256];
	bool keys = r->sortkeys || r->threadkeys;
	if (keys && m->sortkeys != NULL)
		snprintf(line, sizeof line, "%u:%llu:keys=%.*s", m->uid,
			 (unsigned long long)m->size, (int)m->sortkeys_len,
			 (const char *)m->sortkeys);
	else if (keys) /* no keys: what STORE_MSG_CACHE gives */
		snprintf(line, sizeof line, "%u:%llu:cache=%.*s:blob=%s", m->uid,
			 (unsigned long long)m->size, m->cache ? (int)m->cache_len : 4,
			 m->cache ? (const char *)m->cache : "NULL",
			 m->blob != NULL && m->blob[0] ? "yes" : "no");
	else if (r->cache && m->cache != NULL)
		snprintf(line, sizeof line, "%u:%.*s", m->uid, (int)m->cache_len,
			 (const char *)m->cache);
	else if (r->cache)
		snprintf(line, sizeof line, "%u:NULL", m->uid);
	else
		snprintf(line, sizeof line, "%u:%llu:%s:%lld%+d:%llu", m->uid,
			 (unsigned long long)m->modseq, m->flags, (long long)m->internaldate,
			 m->internaldate_tz, (unsigned long long)m->size);
	text_add(r->text, sizeof r->text, line);
	return 0;
}

static int read_msgs(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_req *r = arg;
	r->ret =
	    store_snap_messages(sn, r->user, r->mailbox, r->uidvalidity, r->ranges, r->n, r->since,
				r->sortkeys     ? STORE_MSG_SORT
				: r->threadkeys ? STORE_MSG_THREAD
				: r->cache      ? STORE_MSG_CACHE
						: STORE_MSG_PLAIN,
				msg_cb, r, err_r);
	return 0;
}

static void vanished_cb(void *arg, uint32_t uid)
{
	struct snap_req *r = arg;
	char line[16];
	snprintf(line, sizeof line, "%u", uid);
	text_add(r->text, sizeof r->text, line);
}

static int read_vanished(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_req *r = arg;
	r->ret = store_snap_vanished(sn, r->user, r->mailbox, r->uidvalidity, r->since, r->ranges,
				     r->n, vanished_cb, r, err_r);
	return 0;
}

static void snap_done(void *arg, int result, const char *err)
{
	struct snap_req *r = arg;
	r->done = true;
	if (result != 0)
		r->ret = -100;
}

static void snap_run(struct env *e, store_read_fn *fn, struct snap_req *r)
{
	r->done = false;
	r->text[0] = '\0';
	store_read(e->st, e->p, fn, snap_done, r);
	run_until(e->l, &r->done);
}

static const char *mailboxes(struct env *e, const char *user, struct snap_req *r)
{
	*r = (struct snap_req){.user = user};
	snap_run(e, read_mailboxes, r);
	return r->text;
}

static const char *msgs(struct env *e, const char *user, const char *mailbox,
			struct snap_req *r)
{
	*r = (struct snap_req){.user = user, .mailbox = mailbox};
	snap_run(e, read_msgs, r);
	return r->text;
}

static struct store_mailbox_status status_of(struct env *e, const char *user,
					     const char *mailbox)
{
	struct store_mailbox_status s = {0};
	char *err = NULL;
	if (store_mailbox_status(e->st, user, mailbox, &s, &err) < 0)
		s.uidvalidity = 0;
	free(err);
	return s;
}

/* ---- change notifications ---- */

struct notes {
	char text[1024];
};

static void change_cb(void *arg, const struct store_change *ch)
{
	struct notes *n = arg;
	static const char *const kinds[] = {"NEW", "EXPUNGE", "FLAGS", "DELETED"};
	char line[256];
	int len = snprintf(line, sizeof line, "%s %s", kinds[ch->kind], ch->mailbox);
	for (size_t i = 0; i < ch->n_uids && len < 200; i++)
		len += snprintf(line + len, sizeof line - (size_t)len, "%s%u", i ? "," : " ",
				ch->uids[i]);
	if (ch->highestmodseq)
		snprintf(line + len, sizeof line - (size_t)len, " hms=%llu",
			 (unsigned long long)ch->highestmodseq);
	text_add(n->text, sizeof n->text, line);
}

/* ==== the tests ==== */

/* New users get INBOX and the special-use mailboxes, subscribed, and a
 * quota row; every result code of CREATE, DELETE, RENAME and SUBSCRIBE. */
static void test_mailbox_ops(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	struct snap_req r;
	CHECK_STR(0, mailboxes(&e, "alice@example.com", &r),
		  "Archive:\\Archive* 0;Drafts:\\Drafts* 0;INBOX* 0;Junk:\\Junk* 0;"
		  "Sent:\\Sent* 0;Trash:\\Trash* 0");
	CHECK_INT(0, r.ret, STORE_OK);
	store_set_limits(e.st, 12, 40);
	static const struct {
		char op; /* c create, d delete, r rename, s subscribe, u unsubscribe */
		const char *user, *a, *b;
		int want;
	} cases[] = {
		{'c', "alice@example.com", "Work", NULL, STORE_OK},
		{'c', "alice@example.com", "Work", NULL, STORE_EXISTS},
		{'c', "alice@example.com", "work", NULL, STORE_OK}, /* names are case-sensitive */
		{'c', "alice@example.com", "inbox", NULL, STORE_EXISTS},
		{'c', "alice@example.com", "a/b/c", NULL, STORE_OK}, /* a and a/b too */
		{'c', "alice@example.com", "Flag/", "\\flagged", STORE_OK},
		{'c', "alice@example.com", "x//y", NULL, STORE_CANNOT},
		{'c', "alice@example.com", "/x", NULL, STORE_CANNOT},
		{'c', "alice@example.com", "x%", NULL, STORE_CANNOT},
		{'c', "alice@example.com", "bad\xff", NULL, STORE_CANNOT},
		{'c', "alice@example.com", "U", "\\Bogus", STORE_CANNOT},
		{'c', "alice@example.com", "0123456789012345678901234567890123456789x", NULL,
		 STORE_LIMIT},
		{'c', "nobody@example.com", "Work", NULL, STORE_NONEXISTENT},
		{'c', "alice@example.com", "Full", NULL, STORE_LIMIT}, /* 12 mailboxes now */
		{'d', "alice@example.com", "INBOX", NULL, STORE_CANNOT},
		{'d', "alice@example.com", "inbox", NULL, STORE_CANNOT},
		{'d', "alice@example.com", "a", NULL, STORE_HASCHILDREN},
		{'d', "alice@example.com", "nosuch", NULL, STORE_NONEXISTENT},
		{'d', "alice@example.com", "a/b/c", NULL, STORE_OK},
		{'d', "alice@example.com", "work", NULL, STORE_OK},
		{'r', "alice@example.com", "nosuch", "x", STORE_NONEXISTENT},
		{'r', "alice@example.com", "a", "Work", STORE_EXISTS},
		{'r', "alice@example.com", "a", "inbox", STORE_EXISTS},
		{'r', "alice@example.com", "a", "a", STORE_EXISTS},
		{'r', "alice@example.com", "a", "a/z", STORE_CANNOT},
		{'r', "alice@example.com", "a", "q/r", STORE_OK}, /* q created, a/b -> q/r/b */
		{'s', "alice@example.com", "ghost", NULL, STORE_OK},
		{'s', "alice@example.com", "ghost", NULL, STORE_OK},
		{'u', "alice@example.com", "Junk", NULL, STORE_OK},
		{'u', "alice@example.com", "never", NULL, STORE_OK},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int got = -100;
		switch (cases[i].op) {
		case 'c':
			got = mb_create(&e, cases[i].user, cases[i].a, cases[i].b);
			break;
		case 'd':
			got = mb_delete(&e, cases[i].user, cases[i].a);
			break;
		case 'r':
			got = mb_rename(&e, cases[i].user, cases[i].a, cases[i].b);
			break;
		case 's':
		case 'u':
			got = mb_subscribe(&e, cases[i].user, cases[i].a, cases[i].op == 's');
			break;
		}
		CHECK_INT((int)i, got, cases[i].want);
	}
	CHECK_STR(50, mailboxes(&e, "alice@example.com", &r),
		  "Archive:\\Archive* 0;Drafts:\\Drafts* 0;Flag:\\Flagged 0;INBOX* 0;Junk:\\Junk 0;"
		  "Sent:\\Sent* 0;Trash:\\Trash* 0;Work 0;q 0;q/r 0;q/r/b 0");
	r = (struct snap_req){.user = "alice@example.com"};
	snap_run(&e, read_subs, &r);
	CHECK_STR(51, r.text, "Archive;Drafts;INBOX;Sent;Trash;ghost");
	r = (struct snap_req){.user = "alice@example.com", .mailbox = "nosuch"};
	snap_run(&e, read_mailboxes, &r);
	CHECK_INT(52, r.ret, STORE_NONEXISTENT);
	r = (struct snap_req){.user = "nobody@example.com"};
	snap_run(&e, read_mailboxes, &r);
	CHECK_INT(53, r.ret, STORE_NONEXISTENT);
	/* bob is untouched */
	CHECK_STR(54, mailboxes(&e, "bob@example.com", &r),
		  "Archive:\\Archive* 0;Drafts:\\Drafts* 0;INBOX* 0;Junk:\\Junk* 0;"
		  "Sent:\\Sent* 0;Trash:\\Trash* 0");
	env_free(&e);
}

/* RENAME of a mailbox with children: all renamed, UIDVALIDITY, UIDNEXT and
 * HIGHESTMODSEQ kept, subscriptions follow, subscribers hear DELETED. */
static void test_rename_children(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	CHECK_INT(0, mb_create(&e, u, "p/c", NULL), STORE_OK);
	CHECK_INT(1, mb_subscribe(&e, u, "p/c", true), STORE_OK);
	CHECK_INT(2, append_n(&e, u, "p/c", 2, "\\Seen").result, STORE_OK);
	struct store_mailbox_status before = status_of(&e, u, "p/c");
	struct notes n = {""};
	char *err = NULL;
	struct store_sub *sub = store_subscribe(e.st, u, "p/c", change_cb, &n, &err);
	CHECK(sub != NULL);
	CHECK_INT(3, mb_rename(&e, u, "p", "n/m"), STORE_OK);
	CHECK_STR(4, n.text, "DELETED p/c");
	store_unsubscribe(e.st, &sub);
	struct store_mailbox_status after = status_of(&e, u, "n/m/c");
	CHECK_INT(5, after.uidvalidity, before.uidvalidity);
	CHECK_INT(6, after.uidnext, before.uidnext);
	CHECK_INT(7, after.highestmodseq, before.highestmodseq);
	CHECK_INT(8, after.messages, 2);
	CHECK_INT(9, status_of(&e, u, "p").uidvalidity, 0);
	CHECK(status_of(&e, u, "n").uidvalidity != 0);
	struct snap_req r = {.user = u};
	snap_run(&e, read_subs, &r);
	CHECK_STR(10, r.text, "Archive;Drafts;INBOX;Junk;Sent;Trash;n/m/c");
	env_free(&e);
}

/* RENAME INBOX (RFC 9051 6.3.6): the messages move to a new mailbox with new
 * UIDs, INBOX stays (same UIDVALIDITY), empty; its children stay; the
 * expunge is logged and announced. */
static void test_rename_inbox(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	CHECK_INT(0, deliver(&e, u, "a\r\n", 3), STORE_COMMIT_OK);
	CHECK_INT(1, deliver(&e, u, "bb\r\n", 4), STORE_COMMIT_OK);
	CHECK_INT(2, mb_create(&e, u, "INBOX/kid", NULL), STORE_OK);
	uint32_t one = 1;
	CHECK_INT(3, flags_op(&e, u, "INBOX", 0, &one, 1, '+', "\\Flagged", 0).result, STORE_OK);
	struct store_mailbox_status inbox = status_of(&e, u, NULL);
	struct notes n = {""};
	char *err = NULL;
	struct store_sub *sub = store_subscribe(e.st, u, NULL, change_cb, &n, &err);
	CHECK_INT(4, mb_rename(&e, u, "inbox", "Old/In"), STORE_OK);
	char want[64];
	snprintf(want, sizeof want, "EXPUNGE INBOX 1,2 hms=%llu",
		 (unsigned long long)inbox.highestmodseq + 1);
	CHECK_STR(5, n.text, want);
	store_unsubscribe(e.st, &sub);
	struct store_mailbox_status now = status_of(&e, u, NULL);
	CHECK_INT(6, now.uidvalidity, inbox.uidvalidity);
	CHECK_INT(7, now.messages, 0);
	CHECK_INT(8, now.uidnext, 3);
	struct snap_req r;
	CHECK_STR(9, msgs(&e, u, "Old/In", &r), "1:2:\\Flagged:1700000000+0:3;2:2::1700000000+0:4");
	CHECK(status_of(&e, u, "INBOX/kid").uidvalidity != 0);
	CHECK(status_of(&e, u, "Old").uidvalidity != 0);
	r = (struct snap_req){.user = u, .mailbox = "INBOX", .since = inbox.highestmodseq};
	snap_run(&e, read_vanished, &r);
	CHECK_STR(10, r.text, "1;2");
	/* the quota did not change: the messages are still the account's */
	struct store_quota q;
	CHECK_INT(11, store_quota_get(e.st, u, &q, &err), 0);
	CHECK_INT(12, q.message_used, 2);
	CHECK_INT(13, q.storage_used, 7);
	/* renaming INBOX to an existing name changes nothing */
	CHECK_INT(14, mb_rename(&e, u, "INBOX", "Sent"), STORE_EXISTS);
	env_free(&e);
}

/* STORE (RFC 7162 3.1.3): one new MODSEQ per call for the messages that
 * changed, none for the others; UNCHANGEDSINCE refuses changed ones; flags
 * normalised; \Recent never stored; notification with the changed UIDs. */
static void test_flags(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	struct wait a = append_n(&e, u, "INBOX", 3, "\\seen $Fwd \\Recent $fwd");
	CHECK_INT(0, a.result, STORE_OK);
	CHECK_INT(0, a.first_uid, 1);
	struct snap_req r;
	CHECK_STR(1, msgs(&e, u, "INBOX", &r),
		  "1:2:\\Seen $Fwd:1700000000+3600:23;2:2:\\Seen $Fwd:1700000001+3600:23;"
		  "3:2:\\Seen $Fwd:1700000002+3600:23");
	struct notes n = {""};
	char *err = NULL;
	struct store_sub *sub = store_subscribe(e.st, u, "INBOX", change_cb, &n, &err);
	uint32_t uids[] = {1, 2, 3, 9};
	static const struct {
		char op;
		const char *flags;
		uint64_t unchangedsince;
		const char *want, *note;
	} cases[] = {
		/* 1: nothing changes: no MODSEQ */
		{'+', "\\Seen", 0, "1:2:\\Seen $Fwd;2:2:\\Seen $Fwd;3:2:\\Seen $Fwd", ""},
		{'+', "\\Deleted Work", 0,
		 "1:3:\\Deleted \\Seen $Fwd Work:C;2:3:\\Deleted \\Seen $Fwd Work:C;"
		 "3:3:\\Deleted \\Seen $Fwd Work:C",
		 "FLAGS INBOX 1,2,3 hms=3"},
		{'-', "\\deleted WORK", 0,
		 "1:4:\\Seen $Fwd:C;2:4:\\Seen $Fwd:C;3:4:\\Seen $Fwd:C",
		 "FLAGS INBOX 1,2,3 hms=4"},
		{'=', "$Fwd \\Seen", 0, "1:4:\\Seen $Fwd;2:4:\\Seen $Fwd;3:4:\\Seen $Fwd", ""},
		{'=', "", 0, "1:5::C;2:5::C;3:5::C", "FLAGS INBOX 1,2,3 hms=5"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		n.text[0] = '\0';
		struct wait w = flags_op(&e, u, "INBOX", a.uidvalidity, uids, 4, cases[i].op,
					 cases[i].flags, cases[i].unchangedsince);
		CHECK_INT((int)i, w.result, STORE_OK);
		CHECK_STR((int)i, w.text, cases[i].want);
		CHECK_STR((int)i, n.text, cases[i].note);
		CHECK_INT((int)i, (int)w.n_flags, 1); /* one string for the three */
		CHECK(w.flags_pooled);
	}
	/* UNCHANGEDSINCE: 2 changed after 5, so it is refused ([MODIFIED]) */
	uint32_t two = 2;
	CHECK_INT(10, flags_op(&e, u, "INBOX", 0, &two, 1, '+', "\\Answered", 0).result, 0);
	n.text[0] = '\0';
	struct wait w = flags_op(&e, u, "INBOX", 0, uids, 3, '+', "\\Flagged", 5);
	CHECK_STR(11, w.text, "1:7:\\Flagged:C;2:6:\\Answered:M;3:7:\\Flagged:C");
	CHECK_INT(11, (int)w.n_flags, 2);
	CHECK(w.flags_pooled);
	CHECK_STR(12, n.text, "FLAGS INBOX 1,3 hms=7");
	CHECK_INT(13, status_of(&e, u, NULL).highestmodseq, 7);
	/* CHANGEDSINCE for FETCH: only 1 and 3 changed after 6 */
	r = (struct snap_req){.user = u, .mailbox = "INBOX", .since = 6};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(14, r.text, "1:7:\\Flagged:1700000000+3600:23;3:7:\\Flagged:1700000002+3600:23");
	/* the mailbox was replaced: STORE_CHANGED, nothing done */
	w = flags_op(&e, u, "INBOX", a.uidvalidity + 1, uids, 3, '+', "\\Seen", 0);
	CHECK_INT(15, w.result, STORE_CHANGED);
	w = flags_op(&e, u, "Nosuch", 0, uids, 3, '+', "\\Seen", 0);
	CHECK_INT(16, w.result, STORE_NONEXISTENT);
	CHECK_INT(17, status_of(&e, u, NULL).highestmodseq, 7);
	/* 40 messages, each with a keyword of its own: 40 distinct strings
	 * (the table grows past 8, 16 and 32), each entry on its own */
	CHECK_INT(18, mb_create(&e, u, "Many", NULL), STORE_OK);
	struct wait b = append_n(&e, u, "Many", 10, "");
	for (int k = 0; k < 3; k++)
		CHECK_INT(18, append_n(&e, u, "Many", 10, "").result, STORE_OK);
	CHECK_INT(18, b.result, STORE_OK);
	uint32_t many[40];
	for (uint32_t i = 0; i < 40; i++) {
		char kw[16];
		many[i] = b.first_uid + i;
		snprintf(kw, sizeof kw, "k%u", (unsigned)i);
		CHECK_INT(19, flags_op(&e, u, "Many", 0, &many[i], 1, '+', kw, 0).result, 0);
	}
	w = flags_op(&e, u, "Many", 0, many, 40, '+', "\\Seen", 0);
	CHECK_INT(20, w.result, STORE_OK);
	CHECK_INT(21, (int)w.n, 40);
	CHECK_INT(22, (int)w.n_flags, 40);
	CHECK(w.flags_pooled);
	CHECK(strncmp(w.text, "1:46:\\Seen k0:C;2:46:\\Seen k1:C;", 32) == 0);
	CHECK(strstr(w.text, ";40:46:\\Seen k39:C") != NULL);
	store_unsubscribe(e.st, &sub);
	env_free(&e);
}

/* COPY and MOVE: new UIDs in order (COPYUID pairs), flags and dates kept,
 * bodies shared, missing UIDs skipped; MOVE removes from the source with
 * the expunge log and the notifications. */
static void test_copy_move(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	struct wait a = append_n(&e, u, "INBOX", 4, "$K");
	CHECK_INT(0, a.result, STORE_OK);
	CHECK_INT(1, mb_create(&e, u, "Dst", NULL), STORE_OK);
	struct store_mailbox_status dst = status_of(&e, u, "Dst");
	struct notes nsrc = {""}, ndst = {""};
	char *err = NULL;
	struct store_sub *s1 = store_subscribe(e.st, u, "INBOX", change_cb, &nsrc, &err);
	struct store_sub *s2 = store_subscribe(e.st, u, "Dst", change_cb, &ndst, &err);
	uint32_t uids[] = {1, 3, 7};
	struct wait w = copy_op(&e, u, "INBOX", a.uidvalidity, uids, 3, "Dst", false);
	CHECK_INT(2, w.result, STORE_OK);
	CHECK_INT(3, w.uidvalidity, dst.uidvalidity);
	CHECK_STR(4, w.text, "1>1,3>2");
	CHECK_STR(5, ndst.text, "NEW Dst hms=2");
	CHECK_STR(6, nsrc.text, "");
	CHECK_INT(7, sql_int("SELECT count(*) FROM messages"), 4); /* shared */
	uint32_t mv[] = {2, 3};
	ndst.text[0] = '\0';
	w = copy_op(&e, u, "INBOX", 0, mv, 2, "Dst", true);
	CHECK_INT(8, w.result, STORE_OK);
	CHECK_STR(9, w.text, "2>3,3>4");
	CHECK_STR(10, nsrc.text, "EXPUNGE INBOX 2,3 hms=3");
	CHECK_STR(11, ndst.text, "NEW Dst hms=3");
	struct snap_req r;
	CHECK_STR(12, msgs(&e, u, "INBOX", &r),
		  "1:2:$K:1700000000+3600:23;4:2:$K:1700000003+3600:23");
	CHECK_STR(13, msgs(&e, u, "Dst", &r),
		  "1:2:$K:1700000000+3600:23;2:2:$K:1700000002+3600:23;"
		  "3:3:$K:1700000001+3600:23;4:3:$K:1700000002+3600:23");
	r = (struct snap_req){.user = u, .mailbox = "INBOX"};
	snap_run(&e, read_vanished, &r);
	CHECK_STR(14, r.text, "2;3");
	/* errors */
	CHECK_INT(15, copy_op(&e, u, "INBOX", a.uidvalidity + 1, uids, 1, "Dst", false).result,
		  STORE_CHANGED);
	CHECK_INT(16, copy_op(&e, u, "INBOX", 0, uids, 1, "Nosuch", true).result,
		  STORE_NONEXISTENT);
	CHECK_INT(17, copy_op(&e, u, "Nosuch", 0, uids, 1, "Dst", false).result,
		  STORE_NONEXISTENT);
	/* nothing to copy: OK, no pairs */
	uint32_t gone = 2;
	w = copy_op(&e, u, "INBOX", 0, &gone, 1, "Dst", true);
	CHECK_INT(18, w.result, STORE_OK);
	CHECK_INT(19, w.n, 0);
	CHECK_INT(20, status_of(&e, u, "Dst").highestmodseq, 3);
	store_unsubscribe(e.st, &s1);
	store_unsubscribe(e.st, &s2);
	/* a mailbox deleted with its messages: bodies still referenced stay */
	CHECK_INT(21, count_blobs(), 4);
	CHECK_INT(22, mb_delete(&e, u, "Dst"), STORE_OK);
	CHECK_INT(23, count_blobs(), 2);
	CHECK_INT(24, sql_int("SELECT count(*) FROM messages"), 2);
	env_free(&e);
}

/* QRESYNC: the expunge log records each expunged UID with the MODSEQ of its
 * expunge; store_expunge (POP3 QUIT) writes it too. */
static void test_vanished(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	struct wait a = append_n(&e, u, "INBOX", 6, "");
	CHECK_INT(0, a.result, STORE_OK);
	uint32_t x1[] = {2, 3}, x2[] = {5};
	CHECK_INT(1, expunge(&e, u, NULL, x1, 2), 0); /* modseq 3 */
	CHECK_INT(2, expunge(&e, u, NULL, x2, 1), 0); /* modseq 4 */
	struct store_uid_range rg[] = {{1, 2}, {5, 9}};
	static const struct {
		uint64_t since;
		size_t n;
		const char *want;
	} cases[] = {
		{0, 0, "2;3;5"},
		{2, 0, "2;3;5"},
		{3, 0, "5"},
		{4, 0, ""},
		{0, 2, "2;5"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct snap_req r = {.user = u, .mailbox = "INBOX", .since = cases[i].since,
				     .ranges = rg, .n = cases[i].n};
		snap_run(&e, read_vanished, &r);
		CHECK_INT((int)i, r.ret, STORE_OK);
		CHECK_STR((int)i, r.text, cases[i].want);
	}
	struct snap_req r = {.user = u, .mailbox = "INBOX", .uidvalidity = a.uidvalidity + 1};
	snap_run(&e, read_vanished, &r);
	CHECK_INT(10, r.ret, STORE_CHANGED);
	/* the messages themselves, by ranges */
	r = (struct snap_req){.user = u, .mailbox = "INBOX", .ranges = rg, .n = 2};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(11, r.text, "1:2::1700000000+3600:23;6:2::1700000005+3600:23");
	r = (struct snap_req){.user = u, .mailbox = "Gone"};
	snap_run(&e, read_msgs, &r);
	CHECK_INT(12, r.ret, STORE_NONEXISTENT);
	env_free(&e);
}

/* STATUS counts (want_counts) and opening a blob from a snapshot. */
struct blob_req {
	const char *blob;
	char text[64];
	int ret;
	bool done;
};

static int msg_blob_cb(void *arg, const struct store_msg *m)
{
	struct snap_req *r = arg;
	snprintf(r->text, sizeof r->text, "%s", m->blob);
	return 1; /* the first only */
}

static int read_first_blob(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_req *r = arg;
	r->ret = store_snap_messages(sn, r->user, r->mailbox, 0, NULL, 0, 0, STORE_MSG_PLAIN,
				     msg_blob_cb, r, err_r);
	if (r->ret != STORE_OK)
		return 0;
	int fd;
	char *blob = xstrdup(r->text);
	r->ret = store_snap_blob_open(sn, blob, &fd, err_r);
	free(blob);
	if (r->ret == STORE_OK) {
		ssize_t k = read(fd, r->text, sizeof r->text - 1);
		r->text[k > 0 ? k : 0] = '\0';
		close(fd);
	}
	return 0;
}

static void test_status_counts(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	CHECK_INT(0, append_n(&e, u, "Sent", 3, "").result, STORE_OK);
	uint32_t s1[] = {2}, s2[] = {3};
	CHECK_INT(1, flags_op(&e, u, "Sent", 0, s1, 1, '+', "\\Seen", 0).result, 0);
	CHECK_INT(2, flags_op(&e, u, "Sent", 0, s2, 1, '+', "\\Deleted", 0).result, 0);
	struct snap_req r = {.user = u, .mailbox = "Sent", .counts = true};
	snap_run(&e, read_mailboxes, &r);
	CHECK_STR(3, r.text, "Sent:\\Sent* 3/4 unseen=2 deleted=1 size=69 first=1");
	r = (struct snap_req){.user = u, .mailbox = "Sent"};
	snap_run(&e, read_first_blob, &r);
	CHECK_INT(4, r.ret, STORE_OK);
	CHECK_STR(4, r.text, "Subject: m0\r\n\r\nbody 0\r\n");
	struct store_quota q;
	char *err = NULL;
	CHECK_INT(5, store_quota_get(e.st, u, &q, &err), 0);
	CHECK_INT(6, q.storage_used, 69);
	CHECK_INT(7, q.message_used, 3);
	env_free(&e);
}

/* APPEND is all or none: one failing spool fails the whole call, and the
 * blobs of the others are removed. */
static void test_append_atomic(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	struct store_spool *sps[3];
	sps[0] = spool_of(&e, "one\r\n", 5);
	sps[2] = spool_of(&e, "three\r\n", 7);
	/* The middle one fails to write: a file size limit (EFBIG). */
	sps[1] = spool_of(&e, "", 0);
	size_t big = 256 * 1024;
	char *buf = xcalloc(1, big);
	struct rlimit old, lim = {64 * 1024, 64 * 1024};
	signal(SIGXFSZ, SIG_IGN);
	store_wait_idle(e.st);
	getrlimit(RLIMIT_FSIZE, &old);
	lim.rlim_max = old.rlim_max;
	setrlimit(RLIMIT_FSIZE, &lim);
	int wr = store_spool_write(sps[1], buf, big);
	setrlimit(RLIMIT_FSIZE, &old);
	free(buf);
	CHECK_INT(0, wr, -1);
	int blobs = count_blobs();
	struct store_mailbox_status before = status_of(&e, u, NULL);
	struct wait w = {0};
	store_append(e.st, u, "INBOX", sps, 3, NULL, NULL, NULL, append_cb, &w);
	run_until(e.l, &w.done);
	CHECK_INT(1, w.result, STORE_ERROR);
	struct store_mailbox_status after = status_of(&e, u, NULL);
	CHECK_INT(2, after.messages, before.messages);
	CHECK_INT(3, after.uidnext, before.uidnext);
	CHECK_INT(4, count_blobs(), blobs);
	CHECK_INT(5, sql_int("SELECT count(*) FROM messages"), 0);
	CHECK_INT(6, sql_int("SELECT message_used + storage_used FROM quotas"), 0);
	/* and a good one afterwards: APPENDUID */
	struct wait g = append_n(&e, u, "INBOX", 2, NULL);
	CHECK_INT(7, g.result, STORE_OK);
	CHECK_INT(8, g.uidvalidity, before.uidvalidity);
	CHECK_INT(9, g.first_uid, before.uidnext);
	CHECK_INT(10, count_blobs(), blobs + 2);
	/* to a mailbox that does not exist: [TRYCREATE] */
	g = append_n(&e, u, "Nosuch", 1, NULL);
	CHECK_INT(11, g.result, STORE_NONEXISTENT);
	CHECK_INT(12, count_blobs(), blobs + 2);
	/* an APPEND and a delivery queued together share the committer's round
	 * (their blobs are synced together); both are stored */
	struct store_targets t = {0};
	CHECK_INT(13, store_resolve(e.st, "bob@example.com", &t), 1);
	struct store_delivery d = {.txid = "T", .mail_from = "", .received = 1700000000,
				   .user_ids = &t.v[0].user_id, .n_users = 1};
	struct wait wd = {0}, wa = {0};
	store_commit(e.st, spool_of(&e, "to bob\r\n", 8), &d, res_cb, &wd);
	struct store_spool *one = spool_of(&e, "appended\r\n", 10);
	time_t date = 1700000100;
	int tz = -7200;
	store_append(e.st, u, "Drafts", &one, 1, NULL, &date, &tz, append_cb, &wa);
	store_targets_free(&t);
	run_until(e.l, &wd.done);
	run_until(e.l, &wa.done);
	CHECK_INT(14, wd.result, STORE_COMMIT_OK);
	CHECK_INT(15, wa.result, STORE_OK);
	CHECK_INT(16, wa.first_uid, 1);
	CHECK_INT(17, count_blobs(), blobs + 4);
	struct snap_req r;
	CHECK_STR(18, msgs(&e, u, "Drafts", &r), "1:2::1700000100-7200:10");
	env_free(&e);
}

/* Quota: limits refuse deliveries (STORE_COMMIT_OVERQUOTA), APPEND and COPY
 * (STORE_OVERQUOTA) with nothing stored; store_quota_full for RCPT. */
static void test_quota_limits(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	char *err = NULL;
	struct store_targets t = {0};
	CHECK_INT(0, store_resolve(e.st, u, &t), 1);
	int64_t id = t.v[0].user_id;
	store_targets_free(&t);
	CHECK(!store_quota_full(e.st, id));
	CHECK_INT(1, store_quota_set(e.st, u, 100, 3, &err), 0);
	CHECK_INT(2, store_quota_set(e.st, "nobody@example.com", 1, 1, &err), -1);
	free(err);
	err = NULL;
	char text[80];
	memset(text, 'x', sizeof text);
	CHECK_INT(3, deliver(&e, u, text, 60), STORE_COMMIT_OK);
	CHECK(!store_quota_full(e.st, id));
	int blobs = count_blobs();
	/* 60 + 60 > 100: the message itself would go over */
	CHECK_INT(4, deliver(&e, u, text, 60), STORE_COMMIT_OVERQUOTA);
	CHECK_INT(5, count_blobs(), blobs);
	CHECK_INT(6, deliver(&e, u, text, 40), STORE_COMMIT_OK); /* exactly at the limit */
	CHECK(store_quota_full(e.st, id));
	CHECK_INT(7, deliver(&e, u, text, 1), STORE_COMMIT_OVERQUOTA);
	CHECK_INT(8, append_n(&e, u, "INBOX", 1, NULL).result, STORE_OVERQUOTA);
	uint32_t one = 1;
	CHECK_INT(9, copy_op(&e, u, "INBOX", 0, &one, 1, "Sent", false).result, STORE_OVERQUOTA);
	/* MOVE within the account changes no usage */
	CHECK_INT(10, copy_op(&e, u, "INBOX", 0, &one, 1, "Sent", true).result, STORE_OK);
	struct store_quota q;
	CHECK_INT(11, store_quota_get(e.st, u, &q, &err), 0);
	CHECK_INT(12, q.storage_used, 100);
	CHECK_INT(13, q.message_used, 2);
	CHECK_INT(14, q.storage_limit, 100);
	CHECK_INT(15, q.message_limit, 3);
	/* message limit */
	CHECK_INT(16, store_quota_set(e.st, u, 0, 2, &err), 0);
	CHECK(store_quota_full(e.st, id));
	CHECK_INT(17, store_quota_set(e.st, u, 0, 0, &err), 0);
	CHECK(!store_quota_full(e.st, id));
	CHECK_INT(18, append_n(&e, u, "INBOX", 2, NULL).result, STORE_OK);
	/* bob is not affected by alice's limits */
	CHECK_INT(19, store_quota_set(e.st, u, 1, 1, &err), 0);
	CHECK_INT(20, deliver(&e, "bob@example.com", text, 60), STORE_COMMIT_OK);
	env_free(&e);
}

/* The counters stay exact: a random mix of deliveries, appends, copies,
 * moves, expunges, mailbox deletes and renames, then a full recount. */
static const char recount_sql[] =
	"SELECT count(*) FROM quotas q WHERE storage_used <>"
	" (SELECT coalesce(sum(m.size), 0) FROM mailboxes b JOIN mailbox_messages mm"
	" ON mm.mailbox_id = b.id JOIN messages m ON m.id = mm.message_id"
	" WHERE b.user_id = q.user_id) OR message_used <>"
	" (SELECT count(*) FROM mailboxes b JOIN mailbox_messages mm ON mm.mailbox_id = b.id"
	" WHERE b.user_id = q.user_id)";

/* One delivery, several recipients (user ids, remote count). */
static int deliver_ids(struct env *e, const int64_t *ids, size_t n, size_t n_remote,
		       const char *text, size_t len)
{
	struct store_spool *sp = spool_of(e, text, len);
	struct store_remote_rcpt rem = {.addr = "far@remote.org"};
	struct store_delivery d = {.txid = "T", .mail_from = "x@remote.org",
				   .received = 1700000000, .user_ids = ids, .n_users = n,
				   .remote = &rem, .n_remote = n_remote};
	struct wait w = {0};
	store_commit(e->st, sp, &d, res_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

/* A delivery to several recipients where the message does not fit one of
 * them. SMTP has one reply at end of data for all recipients, and RCPT only
 * refuses an account at or over its limit already (store_quota_full): a
 * refusal at commit for an account that was under its limit would come
 * back on every retry and hold the other recipients' copy hostage for ever.
 * So such an account takes this last message over its limit (Dovecot's
 * quota_grace does the same for the message that crosses the limit), unless
 * the message has no other recipient; an account already at its limit (it
 * filled up after RCPT) still refuses the whole delivery, and the retry's
 * RCPT then refuses that recipient alone. */
static void test_quota_multi_rcpt(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *a = "alice@example.com", *b = "bob@example.com";
	int64_t ids[2] = {user_id_of(e.st, a), user_id_of(e.st, b)};
	char *err = NULL;
	char text[200];
	memset(text, 'x', sizeof text);
	CHECK_INT(1, store_quota_set(e.st, a, 100, 0, &err), 0);
	CHECK_INT(2, deliver(&e, a, text, 60), STORE_COMMIT_OK);
	/* alone, a message that does not fit is refused */
	CHECK_INT(3, deliver(&e, a, text, 60), STORE_COMMIT_OVERQUOTA);
	/* with bob as well, both get it; alice goes over by this message */
	CHECK_INT(4, deliver_ids(&e, ids, 2, 0, text, 60), STORE_COMMIT_OK);
	struct store_quota q;
	CHECK_INT(5, store_quota_get(e.st, a, &q, &err), 0);
	CHECK_INT(6, q.storage_used, 120);
	CHECK_INT(7, store_quota_get(e.st, b, &q, &err), 0);
	CHECK_INT(8, q.storage_used, 60);
	CHECK_INT(9, sql_int(recount_sql), 0);
	/* now at (over) its limit: the whole delivery is refused, nothing counted */
	CHECK(store_quota_full(e.st, ids[0]));
	int blobs = count_blobs();
	CHECK_INT(10, deliver_ids(&e, ids, 2, 0, text, 10), STORE_COMMIT_OVERQUOTA);
	CHECK_INT(11, count_blobs(), blobs);
	CHECK_INT(12, store_quota_get(e.st, b, &q, &err), 0);
	CHECK_INT(13, q.storage_used, 60);
	/* a local recipient and a remote one: the remote one is not held hostage */
	CHECK_INT(14, store_quota_set(e.st, a, 200, 0, &err), 0);
	CHECK_INT(15, deliver_ids(&e, ids, 1, 1, text, 100), STORE_COMMIT_OK);
	CHECK_INT(16, sql_int("SELECT count(*) FROM queue"), 1);
	/* both over: refused, the retry would change nothing for anyone else */
	CHECK_INT(17, store_quota_set(e.st, a, 230, 0, &err), 0);
	CHECK_INT(18, store_quota_set(e.st, b, 70, 0, &err), 0);
	CHECK_INT(19, deliver_ids(&e, ids, 2, 0, text, 20), STORE_COMMIT_OVERQUOTA);
	/* the message limit the same way */
	CHECK_INT(20, store_quota_set(e.st, a, 0, 3, &err), 0);
	CHECK_INT(21, store_quota_set(e.st, b, 0, 0, &err), 0);
	CHECK_INT(22, deliver_ids(&e, ids, 2, 0, text, 5), STORE_COMMIT_OVERQUOTA);
	CHECK_INT(23, store_quota_set(e.st, a, 0, 4, &err), 0);
	CHECK_INT(24, deliver_ids(&e, ids, 2, 0, text, 5), STORE_COMMIT_OK);
	CHECK_INT(25, sql_int(recount_sql), 0);
	env_free(&e);
}

static void test_quota_counters(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	static const char *const users[] = {"alice@example.com", "bob@example.com"};
	static const char *const boxes[] = {"INBOX", "Sent", "Trash", "X"};
	unsigned seed = 7;
	char text[300];
	memset(text, 'y', sizeof text);
	for (int i = 0; i < 150; i++) {
		const char *u = users[rand_r(&seed) % 2];
		const char *b = boxes[rand_r(&seed) % 4];
		const char *b2 = boxes[rand_r(&seed) % 4];
		uint32_t uids[3] = {1 + rand_r(&seed) % 6, 7 + rand_r(&seed) % 6,
				    13 + rand_r(&seed) % 20};
		switch (rand_r(&seed) % 8) {
		case 0:
		case 1:
			deliver(&e, u, text, 1 + rand_r(&seed) % 300);
			break;
		case 2:
			append_n(&e, u, b, 1 + rand_r(&seed) % 3, "");
			break;
		case 3:
			copy_op(&e, u, b, 0, uids, 3, b2, false);
			break;
		case 4:
			copy_op(&e, u, b, 0, uids, 3, b2, true);
			break;
		case 5:
			expunge(&e, u, b, uids, 3);
			break;
		case 6:
			if (rand_r(&seed) % 4 == 0) {
				mb_delete(&e, u, "X");
				mb_create(&e, u, "X", NULL);
			} else {
				mb_create(&e, u, "X", NULL);
			}
			break;
		case 7:
			if (rand_r(&seed) % 3 == 0) {
				mb_rename(&e, u, "INBOX", "Y");
				mb_delete(&e, u, "X");
				mb_rename(&e, u, "Y", "X");
			}
			break;
		}
	}
	CHECK(sql_int("SELECT sum(message_used) FROM quotas") > 10);
	CHECK_INT(0, sql_int(recount_sql), 0);
	CHECK_INT(1, sql_int("SELECT count(*) FROM quotas"), 2);
	char *err = NULL;
	CHECK_INT(2, store_user_del(e.st, "bob@example.com", &err), 0);
	CHECK_INT(3, sql_int("SELECT count(*) FROM quotas"), 1);
	CHECK_INT(4, sql_int(recount_sql), 0);
	env_free(&e);
}

/* The cache hook: built on the committer for deliveries (small: from the
 * buffer; large: from the mapped blob) and appends, in the same
 * transaction; none before a builder is set; store_cache_save fills one. */
static void test_builder(const char *msg, size_t len, struct buf *out)
{
	buf_printf(out, "len=%zu first=%c last=%c", len, len ? msg[0] : '-',
		   len ? msg[len - 1] : '-');
}

static int64_t first_message_id;

static int msg_id_cb(void *arg, const struct store_msg *m)
{
	first_message_id = m->message_id;
	return 1;
}

static int read_msg_id(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_req *r = arg;
	r->ret = store_snap_messages(sn, r->user, r->mailbox, 0, NULL, 0, 0, STORE_MSG_PLAIN,
				     msg_id_cb, r, err_r);
	return 0;
}

static void test_cache(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	CHECK_INT(0, deliver(&e, u, "before\r\n", 8), STORE_COMMIT_OK);
	store_set_cache_builder(e.st, test_builder, NULL);
	CHECK_INT(1, deliver(&e, u, "small\r\n", 7), STORE_COMMIT_OK);
	size_t big = 200 * 1024;
	char *text = xmalloc(big);
	memset(text, 'b', big);
	text[0] = 'B';
	text[big - 1] = 'E';
	CHECK_INT(2, deliver(&e, u, text, big), STORE_COMMIT_OK);
	free(text);
	CHECK_INT(3, append_n(&e, u, "INBOX", 1, NULL).result, STORE_OK);
	struct snap_req r = {.user = u, .mailbox = "INBOX", .cache = true};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(4, r.text,
		  "1:NULL;2:len=7 first=s last=\n;3:len=204800 first=B last=E;"
		  "4:len=23 first=S last=\n");
	r = (struct snap_req){.user = u, .mailbox = "INBOX"};
	snap_run(&e, read_msg_id, &r);
	store_cache_save(e.st, first_message_id, "saved", 5);
	/* a cache of other bytes replaces it (an older format's, rebuilt by a
	 * reader: mime.c's version); the same bytes again change nothing */
	store_cache_save(e.st, first_message_id, "again", 5);
	store_cache_save(e.st, first_message_id, "again", 5);
	store_wait_idle(e.st);
	r = (struct snap_req){.user = u, .mailbox = "INBOX", .cache = true,
			      .ranges = &(struct store_uid_range){1, 1}, .n = 1};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(5, r.text, "1:again");
	/* a copy shares the body, so its cache */
	uint32_t three = 3;
	CHECK_INT(6, copy_op(&e, u, "INBOX", 0, &three, 1, "Sent", false).result, STORE_OK);
	r = (struct snap_req){.user = u, .mailbox = "Sent", .cache = true};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(7, r.text, "1:len=204800 first=B last=E");
	env_free(&e);
}

/* SORT's narrow rows (store.h, STORE_MSG_SORT): written with each cache
 * the sort_fn reads (commit, APPEND, store_cache_save), removed when a
 * cache it cannot read replaces one; a body without them comes with its
 * cache and blob name instead. Here the "sort section" of a cache is the
 * text after "len=". */
/* the sort keys: what follows "len="; the thread keys: the same less its
 * first octet */
static bool test_sort_section(const void *cache, size_t len, struct store_cache_keys *k)
{
	if (len < 5 || memcmp(cache, "len=", 4) != 0)
		return false;
	k->sort = (const char *)cache + 4;
	k->sort_len = len - 4;
	k->thread = (const char *)cache + 5;
	k->thread_len = len - 5;
	return true;
}

static void test_sort_keys(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	CHECK_INT(0, deliver(&e, u, "before\r\n", 8), STORE_COMMIT_OK);
	store_set_cache_builder(e.st, test_builder, test_sort_section);
	CHECK_INT(1, deliver(&e, u, "small\r\n", 7), STORE_COMMIT_OK);
	CHECK_INT(2, append_n(&e, u, "INBOX", 1, NULL).result, STORE_OK);
	struct snap_req r = {.user = u, .mailbox = "INBOX", .sortkeys = true};
	snap_run(&e, read_msgs, &r);
	CHECK_INT(3, r.ret, STORE_OK);
	CHECK_STR(4, r.text,
		  "1:8:cache=NULL:blob=yes;2:7:keys=7 first=s last=\n;"
		  "3:23:keys=23 first=S last=\n");
	/* the reader saves the first body's cache: its keys come with it */
	r = (struct snap_req){.user = u, .mailbox = "INBOX"};
	snap_run(&e, read_msg_id, &r);
	store_cache_save(e.st, first_message_id, "len=saved", 9);
	store_wait_idle(e.st);
	r = (struct snap_req){.user = u,
			      .mailbox = "INBOX",
			      .sortkeys = true,
			      .ranges = &(struct store_uid_range){1, 1},
			      .n = 1};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(5, r.text, "1:8:keys=saved");
	/* a cache the sort_fn cannot read takes the keys away */
	store_cache_save(e.st, first_message_id, "other", 5);
	store_wait_idle(e.st);
	r = (struct snap_req){.user = u,
			      .mailbox = "INBOX",
			      .sortkeys = true,
			      .ranges = &(struct store_uid_range){1, 1},
			      .n = 1};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(6, r.text, "1:8:cache=other:blob=yes");
	/* a copy shares the body, so its keys */
	uint32_t two = 2;
	CHECK_INT(7, copy_op(&e, u, "INBOX", 0, &two, 1, "Sent", false).result, STORE_OK);
	r = (struct snap_req){.user = u, .mailbox = "Sent", .sortkeys = true};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(8, r.text, "1:7:keys=7 first=s last=\n");
	/* the thread keys come from the same row */
	r = (struct snap_req){.user = u, .mailbox = "INBOX", .threadkeys = true};
	snap_run(&e, read_msgs, &r);
	CHECK_INT(9, r.ret, STORE_OK);
	CHECK_STR(10, r.text,
		  "1:8:cache=other:blob=yes;2:7:keys= first=s last=\n;"
		  "3:23:keys=3 first=S last=\n");
	/* empty keys (x'': SQLite gives no pointer) are no keys either: the
	 * body comes with its cache and blob name, as without a row */
	store_cache_save(e.st, first_message_id, "len=X", 5);
	store_wait_idle(e.st);
	r = (struct snap_req){.user = u,
			      .mailbox = "INBOX",
			      .threadkeys = true,
			      .ranges = &(struct store_uid_range){1, 1},
			      .n = 1};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(11, r.text, "1:8:cache=len=X:blob=yes");
	r = (struct snap_req){.user = u,
			      .mailbox = "INBOX",
			      .sortkeys = true,
			      .ranges = &(struct store_uid_range){1, 1},
			      .n = 1};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(12, r.text, "1:8:keys=X");
	env_free(&e);
}

/* Kept SORT orders (sort_orders.c): the order of crit (one octet, in
 * r->since) as "max:uid,uid...", or "none". */
static int read_order(struct store_snap *sn, void *arg, char **err_r)
{
	struct snap_req *r = arg;
	uint8_t crit = (uint8_t)r->since;
	uint32_t max = 0, *uids = NULL;
	size_t n = 0;
	r->ret = store_snap_sort_order(sn, r->user, r->mailbox, r->uidvalidity, &crit, 1, &max,
				       &uids, &n, err_r);
	if (r->ret == 0) {
		int at = snprintf(r->text, sizeof r->text, "%u:", max);
		for (size_t i = 0; i < n && at < (int)sizeof r->text - 12; i++)
			at += snprintf(r->text + at, sizeof r->text - (size_t)at, "%s%u",
				       i ? "," : "", uids[i]);
	} else {
		snprintf(r->text, sizeof r->text, "none");
	}
	free(uids);
	return 0;
}

static const char *order_of(struct env *e, const char *user, const char *mailbox, uint8_t crit,
			    struct snap_req *r)
{
	*r = (struct snap_req){.user = user, .mailbox = mailbox, .since = crit};
	snap_run(e, read_order, r);
	return r->text;
}

static uint32_t *uids_of(size_t n, uint32_t first)
{
	uint32_t *v = xmalloc((n ? n : 1) * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = first + (uint32_t)(n - 1 - i);
	return v;
}

/* store_sort_order_save takes the UIDs (freed by the store: LeakSanitizer
 * checks the refused ones too, n 0 or no criteria); at most 8 orders per
 * mailbox, the most recently written, whatever the other mailboxes hold. */
static void test_sort_orders(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	struct snap_req r;
	CHECK_INT(0, append_n(&e, u, "INBOX", 3, NULL).result, STORE_OK);
	CHECK_INT(1, append_n(&e, u, "Sent", 3, NULL).result, STORE_OK);
	uint32_t vi = status_of(&e, u, "INBOX").uidvalidity, vs = status_of(&e, u, "Sent").uidvalidity;
	uint8_t crit = 1;
	store_sort_order_save(e.st, u, "INBOX", vi, &crit, 1, 3, uids_of(0, 1), 0);
	store_sort_order_save(e.st, u, "INBOX", vi, &crit, 0, 3, uids_of(3, 1), 3);
	store_sort_order_save(e.st, u, "INBOX", vi, &crit, 1, 3, NULL, 0);
	store_wait_idle(e.st);
	CHECK_STR(2, order_of(&e, u, "INBOX", 1, &r), "none");
	store_sort_order_save(e.st, u, "INBOX", vi, &crit, 1, 3, uids_of(3, 1), 3);
	store_wait_idle(e.st);
	CHECK_STR(3, order_of(&e, u, "INBOX", 1, &r), "3:3,2,1");
	/* an order for a lower UID does not replace it */
	store_sort_order_save(e.st, u, "INBOX", vi, &crit, 1, 2, uids_of(2, 1), 2);
	store_wait_idle(e.st);
	CHECK_STR(4, order_of(&e, u, "INBOX", 1, &r), "3:3,2,1");
	/* criteria 1..12 on INBOX, 1..5 on Sent between them: INBOX keeps 5..12 */
	for (uint8_t c = 1; c <= 12; c++) {
		store_sort_order_save(e.st, u, "INBOX", vi, &c, 1, 3, uids_of(3, 1), 3);
		if (c <= 5)
			store_sort_order_save(e.st, u, "Sent", vs, &c, 1, 3, uids_of(3, 1), 3);
		store_wait_idle(e.st);
	}
	for (uint8_t c = 1; c <= 12; c++)
		CHECK_STR(100 + c, order_of(&e, u, "INBOX", c, &r), c >= 5 ? "3:3,2,1" : "none");
	for (uint8_t c = 1; c <= 5; c++)
		CHECK_STR(200 + c, order_of(&e, u, "Sent", c, &r), "3:3,2,1");
	/* 6..9 on Sent push out Sent's oldest (1) only */
	for (uint8_t c = 6; c <= 9; c++) {
		store_sort_order_save(e.st, u, "Sent", vs, &c, 1, 3, uids_of(3, 1), 3);
		store_wait_idle(e.st);
	}
	for (uint8_t c = 1; c <= 9; c++)
		CHECK_STR(300 + c, order_of(&e, u, "Sent", c, &r), c == 1 ? "none" : "3:3,2,1");
	for (uint8_t c = 5; c <= 12; c++)
		CHECK_STR(400 + c, order_of(&e, u, "INBOX", c, &r), "3:3,2,1");
	env_free(&e);
}

/* Building the cache of a large message does not hold the committer: a
 * small delivery committed while a 300 KiB one's cache is being built (here
 * a builder that takes 1.5 s) completes first; the large one still gets its
 * cache, in the same transaction as its row (an APPEND the same way). */
static void slow_builder(const char *msg, size_t len, struct buf *out)
{
	if (len > STORE_CACHE_INLINE_MAX)
		usleep(1500 * 1000);
	buf_printf(out, "built %zu", len);
}

static void test_cache_off_committer(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	int64_t id = user_id_of(e.st, u);
	store_set_cache_builder(e.st, slow_builder, NULL);
	size_t big = 300 * 1024;
	char *text = xmalloc(big);
	memset(text, 'b', big);
	struct store_delivery d = {.txid = "T", .mail_from = "x@remote.org",
				   .received = 1700000000, .user_ids = &id, .n_users = 1};
	struct wait wbig = {0};
	store_commit(e.st, spool_of(&e, text, big), &d, res_cb, &wbig);
	CHECK_INT(1, deliver(&e, u, "small\r\n", 7), STORE_COMMIT_OK);
	CHECK(!wbig.done); /* the small one did not wait for the large one's cache */
	run_until(e.l, &wbig.done);
	CHECK_INT(2, wbig.result, STORE_COMMIT_OK);
	/* an APPEND of a large message, then a small one */
	struct store_spool *sp = spool_of(&e, text, big);
	struct wait wapp = {0};
	store_append(e.st, u, "INBOX", &sp, 1, NULL, NULL, NULL, append_cb, &wapp);
	CHECK_INT(3, deliver(&e, u, "small\r\n", 7), STORE_COMMIT_OK);
	CHECK(!wapp.done);
	run_until(e.l, &wapp.done);
	CHECK_INT(4, wapp.result, STORE_OK);
	free(text);
	struct snap_req r = {.user = u, .mailbox = "INBOX", .cache = true};
	snap_run(&e, read_msgs, &r);
	CHECK_STR(5, r.text, "1:built 7;2:built 307200;3:built 7;4:built 307200");
	CHECK_INT(6, count_blobs(), 4);
	env_free(&e);
}

/* DELETE announces STORE_CHANGE_DELETED; APPEND to INBOX announces NEW. */
static void test_notifications(void)
{
	struct env e;
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *u = "alice@example.com";
	struct notes n1 = {""}, n2 = {""};
	char *err = NULL;
	CHECK_INT(0, mb_create(&e, u, "Tmp", NULL), STORE_OK);
	struct store_sub *s1 = store_subscribe(e.st, u, "Tmp", change_cb, &n1, &err);
	struct store_sub *s2 = store_subscribe(e.st, u, "INBOX", change_cb, &n2, &err);
	CHECK_INT(1, append_n(&e, u, "Tmp", 1, NULL).result, STORE_OK);
	CHECK_INT(2, mb_delete(&e, u, "Tmp"), STORE_OK);
	CHECK_STR(3, n1.text, "NEW Tmp hms=2;DELETED Tmp");
	CHECK_INT(4, append_n(&e, u, "INBOX", 2, NULL).result, STORE_OK);
	CHECK_STR(5, n2.text, "NEW INBOX hms=2");
	/* a failed operation announces nothing */
	CHECK_INT(6, mb_delete(&e, u, "INBOX"), STORE_CANNOT);
	CHECK_STR(7, n2.text, "NEW INBOX hms=2");
	store_unsubscribe(e.st, &s1);
	store_unsubscribe(e.st, &s2);
	env_free(&e);
}

/* A version 2 data directory (the schema as postern wrote it before IMAP)
 * is upgraded in place: special-use mailboxes for every user, the
 * subscriptions from mailboxes.subscribed, save dates, exact quota
 * counters; and it works afterwards. */
static const char schema_v2_fixture[] =
	"CREATE TABLE domains ( id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);"
	"CREATE TABLE users ( id INTEGER PRIMARY KEY AUTOINCREMENT, domain_id INTEGER NOT NULL"
	" REFERENCES domains(id), localpart TEXT NOT NULL, password_hash TEXT NOT NULL,"
	" created INTEGER NOT NULL, UNIQUE(domain_id, localpart));"
	"CREATE TABLE aliases ( id INTEGER PRIMARY KEY AUTOINCREMENT, domain_id INTEGER NOT NULL"
	" REFERENCES domains(id) ON DELETE CASCADE, localpart TEXT NOT NULL, target TEXT NOT NULL,"
	" UNIQUE(domain_id, localpart, target));"
	"CREATE TABLE mailboxes ( id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL"
	" REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL DEFAULT 1, highestmodseq INTEGER NOT NULL DEFAULT 1,"
	" subscribed INTEGER NOT NULL DEFAULT 1, UNIQUE(user_id, name));"
	"CREATE TABLE messages ( id INTEGER PRIMARY KEY AUTOINCREMENT, blob TEXT NOT NULL UNIQUE,"
	" size INTEGER NOT NULL, received INTEGER NOT NULL, mail_from TEXT NOT NULL, envid TEXT,"
	" ret TEXT, auth_user TEXT);"
	"CREATE TABLE mailbox_messages ( mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id)"
	" ON DELETE CASCADE, uid INTEGER NOT NULL, message_id INTEGER NOT NULL REFERENCES"
	" messages(id), flags TEXT NOT NULL DEFAULT '', modseq INTEGER NOT NULL, internaldate"
	" INTEGER NOT NULL, PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE INDEX mailbox_messages_message ON mailbox_messages(message_id);"
	"CREATE TABLE queue ( id INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER NOT NULL"
	" REFERENCES messages(id), rcpt TEXT NOT NULL, orcpt TEXT, notify TEXT, attempts INTEGER"
	" NOT NULL DEFAULT 0, next_try INTEGER NOT NULL, last_error TEXT, created INTEGER NOT"
	" NULL);"
	"CREATE INDEX queue_message ON queue(message_id);"
	"CREATE INDEX queue_next_try ON queue(next_try);"
	"CREATE TABLE counters ( name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT INTO domains VALUES (1, 'example.com');"
	"INSERT INTO users VALUES (1, 1, 'alice', 'x', 1600000000), (2, 1, 'bob', 'x', 1600000000);"
	"INSERT INTO mailboxes VALUES (1, 1, 'INBOX', 1600000001, 3, 3, 1),"
	" (2, 2, 'INBOX', 1600000002, 2, 2, 1), (3, 1, 'Sent', 1600000003, 2, 2, 0),"
	" (4, 1, 'Lists', 1600000004, 1, 1, 1);"
	"INSERT INTO messages VALUES (1, 'aaa', 10, 1700000000, '', NULL, NULL, NULL),"
	" (2, 'bbb', 20, 1700000001, '', NULL, NULL, NULL);"
	"INSERT INTO mailbox_messages VALUES (1, 1, 1, '\\Seen', 2, 1700000000),"
	" (1, 2, 2, '', 3, 1700000001), (2, 1, 2, '', 2, 1700000001), (3, 1, 1, '', 2, 1700000000);"
	"INSERT INTO counters VALUES ('uidvalidity', 1600000004);"
	/* a queued message with no mailbox entry, and an alias */
	"INSERT INTO messages VALUES (3, 'ccc', 30, 1700000002, 'a@example.com', 'E1', 'HDRS',"
	" 'alice@example.com');"
	"INSERT INTO queue VALUES (7, 3, 'far@remote.org', 'rfc822;far@remote.org', 'FAILURE', 2,"
	" 1700000500, '451 later', 1700000002);"
	"INSERT INTO aliases VALUES (5, 1, 'info', 'alice@example.com');"
	"PRAGMA user_version = 2;";

static void test_migration(void)
{
	dir_new();
	char path[128];
	snprintf(path, sizeof path, "%s/data", tmpdir);
	CHECK(mkdir(path, 0700) == 0);
	CHECK_INT(0, sql_exec(schema_v2_fixture), 0);
	struct env e;
	if (!env_start(&e)) {
		CHECK(0);
		return;
	}
	static const struct {
		const char *sql;
		long long want;
	} cases[] = {
		{"PRAGMA user_version", 14},
		/* Drafts, Trash, Junk, Archive for alice (Sent existed), all five for bob */
		{"SELECT count(*) FROM mailboxes", 13},
		{"SELECT count(*) FROM mailboxes WHERE special_use IS NOT NULL", 10},
		{"SELECT special_use = '\\Sent' FROM mailboxes WHERE id = 3", 1},
		{"SELECT count(DISTINCT uidvalidity) FROM mailboxes", 13},
		{"SELECT min(uidvalidity) FROM mailboxes WHERE id > 4", 1600000005},
		{"SELECT value FROM counters WHERE name = 'uidvalidity'", 1600000013},
		/* subscriptions: the subscribed ones plus every special-use one */
		{"SELECT count(*) FROM subscriptions", 13},
		{"SELECT count(*) FROM subscriptions WHERE name = 'Lists'", 1},
		/* kept as it was */
		{"SELECT uidnext * 10 + highestmodseq FROM mailboxes WHERE id = 1", 33},
		{"SELECT count(*) FROM mailbox_messages WHERE savedate <> internaldate", 0},
		{"SELECT count(*) FROM messages WHERE cache IS NOT NULL", 0},
		{"SELECT storage_used * 10 + message_used FROM quotas WHERE user_id = 1", 403},
		{"SELECT storage_used * 10 + message_used FROM quotas WHERE user_id = 2", 201},
		{"SELECT storage_limit + message_limit FROM quotas", 0},
		{"SELECT count(*) FROM expunged", 0},
		{"SELECT count(*) FROM pragma_foreign_key_check", 0},
		/* the rows of version 2, row for row */
		{"SELECT count(*) FROM queue WHERE id = 7 AND message_id = 3 AND rcpt ="
		 " 'far@remote.org' AND orcpt = 'rfc822;far@remote.org' AND notify = 'FAILURE'"
		 " AND attempts = 2 AND next_try = 1700000500 AND last_error = '451 later'"
		 " AND created = 1700000002", 1},
		{"SELECT count(*) FROM queue", 1},
		{"SELECT count(*) FROM messages WHERE id = 3 AND blob = 'ccc' AND size = 30 AND"
		 " received = 1700000002 AND mail_from = 'a@example.com' AND envid = 'E1' AND"
		 " ret = 'HDRS' AND auth_user = 'alice@example.com'", 1},
		{"SELECT count(*) FROM messages", 3},
		{"SELECT count(*) FROM aliases WHERE id = 5 AND domain_id = 1 AND localpart = 'info'"
		 " AND target = 'alice@example.com'", 1},
		{"SELECT count(*) FROM users WHERE password_hash = 'x' AND created = 1600000000", 2},
		{"SELECT (SELECT group_concat(mailbox_id || ':' || uid || ':' || message_id || ':' || flags"
		 " || ':' || modseq || ':' || internaldate || ':' || internaldate_tz, ' ') FROM"
		 " (SELECT * FROM mailbox_messages ORDER BY mailbox_id, uid)) = '1:1:1:\\Seen:2:"
		 "1700000000:0 1:2:2::3:1700000001:0 2:1:2::2:1700000001:0 3:1:1::2:1700000000:0'",
		 1},
		{"SELECT (SELECT group_concat(id || ':' || user_id || ':' || name || ':' || uidvalidity || ':'"
		 " || uidnext || ':' || highestmodseq, ' ') FROM (SELECT * FROM mailboxes WHERE id <= 4"
		 " ORDER BY id)) = '1:1:INBOX:1600000001:3:3 2:2:INBOX:1600000002:2:2"
		 " 3:1:Sent:1600000003:2:2 4:1:Lists:1600000004:1:1'", 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		long long got = sql_int(cases[i].sql);
		if (got != cases[i].want)
			printf("    %s\n", cases[i].sql);
		CHECK_INT((int)i, got, cases[i].want);
	}
	CHECK_INT(30, sql_int(recount_sql), 0);
	/* the new code works on it */
	const char *u = "alice@example.com";
	struct snap_req r;
	CHECK_STR(31, mailboxes(&e, u, &r),
		  "Archive:\\Archive* 0;Drafts:\\Drafts* 0;INBOX* 2;Junk:\\Junk* 0;Lists* 0;"
		  "Sent:\\Sent* 1;Trash:\\Trash* 0");
	CHECK_STR(32, msgs(&e, u, "INBOX", &r), "1:2:\\Seen:1700000000+0:10;2:3::1700000001+0:20");
	uint32_t both[] = {1, 2};
	CHECK_INT(33, copy_op(&e, u, "INBOX", 0, both, 2, "Trash", true).result, STORE_OK);
	CHECK_INT(34, sql_int(recount_sql), 0);
	store_close(&e.st);
	/* reopening does not migrate again */
	char *err = NULL;
	e.st = store_open(path, &err);
	CHECK(e.st != NULL);
	CHECK_INT(35, sql_int("SELECT count(*) FROM mailboxes"), 13);
	env_free(&e);
}

int main(void)
{
	test_run("mailbox_ops", test_mailbox_ops);
	test_run("rename_children", test_rename_children);
	test_run("rename_inbox", test_rename_inbox);
	test_run("flags", test_flags);
	test_run("copy_move", test_copy_move);
	test_run("vanished", test_vanished);
	test_run("status_counts", test_status_counts);
	test_run("append_atomic", test_append_atomic);
	test_run("quota_limits", test_quota_limits);
	test_run("quota_counters", test_quota_counters);
	test_run("quota_multi_rcpt", test_quota_multi_rcpt);
	test_run("cache_off_committer", test_cache_off_committer);
	test_run("cache", test_cache);
	test_run("sort_keys", test_sort_keys);
	test_run("sort_orders", test_sort_orders);
	test_run("notifications", test_notifications);
	test_run("migration", test_migration);
	return test_done("test_store_imap");
}
