/* RFC 5322 header helpers. Pure functions, no I/O. */
#ifndef POSTERN_MIME_HEADER_H
#define POSTERN_MIME_HEADER_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* True if line (one header line, starting at its field name) is the field
 * `name` (case-insensitive), i.e. starts with "name" then optional WSP then ':'. */
bool header_is(const char *line, size_t len, const char *name);
/* RFC 5322 3.3 date-time for t in local time: "Mon, 23 Nov 2026 06:52:10 +0000". */
void header_date(time_t t, char *out, size_t outsz);

#endif
