/* IMAP commands of any state and of the NOT AUTHENTICATED state, and those
 * about the session: CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE,
 * LOGIN, ENABLE, ID, NAMESPACE, UNAUTHENTICATE, and the QUOTA commands. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/login.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "imap/session.h"

#define IMAP_MAX_AUTH_FAILS_SESSION 3
#define IMAP_ID_MAX_PAIRS 30 /* RFC 2971 3.3 */

/* ---- CAPABILITY (RFC 9051 6.1.1, 7.2.2) ---- */

void imap_capability(const struct imap_session *s, struct buf *out)
{
	buf_appends(out, "IMAP4rev2 IMAP4rev1");
	if (s->user == NULL) {
		/* RFC 9051 6.2.1; no STARTTLS on the implicit-TLS port */
		if (!s->base.tls && s->role == IMAP_ROLE_IMAP && s->srv->tls != NULL)
			buf_appends(out, " STARTTLS");
		/* RFC 9051 6.2.3: LOGINDISABLED, and no plaintext mechanism
		 * offered, until TLS (or the configured loopback exception) */
		if (imap_creds_allowed(s))
			buf_appends(out, " AUTH=PLAIN AUTH=LOGIN SASL-IR");
		else
			buf_appends(out, " LOGINDISABLED");
		buf_appends(out, " LITERAL+ ENABLE IDLE ID");
		return;
	}
	buf_appends(out, " LITERAL+ ENABLE IDLE ID NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN"
			 " LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE ESEARCH SEARCHRES"
			 " CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE"
			 " BINARY MULTIAPPEND UNAUTHENTICATE");
	/* issue 9: each extension adds its names below its own marker, when it
	 * works (imaptest runs a group only if its capabilities are named) */

	/* sort.c: SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT PARTIAL */
	buf_appends(out, " SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT PARTIAL");

	/* thread.c: THREAD=REFERENCES THREAD=ORDEREDSUBJECT THREAD=REFS */
	buf_appends(out, " THREAD=REFERENCES THREAD=ORDEREDSUBJECT");

	/* compress.c: COMPRESS=DEFLATE */
	buf_appends(out, " COMPRESS=DEFLATE");

	/* metadata.c: METADATA METADATA-SERVER */
	buf_appends(out, " METADATA METADATA-SERVER");

	/* notify.c: NOTIFY */
	buf_appends(out, " NOTIFY");

	/* fts: SEARCH=FUZZY is not claimed; the index is invisible to clients */

	/* fetch, search, select, mailbox (ext): OBJECTID SAVEDATE PREVIEW WITHIN */
	buf_appends(out, " OBJECTID SAVEDATE PREVIEW WITHIN");

	/* append.c (cat): UTF8=ACCEPT REPLACE CATENATE; urlauth.c: URLAUTH
	 * (RFC 4467) and URLAUTH=BINARY (RFC 5524); URL-PARTIAL (RFC 5550 5):
	 * ;PARTIAL= in the URLs of both (parse_url.c) */
	buf_appends(out, " CATENATE REPLACE UTF8=ACCEPT URLAUTH URLAUTH=BINARY URL-PARTIAL");

	/* RFC 7889: the largest APPEND accepted */
	buf_printf(out, " APPENDLIMIT=%zu", s->srv->cfg->imap_max_literal);
}

static bool no_args(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type == IMAP_ARG_EOL)
		return true;
	imap_tagged(s, "BAD", NULL, "%s takes no arguments", s->cmd->name);
	return false;
}

void imap_cmd_capability(struct imap_session *s, const struct imap_arg *args)
{
	struct buf b = BUF_INIT;

	if (!no_args(s, args))
		return;
	imap_capability(s, &b);
	imap_untagged(s, "CAPABILITY %s", b.data);
	buf_free(&b);
	imap_tagged(s, "OK", NULL, "CAPABILITY completed");
}

/* ---- NOOP, LOGOUT (RFC 9051 6.1.2, 6.1.3) ---- */

void imap_cmd_noop(struct imap_session *s, const struct imap_arg *args)
{
	if (!no_args(s, args))
		return;
	/* selected: the pending mailbox changes (select.c); they may need a
	 * step of their own, which then ends the command */
	if (s->sel != NULL) {
		imap_selected_noop(s);
		if (s->base.phase == SESSION_PARKED)
			return;
	}
	imap_tagged(s, "OK", NULL, "NOOP completed");
}

