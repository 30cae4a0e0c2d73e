/*
 * relay_read.c
 *		Reading the outbox: cutting a tick's batch out of the three outbox
 *		tables by snapshot, in chunks of evcollector.relay_batch_size, reading the
 *		rows due for a retry, and turning each row into a message for the
 *		producer thread as it is read.
 *
 * A tick's batch is every row whose transaction is visible in the tick's
 * snapshot and not in the previous tick's (as pg_visible_in_snapshot
 * says).  Those transactions are the ones that were running at the
 * previous tick (its xip) and have committed since, and the ones with an id
 * from the previous tick's xmax up to this tick's xmax that are visible
 * now.  So each table's (txid, id) index is read at each of the first
 * (one id each) and over the one range of the second, as PgQ's batch SQL
 * does: a long transaction, which holds xmin back, costs one lookup, not a
 * walk over every row since it began.  Out-of-order commits and
 * COMMIT PREPARED from any session need nothing more: a transaction's rows
 * show up in the first batch whose snapshot sees it committed.
 *
 * The index is read directly, not through SPI: the relay reads every event
 * once, and the executor's per-row work was most of its cost.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "core/shmem.h"
#include "kafka/proto.h"
#include "relay/handoff_int.h"
#include "relay/relay_int.h"
#include "send/outbox.h"

/* Rows are posted to the producer thread this many at a time. */
#define HANDOFF_EVERY 256

/* A chunk's most bytes of keys and values: see chunk_full. */
#define RELAY_CHUNK_MAX_BYTES ((Size) 64 * 1024 * 1024)

/*
 * One txid interval [lo, hi) of a tick's batch.  The intervals are in
 * ascending order: the previous tick's running transactions that have
 * committed since (one id each), then [prev xmax, cur xmax).
 */
typedef struct TxidRange
{
	FullTransactionId lo;
	FullTransactionId hi;
} TxidRange;

/*
 * The tick being read: its snapshot and the previous one, and where the
 * next chunk starts (table, interval, and the last row read in it).
 * Kept across chunks, in TopMemoryContext.  Tables are read oldest first
 * in rotation order, so that events of the same key mostly keep their
 * order across a switch.
 */
typedef struct TickReader
{
	bool		active;
	EvcSnapshot *prev;			/* NULL: take the last delivered tick's */
	EvcSnapshot *cur;
	TimestampTz taken_at;
	XLogRecPtr	wal_at;			/* WAL insert position once cur was taken */
	TimeLineID	wal_tli;		/* and its timeline */
	Oid			ticks_relid;	/* evc.outbox_ticks, which the tick's id belongs to */
	TxidRange  *ranges;
	int			nranges;
	int			order[EVC_OUTBOX_TABLES];
	int			table;			/* index into order */
	int			range;
	bool		resume;			/* within range: after (last_txid, last_id) */
	FullTransactionId last_txid;
	int64		last_id;
	int64		events;
	bool		left_out;		/* a dead-lettered row of the tick was skipped */
} TickReader;

static TickReader reader;

/* The last txid in_tick was asked about, and its answer. */
static FullTransactionId asked_txid;
static bool asked_answer = false;

/* When the earliest row of evc.outbox_retry is due (0: read it to know). */
static TimestampTz retry_due = 0;

/*
 * Exactly once: what the tick being sent again leaves out or sends alone,
 * by message_id.  A failed message aborts its tick's transaction, and the
 * tick is sent again whole (relay_settle.c): without the events that went
 * to evc.dead_letters ("dead"), and with each event the brokers refused as
 * too large together with others sent alone ("suspect").  Forgotten once
 * a tick is recorded; after an error or a restart the dead ones are read
 * again from evc.dead_letters.
 */
typedef struct TickNote
{
	char		message_id[UUID_LEN * 2 + 5];
	bool		dead;
} TickNote;
static HTAB *tick_notes = NULL;
static bool tick_notes_loaded = false;

