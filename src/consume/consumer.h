/*
 * consumer.h
 *		What the consumer worker (consumer.c) hands to the sinks (sinks.c):
 *		a consumer's configuration and the messages of one partition in one
 *		batch.
 */
#ifndef EVC_CONSUMER_H
#define EVC_CONSUMER_H

#include "nodes/pg_list.h"

#include "storage/storage.h"

typedef enum EvcSinkKind
{
	EVC_SINK_ARCHIVE,
	EVC_SINK_IMAGES,
	EVC_SINK_TABLE,
	EVC_SINK_AGGREGATES
} EvcSinkKind;

typedef struct EvcConsumerConfig
{
	int32		id;
	char	   *name;
	EvcSinkKind sink;
	char	   *group_id;
	List	   *topics;			/* of char * */
	int			batch_size;		/* events */
	int			flush_interval_ms;
	int64		max_batch_bytes;	/* archive: max file size */
	bool		gzip;
	char	   *auto_offset_reset;
	int			queued_max_kbytes;
	char	   *kafka_properties;	/* consumer's own "k=v;..." or NULL */
} EvcConsumerConfig;

/* One Kafka message, copied out of librdkafka into the batch context. */
typedef struct EvcMessage
{
	int64		offset;
	int64		timestamp_ms;	/* Kafka message timestamp, -1 if none */
	char	   *key;
	size_t		key_len;
	char	   *payload;
	size_t		len;
} EvcMessage;

/* The messages of one partition in the current batch, in offset order. */
typedef struct EvcPartitionBatch
{
	char	   *topic;
	int32		partition;
	int			nmessages;
	int			capacity;
	EvcMessage *messages;
} EvcPartitionBatch;

/* What landing one partition batch did, for the progress counters. */
typedef struct EvcLandResult
{
	int64		landed;
	int64		dead_lettered;
	int64		skipped;		/* already landed before: redelivered */
	int64		bytes;
} EvcLandResult;

/*
 * Land the messages of pb at or after next_offset.  Runs inside the batch
 * transaction with SPI connected; raises ERROR if anything could not be
 * made durable, and the caller then lands nothing of the batch.
 */
extern void evc_sink_land(EvcConsumerConfig *cfg, EvcStorage *st,
						  EvcPartitionBatch *pb, int64 next_offset,
						  EvcLandResult *res);

/* sink_aggregates.c */
extern void evc_sink_dead_letter(EvcConsumerConfig *cfg, EvcPartitionBatch *pb,
								 EvcMessage *m, const char *message_id, const char *why);
extern void evc_sink_land_aggregates(EvcConsumerConfig *cfg, EvcPartitionBatch *pb,
									 int64 next_offset, EvcLandResult *res);

#endif
