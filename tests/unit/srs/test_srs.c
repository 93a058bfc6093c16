/* SRS (src/policy/srs.c): the forms of srs.h, checked against hashes
 * computed independently (Python's hmac: base64(HMAC-SHA1(secret,
 * lowercased rest))[:4]), reversal with rotation, expiry across the
 * 1024-day wrap, forgeries and malformed addresses; the store setting that
 * keeps a generated secret. */
#define STORE_FIXTURE_NAME "test_srs"
#include "../test.h"
#include "../store_fixture.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "policy/srs.h"
#include "queue/bounce.h"

#define DAY 86400
/* day 20000 since the epoch: 20000 mod 1024 = 544 = 17*32 + 0: "RA" */
#define NOW ((time_t)20000 * DAY + 3600)
static const char *const one[] = {"tops3cret"};

static void test_forward(void)
{
	static const struct {
		const char *sender, *want;
	} cases[] = {
	    /* SRS0: hash over "ra=orig.test=alice" */
	    {"alice@orig.test", "SRS0=Q/c9=RA=orig.test=alice@fwd.test"},
	    /* case of the original kept, hash over the lowercased text */
	    {"Alice@Orig.Test", "SRS0=Q/c9=RA=Orig.Test=Alice@fwd.test"},
	    /* an SRS0 address of another forwarder: SRS1 naming its domain */
	    {"SRS0=AB12=RA=x.test=bob@orig.test",
	     "SRS1=Er6s=orig.test==AB12=RA=x.test=bob@fwd.test"},
	    /* an SRS1 address of another forwarder: first forwarder kept */
	    {"SRS1=zzzz=x.test==AB12=RA=x.test=bob@orig.test",
	     "SRS1=2dgP=x.test==AB12=RA=x.test=bob@fwd.test"},
	    /* the null path, ours, SRS of ours (any case): as is */
	    {"", ""},
	    {"me@fwd.test", "me@fwd.test"},
	    {"SRS0=Q/c9=RA=orig.test=alice@FWD.test", "SRS0=Q/c9=RA=orig.test=alice@FWD.test"},
	    {"nodomain", "nodomain"},
	    /* a domain with '=' could not be read back (found by fuzz_srs) */
	    {"a@b=c.test", "a@b=c.test"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = srs_forward("tops3cret", cases[i].sender, "fwd.test", NOW);
		CHECK_STR((int)i, got, cases[i].want);
		free(got);
	}
	/* too long: NULL (254 octets at most) */
	char big[300];
	memset(big, 'a', 230);
	strcpy(big + 230, "@orig.test");
	CHECK(srs_forward("tops3cret", big, "fwd.test", NOW) == NULL);
	/* just fitting: SRS0= + 4 + = + 2 + = + orig.test(9) + = + local + @fwd.test(9) */
	size_t fit = 254 - (5 + 4 + 1 + 2 + 1 + 9 + 1 + 9);
	memset(big, 'a', fit);
	strcpy(big + fit, "@orig.test");
	char *got = srs_forward("tops3cret", big, "fwd.test", NOW);
	CHECK(got != NULL && strlen(got) == 254);
	free(got);
}

static void test_reverse(void)
{
	static const char *const two[] = {"newsecret", "tops3cret"};
	static const struct {
		const char *addr;
		time_t now;
		int want;
		const char *orig, *why;
		const char *const *secrets;
		size_t n;
	} cases[] = {
	    {"SRS0=Q/c9=RA=orig.test=alice@fwd.test", NOW, 1, "alice@orig.test", NULL, one, 1},
	    /* any case (a next hop may change it), the hash too */
	    {"srs0=q/C9=ra=ORIG.test=alice@FWD.TEST", NOW, 1, "alice@ORIG.test", NULL, one, 1},
	    /* rotation: the old secret still verifies */
	    {"SRS0=Q/c9=RA=orig.test=alice@fwd.test", NOW, 1, "alice@orig.test", NULL, two, 2},
	    /* a local part with '=' survives */
	    {"SRS1=Er6s=orig.test==AB12=RA=x.test=bob@fwd.test", NOW, 1,
	     "SRS0=AB12=RA=x.test=bob@orig.test", NULL, one, 1},
	    /* 21 days later: still valid with a 21-day window; 22: expired */
	    {"SRS0=Q/c9=RA=orig.test=alice@fwd.test", NOW + 21 * DAY, 1, "alice@orig.test", NULL,
	     one, 1},
	    {"SRS0=Q/c9=RA=orig.test=alice@fwd.test", NOW + 22 * DAY, -1, NULL,
	     "expired timestamp", one, 1},
	    /* a timestamp from the future (tomorrow) reads as ~1023 days old */
	    {"SRS0=Q/c9=RA=orig.test=alice@fwd.test", NOW - DAY, -1, NULL, "expired timestamp",
	     one, 1},
	    /* forged: hash changed, domain changed, unknown secret */
	    {"SRS0=Q/c8=RA=orig.test=alice@fwd.test", NOW, -1, NULL, "forged hash", one, 1},
	    {"SRS0=Q/c9=RA=evil.test=alice@fwd.test", NOW, -1, NULL, "forged hash", one, 1},
	    {"SRS0=Q/c9=RA=orig.test=alice@fwd.test", NOW, -1, NULL, "forged hash", two, 1},
	    {"SRS1=Er6t=orig.test==AB12=RA=x.test=bob@fwd.test", NOW, -1, NULL, "forged hash",
	     one, 1},
	    /* malformed */
	    {"SRS0=@fwd.test", NOW, -1, NULL, "malformed SRS address", one, 1},
	    {"SRS0=Q/c=RA=orig.test=alice@fwd.test", NOW, -1, NULL, "malformed SRS address", one,
	     1},
	    {"SRS0=Q/c9=R1=orig.test=alice@fwd.test", NOW, -1, NULL, "malformed SRS address", one,
	     1},
	    {"SRS0=Q/c9=RA=orig.test@fwd.test", NOW, -1, NULL, "malformed SRS address", one, 1},
	    {"SRS0=Q/c9=RA==alice@fwd.test", NOW, -1, NULL, "malformed SRS address", one, 1},
	    {"SRS0=Q/c9=RA=orig.test=@fwd.test", NOW, -1, NULL, "malformed SRS address", one, 1},
	    {"SRS1=Er6s=orig.test@fwd.test", NOW, -1, NULL, "malformed SRS address", one, 1},
	    {"SRS1=Er6s==x@fwd.test", NOW, -1, NULL, "malformed SRS address", one, 1},
	    /* not SRS */
	    {"alice@fwd.test", NOW, 0, NULL, NULL, one, 1},
	    {"SRS2=Q/c9=RA=orig.test=alice@fwd.test", NOW, 0, NULL, NULL, one, 1},
	    {"SRS0", NOW, 0, NULL, NULL, one, 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *orig = (char *)"x";
		const char *why = "x";
		int r = srs_reverse(cases[i].secrets, cases[i].n, cases[i].addr, cases[i].now,
				    21 * DAY, &orig, &why);
		CHECK_INT((int)i, r, cases[i].want);
		CHECK_STR((int)i, orig, cases[i].orig);
		CHECK_STR((int)i, why, cases[i].why);
		free(orig);
	}
}

/* The 1024-day cycle wraps: a stamp of day 1023 is 1 day old on day 0. */
static void test_wrap(void)
{
	time_t t0 = (time_t)1023 * DAY; /* day 1023: "7" "7" */
	char *a = srs_forward("k", "u@o.test", "f.test", t0);
	CHECK(a != NULL && strncmp(a + 10, "77=", 3) == 0);
	time_t later = (time_t)1024 * 20 * DAY + DAY; /* day 1 of a later cycle: 2 days old */
	char *orig = NULL;
	const char *why = NULL;
	const char *const k[] = {"k"};
	CHECK_INT(0, srs_reverse(k, 1, a, later, 2 * DAY, &orig, &why), 1);
	CHECK_STR(0, orig, "u@o.test");
	free(orig);
	orig = NULL;
	CHECK_INT(1, srs_reverse(k, 1, a, later, 1 * DAY, &orig, &why), -1);
	CHECK_STR(1, why, "expired timestamp");
	free(a);
}

/* Round trip through two forwarders and back. */
static void test_chain(void)
{
	const char *const k1[] = {"one"}, *const k2[] = {"two"};
	char *a = srs_forward("one", "bob@orig.test", "first.test", NOW);
	char *b = srs_forward("two", a, "second.test", NOW);
	CHECK(b != NULL && strncmp(b, "SRS1=", 5) == 0);
	char *back = NULL, *orig = NULL;
	const char *why = NULL;
	CHECK_INT(0, srs_reverse(k2, 1, b, NOW, 21 * DAY, &back, &why), 1);
	CHECK_STR(0, back, a);
	CHECK_INT(1, srs_reverse(k1, 1, back, NOW + DAY, 21 * DAY, &orig, &why), 1);
	CHECK_STR(1, orig, "bob@orig.test");
	/* the first forwarder's secret does not verify the second's hash */
	free(orig);
	orig = NULL;
	CHECK_INT(2, srs_reverse(k1, 1, b, NOW, 21 * DAY, &orig, &why), -1);
	free(a);
	free(b);
	free(back);
}

static void test_secrets(void)
{
	dir_new();
	struct store *st = open_store();
	CHECK(st != NULL);
	if (st == NULL)
		return;
	struct config cfg;
	config_defaults(&cfg);
	char *v = NULL;
	CHECK_INT(0, store_setting_get(st, "srs_secret", &v), 0);
	size_t n = 0;
	char **s1 = srs_secrets_load(st, &cfg, &n);
	CHECK(s1 != NULL && n == 1 && s1[1] == NULL && strlen(s1[0]) == 44);
	/* kept: the second load gives the same secret */
	size_t n2 = 0;
	char **s2 = srs_secrets_load(st, &cfg, &n2);
	CHECK(s2 != NULL && n2 == 1 && s1 && strcmp(s1[0], s2[0]) == 0);
	CHECK_INT(1, store_setting_get(st, "srs_secret", &v), 1);
	CHECK(v && s1 && strcmp(v, s1[0]) == 0);
	free(v);
	/* set overwrites */
	char *err = NULL;
	CHECK_INT(2, store_setting_set(st, "srs_secret", "other", &err), 0);
	CHECK_INT(3, store_setting_get(st, "srs_secret", &v), 1);
	CHECK_STR(3, v, "other");
	free(v);
	srs_secrets_free(&s1);
	srs_secrets_free(&s2);
	CHECK(s1 == NULL);
	/* the configured list wins: comma separated, blanks allowed */
	free(cfg.srs_secret);
	cfg.srs_secret = xstrdup("new, old,older");
	char **s3 = srs_secrets_load(st, &cfg, &n);
	CHECK(s3 != NULL && n == 3);
	if (s3 && n == 3) {
		CHECK_STR(4, s3[0], "new");
		CHECK_STR(5, s3[1], "old");
		CHECK_STR(6, s3[2], "older");
		CHECK(s3[3] == NULL);
	}
	srs_secrets_free(&s3);
	config_free(&cfg);
	store_close(&st);
	dir_remove();
}

/* ---- the queue's envelope sender (queue.mail_from, schema 5) ---- */

struct res {
	bool done;
	int result;
	struct store_queue_lease *l;
	char from[300];
};

static void on_done(void *arg, int result)
{
	struct res *r = arg;
	r->result = result;
	r->done = true;
}

static void on_lease(void *arg, int result, struct store_queue_lease *l)
{
	struct res *r = arg;
	r->result = result;
	r->l = l;
	r->done = true;
}

static void on_entry(void *arg, const struct store_queue_entry *e)
{
	struct res *r = arg;
	snprintf(r->from, sizeof r->from, "%s", e->mail_from);
}

static int64_t commit_remote(struct env *e, const char *from, const char *to)
{
	char *err = NULL;
	struct store_spool *sp = store_spool_new(e->st, &err);
	const char *text = "Subject: x\r\n\r\nbody\r\n";
	store_spool_write(sp, text, strlen(text));
	struct store_remote_rcpt rc = {.addr = to};
	struct store_delivery d = {.txid = "t", .mail_from = from, .received = 1,
				   .remote = &rc, .n_remote = 1};
	struct res r = {0};
	store_commit(e->st, sp, &d, on_done, &r);
	run_until(e->l, &r.done);
	CHECK_INT(0, r.result, 0);
	return sql_int("SELECT max(id) FROM messages");
}

/* The lease and the admin listing give COALESCE(queue.mail_from,
 * messages.mail_from): the forwarded copy leaves with its SRS sender. */
static void test_queue_from(void)
{
	struct env e = {0};
	CHECK(env_new(&e));
	if (e.st == NULL)
		return;
	int64_t id = commit_remote(&e, "orig@orig.test", "far@remote.test");
	/* as the commit writes store_delivery.queue_from */
	CHECK_INT(1, sql_exec("UPDATE queue SET mail_from = 'SRS0=Q/c9=RA=orig.test=orig@example.com'"),
		  0);
	struct res r = {0};
	char *err = NULL;
	CHECK_INT(2, store_queue_entries(e.st, id, on_entry, &r, &err), 0);
	CHECK_STR(3, r.from, "SRS0=Q/c9=RA=orig.test=orig@example.com");
	r = (struct res){0};
	store_queue_lease(e.st, "test", time(NULL) + 10, 600, 10, on_lease, &r);
	run_until(e.l, &r.done);
	CHECK_INT(4, r.result, 0);
	CHECK(r.l != NULL && r.l->n_msg == 1);
	if (r.l != NULL && r.l->n_msg == 1)
		CHECK_STR(5, r.l->msg[0].mail_from, "SRS0=Q/c9=RA=orig.test=orig@example.com");
	store_queue_lease_free(&r.l);
	/* NULL: the message's sender */
	CHECK_INT(6, sql_exec("UPDATE queue SET mail_from = NULL, lease_until = 0"), 0);
	r = (struct res){0};
	CHECK_INT(7, store_queue_entries(e.st, id, on_entry, &r, &err), 0);
	CHECK_STR(8, r.from, "orig@orig.test");
	r = (struct res){0};
	store_queue_lease(e.st, "test", time(NULL) + 10, 600, 10, on_lease, &r);
	run_until(e.l, &r.done);
	if (r.l != NULL && r.l->n_msg == 1)
		CHECK_STR(9, r.l->msg[0].mail_from, "orig@orig.test");
	else
		CHECK(false);
	store_queue_lease_free(&r.l);
	env_free(&e);
}

/* ---- a DSN to an SRS address of ours goes to the original sender ---- */

static void on_sent(void *arg, int result)
{
	on_done(arg, result);
}

static int send_dsn(struct env *e, const char *to)
{
	char path[128];
	snprintf(path, sizeof path, "%s/orig", tmpdir);
	FILE *f = fopen(path, "wb");
	fputs("From: a@orig.test\r\nSubject: hi\r\n\r\nbody\r\n", f);
	fclose(f);
	int fd = open(path, O_RDONLY);
	struct bounce_rcpt rc = {.rcpt = "far@remote.test", .action = BOUNCE_FAILED,
				 .status = "5.1.1", .diag = "550 5.1.1 no such user"};
	struct bounce_msg m = {.queue_id = "Q1", .mail_from = to, .received = 1, .fd = fd,
			       .size = 40, .rcpt = &rc, .n_rcpt = 1};
	struct res r = {0};
	bounce_send(e->st, e->p, "mx.example.com", &m, NULL, NULL, on_sent, &r);
	close(fd);
	run_until(e->l, &r.done);
	return r.result;
}

static void test_bounce(void)
{
	struct env e = {0};
	CHECK(env_new(&e));
	if (e.st == NULL)
		return;
	static const char *k[] = {"tops3cret"};
	bounce_set_srs((char **)k, 1, 21 * DAY);
	char *srs = srs_forward("tops3cret", "orig@orig.test", "example.com", time(NULL));
	/* valid: queued for the original sender, not dropped as an unknown
	 * local user */
	CHECK_INT(1, send_dsn(&e, srs), 0);
	CHECK_INT(2, sql_int("SELECT count(*) FROM queue WHERE rcpt = 'orig@orig.test'"), 1);
	CHECK_INT(3, sql_int("SELECT count(*) FROM queue"), 1);
	/* an SRS1 address decodes to the first forwarder's SRS0 address */
	char *s1 = srs_forward("tops3cret", "SRS0=AB12=RA=x.test=bob@first.test", "example.com",
			       time(NULL));
	CHECK_INT(4, send_dsn(&e, s1), 0);
	CHECK_INT(5, sql_int("SELECT count(*) FROM queue WHERE rcpt ="
			     " 'SRS0=AB12=RA=x.test=bob@first.test'"),
		  1);
	/* forged: dropped (logged), nothing queued, nothing delivered */
	char h1 = srs[6];
	srs[6] = (h1 == 'a' || h1 == 'A') ? 'b' : 'a'; /* differs in any case */
	CHECK_INT(6, send_dsn(&e, srs), 0);
	CHECK_INT(7, sql_int("SELECT count(*) FROM queue"), 2);
	CHECK_INT(8, sql_int("SELECT count(*) FROM messages"), 2);
	/* another domain's SRS address: an ordinary remote sender */
	CHECK_INT(9, send_dsn(&e, "SRS0=xxxx=RA=a.test=b@other.test"), 0);
	CHECK_INT(10, sql_int("SELECT count(*) FROM queue WHERE rcpt ="
			      " 'SRS0=xxxx=RA=a.test=b@other.test'"),
		  1);
	/* SRS off: routed like any local address (no such user: dropped) */
	bounce_set_srs(NULL, 0, 0);
	srs[6] = h1;
	CHECK_INT(11, send_dsn(&e, srs), 0);
	CHECK_INT(12, sql_int("SELECT count(*) FROM queue"), 3);
	free(srs);
	free(s1);
	env_free(&e);
}

int main(void)
{
	test_run("forward", test_forward);
	test_run("reverse", test_reverse);
	test_run("wrap", test_wrap);
	test_run("chain", test_chain);
	test_run("secrets", test_secrets);
	test_run("queue_from", test_queue_from);
	test_run("bounce", test_bounce);
	return test_done("test_srs");
}
