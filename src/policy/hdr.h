/* A streaming reader of a message's header section (RFC 5322 2.2, 2.2.3):
 * fed the message as it arrives, in pieces of any size, it hands out each
 * complete header field (its first line and every folded continuation, with
 * their CRLFs, exactly as received), then the body bytes. Pure; owned by
 * src/policy/hdr.c. Used by DKIM, ARC, DMARC (From:) and the
 * Authentication-Results filter, so a message's header is split once per
 * user, the same way.
 *
 * Bounded: the reader holds one field at a time; a field longer than
 * max_field octets is handed out cut to max_field with `truncated` set (its
 * rest is dropped); fields after the first max_fields are handed out with
 * `over_limit` set (a caller that keeps fields keeps no more). A line that
 * is not a field (no colon, or a continuation before any field) is handed
 * out as a malformed field (name_len 0). The header ends at the first empty
 * line (CRLF, or a bare LF); a message without one is all header. */
#ifndef POSTERN_POLICY_HDR_H
#define POSTERN_POLICY_HDR_H
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct hdr_field {
	const char *raw;    /* "Name: value\r\n\tmore\r\n" as received */
	size_t len;
	size_t name_len;    /* octets of the name (before the colon, no trailing WSP); 0: malformed */
	bool truncated;
	bool over_limit;
};
/* field: one complete field. Return false to stop keeping fields (the rest
 * of the header is skipped, the body still reported). */
typedef bool hdr_field_fn(void *arg, const struct hdr_field *f);
/* The body's bytes (after the empty line), in pieces as fed. */
typedef void hdr_body_fn(void *arg, const char *p, size_t n);

struct hdr_reader {
	hdr_field_fn *on_field;
	hdr_body_fn *on_body; /* may be NULL */
	void *arg;
	size_t max_field, max_fields;
	/* private */
	struct buf cur;
	size_t n_fields;
	int state;
	bool in_body, stopped, cur_truncated;
};
void hdr_reader_init(struct hdr_reader *r, size_t max_field, size_t max_fields,
		     hdr_field_fn *on_field, hdr_body_fn *on_body, void *arg);
void hdr_reader_feed(struct hdr_reader *r, const char *p, size_t n);
/* The end of the message: a pending field is handed out. */
void hdr_reader_end(struct hdr_reader *r);
void hdr_reader_free(struct hdr_reader *r);

/* True if f's name is name (ASCII case-insensitive). */
bool hdr_is(const struct hdr_field *f, const char *name);
/* The field's value as received: everything after the colon, folding CRLFs
 * and the final CRLF included; *len_r its length. */
const char *hdr_value(const struct hdr_field *f, size_t *len_r);

#endif
