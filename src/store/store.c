/* The store: opening the data directory, the schema, crash cleanup, closing,
 * and the statement cache shared by the other store files. */
#include "store/store_int.h"

#include <dirent.h>
#include <sys/file.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

static const char *const stmt_sql[STMT_N] = {
	[STMT_DOMAIN_ID] = "SELECT id FROM domains WHERE name = ?1",
	[STMT_USER_ID] = "SELECT u.id FROM users u JOIN domains d ON d.id = u.domain_id"
			 " WHERE d.name = ?1 AND u.localpart = ?2",
	[STMT_USER_HASH] = "SELECT u.password_hash FROM users u JOIN domains d ON d.id = u.domain_id"
			   " WHERE d.name = ?1 AND u.localpart = ?2",
	[STMT_ALIAS_TARGETS] = "SELECT target FROM aliases WHERE domain_id = ?1 AND localpart = ?2"
			       " ORDER BY id",
	[STMT_BLOB_EXISTS] = "SELECT 1 FROM messages WHERE blob = ?1",
	[STMT_BEGIN] = "BEGIN IMMEDIATE",
	[STMT_BEGIN_READ] = "BEGIN",
	[STMT_COMMIT] = "COMMIT",
	[STMT_ROLLBACK] = "ROLLBACK",
	[STMT_INS_MESSAGE] = "INSERT INTO messages(blob, size, received, mail_from, envid, ret,"
			     " auth_user, cache, body_8bit, smtputf8)"
			     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, coalesce(?9, 0), coalesce(?10, 0))",
	/* Does a local recipient (resolved at RCPT time) still have its INBOX? */
	[STMT_RCPT_INBOX] = "SELECT b.id FROM users u JOIN mailboxes b ON b.user_id = u.id"
			    " WHERE u.id = ?1 AND b.name = 'INBOX'",
	/* One statement allocates the UID and the MODSEQ (RETURNING, SQLite >= 3.35). */
	[STMT_BUMP_INBOX] = "UPDATE mailboxes SET uidnext = uidnext + 1,"
			    " highestmodseq = highestmodseq + 1"
			    " WHERE user_id = ?1 AND name = 'INBOX'"
			    " RETURNING id, uidnext - 1, highestmodseq",
	[STMT_INS_MAILBOX_MSG] = "INSERT INTO mailbox_messages(mailbox_id, uid, message_id, flags,"
				 " modseq, internaldate, internaldate_tz, savedate)"
				 " VALUES(?1, ?2, ?3, '', ?4, ?5, ?6, ?5)",
	/* RFC 9208: one statement checks the limits and counts the message;
	 * no row changed = over quota (or no such user). */
	[STMT_QUOTA_ADD] = "UPDATE quotas SET storage_used = storage_used + ?2,"
			   " message_used = message_used + ?3 WHERE user_id = ?1"
			   " AND (storage_limit = 0 OR storage_used + ?2 <= storage_limit)"
			   " AND (message_limit = 0 OR message_used + ?3 <= message_limit)",
	/* ?8: queue.mail_from (store_delivery.queue_from: SRS), NULL = the message's;
	 * ?9: held (store_delivery.hold) */
	[STMT_INS_QUEUE] = "INSERT INTO queue(message_id, rcpt, orcpt, notify, attempts, next_try,"
			   " last_error, created, domain, mail_from, held)"
			   " VALUES(?1, ?2, ?3, ?4, 0, ?5, NULL, ?6, coalesce(lower(?7), ''), ?8, ?9)",
};

/* The schema is versioned by PRAGMA user_version: version N means that the
 * first N steps of schema_steps[] have run. A new database runs them all, so
 * the path an existing data directory takes is the path every new one takes.
 * The steps are frozen once released: a change is a new step at the end. */

/* Step 1: the first schema. */
static const char schema_v1[] =
	"CREATE TABLE domains ("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE);"
	"CREATE TABLE users ("
	" id INTEGER PRIMARY KEY,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id),"
	" localpart TEXT NOT NULL,"
	" password_hash TEXT NOT NULL,"
	" created INTEGER NOT NULL,"
	" UNIQUE(domain_id, localpart));"
	"CREATE TABLE aliases ("
	" id INTEGER PRIMARY KEY,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
	" localpart TEXT NOT NULL," /* '' = catch-all */
	" target TEXT NOT NULL,"
	" UNIQUE(domain_id, localpart, target));"
	"CREATE TABLE mailboxes ("
	" id INTEGER PRIMARY KEY,"
	" user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	" name TEXT NOT NULL,"
	" uidvalidity INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL DEFAULT 1,"
	" highestmodseq INTEGER NOT NULL DEFAULT 1,"
	" subscribed INTEGER NOT NULL DEFAULT 1,"
	" UNIQUE(user_id, name));"
	"CREATE TABLE messages ("
	" id INTEGER PRIMARY KEY,"
	" blob TEXT NOT NULL UNIQUE,"
	" size INTEGER NOT NULL,"
	" received INTEGER NOT NULL,"
	" mail_from TEXT NOT NULL,"
	" envid TEXT,"
	" ret TEXT,"
	" auth_user TEXT);"
	"CREATE TABLE mailbox_messages ("
	" mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
	" uid INTEGER NOT NULL,"
	" message_id INTEGER NOT NULL REFERENCES messages(id),"
	" flags TEXT NOT NULL DEFAULT '',"
	" modseq INTEGER NOT NULL,"
	" internaldate INTEGER NOT NULL,"
	" PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE INDEX mailbox_messages_message ON mailbox_messages(message_id);"
	"CREATE TABLE queue ("
	" id INTEGER PRIMARY KEY,"
	" message_id INTEGER NOT NULL REFERENCES messages(id),"
	" rcpt TEXT NOT NULL,"
	" orcpt TEXT,"
	" notify TEXT,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_try INTEGER NOT NULL,"
	" last_error TEXT,"
	" created INTEGER NOT NULL);"
	"CREATE INDEX queue_message ON queue(message_id);"
	"CREATE INDEX queue_next_try ON queue(next_try);";

