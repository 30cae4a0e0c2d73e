/*
 * kafka.c
 *		Owns how evcollector configures librdkafka: one path for the
 *		producer, the consumers and the admin client, with the brokers, the
 *		pass-through properties of evcollector.kafka_properties, and logging.
 *
 * librdkafka calls its log callback from its own threads, where no
 * PostgreSQL function may run.  So logs are queued (log.queue) and served
 * in the process's own thread, where ereport is safe: the relay serves a
 * log queue of its own, a consumer its consumer queue (through
 * evc_kafka_serve_logs and rd_kafka_poll_set_consumer).  A handle whose
 * logs are never served only drops them.
 */
#include "postgres.h"

#include "core/guc.h"
#include "kafka/kafka.h"

/* librdkafka's and evc_kafka_conf_apply's texts, as one sentence. */
static char *
as_sentence(const char *text)
{
	size_t		len = strlen(text);

	return psprintf("%s%s", text, len > 0 && text[len - 1] == '.' ? "" : ".");
}

/* Set one property, turning librdkafka's refusal into an error. */
static void
kafka_conf_set(rd_kafka_conf_t *conf, const char *who, const char *key, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("librdkafka refused property \"%s\"", key),
				 errdetail("Configuring %s: %s", who, as_sentence(errstr))));
	}
}

/*
 * Set one property on a configuration made by evc_kafka_conf_build, for a
 * setting the role needs whatever the user's properties say.
 */
void
evc_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
	kafka_conf_set(conf, "a Kafka client", key, value);
}

static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	/* Runs inside rd_kafka_poll() in our thread: see the file comment. */
	ereport(level <= 3 ? WARNING : LOG,
			(errmsg_internal("librdkafka %s: %s", fac, buf)));
}

/*
 * The one configuration path of every librdkafka handle evcollector makes,
 * the relay's producer, the consumers and the admin client: the brokers,
 * logging, then the role's defaults (NULL-terminated key, value pairs),
 * then the user's properties, so that they override those defaults:
 * evcollector.kafka_properties (security.protocol, sasl.*, ssl.* and the
 * like go there) and then the handle's own (a consumer's "kafka" option;
 * NULL for none).  A role then sets, with evc_kafka_conf_set, whatever the
 * user must not change, and its callbacks.  who names the handle in errors.
 *
 * The properties were checked when they were set (the GUC check hook,
 * evc_consumer_create), so a failure here means they changed under us, or
 * that they do not go with the role's defaults; it is still reported
 * cleanly.
 */
rd_kafka_conf_t *
evc_kafka_conf_build(const char *who, const char *const *defaults, const char *properties)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errbuf[512];

	kafka_conf_set(conf, who, "bootstrap.servers", evc_brokers);
	kafka_conf_set(conf, who, "log.queue", "true");
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);

	for (; defaults && defaults[0]; defaults += 2)
		kafka_conf_set(conf, who, defaults[0], defaults[1]);

	if (!evc_kafka_conf_apply(conf, evc_kafka_properties, errbuf, sizeof(errbuf)))
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid evcollector.kafka_properties"),
				 errdetail("Configuring %s: %s", who, as_sentence(errbuf))));
	}
	if (!evc_kafka_conf_apply(conf, properties, errbuf, sizeof(errbuf)))
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid librdkafka properties for %s", who),
				 errdetail("%s", as_sentence(errbuf))));
	}
	return conf;
}

/* The producer's configuration: see evc_kafka_conf_build. */
rd_kafka_conf_t *
evc_kafka_conf_new(const char *const *defaults)
{
	return evc_kafka_conf_build("the Kafka producer", defaults, NULL);
}

/* Route the handle's logs to its main queue; see the file comment. */
void
evc_kafka_serve_logs(rd_kafka_t *rk)
{
	rd_kafka_set_log_queue(rk, NULL);
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
