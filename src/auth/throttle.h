/* Login failure throttling per key (a client address, or an account and a
 * client network: see auth/login.h).
 * A key with max_failures failures in the last window_s seconds is blocked
 * until the oldest of them ages out. Memory is bounded: at most max_keys keys
 * are tracked (the stalest are forgotten first). Loop thread only. */
#ifndef POSTERN_AUTH_THROTTLE_H
#define POSTERN_AUTH_THROTTLE_H
#include <stdbool.h>
#include <stdint.h>

struct throttle;

struct throttle *throttle_new(unsigned max_failures, unsigned window_s, unsigned max_keys);
void throttle_free(struct throttle **tp);
/* now in seconds (monotonic). */
bool throttle_blocked(struct throttle *t, const char *key, uint64_t now);
/* The key's failures within the window ending at now (at most max_failures),
 * and in *last_r (may be NULL) the time of the newest; 0 and no *last_r when
 * there are none. */
unsigned throttle_count(struct throttle *t, const char *key, uint64_t now, uint64_t *last_r);
void throttle_fail(struct throttle *t, const char *key, uint64_t now);
/* Forgets one failure of the key: the one recorded at time when if the
 * ring still holds it, else none (it aged out or the key was evicted). */
void throttle_unfail(struct throttle *t, const char *key, uint64_t when);
/* A success forgets the key's failures. */
void throttle_clear(struct throttle *t, const char *key);

#endif
