/*
 * relay_settle.c
 *		Settling a batch whose every message is reported: nothing for the
 *		rows Kafka acknowledged (their table is emptied whole, later), a row
 *		in evc.outbox_retry with backoff for the ones that failed, a row in
 *		evc.dead_letters for the ones that can never succeed; recording the
 *		deliveries (lineage ring, latency, counters); and, once the last
 *		chunk of a tick is settled, recording the tick as delivered.
 *
 * A chunk whose every event was acknowledged needs no transaction at all.
 * The rest happens in one transaction per batch, which the relay opens only
 * once every report is in (relay_produce.c), so no transaction stays open
 * while Kafka works.  Rule: every event of a delivered tick is delivered,
 * dead-lettered, or visibly waiting in evc.outbox_retry.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "core/shmem.h"
#include "core/stats.h"
#include "kafka/kafka.h"
#include "relay/relay_int.h"
#include "observe/trace.h"
#include "send/outbox.h"
#include "util/arrays.h"

/* The last delivered tick, as evc.outbox_ticks has it (NULL: read it). */
static EvcSnapshot *delivered_snap = NULL;
static int64 delivered_id = 0;

/* The failed messages of a batch, as the settle's statements take them. */
typedef struct FailedSet
{
	int			n;
	Datum	   *ids;
	Datum	   *txids;
	List	   *errs;
} FailedSet;

/*
 * The last delivered tick's snapshot: where the next tick's batch starts.
 * Read from evc.outbox_ticks when not known (at start, after an error);
 * the caller is in a transaction with SPI connected.
 */
const EvcSnapshot *
evc_relay_delivered_snapshot(void)
{
	bool		isnull;

	if (delivered_snap != NULL)
		return delivered_snap;
	if (SPI_execute("SELECT id, snapshot FROM evc.outbox_ticks ORDER BY id DESC LIMIT 1",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evc.outbox_ticks holds no tick"),
				 errdetail("The relay starts each batch after the last delivered tick; the extension's script records the first."),
				 errhint("Reinstall the extension, or insert a tick with snapshot '1:1:'.")));
	delivered_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	{
		EvcSnapshot *snap = (EvcSnapshot *) PG_DETOAST_DATUM(SPI_getbinval(SPI_tuptable->vals[0],
																		  SPI_tuptable->tupdesc, 2, &isnull));

		delivered_snap = MemoryContextAlloc(TopMemoryContext, VARSIZE(snap));
		memcpy(delivered_snap, snap, VARSIZE(snap));
	}
	pg_atomic_write_u64(&evc_shared->relay_delivered_tick, (uint64) delivered_id);
	return delivered_snap;
}

/* The id the next recorded tick gets, and its Kafka progress record carries. */
int64
evc_relay_next_tick_id(void)
{
	return delivered_id + 1;
}

/* A tick read back from Kafka was recorded (relay_txn.c): it is the delivered one. */
void
evc_relay_set_delivered(int64 id, const EvcSnapshot *snap)
{
	evc_relay_load_delivered();
	delivered_snap = MemoryContextAlloc(TopMemoryContext, VARSIZE(snap));
	memcpy(delivered_snap, snap, VARSIZE(snap));
	delivered_id = id;
	pg_atomic_write_u64(&evc_shared->relay_delivered_tick, (uint64) delivered_id);
}

/* Forget the delivered tick; the next read takes it from the table. */
void
evc_relay_load_delivered(void)
{
	if (delivered_snap)
		pfree(delivered_snap);
	delivered_snap = NULL;
}

/*
 * Record the tick that batch (its last chunk) carries as delivered, in the
 * settle's transaction.  A tick whose batch was empty (and left no
 * dead-lettered row out) is recorded only when
 * someone needs a newer one: an evc_flush waiting, or a retired table
 * waiting to be emptied.  The next batch then simply starts further back,
 * at the last recorded tick, and covers the same transactions.
 */
static bool
tick_wanted(RelayBatch *batch)
{
	return batch->tick_last &&
		(batch->tick_events > 0 || batch->tick_left_out || pg_atomic_read_u32(&evc_shared->flush_waiters) > 0 ||
		 evc_relay_rotate_wants_tick());
}

