/*
 * consumer_metrics.h
 *		What the consumer worker reports to shared memory: counters per
 *		batch and the high watermarks of its partitions (metrics.c).
 */
#ifndef EVC_CONSUMER_METRICS_H
#define EVC_CONSUMER_METRICS_H

#include <librdkafka/rdkafka.h>

#include "consume/consumer.h"
#include "core/shmem.h"

/* res is NULL when the batch could not land (nothing was committed). */
extern void evc_consumer_count_batch(EvcWorkerSlot *slot, int nmessages, int64 nbytes,
									 const EvcLandResult *res, TimestampTz started);
extern void evc_consumer_note_watermarks(EvcWorkerSlot *slot, rd_kafka_t *rk);

#endif
