/* The option table below is the single source of truth for every setting:
 * parsing, validation, `postern config defaults` and the reference page all
 * walk it (docs/style.md: Redis static_configs[], Dovecot DEF()). */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"

enum opt_type { OPT_STRING, OPT_INT, OPT_SIZE, OPT_DURATION, OPT_BOOL, OPT_LIST };

struct option {
	const char *name;
	enum opt_type type;
	size_t offset;
	const char *def; /* default, as text; NULL = derived (see doc) */
	long long min, max;
	const char *doc;
	/* Optional check of a string or list value; returns an error text or NULL. */
	const char *(*check)(const char *value);
};

static const char *check_log_level(const char *v);
static const char *check_listen(const char *v);
static const char *check_outbound_tls(const char *v);
static const char *check_outbound_inet(const char *v);
static const char *check_relayhost_tls(const char *v);
static const char *check_postmaster(const char *v);
static const char *check_spf_action(const char *v);
static const char *check_dnsbl_action(const char *v);
static const char *check_failure_action(const char *v);
static const char *check_score(const char *v);
static const char *check_uri(const char *v);

#define OFF(field) offsetof(struct config, field)
#define NOLIMIT 0, 0

static const struct option config_options[] = {
	{"hostname", OPT_STRING, OFF(hostname), NULL, NOLIMIT,
	 "Name used in greetings, Received headers and generated Message-IDs. "
	 "Default: the machine's host name.", NULL},
	{"postmaster", OPT_STRING, OFF(postmaster), "", NOLIMIT,
	 "Where mail for <Postmaster> (RFC 5321 4.5.1) and for postmaster@ each local domain "
	 "that has no account, alias or catch-all of that name goes: an address, local or "
	 "remote. Empty: postmaster@ the first local domain among hostname and its parent "
	 "domains (mx.example.org, then example.org), which must then be an account or an "
	 "alias; when it leads nowhere such mail is refused and the daemon warns at start.",
	 check_postmaster},
	{"data_dir", OPT_STRING, OFF(data_dir), "./data", NOLIMIT,
	 "Directory holding the SQLite database (postern.db), message blobs and the spool.", NULL},
	{"log_level", OPT_STRING, OFF(log_level), "info", NOLIMIT,
	 "One of debug, info, warn, error.", check_log_level},
	{"user", OPT_STRING, OFF(user), "", NOLIMIT,
	 "When started as root, drop privileges to this user after binding listeners and "
	 "reading the TLS key; the data directory is handed to it. Empty: stay as the starting "
	 "user; the daemon refuses to start when that is root (`user = root` runs as root "
	 "deliberately).", NULL},
	{"workers", OPT_INT, OFF(workers), "4", 1, 256,
	 "Worker threads for blocking work (password hashing and the like).", NULL},
	{"worker_nice", OPT_INT, OFF(worker_nice), "10", 0, 19,
	 "Nice value of the threads doing work that grows with a mailbox (IMAP SEARCH, SORT, "
	 "THREAD and FETCH ranges: as many as `workers`) and of the full-text indexer. The event "
	 "loop, the committer and the other workers (logins, SMTP's checks) stay at 0: when the "
	 "CPUs are busy, a big SORT or index pass yields to the loop instead of delaying every "
	 "other session. 0: all alike.", NULL},
	{"tls_cert", OPT_STRING, OFF(tls_cert), NULL, NOLIMIT,
	 "PEM certificate chain. Default: <data_dir>/tls/cert.pem; when neither it nor the key "
	 "exists, a self-signed certificate is generated on first start.", NULL},
	{"tls_key", OPT_STRING, OFF(tls_key), NULL, NOLIMIT,
	 "PEM private key. Default: <data_dir>/tls/key.pem.", NULL},
	{"smtp_listen", OPT_LIST, OFF(smtp_listen), "127.0.0.1:2525", NOLIMIT,
	 "MX listeners (the port 25 role): mail for local domains, no AUTH needed, no relay. "
	 "Comma-separated host:port list; empty disables. Production: *:25", check_listen},
	{"submission_listen", OPT_LIST, OFF(submission_listen), "127.0.0.1:2587", NOLIMIT,
	 "Submission listeners (the port 587 role): STARTTLS, then AUTH, required before MAIL. "
	 "Production: *:587", check_listen},
	{"submissions_listen", OPT_LIST, OFF(submissions_listen), "127.0.0.1:2465", NOLIMIT,
	 "Submission over implicit TLS (the port 465 role, RFC 8314). Production: *:465", check_listen},
	{"smtp_max_message_size", OPT_SIZE, OFF(smtp_max_message_size), "50m", 1024,
	 (long long)1 << 40, "Largest message accepted (announced as SIZE).", NULL},
	{"smtp_max_recipients", OPT_INT, OFF(smtp_max_recipients), "100", 1, 100000,
	 "Recipients per transaction; more get 452 4.5.3 (RFC 5321 4.5.3.1.8).", NULL},
	{"smtp_max_line", OPT_SIZE, OFF(smtp_max_line), "2048", 512, 65536,
	 "Longest command line, CRLF included (RFC 5321 4.5.3.1.4 says at least 512).", NULL},
	{"smtp_max_data_line", OPT_SIZE, OFF(smtp_max_data_line), "64k", 1000, 16 * 1024 * 1024,
	 "Longest line inside a message, CRLF included; longer lines reject the message.", NULL},
	{"smtp_max_errors", OPT_INT, OFF(smtp_max_errors), "10", 1, 1000,
	 "Protocol errors in one session before 421 and disconnect.", NULL},
	{"smtp_timeout", OPT_DURATION, OFF(smtp_timeout), "300", 1, 86400,
	 "Seconds a client may stay silent between commands (RFC 5321 4.5.3.2.7: 5 minutes).", NULL},
	{"smtp_data_timeout", OPT_DURATION, OFF(smtp_data_timeout), "600", 1, 86400,
	 "Seconds a client may stay silent inside DATA or BDAT (RFC 5321 4.5.3.2.6).", NULL},
	{"smtp_max_connections", OPT_INT, OFF(smtp_max_connections), "1000", 1, 1000000,
	 "Concurrent SMTP connections in total; more get 421 at connect.", NULL},
	{"smtp_max_connections_per_ip", OPT_INT, OFF(smtp_max_connections_per_ip), "50", 1, 1000000,
	 "Concurrent SMTP connections from one address.", NULL},
	{"smtp_pregreet_delay_ms", OPT_INT, OFF(smtp_pregreet_delay_ms), "300", 0, 10000,
	 "MX only: milliseconds to hold the banner back from a client not seen before; a client "
	 "that talks first (a bot that does not wait for replies) gets 554 and is closed, as "
	 "with Postfix postscreen's pregreet test. Clients that passed skip the wait for a day. "
	 "0 disables.", NULL},
	{"smtp_auth_plaintext_loopback", OPT_BOOL, OFF(smtp_auth_plaintext_loopback), "no", NOLIMIT,
	 "Offer AUTH without TLS to clients on loopback (127.0.0.0/8, ::1). Never off loopback.", NULL},
	{"pop3_listen", OPT_LIST, OFF(pop3_listen), "127.0.0.1:2110", NOLIMIT,
	 "POP3 listeners (the port 110 role): STLS, then USER/PASS or AUTH. Production: *:110", check_listen},
	{"pop3s_listen", OPT_LIST, OFF(pop3s_listen), "127.0.0.1:2995", NOLIMIT,
	 "POP3 over implicit TLS (the port 995 role, RFC 8314). Production: *:995", check_listen},
	{"pop3_timeout", OPT_DURATION, OFF(pop3_timeout), "600", 1, 86400,
	 "Seconds a POP3 client may stay silent before the session is closed. RFC 1939 3 asks "
	 "for at least 10 minutes (600, the default); smaller values are for tests.", NULL},
	{"pop3_auth_plaintext_loopback", OPT_BOOL, OFF(pop3_auth_plaintext_loopback), "no",
	 NOLIMIT,
	 "Allow USER/PASS and AUTH without TLS to clients on loopback (127.0.0.0/8, ::1). "
	 "Never off loopback.", NULL},
	{"pop3_max_connections", OPT_INT, OFF(pop3_max_connections), "1000", 1, 1000000,
	 "Concurrent POP3 connections in total; more get -ERR [SYS/TEMP] at connect.", NULL},
	{"pop3_max_connections_per_ip", OPT_INT, OFF(pop3_max_connections_per_ip), "50", 1, 1000000,
	 "Concurrent POP3 connections from one address.", NULL},
	{"pop3_max_errors", OPT_INT, OFF(pop3_max_errors), "10", 1, 1000,
	 "Bad POP3 commands in one session before -ERR and disconnect.", NULL},
	{"imap_listen", OPT_LIST, OFF(imap_listen), "127.0.0.1:2143", NOLIMIT,
	 "IMAP listeners (the port 143 role): STARTTLS, then LOGIN or AUTHENTICATE "
	 "(LOGINDISABLED before TLS). Production: *:143", check_listen},
	{"imaps_listen", OPT_LIST, OFF(imaps_listen), "127.0.0.1:2993", NOLIMIT,
	 "IMAP over implicit TLS (the port 993 role, RFC 8314). Production: *:993", check_listen},
	{"imap_auth_plaintext_loopback", OPT_BOOL, OFF(imap_auth_plaintext_loopback), "no",
	 NOLIMIT,
	 "Allow LOGIN and AUTHENTICATE without TLS to clients on loopback (127.0.0.0/8, ::1); "
	 "LOGINDISABLED is then not announced to them. Never off loopback.", NULL},
	{"imap_max_line", OPT_SIZE, OFF(imap_max_line), "64k", 1024, 16 * 1024 * 1024,
	 "Longest line of an IMAP command, literals excluded (RFC 7162 4 asks for at least "
	 "8192 octets); longer lines get BAD.", NULL},
	{"imap_max_command", OPT_SIZE, OFF(imap_max_command), "256k", 4096, 64 * 1024 * 1024,
	 "Largest IMAP command: its lines plus the literals held in memory (every literal but "
	 "an APPEND's message). A literal above it is refused with NO [TOOBIG] before its "
	 "octets are sent (BYE for a non-synchronising one).", NULL},
	{"imap_max_literal", OPT_SIZE, OFF(imap_max_literal), "50m", 1024, (long long)1 << 40,
	 "Largest message APPEND accepts, announced as APPENDLIMIT (RFC 7889); larger ones get "
	 "NO [TOOBIG] before their octets are sent.", NULL},
	{"imap_idle_timeout", OPT_DURATION, OFF(imap_idle_timeout), "30m", 1, 86400,
	 "Seconds an authenticated IMAP client may stay silent (IDLE included) before BYE. "
	 "RFC 9051 5.4 asks for at least 30 minutes (the default); smaller values are for "
	 "tests.", NULL},
	{"imap_preauth_timeout", OPT_DURATION, OFF(imap_preauth_timeout), "60", 1, 3600,
	 "Seconds an IMAP client may stay silent before it has logged in.", NULL},
	{"imap_max_errors", OPT_INT, OFF(imap_max_errors), "20", 1, 1000,
	 "IMAP commands answered BAD in a row before BYE and disconnect.", NULL},
	{"imap_max_connections", OPT_INT, OFF(imap_max_connections), "1000", 1, 1000000,
	 "Concurrent IMAP connections in total; more get BYE [UNAVAILABLE] at connect.", NULL},
	{"imap_max_connections_per_ip", OPT_INT, OFF(imap_max_connections_per_ip), "50", 1,
	 1000000, "Concurrent IMAP connections from one address.", NULL},
	{"imap_max_mailboxes", OPT_INT, OFF(imap_max_mailboxes), "20000", 1, 1000000,
	 "Mailboxes one account may have; CREATE beyond it gets NO [LIMIT].", NULL},
	{"imap_max_mailbox_name", OPT_INT, OFF(imap_max_mailbox_name), "255", 16, 4096,
	 "Longest mailbox name in octets (UTF-8, the hierarchy included); longer names get "
	 "NO [LIMIT].", NULL},
	{"imap_sort_cache_size", OPT_SIZE, OFF(imap_sort_cache_size), "16m", 0,
	 1024 * 1024 * 1024,
	 "Memory for the SORT orders the IMAP server keeps: per mailbox and list of criteria, "
	 "every message's UID in order (4 octets per message), so a SORT repeated while no "
	 "message has arrived (webmail lists) reads and sorts nothing; the least recently used "
	 "go first. Orders of 1,000 messages or more are also kept in the database (at most 8 "
	 "per mailbox) for the first SORT after a restart. 0: none kept.", NULL},
	{"imap_metadata_max_size", OPT_SIZE, OFF(imap_metadata_max_size), "64k", 1024,
	 64 * 1024 * 1024,
	 "Largest value of one IMAP METADATA entry (RFC 5464; at least 1024 octets, 4.1). "
	 "SETMETADATA of a larger one gets NO [METADATA MAXSIZE n].", NULL},
	{"imap_metadata_max_entries", OPT_INT, OFF(imap_metadata_max_entries), "100", 10,
	 1000000,
	 "METADATA entries one mailbox may have (its /private and /shared ones together), "
	 "and the server entries one account may set; a new one beyond it gets NO [METADATA "
	 "TOOMANY]. The same limit applies to the server's /shared entries (postern metadata).",
	 NULL},
	{"imap_metadata_max_user_entries", OPT_INT, OFF(imap_metadata_max_user_entries), "1000",
	 10, 10000000,
	 "METADATA entries one account may have over all its mailboxes and the server; a new "
	 "one beyond it gets NO [METADATA TOOMANY].", NULL},
	{"imap_metadata_admin", OPT_STRING, OFF(imap_metadata_admin), "", NOLIMIT,
	 "The server's /shared/admin METADATA entry (RFC 5464 3.2.1.1: a URI for contacting "
	 "the administrator, read-only for clients). Empty: mailto:postmaster@ the first local "
	 "domain among hostname and its parents, else the domain added first.", check_uri},
	{"auth_max_failures", OPT_INT, OFF(auth_max_failures), "5", 1, 100000,
	 "Failed logins from one address (for IPv6, one /64) within auth_failure_window before "
	 "further attempts are refused. A success does not reset the count.", NULL},
	{"auth_failure_window", OPT_DURATION, OFF(auth_failure_window), "300", 1, 86400,
	 "Window in seconds for auth_max_failures.", NULL},
	{"auth_failure_delay_max", OPT_DURATION, OFF(auth_failure_delay_max), "15", 1, 3600,
	 "Longest wait before a failed login is answered. The wait starts at 1 second and "
	 "doubles with each failure for the same account from the same network (IPv4 /24, "
	 "IPv6 /64) within auth_failure_window; an address that failed recently may not try "
	 "that account again until the wait has passed. An address with no recent failure is "
	 "always checked at once, so nobody can lock a user out.", NULL},
	{"auth_cache_ttl", OPT_DURATION, OFF(auth_cache_ttl), "1h", 0, 7 * 86400,
	 "How long a successful login is remembered (as a keyed MAC, in memory only) so that "
	 "repeated logins skip the deliberately slow password hash. Failed logins are never "
	 "cached. 0 disables.", NULL},
	{"session_output_limit", OPT_SIZE, OFF(session_output_limit), "256k", 4096,
	 (long long)1 << 30,
	 "Replies a session (SMTP, POP3) may have queued for a client that is not reading them. "
	 "Above it the session executes no more commands and long responses (RETR, LIST, UIDL) "
	 "stop producing; both resume once the client has read half of it. Bounds the memory "
	 "one connection can make the server hold, whatever it pipelines.", NULL},
	{"commit_delay_us", OPT_INT, OFF(commit_delay_us), "0", 0, 100000,
	 "Group commit: microseconds the committer waits for more messages before syncing a "
	 "batch. 0: batch only what is already waiting (batches still form under load).", NULL},
	{"dns_resolver", OPT_LIST, OFF(dns_resolver), "", NOLIMIT,
	 "DNS servers to ask (ip or ip:port, IPv6 as [ip]:port), comma-separated. Empty: the "
	 "nameservers of /etc/resolv.conf.", NULL},
	{"dns_timeout_ms", OPT_INT, OFF(dns_timeout_ms), "3000", 50, 60000,
	 "Milliseconds to wait for one DNS answer before trying again (or the next server).",
	 NULL},
	{"dns_tries", OPT_INT, OFF(dns_tries), "3", 1, 10,
	 "DNS tries per query before it counts as a temporary failure.", NULL},
	{"dns_cache_size", OPT_INT, OFF(dns_cache_size), "10000", 0, 10000000,
	 "DNS answers kept in memory, each for at most its TTL; 0 disables the cache.", NULL},
	{"outbound_port", OPT_INT, OFF(outbound_port), "25", 1, 65535,
	 "Port of the mail exchangers postern delivers to (RFC 5321: 25; other values are for "
	 "tests and private networks).", NULL},
	{"outbound_tls", OPT_STRING, OFF(outbound_tls), "may", NOLIMIT,
	 "TLS to mail exchangers: may (STARTTLS when offered, certificate not checked, RFC 7435 "
	 "opportunistic), encrypt (STARTTLS required, not checked), verify (STARTTLS required, "
	 "certificate and name checked), none (never).", check_outbound_tls},
	{"outbound_tls_ca_file", OPT_STRING, OFF(outbound_tls_ca_file), "", NOLIMIT,
	 "PEM CA bundle for outbound_tls = verify and relayhost_tls_verify. Empty: the "
	 "system's (/etc/ssl/certs).", NULL},
	{"outbound_inet", OPT_STRING, OFF(outbound_inet), "all", NOLIMIT,
	 "Address families for outbound connections: all (IPv6 and IPv4 addresses of each host, "
	 "IPv6 first), ipv4, ipv6.", check_outbound_inet},
	{"outbound_connect_timeout", OPT_DURATION, OFF(outbound_connect_timeout), "30", 1, 3600,
	 "Seconds to wait for a TCP connection to a mail exchanger before trying the next "
	 "address.", NULL},
	{"outbound_command_timeout", OPT_DURATION, OFF(outbound_command_timeout), "300", 1, 3600,
	 "Seconds to wait for the greeting and for the reply to EHLO, STARTTLS, AUTH, MAIL, RCPT "
	 "and DATA (RFC 5321 4.5.3.2 asks for 5 minutes).", NULL},
	{"outbound_data_timeout", OPT_DURATION, OFF(outbound_data_timeout), "600", 1, 3600,
	 "Seconds a next hop may take to accept one block of the message and to answer the "
	 "final dot (RFC 5321 4.5.3.2: 3 and 10 minutes).", NULL},
	{"outbound_max_reply", OPT_SIZE, OFF(outbound_max_reply), "64k", 512, 16 * 1024 * 1024,
	 "Largest reply (all lines of one multi-line reply) accepted from a next hop; a longer "
	 "one ends the connection as a temporary failure.", NULL},
	{"relayhost", OPT_STRING, OFF(relayhost), "", NOLIMIT,
	 "Smarthost: send mail for remote domains through this host (host:port, [ipv6]:port) "
	 "instead of their MX, e.g. smtp.provider.example:587 where port 25 is blocked. "
	 "Empty: deliver directly.", NULL},
	{"relayhost_domains", OPT_LIST, OFF(relayhost_domains), "", NOLIMIT,
	 "Recipient domains sent through relayhost; empty: every remote domain.", NULL},
	{"relayhost_tls", OPT_STRING, OFF(relayhost_tls), "starttls", NOLIMIT,
	 "TLS to relayhost: starttls (required; port 587), implicit (port 465, RFC 8314), none "
	 "(only for a relay on loopback or a trusted network).", check_relayhost_tls},
	{"relayhost_tls_verify", OPT_BOOL, OFF(relayhost_tls_verify), "yes", NOLIMIT,
	 "Check relayhost's certificate chain and name.", NULL},
	{"relayhost_user", OPT_STRING, OFF(relayhost_user), "", NOLIMIT,
	 "User name for AUTH at relayhost (PLAIN, or LOGIN when PLAIN is not offered), only "
	 "over TLS. Empty: no AUTH.", NULL},
	{"relayhost_password", OPT_STRING, OFF(relayhost_password), "", NOLIMIT,
	 "Password for relayhost_user. Never logged; keep the configuration file readable by "
	 "postern only.", NULL},
	{"queue_retry_min", OPT_DURATION, OFF(queue_retry_min), "5m", 1, 86400,
	 "Delay before the first retry of a temporary failure; doubled after each attempt up to "
	 "queue_retry_max.", NULL},
	{"queue_retry_max", OPT_DURATION, OFF(queue_retry_max), "4h", 1, 7 * 86400,
	 "Longest delay between two delivery attempts.", NULL},
	{"queue_lifetime", OPT_DURATION, OFF(queue_lifetime), "5d", 1, 60 * 86400,
	 "How long a message is retried before it bounces to its sender (RFC 5321 4.5.4.1: "
	 "4-5 days).", NULL},
	{"queue_delay_warning", OPT_DURATION, OFF(queue_delay_warning), "4h", 0, 60 * 86400,
	 "After this long undelivered, the sender gets one \"delayed\" DSN (RFC 3464); 0: "
	 "never.", NULL},
	{"queue_poll", OPT_DURATION, OFF(queue_poll), "10", 1, 3600,
	 "Seconds between looks at the queue for entries that became due without the daemon "
	 "knowing (changed by `postern queue`, or by another node).", NULL},
	{"queue_lease", OPT_DURATION, OFF(queue_lease), "15m", 1, 86400,
	 "How long a delivery attempt holds its queue entries; entries of a daemon killed "
	 "mid-delivery are retried once it has passed (or at the next start).", NULL},
	{"queue_max_connections", OPT_INT, OFF(queue_max_connections), "100", 1, 100000,
	 "Outbound SMTP connections at a time, in total.", NULL},
	{"queue_max_per_destination", OPT_INT, OFF(queue_max_per_destination), "10", 1, 10000,
	 "Outbound connections at a time to one destination (a recipient domain, or the "
	 "relayhost).", NULL},
	{"queue_max_per_connection", OPT_INT, OFF(queue_max_per_connection), "100", 1, 100000,
	 "Messages one outbound connection carries before it says QUIT.", NULL},
	{"authserv_id", OPT_STRING, OFF(authserv_id), "", NOLIMIT,
	 "The authserv-id of the Authentication-Results fields postern adds (RFC 8601 2.5); "
	 "fields already in a message that claim it are removed. Empty: hostname.", NULL},
	{"spf_action", OPT_STRING, OFF(spf_action), "record", NOLIMIT,
	 "SPF (RFC 7208) on the MX listener: off, record (the result goes into "
	 "Authentication-Results and DMARC decides), or reject (fail refused with 550 5.7.23; "
	 "temperror gives 451 4.7.24). Authenticated submission is never checked.",
	 check_spf_action},
	{"spf_helo", OPT_BOOL, OFF(spf_helo), "yes", NOLIMIT,
	 "Also check the HELO identity (RFC 7208 2.3); recorded as smtp.helo.", NULL},
	{"dkim_verify", OPT_BOOL, OFF(dkim_verify), "yes", NOLIMIT,
	 "Verify the DKIM signatures (RFC 6376) of mail received on the MX listener.", NULL},
	{"dkim_max_signatures", OPT_INT, OFF(dkim_max_signatures), "5", 1, 50,
	 "DKIM signatures verified per message; later ones are ignored (and logged).", NULL},
	{"dkim_min_rsa_bits", OPT_INT, OFF(dkim_min_rsa_bits), "1024", 512, 4096,
	 "Smaller RSA keys make a signature fail (permerror, RFC 8301 3.2).", NULL},
	{"dkim_max_rsa_bits", OPT_INT, OFF(dkim_max_rsa_bits), "4096", 1024, 16384,
	 "Larger RSA keys make a signature fail (permerror): bounds the work per signature.",
	 NULL},
	{"dkim_sign", OPT_BOOL, OFF(dkim_sign), "yes", NOLIMIT,
	 "Sign mail from authenticated users with their domain's keys (`postern dkim keygen`), "
	 "RSA and Ed25519 both.", NULL},
	{"dkim_rotate_grace", OPT_DURATION, OFF(dkim_rotate_grace), "7d", 0, 365 * 86400,
	 "`postern dkim rotate`: the new keys sign only after this long (time to publish "
	 "their DNS records); the old keys stop signing then.", NULL},
	{"dmarc_verify", OPT_BOOL, OFF(dmarc_verify), "yes", NOLIMIT,
	 "Evaluate DMARC (RFC 7489) for mail received on the MX listener.", NULL},
	{"dmarc_enforce", OPT_BOOL, OFF(dmarc_enforce), "yes", NOLIMIT,
	 "Apply the sender domain's policy: p=reject refused at the end of data (550 5.7.1), "
	 "p=quarantine delivered to the recipient's Junk mailbox. No: record only.", NULL},
	{"dmarc_psl_file", OPT_STRING, OFF(dmarc_psl_file),
	 "/usr/share/publicsuffix/public_suffix_list.dat", NOLIMIT,
	 "The public suffix list (Debian package publicsuffix), for organizational domains "
	 "(RFC 7489 3.2).", NULL},
	{"dmarc_reports", OPT_BOOL, OFF(dmarc_reports), "yes", NOLIMIT,
	 "Record every DMARC evaluation and send aggregate reports (RFC 7489 7.2) to the "
	 "domains' rua addresses once per dmarc_report_interval.", NULL},
	{"dmarc_report_from", OPT_STRING, OFF(dmarc_report_from), "", NOLIMIT,
	 "Sender of aggregate reports. Empty: the postmaster target.", NULL},
	{"dmarc_report_org", OPT_STRING, OFF(dmarc_report_org), "", NOLIMIT,
	 "org_name in aggregate reports. Empty: hostname.", NULL},
	{"dmarc_report_interval", OPT_DURATION, OFF(dmarc_report_interval), "1d", 60,
	 30 * 86400, "Time between aggregate reports (RFC 7489 7.2: a day by default).", NULL},
	{"arc_verify", OPT_BOOL, OFF(arc_verify), "yes", NOLIMIT,
	 "Verify ARC chains (RFC 8617) of mail received on the MX listener.", NULL},
	{"arc_seal", OPT_BOOL, OFF(arc_seal), "yes", NOLIMIT,
	 "Add an ARC set to mail forwarded to a remote address (an alias pointing out), signed "
	 "with the forwarding domain's DKIM key.", NULL},
	{"srs", OPT_BOOL, OFF(srs), "yes", NOLIMIT,
	 "Rewrite the envelope sender of forwarded mail (SRS) so that it passes SPF at the "
	 "next hop; bounces to SRS addresses return to the original sender.", NULL},
	{"srs_secret", OPT_LIST, OFF(srs_secret), "", NOLIMIT,
	 "SRS keys: the first signs, every one verifies (rotation). Empty: one generated at "
	 "first start and kept in the store.", NULL},
	{"srs_max_age", OPT_DURATION, OFF(srs_max_age), "21d", 86400, 365 * 86400,
	 "How long an SRS address stays valid for bounces.", NULL},
	/* spam, abuse and virus filtering (src/filter, issue 11) */
	{"trusted_networks", OPT_LIST, OFF(trusted_networks), "127.0.0.0/8, ::1/128", NOLIMIT,
	 "Client networks (CIDR) exempt from the connection stage (DNS blocklists, connection "
	 "rate), greylisting and the per-IP limits; content checks (virus, attachments, milters, "
	 "the spam filter) still apply. Empty: none.", NULL},
	{"dnsbl_sites", OPT_LIST, OFF(dnsbl_sites), "", NOLIMIT,
	 "DNS blocklists and allowlists for client IPs, as Postfix's postscreen_dnsbl_sites: "
	 "zone[=filter][*weight], e.g. `zen.spamhaus.org*3, bl.spamcop.net*2, "
	 "list.dnswl.org=127.0.[0..255].[1..3]*-2`. filter: the answers that count (d.d.d.d, "
	 "a part may be [n..m] or [n;m;...]); weight (default 1) may be negative (allowlist). "
	 "Empty: none.", NULL},
	{"dnsbl_threshold", OPT_INT, OFF(dnsbl_threshold), "1", 1, 1000,
	 "A client whose summed DNSBL weight reaches this is blocked (see dnsbl_action).", NULL},
	{"dnsbl_allowlist_threshold", OPT_INT, OFF(dnsbl_allowlist_threshold), "-1", -1000, 0,
	 "A client whose summed weight is at or below this skips greylisting and the DNSBL "
	 "block (allowlists have negative weights). 0: never.", NULL},
	{"dnsbl_action", OPT_STRING, OFF(dnsbl_action), "enforce", NOLIMIT,
	 "For a blocked client (DNSBL score, or `postern block`): ignore (log only; a client "
	 "in the local block list is still refused, as under enforce), enforce (every RCPT "
	 "refused with 550 5.7.1 naming the list, so that senders learn why), or drop (554 "
	 "5.7.1 greeting, then only QUIT; a client found blocked after the greeting: 550 at "
	 "RCPT, as under enforce).", check_dnsbl_action},
	{"conn_rate_limit", OPT_INT, OFF(conn_rate_limit), "60", 0, 1000000,
	 "New connections per minute one client IP may open to the MX listener; more get "
	 "421 4.7.0. 0: no limit.", NULL},
	{"greylist", OPT_BOOL, OFF(greylist), "yes", NOLIMIT,
	 "Greylisting (RFC 6647) on the MX listener: a message from an unknown (client network, "
	 "sender, recipient) triplet is deferred with 451 4.7.1 until it is retried after "
	 "greylist_delay. Skipped for allowlisted and trusted clients, networks that passed "
	 "before, and DMARC-aligned senders of good reputation. Never for submission.", NULL},
	{"greylist_delay", OPT_DURATION, OFF(greylist_delay), "5m", 0, 86400,
	 "How long a new triplet is deferred.", NULL},
	{"greylist_expire", OPT_DURATION, OFF(greylist_expire), "2d", 600, 30 * 86400,
	 "A deferred triplet not retried within this is forgotten.", NULL},
	{"greylist_allow_time", OPT_DURATION, OFF(greylist_allow_time), "35d", 3600,
	 365 * 86400, "A client network that passed greylisting skips it for this long (renewed "
	 "by every message).", NULL},
	{"greylist_net4", OPT_INT, OFF(greylist_net4), "24", 8, 32,
	 "IPv4 prefix length of the client network in a triplet.", NULL},
	{"greylist_net6", OPT_INT, OFF(greylist_net6), "64", 16, 128,
	 "IPv6 prefix length of the client network in a triplet.", NULL},
	{"greylist_net_new", OPT_INT, OFF(greylist_net_new), "200", 0, 1000000,
	 "New triplets recorded per hour for one client network (IPv4: greylist_net4; IPv6: "
	 "a /48, or greylist_net6 if shorter); past it the network's new triplets are still "
	 "deferred but not recorded, so that one client cannot fill the table and push out "
	 "the triplets of senders waiting for their retry. A message's new triplets are "
	 "recorded all or none. A network that passes once is allowed, so a real sender needs "
	 "one recorded message; one sharing its network with a flooding client waits for the "
	 "next hour. 0: no cap.", NULL},
	{"rate_user_messages", OPT_INT, OFF(rate_user_messages), "500", 0, 10000000,
	 "Messages one authenticated user may send per hour; more get 451 4.7.1. 0: no limit.",
	 NULL},
	{"rate_user_recipients", OPT_INT, OFF(rate_user_recipients), "1000", 0, 10000000,
	 "Recipients one authenticated user may send to per hour. 0: no limit.", NULL},
	{"rate_ip_messages", OPT_INT, OFF(rate_ip_messages), "2000", 0, 10000000,
	 "Messages one client IP may send to the MX listener per hour (a message deferred by "
	 "greylisting counts too). 0: no limit.", NULL},
	{"rate_ip_recipients", OPT_INT, OFF(rate_ip_recipients), "5000", 0, 10000000,
	 "Recipients one client IP may send to per hour. 0: no limit.", NULL},
	{"dup_recipients", OPT_INT, OFF(dup_recipients), "25", 0, 1000000,
	 "The same content (a body fingerprint) sent by one sender (user or client IP) to more "
	 "than this many distinct recipients within dup_window is refused with 451 4.7.1, and "
	 "the postmaster is told. 0: no check.", NULL},
	{"dup_window", OPT_DURATION, OFF(dup_window), "1h", 60, 7 * 86400,
	 "The window of the duplicate check.", NULL},
	{"dup_exempt", OPT_LIST, OFF(dup_exempt), "", NOLIMIT,
	 "Senders exempt from the duplicate check and the recipient rates: authenticated user "
	 "names or envelope sender addresses (mailing lists), or @domain. From an MX client an "
	 "envelope sender is exempt only when SPF passes for it (anybody can write a list's "
	 "address in MAIL FROM; with spf_action = off SPF is not checked and the exemption "
	 "stands); at RCPT, before SPF's result, it is let through and the end of data "
	 "decides.", NULL},
	{"limit_notify", OPT_BOOL, OFF(limit_notify), "yes", NOLIMIT,
	 "Send the postmaster a notice when a user or client first hits a rate or duplicate "
	 "limit (at most one per sender and hour); it is always logged.", NULL},
	{"clamd_socket", OPT_STRING, OFF(clamd_socket), "", NOLIMIT,
	 "clamd (Debian clamav-daemon) to scan every message with: a socket path (a message up "
	 "to 256 KiB is passed as a file descriptor, FILDES: clamd writes no temporary copy; "
	 "larger ones over INSTREAM) or host:port (INSTREAM). Empty: no virus scan.", NULL},
	{"clamd_timeout", OPT_DURATION, OFF(clamd_timeout), "30s", 1, 600,
	 "Time for clamd to answer a scan.", NULL},
	{"clamd_failure", OPT_STRING, OFF(clamd_failure), "tempfail", NOLIMIT,
	 "When clamd is down, times out or errs: tempfail (451 4.7.0, the sender retries) or "
	 "accept (deliver unscanned, logged).", check_failure_action},
	{"clamd_max_size", OPT_SIZE, OFF(clamd_max_size), "25m", 1024, (long long)1 << 34,
	 "Larger messages are not sent to clamd (logged; clamd's StreamMaxLength).", NULL},
	{"attach_check", OPT_BOOL, OFF(attach_check), "yes", NOLIMIT,
	 "Refuse messages with dangerous attachments (554 5.7.1): a name with an extension in "
	 "attach_block, or content that is an executable, a script or a document with macros "
	 "whatever its name.", NULL},
	{"attach_block", OPT_LIST, OFF(attach_block),
	 "ade, adp, app, bat, chm, cmd, com, cpl, dll, exe, hta, ins, isp, jar, js, jse, lib, "
	 "lnk, mde, msc, msi, msp, mst, pif, ps1, scr, sct, shb, sys, vb, vbe, vbs, vxd, wsc, "
	 "wsf, wsh, docm, xlsm, pptm, dotm, xltm, iso, img, vhd", NOLIMIT,
	 "Attachment name extensions refused by attach_check (also inside zip archives).", NULL},
	{"milters", OPT_LIST, OFF(milters), "", NOLIMIT,
	 "Milters (the Sendmail milter protocol: rspamd's proxy, OpenDKIM, clamav-milter) for "
	 "the MX listener, in order: unix:/path or inet:host:port. Empty: none.", NULL},
	{"milter_submission", OPT_BOOL, OFF(milter_submission), "no", NOLIMIT,
	 "Also pass authenticated submission through the milters.", NULL},
	{"milter_timeout", OPT_DURATION, OFF(milter_timeout), "30s", 1, 600,
	 "Time for a milter to answer one step.", NULL},
	{"milter_failure", OPT_STRING, OFF(milter_failure), "tempfail", NOLIMIT,
	 "When a milter is down, times out or breaks the protocol: tempfail (451 4.7.0) or "
	 "accept (go on without it, logged).", check_failure_action},
	{"spam_filter", OPT_BOOL, OFF(spam_filter), "yes", NOLIMIT,
	 "The built-in statistical spam filter (per-user and global token statistics, trained "
	 "when users move mail into or out of Junk, and by `postern spam train`).", NULL},
	{"spam_junk_score", OPT_STRING, OFF(spam_junk_score), "5.0", NOLIMIT,
	 "Messages scoring at least this go to the recipient's Junk mailbox (per domain and "
	 "user: `postern spam threshold`).", check_score},
	{"spam_reject_score", OPT_STRING, OFF(spam_reject_score), "15.0", NOLIMIT,
	 "Messages scoring at least this are refused at the end of data (550 5.7.1).",
	 check_score},
	{"spam_header", OPT_BOOL, OFF(spam_header), "yes", NOLIMIT,
	 "Add X-Spam-Status and X-Spam-Report fields (the score and its reasons) to mail "
	 "received on the MX listener.", NULL},
	{"fts", OPT_BOOL, OFF(fts), "yes", NOLIMIT,
	 "The built-in full-text index for IMAP SEARCH (TEXT, BODY, SUBJECT, FROM, TO, CC, BCC, "
	 "HEADER): bodies are indexed in the background after delivery; a search asks the "
	 "index for candidates and checks each, so results are those of a full scan, with one "
	 "exception: the base64 values of `b=` and `bh=` in DKIM-Signature, ARC-Seal and "
	 "ARC-Message-Signature are not indexed, so a TEXT needle whose every occurrence in a "
	 "message touches one of those values (inside it, or across its edge) is not found "
	 "(HEADER naming those fields still is: it scans). Off: every search scans (`postern "
	 "index rebuild` after turning it back on).", NULL},
};

