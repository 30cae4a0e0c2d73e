/*
 * outbox.c
 *		Owns writing to evc.outbox inside the caller's transaction, and
 *		evc_flush(), which waits until the relay has delivered it.
 *
 * The insert is what makes sending transactional: the row commits or rolls
 * back with the caller's work, and the relay is woken only at commit
 * (evc_wake_at_commit), so a rolled-back transaction sends nothing.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "send/outbox.h"
#include "core/shmem.h"
#include "core/stats.h"

pg_uuid_t *
evc_new_uuid(void)
{
	return DatumGetUUIDP(DirectFunctionCall1(gen_random_uuid, (Datum) 0));
}

/*
 * The outbox's layout, looked up once per backend and checked, so that the
 * insert below can fill a tuple without the executor's per-call plan setup.
 */
typedef struct OutboxLayout
{
	Oid			relid;
	Oid			seqid;			/* the identity sequence of "id" */
	int			natts;
} OutboxLayout;

static OutboxLayout layout = {InvalidOid, InvalidOid, 0};

static const char *const outbox_columns[] = {
	"id", "message_id", "topic", "key", "payload", "schema_version", "content_type",
	"created_at", "attempts", "last_error", "last_attempt_at", "next_attempt_at"
};
StaticAssertDecl(lengthof(outbox_columns) == OUTBOX_NATTS,
				 "outbox_columns must list every OutboxColumn");

static Oid
outbox_relid(void)
{
	Oid			nsp = get_namespace_oid("evc", false);
	Oid			relid = get_relname_relid("outbox", nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"evc.outbox\" does not exist"),
				 errhint("Create or update the extension: ALTER EXTENSION evcollector UPDATE.")));
	return relid;
}

static void
outbox_check_layout(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (desc->natts != OUTBOX_NATTS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evc.outbox does not have the layout this library expects"),
				 errdetail("The table has %d columns; the evcollector library expects %d.",
						   desc->natts, (int) OUTBOX_NATTS),
				 errhint("Run ALTER EXTENSION evcollector UPDATE.")));
	for (int i = 0; i < desc->natts; i++)
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), outbox_columns[i]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("evc.outbox does not have the layout this library expects"),
					 errdetail("Column %d of the table is \"%s\"; the evcollector library expects \"%s\".",
							   i + 1, NameStr(TupleDescAttr(desc, i)->attname), outbox_columns[i]),
					 errhint("Run ALTER EXTENSION evcollector UPDATE.")));
	layout.relid = RelationGetRelid(rel);
	layout.seqid = getIdentitySequence(layout.relid, 1, false);
	layout.natts = desc->natts;
}

/*
 * Open evc.outbox with lockmode, its layout checked against OutboxColumn.
 * evc_send inserts through it and the relay reads and deletes through it.
 */
Relation
evc_outbox_open(LOCKMODE lockmode)
{
	Oid			relid = outbox_relid();
	Relation	rel = table_open(relid, lockmode);

	if (relid != layout.relid)
		outbox_check_layout(rel);
	return rel;
}

/*
 * Insert one row into evc.outbox in the caller's transaction.  This is the
 * hot path of evc_send, so it inserts the heap tuple and its index entries
 * directly, as COPY does, instead of planning and running an INSERT through
 * SPI for every event.  The table has no triggers, rules or policies of its
 * own (it is the extension's), so nothing an INSERT would do is skipped.
 */
