/*
 * relay.c
 *		Owns the relay worker: it moves committed rows of evc.outbox to Kafka
 *		with librdkafka's idempotent producer and deletes exactly the rows
 *		whose delivery Kafka acknowledged.
 *
 * Batch by batch: read up to evcollector.batch_size ready rows (a short
 * transaction), produce them, wait for every delivery report with no
 * transaction open, then settle the batch in one transaction: delete the
 * delivered rows, count an attempt and schedule a retry (with backoff) for
 * the failed ones, and move permanent failures to evc.dead_letters.  While
 * a backlog drains, one full batch is in flight while the next is read.
 *
 * Rows are read as "every visible row that is due", never only "rows after
 * the last id seen": transactions commit out of order, and a cursor on id
 * would skip a row whose transaction committed after a later one's.  Reads
 * start after the last one, and go back as far as commits say they must
 * (see read_start).
 *
 * Two threads.  This one does the PostgreSQL work; a producer thread (see
 * handoff.c) produces the rows it posts and serves librdkafka's main queue:
 * delivery reports and errors, in callbacks that call no PostgreSQL
 * function.  librdkafka's logs have a queue of their own, served here.
 * This thread never sleeps except in a WaitEventSet that holds its latch
 * (set at commit by evc_send) and a pipe the producer thread writes to
 * when a batch's last report is in or it has produced all it was given.
 */
#include "postgres.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/bufmgr.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "relay/handoff.h"
#include "kafka/kafka.h"
#include "observe/metrics.h"
#include "send/outbox.h"
#include "kafka/proto.h"
#include "relay/relay.h"
#include "core/shmem.h"
#include "core/stats.h"
#include "core/worker.h"

/*
 * What the relay keeps of each row it produced, until the batch is
 * settled: enough to delete the row and to record the delivery, and the
 * message itself.  librdkafka produces it without a copy and points into
 * it until its delivery report, so it lives in the batch's memory.
 */
typedef struct RelayMsg
{
	int64		id;
	ItemPointerData tid;		/* where the row is, to delete it */
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
 */
typedef struct RelayBatch
{
	bool		active;			/* produced and not yet settled */
	uint32		generation;
	MemoryContext cxt;			/* reset when the batch is reused */
	RelayMsg   *msgs;			/* in id order */
	int			n;
	int			cap;			/* the array's size, fixed while in flight */
	int			reports_pending;	/* atomic: see relay_dr_cb */
} RelayBatch;

static rd_kafka_t *producer = NULL;
static char *producer_brokers = NULL;
static char *producer_properties = NULL;
static bool producer_fatal = false;

static RelayBatch batches[2];
static uint32 batch_generation = 0;

/*
 * Topic handles by name, so producing a message does not look its topic up
 * in librdkafka by name (a lock and a hash lookup per message).  They
 * belong to the producer and go with it.
 */
#define TOPIC_KEY_LEN 520		/* librdkafka refuses names over 512 bytes */
typedef struct TopicHandle
{
	char		name[TOPIC_KEY_LEN];
	rd_kafka_topic_t *rkt;
} TopicHandle;
static HTAB *topic_handles = NULL;

static int	io_pipe[2] = {-1, -1};		/* wakes the main loop */
static int	kafka_pipe[2] = {-1, -1};	/* librdkafka's main queue has callbacks */
static rd_kafka_queue_t *log_queue = NULL;	/* the producer's logs, served here */
static WaitEventSet *wait_set = NULL;		/* latch and io_pipe */
static WaitEventSet *kafka_wait_set = NULL;	/* io_pipe only */
static EvcWorkerSlot *relay_slot = NULL;

/* Longest sleep when nothing is due: a safety net, commits set the latch. */
#define RELAY_IDLE_MS (60 * 1000)
/* Pause after a batch failed with an error, doubling up to the maximum. */
#define RELAY_ERROR_BACKOFF_MIN_MS 500
#define RELAY_ERROR_BACKOFF_MAX_MS (30 * 1000)

/* Rows are posted to the producer thread this many at a time. */
#define HANDOFF_EVERY 256

/*
 * Where reads start (see outbox_read).  Every row with an id at or below
 * read_floor has been delivered, or is in flight, or is in backoff (and
 * then at or above backoff_low), or committed late (and then at or above
 * the shared outbox_late_low).  0: read from the lowest id.
 */
static int64 read_floor = 0;
static int64 backoff_low = PG_INT64_MAX;	/* lowest id known in backoff */
static TimestampTz backoff_due = DT_NOEND;	/* the earliest next attempt among them */
static TimestampTz last_full_read = 0;
/* Once a prepared transaction sent events (see EvcShared.outbox_untracked): */
static int	reads_since_full = 0;
static bool full_read_next = false;

/*
 * A read from the lowest id this often all the same, for rows no commit
 * told the relay about: rows inserted by hand.  And every READ_FULL_EVERY
 * batches once prepared transactions have sent events (outbox_untracked).
 */
#define READ_FULL_MS (60 * 1000)
#define READ_FULL_EVERY 32

#define OPAQUE(gen, idx) ((void *) (((uintptr_t) (gen) << 32) | (uintptr_t) (idx)))

/*
 * What the producer thread shares with the main loop (see handoff.c).  It
 * produces the posted messages and serves librdkafka's main queue: the
 * delivery reports, which it writes into the batch (RelayMsg's outcome
 * fields, then one atomic count per batch), and errors, which it keeps
 * for the main loop to log.  A batch's active flag and generation are
 * read by the thread and written by the main loop, hence atomic access.
 */
#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static pthread_mutex_t kafka_error_lock = PTHREAD_MUTEX_INITIALIZER;
static bool kafka_error_pending = false;
static bool kafka_error_fatal = false;
static rd_kafka_resp_err_t kafka_error_code;
static char kafka_error_text[512];
static int	kafka_errors_unlogged = 0;

/* On the producer thread: when the reports being served arrived, near enough. */
static TimestampTz reports_served_at = 0;

/* The time as a TimestampTz, without GetCurrentTimestamp (a PG function). */
static TimestampTz
thread_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((TimestampTz) ts.tv_sec - (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) * USECS_PER_SEC
		+ ts.tv_nsec / 1000;
}

static RelayBatch *
batch_of_generation(uint32 gen)
{
	for (int i = 0; i < lengthof(batches); i++)
		if (LOAD(&batches[i].active) && LOAD(&batches[i].generation) == gen)
			return &batches[i];
	return NULL;
}

/*
 * On the producer thread: one message's delivery report.  The last report
 * of a batch wakes the main loop, which may be waiting for it.
 */
static void
relay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	uintptr_t	tag = (uintptr_t) msg->_private;
	RelayBatch *batch = batch_of_generation((uint32) (tag >> 32));
	int			idx = (int) (tag & 0xFFFFFFFF);
	RelayMsg   *m;

	if (batch == NULL || idx >= batch->cap)
		return;
	m = &batch->msgs[idx];
	m->err = msg->err;
	m->acked_at = reports_served_at;
	m->partition = msg->partition;
	m->offset = msg->offset;
	m->reported = true;
	if (__atomic_sub_fetch(&batch->reports_pending, 1, __ATOMIC_ACQ_REL) == 0)
		evc_handoff_wake_main();
}

