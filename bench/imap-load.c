/* IMAP load generator for bench/imap-bench (built by it into its temp dir).
 *
 *   imap-load fetch PORT USER PASS ITEMS
 *       one session: LOGIN, SELECT INBOX (timed), FETCH 1:* ITEMS (timed), LOGOUT;
 *       prints "select_s fetch_s nfetch bytes cpu_s"
 *       (bytes: the whole FETCH response on the wire, literals included)
 *   imap-load search PORT USER PASS CRITERIA
 *       one session: LOGIN, SELECT INBOX, SEARCH CRITERIA (timed), LOGOUT;
 *       prints "select_s search_s nhits cpu_s"
 *   imap-load idle PORT N USER PASS TLS WINDOW
 *       N connections on one epoll loop (at most WINDOW still being set up),
 *       each: [TLS handshake,] greeting, LOGIN, SELECT INBOX, IDLE, "+"; then
 *       prints "ready N seconds cpu_s" and holds them all until stdin reaches
 *       EOF, then exits (the kernel closes them). TLS=1: implicit TLS (no
 *       certificate check: the benchmark's self-signed one).
 *
 * Small and single-threaded so that the client, not the server, stays cheap.
 * Loopback only (127.0.0.1). A NO/BAD or an unexpected close is fatal. */
#define _GNU_SOURCE
#define LOAD_PROG "imap-load"
#include "load-common.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>

/* ---- one blocking session (fetch, search) ---- */

static int sfd;

static void fill(void)
{
	fill_from(sfd);
}

/* One logical response line (literals {n} / {n+} included, their bytes
 * skipped) into line[] (truncated to cap; only the start is looked at).
 * Returns its size on the wire. */
