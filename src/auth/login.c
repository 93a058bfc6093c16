/* The login service: verification with the cache on workers, and the
 * throttling rules (login.h says which and why) on the loop thread. */
#include "auth/login.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/password.h"
#include "auth/throttle.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/session.h"
#include "core/xmalloc.h"

/* Direct-mapped: a collision only costs one full verification. 72 bytes a
 * slot, 288 KiB in all. */
#define LOGIN_CACHE_SLOTS 4096
#define MAC_LEN 32
/* Keys each throttle remembers (the stalest are forgotten first). */
#define LOGIN_THROTTLE_KEYS 65536
/* Failures remembered per (account, network): enough for the delay to
 * reach any sensible cap (2^15 s). */
#define LOGIN_NET_RING 16
/* A check in flight is forgotten after this long even if never ended. */
#define LOGIN_INFLIGHT_MAX_S 3600
/* How often an attempt waiting for its address's checks in flight looks
 * again. */
#define LOGIN_BUSY_RETRY_MS 50
/* The longest account name kept in a per-(account, network) key: no
 * address is longer (RFC 5321 4.5.3.1: 64 local, "@", 255 domain), so
 * longer names, which cannot be accounts, share a key, and a client sending
 * 1 KiB SASL user names cannot make each of the 65536 keys 1 KiB. */
#define LOGIN_USER_KEY_MAX 320
/* The first failure delay; it doubles with each further failure. */
#define LOGIN_DELAY_BASE_S 1

struct login_slot {
	unsigned char id[MAC_LEN];  /* MAC of the user name: which account */
	unsigned char mac[MAC_LEN]; /* MAC of user, stored hash and password */
	uint64_t expires;           /* monotonic seconds; 0 = empty */
};

struct auth_login {
	struct auth_login_config cfg;
	struct throttle *fail_ip;  /* failures per client address */
	struct throttle *fail_net; /* failures per (account, client network) */
	struct throttle *inflight; /* password checks running, per client address */
	unsigned ttl;
	unsigned char key[32];
	pthread_mutex_t mu;
	struct login_slot *slots;
	unsigned long hits;
	pthread_mutex_t dummy_mu;
	char *dummy_hash; /* made on first use, immutable after */
};

struct auth_login *auth_login_new(const struct auth_login_config *cfg)
{
	struct auth_login *al = xcalloc(1, sizeof(*al));
	al->cfg = *cfg;
	if (al->cfg.max_failures == 0)
		al->cfg.max_failures = 1;
	if (al->cfg.delay_max_s == 0)
		al->cfg.delay_max_s = 1;
	al->fail_ip = throttle_new(al->cfg.max_failures, al->cfg.window_s, LOGIN_THROTTLE_KEYS);
	al->fail_net = throttle_new(LOGIN_NET_RING, al->cfg.window_s, LOGIN_THROTTLE_KEYS);
	al->inflight =
	    throttle_new(al->cfg.max_failures, LOGIN_INFLIGHT_MAX_S, LOGIN_THROTTLE_KEYS);
	al->ttl = cfg->cache_ttl_s;
	if (getrandom(al->key, sizeof(al->key), 0) != (ssize_t)sizeof(al->key))
		fatal("getrandom: cannot key the login cache");
	pthread_mutex_init(&al->mu, NULL);
	al->slots = xcalloc(LOGIN_CACHE_SLOTS, sizeof(*al->slots));
	pthread_mutex_init(&al->dummy_mu, NULL);
	return al;
}

void auth_login_free(struct auth_login **alp)
{
	struct auth_login *al = *alp;
	if (al == NULL)
		return;
	OPENSSL_cleanse(al->slots, LOGIN_CACHE_SLOTS * sizeof(*al->slots));
	OPENSSL_cleanse(al->key, sizeof(al->key));
	free(al->slots);
	free(al->dummy_hash);
	throttle_free(&al->fail_ip);
	throttle_free(&al->fail_net);
	throttle_free(&al->inflight);
	pthread_mutex_destroy(&al->mu);
	pthread_mutex_destroy(&al->dummy_mu);
	x_free(alp);
}

static uint64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

/* HMAC-SHA256 over the parts, each followed by a NUL so that no two
 * different (user, hash, password) triples feed the same bytes. */
