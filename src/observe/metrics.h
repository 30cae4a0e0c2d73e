/*
 * metrics.h
 *		What the workers report to metrics.c (a consumer's batches and the
 *		high watermarks of its partitions), and the Metrics message the
 *		relay publishes.  evc_metrics() is reached through SQL only.
 */
#ifndef EVC_METRICS_H
#define EVC_METRICS_H

#include <librdkafka/rdkafka.h>

#include "core/shmem.h"

#define EVC_CONTENT_TYPE_METRICS "application/x-protobuf; proto=evcollector.Metrics"

/* consume/consumer.h defines it; a tag is enough here. */
struct EvcLandResult;

/* res is NULL when the batch could not land (nothing was committed). */
extern void evc_consumer_count_batch(EvcWorkerSlot *slot, int nmessages, int64 nbytes,
									 const struct EvcLandResult *res, TimestampTz started);
extern void evc_consumer_note_watermarks(EvcWorkerSlot *slot, rd_kafka_t *rk, bool all_landed);

extern void evc_metrics_publish(void);

#endif
