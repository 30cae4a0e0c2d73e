/*
 * relay_produce.c
 *		Producing: the librdkafka producer and its topic handles, what the
 *		producer thread does for the relay (produce the posted rows, serve
 *		delivery reports and errors), and the batches, from their read until
 *		they are settled.
 *
 * What is marked "on the producer thread" runs on handoff.c's thread and
 * calls no PostgreSQL function; the rest runs on the main loop.  While a
 * backlog drains, one full batch stays in flight while the next one is
 * read and produced, so Kafka acknowledges one batch while the relay reads
 * the next.
 */
#include "postgres.h"

#include <pthread.h>
#include <time.h>

#include "pgstat.h"
#include "storage/condition_variable.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "core/guc.h"
#include "core/shmem.h"
#include "core/stats.h"
#include "core/worker.h"
#include "kafka/kafka.h"
#include "relay/handoff_int.h"
#include "relay/relay_int.h"
#include "util/port.h"

/*
 * The producers.  The idempotent mode has one.  Exactly once has two, with
 * transactional ids of their own (relay_txn.c), and uses them in turn while
 * transactions are slow.  Why: Apache Kafka's coordinator answers EndTxn
 * before it has written the commit markers, and until they are written it
 * refuses the same id's next AddPartitionsToTxn with CONCURRENT_TRANSACTIONS,
 * which librdkafka retries after a fixed 20 ms (rdkafka_txnmgr.c, not
 * retry.backoff.ms).  A tick starting at once after a commit met that
 * refusal nearly every time, so every event waited 20 ms or more.  The
 * other producer's id has no transaction being completed, and the markers
 * are written while it works.
 *
 * Taking turns has a cost of its own, about 1 ms a transaction on this
 * machine (the idle producer's threads are woken), which is what a whole
 * transaction takes with brokers that write their markers before they
 * answer (librdkafka's mock cluster).  So the relay keeps to one producer
 * until a transaction with messages takes ALTERNATE_AFTER_MS or more, the
 * mark of that refusal (or of brokers so slow that 1 ms is nothing), and
 * then takes turns for the next ALTERNATE_TXNS transactions with messages.
 * One that took ALTERNATE_BEFORE_MS or more waited for something else
 * (a new topic's metadata, which librdkafka looks for once a second, or a
 * large tick), which taking turns does not shorten.
 *
 * in_use() is the one in use: the main loop switches it only between two
 * Kafka transactions, with no batch in flight, and the producer thread
 * reads it only for posted work (posting takes the handoff's lock) and to
 * serve it.  Both stay valid until producer_destroy, which first stops the
 * thread's serving.
 */
#define ALTERNATE_AFTER_MS 20
#define ALTERNATE_BEFORE_MS 500
#define ALTERNATE_TXNS 1000
#define RELAY_MAX_PRODUCERS 2
static rd_kafka_t *producers[RELAY_MAX_PRODUCERS];
static int	n_producers = 0;
static pg_atomic_uint32 producer_index;	/* producers[] in use */
static int	alternate_left = 0;		/* transactions still to take turns for */
static TimestampTz txn_began_at = 0;
static bool txn_carried = false;	/* the open transaction has messages */
static char *producer_brokers = NULL;
static char *producer_properties = NULL;
static bool producer_txn = false;	/* made with a transactional.id */
static pg_atomic_uint32 producer_fatal;	/* set by relay_error_cb */

/* The producer in use, or NULL when there is none. */
static inline rd_kafka_t *
in_use(void)
{
	return n_producers > 0 ? producers[pg_atomic_read_u32(&producer_index)] : NULL;
}

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
	rd_kafka_topic_t *rkt[RELAY_MAX_PRODUCERS];	/* each producer's, made when first used */
} TopicHandle;
static HTAB *topic_handles = NULL;

static int	kafka_pipe[2] = {-1, -1};	/* librdkafka's main queue has callbacks */
static int	main_wake_fd = -1;			/* the main loop's pipe: its logs go there */
static rd_kafka_queue_t *log_queues[RELAY_MAX_PRODUCERS];	/* the producers' logs, served on the main loop */

#define OPAQUE(gen, idx) ((void *) (((uintptr_t) (gen) << 32) | (uintptr_t) (idx)))

