/* SEARCH matching for one message (RFC 9051 6.4.4, RFC 3501 6.4.4 for the
 * rev1 keys NEW/OLD/RECENT, RFC 7162 3.1.5 MODSEQ, RFC 5182 "$"). */
#include "imap/fetch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime/extract.h"

#define SECS_PER_DAY 86400

/* The calendar day (days since 1970-01-01) of instant t in the zone tz
 * (seconds east): RFC 9051 6.4.4 compares dates "disregarding time and
 * timezone", i.e. the date as written in that zone. */
static int32_t day_in_zone(time_t t, int tz)
{
	int64_t local = (int64_t)t + tz;
	int64_t d = local / SECS_PER_DAY;
	if (local % SECS_PER_DAY < 0)
		d--; /* floor for instants before 1970 */
	return (int32_t)d;
}

static bool date_cmp(enum imap_search_kind k, int32_t have, int32_t want)
{
	switch (k) {
	case IMAP_SK_BEFORE:
	case IMAP_SK_SENTBEFORE:
		return have < want;
	case IMAP_SK_ON:
	case IMAP_SK_SENTON:
		return have == want;
	default: /* SINCE, SENTSINCE: on or after */
		return have >= want;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static bool in_saved(uint32_t uid, const uint32_t *saved, size_t n_saved)
{
	return saved && n_saved && bsearch(&uid, saved, n_saved, sizeof(*saved), cmp_u32);
}

/* keywords are compared case-insensitively (RFC 9051 2.3.2: flag names) */
static bool has_keyword(const char *keywords, const char *kw)
{
	size_t kn = strlen(kw);
	for (const char *p = keywords ? keywords : ""; *p;) {
		size_t n = strcspn(p, " ");
		if (n == kn && n > 0 && p[0] != '\\' && strncasecmp(p, kw, n) == 0)
			return true;
		p += n;
		p += strspn(p, " ");
	}
	return false;
}

static bool key_match(const struct imap_search_key *k, const struct imap_msg *m,
		      const uint32_t *saved, size_t n_saved)
{
	switch (k->kind) {
	case IMAP_SK_ALL:
		return true;
	case IMAP_SK_AND:
		for (size_t i = 0; i < k->n_sub; i++)
			if (!key_match(&k->sub[i], m, saved, n_saved))
				return false;
		return true;
	case IMAP_SK_OR:
		for (size_t i = 0; i < k->n_sub; i++)
			if (key_match(&k->sub[i], m, saved, n_saved))
				return true;
		return false;
	case IMAP_SK_NOT:
		return k->n_sub > 0 && !key_match(&k->sub[0], m, saved, n_saved);
	case IMAP_SK_SEQSET:
		/* RFC 5182 2.1: "$" as a sequence set is the saved result,
		 * which holds UIDs */
		if (k->set.dollar)
			return in_saved(m->uid, saved, n_saved);
		return imap_seqset_contains(&k->set, m->seq);
	case IMAP_SK_UIDSET:
		if (k->set.dollar)
			return in_saved(m->uid, saved, n_saved);
		return imap_seqset_contains(&k->set, m->uid);
	case IMAP_SK_FLAG:
		return (m->sysflags & k->flags) == k->flags;
	case IMAP_SK_UNFLAG:
		return (m->sysflags & k->flags) == 0;
	case IMAP_SK_KEYWORD:
		return k->str && has_keyword(m->keywords, k->str);
	case IMAP_SK_UNKEYWORD:
		return !k->str || !has_keyword(m->keywords, k->str);
	case IMAP_SK_NEW: /* RFC 3501 6.4.4: RECENT UNSEEN */
		return (m->sysflags & IMAP_F_RECENT) && !(m->sysflags & IMAP_F_SEEN);
	case IMAP_SK_OLD: /* NOT RECENT */
		return !(m->sysflags & IMAP_F_RECENT);
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
		return date_cmp(k->kind, day_in_zone(m->internaldate, m->internaldate_tz), k->day);
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		/* the Date: field's day in its own zone; 1970-01-01 without a
		 * readable one (mime_message_day); the sort keys keep the same
		 * day, computed by the same function when the cache was built */
		return date_cmp(k->kind,
				m->sent_known ? m->sent_day : mime_message_day(m->msg, m->len),
				k->day);
	case IMAP_SK_LARGER:
		return m->size > k->num;
	case IMAP_SK_SMALLER:
		return m->size < k->num;
	case IMAP_SK_HEADER:
		/* SUBJECT, FROM, TO, CC, BCC are HEADER keys (str2 = the field);
		 * an empty string matches every message with the field */
		if (!m->msg)
			return false;
		if (k->flags & IMAP_SK_F_ADDRESS)
			return mime_search_address(m->msg, m->len, m->mc, k->str2,
						   k->str ? k->str : "");
		return mime_search_header(m->msg, m->len, m->mc, k->str2, k->str ? k->str : "");
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		if (m->body_text != NULL && k->fold != NULL) /* imap_search_text_ready */
			return memmem(m->body_text, m->body_text_len, k->fold, k->fold_len) != NULL;
		if (!m->msg)
			return false;
		return mime_search_body(m->msg, m->len, m->mc, k->str ? k->str : "",
					k->kind == IMAP_SK_TEXT);
	case IMAP_SK_MODSEQ: /* RFC 7162 3.1.5: mod-sequence >= the value */
		return m->modseq >= k->num;
	case IMAP_SK_OLDER: /* RFC 5032: INTERNALDATE older than num seconds */
		return (int64_t)m->internaldate <= (int64_t)time(NULL) - (int64_t)k->num;
	case IMAP_SK_YOUNGER:
		return (int64_t)m->internaldate >= (int64_t)time(NULL) - (int64_t)k->num;
	case IMAP_SK_EMAILID: { /* RFC 8474 6 */
		int64_t id;
		return k->str && imap_emailid_parse(k->str, &id) && id == m->emailid;
	}
	case IMAP_SK_THREADID:
		return false; /* THREADID is NIL for every message (5.2) */
	case IMAP_SK_SAVEDBEFORE: /* RFC 8514 5: the save date's day, in UTC */
		return day_in_zone(m->savedate, 0) < k->day;
	case IMAP_SK_SAVEDON:
		return day_in_zone(m->savedate, 0) == k->day;
	case IMAP_SK_SAVEDSINCE:
		return day_in_zone(m->savedate, 0) >= k->day;
	case IMAP_SK_SAVEDATESUPPORTED:
		return true; /* every mailbox keeps save dates */
	}
	return false;
}

bool imap_emailid_parse(const char *s, int64_t *id_r)
{
	int64_t v = 0;
	if (s[0] != 'E' || s[1] < '1' || s[1] > '9')
		return false;
	for (const char *p = s + 1; *p; p++) {
		if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (*p - '0');
	}
	*id_r = v;
	return true;
}

bool imap_search_match(const struct imap_search *s, const struct imap_msg *m,
		       const uint32_t *saved, size_t n_saved)
{
	return key_match(&s->root, m, saved, n_saved);
}

static bool key_needs_blob(const struct imap_search_key *k)
{
	switch (k->kind) {
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
	case IMAP_SK_HEADER:
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		return true;
	default:
		break;
	}
	for (size_t i = 0; i < k->n_sub; i++)
		if (key_needs_blob(&k->sub[i]))
			return true;
	return false;
}

bool imap_search_needs_blob(const struct imap_search *s)
{
	return key_needs_blob(&s->root);
}

/* 1: k reads the message with SENT* keys only, 0: k does not read it, -1:
 * another key of k reads it */
static int key_sent_only(const struct imap_search_key *k)
{
	int r = 0;

	switch (k->kind) {
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		return 1;
	case IMAP_SK_HEADER:
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		return -1;
	default:
		break;
	}
	for (size_t i = 0; i < k->n_sub; i++) {
		int sub = key_sent_only(&k->sub[i]);
		if (sub < 0)
			return -1;
		r |= sub;
	}
	return r;
}

bool imap_search_sent_only(const struct imap_search *s)
{
	return key_sent_only(&s->root) > 0;
}

/* The matcher (mime_search_body) looks for the needle folded in each text
 * leaf folded; the index's BODY text (mime/extract.h) is those same folded
 * leaves joined by "\n" (a NUL as "\n"), so a needle without either is in
 * the text if and only if it is in one leaf. An empty needle matches any
 * message with a text leaf, which the text cannot tell. */
static bool key_text_ready(struct imap_search_key *k)
{
	switch (k->kind) {
	case IMAP_SK_BODY: {
		struct buf f = BUF_INIT;
		if (k->fold == NULL && k->str != NULL && k->str[0] != '\0' &&
		    mime_extract_needle(k->str, &f) && f.len > 0 &&
		    memchr(f.data, '\n', f.len) == NULL && memchr(f.data, '\0', f.len) == NULL) {
			k->fold = f.data;
			k->fold_len = f.len;
			return true;
		}
		buf_free(&f);
		return k->fold != NULL;
	}
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
	case IMAP_SK_HEADER:
	case IMAP_SK_TEXT:
		return false;
	default:
		break;
	}
	bool ready = true;
	for (size_t i = 0; i < k->n_sub; i++)
		ready &= key_text_ready(&k->sub[i]);
	return ready;
}

bool imap_search_text_ready(struct imap_search *s)
{
	return key_text_ready(&s->root);
}
