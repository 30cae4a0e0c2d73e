/*
 * relay_rotate.c
 *		The outbox tables' rotation: which table evc_send inserts into,
 *		switching to the next one once the current one is old or large
 *		enough, and emptying a retired table with TRUNCATE once that is
 *		safe.  evc.outbox_tables keeps the state across restarts; shared
 *		memory (EvcShared.outbox_current) tells the senders.
 *
 * The rule that makes TRUNCATE safe.  At a switch the relay first commits
 * the new current table, then publishes it in shared memory, then reads the
 * next transaction id (the table's retired_xid).  A sender reads the
 * current table after its own transaction id is assigned, so any
 * transaction whose id is at or above retired_xid inserts into the new
 * table; only transactions with a lower id can still write to the old one.
 * Once a delivered tick's snapshot has xmin >= retired_xid, every one of
 * them has ended (prepared transactions hold xmin too), and each committed
 * one was visible in that tick, so its rows were in delivered batches: the
 * table holds nothing left to send.  The lock for TRUNCATE is taken
 * conditionally: a reader of evc.outbox, DROP EXTENSION or DROP DATABASE
 * never waits for the relay, and the relay never waits for them; it tries
 * again later.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "core/guc.h"
#include "core/shmem.h"
#include "relay/relay_int.h"
#include "send/outbox.h"

/* Rows the relay read from each table since it became current. */
int64		evc_relay_rows_in[EVC_OUTBOX_TABLES];

typedef struct RotationState
{
	bool		loaded;
	int			current;
	TimestampTz became_current_at;
	bool		retired[EVC_OUTBOX_TABLES];	/* retired_xid is set */
	FullTransactionId retired_xid[EVC_OUTBOX_TABLES];
	bool		emptied[EVC_OUTBOX_TABLES];
} RotationState;

static RotationState rot;

/* How often the relay looks at the rotation, at most. */
#define ROTATE_CHECK_MS 250

/* Publish the current table to senders; see EvcShared.outbox_current. */
static void
publish_current(int n)
{
	pg_atomic_write_u32(&evc_shared->outbox_current, (uint32) n + 1);
	/* Before the switch mark is read: pairs with the senders' barrier. */
	pg_memory_barrier();
}

/* Mark table n retired at the next transaction id; in a transaction. */
static void
mark_retired(int n)
{
	FullTransactionId mark = ReadNextFullTransactionId();
	Oid			types[2] = {INT4OID, XID8OID};
	Datum		args[2] = {Int32GetDatum(n), FullTransactionIdGetDatum(mark)};

	if (SPI_execute_with_args("UPDATE evc.outbox_tables SET retired_xid = $2 WHERE n = $1",
							  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not mark outbox table %d retired", n);
	rot.retired[n] = true;
	rot.retired_xid[n] = mark;
}

/*
 * Read the rotation's state from evc.outbox_tables, in the caller's
 * transaction, and publish the current table.  A table left neither current
 * nor emptied without its mark (the relay stopped between a switch's two
 * steps) is marked now: later than at the switch, which only waits longer.
 */
static void
rotate_load(void)
{
	bool		isnull;

	if (SPI_execute("SELECT n, current, became_current_at, retired_xid, emptied "
					"FROM evc.outbox_tables ORDER BY n", true, 0) != SPI_OK_SELECT ||
		SPI_processed != EVC_OUTBOX_TABLES)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evc.outbox_tables does not hold one row per outbox table"),
				 errhint("Reinstall the extension.")));
	rot.current = -1;
	for (int i = 0; i < EVC_OUTBOX_TABLES; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		xid = SPI_getbinval(tup, desc, 4, &isnull);

		rot.retired[i] = !isnull;
		rot.retired_xid[i] = isnull ? InvalidFullTransactionId : DatumGetFullTransactionId(xid);
		rot.emptied[i] = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		if (DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)))
		{
			Datum		at = SPI_getbinval(tup, desc, 3, &isnull);

			rot.current = i;
			rot.became_current_at = isnull ? GetCurrentTimestamp() : DatumGetTimestampTz(at);
		}
	}
	if (rot.current < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evc.outbox_tables names no current outbox table"),
				 errhint("Set one row's \"current\" to true.")));
	publish_current(rot.current);
	for (int i = 0; i < EVC_OUTBOX_TABLES; i++)
		if (i != rot.current && !rot.emptied[i] && !rot.retired[i])
			mark_retired(i);
	memset(evc_relay_rows_in, 0, sizeof(evc_relay_rows_in));
	rot.loaded = true;
}

/* Forget the state: it is read again at the next read (after an error). */
void
evc_relay_rotate_load(void)
{
	rot.loaded = false;
}

/* The current table, for the tick being begun; in a transaction with SPI. */
int
evc_relay_current_table(void)
{
	if (!rot.loaded)
		rotate_load();
	return rot.current;
}

