/* URLAUTH (RFC 4467): GENURLAUTH, RESETKEY, URLFETCH.
 * Placeholder (issue 9): answers as an unknown command until built. */
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