static TickNote *
tick_note(const char *message_id, bool create)
{
	bool		found;

	if (tick_notes == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = UUID_LEN * 2 + 5;
		ctl.entrysize = sizeof(TickNote);
		ctl.hcxt = TopMemoryContext;
		tick_notes = hash_create("evcollector relay tick notes", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	return hash_search(tick_notes, message_id, create ? HASH_ENTER : HASH_FIND, &found);
}

void
evc_relay_note_dead(const char *message_id)
{
	tick_note(message_id, true)->dead = true;
}

void
evc_relay_note_suspect(const char *message_id)
{
	TickNote   *note = tick_note(message_id, true);

	note->dead = false;
}

void
evc_relay_forget_tick_notes(void)
{
	if (tick_notes)
		hash_destroy(tick_notes);
	tick_notes = NULL;
}

/*
 * Before a read, in its transaction: the relay's dead letters made since
 * the last delivered tick was taken, which the tick being read leaves out.
 * Cheap: evc.dead_letters is indexed, and holds few rows of the relay.
 */
void
evc_relay_load_tick_notes(void)
{
	if (tick_notes_loaded || !evc_relay_transactional())
		return;
	tick_notes_loaded = true;
	if (SPI_execute("SELECT d.message_id::text FROM evc.dead_letters d "
					"WHERE d.source = 'relay' AND d.message_id IS NOT NULL AND d.created_at >= "
					"  (SELECT t.created_at FROM evc.outbox_ticks t ORDER BY t.id DESC LIMIT 1)",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the relay's dead letters");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *mid = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (mid && strlen(mid) == UUID_LEN * 2 + 4)
			evc_relay_note_dead(mid);
	}
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
 * Whether a chunk is as large as it may be: evcollector.relay_batch_size
 * events, or RELAY_CHUNK_MAX_BYTES of keys and values.  The bytes bound
 * keeps a backlog of large events (up to evcollector.max_event_size each)
 * from holding two chunks of thousands of megabytes in memory.
 */
static bool
chunk_full(RelayBatch *batch, int limit)
{
	if (batch->n >= limit || batch->bytes >= RELAY_CHUNK_MAX_BYTES)
		batch->full = true;
	return batch->full;
}

/*
 * Make the row in slot message number batch->n of this batch, for the
 * producer thread to produce once it is posted.
 */
static bool
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
	msg->txid = DatumGetFullTransactionId(values[OUTBOX_TXID]);
	msg->topic = same_or_new_cstring(values[OUTBOX_TOPIC], prev ? prev->topic : NULL);
	msg->rkt = (prev && prev->topic == msg->topic) ? prev->rkt : evc_relay_topic_handle(msg->topic);
	msg->created_at = DatumGetTimestampTz(values[OUTBOX_CREATED_AT]);
	uuid_format(DatumGetUUIDP(values[OUTBOX_MESSAGE_ID]), msg->message_id);
	if (tick_notes != NULL)
	{
		TickNote   *note = tick_note(msg->message_id, false);

		if (note && note->dead)
		{
			batch->n--;			/* dead-lettered while its tick was sent before */
			return false;
		}
		msg->alone = (note != NULL);
	}

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
	batch->bytes += msg->key_len + msg->value_len;
	return true;
}


static EvcSnapshot *
copy_snapshot(const EvcSnapshot *snap)
{
	EvcSnapshot *copy = MemoryContextAlloc(TopMemoryContext, VARSIZE(snap));

	memcpy(copy, snap, VARSIZE(snap));
	return copy;
}

/*
 * Where the WAL ends as a tick's snapshot is taken: every transaction the
 * snapshot sees completed has its WAL before this.  At the start of a page
 * the insert position points past the page's header, which is written only
 * with the next record; XLogFlush to there fails ("xlog flush request ...
 * is not satisfied") until some other backend writes WAL, and the relay
 * commits fast enough to get there first.  The WAL before it ends at the
 * page boundary.
 */
static XLogRecPtr
tick_wal_end(void)
{
	XLogRecPtr	at = GetXLogInsertRecPtr();

	/* A segment's first page has the long header, the others the short. */
	if (XLogSegmentOffset(at, wal_segment_size) == SizeOfXLogLongPHD)
		at -= SizeOfXLogLongPHD;
	else if (at % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		at -= SizeOfXLogShortPHD;
	return at;
}

/*
 * Begin a tick: its snapshot is the read transaction's own (what
 * pg_current_snapshot returns), so every row it counts is visible to the
 * scans that follow.
 */
static void
tick_begin(void)
{
	const EvcSnapshot *prev = reader.prev ? reader.prev : evc_relay_delivered_snapshot();
	EvcSnapshot *cur;
	int			current = evc_relay_current_table();
	int			n = 0;

	cur = (EvcSnapshot *) DatumGetPointer(OidFunctionCall0(F_PG_CURRENT_SNAPSHOT));
	if (reader.prev == NULL)
		reader.prev = copy_snapshot(prev);
	if (reader.cur)
		pfree(reader.cur);
	if (reader.ranges)
		pfree(reader.ranges);
	reader.cur = copy_snapshot(cur);
	reader.ranges = MemoryContextAlloc(TopMemoryContext, sizeof(TxidRange) * (reader.prev->nxip + 1));
	for (uint32 i = 0; i < reader.prev->nxip; i++)
	{
		FullTransactionId x = reader.prev->xip[i];

		if (!evc_snapshot_visible(reader.cur, x))
			continue;
		reader.ranges[n].lo = x;
		reader.ranges[n].hi = FullTransactionIdFromU64(U64FromFullTransactionId(x) + 1);
		n++;
	}
	if (FullTransactionIdPrecedes(reader.prev->xmax, reader.cur->xmax))
	{
		reader.ranges[n].lo = reader.prev->xmax;
		reader.ranges[n].hi = reader.cur->xmax;
		n++;
	}
	reader.nranges = n;
	for (int i = 0; i < EVC_OUTBOX_TABLES; i++)
		reader.order[i] = (current + 1 + i) % EVC_OUTBOX_TABLES;
	reader.table = reader.range = 0;
	reader.resume = false;
	reader.events = 0;
	reader.left_out = false;
	reader.taken_at = GetCurrentTimestamp();
	reader.wal_at = tick_wal_end();
	reader.wal_tli = GetWALInsertionTimeLine();
	/*
	 * Tick ids count up within one evc.outbox_ticks; the progress record
	 * names the table, so that a record of a dropped install is not taken
	 * for this one's (relay_txn.c).
	 */
	reader.ticks_relid = get_relname_relid("outbox_ticks", get_namespace_oid("evc", false));
	asked_txid = InvalidFullTransactionId;
	reader.active = true;
}

/*
 * Is the row's transaction in this tick's batch?  Consecutive rows mostly
 * share one, so the answer is kept for the last txid asked (forgotten at
 * each tick_begin).
 */
static bool
in_tick(FullTransactionId txid)
{
	if (!FullTransactionIdEquals(txid, asked_txid))
	{
		asked_txid = txid;
		asked_answer = evc_snapshot_visible(reader.cur, txid) &&
			!evc_snapshot_visible(reader.prev, txid);
	}
	return asked_answer;
}

/*
 * Scan one table's (txid, id) index over [lo, hi), or, when resuming, the
 * rest of the last txid read (ids after last_id), and add the rows of this
 * tick's batch.  Returns false when the batch filled up first.
 */
static bool
scan_interval(Relation rel, Relation idx, TupleTableSlot *slot, int limit,
			  RelayBatch *batch, const char *processed_at, int table_no, bool resume_part)
{
	TxidRange  *r = &reader.ranges[reader.range];
	ScanKeyData keys[2];
	IndexScanDesc scan;
	bool		finished = true;

	if (resume_part)
	{
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_XID8EQ,
					FullTransactionIdGetDatum(reader.last_txid));
		ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(reader.last_id));
	}
	else
	{
		FullTransactionId lo = r->lo;

		ScanKeyInit(&keys[0], 1, reader.resume ? BTGreaterStrategyNumber : BTGreaterEqualStrategyNumber,
					reader.resume ? F_XID8GT : F_XID8GE,
					FullTransactionIdGetDatum(reader.resume ? reader.last_txid : lo));
		ScanKeyInit(&keys[1], 1, BTLessStrategyNumber, F_XID8LT, FullTransactionIdGetDatum(r->hi));
	}
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		FullTransactionId txid;

		slot_getallattrs(slot);
		txid = DatumGetFullTransactionId(slot->tts_values[OUTBOX_TXID]);
		if (!in_tick(txid))
			continue;
		reader.last_txid = txid;
		reader.last_id = DatumGetInt64(slot->tts_values[OUTBOX_ID]);
		if (!add_slot(batch, slot, processed_at))
		{
			reader.left_out = true;
			continue;
		}
		reader.events++;
		evc_relay_rows_in[table_no]++;
		if (batch->n % HANDOFF_EVERY == 0)
			evc_handoff_post(batch->n);
		if (chunk_full(batch, limit))
		{
			finished = false;
			break;
		}
	}
	index_endscan(scan);
	return finished;
}

/*
 * Read the next chunk of the tick into batch, from where the last chunk
 * stopped.  Returns true once the tick is read to its end.
 */
static bool
read_tick_chunk(int limit, RelayBatch *batch, const char *processed_at)
{
	while (reader.table < EVC_OUTBOX_TABLES)
	{
		int			table_no = reader.order[reader.table];
		Relation	rel = evc_outbox_open(table_no, AccessShareLock);
		Relation	idx = index_open(linitial_oid(RelationGetIndexList(rel)), AccessShareLock);
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		bool		full = false;

		while (reader.range < reader.nranges && !full)
		{
			if (reader.resume && !scan_interval(rel, idx, slot, limit, batch, processed_at, table_no, true))
				full = true;
			else if (!scan_interval(rel, idx, slot, limit, batch, processed_at, table_no, false))
				full = true;
			if (full)
				reader.resume = true;
			else
			{
				reader.range++;
				reader.resume = false;
			}
		}
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, AccessShareLock);
		table_close(rel, AccessShareLock);
		if (full)
			return false;
		reader.table++;
		reader.range = 0;
	}
	return true;
}

