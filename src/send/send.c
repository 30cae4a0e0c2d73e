/*
 * send.c
 *		Owns the producing SQL surface: evc_send, evc_send_image and
 *		evc_decode_event.
 *
 * evc_send checks the event against the latest registered schema, fills in
 * its context, encodes the protobuf envelope and writes it to evc.outbox in
 * the caller's transaction.  The relay does the rest after commit.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "core/guc.h"
#include "send/image.h"
#include "kafka/kafka.h"
#include "send/outbox.h"
#include "send/send.h"
#include "kafka/proto.h"
#include "registry/registry.h"
#include "util/fmgr_args.h"

#define MAX_SOURCE_LEN 200

/* The string value of key in a jsonb object, or NULL when absent. */
static char *
context_string(Jsonb *ctx, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&ctx->root, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event context"),
				 errdetail("At /%s: expected a string.", key)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Callers may set sent_at, message_id and user_agent; the rest is ours. */
static void
check_context_keys(Jsonb *ctx)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(ctx) || JB_ROOT_IS_SCALAR(ctx))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event context"),
				 errdetail("The context must be a JSON object.")));
	it = JsonbIteratorInit(&ctx->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		if (strcmp(key, "sent_at") != 0 && strcmp(key, "message_id") != 0 &&
			strcmp(key, "user_agent") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid event context"),
					 errdetail("At /%s: unknown context field.", key),
					 errhint("A caller may set sent_at, message_id and user_agent; received_at and processed_at are set by evcollector.")));
	}
}

/*
 * Run a type's input function on a caller's context field.  Only a data
 * exception (SQLSTATE class 22: bad syntax, out of range, unknown time
 * zone) means the field is wrong, and becomes "invalid event context";
 * anything else (out of memory, a cancel, an internal error) is re-thrown
 * as it was.  PostgreSQL 15 has no soft input functions (they came in 16),
 * so the error is caught and its code looked at.
 */
static Datum
context_input(PGFunction input, const char *field, const char *s, int errcode_syntax,
			  const char *type_name)
{
	Datum		result = (Datum) 0;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		/* typioparam and typmod, which uuid_in does not read */
		result = DirectFunctionCall3(input, CStringGetDatum(s), ObjectIdGetDatum(InvalidOid),
									 Int32GetDatum(-1));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		/* Past bad syntax (out of range, unknown time zone), say what it was. */
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("invalid event context"),
				 edata->sqlerrcode == errcode_syntax ?
				 errdetail("At /%s: \"%s\" is not a %s.", field, s, type_name) :
				 errdetail("At /%s: \"%s\" is not a %s: %s.", field, s, type_name, edata->message)));
	}
	PG_END_TRY();
	return result;
}

/* Parse a caller's timestamp, naming the field when it is not one. */
static TimestampTz
parse_timestamp(const char *field, const char *s)
{
	TimestampTz ts = DatumGetTimestampTz(context_input(timestamptz_in, field, s,
													   ERRCODE_INVALID_DATETIME_FORMAT, "timestamp"));
	struct pg_tm tm;
	fsec_t		fsec;

	/*
	 * The wire format carries times as RFC 3339, whose years are four
	 * digits: a BC time or one past 9999 would reach consumers as text
	 * their RFC 3339 parsers refuse.
	 */
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0 || tm.tm_year < 1 || tm.tm_year > 9999)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("invalid event context"),
				 errdetail("At /%s: \"%s\" is outside the years 0001 to 9999 that RFC 3339 times, as the wire format carries them, can write.",
						   field, s)));
	return ts;
}

static pg_uuid_t *
parse_uuid(const char *field, const char *s)
{
	return DatumGetUUIDP(context_input(uuid_in, field, s,
									   ERRCODE_INVALID_TEXT_REPRESENTATION, "uuid"));
}

