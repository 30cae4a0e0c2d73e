/*
 * outbox.c
 *		Owns writing to the outbox tables (evc.outbox_0 .. _2) inside the
 *		caller's transaction, the tables' layout, snapshot coverage, and
 *		evc_flush(), which waits until the relay has delivered them.
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
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "send/outbox.h"
#include "core/shmem.h"
#include "core/stats.h"

/* UUIDs' worth of strong random bytes fetched at a time. */
#define UUID_POOL	64

/*
 * A random (version 4) UUID, as gen_random_uuid makes it.  The random
 * bytes come from pg_strong_random as there, but 64 UUIDs' worth at a
 * time: each call into OpenSSL's generator costs more than the bytes
 * (locks, a getpid for its fork check), and a gateway batch takes
 * hundreds.  The pool belongs to the process that filled it: a child
 * forked with a filled pool would hand out its parent's ids, so it is
 * refilled whenever the process id is not the filler's.
 */
pg_uuid_t *
evc_new_uuid(void)
{
	static uint8 pool[UUID_POOL * UUID_LEN];
	static int	left = 0;
	static int	filled_by = 0;
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	if (left == 0 || filled_by != MyProcPid)
	{
		if (!pg_strong_random(pool, sizeof(pool)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		left = UUID_POOL;
		filled_by = MyProcPid;
	}
	left--;
	memcpy(u->data, pool + left * UUID_LEN, UUID_LEN);
	/* used once: what is handed out does not stay behind in the pool */
	memset(pool + left * UUID_LEN, 0, UUID_LEN);
	u->data[6] = (u->data[6] & 0x0f) | 0x40;	/* version 4 */
	u->data[8] = (u->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	return u;
}

/*
 * The outbox tables' layout, looked up once per backend and checked, so
 * that the insert below can fill a tuple without the executor's per-call
 * plan setup.  Slot EVC_OUTBOX_TABLES is evc.outbox_retry.
 */
typedef struct OutboxLayout
{
	Oid			relid;
	Oid			seqid;			/* evc.outbox_seq, the ids of every table */
} OutboxLayout;

static OutboxLayout layout[EVC_OUTBOX_TABLES + 1];

static const char *const outbox_columns[] = {
	"id", "txid", "message_id", "topic", "key", "payload", "schema_version", "content_type",
	"created_at", "attempts", "last_error", "last_attempt_at", "next_attempt_at"
};
StaticAssertDecl(lengthof(outbox_columns) == RETRY_NATTS,
				 "outbox_columns must list every OutboxColumn");

/*
 * The installed SQL is older than this library (0.5.0 had one evc.outbox
 * table): say so, with the way out, as the relay and evc_send did before.
 */
static void
outbox_layout_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("evc.outbox does not have the layout this library expects"),
			 errdetail_internal("%s", detail),
			 errhint("Run ALTER EXTENSION evcollector UPDATE.")));
}

static Oid
outbox_relid(int n)
{
	Oid			nsp = get_namespace_oid("evc", false);
	char		name[NAMEDATALEN];
	Oid			relid;

	if (n == EVC_OUTBOX_TABLES)
		strlcpy(name, "outbox_retry", sizeof(name));
	else
		snprintf(name, sizeof(name), "outbox_%d", n);
	relid = get_relname_relid(name, nsp);
	if (!OidIsValid(relid))
		outbox_layout_error(psprintf("Table \"evc.%s\" does not exist; the evcollector library expects "
									 "the outbox tables of version 0.6.0.", name));
	return relid;
}

static void
outbox_check_layout(Relation rel, int n)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			natts = (n == EVC_OUTBOX_TABLES) ? RETRY_NATTS : OUTBOX_NATTS;

	if (desc->natts != natts)
		outbox_layout_error(psprintf("Table \"%s\" has %d columns; the evcollector library expects %d.",
									 RelationGetRelationName(rel), desc->natts, natts));
	for (int i = 0; i < desc->natts; i++)
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), outbox_columns[i]) != 0)
			outbox_layout_error(psprintf("Column %d of table \"%s\" is \"%s\"; the evcollector library expects \"%s\".",
										 i + 1, RelationGetRelationName(rel),
										 NameStr(TupleDescAttr(desc, i)->attname), outbox_columns[i]));
	layout[n].relid = RelationGetRelid(rel);
	layout[n].seqid = get_relname_relid("outbox_seq", RelationGetNamespace(rel));
	if (!OidIsValid(layout[n].seqid))
		outbox_layout_error("Sequence \"evc.outbox_seq\" does not exist.");
}

