/*
 * proto.c
 *		Owns the translation between PostgreSQL values and the wire format
 *		in proto/evcollector.proto: encoding events and schema records, the
 *		processed_at patch the relay applies, and decoding for inspection.
 *
 * protobuf-c allocates with malloc by default; every call here passes a
 * ProtobufCAllocator backed by palloc, so that memory belongs to the
 * current memory context and an error cannot leak it.
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "evcollector.pb-c.h"
#include "kafka/proto.h"

static void *
pb_alloc(void *data, size_t size)
{
	return palloc(size);
}

static void
pb_free(void *data, void *ptr)
{
	if (ptr)
		pfree(ptr);
}

/* Shared by every file that packs or unpacks our messages. */
ProtobufCAllocator evc_pb_allocator = {pb_alloc, pb_free, NULL};

static char *
nz(const char *s)
{
	return (char *) (s ? s : "");
}

bytea *
evc_encode_event(const EvcEventFields *f)
{
	Evcollector__Event ev = EVCOLLECTOR__EVENT__INIT;
	Evcollector__EventContext ctx = EVCOLLECTOR__EVENT_CONTEXT__INIT;
	size_t		len;
	bytea	   *out;

	ctx.sent_at = nz(f->sent_at);
	ctx.received_at = nz(f->received_at);
	ctx.message_id = nz(f->message_id);
	ctx.user_agent = nz(f->user_agent);
	ev.client = nz(f->client);
	ev.event_name = nz(f->event_name);
	ev.schema_version = f->schema_version;
	ev.context = &ctx;
	ev.data_json = nz(f->data_json);
	ev.blob.data = (uint8_t *) f->blob;
	ev.blob.len = f->blob ? f->blob_len : 0;
	ev.blob_content_type = nz(f->blob_content_type);

	len = evcollector__event__get_packed_size(&ev);
	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	evcollector__event__pack(&ev, (uint8_t *) VARDATA(out));
	return out;
}

bytea *
evc_encode_schema_record(const char *client, const char *event_name, int32 version,
						 const char *schema_json, const char *topic,
						 const char *created_at, const char *created_by)
{
	Evcollector__SchemaRecord rec = EVCOLLECTOR__SCHEMA_RECORD__INIT;
	size_t		len;
	bytea	   *out;

	rec.client = nz(client);
	rec.event_name = nz(event_name);
	rec.version = version;
	rec.schema_json = nz(schema_json);
	rec.topic = nz(topic);
	rec.created_at = nz(created_at);
	rec.created_by = nz(created_by);
	len = evcollector__schema_record__get_packed_size(&rec);
	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	evcollector__schema_record__pack(&rec, (uint8_t *) VARDATA(out));
	return out;
}

bytea *
evc_encode_aggregate(const EvcAggregateFields *f)
{
	Evcollector__AggregatedEvent agg = EVCOLLECTOR__AGGREGATED_EVENT__INIT;
	size_t		len;
	bytea	   *out;

	agg.client = nz(f->client);
	agg.event_name = nz(f->event_name);
	agg.function = nz(f->function);
	agg.group_key = nz(f->group_key);
	agg.window_start = nz(f->window_start);
	agg.window_seconds = f->window_seconds;
	agg.window_name = nz(f->window_name);
	agg.value_decimal = nz(f->value_decimal);
	agg.value = strtod(agg.value_decimal, NULL);
	agg.count = f->count;
	agg.revision = f->revision;
	agg.computed_at = nz(f->computed_at);
	len = evcollector__aggregated_event__get_packed_size(&agg);
	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	evcollector__aggregated_event__pack(&agg, (uint8_t *) VARDATA(out));
	return out;
}

static size_t
put_varint(uint8 *p, uint64 v)
{
	size_t		n = 0;

	do
	{
		uint8		b = v & 0x7F;

		v >>= 7;
		p[n++] = b | (v ? 0x80 : 0);
	} while (v);
	return n;
}

/*
 * The relay stamps context.processed_at on an encoded Event without decoding
 * it.  Protobuf merges repeated occurrences of an embedded message field and
 * lets the last scalar win, so appending
 *     field 4 (context) { field 3 (processed_at): "<ts>" }
 * to the encoded bytes sets processed_at and keeps everything else.  This is
 * written by hand because protobuf-c has no API for it, and it saves a
 * decode and an encode per event in the relay's hot path.
 * Returns the number of bytes written into buf.
 */
