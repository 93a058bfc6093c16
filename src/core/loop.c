/* Event loop: level-triggered epoll, a binary min-heap of timers, and an
 * eventfd-woken FIFO of callbacks posted from other threads.
 *
 * Level-triggered is deliberate: a callback that does not drain its fd (a
 * paused connection, an accept burst cap) is simply called again, so no
 * caller has to remember to re-arm anything. */
#include "core/loop.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define LOOP_MAX_EVENTS 256

/* One per watched fd. epoll carries a pointer to it, so loop_del can mark it
 * dead and events already returned for it in this round are skipped; dead
 * registrations are freed once the round is over. */
struct loop_reg {
	int fd;
	bool dead;
	uint32_t events; /* LOOP_* watched, as given */
	loop_io_cb *cb;
	void *arg;
	struct loop_reg *next_dead;
};

struct timer {
	uint64_t when;
	uint64_t seq; /* ties break in insertion order */
	size_t idx;   /* position in the heap, for O(log n) cancel */
	loop_cb *cb;
	void *arg;
};

struct loop_post_item {
	loop_cb *cb;
	void *arg;
	struct loop_post_item *next;
};

struct loop {
	int epfd;
	int evfd;
	atomic_bool stop;
	uint64_t now;

	struct loop_reg **regs; /* indexed by fd */
	size_t nregs;
	struct loop_reg *dead;

	struct timer **heap;
	size_t nheap, capheap;
	uint64_t timer_seq;

	pthread_mutex_t post_mu;
	struct loop_post_item *post_head, *post_tail;
	bool post_signalled; /* an eventfd write is outstanding: skip redundant ones */

	uint64_t slow_us; /* log callbacks holding the loop this long or longer, in us (0: off) */
};

/* ---- slow steps ----
 * A measuring aid (POSTERN_LOOP_SLOW_MS=N in the environment; off unless
 * set): every callback on the loop thread is timed, and one that held the
 * loop N ms or more is logged with its CPU time (the thread's own clock:
 * far below the wall time, it waited on a lock or was not scheduled) and
 * its offset in its binary, for `addr2line -f -e postern OFFSET`. Off,
 * nothing is measured. */
static uint64_t clock_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void slow_check(struct loop *l, const uint64_t t0[2], const char *kind, void (*fn)(void))
{
	uint64_t wall = clock_us(CLOCK_MONOTONIC) - t0[0];
	uint64_t cpu = clock_us(CLOCK_THREAD_CPUTIME_ID) - t0[1];
	Dl_info info;
	uintptr_t off = (uintptr_t)fn;
	const char *bin = "?";

	if (wall < l->slow_us)
		return;
	if (dladdr((void *)fn, &info) != 0 && info.dli_fbase != NULL) {
		off -= (uintptr_t)info.dli_fbase;
		bin = info.dli_fname != NULL ? info.dli_fname : "?";
	}
	log_warn("loop: slow step: %" PRIu64 ".%03" PRIu64 " ms (CPU %" PRIu64 ".%03" PRIu64
		 " ms) in a %s callback at %s+0x%" PRIxPTR,
		 wall / 1000, wall % 1000, cpu / 1000, cpu % 1000, kind, bin, off);
}

/* Calls `call` (a callback fn), timed when slow steps are logged; fn is
 * taken before the call, which may change it (an I/O callback that
 * registers another). */
#define LOOP_CALL(l, kind, fn, call)                                                     \
	do {                                                                             \
		uint64_t t0_[2] = {0, 0};                                                \
		void (*fn_)(void) = (void (*)(void))(fn);                                \
		if ((l)->slow_us != 0) {                                                 \
			t0_[0] = clock_us(CLOCK_MONOTONIC);                              \
			t0_[1] = clock_us(CLOCK_THREAD_CPUTIME_ID);                      \
		}                                                                        \
		call;                                                                    \
		if ((l)->slow_us != 0)                                                   \
			slow_check((l), t0_, (kind), fn_);                                \
	} while (0)

static uint64_t loop_clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void loop_wake(struct loop *l)
{
	uint64_t one = 1;
	/* EAGAIN only if the counter is saturated, which still wakes the loop. */
	(void)!write(l->evfd, &one, sizeof one);
}

/* ---- timer heap ---- */

static bool timer_before(const struct timer *a, const struct timer *b)
{
	return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(struct loop *l, size_t i, struct timer *t)
{
	l->heap[i] = t;
	t->idx = i;
}

static void heap_up(struct loop *l, size_t i)
{
	struct timer *t = l->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!timer_before(t, l->heap[parent]))
			break;
		heap_set(l, i, l->heap[parent]);
		i = parent;
	}
	heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
	struct timer *t = l->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= l->nheap)
			break;
		if (child + 1 < l->nheap && timer_before(l->heap[child + 1], l->heap[child]))
			child++;
		if (!timer_before(l->heap[child], t))
			break;
		heap_set(l, i, l->heap[child]);
		i = child;
	}
	heap_set(l, i, t);
}

