/*
 * sinks.c
 *		Owns what a consumer does with the messages of one partition in one
 *		batch: decode and check them, land them with the consumer's sink
 *		(archive files, images, the events table), and send what cannot be
 *		decoded to evc.dead_letters.
 *
 * Everything here runs inside the consumer's batch transaction, with SPI
 * connected, after the partition's row in evc.consumer_offsets was locked.
 * Objects are handed to storage with evc_storage_put_at_sync, and the
 * consumer syncs the store before the transaction that holds their index
 * rows commits, so a committed row never points at an object that is not
 * durable.  The store gets every object of the landing, from every due
 * partition, at once, and S3 puts them concurrently.  An object whose row
 * did not commit is overwritten when the batch is landed again, because
 * keys depend only on the messages:
 *
 *	archive	<topic>/<YYYY>/<MM>/<DD>/<HH>/<topic>+<partition>+<first offset>.jsonl
 *			The hour is the Kafka timestamp (UTC) of the file's first event,
 *			and a file is cut where the hour of the events changes, so the
 *			files of one partition always start at the same offsets.
 *	images	images/<sha256[0:2]>/<sha256>.<ext>: content-addressed, so the
 *			same bytes sent twice are stored once, with one row per message.
 */
#include "postgres.h"

#include <zlib.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "evcollector.pb-c.h"

#include "consume/consumer.h"
#include "kafka/proto.h"
#include "storage/storage.h"
#include "util/arrays.h"
#include "util/spi_plans.h"

/* A decoded, checked message, or the reason it was dead-lettered. */
typedef struct DecodedEvent
{
	EvcMessage *msg;
	Evcollector__Event *ev;		/* NULL when dead-lettered */
	const char *message_id;		/* checked uuid text, or NULL */
	char	   *error;			/* why it was dead-lettered */
} DecodedEvent;

static SPIPlanPtr plan_dead_letter = NULL;
static SPIPlanPtr plan_archive_file = NULL;
static SPIPlanPtr plan_image_seen = NULL;
static SPIPlanPtr plan_image = NULL;
static SPIPlanPtr plan_event = NULL;
static MemoryContext sink_cxt = NULL;

