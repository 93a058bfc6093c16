/* Private to src/imap: the server, the session and the selected mailbox.
 *
 * Files (one per command family, STYLE):
 *   server.c   sessions, the reader (imap/parse.h framing), replies, timers,
 *              shutdown, the drained/resume plumbing for long responses
 *   cmd.c      the command table and imap_dispatch()
 *   auth.c     CAPABILITY, NOOP (not selected), LOGOUT, STARTTLS,
 *              AUTHENTICATE, LOGIN, ENABLE, ID, NAMESPACE, UNAUTHENTICATE
 *   mailbox.c  CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB,
 *              STATUS
 *   select.c   the view (sequence numbers <-> UIDs), SELECT, EXAMINE,
 *              CLOSE, UNSELECT, CHECK, NOOP/IDLE updates, change
 *              notifications (untagged EXISTS/EXPUNGE/VANISHED/FETCH)
 *   idle.c     IDLE
 *   fetchcmd.c FETCH, UID FETCH (slices on workers, blob streaming)
 *   searchcmd.c SEARCH, UID SEARCH, ESEARCH, SEARCHRES
 *   storecmd.c STORE, UID STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE
 *   append.c   APPEND, MULTIAPPEND (literals streamed into spools)
 *   fetch.c, search.c   the pure per-message formatter and matcher
 *   parse.c, ...        the pure parser (imap/parse.h)
 *
 * States (RFC 9051 3): NOT AUTHENTICATED (s->user == NULL), AUTHENTICATED
 * (s->user set, s->sel == NULL), SELECTED (s->sel set), LOGOUT (closing).
 * Input states (enum imap_input): what the bytes arriving now are.
 * A command that waits for something of ours (a password check, the store,
 * a worker, the client reading a long response) parks the core session
 * (session_park) and resumes it with imap_cmd_done(), which sends the
 * tagged reply and runs pipelined input. Which commands are valid where is
 * expressed by flags in the command table (cmd.c) and enforced by
 * imap_dispatch() alone. */
#ifndef POSTERN_IMAP_SESSION_H
#define POSTERN_IMAP_SESSION_H
#include <stdbool.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "core/session.h"
#include "imap/parse.h"
#include "imap/server.h"

struct imap_session;
struct imap_view;

struct imap_server {
	struct loop *l;
	struct pool *workers;
	/* work that grows with the mailbox (SEARCH, SORT, THREAD, FETCH
	 * ranges), niced below the loop (core/pool.h) */
	struct pool *bulk;
	struct store *st;
	const struct config *cfg;
	SSL_CTX *tls;
	struct auth_login *login;
	struct session_list sessions;
	/* views shared between sessions that see the same state of a mailbox
	 * (select.c decides; may stay unused) */
	struct imap_view *views;
	/* SORT orders (sortorder.c) */
	struct imap_sort_orders *sort_orders;
};

enum imap_input {
	IMAP_IN_TLSWAIT,  /* implicit TLS or STARTTLS handshake */
	IMAP_IN_CMD,      /* command lines and their literals (s->rd) */
	IMAP_IN_AUTH,     /* an AUTHENTICATE response line */
	IMAP_IN_IDLE,     /* waiting for DONE */
	IMAP_IN_APPEND,   /* an APPEND message literal, streamed to a spool */
};

/* Command flags (cmd.c): the states a command is valid in, and how it runs. */
#define IMAP_CMD_NOAUTH 0x01  /* NOT AUTHENTICATED */
#define IMAP_CMD_AUTH 0x02    /* AUTHENTICATED */
#define IMAP_CMD_SEL 0x04     /* SELECTED */
#define IMAP_CMD_ANY (IMAP_CMD_NOAUTH | IMAP_CMD_AUTH | IMAP_CMD_SEL)
#define IMAP_CMD_UID 0x08     /* has a UID form ("UID FETCH") */
#define IMAP_CMD_NOUPDATE 0x10 /* no untagged EXPUNGE before its reply
				* (RFC 9051 7.5.1: FETCH, STORE, SEARCH
				* without UID) */
