/* The preview of a message (RFC 8970 IMAP PREVIEW): a short plain-text
 * summary of its content. Pure: no I/O; runs on a worker. */
#ifndef POSTERN_MIME_PREVIEW_H
#define POSTERN_MIME_PREVIEW_H
#include <stddef.h>

#include "core/buf.h"
#include "mime/mime.h"

/* RFC 8970 3.1: at most 256 characters (the SHOULD of 200 is for clients'
 * display: 256 is the hard limit) */
#define MIME_PREVIEW_CHARS 256
/* Appends to out (NUL-terminated) the preview of msg (len octets) with its
 * MIME cache mc: the text of the first text/plain part that is not an
 * attachment, else of the first text/html one reduced to text (tags,
 * comments, <script> and <style> dropped, character references decoded);
 * transfer encoding decoded, converted from its charset to UTF-8 (invalid
 * sequences as U+FFFD); every run of white space and control characters
 * one space, none at the ends; cut after MIME_PREVIEW_CHARS characters
 * (code points), never inside a UTF-8 sequence. Empty when the message has
 * no such text (RFC 8970 3.2: an empty string, not NIL). Only a bounded
 * prefix of a part is read. */
void mime_preview(const char *msg, size_t len, const struct mime_cache *mc, struct buf *out);

#endif
