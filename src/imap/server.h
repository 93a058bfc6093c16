/* IMAP server sessions (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1) for the
 * two listener roles. */
#ifndef POSTERN_IMAP_SERVER_H
#define POSTERN_IMAP_SERVER_H
#include <openssl/ssl.h>
#include "auth/login.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/pool.h"
#include "store/store.h"

enum imap_role {
	IMAP_ROLE_IMAP,  /* port 143: STARTTLS; LOGINDISABLED before TLS (loopback
			  * exception configurable) */
	IMAP_ROLE_IMAPS, /* port 993: implicit TLS (RFC 8314) */
};

struct imap_server;

/* As pop3_server_new: cfg, store, pools, tls and login outlive the server.
 * bulk: a pool_new_background for work that grows with the mailbox. */
struct imap_server *imap_server_new(struct loop *l, struct pool *workers, struct pool *bulk,
				    struct store *st, const struct config *cfg, SSL_CTX *tls,
				    struct auth_login *login);
/* Shutdown, first step: idle sessions get "* BYE" and are closed; a session
 * parked on an async step (a commit: APPEND, STORE, EXPUNGE...) finishes
 * first and gets its tagged answer. Returns the sessions not yet freed;
 * *busy_r: those with a step in flight. */
int imap_server_shutdown(struct imap_server *srv, int *busy_r);
void imap_server_free(struct imap_server **srvp);
/* Starts a session on an accepted socket (takes ownership of fd). */
void imap_server_accept(struct imap_server *srv, int fd, enum imap_role role);

#endif
