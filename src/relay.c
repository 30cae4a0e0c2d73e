/*
 * relay.c
 *		Owns the relay worker: it moves committed rows of evc.outbox to Kafka
 *		with librdkafka's idempotent producer and deletes exactly the rows
 *		whose delivery Kafka acknowledged.
 *
 * One batch at a time: read up to evcollector.batch_size ready rows (a short
 * transaction), produce them, wait for every delivery report with no
 * transaction open, then settle the batch in one transaction: delete the
 * delivered rows, count an attempt and schedule a retry (with backoff) for
 * the failed ones, and move permanent failures to evc.dead_letters.
 *
 * Rows are read as "every visible row that is due", never "rows after the
 * last id seen": transactions commit out of order, and a cursor on id would
 * skip a row whose transaction committed after a later one's.
 *
 * The relay never sleeps except in one WaitEventSet that holds its latch
 * (set at commit by evc_send) and the read end of a pipe that librdkafka
 * writes to when its main queue has delivery reports, logs or errors.
 * Those callbacks are served by rd_kafka_poll() in this thread.
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "kafka.h"
#include "metrics.h"
#include "proto.h"
#include "relay.h"
#include "shmem.h"
#include "stats.h"
#include "worker.h"

typedef struct RelayRow
{
	int64		id;
	char	   *topic;
	bytea	   *key;			/* NULL: no key, the partitioner picks */
	bytea	   *payload;
	char	   *message_id;
	int32		schema_version;
	char	   *content_type;
	TimestampTz created_at;
	int32		payload_len;
} RelayRow;

/*
 * Delivery outcomes are written by the delivery-report callback.  They live
 * in TopMemoryContext, and each message's opaque carries the batch
 * generation and its index, so a late report for an abandoned batch is
 * recognised and ignored instead of writing into freed memory.
 */
typedef struct RelayOutcome
{
	bool		reported;
	rd_kafka_resp_err_t err;
	TimestampTz acked_at;
	int32		partition;		/* where Kafka put it, for evc_trace */
	int64		offset;
} RelayOutcome;

static rd_kafka_t *producer = NULL;
static char *producer_brokers = NULL;
static char *producer_properties = NULL;
static bool producer_fatal = false;

static RelayOutcome *outcomes = NULL;
static int	outcomes_cap = 0;
static uint32 batch_generation = 0;
static int	batch_size_now = 0;
static int	reports_pending = 0;

static int	io_pipe[2] = {-1, -1};
static WaitEventSet *wait_set = NULL;
static EvcWorkerSlot *relay_slot = NULL;

/* Longest sleep when nothing is due: a safety net, commits set the latch. */
#define RELAY_IDLE_MS (60 * 1000)
/* Pause after a batch failed with an error, doubling up to the maximum. */
#define RELAY_ERROR_BACKOFF_MIN_MS 500
#define RELAY_ERROR_BACKOFF_MAX_MS (30 * 1000)

/* A full read from the lowest id at least this often (see outbox_read). */
#define READ_FULL_EVERY 8

#define OPAQUE(gen, idx) ((void *) (((uintptr_t) (gen) << 32) | (uintptr_t) (idx)))

static void
relay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	uintptr_t	tag = (uintptr_t) msg->_private;
	uint32		gen = (uint32) (tag >> 32);
	int			idx = (int) (tag & 0xFFFFFFFF);

	if (gen != batch_generation || idx >= batch_size_now || outcomes[idx].reported)
		return;
	outcomes[idx].reported = true;
	outcomes[idx].err = msg->err;
	outcomes[idx].acked_at = GetCurrentTimestamp();
	outcomes[idx].partition = msg->partition;
	outcomes[idx].offset = msg->offset;
	reports_pending--;
}

static void
relay_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	/* Served by rd_kafka_poll() in our thread, so ereport is safe here. */
	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		buf[512];

		rd_kafka_fatal_error(rk, buf, sizeof(buf));
		producer_fatal = true;
		ereport(WARNING,
				(errmsg("kafka producer hit a fatal error; it will be recreated"),
				 errdetail("%s", buf)));
		return;
	}
	ereport(LOG,
			(errmsg("kafka producer: %s", reason),
			 errdetail("librdkafka error %s.", rd_kafka_err2name(err))));
}

