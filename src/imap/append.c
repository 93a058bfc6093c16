/* APPEND and MULTIAPPEND (RFC 9051 6.3.12, RFC 3502), with BINARY literal8
 * messages (RFC 3516 4.4: binary parts stored base64, as Dovecot), APPENDLIMIT (RFC 7889),
 * quota (RFC 9208), UIDPLUS APPENDUID (RFC 4315 3).
 *
 * A message literal is never held in memory: when the reader announces it
 * (imap_append_literal), its size is checked against APPENDLIMIT and the
 * quota before the "+" of a synchronising literal (refused with a tagged
 * NO [TOOBIG] / [OVERQUOTA] and the command dropped), then its octets go
 * into a store spool as they arrive (imap_append_input; the spool's full
 * buffers are written on workers, input pauses while both are full). When
 * the command is complete, store_append stores every message of it in one
 * transaction (all or none, durable with the same group commit as SMTP),
 * and only then the client gets OK [APPENDUID ...]. A literal that cannot
 * be refused (LITERAL+, {N+}) but is not acceptable is read and dropped, and
 * the command answered NO. */
#include <inttypes.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "mime/mime.h"
#include "imap/session.h"
#include "store/store.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Messages in one MULTIAPPEND (RFC 3502). Each holds its spool file open
 * until the command's one all-or-none transaction commits, so the count is
 * bounded well below the process's file limit; past it the command gets a
 * tagged NO [LIMIT] (before the "+" of a synchronising literal; a {N+} is
 * read and dropped, the connection stays). Dovecot has no such cap (its
 * maildir saves close each file). */
#define IMAP_APPEND_MAX_MESSAGES 1000

struct append_state {
	unsigned n_cmds;      /* the command it belongs to (s->n_cmds then) */
	struct store_spool **sp; /* n of them (cap allocated) */
	size_t n, cap;
	uint64_t left;        /* octets of the literal still to come */
	bool discard;         /* this literal is read and dropped */
	const char *fail_code; /* the command fails: NO [code] */
	const char *fail_text;
	bool paused;          /* input parked while the spool writes */
	bool binary;          /* this literal is a literal8 */
	bool nul;             /* ... and holds a NUL: converted after it */
	bool filtering;       /* the conversion runs (store_spool_filter) */
	bool orphan;          /* the session let go of it meanwhile */
	struct imap_session *s; /* while filtering (held: busy) */
	/* after store_append */
	char *mailbox;
	bool in_flight;
	char *reply_code;
};

static void state_free(struct append_state **stp)
{
	struct append_state *a = *stp;
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++)
		store_spool_discard(&a->sp[i]);
	free(a->sp);
	free(a->mailbox);
	free(a->reply_code);
	x_free(stp);
}

static void append_job_abort(struct imap_session *s);

static struct append_state *state_of(struct imap_session *s)
{
	return s->job_abort == append_job_abort ? s->job : NULL;
}

static void detach(struct imap_session *s)
{
	s->job = NULL;
	s->job_drained = NULL;
	s->job_abort = NULL;
}

static void append_job_abort(struct imap_session *s)
{
	struct append_state *a = s->job;

	detach(s);
	if (a == NULL)
		return;
	if (a->in_flight) {
		/* store_append owns the spools; its callback frees a */
		a->n = 0;
		return;
	}
	if (a->filtering) {
		/* a worker converts the last spool: its completion frees a */
		a->orphan = true;
		return;
	}
	state_free(&a);
}

void imap_append_abort(struct imap_session *s)
{
	if (state_of(s) != NULL)
		append_job_abort(s);
}

/* The largest message APPEND takes (RFC 7889 APPENDLIMIT). */
static uint64_t append_limit(const struct imap_session *s)
{
	return s->srv->cfg->imap_max_literal;
}

/* True if the literal being announced is the mailbox name (nothing after the
 * command name yet), not a message. */
static bool literal_is_mailbox(const struct imap_session *s)
{
	const char *p = s->rd.cmd.data, *e;
	size_t n = s->rd.cmd.len;

	if (p == NULL)
		return true;
	e = p + n;
	/* tag SP APPEND SP */
	while (p < e && *p != ' ')
		p++;
	while (p < e && *p == ' ')
		p++;
	while (p < e && *p != ' ')
		p++;
	while (p < e && *p == ' ')
		p++;
	/* what is left is the literal's "{N}" announcement at most */
	return p >= e || *p == '{' || *p == '~';
}

