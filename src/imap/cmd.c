/* IMAP commands: one table {name, flags, handler}; imap_dispatch() enforces
 * every flag's rule in one place (RFC 9051 3: the states), so handlers only
 * do their own work. */
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"

#define AUTHSEL (IMAP_CMD_AUTH | IMAP_CMD_SEL)

/* RFC 9051 6 (and the extensions named in each handler). The UID forms
 * (RFC 9051 6.4.9) are their own rows: "UID FETCH" runs the FETCH handler
 * with s->uid set. */
static const struct imap_cmd imap_cmds[] = {
	/* any state (RFC 9051 6.1) */
	{"CAPABILITY", IMAP_CMD_ANY, imap_cmd_capability},
	{"NOOP", IMAP_CMD_ANY, imap_cmd_noop},
	{"LOGOUT", IMAP_CMD_ANY, imap_cmd_logout},
	{"ID", IMAP_CMD_ANY, imap_cmd_id}, /* RFC 2971 */
	/* not authenticated (6.2) */
	{"STARTTLS", IMAP_CMD_NOAUTH | IMAP_CMD_NOTLS, imap_cmd_starttls},
	{"AUTHENTICATE", IMAP_CMD_NOAUTH | IMAP_CMD_CREDS, imap_cmd_authenticate},
	{"LOGIN", IMAP_CMD_NOAUTH | IMAP_CMD_CREDS, imap_cmd_login},
	/* authenticated (6.3); also valid when selected */
	{"ENABLE", AUTHSEL, imap_cmd_enable}, /* RFC 5161 (Dovecot allows it selected) */
	{"SELECT", AUTHSEL, imap_cmd_select},
	{"EXAMINE", AUTHSEL, imap_cmd_select},
	{"CREATE", AUTHSEL, imap_cmd_create},
	{"DELETE", AUTHSEL, imap_cmd_delete},
	{"RENAME", AUTHSEL, imap_cmd_rename},
	{"SUBSCRIBE", AUTHSEL, imap_cmd_subscribe},
	{"UNSUBSCRIBE", AUTHSEL, imap_cmd_subscribe},
	{"LIST", AUTHSEL, imap_cmd_list},
	{"LSUB", AUTHSEL, imap_cmd_list},
	{"NAMESPACE", AUTHSEL, imap_cmd_namespace}, /* RFC 2342 */
	{"STATUS", AUTHSEL, imap_cmd_status},
	{"APPEND", AUTHSEL, imap_cmd_append},
	{"IDLE", AUTHSEL, imap_cmd_idle}, /* RFC 2177 */
	{"UNAUTHENTICATE", AUTHSEL, imap_cmd_unauthenticate}, /* RFC 8437 */
	{"GETQUOTA", AUTHSEL, imap_cmd_getquota},           /* RFC 9208 */
	{"GETQUOTAROOT", AUTHSEL, imap_cmd_getquotaroot},
	{"SETQUOTA", AUTHSEL, imap_cmd_setquota},
	/* selected (6.4) */
	{"CHECK", IMAP_CMD_SEL, imap_cmd_check},
	{"CLOSE", IMAP_CMD_SEL, imap_cmd_close},
	{"UNSELECT", IMAP_CMD_SEL, imap_cmd_unselect}, /* RFC 3691 */
	{"EXPUNGE", IMAP_CMD_SEL, imap_cmd_expunge},
	{"SEARCH", IMAP_CMD_SEL | IMAP_CMD_NOUPDATE, imap_cmd_search},
	{"FETCH", IMAP_CMD_SEL | IMAP_CMD_NOUPDATE, imap_cmd_fetch},
	{"STORE", IMAP_CMD_SEL | IMAP_CMD_NOUPDATE, imap_cmd_store},
	{"COPY", IMAP_CMD_SEL, imap_cmd_copy},
	{"MOVE", IMAP_CMD_SEL, imap_cmd_copy}, /* RFC 6851 */
	{"UID EXPUNGE", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_expunge}, /* RFC 4315 */
	{"UID SEARCH", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_search},
	{"UID FETCH", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_fetch},
	{"UID STORE", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_store},
	{"UID COPY", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_copy},
	{"UID MOVE", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_copy},

	/* issue 9: the extension set (one file each; see selcmd.h) */
	{"SORT", IMAP_CMD_SEL | IMAP_CMD_NOUPDATE, imap_cmd_sort},       /* RFC 5256, 5267 */
	{"UID SORT", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_sort},
	{"CANCELUPDATE", IMAP_CMD_SEL, imap_cmd_cancelupdate},           /* RFC 5267 4.2 */
	{"THREAD", IMAP_CMD_SEL | IMAP_CMD_NOUPDATE, imap_cmd_thread},   /* RFC 5256 */
	{"UID THREAD", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_thread},
	{"COMPRESS", AUTHSEL, imap_cmd_compress},                        /* RFC 4978 */
	{"GETMETADATA", AUTHSEL, imap_cmd_getmetadata},                  /* RFC 5464 */
	{"SETMETADATA", AUTHSEL, imap_cmd_setmetadata},
	{"NOTIFY", AUTHSEL, imap_cmd_notify},                            /* RFC 5465 */
	{"REPLACE", IMAP_CMD_SEL, imap_cmd_replace},                     /* RFC 8508 */
	{"UID REPLACE", IMAP_CMD_SEL | IMAP_CMD_UID, imap_cmd_replace},
	{"GENURLAUTH", AUTHSEL, imap_cmd_genurlauth},                    /* RFC 4467 */
	{"RESETKEY", AUTHSEL, imap_cmd_resetkey},
	{"URLFETCH", AUTHSEL, imap_cmd_urlfetch},
};

