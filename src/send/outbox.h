/*
 * outbox.h
 *		The transactional outbox: what evc_send and the registry write, and
 *		what the relay reads.  Three tables used in rotation (evc.outbox_0
 *		.. evc.outbox_2), batches cut between snapshots (evc.outbox_ticks);
 *		see src/send/README.md.
 */
#ifndef EVC_OUTBOX_H
#define EVC_OUTBOX_H

#include "access/transam.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

#define EVC_OUTBOX_TABLES 3

/*
 * The columns of evc.outbox_N, in order (0-based); evc_outbox_open checks
 * them.  evc.outbox_retry starts with the same columns and adds its own.
 */
typedef enum OutboxColumn
{
	OUTBOX_ID,
	OUTBOX_TXID,
	OUTBOX_MESSAGE_ID,
	OUTBOX_TOPIC,
	OUTBOX_KEY,
	OUTBOX_PAYLOAD,
	OUTBOX_SCHEMA_VERSION,
	OUTBOX_CONTENT_TYPE,
	OUTBOX_CREATED_AT,
	OUTBOX_NATTS,
	/* evc.outbox_retry only */
	RETRY_ATTEMPTS = OUTBOX_NATTS,
	RETRY_LAST_ERROR,
	RETRY_LAST_ATTEMPT_AT,
	RETRY_NEXT_ATTEMPT_AT,
	RETRY_NATTS
} OutboxColumn;

/*
 * A pg_snapshot value as xid8funcs.c lays it out (a varlena: the count of
 * running transactions, xmin, xmax, then their ids in ascending order).
 * PostgreSQL keeps the struct private; its on-disk form is this.
 */
typedef struct EvcSnapshot
{
	int32		vl_len_;
	uint32		nxip;
	FullTransactionId xmin;
	FullTransactionId xmax;
	FullTransactionId xip[FLEXIBLE_ARRAY_MEMBER];
} EvcSnapshot;

extern Relation evc_outbox_open(int n, LOCKMODE lockmode);
extern Relation evc_outbox_retry_open(LOCKMODE lockmode);
extern bool evc_outbox_installed(void);
extern Oid	evc_outbox_table_oid(int n);

/* One row for evc_outbox_enqueue_many: what evc_outbox_enqueue takes. */
typedef struct EvcOutboxRow
{
	const char *topic;
	const char *key;			/* partition key, or NULL */
	int			keylen;
	bytea	   *payload;
	pg_uuid_t  *message_id;
	int32		schema_version;
	const char *content_type;
} EvcOutboxRow;

extern void evc_outbox_enqueue_many(const EvcOutboxRow *rows, int n);
extern void evc_outbox_enqueue(const char *topic, const char *key, int keylen,
							   bytea *payload, pg_uuid_t *message_id,
							   int32 schema_version, const char *content_type);
extern pg_uuid_t *evc_new_uuid(void);

extern bool evc_snapshot_visible(const EvcSnapshot *snap, FullTransactionId xid);
extern bool evc_snapshot_covers(const EvcSnapshot *later, const EvcSnapshot *earlier);

#endif
