/* IMAP command input (RFC 9051 / RFC 3501): framing of a command made of
 * lines and literals, the argument tree, and the typed values commands take
 * (sequence sets, flags, dates, mailbox names, FETCH items, SEARCH keys).
 * Pure: no I/O, no globals; unit tested and fuzzed. Output helpers (quoting)
 * are here too, so that what we parse and what we send follow one grammar.
 *
 * Framing. A command is a line that may end in a literal announcement
 * ({N}, {N+} LITERAL+, ~{N} / ~{N+} BINARY literal8); the literal's N octets
 * follow, then the rest of the command (more literals possible) up to CRLF.
 * struct imap_reader assembles one command at a time into r->cmd, with:
 *  - a line limit per line (counted without literals) and a total command
 *    limit (lines plus inline literals);
 *  - a literal limit for literals held inline (every literal but APPEND's
 *    message, which the server streams into a spool: see IMAP_READ_LITERAL);
 *  - synchronising literals ({N}): the caller must send "+ ..." first (or a
 *    tagged NO/BAD to refuse it: the command is then dropped);
 *  - a non-synchronising literal ({N+}) over the limit cannot be refused
 *    before its bytes arrive: IMAP_READ_FATAL (the server says BYE [TOOBIG]
 *    and closes, RFC 7888 4).
 * Literals are copied into r->cmd inline, so the argument parser sees one
 * buffer: a literal's octets are marked with their offset and length
 * (r->lits), not re-scanned for syntax. */
#ifndef POSTERN_IMAP_PARSE_H
#define POSTERN_IMAP_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/buf.h"

#define IMAP_MAX_DEPTH 16      /* parenthesised list nesting */
#define IMAP_MAX_LITERALS 64   /* literals held inline in one command; the
				* ones the caller streams (APPEND's messages,
				* IMAP_READ_LITERAL) are bounded only by the
				* command's length (max_line, max_command) */

struct imap_lit {
	size_t off, len;  /* in r->cmd: the literal's octets */
	bool binary;      /* ~{N}: literal8 */
	bool external;    /* taken by the caller (IMAP_READ_LITERAL, stream) */
};

enum imap_read_result {
	IMAP_READ_MORE,     /* need more input */
	IMAP_READ_COMMAND,  /* r->cmd holds a whole command (without CRLF) */
	IMAP_READ_CONTINUE, /* a synchronising literal: send "+ OK" (or refuse
			     * with imap_reader_refuse) then feed again */
	IMAP_READ_LITERAL,  /* a literal of r->lit_len octets starts; the command
			     * so far is in r->cmd. The caller either calls
			     * imap_reader_inline() (held in r->cmd, subject to
			     * the literal limit) or takes the octets itself
			     * from its input and then calls
			     * imap_reader_external_done(). Only returned when
			     * r->want_literal_events is set. */
	IMAP_READ_BAD,      /* a line over the limit (consumed up to its LF, and
			     * past the octets of a {N+} it ends with, if
			     * within the literal limits; else FATAL), or
			     * a literal over the limit announced with {N}: the
			     * command is dropped; answer BAD/NO (r->error says
			     * which and why) and go on */
	IMAP_READ_FATAL,    /* {N+} over the limit, or the command limit hit
			     * inside a non-synchronising literal: say BYE and
			     * close (r->error) */
};

