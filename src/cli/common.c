/* Helpers shared by the CLI's subcommand files (cli.h): the private loop a
 * subcommand runs the daemon's asynchronous code on, the message read from
 * stdin, the DKIM limits from the configuration. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/pool.h"
#include "dns/dns.h"
#include "policy/dkim.h"

int cli_loop_open(struct cli_loop *c, const struct config *cfg, int flags)
{
	memset(c, 0, sizeof *c);
	c->l = loop_new();
	if (flags & CLI_LOOP_DNS) {
		c->dns = cli_dns(c->l, cfg);
		if (c->dns == NULL) {
			loop_free(&c->l);
			return -1;
		}
	}
	/* every public-key operation runs on a worker, never on the loop */
	if (flags & CLI_LOOP_POOL)
		c->pool = pool_new(c->l, 1);
	return 0;
}

void cli_loop_close(struct cli_loop *c)
{
	pool_free(&c->pool);
	dns_free(&c->dns);
	loop_free(&c->l);
}

int cli_read_message_ends(struct buf *out, size_t max, bool *lf_r)
{
	char chunk[65536];
	size_t n, lf = 0, crlf = 0;
	char prev = 0;

	while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
		for (size_t i = 0; i < n; i++) {
			if (chunk[i] == '\n' && prev != '\r') {
				buf_appendc(out, '\r');
				lf++;
			} else if (chunk[i] == '\n') {
				crlf++;
			}
			buf_appendc(out, chunk[i]);
			prev = chunk[i];
		}
		if (max > 0 && out->len > max)
			return -1;
	}
	if (lf_r != NULL)
		*lf_r = lf > 0 && crlf == 0;
	return 0;
}

int cli_read_message(struct buf *out, size_t max)
{
	return cli_read_message_ends(out, max, NULL);
}

void cli_write_lf(FILE *f, const char *p, size_t n)
{
	size_t start = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			fwrite(p + start, 1, i - start, f);
			start = i + 1; /* the LF */
		}
	}
	fwrite(p + start, 1, n - start, f);
}

void cli_dkim_limits(const struct config *cfg, struct dkim_limits *lim)
{
	memset(lim, 0, sizeof *lim);
	lim->max_signatures = (unsigned)cfg->dkim_max_signatures;
	lim->min_rsa_bits = (unsigned)cfg->dkim_min_rsa_bits;
	lim->max_rsa_bits = (unsigned)cfg->dkim_max_rsa_bits;
	lim->max_field = CLI_DKIM_MAX_FIELD;
	lim->max_fields = CLI_DKIM_MAX_FIELDS;
}