static void spool_ready(void *arg)
{
	struct imap_session *s = arg;
	struct append_state *a = state_of(s);

	if (a != NULL && a->paused && imap_alive(s)) {
		a->paused = false;
		session_unpark(&s->base); /* the rest of the literal follows */
	}
}

bool imap_append_literal(struct imap_session *s)
{
	struct append_state *a = state_of(s);
	struct imap_reader *r = &s->rd;
	const char *code = NULL, *text = NULL;

	if (literal_is_mailbox(s))
		return false;
	if (a != NULL && (a->n_cmds != s->n_cmds || a->in_flight)) {
		append_job_abort(s); /* left over from a command that failed */
		a = NULL;
	}
	if (a == NULL) {
		if (s->job != NULL)
			return false; /* cannot happen: no command runs while reading */
		a = xcalloc(1, sizeof *a);
		a->n_cmds = s->n_cmds;
		s->job = a;
		s->job_abort = append_job_abort;
	}
	if (r->lit_len > append_limit(s)) {
		code = "TOOBIG";
		text = "Message too big";
	} else if (a->fail_code == NULL) {
		/* RFC 9208 4.3: refused before the octets are sent */
		struct store_quota q;
		char *err = NULL;
		uint64_t more = r->lit_len;
		for (size_t i = 0; i < a->n; i++)
			more += store_spool_size(a->sp[i]);
		if (store_quota_get(s->srv->st, s->user, &q, &err) == 0) {
			if ((q.storage_limit != 0 && q.storage_used + more > q.storage_limit) ||
			    (q.message_limit != 0 && q.message_used + a->n + 1 > q.message_limit)) {
				code = "OVERQUOTA";
				text = "Quota exceeded";
			}
		}
		free(err);
	}
	if (code == NULL && a->fail_code == NULL && a->n >= IMAP_APPEND_MAX_MESSAGES) {
		code = "LIMIT";
		text = "Too many messages in one APPEND (at most " STR(IMAP_APPEND_MAX_MESSAGES) ")";
	}
	if (code != NULL && r->lit_sync) {
		/* RFC 7888 / RFC 9051 7.1: NO before "+"; the command is dropped */
		imap_reply_reading(s, "NO", code, text);
		imap_reader_refuse(r);
		append_job_abort(s);
		return true;
	}
	a->left = r->lit_len;
	a->binary = r->lit_binary;
	a->nul = false;
	a->discard = code != NULL || a->fail_code != NULL;
	if (code != NULL) {
		a->fail_code = code;
		a->fail_text = text;
	}
	if (!a->discard) {
		char *err = NULL;
		struct store_spool *sp = store_spool_new(s->srv->st, &err);
		if (sp == NULL) {
			log_err("imap %s: append spool: %s", s->base.ip, err != NULL ? err : "error");
			free(err);
			if (r->lit_sync) {
				imap_reply_reading(s, "NO", "UNAVAILABLE", "Cannot store now");
				imap_reader_refuse(r);
				append_job_abort(s);
				return true;
			}
			a->discard = true;
			a->fail_code = "UNAVAILABLE";
			a->fail_text = "Cannot store now";
		} else {
			store_spool_async(sp, s->srv->workers, spool_ready, s);
			if (a->n == a->cap) {
				a->cap = a->cap ? a->cap * 2 : 4;
				a->sp = xrealloc(a->sp, a->cap * sizeof *a->sp);
			}
			a->sp[a->n++] = sp;
		}
	}
	if (r->lit_sync)
		imap_send(s, "+ Ready for literal data\r\n", 26);
	s->input = IMAP_IN_APPEND;
	return true;
}

/* RFC 3516 4.4: a literal8 message may hold NUL and bare octets a plain
 * literal cannot carry; as Dovecot, its parts with Content-Transfer-Encoding
 * binary (here: those holding a NUL, mime.h) are stored base64-encoded
 * (BINARY[] decodes them back), so that BODY[] and RFC822 never carry a NUL.
 * The literal8 streams to its spool like any message; one that holds a NUL
 * is then rewritten by a worker in one pass over the spool file
 * (store_spool_filter, mime_binary_convert): memory stays bounded whatever
 * its size, and the loop never parses it. */
