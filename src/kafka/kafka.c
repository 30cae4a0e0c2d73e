/*
 * kafka.c
 *		Owns how evcollector configures librdkafka: the brokers, the
 *		pass-through properties of evcollector.kafka_properties, and logging.
 *
 * librdkafka calls its log callback from its own threads, where no
 * PostgreSQL function may run.  So log.queue holds the logs until the
 * handle's owner names a queue for them (rd_kafka_set_log_queue) and
 * serves it in the backend's own thread, where ereport is safe.
 */
#include "postgres.h"

#include "core/guc.h"
#include "kafka/kafka.h"

/* Set one property, turning librdkafka's refusal into an error. */
void
evc_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("librdkafka refused property \"%s\"", key),
				 errdetail("%s", errstr)));
	}
}

static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	/* Runs inside rd_kafka_poll() in our thread: see the file comment. */
	ereport(level <= 3 ? WARNING : LOG,
			(errmsg_internal("librdkafka %s: %s", fac, buf)));
}

/*
 * A configuration with the brokers, the caller's defaults (NULL-terminated
 * key, value pairs) and then the user's properties applied.  The
 * properties were checked by the GUC check hook, so a failure here means
 * the value changed under us; it is still reported cleanly.
 */
rd_kafka_conf_t *
evc_kafka_conf_new(const char *const *defaults)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errbuf[512];

	evc_kafka_conf_set(conf, "bootstrap.servers", evc_brokers);
	evc_kafka_conf_set(conf, "log.queue", "true");
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);

	/* Our defaults first, so that the user's properties override them. */
	for (; defaults && defaults[0]; defaults += 2)
		evc_kafka_conf_set(conf, defaults[0], defaults[1]);

	if (!evc_kafka_conf_apply(conf, evc_kafka_properties, errbuf, sizeof(errbuf)))
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid evcollector.kafka_properties"),
				 errdetail("%s", errbuf)));
	}
	return conf;
}

/* <evcollector.topic_prefix><suffix> */
char *
evc_topic_name(const char *suffix)
{
	return psprintf("%s%s", evc_topic_prefix ? evc_topic_prefix : "", suffix);
}

/*
 * Errors that retrying cannot cure: the message itself, or the topic's
 * authorisation, is wrong.  Everything else (broker down, leader change,
 * timeouts) is retried.
 */
bool
evc_kafka_permanent_error(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		case RD_KAFKA_RESP_ERR_INVALID_MSG:
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
		case RD_KAFKA_RESP_ERR__INVALID_ARG:
			return true;
		default:
			return false;
	}
}
