/*
 * relay_int.h
 *		What the relay's files share: a batch and its messages, and the calls
 *		each part makes into the others.  Private to src/relay/.
 *
 * The relay is split by concern (see README.md): relay.c runs the worker's
 * loop, relay_read.c reads the outbox, relay_produce.c hands rows to the
 * producer thread and keeps the batches, relay_settle.c settles them.
 */
#ifndef EVC_RELAY_INT_H
#define EVC_RELAY_INT_H

#include <librdkafka/rdkafka.h>

#include "access/xlogdefs.h"
#include "executor/spi.h"
#include "port/atomics.h"
#include "storage/itemptr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "core/shmem.h"
#include "send/outbox.h"
#include "util/spi_plans.h"
#include "util/worker_xact.h"

/*
 * What the relay keeps of each row it produced, until the batch is
 * settled: enough to find the row again and to record the delivery, and the
 * message itself.  librdkafka produces it without a copy and points into
 * it until its delivery report, so it lives in the batch's memory.
 */
typedef struct RelayMsg
{
	int64		id;
	FullTransactionId txid;		/* with id, finds the row again (index) */
	const char *topic;			/* shared by consecutive rows of a topic */
	rd_kafka_topic_t *rkt;		/* the producer's handle for it, or NULL */
	TimestampTz created_at;
	int32		payload_len;
	char		message_id[UUID_LEN * 2 + 5];	/* text form, with its NUL */
	/* The message: key (NULL: none), value, and the header values. */
	char	   *key;
	int32		key_len;
	char	   *value;
	int32		value_len;
	const char *content_type;
	int32		schema_version;
	/*
	 * Produced with nothing else of ours in flight, so that it is alone in
	 * its record batch: a size refusal then proves it is too large.
	 */
	bool		alone;
	/* Written by the producer thread: how producing it went. */
	rd_kafka_resp_err_t produce_err;
	/* The outcome, written by the delivery-report callback. */
	bool		reported;
	rd_kafka_resp_err_t err;
	TimestampTz acked_at;
	int32		partition;		/* where Kafka put it, for evc_trace */
	int64		offset;
} RelayMsg;

/*
 * A batch: the rows of one read, from production until they are settled.
 * While a backlog drains, two batches are in flight: the next one is read
 * and produced while Kafka acknowledges the previous one, which is then
 * settled.  Each message's opaque carries its batch's generation and its
 * index, so a late report for an abandoned batch is recognised and
 * ignored instead of writing into memory that was reused.
 *
 * active and generation are written by the main loop and read by the
 * producer thread's delivery-report callback, hence atomic; the main loop
 * marks a batch active only after the rest of it is set (see
 * relay_produce.c).  reports_pending is counted down by that callback and
 * up by the main loop once the batch is produced, so read as an int32 it
 * may dip below zero in between.
 */
typedef struct RelayBatch
{
	pg_atomic_uint32 active;	/* produced and not yet settled */
	pg_atomic_uint32 generation;
	MemoryContext cxt;			/* reset when the batch is reused */
	RelayMsg   *msgs;			/* in read order */
	int			n;
	int			cap;			/* the array's size, fixed while in flight */
	Size		bytes;			/* of its keys and values */
	bool		full;			/* stopped at a limit, not at the end */
	pg_atomic_uint32 reports_pending;

	/*
	 * What the batch is: rows of evc.outbox_retry, or a chunk of one tick's
	 * batch.  The last chunk of a tick carries the tick: once it is settled
	 * (after every earlier chunk), the tick is recorded as delivered.
	 */
	bool		from_retry;
	bool		tick_last;
	EvcSnapshot *tick_snapshot;	/* in cxt; only with tick_last */
	int64		tick_events;
	/*
	 * Rows of the tick left out because they went to evc.dead_letters when
	 * the tick was sent before: the tick must still be recorded, even with
	 * no event in it, or evc.outbox keeps listing them.
	 */
	bool		tick_left_out;
	TimestampTz tick_taken_at;
	XLogRecPtr	tick_wal_at;	/* flushed before the tick's Kafka commit */
	TimeLineID	tick_wal_tli;	/* the timeline tick_wal_at is on */
	Oid			tick_ticks_relid;	/* evc.outbox_ticks when the tick was cut */
} RelayBatch;

/* relay.c: the worker's slot (for its counters), and the loop's wake-up. */
extern EvcWorkerSlot *evc_relay_slot;
extern bool evc_relay_work_signalled;

/* relay.c: each step's transaction and SPI bracket, and its kept plans. */
extern void evc_relay_wait_kafka(long timeout_ms);

/* relay_read.c */
extern bool evc_relay_read(int limit, RelayBatch *batch, RelayBatch *inflight, long *next_due_ms);
extern void evc_relay_note_retry(TimestampTz due);
extern void evc_relay_read_from_delivered(void);

/* relay_settle.c: the delivered ticks */
extern const EvcSnapshot *evc_relay_delivered_snapshot(void);
extern void evc_relay_load_delivered(void);
extern void evc_relay_record_tick(RelayBatch *batch, bool force);

/* relay_rotate.c */
extern int64 evc_relay_rows_in[EVC_OUTBOX_TABLES];
extern void evc_relay_rotate_load(void);
extern int	evc_relay_current_table(void);
extern bool evc_relay_rotate_wants_tick(void);
extern void evc_relay_rotate(long *next_due_ms);

/* relay_produce.c */
extern void evc_relay_produce_init(int wake_fd);
extern int	evc_relay_batch(long *next_due_ms, bool *full);
extern void evc_relay_abandon_batches(void);
extern void evc_relay_service(void);
extern void evc_relay_producer_ensure(void);
extern rd_kafka_topic_t *evc_relay_topic_handle(const char *name);
extern void evc_relay_await_handoff(void);
extern void evc_relay_count_produced(RelayBatch *batch);
extern void evc_relay_producer_mark_fatal(void);
extern bool evc_relay_producer_stale(void);
extern bool evc_relay_transactional(void);
extern void evc_relay_begin_batch_txn(void);
extern void evc_relay_abort_txn(void);

/* relay_read.c: events the open tick leaves out, or sends alone */
extern bool evc_relay_skip_message(const char *message_id);
extern void evc_relay_note_dead(const char *message_id);
extern void evc_relay_note_suspect(const char *message_id);
extern void evc_relay_forget_tick_notes(void);
extern void evc_relay_load_tick_notes(void);

/* relay_txn.c: exactly once into Kafka */
#define EVC_RELAY_MODE_IDEMPOTENT 1
#define EVC_RELAY_MODE_TRANSACTIONAL 2
extern const char *evc_relay_identity(void);
extern bool evc_relay_txn_is_open(void);
extern void evc_relay_txn_forget(void);
extern const char *evc_relay_transactional_id(int i);
extern void evc_relay_txn_start(rd_kafka_t *const *rks, int n);
extern void evc_relay_txn_begin(rd_kafka_t *rk);
extern bool evc_relay_txn_commit(rd_kafka_t *rk, RelayBatch *batch, int64 tick_id, char *abort_why, size_t why_len);
extern void evc_relay_txn_abort(rd_kafka_t *rk);
extern void evc_relay_txn_reconcile(void);

/* relay_progress.c: the progress read back from Kafka */
extern char *evc_relay_read_progress(void);

/* relay_settle.c */
extern int64 evc_relay_next_tick_id(void);
extern void evc_relay_set_delivered(int64 id, const EvcSnapshot *snap);
extern void evc_relay_settle_batch(RelayBatch *batch, int *delivered, int *failed, int *dead);

#endif							/* EVC_RELAY_INT_H */
