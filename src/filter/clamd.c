/* Virus scanning with clamd over INSTREAM (clamd.h). The protocol (clamd(8),
 * "INSTREAM"): the command "zINSTREAM\0" ('z': NUL-terminated commands and
 * replies), then chunks of a 4-byte network-order length and that many
 * octets, then a zero length; clamd answers one line, "stream: OK",
 * "stream: NAME FOUND", or an error ("INSTREAM size limit exceeded. ERROR"
 * when more than its StreamMaxLength arrived; it closes the connection then).
 *
 * One connection per message, made at its first byte, non-blocking on the
 * loop. What the client sends waits in a bounded queue: above
 * CLAMD_HIGH_WATER octets the feed asks its caller to pause, and the caller
 * is resumed once clamd has read the queue down to CLAMD_LOW_WATER. A clamd
 * that reads nothing for clamd_timeout (a stall) or does not answer within
 * clamd_timeout of the message's end fails the scan (CLAMD_ERROR). Every
 * callback out of here (resume, the result) runs from its own zero-delay
 * timer, so never inside a clamd_* call, and the caller may free the scan
 * from inside it.
 *
 * FILDES, for a clamd on a unix socket (clamd(8), "FILDES"): the command
 * "zFILDES\0" with a file descriptor in an SCM_RIGHTS control message
 * (unix(7)); clamd scans that file in place and answers "fd[N]: OK" or
 * "fd[N]: NAME FOUND". Over INSTREAM clamd first writes every message to a
 * temporary file of its own (create, write, unlink on its TemporaryDirectory:
 * most of its time per small message); over FILDES it does not. A message
 * of up to CLAMD_FILDES_MAX octets (most mail) is kept here (stage) until
 * its end, then written into a memfd (tmpfs: memory, never the disk) and
 * passed: the connection is made at the end only, so clamd's
 * CommandReadTimeout never runs while the client sends. Not the spool's
 * file: a small message is still in the spool's buffer at the end of data
 * (store.h), and writing it out earlier for clamd would cost the file
 * write the commit avoids. A larger message switches to INSTREAM when it
 * passes CLAMD_FILDES_MAX (the memory bound stays that of INSTREAM's queue).
 * A clamd that answers FILDES with anything but OK/FOUND (an old one,
 * "UNKNOWN COMMAND"; a descriptor it cannot use) is asked again over
 * INSTREAM, and if that scan works, FILDES is off for this clamd from then
 * on (logged once); if it fails too, the content was the trouble and FILDES
 * stays. TCP clamd: INSTREAM only (a descriptor does not cross TCP).
 *
 * Kept connections (clamd(8), "IDSESSION"): a FILDES connection starts a
 * session ("zIDSESSION\0" before the first "zFILDES\0", in the same
 * message; answers then carry the command's number, "1: fd[N]: OK") and,
 * once it answered OK or FOUND and nothing else, is kept idle (at most
 * CLAMD_IDLE_MAX) for the next FILDES scan, one command at a time per
 * connection. A new
 * connection per message cost clamd about 30 % of its CPU per scan (its
 * accept, poll set and thread hand-over; bench/filter-bench) and us a
 * socket, connect and close. An idle connection that turns readable (clamd
 * closed it: its IdleTimeout, 30 s by default) is closed; one idle for more
 * than CLAMD_IDLE_MS is not used but closed. A kept connection that fails
 * (clamd closed it as we sent) or answers anything but OK/FOUND is not a
 * FILDES refusal yet: the scan goes again over FILDES on a new connection,
 * whose answer decides. */
#include "filter/clamd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/fdio.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"

#define CLAMD_CHUNK (64 * 1024)          /* octets per INSTREAM chunk */
#define CLAMD_HIGH_WATER (256 * 1024)    /* queued: pause the sender */
#define CLAMD_LOW_WATER (64 * 1024)      /* queued: resume it */
#define CLAMD_REPLY_MAX 1024             /* a longer answer is a protocol error */
#define CLAMD_COMPLAIN_MS (60 * 1000)    /* one error line a minute at most */
#define CLAMD_RETRY_MS 20                /* a full unix socket backlog: retry */
/* FILDES: a message up to this size is kept (stage) until its end and
 * passed as a file; a larger one switches to INSTREAM at this size. The
 * same bound as the INSTREAM queue (CLAMD_HIGH_WATER). */
#define CLAMD_FILDES_MAX CLAMD_HIGH_WATER
#define CLAMD_IDLE_MAX 32   /* kept FILDES sessions, idle, at most */
#define CLAMD_IDLE_MS 10000 /* an older idle session is closed, not used */
#define CLAMD_MEMFD_KEEP (64 * 1024) /* a session's memfd is kept up to this size */

