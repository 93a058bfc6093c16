/* MIME structure of a stored message, computed once (at delivery or APPEND)
 * and cached in the store, so that a FETCH never re-parses the message.
 *
 * mime_cache_build() parses a whole RFC 5322 message (RFC 2045-2049, 2231,
 * 2047) and writes a compact, self-describing, versioned cache: the IMAP
 * ENVELOPE, BODY and BODYSTRUCTURE strings exactly as a FETCH sends them
 * (RFC 9051 7.5.2 / RFC 3501 7.4.2), and a part table (offsets into the
 * message of each part's header and body, line counts, transfer encoding) for
 * section addressing (RFC 9051 6.4.5). It is tolerant of broken mail (missing
 * boundaries, bad encodings, 8-bit headers, truncated input) and never reads
 * outside [msg, msg + len). Pure: no I/O, no globals; fuzzed.
 *
 * The cache is opaque bytes for the store (a BLOB column). A reader checks it
 * with mime_cache_open() before use; a cache of an older version is rejected
 * (the caller rebuilds it from the message). */
#ifndef POSTERN_MIME_MIME_H
#define POSTERN_MIME_MIME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/buf.h"
#include "mime/sortinfo.h"
#include "mime/threadinfo.h"

/* Messages larger than this are parsed as one opaque text/plain part. */
#define MIME_MAX_MESSAGE ((size_t)1 << 31)
/* Nesting limit (multipart within message/rfc822 within ...): deeper parts
 * are treated as opaque text/plain leaves. */
#define MIME_MAX_DEPTH 32
/* Part-count limit per message; further parts are folded into their parent's
 * last part. */
#define MIME_MAX_PARTS 5000

enum mime_encoding {
	MIME_ENC_7BIT,
	MIME_ENC_8BIT,
	MIME_ENC_BINARY,
	MIME_ENC_QP,
	MIME_ENC_BASE64,
	MIME_ENC_OTHER, /* unknown: BINARY fetch answers [UNKNOWN-CTE] */
};

/* Appends the cache of msg (len octets) to out. Never fails on bad input. */
void mime_cache_build(const char *msg, size_t len, struct buf *out);

/* A view of a cache (points into the caller's bytes; no allocation). */
struct mime_cache {
	const unsigned char *p;
	size_t n;
	/* private to mime.c */
	uint32_t n_parts;
	uint32_t parts_off, envelope_off, envelope_len, body_off, body_len, bs_off, bs_len;
	uint32_t th_off, th_len, so_off, so_len;
	struct mime_thread th;
	struct mime_sortinfo so;
};
/* true if p/n is a cache of the current version, well-formed (every offset
 * inside p/n). */
bool mime_cache_open(struct mime_cache *mc, const void *p, size_t n);

/* The parenthesised IMAP strings (pointers into the cache, not NUL-terminated):
 * ENVELOPE; BODYSTRUCTURE (with extension data); BODY (without). Each is
 * complete IMAP syntax, to be sent verbatim after "ENVELOPE " etc.: a value
 * that cannot be a quoted string (8-bit bytes, CR, LF, many quotes) is
 * already written as a literal {N}\r\n... inside it, as Dovecot 2.3 does;
 * header values are otherwise as in the message, NIL for absent fields. */
void mime_cache_envelope(const struct mime_cache *mc, const char **p, size_t *n);
void mime_cache_bodystructure(const struct mime_cache *mc, const char **p, size_t *n);
void mime_cache_body(const struct mime_cache *mc, const char **p, size_t *n);
/* What THREAD needs of the message (threadinfo.h), checked by
 * mime_cache_open; points into the cache. */
const struct mime_thread *mime_cache_thread(const struct mime_cache *mc);
/* What SORT needs of the message (sortinfo.h), checked by mime_cache_open;
 * points into the cache. */
const struct mime_sortinfo *mime_cache_sort(const struct mime_cache *mc);
/* The bytes of the sort and thread sections in the cache p/n
 * (mime_sort_open and mime_thread_open read them alone; the store keeps
 * them apart for SORT and THREAD: store_cache_keys_fn); false if p/n is not
 * a cache mime_cache_open accepts. */
bool mime_cache_key_sections(const void *p, size_t n, const void **so_r, size_t *so_len_r,
			     const void **th_r, size_t *th_len_r);

