/* POP3 commands: one table {name, flags, handler}; pop3_dispatch() enforces
 * every flag's rule in one place, so handlers only do their own work. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/login.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "pop3/session.h"

#define CMD_AUTHZ 0x01 /* AUTHORIZATION state only */
#define CMD_TRANS 0x02 /* TRANSACTION state only */
#define CMD_CREDS 0x04 /* carries credentials: TLS first (or the loopback exception) */
#define CMD_NOTLS 0x08 /* before TLS only (STLS) */

#define POP3_MAX_AUTH_FAILS_SESSION 3
#define POP3_MAX_USER 255

struct pop3_cmd {
	const char *name;
	unsigned flags;
	void (*handler)(struct pop3_session *s, const char *args);
};

/* ---- message arguments ---- */

/* Message n of the maildrop, or NULL after a -ERR reply. */
static struct pop3_msg *msg_arg(struct pop3_session *s, uint32_t n)
{
	struct pop3_maildrop *m = s->maildrop;

	if (n == 0 || n > m->n) {
		pop3_reply(s, false, NULL, "no such message, only %zu in maildrop", m->n);
		return NULL;
	}
	if (m->v[n - 1].deleted) {
		pop3_reply(s, false, NULL, "message %" PRIu32 " already deleted", n);
		return NULL;
	}
	return &m->v[n - 1];
}

static void uidl_of(const struct pop3_session *s, const struct pop3_msg *msg, char out[20])
{
	/* Stable across sessions and restarts: UIDVALIDITY and UID never repeat
	 * together (RFC 1939 7: 1 to 70 characters 0x21..0x7E). */
	snprintf(out, 20, "%08" PRIx32 "%08" PRIx32, s->maildrop->uidvalidity, msg->uid);
}

/* ---- TRANSACTION commands (RFC 1939 5) ---- */

static void cmd_stat(struct pop3_session *s, const char *args)
{
	struct pop3_maildrop *m = s->maildrop;

	if (*args != '\0') {
		pop3_reply(s, false, NULL, "syntax: STAT");
		return;
	}
	pop3_reply(s, true, NULL, "%zu %" PRIu64, m->n - m->n_deleted,
		   m->total_bytes - m->deleted_bytes);
}

/* Listings are streamed as the client reads (retr.c): a few KiB of lines
 * per call, from the cursor s->send_next on; never the whole maildrop. The
 * maildrop cannot change meanwhile: input is parked until the "." */
#define LISTING_CHUNK 4096

static bool list_fill(struct pop3_session *s, struct buf *out)
{
	const struct pop3_maildrop *m = s->maildrop;

	for (; s->send_next < m->n && out->len < LISTING_CHUNK; s->send_next++) {
		const struct pop3_msg *msg = &m->v[s->send_next];
		if (!msg->deleted)
			buf_printf(out, "%zu %" PRIu64 "\r\n", s->send_next + 1, msg->size);
	}
	return s->send_next == m->n;
}

static bool uidl_fill(struct pop3_session *s, struct buf *out)
{
	const struct pop3_maildrop *m = s->maildrop;
	char id[20];

	for (; s->send_next < m->n && out->len < LISTING_CHUNK; s->send_next++) {
		const struct pop3_msg *msg = &m->v[s->send_next];
		if (msg->deleted)
			continue;
		uidl_of(s, msg, id);
		buf_printf(out, "%zu %s\r\n", s->send_next + 1, id);
	}
	return s->send_next == m->n;
}

static void cmd_list(struct pop3_session *s, const char *args)
{
	struct pop3_maildrop *m = s->maildrop;
	uint32_t n;
	int k = pop3_parse_numbers(args, &n, 0, 1);

	if (k < 0) {
		pop3_reply(s, false, NULL, "syntax: LIST [message-number]");
		return;
	}
	if (k == 1) {
		struct pop3_msg *msg = msg_arg(s, n);
		if (msg != NULL)
			pop3_reply(s, true, NULL, "%" PRIu32 " %" PRIu64, n, msg->size);
		return;
	}
	char first[96];
	snprintf(first, sizeof first, "%zu messages (%" PRIu64 " octets)", m->n - m->n_deleted,
		 m->total_bytes - m->deleted_bytes);
	pop3_send_listing(s, first, list_fill);
}

static void cmd_uidl(struct pop3_session *s, const char *args)
{
	uint32_t n;
	char id[20];
	int k = pop3_parse_numbers(args, &n, 0, 1);

	if (k < 0) {
		pop3_reply(s, false, NULL, "syntax: UIDL [message-number]");
		return;
	}
	if (k == 1) {
		struct pop3_msg *msg = msg_arg(s, n);
		if (msg != NULL) {
			uidl_of(s, msg, id);
			pop3_reply(s, true, NULL, "%" PRIu32 " %s", n, id);
		}
		return;
	}
	pop3_send_listing(s, "unique-id listing follows", uidl_fill);
}

