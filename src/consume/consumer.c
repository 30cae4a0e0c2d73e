/*
 * consumer.c
 *		Owns the consumer worker: one dynamic background worker per enabled
 *		row of evc.consumer_defs, started by the launcher through
 *		evc.wanted_workers.  It reads Kafka with librdkafka's high-level
 *		consumer, holds the messages per partition until a partition is due
 *		(batch_size, max_file_size or flush_interval), lands the due ones
 *		through its sink (sinks.c) and only then commits their offsets.
 *
 * A landing is one transaction.  For each due partition it locks the
 * partition's row in evc.consumer_offsets, skips messages below the stored
 * next offset (they landed before and were delivered again), writes the
 * objects, inserts the index rows and moves the stored offset; the objects
 * are made durable (for file://, one fsync per directory) before it
 * commits.  The same offsets go to Kafka, asynchronously, only after that
 * transaction committed.  So a crash at any point lands each message once:
 * either the transaction did not commit and the messages are landed again
 * over the same object keys, or it did and the redelivered ones are
 * skipped.
 *
 * The worker never sleeps in a loop: it waits on one WaitEventSet holding
 * its latch and a pipe that librdkafka writes to when the consumer queue
 * becomes non-empty (rd_kafka_queue_io_event_enable).  Callbacks from
 * librdkafka run inside rd_kafka_consumer_poll and only set flags or copy
 * text; the main loop acts on them.  When a rebalance revokes partitions,
 * the messages held so far are dropped (they were not landed and their
 * offsets were not committed) and any partition we keep is rewound to
 * them, so the next owner starts exactly where the last landed file ended.
 *
 * If a landing fails (storage away, for instance), the error is recorded,
 * the transaction is aborted, nothing is committed, everything stays held,
 * and the landing is tried again after a backoff of 1 s doubling to 30 s.
 * While it waits the worker does not fetch more messages.
 *
 * On SIGTERM (die) the current step is abandoned, which aborts the open
 * transaction, and the exit callback closes the consumer (leaving the
 * group, so partitions move at once) with a time limit.
 */
#include "postgres.h"

#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "consume/consumer.h"
#include "core/guc.h"
#include "core/stats.h"
#include "core/worker.h"
#include "kafka/kafka.h"
#include "observe/metrics.h"
#include "storage/storage.h"
#include "util/port.h"
#include "util/spi_plans.h"
#include "util/worker_xact.h"

PGDLLEXPORT void evc_consumer_main(Datum main_arg);

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS (30 * 1000)
#define IDLE_WAIT_MS (10 * 1000)
#define CLOSE_LIMIT_MS 500
#define DESTROY_LIMIT_MS 300
#define KAFKA_WARN_EVERY_MS (30 * 1000)
/* Images and table rows are landed one by one; bound what a batch holds. */
#define ROW_SINK_MAX_BATCH_BYTES (8 * 1024 * 1024)

/* One partition's messages waiting to be landed (see "Held messages"). */
typedef struct HeldPartition
{
	EvcPartitionBatch msgs;		/* in offset order; a landing takes a prefix */
	TimestampTz *polled_at;		/* when each was polled, parallel to msgs */
	int64		nbytes;
	int64		last_offset;	/* last offset polled: the position is after it */
	int			take;			/* its share of the landing being made */
} HeldPartition;

typedef struct Held
{
	MemoryContext cxt;			/* partitions and their arrays */
	MemoryContext copies;		/* message copies, reset when none is held */
	List	   *parts;			/* of HeldPartition *, by (topic, partition) */
	HeldPartition *last;		/* partition of the last message taken in */
	int64		nmessages;
	int64		nbytes;
} Held;

static EvcWorkerSlot *my_slot = NULL;
static EvcConsumerConfig *cfg = NULL;
static rd_kafka_t *rk = NULL;
static rd_kafka_queue_t *rkqu = NULL;
static int	wake_pipe[2] = {-1, -1};
static EvcStorage *storage = NULL;
static char *storage_signature = NULL;
static Held held;

/*
 * librdkafka's prefetch limits as it applies them, and what was polled
 * since the consumer queue was last found empty (see fetch_queue_emptied).
 */
static int	fetch_queue_msgs = 10000;
static int64 fetch_queue_bytes = 8192 * 1024;
static int64 fetch_queue_peak = 0;
static int64 polled_msgs_since_empty = 0;
static int64 polled_bytes_since_empty = 0;
static EvcLandResult batch_landed;	/* what land_due_partitions did, counted after commit */

/* Written by librdkafka callbacks (on this thread, inside poll). */
static volatile bool revoke_seen = false;
static volatile bool kafka_error_pending = false;
static volatile bool kafka_error_fatal = false;
static char kafka_error_text[512];
static TimestampTz last_kafka_warning = 0;

