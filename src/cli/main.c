/* postern: the daemon and its admin commands.
 *
 *   postern [-c FILE] [-o key=value]... COMMAND [ARGS]
 *
 * The config file defaults to $POSTERN_CONFIG, else ./postern.conf when it
 * exists, else the built-in defaults. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <malloc.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "auth/login.h"
#include "auth/password.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/tls.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "filter/filter.h"
#include "policy/policy.h"
#include "policy/srs.h"
#include "queue/bounce.h"
#include "queue/queue.h"
#include "imap/server.h"
#include "mime/extract.h"
#include "mime/mime.h"
#include "policy/report.h"
#include "pop3/server.h"
#include "smtp/server.h"
#include "store/store.h"

/* Shutdown (drain): how long sessions waiting on a commit, a login or an
 * expunge are waited for; then how long output still queued for clients is;
 * how often the servers are swept meanwhile. */
#define SHUTDOWN_WAIT_MS 10000
#define SHUTDOWN_DRAIN_MS 500
#define SHUTDOWN_TICK_MS 10

static void usage(FILE *f)
{
	fprintf(f,
		"usage: postern [-c FILE] [-o key=value]... COMMAND\n"
		"\n"
		"  serve                          run the daemon in the foreground\n"
		"  check-config                   validate the configuration\n"
		"  config defaults|reference      print every option (example file / markdown)\n"
		"  domain add|del DOMAIN          manage local domains\n"
		"  domain list\n"
		"  user add ADDR [--hash HASH]    add an account (password read from stdin)\n"
		"  user passwd ADDR               set a password (read from stdin)\n"
		"  user del ADDR\n"
		"  user list [DOMAIN]\n"
		"  alias add ALIAS TARGET...      ALIAS may be @domain (catch-all)\n"
		"  alias del ALIAS [TARGET]\n"
		"  alias list [DOMAIN]\n"
		"  mailbox list USER\n"
		"  mailbox create USER NAME       also creates missing parents (\"a/b\": \"a\")\n"
		"  mailbox delete USER NAME       refused for INBOX and mailboxes with children\n"
		"  mailbox rename USER NAME NEW   children follow; INBOX: its messages move\n"
		"  quota set USER STORAGE MESSAGES  limits (sizes take k/m/g; 0 = none)\n"
		"  quota get USER                 usage and limits (0 = none)\n"
		"  index stats                    the full-text index: bodies, size\n"
		"  index rebuild USER|--all       re-index USER's bodies, or everything\n"
		"  mail list USER [MAILBOX]       UID SIZE INTERNALDATE FLAGS\n"
		"  mail cat USER UID [MAILBOX]    write the stored message to stdout\n"
		"  queue list                     outbound recipients waiting for delivery\n"
		"  queue show ID                  one queued message (ID: as in list and the logs)\n"
		"  queue retry ID|all             due now (the daemon sees it within queue_poll)\n"
		"  queue flush                    every entry due now (= retry all)\n"
		"  queue hold ID|all              not tried until released\n"
		"  queue release ID|all           held no more, due now\n"
		"  queue delete ID|all            removed without a bounce\n"
		"  dns lookup TYPE NAME           A, AAAA, MX, TXT, PTR or TLSA: records, TTLs, status\n"
		"  dns mx DOMAIN [all|ipv4|ipv6]  where mail for DOMAIN goes (RFC 5321 5.1)\n"
		"  dns host NAME [all|ipv4|ipv6]  one host's addresses\n"
		"  dns ptr IP                     the verified (forward-confirmed) reverse name\n"
		"  dns records DOMAIN             every DNS record to publish for DOMAIN\n"
		"  dns check DOMAIN               those records as the resolver sees them: ok, missing, wrong\n"
		"  spf check IP HELO SENDER       SPF (RFC 7208) result for a client\n"
		"  dkim keygen|list|rotate ...    DKIM signing keys per domain (see docs)\n"
		"  arc verify|seal DOMAIN < MSG   ARC chain result / the message sealed (RFC 8617)\n"
		"  dmarc reports ADDRESS          aggregate reports received in ADDRESS's mailboxes\n"
		"  dmarc send-reports [--since EPOCH --until EPOCH]\n"
		"                                 one aggregate report run now (RFC 7489 7.2)\n"
		"  block|allow add|del|list [CIDR] local IP block/allow lists (connection stage)\n"
		"  spam train|stats|threshold ...  the statistical spam filter (see docs)\n"
		"  mail explain USER UID [MAILBOX] why a message was judged spam or not\n"
		"  metadata get [ENTRY]           the server's /shared IMAP METADATA entries\n"
		"  metadata set ENTRY [VALUE]     set one (VALUE omitted: read from stdin)\n"
		"  metadata del ENTRY             remove one (RFC 5464; e.g. /shared/comment)\n");
}

/* ---- configuration ---- */

static int load_config(struct config *cfg, const char *path, char **overrides, int n_over)
{
	char *err = NULL;
	config_defaults(cfg);
	if (path == NULL) {
		path = getenv("POSTERN_CONFIG");
		if (path == NULL && access("postern.conf", F_OK) == 0)
			path = "postern.conf";
	}
	if (path != NULL && config_load(cfg, path, &err) < 0)
		goto fail;
	for (int i = 0; i < n_over; i++) {
		char *eq = strchr(overrides[i], '=');
		if (eq == NULL) {
			err = xasprintf("-o %s: expected key=value", overrides[i]);
			goto fail;
		}
		*eq = '\0';
		int r = config_set(cfg, overrides[i], eq + 1, &err);
		*eq = '=';
		if (r < 0) {
			char *e2 = xasprintf("-o %s", err);
			free(err);
			err = e2;
			goto fail;
		}
	}
	if (config_finish(cfg, &err) < 0) {
		if (path) {
			char *e2 = xasprintf("%s: %s", path, err);
			free(err);
			err = e2;
		}
		goto fail;
	}
	log_set_level((enum log_level)log_level_parse(cfg->log_level));
	return 0;
fail:
	fprintf(stderr, "postern: %s\n", err);
	free(err);
	return -1;
}

static int mkdir_private(const char *dir)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "postern: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* store_cache_keys_fn: the sort and thread sections of a MIME cache */
static bool cache_keys(const void *cache, size_t len, struct store_cache_keys *k)
{
	return mime_cache_key_sections(cache, len, &k->sort, &k->sort_len, &k->thread,
				       &k->thread_len);
}

static struct store *open_store(const struct config *cfg)
{
	char *err = NULL;
	if (mkdir_private(cfg->data_dir) < 0)
		return NULL;
	struct store *st = store_open(cfg->data_dir, &err);
	if (st == NULL) {
		fprintf(stderr, "postern: store: %s\n", err);
		free(err);
		return NULL;
	}
	store_set_postmaster(st, cfg->postmaster, cfg->hostname);
	/* IMAP CREATE/RENAME, and the admin CLI's mailbox commands alike */
	store_set_limits(st, (unsigned)cfg->imap_max_mailboxes, (unsigned)cfg->imap_max_mailbox_name);
	/* every message stored (SMTP, APPEND, the CLI) gets its MIME cache in the
	 * same transaction, so a FETCH never parses it (docs/design.md) */
	store_set_cache_builder(st, mime_cache_build, cache_keys);
	/* an indexed body the CLI expunges (user del, mailbox delete) is left
	 * to the daemon's indexer, which deletes its entries (store/fts.c) */
	if (cfg->fts)
		store_fts_unindex(st);
	return st;
}

