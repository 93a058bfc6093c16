/* The full-text index (store.h, "the full-text index"): SQLite FTS5 with
 * the trigram tokenizer, which answers substring queries (RFC 9051 6.4.4:
 * SEARCH matches substrings, case-insensitively) for needles of three
 * characters or more.
 *
 * Why it only narrows: a needle's trigrams all being in a body does not
 * make the needle a substring of one of its values (the trigrams may be
 * apart, or span two values), and the matcher has rules of its own (a
 * field's value, part by part); so the index gives candidates and the
 * matcher (imap/search.c) confirms them, and the result is the scan's.
 * A needle is queried as the AND of its trigrams (detail=none keeps no
 * positions, so a phrase could not be checked anyway).
 *
 * Writes: the indexer thread reads bodies not indexed yet (messages.fts =
 * 0, oldest first), extracts their text (the extractor runs here, not on the
 * committer), and queues one lazy committer job per batch that inserts them
 * and sets fts = 1, one batch in flight at a time. A delivery's 250 never
 * waits for it; a body not indexed yet is a candidate of every query.
 *
 * Expunge (issue 9: the index is maintained at delivery, APPEND and
 * expunge): a contentless FTS5 table of SQLite 3.40 can only delete a row
 * given its text again, so an indexed body that loses its last reference
 * (expunge, MOVE, DELETE of a mailbox, a delivered queue entry, `postern
 * user del`: store_message_gc) keeps its row and its blob, marked fts = 2;
 * the quota goes down at once (the entry's removal), the body is no
 * candidate any more (no entry refers to it). The indexer takes those,
 * extracts the text again with the same extractor, and queues a committer
 * job that deletes the entries ('delete' with that text), the row, and
 * after the durable COMMIT the blob. A crash before the COMMIT leaves the
 * row (the work is redone); after it, an orphan blob (removed at start).
 * A body not indexed yet goes at once, as before this; so does every body
 * with the option fts off (and the daemon started with it off drops the
 * waiting ones): their entries, if any, stay until `postern index rebuild`.
 *
 * The delete must be given the very text: messages.fts_sum is a hash of
 * the text the entries were made from; a text extracted again that differs
 * (a corrupt blob) or that cannot be had (the blob gone) is not deleted:
 * the row and the blob go, the entries stay (dead: they cost space, never
 * correctness, since ids are never reused and candidates are a mailbox's
 * live UIDs) until a rebuild. And fts_state 'extractor' identifies the
 * extractor that made the whole index: its version (MIME_EXTRACT_VERSION)
 * and a hash of its texts of built-in samples. The daemon finding another
 * one (an upgrade that changed the text) empties the index and re-makes it
 * in the background (every body fts = 0: a candidate of every query
 * meanwhile), in one transaction at start like a schema step: an index of
 * two extractors could neither be unindexed exactly nor trusted to narrow.
 * A daemon whose index is re-made under it by another version's `postern
 * index rebuild --all` stops indexing until restarted. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/xmalloc.h"

/* How doc_write lays the columns out: part of the extractor's identity.
 * 2: the BODY text is also kept whole, deflated, in fts_text (schema 11),
 * so a SEARCH BODY confirms a candidate without its message file; a
 * daemon finding an index of format 1 re-makes it (store_fts_start). */
#define FTS_TEXT_FORMAT 2
#define FTS_TEXT_LEVEL 1 /* zlib: fast; inflating costs the same at any level */
#define FTS_BATCH_MSGS 64
#define FTS_BATCH_TEXT (1024 * 1024) /* extracted text per job: a short committer step */
#define FTS_IDLE_MS 500              /* polling for new bodies when idle */
#define FTS_MAX_TRIGRAMS 12          /* per needle: enough to be selective */

struct store_fts {
	struct store *st;
	store_fts_extract_fn *fn;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool stopping, inflight;
	bool stale;         /* the index's extractor changed under us (under mu) */
	int64_t xid;        /* extractor_id() */
	struct store_db rd; /* the indexer's read connection */
};

struct fts_doc {
	int64_t id;
	struct buf cols[STORE_FTS_NCOLS];
	int64_t sum; /* text_sum(cols) */
	struct buf ztext; /* cols[STORE_FTS_BODY] deflated (doc_pack), for fts_text */
	bool packed;
	/* to unindex, but its text could not be had again: the row and blob
	 * go, the entries stay */
	bool drop;
	bool todo; /* docs_insert, docs_remove, reindex_user: its entries are written */
};

/* ---- the text's identity ---- */

#define FNV_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= ((const unsigned char *)p)[i];
		h *= FNV_PRIME;
	}
	return h;
}

/* FNV-1a over every column with its length: compared (messages.fts_sum)
 * before a delete, so that a delete is never given another text. */
static int64_t text_sum(const struct buf *cols)
{
	uint64_t h = FNV_BASIS;
	for (int c = 0; c < STORE_FTS_NCOLS; c++) {
		uint64_t len = cols[c].len;
		h = fnv(h, &len, sizeof len);
		h = fnv(h, cols[c].data ? cols[c].data : "", cols[c].len);
	}
	return (int64_t)h;
}

/* Messages whose texts identify an extractor along with its version: a
 * change to the text of one of these (HTML, charsets, encoded words,
 * attachments, an attached message) is caught even if nobody bumped the
 * version. */
#define SAMPLE(s) {s, sizeof s - 1}
static const struct {
	const char *p;
	size_t n;
} samples[] = {
	SAMPLE("From: =?UTF-8?B?Wm/DqyDOqW1lZ2E=?= <zoe@example.net>\r\n"
	"To: Bob Stone <bob@example.org>, undisclosed-recipients:;\r\n"
	"Cc: \"Ivan\" <ivan@example.com>\r\nBcc: b@example.com\r\n"
	"Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= and =?UTF-8?B?0J/RgNC40LLQtdGC?=\r\n"
	"Message-ID: <s1@example.net>\r\n\r\nPlain body, Stra\xc3\x9f" "e, \xce\x91\xce\x98.\r\n"),
	SAMPLE("Subject: html\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
	"<!DOCTYPE html><html><head><title>T</title><style>p {color: red}</style>"
	"<script>var x = 1;</script></head><body><p class=\"x\">Caf&eacute; &amp; "
	"<b>bold</b>&nbsp;&#x263a;&#65;</p><br>line<!-- comment --><a href=\"http://"
	"example.com/\">link</a><table><tr><td>cell</td></tr></table></body></html>\r\n"),
	SAMPLE("Subject: qp\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve fa=E7ade =\r\nsoft =3D\r\n"),
	SAMPLE("Subject: mixed\r\nMIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\n"
	"Content-Type: text/plain; charset=windows-1251\r\nContent-Transfer-Encoding: base64\r\n"
	"\r\n7/Do4uXy\r\n--b\r\nContent-Type: text/html; charset=iso-8859-15\r\n\r\n"
	"<p>\xa4 &lt;tag&gt;</p>\r\n--b\r\nContent-Type: application/pdf; name=\"=?UTF-8?Q?r=C3=A9sum"
	"=C3=A9.pdf?=\"\r\nContent-Disposition: attachment; filename*=UTF-8''%C3%A9t%C3%A9.pdf\r\n"
	"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b\r\n"
	"Content-Type: message/rfc822\r\n\r\nFrom: inner@example.net\r\nSubject: inner\r\n\r\n"
	"inner body\r\n--b--\r\nepilogue\r\n"),
	SAMPLE("Subject: nul and 8bit\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n"
	"a\0b \xf0\xd2\xc9\xd7\xc5\xd4 \xff\r\n"),
};

