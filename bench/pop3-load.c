/* POP3 load generator for bench/pop3-bench (built by it into its temp dir).
 *
 *   pop3-load retr PORT USER PASS
 *       one session: USER, PASS, STAT, then RETR 1..n one after the other;
 *       prints "n bytes seconds cpu_seconds" (bytes: the RETR responses)
 *   pop3-load sessions PORT TOTAL CONC PASS USER...
 *       TOTAL short sessions (greeting, USER, PASS, STAT, QUIT, close) over CONC
 *       concurrent connections on one epoll loop; connection k logs in as
 *       USER[k % nusers]; prints "sessions seconds cpu_seconds errors"
 *
 * Small and single-threaded so that the client, not the server, stays cheap.
 * Loopback only (127.0.0.1). Any -ERR or unexpected close is fatal. */
#define _GNU_SOURCE
#define LOAD_PROG "pop3-load"
#include "load-common.h"

#include <sys/epoll.h>

/* ---- retr: blocking, one session ---- */

static int getbyte(int fd)
{
	if (rpos == rlen)
		fill_from(fd);
	return (unsigned char)rbuf[rpos++];
}

/* one status line into line[]; dies on -ERR; returns its length + 2 */
static size_t status(int fd, char *line, size_t cap)
{
	size_t n = 0;
	int c, prev = 0;
	while ((c = getbyte(fd)) != '\n' || prev != '\r') {
		if (n + 1 < cap)
			line[n++] = (char)c;
		prev = c;
	}
	line[n ? n - 1 : 0] = 0;
	if (strncmp(line, "+OK", 3) != 0)
		die("server said: %s", line);
	return n + 1;
}

/* the body of a multi-line response up to and including CRLF.CRLF */
static size_t body(int fd)
{
	/* match state: 0 start of line, 1 saw '.', 2 saw ".\r", 3 inside a line, 4 saw '\r' */
	size_t n = 0;
	int st = 0;
	for (;;) {
		if (rpos == rlen)
			(void)getbyte(fd), rpos--;
		/* scan the buffer without per-byte calls */
		while (rpos < rlen) {
			char c = rbuf[rpos++];
			n++;
			switch (st) {
			case 0: st = c == '.' ? 1 : c == '\r' ? 4 : 3; break;
			case 1: st = c == '\r' ? 2 : 3; break;
			case 2: if (c == '\n') return n; st = 3; break;
			case 3: if (c == '\r') st = 4; break;
			case 4: st = c == '\n' ? 0 : c == '\r' ? 4 : 3; break;
			}
		}
	}
}

static int do_retr(int port, const char *user, const char *pass)
{
	char line[512], cmd[600];
	int fd = dial(port, 0);
	int n;
	status(fd, line, sizeof(line));
	snprintf(cmd, sizeof(cmd), "USER %s\r\n", user);
	send_all(fd, cmd, strlen(cmd));
	status(fd, line, sizeof(line));
	snprintf(cmd, sizeof(cmd), "PASS %s\r\n", pass);
	send_all(fd, cmd, strlen(cmd));
	status(fd, line, sizeof(line));
	send_all(fd, "STAT\r\n", 6);
	status(fd, line, sizeof(line));
	n = atoi(line + 4);
	double t = now(), c = cpu();
	unsigned long long bytes = 0;
	for (int i = 1; i <= n; i++) {
		int len = snprintf(cmd, sizeof(cmd), "RETR %d\r\n", i);
		send_all(fd, cmd, (size_t)len);
		bytes += status(fd, line, sizeof(line));
		bytes += body(fd);
	}
	double dt = now() - t, dc = cpu() - c;
	send_all(fd, "QUIT\r\n", 6);
	status(fd, line, sizeof(line));
	close(fd);
	printf("%d %llu %.6f %.6f\n", n, bytes, dt, dc);
	return 0;
}

/* ---- sessions: epoll, CONC connections ---- */

enum { S_GREET, S_USER, S_PASS, S_STAT, S_QUIT };

struct conn {
	int fd, state;
	const char *user;
	size_t len;
	char buf[512];
};

static const char *pass_g;

static void start(struct conn *k, int ep, int port)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
	k->fd = dial(port, 1);
	k->state = S_GREET;
	k->len = 0;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

/* returns 1 when the session is over */
static int on_line(struct conn *k, const char *line)
{
	char cmd[600];
	if (strncmp(line, "+OK", 3) != 0)
		die("state %d: server said: %s", k->state, line);
	switch (k->state) {
	case S_GREET: snprintf(cmd, sizeof(cmd), "USER %s\r\n", k->user); break;
	case S_USER: snprintf(cmd, sizeof(cmd), "PASS %s\r\n", pass_g); break;
	case S_PASS: snprintf(cmd, sizeof(cmd), "STAT\r\n"); break;
	case S_STAT: snprintf(cmd, sizeof(cmd), "QUIT\r\n"); break;
	default: return 1;
	}
	k->state++;
	send_all(k->fd, cmd, strlen(cmd)); /* a few bytes: the socket buffer takes them */
	return 0;
}

static int do_sessions(int port, long total, int conc, char **users, int nusers)
{
	int ep = epoll_create1(0);
	struct conn *ks = calloc((size_t)conc, sizeof(*ks));
	long started = 0, done = 0;
	struct epoll_event evs[256];
	double t = now(), c = cpu();
	for (int i = 0; i < conc && started < total; i++, started++) {
		ks[i].user = users[i % nusers];
		start(&ks[i], ep, port);
	}
	while (done < total) {
		int n = epoll_wait(ep, evs, 256, 60000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("epoll_wait: %s", n == 0 ? "60 s without progress" : strerror(errno));
		for (int e = 0; e < n; e++) {
			struct conn *k = evs[e].data.ptr;
			ssize_t r = read(k->fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0)
				die("state %d: connection closed by the server", k->state);
			k->len += (size_t)r;
			char *nl;
			while ((nl = memchr(k->buf, '\n', k->len)) != NULL) {
				*nl = 0;
				size_t used = (size_t)(nl - k->buf) + 1;
				int over = on_line(k, k->buf);
				memmove(k->buf, nl + 1, k->len - used);
				k->len -= used;
				if (over) {
					close(k->fd); /* also leaves the epoll set */
					done++;
					if (started < total) {
						started++;
						start(k, ep, port);
					}
					break;
				}
			}
			if (k->len == sizeof(k->buf) - 1)
				die("line too long");
		}
	}
	double dt = now() - t, dc = cpu() - c;
	printf("%ld %.6f %.6f 0\n", total, dt, dc);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "retr") == 0)
		return do_retr(atoi(argv[2]), argv[3], argv[4]);
	if (argc >= 7 && strcmp(argv[1], "sessions") == 0) {
		pass_g = argv[5];
		return do_sessions(atoi(argv[2]), atol(argv[3]), atoi(argv[4]), argv + 6, argc - 6);
	}
	fprintf(stderr, "usage: pop3-load retr PORT USER PASS\n"
			"       pop3-load sessions PORT TOTAL CONC PASS USER...\n");
	return 2;
}