static void cmd_retr(struct pop3_session *s, const char *args)
{
	uint32_t n;

	if (pop3_parse_numbers(args, &n, 1, 1) < 0) {
		pop3_reply(s, false, NULL, "syntax: RETR message-number");
		return;
	}
	if (msg_arg(s, n) != NULL)
		pop3_send_message(s, n, false, 0);
}

static void cmd_top(struct pop3_session *s, const char *args)
{
	uint32_t v[2];

	if (pop3_parse_numbers(args, v, 2, 2) < 0) {
		pop3_reply(s, false, NULL, "syntax: TOP message-number lines");
		return;
	}
	if (msg_arg(s, v[0]) != NULL)
		pop3_send_message(s, v[0], true, v[1]);
}

static void cmd_dele(struct pop3_session *s, const char *args)
{
	struct pop3_maildrop *m = s->maildrop;
	uint32_t n;

	if (pop3_parse_numbers(args, &n, 1, 1) < 0) {
		pop3_reply(s, false, NULL, "syntax: DELE message-number");
		return;
	}
	struct pop3_msg *msg = msg_arg(s, n);
	if (msg == NULL)
		return;
	/* RFC 1939 5: only marked now; removed in the UPDATE state (QUIT). */
	msg->deleted = true;
	m->n_deleted++;
	m->deleted_bytes += msg->size;
	s->n_dele++;
	pop3_reply(s, true, NULL, "message %" PRIu32 " deleted", n);
}

static void cmd_noop(struct pop3_session *s, const char *args)
{
	if (*args != '\0') {
		pop3_reply(s, false, NULL, "syntax: NOOP");
		return;
	}
	pop3_reply(s, true, NULL, "done");
}

static void cmd_rset(struct pop3_session *s, const char *args)
{
	struct pop3_maildrop *m = s->maildrop;

	if (*args != '\0') {
		pop3_reply(s, false, NULL, "syntax: RSET");
		return;
	}
	for (size_t i = 0; i < m->n; i++)
		m->v[i].deleted = false;
	m->n_deleted = 0;
	m->deleted_bytes = 0;
	s->n_dele = 0;
	pop3_reply(s, true, NULL, "maildrop has %zu messages (%" PRIu64 " octets)", m->n,
		   m->total_bytes);
}

/* ---- QUIT and the UPDATE state (RFC 1939 6) ---- */

static void expunge_done(void *arg, int result)
{
	struct pop3_session *s = arg;
	size_t n = s->maildrop->n_deleted;

	if (session_release(&s->base))
		return; /* the client went away after QUIT: the removal stands */
	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING)
		return;
	if (result == 0) {
		s->result = "quit";
		pop3_reply(s, true, NULL, "%s POP3 server signing off (%zu messages deleted)",
			   s->srv ? s->srv->cfg->hostname : "postern", n);
	} else {
		/* RFC 1939 6: -ERR if some deleted messages were not removed. */
		s->result = "quit, expunge failed";
		s->n_dele = 0;
		pop3_reply_err(s, "SYS/TEMP", "some deleted messages not removed");
	}
	session_close(&s->base, "quit");
}

static void cmd_quit(struct pop3_session *s, const char *args)
{
	struct pop3_maildrop *m = s->maildrop;

	if (m == NULL || m->n_deleted == 0) {
		/* AUTHORIZATION: no UPDATE (RFC 1939 4). */
		s->result = "quit";
		pop3_reply(s, true, NULL, "%s POP3 server signing off", s->srv->cfg->hostname);
		session_close(&s->base, "quit");
		return;
	}
	uint32_t *uids = xcalloc(m->n_deleted, sizeof *uids);
	size_t k = 0;
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].deleted)
			uids[k++] = m->v[i].uid;
	s->quitting = true;
	s->base.busy++;
	session_park(&s->base);
	/* The maildrop's UIDs are those of the INBOX it snapshotted: not of one
	 * deleted and re-created under the same address since. */
	store_expunge(s->srv->st, m->user, NULL, m->uidvalidity, uids, k, expunge_done, s);
	free(uids);
}

/* ---- AUTHORIZATION: STLS, CAPA, UTF8 ---- */