/* An idle kept session (IDSESSION): watched for clamd's close. */
struct clamd_idle {
	struct clamd *c;
	int fd;
	int mfd;        /* the session's memfd for the next message, or -1 */
	size_t mfd_len; /* its size */
	uint64_t since; /* loop time it went idle */
};

struct clamd {
	struct loop *l;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char *desc; /* the clamd_socket value, for logs */
	uint64_t timeout_ms;
	size_t max_size;
	bool fildes;             /* a unix socket, and clamd has not refused FILDES */
	uint64_t last_complaint; /* loop time of the last error line, 0: none */
	unsigned suppressed;     /* error lines not written since */
	struct clamd_scan *scans; /* alive, for clamd_free */
	struct clamd_idle *idle[CLAMD_IDLE_MAX]; /* kept sessions, oldest first */
	size_t n_idle;
};

enum scan_state {
	SCAN_IDLE,       /* nothing fed yet: not connected */
	SCAN_CONNECTING, /* connect() in progress (or retrying) */
	SCAN_OPEN,       /* connected: streaming, then waiting for the answer */
	SCAN_DONE,       /* result known, socket closed */
};

struct clamd_scan {
	struct clamd *c; /* NULL once clamd_free ran */
	struct clamd_scan *prev, *next;
	enum scan_state state;
	int fd;
	uint32_t events;  /* fd's registered loop events */
	struct buf stage; /* content not yet framed */
	struct buf out;   /* framed octets to send, from out_off */
	size_t out_off;
	size_t fed;       /* content octets fed in all */
	bool ended;       /* clamd_scan_end ran */
	bool zero_queued; /* the terminating zero-length chunk is in out */
	bool write_closed; /* clamd stopped reading (EPIPE): only its answer is left */
	bool fildes;       /* this scan goes over FILDES (stage holds the message) */
	bool fildes_sent;  /* "zFILDES" and the descriptor went */
	bool session;      /* fd is an IDSESSION: answers carry "N: " */
	bool reused;       /* fd was a kept session (its first command here) */
	bool retried;      /* a kept session failed: a new connection now */
	char *refusal;     /* clamd's answer to FILDES, asked again over
			    * INSTREAM: which decides whether FILDES goes off */
	bool keep;         /* the answer was the whole input: fd may be kept */
	int mfd;           /* the memfd passed on the session (kept with it), or -1 */
	size_t mfd_len;    /* its size */
	struct buf in;    /* clamd's answer so far */
	/* the result, once state == SCAN_DONE */
	enum clamd_status status;
	char name[256];
	clamd_cb *cb;
	void *cb_arg;
	void (*resume)(void *arg);
	void *resume_arg;
	struct timer *timer;   /* stall / answer deadline */
	struct timer *retry;   /* connect retry */
	struct timer *resume_t; /* zero-delay: resume the caller */
	struct timer *done_t;  /* zero-delay: the result to the caller */
};

/* ---- configuration ---- */

/* clamd_socket: "/path" (or "unix:/path") for a unix socket, "host:port" or
 * "[v6]:port" for TCP (a name is resolved once, here, at start). */
static int clamd_parse(struct clamd *c, const char *spec, char **err_r)
{
	const char *path = spec;

	if (strncmp(spec, "unix:", 5) == 0)
		path = spec + 5;
	if (path[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&c->addr;

		if (strlen(path) >= sizeof un->sun_path) {
			*err_r = xasprintf("clamd_socket: \"%s\" is too long for a unix socket", spec);
			return -1;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		c->addrlen = sizeof(*un);
		c->fildes = true;
		return 0;
	}

	char host[256], port[16];
	const char *colon = strrchr(spec, ':');
	size_t hl;

	if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= sizeof port) {
		*err_r = xasprintf("clamd_socket: \"%s\" is neither a socket path nor host:port", spec);
		return -1;
	}
	hl = (size_t)(colon - spec);
	if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
		spec++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof host) {
		*err_r = xasprintf("clamd_socket: \"%s\": bad host", spec);
		return -1;
	}
	memcpy(host, spec, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);

	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0 || res == NULL) {
		*err_r = xasprintf("clamd_socket: \"%s\": %s", c->desc, gai_strerror(gai));
		return -1;
	}
	memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
	c->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

struct clamd *clamd_new(struct loop *l, const struct config *cfg, char **err_r)
{
	struct clamd *c;