/* ---- serve ---- */

/* What a listener serves: one of the SMTP, POP3 or IMAP roles. */
enum listen_kind { LISTEN_SMTP, LISTEN_POP3, LISTEN_IMAP };

struct accept_ctx {
	struct daemon *d;
	enum listen_kind kind;
	int role; /* enum smtp_role, enum pop3_role or enum imap_role */
	const char *name;
};

struct daemon {
	struct loop *loop;
	struct dns *dns; /* the resolver, for every server and the queue */
	struct queue *queue;    /* outbound delivery */
	SSL_CTX *client_tls;    /* its TLS client context */
	bool queue_stopping, queue_stopped;
	struct smtp_server *smtp;
	struct pop3_server *pop3;
	struct imap_server *imap;
	struct listener *listeners[64];
	int n_listeners;
	int sigfd;
	struct store *st;
	int watchfd; /* store_mailboxes_watch: the admin CLI's mailbox changes */
	struct report_timer *reports; /* DMARC aggregate reports */
	struct filter *filter;        /* its trainer's batch in flight */
};

static void on_accept(void *arg, int fd)
{
	struct accept_ctx *a = arg;
	if (a->kind == LISTEN_POP3)
		pop3_server_accept(a->d->pop3, fd, (enum pop3_role)a->role);
	else if (a->kind == LISTEN_IMAP)
		imap_server_accept(a->d->imap, fd, (enum imap_role)a->role);
	else
		smtp_server_accept(a->d->smtp, fd, (enum smtp_role)a->role);
}

static void on_signal(void *arg, uint32_t events)
{
	struct daemon *d = arg;
	struct signalfd_siginfo si;
	while (read(d->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		log_info("signal %u received: shutting down", si.ssi_signo);
		loop_stop(d->loop);
	}
}

/* `postern mailbox delete|rename` ran beside us: sessions on a mailbox
 * that is gone hear it (store_mailboxes_recheck). */
static void on_mailboxes_changed(void *arg, uint32_t events)
{
	struct daemon *d = arg;
	store_mailboxes_recheck(d->st, d->watchfd);
}

static int open_listeners(struct daemon *d, struct accept_ctx *ctx, const char *list)
{
	char *copy = xstrdup(list), *save = NULL;
	int ret = 0;
	ctx->d = d;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		char *err = NULL;
		if (d->n_listeners == 64) {
			log_err("too many listeners");
			ret = -1;
			break;
		}
		struct listener *ls = listener_open(d->loop, t, on_accept, ctx, &err);
		if (ls == NULL) {
			log_err("listen %s: %s", t, err);
			free(err);
			ret = -1;
			break;
		}
		log_info("listening on %s (%s)", t, ctx->name);
		d->listeners[d->n_listeners++] = ls;
	}
	free(copy);
	return ret;
}

static uid_t chown_uid;
static gid_t chown_gid;

static int chown_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	if ((sb->st_uid != chown_uid || sb->st_gid != chown_gid) &&
	    lchown(path, chown_uid, chown_gid) < 0) {
		log_err("cannot give %s to the postern user: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Started as root (to bind ports below 1024), postern runs as cfg->user: the
 * daemon after binding its listeners and loading its certificate, the admin
 * commands before touching the store. The data directory is handed to that
 * user first, so files an earlier root run created stay usable. The daemon
 * started as root with `user` empty refuses to start: a network server left
 * running as root by an omission is worse than one that does not start.
 * `user = root` keeps root deliberately. Admin commands with `user` empty run
 * as whoever started them. */
static int drop_privileges(const struct config *cfg, bool daemon)
{
	if (geteuid() != 0)
		return 0;
	if (cfg->user[0] == '\0') {
		if (!daemon)
			return 0;
		log_err("user: started as root with `user` empty; refusing to run as root. Set "
			"`user` to the unprivileged system user postern should run as (e.g. "
			"useradd --system --no-create-home --shell /usr/sbin/nologin postern; "
			"user = postern), or `user = root` to run as root deliberately");
		return -1;
	}
	struct passwd *pw = getpwnam(cfg->user);
	if (pw == NULL) {
		log_err("user: no such system user \"%s\"", cfg->user);
		return -1;
	}
	if (pw->pw_uid == 0) { /* `user = root`: stay root, deliberately */
		if (daemon)
			log_warn("running as root (`user = %s`)", cfg->user);
		return 0;
	}
	chown_uid = pw->pw_uid;
	chown_gid = pw->pw_gid;
	if (nftw(cfg->data_dir, chown_entry, 16, FTW_PHYS) != 0)
		return -1;
	/* SQLite opens the database by its absolute path, so every directory above
	 * the data directory must be searchable by the user too: checked here, with
	 * a message that says so, instead of "unable to open database file". */
	char *abs = realpath(cfg->data_dir, NULL);
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_err("cannot drop privileges to %s: %s", cfg->user, strerror(errno));
		free(abs);
		return -1;
	}
	if (abs != NULL && access(abs, R_OK | W_OK | X_OK) < 0) {
		log_err("user %s cannot use the data directory %s: %s (it and every directory "
			"above it must be searchable by that user)",
			cfg->user, abs, strerror(errno));
		free(abs);
		return -1;
	}
	free(abs);
	log_debug("running as user %s (uid %u)", cfg->user, (unsigned)pw->pw_uid);
	return 0;
}

struct store *cli_open_store(const struct config *cfg)
{
	umask(077);
	if (mkdir_private(cfg->data_dir) < 0 || drop_privileges(cfg, false) < 0)
		return NULL;
	return open_store(cfg);
}

static SSL_CTX *setup_tls(const struct config *cfg)
{
	char *err = NULL;
	/* tls.c logs when it generates one */
	int r = tls_selfsigned_ensure(cfg->tls_cert, cfg->tls_key, cfg->hostname, &err);
	if (r < 0) {
		log_err("tls: %s", err);
		free(err);
		return NULL;
	}
	SSL_CTX *ctx = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, &err);
	if (ctx == NULL) {
		log_err("tls: %s", err);
		free(err);
	}
	return ctx;
}

