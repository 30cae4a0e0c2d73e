/*
 * relay_progress.c
 *		Reading the relay's progress back from <prefix>_evc_relay when a
 *		transactional producer starts: the last record with this server's
 *		key, read from the tail of each partition.
 *
 * Each Kafka transaction that carries a tick writes one progress record
 * (relay_txn.c), so the topic grows by a record and a commit marker a tick.
 * It is compacted, but Apache Kafka never compacts a partition's active
 * segment, so until a segment closes (segment.ms, kafka/topics.c) every
 * record is there.  Reading all of it from the beginning took longer than
 * PROGRESS_READ_MS after a busy hour against slow brokers, and the relay
 * never started.  Our latest record is near the end (our producers are
 * fenced by now: nothing of ours comes after it), so each partition is read
 * from its high watermark minus PROGRESS_WINDOW offsets; only when our key
 * is not there is the window before it read, twice as large, and so on back
 * to the partition's start.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/timestamp.h"

#include "core/worker.h"
#include "kafka/kafka.h"
#include "relay/relay_int.h"

/* Each step of reading the progress topic back (metadata, watermarks, the read) may take this long. */
#define PROGRESS_READ_MS 15000
/*
 * The first window's length in offsets.  Our producers are fenced, so our
 * last record is normally among the partition's last: a tick takes two
 * offsets (the record and its transaction's commit marker), and a relay
 * alone on its topic (one prefix a deployment) wrote the last one.  Small,
 * because librdkafka's mock cluster answers each Fetch with one record
 * batch, and each progress record is a batch of its own: against mock
 * brokers 700 ms slow (test/faults/relay_crash.sh) every offset of the
 * window costs a round trip.  A real broker sends a window in one answer,
 * and a record of ours further back (servers sharing the topic) costs one
 * read per doubling.
 */
#define PROGRESS_WINDOW 8

/* One partition's read: the window [start, end) being read, and what it found. */
typedef struct ProgressPart
{
	int64		low;			/* watermarks, taken before the read */
	int64		high;
	int64		start;
	int64		end;
	int64		window;			/* end - start, before the clamp at low */
	char	   *found;			/* the window's last record with our key */
	bool		done;
} ProgressPart;

/* A consumer of the progress topic with the given isolation.level; assigned, never in a group. */
static rd_kafka_t *
progress_consumer(const char *isolation)
{
	static const char *const defaults[] = {
		"enable.partition.eof", "true",
		"enable.auto.commit", "false",
		"fetch.wait.max.ms", "50",
		/* An offset the log no longer has: read from its start (only later offsets are lost). */
		"auto.offset.reset", "earliest",
		NULL
	};
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char		errstr[512];

	conf = evc_kafka_conf_build("the relay's progress reader", defaults, NULL);
	evc_kafka_conf_set(conf, "group.id", psprintf("%s-progress", evc_relay_identity()));
	evc_kafka_conf_set(conf, "isolation.level", isolation);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create the relay's progress reader"),
				 errdetail("%s", errstr)));
	}
	return rk;
}

/* The topic's partition count; 0 when it does not exist.  *md is for the caller to free. */
static int
progress_partitions(rd_kafka_t *rk, const char *topic, const struct rd_kafka_metadata **md)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t err;

	/* One call, not sliced: see controller_known in kafka/topics.c. */
	err = rd_kafka_metadata(rk, 0, rkt, md, PROGRESS_READ_MS);
	rd_kafka_topic_destroy(rkt);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the relay's progress from topic \"%s\"", topic),
				 errdetail("Metadata: %s: %s.", rd_kafka_err2name(err), rd_kafka_err2str(err))));
	if ((*md)->topic_cnt != 1 || (*md)->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	return (*md)->topics[0].partition_cnt;
}

/*
 * Each partition's watermarks and first window.  They come from a
 * read_uncommitted handle: a read_committed one is told the last stable
 * offset instead, which stops before another server's open transaction,
 * and a record of ours may lie beyond it.
 */
static void
take_watermarks(rd_kafka_t *hw_rk, const char *topic, ProgressPart *parts, int n)
{
	for (int i = 0; i < n; i++)
	{
		ProgressPart *pp = &parts[i];
		int64_t		lo,
					hi;
		rd_kafka_resp_err_t err;

		err = rd_kafka_query_watermark_offsets(hw_rk, topic, i, &lo, &hi, PROGRESS_READ_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read the relay's progress from topic \"%s\"", topic),
					 errdetail("Watermarks of partition %d: %s: %s.", i, rd_kafka_err2name(err), rd_kafka_err2str(err))));
		pp->low = lo;
		pp->high = hi;
		pp->end = hi;
		pp->window = PROGRESS_WINDOW;
		pp->start = Max(lo, hi - PROGRESS_WINDOW);
		pp->done = (hi <= lo);
	}
}

/* Read partition p from offset start next (it is assigned: librdkafka drops what it fetched before). */
static void
seek_window(rd_kafka_t *rk, const char *topic, int p, int64 start, TimestampTz deadline)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	long		secs;
	int			usecs;
	rd_kafka_error_t *error;
	char	   *why = NULL;

	rd_kafka_topic_partition_list_add(list, topic, p)->offset = start;
	TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
	/* A timeout, not 0 (which would not wait): then nothing fetched before comes after. */
	error = rd_kafka_seek_partitions(rk, list, (int) Max(1, secs * 1000 + usecs / 1000));
	if (error)
	{
		why = pstrdup(rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	}
	else if (list->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		why = pstrdup(rd_kafka_err2str(list->elems[0].err));
	rd_kafka_topic_partition_list_destroy(list);
	if (why)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the relay's progress from topic \"%s\"", topic),
				 errdetail("Seek partition %d to offset " INT64_FORMAT ": %s.", p, start, why)));
}

