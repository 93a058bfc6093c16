/* Unit tests: base64, password, sasl (decoding and the server state
 * machine), throttle, and the login service's cache and throttling rules. */
#include <argon2.h>
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "auth/login.h"
#include "auth/password.h"
#include "auth/sasl.h"
#include "auth/throttle.h"
#include "core/base64.h"
#include "core/xmalloc.h"
#include "../test.h"

static void test_base64_encode(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    /* RFC 4648 10 */
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	    {"\xff\xfe\xfd", "//79"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = base64_encode(cases[i].in, strlen(cases[i].in));

		CHECK_STR((int)i, got, cases[i].out);
		free(got);
	}
}

static void test_base64_decode(void)
{
	static const struct {
		const char *in;
		int rc;
		const char *out;
		size_t n;
	} cases[] = {
	    {"", 0, "", 0},
	    {"Zg==", 0, "f", 1},
	    {"Zm8=", 0, "fo", 2},
	    {"Zm9v", 0, "foo", 3},
	    {"Zm9vYmFy", 0, "foobar", 6},
	    {"AGEAYg==", 0, "\0a\0b", 4},
	    {"//79", 0, "\xff\xfe\xfd", 3},
	    {"Zg", -1, NULL, 0},  /* padding required */
	    {"Zg=", -1, NULL, 0}, /* length not a multiple of 4 */
	    {"Zm9", -1, NULL, 0},
	    {"Zm9v\n", -1, NULL, 0}, /* no whitespace */
	    {"Zm 9", -1, NULL, 0},
	    {"Zm9-", -1, NULL, 0}, /* base64url alphabet is not ours */
	    {"Z===", -1, NULL, 0},
	    {"====", -1, NULL, 0},
	    {"Zg==Zg==", -1, NULL, 0}, /* pad in the middle */
	    {"Zm=v", -1, NULL, 0},     /* data after pad */
	    {"Zh==", -1, NULL, 0},     /* non-zero pad bits (RFC 4648 3.5) */
	    {"Zm9=", -1, NULL, 0},
	    {"=", -1, NULL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char *out = NULL;
		size_t n = 0;
		int rc = base64_decode(cases[i].in, strlen(cases[i].in), &out, &n);

		CHECK_INT((int)i, rc, cases[i].rc);
		if (rc == 0 && cases[i].rc == 0) {
			CHECK_INT((int)i, n, cases[i].n);
			CHECK_INT((int)i, memcmp(out, cases[i].out, n), 0);
			CHECK_INT((int)i, out[n], 0);
		}
		free(out);
	}
}

static void test_base64_roundtrip(void)
{
	unsigned char in[256];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 3);
	for (size_t n = 0; n <= sizeof(in); n += 37) {
		char *enc = base64_encode(in, n);
		unsigned char *dec = NULL;
		size_t m = 0;

		CHECK_INT((int)n, base64_decode(enc, strlen(enc), &dec, &m), 0);
		CHECK_INT((int)n, m, n);
		CHECK_INT((int)n, dec != NULL && memcmp(dec, in, n) == 0, 1);
		free(enc);
		free(dec);
	}
}

/* Hashes made with lower argon2 costs than ours, to keep the test quick. */
static char *test_argon2(argon2_type type, const char *pw)
{
	static const unsigned char salt[16] = "0123456789abcdef";
	size_t len = argon2_encodedlen(1, 1024, 1, sizeof(salt), 32, type);
	char *enc = xmalloc(len);
	int rc = argon2_hash(1, 1024, 1, pw, strlen(pw), salt, sizeof(salt), NULL, 32, enc, len,
	                     type, ARGON2_VERSION_NUMBER);

	CHECK_INT(0, rc, ARGON2_OK);
	return enc;
}

static char *test_crypt(const char *pw, const char *prefix)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *out = NULL;
	char *ret;

	if (crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)) != NULL)
		out = crypt_rn(pw, setting, cd, sizeof(*cd));
	CHECK(out != NULL);
	ret = xstrdup(out != NULL ? out : "*");
	free(cd);
	return ret;
}

static void test_password_roundtrip(void)
{
	char *h = password_hash("correct horse");
	char *h2 = password_hash("correct horse");

	CHECK_INT(0, strncmp(h, "$argon2id$v=19$m=65536,t=3,p=1$", 31), 0);
	CHECK_INT(1, password_verify(h, "correct horse"), 1);
	CHECK_INT(2, password_verify(h, "correct horsf"), 0);
	CHECK_INT(3, password_verify(h, ""), 0);
	CHECK_INT(4, strcmp(h, h2) != 0, 1); /* fresh salt each time */
	free(h);
	free(h2);
}

