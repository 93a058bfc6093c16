/* Multi-line responses that grow with the data, never built whole: RETR and
 * TOP stream the message from its blob in chunks; LIST and UIDL walk the
 * maildrop with a cursor (the listing's fill function, cmd.c). Each produces
 * while the session's pending output is below its limit and then waits for
 * the conn's drained event (session_output_wait, then ops->drained calls
 * pop3_send_drained): nothing polls while the reader is slow. A reader that
 * reads nothing for pop3_timeout is closed by the core's idle timer, which
 * counts the reader's progress while a response waits. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "pop3/session.h"

#define POP3_READ_CHUNK (64 * 1024)

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
	} else {
		conn_write(s->base.c, ".\r\n", 3); /* RFC 1939 3 */
	}
	buf_free(&b);
	s->send_fill = NULL;
	pop3_set_state(s, POP3_S_CMD);
	session_unpark(&s->base); /* pipelined commands run now */
}

/* One step of a RETR/TOP: reads a chunk of the blob into out.
 * 1 the message is complete, 0 more to come, -1 the session was closed. */
static int message_step(struct pop3_session *s, char *chunk, struct buf *out)
{
	ssize_t r;

	do
		r = read(s->send_fd, chunk, POP3_READ_CHUNK);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		/* Mid-response: no -ERR can be framed; the client sees the
		 * connection drop without ".", never a truncated message as whole. */
		log_err("pop3 %s: read message: %s", s->base.ip, strerror(errno));
		s->result = "read error";
		session_close(&s->base, "read error");
		return -1;
	}
	return r == 0 ? 1 : pop3_dot_feed(&s->dot, chunk, (size_t)r, out);
}

static void pump(struct pop3_session *s)
{
	char chunk[POP3_READ_CHUNK]; /* the loop thread's stack: no per-call malloc */
	struct buf out = BUF_INIT;

	while (sending(s) && session_output_room(&s->base)) {
		int done = s->send_fill != NULL ? s->send_fill(s, &out)
						: message_step(s, chunk, &out);
		if (done < 0)
			break;
		if (out.len > 0) {
			if (s->send_fill != NULL)
				conn_write(s->base.c, out.data, out.len);
			else
				pop3_send_raw(s, out.data, out.len);
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
	if (s->send_fd >= 0) {
		close(s->send_fd);
		s->send_fd = -1;
	}
}
