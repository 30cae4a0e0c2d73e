/*
 * gateway/registry_confluent.c
 *		Owns the handlers of the Confluent Schema Registry REST subset:
 *		subjects and their versions, registration and lookup, schemas by
 *		global id, config (compatibility levels) and the compatibility
 *		check, with Confluent's answers and error codes, for JSON Schema.
 *
 * A subject is "<client>.<event>-value"; its versions are the registry's
 * versions of client.event, and a schema's global id is the version's
 * evc.event_types.id.  Every handler runs under evc_reg_run, so the
 * registry's own ERRORs become Confluent error bodies.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "gateway/registry_int.h"
#include "registry/registry.h"

/* Confluent's levels, lower-cased as evc.registry_config keeps them. */
static const char *const levels[] = {
	"none", "backward", "forward", "full",
	"backward_transitive", "forward_transitive", "full_transitive"
};

static void
subject_not_found(EvcRegCall *call)
{
	evc_reg_fail(call, 404, EVC_REG_SUBJECT_NOT_FOUND, "unknown_event_type",
				 "Subject '%s' not found.", call->subject);
}

/*
 * The schema of a registration, lookup or compatibility request:
 * {"schema": "<JSON text>", "schemaType": "JSON", "references": []}.
 * schemaType may be left out (this registry keeps JSON Schema only).
 */
static Jsonb *
request_schema(EvcRegCall *call)
{
	Jsonb	   *body = evc_reg_parse_json(call->req->body, call->req->body_len);
	JsonbValue *schema = NULL;
	JsonbValue *type = NULL;
	JsonbValue *refs = NULL;
	Jsonb	   *parsed;

	call->in_schema = true;		/* what is wrong from here on is the schema */
	if (JB_ROOT_IS_OBJECT(body))
	{
		schema = getKeyJsonValueFromContainer(&body->root, "schema", 6, NULL);
		type = getKeyJsonValueFromContainer(&body->root, "schemaType", 10, NULL);
		refs = getKeyJsonValueFromContainer(&body->root, "references", 10, NULL);
	}
	if (schema == NULL || schema->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the request has no schema"),
				 errdetail("Send {\"schema\": \"<the JSON Schema as a string>\", \"schemaType\": \"JSON\"}.")));
	if (type && !(type->type == jbvNull ||
				  (type->type == jbvString && type->val.string.len == 4 &&
				   strncmp(type->val.string.val, "JSON", 4) == 0)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("schemaType must be \"JSON\""),
				 errdetail("This registry keeps JSON Schema (draft-07) only.")));
	if (refs && !(refs->type == jbvNull ||
				  (refs->type == jbvBinary && JsonContainerSize(refs->val.binary.data) == 0)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("schema references are not supported"),
				 errdetail("Use a \"$ref\" to a document of evc.schema_documents instead.")));
	parsed = evc_reg_parse_json(schema->val.string.val, schema->val.string.len);
	call->in_schema = false;
	return parsed;
}

/* GET /subjects: the subjects the caller's client may see. */
void
evc_reg_subjects(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {0};
	char		nulls[1] = {'n'};

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	if (call->req->client)
	{
		values[0] = CStringGetTextDatum(call->req->client);
		nulls[0] = ' ';
	}
	evc_reg_ok(call, 200,
			   evc_reg_query(&plan,
							 "SELECT coalesce(json_agg(s ORDER BY s), '[]')::text FROM "
							 "(SELECT DISTINCT client || '.' || event_name || '-value' AS s "
							 "FROM evc.event_types WHERE $1::text IS NULL OR client = $1) t",
							 1, types, values, nulls));
}

/* GET /subjects/{subject}/versions */
void
evc_reg_versions(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	char	   *json;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	json = evc_reg_version_query(&plan,
								 "SELECT json_agg(version ORDER BY version)::text FROM evc.event_types "
								 "WHERE client = $1 AND event_name = $2 AND $3 = 0",
								 call, 0);
	if (json == NULL)
		subject_not_found(call);
	else
		evc_reg_ok(call, 200, json);
}

/* The answer to a version that was not found: the subject or the version. */
static void
version_not_found(EvcRegCall *call)
{
	if (!evc_reg_subject_exists(call->client, call->event))
		subject_not_found(call);
	else
		evc_reg_fail(call, 404, EVC_REG_VERSION_NOT_FOUND, "unknown_version",
					 "Version %s not found.", call->arg);
}

#define VERSION_ROW_SQL(select) \
	"SELECT " select " FROM evc.event_types WHERE client = $1 AND event_name = $2 " \
	"AND ($3 = 0 OR version = $3) ORDER BY version DESC LIMIT 1"

/*
 * The answer to GET of one version, or of its schema alone: the row the
 * version names (or the latest), or which of subject and version is missing.
 */
