/* Helpers shared by the IMAP unit tests (tests/unit/imap_ext, imap_parse,
 * imap_sort): one command line through the real reader and parser.
 *
 * Include it after ../test.h. Every function is static inline: a test binary
 * compiles only what it calls. */
#ifndef TESTS_UNIT_IMAP_FIXTURE_H
#define TESTS_UNIT_IMAP_FIXTURE_H

#include "core/buf.h"
#include "imap/parse.h"

/* One command line (no literals; CRLF added) through imap_reader_feed and
 * imap_parse_command with the reader's default limits. Returns what
 * imap_parse_command returns (*a as it leaves it: imap_args_free), or -2
 * when the reader did not yield a whole command. */
static inline int parse_line(const char *line, struct imap_args *a, const char **err)
{
	struct imap_reader r;
	struct buf in = BUF_INIT;
	imap_reader_init(&r);
	buf_appends(&in, line);
	buf_appends(&in, "\r\n");
	enum imap_read_result res = imap_reader_feed(&r, &in);
	int ret = -2;
	if (res == IMAP_READ_COMMAND)
		ret = imap_parse_command(&r, a, err);
	imap_reader_free(&r);
	buf_free(&in);
	return ret;
}

#endif
