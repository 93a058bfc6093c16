/* The sort section of the MIME cache (sortinfo.h): SORT's keys, from the
 * ENVELOPE string, once per message. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mime/mime.h"
#include "core/endian.h"
#include "mime/sortinfo.h"
#include "mime/subject.h"

#define MSI_FIXED (1 + 8 + 4 * MIME_SORT_N)

/* ---- the ENVELOPE (RFC 9051 7.5.2), as mime.c writes it ---- */

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

/* Inside a parenthesized list, past its '(': 1 another element follows, 0
 * the list ends here (its ')' is taken), -1 broken (the input ends first). */
static int env_list_next(struct envp *c)
{
	env_sp(c);
	if (c->p >= c->e)
		return -1;
	if (*c->p == ')') {
		c->p++;
		return 0;
	}
	return 1;
}

static int env_skip(struct envp *c, struct buf *tmp, unsigned depth)
{
	env_sp(c);
	if (c->p < c->e && *c->p == '(') {
		int more;

		if (depth > 8)
			return -1;
		c->p++;
		while ((more = env_list_next(c)) > 0)
			if (env_skip(c, tmp, depth + 1) < 0)
				return -1;
		return more;
	}
	return env_nstring(c, tmp) < 0 ? -1 : 0;
}

/* The first address of an address list (RFC 5256 3: "the first ...
 * address"; a group's start, mailbox = the group's name and host NIL,
 * counts, as in Dovecot): name, mailbox, host (have_host false for NIL). */
static int env_first_addr(struct envp *c, struct buf *name, struct buf *mailbox,
			  struct buf *host, bool *have_host, struct buf *tmp)
{
	int more, h;

	buf_reset(name);
	buf_reset(mailbox);
	buf_reset(host);
	*have_host = false;
	env_sp(c);
	if (c->p >= c->e)
		return -1;
	if (*c->p != '(')
		return env_nstring(c, tmp) < 0 ? -1 : 0; /* NIL */
	c->p++;
	more = env_list_next(c);
	if (more <= 0)
		return more;
	/* the first: (name adl mailbox host) */
	if (*c->p != '(')
		return -1;
	c->p++;
	if (env_nstring(c, name) < 0 || env_nstring(c, tmp) < 0 || env_nstring(c, mailbox) < 0)
		return -1;
	h = env_nstring(c, host);
	if (h < 0)
		return -1;
	*have_host = h > 0;
	if (env_list_next(c) != 0)
		return -1;
	/* the others */
	while ((more = env_list_next(c)) > 0)
		if (env_skip(c, tmp, 1) < 0)
			return -1;
	return more;
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

void mime_sort_build(const char *env, size_t env_len, const char *msg, size_t msg_len,
		     struct buf *out)
{
	char *key[MIME_SORT_N] = {NULL};
	struct buf date = BUF_INIT, subj = BUF_INIT, name = BUF_INIT, mbox = BUF_INIT,
		   host = BUF_INIT, tmp = BUF_INIT;
	bool have_host, have_date = false, have_subj = false;
	struct envp c;
	uint8_t flags = 0;
	int64_t when = 0;
	unsigned char fixed[MSI_FIXED];

	c.p = env != NULL ? env : "";
	c.e = c.p + (env != NULL ? env_len : 0);
	env_sp(&c);
	if (c.p < c.e && *c.p == '(') {
		/* date subject from sender reply-to to cc ... (RFC 9051 7.5.2) */
		c.p++;
		have_date = env_nstring(&c, &date) > 0;
		have_subj = env_nstring(&c, &subj) > 0;
		if (env_first_addr(&c, &name, &mbox, &host, &have_host, &tmp) == 0) {
			key[MIME_SORT_FROM] = casemap(mbox.data, mbox.len);
			key[MIME_SORT_DFROM] = display_key(&name, &mbox, &host, have_host);
			if (env_skip(&c, &tmp, 1) == 0 && env_skip(&c, &tmp, 1) == 0 &&
			    env_first_addr(&c, &name, &mbox, &host, &have_host, &tmp) == 0) {
				key[MIME_SORT_TO] = casemap(mbox.data, mbox.len);
				key[MIME_SORT_DTO] = display_key(&name, &mbox, &host, have_host);
				if (env_first_addr(&c, &name, &mbox, &host, &have_host, &tmp) == 0)
					key[MIME_SORT_CC] = casemap(mbox.data, mbox.len);
			}
		}
	}
	if (have_date) {
		/* RFC 5256 2.2: the Date: field (else INTERNALDATE, at SORT) */
		struct buf h = BUF_INIT;
		time_t t;
		int tz;
		buf_appends(&h, "Date: ");
		buf_append(&h, date.data, date.len);
		buf_appends(&h, "\r\n\r\n");
		if (mime_message_date(h.data, h.len, &t, &tz)) {
			flags |= MSI_DATE;
			when = (int64_t)t;
		}
		buf_free(&h);
	}
	/* RFC 5256 3: the base subject (2.1), compared as i;unicode-casemap */
	char *base =
	    mime_base_subject(have_subj ? subj.data : "", have_subj ? subj.len : 0, NULL);
	key[MIME_SORT_SUBJECT] = casemap(base, strlen(base));
	free(base);

	if (msg != NULL)
		flags |= MSI_SENT;
	fixed[0] = flags;
	le64_put(fixed + 1, (uint64_t)when);
	for (int i = 0; i < MIME_SORT_N; i++)
		le32_put(fixed + 9 + 4 * i, key[i] != NULL ? (uint32_t)strlen(key[i]) : 0);
	buf_append(out, (const char *)fixed, sizeof fixed);
	for (int i = 0; i < MIME_SORT_N; i++) {
		if (key[i] != NULL)
			buf_appends(out, key[i]);
		buf_appendc(out, '\0');
		free(key[i]);
	}
	if (msg != NULL) {
		/* the same function over the same octets as SEARCH's reading of
		 * the file (imap/search.c), so both give the same day */
		unsigned char day[4];
		le32_put(day, (uint32_t)mime_message_day(msg, msg_len));
		buf_append(out, (const char *)day, sizeof day);
	}
	buf_free(&date);
	buf_free(&subj);
	buf_free(&name);
	buf_free(&mbox);
	buf_free(&host);
	buf_free(&tmp);
}

bool mime_sort_open(const void *p, size_t n, struct mime_sortinfo *si)
{
	const unsigned char *c = p;
	size_t at = MSI_FIXED;

	memset(si, 0, sizeof *si);
	if (p == NULL || n < MSI_FIXED || (c[0] & ~(MSI_DATE | MSI_SENT)) != 0)
		return false;
	si->flags = c[0];
	si->date = (int64_t)le64_get(c + 1);
	for (int i = 0; i < MIME_SORT_N; i++) {
		uint32_t l = le32_get(c + 9 + 4 * i);
		if (l >= n - at || c[at + l] != '\0' || memchr(c + at, '\0', l) != NULL)
			return false;
		si->key[i] = (const char *)c + at;
		si->len[i] = l;
		at += (size_t)l + 1;
	}
	if (si->flags & MSI_SENT) {
		if (n - at != 4)
			return false;
		si->sent_day = (int32_t)le32_get(c + at);
		return true;
	}
	return at == n;
}