static void
drain_pipe(void)
{
	char		buf[64];

	while (read(io_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * Set when the latch fired (a commit sent events, or a signal came) while
 * the relay was busy; the main loop then reads the outbox again instead of
 * sleeping.  The latch itself is reset at once, or a set latch would make
 * every wait in a batch return at once and spin.
 */
static bool work_signalled = false;

/* Wait on the latch and librdkafka's queue, then serve its callbacks. */
static void
relay_wait(long timeout_ms)
{
	WaitEvent	event;

	if (WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION) > 0 &&
		(event.events & WL_LATCH_SET))
	{
		ResetLatch(MyLatch);
		work_signalled = true;
	}
	drain_pipe();
	if (producer)
		rd_kafka_poll(producer, 0);
}

static void
producer_destroy(void)
{
	if (producer == NULL)
		return;
	/* Undelivered messages stay in the outbox; drop librdkafka's copies. */
	rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(producer, 0);
	rd_kafka_destroy(producer);
	producer = NULL;
}

static void
producer_create(void)
{
	static const char *const defaults[] = {
		"linger.ms", "2",
		"compression.type", "lz4",
		NULL
	};
	rd_kafka_conf_t *conf;
	rd_kafka_queue_t *mainq;
	char		errstr[512];

	conf = evc_kafka_conf_new(defaults);
	/* These make the guarantees; the user's properties cannot undo them. */
	evc_kafka_conf_set(conf, "enable.idempotence", "true");
	evc_kafka_conf_set(conf, "partitioner", "murmur2_random");
	rd_kafka_conf_set_dr_msg_cb(conf, relay_dr_cb);
	rd_kafka_conf_set_error_cb(conf, relay_error_cb);

	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create kafka producer"),
				 errdetail("%s", errstr)));
	}
	evc_kafka_serve_logs(producer);
	mainq = rd_kafka_queue_get_main(producer);
	rd_kafka_queue_io_event_enable(mainq, io_pipe[1], "1", 1);
	rd_kafka_queue_destroy(mainq);
	producer_fatal = false;

	if (producer_brokers)
		pfree(producer_brokers);
	if (producer_properties)
		pfree(producer_properties);
	producer_brokers = MemoryContextStrdup(TopMemoryContext, evc_brokers);
	producer_properties = MemoryContextStrdup(TopMemoryContext, evc_kafka_properties);
}

/* Recreate the producer after a fatal error or changed settings. */
static void
producer_ensure(void)
{
	if (producer != NULL && !producer_fatal &&
		strcmp(producer_brokers, evc_brokers) == 0 &&
		strcmp(producer_properties, evc_kafka_properties) == 0)
		return;
	producer_destroy();
	producer_create();
}

static void
relay_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
relay_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

static SPIPlanPtr
keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for relay query: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/*
 * Read up to limit due rows into the current (batch) memory context.
 * *next_due_ms says when the earliest row in backoff becomes due (-1: none).
 * Returns false when the extension is gone.
 */
static void produce_batch(List *rows);

