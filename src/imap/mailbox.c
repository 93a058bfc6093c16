/* IMAP mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
 * LIST (RFC 9051 6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
 * SPECIAL-USE RFC 6154, CHILDREN RFC 3348), LSUB (RFC 3501 6.3.9), STATUS.
 *
 * Names travel as UTF-8 inside postern; a client that enabled neither
 * IMAP4rev2 nor UTF8=ACCEPT sends and gets modified UTF-7 (RFC 3501
 * 5.1.3). Writes go to the store's committer, reads of the account's
 * mailboxes to a worker (store_read): never on the loop. A LIST is
 * computed on the worker and sent in slices within the session's output
 * bound. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/selcmd.h"
#include "imap/session.h"

#define IMAP_MAX_LEVELS 32       /* hierarchy levels of a name */
#define IMAP_MAX_PATTERNS 64     /* LIST-EXTENDED patterns in one command */
#define LIST_SLICE (64 * 1024)   /* most LIST output made in one loop step */
#define LIST_PATTERN_BUDGET 16   /* all patterns of a LIST: at most this many
				  * times the longest name (octets, normalised) */

/* ---- names ---- */

static bool client_utf8(const struct imap_session *s)
{
	return s->utf8 || s->rev2;
}

/* The astring's bytes as UTF-8 (decoded from modified UTF-7 for a rev1
 * client) in out. false: not decodable. */
static bool name_decode(const struct imap_session *s, const char *p, size_t len, struct buf *out)
{
	if (memchr(p, '\0', len) != NULL)
		return false;
	if (client_utf8(s)) {
		buf_append(out, p, len);
		return true;
	}
	return imap_utf7_decode(p, len, out);
}

static char *mailbox_arg(struct imap_session *s, const struct imap_arg *arg, bool create)
{
	const char *p;
	size_t len;
	struct buf b = BUF_INIT;

	if (!imap_arg_astring(arg, &p, &len)) {
		imap_tagged(s, "BAD", NULL, "Invalid mailbox name argument");
		return NULL;
	}
	if (!name_decode(s, p, len, &b)) {
		buf_free(&b);
		imap_tagged(s, "NO", "CANNOT", "Invalid mailbox name: not valid %s",
			    client_utf8(s) ? "UTF-8" : "modified UTF-7");
		return NULL;
	}
	char *name = b.data != NULL ? b.data : xstrdup("");
	size_t n = b.len;
	/* RFC 9051 6.3.4: a trailing separator declares that the client will
	 * create names under it; the mailbox is the name without it. */
	if (create && n > 1 && name[n - 1] == IMAP_HIER_SEP)
		name[--n] = '\0';
	size_t max = (size_t)s->srv->cfg->imap_max_mailbox_name;
	if (n > max) {
		free(name);
		imap_tagged(s, "NO", "LIMIT", "Mailbox name too long (limit %zu octets)", max);
		return NULL;
	}
	const char *why = imap_mailbox_check(name, max, IMAP_MAX_LEVELS);
	if (why != NULL) {
		free(name);
		imap_tagged(s, "NO", "CANNOT", "Invalid mailbox name: %s", why);
		return NULL;
	}
	return name;
}

char *imap_mailbox_arg(struct imap_session *s, const struct imap_arg *arg)
{
	return mailbox_arg(s, arg, false);
}

static void append_name(bool utf8, struct buf *out, const char *name)
{
	if (utf8) {
		/* RFC 9051 4.3: a quoted string may hold UTF-8 (stored names
		 * have no CR, LF or NUL); an atom where one will do */
		bool ascii = true;
		for (const char *p = name; *p != '\0'; p++)
			if ((unsigned char)*p >= 0x80)
				ascii = false;
		if (ascii) {
			imap_append_astring(out, name, strlen(name));
			return;
		}
		buf_appendc(out, '"');
		for (const char *p = name; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				buf_appendc(out, '\\');
			buf_appendc(out, *p);
		}
		buf_appendc(out, '"');
		return;
	}
	struct buf b = BUF_INIT;
	if (!imap_utf7_encode(name, strlen(name), &b)) {
		/* stored names are valid UTF-8; never in practice */
		buf_reset(&b);
		buf_appends(&b, name);
	}
	imap_append_astring(out, b.data != NULL ? b.data : "", b.len);
	buf_free(&b);
}

void imap_append_mailbox(const struct imap_session *s, struct buf *out, const char *name)
{
	append_name(client_utf8(s), out, name);
}

/* RFC 5530 response codes for the store's results. */
void imap_store_error(struct imap_session *s, int result, const char *what)
{
	switch (result) {
	case STORE_NONEXISTENT:
		imap_tagged(s, "NO", "NONEXISTENT", "%s: no such mailbox", what);
		break;
	case STORE_EXISTS:
		imap_tagged(s, "NO", "ALREADYEXISTS", "%s: mailbox already exists", what);
		break;
	case STORE_OVERQUOTA:
		imap_tagged(s, "NO", "OVERQUOTA", "%s: quota exceeded", what);
		break;
	case STORE_LIMIT:
		imap_tagged(s, "NO", "LIMIT", "%s: too many mailboxes or name too long", what);
		break;
	case STORE_CHANGED:
		imap_tagged(s, "NO", "NONEXISTENT", "%s: the mailbox was deleted meanwhile", what);
		break;
	case STORE_HASCHILDREN:
		/* RFC 9051 7.1 HASCHILDREN: delete the children first */
		imap_tagged(s, "NO", "HASCHILDREN", "%s: mailbox has children, delete them first",
			    what);
		break;
	case STORE_CANNOT:
		imap_tagged(s, "NO", "CANNOT", "%s: not possible for this mailbox", what);
		break;
	default:
		imap_tagged(s, "NO", "UNAVAILABLE", "%s: temporary failure, try again later", what);
		break;
	}
}

/* ---- the write commands ---- */

struct write_job {
	struct imap_session *s;
	const char *what; /* the command's name (static) */
	char *sel_to; /* RENAME of the selected mailbox: its new name */
	char *created; /* CREATE: the name, for its MAILBOXID */
	char *user;
	uint32_t uidvalidity; /* CREATE: read back (0: gone meanwhile) */
};