static SPIPlanPtr plan_lock_offset = NULL;
static SPIPlanPtr plan_move_offset = NULL;
static SPIPlanPtr plan_progress = NULL;

/* ---------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------
 */

static int
option_int(const char *value, int flags, int fallback, const char *what)
{
	int			result;
	const char *hint = NULL;

	if (value == NULL)
		return fallback;
	if (!parse_int(value, &result, flags, &hint) || result <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer \"%s\" has an invalid %s option: \"%s\"", cfg->name, what, value)));
	return result;
}

static char *
getvalue_or_null(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	return v ? MemoryContextStrdup(TopMemoryContext, v) : NULL;
}

/*
 * Read the consumer's row.  Settings not given as options follow their
 * GUCs, read again at each batch so that a reload takes effect.
 */
static void
consumer_load_config(int32 id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *topics;
	char	   *sink;

	evc_worker_xact_begin("evcollector consumer: reading its configuration");
	if (SPI_execute_with_args(
							  "SELECT name, sink, array_to_string(topics, E'\\n'), "
							  "coalesce(options->>'group_id', 'evcollector.' || name), "
							  "options->>'batch_size', options->>'flush_interval', options->>'max_file_size', "
							  "coalesce((options->>'gzip')::boolean, false)::text, "
							  "coalesce(options->>'auto_offset_reset', 'earliest'), "
							  "options->>'queued_max_kbytes', "
							  "(SELECT string_agg(key || '=' || value, ';') FROM jsonb_each_text(options->'kafka')) "
							  "FROM evc.consumer_defs WHERE id = $1 AND enabled",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.consumer_defs");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer %d does not exist or is disabled", id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	cfg = MemoryContextAllocZero(TopMemoryContext, sizeof(EvcConsumerConfig));
	cfg->id = id;
	cfg->name = getvalue_or_null(tup, desc, 1);
	sink = SPI_getvalue(tup, desc, 2);
	cfg->sink = strcmp(sink, "archive") == 0 ? EVC_SINK_ARCHIVE :
		strcmp(sink, "images") == 0 ? EVC_SINK_IMAGES :
		strcmp(sink, "aggregates") == 0 ? EVC_SINK_AGGREGATES : EVC_SINK_TABLE;
	topics = getvalue_or_null(tup, desc, 3);
	cfg->group_id = getvalue_or_null(tup, desc, 4);
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		char	   *save = NULL;

		for (char *t = strtok_r(topics, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
			cfg->topics = lappend(cfg->topics, t);
		MemoryContextSwitchTo(old);
	}
	cfg->batch_size = option_int(SPI_getvalue(tup, desc, 5), 0, -1, "batch_size");
	cfg->flush_interval_ms = option_int(SPI_getvalue(tup, desc, 6), GUC_UNIT_MS, -1, "flush_interval");
	cfg->max_batch_bytes = option_int(SPI_getvalue(tup, desc, 7), GUC_UNIT_KB, -1, "max_file_size");
	if (cfg->max_batch_bytes > 0)
		cfg->max_batch_bytes *= 1024;
	cfg->gzip = strcmp(SPI_getvalue(tup, desc, 8), "true") == 0;
	cfg->auto_offset_reset = getvalue_or_null(tup, desc, 9);
	cfg->queued_max_kbytes = option_int(SPI_getvalue(tup, desc, 10), 0, 8192, "queued_max_kbytes");
	cfg->kafka_properties = getvalue_or_null(tup, desc, 11);

	evc_worker_xact_end();
}

static int
batch_size_limit(void)
{
	return cfg->batch_size > 0 ? cfg->batch_size : evc_batch_size;
}

static int
flush_interval_ms(void)
{
	return cfg->flush_interval_ms > 0 ? cfg->flush_interval_ms : evc_flush_interval_ms;
}

static int64
batch_bytes_limit(void)
{
	int64		limit = cfg->max_batch_bytes > 0 ? cfg->max_batch_bytes :
		(int64) evc_max_file_size_kb * 1024;

	if (cfg->sink != EVC_SINK_ARCHIVE)
		limit = Min(limit, ROW_SINK_MAX_BATCH_BYTES);
	return limit;
}

/* (Re)open the store when its settings changed, e.g. after a reload. */
static void
consumer_open_storage(void)
{
	char	   *sig = psprintf("%s|%s|%s|%s|%s", evc_storage_url, evc_s3_endpoint,
							   evc_s3_region, evc_s3_access_key, evc_s3_secret_key);
	MemoryContext old;

	if (storage != NULL && strcmp(sig, storage_signature) == 0)
	{
		pfree(sig);
		return;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (storage != NULL)
		evc_storage_close(storage);
	storage = NULL;
	storage = evc_storage_open(evc_storage_url);
	if (storage_signature)
		pfree(storage_signature);
	storage_signature = pstrdup(sig);
	MemoryContextSwitchTo(old);
	pfree(sig);
}

/* ---------------------------------------------------------------------
 * librdkafka
 * ---------------------------------------------------------------------
 */

static void
consumer_rebalance_cb(rd_kafka_t *k, rd_kafka_resp_err_t err,
					  rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	bool		cooperative = strcmp(rd_kafka_rebalance_protocol(k), "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
	{
		if (cooperative)
			error = rd_kafka_incremental_assign(k, parts);
		else
			rd_kafka_assign(k, parts);
	}
	else
	{
		revoke_seen = true;
		if (cooperative)
			error = rd_kafka_incremental_unassign(k, parts);
		else
			rd_kafka_assign(k, NULL);
	}
	if (error)
		rd_kafka_error_destroy(error);
}

static void
consumer_error_cb(rd_kafka_t *k, int err, const char *reason, void *opaque)
{
	snprintf(kafka_error_text, sizeof(kafka_error_text), "%s: %s",
			 rd_kafka_err2name(err), reason);
	kafka_error_pending = true;
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		kafka_error_fatal = true;
}

/* A numeric property as librdkafka will use it (0 if unreadable). */
static int64
conf_get_int(rd_kafka_conf_t *conf, const char *key)
{
	char		value[64];
	size_t		size = sizeof(value);

	if (rd_kafka_conf_get(conf, key, value, &size) != RD_KAFKA_CONF_OK)
		return 0;
	return strtoll(value, NULL, 10);
}

/*
 * The consumer's librdkafka configuration: the shared path of kafka.c with
 * the consumer's defaults, then the consumer's own "kafka" option, then
 * what the landing protocol needs whatever those say (offsets are stored
 * and committed by land_held only, in the consumer's own group).
 */
static rd_kafka_conf_t *
consumer_conf(void)
{
	const char *const defaults[] = {
		"client.id", psprintf("evcollector-%s", cfg->name),
		"auto.offset.reset", cfg->auto_offset_reset,
		"queued.max.messages.kbytes", psprintf("%d", cfg->queued_max_kbytes),
		"queued.min.messages", "10000",
		/* A fetch at the end of some partitions holds back the others on its broker. */
		"fetch.wait.max.ms", "100",
		NULL
	};
	rd_kafka_conf_t *conf;

	conf = evc_kafka_conf_build(psprintf("consumer \"%s\"", cfg->name), defaults,
								cfg->kafka_properties);
	evc_kafka_conf_set(conf, "group.id", cfg->group_id);
	evc_kafka_conf_set(conf, "enable.auto.commit", "false");
	evc_kafka_conf_set(conf, "enable.auto.offset.store", "false");
	evc_kafka_conf_set(conf, "enable.partition.eof", "false");
	/*
	 * Never land a batch the relay aborted, or one still open: the relay
	 * sends each tick in a Kafka transaction (relay/relay_txn.c).  It is
	 * librdkafka's default; stated here so that no property undoes it.
	 */
	evc_kafka_conf_set(conf, "isolation.level", "read_committed");
	rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance_cb);
	rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
	return conf;
}

static void
consumer_connect(void)
{
	rd_kafka_conf_t *conf = consumer_conf();
	rd_kafka_topic_partition_list_t *subs;
	char		errstr[512];
	ListCell   *lc;
	rd_kafka_resp_err_t err;

	fetch_queue_msgs = Max(conf_get_int(conf, "queued.min.messages"), 1);
	fetch_queue_bytes = Max(conf_get_int(conf, "queued.max.messages.kbytes"), 1) * INT64CONST(1024);

	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create the Kafka consumer for \"%s\"", cfg->name),
				 errdetail("%s", errstr)));
	}
	/* Logs, errors and rebalances all come out of rd_kafka_consumer_poll. */
	rd_kafka_poll_set_consumer(rk);
	evc_kafka_serve_logs(rk);
	rkqu = rd_kafka_queue_get_consumer(rk);

	if (evc_pipe_nonblock(wake_pipe) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create a pipe for consumer \"%s\": %m", cfg->name)));
	rd_kafka_queue_io_event_enable(rkqu, wake_pipe[1], "1", 1);

	subs = rd_kafka_topic_partition_list_new(list_length(cfg->topics));
	foreach(lc, cfg->topics)
		rd_kafka_topic_partition_list_add(subs, lfirst(lc), RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not subscribe consumer \"%s\" to its topics", cfg->name),
				 errdetail("%s", rd_kafka_err2str(err))));
}

