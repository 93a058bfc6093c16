/* Placeholder until the issue-10 work on this subcommand lands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cli_dmarc(const struct config *cfg, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "check") == 0)
		return cli_dmarc_check(cfg, argc - 1, argv + 1);
	fprintf(stderr, "postern: not built yet\n");
	return 2;
}