/* Step 2: ids are never reused. A plain INTEGER PRIMARY KEY hands out
 * max(id)+1, so deleting the newest user gave its id to the next one, and a
 * delivery resolved to that id at RCPT time went to the wrong account.
 * AUTOINCREMENT (sqlite_sequence) never goes back. SQLite cannot add it to a
 * table, so each table is rebuilt (https://sqlite.org/lang_altertable.html,
 * "other kinds of table schema changes"), rows and ids kept; the sequences
 * start at the largest id present. Also the store-wide counters: UIDVALIDITY
 * is handed out from one (store_uidvalidity_next), seeded with the largest
 * value in use. Runs with foreign keys off, in one transaction. */
static const char schema_v2[] =
	"CREATE TABLE domains_v2 ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE);"
	"INSERT INTO domains_v2(id, name) SELECT id, name FROM domains;"
	"CREATE TABLE users_v2 ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id),"
	" localpart TEXT NOT NULL,"
	" password_hash TEXT NOT NULL,"
	" created INTEGER NOT NULL,"
	" UNIQUE(domain_id, localpart));"
	"INSERT INTO users_v2(id, domain_id, localpart, password_hash, created)"
	" SELECT id, domain_id, localpart, password_hash, created FROM users;"
	"CREATE TABLE aliases_v2 ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
	" localpart TEXT NOT NULL,"
	" target TEXT NOT NULL,"
	" UNIQUE(domain_id, localpart, target));"
	"INSERT INTO aliases_v2(id, domain_id, localpart, target)"
	" SELECT id, domain_id, localpart, target FROM aliases;"
	"CREATE TABLE mailboxes_v2 ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	" name TEXT NOT NULL,"
	" uidvalidity INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL DEFAULT 1,"
	" highestmodseq INTEGER NOT NULL DEFAULT 1,"
	" subscribed INTEGER NOT NULL DEFAULT 1,"
	" UNIQUE(user_id, name));"
	"INSERT INTO mailboxes_v2(id, user_id, name, uidvalidity, uidnext, highestmodseq,"
	" subscribed) SELECT id, user_id, name, uidvalidity, uidnext, highestmodseq, subscribed"
	" FROM mailboxes;"
	"CREATE TABLE messages_v2 ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" blob TEXT NOT NULL UNIQUE,"
	" size INTEGER NOT NULL,"
	" received INTEGER NOT NULL,"
	" mail_from TEXT NOT NULL,"
	" envid TEXT,"
	" ret TEXT,"
	" auth_user TEXT);"
	"INSERT INTO messages_v2(id, blob, size, received, mail_from, envid, ret, auth_user)"
	" SELECT id, blob, size, received, mail_from, envid, ret, auth_user FROM messages;"
	"CREATE TABLE queue_v2 ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" message_id INTEGER NOT NULL REFERENCES messages(id),"
	" rcpt TEXT NOT NULL,"
	" orcpt TEXT,"
	" notify TEXT,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_try INTEGER NOT NULL,"
	" last_error TEXT,"
	" created INTEGER NOT NULL);"
	"INSERT INTO queue_v2(id, message_id, rcpt, orcpt, notify, attempts, next_try,"
	" last_error, created) SELECT id, message_id, rcpt, orcpt, notify, attempts, next_try,"
	" last_error, created FROM queue;"
	/* The other tables' REFERENCES name the table, so they follow the rename. */
	"DROP TABLE domains; ALTER TABLE domains_v2 RENAME TO domains;"
	"DROP TABLE users; ALTER TABLE users_v2 RENAME TO users;"
	"DROP TABLE aliases; ALTER TABLE aliases_v2 RENAME TO aliases;"
	"DROP TABLE mailboxes; ALTER TABLE mailboxes_v2 RENAME TO mailboxes;"
	"DROP TABLE messages; ALTER TABLE messages_v2 RENAME TO messages;"
	"DROP TABLE queue; ALTER TABLE queue_v2 RENAME TO queue;"
	"CREATE INDEX queue_message ON queue(message_id);"
	"CREATE INDEX queue_next_try ON queue(next_try);"
	"CREATE TABLE counters ("
	" name TEXT PRIMARY KEY,"
	" value INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT INTO counters(name, value)"
	" SELECT 'uidvalidity', coalesce(max(uidvalidity), 0) FROM mailboxes;";

/* Step 3: IMAP (issue 7). Special-use attributes (RFC 6154); subscriptions
 * as names apart from mailboxes (RFC 9051 6.3.7: a name may be subscribed
 * without existing), filled from mailboxes.subscribed, which is no longer
 * used; the zone and save date of each mailbox entry (RFC 9051 2.3.3,
 * RFC 8514); the MIME cache per stored body (NULL: not built yet); the
 * expunge log for QRESYNC (RFC 7162 3.2.5.1: VANISHED (EARLIER)); quota
 * limits and usage counters per user (RFC 9208), seeded with a recount; and
 * the default special-use mailboxes for every existing user, with
 * UIDVALIDITY values from the store-wide counter. */