static void *
destroy_thread(void *arg)
{
	rd_kafka_destroy_flags((rd_kafka_t *) arg, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	return NULL;
}

/*
 * Exit callback: leave the group so the partitions move at once, within a
 * time limit, and destroy the handle in a helper thread that we wait for a
 * bounded time (rd_kafka_destroy can hang).  Nothing is committed here.
 */
static void
consumer_on_exit(int code, Datum arg)
{
	TimestampTz deadline;
	rd_kafka_error_t *error;
	pthread_t	th;

	if (rk == NULL)
		return;
	rd_kafka_queue_io_event_enable(rkqu, -1, NULL, 0);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CLOSE_LIMIT_MS);
	error = rd_kafka_consumer_close_queue(rk, rkqu);
	if (error)
		rd_kafka_error_destroy(error);
	while (!rd_kafka_consumer_closed(rk) && GetCurrentTimestamp() < deadline)
	{
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);

		if (m)
			rd_kafka_message_destroy(m);
	}
	if (!rd_kafka_consumer_closed(rk))
	{
		ereport(LOG,
				(errmsg("evcollector consumer \"%s\" did not close within %d ms", cfg->name, CLOSE_LIMIT_MS),
				 errdetail("Its partitions move to another member once the group's session times out.")));
		return;
	}
	rd_kafka_queue_destroy(rkqu);
	/* The thread runs no PostgreSQL code, and takes no signal of ours. */
	if (evc_thread_start(&th, destroy_thread, rk) == 0 &&
		!evc_thread_join_timed(th, DESTROY_LIMIT_MS))
		ereport(LOG,
				(errmsg("evcollector consumer \"%s\" left its Kafka handle behind at exit", cfg->name),
				 errdetail("rd_kafka_destroy did not finish within %d ms.", DESTROY_LIMIT_MS)));
	rk = NULL;
}

