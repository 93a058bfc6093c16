/* The text of a message for a full-text index (store/fts.c): the same
 * decoded, case-folded text that SEARCH's matcher (mime_search_header,
 * mime_search_address, mime_search_body) looks into, per search field, so
 * that an index built from it can only narrow a search, never miss a match;
 * the one exception is the signature values (mime_extract_unindexed).
 * Pure: no I/O, no globals. */
#ifndef POSTERN_MIME_EXTRACT_H
#define POSTERN_MIME_EXTRACT_H
#include <stdbool.h>
#include <stddef.h>
#include "core/buf.h"

/* The columns, in this order (store.h's STORE_FTS_* follow it). */
enum {
	MIME_X_SUBJECT, /* the Subject fields of the top-level header, decoded */
	MIME_X_FROM,    /* From, To, Cc, Bcc as SEARCH FROM/TO/CC/BCC read them */
	MIME_X_TO,
	MIME_X_CC,
	MIME_X_BCC,
	MIME_X_HDR,  /* "Name: value" of every field of every part's header
		      * (top level, MIME parts, attached messages: attachment
		      * file names are here), decoded (SEARCH HEADER, TEXT);
		      * signature fields without their base64 values
		      * (mime_extract_unindexed) */
	MIME_X_BODY, /* every text/ * leaf: transfer encoding decoded, charset
		      * converted to UTF-8, text/html reduced to its text
		      * (html.h) (SEARCH BODY, TEXT) */
	MIME_X_N
};

/* The version of the text mime_extract_text gives: bump it with any change
 * that alters the text of some message. The full-text index records it
 * (with a fingerprint of sample texts) and is re-made when it changes
 * (store/fts.c): deleting a body's entries needs the very text they were
 * made from. */
#define MIME_EXTRACT_VERSION 2

/* True for a field whose text the index does not hold whole (name
 * case-insensitive): DKIM-Signature (RFC 6376 3.5), ARC-Seal and
 * ARC-Message-Signature (RFC 8617 4.1.2, 4.1.3) are in MIME_X_HDR without
 * the values of their tags b= and bh= (base64 signatures and body hashes).
 * Random text is what a trigram index stores worst: every trigram of it is
 * a term of its own, and one signature (about 350 characters) cost FTS5
 * more than the rest of a message's text (docs/design.md). So a
 * SEARCH HEADER naming such a field is not narrowed by the index (it is
 * answered by the scan, exactly), and a SEARCH TEXT needle whose every
 * occurrence in a message touches such a value (inside it, or across its
 * edge: "bh=Gqvz") is not found with the index (as with
 * Dovecot's fts_header_excludes; nobody searches for a signature). */
bool mime_extract_unindexed(const char *field);

/* Appends to cols[0..MIME_X_N-1] the text of msg (len octets), case-folded
 * as SEARCH folds (valid UTF-8, values separated by "\n", NUL octets as
 * "\n"). cache/cache_len: the message's MIME cache (mime.h), or NULL/0 (or
 * an outdated one): then it is built here. Never fails. */
void mime_extract_text(const char *msg, size_t len, const void *cache, size_t cache_len,
		       struct buf *cols);

/* A SEARCH needle folded as the index text is, into out: false if the
 * needle is not valid UTF-8 (the index cannot answer it: scan). */
bool mime_extract_needle(const char *needle, struct buf *out);

#endif