static void mac_parts(const struct auth_login *al, const char *const *parts, int n,
                      unsigned char out[MAC_LEN])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	size_t len = 0;
	if (ctx == NULL || !EVP_MAC_init(ctx, al->key, sizeof(al->key), params))
		fatal("login cache: HMAC-SHA256 unavailable");
	for (int i = 0; i < n; i++)
		EVP_MAC_update(ctx, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
	EVP_MAC_final(ctx, out, &len, MAC_LEN);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
}

static struct login_slot *slot_of(struct auth_login *al, const unsigned char id[MAC_LEN])
{
	uint32_t h;
	memcpy(&h, id, sizeof(h));
	return &al->slots[h % LOGIN_CACHE_SLOTS];
}

static bool cache_hit(struct auth_login *al, const unsigned char id[MAC_LEN],
                      const unsigned char mac[MAC_LEN])
{
	bool hit;
	pthread_mutex_lock(&al->mu);
	struct login_slot *sl = slot_of(al, id);
	hit = sl->expires > now_s() && CRYPTO_memcmp(sl->id, id, MAC_LEN) == 0 &&
	      CRYPTO_memcmp(sl->mac, mac, MAC_LEN) == 0;
	al->hits += hit;
	pthread_mutex_unlock(&al->mu);
	return hit;
}

static void cache_put(struct auth_login *al, const unsigned char id[MAC_LEN],
                      const unsigned char mac[MAC_LEN])
{
	pthread_mutex_lock(&al->mu);
	struct login_slot *sl = slot_of(al, id);
	memcpy(sl->id, id, MAC_LEN);
	memcpy(sl->mac, mac, MAC_LEN);
	sl->expires = now_s() + al->ttl;
	pthread_mutex_unlock(&al->mu);
}

/* An unknown account costs what a known one does: the same argon2id work. */
static void verify_dummy(struct auth_login *al, const char *password)
{
	pthread_mutex_lock(&al->dummy_mu);
	if (al->dummy_hash == NULL)
		al->dummy_hash = password_hash("postern timing equaliser");
	pthread_mutex_unlock(&al->dummy_mu);
	(void)password_verify(al->dummy_hash, password);
}

int auth_login_verify(struct auth_login *al, const char *user, const char *hash,
                      const char *password)
{
	if (hash == NULL) {
		verify_dummy(al, password);
		return 0;
	}
	unsigned char id[MAC_LEN], mac[MAC_LEN];
	if (al->ttl > 0) {
		const char *who[] = {user};
		const char *all[] = {user, hash, password};
		mac_parts(al, who, 1, id);
		mac_parts(al, all, 3, mac);
		if (cache_hit(al, id, mac))
			return 1;
	}
	int r = password_verify(hash, password);
	if (r == 1 && al->ttl > 0)
		cache_put(al, id, mac);
	return r;
}

unsigned long auth_login_cache_hits(struct auth_login *al)
{
	pthread_mutex_lock(&al->mu);
	unsigned long n = al->hits;
	pthread_mutex_unlock(&al->mu);
	return n;
}

/* ---- throttling (loop thread) ---- */

/* The key of the per-address count: the address itself, but for IPv6 its
 * /64, which one subscriber usually holds whole (counting single IPv6
 * addresses would give each host 2^64 fresh ones). An IPv4-mapped IPv6
 * address is its IPv4 address. */
static void addr_key(const char *ip, char out[INET6_ADDRSTRLEN + 8])
{
	unsigned char a[16];
	static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (inet_pton(AF_INET6, ip, a) != 1) {
		snprintf(out, INET6_ADDRSTRLEN + 8, "%.*s", INET6_ADDRSTRLEN, ip);
	} else if (memcmp(a, v4mapped, 12) == 0) {
		snprintf(out, INET6_ADDRSTRLEN + 8, "%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
	} else {
		memset(a + 8, 0, 8);
		inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN);
		strcat(out, "/64");
	}
}

/* "net\naccount": the client's network (IPv4 /24, IPv6 /64; an IPv4-mapped
 * IPv6 address counts as IPv4) and the account name in lower case. No
 * network text holds a newline, so no two pairs share a key. */
