/*
 * gateway/routes_registry.c
 *		Owns the route table of the schema registry: which paths and methods
 *		the Confluent Schema Registry subset and the seed event gateway's
 *		registry routes answer, and the handler each one runs.
 *
 * The path is split on "/" into at most a few segments, each matched
 * literally or taken as a parameter.  A path this table owns with a
 * method it does not serve answers 405; any other path is left to the
 * next table (returns false).  /<client>/<event>/send_event belongs to the
 * server's send routes, so it is not matched here.
 */
#include "postgres.h"

#include "gateway/registry_int.h"

#define MAX_SEGMENTS 6

typedef struct RegRoute
{
	const char *method;
	const char *pattern[MAX_SEGMENTS];	/* literal, "{s}" subject, "{a}" arg,
										 * "{c}" client, "{e}" event */
	bool		confluent;
	EvcRegHandler handler;
} RegRoute;

static const RegRoute routes[] = {
	{"GET", {"subjects"}, true, evc_reg_subjects},
	{"POST", {"subjects", "{s}"}, true, evc_reg_lookup},
	{"GET", {"subjects", "{s}", "versions"}, true, evc_reg_versions},
	{"POST", {"subjects", "{s}", "versions"}, true, evc_reg_register_version},
	{"GET", {"subjects", "{s}", "versions", "{a}"}, true, evc_reg_version},
	{"GET", {"subjects", "{s}", "versions", "{a}", "schema"}, true, evc_reg_version_schema},
	{"GET", {"schemas", "ids", "{a}"}, true, evc_reg_schema_by_id},
	{"GET", {"schemas", "types"}, true, evc_reg_schema_types},
	{"GET", {"config"}, true, evc_reg_get_config},
	{"PUT", {"config"}, true, evc_reg_put_config},
	{"GET", {"config", "{s}"}, true, evc_reg_get_config},
	{"PUT", {"config", "{s}"}, true, evc_reg_put_config},
	{"DELETE", {"config", "{s}"}, true, evc_reg_delete_config},
	{"POST", {"compatibility", "subjects", "{s}", "versions", "{a}"}, true, evc_reg_compatibility},
	{"POST", {"{c}", "{e}", "register_event"}, false, evc_reg_seed_register},
	{"GET", {"{c}", "{e}", "schema"}, false, evc_reg_seed_schema},
	{"GET", {"{c}", "list_events"}, false, evc_reg_seed_list},
};

/* Split "/a/b/c" into its segments; false for an empty one or too many. */
static bool
split_path(const char *path, char **seg, int *n)
{
	const char *p = path;

	*n = 0;
	if (p == NULL || *p != '/')
		return false;
	while (*p == '/')
	{
		const char *start = ++p;

		while (*p && *p != '/')
			p++;
		if (p == start || *n == MAX_SEGMENTS)
			return false;
		seg[(*n)++] = pnstrdup(start, p - start);
	}
	return *p == '\0';
}

/* Whether the segments fit the route's pattern; parameters go into call. */
static bool
match(const RegRoute *r, char **seg, int n, EvcRegCall *call)
{
	int			len = 0;

	while (len < MAX_SEGMENTS && r->pattern[len])
		len++;
	if (len != n)
		return false;
	for (int i = 0; i < n; i++)
	{
		const char *p = r->pattern[i];

		if (p[0] != '{')
		{
			if (strcmp(p, seg[i]) != 0)
				return false;
		}
		else if (p[1] == 's')
			call->subject = seg[i];
		else if (p[1] == 'a')
			call->arg = seg[i];
		else if (p[1] == 'c')
			call->client = seg[i];
		else if (p[1] == 'e')
			call->event = seg[i];
	}
	return true;
}

/*
 * A subject names its client and event.  One that does not follow
 * <client>.<event>-value cannot exist here: its reads answer 40401 and
 * its writes 42208; config reads answer 40408 (no config of its own).
 */
static bool
resolve_subject(EvcRegCall *call, EvcRegHandler handler)
{
	char	   *client;
	char	   *event;

	if (call->subject == NULL)
		return true;
	if (evc_reg_parse_subject(call->subject, &client, &event))
	{
		call->client = client;
		call->event = event;
		return true;
	}
	if (handler == evc_reg_get_config || handler == evc_reg_put_config ||
		handler == evc_reg_delete_config)
		return true;			/* they answer for a subject with no client */
	if (handler == evc_reg_register_version)
		evc_reg_fail(call, 422, EVC_REG_INVALID_SUBJECT, "invalid_name",
					 "Subject '%s' is not valid: subjects are named <client>.<event>-value", call->subject);
	else
		evc_reg_fail(call, 404, EVC_REG_SUBJECT_NOT_FOUND, "unknown_event_type",
					 "Subject '%s' not found.", call->subject);
	return false;
}

bool
evc_http_route_registry(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	char	   *seg[MAX_SEGMENTS];
	int			n;
	const RegRoute *other_method = NULL;

	if (!split_path(req->path, seg, &n))
		return false;
	for (int i = 0; i < lengthof(routes); i++)
	{
		EvcRegCall	call = {0};

		call.req = req;
		call.resp = resp;
		call.confluent = routes[i].confluent;
		if (!match(&routes[i], seg, n, &call))
			continue;
		if (strcmp(req->method, routes[i].method) != 0)
		{
			other_method = &routes[i];
			continue;
		}
		if (resolve_subject(&call, routes[i].handler))
			evc_reg_run(routes[i].handler, &call);
		return true;
	}
	if (other_method == NULL)
		return false;
	{
		EvcRegCall	call = {0};

		call.req = req;
		call.resp = resp;
		call.confluent = other_method->confluent;
		evc_reg_fail(&call, 405, 405, "method_not_allowed",
					 "method %s is not allowed on %s", req->method, req->path);
	}
	return true;
}
