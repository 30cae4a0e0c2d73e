/*
 * aggregate.c
 *		Owns evc_aggregate(window_length, lateness, upto): it publishes the
 *		aggregates of closed windows of evc.events, and corrections of
 *		windows that late events changed, as AggregatedEvent messages
 *		through the outbox, in the caller's transaction.
 *
 * For each declaration (aggregate_decl.c) and window length there is a
 * watermark: every window that ends at or before it has been published.  A
 * run computes
 *   - the fresh range, from the watermark (or the type's first event) up to
 *	   the end of the last closed window (window end + lateness <= upto);
 *   - the recheck ranges: windows below the watermark that the invalidation
 *	   log (aggregate_log.c) says received events since the last run.
 * Each range is one statement: the GROUP BY over evc.events, unpivoted into
 * one row per (window, group key, function), upserted into
 * evc.aggregate_state only where the value or count differs from what was
 * published, returning exactly the rows to publish, with revision 1 for a
 * new aggregate and one more than the last for a correction.  The outbox
 * rows, the state and the watermark commit together, so a re-run publishes
 * nothing twice, a crash publishes nothing, and a late event is published
 * as a new revision, never dropped.
 *
 * Runs of one window length are serialised by an advisory lock; runs of
 * different lengths run side by side.  The first run of a new length takes
 * the registry lock exclusively, so that no other run deletes log rows the
 * new length has not read (see the migration's comment on the log).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "aggregate/aggregate.h"
#include "kafka/kafka.h"
#include "send/outbox.h"
#include "kafka/proto.h"
#include "core/stats.h"
#include "util/arrays.h"
#include "util/fmgr_args.h"
#include "util/spi_plans.h"

/* Windows per aggregation statement, which bounds its memory. */
#define AGG_WINDOWS_PER_STATEMENT 100

/* Advisory lock space of evc_aggregate: key 2 is the window in seconds, 0 the registry. */
#define AGG_LOCK_KEY 0x45564341	/* "EVCA" */

typedef struct Range
{
	TimestampTz lo;
	TimestampTz hi;
} Range;

typedef struct Declaration
{
	int32		id;
	char	   *client;
	char	   *event_name;
	char	   *value_pointer;	/* NULL: count only */
	char	   *function_pointer;	/* NULL: none */
	bool		functions[EVC_AGG_NFUNCS];
	List	   *group_by;		/* of char * */
	bool		has_watermark;
	TimestampTz watermark;
} Declaration;

typedef struct Invalidation
{
	char	   *client;
	char	   *event_name;
	TimestampTz lo;
	TimestampTz hi;
} Invalidation;

/* What one run did, for its return value and the aggregator's counters. */
typedef struct RunTotals
{
	int64		events;
	int64		failed;
	int64		published;
} RunTotals;

/* Everything one run needs to publish. */
typedef struct RunContext
{
	int64		secs;
	int64		stride;			/* the window in microseconds */
	Interval   *window;
	char	   *name;
	char	   *topic;
	char	   *computed_at;
	RunTotals	totals;
} RunContext;

int64
evc_window_seconds(Interval *window, const char *what)
{
	int64		usecs = window->time + (int64) window->day * USECS_PER_DAY;

	if (window->month != 0 || usecs <= 0 || usecs % USECS_PER_SEC != 0 ||
		usecs > (int64) EVC_WINDOW_MAX_SECS * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_WINDOW),
				 errmsg("invalid %s \"%s\"", what,
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(window)))),
				 errdetail(window->month != 0 ? "Months and years have no fixed length." :
						   usecs <= 0 ? "A window must be longer than zero." :
						   usecs % USECS_PER_SEC != 0 ? "A window is a whole number of seconds." :
						   "A window is at most 7 days long."),
				 errhint("Use a length such as '1 minute', '5 minutes' or '1 hour'.")));
	return usecs / USECS_PER_SEC;
}

