/* NOOP latency probe for bench/loop-stall (built by it into its temp dir).
 *
 *   loop-stall-ping PORT SECONDS INTERVAL_US [imap USER PASS]
 *
 * With "imap" (bench/bigbox): an IMAP session instead, LOGIN USER PASS and
 * then "p NOOP" in the authenticated state (no mailbox selected, so no
 * untagged data of other sessions' changes), its tagged reply timed.
 *
 * One SMTP session on 127.0.0.1:PORT: greeting, EHLO, then for SECONDS (or
 * until SIGTERM) a NOOP,
 * its reply, INTERVAL_US of sleep, again. At the end prints one line per NOOP:
 * "send_ns latency_ns" (CLOCK_MONOTONIC, the clock of Python's
 * time.monotonic_ns(), so the driver can tell which phase a sample fell in).
 * C, blocking, TCP_NODELAY, samples kept in memory: the probe itself adds a
 * few microseconds, far below the stalls it is there to see. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static char rbuf[8192];
static size_t rlen;
static int imap;

/* IMAP: reads lines up to the one tagged "p " (or the "* OK" greeting). */
static void reply_imap(int fd, int greeting)
{
	for (;;) {
		char *lf;
		while ((lf = memchr(rbuf, '\n', rlen)) != NULL) {
			size_t n = (size_t)(lf - rbuf) + 1;
			int last = greeting ? n >= 4 && memcmp(rbuf, "* OK", 4) == 0
			                    : n >= 2 && memcmp(rbuf, "p ", 2) == 0;
			if (last && !greeting && (n < 5 || memcmp(rbuf, "p OK", 4) != 0)) {
				fprintf(stderr, "loop-stall-ping: %.*s", (int)n, rbuf);
				exit(1);
			}
			memmove(rbuf, rbuf + n, rlen - n);
			rlen -= n;
			if (last)
				return;
		}
		if (rlen == sizeof rbuf)
			rlen = 0; /* a long untagged line: not ours */
		ssize_t r = read(fd, rbuf + rlen, sizeof rbuf - rlen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "loop-stall-ping: connection closed\n");
			exit(1);
		}
		rlen += (size_t)r;
	}
}

/* Reads one reply (the last line has a space after the code). */
static void reply(int fd)
{
	if (imap) {
		reply_imap(fd, 0);
		return;
	}
	for (;;) {
		char *lf;
		while ((lf = memchr(rbuf, '\n', rlen)) != NULL) {
			size_t n = (size_t)(lf - rbuf) + 1;
			int last = n >= 4 && rbuf[3] == ' ';
			memmove(rbuf, rbuf + n, rlen - n);
			rlen -= n;
			if (last)
				return;
		}
		ssize_t r = read(fd, rbuf + rlen, sizeof rbuf - rlen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "loop-stall-ping: connection closed\n");
			exit(1);
		}
		rlen += (size_t)r;
	}
}

static void say(int fd, const char *s)
{
	size_t n = strlen(s);
	ssize_t w;
	while ((w = write(fd, s, n)) < 0 && errno == EINTR)
		;
	if (w != (ssize_t)n) {
		perror("loop-stall-ping: write");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4 && !(argc == 7 && strcmp(argv[4], "imap") == 0)) {
		fprintf(stderr, "usage: loop-stall-ping PORT SECONDS INTERVAL_US [imap USER PASS]\n");
		return 2;
	}
	imap = argc == 7;
	int port = atoi(argv[1]);
	double seconds = atof(argv[2]);
	long interval_us = atol(argv[3]);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("loop-stall-ping: connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (imap) {
		char login[1024];
		reply_imap(fd, 1);
		snprintf(login, sizeof login, "p LOGIN \"%s\" \"%s\"\r\n", argv[5], argv[6]);
		say(fd, login);
		reply(fd);
	} else {
		reply(fd);
		say(fd, "EHLO ping.example.test\r\n");
		reply(fd);
	}
	size_t cap = 1 << 16, n = 0;
	uint64_t *v = malloc(cap * 2 * sizeof *v);
	uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
	struct timespec gap = {.tv_sec = interval_us / 1000000, .tv_nsec = (interval_us % 1000000) * 1000};
	struct sigaction act = {.sa_handler = on_term};
	sigaction(SIGTERM, &act, NULL);
	fprintf(stderr, "loop-stall-ping: ready\n");
	while (!stop && now_ns() < end) {
		uint64_t t0 = now_ns();
		say(fd, imap ? "p NOOP\r\n" : "NOOP\r\n");
		reply(fd);
		uint64_t t1 = now_ns();
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * 2 * sizeof *v);
		}
		v[2 * n] = t0;
		v[2 * n + 1] = t1 - t0;
		n++;
		if (interval_us > 0)
			nanosleep(&gap, NULL);
	}
	say(fd, imap ? "p LOGOUT\r\n" : "QUIT\r\n");
	for (size_t i = 0; i < n; i++)
		printf("%llu %llu\n", (unsigned long long)v[2 * i], (unsigned long long)v[2 * i + 1]);
	return 0;
}
