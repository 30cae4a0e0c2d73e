/*
 * aggregate_decl.c
 *		Owns aggregation declarations: evc_declare_aggregation() and
 *		evc_drop_aggregation(), the JSON pointers they take, and
 *		evc.json_number(), which reads a number at a pointer for
 *		evc_aggregate's query.
 *
 * A declaration says, for one event type, which number to aggregate (a
 * JSON pointer into the event's data), with which functions, grouped by
 * which values (more pointers), and optionally where in its data an event
 * names its own function, as the aggregator that evcollector replaces
 * expected.  Redeclaring with a different definition makes the next
 * evc_aggregate run recompute that type from its first event; aggregates
 * that come out different are published again with a higher revision.
 *
 * The invalidation trigger on evc.events (aggregate_log.c) is enabled while
 * at least one declaration exists.  Enabling it takes a lock that waits for
 * transactions inserting into evc.events, so every event committed after
 * the declaration is logged, and every one committed before is visible to
 * the first evc_aggregate run.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "aggregate/aggregate.h"
#include "registry/registry.h"
#include "util/arrays.h"
#include "util/fmgr_args.h"

#define MAX_GROUP_BY 8
#define MAX_POINTER_LEN 1000

const char *const evc_agg_functions[EVC_AGG_NFUNCS] = {"count", "sum", "avg", "min", "max"};

int
evc_agg_function_index(const char *name)
{
	for (int i = 0; i < EVC_AGG_NFUNCS; i++)
		if (strcmp(name, evc_agg_functions[i]) == 0)
			return i;
	return -1;
}

/*
 * Split an RFC 6901 JSON pointer into its reference tokens, decoding ~1 to
 * "/" and ~0 to "~".  The empty pointer (the whole document) is refused:
 * an event's data is an object, never a number or a group key.
 */
List *
evc_json_pointer_parse(const char *pointer, const char *what)
{
	List	   *tokens = NIL;
	const char *p = pointer;

	if (pointer[0] != '/' || strlen(pointer) > MAX_POINTER_LEN)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_POINTER),
				 errmsg("invalid JSON pointer \"%s\" for %s", pointer, what),
				 pointer[0] != '/' ?
				 errdetail("A JSON pointer (RFC 6901) starts with \"/\", as in \"/amount\" or \"/user/id\".") :
				 errdetail("A pointer has at most %d characters.", MAX_POINTER_LEN)));
	while (*p == '/')
	{
		StringInfoData tok;

		initStringInfo(&tok);
		for (p++; *p && *p != '/'; p++)
		{
			if (*p != '~')
			{
				appendStringInfoChar(&tok, *p);
				continue;
			}
			if (p[1] != '0' && p[1] != '1')
				ereport(ERROR,
						(errcode(EVC_ERRCODE_INVALID_POINTER),
						 errmsg("invalid JSON pointer \"%s\" for %s", pointer, what),
						 errdetail("At character %d: \"~\" must be followed by 0 (for \"~\") or 1 (for \"/\").",
								   (int) (p - pointer) + 1)));
			appendStringInfoChar(&tok, p[1] == '0' ? '~' : '/');
			p++;
		}
		tokens = lappend(tokens, tok.data);
	}
	return tokens;
}

/* The pointer as a quoted text[] literal for #> and #>>, e.g. '{"a","b/c"}'. */
char *
evc_json_pointer_sql(const char *pointer)
{
	List	   *tokens = evc_json_pointer_parse(pointer, "a path");
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	foreach(lc, tokens)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoChar(&buf, '"');
		for (const char *c = lfirst(lc); *c; c++)
		{
			if (*c == '"' || *c == '\\')
				appendStringInfoChar(&buf, '\\');
			appendStringInfoChar(&buf, *c);
		}
		appendStringInfoChar(&buf, '"');
	}
	appendStringInfoChar(&buf, '}');
	return psprintf("%s::text[]", quote_literal_cstr(buf.data));
}

