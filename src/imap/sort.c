/* SORT and UID SORT (RFC 5256 3), SORT=DISPLAY (RFC 5957), ESORT and
 * CONTEXT=SORT (RFC 5267), PARTIAL (RFC 9394).
 *
 * The command runs through the search engine of searchcmd.c (the view read
 * in slices on workers, the search keys matched there); for each match the
 * sort keys are taken from the message's ENVELOPE in its MIME cache
 * (imap_sort_row_fill), the rows are sorted on a worker, and the response
 * is written in pieces while the client reads. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "imap/sort.h"
#include "mime/mime.h"
#include "mime/subject.h"

void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args)
{
	imap_search_cmd(s, args, true);
}

bool imap_sort_needs_cache(const struct imap_search *q)
{
	for (size_t i = 0; i < q->n_sort; i++)
		if (q->sort[i].kind != IMAP_SORT_ARRIVAL && q->sort[i].kind != IMAP_SORT_SIZE)
			return true;
	return false;
}

/* ---- the ENVELOPE of the cache (RFC 9051 7.5.2), as mime.c writes it ---- */

struct envp {
	const char *p, *e;
};

static void env_sp(struct envp *c)
{
	while (c->p < c->e && (*c->p == ' ' || *c->p == '\r' || *c->p == '\n'))
		c->p++;
}

/* One nstring into out (reset first): 1 a string, 0 NIL, -1 broken. */
static int env_nstring(struct envp *c, struct buf *out)
{
	env_sp(c);
	buf_reset(out);
	if (c->p >= c->e)
		return -1;
	if (*c->p == '"') {
		for (c->p++; c->p < c->e && *c->p != '"'; c->p++) {
			if (*c->p == '\\' && c->p + 1 < c->e)
				c->p++;
			buf_appendc(out, *c->p);
		}
		if (c->p >= c->e)
			return -1;
		c->p++;
		return 1;
	}
	if (*c->p == '{') {
		size_t n = 0;
		for (c->p++; c->p < c->e && *c->p >= '0' && *c->p <= '9'; c->p++)
			n = n * 10 + (size_t)(*c->p - '0');
		if (c->e - c->p < 3 || memcmp(c->p, "}\r\n", 3) != 0)
			return -1;
		c->p += 3;
		if ((size_t)(c->e - c->p) < n)
			return -1;
		buf_append(out, c->p, n);
		c->p += n;
		return 1;
	}
	if (c->e - c->p >= 3 && strncasecmp(c->p, "NIL", 3) == 0) {
		c->p += 3;
		return 0;
	}
	return -1;
}

static int env_skip(struct envp *c, struct buf *tmp, unsigned depth)
{
	env_sp(c);
	if (c->p < c->e && *c->p == '(') {
		if (depth > 8)
			return -1;
		for (c->p++;;) {
			env_sp(c);
			if (c->p >= c->e)
				return -1;
			if (*c->p == ')') {
				c->p++;
				return 0;
			}
			if (env_skip(c, tmp, depth + 1) < 0)
				return -1;
		}
	}
	return env_nstring(c, tmp) < 0 ? -1 : 0;
}

/* The first address of an address list (RFC 5256 3: "the first ...
 * address"; a group's start, mailbox = the group's name and host NIL,
 * counts, as in Dovecot): name, mailbox, host (have_host false for NIL). */
static int env_first_addr(struct envp *c, struct buf *name, struct buf *mailbox,
			  struct buf *host, bool *have_host, struct buf *tmp)
{
	bool first = true;

	buf_reset(name);
	buf_reset(mailbox);
	buf_reset(host);
	*have_host = false;
	env_sp(c);
	if (c->p < c->e && *c->p != '(')
		return env_nstring(c, tmp) < 0 ? -1 : 0; /* NIL */
	for (c->p++;;) {
		env_sp(c);
		if (c->p >= c->e)
			return -1;
		if (*c->p == ')') {
			c->p++;
			return 0;
		}
		if (!first) {
			if (env_skip(c, tmp, 1) < 0)
				return -1;
			continue;
		}
		first = false;
		if (*c->p != '(')
			return -1;
		c->p++;
		if (env_nstring(c, name) < 0 || env_nstring(c, tmp) < 0 ||
		    env_nstring(c, mailbox) < 0)
			return -1;
		int h = env_nstring(c, host);
		if (h < 0)
			return -1;
		*have_host = h > 0;
		env_sp(c);
		if (c->p >= c->e || *c->p != ')')
			return -1;
		c->p++;
	}
}

