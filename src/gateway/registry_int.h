/*
 * gateway/registry_int.h: what the schema-registry route files share
 * (routes_registry.c, registry_guard.c, registry_store.c,
 * registry_confluent.c, registry_seed.c).  Not for use outside them.
 *
 * Two faces of one registry: the Confluent Schema Registry REST subset
 * (subjects "<client>.<event>-value", error bodies {"error_code",
 * "message"}) and the seed event gateway's routes (/<client>/<event>/...,
 * error bodies {"error": {"code", "message"}}).  Both read and write
 * evc.event_types through the registry's SQL functions and the registry
 * config table evc.registry_config.
 */
#ifndef EVC_GATEWAY_REGISTRY_INT_H
#define EVC_GATEWAY_REGISTRY_INT_H

#include "executor/spi.h"
#include "utils/jsonb.h"

#include "gateway/http.h"

#define EVC_REG_CONTENT_TYPE "application/vnd.schemaregistry.v1+json"

/* Confluent's own error codes (its RestException subclasses). */
#define EVC_REG_SUBJECT_NOT_FOUND	40401
#define EVC_REG_VERSION_NOT_FOUND	40402
#define EVC_REG_SCHEMA_NOT_FOUND	40403
#define EVC_REG_NO_SUBJECT_CONFIG	40408
#define EVC_REG_INVALID_SCHEMA		42201
#define EVC_REG_INVALID_VERSION		42202
#define EVC_REG_INVALID_COMPAT		42203
#define EVC_REG_INVALID_SUBJECT		42208
#define EVC_REG_BACKEND_ERROR		50001

/* One request to one registry route, as the route table parsed it. */
typedef struct EvcRegCall
{
	const EvcHttpRequest *req;
	EvcHttpResponse *resp;
	bool		confluent;		/* Confluent error bodies and content type */
	const char *subject;		/* the subject as sent (Confluent routes) */
	const char *client;			/* from the path or the subject, or NULL */
	const char *event;
	const char *arg;			/* a version or an id, as sent */
	bool		in_schema;		/* parsing the schema text itself */
} EvcRegCall;

typedef void (*EvcRegHandler) (EvcRegCall *call);

/* registry_guard.c */
extern void evc_reg_run(EvcRegHandler handler, EvcRegCall *call);
extern bool evc_reg_permitted(EvcRegCall *call, EvcGwRole need);
extern void evc_reg_fail(EvcRegCall *call, int status, int registry_code,
						 const char *code, const char *fmt,...) pg_attribute_printf(5, 6);
extern void evc_reg_ok(EvcRegCall *call, int status, const char *json);
extern Jsonb *evc_reg_parse_json(const char *text, size_t len);
extern const char *evc_reg_query_param(const char *query, const char *name);
extern bool evc_reg_query_flag(const char *query, const char *name);
extern bool evc_reg_parse_subject(const char *subject, char **client, char **event);

/* registry_store.c */
extern char *evc_reg_query(SPIPlanPtr *slot, const char *sql, int nargs,
						   Oid *argtypes, Datum *values, const char *nulls);
extern bool evc_reg_subject_exists(const char *client, const char *event);
extern int32 evc_reg_parse_version(EvcRegCall *call, const char *text, bool *ok);
extern char *evc_reg_effective_level(const char *client, const char *event);
extern int32 evc_reg_register(EvcRegCall *call, Jsonb *schema);
extern char *evc_reg_version_query(SPIPlanPtr *slot, const char *sql, EvcRegCall *call,
								   int32 version);
extern bool evc_reg_compatible_with(EvcRegCall *call, Jsonb *schema, int32 version,
									const char *level, char **why);

/* registry_confluent.c: the Confluent Schema Registry handlers */
extern void evc_reg_subjects(EvcRegCall *call);
extern void evc_reg_versions(EvcRegCall *call);
extern void evc_reg_version(EvcRegCall *call);
extern void evc_reg_version_schema(EvcRegCall *call);
extern void evc_reg_register_version(EvcRegCall *call);
extern void evc_reg_lookup(EvcRegCall *call);
extern void evc_reg_schema_by_id(EvcRegCall *call);
extern void evc_reg_schema_types(EvcRegCall *call);
extern void evc_reg_get_config(EvcRegCall *call);
extern void evc_reg_put_config(EvcRegCall *call);
extern void evc_reg_delete_config(EvcRegCall *call);
extern void evc_reg_compatibility(EvcRegCall *call);

/* registry_seed.c: the seed event gateway's handlers */
extern void evc_reg_seed_register(EvcRegCall *call);
extern void evc_reg_seed_schema(EvcRegCall *call);
extern void evc_reg_seed_list(EvcRegCall *call);

#endif							/* EVC_GATEWAY_REGISTRY_INT_H */