static void
record_tick(RelayBatch *batch)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {INT8OID, PG_SNAPSHOTOID, INT8OID, TIMESTAMPTZOID};
	Datum		args[4];

	args[0] = Int64GetDatum(delivered_id + 1);
	args[1] = PointerGetDatum(batch->tick_snapshot);
	args[2] = Int64GetDatum(batch->tick_events);
	args[3] = TimestampTzGetDatum(batch->tick_taken_at);
	evc_spi_kept_plan(&plan,
					  "INSERT INTO evc.outbox_ticks (id, snapshot, events, created_at, delivered_at) "
					  "VALUES ($1, $2, $3, $4, clock_timestamp())", 4, types);
	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record a delivered tick");
}

/* After the settle committed: the recorded tick is the delivered one. */
static void
tick_recorded(RelayBatch *batch)
{
	evc_relay_load_delivered();
	delivered_snap = MemoryContextAlloc(TopMemoryContext, VARSIZE(batch->tick_snapshot));
	memcpy(delivered_snap, batch->tick_snapshot, VARSIZE(batch->tick_snapshot));
	delivered_id++;
	pg_atomic_write_u64(&evc_shared->relay_delivered_tick, (uint64) delivered_id);
	/* What the tick left out or sent alone is of no use to the next one. */
	evc_relay_forget_tick_notes();
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
 * Run one of the settle's statements over failed rows: $1 their ids, $2
 * their transactions' ids, $3 why each failed.  The plan is prepared the
 * first time and kept.
 */
static void
run_over_failed(SPIPlanPtr *plan, const char *sql, FailedSet *set, int expected, const char *what)
{
	Oid			types[3] = {INT8ARRAYOID, XID8ARRAYOID, TEXTARRAYOID};
	Datum		args[3];
	int			rc;

	args[0] = PointerGetDatum(evc_array_from_datums(INT8OID, set->ids, NULL, set->n));
	/* xid8 is a pass-by-value 8-byte type; util's builders do not know it. */
	args[1] = PointerGetDatum(construct_array(set->txids, set->n, XID8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(evc_text_array_from_list(set->errs));
	evc_spi_kept_plan(plan, sql, 3, types);
	/* SPI raises its own errors: another result cannot happen. */
	rc = SPI_execute_plan(*plan, args, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "could not %s: %s", what, SPI_result_code_string(rc));
}

/* The row of each failed message, found by (txid, id) in whichever table. */
#define FAILED_ROWS \
	"unnest($1, $2, $3) AS u(id, txid, err), LATERAL (" \
	"  SELECT * FROM evc.outbox_0 t WHERE t.txid = u.txid AND t.id = u.id UNION ALL" \
	"  SELECT * FROM evc.outbox_1 t WHERE t.txid = u.txid AND t.id = u.id UNION ALL" \
	"  SELECT * FROM evc.outbox_2 t WHERE t.txid = u.txid AND t.id = u.id) o"

/* A tick chunk's failures: into the retry table, or dead letters. */
static void
settle_tick_failures(FailedSet *retry, FailedSet *dead)
{
	static SPIPlanPtr retry_plan = NULL;
	static SPIPlanPtr dead_plan = NULL;

	if (retry->n > 0)
		run_over_failed(&retry_plan,
						"INSERT INTO evc.outbox_retry (id, txid, message_id, topic, key, payload, schema_version,"
						"       content_type, created_at, attempts, last_error, last_attempt_at, next_attempt_at) "
						"SELECT o.id, o.txid, o.message_id, o.topic, o.key, o.payload, o.schema_version,"
						"       o.content_type, o.created_at, 1, u.err, clock_timestamp(),"
						"       clock_timestamp() + interval '1 second' "
						"FROM " FAILED_ROWS " ON CONFLICT (id) DO NOTHING",
						retry, SPI_OK_INSERT, "keep failed deliveries in evc.outbox_retry");
	if (dead->n > 0)
		run_over_failed(&dead_plan,
						"INSERT INTO evc.dead_letters (message_id, topic, key, payload, error, source, attempts) "
						"SELECT o.message_id, o.topic, o.key, o.payload, u.err, 'relay', 1 FROM " FAILED_ROWS
						/* Exactly once sends a tick again after a restart: once is enough. */
						" WHERE NOT EXISTS (SELECT FROM evc.dead_letters d"
						"                   WHERE d.message_id = o.message_id AND d.source = 'relay')",
						dead, SPI_OK_INSERT, "move undeliverable events to evc.dead_letters");
}

/* A retry batch: delivered rows leave the table, failed ones back off. */
static void
settle_retries(FailedSet *ok, FailedSet *retry, FailedSet *dead)
{
	static SPIPlanPtr ok_plan = NULL;
	static SPIPlanPtr retry_plan = NULL;
	static SPIPlanPtr dead_plan = NULL;

	if (ok->n > 0)
		run_over_failed(&ok_plan, "DELETE FROM evc.outbox_retry WHERE id = ANY ($1)",
						ok, SPI_OK_DELETE, "remove delivered events from evc.outbox_retry");
	if (retry->n > 0)
		run_over_failed(&retry_plan,
						"UPDATE evc.outbox_retry r SET attempts = r.attempts + 1, last_error = u.err,"
						"       last_attempt_at = clock_timestamp(),"
						"       next_attempt_at = clock_timestamp() + least(60, 2 ^ least(r.attempts, 6)) * interval '1 second'"
						"  FROM unnest($1, $2, $3) AS u(id, txid, err) WHERE r.id = u.id",
						retry, SPI_OK_UPDATE, "record failed deliveries in evc.outbox_retry");
	if (dead->n > 0)
		run_over_failed(&dead_plan,
						"WITH d AS (DELETE FROM evc.outbox_retry r USING unnest($1, $2, $3) AS u(id, txid, err)"
						"           WHERE r.id = u.id RETURNING r.*, u.err)"
						"INSERT INTO evc.dead_letters (message_id, topic, key, payload, error, source, attempts)"
						"SELECT message_id, topic, key, payload, err, 'relay', attempts + 1 FROM d",
						dead, SPI_OK_INSERT, "move undeliverable events to evc.dead_letters");
}

static void
failed_add(FailedSet *set, RelayMsg *msg, char *reason)
{
	set->ids[set->n] = Int64GetDatum(msg->id);
	set->txids[set->n] = FullTransactionIdGetDatum(msg->txid);
	set->errs = lappend(set->errs, reason ? reason : "");
	set->n++;
}

static void
failed_init(FailedSet *set, int cap)
{
	set->n = 0;
	set->ids = palloc(sizeof(Datum) * Max(cap, 1));
	set->txids = palloc(sizeof(Datum) * Max(cap, 1));
	set->errs = NIL;
}

static bool
size_error(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/*
 * Does this size refusal prove the message too large?  The brokers refuse
 * a whole record batch, and librdkafka fails every message in it with the
 * batch's error (the Java producer splits such a batch and sends again;
 * librdkafka does not).  So a refusal is proof only for a message that was
 * alone in its record batch: one sent alone (RelayMsg.alone), or the only
 * message of its topic and partition that this batch got refused.  Any
 * other is sent again alone.
 */
static bool
size_proven(RelayBatch *batch, int idx)
{
	RelayMsg   *msg = &batch->msgs[idx];

	if (msg->alone)
		return true;
	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *other = &batch->msgs[i];

		if (i != idx && size_error(other->err) && other->partition == msg->partition &&
			(other->topic == msg->topic || strcmp(other->topic, msg->topic) == 0))
			return false;
	}
	return msg->partition != RD_KAFKA_PARTITION_UA;
}

/*
 * Exactly once: a chunk with a failed message cannot commit its
 * transaction.  Abort it, put what can never succeed in evc.dead_letters
 * (the tick sent again leaves it out), mark a size suspect to be sent alone,
 * and fail the batch: the relay backs off and sends the tick again whole
 * from the last delivered one, in a new transaction.
 */
static void
abort_failed_tick(RelayBatch *batch, FailedSet *retry, FailedSet *dead, const char *first_error)
{
	FailedSet	none;

	/*
	 * What the tick sent again leaves out or sends alone is noted before
	 * the abort: should the abort fail, the producer is made again (its
	 * init_transactions aborts the transaction) and the tick is sent again
	 * all the same.  Nothing of the transaction was committed, so the dead
	 * letters may be written first too.
	 */
	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];

		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		if (evc_kafka_permanent_error(msg->err) && (!size_error(msg->err) || size_proven(batch, i)))
			evc_relay_note_dead(msg->message_id);
		else if (size_error(msg->err))
			evc_relay_note_suspect(msg->message_id);
	}
	if (dead->n > 0)
	{
		failed_init(&none, 0);
		evc_worker_xact_begin("evcollector relay: dead-lettering events");
		settle_tick_failures(&none, dead);
		evc_worker_xact_end();
	}
	evc_relay_abort_txn();
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("kafka transaction aborted: %d of %d events of the batch failed", retry->n + dead->n, batch->n),
			 errdetail("First failure: %s.%s", first_error,
					   dead->n > 0 ? psprintf(" %d events can never be delivered and were moved to evc.dead_letters.", dead->n) : ""),
			 errhint("The batch is sent again whole, in a new transaction, after a pause.")));
}