static const char schema_v3[] =
	"ALTER TABLE mailboxes ADD COLUMN special_use TEXT;"
	"CREATE TABLE subscriptions ("
	" user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	" name TEXT NOT NULL,"
	" PRIMARY KEY(user_id, name)) WITHOUT ROWID;"
	"INSERT INTO subscriptions(user_id, name)"
	" SELECT user_id, name FROM mailboxes WHERE subscribed;"
	"ALTER TABLE mailbox_messages ADD COLUMN internaldate_tz INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE mailbox_messages ADD COLUMN savedate INTEGER NOT NULL DEFAULT 0;"
	"UPDATE mailbox_messages SET savedate = internaldate;"
	"ALTER TABLE messages ADD COLUMN cache BLOB;"
	"CREATE TABLE expunged ("
	" mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
	" uid INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE TABLE quotas ("
	" user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
	" storage_limit INTEGER NOT NULL DEFAULT 0,"
	" message_limit INTEGER NOT NULL DEFAULT 0,"
	" storage_used INTEGER NOT NULL DEFAULT 0,"
	" message_used INTEGER NOT NULL DEFAULT 0);"
	"INSERT INTO quotas(user_id, storage_used, message_used)"
	" SELECT u.id,"
	" (SELECT coalesce(sum(m.size), 0) FROM mailboxes b JOIN mailbox_messages mm"
	"  ON mm.mailbox_id = b.id JOIN messages m ON m.id = mm.message_id WHERE b.user_id = u.id),"
	" (SELECT count(*) FROM mailboxes b JOIN mailbox_messages mm"
	"  ON mm.mailbox_id = b.id WHERE b.user_id = u.id)"
	" FROM users u;"
	/* An existing mailbox with a default name takes its attribute. */
	"WITH s(name, use) AS (VALUES ('Drafts', '\\Drafts'), ('Sent', '\\Sent'),"
	" ('Trash', '\\Trash'), ('Junk', '\\Junk'), ('Archive', '\\Archive'))"
	" UPDATE mailboxes SET special_use = (SELECT use FROM s WHERE s.name = mailboxes.name)"
	" WHERE name IN (SELECT name FROM s);"
	"WITH s(name, use, k) AS (VALUES ('Drafts', '\\Drafts', 1), ('Sent', '\\Sent', 2),"
	" ('Trash', '\\Trash', 3), ('Junk', '\\Junk', 4), ('Archive', '\\Archive', 5))"
	" INSERT INTO mailboxes(user_id, name, uidvalidity, special_use)"
	" SELECT u.id, s.name, (SELECT value FROM counters WHERE name = 'uidvalidity')"
	"  + row_number() OVER (ORDER BY u.id, s.k), s.use"
	" FROM users u CROSS JOIN s WHERE NOT EXISTS"
	" (SELECT 1 FROM mailboxes b WHERE b.user_id = u.id AND b.name = s.name);"
	"UPDATE counters SET value = max(value, (SELECT coalesce(max(uidvalidity), 0)"
	" FROM mailboxes)) WHERE name = 'uidvalidity';"
	"INSERT OR IGNORE INTO subscriptions(user_id, name)"
	" SELECT user_id, name FROM mailboxes WHERE special_use IS NOT NULL;";

/* Step 4: outbound delivery (issue 8). Per queue entry: the recipient's
 * domain (the scheduler groups a message's recipients by it), the lease
 * (owner and expiry: an attempt in flight; an expired lease is free again,
 * so a daemon killed mid-delivery loses nothing), held (admin), whether the
 * "delayed" DSN went out, the last attempt. Per message: whether the body
 * has octets >= 0x80 and whether it needs SMTPUTF8, noted at receipt so the
 * SMTP client knows whether to downgrade (RFC 6152, RFC 6531). Messages
 * already queued are marked 8-bit: the client's downgrade of a 7-bit body
 * is harmless, sending an 8-bit one raw is not. */
static const char schema_v4[] =
	"ALTER TABLE queue ADD COLUMN domain TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE queue ADD COLUMN lease_owner TEXT;"
	"ALTER TABLE queue ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE queue ADD COLUMN held INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE queue ADD COLUMN delay_notified INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE queue ADD COLUMN last_attempt INTEGER NOT NULL DEFAULT 0;"
	"UPDATE queue SET domain = lower(substr(rcpt, instr(rcpt, '@') + 1));"
	"ALTER TABLE messages ADD COLUMN body_8bit INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE messages ADD COLUMN smtputf8 INTEGER NOT NULL DEFAULT 0;"
	"UPDATE messages SET body_8bit = 1 WHERE id IN (SELECT message_id FROM queue);";

/* Step 5: sender authentication (issue 10). settings: small named values
 * the daemon keeps for itself across restarts and nodes (the generated SRS
 * secret). dkim_keys: signing keys per domain, private keys in the store so
 * every node signs alike (the data directory is private to postern);
 * active_from/retire_at carry rotation (a new key signs once its DNS record
 * had time to spread; the old one stops then). queue.mail_from: the
 * envelope sender of an entry when it is not the message's (SRS for
 * forwarded mail). dmarc_*: evaluations recorded for aggregate reports, and
 * the reports received for our domains. */