/* RFC 5321 4.5.1: <Postmaster> must reach someone; say who, or warn. */
static void check_postmaster(struct store *st, const struct config *cfg)
{
	struct store_targets t = {0, NULL};
	int k = store_resolve(st, "postmaster", &t);
	char *pm = store_postmaster(st);

	if (k > 0)
		log_info("postmaster: <Postmaster> and unclaimed postmaster@ addresses go to %s", pm);
	else if (k == 0 && pm == NULL)
		log_warn("postmaster: no `postmaster` set and no local domain among %s's: mail to "
			 "<Postmaster> (RFC 5321 4.5.1) and to postmaster@ domains without their own "
			 "is refused; set `postmaster` to an address that receives mail",
			 cfg->hostname);
	else if (k == 0)
		log_warn("postmaster: %s is no account or alias: mail to <Postmaster> (RFC 5321 "
			 "4.5.1) and to postmaster@ domains without their own is refused; set "
			 "`postmaster`, or run: postern alias add %s YOU@DOMAIN",
			 pm, pm);
	store_targets_free(&t);
	free(pm);
}

struct drain {
	struct daemon *d;
	uint64_t start_ms;
	uint64_t idle_ms; /* when no async step was left, or 0 */
	uint64_t wait_ms; /* the bound for async steps */
	struct timer *tick; /* the next drain_tick, or NULL */
	int busy;           /* sessions with an async step, at the last tick */
};

static void queue_stopped(void *arg)
{
	struct daemon *d = arg;
	d->queue_stopped = true;
}

static void kick_queue(void *arg)
{
	queue_kick(arg);
}

static void drain_tick(void *arg)
{
	struct drain *dr = arg;
	struct loop *l = dr->d->loop;
	int busy_smtp = 0, busy_pop3 = 0, busy_imap = 0;

	dr->tick = NULL; /* freed by the loop before this call */
	/* The queue starts nothing new and gives back what it holds; its
	 * DSNs and results in flight count as async steps. */
	if (dr->d->queue != NULL && !dr->d->queue_stopping) {
		dr->d->queue_stopping = true;
		queue_stop(dr->d->queue, queue_stopped, dr->d);
	}
	int busy_queue = dr->d->queue != NULL && !dr->d->queue_stopped;
	/* a report run in flight is cancelled; a worker step it waits for
	 * comes back to the loop here */
	int busy_reports = report_timer_stop(dr->d->reports) + filter_stop(dr->d->filter);
	/* spool writes of sessions closed mid-literal: their completions free
	 * the spools */
	int busy_spools = dr->d->st != NULL ? store_spool_jobs(dr->d->st) : 0;
	int left = smtp_server_shutdown(dr->d->smtp, &busy_smtp) +
		   pop3_server_shutdown(dr->d->pop3, &busy_pop3) +
		   imap_server_shutdown(dr->d->imap, &busy_imap) + busy_queue + busy_reports +
		   busy_spools;
	uint64_t now = loop_now(l);
	int busy = busy_smtp + busy_pop3 + busy_imap + busy_queue + busy_reports + busy_spools;

	dr->busy = busy;
	if (left == 0) {
		loop_stop(l);
		return;
	}
	if (busy == 0 && dr->idle_ms == 0)
		dr->idle_ms = now;
	if (busy > 0 && now - dr->start_ms >= dr->wait_ms) {
		log_warn("shutdown: %d sessions left after %llu ms (%d waiting on a commit, "
			 "login or expunge); closing them",
			 left, (unsigned long long)dr->wait_ms, busy);
		loop_stop(l);
		return;
	}
	if (dr->idle_ms != 0 && now - dr->idle_ms >= SHUTDOWN_DRAIN_MS) {
		loop_stop(l); /* what is left is output to clients that do not read */
		return;
	}
	dr->tick = loop_timer_add(l, SHUTDOWN_TICK_MS, drain_tick, dr);
}

/* Shutdown: sessions waiting on nothing are told 421 / -ERR and closed at
 * once. A session parked on a commit, a password check or the expunge of a
 * POP3 QUIT keeps running: a 421 to a message that is in fact stored would
 * make the sender send it twice. Its completion gives the real answer, then
 * the session is closed. The loop runs until every session is gone (replies
 * and TLS close_notify delivered), bounded: SHUTDOWN_WAIT_MS for async steps
 * (the committer finishes a batch in milliseconds on a healthy disk), then
 * SHUTDOWN_DRAIN_MS for output to clients that do not read. A second
 * signal ends the wait (on_signal); commits already handed to the store are
 * still finished and answered (cmd_serve). Returns the sessions still
 * waiting on an async step. */
static int drain(struct daemon *d, uint64_t wait_ms)
{
	struct drain dr = {.d = d, .start_ms = loop_now(d->loop), .wait_ms = wait_ms};

	drain_tick(&dr);
	loop_run(d->loop); /* returns at once if drain_tick stopped it */
	/* Stopped by a signal: the next tick points into this frame. */
	loop_timer_cancel(d->loop, &dr.tick);
	return dr.busy;
}

/* The login service's account lookup (auth sits below the store). */
static int lookup_user_hash(void *arg, const char *user, char **hash_r)
{
	return store_user_hash(arg, user, hash_r);
}

static struct dns *dns_from_config(struct loop *l, const struct config *cfg)
{
	struct dns_config dc = {
		.servers = cfg->dns_resolver,
		.timeout_ms = (unsigned)cfg->dns_timeout_ms,
		.tries = cfg->dns_tries,
		.cache_size = (size_t)cfg->dns_cache_size,
	};
	char *err = NULL;
	struct dns *dns = dns_new(l, &dc, &err);
	if (dns == NULL) {
		log_err("dns: %s", err ? err : "?");
		free(err);
	}
	return dns;
}

struct dns *cli_dns(struct loop *l, const struct config *cfg)
{
	return dns_from_config(l, cfg);
}

/* Descriptors the daemon holds besides its connections: 256 blob directories,
 * the pre-created spool files, SQLite's, the listeners, and the files a
 * command holds open for a while (a SEARCH's look-ahead, CATENATE's URLs). */
#define FD_RESERVE 1024

/* The descriptor budget. Login shells and systemd give a soft RLIMIT_NOFILE
 * of 1024 under a far higher hard limit, and an idle daemon holds some 350
 * already: under the default connection limits that is EMFILE at a few
 * hundred sessions (and a soft limit of 256 cannot even open the store). The
 * soft limit is raised (up to the hard one) to what the configured limits
 * need, for a command to what the store needs; a hard limit below the
 * daemon's need is said at start rather than found under load. */
/* The daemon keeps memory it frees for the next command instead of giving
 * it back to the kernel at once: glibc maps each block of 128 KiB or more on
 * its own (munmap'd at free) and trims a heap's free top beyond 128 KiB
 * (until its dynamic threshold has grown, which is reset by a restart), so a
 * SORT or SEARCH of 10,000 messages (rows, results, ~2 MB) took fresh pages
 * every time; a page fault costs ~10 us in a virtual machine, and one SORT
 * (DATE) spent ~5 ms of its ~15 in them. Blocks up to 8 MiB now come from the
 * heaps, and a heap keeps up to 32 MiB free on top. Like Dovecot's data
 * stacks and pools, which keep what they have had. */