/*
 * Settle the batch: keep what failed for a retry, dead-letter what can
 * never succeed, and record the tick once its last chunk is settled.
 */
void
evc_relay_settle_batch(RelayBatch *batch, int *delivered, int *failed, int *dead)
{
	FailedSet	ok_set, retry_set, dead_set;
	bool		record;
	char	   *first_error = NULL;

	failed_init(&ok_set, batch->from_retry ? batch->n : 0);
	failed_init(&retry_set, batch->n);
	failed_init(&dead_set, batch->n);
	for (int i = 0; i < batch->n; i++)
	{
		rd_kafka_resp_err_t err = batch->msgs[i].err;
		char	   *reason;

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			if (batch->from_retry)
				failed_add(&ok_set, &batch->msgs[i], NULL);
			continue;
		}
		reason = psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
		if (first_error == NULL)
			first_error = reason;
		failed_add(evc_kafka_permanent_error(err) && (!size_error(err) || size_proven(batch, i)) ?
				   &dead_set : &retry_set, &batch->msgs[i], reason);
	}
	*failed = retry_set.n;
	*dead = dead_set.n;
	*delivered = batch->n - *failed - *dead;
	evc_stats_add(&evc_relay_slot->counters.retried, *failed);
	evc_stats_add(&evc_relay_slot->counters.failed, *failed + *dead);
	evc_stats_add(&evc_relay_slot->counters.dead_lettered, *dead);
	evc_stats_add(&evc_relay_slot->counters.batches, 1);

	/*
	 * Exactly once: a failure aborts the transaction, so nothing of the
	 * batch was delivered.  A retry batch keeps its rows in the retry table
	 * (with the attempt counted); a tick is sent again whole.
	 */
	if (evc_relay_transactional() && first_error != NULL)
	{
		*delivered = 0;
		if (!batch->from_retry)
			abort_failed_tick(batch, &retry_set, &dead_set, first_error);
		evc_relay_abort_txn();
		ok_set.n = 0;
		evc_worker_xact_begin("evcollector relay: settling batch");
		settle_retries(&ok_set, &retry_set, &dead_set);
		evc_worker_xact_end();
		evc_relay_note_retry(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000));
		return;
	}
	note_deliveries(batch);
	evc_stats_add(&evc_relay_slot->counters.delivered, *delivered);

	record = tick_wanted(batch);
	if (retry_set.n == 0 && dead_set.n == 0 && ok_set.n == 0 && !record)
		return;					/* all acknowledged: nothing to write */
	evc_worker_xact_begin("evcollector relay: settling batch");
	if (batch->from_retry)
		settle_retries(&ok_set, &retry_set, &dead_set);
	else
		settle_tick_failures(&retry_set, &dead_set);
	if (record)
		record_tick(batch);
	evc_worker_xact_end();
	if (record)
		tick_recorded(batch);
	if (retry_set.n > 0)
		evc_relay_note_retry(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000));
}
