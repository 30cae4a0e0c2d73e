/*
 * proto.c
 *		Owns the translation between PostgreSQL values and the wire format
 *		in proto/evcollector.proto: encoding events and schema records, the
 *		processed_at stamp the relay applies, and decoding for inspection.
 *
 * protobuf-c allocates with malloc by default; every call here passes a
 * ProtobufCAllocator backed by palloc, so that memory belongs to the
 * current memory context and an error cannot leak it.
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
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

/*
 * A decoded string field, checked before it goes into JSON text: jsonb_in
 * takes text that the server has already checked for its encoding, and
 * protobuf-c checks nothing, so a string that is not valid UTF-8 would
 * land in the jsonb as it is.
 */
static const char *
checked_text(const char *s, const char *message, const char *field)
{
	s = nz(s);
	if (!pg_verifymbstr(s, strlen(s), true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("could not decode %s message", message),
				 errdetail("Its field \"%s\" is not valid in the database encoding.", field)));
	return s;
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

/* ---------- context.processed_at, stamped by the relay ---------- */

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

static size_t
varint_size(uint64 v)
{
	size_t		n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

/* A varint at *p, not past end; false when it is cut short or too long. */
static bool
get_varint(const uint8 **p, const uint8 *end, uint64 *v)
{
	uint64		r = 0;

	for (int shift = 0; shift < 64 && *p < end; shift += 7)
	{
		uint8		b = *(*p)++;

		r |= (uint64) (b & 0x7F) << shift;
		if ((b & 0x80) == 0)
		{
			*v = r;
			return true;
		}
	}
	return false;
}

/*
 * One field of an encoded message: its number and wire type, where its tag
 * starts, where its value starts (after the length, for a length-delimited
 * field) and where it ends.
 */
typedef struct WireField
{
	uint64		number;
	int			wire_type;
	const uint8 *start;
	const uint8 *value;
	const uint8 *end;
} WireField;

/* The field at *p, which it moves past; false when the bytes are not one. */
static bool
next_field(const uint8 **p, const uint8 *end, WireField *f)
{
	uint64		tag;
	uint64		n;

	f->start = *p;
	if (!get_varint(p, end, &tag) || (tag >> 3) == 0)
		return false;
	f->number = tag >> 3;
	f->wire_type = tag & 7;
	switch (f->wire_type)
	{
		case 0:					/* varint */
			f->value = *p;
			if (!get_varint(p, end, &n))
				return false;
			break;
		case 1:					/* 64-bit */
		case 5:					/* 32-bit */
			n = f->wire_type == 1 ? 8 : 4;
			if (n > (uint64) (end - *p))
				return false;
			f->value = *p;
			*p += n;
			break;
		case 2:					/* length-delimited */
			if (!get_varint(p, end, &n) || n > (uint64) (end - *p))
				return false;
			f->value = *p;
			*p += n;
			break;
		default:				/* groups: no message of ours has one */
			return false;
	}
	f->end = *p;
	return true;
}

/*
 * In the encoded message [p, end), where the length-delimited field number
 * is, or would go if it were absent: [*at, *after) is the field (empty when
 * absent) and *value its contents.  False unless every field appears once,
 * in number order, as protoc and protobuf-c encode a message: only then is
 * a splice at that place the canonical encoding.
 */
static bool
find_field_slot(const uint8 *p, const uint8 *end, uint64 number,
				const uint8 **at, const uint8 **after, const uint8 **value)
{
	uint64		last = 0;
	WireField	f;

	*at = *after = *value = NULL;
	while (p < end)
	{
		if (!next_field(&p, end, &f) || f.number <= last)
			return false;
		last = f.number;
		if (*at != NULL)
			continue;
		if (f.number == number)
		{
			if (f.wire_type != 2)
				return false;
			*at = f.start;
			*after = f.end;
			*value = f.value;
		}
		else if (f.number > number)
			*at = *after = *value = f.start;
	}
	if (*at == NULL)
		*at = *after = *value = end;
	return true;
}

/* Whether a decoded message, or one inside it, kept a field numbered 0. */
static bool
has_field_zero(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *desc = msg->descriptor;

	for (unsigned i = 0; i < msg->n_unknown_fields; i++)
		if (msg->unknown_fields[i].tag == 0)
			return true;
	for (unsigned i = 0; i < desc->n_fields; i++)
	{
		const ProtobufCFieldDescriptor *fd = &desc->fields[i];

		if (fd->type == PROTOBUF_C_TYPE_MESSAGE && fd->label != PROTOBUF_C_LABEL_REPEATED)
		{
			const ProtobufCMessage *sub = *(ProtobufCMessage *const *) ((const char *) msg + fd->offset);

			if (sub != NULL && has_field_zero(sub))
				return true;
		}
	}
	return false;
}

/*
 * The slow way, for an event that is not canonical (an outbox row written by
 * hand, or an event stamped by an older relay, which appended a second
 * context): decode it, merging what protobuf merges, set processed_at,
 * encode it again.  An event that does not decode, or would not fit, is
 * copied as it is.
 */
static size_t
set_processed_at_by_repacking(const uint8 *event, size_t len, const char *processed_at,
							  uint8 *out, size_t outlen)
{
	Evcollector__Event *ev;
	Evcollector__EventContext fresh = EVCOLLECTOR__EVENT_CONTEXT__INIT;
	Evcollector__EventContext *ctx;
	char	   *was;
	size_t		n = 0;

	ev = evcollector__event__unpack(&evc_pb_allocator, len, event);
	/*
	 * protobuf-c keeps a field numbered 0 as an unknown field when its tag
	 * is written in two bytes (0x80 0x00), and then packs it as 0x00, which
	 * no decoder takes.  Field 0 is not protobuf at all: such an event does
	 * not decode, and is copied as it is.
	 */
	if (ev != NULL && has_field_zero(&ev->base))
	{
		evcollector__event__free_unpacked(ev, &evc_pb_allocator);
		ev = NULL;
	}
	if (ev != NULL)
	{
		/* Put back what unpack made before free_unpacked frees it. */
		ctx = ev->context ? ev->context : &fresh;
		was = ctx->processed_at;
		ctx->processed_at = (char *) processed_at;
		ev->context = ctx;
		if (evcollector__event__get_packed_size(ev) <= outlen)
			n = evcollector__event__pack(ev, out);
		ctx->processed_at = was;
		if (ctx == &fresh)
			ev->context = NULL;
		evcollector__event__free_unpacked(ev, &evc_pb_allocator);
	}
	if (n == 0)
	{
		memcpy(out, event, len);
		n = len;
	}
	return n;
}

/*
 * Write into out the encoded Event event[0..len) with context.processed_at
 * set, encoded as protoc would encode that message: each field once, in
 * field order.  Returns the bytes written.  out must hold len +
 * EVC_PROCESSED_AT_MAX bytes; an event that cannot be stamped within that
 * (or does not decode) is copied unchanged.
 *
 * The relay stamps every event it produces, some 600,000 a second, which
 * leaves it about 1.7 us per event for everything.  protobuf-c's unpack and
 * pack of a 250-byte event take 160-210 ns (it allocates and copies every
 * string, and the data; 2.1 us for 100 KB), a tenth of that budget; the
 * splice takes 25 ns, barely more than the copy the relay makes anyway.
 * So a canonical event is stamped by splicing its bytes: field 3 goes inside
 * field 4 (context), after the context's fields 1-2 and before 4-5,
 * replacing a processed_at already there, and the context's length is
 * written anew.  Anything else takes the protobuf-c way.
 */
size_t
evc_event_set_processed_at(const uint8 *event, size_t len, const char *processed_at,
						   uint8 *out, size_t outlen)
{
	const uint8 *end = event + len;
	const uint8 *ctx_at,
			   *ctx_after,
			   *ctx,
			   *ts_at,
			   *ts_after,
			   *ts;
	size_t		slen = strlen(processed_at);
	size_t		ts_len = slen > 0 ? 1 + varint_size(slen) + slen : 0;
	size_t		ctx_len;
	size_t		n;
	uint8	   *o = out;

	Assert(outlen >= len);
	if (!find_field_slot(event, end, 4, &ctx_at, &ctx_after, &ctx) ||
		!find_field_slot(ctx, ctx_after, 3, &ts_at, &ts_after, &ts))
		return set_processed_at_by_repacking(event, len, processed_at, out, outlen);

	ctx_len = (ctx_after - ctx) - (ts_after - ts_at) + ts_len;
	n = (ctx_at - event) + 1 + varint_size(ctx_len) + ctx_len + (end - ctx_after);
	if (n > outlen)
	{
		memcpy(out, event, len);
		return len;
	}
	memcpy(o, event, ctx_at - event);
	o += ctx_at - event;
	*o++ = (4 << 3) | 2;
	o += put_varint(o, ctx_len);
	memcpy(o, ctx, ts_at - ctx);
	o += ts_at - ctx;
	if (slen > 0)
	{
		*o++ = (3 << 3) | 2;
		o += put_varint(o, slen);
		memcpy(o, processed_at, slen);
		o += slen;
	}
	memcpy(o, ts_after, ctx_after - ts_after);
	o += ctx_after - ts_after;
	memcpy(o, ctx_after, end - ctx_after);
	o += end - ctx_after;
	Assert(o - out == n);
	return n;
}

/*
 * evc_set_processed_at(payload bytea, processed_at text) RETURNS bytea: the
 * relay's stamp, for the wire-format test (test/suites/wire_format.sql),
 * which declares it in pg_temp; the extension's SQL does not.
 */
PG_FUNCTION_INFO_V1(evc_set_processed_at);
Datum
evc_set_processed_at(PG_FUNCTION_ARGS)
{
	bytea	   *payload = PG_GETARG_BYTEA_PP(0);
	char	   *processed_at = text_to_cstring(PG_GETARG_TEXT_PP(1));
	size_t		len = VARSIZE_ANY_EXHDR(payload);
	size_t		outlen = len + EVC_PROCESSED_AT_MAX;
	bytea	   *out = palloc(VARHDRSZ + outlen);
	size_t		n;

	n = evc_event_set_processed_at((const uint8 *) VARDATA_ANY(payload), len, processed_at,
								   (uint8 *) VARDATA(out), outlen);
	SET_VARSIZE(out, VARHDRSZ + n);
	PG_RETURN_BYTEA_P(out);
}

static void
json_field(StringInfo buf, const char *name, const char *value, bool first)
{
	if (!first)
		appendStringInfoChar(buf, ',');
	escape_json(buf, name);
	appendStringInfoChar(buf, ':');
	escape_json(buf, checked_text(value, "evcollector.Event", name));
}

/*
 * Whether s is one JSON value, as jsonb_in would read it.  data_json goes
 * into the decoded event's text as it is, so anything else would either
 * break that text or add keys of its own ("1, \"client\": \"x\"").
 */
static bool
is_json_value(const char *s, char **why)
{
	JsonLexContext *lex = makeJsonLexContextCstringLen((char *) s, strlen(s),
													   GetDatabaseEncoding(), true);
	JsonParseErrorType rc = pg_parse_json(lex, &nullSemAction);

	if (rc == JSON_SUCCESS)
		return true;
	*why = json_errdetail(rc, lex);
	return false;
}

/* Decode an Event into jsonb, for evc_decode_event() and tests. */
Jsonb *
evc_decode_event_jsonb(const uint8 *data, size_t len)
{
	Evcollector__Event *ev;
	StringInfoData buf;
	Datum		result;
	char	   *why;

	ev = evcollector__event__unpack(&evc_pb_allocator, len, data);
	if (ev == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("could not decode evcollector event"),
				 errdetail("The %zu bytes are not a valid evcollector.Event protobuf message.", len)));
	if (ev->data_json && ev->data_json[0] &&
		!is_json_value(checked_text(ev->data_json, "evcollector.Event", "data_json"), &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("could not decode evcollector event"),
				 errdetail("Its data_json is not valid JSON: %s", why)));

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

/* n as exactly width decimal digits (n >= 0 and below 10^width). */
static char *
put_digits(char *p, int n, int width)
{
	for (int i = width - 1; i >= 0; i--)
	{
		p[i] = '0' + n % 10;
		n /= 10;
	}
	return p + width;
}

/*
 * RFC 3339 in UTC with microseconds, as the wire format carries times,
 * into buf (EVC_TIMESTAMP_BUFLEN bytes); returns its length.  Every event
 * carries two, and the gateway writes hundreds of thousands a second: the
 * digits are put in by hand, with no palloc and no snprintf, for the years
 * 0 to 9999 that "%04d" writes in four digits; others (BC, or past 9999)
 * take snprintf, which writes the same text.
 */
int
evc_format_timestamp_buf(TimestampTz ts, char *buf)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char	   *p = buf;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	if (tm.tm_year < 0 || tm.tm_year > 9999)
		return snprintf(buf, EVC_TIMESTAMP_BUFLEN, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
						tm.tm_year, tm.tm_mon, tm.tm_mday,
						tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
	p = put_digits(p, tm.tm_year, 4);
	*p++ = '-';
	p = put_digits(p, tm.tm_mon, 2);
	*p++ = '-';
	p = put_digits(p, tm.tm_mday, 2);
	*p++ = 'T';
	p = put_digits(p, tm.tm_hour, 2);
	*p++ = ':';
	p = put_digits(p, tm.tm_min, 2);
	*p++ = ':';
	p = put_digits(p, tm.tm_sec, 2);
	*p++ = '.';
	p = put_digits(p, (int) fsec, 6);
	*p++ = 'Z';
	*p = '\0';
	return p - buf;
}

/* evc_format_timestamp_buf's text, palloc'd. */
char *
evc_format_timestamp(TimestampTz ts)
{
	char		buf[EVC_TIMESTAMP_BUFLEN];

	evc_format_timestamp_buf(ts, buf);
	return pstrdup(buf);
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
append_value_json(StringInfo buf, const ProtobufCMessageDescriptor *desc,
				  const ProtobufCFieldDescriptor *fd, const void *member)
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
			escape_json(buf, checked_text(*(char *const *) member, desc->name, fd->name));
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
				append_value_json(buf, desc, fd, arr + j * field_element_size(fd->type));
			}
			appendStringInfoChar(buf, ']');
		}
		else
			append_value_json(buf, desc, fd, member);
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
