/*
 * kafka.h
 *		librdkafka configuration shared by the relay, the consumers and the
 *		admin functions.
 */
#ifndef EVC_KAFKA_H
#define EVC_KAFKA_H

#include <librdkafka/rdkafka.h>

extern rd_kafka_conf_t *evc_kafka_conf_build(const char *who, const char *const *defaults,
											 const char *properties);
extern rd_kafka_conf_t *evc_kafka_conf_new(const char *const *defaults);
/* Serve a handle's logs from its main queue, in the caller's thread. */
extern void evc_kafka_serve_logs(rd_kafka_t *rk);
extern void evc_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value);
extern char *evc_topic_name(const char *suffix);
extern bool evc_kafka_permanent_error(rd_kafka_resp_err_t err);

/* What evc_kafka_ensure_compacted_topic found. */
typedef enum EvcTopicEnsured
{
	EVC_TOPIC_READY,			/* created compacted now, or it existed */
	EVC_TOPIC_NO_ADMIN,			/* the brokers name no controller (no Admin API) */
	EVC_TOPIC_FAILED			/* refused or no answer; *why says which */
} EvcTopicEnsured;

extern EvcTopicEnsured evc_kafka_ensure_compacted_topic(rd_kafka_t *rk, const char *name,
														int timeout_ms, char **why);

#endif
