/*
 * relay_txn.c
 *		Exactly once into Kafka: the relay's transactional identity, its
 *		Kafka transactions (one per tick's batch, with the relay's progress
 *		written in the same transaction to <prefix>_evc_relay), and, when a
 *		producer starts, taking that progress back (read by
 *		relay_progress.c), checking that it is about this install and this
 *		server's history, and recording in PostgreSQL a tick that Kafka
 *		committed but PostgreSQL did not.
 *
 * This is Kafka Connect's exactly-once source design (KIP-618): the source's
 * offsets travel in the records' transaction.  A tick's batch is fully
 * determined by two snapshots (relay_read.c), so the progress record is the
 * tick's id and snapshot: whoever reads it knows where the next batch
 * starts.  The transactional.id is derived from the database system
 * identifier and the database's oid, which a physical standby shares with
 * its primary: a promoted standby's relay calls init_transactions with the
 * same id and fences the old primary's producer.
 *
 * Everything here runs on the main loop.  librdkafka's transactional calls
 * block; they are made with short timeouts and called again while the
 * error is retriable (librdkafka resumes the operation), checking for
 * interrupts in between, so SIGTERM and the postmaster's death are seen.
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/timeline.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"

#include "core/guc.h"
#include "core/shmem.h"
#include "core/worker.h"
#include "kafka/kafka.h"
#include "relay/relay_int.h"

/* Each blocking transactional call waits this long before it is called again. */
#define TXN_SLICE_MS 500

static char identity[64] = "";
static char *pending_progress = NULL;	/* read back, not yet compared with PostgreSQL */
static bool progress_pending = false;
static bool txn_open = false;		/* begin_transaction called, no commit or abort yet */

/* "evc-<system identifier>-<database oid>": the key and the transactional.id. */
const char *
evc_relay_identity(void)
{
	if (identity[0] == '\0')
		snprintf(identity, sizeof(identity), "evc-" UINT64_FORMAT "-%u",
				 GetSystemIdentifier(), MyDatabaseId);
	return identity;
}

/*
 * The transactional.id of producer i (relay_produce.c keeps two, which take
 * turns after slow transactions): the identity, then the identity with
 * "-2".  Both derive from the identity, so a promoted standby fences both;
 * a prefixed ACL on the identity covers both.
 */
const char *
evc_relay_transactional_id(int i)
{
	static char second[72];

	if (i == 0)
		return evc_relay_identity();
	snprintf(second, sizeof(second), "%s-%d", evc_relay_identity(), i + 1);
	return second;
}

/* <evcollector.topic_prefix>_evc_relay */
static char *
progress_topic(void)
{
	return evc_topic_name("_evc_relay");
}

bool
evc_relay_txn_is_open(void)
{
	return txn_open;
}

/* The producer is gone: so is its transaction (the brokers abort it). */
void
evc_relay_txn_forget(void)
{
	txn_open = false;
}

/*
 * Raise a transactional call's error, and let it go (librdkafka's object).
 * A fatal one (fenced by a newer producer with our transactional.id, or the
 * broker's own) makes the producer unusable: it is marked so and recreated.
 */
