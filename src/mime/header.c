/* RFC 5322 header helpers. */
#include "mime/header.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

/* RFC 5322 2.2: field-name ":"; RFC 5322 4.5.8 (obsolete syntax) allows WSP
 * before the colon, which we still have to recognise on input. */
bool header_is(const char *line, size_t len, const char *name)
{
	size_t nlen = strlen(name), i;

	if (nlen == 0 || len < nlen || strncasecmp(line, name, nlen) != 0)
		return false;
	for (i = nlen; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	return i < len && line[i] == ':';
}

/* RFC 5322 3.3 day-name and month-name: fixed English names, never the
 * locale's (strftime %a/%b would follow LC_TIME). */
static const char header_days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char header_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* RFC 5322 3.3: date-time = day-name "," day month year time zone, with the
 * zone as +hhmm / -hhmm from tm_gmtoff (RFC 5322 3.3 wants the local offset). */
void header_date(time_t t, char *out, size_t outsz)
{
	struct tm tm;
	long off, abs_min;

	if (outsz == 0)
		return;
	if (localtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
	    tm.tm_mon > 11) {
		/* Only for times no real clock gives; keep the output valid. */
		snprintf(out, outsz, "Thu, 1 Jan 1970 00:00:00 +0000");
		return;
	}
	off = tm.tm_gmtoff;
	abs_min = labs(off) / 60;
	snprintf(out, outsz, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", header_days[tm.tm_wday],
	         tm.tm_mday, header_months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	         tm.tm_sec, off < 0 ? '-' : '+', abs_min / 60, abs_min % 60);
}