static bool
outbox_read(int limit, List **rows, long *next_due_ms)
{
	static SPIPlanPtr read_plan = NULL;
	static int	read_plan_limit = 0;
	static SPIPlanPtr due_plan = NULL;
	static int64 read_floor = 0;
	static int	reads_since_full = 0;
	MemoryContext batch_cxt = CurrentMemoryContext;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];

	relay_begin("evcollector relay: reading outbox");
	if (!OidIsValid(get_extension_oid("evcollector", true)))
	{
		relay_end();
		return false;
	}

	/*
	 * The limit is a literal, not a parameter: with LIMIT $1 the generic
	 * plan guesses a large fraction of the table and sorts all of it, where
	 * the primary key index gives the first rows in order at once.
	 */
	if (read_plan != NULL && read_plan_limit != limit)
	{
		SPI_freeplan(read_plan);
		read_plan = NULL;
	}
	read_plan_limit = limit;
	keep_plan(&read_plan,
			  psprintf("SELECT id, topic, key, payload, message_id, schema_version, content_type, created_at"
					   "  FROM evc.outbox"
					   " WHERE id > $1 AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp())"
					   " ORDER BY id LIMIT %d", limit), 1, argtypes);

	/*
	 * While draining a backlog, start after the last row of the previous
	 * full batch: otherwise every read walks the index entries of the rows
	 * the previous batch just deleted.  This is only a shortcut.  Every
	 * READ_FULL_EVERY batches, and whenever a batch comes back short (the
	 * relay has caught up), the read starts from the lowest id again, so a
	 * row whose transaction committed late with a lower id waits at most a
	 * few batches and is never skipped.
	 */
	if (read_floor > 0 && ++reads_since_full >= READ_FULL_EVERY)
		read_floor = 0;
	if (read_floor == 0)
		reads_since_full = 0;
	args[0] = Int64GetDatum(read_floor);
	if (SPI_execute_plan(read_plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.outbox");
	if (SPI_processed == (uint64) limit)
	{
		bool		isnull;

		read_floor = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[limit - 1],
												 SPI_tuptable->tupdesc, 1, &isnull));
	}
	else
		read_floor = 0;

	/*
	 * Rows point into SPI's copy of the result, which lives until
	 * relay_end(): the batch is produced before then, so nothing is copied
	 * twice (librdkafka copies each message once).  Topic and content type
	 * repeat from row to row and are converted only when they change.
	 */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(batch_cxt);
		RelayRow   *row = palloc0(sizeof(RelayRow));
		RelayRow   *prev = *rows ? llast(*rows) : NULL;
		bool		isnull;
		Datum		d;

		row->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		row->topic = SPI_getvalue(tup, desc, 2);
		if (prev && strcmp(prev->topic, row->topic) == 0)
		{
			pfree(row->topic);
			row->topic = prev->topic;
		}
		d = SPI_getbinval(tup, desc, 3, &isnull);
		row->key = isnull ? NULL : DatumGetByteaPP(d);
		row->payload = DatumGetByteaPP(SPI_getbinval(tup, desc, 4, &isnull));
		row->payload_len = VARSIZE_ANY_EXHDR(row->payload);
		row->message_id = DatumGetCString(DirectFunctionCall1(uuid_out, SPI_getbinval(tup, desc, 5, &isnull)));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		row->schema_version = isnull ? 0 : DatumGetInt32(d);
		row->content_type = SPI_getvalue(tup, desc, 7);
		if (prev && strcmp(prev->content_type, row->content_type) == 0)
		{
			pfree(row->content_type);
			row->content_type = prev->content_type;
		}
		row->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
		*rows = lappend(*rows, row);
		MemoryContextSwitchTo(old);
	}

	*next_due_ms = -1;
	if (list_length(*rows) < limit)
	{
		keep_plan(&due_plan,
				  "SELECT ceil(extract(epoch FROM min(next_attempt_at) - clock_timestamp()) * 1000)::int8"
				  "  FROM evc.outbox WHERE next_attempt_at > clock_timestamp()", 0, NULL);
		if (SPI_execute_plan(due_plan, NULL, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*next_due_ms = Max(DatumGetInt64(d), 1);
		}
	}
	if (*rows != NIL)
	{
		producer_ensure();
		produce_batch(*rows);
	}
	relay_end();
	return true;
}

