/* Buffered non-blocking connection with optional server-side TLS.
 *
 * Shape of the state machine:
 *   PLAIN/TLS open  --conn_starttls-->  STARTTLS_FLUSH (plaintext output drains,
 *                                       nothing is read) --> HANDSHAKE --> open
 *   open --conn_close / peer EOF with output pending--> closing (flush, TLS
 *   close_notify, then finish)
 *   anything --error/timeout--> finish
 * finish() closes the socket at once but defers on_close to a 0 ms timer, so
 * on_close always runs from the loop and never inside a conn_* call.
 *
 * Drained: conn_notify_drain() arms a one-shot mark; whenever a flush leaves
 * the pending output at or below it, the kick timer (0 ms) delivers on_drain
 * from the loop. One path for every case (a socket-writable event, a flush
 * inside a session's own conn_write, a mark already met when armed), and a
 * fast reader's refills go through the loop, never recursing.
 *
 * Memory: an idle conn holds only this struct and an empty wbuf; input is read
 * into a stack buffer and appended to rbuf, and wbuf is freed once drained. */
#include "core/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "core/zstream.h"

#define CONN_READ_CHUNK 16384
#define CONN_READ_BATCH (4 * CONN_READ_CHUNK)   /* per wake, for fairness */
#define CONN_WBUF_HIGH (1024 * 1024)            /* stop reading above this */
#define CONN_WBUF_LOW (256 * 1024)              /* resume reading below this */
#define CONN_WBUF_COMPACT (64 * 1024)           /* drop sent prefix past this */
#define CONN_TLS_WRITE_MAX (16 * 1024)          /* one record per SSL_write */
#define CONN_FLUSH_DEADLINE_MS 10000
/* Compression (conn_compress): decoded input is delivered up to this much
 * at a time, and the socket is not read while this much compressed input
 * waits, so a decompression bomb costs these bounds, not its expansion. */
#define CONN_Z_RBUF_MAX (64 * 1024)
#define CONN_Z_IN_MAX CONN_READ_BATCH

enum conn_state {
	CONN_ST_OPEN,           /* plaintext or TLS, exchanging data */
	CONN_ST_STARTTLS_FLUSH, /* plaintext output draining before the handshake */
	CONN_ST_HANDSHAKE,      /* SSL_accept in progress */
	CONN_ST_DEAD,           /* fd closed, on_close pending */
};

/* Packed by size (an idle conn is this struct): the enums are kept in bytes. */
struct conn_priv {
	struct loop *l;
	int fd;
	uint32_t drain_mark; /* see conn_notify_drain (clamped to 32 bits) */
	const struct conn_handler *h;
	void *arg;

	SSL *ssl;
	SSL_CTX *pending_ctx; /* STARTTLS: the context to use once output drained */
	char *tls_info;
	struct conn_tls_client *tlsc; /* client side only (conn_starttls_client) */
	struct zstream *z; /* conn_compress: both directions deflated */

	struct buf wbuf;
	size_t woff;     /* bytes of wbuf already sent */
	size_t tls_wlen; /* length of an SSL_write to retry unchanged, or 0 */

	uint32_t events; /* currently registered with the loop */
	uint8_t state;        /* enum conn_state */
	uint8_t close_reason; /* enum conn_close_reason */
	uint8_t dead_reason;  /* enum conn_close_reason */
	bool registered;
	bool paused;
	bool pause_armed; /* input arrived while paused: stop watching for it */
	bool throttled;       /* output backlog above CONN_WBUF_HIGH */
	bool eof;             /* peer sent FIN / close_notify */
	bool closing;         /* flush, then finish with close_reason */
	bool shutdown_sent;   /* TLS close_notify written */
	bool in_data;         /* inside on_data: coalesce writes */
	bool rd_want_write;   /* SSL_read needs the socket writable */
	bool wr_want_read;    /* SSL_write needs the socket readable */
	bool op_want_write;   /* handshake/shutdown needs the socket writable */
	bool drain_armed;     /* on_drain wanted at drain_mark */
	bool kick_input;      /* the kick is for input, not only for on_drain */

	unsigned timeout_ms;
	uint64_t last_rx;
	uint64_t last_tx; /* last write that moved bytes */
	struct timer *idle_timer;
	struct timer *flush_timer;
	struct timer *kick_timer;
	struct timer *close_timer;
};

/* Client-side TLS (outbound SMTP): what conn_starttls_client asked for and
 * what came of it. Allocated only by the client, so a server conn stays
 * the size it was. */
struct conn_tls_client {
	char *sni;
	bool verify;
	bool verified;
	char *error;
};

struct conn_full {
	struct conn c;
	struct conn_priv p;
};

static void conn_on_io(void *arg, uint32_t events);
static void conn_flush(struct conn *c);