static char *net_key(const char *ip, const char *user)
{
	unsigned char a[16];
	char net[INET6_ADDRSTRLEN + 8];

	if (inet_pton(AF_INET, ip, a) == 1) {
		snprintf(net, sizeof(net), "%u.%u.%u.0/24", a[0], a[1], a[2]);
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0,    0,
		                                           0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a, v4mapped, 12) == 0) {
			snprintf(net, sizeof(net), "%u.%u.%u.0/24", a[12], a[13], a[14]);
		} else {
			memset(a + 8, 0, 8);
			inet_ntop(AF_INET6, a, net, INET6_ADDRSTRLEN);
			strcat(net, "/64");
		}
	} else {
		snprintf(net, sizeof(net), "%.*s", INET6_ADDRSTRLEN, ip);
	}
	char *key = xasprintf("%s\n%.*s", net, LOGIN_USER_KEY_MAX, user);
	for (char *p = key + strlen(net) + 1; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return key;
}

/* The wait after the n-th failure (n >= 1): 1 s, doubling, capped. */
static unsigned login_delay_s(const struct auth_login *al, unsigned n)
{
	unsigned d = LOGIN_DELAY_BASE_S;

	while (n-- > 1 && d < al->cfg.delay_max_s)
		d *= 2;
	return d < al->cfg.delay_max_s ? d : al->cfg.delay_max_s;
}

bool auth_login_blocked(struct auth_login *al, const char *ip)
{
	char akey[INET6_ADDRSTRLEN + 8];

	addr_key(ip, akey);
	return throttle_blocked(al->fail_ip, akey, now_s());
}

enum auth_verdict auth_login_admit(struct auth_login *al, const char *ip, const char *user,
                                   uint64_t now, unsigned *retry_s_r)
{
	char akey[INET6_ADDRSTRLEN + 8];
	uint64_t last = 0;

	addr_key(ip, akey);
	if (throttle_blocked(al->fail_ip, akey, now))
		return AUTH_BLOCKED;
	/* An address without a recent failure is always checked: this is what
	 * keeps the real user in, wherever the guessing comes from. */
	if (throttle_count(al->fail_ip, akey, now, NULL) == 0)
		return AUTH_OK;
	char *key = net_key(ip, user);
	unsigned n = throttle_count(al->fail_net, key, now, &last);
	free(key);
	if (n > 0) {
		uint64_t until = last + login_delay_s(al, n);
		if (now < until) {
			*retry_s_r = (unsigned)(until - now);
			return AUTH_WAIT;
		}
	}
	return AUTH_OK;
}

void auth_login_check_begin(struct auth_login *al, const char *ip, uint64_t now)
{
	char akey[INET6_ADDRSTRLEN + 8];

	addr_key(ip, akey);
	throttle_fail(al->inflight, akey, now);
}

void auth_login_check_end(struct auth_login *al, const char *ip, uint64_t began)
{
	char akey[INET6_ADDRSTRLEN + 8];

	addr_key(ip, akey);
	throttle_unfail(al->inflight, akey, began);
}

bool auth_login_busy(struct auth_login *al, const char *ip, uint64_t now)
{
	char akey[INET6_ADDRSTRLEN + 8];

	addr_key(ip, akey);
	return throttle_count(al->fail_ip, akey, now, NULL) +
	           throttle_count(al->inflight, akey, now, NULL) >=
	       al->cfg.max_failures;
}

void auth_login_record(struct auth_login *al, const char *ip, const char *user, bool ok,
                       uint64_t now, struct auth_outcome *o)
{
	char *key = net_key(ip, user), akey[INET6_ADDRSTRLEN + 8];

	addr_key(ip, akey);
	o->delay_ms = 0;
	o->close = false;
	if (ok) {
		o->verdict = AUTH_OK;
		/* Only this (account, network)'s failures: the address keeps
		 * its count, so one valid account does not buy more guesses. */
		throttle_clear(al->fail_net, key);
		free(key);
		return;
	}
	o->verdict = AUTH_FAIL;
	throttle_fail(al->fail_ip, akey, now);
	throttle_fail(al->fail_net, key, now);
	o->delay_ms = 1000 * login_delay_s(al, throttle_count(al->fail_net, key, now, NULL));
	o->close = throttle_blocked(al->fail_ip, akey, now);
	free(key);
}

/* ---- one attempt ---- */

struct login_job {
	struct auth_login *al;
	struct session *s;
	char ip[sizeof(((struct session *)0)->ip)];
	const char *proto; /* s->ops->name: static */
	auth_login_done_fn *done;
	struct sasl_creds c;
	char *hash;
	int result;
	uint64_t began; /* when the check was submitted (auth_login_check_begin) */
};