/* The extractor's identity: its version, the layout of the rows, and its
 * texts of the samples (fts_state 'extractor'). */
static int64_t extractor_id(store_fts_extract_fn *fn, unsigned version)
{
	uint64_t h = FNV_BASIS, v[2] = {version, FTS_TEXT_FORMAT};
	h = fnv(h, v, sizeof v);
	for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
		struct buf cols[STORE_FTS_NCOLS];
		for (int c = 0; c < STORE_FTS_NCOLS; c++)
			cols[c] = (struct buf)BUF_INIT;
		fn(samples[i].p, samples[i].n, NULL, 0, cols);
		int64_t s = text_sum(cols);
		h = fnv(h, &s, sizeof s);
		for (int c = 0; c < STORE_FTS_NCOLS; c++)
			buf_free(&cols[c]);
	}
	return (int64_t)h;
}

/* ---- writing (any connection, inside a write transaction) ---- */

static void bind_col(sqlite3_stmt *s, int i, const struct buf *b)
{
	sqlite3_bind_text(s, i, b->data ? b->data : "", (int)b->len, SQLITE_STATIC);
}

/* Writing in passes. A statement that may abort midway with changes
 * made opens a statement savepoint, and SQLite's FTS5 (3.40, Debian 12)
 * writes its pending entries out as a new segment at every savepoint: the
 * fts_text insert (a foreign key to messages) is such a statement (seen),
 * the DELETE of messages with its cascades likely another. Interleaved with the entries, one doc
 * at a time, every doc made a segment of its own in each FTS table, and
 * FTS5 merged them again: perf put that at 28 % of the daemon's CPU under
 * load. So a batch writes every row of one kind, then every FTS entry
 * (held in memory by FTS5 and written out once), then every fts_text row. */

/* Inserts (or with del, deletes: the same text) doc's FTS entries. 0 or -1. */
static int doc_write(struct store_db *d, const struct fts_doc *doc, bool del)
{
	static const char ins_body[] = "INSERT INTO fts_body(rowid, body) VALUES (?1, ?2)";
	static const char del_body[] =
		"INSERT INTO fts_body(fts_body, rowid, body) VALUES ('delete', ?1, ?2)";
	static const char ins_head[] = "INSERT INTO fts_head(rowid, hdr) VALUES (?1, ?2)";
	static const char del_head[] =
		"INSERT INTO fts_head(fts_head, rowid, hdr) VALUES ('delete', ?1, ?2)";
	/* the header columns as one text (the same for a delete) */
	struct buf hdr = BUF_INIT;
	for (int c = 0; c < STORE_FTS_BODY; c++) {
		if (doc->cols[c].len == 0)
			continue;
		if (hdr.len > 0)
			buf_appendc(&hdr, '\n');
		buf_append(&hdr, doc->cols[c].data, doc->cols[c].len);
	}
	int ret = -1;
	if (doc->cols[STORE_FTS_BODY].len > 0) {
		sqlite3_stmt *s = store_sql(d, del ? del_body : ins_body, NULL);
		if (s == NULL)
			goto out;
		sqlite3_bind_int64(s, 1, doc->id);
		bind_col(s, 2, &doc->cols[STORE_FTS_BODY]);
		if (store_step_done(d, s, NULL) < 0)
			goto out;
	}
	if (hdr.len > 0) {
		sqlite3_stmt *s = store_sql(d, del ? del_head : ins_head, NULL);
		if (s == NULL)
			goto out;
		sqlite3_bind_int64(s, 1, doc->id);
		bind_col(s, 2, &hdr);
		if (store_step_done(d, s, NULL) < 0)
			goto out;
	}
	ret = 0;
out:
	buf_free(&hdr);
	return ret;
}

/* The BODY text whole beside its entries (FTS_TEXT_FORMAT 2), for the docs
 * marked todo and packed; a delete leaves it to the messages row (ON DELETE
 * CASCADE). After the entries (see above). 0 or -1. */
static int docs_write_text(struct store_db *d, const struct fts_doc *docs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!docs[i].todo || !docs[i].packed)
			continue;
		sqlite3_stmt *s = store_sql(d,
					    "INSERT OR REPLACE INTO fts_text(message_id, len, body)"
					    " VALUES (?1, ?2, ?3)",
					    NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, docs[i].id);
		sqlite3_bind_int64(s, 2, (int64_t)docs[i].cols[STORE_FTS_BODY].len);
		sqlite3_bind_blob(s, 3, docs[i].ztext.data ? docs[i].ztext.data : "",
				  (int)docs[i].ztext.len, SQLITE_STATIC);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	return 0;
}

/* doc's BODY text deflated for fts_text (on the indexer thread or the CLI,
 * not in the committer's job); a text zlib cannot take in one call is not
 * kept: its candidates are confirmed from the message file. The window and
 * the hash table are sized to the text (compress2's are 32 KB and 64 KB,
 * allocated and cleared per call: for most bodies, of a few hundred
 * octets, that was most of the work); inflate reads any window up to its
 * own 32 KB (uncompress in searchcmd.c). */
