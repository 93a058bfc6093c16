/* The event loop: one thread owns all sockets (epoll), timers, and completions
 * posted from other threads. Nothing in a callback may block.
 * There are no globals: several loops may exist (one per core, later). */
#ifndef POSTERN_CORE_LOOP_H
#define POSTERN_CORE_LOOP_H
#include <stdint.h>

#define LOOP_READ 0x1u
#define LOOP_WRITE 0x2u
#define LOOP_ERROR 0x4u /* reported to the callback, never requested */

struct loop;
struct timer;

typedef void loop_io_cb(void *arg, uint32_t events);
typedef void loop_cb(void *arg);

struct loop *loop_new(void);
void loop_free(struct loop **lp);

/* Registers fd (which must be non-blocking) for events (LOOP_READ|LOOP_WRITE).
 * Returns 0 or -1 with errno. */
int loop_add(struct loop *l, int fd, uint32_t events, loop_io_cb *cb, void *arg);
/* Changes the events watched for fd (no system call if they are the same). */
int loop_mod(struct loop *l, int fd, uint32_t events);
/* Hands a watched fd to another callback, watched for events, without
 * leaving epoll (an fd kept between users, as a clamd session idle and then
 * scanning, costs no epoll_ctl pair per hand-over). An event of this round
 * not yet delivered for fd goes to the new callback. 0, or -1 with errno
 * (ENOENT: fd is not watched). */
int loop_rebind(struct loop *l, int fd, uint32_t events, loop_io_cb *cb, void *arg);
/* Stops watching fd (does not close it). Safe to call from inside fd's callback:
 * no further callback for fd is made, even if events are pending in this round. */
void loop_del(struct loop *l, int fd);

/* One-shot timer after ms milliseconds. The returned handle is valid until the
 * timer fires (then it is freed by the loop before cb runs) or is cancelled. */
struct timer *loop_timer_add(struct loop *l, uint64_t ms, loop_cb *cb, void *arg);
/* Cancels and frees *tp if not NULL; sets *tp = NULL. */
void loop_timer_cancel(struct loop *l, struct timer **tp);

/* Thread-safe: runs cb(arg) on the loop thread soon. The only loop function
 * that other threads may call. */
void loop_post(struct loop *l, loop_cb *cb, void *arg);

/* Monotonic milliseconds, cached per loop iteration. */
uint64_t loop_now(struct loop *l);

/* Runs until loop_stop(). */
void loop_run(struct loop *l);
/* May be called from a callback or (thread-safely) from a signal-handling thread. */
void loop_stop(struct loop *l);

#endif
