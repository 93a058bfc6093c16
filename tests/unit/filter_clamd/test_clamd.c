/* src/filter/clamd.c against a scripted peer on a unix socket (fault
 * injection: answers, errors, a hung or slow reader, a closed socket). The
 * real clamd is in tests/e2e/test_filter_virus.py. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "filter/clamd.h"
#include "../test.h"

enum mode { M_OK, M_FOUND, M_HANG, M_SLOW, M_LIMIT, M_GARBAGE, M_CLOSE, M_EARLY, M_SPLIT, M_NONUL,
	    M_LONG };

struct peer {
	struct loop *l;
	enum mode mode;
	int lfd, fd;
	struct buf in;      /* everything received */
	struct buf content; /* the chunks' data, unframed */
	bool got_end, answered;
	struct timer *slow;
};

struct run {
	struct loop *l;
	struct clamd_scan *s;
	const char *msg;
	size_t len, off, piece;
	bool paused, done;
	int pauses;
	struct clamd_result r;
	char name[256];
	uint64_t t_end, t_done;
	struct timer *guard;
};

static void peer_answer(struct peer *p, const char *a)
{
	if (p->answered)
		return;
	p->answered = true;
	(void)!write(p->fd, a, strlen(a) + 1);
}

static void on_split_rest(void *arg)
{
	struct peer *p = arg;

	p->slow = NULL;
	if (p->fd >= 0)
		(void)!write(p->fd, "it.Sig FOUND", 13); /* with the NUL */
}

/* Parses the INSTREAM framing of what arrived so far. */
static void peer_parse(struct peer *p)
{
	size_t off = 10;

	buf_reset(&p->content);
	p->got_end = false;
	if (p->in.len < 10)
		return;
	while (off + 4 <= p->in.len) {
		uint32_t n;
		memcpy(&n, p->in.data + off, 4);
		n = ntohl(n);
		if (n == 0) {
			p->got_end = true;
			return;
		}
		if (off + 4 + n > p->in.len)
			return;
		buf_append(&p->content, p->in.data + off + 4, n);
		off += 4 + n;
	}
}

static void peer_read(struct peer *p, size_t max)
{
	char tmp[4096];
	size_t got = 0;

	while (got < max) {
		ssize_t r = read(p->fd, tmp, sizeof tmp < max - got ? sizeof tmp : max - got);
		if (r <= 0)
			break;
		buf_append(&p->in, tmp, (size_t)r);
		got += (size_t)r;
	}
	peer_parse(p);
	switch (p->mode) {
	case M_OK:
	case M_SLOW:
		if (p->got_end)
			peer_answer(p, "stream: OK");
		break;
	case M_FOUND:
		if (p->got_end)
			peer_answer(p, "stream: Test.Sig-1 FOUND");
		break;
	case M_GARBAGE:
		if (p->got_end)
			peer_answer(p, "what?");
		break;
	case M_SPLIT:
		/* the answer in two writes, apart in time: a read may end
		 * in the middle of it */
		if (p->got_end && !p->answered) {
			p->answered = true;
			(void)!write(p->fd, "stream: Spl", 11);
			p->slow = loop_timer_add(p->l, 20, on_split_rest, p);
		}
		break;
	case M_NONUL:
		/* an answer without its NUL, then the close: it counts */
		if (p->got_end && !p->answered) {
			p->answered = true;
			(void)!write(p->fd, "stream: NoNul.Sig FOUND", 23);
			loop_del(p->l, p->fd);
			close(p->fd);
			p->fd = -1;
		}
		break;
	case M_LONG:
		/* an endless answer: an error, not unbounded memory */
		if (p->got_end && !p->answered) {
			char junk[3000];
			memset(junk, 'x', sizeof junk);
			p->answered = true;
			(void)!write(p->fd, junk, sizeof junk);
		}
		break;
	case M_CLOSE:
		if (p->got_end) {
			loop_del(p->l, p->fd);
			close(p->fd);
			p->fd = -1;
		}
		break;
	case M_LIMIT:
		/* clamd's StreamMaxLength: it answers and closes */
		if (p->in.len > 100000) {
			peer_answer(p, "INSTREAM size limit exceeded. ERROR");
			loop_del(p->l, p->fd);
			close(p->fd);
			p->fd = -1;
		}
		break;
	default:
		break;
	}
}

static void on_slow(void *arg)
{
	struct peer *p = arg;

	p->slow = loop_timer_add(p->l, 2, on_slow, p);
	if (p->fd >= 0)
		peer_read(p, 8192);
}

static void on_peer_io(void *arg, uint32_t ev)
{
	struct peer *p = arg;

	if (p->fd >= 0)
		peer_read(p, SIZE_MAX);
}

