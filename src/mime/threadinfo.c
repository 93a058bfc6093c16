/* The thread section of the MIME cache (threadinfo.h): the fields RFC 5256
 * threading needs, from the header, once. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/endian.h"
#include "mime/mime.h"
#include "mime/subject.h"
#include "mime/threadinfo.h"

#define THI_FIXED 13 /* flags, date, count */

/* The next header field of [*pos, e): name and value (unfolded later by
 * whoever reads it; the value runs to the end of its last continuation
 * line). false at the blank line or the end. */
static bool field_next(const char **pos, const char *e, const char **name, size_t *name_len,
		       const char **val, size_t *val_len)
{
	const char *p = *pos;

	while (p < e) {
		const char *ls = p, *colon, *nl, *ve;

		if (*p == '\n' || (*p == '\r' && p + 1 < e && p[1] == '\n'))
			return false;
		nl = memchr(p, '\n', (size_t)(e - p));
		p = nl ? nl + 1 : e;
		while (p < e && (*p == ' ' || *p == '\t')) { /* RFC 5322 2.2.3 */
			nl = memchr(p, '\n', (size_t)(e - p));
			p = nl ? nl + 1 : e;
		}
		if (*ls == ' ' || *ls == '\t')
			continue;
		colon = memchr(ls, ':', (size_t)(p - ls));
		if (colon == NULL || colon == ls)
			continue;
		*name = ls;
		*name_len = (size_t)(colon - ls);
		while (*name_len > 0 && (ls[*name_len - 1] == ' ' || ls[*name_len - 1] == '\t'))
			(*name_len)--;
		ve = p;
		while (ve > colon + 1 && (ve[-1] == '\n' || ve[-1] == '\r'))
			ve--;
		*val = colon + 1;
		*val_len = (size_t)(ve - *val);
		*pos = p;
		return true;
	}
	*pos = p;
	return false;
}

static bool name_is(const char *n, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(n, want, len) == 0;
}

/* The next msg-id "<...>" of a Message-ID, References or In-Reply-To value
 * (RFC 5322 3.6.4), its content without folding white space in out; comments
 * and quoted strings outside the brackets are skipped. false at the end. */
static bool next_msgid(const char **pp, const char *e, struct buf *out)
{
	const char *p = *pp;

	while (p < e) {
		if (*p == '(') {
			int depth = 0;

			for (; p < e; p++) {
				if (*p == '\\' && p + 1 < e)
					p++;
				else if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0)
					break;
			}
			if (p < e)
				p++;
			continue;
		}
		if (*p == '"') {
			for (p++; p < e && *p != '"'; p++)
				if (*p == '\\' && p + 1 < e)
					p++;
			if (p < e)
				p++;
			continue;
		}
		if (*p != '<') {
			p++;
			continue;
		}
		{
			const char *q = p + 1;

			buf_reset(out);
			while (q < e && *q != '>' && *q != '<') {
				if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
					buf_appendc(out, *q);
				q++;
			}
			if (q < e && *q == '>' && out->len > 0) {
				*pp = q + 1;
				return true;
			}
			p = q;
		}
	}
	*pp = p;
	return false;
}

/* a msg-id cut at its first NUL, then the NUL */
static void put_str(struct buf *out, const char *p, size_t n)
{
	const char *z = memchr(p, '\0', n);

	buf_append(out, p, z != NULL ? (size_t)(z - p) : n);
	buf_appendc(out, '\0');
}

