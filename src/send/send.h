/*
 * send.h
 *		evc_send's checks without its write: for callers that validate many
 *		events before enqueueing them together (the gateway's group commit).
 */
#ifndef EVC_SEND_H
#define EVC_SEND_H

#include "utils/jsonb.h"
#include "jsonschema/validate.h"
#include "utils/uuid.h"

/* An event checked against its schema and encoded, ready for the outbox. */
typedef struct EvcPreparedEvent
{
	const char *topic;
	bytea	   *payload;
	pg_uuid_t  *message_id;
	char		message_id_text[UUID_LEN * 2 + 5];	/* as uuid_out writes it */
	int32		schema_version;
} EvcPreparedEvent;

/*
 * The context fields a caller may set: evc_send's jsonb context (read
 * where evc_send always read it, after the schema check), or, when that is
 * NULL, the fields as text (NULL when not set), which the gateway reads
 * straight off its request.
 */
typedef struct EvcSendContext
{
	Jsonb	   *jsonb;
	const char *sent_at;		/* a timestamp, parsed by timestamptz_in */
	const char *message_id;		/* a UUID, parsed by uuid_in */
	const char *user_agent;
} EvcSendContext;

/*
 * The event type that evc_send_prepare_fields last looked up for a caller
 * that checks many events in a row (a gateway batch): the next event of
 * the same client and name reuses it instead of a registry lookup.  The
 * registry keeps the pointer valid until its next lookup, and this is
 * the only caller looking up meanwhile.  Zero it to start.
 */
typedef struct EvcSendMemo
{
	const char *client;
	const char *event_name;
	struct EvcEventType *et;
} EvcSendMemo;

extern void evc_send_prepare(const char *client, const char *event_name, Jsonb *data,
							 Jsonb *ctx, EvcPreparedEvent *out);
extern void evc_send_prepare_fields(const char *client, const char *event_name, Jsonb *data,
									const EvcSendContext *ctx, EvcSendMemo *memo,
									EvcPreparedEvent *out);
extern bool evc_send_prepare_text(const char *client, const char *event_name,
								  const EvcJtextValue *data, const EvcSendContext *ctx,
								  EvcSendMemo *memo, EvcPreparedEvent *out);

#endif