static void on_accept(void *arg, uint32_t ev)
{
	struct peer *p = arg;
	int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK);

	if (fd < 0)
		return;
	p->fd = fd;
	if (p->mode == M_HANG)
		return; /* never read, never answer */
	if (p->mode == M_SLOW) {
		p->slow = loop_timer_add(p->l, 2, on_slow, p);
		return;
	}
	if (p->mode == M_EARLY) {
		/* an answer before the end: the scan is over at once */
		peer_answer(p, "stream: Early.Sig FOUND");
		return;
	}
	loop_add(p->l, fd, LOOP_READ, on_peer_io, p);
}

static char sock_path[108];

static void peer_start(struct peer *p, struct loop *l, enum mode m)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};

	memset(p, 0, sizeof(*p));
	p->l = l;
	p->mode = m;
	p->fd = -1;
	unlink(sock_path);
	strcpy(un.sun_path, sock_path);
	p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (bind(p->lfd, (struct sockaddr *)&un, sizeof un) < 0 || listen(p->lfd, 8) < 0)
		abort();
	loop_add(l, p->lfd, LOOP_READ, on_accept, p);
}

static void peer_stop(struct peer *p)
{
	loop_timer_cancel(p->l, &p->slow);
	if (p->fd >= 0) {
		loop_del(p->l, p->fd);
		close(p->fd);
	}
	loop_del(p->l, p->lfd);
	close(p->lfd);
	unlink(sock_path);
	buf_free(&p->in);
	buf_free(&p->content);
}

/* ---- the feeding side ---- */

static void on_result(void *arg, const struct clamd_result *r)
{
	struct run *ru = arg;

	ru->done = true;
	ru->r = *r;
	snprintf(ru->name, sizeof ru->name, "%s", r->name ? r->name : "");
	ru->r.name = r->name ? ru->name : NULL;
	ru->t_done = loop_now(ru->l);
	loop_timer_cancel(ru->l, &ru->guard);
	loop_stop(ru->l);
}

static void feed_more(struct run *ru);

static void on_resume(void *arg)
{
	struct run *ru = arg;

	CHECK(ru->paused);
	ru->paused = false;
	feed_more(ru);
}

static void feed_more(struct run *ru)
{
	while (ru->off < ru->len) {
		size_t n = ru->len - ru->off < ru->piece ? ru->len - ru->off : ru->piece;
		bool pause = clamd_scan_feed(ru->s, ru->msg + ru->off, n, on_resume, ru);

		ru->off += n;
		if (pause) {
			ru->paused = true;
			ru->pauses++;
			return;
		}
	}
	ru->t_end = loop_now(ru->l);
	clamd_scan_end(ru->s, on_result, ru);
}

static void on_start(void *arg)
{
	feed_more(arg);
}

static void on_guard(void *arg)
{
	struct run *ru = arg;

	ru->guard = NULL;
	loop_stop(ru->l);
}

/* Scans msg against a peer in mode m (or no socket at all: none). */
static void scan(enum mode m, bool none, const char *msg, size_t len, size_t piece,
		 size_t max_size, struct run *ru, struct peer *p)
{
	struct config cfg;
	struct loop *l = loop_new();
	char *err = NULL;

	config_defaults(&cfg);
	free(cfg.clamd_socket);
	cfg.clamd_socket = strdup(sock_path);
	cfg.clamd_timeout = 1;
	cfg.clamd_max_size = max_size;
	if (!none)
		peer_start(p, l, m);
	else
		unlink(sock_path);
	struct clamd *c = clamd_new(l, &cfg, &err);
	if (c != NULL)
		clamd_instream_only(c); /* the fake clamd speaks INSTREAM */
	CHECK(c != NULL && err == NULL);
	memset(ru, 0, sizeof(*ru));
	ru->l = l;
	ru->s = clamd_scan_new(c);
	ru->msg = msg;
	ru->len = len;
	ru->piece = piece;
	ru->guard = loop_timer_add(l, 10000, on_guard, ru);
	loop_timer_add(l, 0, on_start, ru);
	loop_run(l);
	CHECK(ru->done);
	clamd_scan_free(&ru->s);
	clamd_free(&c);
	loop_timer_cancel(l, &ru->guard);
	if (!none) {
		/* what the peer got, before it goes */
		peer_parse(p);
		struct buf keep = BUF_INIT;
		buf_append(&keep, p->in.data ? p->in.data : "", p->in.len);
		peer_stop(p);
		p->in = keep;
		p->content = (struct buf)BUF_INIT;
		peer_parse(p);
	}
	loop_free(&l);
	config_free(&cfg);
}