static void heap_remove(struct loop *l, struct timer *t)
{
	size_t i = t->idx;
	x_assert(i < l->nheap && l->heap[i] == t);
	struct timer *last = l->heap[--l->nheap];
	if (last == t)
		return;
	heap_set(l, i, last);
	/* The moved element may belong above or below its new slot. */
	if (i > 0 && timer_before(last, l->heap[(i - 1) / 2]))
		heap_up(l, i);
	else
		heap_down(l, i);
}

struct timer *loop_timer_add(struct loop *l, uint64_t ms, loop_cb *cb, void *arg)
{
	struct timer *t = xmalloc(sizeof *t);
	t->when = l->now + ms;
	t->seq = l->timer_seq++;
	t->cb = cb;
	t->arg = arg;
	if (l->nheap == l->capheap) {
		l->capheap = l->capheap ? l->capheap * 2 : 64;
		l->heap = xrealloc(l->heap, l->capheap * sizeof *l->heap);
	}
	heap_set(l, l->nheap++, t);
	heap_up(l, t->idx);
	return t;
}

void loop_timer_cancel(struct loop *l, struct timer **tp)
{
	if (*tp == NULL)
		return;
	heap_remove(l, *tp);
	x_free(tp);
}

/* Runs the timers due now. Timers added by these callbacks wait for the next
 * round even if due at once, so a 0 ms timer that re-adds itself cannot
 * starve I/O. */
static void loop_run_timers(struct loop *l)
{
	uint64_t seq_limit = l->timer_seq;
	while (l->nheap > 0) {
		struct timer *t = l->heap[0];
		if (t->when > l->now || t->seq >= seq_limit)
			break;
		heap_remove(l, t);
		loop_cb *cb = t->cb;
		void *arg = t->arg;
		free(t); /* the handle is stale before cb runs, as loop.h says */
		LOOP_CALL(l, "timer", cb, cb(arg));
		if (atomic_load(&l->stop))
			break;
	}
}

static int loop_timeout_ms(struct loop *l)
{
	if (l->nheap == 0)
		return -1;
	uint64_t now = loop_clock_ms();
	uint64_t when = l->heap[0]->when;
	if (when <= now)
		return 0;
	uint64_t d = when - now;
	return d > 60000 ? 60000 : (int)d;
}

/* ---- posted callbacks ---- */

void loop_post(struct loop *l, loop_cb *cb, void *arg)
{
	struct loop_post_item *it = xmalloc(sizeof *it);
	it->cb = cb;
	it->arg = arg;
	it->next = NULL;
	pthread_mutex_lock(&l->post_mu);
	if (l->post_tail)
		l->post_tail->next = it;
	else
		l->post_head = it;
	l->post_tail = it;
	bool signal = !l->post_signalled;
	l->post_signalled = true;
	pthread_mutex_unlock(&l->post_mu);
	if (signal)
		loop_wake(l);
}

static void loop_run_posted(struct loop *l)
{
	uint64_t v;
	(void)!read(l->evfd, &v, sizeof v);

	pthread_mutex_lock(&l->post_mu);
	struct loop_post_item *it = l->post_head;
	l->post_head = l->post_tail = NULL;
	l->post_signalled = false;
	pthread_mutex_unlock(&l->post_mu);

	while (it) {
		struct loop_post_item *next = it->next;
		LOOP_CALL(l, "posted", it->cb, it->cb(it->arg));
		free(it);
		it = next;
	}
}

/* ---- fds ---- */

static uint32_t loop_to_epoll(uint32_t events)
{
	uint32_t ev = 0;
	if (events & LOOP_READ)
		ev |= EPOLLIN;
	if (events & LOOP_WRITE)
		ev |= EPOLLOUT;
	return ev;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_io_cb *cb, void *arg)
{
	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	if ((size_t)fd >= l->nregs) {
		size_t n = l->nregs ? l->nregs : 64;
		while (n <= (size_t)fd)
			n *= 2;
		l->regs = xrealloc(l->regs, n * sizeof *l->regs);
		memset(l->regs + l->nregs, 0, (n - l->nregs) * sizeof *l->regs);
		l->nregs = n;
	}
	if (l->regs[fd]) {
		errno = EEXIST;
		return -1;
	}
	struct loop_reg *r = xcalloc(1, sizeof *r);
	r->fd = fd;
	r->cb = cb;
	r->arg = arg;
	r->events = events;
	struct epoll_event ev = {.events = loop_to_epoll(events), .data.ptr = r};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		free(r);
		errno = e;
		return -1;
	}
	l->regs[fd] = r;
	return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
	if (fd < 0 || (size_t)fd >= l->nregs || l->regs[fd] == NULL) {
		errno = ENOENT;
		return -1;
	}
	struct loop_reg *r = l->regs[fd];
	if (r->events == events)
		return 0;
	struct epoll_event ev = {.events = loop_to_epoll(events), .data.ptr = r};
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -1;
	r->events = events;
	return 0;
}