static void
answer_version_row(EvcRegCall *call, SPIPlanPtr *plan, const char *sql)
{
	bool		ok;
	int32		version;
	char	   *json;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	version = evc_reg_parse_version(call, call->arg, &ok);
	if (!ok)
		return;
	json = evc_reg_version_query(plan, sql, call, version);
	if (json == NULL)
		version_not_found(call);
	else
		evc_reg_ok(call, 200, json);
}

/* GET /subjects/{subject}/versions/{version|latest} */
void
evc_reg_version(EvcRegCall *call)
{
	static SPIPlanPtr plan;

	answer_version_row(call, &plan,
					   VERSION_ROW_SQL("json_build_object('subject', client || '.' || event_name || '-value', "
									   "'id', id, 'version', version, 'schemaType', 'JSON', "
									   "'schema', schema::text)::text"));
}

/* GET /subjects/{subject}/versions/{version|latest}/schema: the schema alone. */
void
evc_reg_version_schema(EvcRegCall *call)
{
	static SPIPlanPtr plan;

	answer_version_row(call, &plan, VERSION_ROW_SQL("schema::text"));
}

/*
 * POST /subjects/{subject}/versions: register.  An identical schema
 * answers the id it already has; the subject's level decides the check.
 */
void
evc_reg_register_version(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	Jsonb	   *schema;
	int32		version;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_ADMIN))
		return;
	schema = request_schema(call);
	version = evc_reg_register(call, schema);
	evc_reg_ok(call, 200,
			   evc_reg_version_query(&plan, VERSION_ROW_SQL("json_build_object('id', id)::text"),
									 call, version));
}

/* POST /subjects/{subject}: which version of the subject has this schema. */
void
evc_reg_lookup(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3];
	char	   *json;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	values[2] = JsonbPGetDatum(request_schema(call));
	values[0] = CStringGetTextDatum(call->client);
	values[1] = CStringGetTextDatum(call->event);
	json = evc_reg_query(&plan,
						 "SELECT json_build_object('subject', client || '.' || event_name || '-value', "
						 "'id', id, 'version', version, 'schemaType', 'JSON', 'schema', schema::text)::text "
						 "FROM evc.event_types WHERE client = $1 AND event_name = $2 AND schema = $3 "
						 "ORDER BY version DESC LIMIT 1",
						 3, types, values, NULL);
	if (json)
		evc_reg_ok(call, 200, json);
	else if (!evc_reg_subject_exists(call->client, call->event))
		subject_not_found(call);
	else
		evc_reg_fail(call, 404, EVC_REG_SCHEMA_NOT_FOUND, "unknown_schema", "Schema not found");
}

/* GET /schemas/ids/{id}: a version by its global id. */
void
evc_reg_schema_by_id(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {0};
	char		nulls[2] = {' ', 'n'};
	char	   *end;
	long long	id;
	char	   *json = NULL;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	errno = 0;
	id = strtoll(call->arg, &end, 10);
	if (errno == 0 && end != call->arg && *end == '\0' && id > 0)
	{
		values[0] = Int64GetDatum((int64) id);
		if (call->req->client)
		{
			values[1] = CStringGetTextDatum(call->req->client);
			nulls[1] = ' ';
		}
		json = evc_reg_query(&plan,
							 "SELECT json_build_object('schemaType', 'JSON', 'schema', schema::text)::text "
							 "FROM evc.event_types WHERE id = $1 AND ($2::text IS NULL OR client = $2)",
							 2, types, values, nulls);
	}
	if (json)
		evc_reg_ok(call, 200, json);
	else
		evc_reg_fail(call, 404, EVC_REG_SCHEMA_NOT_FOUND, "unknown_schema",
					 "Schema %s not found", call->arg);
}

/* GET /schemas/types */
void
evc_reg_schema_types(EvcRegCall *call)
{
	if (evc_reg_permitted(call, EVC_GW_ROLE_READ))
		evc_reg_ok(call, 200, "[\"JSON\"]");
}

/*
 * GET /config and /config/{subject}.  A subject with no level of its own
 * answers 40408, as Confluent's does, unless ?defaultToGlobal=true.
 */
void
evc_reg_get_config(EvcRegCall *call)
{
	static SPIPlanPtr global_plan,
				subject_plan;
	char	   *json = NULL;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	if (call->client)
		json = evc_reg_version_query(&subject_plan,
									 "SELECT json_build_object('compatibilityLevel', upper(compatibility))::text "
									 "FROM evc.registry_config WHERE client = $1 AND event_name = $2 AND $3 = 0",
									 call, 0);
	if (json == NULL && call->subject && !evc_reg_query_flag(call->req->query, "defaultToGlobal"))
	{
		evc_reg_fail(call, 404, EVC_REG_NO_SUBJECT_CONFIG, "no_subject_config",
					 "Subject '%s' does not have subject-level compatibility configured", call->subject);
		return;
	}
	if (json == NULL)
		json = evc_reg_query(&global_plan,
							 "SELECT json_build_object('compatibilityLevel', upper(coalesce("
							 "(SELECT compatibility FROM evc.registry_config WHERE client IS NULL), 'backward')))::text",
							 0, NULL, NULL, NULL);
	evc_reg_ok(call, 200, json);
}

