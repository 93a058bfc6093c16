/* Replies of a next hop, parsed strictly (the SMTP client, src/smtp/client.c).
 * Pure: no I/O, no globals; fuzzed (tests/fuzz/fuzz_smtp_reply.c).
 *
 * RFC 5321 4.2: a reply is one or more lines "NNN-text" ending with one
 * "NNN text" (or "NNN" alone), every line with the same code, whose first
 * digit is 2 to 5 (4.2.1; 1yz is not used by SMTP). Line ends are CRLF; a
 * bare LF is tolerated as a line end (as Postfix), a CR elsewhere is an
 * error. Limits: SMTP_REPLY_LINE_MAX octets per line (RFC 5321 4.5.3.1.5
 * says 512; real servers send longer), SMTP_REPLY_MAX_LINES lines, and the
 * caller's max octets for the whole reply (outbound_max_reply). */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/buf.h"

#define SMTP_REPLY_LINE_MAX 2048
#define SMTP_REPLY_MAX_LINES 200

struct smtp_reply {
	int code;         /* 200..599 */
	char enh[16];     /* RFC 3463 enhanced status of the first line ("5.1.1"), or "" */
	struct buf lines; /* the text of each line after "NNN-"/"NNN ", each ended by '\n' */
	struct buf full;  /* the lines as received without CRLF, joined by " / " */
	size_t n_lines;
};

void smtp_reply_init(struct smtp_reply *r);
void smtp_reply_free(struct smtp_reply *r);

/* Parses the reply at the start of in[0, n). Returns the octets it took
 * (> 0) with *r filled; 0 when the reply is not complete yet (read more);
 * -1 when it is malformed or over a limit, with *err_r a static text. A
 * partial reply already over a limit (a line without end while n reached
 * the line limit, max octets with no end) is -1 at once, so the caller's
 * buffer stays bounded by max + one read. */
ssize_t smtp_reply_parse(const char *in, size_t n, size_t max, struct smtp_reply *r,
                         const char **err_r);

/* RFC 3463 2: "class.subject.detail" at the start of text (class 2, 4 or 5
 * equal to the reply's first digit, subject and detail 1 to 3 digits),
 * followed by a space or the end. Returns its length, 0 if none. */
size_t smtp_enh_code(const char *text, size_t n, int code_class);

/* The EHLO keywords (RFC 5321 4.1.1.1: the lines after the first). */
struct smtp_ehlo {
	bool pipelining;   /* RFC 2920 */
	bool size;         /* RFC 1870 */
	uint64_t size_max; /* SIZE n; 0: no limit announced */
	bool eightbitmime; /* RFC 6152 */
	bool smtputf8;     /* RFC 6531 */
	bool dsn;          /* RFC 3461 */
	bool starttls;     /* RFC 3207 */
	bool chunking;     /* RFC 3030 */
	bool auth_plain;   /* RFC 4954 AUTH with PLAIN (RFC 4616) */
	bool auth_login;   /* the LOGIN mechanism (draft-murchison-sasl-login) */
};
void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *e);

#endif
