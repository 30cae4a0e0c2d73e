/*
 * metrics.c
 *		Owns the metrics that evcollector exposes beyond evc.stats: what the
 *		consumers report per batch and per partition, evc.consumer_lag,
 *		evc_metrics() in Prometheus text exposition format, and the Metrics
 *		message the relay publishes to <prefix>metrics every
 *		evcollector.metrics_interval.
 *
 * Counters live in shared memory (stats.c).  Lag is the difference between
 * a partition's high watermark, which the consumer copies from librdkafka
 * into shared memory about once a second, and the next offset to land,
 * which evc.consumer_offsets holds; so lag counts what is in Kafka and not
 * landed, and it grows while a sink is held back.
 */
#include "postgres.h"

#include <math.h>

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "evcollector.pb-c.h"

#include "consume/consumer.h"
#include "kafka/kafka.h"
#include "observe/metrics.h"
#include "send/outbox.h"
#include "kafka/proto.h"
#include "core/shmem.h"
#include "core/stats.h"

#define WATERMARK_EVERY_MS 1000

/* ---------------------------------------------------------------------
 * Reported by the consumer worker
 * ---------------------------------------------------------------------
 */

void
evc_consumer_count_batch(EvcWorkerSlot *slot, int nmessages, int64 nbytes,
						 const EvcLandResult *res, TimestampTz started)
{
	EvcCounters *c = &slot->counters;

	if (res == NULL)
	{
		evc_stats_add(&c->failed, nmessages);
		return;
	}
	evc_stats_add(&c->consumed, nmessages);
	evc_stats_add(&c->landed, res->landed);
	evc_stats_add(&c->dead_lettered, res->dead_lettered);
	evc_stats_add(&c->bytes_in, nbytes);
	evc_stats_add(&c->batches, 1);
	evc_stats_observe_ms(c, (GetCurrentTimestamp() - started) / 1000.0);
}

/*
 * Copy the watermarks librdkafka holds for the assigned partitions (from
 * its last fetch responses: no broker round trip) into shared memory, at
 * most once a second.  With all_landed (nothing read is waiting to land),
 * the consumer's positions too: librdkafka steps them over transaction
 * markers, which the offsets landed never cover.
 */
