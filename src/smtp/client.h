/* The SMTP client (RFC 5321) that carries queued mail to the next hop: one
 * connection, opened to one address, carrying one or more transactions in
 * turn. It knows nothing of the queue or of DNS: the caller (src/queue)
 * picks the address, hands over messages and reads back per-recipient
 * results.
 *
 * On the wire: EHLO with fallback to HELO; STARTTLS as the target's mode asks
 * (then EHLO again; anything the server sent after its 220 before the
 * handshake is discarded, RFC 3207 4.2); AUTH PLAIN or LOGIN (only over TLS);
 * PIPELINING (RFC 2920) when offered; SIZE (RFC 1870: a message larger than
 * the announced limit is not sent, every recipient fails permanently with
 * 5.3.4); 8BITMIME (RFC 6152: 8-bit content to a server without it is
 * converted to quoted-printable on the fly, never sent raw); SMTPUTF8
 * (RFC 6531: when the message needs it and the server lacks it, every
 * recipient fails permanently with 5.6.7); DSN parameters (RFC 3461: RET,
 * ENVID, NOTIFY, ORCPT) passed on when the server offers DSN; CHUNKING
 * optional. Dot-stuffing and CRLF line ends on the wire; a line over 998
 * octets plus CRLF is never sent as is (RFC 5321 4.5.3.1.6). Replies are
 * parsed strictly (src/smtp/reply.h): a malformed reply, one over
 * max_reply octets or too many lines end the connection as a temporary
 * failure. Timeouts per RFC 5321 4.5.3.2 from the config.
 *
 * Every callback runs from the loop, never inside the call that started the
 * step. After a callback that reports the connection unusable, the caller
 * only calls smtp_client_close. */
#ifndef POSTERN_SMTP_CLIENT_H
#define POSTERN_SMTP_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include "core/loop.h"

struct smtp_client;

struct smtp_client_config {
	const char *helo;          /* our name in EHLO/HELO (config hostname) */
	unsigned connect_timeout;  /* seconds */
	unsigned command_timeout;  /* greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA */
	unsigned data_timeout;     /* per block written, and the reply to the final dot */
	size_t max_reply;          /* octets of one reply, all lines */
	SSL_CTX *tls_ctx;          /* client context (tls_client_ctx_new) */
};

enum smtp_client_tls {
	SMTP_TLS_NONE,     /* never STARTTLS */
	SMTP_TLS_MAY,      /* STARTTLS when offered; a failed handshake: retry without TLS */
	SMTP_TLS_ENCRYPT,  /* STARTTLS required, certificate not checked */
	SMTP_TLS_VERIFY,   /* STARTTLS required, chain and name (target.host) checked */
	SMTP_TLS_IMPLICIT, /* TLS from the first byte (port 465, RFC 8314); checked if verify */
};

struct smtp_client_target {
	const char *host;              /* name for SNI, verification and logs */
	struct sockaddr_storage addr;  /* with its port */
	socklen_t addrlen;
	enum smtp_client_tls tls;
	bool verify;                   /* for SMTP_TLS_IMPLICIT */
	const char *auth_user;         /* NULL or "": no AUTH */
	const char *auth_pass;         /* never logged */
};

enum smtp_status {
	SMTP_ST_NONE = 0, /* no final answer yet */
	SMTP_ST_OK,       /* accepted by the next hop */
	SMTP_ST_TEMP,     /* 4xx, or a local/connection problem: retry later */
	SMTP_ST_PERM,     /* 5xx, or a permanent local verdict (SIZE, SMTPUTF8): bounce */
};

struct smtp_client_rcpt {
	/* in */
	const char *addr;
	const char *orcpt;  /* DSN ORCPT= as received ("rfc822;x@y"), or NULL */
	const char *notify; /* DSN NOTIFY= as received, or NULL */
	/* out */
	enum smtp_status status;
	int code;           /* the reply code, 0 when none (connection lost...) */
	char enh[16];       /* enhanced status "5.1.1", or a locally chosen one */
	char *reply;        /* heap: the reply (lines joined by " / ") or a local
			     * diagnostic; for the log and the DSN's Diagnostic-Code */
};

struct smtp_client_msg {
	/* in */
	const char *mail_from;  /* "" for the null sender */
	const char *envid;      /* DSN ENVID= or NULL */
	const char *ret;        /* "FULL" / "HDRS" / NULL */
	int fd;                 /* the message, read with pread from offset, size octets;
				 * not closed */
	uint64_t size;
	bool body_8bit;         /* has octets >= 0x80 (needs 8BITMIME or a downgrade) */
	bool smtputf8;          /* needs SMTPUTF8 (UTF-8 addresses or headers) */
	const void *mime_cache; /* the store's MIME cache of the message (for the
				 * downgrade: which parts to convert), or NULL */
	size_t mime_cache_len;
	struct smtp_client_rcpt *rcpt;
	size_t n_rcpt;
	/* where the message starts in fd (the queue skips the stored copy's own
	 * Return-Path line: RFC 5321 4.4, added at final delivery only) */
	uint64_t offset;
	/* out */
	bool dsn_relayed;       /* the next hop offered DSN and got the parameters */
};

/* What the session learnt, for the delivery log line. */
struct smtp_client_info {
	const char *peer;     /* "host[ip]:port" */
	const char *tls;      /* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" */
	bool tls_verified;
	bool esmtp;           /* EHLO accepted (else HELO) */
};

/* ok: the connection is ready for transactions (c usable). Otherwise c is
 * NULL-equivalent for the caller except for smtp_client_close, and status
 * (SMTP_ST_TEMP or SMTP_ST_PERM: a 5xx greeting or EHLO+HELO refused) with
 * diag (a reply or local text) tell why; the caller tries the next address. */
typedef void smtp_client_open_cb(void *arg, struct smtp_client *c, bool ok,
				 enum smtp_status status, const char *diag);
/* Connects (non-blocking) and runs greeting, EHLO/HELO, STARTTLS and AUTH as
 * t asks. cfg and t are copied. Returns the client (for smtp_client_close
 * while it opens); cb follows exactly once unless closed first. */
struct smtp_client *smtp_client_open(struct loop *l, const struct smtp_client_config *cfg,
				     const struct smtp_client_target *t, smtp_client_open_cb *cb,
				     void *arg);

/* conn_ok: the connection can carry another transaction (RSET is sent by the
 * client itself when needed). m->rcpt[i].status is final for every recipient
 * (OK, TEMP or PERM) when cb runs; a connection lost before the reply to the
 * final dot leaves no recipient OK. */
typedef void smtp_client_done_cb(void *arg, struct smtp_client *c, struct smtp_client_msg *m,
				 bool conn_ok);
/* One transaction on an open client. m and what it points to must stay valid
 * until cb. */
void smtp_client_send(struct smtp_client *c, struct smtp_client_msg *m, smtp_client_done_cb *cb,
		      void *arg);

const struct smtp_client_info *smtp_client_info(const struct smtp_client *c);

/* Sends QUIT when the connection is usable and idle, then frees; any pending
 * callback is dropped. Safe at any step. Sets *cp NULL. Called from outside
 * the client's own callbacks (a shutdown), the connection is torn down and
 * freed at once, without QUIT (a transaction in flight is cut). */
void smtp_client_close(struct smtp_client **cp);

/* Frees the reply strings of m's recipients and resets their outputs. */
void smtp_client_msg_reset(struct smtp_client_msg *m);

#endif