static void lit8_sink(void *arg, const char *p, size_t n)
{
	store_spool_write(arg, p, n); /* an error is sticky: the filter fails */
}

static bool lit8_convert(void *arg, const char *msg, size_t len, struct store_spool *out)
{
	return mime_binary_convert(msg, len, lit8_sink, out);
}

static void literal_end(struct imap_session *s)
{
	imap_reader_external_done(&s->rd);
	s->input = IMAP_IN_CMD;
	imap_input_resume(s);
}

static void lit8_done(void *arg, int result)
{
	struct append_state *a = arg;
	struct imap_session *s = a->s;

	a->filtering = false;
	if (a->orphan) {
		/* the session let go of the command meanwhile */
		state_free(&a);
		session_release(&s->base);
		return;
	}
	if (result < 0) {
		log_err("imap %s: append of a literal8: conversion failed", s->base.ip);
		a->discard = true;
		a->fail_code = "UNAVAILABLE";
		a->fail_text = "Cannot store now";
	}
	session_unpark(&s->base);
	if (session_release(&s->base) || !imap_alive(s))
		return;
	literal_end(s);
}

void imap_append_input(struct imap_session *s)
{
	struct append_state *a = state_of(s);
	struct buf *rb;

	if (s->base.c == NULL || a == NULL) {
		return;
	}
	rb = &s->base.c->rbuf;
	while (a->left > 0 && rb->len > 0) {
		size_t n = rb->len < a->left ? rb->len : (size_t)a->left;
		if (!a->discard) {
			struct store_spool *sp = a->sp[a->n - 1];
			if (store_spool_busy(sp)) {
				/* both buffers full: wait for the worker */
				if (!a->paused) {
					a->paused = true;
					session_park(&s->base);
				}
				return;
			}
			if (a->binary && !a->nul)
				a->nul = memchr(rb->data, '\0', n) != NULL;
			if (store_spool_write(sp, rb->data, n) < 0) {
				log_err("imap %s: append spool write failed", s->base.ip);
				a->discard = true;
				a->fail_code = "UNAVAILABLE";
				a->fail_text = "Cannot store now";
			}
		}
		buf_consume(rb, n);
		a->left -= n;
	}
	if (a->left == 0 && !a->filtering) {
		if (!a->discard && a->binary && a->nul) {
			/* only a NUL needs the conversion (mime_binary_convert) */
			a->filtering = true;
			a->s = s;
			session_park(&s->base);
			s->base.busy++;
			store_spool_filter(a->sp[a->n - 1], s->srv->workers, lit8_convert, lit8_done,
					   a);
			return;
		}
		literal_end(s);
	}
}

/* ---- the command ---- */

static void append_reply(struct imap_session *s)
{
	struct append_state *a = s->job;

	detach(s);
	imap_tagged(s, "OK", a->reply_code, "APPEND completed");
	state_free(&a);
	imap_cmd_done(s);
}

struct append_call {
	struct imap_session *s;
	struct append_state *a;
	size_t n;
};

static void append_call_done(void *arg, int result, uint32_t uidvalidity, uint32_t first_uid)
{
	struct append_call *c = arg;
	struct imap_session *s = c->s;
	struct append_state *a = c->a;
	size_t n = c->n;

	free(c);
	a->n = 0; /* the store took the spools */
	a->in_flight = false;
	if (session_release(&s->base) || !imap_alive(s) || s->job != a) {
		state_free(&a);
		return;
	}
	if (result < 0) {
		detach(s);
		state_free(&a);
		if (result == STORE_NONEXISTENT) /* RFC 9051 6.3.12 */
			imap_tagged(s, "NO", "TRYCREATE", "Mailbox does not exist");
		else if (result == STORE_OVERQUOTA)
			imap_tagged(s, "NO", "OVERQUOTA", "Quota exceeded");
		else if (result == STORE_LIMIT)
			imap_tagged(s, "NO", "LIMIT", "Too many messages");
		else
			imap_tagged(s, "NO", "UNAVAILABLE", "Cannot store now");
		imap_cmd_done(s);
		return;
	}
	/* RFC 4315 3: APPENDUID uidvalidity uid-set */
	if (n == 1)
		a->reply_code = xasprintf("APPENDUID %" PRIu32 " %" PRIu32, uidvalidity, first_uid);
	else
		a->reply_code = xasprintf("APPENDUID %" PRIu32 " %" PRIu32 ":%" PRIu32, uidvalidity,
					  first_uid, first_uid + (uint32_t)n - 1);
	if (s->sel != NULL && strcmp(s->sel->name, a->mailbox) == 0) {
		/* the selected mailbox sees its own append before the OK */
		imap_sel_sync(s, append_reply);
		return;
	}
	append_reply(s);
}