/* RFC 8474 4.1: CREATE answers OK [MAILBOXID (id)]: the new mailbox's
 * UIDVALIDITY, read back on a worker once the store created it. */
static void created_seen(void *arg, const struct store_mailbox *mb)
{
	((struct write_job *)arg)->uidvalidity = mb->status.uidvalidity;
}

static int created_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct write_job *j = arg;
	int r = store_snap_mailbox(sn, j->user, j->created, false, created_seen, j, err_r);
	if (r == STORE_NONEXISTENT) {
		x_free(err_r);
		return 0; /* deleted meanwhile: OK without the code */
	}
	return r < 0 ? -1 : 0;
}

static void created_done(void *arg, int result, const char *err)
{
	struct write_job *j = arg;
	struct imap_session *s = j->s;
	uint32_t uidvalidity = result == 0 ? j->uidvalidity : 0;
	free(j->created);
	free(j->user);
	free(j);
	if (!imap_step_done(s))
		return;
	if (uidvalidity != 0) {
		char code[40];
		snprintf(code, sizeof code, "MAILBOXID (" IMAP_MAILBOXID_FMT ")", uidvalidity);
		imap_tagged(s, "OK", code, "CREATE completed");
	} else {
		imap_tagged(s, "OK", NULL, "CREATE completed");
	}
	imap_cmd_done(s);
}

static void write_done(void *arg, int result)
{
	struct write_job *j = arg;
	struct imap_session *s = j->s;
	const char *what = j->what;

	if (j->created != NULL && result == STORE_OK && imap_session_alive(s)) {
		/* the busy taken for the write carries over to the read */
		store_read(s->srv->st, s->srv->workers, created_read, created_done, j);
		return;
	}
	char *sel_to = j->sel_to;

	free(j->created);
	free(j->user);
	free(j);
	if (!imap_step_done(s)) {
		free(sel_to);
		return;
	}
	if (sel_to != NULL && result == STORE_OK)
		imap_sel_renamed(s, sel_to); /* RFC 9051 6.3.6: still selected */
	free(sel_to);
	if (result == STORE_OK)
		imap_tagged(s, "OK", NULL, "%s completed", what);
	else
		imap_store_error(s, result, what);
	imap_cmd_done(s);
}

static struct write_job *write_start(struct imap_session *s)
{
	struct write_job *j = xcalloc(1, sizeof *j);

	j->s = s;
	j->what = s->cmd->name;
	s->base.busy++;
	session_park(&s->base);
	return j;
}

/* RFC 6154 5.2: the attributes a new mailbox may be given. */
static const char *const special_uses[] = {"\\Archive", "\\Drafts", "\\Junk", "\\Sent",
					   "\\Trash"};

void imap_cmd_create(struct imap_session *s, const struct imap_arg *args)
{
	const char *use = NULL;

	if (args[0].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: CREATE mailbox [(USE (attr))]");
		return;
	}
	/* RFC 6154 3 (CREATE-SPECIAL-USE): CREATE name (USE (\Sent)) */
	if (args[1].type != IMAP_ARG_EOL) {
		const struct imap_arg *l = args[1].list;
		if (args[1].type != IMAP_ARG_LIST || args[2].type != IMAP_ARG_EOL ||
		    !imap_arg_atom_is(&l[0], "USE") || l[1].type != IMAP_ARG_LIST ||
		    l[2].type != IMAP_ARG_EOL) {
			imap_tagged(s, "BAD", NULL, "Syntax: CREATE mailbox [(USE (attr))]");
			return;
		}
		const struct imap_arg *u = l[1].list;
		for (; u->type != IMAP_ARG_EOL; u++) {
			const char *known = NULL;
			for (size_t i = 0; i < sizeof special_uses / sizeof special_uses[0]; i++)
				if (imap_arg_atom_is(u, special_uses[i]))
					known = special_uses[i];
			if (known == NULL || use != NULL) {
				imap_tagged(s, "NO", "USEATTR",
					    "One of \\Archive \\Drafts \\Junk \\Sent \\Trash");
				return;
			}
			use = known;
		}
	}
	char *name = mailbox_arg(s, &args[0], true);
	if (name == NULL)
		return;
	if (strcmp(name, "INBOX") == 0) {
		/* RFC 9051 6.3.4: INBOX always exists */
		imap_tagged(s, "NO", "ALREADYEXISTS", "INBOX always exists");
		free(name);
		return;
	}
	struct write_job *j = write_start(s);
	j->created = xstrdup(name);
	j->user = xstrdup(s->user);
	store_mailbox_create(s->srv->st, s->user, name, use, write_done, j);
	free(name);
}

void imap_cmd_delete(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type == IMAP_ARG_EOL || args[1].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: DELETE mailbox");
		return;
	}
	char *name = imap_mailbox_arg(s, &args[0]);
	if (name == NULL)
		return;
	if (strcmp(name, "INBOX") == 0) {
		/* RFC 9051 6.3.5: deleting INBOX is an error */
		imap_tagged(s, "NO", "CANNOT", "INBOX cannot be deleted");
		free(name);
		return;
	}
	if (s->sel != NULL && strcmp(s->sel->name, name) == 0) {
		/* The session deletes its own selected mailbox: it is closed
		 * first (as Dovecot does), else the deletion's notice would end
		 * the session (select.c: BYE). RFC 9051 7.1: CLOSED marks the
		 * end of the responses about it. */
		imap_unselect(s, false);
		imap_untagged(s, "OK [CLOSED] Previous mailbox is now closed");
	}
	store_mailbox_delete(s->srv->st, s->user, name, write_done, write_start(s));
	free(name);
}

