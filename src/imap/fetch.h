/* FETCH responses and SEARCH matching for one message: pure functions over
 * what the store and the MIME cache give (no I/O, no session), so the server
 * runs them on worker threads, a slice of messages per job, and they are
 * unit tested on their own.
 *
 * Output is bounded: a FETCH response is a list of segments, bytes formatted
 * here plus ranges of the message's blob that the server streams from the
 * file as the client reads (a literal larger than IMAP_FETCH_INLINE is never
 * copied into memory). A BINARY[] of an encoded part is a decoded blob range:
 * its size is computed by a decoding pass without holding the output. */
#ifndef POSTERN_IMAP_FETCH_H
#define POSTERN_IMAP_FETCH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "imap/parse.h"
#include "mime/mime.h"

#define IMAP_FETCH_INLINE (64 * 1024)

/* One message as FETCH and SEARCH see it. msg/len: the whole message (the
 * blob mapped read-only) or NULL when the items/keys need no content
 * (imap_fetch.need_blob / imap_search_needs_blob); mc: its MIME cache (the
 * server builds one from msg when the store had none), or NULL when not
 * needed (need_cache). */
struct imap_msg {
	uint32_t seq, uid;
	uint64_t modseq, size;
	time_t internaldate;
	int internaldate_tz;   /* seconds east, as store.h keeps it */
	unsigned sysflags;     /* IMAP_F_*, IMAP_F_RECENT included when recent */
	const char *keywords;  /* space-separated, may be "" */
	const char *msg;
	size_t len;
	const struct mime_cache *mc;
	/* RFC 8474 OBJECTID: the stored body's id (store_msg.message_id, shared
	 * by copies: COPY and MOVE keep the EMAILID, 5.1) */
	int64_t emailid;
	time_t savedate;       /* RFC 8514: when it arrived in this mailbox */
	const char *preview;   /* RFC 8970 (UTF-8), NULL: not available */
	/* SEARCH BODY from the full-text index's text of the body (folded
	 * text leaves, "\n" between them; imap_search_text_ready), or NULL */
	const char *body_text;
	size_t body_text_len;
	/* THREAD's keys (mime/threadinfo.h) from the narrow row, or NULL: then
	 * from mc (imap_search_hooks.thread_keys) */
	const void *thread_keys;
	size_t thread_keys_len;
	/* SENTBEFORE/SENTON/SENTSINCE from the body's sort keys
	 * (sortinfo.h, MSI_SENT: mime_message_day kept when the cache was
	 * built) when sent_known, else from msg */
	bool sent_known;
	int32_t sent_day;
};

/* RFC 8474 objectids: 1*255 of ALPHA / DIGIT / "_" / "-". EMAILID: "E" and
 * messages.id; MAILBOXID: "M" and the mailbox's UIDVALIDITY, which the store
 * hands out from one store-wide counter that never goes back (schema 2:
 * store_uidvalidity_next), so it is unique among all mailboxes, never reused
 * after a DELETE, and kept by RENAME (the mailbox row only changes its
 * name). Both ids are AUTOINCREMENT / monotonic: never reused. */
#define IMAP_EMAILID_FMT "E%lld"
#define IMAP_MAILBOXID_FMT "M%u"
/* true with *id_r if s is an EMAILID of ours. */
bool imap_emailid_parse(const char *s, int64_t *id_r);

enum imap_seg_kind {
	IMAP_SEG_BYTES,   /* [off, off+len) of the response's bytes buffer */
	IMAP_SEG_BLOB,    /* [off, off+len) of the message's blob, as is */
	IMAP_SEG_DECODE,  /* [off, off+len) of the blob decoded with enc, the
			   * decoded output cut to [skip, skip+out_len)
			   * (a partial BINARY[]<skip.out_len>) */
};
struct imap_seg {
	enum imap_seg_kind kind;
	enum mime_encoding enc;
	uint64_t off, len;
	uint64_t skip, out_len;
};
struct imap_fetch_out {
	struct buf bytes;
	struct imap_seg *segs;
	size_t n_segs, cap_segs;
	/* Set when the command must fail as a whole: the text of the tagged
	 * NO ("[UNKNOWN-CTE] ...", static). The response of the message that
	 * caused it is not in bytes/segs (what earlier calls appended stays). */
	const char *error;
};
void imap_fetch_out_reset(struct imap_fetch_out *o); /* keeps memory */
void imap_fetch_out_free(struct imap_fetch_out *o);

