/*
 * send.h
 *		evc_send's checks without its write: for callers that validate many
 *		events before enqueueing them together (the gateway's group commit).
 */
#ifndef EVC_SEND_H
#define EVC_SEND_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

/* An event checked against its schema and encoded, ready for the outbox. */
typedef struct EvcPreparedEvent
{
	const char *topic;
	bytea	   *payload;
	pg_uuid_t  *message_id;
	const char *message_id_text;	/* message_id as uuid_out writes it */
	int32		schema_version;
} EvcPreparedEvent;

extern void evc_send_prepare(const char *client, const char *event_name, Jsonb *data,
							 Jsonb *ctx, EvcPreparedEvent *out);

#endif
