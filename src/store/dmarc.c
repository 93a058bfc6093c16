/* DMARC evaluations kept for aggregate reports (RFC 7489 7.2). Recording is
 * a job on the committer: the loop never waits for it and its INSERTs (one
 * transaction for the rows handed over together, store_dmarc_record_n) join
 * the committer's round (lazy: nobody waits for its sync either; it becomes
 * durable with the round's, or within STORE_LAZY_SYNC_MS). */
#include "store/store_int.h"

#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"

enum {
	F_SOURCE_IP,
	F_HEADER_FROM,
	F_ENVELOPE_FROM,
	F_ENVELOPE_TO,
	F_POLICY_DOMAIN,
	F_P,
	F_SP,
	F_FO,
	F_RUA,
	F_DISPOSITION,
	F_DKIM,
	F_SPF,
	F_REASON,
	F_REASON_COMMENT,
	F_DKIM_RESULTS,
	F_SPF_DOMAIN,
	F_SPF_SCOPE,
	F_SPF_RESULT,
	F_N
};

struct dmarc_rowcopy {
	time_t time;
	int pct;
	char adkim[2], aspf[2];
	char *f[F_N];
};

struct dmarc_job {
	struct store_job job; /* first: the committer sees only this */
	int kind;             /* 0 record, 1 prune */
	time_t time;          /* prune: before */
	struct dmarc_rowcopy *rows;
	size_t n;
};

static const char *nz(const char *s)
{
	return s != NULL ? s : "";
}

/* "domain selector result" per line: the three are tokens (no space or LF
 * in a domain, a selector or a result keyword); anything else is cut at the
 * first such character, so a line always parses back into three fields. */
static void dkim_append(struct buf *b, const char *s)
{
	size_t n = strcspn(nz(s), " \n\r\t");
	if (n == 0)
		buf_append(b, "-", 1);
	else
		buf_append(b, s, n);
}

static char *dkim_join(const struct store_dmarc_row *row)
{
	struct buf b = {0};
	size_t n = row->n_dkim < STORE_DMARC_MAX_DKIM ? row->n_dkim : STORE_DMARC_MAX_DKIM;
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_append(&b, "\n", 1);
		dkim_append(&b, row->dkim_results[i].domain);
		buf_append(&b, " ", 1);
		dkim_append(&b, row->dkim_results[i].selector);
		buf_append(&b, " ", 1);
		dkim_append(&b, row->dkim_results[i].result);
	}
	buf_append(&b, "", 1);
	char *s = xstrdup(b.data);
	buf_free(&b);
	return s;
}

static void job_free(struct dmarc_job *j)
{
	for (size_t k = 0; k < j->n; k++)
		for (int i = 0; i < F_N; i++)
			free(j->rows[k].f[i]);
	free(j->rows);
	free(j);
}

static void job_tail(struct store *st, struct store_job *job)
{
	job_free((struct dmarc_job *)job);
}

static int row_insert(struct store_db *d, const struct dmarc_rowcopy *j)
{
	static const char sql[] =
		"INSERT INTO dmarc_rows (time, source_ip, header_from, envelope_from, envelope_to,"
		" policy_domain, p, sp, fo, rua, disposition, dkim, spf, reason, reason_comment,"
		" dkim_results, spf_domain, spf_scope, spf_result, pct, adkim, aspf)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
		" ?17, ?18, ?19, ?20, ?21, ?22)";
	sqlite3_stmt *s = store_sql(d, sql, NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)j->time);
	for (int i = 0; i < F_N; i++)
		sqlite3_bind_text(s, 2 + i, j->f[i], -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 20, j->pct);
	sqlite3_bind_text(s, 21, j->adkim, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 22, j->aspf, -1, SQLITE_STATIC);
	return store_step_done(d, s, NULL);
}

static int job_insert(struct store_db *d, struct dmarc_job *j)
{
	for (size_t k = 0; k < j->n; k++)
		if (row_insert(d, &j->rows[k]) < 0)
			return -1;
	return 0;
}

static int job_prune(struct store_db *d, struct dmarc_job *j)
{
	sqlite3_stmt *s = store_sql(d, "DELETE FROM dmarc_rows WHERE time < ?1", NULL);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)j->time);
	return store_step_done(d, s, NULL);
}

static void job_run(struct store *st, struct store_job *job)
{
	struct dmarc_job *j = (struct dmarc_job *)job;
	struct store_db *d = &st->cdb;
	if (store_exec(d, "BEGIN IMMEDIATE", NULL) < 0) {
		log_err("store: dmarc: begin failed: %s", sqlite3_errmsg(d->db));
	} else if ((j->kind == 0 ? job_insert(d, j) : job_prune(d, j)) < 0 ||
		   store_exec(d, "COMMIT", NULL) < 0) {
		log_err("store: dmarc: %s failed: %s", j->kind == 0 ? "record" : "prune",
			sqlite3_errmsg(d->db));
		store_exec(d, "ROLLBACK", NULL);
	}
	store_job_done(st, job, job_tail);
}

static void job_queue(struct store *st, struct dmarc_job *j)
{
	j->job.run = job_run;
	j->job.lazy = true; /* nobody waits for it */
	store_job_queue(st, &j->job);
}

static char align_char(char c)
{
	return c == 's' ? 's' : 'r';
}

