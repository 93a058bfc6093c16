/* SASL message decoding: PLAIN (RFC 4616) and LOGIN
 * (draft-murchison-sasl-login-00), and the server state machine. */
#include "auth/sasl.h"

#include <string.h>
#include <strings.h>

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

/* ---- the server state machine ---- */

/* LOGIN's challenges, base64 of "Username:" and "Password:" (the text every
 * client expects, though it ignores it). */
#define LOGIN_USERNAME "VXNlcm5hbWU6"
#define LOGIN_PASSWORD "UGFzc3dvcmQ6"

void sasl_creds_clear(struct sasl_creds *c)
{
	if (c->password != NULL)
		explicit_bzero(c->password, strlen(c->password));
	x_free(&c->authzid);
	x_free(&c->authcid);
	x_free(&c->password);
}

void sasl_server_reset(struct sasl_server *ss)
{
	ss->mech = SASL_MECH_NONE;
	x_free(&ss->login_user);
}

bool sasl_server_active(const struct sasl_server *ss)
{
	return ss->mech != SASL_MECH_NONE;
}

static enum sasl_status sasl_malformed(struct sasl_server *ss, struct sasl_out *out,
                                       const char *why)
{
	sasl_server_reset(ss);
	out->error = why;
	return SASL_MALFORMED;
}

static enum sasl_status sasl_continue(struct sasl_server *ss, struct sasl_out *out,
                                      enum sasl_mech mech, const char *challenge)
{
	ss->mech = mech;
	out->challenge = challenge;
	return SASL_CONTINUE;
}

/* PLAIN is one message (RFC 4616 2). */
static enum sasl_status sasl_plain_msg(struct sasl_server *ss, const char *b64,
                                       struct sasl_out *out)
{
	struct sasl_creds *c = &out->creds;

	sasl_server_reset(ss);
	if (sasl_plain_decode(b64, &c->authzid, &c->authcid, &c->password) < 0)
		return sasl_malformed(ss, out, "invalid SASL PLAIN response");
	return SASL_DONE;
}

/* LOGIN: the user name, then the password, each answering a challenge. */
static enum sasl_status sasl_login_msg(struct sasl_server *ss, const char *b64,
                                       struct sasl_out *out)
{
	char *text;

	if (sasl_login_decode(b64, &text) < 0)
		return sasl_malformed(ss, out, "invalid base64");
	if (ss->login_user == NULL) {
		/* An empty user name is not refused here: the login check
		 * fails it as it would an unknown account (Cyrus SASL's LOGIN
		 * does the same), so the answer says nothing more. */
		ss->login_user = text;
		return sasl_continue(ss, out, SASL_MECH_LOGIN, LOGIN_PASSWORD);
	}
	out->creds.authzid = xstrdup("");
	out->creds.authcid = ss->login_user;
	out->creds.password = text;
	ss->login_user = NULL;
	sasl_server_reset(ss);
	return SASL_DONE;
}

enum sasl_status sasl_server_start(struct sasl_server *ss, const char *mech, const char *ir,
                                   struct sasl_out *out)
{
	memset(out, 0, sizeof(*out));
	sasl_server_reset(ss);
	if (strcasecmp(mech, "PLAIN") != 0 && strcasecmp(mech, "LOGIN") != 0)
		return SASL_NOMECH;
	if (ir != NULL && strcmp(ir, "*") == 0)
		return SASL_CANCELLED;
	if (ir != NULL && strnlen(ir, SASL_MAX_B64 + 1) > SASL_MAX_B64)
		return sasl_malformed(ss, out, "initial response too long");
	if (strcasecmp(mech, "PLAIN") == 0) {
		/* No initial response: an empty challenge asks for the
		 * message. "=" is an empty one (RFC 4954 4, RFC 5034 4), which
		 * PLAIN cannot be (RFC 4616 2 needs two NULs). */
		if (ir == NULL)
			return sasl_continue(ss, out, SASL_MECH_PLAIN, "");
		return sasl_plain_msg(ss, strcmp(ir, "=") == 0 ? "" : ir, out);
	}
	/* LOGIN: the initial response is the user name. An empty one ("=")
	 * carries no user name, so the server asks for it, as Dovecot
	 * (mech-login.c) and Cyrus SASL (plugins/login.c, used by Postfix) do. */
	if (ir == NULL || strcmp(ir, "=") == 0)
		return sasl_continue(ss, out, SASL_MECH_LOGIN, LOGIN_USERNAME);
	return sasl_login_msg(ss, ir, out);
}

enum sasl_status sasl_server_step(struct sasl_server *ss, const char *line, struct sasl_out *out)
{
	memset(out, 0, sizeof(*out));
	if (ss->mech == SASL_MECH_NONE)
		return sasl_malformed(ss, out, "no authentication exchange in progress");
	/* RFC 4954 4, RFC 5034 4, RFC 3501 6.2.2: "*" cancels. */
	if (strcmp(line, "*") == 0) {
		sasl_server_reset(ss);
		return SASL_CANCELLED;
	}
	if (strnlen(line, SASL_MAX_B64 + 1) > SASL_MAX_B64)
		return sasl_malformed(ss, out, "response too long");
	if (ss->mech == SASL_MECH_PLAIN)
		return sasl_plain_msg(ss, line, out);
	return sasl_login_msg(ss, line, out);
}
