/* COMPRESS=DEFLATE (RFC 4978): after "tag OK DEFLATE active" every octet of
 * the connection, both ways, is raw deflate (RFC 1951). The stream layer is
 * the conn's (core/conn.h conn_compress, core/zstream.h): inside TLS when
 * TLS is on, a sync flush at the end of each burst of responses, decoded
 * input delivered in bounded slices (imap_max_line and imap_max_command
 * apply to the decoded bytes, as to plaintext), and the session's output
 * limit counting compressed bytes.
 *
 * Valid when authenticated or selected (cmd.c AUTH|SEL): RFC 4978 5 adds
 * compress to command-auth, which RFC 3501 9 allows in both states; before
 * login the dispatcher answers BAD, and an anonymous connection never costs
 * a compressor. */
#include <strings.h>

#include "core/log.h"
#include "imap/selcmd.h"
#include "imap/session.h"

void imap_cmd_compress(struct imap_session *s, const struct imap_arg *args)
{
	/* RFC 4978 5: compress = "COMPRESS" SP algorithm; algorithm = "DEFLATE" */
	if (args[0].type != IMAP_ARG_ATOM || args[1].type != IMAP_ARG_EOL) {
		imap_tagged(s, "BAD", NULL, "COMPRESS takes one argument: DEFLATE");
		return;
	}
	if (strcasecmp(args[0].str, "DEFLATE") != 0) {
		imap_tagged(s, "BAD", NULL, "Unknown compression mechanism");
		return;
	}
	/* RFC 4978 3: COMPRESSIONACTIVE (RFC 5530 3) when the same mechanism
	 * is on already, here by an earlier COMPRESS. */
	if (conn_is_compressed(s->base.c)) {
		imap_tagged(s, "NO", "COMPRESSIONACTIVE", "DEFLATE is active already");
		return;
	}
	/* The OK goes out uncompressed (queued before the switch); the client
	 * compresses from its next command on (RFC 4978 3), so whatever
	 * follows this command in the input is compressed already. */
	imap_tagged(s, "OK", NULL, "DEFLATE active");
	if (conn_compress(s->base.c) < 0) {
		s->result = "compress failed";
		session_close(&s->base, "compress failed");
		return;
	}
	log_debug("imap %s: COMPRESS=DEFLATE on", s->base.ip);
}
