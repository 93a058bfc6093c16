/* GETMETADATA and SETMETADATA (RFC 5464): METADATA, METADATA-SERVER.
 * Placeholder (issue 9): answers as an unknown command until built. */
#include "imap/selcmd.h"
#include "imap/session.h"

void imap_cmd_getmetadata(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}

void imap_cmd_setmetadata(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}