/* Is a retired table waiting for a delivered tick past its mark? */
bool
evc_relay_rotate_wants_tick(void)
{
	for (int i = 0; rot.loaded && i < EVC_OUTBOX_TABLES; i++)
		if (rot.retired[i] && !rot.emptied[i])
			return true;
	return false;
}

/*
 * Empty retired table n with TRUNCATE, if its lock can be had at once.
 * Returns whether it did.
 */
static bool
truncate_table(int n)
{
	bool		done = false;
	char		sql[128];

	evc_worker_xact_begin("evcollector relay: emptying an outbox table");
	if (ConditionalLockRelationOid(evc_outbox_table_oid(n), AccessExclusiveLock))
	{
		snprintf(sql, sizeof(sql), "TRUNCATE evc.outbox_%d", n);
		if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not truncate evc.outbox_%d", n);
		snprintf(sql, sizeof(sql),
				 "UPDATE evc.outbox_tables SET emptied = true, retired_xid = NULL WHERE n = %d", n);
		if (SPI_execute(sql, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not mark evc.outbox_%d emptied", n);

		/*
		 * Ticks are history once their table is gone; keep the last hour
		 * (for operators) and at least the newest, which the next batch
		 * starts from.  A few rows a rotation: autovacuum keeps up.
		 */
		if (SPI_execute("DELETE FROM evc.outbox_ticks WHERE delivered_at < now() - interval '1 hour' "
						"AND id < (SELECT max(id) FROM evc.outbox_ticks)", false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not prune evc.outbox_ticks");
		done = true;
	}
	else
		ereport(DEBUG1,
				(errmsg("evcollector relay: evc.outbox_%d is in use; it is emptied later", n)));
	evc_worker_xact_end();
	if (done)
	{
		rot.emptied[n] = true;
		rot.retired[n] = false;
		evc_relay_rows_in[n] = 0;
	}
	return done;
}

/*
 * Switch inserts to the next table: commit it as current, publish it, then
 * mark the old one retired at the next transaction id (see the top of the
 * file for why in this order).
 */
static void
switch_table(void)
{
	int			old = rot.current;
	int			next = (old + 1) % EVC_OUTBOX_TABLES;
	char		sql[256];

	evc_worker_xact_begin("evcollector relay: switching outbox tables");
	snprintf(sql, sizeof(sql),
			 "UPDATE evc.outbox_tables SET current = (n = %d), "
			 "became_current_at = CASE WHEN n = %d THEN now() ELSE became_current_at END, "
			 "emptied = emptied AND n <> %d", next, next, next);
	if (SPI_execute(sql, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not switch outbox tables");
	evc_worker_xact_end();

	rot.current = next;
	rot.became_current_at = GetCurrentTimestamp();
	rot.emptied[next] = false;
	evc_relay_rows_in[next] = 0;
	publish_current(next);

	evc_worker_xact_begin("evcollector relay: switching outbox tables");
	mark_retired(old);
	evc_worker_xact_end();
}

/*
 * Between batches: empty the retired tables the last delivered tick has
 * passed, and switch tables once the current one is old or large enough
 * and the next one is empty.  Outside any transaction.
 */
void
evc_relay_rotate(long *next_due_ms)
{
	static TimestampTz checked_at = 0;
	TimestampTz now = GetCurrentTimestamp();
	const EvcSnapshot *delivered;
	int			next;
	long		again;

	if (!rot.loaded)
		return;
	if (now - checked_at >= ROTATE_CHECK_MS * 1000)
	{
		checked_at = now;
		evc_worker_xact_begin("evcollector relay: reading the last delivered tick");
		delivered = evc_relay_delivered_snapshot();
		evc_worker_xact_end();
		for (int i = 0; i < EVC_OUTBOX_TABLES; i++)
		{
			if (i == rot.current || !rot.retired[i] || rot.emptied[i])
				continue;
			if (!FullTransactionIdPrecedes(delivered->xmin, rot.retired_xid[i]))
				(void) truncate_table(i);
		}
		next = (rot.current + 1) % EVC_OUTBOX_TABLES;
		if (rot.emptied[next] && evc_relay_rows_in[rot.current] > 0 &&
			(evc_relay_rows_in[rot.current] >= evc_outbox_rotate_rows ||
			 now - rot.became_current_at >= (int64) evc_outbox_rotate_interval_ms * 1000))
			switch_table();
	}

	/*
	 * Come back while a retired table waits to be emptied (each read then
	 * records a tick, which moves xmin on) or the current one has rows and
	 * will be due for a switch: nothing else may wake the relay.
	 */
	if (evc_relay_rotate_wants_tick())
		again = Max(ROTATE_CHECK_MS - TimestampDifferenceMilliseconds(checked_at, now), 1);
	else if (evc_relay_rows_in[rot.current] > 0)
		again = Max(TimestampDifferenceMilliseconds(now, TimestampTzPlusMilliseconds(rot.became_current_at,
																					 evc_outbox_rotate_interval_ms)),
					ROTATE_CHECK_MS);
	else
		return;
	*next_due_ms = (*next_due_ms < 0) ? again : Min(*next_due_ms, again);
}
