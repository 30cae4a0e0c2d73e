/*
 * gateway/server.c
 *		Owns the HTTP side of the gateway on libwebsockets: the context and
 *		its vhost (address, TLS, header room, timeouts), reading a request
 *		off a connection into a GwPending, the limits applied before a
 *		request is queued, and writing each answer back.
 *
 * libwebsockets parses HTTP; nothing here reads protocol bytes.  A request
 * whose headers and body are complete goes on the incoming list, and its
 * connection's reads are paused (lws_rx_flow_control); the worker loop
 * (gateway.c) hands the list to the group commit after each service round,
 * then writes each answer, completes the HTTP transaction and resumes
 * reads.  A pipelined next request is parsed only after that, so answers
 * go out in order.  What libwebsockets 4.1 cannot do with pipelined
 * requests, and how the gateway keeps clear of it, is in README.md,
 * "Pipelining".
 */
#include "postgres.h"

#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <libwebsockets.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "gateway/gateway_int.h"
#include "gateway/server.h"
#include "gateway/live_server.h"

/*
 * The per-session state libwebsockets allocates (per_session_data_size):
 * the request being read, queued or answered.  Idle keep-alive connections
 * hold only this struct.  lws frees it and allocates a new one, zeroed,
 * each time it binds the connection to a protocol: at the end of every
 * HTTP transaction, and again for each request it dispatches to us
 * (lws_http_action binds protocols[0] when no mount takes the request).
 */
typedef struct GwSession
{
	GwPending  *cur;
} GwSession;

/*
 * What a connection remembers across requests, which a session cannot:
 * kept in the connection's opaque user data, packed into the pointer's
 * bits, so that it needs no allocation and nothing to free.  Above the
 * flags, the bytes read off the socket at the last bind (modulo the
 * pointer's width: a wrapped count can only make CONN_SAME true, the safe
 * side).
 */
#define CONN_BOUND		0x1		/* bound before: the mark below is the last bind's */
#define CONN_EMPTY		0x2		/* at that bind lws held no bytes for it */
#define CONN_KNOWN		0x4		/* else the count of bytes read could be had */
#define CONN_SAME		0x8		/* nothing was read between the last two binds */
#define CONN_PAUSED		0x10	/* its reads are paused (request_queue) */
#define CONN_SHIFT		5

/* A GwPending with the memory context that holds it and its strings. */
typedef struct GwRequest
{
	GwPending	p;
	MemoryContext cxt;
	StringInfoData body;
	bool		has_body;
	bool		close_after;	/* answered before its body was read */
	/*
	 * Queued at its headers (no body), and libwebsockets' body completion
	 * for it not seen yet: a POST with Content-Length: 0 gets one.
	 */
	bool		completion_owed;
	TimestampTz started;
} GwRequest;

static struct lws_context *gw_context = NULL;
static struct lws_vhost *gw_vhost = NULL;
static dlist_head gw_incoming = DLIST_STATIC_INIT(gw_incoming);
static int	open_connections = 0;
static int	peak_connections = 0;	/* since the heap was last trimmed */
static MemoryContext gw_requests_cxt = NULL;

static GwServerFdCallback fd_callback = NULL;

static int	gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
							 void *user, void *in, size_t len);
static int	gw_fd_callback(struct lws *wsi, enum lws_callback_reasons reason,
						   void *user, void *in, size_t len);

