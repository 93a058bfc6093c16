/* SMTP submission load generator for bench/relay-bench (built by it into its
 * temp dir).
 *
 *   smtp-load HOST PORT TOTAL SESSIONS SIZE FROM TO [USER PASS]
 *
 * SESSIONS threads, each with one connection kept for all its messages:
 * banner, EHLO, AUTH PLAIN when USER is given (smtp-source has no AUTH, and
 * postern relays only for authenticated submitters), then MAIL, RCPT, DATA,
 * the message (SIZE octets, CRLF lines of 78), "." one after the other until
 * TOTAL messages are accepted among them; then QUIT. Prints
 * "accepted seconds cpu_seconds". Any reply other than the expected one is
 * fatal (exit 1). Loopback or any IPv4 address.
 * MESSAGE_FILE=path (environment): send that file's bytes as every message
 * instead (CRLF lines, dot-stuffed already; SIZE is then ignored) — e.g. a
 * DKIM-signed message for bench/auth-bench.
 * MESSAGE_GEN=bigbox (environment): a different message each time, for
 * bench/bigbox (SIZE is then ignored): message i (0-based; MESSAGE_FIRST=K
 * adds K) of about 1 KB has Date: 2020-01-01 + i minutes, a sender of 1,000,
 * a thread of 4 (Message-ID <i@bigbox.test>; the 2nd..4th reply with
 * In-Reply-To/References to the ones before and "Re: " subjects; the
 * subject names one of 5,000 topics), and body words from a list of 64;
 * one message of 1,000 (i % 1000 == 500) has the word "zanzibar". */
#define _GNU_SOURCE
#include <pthread.h>

#define LOAD_PROG "smtp-load"
#include "load-common.h"

static const char *host, *mail_from, *rcpt_to, *user, *pass;
static int port, total, size;
static int next_msg; /* atomic */
static int accepted; /* atomic */
static char *message;
static size_t message_len;
static char *auth_line;
static int gen_bigbox, gen_first;

static const char *const words[64] = {
    "alpha",   "bravo",   "charlie", "delta",   "echo",    "foxtrot", "golf",    "hotel",
    "india",   "juliet",  "kilo",    "lima",    "mike",    "november", "oscar",  "papa",
    "quebec",  "romeo",   "sierra",  "tango",   "uniform", "victor",  "whiskey", "xray",
    "yankee",  "zulu",    "meeting", "report",  "budget",  "project", "server",  "release",
    "invoice", "schedule", "review", "draft",   "update",  "agenda",  "minutes", "contract",
    "travel",  "lunch",   "weekend", "holiday", "backup",  "network", "printer", "coffee",
    "garden",  "bicycle", "library", "museum",  "harbour", "bridge",  "river",   "mountain",
    "orange",  "purple",  "silver",  "golden",  "winter",  "summer",  "autumn",  "spring"};

/* Message i of MESSAGE_GEN=bigbox (see the header), dot-stuffing not needed
 * (no line starts with '.'); returns its length. */
