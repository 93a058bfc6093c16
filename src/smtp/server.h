/* SMTP server sessions (RFC 5321) for the three listener roles. */
#ifndef POSTERN_SMTP_SERVER_H
#define POSTERN_SMTP_SERVER_H
#include <openssl/ssl.h>
#include "auth/login.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/pool.h"
#include "store/store.h"

enum smtp_role {
	SMTP_ROLE_MX,          /* port 25: mail for local domains, no AUTH needed, no relay */
	SMTP_ROLE_SUBMISSION,  /* port 587: STARTTLS then AUTH required */
	SMTP_ROLE_SUBMISSIONS, /* port 465: implicit TLS, AUTH required */
};

struct smtp_server;

/* cfg, store, pool and tls must outlive the server. tls may be NULL only if no
 * listener needs it (then STARTTLS is not offered). */
struct smtp_server *smtp_server_new(struct loop *l, struct pool *workers, struct store *st,
				    const struct config *cfg, SSL_CTX *tls,
				    struct auth_login *login);
/* Closes every session (421) and frees. */
void smtp_server_free(struct smtp_server **srvp);
/* Starts a session on an accepted socket (takes ownership of fd). */
void smtp_server_accept(struct smtp_server *srv, int fd, enum smtp_role role);

#endif
