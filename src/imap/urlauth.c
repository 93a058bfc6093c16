/* URLAUTH (RFC 4467): GENURLAUTH, RESETKEY, URLFETCH.
 * Placeholder (issue 9): answers as an unknown command until built, and
 * URLAUTH is not named in CAPABILITY. Still missing: mailbox access keys
 * kept in the store (a table of their own: RESETKEY must outlive the
 * session and the process), URLFETCH by another user for "authuser" and
 * "user+x" access identifiers (RFC 4467 3, imaptest's urlauth2), and the
 * BINARY / BODYPARTSTRUCTURE fetch data of URLAUTH=BINARY (RFC 5524). The
 * URL parser (parse_url.c) already keeps the ";EXPIRE=...;URLAUTH=..." part;
 * CATENATE refuses such URLs with [BADURL]. */
#include "imap/selcmd.h"
#include "imap/session.h"

void imap_cmd_genurlauth(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}

void imap_cmd_resetkey(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}

void imap_cmd_urlfetch(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}
