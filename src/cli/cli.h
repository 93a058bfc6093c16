/* The admin CLI's shared helpers and the subcommands kept in their own files
 * (src/cli/<name>.c). main.c parses options, loads the configuration and
 * dispatches. A subcommand returns the exit status: 0 ok, 1 failure, 2 usage,
 * 75 temporary (DNS). */
#ifndef POSTERN_CLI_CLI_H
#define POSTERN_CLI_CLI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config;
struct store;
struct loop;
struct dns;
struct pool;
struct buf;
struct dkim_limits;

/* The store, opened as `postern user ...` does (data directory created,
 * privileges dropped when run as root); NULL after printing why. Close with
 * store_close. */
struct store *cli_open_store(const struct config *cfg);
/* The resolver the daemon would use (dns_resolver...), on loop l; NULL after
 * logging why. */
struct dns *cli_dns(struct loop *l, const struct config *cfg);
/* r < 0: prints "postern: <*errp>" (or "failed") to stderr, frees *errp,
 * returns 1; else 0. */
int cli_report(int r, char **errp);

/* common.c: a subcommand's private loop, with the daemon's resolver
 * (CLI_LOOP_DNS) and a worker pool of one thread (CLI_LOOP_POOL) when asked. */
#define CLI_LOOP_DNS 1
#define CLI_LOOP_POOL 2
struct cli_loop {
	struct loop *l;
	struct dns *dns;   /* NULL unless CLI_LOOP_DNS */
	struct pool *pool; /* NULL unless CLI_LOOP_POOL */
};
/* 0, or -1 (no resolver, logged; nothing left to close). */
int cli_loop_open(struct cli_loop *c, const struct config *cfg, int flags);
void cli_loop_close(struct cli_loop *c);
/* stdin whole into out, every line end made CRLF (a message on disk often
 * has bare LF; the code under test sees what SMTP would deliver). 0, or -1
 * once out holds more than max octets (max 0: no limit). */
int cli_read_message(struct buf *out, size_t max);
/* The same; *lf_r (when not NULL): the input had line ends and every one was
 * a bare LF (none CRLF), so that a command can answer in the input's form. */
int cli_read_message_ends(struct buf *out, size_t max, bool *lf_r);
/* Writes p to f with every CRLF as LF (the reverse of cli_read_message for
 * an input whose line ends were all bare LF). */
void cli_write_lf(FILE *f, const char *p, size_t n);
/* The daemon's DKIM/ARC limits (dkim_max_signatures, dkim_*_rsa_bits). */
#define CLI_DKIM_MAX_FIELD (64 * 1024)
#define CLI_DKIM_MAX_FIELDS 1000
void cli_dkim_limits(const struct config *cfg, struct dkim_limits *lim);

/* spf.c: `postern spf check IP HELO SENDER` */
int cli_spf(const struct config *cfg, int argc, char **argv);
/* dkim.c: `postern dkim keygen|list|rotate|retire|verify|sign ...` */
int cli_dkim(const struct config *cfg, int argc, char **argv);
/* arc.c: `postern arc verify < message`, `postern arc seal DOMAIN --ar TEXT` */
int cli_arc(const struct config *cfg, int argc, char **argv);
/* dmarc.c: `postern dmarc check|reports|send-reports ...` */
int cli_dmarc(const struct config *cfg, int argc, char **argv);
/* dmarc_check.c: `postern dmarc check ...` (cli_dmarc dispatches "check" here) */
int cli_dmarc_check(const struct config *cfg, int argc, char **argv);
/* dnsrec.c: `postern dns records DOMAIN`, `postern dns check DOMAIN` */
int cli_dns_records(const struct config *cfg, int argc, char **argv);

/* Filtering (issue 11). argv[0] is the command word itself. */
/* block.c: `postern block|allow add|del|list [CIDR] [--comment TEXT]` */
int cli_block(const struct config *cfg, int argc, char **argv);
/* spam.c: `postern spam train|stats ...` (spam threshold: cli_spam_threshold) */
int cli_spam(const struct config *cfg, int argc, char **argv);
/* spam.c: `postern mail explain USER UID [MAILBOX]` (argv[0] "explain") */
int cli_mail_explain(const struct config *cfg, int argc, char **argv);
/* threshold.c: `postern spam threshold [DOMAIN|USER [junk=N] [reject=N]]` */
int cli_spam_threshold(const struct config *cfg, int argc, char **argv);

/* metadata.c: `postern metadata get [ENTRY] | set ENTRY [VALUE] | del ENTRY`,
 * the server's /shared METADATA entries (RFC 5464); argv[0] "metadata". */
int cli_metadata(const struct config *cfg, int argc, char **argv);
/* index.c: `postern index stats`, `postern index rebuild USER|--all` */
int cli_index(const struct config *cfg, int argc, char **argv);

#endif