static void doc_pack(struct fts_doc *doc)
{
	const struct buf *b = &doc->cols[STORE_FTS_BODY];
	doc->packed = false;
	if (b->len > (size_t)INT32_MAX / 2)
		return;
	int wbits = 9; /* zlib's least; 262: its look-ahead (MIN_LOOKAHEAD) */
	while (wbits < 15 && ((size_t)1 << wbits) < b->len + 262)
		wbits++;
	z_stream z = {0};
	if (deflateInit2(&z, FTS_TEXT_LEVEL, Z_DEFLATED, wbits, wbits - 7, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return;
	uLong n = deflateBound(&z, (uLong)b->len);
	buf_reset(&doc->ztext);
	buf_reserve(&doc->ztext, (size_t)n);
	z.next_in = (Bytef *)(b->data ? b->data : "");
	z.avail_in = (uInt)b->len;
	z.next_out = (Bytef *)doc->ztext.data;
	z.avail_out = (uInt)n;
	int rc = deflate(&z, Z_FINISH);
	doc->ztext.len = (size_t)z.total_out;
	deflateEnd(&z);
	doc->packed = rc == Z_STREAM_END;
}

/* Indexes the docs whose body is still there and not indexed (checked in
 * this transaction: the daemon's indexer and `postern index rebuild` may
 * race, and a body must enter the index once). *n_r: indexed. 0 or -1. */
static int docs_insert(struct store_db *d, struct fts_doc *docs, size_t n, uint64_t *n_r)
{
	uint64_t added = 0;
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *s = store_sql(d, "UPDATE messages SET fts = 1, fts_sum = ?2"
					    " WHERE id = ?1 AND fts = 0", NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, docs[i].id);
		sqlite3_bind_int64(s, 2, docs[i].sum);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
		docs[i].todo = sqlite3_changes(d->db) > 0;
		added += docs[i].todo;
	}
	for (size_t i = 0; i < n; i++)
		if (docs[i].todo && doc_write(d, &docs[i], false) < 0)
			return -1;
	if (docs_write_text(d, docs, n) < 0)
		return -1;
	sqlite3_stmt *s = store_sql(d, "UPDATE fts_state SET v = v + ?1 WHERE k = 'docs'", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (int64_t)added);
	int rc = sqlite3_step(s);
	store_stmt_done(s);
	*n_r = added;
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Unindexes the docs still waiting (fts = 2, checked in this transaction:
 * `postern index rebuild --all` may have dropped them meanwhile): the
 * entries deleted given the same text (unless drop), the row deleted, the
 * blob added to blobs (unlinked once the COMMIT is durable). 0 or -1. */
static int docs_remove(struct store_db *d, struct fts_doc *docs, size_t n,
		       struct store_blobs *blobs)
{
	uint64_t removed = 0;
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *s = store_sql(d, "DELETE FROM messages WHERE id = ?1 AND fts = 2"
					    " RETURNING blob", NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, docs[i].id);
		bool gone = false;
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			store_blobs_add(blobs, (const char *)sqlite3_column_text(s, 0));
			gone = true;
			rc = sqlite3_step(s); /* RETURNING: run to the end */
		}
		store_stmt_done(s);
		if (rc != SQLITE_DONE)
			return -1;
		docs[i].todo = gone && !docs[i].drop;
		removed += docs[i].todo;
	}
	/* the entries after every row (see "Writing in passes") */
	for (size_t i = 0; i < n; i++)
		if (docs[i].todo && doc_write(d, &docs[i], true) < 0)
			return -1;
	sqlite3_stmt *s = store_sql(d, "UPDATE fts_state SET v = max(v - ?1, 0) WHERE k = 'docs'",
				    NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (int64_t)removed);
	return store_step_done(d, s, NULL);
}

int store_message_gc(struct store *st, struct store_db *d, int64_t id, struct store_blobs *blobs)
{
	static const char keep[] =
		"UPDATE messages SET fts = 2 WHERE id = ?1 AND fts = 1"
		" AND NOT EXISTS (SELECT 1 FROM mailbox_messages WHERE message_id = ?1)"
		" AND NOT EXISTS (SELECT 1 FROM queue WHERE message_id = ?1)";
	static const char del[] =
		"DELETE FROM messages WHERE id = ?1 AND fts <> 2"
		" AND NOT EXISTS (SELECT 1 FROM mailbox_messages WHERE message_id = ?1)"
		" AND NOT EXISTS (SELECT 1 FROM queue WHERE message_id = ?1) RETURNING blob";
	if (st->fts_unindex) {
		sqlite3_stmt *s = store_sql(d, keep, NULL);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, id);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
		if (sqlite3_changes(d->db) > 0)
			return 0; /* the indexer's now */
	}
	sqlite3_stmt *s = store_sql(d, del, NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *blob = (const char *)sqlite3_column_text(s, 0);
		if (blob)
			store_blobs_add(blobs, blob);
		rc = sqlite3_step(s); /* RETURNING: run to the end */
	}
	store_stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* fts_state's value for k: 1 found (*v_r), 0 none, -1 error. */
static int state_get(struct store_db *d, const char *k, int64_t *v_r)
{
	sqlite3_stmt *s = store_sql(d, "SELECT v FROM fts_state WHERE k = ?1", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*v_r = sqlite3_column_int64(s, 0);
	store_stmt_done(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Is the index xid's (inside a transaction)? 1 yes, 0 no, -1 error. */
static int index_is(struct store_db *d, int64_t xid)
{
	int64_t v;
	int r = state_get(d, "extractor", &v);
	return r < 0 ? -1 : r == 1 && v == xid;
}

/* Empties the index for extractor xid (inside a write transaction): every
 * body not indexed, the bodies waiting to be unindexed deleted (their
 * blobs added to blobs). 0 or -1. */
static int index_reset(struct store_db *d, int64_t xid, struct store_blobs *blobs)
{
	static const char *const sqls[] = {
	    "INSERT INTO fts_body(fts_body) VALUES ('delete-all')",
	    "INSERT INTO fts_head(fts_head) VALUES ('delete-all')",
	    "DELETE FROM fts_text",
	    "UPDATE messages SET fts = 0, fts_sum = NULL WHERE fts = 1",
	    "UPDATE fts_state SET v = 0 WHERE k = 'docs'",
	    "INSERT OR REPLACE INTO fts_state(k, v) VALUES ('extractor', ?1)",
	};
	for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
		sqlite3_stmt *s = store_sql(d, sqls[i], NULL);
		if (s == NULL)
			return -1;
		if (sqlite3_bind_parameter_count(s) > 0)
			sqlite3_bind_int64(s, 1, xid);
		if (store_step_done(d, s, NULL) < 0)
			return -1;
	}
	sqlite3_stmt *s = store_sql(d, "DELETE FROM messages WHERE fts = 2 RETURNING blob", NULL);
	if (s == NULL)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		store_blobs_add(blobs, (const char *)sqlite3_column_text(s, 0));
	store_stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

static void docs_free(struct fts_doc *docs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c < STORE_FTS_NCOLS; c++)
			buf_free(&docs[i].cols[c]);
		buf_free(&docs[i].ztext);
	}
	free(docs);
}

/* ---- reading bodies (the indexer thread, the CLI) ---- */

/* A body up to this size is read into memory; a larger one is mapped. */
#define FTS_READ_MAX (1024 * 1024)

/* The text of the body in blob (cache may be NULL): false if the blob is
 * gone (expunged meanwhile: errno ENOENT) or unreadable (errno). */
static bool doc_extract(struct store *st, store_fts_extract_fn *fn, const char *blob,
			const void *cache, size_t cache_len, struct fts_doc *doc)
{
	int fd = openat(st->blob_dfd[store_blob_dir(blob)], blob, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0)
		return false;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return false;
	}
	if (sb.st_size == 0) {
		fn("", 0, cache, cache_len, doc->cols);
		close(fd);
		return true;
	}
	size_t size = (size_t)sb.st_size;
	if (size <= FTS_READ_MAX) {
		/* read, not mapped: a munmap per message would stop every CPU
		 * the daemon runs on (a TLB shootdown) */
		char *b = xmalloc(size);
		ssize_t got = pread(fd, b, size, 0);
		int e = errno;
		close(fd);
		if (got < 0 || (size_t)got != size) {
			free(b);
			errno = got < 0 ? e : EIO;
			return false;
		}
		fn(b, size, cache, cache_len, doc->cols);
		free(b);
		return true;
	}
	void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED) {
		errno = e;
		return false;
	}
	fn(p, size, cache, cache_len, doc->cols);
	munmap(p, size);
	return true;
}