struct imap_reader {
	/* limits, set by the caller before the first feed */
	size_t max_line;      /* per line, octets, literals excluded */
	size_t max_command;   /* lines plus inline literals */
	uint64_t max_literal; /* per inline literal */
	bool want_literal_events;
	/* results */
	struct buf cmd;       /* the command assembled so far / complete */
	struct imap_lit *lits; /* n_lits of them (grown as needed) */
	size_t n_lits;
	uint64_t lit_len;     /* IMAP_READ_CONTINUE/LITERAL: announced size */
	bool lit_sync;        /* IMAP_READ_CONTINUE: {N} (not {N+}) */
	bool lit_binary;      /* ~{N} */
	const char *error;    /* IMAP_READ_BAD/FATAL: static text */
	bool error_toobig;    /* ... because of a size: [TOOBIG] */
	/* private */
	int state;
	uint64_t lit_left;
	size_t line_len;
	bool discarding;
	/* added after the contract (set by the caller, like the limits above) */
	uint64_t max_nonsync; /* largest {N+} accepted: IMAP_LITERAL_MINUS_MAX
			       * when only LITERAL- is offered (RFC 7888 3);
			       * imap_reader_init sets UINT64_MAX, i.e. only
			       * max_literal (and max_command) apply */
	/* private */
	size_t lit_start;     /* offset in cmd where the current literal goes */
	bool lit_external_ok; /* LITERAL event pending a decision */
	unsigned char tail_len; /* an over-long line's last octets, to see */
	char tail[23];          /* whether it announced a literal */
	size_t cap_lits;
	size_t n_inline;        /* literals held inline (IMAP_MAX_LITERALS) */
};
#define IMAP_LITERAL_MINUS_MAX 4096 /* RFC 7888 3: LITERAL- */
/* Literal events (want_literal_events), precisely. When a line ends with a
 * literal announcement the reader stops right after the line's LF, before
 * any literal octet, and:
 *  - {N+} / ~{N+} over max_nonsync: IMAP_READ_FATAL (error_toobig);
 *  - otherwise IMAP_READ_LITERAL with lit_len, lit_sync, lit_binary and the
 *    command so far in r->cmd. Nothing has been sent to the client. The
 *    caller decides:
 *    a) imap_reader_inline(r): the next feed applies the inline limits
 *       (max_literal, max_command): over them, a {N} gives IMAP_READ_BAD
 *       (error_toobig; command dropped, literal never read) and a {N+}
 *       IMAP_READ_FATAL; within them, a {N} gives IMAP_READ_CONTINUE (send
 *       "+ ..." then feed again, or imap_reader_refuse), and a {N+} is read
 *       on without any event.
 *    b) stream it: for a {N} (lit_sync) the caller itself sends "+ ..." (or
 *       refuses: tagged NO/BAD and imap_reader_refuse(r), the command is
 *       dropped), then takes exactly lit_len octets from its input without
 *       feeding the reader, then calls imap_reader_external_done(r) and
 *       feeds again (the rest of the command: more literals possible).
 *    c) imap_reader_refuse(r) at once (e.g. a {N} over APPENDLIMIT): the
 *       command is dropped. For a {N+} (whose octets are already on their
 *       way) refusing makes every later feed return IMAP_READ_FATAL
 *       (error_toobig): answer BYE [TOOBIG] or NO [TOOBIG] and close.
 * Without want_literal_events: {N+} over max_nonsync or the inline limits
 * gives IMAP_READ_FATAL; {N} over the inline limits IMAP_READ_BAD; a {N}
 * within them IMAP_READ_CONTINUE; a {N+} within them is read on.
 * Feeding again while an event is pending returns the same event and
 * consumes nothing. */
/* The tag of the command being read (also after IMAP_READ_BAD, so that the
 * answer can be tagged): NULL when r->cmd does not start with a valid tag
 * followed by a space. */
const char *imap_reader_tag(const struct imap_reader *r, size_t *len_r);
void imap_reader_init(struct imap_reader *r);
/* Consumes from in what it uses (at most up to the end of one command). */
enum imap_read_result imap_reader_feed(struct imap_reader *r, struct buf *in);
/* After IMAP_READ_CONTINUE: the caller refused the literal (sent NO/BAD):
 * the command is dropped; the reader expects a new command. */
void imap_reader_refuse(struct imap_reader *r);
/* After IMAP_READ_LITERAL: hold the literal in r->cmd (limit applies). */
void imap_reader_inline(struct imap_reader *r);
/* After IMAP_READ_LITERAL: the caller consumed the literal's octets itself;
 * it is recorded as an external literal (offset = r->cmd.len, length 0 in
 * r->cmd, lit->len = its size... see struct imap_lit) and reading resumes
 * with the rest of the line. */
void imap_reader_external_done(struct imap_reader *r);
/* Ready for the next command (after IMAP_READ_COMMAND was handled). */
void imap_reader_next(struct imap_reader *r);
void imap_reader_free(struct imap_reader *r);

