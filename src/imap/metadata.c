/* GETMETADATA and SETMETADATA (RFC 5464): METADATA, METADATA-SERVER.
 *
 * Entries live in the store (store.h, "IMAP METADATA"): a mailbox's, the
 * user's own server entries (mailbox ""), and the server's /shared entries,
 * which the administrator sets (postern metadata) and users only read: a
 * user's SETMETADATA "" /shared/... gets NO [NOPERM] (RFC 5464 3.3 lets a
 * server restrict server annotations; Dovecot keeps "server" entries per
 * user, which would make /shared mean private here). /shared/admin is
 * computed (imap_metadata_admin, else mailto:postmaster@ the first domain).
 * There are no shared mailboxes: a mailbox's /shared entries are kept like
 * its /private ones, for its owner.
 *
 * Unsolicited METADATA responses (4.4, after ENABLE METADATA) are optional
 * (4.1: "MAY") and not sent: ENABLE METADATA enables nothing.
 *
 * GETMETADATA reads on workers: one snapshot lists the entries that match
 * (names and sizes), then the values are read in slices of at most
 * META_SLICE octets, each sent before the next is read and only while the
 * client keeps reading (the output bound): the memory a response takes
 * does not grow with the entries' sizes. SETMETADATA is one committer job:
 * all entries or none (4.3). */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "store/store.h"

#define META_SLICE (256 * 1024) /* most value octets read and sent in one step */
#define META_DEPTH_INF UINT_MAX

/* ---- parsing ---- */

/* An entry argument (astring, 5: entry), checked and lowercased: heap, or
 * NULL after a tagged BAD. */
static char *entry_arg(struct imap_session *s, const struct imap_arg *a, bool root)
{
	const char *p;
	size_t len;

	if (a->type == IMAP_ARG_NIL || !imap_arg_astring(a, &p, &len) ||
	    memchr(p, '\0', len) != NULL) {
		imap_tagged(s, "BAD", NULL, "Invalid entry name");
		return NULL;
	}
	char *name = xstrndup(p, len);
	/* RFC 5464 3.2: invalid entry names get BAD */
	const char *why = store_metadata_name_check(name, root);
	if (why != NULL) {
		imap_tagged(s, "BAD", NULL, "%s", why);
		free(name);
		return NULL;
	}
	return name;
}

/* The mailbox argument: *server_r for "" (server entries), else the name
 * (heap) or NULL after a tagged reply. */
static char *scope_arg(struct imap_session *s, const struct imap_arg *a, bool *server_r)
{
	const char *p;
	size_t len;

	*server_r = false;
	if (imap_arg_astring(a, &p, &len) && a->type != IMAP_ARG_NIL && len == 0) {
		*server_r = true;
		return NULL;
	}
	return imap_mailbox_arg(s, a);
}

/* ---- GETMETADATA (RFC 5464 4.2) ---- */

/* One entry of the response, in order. */
struct meta_item {
	const char *name;   /* points into the job's rows or requested names */
	int64_t owner;      /* the row's user_id (0: server /shared) */
	enum { ITEM_ROW, ITEM_NIL, ITEM_ADMIN } kind;
	struct buf value;   /* ITEM_ROW once read */
	bool gone;          /* the row went away between the snapshots */
};

struct meta_row {
	char *name;
	uint64_t size;
	int64_t owner;
	bool admin;         /* the computed /shared/admin */
	bool taken;         /* already in the response */
};

