/*
 * stats.h
 *		Counters in shared memory, per worker, shown by evc.stats.
 */
#ifndef EVC_STATS_H
#define EVC_STATS_H

#include "datatype/timestamp.h"
#include "port/atomics.h"

/* Latency histogram bucket upper bounds, in ms; the last is +Inf. */
#define EVC_LAT_BUCKETS 18
extern const double evc_latency_bounds_ms[EVC_LAT_BUCKETS];

/*
 * Written by the worker that owns the slot, read by anyone: atomics, so a
 * reader never sees a torn value and no lock is taken in the hot path.
 */
typedef struct EvcCounters
{
	pg_atomic_uint64 produced;	/* relay: messages handed to librdkafka */
	pg_atomic_uint64 delivered; /* relay: acknowledged by Kafka */
	pg_atomic_uint64 failed;	/* relay: deliveries failed; consumer: messages
								 * of batches that could not land; aggregator:
								 * events that could not be aggregated */
	pg_atomic_uint64 retried;	/* relay: failed, kept in the outbox for a retry */
	pg_atomic_uint64 consumed;	/* consumer: messages read from Kafka */
	pg_atomic_uint64 landed;	/* consumer: made durable by a sink */
	pg_atomic_uint64 dead_lettered;
	pg_atomic_uint64 bytes_in;
	pg_atomic_uint64 bytes_out;
	pg_atomic_uint64 batches;
	/* relay: commit to Kafka ack per event; consumer: per batch */
	pg_atomic_uint64 latency[EVC_LAT_BUCKETS];
	pg_atomic_uint64 latency_sum_us;
} EvcCounters;

/* A copy of one worker's counters, in the order of evc_stat_names. */
#define EVC_STAT_VALUES 10
extern const char *const evc_stat_names[EVC_STAT_VALUES];

typedef struct EvcStatRow
{
	char		kind[16];
	char		name[64];
	int			pid;
	uint64		v[EVC_STAT_VALUES];
	uint64		lat[EVC_LAT_BUCKETS];
	uint64		lat_sum_us;
	char		last_error[256];
	TimestampTz last_error_at;
} EvcStatRow;

extern EvcStatRow *evc_stats_collect(int *nrows);
extern void evc_stats_add(pg_atomic_uint64 *counter, uint64 n);
extern void evc_stats_observe_ms(EvcCounters *c, double ms);
extern double evc_stats_quantile(const uint64 *buckets, double q);
extern void evc_stats_count_aggregation(int64 events, int64 failed, int64 published, double ms);
extern void evc_stats_aggregation_error(const char *message);
extern long evc_stats_report_idle(long timeout_ms);

#endif
