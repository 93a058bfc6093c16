/* Unit tests for the store_delivery fields of sender authentication
 * (src/policy): the prefix written before the spool's bytes (a message in
 * the spool's buffer, and one partly on disk already, written by a worker),
 * quarantine into the \Junk mailbox (RFC 6154; created when missing), and
 * queue.mail_from (SRS). Each test works in its own temporary directory with
 * a real loop and pool. */
#include <stdlib.h>
#include <unistd.h>

#include "../test.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "store/store.h"

#define STORE_FIXTURE_NAME "test_store_policy"
#include "../store_fixture.h"

struct commit_wait {
	bool done;
	int result;
};

static void commit_cb(void *arg, int result)
{
	struct commit_wait *w = arg;
	w->done = true;
	w->result = result;
}

static void spool_ready(void *arg)
{
}

static char *body_of(size_t n)
{
	char *b = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (char)('a' + i % 26);
	return b;
}

/* Delivers body (n octets, written in 1000-octet pieces, through a worker
 * when async) with d's policy fields to alice. */
static int deliver(struct env *e, const char *body, size_t n, bool async,
		   const struct store_delivery *pol)
{
	char *err = NULL;
	struct store_spool *sp = store_spool_new(e->st, &err);
	CHECK(sp != NULL);
	if (sp == NULL)
		return -1;
	if (async)
		store_spool_async(sp, e->p, spool_ready, NULL);
	for (size_t off = 0; off < n; off += 1000)
		CHECK(store_spool_write(sp, body + off, n - off < 1000 ? n - off : 1000) == 0);
	int64_t id = user_id_of(e->st, "alice@example.com");
	struct store_delivery d = *pol;
	d.txid = "T";
	d.mail_from = "sender@remote.org";
	d.received = 1700000000;
	if (d.n_users == 0 && d.n_remote == 0) {
		d.user_ids = &id;
		d.n_users = 1;
	}
	struct commit_wait w = {0};
	store_commit(e->st, sp, &d, commit_cb, &w);
	run_until(e->l, &w.done);
	return w.result;
}

static void check_blob(struct env *e, const char *mailbox, uint32_t uid, const char *a,
		       size_t an, const char *b, size_t bn)
{
	int fd = -1;
	char *err = NULL;
	if (store_mail_open(e->st, "alice@example.com", mailbox, 0, uid, &fd, &err) != 0) {
		printf("  store_mail_open %s %u: %s\n", mailbox ? mailbox : "INBOX", uid, err);
		free(err);
		CHECK(0);
		return;
	}
	size_t n = an + bn;
	char *got = xmalloc(n + 1);
	size_t have = 0;
	ssize_t r;
	while (have < n + 1 && (r = read(fd, got + have, n + 1 - have)) > 0)
		have += (size_t)r;
	CHECK_INT(uid, have, n);
	CHECK(have == n && memcmp(got, a, an) == 0 && memcmp(got + an, b, bn) == 0);
	free(got);
	close(fd);
}

static void test_prefix(void)
{
	static const char pre[] = "Return-Path: <sender@remote.org>\r\n"
				  "Authentication-Results: mx.example.com; spf=pass\r\n";
	static const struct {
		size_t size;
		bool async;
	} cases[] = {
		{0, false},          /* empty message: the prefix alone */
		{300, false},        /* in the buffer */
		{300, true},
		{65536 * 3 + 17, true},  /* partly on disk, written by workers */
		{65536 * 2 + 5, false},  /* written on the caller's thread */
	};
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *b = body_of(cases[i].size);
		struct store_delivery d = {.prefix = pre, .prefix_len = sizeof pre - 1};
		CHECK_INT((int)i, deliver(&e, b, cases[i].size, cases[i].async, &d), 0);
		check_blob(&e, NULL, (uint32_t)i + 1, pre, sizeof pre - 1, b, cases[i].size);
		char sql[128];
		snprintf(sql, sizeof sql, "SELECT size FROM messages ORDER BY id DESC LIMIT 1");
		CHECK_INT((int)i, sql_int(sql), (long long)(sizeof pre - 1 + cases[i].size));
		free(b);
	}
	/* no prefix: the spool's bytes alone, as before */
	char *b = body_of(1000);
	struct store_delivery d = {0};
	CHECK_INT(0, deliver(&e, b, 1000, true, &d), 0);
	check_blob(&e, NULL, (uint32_t)(sizeof cases / sizeof cases[0]) + 1, "", 0, b, 1000);
	free(b);
	/* no spool file left behind (the stock of empty ones aside) */
	store_wait_idle(e.st);
	CHECK_INT(0, count_nonempty_spool(), 0);
	CHECK_INT(0, count_blobs(), (int)(sizeof cases / sizeof cases[0]) + 1);
	env_free(&e);
}