static void
txn_error(rd_kafka_t *rk, rd_kafka_error_t *error, const char *what)
{
	char		text[512];
	char		id[128] = "";
	size_t		id_size = sizeof(id);
	bool		fatal = rd_kafka_error_is_fatal(error);
	bool		fenced = rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__FENCED ||
		rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
		rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
	bool		abortable = rd_kafka_error_txn_requires_abort(error);

	snprintf(text, sizeof(text), "%s: %s", rd_kafka_error_name(error), rd_kafka_error_string(error));
	rd_kafka_error_destroy(error);
	if (fatal)
		evc_relay_producer_mark_fatal();
	/* Which of the two ids: the one this producer was made with. */
	if (rd_kafka_conf_get(rd_kafka_conf(rk), "transactional.id", id, &id_size) != RD_KAFKA_CONF_OK)
		strlcpy(id, evc_relay_identity(), sizeof(id));
	if (fenced)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("kafka producer fenced: another producer took transactional.id \"%s\"", id),
				 errdetail("%s failed: %s.", what, text),
				 errhint("Another server with this system identifier and database (a promoted standby, "
						 "or a copy of this data directory) relays to these brokers; only one may.  "
						 "This relay takes the identity back when it starts again.")));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not %s the relay's kafka transaction", what),
			 errdetail("%s%s.", text, fatal ? " (fatal: the producer is recreated)" :
					   abortable ? " (the transaction is aborted and its batch sent again whole)" : ""),
			 strcmp(what, "initialize") == 0 ?
			 errhint("If the brokers do not support transactions, set evcollector.relay_exactly_once = off.") :
			 errhint("The batch stays in the outbox and is sent again.")));
}

/*
 * Run a blocking transactional call in TXN_SLICE_MS slices until it is
 * done, checking for interrupts between them.  librdkafka resumes a call
 * that timed out when it is called again the same way.  With abort_why,
 * an error that only requires the transaction to be aborted is not raised:
 * its text goes there and the call returns false.
 */
typedef rd_kafka_error_t *(*TxnCall) (rd_kafka_t *rk, int timeout_ms);

static bool
txn_call(rd_kafka_t *rk, TxnCall call, const char *what, char *abort_why, size_t why_len)
{
	for (;;)
	{
		rd_kafka_error_t *error = call(rk, TXN_SLICE_MS);

		if (error == NULL)
			return true;
		if (abort_why && rd_kafka_error_txn_requires_abort(error) && !rd_kafka_error_is_fatal(error))
		{
			snprintf(abort_why, why_len, "%s: %s", rd_kafka_error_name(error), rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			return false;
		}
		if (!rd_kafka_error_is_retriable(error) || rd_kafka_error_is_fatal(error) ||
			rd_kafka_error_txn_requires_abort(error))
			txn_error(rk, error, what);
		rd_kafka_error_destroy(error);
		evc_relay_service();
		evc_worker_handle_interrupts();
		/* A password put right, or other brokers: the next producer has them. */
		if (evc_relay_producer_stale())
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not %s the relay's kafka transaction before its settings changed", what),
					 errhint("The producer is made again with the new settings.")));
	}
}

/* Begin the transaction the next batch goes into, unless one is open. */
void
evc_relay_txn_begin(rd_kafka_t *rk)
{
	rd_kafka_error_t *error;

	if (txn_open)
		return;
	error = rd_kafka_begin_transaction(rk);
	if (error)
		txn_error(rk, error, "begin");
	txn_open = true;
}

/*
 * The test hook: SIGKILL, as an OOM kill or a kill -9 would, in a
 * transaction that carries progress (one with events).
 */
static void
fault_point(int point)
{
	if (evc_relay_fault_point != point)
		return;
	ereport(LOG,
			(errmsg("evcollector relay: evcollector.relay_fault_point = %s: killing the relay",
					point == EVC_RELAY_FAULT_AFTER_KAFKA_COMMIT ? "after_kafka_commit" : "before_kafka_commit")));
	kill(MyProcPid, SIGKILL);
	for (;;)
		pause();
}

/* Does the batch carry a tick with events, which Kafka must learn of? */
static bool
carries_progress(RelayBatch *batch)
{
	return batch && batch->tick_last && batch->tick_events > 0;
}

/*
 * Produce the progress record of the tick that batch (its last chunk)
 * carries into the open transaction: key the identity, value the tick's id
 * and snapshot, so that whoever reads it knows the batch committed and
 * where the next one starts; and what a reader needs to know that the
 * record is about its own ticks (reconcile): the oid of the
 * evc.outbox_ticks the id counts in, and the WAL position (timeline, LSN)
 * flushed before the commit.  Only once every event of the batch was
 * acknowledged: a reader that cannot tell an aborted transaction from a
 * committed one (librdkafka's mock cluster ignores isolation.level) must
 * not find the progress of a tick whose events failed.
 */
