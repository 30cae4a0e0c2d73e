/*
 * gateway/live_ring.h: the reading side of the live ring (live_ring.c),
 * for the gateway's own files.
 */
#ifndef EVC_GATEWAY_LIVE_RING_H
#define EVC_GATEWAY_LIVE_RING_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* One aggregate as the ring hands it over; pointers into the read buffer. */
typedef struct EvcLiveRecord
{
	int			window_seconds;
	const char *room;			/* NUL-terminated */
	const char *json;			/* NUL-terminated */
	int			json_len;
} EvcLiveRecord;

/* Ring statistics, for /v1/status/live and the tests. */
typedef struct EvcLiveRingStats
{
	uint64		records;		/* ever written */
	uint64		bytes;			/* ever written */
	uint64		dropped;		/* too large to fit, never written */
} EvcLiveRingStats;

/* The gateway: become the reader (its latch is set on each commit). */
extern uint64 evc_live_ring_attach(void);
extern void evc_live_ring_detach(void);

/*
 * Copy what was written since *cursor into buf (at most max_bytes of
 * records) and advance *cursor.  *lost is set when the writers lapped the
 * reader: records were overwritten before it read them, and the caller must
 * catch up from evc.aggregates.
 */
extern void evc_live_ring_read(uint64 *cursor, StringInfo buf, int max_bytes, bool *lost);

/* The records of a buffer filled by evc_live_ring_read, one at a time. */
extern bool evc_live_ring_next(StringInfo buf, int *pos, EvcLiveRecord *rec);

extern void evc_live_ring_stats(EvcLiveRingStats *stats);

#endif							/* EVC_GATEWAY_LIVE_RING_H */
