/* POP3 server sessions (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034
 * SASL, RFC 6856 UTF8) for the two listener roles. */
#ifndef POSTERN_POP3_SERVER_H
#define POSTERN_POP3_SERVER_H
#include <openssl/ssl.h>
#include "auth/login.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/pool.h"
#include "store/store.h"

enum pop3_role {
	POP3_ROLE_POP3,  /* port 110: STLS before credentials (loopback exception configurable) */
	POP3_ROLE_POP3S, /* port 995: implicit TLS (RFC 8314) */
};

struct pop3_server;

/* cfg, store, pool and tls must outlive the server; tls may be NULL only if
 * no POP3S listener exists (then STLS is not offered). */
struct pop3_server *pop3_server_new(struct loop *l, struct pool *workers, struct store *st,
				    const struct config *cfg, SSL_CTX *tls,
				    struct auth_login *login);
/* Shutdown, first step (call again as often as wanted): sessions waiting on
 * nothing get -ERR [SYS/TEMP] and are closed; a session parked on an async
 * step (password check, the expunge of QUIT) is left to finish first.
 * Returns the sessions not yet freed; *busy_r: those with a step in flight. */
int pop3_server_shutdown(struct pop3_server *srv, int *busy_r);
/* Closes every session (no deletions happen for sessions not in UPDATE) and
 * frees. */
void pop3_server_free(struct pop3_server **srvp);
/* Starts a session on an accepted socket (takes ownership of fd). */
void pop3_server_accept(struct pop3_server *srv, int fd, enum pop3_role role);

#endif