/* On the producer thread: keep the error for the main loop to log. */
static void
relay_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char		buf[512];
	bool		fatal = (err == RD_KAFKA_RESP_ERR__FATAL);

	if (fatal)
		rd_kafka_fatal_error(rk, buf, sizeof(buf));
	else
		strlcpy(buf, reason, sizeof(buf));
	pthread_mutex_lock(&kafka_error_lock);
	if (fatal)
		STORE(&producer_fatal, true);
	if (kafka_error_pending && !fatal)
		kafka_errors_unlogged++;
	else
	{
		kafka_error_pending = true;
		kafka_error_fatal = fatal;
		kafka_error_code = err;
		memcpy(kafka_error_text, buf, sizeof(buf));
	}
	pthread_mutex_unlock(&kafka_error_lock);
	evc_handoff_wake_main();
}

/* On the producer thread: serve librdkafka's main queue. */
static void
serve_reports(int timeout_ms)
{
	reports_served_at = thread_now();
	rd_kafka_poll(producer, timeout_ms);
}

static void
serve_reports_now(void)
{
	serve_reports(0);
}

/* On the main loop: log what the producer thread kept, serve the logs. */
static void
relay_service(void)
{
	bool		pending,
				fatal = false;
	rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
	char		text[512];
	char		shown[600];
	int			unlogged = 0;

	if (log_queue)
		rd_kafka_queue_poll_callback(log_queue, 0);
	pthread_mutex_lock(&kafka_error_lock);
	pending = kafka_error_pending;
	if (pending)
	{
		fatal = kafka_error_fatal;
		code = kafka_error_code;
		memcpy(text, kafka_error_text, sizeof(text));
		unlogged = kafka_errors_unlogged;
		kafka_error_pending = false;
		kafka_errors_unlogged = 0;
	}
	pthread_mutex_unlock(&kafka_error_lock);
	if (!pending)
		return;
	if (fatal)
		ereport(WARNING,
				(errmsg("kafka producer hit a fatal error; it will be recreated"),
				 errdetail("%s", text)));
	else
		ereport(LOG,
				(errmsg("kafka producer: %s", text),
				 errdetail("librdkafka error %s.", rd_kafka_err2name(code)),
				 unlogged > 0 ? errhint("%d more errors since the last one logged are not shown.", unlogged) : 0));
	/* A wrong password or unreachable brokers show in evc.workers too. */
	snprintf(shown, sizeof(shown), "kafka producer: %s (librdkafka error %s)", text, rd_kafka_err2name(code));
	evc_worker_record_error(relay_slot, shown);
}

