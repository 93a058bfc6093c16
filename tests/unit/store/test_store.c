/* Unit tests for the store: schema, accounts, resolution, group commit,
 * crash cleanup, reading. Each test works in its own temporary directory. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "store/store.h"

#define STORE_FIXTURE_NAME "test_store"
#include "../store_fixture.h"

/* runs an account call and compares its error text ("" = success expected) */
static void check_err(int casenum, int r, char **errp, const char *want)
{
	char *err = *errp;
	*errp = NULL;
	if (*want == '\0') {
		CHECK_INT(casenum, r, 0);
		if (r != 0)
			printf("    error: %s\n", err ? err : "(null)");
	} else {
		CHECK_INT(casenum, r, -1);
		CHECK_STR(casenum, err, want);
	}
	free(err);
}

/* ---- schema ---- */

static void test_schema(void)
{
	dir_new();
	struct store *st = open_store();
	CHECK(st != NULL);
	if (st == NULL)
		return;
	struct stat sb;
	char path[256];
	snprintf(path, sizeof path, "%s/data", tmpdir);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	snprintf(path, sizeof path, "%s/data/blobs/ff", tmpdir);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	snprintf(path, sizeof path, "%s/data/spool", tmpdir);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	snprintf(path, sizeof path, "%s/data/postern.db", tmpdir);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	CHECK_INT(1, sql_int("PRAGMA user_version"), 14);
	CHECK_INT(2, sql_int("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"),
		  1);
	/* 7 + counters + sqlite_sequence (AUTOINCREMENT) + subscriptions, expunged,
	 * quotas (v3) + settings, dkim_keys, dmarc_rows (v5) + ip_lists, greylist,
	 * grey_networks, grey_reputation, spam_tokens, spam_totals, spam_train,
	 * spam_trained, spam_thresholds (v6) + metadata (v7) + fts_body, fts_head
	 * and their _data, _idx, _config, fts_state (v8) + urlauth_keys (v9) +
	 * sort_keys (v11) + fts_text (v12) + sort_orders (v13) */
	CHECK_INT(3, sql_int("SELECT count(*) FROM sqlite_master WHERE type = 'table'"), 38);
	/* v13: kept SORT orders go with their mailbox */
	CHECK_INT(7, sql_int("SELECT count(*) FROM pragma_foreign_key_list('sort_orders')"
			     " WHERE on_delete = 'CASCADE'"), 1);
	/* v11: a body's sort keys go with it */
	CHECK_INT(6, sql_int("SELECT count(*) FROM pragma_foreign_key_list('sort_keys')"
			     " WHERE on_delete = 'CASCADE'"), 1);
	/* v9: the keys go with their mailbox and their user */
	CHECK_INT(5, sql_int("SELECT count(*) FROM pragma_foreign_key_list('urlauth_keys')"
			     " WHERE on_delete = 'CASCADE'"), 2);
	CHECK_INT(4, sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
			     "'mailbox_messages_message'"),
		  1);
	store_close(&st);
	CHECK(st == NULL);
	/* reopening an existing store keeps it */
	st = open_store();
	CHECK(st != NULL);
	store_close(&st);
	dir_remove();
}

/* ---- accounts ---- */

struct list_acc {
	char text[1024];
};

static void list_cb(void *arg, const char *name, const char *detail)
{
	struct list_acc *a = arg;
	size_t n = strlen(a->text);
	snprintf(a->text + n, sizeof a->text - n, "%s%s%s%s", n ? ";" : "", name, *detail ? "=" : "",
		 detail);
}

static void test_accounts(void)
{
	dir_new();
	struct store *st = open_store();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	char *err = NULL;
	check_err(1, store_domain_add(st, "Example.COM", &err), &err, "");
	err = NULL;
	check_err(2, store_domain_add(st, "example.com", &err), &err,
		  "domain example.com already exists");
	err = NULL;
	check_err(3, store_domain_add(st, "bad domain", &err), &err, "invalid domain \"bad domain\"");
	err = NULL;
	check_err(4, store_user_add(st, "Alice@example.com", "h1", &err), &err, "");
	err = NULL;
	check_err(5, store_user_add(st, "alice@EXAMPLE.com", "h1", &err), &err,
		  "user alice@example.com already exists");
	err = NULL;
	check_err(6, store_user_add(st, "bob@nowhere.org", "h", &err), &err,
		  "no such domain nowhere.org");
	err = NULL;
	check_err(7, store_user_add(st, "bob@example.com", "h2", &err), &err, "");
	err = NULL;
	check_err(8, store_domain_del(st, "example.com", &err), &err,
		  "domain example.com has 2 users; delete them first");
	err = NULL;
	check_err(9, store_user_del(st, "carol@example.com", &err), &err,
		  "no such user carol@example.com");
	err = NULL;
	check_err(10, store_user_passwd(st, "ALICE@example.com", "h3", &err), &err, "");
	char *hash = NULL;
	CHECK_INT(11, store_user_hash(st, "alice@example.com", &hash), 1);
	CHECK_STR(11, hash, "h3");
	free(hash);
	CHECK_INT(12, store_user_hash(st, "carol@example.com", &hash), 0);
	CHECK(store_domain_is_local(st, "EXAMPLE.com"));
	CHECK(!store_domain_is_local(st, "example.org"));

	struct list_acc a = {""};
	CHECK_INT(13, store_user_list(st, NULL, list_cb, &a), 0);
	CHECK_STR(13, a.text, "alice@example.com;bob@example.com");
	memset(&a, 0, sizeof a);
	CHECK_INT(14, store_domain_list(st, list_cb, &a), 0);
	CHECK_STR(14, a.text, "example.com=users=2");

	err = NULL;
	check_err(15, store_alias_add(st, "Team@example.com", "alice@example.com", &err), &err, "");
	err = NULL;
	check_err(16, store_alias_add(st, "team@example.com", "Bob@Example.com", &err), &err, "");
	err = NULL;
	check_err(17, store_alias_add(st, "team@example.com", "bob@example.com", &err), &err,
		  "alias team@example.com -> bob@example.com already exists");
	err = NULL;
	check_err(18, store_alias_add(st, "x@other.org", "bob@example.com", &err), &err,
		  "no such domain other.org");
	err = NULL;
	check_err(19, store_alias_add(st, "@example.com", "bob@example.com", &err), &err, "");
	memset(&a, 0, sizeof a);
	CHECK_INT(20, store_alias_list(st, "example.com", list_cb, &a), 0);
	CHECK_STR(20, a.text,
		  "@example.com=bob@example.com;team@example.com=alice@example.com;"
		  "team@example.com=bob@example.com");
	err = NULL;
	check_err(21, store_alias_del(st, "team@example.com", "alice@example.com", &err), &err, "");
	err = NULL;
	check_err(22, store_alias_del(st, "team@example.com", "alice@example.com", &err), &err,
		  "no such alias team@example.com -> alice@example.com");
	err = NULL;
	check_err(23, store_alias_del(st, "team@example.com", NULL, &err), &err, "");
	err = NULL;
	check_err(24, store_alias_del(st, "team@example.com", NULL, &err), &err,
		  "no such alias team@example.com");

	err = NULL;
	check_err(25, store_user_del(st, "alice@example.com", &err), &err, "");
	err = NULL;
	check_err(26, store_user_del(st, "bob@example.com", &err), &err, "");
	CHECK_INT(27, sql_int("SELECT count(*) FROM mailboxes"), 0);
	err = NULL;
	check_err(28, store_domain_del(st, "example.com", &err), &err, "");
	CHECK_INT(29, sql_int("SELECT count(*) FROM aliases"), 0);
	err = NULL;
	check_err(30, store_domain_del(st, "example.com", &err), &err,
		  "no such domain example.com");
	store_close(&st);
	dir_remove();
}

