/*
 * gateway/gateway_int.h: what the gateway's own files share (settings, the
 * server's sessions, the group commit, write keys).  Not for other
 * subsystems: their face is http.h and gateway.h.
 */
#ifndef EVC_GATEWAY_INT_H
#define EVC_GATEWAY_INT_H

#include "postgres.h"

#include "lib/ilist.h"
#include "lib/stringinfo.h"

#include "gateway/http.h"

/* settings.c: the evcollector.gateway_* settings. */
extern char *evc_gw_listen;
extern char *evc_gw_tls_cert;
extern char *evc_gw_tls_key;
extern bool evc_gw_auth;
extern char *evc_gw_default_client;
extern int	evc_gw_max_body_kb;
extern int	evc_gw_max_header_bytes;
extern int	evc_gw_max_connections;
extern int	evc_gw_rate_limit;
extern int	evc_gw_idle_timeout_s;
extern int	evc_gw_read_timeout_s;
extern bool evc_gw_access_log;
extern int	evc_gw_batch_max;
extern int	evc_gw_group_max;

/* The listen address split into host and port (settings.c). */
extern bool evc_gw_parse_listen(const char *listen, char *host, size_t hostlen,
								int *port, const char **why);
extern bool evc_gw_host_is_loopback(const char *host);

/*
 * One request waiting in a group (server.c fills it, group.c answers it).
 * Strings live in the session's request context until it is answered.
 */
typedef struct GwPending
{
	dlist_node	node;
	struct lws *wsi;			/* the connection to answer */
	EvcHttpRequest req;
	const char *authorization;	/* Authorization header, or NULL */
	const char *peer;			/* client address, for the logs */
	EvcHttpResponse resp;
	bool		answered;		/* resp is filled */
} GwPending;

/* This worker's slot, for its counters in evc.stats (gateway.c). */
struct EvcWorkerSlot;
extern struct EvcWorkerSlot *evc_gw_slot;

/* group.c: validate, enqueue and commit a group; fill every answer. */
extern void evc_gw_run_group(dlist_head *group);

/* keys.c: the caller's role and client from its Authorization header. */
extern bool evc_gw_authenticate(const char *authorization, EvcHttpRequest *req,
								EvcHttpResponse *resp);
extern void evc_gw_keys_forget(void);
/* The key an Authorization header carries (Bearer, or Basic's password). */
extern char *evc_gw_key_from_header(const char *authorization);

/* limits.c: per-client requests per second. */
extern bool evc_gw_rate_allow(const char *client);

/* sock_read.c: bytes read so far from a TCP socket (Linux; else false). */
extern bool evc_gw_socket_bytes_read(int fd, uint64 *bytes);

/* routes_send.c */
extern bool evc_http_route_send(const EvcHttpRequest *req, EvcHttpResponse *resp);

#endif							/* EVC_GATEWAY_INT_H */