static void keep_freed_memory(void)
{
	mallopt(M_MMAP_THRESHOLD, 8 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
}

static void raise_fd_limit(const struct config *cfg, bool serve)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return;
	rlim_t need = FD_RESERVE; /* a command: the store alone */
	if (serve)
		need += (rlim_t)cfg->smtp_max_connections + (rlim_t)cfg->pop3_max_connections +
			(rlim_t)cfg->imap_max_connections + (rlim_t)cfg->queue_max_connections;
	if (rl.rlim_cur < need) {
		rlim_t old = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
		if (rl.rlim_cur == old || setrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = old; /* the hard limit is the soft one already */
		else if (serve)
			log_info("descriptor limit raised from %llu to %llu", (unsigned long long)old,
				 (unsigned long long)rl.rlim_cur);
	}
	if (serve && rl.rlim_cur < need)
		log_warn("descriptor limit %llu is below the %llu the connection limits need "
			 "(smtp_, pop3_, imap_ and queue_max_connections, plus %d): raise the hard "
			 "limit (systemd LimitNOFILE=, ulimit -Hn) or lower those limits",
			 (unsigned long long)rl.rlim_cur, (unsigned long long)need, FD_RESERVE);
}

static int cmd_serve(const struct config *cfg)
{
	struct daemon d = {.sigfd = -1, .watchfd = -1};
	/* Listeners are opened before anything else (ports < 1024 need root);
	 * the servers they dispatch to exist before the loop runs. */
	struct accept_ctx ctx[] = {
		{&d, LISTEN_SMTP, SMTP_ROLE_MX, "smtp"},
		{&d, LISTEN_SMTP, SMTP_ROLE_SUBMISSION, "submission"},
		{&d, LISTEN_SMTP, SMTP_ROLE_SUBMISSIONS, "submissions"},
		{&d, LISTEN_POP3, POP3_ROLE_POP3, "pop3"},
		{&d, LISTEN_POP3, POP3_ROLE_POP3S, "pop3s"},
		{&d, LISTEN_IMAP, IMAP_ROLE_IMAP, "imap"},
		{&d, LISTEN_IMAP, IMAP_ROLE_IMAPS, "imaps"},
	};
	const char *lists[] = {cfg->smtp_listen, cfg->submission_listen, cfg->submissions_listen,
			       cfg->pop3_listen, cfg->pop3s_listen, cfg->imap_listen,
			       cfg->imaps_listen};
	struct store *st = NULL;
	struct pool *workers = NULL, *bulk = NULL;
	struct auth_login *login = NULL;
	struct report_timer *reports = NULL;
	SSL_CTX *tls = NULL;
	char **srs = NULL; /* SRS secrets (srs.h), for the SMTP server and the DSNs */
	size_t n_srs = 0;
	struct policy *policy = NULL; /* sender authentication (policy.h) */
	struct filter *filter = NULL; /* spam, abuse and virus filtering (filter.h) */
	int ret = 1;
	sigset_t mask;

	/* SIGPIPE: a peer that closes mid-write is an ordinary EPIPE. SIGXFSZ: a
	 * file size limit must surface as EFBIG (a 452), not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL); /* before any thread starts */

	d.loop = loop_new();
	for (size_t i = 0; i < sizeof ctx / sizeof ctx[0]; i++)
		if (open_listeners(&d, &ctx[i], lists[i]) < 0)
			goto out;
	/* The certificate is read (or made) before dropping privileges: keys
	 * such as /etc/letsencrypt/.../privkey.pem are readable by root only. */
	umask(077);
	if (mkdir_private(cfg->data_dir) < 0 || (tls = setup_tls(cfg)) == NULL ||
	    drop_privileges(cfg, true) < 0)
		goto out;
	if ((st = open_store(cfg)) == NULL)
		goto out;
	check_postmaster(st, cfg);
	pool_set_background_nice(cfg->worker_nice);
	workers = pool_new(d.loop, cfg->workers);
	bulk = pool_new_background(d.loop, cfg->workers);
	if (store_start(st, d.loop, (unsigned)cfg->commit_delay_us) < 0) {
		log_err("store: cannot start the committer");
		goto out;
	}
	/* the full-text index's indexer (store/fts.c) */
	if (!cfg->fts)
		store_fts_off(st);
	else if (store_fts_start(st, mime_extract_text, MIME_EXTRACT_VERSION) < 0)
		goto out;
	struct auth_login_config lc = {
		.cache_ttl_s = cfg->auth_cache_ttl,
		.max_failures = (unsigned)cfg->auth_max_failures,
		.window_s = cfg->auth_failure_window,
		.delay_max_s = cfg->auth_failure_delay_max,
		.workers = workers,
		.lookup = lookup_user_hash,
		.lookup_arg = st,
	};
	login = auth_login_new(&lc);
	d.dns = dns_from_config(d.loop, cfg);
	if (d.dns == NULL)
		goto out;
	{
		char *err = NULL;
		policy = policy_new(d.loop, d.dns, workers, st, cfg, &err);
		if (policy == NULL) {
			log_err("policy: %s", err ? err : "?");
			free(err);
			goto out;
		}
		filter = filter_new(d.loop, d.dns, workers, st, cfg, &err);
		if (filter == NULL) {
			log_err("filter: %s", err ? err : "?");
			free(err);
			goto out;
		}
	}
	d.smtp = smtp_server_new(d.loop, workers, st, cfg, tls, login);
	smtp_server_set_dns(d.smtp, d.dns);
	smtp_server_set_policy(d.smtp, policy);
	smtp_server_set_filter(d.smtp, filter);
	d.filter = filter;
	if (cfg->srs) {
		if ((srs = srs_secrets_load(st, cfg, &n_srs)) == NULL)
			goto out;
		/* loaded once, shared by policy (forwarding), the SMTP server
		 * (bounces to SRS addresses) and the DSNs */
		policy_set_srs(policy, srs, n_srs);
		smtp_server_set_srs(d.smtp, srs, n_srs, cfg->srs_max_age);
		bounce_set_srs(srs, n_srs, cfg->srs_max_age);
	}
	{
		char *err = NULL;
		d.client_tls = tls_client_ctx_new(cfg->outbound_tls_ca_file, &err);
		if (d.client_tls != NULL)
			d.queue = queue_new(d.loop, workers, st, d.dns, cfg, d.client_tls, &err);
		if (d.queue == NULL) {
			log_err("queue: %s", err ? err : "?");
			free(err);
			goto out;
		}
		smtp_server_set_kick(d.smtp, kick_queue, d.queue);
	}
	/* DMARC aggregate reports (RFC 7489 7.2), once per dmarc_report_interval */
	if (cfg->dmarc_reports)
		d.reports = reports =
			report_timer_new(d.loop, workers, st, d.dns, cfg, kick_queue, d.queue);
	d.pop3 = pop3_server_new(d.loop, workers, st, cfg, tls, login);
	d.imap = imap_server_new(d.loop, workers, bulk, st, cfg, tls, login);
	d.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d.sigfd < 0 || loop_add(d.loop, d.sigfd, LOOP_READ, on_signal, &d) < 0) {
		log_err("signalfd: %s", strerror(errno));
		goto out;
	}
	d.st = st;
	d.watchfd = store_mailboxes_watch(st);
	if (d.watchfd >= 0 && loop_add(d.loop, d.watchfd, LOOP_READ, on_mailboxes_changed, &d) < 0) {
		close(d.watchfd);
		d.watchfd = -1;
	}
	log_info("postern ready: hostname=%s data_dir=%s", cfg->hostname, cfg->data_dir);
	loop_run(d.loop);
	ret = 0;
out:
	for (int i = 0; i < d.n_listeners; i++)
		listener_close(&d.listeners[i]);
	/* The wait may have been cut short (a second signal, or the bound),
	 * but store_close finishes every commit already handed to the store all
	 * the same: finish them now and give their real answers, or a stored
	 * message would be told 421 below and sent again. */
	if (ret == 0 && drain(&d, SHUTDOWN_WAIT_MS) > 0) {
		store_wait_idle(st);
		drain(&d, SHUTDOWN_DRAIN_MS);
	}
	if (ret == 0 && d.smtp) {
		smtp_server_cancel_policy(d.smtp);
		drain(&d, SHUTDOWN_DRAIN_MS); /* their conns close */
	}
	if (d.smtp)
		smtp_server_free(&d.smtp);
	if (d.pop3)
		pop3_server_free(&d.pop3);
	if (d.imap)
		imap_server_free(&d.imap);
	report_timer_free(&reports); /* before the queue it kicks */
	queue_free(&d.queue);
	if (d.client_tls)
		SSL_CTX_free(d.client_tls);
	policy_free(&policy); /* after the servers, before the resolver it uses */
	filter_free(&filter); /* the same; before the store (greylisting saves) */
	dns_free(&d.dns); /* after the servers and the queue: they cancel their queries */
	if (d.watchfd >= 0) {
		loop_del(d.loop, d.watchfd);
		close(d.watchfd);
	}
	if (d.sigfd >= 0) {
		loop_del(d.loop, d.sigfd);
		close(d.sigfd);
	}
	if (workers)
		pool_free(&workers);
	if (bulk)
		pool_free(&bulk);
	auth_login_free(&login); /* after the workers that use it */
	if (st)
		store_close(&st);
	if (tls)
		SSL_CTX_free(tls);
	bounce_set_srs(NULL, 0, 0);
	srs_secrets_free(&srs); /* after the servers and the queue that use them */
	loop_free(&d.loop);
	log_info("postern stopped");
	return ret;
}

