/* `postern spam threshold`: junk and reject scores per domain and user
 * (table spam_thresholds). A recipient's thresholds are its own, else its
 * domain's, else the options spam_junk_score / spam_reject_score; each
 * score on its own.
 *   postern spam threshold                      every row, and the options
 *   postern spam threshold NAME                 NAME's row
 *   postern spam threshold NAME junk=N reject=N sets (either may be left out:
 *                                               kept as it is; "N" empty or
 *                                               "default": inherited)
 *   postern spam threshold NAME clear           deletes NAME's row */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "filter/reasons.h"
#include "store/store.h"

static void fmt_score(char *out, size_t n, double v)
{
	if (isnan(v))
		snprintf(out, n, "-");
	else
		snprintf(out, n, "%.1f", v);
}

static void print_row(void *arg, const char *name, double junk, double reject)
{
	char j[32], r[32];
	fmt_score(j, sizeof(j), junk);
	fmt_score(r, sizeof(r), reject);
	printf("%s junk=%s reject=%s\n", name, j, r);
}

/* "N": 0 with *v; "" or "default": 0 with NAN; else -1. */
static int parse_score(const char *s, double *v)
{
	if (*s == '\0' || strcmp(s, "default") == 0) {
		*v = NAN;
		return 0;
	}
	char *end = NULL;
	double d = strtod(s, &end);
	if (end == s || *end != '\0' || !isfinite(d) || d < -1000 || d > 1000)
		return -1;
	*v = d;
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: postern spam threshold [DOMAIN|USER [junk=N] [reject=N] | "
			"DOMAIN|USER clear]\n");
	return 2;
}

int cli_spam_threshold(const struct config *cfg, int argc, char **argv)
{
	/* argv[0] is "threshold" */
	const char *name = argc > 1 ? argv[1] : NULL;
	bool set_junk = false, set_reject = false, clear = false;
	double junk = NAN, reject = NAN;

	if (name != NULL && (*name == '\0' || strchr(name, ' ') != NULL || *name == '@'))
		return usage();
	for (int i = 2; i < argc; i++) {
		if (strncmp(argv[i], "junk=", 5) == 0 && !set_junk) {
			if (parse_score(argv[i] + 5, &junk) < 0)
				return usage();
			set_junk = true;
		} else if (strncmp(argv[i], "reject=", 7) == 0 && !set_reject) {
			if (parse_score(argv[i] + 7, &reject) < 0)
				return usage();
			set_reject = true;
		} else if (strcmp(argv[i], "clear") == 0 && argc == 3) {
			clear = true;
		} else {
			return usage();
		}
	}
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	int ret = 0;
	char *err = NULL;
	if (name == NULL) {
		printf("(options) junk=%.1f reject=%.1f\n", filter_score_parse(cfg->spam_junk_score),
		       filter_score_parse(cfg->spam_reject_score));
		ret = cli_report(store_spam_threshold_list(st, print_row, NULL, &err), &err);
	} else if (!set_junk && !set_reject && !clear) {
		double j, r;
		int k = store_spam_threshold_get(st, name, &j, &r);
		if (k < 0) {
			fprintf(stderr, "postern: cannot read the thresholds\n");
			ret = 1;
		} else if (k == 0) {
			printf("%s junk=- reject=- (inherited)\n", name);
		} else {
			print_row(NULL, name, j, r);
		}
	} else {
		double j = NAN, r = NAN;
		if (!clear && store_spam_threshold_get(st, name, &j, &r) < 0) {
			fprintf(stderr, "postern: cannot read the thresholds\n");
			store_close(&st);
			return 1;
		}
		if (set_junk)
			j = junk;
		if (set_reject)
			r = reject;
		if (clear)
			j = r = NAN;
		ret = cli_report(store_spam_threshold_set(st, name, j, r, &err), &err);
		if (ret == 0 && !isnan(j) && !isnan(r) && j > r)
			fprintf(stderr, "postern: note: junk=%.1f above reject=%.1f: such mail "
					"is refused before it could go to Junk\n",
				j, r);
		if (ret == 0 && (isnan(j) && isnan(r)))
			printf("%s: thresholds cleared (inherited)\n", name);
		else if (ret == 0)
			print_row(NULL, name, j, r);
	}
	store_close(&st);
	return ret;
}