void
evc_require_aggregation_admin(const char *action)
{
	Oid			admin = get_role_oid("evc_registry_admin", true);

	if (!OidIsValid(admin) || !has_privs_of_role(GetUserId(), admin))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s", action),
				 errdetail("Only members of role \"evc_registry_admin\" may declare aggregations."),
				 errhint("Ask an administrator to GRANT evc_registry_admin TO your role.")));
}

/*
 * Enable or disable the invalidation trigger on evc.events, if it is not
 * already so.  Runs through SPI as the table's owner; the caller is
 * connected to SPI.
 */
void
evc_aggregate_log_set_enabled(bool enabled)
{
	bool		isnull;
	char	   *state;

	if (SPI_execute("SELECT tgenabled::text FROM pg_catalog.pg_trigger "
					"WHERE tgrelid = 'evc.events'::regclass AND tgname = 'events_aggregate_log'",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trigger \"events_aggregate_log\" on evc.events is missing"),
				 errhint("Update the extension: ALTER EXTENSION evcollector UPDATE.")));
	state = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if ((strcmp(state, "D") != 0) == enabled)
		return;
	if (SPI_execute(enabled ?
					"ALTER TABLE evc.events ENABLE TRIGGER events_aggregate_log" :
					"ALTER TABLE evc.events DISABLE TRIGGER events_aggregate_log",
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not change trigger events_aggregate_log");
}

/* Run as the owner of evc.aggregations, whose rows only arrive checked. */
static void
become_table_owner(Oid *save_user, int *save_sec)
{
	Oid			nsp = get_namespace_oid("evc", false);
	Oid			relid = get_relname_relid("aggregations", nsp);
	Relation	rel;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"evc.aggregations\" does not exist"),
				 errhint("Update the extension: ALTER EXTENSION evcollector UPDATE.")));
	rel = table_open(relid, AccessShareLock);
	GetUserIdAndSecContext(save_user, save_sec);
	SetUserIdAndSecContext(rel->rd_rel->relowner, *save_sec | SECURITY_LOCAL_USERID_CHANGE);
	table_close(rel, NoLock);
}

/* The elements of a text[] argument; NULL is the empty array. */
static List *
arg_text_list(FunctionCallInfo fcinfo, int n, const char *what)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			count;
	List	   *result = NIL;

	if (PG_ARGISNULL(n))
		return NIL;
	arr = PG_GETARG_ARRAYTYPE_P(n);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &count);
	for (int i = 0; i < count; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain null", what)));
		result = lappend(result, TextDatumGetCString(elems[i]));
	}
	return result;
}

/*
 * Check a declaration's arguments; returns its functions in canonical order
 * (count, sum, avg, min, max), without duplicates.
 */