/*
 * What the producer thread shares with the main loop (see handoff.c).  It
 * produces the posted messages and serves librdkafka's main queue: the
 * delivery reports, which it writes into the batch (RelayMsg's outcome
 * fields, then one atomic count per batch), and errors, which it keeps
 * for the main loop to log.  A batch's active flag and generation are
 * read by the thread and written by the main loop, hence atomic access.
 */

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

/*
 * On the producer thread: the batch a report is for, if it is still in
 * flight.  The read barriers pair with the write barrier in evc_relay_batch,
 * which sets a batch up before it marks it active: a batch seen active is
 * seen with its generation, and one whose generation matches is seen with
 * its messages.
 */
static RelayBatch *
batch_of_generation(uint32 gen)
{
	for (int i = 0; i < lengthof(batches); i++)
	{
		if (!pg_atomic_read_u32(&batches[i].active))
			continue;
		pg_read_barrier();
		if (pg_atomic_read_u32(&batches[i].generation) != gen)
			continue;
		pg_read_barrier();
		return &batches[i];
	}
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
	/* A full barrier: the outcome above is seen by whoever sees the count. */
	if (pg_atomic_sub_fetch_u32(&batch->reports_pending, 1) == 0)
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
	/* A flag alone, nothing published with it: no barrier. */
	if (fatal)
		pg_atomic_write_u32(&producer_fatal, 1);
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

/*
 * On the producer thread: serve librdkafka's main queues, waiting up to
 * timeout_ms on the producer in use.  The other one has no message of ours
 * once its transaction committed, but may have errors to report.
 */
static void
serve_reports(int timeout_ms)
{
	uint32		in_use = pg_atomic_read_u32(&producer_index);

	reports_served_at = thread_now();
	for (int i = 0; i < n_producers; i++)
		if (i != in_use)
			rd_kafka_poll(producers[i], 0);
	rd_kafka_poll(producers[in_use], timeout_ms);
}

static void
serve_reports_now(void)
{
	serve_reports(0);
}

/* On the main loop: log what the producer thread kept, serve the logs. */
void
evc_relay_service(void)
{
	bool		pending,
				fatal = false;
	rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
	char		text[512];
	char		shown[600];
	int			unlogged = 0;

	for (int i = 0; i < n_producers; i++)
		rd_kafka_queue_poll_callback(log_queues[i], 0);
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
	/* Read again soon: the read recreates the producer. */
	if (fatal)
		evc_relay_work_signalled = true;
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
	evc_worker_record_error(evc_relay_slot, shown);
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
	if (n_producers == 0)
		return;
	/* evc.workers.mode is the running producer's: none until the next is made. */
	pg_atomic_write_u32(&evc_shared->relay_mode, 0);
	/* The thread lets go of the handles; their reports are served here now. */
	evc_handoff_serving(false);
	for (int i = 0; i < n_producers; i++)
		rd_kafka_purge(producers[i], RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	serve_reports_now();
	evc_relay_service();
	for (int i = 0; i < n_producers; i++)
	{
		rd_kafka_queue_destroy(log_queues[i]);
		log_queues[i] = NULL;
	}
	if (topic_handles)
	{
		HASH_SEQ_STATUS seq;
		TopicHandle *th;

		hash_seq_init(&seq, topic_handles);
		while ((th = hash_seq_search(&seq)) != NULL)
			for (int i = 0; i < n_producers; i++)
				if (th->rkt[i])
					rd_kafka_topic_destroy(th->rkt[i]);
		hash_destroy(topic_handles);
		topic_handles = NULL;
	}
	for (int i = 0; i < n_producers; i++)
	{
		rd_kafka_destroy(producers[i]);
		producers[i] = NULL;
	}
	n_producers = 0;
	pg_atomic_write_u32(&producer_index, 0);
	alternate_left = 0;
	/* Its open transaction, if any, is aborted by the brokers or fenced. */
	evc_relay_txn_forget();

	for (int i = 0; i < lengthof(batches); i++)
	{
		RelayBatch *batch = &batches[i];

		if (!pg_atomic_read_u32(&batch->active))
			continue;
		for (int j = 0; j < batch->n; j++)
			if (!batch->msgs[j].reported)
			{
				batch->msgs[j].reported = true;
				batch->msgs[j].err = RD_KAFKA_RESP_ERR__PURGE_QUEUE;
			}
		/* The thread is out of the serve function (above): no race. */
		pg_atomic_write_u32(&batch->reports_pending, 0);
	}
}

/*
 * The registry's topic <prefix>_evc_schemas is compacted: it is created so
 * before this producer sends it anything, or the brokers would create it
 * with their defaults when the first record arrives.
 */
static void
ensure_schemas_topic(const char *name)
{
	char	   *why;

	if (strcmp(name, evc_topic_name("_evc_schemas")) != 0)
		return;
	if (evc_kafka_ensure_compacted_topic(in_use(), name, 5000, &why) == EVC_TOPIC_FAILED)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("evcollector relay: could not create the compacted topic \"%s\"", name),
				 errdetail("%s.", why),
				 errhint("Create it with evc_create_topic('%s', 1, -1, '{\"cleanup.policy\": \"compact\", \"segment.ms\": \"3600000\"}'); "
						 "if the brokers create it when the first schema record arrives, it is not compacted.", name)));
}

