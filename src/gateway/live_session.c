/*
 * live_session.c
 *		Owns the live rooms' sessions: their ids, subscriptions (rooms and
 *		windows), bounded send queues, heartbeats, and the fan-out of each
 *		aggregate to the sessions of its room.
 *
 * The fan-out only appends to queues; writing happens when each socket is
 * writable, as libwebsockets wants: each writable callback sends what is
 * queued, up to 16 kB, in one write (live_lws.c).  So a slow client costs
 * only its own queue.  A queue that reaches
 * evcollector.live_queue_max is full: the client gets one last error
 * message (code slow_consumer) and is dropped once that is written, or
 * after five seconds if it reads nothing at all.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "gateway/live_int.h"
#include "gateway/live_server.h"

int			evc_live_ping_interval_ms = 25000;
int			evc_live_ping_timeout_ms = 20000;
int			evc_live_queue_max = 1000;
int			evc_live_max_payload = 1000000;

MemoryContext evc_live_cxt = NULL;
bool		evc_live_stopping = false;
struct lws_context *evc_live_context = NULL;

static MemoryContext callback_cxt = NULL;
static int	callback_depth = 0;
static HTAB *sessions = NULL;	/* sid -> LiveSession * */
static HTAB *rooms = NULL;		/* name -> LiveRoom */
static int	nsessions = 0;
static uint64 n_pushed = 0;
static uint64 n_dropped_slow = 0;
static uint64 n_closed = 0;

typedef struct SessionEntry
{
	char		sid[LIVE_SID_LEN + 1];
	LiveSession *s;
} SessionEntry;

typedef struct RoomEntry
{
	char		name[EVC_LIVE_MAX_ROOM_LEN + 1];
	LiveRoom	room;
} RoomEntry;

