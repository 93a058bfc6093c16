/* Typed values: flags (RFC 9051 2.3.2, 9: flag-list) and dates (RFC 9051 9:
 * date, date-time). */
#include <string.h>
#include <strings.h>

#include "imap/parse.h"
#include "imap/parse_int.h"

/* ---- flags ---- */

static const struct {
	const char *name; /* canonical case, as the responses spell it */
	unsigned bit;
} sys_flags[] = {
    {"\\Seen", IMAP_F_SEEN},       {"\\Answered", IMAP_F_ANSWERED}, {"\\Flagged", IMAP_F_FLAGGED},
    {"\\Deleted", IMAP_F_DELETED}, {"\\Draft", IMAP_F_DRAFT},       {"\\Recent", IMAP_F_RECENT},
};

unsigned imap_flag_bit(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof sys_flags / sizeof sys_flags[0]; i++)
		if (strlen(sys_flags[i].name) == len && strncasecmp(sys_flags[i].name, s, len) == 0)
			return sys_flags[i].bit;
	return 0;
}

const char *imap_flag_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof sys_flags / sizeof sys_flags[0]; i++)
		if (sys_flags[i].bit == bit)
			return sys_flags[i].name;
	return NULL;
}

static bool kw_has(const struct buf *kw, const char *s, size_t len)
{
	size_t i = 0;
	while (i < kw->len) {
		const char *sp = memchr(kw->data + i, ' ', kw->len - i);
		size_t e = sp != NULL ? (size_t)(sp - kw->data) : kw->len;
		/* keywords compare case-insensitively (RFC 9051 2.3.2) */
		if (e - i == len && strncasecmp(kw->data + i, s, len) == 0)
			return true;
		i = e + 1;
	}
	return false;
}

static int one_flag(const struct imap_arg *a, unsigned *sys, struct buf *kw)
{
	/* NIL is an atom here: a keyword named "NIL" (imaptest "nil") */
	if ((a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NIL) || a->len == 0)
		return -1;
	if (a->str[0] == '\\') {
		/* flag-extension is allowed by the grammar, but a server
		 * only accepts the flags it knows; \Recent cannot be set
		 * by a client (RFC 9051 2.3.2, RFC 3501 6.4.6). */
		unsigned bit = imap_flag_bit(a->str, a->len);
		if (bit == 0 || bit == IMAP_F_RECENT)
			return -1;
		*sys |= bit;
		return 0;
	}
	/* flag-keyword = atom */
	for (size_t i = 0; i < a->len; i++)
		if (!imap_is_atom_char((unsigned char)a->str[i]))
			return -1;
	if (!kw_has(kw, a->str, a->len)) {
		if (kw->len > 0)
			buf_appendc(kw, ' ');
		buf_append(kw, a->str, a->len);
	}
	return 0;
}

int imap_parse_flags(const struct imap_arg *a, unsigned *sys_r, struct buf *kw)
{
	*sys_r = 0;
	if (a->type != IMAP_ARG_LIST)
		return one_flag(a, sys_r, kw);
	for (const struct imap_arg *f = a->list; f->type != IMAP_ARG_EOL; f++)
		if (one_flag(f, sys_r, kw) < 0)
			return -1;
	return 0;
}

int imap_parse_flag_args(const struct imap_arg *args, unsigned *sys_r, struct buf *kw)
{
	*sys_r = 0;
	if (args[0].type == IMAP_ARG_EOL)
		return -1;
	if (args[0].type == IMAP_ARG_LIST)
		return args[1].type == IMAP_ARG_EOL ? imap_parse_flags(&args[0], sys_r, kw) : -1;
	for (const struct imap_arg *f = args; f->type != IMAP_ARG_EOL; f++)
		if (one_flag(f, sys_r, kw) < 0)
			return -1;
	return 0;
}