/* Reads up to FTS_BATCH_MSGS bodies (FTS_BATCH_TEXT of text) after *after
 * whose fts is 0 (user_id 0: anybody's) and extracts them. *after: the last
 * id seen; *skipped_r counts the bodies that could not be read now (left
 * to a later pass). -1 on a database error. */
static int batch_read(struct store *st, struct store_db *d, store_fts_extract_fn *fn,
		      int64_t user_id, int64_t *after, struct fts_doc **docs_r, size_t *n_r,
		      size_t *skipped_r)
{
	static const char sql_all[] = "SELECT id, blob, cache FROM messages WHERE fts = 0"
				      " AND id > ?1 ORDER BY id LIMIT ?2";
	static const char sql_user[] =
		"SELECT m.id, m.blob, m.cache FROM messages m WHERE m.fts = 0 AND m.id > ?1"
		" AND m.id IN (SELECT mm.message_id FROM mailbox_messages mm JOIN mailboxes b"
		" ON b.id = mm.mailbox_id WHERE b.user_id = ?3) ORDER BY m.id LIMIT ?2";
	sqlite3_stmt *s = store_sql(d, user_id ? sql_user : sql_all, NULL);
	struct fts_doc *docs = xcalloc(FTS_BATCH_MSGS, sizeof *docs);
	size_t n = 0, text = 0;
	int rc = SQLITE_DONE;

	if (s == NULL) {
		free(docs);
		return -1;
	}
	sqlite3_bind_int64(s, 1, *after);
	sqlite3_bind_int(s, 2, FTS_BATCH_MSGS);
	if (user_id)
		sqlite3_bind_int64(s, 3, user_id);
	while (n < FTS_BATCH_MSGS && text < FTS_BATCH_TEXT && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct fts_doc *doc = &docs[n];
		const char *blob = (const char *)sqlite3_column_text(s, 1);
		doc->id = sqlite3_column_int64(s, 0);
		const void *cache = sqlite3_column_blob(s, 2);
		size_t cache_len = (size_t)sqlite3_column_bytes(s, 2);
		*after = doc->id;
		/* a body whose blob is gone is indexed empty (never a match);
		 * one unreadable for now (EMFILE, ENOMEM...) is skipped: left
		 * fts = 0 (a candidate of every search) for a later pass.
		 * Indexed empty, the index would hide it from every search for
		 * good, while the scan finds it once it can read it. */
		if (blob != NULL && !doc_extract(st, fn, blob, cache, cache_len, doc) &&
		    errno != ENOENT) {
			if (*skipped_r == 0)
				log_warn("store: full-text index: body %s: %s (retried later)", blob,
					 strerror(errno));
			(*skipped_r)++;
			for (int c = 0; c < STORE_FTS_NCOLS; c++)
				buf_free(&doc->cols[c]);
			continue;
		}
		for (int c = 0; c < STORE_FTS_NCOLS; c++)
			text += doc->cols[c].len;
		doc->sum = text_sum(doc->cols);
		doc_pack(doc);
		n++;
	}
	store_stmt_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		docs_free(docs, n);
		return -1;
	}
	*docs_r = docs;
	*n_r = n;
	return 0;
}

/* As batch_read, for the bodies waiting to be unindexed (fts = 2): each
 * one's text extracted again and checked against fts_sum. One whose text
 * cannot be had (its blob gone, or another text: a corrupt blob) is
 * dropped (drop: its entries stay); one unreadable for now is skipped
 * (*skipped_r), left for a later pass. */
static int gone_read(struct store *st, struct store_db *d, store_fts_extract_fn *fn,
		     int64_t *after, struct fts_doc **docs_r, size_t *n_r, size_t *skipped_r)
{
	static const char sql[] = "SELECT id, blob, cache, fts_sum FROM messages WHERE fts = 2"
				  " AND id > ?1 ORDER BY id LIMIT ?2";
	sqlite3_stmt *s = store_sql(d, sql, NULL);
	struct fts_doc *docs = xcalloc(FTS_BATCH_MSGS, sizeof *docs);
	size_t n = 0, text = 0;
	int rc = SQLITE_DONE;
	struct buf none[STORE_FTS_NCOLS] = {BUF_INIT};
	int64_t empty = text_sum(none);

	if (s == NULL) {
		free(docs);
		return -1;
	}
	sqlite3_bind_int64(s, 1, *after);
	sqlite3_bind_int(s, 2, FTS_BATCH_MSGS);
	while (n < FTS_BATCH_MSGS && text < FTS_BATCH_TEXT && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct fts_doc *doc = &docs[n];
		const char *blob = (const char *)sqlite3_column_text(s, 1);
		bool known = sqlite3_column_type(s, 3) != SQLITE_NULL;
		int64_t sum = sqlite3_column_int64(s, 3);
		const char *why = NULL;
		doc->id = *after = sqlite3_column_int64(s, 0);
		if (!doc_extract(st, fn, blob, sqlite3_column_blob(s, 2),
				 (size_t)sqlite3_column_bytes(s, 2), doc)) {
			if (errno != ENOENT) { /* EMFILE, ENOMEM...: later */
				if (*skipped_r == 0)
					log_warn("store: full-text index: body %s: %s (unindexed later)",
						 blob, strerror(errno));
				(*skipped_r)++;
				for (int c = 0; c < STORE_FTS_NCOLS; c++)
					buf_free(&doc->cols[c]);
				continue;
			}
			/* indexed empty (gone already then): nothing to delete */
			if (!known || sum != empty)
				why = "its blob is gone";
		} else if (!known) {
			why = "indexed before its text was recorded";
		} else if (text_sum(doc->cols) != sum) {
			why = "its text is not the one indexed (a corrupt blob?)";
		}
		if (why != NULL) {
			log_warn("store: full-text index: body %s not unindexed: %s; its entries stay"
				 " until `postern index rebuild --all`", blob, why);
			doc->drop = true;
			for (int c = 0; c < STORE_FTS_NCOLS; c++)
				buf_free(&doc->cols[c]);
		}
		for (int c = 0; c < STORE_FTS_NCOLS; c++)
			text += doc->cols[c].len;
		n++;
	}
	store_stmt_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		docs_free(docs, n);
		return -1;
	}
	*docs_r = docs;
	*n_r = n;
	return 0;
}