#define N_OPTIONS (sizeof config_options / sizeof config_options[0])

static const char *check_log_level(const char *v)
{
	return log_level_parse(v) < 0 ? "is not debug, info, warn or error" : NULL;
}

/* v is one of the NULL-terminated words. */
static bool is_one_of(const char *v, const char *const *words)
{
	for (; *words != NULL; words++)
		if (strcmp(v, *words) == 0)
			return true;
	return false;
}

static const char *check_outbound_tls(const char *v)
{
	static const char *const w[] = {"may", "encrypt", "verify", "none", NULL};
	return is_one_of(v, w) ? NULL : "is not may, encrypt, verify or none";
}

static const char *check_outbound_inet(const char *v)
{
	static const char *const w[] = {"all", "ipv4", "ipv6", NULL};
	return is_one_of(v, w) ? NULL : "is not all, ipv4 or ipv6";
}

static const char *check_relayhost_tls(const char *v)
{
	static const char *const w[] = {"starttls", "implicit", "none", NULL};
	return is_one_of(v, w) ? NULL : "is not starttls, implicit or none";
}

static const char *check_spf_action(const char *v)
{
	static const char *const w[] = {"off", "record", "reject", NULL};
	return is_one_of(v, w) ? NULL : "is not off, record or reject";
}

