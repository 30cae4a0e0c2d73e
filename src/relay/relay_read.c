/*
 * relay_read.c
 *		Reading evc.outbox: which rows are due, where a read starts, and
 *		turning each row into a message for the producer thread as it is
 *		read.
 *
 * Rows are read as "every visible row that is due", never only "rows after
 * the last id seen": transactions commit out of order, and a cursor on id
 * would skip a row whose transaction committed after a later one's.  Reads
 * start after the last one, and go back as far as commits say they must
 * (see read_start).  A row of the batch still in flight is never read
 * twice.  The primary key is scanned directly, not through SPI: the relay
 * reads every event once, and the executor's per-row work was most of its
 * cost.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/shmem.h"
#include "kafka/proto.h"
#include "relay/handoff_int.h"
#include "relay/relay_int.h"
#include "send/outbox.h"

/* Rows are posted to the producer thread this many at a time. */
#define HANDOFF_EVERY 256

/*
 * Where reads start (see evc_relay_read).  Every row with an id at or below
 * read_floor has been delivered, or is in flight, or is in backoff (and
 * then at or above backoff_low), or committed late (and then at or above
 * the shared outbox_late_low).  0: read from the lowest id.
 */
static int64 read_floor = 0;
static int64 backoff_low = PG_INT64_MAX;	/* lowest id known in backoff */
static TimestampTz backoff_due = DT_NOEND;	/* the earliest next attempt among them */
static TimestampTz last_full_read = 0;
/* Once a prepared transaction sent events (see EvcShared.outbox_untracked): */
static int	reads_since_full = 0;
static bool full_read_next = false;

/*
 * A read from the lowest id this often all the same, for rows no commit
 * told the relay about: rows inserted by hand.  And every READ_FULL_EVERY
 * batches once prepared transactions have sent events (outbox_untracked).
 */
#define READ_FULL_MS (60 * 1000)
#define READ_FULL_EVERY 32

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
 * A bytea column's bytes, copied into the current (the batch's) memory.
 * With processed_at, an event's, copied with that field set in its context
 * (see evc_event_set_processed_at).
 */
static char *
copy_bytes(Datum d, const char *processed_at, int32 *len, int32 *orig_len)
{
	bytea	   *b = DatumGetByteaPP(d);
	int32		blen = VARSIZE_ANY_EXHDR(b);
	char	   *copy = palloc(blen + (processed_at ? EVC_PROCESSED_AT_MAX : 0));

	*orig_len = *len = blen;
	if (processed_at)
		*len = evc_event_set_processed_at((const uint8 *) VARDATA_ANY(b), blen, processed_at,
										  (uint8 *) copy, blen + EVC_PROCESSED_AT_MAX);
	else
		memcpy(copy, VARDATA_ANY(b), blen);
	/* A large payload is stored toasted: its detoasted copy goes at once. */
	if ((Pointer) b != DatumGetPointer(d))
		pfree(b);
	return copy;
}

/*
 * Make the row in slot message number batch->n of this batch, for the
 * producer thread to produce once it is posted.
 */
static void
add_slot(RelayBatch *batch, TupleTableSlot *slot, const char *processed_at)
{
	static const char *content_type = NULL;
	static bool is_event = false;
	RelayMsg   *prev = batch->n > 0 ? &batch->msgs[batch->n - 1] : NULL;
	RelayMsg   *msg;
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;
	const char *ct;

	Assert(batch->n < batch->cap);
	msg = &batch->msgs[batch->n];
	memset(msg, 0, sizeof(RelayMsg));
	batch->n++;
	msg->id = DatumGetInt64(values[OUTBOX_ID]);
	msg->tid = slot->tts_tid;
	msg->topic = same_or_new_cstring(values[OUTBOX_TOPIC], prev ? prev->topic : NULL);
	msg->rkt = (prev && prev->topic == msg->topic) ? prev->rkt : evc_relay_topic_handle(msg->topic);
	msg->created_at = DatumGetTimestampTz(values[OUTBOX_CREATED_AT]);
	uuid_format(DatumGetUUIDP(values[OUTBOX_MESSAGE_ID]), msg->message_id);

	/* The content type is kept across batches: it rarely changes. */
	ct = same_or_new_cstring(values[OUTBOX_CONTENT_TYPE], content_type);
	if (ct != content_type)
	{
		content_type = MemoryContextStrdup(TopMemoryContext, ct);
		is_event = strcmp(content_type, EVC_CONTENT_TYPE_EVENT) == 0;
	}
	msg->content_type = content_type;
	msg->schema_version = DatumGetInt32(values[OUTBOX_SCHEMA_VERSION]);
	if (!nulls[OUTBOX_KEY])
	{
		int32		unused;

		msg->key = copy_bytes(values[OUTBOX_KEY], NULL, &msg->key_len, &unused);
	}
	msg->value = copy_bytes(values[OUTBOX_PAYLOAD], is_event ? processed_at : NULL,
							&msg->value_len, &msg->payload_len);
	msg->produce_err = RD_KAFKA_RESP_ERR__STATE;	/* not produced yet */
}