	*err_r = NULL;
	if (cfg->clamd_socket == NULL || cfg->clamd_socket[0] == '\0')
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->l = l;
	c->desc = xstrdup(cfg->clamd_socket);
	c->timeout_ms = (uint64_t)(cfg->clamd_timeout > 0 ? cfg->clamd_timeout : 30) * 1000;
	c->max_size = cfg->clamd_max_size;
	if (clamd_parse(c, cfg->clamd_socket, err_r) < 0) {
		free(c->desc);
		free(c);
		return NULL;
	}
	return c;
}

static void scan_close(struct clamd_scan *s);
static void idle_drop(struct clamd *c, size_t i);

void clamd_instream_only(struct clamd *c)
{
	c->fildes = false;
}

void clamd_free(struct clamd **cp)
{
	struct clamd *c = *cp;

	if (c == NULL)
		return;
	while (c->n_idle > 0)
		idle_drop(c, c->n_idle - 1);
	/* scans that outlive us are closed; their callbacks are dropped */
	while (c->scans != NULL) {
		struct clamd_scan *s = c->scans;
		scan_close(s);
		loop_timer_cancel(c->l, &s->resume_t);
		loop_timer_cancel(c->l, &s->done_t);
		s->state = SCAN_DONE;
		s->cb = NULL;
		s->resume = NULL;
		c->scans = s->next;
		s->prev = s->next = NULL;
		s->c = NULL;
	}
	free(c->desc);
	free(c);
	*cp = NULL;
}

/* clamd down, hung or talking nonsense: said loudly (clamd.h), but at most
 * once a minute, with the count of the failures not logged since. */
static void clamd_complain(struct clamd *c, const char *what)
{
	uint64_t now = loop_now(c->l);

	if (c->last_complaint != 0 && now - c->last_complaint < CLAMD_COMPLAIN_MS) {
		c->suppressed++;
		return;
	}
	log_err("clamd scan failed socket=%s more=%u: %s", c->desc, c->suppressed, what);
	c->last_complaint = now;
	c->suppressed = 0;
}

/* ---- kept sessions (IDSESSION) ---- */

static void idle_drop(struct clamd *c, size_t i)
{
	struct clamd_idle *k = c->idle[i];

	loop_del(c->l, k->fd);
	close(k->fd);
	if (k->mfd >= 0)
		close(k->mfd);
	free(k);
	memmove(&c->idle[i], &c->idle[i + 1], (c->n_idle - i - 1) * sizeof c->idle[0]);
	c->n_idle--;
}

/* An idle session turned readable: clamd closed it (or said something
 * unasked for): it goes. */
static void on_idle_io(void *arg, uint32_t events)
{
	struct clamd_idle *k = arg;
	struct clamd *c = k->c;

	(void)events;
	for (size_t i = 0; i < c->n_idle; i++)
		if (c->idle[i] == k) {
			idle_drop(c, i);
			return;
		}
}

/* fd (a session that answered its last command whole, still watched by the
 * loop) is kept with mfd (-1: none), or both closed when CLAMD_IDLE_MAX are
 * idle already. It stays in epoll, handed from scan to idle and back
 * (loop_rebind): no epoll_ctl pair per scan. */
static void idle_put(struct clamd *c, int fd, int mfd, size_t mfd_len)
{
	struct clamd_idle *k = NULL;

	if (c->n_idle < CLAMD_IDLE_MAX) {
		k = xcalloc(1, sizeof *k);
		k->c = c;
		k->fd = fd;
		k->mfd = mfd;
		k->mfd_len = mfd_len;
		k->since = loop_now(c->l);
		if (loop_rebind(c->l, fd, LOOP_READ, on_idle_io, k) == 0) {
			c->idle[c->n_idle++] = k;
			return;
		}
	}
	free(k);
	loop_del(c->l, fd);
	close(fd);
	if (mfd >= 0)
		close(mfd);
}

/* The most recently kept session, or -1 (those idle for CLAMD_IDLE_MS or
 * more are closed), and its memfd in *mfd_r (or -1) with its size in
 * *mfd_len_r. The returned fd is
 * still watched, its callback an idle session's that is freed here: the
 * caller hands it over at once (scan_attach). */
static int idle_take(struct clamd *c, int *mfd_r, size_t *mfd_len_r)
{
	uint64_t now = loop_now(c->l);

	while (c->n_idle > 0 && now - c->idle[0]->since >= CLAMD_IDLE_MS)
		idle_drop(c, 0);
	if (c->n_idle == 0)
		return -1;
	struct clamd_idle *k = c->idle[--c->n_idle];
	int fd = k->fd;
	*mfd_r = k->mfd;
	*mfd_len_r = k->mfd_len;
	free(k);
	return fd;
}

/* ---- the scan ---- */