/* "30s", "1m", "5m", "10m", "1h", "1d": the largest unit that divides it. */
char *
evc_window_name(int64 seconds)
{
	if (seconds % 86400 == 0)
		return psprintf(INT64_FORMAT "d", seconds / 86400);
	if (seconds % 3600 == 0)
		return psprintf(INT64_FORMAT "h", seconds / 3600);
	if (seconds % 60 == 0)
		return psprintf(INT64_FORMAT "m", seconds / 60);
	return psprintf(INT64_FORMAT "s", seconds);
}

/* Start of the window holding t; windows align to 2000-01-01 00:00 UTC (0). */
static TimestampTz
window_floor(TimestampTz t, int64 stride)
{
	int64		r = t % stride;

	return r < 0 ? t - r - stride : t - r;
}

static void
spi_run(const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "evc_aggregate: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
}

/*
 * Serialise runs of this window length, and register the length if it is
 * new (exclusively against every other run; see the file comment).
 */
static void
lock_and_register(RunContext *rc)
{
	Oid			types[3] = {INT4OID, INT4OID, INTERVALOID};
	Datum		values[3] = {Int32GetDatum(AGG_LOCK_KEY), Int32GetDatum((int32) rc->secs),
	IntervalPGetDatum(rc->window)};
	Oid			ttypes[2] = {INTERVALOID, TEXTOID};
	Datum		tvalues[2] = {IntervalPGetDatum(rc->window), CStringGetTextDatum(rc->name)};

	spi_run("SELECT pg_catalog.pg_advisory_xact_lock($1, $2)", 2, types, values, SPI_OK_SELECT);
	spi_run("SELECT 1 FROM evc.aggregate_windows WHERE window_length = $1", 1, ttypes, tvalues, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		values[1] = Int32GetDatum(0);
		spi_run("SELECT pg_catalog.pg_advisory_xact_lock_shared($1, $2)", 2, types, values, SPI_OK_SELECT);
		return;
	}
	values[1] = Int32GetDatum(0);
	spi_run("SELECT pg_catalog.pg_advisory_xact_lock($1, $2)", 2, types, values, SPI_OK_SELECT);
	spi_run("INSERT INTO evc.aggregate_windows (window_length, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
			2, ttypes, tvalues, SPI_OK_INSERT);
}

/* Take the log rows this window length has not read, and forget those all have read. */
static List *
read_invalidations(RunContext *rc, MemoryContext cxt)
{
	Oid			types[1] = {INTERVALOID};
	Datum		values[1] = {IntervalPGetDatum(rc->window)};
	List	   *result = NIL;

	spi_run("UPDATE evc.aggregate_invalidations SET done = done || $1 "
			"WHERE NOT ($1 = ANY (done)) RETURNING client, event_name, lo, hi",
			1, types, values, SPI_OK_UPDATE_RETURNING);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Invalidation *inv = palloc(sizeof(Invalidation));
		bool		isnull;

		inv->client = SPI_getvalue(tup, desc, 1);
		inv->event_name = SPI_getvalue(tup, desc, 2);
		inv->lo = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		inv->hi = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		result = lappend(result, inv);
		MemoryContextSwitchTo(old);
	}
	spi_run("DELETE FROM evc.aggregate_invalidations "
			"WHERE done @> (SELECT array_agg(window_length) FROM evc.aggregate_windows)",
			0, NULL, NULL, SPI_OK_DELETE);
	return result;
}

static List *
text_array_list(Datum d)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