static const char schema_v5[] =
	"CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE dkim_keys ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" domain TEXT NOT NULL COLLATE NOCASE,"
	" selector TEXT NOT NULL,"
	" alg TEXT NOT NULL,"          /* rsa-sha256 | ed25519-sha256 */
	" private_key TEXT NOT NULL,"  /* PKCS#8 PEM */
	" public_key TEXT NOT NULL,"   /* base64, the record's p= */
	" created INTEGER NOT NULL,"
	" active_from INTEGER NOT NULL,"
	" retire_at INTEGER NOT NULL DEFAULT 0," /* 0: never */
	" UNIQUE (domain, selector));"
	"ALTER TABLE queue ADD COLUMN mail_from TEXT;"
	/* DMARC evaluations for aggregate reports (RFC 7489 7.2; dmarc.c): one
	 * row per evaluated message, deleted after two report intervals. Lists
	 * inside a row are text: rua the record's URIs separated by spaces;
	 * dkim_results "domain selector result" lines separated by LF. */
	"CREATE TABLE dmarc_rows ("
	" id INTEGER PRIMARY KEY,"
	" time INTEGER NOT NULL,"
	" source_ip TEXT NOT NULL,"
	" header_from TEXT NOT NULL,"
	" envelope_from TEXT NOT NULL,"
	" envelope_to TEXT NOT NULL,"
	" policy_domain TEXT NOT NULL,"
	" p TEXT NOT NULL, sp TEXT NOT NULL, pct INTEGER NOT NULL,"
	" adkim TEXT NOT NULL, aspf TEXT NOT NULL, fo TEXT NOT NULL,"
	" rua TEXT NOT NULL,"
	" disposition TEXT NOT NULL,"
	" dkim TEXT NOT NULL, spf TEXT NOT NULL,"   /* policy_evaluated: pass | fail */
	" reason TEXT NOT NULL,"                    /* PolicyOverrideType or "" */
	" reason_comment TEXT NOT NULL,"
	" dkim_results TEXT NOT NULL,"
	" spf_domain TEXT NOT NULL, spf_scope TEXT NOT NULL, spf_result TEXT NOT NULL);"
	"CREATE INDEX dmarc_rows_time ON dmarc_rows (time);";


/* Step 6: spam, abuse and virus filtering (issue 11; src/filter). Each
 * group of tables belongs to one part of the filter; nothing else reads
 * them. */
static const char schema_v6[] =
	/* ---- screen (src/store/screen.c): `postern allow|block` ---- */
	"CREATE TABLE ip_lists ("
	" network TEXT PRIMARY KEY,"           /* canonical CIDR: 192.0.2.0/24, 2001:db8::/32 */
	" list TEXT NOT NULL,"                 /* allow | block */
	" comment TEXT NOT NULL DEFAULT '',"
	" created INTEGER NOT NULL);"
	/* ---- greylisting (src/store/grey.c) ---- */
	"CREATE TABLE greylist ("
	" net TEXT NOT NULL,"                  /* the client network, CIDR */
	" sender TEXT NOT NULL,"               /* envelope sender, lowercase, "" for <> */
	" rcpt TEXT NOT NULL,"                 /* recipient, lowercase */
	" first_seen INTEGER NOT NULL,"
	" PRIMARY KEY (net, sender, rcpt)) WITHOUT ROWID;"
	"CREATE INDEX greylist_first_seen ON greylist (first_seen);" /* load, prune */
	"CREATE TABLE grey_networks ("
	" net TEXT PRIMARY KEY,"
	" allowed_until INTEGER NOT NULL);"
	"CREATE INDEX grey_networks_until ON grey_networks (allowed_until);"
	"CREATE TABLE grey_reputation ("
	" domain TEXT PRIMARY KEY COLLATE NOCASE,"
	" good INTEGER NOT NULL DEFAULT 0,"
	" bad INTEGER NOT NULL DEFAULT 0,"
	" last_seen INTEGER NOT NULL);"
	"CREATE INDEX grey_reputation_seen ON grey_reputation (last_seen);"
	/* ---- the statistical filter (src/store/spam.c); user_id 0: global ---- */
	"CREATE TABLE spam_tokens ("
	" user_id INTEGER NOT NULL,"
	" hash INTEGER NOT NULL,"
	" ham INTEGER NOT NULL DEFAULT 0,"
	" spam INTEGER NOT NULL DEFAULT 0,"
	" last_seen INTEGER NOT NULL,"
	" PRIMARY KEY (user_id, hash)) WITHOUT ROWID;"
	"CREATE TABLE spam_totals ("
	" user_id INTEGER PRIMARY KEY,"
	" ham INTEGER NOT NULL DEFAULT 0,"     /* messages trained */
	" spam INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE spam_train ("            /* the queue of training from IMAP */
	" id INTEGER PRIMARY KEY,"
	" user_id INTEGER NOT NULL,"
	" message_id INTEGER NOT NULL,"
	" spam INTEGER NOT NULL,"              /* 1 spam, 0 ham */
	" queued INTEGER NOT NULL);"
	"CREATE TABLE spam_trained ("          /* what each message was trained as */
	" user_id INTEGER NOT NULL,"
	" message_id INTEGER NOT NULL,"
	" spam INTEGER NOT NULL,"
	" PRIMARY KEY (user_id, message_id)) WITHOUT ROWID;"
	/* ---- thresholds per domain or user (src/store/filter.c) ---- */
	"CREATE TABLE spam_thresholds ("
	" name TEXT PRIMARY KEY COLLATE NOCASE," /* "example.org" or "user@example.org" */
	" junk_score REAL,"                    /* NULL: inherit */
	" reject_score REAL);";

/* Step 7: IMAP for power users (issue 9). Metadata entries (RFC 5464):
 * mailbox_id 0 for server entries; user_id 0 for /shared server entries
 * (set by the administrator), else the owner (a mailbox's entries are its
 * owner's: there are no shared mailboxes); names lowercase (3.2: entry
 * names are case-insensitive). The preview of each stored body (RFC 8970,
 * computed once; NULL: not yet). */
static const char schema_v7[] =
	"CREATE TABLE metadata ("
	" user_id INTEGER NOT NULL,"
	" mailbox_id INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" value BLOB NOT NULL,"
	" PRIMARY KEY (user_id, mailbox_id, name)) WITHOUT ROWID;"
	"ALTER TABLE messages ADD COLUMN preview TEXT;";

