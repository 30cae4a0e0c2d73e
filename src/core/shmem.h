/*
 * shmem.h
 *		Shared state of evcollector: the worker registry that the launcher
 *		keeps and that evc.workers shows, and the wake-ups between backends
 *		and workers.
 */
#ifndef EVC_SHMEM_H
#define EVC_SHMEM_H

#include "datatype/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"

#include "core/stats.h"

#define EVC_MAX_WORKERS 64
#define EVC_WORKER_NAME_LEN 64
#define EVC_ERROR_LEN 256

typedef enum EvcWorkerKind
{
	EVC_WORKER_LAUNCHER,
	EVC_WORKER_RELAY,
	EVC_WORKER_CONSUMER,
	EVC_WORKER_GATEWAY
} EvcWorkerKind;

/*
 * One supervised process.  Only plain values live here: no pointers and no
 * file descriptors, since each process maps shared memory on its own.
 */
typedef struct EvcWorkerSlot
{
	bool		in_use;
	EvcWorkerKind kind;
	char		name[EVC_WORKER_NAME_LEN];
	pid_t		pid;			/* 0 while not running */
	int			pgprocno;		/* to reach its latch; -1 while not running */
	TimestampTz started_at;
	TimestampTz stopped_at;
	int64		starts;
	char		last_error[EVC_ERROR_LEN];
	TimestampTz last_error_at;
	EvcCounters counters;
} EvcWorkerSlot;

/*
 * High watermarks of the partitions a consumer is assigned, as librdkafka
 * last saw them; with the landed offsets in evc.consumer_offsets they give
 * the consumer lag (evc.consumer_lag).  Written by the consumer only.
 */
#define EVC_LAG_PARTITIONS 32
#define EVC_TOPIC_LEN 250

typedef struct EvcPartitionMark
{
	char		topic[EVC_TOPIC_LEN];
	int32		partition;
	int64		low;
	int64		high;
	/*
	 * The consumer's position (the next offset it reads), noted only while
	 * it holds no message it has not landed; else -1.  Past a transaction's
	 * commit marker, which takes an offset no consumer ever lands, so a lag
	 * counted from it can reach 0 on a topic the exactly-once relay writes.
	 */
	int64		position;
} EvcPartitionMark;

typedef struct EvcLagTable
{
	int			n;
	int			assigned;		/* may exceed n: only the first are kept */
	TimestampTz observed_at;
	EvcPartitionMark parts[EVC_LAG_PARTITIONS];
} EvcLagTable;

/*
 * The last deliveries the relay saw acknowledged, with their Kafka
 * position, for evc_trace(): the producer learns a message's offset only
 * from its delivery report, and keeping a row per message would double the
 * relay's writes.  A ring, overwritten oldest first.
 */
#define EVC_TRACE_RING 8192
#define EVC_TRACE_TOPIC_LEN 128

typedef struct EvcDelivery
{
	char		message_id[37];
	char		topic[EVC_TRACE_TOPIC_LEN];	/* cut at 127 bytes */
	int32		partition;
	int64		offset;
	TimestampTz acked_at;
} EvcDelivery;

typedef struct EvcDeliveryRing
{
	uint64		next;			/* total ever written; next % size is the slot */
	EvcDelivery entries[EVC_TRACE_RING];
} EvcDeliveryRing;

typedef struct EvcShared
{
	LWLock	   *lock;
	/* Broadcast by the relay after each batch it settles (evc_flush waits). */
	ConditionVariable outbox_settled;

	/*
	 * The outbox's rotation (send/outbox.c, relay/relay_rotate.c), for the
	 * relay's database only.  outbox_current is the table evc_send inserts
	 * into, plus one (0: not known yet, read evc.outbox_tables).  The relay
	 * publishes a new value before it reads the next transaction id that
	 * marks the switch, and a sender reads it after its transaction id is
	 * assigned: a sender with a later id than the mark sees the new table.
	 */
	Oid			relay_database;
	pg_atomic_uint32 outbox_current;

	/*
	 * The id of the last tick the relay delivered (evc.outbox_ticks), and
	 * how many evc_flush calls wait for one: while any waits, the relay
	 * records ticks whose batch was empty too, so a waiter sees a tick
	 * taken after its call.
	 */
	pg_atomic_uint64 relay_delivered_tick;
	pg_atomic_uint32 flush_waiters;
	/* The relay's producer mode (relay/relay_txn.c): 0 none yet, 1 idempotent, 2 transactional. */
	pg_atomic_uint32 relay_mode;
	/* Events sent by committed transactions (all backends). */
	pg_atomic_uint64 sent;
	EvcWorkerSlot workers[EVC_MAX_WORKERS];
	/* evc_aggregate runs in any backend; its counters are kept here. */
	EvcCounters aggregator;
	char		aggregator_error[EVC_ERROR_LEN];
	TimestampTz aggregator_error_at;
	/* Per worker slot, same index as workers[]. */
	EvcLagTable lag[EVC_MAX_WORKERS];
	EvcDeliveryRing deliveries;
} EvcShared;

extern EvcShared *evc_shared;

extern void evc_shmem_install_hooks(void);
extern bool evc_shmem_attached(void);
extern void evc_require_preload(void);

extern EvcWorkerSlot *evc_worker_slot(EvcWorkerKind kind, const char *name, bool create);
extern void evc_worker_attach(EvcWorkerSlot *slot);
extern void evc_worker_detach(EvcWorkerSlot *slot);
extern void evc_worker_release(EvcWorkerSlot *slot);
extern void evc_worker_record_error(EvcWorkerSlot *slot, const char *message);
extern void evc_wake_worker(EvcWorkerKind kind, const char *name);
extern void evc_wake_at_commit(EvcWorkerKind kind);
extern bool evc_wake_pending(EvcWorkerKind kind);

/* Events this transaction sent, added to evc.stats when it commits. */
extern void evc_stats_count_sent(int n);
extern void evc_outbox_note_insert(void);

#endif
