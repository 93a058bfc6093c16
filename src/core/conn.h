/* A buffered, non-blocking stream connection on the loop, with optional TLS
 * (OpenSSL). The protocol session above it sees three things: bytes that
 * arrived (in conn->rbuf, to consume as it likes), "output drained" (when it
 * asked, see conn_notify_drain) and "closed".
 *
 * Ownership: the conn owns its fd, SSL and buffers. After the on_close callback
 * returns, the conn is freed: the session must drop its pointer there.
 * on_close is called exactly once, always from the loop (never from inside a
 * conn_* call made by the session), so a session may call conn_close() from
 * anywhere, including its on_data callback. The same holds for on_drain: it
 * never runs inside a conn_* call. */
#ifndef POSTERN_CORE_CONN_H
#define POSTERN_CORE_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include "core/buf.h"
#include "core/loop.h"

enum conn_close_reason {
	CONN_CLOSED_BY_US,  /* conn_close() was called and the output was flushed */
	CONN_EOF,           /* the peer closed */
	CONN_ERROR,         /* socket or TLS error */
	CONN_TIMEOUT,       /* idle timeout */
};

struct conn;

struct conn_handler {
	/* New bytes were appended to conn->rbuf. Not called while paused. */
	void (*on_data)(struct conn *c, void *arg);
	/* The connection is gone; c is freed right after this returns. */
	void (*on_close)(struct conn *c, void *arg, enum conn_close_reason why);
	/* Optional: TLS handshake finished (after conn_starttls or for implicit TLS). */
	void (*on_tls)(struct conn *c, void *arg);
	/* Optional: the output fell to the mark given to conn_notify_drain().
	 * Writes made here leave in one batch when it returns. */
	void (*on_drain)(struct conn *c, void *arg);
};

struct conn {
	struct buf rbuf;        /* received, not yet consumed (plaintext after TLS) */
	char peer_ip[64];       /* textual address of the peer, no port */
	int peer_port;
	char local_ip[64];
	int local_port;
	/* private */
	struct conn_priv *priv;
};

/* Takes ownership of fd (made non-blocking here). If tls_ctx is not NULL the
 * connection starts with a server-side TLS handshake (implicit TLS); on_tls is
 * called when it completes, and no on_data before that. */
struct conn *conn_new(struct loop *l, int fd, SSL_CTX *tls_ctx, const struct conn_handler *h,
		      void *arg);

/* Queues bytes for sending; sends as soon as the socket allows. */
void conn_write(struct conn *c, const void *p, size_t n);
void conn_writes(struct conn *c, const char *s);
/* Bytes queued and not yet sent. */
size_t conn_pending_output(const struct conn *c);
/* One-shot: on_drain is called once, from the loop, as soon as the pending
 * output is at most low bytes (at once, i.e. on the next loop pass, if it
 * already is). A new call replaces the mark; nothing is called once the conn
 * is closing. This is how a producer waits for a client that reads slowly
 * without polling (a session's output limit, RETR, long listings). */
void conn_notify_drain(struct conn *c, size_t low);
/* Loop time (loop_now) of the last write that moved bytes to the socket, or
 * of the conn's creation: a reader's progress, for no-progress timeouts. */
uint64_t conn_last_output(const struct conn *c);
/* Bytes the kernel still holds for the peer (sent and not yet acknowledged,
 * or not yet sent; SIOCOUTQ), 0 if unknown. A long response handed to the
 * kernel is still being read while this shrinks. */
size_t conn_kernel_outq(const struct conn *c);

/* Starts a server-side TLS handshake now. Anything already in rbuf (plaintext
 * pipelined after STARTTLS) is discarded, as RFC 3207 section 4.2 and the
 * command-injection attacks require; on_tls is called when it completes.
 * The caller must have flushed its reply first: conn_starttls sends queued
 * output in plaintext before starting TLS. Returns 0 or -1. */
int conn_starttls(struct conn *c, SSL_CTX *ctx);
bool conn_is_tls(const struct conn *c);
/* Client side (the SMTP client, src/smtp/client.c): starts a client TLS
 * handshake now, for STARTTLS after the server's 220 or at once on a fresh
 * conn for implicit TLS. Anything already in rbuf is discarded (RFC 3207
 * 4.2). sni: the server's name for SNI and, when verify, for the name check
 * (X509_VERIFY_PARAM host); a failed verification ends the handshake and
 * the conn closes with CONN_ERROR (conn_tls_error says why). on_tls follows
 * success. Returns 0 or -1. */
int conn_starttls_client(struct conn *c, SSL_CTX *ctx, const char *sni, bool verify);
/* The last TLS failure in words ("certificate verify failed: ..."), or "". */
const char *conn_tls_error(const struct conn *c);
/* True after a successful handshake whose peer certificate was verified. */
bool conn_tls_verified(const struct conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" when not TLS. */
const char *conn_tls_info(const struct conn *c);

/* Compression of the whole stream from now on, both ways: raw deflate
 * (core/zstream.h), inside TLS when TLS is on (applied before encryption).
 * Output already queued leaves as it is (the protocol's "OK, compressing
 * from now": write it before this call); anything in rbuf and everything
 * read from now is compressed input, decoded into rbuf at most 64 KB at a
 * time. Each flush of a burst ends with a sync flush. conn_pending_output
 * counts compressed bytes. Returns 0, or -1 if already on or not open. */
int conn_compress(struct conn *c);
bool conn_is_compressed(const struct conn *c);
/* Bytes the compressor and decompressor hold (0 when off), for measurement. */
size_t conn_compress_memory(const struct conn *c);

/* True if the peer is on loopback (127.0.0.0/8, ::1, or IPv4-mapped 127/8). */
bool conn_peer_is_loopback(const struct conn *c);

/* Stop / restart delivering on_data (input stays in the kernel; TCP backpressure). */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
/* If rbuf has unconsumed bytes after resume, on_data is called again soon (from the loop). */

/* Idle timeout: the connection closes with CONN_TIMEOUT after ms milliseconds
 * without receiving any byte. 0 disables. Restarted by each read and by this
 * call (a timeout set again after a long pause counts from now). */
void conn_set_timeout(struct conn *c, unsigned ms);

/* Flushes pending output, then closes; on_close(CONN_CLOSED_BY_US) follows.
 * Further input is ignored. Idempotent. */
void conn_close(struct conn *c);
/* Tears the connection down at once, whatever output is pending, and calls
 * on_close before returning (c is freed then): for shutdown, once the loop
 * that would run a close no longer does. */
void conn_abort(struct conn *c);

#endif