/* The level a PUT /config asks for, lower-cased, or NULL (answered 42203). */
static const char *
requested_level(EvcRegCall *call)
{
	Jsonb	   *body = evc_reg_parse_json(call->req->body, call->req->body_len);
	JsonbValue *v = JB_ROOT_IS_OBJECT(body)
		? getKeyJsonValueFromContainer(&body->root, "compatibility", 13, NULL) : NULL;

	if (v && v->type == jbvString)
	{
		char	   *want = pnstrdup(v->val.string.val, v->val.string.len);

		for (int i = 0; i < lengthof(levels); i++)
			if (pg_strcasecmp(want, levels[i]) == 0)
				return levels[i];
	}
	evc_reg_fail(call, 422, EVC_REG_INVALID_COMPAT, "invalid_compatibility",
				 "Invalid compatibility level. Valid values are none, backward, backward_transitive, "
				 "forward, forward_transitive, full, and full_transitive");
	return NULL;
}

/* PUT /config and /config/{subject}: set a level. */
void
evc_reg_put_config(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3] = {0};
	char		nulls[3] = {'n', 'n', ' '};
	const char *level;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_ADMIN))
		return;
	if (call->subject && !call->client)
	{
		evc_reg_fail(call, 422, EVC_REG_INVALID_SUBJECT, "invalid_name",
					 "Subject '%s' is not valid: subjects are named <client>.<event>-value", call->subject);
		return;
	}
	if ((level = requested_level(call)) == NULL)
		return;
	if (call->client)
	{
		evc_check_name("client", call->client, false);
		evc_check_name("event", call->event, true);
		values[0] = CStringGetTextDatum(call->client);
		values[1] = CStringGetTextDatum(call->event);
		nulls[0] = nulls[1] = ' ';
	}
	values[2] = CStringGetTextDatum(level);
	evc_reg_ok(call, 200,
			   evc_reg_query(&plan,
							 "INSERT INTO evc.registry_config (client, event_name, compatibility) "
							 "VALUES ($1, $2, $3) ON CONFLICT (client, event_name) DO UPDATE "
							 "SET compatibility = excluded.compatibility, updated_at = now(), "
							 "updated_by = current_user "
							 "RETURNING json_build_object('compatibility', upper(compatibility))::text",
							 3, types, values, nulls));
}

/* DELETE /config/{subject}: back to the global level; answers the old one. */
void
evc_reg_delete_config(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	char	   *json = NULL;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_ADMIN))
		return;
	if (call->client)
		json = evc_reg_version_query(&plan,
									 "DELETE FROM evc.registry_config WHERE client = $1 AND event_name = $2 "
									 "AND $3 = 0 RETURNING json_build_object('compatibilityLevel', upper(compatibility))::text",
									 call, 0);
	if (json)
		evc_reg_ok(call, 200, json);
	else
		evc_reg_fail(call, 404, EVC_REG_NO_SUBJECT_CONFIG, "no_subject_config",
					 "Subject '%s' does not have subject-level compatibility configured", call->subject);
}

/*
 * POST /compatibility/subjects/{subject}/versions/{version|latest}:
 * whether the schema could be registered after that version, under the
 * subject's level.  ?verbose=true adds the reason.
 */
void
evc_reg_compatibility(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	StringInfoData buf;
	Jsonb	   *schema;
	bool		ok;
	int32		version;
	char	   *why = NULL;
	char	   *stored;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	version = evc_reg_parse_version(call, call->arg, &ok);
	if (!ok)
		return;
	schema = request_schema(call);
	stored = evc_reg_version_query(&plan, VERSION_ROW_SQL("version::text"), call, version);
	if (stored == NULL)
	{
		version_not_found(call);
		return;
	}
	ok = evc_reg_compatible_with(call, schema, pg_strtoint32(stored),
								 evc_reg_effective_level(call->client, call->event), &why);
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"is_compatible\": %s", ok ? "true" : "false");
	if (evc_reg_query_flag(call->req->query, "verbose"))
	{
		appendStringInfoString(&buf, ", \"messages\": [");
		if (why)
			escape_json(&buf, why);
		appendStringInfoChar(&buf, ']');
	}
	appendStringInfoChar(&buf, '}');
	evc_reg_ok(call, 200, buf.data);
}