int loop_rebind(struct loop *l, int fd, uint32_t events, loop_io_cb *cb, void *arg)
{
	if (loop_mod(l, fd, events) < 0)
		return -1;
	l->regs[fd]->cb = cb;
	l->regs[fd]->arg = arg;
	return 0;
}

void loop_del(struct loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nregs || l->regs[fd] == NULL)
		return;
	struct loop_reg *r = l->regs[fd];
	l->regs[fd] = NULL;
	(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	r->dead = true;
	r->next_dead = l->dead;
	l->dead = r;
}

static void loop_free_dead(struct loop *l)
{
	while (l->dead) {
		struct loop_reg *r = l->dead;
		l->dead = r->next_dead;
		free(r);
	}
}

static void loop_dispatch(struct loop *l, struct epoll_event *evs, int n)
{
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL) {
			loop_run_posted(l);
			continue;
		}
		struct loop_reg *r = evs[i].data.ptr;
		if (r->dead)
			continue;
		uint32_t e = evs[i].events, events = 0;
		if (e & EPOLLIN)
			events |= LOOP_READ;
		if (e & EPOLLOUT)
			events |= LOOP_WRITE;
		if (e & (EPOLLERR | EPOLLHUP))
			events |= LOOP_ERROR;
		LOOP_CALL(l, "I/O", r->cb, r->cb(r->arg, events));
		if (atomic_load(&l->stop))
			break;
	}
}

/* ---- lifecycle ---- */

struct loop *loop_new(void)
{
	struct loop *l = xcalloc(1, sizeof *l);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		fatal("loop: epoll_create1: %s", strerror(errno));
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->evfd < 0)
		fatal("loop: eventfd: %s", strerror(errno));
	/* data.ptr == NULL marks the eventfd; it has no registration. */
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0)
		fatal("loop: epoll_ctl eventfd: %s", strerror(errno));
	pthread_mutex_init(&l->post_mu, NULL);
	atomic_init(&l->stop, false);
	l->now = loop_clock_ms();
	const char *slow = getenv("POSTERN_LOOP_SLOW_MS");
	if (slow != NULL && *slow != '\0') {
		/* milliseconds, fractions allowed ("0.001": every callback) */
		double ms = strtod(slow, NULL);
		if (ms > 0)
			l->slow_us = ms * 1000 >= 1 ? (uint64_t)(ms * 1000) : 1;
	}
	return l;
}

void loop_free(struct loop **lp)
{
	struct loop *l = *lp;
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->nheap; i++)
		free(l->heap[i]);
	free(l->heap);
	for (size_t i = 0; i < l->nregs; i++)
		free(l->regs[i]);
	free(l->regs);
	loop_free_dead(l);
	/* Posted callbacks that never ran are dropped (pool.h documents this). */
	struct loop_post_item *it = l->post_head;
	while (it) {
		struct loop_post_item *next = it->next;
		free(it);
		it = next;
	}
	pthread_mutex_destroy(&l->post_mu);
	close(l->evfd);
	close(l->epfd);
	x_free(lp);
}

uint64_t loop_now(struct loop *l)
{
	return l->now;
}

void loop_run(struct loop *l)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];
	while (!atomic_load(&l->stop)) {
		int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, loop_timeout_ms(l));
		if (n < 0 && errno != EINTR)
			fatal("loop: epoll_wait: %s", strerror(errno));
		l->now = loop_clock_ms();
		if (n > 0)
			loop_dispatch(l, evs, n);
		loop_free_dead(l);
		if (atomic_load(&l->stop))
			break;
		l->now = loop_clock_ms();
		loop_run_timers(l);
		loop_free_dead(l);
	}
	loop_free_dead(l);
	/* Cleared on the way out, not the way in, so a loop_stop() from another
	 * thread that lands before loop_run() starts is not lost. */
	atomic_store(&l->stop, false);
}

void loop_stop(struct loop *l)
{
	atomic_store(&l->stop, true);
	loop_wake(l);
}
