/*
 * relay.h
 *		The relay worker: evc.outbox to Kafka.
 */
#ifndef EVC_RELAY_H
#define EVC_RELAY_H

#include "fmgr.h"

extern PGDLLEXPORT void evc_relay_main(Datum main_arg);

#endif
