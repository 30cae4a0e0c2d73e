/*
 * guc.h
 *		The evcollector.* settings.
 */
#ifndef EVC_GUC_H
#define EVC_GUC_H

extern char *evc_database;
extern char *evc_brokers;
extern char *evc_kafka_properties;
extern char *evc_topic_prefix;
extern char *evc_storage_url;
extern char *evc_s3_endpoint;
extern char *evc_s3_region;
extern char *evc_s3_access_key;
extern char *evc_s3_secret_key;
extern int	evc_s3_max_concurrency;
extern int	evc_batch_size;
extern int	evc_relay_batch_size;
extern int	evc_flush_interval_ms;
extern int	evc_max_file_size_kb;
extern bool evc_require_schema;
extern int	evc_max_event_size_kb;
extern int	evc_max_blob_size_kb;
extern int	evc_metrics_interval_ms;
extern int	evc_outbox_rotate_interval_ms;
extern int	evc_outbox_rotate_rows;
extern bool evc_relay_exactly_once;
extern int	evc_relay_fault_point;

/* evcollector.relay_fault_point: a test hook (docs/settings.md). */
typedef enum EvcRelayFaultPoint
{
	EVC_RELAY_FAULT_NONE,
	EVC_RELAY_FAULT_BEFORE_KAFKA_COMMIT,
	EVC_RELAY_FAULT_AFTER_KAFKA_COMMIT
} EvcRelayFaultPoint;

extern void evc_define_gucs(bool preloading);

/* Helpers shared with code that validates the same shapes at run time. */
extern bool evc_valid_topic_fragment(const char *s, const char **why);

/* Applies "key=value; ..." text to a librdkafka configuration. */
struct rd_kafka_conf_s;
extern bool evc_kafka_conf_apply(struct rd_kafka_conf_s *conf, const char *properties,
								 char *errbuf, size_t errlen);

#endif