static char *casemap(const char *p, size_t n)
{
	return mime_casemap_key(p != NULL ? p : "", p != NULL ? n : 0);
}

/* RFC 5957 3: the display name (RFC 2047 decoded) of the first address, or
 * its addr-spec when it has none; a group's name for a group. */
static char *display_key(const struct buf *name, const struct buf *mailbox,
			 const struct buf *host, bool have_host)
{
	struct buf b = BUF_INIT;
	char *k;

	if (name->len > 0)
		mime_decode_words(name->data, name->len, &b);
	/* whitespace only is no name */
	size_t i = 0;
	while (i < b.len && (b.data[i] == ' ' || b.data[i] == '\t'))
		i++;
	if (i == b.len) {
		buf_reset(&b);
		buf_append(&b, mailbox->data, mailbox->len);
		if (have_host && host->len > 0) {
			buf_appendc(&b, '@');
			buf_append(&b, host->data, host->len);
		}
	}
	k = casemap(b.data, b.len);
	buf_free(&b);
	return k;
}

void imap_sort_row_fill(const struct imap_search *q, const struct imap_msg *m,
			struct imap_sort_row *r)
{
	bool want[SORTS_N] = {false};
	bool want_date = false;
	struct buf date = BUF_INIT, subj = BUF_INIT, name = BUF_INIT, mbox = BUF_INIT,
		   host = BUF_INIT, tmp = BUF_INIT;
	bool have_host, have_date = false, have_subj = false;
	struct envp c;
	const char *env = NULL;
	size_t env_len = 0;

	memset(r, 0, sizeof *r);
	r->uid = m->uid;
	r->seq = m->seq;
	r->size = m->size;
	r->modseq = m->modseq;
	r->arrival = (int64_t)m->internaldate;
	r->date = r->arrival;
	for (size_t i = 0; i < q->n_sort; i++) {
		switch ((enum imap_sort_kind)q->sort[i].kind) {
		case IMAP_SORT_DATE:
			want_date = true;
			break;
		case IMAP_SORT_SUBJECT:
			want[SORTS_SUBJECT] = true;
			break;
		case IMAP_SORT_FROM:
			want[SORTS_FROM] = true;
			break;
		case IMAP_SORT_TO:
			want[SORTS_TO] = true;
			break;
		case IMAP_SORT_CC:
			want[SORTS_CC] = true;
			break;
		case IMAP_SORT_DISPLAYFROM:
			want[SORTS_DFROM] = true;
			break;
		case IMAP_SORT_DISPLAYTO:
			want[SORTS_DTO] = true;
			break;
		default:
			break;
		}
	}
	if (m->mc != NULL)
		mime_cache_envelope(m->mc, &env, &env_len);
	c.p = env != NULL ? env : "";
	c.e = c.p + (env != NULL ? env_len : 0);
	env_sp(&c);
	if (c.p < c.e && *c.p == '(') {
		/* date subject from sender reply-to to cc ... (RFC 9051 7.5.2) */
		c.p++;
		have_date = env_nstring(&c, &date) > 0;
		have_subj = env_nstring(&c, &subj) > 0;
		if (env_first_addr(&c, &name, &mbox, &host, &have_host, &tmp) == 0) {
			if (want[SORTS_FROM])
				r->str[SORTS_FROM] = casemap(mbox.data, mbox.len);
			if (want[SORTS_DFROM])
				r->str[SORTS_DFROM] = display_key(&name, &mbox, &host, have_host);
			if (env_skip(&c, &tmp, 1) == 0 && env_skip(&c, &tmp, 1) == 0 &&
			    env_first_addr(&c, &name, &mbox, &host, &have_host, &tmp) == 0) {
				if (want[SORTS_TO])
					r->str[SORTS_TO] = casemap(mbox.data, mbox.len);
				if (want[SORTS_DTO])
					r->str[SORTS_DTO] =
					    display_key(&name, &mbox, &host, have_host);
				if (want[SORTS_CC] &&
				    env_first_addr(&c, &name, &mbox, &host, &have_host, &tmp) == 0)
					r->str[SORTS_CC] = casemap(mbox.data, mbox.len);
			}
		}
	}
	if (want_date && have_date) {
		/* RFC 5256 2.2: the Date: field, else INTERNALDATE */
		struct buf h = BUF_INIT;
		time_t t;
		int tz;
		buf_appends(&h, "Date: ");
		buf_append(&h, date.data, date.len);
		buf_appends(&h, "\r\n\r\n");
		if (mime_message_date(h.data, h.len, &t, &tz))
			r->date = (int64_t)t;
		buf_free(&h);
	}
	if (want[SORTS_SUBJECT]) {
		/* RFC 5256 3: the base subject (2.1), compared as i;unicode-casemap */
		char *base = mime_base_subject(have_subj ? subj.data : "", have_subj ? subj.len : 0,
					       NULL);
		r->str[SORTS_SUBJECT] = casemap(base, strlen(base));
		free(base);
	}
	/* a key whose field is missing is the empty string (RFC 5256 3) */
	for (size_t i = 0; i < SORTS_N; i++)
		if (want[i] && r->str[i] == NULL)
			r->str[i] = xstrdup("");
	buf_free(&date);
	buf_free(&subj);
	buf_free(&name);
	buf_free(&mbox);
	buf_free(&host);
	buf_free(&tmp);
}