static void test_password_vectors(void)
{
	char *a2id = test_argon2(Argon2_id, "pw");
	char *a2i = test_argon2(Argon2_i, "pw");
	char *y = test_crypt("pw", "$y$");
	char *b2y = test_crypt("pw", "$2y$");
	char *s6 = test_crypt("pw", "$6$");
	char *pre_a2id = xasprintf("{argon2id}%s", a2id);
	char *pre_a2i = xasprintf("{ARGON2I}%s", a2i);
	char *pre_a2id_i = xasprintf("{ARGON2ID}%s", a2i);
	char *pre_s6 = xasprintf("{SHA512-CRYPT}%s", s6);
	char *pre_b2y = xasprintf("{BLF-CRYPT}%s", b2y);
	char *pre_y = xasprintf("{CRYPT}%s", y);
	const struct {
		const char *hash, *pw;
		int want;
	} cases[] = {
	    /* Published vectors: Drepper's SHA-crypt spec, crypt_blowfish. */
	    {"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiB"
	     "FdcbYEdFCoEOfaS35inz1",
	     "Hello world!", 1},
	    {"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiB"
	     "FdcbYEdFCoEOfaS35inz1",
	     "Hello world", 0},
	    {"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!", 1},
	    {"{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
	     "Hello world!", 1},
	    {"$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", 1},
	    {"$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", 1},
	    {"$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*V", 0},
	    {"{blf-crypt}$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", 1},
	    /* Generated here with crypt_rn / libargon2. */
	    {a2id, "pw", 1},
	    {a2id, "pW", 0},
	    {a2i, "pw", 1},
	    {pre_a2id, "pw", 1},
	    {pre_a2i, "pw", 1},
	    {pre_a2i, "px", 0},
	    {y, "pw", 1},
	    {y, "px", 0},
	    {b2y, "pw", 1},
	    {s6, "pw", 1},
	    {pre_s6, "pw", 1},
	    {pre_s6, "", 0},
	    {pre_b2y, "pw", 1},
	    {pre_y, "pw", 1},
	    {"{CRYPT}abNANd1rDfiNc", "secret", 1}, /* traditional DES, {CRYPT} only */
	    {"{CRYPT}abNANd1rDfiNc", "secreT", 0},
	    /* Unknown or malformed. */
	    {pre_a2id_i, "pw", -1}, /* {ARGON2ID} over an argon2i hash */
	    {"{SHA512-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
	     "Hello world!", -1},
	    {"abNANd1rDfiNc", "secret", -1},                  /* bare DES is not accepted */
	    {"$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "pw", -1}, /* bare MD5-crypt */
	    {"{PLAIN}pw", "pw", -1},
	    {"{SHA512-CRYPT}", "pw", -1},
	    {"{CRYPT}", "pw", -1},
	    {"{CRYPT}*", "pw", -1},
	    {"", "", -1},
	    {"$argon2id$", "pw", -1},
	    {"$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$", "pw", -1},
	    {"$6$", "pw", -1},
	    {"$2y$05$short", "pw", -1},
	    {"$y$", "pw", -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_INT((int)i, password_verify(cases[i].hash, cases[i].pw), cases[i].want);
	free(a2id);
	free(a2i);
	free(y);
	free(b2y);
	free(s6);
	free(pre_a2id);
	free(pre_a2i);
	free(pre_a2id_i);
	free(pre_s6);
	free(pre_b2y);
	free(pre_y);
}

static void test_sasl_plain(void)
{
	static const struct {
		const char *raw;
		size_t rawlen; /* 0: not used, b64 given literally */
		const char *b64;
		int rc;
		const char *authzid, *user, *pass;
	} cases[] = {
	    {"\0tim\0tanstaaftanstaaf", 21, NULL, 0, "", "tim", "tanstaaftanstaaf"},
	    {"Ursel\0Kurt\0xipj3plmq", 20, NULL, 0, "Ursel", "Kurt", "xipj3plmq"},
	    {"\0u\0p", 4, NULL, 0, "", "u", "p"},
	    {"\0\xc3\xa9t\xc3\xa9\0p w", 10, NULL, 0, "", "\xc3\xa9t\xc3\xa9", "p w"},
	    {"\0\0pass", 6, NULL, -1, NULL, NULL, NULL},        /* empty authcid */
	    {"\0user\0", 6, NULL, -1, NULL, NULL, NULL},        /* empty passwd */
	    {"\0user\0pa\0ss", 11, NULL, -1, NULL, NULL, NULL}, /* NUL in passwd */
	    {"userpass", 8, NULL, -1, NULL, NULL, NULL},        /* no NULs */
	    {"\0userpass", 9, NULL, -1, NULL, NULL, NULL},      /* one NUL */
	    {NULL, 0, "", -1, NULL, NULL, NULL},
	    {NULL, 0, "=", -1, NULL, NULL, NULL},
	    {NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 0, "", "tim", "tanstaaftanstaaf"},
	    {NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n", -1, NULL, NULL, NULL},
	    {NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWF", -1, NULL, NULL, NULL},
	    {NULL, 0, "*", -1, NULL, NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *b64 = cases[i].raw ? base64_encode(cases[i].raw, cases[i].rawlen)
		                         : xstrdup(cases[i].b64);
		char *z = NULL, *u = NULL, *p = NULL;
		int rc = sasl_plain_decode(b64, &z, &u, &p);

		CHECK_INT((int)i, rc, cases[i].rc);
		if (rc == 0) {
			CHECK_STR((int)i, z, cases[i].authzid);
			CHECK_STR((int)i, u, cases[i].user);
			CHECK_STR((int)i, p, cases[i].pass);
		}
		free(b64);
		free(z);
		free(u);
		free(p);
	}
}

/* Limits: 1024 decoded bytes pass, 1025 do not. */
static void test_sasl_limits(void)
{
	for (int i = 0; i < 2; i++) {
		size_t n = SASL_MAX_DECODED + (size_t)i;
		char *raw = xmalloc(n);
		char *b64, *z = NULL, *u = NULL, *p = NULL, *t = NULL;

		memset(raw, 'x', n);
		raw[0] = '\0';
		raw[5] = '\0';
		b64 = base64_encode(raw, n);
		CHECK_INT(i, sasl_plain_decode(b64, &z, &u, &p), i == 0 ? 0 : -1);
		CHECK_INT(i, sasl_login_decode(b64, &t), -1); /* has NULs */
		free(b64);
		memset(raw, 'x', n);
		b64 = base64_encode(raw, n);
		CHECK_INT(10 + i, sasl_login_decode(b64, &t), i == 0 ? 0 : -1);
		CHECK_INT(10 + i, t != NULL ? strlen(t) : 0, i == 0 ? n : 0);
		free(b64);
		free(raw);
		free(z);
		free(u);
		free(p);
		free(t);
	}
}

static void test_sasl_login(void)
{
	static const struct {
		const char *b64;
		int rc;
		const char *text;
	} cases[] = {
	    {"dXNlcm5hbWU=", 0, "username"},
	    {"cGFzcw==", 0, "pass"},
	    {"", 0, ""},
	    {"dXNlcm5hbWU", -1, NULL},
	    {"dXNl cm5h", -1, NULL},
	    {"AGE=", -1, NULL}, /* "\0a" */
	    {"=", -1, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = NULL;

		CHECK_INT((int)i, sasl_login_decode(cases[i].b64, &t), cases[i].rc);
		CHECK_STR((int)i, t, cases[i].text);
		free(t);
	}
}

/* A script of steps against one throttle(3 failures, 60 s, 4 keys). */
static void test_throttle_window(void)
{
	enum { FAIL, BLOCKED, CLEAR };
	static const struct {
		int op;
		const char *key;
		uint64_t now;
		bool want; /* for BLOCKED */
	} steps[] = {
	    {BLOCKED, "1.2.3.4", 100, false},
	    {FAIL, "1.2.3.4", 100, false},
	    {FAIL, "1.2.3.4", 110, false},
	    {BLOCKED, "1.2.3.4", 110, false},
	    {FAIL, "1.2.3.4", 120, false},
	    {BLOCKED, "1.2.3.4", 120, true},
	    {BLOCKED, "1.2.3.5", 120, false}, /* other keys are separate */
	    {BLOCKED, "1.2.3.4", 159, true},
	    {BLOCKED, "1.2.3.4", 160, false}, /* failure at 100 aged out */
	    {FAIL, "1.2.3.4", 161, false},
	    {BLOCKED, "1.2.3.4", 161, true},  /* 110, 120, 161 */
	    {BLOCKED, "1.2.3.4", 170, false}, /* 110 aged out */
	    {CLEAR, "1.2.3.4", 0, false},
	    {FAIL, "1.2.3.4", 171, false},
	    {FAIL, "1.2.3.4", 172, false},
	    {BLOCKED, "1.2.3.4", 172, false}, /* cleared: only 2 now */
	    {FAIL, "1.2.3.4", 173, false},
	    {FAIL, "1.2.3.4", 174, false},   /* more than max keeps newest */
	    {BLOCKED, "1.2.3.4", 231, true}, /* 172, 173, 174 */
	    {BLOCKED, "1.2.3.4", 232, false},
	    {BLOCKED, "1.2.3.4", 500, false},
	    {CLEAR, "never-seen", 0, false},
	};
	struct throttle *t = throttle_new(3, 60, 4);

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		switch (steps[i].op) {
		case FAIL:
			throttle_fail(t, steps[i].key, steps[i].now);
			break;
		case CLEAR:
			throttle_clear(t, steps[i].key);
			break;
		case BLOCKED:
			CHECK_INT((int)i, throttle_blocked(t, steps[i].key, steps[i].now),
			          steps[i].want);
			break;
		}
	}
	throttle_free(&t);
	CHECK(t == NULL);
	throttle_free(&t);
}

/* max_keys bounds memory; the key that failed least recently goes first. */
static void test_throttle_evict(void)
{
	struct throttle *t = throttle_new(2, 1000, 3);
	char key[32];

	for (int k = 0; k < 3; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		throttle_fail(t, key, 10);
		throttle_fail(t, key, 11);
	}
	throttle_fail(t, "k0", 12); /* k0 is now the freshest */
	throttle_fail(t, "k3", 13); /* evicts k1 */
	CHECK_INT(0, throttle_blocked(t, "k0", 14), true);
	CHECK_INT(1, throttle_blocked(t, "k1", 14), false);
	CHECK_INT(2, throttle_blocked(t, "k2", 14), true);
	throttle_fail(t, "k3", 15);
	CHECK_INT(3, throttle_blocked(t, "k3", 15), true);
	/* Many keys: the table stays at max_keys, lookups still work. */
	for (int k = 0; k < 10000; k++) {
		snprintf(key, sizeof(key), "many%d", k);
		throttle_fail(t, key, 20);
		throttle_fail(t, key, 20);
	}
	CHECK_INT(4, throttle_blocked(t, "many9999", 21), true);
	CHECK_INT(5, throttle_blocked(t, "many9997", 21), true);
	CHECK_INT(6, throttle_blocked(t, "many9996", 21), false);
	CHECK_INT(7, throttle_blocked(t, "k0", 21), false);
	throttle_free(&t);
}

/* The verified-login cache: hits only for the same user, hash and password;
 * failures and unknown accounts are never remembered. */
static void test_login_cache(void)
{
	char *h1 = password_hash("right"), *h2 = password_hash("newpass");
	struct auth_login_config cfg = {
	    .cache_ttl_s = 3600, .max_failures = 5, .window_s = 300, .delay_max_s = 15};
	struct auth_login *al = auth_login_new(&cfg);

	CHECK_INT(1, auth_login_verify(al, "a@x.test", h1, "right"), 1);
	CHECK_INT(2, auth_login_cache_hits(al), 0);
	CHECK_INT(3, auth_login_verify(al, "a@x.test", h1, "right"), 1);
	CHECK_INT(4, auth_login_cache_hits(al), 1);
	CHECK_INT(5, auth_login_verify(al, "a@x.test", h1, "wrong"), 0);
	CHECK_INT(6, auth_login_verify(al, "a@x.test", h1, "wrong"), 0);
	CHECK_INT(7, auth_login_cache_hits(al), 1);
	/* password changed: the old one must not be let in from the cache */
	CHECK_INT(8, auth_login_verify(al, "a@x.test", h2, "right"), 0);
	CHECK_INT(9, auth_login_verify(al, "b@x.test", h1, "right"),
	          1); /* other user: full check */
	CHECK_INT(10, auth_login_cache_hits(al), 1);
	CHECK_INT(11, auth_login_verify(al, "nobody@x.test", NULL, "right"), 0);
	CHECK_INT(12, auth_login_verify(al, "a@x.test", "{BOGUS}zz", "right"), -1);
	auth_login_free(&al);
	CHECK(al == NULL);

	cfg.cache_ttl_s = 0; /* cache off */
	al = auth_login_new(&cfg);
	CHECK_INT(13, auth_login_verify(al, "a@x.test", h1, "right"), 1);
	CHECK_INT(14, auth_login_verify(al, "a@x.test", h1, "right"), 1);
	CHECK_INT(15, auth_login_cache_hits(al), 0);
	auth_login_free(&al);
	free(h1);
	free(h2);
}

/* throttle_count: failures in the window and the newest one's time. */
static void test_throttle_count(void)
{
	struct throttle *t = throttle_new(3, 60, 4);
	uint64_t last = 0;

	CHECK_INT(0, throttle_count(t, "k", 10, &last), 0);
	throttle_fail(t, "k", 10);
	throttle_fail(t, "k", 20);
	CHECK_INT(1, throttle_count(t, "k", 20, &last), 2);
	CHECK_INT(2, last, 20);
	throttle_fail(t, "k", 30);
	throttle_fail(t, "k", 40); /* the ring keeps the newest three */
	CHECK_INT(3, throttle_count(t, "k", 40, &last), 3);
	CHECK_INT(4, last, 40);
	CHECK_INT(5, throttle_count(t, "k", 85, NULL), 2); /* 20 aged out */
	CHECK_INT(6, throttle_count(t, "k", 91, NULL), 1); /* and 30 */
	CHECK_INT(7, throttle_count(t, "k", 100, NULL), 0);
	throttle_free(&t);
}

/* The SASL server state machine, one exchange per case: start (mech, ir)
 * then the client's lines. Each step gives the status wanted and, for
 * SASL_CONTINUE the challenge, for SASL_DONE "authzid|authcid|password",
 * for SASL_MALFORMED the error. "LONG" stands for an over-long line. */
static void test_sasl_server(void)
{
	enum { END = -1 };
	static const struct {
		const char *mech, *ir; /* ir NULL: no initial response */
		struct {
			const char *line; /* NULL for the start */
			int st;
			const char *out;
		} steps[4];
	} cases[] = {
	    /* 0: PLAIN with an initial response */
	    {"PLAIN", "AGFsaWNlAHB3", {{NULL, SASL_DONE, "|alice|pw"}, {NULL, END, NULL}}},
	    /* 1: PLAIN without: an empty challenge, then the message */
	    {"plain",
	     NULL,
	     {{NULL, SASL_CONTINUE, ""},
	      {"Ym9iAGFsaWNlAHB3", SASL_DONE, "bob|alice|pw"},
	      {NULL, END, NULL}}},
	    /* 2: PLAIN "=": an empty message is not a PLAIN message */
	    {"PLAIN",
	     "=",
	     {{NULL, SASL_MALFORMED, "invalid SASL PLAIN response"}, {NULL, END, NULL}}},
	    /* 3: LOGIN in two steps */
	    {"LOGIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, "VXNlcm5hbWU6"},
	      {"YWxpY2U=", SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"cHc=", SASL_DONE, "|alice|pw"},
	      {NULL, END, NULL}}},
	    /* 4: LOGIN with the user name as initial response */
	    {"Login",
	     "YWxpY2U=",
	     {{NULL, SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"cHc=", SASL_DONE, "|alice|pw"},
	      {NULL, END, NULL}}},
	    /* 5: LOGIN "=": no user name yet, so it is asked for (Dovecot, Cyrus) */
	    {"LOGIN",
	     "=",
	     {{NULL, SASL_CONTINUE, "VXNlcm5hbWU6"},
	      {"YWxpY2U=", SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"cHc=", SASL_DONE, "|alice|pw"},
	      {NULL, END, NULL}}},
	    /* 6: LOGIN with an empty user name and password: handed on (the
	     * login check fails it like an unknown account) */
	    {"LOGIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, "VXNlcm5hbWU6"},
	      {"", SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"", SASL_DONE, "||"},
	      {NULL, END, NULL}}},
	    /* 7-12: "*" cancels at every step, and as an initial response */
	    {"PLAIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, ""}, {"*", SASL_CANCELLED, NULL}, {NULL, END, NULL}}},
	    {"LOGIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, "VXNlcm5hbWU6"},
	      {"*", SASL_CANCELLED, NULL},
	      {NULL, END, NULL}}},
	    {"LOGIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, "VXNlcm5hbWU6"},
	      {"YWxpY2U=", SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"*", SASL_CANCELLED, NULL},
	      {NULL, END, NULL}}},
	    {"LOGIN",
	     "YWxpY2U=",
	     {{NULL, SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"*", SASL_CANCELLED, NULL},
	      {NULL, END, NULL}}},
	    {"PLAIN", "*", {{NULL, SASL_CANCELLED, NULL}, {NULL, END, NULL}}},
	    {"LOGIN", "*", {{NULL, SASL_CANCELLED, NULL}, {NULL, END, NULL}}},
	    /* 13-17: bad base64 at each place */
	    {"PLAIN",
	     "AGFsaWNlAHB",
	     {{NULL, SASL_MALFORMED, "invalid SASL PLAIN response"}, {NULL, END, NULL}}},
	    {"PLAIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, ""},
	      {"not base64!", SASL_MALFORMED, "invalid SASL PLAIN response"},
	      {NULL, END, NULL}}},
	    {"LOGIN", "YWxpY2U", {{NULL, SASL_MALFORMED, "invalid base64"}, {NULL, END, NULL}}},
	    {"LOGIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, "VXNlcm5hbWU6"},
	      {"=", SASL_MALFORMED, "invalid base64"},
	      {NULL, END, NULL}}},
	    {"LOGIN",
	     "YWxpY2U=",
	     {{NULL, SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"cHc", SASL_MALFORMED, "invalid base64"},
	      {NULL, END, NULL}}},
	    /* 18: a NUL inside a LOGIN answer would cut the string short */
	    {"LOGIN",
	     "YWxpY2UAeA==",
	     {{NULL, SASL_MALFORMED, "invalid base64"}, {NULL, END, NULL}}},
	    /* 19: PLAIN's form: an empty password */
	    {"PLAIN",
	     "AGFsaWNlAA==",
	     {{NULL, SASL_MALFORMED, "invalid SASL PLAIN response"}, {NULL, END, NULL}}},
	    /* 20-23: over-long input, as initial response and as a line */
	    {"PLAIN",
	     "LONG",
	     {{NULL, SASL_MALFORMED, "initial response too long"}, {NULL, END, NULL}}},
	    {"LOGIN",
	     "LONG",
	     {{NULL, SASL_MALFORMED, "initial response too long"}, {NULL, END, NULL}}},
	    {"PLAIN",
	     NULL,
	     {{NULL, SASL_CONTINUE, ""},
	      {"LONG", SASL_MALFORMED, "response too long"},
	      {NULL, END, NULL}}},
	    {"LOGIN",
	     "YWxpY2U=",
	     {{NULL, SASL_CONTINUE, "UGFzc3dvcmQ6"},
	      {"LONG", SASL_MALFORMED, "response too long"},
	      {NULL, END, NULL}}},
	    /* 24-25: unknown mechanisms */
	    {"CRAM-MD5", NULL, {{NULL, SASL_NOMECH, NULL}, {NULL, END, NULL}}},
	    {"PLAINX", "AGFsaWNlAHB3", {{NULL, SASL_NOMECH, NULL}, {NULL, END, NULL}}},
	};
	char *longline = xmalloc(SASL_MAX_B64 + 5);

	memset(longline, 'A', SASL_MAX_B64 + 4);
	longline[SASL_MAX_B64 + 4] = '\0';
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sasl_server ss = {0};
		struct sasl_out out;
		int c = (int)i;

		for (size_t k = 0; k < 4 && cases[i].steps[k].st != END; k++) {
			const char *in = k == 0 ? cases[i].ir : cases[i].steps[k].line;
			int st;

			if (in != NULL && strcmp(in, "LONG") == 0)
				in = longline;
			if (k == 0)
				st = sasl_server_start(&ss, cases[i].mech, in, &out);
			else
				st = sasl_server_step(&ss, in, &out);
			CHECK_INT(c * 10 + (int)k, st, cases[i].steps[k].st);
			/* only a continuation leaves an exchange open */
			CHECK_INT(c * 10 + (int)k, sasl_server_active(&ss), st == SASL_CONTINUE);
			if (st == SASL_CONTINUE) {
				CHECK_STR(c * 10 + (int)k, out.challenge, cases[i].steps[k].out);
			} else if (st == SASL_MALFORMED) {
				CHECK_STR(c * 10 + (int)k, out.error, cases[i].steps[k].out);
			} else if (st == SASL_DONE) {
				char *got = xasprintf("%s|%s|%s", out.creds.authzid,
				                      out.creds.authcid, out.creds.password);
				CHECK_STR(c * 10 + (int)k, got, cases[i].steps[k].out);
				free(got);
				sasl_creds_clear(&out.creds);
				CHECK(out.creds.password == NULL);
			}
			if (st != SASL_CONTINUE)
				break;
		}
		sasl_server_reset(&ss);
	}
	/* A new start abandons an exchange in progress. */
	struct sasl_server ss = {0};
	struct sasl_out out;
	CHECK_INT(100, sasl_server_start(&ss, "LOGIN", "YWxpY2U=", &out), SASL_CONTINUE);
	CHECK_INT(101, sasl_server_start(&ss, "PLAIN", NULL, &out), SASL_CONTINUE);
	CHECK_INT(102, sasl_server_step(&ss, "AGFsaWNlAHB3", &out), SASL_DONE);
	sasl_creds_clear(&out.creds);
	/* A line with no exchange in progress is refused, not crashed on. */
	CHECK_INT(103, sasl_server_step(&ss, "cHc=", &out), SASL_MALFORMED);
	sasl_server_reset(&ss);
	free(longline);
}

