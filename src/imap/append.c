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
#include <unistd.h>
#include <strings.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/parse_url.h"
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
	bool cat_lit;         /* ... a CATENATE TEXT part (RFC 4469): kept as is */
	bool nul;             /* ... and holds a NUL: converted after it */
	bool filtering;       /* the conversion runs (store_spool_filter) */
	bool orphan;          /* the session let go of it meanwhile */
	struct imap_session *s; /* while filtering (held: busy) */
	/* after store_append */
	char *mailbox;
	bool in_flight;
	bool cat_phase;       /* ... before store_append: the spools are a's */
	char *reply_code;
	/* the messages' options (n_flags of them) */
	char **flags;
	time_t *dates;
	int *tzs;
	size_t n_flags;
	struct cat_job *cat;  /* CATENATE parts, or NULL */
	struct imap_session *cat_s; /* during an async step of the command */
	/* REPLACE (RFC 8508) */
	bool replace;
	uint32_t replace_uid, replace_uidvalidity;
};

struct cat_job;
static void cat_free(struct cat_job **jp);

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
	for (size_t i = 0; i < a->n_flags; i++)
		free(a->flags[i]);
	free(a->flags);
	free(a->dates);
	free(a->tzs);
	cat_free(&a->cat);
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
		/* store_append owns the spools (or, before it, a CATENATE step
		 * runs on them); its callback frees a */
		if (!a->cat_phase)
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

static void append_job_abort_if(struct imap_session *s)
{
	imap_append_abort(s);
}

/* The largest message APPEND takes (RFC 7889 APPENDLIMIT). */
static uint64_t append_limit(const struct imap_session *s)
{
	return s->srv->cfg->imap_max_literal;
}

/* What a literal announced while reading an APPEND (or REPLACE) is, from
 * the command so far (r->cmd: lines, inline literals' octets, external
 * literals as nothing): a mailbox name or a CATENATE URL (held inline), a
 * message (a spool of its own), or a CATENATE TEXT part (RFC 4469 5: the
 * first one of a CATENATE starts the message's spool, the next ones go on
 * in it). */
enum lit_kind { LIT_INLINE, LIT_MESSAGE, LIT_CAT_FIRST, LIT_CAT_MORE };

/* The command being read is APPEND (not REPLACE / UID REPLACE). */
static bool reading_append_cmd(const struct imap_session *s)
{
	const char *p = s->rd.cmd.data, *sp;

	if (p == NULL || (sp = memchr(p, ' ', s->rd.cmd.len)) == NULL)
		return false;
	sp++;
	return (size_t)(p + s->rd.cmd.len - sp) >= 6 && strncasecmp(sp, "APPEND", 6) == 0;
}

static bool word_is(const char *p, size_t n, const char *upper)
{
	return n == strlen(upper) && strncasecmp(p, upper, n) == 0;
}

static enum lit_kind classify_literal(const struct imap_session *s)
{
	const struct imap_reader *r = &s->rd;
	const char *p = r->cmd.data;
	size_t n = r->cmd.len, i = 0, k = 0, ns, need = 1, tokens = 0;
	int depth = 0;
	bool in_cat = false, cat_text = false;
	const char *prev = NULL; /* the previous token, when an atom */
	size_t prev_len = 0;

