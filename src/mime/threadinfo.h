/* What THREAD (RFC 5256 3, 4) needs of a message, taken from its header
 * once (at delivery or APPEND, into the MIME cache: mime.h) so that a THREAD
 * command reads no message file.
 *
 * mime_thread_build: appends the thread section of the message msg (its
 * header: the fields up to the first blank line) to out:
 *   u8 flags (THI_DATE: the Date field parsed, THI_MSGID: a valid
 *   Message-ID, THI_REPLY: the base subject lost a re:/fwd:, RFC 5256 2.1),
 *   i64 the Date field's UTC instant (RFC 5256 2.2; 0 without THI_DATE),
 *   u32 the number of references,
 *   then NUL-terminated strings: the casemap key (RFC 5051) of the base
 *   subject of the first Subject field, the Message-ID's msg-id (with
 *   THI_MSGID), the references: the msg-ids of the first References field
 *   (its last MIME_THREAD_MAX_REFS), or when it has none the first msg-id of
 *   the first In-Reply-To field (RFC 5256 4 (1)(A)(B)).
 * A msg-id is its content between "<" and ">" without white space, cut at
 * a NUL (strings compare with strcmp). Little-endian numbers.
 *
 * mime_thread_open: true with *t pointing into [p, p + n) if that is a well
 * formed section (every string inside it). Pure; fuzzed with the cache. */
#ifndef POSTERN_MIME_THREADINFO_H
#define POSTERN_MIME_THREADINFO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/buf.h"

#define MIME_THREAD_MAX_REFS 256

enum { THI_DATE = 1, THI_MSGID = 2, THI_REPLY = 4 };

struct mime_thread {
	uint8_t flags;
	time_t date;
	uint32_t n_refs;
	const char *subj;  /* the casemap key of the base subject */
	const char *msgid; /* NULL without THI_MSGID */
	const char *refs;  /* the first of n_refs consecutive strings */
};

void mime_thread_build(const char *msg, size_t len, struct buf *out);
bool mime_thread_open(const void *p, size_t n, struct mime_thread *t);
/* The string after s (s one of the strings of a section). */
static inline const char *mime_thread_next(const char *s)
{
	while (*s)
		s++;
	return s + 1;
}

#endif
