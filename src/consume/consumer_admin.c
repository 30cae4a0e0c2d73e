/*
 * consumer_admin.c
 *		Owns the SQL functions that manage consumers: evc_consumer_create,
 *		evc_consumer_drop, evc_consumer_enable and evc_consumer_disable.
 *
 * They check everything a worker would otherwise trip over later (names,
 * topics, sink, options and librdkafka properties), change
 * evc.consumer_defs, and wake the launcher at commit, so a change takes
 * effect at once and a rolled-back change does nothing.
 */
#include "postgres.h"

#include <ctype.h>

#include <librdkafka/rdkafka.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "core/guc.h"
#include "core/shmem.h"

#define CONSUMER_NAME_MAX 63

static void
check_consumer_name(const char *name)
{
	const char *why;

	if (name[0] == '\0' || strlen(name) > CONSUMER_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid consumer name \"%s\"", name),
				 errdetail("A consumer name has 1 to %d characters.", CONSUMER_NAME_MAX)));
	if (!evc_valid_topic_fragment(name, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid consumer name \"%s\"", name),
				 errdetail("The name becomes part of the consumer group id: %s.", why)));
}

/* Topic names, or regular expressions starting with ^ as librdkafka takes. */
static void
check_topics(ArrayType *topics)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(topics) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("topics must be a one-dimensional array")));
	deconstruct_array(topics, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a consumer needs at least one topic")));
	for (int i = 0; i < n; i++)
	{
		char	   *t;
		const char *why;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("topics must not contain NULL")));
		t = TextDatumGetCString(elems[i]);
		if (t[0] == '^')
		{
			for (const char *p = t; *p; p++)
				if (isspace((unsigned char) *p))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid topic pattern \"%s\"", t),
							 errdetail("Topic patterns cannot contain white space.")));
		}
		else if (t[0] == '\0' || !evc_valid_topic_fragment(t, &why))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid topic name \"%s\"", t),
					 t[0] == '\0' ? errdetail("The name is empty.") : errdetail("The name is not valid in Kafka: %s.", why),
					 errhint("Start a regular expression with ^, as in '^prefix\\..*'.")));
	}
}

static void
check_int_option(const char *key, const char *type, const char *value, int flags, int max)
{
	int			result;
	const char *hint = NULL;

	if ((strcmp(type, "number") != 0 && strcmp(type, "string") != 0) ||
		!parse_int(value, &result, flags, &hint) || result <= 0 || result > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for consumer option \"%s\": %s", key, value),
				 errdetail("It must be a positive integer%s, at most %d.",
						   flags == GUC_UNIT_MS ? " of milliseconds or a duration such as '5s'" :
						   flags == GUC_UNIT_KB ? " of kilobytes or a size such as '16MB'" : "",
						   max)));
}

static void
check_kafka_option(Jsonb *options)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	Datum		arg = JsonbPGetDatum(options);
	Oid			type = JSONBOID;
	char		errstr[256];

	if (SPI_execute_with_args("SELECT key, value, jsonb_typeof($1->'kafka') FROM jsonb_each_text("
							  "CASE jsonb_typeof($1->'kafka') WHEN 'object' THEN $1->'kafka' ELSE '{}' END)",
							  1, &type, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read option kafka");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *value = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		if (value == NULL || rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		{
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("librdkafka refused property \"%s\" in consumer option \"kafka\"", key),
					 errdetail("%s", value == NULL ? "The value is null." : errstr)));
		}
	}
	rd_kafka_conf_destroy(conf);
}

/* Options are a JSON object of known keys with values of the right type. */
static void
check_options(Jsonb *options, const char *sink)
{
	Datum		arg = JsonbPGetDatum(options);
	Oid			type = JSONBOID;
	SPITupleTable *tt;
	uint64		n;

	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer options must be a JSON object")));
	if (SPI_execute_with_args("SELECT key, jsonb_typeof(value), value #>> '{}' FROM jsonb_each($1)",
							  1, &type, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read consumer options");
	tt = SPI_tuptable;
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		char	   *key = SPI_getvalue(tt->vals[i], tt->tupdesc, 1);
		char	   *vtype = SPI_getvalue(tt->vals[i], tt->tupdesc, 2);
		char	   *value = SPI_getvalue(tt->vals[i], tt->tupdesc, 3);

		if (strcmp(key, "group_id") == 0)
		{
			if (strcmp(vtype, "string") != 0 || value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("consumer option \"group_id\" must be a non-empty string")));
		}
		else if (strcmp(key, "batch_size") == 0)
			check_int_option(key, vtype, value, 0, 1000000);
		else if (strcmp(key, "flush_interval") == 0)
			check_int_option(key, vtype, value, GUC_UNIT_MS, 3600 * 1000);
		else if (strcmp(key, "max_file_size") == 0)
			check_int_option(key, vtype, value, GUC_UNIT_KB, 1024 * 1024);
		else if (strcmp(key, "queued_max_kbytes") == 0)
			check_int_option(key, vtype, value, 0, 2097151);
		else if (strcmp(key, "gzip") == 0)
		{
			if (strcmp(vtype, "boolean") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("consumer option \"gzip\" must be true or false")));
			if (strcmp(sink, "archive") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("consumer option \"gzip\" applies to the archive sink only")));
		}
		else if (strcmp(key, "auto_offset_reset") == 0)
		{
			if (strcmp(vtype, "string") != 0 ||
				(strcmp(value, "earliest") != 0 && strcmp(value, "latest") != 0))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("consumer option \"auto_offset_reset\" must be \"earliest\" or \"latest\"")));
		}
		else if (strcmp(key, "kafka") == 0)
		{
			if (strcmp(vtype, "object") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("consumer option \"kafka\" must be an object of librdkafka properties")));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown consumer option \"%s\"", key),
					 errhint("Known options are group_id, batch_size, flush_interval, max_file_size, gzip, auto_offset_reset, queued_max_kbytes and kafka.")));
	}
	check_kafka_option(options);
}