/*
 * The producer's handle for a topic.  NULL when librdkafka will not make
 * one (a name it refuses): the message then fails as an invalid argument,
 * a permanent error, and its row goes to evc.dead_letters with the reason.
 */
rd_kafka_topic_t *
evc_relay_topic_handle(const char *name)
{
	TopicHandle *th;
	bool		found;
	uint32		in_use = pg_atomic_read_u32(&producer_index);

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
		ensure_schemas_topic(name);
	th = hash_search(topic_handles, name, HASH_ENTER, &found);
	if (!found)
	{
		/*
		 * Every producer's handle at once: a producer asks for a new topic's
		 * metadata when it gets the handle, and a message waits for it (up
		 * to a second, librdkafka's topic scan), so the producers wait
		 * together rather than each at its first transaction to the topic.
		 */
		for (int i = 0; i < n_producers; i++)
		{
			th->rkt[i] = rd_kafka_topic_new(producers[i], name, NULL);
			if (th->rkt[i] == NULL)
			{
				/* librdkafka refuses the name: it does for each of them. */
				while (--i >= 0)
					rd_kafka_topic_destroy(th->rkt[i]);
				hash_search(topic_handles, name, HASH_REMOVE, NULL);
				return NULL;
			}
		}
	}
	return th->rkt[in_use];
}

/* One producer, with transactional_id unless it is the idempotent one. */
static rd_kafka_t *
producer_new(const char *transactional_id)
{
	static const char *const defaults[] = {
		"linger.ms", "2",
		"compression.type", "lz4",
		/*
		 * A tick is one transaction however large (a backlog after a long
		 * stop): the brokers' longest by default (transaction.max.timeout.ms).
		 */
		"transaction.timeout.ms", "900000",
		NULL
	};
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char		errstr[512];

	conf = evc_kafka_conf_new(defaults);
	/* These make the guarantees; the user's properties cannot undo them. */
	evc_kafka_conf_set(conf, "enable.idempotence", "true");
	/* Idempotence needs it: librdkafka refuses a producer with acks=1. */
	evc_kafka_conf_set(conf, "acks", "all");
	evc_kafka_conf_set(conf, "partitioner", "murmur2_random");
	/* Exactly once: see relay_txn.c for the identity and what it fences. */
	if (transactional_id)
		evc_kafka_conf_set(conf, "transactional.id", transactional_id);
	rd_kafka_conf_set_dr_msg_cb(conf, relay_dr_cb);
	rd_kafka_conf_set_error_cb(conf, relay_error_cb);

	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create kafka producer"),
				 errdetail("%s", errstr)));
	}
	return rk;
}

/*
 * Make the producers: one, or two for exactly once (see producers[]).  A
 * producer whose init failed is of no use: they all go, and are made again.
 */