static List *
check_declaration(const char *client, const char *event_name, const char *value,
				  List *functions, List *group_by, const char *function_field)
{
	bool		wanted[EVC_AGG_NFUNCS] = {0};
	bool		value_needed = (function_field != NULL);
	List	   *canonical = NIL;
	ListCell   *lc;

	evc_check_name("client", client, false);
	evc_check_name("event", event_name, true);
	foreach(lc, functions)
	{
		int			f = evc_agg_function_index(lfirst(lc));

		if (f < 0)
			ereport(ERROR,
					(errcode(EVC_ERRCODE_UNKNOWN_FUNCTION),
					 errmsg("unknown aggregation function \"%s\"", (char *) lfirst(lc)),
					 errhint("Use count, sum, avg, min or max.")));
		wanted[f] = true;
		value_needed |= (f > 0);
	}
	for (int f = 0; f < EVC_AGG_NFUNCS; f++)
		if (wanted[f])
			canonical = lappend(canonical, (char *) evc_agg_functions[f]);
	if (canonical == NIL && function_field == NULL)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_AGGREGATION),
				 errmsg("aggregation of \"%s.%s\" has nothing to compute", client, event_name),
				 errdetail("functions is empty and no function_field names a function in the events."),
				 errhint("Give functions, such as '{count,sum}', or function_field, such as '/function'.")));
	if (value != NULL)
		(void) evc_json_pointer_parse(value, "value");
	else if (value_needed)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_AGGREGATION),
				 errmsg("aggregation of \"%s.%s\" needs a value", client, event_name),
				 errdetail(function_field ?
						   "Events may name sum, avg, min or max in their data, which aggregate a number." :
						   "sum, avg, min and max aggregate a number."),
				 errhint("Give value, a JSON pointer to the number in the event data, such as '/amount'.")));
	if (function_field != NULL)
		(void) evc_json_pointer_parse(function_field, "function_field");
	if (list_length(group_by) > MAX_GROUP_BY)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_AGGREGATION),
				 errmsg("aggregation of \"%s.%s\" has too many group_by pointers", client, event_name),
				 errdetail("It has %d; at most %d are allowed.", list_length(group_by), MAX_GROUP_BY)));
	foreach(lc, group_by)
	{
		(void) evc_json_pointer_parse(lfirst(lc), "group_by");
		for (int j = 0; j < foreach_current_index(lc); j++)
			if (strcmp(list_nth(group_by, j), lfirst(lc)) == 0)
				ereport(ERROR,
						(errcode(EVC_ERRCODE_INVALID_AGGREGATION),
						 errmsg("group_by lists \"%s\" twice", (char *) lfirst(lc))));
	}
	return canonical;
}

/*
 * evc_declare_aggregation(client, event_name, value, functions, group_by,
 *						   function_field) returns int
 */
PG_FUNCTION_INFO_V1(evc_declare_aggregation);
Datum
evc_declare_aggregation(PG_FUNCTION_ARGS)
{
	char	   *client = evc_arg_text(fcinfo, 0, "client");
	char	   *event_name = evc_arg_text(fcinfo, 1, "event_name");
	char	   *value = evc_arg_text_or_null(fcinfo, 2);
	List	   *functions = arg_text_list(fcinfo, 3, "functions");
	List	   *group_by = arg_text_list(fcinfo, 4, "group_by");
	char	   *function_field = evc_arg_text_or_null(fcinfo, 5);
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			save_user;
	int			save_sec;
	int32		id;
	bool		isnull;

	evc_require_aggregation_admin("declare aggregations");
	functions = check_declaration(client, event_name, value, functions, group_by, function_field);
	values[0] = CStringGetTextDatum(client);
	values[1] = CStringGetTextDatum(event_name);
	values[2] = value ? CStringGetTextDatum(value) : (Datum) 0;
	nulls[2] = value ? ' ' : 'n';
	values[3] = PointerGetDatum(evc_text_array_from_list(functions));
	values[4] = PointerGetDatum(evc_text_array_from_list(group_by));
	values[5] = function_field ? CStringGetTextDatum(function_field) : (Datum) 0;
	nulls[5] = function_field ? ' ' : 'n';

	become_table_owner(&save_user, &save_sec);
	SPI_connect();

	/*
	 * Insert, or update a changed definition.  A changed definition loses
	 * its watermarks, so the next run recomputes the type from its first
	 * event; evc.aggregate_state keeps the revisions, so what comes out
	 * different is published with a higher one.
	 */
	if (SPI_execute_with_args(
							  "WITH d AS ("
							  "  INSERT INTO evc.aggregations AS a (client, event_name, value_pointer, functions, group_by, function_pointer) "
							  "  VALUES ($1, $2, $3, $4, $5, $6) "
							  "  ON CONFLICT (client, event_name) DO UPDATE SET value_pointer = EXCLUDED.value_pointer, "
							  "    functions = EXCLUDED.functions, group_by = EXCLUDED.group_by, "
							  "    function_pointer = EXCLUDED.function_pointer, updated_at = now() "
							  "  WHERE (a.value_pointer, a.functions, a.group_by, a.function_pointer) IS DISTINCT FROM "
							  "    (EXCLUDED.value_pointer, EXCLUDED.functions, EXCLUDED.group_by, EXCLUDED.function_pointer) "
							  "  RETURNING a.id), "
							  "w AS (DELETE FROM evc.aggregate_watermarks WHERE aggregation_id IN (SELECT id FROM d)) "
							  "SELECT id FROM d UNION ALL "
							  "SELECT id FROM evc.aggregations WHERE client = $1 AND event_name = $2 AND NOT EXISTS (SELECT FROM d)",
							  6, types, values, nulls, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not write evc.aggregations");
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	evc_aggregate_log_set_enabled(true);
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	PG_RETURN_INT32(id);
}

/* evc_drop_aggregation(client, event_name): published aggregates stay. */
PG_FUNCTION_INFO_V1(evc_drop_aggregation);
Datum
evc_drop_aggregation(PG_FUNCTION_ARGS)
{
	char	   *client = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *event_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(client), CStringGetTextDatum(event_name)};
	Oid			save_user;
	int			save_sec;
	bool		isnull;

	evc_require_aggregation_admin("drop aggregations");
	become_table_owner(&save_user, &save_sec);
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM evc.aggregations WHERE client = $1 AND event_name = $2",
							  2, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from evc.aggregations");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(EVC_ERRCODE_UNKNOWN_AGGREGATION),
				 errmsg("no aggregation is declared for \"%s.%s\"", client, event_name),
				 errhint("SELECT * FROM evc.aggregations lists the declared ones.")));
	if (SPI_execute("SELECT count(*) FROM evc.aggregations", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count evc.aggregations");
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) == 0)
		evc_aggregate_log_set_enabled(false);
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	PG_RETURN_VOID();
}

