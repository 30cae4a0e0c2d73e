/*
 * topics.c
 *		Owns evc_create_topic(): topic creation through librdkafka's Admin
 *		API, as a setup step, so that consumers never start on a topic that
 *		does not exist yet; and evc_kafka_ensure_compacted_topic(), which
 *		the relay uses for the registry's compacted topic.
 *
 * The call runs in a backend: it waits on librdkafka's result queue in
 * short slices and checks for interrupts between them, so a cancel works
 * and nothing blocks without a timeout.  librdkafka objects are freed with
 * librdkafka's calls in PG_FINALLY, also on error.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "kafka/kafka.h"
#include "util/fmgr_args.h"

#define ADMIN_TIMEOUT_MS 15000

/*
 * segment.ms of the compacted topics: the cleaner never compacts a
 * partition's active segment, and the brokers' default rolls it only after
 * 7 days (or 1 GB), so the relay's progress topic, one record a tick, kept
 * every record that long.  An hour bounds what it holds uncompacted.
 */
#define COMPACTED_SEGMENT_MS "3600000"

static void
add_topic_config(rd_kafka_NewTopic_t *nt, Jsonb *config)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(config) || JB_ROOT_IS_SCALAR(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic config must be a JSON object"),
				 errdetail("For example {\"cleanup.policy\": \"compact\", \"retention.ms\": \"86400000\"}.")));
	it = JsonbIteratorInit(&config->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *value;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (v.type == jbvString)
			value = pnstrdup(v.val.string.val, v.val.string.len);
		else if (v.type == jbvNumeric)
			value = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
		else if (v.type == jbvBool)
			value = v.val.boolean ? "true" : "false";
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid topic config"),
					 errdetail("At /%s: expected a string, number or boolean.", key)));
		if (rd_kafka_NewTopic_set_config(nt, key, value) != RD_KAFKA_RESP_ERR_NO_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid topic config"),
					 errdetail("At /%s: librdkafka refused the value.", key)));
	}
}

static int
admin_errcode(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
			return ERRCODE_DUPLICATE_OBJECT;
		case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
		case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
		case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
		case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
		case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
			return ERRCODE_CONNECTION_FAILURE;
		default:
			return ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
	}
}

/* Wait for the admin result in slices, so a cancel request works. */
static rd_kafka_event_t *
wait_admin_result(rd_kafka_queue_t *queue, const char *name)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ADMIN_TIMEOUT_MS);

	for (;;)
	{
		rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 100);

		if (ev != NULL)
			return ev;
		CHECK_FOR_INTERRUPTS();
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not create topic \"%s\"", name),
					 errdetail("The brokers at %s did not answer within %d seconds.", evc_brokers, ADMIN_TIMEOUT_MS / 1000)));
	}
}

static void
check_admin_result(rd_kafka_event_t *ev, const char *name)
{
	const rd_kafka_CreateTopics_result_t *res;
	const rd_kafka_topic_result_t **topics;
	size_t		n;
	rd_kafka_resp_err_t err = rd_kafka_event_error(ev);

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(admin_errcode(err)),
				 errmsg("could not create topic \"%s\"", name),
				 errdetail("%s: %s", rd_kafka_err2name(err), rd_kafka_event_error_string(ev)),
				 err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ?
				 errhint("The brokers do not support the CreateTopics API; create the topic with the Kafka tools.") :
				 err == RD_KAFKA_RESP_ERR__TIMED_OUT ?
				 errhint("Check evcollector.brokers. Brokers that do not offer the Admin API (librdkafka's mock cluster, for one) never name a controller and time out here; create the topic with the Kafka tools then.") : 0));
	res = rd_kafka_event_CreateTopics_result(ev);
	topics = rd_kafka_CreateTopics_result_topics(res, &n);
	for (size_t i = 0; i < n; i++)
	{
		err = rd_kafka_topic_result_error(topics[i]);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			ereport(ERROR,
					(errcode(admin_errcode(err)),
					 errmsg("could not create topic \"%s\"", name),
					 errdetail("%s: %s", rd_kafka_err2name(err),
							   rd_kafka_topic_result_error_string(topics[i]) ?
							   rd_kafka_topic_result_error_string(topics[i]) : rd_kafka_err2str(err))));
	}
}

/*
 * evc_create_topic(name text, partitions int, replication_factor int,
 *					config jsonb) returns void
 */
PG_FUNCTION_INFO_V1(evc_create_topic);
Datum
evc_create_topic(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		partitions = PG_GETARG_INT32(1);
	int32		rf = PG_GETARG_INT32(2);
	Jsonb	   *config = evc_arg_jsonb_or_null(fcinfo, 3);
	const char *why;
	char		errstr[512];
	rd_kafka_t *volatile rk = NULL;
	rd_kafka_NewTopic_t *volatile nt = NULL;
	rd_kafka_AdminOptions_t *volatile opts = NULL;
	rd_kafka_queue_t *volatile queue = NULL;
	rd_kafka_event_t *volatile ev = NULL;

	if (*name == '\0' || !evc_valid_topic_fragment(name, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid topic name \"%s\"", name),
				 errdetail("A Kafka topic name is not valid when %s.", *name ? why : "it is empty")));
	if (partitions < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions must be at least 1")));
	if (rf < -1 || rf == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("replication_factor must be positive, or -1 for the broker default")));

	PG_TRY();
	{
		/* The admin client adds nothing of its own to the shared settings. */
		rd_kafka_conf_t *conf = evc_kafka_conf_build("the Kafka admin client", NULL, NULL);

		rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
		if (rk == NULL)
		{
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not create kafka admin client"),
					 errdetail("%s", errstr)));
		}
		nt = rd_kafka_NewTopic_new(name, partitions, rf, errstr, sizeof(errstr));
		if (nt == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not create topic \"%s\"", name),
					 errdetail("%s", errstr)));
		if (config)
			add_topic_config(nt, config);
		opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
		rd_kafka_AdminOptions_set_request_timeout(opts, ADMIN_TIMEOUT_MS - 1000, errstr, sizeof(errstr));
		rd_kafka_AdminOptions_set_operation_timeout(opts, ADMIN_TIMEOUT_MS - 2000, errstr, sizeof(errstr));
		queue = rd_kafka_queue_new(rk);
		rd_kafka_CreateTopics(rk, (rd_kafka_NewTopic_t **) &nt, 1, opts, queue);
		ev = wait_admin_result(queue, name);
		check_admin_result(ev, name);
	}
	PG_FINALLY();
	{
		if (ev)
			rd_kafka_event_destroy(ev);
		if (queue)
			rd_kafka_queue_destroy(queue);
		if (opts)
			rd_kafka_AdminOptions_destroy(opts);
		if (nt)
			rd_kafka_NewTopic_destroy(nt);
		if (rk)
			rd_kafka_destroy(rk);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}

