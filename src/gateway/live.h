/*
 * gateway/live.h: the live rooms' face to the rest of evcollector.
 *
 * The aggregates sink hands each aggregate it lands to the gateway through
 * a ring in shared memory (live_ring.c); core/shmem.c sizes and attaches
 * the ring; the gateway's server calls the evc_live_* entry points of
 * live_server.c.  See src/gateway/README-live.md.
 */
#ifndef EVC_GATEWAY_LIVE_H
#define EVC_GATEWAY_LIVE_H

#include "postgres.h"

/* core/shmem.c: the ring's share of shared memory. */
extern Size evc_live_shmem_size(void);
extern void evc_live_shmem_request(void);
extern void evc_live_shmem_init(void);

/*
 * consume/sink_aggregates.c: an aggregate this transaction landed (new or
 * corrected), as the JSON the pushes carry.  It reaches the gateway when
 * the transaction commits, and never if it rolls back.
 */
extern void evc_live_push_at_commit(int window_seconds, const char *room, const char *json);

#endif							/* EVC_GATEWAY_LIVE_H */