/* ---- dates ---- */

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y_r, unsigned *m_r, unsigned *d_r)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d_r = doy - (153 * mp + 2) / 5 + 1;
	*m_r = mp < 10 ? mp + 3 : mp - 9;
	*y_r = (int)(y + (*m_r <= 2));
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* date-text = date-day "-" date-month "-" date-year (date-day 1*2DIGIT,
 * or date-day-fixed (SP DIGIT) / 2DIGIT in a date-time). Returns the
 * octets used, 0 if invalid. */
static size_t date_text(const char *s, size_t len, bool fixed, int64_t *day_r)
{
	size_t i = 0;
	unsigned d = 0;
	if (fixed && len > 0 && s[0] == ' ')
		i++;
	size_t st = i;
	while (i < len && i - st < 2 && is_digit(s[i]))
		d = d * 10 + (unsigned)(s[i++] - '0');
	if (i == st || i + 9 > len || s[i] != '-' || s[i + 4] != '-')
		return 0;
	unsigned m = 0;
	while (m < 12 && strncasecmp(months[m], s + i + 1, 3) != 0)
		m++;
	if (m == 12)
		return 0;
	i += 5;
	int y = 0;
	for (int k = 0; k < 4; k++, i++) {
		if (!is_digit(s[i]))
			return 0;
		y = y * 10 + (s[i] - '0');
	}
	static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d == 0 || d > mdays[m] || (m == 1 && d == 29 && !leap))
		return 0;
	*day_r = days_from_civil(y, m + 1, d);
	return i;
}

static void unquote(const char **s, size_t *len)
{
	if (*len >= 2 && (*s)[0] == '"' && (*s)[*len - 1] == '"') {
		(*s)++;
		*len -= 2;
	}
}

bool imap_parse_date(const char *s, size_t len, int32_t *day_r)
{
	int64_t day;
	unquote(&s, &len);
	if (date_text(s, len, false, &day) != len || len == 0)
		return false;
	*day_r = (int32_t)day;
	return true;
}

bool imap_parse_datetime(const char *s, size_t len, time_t *t_r, int *tz_r)
{
	int64_t day;
	unquote(&s, &len);
	size_t i = date_text(s, len, true, &day);
	/* SP time SP zone: " hh:mm:ss +hhmm" */
	if (i == 0 || len - i != 15)
		return false;
	const char *p = s + i;
	static const char shape[] = " 00:00:00 +0000";
	for (size_t k = 0; k < 15; k++) {
		if (shape[k] == '0' ? !is_digit(p[k])
		    : k == 10       ? (p[k] != '+' && p[k] != '-')
		                    : p[k] != shape[k])
			return false;
	}
	int hh = (p[1] - '0') * 10 + p[2] - '0', mi = (p[4] - '0') * 10 + p[5] - '0';
	int ss = (p[7] - '0') * 10 + p[8] - '0';
	int zh = (p[11] - '0') * 10 + p[12] - '0', zm = (p[13] - '0') * 10 + p[14] - '0';
	if (hh > 23 || mi > 59 || ss > 60 || zh > 23 || zm > 59)
		return false;
	int tz = zh * 60 + zm;
	if (p[10] == '-')
		tz = -tz;
	*t_r = (time_t)(day * 86400 + hh * 3600 + mi * 60 + ss - (int64_t)tz * 60);
	*tz_r = tz;
	return true;
}

void imap_format_datetime(struct buf *out, time_t t, int tz)
{
	if (tz <= -24 * 60 || tz >= 24 * 60)
		tz = 0;
	int64_t local = (int64_t)t + (int64_t)tz * 60;
	int64_t day = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
	int64_t sec = local - day * 86400;
	int y;
	unsigned m, d;
	civil_from_days(day, &y, &m, &d);
	if (y < 0 || y > 9999) {
		/* outside what date-year can say */
		y = y < 0 ? 0 : 9999;
	}
	int a = tz < 0 ? -tz : tz;
	/* date-day-fixed as two digits, as Dovecot writes it */
	buf_printf(out, "\"%02u-%s-%04d %02d:%02d:%02d %c%02d%02d\"", d, months[m - 1], y,
	           (int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60), tz < 0 ? '-' : '+',
	           a / 60, a % 60);
}
