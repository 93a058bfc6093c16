/* COMPRESS=DEFLATE (RFC 4978).
 * Placeholder (issue 9): answers as an unknown command until built. */
#include "imap/selcmd.h"
#include "imap/session.h"

void imap_cmd_compress(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}
