/* `postern block|allow add|del|list [CIDR] [--comment TEXT]`: the local IP
 * lists of the connection stage (src/filter/screen.h). Entries are kept in
 * their canonical form (cidr_canonical: host bits zeroed, the prefix
 * written), so "192.0.2.7/24" and "192.0.2.0/24" are one entry. A network
 * is in one list at a time: adding it to the other moves it. After each
 * change the store's notice tells a running daemon, which re-reads the
 * lists for its next connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/config.h"
#include "filter/screen.h"
#include "store/store.h"

#define CLI_BLOCK_COMMENT_MAX 200

static void block_usage(const char *list)
{
	fprintf(stderr,
		"usage: postern %s add CIDR [--comment TEXT]\n"
		"       postern %s del CIDR\n"
		"       postern %s list\n",
		list, list, list);
}

static int print_entry(void *arg, const struct store_ip_entry *e)
{
	char when[32];
	struct tm tm;
	time_t t = e->created;
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s %s%s%s\n", e->network, when, e->comment[0] ? " " : "", e->comment);
	return 0;
}

static bool comment_ok(const char *c)
{
	if (strlen(c) > CLI_BLOCK_COMMENT_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)c; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

int cli_block(const struct config *cfg, int argc, char **argv)
{
	const char *list = argv[0]; /* "block" | "allow" */
	const char *op = argc > 1 ? argv[1] : NULL;
	const char *cidr = NULL, *comment = "";
	char net[CIDR_TEXT_MAX];

	if (op == NULL) {
		block_usage(list);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--comment") == 0 && i + 1 < argc &&
		    strcmp(op, "add") == 0) {
			comment = argv[++i];
		} else if (cidr == NULL && argv[i][0] != '-') {
			cidr = argv[i];
		} else {
			block_usage(list);
			return 2;
		}
	}
	bool want_cidr = strcmp(op, "add") == 0 || strcmp(op, "del") == 0;
	if ((want_cidr && cidr == NULL) || (!want_cidr && (strcmp(op, "list") != 0 || cidr))) {
		block_usage(list);
		return 2;
	}
	if (want_cidr && cidr_canonical(cidr, net, sizeof net) < 0) {
		fprintf(stderr, "postern: not an address or network: %s\n", cidr);
		return 2;
	}
	if (!comment_ok(comment)) {
		fprintf(stderr, "postern: --comment: at most %d printable characters\n",
			CLI_BLOCK_COMMENT_MAX);
		return 2;
	}
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	char *err = NULL;
	int ret = 0;
	if (strcmp(op, "list") == 0) {
		ret = cli_report(store_ip_lists(st, list, print_entry, NULL, &err), &err);
	} else if (strcmp(op, "add") == 0) {
		ret = cli_report(store_ip_list_add(st, net, list, comment, &err), &err);
		if (ret == 0) {
			store_ip_lists_changed(st);
			printf("%s added to the %s list\n", net, list);
			/* trusted clients skip the connection stage: say so */
			struct cidr_set *trusted = cidr_set_parse(
			    cfg->trusted_networks ? cfg->trusted_networks : "", NULL);
			char addr[CIDR_TEXT_MAX];
			snprintf(addr, sizeof addr, "%s", net);
			*strchr(addr, '/') = '\0';
			if (trusted != NULL && cidr_set_match(trusted, addr))
				fprintf(stderr,
					"postern: note: %s is in trusted_networks, which skip the "
					"connection stage\n",
					addr);
			cidr_set_free(&trusted);
		}
	} else {
		int r = store_ip_list_del(st, net, list, &err);
		if (r < 0) {
			ret = cli_report(r, &err);
		} else if (r == 0) {
			fprintf(stderr, "postern: %s is not in the %s list\n", net, list);
			ret = 1;
		} else {
			store_ip_lists_changed(st);
			printf("%s removed from the %s list\n", net, list);
		}
	}
	store_close(&st);
	return ret;
}