/* ---- resolution ---- */

static void add_ok(int r, char **errp)
{
	char *err = *errp;
	*errp = NULL;
	if (r != 0) {
		printf("  setup failed: %s\n", err ? err : "?");
		test_cur_failed = 1;
	}
	free(err);
}

static void setup_accounts(struct store *st)
{
	char *err = NULL;
	add_ok(store_domain_add(st, "example.com", &err), &err);
	add_ok(store_domain_add(st, "lists.example.com", &err), &err);
	add_ok(store_user_add(st, "alice@example.com", "x", &err), &err);
	add_ok(store_user_add(st, "bob@example.com", "x", &err), &err);
	add_ok(store_user_add(st, "carol@example.com", "x", &err), &err);
	add_ok(store_user_add(st, "postmaster@lists.example.com", "x", &err), &err);
	/* a list with a remote member and a duplicate path to bob */
	add_ok(store_alias_add(st, "team@example.com", "alice@example.com", &err), &err);
	add_ok(store_alias_add(st, "team@example.com", "bob@example.com", &err), &err);
	add_ok(store_alias_add(st, "team@example.com", "ext@remote.org", &err), &err);
	add_ok(store_alias_add(st, "team@example.com", "boss@example.com", &err), &err);
	add_ok(store_alias_add(st, "boss@example.com", "bob@example.com", &err), &err);
	/* a loop */
	add_ok(store_alias_add(st, "loopa@example.com", "loopb@example.com", &err), &err);
	add_ok(store_alias_add(st, "loopb@example.com", "loopa@example.com", &err), &err);
	/* a loop that also reaches carol */
	add_ok(store_alias_add(st, "ring@example.com", "ring2@example.com", &err), &err);
	add_ok(store_alias_add(st, "ring2@example.com", "ring@example.com", &err), &err);
	add_ok(store_alias_add(st, "ring2@example.com", "carol@example.com", &err), &err);
	add_ok(store_alias_add(st, "@lists.example.com", "postmaster@lists.example.com", &err),
	       &err);
}

static void targets_text(const struct store_targets *t, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i < t->n; i++) {
		size_t n = strlen(out);
		snprintf(out + n, size - n, "%s%s%s", n ? "," : "", t->v[i].user_id ? "" : "R:",
			 t->v[i].addr);
	}
}

static void test_resolve(void)
{
	static const struct {
		const char *addr;
		int want;
		const char *targets; /* "R:" marks remote */
	} cases[] = {
		{"alice@example.com", 1, "alice@example.com"},
		{"ALICE@Example.Com", 1, "alice@example.com"},
		{"alice+news@example.com", 1, "alice@example.com"},
		{"team@example.com", 1, "alice@example.com,bob@example.com,R:ext@remote.org"},
		{"team+x@example.com", 1, "alice@example.com,bob@example.com,R:ext@remote.org"},
		{"loopa@example.com", 0, ""},
		{"ring@example.com", 1, "carol@example.com"},
		{"nobody@example.com", 0, ""},
		{"anything@lists.example.com", 1, "postmaster@lists.example.com"},
		{"x@unknown.org", 0, ""},
		{"garbage", 0, ""},
	};
	dir_new();
	struct store *st = open_store();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	setup_accounts(st);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct store_targets t = {0};
		char text[512];
		CHECK_INT((int)i, store_resolve(st, cases[i].addr, &t), cases[i].want);
		targets_text(&t, text, sizeof text);
		CHECK_STR((int)i, text, cases[i].targets);
		for (size_t j = 0; j < t.n; j++)
			if (t.v[j].user_id < 0)
				CHECK(0);
		store_targets_free(&t);
	}
	/* appending to an existing list deduplicates local users across calls */
	struct store_targets t = {0};
	store_resolve(st, "alice@example.com", &t);
	store_resolve(st, "team@example.com", &t);
	CHECK_INT(100, t.n, 3);
	store_targets_free(&t);
	store_close(&st);
	dir_remove();
}

/* RFC 5321 4.5.1: <Postmaster> and unclaimed postmaster@ a local domain go
 * to the postmaster target; a domain's own account, alias or catch-all wins. */