/* ---- the argument tree ---- */
enum imap_arg_type {
	IMAP_ARG_EOL,     /* end of a list / of the command */
	IMAP_ARG_ATOM,    /* also numbers, sequence sets, BODY[...]<...> */
	IMAP_ARG_QUOTED,  /* unescaped */
	IMAP_ARG_LITERAL, /* {N} / {N+}; binary for ~{N} */
	IMAP_ARG_NIL,
	IMAP_ARG_LIST,    /* ( ... ) */
};
struct imap_arg {
	enum imap_arg_type type;
	bool binary;          /* literal8 */
	bool external;        /* a literal the caller streamed (len = its size) */
	const char *str;      /* ATOM/QUOTED/LITERAL: NUL-terminated copy or in
			       * the command buffer; may hold NULs (LITERAL) */
	size_t len;
	struct imap_arg *list; /* LIST: children, ending with IMAP_ARG_EOL */
};
/* Splits a complete command: *tag_r and *name_r (the command name, upper
 * case; for UID commands "UID FETCH" etc.), and the arguments after it as a
 * tree in *args_r (an array ending with IMAP_ARG_EOL). Atoms may contain a
 * bracketed part with spaces and parentheses (BODY[HEADER.FIELDS (A B)]<0.9>
 * is one atom). Memory is owned by *a (imap_args_free). 0, or -1 with
 * *err_r (static text; *tag_r is set when a tag could be read, so the BAD is
 * tagged). */
struct imap_args {
	char *tag;
	char *name;
	struct imap_arg *args;
	/* private */
	void *mem;
};
int imap_parse_command(const struct imap_reader *r, struct imap_args *a, const char **err_r);
void imap_args_free(struct imap_args *a);

/* astring/string/nstring values: true with the bytes (not NUL-safe for a
 * literal with NUL: then false for astring). */
bool imap_arg_astring(const struct imap_arg *a, const char **s_r, size_t *len_r);
bool imap_arg_string(const struct imap_arg *a, const char **s_r, size_t *len_r);
bool imap_arg_atom_is(const struct imap_arg *a, const char *upper); /* case-insensitive */
bool imap_arg_number(const struct imap_arg *a, uint32_t *n_r);   /* nz-number or 0 */
bool imap_arg_number64(const struct imap_arg *a, uint64_t *n_r); /* mod-sequence-value */

/* ---- sequence sets (RFC 9051 9: sequence-set; "$" = SEARCHRES) ---- */
struct imap_range {
	uint32_t lo, hi; /* lo <= hi; UINT32_MAX stands for "*" */
};
struct imap_seqset {
	struct imap_range *v; /* normalised: sorted, merged, after resolving *
			       * by imap_seqset_resolve */
	size_t n;
	bool dollar;          /* "$": the saved search result */
};
#define IMAP_STAR UINT32_MAX
/* Parses s (e.g. "1:3,5,7:*", "$"); at most max_ranges ranges (limit; 0:
 * none). 0 or -1 (*set then empty). */
int imap_seqset_parse(const char *s, size_t len, size_t max_ranges, struct imap_seqset *set);
/* Replaces * by max (the highest sequence number or UID), sorts and merges;
 * "5:*" with max 3 is 3:5 (RFC 9051 6.4.8). With max 0 (empty mailbox) the
 * ranges with * are dropped (the set may become empty: n == 0).
 * The number 4294967295 parses as 4294967294 (UINT32_MAX is "*"). Before
 * resolving, the set is already sorted and merged, * being the largest. */
void imap_seqset_resolve(struct imap_seqset *set, uint32_t max);
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n);
void imap_seqset_free(struct imap_seqset *set);
/* Appends the compact form ("1:3,5") of numbers: each ascending run
 * ("n, n+1, ...") as a:b, in the given order (sorted unique numbers give
 * the shortest form; RFC 5267 3: a SORT result "5,3:4,2,1"). */
void imap_seqset_format(struct buf *out, const uint32_t *v, size_t n);

/* ---- flags ---- */
/* System flags as bits; keywords as atoms. */
enum {
	IMAP_F_SEEN = 1, IMAP_F_ANSWERED = 2, IMAP_F_FLAGGED = 4, IMAP_F_DELETED = 8,
	IMAP_F_DRAFT = 16, IMAP_F_RECENT = 32,
};
/* A flag list "(\Seen foo)" (or a single flag): system flags in *sys_r,
 * keywords appended to kw as a space-separated list (each a valid atom;
 * \Recent is refused, unknown \X refused; duplicates dropped). 0 or -1. */
