/*
 * guc.c
 *		Owns the evcollector.* settings: their definitions, defaults, ranges
 *		and check hooks.
 *
 * Every setting that can be wrong has a check hook, so that a bad value is
 * refused when it is set or when postgresql.conf is reloaded, rather than
 * failing later inside a worker.  Secrets are GUC_SUPERUSER_ONLY and the
 * hooks never echo a secret value back.
 */
#include "postgres.h"

#include <ctype.h>

#include <librdkafka/rdkafka.h>

#include "utils/guc.h"

#include "core/guc.h"
#include "gateway/gateway.h"

char	   *evc_database = NULL;
char	   *evc_brokers = NULL;
char	   *evc_kafka_properties = NULL;
char	   *evc_topic_prefix = NULL;
char	   *evc_storage_url = NULL;
char	   *evc_s3_endpoint = NULL;
char	   *evc_s3_region = NULL;
char	   *evc_s3_access_key = NULL;
char	   *evc_s3_secret_key = NULL;
int			evc_s3_max_concurrency = 8;
int			evc_batch_size = 1000;
int			evc_relay_batch_size = 10000;
/* relay: exactly once into Kafka (issue 13) */
bool		evc_relay_exactly_once = true;
int			evc_relay_fault_point = EVC_RELAY_FAULT_NONE;
static const struct config_enum_entry relay_fault_points[] = {
	{"none", EVC_RELAY_FAULT_NONE, false},
	{"before_kafka_commit", EVC_RELAY_FAULT_BEFORE_KAFKA_COMMIT, false},
	{"after_kafka_commit", EVC_RELAY_FAULT_AFTER_KAFKA_COMMIT, false},
	{NULL, 0, false}
};
int			evc_flush_interval_ms = 5000;
int			evc_max_file_size_kb = 64 * 1024;
bool		evc_require_schema = true;
int			evc_max_event_size_kb = 1000;
int			evc_max_blob_size_kb = 900;
int			evc_metrics_interval_ms = 0;

/* The outbox's rotation (relay/relay_rotate.c). */
int			evc_outbox_rotate_interval_ms = 60 * 1000;
int			evc_outbox_rotate_rows = 1000000;

/* Kafka limits topic names to 249 characters of [A-Za-z0-9._-]. */
#define KAFKA_TOPIC_MAX 249

/*
 * A topic name fragment (prefix, client or event name) may only use the
 * characters Kafka allows in topic names.
 */
bool
evc_valid_topic_fragment(const char *s, const char **why)
{
	const char *p;

	if (strlen(s) > KAFKA_TOPIC_MAX)
	{
		*why = "it is longer than the 249 characters Kafka allows";
		return false;
	}
	for (p = s; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '_' || *p == '-'))
		{
			*why = "it uses characters other than ASCII letters, digits, \".\", \"_\" and \"-\"";
			return false;
		}
	}
	return true;
}

static bool
check_database(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || **newval == '\0')
	{
		GUC_check_errdetail("The database name must not be empty.");
		return false;
	}
	return true;
}

/*
 * brokers: a comma-separated list of host:port, as librdkafka's
 * bootstrap.servers takes.  An optional scheme (PLAINTEXT://, SSL://, ...)
 * is allowed, as librdkafka allows it.
 */
static bool
check_brokers(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	char	   *tok;
	char	   *save = NULL;
	bool		ok = true;

	if (*newval == NULL || **newval == '\0')
	{
		GUC_check_errdetail("At least one broker must be given, as host:port.");
		return false;
	}
	copy = pstrdup(*newval);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *hostport = strstr(tok, "://");
		char	   *colon;
		char	   *end;
		long		port;

		hostport = hostport ? hostport + 3 : tok;
		while (isspace((unsigned char) *hostport))
			hostport++;
		colon = strrchr(hostport, ':');
		if (colon == NULL || colon == hostport)
		{
			GUC_check_errdetail("Broker \"%s\" is not of the form host:port.", tok);
			ok = false;
			break;
		}
		port = strtol(colon + 1, &end, 10);
		while (isspace((unsigned char) *end))
			end++;
		if (*end != '\0' || port < 1 || port > 65535)
		{
			GUC_check_errdetail("Broker \"%s\" has no valid port number.", tok);
			ok = false;
			break;
		}
	}
	pfree(copy);
	return ok;
}