static const char *check_dnsbl_action(const char *v)
{
	static const char *const w[] = {"ignore", "enforce", "drop", NULL};
	return is_one_of(v, w) ? NULL : "is not ignore, enforce or drop";
}

static const char *check_failure_action(const char *v)
{
	static const char *const w[] = {"tempfail", "accept", NULL};
	return is_one_of(v, w) ? NULL : "is not tempfail or accept";
}

/* A spam score: a decimal number, optionally signed, at most one point
 * ("5", "5.0", "-1.5"), within +-1000. */
static const char *check_score(const char *v)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (end == v || *end != '\0' || errno != 0 || d < -1000 || d > 1000 ||
	    strpbrk(v, "eEnNxX") != NULL)
		return "is not a decimal score between -1000 and 1000";
	return NULL;
}

/* A comma-separated list of host:port ("[v6]:port", "*:port"); empty = off. */
static const char *check_listen(const char *v)
{
	const char *p = v;
	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		const char *colon = memrchr(p, ':', n);
		if (colon == NULL || colon + 1 == p + n)
			return "is not a list of host:port";
		for (const char *d = colon + 1; d < p + n; d++)
			if (!isdigit((unsigned char)*d) && !isspace((unsigned char)*d))
				return "is not a list of host:port";
		if (atol(colon + 1) > 65535)
			return "has a port above 65535";
		p += n;
		if (*p == ',')
			p++;
	}
	return NULL;
}

