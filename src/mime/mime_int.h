/* Private to src/mime: the RFC 5322 / RFC 2045 lexical helpers shared by the
 * MIME cache builder (mime.c), the IMAP string writers (mime_imap.c) and the
 * text functions (mime_text.c). Pure functions over byte ranges. */
#ifndef POSTERN_MIME_MIME_INT_H
#define POSTERN_MIME_MIME_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* A cursor over [p, e) (RFC 5322 3.2 lexical tokens). comment: when not
 * NULL, receives the text of the last comment skipped. */
struct mime_rp {
	const char *p, *e;
	struct buf *comment;
};

/* One header field of a header block: name [name, name + name_len), value
 * from after the colon and the leading WSP up to the end of its last line
 * (continuation lines included with their CRLF, the final line end not). */
struct mime_field {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};
/* Iterates the fields of the header block [*pos, end): true with the next
 * field in *f, false at the end (or at the blank line). Lines that are not a
 * field (no colon) are skipped. */
bool mime_field_next(const char **pos, const char *end, struct mime_field *f);
bool mime_field_is(const struct mime_field *f, const char *name);

/* RFC 5322 3.2.2 CFWS: 1 more input, 0 at the end, -1 unterminated comment. */
int mime_rp_skip(struct mime_rp *rp);
/* RFC 2045 5.1 token; appends to out; <= 0 as mime_rp_skip, -1 if empty. */
int mime_rp_token(struct mime_rp *rp, struct buf *out);
/* RFC 5322 3.2.4 quoted-string (at '"'); appends the unquoted content. */
int mime_rp_quoted(struct mime_rp *rp, struct buf *out);
int mime_rp_atom(struct mime_rp *rp, struct buf *out);
bool mime_rp_atom_char(char c); /* RFC 5322 atext (8-bit included) */
int mime_rp_dot_atom(struct mime_rp *rp, struct buf *out);
int mime_rp_phrase(struct mime_rp *rp, struct buf *out);
/* RFC 5322 3.4.1 domain at '@': appends the domain (without '@'). */
int mime_rp_domain(struct mime_rp *rp, struct buf *out);

/* IMAP string writers as Dovecot 2.3 writes them (RFC 9051 4.3): a quoted
 * string when it can be one, a literal {N}\r\n... otherwise. A value is
 * taken up to its first NUL (Dovecot keeps header values as C strings). */
void mime_imap_nstring(struct buf *out, const char *p, size_t n);
/* As mime_imap_nstring, line breaks removed (a folded header value). */
void mime_imap_nolf(struct buf *out, const char *p, size_t n, struct buf *tmp);
/* For display (subjects, names): whitespace runs folded to one space and
 * trimmed; a literal when anything had to change. */
void mime_imap_humans(struct buf *out, const char *p, size_t n);
/* The address list [p, p + n) (a From/To/Cc/Bcc value) parsed as for
 * ENVELOPE and written back as Dovecot's message_address_write does
 * ("Name <local@domain>", "local@domain", "group: a@b, c@d;", a comment
 * after an addr-spec as the name, comments inside it dropped); appended to
 * out (encoded words left as they are). For SEARCH FROM/TO/CC/BCC. */
void mime_address_text(const char *p, size_t n, struct buf *out);

/* A part of an open cache (mime.c), kind: MIME_KIND_*. */
enum { MIME_KIND_LEAF, MIME_KIND_MULTIPART, MIME_KIND_MESSAGE };
#define MIME_NO_PART 0xffffffffu
struct mime_cache;
struct mime_part_rec {
	uint64_t hdr_off, hdr_len, body_off, body_len;
	uint32_t lines, first_child, next;
	uint8_t kind, enc;
};
void mime_cache_part(const struct mime_cache *mc, uint32_t i, struct mime_part_rec *r);
/* The parts of msg as mime_cache_build finds them (the same records, in
 * the same order), without building the rest of the cache (ENVELOPE,
 * BODYSTRUCTURE, the thread and sort keys: three quarters of its work):
 * for a reader that only walks the parts. *out: n records (xmalloc'd, at
 * least one slot; free it); returns n (at least 1, the message itself). */
size_t mime_parts_list(const char *msg, size_t len, struct mime_part_rec **out);
/* true if the part header [hdr, hdr + n) says text/ * (or nothing); its
 * charset parameter in charset (empty when none). */
bool mime_text_charset(const char *hdr, size_t n, struct buf *charset);
/* As mime_text_charset; *html_r: the part is text/html (its text is
 * mime_html_text's, html.h: SEARCH and the index read it so). */
bool mime_text_type(const char *hdr, size_t n, struct buf *charset, bool *html_r);

/* ASCII case-insensitive comparison of [p, p + n) with the C string s. */
bool mime_eq(const char *p, size_t n, const char *s);

/* mime_text.c: the case folding of SEARCH (mime_search_*) applied to
 * [in, in + n) into out (replacing its content), invalid UTF-8 sequences
 * becoming U+FFFD: what the full-text index stores (extract.c). */
void mime_search_fold(const char *in, size_t n, struct buf *out);
/* The text of a text leaf as SEARCH BODY reads it, before folding (the
 * matcher and extract.c, so that the index holds what the matcher reads):
 * body [body, body + n), transfer encoding decoded, converted from charset
 * (NULL or empty: UTF-8, not checked here) to UTF-8 in conv, and with html
 * (text/html) reduced to text (html.h) in red. Returns the text (body
 * itself, or in conv or red), its length in *len_r. */
const char *mime_body_text(const char *body, size_t n, const char *charset, bool html,
			   struct buf *conv, struct buf *red, size_t *len_r);

#endif