	if (p == NULL)
		return LIT_INLINE;
	/* tag SP command-name: APPEND mailbox, REPLACE / UID REPLACE n mailbox */
	while (i < n && p[i] != ' ')
		i++;
	while (i < n && p[i] == ' ')
		i++;
	ns = i;
	while (i < n && p[i] != ' ')
		i++;
	if (word_is(p + ns, i - ns, "UID")) {
		while (i < n && p[i] == ' ')
			i++;
		while (i < n && p[i] != ' ')
			i++;
		need = 2;
	} else if (word_is(p + ns, i - ns, "REPLACE")) {
		need = 2;
	}
	while (i < n) {
		char c = p[i];
		if (c == ' ') {
			i++;
			continue;
		}
		if (c == '(') {
			depth++;
			if (depth == 1 && prev != NULL && word_is(prev, prev_len, "CATENATE")) {
				in_cat = true;
				cat_text = false;
			}
			prev = NULL;
			i++;
			continue;
		}
		if (c == ')') {
			if (depth > 0 && --depth == 0) {
				in_cat = false;
				tokens++;
			}
			prev = NULL;
			i++;
			continue;
		}
		if (c == '"') {
			for (i++; i < n && p[i] != '"'; i++)
				if (p[i] == '\\')
					i++;
			i++;
			if (depth == 0)
				tokens++;
			prev = NULL;
			continue;
		}
		if (c == '{' || (c == '~' && i + 1 < n && p[i + 1] == '{')) {
			while (i < n && p[i] != '}')
				i++;
			i++;
			if (k < r->n_lits && r->lits[k].off == i) {
				/* a literal read before: its octets (if inline) */
				if (!r->lits[k].external)
					i += r->lits[k].len;
				k++;
				if (in_cat && depth == 1 && prev != NULL && word_is(prev, prev_len, "TEXT"))
					cat_text = true;
				if (depth == 0)
					tokens++;
				prev = NULL;
				continue;
			}
			if (i < n)
				return LIT_MESSAGE; /* cannot happen: garbage */
			/* the literal announced now */
			if (depth == 0 && tokens < need)
				return LIT_INLINE;
			if (in_cat && depth == 1 && prev != NULL) {
				if (word_is(prev, prev_len, "URL"))
					return LIT_INLINE;
				if (word_is(prev, prev_len, "TEXT"))
					return cat_text ? LIT_CAT_MORE : LIT_CAT_FIRST;
			}
			return LIT_MESSAGE;
		}
		prev = p + i;
		while (i < n && p[i] != ' ' && p[i] != '(' && p[i] != ')')
			i++;
		prev_len = (size_t)(p + i - prev);
		if (depth == 0)
			tokens++;
	}
	return LIT_INLINE;
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
	enum lit_kind kind;