/* local@domain, or empty. */
/* RFC 3986 3.1: scheme ":" then printable ASCII without spaces. */
static const char *check_uri(const char *v)
{
	const char *p = v;

	if (*v == '\0')
		return NULL;
	if (!isalpha((unsigned char)*p))
		return "expected a URI such as mailto:admin@example.org";
	while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
		p++;
	if (*p != ':' || p[1] == '\0')
		return "expected a URI such as mailto:admin@example.org";
	for (; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return "a URI has no spaces, control or non-ASCII characters";
	return NULL;
}

static const char *check_postmaster(const char *v)
{
	const char *at = strrchr(v, '@');

	if (*v == '\0')
		return NULL;
	if (at == NULL || at == v || at[1] == '\0' || strpbrk(v, " \t<>()[],;:\"\\") != NULL)
		return "is not an address (local@domain)";
	return NULL;
}

static const struct option *option_find(const char *name)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strcmp(config_options[i].name, name) == 0)
			return &config_options[i];
	return NULL;
}

/* Parses a number with an optional unit suffix; scale table per type. */
static int parse_scaled(const char *v, enum opt_type type, long long *out_r)
{
	errno = 0;
	char *end;
	long long n = strtoll(v, &end, 10);
	if (end == v || errno != 0 || (n < 0 && type != OPT_INT))
		return -1;
	long long mul = 1;
	if (*end != '\0') {
		char u = (char)tolower((unsigned char)*end);
		if (end[1] != '\0' && !(type == OPT_SIZE && tolower((unsigned char)end[1]) == 'b' &&
					end[2] == '\0'))
			return -1;
		if (type == OPT_SIZE && u == 'k')
			mul = 1024;
		else if (type == OPT_SIZE && u == 'm')
			mul = 1024 * 1024;
		else if (type == OPT_SIZE && u == 'g')
			mul = 1024LL * 1024 * 1024;
		else if (type == OPT_DURATION && u == 's')
			mul = 1;
		else if (type == OPT_DURATION && u == 'm')
			mul = 60;
		else if (type == OPT_DURATION && u == 'h')
			mul = 3600;
		else if (type == OPT_DURATION && u == 'd')
			mul = 86400;
		else
			return -1;
	}
	if (n > LLONG_MAX / mul)
		return -1;
	*out_r = n * mul;
	return 0;
}