/* The login service's throttling, as a script with a made-up clock (seconds):
 * the two-address lockout attack of issue 6, the growing delay per
 * (account, network), the per-address limit, and what a success resets.
 * max_failures 5, window 300 s, delays 1, 2, 4, 8, 15 (cap) s. */
static void test_login_throttle(void)
{
	enum { ADMIT, FAIL, OK };
	static const struct {
		int op;
		const char *ip, *user;
		uint64_t now;
		int want;     /* ADMIT: verdict */
		unsigned num; /* ADMIT: retry_s (AUTH_WAIT); FAIL: delay_ms */
		bool close;   /* FAIL */
	} steps[] = {
	    /* attacker one, 127.0.0.2: each retry waits for the growing delay */
	    {ADMIT, "127.0.0.2", "alice@x.test", 100, AUTH_OK, 0, false},
	    {FAIL, "127.0.0.2", "alice@x.test", 100, 0, 1000, false},
	    {ADMIT, "127.0.0.2", "alice@x.test", 100, AUTH_WAIT, 1, false},
	    {ADMIT, "127.0.0.2", "ALICE@x.test", 101, AUTH_OK, 0, false}, /* case-blind */
	    {FAIL, "127.0.0.2", "alice@x.test", 101, 0, 2000, false},
	    {ADMIT, "127.0.0.2", "alice@x.test", 102, AUTH_WAIT, 1, false},
	    {ADMIT, "127.0.0.2", "bob@x.test", 102, AUTH_OK, 0, false}, /* other account */
	    {FAIL, "127.0.0.2", "alice@x.test", 103, 0, 4000, false},
	    {FAIL, "127.0.0.2", "alice@x.test", 107, 0, 8000, false},
	    {FAIL, "127.0.0.2", "alice@x.test", 115, 0, 15000, true}, /* 5th: closed */
	    {ADMIT, "127.0.0.2", "alice@x.test", 200, AUTH_BLOCKED, 0, false},
	    {ADMIT, "127.0.0.2", "bob@x.test", 200, AUTH_BLOCKED, 0, false},
	    /* attacker two, 127.0.0.3, same /24: fresh, so checked at once */
	    {ADMIT, "127.0.0.3", "alice@x.test", 116, AUTH_OK, 0, false},
	    {FAIL, "127.0.0.3", "alice@x.test", 116, 0, 15000, false},
	    {ADMIT, "127.0.0.3", "alice@x.test", 117, AUTH_WAIT, 14, false},
	    {FAIL, "127.0.0.3", "alice@x.test", 131, 0, 15000, false},
	    {FAIL, "127.0.0.3", "alice@x.test", 146, 0, 15000, false},
	    {FAIL, "127.0.0.3", "alice@x.test", 161, 0, 15000, false},
	    {FAIL, "127.0.0.3", "alice@x.test", 176, 0, 15000, true},
	    /* ten failures on alice from 127.0.0.0/24: the real user is not
	     * locked out, from the same /24 or from elsewhere */
	    {ADMIT, "127.0.0.4", "alice@x.test", 177, AUTH_OK, 0, false},
	    {ADMIT, "192.0.2.7", "alice@x.test", 177, AUTH_OK, 0, false},
	    {ADMIT, "::ffff:127.0.0.9", "alice@x.test", 177, AUTH_OK, 0, false},
	    /* a success clears only that (account, network) record */
	    {OK, "127.0.0.4", "alice@x.test", 177, AUTH_OK, 0, false},
	    {FAIL, "127.0.0.4", "alice@x.test", 178, 0, 1000, false}, /* count restarts */
	    /* an IPv4-mapped address is its IPv4 /24 */
	    {FAIL, "::ffff:127.0.0.9", "alice@x.test", 178, 0, 2000, false},
	    /* IPv6: one /64 is one network, the next /64 another */
	    {FAIL, "2001:db8::1", "carol@x.test", 500, 0, 1000, false},
	    {FAIL, "2001:db8::2", "carol@x.test", 500, 0, 2000, false},
	    {FAIL, "2001:db8:0:1::1", "carol@x.test", 500, 0, 1000, false},
	    {ADMIT, "2001:db8::1", "carol@x.test", 501, AUTH_WAIT, 1, false},
	    {ADMIT, "2001:db8::1", "carol@x.test", 502, AUTH_OK, 0, false},
	    /* the per-address count is the /64's: no fresh address in it */
	    {ADMIT, "2001:db8::99", "carol@x.test", 501, AUTH_WAIT, 1, false},
	    {ADMIT, "2001:db8:0:2::1", "carol@x.test", 501, AUTH_OK, 0, false},
	    {FAIL, "2001:db8::3", "dave@x.test", 503, 0, 1000, false},
	    {FAIL, "2001:db8::4", "erin@x.test", 503, 0, 1000, false},
	    {FAIL, "2001:db8::5", "frank@x.test", 503, 0, 1000, true}, /* 5th in the /64 */
	    {ADMIT, "2001:db8::77", "carol@x.test", 504, AUTH_BLOCKED, 0, false},
	    {ADMIT, "2001:db8:0:1::1", "carol@x.test", 504, AUTH_OK, 0, false}, /* its own /64 */
	    /* a success does not reset the address's count */
	    {FAIL, "198.51.100.1", "a@x.test", 600, 0, 1000, false},
	    {FAIL, "198.51.100.1", "b@x.test", 600, 0, 1000, false},
	    {FAIL, "198.51.100.1", "c@x.test", 600, 0, 1000, false},
	    {FAIL, "198.51.100.1", "d@x.test", 600, 0, 1000, false},
	    {OK, "198.51.100.1", "e@x.test", 601, AUTH_OK, 0, false},
	    {FAIL, "198.51.100.1", "f@x.test", 601, 0, 1000, true},
	    {ADMIT, "198.51.100.1", "e@x.test", 602, AUTH_BLOCKED, 0, false},
	    /* everything ages out with the window */
	    {ADMIT, "198.51.100.1", "e@x.test", 901, AUTH_OK, 0, false},
	    {ADMIT, "127.0.0.3", "alice@x.test", 480, AUTH_OK, 0, false},
	};
	struct auth_login_config cfg = {.max_failures = 5, .window_s = 300, .delay_max_s = 15};
	struct auth_login *al = auth_login_new(&cfg);

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct auth_outcome o = {0};
		unsigned retry = 0;
		int c = (int)i;

		switch (steps[i].op) {
		case ADMIT:
			CHECK_INT(
			    c,
			    auth_login_admit(al, steps[i].ip, steps[i].user, steps[i].now, &retry),
			    steps[i].want);
			CHECK_INT(c, retry, steps[i].num);
			break;
		case FAIL:
		case OK:
			auth_login_record(al, steps[i].ip, steps[i].user, steps[i].op == OK,
			                  steps[i].now, &o);
			CHECK_INT(c, o.verdict, steps[i].op == OK ? AUTH_OK : AUTH_FAIL);
			CHECK_INT(c, o.delay_ms, steps[i].num);
			CHECK_INT(c, o.close, steps[i].close);
			break;
		}
	}
	auth_login_free(&al);
}