void mime_thread_build(const char *msg, size_t len, struct buf *out)
{
	const char *pos = msg, *e = msg + len, *name, *val;
	const char *mid = NULL, *refs = NULL, *irt = NULL, *subj = NULL;
	size_t name_len, val_len, mid_len = 0, refs_len = 0, irt_len = 0, subj_len = 0;
	size_t start = out->len;
	struct buf tmp = BUF_INIT;
	uint32_t n_refs = 0;
	uint8_t flags = 0;
	time_t date = 0;
	int tz;
	bool reply = false;
	char *base, *key;

	while (field_next(&pos, e, &name, &name_len, &val, &val_len)) {
		/* the first of each field counts */
		if (mid == NULL && name_is(name, name_len, "Message-ID")) {
			mid = val;
			mid_len = val_len;
		} else if (refs == NULL && name_is(name, name_len, "References")) {
			refs = val;
			refs_len = val_len;
		} else if (irt == NULL && name_is(name, name_len, "In-Reply-To")) {
			irt = val;
			irt_len = val_len;
		} else if (subj == NULL && name_is(name, name_len, "Subject")) {
			subj = val;
			subj_len = val_len;
		}
	}
	/* RFC 5256 2.2: the Date field (else the caller's INTERNALDATE) */
	if (mime_message_date(msg, (size_t)(pos - msg), &date, &tz))
		flags |= THI_DATE;
	else
		date = 0;
	buf_reserve(out, THI_FIXED + 64);
	out->len += THI_FIXED;
	base = mime_base_subject(subj != NULL ? subj : "", subj_len, &reply);
	key = mime_casemap_key(base, strlen(base));
	put_str(out, key, strlen(key));
	free(key);
	free(base);
	if (reply)
		flags |= THI_REPLY;
	if (mid != NULL) {
		const char *p = mid;

		if (next_msgid(&p, mid + mid_len, &tmp)) {
			flags |= THI_MSGID;
			put_str(out, tmp.data, tmp.len);
		}
	}
	/* RFC 5256 4 (1): the References, or when they give no valid ID, the
	 * first ID of In-Reply-To */
	for (int pass = 0; pass < 2 && n_refs == 0; pass++) {
		const char *p = pass == 0 ? refs : irt, *pe;
		size_t skip = 0;

		if (p == NULL)
			continue;
		pe = p + (pass == 0 ? refs_len : irt_len);
		if (pass == 0) {
			/* keep the last MIME_THREAD_MAX_REFS: the ones before
			 * are counted, never copied (a References field may
			 * hold millions of IDs) */
			const char *q = p;

			while (next_msgid(&q, pe, &tmp))
				skip++;
			skip = skip > MIME_THREAD_MAX_REFS ? skip - MIME_THREAD_MAX_REFS : 0;
		}
		while (next_msgid(&p, pe, &tmp)) {
			if (skip > 0) {
				skip--;
				continue;
			}
			put_str(out, tmp.data, tmp.len);
			n_refs++;
			if (pass == 1)
				break;
		}
	}
	buf_free(&tmp);
	{
		unsigned char *h = (unsigned char *)out->data + start;

		h[0] = flags;
		le64_put(h + 1, (uint64_t)(int64_t)date);
		le32_put(h + 9, n_refs);
	}
}

bool mime_thread_open(const void *p, size_t n, struct mime_thread *t)
{
	const unsigned char *c = p;
	const char *s, *e;
	uint32_t k, need;

	memset(t, 0, sizeof *t);
	if (p == NULL || n < THI_FIXED + 1 || c[0] > (THI_DATE | THI_MSGID | THI_REPLY) ||
	    c[n - 1] != '\0')
		return false;
	t->flags = c[0];
	t->date = (time_t)(int64_t)le64_get(c + 1);
	t->n_refs = le32_get(c + 9);
	if (t->n_refs > MIME_THREAD_MAX_REFS)
		return false;
	/* the strings: subject, msgid?, refs; the last ends the section */
	need = 1 + ((t->flags & THI_MSGID) ? 1 : 0) + t->n_refs;
	s = (const char *)c + THI_FIXED;
	e = (const char *)c + n;
	for (k = 0; k < need; k++) {
		const char *z = memchr(s, '\0', (size_t)(e - s));

		if (z == NULL)
			return false;
		if (k == 0)
			t->subj = s;
		else if (k == 1 && (t->flags & THI_MSGID))
			t->msgid = s;
		else if (t->refs == NULL)
			t->refs = s;
		s = z + 1;
	}
	return s == e;
}