static const struct lws_protocols gw_protocols[] = {
	{"http", gw_http_callback, sizeof(GwSession), 0, 0, NULL, 0},
	{"evc-gateway-fd", gw_fd_callback, 0, 0, 0, NULL, 0},
	EVC_LIVE_PROTOCOL,
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* libwebsockets logs through this; its errors become our LOG lines. */
static void
gw_lws_log(int level, const char *line)
{
	size_t		n = strlen(line);

	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	ereport(level == LLL_ERR ? LOG : DEBUG1,
			(errmsg_internal("libwebsockets: %.*s", (int) n, line)));
}

bool
evc_gw_server_start(const char *host, int port, char **why)
{
	struct lws_context_creation_info info;
	bool		tls = evc_gw_tls_cert[0] != '\0' && evc_gw_tls_key[0] != '\0';

	lws_set_log_level(LLL_ERR, gw_lws_log);
	gw_requests_cxt = AllocSetContextCreate(TopMemoryContext, "evcollector gateway requests",
											ALLOCSET_DEFAULT_SIZES);

	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	/* 0: as many header buffers as connections, allocated while in use. */
	info.max_http_header_pool = 0;
	info.max_http_header_data = (unsigned short) evc_gw_max_header_bytes;
	info.timeout_secs = evc_gw_read_timeout_s;
	/*
	 * A connection holds a header buffer from its request's first byte
	 * until the request is complete; libwebsockets closes one that holds it
	 * longer than this.  That is the read timeout: a client that dribbles
	 * its headers (slowloris) or its body is cut off.
	 */
	info.timeout_secs_ah_idle = evc_gw_read_timeout_s;
	/*
	 * No fd_limit_per_thread: set below the open-files limit, it puts
	 * libwebsockets 4.1 in its "fds unrelated to ulimit" mode, where each
	 * socket event finds its connection by a scan of all of them
	 * (wsi_from_fd), which made a push to 10,000 live clients quadratic.
	 * Its tables are sized from the limit raise_fd_limit set; the cap on
	 * connections is ours (gateway_max_connections, counted below).
	 */
	gw_context = lws_create_context(&info);
	if (gw_context == NULL)
	{
		*why = "lws_create_context failed";
		return false;
	}

	info.port = port;
	info.iface = host[0] ? host : NULL;
	info.protocols = gw_protocols;
	info.vhost_name = "evcollector";
	info.keepalive_timeout = evc_gw_idle_timeout_s;
	/* HTTP/1.1 only: answers are written as one header-and-body block. */
	info.alpn = "http/1.1";
	if (tls)
	{
		info.ssl_cert_filepath = evc_gw_tls_cert;
		info.ssl_private_key_filepath = evc_gw_tls_key;
	}
	info.mounts = evc_live_mounts();
	info.pvo = evc_live_pvo;
	gw_vhost = lws_create_vhost(gw_context, &info);
	if (gw_vhost == NULL)
	{
		*why = tls ? "could not listen, or could not load the TLS certificate and key"
			: "could not listen (address in use, or not an address of this host)";
		return false;
	}
	evc_live_start(gw_context);
	return true;
}

static lws_sorted_usec_list_t wake_sul;

/*
 * Close every connection and the listener.  Requests still queued were
 * never dispatched: nothing of theirs was committed, and their clients see
 * the connection close, as on a crash, and may retry.
 */
void
evc_gw_server_stop(void)
{
	if (gw_context == NULL)
		return;
	lws_sul_cancel(&wake_sul);
	memset(&wake_sul, 0, sizeof(wake_sul));
	/*
	 * Destroying the context closes the watched descriptors (our dups):
	 * that close is not the postmaster going away, so nobody is told.
	 */
	fd_callback = NULL;
	while (!dlist_is_empty(&gw_incoming))
		(void) dlist_pop_head_node(&gw_incoming);
	evc_live_stop();
	lws_context_destroy(gw_context);
	gw_context = NULL;
	gw_vhost = NULL;
	open_connections = 0;
	peak_connections = 0;
	MemoryContextDelete(gw_requests_cxt);
	gw_requests_cxt = NULL;
}

/* Wait for socket activity (or a watched descriptor) and serve it. */
void
evc_gw_server_service(void)
{
	lws_service(gw_context, 0);
}

/* Make the next evc_gw_server_service return at once. */
void
evc_gw_server_cancel_wait(void)
{
	lws_cancel_service(gw_context);
}

/*
 * Watch a descriptor of our own (the wake-up signalfd, the postmaster-death
 * pipe) in the same poll as the sockets; cb runs when it is readable or
 * closed.  libwebsockets closes it when the context is destroyed.
 */
bool
evc_gw_server_watch_fd(int fd, int tag, GwServerFdCallback cb)
{
	lws_sock_file_fd_type u;
	int			copy = dup(fd);
	struct lws *wsi;

	/*
	 * libwebsockets closes what it adopted when the context goes (a
	 * settings change rebuilds it): give it a copy, and keep ours.
	 */
	if (copy < 0)
		return false;
	fd_callback = cb;
	u.filefd = (lws_filefd_type) (intptr_t) copy;
	wsi = lws_adopt_descriptor_vhost(gw_vhost, LWS_ADOPT_RAW_FILE_DESC, u,
									 "evc-gateway-fd", NULL);
	if (wsi == NULL)
	{
		close(copy);
		return false;
	}
	lws_set_opaque_user_data(wsi, (void *) (intptr_t) tag);
	return true;
}

static int
gw_fd_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			   void *in, size_t len)
{
	if (fd_callback == NULL)
		return 0;
	switch (reason)
	{
		case LWS_CALLBACK_RAW_RX_FILE:
			fd_callback((int) (intptr_t) lws_get_opaque_user_data(wsi), lws_get_socket_fd(wsi), false);
			break;
		case LWS_CALLBACK_RAW_CLOSE_FILE:
			fd_callback((int) (intptr_t) lws_get_opaque_user_data(wsi), lws_get_socket_fd(wsi), true);
			break;
		default:
			break;
	}
	return 0;
}