static void
producer_create(void)
{
	bool		txn = evc_relay_exactly_once;
	int			want = txn ? RELAY_MAX_PRODUCERS : 1;

	Assert(n_producers == 0);
	pg_atomic_write_u32(&producer_index, 0);
	PG_TRY();
	{
		for (int i = 0; i < want; i++)
		{
			rd_kafka_t *rk = producer_new(txn ? evc_relay_transactional_id(i) : NULL);
			rd_kafka_queue_t *mainq;

			producers[n_producers++] = rk;
			/*
			 * Logs go to their own queue, served by the main loop, where
			 * ereport may run; the main queue (delivery reports, errors) is
			 * served by the producer thread, woken through kafka_pipe.
			 */
			log_queues[i] = rd_kafka_queue_new(rk);
			rd_kafka_set_log_queue(rk, log_queues[i]);
			rd_kafka_queue_io_event_enable(log_queues[i], main_wake_fd, "1", 1);
			mainq = rd_kafka_queue_get_main(rk);
			rd_kafka_queue_io_event_enable(mainq, kafka_pipe[1], "1", 1);
			rd_kafka_queue_destroy(mainq);
		}
		/* Before serving starts, which orders it before any callback. */
		pg_atomic_write_u32(&producer_fatal, 0);
		evc_handoff_serving(true);

		if (producer_brokers)
			pfree(producer_brokers);
		if (producer_properties)
			pfree(producer_properties);
		producer_brokers = MemoryContextStrdup(TopMemoryContext, evc_brokers);
		producer_properties = MemoryContextStrdup(TopMemoryContext, evc_kafka_properties);
		producer_txn = txn;
		if (txn)
			evc_relay_txn_start(producers, n_producers);
		else
			pg_atomic_write_u32(&evc_shared->relay_mode, EVC_RELAY_MODE_IDEMPOTENT);
	}
	PG_CATCH();
	{
		producer_destroy();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Is the running producer transactional (exactly once)? */
bool
evc_relay_transactional(void)
{
	return in_use() != NULL && producer_txn;
}

/* A transactional call failed fatally: the producer is recreated. */
void
evc_relay_producer_mark_fatal(void)
{
	pg_atomic_write_u32(&producer_fatal, 1);
}

/* A batch failed: read_committed consumers never see its transaction. */
void
evc_relay_abort_txn(void)
{
	if (evc_relay_transactional())
		evc_relay_txn_abort(in_use());
}

/* Before a batch is read: the transaction it goes into. */
void
evc_relay_begin_batch_txn(void)
{
	if (!evc_relay_transactional() || evc_relay_txn_is_open())
		return;
	txn_began_at = GetCurrentTimestamp();
	txn_carried = false;
	evc_relay_txn_begin(in_use());
}

/*
 * After a commit: which producer the next transaction goes to (see
 * producers[]).  Only a transaction with messages counts: an empty one
 * (an empty tick, for a waiting evc_flush) never reaches the coordinator,
 * and counting it would put every tick with events on the same producer
 * when empty ticks come between them.  Nothing is in flight: a batch that
 * ends a transaction is settled before the next one is read.
 */
static void
choose_next_producer(TimestampTz committed_at)
{
	if (n_producers < 2 || !txn_carried)
		return;
	if (TimestampDifferenceExceeds(txn_began_at, committed_at, ALTERNATE_AFTER_MS) &&
		!TimestampDifferenceExceeds(txn_began_at, committed_at, ALTERNATE_BEFORE_MS))
		alternate_left = ALTERNATE_TXNS;
	/*
	 * Out of turns, the first producer: the one an operator who fences the
	 * relay's identity by hand takes over, so that the relay notices.
	 */
	if (alternate_left > 0)
	{
		alternate_left--;
		pg_atomic_write_u32(&producer_index, (pg_atomic_read_u32(&producer_index) + 1) % n_producers);
	}
	else
		pg_atomic_write_u32(&producer_index, 0);
}

/* Has the producer hit a fatal error, or has a reload changed its settings? */
static bool
producer_outdated(void)
{
	return in_use() != NULL &&
		(pg_atomic_read_u32(&producer_fatal) ||
		 producer_txn != evc_relay_exactly_once ||
		 strcmp(producer_brokers, evc_brokers) != 0 ||
		 strcmp(producer_properties, evc_kafka_properties) != 0);
}

/* For relay_txn.c's waits: must the producer be made again? */
bool
evc_relay_producer_stale(void)
{
	return producer_outdated();
}

/* Recreate the producer after a fatal error or changed settings. */
void
evc_relay_producer_ensure(void)
{
	bool		in_flight = evc_relay_txn_is_open();

	if (in_use() != NULL && !producer_outdated())
		return;
	for (int i = 0; i < lengthof(batches); i++)
		in_flight |= pg_atomic_read_u32(&batches[i].active) != 0;
	if (in_use() != NULL)
		ereport(LOG,
				(errmsg("evcollector relay: recreating the kafka producer"),
				 errdetail("%s; messages it has not reported stay in evc.outbox and are sent again.",
						   pg_atomic_read_u32(&producer_fatal) ? "It hit a fatal error" :
						   "evcollector.brokers, evcollector.kafka_properties or evcollector.relay_exactly_once changed")));
	if (in_use() != NULL && producer_txn && in_flight)
	{
		char		text[512] = "";
		const char *id = evc_relay_identity();
		rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;

		for (int i = 0; i < n_producers && code == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
		{
			code = rd_kafka_fatal_error(producers[i], text, sizeof(text));
			id = evc_relay_transactional_id(i);
		}

		/*
		 * The open transaction goes with the producer, and with it what the
		 * tick's earlier chunks sent: the tick is read again whole.
		 */
		producer_destroy();
		if (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
			code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("kafka producer fenced: another producer took transactional.id \"%s\"", id),
					 errdetail("%s: %s.", rd_kafka_err2name(code), text),
					 errhint("Another server with this system identifier and database (a promoted standby, "
							 "or a copy of this data directory) relays to these brokers; only one may.  "
							 "This relay takes the identity back when it starts again.")));
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the relay's kafka transaction was abandoned with its producer"),
				 code != RD_KAFKA_RESP_ERR_NO_ERROR ?
				 errdetail("The producer hit a fatal error: %s: %s.", rd_kafka_err2name(code), text) :
				 errdetail("Its settings changed."),
				 errhint("The batch is sent again whole in a new transaction.")));
	}
	producer_destroy();
	producer_create();
}

