/* Subjects and collation for SORT and THREAD (issue 9).
 *
 * mime_base_subject: RFC 5256 2.1, the base subject of a Subject field's
 * value (raw: unfolded or not, RFC 2047 words decoded here to UTF-8, then
 * whitespace runs to one space, then the subj-trailer / subj-leader /
 * subj-blob / "[fwd:" ... "]" removal loop of 2.1 steps 2-6). xmalloc'd;
 * "" for an empty or missing subject. *is_reply_r (may be NULL) is set when
 * the 2.1 rules removed a "re:"/"fw:"/"fwd:" leader or "(fwd)" trailer
 * (ORDEREDSUBJECT / REFERENCES step 5 use it).
 *
 * mime_casemap_key: RFC 5051 i;unicode-casemap: a key (xmalloc'd, NUL
 * terminated) such that strcmp of two keys orders and equates the strings
 * as the collation does (titlecase mapping of each character, then
 * decomposition NFKD; here through ICU). RFC 5256 and 5957 sort with it. */
#ifndef POSTERN_MIME_SUBJECT_H
#define POSTERN_MIME_SUBJECT_H
#include <stdbool.h>
#include <stddef.h>

char *mime_base_subject(const char *raw, size_t len, bool *is_reply_r);
char *mime_casemap_key(const char *utf8, size_t len);

#endif