/* throttle_unfail forgets the one failure recorded at that time, wherever
 * it sits in the ring, and the key when it was the last. */
static void test_throttle_unfail(void)
{
	struct throttle *t = throttle_new(3, 60, 4);
	uint64_t last = 0;

	throttle_fail(t, "k", 10);
	throttle_fail(t, "k", 20);
	throttle_fail(t, "k", 30);
	throttle_unfail(t, "k", 20); /* the middle one */
	CHECK_INT(0, throttle_count(t, "k", 30, &last), 2);
	CHECK_INT(1, last, 30);
	throttle_unfail(t, "k", 99); /* not there: nothing */
	CHECK_INT(2, throttle_count(t, "k", 30, NULL), 2);
	throttle_unfail(t, "k", 30);
	CHECK_INT(3, throttle_count(t, "k", 30, &last), 1);
	CHECK_INT(4, last, 10);
	throttle_fail(t, "k", 40); /* the ring still works after a gap closed */
	throttle_fail(t, "k", 50);
	CHECK_INT(5, throttle_blocked(t, "k", 50), true);
	throttle_unfail(t, "k", 10);
	throttle_unfail(t, "k", 40);
	throttle_unfail(t, "k", 50);
	CHECK_INT(6, throttle_count(t, "k", 50, NULL), 0);
	throttle_unfail(t, "gone", 1);
	throttle_free(&t);
}

