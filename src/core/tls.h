/* TLS contexts (OpenSSL 3). */
#ifndef POSTERN_CORE_TLS_H
#define POSTERN_CORE_TLS_H
#include <openssl/ssl.h>

/* Loads a PEM certificate chain and key into a server context: TLS 1.2 and up,
 * the OpenSSL default cipher lists. Returns NULL and sets *err_r (heap string). */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char **err_r);

/* A client context (outbound SMTP): TLS 1.2 and up, the CA bundle ca_file
 * (NULL or "": the system's default paths) for the connections that verify;
 * whether one does is chosen per connection (conn_starttls_client). NULL
 * with *err_r on error. */
SSL_CTX *tls_client_ctx_new(const char *ca_file, char **err_r);

/* If cert_file or key_file is missing, generates a self-signed certificate
 * (EC P-256, 10 years, CN and subjectAltName = hostname) and writes both files
 * (key mode 0600). Returns 1 if it generated, 0 if both existed, -1 on error
 * with *err_r set. */
int tls_selfsigned_ensure(const char *cert_file, const char *key_file, const char *hostname,
			  char **err_r);

#endif
