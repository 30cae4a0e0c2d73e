/*
 * gateway/registry_store.c
 *		Owns what the registry routes read and write in the database:
 *		kept SPI plans over evc.event_types and evc.registry_config,
 *		registration through evc_register_schema(), the effective
 *		compatibility level of a subject, and the compatibility check of a
 *		candidate schema against a stored version.
 *
 * The routes answer JSON built by PostgreSQL itself (json_build_object,
 * json_agg), so every string is escaped by the server's own JSON output.
 *
 * Compatibility levels are Confluent's names for the registry's modes:
 * NONE, BACKWARD, FORWARD and FULL are none, backward, forward and full
 * (checked against the latest version, as evc_register_schema does); the
 * _TRANSITIVE levels check the same mode against every stored version.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "gateway/registry_int.h"
#include "registry/registry.h"
#include "util/spi_plans.h"

/*
 * Run a kept plan and return the first column of its first row as text,
 * in the caller's memory context; NULL when there is no row or the value is
 * NULL.  Connects to SPI and finishes around the one statement.
 */
char *
evc_reg_query(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes,
			  Datum *values, const char *nulls)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *result = NULL;
	SPIPlanPtr	plan;
	int			rc;

	SPI_connect();
	plan = evc_spi_kept_plan(slot, sql, nargs, argtypes);
	rc = SPI_execute_plan(plan, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan returned %s for \"%s\"", SPI_result_code_string(rc), sql);
	if (SPI_processed > 0 && SPI_tuptable != NULL)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v)
			result = MemoryContextStrdup(cxt, v);
	}
	SPI_finish();
	MemoryContextSwitchTo(cxt);
	return result;
}

bool
evc_reg_subject_exists(const char *client, const char *event)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(client), CStringGetTextDatum(event)};

	return evc_reg_query(&plan, "SELECT 1 FROM evc.event_types WHERE client = $1 AND event_name = $2 LIMIT 1",
						 2, types, values, NULL) != NULL;
}

/*
 * A version as Confluent writes it: a positive integer, or "latest" (also
 * -1); 0 stands for the latest.  On anything else the 42202 answer is
 * written and *ok is false.
 */
int32
evc_reg_parse_version(EvcRegCall *call, const char *text, bool *ok)
{
	char	   *end;
	long		v;

	*ok = true;
	if (strcmp(text, "latest") == 0 || strcmp(text, "-1") == 0)
		return 0;
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno == 0 && end != text && *end == '\0' && v >= 1 && v <= PG_INT32_MAX)
		return (int32) v;
	*ok = false;
	evc_reg_fail(call, 422, EVC_REG_INVALID_VERSION, "invalid_version",
				 "The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"",
				 text);
	return 0;
}

/* The level of a subject: its own, else the global one, else backward. */
char *
evc_reg_effective_level(const char *client, const char *event)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(client), CStringGetTextDatum(event)};
	char	   *level;

	level = evc_reg_query(&plan,
						  "SELECT compatibility FROM evc.registry_config "
						  "WHERE (client = $1 AND event_name = $2) OR client IS NULL "
						  "ORDER BY client IS NULL LIMIT 1",
						  2, types, values, NULL);
	return level ? level : pstrdup("backward");
}

/* The registry's mode of a level; *transitive for the _transitive ones. */
static EvcCompatibility
level_mode(const char *level, bool *transitive)
{
	static const char *const modes[] = {"none", "backward", "forward", "full"};

	*transitive = strstr(level, "_transitive") != NULL;
	for (int i = 0; i < lengthof(modes); i++)
		if (strncmp(level, modes[i], strlen(modes[i])) == 0)
			return (EvcCompatibility) i;
	elog(ERROR, "unknown compatibility level \"%s\" in evc.registry_config", level);
	return EVC_COMPAT_NONE;
}

/* The stored schema of a version (0: the latest), or NULL. */
static Jsonb *
stored_schema(const char *client, const char *event, int32 version)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3] = {CStringGetTextDatum(client), CStringGetTextDatum(event),
	Int32GetDatum(version)};
	char	   *text;

	text = evc_reg_query(&plan,
						 "SELECT schema FROM evc.event_types WHERE client = $1 AND event_name = $2 "
						 "AND ($3 = 0 OR version = $3) ORDER BY version DESC LIMIT 1",
						 3, types, values, NULL);
	return text ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text))) : NULL;
}

/*
 * Whether schema is compatible with the stored version under level; *why
 * says what broke.  The candidate is compiled first, so that a schema that
 * is not valid raises EVS01 (an invalid schema, 42201), not "incompatible".
 */
