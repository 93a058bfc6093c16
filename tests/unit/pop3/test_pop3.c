/* Unit tests for POP3: the command parser, numeric arguments, the
 * dot-stuffing encoder across chunk boundaries, TOP line counting, and the
 * store's expunge with its change notification. */
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "pop3/parse.h"
#include "store/store.h"

static void test_parse_command(void)
{
	static const struct {
		const char *line;
		int ret;
		const char *verb, *args;
	} cases[] = {
		{"STAT", 0, "STAT", ""},
		{"retr 1", 0, "RETR", "1"},
		{"Top 1 10", 0, "TOP", "1 10"},
		{"PASS secret with spaces", 0, "PASS", "secret with spaces"},
		{"", -1, NULL, NULL},
		{" STAT", -1, NULL, NULL},
		{"TOOLONGVERB x", -1, NULL, NULL},
		{"ST@T", -1, NULL, NULL},
		{"UIDL ", 0, "UIDL", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char verb[POP3_MAX_VERB + 1];
		const char *args = NULL;
		int r = pop3_parse_command(cases[i].line, verb, &args);
		CHECK_INT((int)i, r, cases[i].ret);
		if (r == 0) {
			CHECK_STR((int)i, verb, cases[i].verb);
			CHECK_STR((int)i, args, cases[i].args);
		}
	}
}

static void test_parse_numbers(void)
{
	static const struct {
		const char *args;
		int min, max, ret;
		uint32_t a, b;
	} cases[] = {
		{"", 0, 1, 0, 0, 0},
		{"1", 0, 1, 1, 1, 0},
		{"42 7", 2, 2, 2, 42, 7},
		{"4294967295", 1, 1, 1, 4294967295u, 0},
		{"4294967296", 1, 1, -1, 0, 0},
		{"x", 0, 1, -1, 0, 0},
		{"-1", 1, 1, -1, 0, 0},
		{"+1", 1, 1, -1, 0, 0},
		{"1 2", 1, 1, -1, 0, 0},
		{"1", 2, 2, -1, 0, 0},
		{"1  2", 2, 2, -1, 0, 0},
		{"1 ", 1, 1, -1, 0, 0},
		{"1x", 1, 1, -1, 0, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t v[2] = {0, 0};
		int r = pop3_parse_numbers(cases[i].args, v, cases[i].min, cases[i].max);
		CHECK_INT((int)i, r, cases[i].ret);
		if (r >= 1)
			CHECK_INT((int)i, v[0], cases[i].a);
		if (r == 2)
			CHECK_INT((int)i, v[1], cases[i].b);
	}
}

/* Encodes in with every chunk size from 1 to len: the output must not depend
 * on where the chunks split. */
static char *encode(const char *in, bool top, uint64_t lines, size_t chunk)
{
	struct pop3_dot d;
	struct buf out = BUF_INIT;
	size_t n = strlen(in);
	pop3_dot_init(&d, top, lines);
	for (size_t i = 0; i < n; i += chunk) {
		size_t k = n - i < chunk ? n - i : chunk;
		if (pop3_dot_feed(&d, in + i, k, &out) == 1)
			break;
	}
	pop3_dot_end(&d, &out);
	char *s = xstrndup(out.data ? out.data : "", out.len);
	buf_free(&out);
	return s;
}

static void test_dot_stuffing(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{".a\r\n..b\r\n.\r\n", "..a\r\n...b\r\n..\r\n.\r\n"},
		{"x.\r\n.", "x.\r\n..\r\n.\r\n"},
		{"no newline", "no newline\r\n.\r\n"},
		{"bare\nlf\n.x\n", "bare\r\nlf\r\n..x\r\n.\r\n"},
		{"", ".\r\n"},
		{"a\r", "a\r\n.\r\n"},
		{"\xc3\xa4\xff\r\n.\xc3\xa4\r\n", "\xc3\xa4\xff\r\n..\xc3\xa4\r\n.\r\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = strlen(cases[i].in);
		for (size_t chunk = 1; chunk <= (n ? n : 1); chunk++) {
			char *got = encode(cases[i].in, false, 0, chunk);
			CHECK_STR((int)(i * 100 + chunk), got, cases[i].want);
			free(got);
		}
	}
}

static void test_top(void)
{
	const char *msg = "From: a\r\nSubject: b\r\n\r\n.one\r\ntwo\r\nthree\r\n";
	static const struct {
		uint64_t lines;
		const char *want;
	} cases[] = {
		{0, "From: a\r\nSubject: b\r\n\r\n.\r\n"},
		{1, "From: a\r\nSubject: b\r\n\r\n..one\r\n.\r\n"},
		{2, "From: a\r\nSubject: b\r\n\r\n..one\r\ntwo\r\n.\r\n"},
		{3, "From: a\r\nSubject: b\r\n\r\n..one\r\ntwo\r\nthree\r\n.\r\n"},
		{99, "From: a\r\nSubject: b\r\n\r\n..one\r\ntwo\r\nthree\r\n.\r\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t chunk = 1; chunk <= strlen(msg); chunk++) {
			char *got = encode(msg, true, cases[i].lines, chunk);
			CHECK_STR((int)(i * 100 + chunk), got, cases[i].want);
			free(got);
		}
	}
	/* no body at all, and a header that never ends */
	char *got = encode("Subject: x\r\n", true, 5, 3);
	CHECK_STR(90, got, "Subject: x\r\n.\r\n");
	free(got);
	got = encode("Subject: x\r\n\r\n", true, 0, 1);
	CHECK_STR(91, got, "Subject: x\r\n\r\n.\r\n");
	free(got);
	/* a line of only CR is not the blank line (bare CR kept as is) */
	got = encode("A: 1\r\n\r\r\nbody\r\n\r\nb2\r\n", true, 1, 2);
	CHECK_STR(92, got, "A: 1\r\n\r\r\nbody\r\n\r\nb2\r\n.\r\n");
	free(got);
}

/* ---- store expunge and notification ---- */

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

struct ctx {
	struct loop *l;
	struct store *st;
	int commits, expunged, result;
	int n_new, n_exp;
	uint32_t exp_uids[8];
	size_t n_exp_uids;
	uint64_t modseq;
	struct store_sub *sub, *sub2;
	bool self_unsub;
};

static void on_commit(void *arg, int result)
{
	struct ctx *c = arg;
	c->commits++;
	c->result = result;
	loop_stop(c->l);
}

static void on_expunge(void *arg, int result)
{
	struct ctx *c = arg;
	c->expunged++;
	c->result = result;
}

static void on_change(void *arg, const struct store_change *ch)
{
	struct ctx *c = arg;
	if (ch->kind == STORE_CHANGE_NEW) {
		c->n_new++;
	} else {
		c->n_exp++;
		c->n_exp_uids = ch->n_uids;
		for (size_t i = 0; i < ch->n_uids && i < 8; i++)
			c->exp_uids[i] = ch->uids[i];
		c->modseq = ch->highestmodseq;
	}
	if (c->self_unsub) {
		/* itself and the other one, mid-round */
		store_unsubscribe(c->st, &c->sub);
		store_unsubscribe(c->st, &c->sub2);
	}
	loop_stop(c->l);
}

struct guard {
	struct loop *l;
	struct timer *t;
};

static void on_timeout(void *arg)
{
	struct guard *g = arg;
	g->t = NULL; /* freed by the loop */
	loop_stop(g->l);
}

static void run_for(struct ctx *c, uint64_t ms)
{
	struct guard g = {c->l, NULL};
	g.t = loop_timer_add(c->l, ms, on_timeout, &g);
	loop_run(c->l);
	loop_timer_cancel(c->l, &g.t);
}

static void run(struct ctx *c)
{
	run_for(c, 10000);
}

static void deliver(struct ctx *c, int64_t uid_user, const char *text)
{
	char *err = NULL;
	struct store_spool *sp = store_spool_new(c->st, &err);
	CHECK(sp != NULL);
	store_spool_write(sp, text, strlen(text));
	struct store_delivery d = {.txid = "t", .mail_from = "", .received = 1,
				   .user_ids = &uid_user, .n_users = 1};
	store_commit(c->st, sp, &d, on_commit, c);
	run(c);
}

static int count_blobs(void)
{
	char *cmd = xasprintf("find %s/data/blobs -type f | wc -l", tmpdir);
	FILE *f = popen(cmd, "r");
	int n = -1;
	if (f != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	free(cmd);
	return n;
}

static void count_cb(void *arg, const struct store_mail_info *m)
{
	(*(int *)arg)++;
}

static void test_store_expunge(void)
{
	struct ctx c = {0};
	char *err = NULL;

	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pop3.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		exit(2);
	char *path = xasprintf("%s/data", tmpdir);
	c.l = loop_new();
	c.st = store_open(path, &err);
	free(path);
	CHECK(c.st != NULL);
	if (c.st == NULL)
		return;
	CHECK_INT(0, store_domain_add(c.st, "example.test", &err), 0);
	CHECK_INT(1, store_user_add(c.st, "u@example.test", "$argon2id$x", &err), 0);
	CHECK_INT(2, store_start(c.st, c.l, 0), 0);
	CHECK(store_subscribe(c.st, "nobody@example.test", NULL, on_change, &c, &err) == NULL);
	x_free(&err);
	c.sub = store_subscribe(c.st, "U@example.test", "inbox", on_change, &c, &err);
	c.sub2 = store_subscribe(c.st, "u@example.test", NULL, on_change, &c, &err);
	CHECK(c.sub != NULL && c.sub2 != NULL);

	/* user id 1: the first user */
	for (int i = 0; i < 3; i++)
		deliver(&c, 1, "Subject: x\r\n\r\nbody\r\n");
	CHECK_INT(3, c.commits, 3);
	/* loop_stop from the first change callback: run the rest */
	CHECK_INT(4, c.n_new >= 3, 1);

	struct store_mailbox_status stt;
	CHECK_INT(5, store_mailbox_status(c.st, "u@example.test", NULL, &stt, &err), 0);
	CHECK_INT(6, stt.messages, 3);
	CHECK_INT(7, stt.uidnext, 4);
	uint64_t modseq0 = stt.highestmodseq;
	CHECK_INT(8, count_blobs(), 3);

	/* one subscriber unsubscribes another during the round: no crash, and
	 * the cancelled one is not called afterwards */
	c.self_unsub = true;
	c.n_new = 0;
	uint32_t uids[] = {1, 3, 99};
	store_expunge(c.st, "u@example.test", NULL, 0, uids, 3, on_expunge, &c);
	CHECK_INT(9, c.expunged, 0); /* never from inside the call */
	run(&c);
	CHECK_INT(10, c.expunged, 1);
	CHECK_INT(11, c.result, 0);
	CHECK_INT(12, c.n_exp, 1); /* the other was cancelled by the first callback */
	CHECK_INT(13, c.n_exp_uids, 2);
	CHECK_INT(14, c.exp_uids[0], 1);
	CHECK_INT(15, c.exp_uids[1], 3);
	CHECK(c.sub == NULL && c.sub2 == NULL);
	CHECK_INT(16, store_mailbox_status(c.st, "u@example.test", NULL, &stt, &err), 0);
	CHECK_INT(17, stt.messages, 1);
	CHECK_INT(18, stt.highestmodseq, modseq0 + 1);
	CHECK_INT(19, c.modseq, modseq0 + 1);
	CHECK_INT(20, count_blobs(), 1);
	int n = 0;
	CHECK_INT(21, store_mail_list(c.st, "u@example.test", NULL, count_cb, &n, &err), 0);
	CHECK_INT(22, n, 1);

	/* unknown user: cb later with -1 */
	c.result = 0;
	store_expunge(c.st, "zz@example.test", NULL, 0, uids, 1, on_expunge, &c);
	run_for(&c, 300);
	CHECK_INT(23, c.expunged, 2);
	CHECK_INT(24, c.result, -1);

	/* the UIDs were taken from an INBOX with another UIDVALIDITY (deleted and
	 * re-created since): nothing removed, cb with -1 */
	c.result = 0;
	uint32_t left = 2;
	store_expunge(c.st, "u@example.test", NULL, stt.uidvalidity + 1, &left, 1, on_expunge, &c);
	run_for(&c, 300);
	CHECK_INT(25, c.expunged, 3);
	CHECK_INT(26, c.result, -1);
	CHECK_INT(27, store_mailbox_status(c.st, "u@example.test", NULL, &stt, &err), 0);
	CHECK_INT(28, stt.messages, 1);
	CHECK_INT(29, count_blobs(), 1);
	/* the right one removes it */
	store_expunge(c.st, "u@example.test", NULL, stt.uidvalidity, &left, 1, on_expunge, &c);
	run(&c);
	CHECK_INT(30, c.expunged, 4);
	CHECK_INT(31, c.result, 0);
	CHECK_INT(32, count_blobs(), 0);

	store_unsubscribe(c.st, &c.sub);
	CHECK(c.sub == NULL);
	store_close(&c.st);
	loop_free(&c.l);
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	test_run("parse_command", test_parse_command);
	test_run("parse_numbers", test_parse_numbers);
	test_run("dot_stuffing", test_dot_stuffing);
	test_run("top", test_top);
	test_run("store_expunge", test_store_expunge);
	return test_done("test_pop3");
}
