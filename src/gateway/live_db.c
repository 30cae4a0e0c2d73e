/*
 * live_db.c
 *		Owns the live rooms' work between service rounds: draining the live
 *		ring into the rooms, and what needs the database: checking a
 *		client's key (the gateway's own check, keys.c) and the catch-up of
 *		a client that reconnects, read from evc.aggregates.
 *
 * Order matters for "no lost aggregates": each round first drains the ring
 * (pushes to the windows already live), then runs the catch-ups, whose
 * snapshot sees every row the drained records described, and only then
 * makes the caught-up window live.  A row committed after the snapshot
 * reaches the ring after the drain, so the next round pushes it.  A row in
 * both arrives twice with the same revision, which a client that keeps
 * the highest revision (as the docs ask) ignores.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "aggregate/aggregate.h"
#include "gateway/gateway_int.h"
#include "gateway/live_int.h"
#include "gateway/live_ring.h"
#include "gateway/live_server.h"

/* Rows committed up to this long before a catch-up point are read again:
 * updated_at is the landing transaction's start, not its commit. */
#define LIVE_CATCHUP_SLACK_US (5 * USECS_PER_SEC)
#define LIVE_CATCHUP_MAX_ROWS 10000
#define LIVE_RING_READ_BYTES (1024 * 1024)

static dlist_head work = DLIST_STATIC_INIT(work);
static uint64 ring_cursor = 0;
static bool ring_attached = false;
static TimestampTz last_drain = 0;
static uint64 n_lost = 0;
static MemoryContext round_cxt = NULL;

void
evc_live_work_queue(LiveSession *s, LiveWork kind)
{
	s->work = kind;
	if (!s->in_work)
	{
		dlist_push_tail(&work, &s->work_node);
		s->in_work = true;
	}
	/* the worker loop runs evc_live_after_service right after this round */
}

void
evc_live_work_forget(LiveSession *s)
{
	if (s->in_work)
		dlist_delete(&s->work_node);
	s->in_work = false;
	s->work = LIVE_WORK_NONE;
}

/* ---- auth ---- */

static bool
check_key(LiveSession *s, char **why)
{
	EvcHttpRequest req = {0};
	EvcHttpResponse resp = {0};
	char	   *authz = s->auth_token ? psprintf("Bearer %s", s->auth_token) : NULL;
	bool		ok;

	req.method = "GET";
	req.path = s->kind == LIVE_SIO ? "/socket.io/" : "/v1/live";
	req.auth_off = !evc_gw_auth;
	if (!evc_gw_auth)
	{
		s->role = EVC_GW_ROLE_ADMIN;
		return true;
	}
	initStringInfo(&resp.body);
	ok = evc_gw_authenticate(authz, &req, &resp);
	if (ok && req.role < EVC_GW_ROLE_READ)
	{
		ok = false;
		resetStringInfo(&resp.body);
		appendStringInfoString(&resp.body, "the key may not read");
	}
	if (!ok)
		*why = pstrdup(resp.body.data);
	s->role = req.role;
	return ok;
}

static void
finish_auth(LiveSession *s, bool ok, const char *why)
{
	StringInfoData b;

	initStringInfo(&b);
	if (s->kind == LIVE_SIO)
	{
		EvcSlice	root = {"/", 1};

		if (ok)
		{
			s->sio_connected = true;
			evc_sio_encode_connect(&b, s->sid);
		}
		else
			evc_sio_encode_connect_error(&b, root, why ? why : "not authorized");
		evc_live_send_sio(s, &b);
	}
	else if (!ok)
	{
		evc_live_send_error(s, "unauthorized", why ? why : "not authorized");
		s->closing = true;
		evc_live_kick(s);
	}
	else
	{
		for (int i = 0; i < s->plain_nrooms; i++)
			if (!evc_live_session_join(s, s->plain_rooms[i]))
				evc_live_send_error(s, "bad_rooms", "a room name is too long, or there are too many rooms");
		if (s->work_since != LIVE_NO_SINCE)
		{
			evc_live_work_queue(s, LIVE_WORK_CATCHUP);
			pfree(b.data);
			return;
		}
		evc_live_session_add_window(s, s->work_window);
	}
	pfree(b.data);
}

/* ---- catch-up ---- */

static SPIPlanPtr plan_catchup = NULL;

