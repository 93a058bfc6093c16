/* The store side of URLAUTH (RFC 4467 7): the mailbox access keys. Table
 * urlauth_keys (schema step 9): one key per mailbox, made on the committer
 * when GENURLAUTH first needs it, deleted by RESETKEY (a new one is made
 * by the next GENURLAUTH); URLFETCH reads it in a snapshot. */
#include "store/store_int.h"

#include <openssl/rand.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

/* 1 with key_r, 0 none, -1 error (*err_r). */
static int key_get(struct store_db *d, int64_t mailbox_id, unsigned char *key_r, char **err_r)
{
	sqlite3_stmt *s = store_sql(d, "SELECT key FROM urlauth_keys WHERE mailbox_id = ?1", err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	int rc = sqlite3_step(s), r = 0;
	if (rc == SQLITE_ROW) {
		const void *p = sqlite3_column_blob(s, 0);
		if (p != NULL && sqlite3_column_bytes(s, 0) == STORE_URLAUTH_KEY) {
			memcpy(key_r, p, STORE_URLAUTH_KEY);
			r = 1;
		}
	} else if (rc != SQLITE_DONE) {
		if (err_r != NULL)
			*err_r = store_db_err(d);
		r = -1;
	}
	store_stmt_done(s);
	return r;
}

int store_snap_urlauth_key(struct store_snap *sn, const char *user, const char *mailbox,
                           uint32_t *uidvalidity_r, unsigned char *key_r, char **err_r)
{
	struct store_mailbox_status st;
	int64_t mailbox_id;
	int r = store_db_mailbox(sn->d, user, mailbox, false, NULL, &mailbox_id, &st, err_r);
	if (r <= 0) {
		if (r == 0) {
			free(*err_r);
			*err_r = NULL;
		}
		return r;
	}
	*uidvalidity_r = st.uidvalidity;
	return key_get(sn->d, mailbox_id, key_r, err_r);
}

struct key_job {
	struct store_job job; /* first: the committer sees only this */
	char *user, *mailbox; /* mailbox NULL: all of the user's (reset) */
	bool reset;
	int result;
	unsigned char key[STORE_URLAUTH_KEY];
	store_urlauth_key_cb *key_cb;
	store_res_cb *res_cb;
	void *arg;
};

static int key_body(struct key_job *j, struct store_db *d)
{
	char *err = NULL;
	int64_t user_id = 0, mailbox_id = 0;
	int r;

	if (j->mailbox != NULL) {
		r = store_db_mailbox(d, j->user, j->mailbox, false, &user_id, &mailbox_id, NULL,
		                     &err);
		r = r == 1 ? STORE_OK : r == 0 ? STORE_NONEXISTENT : STORE_ERROR;
	} else {
		user_id = store_user_id(d, j->user, &err);
		r = user_id > 0 ? STORE_OK : user_id == 0 ? STORE_NONEXISTENT : STORE_ERROR;
	}
	free(err);
	if (r != STORE_OK)
		return r;
	sqlite3_stmt *s;
	if (j->reset) {
		/* RFC 4467 6.2: RESETKEY [mailbox]: the key(s) go; the next
		 * GENURLAUTH makes a new one */
		s = store_sql(d,
		              j->mailbox != NULL ? "DELETE FROM urlauth_keys WHERE mailbox_id = ?1"
		                                 : "DELETE FROM urlauth_keys WHERE user_id = ?1",
		              NULL);
		if (s == NULL)
			return STORE_ERROR;
		sqlite3_bind_int64(s, 1, j->mailbox != NULL ? mailbox_id : user_id);
		return store_step_done(d, s, NULL) < 0 ? STORE_ERROR : STORE_OK;
	}
	r = key_get(d, mailbox_id, j->key, NULL);
	if (r < 0)
		return STORE_ERROR;
	if (r == 1)
		return STORE_OK;
	/* RFC 4467 7: at least 128 bits, random */
	if (RAND_bytes(j->key, sizeof j->key) != 1)
		return STORE_ERROR;
	s = store_sql(d,
	              "INSERT OR REPLACE INTO urlauth_keys(mailbox_id, user_id, key)"
	              " VALUES(?1, ?2, ?3)",
	              NULL);
	if (s == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int64(s, 2, user_id);
	sqlite3_bind_blob(s, 3, j->key, (int)sizeof j->key, SQLITE_STATIC);
	return store_step_done(d, s, NULL) < 0 ? STORE_ERROR : STORE_OK;
}

static void key_finish(void *arg)
{
	struct key_job *j = arg;
	if (j->key_cb != NULL)
		j->key_cb(j->arg, j->result, j->key);
	else if (j->res_cb != NULL)
		j->res_cb(j->arg, j->result);
	memset(j->key, 0, sizeof j->key);
	free(j->user);
	free(j->mailbox);
	free(j);
}

static void key_tail(struct store *st, struct store_job *job)
{
	struct key_job *j = (struct key_job *)job;
	/* committed but not made durable: never a positive answer (a key
	 * handed out must be the one kept) */
	if (st->round_failed && j->result == STORE_OK)
		j->result = STORE_ERROR;
	loop_post(st->loop, key_finish, j);
}

static void key_run(struct store *st, struct store_job *job)
{
	struct key_job *j = (struct key_job *)job;
	struct store_db *d = &st->cdb;
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0) {
		log_err("store: urlauth: begin failed: %s", sqlite3_errmsg(d->db));
		j->result = STORE_ERROR;
	} else {
		j->result = key_body(j, d);
		if (j->result == STORE_ERROR)
			log_err("store: urlauth %s: %s", j->user, sqlite3_errmsg(d->db));
		if (j->result == STORE_OK && store_exec(d, "COMMIT", NULL) < 0) {
			log_err("store: urlauth: commit failed: %s", sqlite3_errmsg(d->db));
			j->result = STORE_ERROR;
		}
		if (j->result != STORE_OK)
			store_exec(d, "ROLLBACK", NULL);
	}
	store_job_done(st, job, key_tail);
}

static struct key_job *key_job_new(const char *user, const char *mailbox)
{
	struct key_job *j = xcalloc(1, sizeof *j);
	j->user = xstrdup(user);
	j->mailbox = mailbox != NULL ? xstrdup(mailbox) : NULL;
	j->job.run = key_run;
	return j;
}

void store_urlauth_key(struct store *st, const char *user, const char *mailbox,
                       store_urlauth_key_cb *cb, void *arg)
{
	struct key_job *j = key_job_new(user, mailbox);
	j->key_cb = cb;
	j->arg = arg;
	store_job_queue(st, &j->job);
}

void store_urlauth_reset(struct store *st, const char *user, const char *mailbox, store_res_cb *cb,
                         void *arg)
{
	struct key_job *j = key_job_new(user, mailbox);
	j->reset = true;
	j->res_cb = cb;
	j->arg = arg;
	store_job_queue(st, &j->job);
}