void
evc_outbox_enqueue(const char *topic, const char *key, int keylen,
				   bytea *payload, pg_uuid_t *message_id,
				   int32 schema_version, const char *content_type)
{
	Relation	rel = evc_outbox_open(RowExclusiveLock);
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	Datum		values[OUTBOX_NATTS];
	bool		nulls[OUTBOX_NATTS];
	int64		id;

	memset(nulls, 0, sizeof(nulls));
	id = nextval_internal(layout.seqid, false);
	values[OUTBOX_ID] = Int64GetDatum(id);
	values[OUTBOX_MESSAGE_ID] = UUIDPGetDatum(message_id);
	values[OUTBOX_TOPIC] = CStringGetTextDatum(topic);
	if (key != NULL)
	{
		bytea	   *k = palloc(VARHDRSZ + keylen);

		SET_VARSIZE(k, VARHDRSZ + keylen);
		memcpy(VARDATA(k), key, keylen);
		values[OUTBOX_KEY] = PointerGetDatum(k);
	}
	else
		nulls[OUTBOX_KEY] = true;
	values[OUTBOX_PAYLOAD] = PointerGetDatum(payload);
	values[OUTBOX_SCHEMA_VERSION] = Int32GetDatum(schema_version);
	values[OUTBOX_CONTENT_TYPE] = CStringGetTextDatum(content_type);
	values[OUTBOX_CREATED_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[OUTBOX_ATTEMPTS] = Int32GetDatum(0);
	nulls[OUTBOX_LAST_ERROR] = nulls[OUTBOX_LAST_ATTEMPT_AT] = nulls[OUTBOX_NEXT_ATTEMPT_AT] = true;

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(values));
	memcpy(slot->tts_isnull, nulls, sizeof(nulls));
	ExecStoreVirtualTuple(slot);

	/* Values go through toasting (compression) as in an INSERT. */
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);

	ExecCloseIndices(rri);
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	table_close(rel, NoLock);

	evc_stats_count_sent(1);
	/* Wakes the relay at commit, and tells it how low this id is. */
	evc_outbox_note_id(id);
}

/*
 * Whether evc.outbox holds any row, read from the first live entry of its
 * primary key: cheap however long the backlog, where a count would read
 * all of it each time the relay settles a batch.
 */
static bool
outbox_empty(void)
{
	bool		isnull;

	SPI_connect();
	/* Not read-only: each check takes a fresh snapshot (READ COMMITTED). */
	if (SPI_execute("SELECT min(id) FROM evc.outbox", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.outbox");
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	return isnull;
}

static int64
outbox_pending(void)
{
	int64		n;
	bool		isnull;

	SPI_connect();
	if (SPI_execute("SELECT count(*) FROM evc.outbox", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count evc.outbox");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return n;
}

/*
 * evc_flush(timeout interval) returns bigint: wait until the outbox is
 * empty or the timeout passes; return how many events are still pending.
 * The relay broadcasts a condition variable after each batch, so this
 * sleeps until then rather than polling.
 */
PG_FUNCTION_INFO_V1(evc_flush);
Datum
evc_flush(PG_FUNCTION_ARGS)
{
	Interval   *timeout = PG_GETARG_INTERVAL_P(0);
	int64		timeout_ms;
	TimestampTz deadline;
	bool		relay_here;
	uint64		start;

	evc_require_preload();
	timeout_ms = (timeout->time + (int64) timeout->day * USECS_PER_DAY +
				  (int64) timeout->month * 30 * USECS_PER_DAY) / 1000;
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("evc_flush needs READ COMMITTED isolation"),
				 errdetail("Under REPEATABLE READ or SERIALIZABLE it would never see the relay's progress.")));
	if (evc_wake_pending(EVC_WORKER_RELAY))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("evc_flush cannot wait for events sent in the same transaction"),
				 errdetail("The relay sends events only after their transaction commits."),
				 errhint("Commit first, then call evc_flush().")));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	if (outbox_empty())
		PG_RETURN_INT64(0);

	/*
	 * In the relay's database, wait for the relay to find the outbox empty
	 * in a read that began after this call: scanning it here every time
	 * the relay settles a batch would cost as much as the relay's own work.
	 * Elsewhere (no relay serves this database) only the timeout ends it.
	 */
	relay_here = (evc_shared->relay_database == MyDatabaseId);
	start = pg_atomic_read_u64(&evc_shared->relay_reads);
	evc_wake_worker(EVC_WORKER_RELAY, NULL);
	for (;;)
	{
		long		remaining;

		if (relay_here && pg_atomic_read_u64(&evc_shared->relay_empty_read) > start)
			PG_RETURN_INT64(0);
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		/* Re-check at least every 100 ms in case a broadcast came early. */
		(void) ConditionVariableTimedSleep(&evc_shared->outbox_settled,
										   Min(remaining, 100), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_INT64(outbox_pending());
}