static void
report_kafka_errors(void)
{
	TimestampTz now;

	if (!kafka_error_pending)
		return;
	kafka_error_pending = false;
	if (kafka_error_fatal)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("fatal Kafka consumer error in \"%s\"", cfg->name),
				 errdetail("%s", kafka_error_text)));
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(last_kafka_warning, now, KAFKA_WARN_EVERY_MS))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("Kafka consumer \"%s\" reports a problem", cfg->name),
				 errdetail("%s", kafka_error_text),
				 errhint("librdkafka retries by itself; the consumer keeps running.")));
		last_kafka_warning = now;
	}
}

/* ---------------------------------------------------------------------
 * Held messages
 *
 * Polled messages wait here, per partition and in offset order, until
 * their partition is due: it holds batch_size events or max_file_size
 * bytes, or its oldest message has waited flush_interval.  Every partition
 * is due when the worker holds max_file_size bytes in all, which bounds
 * its memory.  A landing takes from each due partition at most batch_size
 * messages and max_file_size bytes, starting at its oldest held message;
 * the rest wait for the next landing.  So each object a landing writes
 * starts at its partition's next offset or at a change of hour, and a
 * landing repeated after a crash writes over the same keys.
 * ---------------------------------------------------------------------
 */

static HeldPartition *
held_partition(const char *topic, int32 partition)
{
	HeldPartition *hp = held.last;
	ListCell   *lc;
	int			pos = 0;
	MemoryContext old;

	if (hp != NULL && hp->msgs.partition == partition && strcmp(hp->msgs.topic, topic) == 0)
		return hp;
	/* Kept in (topic, partition) order: landings lock offset rows in it. */
	foreach(lc, held.parts)
	{
		int			c;

		hp = lfirst(lc);
		c = strcmp(hp->msgs.topic, topic);
		if (c == 0)
			c = (hp->msgs.partition > partition) - (hp->msgs.partition < partition);
		if (c == 0)
			return held.last = hp;
		if (c > 0)
			break;
		pos++;
	}
	old = MemoryContextSwitchTo(held.cxt);
	hp = palloc0(sizeof(HeldPartition));
	hp->msgs.topic = pstrdup(topic);
	hp->msgs.partition = partition;
	hp->msgs.capacity = 64;
	hp->msgs.messages = palloc(sizeof(EvcMessage) * hp->msgs.capacity);
	hp->polled_at = palloc(sizeof(TimestampTz) * hp->msgs.capacity);
	hp->last_offset = -1;
	held.parts = list_insert_nth(held.parts, pos, hp);
	MemoryContextSwitchTo(old);
	return held.last = hp;
}

static void
held_take_in(rd_kafka_message_t *m, TimestampTz now)
{
	HeldPartition *hp = held_partition(rd_kafka_topic_name(m->rkt), m->partition);
	EvcMessage *em;
	rd_kafka_timestamp_type_t tstype;
	char	   *copy;

	/* Never take a message in twice, whatever librdkafka delivers. */
	if (m->offset <= hp->last_offset)
		return;
	if (hp->msgs.nmessages == hp->msgs.capacity)
	{
		hp->msgs.capacity *= 2;
		hp->msgs.messages = repalloc(hp->msgs.messages, sizeof(EvcMessage) * hp->msgs.capacity);
		hp->polled_at = repalloc(hp->polled_at, sizeof(TimestampTz) * hp->msgs.capacity);
	}
	hp->polled_at[hp->msgs.nmessages] = now;
	em = &hp->msgs.messages[hp->msgs.nmessages++];
	em->offset = m->offset;
	em->timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
	/* Payload and key in one chunk, freed once landed. */
	copy = MemoryContextAlloc(held.copies, m->len + 1 + m->key_len);
	if (m->len)
		memcpy(copy, m->payload, m->len);
	copy[m->len] = '\0';
	em->payload = copy;
	em->len = m->len;
	em->key_len = m->key_len;
	em->key = NULL;
	if (m->key)
	{
		em->key = copy + m->len + 1;
		memcpy(em->key, m->key, m->key_len);
	}
	hp->last_offset = m->offset;
	hp->nbytes += m->len;
	held.nmessages++;
	held.nbytes += m->len;
}

