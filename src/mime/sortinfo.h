/* What SORT (RFC 5256 3, RFC 5957) needs of a message, computed once from
 * its ENVELOPE when the MIME cache is built (mime.h) so that a SORT command
 * neither parses nor collates per message.
 *
 * mime_sort_build: appends the sort section for the ENVELOPE string env
 * (as mime.c writes it, RFC 9051 7.5.2) and the message msg (its Date:
 * field, for SEARCH; NULL: no MSI_SENT) to out:
 *   u8 flags (MSI_DATE: the Date field parsed, RFC 5256 2.2; MSI_SENT: the
 *      sent day follows the keys),
 *   i64 the Date field's UTC instant (0 without MSI_DATE),
 *   u32 x MIME_SORT_N the key lengths,
 *   then the MIME_SORT_N keys, each followed by a NUL: the i;unicode-casemap
 *   keys (RFC 5051) of the base subject (RFC 5256 2.1), of the addr-mailbox
 *   of the first From, To and Cc address (RFC 5256 3), of the display name
 *   of the first From and To address (RFC 5957 3: the name RFC 2047
 *   decoded, else the addr-spec; a group's name for a group). A missing
 *   field's key is "". A key is cut at its first NUL, so memcmp of keys
 *   (the shorter one first on a tie) orders them as strcmp would;
 *   with MSI_SENT, i32 the sent day: mime_message_day of msg (SENTBEFORE,
 *   SENTON, SENTSINCE compare it, RFC 3501 6.4.4; the day in the field's
 *   own zone, which the UTC instant alone cannot give). A section without
 *   it (made before it was added) is still a good one: SEARCH then reads
 *   the message's Date: field from its file.
 * Little-endian numbers.
 *
 * mime_sort_open: true with *si pointing into [p, p + n) if that is a well
 * formed section. Pure; fuzzed with the cache. */
#ifndef POSTERN_MIME_SORTINFO_H
#define POSTERN_MIME_SORTINFO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum {
	MIME_SORT_SUBJECT,
	MIME_SORT_FROM,
	MIME_SORT_TO,
	MIME_SORT_CC,
	MIME_SORT_DFROM,
	MIME_SORT_DTO,
	MIME_SORT_N
};

enum { MSI_DATE = 1, MSI_SENT = 2 };

struct mime_sortinfo {
	uint8_t flags;
	int64_t date;
	int32_t sent_day;             /* with MSI_SENT: days since 1970-01-01 */
	const char *key[MIME_SORT_N]; /* NUL-terminated */
	uint32_t len[MIME_SORT_N];
};

void mime_sort_build(const char *env, size_t env_len, const char *msg, size_t msg_len,
		     struct buf *out);
bool mime_sort_open(const void *p, size_t n, struct mime_sortinfo *si);

#endif
