/*
 * trace.c
 *		Owns lineage: evc_trace(message_id) says where an event is now, and
 *		the ring of recent deliveries the relay keeps for it.
 *
 * An event's path leaves these marks:
 *	outbox		its row while Kafka has not acknowledged it, with attempts
 *				and the last error;
 *	kafka		its topic, partition and offset: from the delivery ring while
 *				the relay's report is among the last EVC_TRACE_RING, else
 *				from what a consumer recorded when it landed the event;
 *	archive		the archive object whose offset range holds it, read back
 *				to find its line (the message_id is on it);
 *	events, images	its index row;
 *	dead_letter	each time it was refused, with the reason.
 * Only the Kafka position of an event that was delivered long ago and
 * landed by no table, image or dead-letter path is unknown; an archive
 * object cannot then be found without its offset.
 */
#include "postgres.h"

#include <zlib.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "core/guc.h"
#include "core/shmem.h"
#include "observe/trace.h"
#include "storage/storage.h"

/* ---------------------------------------------------------------------
 * The delivery ring, written by the relay once per batch
 * ---------------------------------------------------------------------
 */

void
evc_trace_begin_notes(void)
{
	LWLockAcquire(evc_shared->lock, LW_EXCLUSIVE);
}

void
evc_trace_end_notes(void)
{
	LWLockRelease(evc_shared->lock);
}

/* Caller holds the lock (evc_trace_begin_notes). */
void
evc_trace_note_delivery(const char *message_id, const char *topic, int32 partition,
						int64 offset, TimestampTz acked_at)
{
	EvcDeliveryRing *ring = &evc_shared->deliveries;
	EvcDelivery *d = &ring->entries[ring->next % EVC_TRACE_RING];

	strlcpy(d->message_id, message_id, sizeof(d->message_id));
	strlcpy(d->topic, topic, sizeof(d->topic));
	d->partition = partition;
	d->offset = offset;
	d->acked_at = acked_at;
	ring->next++;
}

/* The latest delivery of message_id in the ring, if it is there. */
static bool
find_delivery(const char *message_id, EvcDelivery *out)
{
	EvcDeliveryRing *ring = &evc_shared->deliveries;
	bool		found = false;

	LWLockAcquire(evc_shared->lock, LW_SHARED);
	for (uint64 i = 0; i < Min(ring->next, EVC_TRACE_RING); i++)
	{
		EvcDelivery *d = &ring->entries[(ring->next - 1 - i) % EVC_TRACE_RING];

		if (strcmp(d->message_id, message_id) == 0)
		{
			*out = *d;
			found = true;
			break;
		}
	}
	LWLockRelease(evc_shared->lock);
	return found;
}

/* ---------------------------------------------------------------------
 * evc_trace
 * ---------------------------------------------------------------------
 */

typedef struct KafkaPosition
{
	char	   *topic;
	int32		partition;
	int64		offset;
} KafkaPosition;

typedef struct TraceState
{
	ReturnSetInfo *rsinfo;
	const char *message_id;
	List	   *positions;		/* of KafkaPosition *, distinct */
	bool		kafka_reported;
} TraceState;

static void
put_stage(TraceState *ts, const char *stage, Datum at, bool at_null, const char *detail)
{
	Datum		values[3];
	bool		nulls[3] = {false, at_null, false};

	values[0] = CStringGetTextDatum(stage);
	values[1] = at;
	values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail));
	tuplestore_putvalues(ts->rsinfo->setResult, ts->rsinfo->setDesc, values, nulls);
}

static void
add_position(TraceState *ts, const char *topic, int32 partition, int64 offset)
{
	ListCell   *lc;
	KafkaPosition *p;

	foreach(lc, ts->positions)
	{
		p = lfirst(lc);
		if (p->partition == partition && p->offset == offset && strcmp(p->topic, topic) == 0)
			return;
	}
	p = palloc(sizeof(KafkaPosition));
	p->topic = pstrdup(topic);
	p->partition = partition;
	p->offset = offset;
	ts->positions = lappend(ts->positions, p);
}

/*
 * Run a query that returns (at timestamptz, detail jsonb, topic, partition,
 * offset) for message_id ($1) and report each row as a stage; a row with a
 * Kafka position adds it to what the archive lookup searches.
 */