static size_t logical_line(char *line, size_t cap)
{
	size_t n = 0, wire = 0;
	for (;;) {
		/* one physical line */
		size_t start = n;
		int prev = 0;
		for (;;) {
			if (rpos == rlen)
				fill();
			char *nl = memchr(rbuf + rpos, '\n', rlen - rpos);
			size_t take = nl ? (size_t)(nl - (rbuf + rpos)) + 1 : rlen - rpos;
			for (size_t i = 0; i < take; i++)
				if (n + 1 < cap)
					line[n++] = rbuf[rpos + i];
			if (take)
				prev = rbuf[rpos + take - 1];
			rpos += take;
			wire += take;
			if (nl)
				break;
		}
		(void)prev;
		/* strip CRLF of what we kept */
		while (n > start && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			n--;
		line[n] = 0;
		/* a literal announcement at the end: {digits} or {digits+} */
		if (n > start && line[n - 1] == '}') {
			size_t i = n - 1;
			if (i > start && line[i - 1] == '+')
				i--;
			size_t d = i;
			while (d > start && line[d - 1] >= '0' && line[d - 1] <= '9')
				d--;
			if (d < i && d > start && line[d - 1] == '{') {
				unsigned long long lit = strtoull(line + d, NULL, 10);
				wire += lit;
				while (lit > 0) {
					if (rpos == rlen)
						fill();
					size_t take = rlen - rpos < lit ? rlen - rpos : (size_t)lit;
					rpos += take;
					lit -= take;
				}
				continue; /* the line goes on after the literal */
			}
		}
		return wire;
	}
}

static char line_g[8192];

/* sends "TAG CMD", reads to the tagged answer; counts untagged lines that
 * contain " FETCH " and the hits of "* SEARCH" */
static void command(const char *tag, const char *cmd, long *nfetch, long *nhits,
		    unsigned long long *bytes)
{
	char out[4096];
	int len = snprintf(out, sizeof(out), "%s %s\r\n", tag, cmd);
	size_t tl = strlen(tag);
	send_all(sfd, out, (size_t)len);
	for (;;) {
		size_t w = logical_line(line_g, sizeof(line_g));
		if (bytes)
			*bytes += w;
		if (strncmp(line_g, tag, tl) == 0 && line_g[tl] == ' ') {
			if (strncmp(line_g + tl + 1, "OK", 2) != 0)
				die("%s: server said: %s", cmd, line_g);
			return;
		}
		if (line_g[0] == '*' && nfetch && strstr(line_g, " FETCH "))
			(*nfetch)++;
		if (nhits && strncmp(line_g, "* SEARCH", 8) == 0) {
			for (char *p = line_g + 8; *p; p++)
				if (*p == ' ' && p[1] >= '0' && p[1] <= '9')
					(*nhits)++;
		}
	}
}

static void login(int port, const char *user, const char *pass)
{
	char cmd[1024];
	sfd = dial(port, 0);
	logical_line(line_g, sizeof(line_g));
	if (strncmp(line_g, "* OK", 4) != 0)
		die("greeting: %s", line_g);
	snprintf(cmd, sizeof(cmd), "LOGIN \"%s\" \"%s\"", user, pass);
	command("a", cmd, NULL, NULL, NULL);
}

static int do_fetch(int port, const char *user, const char *pass, const char *items)
{
	char cmd[1024];
	long nfetch = 0;
	unsigned long long bytes = 0;
	login(port, user, pass);
	double c = cpu(), t = now();
	command("b", "SELECT INBOX", NULL, NULL, NULL);
	double ts = now() - t;
	snprintf(cmd, sizeof(cmd), "FETCH 1:* (%s)", items);
	t = now();
	command("c", cmd, &nfetch, NULL, &bytes);
	double tf = now() - t, dc = cpu() - c;
	command("z", "LOGOUT", NULL, NULL, NULL);
	close(sfd);
	printf("%.6f %.6f %ld %llu %.6f\n", ts, tf, nfetch, bytes, dc);
	return 0;
}

static int do_search(int port, const char *user, const char *pass, const char *crit)
{
	char cmd[1024];
	long nhits = 0;
	login(port, user, pass);
	double c = cpu(), t = now();
	command("b", "SELECT INBOX", NULL, NULL, NULL);
	double ts = now() - t;
	snprintf(cmd, sizeof(cmd), "SEARCH %s", crit);
	t = now();
	command("c", cmd, NULL, &nhits, NULL);
	double tq = now() - t, dc = cpu() - c;
	command("z", "LOGOUT", NULL, NULL, NULL);
	close(sfd);
	printf("%.6f %.6f %ld %.6f\n", ts, tq, nhits, dc);
	return 0;
}

/* ---- idle: N connections on one epoll loop ---- */

enum { I_CONNECT, I_HANDSHAKE, I_GREET, I_LOGIN, I_SELECT, I_IDLE, I_IDLING };

struct iconn {
	int fd, state, skip;
	SSL *ssl;
	size_t len;
	char buf[1024];
};

static SSL_CTX *ctx;
static const char *user_g, *pass_g;
static int ep;

static void iset(struct iconn *k, unsigned ev)
{
	struct epoll_event e = {.events = ev, .data.ptr = k};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &e) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

static void isend(struct iconn *k, const char *s)
{
	size_t n = strlen(s);
	if (!k->ssl) {
		send_all(k->fd, s, n); /* a few bytes: the socket buffer takes them */
		return;
	}
	int w = SSL_write(k->ssl, s, (int)n);
	if (w != (int)n)
		die("SSL_write: %d (error %d)", w, SSL_get_error(k->ssl, w));
}

/* returns 1 when the connection reached IDLE */
static int ion_line(struct iconn *k, const char *l)
{
	char cmd[600];
	switch (k->state) {
	case I_GREET:
		if (strncmp(l, "* OK", 4) != 0)
			die("greeting: %s", l);
		snprintf(cmd, sizeof(cmd), "a LOGIN \"%s\" \"%s\"\r\n", user_g, pass_g);
		isend(k, cmd);
		k->state = I_LOGIN;
		return 0;
	case I_LOGIN:
	case I_SELECT:
		if (l[0] == '*')
			return 0;
		if (strncmp(l + 1, " OK", 3) != 0)
			die("state %d: server said: %s", k->state, l);
		isend(k, k->state == I_LOGIN ? "b SELECT INBOX\r\n" : "c IDLE\r\n");
		k->state++;
		return 0;
	case I_IDLE:
		if (l[0] == '*')
			return 0;
		if (l[0] != '+')
			die("IDLE: server said: %s", l);
		k->state = I_IDLING;
		return 1;
	default:
		return 0; /* untagged updates while idling */
	}
}

/* reads what is there; returns connections that reached IDLE (0 or 1) */
static int iread(struct iconn *k)
{
	int done = 0;
	for (;;) {
		int r;
		if (k->ssl) {
			r = SSL_read(k->ssl, k->buf + k->len, (int)(sizeof(k->buf) - 1 - k->len));
			if (r <= 0) {
				int e = SSL_get_error(k->ssl, r);
				if (e == SSL_ERROR_WANT_READ)
					return done;
				die("state %d: TLS read failed (%d)", k->state, e);
			}
		} else {
			r = (int)read(k->fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return done;
			if (r <= 0)
				die("state %d: connection closed by the server", k->state);
		}
		k->len += (size_t)r;
		char *nl;
		while ((nl = memchr(k->buf, '\n', k->len)) != NULL) {
			*nl = 0;
			size_t used = (size_t)(nl - k->buf) + 1;
			if (!k->skip)
				done += ion_line(k, k->buf);
			k->skip = 0;
			memmove(k->buf, nl + 1, k->len - used);
			k->len -= used;
		}
		if (k->len == sizeof(k->buf) - 1) {
			if (k->buf[0] != '*')
				die("state %d: line too long", k->state);
			k->len = 0; /* a long untagged line (FLAGS...): skip it */
			k->skip = 1;
		}
	}
}

static void istart(struct iconn *k, int port, int tls)
{
	struct epoll_event e = {.events = EPOLLOUT, .data.ptr = k};
	k->fd = dial(port, 1);
	k->state = I_CONNECT;
	k->len = 0;
	k->ssl = NULL;
	(void)tls;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &e) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

static int istep(struct iconn *k, int tls)
{
	if (k->state == I_CONNECT) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err)
			die("connect: %s", strerror(err));
		if (!tls) {
			k->state = I_GREET;
			iset(k, EPOLLIN);
			return iread(k);
		}
		k->ssl = SSL_new(ctx);
		if (!k->ssl)
			die("SSL_new");
		SSL_set_fd(k->ssl, k->fd);
		k->state = I_HANDSHAKE;
	}
	if (k->state == I_HANDSHAKE) {
		int r = SSL_connect(k->ssl);
		if (r != 1) {
			int e = SSL_get_error(k->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				iset(k, EPOLLIN);
			else if (e == SSL_ERROR_WANT_WRITE)
				iset(k, EPOLLOUT);
			else {
				ERR_print_errors_fp(stderr);
				die("TLS handshake failed (%d)", e);
			}
			return 0;
		}
		k->state = I_GREET;
		iset(k, EPOLLIN);
	}
	return iread(k);
}

static int do_idle(int port, int n, const char *user, const char *pass, int tls, int window)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = (rlim_t)n + 64;
		if (rl.rlim_max < rl.rlim_cur)
			rl.rlim_max = rl.rlim_cur;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			die("setrlimit NOFILE %d: %s", n + 64, strerror(errno));
	}
	user_g = user;
	pass_g = pass;
	if (tls) {
		ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	ep = epoll_create1(0);
	struct iconn *ks = calloc((size_t)n, sizeof(*ks));
	struct epoll_event evs[256];
	int started = 0, ready = 0;
	double t = now(), c = cpu();
	while (ready < n) {
		while (started < n && started - ready < window)
			istart(&ks[started++], port, tls);
		int m = epoll_wait(ep, evs, 256, 120000);
		if (m < 0 && errno == EINTR)
			continue;
		if (m <= 0)
			die("epoll_wait: %s (%d of %d idle)", m == 0 ? "120 s without progress" : strerror(errno),
			    ready, n);
		for (int e = 0; e < m; e++) {
			struct iconn *k = evs[e].data.ptr;
			if (k->state == I_IDLING) {
				iread(k);
				continue;
			}
			ready += istep(k, tls);
		}
	}
	double dt = now() - t, dc = cpu() - c;
	printf("ready %d %.6f %.6f\n", n, dt, dc);
	fflush(stdout);
	/* hold them, answering nothing, until the caller closes our stdin; keep
	 * draining what servers send meanwhile ("* OK Still here") */
	struct epoll_event se = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &se);
	for (;;) {
		int m = epoll_wait(ep, evs, 256, -1);
		if (m < 0 && errno == EINTR)
			continue;
		if (m < 0)
			die("epoll_wait: %s", strerror(errno));
		for (int e = 0; e < m; e++) {
			struct iconn *k = evs[e].data.ptr;
			if (!k) {
				char b[64];
				if (read(0, b, sizeof(b)) <= 0)
					return 0;
				continue;
			}
			iread(k);
		}
	}
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "fetch") == 0)
		return do_fetch(atoi(argv[2]), argv[3], argv[4], argv[5]);
	if (argc == 6 && strcmp(argv[1], "search") == 0)
		return do_search(atoi(argv[2]), argv[3], argv[4], argv[5]);
	if (argc == 8 && strcmp(argv[1], "idle") == 0)
		return do_idle(atoi(argv[2]), atoi(argv[3]), argv[4], argv[5], atoi(argv[6]),
			       atoi(argv[7]));
	fprintf(stderr, "usage: imap-load fetch PORT USER PASS ITEMS\n"
			"       imap-load search PORT USER PASS CRITERIA\n"
			"       imap-load idle PORT N USER PASS TLS WINDOW\n");
	return 2;
}
