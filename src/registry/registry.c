/*
 * registry.c
 *		The schema registry: evc.event_types, the per-backend cache of
 *		compiled validators, its invalidation, and the SQL functions
 *		evc_register_schema, evc_get_schema and evc_check_event.
 *
 * Cache: one entry per (client, event, version asked for), each in its own
 * memory context under CacheMemoryContext.  A statement trigger on
 * evc.event_types and evc.schema_documents sends a relcache invalidation
 * for the table (an INSERT alone sends none); our relcache callback only
 * marks the cache stale, and the next lookup drops it.  So a lookup hit
 * costs one hash probe: no SPI, no parsing, no compiling.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "core/guc.h"
#include "kafka/kafka.h"
#include "send/outbox.h"
#include "kafka/proto.h"
#include "registry/registry.h"

#define REGISTRY_KEY_LEN (2 * EVC_NAME_MAX + 16)

typedef struct RegistryEntry
{
	char		key[REGISTRY_KEY_LEN];	/* client \x01 event \x01 version */
	EvcEventType et;
	MemoryContext cxt;
} RegistryEntry;

static HTAB *registry_cache = NULL;
static bool registry_stale = false;
static Oid	event_types_oid = InvalidOid;
static Oid	schema_documents_oid = InvalidOid;

/* ---------- names ---------- */

/* A name as shown in a message: cut short, control characters replaced. */
static char *
shown_name(const char *name)
{
	char	   *s = pnstrdup(name, pg_mbcliplen(name, strlen(name), 120));

	for (char *p = s; *p; p++)
		if ((unsigned char) *p < 0x20)
			*p = '?';
	return s;
}

void
evc_check_name(const char *what, const char *name, bool dots_allowed)
{
	const char *why = NULL;
	size_t		len = strlen(name);

	if (len == 0)
		why = "it is empty";
	else if (len > EVC_NAME_MAX)
		why = psprintf("it is longer than %d characters", EVC_NAME_MAX);
	else
		for (const char *p = name; *p; p++)
			if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || (dots_allowed && *p == '.')))
			{
				why = dots_allowed ?
					"only ASCII letters, digits, \"_\", \"-\" and \".\" are allowed" :
					"only ASCII letters, digits, \"_\" and \"-\" are allowed";
				break;
			}
	if (why)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_NAME),
				 errmsg("invalid %s name \"%s\"", what, shown_name(name)),
				 errdetail("The name is not valid because %s.", why),
				 errhint("Names become part of the Kafka topic <topic_prefix><client>.<event_name>; a client name has no dots, so that topics cannot collide.")));
}

/* ---------- cache ---------- */

static void
registry_inval_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == event_types_oid || relid == schema_documents_oid ||
		!OidIsValid(event_types_oid))
		registry_stale = true;
}

static void
registry_reset(void)
{
	HASH_SEQ_STATUS seq;
	RegistryEntry *e;

	hash_seq_init(&seq, registry_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		MemoryContextDelete(e->cxt);
		hash_search(registry_cache, e->key, HASH_REMOVE, NULL);
	}
	event_types_oid = InvalidOid;
	schema_documents_oid = InvalidOid;
	registry_stale = false;
}