static void
query_stage(TraceState *ts, const char *stage, const char *sql)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(ts->message_id)};

	if (SPI_execute_with_args(sql, 1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "evc_trace: could not read the %s stage", stage);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		at_null;
		bool		pos_null;
		Datum		at = SPI_getbinval(tup, desc, 1, &at_null);
		Datum		partition;

		put_stage(ts, stage, at, at_null, SPI_getvalue(tup, desc, 2));
		partition = SPI_getbinval(tup, desc, 4, &pos_null);
		if (!pos_null)
		{
			Datum		offset = SPI_getbinval(tup, desc, 5, &pos_null);

			if (!pos_null && SPI_getvalue(tup, desc, 3) != NULL)
				add_position(ts, SPI_getvalue(tup, desc, 3), DatumGetInt32(partition),
							 DatumGetInt64(offset));
		}
	}
}

static char *
gunzip(const char *data, size_t len, size_t *outlen)
{
	z_stream	zs;
	StringInfoData out;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		elog(ERROR, "could not initialise gzip decompression");
	initStringInfo(&out);
	zs.next_in = (Bytef *) data;
	zs.avail_in = len;
	do
	{
		enlargeStringInfo(&out, 65536);
		zs.next_out = (Bytef *) out.data + out.len;
		zs.avail_out = out.maxlen - out.len - 1;
		rc = inflate(&zs, Z_NO_FLUSH);
		out.len = (char *) zs.next_out - out.data;
		if (rc != Z_OK && rc != Z_STREAM_END)
		{
			inflateEnd(&zs);
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("archive object is not valid gzip")));
		}
		CHECK_FOR_INTERRUPTS();
	} while (rc != Z_STREAM_END);
	inflateEnd(&zs);
	out.data[out.len] = '\0';
	*outlen = out.len;
	return out.data;
}

/* The 1-based line of the object that carries message_id, or 0. */
static int64
line_of(const char *data, size_t len, const char *message_id)
{
	char	   *needle = psprintf("\"message_id\":\"%s\"", message_id);
	const char *hit = strstr(data, needle);
	int64		line = 1;

	if (hit == NULL)
		return 0;
	for (const char *p = data; p < hit; p++)
		if (*p == '\n')
			line++;
	return line;
}

/*
 * Read an archive object back through the current storage settings and
 * find the line.  A failure is part of the answer, not an error of the
 * whole trace: the object may be in a store this server no longer uses.
 */
static void
archive_stage(TraceState *ts, EvcStorage **st, HeapTuple tup, TupleDesc desc)
{
	char	   *key = SPI_getvalue(tup, desc, 3);
	bool		gz = strcmp(SPI_getvalue(tup, desc, 4), "gzip") == 0;
	bool		at_null;
	Datum		at = SPI_getbinval(tup, desc, 1, &at_null);
	char	   *detail = SPI_getvalue(tup, desc, 2);
	MemoryContext cxt = CurrentMemoryContext;
	volatile int64 line = -1;
	char	   *volatile error = NULL;
	StringInfoData buf;

	PG_TRY();
	{
		size_t		len;
		char	   *data;

		if (*st == NULL)
			*st = evc_storage_open(evc_storage_url);
		data = evc_storage_get(*st, key, &len);
		if (gz)
			data = gunzip(data, len, &len);
		line = line_of(data, len, ts->message_id);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();

		/*
		 * A storage error becomes part of the trace; a cancel, a shutdown or
		 * running out of memory is not the object's fault and ends the call.
		 */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES)
			PG_RE_THROW();
		FlushErrorState();
		error = edata->detail ? psprintf("%s: %s", edata->message, edata->detail) : edata->message;
	}
	PG_END_TRY();

	/* detail is a JSON object: put line (and any error) before its closing brace. */
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, detail, strlen(detail) - 1);
	if (line > 0)
		appendStringInfo(&buf, ", \"line\": " INT64_FORMAT "}", line);
	else if (line == 0)
		appendStringInfoString(&buf, ", \"line\": null, \"error\": \"the event is not in the object\"}");
	else
	{
		appendStringInfoString(&buf, ", \"line\": null, \"error\": ");
		escape_json(&buf, error);
		appendStringInfoChar(&buf, '}');
	}
	put_stage(ts, "archive", at, at_null, buf.data);
}