static bool
valid_uuid_text(const char *s)
{
	static const char pattern[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (pattern[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

static bool
valid_text(const char *s)
{
	return s == NULL || pg_verifymbstr(s, strlen(s), true);
}

/* Is s a JSON object that jsonb will accept?  Never throws. */
static bool
valid_json_object(const char *s, char **why)
{
	JsonLexContext *lex;
	JsonParseErrorType rc;
	const char *p = s;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != '{')
	{
		*why = "data_json is not a JSON object";
		return false;
	}
	lex = makeJsonLexContextCstringLen((char *) s, strlen(s), GetDatabaseEncoding(), true);
	rc = pg_parse_json(lex, &nullSemAction);
	if (rc != JSON_SUCCESS)
	{
		*why = psprintf("data_json is not valid JSON: %s", json_errdetail(rc, lex));
		return false;
	}
	return true;
}

/* An RFC 3339 timestamp as timestamptz, without throwing.  "" is NULL. */
static bool
parse_timestamptz(const char *s, TimestampTz *out, bool *isnull)
{
	*isnull = (s == NULL || s[0] == '\0');
	return *isnull || evc_parse_timestamp(s, out);
}

/*
 * Decode and check one message.  A message that fails gets error set and is
 * dead-lettered; it never stops the batch.
 */
static void
decode_message(EvcConsumerConfig *cfg, EvcMessage *m, DecodedEvent *d)
{
	Evcollector__Event *ev;
	Evcollector__EventContext *ctx;
	char	   *why = NULL;
	TimestampTz ts;
	bool		isnull;

	memset(d, 0, sizeof(*d));
	d->msg = m;
	ev = evcollector__event__unpack(&evc_pb_allocator, m->len, (const uint8_t *) m->payload);
	if (ev == NULL)
	{
		d->error = "payload is not a protobuf evcollector.Event";
		return;
	}
	ctx = ev->context;
	if (ctx != NULL && valid_uuid_text(ctx->message_id))
		d->message_id = ctx->message_id;
	if (!valid_text(ev->client) || !valid_text(ev->event_name) || !valid_text(ev->data_json) ||
		!valid_text(ev->blob_content_type) ||
		(ctx && (!valid_text(ctx->sent_at) || !valid_text(ctx->received_at) ||
				 !valid_text(ctx->processed_at) || !valid_text(ctx->user_agent))))
		d->error = "a text field is not valid in the database encoding";
	else if (ev->client[0] == '\0' || ev->event_name[0] == '\0')
		d->error = "client or event_name is empty";
	else if (ctx == NULL)
		d->error = "the event has no context";
	else if (d->message_id == NULL)
		d->error = "context.message_id is not a uuid";
	else if (!parse_timestamptz(ctx->sent_at, &ts, &isnull))
		d->error = "context.sent_at is not a timestamp";
	else if (!valid_json_object(ev->data_json, &why))
		d->error = why;
	else if (cfg->sink == EVC_SINK_IMAGES &&
			 (ev->blob.len == 0 || ev->blob_content_type[0] == '\0'))
		d->error = "an image event needs blob and blob_content_type";
	if (d->error == NULL)
		d->ev = ev;
}

/*
 * Keep a message the sink cannot land in evc.dead_letters, with its raw
 * bytes, its place on the topic and why; message_id may be NULL (it could
 * not be read).  Every sink dead-letters through here.
 */
void
evc_sink_dead_letter(EvcConsumerConfig *cfg, EvcPartitionBatch *pb, EvcMessage *m,
					 const char *message_id, const char *why)
{
	Oid			t[8] = {TEXTOID, TEXTOID, INT4OID, INT8OID, BYTEAOID, BYTEAOID, TEXTOID, TEXTOID};
	Datum		v[8];
	char		n[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bytea	   *p = palloc(VARHDRSZ + m->len);

	evc_spi_kept_plan(&plan_dead_letter,
					  "INSERT INTO evc.dead_letters (message_id, topic, partition, \"offset\", key, payload, error, source) "
					  "VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8)", 8, t);
	v[0] = message_id ? CStringGetTextDatum(message_id) : (Datum) 0;
	n[0] = message_id ? ' ' : 'n';
	v[1] = CStringGetTextDatum(pb->topic);
	v[2] = Int32GetDatum(pb->partition);
	v[3] = Int64GetDatum(m->offset);
	if (m->key)
	{
		bytea	   *k = palloc(VARHDRSZ + m->key_len);

		SET_VARSIZE(k, VARHDRSZ + m->key_len);
		memcpy(VARDATA(k), m->key, m->key_len);
		v[4] = PointerGetDatum(k);
	}
	else
		n[4] = 'n';
	SET_VARSIZE(p, VARHDRSZ + m->len);
	memcpy(VARDATA(p), m->payload, m->len);
	v[5] = PointerGetDatum(p);
	v[6] = CStringGetTextDatum(why);
	v[7] = CStringGetTextDatum(psprintf("consumer:%s", cfg->name));
	evc_spi_execute_plan(plan_dead_letter, v, n, SPI_OK_INSERT);
}

/*
 * s as a JSON string, exactly as escape_json writes it, but copying each
 * run of characters that need no escape in one go: most text has none,
 * and escape_json appends one character at a time.
 */
static void
append_json_string(StringInfo buf, const char *s)
{
	const char *run = s;

	appendStringInfoChar(buf, '"');
	for (const char *p = s;; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		if (p > run)
			appendBinaryStringInfo(buf, run, p - run);
		if (c == '\0')
			break;
		switch (c)
		{
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			default:
				appendStringInfo(buf, "\\u%04x", (int) c);
				break;
		}
		run = p + 1;
	}
	appendStringInfoChar(buf, '"');
}

static void
append_json_field(StringInfo buf, const char *name, const char *value, bool comma)
{
	if (comma)
		appendStringInfoChar(buf, ',');
	append_json_string(buf, name);
	appendStringInfoChar(buf, ':');
	append_json_string(buf, value ? value : "");
}

/* The context object as JSON text. */
static void
append_context(StringInfo buf, Evcollector__EventContext *ctx)
{
	appendStringInfoChar(buf, '{');
	append_json_field(buf, "sent_at", ctx->sent_at, false);
	append_json_field(buf, "received_at", ctx->received_at, true);
	append_json_field(buf, "processed_at", ctx->processed_at, true);
	append_json_field(buf, "message_id", ctx->message_id, true);
	append_json_field(buf, "user_agent", ctx->user_agent, true);
	appendStringInfoChar(buf, '}');
}

/*
 * JSON text that decode_message checked, on one line: JSON Lines ends a
 * record at a newline, and JSON may have newlines between its tokens
 * (pretty-printed data_json).  Inside a string a newline is always escaped,
 * so every raw CR or LF of checked JSON is whitespace, and a space keeps
 * the same value.
 */
static void
append_json_one_line(StringInfo buf, const char *json)
{
	const char *run = json;
	const char *p;

	for (p = json; *p; p++)
	{
		if (*p != '\n' && *p != '\r')
			continue;
		appendBinaryStringInfo(buf, run, p - run);
		appendStringInfoChar(buf, ' ');
		run = p + 1;
	}
	appendBinaryStringInfo(buf, run, p - run);
}

/* One JSON Lines record: the event with its context, data and position. */
static void
append_archive_line(StringInfo buf, EvcPartitionBatch *pb, DecodedEvent *d)
{
	Evcollector__Event *ev = d->ev;

	appendStringInfoString(buf, "{\"topic\":");
	append_json_string(buf, pb->topic);
	appendStringInfo(buf, ",\"partition\":%d,\"offset\":" INT64_FORMAT ",\"timestamp\":" INT64_FORMAT,
					 pb->partition, d->msg->offset, d->msg->timestamp_ms);
	append_json_field(buf, "client", ev->client, true);
	append_json_field(buf, "event_name", ev->event_name, true);
	appendStringInfo(buf, ",\"schema_version\":%d,\"context\":", ev->schema_version);
	append_context(buf, ev->context);
	appendStringInfoString(buf, ",\"data\":");
	append_json_one_line(buf, ev->data_json);
	if (ev->blob.len > 0)
	{
		int			enclen = pg_b64_enc_len(ev->blob.len);
		char	   *enc = palloc(enclen + 1);
		int			n = pg_b64_encode((const char *) ev->blob.data, ev->blob.len, enc, enclen);

		enc[Max(n, 0)] = '\0';
		append_json_field(buf, "blob_content_type", ev->blob_content_type, true);
		append_json_field(buf, "blob_base64", enc, true);
	}
	appendStringInfoString(buf, "}\n");
}

static void
gzip_buffer(StringInfo in, StringInfo out)
{
	z_stream	zs;
	uLong		bound;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	rc = deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	if (rc != Z_OK)
		ereport(ERROR,
				(errcode(rc == Z_MEM_ERROR ? ERRCODE_OUT_OF_MEMORY : ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not initialise gzip compression for an archive file"),
				 errdetail("zlib's deflateInit2 returned %d: %s.", rc, zs.msg ? zs.msg : zError(rc))));
	bound = deflateBound(&zs, in->len);
	enlargeStringInfo(out, bound);
	zs.next_in = (Bytef *) in->data;
	zs.avail_in = in->len;
	zs.next_out = (Bytef *) out->data;
	zs.avail_out = bound;
	rc = deflate(&zs, Z_FINISH);
	if (rc != Z_STREAM_END)
	{
		const char *why = zs.msg ? zs.msg : zError(rc);

		deflateEnd(&zs);
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not gzip an archive file"),
				 errdetail("zlib's deflate of %d bytes returned %d: %s.", in->len, rc, why)));
	}
	out->len = zs.total_out;
	deflateEnd(&zs);
}

/* UTC hour of a Kafka timestamp; files never span two of them. */
static int64
hour_of(int64 timestamp_ms)
{
	if (timestamp_ms < 0)
		return 0;
	return timestamp_ms / (3600 * INT64CONST(1000));
}

/* Write one archive object and its index row. */
static void
archive_write_file(EvcConsumerConfig *cfg, EvcStorage *st, EvcPartitionBatch *pb,
				   DecodedEvent *events, int nevents, EvcLandResult *res)
{
	StringInfoData lines;
	StringInfoData gz;
	StringInfo	body = &lines;
	pg_time_t	t = (pg_time_t) (hour_of(events[0].msg->timestamp_ms) * 3600);
	struct pg_tm *tm = pg_gmtime(&t);
	char	   *key;
	char		sha[65];
	EvcStorageObject obj;
	Oid			types[10] = {TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID, INT4OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[10];
	int64		first = events[0].msg->offset;
	int64		last = events[nevents - 1].msg->offset;

	initStringInfo(&lines);
	for (int i = 0; i < nevents; i++)
		append_archive_line(&lines, pb, &events[i]);
	if (cfg->gzip)
	{
		initStringInfo(&gz);
		gzip_buffer(&lines, &gz);
		body = &gz;
	}
	key = psprintf("%s/%04d/%02d/%02d/%02d/%s+%d+%020lld.jsonl%s",
				   pb->topic, tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour,
				   pb->topic, pb->partition, (long long) first, cfg->gzip ? ".gz" : "");
	evc_sha256_hex(body->data, body->len, sha);
	obj.key = key;
	obj.data = body->data;
	obj.len = body->len;
	obj.content_type = cfg->gzip ? "application/gzip" : "application/x-ndjson";
	obj.sha256_hex = sha;
	evc_storage_put_at_sync(st, &obj);

	evc_spi_kept_plan(&plan_archive_file,
					  "INSERT INTO evc.archive_files (object_key, topic, partition, first_offset, last_offset, "
					  "events, bytes, sha256, compression, consumer) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
					  "ON CONFLICT (topic, partition, first_offset) DO UPDATE SET object_key = EXCLUDED.object_key, "
					  "last_offset = EXCLUDED.last_offset, events = EXCLUDED.events, bytes = EXCLUDED.bytes, "
					  "sha256 = EXCLUDED.sha256, compression = EXCLUDED.compression, consumer = EXCLUDED.consumer, "
					  "created_at = now()", 10, types);
	v[0] = CStringGetTextDatum(evc_storage_full_key(st, key));
	v[1] = CStringGetTextDatum(pb->topic);
	v[2] = Int32GetDatum(pb->partition);
	v[3] = Int64GetDatum(first);
	v[4] = Int64GetDatum(last);
	v[5] = Int32GetDatum(nevents);
	v[6] = Int64GetDatum(body->len);
	v[7] = CStringGetTextDatum(sha);
	v[8] = CStringGetTextDatum(cfg->gzip ? "gzip" : "none");
	v[9] = CStringGetTextDatum(cfg->name);
	evc_spi_execute_plan(plan_archive_file, v, NULL, SPI_OK_INSERT);
	res->landed += nevents;
	res->bytes += body->len;
}

static void
land_archive(EvcConsumerConfig *cfg, EvcStorage *st, EvcPartitionBatch *pb,
			 DecodedEvent *good, int ngood, EvcLandResult *res)
{
	int			start = 0;

	for (int i = 1; i <= ngood; i++)
	{
		if (i == ngood ||
			hour_of(good[i].msg->timestamp_ms) != hour_of(good[start].msg->timestamp_ms))
		{
			archive_write_file(cfg, st, pb, good + start, i - start, res);
			start = i;
		}
	}
}

static const char *
image_extension(const char *content_type)
{
	if (strcmp(content_type, "image/png") == 0)
		return "png";
	if (strcmp(content_type, "image/jpeg") == 0)
		return "jpg";
	if (strcmp(content_type, "image/gif") == 0)
		return "gif";
	if (strcmp(content_type, "image/webp") == 0)
		return "webp";
	return "bin";
}

static void
land_image(EvcConsumerConfig *cfg, EvcStorage *st, EvcPartitionBatch *pb,
		   DecodedEvent *d, EvcLandResult *res)
{
	Evcollector__Event *ev = d->ev;
	char		sha[65];
	char	   *key;
	char	   *full;
	Oid			seen_types[1] = {TEXTOID};
	Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, TEXTOID, INT4OID, INT8OID};
	Datum		v[10];
	char		n[10];
	TimestampTz sent_at;
	bool		sent_null;

	evc_sha256_hex((const char *) ev->blob.data, ev->blob.len, sha);
	key = psprintf("images/%.2s/%s.%s", sha, sha, image_extension(ev->blob_content_type));
	full = evc_storage_full_key(st, key);

	evc_spi_kept_plan(&plan_image_seen, "SELECT 1 FROM evc.images WHERE object_key = $1 LIMIT 1",
					  1, seen_types);
	v[0] = CStringGetTextDatum(full);
	evc_spi_execute_plan(plan_image_seen, v, NULL, SPI_OK_SELECT);
	/*
	 * Content already indexed, by a committed row or by one of this landing
	 * (whose object is queued): no second put.
	 */
	if (SPI_processed == 0)
	{
		EvcStorageObject obj = {key, (const char *) ev->blob.data, ev->blob.len,
		ev->blob_content_type, sha};

		evc_storage_put_at_sync(st, &obj);
		res->bytes += ev->blob.len;
	}

	evc_spi_kept_plan(&plan_image,
					  "INSERT INTO evc.images (message_id, source, object_key, content_type, width, height, bytes, "
					  "sha256, metadata, sent_at, topic, partition, \"offset\") "
					  "SELECT $1::uuid, d->>'source', $2, $3, "
					  "CASE WHEN d->>'width' ~ '^[0-9]{1,9}$' THEN (d->>'width')::int END, "
					  "CASE WHEN d->>'height' ~ '^[0-9]{1,9}$' THEN (d->>'height')::int END, "
					  "$4, $5, d->'metadata', $7, $8, $9, $10 "
					  "FROM (SELECT $6::jsonb AS d) AS s "
					  "ON CONFLICT (message_id) DO NOTHING", 10, types);
	memset(n, ' ', sizeof(n));
	(void) parse_timestamptz(ev->context->sent_at, &sent_at, &sent_null);
	v[0] = CStringGetTextDatum(d->message_id);
	v[1] = CStringGetTextDatum(full);
	v[2] = CStringGetTextDatum(ev->blob_content_type);
	v[3] = Int64GetDatum(ev->blob.len);
	v[4] = CStringGetTextDatum(sha);
	v[5] = CStringGetTextDatum(ev->data_json);
	v[6] = TimestampTzGetDatum(sent_at);
	n[6] = sent_null ? 'n' : ' ';
	v[7] = CStringGetTextDatum(pb->topic);
	v[8] = Int32GetDatum(pb->partition);
	v[9] = Int64GetDatum(d->msg->offset);
	evc_spi_execute_plan(plan_image, v, n, SPI_OK_INSERT);
	if (SPI_processed == 1)
		res->landed++;
	else
		res->skipped++;
}

static int
offset_cmp(const void *key, const void *elem)
{
	int64		offset = *(const int64 *) key;
	int64		other = ((const DecodedEvent *) elem)->msg->offset;

	return (offset > other) - (offset < other);
}

/*
 * The table sink lands a partition's events with one statement: the
 * columns go in as arrays, in offset order, ON CONFLICT (message_id) DO
 * NOTHING skips those landed before, and the offsets of the rows inserted
 * come back for the counters.
 */
static void
land_event_rows(EvcConsumerConfig *cfg, EvcPartitionBatch *pb, DecodedEvent *good, int n,
				EvcLandResult *res)
{
	Datum	   *cols[8];
	bool	   *sent_null = palloc(sizeof(bool) * n);
	Oid			types[10] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID, TEXTOID, INT4OID};
	Datum		v[10];
	uint64		inserted;

	evc_spi_kept_plan(&plan_event,
					  "INSERT INTO evc.events (message_id, client, event_name, schema_version, context, data, "
					  "sent_at, topic, partition, \"offset\") "
					  "SELECT r.message_id::uuid, r.client, r.event_name, r.schema_version, r.context::jsonb, "
					  "r.data::jsonb, r.sent_at, $9, $10, r.\"offset\" "
					  "FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) "
					  "AS r(message_id, client, event_name, schema_version, context, data, sent_at, \"offset\") "
					  "ORDER BY r.\"offset\" "
					  "ON CONFLICT (message_id) DO NOTHING RETURNING \"offset\"", 10, types);
	for (int c = 0; c < 8; c++)
		cols[c] = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		Evcollector__Event *ev = good[i].ev;
		StringInfoData ctx;
		TimestampTz sent_at = 0;

		initStringInfo(&ctx);
		append_context(&ctx, ev->context);
		(void) parse_timestamptz(ev->context->sent_at, &sent_at, &sent_null[i]);
		cols[0][i] = CStringGetTextDatum(good[i].message_id);
		cols[1][i] = CStringGetTextDatum(ev->client);
		cols[2][i] = CStringGetTextDatum(ev->event_name);
		cols[3][i] = Int32GetDatum(ev->schema_version);
		cols[4][i] = CStringGetTextDatum(ctx.data);
		cols[5][i] = CStringGetTextDatum(ev->data_json);
		cols[6][i] = TimestampTzGetDatum(sent_at);
		cols[7][i] = Int64GetDatum(good[i].msg->offset);
	}
	v[0] = PointerGetDatum(evc_array_from_datums(TEXTOID, cols[0], NULL, n));
	v[1] = PointerGetDatum(evc_array_from_datums(TEXTOID, cols[1], NULL, n));
	v[2] = PointerGetDatum(evc_array_from_datums(TEXTOID, cols[2], NULL, n));
	v[3] = PointerGetDatum(evc_array_from_datums(INT4OID, cols[3], NULL, n));
	v[4] = PointerGetDatum(evc_array_from_datums(TEXTOID, cols[4], NULL, n));
	v[5] = PointerGetDatum(evc_array_from_datums(TEXTOID, cols[5], NULL, n));
	v[6] = PointerGetDatum(evc_array_from_datums(TIMESTAMPTZOID, cols[6], sent_null, n));
	v[7] = PointerGetDatum(evc_array_from_datums(INT8OID, cols[7], NULL, n));
	v[8] = CStringGetTextDatum(pb->topic);
	v[9] = Int32GetDatum(pb->partition);
	evc_spi_execute_plan(plan_event, v, NULL, SPI_OK_INSERT_RETURNING);

	inserted = SPI_processed;
	for (uint64 r = 0; r < inserted; r++)
	{
		bool		isnull;
		int64		offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
														 SPI_tuptable->tupdesc, 1, &isnull));
		DecodedEvent *d = bsearch(&offset, good, n, sizeof(DecodedEvent), offset_cmp);

		if (d != NULL)
			res->bytes += d->msg->len;
	}
	SPI_freetuptable(SPI_tuptable);
	res->landed += inserted;
	res->skipped += n - inserted;
}