static void test_resolve_postmaster(void)
{
	static const struct {
		const char *setting; /* NULL: derived from the hostname */
		const char *hostname;
		const char *addr;
		int want;
		const char *targets;
		const char *effective;
	} cases[] = {
		{NULL, NULL, "postmaster", 0, "", NULL},
		{NULL, NULL, "postmaster@empty.org", 0, "", NULL},
		{NULL, "mx.example.com", "Postmaster", 1, "carol@example.com", "postmaster@example.com"},
		{NULL, "mx.example.com", "postmaster@empty.org", 1, "carol@example.com",
		 "postmaster@example.com"},
		{NULL, "example.com", "postmaster", 1, "carol@example.com", "postmaster@example.com"},
		{NULL, "mx.nowhere.net", "postmaster", 0, "", NULL},
		{"bob@example.com", "mx.example.com", "POSTMASTER", 1, "bob@example.com",
		 "bob@example.com"},
		{"bob@example.com", NULL, "postmaster@EMPTY.org", 1, "bob@example.com",
		 "bob@example.com"},
		{"bob@example.com", NULL, "postmaster@example.com", 1, "carol@example.com",
		 "bob@example.com"},
		{"bob@example.com", NULL, "postmaster@lists.example.com", 1,
		 "postmaster@lists.example.com", "bob@example.com"},
		{"bob@example.com", NULL, "postmaster@remote.org", 0, "", "bob@example.com"},
		{"bob@example.com", NULL, "webmaster@empty.org", 0, "", "bob@example.com"},
		/* plus-addressing, as for any other name */
		{"bob@example.com", NULL, "postmaster+abuse@empty.org", 1, "bob@example.com",
		 "bob@example.com"},
		{"bob@example.com", NULL, "postmasterx@empty.org", 0, "", "bob@example.com"},
		{"pm@remote.org", NULL, "postmaster", 1, "R:pm@remote.org", "pm@remote.org"},
		/* a target that is itself an unclaimed postmaster does not loop */
		{"postmaster@empty.org", NULL, "postmaster@empty.org", 0, "", "postmaster@empty.org"},
		{"postmaster@empty.org", NULL, "postmaster", 0, "", "postmaster@empty.org"},
	};
	char *err = NULL;
	dir_new();
	struct store *st = open_store();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	setup_accounts(st);
	add_ok(store_domain_add(st, "empty.org", &err), &err);
	add_ok(store_alias_add(st, "postmaster@example.com", "carol@example.com", &err), &err);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct store_targets t = {0};
		char text[512];
		store_set_postmaster(st, cases[i].setting, cases[i].hostname);
		CHECK_INT((int)i, store_resolve(st, cases[i].addr, &t), cases[i].want);
		targets_text(&t, text, sizeof text);
		CHECK_STR((int)i, text, cases[i].targets);
		store_targets_free(&t);
		char *pm = store_postmaster(st);
		CHECK_STR((int)i, pm ? pm : "(none)",
			  cases[i].effective ? cases[i].effective : "(none)");
		free(pm);
	}
	store_close(&st);
	dir_remove();
}

static void test_may_send_as(void)
{
	static const struct {
		const char *user, *from;
		int want;
	} cases[] = {
		{"alice@example.com", "alice@example.com", 1},
		{"alice@example.com", "Alice@EXAMPLE.com", 1},
		{"alice@example.com", "alice+tag@example.com", 1},
		{"alice@example.com", "team@example.com", 1},
		{"bob@example.com", "team@example.com", 1},   /* also via boss */
		{"bob@example.com", "boss@example.com", 1},
		{"alice@example.com", "boss@example.com", 0},
		{"alice@example.com", "bob@example.com", 0},
		{"alice@example.com", "alice@other.org", 0},
		{"alice@example.com", "random@lists.example.com", 0}, /* catch-all never counts */
		{"carol@example.com", "ring@example.com", 1},
		{"alice@example.com", "", 0},
	};
	dir_new();
	struct store *st = open_store();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	setup_accounts(st);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT((int)i, store_may_send_as(st, cases[i].user, cases[i].from),
			  cases[i].want);
	store_close(&st);
	dir_remove();
}

/* ---- delivery ---- */

struct waiter {
	struct loop *l;
	int expected;
	int done;
	int failed;
	bool timed_out;
	int results[16]; /* of the first 16 completions, in order */
};

static void commit_cb(void *arg, int result)
{
	struct waiter *w = arg;
	if (w->done < 16)
		w->results[w->done] = result;
	w->done++;
	if (result != 0)
		w->failed++;
	if (w->done == w->expected)
		loop_stop(w->l);
}

static void timeout_cb(void *arg)
{
	struct waiter *w = arg;
	w->timed_out = true;
	loop_stop(w->l);
}

static void wait_commits(struct waiter *w)
{
	struct timer *t = loop_timer_add(w->l, 60000, timeout_cb, w);
	if (w->done < w->expected)
		loop_run(w->l);
	if (!w->timed_out)
		loop_timer_cancel(w->l, &t);
	CHECK(!w->timed_out);
}

static void spool_fill(struct store_spool *sp, const char *body, size_t n)
{
	/* odd chunk sizes exercise the buffer's edges */
	size_t chunk = 7;
	for (size_t off = 0; off < n; off += chunk, chunk = chunk * 3 + 1) {
		size_t m = n - off < chunk ? n - off : chunk;
		if (store_spool_write(sp, body + off, m) != 0)
			CHECK(0);
	}
}

static void commit_one(struct store *st, struct waiter *w, const char *body, size_t n,
		       const int64_t *users, size_t n_users, const struct store_remote_rcpt *remote,
		       size_t n_remote)
{
	char *err = NULL;
	struct store_spool *sp = store_spool_new(st, &err);
	CHECK(sp != NULL);
	if (sp == NULL) {
		free(err);
		return;
	}
	spool_fill(sp, body, n);
	CHECK_INT(1, store_spool_size(sp), n);
	struct store_delivery d = {
		.txid = "T1",
		.mail_from = "sender@remote.org",
		.received = 1700000000,
		.user_ids = users,
		.n_users = n_users,
		.remote = remote,
		.n_remote = n_remote,
	};
	w->expected++;
	store_commit(st, sp, &d, commit_cb, w);
}