/* ---- the indexer thread ---- */

/* A batch for the committer: a plain store_job whose tail (on the committer,
 * after the round) frees it, so that nothing is left for the loop (which may
 * have stopped when the store closes). */
struct fts_job {
	struct store_job job; /* first: the committer sees only this */
	struct store_fts *f;
	struct fts_doc *docs;
	size_t n;
	bool unindex;             /* docs_remove, else docs_insert */
	bool committed;           /* by job_run */
	struct store_blobs blobs; /* unindexed: unlinked once durable */
};

static void job_tail(struct store *st, struct store_job *job)
{
	struct fts_job *fj = (struct fts_job *)job;
	struct store_fts *f = fj->f;
	/* Only after a durable COMMIT (an unindex job is not lazy): a crash
	 * before it brings the rows back, and they need their blobs. */
	store_blobs_done(st, &fj->blobs, fj->committed && !st->round_failed);
	docs_free(fj->docs, fj->n);
	free(fj);
	pthread_mutex_lock(&f->mu);
	f->inflight = false;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
}

static void job_run(struct store *st, struct store_job *job)
{
	struct fts_job *fj = (struct fts_job *)job;
	struct store_fts *f = fj->f;
	struct store_db *d = &st->cdb;
	uint64_t added;
	int same;
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0) {
		log_err("store: full-text index: begin: %s", sqlite3_errmsg(d->db));
	} else if ((same = index_is(d, f->xid)) < 0 ||
		   (same && (fj->unindex ? docs_remove(d, fj->docs, fj->n, &fj->blobs)
					 : docs_insert(d, fj->docs, fj->n, &added)) < 0) ||
		   store_exec(d, "COMMIT", NULL) < 0) {
		log_err("store: full-text index: %zu bodies not %s: %s", fj->n,
			fj->unindex ? "unindexed" : "indexed", sqlite3_errmsg(d->db));
		store_exec(d, "ROLLBACK", NULL);
	} else if (!same) {
		/* re-made under us by another extractor (another version's
		 * `postern index rebuild --all`): its entries are not ours to
		 * add to or delete; the bodies waiting stay candidates */
		log_err("store: full-text index: made by another extractor now; indexing stops"
			" until the daemon restarts");
		pthread_mutex_lock(&f->mu);
		f->stale = true;
		pthread_mutex_unlock(&f->mu);
	} else {
		fj->committed = true;
	}
	store_job_done(st, job, job_tail);
}

static void idle_wait(struct store_fts *f)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)FTS_IDLE_MS * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&f->mu);
	if (!f->stopping)
		pthread_cond_timedwait(&f->cond, &f->mu, &ts);
	pthread_mutex_unlock(&f->mu);
}

/* One batch of one kind (unindex: the bodies waiting to be unindexed, else
 * the ones waiting to be indexed) after *after, queued and waited for.
 * *busy_r: there may be more now (a batch was done, or bodies skipped).
 * 0 or -1 (a read error). */
static int indexer_batch(struct store_fts *f, bool unindex, int64_t *after, bool *busy_r)
{
	struct fts_doc *docs = NULL;
	size_t n = 0, skipped = 0;
	int r = unindex ? gone_read(f->st, &f->rd, f->fn, after, &docs, &n, &skipped)
			: batch_read(f->st, &f->rd, f->fn, 0, after, &docs, &n, &skipped);
	if (r < 0)
		return -1;
	if (n == 0) {
		free(docs);
		if (skipped > 0)
			*busy_r = true; /* unreadable bodies only: the ones after them */
		else
			*after = 0; /* a new pass (the skipped ones) once idle */
		return 0;
	}
	struct fts_job *fj = xcalloc(1, sizeof *fj);
	fj->job.run = job_run;
	/* the index can be rebuilt: no sync of its own; but an unindex
	 * unlinks blobs, which must wait for a durable COMMIT */
	fj->job.lazy = !unindex;
	fj->f = f;
	fj->docs = docs;
	fj->n = n;
	fj->unindex = unindex;
	pthread_mutex_lock(&f->mu);
	f->inflight = true;
	pthread_mutex_unlock(&f->mu);
	store_job_queue(f->st, &fj->job);
	/* one batch at a time: the next read must see this one's rows */
	pthread_mutex_lock(&f->mu);
	while (f->inflight)
		pthread_cond_wait(&f->cond, &f->mu);
	pthread_mutex_unlock(&f->mu);
	*busy_r = true;
	return 0;
}

static void *indexer_main(void *arg)
{
	struct store_fts *f = arg;
	pthread_setname_np(pthread_self(), "fts-indexer"); /* top -H, perf --sort comm */
	pool_background_thread();
	/* the passes' cursors: bodies skipped stay behind them */
	int64_t after = 0, after_gone = 0;
	for (;;) {
		pthread_mutex_lock(&f->mu);
		bool stop = f->stopping, stale = f->stale;
		pthread_mutex_unlock(&f->mu);
		if (stop)
			break;
		bool busy = false;
		if (stale) {
			idle_wait(f);
			continue;
		}
		/* unindexing first: it gives disk space back */
		if (indexer_batch(f, true, &after_gone, &busy) < 0 ||
		    indexer_batch(f, false, &after, &busy) < 0) {
			log_err("store: full-text index: %s", sqlite3_errmsg(f->rd.db));
			after = after_gone = 0;
			idle_wait(f);
			continue;
		}
		if (!busy)
			idle_wait(f);
	}
	return NULL;
}

/* Makes the index extractor xid's before the indexer starts (main
 * connection, one transaction, like a schema step): emptied if another
 * extractor made it. 0 or -1. */
static int index_adopt(struct store *st, int64_t xid)
{
	struct store_db *d = &st->main;
	struct store_blobs blobs = {0};
	int64_t docs = 0, old = 0;
	char *err = NULL;
	if (store_exec(d, "BEGIN IMMEDIATE", &err) < 0)
		goto fail;
	int known = state_get(d, "extractor", &old);
	if (known < 0 || state_get(d, "docs", &docs) < 0)
		goto fail_rb;
	bool same = known == 1 && old == xid;
	if ((!same && index_reset(d, xid, &blobs) < 0) || store_exec(d, "COMMIT", &err) < 0)
		goto fail_rb;
	if (same)
		return 0;
	store_blobs_done(st, &blobs, true);
	if (known == 1 || docs > 0)
		log_info("store: full-text index: made by another extractor (or before its version"
			 " was recorded): emptied; every body is indexed again in the background");
	return 0;
fail_rb:
	store_exec(d, "ROLLBACK", NULL);
	store_blobs_done(st, &blobs, false);
fail:
	log_err("store: full-text index: %s", err ? err : sqlite3_errmsg(d->db));
	free(err);
	return -1;
}

