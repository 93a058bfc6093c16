/* The 8BITMIME downgrade (RFC 6152 3, RFC 1652): a message with 8-bit
 * content for a next hop that did not offer 8BITMIME is converted to 7 bits
 * on the fly, as the SMTP client sends it, never held whole in memory.
 *
 * Which parts: with the store's MIME cache (mime.h), every leaf part whose
 * Content-Transfer-Encoding is 7bit, 8bit or binary (a part labelled 7bit
 * may hold 8-bit octets all the same, and the cache does not tell which
 * does; quoted-printable of 7-bit text is nearly the identity). text/ *
 * (and non-text 7bit) parts become quoted-printable, other 8bit and every
 * binary part base64, the Content-Transfer-Encoding field replaced. A
 * message that is not MIME (no MIME-Version at the top, or no cache) is one
 * text part: MIME-Version: 1.0 is added, Content-Type: text/plain;
 * charset=unknown-8bit (RFC 1428) when it has none, and its body goes
 * quoted-printable. (Postfix sends such a message as it is; the issue asks
 * that 8-bit content never go raw, and RFC 1428 names this conversion.)
 * Not converted: 8-bit octets in header fields (SMTPUTF8's business) and in
 * multipart preambles and epilogues; the "8bit" label of a multipart or
 * message/rfc822 container is left as it is.
 *
 * Pure and streaming: bytes go in in order, from offset 0, in chunks of any
 * size (the result does not depend on the chunking); output is appended to
 * a struct buf. State is bounded: one part header at most MIME_DG_HDR_MAX
 * octets is held (a longer one is an error: the message cannot be
 * converted, RFC 3463 5.6.3), plus a few octets of encoder state. */
#ifndef POSTERN_MIME_DOWNGRADE_H
#define POSTERN_MIME_DOWNGRADE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"

#define MIME_DG_HDR_MAX (256 * 1024)

struct mime_dg_part;

struct mime_dg {
	/* private */
	struct mime_dg_part *parts;
	size_t n_parts, cur;
	uint64_t pos;   /* offset of the next input octet */
	struct buf hdr; /* the header of the current part, held to rewrite it */
	bool failed;
	bool hdr_done; /* the current part's header was written */
	/* the encoder of the current body */
	uint8_t mode; /* 0 none, 1 quoted-printable, 2 base64 */
	uint8_t col;  /* characters on the current output line */
	char ws;      /* QP: a held space or tab (0: none) */
	bool cr;      /* QP: a held CR */
	uint8_t nb;   /* base64: octets held in b3 */
	unsigned char b3[3];
};

/* cache/cache_len: the message's MIME cache, or NULL (then, as when the
 * cache does not open, the message is treated as one non-MIME part). */
void mime_dg_init(struct mime_dg *d, const void *cache, size_t cache_len);
/* The next n octets of the message; the converted bytes are appended to out. */
void mime_dg_feed(struct mime_dg *d, const char *p, size_t n, struct buf *out);
/* The end of the message: flushes what is held. */
void mime_dg_finish(struct mime_dg *d, struct buf *out);
/* true once a part could not be converted (a header over MIME_DG_HDR_MAX). */
bool mime_dg_failed(const struct mime_dg *d);
void mime_dg_free(struct mime_dg *d);

#endif
