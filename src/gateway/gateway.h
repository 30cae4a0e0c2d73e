/*
 * gateway/gateway.h: the gateway's face to the rest of evcollector: its
 * settings (called from core/guc.c) and its worker's entry point (started
 * by the launcher).
 */
#ifndef EVC_GATEWAY_H
#define EVC_GATEWAY_H

#include "postgres.h"

extern char *evc_gw_listen;

extern void evc_gateway_define_gucs(void);
extern PGDLLEXPORT void evc_gateway_main(Datum main_arg);

#endif							/* EVC_GATEWAY_H */
