/*
 * live_lws.c
 *		Owns the live rooms' transports on libwebsockets: the Engine.IO
 *		long-polling transport (GET and POST /socket.io/?EIO=4&
 *		transport=polling&sid=...), Engine.IO over WebSocket (alone, or as
 *		the upgrade of a polling session), the plain WebSocket /v1/live,
 *		and the mounts that serve the /live and /status pages as files.
 *
 * libwebsockets does the HTTP and WebSocket framing; this file reads only
 * query arguments and message bodies, and hands the packets to
 * live_sio.c.  Each connection's user data is one pointer to a LiveWsi,
 * allocated here, which names the session the connection serves.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "kafka/proto.h"
#include "gateway/gateway_int.h"
#include "gateway/live_int.h"
#include "gateway/live_server.h"

typedef enum LiveWsiKind
{
	WSI_NONE,
	WSI_POLL_GET,				/* a long poll: answered when there is data */
	WSI_POLL_POST,				/* packets from the client: answered "ok" */
	WSI_ANSWER,					/* an answer made at once (handshake, errors) */
	WSI_WS						/* a WebSocket of a session */
} LiveWsiKind;

typedef struct LiveWsi
{
	LiveWsiKind kind;
	LiveSession *s;
	StringInfoData body;		/* POST body, or the answer */
	int			status;
	const char *ctype;
	bool		close_after;
} LiveWsi;

/* ---- mounts: the transports, and the pages as files ---- */

static char pages_dir[MAXPGPATH];

static struct lws_http_mount mount_status;	/* the pages */
static struct lws_http_mount mount_live;
static struct lws_http_mount mount_v1_live;
static struct lws_http_mount mount_socketio;

static const struct lws_protocol_vhost_options pvo_default = {NULL, NULL, "default", "1"};
static const struct lws_protocol_vhost_options pvo_live = {NULL, &pvo_default, EVC_LIVE_PROTOCOL_NAME, ""};

const struct lws_protocol_vhost_options *const evc_live_pvo = &pvo_live;

static void
mount_callback(struct lws_http_mount *m, const struct lws_http_mount *next, const char *point)
{
	memset(m, 0, sizeof(*m));
	m->mount_next = next;
	m->mountpoint = point;
	m->mountpoint_len = (unsigned char) strlen(point);
	m->origin = EVC_LIVE_PROTOCOL_NAME;
	m->protocol = EVC_LIVE_PROTOCOL_NAME;
	m->origin_protocol = LWSMPRO_CALLBACK;
}

/*
 * The mounts, chained: /socket.io, /v1/live, /live and /status to the live
 * protocol.  The pages are files installed with the extension
 * (share/extension/evcollector_pages), served by libwebsockets from this
 * callback rather than by a file mount, which would redirect /live to
 * /live/ and lose the query string the pages read.
 */
const struct lws_http_mount *
evc_live_mounts(void)
{
	char		share[MAXPGPATH];

	get_share_path(my_exec_path, share);
	snprintf(pages_dir, sizeof(pages_dir), "%s/extension/evcollector_pages", share);
	mount_callback(&mount_status, NULL, "/status");
	mount_callback(&mount_live, &mount_status, "/live");
	mount_callback(&mount_v1_live, &mount_live, "/v1/live");
	mount_callback(&mount_socketio, &mount_v1_live, "/socket.io");
	return &mount_socketio;
}

/* The page or asset a path names, or false; only the files we ship. */
static bool
page_file(const char *uri, char *path, const char **mime)
{
	static const struct
	{
		const char *uri;
		const char *file;
		const char *mime;
	}			files[] = {
		{"/live", "live.html", "text/html; charset=utf-8"},
		{"/live/", "live.html", "text/html; charset=utf-8"},
		{"/status", "status.html", "text/html; charset=utf-8"},
		{"/status/", "status.html", "text/html; charset=utf-8"},
		{"/live/live.js", "live.js", "text/javascript; charset=utf-8"},
		{"/live/status.js", "status.js", "text/javascript; charset=utf-8"},
		{"/live/style.css", "style.css", "text/css; charset=utf-8"},
	};

	for (int i = 0; i < lengthof(files); i++)
		if (strcmp(uri, files[i].uri) == 0)
		{
			snprintf(path, MAXPGPATH, "%s/%s", pages_dir, files[i].file);
			*mime = files[i].mime;
			return true;
		}
	return false;
}