struct imap_fetch_opts {
	bool uid;         /* UID FETCH: UID is always included (RFC 9051 6.4.9) */
	bool binary_ok;   /* literal8 allowed in the response (BINARY items) */
	bool utf8;        /* UTF8=ACCEPT/IMAP4rev2: 8-bit header text sent as is */
	bool modseq;      /* CONDSTORE enabled: MODSEQ in every FETCH response */
	const unsigned *set_flags;  /* flags to report instead of m's (after an
				     * implicit \Seen), or NULL */
};
/* Appends "* seq FETCH (...)\r\n" for m to o. */
void imap_fetch_format(const struct imap_fetch *f, const struct imap_fetch_opts *opt,
		       const struct imap_msg *m, struct imap_fetch_out *o);
/* Appends the flag list "(\Seen foo)" of sysflags and keywords. */
void imap_format_flags(struct buf *out, unsigned sysflags, const char *keywords);
/* The IMAP flags string (store form "\\Seen foo") to bits + keywords. */
unsigned imap_flags_from_store(const char *flags, const char **keywords_r);

/* A message's blob read whole on a worker (FETCH, SEARCH). Small blobs are
 * read into a buffer kept from one message to the next; only big ones are
 * mapped: on a multi-threaded process every munmap is a TLB shootdown on
 * each CPU, which cost SEARCH TEXT more than the matching itself. */
struct imap_blob {
	struct buf b;
	void *map;
	size_t maplen;
};
#define IMAP_BLOB_MAP_MIN (1024 * 1024) /* mapped from this size on */
/* Loads the file fd (whole): 0 with *p_r / *len_r (valid until the next
 * imap_blob_load or imap_blob_free of bl), -1 with errno (nothing loaded). */
int imap_blob_load(struct imap_blob *bl, int fd, const char **p_r, size_t *len_r);
void imap_blob_free(struct imap_blob *bl);

/* SEARCH: true if m matches s. saved: the SEARCHRES result as sorted UIDs
 * (for "$"), or NULL. Dates compare in the zone of the INTERNALDATE
 * (BEFORE/ON/SINCE) or of the Date: header (SENT*), as RFC 9051 says; a
 * message without a readable Date: is dated 1970-01-01 (as Dovecot).
 * Sequence and UID sets must be resolved (imap_seqset_resolve) first.
 * imap_search_needs_blob: true if a key reads the message (HEADER and its
 * shortcuts, BODY, TEXT, SENT*); m->msg may be NULL otherwise. */
bool imap_search_needs_blob(const struct imap_search *s);
/* true if imap_search_needs_blob is and every key that reads the message
 * is SENTBEFORE, SENTON or SENTSINCE: the body's sort keys can answer them
 * (imap_msg.sent_known) without the message. */
bool imap_search_sent_only(const struct imap_search *s);
/* true if every key that reads the message is a BODY key whose needle the
 * full-text index's BODY text answers exactly as the matcher would (not
 * empty, valid UTF-8, no line feed or NUL after folding: the text joins
 * the message's text parts with "\n"); their folded needles are set
 * (imap_search_key.fold). m->body_text may then stand for the message. */
bool imap_search_text_ready(struct imap_search *s);
bool imap_search_match(const struct imap_search *s, const struct imap_msg *m,
		       const uint32_t *saved, size_t n_saved);

/* Streaming Content-Transfer-Encoding decoder for IMAP_SEG_DECODE segments:
 * the server feeds the blob range [seg.off, seg.off + seg.len) in chunks of
 * any size and gets exactly the bytes FETCH announced (decoded, then cut to
 * [skip, skip + out_len)). imap_fetch_format computes the sizes with this
 * decoder, so both agree. base64: characters outside the alphabet are
 * skipped, "=" ends a quantum; quoted-printable: mime_qp_step (RFC 2045
 * 6.7: soft line breaks with their transport padding removed, trailing
 * white space of a line dropped, a bare LF line end made CRLF, a broken
 * "=XX" kept as is), so the bytes are mime_decode's. Other encodings are
 * copied.
 * No allocation. */
struct imap_decoder {
	enum mime_encoding enc;
	uint64_t skip, out_len; /* the cut */
	uint64_t pos;           /* decoded bytes produced so far (before the cut) */
	/* private */
	uint32_t acc;
	int bits;
	struct mime_qp qp;
};
void imap_decoder_init(struct imap_decoder *d, enum mime_encoding enc, uint64_t skip,
		       uint64_t out_len);
/* Appends to out the part of the cut that in/n completes. */
void imap_decoder_feed(struct imap_decoder *d, const char *in, size_t n, struct buf *out);
/* End of the input: flushes what is held (a trailing "=", white space). */
void imap_decoder_finish(struct imap_decoder *d, struct buf *out);
/* true once the whole cut was produced (the rest of the input can be
 * skipped). */
bool imap_decoder_done(const struct imap_decoder *d);

#endif
