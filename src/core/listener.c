/* Listening sockets. A wildcard address (":port", "*:port") opens two
 * sockets, 0.0.0.0 and [::] with IPV6_V6ONLY, so behaviour does not depend on
 * the net.ipv6.bindv6only sysctl; the IPv6 one is optional (hosts without
 * IPv6 still start). */
#include "core/listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define LISTENER_BACKLOG 1024
#define LISTENER_ACCEPT_BATCH 64 /* per wake, so one busy port cannot starve the loop */
#define LISTENER_EMFILE_PAUSE_MS 250
#define LISTENER_MAX_FDS 2

struct listener {
	struct loop *l;
	listener_accept_cb *cb;
	void *arg;
	int fds[LISTENER_MAX_FDS];
	int nfds;
	int port;
	char *name;
	struct timer *pause_timer;
	bool in_accept;  /* inside cb: listener_close must defer the free */
	bool close_requested;
};

/* Splits addr into host (NULL = any) and port. Returns 0 or -1. */
static int listener_parse(const char *addr, char **host_r, char **port_r)
{
	const char *colon;
	*host_r = NULL;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		*host_r = xstrndup(addr + 1, (size_t)(end - addr - 1));
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return -1;
		/* An unbracketed IPv6 literal is ambiguous: reject it. */
		if (memchr(addr, ':', (size_t)(colon - addr)))
			return -1;
		size_t hlen = (size_t)(colon - addr);
		if (hlen > 0 && !(hlen == 1 && addr[0] == '*'))
			*host_r = xstrndup(addr, hlen);
	}
	const char *port = colon + 1;
	char *end;
	long v = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || v < 0 || v > 65535) {
		x_free(host_r);
		return -1;
	}
	*port_r = xstrdup(port);
	return 0;
}

static int listener_bind_one(const struct addrinfo *ai, int port, char **err_r)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol);
	if (fd < 0) {
		*err_r = xasprintf("socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);

	struct sockaddr_storage ss;
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (port >= 0) { /* second wildcard socket: same port as the first */
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
		else
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	}
	if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) < 0 ||
	    listen(fd, LISTENER_BACKLOG) < 0) {
		*err_r = xasprintf("bind/listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int listener_fd_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void listener_set_events(struct listener *ls, uint32_t events)
{
	for (int i = 0; i < ls->nfds; i++)
		loop_mod(ls->l, ls->fds[i], events);
}

static void listener_unpause(void *arg)
{
	struct listener *ls = arg;
	ls->pause_timer = NULL;
	listener_set_events(ls, LOOP_READ);
}

static void listener_destroy(struct listener *ls)
{
	loop_timer_cancel(ls->l, &ls->pause_timer);
	for (int i = 0; i < ls->nfds; i++) {
		loop_del(ls->l, ls->fds[i]);
		close(ls->fds[i]);
	}
	free(ls->name);
	free(ls);
}

/* Out of descriptors: the pending connection stays in the backlog and keeps
 * the socket readable, so stop watching for a moment instead of spinning. */
static void listener_pause(struct listener *ls, int err)
{
	if (ls->pause_timer)
		return;
	log_warn("listener %s: accept: %s; pausing %d ms", ls->name, strerror(err),
		 LISTENER_EMFILE_PAUSE_MS);
	listener_set_events(ls, 0);
	ls->pause_timer = loop_timer_add(ls->l, LISTENER_EMFILE_PAUSE_MS, listener_unpause, ls);
}

static void listener_on_io(void *arg, uint32_t events)
{
	struct listener *ls = arg;
	/* Both fds share this callback; trying accept on each is cheaper than
	 * a per-fd registration struct (EAGAIN on the idle one). */
	ls->in_accept = true;
	for (int i = 0; i < ls->nfds && !ls->close_requested; i++) {
		int lfd = ls->fds[i];
		for (int n = 0; n < LISTENER_ACCEPT_BATCH && !ls->close_requested; n++) {
			int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0) {
				/* Replies leave as soon as they are written (a reply
				 * written in several pieces, such as an IMAP
				 * response after an async step, must not wait for the
				 * client's delayed ACK: Nagle's algorithm would hold
				 * the later pieces for about 40 ms). Unix sockets
				 * refuse it, harmlessly. */
				int one = 1;
				(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				ls->cb(ls->arg, fd);
				continue;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				listener_pause(ls, errno);
				break;
			}
			/* ECONNABORTED, EPROTO, network errors: that client's problem. */
			log_debug("listener %s: accept: %s", ls->name, strerror(errno));
		}
	}
	ls->in_accept = false;
	if (ls->close_requested)
		listener_destroy(ls);
}

struct listener *listener_open(struct loop *l, const char *addr, listener_accept_cb *cb,
			       void *arg, char **err_r)
{
	char *host, *port;
	*err_r = NULL;
	if (listener_parse(addr, &host, &port) < 0) {
		*err_r = xasprintf("listener %s: want host:port, [v6]:port or :port", addr);
		return NULL;
	}
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(host, port, &hints, &res);
	free(host);
	free(port);
	if (gai != 0) {
		*err_r = xasprintf("listener %s: %s", addr, gai_strerror(gai));
		return NULL;
	}

	struct listener *ls = xcalloc(1, sizeof *ls);
	ls->l = l;
	ls->cb = cb;
	ls->arg = arg;
	ls->name = xstrdup(addr);
	ls->port = -1;
	/* A name may resolve to several addresses; a wildcard to 0.0.0.0 and ::.
	 * IPv4 first so an IPv4-only host binds the same port either way. */
	char *first_err = NULL;
	for (int pass = 0; pass < 2; pass++) {
		for (struct addrinfo *ai = res; ai && ls->nfds < LISTENER_MAX_FDS; ai = ai->ai_next) {
			if ((pass == 0) != (ai->ai_family == AF_INET))
				continue;
			char *err = NULL;
			int fd = listener_bind_one(ai, ls->port, &err);
			if (fd < 0) {
				if (first_err == NULL)
					first_err = err;
				else
					free(err);
				continue;
			}
			if (ls->port < 0)
				ls->port = listener_fd_port(fd);
			ls->fds[ls->nfds++] = fd;
		}
	}
	freeaddrinfo(res);
	if (ls->nfds == 0) {
		*err_r = xasprintf("listener %s: %s", addr, first_err ? first_err : "no address");
		free(first_err);
		free(ls->name);
		free(ls);
		return NULL;
	}
	if (first_err)
		log_info("listener %s: one address family failed: %s", addr, first_err);
	free(first_err);
	for (int i = 0; i < ls->nfds; i++) {
		if (loop_add(l, ls->fds[i], LOOP_READ, listener_on_io, ls) < 0) {
			*err_r = xasprintf("listener %s: epoll: %s", addr, strerror(errno));
			for (int j = 0; j < ls->nfds; j++) {
				if (j < i)
					loop_del(l, ls->fds[j]);
				close(ls->fds[j]);
			}
			free(ls->name);
			free(ls);
			return NULL;
		}
	}
	return ls;
}

void listener_close(struct listener **lp)
{
	struct listener *ls = *lp;
	if (ls == NULL)
		return;
	*lp = NULL;
	if (ls->in_accept) {
		ls->close_requested = true;
		return;
	}
	listener_destroy(ls);
}

int listener_port(const struct listener *ls)
{
	return ls->port;
}
