/* Password hashing and verification. New hashes are argon2id (RFC 9106) in
 * PHC string form; verification also accepts the crypt(3) and Dovecot-style
 * schemes that accounts migrate with. */
#include "auth/password.h"

#include <argon2.h>
#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/log.h"
#include "core/xmalloc.h"

/* RFC 9106 4: parameters for a memory-constrained server. */
#define PASSWORD_T_COST 3
#define PASSWORD_M_COST 65536 /* KiB */
#define PASSWORD_PARALLELISM 1
#define PASSWORD_SALT_LEN 16
#define PASSWORD_HASH_LEN 32

enum password_kind {
	PASSWORD_ARGON2ID,
	PASSWORD_ARGON2I,
	PASSWORD_CRYPT,
};

/* A scheme: an optional Dovecot "{NAME}" prefix (matched case-insensitively)
 * and the hash bodies it admits (matched case-sensitively; NULL ends the list,
 * an empty string admits anything crypt(3) understands). */
struct password_scheme {
	const char *prefix;
	enum password_kind kind;
	const char *bodies[4];
};

static const struct password_scheme password_schemes[] = {
    {"{ARGON2ID}", PASSWORD_ARGON2ID, {"$argon2id$"}},
    {"{ARGON2I}", PASSWORD_ARGON2I, {"$argon2i$"}},
    {"{SHA512-CRYPT}", PASSWORD_CRYPT, {"$6$"}},
    {"{SHA256-CRYPT}", PASSWORD_CRYPT, {"$5$"}},
    {"{BLF-CRYPT}", PASSWORD_CRYPT, {"$2y$", "$2b$", "$2a$"}},
    {"{CRYPT}", PASSWORD_CRYPT, {""}},
    /* Bare strings, no prefix. */
    {"", PASSWORD_ARGON2ID, {"$argon2id$"}},
    {"", PASSWORD_ARGON2I, {"$argon2i$"}},
    {"", PASSWORD_CRYPT, {"$6$", "$5$", "$y$"}},
    {"", PASSWORD_CRYPT, {"$2y$", "$2b$"}},
};

static void password_random(void *p, size_t n)
{
	unsigned char *b = p;

	while (n > 0) {
		ssize_t r = getrandom(b, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			fatal("getrandom: %s", strerror(errno));
		}
		b += r;
		n -= (size_t)r;
	}
}

char *password_hash(const char *password)
{
	unsigned char salt[PASSWORD_SALT_LEN];
	size_t enclen = argon2_encodedlen(PASSWORD_T_COST, PASSWORD_M_COST, PASSWORD_PARALLELISM,
	                                  PASSWORD_SALT_LEN, PASSWORD_HASH_LEN, Argon2_id);
	char *enc = xmalloc(enclen);
	int rc;

	password_random(salt, sizeof(salt));
	rc = argon2id_hash_encoded(PASSWORD_T_COST, PASSWORD_M_COST, PASSWORD_PARALLELISM, password,
	                           strlen(password), salt, sizeof(salt), PASSWORD_HASH_LEN, enc,
	                           enclen);
	/* Only out-of-memory or a broken libargon2 can fail here. */
	if (rc != ARGON2_OK)
		fatal("argon2id_hash_encoded: %s", argon2_error_message(rc));
	return enc;
}

static int password_verify_argon2(const char *hash, const char *password, argon2_type type)
{
	int rc = argon2_verify(hash, password, strlen(password), type);

	if (rc == ARGON2_OK)
		return 1;
	if (rc == ARGON2_VERIFY_MISMATCH)
		return 0;
	return -1;
}

/* crypt(3) through crypt_rn: reentrant, and it reports failure with NULL
 * instead of a "*" token. The output length depends only on the setting, never
 * on the password: a stored string of another length is a bare setting or a
 * truncated hash, i.e. malformed. The bytes compare in constant time. */
static int password_verify_crypt(const char *hash, const char *password)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *out = crypt_rn(password, hash, cd, sizeof(*cd));
	size_t n = strlen(hash);
	int ret;

	if (out == NULL || out[0] == '*')
		ret = -1;
	else if (strlen(out) != n)
		ret = -1;
	else
		ret = CRYPTO_memcmp(out, hash, n) == 0;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ret;
}

static bool password_body_matches(const struct password_scheme *sch, const char *body)
{
	for (size_t i = 0; i < sizeof(sch->bodies) / sizeof(sch->bodies[0]); i++) {
		const char *b = sch->bodies[i];

		if (b == NULL)
			break;
		if (strncmp(body, b, strlen(b)) == 0)
			return true;
	}
	return false;
}

int password_verify(const char *hash, const char *password)
{
	for (size_t i = 0; i < sizeof(password_schemes) / sizeof(password_schemes[0]); i++) {
		const struct password_scheme *sch = &password_schemes[i];
		size_t plen = strlen(sch->prefix);
		const char *body = hash + plen;

		if (strncasecmp(hash, sch->prefix, plen) != 0)
			continue;
		if (!password_body_matches(sch, body))
			continue;
		switch (sch->kind) {
		case PASSWORD_ARGON2ID:
			return password_verify_argon2(body, password, Argon2_id);
		case PASSWORD_ARGON2I:
			return password_verify_argon2(body, password, Argon2_i);
		case PASSWORD_CRYPT:
			return password_verify_crypt(body, password);
		}
	}
	return -1;
}