static void
registry_init(void)
{
	HASHCTL		ctl;

	if (registry_cache != NULL)
	{
		if (registry_stale)
			registry_reset();
		return;
	}
	ctl.keysize = REGISTRY_KEY_LEN;
	ctl.entrysize = sizeof(RegistryEntry);
	ctl.hcxt = evc_validate_cache_context();
	registry_cache = hash_create("evcollector event types", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(registry_inval_callback, (Datum) 0);
	evc_validate_define_gucs();
}

static Oid
registry_table(const char *name, bool missing_ok)
{
	Oid			nsp = get_namespace_oid("evc", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;

	if (!OidIsValid(rel) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evcollector schema registry is not installed"),
				 errhint("Run CREATE EXTENSION evcollector, or ALTER EXTENSION evcollector UPDATE.")));
	return rel;
}

/* Read one version from evc.event_types and compile it into a new entry. */
static RegistryEntry *
registry_load(const char *key, const char *client, const char *event_name, int32 version)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		args[3];
	MemoryContext volatile cxt = NULL;
	RegistryEntry *e = NULL;
	EvcEventType et;
	int			rc;
	Relation	rel;
	Oid			save_user;
	int			save_sec;

	args[0] = CStringGetTextDatum(client);
	args[1] = CStringGetTextDatum(event_name);
	args[2] = Int32GetDatum(version);
	/* read as the table owner: the registry's tables are not public */
	rel = table_open(event_types_oid, AccessShareLock);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(rel->rd_rel->relowner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	table_close(rel, NoLock);
	SPI_connect();
	rc = SPI_execute_with_args("SELECT id, version, topic, schema FROM evc.event_types "
							   "WHERE client = $1 AND event_name = $2 AND ($3 <= 0 OR version = $3) "
							   "ORDER BY version DESC LIMIT 1",
							   3, argtypes, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.event_types: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = CurrentMemoryContext;

		cxt = AllocSetContextCreate(evc_validate_cache_context(), "evcollector event type",
									ALLOCSET_SMALL_SIZES);
		PG_TRY();
		{
			MemoryContextSwitchTo(cxt);
			et.id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			et.version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
			et.topic = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
			et.schema = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
			et.client = pstrdup(client);
			et.event_name = pstrdup(event_name);
			MemoryContextSwitchTo(old);
			et.validator = evc_schema_compile(et.schema, NULL, cxt);
		}
		PG_CATCH();
		{
			/* The error may have come while cxt was current. */
			MemoryContextSwitchTo(old);
			MemoryContextDelete(cxt);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	if (cxt == NULL)
		return NULL;
	e = hash_search(registry_cache, key, HASH_ENTER, NULL);
	e->et = et;
	e->cxt = cxt;
	return e;
}

EvcEventType *
evc_registry_lookup_version(const char *client, const char *event_name, int32 version,
							bool missing_ok)
{
	char		key[REGISTRY_KEY_LEN];
	RegistryEntry *e;

	registry_init();
	if (!OidIsValid(event_types_oid))
	{
		event_types_oid = registry_table("event_types", false);
		schema_documents_oid = registry_table("schema_documents", true);
	}
	if (strlen(client) <= EVC_NAME_MAX && strlen(event_name) <= EVC_NAME_MAX)
	{
		snprintf(key, sizeof(key), "%s\x01%s\x01%d", client, event_name, Max(version, 0));
		e = hash_search(registry_cache, key, HASH_FIND, NULL);
		if (e == NULL)
			e = registry_load(key, client, event_name, version);
		if (e != NULL)
			return &e->et;
	}
	if (missing_ok)
		return NULL;
	if (version > 0)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_UNKNOWN_EVENT_TYPE),
				 errmsg("event type \"%s.%s\" has no version %d",
						shown_name(client), shown_name(event_name), version),
				 errhint("evc_list_events() shows the registered versions.")));
	ereport(ERROR,
			(errcode(EVC_ERRCODE_UNKNOWN_EVENT_TYPE),
			 errmsg("unknown event type \"%s.%s\"",
					shown_name(client), shown_name(event_name)),
			 errhint("Register a schema for it with evc_register_schema().")));
	return NULL;
}

EvcEventType *
evc_registry_lookup(const char *client, const char *event_name, bool missing_ok)
{
	return evc_registry_lookup_version(client, event_name, 0, missing_ok);
}

void
evc_registry_check_event(EvcEventType *et, Jsonb *event)
{
	EvcValidationError err;

	if (evc_validate_jsonb(et->validator, event, &err))
		return;
	ereport(ERROR,
			(errcode(EVC_ERRCODE_VALIDATION_FAILED),
			 errmsg("event does not match schema for \"%s.%s\" version %d",
					et->client, et->event_name, et->version),
			 errdetail("At %s: %s (keyword \"%s\", schema path %s).",
					   err.instance_path[0] ? err.instance_path : "the root",
					   err.message, err.keyword, err.schema_path)));
}

/* ---------- registration ---------- */

/*
 * Called once a new version is stored, in the same transaction: publish the
 * registration to the compacted topic <prefix>_evc_schemas, keyed
 * "client.event", through the outbox, so other servers can share the
 * registry and a rolled-back registration publishes nothing.
 */
static void
registry_publish_registration(int64 id, const char *client, const char *event_name,
							  int32 version, const char *topic, Jsonb *schema)
{
	char	   *key = psprintf("%s.%s", client, event_name);
	bytea	   *record;

	record = evc_encode_schema_record(client, event_name, version,
									  JsonbToCString(NULL, &schema->root, VARSIZE(schema)),
									  topic, evc_format_timestamp(GetCurrentTimestamp()),
									  GetUserNameFromId(GetSessionUserId(), false));
	evc_outbox_enqueue(evc_topic_name("_evc_schemas"), key, strlen(key), record,
					   evc_new_uuid(), version, EVC_CONTENT_TYPE_SCHEMA);
}

static const char *const compat_names[] = {"none", "backward", "forward", "full"};

static void
check_compatible(const char *client, const char *event_name, Jsonb *old_schema,
				 int32 old_version, EvcCompiledSchema *new_cs, EvcCompatibility mode)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "evcollector compat",
											  ALLOCSET_DEFAULT_SIZES);
	EvcCompiledSchema *old_cs = evc_schema_compile(old_schema, NULL, cxt);
	char	   *why;

	if (!evc_schema_compatible(old_cs, new_cs, mode, &why))
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INCOMPATIBLE_SCHEMA),
				 errmsg("schema for \"%s.%s\" is not %s compatible with version %d",
						client, event_name, compat_names[mode], old_version),
				 errdetail("%s.", why),
				 errhint("Keep the change compatible, or register it with compatibility => 'none' if every consumer is ready for it.")));
	MemoryContextDelete(cxt);
}

/*
 * Store a new version, or return the version that already has this exact
 * schema.  Runs as the owner of evc.event_types once the caller has been
 * found to be a member of evc_registry_admin, so that rows can only be
 * written through here (checked, numbered, compatible).
 */
