/*
 * gateway/dispatch.c
 *		Owns the routing of a request to its handler and the JSON error
 *		bodies every handler answers with.
 *
 * The route tables are tried in order; the first that owns the path
 * answers.  Nothing here touches the network, so the fuzz target calls
 * evc_http_dispatch exactly as the server does.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "gateway/gateway_int.h"
#include "gateway/http.h"
#include "gateway/live_server.h"

/*
 * The schema-registry and operations tables are written on another branch
 * (routes_registry.c, routes_ops.c).  Until both are merged they are weak
 * references: a table that is not linked in is skipped, and its paths
 * answer 404 like any unknown path.
 */
extern bool evc_http_route_registry(const EvcHttpRequest *req, EvcHttpResponse *resp) __attribute__((weak));
extern bool evc_http_route_ops(const EvcHttpRequest *req, EvcHttpResponse *resp) __attribute__((weak));

void
evc_http_dispatch(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	EvcHttpRoute routes[4];
	int			n = 0;

	routes[n++] = evc_http_route_send;
	routes[n++] = evc_http_route_live;
	if (evc_http_route_registry != NULL)
		routes[n++] = evc_http_route_registry;
	if (evc_http_route_ops != NULL)
		routes[n++] = evc_http_route_ops;

	for (int i = 0; i < n; i++)
		if (routes[i] (req, resp))
			return;
	evc_http_error(resp, 404, "not_found", "no route for %s %s", req->method, req->path);
}

/*
 * Replace each byte of s that does not start a valid UTF-8 character with
 * '?', in place.  A message may quote what the client sent (a header, the
 * path), which is any bytes; its JSON body must still be valid UTF-8.
 */
void
evc_http_utf8_clean(char *s)
{
	unsigned char *p = (unsigned char *) s;

	while (*p)
	{
		int			len = pg_utf_mblen(p);
		int			avail = 0;

		while (avail < len && p[avail])
			avail++;
		if (avail < len || !pg_utf8_islegal(p, len))
			*p++ = '?';
		else
			p += len;
	}
}

/* Formats the message once, for every error shape (valid UTF-8). */
char *
evc_http_vformat(const char *fmt, va_list args)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, args);
		needed = appendStringInfoVA(&buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	evc_http_utf8_clean(buf.data);
	return buf.data;
}

/* {"error": {"code": "...", "message": "..."}} */
void
evc_http_error(EvcHttpResponse *resp, int status, const char *code, const char *fmt,...)
{
	va_list		args;
	char	   *message;

	va_start(args, fmt);
	message = evc_http_vformat(fmt, args);
	va_end(args);

	resp->status = status;
	resp->content_type = NULL;
	resetStringInfo(&resp->body);
	appendStringInfoString(&resp->body, "{\"error\":{\"code\":");
	escape_json(&resp->body, code);
	appendStringInfoString(&resp->body, ",\"message\":");
	escape_json(&resp->body, message);
	appendStringInfoString(&resp->body, "}}");
	pfree(message);
}

/* The Confluent Schema Registry's {"error_code": n, "message": "..."}. */
void
evc_http_registry_error(EvcHttpResponse *resp, int status, int error_code, const char *fmt,...)
{
	va_list		args;
	char	   *message;

	va_start(args, fmt);
	message = evc_http_vformat(fmt, args);
	va_end(args);

	resp->status = status;
	resp->content_type = "application/vnd.schemaregistry.v1+json";
	resetStringInfo(&resp->body);
	appendStringInfo(&resp->body, "{\"error_code\":%d,\"message\":", error_code);
	escape_json(&resp->body, message);
	appendStringInfoChar(&resp->body, '}');
	pfree(message);
}