void
evc_consumer_note_watermarks(EvcWorkerSlot *slot, rd_kafka_t *rk, bool all_landed)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	rd_kafka_topic_partition_list_t *parts = NULL;
	EvcLagTable *fresh;

	if (!TimestampDifferenceExceeds(last, now, WATERMARK_EVERY_MS))
		return;
	last = now;
	if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	/* Local, like the watermarks: the offset after the last message read. */
	if (all_landed && rd_kafka_position(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		all_landed = false;
	fresh = palloc0(sizeof(EvcLagTable));
	fresh->assigned = parts->cnt;
	fresh->observed_at = now;
	for (int i = 0; i < parts->cnt && fresh->n < EVC_LAG_PARTITIONS; i++)
	{
		EvcPartitionMark *m = &fresh->parts[fresh->n];
		int64_t		lo,
					hi;

		if (rd_kafka_get_watermark_offsets(rk, parts->elems[i].topic, parts->elems[i].partition,
										   &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
			lo = hi = -1;
		strlcpy(m->topic, parts->elems[i].topic, EVC_TOPIC_LEN);
		m->partition = parts->elems[i].partition;
		m->low = lo;
		m->high = hi;
		m->position = (all_landed && parts->elems[i].offset >= 0) ? parts->elems[i].offset : -1;
		fresh->n++;
	}
	rd_kafka_topic_partition_list_destroy(parts);
	LWLockAcquire(evc_shared->lock, LW_EXCLUSIVE);
	memcpy(&evc_shared->lag[slot - evc_shared->workers], fresh, sizeof(EvcLagTable));
	LWLockRelease(evc_shared->lock);
	pfree(fresh);
}

/* evc_consumer_watermarks(): what the consumers last saw, per partition. */
PG_FUNCTION_INFO_V1(evc_consumer_watermarks);
Datum
evc_consumer_watermarks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EvcLagTable *t = palloc(sizeof(EvcLagTable));

	evc_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < EVC_MAX_WORKERS; i++)
	{
		char		name[EVC_WORKER_NAME_LEN];
		bool		running;

		LWLockAcquire(evc_shared->lock, LW_SHARED);
		running = evc_shared->workers[i].in_use && evc_shared->workers[i].kind == EVC_WORKER_CONSUMER &&
			evc_shared->workers[i].pid != 0;
		if (running)
		{
			strlcpy(name, evc_shared->workers[i].name, sizeof(name));
			memcpy(t, &evc_shared->lag[i], sizeof(EvcLagTable));
		}
		LWLockRelease(evc_shared->lock);
		if (!running)
			continue;
		for (int j = 0; j < t->n; j++)
		{
			/* An install not updated to 0.7.0 yet declares the first six. */
			Datum		values[7];
			bool		nulls[7] = {0};

			values[0] = CStringGetTextDatum(name);
			values[1] = CStringGetTextDatum(t->parts[j].topic);
			values[2] = Int32GetDatum(t->parts[j].partition);
			values[3] = Int64GetDatum(t->parts[j].low);
			nulls[3] = t->parts[j].low < 0;
			values[4] = Int64GetDatum(t->parts[j].high);
			nulls[4] = t->parts[j].high < 0;
			values[5] = TimestampTzGetDatum(t->observed_at);
			values[6] = Int64GetDatum(t->parts[j].position);
			nulls[6] = t->parts[j].position < 0;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Prometheus text exposition format
 * ---------------------------------------------------------------------
 */

static const char *const counter_help[EVC_STAT_VALUES] = {
	"Messages handed to Kafka by the relay; aggregates published by evc_aggregate.",
	"Messages Kafka acknowledged.",
	"Relay: deliveries that failed; consumer: messages of batches that could not land; aggregator: events that could not be aggregated.",
	"Messages kept in the outbox for another delivery attempt.",
	"Consumer: messages read from Kafka; aggregator: events aggregated.",
	"Messages a sink made durable.",
	"Messages moved to evc.dead_letters.",
	"Bytes of messages consumed.",
	"Bytes of messages delivered.",
	"Batches: relay batches, consumer batches, evc_aggregate runs."
};

/* A label value, escaped as the format requires: \\, \" and \n. */
static void
append_label(StringInfo buf, const char *key, const char *value, bool first)
{
	appendStringInfo(buf, "%s%s=\"", first ? "" : ",", key);
	for (const char *p = value; *p; p++)
	{
		if (*p == '\\' || *p == '"')
			appendStringInfoChar(buf, '\\');
		if (*p == '\n')
			appendStringInfoString(buf, "\\n");
		else
			appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}

static void
append_family(StringInfo buf, const char *name, const char *type, const char *help)
{
	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
append_worker_labels(StringInfo buf, EvcStatRow *r)
{
	append_label(buf, "kind", r->kind, true);
	append_label(buf, "name", r->name, false);
}

static void
append_histogram(StringInfo buf, EvcStatRow *rows, int n)
{
	append_family(buf, "evc_latency_seconds", "histogram",
				  "Relay: from the sending transaction to Kafka's acknowledgement, per event; consumer: landing time per batch; aggregator: time per run.");
	for (int i = 0; i < n; i++)
	{
		uint64		cumulative = 0;

		for (int b = 0; b < EVC_LAT_BUCKETS; b++)
		{
			cumulative += rows[i].lat[b];
			appendStringInfoString(buf, "evc_latency_seconds_bucket{");
			append_worker_labels(buf, &rows[i]);
			if (evc_latency_bounds_ms[b] < 0)
				appendStringInfoString(buf, ",le=\"+Inf\"");
			else
				appendStringInfo(buf, ",le=\"%g\"", evc_latency_bounds_ms[b] / 1000.0);
			appendStringInfo(buf, "} " UINT64_FORMAT "\n", cumulative);
		}
		appendStringInfoString(buf, "evc_latency_seconds_sum{");
		append_worker_labels(buf, &rows[i]);
		appendStringInfo(buf, "} %.6f\n", rows[i].lat_sum_us / 1e6);
		appendStringInfoString(buf, "evc_latency_seconds_count{");
		append_worker_labels(buf, &rows[i]);
		appendStringInfo(buf, "} " UINT64_FORMAT "\n", cumulative);
	}
}

static int64
outbox_pending(void)
{
	bool		isnull;

	if (SPI_execute("SELECT count(*) FROM evc.outbox", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count evc.outbox");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Leaves the lag rows in SPI_tuptable; none before the 0.5.0 schema. */
static void
read_lag(void)
{
	if (!OidIsValid(get_relname_relid("consumer_lag", get_namespace_oid("evc", false))))
	{
		SPI_processed = 0;
		return;
	}
	if (SPI_execute("SELECT consumer, topic, partition, coalesce(next_offset, -1), high_watermark, lag "
					"FROM evc.consumer_lag WHERE lag IS NOT NULL ORDER BY 1, 2, 3", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.consumer_lag");
}

/*
 * evc_metrics() returns text: every counter of evc.stats per worker
 * (labels kind and name), the latency histograms, whether each worker runs,
 * when it last failed, the consumer lag per partition and the outbox
 * backlog.
 */
PG_FUNCTION_INFO_V1(evc_metrics);
Datum
evc_metrics(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	EvcStatRow *rows;
	int			n;

	evc_require_preload();
	rows = evc_stats_collect(&n);
	initStringInfo(&buf);

	append_family(&buf, "evc_sent_total", "counter",
				  "Messages put in the outbox by committed transactions (events, images, registrations, aggregates, metrics).");
	appendStringInfo(&buf, "evc_sent_total " UINT64_FORMAT "\n", pg_atomic_read_u64(&evc_shared->sent));
	for (int v = 0; v < EVC_STAT_VALUES; v++)
	{
		char	   *family = psprintf("evc_%s_total", evc_stat_names[v]);

		append_family(&buf, family, "counter", counter_help[v]);
		for (int i = 0; i < n; i++)
		{
			appendStringInfo(&buf, "%s{", family);
			append_worker_labels(&buf, &rows[i]);
			appendStringInfo(&buf, "} " UINT64_FORMAT "\n", rows[i].v[v]);
		}
	}
	append_histogram(&buf, rows, n);

	append_family(&buf, "evc_worker_up", "gauge", "1 while the worker's process runs.");
	for (int i = 0; i < n; i++)
	{
		if (strcmp(rows[i].kind, "aggregator") == 0)
			continue;
		appendStringInfoString(&buf, "evc_worker_up{");
		append_worker_labels(&buf, &rows[i]);
		appendStringInfo(&buf, "} %d\n", rows[i].pid != 0 ? 1 : 0);
	}
	append_family(&buf, "evc_last_error_timestamp_seconds", "gauge",
				  "When the worker last recorded an error (Unix time); absent if never.");
	for (int i = 0; i < n; i++)
	{
		if (rows[i].last_error_at == 0)
			continue;
		appendStringInfoString(&buf, "evc_last_error_timestamp_seconds{");
		append_worker_labels(&buf, &rows[i]);
		appendStringInfo(&buf, "} %.3f\n",
						 (double) (rows[i].last_error_at - SetEpochTimestamp()) / USECS_PER_SEC);
	}

	SPI_connect();
	append_family(&buf, "evc_outbox_pending", "gauge", "Messages in evc.outbox not acknowledged by Kafka yet.");
	appendStringInfo(&buf, "evc_outbox_pending " INT64_FORMAT "\n", outbox_pending());
	append_family(&buf, "evc_consumer_lag", "gauge",
				  "Messages of a partition in Kafka and not landed yet (high watermark minus next offset to land).");
	read_lag();
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		appendStringInfoString(&buf, "evc_consumer_lag{");
		append_label(&buf, "consumer", SPI_getvalue(tup, desc, 1), true);
		append_label(&buf, "topic", SPI_getvalue(tup, desc, 2), false);
		append_label(&buf, "partition", SPI_getvalue(tup, desc, 3), false);
		appendStringInfo(&buf, "} %s\n", SPI_getvalue(tup, desc, 6));
	}
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}

/* ---------------------------------------------------------------------
 * The Metrics message
 * ---------------------------------------------------------------------
 */

static char *
metrics_source(void)
{
	const char *db = get_database_name(MyDatabaseId);

	if (cluster_name && cluster_name[0])
		return psprintf("%s/%s", cluster_name, db ? db : "");
	return psprintf(UINT64_FORMAT "/%s", GetSystemIdentifier(), db ? db : "");
}

static Evcollector__WorkerMetrics *
worker_message(EvcStatRow *r)
{
	Evcollector__WorkerMetrics *w = palloc(sizeof(Evcollector__WorkerMetrics));

	evcollector__worker_metrics__init(w);
	w->kind = r->kind;
	w->name = r->name;
	w->pid = r->pid;
	w->produced = r->v[0];
	w->delivered = r->v[1];
	w->failed = r->v[2];
	w->retried = r->v[3];
	w->consumed = r->v[4];
	w->landed = r->v[5];
	w->dead_lettered = r->v[6];
	w->bytes_in = r->v[7];
	w->bytes_out = r->v[8];
	w->batches = r->v[9];
	w->n_latency_le_ms = w->n_latency_count = EVC_LAT_BUCKETS;
	w->latency_le_ms = palloc(sizeof(double) * EVC_LAT_BUCKETS);
	w->latency_count = palloc(sizeof(uint64_t) * EVC_LAT_BUCKETS);
	for (int b = 0; b < EVC_LAT_BUCKETS; b++)
	{
		w->latency_le_ms[b] = Max(evc_latency_bounds_ms[b], 0);
		w->latency_count[b] = r->lat[b];
	}
	w->latency_sum_ms = r->lat_sum_us / 1000.0;
	w->last_error = r->last_error;
	w->last_error_at = r->last_error_at ? evc_format_timestamp(r->last_error_at) : "";
	return w;
}

/*
 * Publish one Metrics message through the outbox, in the caller's
 * transaction (the relay's), with SPI connected.
 */
void
evc_metrics_publish(void)
{
	Evcollector__Metrics m = EVCOLLECTOR__METRICS__INIT;
	EvcStatRow *rows;
	int			n;
	size_t		len;
	bytea	   *payload;
	char	   *source = metrics_source();

	rows = evc_stats_collect(&n);
	m.source = source;
	m.taken_at = evc_format_timestamp(GetCurrentTimestamp());
	m.sent = pg_atomic_read_u64(&evc_shared->sent);
	m.n_workers = n;
	m.workers = palloc(sizeof(Evcollector__WorkerMetrics *) * n);
	for (int i = 0; i < n; i++)
		m.workers[i] = worker_message(&rows[i]);
	m.outbox_pending = outbox_pending();
	read_lag();
	m.n_lag = SPI_processed;
	m.lag = palloc(sizeof(Evcollector__PartitionLag *) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Evcollector__PartitionLag *l = palloc(sizeof(Evcollector__PartitionLag));
		bool		isnull;

		evcollector__partition_lag__init(l);
		l->consumer = SPI_getvalue(tup, desc, 1);
		l->topic = SPI_getvalue(tup, desc, 2);
		l->partition = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		l->next_offset = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		l->high_watermark = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		l->lag = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		m.lag[i] = l;
	}
	len = evcollector__metrics__get_packed_size(&m);
	payload = palloc(VARHDRSZ + len);
	SET_VARSIZE(payload, VARHDRSZ + len);
	evcollector__metrics__pack(&m, (uint8_t *) VARDATA(payload));
	evc_outbox_enqueue(evc_topic_name("metrics"), source, strlen(source), payload,
					   evc_new_uuid(), 0, EVC_CONTENT_TYPE_METRICS);
}