/* Step 8: the full-text index (fts.c). messages.fts: 0 not indexed yet (a
 * search treats it as a candidate; the indexer takes it), 1 indexed. Two
 * contentless FTS5 tables of trigrams over text folded as SEARCH folds
 * (case_sensitive 1: no folding of their own), both detail=none (no
 * columns, no positions: the smallest form; detail=column tripled the
 * header table): the bodies, and the header fields (every field, with the
 * address lists also as SEARCH FROM reads them: SUBJECT, FROM... narrow on
 * all the headers, the matcher confirms the field). fts_state
 * 'docs': the documents inserted since the last rebuild (minus the live
 * ones: the expunged bodies whose entries remain until a rebuild). */
static const char schema_v8[] =
	"ALTER TABLE messages ADD COLUMN fts INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX messages_fts_todo ON messages(id) WHERE fts = 0;"
	"CREATE VIRTUAL TABLE fts_body USING fts5(body, tokenize = 'trigram case_sensitive 1',"
	" detail = none, content = '', columnsize = 0);"
	"CREATE VIRTUAL TABLE fts_head USING fts5(hdr, tokenize = 'trigram case_sensitive 1',"
	" detail = none, content = '', columnsize = 0);"
	"CREATE TABLE fts_state (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT INTO fts_state VALUES ('docs', 0);";

/* Step 9: URLAUTH (urlauth.c; RFC 4467 7). The mailbox access key of each
 * mailbox (one per mailbox: a mailbox has one owner), 32 random octets made
 * when GENURLAUTH first needs it; RESETKEY deletes it (the next GENURLAUTH
 * makes a new one, and every URL of the old key stops verifying). Keyed by
 * the mailbox id, which RENAME keeps (the key follows) and which is never
 * reused (AUTOINCREMENT, step 2): the row goes with DELETE and with the
 * user (ON DELETE CASCADE; foreign keys are on for every connection). */
static const char schema_v9[] =
	"CREATE TABLE urlauth_keys ("
	" mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,"
	" user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	" key BLOB NOT NULL);"
	"CREATE INDEX urlauth_keys_user ON urlauth_keys(user_id);";

/* Step 10: the full-text index follows expunge (fts.c). messages.fts = 2: a body that
 * was indexed and has lost its last reference (no mailbox entry, no queue
 * entry); its row and blob stay until the indexer has deleted its entries
 * (given its text again), then both go. fts_sum: a hash of the text the
 * entries were made from (NULL: indexed before this step), checked before
 * the delete, so that a delete is never given another text. */
static const char schema_v10[] =
	"ALTER TABLE messages ADD COLUMN fts_sum INTEGER;"
	"CREATE INDEX messages_fts_gone ON messages(id) WHERE fts = 2;";

/* Step 11: SORT's keys apart from the MIME cache (store.h,
 * store_cache_sort_fn): per stored body the cache's sort section (keys) and
 * its size, a row of ~100-300 octets where the messages row with its cache
 * is kilobytes, so that a SORT over a mailbox reads these and
 * mailbox_messages only. Written with each cache (commit, APPEND,
 * store_cache_save); bodies stored before this step get theirs when a SORT
 * or FETCH first saves their cache again. A change of the section's format
 * (mime/sortinfo.h) must empty the table in a step of its own. */
static const char schema_v11[] =
	"CREATE TABLE sort_keys ("
	" message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
	" size INTEGER NOT NULL,"
	" keys BLOB NOT NULL);";

/* Step 12: the full-text index keeps each indexed body's BODY text (fts.c,
 * fts_text): its length and the text deflated (zlib), so that SEARCH BODY
 * confirms a candidate from it instead of reading and decoding its message
 * file. Filled by the indexer: an index made before (FTS_TEXT_FORMAT 1) is
 * re-made once in the background, its bodies candidates meanwhile. */
static const char schema_v12[] =
	"CREATE TABLE fts_text ("
	" message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
	" len INTEGER NOT NULL,"
	" body BLOB NOT NULL);";

/* Step 13: the IMAP server's kept SORT orders of big mailboxes
 * (sort_orders.c): per mailbox and criteria, the UIDs in order as of
 * max_uid, so that a new process's first SORT reads them instead of every
 * message's keys; written: a counter, the most recent ones per mailbox stay. */
static const char schema_v13[] =
	"CREATE TABLE sort_orders ("
	" mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
	" crit BLOB NOT NULL,"
	" max_uid INTEGER NOT NULL,"
	" uids BLOB NOT NULL,"
	" written INTEGER NOT NULL,"
	" PRIMARY KEY (mailbox_id, crit));";

/* Step 14: THREAD's keys beside SORT's (store_cache_keys_fn): the cache's
 * thread section, so that a THREAD reads these narrow rows instead of every
 * message's cache (kilobytes). NULL for the rows written before; a THREAD
 * reads such a body's cache and saves it again, which fills it. */
static const char schema_v14[] = "ALTER TABLE sort_keys ADD COLUMN thread BLOB;";

static const char *const schema_steps[] = {
    schema_v1, schema_v2,  schema_v3,  schema_v4,  schema_v5,  schema_v6, schema_v7,
    schema_v8, schema_v9, schema_v10, schema_v11, schema_v12, schema_v13, schema_v14};

sqlite3_stmt *store_stmt(struct store_db *d, enum store_stmt_id id)
{
	if (d->stmts[id] == NULL &&
	    sqlite3_prepare_v3(d->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &d->stmts[id],
			       NULL) != SQLITE_OK) {
		log_err("store: prepare %d: %s", (int)id, sqlite3_errmsg(d->db));
		return NULL;
	}
	return d->stmts[id];
}

