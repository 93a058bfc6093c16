/* `postern spam threshold`: junk and reject scores per domain and user.
 * Placeholder until the integ part lands. */
#include <stdio.h>

#include "cli/cli.h"

int cli_spam_threshold(const struct config *cfg, int argc, char **argv)
{
	fprintf(stderr, "postern: spam threshold: not built yet\n");
	return 2;
}
