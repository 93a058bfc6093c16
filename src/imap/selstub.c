/* Placeholders for the selected-state commands (select.c, idle.c,
 * fetchcmd.c, searchcmd.c, storecmd.c, append.c) so that the server links
 * before they land. Deleted at the merge. */
#include "imap/selcmd.h"

static void not_yet(struct imap_session *s)
{
	imap_tagged(s, "NO", "CANNOT", "not yet");
}

void imap_cmd_select(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_close(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_unselect(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_check(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_selected_noop(struct imap_session *s)
{
}
void imap_cmd_idle(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_idle_input(struct imap_session *s)
{
}
void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_search(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_store(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_copy(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
void imap_cmd_append(struct imap_session *s, const struct imap_arg *args)
{
	not_yet(s);
}
bool imap_append_literal(struct imap_session *s)
{
	return false;
}
void imap_append_input(struct imap_session *s)
{
}
void imap_append_abort(struct imap_session *s)
{
}
void imap_send_updates(struct imap_session *s, bool expunges_allowed)
{
}
void imap_unselect(struct imap_session *s, bool expunge_deleted_first)
{
}
uint32_t imap_view_seq(const struct imap_session *s, uint32_t uid)
{
	return 0;
}
uint32_t imap_view_uid(const struct imap_session *s, uint32_t seq)
{
	return 0;
}
uint32_t imap_view_count(const struct imap_session *s)
{
	return 0;
}
