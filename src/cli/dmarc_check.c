/* Placeholder until the issue-10 work on this subcommand lands. */
#include <stdio.h>

#include "cli/cli.h"

int cli_dmarc_check(const struct config *cfg, int argc, char **argv)
{
	fprintf(stderr, "postern: not built yet\n");
	return 2;
}