/* ---- per-connection state ---- */

static LiveWsi *
wsi_state(void *user)
{
	LiveWsi   **pp = (LiveWsi **) user;

	if (pp == NULL)
		return NULL;
	if (*pp == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(evc_live_cxt);

		*pp = palloc0(sizeof(LiveWsi));
		initStringInfo(&(*pp)->body);
		MemoryContextSwitchTo(old);
	}
	return *pp;
}

static void
wsi_attach(LiveWsi *w, LiveSession *s, LiveWsiKind kind)
{
	w->s = s;
	w->kind = kind;
	s->wsi_refs++;
}

static void
wsi_release(void *user)
{
	LiveWsi   **pp = (LiveWsi **) user;
	LiveWsi    *w;

	if (pp == NULL || *pp == NULL)
		return;
	w = *pp;
	if (w->s)
		evc_live_session_unref(w->s);
	pfree(w->body.data);
	pfree(w);
	*pp = NULL;
}

/*
 * A query argument, or NULL (buf holds it).  libwebsockets copies each
 * argument into buf on its way to the one named, and stops at the first
 * that does not fit, so buf must hold the longest argument of the query,
 * not only the one wanted.
 */
#define URLARG_BUF (EVC_LIVE_MAX_ROOMS * 64)

static const char *
urlarg(struct lws *wsi, const char *name, char *buf)
{
	return lws_get_urlarg_by_name(wsi, name, buf, URLARG_BUF);
}

/* ---- HTTP answers ---- */

static void
answer(struct lws *wsi, LiveWsi *w, int status, const char *ctype, const char *body, int len)
{
	w->kind = w->kind == WSI_NONE ? WSI_ANSWER : w->kind;
	w->status = status;
	w->ctype = ctype;
	resetStringInfo(&w->body);
	appendBinaryStringInfo(&w->body, body, len);
	lws_callback_on_writable(wsi);
}

/* Engine.IO's error answer: 400 with {"code": n, "message": "..."}. */
static void
answer_eio_error(struct lws *wsi, LiveWsi *w, int code, const char *message)
{
	StringInfoData b;

	initStringInfo(&b);
	appendStringInfo(&b, "{\"code\":%d,\"message\":", code);
	evc_json_quote(&b, message);
	appendStringInfoChar(&b, '}');
	w->kind = WSI_ANSWER;
	answer(wsi, w, code == 4 ? 403 : 400, "application/json", b.data, b.len);
	pfree(b.data);
}

static int
write_answer(struct lws *wsi, int status, const char *ctype, const char *body, int len,
			 bool close_after)
{
	size_t		room = LWS_PRE + 512 + len;
	unsigned char *buf = palloc(room);
	unsigned char *start = buf + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = buf + room;
	int			rc = 0;

	if (lws_add_http_common_headers(wsi, status, ctype, len, &p, end) ||
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
									 (const unsigned char *) "no-store", 8, &p, end) ||
		(close_after &&
		 lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
									  (const unsigned char *) "close", 5, &p, end)) ||
		lws_finalize_http_header(wsi, &p, end))
		rc = -1;
	else
	{
		memcpy(p, body, len);
		p += len;
		if (lws_write(wsi, start, p - start, LWS_WRITE_HTTP_HEADERS) != (int) (p - start))
			rc = -1;
	}
	pfree(buf);
	if (rc == 0 && (close_after || lws_http_transaction_completed(wsi)))
		rc = -1;
	return rc;
}