sqlite3_stmt *store_sql(struct store_db *d, const char *sql, char **err_r)
{
	for (int i = 0; i < d->n_cache; i++)
		if (d->cache[i].sql == sql)
			return d->cache[i].s;
	/* The SQL texts are a fixed set of literals: running out is a bug. */
	x_assert(d->n_cache < STORE_SQL_CACHE);
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v3(d->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK) {
		if (err_r)
			*err_r = store_db_err(d);
		else
			log_err("store: prepare: %s", sqlite3_errmsg(d->db));
		return NULL;
	}
	d->cache[d->n_cache].sql = sql;
	d->cache[d->n_cache++].s = s;
	return s;
}

void store_stmt_done(sqlite3_stmt *s)
{
	if (s == NULL)
		return;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

int store_mark_touch(struct store *st, const char *mark)
{
	char *path = xasprintf("%s/%s", st->dir, mark);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	int err = errno;
	free(path);
	if (fd < 0) {
		errno = err;
		return -1;
	}
	futimens(fd, NULL); /* IN_ATTRIB for the watcher */
	close(fd);
	return 0;
}

void store_mark_stamp(struct store *st, const char *mark, struct store_stamp *r)
{
	struct stat sb;
	char *path = xasprintf("%s/%s", st->dir, mark);
	*r = (struct store_stamp){0, {0, 0}};
	if (stat(path, &sb) == 0)
		*r = (struct store_stamp){(uint64_t)sb.st_ino, sb.st_mtim};
	free(path);
}

int store_mark_watch(struct store *st, const char *mark)
{
	char *path = xasprintf("%s/%s", st->dir, mark);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	int ifd = -1;
	if (fd >= 0) {
		close(fd);
		ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (ifd >= 0 && inotify_add_watch(ifd, path, IN_ATTRIB | IN_CLOSE_WRITE) < 0) {
			close(ifd);
			ifd = -1;
		}
	}
	if (ifd < 0)
		log_warn("store: not watching %s: %s", path, strerror(errno));
	free(path);
	return ifd;
}

void store_mark_drain(int fd)
{
	char ev[4096];
	while (read(fd, ev, sizeof ev) > 0)
		;
}

char *store_db_err(struct store_db *d)
{
	return xasprintf("database error: %s", sqlite3_errmsg(d->db));
}

/* The statements of a transaction's frame: parsing them again for every
 * read snapshot was a tenth of a spool job's SQLite time (perf, filter-bench). */
static int txn_stmt(const char *sql)
{
	static const enum store_stmt_id ids[] = {STMT_BEGIN_READ, STMT_BEGIN, STMT_COMMIT,
						 STMT_ROLLBACK};
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
		if (strcmp(sql, stmt_sql[ids[i]]) == 0)
			return (int)ids[i];
	return -1;
}

int store_exec(struct store_db *d, const char *sql, char **err_r)
{
	int id = txn_stmt(sql);
	if (id >= 0) {
		sqlite3_stmt *s = store_stmt(d, (enum store_stmt_id)id);
		if (s == NULL && err_r != NULL)
			*err_r = store_db_err(d);
		return store_step_done(d, s, err_r);
	}
	char *msg = NULL;
	if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	if (err_r)
		*err_r = xasprintf("database error: %s", msg ? msg : sqlite3_errmsg(d->db));
	sqlite3_free(msg);
	return -1;
}

/* The directory comes from the name's counter field (hex 16..23), in runs of
 * 64: messages spooled at about the same time, which are committed in one
 * batch, share a directory, so a batch fsyncs one or two directories instead
 * of one per message; over time the 256 directories fill evenly. */
int store_blob_dir(const char *name)
{
	if (strlen(name) != STORE_BLOB_NAME_LEN)
		return 0;
	char hex[9];
	memcpy(hex, name + 16, 8);
	hex[8] = '\0';
	return (int)((strtoul(hex, NULL, 16) >> 6) & 0xff);
}

void store_blob_path(const char *name, char *path, size_t size)
{
	snprintf(path, size, "%02x/%s", store_blob_dir(name), name);
}

static int db_open(struct store_db *d, const char *path, char **err_r)
{
	/* NOMUTEX: each connection is used by one thread at a time. */
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &d->db, flags, NULL) != SQLITE_OK) {
		*err_r = xasprintf("%s: %s", path, d->db ? sqlite3_errmsg(d->db) : "cannot open");
		return -1;
	}
	sqlite3_busy_timeout(d->db, 10000);
	/* FULL: a COMMIT that returned is on disk even after power loss. */
	return store_exec(d,
			  "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			  " PRAGMA foreign_keys = ON;",
			  err_r);
}

/* SQLite gives its -wal and -shm files the database file's mode, so creating
 * the file 0600 first keeps all three private without touching the umask
 * (process-wide, and other threads may be creating files). */
static int db_file_create(const char *path, char **err_r)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		*err_r = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

static void db_close(struct store_db *d)
{
	for (int i = 0; i < STMT_N; i++) {
		sqlite3_finalize(d->stmts[i]);
		d->stmts[i] = NULL;
	}
	for (int i = 0; i < d->n_cache; i++)
		sqlite3_finalize(d->cache[i].s);
	d->n_cache = 0;
	if (d->db)
		sqlite3_close(d->db);
	d->db = NULL;
}

static int schema_version(struct store_db *d, char **err_r)
{
	sqlite3_stmt *s;
	int version = -1;
	if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) {
		*err_r = store_db_err(d);
		return -1;
	}
	if (sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version > STORE_SCHEMA_VERSION || version < 0) {
		*err_r = xasprintf("database schema version %d is not supported (this postern knows "
				   "%d)",
				   version, STORE_SCHEMA_VERSION);
		return -1;
	}
	return version;
}