/* ---- small helpers ---- */

static size_t conn_wpending(const struct conn_priv *p)
{
	return p->wbuf.len - p->woff;
}

static void conn_log_ssl_errors(struct conn *c, const char *what)
{
	unsigned long e;
	char msg[256];
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, msg, sizeof msg);
		log_debug("conn %s:%d: %s: %s", c->peer_ip, c->peer_port, what, msg);
	}
}

static void conn_on_close_timer(void *arg)
{
	struct conn *c = arg;
	struct conn_priv *p = c->priv;
	p->close_timer = NULL;
	p->h->on_close(c, p->arg, p->dead_reason);
	buf_free(&c->rbuf);
	buf_free(&p->wbuf);
	free(p->tls_info);
	zstream_free(&p->z);
	if (p->tlsc) {
		free(p->tlsc->sni);
		free(p->tlsc->error);
		free(p->tlsc);
	}
	free(c);
}

/* Tears the connection down now; on_close follows from the loop. */
static void conn_finish(struct conn *c, enum conn_close_reason why)
{
	struct conn_priv *p = c->priv;
	if (p->state == CONN_ST_DEAD)
		return;
	p->state = CONN_ST_DEAD;
	p->dead_reason = why;
	if (p->registered)
		loop_del(p->l, p->fd);
	loop_timer_cancel(p->l, &p->idle_timer);
	loop_timer_cancel(p->l, &p->flush_timer);
	loop_timer_cancel(p->l, &p->kick_timer);
	p->drain_armed = false;
	if (p->ssl) {
		ERR_clear_error();
		SSL_free(p->ssl);
		p->ssl = NULL;
	}
	close(p->fd);
	p->fd = -1;
	zstream_free(&p->z);
	buf_free(&p->wbuf);
	p->woff = 0;
	p->close_timer = loop_timer_add(p->l, 0, conn_on_close_timer, c);
}

static bool conn_can_read(const struct conn_priv *p)
{
	switch (p->state) {
	case CONN_ST_HANDSHAKE:
		return !p->op_want_write;
	case CONN_ST_OPEN:
		if (p->wr_want_read)
			return true;
		if (p->eof)
			return false;
		if (p->closing)
			return true; /* read and discard, so close() does not send RST */
		/* compressed input waiting for the session to take its
		 * decoded bytes: TCP backpressure, as for a paused session */
		if (p->z && zstream_pending_input(p->z) >= CONN_Z_IN_MAX)
			return false;
		return !p->paused && !p->throttled;
	default:
		/* STARTTLS_FLUSH: not a byte may be read as plaintext now. */
		return false;
	}
}

static bool conn_can_write(const struct conn_priv *p)
{
	switch (p->state) {
	case CONN_ST_HANDSHAKE:
		return p->op_want_write;
	case CONN_ST_OPEN:
		if (p->rd_want_write || p->op_want_write)
			return true;
		/* Output written outside on_data leaves at the kick, this
		 * round (conn_write): not watched for until a send would
		 * block, which saves an epoll_ctl pair per reply that a
		 * completion writes (a commit's 250). */
		if (p->kick_timer != NULL && !(p->events & LOOP_WRITE))
			return false;
		return conn_wpending(p) > 0 && !p->wr_want_read;
	case CONN_ST_STARTTLS_FLUSH:
		return conn_wpending(p) > 0;
	default:
		return false;
	}
}

/* A pause is lazy: the socket stays watched until input actually arrives
 * while paused. Most pauses (a commit, a password check) end before the
 * client sends anything, and this saves two epoll_ctl calls for each. */
static bool conn_watch_read(const struct conn_priv *p)
{
	if (p->state == CONN_ST_OPEN && p->paused && !p->pause_armed && !p->eof &&
	    !p->closing && !p->throttled)
		return true;
	return conn_can_read(p);
}

static void conn_update_events(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->state == CONN_ST_DEAD)
		return;
	uint32_t ev = (conn_watch_read(p) ? LOOP_READ : 0) | (conn_can_write(p) ? LOOP_WRITE : 0);
	if (ev == p->events)
		return;
	if (loop_mod(p->l, p->fd, ev) < 0) {
		log_warn("conn %s:%d: epoll mod: %s", c->peer_ip, c->peer_port, strerror(errno));
		conn_finish(c, CONN_ERROR);
		return;
	}
	p->events = ev;
}

static void conn_on_kick(void *arg);

/* Comes back from the loop: for input (re-deliver rbuf, read what OpenSSL
 * holds) when input is true, and to deliver on_drain if it is due. */
static void conn_kick(struct conn *c, bool input)
{
	struct conn_priv *p = c->priv;
	if (p->state == CONN_ST_DEAD)
		return;
	if (input)
		p->kick_input = true;
	if (p->kick_timer == NULL)
		p->kick_timer = loop_timer_add(p->l, 0, conn_on_kick, c);
}

