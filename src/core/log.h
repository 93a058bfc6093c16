/* Logging: one line per event to stderr (or a file), "ts level module: text".
 * Thread-safe (each line is written with one write()). */
#ifndef POSTERN_CORE_LOG_H
#define POSTERN_CORE_LOG_H
#include "core/xmalloc.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERR };

void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error"; -1 if unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...) PRINTF_LIKE(2, 3);

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