bool
evc_reg_compatible_with(EvcRegCall *call, Jsonb *schema, int32 version,
						const char *level, char **why)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "evcollector gateway compat",
											  ALLOCSET_DEFAULT_SIZES);
	bool		transitive;
	EvcCompatibility mode = level_mode(level, &transitive);
	EvcCompiledSchema *new_cs;
	Jsonb	   *old_schema;
	bool		ok;

	call->in_schema = true;
	new_cs = evc_schema_compile(schema, NULL, cxt);
	evc_check_schema(schema);
	call->in_schema = false;
	old_schema = stored_schema(call->client, call->event, version);
	if (old_schema == NULL)
		elog(ERROR, "version %d of \"%s.%s\" disappeared", version, call->client, call->event);
	*why = NULL;
	ok = mode == EVC_COMPAT_NONE ||
		evc_schema_compatible(evc_schema_compile(old_schema, NULL, cxt), new_cs, mode, why);
	if (*why)
		*why = pstrdup(*why);
	MemoryContextDelete(cxt);
	return ok;
}

/*
 * The _TRANSITIVE levels: before the registry checks the latest version,
 * check every earlier one, unless the schema is already stored (then the
 * registry returns that version and checks nothing).
 */
static void
check_transitive(EvcRegCall *call, Jsonb *schema, EvcCompatibility mode)
{
	static SPIPlanPtr same_plan,
				versions_plan;
	Oid			types[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3] = {CStringGetTextDatum(call->client), CStringGetTextDatum(call->event),
	JsonbPGetDatum(schema)};
	char	   *list;
	char	   *tok;
	char	   *save;
	char	   *why;

	if (evc_reg_query(&same_plan, "SELECT 1 FROM evc.event_types WHERE client = $1 AND event_name = $2 "
					  "AND schema = $3", 3, types, values, NULL))
		return;
	list = evc_reg_query(&versions_plan,
						 "SELECT string_agg(version::text, ' ' ORDER BY version) FROM evc.event_types "
						 "WHERE client = $1 AND event_name = $2 AND version < "
						 "(SELECT max(version) FROM evc.event_types WHERE client = $1 AND event_name = $2)",
						 2, types, values, NULL);
	for (tok = list ? strtok_r(list, " ", &save) : NULL; tok; tok = strtok_r(NULL, " ", &save))
	{
		int32		v = pg_strtoint32(tok);
		static const char *const names[] = {"none", "backward", "forward", "full"};

		if (!evc_reg_compatible_with(call, schema, v, names[mode], &why))
			ereport(ERROR,
					(errcode(EVC_ERRCODE_INCOMPATIBLE_SCHEMA),
					 errmsg("schema for \"%s.%s\" is not %s compatible with version %d",
							call->client, call->event, names[mode], v),
					 errdetail("%s.", why),
					 errhint("The subject's level is transitive: every stored version is checked.")));
	}
}

/*
 * Register schema for the call's subject under its effective level, as
 * evc_register_schema() does for SQL callers; returns the version.
 */
int32
evc_reg_register(EvcRegCall *call, Jsonb *schema)
{
	static SPIPlanPtr plan;
	static const char *const names[] = {"none", "backward", "forward", "full"};
	Oid			types[4] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID};
	Datum		values[4];
	char	   *level = evc_reg_effective_level(call->client, call->event);
	bool		transitive;
	EvcCompatibility mode = level_mode(level, &transitive);
	char	   *version;

	if (transitive && mode != EVC_COMPAT_NONE)
		check_transitive(call, schema, mode);
	values[0] = CStringGetTextDatum(call->client);
	values[1] = CStringGetTextDatum(call->event);
	values[2] = JsonbPGetDatum(schema);
	values[3] = CStringGetTextDatum(names[mode]);
	call->in_schema = true;
	version = evc_reg_query(&plan, "SELECT evc_register_schema($1, $2, $3, $4)",
							4, types, values, NULL);
	call->in_schema = false;
	return pg_strtoint32(version);
}

/*
 * One row of a version, as the caller's query (parameters $1 client, $2
 * event, $3 version; 0 for the latest) shapes it; NULL when there is none.
 */
char *
evc_reg_version_query(SPIPlanPtr *slot, const char *sql, EvcRegCall *call, int32 version)
{
	Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3] = {CStringGetTextDatum(call->client), CStringGetTextDatum(call->event),
	Int32GetDatum(version)};

	return evc_reg_query(slot, sql, 3, types, values, NULL);
}
