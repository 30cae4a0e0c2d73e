/*
 * evc-kafka-settled.c
 *		Test helper: wait until no partition of a topic has a transaction
 *		still open or not yet marked, that is until each partition's last
 *		stable offset equals its high watermark.
 *
 * Usage: evc-kafka-settled BROKERS TOPIC [TIMEOUT_MS]
 *
 * Apache Kafka answers a transaction's commit before it writes the commit
 * markers to the partitions, so a read_committed read started just after a
 * commit can stop at the last stable offset, before the newest records.
 * test/helpers/kafka-dump runs this first.  kcat cannot tell: its offset
 * query (-Q) makes a producer handle, which ignores isolation.level.  A
 * consumer handle's watermark query returns the last stable offset under
 * read_committed and the high watermark under read_uncommitted.
 *
 * Exits 0 once settled (or when the topic does not exist), 1 after
 * TIMEOUT_MS (default 10000) with the partitions that were not, 2 on a usage
 * or client error or when the brokers do not answer within 3 s.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static rd_kafka_t *
consumer(const char *brokers, const char *isolation)
{
	char		errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "isolation.level", isolation, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "evc-kafka-settled: %s\n", errstr);
		exit(2);
	}
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "evc-kafka-settled: %s\n", errstr);
		exit(2);
	}
	return rk;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The number of partitions of topic, 0 when it does not exist. */
static int
partitions(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md;
	int			n = 0;

	if (rd_kafka_metadata(rk, 0, rkt, &md, 3000) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		fprintf(stderr, "evc-kafka-settled: no metadata for topic %s\n", topic);
		exit(2);
	}
	if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return n;
}

int
main(int argc, char **argv)
{
	rd_kafka_t *committed,
			   *uncommitted;
	int64_t		deadline;
	int			n;

	if (argc < 3)
	{
		fprintf(stderr, "usage: evc-kafka-settled BROKERS TOPIC [TIMEOUT_MS]\n");
		return 2;
	}
	deadline = now_ms() + (argc > 3 ? atoi(argv[3]) : 10000);
	committed = consumer(argv[1], "read_committed");
	uncommitted = consumer(argv[1], "read_uncommitted");
	n = partitions(uncommitted, argv[2]);
	for (;;)
	{
		int			open = 0;

		for (int p = 0; p < n; p++)
		{
			int64_t		lo,
						lso,
						hw;

			/* Brokers that do not answer: the read that follows finds out. */
			if (rd_kafka_query_watermark_offsets(committed, argv[2], p, &lo, &lso, 3000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
				rd_kafka_query_watermark_offsets(uncommitted, argv[2], p, &lo, &hw, 3000) != RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				fprintf(stderr, "evc-kafka-settled: no watermarks for %s [%d]\n", argv[2], p);
				exit(2);
			}
			if (lso != hw)
			{
				open++;
				if (now_ms() >= deadline)
					fprintf(stderr, "evc-kafka-settled: %s [%d] not settled\n", argv[2], p);
			}
		}
		if (open == 0 || now_ms() >= deadline)
		{
			rd_kafka_destroy(committed);
			rd_kafka_destroy(uncommitted);
			return open == 0 ? 0 : 1;
		}
		usleep(50 * 1000);
	}
}