/* Section addressing (RFC 9051 6.4.5). path/depth: the part numbers
 * ("1.2.3" = {1,2,3}, depth 3; depth 0 = the whole message). what: */
enum mime_section {
	MIME_SECT_BODY,   /* BODY[path] (path empty: the whole message) */
	MIME_SECT_HEADER, /* BODY[path.HEADER]: the header of the message (path
			   * empty) or of the message/rfc822 part at path,
			   * including the blank line */
	MIME_SECT_TEXT,   /* BODY[path.TEXT]: the body of that message */
	MIME_SECT_MIME,   /* BODY[path.MIME]: the MIME header of part path
			   * (depth > 0), including the blank line */
};
/* Resolves a section to a byte range of the message. The range is checked
 * against the cache only: the caller checks it against the message it has
 * (a cache of another message could point past its end). 0 with *off_r, *len_r
 * and *enc_r (the part's Content-Transfer-Encoding, for BINARY); -1 if the
 * part does not exist (a FETCH then answers an empty string, as Dovecot).
 * Following RFC 9051: a non-multipart message has part 1 (its body); the
 * part of a multipart is its body without the MIME header; HEADER/TEXT of a
 * part that is not message/rfc822 is an error (-1). */
int mime_cache_section(const struct mime_cache *mc, const uint32_t *path, size_t depth,
		       enum mime_section what, uint64_t *off_r, uint64_t *len_r,
		       enum mime_encoding *enc_r);

/* HEADER.FIELDS / HEADER.FIELDS.NOT: appends to out the header fields of hdr
 * (a header block as mime_cache_section(..., MIME_SECT_HEADER) gives it)
 * whose names are (not) among names (case-insensitive), each whole with its
 * continuation lines, in message order, then the blank line (CRLF). */
void mime_header_fields(const char *hdr, size_t n, const char *const *names, size_t n_names,
			bool not, struct buf *out);

/* Content-Transfer-Encoding decoding (BINARY[], SEARCH): appends the decoded
 * bytes of in to out. Tolerant: bad base64 characters are skipped, a broken
 * =XX is kept as is. Returns false only for MIME_ENC_OTHER. */
bool mime_decode(enum mime_encoding enc, const char *in, size_t n, struct buf *out);

/* The quoted-printable decoder (RFC 2045 6.7) behind mime_decode and the
 * IMAP streaming decoder, one encoded byte at a time (any chunking gives the
 * same bytes): "=XX" (either case) decoded, a broken "=X" kept as is; a soft
 * line break is "=" then optional white space (transport padding) then CRLF
 * or LF; white space at the end of an encoded line is dropped (rule 3), as
 * is white space and a lone "=" at the end of the input (a part's last line
 * break belongs to the boundary, RFC 2046 5.1.1); a bare LF line end decodes
 * to CRLF (as Dovecot). At most MIME_QP_HOLD white space characters are
 * held: a longer run is text up to its last MIME_QP_HOLD (never the case in
 * valid input, whose lines are at most 76 characters). */
#define MIME_QP_HOLD 80
#define MIME_QP_OUT_MAX (MIME_QP_HOLD + 4)
struct mime_qp {
	uint8_t state;
	uint8_t n_ws;
	char hex1;
	char ws[MIME_QP_HOLD];
};
/* Zero-initialized state: struct mime_qp q = {0}. mime_qp_step writes to
 * out (room for MIME_QP_OUT_MAX bytes) the decoded bytes that c completes
 * and returns their count; mime_qp_finish those held at the end of the
 * input (and resets the state). */
size_t mime_qp_step(struct mime_qp *q, char c, char *out);
size_t mime_qp_finish(struct mime_qp *q, char *out);

/* RFC 2047 encoded words in a header value (unfolded or not) to UTF-8 in out;
 * charsets converted with iconv; undecodable words kept as they are. */
void mime_decode_words(const char *in, size_t n, struct buf *out);
/* Converts text in charset to UTF-8 (appends to out); false if the charset is
 * unknown (out unchanged). "utf-8", "us-ascii" are copied (invalid sequences
 * replaced by U+FFFD). */
bool mime_to_utf8(const char *charset, const char *in, size_t n, struct buf *out);