/* Requests whose headers and body are in: the worker commits them. */
dlist_head *
evc_gw_server_incoming(void)
{
	return &gw_incoming;
}

static const char *
request_method(struct lws *wsi)
{
	static const struct
	{
		enum lws_token_indexes tok;
		const char *name;
	}			methods[] = {
		{WSI_TOKEN_GET_URI, "GET"},
		{WSI_TOKEN_POST_URI, "POST"},
		{WSI_TOKEN_PUT_URI, "PUT"},
		{WSI_TOKEN_DELETE_URI, "DELETE"},
		{WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
		{WSI_TOKEN_PATCH_URI, "PATCH"},
		{WSI_TOKEN_HEAD_URI, "HEAD"},
	};

	for (int i = 0; i < lengthof(methods); i++)
		if (lws_hdr_total_length(wsi, methods[i].tok) > 0)
			return methods[i].name;
	return "UNKNOWN";
}

/* A header's value in the request context, or NULL when absent. */
static const char *
header_copy(struct lws *wsi, enum lws_token_indexes tok)
{
	int			n = lws_hdr_total_length(wsi, tok);
	char	   *s;

	if (n <= 0)
		return NULL;
	s = palloc(n + 1);
	if (lws_hdr_copy(wsi, s, n + 1, tok) < 0)
		return NULL;
	return s;
}

static const char *
custom_header_copy(struct lws *wsi, const char *name)
{
	int			nlen = strlen(name);
	int			n = lws_hdr_custom_length(wsi, name, nlen);
	char	   *s;

	if (n <= 0)
		return NULL;
	s = palloc(n + 1);
	if (lws_hdr_custom_copy(wsi, s, n + 1, name, nlen) < 0)
		return NULL;
	return s;
}

/* The new request of a connection, with what the handlers read. */
static GwRequest *
request_begin(struct lws *wsi, const char *uri)
{
	MemoryContext cxt = AllocSetContextCreate(gw_requests_cxt, "evcollector gateway request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	GwRequest  *r = palloc0(sizeof(GwRequest));
	char		peer[64];

	r->cxt = cxt;
	r->started = GetCurrentTimestamp();
	r->p.wsi = wsi;
	r->p.req.method = request_method(wsi);
	r->p.req.path = pstrdup(uri);
	r->p.req.query = header_copy(wsi, WSI_TOKEN_HTTP_URI_ARGS);
	r->p.req.content_type = header_copy(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
	r->p.req.user_agent = header_copy(wsi, WSI_TOKEN_HTTP_USER_AGENT);
	r->p.req.client_header = custom_header_copy(wsi, "x-evc-client:");
	r->p.authorization = header_copy(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	lws_get_peer_simple(wsi, peer, sizeof(peer));
	/* An IPv4 client of the dual-stack socket reads ::ffff:a.b.c.d. */
	r->p.peer = pstrdup(strncmp(peer, "::ffff:", 7) == 0 && strchr(peer, '.') ? peer + 7 : peer);
	initStringInfo(&r->body);
	initStringInfo(&r->p.resp.body);
	MemoryContextSwitchTo(old);
	return r;
}

static uintptr_t
conn_state(struct lws *wsi)
{
	return (uintptr_t) lws_get_opaque_user_data(wsi);
}

static void
conn_set_state(struct lws *wsi, uintptr_t state)
{
	lws_set_opaque_user_data(wsi, (void *) state);
}

/* Pause or resume a connection's reads, noting which (conn_bind). */
static void
conn_pause(struct lws *wsi, bool pause)
{
	uintptr_t	c = conn_state(wsi);

	conn_set_state(wsi, pause ? c | CONN_PAUSED : c & ~(uintptr_t) CONN_PAUSED);
	lws_rx_flow_control(wsi, pause ? 0 : 1);
}

/*
 * Queue a request whose body is complete for the next group, and pause its
 * connection's reads until the answer is written (answer_send).  While
 * reads are paused libwebsockets neither reads the socket nor hands back
 * the bytes it read past this request (its buffer list): unpaused, it
 * would report this body complete again each round, and bytes waiting
 * would keep its poll from sleeping.  The calls come straight from lws
 * callbacks that are not wrapped in its rx-flow deferral, so the pause
 * applies at once.
 */
static void
request_queue(GwRequest *r)
{
	r->p.req.body = r->body.data;
	r->p.req.body_len = r->body.len;
	/* The commit follows within this service round: no read timeout now. */
	lws_set_timeout(r->p.wsi, NO_PENDING_TIMEOUT, 0);
	conn_pause(r->p.wsi, true);
	dlist_push_tail(&gw_incoming, &r->p.node);
}

/* Answer at once, without the group (limits, bad framing). */
static void
request_answer_now(GwRequest *r, int status, const char *code, const char *message)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	evc_http_error(&r->p.resp, status, code, "%s", message);
	MemoryContextSwitchTo(old);
	r->p.answered = true;
	lws_callback_on_writable(r->p.wsi);
}

static void
request_free(GwSession *s)
{
	GwRequest  *r;

	/*
	 * A connection closed before its first request has no session yet:
	 * libwebsockets calls CLOSED_HTTP with a NULL user then.
	 */
	if (s == NULL || s->cur == NULL)
		return;
	r = (GwRequest *) s->cur;
	/* A connection closed while its request waits in a group: leave it
	 * to the group, which frees it after answering (see evc_gw_server_answered). */
	if (!r->p.answered && r->p.node.next != NULL)
	{
		r->p.wsi = NULL;
		s->cur = NULL;
		return;
	}
	MemoryContextDelete(r->cxt);
	s->cur = NULL;
}

static void
access_log(GwRequest *r)
{
	long		us = (long) (GetCurrentTimestamp() - r->started);

	ereport(LOG,
			(errmsg("gateway %s %s %s %d %d %ld us", r->p.peer, r->p.req.method, r->p.req.path,
					r->p.resp.status, r->p.resp.body.len, us),
			 errhidestmt(true)));
}

/*
 * One line per error answer, with its body (the code and the message that
 * names what was wrong), never one per request.
 */
static void
error_log(GwRequest *r)
{
	ereport(LOG,
			(errmsg("gateway %s %s %s: %d %.*s", r->p.peer, r->p.req.method, r->p.req.path,
					r->p.resp.status, Min(r->p.resp.body.len, 400), r->p.resp.body.data),
			 errhidestmt(true)));
}

/*
 * The answer, headers and body in one lws_write.  What the socket does not
 * take at once libwebsockets keeps and sends as the socket drains
 * (lws_partial_buffered then says so).
 */
static bool
answer_write(struct lws *wsi, GwRequest *r)
{
	const char *ctype = r->p.resp.content_type ? r->p.resp.content_type : "application/json";
	size_t		room = LWS_PRE + 512 + strlen(ctype) + r->p.resp.body.len;
	unsigned char *buf = MemoryContextAlloc(r->cxt, room);
	unsigned char *start = buf + LWS_PRE,
			   *p = start,
			   *end = buf + room;
	char		clen[24];
	int			n = snprintf(clen, sizeof(clen), "%d", r->p.resp.body.len);

	if (lws_add_http_header_status(wsi, r->p.resp.status, &p, end) ||
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
									 (const unsigned char *) ctype, strlen(ctype), &p, end) ||
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
									 (const unsigned char *) clen, n, &p, end) ||
		(r->close_after &&
		 lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
									  (const unsigned char *) "close", 5, &p, end)) ||
		lws_finalize_http_header(wsi, &p, end))
		return false;
	memcpy(p, r->p.resp.body.data, r->p.resp.body.len);
	p += r->p.resp.body.len;
	if (lws_write(wsi, start, p - start, LWS_WRITE_HTTP_HEADERS) != (int) (p - start))
		return false;
	if (evc_gw_access_log)
		access_log(r);
	else if (r->p.resp.status >= 400)
		error_log(r);
	return true;
}

