/* NOTIFY (RFC 5465).
 * Placeholder (issue 9): answers as an unknown command until built. */
#include "imap/selcmd.h"
#include "imap/session.h"

void imap_cmd_notify(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}