void imap_cmd_append(struct imap_session *s, const struct imap_arg *args)
{
	struct append_state *a = state_of(s);
	char *mailbox;
	const struct imap_arg *p;
	char **flags;
	time_t *dates;
	int *tzs;
	size_t n = 0, max;
	const char *bad = NULL;

	if (a == NULL || (a->n_cmds != s->n_cmds && a->n_cmds + 1 != s->n_cmds)) {
		/* no message was streamed: an empty APPEND, or a literal held
		 * inline (cannot happen for a message) */
		if (a != NULL)
			append_job_abort(s);
		imap_tagged(s, "BAD", NULL, "APPEND needs a message literal");
		return;
	}
	mailbox = imap_mailbox_arg(s, &args[0]);
	if (mailbox == NULL) {
		append_job_abort(s);
		return; /* answered */
	}
	/* one more than the literals streamed: a mismatch is seen */
	max = a->n + 1;
	flags = xcalloc(max, sizeof *flags);
	dates = xcalloc(max, sizeof *dates);
	tzs = xcalloc(max, sizeof *tzs);
	p = &args[1];
	while (p->type != IMAP_ARG_EOL && bad == NULL && n < max) {
		unsigned sys = 0;
		struct buf kw = BUF_INIT, fb = BUF_INIT;
		time_t t = 0;
		int tz = 0;
		if (p->type == IMAP_ARG_LIST) {
			if (imap_parse_flags(p, &sys, &kw) < 0)
				bad = "Invalid flags";
			p++;
		}
		if (bad == NULL && (p->type == IMAP_ARG_QUOTED)) {
			if (!imap_parse_datetime(p->str, p->len, &t, &tz))
				bad = "Invalid date-time";
			p++;
		}
		if (bad == NULL && !(p->type == IMAP_ARG_LITERAL && p->external))
			bad = "Expected a message literal";
		if (bad == NULL) {
			imap_flags_to_store(&fb, sys, kw.len > 0 ? kw.data : "");
			flags[n] = xstrdup(fb.data);
			dates[n] = t;
			tzs[n] = tz * 60; /* minutes (parse.h) -> seconds (store.h) */
			n++;
			p++;
		}
		buf_free(&kw);
		buf_free(&fb);
	}
	if (bad == NULL && (n == 0 || n != a->n) && a->fail_code == NULL)
		bad = "Message literals do not match";
	if (bad != NULL || a->fail_code != NULL) {
		for (size_t i = 0; i < n; i++)
			free(flags[i]);
		free(flags);
		free(dates);
		free(tzs);
		free(mailbox);
		const char *code = a->fail_code, *text = a->fail_text;
		append_job_abort(s);
		if (bad != NULL)
			imap_tagged(s, "BAD", NULL, "%s", bad);
		else
			imap_tagged(s, "NO", code, "%s", text);
		return;
	}
	a->mailbox = mailbox;
	a->in_flight = true;
	struct append_call *c = xcalloc(1, sizeof *c);
	c->s = s;
	c->a = a;
	c->n = n;
	session_park(&s->base);
	s->base.busy++;
	store_append(s->srv->st, s->user, mailbox, a->sp, n, (const char *const *)flags, dates,
		     tzs, append_call_done, c);
	for (size_t i = 0; i < n; i++) {
		a->sp[i] = NULL; /* owned by the store */
		free(flags[i]);
	}
	free(flags);
	free(dates);
	free(tzs);
}

/* REPLACE and UID REPLACE (RFC 8508). Placeholder (issue 9): answers as an
 * unknown command until built. */
void imap_cmd_replace(struct imap_session *s, const struct imap_arg *args)
{
	(void)args;
	imap_tagged(s, "BAD", NULL, "Unknown command");
}