void imap_sort_row_free(struct imap_sort_row *r)
{
	for (size_t i = 0; i < SORTS_N; i++)
		x_free(&r->str[i]);
}

static int cmp_num(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int row_cmp(const void *a, const void *b, void *arg)
{
	const struct imap_search *q = arg;
	const struct imap_sort_row *x = a, *y = b;
	static const int str_of[] = {
	    [IMAP_SORT_CC] = SORTS_CC,		 [IMAP_SORT_FROM] = SORTS_FROM,
	    [IMAP_SORT_SUBJECT] = SORTS_SUBJECT, [IMAP_SORT_TO] = SORTS_TO,
	    [IMAP_SORT_DISPLAYFROM] = SORTS_DFROM, [IMAP_SORT_DISPLAYTO] = SORTS_DTO,
	};

	for (size_t i = 0; i < q->n_sort; i++) {
		int c;
		switch ((enum imap_sort_kind)q->sort[i].kind) {
		case IMAP_SORT_ARRIVAL:
			c = cmp_num(x->arrival, y->arrival);
			break;
		case IMAP_SORT_DATE:
			c = cmp_num(x->date, y->date);
			break;
		case IMAP_SORT_SIZE:
			c = x->size < y->size ? -1 : x->size > y->size;
			break;
		default: {
			int k = str_of[q->sort[i].kind];
			c = strcmp(x->str[k] != NULL ? x->str[k] : "",
				   y->str[k] != NULL ? y->str[k] : "");
			break;
		}
		}
		if (c != 0)
			return q->sort[i].reverse ? -c : c;
	}
	/* RFC 5256 3: equal keys: in order of their sequence numbers (REVERSE
	 * applies to its criterion only, not to this tie-break) */
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void imap_sort_rows(const struct imap_search *q, struct imap_sort_row *rows, size_t n)
{
	if (n > 1)
		qsort_r(rows, n, sizeof *rows, row_cmp, (void *)q);
}

void imap_sort_format_set(struct buf *out, const uint32_t *v, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		if (i > 0)
			buf_appendc(out, ',');
		if (j > i)
			buf_printf(out, "%u:%u", v[i], v[j]);
		else
			buf_printf(out, "%u", v[i]);
		i = j + 1;
	}
}
