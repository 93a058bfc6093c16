/* `postern spam train|stats`, `postern mail explain`: the statistical
 * filter's admin side (src/filter/bayes.h). Placeholder until the bayes
 * part lands. */
#include <stdio.h>

#include "cli/cli.h"

int cli_spam(const struct config *cfg, int argc, char **argv)
{
	fprintf(stderr, "postern: spam: not built yet\n");
	return 2;
}

int cli_mail_explain(const struct config *cfg, int argc, char **argv)
{
	fprintf(stderr, "postern: mail explain: not built yet\n");
	return 2;
}