	/* Only a command that can run streams its message: before login an
	 * APPEND's literal is held inline under the pre-login limits (and the
	 * command answered BAD), never written to the spool; so is a REPLACE's
	 * when no mailbox is selected. */
	if (s->user == NULL || (s->sel == NULL && !reading_append_cmd(s)))
		return false;
	kind = classify_literal(s);
	if (kind == LIT_INLINE)
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
	if (kind == LIT_CAT_MORE && a->n == 0 && a->fail_code == NULL) {
		/* cannot happen: a CATENATE's later TEXT without its first */
		code = "UNAVAILABLE";
		text = "Cannot store now";
	} else if (kind == LIT_CAT_MORE && a->fail_code == NULL && code == NULL &&
		   store_spool_size(a->sp[a->n - 1]) + r->lit_len > append_limit(s)) {
		/* the TEXT parts of one message add up in its spool: bounded
		 * by APPENDLIMIT as they arrive (RFC 4469 6 [TOOBIG]) */
		code = "TOOBIG";
		text = "Message too big";
	}
	if (code == NULL && a->fail_code == NULL && kind != LIT_CAT_MORE &&
	    a->n >= IMAP_APPEND_MAX_MESSAGES) {
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
	a->cat_lit = kind != LIT_MESSAGE;
	a->discard = code != NULL || a->fail_code != NULL;
	if (code != NULL) {
		a->fail_code = code;
		a->fail_text = text;
	}
	if (!a->discard && kind != LIT_CAT_MORE) {
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
		if (!a->discard && a->binary && a->nul && !a->cat_lit) {
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

/* CATENATE (RFC 4469): a message made of TEXT literals (streamed into the
 * message's spool one after the other, as they arrive) and URLs of the
 * user's own messages (RFC 5092, parse_url.h). When the command is
 * complete, a read on a worker checks the target mailbox (TRYCREATE comes
 * first, RFC 4469 5) and resolves every URL to a range of a blob (opened
 * there) or, for HEADER.FIELDS, to the fields' bytes; then each such
 * message's spool is rewritten on a worker (store_spool_filter) as the
 * parts in order: TEXT from the spool's mapping, URL parts read from their
 * blob in slices. Nothing of the message is held on the loop; the result
 * is stored like any APPEND (store_append, all messages in one
 * transaction). */
#define CAT_BADURL 1
#define CAT_MAX_HEADER (1024 * 1024) /* a header read for HEADER.FIELDS */
#define CAT_MAX_PARTS 256            /* parts of one CATENATE */
/* URL parts of one command (all its messages): each holds its message's
 * file open from the resolution to the command's end */
#define CAT_MAX_URLS 256

enum cat_kind { CAT_TEXT, CAT_URL };
struct cat_part {
	enum cat_kind kind;
	char *url;          /* URL: as given */
	uint64_t off, len;  /* TEXT: in the spool; URL: in the blob or in bytes */
	int fd;             /* URL: the message's blob, or -1 (bytes) */
	struct buf bytes;   /* URL of a HEADER.FIELDS section: the fields */
};
struct cat_msg {
	size_t sp;          /* a->sp[sp] once ordered */
	struct cat_part *parts;
	size_t n_parts;
	bool io_error;      /* worker: a read failed */
};
struct cat_job {
	struct imap_session *s;
	char *user;
	size_t max_name;
	struct cat_msg *msgs;
	size_t n_msgs, next;
	int result;          /* worker: 0, STORE_NONEXISTENT (target), CAT_BADURL */
	const char *bad_url; /* the first URL that could not be resolved */
};

static void cat_free(struct cat_job **jp)
{
	struct cat_job *j = *jp;
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n_msgs; i++) {
		for (size_t k = 0; k < j->msgs[i].n_parts; k++) {
			struct cat_part *pt = &j->msgs[i].parts[k];
			free(pt->url);
			if (pt->fd >= 0)
				close(pt->fd);
			buf_free(&pt->bytes);
		}
		free(j->msgs[i].parts);
	}
	free(j->msgs);
	free(j->user);
	x_free(jp);
}

static void append_reply(struct imap_session *s)
{
	struct append_state *a = s->job;

	detach(s);
	imap_tagged(s, "OK", a->reply_code, "%s completed", a->replace ? "REPLACE" : "APPEND");
	state_free(&a);
	imap_cmd_done(s);
}

/* The command fails after an async step: NO [code] text. */
static void append_fail(struct imap_session *s, struct append_state *a, const char *code,
			const char *text)
{
	if (s->job == a)
		detach(s);
	state_free(&a);
	imap_tagged(s, "NO", code, "%s", text);
	imap_cmd_done(s);
}

/* An async step of the command ended (its busy hold is dropped): false if
 * the session is gone or let go of the command (a is freed then). */
static bool step_back(struct imap_session *s, struct append_state *a)
{
	if (session_release(&s->base)) {
		state_free(&a);
		return false;
	}
	if (!imap_alive(s) || s->job != a) {
		if (s->job == a)
			detach(s);
		state_free(&a);
		return false;
	}
	return true;
}

struct append_call {
	struct imap_session *s;
	struct append_state *a;
	size_t n;
};

static void replace_expunged(void *arg, int result)
{
	struct append_state *a = arg;
	struct imap_session *s = a->cat_s;

	if (!step_back(s, a))
		return;
	if (result < 0 || s->sel == NULL) {
		append_fail(s, a, "UNAVAILABLE", "Message appended, but the old one not expunged");
		return;
	}
	/* RFC 8508 3.3 (as MOVE, RFC 6851 4.3): the expunge of the replaced
	 * message, EXPUNGE or VANISHED */
	imap_sel_expunged(s, &a->replace_uid, 1);
	x_free(&a->reply_code); /* APPENDUID was sent untagged */
	if (strcmp(s->sel->name, a->mailbox) == 0) {
		imap_sel_sync(s, append_reply);
		return;
	}
	append_reply(s);
}

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
	if (a->replace) {
		/* RFC 8508 3.3: APPENDUID in an untagged OK, then the old
		 * message is expunged */
		imap_untagged(s, "OK [%s] Replacement Message ready", a->reply_code);
		if (s->sel == NULL || s->sel->uidvalidity != a->replace_uidvalidity) {
			append_fail(s, a, "UNAVAILABLE", "Message appended, but the old one not expunged");
			return;
		}
		a->cat_s = s;
		a->in_flight = true;
		a->cat_phase = true;
		session_park(&s->base);
		s->base.busy++;
		store_expunge(s->srv->st, s->user, s->sel->name, s->sel->uidvalidity,
			      &a->replace_uid, 1, replace_expunged, a);
		return;
	}
	if (s->sel != NULL && strcmp(s->sel->name, a->mailbox) == 0) {
		/* the selected mailbox sees its own append before the OK */
		imap_sel_sync(s, append_reply);
		return;
	}
	append_reply(s);
}

/* Every message is ready in a->sp (n of them): one transaction. */
static void append_store(struct imap_session *s, struct append_state *a)
{
	struct append_call *c = xcalloc(1, sizeof *c);
	size_t n = a->n;

	a->in_flight = true;
	a->cat_phase = false;
	c->s = s;
	c->a = a;
	c->n = n;
	session_park(&s->base);
	s->base.busy++;
	store_append(s->srv->st, s->user, a->mailbox, a->sp, n, (const char *const *)a->flags,
		     a->dates, a->tzs, append_call_done, c);
	for (size_t i = 0; i < n; i++)
		a->sp[i] = NULL; /* owned by the store */
}

/* ---- CATENATE: resolving URLs (worker) ---- */

static void mb_uidvalidity(void *arg, const struct store_mailbox *mb)
{
	*(uint32_t *)arg = mb->status.uidvalidity;
}

struct url_msg {
	bool found;
	char *blob;
	uint64_t size;
	struct buf cache;
};

static int url_msg_cb(void *arg, const struct store_msg *m)
{
	struct url_msg *um = arg;

	um->found = true;
	um->blob = xstrdup(m->blob);
	um->size = m->size;
	if (m->cache != NULL)
		buf_append(&um->cache, m->cache, m->cache_len);
	return 1;
}

static bool pread_all(int fd, char *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return true;
}

static void drop_err(char **err_r)
{
	free(*err_r);
	*err_r = NULL;
}

/* 0 resolved, CAT_BADURL, or -1 (database error, *err_r). */
static int cat_url(struct store_snap *sn, struct cat_job *j, struct cat_part *pt, char **err_r)
{
	struct imap_url u;
	struct imap_fetch f;
	struct url_msg um = {0};
	uint32_t uidv = 0;
	uint64_t off = 0, len;
	int ret = CAT_BADURL, r;

	memset(&f, 0, sizeof f);
	if (imap_url_parse(pt->url, strlen(pt->url), &u) < 0)
		return CAT_BADURL;
	/* RFC 4469 5: the URL names a message of this user on this server;
	 * URLAUTH-authorised URLs (RFC 4467) are not taken */
	if ((u.user != NULL && strcasecmp(u.user, j->user) != 0) || u.urlauth != NULL)
		goto out;
	if (imap_mailbox_check(u.mailbox, j->max_name, 255) != NULL)
		goto out;
	r = store_snap_mailbox(sn, j->user, u.mailbox, false, mb_uidvalidity, &uidv, err_r);
	if (r == STORE_NONEXISTENT) {
		drop_err(err_r);
		goto out;
	}
	if (r < 0) {
		ret = -1;
		goto out;
	}
	if (u.uidvalidity != 0 && u.uidvalidity != uidv)
		goto out;
	struct store_uid_range rg = {u.uid, u.uid};
	r = store_snap_messages(sn, j->user, u.mailbox, uidv, &rg, 1, 0, STORE_MSG_CACHE,
				url_msg_cb, &um, err_r);
	if (r == STORE_NONEXISTENT || r == STORE_CHANGED) {
		drop_err(err_r);
		goto out;
	}
	if (r < 0) {
		ret = -1;
		goto out;
	}
	if (!um.found)
		goto out;
	if (store_snap_blob_open(sn, um.blob, &pt->fd, err_r) < 0) {
		/* expunged since the snapshot began */
		drop_err(err_r);
		pt->fd = -1;
		goto out;
	}
	if (imap_url_section(u.section, &f) < 0)
		goto out;
	const struct imap_fetch_item *it = &f.v[0];
	len = um.size;
	if (it->depth > 0 || it->what != MIME_SECT_BODY || it->fields) {
		struct mime_cache mc;
		enum mime_encoding enc;
		if (um.cache.len == 0 || !mime_cache_open(&mc, um.cache.data, um.cache.len)) {
			struct imap_blob bl = {0};
			const char *m;
			size_t ml;
			if (imap_blob_load(&bl, pt->fd, &m, &ml) < 0)
				goto out;
			buf_reset(&um.cache);
			mime_cache_build(m, ml, &um.cache);
			imap_blob_free(&bl);
			if (!mime_cache_open(&mc, um.cache.data, um.cache.len))
				goto out;
		}
		if (mime_cache_section(&mc, it->path, it->depth, it->what, &off, &len, &enc) < 0)
			goto out; /* RFC 4469 5: no such part */
		if (off > um.size || len > um.size - off)
			goto out;
		if (it->fields) {
			if (len > CAT_MAX_HEADER)
				goto out;
			char *h = xmalloc(len + 1);
			if (!pread_all(pt->fd, h, (size_t)len, off)) {
				free(h);
				goto out;
			}
			mime_header_fields(h, (size_t)len, (const char *const *)it->names, it->n_names,
					   it->fields_not, &pt->bytes);
			free(h);
			close(pt->fd);
			pt->fd = -1;
			off = 0;
			len = pt->bytes.len;
		}
	}
	if (u.partial) {
		/* RFC 5092 3: ;PARTIAL=offset[.length] of the section */
		uint64_t o = u.partial_off < len ? u.partial_off : len;
		off += o;
		len -= o;
		if (u.partial_len != 0 && u.partial_len < len)
			len = u.partial_len;
	}
	pt->off = off;
	pt->len = len;
	ret = 0;
out:
	if (ret != 0 && pt->fd >= 0) {
		close(pt->fd);
		pt->fd = -1;
	}
	imap_url_free(&u);
	if (f.v != NULL)
		imap_fetch_free(&f);
	buf_free(&um.cache);
	free(um.blob);
	return ret;
}

static int cat_resolve(struct store_snap *sn, void *arg, char **err_r)
{
	struct append_state *a = arg;
	struct cat_job *j = a->cat;
	uint32_t uidv = 0;
	int r;

	/* RFC 4469 5 (and imaptest): a missing target is [TRYCREATE] even
	 * when a URL is bad */
	r = store_snap_mailbox(sn, j->user, a->mailbox, false, mb_uidvalidity, &uidv, err_r);
	if (r == STORE_NONEXISTENT) {
		drop_err(err_r);
		j->result = STORE_NONEXISTENT;
		return 0;
	}
	if (r < 0)
		return -1;
	for (size_t i = 0; i < j->n_msgs; i++) {
		for (size_t k = 0; k < j->msgs[i].n_parts; k++) {
			struct cat_part *pt = &j->msgs[i].parts[k];
			if (pt->kind != CAT_URL)
				continue;
			r = cat_url(sn, j, pt, err_r);
			if (r < 0)
				return -1;
			if (r == CAT_BADURL) {
				j->result = CAT_BADURL;
				j->bad_url = pt->url;
				return 0;
			}
		}
	}
	return 0;
}

/* ---- CATENATE: assembling a message (worker) ---- */

static bool cat_write(void *arg, const char *msg, size_t len, struct store_spool *out)
{
	struct append_state *a = arg;
	struct cat_msg *m = &a->cat->msgs[a->cat->next];
	char *chunk = NULL;

	for (size_t k = 0; k < m->n_parts && !m->io_error; k++) {
		const struct cat_part *pt = &m->parts[k];
		if (pt->kind == CAT_TEXT) {
			if (pt->off > len || pt->len > len - pt->off)
				m->io_error = true;
			else
				store_spool_write(out, msg + pt->off, (size_t)pt->len);
		} else if (pt->fd < 0) {
			store_spool_write(out, pt->bytes.data + pt->off, (size_t)pt->len);
		} else {
			uint64_t o = pt->off, left = pt->len;
			if (chunk == NULL && left > 0)
				chunk = xmalloc(64 * 1024);
			while (left > 0) {
				size_t n = left < 64 * 1024 ? (size_t)left : 64 * 1024;
				if (!pread_all(pt->fd, chunk, n, o)) {
					m->io_error = true;
					break;
				}
				store_spool_write(out, chunk, n);
				o += n;
				left -= n;
			}
		}
	}
	free(chunk);
	return !m->io_error;
}

static void cat_next(struct imap_session *s, struct append_state *a);

static void cat_written(void *arg, int result)
{
	struct append_state *a = arg;
	struct imap_session *s = a->cat_s;

	if (!step_back(s, a))
		return;
	if (result < 0 || a->cat->msgs[a->cat->next].io_error) {
		log_err("imap %s: catenate: assembling a message failed", s->base.ip);
		append_fail(s, a, "UNAVAILABLE", "Cannot store now");
		return;
	}
	a->cat->next++;
	cat_next(s, a);
}

static void cat_next(struct imap_session *s, struct append_state *a)
{
	struct cat_job *j = a->cat;

	if (j->next == j->n_msgs) {
		append_store(s, a);
		return;
	}
	s->base.busy++;
	store_spool_filter(a->sp[j->msgs[j->next].sp], s->srv->workers, cat_write, cat_written, a);
}

static void cat_resolved(void *arg, int result, const char *err)
{
	struct append_state *a = arg;
	struct imap_session *s = a->cat_s;
	struct cat_job *j = a->cat;

	if (!step_back(s, a))
		return;
	if (result < 0) {
		log_err("imap %s: catenate: %s", s->base.ip, err != NULL ? err : "read failed");
		append_fail(s, a, "UNAVAILABLE", "Cannot store now");
		return;
	}
	if (j->result == STORE_NONEXISTENT) {
		append_fail(s, a, "TRYCREATE", "Mailbox does not exist");
		return;
	}
	if (j->result == CAT_BADURL) {
		/* RFC 4469 6: [BADURL url] */
		struct buf code = BUF_INIT;
		buf_appends(&code, "BADURL ");
		/* url-resp-text excludes CR, LF, NUL and "]" (and 8-bit): a
		 * URL given as a literal may hold them; percent-encoded (RFC
		 * 3986 2.1) they keep the code one line and one code */
		for (const unsigned char *u = (const unsigned char *)j->bad_url; *u != '\0'; u++) {
			if (*u < 0x20 || *u == ']' || *u >= 0x7f)
				buf_printf(&code, "%%%02X", *u);
			else
				buf_appendc(&code, (char)*u);
		}
		if (s->job == a)
			detach(s);
		state_free(&a);
		imap_tagged(s, "NO", code.data, "Invalid or unknown URL");
		buf_free(&code);
		imap_cmd_done(s);
		return;
	}
	for (size_t i = 0; i < j->n_msgs; i++) {
		uint64_t total = 0;
		for (size_t k = 0; k < j->msgs[i].n_parts; k++)
			total += j->msgs[i].parts[k].len;
		if (total > append_limit(s)) {
			/* RFC 4469 6, RFC 7889 */
			append_fail(s, a, "TOOBIG", "Message too big");
			return;
		}
	}
	cat_next(s, a);
}

/* ---- parsing APPEND / REPLACE ---- */

static void cat_add_part(struct cat_msg *m, enum cat_kind kind, const char *url, size_t url_len,
			 uint64_t off, uint64_t len)
{
	m->parts = xrealloc(m->parts, (m->n_parts + 1) * sizeof *m->parts);
	struct cat_part *pt = &m->parts[m->n_parts++];
	memset(pt, 0, sizeof *pt);
	pt->kind = kind;
	pt->url = url != NULL ? xstrndup(url, url_len) : NULL;
	pt->off = off;
	pt->len = len;
	pt->fd = -1;
}

static void sp_push(struct append_state *a, struct store_spool *sp)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 4;
		a->sp = xrealloc(a->sp, a->cap * sizeof *a->sp);
	}
	a->sp[a->n++] = sp;
}