static void
drain_pipe(void)
{
	char		buf[64];

	while (read(io_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * Set when the latch fired (a commit sent events, or a signal came) while
 * the relay was busy; the main loop then reads the outbox again instead of
 * sleeping.  The latch itself is reset at once, or a set latch would make
 * every wait in a batch return at once and spin.
 */
static bool work_signalled = false;

/* Wait on the latch and on the producer thread. */
static void
relay_wait(long timeout_ms)
{
	WaitEvent	event;

	if (WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION) > 0 &&
		(event.events & WL_LATCH_SET))
	{
		ResetLatch(MyLatch);
		work_signalled = true;
	}
	drain_pipe();
	relay_service();
}

/*
 * Wait for the producer thread only, while a batch is in flight.  The
 * latch is left alone: a commit in the meantime finds it still set and
 * costs the sender no signal, and the main loop sees it once the batch is
 * settled.  Signals are seen at the next timeout, so callers keep it short.
 */
static void
relay_wait_kafka(long timeout_ms)
{
	WaitEvent	event;

	(void) WaitEventSetWait(kafka_wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
	drain_pipe();
	relay_service();
}

/*
 * Destroy the producer.  Its messages point into the batches' memory (they
 * are produced without a copy), so nothing of it may outlive this.  Every
 * message it has not reported counts as failed: its row stays in the
 * outbox and is sent again.
 */
static void
producer_destroy(void)
{
	if (producer == NULL)
		return;
	/* The thread lets go of the handle; its reports are served here now. */
	evc_handoff_serving(false);
	rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	serve_reports_now();
	relay_service();
	if (log_queue)
	{
		rd_kafka_queue_destroy(log_queue);
		log_queue = NULL;
	}
	if (topic_handles)
	{
		HASH_SEQ_STATUS seq;
		TopicHandle *th;

		hash_seq_init(&seq, topic_handles);
		while ((th = hash_seq_search(&seq)) != NULL)
			rd_kafka_topic_destroy(th->rkt);
		hash_destroy(topic_handles);
		topic_handles = NULL;
	}
	rd_kafka_destroy(producer);
	producer = NULL;

	for (int i = 0; i < lengthof(batches); i++)
	{
		RelayBatch *batch = &batches[i];

		if (!batch->active)
			continue;
		for (int j = 0; j < batch->n; j++)
			if (!batch->msgs[j].reported)
			{
				batch->msgs[j].reported = true;
				batch->msgs[j].err = RD_KAFKA_RESP_ERR__PURGE_QUEUE;
			}
		STORE(&batch->reports_pending, 0);
	}
}

/*
 * The registry's topic <prefix>_evc_schemas is compacted: it is created so
 * before this producer sends it anything, or the brokers would create it
 * with their defaults when the first record arrives.
 */
static void
relay_ensure_schemas_topic(const char *name)
{
	char	   *why;

	if (strcmp(name, evc_topic_name("_evc_schemas")) != 0)
		return;
	if (evc_kafka_ensure_compacted_topic(producer, name, 5000, &why) == EVC_TOPIC_FAILED)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("evcollector relay: could not create the compacted topic \"%s\"", name),
				 errdetail("%s.", why),
				 errhint("Create it with evc_create_topic('%s', 1, -1, '{\"cleanup.policy\": \"compact\"}'); "
						 "if the brokers create it when the first schema record arrives, it is not compacted.", name)));
}

/*
 * The producer's handle for a topic.  NULL when librdkafka will not make
 * one (a name it refuses): the message then fails as an invalid argument,
 * a permanent error, and its row goes to evc.dead_letters with the reason.
 */
static rd_kafka_topic_t *
topic_handle(const char *name)
{
	TopicHandle *th;
	bool		found;

	if (strlen(name) >= TOPIC_KEY_LEN)
		return NULL;
	if (topic_handles == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = TOPIC_KEY_LEN;
		ctl.entrysize = sizeof(TopicHandle);
		ctl.hcxt = TopMemoryContext;
		topic_handles = hash_create("evcollector relay topics", 64, &ctl,
									HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	/* Before the entry is made: an error there must leave no entry behind. */
	if (hash_search(topic_handles, name, HASH_FIND, NULL) == NULL)
		relay_ensure_schemas_topic(name);
	th = hash_search(topic_handles, name, HASH_ENTER, &found);
	if (!found)
	{
		th->rkt = rd_kafka_topic_new(producer, name, NULL);
		if (th->rkt == NULL)
		{
			hash_search(topic_handles, name, HASH_REMOVE, NULL);
			return NULL;
		}
	}
	return th->rkt;
}

static void
producer_create(void)
{
	static const char *const defaults[] = {
		"linger.ms", "2",
		"compression.type", "lz4",
		NULL
	};
	rd_kafka_conf_t *conf;
	rd_kafka_queue_t *mainq;
	char		errstr[512];

	conf = evc_kafka_conf_new(defaults);
	/* These make the guarantees; the user's properties cannot undo them. */
	evc_kafka_conf_set(conf, "enable.idempotence", "true");
	/* Idempotence needs it: librdkafka refuses a producer with acks=1. */
	evc_kafka_conf_set(conf, "acks", "all");
	evc_kafka_conf_set(conf, "partitioner", "murmur2_random");
	rd_kafka_conf_set_dr_msg_cb(conf, relay_dr_cb);
	rd_kafka_conf_set_error_cb(conf, relay_error_cb);

	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create kafka producer"),
				 errdetail("%s", errstr)));
	}
	/*
	 * Logs go to their own queue, served by the main loop, where ereport
	 * may run; the main queue (delivery reports, errors) is served by the
	 * producer thread, woken through kafka_pipe.
	 */
	log_queue = rd_kafka_queue_new(producer);
	rd_kafka_set_log_queue(producer, log_queue);
	rd_kafka_queue_io_event_enable(log_queue, io_pipe[1], "1", 1);
	mainq = rd_kafka_queue_get_main(producer);
	rd_kafka_queue_io_event_enable(mainq, kafka_pipe[1], "1", 1);
	rd_kafka_queue_destroy(mainq);
	STORE(&producer_fatal, false);
	evc_handoff_serving(true);

	if (producer_brokers)
		pfree(producer_brokers);
	if (producer_properties)
		pfree(producer_properties);
	producer_brokers = MemoryContextStrdup(TopMemoryContext, evc_brokers);
	producer_properties = MemoryContextStrdup(TopMemoryContext, evc_kafka_properties);
}

/* Has the producer hit a fatal error, or has a reload changed its settings? */
static bool
producer_outdated(void)
{
	return producer != NULL &&
		(LOAD(&producer_fatal) ||
		 strcmp(producer_brokers, evc_brokers) != 0 ||
		 strcmp(producer_properties, evc_kafka_properties) != 0);
}

/* Recreate the producer after a fatal error or changed settings. */
static void
producer_ensure(void)
{
	if (producer != NULL && !producer_outdated())
		return;
	if (producer != NULL)
		ereport(LOG,
				(errmsg("evcollector relay: recreating the kafka producer"),
				 errdetail("%s; messages it has not reported stay in evc.outbox and are sent again.",
						   LOAD(&producer_fatal) ? "It hit a fatal error" :
						   "evcollector.brokers or evcollector.kafka_properties changed")));
	producer_destroy();
	producer_create();
}

static void
relay_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
relay_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

static SPIPlanPtr
keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for relay query: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/*
 * The text form of a uuid, written into the caller's buffer: uuid_out
 * would palloc a string for every row of every batch.
 */
static void
uuid_format(const pg_uuid_t *uuid, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hex[uuid->data[i] >> 4];
		*out++ = hex[uuid->data[i] & 0x0F];
	}
	*out = '\0';
}

/*
 * A text column as a C string, converted only when it differs from the
 * previous row's: topic and content type repeat from row to row.
 */