#define IMAP_CMD_CREDS 0x20   /* carries a password: TLS first (or the
			       * loopback exception), RFC 9051 6.2.3 */
#define IMAP_CMD_NOTLS 0x40   /* before TLS only (STARTTLS) */

struct imap_cmd {
	const char *name;  /* upper case; "UID FETCH" for the UID form */
	unsigned flags;
	/* args: the parsed arguments after the name (imap_parse_command) */
	void (*handler)(struct imap_session *s, const struct imap_arg *args);
};

/* The selected mailbox (select.c). */
struct imap_selected {
	char *name;           /* UTF-8 */
	bool readonly;        /* EXAMINE */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	struct imap_view *view; /* sequence number n <-> UID, see select.c */
	struct store_sub *sub;  /* change notification */
	/* changes seen but not yet sent (sent at the moments RFC 9051 7.5.1
	 * allows: after a command other than FETCH/STORE/SEARCH, in IDLE) */
	bool pending;
	uint32_t *saved;      /* SEARCHRES "$" as sorted UIDs */
	size_t n_saved;
	/* select.c: changes announced by the store and not yet sent, reads of
	 * them in flight (private to select.c) */
	struct imap_selsync *sync;
};

struct imap_session {
	struct session base;  /* first: the core hands back &s->base */
	struct imap_server *srv; /* NULL once unlinked */
	enum imap_role role;
	enum imap_input input;
	struct imap_reader rd;
	/* the command being run: its tag (for the tagged reply) and table entry */
	char *tag;
	const struct imap_cmd *cmd;
	bool uid;             /* the UID form */
	char *user;           /* AUTHENTICATED and SELECTED */
	struct imap_selected *sel;
	struct sasl_server sasl;
	/* ENABLE'd (RFC 5161) */
	bool rev2 : 1;        /* IMAP4rev2 */
	bool utf8 : 1;        /* UTF8=ACCEPT (and rev2) */
	bool condstore : 1;
	bool qresync : 1;
	int errors;           /* BADs in a row, for the limit */
	int auth_failures;
	/* a long response in progress (fetchcmd.c, mailbox.c LIST, ...) or
	 * another async step: the command's own state, freed by its owner */
	void *job;
	void (*job_drained)(struct imap_session *s); /* ops->drained hands over */
	void (*job_abort)(struct imap_session *s);   /* session stops */
	/* for the log line */
	unsigned n_cmds;
	uint64_t bytes_out;
	/* server.c: the input loop is running (imap_input_resume and
	 * imap_cmd_done called from inside it only flag `again`) */
	bool in_process : 1;
	bool again : 1;
	bool logout : 1;      /* LOGOUT answered: closing */
	struct imap_notify *notify; /* NOTIFY SET (notify.c), NULL: none */
	const char *result;   /* for the log line, static */
};

static inline struct imap_session *imap_session_of(struct session *base)
{
	return (struct imap_session *)base;
}

/* server.c: replies. tagged: "<tag> OK|NO|BAD [code] text" for the command
 * being run. code may be NULL ("TRYCREATE", "ALREADYEXISTS"...: without the
 * brackets). A BAD counts toward imap_max_errors. */