static List *
read_declarations(RunContext *rc, MemoryContext cxt)
{
	Oid			types[1] = {INTERVALOID};
	Datum		values[1] = {IntervalPGetDatum(rc->window)};
	List	   *result = NIL;

	/* FOR SHARE: a redeclaration waits until this run has committed. */
	spi_run("SELECT a.id, a.client, a.event_name, a.value_pointer, a.function_pointer, a.functions, "
			"       a.group_by, w.aggregated_upto "
			"  FROM evc.aggregations a "
			"  LEFT JOIN evc.aggregate_watermarks w ON w.aggregation_id = a.id AND w.window_length = $1 "
			" ORDER BY a.id FOR SHARE OF a",
			1, types, values, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Declaration *d = palloc0(sizeof(Declaration));
		bool		isnull;
		Datum		wm;
		ListCell   *lc;

		d->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		d->client = SPI_getvalue(tup, desc, 2);
		d->event_name = SPI_getvalue(tup, desc, 3);
		d->value_pointer = SPI_getvalue(tup, desc, 4);
		d->function_pointer = SPI_getvalue(tup, desc, 5);
		foreach(lc, text_array_list(SPI_getbinval(tup, desc, 6, &isnull)))
		{
			int			f = evc_agg_function_index(lfirst(lc));

			if (f >= 0)
				d->functions[f] = true;
		}
		d->group_by = text_array_list(SPI_getbinval(tup, desc, 7, &isnull));
		wm = SPI_getbinval(tup, desc, 8, &isnull);
		d->has_watermark = !isnull;
		d->watermark = isnull ? 0 : DatumGetTimestampTz(wm);
		result = lappend(result, d);
		MemoryContextSwitchTo(old);
	}
	return result;
}

/* The SQL expression of the group key over row alias e. */
static char *
group_key_sql(Declaration *d)
{
	StringInfoData buf;
	ListCell   *lc;

	if (d->group_by == NIL)
		return "''";
	if (list_length(d->group_by) == 1)
		return psprintf("coalesce(e.data #>> %s, '')", evc_json_pointer_sql(linitial(d->group_by)));
	initStringInfo(&buf);
	appendStringInfoString(&buf, "pg_catalog.jsonb_build_array(");
	foreach(lc, d->group_by)
		appendStringInfo(&buf, "%se.data #> %s", foreach_current_index(lc) ? ", " : "",
						 evc_json_pointer_sql(lfirst(lc)));
	appendStringInfoString(&buf, ")::text");
	return buf.data;
}

/* The condition under which an event contributes to function f; NULL: never. */
static const char *
function_condition(Declaration *d, int f)
{
	if (d->functions[f])
		return "true";
	if (d->function_pointer)
		return psprintf("fn = '%s'", evc_agg_functions[f]);
	return NULL;
}

/*
 * The aggregation of one declaration over a range ($3, $4) of one event
 * type ($1, $2) in windows of $5: one row per (window, group key) with the
 * number of events, of failed ones, and the value and count of each
 * function (NULL columns for functions the declaration does not have).
 *
 * It is a read-only statement of its own so that the planner may run it in
 * parallel, as it would the equivalent GROUP BY; the inner subquery is not
 * pulled up because evc.json_number_once is VOLATILE, so the number and the
 * group key are extracted once per event, not once per aggregate that uses
 * them.
 */
static char *
build_aggregation(Declaration *d)
{
	StringInfoData agg;
	StringInfoData bad;
	bool		value_fn_declared = d->functions[1] || d->functions[2] || d->functions[3] || d->functions[4];
	bool		any_declared = value_fn_declared || d->functions[0];

	initStringInfo(&agg);
	initStringInfo(&bad);
	for (int f = 0; f < EVC_AGG_NFUNCS; f++)
	{
		const char *cond = function_condition(d, f);
		const char *name = evc_agg_functions[f];
		const char *filter = (cond && strcmp(cond, "true") != 0) ? psprintf(" FILTER (WHERE %s)", cond) : "";

		if (cond == NULL || (f > 0 && d->value_pointer == NULL))
			appendStringInfo(&agg, ", NULL::numeric, NULL::int8");
		else if (f == 0)
			appendStringInfo(&agg, ", count(*)%s::numeric, count(*)%s", filter, filter);
		else
			appendStringInfo(&agg, ", %s(v)%s, count(v)%s", name, filter, filter);
	}

	/* Events a value function applied to but that had no number. */
	if (d->value_pointer && value_fn_declared)
		appendStringInfoString(&bad, "count(*) FILTER (WHERE v IS NULL)");
	else if (d->value_pointer && d->function_pointer)
		appendStringInfoString(&bad, "count(*) FILTER (WHERE v IS NULL AND fn IN ('sum', 'avg', 'min', 'max'))");
	else
		appendStringInfoString(&bad, "0");
	/* Events naming no function they can use. */
	if (d->function_pointer)
		appendStringInfo(&bad, " + count(*) FILTER (WHERE %s(fn IS NOT NULL AND fn NOT IN ('count', 'sum', 'avg', 'min', 'max')))",
						 any_declared ? "" : "fn IS NULL OR ");

	return psprintf("SELECT ws, gk, count(*), %s%s"
					"  FROM (SELECT pg_catalog.date_bin($5, e.sent_at, '" EVC_WINDOW_ORIGIN "') AS ws, %s AS gk,"
					"               %s AS v, %s AS fn"
					"          FROM evc.events e"
					"         WHERE e.client = $1 AND e.event_name = $2 AND e.sent_at >= $3 AND e.sent_at < $4) s"
					" GROUP BY ws, gk",
					bad.data, agg.data, group_key_sql(d),
					d->value_pointer ? psprintf("evc.json_number_once(e.data, %s)", evc_json_pointer_sql(d->value_pointer)) : "NULL::numeric",
					d->function_pointer ? psprintf("e.data #>> %s", evc_json_pointer_sql(d->function_pointer)) : "NULL::text");
}