/* The error of a CreateTopics result for its one topic, with its text. */
static rd_kafka_resp_err_t
create_result_error(rd_kafka_event_t *ev, const char **text)
{
	const rd_kafka_topic_result_t **topics;
	size_t		n;
	rd_kafka_resp_err_t err = rd_kafka_event_error(ev);

	*text = rd_kafka_event_error_string(ev);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return err;
	topics = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
	if (n == 0)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	*text = rd_kafka_topic_result_error_string(topics[0]);
	return rd_kafka_topic_result_error(topics[0]);
}

/*
 * Do the brokers name a controller among themselves?  Those that do not
 * offer the Admin API (librdkafka's mock cluster names broker 0, which is
 * none of its brokers) would leave CreateTopics waiting for one.  Sets
 * *why when the brokers did not answer.
 */
static bool
controller_known(rd_kafka_t *rk, int timeout_ms, char **why)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;
	int32_t		id;
	bool		found = false;

	/*
	 * The topics this handle knows already, or none: nothing is created.
	 * One call for the whole timeout, not short ones with interrupt checks
	 * between them: librdkafka drops a broker's connection when a request
	 * times out, so against a slow broker (700 ms, librdkafka's mock) a
	 * sliced wait was never answered.
	 */
	err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		*why = psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
		return false;
	}
	id = rd_kafka_controllerid(rk, 0);
	for (int i = 0; i < md->broker_cnt; i++)
		found |= (md->brokers[i].id == id);
	rd_kafka_metadata_destroy(md);
	return found;
}

/*
 * Make sure topic name exists before anything is produced to it, creating
 * it compacted (one partition, the brokers' replication factor, segments
 * rolled every hour so that the cleaner can reach them) through
 * rk's Admin API.  An existing topic is left as it is.  Without this the
 * brokers would create it with their defaults (cleanup.policy=delete) when
 * the first record arrives.  For a worker: waits at most about timeout_ms,
 * checking for interrupts; on EVC_TOPIC_FAILED *why says why.
 */
EvcTopicEnsured
evc_kafka_ensure_compacted_topic(rd_kafka_t *rk, const char *name, int timeout_ms, char **why)
{
	char		errstr[512];
	rd_kafka_NewTopic_t *volatile nt = NULL;
	rd_kafka_AdminOptions_t *volatile opts = NULL;
	rd_kafka_queue_t *volatile queue = NULL;
	rd_kafka_event_t *volatile ev = NULL;
	volatile EvcTopicEnsured result = EVC_TOPIC_FAILED;

	*why = NULL;
	if (!controller_known(rk, timeout_ms, why))
		return *why ? EVC_TOPIC_FAILED : EVC_TOPIC_NO_ADMIN;
	PG_TRY();
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
		const char *text = NULL;
		rd_kafka_resp_err_t err;

		nt = rd_kafka_NewTopic_new(name, 1, -1, errstr, sizeof(errstr));
		if (nt == NULL ||
			rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact") != RD_KAFKA_RESP_ERR_NO_ERROR ||
			rd_kafka_NewTopic_set_config(nt, "segment.ms", COMPACTED_SEGMENT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
			*why = pstrdup(nt ? "librdkafka refused cleanup.policy=compact or segment.ms=" COMPACTED_SEGMENT_MS : errstr);
		else
		{
			opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
			rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof(errstr));
			queue = rd_kafka_queue_new(rk);
			rd_kafka_CreateTopics(rk, (rd_kafka_NewTopic_t **) &nt, 1, opts, queue);
			while ((ev = rd_kafka_queue_poll(queue, 100)) == NULL && GetCurrentTimestamp() < deadline)
				CHECK_FOR_INTERRUPTS();
			if (ev == NULL)
				*why = psprintf("The brokers did not answer within %d ms", timeout_ms);
			else if ((err = create_result_error(ev, &text)) == RD_KAFKA_RESP_ERR_NO_ERROR ||
					 err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
				result = EVC_TOPIC_READY;
			else
				*why = psprintf("%s: %s", rd_kafka_err2name(err), text ? text : rd_kafka_err2str(err));
		}
	}
	PG_FINALLY();
	{
		if (ev)
			rd_kafka_event_destroy(ev);
		if (queue)
			rd_kafka_queue_destroy(queue);
		if (opts)
			rd_kafka_AdminOptions_destroy(opts);
		if (nt)
			rd_kafka_NewTopic_destroy(nt);
	}
	PG_END_TRY();
	return result;
}