/*
 * Write a group's answer, end the HTTP transaction, and resume reads.
 *
 * The answer is written here, right after the commit, not from a writable
 * callback: libwebsockets 4.1 gives a connection whose reads are paused no
 * writable callback at all (rops_handle_POLLIN_h1 returns before POLLOUT
 * is looked at), and writing at once saves the round through poll that
 * asking for one costs.  Written while paused and completed before lws
 * runs again, the connection is in lws's "deferring action" state at the
 * next service, in which it reads nothing until it has been writable once;
 * only then is a pipelined next request parsed.
 *
 * An answer the socket does not take at once (lws sends about 4 kB per
 * write) lws finishes as the socket drains, and only then completes the
 * transaction (it defers lws_http_transaction_completed while output is
 * buffered).  Reads must be allowed meanwhile, for lws sends the rest only
 * then; it still parses nothing new: a request without a body is in its
 * "doing transaction" state, in which lws reads nothing, and for one with
 * a body it only reports the body complete again (on_body_completion).
 */
static void
answer_send(GwRequest *r)
{
	struct lws *wsi = r->p.wsi;
	GwSession  *s = (GwSession *) lws_wsi_user(wsi);
	bool		ok = answer_write(wsi, r);

	request_free(s);
	/*
	 * Resumed before the transaction completes: the bind that completes it
	 * looks at lws's buffered bytes (conn_bind), which it sees only for a
	 * connection that may read.  lws does nothing with it before the next
	 * service, and by then it is deferring action.
	 */
	conn_pause(wsi, false);
	/* From here s may be gone: completing rebinds a new session. */
	if (!ok || lws_http_transaction_completed(wsi))
		lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/*
 * Called by the worker after the group, for each request in it, in order:
 * the answer is written; one whose connection went away is freed.
 */
void
evc_gw_server_answered(GwPending *p)
{
	GwRequest  *r = (GwRequest *) p;

	p->node.next = p->node.prev = NULL;
	p->answered = true;
	if (p->wsi == NULL)
		MemoryContextDelete(r->cxt);
	else
		answer_send(r);
}

/*
 * LWS_CALLBACK_HTTP_BIND_PROTOCOL: note whether lws holds bytes read for
 * this connection and, if so, how many bytes have been read off its
 * socket; and whether anything was read since the bind before.
 *
 * Before each request it dispatches to us lws binds the connection (the
 * "dispatch bind"), and the bind before that one ended the previous HTTP
 * transaction on the connection (ours, or the live protocol's: every mount
 * binds its own protocol, and ends by binding protocols[0] again).  So at
 * LWS_CALLBACK_HTTP, CONN_SAME says whether anything was read off the
 * socket between the end of the previous request and this one's headers;
 * request_from_buffer uses it.  A connection's first request has no bind
 * before its dispatch bind.  (The bind that ends a transaction whose answer
 * was partly written comes once lws has sent the rest.)
 *
 * Counting costs two system calls, so it is skipped when lws holds no bytes
 * for the connection: lws_service_adjust_timeout answers 0 while any
 * connection that may read (not paused, not deferring action) has bytes in
 * its buffer list, so a non-zero answer is proof that this one, which at a
 * bind is not deferring action and, unless CONN_PAUSED, may read, has none.
 * With nothing buffered at the end of a request, the next one is read off
 * the socket: no count is needed either side.  (The call also marks TLS
 * connections with decrypted bytes waiting as readable, as lws's own
 * service does before each poll: harmless here.)
 */
static void
conn_bind(struct lws *wsi)
{
	uintptr_t	c = conn_state(wsi);
	uintptr_t	next = CONN_BOUND | (c & CONN_PAUSED);
	uint64		now;

	if (!(c & CONN_PAUSED) && lws_service_adjust_timeout(gw_context, 1, 0) != 0)
		next |= CONN_EMPTY;
	else if (evc_gw_socket_bytes_read(lws_get_socket_fd(wsi), &now))
		next |= CONN_KNOWN | ((uintptr_t) now << CONN_SHIFT);
	if ((c & CONN_BOUND) && !(c & CONN_EMPTY) && !(next & CONN_EMPTY) &&
		(!(c & CONN_KNOWN) || !(next & CONN_KNOWN) ||
		 (c >> CONN_SHIFT) == (next >> CONN_SHIFT)))
		next |= CONN_SAME;
	conn_set_state(wsi, next);
}

/*
 * Did the request just dispatched come out of libwebsockets' buffer list,
 * the bytes it read together with the request before it, rather than off
 * the socket?  lws reads the socket only once that list is empty, so it
 * did exactly when nothing was read off the socket since the previous
 * request ended (conn_bind).  A count that could not be had is taken as
 * nothing read.
 */
static bool
request_from_buffer(struct lws *wsi)
{
	return (conn_state(wsi) & CONN_SAME) != 0;
}

/*
 * libwebsockets 4.1 reads a body of a request that came out of its buffer
 * list wrongly, and then without end (README.md, "Pipelining"): a request
 * with Content-Length above 0, chunked, or a POST, PUT or PATCH without
 * Content-Length (lws reads those to the end of the connection).
 */
static bool
lws_will_read_body(struct lws *wsi, long content_length, int cl_len, bool chunked)
{
	if (content_length > 0 || chunked)
		return true;
	return cl_len <= 0 &&
		(lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0 ||
		 lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0 ||
		 lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI) > 0);
}