struct clamd_scan *clamd_scan_new(struct clamd *c)
{
	struct clamd_scan *s;

	if (c == NULL)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->fd = -1;
	s->mfd = -1;
	s->state = SCAN_IDLE;
	s->fildes = c->fildes;
	s->next = c->scans;
	if (c->scans != NULL)
		c->scans->prev = s;
	c->scans = s;
	return s;
}

static size_t queued(const struct clamd_scan *s)
{
	return s->stage.len + (s->out.len - s->out_off);
}

/* What can go to clamd now: the framed octets, and the staged content once
 * it fills a chunk or the message ended. Small feeds (a line each) wait in
 * stage, so that a message goes in few INSTREAM chunks, not one (and one
 * send) per line; and a partial chunk waiting for our client is not a
 * stall of clamd. */
static size_t sendable(const struct clamd_scan *s)
{
	size_t st = s->stage.len >= CLAMD_CHUNK || s->ended ? s->stage.len : 0;
	return st + (s->out.len - s->out_off);
}

static void scan_close(struct clamd_scan *s)
{
	struct loop *l = s->c->l;

	if (s->fd >= 0) {
		loop_del(l, s->fd);
		close(s->fd);
		s->fd = -1;
	}
	if (s->mfd >= 0) {
		close(s->mfd);
		s->mfd = -1;
	}
	loop_timer_cancel(l, &s->timer);
	loop_timer_cancel(l, &s->retry);
	buf_free(&s->stage);
	buf_free(&s->out);
	buf_free(&s->in);
	s->out_off = 0;
}

static void on_resume(void *arg)
{
	struct clamd_scan *s = arg;
	void (*fn)(void *) = s->resume;

	s->resume_t = NULL;
	s->resume = NULL;
	if (fn != NULL)
		fn(s->resume_arg); /* last: the caller may free s */
}

/* The caller paused on us: it may go on (its bytes will be taken). */
static void schedule_resume(struct clamd_scan *s)
{
	if (s->resume != NULL && s->resume_t == NULL)
		s->resume_t = loop_timer_add(s->c->l, 0, on_resume, s);
}

static void on_done(void *arg)
{
	struct clamd_scan *s = arg;
	clamd_cb *cb = s->cb;
	struct clamd_result r = {s->status, s->name[0] != '\0' ? s->name : NULL};

	s->done_t = NULL;
	s->cb = NULL;
	if (cb != NULL)
		cb(s->cb_arg, &r); /* last: the caller may free s */
}

/* The scan's outcome is known: the socket goes, input is taken and dropped
 * from now on, and the caller hears of it at the end of the message. */
static void scan_finish(struct clamd_scan *s, enum clamd_status st, const char *name)
{
	if (s->state == SCAN_DONE)
		return;
	scan_close(s);
	s->state = SCAN_DONE;
	s->status = st;
	snprintf(s->name, sizeof s->name, "%s", name != NULL ? name : "");
	schedule_resume(s);
	if (s->ended && s->done_t == NULL)
		s->done_t = loop_timer_add(s->c->l, 0, on_done, s);
}

