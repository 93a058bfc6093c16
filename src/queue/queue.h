/* Outbound delivery: the scheduler that takes due entries of the durable
 * queue (written by store_commit in the same transaction as the message),
 * finds where they go (relayhost, or the domain's MX through src/dns), and
 * delivers them with the SMTP client (src/smtp/client.h), grouping the
 * recipients of one message and one destination into one transaction and
 * carrying several messages per connection, within per-destination and
 * total connection limits. Temporary failures are retried with backoff
 * (queue_retry_min doubling up to queue_retry_max); permanent ones and
 * entries older than queue_lifetime bounce (src/queue/bounce.h); a
 * "delayed" DSN goes once after queue_delay_warning.
 *
 * Entries are leased (store: lease owner and expiry) before an attempt, so a
 * daemon killed mid-delivery loses nothing (the lease expires, the entry is
 * tried again: a duplicate is possible, a loss is not) and several nodes can
 * later share one queue. Every attempt logs one line: queue id, recipient,
 * MX host, IP, TLS, reply, delay, result. */
#ifndef POSTERN_QUEUE_QUEUE_H
#define POSTERN_QUEUE_QUEUE_H
#include <openssl/ssl.h>
#include "core/config.h"
#include "core/loop.h"
#include "core/pool.h"
#include "dns/dns.h"
#include "store/store.h"

struct queue;

/* cfg is kept (not copied): it outlives the queue. client_ctx: TLS client
 * context for the next hops. NULL with *err_r on a configuration error
 * (relayhost not host:port...). Starts looking for due entries at once. */
struct queue *queue_new(struct loop *l, struct pool *p, struct store *st, struct dns *dns,
			const struct config *cfg, SSL_CTX *client_ctx, char **err_r);
/* New entries were committed (a delivery with remote recipients, a bounce):
 * look now rather than at the next poll. Cheap; may be called often. */
void queue_kick(struct queue *q);
/* Shutdown: starts no new attempt; connections in a transaction are cut
 * (their entries keep their lease and are retried after restart: nothing is
 * marked delivered that was not), idle ones get QUIT. done(arg) runs on the
 * loop once nothing is in flight. */
void queue_stop(struct queue *q, loop_cb *done, void *arg);
void queue_free(struct queue **qp);

#endif