static bool conn_drain_due(const struct conn_priv *p)
{
	return p->drain_armed && p->state == CONN_ST_OPEN && !p->closing &&
	       conn_wpending(p) <= p->drain_mark;
}

/* ---- addresses ---- */

static void conn_addr_str(const struct sockaddr_storage *ss, char *ip, size_t iplen, int *port_r)
{
	ip[0] = '\0';
	*port_r = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, (socklen_t)iplen);
		*port_r = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;
		*port_r = ntohs(sin6->sin6_port);
		/* Show ::ffff:1.2.3.4 as 1.2.3.4: policy (DNSBL, SPF, limits) keys on it. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, ip, (socklen_t)iplen);
	}
}

static void conn_fill_addrs(struct conn *c, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		conn_addr_str(&ss, c->peer_ip, sizeof c->peer_ip, &c->peer_port);
	len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		conn_addr_str(&ss, c->local_ip, sizeof c->local_ip, &c->local_port);
}

/* ---- timers ---- */

static void conn_on_idle(void *arg)
{
	struct conn *c = arg;
	struct conn_priv *p = c->priv;
	p->idle_timer = NULL;
	if (p->timeout_ms == 0 || p->closing)
		return;
	uint64_t now = loop_now(p->l);
	uint64_t deadline = p->last_rx + p->timeout_ms;
	if (now >= deadline) {
		log_debug("conn %s:%d: idle timeout", c->peer_ip, c->peer_port);
		conn_finish(c, CONN_TIMEOUT);
		return;
	}
	/* Reads only move last_rx; the timer is re-armed lazily here, so a busy
	 * connection does not touch the timer heap on every read. */
	p->idle_timer = loop_timer_add(p->l, deadline - now, conn_on_idle, c);
}

void conn_set_timeout(struct conn *c, unsigned ms)
{
	struct conn_priv *p = c->priv;
	if (p->state == CONN_ST_DEAD)
		return;
	loop_timer_cancel(p->l, &p->idle_timer);
	p->timeout_ms = ms;
	if (ms == 0 || p->closing)
		return;
	/* Counted from now: after a long pause (a slow download, a reader that
	 * held the session on its output) the old last_rx is not the client's
	 * idleness, and must not close the conn the moment it is set again. */
	p->last_rx = loop_now(p->l);
	p->idle_timer = loop_timer_add(p->l, ms, conn_on_idle, c);
}

static void conn_on_flush_deadline(void *arg)
{
	struct conn *c = arg;
	c->priv->flush_timer = NULL;
	log_debug("conn %s:%d: flush deadline passed, %zu bytes unsent", c->peer_ip, c->peer_port,
		  conn_wpending(c->priv));
	conn_finish(c, CONN_TIMEOUT);
}

/* ---- TLS ---- */

static void conn_tls_done(struct conn *c)
{
	struct conn_priv *p = c->priv;
	p->state = CONN_ST_OPEN;
	p->op_want_write = false;
	free(p->tls_info);
	p->tls_info = xasprintf("%s %s", SSL_get_version(p->ssl), SSL_get_cipher_name(p->ssl));
	if (p->tlsc)
		p->tlsc->verified = p->tlsc->verify && SSL_get_verify_result(p->ssl) == X509_V_OK;
	log_debug("conn %s:%d: TLS established: %s", c->peer_ip, c->peer_port, p->tls_info);
}

static int conn_tls_begin(struct conn *c, SSL_CTX *ctx)
{
	struct conn_priv *p = c->priv;
	p->ssl = SSL_new(ctx);
	if (p->ssl == NULL || SSL_set_fd(p->ssl, p->fd) != 1) {
		conn_log_ssl_errors(c, "SSL_new");
		SSL_free(p->ssl);
		p->ssl = NULL;
		return -1;
	}
	if (p->tlsc) {
		/* RFC 6066 3: SNI is a host name, never an address literal. */
		const char *sni = p->tlsc->sni;
		if (sni && sni[0] && strspn(sni, "0123456789.") != strlen(sni) &&
		    strchr(sni, ':') == NULL)
			SSL_set_tlsext_host_name(p->ssl, sni);
		if (p->tlsc->verify) {
			/* RFC 6125 via OpenSSL: the chain, then the reference
			 * name against the certificate's DNS names. */
			SSL_set_verify(p->ssl, SSL_VERIFY_PEER, NULL);
			X509_VERIFY_PARAM *vp = SSL_get0_param(p->ssl);
			X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (sni == NULL || X509_VERIFY_PARAM_set1_host(vp, sni, 0) != 1) {
				SSL_free(p->ssl);
				p->ssl = NULL;
				return -1;
			}
		}
		SSL_set_connect_state(p->ssl);
		/* The client speaks first: the ClientHello goes out when the
		 * socket is writable (at once), from the loop. */
		p->state = CONN_ST_HANDSHAKE;
		p->op_want_write = true;
		return 0;
	} else {
		SSL_set_accept_state(p->ssl);
	}
	p->state = CONN_ST_HANDSHAKE;
	p->op_want_write = false;
	return 0;
}

