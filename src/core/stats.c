/*
 * stats.c
 *		Owns the counters and latency histograms that workers keep in their
 *		shared-memory slot, and evc_stats(), which evc.stats shows: one row
 *		per worker and one total row.  Also how a worker hands PostgreSQL's
 *		own statistics (pg_stat_user_tables and the like) on, as a backend
 *		does when it goes idle.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"

#include "core/shmem.h"
#include "core/stats.h"

const char *const evc_stat_names[EVC_STAT_VALUES] = {
	"produced", "delivered", "failed", "retried", "consumed", "landed",
	"dead_lettered", "bytes_in", "bytes_out", "batches"
};

const double evc_latency_bounds_ms[EVC_LAT_BUCKETS] = {
	0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 250, 500, 1000, 5000, 30000, -1
};

void
evc_stats_add(pg_atomic_uint64 *counter, uint64 n)
{
	pg_atomic_fetch_add_u64(counter, n);
}

void
evc_stats_observe_ms(EvcCounters *c, double ms)
{
	int			i;

	for (i = 0; i < EVC_LAT_BUCKETS - 1; i++)
		if (ms <= evc_latency_bounds_ms[i])
			break;
	pg_atomic_fetch_add_u64(&c->latency[i], 1);
	pg_atomic_fetch_add_u64(&c->latency_sum_us, (uint64) (Max(ms, 0) * 1000));
}

/*
 * Flush this process's pending table, WAL and I/O statistics; call it in a
 * worker's loop, between transactions, before it waits.  A backend does
 * this each time it goes idle.  A worker that never does keeps every insert
 * and delete it makes to itself until it exits, so autovacuum never sees
 * them (evc.outbox looked ever-growing; pg_net#254 is the same bug).
 *
 * pgstat_report_stat(false) flushes at most once a second and takes no lock
 * it would have to wait for; when it declines it says how long to wait.  If
 * that time passes with no transaction in between, the flush is forced, as
 * postgres.c does with IDLE_STATS_UPDATE_TIMEOUT.  Returns timeout_ms (-1:
 * none) shortened so that the caller wakes up for that forced flush.
 */
long
evc_stats_report_idle(long timeout_ms)
{
	static TimestampTz force_at = 0;
	TimestampTz now;
	long		retry_ms;

	Assert(!IsTransactionOrTransactionBlock());
	now = GetCurrentTimestamp();
	if (force_at != 0 && now >= force_at)
	{
		pgstat_report_stat(true);
		force_at = 0;
		return timeout_ms;
	}
	retry_ms = pgstat_report_stat(false);
	if (retry_ms <= 0)
	{
		force_at = 0;
		return timeout_ms;
	}
	if (force_at == 0)
		force_at = TimestampTzPlusMilliseconds(now, retry_ms);
	retry_ms = (long) ((force_at - now + 999) / 1000);
	return timeout_ms < 0 ? retry_ms : Min(timeout_ms, retry_ms);
}

/*
 * The q-quantile, interpolated linearly inside its bucket, as Prometheus'
 * histogram_quantile does.  NaN when the histogram is empty.
 */
double
evc_stats_quantile(const uint64 *buckets, double q)
{
	uint64		total = 0;
	double		rank;
	uint64		seen = 0;

	for (int i = 0; i < EVC_LAT_BUCKETS; i++)
		total += buckets[i];
	if (total == 0)
		return get_float8_nan();
	rank = q * total;
	for (int i = 0; i < EVC_LAT_BUCKETS; i++)
	{
		double		lo = (i == 0) ? 0 : evc_latency_bounds_ms[i - 1];
		double		hi = evc_latency_bounds_ms[i];

		if (seen + buckets[i] >= rank && buckets[i] > 0)
		{
			if (hi < 0)
				return lo;		/* in +Inf: the last finite bound */
			return lo + (hi - lo) * (rank - seen) / buckets[i];
		}
		seen += buckets[i];
	}
	return evc_latency_bounds_ms[EVC_LAT_BUCKETS - 2];
}