/* ---- admin commands ---- */

/* `postern dns ...`: one query on a private loop, printed when it ends. */
struct dns_cli {
	struct loop *l;
	int ret;
};

static const char *const dns_status_names[] = {"ok", "nodata", "nxdomain"};

static void dns_cli_answer(void *arg, const struct dns_answer *a)
{
	struct dns_cli *c = arg;
	char addr[INET6_ADDRSTRLEN];

	for (size_t i = 0; i < a->n; i++) {
		const struct dns_rr *rr = &a->rr[i];
		printf("%u ", rr->ttl);
		switch (rr->type) {
		case DNS_A:
			printf("A %s\n", inet_ntop(AF_INET, &rr->u.a, addr, sizeof(addr)));
			break;
		case DNS_AAAA:
			printf("AAAA %s\n", inet_ntop(AF_INET6, &rr->u.aaaa, addr, sizeof(addr)));
			break;
		case DNS_MX:
			printf("MX %u %s\n", rr->u.mx.pref, rr->u.mx.host[0] ? rr->u.mx.host : ".");
			break;
		case DNS_PTR:
			printf("PTR %s\n", rr->u.ptr);
			break;
		case DNS_TXT:
			printf("TXT \"");
			for (size_t k = 0; k < rr->u.txt.len; k++) {
				unsigned char ch = (unsigned char)rr->u.txt.text[k];
				if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
					printf("\\%03u", ch);
				else
					putchar(ch);
			}
			printf("\"\n");
			break;
		case DNS_TLSA:
			printf("TLSA %u %u %u ", rr->u.tlsa.usage, rr->u.tlsa.selector,
			       rr->u.tlsa.mtype);
			for (size_t k = 0; k < rr->u.tlsa.len; k++)
				printf("%02x", rr->u.tlsa.data[k]);
			printf("\n");
			break;
		}
	}
	const char *st = a->status == DNS_TEMPFAIL  ? "tempfail"
			 : a->status == DNS_BADNAME ? "badname"
						    : dns_status_names[a->status];
	printf("status=%s authenticated=%s\n", st, a->authenticated ? "yes" : "no");
	c->ret = a->status == DNS_OK ? 0 : a->status == DNS_TEMPFAIL ? 75 : 1;
	loop_stop(c->l);
}

static void dns_cli_mx(void *arg, const struct dns_mx_result *r)
{
	struct dns_cli *c = arg;
	char addr[INET6_ADDRSTRLEN];
	static const char *const names[] = {"ok", "null", "nxdomain"};

	for (size_t i = 0; i < r->n; i++) {
		printf("%u %s", r->hosts[i].pref, r->hosts[i].name);
		for (size_t k = 0; k < r->hosts[i].n_addr; k++) {
			const struct sockaddr_storage *ss = &r->hosts[i].addr[k];
			const void *p = ss->ss_family == AF_INET6
						? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
						: (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
			printf(" %s", inet_ntop(ss->ss_family, p, addr, sizeof(addr)));
		}
		printf("\n");
	}
	printf("status=%s implicit=%s\n",
	       r->status == DNS_MX_TEMPFAIL ? "tempfail" : names[r->status],
	       r->implicit ? "yes" : "no");
	c->ret = r->status == DNS_MX_OK ? 0 : r->status == DNS_MX_TEMPFAIL ? 75 : 1;
	loop_stop(c->l);
}

static void dns_cli_ptr(void *arg, const char *name)
{
	struct dns_cli *c = arg;
	printf("%s\n", name ? name : "unknown");
	c->ret = name ? 0 : 1;
	loop_stop(c->l);
}

/* Exit status: 0 found, 1 permanent (no such name or record), 75 temporary. */
static int cmd_dns(const struct config *cfg, int argc, char **argv)
{
	static const struct {
		const char *name;
		enum dns_type type;
	} types[] = {{"A", DNS_A},     {"AAAA", DNS_AAAA}, {"MX", DNS_MX},
		     {"TXT", DNS_TXT}, {"PTR", DNS_PTR},   {"TLSA", DNS_TLSA}};
	if (argc >= 1 && (strcmp(argv[0], "records") == 0 || strcmp(argv[0], "check") == 0))
		return cli_dns_records(cfg, argc, argv);
	struct cli_loop lp;
	if (cli_loop_open(&lp, cfg, CLI_LOOP_DNS) < 0)
		return 1;
	struct dns_cli c = {.l = lp.l, .ret = 2};
	struct dns *dns = lp.dns;
	struct dns_query *q = NULL;
	const char *inet = argc == 3 ? argv[2] : cfg->outbound_inet;

	if (argc == 3 && strcmp(argv[0], "lookup") == 0) {
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcasecmp(argv[1], types[i].name) == 0)
				q = dns_lookup(dns, argv[2], types[i].type, dns_cli_answer, &c);
	} else if ((argc == 2 || argc == 3) && strcmp(argv[0], "mx") == 0) {
		q = dns_resolve_mx(dns, argv[1], inet, dns_cli_mx, &c);
	} else if ((argc == 2 || argc == 3) && strcmp(argv[0], "host") == 0) {
		q = dns_resolve_host(dns, argv[1], inet, dns_cli_mx, &c);
	} else if (argc == 2 && strcmp(argv[0], "ptr") == 0) {
		q = dns_verify_ptr(dns, argv[1], dns_cli_ptr, &c);
	}
	if (q == NULL)
		usage(stderr);
	else
		loop_run(c.l);
	cli_loop_close(&lp);
	return c.ret;
}

