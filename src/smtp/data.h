/* Incremental decoder for message content received with DATA (RFC 5321
 * 4.1.1.4, 4.5.2) or BDAT (RFC 3030). Pure: bytes in, message bytes out
 * through a callback; no I/O, no globals.
 *
 * DATA mode: dot-unstuffing; the data ends only at CRLF "." CRLF (the CRLF
 * before the dot belongs to the message). "\n.\n", "\r.\r", "\n.\r\n",
 * "\r\n.\n" ... never end it (SMTP smuggling).
 * BDAT mode: content is passed through unchanged; the caller delimits the
 * chunks and calls smtp_data_finish() after the LAST one.
 *
 * Both modes record, without stopping the stream: a bare CR or bare LF (any
 * CR not followed by LF, any LF not preceded by CR), and a line longer than
 * max_line octets including its CRLF. A CRLF split across two feed calls is
 * handled (state is kept across calls).
 *
 * Header tracking: the decoder notes Message-ID:, Date: and the end of the
 * header section. If insert lines are set, the missing ones are written out
 * just before the blank line ending the header section, before the first
 * line that is not a header field (followed then by a blank line), or at the
 * end if the message has no body. At most one line prefix (sizeof pfx) is
 * held back: the message itself is never buffered. */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_data_mode { SMTP_DATA_DOT, SMTP_DATA_BDAT };

/* Receives decoded message bytes. p is valid only during the call. */
typedef void smtp_data_out_cb(void *arg, const char *p, size_t n);

struct smtp_data {
	/* results, valid at any time */
	bool bare_cr;
	bool bare_lf;
	bool long_line;
	bool saw_msgid;
	bool saw_date;
	bool saw_eoh;       /* the blank line ending the header section */
	bool done;          /* DATA: terminator seen; BDAT: finished */
	uint64_t out_bytes; /* bytes passed to out, insertions included */
	/* private */
	enum smtp_data_mode mode;
	size_t max_line;
	smtp_data_out_cb *out;
	void *arg;
	const char *ins_msgid; /* full header lines with CRLF, or NULL */
	const char *ins_date;
	size_t line_len;       /* raw octets of the current line so far */
	bool bol;              /* raw: at the start of a line (after CRLF) */
	bool cr;               /* raw: previous byte was CR */
	unsigned char dot;     /* DATA: 1 = leading dot dropped, 2 = and a CR held */
	bool in_headers;       /* header section not yet ended */
	bool hcollect;         /* holding the start of a header-section line */
	bool hwsp;             /* WSP seen after the field name */
	unsigned char hprev;   /* previous content byte */
	size_t pfx_len;
	char pfx[80];
};

/* max_line: longest accepted line, CRLF included. */
void smtp_data_init(struct smtp_data *d, enum smtp_data_mode mode, size_t max_line,
		    smtp_data_out_cb *out, void *arg);
/* Header lines to insert when missing ("Message-ID: <x@y>\r\n",
 * "Date: ...\r\n"); either may be NULL. They must stay valid until the end. */
void smtp_data_set_insert(struct smtp_data *d, const char *msgid_line, const char *date_line);
/* Feeds n bytes. DATA mode: returns 1 when the terminating CRLF.CRLF was
 * seen, with *used_r the octets consumed (the rest is pipelined input for
 * the command reader); else 0 with *used_r = n. BDAT mode: always 0, *used_r
 * = n. Must not be called once done. */
int smtp_data_feed(struct smtp_data *d, const char *p, size_t n, size_t *used_r);
/* BDAT mode: the last chunk has been fed. Flushes held bytes, notes a CR at
 * the very end as bare, writes missing header lines. */
void smtp_data_finish(struct smtp_data *d);
/* True if the message must be refused for a bare CR or LF (RFC 5321 2.3.8). */
bool smtp_data_bad_eol(const struct smtp_data *d);

#endif