/* The first n messages of hp landed: let them go. */
static void
held_release(HeldPartition *hp, int n)
{
	int			rest = hp->msgs.nmessages - n;

	for (int i = 0; i < n; i++)
	{
		hp->nbytes -= hp->msgs.messages[i].len;
		held.nbytes -= hp->msgs.messages[i].len;
		pfree(hp->msgs.messages[i].payload);
	}
	memmove(hp->msgs.messages, hp->msgs.messages + n, sizeof(EvcMessage) * rest);
	memmove(hp->polled_at, hp->polled_at + n, sizeof(TimestampTz) * rest);
	hp->msgs.nmessages = rest;
	held.nmessages -= n;
	if (held.nmessages == 0)
		MemoryContextReset(held.copies);
}

/*
 * A rebalance took partitions away: drop every held message, since none
 * was landed, and forget the partitions we no longer own.  Those we keep
 * are rewound to their first dropped message, so nothing is skipped;
 * revoked ones restart, wherever they go, from the offsets landed so far.
 */
static void
held_drop_after_revoke(void)
{
	rd_kafka_topic_partition_list_t *assigned = NULL;
	rd_kafka_topic_partition_list_t *kept;
	rd_kafka_topic_partition_list_t *rewind;
	ListCell   *lc;
	int64		dropped = held.nmessages;

	revoke_seen = false;
	kept = rd_kafka_topic_partition_list_new(list_length(held.parts));
	rewind = rd_kafka_topic_partition_list_new(list_length(held.parts));
	if (rd_kafka_assignment(rk, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		foreach(lc, held.parts)
		{
			HeldPartition *hp = lfirst(lc);

			if (!rd_kafka_topic_partition_list_find(assigned, hp->msgs.topic, hp->msgs.partition))
				continue;
			if (hp->msgs.nmessages > 0)
				rd_kafka_topic_partition_list_add(rewind, hp->msgs.topic, hp->msgs.partition)->offset =
					hp->msgs.messages[0].offset;
			rd_kafka_topic_partition_list_add(kept, hp->msgs.topic, hp->msgs.partition)->offset =
				hp->msgs.nmessages > 0 ? hp->msgs.messages[0].offset : hp->last_offset + 1;
		}
		rd_kafka_topic_partition_list_destroy(assigned);
	}
	MemoryContextReset(held.copies);
	MemoryContextReset(held.cxt);
	held.parts = NIL;
	held.last = NULL;
	held.nmessages = 0;
	held.nbytes = 0;
	for (int i = 0; i < kept->cnt; i++)
		held_partition(kept->elems[i].topic, kept->elems[i].partition)->last_offset =
			kept->elems[i].offset - 1;
	rd_kafka_topic_partition_list_destroy(kept);
	if (rewind->cnt > 0)
	{
		rd_kafka_error_t *error = rd_kafka_seek_partitions(rk, rewind, 5000);

		if (error)
		{
			rd_kafka_error_destroy(error);
			rd_kafka_topic_partition_list_destroy(rewind);
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("consumer \"%s\" could not rewind its partitions after a rebalance", cfg->name)));
		}
	}
	rd_kafka_topic_partition_list_destroy(rewind);
	elog(DEBUG1, "consumer \"%s\" dropped " INT64_FORMAT " unlanded messages at a rebalance",
		 cfg->name, dropped);
}

/* How many of hp's messages to land now; 0 when it is not due. */
static int
partition_take(HeldPartition *hp, TimestampTz now, bool all_due)
{
	int			max_n = batch_size_limit();
	int64		max_bytes = batch_bytes_limit();
	int			n = 0;
	int64		bytes = 0;

	if (hp->msgs.nmessages == 0)
		return 0;
	while (n < hp->msgs.nmessages && n < max_n &&
		   (n == 0 || bytes + (int64) hp->msgs.messages[n].len <= max_bytes))
		bytes += hp->msgs.messages[n++].len;
	if (n < hp->msgs.nmessages || n == max_n || bytes >= max_bytes || all_due ||
		TimestampDifferenceExceeds(hp->polled_at[0], now, flush_interval_ms()))
		return n;
	return 0;
}