static char *make_msg(size_t n)
{
	char *m = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		m[i] = (char)('a' + i % 26);
	m[n] = '\0';
	return m;
}

static void test_answers(void)
{
	static const struct {
		enum mode m;
		enum clamd_status st;
		const char *name;
	} cases[] = {
		{M_OK, CLAMD_CLEAN, NULL},
		{M_FOUND, CLAMD_INFECTED, "Test.Sig-1"},
		{M_GARBAGE, CLAMD_ERROR, "unexpected answer \"what?\""},
		{M_CLOSE, CLAMD_ERROR, "connection closed without an answer"},
		{M_EARLY, CLAMD_INFECTED, "Early.Sig"},
		{M_SPLIT, CLAMD_INFECTED, "Split.Sig"},
		{M_NONUL, CLAMD_INFECTED, "NoNul.Sig"},
		{M_LONG, CLAMD_ERROR, "answer longer than 1024 octets"},
	};
	char *msg = make_msg(100000);

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct run ru;
		struct peer p;

		scan(cases[i].m, false, msg, 100000, 7000, 1 << 20, &ru, &p);
		CHECK_INT(i, ru.r.status, cases[i].st);
		CHECK_STR(i, ru.r.name, cases[i].name);
		if (cases[i].m == M_OK || cases[i].m == M_FOUND) {
			/* the command, every byte in order, the end */
			CHECK(p.in.len > 10 && memcmp(p.in.data, "zINSTREAM\0", 10) == 0);
			CHECK_INT(i, p.content.len, 100000);
			CHECK(p.content.len == 100000 && memcmp(p.content.data, msg, 100000) == 0);
			CHECK(p.got_end);
		}
		buf_free(&p.in);
		buf_free(&p.content);
	}
	free(msg);
}

/* clamd not there: an error at once, saying why. */
static void test_down(void)
{
	struct run ru;
	struct peer p;

	scan(M_OK, true, "hello", 5, 5, 1 << 20, &ru, &p);
	CHECK_INT(0, ru.r.status, CLAMD_ERROR);
	CHECK_STR(0, ru.r.name, "connect: No such file or directory");
}

/* A clamd that accepts and never reads or answers: an error clamd_timeout
 * (1 s here) after the end. */
static void test_hang(void)
{
	struct run ru;
	struct peer p;

	scan(M_HANG, false, "hello\r\n", 7, 7, 1 << 20, &ru, &p);
	CHECK_INT(0, ru.r.status, CLAMD_ERROR);
	CHECK_STR(0, ru.r.name, "no answer within 1s");
	CHECK(ru.t_done - ru.t_end >= 1000);
	buf_free(&p.in);
}

/* Hung while the message streams: the queue fills, the sender is paused,
 * and the stall deadline ends the scan and resumes the sender (whose bytes
 * are then dropped). */
static void test_stall(void)
{
	struct run ru;
	struct peer p;
	size_t n = 8 << 20;
	char *msg = make_msg(n);

	scan(M_HANG, false, msg, n, 16384, (size_t)64 << 20, &ru, &p);
	CHECK_INT(0, ru.r.status, CLAMD_ERROR);
	CHECK_STR(0, ru.r.name, "stalled: nothing read for 1s");
	CHECK(ru.pauses >= 1);
	CHECK(ru.off == n);
	free(msg);
	buf_free(&p.in);
}

/* A slow reader: the sender is paused and resumed, nothing is lost. */
static void test_slow(void)
{
	struct run ru;
	struct peer p;
	size_t n = 3 << 20;
	char *msg = make_msg(n);

	scan(M_SLOW, false, msg, n, 16384, (size_t)64 << 20, &ru, &p);
	CHECK_INT(0, ru.r.status, CLAMD_CLEAN);
	CHECK(ru.pauses >= 2);
	CHECK(p.content.len == n && memcmp(p.content.data, msg, n) == 0);
	free(msg);
	buf_free(&p.in);
	buf_free(&p.content);
}

/* clamd_max_size: beyond it, not scanned (and not sent on). */
static void test_max_size(void)
{
	struct run ru;
	struct peer p;
	char *msg = make_msg(5000);

	scan(M_OK, false, msg, 5000, 1000, 2048, &ru, &p);
	CHECK_INT(0, ru.r.status, CLAMD_UNSCANNED);
	CHECK(ru.r.name == NULL);
	CHECK(p.content.len <= 2048);
	CHECK(!p.got_end);
	buf_free(&p.in);
	buf_free(&p.content);
	free(msg);
}

