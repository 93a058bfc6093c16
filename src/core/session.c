/* Protocol-independent session plumbing; see session.h. */
#include "core/session.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

/* ---- the idle timer ---- */

static void on_idle(void *arg);

static void timer_arm(struct session *s, uint64_t ms)
{
	loop_timer_cancel(s->l, &s->timer);
	s->timer = loop_timer_add(s->l, ms, on_idle, s);
}

/* One timer per session, not one per read: the last activity is checked
 * when it fires. Activity is input, and also the client reading our output:
 * a slow reader working through a long response or a pipelined batch's
 * replies is not idle; one that reads nothing for the limit is. */
static void on_idle(void *arg)
{
	struct session *s = arg;

	s->timer = NULL; /* freed by the loop before this call */
	if (s->list == NULL || s->c == NULL || s->phase == SESSION_CLOSING)
		return;
	uint64_t now = loop_now(s->l), limit = s->ops->idle_ms(s);
	if (s->phase == SESSION_PARKED && !s->out_stream) {
		timer_arm(s, limit); /* our own step: not the client's fault */
		return;
	}
	uint64_t last = s->last_input_ms, out = conn_last_output(s->c);
	if (out > last)
		last = out;
	if (now - last < limit) {
		timer_arm(s, limit - (now - last));
		return;
	}
	/* Everything was handed to the kernel, but the client may still be
	 * reading it (a slow reader of a long response): while the kernel's
	 * queue for it keeps shrinking, it is making progress. */
	size_t outq = conn_kernel_outq(s->c);
	if (outq != s->last_outq) { /* shrank (to 0 too: read since the last look) */
		s->last_outq = outq > UINT32_MAX ? UINT32_MAX : (unsigned)outq;
		timer_arm(s, limit);
		return;
	}
	s->ops->timeout(s);
	session_close(s, "timeout");
}

void session_idle_restart(struct session *s)
{
	s->last_input_ms = loop_now(s->l);
	timer_arm(s, s->ops->idle_ms(s));
}

void session_backstop(struct session *s)
{
	conn_set_timeout(s->c, s->backstop_ms);
}

/* ---- parking ---- */

void session_park(struct session *s)
{
	if (s->phase != SESSION_CLOSING)
		s->phase = SESSION_PARKED;
	if (s->c != NULL) {
		conn_pause(s->c);
		conn_set_timeout(s->c, 0);
	}
}

void session_unpark(struct session *s)
{
	if (s->c == NULL || s->phase == SESSION_CLOSING)
		return;
	s->phase = SESSION_OPEN;
	session_idle_restart(s);
	session_backstop(s);
	/* Pipelined input already in rbuf: conn_resume calls on_data again. */
	conn_resume(s->c);
}

/* ---- the output limit ---- */

bool session_input_ok(struct session *s)
{
	if (s->c == NULL || s->phase != SESSION_OPEN)
		return false;
	if (conn_pending_output(s->c) <= s->output_limit) {
		if (s->out_blocked) {
			/* Drained without the event having run (a direct call):
			 * undo the block's pause here, or input stays paused. */
			s->out_blocked = false;
			session_backstop(s);
			conn_resume(s->c);
		}
		return true;
	}
	/* The client is not reading (or not as fast as it asks): run nothing
	 * more until it has. The conn's backstop (an input timeout) is off
	 * meanwhile; the idle timer watches the reader's progress instead. */
	if (!s->out_blocked)
		log_debug("%s %s output above %u octets: input waits", s->ops->name, s->ip,
			  s->output_limit);
	s->out_blocked = true;
	conn_pause(s->c);
	conn_set_timeout(s->c, 0);
	conn_notify_drain(s->c, s->output_limit / 2);
	return false;
}

bool session_output_room(const struct session *s)
{
	return s->c != NULL && s->phase != SESSION_CLOSING &&
	       conn_pending_output(s->c) < s->output_limit;
}

void session_output_wait(struct session *s)
{
	if (s->c == NULL || s->phase == SESSION_CLOSING)
		return;
	s->out_stream = true;
	conn_notify_drain(s->c, s->output_limit / 2);
}

static void on_drain(struct conn *c, void *arg)
{
	struct session *s = arg;

	if (s->c == NULL || s->phase == SESSION_CLOSING)
		return;
	if (s->out_stream) {
		s->out_stream = false;
		if (s->ops->drained != NULL)
			s->ops->drained(s);
		return;
	}
	if (!s->out_blocked)
		return;
	s->out_blocked = false;
	/* Parked meanwhile (cannot happen today: nothing runs while blocked):
	 * session_unpark resumes input. */
	if (s->phase != SESSION_OPEN)
		return;
	session_backstop(s);
	/* Buffered pipelined input: conn_resume calls on_data again. */
	conn_resume(s->c);
}

/* ---- lifetime ---- */

static void session_free(struct session *s)
{
	loop_timer_cancel(s->l, &s->timer);
	loop_timer_cancel(s->l, &s->delay);
	s->ops->free(s);
}