/*
 * Hand one message to librdkafka, retrying while its queue is full.  The
 * value is not copied (see RelayMsg); the key and headers are.
 *
 * This runs on the producer thread (see handoff.c): no PostgreSQL calls.
 */
static rd_kafka_resp_err_t
produce_msg(uint32 generation, RelayMsg *msg, int idx, pg_atomic_uint32 *cancel)
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
		err = rd_kafka_producev(in_use(),
								RD_KAFKA_V_RKT(msg->rkt),
								RD_KAFKA_V_KEY(msg->key, msg->key_len),
								RD_KAFKA_V_VALUE(msg->value, msg->value_len),
								RD_KAFKA_V_HEADERS(hdrs),
								RD_KAFKA_V_OPAQUE(OPAQUE(generation, idx)),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return err;
		rd_kafka_headers_destroy(hdrs);	/* not taken over on failure */
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || pg_atomic_read_u32(cancel))
			return err;
		/* librdkafka's queue has room once delivered messages are served. */
		serve_reports(10);
	}
}

/*
 * On the producer thread: wait until librdkafka holds nothing of ours, no
 * message and no report unserved, so that the next message starts a record
 * batch of its own.
 */
static void
drain_producer(pg_atomic_uint32 *cancel)
{
	while (rd_kafka_outq_len(in_use()) > 0 && !pg_atomic_read_u32(cancel))
		serve_reports(10);
}

/* The producer thread's work: produce messages [from, to) of a batch. */
static void
produce_range(void *items, int from, int to, pg_atomic_uint32 *cancel)
{
	RelayBatch *batch = (RelayBatch *) items;
	/* Set before the batch was posted; posting took the handoff's lock. */
	uint32		generation = pg_atomic_read_u32(&batch->generation);

	for (int i = from; i < to && !pg_atomic_read_u32(cancel); i++)
	{
		RelayMsg   *msg = &batch->msgs[i];

		/*
		 * A message the brokers refused as too large together with others
		 * is sent alone, before and after: see relay_settle.c.
		 */
		if (msg->alone)
			drain_producer(cancel);
		msg->produce_err = produce_msg(generation, msg, i, cancel);
		if (msg->alone)
			drain_producer(cancel);
	}
}

/* Wait until the producer thread has produced all that was posted. */
void
evc_relay_await_handoff(void)
{
	while (!evc_handoff_done())
	{
		evc_relay_wait_kafka(100);
		evc_worker_handle_interrupts();
	}
}

/*
 * Once the thread has produced the whole batch: count the reports to wait
 * for; a message librdkafka refused is reported already, with its error.
 */