static int parse_bool(const char *v, bool *out_r)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return *out_r = true, 0;
		if (strcasecmp(v, no[i]) == 0)
			return *out_r = false, 0;
	}
	return -1;
}

static int option_set(struct config *c, const struct option *o, const char *v, char **err_r)
{
	char *field = (char *)c + o->offset;
	long long n;
	bool b;

	switch (o->type) {
	case OPT_STRING:
	case OPT_LIST:
		if (o->check != NULL && o->check(v) != NULL) {
			*err_r = xasprintf("%s: \"%s\" %s", o->name, v, o->check(v));
			return -1;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		return 0;
	case OPT_BOOL:
		if (parse_bool(v, &b) < 0) {
			*err_r = xasprintf("%s: \"%s\" is not yes or no", o->name, v);
			return -1;
		}
		*(bool *)field = b;
		return 0;
	case OPT_INT:
	case OPT_SIZE:
	case OPT_DURATION:
		if (parse_scaled(v, o->type, &n) < 0) {
			*err_r = xasprintf("%s: \"%s\" is not a valid %s", o->name, v,
					   o->type == OPT_SIZE       ? "size (e.g. 10m)"
					   : o->type == OPT_DURATION ? "duration (e.g. 300, 5m)"
								     : "number");
			return -1;
		}
		if (o->min != o->max && (n < o->min || n > o->max)) {
			*err_r = xasprintf("%s: %s is out of range [%lld, %lld]", o->name, v, o->min,
					   o->max);
			return -1;
		}
		if (o->type == OPT_SIZE)
			*(size_t *)field = (size_t)n;
		else if (o->type == OPT_DURATION)
			*(unsigned *)field = (unsigned)n;
		else
			*(int *)field = (int)n;
		return 0;
	}
	return -1;
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < N_OPTIONS; i++) {
		char *err = NULL;
		if (config_options[i].def && option_set(c, &config_options[i],
							config_options[i].def, &err) < 0)
			fatal("config default: %s", err);
	}
	char host[256];
	if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	c->hostname = xstrdup(host);
}

