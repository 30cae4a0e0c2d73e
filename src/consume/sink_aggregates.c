/*
 * sink_aggregates.c
 *		Owns the aggregates sink: it lands AggregatedEvent messages (from
 *		evc_aggregate, on <prefix>aggregates.<window>) in evc.aggregates and
 *		pushes every new or corrected row to LISTENers on evc_live_<window>
 *		and to the gateway's live rooms (gateway/live.h).
 *
 * Like the other sinks it runs inside the consumer's batch transaction,
 * with SPI connected and the partition's offset row locked (consumer.c).
 * A row is upserted only when the message's revision is higher than the
 * stored one, so a redelivered or reordered message changes nothing and
 * notifies nobody.  NOTIFY is transactional: listeners hear of a row when
 * the batch commits, and never of a batch that rolled back.
 *
 * The payload is compact JSON that a websocket server can forward as is:
 *	{"room":"r1","client":"shop","event":"order","function":"sum",
 *	 "window":"1m","start":"2026-01-01T00:00:00.000000Z","value":104,
 *	 "count":3,"revision":2}
 * Every field is bounded by the checks below, so it always fits NOTIFY's
 * 8000-byte limit; a message that fails them is dead-lettered.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "evcollector.pb-c.h"

#include "aggregate/aggregate.h"
#include "consume/consumer.h"
#include "gateway/live.h"
#include "kafka/proto.h"
#include "util/spi_plans.h"

#define MAX_NAME_BYTES 200
#define MAX_GROUP_KEY_BYTES 1000
#define MAX_DECIMAL_BYTES 1000

static SPIPlanPtr plan_upsert = NULL;

static bool
valid_text(const char *s, size_t max)
{
	size_t		len = strlen(s);

	return len <= max && pg_verifymbstr(s, len, true);
}

/* A JSON number, which numeric_in also takes: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
static bool
valid_decimal(const char *s)
{
	const char *p = s;

	if (strlen(s) == 0 || strlen(s) > MAX_DECIMAL_BYTES)
		return false;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (*p == '.')
	{
		if (!(p[1] >= '0' && p[1] <= '9'))
			return false;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	if (*p == 'e' || *p == 'E')
	{
		int			digits = 0;

		p++;
		if (*p == '+' || *p == '-')
			p++;
		for (; *p >= '0' && *p <= '9'; p++)
			digits++;
		/* numeric's own limit on the exponent is far above this */
		if (digits == 0 || digits > 4)
			return false;
	}
	return *p == '\0';
}

/* Why the message cannot land, or NULL. */
static const char *
check_aggregate(Evcollector__AggregatedEvent *a, TimestampTz *start)
{
	if (!valid_text(a->client, MAX_NAME_BYTES) || !valid_text(a->event_name, MAX_NAME_BYTES) ||
		!valid_text(a->function, MAX_NAME_BYTES) || !valid_text(a->window_start, MAX_NAME_BYTES))
		return "a text field is too long or not valid in the database encoding";
	if (!valid_text(a->group_key, MAX_GROUP_KEY_BYTES))
		return "group_key is longer than 1000 bytes or not valid in the database encoding";
	if (a->client[0] == '\0' || a->event_name[0] == '\0')
		return "client or event_name is empty";
	if (evc_agg_function_index(a->function) < 0)
		return "function is not count, sum, avg, min or max";
	if (a->window_seconds <= 0 || a->window_seconds > EVC_WINDOW_MAX_SECS)
		return "window_seconds is not between 1 and 604800";
	if (!evc_parse_timestamp(a->window_start, start))
		return "window_start is not a timestamp";
	if (!valid_decimal(a->value_decimal))
		return "value_decimal is not a decimal number";
	if (a->revision < 1 || a->count < 0)
		return "revision is below 1 or count is negative";
	return NULL;
}

static void
notify_live(Evcollector__AggregatedEvent *a, const char *window_name)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"room\":");
	escape_json(&buf, a->group_key);
	appendStringInfoString(&buf, ",\"client\":");
	escape_json(&buf, a->client);
	appendStringInfoString(&buf, ",\"event\":");
	escape_json(&buf, a->event_name);
	appendStringInfo(&buf, ",\"function\":\"%s\",\"window\":\"%s\",\"start\":", a->function, window_name);
	escape_json(&buf, a->window_start);
	appendStringInfo(&buf, ",\"value\":%s,\"count\":" INT64_FORMAT ",\"revision\":%d}",
					 a->value_decimal, (int64) a->count, a->revision);
	Async_Notify(psprintf("evc_live_%s", window_name), buf.data);
	/* and to the gateway's live rooms, through shared memory, at commit */
	evc_live_push_at_commit((int) a->window_seconds, a->group_key, buf.data);
}

/* Upsert one aggregate; true when the row is new or was corrected. */
static bool
upsert_aggregate(Evcollector__AggregatedEvent *a, TimestampTz start)
{
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID, INT8OID, INT4OID};
	Datum		v[9];

	evc_spi_kept_plan(&plan_upsert,
					  "INSERT INTO evc.aggregates AS a (client, event_name, function, group_key, window_start, "
					  "  window_length, value, count, revision) "
					  "VALUES ($1, $2, $3, $4, $5, $6 * interval '1 second', $7::numeric, $8, $9) "
					  "ON CONFLICT (client, event_name, function, group_key, window_start, window_length) "
					  "DO UPDATE SET value = EXCLUDED.value, count = EXCLUDED.count, revision = EXCLUDED.revision, "
					  "  updated_at = now() "
					  "WHERE EXCLUDED.revision > a.revision", 9, types);
	v[0] = CStringGetTextDatum(a->client);
	v[1] = CStringGetTextDatum(a->event_name);
	v[2] = CStringGetTextDatum(a->function);
	v[3] = CStringGetTextDatum(a->group_key);
	v[4] = TimestampTzGetDatum(start);
	v[5] = Int64GetDatum(a->window_seconds);
	v[6] = CStringGetTextDatum(a->value_decimal);
	v[7] = Int64GetDatum(a->count);
	v[8] = Int32GetDatum(a->revision);
	evc_spi_execute_plan(plan_upsert, v, NULL, SPI_OK_INSERT);
	return SPI_processed == 1;
}

void
evc_sink_land_aggregates(EvcConsumerConfig *cfg, EvcPartitionBatch *pb, int64 next_offset,
						 EvcLandResult *res)
{
	for (int i = 0; i < pb->nmessages; i++)
	{
		EvcMessage *m = &pb->messages[i];
		Evcollector__AggregatedEvent *a;
		TimestampTz start;
		const char *why;

		if (m->offset < next_offset)
		{
			res->skipped++;		/* landed by an earlier delivery */
			continue;
		}
		a = evcollector__aggregated_event__unpack(&evc_pb_allocator, m->len, (const uint8_t *) m->payload);
		why = a ? check_aggregate(a, &start) : "payload is not a protobuf evcollector.AggregatedEvent";
		if (why != NULL)
		{
			evc_sink_dead_letter(cfg, pb, m, NULL, why);
			res->dead_lettered++;
			continue;
		}
		if (upsert_aggregate(a, start))
		{
			notify_live(a, evc_window_name(a->window_seconds));
			res->landed++;
			res->bytes += m->len;
		}
		else
			res->skipped++;		/* this revision or a later one is there */
		evcollector__aggregated_event__free_unpacked(a, &evc_pb_allocator);
	}
}