/* Decide each partition's share of the next landing; returns the total. */
static int64
held_plan_landing(TimestampTz now)
{
	bool		all_due = held.nbytes >= batch_bytes_limit();
	int64		total = 0;
	ListCell   *lc;

	foreach(lc, held.parts)
	{
		HeldPartition *hp = lfirst(lc);

		hp->take = partition_take(hp, now, all_due);
		total += hp->take;
	}
	return total;
}

/* Bytes of the messages held_plan_landing chose. */
static int64
held_bytes_taken(void)
{
	int64		bytes = 0;
	ListCell   *lc;

	foreach(lc, held.parts)
	{
		HeldPartition *hp = lfirst(lc);

		for (int i = 0; i < hp->take; i++)
			bytes += hp->msgs.messages[i].len;
	}
	return bytes;
}

static long
ms_until(TimestampTz when, TimestampTz now)
{
	return when <= now ? 0 : (long) ((when - now + 999) / 1000);
}

/* How long until the oldest held message must be landed. */
static long
held_wait_ms(TimestampTz now)
{
	TimestampTz oldest = 0;
	ListCell   *lc;

	foreach(lc, held.parts)
	{
		HeldPartition *hp = lfirst(lc);

		if (hp->msgs.nmessages > 0 && (oldest == 0 || hp->polled_at[0] < oldest))
			oldest = hp->polled_at[0];
	}
	if (oldest == 0)
		return IDLE_WAIT_MS;
	return ms_until(TimestampTzPlusMilliseconds(oldest, flush_interval_ms()), now);
}

/*
 * librdkafka 2.0 stops fetching while the consumer queue is over
 * queued.min.messages or queued.max.messages.kbytes, and looks again only
 * when something wakes its broker threads: up to a second later (2.1 added
 * fetch.queue.backoff.ms for this).  A consumer slower than Kafka fills
 * that queue every time, and spent most of its time waiting here.  So when
 * the worker has just emptied a queue that was full, it seeks each of its
 * partitions to where it stands, the offset after the last message polled:
 * a seek to an offset wakes the broker thread at once.  A message fetched
 * meanwhile is dropped by librdkafka and fetched again from there, never
 * skipped.  The worker keeps the positions itself, because librdkafka
 * forgets its own at a seek; a partition it has not polled from since it
 * was assigned has none yet, and is left alone.
 */
