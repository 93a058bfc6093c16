/* TLS contexts (OpenSSL 3). */
#ifndef POSTERN_CORE_TLS_H
#define POSTERN_CORE_TLS_H
#include <openssl/ssl.h>

/* Loads a PEM certificate chain and key into a server context: TLS 1.2 and up,
 * the OpenSSL default cipher lists. Returns NULL and sets *err_r (heap string). */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char **err_r);

/* If cert_file or key_file is missing, generates a self-signed certificate
 * (EC P-256, 10 years, CN and subjectAltName = hostname) and writes both files
 * (key mode 0600). Returns 1 if it generated, 0 if both existed, -1 on error
 * with *err_r set. */
int tls_selfsigned_ensure(const char *cert_file, const char *key_file, const char *hostname,
			  char **err_r);

#endif