static void scan_fail(struct clamd_scan *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void scan_fail(struct clamd_scan *s, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	clamd_complain(s->c, what);
	scan_finish(s, CLAMD_ERROR, what);
}

static void on_timer(void *arg)
{
	struct clamd_scan *s = arg;

	s->timer = NULL;
	if (s->ended)
		scan_fail(s, "no answer within %llus", (unsigned long long)s->c->timeout_ms / 1000);
	else
		scan_fail(s, "stalled: nothing read for %llus",
			  (unsigned long long)s->c->timeout_ms / 1000);
}

/* (Re)arms the stall deadline while clamd has something to do and we wait
 * on it; after the end the deadline is fixed (clamd_timeout from the end). */
static void stall_timer(struct clamd_scan *s, bool progress)
{
	struct loop *l = s->c->l;

	if (s->ended || s->state == SCAN_DONE)
		return;
	if (sendable(s) == 0 && s->state == SCAN_OPEN) {
		loop_timer_cancel(l, &s->timer); /* waiting for our client, not clamd */
		return;
	}
	if (progress)
		loop_timer_cancel(l, &s->timer);
	if (s->timer == NULL)
		s->timer = loop_timer_add(l, s->c->timeout_ms, on_timer, s);
}

static void fildes_fallback(struct clamd_scan *s, const char *why, bool refused);
static void scan_connect(struct clamd_scan *s);
static void scan_read(struct clamd_scan *s);

/* "stream: OK", "stream: NAME FOUND" (INSTREAM), "fd[N]: OK", "fd[N]: NAME
 * FOUND" (FILDES), anything else an error. */
static void scan_answer(struct clamd_scan *s, const char *a, size_t n)
{
	char line[CLAMD_REPLY_MAX + 1];
	size_t l = 0;

	for (size_t i = 0; i < n && l < CLAMD_REPLY_MAX; i++)
		if (a[i] != '\0' && a[i] != '\r' && a[i] != '\n')
			/* printable ASCII: the name goes into an SMTP reply */
			line[l++] = (unsigned char)a[i] < 0x20 || (unsigned char)a[i] >= 0x7f ? '?'
											     : a[i];
	line[l] = '\0';

	const char *v = line;
	if (s->session) {
		/* "N: " before the answer of a command in a session */
		const char *d = v;
		while (*d >= '0' && *d <= '9')
			d++;
		if (d > v && d[0] == ':' && d[1] == ' ')
			v = d + 2;
		memmove(line, v, strlen(v) + 1);
		v = line;
	}
	if (strncmp(v, "stream:", 7) == 0)
		v += 7;
	else if (strncmp(v, "fd[", 3) == 0 && strstr(v, "]:") != NULL)
		v = strstr(v, "]:") + 2;
	while (*v == ' ')
		v++;
	size_t vl = strlen(v);
	bool found = vl > 6 && strcmp(v + vl - 6, " FOUND") == 0;
	if (s->fildes && strcmp(v, "OK") != 0 && !found) {
		/* on a kept session, perhaps clamd's word on the session
		 * itself: a new connection asks again before FILDES is off */
		fildes_fallback(s, line, !s->reused);
		return;
	}
	if (s->session && s->keep && s->fd >= 0) {
		/* answered whole: the session serves the next scan */
		int fd = s->fd, mfd = s->mfd;
		s->fd = -1;
		s->mfd = -1;
		if (mfd >= 0 && s->mfd_len > CLAMD_MEMFD_KEEP) {
			close(mfd); /* a large one's memory is not kept idle */
			mfd = -1;
		}
		idle_put(s->c, fd, mfd, s->mfd_len);
	}
	if (s->refusal != NULL && (strcmp(v, "OK") == 0 || found) && s->c->fildes) {
		/* the same message scanned over INSTREAM: FILDES itself was
		 * refused (an old clamd, a descriptor it cannot use) */
		s->c->fildes = false;
		log_warn("clamd socket=%s answered FILDES with \"%s\": INSTREAM from now on",
			 s->c->desc, s->refusal);
	}
	if (strcmp(v, "OK") == 0) {
		scan_finish(s, CLAMD_CLEAN, NULL);
	} else if (found) {
		char name[256];
		snprintf(name, sizeof name, "%.*s", (int)(vl - 6), v);
		scan_finish(s, CLAMD_INFECTED, name);
	} else if (strstr(v, "size limit exceeded") != NULL) {
		/* clamd's StreamMaxLength is below clamd_max_size: as a message
		 * above clamd_max_size, not scanned */
		log_warn("clamd scan skipped socket=%s: message above clamd's StreamMaxLength (%zu "
			 "octets sent); set clamd_max_size to it",
			 s->c->desc, s->fed);
		scan_finish(s, CLAMD_UNSCANNED, NULL);
	} else {
		scan_fail(s, "unexpected answer \"%s\"", line);
	}
}

static void on_io(void *arg, uint32_t events);

/* Moves the next chunk of stage, or the end, into out (framed). */
static void frame_next(struct clamd_scan *s)
{
	if (s->out_off < s->out.len)
		return;
	buf_reset(&s->out);
	s->out_off = 0;
	if (s->stage.len >= CLAMD_CHUNK || (s->ended && s->stage.len > 0)) {
		size_t n = s->stage.len < CLAMD_CHUNK ? s->stage.len : CLAMD_CHUNK;
		uint32_t be = htonl((uint32_t)n);

		buf_append(&s->out, &be, 4);
		buf_append(&s->out, s->stage.data, n);
		buf_consume(&s->stage, n);
	}
	if (s->ended && s->stage.len == 0 && !s->zero_queued) {
		/* the end, in the same send as the last chunk */
		uint32_t zero = 0;

		buf_append(&s->out, &zero, 4);
		s->zero_queued = true;
	}
}

/* Sends what can go now. Returns -1 when the scan finished here. */
static int scan_flush(struct clamd_scan *s)
{
	bool progress = false;

	if (s->state != SCAN_OPEN)
		return 0;
	while (!s->write_closed) {
		frame_next(s);
		if (s->out_off >= s->out.len)
			break;
		ssize_t w = send(s->fd, s->out.data + s->out_off, s->out.len - s->out_off,
				 MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EPIPE || errno == ECONNRESET) {
				/* clamd stopped reading (its size limit): its
				 * answer may be waiting; what is left is dropped */
				s->write_closed = true;
				buf_free(&s->stage);
				buf_free(&s->out);
				s->out_off = 0;
				break;
			}
			scan_fail(s, "send: %s", strerror(errno));
			return -1;
		}
		s->out_off += (size_t)w;
		progress = true;
	}
	if (s->state != SCAN_OPEN)
		return -1;
	uint32_t ev = LOOP_READ | (sendable(s) > 0 && !s->write_closed ? LOOP_WRITE : 0);
	if (ev != s->events) {
		loop_mod(s->c->l, s->fd, ev);
		s->events = ev;
	}
	stall_timer(s, progress);
	if (queued(s) <= CLAMD_LOW_WATER)
		schedule_resume(s);
	return 0;
}