/*
 * Apply evcollector.kafka_properties-style text ("key=value" pairs separated
 * by semicolons) to a librdkafka configuration.  Commas cannot separate
 * pairs because librdkafka values such as debug contexts contain commas.
 * On failure errbuf names the key only, never the value: it may be a
 * password.  Uses no PostgreSQL allocation that could throw, apart from a
 * palloc'd scratch copy, so check hooks and workers can both call it.
 */
bool
evc_kafka_conf_apply(rd_kafka_conf_t *conf, const char *properties,
					 char *errbuf, size_t errlen)
{
	char	   *copy;
	char	   *pair;
	char	   *save = NULL;
	bool		ok = true;

	if (properties == NULL || *properties == '\0')
		return true;

	copy = pstrdup(properties);
	for (pair = strtok_r(copy, ";", &save); pair; pair = strtok_r(NULL, ";", &save))
	{
		char	   *eq;
		char	   *key;
		char		errstr[256];

		while (isspace((unsigned char) *pair))
			pair++;
		if (*pair == '\0')
			continue;
		eq = strchr(pair, '=');
		if (eq == NULL)
		{
			snprintf(errbuf, errlen, "Item \"%.40s\" is not of the form key=value.", pair);
			ok = false;
			break;
		}
		*eq = '\0';
		key = pair;
		for (char *e = eq - 1; e >= key && isspace((unsigned char) *e); e--)
			*e = '\0';
		if (rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		{
			snprintf(errbuf, errlen, "librdkafka refused property \"%s\": %s", key, errstr);
			ok = false;
			break;
		}
	}
	pfree(copy);
	return ok;
}

/*
 * kafka_properties: each pair is tried on a scratch rd_kafka_conf_t, so an
 * unknown property or a bad value is refused when it is set.
 */
static bool
check_kafka_properties(char **newval, void **extra, GucSource source)
{
	rd_kafka_conf_t *conf;
	char		errbuf[512];
	bool		ok;

	if (*newval == NULL || **newval == '\0')
		return true;

	conf = rd_kafka_conf_new();
	ok = evc_kafka_conf_apply(conf, *newval, errbuf, sizeof(errbuf));
	rd_kafka_conf_destroy(conf);
	if (!ok)
		GUC_check_errdetail("%s", errbuf);
	return ok;
}

static bool
check_topic_prefix(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL)
		return true;
	if (strlen(*newval) > 100)
	{
		GUC_check_errdetail("The topic prefix may have at most 100 characters.");
		return false;
	}
	if (!evc_valid_topic_fragment(*newval, &why))
	{
		GUC_check_errdetail("The topic prefix is not valid because %s.", why);
		return false;
	}
	return true;
}

/*
 * storage_url: file:///absolute/dir or s3://bucket[/prefix].  Bucket names
 * follow the S3 rules: 3 to 63 characters of lower-case letters, digits,
 * dots and hyphens.
 */
static bool
check_storage_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;

	if (url == NULL || *url == '\0')
	{
		GUC_check_errdetail("A storage URL is required, such as file:///var/lib/postgresql/evcollector or s3://bucket/prefix.");
		return false;
	}
	if (strncmp(url, "file://", 7) == 0)
	{
		if (url[7] != '/')
		{
			GUC_check_errdetail("A file:// storage URL needs an absolute path, as in file:///var/lib/evcollector.");
			return false;
		}
		return true;
	}
	if (strncmp(url, "s3://", 5) == 0)
	{
		const char *bucket = url + 5;
		size_t		len = strcspn(bucket, "/");

		if (len < 3 || len > 63)
		{
			GUC_check_errdetail("The bucket name in \"%s\" must have 3 to 63 characters.", url);
			return false;
		}
		for (size_t i = 0; i < len; i++)
		{
			char		c = bucket[i];

			if (!(islower((unsigned char) c) || isdigit((unsigned char) c) || c == '-' || c == '.'))
			{
				GUC_check_errdetail("The bucket name in \"%s\" may only use lower-case letters, digits, \".\" and \"-\".", url);
				return false;
			}
		}
		return true;
	}
	GUC_check_errdetail("Unknown storage URL scheme in \"%s\".", url);
	GUC_check_errhint("Use file:///path for a local directory or s3://bucket/prefix for S3-compatible storage.");
	return false;
}