static rd_kafka_resp_err_t
produce_row(RelayRow *row, int idx, const char *processed_at)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(3);
	char		version[16];
	size_t		plen = VARSIZE_ANY_EXHDR(row->payload);
	uint8	   *value = (uint8 *) VARDATA_ANY(row->payload);
	size_t		vlen = plen;
	rd_kafka_resp_err_t err;

	/* Stamp processed_at on events; see evc_processed_at_patch. */
	if (strcmp(row->content_type, EVC_CONTENT_TYPE_EVENT) == 0)
	{
		value = palloc(plen + 64);
		memcpy(value, VARDATA_ANY(row->payload), plen);
		vlen = plen + evc_processed_at_patch(processed_at, value + plen, 64);
	}

	snprintf(version, sizeof(version), "%d", row->schema_version);
	rd_kafka_header_add(hdrs, "message_id", -1, row->message_id, -1);
	rd_kafka_header_add(hdrs, "schema_version", -1, version, -1);
	rd_kafka_header_add(hdrs, "content-type", -1, row->content_type, -1);

	err = rd_kafka_producev(producer,
							RD_KAFKA_V_TOPIC(row->topic),
							RD_KAFKA_V_KEY(row->key ? VARDATA_ANY(row->key) : NULL,
										   row->key ? VARSIZE_ANY_EXHDR(row->key) : 0),
							RD_KAFKA_V_VALUE(value, vlen),
							RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							RD_KAFKA_V_HEADERS(hdrs),
							RD_KAFKA_V_OPAQUE(OPAQUE(batch_generation, idx)),
							RD_KAFKA_V_END);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_headers_destroy(hdrs);	/* not taken over on failure */
	return err;
}

/* Hand every row to librdkafka; await_reports() waits for the outcome. */
static void
produce_batch(List *rows)
{
	char	   *processed_at = evc_format_timestamp(GetCurrentTimestamp());
	ListCell   *lc;
	int			idx = 0;

	batch_generation++;
	batch_size_now = list_length(rows);
	if (batch_size_now > outcomes_cap)
	{
		if (outcomes)
			pfree(outcomes);
		outcomes_cap = Max(batch_size_now, 1024);
		outcomes = MemoryContextAlloc(TopMemoryContext, sizeof(RelayOutcome) * outcomes_cap);
	}
	memset(outcomes, 0, sizeof(RelayOutcome) * batch_size_now);
	reports_pending = 0;

	pgstat_report_activity(STATE_RUNNING, "evcollector relay: producing");
	foreach(lc, rows)
	{
		rd_kafka_resp_err_t err;

		for (;;)
		{
			err = produce_row(lfirst(lc), idx, processed_at);
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			/* librdkafka's queue is full: let it drain, then go on. */
			relay_wait(100);
			CHECK_FOR_INTERRUPTS();
		}
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			reports_pending++;
			evc_stats_add(&relay_slot->counters.produced, 1);
		}
		else
		{
			outcomes[idx].reported = true;
			outcomes[idx].err = err;
		}
		idx++;
	}

}