struct meta_get {
	struct imap_session *s;
	char *user;
	char *mailbox;      /* NULL: server entries */
	char **req;         /* requested entries, lowercase, in order, unique */
	size_t n_req;
	unsigned depth;
	uint64_t maxsize;   /* UINT64_MAX: none */
	char *admin;        /* imap_metadata_admin ("" = default) */
	char *hostname;
	/* the worker's results */
	bool planned, nonexistent;
	int64_t user_id, mailbox_id;
	struct meta_row *rows;
	size_t n_rows, cap_rows;
	int64_t owner_now;  /* rows being listed belong to it */
	char *admin_value;  /* /shared/admin's value, NULL if none */
	struct meta_item *items;
	size_t n_items, cap_items;
	uint64_t longest;   /* METADATA LONGENTRIES */
	size_t next;        /* first item not yet sent */
	size_t read_end;    /* items [next, read_end) are read */
	bool opened;        /* "* METADATA ... (" sent */
};

static void get_free(struct meta_get *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n_req; i++)
		free(j->req[i]);
	free(j->req);
	for (size_t i = 0; i < j->n_rows; i++)
		free(j->rows[i].name);
	free(j->rows);
	for (size_t i = 0; i < j->n_items; i++)
		buf_free(&j->items[i].value);
	free(j->items);
	free(j->admin_value);
	free(j->admin);
	free(j->hostname);
	free(j->user);
	free(j->mailbox);
	free(j);
}

static void row_add(void *arg, const char *name, uint64_t size)
{
	struct meta_get *j = arg;
	if (j->n_rows == j->cap_rows) {
		j->cap_rows = j->cap_rows ? j->cap_rows * 2 : 16;
		j->rows = xrealloc(j->rows, j->cap_rows * sizeof *j->rows);
	}
	j->rows[j->n_rows++] = (struct meta_row){
		.name = xstrdup(name), .size = size, .owner = j->owner_now};
}

static int row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct meta_row *)a)->name, ((const struct meta_row *)b)->name);
}