static void
wake_launcher(void)
{
	if (evc_shmem_attached())
		evc_wake_at_commit(EVC_WORKER_LAUNCHER);
}

PG_FUNCTION_INFO_V1(evc_consumer_create);
Datum
evc_consumer_create(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *sink;
	Jsonb	   *options;
	Oid			types[4] = {TEXTOID, TEXTARRAYOID, TEXTOID, JSONBOID};
	Datum		values[4];
	bool		isnull;
	int32		id;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("consumer name, topics and sink must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	sink = text_to_cstring(PG_GETARG_TEXT_PP(2));
	options = PG_ARGISNULL(3) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
		: PG_GETARG_JSONB_P(3);

	check_consumer_name(name);
	check_topics(PG_GETARG_ARRAYTYPE_P(1));
	if (strcmp(sink, "archive") != 0 && strcmp(sink, "images") != 0 && strcmp(sink, "table") != 0 &&
		strcmp(sink, "aggregates") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown sink \"%s\"", sink),
				 errhint("Use archive, images, table or aggregates.")));

	SPI_connect();
	check_options(options, sink);
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT 1 FROM evc.consumer_defs WHERE name = $1",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.consumer_defs");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("consumer \"%s\" already exists", name)));
	values[1] = PG_GETARG_DATUM(1);
	values[2] = CStringGetTextDatum(sink);
	values[3] = JsonbPGetDatum(options);
	if (SPI_execute_with_args("INSERT INTO evc.consumer_defs (name, topics, sink, options) "
							  "VALUES ($1, $2, $3, $4) RETURNING id",
							  4, types, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into evc.consumer_defs");
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	wake_launcher();
	PG_RETURN_INT32(id);
}

/* Run one statement on the named consumer; it must exist. */
static void
change_consumer(const char *name, const char *sql)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	int			rc;

	SPI_connect();
	rc = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "could not change consumer \"%s\": %s", name, SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer \"%s\" does not exist", name)));
	SPI_finish();
	wake_launcher();
}

/*
 * Dropping a consumer also forgets the landed offsets of its group, unless
 * another consumer still uses the group.  Landed data stays.
 */
PG_FUNCTION_INFO_V1(evc_consumer_drop);
Datum
evc_consumer_drop(PG_FUNCTION_ARGS)
{
	change_consumer(text_to_cstring(PG_GETARG_TEXT_PP(0)),
					"WITH gone AS (DELETE FROM evc.consumer_defs WHERE name = $1 "
					"  RETURNING coalesce(options->>'group_id', 'evcollector.' || name) AS group_id), "
					"forgotten AS (DELETE FROM evc.consumer_offsets o USING gone "
					"  WHERE o.group_id = gone.group_id AND NOT EXISTS (SELECT FROM evc.consumer_defs c "
					"    WHERE c.name <> $1 AND coalesce(c.options->>'group_id', 'evcollector.' || c.name) = gone.group_id)) "
					"SELECT * FROM gone");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(evc_consumer_enable);
Datum
evc_consumer_enable(PG_FUNCTION_ARGS)
{
	change_consumer(text_to_cstring(PG_GETARG_TEXT_PP(0)),
					"UPDATE evc.consumer_defs SET enabled = true WHERE name = $1");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(evc_consumer_disable);
Datum
evc_consumer_disable(PG_FUNCTION_ARGS)
{
	change_consumer(text_to_cstring(PG_GETARG_TEXT_PP(0)),
					"UPDATE evc.consumer_defs SET enabled = false WHERE name = $1");
	PG_RETURN_VOID();
}
