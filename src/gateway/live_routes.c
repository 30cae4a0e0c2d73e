/*
 * live_routes.c
 *		Owns the JSON the /status page reads: GET /v1/status (every section
 *		at once) and GET /v1/status/<section>, through the gateway's handler
 *		interface (http.h).
 *
 * Each section is a query on the views SQL users read (evc.workers,
 * evc.stats, evc.outbox_status, evc.consumer_lag, evc.dead_letters,
 * evc.archive_files, evc.images), so the page shows nothing the database
 * does not; only the "live" section is the gateway's own counters.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "gateway/live_int.h"
#include "gateway/live_ring.h"
#include "gateway/live_server.h"

typedef struct StatusSection
{
	const char *name;
	const char *sql;			/* one row, one json column */
} StatusSection;

/* Links to objects: s3 through the endpoint, file:// as a path. */
#define OBJECT_URL \
	"CASE WHEN current_setting('evcollector.storage_url') LIKE 's3://%%' " \
	"  THEN rtrim(current_setting('evcollector.s3_endpoint'), '/') || '/' || " \
	"       split_part(substr(current_setting('evcollector.storage_url'), 6), '/', 1) || '/' || object_key " \
	"  ELSE rtrim(current_setting('evcollector.storage_url'), '/') || '/' || object_key END"

static const StatusSection sections[] = {
	{"at", "SELECT to_json(clock_timestamp())"},
	{"workers",
	"SELECT coalesce(json_agg(w ORDER BY kind, name), '[]') FROM "
	"(SELECT kind, name, pid, started_at, stopped_at, starts, last_error, last_error_at FROM evc.workers) w"},
	{"stats",
	"SELECT coalesce(json_agg(s), '[]') FROM "
	"(SELECT kind, name, sent, produced, delivered, failed, consumed, landed, dead_lettered, "
	"        latency_p99_ms, last_error, last_error_at FROM evc.stats) s"},
	{"outbox",
	"SELECT coalesce((SELECT row_to_json(o) FROM evc.outbox_status o), '{}')"},
	{"lag",
	"SELECT coalesce(json_agg(l), '[]') FROM (SELECT * FROM evc.consumer_lag) l"},
	{"dead_letters",
	"SELECT coalesce(json_agg(d ORDER BY created_at DESC), '[]') FROM "
	"(SELECT message_id, topic, partition, \"offset\", error, source, attempts, created_at "
	" FROM evc.dead_letters ORDER BY created_at DESC LIMIT 50) d"},
	{"archive_files",
	"SELECT coalesce(json_agg(a ORDER BY created_at DESC), '[]') FROM "
	"(SELECT object_key, " OBJECT_URL " AS url, topic, partition, first_offset, last_offset, events, bytes, "
	"        consumer, created_at FROM evc.archive_files ORDER BY created_at DESC LIMIT 20) a"},
	{"images",
	"SELECT coalesce(json_agg(i ORDER BY created_at DESC), '[]') FROM "
	"(SELECT message_id, object_key, " OBJECT_URL " AS url, content_type, width, height, bytes, "
	"        created_at FROM evc.images ORDER BY created_at DESC LIMIT 20) i"},
};

static void
live_section(StringInfo out)
{
	uint64		pushed,
				dropped,
				closed;
	EvcLiveRingStats rs;

	evc_live_counters(&pushed, &dropped, &closed);
	evc_live_ring_stats(&rs);
	appendStringInfo(out, "{\"sessions\":%d,\"pushed\":" UINT64_FORMAT ",\"dropped_slow\":" UINT64_FORMAT
					 ",\"closed\":" UINT64_FORMAT ",\"ring_records\":" UINT64_FORMAT
					 ",\"ring_bytes\":" UINT64_FORMAT ",\"ring_lost\":" UINT64_FORMAT "}",
					 evc_live_session_count(), pushed, dropped, closed, rs.records, rs.bytes,
					 evc_live_lost_count());
}

static void
run_section(const StatusSection *sec, StringInfo out)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute(sec->sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "status section %s failed", sec->name);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		appendStringInfoString(out, "null");
	else
		appendStringInfoString(out, TextDatumGetCString(d));
}

bool
evc_http_route_live(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	const char *section = NULL;
	StringInfoData out;

	if (strcmp(req->path, "/v1/status") == 0)
		section = "";
	else if (strncmp(req->path, "/v1/status/", 11) == 0)
		section = req->path + 11;
	else
		return false;
	if (strcmp(req->method, "GET") != 0)
	{
		evc_http_error(resp, 405, "method_not_allowed", "%s takes GET", req->path);
		return true;
	}
	if (!req->auth_off && req->role < EVC_GW_ROLE_READ)
	{
		evc_http_error(resp, 401, "missing_key", "GET %s needs a key (read-only is enough)", req->path);
		return true;
	}
	initStringInfo(&out);
	if (strcmp(section, "live") == 0)
	{
		live_section(&out);
		appendBinaryStringInfo(&resp->body, out.data, out.len);
		resp->status = 200;
		return true;
	}
	SPI_connect();
	if (section[0] == '\0')
	{
		for (int i = 0; i < lengthof(sections); i++)
		{
			appendStringInfo(&out, "%s\"%s\":", i == 0 ? "{" : ",", sections[i].name);
			run_section(&sections[i], &out);
		}
		appendStringInfoString(&out, ",\"live\":");
		live_section(&out);
		appendStringInfoChar(&out, '}');
	}
	else
	{
		int			i;

		for (i = 0; i < lengthof(sections); i++)
			if (strcmp(section, sections[i].name) == 0)
				break;
		if (i == lengthof(sections))
		{
			SPI_finish();
			evc_http_error(resp, 404, "not_found",
						   "no status section \"%s\" (workers, stats, outbox, lag, dead_letters, archive_files, images, live)",
						   section);
			return true;
		}
		run_section(&sections[i], &out);
	}
	/* out was made before SPI_connect, so SPI_finish leaves it */
	SPI_finish();
	appendBinaryStringInfo(&resp->body, out.data, out.len);
	resp->status = 200;
	return true;
}
