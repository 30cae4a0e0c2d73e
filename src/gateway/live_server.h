/*
 * gateway/live_server.h: what the gateway's server (server.c, gateway.c,
 * dispatch.c, settings.c) calls to carry the live rooms, one line each.
 *
 *	- the protocol table gets EVC_LIVE_PROTOCOL;
 *	- the vhost gets info.mounts = evc_live_mounts() and
 *	  info.pvo = evc_live_pvo (the live protocol is the default for
 *	  WebSocket upgrades, which socket.io clients make without a
 *	  subprotocol);
 *	- evc_live_start after the vhost exists, evc_live_stop before the
 *	  context is destroyed;
 *	- evc_live_after_service after each service round (drains the ring,
 *	  runs the checks that need the database);
 *	- evc_http_route_live in the route tables (/v1/status/...).
 */
#ifndef EVC_GATEWAY_LIVE_SERVER_H
#define EVC_GATEWAY_LIVE_SERVER_H

#include <libwebsockets.h>

#include "gateway/http.h"

extern int	evc_live_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
								  void *user, void *in, size_t len);

#define EVC_LIVE_PROTOCOL_NAME "evc-live"
#define EVC_LIVE_PROTOCOL \
	{EVC_LIVE_PROTOCOL_NAME, evc_live_lws_callback, sizeof(void *), 16384, 0, NULL, 0}

extern const struct lws_http_mount *evc_live_mounts(void);
extern const struct lws_protocol_vhost_options *const evc_live_pvo;

extern void evc_live_define_gucs(void);
extern void evc_live_start(struct lws_context *context);
extern void evc_live_stop(void);
extern void evc_live_after_service(void);

extern bool evc_http_route_live(const EvcHttpRequest *req, EvcHttpResponse *resp);

#endif							/* EVC_GATEWAY_LIVE_SERVER_H */
