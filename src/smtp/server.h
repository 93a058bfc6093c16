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
/* Shutdown, first step (call again as often as wanted): sessions waiting on
 * nothing are told 421 and closed; a session parked on a commit or a
 * password check is left to finish, gets its real answer, then 421 and is
 * closed. Returns the sessions not yet freed; *busy_r: those of them with
 * an async step in flight. */
int smtp_server_shutdown(struct smtp_server *srv, int *busy_r);
/* Closes every session left (421) and frees. An async step still in flight
 * then finds its session unlinked (srv NULL) and only closes it. */
/* At shutdown, once the wait for sessions is over: a session still waiting
 * for policy (DNS, a worker's check) would wait for ever once the loop is
 * gone; its answer is cancelled, it is told 421 and closed (its conn goes at
 * the next loop pass). */
/* The same for a transaction waiting for the filter (clamd, a milter, the
 * DNSBL answers) or paused by it; one in the filter's short worker step is
 * let finish. */
void smtp_server_cancel_policy(struct smtp_server *srv);
void smtp_server_free(struct smtp_server **srvp);
/* kick(arg) runs on the loop after each commit that queued remote recipients
 * (the outbound queue's queue_kick: deliver now rather than at its next poll). */
void smtp_server_set_kick(struct smtp_server *srv, void (*kick)(void *arg), void *arg);
/* The resolver for the Received header's verified client name (dns may be
 * NULL: "unknown"); it must outlive the server. */
struct dns;
void smtp_server_set_dns(struct smtp_server *srv, struct dns *dns);
/* SRS (policy/srs.h): secrets (the first signs forwarded mail, every one
 * verifies the SRS addresses bounces come back to) and how long an SRS
 * address stays valid, in seconds. NULL/0: SRS off (an RCPT to an SRS
 * address is then resolved like any other). The secrets must outlive the
 * server. */
void smtp_server_set_srs(struct smtp_server *srv, char **secrets, size_t n, unsigned max_age);
/* Sender authentication (policy.h) for every transaction from now on; p
 * may be NULL (none) and must outlive the server. */
struct policy;
void smtp_server_set_policy(struct smtp_server *srv, struct policy *p);
/* Spam, abuse and virus filtering (filter.h) for every session from now
 * on; f may be NULL (none) and must outlive the server. */
struct filter;
void smtp_server_set_filter(struct smtp_server *srv, struct filter *f);
/* Starts a session on an accepted socket (takes ownership of fd). */
void smtp_server_accept(struct smtp_server *srv, int fd, enum smtp_role role);

#endif