/* Returns true when the handshake finished (and on_tls ran). */
static bool conn_handshake(struct conn *c)
{
	struct conn_priv *p = c->priv;
	ERR_clear_error();
	int r = SSL_do_handshake(p->ssl);
	if (r == 1) {
		conn_tls_done(c);
		if (p->closing) /* conn_close during the handshake: just flush */
			return true;
		if (p->h->on_tls) {
			p->in_data = true;
			p->h->on_tls(c, p->arg);
			p->in_data = false;
		}
		return true;
	}
	int err = SSL_get_error(p->ssl, r);
	if (err == SSL_ERROR_WANT_READ) {
		p->op_want_write = false;
		return false;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		p->op_want_write = true;
		return false;
	}
	log_debug("conn %s:%d: TLS handshake failed (err %d, errno %d)", c->peer_ip,
		  c->peer_port, err, errno);
	if (p->tlsc && p->tlsc->error == NULL) {
		long vr = SSL_get_verify_result(p->ssl);
		unsigned long e = ERR_peek_error();
		char msg[256] = "";
		if (e)
			ERR_error_string_n(e, msg, sizeof msg);
		if (p->tlsc->verify && vr != X509_V_OK)
			p->tlsc->error = xasprintf("certificate verify failed: %s",
						   X509_verify_cert_error_string(vr));
		else if (msg[0])
			p->tlsc->error = xasprintf("TLS handshake failed: %s", msg);
		else
			p->tlsc->error = xasprintf("TLS handshake failed: %s",
						   err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN
							   ? "connection closed"
							   : "protocol error");
	}
	conn_log_ssl_errors(c, "handshake");
	conn_finish(c, err == SSL_ERROR_ZERO_RETURN ? CONN_EOF : CONN_ERROR);
	return false;
}

/* ---- input ---- */

/* One read. Returns >0 bytes, 0 would block, -1 EOF (p->eof set) or finished. */
static ssize_t conn_read_once(struct conn *c, char *buf, size_t n)
{
	struct conn_priv *p = c->priv;
	if (p->ssl == NULL) {
		for (;;) {
			ssize_t r = read(p->fd, buf, n);
			if (r > 0)
				return r;
			if (r == 0) {
				p->eof = true;
				return -1;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			log_debug("conn %s:%d: read: %s", c->peer_ip, c->peer_port,
				  strerror(errno));
			conn_finish(c, CONN_ERROR);
			return -1;
		}
	}
	ERR_clear_error();
	int r = SSL_read(p->ssl, buf, (int)n);
	p->rd_want_write = false;
	if (r > 0)
		return r;
	int err = SSL_get_error(p->ssl, r);
	switch (err) {
	case SSL_ERROR_WANT_READ:
		return 0;
	case SSL_ERROR_WANT_WRITE:
		p->rd_want_write = true;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		p->eof = true;
		return -1;
	default:
		log_debug("conn %s:%d: TLS read failed (err %d, errno %d)", c->peer_ip,
			  c->peer_port, err, errno);
		conn_log_ssl_errors(c, "SSL_read");
		conn_finish(c, CONN_ERROR);
		return -1;
	}
}

/* Reads what is available (bounded per wake). Returns bytes appended. */
static size_t conn_read_batch(struct conn *c)
{
	struct conn_priv *p = c->priv;
	char buf[CONN_READ_CHUNK];
	size_t total = 0;
	while (total < CONN_READ_BATCH) {
		if (p->z && !p->closing && zstream_pending_input(p->z) >= CONN_Z_IN_MAX)
			break;
		ssize_t r = conn_read_once(c, buf, sizeof buf);
		if (r <= 0)
			break;
		total += (size_t)r;
		if (p->closing)
			continue;
		if (p->z)
			zstream_feed(p->z, buf, (size_t)r); /* decoded by conn_inflate */
		else
			buf_append(&c->rbuf, buf, (size_t)r);
		/* A short read took all the socket had: another would only
		 * say EAGAIN (a read per command more); epoll is
		 * level-triggered, so what comes next wakes us. Not under
		 * TLS, where a short SSL_read is one record and the next may
		 * be waiting inside OpenSSL, unseen by epoll. */
		if (p->ssl == NULL && (size_t)r < sizeof buf)
			break;
	}
	if (total > 0)
		p->last_rx = loop_now(p->l);
	/* Decrypted bytes left inside OpenSSL do not make the fd readable: come
	 * back for them instead of waiting for more traffic. */
	if (p->state == CONN_ST_OPEN && p->ssl && total >= CONN_READ_BATCH &&
	    SSL_has_pending(p->ssl))
		conn_kick(c, true);
	return total;
}

/* Compressed input: decodes queued bytes into rbuf, at most up to
 * CONN_Z_RBUF_MAX. Returns the bytes decoded, -1 when the conn finished
 * (corrupt stream). */
static ssize_t conn_inflate(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->z == NULL || p->state != CONN_ST_OPEN || p->closing)
		return 0;
	ssize_t r = zstream_inflate(p->z, &c->rbuf, CONN_Z_RBUF_MAX);
	if (r < 0) {
		log_debug("conn %s:%d: corrupt compressed input", c->peer_ip, c->peer_port);
		conn_finish(c, CONN_ERROR);
		return -1;
	}
	return r;
}