/* The first row whose name is >= key. */
static size_t row_lower(const struct meta_get *j, const char *key)
{
	size_t lo = 0, hi = j->n_rows;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(j->rows[mid].name, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void item_add(struct meta_get *j, const char *name, int64_t owner, int kind)
{
	if (j->n_items == j->cap_items) {
		j->cap_items = j->cap_items ? j->cap_items * 2 : 16;
		j->items = xrealloc(j->items, j->cap_items * sizeof *j->items);
	}
	j->items[j->n_items++] = (struct meta_item){.name = name, .owner = owner, .kind = kind};
}

/* A row matched: in the response unless MAXSIZE keeps it out (4.2.1). */
static void row_take(struct meta_get *j, struct meta_row *r)
{
	if (r->taken)
		return;
	r->taken = true;
	if (r->size > j->maxsize) {
		if (r->size > j->longest)
			j->longest = r->size;
		return;
	}
	item_add(j, r->name, r->owner, r->admin ? ITEM_ADMIN : ITEM_ROW);
}

/* On the worker: which entries the response holds, in order. */
static int get_plan(struct store_snap *sn, struct meta_get *j, char **err_r)
{
	int r = store_snap_metadata_scope(sn, j->user, j->mailbox, &j->user_id, &j->mailbox_id,
					  err_r);
	if (r == STORE_NONEXISTENT) {
		j->nonexistent = true;
		return 0;
	}
	if (r != STORE_OK)
		return -1;
	j->owner_now = j->user_id;
	if (store_snap_metadata_names(sn, j->user_id, j->mailbox_id, row_add, j, err_r) < 0)
		return -1;
	if (j->mailbox == NULL) {
		/* server entries: the user's own (/private: SETMETADATA "" of
		 * /shared is refused) and the administrator's /shared ones */
		size_t own = j->n_rows;
		j->owner_now = 0;
		if (store_snap_metadata_names(sn, 0, 0, row_add, j, err_r) < 0)
			return -1;
		bool have_admin = false;
		for (size_t i = own; i < j->n_rows; i++)
			if (strcmp(j->rows[i].name, "/shared/admin") == 0)
				have_admin = true;
		/* RFC 5464 3.2.1.1: /shared/admin, a URI for the administrator */
		if (!have_admin) {
			if (j->admin[0] != '\0') {
				j->admin_value = xstrdup(j->admin);
			} else {
				char *dom = NULL;
				int k = store_snap_metadata_domain(sn, j->hostname, &dom, err_r);
				if (k < 0)
					return -1;
				if (k > 0)
					j->admin_value = xasprintf("mailto:postmaster@%s", dom);
				free(dom);
			}
			if (j->admin_value != NULL) {
				row_add(j, "/shared/admin", strlen(j->admin_value));
				j->rows[j->n_rows - 1].admin = true;
			}
		}
	}
	if (j->n_rows > 1)
		qsort(j->rows, j->n_rows, sizeof *j->rows, row_cmp);

	for (size_t q = 0; q < j->n_req; q++) {
		const char *e = j->req[q];
		size_t elen = strlen(e);
		size_t i = row_lower(j, e);
		bool found = false;
		if (i < j->n_rows && strcmp(j->rows[i].name, e) == 0) {
			found = true;
			row_take(j, &j->rows[i]);
		}
		/* 4.2.2: DEPTH 1 adds the children, infinity every descendant:
		 * the names under "e/", one run in name order */
		if (j->depth > 0) {
			char *pre = xasprintf("%s/", e);
			for (i = row_lower(j, pre);
			     i < j->n_rows && strncmp(j->rows[i].name, pre, elen + 1) == 0; i++) {
				if (j->depth == 1 && strchr(j->rows[i].name + elen + 1, '/') != NULL)
					continue;
				found = true;
				row_take(j, &j->rows[i]);
			}
			free(pre);
		}
		/* An entry asked for that does not exist (nor anything below
		 * it within DEPTH) is answered NIL, as Dovecot does: the
		 * response shows it was looked at. */
		if (!found)
			item_add(j, e, 0, ITEM_NIL);
	}
	return 0;
}

/* On the worker: the plan (first time), then the values of the next slice. */
static int get_read(struct store_snap *sn, void *arg, char **err_r)
{
	struct meta_get *j = arg;

	if (!j->planned) {
		j->planned = true;
		if (get_plan(sn, j, err_r) < 0 || j->nonexistent)
			return j->nonexistent ? 0 : -1;
	}
	size_t octets = 0, i = j->next;
	for (; i < j->n_items && (i == j->next || octets < META_SLICE); i++) {
		struct meta_item *it = &j->items[i];
		if (it->kind != ITEM_ROW)
			continue;
		int r = store_snap_metadata_get(sn, it->owner, it->owner == 0 ? 0 : j->mailbox_id,
						it->name, &it->value, err_r);
		if (r < 0)
			return -1;
		it->gone = r == 0; /* deleted since the plan: left out */
		octets += it->value.len;
	}
	j->read_end = i;
	return 0;
}

static void get_next(struct imap_session *s, struct meta_get *j);

static void get_abort(struct imap_session *s)
{
	get_free(s->job);
	s->job = NULL;
}

static void get_drained(struct imap_session *s)
{
	struct meta_get *j = s->job;

	s->job = NULL;
	s->job_abort = NULL;
	s->job_drained = NULL;
	get_next(s, j);
}

static void value_append(struct buf *b, const char *p, size_t len)
{
	/* RFC 5464 5: value = nstring / literal8: octets with NUL only as a
	 * literal8 (RFC 3516 4.2) */
	if (memchr(p, '\0', len) != NULL) {
		buf_printf(b, "~{%zu}\r\n", len);
		buf_append(b, p, len);
	} else {
		imap_append_string(b, p, len);
	}
}

static void get_finish(struct imap_session *s, struct meta_get *j, int result)
{
	if (j->opened)
		imap_send(s, ")\r\n", 3);
	if (result < 0) {
		imap_tagged(s, "NO", "UNAVAILABLE", "GETMETADATA: temporary failure, try again later");
	} else if (j->longest > 0) {
		/* 4.2.1: the biggest value MAXSIZE kept out */
		char code[64];
		snprintf(code, sizeof code, "METADATA LONGENTRIES %" PRIu64, j->longest);
		imap_tagged(s, "OK", code, "GETMETADATA completed");
	} else {
		imap_tagged(s, "OK", NULL, "GETMETADATA completed");
	}
	get_free(j);
	imap_cmd_done(s);
}

static void get_done(void *arg, int result, const char *err)
{
	struct meta_get *j = arg;
	struct imap_session *s = j->s;

	if (!imap_step_done(s)) {
		get_free(j);
		return;
	}
	if (result < 0) {
		log_err("imap getmetadata client=%s user=%s: %s", s->base.ip, j->user,
			err ? err : "store error");
		get_finish(s, j, -1);
		return;
	}
	if (j->nonexistent) {
		/* RFC 5464 3.3: only on a mailbox that exists */
		imap_tagged(s, "NO", "NONEXISTENT", "GETMETADATA: no such mailbox");
		get_free(j);
		imap_cmd_done(s);
		return;
	}
	struct buf b = BUF_INIT;
	for (; j->next < j->read_end; j->next++) {
		struct meta_item *it = &j->items[j->next];
		if (it->kind == ITEM_ROW && it->gone)
			continue;
		if (!j->opened) {
			j->opened = true;
			buf_appends(&b, "* METADATA ");
			if (j->mailbox == NULL)
				buf_appends(&b, "\"\"");
			else
				imap_append_mailbox(s, &b, j->mailbox);
			buf_appends(&b, " (");
		} else {
			buf_appendc(&b, ' ');
		}
		imap_append_astring(&b, it->name, strlen(it->name));
		buf_appendc(&b, ' ');
		if (it->kind == ITEM_NIL)
			buf_appends(&b, "NIL");
		else if (it->kind == ITEM_ADMIN)
			value_append(&b, j->admin_value, strlen(j->admin_value));
		else
			value_append(&b, it->value.data ? it->value.data : "", it->value.len);
		buf_free(&it->value);
	}
	if (b.len > 0)
		imap_send(s, b.data, b.len);
	buf_free(&b);
	if (j->next >= j->n_items) {
		get_finish(s, j, 0);
		return;
	}
	if (!session_output_room(&s->base)) {
		/* the client reads what was sent first (drained) */
		s->job = j;
		s->job_abort = get_abort;
		s->job_drained = get_drained;
		session_output_wait(&s->base);
		return;
	}
	get_next(s, j);
}

static void get_next(struct imap_session *s, struct meta_get *j)
{
	s->base.busy++;
	store_read(s->srv->st, s->srv->workers, get_read, get_done, j);
}

struct req_ref {
	const char *name;
	size_t i;
};

static int ref_cmp(const void *a, const void *b)
{
	const struct req_ref *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c != 0 ? c : x->i < y->i ? -1 : x->i > y->i;
}

/* Requested entries, each once (a repeated one would only repeat it),
 * keeping the client's order: O(n log n) for any number of them. */
static void req_unique(struct meta_get *j)
{
	if (j->n_req < 2)
		return;
	struct req_ref *v = xmalloc(j->n_req * sizeof *v);
	for (size_t i = 0; i < j->n_req; i++)
		v[i] = (struct req_ref){j->req[i], i};
	qsort(v, j->n_req, sizeof *v, ref_cmp);
	/* in each run of one name, the first in request order stays (the
	 * run's first element, which is never freed) */
	const char *kept = v[0].name;
	for (size_t k = 1; k < j->n_req; k++) {
		if (strcmp(v[k].name, kept) == 0) {
			free(j->req[v[k].i]);
			j->req[v[k].i] = NULL;
		} else {
			kept = v[k].name;
		}
	}
	free(v);
	size_t n = 0;
	for (size_t i = 0; i < j->n_req; i++)
		if (j->req[i] != NULL)
			j->req[n++] = j->req[i];
	j->n_req = n;
}

/* GETMETADATA [SP options] SP mailbox SP entries (5). The examples of 4.2.1
 * put the options after the mailbox: both orders are accepted. */
void imap_cmd_getmetadata(struct imap_session *s, const struct imap_arg *args)
{
	const struct imap_arg *opts = NULL, *mbox, *ents;

	if (args[0].type == IMAP_ARG_LIST) {
		opts = args[0].list;
		args++;
	}
	mbox = &args[0];
	if (mbox->type == IMAP_ARG_EOL || args[1].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: GETMETADATA [(options)] mailbox entries");
		return;
	}
	ents = &args[1];
	if (opts == NULL && args[1].type == IMAP_ARG_LIST && args[2].type != IMAP_ARG_EOL) {
		opts = args[1].list;
		ents = &args[2];
	}
	/* entries = entry / "(" entry *(SP entry) ")"; the example of 4.4.1
	 * gives several without parentheses: accepted too */
	if (ents[0].type == IMAP_ARG_LIST && ents[1].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: GETMETADATA [(options)] mailbox entries");
		return;
	}
	struct meta_get *j = xcalloc(1, sizeof *j);
	j->maxsize = UINT64_MAX;
	/* 4.2.1, 4.2.2 */
	for (const struct imap_arg *o = opts; o != NULL && o->type != IMAP_ARG_EOL; o += 2) {
		uint32_t n;
		if (imap_arg_atom_is(o, "MAXSIZE") && imap_arg_number(&o[1], &n)) {
			j->maxsize = n;
		} else if (imap_arg_atom_is(o, "DEPTH") && imap_arg_atom_is(&o[1], "0")) {
			j->depth = 0;
		} else if (imap_arg_atom_is(o, "DEPTH") && imap_arg_atom_is(&o[1], "1")) {
			j->depth = 1;
		} else if (imap_arg_atom_is(o, "DEPTH") && imap_arg_atom_is(&o[1], "INFINITY")) {
			j->depth = META_DEPTH_INF;
		} else {
			imap_tagged(s, "BAD", NULL, "Invalid GETMETADATA option (MAXSIZE n, DEPTH "
				    "0|1|infinity)");
			get_free(j);
			return;
		}
	}
	if (opts != NULL && opts[0].type == IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Empty GETMETADATA options");
		get_free(j);
		return;
	}
	const struct imap_arg *e = ents[0].type == IMAP_ARG_LIST ? ents[0].list : ents;
	size_t n_e = 0;
	while (e[n_e].type != IMAP_ARG_EOL)
		n_e++;
	if (n_e == 0) {
		imap_tagged(s, "BAD", NULL, "GETMETADATA needs an entry");
		get_free(j);
		return;
	}
	j->req = xcalloc(n_e, sizeof *j->req);
	for (size_t i = 0; i < n_e; i++) {
		if ((j->req[i] = entry_arg(s, &e[i], true)) == NULL) {
			j->n_req = i;
			get_free(j);
			return;
		}
		j->n_req = i + 1;
	}
	bool server;
	char *mailbox = scope_arg(s, mbox, &server);
	if (mailbox == NULL && !server) {
		get_free(j);
		return;
	}
	req_unique(j);
	j->s = s;
	j->user = xstrdup(s->user);
	j->mailbox = mailbox;
	j->admin = xstrdup(s->srv->cfg->imap_metadata_admin ? s->srv->cfg->imap_metadata_admin
							      : "");
	j->hostname = xstrdup(s->srv->cfg->hostname ? s->srv->cfg->hostname : "");
	session_park(&s->base);
	get_next(s, j);
}

/* ---- SETMETADATA (RFC 5464 4.3) ---- */

struct meta_set {
	struct imap_session *s;
};

static void set_done(void *arg, int result)
{
	struct meta_set *j = arg;
	struct imap_session *s = j->s;

	free(j);
	if (!imap_step_done(s))
		return;
	switch (result) {
	case STORE_OK:
		imap_tagged(s, "OK", NULL, "SETMETADATA completed");
		break;
	case STORE_LIMIT:
		/* 4.3: the number of entries allowed is reached */
		imap_tagged(s, "NO", "METADATA TOOMANY", "SETMETADATA: too many entries");
		break;
	case STORE_NONEXISTENT:
		imap_tagged(s, "NO", "NONEXISTENT", "SETMETADATA: no such mailbox");
		break;
	default:
		imap_tagged(s, "NO", "UNAVAILABLE", "SETMETADATA: temporary failure, try again later");
		break;
	}
	imap_cmd_done(s);
}

/* SETMETADATA SP mailbox SP entry-values (5) */
void imap_cmd_setmetadata(struct imap_session *s, const struct imap_arg *args)
{
	const struct config *cfg = s->srv->cfg;

	if (args[0].type == IMAP_ARG_EOL || args[1].type != IMAP_ARG_LIST ||
	    args[2].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "Syntax: SETMETADATA mailbox (entry value ...)");
		return;
	}
	const struct imap_arg *l = args[1].list;
	size_t n = 0;
	while (l[n].type != IMAP_ARG_EOL)
		n++;
	if (n == 0 || n % 2 != 0) {
		imap_tagged(s, "BAD", NULL, "Syntax: SETMETADATA mailbox (entry value ...)");
		return;
	}
	n /= 2;
	struct store_metadata_set *v = xcalloc(n, sizeof *v);
	size_t i = 0;
	bool server = false, bad = false;
	uint64_t too_big = 0;
	for (; i < n; i++) {
		char *name = entry_arg(s, &l[2 * i], false);
		if (name == NULL) {
			bad = true;
			break;
		}
		v[i].name = name;
		const struct imap_arg *a = &l[2 * i + 1];
		/* value = nstring / literal8: NIL deletes; no atoms */
		if (a->type == IMAP_ARG_NIL) {
			v[i].value = NULL;
		} else if ((a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL) &&
			   !a->external) {
			v[i].value = a->str != NULL ? a->str : "";
			v[i].len = a->len;
			if (a->len > cfg->imap_metadata_max_size && a->len > too_big)
				too_big = a->len;
		} else {
			imap_tagged(s, "BAD", NULL, "Invalid value for %s (a string, a literal or NIL)",
				    name);
			i++;
			bad = true;
			break;
		}
	}
	char *mailbox = NULL;
	if (!bad) {
		mailbox = scope_arg(s, &args[0], &server);
		bad = mailbox == NULL && !server;
	}
	if (!bad && too_big > 0) {
		/* 4.3: the largest value accepted */
		char code[64];
		snprintf(code, sizeof code, "METADATA MAXSIZE %zu", cfg->imap_metadata_max_size);
		imap_tagged(s, "NO", code, "SETMETADATA: value too large");
		bad = true;
	}
	for (size_t k = 0; !bad && server && k < n; k++) {
		if (strncmp(v[k].name, "/shared", 7) == 0) {
			/* 3.3: server annotations may be restricted: the server's
			 * /shared entries are the administrator's (postern
			 * metadata), /shared/admin always read-only (3.2.1.1) */
			imap_tagged(s, "NO", "NOPERM",
				    "SETMETADATA: server /shared entries are set by the administrator");
			bad = true;
		}
	}
	if (!bad) {
		struct meta_set *j = xcalloc(1, sizeof *j);
		j->s = s;
		s->base.busy++;
		session_park(&s->base);
		store_metadata_set(s->srv->st, s->user, mailbox, v, n,
				   (unsigned)cfg->imap_metadata_max_entries,
				   (unsigned)cfg->imap_metadata_max_user_entries, set_done, j);
	}
	for (size_t k = 0; k < n; k++)
		free((char *)v[k].name);
	free(v);
	free(mailbox);
}
