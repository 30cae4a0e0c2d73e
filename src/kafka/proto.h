/*
 * proto.h
 *		Glue between PostgreSQL values and the protobuf-c code generated from
 *		proto/evcollector.proto.
 */
#ifndef EVC_PROTO_H
#define EVC_PROTO_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include <protobuf-c/protobuf-c.h>

/* protobuf-c allocating with palloc in the current memory context. */
extern ProtobufCAllocator evc_pb_allocator;

#define EVC_CONTENT_TYPE_EVENT "application/x-protobuf; proto=evcollector.Event"
#define EVC_CONTENT_TYPE_SCHEMA "application/x-protobuf; proto=evcollector.SchemaRecord"

typedef struct EvcEventFields
{
	const char *client;
	const char *event_name;
	int32		schema_version;
	const char *sent_at;
	const char *received_at;
	const char *message_id;
	const char *user_agent;
	const char *data_json;
	const uint8 *blob;
	size_t		blob_len;
	const char *blob_content_type;
} EvcEventFields;

extern bytea *evc_encode_event(const EvcEventFields *f);
extern bytea *evc_encode_schema_record(const char *client, const char *event_name,
									   int32 version, const char *schema_json,
									   const char *topic, const char *created_at,
									   const char *created_by);
typedef struct EvcAggregateFields
{
	const char *client;
	const char *event_name;
	const char *function;
	const char *group_key;
	const char *window_start;
	int64		window_seconds;
	const char *window_name;
	const char *value_decimal;
	int64		count;
	int32		revision;
	const char *computed_at;
} EvcAggregateFields;

extern bytea *evc_encode_aggregate(const EvcAggregateFields *f);
/*
 * Room evc_event_set_processed_at may need beyond the event's own length:
 * the field (tag, length, up to 48 bytes of text), a context when there was
 * none, and a longer context length.
 */
#define EVC_PROCESSED_AT_MAX 64
extern size_t evc_event_set_processed_at(const uint8 *event, size_t len,
										 const char *processed_at,
										 uint8 *out, size_t outlen);
extern char *evc_format_timestamp(TimestampTz ts);
/* Room for evc_format_timestamp_buf's text: a six-digit year at most, and the NUL. */
#define EVC_TIMESTAMP_BUFLEN 40
extern int	evc_format_timestamp_buf(TimestampTz ts, char *buf);
extern bool evc_parse_timestamp(const char *s, TimestampTz *out);
extern Jsonb *evc_decode_event_jsonb(const uint8 *data, size_t len);

#endif
