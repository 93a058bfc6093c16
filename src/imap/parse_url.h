/* IMAP URLs (RFC 5092) of the user's own messages, for CATENATE (RFC 4469)
 * and URLAUTH (RFC 4467). Pure; see parse_url.c. */
#ifndef POSTERN_IMAP_PARSE_URL_H
#define POSTERN_IMAP_PARSE_URL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/parse.h"

struct imap_url {
	char *user;            /* absolute form: enc-user decoded, or NULL */
	char *host;            /* absolute form: the host, or NULL (relative) */
	char *mailbox;         /* UTF-8, percent-decoded (RFC 5092 3) */
	uint32_t uidvalidity;  /* 0: not given */
	uint32_t uid;
	char *section;         /* percent-decoded section-spec, or NULL: whole */
	bool partial;          /* ;PARTIAL=off[.len] */
	uint64_t partial_off, partial_len; /* len 0: to the end */
	char *urlauth;         /* ";EXPIRE=...;URLAUTH=..." as given, or NULL */
	/* iurlauth (RFC 4467 3), when urlauth is set: */
	int64_t expire;        /* ;EXPIRE= as UTC seconds, 0: not given */
	char *access;          /* the access identifier, lowercase prefix:
				* "authuser", "anonymous", "user+NAME",
				* "submit+NAME" (NAME percent-decoded) */
	char *mech;            /* "INTERNAL"..., NULL: a rump (GENURLAUTH) */
	char *token;           /* the hex token, NULL: a rump */
	size_t rump_len;       /* the URL up to and including the access
				* identifier: what the token signs (RFC 4467 7) */
};
/* 0, or -1 (nothing to free then). */
int imap_url_parse(const char *s, size_t n, struct imap_url *u);
void imap_url_free(struct imap_url *u);
/* The section of a URL (NULL: the whole message) as a FETCH item
 * BODY.PEEK[section] (f->v[0]: path, depth, what, fields): 0, or -1 when
 * it is no valid section-spec (RFC 9051 9). imap_fetch_free(f) after 0. */
int imap_url_section(const char *section, struct imap_fetch *f);

#endif