/* The messages after the mailbox (RFC 9051 9 append-message, RFC 3502
 * MULTIAPPEND, RFC 4469 CATENATE, RFC 6855 4 UTF8): their options in a,
 * CATENATE parts in a->cat, a->sp in message order. NULL, or the text of a
 * BAD; *code_r and *text_r set for a NO. */
static const char *parse_messages(struct imap_session *s, struct append_state *a,
				  const struct imap_arg *p, bool one, const char **code_r,
				  const char **text_r)
{
	size_t n_lit = a->n, si = 0, n = 0, cap = 0, *order = NULL, n_urls = 0;
	const char *bad = NULL;

	while (p->type != IMAP_ARG_EOL && bad == NULL) {
		unsigned sys = 0;
		struct buf kw = BUF_INIT, fb = BUF_INIT;
		time_t t = 0;
		int tz = 0;
		if ((one && n == 1) || n >= IMAP_APPEND_MAX_MESSAGES) {
			bad = one ? "REPLACE takes one message" : "Too many messages";
			break;
		}
		if (p->type == IMAP_ARG_LIST) {
			if (imap_parse_flags(p, &sys, &kw) < 0)
				bad = "Invalid flags";
			p++;
		}
		if (bad == NULL && p->type == IMAP_ARG_QUOTED) {
			if (!imap_parse_datetime(p->str, p->len, &t, &tz))
				bad = "Invalid date-time";
			p++;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			order = xrealloc(order, cap * sizeof *order);
			a->flags = xrealloc(a->flags, cap * sizeof *a->flags);
			a->dates = xrealloc(a->dates, cap * sizeof *a->dates);
			a->tzs = xrealloc(a->tzs, cap * sizeof *a->tzs);
		}
		if (bad != NULL) {
			/* nothing */
		} else if (p->type == IMAP_ARG_LITERAL && p->external) {
			if (si >= n_lit)
				bad = "Message literals do not match";
			else
				order[n] = si++;
			p++;
		} else if (imap_arg_atom_is(p, "UTF8") && p[1].type == IMAP_ARG_LIST) {
			/* RFC 6855 4: "UTF8" SP "(" literal8 ")" */
			const struct imap_arg *l = p[1].list;
			if (l[0].type != IMAP_ARG_LITERAL || !l[0].external || !l[0].binary ||
			    l[1].type != IMAP_ARG_EOL)
				bad = "Syntax: UTF8 (~{n}...)";
			else if (si >= n_lit)
				bad = "Message literals do not match";
			else
				order[n] = si++;
			p += 2;
		} else if (imap_arg_atom_is(p, "CATENATE") && p[1].type == IMAP_ARG_LIST) {
			/* RFC 4469 5: "CATENATE" SP "(" cat-part *(SP cat-part) ")" */
			struct cat_msg m = {0};
			uint64_t toff = 0;
			bool text = false;
			const char *u;
			size_t ul;
			for (const struct imap_arg *q = p[1].list; q->type != IMAP_ARG_EOL && bad == NULL;
			     q += 2) {
				if (m.n_parts >= CAT_MAX_PARTS) {
					bad = "Too many CATENATE parts";
				} else if (imap_arg_atom_is(q, "TEXT") && q[1].type == IMAP_ARG_LITERAL &&
					   q[1].external) {
					cat_add_part(&m, CAT_TEXT, NULL, 0, toff, q[1].len);
					toff += q[1].len;
					text = true;
				} else if (imap_arg_atom_is(q, "URL") && imap_arg_astring(&q[1], &u, &ul) &&
					   memchr(u, '\0', ul) == NULL) {
					if (++n_urls > CAT_MAX_URLS) {
						/* RFC 5530 3: a server limit */
						*code_r = "LIMIT";
						*text_r = "Too many CATENATE URLs in one command";
						bad = "";
						break;
					}
					cat_add_part(&m, CAT_URL, u, ul, 0, 0);
				} else {
					bad = "Invalid CATENATE part";
				}
			}
			if (bad == NULL && m.n_parts == 0)
				bad = "Empty CATENATE";
			if (bad == NULL && text && si >= n_lit)
				bad = "Message literals do not match";
			if (bad == NULL && text) {
				order[n] = si++;
			} else if (bad == NULL) {
				/* URLs only: a spool of its own */
				char *err = NULL;
				struct store_spool *sp = store_spool_new(s->srv->st, &err);
				if (sp == NULL) {
					log_err("imap %s: append spool: %s", s->base.ip,
						err != NULL ? err : "error");
					free(err);
					*code_r = "UNAVAILABLE";
					*text_r = "Cannot store now";
					bad = "";
				} else {
					sp_push(a, sp);
					order[n] = a->n - 1;
				}
			}
			if (a->cat == NULL) {
				a->cat = xcalloc(1, sizeof *a->cat);
				a->cat->user = xstrdup(s->user);
				a->cat->max_name = (size_t)s->srv->cfg->imap_max_mailbox_name;
			}
			m.sp = n;
			a->cat->msgs =
			    xrealloc(a->cat->msgs, (a->cat->n_msgs + 1) * sizeof *a->cat->msgs);
			a->cat->msgs[a->cat->n_msgs++] = m;
			p += 2;
		} else {
			bad = "Expected a message literal";
		}
		if (bad == NULL) {
			imap_flags_to_store(&fb, sys, kw.len > 0 ? kw.data : "");
			a->flags[n] = xstrdup(fb.data);
			a->dates[n] = t;
			a->tzs[n] = tz * 60; /* minutes (parse.h) -> seconds (store.h) */
			n++;
		}
		buf_free(&kw);
		buf_free(&fb);
	}
	a->n_flags = n;
	if (bad == NULL && (n == 0 || si != n_lit) && a->fail_code == NULL)
		bad = "Message literals do not match";
	if (bad == NULL && a->fail_code == NULL) {
		/* the spools in message order */
		struct store_spool **sp = xcalloc(n > 0 ? n : 1, sizeof *sp);
		for (size_t i = 0; i < n; i++)
			sp[i] = a->sp[order[i]];
		free(a->sp);
		a->sp = sp;
		a->n = a->cap = n;
	}
	free(order);
	return bad;
}