static void
archive_stages(TraceState *ts)
{
	EvcStorage *st = NULL;
	ListCell   *lc;

	foreach(lc, ts->positions)
	{
		KafkaPosition *p = lfirst(lc);
		Oid			types[3] = {TEXTOID, INT4OID, INT8OID};
		Datum		values[3] = {CStringGetTextDatum(p->topic), Int32GetDatum(p->partition),
		Int64GetDatum(p->offset)};

		if (SPI_execute_with_args(
								  "SELECT created_at, jsonb_build_object('object_key', object_key, 'topic', topic, "
								  "  'partition', partition, 'first_offset', first_offset, 'last_offset', last_offset, "
								  "  'events', events, 'sha256', sha256, 'consumer', consumer), object_key, compression "
								  "FROM evc.archive_files WHERE topic = $1 AND partition = $2 "
								  "AND $3 BETWEEN first_offset AND last_offset ORDER BY created_at",
								  3, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "evc_trace: could not read evc.archive_files");
		{
			SPITupleTable *tt = SPI_tuptable;
			uint64		n = SPI_processed;

			for (uint64 i = 0; i < n; i++)
				archive_stage(ts, &st, tt->vals[i], tt->tupdesc);
		}
	}
	if (st != NULL)
		evc_storage_close(st);
}

static void
kafka_stages(TraceState *ts)
{
	EvcDelivery d;

	if (find_delivery(ts->message_id, &d))
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"topic\": ");
		escape_json(&buf, d.topic);
		appendStringInfo(&buf, ", \"partition\": %d, \"offset\": " INT64_FORMAT ", \"source\": \"delivery report\"}",
						 d.partition, d.offset);
		put_stage(ts, "kafka", TimestampTzGetDatum(d.acked_at), false, buf.data);
		add_position(ts, d.topic, d.partition, d.offset);
		ts->kafka_reported = true;
	}
}

/* Positions that only landed rows told: report them as the Kafka stage. */
static void
derived_kafka_stages(TraceState *ts)
{
	ListCell   *lc;

	if (ts->kafka_reported)
		return;
	foreach(lc, ts->positions)
	{
		KafkaPosition *p = lfirst(lc);
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"topic\": ");
		escape_json(&buf, p->topic);
		appendStringInfo(&buf, ", \"partition\": %d, \"offset\": " INT64_FORMAT ", \"source\": \"landed rows\"}",
						 p->partition, p->offset);
		put_stage(ts, "kafka", (Datum) 0, true, buf.data);
	}
}

/*
 * evc_trace(message_id uuid) returns setof (stage text, at timestamptz,
 * detail jsonb), in the order of the path: outbox, kafka, archive, events,
 * images, dead_letter.  No rows: evcollector has no trace of the event.
 */
PG_FUNCTION_INFO_V1(evc_trace);
Datum
evc_trace(PG_FUNCTION_ARGS)
{
	TraceState	ts = {0};
	Tuplestorestate *landed;

	evc_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	ts.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ts.message_id = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));

	SPI_connect();
	query_stage(&ts, "outbox",
				"SELECT created_at, jsonb_build_object('topic', topic, 'attempts', attempts, "
				"  'last_error', last_error, 'last_attempt_at', last_attempt_at, 'next_attempt_at', next_attempt_at), "
				"  NULL::text, NULL::int, NULL::bigint "
				"FROM evc.outbox WHERE message_id = $1::uuid ORDER BY id");
	kafka_stages(&ts);

	/*
	 * The landed rows come after the Kafka and archive stages but tell the
	 * positions those need, so they go to a side store first.
	 */
	landed = ts.rsinfo->setResult;
	ts.rsinfo->setResult = tuplestore_begin_heap(false, false, work_mem);
	query_stage(&ts, "events",
				"SELECT landed_at, jsonb_build_object('id', id, 'client', client, 'event_name', event_name, "
				"  'sent_at', sent_at, 'topic', topic, 'partition', partition, 'offset', \"offset\"), "
				"  topic, partition, \"offset\" "
				"FROM evc.events WHERE message_id = $1::uuid");
	query_stage(&ts, "images",
				"SELECT created_at, jsonb_build_object('object_key', object_key, 'content_type', content_type, "
				"  'bytes', bytes, 'sha256', sha256, 'topic', topic, 'partition', partition, 'offset', \"offset\"), "
				"  topic, partition, \"offset\" "
				"FROM evc.images WHERE message_id = $1::uuid");
	query_stage(&ts, "dead_letter",
				"SELECT created_at, jsonb_build_object('source', source, 'error', error, 'attempts', attempts, "
				"  'topic', topic, 'partition', partition, 'offset', \"offset\"), "
				"  CASE WHEN source <> 'relay' THEN topic END, partition, \"offset\" "
				"FROM evc.dead_letters WHERE message_id = $1::uuid ORDER BY id");
	{
		Tuplestorestate *later = ts.rsinfo->setResult;
		TupleTableSlot *slot = MakeSingleTupleTableSlot(ts.rsinfo->setDesc, &TTSOpsMinimalTuple);

		ts.rsinfo->setResult = landed;
		derived_kafka_stages(&ts);
		archive_stages(&ts);
		while (tuplestore_gettupleslot(later, true, false, slot))
			tuplestore_puttupleslot(landed, slot);
		ExecDropSingleTupleTableSlot(slot);
		tuplestore_end(later);
	}
	SPI_finish();
	return (Datum) 0;
}
