/*
 * gateway/routes_ops.c
 *		Owns the operations routes: GET /metrics (evc_metrics() in the
 *		Prometheus text format), GET /healthz (the process answers),
 *		GET /readyz (the database accepts writes and the relay runs) and
 *		GET /openapi.json (the OpenAPI 3.1 document of every gateway route).
 *
 * They need no key: probes and scrapers do not carry one, and nothing
 * here names a client's data beyond the worker and topic names that
 * evc_metrics() labels its series with.  The OpenAPI document is
 * src/gateway/openapi.json, turned into a C string at build time
 * (mk/gwreg.mk), so the document served is the one in the repository.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "gateway/registry_int.h"

static const char openapi_json[] =
#include "openapi_json.inc"
;

/* The Prometheus text exposition format, version 0.0.4. */
#define PROMETHEUS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static void
ops_metrics(EvcRegCall *call)
{
	static SPIPlanPtr plan;
	char	   *text = evc_reg_query(&plan, "SELECT evc_metrics()", 0, NULL, NULL, NULL);

	evc_reg_ok(call, 200, text ? text : "");
	call->resp->content_type = PROMETHEUS_CONTENT_TYPE;
}

/*
 * Ready: this server is not a standby, the transaction is not read-only,
 * and the relay worker has a process (evc.workers).  A success answer from
 * a send route means committed, and committed events reach Kafka only
 * through the relay, so without either the gateway should get no traffic.
 */
static void
ops_readyz(EvcRegCall *call)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		ready;
	bool		isnull;
	char	   *json;

	SPI_connect();
	if (SPI_execute("SELECT w AND r, json_build_object('status', CASE WHEN w AND r THEN 'ready' ELSE 'not ready' END, "
					"'database_writable', w, 'relay_up', r)::text FROM "
					"(SELECT NOT pg_is_in_recovery() AND NOT current_setting('transaction_read_only')::bool AS w, "
					"EXISTS (SELECT FROM evc.workers WHERE kind = 'relay' AND pid IS NOT NULL) AS r) t",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the readiness of the gateway");
	ready = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	json = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	SPI_finish();
	MemoryContextSwitchTo(cxt);
	evc_reg_ok(call, ready ? 200 : 503, json);
}

bool
evc_http_route_ops(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	EvcRegCall	call = {0};
	bool		get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	EvcRegHandler handler = NULL;

	call.req = req;
	call.resp = resp;
	if (strcmp(req->path, "/metrics") == 0)
		handler = ops_metrics;
	else if (strcmp(req->path, "/readyz") == 0)
		handler = ops_readyz;
	else if (strcmp(req->path, "/healthz") != 0 && strcmp(req->path, "/openapi.json") != 0)
		return false;

	if (!get)
		evc_reg_fail(&call, 405, 405, "method_not_allowed",
					 "method %s is not allowed on %s", req->method, req->path);
	else if (handler)
		evc_reg_run(handler, &call);
	else if (strcmp(req->path, "/healthz") == 0)
		evc_reg_ok(&call, 200, "{\"status\": \"ok\"}");
	else
		evc_reg_ok(&call, 200, openapi_json);
	return true;
}
