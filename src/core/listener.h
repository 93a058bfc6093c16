/* Listening sockets on the loop. */
#ifndef POSTERN_CORE_LISTENER_H
#define POSTERN_CORE_LISTENER_H
#include "core/loop.h"

struct listener;

/* Called on the loop for each accepted socket (already non-blocking, CLOEXEC);
 * the callee owns fd. */
typedef void listener_accept_cb(void *arg, int fd);

/* addr is "host:port", "[v6]:port" or ":port"/"*:port" (all addresses).
 * Binds with SO_REUSEADDR, listens with a large backlog.
 * Returns NULL with *err_r set on failure. */
struct listener *listener_open(struct loop *l, const char *addr, listener_accept_cb *cb,
			       void *arg, char **err_r);
void listener_close(struct listener **lp);
/* Actual port (useful with port 0). */
int listener_port(const struct listener *ls);

#endif
