/*
 * live_sio.c
 *		Owns what a socket.io client's packets mean: the Engine.IO packets of
 *		a session (pong, probe, upgrade, close) and the Socket.IO ones
 *		(CONNECT with auth, DISCONNECT, and the seed's events:
 *		register_room and consume_N_min_aggregations, with their acks).
 *
 * A packet that does not decode is a protocol error: the client is told
 * why (a live_error event) and the session is closed, as socket.io's own
 * server closes on a parse error.  An unknown event is not: the client
 * gets live_error (and a failed ack) and stays connected.
 */
#include "postgres.h"

#include "kafka/proto.h"

#include "gateway/live_int.h"

static void
ack(LiveSession *s, int64 id, const char *json)
{
	StringInfoData b;

	if (id < 0)
		return;
	initStringInfo(&b);
	evc_sio_encode_ack(&b, id, json);
	evc_live_send_sio(s, &b);
	pfree(b.data);
}

/* An event the client got wrong: live_error, and a failed ack if it asked. */
static void
event_error(LiveSession *s, int64 ack_id, const char *code, const char *message)
{
	StringInfoData b;

	evc_live_send_error(s, code, message);
	if (ack_id < 0)
		return;
	initStringInfo(&b);
	appendStringInfoString(&b, "{\"ok\":false,\"error\":{\"code\":");
	evc_json_quote(&b, code);
	appendStringInfoString(&b, ",\"message\":");
	evc_json_quote(&b, message);
	appendStringInfoString(&b, "}}");
	ack(s, ack_id, b.data);
	pfree(b.data);
}

static void
protocol_error(LiveSession *s, const char *why)
{
	evc_live_send_error(s, "protocol_error", why);
	s->closing = true;
	evc_live_kick(s);
}

static void
on_register_room(LiveSession *s, EvcSioPacket *p)
{
	char	  **names;
	int			n;
	const char *why;
	char		buf[64];

	if (p->nargs < 1)
	{
		event_error(s, p->ack_id, "bad_arguments", "register_room takes an array of room identifiers");
		return;
	}
	why = evc_json_string_array(p->args[0], EVC_LIVE_MAX_ROOMS, EVC_LIVE_MAX_ROOM_LEN, &names, &n);
	if (why)
	{
		event_error(s, p->ack_id, "bad_arguments", psprintf("register_room: %s", why));
		return;
	}
	for (int i = 0; i < n; i++)
		if (!evc_live_session_join(s, names[i]))
		{
			event_error(s, p->ack_id, "too_many_rooms",
						psprintf("a client may join at most %d rooms", EVC_LIVE_MAX_ROOMS));
			return;
		}
	snprintf(buf, sizeof(buf), "{\"ok\":true,\"rooms\":%d}", list_length(s->rooms));
	ack(s, p->ack_id, buf);
}

/*
 * The catch-up point of consume_N: {"since": time} or {"last": aggregate}
 * (the last push the client saw; its window start bounds what it missed,
 * since every aggregate lands after its window starts).  False with *why
 * on bad input; true with *since LIVE_NO_SINCE when there is none.
 */
static bool
catchup_point(EvcSlice arg, TimestampTz *since, const char **why)
{
	char	   *text = NULL;
	EvcSlice	last;

	*since = LIVE_NO_SINCE;
	*why = evc_json_object_field(arg, "since", &text);
	if (*why == NULL && text == NULL)
	{
		*why = evc_json_object_slice(arg, "last", &last);
		if (*why == NULL && last.p != NULL)
		{
			*why = evc_json_object_field(last, "start", &text);
			if (*why == NULL && text == NULL)
				*why = "\"last\" has no \"start\"";
		}
	}
	if (*why)
		return false;
	if (text && !evc_parse_timestamp(text, since))
	{
		*why = "the catch-up time is not a timestamp";
		return false;
	}
	return true;
}