/*
 * Take one message of pp's window; true once the window is read: a
 * read_committed consumer stops at the last stable offset, before another
 * server's open transaction, so a window is read only once a record or the
 * end of the partition is at or beyond its end.  Commit markers and aborted
 * records are never delivered, so the record at end - 1 may never come.
 */
static bool
window_take(ProgressPart *pp, rd_kafka_message_t *msg, const char *key, const char *topic)
{
	if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return msg->offset >= pp->end;
	if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		char	   *why = pstrdup(rd_kafka_message_errstr(msg));

		rd_kafka_message_destroy(msg);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the relay's progress from topic \"%s\"", topic),
				 errdetail("%s.", why)));
	}
	/* Beyond the end: read in the window after this one, which had none of ours. */
	if (msg->offset >= pp->start && msg->offset < pp->end &&
		msg->key_len == strlen(key) && memcmp(msg->key, key, msg->key_len) == 0 &&
		msg->payload != NULL)
	{
		/* In offset order: the last one kept is the highest. */
		if (pp->found)
			pfree(pp->found);
		pp->found = pnstrdup(msg->payload, msg->len);
	}
	return msg->offset + 1 >= pp->end;
}

/*
 * pp's window is read.  Done when it had our key, or when it reached the
 * partition's start; otherwise the window before it is next, twice as long
 * (returns true).
 */
static bool
window_step_back(ProgressPart *pp)
{
	if (pp->found != NULL || pp->start <= pp->low)
	{
		pp->done = true;
		return false;
	}
	pp->end = pp->start;
	pp->window *= 2;
	pp->start = Max(pp->low, pp->end - pp->window);
	return true;
}

/*
 * Read each partition's windows until it is done, within PROGRESS_READ_MS.
 * The answer is what the partition done last found, as when every
 * partition was read from its beginning and the last record with our key
 * won: there is one partition (kafka/topics.c), or our key's records are
 * in the one partition its hash picks.
 */
static char *
read_windows(rd_kafka_t *rk, const char *topic, ProgressPart *parts, int n)
{
	const char *key = evc_relay_identity();
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
	char	   *found = NULL;
	int			ndone = 0;
	TimestampTz deadline;
	rd_kafka_resp_err_t err;

	for (int i = 0; i < n; i++)
	{
		if (parts[i].done)
			ndone++;
		else
			rd_kafka_topic_partition_list_add(list, topic, i)->offset = parts[i].start;
	}
	err = ndone < n ? rd_kafka_assign(rk, list) : RD_KAFKA_RESP_ERR_NO_ERROR;
	rd_kafka_topic_partition_list_destroy(list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the relay's progress from topic \"%s\"", topic),
				 errdetail("Assign: %s.", rd_kafka_err2str(err))));
	/* The read's own time, after the metadata and the watermarks. */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PROGRESS_READ_MS);
	while (ndone < n)
	{
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
		ProgressPart *pp;

		if (GetCurrentTimestamp() > deadline)
		{
			if (msg)
				rd_kafka_message_destroy(msg);
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read the relay's progress from topic \"%s\" to its end", topic),
					 errdetail("%d of %d partitions were read from their high watermark back to this server's last record, or to their start, within %d ms.",
							   ndone, n, PROGRESS_READ_MS),
					 errhint("An open transaction of another producer can hold a read_committed reader back; it is tried again.")));
		}
		evc_worker_handle_interrupts();
		if (msg == NULL)
			continue;
		if (msg->partition < 0 || msg->partition >= n || parts[msg->partition].done)
		{
			rd_kafka_message_destroy(msg);
			continue;
		}
		pp = &parts[msg->partition];
		if (!window_take(pp, msg, key, topic))
		{
			rd_kafka_message_destroy(msg);
			continue;
		}
		rd_kafka_message_destroy(msg);
		if (window_step_back(pp))
			seek_window(rk, topic, (int) (pp - parts), pp->start, deadline);
		else
		{
			ndone++;
			if (pp->found)
				found = pp->found;
		}
	}
	return found;
}

/*
 * The last progress record of this identity in the progress topic, read
 * with a read_committed consumer of its own: the record with our key of
 * the highest offset, found by reading each partition's tail first.  NULL
 * when the topic or the record does not exist.
 */
char *
evc_relay_read_progress(void)
{
	const char *topic = evc_topic_name("_evc_relay");
	rd_kafka_t *volatile rk = NULL;
	rd_kafka_t *volatile hw_rk = NULL;
	const struct rd_kafka_metadata *volatile md = NULL;
	char	   *volatile found = NULL;

	hw_rk = progress_consumer("read_uncommitted");
	PG_TRY();
	{
		const struct rd_kafka_metadata *m = NULL;
		int			n;

		rk = progress_consumer("read_committed");
		n = progress_partitions(rk, topic, &m);
		md = m;
		if (n > 0)
		{
			ProgressPart *parts = palloc0(sizeof(ProgressPart) * n);

			take_watermarks(hw_rk, topic, parts, n);
			found = read_windows(rk, topic, parts, n);
		}
	}
	PG_FINALLY();
	{
		if (md)
			rd_kafka_metadata_destroy(md);
		/* No group joined, nothing committed: they close at once. */
		if (rk)
			rd_kafka_destroy(rk);
		rd_kafka_destroy(hw_rk);
	}
	PG_END_TRY();
	return found;
}