/* Is id one of the batch's rows?  They are in id order. */
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

/*
 * The scan itself: take due rows into the batch and post them to the
 * producer thread as they come.  Returns the highest id it saw.
 */
static int64
scan_rows(IndexScanDesc scan, TupleTableSlot *slot, int limit, int64 floor,
		  RelayBatch *batch, RelayBatch *inflight, TimestampTz now, const char *processed_at)
{
	int64		highest = floor;

	while (batch->n < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		int64		id;

		slot_getallattrs(slot);
		id = DatumGetInt64(slot->tts_values[OUTBOX_ID]);
		highest = id;
		/* A row in backoff waits for its next attempt; remember it. */
		if (!slot->tts_isnull[OUTBOX_NEXT_ATTEMPT_AT])
		{
			TimestampTz next = DatumGetTimestampTz(slot->tts_values[OUTBOX_NEXT_ATTEMPT_AT]);

			if (next > now)
			{
				evc_relay_note_backoff(id, next);
				continue;
			}
		}
		/* A row of the batch still in flight is not sent twice. */
		if (inflight && in_batch(inflight, id))
			continue;
		add_slot(batch, slot, processed_at);
		if (batch->n % HANDOFF_EVERY == 0)
			evc_handoff_post(batch->n);
	}
	evc_handoff_post(batch->n);
	evc_relay_await_handoff();
	return highest;
}

/*
 * Read up to limit due rows in id order, starting after floor, producing
 * each as it is read, and return the highest id the scan saw.  The primary
 * key is scanned directly rather than through SPI: the relay reads every
 * event once, and the executor's per-row work (and a copy of the whole
 * batch) was most of its cost.
 */
static int64
read_and_produce(int limit, int64 floor, RelayBatch *batch, RelayBatch *inflight)
{
	volatile int64 highest = floor;
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

	/*
	 * The array never moves while the batch is in flight: the producer
	 * thread reads it and writes delivery reports into it.
	 */
	batch->cap = limit;
	batch->msgs = palloc_extended(sizeof(RelayMsg) * limit, MCXT_ALLOC_HUGE);

	pgstat_report_activity(STATE_RUNNING, "evcollector relay: producing");
	evc_handoff_begin(batch);
	PG_TRY();
	{
		highest = scan_rows(scan, slot, limit, floor, batch, inflight, now, processed_at);
	}
	PG_CATCH();
	{
		/* The thread must let go of the batch before its memory goes. */
		evc_handoff_cancel();
		PG_RE_THROW();
	}
	PG_END_TRY();
	evc_relay_count_produced(batch);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pk, AccessShareLock);
	table_close(rel, AccessShareLock);
	MemoryContextSwitchTo(old);
	return highest;
}

/*
 * Where the next read starts.  Normally after read_floor, so a backlog is
 * read once, without walking the index entries of the rows already sent
 * and deleted (which stay until vacuum, and longer while any snapshot is
 * older than their deletion).  Lower when the relay knows of rows below
 * it: a transaction that committed late with lower ids (transactions
 * commit out of order), or rows in backoff that are due.  From the lowest
 * id after an error, at start, and now and then (READ_FULL_MS).
 */
static int64
read_start(TimestampTz now)
{
	uint64		late;
	int64		start = read_floor;

	/* Taken before the read's snapshot: a later commit is seen next time. */
	late = pg_atomic_exchange_u64(&evc_shared->outbox_late_low, PG_UINT64_MAX);

	if (now - last_full_read >= (int64) READ_FULL_MS * 1000)
		start = 0;
	else if (pg_atomic_read_u32(&evc_shared->outbox_untracked) != 0)
	{
		/* As often as every READ_FULL_EVERY batches, and on catching up. */
		if (++reads_since_full >= READ_FULL_EVERY || full_read_next)
			start = 0;
	}
	full_read_next = false;
	if (late != PG_UINT64_MAX && (int64) late <= start)
		start = (int64) late - 1;
	if (backoff_due <= now && backoff_low <= start)
		start = backoff_low - 1;
	start = Max(start, 0);

	/* The read sees every row in backoff from start on: it counts them anew. */
	if (start < backoff_low)
	{
		backoff_low = PG_INT64_MAX;
		backoff_due = DT_NOEND;
	}
	if (start == 0)
	{
		last_full_read = now;
		reads_since_full = 0;
	}
	return start;
}