int config_set(struct config *c, const char *key, const char *value, char **err_r)
{
	const struct option *o = option_find(key);
	if (o == NULL) {
		*err_r = xasprintf("%s: unknown option", key);
		return -1;
	}
	return option_set(c, o, value, err_r);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int config_load(struct config *c, const char *path, char **err_r)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		*err_r = xasprintf("%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, ret = 0;
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			*err_r = xasprintf("%s:%d: expected \"key = value\"", path, lineno);
			ret = -1;
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1), *err = NULL;
		/* A comment is a line of its own, as in Postfix's main.cf: a '#'
		 * after the value is part of it (a password may hold one). One
		 * after white space is most likely a comment by mistake, which
		 * would make, say, clamd_socket a path that does not exist. */
		if (value[0] == '#' || strstr(value, " #") != NULL || strstr(value, "\t#") != NULL)
			log_warn("%s:%d: %s: the value has a '#' at its start or after white space, "
				 "and it is part of the value: a comment must be on a line of its own",
				 path, lineno, key);
		if (config_set(c, key, value, &err) < 0) {
			*err_r = xasprintf("%s:%d: %s", path, lineno, err);
			free(err);
			ret = -1;
			break;
		}
	}
	free(line);
	fclose(f);
	return ret;
}

int config_finish(struct config *c, char **err_r)
{
	if (c->data_dir[0] == '\0') {
		*err_r = xstrdup("data_dir: must not be empty");
		return -1;
	}
	if (c->hostname[0] == '\0' || strpbrk(c->hostname, " \t<>[]@") != NULL) {
		*err_r = xasprintf("hostname: \"%s\" is not a valid host name", c->hostname);
		return -1;
	}
	if (c->authserv_id[0] == '\0') {
		free(c->authserv_id);
		c->authserv_id = xstrdup(c->hostname);
	}
	if (c->tls_cert == NULL)
		c->tls_cert = xasprintf("%s/tls/cert.pem", c->data_dir);
	if (c->tls_key == NULL)
		c->tls_key = xasprintf("%s/tls/key.pem", c->data_dir);
	if (c->smtp_max_message_size < 1024) {
		*err_r = xstrdup("smtp_max_message_size: must be at least 1k");
		return -1;
	}
	return 0;
}

