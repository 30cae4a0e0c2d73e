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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "outbox.h"
#include "shmem.h"
#include "stats.h"

pg_uuid_t *
evc_new_uuid(void)
{
	return DatumGetUUIDP(DirectFunctionCall1(gen_random_uuid, (Datum) 0));
}

void
evc_outbox_enqueue(const char *topic, const char *key, int keylen,
				   bytea *payload, pg_uuid_t *message_id,
				   int32 schema_version, const char *content_type)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[6] = {TEXTOID, BYTEAOID, BYTEAOID, UUIDOID, INT4OID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "      ";

	values[0] = CStringGetTextDatum(topic);
	if (key != NULL)
	{
		bytea	   *k = palloc(VARHDRSZ + keylen);

		SET_VARSIZE(k, VARHDRSZ + keylen);
		memcpy(VARDATA(k), key, keylen);
		values[1] = PointerGetDatum(k);
	}
	else
		nulls[1] = 'n';
	values[2] = PointerGetDatum(payload);
	values[3] = UUIDPGetDatum(message_id);
	values[4] = Int32GetDatum(schema_version);
	values[5] = CStringGetTextDatum(content_type);

	SPI_connect();
	if (plan == NULL)
	{
		plan = SPI_prepare("INSERT INTO evc.outbox (topic, key, payload, message_id, schema_version, content_type)"
						   " VALUES ($1, $2, $3, $4, $5, $6)", 6, types);
		if (plan == NULL)
			elog(ERROR, "could not prepare outbox insert: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into evc.outbox");
	SPI_finish();

	evc_stats_count_sent(1);
	evc_wake_at_commit(EVC_WORKER_RELAY);
}

static int64
outbox_pending(void)
{
	int64		n;
	bool		isnull;

	SPI_connect();
	/* Not read-only: each count takes a fresh snapshot (READ COMMITTED). */
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
	int64		pending;

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
	for (;;)
	{
		long		remaining;

		pending = outbox_pending();
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (pending == 0 || remaining <= 0)
			break;
		/* Re-check at least every 100 ms in case a broadcast came early. */
		(void) ConditionVariableTimedSleep(&evc_shared->outbox_settled,
										   Min(remaining, 100), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_INT64(pending);
}