int imap_parse_flags(const struct imap_arg *a, unsigned *sys_r, struct buf *kw);
/* The same for an argument array up to IMAP_ARG_EOL: either one flag list or
 * flags as separate arguments (STORE's "+FLAGS \Seen \Deleted", RFC 9051
 * 9 store-att-flags); an empty array is -1. */
int imap_parse_flag_args(const struct imap_arg *args, unsigned *sys_r, struct buf *kw);
/* System flag by name (case-insensitive, "\seen"), 0 if none; \Recent
 * included (IMAP_F_RECENT). */
unsigned imap_flag_bit(const char *s, size_t len);
/* Canonical spelling of one IMAP_F_* bit ("\Seen"), NULL if none. */
const char *imap_flag_name(unsigned bit);

/* ---- dates ---- */
/* date (SEARCH: "1-Feb-1994", quoted or not): the day's midnight as a
 * calendar date number (days since 1970-01-01). */
bool imap_parse_date(const char *s, size_t len, int32_t *day_r);
/* date-time (APPEND: "17-Jul-1996 02:44:25 -0700") */
bool imap_parse_datetime(const char *s, size_t len, time_t *t_r, int *tz_r);
/* Appends "dd-Mon-yyyy hh:mm:ss +zzzz" (quoted) for INTERNALDATE. */
void imap_format_datetime(struct buf *out, time_t t, int tz);

/* ---- mailbox names ---- */
/* Hierarchy separator: '/'. Names are stored as UTF-8. A client that did
 * not ENABLE IMAP4rev2 or UTF8=ACCEPT sends and receives modified UTF-7
 * (RFC 3501 5.1.3). */
#define IMAP_HIER_SEP '/'
/* Modified UTF-7 -> UTF-8 (appends to out); false on invalid input. */
bool imap_utf7_decode(const char *s, size_t len, struct buf *out);
/* UTF-8 -> modified UTF-7 (appends); false on invalid UTF-8. */
bool imap_utf7_encode(const char *s, size_t len, struct buf *out);
/* Validates a UTF-8 name (after decoding): not empty, valid UTF-8, no
 * control characters, no empty level ("a//b", leading or trailing '/'), no
 * "%" or "*", at most max_len octets and max_levels levels. "INBOX" in any
 * case is normalised to "INBOX" (also as the first level "inbox/x").
 * Returns NULL if valid (name may be rewritten in place) or a static reason. */
const char *imap_mailbox_check(char *name, size_t max_len, unsigned max_levels);
/* LIST pattern matching with "*" and "%" (RFC 9051 6.3.9), on UTF-8 names;
 * INBOX case-insensitive. */
bool imap_list_match(const char *pattern, const char *name, char sep);