static Relation
outbox_open_slot(int n, LOCKMODE lockmode)
{
	Oid			relid = outbox_relid(n);
	Relation	rel = table_open(relid, lockmode);

	if (relid != layout[n].relid)
		outbox_check_layout(rel, n);
	return rel;
}

/*
 * Open outbox table n (0 .. EVC_OUTBOX_TABLES - 1) with lockmode, its
 * layout checked against OutboxColumn.  evc_send inserts through it and
 * the relay reads through it.
 */
Relation
evc_outbox_open(int n, LOCKMODE lockmode)
{
	Assert(n >= 0 && n < EVC_OUTBOX_TABLES);
	return outbox_open_slot(n, lockmode);
}

Relation
evc_outbox_retry_open(LOCKMODE lockmode)
{
	return outbox_open_slot(EVC_OUTBOX_TABLES, lockmode);
}

/* Outbox table n's oid, without a lock (the relay locks it conditionally). */
Oid
evc_outbox_table_oid(int n)
{
	return outbox_relid(n);
}

/* Is the 0.6.0 layout there?  (The relay asks, to tell an upgrade apart.) */
bool
evc_outbox_installed(void)
{
	Oid			nsp = get_namespace_oid("evc", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("outbox_ticks", nsp));
}

/*
 * Is xid visible in snap, as pg_visible_in_snapshot says: below xmin, or
 * below xmax and not among the running ones (ascending, so a binary
 * search).
 */
bool
evc_snapshot_visible(const EvcSnapshot *snap, FullTransactionId xid)
{
	int			lo = 0,
				hi = (int) snap->nxip - 1;

	if (FullTransactionIdPrecedes(xid, snap->xmin))
		return true;
	if (!FullTransactionIdPrecedes(xid, snap->xmax))
		return false;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (FullTransactionIdEquals(snap->xip[mid], xid))
			return false;
		if (FullTransactionIdPrecedes(snap->xip[mid], xid))
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return true;
}

/*
 * Does every transaction visible in earlier show as visible in later?  So
 * when later's xmax is at least earlier's, and every transaction later
 * sees running was not visible in earlier either.
 */
bool
evc_snapshot_covers(const EvcSnapshot *later, const EvcSnapshot *earlier)
{
	if (FullTransactionIdPrecedes(later->xmax, earlier->xmax))
		return false;
	for (uint32 i = 0; i < later->nxip; i++)
		if (evc_snapshot_visible(earlier, later->xip[i]))
			return false;
	return true;
}

/*
 * Which table a transaction inserts into: the one the relay published in
 * shared memory, read after this transaction's id was assigned (see
 * EvcShared.outbox_current), or, before the relay has published one and in
 * other databases, the one evc.outbox_tables says.  Asked once per
 * transaction: a transaction whose id is below the relay's switch mark may
 * keep using the old table, since that table is emptied only after every
 * such transaction has ended.
 */
