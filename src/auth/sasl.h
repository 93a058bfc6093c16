/* SASL message decoding (RFC 4616 PLAIN, draft LOGIN). Pure functions. */
#ifndef POSTERN_AUTH_SASL_H
#define POSTERN_AUTH_SASL_H
#include <stddef.h>

/* Longest decoded message accepted (RFC 4616 2 asks for at least 255 octets
 * per field), and the base64 length that encodes it. */
#define SASL_MAX_DECODED 1024
#define SASL_MAX_B64 ((SASL_MAX_DECODED + 2) / 3 * 4)

/* Both calls reject input longer than SASL_MAX_B64 or decoding to more than
 * SASL_MAX_DECODED bytes. */
/* Decodes base64 "authzid NUL authcid NUL passwd". Returns 0 with heap strings
 * (authzid may be ""), -1 on bad base64 or form. "=" alone (empty) is an error.
 * RFC 4616 2: an empty authcid or passwd, or a NUL inside passwd, is an error. */
int sasl_plain_decode(const char *b64, char **authzid_r, char **user_r, char **pass_r);
/* Decodes one base64 LOGIN answer into a heap string; -1 on bad base64 or a
 * NUL in the decoded text. */
int sasl_login_decode(const char *b64, char **text_r);

#endif