static void
consumer_restart_fetch(void)
{
	rd_kafka_topic_partition_list_t *assigned = NULL;
	rd_kafka_topic_partition_list_t *positions;
	rd_kafka_error_t *error;
	ListCell   *lc;

	if (rd_kafka_assignment(rk, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	positions = rd_kafka_topic_partition_list_new(list_length(held.parts));
	foreach(lc, held.parts)
	{
		HeldPartition *hp = lfirst(lc);

		if (rd_kafka_topic_partition_list_find(assigned, hp->msgs.topic, hp->msgs.partition))
			rd_kafka_topic_partition_list_add(positions, hp->msgs.topic, hp->msgs.partition)->offset =
				hp->last_offset + 1;
	}
	/* Asynchronous: a partition that cannot seek now just keeps its place. */
	if (positions->cnt > 0 && (error = rd_kafka_seek_partitions(rk, positions, 0)) != NULL)
		rd_kafka_error_destroy(error);
	rd_kafka_topic_partition_list_destroy(positions);
	rd_kafka_topic_partition_list_destroy(assigned);
}

/* The consumer queue was found empty: was it full since it last was? */
static void
fetch_queue_emptied(void)
{
	int64		peak = Max(fetch_queue_peak, polled_msgs_since_empty);

	if (peak * 4 >= (int64) fetch_queue_msgs * 3 ||
		polled_bytes_since_empty * 4 >= fetch_queue_bytes * 3)
		consumer_restart_fetch();
	fetch_queue_peak = 0;
	polled_msgs_since_empty = 0;
	polled_bytes_since_empty = 0;
}

/*
 * Take what the consumer queue holds, until it is empty, a queue's worth
 * was taken, or the worker holds all it may.  Returns true when messages
 * may be left in the queue.
 */
static bool
consumer_drain(TimestampTz now)
{
	char		buf[64];
	int64		limit = batch_bytes_limit();

	while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
		;
	/* Its length counts what librdkafka will drop unseen, as its limit does. */
	fetch_queue_peak = Max(fetch_queue_peak, (int64) rd_kafka_queue_length(rkqu));
	for (int n = 0; n < fetch_queue_msgs; n++)
	{
		rd_kafka_message_t *m;
		bool		empty;

		if (held.nbytes >= limit)
			return true;
		m = rd_kafka_consumer_poll(rk, 0);
		empty = (m == NULL);
		if (m != NULL)
		{
			if (m->err)
			{
				snprintf(kafka_error_text, sizeof(kafka_error_text), "%s: %s",
						 rd_kafka_err2name(m->err), rd_kafka_message_errstr(m));
				kafka_error_pending = true;
			}
			else
			{
				polled_msgs_since_empty++;
				polled_bytes_since_empty += m->len;
				held_take_in(m, now);
			}
			rd_kafka_message_destroy(m);
		}
		/* After held_take_in: a message polled with the rebalance is dropped and rewound too. */
		if (revoke_seen)
			held_drop_after_revoke();
		if (empty)
		{
			fetch_queue_emptied();
			return false;
		}
	}
	return true;
}

/* ---------------------------------------------------------------------
 * Landing
 * ---------------------------------------------------------------------
 */

/* Lock the partition's offset row and return its next offset (-1: none). */
static int64
lock_offset(EvcPartitionBatch *pb)
{
	Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		v[3];
	bool		isnull;

	evc_spi_kept_plan(&plan_lock_offset,
					  "INSERT INTO evc.consumer_offsets AS o (group_id, topic, partition, next_offset) "
					  "VALUES ($1, $2, $3, -1) ON CONFLICT (group_id, topic, partition) "
					  "DO UPDATE SET updated_at = o.updated_at RETURNING o.next_offset", 3, types);
	v[0] = CStringGetTextDatum(cfg->group_id);
	v[1] = CStringGetTextDatum(pb->topic);
	v[2] = Int32GetDatum(pb->partition);
	evc_spi_execute_plan(plan_lock_offset, v, NULL, SPI_OK_INSERT_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "could not lock the offset of %s [%d]", pb->topic, pb->partition);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static void
move_offset(EvcPartitionBatch *pb, int64 next)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT8OID};
	Datum		v[4];

	evc_spi_kept_plan(&plan_move_offset,
					  "UPDATE evc.consumer_offsets SET next_offset = $4, updated_at = now() "
					  "WHERE group_id = $1 AND topic = $2 AND partition = $3", 4, types);
	v[0] = CStringGetTextDatum(cfg->group_id);
	v[1] = CStringGetTextDatum(pb->topic);
	v[2] = Int32GetDatum(pb->partition);
	v[3] = Int64GetDatum(next);
	evc_spi_execute_plan(plan_move_offset, v, NULL, SPI_OK_UPDATE);
}

static void
record_progress(int64 consumed, EvcLandResult *total)
{
	Oid			types[6] = {INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		v[6];

	evc_spi_kept_plan(&plan_progress,
					  "INSERT INTO evc.consumer_progress AS p (consumer_id, consumed, landed, dead_lettered, "
					  "skipped, bytes, batches, last_batch_at) VALUES ($1, $2, $3, $4, $5, $6, 1, now()) "
					  "ON CONFLICT (consumer_id) DO UPDATE SET consumed = p.consumed + EXCLUDED.consumed, "
					  "landed = p.landed + EXCLUDED.landed, dead_lettered = p.dead_lettered + EXCLUDED.dead_lettered, "
					  "skipped = p.skipped + EXCLUDED.skipped, bytes = p.bytes + EXCLUDED.bytes, "
					  "batches = p.batches + 1, last_batch_at = now()", 6, types);
	v[0] = Int32GetDatum(cfg->id);
	v[1] = Int64GetDatum(consumed);
	v[2] = Int64GetDatum(total->landed);
	v[3] = Int64GetDatum(total->dead_lettered);
	v[4] = Int64GetDatum(total->skipped);
	v[5] = Int64GetDatum(total->bytes);
	evc_spi_execute_plan(plan_progress, v, NULL, SPI_OK_INSERT);
}

/*
 * Land each due partition's share in one transaction, in (topic,
 * partition) order; fills commit with the offsets to commit to Kafka
 * afterwards.
 */
static void
land_due_partitions(rd_kafka_topic_partition_list_t *commit, int64 consumed)
{
	EvcLandResult total = {0};
	ListCell   *lc;

	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, held.parts)
	{
		HeldPartition *hp = lfirst(lc);
		EvcPartitionBatch share;
		int64		next;
		int64		last;
		EvcLandResult res = {0};

		if (hp->take == 0)
			continue;
		share = hp->msgs;
		share.nmessages = hp->take;
		next = lock_offset(&share);
		last = share.messages[share.nmessages - 1].offset;
		evc_sink_land(cfg, storage, &share, next, &res);
		next = Max(next, last + 1);
		move_offset(&share, next);
		rd_kafka_topic_partition_list_add(commit, share.topic, share.partition)->offset = next;
		total.landed += res.landed;
		total.dead_lettered += res.dead_lettered;
		total.skipped += res.skipped;
		total.bytes += res.bytes;
	}
	/* The objects are durable before the rows that index them commit. */
	evc_storage_sync(storage);
	record_progress(consumed, &total);
	batch_landed = total;
	SPI_finish();
	PopActiveSnapshot();
}

/*
 * The worker goes on after a failed landing, so its error is logged as a
 * WARNING, but whole: its code, detail, hint and context (the statement
 * that failed, for one) as the failing code gave them.
 */
static void
log_landing_error(ErrorData *edata, int64 ntake)
{
	const char *ours = "Nothing was committed; the messages are landed again.";

	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("consumer \"%s\" could not land " INT64_FORMAT " messages: %s",
					cfg->name, ntake, edata->message),
			 edata->detail ? errdetail("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s %s", edata->hint, ours) : errhint("%s", ours),
			 edata->context ? errcontext("%s", edata->context) : 0));
}