static void row_copy(struct dmarc_rowcopy *j, const struct store_dmarc_row *row)
{
	j->time = row->time;
	j->pct = row->pct;
	j->adkim[0] = align_char(row->adkim);
	j->aspf[0] = align_char(row->aspf);
	const char *v[F_N] = {
		[F_SOURCE_IP] = row->source_ip,
		[F_HEADER_FROM] = row->header_from,
		[F_ENVELOPE_FROM] = row->envelope_from,
		[F_ENVELOPE_TO] = row->envelope_to,
		[F_POLICY_DOMAIN] = row->policy_domain,
		[F_P] = row->p,
		[F_SP] = row->sp,
		[F_FO] = row->fo,
		[F_RUA] = row->rua,
		[F_DISPOSITION] = row->disposition,
		[F_DKIM] = row->dkim,
		[F_SPF] = row->spf,
		[F_REASON] = row->reason,
		[F_REASON_COMMENT] = row->reason_comment,
		[F_SPF_DOMAIN] = row->spf_domain,
		[F_SPF_SCOPE] = row->spf_scope,
		[F_SPF_RESULT] = row->spf_result,
	};
	for (int i = 0; i < F_N; i++)
		j->f[i] = i == F_DKIM_RESULTS ? dkim_join(row) : xstrdup(nz(v[i]));
}

void store_dmarc_record_n(struct store *st, const struct store_dmarc_row *rows, size_t n)
{
	if (n == 0)
		return;
	struct dmarc_job *j = xcalloc(1, sizeof *j);
	j->rows = xcalloc(n, sizeof *j->rows);
	j->n = n;
	for (size_t k = 0; k < n; k++)
		row_copy(&j->rows[k], &rows[k]);
	job_queue(st, j);
}

void store_dmarc_record(struct store *st, const struct store_dmarc_row *row)
{
	store_dmarc_record_n(st, row, 1);
}

void store_dmarc_prune(struct store *st, time_t before)
{
	struct dmarc_job *j = xcalloc(1, sizeof *j);
	j->kind = 1;
	j->time = before;
	job_queue(st, j);
}

/* ---- reading ---- */

static int rows_read(struct store_db *d, time_t since, time_t until, store_dmarc_row_cb *cb,
		     void *arg, char **err_r)
{
	static const char sql[] =
		"SELECT time, source_ip, header_from, envelope_from, envelope_to, policy_domain,"
		" p, sp, fo, rua, disposition, dkim, spf, reason, reason_comment, dkim_results,"
		" spf_domain, spf_scope, spf_result, pct, adkim, aspf FROM dmarc_rows"
		" WHERE time >= ?1 AND time < ?2 AND rua != '' ORDER BY policy_domain, time, id";
	sqlite3_stmt *s = store_sql(d, sql, err_r);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)since);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)until);
	int rc;
	struct store_dmarc_dkim dk[STORE_DMARC_MAX_DKIM];
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *f[F_N];
		for (int i = 0; i < F_N; i++)
			f[i] = (const char *)sqlite3_column_text(s, 1 + i);
		/* dkim_results back into its lines (a copy: sqlite's text is const) */
		char *dks = xstrdup(nz(f[F_DKIM_RESULTS]));
		size_t n = 0;
		for (char *line = dks, *next; *line && n < STORE_DMARC_MAX_DKIM; line = next) {
			next = line + strcspn(line, "\n");
			if (*next)
				*next++ = '\0';
			char *sel = strchr(line, ' ');
			char *res = sel ? strchr(sel + 1, ' ') : NULL;
			if (res == NULL)
				continue;
			*sel++ = '\0';
			*res++ = '\0';
			dk[n++] = (struct store_dmarc_dkim){line, strcmp(sel, "-") ? sel : "", res};
		}
		const char *adkim = (const char *)sqlite3_column_text(s, 20);
		const char *aspf = (const char *)sqlite3_column_text(s, 21);
		struct store_dmarc_row row = {
			.time = (time_t)sqlite3_column_int64(s, 0),
			.source_ip = nz(f[F_SOURCE_IP]),
			.header_from = nz(f[F_HEADER_FROM]),
			.envelope_from = nz(f[F_ENVELOPE_FROM]),
			.envelope_to = nz(f[F_ENVELOPE_TO]),
			.policy_domain = nz(f[F_POLICY_DOMAIN]),
			.p = nz(f[F_P]),
			.sp = nz(f[F_SP]),
			.pct = sqlite3_column_int(s, 19),
			.adkim = adkim && adkim[0] == 's' ? 's' : 'r',
			.aspf = aspf && aspf[0] == 's' ? 's' : 'r',
			.fo = nz(f[F_FO]),
			.rua = nz(f[F_RUA]),
			.disposition = nz(f[F_DISPOSITION]),
			.dkim = nz(f[F_DKIM]),
			.spf = nz(f[F_SPF]),
			.reason = nz(f[F_REASON]),
			.reason_comment = nz(f[F_REASON_COMMENT]),
			.dkim_results = dk,
			.n_dkim = n,
			.spf_domain = nz(f[F_SPF_DOMAIN]),
			.spf_scope = nz(f[F_SPF_SCOPE]),
			.spf_result = nz(f[F_SPF_RESULT]),
		};
		int stop = cb(arg, &row);
		free(dks);
		if (stop)
			break;
	}
	int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
	if (ret < 0 && err_r)
		*err_r = store_db_err(d);
	store_stmt_done(s);
	return ret;
}

int store_snap_dmarc_rows(struct store_snap *sn, time_t since, time_t until,
			  store_dmarc_row_cb *cb, void *arg, char **err_r)
{
	return rows_read(sn->d, since, until, cb, arg, err_r);
}

int store_dmarc_rows(struct store *st, time_t since, time_t until, store_dmarc_row_cb *cb,
		     void *arg, char **err_r)
{
	return rows_read(&st->main, since, until, cb, arg, err_r);
}