/* APPEND (replace NULL) and REPLACE (args from the mailbox on). */
static void append_command(struct imap_session *s, const struct imap_arg *args, bool replace,
			   uint32_t replace_uid)
{
	struct append_state *a = state_of(s);
	const char *code = NULL, *text = NULL, *bad;
	char *mailbox;

	if (a != NULL && a->n_cmds != s->n_cmds && a->n_cmds + 1 != s->n_cmds) {
		append_job_abort(s); /* left over from an older command */
		a = NULL;
	}
	if (a == NULL) {
		if (s->job != NULL) {
			imap_tagged(s, "NO", "UNAVAILABLE", "Busy");
			return;
		}
		/* no literal was streamed: CATENATE of URLs only, or a BAD */
		a = xcalloc(1, sizeof *a);
		a->n_cmds = s->n_cmds;
		s->job = a;
		s->job_abort = append_job_abort;
	}
	mailbox = imap_mailbox_arg(s, &args[0]);
	if (mailbox == NULL) {
		append_job_abort(s);
		return; /* answered */
	}
	a->mailbox = mailbox;
	a->replace = replace;
	a->replace_uid = replace_uid;
	if (replace)
		a->replace_uidvalidity = s->sel->uidvalidity;
	bad = parse_messages(s, a, &args[1], replace, &code, &text);
	if (bad != NULL || a->fail_code != NULL) {
		/* a literal refused or dropped (TOOBIG, OVERQUOTA...) decides */
		if (a->fail_code != NULL) {
			code = a->fail_code;
			text = a->fail_text;
		}
		append_job_abort(s);
		if (code == NULL)
			imap_tagged(s, "BAD", NULL, "%s", bad);
		else
			imap_tagged(s, "NO", code, "%s", text);
		return;
	}
	if (a->cat != NULL) {
		a->cat_s = s;
		a->in_flight = true;
		a->cat_phase = true;
		session_park(&s->base);
		s->base.busy++;
		store_read(s->srv->st, s->srv->workers, cat_resolve, cat_resolved, a);
		return;
	}
	append_store(s, a);
}