/*
 * Land what held_plan_landing chose, then commit its offsets.  On failure
 * nothing is committed, everything stays held, and false is returned.
 */
static bool
land_held(int64 ntake)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	rd_kafka_topic_partition_list_t *commit =
		rd_kafka_topic_partition_list_new(list_length(held.parts));
	volatile bool ok = true;
	char		activity[128];
	TimestampTz started = GetCurrentTimestamp();

	snprintf(activity, sizeof(activity), "landing " INT64_FORMAT " messages", ntake);
	pgstat_report_activity(STATE_RUNNING, activity);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		consumer_open_storage();
		land_due_partitions(commit, ntake);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
		evc_worker_record_error(my_slot, edata->detail ?
								psprintf("%s: %s", edata->message, edata->detail) : edata->message);
		log_landing_error(edata, ntake);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	evc_consumer_count_batch(my_slot, ntake, held_bytes_taken(), ok ? &batch_landed : NULL, started);
	if (ok)
	{
		rd_kafka_resp_err_t err = rd_kafka_commit(rk, commit, 1);
		ListCell   *lc;

		if (err)
			ereport(LOG,
					(errmsg("consumer \"%s\" could not commit its offsets to Kafka", cfg->name),
					 errdetail("%s; evc.consumer_offsets has them, and the next owner of the partitions starts from there.",
							   rd_kafka_err2str(err))));
		foreach(lc, held.parts)
		{
			HeldPartition *hp = lfirst(lc);

			held_release(hp, hp->take);
			hp->take = 0;
		}
	}
	rd_kafka_topic_partition_list_destroy(commit);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* ---------------------------------------------------------------------
 * Main loop
 * ---------------------------------------------------------------------
 */

void
evc_consumer_main(Datum main_arg)
{
	int32		id = DatumGetInt32(main_arg);
	char		name[BGW_EXTRALEN];
	WaitEventSet *set;
	TimestampTz retry_at = 0;
	long		backoff_ms = BACKOFF_FIRST_MS;
	bool		more = false;

	strlcpy(name, MyBgworkerEntry->bgw_extra, sizeof(name));
	my_slot = evc_worker_startup(EVC_WORKER_CONSUMER, name);
	before_shmem_exit(consumer_on_exit, (Datum) 0);

	held.cxt = AllocSetContextCreate(TopMemoryContext, "evcollector consumer partitions",
									 ALLOCSET_DEFAULT_SIZES);
	held.copies = AllocSetContextCreate(TopMemoryContext, "evcollector consumer held messages",
										ALLOCSET_DEFAULT_SIZES);
	consumer_load_config(id);
	consumer_open_storage();
	consumer_connect();
	ereport(LOG,
			(errmsg("evcollector consumer \"%s\" started: group \"%s\", %s sink",
					cfg->name, cfg->group_id,
					cfg->sink == EVC_SINK_ARCHIVE ? "archive" : cfg->sink == EVC_SINK_IMAGES ? "images" :
					cfg->sink == EVC_SINK_AGGREGATES ? "aggregates" : "table")));

	set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(set, WL_SOCKET_READABLE, wake_pipe[0], NULL, NULL);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		int64		ntake;
		long		timeout;

		/* Between transactions, as a backend going idle (see stats.c). */
		timeout = evc_stats_report_idle(more ? 0 : retry_at != 0 ? ms_until(retry_at, now) :
										held_wait_ms(now));
		if (!more)
		{
			WaitEvent	event;

			(void) WaitEventSetWait(set, timeout, &event, 1, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			now = GetCurrentTimestamp();
		}
		evc_worker_handle_interrupts();

		if (retry_at != 0 && now < retry_at)
			continue;			/* backing off: fetch nothing, land nothing */
		retry_at = 0;

		more = consumer_drain(now);
		evc_consumer_note_watermarks(my_slot, rk, held.nmessages == 0);
		report_kafka_errors();
		ntake = held_plan_landing(GetCurrentTimestamp());
		if (ntake == 0)
			continue;
		if (land_held(ntake))
		{
			backoff_ms = BACKOFF_FIRST_MS;
			more = true;		/* partitions may still be due */
		}
		else
		{
			retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
			backoff_ms = Min(backoff_ms * 2, BACKOFF_MAX_MS);
			more = false;
		}
	}
}