/*
 * Answer a pipelined request that this connection cannot serve, before any
 * of it past its headers is read, and close the connection after that
 * answer.  Nothing of it was committed; every request before it was
 * answered.  Returning -1 from LWS_CALLBACK_HTTP closes the connection
 * before lws starts reading the body (and after the answers still buffered).
 */
static int
request_refuse(struct lws *wsi, GwSession *s, const char *uri, const char *why)
{
	GwRequest  *r = request_begin(wsi, uri);
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	s->cur = &r->p;
	r->close_after = true;
	r->p.answered = true;
	evc_http_error(&r->p.resp, 503, "pipelined_request",
				   "%s; nothing of it was committed: send it again after the answer before it, or on a new connection",
				   why);
	MemoryContextSwitchTo(old);
	(void) answer_write(wsi, r);
	return -1;
}

/* Headers are in: apply the limits, then wait for the body or queue it. */
static int
on_headers(struct lws *wsi, GwSession *s, const char *uri)
{
	GwRequest  *r;
	int			cl_len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
	bool		chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
	long		content_length = 0;

	if (s->cur != NULL)
		return -1;				/* can't happen: reads are paused while one waits */
	if (cl_len > 0)
	{
		char		buf[32];

		lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_CONTENT_LENGTH);
		content_length = strtol(buf, NULL, 10);
	}
	if (lws_will_read_body(wsi, content_length, cl_len, chunked) && request_from_buffer(wsi))
		return request_refuse(wsi, s, uri,
							  "this request has a body and came in the same read as the request before it, which libwebsockets 4.1 cannot read");
	r = request_begin(wsi, uri);
	s->cur = &r->p;
	if (content_length > (long) evc_gw_max_body_kb * 1024)
	{
		char		msg[128];

		snprintf(msg, sizeof(msg), "the body has %ld bytes; evcollector.gateway_max_body allows %d kB",
				 content_length, evc_gw_max_body_kb);
		r->close_after = true;
		request_answer_now(r, 413, "body_too_large", msg);
		return 0;
	}
	r->has_body = content_length > 0 || chunked;
	if (!r->has_body)
	{
		request_queue(r);
		r->completion_owed = true;
	}
	return 0;
}