static void
on_consume(LiveSession *s, EvcSioPacket *p, int seconds)
{
	TimestampTz since = LIVE_NO_SINCE;
	const char *why = NULL;
	char	   *wname;

	if (p->nargs >= 1 && !(p->args[0].len == 4 && memcmp(p->args[0].p, "null", 4) == 0) &&
		!catchup_point(p->args[0], &since, &why))
	{
		event_error(s, p->ack_id, "bad_arguments", psprintf("%s: %s", p->event, why));
		return;
	}
	if (evc_live_session_has_window(s, seconds) && since == LIVE_NO_SINCE)
	{
		ack(s, p->ack_id, "{\"ok\":true}");
		return;
	}
	if (since != LIVE_NO_SINCE)
	{
		if (s->in_work)
		{
			event_error(s, p->ack_id, "busy", "a catch-up is already running for this client");
			return;
		}
		/* pushes of this window start after the catch-up is queued */
		s->work_window = seconds;
		s->work_since = since;
		s->work_ack = p->ack_id;
		evc_live_work_queue(s, LIVE_WORK_CATCHUP);
		return;
	}
	if (!evc_live_session_add_window(s, seconds))
	{
		event_error(s, p->ack_id, "too_many_windows", "a client may consume at most 4 windows");
		return;
	}
	wname = psprintf("{\"ok\":true,\"window_seconds\":%d}", seconds);
	ack(s, p->ack_id, wname);
	pfree(wname);
}

static void
on_event(LiveSession *s, EvcSioPacket *p)
{
	int			seconds;

	if (strcmp(p->event, "register_room") == 0)
		on_register_room(s, p);
	else if ((seconds = evc_live_window_from_event(p->event)) > 0)
		on_consume(s, p, seconds);
	else
		event_error(s, p->ack_id, "unknown_event",
					psprintf("\"%s\" is not an event of the live rooms (register_room, consume_N_min_aggregations)",
							 p->event));
}

static void
on_connect(LiveSession *s, EvcSioPacket *p)
{
	StringInfoData b;
	char	   *token = NULL;

	initStringInfo(&b);
	if (!(p->nsp.len == 1 && p->nsp.p[0] == '/'))
	{
		evc_sio_encode_connect_error(&b, p->nsp, "Invalid namespace");
		evc_live_send_sio(s, &b);
		pfree(b.data);
		return;
	}
	if (s->sio_connected || s->in_work)
	{
		protocol_error(s, "CONNECT sent twice");
		return;
	}
	(void) evc_sio_connect_token(p->data, &token);
	if (token)
		s->auth_token = MemoryContextStrdup(s->cxt, token);
	evc_live_work_queue(s, LIVE_WORK_AUTH);
	pfree(b.data);
}

void
evc_live_sio_message(LiveSession *s, const char *data, size_t len)
{
	EvcSioPacket p;
	const char *why = evc_sio_decode(data, len, &p);

	if (why)
	{
		protocol_error(s, why);
		return;
	}
	switch (p.type)
	{
		case EVC_SIO_CONNECT:
			on_connect(s, &p);
			break;
		case EVC_SIO_DISCONNECT:
			evc_live_session_close(s, "the client disconnected");
			break;
		case EVC_SIO_EVENT:
			if (!s->sio_connected)
				event_error(s, p.ack_id, "not_connected", "send CONNECT (with auth) before events");
			else
				on_event(s, &p);
			break;
		case EVC_SIO_ACK:
			break;				/* the server asks for no acks */
		default:
			protocol_error(s, "unexpected Socket.IO packet type");
	}
	evc_sio_packet_free(&p);
}

/* One Engine.IO packet of a socket.io session, from either transport. */
void
evc_live_eio_packet(LiveSession *s, EvcEioPacket *p, bool over_ws)
{
	if (s->dead)
		return;
	switch (p->type)
	{
		case EVC_EIO_PING:
			/* Engine.IO 4 clients ping only to probe a new WebSocket */
			if (over_ws && p->len == 5 && memcmp(p->data, "probe", 5) == 0)
			{
				s->probe_pending = true;
				lws_callback_on_writable(s->ws);
			}
			else
				protocol_error(s, "clients send ping only as the upgrade probe");
			break;
		case EVC_EIO_PONG:
			evc_live_heartbeat_pong(s);
			break;
		case EVC_EIO_MESSAGE:
			if (p->binary)
				protocol_error(s, "binary messages are not accepted");
			else
				evc_live_sio_message(s, p->data, p->len);
			break;
		case EVC_EIO_UPGRADE:
			if (!over_ws || s->upgraded)
			{
				protocol_error(s, "upgrade packet outside an upgrade");
				break;
			}
			s->upgraded = true;
			if (s->poll)
			{
				s->poll_noop = true;
				lws_callback_on_writable(s->poll);
			}
			evc_live_kick(s);
			break;
		case EVC_EIO_CLOSE:
			evc_live_session_close(s, "the client closed");
			break;
		case EVC_EIO_NOOP:
			break;
		default:
			protocol_error(s, "unexpected Engine.IO packet type");
	}
}
