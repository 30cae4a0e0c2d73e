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
#include <malloc.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "kafka.h"
#include "metrics.h"
#include "outbox.h"
#include "proto.h"
#include "relay.h"
#include "shmem.h"
#include "stats.h"
#include "worker.h"

/*
 * What the relay keeps of each row it produced, until the batch is
 * settled: enough to delete the row and to record the delivery.  The
 * payload itself is not kept; librdkafka has its own copy.
 */
typedef struct RelayMsg
{
	int64		id;
	ItemPointerData tid;		/* where the row is, to delete it */
	const char *topic;			/* shared by consecutive rows of a topic */
	TimestampTz created_at;
	int32		payload_len;
	char		message_id[UUID_LEN * 2 + 5];	/* text form, with its NUL */
	/* The outcome, written by the delivery-report callback. */
	bool		reported;
	rd_kafka_resp_err_t err;
	TimestampTz acked_at;
	int32		partition;		/* where Kafka put it, for evc_trace */
	int64		offset;
} RelayMsg;

/*
 * A batch: the rows of one read, from production until they are settled.
 * While a backlog drains, two batches are in flight: the next one is read
 * and produced while Kafka acknowledges the previous one, which is then
 * settled.  Each message's opaque carries its batch's generation and its
 * index, so a late report for an abandoned batch is recognised and
 * ignored instead of writing into memory that was reused.
 */
typedef struct RelayBatch
{
	bool		active;			/* produced and not yet settled */
	uint32		generation;
	MemoryContext cxt;			/* reset when the batch is reused */
	RelayMsg   *msgs;			/* in id order */
	int			n;
	int			cap;
	int			reports_pending;
} RelayBatch;

static rd_kafka_t *producer = NULL;
static char *producer_brokers = NULL;
static char *producer_properties = NULL;
static bool producer_fatal = false;

static RelayBatch batches[2];
static uint32 batch_generation = 0;

static int	io_pipe[2] = {-1, -1};
static WaitEventSet *wait_set = NULL;		/* latch and librdkafka */
static WaitEventSet *kafka_wait_set = NULL;	/* librdkafka only */
static EvcWorkerSlot *relay_slot = NULL;

/* Longest sleep when nothing is due: a safety net, commits set the latch. */
#define RELAY_IDLE_MS (60 * 1000)
/* Pause after a batch failed with an error, doubling up to the maximum. */
#define RELAY_ERROR_BACKOFF_MIN_MS 500
#define RELAY_ERROR_BACKOFF_MAX_MS (30 * 1000)

/* A full read from the lowest id at least this often (see outbox_read). */
#define READ_FULL_EVERY 32

#define OPAQUE(gen, idx) ((void *) (((uintptr_t) (gen) << 32) | (uintptr_t) (idx)))

static RelayBatch *
batch_of_generation(uint32 gen)
{
	for (int i = 0; i < lengthof(batches); i++)
		if (batches[i].active && batches[i].generation == gen)
			return &batches[i];
	return NULL;
}

static void
relay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	uintptr_t	tag = (uintptr_t) msg->_private;
	RelayBatch *batch = batch_of_generation((uint32) (tag >> 32));
	int			idx = (int) (tag & 0xFFFFFFFF);
	RelayMsg   *m;

	if (batch == NULL || idx >= batch->n || batch->msgs[idx].reported)
		return;
	m = &batch->msgs[idx];
	m->reported = true;
	m->err = msg->err;
	m->acked_at = GetCurrentTimestamp();
	m->partition = msg->partition;
	m->offset = msg->offset;
	batch->reports_pending--;
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

/*
 * Wait for librdkafka only, while a batch is in flight.  The latch is left
 * alone: a commit in the meantime finds it still set and costs the sender
 * no signal, and the main loop sees it once the batch is settled.  Signals
 * are seen at the next timeout, so callers keep it short.
 */