int store_fts_start(struct store *st, store_fts_extract_fn *fn, unsigned version)
{
	int64_t xid = extractor_id(fn, version);
	if (index_adopt(st, xid) < 0)
		return -1;
	/* from now on an indexed body losing its last reference waits for the
	 * indexer (no job reaches the committer before the servers start) */
	st->fts_unindex = true;
	struct store_fts *f = xcalloc(1, sizeof *f);
	char *path = xasprintf("%s/postern.db", st->dir);
	char *err = NULL;
	int rc = sqlite3_open_v2(path, &f->rd.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	free(path);
	if (rc != SQLITE_OK || store_exec(&f->rd, "PRAGMA query_only = ON", &err) < 0) {
		log_err("store: full-text index: %s", err ? err : sqlite3_errmsg(f->rd.db));
		free(err);
		sqlite3_close(f->rd.db);
		free(f);
		return -1;
	}
	sqlite3_busy_timeout(f->rd.db, 10000);
	f->st = st;
	f->fn = fn;
	f->xid = xid;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cond, NULL);
	if (pthread_create(&f->thread, NULL, indexer_main, f) != 0) {
		log_err("store: full-text index: cannot start the indexer");
		pthread_mutex_destroy(&f->mu);
		pthread_cond_destroy(&f->cond);
		sqlite3_close(f->rd.db);
		free(f);
		return -1;
	}
	st->fts = f;
	return 0;
}

void store_fts_stop(struct store *st)
{
	struct store_fts *f = st->fts;
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->mu);
	f->stopping = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	for (int i = 0; i < STMT_N; i++)
		sqlite3_finalize(f->rd.stmts[i]);
	for (int i = 0; i < f->rd.n_cache; i++)
		sqlite3_finalize(f->rd.cache[i].s);
	sqlite3_close(f->rd.db);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cond);
	free(f);
	st->fts = NULL;
}

bool store_fts_on(const struct store *st)
{
	return st->fts != NULL;
}

void store_fts_unindex(struct store *st)
{
	st->fts_unindex = true;
}

void store_fts_off(struct store *st)
{
	struct store_db *d = &st->main;
	struct store_blobs blobs = {0};
	char *err = NULL;
	int r = store_exec(d, "BEGIN IMMEDIATE", &err);
	sqlite3_stmt *s = r == 0 ? store_sql(d, "DELETE FROM messages WHERE fts = 2 RETURNING blob",
					     &err) : NULL;
	int rc = SQLITE_ERROR;
	if (s != NULL) {
		while ((rc = sqlite3_step(s)) == SQLITE_ROW)
			store_blobs_add(&blobs, (const char *)sqlite3_column_text(s, 0));
		store_stmt_done(s);
	}
	if (rc != SQLITE_DONE || store_exec(d, "COMMIT", &err) < 0) {
		if (r == 0)
			store_exec(d, "ROLLBACK", NULL);
		log_err("store: full-text index: %s", err ? err : sqlite3_errmsg(d->db));
		free(err);
		store_blobs_done(st, &blobs, false);
		return;
	}
	if (blobs.n > 0)
		log_info("store: full-text index off: %zu expunged bodies not unindexed (their"
			 " entries stay until `postern index rebuild --all`)", blobs.n);
	store_blobs_done(st, &blobs, true);
}

/* ---- queries ---- */

/* Appends the FTS5 query of needle (folded UTF-8): the AND of at most
 * FTS_MAX_TRIGRAMS of its trigrams, spread over it. false if it has fewer
 * than STORE_FTS_MIN_NEEDLE characters. */
static bool needle_query(const char *needle, struct buf *out)
{
	size_t starts[4096], n = 0, len = strlen(needle);
	for (size_t i = 0; i < len; i++) {
		if (((unsigned char)needle[i] & 0xc0) == 0x80)
			continue;
		if (n == sizeof starts / sizeof starts[0]) {
			len = i; /* the first characters are plenty */
			break;
		}
		starts[n++] = i;
	}
	if (n < STORE_FTS_MIN_NEEDLE)
		return false;
	size_t nt = n - 2, want = nt < FTS_MAX_TRIGRAMS ? nt : FTS_MAX_TRIGRAMS;
	size_t last = (size_t)-1;
	buf_appendc(out, '(');
	for (size_t k = 0; k < want; k++) {
		size_t t = want == 1 ? 0 : k * (nt - 1) / (want - 1);
		if (t == last)
			continue;
		last = t;
		size_t a = starts[t], b = t + 3 < n ? starts[t + 3] : len;
		if (k > 0)
			buf_appends(out, " AND ");
		buf_appendc(out, '"');
		for (size_t i = a; i < b; i++) {
			if (needle[i] == '"')
				buf_appendc(out, '"');
			buf_appendc(out, needle[i]);
		}
		buf_appendc(out, '"');
	}
	buf_appendc(out, ')');
	return true;
}

struct qbuild {
	struct buf sql;
	char **params;
	size_t n_params;
};

static void add_param(struct qbuild *qb, struct buf *b)
{
	qb->params = xrealloc(qb->params, (qb->n_params + 1) * sizeof *qb->params);
	buf_appendc(b, '\0');
	qb->params[qb->n_params++] = xstrdup(b->data);
	buf_printf(&qb->sql, "?%zu", qb->n_params + 1); /* ?1 is the mailbox */
}

/* Appends a predicate on mm.message_id implied by every match of q; false if q
 * cannot narrow (the predicate would be TRUE). */