static void conn_deliver(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->state != CONN_ST_OPEN || p->paused || p->closing || c->rbuf.len == 0)
		return;
	p->in_data = true;
	p->h->on_data(c, p->arg);
	p->in_data = false;
	/* More compressed input than one delivery's worth: the rest is decoded
	 * as the session takes what it has, from the loop (never recursing). */
	if (p->z && zstream_pending_input(p->z) > 0 && c->rbuf.len < CONN_Z_RBUF_MAX &&
	    !p->paused && p->state == CONN_ST_OPEN && !p->closing)
		conn_kick(c, true);
	/* Replies to a pipelined batch leave in as few writes as possible. */
	conn_flush(c);
}

/* After the peer's EOF, once the session has seen everything it sent. */
static void conn_check_eof(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (!p->eof || p->state == CONN_ST_DEAD || p->closing || p->paused)
		return;
	/* compressed input the session has not seen yet comes first (the
	 * idle timeout ends a session that never takes it) */
	if (p->z && zstream_pending_input(p->z) > 0 && p->state == CONN_ST_OPEN)
		return;
	if (p->state != CONN_ST_OPEN || conn_wpending(p) == 0) {
		conn_finish(c, CONN_EOF);
		return;
	}
	/* A half-closed peer may still read our replies to what it sent. */
	p->closing = true;
	p->close_reason = CONN_EOF;
	loop_timer_cancel(p->l, &p->idle_timer);
	p->flush_timer = loop_timer_add(p->l, CONN_FLUSH_DEADLINE_MS, conn_on_flush_deadline, c);
	conn_flush(c);
}

static void conn_input(struct conn *c, bool force_deliver)
{
	struct conn_priv *p = c->priv;
	size_t got = 0;
	if (conn_can_read(p) && p->state == CONN_ST_OPEN && !p->wr_want_read)
		got = conn_read_batch(c);
	if (p->state == CONN_ST_DEAD)
		return;
	ssize_t z = conn_inflate(c);
	if (z < 0)
		return;
	if (p->z)
		got = (size_t)z; /* what was read is not yet what the session sees */
	if (got > 0 || force_deliver)
		conn_deliver(c);
	conn_check_eof(c);
}

/* on_drain, if due; like on_data, its writes leave in one flush. */
static void conn_drain(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (!conn_drain_due(p))
		return;
	p->drain_armed = false;
	p->in_data = true;
	p->h->on_drain(c, p->arg);
	p->in_data = false;
	conn_flush(c);
}

static void conn_on_kick(void *arg)
{
	struct conn *c = arg;
	struct conn_priv *p = c->priv;
	bool input = p->kick_input;
	p->kick_timer = NULL;
	p->kick_input = false;
	if (input)
		conn_input(c, true);
	conn_drain(c);
	conn_flush(c); /* what conn_write left for the end of the round */
	conn_update_events(c);
}

/* ---- output ---- */

/* One write attempt. Returns bytes sent, 0 would block, -1 finished. */
static ssize_t conn_write_once(struct conn *c)
{
	struct conn_priv *p = c->priv;
	const char *data = p->wbuf.data + p->woff;
	size_t n = conn_wpending(p);
	if (p->ssl == NULL || p->state == CONN_ST_STARTTLS_FLUSH) {
		for (;;) {
			ssize_t r = send(p->fd, data, n, MSG_NOSIGNAL);
			if (r >= 0)
				return r;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			log_debug("conn %s:%d: write: %s", c->peer_ip, c->peer_port,
				  strerror(errno));
			conn_finish(c, CONN_ERROR);
			return -1;
		}
	}
	/* After WANT_*, OpenSSL requires the same length again; the buffer may
	 * have moved (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) but its bytes not. */
	if (p->tls_wlen == 0)
		p->tls_wlen = n < CONN_TLS_WRITE_MAX ? n : CONN_TLS_WRITE_MAX;
	ERR_clear_error();
	int r = SSL_write(p->ssl, data, (int)p->tls_wlen);
	p->wr_want_read = false;
	if (r > 0) {
		p->tls_wlen = 0;
		return r;
	}
	int err = SSL_get_error(p->ssl, r);
	if (err == SSL_ERROR_WANT_WRITE)
		return 0;
	if (err == SSL_ERROR_WANT_READ) {
		p->wr_want_read = true;
		return 0;
	}
	log_debug("conn %s:%d: TLS write failed (err %d, errno %d)", c->peer_ip, c->peer_port,
		  err, errno);
	conn_log_ssl_errors(c, "SSL_write");
	conn_finish(c, CONN_ERROR);
	return -1;
}

