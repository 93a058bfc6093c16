/* SASL for every protocol: message decoding (RFC 4616 PLAIN,
 * draft-murchison-sasl-login LOGIN) and one server-side state machine that
 * SMTP AUTH (RFC 4954), POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE
 * (RFC 3501 6.2.2, RFC 4959 SASL-IR) all drive.
 *
 * The state machine knows nothing of the protocol: it takes the mechanism
 * name, the optional initial response and then one client line at a time,
 * and says what to do next. The protocol frames the challenge ("334 text" in
 * SMTP, "+ text" in POP3 and IMAP), reads the client's next line, and hands
 * the credentials to the login service (auth/login.h). Pure: no I/O, no
 * globals, so it is unit tested and fuzzed on its own. */
#ifndef POSTERN_AUTH_SASL_H
#define POSTERN_AUTH_SASL_H
#include <stdbool.h>
#include <stddef.h>

/* Longest decoded message accepted (RFC 4616 2 asks for at least 255 octets
 * per field), and the base64 length that encodes it. */
#define SASL_MAX_DECODED 1024
#define SASL_MAX_B64 ((SASL_MAX_DECODED + 2) / 3 * 4)

/* The mechanisms offered, for EHLO, CAPA and CAPABILITY (AUTH=...). */
#define SASL_MECHANISMS "PLAIN LOGIN"

/* Both calls reject input longer than SASL_MAX_B64 or decoding to more than
 * SASL_MAX_DECODED bytes. */
/* Decodes base64 "authzid NUL authcid NUL passwd". Returns 0 with heap strings
 * (authzid may be ""), -1 on bad base64 or form. "" (empty) is an error.
 * RFC 4616 2: an empty authcid or passwd, or a NUL inside passwd, is an error. */
int sasl_plain_decode(const char *b64, char **authzid_r, char **user_r, char **pass_r);
/* Decodes one base64 LOGIN answer into a heap string; -1 on bad base64 or a
 * NUL in the decoded text. "" decodes to "". */
int sasl_login_decode(const char *b64, char **text_r);

/* What a finished exchange yields: heap strings, authzid may be "". The
 * password is wiped when freed. */
struct sasl_creds {
	char *authzid;
	char *authcid;
	char *password;
};
/* Wipes the password and frees all three; c is zeroed (idempotent). */
void sasl_creds_clear(struct sasl_creds *c);

enum sasl_mech {
	SASL_MECH_NONE, /* no exchange in progress */
	SASL_MECH_PLAIN,
	SASL_MECH_LOGIN,
};

/* One exchange's state; embed it zeroed in the protocol session and call
 * sasl_server_reset() when the session ends (it may hold a user name). */
struct sasl_server {
	enum sasl_mech mech;
	char *login_user; /* LOGIN: the user name, until the password comes */
};

enum sasl_status {
	SASL_CONTINUE,  /* send out->challenge, feed the client's next line */
	SASL_DONE,      /* out->creds hold the credentials (the caller owns them) */
	SASL_CANCELLED, /* the client sent "*" (RFC 4954 4, RFC 5034 4) */
	SASL_MALFORMED, /* out->error says why: bad base64, bad form, too long */
	SASL_NOMECH,    /* start only: the mechanism is not supported */
};

struct sasl_out {
	const char *challenge;   /* SASL_CONTINUE: base64 text, maybe ""; static */
	const char *error;       /* SASL_MALFORMED: static text for the reply */
	struct sasl_creds creds; /* SASL_DONE */
};

/* Starts an exchange (any previous one is reset). mech is matched without
 * regard to case. ir is the initial response: NULL when the client sent
 * none, "=" for an empty one (RFC 4954 4, RFC 5034 4, RFC 4959 3), else
 * base64. Every status but SASL_CONTINUE ends the exchange (ss is reset). */
enum sasl_status sasl_server_start(struct sasl_server *ss, const char *mech, const char *ir,
                                   struct sasl_out *out);
/* Feeds the client's line (CRLF removed) during an exchange (after
 * SASL_CONTINUE). Same statuses as start, never SASL_NOMECH. */
enum sasl_status sasl_server_step(struct sasl_server *ss, const char *line, struct sasl_out *out);
/* True between a SASL_CONTINUE and the end of the exchange. */
bool sasl_server_active(const struct sasl_server *ss);
/* Ends any exchange and frees what it held (idempotent). */
void sasl_server_reset(struct sasl_server *ss);

#endif