static size_t gen_message(char *out, size_t cap, unsigned i)
{
	unsigned t = i / 4, p = i % 4, topic = (t * 2654435761u) % 5000;
	time_t when = (time_t)1577836800 + (time_t)i * 60;
	struct tm tm;
	char date[64];
	gmtime_r(&when, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	int n = snprintf(out, cap,
	                 "Date: %s\r\nFrom: \"User %u\" <user%u@example.org>\r\nTo: <%s>\r\n"
	                 "Subject: %s%s %s topic %u\r\nMessage-ID: <%u@bigbox.test>\r\n",
	                 date, i % 1000, i % 1000, rcpt_to, p ? "Re: " : "", words[topic % 64],
	                 words[(topic / 64) % 64], topic, i);
	if (p > 0) {
		n += snprintf(out + n, cap - (size_t)n, "In-Reply-To: <%u@bigbox.test>\r\nReferences:",
		              i - 1);
		for (unsigned k = t * 4; k < i; k++)
			n += snprintf(out + n, cap - (size_t)n, " <%u@bigbox.test>", k);
		n += snprintf(out + n, cap - (size_t)n, "\r\n");
	}
	n += snprintf(out + n, cap - (size_t)n, "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n");
	unsigned h = i * 2246822519u + 374761393u;
	int col = 0;
	for (int w = 0; w < 110; w++) {
		h ^= h >> 15;
		h *= 2654435761u;
		h ^= h >> 13;
		const char *word = (w == 50 && i % 1000 == 500) ? "zanzibar" : words[h % 64];
		n += snprintf(out + n, cap - (size_t)n, "%s%s", col ? " " : "", word);
		col += (int)strlen(word) + 1;
		if (col > 66) {
			n += snprintf(out + n, cap - (size_t)n, "\r\n");
			col = 0;
		}
	}
	n += snprintf(out + n, cap - (size_t)n, "%s.\r\n", col ? "" : "end");
	return (size_t)n;
}

struct conn {
	int fd;
	char buf[8192];
	size_t len;
};

static void conn_send_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("send: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Reads one whole (possibly multi-line) reply; returns its code. */
static int reply(struct conn *c, const char *what)
{
	for (;;) {
		char *nl;
		while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
			size_t ll = (size_t)(nl - c->buf) + 1;
			int code = ll >= 4 ? atoi(c->buf) : -1;
			char sep = ll >= 4 ? c->buf[3] : ' ';
			if (code < 100 || code > 599)
				die("%s: malformed reply %.*s", what, (int)ll, c->buf);
			if (sep == '-') {
				memmove(c->buf, c->buf + ll, c->len - ll);
				c->len -= ll;
				continue;
			}
			memmove(c->buf, c->buf + ll, c->len - ll);
			c->len -= ll;
			return code;
		}
		if (c->len == sizeof c->buf)
			die("%s: reply line too long", what);
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("%s: connection closed (%s)", what, r < 0 ? strerror(errno) : "eof");
		c->len += (size_t)r;
	}
}

static void expect(struct conn *c, const char *cmd, int want)
{
	if (cmd != NULL)
		conn_send_all(c, cmd, strlen(cmd));
	int code = reply(c, cmd ? cmd : "banner");
	if (code != want)
		die("%s: got %d, want %d", cmd ? cmd : "banner", code, want);
}

static void *session(void *arg)
{
	(void)arg;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("bad host %s", host);
	struct conn *c = calloc(1, sizeof *c);
	int one = 1;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("connect %s:%d: %s", host, port, strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	expect(c, NULL, 220);
	expect(c, "EHLO load.bench.test\r\n", 250);
	if (auth_line != NULL)
		expect(c, auth_line, 235);
	char cmd[1024];
	char *gen = gen_bigbox ? malloc(8192) : NULL;
	for (;;) {
		int n = __atomic_fetch_add(&next_msg, 1, __ATOMIC_RELAXED);
		if (n >= total)
			break;
		snprintf(cmd, sizeof cmd, "MAIL FROM:<%s>\r\n", mail_from);
		expect(c, cmd, 250);
		snprintf(cmd, sizeof cmd, "RCPT TO:<%s>\r\n", rcpt_to);
		expect(c, cmd, 250);
		expect(c, "DATA\r\n", 354);
		if (gen != NULL) {
			size_t gl = gen_message(gen, 8192, (unsigned)(gen_first + n));
			conn_send_all(c, gen, gl);
		} else {
			conn_send_all(c, message, message_len);
		}
		expect(c, ".\r\n", 250);
		__atomic_fetch_add(&accepted, 1, __ATOMIC_RELAXED);
	}
	expect(c, "QUIT\r\n", 221);
	close(c->fd);
	free(gen);
	free(c);
	return NULL;
}

static char *b64(const unsigned char *in, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v =
		    in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
		*o++ = t[v >> 18 & 63];
		*o++ = t[v >> 12 & 63];
		*o++ = i + 1 < n ? t[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? t[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

int main(int argc, char **argv)
{
	if (argc != 8 && argc != 10)
		die("usage: smtp-load HOST PORT TOTAL SESSIONS SIZE FROM TO [USER PASS]");
	host = argv[1];
	port = atoi(argv[2]);
	total = atoi(argv[3]);
	int sessions = atoi(argv[4]);
	size = atoi(argv[5]);
	mail_from = argv[6];
	rcpt_to = argv[7];
	if (argc == 10) {
		user = argv[8];
		pass = argv[9];
		size_t ul = strlen(user), pl = strlen(pass);
		unsigned char *raw = malloc(ul + pl + 2);
		raw[0] = '\0';
		memcpy(raw + 1, user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, pass, pl);
		char *enc = b64(raw, ul + pl + 2);
		if (asprintf(&auth_line, "AUTH PLAIN %s\r\n", enc) < 0)
			die("asprintf");
		free(enc);
		free(raw);
	}
	if (sessions < 1 || total < 1 || size < 200)
		die("TOTAL and SESSIONS >= 1, SIZE >= 200");

	const char *mg = getenv("MESSAGE_GEN");
	if (mg != NULL && strcmp(mg, "bigbox") == 0) {
		gen_bigbox = 1;
		gen_first = getenv("MESSAGE_FIRST") ? atoi(getenv("MESSAGE_FIRST")) : 0;
		goto send;
	}
	const char *mf = getenv("MESSAGE_FILE");
	if (mf != NULL && *mf != '\0') {
		FILE *f = fopen(mf, "rb");
		if (f == NULL)
			die("%s: %s", mf, strerror(errno));
		message = malloc(1 << 20);
		message_len = fread(message, 1, 1 << 20, f);
		fclose(f);
		if (message_len == 0 || message_len == 1 << 20)
			die("%s: empty or over 1 MiB", mf);
		goto send;
	}
	/* the message: a header, then body lines of 76 octets + CRLF up to SIZE */
	message = malloc((size_t)size + 200);
	int n = snprintf(message, 200,
	                 "From: <%s>\r\nTo: <%s>\r\nSubject: relay bench\r\n"
	                 "Message-ID: <%ld.%d@load.bench.test>\r\n\r\n",
	                 mail_from, rcpt_to, (long)time(NULL), getpid());
	while (n + 78 <= size) {
		memset(message + n, 'a' + (n % 26), 76);
		n += 76;
		message[n++] = '\r';
		message[n++] = '\n';
	}
	message_len = (size_t)n;

send:;
	pthread_t *th = calloc((size_t)sessions, sizeof *th);
	double t0 = now();
	for (int i = 0; i < sessions; i++)
		if (pthread_create(&th[i], NULL, session, NULL) != 0)
			die("pthread_create");
	for (int i = 0; i < sessions; i++)
		pthread_join(th[i], NULL);
	double t1 = now();
	printf("%d %.4f %.3f\n", accepted, t1 - t0, cpu());
	return accepted == total ? 0 : 1;
}