static void
produce_progress(rd_kafka_t *rk, RelayBatch *batch, int64 tick_id)
{
	const char *key = evc_relay_identity();
	char	   *value;
	rd_kafka_resp_err_t err;

	value = psprintf("{\"tick\": " INT64_FORMAT ", \"snapshot\": \"%s\", \"events\": " INT64_FORMAT
					 ", \"system_identifier\": \"" UINT64_FORMAT "\", \"database\": %u"
					 ", \"ticks_table\": %u, \"timeline\": %u, \"wal\": \"%X/%X\"}",
					 tick_id,
					 DatumGetCString(DirectFunctionCall1(pg_snapshot_out, PointerGetDatum(batch->tick_snapshot))),
					 batch->tick_events, GetSystemIdentifier(), MyDatabaseId,
					 batch->tick_ticks_relid, batch->tick_wal_tli, LSN_FORMAT_ARGS(batch->tick_wal_at));
	err = rd_kafka_producev(rk,
							RD_KAFKA_V_TOPIC(progress_topic()),
							RD_KAFKA_V_KEY(key, strlen(key)),
							RD_KAFKA_V_VALUE(value, strlen(value)),
							RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							RD_KAFKA_V_END);
	pfree(value);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not produce the relay's progress to topic \"%s\"", progress_topic()),
				 errdetail("%s: %s.", rd_kafka_err2name(err), rd_kafka_err2str(err)),
				 errhint("The batch's transaction is aborted and the batch sent again.")));
}

/*
 * Commit the open transaction.  When it carries a tick with events, first
 * produce the progress record.  Every report of the batch is in, none
 * failed; commit_transaction flushes the progress record without waiting
 * out linger.ms, and fails if it failed: then the transaction must be
 * aborted, and this returns false with librdkafka's reason in abort_why.
 * The caller serves the delivery reports on this thread meanwhile
 * (relay_produce.c).
 */
bool
evc_relay_txn_commit(rd_kafka_t *rk, RelayBatch *batch, int64 tick_id, char *abort_why, size_t why_len)
{
	bool		progress = carries_progress(batch);

	if (!txn_open)
		return true;
	if (progress)
		produce_progress(rk, batch, tick_id);
	/*
	 * The snapshot goes to Kafka before this server may have made durable
	 * what it saw: the relay commits with synchronous_commit off, and an
	 * aborted transaction's record is never flushed.  After a crash,
	 * recovery would then hand out again transaction ids that the snapshot
	 * counts as completed, and their events would be taken as sent.  So
	 * the WAL up to the moment the snapshot was taken is flushed first:
	 * every id the snapshot sees completed is then known to recovery.
	 */
	if (batch && batch->tick_last)
		XLogFlush(batch->tick_wal_at);
	if (progress)
		fault_point(EVC_RELAY_FAULT_BEFORE_KAFKA_COMMIT);
	pgstat_report_activity(STATE_RUNNING, "evcollector relay: committing kafka transaction");
	if (!txn_call(rk, rd_kafka_commit_transaction, "commit", abort_why, why_len))
	{
		pgstat_report_activity(STATE_IDLE, NULL);
		return false;
	}
	txn_open = false;
	pgstat_report_activity(STATE_IDLE, NULL);
	if (progress)
		fault_point(EVC_RELAY_FAULT_AFTER_KAFKA_COMMIT);
	return true;
}

/* Abort the open transaction: read_committed consumers never see its records. */
void
evc_relay_txn_abort(rd_kafka_t *rk)
{
	if (!txn_open)
		return;
	(void) txn_call(rk, rd_kafka_abort_transaction, "abort", NULL, 0);
	txn_open = false;
}