void imap_untagged(struct imap_session *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
void imap_send(struct imap_session *s, const void *p, size_t n); /* raw bytes */
void imap_tagged(struct imap_session *s, const char *status, const char *code,
		 const char *fmt, ...) PRINTF_LIKE(4, 5);
/* Ends the command being run after an async step: sends the tagged reply
 * (with imap_tagged before), unparks, goes back to reading commands. Before
 * the tagged OK of a command without IMAP_CMD_NOUPDATE, pending mailbox
 * changes are sent (select.c: imap_send_updates). */
void imap_cmd_done(struct imap_session *s);
/* For handlers that finish at once: imap_tagged(...) alone suffices; the
 * dispatcher notices the command did not park. */

/* select.c */
void imap_send_updates(struct imap_session *s, bool expunges_allowed);
void imap_unselect(struct imap_session *s, bool expunge_deleted_first);
/* Sequence number of uid (0 if not in the view), UID of sequence n. */
uint32_t imap_view_seq(const struct imap_session *s, uint32_t uid);
uint32_t imap_view_uid(const struct imap_session *s, uint32_t seq);
uint32_t imap_view_count(const struct imap_session *s);

/* cmd.c */
void imap_dispatch(struct imap_session *s);

/* notify.c (RFC 5465) */
/* The session is between commands (server.c, after its input step): the
 * notifications held while a command ran go out. */
void imap_notify_idle(struct imap_session *s);
/* The session ends (server.c): the subscription and the state go. */
void imap_notify_free(struct imap_session *s);
/* Whether the selected mailbox's changes are pushed while the session is
 * between commands (select.c): 0 no, 1 yes, 2 yes but not the expunges
 * (SELECTED-DELAYED, RFC 5465 6.1). */
int imap_notify_selected(const struct imap_session *s);
/* select.c told the client of new messages (EXISTS): MessageNew's
 * fetch-att list, if any, is FETCHed for them (uids sorted). */
void imap_notify_new(struct imap_session *s, const uint32_t *uids, size_t n);

/* select.c (also declared in selcmd.h): turns CONDSTORE on (RFC 7162 3.1:
 * ENABLE CONDSTORE/QRESYNC, STATUS HIGHESTMODSEQ...), with the HIGHESTMODSEQ
 * of a selected mailbox. */
void imap_enable_condstore(struct imap_session *s);
/* select.c (also declared in selcmd.h), for STATUS RECENT: the lowest UID
 * of the mailbox no session has claimed as \Recent yet. */
uint32_t imap_recent_boundary(const char *user, const char *mailbox, uint32_t uidvalidity);

/* server.c */
/* "* BYE text" and close (reason: static, for the log line). */
void imap_bye(struct imap_session *s, const char *code, const char *reason, const char *text);
/* The reader's limits for the session's state: imap_max_line and
 * imap_max_command once logged in, less before (set at login and at
 * UNAUTHENTICATE). */
void imap_input_limits(struct imap_session *s);
/* The session is still worth answering (conn open, not closing). */
bool imap_session_alive(const struct imap_session *s);
/* The async step of the command in progress ended (busy was taken for it):
 * false if the session is gone or closing and the caller must stop (the
 * session may be freed then: do not touch it). */
bool imap_step_done(struct imap_session *s);

/* auth.c */
/* The capability list (RFC 9051 7.2.2) for the session's state, without
 * "CAPABILITY " in front. */
void imap_capability(const struct imap_session *s, struct buf *out);
/* Passwords are accepted: TLS, or loopback with imap_auth_plaintext_loopback. */
bool imap_creds_allowed(const struct imap_session *s);
void imap_cmd_capability(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_noop(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_logout(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_starttls(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_authenticate(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_login(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_enable(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_id(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_namespace(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_unauthenticate(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_getquota(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_getquotaroot(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_setquota(struct imap_session *s, const struct imap_arg *args);
/* Input in state IMAP_IN_AUTH: one SASL response line. */
void imap_auth_input(struct imap_session *s);

/* mailbox.c */
/* A mailbox name argument (astring) as UTF-8 (decoded from modified UTF-7
 * unless UTF8=ACCEPT or IMAP4rev2 is enabled), validated and normalised
 * (INBOX). NULL after a tagged BAD/NO reply; else xmalloc'd. */
char *imap_mailbox_arg(struct imap_session *s, const struct imap_arg *arg);
/* Appends a mailbox name as the client expects it (modified UTF-7 or UTF-8),
 * as an astring. */
void imap_append_mailbox(const struct imap_session *s, struct buf *out, const char *name);
/* The tagged NO for a store result (enum store_res) with its response code. */
void imap_store_error(struct imap_session *s, int result, const char *what);
void imap_cmd_create(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_delete(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_rename(struct imap_session *s, const struct imap_arg *args);
void imap_cmd_subscribe(struct imap_session *s, const struct imap_arg *args); /* also UNSUBSCRIBE */
void imap_cmd_list(struct imap_session *s, const struct imap_arg *args);    /* also LSUB */
void imap_cmd_status(struct imap_session *s, const struct imap_arg *args);

#endif