void
evc_relay_count_produced(RelayBatch *batch)
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
	pg_atomic_fetch_add_u32(&batch->reports_pending, produced);
	evc_stats_add(&evc_relay_slot->counters.produced, produced);
	if (produced > 0)
		txn_carried = true;
}

/* Wait, with no transaction open, until every message of the batch is reported. */
static void
await_reports(RelayBatch *batch)
{
	pgstat_report_activity(STATE_RUNNING, "evcollector relay: waiting for delivery reports");
	while ((int32) pg_atomic_read_u32(&batch->reports_pending) > 0)
	{
		/*
		 * librdkafka reports every message within message.timeout.ms, so
		 * this ends; SIGTERM ends it sooner and leaves the rows in the
		 * outbox, to be sent again.
		 */
		evc_relay_wait_kafka(200);
		evc_worker_handle_interrupts();

		/*
		 * New settings (a password put right, other brokers) take effect
		 * now, not after message.timeout.ms: destroying the producer counts
		 * every message it has not reported as failed, to be sent again by
		 * the next one (see producer_destroy).
		 */
		if (producer_outdated())
			evc_relay_producer_ensure();
	}
	/* The count before the outcomes: pairs with relay_dr_cb's barrier. */
	pg_read_barrier();
	pgstat_report_activity(STATE_IDLE, NULL);
}

static bool
batch_has_failures(RelayBatch *batch)
{
	for (int i = 0; i < batch->n; i++)
		if (batch->msgs[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
			return true;
	return false;
}

/* Does the batch end its Kafka transaction (exactly once)? */
static bool
ends_txn(RelayBatch *batch)
{
	return evc_relay_transactional() && (batch->tick_last || batch->from_retry);
}

/*
 * Take the reports of a batch that ends a transaction on this thread, with
 * librdkafka's flush.  While it flushes, the producer thread stops serving:
 * the flush serves the delivery reports itself (relay_dr_cb calls no
 * PostgreSQL function), instead of sleeping in librdkafka's 10 ms polls
 * while the other thread takes them, and the commit that follows does the
 * same.  Stops early for a producer that must be made again (await_reports
 * does that).
 */
static void
flush_batch(void)
{
	evc_handoff_serving(false);
	PG_TRY();
	{
		while (rd_kafka_flush(in_use(), 100) == RD_KAFKA_RESP_ERR__TIMED_OUT && !producer_outdated())
		{
			evc_relay_service();
			evc_worker_handle_interrupts();
		}
	}
	PG_FINALLY();
	{
		if (in_use() != NULL)
			evc_handoff_serving(true);
	}
	PG_END_TRY();
}

/*
 * Commit the transaction the batch ends, whose every report is in and
 * none failed, serving the reports on this thread as flush_batch does.
 * A failed commit is aborted and the batch fails: it is sent again whole.
 */
static void
commit_batch(RelayBatch *batch)
{
	char		why[512];
	volatile bool committed = false;
	TimestampTz committed_at;

	evc_handoff_serving(false);
	PG_TRY();
	{
		committed = evc_relay_txn_commit(in_use(), batch, evc_relay_next_tick_id(), why, sizeof(why));
	}
	PG_FINALLY();
	{
		if (in_use() != NULL)
			evc_handoff_serving(true);
	}
	PG_END_TRY();
	if (!committed)
	{
		evc_relay_abort_txn();
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not commit the relay's kafka transaction"),
				 errdetail("%s; every event of the batch was acknowledged.", why),
				 errhint("The transaction is aborted and the batch sent again whole, in a new transaction, after a pause.")));
	}
	/*
	 * A read_committed reader sees the events at the commit, not at their
	 * acks: that is the latency evc.stats reports.
	 */
	committed_at = GetCurrentTimestamp();
	choose_next_producer(committed_at);
	for (int i = 0; i < batch->n; i++)
		batch->msgs[i].acked_at = committed_at;
}

/*
 * Wait for a batch's reports, commit its Kafka transaction when it ends
 * one (exactly once: the last chunk of a tick, or a retry batch), settle
 * it, and let it go.  A batch with failures is settled without a commit:
 * the settle aborts the transaction (relay_settle.c).
 */