/*
 * Is the WAL up to lsn on timeline tli part of this server's history?  It
 * is when this server wrote it, or recovered it (after a crash, or as the
 * standby that was promoted, up to the switch point): then every
 * transaction a snapshot taken there counts as completed is known here,
 * and its id is never handed out again.  It is not after a point-in-time
 * recovery to an earlier point, the promotion of a standby that had not
 * received it, or on another copy of the data directory.
 */
static bool
wal_in_history(TimeLineID tli, XLogRecPtr lsn)
{
	TimeLineID	current = GetWALInsertionTimeLine();
	ListCell   *lc;

	if (tli == current)
		return lsn <= GetXLogInsertRecPtr();
	foreach(lc, readTimeLineHistory(current))
	{
		TimeLineHistoryEntry *entry = (TimeLineHistoryEntry *) lfirst(lc);

		/* An ancestor's WAL is ours up to where our branch left it. */
		if (entry->tli == tli)
			return XLogRecPtrIsInvalid(entry->end) || lsn <= entry->end;
	}
	return false;
}

/*
 * Is a progress record, which carries this server's identity, about this
 * install's ticks and this server's history?  tup is reconcile's row: the
 * record's tick, snapshot, events, PostgreSQL's last tick, the record's
 * ticks table, timeline and WAL position, and evc.outbox_ticks' oid.
 */
static bool
progress_is_ours(const char *progress, HeapTuple tup, TupleDesc desc)
{
	bool		nulls[8];
	Datum		v[8];
	XLogRecPtr	lsn;
	int64		tli;

	for (int i = 0; i < 8; i++)
		v[i] = SPI_getbinval(tup, desc, i + 1, &nulls[i]);

	/*
	 * Without its tick, snapshot, table and WAL position a record cannot be
	 * checked (a record of this library before it wrote them all, or of
	 * another program): applying it could take new events as sent.
	 */
	if (nulls[0] || nulls[1] || nulls[4] || nulls[5] || nulls[6])
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("evcollector relay: the last progress record in topic \"%s\" is incomplete; it is not applied",
						progress_topic()),
				 errdetail("A progress record has \"tick\", \"snapshot\", \"ticks_table\", \"timeline\" and \"wal\".  Record: %s",
						   progress),
				 errhint("Events still pending here that Kafka already has are sent again.")));
		return false;
	}

	/*
	 * The extension was dropped and created again (or its tables restored
	 * from a dump): tick ids started over, and the record's tick, taken as
	 * delivered, would pass over this install's own.
	 */
	if (DatumGetObjectId(v[4]) != DatumGetObjectId(v[7]))
	{
		ereport(LOG,
				(errmsg("evcollector relay: the last progress record in topic \"%s\" is of an earlier install of the extension; it is not applied",
						progress_topic()),
				 errdetail("The record counts ticks in the table with oid %u; evc.outbox_ticks is %u.  Record: %s",
						   DatumGetObjectId(v[4]), DatumGetObjectId(v[7]), progress)));
		return false;
	}
	tli = DatumGetInt64(v[5]);
	lsn = DatumGetLSN(v[6]);

	/*
	 * Another history: its snapshot counts as completed transaction ids
	 * that this server will hand out again, so applying it would take new
	 * events as sent.  Not applying it sends again what that history sent
	 * and this one still has pending: duplicates, not losses.
	 */
	if (tli <= 0 || tli > PG_UINT32_MAX || !wal_in_history((TimeLineID) tli, lsn))
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("evcollector relay: the last progress record in topic \"%s\" was written after this server's history left the writer's; it is not applied",
						progress_topic()),
				 errdetail("The record's tick was taken at WAL %X/%X on timeline " INT64_FORMAT "; this server is on timeline %u at %X/%X.  Record: %s",
						   LSN_FORMAT_ARGS(lsn), tli, GetWALInsertionTimeLine(),
						   LSN_FORMAT_ARGS(GetXLogInsertRecPtr()), progress),
				 errhint("This follows a point-in-time recovery, the promotion of a standby that was behind, or a copy of the data directory. "
						 "Events still pending here that the other history delivered are sent again.")));
		return false;
	}
	return true;
}