static const char *
same_or_new_cstring(Datum d, const char *prev)
{
	text	   *t = DatumGetTextPP(d);
	int			len = VARSIZE_ANY_EXHDR(t);

	if (prev && strncmp(prev, VARDATA_ANY(t), len) == 0 && prev[len] == '\0')
		return prev;
	return text_to_cstring(t);
}

/*
 * Hand one message to librdkafka, retrying while its queue is full.  The
 * value is not copied (see RelayMsg); the key and headers are.
 *
 * This runs on the producer thread (see handoff.c): no PostgreSQL calls.
 */
static rd_kafka_resp_err_t
produce_msg(uint32 generation, RelayMsg *msg, int idx, volatile bool *cancel)
{
	char		version[16];
	rd_kafka_resp_err_t err;

	/* A topic name librdkafka refused can never be produced to. */
	if (msg->rkt == NULL)
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	snprintf(version, sizeof(version), "%d", msg->schema_version);
	for (;;)
	{
		rd_kafka_headers_t *hdrs = rd_kafka_headers_new(3);

		rd_kafka_header_add(hdrs, "message_id", -1, msg->message_id, -1);
		rd_kafka_header_add(hdrs, "schema_version", -1, version, -1);
		rd_kafka_header_add(hdrs, "content-type", -1, msg->content_type, -1);
		err = rd_kafka_producev(producer,
								RD_KAFKA_V_RKT(msg->rkt),
								RD_KAFKA_V_KEY(msg->key, msg->key_len),
								RD_KAFKA_V_VALUE(msg->value, msg->value_len),
								RD_KAFKA_V_HEADERS(hdrs),
								RD_KAFKA_V_OPAQUE(OPAQUE(generation, idx)),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return err;
		rd_kafka_headers_destroy(hdrs);	/* not taken over on failure */
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || *cancel)
			return err;
		/* librdkafka's queue has room once delivered messages are served. */
		serve_reports(10);
	}
}

/* The producer thread's work: produce messages [from, to) of a batch. */
static void
produce_range(void *items, int from, int to, volatile bool *cancel)
{
	RelayBatch *batch = (RelayBatch *) items;

	for (int i = from; i < to && !*cancel; i++)
		batch->msgs[i].produce_err = produce_msg(batch->generation, &batch->msgs[i], i, cancel);
}

/* Wait until the producer thread has produced all that was posted. */
static void
await_handoff(void)
{
	while (!evc_handoff_done())
	{
		relay_wait_kafka(100);
		evc_worker_handle_interrupts();
	}
}

/*
 * A bytea column's bytes, copied into the current (the batch's) memory.
 * With processed_at, an event's, that field is appended (see
 * evc_processed_at_patch).
 */
static char *
copy_bytes(Datum d, const char *processed_at, int32 *len, int32 *orig_len)
{
	bytea	   *b = DatumGetByteaPP(d);
	int32		blen = VARSIZE_ANY_EXHDR(b);
	char	   *copy = palloc(blen + (processed_at ? EVC_PROCESSED_AT_MAX : 0));

	memcpy(copy, VARDATA_ANY(b), blen);
	*orig_len = *len = blen;
	if (processed_at)
		*len += evc_processed_at_patch(processed_at, (uint8 *) copy + blen, EVC_PROCESSED_AT_MAX);
	/* A large payload is stored toasted: its detoasted copy goes at once. */
	if ((Pointer) b != DatumGetPointer(d))
		pfree(b);
	return copy;
}

/*
 * Make the row in slot message number batch->n of this batch, for the
 * producer thread to produce once it is posted.
 */
static void
add_slot(RelayBatch *batch, TupleTableSlot *slot, const char *processed_at)
{
	static const char *content_type = NULL;
	static bool is_event = false;
	RelayMsg   *prev = batch->n > 0 ? &batch->msgs[batch->n - 1] : NULL;
	RelayMsg   *msg;
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;
	const char *ct;

	Assert(batch->n < batch->cap);
	msg = &batch->msgs[batch->n];
	memset(msg, 0, sizeof(RelayMsg));
	batch->n++;
	msg->id = DatumGetInt64(values[OUTBOX_ID]);
	msg->tid = slot->tts_tid;
	msg->topic = same_or_new_cstring(values[OUTBOX_TOPIC], prev ? prev->topic : NULL);
	msg->rkt = (prev && prev->topic == msg->topic) ? prev->rkt : topic_handle(msg->topic);
	msg->created_at = DatumGetTimestampTz(values[OUTBOX_CREATED_AT]);
	uuid_format(DatumGetUUIDP(values[OUTBOX_MESSAGE_ID]), msg->message_id);

	/* The content type is kept across batches: it rarely changes. */
	ct = same_or_new_cstring(values[OUTBOX_CONTENT_TYPE], content_type);
	if (ct != content_type)
	{
		content_type = MemoryContextStrdup(TopMemoryContext, ct);
		is_event = strcmp(content_type, EVC_CONTENT_TYPE_EVENT) == 0;
	}
	msg->content_type = content_type;
	msg->schema_version = DatumGetInt32(values[OUTBOX_SCHEMA_VERSION]);
	if (!nulls[OUTBOX_KEY])
	{
		int32		unused;

		msg->key = copy_bytes(values[OUTBOX_KEY], NULL, &msg->key_len, &unused);
	}
	msg->value = copy_bytes(values[OUTBOX_PAYLOAD], is_event ? processed_at : NULL,
							&msg->value_len, &msg->payload_len);
	msg->produce_err = RD_KAFKA_RESP_ERR__STATE;	/* not produced yet */
}

/*
 * Once the thread has produced the whole batch: count the reports to wait
 * for; a message librdkafka refused is reported already, with its error.
 */
static void
count_produced(RelayBatch *batch)
{
	int			produced = 0;

	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];

		if (msg->produce_err == RD_KAFKA_RESP_ERR_NO_ERROR)
			produced++;
		else
		{
			msg->reported = true;
			msg->err = msg->produce_err;
		}
	}
	/* Reports served meanwhile have already been taken off. */
	__atomic_add_fetch(&batch->reports_pending, produced, __ATOMIC_ACQ_REL);
	evc_stats_add(&relay_slot->counters.produced, produced);
}

