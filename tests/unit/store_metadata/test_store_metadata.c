/* Unit tests for the store's IMAP METADATA section (store.h, metadata.c;
 * RFC 5464): entry name syntax (3.2), SETMETADATA on the committer (all or
 * nothing, the entry limits), the snapshot reads, the server's /shared
 * entries of the CLI, the /shared/admin domain, and the rows following
 * RENAME, RENAME INBOX, DELETE and the user's removal. Each test works in
 * its own temporary directory with a real loop, pool and committer. */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "store/store.h"

#define STORE_FIXTURE_NAME "test_store_metadata"
#include "../store_fixture.h"

static void test_names(void)
{
	static const struct {
		const char *in;
		bool root;
		const char *out; /* lowercased, or NULL: refused */
	} cases[] = {
		{"/private/comment", false, "/private/comment"},
		{"/Shared/Comment", false, "/shared/comment"},
		{"/PRIVATE/vendor/Vendor.X/a b", false, "/private/vendor/vendor.x/a b"},
		{"/private", true, "/private"},
		{"/shared", true, "/shared"},
		{"/private", false, NULL},       /* needs a second component to set */
		{"/shared/", true, NULL},        /* ends with '/' */
		{"/private//x", false, NULL},    /* "//" */
		{"private/x", false, NULL},      /* no leading '/' */
		{"/privatex/y", false, NULL},    /* first component */
		{"/other/y", false, NULL},
		{"/private/a*", false, NULL},
		{"/private/a%", false, NULL},
		{"/private/\x19", false, NULL},  /* 0x00-0x19 */
		{"/private/\x20ok", false, "/private/ ok"},
		{"/private/caf\xc3\xa9", false, NULL}, /* non-ASCII */
		{"", true, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *s = xstrdup(cases[i].in);
		const char *why = store_metadata_name_check(s, cases[i].root);
		CHECK_INT((int)i, why == NULL, cases[i].out != NULL);
		if (why == NULL && cases[i].out != NULL)
			CHECK_STR((int)i, s, cases[i].out);
		free(s);
	}
	char *longname = xmalloc(STORE_METADATA_MAX_NAME + 2);
	memcpy(longname, "/private/", 9);
	memset(longname + 9, 'a', STORE_METADATA_MAX_NAME + 1 - 9);
	longname[STORE_METADATA_MAX_NAME + 1] = '\0';
	CHECK(store_metadata_name_check(longname, false) != NULL);
	longname[STORE_METADATA_MAX_NAME] = '\0';
	CHECK(store_metadata_name_check(longname, false) == NULL);
	free(longname);
}

/* ---- helpers ---- */

struct wait {
	bool done;
	int result;
};

static void res_cb(void *arg, int result)
{
	struct wait *w = arg;
	w->done = true;
	w->result = result;
}

static int set(struct env *e, const char *user, const char *mailbox,
	       const struct store_metadata_set *v, size_t n, unsigned max, unsigned max_user)
{
	struct wait w = {0};
	store_metadata_set(e->st, user, mailbox, v, n, max, max_user, res_cb, &w);
	CHECK(!w.done); /* never from inside the call */
	run_until(e->l, &w.done);
	return w.result;
}

static int set1(struct env *e, const char *user, const char *mailbox, const char *name,
		const char *value)
{
	struct store_metadata_set v = {name, value, value ? strlen(value) : 0};
	return set(e, user, mailbox, &v, 1, 100, 1000);
}

/* A snapshot read: the entries of (user, mailbox) as "name=value;..." or
 * "NONEXISTENT". */
struct dump {
	const char *user, *mailbox;
	bool server_shared;
	bool done;
	int result;
	struct buf names;
	struct buf text;
	int64_t uid, mid;
};

static void name_cb(void *arg, const char *name, uint64_t size)
{
	struct buf *b = arg;
	buf_appends(b, name);
	buf_appendc(b, '\0');
}

static int dump_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct dump *d = arg;
	int r = store_snap_metadata_scope(sn, d->user, d->mailbox, &d->uid, &d->mid, err_r);
	if (r == STORE_NONEXISTENT) {
		free(*err_r);
		*err_r = NULL;
		buf_appends(&d->text, "NONEXISTENT");
		return 0;
	}
	if (r != STORE_OK)
		return -1;
	int64_t uid = d->server_shared ? 0 : d->uid;
	if (store_snap_metadata_names(sn, uid, d->mid, name_cb, &d->names, err_r) < 0)
		return -1;
	for (size_t off = 0; off < d->names.len; off += strlen(d->names.data + off) + 1) {
		const char *name = d->names.data + off;
		struct buf v = BUF_INIT;
		if (store_snap_metadata_get(sn, uid, d->mid, name, &v, err_r) != 1) {
			buf_free(&v);
			return -1;
		}
		buf_printf(&d->text, "%s%s=%.*s", d->text.len ? ";" : "", name, (int)v.len,
			   v.data ? v.data : "");
		buf_free(&v);
	}
	return 0;
}