/* The queued packets of a session, joined for a polling answer. */
static void
poll_payload(LiveSession *s, StringInfo out)
{
	while (!dlist_is_empty(&s->queue))
	{
		LiveMsg    *m = dlist_head_element(LiveMsg, node, &s->queue);

		if (out->len > 0 && out->len + 1 + m->len > evc_live_max_payload)
			break;
		if (out->len > 0)
			appendStringInfoChar(out, EVC_EIO_SEPARATOR);
		appendBinaryStringInfo(out, LIVE_MSG_DATA(m), m->len);
		dlist_delete(&m->node);
		s->qlen--;
		pfree(m);
	}
}

static int
poll_writeable(struct lws *wsi, LiveWsi *w)
{
	LiveSession *s = w->s;
	StringInfoData b;
	int			rc;

	if (s->poll != wsi)
		return 0;
	initStringInfo(&b);
	if (s->poll_noop)
	{
		appendStringInfoChar(&b, EVC_EIO_NOOP);
		s->poll_noop = false;
	}
	else if (!dlist_is_empty(&s->queue))
		poll_payload(s, &b);
	else if (s->dead || s->closing)
		appendStringInfoChar(&b, EVC_EIO_CLOSE);
	else
	{
		pfree(b.data);
		return 0;				/* woken with nothing to say: keep waiting */
	}
	s->poll = NULL;
	lws_sul_cancel(&s->sul_poll);
	rc = write_answer(wsi, 200, "text/plain; charset=UTF-8", b.data, b.len, false);
	pfree(b.data);
	if (s->closing && dlist_is_empty(&s->queue))
		evc_live_session_close(s, "dropped after its last message");
	/* the connection may carry the next poll: it no longer holds this one */
	evc_live_session_unref(s);
	w->s = NULL;
	w->kind = WSI_NONE;
	return rc;
}

/* ---- the polling transport ---- */

static void
poll_expires(lws_sorted_usec_list_t *sul)
{
	LiveSession *s = (LiveSession *) ((char *) sul - offsetof(LiveSession, sul_poll));

	if (s->dead || s->poll == NULL)
		return;
	s->poll_noop = true;
	lws_callback_on_writable(s->poll);
}

static void
eio_handshake(struct lws *wsi, LiveWsi *w)
{
	LiveSession *s = evc_live_session_new(LIVE_SIO);
	StringInfoData b;

	initStringInfo(&b);
	evc_eio_encode_open(&b, s->sid, evc_live_ping_interval_ms, evc_live_ping_timeout_ms,
						evc_live_max_payload, true);
	s->eio_open_sent = true;
	evc_live_heartbeat_start(s);
	w->kind = WSI_ANSWER;
	answer(wsi, w, 200, "text/plain; charset=UTF-8", b.data, b.len);
	pfree(b.data);
}