static bool
check_s3_endpoint(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;

	if (url == NULL || *url == '\0')
		return true;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
	{
		GUC_check_errdetail("The S3 endpoint must be an http:// or https:// URL, such as http://127.0.0.1:9000.");
		return false;
	}
	return true;
}

static bool
check_s3_region(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (*newval == NULL || **newval == '\0')
	{
		GUC_check_errdetail("The S3 region must not be empty; MinIO accepts us-east-1.");
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || *p == '-'))
		{
			GUC_check_errdetail("The S3 region may only use letters, digits and \"-\".");
			return false;
		}
	}
	return true;
}

/* metrics_interval: 0 turns the metrics topic off; otherwise at least 1 s. */
static bool
check_metrics_interval(int *newval, void **extra, GucSource source)
{
	if (*newval != 0 && *newval < 1000)
	{
		GUC_check_errdetail("The metrics interval is 0 (off) or at least 1 second; %d ms is too short.", *newval);
		return false;
	}
	return true;
}

/*
 * PGC_POSTMASTER settings can only be defined while the postmaster loads
 * the library; a backend that loads it later gets the others only.
 */
/*
 * A rotation more often than every second would only churn the tables:
 * each switch waits for a delivered tick past every transaction that could
 * still write to the old table.
 */
static bool
check_outbox_rotate_interval(int *newval, void **extra, GucSource source)
{
	if (*newval < 1000)
	{
		GUC_check_errdetail("The outbox tables may switch at most once a second.");
		return false;
	}
	return true;
}