static void
finish_batch(RelayBatch *batch, long *next_due_ms)
{
	int			delivered,
				failed,
				dead;

	if (ends_txn(batch))
		flush_batch();
	await_reports(batch);
	if (ends_txn(batch) && !batch_has_failures(batch))
		commit_batch(batch);
	evc_relay_settle_batch(batch, &delivered, &failed, &dead);
	/* Late reports for it are dropped from here on (batch_of_generation). */
	pg_atomic_write_u32(&batch->active, 0);
	ConditionVariableBroadcast(&evc_shared->outbox_settled);

	if (failed > 0)
	{
		/* The retried rows are due again soon; come back for them. */
		*next_due_ms = (*next_due_ms < 0) ? 1000 : Min(*next_due_ms, 1000);
		ereport(LOG,
				(errmsg("evcollector relay: %d of %d events not delivered yet; they wait in evc.outbox_retry and are retried",
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
int
evc_relay_batch(long *next_due_ms, bool *full)
{
	RelayBatch *prev = pg_atomic_read_u32(&batches[0].active) ? &batches[0] :
		pg_atomic_read_u32(&batches[1].active) ? &batches[1] : NULL;
	RelayBatch *cur = (prev == &batches[0]) ? &batches[1] : &batches[0];
	int			n;

	/*
	 * Exactly once: a batch that ends its transaction is committed before
	 * the next one is read, which would go into the same transaction.
	 */
	if (prev && ends_txn(prev))
	{
		finish_batch(prev, next_due_ms);
		prev = NULL;
	}

	MemoryContextReset(cur->cxt);
	pg_atomic_write_u32(&cur->generation, ++batch_generation);
	cur->msgs = NULL;
	cur->n = cur->cap = 0;
	cur->bytes = 0;
	cur->full = false;
	cur->from_retry = cur->tick_last = false;
	cur->tick_snapshot = NULL;
	cur->tick_events = 0;
	cur->tick_left_out = false;
	pg_atomic_write_u32(&cur->reports_pending, 0);
	/* The batch is set up before it is seen active: see batch_of_generation. */
	pg_write_barrier();
	pg_atomic_write_u32(&cur->active, 1);

	if (!evc_relay_read(evc_relay_batch_size, cur, prev, next_due_ms))
	{
		pg_atomic_write_u32(&cur->active, 0);
		return -1;
	}
	n = cur->n;
	if (prev)
		finish_batch(prev, next_due_ms);
	/* An empty last chunk still carries its tick, which may be recorded. */
	if (n == 0 && !cur->tick_last)
		pg_atomic_write_u32(&cur->active, 0);
	else if (!cur->full)
		finish_batch(cur, next_due_ms);
	*full = cur->full;
	return n;
}

/*
 * After an error: forget both batches; their rows stay in the outbox.  The
 * producer is made again for the next batch.
 */
void
evc_relay_abandon_batches(void)
{
	/* librdkafka may still point into their memory: take that back first. */
	producer_destroy();
	for (int i = 0; i < lengthof(batches); i++)
		pg_atomic_write_u32(&batches[i].active, 0);
	batch_generation++;
	/* The tick being read starts again after the last delivered one. */
	evc_relay_read_from_delivered();
	evc_relay_load_delivered();
	evc_relay_rotate_load();
}

/*
 * Once, at start: the batches' memory, and the producer thread.  wake_fd is
 * the main loop's pipe: the thread writes to it when a batch's last report
 * is in, and librdkafka when it has logs.
 */
void
evc_relay_produce_init(int wake_fd)
{
	if (evc_pipe_nonblock(kafka_pipe) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create pipe for librdkafka events: %m")));
	main_wake_fd = wake_fd;
	/* Before the producer thread starts, which then reads them. */
	pg_atomic_init_u32(&producer_fatal, 0);
	pg_atomic_init_u32(&producer_index, 0);
	for (int i = 0; i < lengthof(batches); i++)
	{
		batches[i].cxt = AllocSetContextCreate(TopMemoryContext, "evcollector relay batch",
											   ALLOCSET_DEFAULT_SIZES);
		pg_atomic_init_u32(&batches[i].active, 0);
		pg_atomic_init_u32(&batches[i].generation, 0);
		pg_atomic_init_u32(&batches[i].reports_pending, 0);
	}
	evc_handoff_start(produce_range, serve_reports_now, kafka_pipe[0], main_wake_fd);
}