void imap_cmd_logout(struct imap_session *s, const struct imap_arg *args)
{
	if (!no_args(s, args))
		return;
	imap_untagged(s, "BYE Logging out");
	imap_tagged(s, "OK", NULL, "LOGOUT completed");
	s->logout = true;
	s->result = "logout";
	session_close(&s->base, "logout");
}

/* ---- STARTTLS (RFC 9051 6.2.1) ---- */

void imap_cmd_starttls(struct imap_session *s, const struct imap_arg *args)
{
	if (!no_args(s, args))
		return;
	if (s->srv->tls == NULL) {
		imap_tagged(s, "NO", NULL, "TLS not available");
		return;
	}
	imap_tagged(s, "OK", NULL, "Begin TLS negotiation now");
	s->input = IMAP_IN_TLSWAIT;
	/* conn_starttls flushes the OK, drops plaintext pipelined behind it
	 * (command injection, RFC 9051 11.1) and calls tls_ready when done. */
	if (conn_starttls(s->base.c, s->srv->tls) < 0)
		session_close(&s->base, "starttls failed");
}

/* ---- login ---- */

static char *canonical_user(const char *user)
{
	char *u = xstrdup(user);
	for (char *p = u; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return u;
}

static void login_close(struct imap_session *s)
{
	imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
	imap_bye(s, NULL, "too many failed logins", "Too many failed logins");
}

/* The failure reply comes after the login service's delay: guessing
 * slows down. */
static void fail_reply(void *arg)
{
	struct imap_session *s = arg;

	s->base.delay = NULL;
	if (!imap_session_alive(s))
		return;
	if (s->auth_failures >= IMAP_MAX_AUTH_FAILS_SESSION) {
		login_close(s);
		return;
	}
	imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
	imap_cmd_done(s);
}

/* The login service's verdict (auth/login.h) in IMAP terms. */
static void login_done(struct session *base, const struct auth_outcome *o)
{
	struct imap_session *s = imap_session_of(base);
	struct buf b = BUF_INIT;

	if (!imap_session_alive(s))
		return;
	switch (o->verdict) {
	case AUTH_OK:
		s->user = canonical_user(o->user);
		imap_input_limits(s);
		log_info("imap login client=%s user=%s tls=%s", s->base.ip, s->user,
			 s->base.tls ? "yes" : "no");
		/* RFC 9051 6.2.3: the capabilities change at login; say them in
		 * the OK's response code (written as text: the list has spaces) */
		imap_capability(s, &b);
		imap_tagged(s, "OK", NULL, "[CAPABILITY %s] Logged in", b.data);
		buf_free(&b);
		break;
	case AUTH_FAIL:
		s->auth_failures++;
		if (o->close) {
			login_close(s);
			return;
		}
		if (s->base.phase != SESSION_PARKED)
			session_park(&s->base);
		loop_timer_cancel(s->base.l, &s->base.delay);
		s->base.delay = loop_timer_add(s->base.l, o->delay_ms, fail_reply, s);
		return;
	case AUTH_BLOCKED:
		/* RFC 5530 UNAVAILABLE: try again later, the password may be right */
		imap_tagged(s, "NO", "UNAVAILABLE", "Too many failed logins, try again later");
		break;
	case AUTH_WAIT:
		imap_tagged(s, "NO", "UNAVAILABLE",
			    "Too many failed logins for this account, try again in %u seconds",
			    o->retry_s);
		break;
	case AUTH_TEMPFAIL:
		imap_tagged(s, "NO", "UNAVAILABLE", "Temporary authentication failure");
		break;
	}
	imap_cmd_done(s);
}

void imap_cmd_login(struct imap_session *s, const struct imap_arg *args)
{
	const char *user, *pass;
	size_t ulen, plen;

	/* RFC 9051 6.2.3: LOGIN SP userid SP password */
	if (!imap_arg_astring(&args[0], &user, &ulen) || !imap_arg_astring(&args[1], &pass, &plen) ||
	    args[2].type != IMAP_ARG_EOL || ulen == 0 || memchr(user, '\0', ulen) != NULL ||
	    memchr(pass, '\0', plen) != NULL) {
		imap_tagged(s, "BAD", NULL, "Syntax: LOGIN userid password");
		return;
	}
	struct sasl_creds c = {
		.authzid = xstrdup(""),
		.authcid = xstrndup(user, ulen),
		.password = xstrndup(pass, plen),
	};
	auth_login_start(s->srv->login, &s->base, &c, login_done);
}

/* ---- AUTHENTICATE (RFC 9051 6.2.2, RFC 4959 SASL-IR) ---- */

/* The SASL state machine's answer (auth/sasl.h) framed in IMAP. */
static void auth_sasl(struct imap_session *s, enum sasl_status st, struct sasl_out *out)
{
	switch (st) {
	case SASL_CONTINUE:
		/* RFC 9051 7.5: "+" SP base64 challenge */
		imap_send(s, "+ ", 2);
		imap_send(s, out->challenge, strlen(out->challenge));
		imap_send(s, "\r\n", 2);
		s->input = IMAP_IN_AUTH;
		return;
	case SASL_DONE:
		s->input = IMAP_IN_CMD;
		auth_login_start(s->srv->login, &s->base, &out->creds, login_done);
		return;
	case SASL_CANCELLED:
		/* RFC 9051 6.2.2: a cancelled exchange gets a tagged BAD */
		s->input = IMAP_IN_CMD;
		imap_tagged(s, "BAD", NULL, "Authentication cancelled");
		break;
	case SASL_MALFORMED:
		s->input = IMAP_IN_CMD;
		imap_tagged(s, "BAD", NULL, "%s", out->error);
		break;
	case SASL_NOMECH:
		s->input = IMAP_IN_CMD;
		imap_tagged(s, "NO", NULL, "Unsupported authentication mechanism");
		break;
	}
	imap_cmd_done(s);
}

void imap_cmd_authenticate(struct imap_session *s, const struct imap_arg *args)
{
	const char *mech, *ir = NULL;
	size_t mlen, irlen = 0;
	char mbuf[32], *irbuf = NULL;
	struct sasl_out out;

	if (args[0].type != IMAP_ARG_ATOM || !imap_arg_astring(&args[0], &mech, &mlen) ||
	    mlen >= sizeof mbuf ||
	    (args[1].type != IMAP_ARG_EOL &&
	     (!imap_arg_astring(&args[1], &ir, &irlen) || args[2].type != IMAP_ARG_EOL)) ||
	    (ir != NULL && (irlen == 0 || memchr(ir, '\0', irlen) != NULL))) {
		imap_tagged(s, "BAD", NULL, "Syntax: AUTHENTICATE mechanism [initial-response]");
		return;
	}
	memcpy(mbuf, mech, mlen);
	mbuf[mlen] = '\0';
	if (ir != NULL)
		irbuf = xstrndup(ir, irlen); /* "=" is an empty one (RFC 4959 3) */
	enum sasl_status st = sasl_server_start(&s->sasl, mbuf, irbuf, &out);
	if (irbuf != NULL) {
		explicit_bzero(irbuf, irlen);
		free(irbuf);
	}
	auth_sasl(s, st, &out);
}

void imap_auth_input(struct imap_session *s)
{
	struct sasl_out out;
	char *line;
	size_t len;
	int r = session_read_line(&s->base.c->rbuf, SASL_MAX_B64 + 2, &s->base.discarding, &line,
				  &len);

	if (r == 0)
		return;
	if (r < 0) {
		sasl_server_reset(&s->sasl);
		s->input = IMAP_IN_CMD;
		imap_tagged(s, "BAD", NULL, "SASL response too long");
		imap_cmd_done(s);
		return;
	}
	if (strlen(line) != len) {
		sasl_server_reset(&s->sasl);
		s->input = IMAP_IN_CMD;
		imap_tagged(s, "BAD", NULL, "NUL in SASL response");
		imap_cmd_done(s);
	} else {
		/* "*" cancels (RFC 9051 6.2.2): sasl_server_step says so */
		auth_sasl(s, sasl_server_step(&s->sasl, line, &out), &out);
	}
	explicit_bzero(line, len);
	free(line);
}

/* ---- UNAUTHENTICATE (RFC 8437) ---- */

void imap_cmd_unauthenticate(struct imap_session *s, const struct imap_arg *args)
{
	if (!no_args(s, args))
		return;
	if (s->sel != NULL)
		imap_unselect(s, false);
	log_info("imap unauthenticate client=%s user=%s", s->base.ip, s->user);
	x_free(&s->user);
	imap_input_limits(s);
	/* RFC 8437 3: as if the connection were new (ENABLE'd state too) */
	s->rev2 = s->utf8 = s->condstore = s->qresync = false;
	imap_tagged(s, "OK", NULL, "UNAUTHENTICATE completed");
	session_idle_restart(&s->base);
}

/* ---- ENABLE (RFC 5161, RFC 9051 6.3.1) ---- */

void imap_cmd_enable(struct imap_session *s, const struct imap_arg *args)
{
	struct buf b = BUF_INIT;

	if (args[0].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: ENABLE capability...");
		return;
	}
	for (const struct imap_arg *a = args; a->type != IMAP_ARG_EOL; a++) {
		if (a->type != IMAP_ARG_ATOM) {
			buf_free(&b);
			imap_tagged(s, "BAD", NULL, "Syntax: ENABLE capability...");
			return;
		}
	}
	/* Only what this command newly enabled is listed (RFC 5161 3.2);
	 * unknown capabilities are ignored. */
	for (const struct imap_arg *a = args; a->type != IMAP_ARG_EOL; a++) {
		if (imap_arg_atom_is(a, "IMAP4REV2") && !s->rev2) {
			s->rev2 = true;
			buf_appends(&b, " IMAP4rev2");
		} else if (imap_arg_atom_is(a, "CONDSTORE") && !s->condstore) {
			imap_enable_condstore(s);
			buf_appends(&b, " CONDSTORE");
		} else if (imap_arg_atom_is(a, "UTF8=ACCEPT") && !s->utf8) {
			/* RFC 6855 3: mailbox names in UTF-8 from now on (no
			 * modified UTF-7), 8-bit header text sent as is */
			s->utf8 = true;
			buf_appends(&b, " UTF8=ACCEPT");
		} else if (imap_arg_atom_is(a, "QRESYNC") && !s->qresync) {
			/* RFC 7162 3.2.3: QRESYNC implies CONDSTORE */
			s->qresync = true;
			imap_enable_condstore(s);
			buf_appends(&b, " QRESYNC");
		}
	}
	imap_untagged(s, "ENABLED%s", b.len > 0 ? b.data : "");
	buf_free(&b);
	imap_tagged(s, "OK", NULL, "ENABLE completed");
}

/* ---- ID (RFC 2971) ---- */

void imap_cmd_id(struct imap_session *s, const struct imap_arg *args)
{
	const struct imap_arg *a = &args[0];
	bool ok = args[1].type == IMAP_ARG_EOL;

	/* id-params-list: NIL, or ( field value ... ) with at most 30 pairs
	 * of strings (values may be NIL) */
	if (ok && a->type == IMAP_ARG_LIST) {
		size_t n = 0;
		for (const struct imap_arg *p = a->list; p->type != IMAP_ARG_EOL; p++, n++) {
			if (p->type != IMAP_ARG_QUOTED && p->type != IMAP_ARG_LITERAL &&
			    !(p->type == IMAP_ARG_NIL && n % 2 == 1))
				ok = false;
		}
		if (n % 2 != 0 || n / 2 > IMAP_ID_MAX_PAIRS)
			ok = false;
	} else if (a->type != IMAP_ARG_NIL) {
		ok = false;
	}
	if (!ok) {
		imap_tagged(s, "BAD", NULL, "Syntax: ID (field value ...) or ID NIL");
		return;
	}
	imap_untagged(s, "ID (\"name\" \"postern\" \"vendor\" \"postern\")");
	imap_tagged(s, "OK", NULL, "ID completed");
}

/* ---- NAMESPACE (RFC 2342, RFC 9051 6.3.10) ---- */

void imap_cmd_namespace(struct imap_session *s, const struct imap_arg *args)
{
	if (!no_args(s, args))
		return;
	/* one personal namespace, no prefix; no other users', no shared */
	imap_untagged(s, "NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_tagged(s, "OK", NULL, "NAMESPACE completed");
}

/* ---- QUOTA (RFC 9208) ----
 * One quota root per account, "", holding every mailbox; STORAGE (KiB on
 * the wire) and MESSAGE, set by the administrator (postern quota set). A
 * resource without a limit is not listed; an account with none has no
 * quota root. */

struct quota_job {
	struct imap_session *s;
	char *user;
	char *mailbox;        /* GETQUOTAROOT, UTF-8 */
	bool nonexistent;
	struct store_quota q;
};

static void mailbox_seen(void *arg, const struct store_mailbox *mb)
{
}

static int quota_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct quota_job *j = arg;

	if (j->mailbox != NULL) {
		int r = store_snap_mailbox(sn, j->user, j->mailbox, false, mailbox_seen, j, err_r);
		if (r == STORE_NONEXISTENT) {
			x_free(err_r);
			j->nonexistent = true;
			return 0;
		}
		if (r < 0)
			return -1;
	}
	return store_snap_quota(sn, j->user, &j->q, err_r);
}

static bool quota_any(const struct store_quota *q)
{
	return q->storage_limit > 0 || q->message_limit > 0;
}

static void quota_line(struct imap_session *s, const struct store_quota *q)
{
	struct buf b = BUF_INIT;

	buf_appends(&b, "QUOTA \"\" (");
	if (q->storage_limit > 0)
		buf_printf(&b, "STORAGE %" PRIu64 " %" PRIu64, (q->storage_used + 1023) / 1024,
			   q->storage_limit / 1024);
	if (q->message_limit > 0)
		buf_printf(&b, "%sMESSAGE %" PRIu64 " %" PRIu64, q->storage_limit > 0 ? " " : "",
			   q->message_used, q->message_limit);
	buf_appendc(&b, ')');
	imap_untagged(s, "%s", b.data);
	buf_free(&b);
}

static void quota_done(void *arg, int result, const char *err)
{
	struct quota_job *j = arg;
	struct imap_session *s = j->s;

	if (!imap_step_done(s))
		goto out;
	if (result < 0) {
		log_err("imap quota client=%s user=%s: %s", s->base.ip, j->user,
			err ? err : "store error");
		imap_tagged(s, "NO", "UNAVAILABLE", "Quota unavailable, try again later");
	} else if (j->nonexistent) {
		imap_tagged(s, "NO", "NONEXISTENT", "No such mailbox");
	} else if (j->mailbox != NULL) {
		struct buf b = BUF_INIT;
		buf_appends(&b, "* QUOTAROOT ");
		imap_append_mailbox(s, &b, j->mailbox);
		if (quota_any(&j->q))
			buf_appends(&b, " \"\"");
		buf_appends(&b, "\r\n");
		imap_send(s, b.data, b.len);
		buf_free(&b);
		if (quota_any(&j->q))
			quota_line(s, &j->q);
		imap_tagged(s, "OK", NULL, "GETQUOTAROOT completed");
	} else if (!quota_any(&j->q)) {
		imap_tagged(s, "NO", "NONEXISTENT", "No quota is set for this account");
	} else {
		quota_line(s, &j->q);
		imap_tagged(s, "OK", NULL, "GETQUOTA completed");
	}
	imap_cmd_done(s);
out:
	free(j->user);
	free(j->mailbox);
	free(j);
}

static void quota_start(struct imap_session *s, char *mailbox)
{
	struct quota_job *j = xcalloc(1, sizeof *j);

	j->s = s;
	j->user = xstrdup(s->user);
	j->mailbox = mailbox;
	s->base.busy++;
	session_park(&s->base);
	store_read(s->srv->st, s->srv->workers, quota_read, quota_done, j);
}

void imap_cmd_getquota(struct imap_session *s, const struct imap_arg *args)
{
	const char *root;
	size_t len;

	if (!imap_arg_astring(&args[0], &root, &len) || args[1].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: GETQUOTA quota-root");
		return;
	}
	if (len != 0) {
		imap_tagged(s, "NO", "NONEXISTENT", "No such quota root");
		return;
	}
	quota_start(s, NULL);
}

void imap_cmd_getquotaroot(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type == IMAP_ARG_EOL || args[1].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: GETQUOTAROOT mailbox");
		return;
	}
	char *name = imap_mailbox_arg(s, &args[0]);
	if (name != NULL)
		quota_start(s, name);
}

void imap_cmd_setquota(struct imap_session *s, const struct imap_arg *args)
{
	/* RFC 9208 4.3: limits are the administrator's (postern quota set) */
	imap_tagged(s, "NO", "NOPERM", "Quotas are set by the administrator");
}
