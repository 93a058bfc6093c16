/* What the load generators bench/pop3-load.c, bench/imap-load.c and
 * bench/smtp-load.c share: fatal errors, clocks and (pop3-load and imap-load
 * only) a loopback dial, a blocking write of everything and one read buffer
 * for the blocking (one-session) modes.
 *
 * Header only (every function static; those smtp-load.c does not use are
 * marked unused), so the benchmark scripts keep building each generator from
 * its one .c file:
 *   cc -O2 -Wall -o pop3-load bench/pop3-load.c
 * Define LOAD_PROG (the program's name for messages) before including it. */
#ifndef BENCH_LOAD_COMMON_H
#define BENCH_LOAD_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef LOAD_PROG
#error "define LOAD_PROG before including load-common.h"
#endif

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, LOAD_PROG ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* wall clock, seconds */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* this process's CPU time (user + system), seconds */
static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* a TCP connection to 127.0.0.1:port with TCP_NODELAY; nonblock: connect in
 * progress (EINPROGRESS) is fine */
__attribute__((unused)) static int dial(int port, int nonblock)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		die("connect: %s", strerror(errno));
	return fd;
}

/* all n bytes or die (a few command bytes on a non-blocking socket fit its
 * send buffer) */
__attribute__((unused)) static void send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write: %s", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

/* ---- the blocking modes' read buffer: rbuf[rpos..rlen) is unread ---- */

static char rbuf[1 << 18];
static size_t rlen, rpos;

/* refills rbuf from fd (blocking); dies when the server closed */
__attribute__((unused)) static void fill_from(int fd)
{
	ssize_t r;
	do
		r = read(fd, rbuf, sizeof(rbuf));
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		die("server closed the connection");
	rlen = (size_t)r;
	rpos = 0;
}

#endif