static void
read_counters(EvcCounters *c, EvcStatRow *r)
{
	r->v[0] = pg_atomic_read_u64(&c->produced);
	r->v[1] = pg_atomic_read_u64(&c->delivered);
	r->v[2] = pg_atomic_read_u64(&c->failed);
	r->v[3] = pg_atomic_read_u64(&c->retried);
	r->v[4] = pg_atomic_read_u64(&c->consumed);
	r->v[5] = pg_atomic_read_u64(&c->landed);
	r->v[6] = pg_atomic_read_u64(&c->dead_lettered);
	r->v[7] = pg_atomic_read_u64(&c->bytes_in);
	r->v[8] = pg_atomic_read_u64(&c->bytes_out);
	r->v[9] = pg_atomic_read_u64(&c->batches);
	for (int i = 0; i < EVC_LAT_BUCKETS; i++)
		r->lat[i] = pg_atomic_read_u64(&c->latency[i]);
	r->lat_sum_us = pg_atomic_read_u64(&c->latency_sum_us);
}

static const char *
kind_name(EvcWorkerKind kind)
{
	return kind == EVC_WORKER_LAUNCHER ? "launcher" :
		kind == EVC_WORKER_RELAY ? "relay" :
		kind == EVC_WORKER_GATEWAY ? "gateway" : "consumer";
}

/*
 * One row per supervised worker (the launcher has no counters), then one
 * for evc_aggregate.  The counters are read without a lock (atomics); the
 * names and errors are copied under it.
 */
EvcStatRow *
evc_stats_collect(int *nrows)
{
	EvcStatRow *rows = palloc0(sizeof(EvcStatRow) * (EVC_MAX_WORKERS + 1));
	int			n = 0;

	evc_require_preload();
	for (int i = 0; i < EVC_MAX_WORKERS; i++)
	{
		EvcWorkerSlot *w = &evc_shared->workers[i];
		EvcStatRow *r = &rows[n];

		LWLockAcquire(evc_shared->lock, LW_SHARED);
		if (!w->in_use || w->kind == EVC_WORKER_LAUNCHER)
		{
			LWLockRelease(evc_shared->lock);
			continue;
		}
		strlcpy(r->kind, kind_name(w->kind), sizeof(r->kind));
		strlcpy(r->name, w->name, sizeof(r->name));
		strlcpy(r->last_error, w->last_error, sizeof(r->last_error));
		r->last_error_at = w->last_error_at;
		r->pid = w->pid;
		LWLockRelease(evc_shared->lock);
		read_counters(&w->counters, r);
		n++;
	}
	LWLockAcquire(evc_shared->lock, LW_SHARED);
	strlcpy(rows[n].kind, "aggregator", sizeof(rows[n].kind));
	strlcpy(rows[n].name, "evc_aggregate", sizeof(rows[n].name));
	strlcpy(rows[n].last_error, evc_shared->aggregator_error, sizeof(rows[n].last_error));
	rows[n].last_error_at = evc_shared->aggregator_error_at;
	LWLockRelease(evc_shared->lock);
	read_counters(&evc_shared->aggregator, &rows[n]);
	*nrows = n + 1;
	return rows;
}

