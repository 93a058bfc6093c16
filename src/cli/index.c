/* `postern index`: the full-text index of IMAP SEARCH (store/fts.c).
 *   postern index stats           bodies indexed, waiting, expunged ones
 *                                 waiting to be unindexed, expunged entries
 *                                 left, index and mail size
 *   postern index rebuild USER    re-indexes the bodies in USER's mailboxes
 *   postern index rebuild --all   empties the index (dropping the entries of
 *                                 expunged bodies) and indexes every body
 * Both run beside a running daemon (its indexer and this one never index a
 * body twice: each checks in its own write transaction). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "mime/extract.h"
#include "store/store.h"

int cli_index(const struct config *cfg, int argc, char **argv)
{
	bool stats = argc == 2 && strcmp(argv[1], "stats") == 0;
	bool rebuild = argc == 3 && strcmp(argv[1], "rebuild") == 0;
	if (!stats && !rebuild) {
		fprintf(stderr, "usage: postern index stats | index rebuild USER|--all\n");
		return 2;
	}
	struct store *st = cli_open_store(cfg);
	char *err = NULL;
	int r;
	if (st == NULL)
		return 1;
	if (stats) {
		struct store_fts_stats s;
		r = store_fts_stats(st, &s, &err);
		if (r == 0) {
			printf("messages %" PRIu64 "\nindexed %" PRIu64 "\npending %" PRIu64
			       "\nunindexing %" PRIu64 "\nexpunged-entries %" PRIu64
			       "\nmail-bytes %" PRIu64 "\nindex-bytes %" PRIu64 "\nratio %.3f\n",
			       s.messages, s.indexed, s.pending, s.unindex, s.dead, s.mail_bytes,
			       s.index_bytes,
			       s.mail_bytes ? (double)s.index_bytes / (double)s.mail_bytes : 0.0);
		}
	} else {
		uint64_t n = 0;
		const char *user = strcmp(argv[2], "--all") == 0 ? NULL : argv[2];
		r = store_fts_rebuild(st, user, mime_extract_text, MIME_EXTRACT_VERSION, &n, &err);
		if (r == 0)
			printf("indexed %" PRIu64 "\n", n);
	}
	store_close(&st);
	return cli_report(r, &err);
}