/* Wait, with no transaction open, until every message of the batch is reported. */
static void
await_reports(void)
{
	pgstat_report_activity(STATE_RUNNING, "evcollector relay: waiting for delivery reports");
	rd_kafka_poll(producer, 0);
	while (reports_pending > 0)
	{
		/*
		 * librdkafka reports every message within message.timeout.ms, so
		 * this ends; SIGTERM ends it sooner and leaves the rows in the
		 * outbox, to be sent again.
		 */
		relay_wait(1000);
		evc_worker_handle_interrupts();
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

static ArrayType *
int8_array(List *ids)
{
	int			n = list_length(ids);
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, ids)
		d[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static ArrayType *
text_array(List *strs)
{
	int			n = list_length(strs);
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, strs)
		d[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * Settle the batch in one transaction: delete what was delivered, schedule
 * a retry for what failed, dead-letter what can never succeed.
 */
static void
settle_batch(List *rows, int *delivered, int *failed, int *dead)
{
	static SPIPlanPtr delete_plan = NULL;
	static SPIPlanPtr retry_plan = NULL;
	static SPIPlanPtr dead_plan = NULL;
	List	   *ok_ids = NIL, *retry_ids = NIL, *retry_errs = NIL, *dead_ids = NIL, *dead_errs = NIL;
	Oid			one[1] = {INT8ARRAYOID};
	Oid			two[2] = {INT8ARRAYOID, TEXTARRAYOID};
	ListCell   *lc;
	int			idx = 0;

	evc_trace_begin_notes();
	foreach(lc, rows)
	{
		RelayRow   *row = lfirst(lc);
		RelayOutcome *o = &outcomes[foreach_current_index(lc)];

		if (o->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			evc_trace_note_delivery(row->message_id, row->topic, o->partition, o->offset, o->acked_at);
	}
	evc_trace_end_notes();
	foreach(lc, rows)
	{
		RelayRow   *row = lfirst(lc);
		rd_kafka_resp_err_t err = outcomes[idx++].err;

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			ok_ids = lappend(ok_ids, &row->id);
			evc_stats_observe_ms(&relay_slot->counters,
								 (outcomes[idx - 1].acked_at - row->created_at) / 1000.0);
			evc_stats_add(&relay_slot->counters.bytes_out, row->payload_len);
		}
		else if (evc_kafka_permanent_error(err))
		{
			dead_ids = lappend(dead_ids, &row->id);
			dead_errs = lappend(dead_errs, psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err)));
		}
		else
		{
			retry_ids = lappend(retry_ids, &row->id);
			retry_errs = lappend(retry_errs, psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err)));
		}
	}
	*delivered = list_length(ok_ids);
	*failed = list_length(retry_ids);
	*dead = list_length(dead_ids);
	evc_stats_add(&relay_slot->counters.delivered, *delivered);
	evc_stats_add(&relay_slot->counters.retried, *failed);
	evc_stats_add(&relay_slot->counters.failed, *failed + *dead);
	evc_stats_add(&relay_slot->counters.dead_lettered, *dead);
	evc_stats_add(&relay_slot->counters.batches, 1);

	relay_begin("evcollector relay: settling batch");
	if (ok_ids)
	{
		Datum		args[1] = {PointerGetDatum(int8_array(ok_ids))};

		keep_plan(&delete_plan, "DELETE FROM evc.outbox WHERE id = ANY($1)", 1, one);
		if (SPI_execute_plan(delete_plan, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not delete delivered rows from evc.outbox");
	}
	if (retry_ids)
	{
		Datum		args[2] = {PointerGetDatum(int8_array(retry_ids)), PointerGetDatum(text_array(retry_errs))};

		keep_plan(&retry_plan,
				  "UPDATE evc.outbox o SET attempts = o.attempts + 1, last_error = u.err,"
				  "       last_attempt_at = clock_timestamp(),"
				  "       next_attempt_at = clock_timestamp() + least(60, 2 ^ least(o.attempts, 6)) * interval '1 second'"
				  "  FROM unnest($1, $2) AS u(id, err) WHERE o.id = u.id", 2, two);
		if (SPI_execute_plan(retry_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record failed deliveries in evc.outbox");
	}
	if (dead_ids)
	{
		Datum		args[2] = {PointerGetDatum(int8_array(dead_ids)), PointerGetDatum(text_array(dead_errs))};

		keep_plan(&dead_plan,
				  "WITH d AS (DELETE FROM evc.outbox o USING unnest($1, $2) AS u(id, err)"
				  "           WHERE o.id = u.id RETURNING o.*, u.err)"
				  "INSERT INTO evc.dead_letters (message_id, topic, key, payload, error, source, attempts)"
				  "SELECT message_id, topic, key, payload, err, 'relay', attempts + 1 FROM d", 2, two);
		if (SPI_execute_plan(dead_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not move undeliverable rows to evc.dead_letters");
	}
	relay_end();
}

/*
 * One batch, start to end.  Returns the number of rows read, or -1 when
 * the extension is gone.
 */
static int
relay_batch(long *next_due_ms)
{
	List	   *rows = NIL;
	int			delivered,
				failed,
				dead;

	if (!outbox_read(evc_batch_size, &rows, next_due_ms))
		return -1;
	if (rows == NIL)
		return 0;

	await_reports();
	settle_batch(rows, &delivered, &failed, &dead);
	ConditionVariableBroadcast(&evc_shared->outbox_settled);

	if (failed > 0)
	{
		/* The retried rows are due again soon; come back for them. */
		*next_due_ms = (*next_due_ms < 0) ? 1000 : Min(*next_due_ms, 1000);
		ereport(LOG,
				(errmsg("evcollector relay: %d of %d events not delivered yet; they stay in evc.outbox and are retried",
						failed, list_length(rows))));
	}
	if (dead > 0)
		ereport(WARNING,
				(errmsg("evcollector relay: %d events cannot be delivered and were moved to evc.dead_letters", dead)));
	return list_length(rows);
}

/*
 * Every evcollector.metrics_interval, publish a Metrics message through the
 * outbox; the commit wakes the relay, which then sends it like any event.
 * The relay publishes because it is the one worker that always runs.
 */
static TimestampTz metrics_due_at = 0;

static void
relay_publish_metrics(long *next_due_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = TimestampTzPlusMilliseconds(now, evc_metrics_interval_ms);
	long		until;

	if (evc_metrics_interval_ms <= 0)
	{
		metrics_due_at = 0;
		return;
	}
	if (metrics_due_at == 0 || metrics_due_at > next)
		metrics_due_at = next;	/* first time, or the interval was shortened */
	if (now >= metrics_due_at)
	{
		MemoryContext cxt = CurrentMemoryContext;

		/* A failure here must not hold up delivery: log it, try next time. */
		metrics_due_at = next;
		PG_TRY();
		{
			relay_begin("evcollector relay: publishing metrics");
			if (OidIsValid(get_extension_oid("evcollector", true)))
				evc_metrics_publish();
			relay_end();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			SPI_finish();
			pgstat_report_activity(STATE_IDLE, NULL);
			ereport(WARNING,
					(errmsg("evcollector relay: could not publish metrics: %s", edata->message),
					 errhint("The next attempt is in evcollector.metrics_interval.")));
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	until = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), metrics_due_at), 1);
	*next_due_ms = (*next_due_ms < 0) ? until : Min(*next_due_ms, until);
}

static void
relay_setup(void)
{
	if (pipe(io_pipe) != 0 ||
		fcntl(io_pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
		fcntl(io_pipe[1], F_SETFL, O_NONBLOCK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create pipe for librdkafka events: %m")));

	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, io_pipe[0], NULL, NULL);
}

void
evc_relay_main(Datum main_arg)
{
	MemoryContext batch_cxt;

	/* Static: they are changed inside PG_TRY and read after a longjmp. */
	static long error_backoff_ms = RELAY_ERROR_BACKOFF_MIN_MS;
	static long next_due_ms;
	static int	n;

	relay_slot = evc_worker_startup(EVC_WORKER_RELAY, "relay");
	relay_setup();
	batch_cxt = AllocSetContextCreate(TopMemoryContext, "evcollector relay batch",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		next_due_ms = -1;
		n = 0;

		/* Reset first: a commit while we work sets it again. */
		ResetLatch(MyLatch);
		work_signalled = false;
		evc_worker_handle_interrupts();

		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(batch_cxt);

			n = relay_batch(&next_due_ms);
			if (n >= 0)
				relay_publish_metrics(&next_due_ms);
			MemoryContextSwitchTo(old);
			error_backoff_ms = RELAY_ERROR_BACKOFF_MIN_MS;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(TopMemoryContext);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			SPI_finish();
			batch_generation++;	/* ignore late reports of this batch */
			evc_worker_record_error(relay_slot, edata->message);
			ereport(LOG,
					(errmsg("evcollector relay: batch failed, retrying in %ld ms: %s",
							error_backoff_ms, edata->message)));
			FreeErrorData(edata);
			n = 0;
			next_due_ms = error_backoff_ms;
			error_backoff_ms = Min(error_backoff_ms * 2, RELAY_ERROR_BACKOFF_MAX_MS);
		}
		PG_END_TRY();
		MemoryContextReset(batch_cxt);

		if (n < 0)
		{
			/* DROP EXTENSION: tell the launcher, which will not restart us. */
			evc_wake_worker(EVC_WORKER_LAUNCHER, NULL);
			proc_exit(0);
		}
		if (n >= evc_batch_size || work_signalled)
			continue;			/* more is waiting */
		relay_wait(next_due_ms >= 0 ? Min(next_due_ms, RELAY_IDLE_MS) : RELAY_IDLE_MS);
	}
}