static void conn_update_throttle(struct conn *c)
{
	struct conn_priv *p = c->priv;
	size_t pending = conn_wpending(p);
	if (!p->throttled && pending > CONN_WBUF_HIGH) {
		p->throttled = true;
	} else if (p->throttled && pending < CONN_WBUF_LOW) {
		p->throttled = false;
		if (p->ssl)
			conn_kick(c, true); /* records may wait inside OpenSSL */
	}
}

/* Finishes a close once the output is gone: TLS close_notify (best effort,
 * we do not wait for the peer's), discard unread input so close() sends FIN
 * rather than RST (which could destroy our last reply in flight), done. */
static void conn_close_finish(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->ssl && p->state == CONN_ST_OPEN && !p->shutdown_sent) {
		ERR_clear_error();
		int r = SSL_shutdown(p->ssl);
		if (r < 0 && SSL_get_error(p->ssl, r) == SSL_ERROR_WANT_WRITE) {
			p->op_want_write = true;
			return;
		}
		p->shutdown_sent = true;
		p->op_want_write = false;
	}
	char buf[4096];
	for (int i = 0; i < 16 && read(p->fd, buf, sizeof buf) > 0; i++)
		;
	shutdown(p->fd, SHUT_WR);
	conn_finish(c, p->close_reason);
}

static void conn_flush(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->state != CONN_ST_OPEN && p->state != CONN_ST_STARTTLS_FLUSH)
		return;
	/* The end of a burst: what the compressor holds goes out too, so the
	 * peer never waits for bytes kept inside zlib (RFC 4978 4). */
	if (p->z && zstream_dirty(p->z) && zstream_flush(p->z, &p->wbuf) < 0) {
		conn_finish(c, CONN_ERROR);
		return;
	}
	while (conn_wpending(p) > 0) {
		ssize_t r = conn_write_once(c);
		if (r < 0)
			return;
		if (r == 0)
			break;
		p->woff += (size_t)r;
		p->last_tx = loop_now(p->l);
	}
	if (conn_wpending(p) == 0) {
		/* Idle conns hold no output memory. */
		buf_free(&p->wbuf);
		p->woff = 0;
		if (p->state == CONN_ST_STARTTLS_FLUSH) {
			SSL_CTX *ctx = p->pending_ctx;
			p->pending_ctx = NULL;
			if (conn_tls_begin(c, ctx) < 0) {
				conn_finish(c, CONN_ERROR);
				return;
			}
		} else if (p->closing) {
			conn_close_finish(c);
			if (p->state == CONN_ST_DEAD)
				return;
		}
	} else if (p->woff >= CONN_WBUF_COMPACT && p->tls_wlen == 0) {
		buf_consume(&p->wbuf, p->woff);
		p->woff = 0;
	}
	conn_update_throttle(c);
	conn_update_events(c);
	if (conn_drain_due(p))
		conn_kick(c, false);
}

void conn_write(struct conn *c, const void *data, size_t n)
{
	struct conn_priv *p = c->priv;
	if (p->state == CONN_ST_DEAD || p->shutdown_sent || n == 0)
		return;
	if (p->z == NULL) {
		buf_append(&p->wbuf, data, n);
	} else if (zstream_deflate(p->z, data, n, &p->wbuf) < 0) {
		log_warn("conn %s:%d: deflate failed", c->peer_ip, c->peer_port);
		conn_finish(c, CONN_ERROR);
		return;
	}
	/* Inside on_data the flush happens once, after the handler returns. */
	if (p->in_data)
		return;
	/* Elsewhere (a completion from a worker or the committer, a timer) it
	 * happens once at the end of this loop round (conn_on_kick): a reply of
	 * many lines, or the replies of several completions that came back
	 * together, leave in one send() rather than one per line. */
	if (p->state == CONN_ST_OPEN || p->state == CONN_ST_STARTTLS_FLUSH)
		conn_kick(c, false);
}