static void
put_row(ReturnSetInfo *rsinfo, EvcStatRow *r, int64 sent)
{
	Datum		values[19];
	bool		nulls[19] = {0};
	uint64		n = 0;
	double		p50 = evc_stats_quantile(r->lat, 0.5);
	double		p99 = evc_stats_quantile(r->lat, 0.99);

	for (int i = 0; i < EVC_LAT_BUCKETS; i++)
		n += r->lat[i];
	values[0] = CStringGetTextDatum(r->kind);
	values[1] = CStringGetTextDatum(r->name);
	values[2] = Int32GetDatum(r->pid);
	nulls[2] = (r->pid == 0);
	values[3] = Int64GetDatum(sent);
	nulls[3] = (sent < 0);
	for (int i = 0; i < EVC_STAT_VALUES; i++)
		values[4 + i] = Int64GetDatum((int64) r->v[i]);
	values[14] = Float8GetDatum(p50);
	nulls[14] = (n == 0);
	values[15] = Float8GetDatum(p99);
	nulls[15] = (n == 0);
	values[16] = Float8GetDatum(n ? (double) r->lat_sum_us / 1000.0 / n : 0);
	nulls[16] = (n == 0);
	values[17] = CStringGetTextDatum(r->last_error);
	nulls[17] = (r->last_error[0] == '\0');
	values[18] = TimestampTzGetDatum(r->last_error_at);
	nulls[18] = (r->last_error_at == 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

PG_FUNCTION_INFO_V1(evc_stats);
Datum
evc_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EvcStatRow	total = {0};
	EvcStatRow *rows;
	int			n;

	evc_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	rows = evc_stats_collect(&n);
	for (int i = 0; i < n; i++)
	{
		EvcStatRow *r = &rows[i];

		put_row(rsinfo, r, -1);
		/* The aggregator is not in the total: the relay counts its aggregates again. */
		if (strcmp(r->kind, "aggregator") == 0)
			continue;
		for (int j = 0; j < EVC_STAT_VALUES; j++)
			total.v[j] += r->v[j];
		for (int j = 0; j < EVC_LAT_BUCKETS; j++)
			total.lat[j] += r->lat[j];
		total.lat_sum_us += r->lat_sum_us;
		if (r->last_error_at > total.last_error_at)
		{
			total.last_error_at = r->last_error_at;
			strlcpy(total.last_error, r->last_error, sizeof(total.last_error));
		}
	}
	strlcpy(total.kind, "total", sizeof(total.kind));
	strlcpy(total.name, "total", sizeof(total.name));
	put_row(rsinfo, &total, (int64) pg_atomic_read_u64(&evc_shared->sent));
	return (Datum) 0;
}

static void
reset_counters(EvcCounters *c)
{
	pg_atomic_write_u64(&c->produced, 0);
	pg_atomic_write_u64(&c->delivered, 0);
	pg_atomic_write_u64(&c->failed, 0);
	pg_atomic_write_u64(&c->retried, 0);
	pg_atomic_write_u64(&c->consumed, 0);
	pg_atomic_write_u64(&c->landed, 0);
	pg_atomic_write_u64(&c->dead_lettered, 0);
	pg_atomic_write_u64(&c->bytes_in, 0);
	pg_atomic_write_u64(&c->bytes_out, 0);
	pg_atomic_write_u64(&c->batches, 0);
	for (int i = 0; i < EVC_LAT_BUCKETS; i++)
		pg_atomic_write_u64(&c->latency[i], 0);
	pg_atomic_write_u64(&c->latency_sum_us, 0);
}

/* evc_stats_reset(): zero every counter, as pg_stat_statements_reset does. */
PG_FUNCTION_INFO_V1(evc_stats_reset);
Datum
evc_stats_reset(PG_FUNCTION_ARGS)
{
	evc_require_preload();
	for (int i = 0; i < EVC_MAX_WORKERS; i++)
		reset_counters(&evc_shared->workers[i].counters);
	reset_counters(&evc_shared->aggregator);
	pg_atomic_write_u64(&evc_shared->sent, 0);
	PG_RETURN_VOID();
}

/*
 * One evc_aggregate run: events read, events that could not be aggregated,
 * aggregates published, and its duration.  Shown as the "aggregator" row.
 * Without shared memory (not preloaded) there is nowhere to count.
 */
void
evc_stats_count_aggregation(int64 events, int64 failed, int64 published, double ms)
{
	if (evc_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&evc_shared->aggregator.consumed, events);
	pg_atomic_fetch_add_u64(&evc_shared->aggregator.failed, failed);
	pg_atomic_fetch_add_u64(&evc_shared->aggregator.produced, published);
	pg_atomic_fetch_add_u64(&evc_shared->aggregator.batches, 1);
	evc_stats_observe_ms(&evc_shared->aggregator, ms);
}

void
evc_stats_aggregation_error(const char *message)
{
	if (evc_shared == NULL)
		return;
	LWLockAcquire(evc_shared->lock, LW_EXCLUSIVE);
	strlcpy(evc_shared->aggregator_error, message ? message : "", EVC_ERROR_LEN);
	evc_shared->aggregator_error_at = GetCurrentTimestamp();
	LWLockRelease(evc_shared->lock);
}