void config_free(struct config *c)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &config_options[i];
		if (o->type == OPT_STRING || o->type == OPT_LIST)
			x_free((char **)((char *)c + o->offset));
	}
}

static const char *const type_names[] = {"string", "integer", "size", "duration", "yes/no",
					 "list"};

void config_print_defaults(FILE *f)
{
	fprintf(f, "# postern configuration: every option with its default.\n"
		   "# Format: key = value; sizes take k/m/g, durations s/m/h/d.\n\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &config_options[i];
		fprintf(f, "# %s (%s)\n", o->doc, type_names[o->type]);
		if (o->def)
			fprintf(f, "#%s = %s\n\n", o->name, o->def);
		else
			fprintf(f, "#%s =\n\n", o->name);
	}
}

void config_print_reference(FILE *f)
{
	fprintf(f, "# postern configuration reference\n\n"
		   "Generated by `postern config reference` from the option table in "
		   "src/core/config.c.\n\n"
		   "The file holds `key = value` lines; a line that starts with `#` is a comment (a "
		   "`#` after a value is part of the value, as in Postfix's main.cf). Sizes accept k, m, g "
		   "(1024-based); durations accept s, m, h (plain numbers are seconds). `postern "
		   "check-config` reports errors as `file:line: option: problem`; `-o key=value` on "
		   "the command line overrides the file.\n\n"
		   "| option | type | default | range | meaning |\n|---|---|---|---|---|\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &config_options[i];
		char range[64] = "";
		if (o->min != o->max)
			snprintf(range, sizeof range, "%lld – %lld", o->min, o->max);
		fprintf(f, "| `%s` | %s | %s | %s | %s |\n", o->name, type_names[o->type],
			o->def ? (o->def[0] ? o->def : "(empty)") : "(derived)", range, o->doc);
	}
	fprintf(f, "\n## Example\n\n```\nhostname = mail.example.org\ndata_dir = "
		   "/var/lib/postern\nuser = postern\nsmtp_listen = *:25\nsubmission_listen = "
		   "*:587\nsubmissions_listen = *:465\ntls_cert = "
		   "/etc/letsencrypt/live/mail.example.org/fullchain.pem\ntls_key = "
		   "/etc/letsencrypt/live/mail.example.org/privkey.pem\nsmtp_max_message_size = "
		   "25m\n```\n");
}