/* ---- FETCH items (RFC 9051 6.4.5) ---- */
enum imap_fetch_kind {
	IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE, IMAP_FETCH_RFC822_SIZE,
	IMAP_FETCH_ENVELOPE, IMAP_FETCH_BODY, IMAP_FETCH_BODYSTRUCTURE, IMAP_FETCH_UID,
	IMAP_FETCH_MODSEQ,      /* CONDSTORE */
	IMAP_FETCH_RFC822,      /* = BODY[] (sets \Seen) */
	IMAP_FETCH_RFC822_HEADER, /* = BODY.PEEK[HEADER] */
	IMAP_FETCH_RFC822_TEXT, /* = BODY[TEXT] (sets \Seen) */
	IMAP_FETCH_SECTION,     /* BODY[...] / BODY.PEEK[...] */
	IMAP_FETCH_BINARY,      /* BINARY[...] / BINARY.PEEK[...] */
	IMAP_FETCH_BINARY_SIZE,
	/* RFC 8474 5.1/5.2 OBJECTID, RFC 8514 SAVEDATE, RFC 8970 PREVIEW */
	IMAP_FETCH_EMAILID, IMAP_FETCH_THREADID, IMAP_FETCH_SAVEDATE, IMAP_FETCH_PREVIEW,
};
struct imap_fetch_item {
	enum imap_fetch_kind kind;
	bool peek;
	/* SECTION/BINARY/BINARY_SIZE */
	uint32_t path[16];
	uint8_t depth;
	uint8_t what;          /* enum mime_section (mime/mime.h) */
	bool fields, fields_not; /* HEADER.FIELDS / HEADER.FIELDS.NOT */
	char **names;          /* the field names */
	size_t n_names;
	bool partial;          /* <off.len> */
	uint64_t p_off, p_len;
	char *label;           /* the name as the response echoes it:
				* "BODY[HEADER.FIELDS (A B)]<0>" */
};
struct imap_fetch {
	struct imap_fetch_item *v;
	size_t n;
	bool sets_seen;        /* some item without PEEK changes \Seen */
	bool need_blob, need_cache; /* what the items read */
	uint64_t changedsince; /* CHANGEDSINCE modifier (0: none) */
	bool vanished;         /* VANISHED modifier (QRESYNC, UID FETCH) */
	bool has_changedsince; /* CHANGEDSINCE given (also "CHANGEDSINCE 0") */
	/* PREVIEW asked (RFC 8970); preview_lazy: only with "(LAZY)" (every
	 * PREVIEW item of the command has it) */
	bool need_preview, preview_lazy;
};
/* Notes on imap_fetch_parse: labels are upper case as Dovecot echoes them
 * ("body.peek[header.fields (from x-a)]<0.100>" is answered as
 * "BODY[HEADER.FIELDS (FROM X-A)]<0>", BINARY.PEEK[1] as BINARY[1]); the
 * header field names are upper-cased too. CHANGEDSINCE adds a MODSEQ item
 * when none was asked for (RFC 7162 3.1.4.1); VANISHED without
 * CHANGEDSINCE is an error (RFC 7162 3.2.6); whether VANISHED is allowed
 * (UID FETCH, QRESYNC enabled) is the caller's check. */
/* Parses the FETCH arguments after the sequence set: a macro (ALL, FAST,
 * FULL), one item or a list, then optional modifiers "(CHANGEDSINCE n
 * VANISHED)". 0, or -1 with *err_r. */
int imap_fetch_parse(const struct imap_arg *args, struct imap_fetch *f, const char **err_r);
void imap_fetch_free(struct imap_fetch *f);