/*
 * evc.json_number(data jsonb, path text[]) returns numeric: the number at
 * path, or NULL when the path is absent or leads to anything else.  It
 * walks the binary container in place, without building the jsonb value
 * that #> would, because it runs once per aggregated event.
 */
PG_FUNCTION_INFO_V1(evc_json_number);
Datum
evc_json_number(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	ArrayType  *path = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	JsonbContainer *c = &jb->root;
	JsonbValue *v = NULL;
	JsonbValue	scalar;

	deconstruct_array(path, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
	{
		if (JsonbExtractScalar(c, &scalar) && scalar.type == jbvNumeric)
			PG_RETURN_NUMERIC(DatumGetNumericCopy(NumericGetDatum(scalar.val.numeric)));
		PG_RETURN_NULL();
	}
	if (JB_ROOT_IS_SCALAR(jb))
		PG_RETURN_NULL();
	for (int i = 0; i < n; i++)
	{
		text	   *key;

		if (nulls[i])
			PG_RETURN_NULL();
		key = DatumGetTextPP(elems[i]);
		if (JsonContainerIsObject(c))
			v = getKeyJsonValueFromContainer(c, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), NULL);
		else if (JsonContainerIsArray(c))
		{
			const char *s = VARDATA_ANY(key);
			int			len = VARSIZE_ANY_EXHDR(key);
			uint32		idx = 0;

			/* RFC 6901: an index is 0 or digits without a leading zero. */
			if (len == 0 || len > 9 || (s[0] == '0' && len > 1))
				PG_RETURN_NULL();
			for (int j = 0; j < len; j++)
			{
				if (s[j] < '0' || s[j] > '9')
					PG_RETURN_NULL();
				idx = idx * 10 + (s[j] - '0');
			}
			v = getIthJsonbValueFromContainer(c, idx);
		}
		else
			PG_RETURN_NULL();
		if (v == NULL)
			PG_RETURN_NULL();
		if (i < n - 1)
		{
			if (v->type != jbvBinary)
				PG_RETURN_NULL();
			c = v->val.binary.data;
		}
	}
	if (v->type != jbvNumeric)
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(DatumGetNumericCopy(NumericGetDatum(v->val.numeric)));
}
