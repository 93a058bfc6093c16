/* Multi-line responses that grow with the data, never built whole: RETR and
 * TOP stream the message from its blob in chunks; LIST and UIDL walk the
 * maildrop with a cursor (the listing's fill function, cmd.c). Each produces
 * while the session's pending output is below its limit and then waits for
 * the conn's drained event (session_output_wait, then ops->drained calls
 * pop3_send_drained): nothing polls while the reader is slow. A reader that
 * reads nothing for pop3_timeout is closed by the core's idle timer, which
 * counts the reader's progress while a response waits. The blob is read on
 * a worker, one chunk at a time (read_work / read_done), so a slow disk
 * never stalls the loop. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "pop3/session.h"

#define POP3_READ_CHUNK (64 * 1024)
/* One chunk of a blob, read on a worker (read_work). */
struct pop3_read {
	ssize_t got;
	int err;
	char data[POP3_READ_CHUNK];
};

/* Most listing output made in one loop step (a fraction of a millisecond). */
#define POP3_SLICE (64 * 1024)

/* A response is being streamed (and the session is not closing). */
static bool sending(const struct pop3_session *s)
{
	return s->base.c != NULL && s->base.phase != SESSION_CLOSING && s->state == POP3_S_SEND;
}

static void send_end(struct pop3_session *s)
{
	struct buf b = BUF_INIT;

	if (s->send_fd >= 0) {
		pop3_dot_end(&s->dot, &b);
		pop3_send_raw(s, b.data, b.len);
		close(s->send_fd);
		s->send_fd = -1;
		x_free(&s->send_rd);
	} else {
		conn_write(s->base.c, ".\r\n", 3); /* RFC 1939 3 */
	}
	buf_free(&b);
	s->send_fill = NULL;
	pop3_set_state(s, POP3_S_CMD);
	session_unpark(&s->base); /* pipelined commands run now */
}

/* The worker's half of a RETR/TOP step: one chunk of the blob. A cold disk
 * may take milliseconds per read; the loop never waits for it. */
static void read_work(void *arg)
{
	struct pop3_session *s = arg;
	ssize_t r;

	do
		r = read(s->send_fd, s->send_rd->data, POP3_READ_CHUNK);
	while (r < 0 && errno == EINTR);
	s->send_rd->got = r;
	s->send_rd->err = r < 0 ? errno : 0;
}

static void pump(struct pop3_session *s);

/* The loop's half: the chunk goes through the dot-stuffer to the client. */
static void read_done(void *arg)
{
	struct pop3_session *s = arg;
	struct buf out = BUF_INIT;
	int done;

	s->send_reading = false;
	if (session_release(&s->base))
		return; /* freed: session_free closed the blob */
	if (!sending(s)) {
		pop3_send_abort(s); /* closed meanwhile: deferred until now */
		return;
	}
	if (s->send_rd->got < 0) {
		/* Mid-response: no -ERR can be framed; the client sees the
		 * connection drop without ".", never a truncated message as whole. */
		log_err("pop3 %s: read message: %s", s->base.ip, strerror(s->send_rd->err));
		s->result = "read error";
		session_close(&s->base, "read error");
		return;
	}
	done = s->send_rd->got == 0
		       ? 1
		       : pop3_dot_feed(&s->dot, s->send_rd->data, (size_t)s->send_rd->got, &out);
	if (out.len > 0)
		pop3_send_raw(s, out.data, out.len);
	buf_free(&out);
	if (done)
		send_end(s);
	else
		pump(s);
}

/* A listing that used up its slice goes on from here, after the loop has
 * served everybody else. */
static void listing_continue(void *arg)
{
	struct pop3_session *s = arg;

	s->send_reading = false;
	if (session_release(&s->base))
		return;
	if (!sending(s)) {
		pop3_send_abort(s);
		return;
	}
	pump(s);
}

static void pump(struct pop3_session *s)
{
	struct buf out = BUF_INIT;
	size_t slice = 0;

	if (s->send_reading)
		return; /* read_done or listing_continue goes on */
	while (sending(s) && session_output_room(&s->base)) {
		if (s->send_fill != NULL && slice >= POP3_SLICE) {
			/* conn_write hands output to the kernel at once, so a fast
			 * reader never leaves the output limit: bound the work of
			 * one loop step by itself and continue from the loop. */
			s->send_reading = true;
			s->base.busy++;
			loop_post(s->base.l, listing_continue, s);
			buf_free(&out);
			return;
		}
		if (s->send_fill == NULL) {
			/* RETR/TOP: the next chunk comes from a worker. */
			if (s->srv == NULL) {
				session_close(&s->base, "shutdown");
				break;
			}
			s->send_reading = true;
			s->base.busy++;
			pool_submit(s->srv->workers, read_work, read_done, s);
			buf_free(&out);
			return;
		}
		bool done = s->send_fill(s, &out);
		slice += out.len;
		if (out.len > 0) {
			conn_write(s->base.c, out.data, out.len);
			buf_reset(&out);
		}
		if (done) {
			send_end(s);
			break;
		}
	}
	if (sending(s))
		session_output_wait(&s->base); /* pop3_send_drained follows */
	buf_free(&out);
}

/* Input waits until the response is complete (RFC 2449 6.6 pipelining:
 * responses stay in order). Parked, not idle: a long download sends no
 * input; the idle timer watches the reader's progress instead. */
static void send_start(struct pop3_session *s)
{
	pop3_set_state(s, POP3_S_SEND);
	session_park(&s->base);
	pump(s);
}

void pop3_send_message(struct pop3_session *s, size_t n, bool top, uint64_t lines)
{
	struct pop3_msg *msg = &s->maildrop->v[n - 1];
	char *err = NULL;
	int fd;

	if (store_mail_open(s->srv->st, s->maildrop->user, NULL, s->maildrop->uidvalidity,
			    msg->uid, &fd, &err) < 0) {
		/* Gone from under us (another client expunged it) or I/O. */
		log_err("pop3 %s: open message %zu (uid %" PRIu32 "): %s", s->base.ip, n, msg->uid,
			err);
		free(err);
		pop3_reply_err(s, "SYS/PERM", "message %zu is no longer available", n);
		return;
	}
	if (top) {
		s->n_top++;
		pop3_reply(s, true, NULL, "top of message follows");
	} else {
		s->n_retr++;
		pop3_reply(s, true, NULL, "%" PRIu64 " octets", msg->size);
	}
	s->send_fd = fd;
	s->send_rd = xmalloc(sizeof *s->send_rd);
	s->send_fill = NULL;
	pop3_dot_init(&s->dot, top, lines);
	send_start(s);
}

void pop3_send_listing(struct pop3_session *s, const char *first, pop3_fill_fn *fill)
{
	pop3_reply(s, true, NULL, "%s", first);
	s->send_fill = fill;
	s->send_next = 0;
	send_start(s);
}

void pop3_send_drained(struct pop3_session *s)
{
	if (sending(s))
		pump(s);
}

void pop3_send_abort(struct pop3_session *s)
{
	s->send_fill = NULL;
	if (s->send_reading)
		return; /* the worker still uses fd and buffer: read_done ends it */
	if (s->send_fd >= 0) {
		close(s->send_fd);
		s->send_fd = -1;
	}
	x_free(&s->send_rd);
}
