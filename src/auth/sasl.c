/* SASL message decoding: PLAIN (RFC 4616) and LOGIN
 * (draft-murchison-sasl-login-00). */
#include "auth/sasl.h"

#include <string.h>

#include "core/base64.h"
#include "core/xmalloc.h"

/* Decodes b64 with the size limit checked before any work, so a client
 * cannot make us allocate for an over-long line. */
static int sasl_decode(const char *b64, unsigned char **out_r, size_t *n_r)
{
	size_t len = strnlen(b64, SASL_MAX_B64 + 1);

	if (len > SASL_MAX_B64)
		return -1;
	if (base64_decode(b64, len, out_r, n_r) < 0)
		return -1;
	if (*n_r > SASL_MAX_DECODED) {
		x_free(out_r);
		return -1;
	}
	return 0;
}

/* RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd, where
 * authcid and passwd are 1*SAFE (any UTF-8 but NUL). */
int sasl_plain_decode(const char *b64, char **authzid_r, char **user_r, char **pass_r)
{
	unsigned char *msg;
	size_t n;
	const char *authzid, *user, *pass, *nul1, *nul2;
	size_t zlen, ulen, plen;

	if (sasl_decode(b64, &msg, &n) < 0)
		return -1;
	authzid = (const char *)msg;
	nul1 = memchr(msg, '\0', n);
	if (nul1 == NULL)
		goto bad;
	user = nul1 + 1;
	nul2 = memchr(user, '\0', n - (size_t)(user - authzid));
	if (nul2 == NULL)
		goto bad;
	pass = nul2 + 1;
	zlen = (size_t)(nul1 - authzid);
	ulen = (size_t)(nul2 - user);
	plen = n - (size_t)(pass - authzid);
	/* A third NUL would sit inside passwd, which is 1*SAFE. */
	if (ulen == 0 || plen == 0 || memchr(pass, '\0', plen) != NULL)
		goto bad;
	*authzid_r = xstrndup(authzid, zlen);
	*user_r = xstrndup(user, ulen);
	*pass_r = xstrndup(pass, plen);
	explicit_bzero(msg, n);
	free(msg);
	return 0;
bad:
	explicit_bzero(msg, n);
	free(msg);
	return -1;
}

int sasl_login_decode(const char *b64, char **text_r)
{
	unsigned char *msg;
	size_t n;

	if (sasl_decode(b64, &msg, &n) < 0)
		return -1;
	/* A NUL would silently cut the C string short. */
	if (memchr(msg, '\0', n) != NULL) {
		explicit_bzero(msg, n);
		free(msg);
		return -1;
	}
	*text_r = (char *)msg;
	return 0;
}