bool session_release(struct session *s)
{
	x_assert(s->busy > 0);
	s->busy--;
	if (s->c == NULL && s->busy == 0) {
		session_free(s);
		return true;
	}
	return false;
}

void session_close(struct session *s, const char *reason)
{
	if (s->c == NULL || s->phase == SESSION_CLOSING)
		return;
	s->phase = SESSION_CLOSING;
	if (s->close_reason == NULL)
		s->close_reason = reason;
	loop_timer_cancel(s->l, &s->timer);
	loop_timer_cancel(s->l, &s->delay);
	if (s->ops->stop != NULL)
		s->ops->stop(s);
	conn_close(s->c);
}

static void on_close(struct conn *c, void *arg, enum conn_close_reason why)
{
	struct session *s = arg;
	static const char *const whys[] = {"closed", "eof", "error", "timeout"};
	const char *reason = s->close_reason;

	if (reason == NULL)
		reason = (unsigned)why < 4 ? whys[why] : "?";
	s->ops->closed(s, reason);
	s->c = NULL;
	s->phase = SESSION_CLOSING;
	loop_timer_cancel(s->l, &s->timer);
	loop_timer_cancel(s->l, &s->delay);
	if (s->ops->stop != NULL)
		s->ops->stop(s);
	/* An async step in flight (password check, commit) still points at s:
	 * its completion frees the session (session_release). */
	if (s->busy == 0)
		session_free(s);
}

static void on_data(struct conn *c, void *arg)
{
	struct session *s = arg;

	s->last_input_ms = loop_now(s->l);
	s->ops->input(s);
}

static void on_tls(struct conn *c, void *arg)
{
	struct session *s = arg;

	if (s->list == NULL || s->c == NULL || s->phase == SESSION_CLOSING)
		return;
	s->tls = true;
	log_debug("%s %s tls %s", s->ops->name, s->ip, conn_tls_info(c));
	s->ops->tls_ready(s);
}

static const struct conn_handler session_conn_handler = {
	.on_data = on_data,
	.on_close = on_close,
	.on_tls = on_tls,
	.on_drain = on_drain,
};

/* ---- the server's list ---- */

int session_open(struct session *s, const struct session_ops *ops, struct loop *l,
		 struct session_list *list, int fd, SSL_CTX *tls)
{
	s->ops = ops;
	s->l = l;
	s->connect_ms = s->last_input_ms = loop_now(l);
	s->output_limit = SESSION_OUTPUT_LIMIT;
	s->c = conn_new(l, fd, tls, &session_conn_handler, s);
	if (s->c == NULL)
		return -1;
	snprintf(s->ip, sizeof(s->ip), "%s", s->c->peer_ip);
	s->loopback = conn_peer_is_loopback(s->c);
	s->list = list;
	s->next = list->head;
	if (list->head != NULL)
		list->head->prev = s;
	list->head = s;
	list->n++;
	return 0;
}

void session_unlink(struct session *s)
{
	struct session_list *list = s->list;

	if (list == NULL)
		return;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		list->head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	list->n--;
	s->list = NULL;
}

int session_list_count_ip(const struct session_list *list, const char *ip)
{
	int same = 0;

	/* Linear: the limits are small. */
	for (const struct session *o = list->head; o != NULL; o = o->next) {
		if (strcmp(o->ip, ip) == 0)
			same++;
	}
	return same;
}

int session_list_shutdown(struct session_list *list, void (*shut)(struct session *s, void *arg),
			  void *arg, int *busy_r)
{
	struct session *next;
	int busy = 0;

	for (struct session *s = list->head; s != NULL; s = next) {
		next = s->next;
		if (s->busy > 0)
			busy++;
		else if (s->c != NULL && s->phase != SESSION_CLOSING)
			shut(s, arg);
	}
	*busy_r = busy;
	return list->n;
}

/* ---- line framing ---- */

int session_read_line(struct buf *rb, size_t max, bool *discarding, char **line_r,
		      size_t *len_r)
{
	char *lf = rb->len > 0 ? memchr(rb->data, '\n', rb->len) : NULL;

	if (lf == NULL) {
		/* Already longer than any valid line: drop it as it comes,
		 * never buffering more than one read (RFC 5321 4.5.3.1.4). */
		if (rb->len >= max) {
			*discarding = true;
			buf_consume(rb, rb->len);
		}
		return 0;
	}
	size_t total = (size_t)(lf - rb->data) + 1;
	if (*discarding || total > max) {
		buf_consume(rb, total);
		*discarding = false;
		return -1;
	}
	/* Commands end with CRLF; a bare LF is tolerated here (not in DATA). */
	size_t len = total - 1;
	if (len > 0 && rb->data[len - 1] == '\r')
		len--;
	*line_r = xstrndup(rb->data, len);
	*len_r = len;
	buf_consume(rb, total);
	return 1;
}
