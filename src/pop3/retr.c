/* RETR and TOP: the message is streamed from its blob in chunks as the
 * socket drains, never loaded whole. The conn has no "drained" event, so a
 * short pacing timer looks at conn_pending_output(); a client that stops
 * reading for pop3_timeout seconds is disconnected. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "pop3/session.h"

#define POP3_READ_CHUNK (64 * 1024)
/* Refill below this much queued output; one chunk more keeps the socket busy. */
#define POP3_OUT_HIGH (256 * 1024)
#define POP3_PACE_MS 1

static void pump(struct pop3_session *s);

/* A RETR/TOP response is being streamed (and the session is not closing). */
static bool sending(const struct pop3_session *s)
{
	return s->base.c != NULL && s->base.phase != SESSION_CLOSING && s->state == POP3_S_SEND;
}

static void on_pace(void *arg)
{
	struct pop3_session *s = arg;

	s->pace = NULL;
	if (!sending(s))
		return;
	size_t pending = conn_pending_output(s->base.c);
	uint64_t now = loop_now(s->base.l);
	if (pending != s->send_last_pending) {
		s->send_last_pending = pending;
		s->send_progress_ms = now;
	} else if (now - s->send_progress_ms > (uint64_t)s->srv->cfg->pop3_timeout * 1000u) {
		s->result = "send timeout";
		session_close(&s->base, "send timeout");
		return;
	}
	pump(s);
}

static void send_end(struct pop3_session *s)
{
	struct buf b = BUF_INIT;
	pop3_dot_end(&s->dot, &b);
	pop3_send_raw(s, b.data, b.len);
	buf_free(&b);
	close(s->send_fd);
	s->send_fd = -1;
	pop3_set_state(s, POP3_S_CMD);
	session_unpark(&s->base); /* pipelined commands run now */
}

static void pump(struct pop3_session *s)
{
	char chunk[POP3_READ_CHUNK]; /* the loop thread's stack: no per-call malloc */
	struct buf out = BUF_INIT;

	while (s->base.c != NULL && conn_pending_output(s->base.c) < POP3_OUT_HIGH) {
		ssize_t r = read(s->send_fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* Mid-response: no -ERR can be framed; the client sees the
			 * connection drop without ".", never a truncated message as whole. */
			log_err("pop3 %s: read message: %s", s->base.ip, strerror(errno));
			s->result = "read error";
			session_close(&s->base, "read error");
			break;
		}
		int done = r == 0 ? 1 : pop3_dot_feed(&s->dot, chunk, (size_t)r, &out);
		if (out.len > 0) {
			pop3_send_raw(s, out.data, out.len);
			buf_reset(&out);
		}
		if (done) {
			send_end(s);
			break;
		}
	}
	if (sending(s))
		s->pace = loop_timer_add(s->base.l, POP3_PACE_MS, on_pace, s);
	buf_free(&out);
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
	pop3_dot_init(&s->dot, top, lines);
	s->send_last_pending = 0;
	s->send_progress_ms = loop_now(s->base.l);
	/* Input waits until the response is complete (RFC 2449 6.6 pipelining:
	 * responses stay in order). Parked, not idle: a long download sends no
	 * input, and on_pace's own no-progress timeout guards a stalled reader. */
	pop3_set_state(s, POP3_S_SEND);
	session_park(&s->base);
	pump(s);
}

void pop3_send_abort(struct pop3_session *s)
{
	if (s->pace != NULL)
		loop_timer_cancel(s->base.l, &s->pace);
	if (s->send_fd >= 0) {
		close(s->send_fd);
		s->send_fd = -1;
	}
}