/* Is id one of the batch's rows?  They are in id order. */
static bool
in_batch(RelayBatch *batch, int64 id)
{
	int			lo = 0,
				hi = batch->n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (batch->msgs[mid].id == id)
			return true;
		if (batch->msgs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

/*
 * The scan itself: take due rows into the batch and post them to the
 * producer thread as they come.  Returns the highest id it saw.
 */
static int64
scan_rows(IndexScanDesc scan, TupleTableSlot *slot, int limit, int64 floor,
		  RelayBatch *batch, RelayBatch *inflight, TimestampTz now, const char *processed_at)
{
	int64		highest = floor;

	while (batch->n < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		int64		id;

		slot_getallattrs(slot);
		id = DatumGetInt64(slot->tts_values[OUTBOX_ID]);
		highest = id;
		/* A row in backoff waits for its next attempt; remember it. */
		if (!slot->tts_isnull[OUTBOX_NEXT_ATTEMPT_AT])
		{
			TimestampTz next = DatumGetTimestampTz(slot->tts_values[OUTBOX_NEXT_ATTEMPT_AT]);

			if (next > now)
			{
				backoff_low = Min(backoff_low, id);
				backoff_due = Min(backoff_due, next);
				continue;
			}
		}
		/* A row of the batch still in flight is not sent twice. */
		if (inflight && in_batch(inflight, id))
			continue;
		add_slot(batch, slot, processed_at);
		if (batch->n % HANDOFF_EVERY == 0)
			evc_handoff_post(batch->n);
	}
	evc_handoff_post(batch->n);
	await_handoff();
	return highest;
}

/*
 * Read up to limit due rows in id order, starting after floor, producing
 * each as it is read, and return the highest id the scan saw.  The primary
 * key is scanned directly rather than through SPI: the relay reads every
 * event once, and the executor's per-row work (and a copy of the whole
 * batch) was most of its cost.
 */
static int64
read_and_produce(int limit, int64 floor, RelayBatch *batch, RelayBatch *inflight)
{
	volatile int64 highest = floor;
	MemoryContext old = MemoryContextSwitchTo(batch->cxt);
	Relation	rel = evc_outbox_open(AccessShareLock);
	Relation	pk = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TimestampTz now = GetCurrentTimestamp();
	char	   *processed_at = evc_format_timestamp(now);
	IndexScanDesc scan;
	ScanKeyData skey;

	ScanKeyInit(&skey, 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(floor));
	scan = index_beginscan(rel, pk, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);

	/*
	 * The array never moves while the batch is in flight: the producer
	 * thread reads it and writes delivery reports into it.
	 */
	batch->cap = limit;
	batch->msgs = palloc_extended(sizeof(RelayMsg) * limit, MCXT_ALLOC_HUGE);

	pgstat_report_activity(STATE_RUNNING, "evcollector relay: producing");
	evc_handoff_begin(batch);
	PG_TRY();
	{
		highest = scan_rows(scan, slot, limit, floor, batch, inflight, now, processed_at);
	}
	PG_CATCH();
	{
		/* The thread must let go of the batch before its memory goes. */
		evc_handoff_cancel();
		PG_RE_THROW();
	}
	PG_END_TRY();
	count_produced(batch);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pk, AccessShareLock);
	table_close(rel, AccessShareLock);
	MemoryContextSwitchTo(old);
	return highest;
}

/*
 * Where the next read starts.  Normally after read_floor, so a backlog is
 * read once, without walking the index entries of the rows already sent
 * and deleted (which stay until vacuum, and longer while any snapshot is
 * older than their deletion).  Lower when the relay knows of rows below
 * it: a transaction that committed late with lower ids (transactions
 * commit out of order), or rows in backoff that are due.  From the lowest
 * id after an error, at start, and now and then (READ_FULL_MS).
 */
static int64
read_start(TimestampTz now)
{
	uint64		late;
	int64		start = read_floor;

	/* Taken before the read's snapshot: a later commit is seen next time. */
	late = pg_atomic_exchange_u64(&evc_shared->outbox_late_low, PG_UINT64_MAX);

	if (now - last_full_read >= (int64) READ_FULL_MS * 1000)
		start = 0;
	else if (pg_atomic_read_u32(&evc_shared->outbox_untracked) != 0)
	{
		/* As often as every READ_FULL_EVERY batches, and on catching up. */
		if (++reads_since_full >= READ_FULL_EVERY || full_read_next)
			start = 0;
	}
	full_read_next = false;
	if (late != PG_UINT64_MAX && (int64) late <= start)
		start = (int64) late - 1;
	if (backoff_due <= now && backoff_low <= start)
		start = backoff_low - 1;
	start = Max(start, 0);

	/* The read sees every row in backoff from start on: it counts them anew. */
	if (start < backoff_low)
	{
		backoff_low = PG_INT64_MAX;
		backoff_due = DT_NOEND;
	}
	if (start == 0)
	{
		last_full_read = now;
		reads_since_full = 0;
	}
	return start;
}

/*
 * Before a read from the lowest id: if no transaction is prepared any more,
 * none is left whose commit the relay would not hear of, and reads need not
 * go back to the lowest id regularly.  The flag is cleared first, so a
 * PREPARE that comes after the count sets it again (the prepared
 * transaction is listed before its callback sets the flag).
 */
static void
recheck_untracked(void)
{
	bool		isnull;
	int64		prepared;

	pg_atomic_write_u32(&evc_shared->outbox_untracked, 0);
	pg_memory_barrier();
	relay_begin("evcollector relay: counting prepared transactions");
	if (SPI_execute("SELECT count(*) FROM pg_catalog.pg_prepared_xacts", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count prepared transactions");
	prepared = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	relay_end();
	if (prepared > 0)
		pg_atomic_write_u32(&evc_shared->outbox_untracked, 1);
}

/*
 * Read up to limit due rows and produce them (see read_and_produce).
 * *next_due_ms says when the earliest row in backoff becomes due (-1: none).
 * Returns false when the extension is gone.
 */
static bool
outbox_read(int limit, RelayBatch *batch, RelayBatch *inflight, long *next_due_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		start;
	int64		highest;
	uint64		readno;

	/* Logs and errors wait for no idle moment: a backlog may have none. */
	relay_service();

	/* Numbered before its snapshot is taken; see EvcShared.relay_reads. */
	readno = pg_atomic_add_fetch_u64(&evc_shared->relay_reads, 1);
	start = read_start(now);
	if (start == 0 && pg_atomic_read_u32(&evc_shared->outbox_untracked) != 0)
		recheck_untracked();
	relay_begin("evcollector relay: reading outbox");
	if (!OidIsValid(get_extension_oid("evcollector", true)))
	{
		relay_end();
		return false;
	}
	producer_ensure();
	highest = read_and_produce(limit, start, batch, inflight);
	relay_end();

	/*
	 * A full batch ends at its last row; a short one read to the end of the
	 * index, so every row up to the highest it saw is accounted for.
	 */
	read_floor = (batch->n == limit) ? batch->msgs[limit - 1].id : highest;

	/* Read again until a read finds nothing: that one tells evc_flush. */
	if (batch->n > 0 || inflight != NULL)
		work_signalled = true;
	/* With untracked commits about, catching up calls for a full read. */
	if (start > 0 && batch->n < limit && pg_atomic_read_u32(&evc_shared->outbox_untracked) != 0)
		full_read_next = work_signalled = true;

	*next_due_ms = -1;
	if (backoff_low != PG_INT64_MAX)
		*next_due_ms = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), backoff_due), 1);
	else if (batch->n == 0 && inflight == NULL)
	{
		/*
		 * Nothing due, nothing in flight, nothing in backoff, and every row
		 * below the start accounted for: the outbox is empty.  Tell
		 * evc_flush.  (Once prepared transactions sent events, only a read
		 * from the lowest id can tell.)
		 */
		if (start == 0 || pg_atomic_read_u32(&evc_shared->outbox_untracked) == 0)
		{
			pg_atomic_write_u64(&evc_shared->relay_empty_read, readno);
			ConditionVariableBroadcast(&evc_shared->outbox_settled);
		}
	}
	return true;
}

