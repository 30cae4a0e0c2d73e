/*
 * gateway/http.h: the gateway's request handlers, without the network.
 *
 * The server (gateway.c and its siblings) reads a request off a socket with
 * libwebsockets, fills an EvcHttpRequest, authenticates it, and calls
 * evc_http_dispatch().  A handler reads only the request and writes only the
 * response, so the libFuzzer target (test/fuzz) can feed it raw bytes down
 * the same path as a socket.
 *
 * Handlers run inside a transaction the server opened (SPI connected by the
 * handler itself, through util/spi_plans).  Handlers that enqueue events do
 * not commit: the server commits a group of them at once and only then sends
 * their answers (group commit), so a 2xx from a send route means committed.
 * A handler reports bad input in the response (status and JSON error body),
 * never with ereport(ERROR); an ERROR that escapes fails the whole group.
 */
#ifndef EVC_GATEWAY_HTTP_H
#define EVC_GATEWAY_HTTP_H

#include "postgres.h"
#include "lib/stringinfo.h"

/* What an authenticated caller may do (write keys, issue 16). */
typedef enum EvcGwRole
{
	EVC_GW_ROLE_NONE = 0,		/* no key, or auth failed */
	EVC_GW_ROLE_READ,			/* read-only: GET routes, live rooms */
	EVC_GW_ROLE_WRITE,			/* may send events as its client */
	EVC_GW_ROLE_ADMIN			/* may also register schemas and set config */
} EvcGwRole;

typedef struct EvcHttpRequest
{
	const char *method;			/* "GET", "POST", "PUT", ... */
	const char *path;			/* URL path, percent-decoded, no query */
	const char *query;			/* raw query string without '?', or NULL */
	const char *content_type;	/* Content-Type header, or NULL */
	const char *body;			/* request body, not NUL-terminated */
	size_t		body_len;
	const char *user_agent;		/* User-Agent header, or NULL */
	const char *client_header;	/* X-Evc-Client header, or NULL */

	/* Filled by the server's authentication before dispatch. */
	EvcGwRole	role;
	const char *client;			/* the key's client; NULL if auth is off */
	bool		auth_off;		/* evcollector.gateway_auth = off */
} EvcHttpRequest;

typedef struct EvcHttpResponse
{
	int			status;			/* 200, 201, 400, ... */
	const char *content_type;	/* NULL means application/json */
	StringInfoData body;		/* initialised by the caller */
} EvcHttpResponse;

/*
 * Route handler: returns true when it owns req->path (and then has filled
 * resp), false to let the next table try.  Each routes_*.c file exports one.
 */
typedef bool (*EvcHttpRoute) (const EvcHttpRequest *req, EvcHttpResponse *resp);

/* The JSON error body every route uses: {"error_code": n, "message": "..."}
 * for the schema-registry routes, {"error": {"code", "message"}} elsewhere. */
extern void evc_http_error(EvcHttpResponse *resp, int status,
						   const char *code, const char *fmt,...) pg_attribute_printf(4, 5);
extern void evc_http_registry_error(EvcHttpResponse *resp, int status,
									int error_code, const char *fmt,...) pg_attribute_printf(4, 5);
/* An error message formatted once, made valid UTF-8, palloc'd. */
extern char *evc_http_vformat(const char *fmt, va_list args) pg_attribute_printf(1, 0);

/* Replace the bytes of s that are not UTF-8 with '?', in place: for text
 * the client sent (headers, the path) that goes into a JSON answer. */
extern void evc_http_utf8_clean(char *s);

/* Routes owned by the schema-registry file (routes_registry.c). */
extern bool evc_http_route_registry(const EvcHttpRequest *req, EvcHttpResponse *resp);

/* Routes owned by the operations file (routes_ops.c): /metrics, /healthz,
 * /readyz, /openapi.json. */
extern bool evc_http_route_ops(const EvcHttpRequest *req, EvcHttpResponse *resp);

/* Tries every route table in order; 404 JSON when none owns the path. */
extern void evc_http_dispatch(const EvcHttpRequest *req, EvcHttpResponse *resp);

#endif							/* EVC_GATEWAY_HTTP_H */