void imap_cmd_rename(struct imap_session *s, const struct imap_arg *args)
{
	if (args[0].type == IMAP_ARG_EOL || args[1].type == IMAP_ARG_EOL ||
	    args[2].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: RENAME existing-mailbox new-mailbox");
		return;
	}
	char *from = imap_mailbox_arg(s, &args[0]);
	if (from == NULL)
		return;
	char *to = mailbox_arg(s, &args[1], true);
	if (to == NULL) {
		free(from);
		return;
	}
	if (strcmp(to, "INBOX") == 0) {
		imap_tagged(s, "NO", "ALREADYEXISTS", "INBOX always exists");
	} else if (strcmp(from, to) == 0) {
		imap_tagged(s, "NO", "ALREADYEXISTS", "Mailbox already exists");
	} else {
		/* RFC 9051 6.3.6: renaming INBOX moves its messages to the new
		 * mailbox and leaves INBOX empty (the store does it) */
		size_t fl = strlen(from);
		struct write_job *j = write_start(s);
		if (s->sel != NULL && strcmp(from, "INBOX") != 0 &&
		    strncmp(s->sel->name, from, fl) == 0 &&
		    (s->sel->name[fl] == '\0' || s->sel->name[fl] == IMAP_HIER_SEP)) {
			/* the selected mailbox (or a parent) is renamed by this
			 * session: it stays selected under its new name (RFC 9051
			 * 6.3.6, as Dovecot) */
			j->sel_to = xasprintf("%s%s", to, s->sel->name + fl);
		}
		store_mailbox_rename(s->srv->st, s->user, from, to, write_done, j);
	}
	free(from);
	free(to);
}

void imap_cmd_subscribe(struct imap_session *s, const struct imap_arg *args)
{
	bool on = strcmp(s->cmd->name, "SUBSCRIBE") == 0;

	if (args[0].type == IMAP_ARG_EOL || args[1].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: %s mailbox", s->cmd->name);
		return;
	}
	char *name = imap_mailbox_arg(s, &args[0]);
	if (name == NULL)
		return;
	/* RFC 9051 6.3.7: a name may be subscribed whether it exists or not */
	store_mailbox_subscribe(s->srv->st, s->user, name, on, write_done, write_start(s));
	free(name);
}

/* ---- STATUS items (RFC 9051 6.3.11, RFC 7162 3.1.2.1, RFC 8438) ---- */

enum {
	ST_MESSAGES = 1, ST_UIDNEXT = 2, ST_UIDVALIDITY = 4, ST_UNSEEN = 8, ST_DELETED = 16,
	ST_SIZE = 32, ST_RECENT = 64, ST_HIGHESTMODSEQ = 128, ST_APPENDLIMIT = 256,
	ST_DELETED_STORAGE = 512, ST_MAILBOXID = 1024,
};
static const struct {
	const char *name;
	unsigned bit;
} status_items[] = {
	{"MESSAGES", ST_MESSAGES}, {"UIDNEXT", ST_UIDNEXT}, {"UIDVALIDITY", ST_UIDVALIDITY},
	{"UNSEEN", ST_UNSEEN}, {"DELETED", ST_DELETED}, {"SIZE", ST_SIZE},
	{"RECENT", ST_RECENT}, {"HIGHESTMODSEQ", ST_HIGHESTMODSEQ},
	{"APPENDLIMIT", ST_APPENDLIMIT}, {"DELETED-STORAGE", ST_DELETED_STORAGE}, /* RFC 9208 */
	{"MAILBOXID", ST_MAILBOXID}, /* RFC 8474 4.2 */
};
#define N_STATUS_ITEMS (sizeof status_items / sizeof status_items[0])
/* the items in the order asked: up to one of each */
struct status_req {
	unsigned bits;
	uint8_t order[N_STATUS_ITEMS];
	size_t n;
};

static bool status_parse(const struct imap_arg *list, struct status_req *r)
{
	memset(r, 0, sizeof *r);
	if (list->type != IMAP_ARG_LIST || list->list[0].type == IMAP_ARG_EOL)
		return false;
	for (const struct imap_arg *a = list->list; a->type != IMAP_ARG_EOL; a++) {
		size_t i;
		for (i = 0; i < N_STATUS_ITEMS; i++)
			if (imap_arg_atom_is(a, status_items[i].name))
				break;
		if (i == N_STATUS_ITEMS)
			return false;
		if (!(r->bits & status_items[i].bit))
			r->order[r->n++] = (uint8_t)i;
		r->bits |= status_items[i].bit;
	}
	return true;
}

static bool status_counts(const struct status_req *r)
{
	return (r->bits & (ST_UNSEEN | ST_DELETED | ST_SIZE | ST_DELETED_STORAGE)) != 0;
}

/* What STATUS reports of one mailbox (copied from the worker's callback). */
struct status_val {
	struct store_mailbox_status st;
	uint32_t unseen, deleted;
	uint64_t size;
	uint32_t recent;
	uint64_t deleted_storage;
};

/* \Recent (RFC 3501 2.3.2) from the boundary select.c keeps (loop thread):
 * every message from it on is recent. Exact when the boundary is 1 (none
 * claimed) or past the last UID; in between, the UIDs from the boundary to
 * UIDNEXT, at most MESSAGES (exact unless some of them were expunged;
 * STATUS counts those with a read of its own). */
static bool recent_guess(const char *user, const char *name, struct status_val *v)
{
	uint32_t from = imap_recent_boundary(user, name, v->st.uidvalidity);

	if (from <= 1)
		v->recent = v->st.messages;
	else if (from >= v->st.uidnext)
		v->recent = 0;
	else
		v->recent = v->st.uidnext - from < v->st.messages ? v->st.uidnext - from
								   : v->st.messages;
	return from <= 1 || from >= v->st.uidnext;
}

static void status_format(const struct imap_session *s, bool utf8, struct buf *b,
			  const char *name, const struct status_req *r,
			  const struct status_val *v)
{
	buf_appends(b, "* STATUS ");
	append_name(utf8, b, name);
	buf_appends(b, " (");
	for (size_t k = 0; k < r->n; k++) {
		unsigned bit = status_items[r->order[k]].bit;
		if (k > 0)
			buf_appendc(b, ' ');
		buf_appends(b, status_items[r->order[k]].name);
		switch (bit) {
		case ST_MESSAGES:
			buf_printf(b, " %" PRIu32, v->st.messages);
			break;
		case ST_UIDNEXT:
			buf_printf(b, " %" PRIu32, v->st.uidnext);
			break;
		case ST_UIDVALIDITY:
			buf_printf(b, " %" PRIu32, v->st.uidvalidity);
			break;
		case ST_UNSEEN:
			buf_printf(b, " %" PRIu32, v->unseen);
			break;
		case ST_DELETED:
			buf_printf(b, " %" PRIu32, v->deleted);
			break;
		case ST_SIZE:
			buf_printf(b, " %" PRIu64, v->size);
			break;
		case ST_RECENT:
			buf_printf(b, " %" PRIu32, v->recent);
			break;
		case ST_HIGHESTMODSEQ:
			buf_printf(b, " %" PRIu64, v->st.highestmodseq);
			break;
		case ST_APPENDLIMIT:
			buf_printf(b, " %zu", s->srv->cfg->imap_max_literal);
			break;
		case ST_DELETED_STORAGE:
			buf_printf(b, " %" PRIu64, v->deleted_storage);
			break;
		case ST_MAILBOXID: /* RFC 8474 4.2: "MAILBOXID" SP "(" objectid ")" */
			buf_printf(b, " (" IMAP_MAILBOXID_FMT ")", v->st.uidvalidity);
			break;
		}
	}
	buf_appends(b, ")\r\n");
}