static int
on_body(GwSession *s, const char *in, size_t len)
{
	GwRequest  *r = (GwRequest *) s->cur;

	/*
	 * Queued already: a POST without Content-Length, whose following bytes
	 * lws takes for a body.  They are not this request's.
	 */
	if (r == NULL || r->close_after || r->p.node.next != NULL || r->p.answered)
		return 0;
	if (r->body.len + len > (size_t) evc_gw_max_body_kb * 1024)
	{
		char		msg[128];

		snprintf(msg, sizeof(msg), "the body is larger than evcollector.gateway_max_body (%d kB)",
				 evc_gw_max_body_kb);
		r->close_after = true;
		request_answer_now(r, 413, "body_too_large", msg);
		return 0;
	}
	appendBinaryStringInfo(&r->body, in, len);
	return 0;
}

/*
 * The body is complete: queue the request.  A request queued at its
 * headers gets one completion too when it is a POST with Content-Length:
 * 0.  Reads are paused from the queueing until the answer is written, so
 * no other completion comes while a request waits.  One comes after its
 * answer was written (s->cur is gone) while lws still sends the rest of
 * that answer and bytes wait behind it: lws hands them back, in the body
 * state, each round until the transaction completes.  Nothing to do.
 */
static int
on_body_completion(GwSession *s)
{
	GwRequest  *r = (GwRequest *) s->cur;

	if (r == NULL || r->close_after)
		return 0;
	if (r->completion_owed)
	{
		r->completion_owed = false;
		return 0;
	}
	if (r->p.node.next != NULL || r->p.answered)
		return 0;
	request_queue(r);
	return 0;
}

