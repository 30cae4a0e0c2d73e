/*
 * relay_settle.c
 *		Settling a batch whose every message is reported: deleting the rows
 *		Kafka acknowledged, scheduling a retry with backoff for the ones
 *		that failed, moving the ones that can never succeed to
 *		evc.dead_letters, and recording the deliveries (lineage ring,
 *		latency, counters).
 *
 * All of it happens in one transaction per batch, which the relay opens
 * only once every report is in (relay_produce.c), so no transaction stays
 * open while Kafka works.  Delivered rows are deleted by tuple id, with no
 * executor per row; the retry and dead-letter paths are rare and use SPI.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/shmem.h"
#include "core/stats.h"
#include "kafka/kafka.h"
#include "relay/relay_int.h"
#include "observe/trace.h"
#include "send/outbox.h"
#include "util/arrays.h"

/* A bigint[] of a List of palloc'd int64 ids. */
static ArrayType *
int8_array(List *ids)
{
	int			n = list_length(ids);
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, ids)
		d[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return evc_array_from_datums(INT8OID, d, NULL, n);
}

/*
 * Is the row at msg's tuple id still the one produced?  Read from the page
 * itself, keeping the buffer pinned while consecutive rows share a page:
 * fetching each row as a tuple cost a buffer lookup and a visibility check
 * per row, and only the id is needed.  A row deleted meanwhile is still
 * there until vacuum; heap_delete then finds it deleted and leaves it.
 */
static bool
row_still_there(Relation rel, Buffer *buf, const RelayMsg *msg)
{
	OffsetNumber off = ItemPointerGetOffsetNumber(&msg->tid);
	Page		page;
	bool		same = false;

	*buf = ReleaseAndReadBuffer(*buf, rel, ItemPointerGetBlockNumber(&msg->tid));
	LockBuffer(*buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(*buf);
	if (off >= FirstOffsetNumber && off <= PageGetMaxOffsetNumber(page))
	{
		ItemId		lp = PageGetItemId(page, off);

		if (ItemIdIsNormal(lp))
		{
			HeapTupleData tuple;
			bool		isnull;
			Datum		id;

			tuple.t_data = (HeapTupleHeader) PageGetItem(page, lp);
			tuple.t_len = ItemIdGetLength(lp);
			tuple.t_tableOid = RelationGetRelid(rel);
			tuple.t_self = msg->tid;
			id = heap_getattr(&tuple, OUTBOX_ID + 1, RelationGetDescr(rel), &isnull);
			same = !isnull && DatumGetInt64(id) == msg->id;
		}
	}
	LockBuffer(*buf, BUFFER_LOCK_UNLOCK);
	return same;
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
	Snapshot	snapshot = GetActiveSnapshot();
	CommandId	cid = GetCurrentCommandId(true);
	Buffer		buf = InvalidBuffer;

	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];
		TM_FailureData tmfd;

		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR || !row_still_there(rel, &buf, msg))
			continue;
		(void) table_tuple_delete(rel, &msg->tid, cid, snapshot, InvalidSnapshot,
								  true, &tmfd, false);
	}
	if (BufferIsValid(buf))
		ReleaseBuffer(buf);
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
		evc_stats_observe_ms(&evc_relay_slot->counters, (msg->acked_at - msg->created_at) / 1000.0);
		evc_stats_add(&evc_relay_slot->counters.bytes_out, msg->payload_len);
	}
}

/*
 * Run one of the settle's statements over failed rows: $1 their ids, $2 why
 * each failed.  The plan is prepared the first time and kept.
 */
static void
run_over_failed(SPIPlanPtr *plan, const char *sql, List *ids, List *errs,
				int expected, const char *what)
{
	Oid			types[2] = {INT8ARRAYOID, TEXTARRAYOID};
	Datum		args[2] = {PointerGetDatum(int8_array(ids)), PointerGetDatum(evc_text_array_from_list(errs))};
	int			rc;

	evc_spi_kept_plan(plan, sql, 2, types);
	/* SPI raises its own errors: another result cannot happen. */
	rc = SPI_execute_plan(*plan, args, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "could not %s: %s", what, SPI_result_code_string(rc));
}

/*
 * Settle the batch in one transaction: delete what was delivered, schedule
 * a retry for what failed, dead-letter what can never succeed.
 */
void
evc_relay_settle_batch(RelayBatch *batch, int *delivered, int *failed, int *dead)
{
	static SPIPlanPtr retry_plan = NULL;
	static SPIPlanPtr dead_plan = NULL;
	List	   *retry_ids = NIL, *retry_errs = NIL, *dead_ids = NIL, *dead_errs = NIL;

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
			/* In backoff for at least a second (see the UPDATE below). */
			evc_relay_note_backoff(batch->msgs[i].id,
								   TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000));
		}
	}
	*failed = list_length(retry_ids);
	*dead = list_length(dead_ids);
	note_deliveries(batch);
	evc_stats_add(&evc_relay_slot->counters.delivered, *delivered);
	evc_stats_add(&evc_relay_slot->counters.retried, *failed);
	evc_stats_add(&evc_relay_slot->counters.failed, *failed + *dead);
	evc_stats_add(&evc_relay_slot->counters.dead_lettered, *dead);
	evc_stats_add(&evc_relay_slot->counters.batches, 1);

	evc_worker_xact_begin("evcollector relay: settling batch");
	if (*delivered > 0)
		delete_delivered(batch);
	if (retry_ids)
		run_over_failed(&retry_plan,
						"UPDATE evc.outbox o SET attempts = o.attempts + 1, last_error = u.err,"
						"       last_attempt_at = clock_timestamp(),"
						"       next_attempt_at = clock_timestamp() + least(60, 2 ^ least(o.attempts, 6)) * interval '1 second'"
						"  FROM unnest($1, $2) AS u(id, err) WHERE o.id = u.id",
						retry_ids, retry_errs, SPI_OK_UPDATE, "record failed deliveries in evc.outbox");
	if (dead_ids)
		run_over_failed(&dead_plan,
						"WITH d AS (DELETE FROM evc.outbox o USING unnest($1, $2) AS u(id, err)"
						"           WHERE o.id = u.id RETURNING o.*, u.err)"
						"INSERT INTO evc.dead_letters (message_id, topic, key, payload, error, source, attempts)"
						"SELECT message_id, topic, key, payload, err, 'relay', attempts + 1 FROM d",
						dead_ids, dead_errs, SPI_OK_INSERT, "move undeliverable rows to evc.dead_letters");
	evc_worker_xact_end();
}