static void dump_done(void *arg, int result, const char *err)
{
	struct dump *d = arg;
	d->done = true;
	d->result = result;
	if (result < 0)
		printf("  dump: %s\n", err ? err : "?");
}

/* heap */
static char *dump(struct env *e, const char *user, const char *mailbox)
{
	struct dump d = {.user = user, .mailbox = mailbox};
	store_read(e->st, e->p, dump_read, dump_done, &d);
	run_until(e->l, &d.done);
	buf_free(&d.names);
	CHECK(d.result == 0);
	return d.text.data ? d.text.data : xstrdup("");
}

static int mbox_op(struct env *e, int op, const char *user, const char *a, const char *b)
{
	struct wait w = {0};
	if (op == 'c')
		store_mailbox_create(e->st, user, a, NULL, res_cb, &w);
	else if (op == 'd')
		store_mailbox_delete(e->st, user, a, res_cb, &w);
	else
		store_mailbox_rename(e->st, user, a, b, res_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

#define CHECK_DUMP(n, user, mailbox, want)                                                         \
	do {                                                                                       \
		char *got_ = dump(&e, user, mailbox);                                              \
		CHECK_STR(n, got_, want);                                                          \
		free(got_);                                                                        \
	} while (0)

static const char *const A = "alice@example.com", *const B = "bob@example.com";

static void test_set_get(void)
{
	struct env e;
	CHECK(env_new(&e));
	CHECK_INT(1, set1(&e, A, "INBOX", "/private/comment", "mine"), STORE_OK);
	CHECK_INT(2, set1(&e, A, "inbox", "/shared/comment", "ours"), STORE_OK);
	CHECK_DUMP(3, A, "INBOX", "/private/comment=mine;/shared/comment=ours");
	CHECK_DUMP(4, B, "INBOX", "");
	/* replace, and an empty value stays a value; delete */
	CHECK_INT(5, set1(&e, A, "INBOX", "/private/comment", ""), STORE_OK);
	CHECK_DUMP(6, A, "INBOX", "/private/comment=;/shared/comment=ours");
	CHECK_INT(7, set1(&e, A, "INBOX", "/private/comment", NULL), STORE_OK);
	CHECK_INT(8, set1(&e, A, "INBOX", "/private/nothing", NULL), STORE_OK);
	CHECK_DUMP(9, A, "INBOX", "/shared/comment=ours");
	/* binary values keep every octet */
	struct store_metadata_set bin = {"/private/bin", "a\0b", 3};
	CHECK_INT(10, set(&e, A, "INBOX", &bin, 1, 100, 1000), STORE_OK);
	CHECK_INT(11, sql_int("SELECT length(value) FROM metadata WHERE name = '/private/bin'"),
		  3);
	/* server entries: mailbox NULL (id 0) */
	CHECK_INT(12, set1(&e, A, NULL, "/private/motd", "srv"), STORE_OK);
	CHECK_DUMP(13, A, NULL, "/private/motd=srv");
	CHECK_INT(14, sql_int("SELECT mailbox_id FROM metadata WHERE name = '/private/motd'"), 0);
	/* no such mailbox, no such user */
	CHECK_INT(15, set1(&e, A, "Nowhere", "/private/x", "1"), STORE_NONEXISTENT);
	CHECK_INT(16, set1(&e, "nobody@example.com", "INBOX", "/private/x", "1"),
		  STORE_NONEXISTENT);
	CHECK_INT(17, set1(&e, "nobody@example.com", NULL, "/private/x", "1"), STORE_NONEXISTENT);
	CHECK_DUMP(18, A, "Nowhere", "NONEXISTENT");
	env_free(&e);
}

static void test_limits_atomic(void)
{
	struct env e;
	CHECK(env_new(&e));
	struct store_metadata_set v[4] = {
		{"/private/a", "1", 1}, {"/private/b", "2", 1}, {"/private/c", "3", 1},
		{"/private/d", "4", 1}};
	/* 3 per mailbox: the 4th of one command refuses all four */
	CHECK_INT(1, set(&e, A, "INBOX", v, 4, 3, 1000), STORE_LIMIT);
	CHECK_DUMP(2, A, "INBOX", "");
	CHECK_INT(3, set(&e, A, "INBOX", v, 3, 3, 1000), STORE_OK);
	/* replacing is not adding; deleting first makes room (in order) */
	CHECK_INT(4, set(&e, A, "INBOX", v, 1, 3, 1000), STORE_OK);
	struct store_metadata_set swap[2] = {{"/private/d", "4", 1}, {"/private/a", NULL, 0}};
	CHECK_INT(5, set(&e, A, "INBOX", swap, 2, 3, 1000), STORE_LIMIT);
	struct store_metadata_set swap2[2] = {{"/private/a", NULL, 0}, {"/private/d", "4", 1}};
	CHECK_INT(6, set(&e, A, "INBOX", swap2, 2, 3, 1000), STORE_OK);
	CHECK_DUMP(7, A, "INBOX", "/private/b=2;/private/c=3;/private/d=4");
	/* per user over every mailbox and the server: 3 there, 2 more */
	CHECK_INT(8, set(&e, A, NULL, v, 2, 3, 5), STORE_OK);
	CHECK_INT(9, set(&e, A, "Sent", v, 1, 3, 5), STORE_LIMIT);
	CHECK_INT(10, set(&e, B, "Sent", v, 1, 3, 5), STORE_OK); /* bob's own count */
	/* limit 0: none */
	CHECK_INT(11, set(&e, A, "Sent", v, 4, 0, 0), STORE_OK);
	env_free(&e);
}

static void test_follow_mailbox(void)
{
	struct env e;
	CHECK(env_new(&e));
	CHECK_INT(1, mbox_op(&e, 'c', A, "Work/Sub", NULL), STORE_OK);
	CHECK_INT(2, set1(&e, A, "Work", "/private/comment", "w"), STORE_OK);
	CHECK_INT(3, set1(&e, A, "Work/Sub", "/shared/comment", "s"), STORE_OK);
	CHECK_INT(4, set1(&e, A, "INBOX", "/private/comment", "i"), STORE_OK);
	/* RENAME keeps the ids: the entries follow, children included */
	CHECK_INT(5, mbox_op(&e, 'r', A, "Work", "Job"), STORE_OK);
	CHECK_DUMP(6, A, "Job", "/private/comment=w");
	CHECK_DUMP(7, A, "Job/Sub", "/shared/comment=s");
	CHECK_INT(8, mbox_op(&e, 'c', A, "Work", NULL), STORE_OK);
	CHECK_DUMP(9, A, "Work", "");
	/* RENAME INBOX: copied (RFC 5464 4.1), INBOX keeps them */
	CHECK_INT(10, mbox_op(&e, 'r', A, "INBOX", "Old"), STORE_OK);
	CHECK_DUMP(11, A, "Old", "/private/comment=i");
	CHECK_DUMP(12, A, "INBOX", "/private/comment=i");
	/* DELETE removes them */
	CHECK_INT(13, mbox_op(&e, 'd', A, "Job/Sub", NULL), STORE_OK);
	CHECK_INT(14, mbox_op(&e, 'c', A, "Job/Sub", NULL), STORE_OK);
	CHECK_DUMP(15, A, "Job/Sub", "");
	CHECK_INT(16, sql_int("SELECT count(*) FROM metadata WHERE name = '/shared/comment'"), 0);
	/* the user's removal: every row of theirs, server ones too */
	CHECK_INT(17, set1(&e, A, NULL, "/private/motd", "x"), STORE_OK);
	CHECK_INT(18, set1(&e, B, NULL, "/private/motd", "y"), STORE_OK);
	char *err = NULL;
	CHECK_INT(19, store_user_del(e.st, A, &err), 0);
	free(err);
	CHECK_INT(20, sql_int("SELECT count(*) FROM metadata"), 1);
	CHECK_DUMP(21, B, NULL, "/private/motd=y");
	env_free(&e);
}

struct list {
	struct buf b;
};

static void list_cb(void *arg, const char *name, const void *value, size_t len)
{
	struct list *l = arg;
	buf_printf(&l->b, "%s%s=%.*s", l->b.len ? ";" : "", name, (int)len, (const char *)value);
}

static void test_server_shared(void)
{
	struct env e;
	CHECK(env_new(&e));
	char *err = NULL;
	CHECK_INT(1, store_metadata_server_set(e.st, "/shared/comment", "hello", 5, 2, &err), 1);
	CHECK_INT(2, store_metadata_server_set(e.st, "/shared/b", "", 0, 2, &err), 1);
	CHECK_INT(3, store_metadata_server_set(e.st, "/shared/c", "x", 1, 2, &err), -1);
	CHECK(err != NULL && strstr(err, "too many") != NULL);
	x_free(&err);
	CHECK_INT(4, store_metadata_server_set(e.st, "/shared/comment", "again", 5, 2, &err), 1);
	struct list l = {BUF_INIT};
	CHECK_INT(5, store_metadata_server_list(e.st, list_cb, &l, &err), 0);
	CHECK_STR(6, l.b.data, "/shared/b=;/shared/comment=again");
	buf_free(&l.b);
	CHECK_INT(7, store_metadata_server_set(e.st, "/shared/b", NULL, 0, 2, &err), 1);
	CHECK_INT(8, store_metadata_server_set(e.st, "/shared/b", NULL, 0, 2, &err), 0);
	/* what a snapshot of the server /shared rows (user 0) shows */
	struct dump d = {.user = A, .mailbox = NULL, .server_shared = true};
	store_read(e.st, e.p, dump_read, dump_done, &d);
	run_until(e.l, &d.done);
	CHECK_STR(9, d.text.data, "/shared/comment=again");
	buf_free(&d.text);
	buf_free(&d.names);
	/* a user's removal leaves them */
	CHECK_INT(10, store_user_del(e.st, A, &err), 0);
	CHECK_INT(11, sql_int("SELECT count(*) FROM metadata WHERE user_id = 0"), 1);
	/* /shared/admin's domain: among hostname's, else the first added */
	char *dom = NULL;
	CHECK_INT(12, store_metadata_domain(e.st, "mx.example.com", &dom, &err), 1);
	CHECK_STR(13, dom, "example.com");
	x_free(&dom);
	CHECK_INT(14, store_domain_add(e.st, "other.org", &err), 0);
	CHECK_INT(15, store_metadata_domain(e.st, "MX.Other.Org.", &dom, &err), 1);
	CHECK_STR(16, dom, "other.org");
	x_free(&dom);
	CHECK_INT(17, store_metadata_domain(e.st, "host.elsewhere.net", &dom, &err), 1);
	CHECK_STR(18, dom, "example.com");
	x_free(&dom);
	free(err);
	env_free(&e);
}

int main(void)
{
	test_run("names", test_names);
	test_run("set_get", test_set_get);
	test_run("limits_atomic", test_limits_atomic);
	test_run("follow_mailbox", test_follow_mailbox);
	test_run("server_shared", test_server_shared);
	return test_done("test_store_metadata");
}