/* Checks in flight count against the address's budget: with 5 allowed and
 * 2 failures, 3 checks may run at once; the 4th waits until one ends. A
 * check that ends leaves no trace (its failure, if any, is recorded apart). */
static void test_login_inflight(void)
{
	struct auth_login_config cfg = {.max_failures = 5, .window_s = 300, .delay_max_s = 15};
	struct auth_login *al = auth_login_new(&cfg);
	struct auth_outcome o = {0};

	CHECK_INT(0, auth_login_busy(al, "192.0.2.1", 100), false);
	auth_login_record(al, "192.0.2.1", "a@x.test", false, 100, &o);
	auth_login_record(al, "192.0.2.1", "b@x.test", false, 100, &o);
	auth_login_check_begin(al, "192.0.2.1", 101);
	auth_login_check_begin(al, "::ffff:192.0.2.1", 101); /* the same address */
	CHECK_INT(1, auth_login_busy(al, "192.0.2.1", 101), false);
	auth_login_check_begin(al, "192.0.2.1", 102);
	CHECK_INT(2, auth_login_busy(al, "192.0.2.1", 102), true);
	CHECK_INT(3, auth_login_busy(al, "192.0.2.2", 102), false); /* another address */
	auth_login_check_end(al, "192.0.2.1", 101);
	CHECK_INT(4, auth_login_busy(al, "192.0.2.1", 103), false);
	/* one /64 is one address for IPv6 */
	for (int i = 0; i < 5; i++)
		auth_login_check_begin(al, "2001:db8::1", 200);
	CHECK_INT(5, auth_login_busy(al, "2001:db8::ffff", 200), true);
	for (int i = 0; i < 5; i++)
		auth_login_check_end(al, "2001:db8::1", 200);
	CHECK_INT(6, auth_login_busy(al, "2001:db8::ffff", 200), false);
	auth_login_free(&al);
}

