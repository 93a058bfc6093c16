#include "auth/login.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/password.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"

/* Direct-mapped: a collision only costs one full verification. 72 bytes a
 * slot, 288 KiB in all. */
#define LOGIN_CACHE_SLOTS 4096
#define MAC_LEN 32

struct login_slot {
	unsigned char id[MAC_LEN];  /* MAC of the user name: which account */
	unsigned char mac[MAC_LEN]; /* MAC of user, stored hash and password */
	uint64_t expires;           /* monotonic seconds; 0 = empty */
};

struct auth_login {
	unsigned ttl;
	unsigned char key[32];
	pthread_mutex_t mu;
	struct login_slot *slots;
	unsigned long hits;
	pthread_mutex_t dummy_mu;
	char *dummy_hash; /* made on first use, immutable after */
};

struct auth_login *auth_login_new(unsigned cache_ttl_s)
{
	struct auth_login *al = xcalloc(1, sizeof(*al));
	al->ttl = cache_ttl_s;
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

struct login_job {
	struct auth_login *al;
	char *user, *hash, *pass;
	int result;
	auth_login_cb *cb;
	void *arg;
};

static void login_work(void *arg)
{
	struct login_job *j = arg;
	j->result = auth_login_verify(j->al, j->user, j->hash, j->pass);
	explicit_bzero(j->pass, strlen(j->pass));
}

static void login_done(void *arg)
{
	struct login_job *j = arg;
	j->cb(j->arg, j->result, j->user);
	free(j->user);
	free(j->hash);
	free(j->pass);
	free(j);
}

void auth_login_check(struct auth_login *al, struct pool *workers, char *user, char *hash,
		      char *password, auth_login_cb *cb, void *arg)
{
	struct login_job *j = xcalloc(1, sizeof(*j));
	j->al = al;
	j->user = user;
	j->hash = hash;
	j->pass = password;
	j->cb = cb;
	j->arg = arg;
	pool_submit(workers, login_work, login_done, j);
}