static void login_job_free(struct login_job *j)
{
	sasl_creds_clear(&j->c);
	free(j->hash);
	free(j);
}

/* The verdict of a check: counted and logged even when the session has
 * gone (a client that hangs up before the answer still pays for its
 * guess), then handed to the protocol if s is still open (s NULL: gone). */
static void login_finish(struct auth_login *al, struct session *s, const char *proto,
                         const char *ip, const char *user, bool ok, auth_login_done_fn *done)
{
	struct auth_outcome o = {.user = user};

	auth_login_record(al, ip, user, ok, now_s(), &o);
	if (!ok)
		log_info("%s auth failed client=%s user=%s", proto, ip, user);
	if (s != NULL)
		done(s, &o);
}

static void login_refuse(struct session *s, const char *user, enum auth_verdict v, unsigned retry_s,
                         auth_login_done_fn *done)
{
	struct auth_outcome o = {.verdict = v, .user = user, .retry_s = retry_s};

	log_info("%s auth refused client=%s user=%s reason=%s", s->ops->name, s->ip, user,
	         v == AUTH_BLOCKED ? "too-many-failures"
	         : v == AUTH_WAIT  ? "account-delay"
	                           : "lookup-failed");
	done(s, &o);
}

static void login_work(void *arg)
{
	struct login_job *j = arg;

	j->result = auth_login_verify(j->al, j->c.authcid, j->hash, j->c.password);
	explicit_bzero(j->c.password, strlen(j->c.password));
}

static void login_done(void *arg)
{
	struct login_job *j = arg;
	struct session *s = j->s;

	auth_login_check_end(j->al, j->ip, j->began);
	if (session_release(s) || s->c == NULL || s->phase == SESSION_CLOSING)
		s = NULL;
	login_finish(j->al, s, j->proto, j->ip, j->c.authcid, j->result == 1, j->done);
	login_job_free(j);
}

static void login_attempt(struct login_job *j);

/* An attempt that waited for its address's checks in flight: try again if
 * the session is still open (an attempt never checked is not counted). */
static void login_retry(void *arg)
{
	struct login_job *j = arg;
	struct session *s = j->s;

	if (session_release(s) || s->c == NULL || s->phase == SESSION_CLOSING) {
		login_job_free(j);
		return;
	}
	login_attempt(j);
}

/* s is open: parked if this is a retry, else as the caller left it. */
static void login_attempt(struct login_job *j)
{
	struct auth_login *al = j->al;
	struct session *s = j->s;
	const char *user = j->c.authcid;
	uint64_t now = now_s();
	unsigned retry_s = 0;
	enum auth_verdict v = auth_login_admit(al, j->ip, user, now, &retry_s);

	if (v != AUTH_OK) {
		login_refuse(s, user, v, retry_s, j->done);
		login_job_free(j);
		return;
	}
	/* Nobody acts as another user: the authzid is empty or the user
	 * (RFC 4616 2 leaves the policy to the server). */
	if (j->c.authzid[0] != '\0' && strcasecmp(j->c.authzid, user) != 0) {
		login_finish(al, s, j->proto, j->ip, user, false, j->done);
		login_job_free(j);
		return;
	}
	/* The address's failures and checks in flight use up its budget:
	 * wait for one to end rather than check more guesses than it has. */
	if (auth_login_busy(al, j->ip, now)) {
		s->busy++;
		session_park(s);
		loop_timer_add(s->l, LOGIN_BUSY_RETRY_MS, login_retry, j);
		return;
	}
	/* hash stays NULL for an unknown account: checked all the same */
	if (al->cfg.lookup(al->cfg.lookup_arg, user, &j->hash) < 0) {
		login_refuse(s, user, AUTH_TEMPFAIL, 0, j->done);
		login_job_free(j);
		return;
	}
	auth_login_check_begin(al, j->ip, now);
	j->began = now;
	s->busy++;
	session_park(s);
	pool_submit(al->cfg.workers, login_work, login_done, j);
}

void auth_login_start(struct auth_login *al, struct session *s, struct sasl_creds *creds,
                      auth_login_done_fn *done)
{
	struct login_job *j = xcalloc(1, sizeof(*j));

	j->al = al;
	j->s = s;
	j->done = done;
	j->proto = s->ops->name;
	snprintf(j->ip, sizeof(j->ip), "%s", s->ip);
	j->c = *creds;
	memset(creds, 0, sizeof(*creds));
	login_attempt(j);
}