static void cmd_capa(struct pop3_session *s, const char *args)
{
	struct buf b = BUF_INIT;

	/* RFC 2449 5, 6 */
	buf_appends(&b, "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n");
	if (s->maildrop == NULL && pop3_creds_allowed(s))
		buf_appends(&b, "USER\r\nSASL PLAIN LOGIN\r\n"); /* RFC 5034 5 */
	if (s->maildrop == NULL && !s->base.tls && s->srv->tls != NULL)
		buf_appends(&b, "STLS\r\n"); /* RFC 2595 4 */
	buf_appends(&b, "UTF8\r\n");     /* RFC 6856 2 */
	buf_appends(&b, "EXPIRE NEVER\r\n");
	buf_appends(&b, "IMPLEMENTATION postern\r\n");
	pop3_reply_multi(s, "Capability list follows", &b);
	buf_free(&b);
}

static void cmd_stls(struct pop3_session *s, const char *args)
{
	if (*args != '\0') {
		pop3_reply(s, false, NULL, "syntax: STLS");
		return;
	}
	if (s->srv->tls == NULL) {
		pop3_reply(s, false, NULL, "TLS not available");
		return;
	}
	pop3_reply(s, true, NULL, "Begin TLS negotiation");
	pop3_set_state(s, POP3_S_TLSWAIT);
	/* conn_starttls flushes the +OK, drops pipelined plaintext (RFC 2595 4
	 * / command injection) and calls on_tls when done. */
	if (conn_starttls(s->base.c, s->srv->tls) < 0)
		session_close(&s->base, "stls failed");
}

static void cmd_utf8(struct pop3_session *s, const char *args)
{
	if (*args != '\0') {
		pop3_reply(s, false, NULL, "syntax: UTF8");
		return;
	}
	/* RFC 6856 2: our messages and names are sent as stored. */
	s->utf8 = true;
	pop3_reply(s, true, NULL, "UTF8 enabled");
}

/* ---- login ---- */