void
evc_define_gucs(bool preloading)
{
	if (preloading)
		DefineCustomStringVariable("evcollector.database",
								   "Database in which the evcollector workers run.",
								   "The extension must be created in this database.",
								   &evc_database, "postgres",
								   PGC_POSTMASTER, 0,
								   check_database, NULL, NULL);

	/* The HTTP gateway's own (gateway/settings.c). */
	evc_gateway_define_gucs();

	DefineCustomStringVariable("evcollector.brokers",
							   "Kafka bootstrap servers, as a comma-separated list of host:port.",
							   NULL,
							   &evc_brokers, "localhost:9092",
							   PGC_SIGHUP, 0,
							   check_brokers, NULL, NULL);

	DefineCustomStringVariable("evcollector.kafka_properties",
							   "Extra librdkafka properties as key=value pairs separated by semicolons.",
							   "Passed to every producer, consumer and admin client; use it for TLS and SASL.",
							   &evc_kafka_properties, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_kafka_properties, NULL, NULL);

	DefineCustomStringVariable("evcollector.topic_prefix",
							   "Prefix of every Kafka topic evcollector produces to.",
							   NULL,
							   &evc_topic_prefix, "",
							   PGC_SIGHUP, 0,
							   check_topic_prefix, NULL, NULL);

	DefineCustomStringVariable("evcollector.storage_url",
							   "Where sinks write objects: file:///dir or s3://bucket/prefix.",
							   NULL,
							   &evc_storage_url, "file:///var/lib/postgresql/evcollector",
							   PGC_SIGHUP, 0,
							   check_storage_url, NULL, NULL);

	DefineCustomStringVariable("evcollector.s3_endpoint",
							   "HTTP endpoint of the S3-compatible server, such as http://minio:9000.",
							   "Empty means AWS S3 in evcollector.s3_region.",
							   &evc_s3_endpoint, "",
							   PGC_SIGHUP, 0,
							   check_s3_endpoint, NULL, NULL);

	DefineCustomStringVariable("evcollector.s3_region",
							   "Region used to sign S3 requests.",
							   NULL,
							   &evc_s3_region, "us-east-1",
							   PGC_SIGHUP, 0,
							   check_s3_region, NULL, NULL);

	DefineCustomStringVariable("evcollector.s3_access_key",
							   "Access key id for S3 storage.",
							   NULL,
							   &evc_s3_access_key, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("evcollector.s3_secret_key",
							   "Secret access key for S3 storage.",
							   NULL,
							   &evc_s3_secret_key, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("evcollector.s3_max_concurrency",
							"Most S3 requests one consumer has in flight at once.",
							"A landing's objects are put concurrently, on up to this many connections.",
							&evc_s3_max_concurrency, 8, 1, 64,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("evcollector.batch_size",
							"Events per consumer batch: landed together, and per archive file.",
							"The default of a consumer's batch_size option.",
							&evc_batch_size, 1000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	/*
	 * Its own setting, not evcollector.batch_size: a consumer holds a batch
	 * per partition, the relay two in all, and the relay keeps Kafka fed only
	 * with reads large enough that the next is produced before librdkafka's
	 * queue runs dry (bench/send: 1,000 gave 432,000 events/s, 10,000 gave
	 * 527,000, with the same kcat baseline).
	 */
	DefineCustomIntVariable("evcollector.relay_batch_size",
							"Events per outbox read of the relay; at most two reads are in flight.",
							"A tick's batch is read and produced in chunks of this many events, all in one Kafka transaction.",
							&evc_relay_batch_size, 10000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("evcollector.flush_interval",
							"Longest time a sink holds events before it writes them.",
							NULL,
							&evc_flush_interval_ms, 5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("evcollector.max_file_size",
							"Largest archive file a sink writes before it starts a new one.",
							NULL,
							&evc_max_file_size_kb, 64 * 1024, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("evcollector.require_schema",
							 "Refuse events whose type has no registered schema.",
							 "When off, evc_send sends events of unknown types unvalidated, with schema version 0.",
							 &evc_require_schema, true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("evcollector.max_event_size",
							"Largest encoded event evc_send accepts.",
							"Keep it at or below the brokers' message.max.bytes.",
							&evc_max_event_size_kb, 1000, 1, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("evcollector.max_blob_size",
							"Largest image evc_send_image accepts.",
							"The encoded event must also fit evcollector.max_event_size.",
							&evc_max_blob_size_kb, 900, 1, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("evcollector.metrics_interval",
							"How often the relay publishes a Metrics message to <topic_prefix>metrics.",
							"0 (the default) turns it off; create the topic first where brokers do not create topics.",
							&evc_metrics_interval_ms, 0, 0, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							check_metrics_interval, NULL, NULL);

	DefineCustomIntVariable("evcollector.outbox_rotate_interval",
							"How old the current outbox table gets before inserts switch to the next one.",
							"The old table is emptied with TRUNCATE once its events are delivered.",
							&evc_outbox_rotate_interval_ms, 60 * 1000, 1000, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							check_outbox_rotate_interval, NULL, NULL);

	DefineCustomIntVariable("evcollector.outbox_rotate_rows",
							"How many events the current outbox table takes before inserts switch to the next one.",
							NULL,
							&evc_outbox_rotate_rows, 1000000, 1000, PG_INT32_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	/* relay: exactly once into Kafka (issue 13) */
	DefineCustomBoolVariable("evcollector.relay_exactly_once",
							 "Deliver each outbox batch in one Kafka transaction, with the relay's progress.",
							 "Off falls back to the idempotent producer (at least once), for brokers without transactions.",
							 &evc_relay_exactly_once, true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("evcollector.relay_fault_point",
							 "Test hook: the relay SIGKILLs itself at this point of every Kafka transaction.",
							 "For fault tests only; leave it at none.",
							 &evc_relay_fault_point, EVC_RELAY_FAULT_NONE, relay_fault_points,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("evcollector");
}