static void
check_event_size(bytea *payload, int limit_kb, const char *setting)
{
	size_t		len = VARSIZE(payload) - VARHDRSZ;

	if (len > (size_t) limit_kb * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event is too large"),
				 errdetail("The encoded event has %zu bytes; %s allows %d kB.", len, setting, limit_kb),
				 errhint("Send less data per event, or raise %s (and the brokers' message.max.bytes).", setting)));
}

/* The event type of client.event_name, or NULL (require_schema off). */
static EvcEventType *
send_event_type(const char *client, const char *event_name, EvcSendMemo *memo)
{
	EvcEventType *et;

	if (memo != NULL && memo->et != NULL &&
		strcmp(memo->client, client) == 0 && strcmp(memo->event_name, event_name) == 0)
		return memo->et;
	et = evc_registry_lookup(client, event_name, !evc_require_schema);
	if (memo != NULL)
	{
		/* the names are the event type's own, which live as long as it does */
		memo->et = et;
		memo->client = et ? et->client : NULL;
		memo->event_name = et ? et->event_name : NULL;
	}
	return et;
}

/* A UUID as uuid_out writes it (lower-case 8-4-4-4-12), into buf. */
static void
format_uuid(const pg_uuid_t *u, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	char	   *p = buf;

	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u->data[i] >> 4];
		*p++ = hex[u->data[i] & 0x0F];
	}
	*p = '\0';
}

/*
 * The buffer data_json is printed into, kept from one event to the next:
 * a fresh StringInfo (1 kB, more for larger data) for each of hundreds of
 * thousands of events a second was a good part of the gateway's page
 * faults.  The text is used only until the event is encoded.  Kept in
 * TopMemoryContext, and given back when an event made it large.
 */
