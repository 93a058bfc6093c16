/* The login service: every protocol (SMTP AUTH, POP3 USER/PASS and AUTH,
 * later IMAP LOGIN and AUTHENTICATE) hands it the credentials of an attempt
 * (from the SASL state machine, auth/sasl.h, or a plain command) and gets a
 * verdict back. It owns every rule of a login in one place: who may act as
 * whom, the account lookup, the password check on a worker, timing
 * equalisation for unknown accounts, the verified-login cache, and
 * throttling.
 *
 * Throttling, and why it cannot lock a user out:
 *  - Per client address (an IPv6 client's /64): max_failures failed
 *    logins within window_s and
 *    the address is refused (not checked) until the oldest ages out; the
 *    failure that reaches the limit closes the connection. A success does
 *    not reset the count (one valid account must not buy more guesses at
 *    others). Checks still running count too: an attempt that would take
 *    the address past its budget waits for one of them to end, so many
 *    connections sending guesses at once get no more checked than one.
 *    This is what stops one address guessing.
 *  - Per (account, client network): IPv4 /24, IPv6 /64. Each failure there
 *    makes the next failure reply wait longer (1 s, 2 s, 4 s ... up to
 *    delay_max_s), and an address that has failed recently may not try that
 *    account again from that network until that delay has passed since the
 *    network's last failure: guesses from one network are serialised and
 *    slowed, however many addresses it uses.
 *  - An address with no recent failure is always checked at once, whatever
 *    the account's or its network's history: an attacker elsewhere, or in
 *    the same network on another address, cannot deny a user who has the
 *    right password. No rule counts failures per account alone, because
 *    any such rule lets anyone lock any account.
 *  - Unknown accounts cost the same as wrong passwords (same hash work, same
 *    counting); a success clears only its own (account, network) record.
 *
 * The lookup of an account's hash is a callback (the store lies above auth
 * in the layering, core <- auth <- store), wired once by the daemon. */
#ifndef POSTERN_AUTH_LOGIN_H
#define POSTERN_AUTH_LOGIN_H
#include <stdbool.h>
#include <stdint.h>

#include "auth/sasl.h"

struct auth_login;
struct pool;
struct session;

/* 1 and *hash_r (heap) if the account exists, 0 if not, -1 on a temporary
 * error. Called on the loop thread. */
typedef int auth_lookup_fn(void *arg, const char *user, char **hash_r);

struct auth_login_config {
	unsigned cache_ttl_s;  /* how long a successful check is remembered (0: never) */
	unsigned max_failures; /* per client address within window_s (>= 1) */
	unsigned window_s;
	unsigned delay_max_s; /* cap of the growing failure delay (>= 1) */
	struct pool *workers; /* runs the password checks (auth_login_start) */
	auth_lookup_fn *lookup;
	void *lookup_arg;
};

struct auth_login *auth_login_new(const struct auth_login_config *cfg);
/* After the workers that may still run checks. */
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

enum auth_verdict {
	AUTH_OK,       /* the credentials are valid */
	AUTH_FAIL,     /* wrong password, unknown account, or an authzid that is
	                * not the user: reply after delay_ms, or close */
	AUTH_BLOCKED,  /* the client address has too many failures: refused
	                * without a check */
	AUTH_WAIT,     /* this address failed recently and the account's delay
	                * for its network runs: refused without a check, try
	                * again in retry_s */
	AUTH_TEMPFAIL, /* the account lookup failed */
};

struct auth_outcome {
	enum auth_verdict verdict;
	const char *user;  /* the authcid as given; valid during the call */
	unsigned delay_ms; /* AUTH_FAIL: wait this long before the failure reply */
	unsigned retry_s;  /* AUTH_WAIT */
	bool close;        /* AUTH_FAIL: the address just reached its limit:
	                    * reply at once and close */
};

/* Called on the loop thread with the verdict, only while s is open (not if
 * the session closed meanwhile). Either inside auth_login_start (a refusal
 * decided at once; s is as the caller left it) or later, after the password
 * check, with s parked: the callback replies, then unparks, closes, or
 * stays parked for the failure delay (s->delay). */
typedef void auth_login_done_fn(struct session *s, const struct auth_outcome *o);

/* Runs one login attempt for session s (its address is s->ip). Takes the
 * strings of *creds (creds is cleared). While the check runs, s is parked
 * and held (s->busy). The log lines ("<proto> auth failed client=...") are
 * written here, with the protocol's name (s->ops->name). */
void auth_login_start(struct auth_login *al, struct session *s, struct sasl_creds *creds,
                      auth_login_done_fn *done);

/* True if the address ip is refused (too many failures); for a protocol
 * that wants to refuse before an exchange starts. Loop thread. */
bool auth_login_blocked(struct auth_login *al, const char *ip);

/* The throttling decisions alone, with an explicit clock (monotonic
 * seconds); auth_login_start uses them, unit tests drive them. Loop thread.
 * ip is a textual IPv4 or IPv6 address (an unparsable one is its own
 * network); user is compared without regard to ASCII case. */
/* Before a check: AUTH_OK (check it), AUTH_BLOCKED, or AUTH_WAIT with
 * *retry_s_r set. */
enum auth_verdict auth_login_admit(struct auth_login *al, const char *ip, const char *user,
                                   uint64_t now, unsigned *retry_s_r);
/* Checks in flight count against their address's failure budget, or a
 * fresh address could send one guess per connection at once, all admitted
 * before the first answer. begin when a check is submitted, end (with the
 * same time) when it is answered; busy is true while the address's
 * failures plus its checks in flight reach max_failures: a further attempt
 * waits (parked) for one of them to end. Loop thread. */
void auth_login_check_begin(struct auth_login *al, const char *ip, uint64_t now);
void auth_login_check_end(struct auth_login *al, const char *ip, uint64_t began);
bool auth_login_busy(struct auth_login *al, const char *ip, uint64_t now);
/* After a check: ok forgets the (account, network) failures; a failure is
 * counted for the address and the (account, network), and o->delay_ms and
 * o->close are set (o->verdict too: AUTH_OK or AUTH_FAIL). */
void auth_login_record(struct auth_login *al, const char *ip, const char *user, bool ok,
                       uint64_t now, struct auth_outcome *o);

/* Logins answered from the cache so far (for metrics and tests). */
unsigned long auth_login_cache_hits(struct auth_login *al);

#endif