/* clamd's own StreamMaxLength below clamd_max_size: not scanned. */
static void test_clamd_limit(void)
{
	struct run ru;
	struct peer p;
	size_t n = 1 << 20;
	char *msg = make_msg(n);

	scan(M_LIMIT, false, msg, n, 16384, (size_t)64 << 20, &ru, &p);
	CHECK_INT(0, ru.r.status, CLAMD_UNSCANNED);
	free(msg);
	buf_free(&p.in);
	buf_free(&p.content);
}

/* Bad clamd_socket values are refused at start. */
static void test_config(void)
{
	static const struct {
		const char *v;
		bool ok;
	} cases[] = {
		{"/var/run/clamav/clamd.ctl", true},
		{"unix:/run/clamd.sock", true},
		{"127.0.0.1:3310", true},
		{"[::1]:3310", true},
		{"clamd", false},
		{"127.0.0.1:", false},
		{"", true}, /* no scanning: NULL without an error */
	};
	struct loop *l = loop_new();

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config cfg;
		char *err = NULL;

		config_defaults(&cfg);
		free(cfg.clamd_socket);
		cfg.clamd_socket = strdup(cases[i].v);
		struct clamd *c = clamd_new(l, &cfg, &err);
		if (c != NULL)
			clamd_instream_only(c); /* the fake clamd speaks INSTREAM */
		if (cases[i].v[0] == '\0')
			CHECK(c == NULL && err == NULL);
		else
			CHECK_INT(i, c != NULL, cases[i].ok);
		CHECK_INT(i, err != NULL, !cases[i].ok);
		free(err);
		clamd_free(&c);
		config_free(&cfg);
	}
	loop_free(&l);
}

static int free_calls;

static void never_resume(void *arg)
{
	free_calls++;
}

static void never_result(void *arg, const struct clamd_result *r)
{
	free_calls++;
}

static void on_stop(void *arg)
{
	loop_stop(arg);
}

/* clamd_scan_free in every state: nothing runs after it (a paused
 * caller's resume, a pending result), nothing leaks (ASan build). */
static void test_free_states(void)
{
	char *msg = make_msg(1 << 20);

	for (int st = 0; st < 5; st++) {
		struct config cfg;
		struct loop *l = loop_new();
		struct peer p;
		char *err = NULL;

		config_defaults(&cfg);
		free(cfg.clamd_socket);
		cfg.clamd_socket = strdup(sock_path);
		cfg.clamd_timeout = 1;
		peer_start(&p, l, st == 4 ? M_EARLY : M_HANG);
		struct clamd *c = clamd_new(l, &cfg, &err);
		if (c != NULL)
			clamd_instream_only(c); /* the fake clamd speaks INSTREAM */
		struct clamd_scan *s = clamd_scan_new(c);
		free_calls = 0;
		if (st >= 1 && st <= 3) {
			/* 1: fed a little; 2: paused (a hung clamd); 3: ended */
			size_t off = 0;
			bool paused = false;
			while (off < (st == 1 ? 100 : (size_t)1 << 20) && !paused) {
				paused = clamd_scan_feed(s, msg + off, 4096, never_resume, NULL);
				off += 4096;
			}
			CHECK_INT(st, paused, st >= 2);
			if (st == 2) {
				/* the loop runs: no resume (clamd reads nothing) */
				loop_timer_add(l, 30, on_stop, l);
				loop_run(l);
			}
			if (st == 3)
				clamd_scan_end(s, never_result, NULL);
		} else if (st == 4) {
			/* 4: the answer came (before the end), then the end: the
			 * result is scheduled, not yet delivered */
			CHECK(!clamd_scan_feed(s, msg, 100, never_resume, NULL));
			loop_timer_add(l, 30, on_stop, l);
			loop_run(l);
			clamd_scan_end(s, never_result, NULL);
		}
		clamd_scan_free(&s);
		CHECK(s == NULL);
		loop_timer_add(l, 50, on_stop, l);
		loop_run(l);
		CHECK_INT(st, free_calls, 0);
		clamd_free(&c);
		peer_stop(&p);
		loop_free(&l);
		config_free(&cfg);
	}
	free(msg);
}

int main(void)
{
	snprintf(sock_path, sizeof sock_path, "/tmp/postern-test-clamd-%d.sock", (int)getpid());
	test_run("config", test_config);
	test_run("answers", test_answers);
	test_run("free_states", test_free_states);
	test_run("down", test_down);
	test_run("hang", test_hang);
	test_run("stall", test_stall);
	test_run("slow", test_slow);
	test_run("max_size", test_max_size);
	test_run("clamd_limit", test_clamd_limit);
	return test_done("test_filter_clamd");
}
