/*
 * gateway/registry_seed.c
 *		Owns the seed event gateway's registry routes:
 *		POST /<client>/<event>/register_event (the body is the JSON Schema),
 *		GET /<client>/<event>/schema and GET /<client>/list_events.
 *
 * They are the registry's SQL functions over HTTP: register_event is
 * evc_register_schema() under the subject's compatibility level (the same
 * level the Confluent routes use), schema is evc_get_schema(), list_events
 * is evc_list_events().  Errors are {"error": {"code", "message"}}.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "gateway/registry_int.h"

/* POST /<client>/<event>/register_event */
void
evc_reg_seed_register(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	Jsonb	   *schema;
	int32		version;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_ADMIN))
		return;
	call->in_schema = true;
	schema = evc_reg_parse_json(call->req->body, call->req->body_len);
	call->in_schema = false;
	version = evc_reg_register(call, schema);
	evc_reg_ok(call, 200,
			   evc_reg_version_query(&plan,
									 "SELECT json_build_object('client', client, 'event', event_name, "
									 "'version', version, 'id', id, 'topic', topic, "
									 "'compatibility', compatibility)::text "
									 "FROM evc.event_types WHERE client = $1 AND event_name = $2 AND version = $3",
									 call, version));
}

/* GET /<client>/<event>/schema[?version=N]: the schema itself. */
void
evc_reg_seed_schema(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	const char *v = evc_reg_query_param(call->req->query, "version");
	int32		version = 0;
	char	   *json;

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	if (v)
	{
		bool		ok;

		call->arg = v;
		version = evc_reg_parse_version(call, v, &ok);
		if (!ok)
			return;
	}
	json = evc_reg_version_query(&plan,
								 "SELECT evc_get_schema($1, $2, nullif($3, 0))::text",
								 call, version);
	/* evc_get_schema raises EVS05 (404) for an unknown type or version */
	evc_reg_ok(call, 200, json);
}

/* GET /<client>/list_events */
void
evc_reg_seed_list(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(call->client)};

	if (!evc_reg_permitted(call, EVC_GW_ROLE_READ))
		return;
	evc_reg_ok(call, 200,
			   evc_reg_query(&plan,
							 "SELECT json_build_object('client', $1::text, 'events', coalesce(json_agg("
							 "json_build_object('event', event_name, 'version', latest_version, "
							 "'versions', versions, 'topic', topic, 'compatibility', compatibility, "
							 "'created_at', created_at) ORDER BY event_name), '[]'))::text "
							 "FROM evc_list_events($1)",
							 1, types, values, NULL));
}