/*
 * Before a read from the lowest id: if no transaction is prepared any more,
 * none is left whose commit the relay would not hear of, and reads need not
 * go back to the lowest id regularly.  The flag is cleared first, so a
 * PREPARE that comes after the count sets it again (the prepared
 * transaction is listed before its callback sets the flag).
 */
static void
recheck_untracked(void)
{
	bool		isnull;
	int64		prepared;
	int			rc;

	pg_atomic_write_u32(&evc_shared->outbox_untracked, 0);
	pg_memory_barrier();
	evc_worker_xact_begin("evcollector relay: counting prepared transactions");
	rc = SPI_execute("SELECT count(*) FROM pg_catalog.pg_prepared_xacts", true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not count prepared transactions: %s", SPI_result_code_string(rc));
	prepared = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	evc_worker_xact_end();
	if (prepared > 0)
		pg_atomic_write_u32(&evc_shared->outbox_untracked, 1);
}

/*
 * Read up to limit due rows and produce them (see read_and_produce).
 * *next_due_ms says when the earliest row in backoff becomes due (-1: none).
 * Returns false when the extension is gone.
 */
bool
evc_relay_read(int limit, RelayBatch *batch, RelayBatch *inflight, long *next_due_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		start;
	int64		highest;
	uint64		readno;

	/* Logs and errors wait for no idle moment: a backlog may have none. */
	evc_relay_service();

	/* Numbered before its snapshot is taken; see EvcShared.relay_reads. */
	readno = pg_atomic_add_fetch_u64(&evc_shared->relay_reads, 1);
	start = read_start(now);
	if (start == 0 && pg_atomic_read_u32(&evc_shared->outbox_untracked) != 0)
		recheck_untracked();
	evc_worker_xact_begin("evcollector relay: reading outbox");
	if (!OidIsValid(get_extension_oid("evcollector", true)))
	{
		evc_worker_xact_end();
		return false;
	}
	evc_relay_producer_ensure();
	highest = read_and_produce(limit, start, batch, inflight);
	evc_worker_xact_end();

	/*
	 * A full batch ends at its last row; a short one read to the end of the
	 * index, so every row up to the highest it saw is accounted for.
	 */
	read_floor = (batch->n == limit) ? batch->msgs[limit - 1].id : highest;

	/* Read again until a read finds nothing: that one tells evc_flush. */
	if (batch->n > 0 || inflight != NULL)
		evc_relay_work_signalled = true;
	/* With untracked commits about, catching up calls for a full read. */
	if (start > 0 && batch->n < limit && pg_atomic_read_u32(&evc_shared->outbox_untracked) != 0)
		full_read_next = evc_relay_work_signalled = true;

	*next_due_ms = -1;
	if (backoff_low != PG_INT64_MAX)
		*next_due_ms = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), backoff_due), 1);
	else if (batch->n == 0 && inflight == NULL)
	{
		/*
		 * Nothing due, nothing in flight, nothing in backoff, and every row
		 * below the start accounted for: the outbox is empty.  Tell
		 * evc_flush.  (Once prepared transactions sent events, only a read
		 * from the lowest id can tell.)
		 */
		if (start == 0 || pg_atomic_read_u32(&evc_shared->outbox_untracked) == 0)
		{
			pg_atomic_write_u64(&evc_shared->relay_empty_read, readno);
			ConditionVariableBroadcast(&evc_shared->outbox_settled);
		}
	}
	return true;
}

/*
 * A row is in backoff until due: a read must go back to it then (see
 * read_start).  Reads note the rows they pass over; settles the rows whose
 * retry they schedule.
 */
void
evc_relay_note_backoff(int64 id, TimestampTz due)
{
	backoff_low = Min(backoff_low, id);
	backoff_due = Min(backoff_due, due);
}

/*
 * After the batches in flight were abandoned: their rows are below the
 * floor, and nothing accounts for them now, so the next read starts from
 * the lowest id.
 */
void
evc_relay_read_from_lowest(void)
{
	read_floor = 0;
}