int32
evc_registry_register(const char *client, const char *event_name, Jsonb *schema,
					  EvcCompatibility mode)
{
	Oid			admin = get_role_oid("evc_registry_admin", true);
	Oid			caller = GetUserId();
	Oid			save_user;
	int			save_sec;
	Oid			rel_oid;
	Relation	rel;
	char	   *topic;
	const char *why;
	EvcCompiledSchema *new_cs;
	Oid			argtypes[7] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, NAMEOID, INT4OID};
	Datum		args[7];
	int32		version = 0;
	bool		isnull;

	if (!OidIsValid(admin) || !has_privs_of_role(caller, admin))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to register schemas"),
				 errdetail("Only members of role \"evc_registry_admin\" may register schemas."),
				 errhint("Ask an administrator to GRANT evc_registry_admin TO your role.")));
	evc_check_name("client", client, false);
	evc_check_name("event", event_name, true);
	topic = psprintf("%s%s.%s", evc_topic_prefix ? evc_topic_prefix : "", client, event_name);
	if (!evc_valid_topic_fragment(topic, &why))
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_NAME),
				 errmsg("topic name \"%s\" is not valid", topic),
				 errdetail("The topic is not valid because %s.", why)));

	/* compile first (precise messages), then the meta-schema */
	new_cs = evc_schema_compile(schema, NULL, CurrentMemoryContext);
	evc_check_schema(schema);

	rel_oid = registry_table("event_types", false);
	rel = table_open(rel_oid, ShareRowExclusiveLock);	/* one registration at a time */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(rel->rd_rel->relowner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	table_close(rel, NoLock);

	args[0] = CStringGetTextDatum(client);
	args[1] = CStringGetTextDatum(event_name);
	args[2] = JsonbPGetDatum(schema);
	args[3] = CStringGetTextDatum(compat_names[mode]);
	args[4] = CStringGetTextDatum(topic);
	args[5] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(caller, false)));
	SPI_connect();
	if (SPI_execute_with_args("SELECT version FROM evc.event_types WHERE client = $1 AND event_name = $2 "
							  "AND schema = $3 ORDER BY version DESC LIMIT 1",
							  3, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.event_types");
	if (SPI_processed == 1)
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	else
	{
		int32		latest = 0;

		if (SPI_execute_with_args("SELECT version, schema FROM evc.event_types WHERE client = $1 "
								  "AND event_name = $2 ORDER BY version DESC LIMIT 1",
								  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read evc.event_types");
		if (SPI_processed == 1)
		{
			latest = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			if (mode != EVC_COMPAT_NONE)
				check_compatible(client, event_name,
								 DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)),
								 latest, new_cs, mode);
		}
		args[6] = Int32GetDatum(latest + 1);
		if (SPI_execute_with_args("INSERT INTO evc.event_types "
								  "(client, event_name, schema, compatibility, topic, created_by, version) "
								  "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
								  7, argtypes, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not insert into evc.event_types");
		version = latest + 1;
		registry_publish_registration(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)),
									  client, event_name, version, topic, schema);
	}
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	return version;
}

/* ---------- SQL ---------- */

static EvcCompatibility
parse_compatibility(const char *s)
{
	for (int i = 0; i < lengthof(compat_names); i++)
		if (pg_strcasecmp(s, compat_names[i]) == 0)
			return (EvcCompatibility) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid compatibility mode \"%s\"", s),
			 errhint("Use none, backward, forward or full.")));
	return EVC_COMPAT_NONE;
}

PG_FUNCTION_INFO_V1(evc_register_schema);
Datum
evc_register_schema(PG_FUNCTION_ARGS)
{
	char	   *client = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *event_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *schema = PG_GETARG_JSONB_P(2);
	EvcCompatibility mode = parse_compatibility(text_to_cstring(PG_GETARG_TEXT_PP(3)));

	PG_RETURN_INT32(evc_registry_register(client, event_name, schema, mode));
}

PG_FUNCTION_INFO_V1(evc_get_schema);
Datum
evc_get_schema(PG_FUNCTION_ARGS)
{
	char	   *client = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *event_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		version = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	EvcEventType *et;

	if (!PG_ARGISNULL(2) && version <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema version must be positive, not %d", version)));
	et = evc_registry_lookup_version(client, event_name, version, false);
	PG_RETURN_JSONB_P(DatumGetJsonbPCopy(JsonbPGetDatum(et->schema)));
}

/* evc_check_event(client, event_name, event, version): the check evc_send makes. */
PG_FUNCTION_INFO_V1(evc_check_event);
Datum
evc_check_event(PG_FUNCTION_ARGS)
{
	char	   *client = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *event_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *event = PG_GETARG_JSONB_P(2);
	int32		version = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	EvcEventType *et = evc_registry_lookup_version(client, event_name, version, false);

	evc_registry_check_event(et, event);
	PG_RETURN_INT32(et->version);
}

/* Statement trigger on the registry tables: make every backend drop its cache. */
PG_FUNCTION_INFO_V1(evc_registry_changed);
Datum
evc_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evc_registry_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