/*
 * Read the rows of evc.outbox_retry that are due, up to limit.  The table
 * holds only what Kafka refused for now, so it is small: a heap scan.
 */
static void
read_retry(int limit, RelayBatch *batch, const char *processed_at, TimestampTz now)
{
	Relation	rel = evc_outbox_retry_open(AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	TimestampTz next = DT_NOEND;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		TimestampTz due;

		slot_getallattrs(slot);
		due = DatumGetTimestampTz(slot->tts_values[RETRY_NEXT_ATTEMPT_AT]);
		if (due > now || chunk_full(batch, limit))
		{
			next = Min(next, due > now ? due : now);
			continue;
		}
		if (!add_slot(batch, slot, processed_at))
			continue;
		/*
		 * Refused as too large beside others: sent alone this time, so
		 * that a refusal proves it (relay_settle.c).
		 */
		if (!slot->tts_isnull[RETRY_LAST_ERROR] &&
			(strncmp(TextDatumGetCString(slot->tts_values[RETRY_LAST_ERROR]), "MSG_SIZE_TOO_LARGE", 18) == 0 ||
			 strncmp(TextDatumGetCString(slot->tts_values[RETRY_LAST_ERROR]), "RECORD_LIST_TOO_LARGE", 21) == 0))
			batch->msgs[batch->n - 1].alone = true;
		if (batch->n % HANDOFF_EVERY == 0)
			evc_handoff_post(batch->n);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	retry_due = next;
}

/*
 * Read one batch and produce each row as it is read: the rows due for a
 * retry when there are any and no retry batch is in flight, else the next
 * chunk of the tick (a new tick once the last is read to its end).
 */
static void
read_and_produce(int limit, RelayBatch *batch, RelayBatch *inflight)
{
	MemoryContext old = MemoryContextSwitchTo(batch->cxt);
	TimestampTz now = GetCurrentTimestamp();
	char	   *processed_at = evc_format_timestamp(now);

	/*
	 * The array never moves while the batch is in flight: the producer
	 * thread reads it and writes delivery reports into it.
	 */
	batch->cap = limit;
	batch->msgs = palloc_extended(sizeof(RelayMsg) * limit, MCXT_ALLOC_HUGE);
	batch->from_retry = retry_due <= now && !(inflight && inflight->from_retry);
	/* Exactly once: a retry batch is a transaction of its own. */
	if (evc_relay_transactional() && (inflight || reader.active))
		batch->from_retry = false;

	pgstat_report_activity(STATE_RUNNING, "evcollector relay: producing");
	evc_handoff_begin(batch);
	PG_TRY();
	{
		if (batch->from_retry)
			read_retry(limit, batch, processed_at, now);
		else
		{
			if (!reader.active)
			{
				tick_begin();
				/* In case it ran SPI, which leaves its own context current. */
				MemoryContextSwitchTo(batch->cxt);
			}
			if (read_tick_chunk(limit, batch, processed_at))
			{
				/* The tick is read to its end: this chunk carries it. */
				batch->tick_last = true;
				batch->tick_snapshot = MemoryContextAlloc(batch->cxt, VARSIZE(reader.cur));
				memcpy(batch->tick_snapshot, reader.cur, VARSIZE(reader.cur));
				batch->tick_events = reader.events;
				batch->tick_left_out = reader.left_out;
				batch->tick_taken_at = reader.taken_at;
				batch->tick_wal_at = reader.wal_at;
				batch->tick_wal_tli = reader.wal_tli;
				batch->tick_ticks_relid = reader.ticks_relid;
				/* The next tick starts where this one ends, delivered or not. */
				pfree(reader.prev);
				reader.prev = reader.cur;
				reader.cur = NULL;
				reader.active = false;
			}
		}
		evc_handoff_post(batch->n);
		evc_relay_await_handoff();
	}
	PG_CATCH();
	{
		/* The thread must let go of the batch before its memory goes. */
		evc_handoff_cancel();
		PG_RE_THROW();
	}
	PG_END_TRY();
	evc_relay_count_produced(batch);
	MemoryContextSwitchTo(old);
}

/*
 * Read one batch and produce it (see read_and_produce).  *next_due_ms says
 * when the earliest row waiting for a retry is due (-1: none known).
 * Returns false when the extension is gone.
 */
bool
evc_relay_read(int limit, RelayBatch *batch, RelayBatch *inflight, long *next_due_ms)
{
	static Oid	extension_oid = InvalidOid;
	Oid			ext;

	/* Logs and errors wait for no idle moment: a backlog may have none. */
	evc_relay_service();

	evc_worker_xact_begin("evcollector relay: reading outbox");
	ext = get_extension_oid("evcollector", true);
	if (!OidIsValid(ext))
	{
		evc_worker_xact_end();
		return false;
	}
	/* Dropped and created again meanwhile: its ticks and tables are new. */
	if (OidIsValid(extension_oid) && ext != extension_oid)
	{
		extension_oid = ext;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the evcollector extension was created again"),
				 errdetail("The relay starts over from the new extension's outbox tables and ticks.")));
	}
	extension_oid = ext;
	/* During ALTER EXTENSION ... UPDATE from 0.5.0: error, with the hint. */
	if (!evc_outbox_installed())
		(void) evc_outbox_open(0, AccessShareLock);
	evc_relay_producer_ensure();
	/* Exactly once: a new producer's progress, read back from Kafka. */
	evc_relay_txn_reconcile();

	/*
	 * What a tick starts from is read here, through SPI, before the batch's
	 * memory is current: SPI leaves its own memory current after each call,
	 * and that memory goes at the end of the transaction, while the
	 * messages' bytes must live until Kafka acknowledged them.
	 */
	(void) evc_relay_current_table();
	(void) evc_relay_delivered_snapshot();
	evc_relay_load_tick_notes();
	evc_relay_begin_batch_txn();
	read_and_produce(limit, batch, inflight);
	evc_worker_xact_end();

	/* Read again while there is more: a tick with rows, or a full chunk. */
	if (batch->n > 0 || !batch->tick_last)
		evc_relay_work_signalled = true;

	*next_due_ms = -1;
	if (retry_due != DT_NOEND)
		*next_due_ms = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), retry_due), 1);
	return true;
}

/* A settle put rows into evc.outbox_retry, due at due. */
void
evc_relay_note_retry(TimestampTz due)
{
	retry_due = Min(retry_due, due);
}

/*
 * After the batches in flight were abandoned: the tick being read starts
 * again from the last delivered tick, whole, and the retry table is read
 * again.
 */
void
evc_relay_read_from_delivered(void)
{
	if (reader.prev)
		pfree(reader.prev);
	reader.prev = NULL;
	reader.active = false;
	retry_due = 0;
	tick_notes_loaded = false;
}
