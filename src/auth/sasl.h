/* SASL message decoding (RFC 4616 PLAIN, draft LOGIN). Pure functions. */
#ifndef POSTERN_AUTH_SASL_H
#define POSTERN_AUTH_SASL_H
#include <stddef.h>

/* Decodes base64 "authzid NUL authcid NUL passwd". Returns 0 with heap strings
 * (authzid may be ""), -1 on bad base64 or form. "=" alone (empty) is an error. */
int sasl_plain_decode(const char *b64, char **authzid_r, char **user_r, char **pass_r);
/* Decodes one base64 LOGIN answer into a heap string; -1 on bad base64. */
int sasl_login_decode(const char *b64, char **text_r);

#endif
