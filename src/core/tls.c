/* TLS contexts and the self-signed fallback certificate (OpenSSL 3 API). */
#include "core/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define TLS_SELFSIGNED_DAYS 3650

/* "what: first OpenSSL error" as a heap string; clears the error queue. */
static char *tls_err(const char *what)
{
	unsigned long e = ERR_get_error();
	char msg[256] = "unknown error";
	if (e)
		ERR_error_string_n(e, msg, sizeof msg);
	ERR_clear_error();
	return xasprintf("%s: %s", what, msg);
}

/* A context with the settings both sides share: TLS 1.2 and up (RFC 8996
 * deprecates older), no renegotiation or compression. */
static SSL_CTX *tls_ctx_new(const SSL_METHOD *method, char **err_r)
{
	*err_r = NULL;
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (ctx == NULL) {
		*err_r = tls_err("SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Renegotiation is an attack surface with no use for mail. An EOF
	 * without close_notify is common from mail clients (and servers) and
	 * harmless here (every protocol has its own end marker), so treat it as
	 * a plain EOF. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Partial writes and a moving buffer match conn.c's growable wbuf;
	 * releasing buffers keeps idle TLS connections small (~35 KB saved). */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char **err_r)
{
	SSL_CTX *ctx = tls_ctx_new(TLS_server_method(), err_r);
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	static const unsigned char sid_ctx[] = "postern";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);

	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		char *e = tls_err("certificate");
		*err_r = xasprintf("%s: %s", cert_file, e);
		free(e);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		char *e = tls_err("private key");
		*err_r = xasprintf("%s: %s", key_file, e);
		free(e);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		char *e = tls_err("key does not match certificate");
		*err_r = xasprintf("%s, %s: %s", cert_file, key_file, e);
		free(e);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_ctx_new(const char *ca_file, char **err_r)
{
	SSL_CTX *ctx = tls_ctx_new(TLS_client_method(), err_r);
	if (ctx == NULL)
		return NULL;
	/* The trust anchors serve only the connections that verify (chosen per
	 * connection in conn_starttls_client); verification is off by default. */
	int ok = ca_file && ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
				       : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		char *e = tls_err("CA bundle");
		*err_r = xasprintf("%s: %s", ca_file && ca_file[0] ? ca_file : "(system)", e);
		free(e);
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

/* ---- self-signed ---- */

/* mkdir -p for the directory part of path (new directories mode 0700). */
static int tls_mkdirs(const char *path, char **err_r)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	for (char *p = dir + 1; ; p++) {
		bool end = *p == '\0';
		if (*p != '/' && !end)
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			*err_r = xasprintf("mkdir %s: %s", dir, strerror(errno));
			free(dir);
			return -1;
		}
		if (end)
			break;
		*p = '/';
	}
	free(dir);
	return 0;
}

static void tls_fsync_dir(const char *path)
{
	char *copy = xstrdup(path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

/* Writes a PEM object to path atomically: temp file, fsync, rename. */
static int tls_write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *x, char **err_r)
{
	char *tmp = xasprintf("%s.tmp.XXXXXX", path);
	int fd = mkstemp(tmp); /* created 0600: the key is never readable by others */
	if (fd < 0) {
		*err_r = xasprintf("create %s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		*err_r = xasprintf("fdopen %s: %s", tmp, strerror(errno));
		close(fd);
		goto fail;
	}
	int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		     : PEM_write_X509(f, x);
	if (ok != 1 || fflush(f) != 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0) {
		*err_r = xasprintf("write %s: %s", tmp, ok != 1 ? "PEM encoding" : strerror(errno));
		fclose(f);
		goto fail;
	}
	if (fclose(f) != 0) {
		*err_r = xasprintf("close %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		*err_r = xasprintf("rename %s: %s", path, strerror(errno));
		goto fail;
	}
	tls_fsync_dir(path);
	free(tmp);
	return 0;
fail:
	unlink(tmp);
	free(tmp);
	return -1;
}

static int tls_add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	int r = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return r == 1 ? 0 : -1;
}

/* subjectAltName built from GENERAL_NAMEs, not a config string, so a
 * hostname with a comma cannot inject extra names. */
static int tls_add_san(X509 *x, const char *hostname)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int r = -1;
	if (gens == NULL || gen == NULL || ia5 == NULL ||
	    ASN1_STRING_set(ia5, hostname, (int)strlen(hostname)) != 1) {
		GENERAL_NAME_free(gen);
		ASN1_IA5STRING_free(ia5);
		goto out;
	}
	GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
	if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
		GENERAL_NAME_free(gen);
		goto out;
	}
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
		r = 0;
out:
	GENERAL_NAMES_free(gens);
	return r;
}

static X509 *tls_make_cert(EVP_PKEY *key, const char *hostname)
{
	X509 *x = X509_new();
	if (x == NULL)
		return NULL;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	X509_NAME *name = X509_get_subject_name(x);
	if (X509_set_version(x, 2) != 1 || RAND_bytes(serial, sizeof serial) != 1)
		goto fail;
	serial[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		goto fail;
	if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), TLS_SELFSIGNED_DAYS, 0, NULL) == NULL)
		goto fail;
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname,
				       -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key) != 1)
		goto fail;
	if (tls_add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tls_add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    tls_add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    tls_add_san(x, hostname) < 0)
		goto fail;
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

int tls_selfsigned_ensure(const char *cert_file, const char *key_file, const char *hostname,
			  char **err_r)
{
	*err_r = NULL;
	if (access(cert_file, F_OK) == 0 && access(key_file, F_OK) == 0)
		return 0;
	if (hostname == NULL || hostname[0] == '\0') {
		*err_r = xstrdup("self-signed certificate: empty hostname");
		return -1;
	}
	if (tls_mkdirs(cert_file, err_r) < 0 || tls_mkdirs(key_file, err_r) < 0)
		return -1;

	ERR_clear_error();
	EVP_PKEY *key = EVP_EC_gen("P-256");
	if (key == NULL) {
		*err_r = tls_err("EC key generation");
		return -1;
	}
	X509 *x = tls_make_cert(key, hostname);
	if (x == NULL) {
		*err_r = tls_err("self-signed certificate");
		EVP_PKEY_free(key);
		return -1;
	}
	/* Key first: a crash between the two leaves the cert missing, and the
	 * next start regenerates both, so the pair always matches. */
	int r = tls_write_pem(key_file, 0600, key, NULL, err_r);
	if (r == 0)
		r = tls_write_pem(cert_file, 0644, NULL, x, err_r);
	X509_free(x);
	EVP_PKEY_free(key);
	if (r < 0)
		return -1;
	log_info("generated self-signed certificate for %s: %s", hostname, cert_file);
	return 1;
}