static StringInfo
data_json_buffer(void)
{
	static StringInfo buf = NULL;

	if (buf != NULL && buf->maxlen > 64 * 1024)
	{
		pfree(buf->data);
		pfree(buf);
		buf = NULL;
	}
	if (buf == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		buf = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(buf);
	return buf;
}

/*
 * The event's topic and schema version, once its data passed its schema
 * check (or none is required): the names are checked there, as evc_send
 * always did.
 */
static const char *
send_unchecked_topic(const char *client, const char *event_name)
{
	/* evcollector.require_schema = off: unvalidated, version 0. */
	evc_check_name("client", client, false);
	evc_check_name("event", event_name, true);
	return evc_topic_name(psprintf("%s.%s", client, event_name));
}

/*
 * The rest of evc_send's work once the data is checked: the context
 * fields, read in evc_send's order, the protobuf envelope and its size.
 */
static void
send_encode(const char *client, const char *event_name, int32 schema_version,
			const char *data_json, const EvcSendContext *ctx, EvcPreparedEvent *out)
{
	EvcEventFields f = {0};
	pg_uuid_t  *message_id;
	char		received_at[EVC_TIMESTAMP_BUFLEN];
	char		sent_at[EVC_TIMESTAMP_BUFLEN];
	const char *s;

	if (ctx->jsonb != NULL)
		check_context_keys(ctx->jsonb);
	s = ctx->jsonb ? context_string(ctx->jsonb, "message_id") : ctx->message_id;
	message_id = s ? parse_uuid("message_id", s) : evc_new_uuid();
	s = ctx->jsonb ? context_string(ctx->jsonb, "sent_at") : ctx->sent_at;
	evc_format_timestamp_buf(GetCurrentTimestamp(), received_at);
	f.received_at = received_at;
	if (s)
	{
		evc_format_timestamp_buf(parse_timestamp("sent_at", s), sent_at);
		f.sent_at = sent_at;
	}
	else
		f.sent_at = received_at;
	s = ctx->jsonb ? context_string(ctx->jsonb, "user_agent") : ctx->user_agent;
	f.user_agent = s ? s : (application_name ? application_name : "");
	format_uuid(message_id, out->message_id_text);
	f.message_id = out->message_id_text;
	f.client = client;
	f.event_name = event_name;
	f.schema_version = schema_version;
	f.data_json = data_json;

	out->payload = evc_encode_event(&f);
	check_event_size(out->payload, evc_max_event_size_kb, "evcollector.max_event_size");
	out->message_id = message_id;
	out->schema_version = schema_version;
}

/*
 * Validate and encode one event: everything evc_send does except the write
 * to the outbox, so that the gateway can check each request of a group in
 * a subtransaction of its own and enqueue the valid ones in the group's
 * transaction.  Bad input is an ERROR with the SQLSTATE and detail
 * evc_send gives.  The context comes as its fields' text; memo, when not
 * NULL, carries the last event type across calls (EvcSendMemo).
 */
void
evc_send_prepare_fields(const char *client, const char *event_name, Jsonb *data,
						const EvcSendContext *ctx, EvcSendMemo *memo, EvcPreparedEvent *out)
{
	EvcEventType *et;
	int32		version = 0;

	if (!JB_ROOT_IS_OBJECT(data) || JB_ROOT_IS_SCALAR(data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event data must be a JSON object"),
				 errdetail("evc_send(\"%s\", \"%s\") was given a JSON %s.", client, event_name,
						   JB_ROOT_IS_SCALAR(data) ? "scalar" : "array")));

	et = send_event_type(client, event_name, memo);
	if (et != NULL)
	{
		evc_registry_check_event(et, data);
		out->topic = et->topic;
		version = et->version;
	}
	else
		out->topic = send_unchecked_topic(client, event_name);
	send_encode(client, event_name, version,
				JsonbToCString(data_json_buffer(), &data->root, VARSIZE(data)), ctx, out);
}

/*
 * evc_send_prepare_fields for data read from JSON text without jsonb
 * (evc_jtext_read): the same checks and the same bytes, or false when only
 * the jsonb way can tell (the data is not an object, does not match its
 * schema, or has a number numeric would print otherwise); the caller then
 * takes it, and gets its error.  Errors it does raise are the jsonb way's.
 */
bool
evc_send_prepare_text(const char *client, const char *event_name, const EvcJtextValue *data,
					  const EvcSendContext *ctx, EvcSendMemo *memo, EvcPreparedEvent *out)
{
	EvcEventType *et;
	int32		version = 0;
	StringInfo	data_json;

	Assert(ctx->jsonb == NULL);
	if (!evc_jtext_is_object(data))
		return false;
	et = send_event_type(client, event_name, memo);
	if (et != NULL)
	{
		if (!evc_validate_json_value(et->validator, data))
			return false;
		out->topic = et->topic;
		version = et->version;
	}
	else
		out->topic = send_unchecked_topic(client, event_name);
	data_json = data_json_buffer();
	if (!evc_jtext_print(data_json, data))
		return false;
	send_encode(client, event_name, version, data_json->data, ctx, out);
	return true;
}

/* evc_send_prepare_fields with evc_send's jsonb context (or NULL). */
void
evc_send_prepare(const char *client, const char *event_name, Jsonb *data, Jsonb *ctx,
				 EvcPreparedEvent *out)
{
	EvcSendContext c = {0};

	c.jsonb = ctx;
	evc_send_prepare_fields(client, event_name, data, &c, NULL, out);
}

/*
 * evc_send(client, event_name, data, context, key) returns uuid
 */
PG_FUNCTION_INFO_V1(evc_send);
Datum
evc_send(PG_FUNCTION_ARGS)
{
	char	   *client = evc_arg_text(fcinfo, 0, "client");
	char	   *event_name = evc_arg_text(fcinfo, 1, "event_name");
	Jsonb	   *data;
	Jsonb	   *ctx = evc_arg_jsonb_or_null(fcinfo, 3);
	char	   *key = evc_arg_text_or_null(fcinfo, 4);
	EvcPreparedEvent ev;

	/*
	 * On a hot standby (and in a read-only transaction) the outbox cannot
	 * be written; say so as PostgreSQL does (25006) before any work, not
	 * with the "cannot assign TransactionIds during recovery" the insert
	 * would end in.
	 */
	PreventCommandIfReadOnly("evc_send()");
	data = evc_arg_jsonb(fcinfo, 2, "data");
	evc_send_prepare(client, event_name, data, ctx, &ev);
	evc_outbox_enqueue(ev.topic, key, key ? strlen(key) : 0, ev.payload, ev.message_id,
					   ev.schema_version, EVC_CONTENT_TYPE_EVENT);
	PG_RETURN_UUID_P(ev.message_id);
}

static char *
image_data_json(const char *source, EvcImageInfo *info, size_t bytes, Jsonb *metadata)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"source\":");
	escape_json(&buf, source);
	if (info->width >= 0)
		appendStringInfo(&buf, ",\"width\":%d,\"height\":%d", info->width, info->height);
	else
		appendStringInfoString(&buf, ",\"width\":null,\"height\":null");
	appendStringInfo(&buf, ",\"bytes\":%zu,\"metadata\":", bytes);
	if (metadata)
		JsonbToCString(&buf, &metadata->root, VARSIZE(metadata));
	else
		appendStringInfoString(&buf, "{}");
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * evc_send_image(source, image, content_type, metadata) returns uuid
 */