/* An account name longer than any address is cut in the (account, network)
 * key, so over-long names cannot make the throttle's keys large: two such
 * names with the same first 320 bytes share one growing delay. */
static void test_login_long_user_key(void)
{
	struct auth_login_config cfg = {.max_failures = 50, .window_s = 300, .delay_max_s = 15};
	struct auth_login *al = auth_login_new(&cfg);
	struct auth_outcome o = {0};
	char a[1001], b[1001];

	memset(a, 'a', 1000);
	a[1000] = '\0';
	memcpy(b, a, sizeof(b));
	b[500] = 'b';
	auth_login_record(al, "192.0.2.1", a, false, 100, &o);
	CHECK_INT(0, o.delay_ms, 1000);
	auth_login_record(al, "192.0.2.1", b, false, 100, &o);
	CHECK_INT(1, o.delay_ms, 2000);
	b[100] = 'b'; /* within the kept part: another key */
	auth_login_record(al, "192.0.2.1", b, false, 100, &o);
	CHECK_INT(2, o.delay_ms, 1000);
	auth_login_free(&al);
}

int main(void)
{
	test_run("base64_encode", test_base64_encode);
	test_run("base64_decode", test_base64_decode);
	test_run("base64_roundtrip", test_base64_roundtrip);
	test_run("password_roundtrip", test_password_roundtrip);
	test_run("password_vectors", test_password_vectors);
	test_run("sasl_plain", test_sasl_plain);
	test_run("sasl_limits", test_sasl_limits);
	test_run("sasl_login", test_sasl_login);
	test_run("throttle_window", test_throttle_window);
	test_run("throttle_evict", test_throttle_evict);
	test_run("throttle_count", test_throttle_count);
	test_run("sasl_server", test_sasl_server);
	test_run("login_cache", test_login_cache);
	test_run("login_throttle", test_login_throttle);
	test_run("throttle_unfail", test_throttle_unfail);
	test_run("login_inflight", test_login_inflight);
	test_run("login_long_user_key", test_login_long_user_key);
	return test_done("test_auth");
}