/* Only an answer given at once, without a group (413), is written here. */
static int
on_writeable(struct lws *wsi, GwSession *s)
{
	GwRequest  *r = (GwRequest *) s->cur;

	if (r == NULL || !r->p.answered || !r->close_after)
		return 0;
	(void) answer_write(wsi, r);
	return -1;
}

/*
 * libwebsockets mallocs about 1.5 kB per connection.  glibc keeps what is
 * freed for reuse and returns it to the system only from the top of the
 * heap, so after 10,000 connections closed the worker stayed 8 MB larger
 * (bench/gateway, part 4).  Once at least 1,000 connections have gone and
 * fewer than half of the peak remain, hand the free pages back; the cost
 * (a walk of the heap) is paid once per halving, not per close.
 */
static void
heap_trim_after_close(void)
{
#ifdef __GLIBC__
	if (peak_connections - open_connections >= 1000 &&
		open_connections < peak_connections / 2)
	{
		malloc_trim(0);
		peak_connections = open_connections;
	}
#endif
}

static int
gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
				 void *in, size_t len)
{
	GwSession  *s = (GwSession *) user;

	switch (reason)
	{
		case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
			/* Over the limit: refused at once, before any byte is read. */
			if (open_connections >= evc_gw_max_connections)
				return -1;
			open_connections++;
			peak_connections = Max(peak_connections, open_connections);
			return 0;
		case LWS_CALLBACK_WSI_DESTROY:
			/* Every accepted connection, bound to a session or not. */
			if (open_connections > 0)
				open_connections--;
			heap_trim_after_close();
			return 0;
		case LWS_CALLBACK_HTTP_BIND_PROTOCOL:
			conn_bind(wsi);
			return 0;
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
			if (s != NULL)
				request_free(s);
			return 0;
		case LWS_CALLBACK_HTTP:
			return s == NULL ? -1 : on_headers(wsi, s, (const char *) in);
		case LWS_CALLBACK_HTTP_BODY:
			return s == NULL ? -1 : on_body(s, (const char *) in, len);
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			return s == NULL ? 0 : on_body_completion(s);
		case LWS_CALLBACK_HTTP_WRITEABLE:
			return s == NULL ? 0 : on_writeable(wsi, s);
		case LWS_CALLBACK_CLOSED_HTTP:
			request_free(s);
			return 0;
		default:
			break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int
evc_gw_server_connections(void)
{
	return open_connections;
}

/* Nothing to do: the wake-up itself makes the worker loop run again. */
static void
wake_sul_cb(lws_sorted_usec_list_t *sul)
{
}

/* Make the service return after ms at the latest (a deferred stats flush). */
void
evc_gw_server_wake_after(long ms)
{
	lws_sul_schedule(gw_context, 0, &wake_sul, wake_sul_cb, (lws_usec_t) ms * LWS_US_PER_MS);
}