static bool build(struct qbuild *qb, const struct store_fts_q *q)
{
	if (q->op == STORE_FTS_TERM) {
		struct buf fq = BUF_INIT;
		unsigned head = q->cols & ((1u << STORE_FTS_BODY) - 1);
		bool body = q->cols & (1u << STORE_FTS_BODY);
		if (q->needle == NULL || (!head && !body) || !needle_query(q->needle, &fq)) {
			buf_free(&fq);
			return false;
		}
		buf_appendc(&qb->sql, '(');
		if (body) {
			struct buf p = BUF_INIT;
			buf_append(&p, fq.data, fq.len);
			buf_appends(&qb->sql,
				    "mm.message_id IN (SELECT rowid FROM fts_body WHERE fts_body MATCH ");
			add_param(qb, &p);
			buf_appendc(&qb->sql, ')');
			buf_free(&p);
		}
		if (head) { /* one table for every header column */
			struct buf p = BUF_INIT;
			buf_append(&p, fq.data, fq.len);
			if (body)
				buf_appends(&qb->sql, " OR ");
			buf_appends(&qb->sql,
				    "mm.message_id IN (SELECT rowid FROM fts_head WHERE fts_head MATCH ");
			add_param(qb, &p);
			buf_appendc(&qb->sql, ')');
			buf_free(&p);
		}
		buf_appendc(&qb->sql, ')');
		buf_free(&fq);
		return true;
	}
	/* AND: the children that narrow; OR: only if every child narrows */
	size_t mark = qb->sql.len, mark_p = qb->n_params, used = 0;
	buf_appendc(&qb->sql, '(');
	for (size_t i = 0; i < q->n_sub; i++) {
		size_t m2 = qb->sql.len, p2 = qb->n_params;
		if (used > 0)
			buf_appends(&qb->sql, q->op == STORE_FTS_AND ? " AND " : " OR ");
		if (build(qb, &q->sub[i])) {
			used++;
			continue;
		}
		qb->sql.len = m2;
		while (qb->n_params > p2)
			free(qb->params[--qb->n_params]);
		if (q->op == STORE_FTS_OR) {
			used = 0;
			break;
		}
	}
	if (used == 0) {
		qb->sql.len = mark;
		while (qb->n_params > mark_p)
			free(qb->params[--qb->n_params]);
		return false;
	}
	buf_appendc(&qb->sql, ')');
	return true;
}

int store_fts_candidates(struct store_snap *sn, const char *user, const char *mailbox,
			 uint32_t uidvalidity, const struct store_fts_q *q, uint32_t **uids_r,
			 size_t *n_r, char **err_r)
{
	struct qbuild qb = {BUF_INIT, NULL, 0};
	struct store_mailbox_status status;
	int64_t mailbox_id;
	int ret = 0;

	if (!store_fts_on(sn->st))
		return 0;
	/* no join with messages: its fts column comes after the MIME cache in
	 * the record, on overflow pages (100,000 messages: ~40 ms of a rare
	 * word's ~45); the bodies not indexed yet come from their partial
	 * index (messages_fts_todo) */
	buf_appends(&qb.sql, "SELECT mm.uid FROM mailbox_messages mm WHERE mm.mailbox_id = ?1"
			     " AND (mm.message_id IN (SELECT id FROM messages WHERE fts = 0) OR ");
	if (!build(&qb, q)) {
		buf_free(&qb.sql);
		free(qb.params);
		return 0;
	}
	buf_appends(&qb.sql, ") ORDER BY mm.uid");
	int r = store_db_mailbox(sn->d, user, mailbox, false, NULL, &mailbox_id, &status, err_r);
	if (r != 1) {
		ret = r < 0 ? STORE_ERROR : STORE_NONEXISTENT;
	} else if (uidvalidity != 0 && status.uidvalidity != uidvalidity) {
		*err_r = xasprintf("mailbox re-created");
		ret = STORE_CHANGED;
	} else {
		sqlite3_stmt *s = NULL;
		buf_appendc(&qb.sql, '\0');
		if (sqlite3_prepare_v2(sn->d->db, qb.sql.data, -1, &s, NULL) != SQLITE_OK) {
			*err_r = store_db_err(sn->d);
			ret = STORE_ERROR;
		} else {
			uint32_t *v = NULL;
			size_t n = 0, cap = 0;
			int rc;
			sqlite3_bind_int64(s, 1, mailbox_id);
			for (size_t i = 0; i < qb.n_params; i++)
				sqlite3_bind_text(s, (int)i + 2, qb.params[i], -1, SQLITE_STATIC);
			while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
				if (n == cap) {
					cap = cap ? cap * 2 : 256;
					v = xrealloc(v, cap * sizeof *v);
				}
				v[n++] = (uint32_t)sqlite3_column_int64(s, 0);
			}
			if (rc != SQLITE_DONE) {
				*err_r = store_db_err(sn->d);
				free(v);
				ret = STORE_ERROR;
			} else {
				*uids_r = v;
				*n_r = n;
				ret = 1;
			}
		}
		sqlite3_finalize(s);
	}
	for (size_t i = 0; i < qb.n_params; i++)
		free(qb.params[i]);
	free(qb.params);
	buf_free(&qb.sql);
	return ret;
}

/* ---- administration (the CLI, on st->main) ---- */

static int64_t q_int(struct store_db *d, const char *sql, char **err_r)
{
	sqlite3_stmt *s;
	int64_t v = -1;
	if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
		*err_r = store_db_err(d);
		return -1;
	}
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	else
		*err_r = store_db_err(d);
	sqlite3_finalize(s);
	return v;
}

int store_fts_stats(struct store *st, struct store_fts_stats *r, char **err_r)
{
	struct store_db *d = &st->main;
	int64_t v[7];
	static const char *const sql[7] = {
	    "SELECT count(*) FROM messages WHERE fts <> 2",
	    "SELECT count(*) FROM messages WHERE fts = 1",
	    "SELECT v FROM fts_state WHERE k = 'docs'",
	    "SELECT coalesce(sum(size), 0) FROM messages WHERE fts <> 2",
	    "SELECT (SELECT coalesce(sum(length(block)), 0) FROM fts_body_data) +"
	    " (SELECT coalesce(sum(length(block)), 0) FROM fts_head_data) +"
	    " (SELECT count(*) * 16 + coalesce(sum(length(term)), 0) FROM fts_body_idx) +"
	    " (SELECT count(*) * 16 + coalesce(sum(length(term)), 0) FROM fts_head_idx) +"
	    " (SELECT count(*) * 16 + coalesce(sum(length(body)), 0) FROM fts_text)",
	    "SELECT count(*) FROM messages WHERE fts = 0",
	    "SELECT count(*) FROM messages WHERE fts = 2",
	};
	/* one snapshot: the indexer may commit between the counts */
	if (store_exec(d, "BEGIN", err_r) < 0)
		return -1;
	for (int i = 0; i < 7; i++)
		if ((v[i] = q_int(d, sql[i], err_r)) < 0) {
			store_exec(d, "ROLLBACK", NULL);
			return -1;
		}
	store_exec(d, "COMMIT", NULL);
	r->messages = (uint64_t)v[0];
	r->indexed = (uint64_t)v[1];
	/* 'docs' counts the bodies waiting to be unindexed too */
	r->dead = v[2] > v[1] + v[6] ? (uint64_t)(v[2] - v[1] - v[6]) : 0;
	r->mail_bytes = (uint64_t)v[3];
	r->index_bytes = (uint64_t)v[4];
	r->pending = (uint64_t)v[5];
	r->unindex = (uint64_t)v[6];
	return 0;
}