/* Rows that break a foreign key after the rebuild were there before it
 * (foreign keys are always on): worth a line, not a refusal to start. */
static void schema_fk_check(struct store_db *d)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(d->db, "PRAGMA foreign_key_check", -1, &s, NULL) != SQLITE_OK)
		return;
	int n = 0;
	while (sqlite3_step(s) == SQLITE_ROW)
		n++;
	sqlite3_finalize(s);
	if (n)
		log_warn("store: %d rows refer to rows that do not exist (kept as they were)", n);
}

/* Runs the steps a database lacks, all in one transaction. Another process
 * (the CLI beside a starting daemon) may be doing the same: the version is
 * read again under the write lock. Foreign keys are off meanwhile (a table
 * rebuild drops tables that others refer to; the pragma has no effect inside
 * a transaction). */
static int schema_ensure(struct store_db *d, char **err_r)
{
	_Static_assert(sizeof schema_steps / sizeof schema_steps[0] == STORE_SCHEMA_VERSION,
		       "one schema step per version");
	int version = schema_version(d, err_r);
	if (version < 0)
		return -1;
	if (version == STORE_SCHEMA_VERSION)
		return 0;
	if (store_exec(d, "PRAGMA foreign_keys = OFF", err_r) < 0)
		return -1;
	int r = store_exec(d, "BEGIN IMMEDIATE", err_r);
	if (r == 0) {
		version = schema_version(d, err_r);
		r = version < 0 ? -1 : 0;
		int from = version;
		for (; r == 0 && version < STORE_SCHEMA_VERSION; version++)
			r = store_exec(d, schema_steps[version], err_r);
		if (r == 0 && from < STORE_SCHEMA_VERSION) {
			schema_fk_check(d);
			char *sql = xasprintf("PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
			r = store_exec(d, sql, err_r);
			free(sql);
		}
		if (r == 0)
			r = store_exec(d, "COMMIT", err_r);
		if (r < 0)
			store_exec(d, "ROLLBACK", NULL);
		else if (from > 0 && from < STORE_SCHEMA_VERSION)
			log_info("store: database schema upgraded from version %d to %d", from,
				 STORE_SCHEMA_VERSION);
	}
	char *e = NULL;
	if (store_exec(d, "PRAGMA foreign_keys = ON", &e) < 0) {
		if (r == 0)
			*err_r = e;
		else
			free(e);
		return -1;
	}
	return r;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

static int mkdir_private(const char *path, bool *created_r, char **err_r)
{
	if (mkdir(path, 0700) == 0) {
		if (created_r)
			*created_r = true;
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	*err_r = xasprintf("mkdir %s: %s", path, strerror(errno));
	return -1;
}

/* blobs/00 .. blobs/ff exist from the start so the hot path never mkdirs. */
static int dirs_create(struct store *st, char **err_r)
{
	char path[4096];
	bool created = false;
	if (mkdir_private(st->dir, NULL, err_r) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/spool", st->dir);
	if (mkdir_private(path, &created, err_r) < 0)
		return -1;
	st->spool_dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->spool_dfd < 0) {
		*err_r = xasprintf("open %s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof path, "%s/blobs", st->dir);
	if (mkdir_private(path, &created, err_r) < 0)
		return -1;
	bool sub_created = false;
	for (int i = 0; i < STORE_BLOB_DIRS; i++) {
		snprintf(path, sizeof path, "%s/blobs/%02x", st->dir, i);
		if (mkdir_private(path, &sub_created, err_r) < 0)
			return -1;
		st->blob_dfd[i] = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (st->blob_dfd[i] < 0) {
			*err_r = xasprintf("open %s: %s", path, strerror(errno));
			return -1;
		}
	}
	/* New directory entries must survive a crash before any blob relies on them. */
	if (sub_created) {
		snprintf(path, sizeof path, "%s/blobs", st->dir);
		fsync_path(path);
	}
	if (created)
		fsync_path(st->dir);
	return 0;
}

static void spool_clean(struct store *st)
{
	int fd = dup(st->spool_dfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (dir == NULL) {
		if (fd >= 0)
			close(fd);
		log_warn("store: cannot read spool: %s", strerror(errno));
		return;
	}
	rewinddir(dir);
	struct dirent *de;
	unsigned n = 0;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(st->spool_dfd, de->d_name, 0) == 0)
			n++;
		else
			log_warn("store: unlink spool/%s: %s", de->d_name, strerror(errno));
	}
	closedir(dir);
	if (n)
		log_info("store: removed %u unfinished spool files", n);
}

static int blob_known(struct store *st, const char *name)
{
	sqlite3_stmt *s = store_stmt(&st->main, STMT_BLOB_EXISTS);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	store_stmt_done(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* A blob with no message row is what a crash between rename and COMMIT leaves. */
static void blobs_clean(struct store *st)
{
	unsigned n = 0;
	for (int i = 0; i < STORE_BLOB_DIRS; i++) {
		int fd = dup(st->blob_dfd[i]);
		DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
		if (dir == NULL) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		rewinddir(dir);
		struct dirent *de;
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			if (blob_known(st, de->d_name) != 0)
				continue; /* known, or cannot tell: keep */
			if (unlinkat(st->blob_dfd[i], de->d_name, 0) == 0)
				n++;
		}
		closedir(dir);
	}
	if (n)
		log_info("store: removed %u orphan blobs", n);
}

/* Before SQLite's first use (sqlite3_config then; later it is refused,
 * which is harmless). No memory statistics: with them every sqlite3_malloc
 * and free in the process takes one global mutex, for which the committer,
 * the workers' read connections and the loop thread contend (nothing here
 * reads sqlite3_memory_used). */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
static void sqlite_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct store *store_open(const char *data_dir, char **err_r)
{
	pthread_once(&sqlite_once, sqlite_setup);
	struct store *st = xcalloc(1, sizeof *st);
	st->dir = xstrdup(data_dir);
	st->spool_dfd = -1;
	st->lock_fd = -1;
	for (int i = 0; i < STORE_BLOB_DIRS; i++)
		st->blob_dfd[i] = -1;
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cond, NULL);
	pthread_cond_init(&st->idle, NULL);
	pthread_cond_init(&st->stock_cond, NULL);
	pthread_cond_init(&st->build_cond, NULL);
	pthread_mutex_init(&st->sync_mu, NULL);
	pthread_mutex_init(&st->mc_mu, NULL);
	pthread_cond_init(&st->sync_go, NULL);
	pthread_cond_init(&st->sync_done, NULL);
	st->n_syncers = 4;

	int r = dirs_create(st, err_r);
	char *db_path = xasprintf("%s/postern.db", data_dir);
	if (r == 0)
		r = db_file_create(db_path, err_r);
	if (r == 0)
		r = db_open(&st->main, db_path, err_r);
	if (r == 0)
		r = schema_ensure(&st->main, err_r);
	if (r == 0)
		r = db_open(&st->cdb, db_path, err_r);
	free(db_path);
	if (r < 0) {
		store_close(&st);
		return NULL;
	}
	return st;
}

/* One daemon per data directory: it alone may treat spool files and blobs
 * without a message row as crash leftovers. Admin commands open the store
 * beside a running daemon and must not touch them. */
static int store_lock(struct store *st)
{
	char *path = xasprintf("%s/postern.lock", st->dir);
	st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(path);
	if (st->lock_fd < 0 || flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		log_err("store: %s is in use by another postern daemon (%s)", st->dir,
			strerror(errno));
		return -1;
	}
	return 0;
}

int store_start(struct store *st, struct loop *l, unsigned commit_delay_us)
{
	x_assert(!st->started);
	if (store_lock(st) < 0)
		return -1;
	spool_clean(st);
	blobs_clean(st);
	st->loop = l;
	st->commit_delay_us = commit_delay_us;
	if (store_committer_start(st) < 0)
		return -1;
	st->started = true;
	return 0;
}

int store_start_admin(struct store *st, struct loop *l)
{
	x_assert(!st->started);
	st->loop = l;
	if (store_committer_start(st) < 0)
		return -1;
	st->started = true;
	return 0;
}

void store_close(struct store **stp)
{
	struct store *st = *stp;
	if (st == NULL)
		return;
	store_fts_stop(st); /* before the committer: it waits for its last batch */
	if (st->started)
		store_committer_stop(st);
	store_readers_free(st);
	store_spam_cache_free(st);
	db_close(&st->cdb);
	db_close(&st->main);
	if (st->spool_dfd >= 0)
		close(st->spool_dfd);
	if (st->lock_fd >= 0)
		close(st->lock_fd); /* releases the daemon lock */
	for (int i = 0; i < STORE_BLOB_DIRS; i++)
		if (st->blob_dfd[i] >= 0)
			close(st->blob_dfd[i]);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cond);
	pthread_cond_destroy(&st->idle);
	pthread_cond_destroy(&st->stock_cond);
	pthread_cond_destroy(&st->build_cond);
	pthread_mutex_destroy(&st->sync_mu);
	pthread_cond_destroy(&st->sync_go);
	pthread_cond_destroy(&st->sync_done);
	free(st->dir);
	free(st->postmaster);
	free(st->hostname);
	x_free(stp);
}

void store_stats(struct store *st, uint64_t *commits_r, uint64_t *batches_r)
{
	pthread_mutex_lock(&st->mu);
	*commits_r = st->n_commits;
	*batches_r = st->n_batches;
	pthread_mutex_unlock(&st->mu);
}

void store_set_sync_threads(struct store *st, unsigned n)
{
	x_assert(!st->started);
	st->n_syncers = n;
}

/* RFC 3501 2.3.1.1, RFC 9051 2.3.1.1: UIDVALIDITY must change whenever a
 * mailbox name could come back with other UIDs, and is a nonzero 32-bit
 * value. The creation time alone repeats for a mailbox deleted and re-created
 * within a second, or after the clock stepped back; the counter does not. It
 * follows the clock while the clock is ahead (values stay meaningful across a
 * restore from backup) and goes up by one otherwise. */
int store_uidvalidity_next(struct store_db *d, uint32_t *uidvalidity_r, char **err_r)
{
	static const char sql[] = "UPDATE counters SET value = max(value + 1, ?1)"
				  " WHERE name = 'uidvalidity' RETURNING value";
	sqlite3_stmt *s = store_sql(d, sql, err_r);
	if (s == NULL)
		return -1;
	time_t now = time(NULL);
	sqlite3_bind_int64(s, 1, now > 0 && (uint64_t)now <= UINT32_MAX ? (int64_t)now : 1);
	int rc = sqlite3_step(s);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	if (rc == SQLITE_ROW)
		rc = sqlite3_step(s); /* RETURNING: the update is final at the end */
	store_stmt_done(s);
	if (rc != SQLITE_DONE || v < 0) {
		*err_r = rc == SQLITE_DONE ? xasprintf("database error: no uidvalidity counter")
					   : store_db_err(d);
		return -1;
	}
	if (v == 0 || v > UINT32_MAX) {
		/* 4 billion mailboxes beyond the clock: refuse rather than repeat */
		*err_r = xasprintf("UIDVALIDITY values exhausted");
		return -1;
	}
	*uidvalidity_r = (uint32_t)v;
	return 0;
}