/*
 * Read the fields of a progress record into SPI_tuptable's one row: the
 * record's tick, snapshot, events, PostgreSQL's last tick, the record's
 * ticks table, timeline and WAL position, and evc.outbox_ticks' oid.
 * Returns false, with a WARNING, when the record is not JSON or a field
 * does not cast (another program's record, or a damaged one): raised in the
 * read's transaction, that error would fail every read after each start,
 * and the relay would never deliver again.  So the query runs in an
 * internal subtransaction, as a PL/pgSQL exception block does, on the
 * caller's SPI connection: SPI frees the row set of an aborted
 * subtransaction, and keeps that of a released one.  It assigns no
 * transaction id and runs once per producer start.  Any other error (not a
 * data exception) is raised again.
 */
static bool
read_progress_fields(const char *progress)
{
	static const char *sql =
		"SELECT (p->>'tick')::bigint, (p->>'snapshot')::pg_snapshot, (p->>'events')::bigint,"
		"       (SELECT max(id) FROM evc.outbox_ticks),"
		"       (p->>'ticks_table')::oid, (p->>'timeline')::bigint, (p->>'wal')::pg_lsn,"
		"       'evc.outbox_ticks'::regclass::oid "
		"FROM (SELECT $1::jsonb AS p) s";
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	ErrorData  *volatile edata = NULL;

	args[0] = CStringGetTextDatum(progress);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (SPI_execute_with_args(sql, 1, types, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read the relay's progress record");
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	if (edata == NULL)
		return true;
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		ReThrowError(edata);
	ereport(WARNING,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("evcollector relay: the last progress record in topic \"%s\" is malformed; it is not applied",
					progress_topic()),
			 errdetail("Reading its fields failed: %s.  Record: %s", edata->message, progress),
			 errhint("Events still pending here that Kafka already has are sent again.")));
	FreeErrorData(edata);
	return false;
}

/*
 * Compare Kafka's progress with evc.outbox_ticks.  A tick that Kafka
 * committed and PostgreSQL did not record (the relay or the server died in
 * between; the relay commits with synchronous_commit off) is recorded now,
 * so it is never sent again.  PostgreSQL ahead of Kafka is fine: empty
 * ticks, and ticks of the idempotent mode, write no progress.  A record
 * that cannot be read (read_progress_fields), or is not about this install
 * and this server's history (progress_is_ours), is not applied.
 */
static void
reconcile(const char *progress)
{
	bool		isnull;
	bool		tick_null;
	int64		kafka_tick,
				pg_tick,
				events;
	EvcSnapshot *snap;

	if (!read_progress_fields(progress))
		return;
	kafka_tick = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &tick_null));
	pg_tick = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	/* PostgreSQL has it already (or has no tick: the read fails on that). */
	if (isnull || (!tick_null && kafka_tick <= pg_tick))
		return;
	if (!progress_is_ours(progress, SPI_tuptable->vals[0], SPI_tuptable->tupdesc))
		return;
	snap = (EvcSnapshot *) PG_DETOAST_DATUM_COPY(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	events = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (isnull)
		events = 0;
	{
		Oid			itypes[3] = {INT8OID, PG_SNAPSHOTOID, INT8OID};
		Datum		iargs[3];

		iargs[0] = Int64GetDatum(kafka_tick);
		iargs[1] = PointerGetDatum(snap);
		iargs[2] = Int64GetDatum(events);
		if (SPI_execute_with_args("INSERT INTO evc.outbox_ticks (id, snapshot, events, created_at, delivered_at) "
								  "VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())",
								  3, itypes, iargs, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the tick read back from Kafka");
	}
	ereport(LOG,
			(errmsg("evcollector relay: tick " INT64_FORMAT " was committed to Kafka but not recorded here; recorded it as delivered",
					kafka_tick),
			 errdetail("evc.outbox_ticks ended at tick " INT64_FORMAT "; its " INT64_FORMAT " events are not sent again.",
					   pg_tick, events)));
	/* The next batch starts after it. */
	evc_relay_set_delivered(kafka_tick, snap);
	evc_relay_read_from_delivered();
}

/*
 * In the read's transaction, with SPI connected, before the tick is cut:
 * compare the progress a new producer read back with evc.outbox_ticks.
 * The record is inserted in the read's transaction: if the read fails, it
 * goes with it, and the next producer reads the progress again.
 */
void
evc_relay_txn_reconcile(void)
{
	if (!progress_pending)
		return;
	progress_pending = false;
	if (pending_progress == NULL)
		return;
	reconcile(pending_progress);
	pfree(pending_progress);
	pending_progress = NULL;
}

/*
 * Have a new producer learn the progress topic's partitions now: the first
 * commit's progress record would otherwise wait for them, up to a second
 * (librdkafka's topic scan), in each producer.  Best effort: without them
 * the record only waits.
 */
static void
learn_progress_topic(rd_kafka_t *rk)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, progress_topic(), NULL);
	const struct rd_kafka_metadata *md = NULL;

	if (rkt == NULL)
		return;

	/* One call of up to 5 s, not sliced: see controller_known in kafka/topics.c. */
	if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
}