/*
 * Upsert the aggregates of a range into the state, where value or count
 * differs from what was published, and return exactly those, with revision
 * 1 for a new aggregate and one more than the last for a correction.
 */
#define UPSERT_NARGS 8
static const char *const upsert_sql =
"INSERT INTO evc.aggregate_state AS s"
"       (client, event_name, window_length, window_start, function, group_key, value, count, revision)"
" SELECT $1, $2, $3, u.ws, u.f, u.gk, u.v, u.n, 1"
"   FROM unnest($4::timestamptz[], $5::text[], $6::text[], $7::numeric[], $8::int8[]) AS u (ws, f, gk, v, n)"
" ON CONFLICT (client, event_name, window_length, window_start, function, group_key)"
" DO UPDATE SET value = EXCLUDED.value, count = EXCLUDED.count, revision = s.revision + 1, published_at = now()"
" WHERE (s.value, s.count) IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.count)"
" RETURNING s.window_start, s.function, s.group_key, s.value::text, s.count, s.revision";

/* Prepared once per backend, not once per declaration of every run. */
static SPIPlanPtr plan_upsert = NULL;

/* The aggregates of one range, unpivoted: one entry per (window, group, function). */
typedef struct RangeAggregates
{
	int			n;
	int			cap;
	Datum	   *ws;
	Datum	   *function;
	Datum	   *group_key;
	Datum	   *value;
	Datum	   *count;
} RangeAggregates;

static Datum *
grow(Datum *a, int cap)
{
	return a ? repalloc(a, sizeof(Datum) * cap) : palloc(sizeof(Datum) * cap);
}

static void
range_add(RangeAggregates *ra, Datum ws, int f, Datum gk, Datum value, Datum count)
{
	if (ra->n == ra->cap)
	{
		ra->cap = Max(ra->cap * 2, 64);
		ra->ws = grow(ra->ws, ra->cap);
		ra->function = grow(ra->function, ra->cap);
		ra->group_key = grow(ra->group_key, ra->cap);
		ra->value = grow(ra->value, ra->cap);
		ra->count = grow(ra->count, ra->cap);
	}
	ra->ws[ra->n] = ws;
	ra->function[ra->n] = CStringGetTextDatum(evc_agg_functions[f]);
	ra->group_key[ra->n] = gk;
	ra->value[ra->n] = value;
	ra->count[ra->n] = count;
	ra->n++;
}

/*
 * A name-based (version 3) uuid of the aggregate and its revision, so that
 * the same revision always has the same message_id.
 */
static pg_uuid_t *
aggregate_message_id(const char *identity)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));
	const char *errstr = NULL;

	if (!pg_md5_binary(identity, strlen(identity), u->data, &errstr))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not compute the message id of an aggregate"),
				 errdetail("The message id is an MD5-based uuid, and MD5 failed: %s.", errstr)));
	u->data[6] = (u->data[6] & 0x0f) | 0x30;
	u->data[8] = (u->data[8] & 0x3f) | 0x80;
	return u;
}