/* Reads a password: from a terminal, prompted twice without echo; otherwise
 * the first line of stdin. Never from the command line (it would show in ps). */
static char *read_password(void)
{
	char *line = NULL, *again = NULL;
	size_t cap = 0, cap2 = 0;
	bool tty = isatty(0);
	struct termios old, noecho;

	if (tty) {
		tcgetattr(0, &old);
		noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(0, TCSAFLUSH, &noecho);
		fputs("Password: ", stderr);
	}
	ssize_t n = getline(&line, &cap, stdin);
	if (tty) {
		fputs("\nAgain: ", stderr);
		if (getline(&again, &cap2, stdin) < 0 || strcmp(again, line ? line : "") != 0) {
			n = -2;
		}
		fputs("\n", stderr);
		tcsetattr(0, TCSAFLUSH, &old);
		free(again);
	}
	if (n < 0) {
		fprintf(stderr, n == -2 ? "postern: passwords differ\n"
					: "postern: no password on standard input\n");
		free(line);
		return NULL;
	}
	line[strcspn(line, "\r\n")] = '\0';
	if (line[0] == '\0') {
		fprintf(stderr, "postern: empty password refused\n");
		free(line);
		return NULL;
	}
	return line;
}

static void print_name(void *arg, const char *name, const char *detail)
{
	if (detail && detail[0])
		printf("%s %s\n", name, detail);
	else
		printf("%s\n", name);
}

/* Takes the address of the error text, not its value: in
 * report(store_x(..., &err), err) the order in which C evaluates the two
 * arguments is unspecified, and gcc read err (NULL) before the call set it,
 * so the message was lost ("postern: failed") and leaked. */
static int report(int r, char **errp)
{
	char *err = *errp;
	*errp = NULL;
	if (r < 0) {
		fprintf(stderr, "postern: %s\n", err ? err : "failed");
		free(err);
		return 1;
	}
	free(err);
	return 0;
}

int cli_report(int r, char **errp)
{
	return report(r, errp);
}

static int cmd_domain(struct store *st, int argc, char **argv)
{
	char *err = NULL;
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return store_domain_list(st, print_name, NULL) < 0;
	if (argc == 2 && strcmp(argv[0], "add") == 0) {
		if (store_domain_add(st, argv[1], &err) < 0)
			return report(-1, &err);
		/* RFC 5321 4.5.1: every mail domain must accept postmaster. */
		struct store_targets t = {0, NULL};
		char *addr = xasprintf("postmaster@%s", argv[1]);
		char *pm = store_postmaster(st);
		if (store_resolve(st, addr, &t) > 0)
			fprintf(stderr,
				"postern: domain %s added; mail to %s goes to %s (the postmaster "
				"target), unless you give the domain its own:\n"
				"  postern alias add %s YOU@%s\n",
				argv[1], addr, pm ? pm : "?", addr, argv[1]);
		else
			fprintf(stderr,
				"postern: domain %s added; %s reaches nobody yet (RFC 5321 4.5.1): "
				"set `postmaster` in the configuration, or\n"
				"  postern alias add %s YOU@%s\n",
				argv[1], addr, addr, argv[1]);
		store_targets_free(&t);
		free(pm);
		free(addr);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "del") == 0)
		return report(store_domain_del(st, argv[1], &err), &err);
	usage(stderr);
	return 2;
}

static int cmd_user(struct store *st, int argc, char **argv)
{
	char *err = NULL, *pw, *hash;
	int r;
	if (argc >= 1 && strcmp(argv[0], "list") == 0 && argc <= 2)
		return store_user_list(st, argc == 2 ? argv[1] : NULL, print_name, NULL) < 0;
	if (argc == 2 && strcmp(argv[0], "del") == 0)
		return report(store_user_del(st, argv[1], &err), &err);
	if (argc == 4 && strcmp(argv[0], "add") == 0 && strcmp(argv[2], "--hash") == 0) {
		/* Imported hashes are checked for a scheme we can verify. */
		if (password_verify(argv[3], "") < 0) {
			fprintf(stderr, "postern: unsupported or malformed hash\n");
			return 1;
		}
		return report(store_user_add(st, argv[1], argv[3], &err), &err);
	}
	if (argc == 2 && (strcmp(argv[0], "add") == 0 || strcmp(argv[0], "passwd") == 0)) {
		if ((pw = read_password()) == NULL)
			return 1;
		hash = password_hash(pw);
		explicit_bzero(pw, strlen(pw));
		free(pw);
		if (strcmp(argv[0], "add") == 0)
			r = store_user_add(st, argv[1], hash, &err);
		else
			r = store_user_passwd(st, argv[1], hash, &err);
		free(hash);
		return report(r, &err);
	}
	usage(stderr);
	return 2;
}

static int cmd_alias(struct store *st, int argc, char **argv)
{
	char *err = NULL;
	if (argc >= 1 && strcmp(argv[0], "list") == 0 && argc <= 2)
		return store_alias_list(st, argc == 2 ? argv[1] : NULL, print_name, NULL) < 0;
	if (argc >= 3 && strcmp(argv[0], "add") == 0) {
		for (int i = 2; i < argc; i++)
			if (store_alias_add(st, argv[1], argv[i], &err) < 0)
				return report(-1, &err);
		return 0;
	}
	if ((argc == 2 || argc == 3) && strcmp(argv[0], "del") == 0)
		return report(store_alias_del(st, argv[1], argc == 3 ? argv[2] : NULL, &err), &err);
	usage(stderr);
	return 2;
}

static void print_mail(void *arg, const struct store_mail_info *m)
{
	printf("%u %llu %lld %s\n", m->uid, (unsigned long long)m->size, (long long)m->internaldate,
	       m->flags ? m->flags : "");
}

static int cat_fd(int fd)
{
	char b[65536];
	ssize_t n;
	while ((n = read(fd, b, sizeof b)) > 0)
		if (fwrite(b, 1, (size_t)n, stdout) != (size_t)n)
			return -1;
	return n < 0 ? -1 : 0;
}

/* ---- mailbox and quota ---- */

struct admin_wait {
	struct loop *l;
	bool done;
	int result;
};