static int
on_http(struct lws *wsi, LiveWsi *w, const char *mount_path)
{
	char		uri[64];
	char	   *arg = palloc(URLARG_BUF);
	const char *eio;
	const char *transport;
	const char *sid;
	bool		post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
	LiveSession *s;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), post ? WSI_TOKEN_POST_URI : WSI_TOKEN_GET_URI) < 0)
		uri[0] = '\0';
	if (strncmp(uri, "/live", 5) == 0 || strncmp(uri, "/status", 7) == 0)
	{
		char		path[MAXPGPATH];
		const char *mime;
		const char *msg = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such page\"}}";

		if (!post && page_file(uri, path, &mime))
		{
			int			rc = lws_serve_http_file(wsi, path, mime, NULL, 0);

			/* 0: being sent; above 0: done already; below 0 (no file): closed */
			if (rc < 0)
				return -1;
			return rc > 0 && lws_http_transaction_completed(wsi) ? -1 : 0;
		}
		answer(wsi, w, 404, "application/json", msg, strlen(msg));
		return 0;
	}
	if (strncmp(uri, "/v1/live", 8) == 0)
	{
		const char *msg = "{\"error\":{\"code\":\"upgrade_required\",\"message\":\"/v1/live is a WebSocket: connect with Upgrade: websocket\"}}";

		answer(wsi, w, 426, "application/json", msg, strlen(msg));
		return 0;
	}
	if (!post && lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
	{
		answer_eio_error(wsi, w, 2, "Bad handshake method");
		return 0;
	}
	eio = urlarg(wsi, "EIO=", arg);
	if (eio == NULL || strcmp(eio, "4") != 0)
	{
		answer_eio_error(wsi, w, 5, "Unsupported protocol version");
		return 0;
	}
	transport = urlarg(wsi, "transport=", arg);
	if (transport == NULL || strcmp(transport, "polling") != 0)
	{
		answer_eio_error(wsi, w, 0, "Transport unknown");
		return 0;
	}
	sid = urlarg(wsi, "sid=", arg);
	if (sid == NULL)
	{
		if (post)
			answer_eio_error(wsi, w, 1, "Session ID unknown");
		else
			eio_handshake(wsi, w);
		return 0;
	}
	s = evc_live_session_find(sid);
	if (s == NULL || s->kind != LIVE_SIO)
	{
		answer_eio_error(wsi, w, 1, "Session ID unknown");
		return 0;
	}
	if (s->upgraded)
	{
		answer_eio_error(wsi, w, 3, "Bad request");
		return 0;
	}
	if (post)
	{
		wsi_attach(w, s, WSI_POLL_POST);
		return 0;				/* the body follows */
	}
	if (s->poll != NULL)
	{
		/* Engine.IO: overlapping polls end the session */
		answer_eio_error(wsi, w, 3, "Bad request");
		evc_live_session_close(s, "two polls at once");
		return 0;
	}
	wsi_attach(w, s, WSI_POLL_GET);
	s->poll = wsi;
	/*
	 * libwebsockets closes a request that holds its header buffer longer
	 * than evcollector.gateway_read_timeout, and a waiting poll holds it:
	 * answer it with a noop a second before, and the client polls again.
	 */
	lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
	lws_sul_schedule(evc_live_context, 0, &s->sul_poll, poll_expires,
					 (lws_usec_t) Max(evc_gw_read_timeout_s * 1000 - 1000, 500) * 1000);
	if (!dlist_is_empty(&s->queue) || s->closing)
		lws_callback_on_writable(wsi);
	return 0;
}

static int
on_http_body(struct lws *wsi, LiveWsi *w, const char *in, size_t len)
{
	if (w->kind != WSI_POLL_POST)
		return 0;
	if (w->body.len + len > (size_t) evc_live_max_payload)
	{
		const char *msg = "{\"code\":3,\"message\":\"Bad request: payload too large\"}";

		w->kind = WSI_ANSWER;
		w->close_after = true;
		answer(wsi, w, 413, "application/json", msg, strlen(msg));
		evc_live_session_close(w->s, "a polling body over evcollector.live_max_payload");
		return 0;
	}
	appendBinaryStringInfo(&w->body, in, len);
	return 0;
}

static int
on_http_body_done(struct lws *wsi, LiveWsi *w)
{
	LiveSession *s = w->s;
	size_t		pos = 0;
	EvcEioPacket p;
	const char *why;
	char	   *body;
	int			len;

	if (w->kind != WSI_POLL_POST || s == NULL)
		return 0;
	/* the packets point into the body: keep a copy while they are handled */
	len = w->body.len;
	body = pnstrdup(w->body.data, len);
	while (!s->dead && (why = evc_eio_payload_next(body, len, &pos, &p)) == NULL && p.type != 0)
		evc_live_eio_packet(s, &p, false);
	if (why != NULL && !s->dead)
	{
		evc_live_send_error(s, "protocol_error", why);
		s->closing = true;
	}
	pfree(body);
	w->kind = WSI_ANSWER;
	answer(wsi, w, 200, "text/html", "ok", 2);
	return 0;
}

/* ---- WebSocket ---- */

static bool
ws_path_ok(struct lws *wsi)
{
	char		uri[64];

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0)
		return false;
	return strcmp(uri, "/socket.io/") == 0 || strcmp(uri, "/socket.io") == 0 ||
		strcmp(uri, "/v1/live") == 0;
}