void conn_writes(struct conn *c, const char *s)
{
	conn_write(c, s, strlen(s));
}

size_t conn_pending_output(const struct conn *c)
{
	return conn_wpending(c->priv);
}

void conn_notify_drain(struct conn *c, size_t low)
{
	struct conn_priv *p = c->priv;
	if (p->state == CONN_ST_DEAD || p->closing || p->h->on_drain == NULL)
		return;
	p->drain_armed = true;
	p->drain_mark = low < UINT32_MAX ? (uint32_t)low : UINT32_MAX;
	if (conn_drain_due(p))
		conn_kick(c, false);
}

uint64_t conn_last_output(const struct conn *c)
{
	return c->priv->last_tx;
}

size_t conn_kernel_outq(const struct conn *c)
{
	int n = 0;

	if (c->priv->fd < 0 || ioctl(c->priv->fd, SIOCOUTQ, &n) < 0 || n < 0)
		return 0;
	return (size_t)n;
}

/* ---- events ---- */

static void conn_on_io(void *arg, uint32_t events)
{
	struct conn *c = arg;
	struct conn_priv *p = c->priv;

	if (events & LOOP_ERROR) {
		/* EPOLLERR/EPOLLHUP: reset or both directions shut. Nothing more
		 * can be delivered either way, and level-triggered HUP cannot be
		 * masked, so stop now. */
		int soerr = 0;
		socklen_t len = sizeof soerr;
		getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
		log_debug("conn %s:%d: socket error: %s", c->peer_ip, c->peer_port,
			  soerr ? strerror(soerr) : "hangup");
		conn_finish(c, p->closing && conn_wpending(p) == 0 ? p->close_reason : CONN_ERROR);
		return;
	}

	if (p->state == CONN_ST_HANDSHAKE) {
		if (!conn_handshake(c)) {
			conn_update_events(c);
			return;
		}
		/* Application data may have come in the same flight as Finished. */
		conn_flush(c);
		conn_input(c, false);
		conn_update_events(c);
		return;
	}

	if ((events & LOOP_WRITE) || ((events & LOOP_READ) && p->wr_want_read)) {
		if (p->closing && p->op_want_write && conn_wpending(p) == 0)
			conn_close_finish(c);
		else
			conn_flush(c);
		if (p->state == CONN_ST_DEAD)
			return;
	}
	if ((events & LOOP_READ) && p->paused && !conn_can_read(p))
		p->pause_armed = true; /* now stop watching (level-triggered) */
	if ((events & LOOP_READ) || ((events & LOOP_WRITE) && p->rd_want_write))
		conn_input(c, false);
	conn_update_events(c);
}

/* ---- public ---- */

struct conn *conn_new(struct loop *l, int fd, SSL_CTX *tls_ctx, const struct conn_handler *h,
		      void *arg)
{
	struct conn_full *f = xcalloc(1, sizeof *f);
	struct conn *c = &f->c;
	struct conn_priv *p = &f->p;
	c->priv = p;
	buf_init(&c->rbuf);
	buf_init(&p->wbuf);
	p->l = l;
	p->fd = fd;
	p->h = h;
	p->arg = arg;
	p->state = CONN_ST_OPEN;
	p->last_rx = p->last_tx = loop_now(l);

	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	conn_fill_addrs(c, fd);

	if (tls_ctx && conn_tls_begin(c, tls_ctx) < 0) {
		/* The caller still gets a conn; on_close(CONN_ERROR) follows. */
		conn_finish(c, CONN_ERROR);
		return c;
	}
	p->events = LOOP_READ;
	if (loop_add(l, fd, p->events, conn_on_io, c) < 0) {
		log_warn("conn %s:%d: epoll add: %s", c->peer_ip, c->peer_port, strerror(errno));
		conn_finish(c, CONN_ERROR);
		return c;
	}
	p->registered = true;
	return c;
}

/* Both sides of STARTTLS: drop what was read before the handshake, then
 * begin it at once or, with replies still queued, after they are flushed. */
static int conn_starttls_start(struct conn *c, SSL_CTX *ctx)
{
	struct conn_priv *p = c->priv;
	buf_free(&c->rbuf);
	if (conn_wpending(p) > 0) {
		p->state = CONN_ST_STARTTLS_FLUSH;
		p->pending_ctx = ctx;
		if (!p->in_data)
			conn_flush(c);
		else
			conn_update_events(c);
		return 0;
	}
	if (conn_tls_begin(c, ctx) < 0)
		return -1;
	conn_update_events(c);
	return 0;
}

int conn_starttls(struct conn *c, SSL_CTX *ctx)
{
	struct conn_priv *p = c->priv;
	if (p->state != CONN_ST_OPEN || p->ssl || p->closing || ctx == NULL || p->z)
		return -1;
	/* RFC 3207 4.2: anything the client sent after STARTTLS is discarded. */
	return conn_starttls_start(c, ctx);
}