static void test_junk(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *msg = "Subject: x\r\n\r\nhi\r\n";
	struct store_delivery d = {.junk = true};
	/* the account's default Junk (special use \Junk) */
	CHECK_INT(0, deliver(&e, msg, strlen(msg), false, &d), 0);
	check_blob(&e, "Junk", 1, msg, strlen(msg), "", 0);
	CHECK_INT(0, sql_int("SELECT count(*) FROM mailbox_messages mm JOIN mailboxes b ON"
			     " b.id = mm.mailbox_id WHERE b.name = 'INBOX'"),
		  0);
	/* \Junk on another name: that one */
	CHECK(sql_exec("UPDATE mailboxes SET special_use = NULL WHERE name = 'Junk';"
		       "UPDATE mailboxes SET special_use = '\\Junk' WHERE name = 'Archive' AND"
		       " user_id = (SELECT id FROM users WHERE localpart = 'alice')") ==
	      0);
	CHECK_INT(1, deliver(&e, msg, strlen(msg), false, &d), 0);
	check_blob(&e, "Archive", 1, msg, strlen(msg), "", 0);
	/* none at all: "Junk" created with \Junk, subscribed, in the same commit */
	CHECK(sql_exec("DELETE FROM mailboxes WHERE name IN ('Junk', 'Archive');"
		       "DELETE FROM subscriptions WHERE name = 'Junk'") == 0);
	CHECK_INT(2, deliver(&e, msg, strlen(msg), false, &d), 0);
	check_blob(&e, "Junk", 1, msg, strlen(msg), "", 0);
	CHECK_INT(2, sql_int("SELECT count(*) FROM mailboxes b JOIN users u ON u.id = b.user_id"
			     " WHERE u.localpart = 'alice' AND b.name = 'Junk' AND"
			     " b.special_use = '\\Junk'"),
		  1);
	CHECK_INT(2, sql_int("SELECT count(*) FROM subscriptions WHERE name = 'Junk'"), 1);
	/* not junk: INBOX */
	struct store_delivery d0 = {0};
	CHECK_INT(3, deliver(&e, msg, strlen(msg), false, &d0), 0);
	check_blob(&e, NULL, 1, msg, strlen(msg), "", 0);
	env_free(&e);
}

static void test_queue_from(void)
{
	struct env e = {0};
	if (!env_new(&e)) {
		CHECK(0);
		return;
	}
	const char *msg = "Subject: x\r\n\r\nhi\r\n";
	struct store_remote_rcpt r = {.addr = "far@remote.net"};
	struct store_delivery d = {
		.remote = &r,
		.n_remote = 1,
		.queue_from = "SRS0=abcd=TT=remote.org=sender@example.com",
	};
	CHECK_INT(0, deliver(&e, msg, strlen(msg), false, &d), 0);
	CHECK_INT(0, sql_int("SELECT count(*) FROM queue WHERE mail_from ="
			     " 'SRS0=abcd=TT=remote.org=sender@example.com'"),
		  1);
	struct store_delivery d2 = {.remote = &r, .n_remote = 1};
	CHECK_INT(1, deliver(&e, msg, strlen(msg), false, &d2), 0);
	CHECK_INT(1, sql_int("SELECT count(*) FROM queue WHERE mail_from IS NULL"), 1);
	env_free(&e);
}

int main(void)
{
	test_run("prefix", test_prefix);
	test_run("junk", test_junk);
	test_run("queue_from", test_queue_from);
	return test_done("test_store_policy");
}