size_t
evc_processed_at_patch(const char *processed_at, uint8 *buf, size_t buflen)
{
	size_t		slen = strlen(processed_at);
	uint8		inner[16];
	size_t		ilen;
	size_t		n = 0;

	if (buflen < slen + 24)
		return 0;
	inner[0] = (3 << 3) | 2;
	ilen = 1 + put_varint(inner + 1, slen);

	buf[n++] = (4 << 3) | 2;
	n += put_varint(buf + n, ilen + slen);
	memcpy(buf + n, inner, ilen);
	n += ilen;
	memcpy(buf + n, processed_at, slen);
	return n + slen;
}

static void
json_field(StringInfo buf, const char *name, const char *value, bool first)
{
	if (!first)
		appendStringInfoChar(buf, ',');
	escape_json(buf, name);
	appendStringInfoChar(buf, ':');
	escape_json(buf, value ? value : "");
}

/* Decode an Event into jsonb, for evc_decode_event() and tests. */
Jsonb *
evc_decode_event_jsonb(const uint8 *data, size_t len)
{
	Evcollector__Event *ev;
	StringInfoData buf;
	Datum		result;

	ev = evcollector__event__unpack(&evc_pb_allocator, len, data);
	if (ev == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("could not decode evcollector event"),
				 errdetail("The %zu bytes are not a valid evcollector.Event protobuf message.", len)));

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	json_field(&buf, "client", ev->client, true);
	json_field(&buf, "event_name", ev->event_name, false);
	appendStringInfo(&buf, ",\"schema_version\":%d,\"context\":{", ev->schema_version);
	if (ev->context)
	{
		json_field(&buf, "sent_at", ev->context->sent_at, true);
		json_field(&buf, "received_at", ev->context->received_at, false);
		json_field(&buf, "processed_at", ev->context->processed_at, false);
		json_field(&buf, "message_id", ev->context->message_id, false);
		json_field(&buf, "user_agent", ev->context->user_agent, false);
	}
	appendStringInfoString(&buf, "},\"data\":");
	appendStringInfoString(&buf, ev->data_json && ev->data_json[0] ? ev->data_json : "null");
	appendStringInfo(&buf, ",\"blob_bytes\":%zu", ev->blob.len);
	json_field(&buf, "blob_content_type", ev->blob_content_type, false);
	appendStringInfoChar(&buf, '}');
	evcollector__event__free_unpacked(ev, &evc_pb_allocator);

	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	return DatumGetJsonbP(result);
}

/* RFC 3339 in UTC with microseconds, as the wire format carries times. */
char *
evc_format_timestamp(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * An RFC 3339 timestamp, as evc_format_timestamp writes and senders may
 * set, parsed with PostgreSQL's own date parser but without throwing: the
 * sinks land or dead-letter an event rather than fail on it.  False for ""
 * and for anything that is not a plain date and time.
 */
bool
evc_parse_timestamp(const char *s, TimestampTz *out)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_tm tt;
	fsec_t		fsec;
	int			tz;

	if (s == NULL || s[0] == '\0' || strlen(s) >= MAXDATELEN)
		return false;
	return ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) == 0 &&
		DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, &tz) == 0 &&
		dtype == DTK_DATE &&
		tm2timestamp(&tt, fsec, &tz, out) == 0;
}

/* ---------- generic decoding, by descriptor ---------- */

static const ProtobufCMessageDescriptor *const known_messages[] = {
	&evcollector__event__descriptor,
	&evcollector__event_context__descriptor,
	&evcollector__schema_record__descriptor,
	&evcollector__aggregated_event__descriptor,
	&evcollector__worker_metrics__descriptor,
	&evcollector__partition_lag__descriptor,
	&evcollector__metrics__descriptor,
};

static void append_message_json(StringInfo buf, const ProtobufCMessage *msg);

static void
append_double_json(StringInfo buf, double d)
{
	if (isnan(d) || isinf(d))
		appendStringInfoString(buf, "null");
	else
		appendStringInfo(buf, "%.17g", d);
}

