/* `postern block|allow add|del|list`: the local IP lists of the connection
 * stage (src/filter/screen.h). Placeholder until the screen part lands. */
#include <stdio.h>

#include "cli/cli.h"

int cli_block(const struct config *cfg, int argc, char **argv)
{
	fprintf(stderr, "postern: %s: not built yet\n", argv[0]);
	return 2;
}
