/*
 * eos_txn.c
 *		A transactional producer for test/kafka/eos.sh: it takes a
 *		transactional.id, calls init_transactions (which fences every older
 *		producer with that id, as a promoted standby's relay would), and
 *		sends COUNT messages to TOPIC in one transaction, which it commits or
 *		aborts.  It also proves that librdkafka's transaction protocol works
 *		against the broker at hand: every step prints what it got.
 *
 *	eos_txn BROKERS TRANSACTIONAL_ID TOPIC COUNT commit|abort
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

static int
step(const char *what, rd_kafka_error_t *error)
{
	if (error == NULL)
	{
		printf("%s: ok\n", what);
		return 0;
	}
	printf("%s: %s: %s%s%s\n", what, rd_kafka_error_name(error), rd_kafka_error_string(error),
		   rd_kafka_error_is_fatal(error) ? " (fatal)" : "",
		   rd_kafka_error_txn_requires_abort(error) ? " (abortable)" : "");
	rd_kafka_error_destroy(error);
	return 1;
}

int
main(int argc, char **argv)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char		errstr[512];
	int			count;

	if (argc != 6)
	{
		fprintf(stderr, "usage: %s BROKERS TRANSACTIONAL_ID TOPIC COUNT commit|abort\n", argv[0]);
		return 2;
	}
	count = atoi(argv[4]);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "transactional.id", argv[2], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "%s\n", errstr);
		return 2;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "%s\n", errstr);
		return 2;
	}
	printf("librdkafka %s\n", rd_kafka_version_str());
	if (step("init_transactions", rd_kafka_init_transactions(rk, 30000)) ||
		step("begin_transaction", rd_kafka_begin_transaction(rk)))
		return 1;
	for (int i = 0; i < count; i++)
	{
		char		value[64];
		rd_kafka_resp_err_t err;

		snprintf(value, sizeof(value), "%s-%d", argv[5], i);
		err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[3]), RD_KAFKA_V_VALUE(value, strlen(value)),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (err)
		{
			printf("produce: %s\n", rd_kafka_err2name(err));
			return 1;
		}
	}
	if (strcmp(argv[5], "commit") == 0 ?
		step("commit_transaction", rd_kafka_commit_transaction(rk, 30000)) :
		step("abort_transaction", rd_kafka_abort_transaction(rk, 30000)))
		return 1;
	rd_kafka_destroy(rk);
	return 0;
}