static void status_copy(struct status_val *v, const struct store_mailbox *mb)
{
	v->st = mb->status;
	v->unseen = mb->unseen;
	v->deleted = mb->deleted;
	v->size = mb->size;
}

/* RFC 9208 4.1.4 (a server with the STORAGE resource supports it, 5.1):
 * DELETED-STORAGE, what EXPUNGE would free: the RFC822.SIZEs of the messages
 * with \Deleted, the value the RFC allows when the exact one is costly
 * (message bodies may be shared by copies). On the worker. */
static int deleted_add(void *arg, const struct store_msg *m)
{
	for (const char *f = m->flags; f != NULL && *f != '\0';) {
		size_t n = strcspn(f, " ");
		if (n == 8 && strncasecmp(f, "\\Deleted", 8) == 0) {
			*(uint64_t *)arg += m->size;
			break;
		}
		f += n;
		f += strspn(f, " ");
	}
	return 0;
}

static int deleted_storage_read(struct store_snap *sn, const char *user, const char *name,
				struct status_val *v, char **err_r)
{
	v->deleted_storage = 0;
	if (v->deleted == 0)
		return STORE_OK;
	return store_snap_messages(sn, user, name, v->st.uidvalidity, NULL, 0, 0, STORE_MSG_PLAIN,
				   deleted_add, &v->deleted_storage, err_r);
}

struct status_job {
	struct imap_session *s;
	char *user, *name;
	struct status_req req;
	struct status_val val;
	bool nonexistent;
	uint32_t recent_from; /* the second read: count the UIDs from here */
};

static void status_seen(void *arg, const struct store_mailbox *mb)
{
	status_copy(&((struct status_job *)arg)->val, mb);
}

static int status_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct status_job *j = arg;
	int r = store_snap_mailbox(sn, j->user, j->name, status_counts(&j->req), status_seen, j,
				   err_r);

	if (r >= 0 && (j->req.bits & ST_DELETED_STORAGE))
		r = deleted_storage_read(sn, j->user, j->name, &j->val, err_r);
	if (r == STORE_NONEXISTENT || r == STORE_CHANGED) {
		x_free(err_r);
		j->nonexistent = true;
		return 0;
	}
	return r < 0 ? -1 : 0;
}

static int recent_count(void *arg, const struct store_msg *m)
{
	((struct status_job *)arg)->val.recent++;
	return 0;
}

static int recent_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct status_job *j = arg;
	struct store_uid_range r = {j->recent_from, UINT32_MAX};
	int res;

	j->val.recent = 0;
	res = store_snap_messages(sn, j->user, j->name, j->val.st.uidvalidity, &r, 1, 0,
				  STORE_MSG_PLAIN, recent_count, j, err_r);
	if (res == STORE_NONEXISTENT || res == STORE_CHANGED) {
		x_free(err_r);
		j->nonexistent = true;
		return 0;
	}
	return res < 0 ? -1 : 0;
}

static void status_done(void *arg, int result, const char *err)
{
	struct status_job *j = arg;
	struct imap_session *s = j->s;

	if (!imap_step_done(s))
		goto out;
	if (result == 0 && !j->nonexistent && (j->req.bits & ST_RECENT) && j->recent_from == 0 &&
	    !recent_guess(j->user, j->name, &j->val)) {
		/* some of the messages were claimed: count the others */
		j->recent_from = imap_recent_boundary(j->user, j->name, j->val.st.uidvalidity);
		s->base.busy++;
		store_read(s->srv->st, s->srv->workers, recent_read, status_done, j);
		return;
	}
	if (result < 0) {
		log_err("imap status client=%s user=%s: %s", s->base.ip, j->user,
			err ? err : "store error");
		imap_store_error(s, STORE_ERROR, "STATUS");
	} else if (j->nonexistent) {
		imap_store_error(s, STORE_NONEXISTENT, "STATUS");
	} else {
		struct buf b = BUF_INIT;
		status_format(s, client_utf8(s), &b, j->name, &j->req, &j->val);
		imap_send(s, b.data, b.len);
		buf_free(&b);
		imap_tagged(s, "OK", NULL, "STATUS completed");
	}
	imap_cmd_done(s);
out:
	free(j->user);
	free(j->name);
	free(j);
}

void imap_cmd_status(struct imap_session *s, const struct imap_arg *args)
{
	struct status_req req;

	if (args[0].type == IMAP_ARG_EOL || !status_parse(&args[1], &req) ||
	    args[2].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL,
			    "Syntax: STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED "
			    "SIZE HIGHESTMODSEQ)");
		return;
	}
	char *name = imap_mailbox_arg(s, &args[0]);
	if (name == NULL)
		return;
	/* RFC 7162 3.1: STATUS HIGHESTMODSEQ is a CONDSTORE enabling command */
	if (req.bits & ST_HIGHESTMODSEQ)
		imap_enable_condstore(s);
	struct status_job *j = xcalloc(1, sizeof *j);
	j->s = s;
	j->user = xstrdup(s->user);
	j->name = name;
	j->req = req;
	s->base.busy++;
	session_park(&s->base);
	store_read(s->srv->st, s->srv->workers, status_read, status_done, j);
}

/* ---- LIST and LSUB ---- */

