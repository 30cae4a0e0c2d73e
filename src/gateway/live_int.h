/*
 * gateway/live_int.h: what the live rooms' own files share: sessions and
 * their send queues (live_session.c), the transports (live_lws.c) and the
 * work that needs the database (live_db.c).
 */
#ifndef EVC_GATEWAY_LIVE_INT_H
#define EVC_GATEWAY_LIVE_INT_H

#include "postgres.h"

#include <libwebsockets.h>

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "gateway/http.h"
#include "gateway/live_packet.h"

/* settings (live_session.c) */
extern int	evc_live_ping_interval_ms;
extern int	evc_live_ping_timeout_ms;
extern int	evc_live_queue_max;
extern int	evc_live_max_payload;

#define LIVE_SID_LEN 20
/* No catch-up point: -infinity, which no parsed timestamp is (0 is 2000-01-01) */
#define LIVE_NO_SINCE DT_NOBEGIN
#define LIVE_MAX_WINDOWS 4

typedef enum LiveKind
{
	LIVE_SIO,					/* Engine.IO + Socket.IO at /socket.io/ */
	LIVE_PLAIN					/* plain WebSocket at /v1/live */
} LiveKind;

/* One message waiting to be sent, with room for lws' frame header. */
typedef struct LiveMsg
{
	dlist_node	node;
	int			len;
	char		buf[FLEXIBLE_ARRAY_MEMBER];	/* LWS_PRE bytes, then data */
} LiveMsg;

#define LIVE_MSG_DATA(m) ((m)->buf + LWS_PRE)

/* Database work a session waits for (live_db.c). */
typedef enum LiveWork
{
	LIVE_WORK_NONE = 0,
	LIVE_WORK_AUTH,				/* a CONNECT or a /v1/live upgrade */
	LIVE_WORK_CATCHUP			/* consume_N with since/last, or a lost ring */
} LiveWork;

typedef struct LiveSession
{
	char		sid[LIVE_SID_LEN + 1];	/* hash key: keep first */
	LiveKind	kind;
	MemoryContext cxt;

	struct lws *ws;				/* the WebSocket, once there is one */
	struct lws *poll;			/* a GET poll waiting for data */
	bool		upgraded;		/* polling -> WebSocket done */
	bool		probe_pending;	/* "3probe" to write on the WebSocket */
	bool		poll_noop;		/* answer the waiting poll with a noop */
	bool		eio_open_sent;
	bool		sio_connected;
	bool		closing;		/* told it is dropped: send what is queued, close */
	bool		dead;			/* closed: freed once no wsi points here */
	int			wsi_refs;

	/* subscriptions */
	List	   *rooms;			/* LiveRoom * */
	int			nwindows;
	int			windows[LIVE_MAX_WINDOWS];	/* seconds */

	/* send queue, bounded by evc_live_queue_max messages */
	dlist_head	queue;
	int			qlen;

	/* heartbeat (Engine.IO) */
	lws_sorted_usec_list_t sul_ping;
	lws_sorted_usec_list_t sul_timeout;
	lws_sorted_usec_list_t sul_poll;	/* a held poll's deadline */
	bool		pong_due;

	/* database work */
	LiveWork	work;
	dlist_node	work_node;
	bool		in_work;
	char	   *auth_token;		/* as sent; NULL when none */
	EvcGwRole	role;
	int			work_window;	/* seconds, for the catch-up */
	TimestampTz work_since;	/* LIVE_NO_SINCE when none */
	int64		work_ack;		/* ack id to answer, or -1 */
	char	  **plain_rooms;	/* /v1/live's rooms until auth is done */
	int			plain_nrooms;

	/* a WebSocket message arriving in fragments */
	StringInfoData rx;
} LiveSession;

typedef struct LiveRoom
{
	char	   *name;			/* hash key (pointer to the string) */
	int			nsubs;
	int			cap;
	LiveSession **subs;
} LiveRoom;

/* live_session.c */
extern MemoryContext evc_live_cxt;
extern bool evc_live_stopping;	/* the server is being torn down */
extern struct lws_context *evc_live_context;
extern MemoryContext evc_live_callback_enter(void);
extern void evc_live_callback_leave(MemoryContext old);
extern LiveSession *evc_live_session_new(LiveKind kind);
extern LiveSession *evc_live_session_find(const char *sid);
extern void evc_live_session_close(LiveSession *s, const char *why);
extern void evc_live_session_unref(LiveSession *s);
extern bool evc_live_session_join(LiveSession *s, const char *room);
extern bool evc_live_session_add_window(LiveSession *s, int seconds);
extern bool evc_live_session_has_window(LiveSession *s, int seconds);
extern void evc_live_send(LiveSession *s, const char *data, int len, bool bypass_bound);
extern void evc_live_send_sio(LiveSession *s, StringInfo sio);
extern void evc_live_send_error(LiveSession *s, const char *code, const char *message);
extern void evc_live_kick(LiveSession *s);
extern void evc_live_heartbeat_start(LiveSession *s);
extern void evc_live_heartbeat_pong(LiveSession *s);
extern void evc_live_fanout(int window_seconds, const char *room, const char *json, int json_len);
extern void evc_live_each_subscribed(void (*fn) (LiveSession *s, void *arg), void *arg);
extern int	evc_live_session_count(void);
extern void evc_live_counters(uint64 *pushed, uint64 *dropped_slow, uint64 *closed);
extern char *evc_live_window_event(int seconds);
extern int	evc_live_window_from_event(const char *event);

/* live_sio.c: one Socket.IO packet from a client */
extern void evc_live_sio_message(LiveSession *s, const char *data, size_t len);
extern void evc_live_eio_packet(LiveSession *s, EvcEioPacket *p, bool over_ws);

/* live_db.c */
extern void evc_live_work_queue(LiveSession *s, LiveWork work);
extern void evc_live_work_forget(LiveSession *s);
extern void evc_live_ring_begin(void);
extern void evc_live_db_reset(void);
extern uint64 evc_live_lost_count(void);

#endif							/* EVC_GATEWAY_LIVE_INT_H */