int conn_starttls_client(struct conn *c, SSL_CTX *ctx, const char *sni, bool verify)
{
	struct conn_priv *p = c->priv;
	if (p->state != CONN_ST_OPEN || p->ssl || p->closing || ctx == NULL || p->tlsc)
		return -1;
	p->tlsc = xcalloc(1, sizeof *p->tlsc);
	p->tlsc->sni = sni ? xstrdup(sni) : NULL;
	p->tlsc->verify = verify;
	/* RFC 3207 4.2: what the server sent before the handshake is discarded
	 * (a reply injected after its 220 must not be read as a TLS reply). */
	return conn_starttls_start(c, ctx);
}

const char *conn_tls_error(const struct conn *c)
{
	const struct conn_priv *p = c->priv;
	return p->tlsc && p->tlsc->error ? p->tlsc->error : "";
}

bool conn_tls_verified(const struct conn *c)
{
	const struct conn_priv *p = c->priv;
	return p->tlsc && p->tlsc->verified && conn_is_tls(c);
}

bool conn_is_tls(const struct conn *c)
{
	return c->priv->ssl != NULL && c->priv->state != CONN_ST_HANDSHAKE;
}

const char *conn_tls_info(const struct conn *c)
{
	return c->priv->tls_info && conn_is_tls(c) ? c->priv->tls_info : "";
}

void conn_pause(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->paused)
		return;
	p->paused = true;
	conn_update_events(c);
}

void conn_resume(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (!p->paused)
		return;
	p->paused = false;
	p->pause_armed = false;
	conn_update_events(c);
	/* Pipelined input already buffered (in rbuf or inside OpenSSL) will not
	 * make the socket readable again: re-deliver it from the loop. */
	if (c->rbuf.len > 0 || p->eof || (p->ssl && SSL_has_pending(p->ssl)) ||
	    (p->z && zstream_pending_input(p->z) > 0))
		conn_kick(c, true);
}

void conn_close(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->state == CONN_ST_DEAD || (p->closing && p->close_reason == CONN_CLOSED_BY_US))
		return;
	bool was_closing = p->closing;
	p->closing = true;
	p->close_reason = CONN_CLOSED_BY_US;
	p->drain_armed = false;
	buf_free(&c->rbuf); /* further input is ignored */
	if (p->state == CONN_ST_HANDSHAKE && conn_wpending(p) == 0) {
		conn_finish(c, CONN_CLOSED_BY_US);
		return;
	}
	/* With output queued during a handshake (a 421 greeting on an
	 * implicit-TLS port), the handshake completes first, under the flush
	 * deadline, and the output goes out encrypted. */
	loop_timer_cancel(p->l, &p->idle_timer);
	loop_timer_cancel(p->l, &p->kick_timer);
	if (!was_closing)
		p->flush_timer =
			loop_timer_add(p->l, CONN_FLUSH_DEADLINE_MS, conn_on_flush_deadline, c);
	if (p->in_data)
		return; /* conn_deliver flushes when on_data returns */
	conn_flush(c);
}

void conn_abort(struct conn *c)
{
	struct conn_priv *p = c->priv;
	conn_finish(c, p->closing ? p->close_reason : CONN_CLOSED_BY_US); /* no-op if dead */
	loop_timer_cancel(p->l, &p->close_timer);
	conn_on_close_timer(c);
}

bool conn_peer_is_loopback(const struct conn *c)
{
	return strncmp(c->peer_ip, "127.", 4) == 0 || strcmp(c->peer_ip, "::1") == 0 ||
	       strncmp(c->peer_ip, "::ffff:127.", 11) == 0;
}

/* ---- compression ---- */

int conn_compress(struct conn *c)
{
	struct conn_priv *p = c->priv;
	if (p->state != CONN_ST_OPEN || p->closing || p->z != NULL)
		return -1;
	p->z = zstream_new(NULL);
	if (p->z == NULL)
		return -1;
	/* What follows the command in rbuf was sent after it, compressed
	 * (RFC 4978 3: the client compresses from the first command after
	 * the OK; a client that pipelined did so itself). */
	if (c->rbuf.len > 0) {
		zstream_feed(p->z, c->rbuf.data, c->rbuf.len);
		buf_reset(&c->rbuf);
	}
	if (zstream_pending_input(p->z) > 0 || (p->ssl && SSL_has_pending(p->ssl)))
		conn_kick(c, true);
	return 0;
}

bool conn_is_compressed(const struct conn *c)
{
	return c->priv->z != NULL;
}

size_t conn_compress_memory(const struct conn *c)
{
	return c->priv->z != NULL ? zstream_memory(c->priv->z) : 0;
}