PG_FUNCTION_INFO_V1(evc_send_image);
Datum
evc_send_image(PG_FUNCTION_ARGS)
{
	char	   *source = evc_arg_text(fcinfo, 0, "source");
	bytea	   *image;
	char	   *content_type = evc_arg_text_or_null(fcinfo, 2);
	Jsonb	   *metadata = evc_arg_jsonb_or_null(fcinfo, 3);
	size_t		len;
	EvcImageInfo info;
	EvcEventFields f = {0};
	pg_uuid_t  *message_id = evc_new_uuid();
	bytea	   *payload;

	/* As evc_send: read-only here is PostgreSQL's 25006. */
	PreventCommandIfReadOnly("evc_send_image()");
	image = DatumGetByteaPP(evc_arg_required(fcinfo, 1, "image"));
	len = VARSIZE_ANY_EXHDR(image);
	if (strlen(source) == 0 || strlen(source) > MAX_SOURCE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid image source"),
				 errdetail("The source must have 1 to %d characters.", MAX_SOURCE_LEN)));
	if (metadata && (!JB_ROOT_IS_OBJECT(metadata) || JB_ROOT_IS_SCALAR(metadata)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("image metadata must be a JSON object")));
	if (len > (size_t) evc_max_blob_size_kb * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("image is too large"),
				 errdetail("The image has %zu bytes; evcollector.max_blob_size allows %d kB.", len, evc_max_blob_size_kb),
				 errhint("Raise evcollector.max_blob_size (and evcollector.max_event_size and the brokers' message.max.bytes).")));

	info = evc_image_sniff((const uint8 *) VARDATA_ANY(image), len);
	if (content_type == NULL && info.content_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not recognise the image format"),
				 errdetail("The first bytes of the %zu-byte image are not PNG, JPEG, GIF or WebP.", len),
				 errhint("Pass content_type to send other formats.")));

	f.client = source;
	f.event_name = "image";
	f.schema_version = 0;
	f.sent_at = f.received_at = evc_format_timestamp(GetCurrentTimestamp());
	f.message_id = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(message_id)));
	f.user_agent = application_name ? application_name : "";
	f.data_json = image_data_json(source, &info, len, metadata);
	f.blob = (const uint8 *) VARDATA_ANY(image);
	f.blob_len = len;
	f.blob_content_type = content_type ? content_type : info.content_type;

	payload = evc_encode_event(&f);
	check_event_size(payload, evc_max_event_size_kb, "evcollector.max_event_size");
	/* Keyed by source, so one camera's images stay in order. */
	evc_outbox_enqueue(evc_topic_name("images"), source, strlen(source), payload,
					   message_id, 0, EVC_CONTENT_TYPE_EVENT);
	PG_RETURN_UUID_P(message_id);
}

PG_FUNCTION_INFO_V1(evc_decode_event);
Datum
evc_decode_event(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_JSONB_P(evc_decode_event_jsonb((const uint8 *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b)));
}