static void
relay_wait_kafka(long timeout_ms)
{
	WaitEvent	event;

	(void) WaitEventSetWait(kafka_wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
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
 * The text form of a uuid, written into the caller's buffer: uuid_out
 * would palloc a string for every row of every batch.
 */
static void
uuid_format(const pg_uuid_t *uuid, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hex[uuid->data[i] >> 4];
		*out++ = hex[uuid->data[i] & 0x0F];
	}
	*out = '\0';
}

/*
 * A text column as a C string, converted only when it differs from the
 * previous row's: topic and content type repeat from row to row.
 */
static const char *
same_or_new_cstring(Datum d, const char *prev)
{
	text	   *t = DatumGetTextPP(d);
	int			len = VARSIZE_ANY_EXHDR(t);

	if (prev && strncmp(prev, VARDATA_ANY(t), len) == 0 && prev[len] == '\0')
		return prev;
	return text_to_cstring(t);
}

/*
 * Hand one row to librdkafka, retrying while its queue is full.  Events
 * get processed_at appended (see evc_processed_at_patch) in a scratch
 * buffer that librdkafka copies from, so nothing is allocated per row.
 */
static rd_kafka_resp_err_t
produce_row(RelayBatch *batch, RelayMsg *msg, int idx, bytea *key, bytea *payload, int32 schema_version,
			const char *content_type, bool is_event, const char *processed_at)
{
	static char *scratch = NULL;
	static size_t scratch_cap = 0;
	size_t		plen = VARSIZE_ANY_EXHDR(payload);
	char	   *value = VARDATA_ANY(payload);
	size_t		vlen = plen;
	char		version[16];
	rd_kafka_resp_err_t err;

	if (is_event)
	{
		if (plen + EVC_PROCESSED_AT_MAX > scratch_cap)
		{
			scratch_cap = Max(plen + EVC_PROCESSED_AT_MAX, 2 * scratch_cap);
			scratch = scratch ? repalloc(scratch, scratch_cap) : MemoryContextAlloc(TopMemoryContext, scratch_cap);
		}
		memcpy(scratch, value, plen);
		vlen = plen + evc_processed_at_patch(processed_at, (uint8 *) scratch + plen, EVC_PROCESSED_AT_MAX);
		value = scratch;
	}
	snprintf(version, sizeof(version), "%d", schema_version);

	for (;;)
	{
		rd_kafka_headers_t *hdrs = rd_kafka_headers_new(3);

		rd_kafka_header_add(hdrs, "message_id", -1, msg->message_id, -1);
		rd_kafka_header_add(hdrs, "schema_version", -1, version, -1);
		rd_kafka_header_add(hdrs, "content-type", -1, content_type, -1);
		err = rd_kafka_producev(producer,
								RD_KAFKA_V_TOPIC(msg->topic),
								RD_KAFKA_V_KEY(key ? VARDATA_ANY(key) : NULL,
											   key ? VARSIZE_ANY_EXHDR(key) : 0),
								RD_KAFKA_V_VALUE(value, vlen),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_HEADERS(hdrs),
								RD_KAFKA_V_OPAQUE(OPAQUE(batch->generation, idx)),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return err;
		rd_kafka_headers_destroy(hdrs);	/* not taken over on failure */
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return err;
		/* librdkafka's queue is full: let it drain, then go on. */
		relay_wait_kafka(100);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Produce the row in slot as message number batch->n of this batch. */
static void
produce_slot(RelayBatch *batch, TupleTableSlot *slot, const char *processed_at)
{
	static const char *content_type = NULL;
	static bool is_event = false;
	RelayMsg   *prev = batch->n > 0 ? &batch->msgs[batch->n - 1] : NULL;
	RelayMsg   *msg;
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;
	bytea	   *payload;
	const char *ct;
	int			idx = batch->n;
	rd_kafka_resp_err_t err;

	if (batch->n == batch->cap)
	{
		batch->cap = Max(1024, batch->cap * 2);
		batch->msgs = batch->msgs ? repalloc(batch->msgs, sizeof(RelayMsg) * batch->cap)
			: palloc(sizeof(RelayMsg) * batch->cap);
		prev = batch->n > 0 ? &batch->msgs[batch->n - 1] : NULL;
	}
	msg = &batch->msgs[batch->n];
	memset(msg, 0, sizeof(RelayMsg));
	batch->n++;
	msg->id = DatumGetInt64(values[OUTBOX_ID]);
	msg->tid = slot->tts_tid;
	msg->topic = same_or_new_cstring(values[OUTBOX_TOPIC], prev ? prev->topic : NULL);
	msg->created_at = DatumGetTimestampTz(values[OUTBOX_CREATED_AT]);
	uuid_format(DatumGetUUIDP(values[OUTBOX_MESSAGE_ID]), msg->message_id);
	/* A large payload is stored toasted: detoast it for this row only. */
	payload = DatumGetByteaPP(values[OUTBOX_PAYLOAD]);
	msg->payload_len = VARSIZE_ANY_EXHDR(payload);

	/* The content type is kept across batches: it rarely changes. */
	ct = same_or_new_cstring(values[OUTBOX_CONTENT_TYPE], content_type);
	if (ct != content_type)
	{
		content_type = MemoryContextStrdup(TopMemoryContext, ct);
		is_event = strcmp(content_type, EVC_CONTENT_TYPE_EVENT) == 0;
	}

	err = produce_row(batch, msg, idx,
					  nulls[OUTBOX_KEY] ? NULL : DatumGetByteaPP(values[OUTBOX_KEY]),
					  payload, DatumGetInt32(values[OUTBOX_SCHEMA_VERSION]),
					  content_type, is_event, processed_at);
	if ((Pointer) payload != DatumGetPointer(values[OUTBOX_PAYLOAD]))
		pfree(payload);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		batch->reports_pending++;
		evc_stats_add(&relay_slot->counters.produced, 1);
	}
	else
	{
		msg->reported = true;
		msg->err = err;
	}
}

/*
 * Read up to limit due rows in id order, starting after *floor, producing
 * each as it is read.  The primary key is scanned directly rather than
 * through SPI: the relay reads every event once, and the executor's
 * per-row work (and a copy of the whole batch) was most of its cost.
 */
static bool
in_batch(RelayBatch *batch, int64 id)
{
	int			lo = 0,
				hi = batch->n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (batch->msgs[mid].id == id)
			return true;
		if (batch->msgs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

static void
read_and_produce(int limit, int64 floor, RelayBatch *batch, RelayBatch *inflight)
{
	MemoryContext old = MemoryContextSwitchTo(batch->cxt);
	Relation	rel = evc_outbox_open(AccessShareLock);
	Relation	pk = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TimestampTz now = GetCurrentTimestamp();
	char	   *processed_at = evc_format_timestamp(now);
	IndexScanDesc scan;
	ScanKeyData skey;

	ScanKeyInit(&skey, 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(floor));
	scan = index_beginscan(rel, pk, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);

	pgstat_report_activity(STATE_RUNNING, "evcollector relay: producing");
	while (batch->n < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		slot_getallattrs(slot);
		/* A row in backoff waits for its next attempt. */
		if (!slot->tts_isnull[OUTBOX_NEXT_ATTEMPT_AT] &&
			DatumGetTimestampTz(slot->tts_values[OUTBOX_NEXT_ATTEMPT_AT]) > now)
			continue;
		/* A row of the batch still in flight is not sent twice. */
		if (inflight && in_batch(inflight, DatumGetInt64(slot->tts_values[OUTBOX_ID])))
			continue;
		produce_slot(batch, slot, processed_at);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pk, AccessShareLock);
	table_close(rel, AccessShareLock);
	MemoryContextSwitchTo(old);
}

/*
 * Read up to limit due rows and produce them (see read_and_produce).
 * *next_due_ms says when the earliest row in backoff becomes due (-1: none).
 * Returns false when the extension is gone.
 */
static bool
outbox_read(int limit, RelayBatch *batch, RelayBatch *inflight, long *next_due_ms)
{
	static SPIPlanPtr due_plan = NULL;
	static int64 read_floor = 0;
	static int	reads_since_full = 0;
	bool		from_start;
	uint64		readno;

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
	from_start = (read_floor == 0);

	/* Numbered before its snapshot is taken; see EvcShared.relay_reads. */
	readno = pg_atomic_add_fetch_u64(&evc_shared->relay_reads, 1);
	relay_begin("evcollector relay: reading outbox");
	if (!OidIsValid(get_extension_oid("evcollector", true)))
	{
		relay_end();
		return false;
	}
	producer_ensure();
	read_and_produce(limit, read_floor, batch, inflight);
	read_floor = (batch->n == limit) ? batch->msgs[limit - 1].id : 0;

	*next_due_ms = -1;
	if (batch->n < limit)
	{
		/*
		 * Rows with a next attempt that the scan did not take are in
		 * backoff, or became due since the scan began: the latter give
		 * 1 ms, so no row is taken for absent while it waits.
		 */
		keep_plan(&due_plan,
				  "SELECT ceil(extract(epoch FROM min(next_attempt_at) - clock_timestamp()) * 1000)::int8"
				  "  FROM evc.outbox WHERE next_attempt_at IS NOT NULL", 0, NULL);
		if (SPI_execute_plan(due_plan, NULL, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*next_due_ms = Max(DatumGetInt64(d), 1);
		}
	}
	relay_end();

	if (from_start && batch->n == 0 && inflight == NULL && *next_due_ms < 0)
	{
		/* Nothing pending at all: tell evc_flush. */
		pg_atomic_write_u64(&evc_shared->relay_empty_read, readno);
		ConditionVariableBroadcast(&evc_shared->outbox_settled);
	}
	else if (!from_start && batch->n < limit)
		work_signalled = true;	/* read again from the lowest id at once */
	return true;
}

/* Wait, with no transaction open, until every message of the batch is reported. */
static void
await_reports(RelayBatch *batch)
{
	pgstat_report_activity(STATE_RUNNING, "evcollector relay: waiting for delivery reports");
	rd_kafka_poll(producer, 0);
	while (batch->reports_pending > 0)
	{
		/*
		 * librdkafka reports every message within message.timeout.ms, so
		 * this ends; SIGTERM ends it sooner and leaves the rows in the
		 * outbox, to be sent again.
		 */
		relay_wait_kafka(200);
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
 * Delete the delivered rows by their tuple ids, with no executor per row.
 * A row is deleted only if the tuple there is still the one produced: an
 * operator may have deleted it meanwhile, and vacuum may have given its
 * place to a new row, which must stay.  A row an operator updated
 * meanwhile stays too, and is sent again: a duplicate, never a loss.
 */
static void
delete_delivered(RelayBatch *batch)
{
	Relation	rel = evc_outbox_open(RowExclusiveLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snapshot = GetActiveSnapshot();
	CommandId	cid = GetCurrentCommandId(true);

	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];
		TM_FailureData tmfd;
		bool		isnull;

		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		if (!table_tuple_fetch_row_version(rel, &msg->tid, snapshot, slot) ||
			DatumGetInt64(slot_getattr(slot, OUTBOX_ID + 1, &isnull)) != msg->id)
			continue;
		(void) table_tuple_delete(rel, &msg->tid, cid, snapshot, InvalidSnapshot,
								  true, &tmfd, false);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
}

/* Record the deliveries: lineage ring, latency histogram, byte count. */
static void
note_deliveries(RelayBatch *batch)
{
	/* Only the newest EVC_TRACE_RING can stay in the ring. */
	evc_trace_begin_notes();
	for (int i = Max(0, batch->n - EVC_TRACE_RING); i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];

		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			evc_trace_note_delivery(msg->message_id, msg->topic, msg->partition, msg->offset, msg->acked_at);
	}
	evc_trace_end_notes();
	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];

		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		evc_stats_observe_ms(&relay_slot->counters, (msg->acked_at - msg->created_at) / 1000.0);
		evc_stats_add(&relay_slot->counters.bytes_out, msg->payload_len);
	}
}

/*
 * Settle the batch in one transaction: delete what was delivered, schedule
 * a retry for what failed, dead-letter what can never succeed.
 */
static void
settle_batch(RelayBatch *batch, int *delivered, int *failed, int *dead)
{
	static SPIPlanPtr retry_plan = NULL;
	static SPIPlanPtr dead_plan = NULL;
	List	   *retry_ids = NIL, *retry_errs = NIL, *dead_ids = NIL, *dead_errs = NIL;
	Oid			two[2] = {INT8ARRAYOID, TEXTARRAYOID};

	*delivered = 0;
	for (int i = 0; i < batch->n; i++)
	{
		rd_kafka_resp_err_t err = batch->msgs[i].err;
		char	   *reason;

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			(*delivered)++;
			continue;
		}
		reason = psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
		if (evc_kafka_permanent_error(err))
		{
			dead_ids = lappend(dead_ids, &batch->msgs[i].id);
			dead_errs = lappend(dead_errs, reason);
		}
		else
		{
			retry_ids = lappend(retry_ids, &batch->msgs[i].id);
			retry_errs = lappend(retry_errs, reason);
		}
	}
	*failed = list_length(retry_ids);
	*dead = list_length(dead_ids);
	note_deliveries(batch);
	evc_stats_add(&relay_slot->counters.delivered, *delivered);
	evc_stats_add(&relay_slot->counters.retried, *failed);
	evc_stats_add(&relay_slot->counters.failed, *failed + *dead);
	evc_stats_add(&relay_slot->counters.dead_lettered, *dead);
	evc_stats_add(&relay_slot->counters.batches, 1);

	relay_begin("evcollector relay: settling batch");
	if (*delivered > 0)
		delete_delivered(batch);
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

/* Wait for a batch's reports, settle it, and let it go. */
static void
finish_batch(RelayBatch *batch, long *next_due_ms)
{
	int			delivered,
				failed,
				dead;

	await_reports(batch);
	settle_batch(batch, &delivered, &failed, &dead);
	batch->active = false;
	ConditionVariableBroadcast(&evc_shared->outbox_settled);

	if (failed > 0)
	{
		/* The retried rows are due again soon; come back for them. */
		*next_due_ms = (*next_due_ms < 0) ? 1000 : Min(*next_due_ms, 1000);
		ereport(LOG,
				(errmsg("evcollector relay: %d of %d events not delivered yet; they stay in evc.outbox and are retried",
						failed, batch->n)));
	}
	if (dead > 0)
		ereport(WARNING,
				(errmsg("evcollector relay: %d events cannot be delivered and were moved to evc.dead_letters", dead)));
}

/*
 * Read and produce one batch, then settle the previous one if it is still
 * in flight.  A full batch (a backlog) stays in flight while the next one
 * is read and produced, so Kafka acknowledges one batch while the relay
 * reads the next, and its reports are usually all in when it is settled.
 * A short batch (the relay has caught up) is settled at once, so the
 * relay does not sleep with events unacknowledged.
 * Returns the number of rows read, or -1 when the extension is gone.
 */
static int
relay_batch(long *next_due_ms)
{
	RelayBatch *prev = batches[0].active ? &batches[0] : batches[1].active ? &batches[1] : NULL;
	RelayBatch *cur = (prev == &batches[0]) ? &batches[1] : &batches[0];
	int			n;

	MemoryContextReset(cur->cxt);
	cur->generation = ++batch_generation;
	cur->msgs = NULL;
	cur->n = cur->cap = 0;
	cur->reports_pending = 0;
	cur->active = true;

	if (!outbox_read(evc_batch_size, cur, prev, next_due_ms))
	{
		cur->active = false;
		return -1;
	}
	n = cur->n;
	if (prev)
		finish_batch(prev, next_due_ms);
	if (n == 0)
		cur->active = false;
	else if (n < evc_batch_size)
		finish_batch(cur, next_due_ms);
	return n;
}

/* After an error: forget both batches; their rows stay in the outbox. */
static void
abandon_batches(void)
{
	for (int i = 0; i < lengthof(batches); i++)
		batches[i].active = false;
	batch_generation++;
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

	for (int i = 0; i < lengthof(batches); i++)
		batches[i].cxt = AllocSetContextCreate(TopMemoryContext, "evcollector relay batch",
											   ALLOCSET_DEFAULT_SIZES);
	evc_shared->relay_database = MyDatabaseId;
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, io_pipe[0], NULL, NULL);
	kafka_wait_set = CreateWaitEventSet(TopMemoryContext, 2);
	AddWaitEventToSet(kafka_wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(kafka_wait_set, WL_SOCKET_READABLE, io_pipe[0], NULL, NULL);
}

void
evc_relay_main(Datum main_arg)
{
	MemoryContext loop_cxt;

	/* Static: they are changed inside PG_TRY and read after a longjmp. */
	static long error_backoff_ms = RELAY_ERROR_BACKOFF_MIN_MS;
	static long next_due_ms;
	static int	n;

	relay_slot = evc_worker_startup(EVC_WORKER_RELAY, "relay");

	/*
	 * librdkafka allocates and frees several small blocks for every message
	 * (the message, its header list, each header).  With glibc's fastbins
	 * those frees pile up and are consolidated again and again, which was
	 * the relay's top cost; without them, and with freed memory kept rather
	 * than returned to the kernel and faulted in again, it is cheap.
	 */
	mallopt(M_MXFAST, 0);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);

	/*
	 * The relay's own commits need not wait for the WAL flush: a settle
	 * lost in a crash only means its rows are still in the outbox and are
	 * sent again, with the same message_id, which at-least-once allows.
	 * The senders' commits, which make events exist, stay as configured.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	relay_setup();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "evcollector relay loop",
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
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

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
			abandon_batches();	/* late reports are ignored */
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
		MemoryContextReset(loop_cxt);

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