/* /v1/live?rooms=a,b&window=1m[&since=...][&token=...] */
static int
plain_established(struct lws *wsi, LiveWsi *w)
{
	LiveSession *s = evc_live_session_new(LIVE_PLAIN);
	char	   *buf = palloc(URLARG_BUF);
	const char *v;
	int			seconds = 60;
	MemoryContext old;

	wsi_attach(w, s, WSI_WS);
	s->ws = wsi;
	old = MemoryContextSwitchTo(s->cxt);
	v = urlarg(wsi, "window=", buf);
	if (v)
	{
		char	   *end;
		long		n = strtol(v, &end, 10);

		if (n > 0 && n <= 7 * 24 * 60 && strcmp(end, "m") == 0)
			seconds = (int) n * 60;
		else if (n > 0 && n <= 7 * 24 * 3600 && strcmp(end, "s") == 0)
			seconds = (int) n;
		else if (n > 0 && n <= 7 * 24 && strcmp(end, "h") == 0)
			seconds = (int) n * 3600;
		else
		{
			evc_live_send_error(s, "bad_window", "window is a number of minutes (1m), seconds (30s) or hours (1h)");
			s->closing = true;
		}
	}
	s->work_window = seconds;
	v = urlarg(wsi, "since=", buf);
	if (v && !s->closing && !evc_parse_timestamp(v, &s->work_since))
	{
		evc_live_send_error(s, "bad_since", "since is not a timestamp");
		s->closing = true;
	}
	v = urlarg(wsi, "token=", buf);
	if (v)
		s->auth_token = pstrdup(v);
	v = urlarg(wsi, "rooms=", buf);
	if (!s->closing && (v == NULL || *v == '\0'))
	{
		evc_live_send_error(s, "bad_rooms", "rooms is a comma-separated list of room identifiers");
		s->closing = true;
	}
	else if (!s->closing)
	{
		char	   *list = pstrdup(v);
		char	   *save;

		s->plain_rooms = palloc(sizeof(char *) * EVC_LIVE_MAX_ROOMS);
		for (char *r = strtok_r(list, ",", &save); r && s->plain_nrooms < EVC_LIVE_MAX_ROOMS;
			 r = strtok_r(NULL, ",", &save))
			s->plain_rooms[s->plain_nrooms++] = r;
	}
	MemoryContextSwitchTo(old);
	pfree(buf);
	elog(DEBUG1, "live session %s: /v1/live, %d rooms, window %d s, since %s",
		 s->sid, s->plain_nrooms, s->work_window, s->work_since != LIVE_NO_SINCE ? timestamptz_to_str(s->work_since) : "-");
	if (!s->closing)
		evc_live_work_queue(s, LIVE_WORK_AUTH);
	return 0;
}

static int
ws_established(struct lws *wsi, LiveWsi *w)
{
	char		uri[64];
	char	   *arg = palloc(URLARG_BUF);
	const char *v;
	LiveSession *s;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0)
		return -1;
	if (strcmp(uri, "/v1/live") == 0)
		return plain_established(wsi, w);
	v = urlarg(wsi, "EIO=", arg);
	if (v == NULL || strcmp(v, "4") != 0)
		return -1;
	v = urlarg(wsi, "transport=", arg);
	if (v == NULL || strcmp(v, "websocket") != 0)
		return -1;
	v = urlarg(wsi, "sid=", arg);
	if (v)
	{
		/* the upgrade of a polling session: probe, then "5" */
		s = evc_live_session_find(v);
		if (s == NULL || s->kind != LIVE_SIO || s->ws != NULL || s->upgraded)
			return -1;
		wsi_attach(w, s, WSI_WS);
		s->ws = wsi;
		return 0;
	}
	/* WebSocket alone: the open packet is the first message */
	s = evc_live_session_new(LIVE_SIO);
	wsi_attach(w, s, WSI_WS);
	s->ws = wsi;
	s->upgraded = true;
	{
		StringInfoData b;

		initStringInfo(&b);
		evc_eio_encode_open(&b, s->sid, evc_live_ping_interval_ms, evc_live_ping_timeout_ms,
							evc_live_max_payload, false);
		evc_live_send(s, b.data, b.len, true);
		pfree(b.data);
	}
	s->eio_open_sent = true;
	evc_live_heartbeat_start(s);
	return 0;
}