static void admin_done(void *arg, int result)
{
	struct admin_wait *w = arg;
	w->done = true;
	w->result = result;
	loop_stop(w->l);
}

static const char *store_res_text(int r)
{
	switch (r) {
	case STORE_NONEXISTENT:
		return "no such mailbox";
	case STORE_EXISTS:
		return "the mailbox already exists";
	case STORE_OVERQUOTA:
		return "over quota";
	case STORE_LIMIT:
		return "too many mailboxes, or the name is too long";
	case STORE_CHANGED:
		return "the mailbox was replaced meanwhile";
	case STORE_HASCHILDREN:
		return "the mailbox has children; delete them first";
	case STORE_CANNOT:
		return "not possible (INBOX cannot be deleted; a mailbox cannot move into itself;"
		       " names need no empty level, no '%' or '*', UTF-8)";
	default:
		return "failed (see the log)";
	}
}

/* The IMAP-section writes run on a committer: the command runs one of its
 * own beside the daemon's (SQLite serialises them) and waits for it. */
static int cmd_mailbox(struct store *st, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[0], "list") == 0)
		return store_mailbox_list(st, argv[1], print_name, NULL) < 0;
	bool create = argc == 3 && strcmp(argv[0], "create") == 0;
	bool del = argc == 3 && strcmp(argv[0], "delete") == 0;
	bool ren = argc == 4 && strcmp(argv[0], "rename") == 0;
	if (!create && !del && !ren) {
		usage(stderr);
		return 2;
	}
	char *hash = NULL;
	int k = store_user_hash(st, argv[1], &hash);
	free(hash);
	if (k <= 0) {
		fprintf(stderr, "postern: %s\n",
			k < 0 ? "database error" : "no such user");
		return 1;
	}
	struct admin_wait w = {.l = loop_new()};
	if (store_start_admin(st, w.l) < 0) {
		loop_free(&w.l);
		fprintf(stderr, "postern: cannot start the store's committer\n");
		return 1;
	}
	if (create)
		store_mailbox_create(st, argv[1], argv[2], NULL, admin_done, &w);
	else if (del)
		store_mailbox_delete(st, argv[1], argv[2], admin_done, &w);
	else
		store_mailbox_rename(st, argv[1], argv[2], argv[3], admin_done, &w);
	while (!w.done)
		loop_run(w.l);
	store_wait_idle(st);
	loop_free(&w.l);
	if (w.result != STORE_OK) {
		fprintf(stderr, "postern: %s: %s\n", argv[2], store_res_text(w.result));
		return 1;
	}
	if (del || ren)
		store_mailboxes_changed(st); /* a running daemon's sessions see it */
	return 0;
}

/* "10m", "512k", "0": k/m/g as in the configuration (binary multiples). */
static int parse_amount(const char *s, bool units, uint64_t *v_r)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || s[0] == '-')
		return -1;
	uint64_t mul = 1;
	if (units && *end != '\0' && end[1] == '\0') {
		switch (*end | 0x20) {
		case 'k':
			mul = 1024;
			break;
		case 'm':
			mul = 1024 * 1024;
			break;
		case 'g':
			mul = 1024ULL * 1024 * 1024;
			break;
		default:
			return -1;
		}
		end++;
	}
	if (*end != '\0' || v > INT64_MAX / mul)
		return -1;
	*v_r = v * mul;
	return 0;
}

static int cmd_quota(struct store *st, int argc, char **argv)
{
	char *err = NULL;
	if (argc == 4 && strcmp(argv[0], "set") == 0) {
		uint64_t storage, messages;
		if (parse_amount(argv[2], true, &storage) < 0 ||
		    parse_amount(argv[3], false, &messages) < 0) {
			fprintf(stderr, "postern: bad limit (STORAGE: a size like 100m; MESSAGES:"
					" a number; 0 = none)\n");
			return 2;
		}
		return report(store_quota_set(st, argv[1], storage, messages, &err), &err);
	}
	if (argc == 2 && strcmp(argv[0], "get") == 0) {
		struct store_quota q;
		if (store_quota_get(st, argv[1], &q, &err) < 0)
			return report(-1, &err);
		printf("storage used=%llu limit=%llu\nmessages used=%llu limit=%llu\n",
		       (unsigned long long)q.storage_used, (unsigned long long)q.storage_limit,
		       (unsigned long long)q.message_used, (unsigned long long)q.message_limit);
		return fflush(stdout) != 0;
	}
	usage(stderr);
	return 2;
}

static int cmd_mail(struct store *st, int argc, char **argv)
{
	char *err = NULL;
	if ((argc == 2 || argc == 3) && strcmp(argv[0], "list") == 0)
		return report(store_mail_list(st, argv[1], argc == 3 ? argv[2] : NULL, print_mail,
					      NULL, &err),
			      &err);
	if ((argc == 3 || argc == 4) && strcmp(argv[0], "cat") == 0) {
		char *end;
		unsigned long uid = strtoul(argv[2], &end, 10);
		int fd;
		if (*end != '\0' || uid == 0 || uid > 0xffffffffUL) {
			fprintf(stderr, "postern: bad UID %s\n", argv[2]);
			return 2;
		}
		if (store_mail_open(st, argv[1], argc == 4 ? argv[3] : NULL, 0, (uint32_t)uid, &fd,
				    &err) < 0)
			return report(-1, &err);
		int r = cat_fd(fd);
		close(fd);
		return r < 0 || fflush(stdout) != 0;
	}
	usage(stderr);
	return 2;
}

/* ---- queue ---- */

static void print_time(const char *key, time_t t)
{
	struct tm tm;
	char when[32];
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf(" %s=%s", key, when);
}

/* One line per entry: ID FROM RCPT attempts=N next=TIME [queued=TIME
 * size=N] [held] [leased] [delay-notified] [error=...] (the first three
 * columns as before; queued and size with `show`, where arg counts). */
static void print_queue_entry(void *arg, const struct store_queue_entry *e)
{
	int *count = arg;
	printf("%lld %s %s attempts=%d", (long long)e->message_id,
	       e->mail_from[0] ? e->mail_from : "<>", e->rcpt, e->attempts);
	print_time("next", e->next_try);
	if (count != NULL) {
		(*count)++;
		print_time("queued", e->created);
		printf(" size=%llu", (unsigned long long)e->size);
	}
	if (e->held)
		printf(" held");
	if (e->lease_until > time(NULL))
		printf(" leased");
	if (e->delay_notified)
		printf(" delay-notified");
	if (e->last_error)
		printf(" error=%s", e->last_error);
	printf("\n");
}

/* The queue id of the command line: a message id, or "all" (0). */
static int queue_id(const char *s, bool all_ok, int64_t *id_r)
{
	if (all_ok && strcmp(s, "all") == 0) {
		*id_r = 0;
		return 0;
	}
	char *end;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v <= 0) {
		fprintf(stderr, "postern: \"%s\" is not a queue id%s\n", s, all_ok ? " or all" : "");
		return -1;
	}
	*id_r = v;
	return 0;
}