/* Text search as IMAP SEARCH needs it (RFC 9051 6.4.4: substring,
 * case-insensitive; here: ASCII case folding plus Unicode simple case folding
 * of Latin, Greek and Cyrillic), on decoded text. needle is UTF-8.
 * mime_search_header: in the value of every header field named field (all
 * fields when field is NULL) of the top-level header, after unfolding and
 * RFC 2047 decoding; an empty needle matches when the field exists.
 * mime_search_body: in the text of every part (transfer encoding decoded,
 * charset converted to UTF-8, text/html reduced to the text a reader sees:
 * html.h), not in headers; text: also in the headers of
 * the message and its parts (SEARCH TEXT). */
bool mime_search_header(const char *msg, size_t len, const struct mime_cache *mc,
			const char *field, const char *needle);
bool mime_search_body(const char *msg, size_t len, const struct mime_cache *mc,
		      const char *needle, bool text);
/* SEARCH FROM/TO/CC/BCC (as Dovecot): in the address list of every field
 * named field, parsed and written back as "Name <local@domain>" (a comment
 * after an address as its name, comments inside it dropped, groups as
 * "name: a@b, c@d;"), then RFC 2047 decoded; an empty needle matches when
 * the field exists. */
bool mime_search_address(const char *msg, size_t len, const struct mime_cache *mc,
			 const char *field, const char *needle);
/* The octets at the start of the message that mime_search_header,
 * mime_search_address and mime_message_date read (its top-level header):
 * those two search functions may be given only them (len = this). 0 if mc
 * has no part. */
uint64_t mime_cache_header_end(const struct mime_cache *mc);

/* APPEND of a literal8 (RFC 3516 4.4, as Dovecot): every leaf part whose
 * Content-Transfer-Encoding is binary and whose body holds a NUL (the one
 * octet a plain literal cannot carry) is rewritten as base64 (the field
 * replaced in place, the body in 76-character lines), so that BODY[] never
 * carries NUL and BINARY[] gives the octets back. true with the converted
 * message appended to out; false (out untouched) if there is no such part. */
bool mime_binary_to_base64(const char *msg, size_t len, struct buf *out);
/* The same, the output given to sink(arg, p, n) in pieces of bounded size
 * (the header and text between converted parts as slices of msg, base64 in
 * chunks of a few KB), so that it can go to a file as it is made: memory is
 * the MIME cache of msg, never a copy of it. Nothing is given to sink when
 * false is returned. (src/mime/binary.c) */
typedef void mime_sink_fn(void *arg, const char *p, size_t n);
bool mime_binary_convert(const char *msg, size_t len, mime_sink_fn *sink, void *arg);
/* BINARY of a message (or of a part with its MIME header in front, RFC 3516
 * 4.2 as Dovecot gives it, URLAUTH=BINARY): every leaf part in base64 or
 * quoted-printable decoded, its Content-Transfer-Encoding fields replaced by
 * "Content-Transfer-Encoding: binary" at the end of its header (keep_cte:
 * the header left as is); the rest copied. Given to sink in pieces; false
 * (nothing given) only if the message could not be parsed. Memory: the
 * MIME cache and one part decoded. */
bool mime_binary_decode(const char *msg, size_t len, bool keep_cte, mime_sink_fn *sink,
			void *arg);

/* The Date: header of the message as a time (for SENTBEFORE/SENTON/
 * SENTSINCE, which compare dates in the header's own zone): true with
 * *t_r = the UTC instant and *tz_r = its offset in seconds; false if absent
 * or unparsable (RFC 5322 3.3, with the obsolete forms of 4.3). */
bool mime_message_date(const char *msg, size_t len, time_t *t_r, int *tz_r);
/* The day SENTBEFORE, SENTON and SENTSINCE compare (RFC 3501 6.4.4: the
 * Date: field's date "disregarding time and timezone", i.e. as written in
 * the field's own zone), in days since 1970-01-01: 0 (1970-01-01) for a
 * message without a readable Date: field (as Dovecot: SENTBEFORE matches
 * it). Kept in the sort section (sortinfo.h: MSI_SENT) so that SEARCH need
 * not read the file; msg NULL counts as no field. */
int32_t mime_message_day(const char *msg, size_t len);

#endif