static int
ws_receive(struct lws *wsi, LiveWsi *w, const char *in, size_t len)
{
	LiveSession *s = w->s;

	if (s == NULL || s->dead)
		return -1;
	if (s->rx.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(s->cxt);

		initStringInfo(&s->rx);
		MemoryContextSwitchTo(old);
	}
	if (s->rx.len + len > (size_t) evc_live_max_payload)
	{
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
						 (unsigned char *) "message over evcollector.live_max_payload", 41);
		evc_live_session_close(s, "a message over evcollector.live_max_payload");
		return -1;
	}
	appendBinaryStringInfo(&s->rx, in, len);
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
		return 0;
	if (s->kind == LIVE_PLAIN)
		evc_live_send_error(s, "no_messages", "/v1/live takes no messages: rooms and window are in its URL");
	else
	{
		EvcEioPacket p;
		const char *why = evc_eio_decode(s->rx.data, s->rx.len, lws_frame_is_binary(wsi), &p);

		if (why)
		{
			evc_live_send_error(s, "protocol_error", why);
			s->closing = true;
		}
		else
			evc_live_eio_packet(s, &p, true);
	}
	if (!s->dead)
		resetStringInfo(&s->rx);
	return 0;
}

/*
 * What one writable callback may send at once: the protocol's rx_buffer_size
 * (EVC_LIVE_PROTOCOL), which is also how much lws_issue_raw hands the socket
 * in one go, so a batch is one send() and lws copies nothing aside unless the
 * socket itself is full.
 */
#define LIVE_WS_BATCH_BYTES 16384
/* A text frame's header, server to client (no mask): at most 10 bytes. */
#define LIVE_WS_FRAME_HEADER_MAX 10

static unsigned char ws_batch[LWS_PRE + LIVE_WS_BATCH_BYTES];

static int
ws_frame_header(unsigned char *p, int len)
{
	p[0] = 0x81;				/* FIN, opcode 1: text (RFC 6455, 5.2) */
	if (len < 126)
	{
		p[1] = (unsigned char) len;
		return 2;
	}
	if (len < 65536)
	{
		p[1] = 126;
		p[2] = (unsigned char) (len >> 8);
		p[3] = (unsigned char) len;
		return 4;
	}
	p[1] = 127;
	for (int i = 0; i < 8; i++)
		p[2 + i] = (unsigned char) (((uint64) len) >> (56 - 8 * i));
	return 10;
}

/*
 * Send what is queued: as many whole messages as fit in one batch, each its
 * own text frame, in one write.  One message per writable callback would
 * cost a poll round and a send() per message; a client of two rooms that
 * land together would get its pushes one round apart.  The frames are
 * framed here and written raw (LWS_WRITE_RAW goes straight to
 * lws_issue_raw, which keeps any unsent tail and flushes it before the next
 * writable callback), which is only right because the live protocol
 * negotiates no extension (no permessage-deflate): frames go out as they
 * are built.  A message larger than a batch goes alone through lws_write.
 */
static int
ws_write_queue(struct lws *wsi, LiveSession *s)
{
	unsigned char *start = ws_batch + LWS_PRE;
	int			used = 0;
	LiveMsg    *m = dlist_head_element(LiveMsg, node, &s->queue);

	if (m->len + LIVE_WS_FRAME_HEADER_MAX > LIVE_WS_BATCH_BYTES)
	{
		int			rc;

		dlist_delete(&m->node);
		s->qlen--;
		rc = lws_write(wsi, (unsigned char *) LIVE_MSG_DATA(m), m->len, LWS_WRITE_TEXT);
		pfree(m);
		return rc < 0 ? -1 : 0;
	}
	while (!dlist_is_empty(&s->queue))
	{
		m = dlist_head_element(LiveMsg, node, &s->queue);
		if (used + LIVE_WS_FRAME_HEADER_MAX + m->len > LIVE_WS_BATCH_BYTES)
			break;
		used += ws_frame_header(start + used, m->len);
		memcpy(start + used, LIVE_MSG_DATA(m), m->len);
		used += m->len;
		dlist_delete(&m->node);
		s->qlen--;
		pfree(m);
	}
	return lws_write(wsi, start, used, LWS_WRITE_RAW) < 0 ? -1 : 0;
}