/* One value of a field; member points at it (an array element when repeated). */
static void
append_value_json(StringInfo buf, const ProtobufCFieldDescriptor *fd, const void *member)
{
	switch (fd->type)
	{
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_SINT32:
		case PROTOBUF_C_TYPE_SFIXED32:
		case PROTOBUF_C_TYPE_ENUM:
			appendStringInfo(buf, "%d", *(const int32_t *) member);
			break;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_SINT64:
		case PROTOBUF_C_TYPE_SFIXED64:
			appendStringInfo(buf, INT64_FORMAT, (int64) *(const int64_t *) member);
			break;
		case PROTOBUF_C_TYPE_UINT32:
		case PROTOBUF_C_TYPE_FIXED32:
			appendStringInfo(buf, "%u", *(const uint32_t *) member);
			break;
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64:
			appendStringInfo(buf, UINT64_FORMAT, (uint64) *(const uint64_t *) member);
			break;
		case PROTOBUF_C_TYPE_FLOAT:
			append_double_json(buf, *(const float *) member);
			break;
		case PROTOBUF_C_TYPE_DOUBLE:
			append_double_json(buf, *(const double *) member);
			break;
		case PROTOBUF_C_TYPE_BOOL:
			appendStringInfoString(buf, *(const protobuf_c_boolean *) member ? "true" : "false");
			break;
		case PROTOBUF_C_TYPE_STRING:
			escape_json(buf, nz(*(char *const *) member));
			break;
		case PROTOBUF_C_TYPE_BYTES:
			{
				const ProtobufCBinaryData *b = member;
				int			enclen = pg_b64_enc_len(b->len);
				char	   *enc = palloc(enclen + 1);
				int			n = pg_b64_encode((const char *) b->data, b->len, enc, enclen);

				enc[Max(n, 0)] = '\0';
				escape_json(buf, enc);
				break;
			}
		case PROTOBUF_C_TYPE_MESSAGE:
			if (*(ProtobufCMessage *const *) member == NULL)
				appendStringInfoString(buf, "null");
			else
				append_message_json(buf, *(ProtobufCMessage *const *) member);
			break;
	}
}

static size_t
field_element_size(ProtobufCType type)
{
	switch (type)
	{
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_SINT64:
		case PROTOBUF_C_TYPE_SFIXED64:
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64:
			return 8;
		case PROTOBUF_C_TYPE_DOUBLE:
			return sizeof(double);
		case PROTOBUF_C_TYPE_BOOL:
			return sizeof(protobuf_c_boolean);
		case PROTOBUF_C_TYPE_STRING:
		case PROTOBUF_C_TYPE_MESSAGE:
			return sizeof(void *);
		case PROTOBUF_C_TYPE_BYTES:
			return sizeof(ProtobufCBinaryData);
		default:
			return 4;
	}
}

static void
append_message_json(StringInfo buf, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *desc = msg->descriptor;

	appendStringInfoChar(buf, '{');
	for (unsigned i = 0; i < desc->n_fields; i++)
	{
		const ProtobufCFieldDescriptor *fd = &desc->fields[i];
		const char *member = (const char *) msg + fd->offset;

		if (i > 0)
			appendStringInfoChar(buf, ',');
		escape_json(buf, fd->name);
		appendStringInfoChar(buf, ':');
		if (fd->label == PROTOBUF_C_LABEL_REPEATED)
		{
			size_t		n = *(const size_t *) ((const char *) msg + fd->quantifier_offset);
			const char *arr = *(char *const *) member;

			appendStringInfoChar(buf, '[');
			for (size_t j = 0; j < n; j++)
			{
				if (j > 0)
					appendStringInfoChar(buf, ',');
				append_value_json(buf, fd, arr + j * field_element_size(fd->type));
			}
			appendStringInfoChar(buf, ']');
		}
		else
			append_value_json(buf, fd, member);
	}
	appendStringInfoChar(buf, '}');
}

/*
 * evc_decode(payload bytea, message text) returns jsonb: any message of
 * proto/evcollector.proto as JSON, field names as in the .proto, bytes in
 * base64, 64-bit integers as numbers.
 */
PG_FUNCTION_INFO_V1(evc_decode);
Datum
evc_decode(PG_FUNCTION_ARGS)
{
	bytea	   *payload = PG_GETARG_BYTEA_PP(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const ProtobufCMessageDescriptor *desc = NULL;
	ProtobufCMessage *msg;
	StringInfoData buf;

	for (int i = 0; i < lengthof(known_messages); i++)
		if (strcmp(name, known_messages[i]->name) == 0 || strcmp(name, known_messages[i]->short_name) == 0)
			desc = known_messages[i];
	if (desc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown message type \"%s\"", name),
				 errhint("Use a message of proto/evcollector.proto: Event, SchemaRecord, AggregatedEvent, Metrics.")));
	msg = protobuf_c_message_unpack(desc, &evc_pb_allocator, VARSIZE_ANY_EXHDR(payload),
									(const uint8_t *) VARDATA_ANY(payload));
	if (msg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("could not decode %s message", desc->name),
				 errdetail("The %zu bytes are not a valid %s protobuf message.",
						   (size_t) VARSIZE_ANY_EXHDR(payload), desc->name)));
	initStringInfo(&buf);
	append_message_json(&buf, msg);
	protobuf_c_message_free_unpacked(msg, &evc_pb_allocator);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
