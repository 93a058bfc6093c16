/* Configuration: one option table (config.c, config_options[]) is the single
 * source of truth for names, types, defaults, ranges and docs. Parsing,
 * validation, `postern config defaults` and docs/config.md all come from it.
 *
 * File format: "key = value" lines; '#' starts a comment line; blank lines
 * ignored. Values are taken verbatim after trimming (no quoting). Sizes accept
 * k/m/g suffixes (1024-based); durations accept s/m/h/d suffixes (default
 * seconds). Lists are comma-separated. */
#ifndef POSTERN_CORE_CONFIG_H
#define POSTERN_CORE_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config {
	/* general */
	char *hostname;          /* name in greetings and Received; default: gethostname() */
	char *postmaster;        /* target of <Postmaster> and unclaimed postmaster@ */
	char *data_dir;          /* SQLite database, blobs, spool */
	char *log_level;
	char *user;              /* drop privileges to this user when started as root */
	int workers;             /* worker threads for blocking work */
	int worker_nice;         /* their nice value (core/pool.h) */
	/* TLS */
	char *tls_cert;          /* default: <data_dir>/tls/cert.pem (self-signed if absent) */
	char *tls_key;
	/* listeners: comma-separated lists of host:port, empty = off */
	char *smtp_listen;        /* MX role: port 25 */
	char *submission_listen;  /* 587 role: STARTTLS + AUTH required */
	char *submissions_listen; /* 465 role: implicit TLS */
	/* SMTP limits */
	size_t smtp_max_message_size;
	int smtp_max_recipients;
	size_t smtp_max_line;         /* command line length incl. CRLF */
	size_t smtp_max_data_line;    /* DATA line length incl. CRLF */
	int smtp_max_errors;          /* protocol errors before 421 and close */
	unsigned smtp_timeout;        /* seconds of client silence before 421 */
	unsigned smtp_data_timeout;   /* seconds of silence inside DATA/BDAT */
	int smtp_max_connections;     /* total */
	int smtp_max_connections_per_ip;
	int smtp_pregreet_delay_ms;   /* MX: wait before the banner; talkers are refused */
	bool smtp_auth_plaintext_loopback; /* allow AUTH without TLS from loopback */
	/* POP3 */
	char *pop3_listen;            /* 110 role: STLS */
	char *pop3s_listen;           /* 995 role: implicit TLS */
	unsigned pop3_timeout;        /* seconds of client silence before close */
	bool pop3_auth_plaintext_loopback; /* allow USER/PASS/AUTH without TLS from loopback */
	int pop3_max_connections;
	int pop3_max_connections_per_ip;
	int pop3_max_errors;          /* bad commands before -ERR and close */
	/* IMAP */
	char *imap_listen;            /* 143 role: STARTTLS */
	char *imaps_listen;           /* 993 role: implicit TLS */
	bool imap_auth_plaintext_loopback; /* allow LOGIN/AUTHENTICATE without TLS from loopback */
	size_t imap_max_line;         /* one line of a command, literals excluded */
	size_t imap_max_command;      /* a whole command: lines plus inline literals */
	size_t imap_max_literal;      /* APPEND message literal (APPENDLIMIT) */
	unsigned imap_idle_timeout;   /* seconds of silence once authenticated */
	unsigned imap_preauth_timeout; /* seconds of silence before login */
	int imap_max_errors;          /* BADs in a row before BYE and close */
	int imap_max_connections;
	int imap_max_connections_per_ip;
	int imap_max_mailboxes;       /* mailboxes per account */
	int imap_max_mailbox_name;    /* octets of a mailbox name (UTF-8) */
	/* IMAP METADATA (RFC 5464) */
	size_t imap_sort_cache_size;  /* SORT orders kept (imap/sortorder.c) */
	size_t imap_metadata_max_size; /* octets of one entry's value */
	int imap_metadata_max_entries; /* per mailbox, and on the server, per user */
	int imap_metadata_max_user_entries; /* every entry of one account */
	char *imap_metadata_admin;    /* server /shared/admin URI; "" = mailto:postmaster@ */
	int auth_max_failures;        /* failed AUTHs per IP within auth_failure_window */
	unsigned auth_failure_window; /* seconds */
	unsigned auth_failure_delay_max; /* seconds: cap of the growing failed-login delay */
	unsigned auth_cache_ttl;      /* seconds a verified login is remembered; 0 = off */
	/* every protocol's sessions */
	size_t session_output_limit;  /* pending output above which a session runs nothing */
	/* store */
	int commit_delay_us;          /* group commit: extra wait to gather a batch */
	/* DNS (src/dns) */
	char *dns_resolver;           /* "ip[:port],..."; empty = /etc/resolv.conf */
	int dns_timeout_ms;           /* per try */
	int dns_tries;
	int dns_cache_size;           /* answers kept (TTL-bound); 0 = no cache */
	/* outbound delivery (src/queue, the SMTP client in src/smtp/client.c) */
	int outbound_port;            /* port of MX hosts (25; tests use others) */
	char *outbound_tls;           /* "may" | "encrypt" | "verify" | "none" */
	char *outbound_tls_ca_file;   /* CA bundle for "verify" and the relay host; "" = system */
	char *outbound_inet;          /* "all" | "ipv4" | "ipv6" */
	unsigned outbound_connect_timeout; /* seconds */
	unsigned outbound_command_timeout; /* greeting, EHLO, MAIL, RCPT, DATA: RFC 5321 4.5.3.2 */
	unsigned outbound_data_timeout;    /* per data block and for the reply to the final dot */
	size_t outbound_max_reply;    /* octets of one reply (all its lines) from a next hop */
	/* smarthost */
	char *relayhost;              /* "host:port" or ""; every remote domain goes there */
	char *relayhost_domains;      /* list: only these recipient domains; empty = all */
	char *relayhost_tls;          /* "starttls" | "implicit" | "none" */
	bool relayhost_tls_verify;    /* check the relay's certificate and name */
	char *relayhost_user;         /* AUTH PLAIN/LOGIN user, "" = no AUTH */
	char *relayhost_password;     /* never logged */
	/* the queue */
	unsigned queue_retry_min;     /* seconds: first retry delay, doubled per attempt */
	unsigned queue_retry_max;     /* seconds: cap of the retry delay */
	unsigned queue_lifetime;      /* seconds a message may stay queued before it bounces */
	unsigned queue_delay_warning; /* seconds before a "delayed" DSN; 0 = never */
	unsigned queue_poll;          /* seconds between looks for entries due (CLI changes) */
	unsigned queue_lease;         /* seconds one delivery attempt holds its entries */
	int queue_max_connections;    /* outbound connections in total */
	int queue_max_per_destination; /* connections to one destination (domain or relay) */
	int queue_max_per_connection; /* messages one connection carries before QUIT */
	/* sender authentication (src/policy, issue 10) */
	char *authserv_id;            /* RFC 8601 authserv-id; "" = hostname */
	char *spf_action;             /* MX: "off" | "record" | "reject" (fail: 550 5.7.23) */
	bool spf_helo;                /* check the HELO identity too (RFC 7208 2.3) */
	bool dkim_verify;             /* verify DKIM signatures of inbound mail */
	int dkim_max_signatures;      /* signatures verified per message (the rest: ignored) */
	int dkim_min_rsa_bits;        /* smaller RSA keys: permerror (RFC 8301 3.2) */
	int dkim_max_rsa_bits;        /* larger RSA keys: permerror (bounded work) */
	bool dkim_sign;               /* sign mail from local users (domains with keys) */
	unsigned dkim_rotate_grace;   /* seconds: a rotated key signs after this; the old retires */
	bool dmarc_verify;            /* evaluate DMARC for inbound mail */
	bool dmarc_enforce;           /* apply p=reject (550 5.7.1) and p=quarantine (Junk) */
	char *dmarc_psl_file;         /* the public suffix list */
	bool dmarc_reports;           /* send daily aggregate reports to rua */
	char *dmarc_report_from;      /* From of aggregate reports; "" = postmaster target */
	char *dmarc_report_org;       /* org_name in reports; "" = hostname */
	unsigned dmarc_report_interval; /* seconds between aggregate reports (1d) */
	bool arc_verify;              /* verify ARC chains of inbound mail (RFC 8617) */
	bool arc_seal;                /* seal mail forwarded to remote addresses */
	bool srs;                     /* rewrite the envelope sender of forwarded mail */
	char *srs_secret;             /* list: first signs, all verify; "" = generated, stored */
	unsigned srs_max_age;         /* seconds an SRS address is valid (timestamp check) */
	/* spam, abuse and virus filtering (src/filter, issue 11) */
	char *trusted_networks;       /* CIDR list: no connection stage, greylist, IP limits */
	char *dnsbl_sites;            /* zone[=filter][*weight], postscreen syntax */
	int dnsbl_threshold;          /* summed weight that blocks */
	int dnsbl_allowlist_threshold; /* summed weight at or below: allowlisted (0: never) */
	char *dnsbl_action;           /* "ignore" | "enforce" (550 at RCPT) | "drop" (554 greeting) */
	int conn_rate_limit;          /* MX connections per minute per IP (0: none) */
	bool greylist;                /* RFC 6647 on the MX listener */
	unsigned greylist_delay;      /* seconds a new triplet is deferred */
	unsigned greylist_expire;     /* seconds a deferred triplet waits for its retry */
	unsigned greylist_allow_time; /* seconds a network that passed skips greylisting */
	int greylist_net4, greylist_net6; /* prefix lengths of the triplet's network */
	int greylist_net_new;         /* new triplets recorded per network per hour (0: no cap) */
	int rate_user_messages;       /* per authenticated user per hour (0: none) */
	int rate_user_recipients;
	int rate_ip_messages;         /* per MX client IP per hour (0: none) */
	int rate_ip_recipients;
	int dup_recipients;           /* same body to more distinct recipients: 451 (0: off) */
	unsigned dup_window;          /* seconds */
	char *dup_exempt;             /* list: users, sender addresses, @domains */
	bool limit_notify;            /* notice to the postmaster on a first hit */
	char *clamd_socket;           /* path or host:port; "" = no scan */
	unsigned clamd_timeout;       /* seconds */
	char *clamd_failure;          /* "tempfail" | "accept" */
	size_t clamd_max_size;        /* larger: not scanned */
	bool attach_check;            /* dangerous attachments refused */
	char *attach_block;           /* list of extensions */
	char *milters;                /* list: unix:/path | inet:host:port */
	bool milter_submission;       /* milters for authenticated submission too */
	unsigned milter_timeout;      /* seconds per step */
	char *milter_failure;         /* "tempfail" | "accept" */
	bool spam_filter;             /* the built-in statistical filter */
	char *spam_junk_score;        /* decimal, e.g. "5.0" (filter_score_parse) */
	char *spam_reject_score;      /* decimal, e.g. "15.0" */
	bool spam_header;             /* X-Spam-Status / X-Spam-Report on MX mail */
	bool fts;                     /* the full-text index (store/fts.c) */
};

/* Fills c with the defaults. */
void config_defaults(struct config *c);
/* Loads path over the current values. On error returns -1 and *err_r is a
 * heap string "path:line: option: problem". A missing file is an error. */
int config_load(struct config *c, const char *path, char **err_r);
/* Sets one option from text ("key", "value"); for -o key=value overrides.
 * Returns -1 with *err_r on unknown key or bad value. */
int config_set(struct config *c, const char *key, const char *value, char **err_r);
/* Cross-option checks and derived defaults (tls paths from data_dir). */
int config_finish(struct config *c, char **err_r);
void config_free(struct config *c);
/* Writes every option with default and doc, as a commented example file. */
void config_print_defaults(FILE *f);
/* Writes docs/config.md style markdown reference. */
void config_print_reference(FILE *f);

#endif