void
evc_live_define_gucs(void)
{
	DefineCustomIntVariable("evcollector.live_ping_interval",
							"Engine.IO ping interval of the live rooms.",
							"socket.io clients learn it in the handshake.",
							&evc_live_ping_interval_ms, 25000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.live_ping_timeout",
							"How long a live client may take to answer a ping before it is dropped.",
							NULL, &evc_live_ping_timeout_ms, 20000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.live_queue_max",
							"Messages queued for one live client before it is dropped as too slow.",
							NULL, &evc_live_queue_max, 1000, 10, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.live_max_payload",
							"Largest message or polling body a live client may send, in bytes.",
							"Larger WebSocket messages close the connection with 1009; larger polling bodies get 413.",
							&evc_live_max_payload, 1000000, 1024, 100 * 1000 * 1000,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

void
evc_live_start(struct lws_context *context)
{
	HASHCTL		ctl;

	/*
	 * The server is rebuilt in place when its settings change: what the
	 * last one held went with its libwebsockets context (every socket is
	 * closed, every timer gone), so its memory goes now.
	 */
	if (evc_live_cxt != NULL)
	{
		MemoryContextDelete(evc_live_cxt);
		sessions = rooms = NULL;
		nsessions = 0;
		callback_depth = 0;
		evc_live_db_reset();
	}
	evc_live_stopping = false;
	evc_live_context = context;
	evc_live_cxt = AllocSetContextCreate(TopMemoryContext, "evcollector live rooms",
										 ALLOCSET_DEFAULT_SIZES);
	callback_cxt = AllocSetContextCreate(evc_live_cxt, "evcollector live callback",
										 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = LIVE_SID_LEN + 1;
	ctl.entrysize = sizeof(SessionEntry);
	ctl.hcxt = evc_live_cxt;
	sessions = hash_create("evcollector live sessions", 1024, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = EVC_LIVE_MAX_ROOM_LEN + 1;
	ctl.entrysize = sizeof(RoomEntry);
	ctl.hcxt = evc_live_cxt;
	rooms = hash_create("evcollector live rooms", 1024, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	evc_live_ring_begin();
}

MemoryContext
evc_live_callback_enter(void)
{
	callback_depth++;
	return MemoryContextSwitchTo(callback_cxt);
}

void
evc_live_callback_leave(MemoryContext old)
{
	MemoryContextSwitchTo(old);
	if (--callback_depth == 0)
		MemoryContextReset(callback_cxt);
}

/* 20 characters of base64url from 15 random bytes. */
static void
make_sid(char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8		bytes[LIVE_SID_LEN];

	if (!pg_strong_random(bytes, sizeof(bytes)))
		elog(ERROR, "could not generate a live session id");
	for (int i = 0; i < LIVE_SID_LEN; i++)
		out[i] = alphabet[bytes[i] & 63];
	out[LIVE_SID_LEN] = '\0';
}

LiveSession *
evc_live_session_new(LiveKind kind)
{
	MemoryContext cxt = AllocSetContextCreate(evc_live_cxt, "evcollector live session",
											  ALLOCSET_SMALL_SIZES);
	LiveSession *s = MemoryContextAllocZero(cxt, sizeof(LiveSession));
	SessionEntry *e;
	bool		found;

	s->cxt = cxt;
	s->kind = kind;
	s->work_ack = -1;
	s->work_since = LIVE_NO_SINCE;
	dlist_init(&s->queue);
	do
	{
		make_sid(s->sid);
		e = hash_search(sessions, s->sid, HASH_ENTER, &found);
	} while (found);
	e->s = s;
	nsessions++;
	return s;
}

LiveSession *
evc_live_session_find(const char *sid)
{
	SessionEntry *e;

	if (strlen(sid) != LIVE_SID_LEN)
		return NULL;
	e = hash_search(sessions, sid, HASH_FIND, NULL);
	return e ? e->s : NULL;
}

static void
room_leave(LiveRoom *r, LiveSession *s)
{
	for (int i = 0; i < r->nsubs; i++)
		if (r->subs[i] == s)
		{
			r->subs[i] = r->subs[--r->nsubs];
			break;
		}
	if (r->nsubs == 0)
	{
		pfree(r->subs);
		hash_search(rooms, r->name, HASH_REMOVE, NULL);
	}
}

static void
session_free(LiveSession *s)
{
	MemoryContextDelete(s->cxt);
}

/*
 * Close a session: it leaves its rooms and the session table at once, its
 * sockets are closed, and its memory goes when no socket points to it.
 */
void
evc_live_session_close(LiveSession *s, const char *why)
{
	ListCell   *lc;

	if (s->dead)
		return;
	s->dead = true;
	n_closed++;
	if (why)
		elog(DEBUG1, "live session %s closed: %s", s->sid, why);
	foreach(lc, s->rooms)
		room_leave((LiveRoom *) lfirst(lc), s);
	s->rooms = NIL;
	lws_sul_cancel(&s->sul_ping);
	lws_sul_cancel(&s->sul_timeout);
	lws_sul_cancel(&s->sul_poll);
	evc_live_work_forget(s);
	hash_search(sessions, s->sid, HASH_REMOVE, NULL);
	nsessions--;
	/* the sockets see dead on their next callback and close */
	if (s->ws)
		lws_callback_on_writable(s->ws);
	if (s->poll)
		lws_callback_on_writable(s->poll);
	if (s->wsi_refs == 0)
		session_free(s);
}

void
evc_live_session_unref(LiveSession *s)
{
	Assert(s->wsi_refs > 0);
	s->wsi_refs--;
	if (s->wsi_refs == 0 && s->dead)
		session_free(s);
}

bool
evc_live_session_join(LiveSession *s, const char *name)
{
	RoomEntry  *e;
	bool		found;
	LiveRoom   *r;
	ListCell   *lc;
	MemoryContext old;

	if (strlen(name) > EVC_LIVE_MAX_ROOM_LEN || list_length(s->rooms) >= EVC_LIVE_MAX_ROOMS)
		return false;
	e = hash_search(rooms, name, HASH_ENTER, &found);
	r = &e->room;
	if (!found)
	{
		r->name = e->name;
		r->nsubs = 0;
		r->cap = 4;
		r->subs = MemoryContextAlloc(evc_live_cxt, sizeof(LiveSession *) * r->cap);
	}
	foreach(lc, s->rooms)
		if (lfirst(lc) == r)
			return true;		/* joined already */
	if (r->nsubs == r->cap)
	{
		r->cap *= 2;
		r->subs = repalloc(r->subs, sizeof(LiveSession *) * r->cap);
	}
	r->subs[r->nsubs++] = s;
	old = MemoryContextSwitchTo(s->cxt);
	s->rooms = lappend(s->rooms, r);
	MemoryContextSwitchTo(old);
	return true;
}

bool
evc_live_session_has_window(LiveSession *s, int seconds)
{
	for (int i = 0; i < s->nwindows; i++)
		if (s->windows[i] == seconds)
			return true;
	return false;
}

bool
evc_live_session_add_window(LiveSession *s, int seconds)
{
	if (evc_live_session_has_window(s, seconds))
		return true;
	if (s->nwindows == LIVE_MAX_WINDOWS)
		return false;
	s->windows[s->nwindows++] = seconds;
	return true;
}

/* Ask the socket that sends for this session to become writable. */
void
evc_live_kick(LiveSession *s)
{
	if (s->ws && (s->kind == LIVE_PLAIN || s->upgraded || s->poll == NULL))
		lws_callback_on_writable(s->ws);
	else if (s->poll)
		lws_callback_on_writable(s->poll);
}

static void ping_timeout(lws_sorted_usec_list_t *sul);

static void
queue_append(LiveSession *s, const char *data, int len)
{
	LiveMsg    *m = MemoryContextAlloc(s->cxt, offsetof(LiveMsg, buf) + LWS_PRE + len + 1);

	m->len = len;
	memcpy(LIVE_MSG_DATA(m), data, len);
	LIVE_MSG_DATA(m)[len] = '\0';
	dlist_push_tail(&s->queue, &m->node);
	s->qlen++;
}

/*
 * Queue one message (an Engine.IO packet for socket.io sessions, JSON for
 * plain ones).  A full queue drops the client: it gets one slow_consumer
 * error, the last thing it is sent.
 */
void
evc_live_send(LiveSession *s, const char *data, int len, bool bypass_bound)
{
	if (s->dead || s->closing)
		return;
	if (!bypass_bound && s->qlen >= evc_live_queue_max)
	{
		char		msg[160];

		n_dropped_slow++;
		snprintf(msg, sizeof(msg),
				 "%d messages are waiting to be sent to this client (evcollector.live_queue_max); it is dropped",
				 s->qlen);
		evc_live_send_error(s, "slow_consumer", msg);
		s->closing = true;
		/* a client that reads nothing at all is cut off after 5 s */
		if (s->ws)
			lws_set_timeout(s->ws, PENDING_TIMEOUT_CLOSE_SEND, 5);
		else
			lws_sul_schedule(evc_live_context, 0, &s->sul_timeout, ping_timeout, 5 * LWS_US_PER_SEC);
		return;
	}
	queue_append(s, data, len);
	evc_live_kick(s);
}

void
evc_live_send_sio(LiveSession *s, StringInfo sio)
{
	StringInfoData eio;

	initStringInfo(&eio);
	appendStringInfoChar(&eio, EVC_EIO_MESSAGE);
	appendBinaryStringInfo(&eio, sio->data, sio->len);
	evc_live_send(s, eio.data, eio.len, true);
	pfree(eio.data);
}

/* An error the client can read, in its protocol's shape; bypasses the bound. */
void
evc_live_send_error(LiveSession *s, const char *code, const char *message)
{
	StringInfoData b;

	initStringInfo(&b);
	if (s->kind == LIVE_SIO)
	{
		appendStringInfoString(&b, "42[\"live_error\",{\"code\":");
		evc_json_quote(&b, code);
		appendStringInfoString(&b, ",\"message\":");
		evc_json_quote(&b, message);
		appendStringInfoString(&b, "}]");
	}
	else
	{
		appendStringInfoString(&b, "{\"error\":{\"code\":");
		evc_json_quote(&b, code);
		appendStringInfoString(&b, ",\"message\":");
		evc_json_quote(&b, message);
		appendStringInfoString(&b, "}}");
	}
	queue_append(s, b.data, b.len);
	evc_live_kick(s);
	pfree(b.data);
}

/* ---- heartbeat ---- */

static void
ping_timeout(lws_sorted_usec_list_t *sul)
{
	LiveSession *s = (LiveSession *) ((char *) sul - offsetof(LiveSession, sul_timeout));
	MemoryContext old = evc_live_callback_enter();

	evc_live_session_close(s, s->closing ? "dropped as too slow" : "no pong within evcollector.live_ping_timeout");
	evc_live_callback_leave(old);
}

static void
ping_due(lws_sorted_usec_list_t *sul)
{
	LiveSession *s = (LiveSession *) ((char *) sul - offsetof(LiveSession, sul_ping));
	char		ping = EVC_EIO_PING;
	MemoryContext old;

	if (s->dead)
		return;
	old = evc_live_callback_enter();
	evc_live_send(s, &ping, 1, true);
	if (!s->pong_due)
	{
		s->pong_due = true;
		lws_sul_schedule(evc_live_context, 0, &s->sul_timeout, ping_timeout,
						 (lws_usec_t) evc_live_ping_timeout_ms * 1000);
	}
	lws_sul_schedule(evc_live_context, 0, &s->sul_ping, ping_due,
					 (lws_usec_t) evc_live_ping_interval_ms * 1000);
	evc_live_callback_leave(old);
}

void
evc_live_heartbeat_start(LiveSession *s)
{
	lws_sul_schedule(evc_live_context, 0, &s->sul_ping, ping_due,
					 (lws_usec_t) evc_live_ping_interval_ms * 1000);
}

void
evc_live_heartbeat_pong(LiveSession *s)
{
	s->pong_due = false;
	lws_sul_cancel(&s->sul_timeout);
}

/* ---- fan-out ---- */

/* live_aggregations_<minutes> for whole minutes, _<seconds>s otherwise. */
char *
evc_live_window_event(int seconds)
{
	if (seconds % 60 == 0)
		return psprintf("live_aggregations_%d", seconds / 60);
	return psprintf("live_aggregations_%ds", seconds);
}

/* consume_<N>_min_aggregations -> N * 60, or -1. */
int
evc_live_window_from_event(const char *event)
{
	int			n = 0;
	const char *p;

	if (strncmp(event, "consume_", 8) != 0)
		return -1;
	for (p = event + 8; *p >= '0' && *p <= '9' && n < 100000; p++)
		n = n * 10 + (*p - '0');
	if (p == event + 8 || n <= 0 || strcmp(p, "_min_aggregations") != 0)
		return -1;
	return n * 60;
}

void
evc_live_fanout(int window_seconds, const char *room, const char *json, int json_len)
{
	RoomEntry  *e;
	StringInfoData sio;
	char	   *event;

	if (rooms == NULL || strlen(room) > EVC_LIVE_MAX_ROOM_LEN)
		return;
	e = hash_search(rooms, room, HASH_FIND, NULL);
	if (e == NULL)
		return;
	event = evc_live_window_event(window_seconds);
	initStringInfo(&sio);
	appendStringInfoString(&sio, "42[");
	evc_json_quote(&sio, event);
	appendStringInfoChar(&sio, ',');
	appendBinaryStringInfo(&sio, json, json_len);
	appendStringInfoChar(&sio, ']');
	/* evc_live_send may drop a session, which leaves the room: walk a copy */
	{
		int			n = e->room.nsubs;
		LiveSession **subs = palloc(sizeof(LiveSession *) * n);

		memcpy(subs, e->room.subs, sizeof(LiveSession *) * n);
		for (int i = 0; i < n; i++)
		{
			LiveSession *s = subs[i];

			if (s->dead || !evc_live_session_has_window(s, window_seconds))
				continue;
			if (s->kind == LIVE_SIO)
				evc_live_send(s, sio.data, sio.len, false);
			else
				evc_live_send(s, json, json_len, false);
			n_pushed++;
		}
		pfree(subs);
	}
	pfree(sio.data);
	pfree(event);
}

/* Every live session with at least one window (for a catch-up after loss). */
void
evc_live_each_subscribed(void (*fn) (LiveSession *s, void *arg), void *arg)
{
	HASH_SEQ_STATUS st;
	SessionEntry *e;
	List	   *todo = NIL;
	ListCell   *lc;

	if (sessions == NULL)
		return;
	hash_seq_init(&st, sessions);
	while ((e = hash_seq_search(&st)) != NULL)
		if (e->s->nwindows > 0 && !e->s->dead)
			todo = lappend(todo, e->s);
	foreach(lc, todo)
		fn((LiveSession *) lfirst(lc), arg);
	list_free(todo);
}

int
evc_live_session_count(void)
{
	return nsessions;
}

void
evc_live_counters(uint64 *pushed, uint64 *dropped_slow, uint64 *closed)
{
	*pushed = n_pushed;
	*dropped_slow = n_dropped_slow;
	*closed = n_closed;
}