/* `postern queue ...`: the store's queue rows, changed beside a running
 * daemon (SQLite serialises the writes). The daemon notices changed due
 * times at its next look (queue_poll seconds at most); an entry leased by
 * an attempt in flight keeps going (a deleted one may still be delivered by
 * that attempt). */
static int cmd_queue(struct store *st, int argc, char **argv)
{
	char *err = NULL;
	int64_t id = 0;
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return report(store_queue_entries(st, 0, print_queue_entry, NULL, &err), &err);
	if (argc == 2 && strcmp(argv[0], "show") == 0) {
		if (queue_id(argv[1], false, &id) < 0)
			return 2;
		int n = 0;
		if (store_queue_entries(st, id, print_queue_entry, &n, &err) < 0)
			return report(-1, &err);
		if (n == 0) {
			fprintf(stderr, "postern: no queue entry with id %lld\n", (long long)id);
			return 1;
		}
		return 0;
	}
	static const struct {
		const char *name;
		enum store_queue_admin_op op;
	} ops[] = {
		{"retry", STORE_QUEUE_RETRY_NOW},
		{"hold", STORE_QUEUE_HOLD},
		{"release", STORE_QUEUE_RELEASE},
		{"delete", STORE_QUEUE_DELETE},
	};
	bool flush = argc == 1 && strcmp(argv[0], "flush") == 0;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		if (!flush && !(argc == 2 && strcmp(argv[0], ops[i].name) == 0))
			continue;
		if (!flush && queue_id(argv[1], true, &id) < 0)
			return 2;
		int n = store_queue_admin(st, ops[i].op, id, &err);
		if (n < 0)
			return report(-1, &err);
		if (n == 0 && id != 0) {
			fprintf(stderr, "postern: no queue entry with id %lld%s\n", (long long)id,
				ops[i].op == STORE_QUEUE_RELEASE ? " is held" : "");
			return 1;
		}
		printf("%d entries %s\n", n,
		       flush ? "due now" : ops[i].op == STORE_QUEUE_RETRY_NOW ? "due now"
			       : ops[i].op == STORE_QUEUE_HOLD ? "held"
			       : ops[i].op == STORE_QUEUE_RELEASE ? "released" : "deleted");
		return 0;
	}
	usage(stderr);
	return 2;
}

int main(int argc, char **argv)
{
	const char *cfg_path = NULL;
	char **overrides = xcalloc((size_t)argc, sizeof *overrides);
	int n_over = 0, opt, ret = 2;
	struct config cfg;

	while ((opt = getopt(argc, argv, "+c:o:h")) != -1) {
		switch (opt) {
		case 'c':
			cfg_path = optarg;
			break;
		case 'o':
			overrides[n_over++] = optarg;
			break;
		case 'h':
			usage(stdout);
			free(overrides);
			return 0;
		default:
			usage(stderr);
			free(overrides);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		free(overrides);
		return 2;
	}
	const char *cmd = argv[0];

	if (strcmp(cmd, "config") == 0 && argc == 2 &&
	    (strcmp(argv[1], "defaults") == 0 || strcmp(argv[1], "reference") == 0)) {
		if (strcmp(argv[1], "defaults") == 0)
			config_print_defaults(stdout);
		else
			config_print_reference(stdout);
		free(overrides);
		return 0;
	}
	if (load_config(&cfg, cfg_path, overrides, n_over) < 0) {
		free(overrides);
		config_free(&cfg); /* what was loaded before the error */
		return 1;
	}
	free(overrides);
	raise_fd_limit(&cfg, strcmp(cmd, "serve") == 0);

	if (strcmp(cmd, "check-config") == 0) {
		printf("configuration ok\n");
		ret = 0;
	} else if (strcmp(cmd, "serve") == 0) {
		keep_freed_memory();
		ret = cmd_serve(&cfg);
	} else if (strcmp(cmd, "dns") == 0) {
		ret = cmd_dns(&cfg, argc - 1, argv + 1);
	} else if (strcmp(cmd, "spf") == 0) {
		ret = cli_spf(&cfg, argc - 1, argv + 1);
	} else if (strcmp(cmd, "dkim") == 0) {
		ret = cli_dkim(&cfg, argc - 1, argv + 1);
	} else if (strcmp(cmd, "arc") == 0) {
		ret = cli_arc(&cfg, argc - 1, argv + 1);
	} else if (strcmp(cmd, "dmarc") == 0) {
		ret = cli_dmarc(&cfg, argc - 1, argv + 1);
	} else if (strcmp(cmd, "metadata") == 0) {
		ret = cli_metadata(&cfg, argc, argv);
	} else if (strcmp(cmd, "block") == 0 || strcmp(cmd, "allow") == 0) {
		ret = cli_block(&cfg, argc, argv);
	} else if (strcmp(cmd, "spam") == 0) {
		ret = argc > 1 && strcmp(argv[1], "threshold") == 0
			      ? cli_spam_threshold(&cfg, argc - 1, argv + 1)
			      : cli_spam(&cfg, argc - 1, argv + 1);
	} else if (strcmp(cmd, "index") == 0) {
		ret = cli_index(&cfg, argc, argv);
	} else if (strcmp(cmd, "mail") == 0 && argc > 1 && strcmp(argv[1], "explain") == 0) {
		ret = cli_mail_explain(&cfg, argc - 1, argv + 1);
	} else if (strcmp(cmd, "domain") == 0 || strcmp(cmd, "user") == 0 ||
		   strcmp(cmd, "alias") == 0 || strcmp(cmd, "mailbox") == 0 ||
		   strcmp(cmd, "mail") == 0 || strcmp(cmd, "queue") == 0 ||
		   strcmp(cmd, "quota") == 0) {
		umask(077);
		struct store *st = mkdir_private(cfg.data_dir) == 0 && drop_privileges(&cfg, false) == 0
					   ? open_store(&cfg)
					   : NULL;
		if (st == NULL) {
			config_free(&cfg);
			return 1;
		}
		if (strcmp(cmd, "domain") == 0)
			ret = cmd_domain(st, argc - 1, argv + 1);
		else if (strcmp(cmd, "user") == 0)
			ret = cmd_user(st, argc - 1, argv + 1);
		else if (strcmp(cmd, "alias") == 0)
			ret = cmd_alias(st, argc - 1, argv + 1);
		else if (strcmp(cmd, "mail") == 0)
			ret = cmd_mail(st, argc - 1, argv + 1);
		else if (strcmp(cmd, "mailbox") == 0)
			ret = cmd_mailbox(st, argc - 1, argv + 1);
		else if (strcmp(cmd, "quota") == 0)
			ret = cmd_quota(st, argc - 1, argv + 1);
		else if (strcmp(cmd, "queue") == 0)
			ret = cmd_queue(st, argc - 1, argv + 1);
		else
			usage(stderr);
		store_close(&st);
	} else {
		fprintf(stderr, "postern: unknown command \"%s\"\n", cmd);
		usage(stderr);
	}
	config_free(&cfg);
	return ret;
}