/* Wait, with no transaction open, until every message of the batch is reported. */
static void
await_reports(RelayBatch *batch)
{
	pgstat_report_activity(STATE_RUNNING, "evcollector relay: waiting for delivery reports");
	while (LOAD(&batch->reports_pending) > 0)
	{
		/*
		 * librdkafka reports every message within message.timeout.ms, so
		 * this ends; SIGTERM ends it sooner and leaves the rows in the
		 * outbox, to be sent again.
		 */
		relay_wait_kafka(200);
		evc_worker_handle_interrupts();

		/*
		 * New settings (a password put right, other brokers) take effect
		 * now, not after message.timeout.ms: destroying the producer counts
		 * every message it has not reported as failed, to be sent again by
		 * the next one (see producer_destroy).
		 */
		if (producer_outdated())
			producer_ensure();
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

static ArrayType *
int8_array(List *ids)
{
	int			n = list_length(ids);
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, ids)
		d[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static ArrayType *
text_array(List *strs)
{
	int			n = list_length(strs);
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, strs)
		d[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * Is the row at msg's tuple id still the one produced?  Read from the page
 * itself, keeping the buffer pinned while consecutive rows share a page:
 * fetching each row as a tuple cost a buffer lookup and a visibility check
 * per row, and only the id is needed.  A row deleted meanwhile is still
 * there until vacuum; heap_delete then finds it deleted and leaves it.
 */
static bool
row_still_there(Relation rel, Buffer *buf, const RelayMsg *msg)
{
	OffsetNumber off = ItemPointerGetOffsetNumber(&msg->tid);
	Page		page;
	bool		same = false;

	*buf = ReleaseAndReadBuffer(*buf, rel, ItemPointerGetBlockNumber(&msg->tid));
	LockBuffer(*buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(*buf);
	if (off >= FirstOffsetNumber && off <= PageGetMaxOffsetNumber(page))
	{
		ItemId		lp = PageGetItemId(page, off);

		if (ItemIdIsNormal(lp))
		{
			HeapTupleData tuple;
			bool		isnull;
			Datum		id;

			tuple.t_data = (HeapTupleHeader) PageGetItem(page, lp);
			tuple.t_len = ItemIdGetLength(lp);
			tuple.t_tableOid = RelationGetRelid(rel);
			tuple.t_self = msg->tid;
			id = heap_getattr(&tuple, OUTBOX_ID + 1, RelationGetDescr(rel), &isnull);
			same = !isnull && DatumGetInt64(id) == msg->id;
		}
	}
	LockBuffer(*buf, BUFFER_LOCK_UNLOCK);
	return same;
}

/*
 * Delete the delivered rows by their tuple ids, with no executor per row.
 * A row is deleted only if the tuple there is still the one produced: an
 * operator may have deleted it meanwhile, and vacuum may have given its
 * place to a new row, which must stay.  A row an operator updated
 * meanwhile stays too, and is sent again: a duplicate, never a loss.
 */
static void
delete_delivered(RelayBatch *batch)
{
	Relation	rel = evc_outbox_open(RowExclusiveLock);
	Snapshot	snapshot = GetActiveSnapshot();
	CommandId	cid = GetCurrentCommandId(true);
	Buffer		buf = InvalidBuffer;

	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];
		TM_FailureData tmfd;

		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR || !row_still_there(rel, &buf, msg))
			continue;
		(void) table_tuple_delete(rel, &msg->tid, cid, snapshot, InvalidSnapshot,
								  true, &tmfd, false);
	}
	if (BufferIsValid(buf))
		ReleaseBuffer(buf);
	table_close(rel, NoLock);
}

/* Record the deliveries: lineage ring, latency histogram, byte count. */
static void
note_deliveries(RelayBatch *batch)
{
	/* Only the newest EVC_TRACE_RING can stay in the ring. */
	evc_trace_begin_notes();
	for (int i = Max(0, batch->n - EVC_TRACE_RING); i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];

		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			evc_trace_note_delivery(msg->message_id, msg->topic, msg->partition, msg->offset, msg->acked_at);
	}
	evc_trace_end_notes();
	for (int i = 0; i < batch->n; i++)
	{
		RelayMsg   *msg = &batch->msgs[i];

		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		evc_stats_observe_ms(&relay_slot->counters, (msg->acked_at - msg->created_at) / 1000.0);
		evc_stats_add(&relay_slot->counters.bytes_out, msg->payload_len);
	}
}

/*
 * Settle the batch in one transaction: delete what was delivered, schedule
 * a retry for what failed, dead-letter what can never succeed.
 */
static void
settle_batch(RelayBatch *batch, int *delivered, int *failed, int *dead)
{
	static SPIPlanPtr retry_plan = NULL;
	static SPIPlanPtr dead_plan = NULL;
	List	   *retry_ids = NIL, *retry_errs = NIL, *dead_ids = NIL, *dead_errs = NIL;
	Oid			two[2] = {INT8ARRAYOID, TEXTARRAYOID};

	*delivered = 0;
	for (int i = 0; i < batch->n; i++)
	{
		rd_kafka_resp_err_t err = batch->msgs[i].err;
		char	   *reason;

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			(*delivered)++;
			continue;
		}
		reason = psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
		if (evc_kafka_permanent_error(err))
		{
			dead_ids = lappend(dead_ids, &batch->msgs[i].id);
			dead_errs = lappend(dead_errs, reason);
		}
		else
		{
			retry_ids = lappend(retry_ids, &batch->msgs[i].id);
			retry_errs = lappend(retry_errs, reason);
			/* In backoff for at least a second (see the UPDATE below). */
			backoff_low = Min(backoff_low, batch->msgs[i].id);
			backoff_due = Min(backoff_due, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000));
		}
	}
	*failed = list_length(retry_ids);
	*dead = list_length(dead_ids);
	note_deliveries(batch);
	evc_stats_add(&relay_slot->counters.delivered, *delivered);
	evc_stats_add(&relay_slot->counters.retried, *failed);
	evc_stats_add(&relay_slot->counters.failed, *failed + *dead);
	evc_stats_add(&relay_slot->counters.dead_lettered, *dead);
	evc_stats_add(&relay_slot->counters.batches, 1);

	relay_begin("evcollector relay: settling batch");
	if (*delivered > 0)
		delete_delivered(batch);
	if (retry_ids)
	{
		Datum		args[2] = {PointerGetDatum(int8_array(retry_ids)), PointerGetDatum(text_array(retry_errs))};

		keep_plan(&retry_plan,
				  "UPDATE evc.outbox o SET attempts = o.attempts + 1, last_error = u.err,"
				  "       last_attempt_at = clock_timestamp(),"
				  "       next_attempt_at = clock_timestamp() + least(60, 2 ^ least(o.attempts, 6)) * interval '1 second'"
				  "  FROM unnest($1, $2) AS u(id, err) WHERE o.id = u.id", 2, two);
		if (SPI_execute_plan(retry_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record failed deliveries in evc.outbox");
	}
	if (dead_ids)
	{
		Datum		args[2] = {PointerGetDatum(int8_array(dead_ids)), PointerGetDatum(text_array(dead_errs))};

		keep_plan(&dead_plan,
				  "WITH d AS (DELETE FROM evc.outbox o USING unnest($1, $2) AS u(id, err)"
				  "           WHERE o.id = u.id RETURNING o.*, u.err)"
				  "INSERT INTO evc.dead_letters (message_id, topic, key, payload, error, source, attempts)"
				  "SELECT message_id, topic, key, payload, err, 'relay', attempts + 1 FROM d", 2, two);
		if (SPI_execute_plan(dead_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not move undeliverable rows to evc.dead_letters");
	}
	relay_end();
}

/* Wait for a batch's reports, settle it, and let it go. */
static void
finish_batch(RelayBatch *batch, long *next_due_ms)
{
	int			delivered,
				failed,
				dead;

	await_reports(batch);
	settle_batch(batch, &delivered, &failed, &dead);
	STORE(&batch->active, false);
	ConditionVariableBroadcast(&evc_shared->outbox_settled);

	if (failed > 0)
	{
		/* The retried rows are due again soon; come back for them. */
		*next_due_ms = (*next_due_ms < 0) ? 1000 : Min(*next_due_ms, 1000);
		ereport(LOG,
				(errmsg("evcollector relay: %d of %d events not delivered yet; they stay in evc.outbox and are retried",
						failed, batch->n)));
	}
	if (dead > 0)
		ereport(WARNING,
				(errmsg("evcollector relay: %d events cannot be delivered and were moved to evc.dead_letters", dead)));
}

/*
 * Read and produce one batch, then settle the previous one if it is still
 * in flight.  A full batch (a backlog) stays in flight while the next one
 * is read and produced, so Kafka acknowledges one batch while the relay
 * reads the next, and its reports are usually all in when it is settled.
 * A short batch (the relay has caught up) is settled at once, so the
 * relay does not sleep with events unacknowledged.
 * Returns the number of rows read, or -1 when the extension is gone.
 */
static int
relay_batch(long *next_due_ms)
{
	RelayBatch *prev = batches[0].active ? &batches[0] : batches[1].active ? &batches[1] : NULL;
	RelayBatch *cur = (prev == &batches[0]) ? &batches[1] : &batches[0];
	int			n;

	MemoryContextReset(cur->cxt);
	STORE(&cur->generation, ++batch_generation);
	cur->msgs = NULL;
	cur->n = cur->cap = 0;
	STORE(&cur->reports_pending, 0);
	STORE(&cur->active, true);

	if (!outbox_read(evc_batch_size, cur, prev, next_due_ms))
	{
		STORE(&cur->active, false);
		return -1;
	}
	n = cur->n;
	if (prev)
		finish_batch(prev, next_due_ms);
	if (n == 0)
		STORE(&cur->active, false);
	else if (n < evc_batch_size)
		finish_batch(cur, next_due_ms);
	return n;
}

/*
 * After an error: forget both batches; their rows stay in the outbox.  The
 * producer is made again for the next batch.
 */
static void
abandon_batches(void)
{
	/* librdkafka may still point into their memory: take that back first. */
	producer_destroy();
	for (int i = 0; i < lengthof(batches); i++)
		STORE(&batches[i].active, false);
	batch_generation++;
	/* Their rows are below the floor, and nothing accounts for them now. */
	read_floor = 0;
}

/*
 * Every evcollector.metrics_interval, publish a Metrics message through the
 * outbox; the commit wakes the relay, which then sends it like any event.
 * The relay publishes because it is the one worker that always runs.
 */
static TimestampTz metrics_due_at = 0;

static void
relay_publish_metrics(long *next_due_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = TimestampTzPlusMilliseconds(now, evc_metrics_interval_ms);
	long		until;

	if (evc_metrics_interval_ms <= 0)
	{
		metrics_due_at = 0;
		return;
	}
	if (metrics_due_at == 0 || metrics_due_at > next)
		metrics_due_at = next;	/* first time, or the interval was shortened */
	if (now >= metrics_due_at)
	{
		MemoryContext cxt = CurrentMemoryContext;

		/* A failure here must not hold up delivery: log it, try next time. */
		metrics_due_at = next;
		PG_TRY();
		{
			relay_begin("evcollector relay: publishing metrics");
			if (OidIsValid(get_extension_oid("evcollector", true)))
				evc_metrics_publish();
			relay_end();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			SPI_finish();
			pgstat_report_activity(STATE_IDLE, NULL);
			ereport(WARNING,
					(errmsg("evcollector relay: could not publish metrics: %s", edata->message),
					 errhint("The next attempt is in evcollector.metrics_interval.")));
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	until = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), metrics_due_at), 1);
	*next_due_ms = (*next_due_ms < 0) ? until : Min(*next_due_ms, until);
}

static void
make_pipe(int fds[2])
{
	if (pipe(fds) != 0 ||
		fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0 ||
		fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create pipe for librdkafka events: %m")));
}

static void
relay_setup(void)
{
	make_pipe(io_pipe);
	make_pipe(kafka_pipe);

	for (int i = 0; i < lengthof(batches); i++)
		batches[i].cxt = AllocSetContextCreate(TopMemoryContext, "evcollector relay batch",
											   ALLOCSET_DEFAULT_SIZES);
	evc_shared->relay_database = MyDatabaseId;
	evc_handoff_start(produce_range, serve_reports_now, kafka_pipe[0], io_pipe[1]);
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, io_pipe[0], NULL, NULL);
	kafka_wait_set = CreateWaitEventSet(TopMemoryContext, 2);
	AddWaitEventToSet(kafka_wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(kafka_wait_set, WL_SOCKET_READABLE, io_pipe[0], NULL, NULL);
}

void
evc_relay_main(Datum main_arg)
{
	MemoryContext loop_cxt;

	/* Static: they are changed inside PG_TRY and read after a longjmp. */
	static long error_backoff_ms = RELAY_ERROR_BACKOFF_MIN_MS;
	static long next_due_ms;
	static int	n;

	relay_slot = evc_worker_startup(EVC_WORKER_RELAY, "relay");

	/*
	 * librdkafka allocates and frees several small blocks for every message
	 * (the message, its header list, each header).  With glibc's fastbins
	 * those frees pile up and are consolidated again and again, which was
	 * the relay's top cost; without them, and with freed memory kept rather
	 * than returned to the kernel and faulted in again, it is cheap.
	 */
	mallopt(M_MXFAST, 0);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);

	/*
	 * The relay's own commits need not wait for the WAL flush: a settle
	 * lost in a crash only means its rows are still in the outbox and are
	 * sent again, with the same message_id, which at-least-once allows.
	 * The senders' commits, which make events exist, stay as configured.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	relay_setup();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "evcollector relay loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		next_due_ms = -1;
		n = 0;

		/* Reset first: a commit while we work sets it again. */
		ResetLatch(MyLatch);
		work_signalled = false;
		evc_worker_handle_interrupts();

		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			n = relay_batch(&next_due_ms);
			if (n >= 0)
				relay_publish_metrics(&next_due_ms);
			MemoryContextSwitchTo(old);
			error_backoff_ms = RELAY_ERROR_BACKOFF_MIN_MS;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(TopMemoryContext);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			SPI_finish();
			abandon_batches();	/* late reports are ignored */
			evc_worker_record_error(relay_slot, edata->message);
			ereport(LOG,
					(errmsg("evcollector relay: batch failed, retrying in %ld ms: %s",
							error_backoff_ms, edata->message)));
			FreeErrorData(edata);
			n = 0;
			next_due_ms = error_backoff_ms;
			error_backoff_ms = Min(error_backoff_ms * 2, RELAY_ERROR_BACKOFF_MAX_MS);
		}
		PG_END_TRY();
		MemoryContextReset(loop_cxt);

		if (n < 0)
		{
			/* DROP EXTENSION: tell the launcher, which will not restart us. */
			evc_wake_worker(EVC_WORKER_LAUNCHER, NULL);
			proc_exit(0);
		}
		if (n >= evc_batch_size || work_signalled)
			continue;			/* more is waiting */
		relay_wait(next_due_ms >= 0 ? Min(next_due_ms, RELAY_IDLE_MS) : RELAY_IDLE_MS);
	}
}