static void scan_read(struct clamd_scan *s)
{
	char tmp[512];

	s->keep = false;
	for (;;) {
		ssize_t r = read(s->fd, tmp, sizeof tmp);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (s->in.len > 0) {
				scan_answer(s, s->in.data, s->in.len);
				return;
			}
			if (s->fildes) {
				fildes_fallback(s, strerror(errno), false);
				return;
			}
			scan_fail(s, "read: %s", strerror(errno));
			return;
		}
		if (r == 0) {
			/* an answer cut short by the close still counts */
			if (s->in.len > 0)
				scan_answer(s, s->in.data, s->in.len);
			else if (s->fildes)
				fildes_fallback(s, "connection closed without an answer", false);
			else
				scan_fail(s, "connection closed without an answer");
			return;
		}
		buf_append(&s->in, tmp, (size_t)r);
		const char *z = memchr(s->in.data, '\0', s->in.len);
		const char *nl = memchr(s->in.data, '\n', s->in.len);
		if (z != NULL || nl != NULL) {
			const char *e = z != NULL ? z : nl;
			/* a session's answer, NUL-terminated, and nothing after it */
			s->keep = z != NULL && z == e &&
				  (size_t)(z - s->in.data) + 1 == s->in.len;
			scan_answer(s, s->in.data, (size_t)(e - s->in.data));
			return;
		}
		if (s->in.len > CLAMD_REPLY_MAX) {
			scan_fail(s, "answer longer than %d octets", CLAMD_REPLY_MAX);
			return;
		}
	}
}

/* Sends FILDES in one message: the command with its NUL, one more octet,
 * and with them the message as a memfd (unix(7) SCM_RIGHTS; clamd holds
 * its own reference from then on). clamd claims a descriptor for FILDES
 * when the octet after the command came with it: without that octet it
 * answers "ancillary data sent without FILDES" (clamdscan sends the
 * command and the octet apart; clamd's own tests, check_clamd.c
 * sendmsg_fd, send them in one message as here). One system call and one
 * wake-up of clamd per scan instead of two. Our memfd stays with the
 * session for its next message (a memfd made and dropped per message was
 * a third of this function's CPU). Sent, or waiting for LOOP_WRITE (a
 * fresh connection's buffer is empty: hardly ever). */
static void fildes_send(struct clamd_scan *s)
{
	/* a new connection starts a session; a kept one has it. sizeof
	 * counts the literal's own NUL: the octet after the command's */
	static const char cmd_new[] = "zIDSESSION\0zFILDES\0";
	static const char cmd[] = "zFILDES\0";
	const char *c = s->reused ? cmd : cmd_new;
	size_t cl = s->reused ? sizeof cmd : sizeof cmd_new;
	ssize_t w;

	/* The session's memfd (clamd answered its last scan: done with it;
	 * the offset is shared with clamd's copy: from 0 again), else a new
	 * one. Not sealed: a session's memfd is written again for the next
	 * message, only ever after clamd's answer on this one. Cut only
	 * when the last message was longer. */
	int mfd = s->mfd;
	size_t had = mfd >= 0 ? s->mfd_len : 0;
	if (mfd < 0 && (mfd = memfd_create("postern-clamd", MFD_CLOEXEC)) < 0) {
		fildes_fallback(s, strerror(errno), false);
		return;
	}
	s->mfd = -1;
	if (fdio_pwrite_all(mfd, s->stage.data, s->stage.len, 0) < 0 ||
	    (had > s->stage.len && ftruncate(mfd, (off_t)s->stage.len) < 0) ||
	    lseek(mfd, 0, SEEK_SET) < 0) {
		int err = errno;
		close(mfd);
		fildes_fallback(s, strerror(err), false);
		return;
	}

	struct iovec iov = {(void *)c, cl};
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			    .msg_controllen = sizeof ctl.b};

	memset(&ctl, 0, sizeof ctl);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &mfd, sizeof(int));
	do
		w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	int err = errno;
	/* kept with the session once it answers; written again if we wait */
	s->mfd = mfd;
	s->mfd_len = s->stage.len;
	if (w < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
		if (s->events != (LOOP_READ | LOOP_WRITE)) {
			loop_mod(s->c->l, s->fd, LOOP_READ | LOOP_WRITE);
			s->events = LOOP_READ | LOOP_WRITE;
		}
		return;
	}
	if (w != (ssize_t)cl) {
		/* nothing or part went (clamd closed a kept session as we
		 * used it: a new connection); part: clamd has a broken command */
		fildes_fallback(s, w < 0 ? strerror(err) : "short send", false);
		return;
	}
	s->session = true;
	s->fildes_sent = true;
	if (s->events != LOOP_READ) {
		loop_mod(s->c->l, s->fd, LOOP_READ);
		s->events = LOOP_READ;
	}
}

