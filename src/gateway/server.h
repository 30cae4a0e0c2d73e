/*
 * gateway/server.h: the libwebsockets server, as the worker loop uses it.
 */
#ifndef EVC_GATEWAY_SERVER_H
#define EVC_GATEWAY_SERVER_H

#include "lib/ilist.h"

#include "gateway/gateway_int.h"

typedef void (*GwServerFdCallback) (int tag, int fd, bool closed);

extern bool evc_gw_server_start(const char *host, int port, char **why);
extern void evc_gw_server_stop(void);
extern void evc_gw_server_service(void);
extern void evc_gw_server_cancel_wait(void);
extern bool evc_gw_server_watch_fd(int fd, int tag, GwServerFdCallback cb);
extern dlist_head *evc_gw_server_incoming(void);
extern void evc_gw_server_answered(GwPending *p);
extern int	evc_gw_server_connections(void);
extern void evc_gw_server_wake_after(long ms);

#endif							/* EVC_GATEWAY_SERVER_H */