/* Attributes of a LIST line (RFC 9051 7.3.1, RFC 5258 3.4, RFC 3348). */
enum {
	A_NOSELECT = 1, A_NONEXISTENT = 2, A_HASCHILDREN = 4, A_HASNOCHILDREN = 8,
	A_SUBSCRIBED = 16,
};

struct list_mb {
	char *name;
	char *special_use; /* or NULL */
	struct status_val val;
};

struct list_out {
	const char *name;     /* points into mbs[] or subs[] or own (virt) */
	unsigned attrs;
	bool childinfo;       /* CHILDINFO ("SUBSCRIBED") */
	int mb;               /* index into mbs for special-use and STATUS, or -1 */
};

struct list_job {
	struct imap_session *s;
	/* the request (copied: the worker reads it) */
	char *user;
	bool lsub;
	bool utf8;
	bool sel_subscribed, sel_recursive, sel_special;
	bool ret_subscribed, ret_children, ret_special;
	bool ret_status;
	struct status_req status;
	char **patterns;
	size_t n_patterns;
	char *root;           /* the "" pattern: the reference's root */
	/* the worker's reads */
	struct list_mb *mbs;
	size_t n_mbs, cap_mbs;
	char **subs;
	size_t n_subs, cap_subs;
	char **virt;          /* implied parent levels, owned */
	size_t n_virt, cap_virt;
	/* the result, in name order */
	struct list_out *out;
	size_t n_out, cap_out;
	size_t next;          /* the next line to send */
};

static void list_job_free(struct list_job *j)
{
	if (j == NULL)
		return;
	free(j->user);
	for (size_t i = 0; i < j->n_patterns; i++)
		free(j->patterns[i]);
	free(j->patterns);
	free(j->root);
	for (size_t i = 0; i < j->n_mbs; i++) {
		free(j->mbs[i].name);
		free(j->mbs[i].special_use);
	}
	free(j->mbs);
	for (size_t i = 0; i < j->n_subs; i++)
		free(j->subs[i]);
	free(j->subs);
	for (size_t i = 0; i < j->n_virt; i++)
		free(j->virt[i]);
	free(j->virt);
	free(j->out);
	free(j);
}

/* -- on the worker -- */

static void list_add_mb(void *arg, const struct store_mailbox *mb)
{
	struct list_job *j = arg;

	if (j->n_mbs == j->cap_mbs) {
		j->cap_mbs = j->cap_mbs ? j->cap_mbs * 2 : 32;
		j->mbs = xrealloc(j->mbs, j->cap_mbs * sizeof *j->mbs);
	}
	struct list_mb *m = &j->mbs[j->n_mbs++];
	m->name = xstrdup(mb->name);
	m->special_use = mb->special_use != NULL ? xstrdup(mb->special_use) : NULL;
	status_copy(&m->val, mb);
}

static void list_add_sub(void *arg, const char *name, const char *detail)
{
	struct list_job *j = arg;

	if (j->n_subs == j->cap_subs) {
		j->cap_subs = j->cap_subs ? j->cap_subs * 2 : 32;
		j->subs = xrealloc(j->subs, j->cap_subs * sizeof *j->subs);
	}
	j->subs[j->n_subs++] = xstrdup(name);
}

