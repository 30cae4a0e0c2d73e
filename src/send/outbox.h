/*
 * outbox.h
 *		The transactional outbox: what evc_send and the registry write, and
 *		what the relay reads.
 */
#ifndef EVC_OUTBOX_H
#define EVC_OUTBOX_H

#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

/* The columns of evc.outbox, in order (0-based); evc_outbox_open checks them. */
typedef enum OutboxColumn
{
	OUTBOX_ID,
	OUTBOX_MESSAGE_ID,
	OUTBOX_TOPIC,
	OUTBOX_KEY,
	OUTBOX_PAYLOAD,
	OUTBOX_SCHEMA_VERSION,
	OUTBOX_CONTENT_TYPE,
	OUTBOX_CREATED_AT,
	OUTBOX_ATTEMPTS,
	OUTBOX_LAST_ERROR,
	OUTBOX_LAST_ATTEMPT_AT,
	OUTBOX_NEXT_ATTEMPT_AT,
	OUTBOX_NATTS
} OutboxColumn;

extern Relation evc_outbox_open(LOCKMODE lockmode);

extern void evc_outbox_enqueue(const char *topic, const char *key, int keylen,
							   bytea *payload, pg_uuid_t *message_id,
							   int32 schema_version, const char *content_type);
extern pg_uuid_t *evc_new_uuid(void);

#endif
