/* `postern metadata get|set|del`: the server's /shared METADATA entries
 * (RFC 5464 3.2.1.1: /shared/comment, /shared/vendor/...), which IMAP
 * clients read with GETMETADATA "" and may not set (store.h, "IMAP
 * METADATA"). /shared/admin comes from the imap_metadata_admin option and
 * is shown, not stored. Writes go to the database at once; a running
 * daemon reads entries per command, so it sees them at the next
 * GETMETADATA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/xmalloc.h"
#include "store/store.h"

static void metadata_usage(void)
{
	fprintf(stderr, "usage: postern metadata get [ENTRY]\n"
			"       postern metadata set ENTRY [VALUE]   (no VALUE: read from stdin)\n"
			"       postern metadata del ENTRY\n"
			"ENTRY: a server /shared entry, e.g. /shared/comment\n");
}

/* The effective /shared/admin (heap), or NULL when there is none. */
static char *admin_value(const struct config *cfg, struct store *st)
{
	if (cfg->imap_metadata_admin != NULL && cfg->imap_metadata_admin[0] != '\0')
		return xstrdup(cfg->imap_metadata_admin);
	char *dom = NULL, *err = NULL;
	int r = store_metadata_domain(st, cfg->hostname ? cfg->hostname : "", &dom, &err);
	free(err);
	char *v = r > 0 ? xasprintf("mailto:postmaster@%s", dom) : NULL;
	free(dom);
	return v;
}

static bool printable(const char *p, size_t n)
{
	if (n > 200)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] == 0x7f)
			return false;
	return true;
}

struct list_ctx {
	const char *want; /* one entry, or NULL for all */
	bool found;
};

static void print_entry(void *arg, const char *name, const void *value, size_t len)
{
	struct list_ctx *c = arg;
	if (c->want != NULL) {
		if (strcmp(name, c->want) == 0) {
			fwrite(value, 1, len, stdout);
			fputc('\n', stdout);
			c->found = true;
		}
		return;
	}
	if (printable(value, len))
		printf("%s %.*s\n", name, (int)len, (const char *)value);
	else
		printf("%s (%zu octets)\n", name, len);
}

static int read_stdin(struct buf *out, size_t max)
{
	char tmp[8192];
	ssize_t n;
	while ((n = read(0, tmp, sizeof tmp)) > 0) {
		buf_append(out, tmp, (size_t)n);
		if (out->len > max)
			return -1;
	}
	return n < 0 ? -1 : 0;
}

int cli_metadata(const struct config *cfg, int argc, char **argv)
{
	const char *op = argc > 1 ? argv[1] : NULL;
	char *entry = argc > 2 ? xstrdup(argv[2]) : NULL;
	int ret = 2;

	bool get = op != NULL && strcmp(op, "get") == 0;
	bool set = op != NULL && strcmp(op, "set") == 0;
	bool del = op != NULL && strcmp(op, "del") == 0;
	if ((!get && !set && !del) || (get && argc > 3) || (set && (argc < 3 || argc > 4)) ||
	    (del && argc != 3)) {
		metadata_usage();
		goto out;
	}
	if (entry != NULL) {
		const char *why = store_metadata_name_check(entry, false);
		if (why == NULL && strncmp(entry, "/shared/", 8) != 0)
			why = "server entries set here are /shared ones (users set their /private "
			      "ones with SETMETADATA)";
		if (why != NULL) {
			fprintf(stderr, "postern: %s: %s\n", argv[2], why);
			goto out;
		}
		if (!get && strcmp(entry, "/shared/admin") == 0) {
			fprintf(stderr, "postern: /shared/admin is the imap_metadata_admin option\n");
			goto out;
		}
	}
	struct buf value = BUF_INIT;
	if (set && argc == 4) {
		buf_appends(&value, argv[3]);
	} else if (set && read_stdin(&value, cfg->imap_metadata_max_size) < 0) {
		fprintf(stderr, "postern: value from stdin unreadable or above "
				"imap_metadata_max_size (%zu)\n", cfg->imap_metadata_max_size);
		buf_free(&value);
		goto out;
	}
	if (set && value.len > cfg->imap_metadata_max_size) {
		fprintf(stderr, "postern: value above imap_metadata_max_size (%zu)\n",
			cfg->imap_metadata_max_size);
		buf_free(&value);
		goto out;
	}
	struct store *st = cli_open_store(cfg);
	if (st == NULL) {
		buf_free(&value);
		ret = 1;
		goto out;
	}
	char *err = NULL;
	if (get) {
		struct list_ctx c = {.want = entry};
		ret = cli_report(store_metadata_server_list(st, print_entry, &c, &err), &err);
		char *admin = admin_value(cfg, st);
		if (ret == 0 && entry != NULL && strcmp(entry, "/shared/admin") == 0 && admin) {
			printf("%s\n", admin);
			c.found = true;
		} else if (ret == 0 && entry == NULL && admin != NULL) {
			printf("/shared/admin %s\n", admin);
		}
		free(admin);
		if (ret == 0 && entry != NULL && !c.found) {
			fprintf(stderr, "postern: no server entry %s\n", entry);
			ret = 1;
		}
	} else {
		int r = store_metadata_server_set(st, entry, set ? (value.data ? value.data : "")
								  : NULL,
						  value.len, (unsigned)cfg->imap_metadata_max_entries,
						  &err);
		ret = cli_report(r, &err);
		if (r == 0) {
			fprintf(stderr, "postern: no server entry %s\n", entry);
			ret = 1;
		} else if (r > 0) {
			printf("%s %s\n", entry, set ? "set" : "deleted");
		}
	}
	buf_free(&value);
	store_close(&st);
out:
	free(entry);
	return ret;
}
