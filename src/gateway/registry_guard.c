/*
 * gateway/registry_guard.c
 *		Owns what every schema-registry route does around its handler: the
 *		subtransaction that turns an ERROR into an HTTP answer, the mapping
 *		from the registry's SQLSTATEs to statuses and error codes, the role
 *		and client checks, and reading the request (JSON body, query
 *		string, subject name).
 *
 * A handler may raise ERROR anywhere (the registry's functions do, with
 * precise messages); evc_reg_run catches it in an internal subtransaction,
 * as PL/pgSQL's EXCEPTION blocks do, so that an ERROR never escapes into
 * the server's transaction (http.h: it would fail the whole group).
 */
#include "postgres.h"

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "gateway/registry_int.h"
#include "jsonschema/validate.h"
#include "registry/registry.h"

/* An error that escaped a handler, turned into an answer. */
typedef struct RegErrorMap
{
	int			status;
	int			registry_code;
	const char *code;
} RegErrorMap;

static RegErrorMap
map_sqlstate(EvcRegCall *call, int sqlerrcode)
{
	RegErrorMap m = {500, EVC_REG_BACKEND_ERROR, "internal_error"};

	if (sqlerrcode == EVC_ERRCODE_INVALID_SCHEMA || sqlerrcode == EVC_ERRCODE_REF_CYCLE ||
		(call->in_schema && (ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
							 sqlerrcode == ERRCODE_STATEMENT_TOO_COMPLEX ||
							 sqlerrcode == ERRCODE_FEATURE_NOT_SUPPORTED)))
		m = (RegErrorMap) {422, EVC_REG_INVALID_SCHEMA, "invalid_schema"};
	else if (ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
			 sqlerrcode == ERRCODE_STATEMENT_TOO_COMPLEX)
		m = (RegErrorMap) {400, 400, "invalid_json"};
	else if (sqlerrcode == EVC_ERRCODE_INCOMPATIBLE_SCHEMA)
		m = (RegErrorMap) {409, 409, "incompatible_schema"};
	else if (sqlerrcode == EVC_ERRCODE_UNKNOWN_EVENT_TYPE)
		m = (RegErrorMap) {404, EVC_REG_SUBJECT_NOT_FOUND, "unknown_event_type"};
	else if (sqlerrcode == EVC_ERRCODE_INVALID_NAME)
		m = (RegErrorMap) {call->confluent ? 422 : 400, EVC_REG_INVALID_SUBJECT, "invalid_name"};
	else if (sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE)
		m = (RegErrorMap) {403, 40301, "forbidden"};
	else if (sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION ||
			 ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
			 sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE ||
			 sqlerrcode == ERRCODE_UNDEFINED_TABLE || sqlerrcode == ERRCODE_UNDEFINED_FUNCTION)
		/* a standby, a shutdown, not preloaded, or no extension (yet) */
		m = (RegErrorMap) {503, EVC_REG_BACKEND_ERROR, "unavailable"};
	return m;
}

/* Answer an ERROR a handler raised: its message and detail, its status. */
static void
answer_error(EvcRegCall *call, ErrorData *edata)
{
	RegErrorMap m = map_sqlstate(call, edata->sqlerrcode);
	char	   *text = edata->detail
		? psprintf("%s: %s", edata->message, edata->detail)
		: pstrdup(edata->message);

	/* Bad input is the client's; anything else is ours and goes in the log. */
	if (m.status >= 500)
		ereport(LOG,
				(errmsg("gateway registry route %s %s failed: %s",
						call->req->method, call->req->path, text)));
	resetStringInfo(&call->resp->body);
	evc_reg_fail(call, m.status, m.registry_code, m.code, "%s", text);
}

/*
 * Run one handler inside an internal subtransaction.  What it wrote is
 * kept when it returns, and rolled back (with its SPI connection) when it
 * raises ERROR, which becomes the answer.
 */
