/* IDLE (RFC 2177, RFC 9051 6.3.13): "+ idling", then the mailbox's changes
 * pushed as the store announces them (select.c sends the updates when the
 * session's input state is IMAP_IN_IDLE: expunges at once, new mail and
 * flag changes after one read on a worker, well within a second), until the
 * client sends DONE. The idle timeout of this state is the server's
 * (imap_idle_timeout, session.h ops->idle_ms). */
#include <string.h>

#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "imap/session.h"

#define IDLE_MAX_LINE 1024

void imap_cmd_idle(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "IDLE takes no arguments");
		return;
	}
	imap_send(s, "+ idling\r\n", 10);
	s->input = IMAP_IN_IDLE;
	/* what is known already goes out now */
	if (s->sel != NULL)
		imap_send_updates(s, true);
}

void imap_idle_input(struct imap_session *s)
{
	char *line = NULL;
	size_t len = 0;
	int r;

	if (s->base.c == NULL)
		return;
	r = session_read_line(&s->base.c->rbuf, IDLE_MAX_LINE, &s->base.discarding, &line,
			      &len);
	if (r == 0)
		return;
	s->input = IMAP_IN_CMD;
	if (r == 1 && strcasecmp(line, "DONE") == 0) {
		if (s->sel != NULL)
			imap_send_updates(s, true);
		imap_tagged(s, "OK", NULL, "IDLE terminated");
	} else {
		/* RFC 2177 3: anything but DONE ends the IDLE as an error */
		imap_tagged(s, "BAD", NULL, "Expected DONE");
	}
	free(line);
	imap_cmd_done(s);
}