/*
 * The transactional producers were just made: fence older producers with
 * our transactional.ids (their open transactions are aborted), make sure the
 * progress topic exists compacted, and read our progress back, for
 * evc_relay_txn_reconcile.  Runs in the read's transaction (the producer is
 * made there), which does no PostgreSQL work while it waits.
 */
void
evc_relay_txn_start(rd_kafka_t *const *rks, int n)
{
	char	   *why;
	char	   *progress;

	pgstat_report_activity(STATE_RUNNING, "evcollector relay: init_transactions");
	txn_open = false;
	/* Every id is fenced before the progress is read: no older producer can still commit. */
	for (int i = 0; i < n; i++)
		(void) txn_call(rks[i], rd_kafka_init_transactions, "initialize", NULL, 0);
	if (evc_kafka_ensure_compacted_topic(rks[0], progress_topic(), 5000, &why) == EVC_TOPIC_FAILED)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("evcollector relay: could not create the compacted topic \"%s\"", progress_topic()),
				 errdetail("%s.", why),
				 errhint("Create it with evc_create_topic('%s', 1, -1, '{\"cleanup.policy\": \"compact\", \"segment.ms\": \"3600000\"}').",
						 progress_topic())));
	for (int i = 0; i < n; i++)
		learn_progress_topic(rks[i]);
	pgstat_report_activity(STATE_RUNNING, "evcollector relay: reading its progress from kafka");
	progress = evc_relay_read_progress();
	if (pending_progress)
		pfree(pending_progress);
	pending_progress = progress ? MemoryContextStrdup(TopMemoryContext, progress) : NULL;
	progress_pending = true;
	pg_atomic_write_u32(&evc_shared->relay_mode, EVC_RELAY_MODE_TRANSACTIONAL);
}

/*
 * evc_relay_mode(): the mode of the relay's running producer, for
 * evc.workers: transactional, idempotent, or NULL before it made one.
 */
PG_FUNCTION_INFO_V1(evc_relay_mode);
Datum
evc_relay_mode(PG_FUNCTION_ARGS)
{
	uint32		mode = evc_shmem_attached() ? pg_atomic_read_u32(&evc_shared->relay_mode) : 0;

	if (mode == EVC_RELAY_MODE_TRANSACTIONAL)
		PG_RETURN_TEXT_P(cstring_to_text("transactional"));
	if (mode == EVC_RELAY_MODE_IDEMPOTENT)
		PG_RETURN_TEXT_P(cstring_to_text("idempotent"));
	PG_RETURN_NULL();
}
