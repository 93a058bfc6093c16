/* The protocol-independent part of a server session (SMTP, POP3, IMAP): its
 * conn, its lifetime, the idle timer, parking for async steps, line framing,
 * and the server's list of sessions for connection limits.
 *
 * A protocol session embeds a struct session as its first member (so that
 * the core's callbacks can hand the same pointer back) and supplies a
 * struct session_ops. The protocol keeps its own input state (command line,
 * SASL line, DATA...); the core keeps only the phase:
 *   OPEN     the protocol's state says what input means
 *   PARKED   input paused for a step of ours (session_park);
 *            the idle timer does not count it against the client
 *   CLOSING  session_close() was called or the conn is gone; nothing more is
 *            processed and the phase never changes again
 *
 * Output: a session's pending output is bounded by s->output_limit. While
 * more than that is queued, no command runs (a protocol's input loop asks
 * session_input_ok() before each one; input is paused meanwhile) and a long
 * response (RETR, LIST, FETCH) stops producing (session_output_room(),
 * session_output_wait()). Both resume on the conn's drained event once the
 * client has read the output down to half the limit; nothing polls. A client
 * that pipelines commands and never reads cannot make us allocate: what we
 * hold is the limit plus one step's output. The idle timer counts the
 * reader's progress as activity (conn_last_output): a slow reader is not cut
 * off, one that reads nothing for the idle limit is closed.
 *
 * Lifetime: the session is freed (ops->free) once its conn is gone and no
 * async step holds it: on_close frees it if busy == 0, otherwise the last
 * session_release() does. An async step that keeps a pointer to s does
 * busy++ when it starts and calls session_release() when it ends. */
#ifndef POSTERN_CORE_SESSION_H
#define POSTERN_CORE_SESSION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "core/buf.h"
#include "core/conn.h"
#include "core/loop.h"

/* The default of s->output_limit (config: session_output_limit). */
#define SESSION_OUTPUT_LIMIT (256 * 1024)

struct session;

enum session_phase {
	SESSION_OPEN,
	SESSION_PARKED,
	SESSION_CLOSING,
};

/* The protocol's hooks; all but stop are required. s is the embedded base. */
struct session_ops {
	const char *name; /* "smtp": the prefix of the core's log lines */
	/* New bytes are in s->c->rbuf (s->last_input_ms is already updated). */
	void (*input)(struct session *s);
	/* The TLS handshake finished (implicit TLS or STARTTLS); s->tls is set. */
	void (*tls_ready)(struct session *s);
	/* The idle limit of the current protocol state, in ms. */
	uint64_t (*idle_ms)(const struct session *s);
	/* The client was idle too long: reply if the state allows it. The core
	 * closes the session with reason "timeout" right after. */
	void (*timeout)(struct session *s);
	/* The session stops (session_close, or the conn went away): end the
	 * protocol's own output and timers. May run twice; may be NULL. */
	void (*stop)(struct session *s);
	/* Optional: after session_output_wait(), the client read the output
	 * down: a long response may produce more (session_output_room). */
	void (*drained)(struct session *s);
	/* The conn is gone (called once, before s->c becomes NULL): the
	 * session's log line; reason is the close reason or the conn's. */
	void (*closed)(struct session *s, const char *reason);
	/* Frees the protocol session (the core's timers are already cancelled). */
	void (*free)(struct session *s);
};

/* A server's sessions (doubly linked), for the connection limits and for
 * closing them all at shutdown. Embedded in the protocol's server. */
struct session_list {
	struct session *head;
	int n;
};

struct session {
	const struct session_ops *ops;
	struct loop *l;
	struct conn *c;            /* NULL once the conn is gone */
	struct session_list *list; /* NULL once unlinked (see session_unlink) */
	struct session *prev, *next;
	enum session_phase phase;
	unsigned output_limit;  /* pending output above which nothing more runs */
	uint64_t connect_ms;
	uint64_t last_input_ms;
	unsigned backstop_ms;   /* the conn's own timeout, above every idle limit */
	bool discarding;        /* dropping an over-long line up to its LF */
	/* one-bit flags: they share a word with backstop_ms and discarding,
	 * so an idle connection costs no more for them */
	bool out_blocked : 1;   /* input paused: output above the limit */
	bool out_stream : 1;    /* a long response waits for the drained event */
	bool greeted : 1;       /* the banner was sent */
	bool tls : 1;
	bool loopback : 1;
	struct timer *timer;    /* idle timeout (or a protocol's pre-greet delay) */
	struct timer *delay;    /* a protocol's delayed reply (failed login) */
	int busy;               /* async steps in flight holding a pointer to s */
	/* conn_kernel_outq() when the idle timer last looked: a reader still
	 * draining the kernel's copy of our output is not idle */
	unsigned last_outq;
	const char *close_reason; /* static string; the first one given wins */
	char ip[64];
};

