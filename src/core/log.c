#include "core/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

size_t log_escape(char *out, size_t cap, const char *in, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch >= 0x20 && ch != 0x7f && ch != '\\') {
			if (o + 1 > cap)
				break;
			out[o++] = (char)ch;
			continue;
		}
		/* Never split an escape: a cut line ends before it. */
		if (o + 4 > cap)
			break;
		out[o++] = '\\';
		if (ch == '\\') {
			out[o++] = '\\';
			continue;
		}
		out[o++] = 'x';
		out[o++] = hex[ch >> 4];
		out[o++] = hex[ch & 15];
	}
	return o;
}

static void log_vwrite(enum log_level level, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);
static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char line[4096];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ", (long)tv.tv_usec / 1000,
			      level_names[level]);
	char text[3072];
	int m = vsnprintf(text, sizeof text, fmt, ap);
	if (m < 0)
		m = 0;
	if ((size_t)m >= sizeof text)
		m = (int)sizeof text - 1; /* truncated: keep one line per event */
	n += log_escape(line + n, sizeof line - n - 1, text, (size_t)m);
	line[n++] = '\n';
	/* One write() per line keeps lines from different threads whole. */
	(void)!write(2, line, n);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level < log_threshold)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(LOG_ERR, fmt, ap);
	va_end(ap);
	abort();
}