void imap_cmd_append(struct imap_session *s, const struct imap_arg *args)
{
	append_command(s, args, false, 0);
}

/* REPLACE and UID REPLACE (RFC 8508): the message is appended to the
 * mailbox (as APPEND, with CATENATE and UTF8 too), then the replaced one is
 * expunged from the selected mailbox; the client sees the untagged OK
 * [APPENDUID], the EXPUNGE (or VANISHED) and the tagged OK, as for MOVE.
 * The replaced message is checked before the new one is stored. */
void imap_cmd_replace(struct imap_session *s, const struct imap_arg *args)
{
	uint32_t n, uid;

	if (!imap_arg_number(&args[0], &n) || n == 0 || args[1].type == IMAP_ARG_EOL) {
		append_job_abort_if(s);
		imap_tagged(s, "BAD", NULL, "Syntax: %s number mailbox message", s->cmd->name);
		return;
	}
	if (s->uid) {
		uid = n;
		if (imap_view_seq(s, uid) == 0) {
			append_job_abort_if(s);
			imap_tagged(s, "NO", NULL, "No such message to replace");
			return;
		}
	} else {
		if (n > imap_view_count(s)) {
			append_job_abort_if(s);
			imap_tagged(s, "BAD", NULL, "Invalid message sequence number");
			return;
		}
		uid = imap_view_uid(s, n);
	}
	if (s->sel->readonly) {
		/* RFC 8508 3.4: the expunge would fail: nothing is appended */
		append_job_abort_if(s);
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	append_command(s, &args[1], true, uid);
}
