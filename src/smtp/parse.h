/* SMTP command line parsing (RFC 5321 4.1, ESMTP parameters of RFC 1870,
 * 6152, 6531, 3461, 4954, 3030). Pure functions over one command line
 * (without its CRLF): no I/O, no globals. */
#ifndef POSTERN_SMTP_PARSE_H
#define POSTERN_SMTP_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A parse failure: the reply the session should give. Strings are static. */
struct smtp_perr {
	int code;          /* 501, 553, 555 ... */
	const char *ecode; /* "5.5.4" */
	const char *text;  /* "Syntax: MAIL FROM:<address>" */
};

enum smtp_body { SMTP_BODY_NONE, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

/* MAIL FROM. Heap strings owned by the struct (smtp_mail_args_free). */
struct smtp_mail_args {
	char *addr;        /* "local@domain", "" for <> */
	bool has_size;
	uint64_t size;     /* SIZE= (UINT64_MAX if it overflowed) */
	enum smtp_body body;
	bool smtputf8;
	char *ret;         /* "FULL" / "HDRS" (uppercased) or NULL */
	char *envid;       /* ENVID= as given (xtext) or NULL */
	char *auth;        /* AUTH= as given ("<>" or xtext) or NULL */
};

/* RCPT TO. */
struct smtp_rcpt_args {
	char *addr;   /* "local@domain"; "postmaster" for <Postmaster> (RFC 5321 4.5.1) */
	char *notify; /* NOTIFY= uppercased or NULL */
	char *orcpt;  /* ORCPT= as given ("rfc822;xtext") or NULL */
};

/* Splits a command line into its verb and arguments. The verb (letters only,
 * up to verbsz-1 bytes) is copied uppercased into verb; *args_r points into
 * line at the first byte after the verb and its separating spaces ("" if
 * none). Returns 0, or -1 if the line does not start with a verb of letters
 * followed by a space or the end. */
int smtp_parse_verb(const char *line, char *verb, size_t verbsz, const char **args_r);

/* Parses the arguments of MAIL ("FROM:<path> [params]"). A space after the
 * colon is tolerated (as Postfix does). UTF-8 in the path is accepted only
 * if the SMTPUTF8 parameter is present. Returns 0, or -1 with *err filled
 * (m is then empty). */
int smtp_parse_mail(const char *args, struct smtp_mail_args *m, struct smtp_perr *err);
void smtp_mail_args_free(struct smtp_mail_args *m);

/* Parses the arguments of RCPT ("TO:<path> [params]"); utf8 tells whether
 * the transaction's MAIL carried SMTPUTF8. Returns 0, or -1 with *err. */
int smtp_parse_rcpt(const char *args, bool utf8, struct smtp_rcpt_args *r,
		    struct smtp_perr *err);
void smtp_rcpt_args_free(struct smtp_rcpt_args *r);

/* BDAT chunk-size [LAST] (RFC 3030 2). Returns 0, or -1 on bad syntax. */
int smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r);

/* RFC 3461 4: xtext = *( xchar / hexchar ), hexchar = "+" 2HEXDIG (uppercase). */
bool smtp_xtext_valid(const char *s, size_t len);

#endif