static int
ws_writeable(struct lws *wsi, LiveWsi *w)
{
	LiveSession *s = w->s;

	if (s == NULL || s->dead)
		return -1;
	if (s->probe_pending)
	{
		unsigned char buf[LWS_PRE + 8];

		s->probe_pending = false;
		memcpy(buf + LWS_PRE, "3probe", 6);
		if (lws_write(wsi, buf + LWS_PRE, 6, LWS_WRITE_TEXT) < 6)
			return -1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	/* a probe socket sends nothing else until the upgrade packet */
	if (s->kind == LIVE_SIO && !s->upgraded)
		return 0;
	if (dlist_is_empty(&s->queue))
	{
		if (s->closing)
		{
			lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *) "dropped", 7);
			evc_live_session_close(s, "dropped after its last message");
			return -1;
		}
		return 0;
	}
	if (ws_write_queue(wsi, s) < 0)
		return -1;
	if (!dlist_is_empty(&s->queue) || s->closing)
		lws_callback_on_writable(wsi);
	return 0;
}

static void
ws_closed(LiveWsi *w, struct lws *wsi)
{
	LiveSession *s = w->s;

	if (s == NULL)
		return;
	if (s->ws == wsi)
		s->ws = NULL;
	/* a failed probe leaves the polling session; anything else ends it */
	if (s->kind == LIVE_PLAIN || s->upgraded)
		evc_live_session_close(s, "the WebSocket closed");
}

/*
 * What a callback allocates for its own use goes in a context reset when
 * the outermost callback returns; what outlives it is allocated in a
 * session's or the live rooms' context on purpose.
 */
static int
live_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			  void *in, size_t len);

int
evc_live_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
					  void *in, size_t len)
{
	MemoryContext old;
	int			rc;

	if (evc_live_cxt == NULL || evc_live_stopping)
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	old = evc_live_callback_enter();
	rc = live_callback(wsi, reason, user, in, len);
	evc_live_callback_leave(old);
	return rc;
}

static int
live_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			  void *in, size_t len)
{
	LiveWsi    *w;

	switch (reason)
	{
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			return ws_path_ok(wsi) ? 0 : 1;
		case LWS_CALLBACK_ESTABLISHED:
			if ((w = wsi_state(user)) == NULL)
				return -1;
			return ws_established(wsi, w);
		case LWS_CALLBACK_RECEIVE:
			return ws_receive(wsi, wsi_state(user), (const char *) in, len);
		case LWS_CALLBACK_SERVER_WRITEABLE:
			return ws_writeable(wsi, wsi_state(user));
		case LWS_CALLBACK_CLOSED:
			if (user && *(LiveWsi **) user)
				ws_closed(*(LiveWsi **) user, wsi);
			wsi_release(user);
			return 0;
		case LWS_CALLBACK_HTTP:
			if ((w = wsi_state(user)) == NULL)
				return -1;
			return on_http(wsi, w, (const char *) in);
		case LWS_CALLBACK_HTTP_BODY:
			return on_http_body(wsi, wsi_state(user), (const char *) in, len);
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			return on_http_body_done(wsi, wsi_state(user));
		case LWS_CALLBACK_HTTP_WRITEABLE:
			w = wsi_state(user);
			if (w->kind == WSI_POLL_GET)
				return poll_writeable(wsi, w);
			if (w->kind == WSI_ANSWER)
			{
				int			rc = write_answer(wsi, w->status, w->ctype, w->body.data,
											  w->body.len, w->close_after);

				if (w->s)
					evc_live_session_unref(w->s);
				w->s = NULL;
				w->kind = WSI_NONE;
				return rc;
			}
			return 0;
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
			if (user && *(LiveWsi **) user)
			{
				w = *(LiveWsi **) user;
				if (w->s && w->s->poll == wsi)
					w->s->poll = NULL;
			}
			wsi_release(user);
			return 0;
		default:
			break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}