/* One row of the upsert's RETURNING list, as an AggregatedEvent through the outbox. */
static void
publish_row(RunContext *rc, Declaration *d, HeapTuple tup, TupleDesc desc)
{
	EvcAggregateFields f = {0};
	bool		isnull;
	char	   *key;
	char	   *identity;

	f.client = d->client;
	f.event_name = d->event_name;
	f.window_start = evc_format_timestamp(DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull)));
	f.function = SPI_getvalue(tup, desc, 2);
	f.group_key = SPI_getvalue(tup, desc, 3);
	f.value_decimal = SPI_getvalue(tup, desc, 4);
	f.count = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	f.revision = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	f.window_seconds = rc->secs;
	f.window_name = rc->name;
	f.computed_at = rc->computed_at;

	key = psprintf("%s.%s/%s", d->client, d->event_name, f.group_key);
	identity = psprintf("%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d", key, rc->name, f.window_start,
						f.function, f.group_key, f.revision);
	evc_outbox_enqueue(rc->topic, key, strlen(key), evc_encode_aggregate(&f),
					   aggregate_message_id(identity), 0, EVC_CONTENT_TYPE_AGGREGATE);
	rc->totals.published++;
}

static int
aggregate_range_cmp(const ListCell *a, const ListCell *b)
{
	Range	   *ra = lfirst(a);
	Range	   *rb = lfirst(b);

	return (ra->lo > rb->lo) - (ra->lo < rb->lo);
}

static List *
add_range(List *ranges, TimestampTz lo, TimestampTz hi)
{
	Range	   *r;

	if (lo >= hi)
		return ranges;
	r = palloc(sizeof(Range));
	r->lo = lo;
	r->hi = hi;
	return lappend(ranges, r);
}

/* Sorted, with overlapping and touching ranges merged. */
static List *
merge_ranges(List *ranges)
{
	List	   *merged = NIL;
	ListCell   *lc;

	list_sort(ranges, aggregate_range_cmp);
	foreach(lc, ranges)
	{
		Range	   *r = lfirst(lc);
		Range	   *last = merged ? llast(merged) : NULL;

		if (last && r->lo <= last->hi)
			last->hi = Max(last->hi, r->hi);
		else
			merged = lappend(merged, r);
	}
	return merged;
}

static TimestampTz
first_event_time(Declaration *d)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(d->client), CStringGetTextDatum(d->event_name)};
	bool		isnull;
	Datum		v;

	spi_run("SELECT min(sent_at) FROM evc.events WHERE client = $1 AND event_name = $2",
			2, types, values, SPI_OK_SELECT);
	v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? DT_NOEND : DatumGetTimestampTz(v);
}

/*
 * Aggregate one range: the GROUP BY, then the upsert of what changed, then
 * one message per changed aggregate.
 */
