/* Private to src/imap: the handlers of the selected-state commands and of
 * APPEND (select.c, idle.c, fetchcmd.c, searchcmd.c, storecmd.c, append.c),
 * named in the command table (cmd.c). */
#ifndef POSTERN_IMAP_SELCMD_H
#define POSTERN_IMAP_SELCMD_H
#include "imap/session.h"

/* select.c */
void imap_cmd_select(struct imap_session *s, const struct imap_arg *args);  /* SELECT, EXAMINE
									      * (s->cmd->name) */
void imap_cmd_close(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_unselect(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_check(struct imap_session *s, const struct imap_arg *args);
/* NOOP in the selected state: sends the pending updates (auth.c's NOOP calls
 * it when s->sel is set). */
void imap_selected_noop(struct imap_session *s);
/* idle.c */
void imap_cmd_idle(struct imap_session *s, const struct imap_arg *args);
/* Input in state IMAP_IN_IDLE (server.c's input hook calls it). */
void imap_idle_input(struct imap_session *s);
/* fetchcmd.c, searchcmd.c, storecmd.c: the UID form has s->uid set */
void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_search(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_store(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_copy(struct imap_session *s, const struct imap_arg *args);  /* COPY, MOVE */
void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *args); /* also UID EXPUNGE */
/* append.c */
void imap_cmd_append(struct imap_session *s, const struct imap_arg *args);
/* The reader announced a literal (IMAP_READ_LITERAL) while reading an
 * APPEND: true if append.c takes it (state IMAP_IN_APPEND: the octets go
 * into a spool; at the end it calls imap_reader_external_done() and
 * imap_input_resume()); false to hold it inline. May refuse the APPEND
 * (too big for APPENDLIMIT or the quota: tagged NO [TOOBIG]/[OVERQUOTA]
 * before a synchronising literal's "+"). */
bool imap_append_literal(struct imap_session *s);
void imap_append_input(struct imap_session *s);
/* The session stops: drop spools of an unfinished APPEND. */
void imap_append_abort(struct imap_session *s);

/* server.c: back to reading commands after IMAP_IN_APPEND/IDLE; runs what is
 * already buffered. */
void imap_input_resume(struct imap_session *s);

#endif