/* The scan's connection and memfd closed and its FILDES state reset, for a
 * new connection. */
static void fildes_drop(struct clamd_scan *s)
{
	if (s->fd >= 0) {
		loop_del(s->c->l, s->fd);
		close(s->fd);
		s->fd = -1;
	}
	if (s->mfd >= 0) {
		close(s->mfd);
		s->mfd = -1;
	}
	buf_free(&s->in);
	s->session = false;
	s->reused = false;
	s->fildes_sent = false;
}

/* FILDES did not work for this scan: again over INSTREAM, on a new
 * connection, from the message kept in stage (the deadline from the end
 * keeps running). refused: clamd answered it (not OK/FOUND): if INSTREAM
 * then scans the message, FILDES is off for this clamd, said once; if
 * INSTREAM fails too, the message was what clamd could not scan (an error
 * it gives on some content), and FILDES stays. */
static void fildes_fallback(struct clamd_scan *s, const char *why, bool refused)
{
	struct clamd *c = s->c;

	if (!refused && s->reused) {
		/* a kept session clamd closed as we used it: FILDES again, on
		 * a new connection */
		fildes_drop(s);
		s->retried = true;
		scan_connect(s);
		return;
	}
	if (refused && c->fildes && s->refusal == NULL)
		s->refusal = xstrdup(why);
	fildes_drop(s);
	loop_timer_cancel(c->l, &s->retry);
	s->fildes = false;
	scan_connect(s);
}

static void scan_connected(struct clamd_scan *s)
{
	s->state = SCAN_OPEN;
	if (s->fildes) {
		fildes_send(s); /* only ever at the end: the deadline runs */
		return;
	}
	/* the command goes before the first chunk */
	buf_reset(&s->out);
	buf_append(&s->out, "zINSTREAM", 10);
	s->out_off = 0;
	/* a stall deadline restarts; the end's deadline runs from the end */
	if (!s->ended)
		loop_timer_cancel(s->c->l, &s->timer);
	scan_flush(s);
}

static void on_io(void *arg, uint32_t events)
{
	struct clamd_scan *s = arg;

	if (s->state == SCAN_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err != 0) {
			scan_fail(s, "connect: %s", strerror(err));
			return;
		}
		scan_connected(s);
		return;
	}
	if (s->state != SCAN_OPEN)
		return;
	if (s->fildes && !s->fildes_sent) {
		/* waiting to send: an answer (or a close) already decides */
		if (events & (LOOP_READ | LOOP_ERROR)) {
			scan_read(s);
			/* a failed kept session went to a new connection, which
			 * may have sent already (events are the old one's) */
			if (s->state != SCAN_OPEN || !s->fildes || s->fildes_sent)
				return;
		}
		if (events & (LOOP_WRITE | LOOP_ERROR))
			fildes_send(s);
		return;
	}
	if (events & (LOOP_READ | LOOP_ERROR)) {
		scan_read(s);
		if (s->state != SCAN_OPEN)
			return;
	}
	if (events & LOOP_WRITE)
		scan_flush(s);
}

static void on_retry(void *arg)
{
	struct clamd_scan *s = arg;

	s->retry = NULL;
	scan_connect(s);
}

/* The scan's connection fd joins the loop (or, kept: is handed over to the
 * scan), watched for events; connected: the scan starts on it now. false:
 * it failed (the scan is failed). */