/* Starts s on an accepted socket. s must be zeroed apart from protocol
 * fields; ops, l and list must outlive s (list until session_unlink).
 * Makes the conn (it takes fd; with tls not NULL the conn starts with
 * implicit TLS and ops->tls_ready follows the handshake), fills in the
 * times, ip and loopback, and links s at the head of list. Returns 0, or -1
 * if the conn could not be made (s is not linked; the caller frees it). */
int session_open(struct session *s, const struct session_ops *ops, struct loop *l,
		 struct session_list *list, int fd, SSL_CTX *tls);
/* Takes s off its list (idempotent). The protocol calls it when s must stop
 * counting toward the limits; afterwards the idle timer and on_tls ignore s. */
void session_unlink(struct session *s);
/* Sessions in list whose client address is ip. */
int session_list_count_ip(const struct session_list *list, const char *ip);
/* One pass of a server's shutdown: shut(s, arg) for every session of list
 * that waits on nothing (no async step in flight, conn open, not closing);
 * a busy one is left to finish its step and get its real answer (the
 * protocol closes it then, or the next pass does). shut may close s, not
 * free it. Returns the sessions still on the list; *busy_r the busy ones. */
int session_list_shutdown(struct session_list *list, void (*shut)(struct session *s, void *arg),
			  void *arg, int *busy_r);

/* Closes: no more input is processed, output already queued is flushed.
 * Does nothing if the conn is gone or the session is already closing.
 * reason (static) is kept for the log line unless one was given before. */
void session_close(struct session *s, const char *reason);
/* Drops the hold of an async step (busy--); true if the session was freed
 * and the caller must not touch it any more. */
bool session_release(struct session *s);

/* Parks for an async step or while streaming a long response: input, the
 * idle timer and the conn's backstop timeout wait until session_unpark(). A
 * streaming caller keeps its own no-progress timeout. */
void session_park(struct session *s);
/* Back to OPEN: the idle timer restarts, the backstop is set again and
 * pipelined input already received is processed (ops->input, from the loop).
 * Does nothing once closing. The caller sets its own input state first. */
void session_unpark(struct session *s);

/* For a protocol's input loop, before each command (or unit of input): true
 * if it may run now. false if the session is gone, closing or parked, or its
 * pending output is above s->output_limit: then input is paused and, once
 * the client has read enough, ops->input is called again (from the loop) for
 * what is already buffered. */
bool session_input_ok(struct session *s);
/* For a long response: true while the pending output is below the limit. */
bool session_output_room(const struct session *s);
/* For a long response that found no room: ops->drained is called (once, from
 * the loop) when the client has read the output down to half the limit. The
 * session is normally parked meanwhile; the idle limit then applies to the
 * reader's progress (a reader that stalls for it is closed by the idle
 * timer: ops->timeout, then close). */
void session_output_wait(struct session *s);

/* Counts the client's idle time from now, with the limit of the current
 * state (ops->idle_ms). */
void session_idle_restart(struct session *s);
/* (Re)sets the conn's backstop timeout to s->backstop_ms. */
void session_backstop(struct session *s);

/* Frames one line at the start of rb, at most max octets including its LF;
 * a CR before the LF is removed, a bare LF is accepted.
 *  1: the line (*len_r octets) is consumed from rb; *line_r is its copy,
 *     NUL-terminated (xmalloc: the caller frees it, wiping it first, as it
 *     may hold a password). A NUL byte in the line ends the copy early:
 *     then strlen(*line_r) < *len_r.
 *  0: need more input (an over-long partial line is consumed as it comes
 *     and *discarding is set: at most one read is ever buffered).
 * -1: an over-long line ended and was dropped: report it once. */
int session_read_line(struct buf *rb, size_t max, bool *discarding, char **line_r,
		      size_t *len_r);

#endif