static void check_content(struct store *st, const char *user, uint32_t uid, const char *body,
			  size_t n)
{
	int fd = -1;
	char *err = NULL;
	if (store_mail_open(st, user, NULL, 0, uid, &fd, &err) != 0) {
		printf("  store_mail_open %s %u: %s\n", user, uid, err);
		free(err);
		CHECK(0);
		return;
	}
	char *got = xmalloc(n + 1);
	ssize_t r = read(fd, got, n + 1);
	CHECK_INT(uid, r, (long long)n);
	CHECK(r == (ssize_t)n && memcmp(got, body, n) == 0);
	free(got);
	close(fd);
}

static void mail_cb(void *arg, const struct store_mail_info *m)
{
	struct list_acc *a = arg;
	size_t n = strlen(a->text);
	snprintf(a->text + n, sizeof a->text - n, "%s%u:%llu:%lld:%llu:%s", n ? ";" : "", m->uid,
		 (unsigned long long)m->size, (long long)m->internaldate,
		 (unsigned long long)m->modseq, m->flags);
}

static void test_commit(void)
{
	dir_new();
	struct store *st = open_store();
	struct loop *l = loop_new();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	setup_accounts(st);
	CHECK_INT(0, store_start(st, l, 0), 0);
	int64_t users[3] = {user_id_of(st, "alice@example.com"), user_id_of(st, "bob@example.com"),
			    user_id_of(st, "carol@example.com")};
	CHECK(users[0] > 0 && users[1] > 0 && users[2] > 0);
	struct store_remote_rcpt remote[1] = {{"ext@remote.org", "rfc822;ext@remote.org", "FAILURE"}};
	struct waiter w = {.l = l};

	size_t n1 = 200000; /* larger than the spool buffer */
	char *b1 = make_body(n1, 1);
	commit_one(st, &w, b1, n1, users, 3, remote, 1);
	wait_commits(&w);
	CHECK_INT(1, w.failed, 0);
	CHECK_INT(2, count_blobs(), 1);
	CHECK_INT(3, count_files_x("spool", true), 0);
	CHECK_INT(4, sql_int("SELECT count(*) FROM messages"), 1);
	CHECK_INT(5, sql_int("SELECT count(*) FROM mailbox_messages WHERE uid = 1"), 3);
	CHECK_INT(6, sql_int("SELECT count(*) FROM queue"), 1);
	check_content(st, "alice@example.com", 1, b1, n1);
	check_content(st, "carol@example.com", 1, b1, n1);

	/* second and third message: UIDs and MODSEQs grow */
	size_t n2 = 10, n3 = 70000;
	char *b2 = make_body(n2, 2), *b3 = make_body(n3, 3);
	commit_one(st, &w, b2, n2, users, 1, NULL, 0);
	commit_one(st, &w, b3, n3, users, 2, NULL, 0);
	wait_commits(&w);
	CHECK_INT(7, w.failed, 0);
	check_content(st, "alice@example.com", 2, b2, n2);
	check_content(st, "alice@example.com", 3, b3, n3);
	check_content(st, "bob@example.com", 2, b3, n3);

	struct list_acc a = {""};
	char *err = NULL;
	CHECK_INT(8, store_mail_list(st, "alice@example.com", NULL, mail_cb, &a, &err), 0);
	CHECK_STR(8, a.text,
		  "1:200000:1700000000:2:;2:10:1700000000:3:;3:70000:1700000000:4:");
	memset(&a, 0, sizeof a);
	CHECK_INT(9, store_mail_list(st, "alice@example.com", "Nosuch", mail_cb, &a, &err), -1);
	CHECK_STR(9, err, "no such mailbox Nosuch for alice@example.com");
	free(err);
	err = NULL;
	int fd;
	CHECK_INT(10, store_mail_open(st, "alice@example.com", "inbox", 0, 9, &fd, &err), -1);
	CHECK_STR(10, err, "no message with UID 9 in INBOX of alice@example.com");
	free(err);
	memset(&a, 0, sizeof a);
	CHECK_INT(11, store_mailbox_list(st, "bob@example.com", list_cb, &a), 0);
	char want[128];
	snprintf(want, sizeof want, "INBOX=uidvalidity=%lld uidnext=3 highestmodseq=3 messages=2",
		 sql_int("SELECT b.uidvalidity FROM mailboxes b JOIN users u ON u.id = b.user_id"
			 " WHERE u.localpart = 'bob' AND b.name = 'INBOX'"));
	/* INBOX first, then the special-use mailboxes every user gets */
	CHECK_INT(11, strncmp(a.text, want, strlen(want)), 0);
	CHECK_INT(11, a.text[strlen(want)], ';');
	memset(&a, 0, sizeof a);
	CHECK_INT(12, store_queue_list(st, list_cb, &a), 0);
	CHECK(strstr(a.text, " sender@remote.org=ext@remote.org 0 ") != NULL);

	/* a delivery with no recipient stores nothing and succeeds */
	commit_one(st, &w, b2, n2, NULL, 0, NULL, 0);
	wait_commits(&w);
	CHECK_INT(13, w.failed, 0);
	CHECK_INT(14, count_blobs(), 3);

	/* discard removes the spool file */
	struct store_spool *sp = store_spool_new(st, &err);
	CHECK(sp != NULL);
	spool_fill(sp, b3, n3); /* beyond the buffer: on disk */
	CHECK_INT(15, count_files_x("spool", true), 1);
	store_spool_discard(&sp);
	CHECK(sp == NULL);
	CHECK_INT(16, count_files_x("spool", true), 0);

	/* user_del: a blob still referenced (by another user or the queue) stays */
	err = NULL;
	check_err(17, store_user_del(st, "carol@example.com", &err), &err, "");
	CHECK_INT(18, count_blobs(), 3);
	check_err(19, store_user_del(st, "alice@example.com", &err), &err, ""); /* frees b2 */
	CHECK_INT(20, count_blobs(), 2);
	CHECK_INT(21, sql_int("SELECT count(*) FROM messages"), 2);
	check_err(22, store_user_del(st, "bob@example.com", &err), &err, ""); /* frees b3 */
	CHECK_INT(23, count_blobs(), 1); /* b1 stays: queued for ext@remote.org */
	CHECK_INT(24, sql_int("SELECT count(*) FROM mailbox_messages"), 0);

	store_close(&st);
	loop_free(&l);
	free(b1);
	free(b2);
	free(b3);
	dir_remove();
}