/* ---- SEARCH (RFC 9051 6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES) ---- */
enum imap_search_kind {
	IMAP_SK_ALL, IMAP_SK_AND, IMAP_SK_OR, IMAP_SK_NOT,
	IMAP_SK_SEQSET, IMAP_SK_UIDSET,      /* set (may be $) */
	IMAP_SK_FLAG, IMAP_SK_UNFLAG,        /* sys flag bits in u.flags */
	IMAP_SK_KEYWORD, IMAP_SK_UNKEYWORD,  /* str */
	IMAP_SK_NEW, IMAP_SK_OLD,            /* RECENT-based (rev1) */
	IMAP_SK_BEFORE, IMAP_SK_ON, IMAP_SK_SINCE,             /* INTERNALDATE day */
	IMAP_SK_SENTBEFORE, IMAP_SK_SENTON, IMAP_SK_SENTSINCE, /* Date: day */
	IMAP_SK_LARGER, IMAP_SK_SMALLER,     /* size */
	IMAP_SK_HEADER,  /* field (str2) contains str */
	IMAP_SK_BODY, IMAP_SK_TEXT,          /* str */
	IMAP_SK_MODSEQ,                      /* CONDSTORE: modseq >= n */
	IMAP_SK_OLDER, IMAP_SK_YOUNGER,      /* WITHIN (RFC 5032): num seconds */
	/* RFC 8474 6: str (an objectid) */
	IMAP_SK_EMAILID, IMAP_SK_THREADID,
	/* RFC 8514 5: save date day */
	IMAP_SK_SAVEDBEFORE, IMAP_SK_SAVEDON, IMAP_SK_SAVEDSINCE,
	IMAP_SK_SAVEDATESUPPORTED,
};
struct imap_search_key {
	enum imap_search_kind kind;
	struct imap_search_key *sub;  /* AND: children list; OR: two; NOT: one */
	size_t n_sub;
	struct imap_seqset set;
	unsigned flags;
	char *str, *str2;   /* UTF-8 (converted from the CHARSET) */
	int32_t day;
	uint64_t num;
	/* BODY: the needle folded as the full-text index's text is, when that
	 * text can answer it (imap_search_text_ready), else NULL */
	char *fold;
	size_t fold_len;
};
/* SORT criteria (RFC 5256 3 sort-key; RFC 5957 DISPLAYFROM, DISPLAYTO) */
enum imap_sort_kind {
	IMAP_SORT_ARRIVAL, IMAP_SORT_CC, IMAP_SORT_DATE, IMAP_SORT_FROM, IMAP_SORT_SIZE,
	IMAP_SORT_SUBJECT, IMAP_SORT_TO, IMAP_SORT_DISPLAYFROM, IMAP_SORT_DISPLAYTO,
};
#define IMAP_SORT_MAX_CRIT 16
struct imap_search {
	struct imap_search_key root;  /* an AND of the top-level keys */
	/* ESEARCH: RETURN (...) given */
	bool esearch;
	bool ret_min, ret_max, ret_all, ret_count, ret_save;
	/* RFC 5267 4: UPDATE, CONTEXT; RFC 9394 / RFC 5267 4.4: PARTIAL
	 * lo:hi (1-based, lo <= hi; negative both: counted from the end) */
	bool ret_update, ret_context, ret_partial;
	int64_t partial_lo, partial_hi;
	/* SORT (RFC 5256 3, RFC 5957): the criteria, n_sort > 0 */
	struct imap_sort_crit {
		uint8_t kind;  /* enum imap_sort_kind */
		bool reverse;
	} sort[IMAP_SORT_MAX_CRIT];
	size_t n_sort;
	/* limits applied while parsing */
	const char *charset;   /* as given, or NULL */
};
/* Parses SEARCH arguments: optional "RETURN (...)", optional "CHARSET x"
 * (US-ASCII and UTF-8 accepted; others: -1 with *bad_charset_r set so the
 * server answers NO [BADCHARSET (US-ASCII UTF-8)]), then the keys. Strings
 * are converted to UTF-8 from the charset. max_keys bounds the tree size
 * and nesting uses IMAP_MAX_DEPTH. 0, or -1 with *err_r. */
int imap_search_parse(const struct imap_arg *args, size_t max_keys, struct imap_search *s,
		      bool *bad_charset_r, const char **err_r);
void imap_search_free(struct imap_search *s);
/* SORT arguments (RFC 5256 3, RFC 5267 3 ESORT): optional "RETURN (...)",
 * the sort criteria list, the charset (mandatory, no CHARSET keyword), the
 * search keys; as imap_search_parse otherwise. */
int imap_sort_parse(const struct imap_arg *args, size_t max_keys, struct imap_search *s,
		    bool *bad_charset_r, const char **err_r);
/* Notes on imap_search_parse: FROM, TO, CC, BCC and SUBJECT are HEADER keys
 * with str2 the field name in upper case; RECENT is FLAG with IMAP_F_RECENT;
 * NEW and OLD keep their kinds; MODSEQ's optional entry name and type are
 * checked and ignored. OR/NOT nesting is bounded by IMAP_SEARCH_MAX_DEPTH
 * (clients chain ORs: "OR OR OR a b c d"), parentheses by IMAP_MAX_DEPTH
 * through the argument tree. "RETURN ()" sets ret_all. s->charset points
 * into the argument tree (valid while it is). Strings must be valid UTF-8
 * (both accepted charsets are UTF-8 compatible), else -1. */
#define IMAP_SEARCH_MAX_DEPTH 128
/* flags of an IMAP_SK_HEADER key: FROM, TO, CC, BCC (not HEADER FROM ...),
 * matched against the parsed address list (mime_search_address) */
#define IMAP_SK_F_ADDRESS 1u

/* ---- output ---- */
/* Appends s as an atom when it can be one, else a quoted string, else a
 * literal ({N}\r\n...) (for astring positions); imap_append_string never
 * uses an atom; imap_append_nstring writes NIL for NULL. */
void imap_append_astring(struct buf *out, const char *s, size_t len);
void imap_append_string(struct buf *out, const char *s, size_t len);
void imap_append_nstring(struct buf *out, const char *s, size_t len);

#endif
