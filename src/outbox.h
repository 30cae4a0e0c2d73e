/*
 * outbox.h
 *		The transactional outbox: what evc_send and the registry write, and
 *		what the relay reads.
 */
#ifndef EVC_OUTBOX_H
#define EVC_OUTBOX_H

#include "utils/uuid.h"

extern void evc_outbox_enqueue(const char *topic, const char *key, int keylen,
							   bytea *payload, pg_uuid_t *message_id,
							   int32 schema_version, const char *content_type);
extern pg_uuid_t *evc_new_uuid(void);

#endif