void
evc_reg_run(EvcRegHandler handler, EvcRegCall *call)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		handler(call);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		answer_error(call, edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/* An error answer in the style of the route (Confluent's or ours). */
void
evc_reg_fail(EvcRegCall *call, int status, int registry_code, const char *code,
			 const char *fmt,...)
{
	va_list		args;
	char	   *msg;

	va_start(args, fmt);
	msg = evc_http_vformat(fmt, args);
	va_end(args);
	resetStringInfo(&call->resp->body);
	if (call->confluent)
	{
		evc_http_registry_error(call->resp, status, registry_code, "%s", msg);
		call->resp->content_type = EVC_REG_CONTENT_TYPE;
	}
	else
		evc_http_error(call->resp, status, code, "%s", msg);
	pfree(msg);
}

/* A success answer: json is a complete JSON text. */
void
evc_reg_ok(EvcRegCall *call, int status, const char *json)
{
	call->resp->status = status;
	call->resp->content_type = call->confluent ? EVC_REG_CONTENT_TYPE : "application/json";
	resetStringInfo(&call->resp->body);
	appendStringInfoString(&call->resp->body, json);
}

/*
 * Whether the caller may do this: a key at least as strong as need, and of
 * the client the route names (a key acts only as its own client).  When
 * not, the answer (401 or 403) is already written.
 */
bool
evc_reg_permitted(EvcRegCall *call, EvcGwRole need)
{
	const EvcHttpRequest *req = call->req;

	if (req->auth_off)
		return true;
	if (req->role == EVC_GW_ROLE_NONE)
	{
		evc_reg_fail(call, 401, 40101, "unauthorized",
					 "this route needs a key: send it as \"Authorization: Bearer <key>\" or as Basic");
		return false;
	}
	if (req->role < need)
	{
		evc_reg_fail(call, 403, 40301, "forbidden", "this route needs a key with the %s role",
					 need == EVC_GW_ROLE_ADMIN ? "admin" : need == EVC_GW_ROLE_WRITE ? "write" : "read");
		return false;
	}
	if (call->client && req->client && strcmp(call->client, req->client) != 0)
	{
		evc_reg_fail(call, 403, 40301, "forbidden",
					 "the key of client \"%s\" may not act for client \"%s\"", req->client, call->client);
		return false;
	}
	return true;
}

/*
 * A request body (or a schema text) as jsonb.  The JSON parser reads a
 * NUL-terminated string and does not check the encoding of what it copies,
 * so a NUL byte or invalid UTF-8 is refused here first.  Raises ERROR
 * (class 22) on bad input, for evc_reg_run to answer.
 */
Jsonb *
evc_reg_parse_json(const char *text, size_t len)
{
	char	   *s;

	if (text == NULL || len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("the request body is empty"),
				 errdetail("A JSON document is expected.")));
	if (memchr(text, '\0', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("the JSON text contains a NUL byte")));
	if (!pg_verifymbstr(text, len, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("the JSON text is not valid UTF-8")));
	s = pnstrdup(text, len);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s)));
}

/*
 * The value of name in a query string, or NULL.  Only flags and numbers
 * are read from it, so values are returned as sent, not percent-decoded.
 */
const char *
evc_reg_query_param(const char *query, const char *name)
{
	size_t		nlen = strlen(name);
	const char *p = query;

	while (p && *p)
	{
		const char *end = strchr(p, '&');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
			return pnstrdup(p + nlen + 1, len - nlen - 1);
		if (len == nlen && strncmp(p, name, nlen) == 0)
			return "";
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

bool
evc_reg_query_flag(const char *query, const char *name)
{
	const char *v = evc_reg_query_param(query, name);

	return v && (pg_strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/*
 * A subject "<client>.<event>-value" (TopicNameStrategy for the topic
 * <client>.<event>).  Client names have no dots, so the first dot splits.
 * Names are checked later, by the registry, where it matters.
 */
bool
evc_reg_parse_subject(const char *subject, char **client, char **event)
{
	size_t		len = strlen(subject);
	const char *dot = strchr(subject, '.');
	const char *suffix = "-value";
	size_t		slen = strlen(suffix);

	if (len <= slen || strcmp(subject + len - slen, suffix) != 0 || dot == NULL ||
		dot == subject || dot + 1 >= subject + len - slen)
		return false;
	*client = pnstrdup(subject, dot - subject);
	*event = pnstrdup(dot + 1, subject + len - slen - dot - 1);
	return true;
}