static bool scan_attach(struct clamd_scan *s, int fd, uint32_t events, bool connected, bool kept)
{
	s->fd = fd;
	s->events = events;
	if ((kept ? loop_rebind(s->c->l, fd, events, on_io, s)
		  : loop_add(s->c->l, fd, events, on_io, s)) < 0) {
		scan_fail(s, "loop_add: %s", strerror(errno));
		return false;
	}
	if (connected)
		scan_connected(s);
	return true;
}

static void scan_connect(struct clamd_scan *s)
{
	struct clamd *c = s->c;
	int fd;

	s->state = SCAN_CONNECTING;
	int mfd = -1;
	if (s->fildes && !s->retried && c->fildes && (fd = idle_take(c, &mfd, &s->mfd_len)) >= 0) {
		s->mfd = mfd;
		s->reused = true;
		s->session = true;
		scan_attach(s, fd, LOOP_READ, true, true);
		return;
	}
	fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		scan_fail(s, "socket: %s", strerror(errno));
		return;
	}
	if (connect(fd, (struct sockaddr *)&c->addr, c->addrlen) == 0) {
		scan_attach(s, fd, LOOP_READ, true, false);
		return;
	}
	if (errno == EINPROGRESS) {
		if (scan_attach(s, fd, LOOP_WRITE, false, false))
			stall_timer(s, false);
		return;
	}
	int err = errno;
	close(fd);
	if (err == EAGAIN && c->addr.ss_family == AF_UNIX) {
		/* the listen backlog of a busy clamd is full (unix sockets do
		 * not queue the connect): try again shortly, within the
		 * stall deadline */
		s->retry = loop_timer_add(c->l, CLAMD_RETRY_MS, on_retry, s);
		stall_timer(s, false);
		return;
	}
	scan_fail(s, "connect: %s", strerror(err));
}

bool clamd_scan_feed(struct clamd_scan *s, const char *p, size_t n, void (*resume)(void *arg),
		     void *arg)
{
	if (s == NULL || n == 0 || s->state == SCAN_DONE || s->ended || s->write_closed)
		return false;
	if (s->fed + n > s->c->max_size) {
		/* clamd.h: beyond clamd_max_size the scan is abandoned */
		log_info("clamd scan skipped socket=%s: message above clamd_max_size=%zu",
			 s->c->desc, s->c->max_size);
		s->fed += n;
		scan_finish(s, CLAMD_UNSCANNED, NULL);
		return false;
	}
	s->fed += n;
	buf_append(&s->stage, p, n);
	if (s->fildes && s->stage.len > CLAMD_FILDES_MAX)
		s->fildes = false; /* too large to keep: streamed over INSTREAM */
	if (s->fildes)
		return false; /* kept for the end */
	if (s->state == SCAN_IDLE)
		scan_connect(s);
	else if (s->state == SCAN_OPEN && s->out_off >= s->out.len)
		scan_flush(s);
	if (s->state == SCAN_DONE)
		return false;
	if (queued(s) > CLAMD_HIGH_WATER) {
		s->resume = resume;
		s->resume_arg = arg;
		return resume != NULL;
	}
	return false;
}

void clamd_scan_end(struct clamd_scan *s, clamd_cb *cb, void *arg)
{
	struct clamd *c;

	if (s == NULL)
		return;
	c = s->c;
	s->cb = cb;
	s->cb_arg = arg;
	s->ended = true;
	if (c == NULL)
		return;
	if (s->state == SCAN_DONE) {
		if (s->done_t == NULL)
			s->done_t = loop_timer_add(c->l, 0, on_done, s);
		return;
	}
	/* clamd_timeout from the end, whatever was pending before */
	loop_timer_cancel(c->l, &s->timer);
	s->timer = loop_timer_add(c->l, c->timeout_ms, on_timer, s);
	if (s->fildes && s->stage.len == 0)
		s->fildes = false; /* an empty message: INSTREAM's zero length */
	if (s->state == SCAN_IDLE)
		scan_connect(s); /* FILDES, or an empty message */
	else if (s->state == SCAN_OPEN)
		scan_flush(s);
}

void clamd_scan_free(struct clamd_scan **sp)
{
	struct clamd_scan *s = *sp;

	if (s == NULL)
		return;
	if (s->c != NULL) {
		scan_close(s);
		loop_timer_cancel(s->c->l, &s->resume_t);
		loop_timer_cancel(s->c->l, &s->done_t);
		if (s->prev != NULL)
			s->prev->next = s->next;
		else
			s->c->scans = s->next;
		if (s->next != NULL)
			s->next->prev = s->prev;
	}
	buf_free(&s->stage);
	buf_free(&s->out);
	buf_free(&s->in);
	free(s->refusal);
	free(s);
	*sp = NULL;
}