static int cmp_mb(const void *a, const void *b)
{
	return strcmp(((const struct list_mb *)a)->name, ((const struct list_mb *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_out(const void *a, const void *b)
{
	return strcmp(((const struct list_out *)a)->name, ((const struct list_out *)b)->name);
}

/* Index of name among the sorted mailboxes, or -1. */
static int find_mb(const struct list_job *j, const char *name)
{
	size_t lo = 0, hi = j->n_mbs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(j->mbs[mid].name, name);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* First index in v (sorted strings) not below key. */
static size_t lower_str(char *const *v, size_t n, const char *key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(v[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool find_str(char *const *v, size_t n, const char *key)
{
	size_t i = lower_str(v, n, key);
	return i < n && strcmp(v[i], key) == 0;
}

/* Names with the prefix name + "/" are contiguous in sorted order. */
static bool mb_has_children(const struct list_job *j, const char *name)
{
	size_t len = strlen(name), lo = 0, hi = j->n_mbs;
	char *key = xmalloc(len + 2);

	memcpy(key, name, len);
	key[len] = IMAP_HIER_SEP;
	key[len + 1] = '\0';
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(j->mbs[mid].name, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	bool r = lo < j->n_mbs && strncmp(j->mbs[lo].name, key, len + 1) == 0;
	free(key);
	return r;
}

static bool pattern_match(const struct list_job *j, const char *name)
{
	for (size_t i = 0; i < j->n_patterns; i++)
		if (imap_list_match(j->patterns[i], name, IMAP_HIER_SEP))
			return true;
	return false;
}

static char *virt_add(struct list_job *j, const char *name, size_t len)
{
	if (j->n_virt == j->cap_virt) {
		j->cap_virt = j->cap_virt ? j->cap_virt * 2 : 16;
		j->virt = xrealloc(j->virt, j->cap_virt * sizeof *j->virt);
	}
	return j->virt[j->n_virt++] = xstrndup(name, len);
}

static void virt_sort(struct list_job *j)
{
	/* sorted and unique */
	if (j->n_virt > 1) /* qsort wants a non-NULL array (C11 7.22.5) */
		qsort(j->virt, j->n_virt, sizeof *j->virt, cmp_str);
	size_t k = 0;
	for (size_t i = 0; i < j->n_virt; i++) {
		if (k > 0 && strcmp(j->virt[k - 1], j->virt[i]) == 0)
			free(j->virt[i]);
		else
			j->virt[k++] = j->virt[i];
	}
	j->n_virt = k;
}

static void out_add(struct list_job *j, const char *name, unsigned attrs, bool childinfo, int mb)
{
	if (j->n_out == j->cap_out) {
		j->cap_out = j->cap_out ? j->cap_out * 2 : 32;
		j->out = xrealloc(j->out, j->cap_out * sizeof *j->out);
	}
	j->out[j->n_out++] = (struct list_out){name, attrs, childinfo, mb};
}

/* Every ancestor level of each name in v[0..n) that is not in v itself
 * (and, for mailboxes, not an existing mailbox) goes to j->virt. With
 * only_unmatched, only ancestors of names that match no pattern (RFC 5258
 * 3.5 RECURSIVEMATCH, RFC 3501 6.3.9 LSUB with "%"). */
static void collect_ancestors(struct list_job *j, char *const *v, size_t n, bool only_unmatched)
{
	for (size_t i = 0; i < n; i++) {
		if (only_unmatched && pattern_match(j, v[i]))
			continue;
		for (const char *p = strchr(v[i], IMAP_HIER_SEP); p != NULL;
		     p = strchr(p + 1, IMAP_HIER_SEP))
			virt_add(j, v[i], (size_t)(p - v[i]));
	}
	virt_sort(j);
}

static void list_build_all(struct list_job *j)
{
	/* implied parents of existing mailboxes (RFC 9051 6.3.9: \Noselect) */
	for (size_t i = 0; i < j->n_mbs; i++) {
		const char *n = j->mbs[i].name;
		for (const char *p = strchr(n, IMAP_HIER_SEP); p != NULL;
		     p = strchr(p + 1, IMAP_HIER_SEP)) {
			char *lvl = xstrndup(n, (size_t)(p - n));
			if (find_mb(j, lvl) < 0)
				virt_add(j, lvl, strlen(lvl));
			free(lvl);
		}
	}
	virt_sort(j);
	for (size_t i = 0; i < j->n_mbs; i++) {
		const struct list_mb *m = &j->mbs[i];
		if (j->sel_special && m->special_use == NULL)
			continue;
		if (!pattern_match(j, m->name))
			continue;
		unsigned a = mb_has_children(j, m->name) ? A_HASCHILDREN : A_HASNOCHILDREN;
		if (j->ret_subscribed && find_str(j->subs, j->n_subs, m->name))
			a |= A_SUBSCRIBED;
		out_add(j, m->name, a, false, (int)i);
	}
	if (!j->sel_special) {
		for (size_t i = 0; i < j->n_virt; i++) {
			if (!pattern_match(j, j->virt[i]))
				continue;
			unsigned a = A_NOSELECT | A_HASCHILDREN;
			if (j->ret_subscribed && find_str(j->subs, j->n_subs, j->virt[i]))
				a |= A_SUBSCRIBED;
			out_add(j, j->virt[i], a, false, -1);
		}
	}
}

/* LIST (SUBSCRIBED ...) (RFC 5258 3.1, 3.5) */
static void list_build_subscribed(struct list_job *j)
{
	if (j->sel_recursive)
		collect_ancestors(j, j->subs, j->n_subs, true);
	for (size_t i = 0; i < j->n_subs; i++) {
		const char *n = j->subs[i];
		if (!pattern_match(j, n))
			continue;
		int mb = find_mb(j, n);
		if (j->sel_special && (mb < 0 || j->mbs[mb].special_use == NULL))
			continue;
		unsigned a = A_SUBSCRIBED;
		if (mb < 0)
			a |= A_NONEXISTENT; /* RFC 5258 3.4: subscribed, gone */
		else
			a |= mb_has_children(j, n) ? A_HASCHILDREN : A_HASNOCHILDREN;
		/* a descendant that matches no pattern: CHILDINFO too */
		bool ci = j->sel_recursive && find_str(j->virt, j->n_virt, n);
		out_add(j, n, a, ci, mb);
	}
	/* RECURSIVEMATCH: a name that matches but is not subscribed itself,
	 * with a subscribed descendant that matches no pattern */
	for (size_t i = 0; i < j->n_virt; i++) {
		const char *n = j->virt[i];
		if (find_str(j->subs, j->n_subs, n) || !pattern_match(j, n))
			continue;
		int mb = find_mb(j, n);
		unsigned a = 0;
		if (mb < 0)
			a |= A_NONEXISTENT;
		else
			a |= mb_has_children(j, n) ? A_HASCHILDREN : A_HASNOCHILDREN;
		out_add(j, n, a, true, mb);
	}
}

/* LSUB (RFC 3501 6.3.9): subscribed names; a level that matches "%" while
 * its subscribed descendants do not is listed with \Noselect. */
static void list_build_lsub(struct list_job *j)
{
	collect_ancestors(j, j->subs, j->n_subs, true);
	for (size_t i = 0; i < j->n_subs; i++)
		if (pattern_match(j, j->subs[i]))
			out_add(j, j->subs[i], 0, false, -1);
	for (size_t i = 0; i < j->n_virt; i++)
		if (!find_str(j->subs, j->n_subs, j->virt[i]) && pattern_match(j, j->virt[i]))
			out_add(j, j->virt[i], A_NOSELECT, false, -1);
}

static int list_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct list_job *j = arg;

	if (j->root != NULL)
		return 0; /* the hierarchy delimiter query reads nothing */
	if (!j->lsub && store_snap_mailboxes(sn, j->user, j->ret_status && status_counts(&j->status),
					     list_add_mb, j, err_r) < 0)
		return -1;
	if ((j->lsub || j->sel_subscribed || j->ret_subscribed) &&
	    store_snap_subscriptions(sn, j->user, list_add_sub, j, err_r) < 0)
		return -1;
	if (j->ret_status && (j->status.bits & ST_DELETED_STORAGE))
		for (size_t i = 0; i < j->n_mbs; i++) {
			int r = deleted_storage_read(sn, j->user, j->mbs[i].name, &j->mbs[i].val,
						     err_r);
			if (r == STORE_NONEXISTENT || r == STORE_CHANGED)
				x_free(err_r); /* a snapshot: cannot happen */
			else if (r < 0)
				return -1;
		}
	if (j->n_mbs > 1)
		qsort(j->mbs, j->n_mbs, sizeof *j->mbs, cmp_mb);
	if (j->n_subs > 1)
		qsort(j->subs, j->n_subs, sizeof *j->subs, cmp_str);
	if (j->lsub)
		list_build_lsub(j);
	else if (j->sel_subscribed)
		list_build_subscribed(j);
	else
		list_build_all(j);
	if (j->n_out > 1)
		qsort(j->out, j->n_out, sizeof *j->out, cmp_out);
	return 0;
}

/* -- on the loop -- */

static void list_line(struct list_job *j, struct buf *b, const struct list_out *o)
{
	static const struct {
		unsigned bit;
		const char *name;
	} attr_names[] = {
		{A_NOSELECT, "\\Noselect"},       {A_NONEXISTENT, "\\NonExistent"},
		{A_HASCHILDREN, "\\HasChildren"}, {A_HASNOCHILDREN, "\\HasNoChildren"},
		{A_SUBSCRIBED, "\\Subscribed"},
	};
	bool first = true;

	buf_appends(b, j->lsub ? "* LSUB (" : "* LIST (");
	for (size_t i = 0; i < sizeof attr_names / sizeof attr_names[0]; i++) {
		if (!(o->attrs & attr_names[i].bit))
			continue;
		if (!first)
			buf_appendc(b, ' ');
		buf_appends(b, attr_names[i].name);
		first = false;
	}
	/* RFC 6154 2: special-use attributes in every LIST */
	if (!j->lsub && o->mb >= 0 && j->mbs[o->mb].special_use != NULL) {
		if (!first)
			buf_appendc(b, ' ');
		buf_appends(b, j->mbs[o->mb].special_use);
	}
	buf_appends(b, ") \"/\" ");
	append_name(j->utf8, b, o->name);
	if (o->childinfo)
		buf_appends(b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))"); /* RFC 5258 3.5 */
	buf_appends(b, "\r\n");
	/* RFC 5819: the STATUS of each selectable mailbox right after its
	 * LIST line */
	if (j->ret_status && o->mb >= 0)
		status_format(j->s, j->utf8, b, o->name, &j->status, &j->mbs[o->mb].val);
}

static void list_abort(struct imap_session *s)
{
	list_job_free(s->job);
	s->job = NULL;
}

static void list_emit(struct imap_session *s);

static void list_drained(struct imap_session *s)
{
	list_emit(s);
}

/* A LIST that used up its slice goes on from here, after the loop has
 * served everybody else. */
static void list_continue(void *arg)
{
	struct imap_session *s = arg;

	if (!imap_step_done(s) || s->job == NULL)
		return;
	list_emit(s);
}

static void list_emit(struct imap_session *s)
{
	struct list_job *j = s->job;
	struct buf b = BUF_INIT;
	size_t slice = 0;

	while (j->next < j->n_out) {
		if (!session_output_room(&s->base)) {
			/* the client reads the output down first (drained) */
			session_output_wait(&s->base);
			buf_free(&b);
			return;
		}
		if (slice >= LIST_SLICE) {
			/* conn_write hands output to the kernel at once, so a fast
			 * reader never leaves the output limit: bound one loop
			 * step's work by itself. */
			s->base.busy++;
			loop_post(s->base.l, list_continue, s);
			buf_free(&b);
			return;
		}
		buf_reset(&b);
		for (int k = 0; k < 64 && j->next < j->n_out; k++)
			list_line(j, &b, &j->out[j->next++]);
		imap_send(s, b.data, b.len);
		slice += b.len;
	}
	buf_free(&b);
	s->job = NULL;
	s->job_abort = NULL;
	s->job_drained = NULL;
	imap_tagged(s, "OK", NULL, "%s completed", j->lsub ? "LSUB" : "LIST");
	list_job_free(j);
	imap_cmd_done(s);
}

static void list_done(void *arg, int result, const char *err)
{
	struct list_job *j = arg;
	struct imap_session *s = j->s;

	if (!imap_step_done(s)) {
		list_job_free(j);
		return;
	}
	if (result < 0) {
		log_err("imap list client=%s user=%s: %s", s->base.ip, j->user,
			err ? err : "store error");
		imap_store_error(s, STORE_ERROR, j->lsub ? "LSUB" : "LIST");
		list_job_free(j);
		imap_cmd_done(s);
		return;
	}
	if (j->root != NULL) {
		/* RFC 9051 6.3.9: the hierarchy delimiter and the root name */
		struct buf b = BUF_INIT;
		buf_appends(&b, j->lsub ? "* LSUB (\\Noselect) \"/\" " : "* LIST (\\Noselect) \"/\" ");
		append_name(j->utf8, &b, j->root);
		buf_appends(&b, "\r\n");
		imap_send(s, b.data, b.len);
		buf_free(&b);
		imap_tagged(s, "OK", NULL, "%s completed", j->lsub ? "LSUB" : "LIST");
		list_job_free(j);
		imap_cmd_done(s);
		return;
	}
	if (j->ret_status && (j->status.bits & ST_RECENT))
		for (size_t i = 0; i < j->n_mbs; i++)
			recent_guess(j->user, j->mbs[i].name, &j->mbs[i].val);
	s->job = j;
	s->job_abort = list_abort;
	s->job_drained = list_drained;
	list_emit(s);
}

/* Matching costs the pattern's length times the name's (imap_list_match, on
 * a worker, for every mailbox): the pattern is made as short as it can be
 * without changing what it matches. A run of wildcards is one wildcard ("*"
 * if it has one, else "%": RFC 9051 6.3.9, "*%" and "**" match what "*"
 * does); a pattern with more other characters than the longest name can
 * have matches no name, and is cut after max + 1 of them (still matching
 * none). Returns the new length. */
static size_t pattern_normalize(char *p, size_t max)
{
	char *w = p;
	size_t lits = 0;

	for (const char *r = p; *r != '\0';) {
		if (*r == '*' || *r == '%') {
			char wc = '%';
			for (; *r == '*' || *r == '%'; r++)
				if (*r == '*')
					wc = '*';
			*w++ = wc;
		} else {
			if (lits > max)
				break;
			lits++;
			*w++ = *r++;
		}
	}
	*w = '\0';
	return (size_t)(w - p);
}

/* A pattern argument (list-mailbox: an atom with wildcards, or a string)
 * appended to the reference, as UTF-8. */
static bool pattern_add(struct imap_session *s, struct list_job *j, const char *ref, size_t rlen,
			const struct imap_arg *a)
{
	const char *p;
	size_t len;
	struct buf b = BUF_INIT;

	/* NIL is an atom here: a mailbox may be called so */
	if (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED ||
	    a->type == IMAP_ARG_LITERAL || a->type == IMAP_ARG_NIL) {
		p = a->str;
		len = a->len;
	} else {
		return false;
	}
	if (j->n_patterns == IMAP_MAX_PATTERNS)
		return false;
	/* RFC 9051 6.3.9: the reference and the pattern are one name; a
	 * pattern can always be interpreted without the reference. */
	buf_append(&b, ref, rlen);
	if (memchr(p, '\0', len) != NULL) {
		buf_free(&b);
		return false;
	}
	/* A pattern that is not valid modified UTF-7 matches no stored name
	 * (they are valid UTF-8): taken as it is, it lists nothing. */
	if (!name_decode(s, p, len, &b)) {
		b.len = rlen;
		buf_append(&b, p, len);
	}
	j->patterns = xrealloc(j->patterns, (j->n_patterns + 1) * sizeof *j->patterns);
	j->patterns[j->n_patterns++] = b.data != NULL ? b.data : xstrdup("");
	return true;
}

static bool list_options(struct list_job *j, const struct imap_arg *l)
{
	bool other = false;

	for (const struct imap_arg *a = l; a->type != IMAP_ARG_EOL; a++) {
		if (imap_arg_atom_is(a, "SUBSCRIBED")) {
			j->sel_subscribed = other = true;
		} else if (imap_arg_atom_is(a, "REMOTE")) {
			/* no remote mailboxes here */
		} else if (imap_arg_atom_is(a, "RECURSIVEMATCH")) {
			j->sel_recursive = true;
		} else if (imap_arg_atom_is(a, "SPECIAL-USE")) {
			j->sel_special = other = true; /* RFC 6154 3 */
		} else {
			return false;
		}
	}
	/* RFC 5258 3: RECURSIVEMATCH needs another option (not REMOTE) */
	return !j->sel_recursive || other;
}

static bool list_return(struct list_job *j, const struct imap_arg *l)
{
	for (const struct imap_arg *a = l; a->type != IMAP_ARG_EOL; a++) {
		if (imap_arg_atom_is(a, "SUBSCRIBED")) {
			j->ret_subscribed = true;
		} else if (imap_arg_atom_is(a, "CHILDREN")) {
			j->ret_children = true;
		} else if (imap_arg_atom_is(a, "SPECIAL-USE")) {
			j->ret_special = true;
		} else if (imap_arg_atom_is(a, "STATUS")) {
			/* RFC 5819: STATUS (items) */
			if (j->ret_status || !status_parse(a + 1, &j->status))
				return false;
			j->ret_status = true;
			a++;
		} else {
			return false;
		}
	}
	return true;
}

void imap_cmd_list(struct imap_session *s, const struct imap_arg *args)
{
	struct list_job *j = xcalloc(1, sizeof *j);
	const struct imap_arg *a = args;
	const char *ref;
	size_t rlen;
	bool extended = false;

	j->s = s;
	j->lsub = strcmp(s->cmd->name, "LSUB") == 0;
	j->utf8 = client_utf8(s);
	j->user = xstrdup(s->user);
	/* RFC 5258 2: LIST [(selection options)] reference patterns
	 * [RETURN (return options)] */
	if (!j->lsub && a->type == IMAP_ARG_LIST) {
		extended = true;
		if (!list_options(j, a->list))
			goto bad;
		a++;
	}
	if (!imap_arg_astring(a, &ref, &rlen) || memchr(ref, '\0', rlen) != NULL)
		goto bad;
	a++;
	struct buf rb = BUF_INIT;
	if (!name_decode(s, ref, rlen, &rb)) {
		buf_free(&rb);
		goto bad;
	}
	if (a->type == IMAP_ARG_LIST && !j->lsub) {
		extended = true;
		for (const struct imap_arg *p = a->list; p->type != IMAP_ARG_EOL; p++) {
			if (!pattern_add(s, j, rb.data, rb.len, p)) {
				buf_free(&rb);
				goto bad;
			}
		}
		if (j->n_patterns == 0) {
			buf_free(&rb);
			goto bad;
		}
	} else if (!pattern_add(s, j, rb.data, rb.len, a)) {
		buf_free(&rb);
		goto bad;
	}
	a++;
	if (!j->lsub && imap_arg_atom_is(a, "RETURN")) {
		extended = true;
		if (a[1].type != IMAP_ARG_LIST || !list_return(j, a[1].list)) {
			buf_free(&rb);
			goto bad;
		}
		a += 2;
	}
	if (a->type != IMAP_ARG_EOL) {
		buf_free(&rb);
		goto bad;
	}
	/* RFC 9051 6.3.9: LIST "" "" asks for the delimiter and the root of
	 * the reference ("" without one) */
	if (!extended && j->n_patterns == 1 && j->patterns[0][rlen > 0 ? rb.len : 0] == '\0' &&
	    strlen(j->patterns[0]) == rb.len) {
		const char *sep = rb.len > 0 ? memchr(rb.data, IMAP_HIER_SEP, rb.len) : NULL;
		j->root = xstrndup(rb.data != NULL ? rb.data : "",
				   sep != NULL ? (size_t)(sep - rb.data) + 1 : 0);
	}
	buf_free(&rb);
	size_t max = (size_t)s->srv->cfg->imap_max_mailbox_name, total = 0;
	for (size_t i = 0; i < j->n_patterns; i++)
		total += pattern_normalize(j->patterns[i], max);
	if (total > LIST_PATTERN_BUDGET * (max + 1)) {
		/* RFC 5530 LIMIT: bounded work for a worker */
		imap_tagged(s, "NO", "LIMIT", "Too many or too long patterns");
		list_job_free(j);
		return;
	}
	/* RFC 7162 3.1: STATUS HIGHESTMODSEQ enables CONDSTORE */
	if (j->ret_status && (j->status.bits & ST_HIGHESTMODSEQ))
		imap_enable_condstore(s);
	s->base.busy++;
	session_park(&s->base);
	store_read(s->srv->st, s->srv->workers, list_read, list_done, j);
	return;
bad:
	imap_tagged(s, "BAD", NULL,
		    j->lsub ? "Syntax: LSUB reference mailbox"
			    : "Syntax: LIST [(options)] reference mailbox [RETURN (options)]");
	list_job_free(j);
}
