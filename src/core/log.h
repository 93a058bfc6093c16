/* Logging: one line per event to stderr (or a file), "ts level module: text".
 * Thread-safe (each line is written with one write()). */
#ifndef POSTERN_CORE_LOG_H
#define POSTERN_CORE_LOG_H
#include "core/xmalloc.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERR };

void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error"; -1 if unknown. */
int log_level_parse(const char *s);
/* Every line is escaped here, in one place, after formatting: a control
 * character (CR, LF, NUL...), DEL or a backslash in the text becomes \xNN
 * (a backslash: \\). So a client-supplied string (a user name, a HELO name,
 * an address, a command) can never start a forged log line that a log
 * watcher (fail2ban) would take for ours, whatever call site logs it.
 * Client-supplied values go last in a line or after the fields a watcher
 * keys on (client=IP before user=...). 8-bit bytes (UTF-8 addresses) are
 * kept as they are. */
void log_msg(enum log_level level, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* The escaping of log_msg: writes at most cap octets of in[0..n) escaped to
 * out (no NUL added; an escape is never cut); returns the octets written. */
size_t log_escape(char *out, size_t cap, const char *in, size_t n);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)

/* Logs and aborts: for broken invariants only. */
void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));
/* Always-on assertion (not compiled out by NDEBUG). */
#define x_assert(e)                                                                                \
	do {                                                                                       \
		if (!(e))                                                                          \
			fatal("assertion failed: %s (%s:%d)", #e, __FILE__, __LINE__);             \
	} while (0)

#endif