static void
sink_land_partition(EvcConsumerConfig *cfg, EvcStorage *st, EvcPartitionBatch *pb,
					int64 next_offset, EvcLandResult *res)
{
	DecodedEvent *good = palloc(sizeof(DecodedEvent) * Max(pb->nmessages, 1));
	int			ngood = 0;

	if (cfg->sink == EVC_SINK_AGGREGATES)
	{
		evc_sink_land_aggregates(cfg, pb, next_offset, res);
		return;
	}
	for (int i = 0; i < pb->nmessages; i++)
	{
		EvcMessage *m = &pb->messages[i];
		DecodedEvent d;

		if (m->offset < next_offset)
		{
			res->skipped++;		/* landed by an earlier delivery */
			continue;
		}
		decode_message(cfg, m, &d);
		if (d.ev == NULL)
		{
			evc_sink_dead_letter(cfg, pb, d.msg, d.message_id, d.error);
			res->dead_lettered++;
			continue;
		}
		switch (cfg->sink)
		{
			case EVC_SINK_ARCHIVE:
			case EVC_SINK_TABLE:
				good[ngood++] = d;
				break;
			case EVC_SINK_IMAGES:
				land_image(cfg, st, pb, &d, res);
				break;
			case EVC_SINK_AGGREGATES:
				break;			/* landed above */
		}
	}
	if (ngood > 0 && cfg->sink == EVC_SINK_ARCHIVE)
		land_archive(cfg, st, pb, good, ngood, res);
	else if (ngood > 0 && cfg->sink == EVC_SINK_TABLE)
		land_event_rows(cfg, pb, good, ngood, res);
}

/*
 * What a partition's share needs in memory (decoded events, the text of
 * its files) goes in a context of its own, emptied before the next
 * partition.  It keeps its first megabyte, which is about what a file of
 * the default batch_size needs, so landings do not ask the kernel for
 * fresh pages each time.
 */
void
evc_sink_land(EvcConsumerConfig *cfg, EvcStorage *st, EvcPartitionBatch *pb,
			  int64 next_offset, EvcLandResult *res)
{
	MemoryContext old;

	if (sink_cxt == NULL)
		sink_cxt = AllocSetContextCreate(TopMemoryContext, "evcollector sink",
										 1024 * 1024, 1024 * 1024, 8 * 1024 * 1024);
	MemoryContextReset(sink_cxt);	/* after a landing that failed, too */
	old = MemoryContextSwitchTo(sink_cxt);
	sink_land_partition(cfg, st, pb, next_offset, res);
	MemoryContextSwitchTo(old);
	MemoryContextReset(sink_cxt);
}