static const struct imap_cmd *cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof imap_cmds / sizeof imap_cmds[0]; i++)
		if (strcmp(imap_cmds[i].name, name) == 0)
			return &imap_cmds[i];
	return NULL;
}

/* The first failing rule wins; the reply says what the client must do. */
static bool cmd_allowed(struct imap_session *s, const struct imap_cmd *cmd)
{
	unsigned f = cmd->flags;

	if (s->user == NULL && !(f & IMAP_CMD_NOAUTH)) {
		imap_tagged(s, "BAD", "CLIENTBUG", "%s: log in first", cmd->name);
		return false;
	}
	if (s->user != NULL && s->sel == NULL && !(f & IMAP_CMD_AUTH)) {
		imap_tagged(s, "BAD", "CLIENTBUG", "%s: %s", cmd->name,
			    (f & IMAP_CMD_SEL) ? "no mailbox selected" : "already logged in");
		return false;
	}
	if (s->sel != NULL && !(f & IMAP_CMD_SEL)) {
		imap_tagged(s, "BAD", "CLIENTBUG", "%s: already logged in", cmd->name);
		return false;
	}
	if ((f & IMAP_CMD_NOTLS) && (s->base.tls || s->role == IMAP_ROLE_IMAPS)) {
		imap_tagged(s, "BAD", "CLIENTBUG", "TLS is already active");
		return false;
	}
	if ((f & IMAP_CMD_CREDS) && !imap_creds_allowed(s)) {
		/* RFC 9051 6.2.3 (LOGINDISABLED), RFC 5530 PRIVACYREQUIRED */
		imap_tagged(s, "NO", "PRIVACYREQUIRED",
			    "Plaintext authentication disallowed without TLS; use STARTTLS first");
		return false;
	}
	return true;
}

void imap_dispatch(struct imap_session *s)
{
	struct imap_args a;
	const char *err = NULL;

	memset(&a, 0, sizeof a);
	s->n_cmds++;
	s->cmd = NULL;
	s->uid = false;
	x_free(&s->tag);
	if (imap_parse_command(&s->rd, &a, &err) < 0) {
		if (a.tag != NULL)
			s->tag = xstrdup(a.tag);
		imap_tagged(s, "BAD", NULL, "%s", err ? err : "syntax error");
		goto done;
	}
	s->tag = xstrdup(a.tag);
	const struct imap_cmd *cmd = cmd_find(a.name);
	log_debug("imap %s > %s %s", s->base.ip, s->tag, a.name);
	if (cmd == NULL) {
		imap_tagged(s, "BAD", NULL, "Unknown command");
		goto done;
	}
	if (!cmd_allowed(s, cmd))
		goto done;
	s->cmd = cmd;
	s->uid = (cmd->flags & IMAP_CMD_UID) != 0;
	/* The handler copies what it keeps: the arguments point into the
	 * reader's buffer, which the next command reuses. */
	cmd->handler(s, a.args);
done:
	imap_args_free(&a);
	imap_reader_next(&s->rd);
}