static void
aggregate_range(RunContext *rc, Declaration *d, const char *aggregation, SPIPlanPtr upsert,
				Range *r)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INTERVALOID};
	Datum		values[5];
	Datum		uvalues[UPSERT_NARGS];
	RangeAggregates ra = {0};
	SPITupleTable *tt;
	SPITupleTable *aggregated;

	values[0] = CStringGetTextDatum(d->client);
	values[1] = CStringGetTextDatum(d->event_name);
	values[2] = TimestampTzGetDatum(r->lo);
	values[3] = TimestampTzGetDatum(r->hi);
	values[4] = IntervalPGetDatum(rc->window);
	spi_run(aggregation, 5, types, values, SPI_OK_SELECT);
	tt = aggregated = SPI_tuptable;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = tt->vals[i];
		bool		isnull;

		rc->totals.events += DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 3, &isnull));
		rc->totals.failed += DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 4, &isnull));
		for (int f = 0; f < EVC_AGG_NFUNCS; f++)
		{
			bool		vnull,
						nnull;
			Datum		v = SPI_getbinval(tup, tt->tupdesc, 5 + 2 * f, &vnull);
			Datum		n = SPI_getbinval(tup, tt->tupdesc, 6 + 2 * f, &nnull);

			if (!vnull && !nnull && DatumGetInt64(n) > 0)
				range_add(&ra, SPI_getbinval(tup, tt->tupdesc, 1, &isnull), f,
						  SPI_getbinval(tup, tt->tupdesc, 2, &isnull), v, n);
		}
	}
	if (ra.n == 0)
	{
		SPI_freetuptable(aggregated);
		return;
	}

	uvalues[0] = values[0];
	uvalues[1] = values[1];
	uvalues[2] = IntervalPGetDatum(rc->window);
	uvalues[3] = PointerGetDatum(evc_array_from_datums(TIMESTAMPTZOID, ra.ws, NULL, ra.n));
	uvalues[4] = PointerGetDatum(evc_array_from_datums(TEXTOID, ra.function, NULL, ra.n));
	uvalues[5] = PointerGetDatum(evc_array_from_datums(TEXTOID, ra.group_key, NULL, ra.n));
	uvalues[6] = PointerGetDatum(evc_array_from_datums(NUMERICOID, ra.value, NULL, ra.n));
	uvalues[7] = PointerGetDatum(evc_array_from_datums(INT8OID, ra.count, NULL, ra.n));
	SPI_freetuptable(aggregated);	/* the arrays hold copies */
	evc_spi_execute_plan(upsert, uvalues, NULL, SPI_OK_INSERT_RETURNING);
	tt = SPI_tuptable;
	for (uint64 i = 0; i < SPI_processed; i++)
		publish_row(rc, d, tt->vals[i], tt->tupdesc);
	SPI_freetuptable(tt);
}

/* Aggregate one declaration: its fresh range and its rechecks. */
static void
aggregate_declaration(RunContext *rc, Declaration *d, List *invalidations, TimestampTz closed_end)
{
	TimestampTz fresh_lo;
	TimestampTz new_watermark;
	List	   *ranges = NIL;
	ListCell   *lc;
	char	   *aggregation;
	SPIPlanPtr	upsert;
	int64		published_before = rc->totals.published;
	Oid			utypes[UPSERT_NARGS] = {TEXTOID, TEXTOID, INTERVALOID, TIMESTAMPTZARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, NUMERICARRAYOID, INT8ARRAYOID};
	Oid			wtypes[4] = {INT4OID, INTERVALOID, TIMESTAMPTZOID, INT8OID};
	Datum		wvalues[4];

	if (d->has_watermark)
		fresh_lo = d->watermark;
	else
	{
		TimestampTz first = first_event_time(d);

		fresh_lo = (first == DT_NOEND) ? closed_end : Min(window_floor(first, rc->stride), closed_end);
	}
	ranges = add_range(ranges, fresh_lo, closed_end);
	foreach(lc, invalidations)
	{
		Invalidation *inv = lfirst(lc);

		if (strcmp(inv->client, d->client) != 0 || strcmp(inv->event_name, d->event_name) != 0)
			continue;
		/* Windows from the fresh range up are computed afresh anyway. */
		ranges = add_range(ranges, window_floor(inv->lo, rc->stride),
						   Min(window_floor(inv->hi, rc->stride) + rc->stride, fresh_lo));
	}
	ranges = merge_ranges(ranges);

	aggregation = build_aggregation(d);
	upsert = evc_spi_kept_plan(&plan_upsert, upsert_sql, UPSERT_NARGS, utypes);
	foreach(lc, ranges)
	{
		Range	   *r = lfirst(lc);

		/* A long range (a first run over history) goes in pieces of bounded size. */
		for (TimestampTz lo = r->lo; lo < r->hi; lo += rc->stride * AGG_WINDOWS_PER_STATEMENT)
		{
			Range		piece = {lo, Min(r->hi, lo + rc->stride * AGG_WINDOWS_PER_STATEMENT)};

			CHECK_FOR_INTERRUPTS();
			aggregate_range(rc, d, aggregation, upsert, &piece);
		}
	}

	new_watermark = d->has_watermark ? Max(d->watermark, closed_end) : closed_end;
	wvalues[0] = Int32GetDatum(d->id);
	wvalues[1] = IntervalPGetDatum(rc->window);
	wvalues[2] = TimestampTzGetDatum(new_watermark);
	wvalues[3] = Int64GetDatum(rc->totals.published - published_before);
	spi_run("INSERT INTO evc.aggregate_watermarks AS w (aggregation_id, window_length, aggregated_upto, runs, published, last_run_at) "
			"VALUES ($1, $2, $3, 1, $4, now()) "
			"ON CONFLICT (aggregation_id, window_length) DO UPDATE SET aggregated_upto = EXCLUDED.aggregated_upto, "
			"runs = w.runs + 1, published = w.published + EXCLUDED.published, last_run_at = now()",
			4, wtypes, wvalues, SPI_OK_INSERT);
}

