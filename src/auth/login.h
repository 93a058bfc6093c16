/* Password checks for every protocol (SMTP AUTH, POP3, later IMAP), run on a
 * worker thread: the one place that knows about timing equalisation for
 * unknown accounts and about the verified-login cache. */
#ifndef POSTERN_AUTH_LOGIN_H
#define POSTERN_AUTH_LOGIN_H

struct auth_login;

/* cache_ttl_s: how long a successful check is remembered (0: never). */
struct auth_login *auth_login_new(unsigned cache_ttl_s);
void auth_login_free(struct auth_login **alp);

/* Slow (argon2id): call on a worker, never on the loop. Thread-safe.
 * hash is the account's stored hash, or NULL when there is no such account:
 * then a dummy hash is verified anyway so the answer takes as long, and the
 * result is 0. Returns 1 match, 0 mismatch, -1 unusable stored hash.
 *
 * A match is remembered as a keyed MAC of (user, hash, password) under a
 * random per-process key, so a repeated login (a phone polling POP3 every
 * minute) costs one HMAC instead of a memory-hard hash. Failures are never
 * cached, so guessing still pays full price; a password change alters the
 * stored hash and so misses the cache. Dovecot's auth_cache plays this role. */
int auth_login_verify(struct auth_login *al, const char *user, const char *hash,
		      const char *password);

struct pool;
/* Result of auth_login_check, on the loop thread: result as auth_login_verify;
 * user is the name that was checked (valid during the call only). */
typedef void auth_login_cb(void *arg, int result, const char *user);

/* The asynchronous form every protocol uses: runs auth_login_verify on a
 * worker of workers, then cb(arg, result, user) on the loop. Takes ownership
 * of user, hash (NULL: no such account) and password (wiped after use). The
 * caller keeps arg alive until cb runs (it parks its session meanwhile). */
void auth_login_check(struct auth_login *al, struct pool *workers, char *user, char *hash,
		      char *password, auth_login_cb *cb, void *arg);

/* Logins answered from the cache so far (for metrics and tests). */
unsigned long auth_login_cache_hits(struct auth_login *al);

#endif