static int
outbox_current_table(void)
{
	static FullTransactionId asked_for = {0};
	static int	table = 0;
	FullTransactionId fxid = GetTopFullTransactionId();
	bool		isnull;

	if (FullTransactionIdEquals(fxid, asked_for))
		return table;
	/* The id is assigned (under XidGenLock) before the value is read. */
	pg_memory_barrier();
	if (evc_shared != NULL && evc_shared->relay_database == MyDatabaseId &&
		pg_atomic_read_u32(&evc_shared->outbox_current) > 0)
		table = (int) pg_atomic_read_u32(&evc_shared->outbox_current) - 1;
	else
	{
		/* An older SQL (between make install and ALTER EXTENSION UPDATE). */
		if (!evc_outbox_installed())
			(void) outbox_relid(0);
		SPI_connect();
		if (SPI_execute("SELECT n FROM evc.outbox_tables WHERE current", true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			outbox_layout_error("Table \"evc.outbox_tables\" names no current outbox table.");
		table = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
		if (table < 0 || table >= EVC_OUTBOX_TABLES)
			outbox_layout_error("Table \"evc.outbox_tables\" names no current outbox table.");
	}
	asked_for = fxid;
	return table;
}

/*
 * A text datum for s, made once for a run of rows that share it: the rows
 * of a batch nearly all have the same topic, and all the same content
 * type.  *last and *last_datum remember the previous row's.
 */
static Datum
shared_text_datum(const char *s, const char **last, Datum *last_datum)
{
	if (*last == NULL || (*last != s && strcmp(*last, s) != 0))
	{
		*last = s;
		*last_datum = CStringGetTextDatum(s);
	}
	return *last_datum;
}

/* The text datums shared by the rows of one evc_outbox_enqueue_many. */
typedef struct OutboxTexts
{
	const char *topic;
	Datum		topic_datum;
	const char *content_type;
	Datum		content_type_datum;
} OutboxTexts;

/* Fill slot with one outbox row, its id taken from the sequence now. */
static void
outbox_fill_slot(TupleTableSlot *slot, int table, const EvcOutboxRow *row, OutboxTexts *texts)
{
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;

	ExecClearTuple(slot);
	memset(nulls, 0, sizeof(bool) * OUTBOX_NATTS);
	values[OUTBOX_ID] = Int64GetDatum(nextval_internal(layout[table].seqid, false));
	values[OUTBOX_TXID] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[OUTBOX_MESSAGE_ID] = UUIDPGetDatum(row->message_id);
	values[OUTBOX_TOPIC] = shared_text_datum(row->topic, &texts->topic, &texts->topic_datum);
	if (row->key != NULL)
	{
		bytea	   *k = palloc(VARHDRSZ + row->keylen);

		SET_VARSIZE(k, VARHDRSZ + row->keylen);
		memcpy(VARDATA(k), row->key, row->keylen);
		values[OUTBOX_KEY] = PointerGetDatum(k);
	}
	else
		nulls[OUTBOX_KEY] = true;
	values[OUTBOX_PAYLOAD] = PointerGetDatum(row->payload);
	values[OUTBOX_SCHEMA_VERSION] = Int32GetDatum(row->schema_version);
	values[OUTBOX_CONTENT_TYPE] = shared_text_datum(row->content_type, &texts->content_type,
													&texts->content_type_datum);
	values[OUTBOX_CREATED_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	ExecStoreVirtualTuple(slot);
}

/*
 * Insert rows into the current outbox table in the caller's transaction,
 * in order (their ids ascend as the rows do).  This is the hot path of
 * evc_send and of the gateway, so it inserts the heap tuples and their
 * index entries directly, as COPY does, instead of planning and running an
 * INSERT through SPI for every event; several rows go in with one
 * heap_multi_insert (one WAL record per page rather than per row) and one
 * opening of the table and its index.  The table has no rules or policies
 * (it is the extension's), and its one trigger (outbox_N_restored, 0.7.0)
 * is for rows that arrive by SQL, a restore's COPY: it sets what this
 * insert sets anyway, this transaction's id and the current table.
 */
void
evc_outbox_enqueue_many(const EvcOutboxRow *rows, int n)
{
	int			table;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot **slots;
	TupleDesc	desc;
	OutboxTexts texts = {0};
	CommandId	cid;

	if (n <= 0)
		return;
	table = outbox_current_table();
	rel = evc_outbox_open(table, RowExclusiveLock);
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	cid = GetCurrentCommandId(true);
	/*
	 * The slots share a copy of the table's descriptor that is not
	 * reference-counted: each slot made on the relcache's own would pin it
	 * in the resource owner, and with a hundred rows that bookkeeping
	 * (a hashed array) cost more than filling the slots.
	 */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	slots = palloc(sizeof(TupleTableSlot *) * n);
	for (int i = 0; i < n; i++)
	{
		slots[i] = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));
		outbox_fill_slot(slots[i], table, &rows[i], &texts);
	}

	/* Values go through toasting (compression) as in an INSERT. */
	if (n == 1)
		table_tuple_insert(rel, slots[0], cid, 0, NULL);
	else
		table_multi_insert(rel, slots, n, cid, 0, NULL);
	for (int i = 0; i < n; i++)
	{
		ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
		ResetPerTupleExprContext(estate);
	}

	for (int i = 0; i < n; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	pfree(slots);
	FreeTupleDesc(desc);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);

	evc_stats_count_sent(n);
	/* Wakes the relay at commit. */
	evc_outbox_note_insert();
}

/* Insert one row into the current outbox table: evc_outbox_enqueue_many of one. */
void
evc_outbox_enqueue(const char *topic, const char *key, int keylen,
				   bytea *payload, pg_uuid_t *message_id,
				   int32 schema_version, const char *content_type)
{
	EvcOutboxRow row;

	row.topic = topic;
	row.key = key;
	row.keylen = keylen;
	row.payload = payload;
	row.message_id = message_id;
	row.schema_version = schema_version;
	row.content_type = content_type;
	evc_outbox_enqueue_many(&row, 1);
}

/*
 * Is every transaction this snapshot sees committed covered by the last
 * delivered tick, and nothing waiting for a retry?  One row of the ticks'
 * primary key and the first of the retry table: cheap however long the
 * backlog.  Not read-only: each check takes a fresh snapshot.
 */
static bool
outbox_delivered(const EvcSnapshot *mine)
{
	bool		isnull;
	bool		done = false;

	SPI_connect();
	if (SPI_execute("SELECT t.snapshot, NOT EXISTS (SELECT FROM evc.outbox_retry) "
					"FROM evc.outbox_ticks t ORDER BY t.id DESC LIMIT 1", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.outbox_ticks");
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull &&
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
			done = evc_snapshot_covers((EvcSnapshot *) PG_DETOAST_DATUM(d), mine);
	}
	SPI_finish();
	return done;
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
 * In the relay's database, wait until a delivered tick covers mine, or the
 * deadline.  The relay broadcasts a condition variable after each tick it
 * delivers, so this sleeps until then rather than polling; while anyone
 * waits it records ticks whose batch was empty too (flush_waiters).
 * Whether the relay serves this database is read again at each wake: a
 * relay that starts after the call (a server just started or restored)
 * ends the wait as soon as it delivers, not at the deadline.  While no
 * relay serves this database only the deadline ends it.
 */
static bool
flush_wait(const EvcSnapshot *mine, TimestampTz deadline)
{
	volatile bool done = false;

	pg_atomic_fetch_add_u32(&evc_shared->flush_waiters, 1);
	PG_TRY();
	{
		uint64		seen = pg_atomic_read_u64(&evc_shared->relay_delivered_tick);
		bool		was_here = false;

		for (;;)
		{
			long		remaining;
			bool		relay_here = (evc_shared->relay_database == MyDatabaseId);
			uint64		now_tick = pg_atomic_read_u64(&evc_shared->relay_delivered_tick);

			/* Once it serves us: it may be idle, with no tick to record. */
			if (relay_here && !was_here)
				evc_wake_worker(EVC_WORKER_RELAY, NULL);
			/* A relay that just started may have delivered before we saw it. */
			if (relay_here && (now_tick != seen || !was_here))
			{
				seen = now_tick;
				if ((done = outbox_delivered(mine)))
					break;
			}
			was_here = relay_here;
			remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (remaining <= 0)
				break;
			/* Re-check at least every 100 ms in case a broadcast came early. */
			(void) ConditionVariableTimedSleep(&evc_shared->outbox_settled,
											   Min(remaining, 100), PG_WAIT_EXTENSION);
		}
		ConditionVariableCancelSleep();
	}
	PG_FINALLY();
	{
		pg_atomic_fetch_sub_u32(&evc_shared->flush_waiters, 1);
	}
	PG_END_TRY();
	return done || outbox_delivered(mine);
}

/*
 * evc_flush(timeout interval) returns bigint: wait until the relay has
 * delivered every event committed before the call, or the timeout passes;
 * return how many events are still pending.  "Delivered" means a
 * delivered tick's snapshot sees every transaction this call's snapshot
 * sees committed, and no event waits for a retry.
 */
PG_FUNCTION_INFO_V1(evc_flush);
Datum
evc_flush(PG_FUNCTION_ARGS)
{
	Interval   *timeout = PG_GETARG_INTERVAL_P(0);
	int64		timeout_ms;
	TimestampTz deadline;
	EvcSnapshot *mine;

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
	/* What this statement sees committed is what it waits for. */
	mine = (EvcSnapshot *) DatumGetPointer(OidFunctionCall0(F_PG_CURRENT_SNAPSHOT));
	if (outbox_delivered(mine) || flush_wait(mine, deadline))
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(outbox_pending());
}