/* Re-indexes the indexed bodies of user_id: each one's rows deleted (given
 * the same text again: checked against fts_sum in the write transaction,
 * where the body must still be indexed: the daemon may have unindexed it
 * meanwhile) and inserted, fts left 1. */
/* Is doc indexed, with its text? 1 yes, 0 no (left as it is), -1 error. */
static int same_text(struct store_db *d, const struct fts_doc *doc)
{
	sqlite3_stmt *s = store_sql(d, "SELECT fts_sum FROM messages WHERE id = ?1 AND fts = 1",
				    NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, doc->id);
	int rc = sqlite3_step(s);
	bool same = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL &&
		    sqlite3_column_int64(s, 0) == doc->sum;
	store_stmt_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return -1;
	return same;
}

/* Ends a transaction begun with BEGIN IMMEDIATE: r 0 (the work in it went
 * well) commits; otherwise, or when the commit fails, it is rolled back and
 * *err_r says why (the database's error when nothing set it). 0 or -1. */
static int tx_end(struct store_db *d, int r, char **err_r)
{
	if (r == 0 && store_exec(d, "COMMIT", err_r) < 0)
		r = -1;
	if (r < 0) {
		if (*err_r == NULL)
			*err_r = store_db_err(d);
		store_exec(d, "ROLLBACK", NULL);
	}
	return r;
}

static int reindex_user(struct store *st, store_fts_extract_fn *fn, int64_t user_id,
			uint64_t *n_r, char **err_r)
{
	static const char sql[] =
		"SELECT m.id, m.blob, m.cache FROM messages m WHERE m.fts = 1 AND m.id > ?1"
		" AND m.id IN (SELECT mm.message_id FROM mailbox_messages mm JOIN mailboxes b"
		" ON b.id = mm.mailbox_id WHERE b.user_id = ?2) ORDER BY m.id LIMIT 64";
	struct store_db *d = &st->main;
	int64_t after = 0;
	for (;;) {
		struct fts_doc *docs = xcalloc(64, sizeof *docs);
		size_t n = 0;
		sqlite3_stmt *s = store_sql(d, sql, err_r);
		if (s == NULL) {
			free(docs);
			return -1;
		}
		sqlite3_bind_int64(s, 1, after);
		sqlite3_bind_int64(s, 2, user_id);
		while (n < 64 && sqlite3_step(s) == SQLITE_ROW) {
			const char *blob = (const char *)sqlite3_column_text(s, 1);
			docs[n].id = after = sqlite3_column_int64(s, 0);
			if (blob != NULL)
				doc_extract(st, fn, blob, sqlite3_column_blob(s, 2),
					    (size_t)sqlite3_column_bytes(s, 2), &docs[n]);
			docs[n].sum = text_sum(docs[n].cols);
			doc_pack(&docs[n]);
			n++;
		}
		store_stmt_done(s);
		if (n == 0) {
			free(docs);
			return 0;
		}
		int r = store_exec(d, "BEGIN IMMEDIATE", err_r);
		for (size_t i = 0; r == 0 && i < n; i++) {
			int same = same_text(d, &docs[i]);
			if (same < 0)
				r = -1;
			docs[i].todo = same > 0;
		}
		/* passes: see "Writing in passes" */
		for (size_t i = 0; r == 0 && i < n; i++)
			if (docs[i].todo && (doc_write(d, &docs[i], true) < 0 ||
					     doc_write(d, &docs[i], false) < 0))
				r = -1;
		if (r == 0 && docs_write_text(d, docs, n) < 0)
			r = -1;
		r = tx_end(d, r, err_r);
		docs_free(docs, n);
		if (r < 0)
			return -1;
		*n_r += n;
	}
}

int store_fts_rebuild(struct store *st, const char *user, store_fts_extract_fn *fn,
		      unsigned version, uint64_t *n_r, char **err_r)
{
	struct store_db *d = &st->main;
	int64_t user_id = 0, xid = extractor_id(fn, version);
	*n_r = 0;
	if (user != NULL) {
		user_id = store_user_id(d, user, err_r);
		if (user_id <= 0) {
			if (user_id == 0 && *err_r == NULL)
				*err_r = xasprintf("%s: no such user", user);
			return -1;
		}
		int same = index_is(d, xid);
		if (same <= 0) {
			*err_r = same < 0 ? store_db_err(d)
					  : xasprintf("the index was made by another extractor version"
						      ": rebuild it whole (--all)");
			return -1;
		}
		if (reindex_user(st, fn, user_id, n_r, err_r) < 0)
			return -1;
	} else {
		/* the bodies waiting to be unindexed go with the entries */
		struct store_blobs blobs = {0};
		int r = store_exec(d, "BEGIN IMMEDIATE", err_r);
		if (r == 0 && index_reset(d, xid, &blobs) < 0)
			r = -1;
		r = tx_end(d, r, err_r);
		store_blobs_done(st, &blobs, r == 0);
		if (r < 0)
			return -1;
	}
	/* the bodies not indexed yet (all of them after delete-all) */
	int64_t after = 0;
	for (;;) {
		struct fts_doc *docs;
		size_t n;
		uint64_t added = 0;
		size_t skipped = 0;
		if (batch_read(st, d, fn, user_id, &after, &docs, &n, &skipped) < 0) {
			*err_r = store_db_err(d);
			return -1;
		}
		if (n == 0 && skipped > 0) { /* left to the daemon's indexer */
			free(docs);
			continue;
		}
		if (n == 0) {
			free(docs);
			break;
		}
		int r = store_exec(d, "BEGIN IMMEDIATE", err_r);
		if (r == 0 && docs_insert(d, docs, n, &added) < 0)
			r = -1;
		r = tx_end(d, r, err_r);
		docs_free(docs, n);
		if (r < 0)
			return -1;
		*n_r += added;
	}
	/* FTS5 'optimize': one segment per table, the smallest index */
	if (user == NULL)
		store_exec(d,
			   "INSERT INTO fts_body(fts_body) VALUES ('optimize');"
			   " INSERT INTO fts_head(fts_head) VALUES ('optimize');",
			   NULL);
	/* What is indexed now in the scope, whoever did it: a running daemon's
	 * indexer takes the same waiting bodies as this loop, and either may
	 * write one first. */
	static const char count_sql[] =
		"SELECT count(*) FROM messages m WHERE m.fts = 1 AND (?1 = 0 OR m.id IN"
		" (SELECT mm.message_id FROM mailbox_messages mm JOIN mailboxes b"
		" ON b.id = mm.mailbox_id WHERE b.user_id = ?1))";
	sqlite3_stmt *s = store_sql(d, count_sql, err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, user_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*n_r = (uint64_t)sqlite3_column_int64(s, 0);
	store_stmt_done(s);
	if (rc != SQLITE_ROW) {
		*err_r = store_db_err(d);
		return -1;
	}
	return 0;
}
