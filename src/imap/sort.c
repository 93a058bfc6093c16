/* SORT and UID SORT (RFC 5256 3), SORT=DISPLAY (RFC 5957), ESORT and
 * CONTEXT=SORT (RFC 5267), PARTIAL (RFC 9394).
 * Placeholder (issue 9): answers as an unknown command until built. */
#include "imap/selcmd.h"
#include "imap/session.h"

void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}