static void
run_catchup(LiveSession *s)
{
	Oid			types[4] = {TEXTARRAYOID, INT4OID, TEXTOID, TIMESTAMPTZOID};
	Datum		v[4];
	Datum	   *names;
	int			n = list_length(s->rooms);
	int			i = 0;
	ListCell   *lc;
	char	   *wname = evc_window_name(s->work_window);
	char	   *event = evc_live_window_event(s->work_window);
	uint64		rows;
	StringInfoData b;

	names = palloc(sizeof(Datum) * Max(n, 1));
	foreach(lc, s->rooms)
		names[i++] = CStringGetTextDatum(((LiveRoom *) lfirst(lc))->name);
	v[0] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
	v[1] = Int32GetDatum(s->work_window);
	v[2] = CStringGetTextDatum(wname);
	v[3] = TimestampTzGetDatum(s->work_since - LIVE_CATCHUP_SLACK_US);
	if (plan_catchup == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(
									"SELECT json_build_object('room', group_key, 'client', client, 'event', event_name, "
									"  'function', function, 'window', $3, "
									"  'start', to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
									"  'value', value, 'count', count, 'revision', revision)::text "
									"FROM evc.aggregates "
									"WHERE group_key = ANY ($1) AND window_length = make_interval(secs => $2) "
									"  AND updated_at >= $4 "
									"ORDER BY window_start, client, event_name, function, group_key "
									"LIMIT " CppAsString2(LIVE_CATCHUP_MAX_ROWS), 4, types);

		if (p == NULL)
			elog(ERROR, "could not prepare the live catch-up: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		plan_catchup = p;
	}
	if (SPI_execute_plan(plan_catchup, v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "the live catch-up failed");
	rows = SPI_processed;
	elog(DEBUG1, "live session %s: catch-up of %d rooms, window %d s, since %s: " UINT64_FORMAT " rows",
		 s->sid, n, s->work_window, timestamptz_to_str(s->work_since), rows);
	initStringInfo(&b);
	for (uint64 r = 0; r < rows; r++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
		char	   *json = TextDatumGetCString(d);

		resetStringInfo(&b);
		if (s->kind == LIVE_SIO)
		{
			appendStringInfoString(&b, "42[");
			evc_json_quote(&b, event);
			appendStringInfoChar(&b, ',');
			appendStringInfoString(&b, json);
			appendStringInfoChar(&b, ']');
		}
		else
			appendStringInfoString(&b, json);
		/* the catch-up is bounded by its LIMIT, not by the live queue */
		evc_live_send(s, b.data, b.len, true);
		pfree(json);
	}
	SPI_freetuptable(SPI_tuptable);
	evc_live_session_add_window(s, s->work_window);
	if (s->kind == LIVE_SIO && s->work_ack >= 0)
	{
		StringInfoData a;

		initStringInfo(&a);
		resetStringInfo(&b);
		appendStringInfo(&b, "{\"ok\":true,\"window_seconds\":%d,\"caught_up\":" UINT64_FORMAT "}",
						 s->work_window, rows);
		evc_sio_encode_ack(&a, s->work_ack, b.data);
		evc_live_send_sio(s, &a);
		pfree(a.data);
	}
	s->work_ack = -1;
	s->work_since = LIVE_NO_SINCE;
	pfree(b.data);
}

/* One session's work, in the round's transaction; errors fail it alone. */
static void
run_one(LiveSession *s)
{
	LiveWork	kind = s->work;
	char	   *why = NULL;

	evc_live_work_forget(s);
	if (kind == LIVE_WORK_AUTH)
	{
		bool		ok = check_key(s, &why);

		finish_auth(s, ok, why);
	}
	else if (kind == LIVE_WORK_CATCHUP)
		run_catchup(s);
}

static void
run_work(void)
{
	if (dlist_is_empty(&work))
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "evcollector live rooms: keys and catch-up");
	SPI_connect();
	while (!dlist_is_empty(&work))
	{
		LiveSession *s = dlist_head_element(LiveSession, work_node, &work);
		MemoryContext old = MemoryContextSwitchTo(round_cxt);

		PG_TRY();
		{
			BeginInternalSubTransaction(NULL);
			run_one(s);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(round_cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			ereport(LOG,
					(errmsg("evcollector live rooms: a client's %s failed: %s",
							s->work == LIVE_WORK_AUTH ? "key check" : "catch-up", edata->message)));
			evc_live_work_forget(s);
			evc_live_send_error(s, "internal_error", edata->message);
			s->closing = true;
			evc_live_kick(s);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	evc_gw_keys_forget();
}

/* ---- the ring ---- */

static void
catch_up_after_loss(LiveSession *s, void *arg)
{
	TimestampTz since = *(TimestampTz *) arg;

	for (int i = 0; i < s->nwindows; i++)
	{
		/* one window at a time: the others stay live meanwhile */
		if (s->in_work)
			break;
		s->work_window = s->windows[i];
		s->work_since = since;
		s->work_ack = -1;
		evc_live_work_queue(s, LIVE_WORK_CATCHUP);
	}
}

static void
drain_ring(void)
{
	StringInfoData buf;
	bool		lost;
	TimestampTz now = GetCurrentTimestamp();

	initStringInfo(&buf);
	for (;;)
	{
		int			pos = 0;
		EvcLiveRecord rec;

		resetStringInfo(&buf);
		evc_live_ring_read(&ring_cursor, &buf, LIVE_RING_READ_BYTES, &lost);
		if (lost)
		{
			n_lost++;
			ereport(LOG,
					(errmsg("evcollector live rooms fell a whole ring behind the aggregates sink"),
					 errdetail("Live clients catch up from evc.aggregates.")));
			evc_live_each_subscribed(catch_up_after_loss, &last_drain);
		}
		if (buf.len == 0)
			break;
		while (evc_live_ring_next(&buf, &pos, &rec))
			evc_live_fanout(rec.window_seconds, rec.room, rec.json, rec.json_len);
	}
	last_drain = now;
	pfree(buf.data);
}

void
evc_live_after_service(void)
{
	MemoryContext old;

	if (evc_live_cxt == NULL || evc_live_stopping)
		return;
	if (round_cxt == NULL)
		round_cxt = AllocSetContextCreate(evc_live_cxt, "evcollector live round",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(round_cxt);
	drain_ring();
	run_work();
	MemoryContextSwitchTo(old);
	MemoryContextReset(round_cxt);
}

/* From evc_live_start: become the ring's reader before the first round. */
void
evc_live_ring_begin(void)
{
	ring_cursor = evc_live_ring_attach();
	ring_attached = true;
	last_drain = GetCurrentTimestamp();
}

/* The server is rebuilt: the sessions waiting for work are gone. */
void
evc_live_db_reset(void)
{
	dlist_init(&work);
	round_cxt = NULL;			/* a child of the live rooms' context, deleted */
}

/*
 * Before the server's libwebsockets context is destroyed: its close
 * callbacks must not touch sessions, which go with the context (see
 * evc_live_start).
 */
void
evc_live_stop(void)
{
	evc_live_stopping = true;
	if (ring_attached)
		evc_live_ring_detach();
	ring_attached = false;
}

uint64
evc_live_lost_count(void)
{
	return n_lost;
}