static char *canonical_user(const char *user)
{
	char *u = xstrdup(user);
	for (char *p = u; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return u;
}

static void fail_reply(void *arg)
{
	struct pop3_session *s = arg;

	s->base.delay = NULL;
	if (s->base.c == NULL || s->base.phase == SESSION_CLOSING || s->srv == NULL)
		return;
	pop3_reply_err(s, "AUTH", "authentication failed");
	if (s->auth_failures >= POP3_MAX_AUTH_FAILS_SESSION) {
		pop3_reply_err(s, "AUTH", "too many failed logins, closing");
		s->result = "too many failed logins";
		session_close(&s->base, "too many failed logins");
		return;
	}
	session_unpark(&s->base);
}

/* The maildrop being loaded on a worker (login_ok .. load_done). */
struct load {
	struct pop3_session *s;
	struct pop3_msg *v; /* filled on the worker */
	size_t n, cap;
	uint64_t total;
};

/* On the worker thread: only the load's own memory is touched. */
static void load_add(void *arg, const struct store_mail_info *mi)
{
	struct load *ld = arg;
	if (ld->n == ld->cap) {
		ld->cap = ld->cap ? ld->cap * 2 : 64;
		ld->v = xrealloc(ld->v, ld->cap * sizeof *ld->v);
	}
	ld->v[ld->n++] = (struct pop3_msg){.uid = mi->uid, .size = mi->size};
	ld->total += mi->size;
}

/* The maildrop is loaded (loop thread): the TRANSACTION state starts, or
 * the login ends with -ERR and the lock is released. */
static void load_done(void *arg, int result, const struct store_mailbox_status *status,
		      const char *err)
{
	struct load *ld = arg;
	struct pop3_session *s = ld->s;
	struct pop3_maildrop *m = s->maildrop;

	if (result == 0) {
		m->uidvalidity = status->uidvalidity;
		m->v = ld->v;
		m->n = ld->n;
		m->total_bytes = ld->total;
	} else {
		free(ld->v);
	}
	free(ld);
	/* Gone or closing: session_free releases the lock with the maildrop. */
	if (session_release(&s->base) || s->base.c == NULL || s->srv == NULL ||
	    s->base.phase == SESSION_CLOSING)
		return;
	if (result < 0) {
		log_err("pop3 login client=%s user=%s: %s", s->base.ip, m->user,
			err ? err : "store error");
		pop3_unlock(s->srv, m->user);
		pop3_maildrop_free(&s->maildrop);
		pop3_reply_err(s, "SYS/TEMP", "unable to open maildrop, try again later");
		session_unpark(&s->base);
		return;
	}
	x_free(&s->auth_user);
	s->auth_user = xstrdup(m->user);
	log_info("pop3 login client=%s user=%s messages=%zu tls=%s", s->base.ip, m->user, m->n,
		 s->base.tls ? "yes" : "no");
	pop3_reply(s, true, NULL, "maildrop has %zu messages (%" PRIu64 " octets)", m->n,
		   m->total_bytes);
	session_unpark(&s->base);
}

/* The password was right: lock and snapshot the maildrop (RFC 1939 4). The
 * session is parked: it stays so while the maildrop loads on a worker (its
 * size grows with the mailbox: never on the loop thread), and load_done
 * unparks it. */
static void login_ok(struct pop3_session *s, const char *user)
{
	struct pop3_server *srv = s->srv;
	char *key = canonical_user(user);

	if (pop3_lock(srv, key) < 0) {
		log_info("pop3 login client=%s user=%s: maildrop in use", s->base.ip, key);
		pop3_reply_err(s, "IN-USE", "maildrop already locked by another session");
		free(key);
		session_unpark(&s->base);
		return;
	}
	/* The maildrop (empty until loaded) holds the lock from now on: if the
	 * session ends during the load, session_free releases it. Nothing reads
	 * the maildrop while the session is parked. */
	struct pop3_maildrop *m = xcalloc(1, sizeof *m);
	m->user = key;
	s->maildrop = m;
	struct load *ld = xcalloc(1, sizeof *ld);
	ld->s = s;
	s->base.busy++;
	/* One snapshot: the status (UIDVALIDITY) and the list come from one
	 * read transaction. */
	store_mail_list_async(srv->st, srv->workers, key, NULL, load_add, load_done, ld);
}

/* The login service's verdict (auth/login.h) in POP3 terms. */
static void login_done(struct session *base, const struct auth_outcome *o)
{
	struct pop3_session *s = pop3_session_of(base);

	if (s->srv == NULL)
		return;
	switch (o->verdict) {
	case AUTH_OK:
		login_ok(s, o->user); /* unparks when the maildrop is loaded */
		return;
	case AUTH_FAIL:
		s->auth_failures++;
		if (o->close) {
			pop3_reply_err(s, "AUTH", "too many failed logins, closing");
			s->result = "too many failed logins";
			session_close(&s->base, "too many failed logins");
			return;
		}
		/* The -ERR comes after the service's delay: guessing slows down. */
		if (s->base.phase != SESSION_PARKED)
			session_park(&s->base);
		loop_timer_cancel(s->base.l, &s->base.delay);
		s->base.delay = loop_timer_add(s->base.l, o->delay_ms, fail_reply, s);
		return;
	case AUTH_BLOCKED:
		pop3_reply_err(s, "AUTH", "too many failed logins, try again later");
		break;
	case AUTH_WAIT:
		/* RFC 3206 4: temporary, no need to ask the user again */
		pop3_reply_err(s, "SYS/TEMP",
			       "too many failed logins for this account, try again in %u seconds",
			       o->retry_s);
		break;
	case AUTH_TEMPFAIL:
		pop3_reply_err(s, "SYS/TEMP", "temporary authentication failure");
		break;
	}
	if (s->base.phase == SESSION_PARKED)
		session_unpark(&s->base);
}

static void cmd_user(struct pop3_session *s, const char *args)
{
	if (*args == '\0' || strlen(args) > POP3_MAX_USER || strchr(args, ' ') != NULL) {
		pop3_reply(s, false, NULL, "syntax: USER name");
		return;
	}
	x_free(&s->user_arg);
	s->user_arg = xstrdup(args);
	/* RFC 1939 7: no hint whether the name exists. */
	pop3_reply(s, true, NULL, "send PASS");
}

static void cmd_pass(struct pop3_session *s, const char *args)
{
	if (s->user_arg == NULL) {
		pop3_reply(s, false, NULL, "USER first");
		return;
	}
	if (*args == '\0') {
		x_free(&s->user_arg);
		pop3_reply(s, false, NULL, "syntax: PASS password");
		return;
	}
	struct sasl_creds c = {.authzid = xstrdup(""), .authcid = s->user_arg};

	s->user_arg = NULL;
	/* RFC 1939 7: the password may contain spaces: the rest of the line. */
	c.password = xstrdup(args);
	auth_login_start(s->srv->login, &s->base, &c, login_done);
}

/* ---- AUTH (RFC 5034) ---- */

/* The SASL state machine's answer (auth/sasl.h) framed in POP3. */
static void auth_sasl(struct pop3_session *s, enum sasl_status st, struct sasl_out *out)
{
	switch (st) {
	case SASL_CONTINUE:
		/* RFC 5034 4: "+" SP base64 challenge */
		pop3_send_raw(s, "+ ", 2);
		pop3_send_raw(s, out->challenge, strlen(out->challenge));
		pop3_send_raw(s, "\r\n", 2);
		pop3_set_state(s, POP3_S_AUTHLINE);
		break;
	case SASL_DONE:
		auth_login_start(s->srv->login, &s->base, &out->creds, login_done);
		break;
	case SASL_CANCELLED:
		/* RFC 5034 4: the exchange ends with -ERR */
		pop3_reply_err(s, NULL, "authentication cancelled");
		break;
	case SASL_MALFORMED:
		pop3_reply(s, false, NULL, "%s", out->error);
		break;
	case SASL_NOMECH:
		pop3_reply(s, false, NULL, "unsupported authentication mechanism");
		break;
	}
}

static void cmd_auth(struct pop3_session *s, const char *args)
{
	char mech[32];
	size_t n = strcspn(args, " ");
	const char *ir = args + n;
	struct sasl_out out;

	if (n == 0) {
		/* Not in RFC 5034, but widely used to list the mechanisms. */
		struct buf b = BUF_INIT;
		buf_appends(&b, "PLAIN\r\nLOGIN\r\n");
		pop3_reply_multi(s, "supported mechanisms follow", &b);
		buf_free(&b);
		return;
	}
	if (*ir == ' ')
		ir++;
	if (n >= sizeof mech || strchr(ir, ' ') != NULL) {
		pop3_reply(s, false, NULL, "syntax: AUTH mechanism [initial-response]");
		return;
	}
	memcpy(mech, args, n);
	mech[n] = '\0';
	/* RFC 5034 4: the initial response is optional; "=" is an empty one. */
	auth_sasl(s, sasl_server_start(&s->sasl, mech, *ir != '\0' ? ir : NULL, &out), &out);
}

void pop3_auth_line(struct pop3_session *s, char *line)
{
	struct sasl_out out;

	pop3_set_state(s, POP3_S_CMD);
	auth_sasl(s, sasl_server_step(&s->sasl, line, &out), &out);
}

/* ---- the table and the dispatcher ---- */

static const struct pop3_cmd pop3_cmds[] = {
	{"USER", CMD_AUTHZ | CMD_CREDS, cmd_user},
	{"PASS", CMD_AUTHZ | CMD_CREDS, cmd_pass},
	{"AUTH", CMD_AUTHZ | CMD_CREDS, cmd_auth},
	{"STLS", CMD_AUTHZ | CMD_NOTLS, cmd_stls},
	{"CAPA", 0, cmd_capa},
	{"UTF8", CMD_AUTHZ, cmd_utf8},
	{"QUIT", 0, cmd_quit},
	{"STAT", CMD_TRANS, cmd_stat},
	{"LIST", CMD_TRANS, cmd_list},
	{"RETR", CMD_TRANS, cmd_retr},
	{"DELE", CMD_TRANS, cmd_dele},
	{"NOOP", CMD_TRANS, cmd_noop},
	{"RSET", CMD_TRANS, cmd_rset},
	{"TOP", CMD_TRANS, cmd_top},
	{"UIDL", CMD_TRANS, cmd_uidl},
};

void pop3_dispatch(struct pop3_session *s, char *line)
{
	char verb[POP3_MAX_VERB + 1];
	const char *args;
	const struct pop3_cmd *cmd = NULL;

	if (pop3_parse_command(line, verb, &args) == 0) {
		for (size_t i = 0; i < sizeof pop3_cmds / sizeof pop3_cmds[0]; i++) {
			if (strcmp(verb, pop3_cmds[i].name) == 0) {
				cmd = &pop3_cmds[i];
				break;
			}
		}
	}
	if (cmd == NULL) {
		pop3_reply(s, false, NULL, "unknown command");
		return;
	}
	/* Any other command between USER and PASS starts the login over. */
	if (strcmp(cmd->name, "PASS") != 0)
		x_free(&s->user_arg);
	unsigned f = cmd->flags;
	if ((f & CMD_AUTHZ) && s->maildrop != NULL) {
		pop3_reply(s, false, NULL, "%s not valid in the TRANSACTION state", cmd->name);
		return;
	}
	if ((f & CMD_TRANS) && s->maildrop == NULL) {
		pop3_reply(s, false, NULL, "%s not valid before login", cmd->name);
		return;
	}
	if ((f & CMD_NOTLS) && s->base.tls) {
		pop3_reply(s, false, NULL, "TLS already active");
		return;
	}
	if ((f & CMD_CREDS) && !pop3_creds_allowed(s)) {
		/* RFC 2595 2.2, RFC 3206 4 */
		pop3_reply(s, false, "AUTH", "plaintext authentication disallowed without TLS; "
					     "use STLS first");
		return;
	}
	cmd->handler(s, args);
}
