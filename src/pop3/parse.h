/* POP3 protocol pieces that are pure functions over buffers (no I/O, no
 * globals): command line parsing, numeric arguments, and the multi-line
 * encoder used by RETR and TOP (dot-stuffing, CRLF, TOP's line limit). */
#ifndef POSTERN_POP3_PARSE_H
#define POSTERN_POP3_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"

/* RFC 2449 4: a command line is at most 255 octets, CRLF included. */
#define POP3_MAX_LINE 255
/* RFC 2449 4: keywords are 3 or 4 characters; we accept up to 8 (a longer
 * one is an unknown command, not a syntax error). */
#define POP3_MAX_VERB 8

/* Splits a command line (CRLF already removed) into an upper-cased keyword
 * and its arguments: verb_r gets the keyword (NUL-terminated), *args_r points
 * into line just past the single space after it, or at "" if none.
 * Returns 0, or -1 if the keyword is empty, too long or not alphanumeric. */
int pop3_parse_command(const char *line, char verb_r[POP3_MAX_VERB + 1], const char **args_r);

/* Parses args as between min and max space-separated decimal numbers, each
 * in 0..UINT32_MAX without sign or leading '+', into v. Returns how many were
 * given, or -1 (non-numeric, out of range, too few, too many, stray spaces). */
int pop3_parse_numbers(const char *args, uint32_t *v, int min, int max);

/* Multi-line encoder (RFC 1939 3): lines starting with '.' get another '.',
 * every line ends in CRLF (a bare LF becomes CRLF; the store's blobs already
 * use CRLF), and pop3_dot_end() closes with ".\r\n". Works across any chunk
 * boundary. In TOP mode (RFC 1939 7) it stops after the header, the blank
 * line that ends it, and `lines` body lines. */
struct pop3_dot {
	bool bol;      /* at the start of a line */
	bool cr;       /* the last byte copied was CR */
	bool empty;    /* the current line so far is empty (or only CR) */
	bool top;
	bool in_body;  /* TOP: past the blank line after the header */
	bool done;     /* TOP: limit reached; further input is ignored */
	uint64_t lines_left;
	uint64_t in_bytes;  /* bytes consumed */
};

void pop3_dot_init(struct pop3_dot *d, bool top, uint64_t lines);
/* Encodes in[0..n) onto out. Returns 1 when TOP's limit was reached (the
 * rest of the message is not wanted), else 0 (feed more, or end). */
int pop3_dot_feed(struct pop3_dot *d, const char *in, size_t n, struct buf *out);
/* Ends the response: a CRLF if the message did not end with one, then ".\r\n". */
void pop3_dot_end(struct pop3_dot *d, struct buf *out);

#endif
