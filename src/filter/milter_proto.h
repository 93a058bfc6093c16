/* The Sendmail milter protocol's packets and header edits (private to
 * src/filter/milter*.c; pure, no I/O: fuzzed by tests/fuzz/fuzz_milter.c).
 * Constants as libmilter's mfdef.h names them (protocol version 6, as
 * Postfix's milter8 speaks it). */
#ifndef POSTERN_FILTER_MILTER_PROTO_H
#define POSTERN_FILTER_MILTER_PROTO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define MILTER_VERSION 6
#define MILTER_CHUNK 65535 /* SMFIC_BODY data at most (MILTER_CHUNK_SIZE) */

/* commands, MTA to milter */
#define SMFIC_ABORT 'A'
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'

/* replies, milter to MTA */
#define SMFIR_ADDRCPT '+'
#define SMFIR_DELRCPT '-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN '4'
#define SMFIR_ACCEPT 'a'
#define SMFIR_REPLBODY 'b'
#define SMFIR_CONTINUE 'c'
#define SMFIR_DISCARD 'd'
#define SMFIR_CHGFROM 'e'
#define SMFIR_CONN_FAIL 'f'
#define SMFIR_ADDHEADER 'h'
#define SMFIR_INSHEADER 'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER 'm'
#define SMFIR_PROGRESS 'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT 'r'
#define SMFIR_SKIP 's'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'

/* actions the milter may take (SMFIF_*) */
#define SMFIF_ADDHDRS 0x01u
#define SMFIF_CHGBODY 0x02u
#define SMFIF_ADDRCPT 0x04u
#define SMFIF_DELRCPT 0x08u
#define SMFIF_CHGHDRS 0x10u
#define SMFIF_QUARANTINE 0x20u

/* protocol flags (SMFIP_*): steps not sent, replies not awaited */
#define SMFIP_NOCONNECT 0x01u
#define SMFIP_NOHELO 0x02u
#define SMFIP_NOMAIL 0x04u
#define SMFIP_NORCPT 0x08u
#define SMFIP_NOBODY 0x10u
#define SMFIP_NOHDRS 0x20u
#define SMFIP_NOEOH 0x40u
#define SMFIP_NR_HDR 0x80u
#define SMFIP_NOUNKNOWN 0x100u
#define SMFIP_NODATA 0x200u
#define SMFIP_SKIP 0x400u
#define SMFIP_RCPT_REJ 0x800u
#define SMFIP_NR_CONN 0x1000u
#define SMFIP_NR_HELO 0x2000u
#define SMFIP_NR_MAIL 0x4000u
#define SMFIP_NR_RCPT 0x8000u
#define SMFIP_NR_DATA 0x10000u
#define SMFIP_NR_UNKN 0x20000u
#define SMFIP_NR_EOH 0x40000u
#define SMFIP_NR_BODY 0x80000u
#define SMFIP_HDR_LEADSPC 0x100000u

/* What postern offers in SMFIC_OPTNEG: header additions, changes and
 * quarantine; every step may be declined (NO*) or left unanswered (NR_*). */
#define MILTER_OUR_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE)
#define MILTER_OUR_PROTO                                                                            \
	(SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY |             \
	 SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP | \
	 SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA |           \
	 SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC)

/* Appends one packet: 4-byte big-endian length (command byte + data), the
 * command, the data. */
void milter_pkt_put(struct buf *b, char cmd, const void *data, size_t n);
/* One packet at the start of p[0..n): 1 with *cmd_r, *data_r and *len_r
 * (into p) and *used_r; 0 need more; -1 a length of 0 or above max. */
int milter_pkt_get(const char *p, size_t n, size_t max, char *cmd_r, const char **data_r,
		   size_t *len_r, size_t *used_r);

/* SMFIC_OPTNEG / its reply: three 32-bit big-endian words (a reply may
 * carry macro lists after them, ignored). */
void milter_optneg_put(struct buf *b, uint32_t version, uint32_t actions, uint32_t proto);
int milter_optneg_parse(const char *d, size_t n, uint32_t *version, uint32_t *actions,
			uint32_t *proto);

/* The milter's SMFIC_OPTNEG reply against what we offered: 0 with the
 * actions and protocol flags in force (only what we offered; a version
 * below 6 has no SMFIP_NR_*, SKIP or HDR_LEADSPC, below 4 no SMFIC_DATA);
 * -1 for a version outside 2..6. */
int milter_negotiate(uint32_t version, uint32_t actions, uint32_t proto, uint32_t *actions_r,
		     uint32_t *proto_r);

/* SMFIR_ADDHEADER (with_index false), SMFIR_INSHEADER/CHGHEADER (a 32-bit
 * index first): "name\0value\0". Points into d. 0 or -1 (truncated, no
 * NUL, an empty or invalid field name: RFC 5322 2.2 ftext). */
int milter_hdr_parse(const char *d, size_t n, bool with_index, uint32_t *index,
		     const char **name, const char **value);
/* A value from a milter as it goes into a field after "name: ": the one
 * leading space (SMFIP_HDR_LEADSPC) dropped, line breaks (LF, CRLF, CR)
 * written as CRLF and always followed by white space (so a value can
 * never start a field of its own), other control characters but HTAB
 * dropped. Written to out (reset first). */
void milter_value_clean(const char *v, struct buf *out);

/* SMFIR_REPLYCODE: "xyz[ -]x.y.z text" (lines joined with CRLF for a
 * multi-line reply). 0 with *code (4xx or 5xx), ecode (the enhanced code,
 * or "" — a class that disagrees with code is replaced) and text (one
 * line, control characters dropped, lines joined with a space); -1
 * otherwise. */
int milter_replycode_parse(const char *d, size_t n, int *code, char *ecode, size_t ecap,
			   char *text, size_t tcap);

/* A header field of the message (its raw bytes, continuation lines and the
 * final line break included) as SMFIC_HEADER sends it: name, and the value
 * after the colon with one leading space dropped unless leadspc, line
 * breaks inside as LF (as Sendmail and Postfix send folded fields), the
 * final one dropped, a NUL as a space. -1 when it has no colon. */
int milter_field_split(const char *f, size_t n, bool leadspc, struct buf *name,
		       struct buf *value);

#endif