/*
 * evc_aggregate(window_length interval, lateness interval, upto timestamptz)
 * returns bigint: the number of aggregates published.
 */
PG_FUNCTION_INFO_V1(evc_aggregate);
Datum
evc_aggregate(PG_FUNCTION_ARGS)
{
	Interval   *window = DatumGetIntervalP(evc_arg_required(fcinfo, 0, "window_length"));
	Interval   *lateness = DatumGetIntervalP(evc_arg_required(fcinfo, 1, "lateness"));
	TimestampTz upto = DatumGetTimestampTz(evc_arg_required(fcinfo, 2, "upto"));
	int64		lateness_us;
	TimestampTz closed_end;
	TimestampTz started = GetCurrentTimestamp();
	RunContext	rc = {0};
	MemoryContext cxt = CurrentMemoryContext;
	List	   *invalidations;
	List	   *declarations;
	ListCell   *lc;

	rc.secs = evc_window_seconds(window, "window_length");
	lateness_us = lateness->time + (int64) lateness->day * USECS_PER_DAY;
	if (lateness->month != 0 || lateness_us < 0)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_WINDOW),
				 errmsg("invalid lateness \"%s\"",
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(lateness)))),
				 errdetail(lateness->month != 0 ? "Months and years have no fixed length." :
						   "Lateness must not be negative."),
				 errhint("Use a length such as '0', '30 seconds' or '2 minutes'.")));
	if (TIMESTAMP_NOT_FINITE(upto))
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_WINDOW),
				 errmsg("upto must be a finite timestamp")));

	rc.stride = rc.secs * USECS_PER_SEC;
	rc.window = palloc0(sizeof(Interval));
	rc.window->time = rc.stride;
	rc.name = evc_window_name(rc.secs);
	rc.topic = evc_topic_name(psprintf("aggregates.%s", rc.name));
	rc.computed_at = evc_format_timestamp(GetCurrentTransactionStartTimestamp());
	closed_end = window_floor(upto - lateness_us, rc.stride);

	/* An error is kept as data (evc.stats) before it goes on up. */
	PG_TRY();
	{
		SPI_connect();
		lock_and_register(&rc);
		invalidations = read_invalidations(&rc, cxt);
		declarations = read_declarations(&rc, cxt);
		if (declarations != NIL)
			evc_aggregate_log_set_enabled(true);	/* e.g. after a restore */
		foreach(lc, declarations)
			aggregate_declaration(&rc, lfirst(lc), invalidations, closed_end);
		SPI_finish();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		/* The error goes on up whole; evc.stats keeps its message and detail. */
		evc_stats_aggregation_error(edata->detail ?
									psprintf("%s: %s", edata->message, edata->detail) :
									edata->message);
		PG_RE_THROW();
	}
	PG_END_TRY();

	evc_stats_count_aggregation(rc.totals.events, rc.totals.failed, rc.totals.published,
								(GetCurrentTimestamp() - started) / 1000.0);
	PG_RETURN_INT64(rc.totals.published);
}