/* ---- group commit under concurrency ---- */

#define CONC_THREADS 20
#define CONC_PER_THREAD 50
#define CONC_SIZE 10240

struct conc {
	struct store *st;
	struct waiter *w;
	int64_t user;
	char *body;
};

static void *conc_thread(void *arg)
{
	struct conc *c = arg;
	for (int i = 0; i < CONC_PER_THREAD; i++) {
		char *err = NULL;
		struct store_spool *sp = store_spool_new(c->st, &err);
		if (sp == NULL) {
			printf("  spool: %s\n", err);
			free(err);
			continue;
		}
		store_spool_write(sp, c->body, CONC_SIZE);
		struct store_delivery d = {.mail_from = "", .received = time(NULL),
					   .user_ids = &c->user, .n_users = 1};
		store_commit(c->st, sp, &d, commit_cb, c->w);
		/* pace like an SMTP session: the next message only after a little while */
		usleep(200);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void conc_run(unsigned sync_threads)
{
	dir_new();
	struct store *st = open_store();
	struct loop *l = loop_new();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	setup_accounts(st);
	store_set_sync_threads(st, sync_threads);
	CHECK_INT(0, store_start(st, l, 0), 0);
	struct waiter w = {.l = l, .expected = CONC_THREADS * CONC_PER_THREAD};
	struct conc c = {st, &w, user_id_of(st, "alice@example.com"), make_body(CONC_SIZE, 9)};
	pthread_t th[CONC_THREADS];
	double t0 = now_s();
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_create(&th[i], NULL, conc_thread, &c);
	wait_commits(&w);
	double dt = now_s() - t0;
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_join(th[i], NULL);
	uint64_t commits, batches;
	store_stats(st, &commits, &batches);
	CHECK_INT(1, w.failed, 0);
	CHECK_INT(2, commits, CONC_THREADS * CONC_PER_THREAD);
	CHECK(batches < commits);
	printf("  group commit (sync threads %u): %llu commits in %llu batches, %.0f msgs/s\n",
	       sync_threads, (unsigned long long)commits, (unsigned long long)batches,
	       (double)commits / dt);
	/* UIDs are dense and unique */
	CHECK_INT(3, sql_int("SELECT count(DISTINCT uid) FROM mailbox_messages"),
		  CONC_THREADS * CONC_PER_THREAD);
	CHECK_INT(4, sql_int("SELECT max(uid) FROM mailbox_messages"),
		  CONC_THREADS * CONC_PER_THREAD);
	CHECK_INT(5, count_blobs(), CONC_THREADS * CONC_PER_THREAD);
	store_close(&st);
	loop_free(&l);
	free(c.body);
	dir_remove();
}

static void test_group_commit(void)
{
	conc_run(4);
	if (getenv("STORE_BENCH"))
		conc_run(0);
}

/* ---- crash cleanup ---- */

static void test_crash_cleanup(void)
{
	dir_new();
	struct store *st = open_store();
	struct loop *l = loop_new();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	setup_accounts(st);
	store_start(st, l, 0);
	int64_t alice = user_id_of(st, "alice@example.com");
	struct waiter w = {.l = l};
	char *body = make_body(5000, 5);
	commit_one(st, &w, body, 5000, &alice, 1, NULL, 0);
	wait_commits(&w);
	store_close(&st);
	CHECK_INT(4, count_files("spool"), 0); /* the stock is removed at close */

	/* what a crash leaves: a half-written spool file and an uncommitted blob */
	char path[256], spool_path[256];
	snprintf(spool_path, sizeof spool_path, "%s/data/spool/0000000000000001000000010000abcd",
		 tmpdir);
	int fd = open(spool_path, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0 && write(fd, "partial", 7) == 7);
	close(fd);
	snprintf(path, sizeof path, "%s/data/blobs/cd/0000000000000002000000020000abcd", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0 && write(fd, "orphan", 6) == 6);
	close(fd);
	CHECK_INT(1, count_blobs(), 2);

	st = open_store();
	CHECK(st != NULL);
	if (st) {
		/* admin commands open the store without store_start: nothing removed */
		CHECK_INT(5, count_blobs(), 2);
		CHECK_INT(6, count_files("spool"), 1);
		struct store *second = open_store();
		CHECK_INT(7, store_start(st, l, 0), 0);
		/* a second daemon on the same data directory is refused */
		CHECK_INT(8, second ? store_start(second, l, 0) : 0, -1);
		if (second)
			store_close(&second);
		CHECK_INT(2, access(spool_path, F_OK), -1);
		CHECK_INT(3, count_blobs(), 1);
		check_content(st, "alice@example.com", 1, body, 5000);
		store_close(&st);
	}
	loop_free(&l);
	free(body);
	dir_remove();
}

/* ---- ids, UIDVALIDITY, vanished recipients ---- */

/* query ends in "localpart = ", the user's local part is appended */
static long long user_col(const char *user, const char *query)
{
	char sql[256];
	snprintf(sql, sizeof sql, "%s'%s'", query, user);
	return sql_int(sql);
}

#define SQL_USER_ID "SELECT id FROM users WHERE localpart = "
#define SQL_INBOX_ID                                                                               \
	"SELECT b.id FROM mailboxes b JOIN users u ON u.id = b.user_id"                            \
	" WHERE b.name = 'INBOX' AND u.localpart = "
#define SQL_UIDVALIDITY                                                                            \
	"SELECT b.uidvalidity FROM mailboxes b JOIN users u ON u.id = b.user_id"                   \
	" WHERE b.name = 'INBOX' AND u.localpart = "
#define SQL_INBOX_COUNT                                                                            \
	"SELECT count(*) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id"        \
	" JOIN users u ON u.id = b.user_id WHERE u.localpart = "

/* Deleting the newest user, mailbox or message must not hand its id to the
 * next one (SQLite's plain rowid is max+1). */
static void test_ids_not_reused(void)
{
	dir_new();
	struct store *st = open_store();
	struct loop *l = loop_new();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	char *err = NULL;
	add_ok(store_domain_add(st, "example.com", &err), &err);
	add_ok(store_user_add(st, "u1@example.com", "x", &err), &err);
	add_ok(store_user_add(st, "u2@example.com", "x", &err), &err);
	CHECK_INT(0, store_start(st, l, 0), 0);
	struct waiter w = {.l = l};
	int64_t u2 = user_id_of(st, "u2@example.com");
	commit_one(st, &w, "hello\r\n", 7, &u2, 1, NULL, 0);
	wait_commits(&w);
	CHECK_INT(1, w.failed, 0);
	long long old_user = user_col("u2", SQL_USER_ID);
	long long old_inbox = user_col("u2", SQL_INBOX_ID);
	long long old_msg = sql_int("SELECT max(id) FROM messages");
	CHECK(old_user > 0 && old_inbox > 0 && old_msg > 0);

	/* the newest of each goes: user, INBOX and (only reference) message */
	check_err(2, store_user_del(st, "u2@example.com", &err), &err, "");
	CHECK_INT(3, sql_int("SELECT count(*) FROM messages"), 0);
	add_ok(store_user_add(st, "u3@example.com", "x", &err), &err);
	int64_t u3 = user_id_of(st, "u3@example.com");
	commit_one(st, &w, "again\r\n", 7, &u3, 1, NULL, 0);
	wait_commits(&w);
	CHECK_INT(4, w.failed, 0);

	struct {
		const char *what;
		long long old, now;
	} cases[] = {
		{"user", old_user, user_col("u3", SQL_USER_ID)},
		{"mailbox", old_inbox, user_col("u3", SQL_INBOX_ID)},
		{"message", old_msg, sql_int("SELECT max(id) FROM messages")},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (cases[i].now <= cases[i].old)
			printf("  %s id: old %lld, new %lld\n", cases[i].what, cases[i].old,
			       cases[i].now);
		CHECK_INT(10 + (int)i, cases[i].now > cases[i].old, 1);
	}
	store_close(&st);
	loop_free(&l);
	dir_remove();
}

/* RFC 3501 2.3.1.1: a re-created mailbox gets a new UIDVALIDITY, even within
 * the same second or after the clock went back. */
static void test_uidvalidity(void)
{
	dir_new();
	struct store *st = open_store();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	char *err = NULL;
	add_ok(store_domain_add(st, "example.com", &err), &err);
	long long prev = 0;
	/* well within one second: the old creation-time value repeats */
	for (int i = 0; i < 5; i++) {
		add_ok(store_user_add(st, "x@example.com", "x", &err), &err);
		long long v = user_col("x", SQL_UIDVALIDITY);
		CHECK_INT(i, v > prev, 1);
		CHECK_INT(i, v > 0 && v <= 0xffffffffLL, 1);
		struct store_mailbox_status status;
		CHECK_INT(i, store_mailbox_status(st, "x@example.com", NULL, &status, &err), 0);
		CHECK_INT(i, status.uidvalidity, v);
		prev = v;
		check_err(i, store_user_del(st, "x@example.com", &err), &err, "");
	}
	/* the clock is behind the counter (it stepped back): counter + 1 */
	long long ahead = (long long)time(NULL) + 100000;
	char sql[128];
	snprintf(sql, sizeof sql, "UPDATE counters SET value = %lld WHERE name = 'uidvalidity'",
		 ahead);
	CHECK_INT(10, sql_exec(sql), 0);
	add_ok(store_user_add(st, "y@example.com", "x", &err), &err);
	CHECK_INT(11, user_col("y", SQL_UIDVALIDITY), ahead + 1);
	/* INBOX, then the five special-use mailboxes (STORE_SPECIAL_USE_DEFAULTS) */
	CHECK_INT(12, sql_int("SELECT value FROM counters WHERE name = 'uidvalidity'"), ahead + 6);
	/* no 32-bit value left: refused, and nothing created */
	CHECK_INT(13, sql_exec("UPDATE counters SET value = 4294967295"), 0);
	check_err(14, store_user_add(st, "z@example.com", "x", &err), &err,
		  "UIDVALIDITY values exhausted");
	char *hash = NULL;
	CHECK_INT(15, store_user_hash(st, "z@example.com", &hash), 0);
	free(hash);
	store_close(&st);
	dir_remove();
}

/* A recipient resolved at RCPT TO and deleted before the commit: the commit
 * fails temporarily and stores nothing; it never lands in another account. */
static void test_commit_rcpt_gone(void)
{
	dir_new();
	struct store *st = open_store();
	struct loop *l = loop_new();
	if (st == NULL) {
		CHECK(0);
		return;
	}
	setup_accounts(st);
	char *err = NULL;
	CHECK_INT(0, store_start(st, l, 0), 0);
	struct waiter w = {.l = l};
	int64_t alice = user_id_of(st, "alice@example.com");

	/* 1: deleted, then a new user: the old code gave it the same id */
	add_ok(store_user_add(st, "victim@example.com", "x", &err), &err);
	int64_t victim = user_id_of(st, "victim@example.com");
	check_err(1, store_user_del(st, "victim@example.com", &err), &err, "");
	add_ok(store_user_add(st, "newbie@example.com", "x", &err), &err);
	commit_one(st, &w, "for victim\r\n", 12, &victim, 1, NULL, 0);
	wait_commits(&w);
	CHECK_INT(2, w.results[0], STORE_COMMIT_RCPT_GONE);
	CHECK_INT(3, user_col("newbie", SQL_INBOX_COUNT), 0);
	CHECK_INT(4, sql_int("SELECT count(*) FROM messages"), 0);
	CHECK_INT(5, count_blobs(), 0);

	/* 2: deleted only, with a live local and a remote recipient beside it:
	 * the whole delivery fails, nothing of it is left */
	add_ok(store_user_add(st, "victim2@example.com", "x", &err), &err);
	int64_t both[2] = {alice, user_id_of(st, "victim2@example.com")};
	struct store_remote_rcpt remote[1] = {{"ext@remote.org", NULL, NULL}};
	check_err(6, store_user_del(st, "victim2@example.com", &err), &err, "");
	commit_one(st, &w, "for victim2\r\n", 13, both, 2, remote, 1);
	wait_commits(&w);
	CHECK_INT(7, w.results[1], STORE_COMMIT_RCPT_GONE);
	CHECK_INT(8, sql_int("SELECT count(*) FROM messages"), 0);
	CHECK_INT(9, sql_int("SELECT count(*) FROM mailbox_messages"), 0);
	CHECK_INT(10, sql_int("SELECT count(*) FROM queue"), 0);
	CHECK_INT(11, count_blobs(), 0);
	CHECK_INT(12, count_files_x("spool", true), 0);
	store_close(&st);

	/* 3: in one batch with a good delivery: only the bad one fails */
	st = open_store();
	CHECK_INT(20, st ? store_start(st, l, 200000) : -1, 0);
	if (st) {
		struct waiter w2 = {.l = l};
		commit_one(st, &w2, "good\r\n", 6, &alice, 1, NULL, 0);
		commit_one(st, &w2, "bad\r\n", 5, &victim, 1, NULL, 0);
		wait_commits(&w2);
		CHECK_INT(21, w2.results[0], STORE_COMMIT_OK);
		CHECK_INT(22, w2.results[1], STORE_COMMIT_RCPT_GONE);
		/* the committer counts its round just after posting the results */
		uint64_t commits = 0, batches = 0;
		for (int i = 0; i < 1000 && commits < 2; i++) {
			store_stats(st, &commits, &batches);
			if (commits < 2)
				usleep(1000);
		}
		CHECK_INT(23, batches, 1);
		CHECK_INT(24, user_col("alice", SQL_INBOX_COUNT), 1);
		CHECK_INT(25, sql_int("SELECT count(*) FROM messages"), 1);
		CHECK_INT(26, count_blobs(), 1);
		check_content(st, "alice@example.com", 1, "good\r\n", 6);
		store_close(&st);
	}
	loop_free(&l);
	dir_remove();
}

/* The schema as postern 1 (user_version 1) created it, verbatim. */
static const char schema_v1_old[] =
	"CREATE TABLE domains (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
	"CREATE TABLE users (id INTEGER PRIMARY KEY,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id), localpart TEXT NOT NULL,"
	" password_hash TEXT NOT NULL, created INTEGER NOT NULL, UNIQUE(domain_id, localpart));"
	"CREATE TABLE aliases (id INTEGER PRIMARY KEY,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
	" localpart TEXT NOT NULL, target TEXT NOT NULL, UNIQUE(domain_id, localpart, target));"
	"CREATE TABLE mailboxes (id INTEGER PRIMARY KEY,"
	" user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL,"
	" uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,"
	" highestmodseq INTEGER NOT NULL DEFAULT 1, subscribed INTEGER NOT NULL DEFAULT 1,"
	" UNIQUE(user_id, name));"
	"CREATE TABLE messages (id INTEGER PRIMARY KEY, blob TEXT NOT NULL UNIQUE,"
	" size INTEGER NOT NULL, received INTEGER NOT NULL, mail_from TEXT NOT NULL, envid TEXT,"
	" ret TEXT, auth_user TEXT);"
	"CREATE TABLE mailbox_messages ("
	" mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
	" uid INTEGER NOT NULL, message_id INTEGER NOT NULL REFERENCES messages(id),"
	" flags TEXT NOT NULL DEFAULT '', modseq INTEGER NOT NULL, internaldate INTEGER NOT NULL,"
	" PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE INDEX mailbox_messages_message ON mailbox_messages(message_id);"
	"CREATE TABLE queue (id INTEGER PRIMARY KEY,"
	" message_id INTEGER NOT NULL REFERENCES messages(id), rcpt TEXT NOT NULL, orcpt TEXT,"
	" notify TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_try INTEGER NOT NULL,"
	" last_error TEXT, created INTEGER NOT NULL);"
	"CREATE INDEX queue_message ON queue(message_id);"
	"CREATE INDEX queue_next_try ON queue(next_try);"
	"PRAGMA user_version = 1;"
	/* rows with gaps in their ids, as deletions leave them */
	"INSERT INTO domains VALUES(1, 'example.com'), (3, 'old.example.com');"
	"INSERT INTO users VALUES(1, 1, 'alice', 'h1', 100), (4, 1, 'bob', 'h2', 101);"
	"INSERT INTO aliases VALUES(5, 1, 'team', 'alice@example.com'),"
	" (6, 3, '', 'bob@example.com');"
	"INSERT INTO mailboxes VALUES(1, 1, 'INBOX', 1600000000, 3, 4, 1),"
	" (2, 4, 'INBOX', 1600000001, 2, 2, 1), (7, 1, 'Archive', 1600000500, 1, 1, 0);"
	"INSERT INTO messages VALUES(1, 'blobA', 10, 1700000000, 's@remote.org', NULL, NULL, NULL),"
	" (9, 'blobB', 20, 1700000001, '', 'env', 'HDRS', 'alice@example.com');"
	"INSERT INTO mailbox_messages VALUES(1, 1, 1, '\\Seen', 2, 1700000000),"
	" (1, 2, 9, '', 3, 1700000001), (2, 1, 9, '', 2, 1700000001);"
	"INSERT INTO queue VALUES(4, 1, 'ext@remote.org', 'rfc822;ext@remote.org', 'FAILURE', 2,"
	" 1700000100, 'timeout', 1700000000);";

/* A data directory from before AUTOINCREMENT opens, is upgraded in place with
 * every row and id kept, and from then on ids are not reused. */
static void test_migration(void)
{
	dir_new();
	char path[256];
	snprintf(path, sizeof path, "%s/data", tmpdir);
	CHECK(mkdir(path, 0700) == 0);
	CHECK_INT(0, sql_exec(schema_v1_old), 0);
	struct store *st = open_store();
	if (st == NULL) {
		CHECK(0);
		dir_remove();
		return;
	}
	static const struct {
		const char *sql;
		long long want;
	} cases[] = {
		{"PRAGMA user_version", 14},
		{"SELECT count(*) FROM pragma_table_info('sort_keys') WHERE name = 'thread'", 1},
		/* v13: no SORT order is kept until a SORT makes one */
		{"SELECT count(*) FROM sort_orders", 0},
		/* v12: no body's text is kept until the index is re-made */
		{"SELECT count(*) FROM fts_text", 0},
		/* v11: no body has sort keys until its cache is saved again */
		{"SELECT count(*) FROM sort_keys", 0},
		/* v8: every old body waits for the indexer */
		{"SELECT count(*) FROM messages WHERE fts = 0", 2},
		/* v4: the queue's lease and scheduling columns, filled for old rows */
		{"SELECT count(*) FROM pragma_table_info('queue') WHERE name IN ('domain',"
		 " 'lease_owner', 'lease_until', 'held', 'delay_notified', 'last_attempt')", 6},
		{"SELECT count(*) FROM queue WHERE domain = ''", 0},
		{"SELECT count(*) FROM messages WHERE body_8bit = 0"
		 " AND id IN (SELECT message_id FROM queue)", 0},
		{"SELECT count(*) FROM domains", 2},
		{"SELECT count(*) FROM users", 2},
		{"SELECT count(*) FROM aliases", 2},
		/* 3 + the special-use mailboxes of v3 (one, Archive, existed) */
		{"SELECT count(*) FROM mailboxes", 12},
		{"SELECT count(*) FROM messages", 2},
		{"SELECT count(*) FROM mailbox_messages", 3},
		{"SELECT count(*) FROM queue", 1},
		/* ids and values kept */
		{"SELECT id FROM users WHERE localpart = 'bob'", 4},
		{"SELECT uidnext * 10 + highestmodseq FROM mailboxes WHERE id = 1", 34},
		{"SELECT subscribed FROM mailboxes WHERE id = 7", 0},
		{"SELECT size FROM messages WHERE id = 9 AND envid = 'env' AND ret = 'HDRS'"
		 " AND auth_user = 'alice@example.com' AND mail_from = ''",
		 20},
		{"SELECT attempts FROM queue WHERE id = 4 AND last_error = 'timeout'"
		 " AND orcpt = 'rfc822;ext@remote.org'",
		 2},
		/* the sequences start at the largest id present */
		{"SELECT seq FROM sqlite_sequence WHERE name = 'users'", 4},
		{"SELECT seq FROM sqlite_sequence WHERE name = 'mailboxes'", 16},
		{"SELECT seq FROM sqlite_sequence WHERE name = 'messages'", 9},
		{"SELECT seq FROM sqlite_sequence WHERE name = 'queue'", 4},
		{"SELECT seq FROM sqlite_sequence WHERE name = 'domains'", 3},
		{"SELECT value FROM counters WHERE name = 'uidvalidity'", 1600000509},
		/* the rebuilt tables are the real ones: names, references, indexes */
		{"SELECT count(*) FROM sqlite_master WHERE name LIKE '%_v2' OR sql LIKE '%_v2%'", 0},
		{"SELECT count(*) FROM pragma_foreign_key_list('mailboxes') WHERE \"table\" = 'users'",
		 1},
		{"SELECT count(*) FROM pragma_foreign_key_list('mailbox_messages')"
		 " WHERE \"table\" IN ('mailboxes', 'messages')",
		 2},
		{"SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN"
		 " ('queue_message', 'queue_next_try', 'mailbox_messages_message')",
		 3},
		{"SELECT count(*) FROM pragma_foreign_key_check", 0},
		{"SELECT count(*) FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'", 7},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		long long got = sql_int(cases[i].sql);
		if (got != cases[i].want)
			printf("    %s\n", cases[i].sql);
		CHECK_INT((int)i, got, cases[i].want);
	}
	/* the store works on the upgraded data */
	struct list_acc a = {""};
	char *err = NULL;
	CHECK_INT(40, store_mail_list(st, "alice@example.com", NULL, mail_cb, &a, &err), 0);
	CHECK_STR(40, a.text, "1:10:1700000000:2:\\Seen;2:20:1700000001:3:");
	free(err);
	err = NULL;
	/* the newest user goes; the next one gets a fresh id, INBOX and UIDVALIDITY */
	check_err(41, store_user_del(st, "bob@example.com", &err), &err, "");
	add_ok(store_user_add(st, "carol@example.com", "x", &err), &err);
	CHECK_INT(42, user_col("carol", SQL_USER_ID), 5);
	CHECK_INT(43, user_col("carol", SQL_INBOX_ID), 17);
	CHECK_INT(44, user_col("carol", SQL_UIDVALIDITY) >= (long long)time(NULL) - 5, 1);
	/* foreign keys are enforced again after the upgrade */
	CHECK_INT(45, sql_int("SELECT count(*) FROM pragma_foreign_key_check"), 0);
	check_err(46, store_domain_del(st, "example.com", &err), &err,
		  "domain example.com has 2 users; delete them first");
	check_err(47, store_domain_del(st, "old.example.com", &err), &err, "");
	CHECK_INT(48, sql_int("SELECT count(*) FROM aliases"), 1); /* ON DELETE CASCADE */
	store_close(&st);
	/* reopening does not migrate again */
	st = open_store();
	CHECK(st != NULL);
	CHECK_INT(49, sql_int("SELECT count(*) FROM users"), 2);
	store_close(&st);
	dir_remove();
}

int main(void)
{
	test_run("schema", test_schema);
	test_run("accounts", test_accounts);
	test_run("resolve", test_resolve);
	test_run("resolve_postmaster", test_resolve_postmaster);
	test_run("may_send_as", test_may_send_as);
	test_run("commit", test_commit);
	test_run("group_commit", test_group_commit);
	test_run("crash_cleanup", test_crash_cleanup);
	test_run("ids_not_reused", test_ids_not_reused);
	test_run("uidvalidity", test_uidvalidity);
	test_run("commit_rcpt_gone", test_commit_rcpt_gone);
	test_run("migration", test_migration);
	return test_done("test_store");
}
