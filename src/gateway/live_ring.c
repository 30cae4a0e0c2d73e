/*
 * live_ring.c
 *		Owns the live ring: the shared-memory byte ring through which the
 *		aggregates sink hands every aggregate it lands to the gateway.
 *
 * Writers are the consumer workers running the aggregates sink.  They
 * collect the aggregates of their transaction in backend memory and copy
 * them into the ring from the commit callback, so the gateway never hears
 * of a row that rolled back, and every row it hears of is visible to a
 * snapshot it takes afterwards (the catch-up reads evc.aggregates).  Then
 * they set the gateway's latch: no polling anywhere.
 *
 * The one reader is the gateway.  It keeps its cursor (bytes read, of
 * bytes ever written) in its own memory.  Writers never wait for it: a
 * reader that falls a whole ring behind loses what was overwritten, learns
 * so from the cursor, and reads evc.aggregates instead (live_server.c).
 * So the ring's size bounds memory, not correctness.  See README-live.md
 * for why a ring and not NOTIFY, a Kafka consumer or shm_mq.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "gateway/live.h"
#include "gateway/live_ring.h"

/* 4 MB: about 20,000 aggregates, a few seconds of the heaviest sink. */
#define LIVE_RING_BYTES (4 * 1024 * 1024)

typedef struct LiveRecordHeader
{
	uint32		len;			/* whole record, header included, MAXALIGNed */
	int32		window_seconds;
	uint32		room_len;		/* without the NUL */
	uint32		json_len;		/* without the NUL */
} LiveRecordHeader;

typedef struct LiveRing
{
	LWLock	   *lock;
	int			reader_procno;	/* the gateway's, or -1 */
	uint64		head;			/* bytes ever written */
	uint64		records;
	uint64		dropped;
	char		data[LIVE_RING_BYTES];
} LiveRing;

static LiveRing *live_ring = NULL;

/* This transaction's aggregates, in TopTransactionContext. */
static StringInfo pending = NULL;
static bool callback_registered = false;

Size
evc_live_shmem_size(void)
{
	return MAXALIGN(sizeof(LiveRing));
}

void
evc_live_shmem_request(void)
{
	RequestAddinShmemSpace(evc_live_shmem_size());
	RequestNamedLWLockTranche("evcollector_live", 1);
}

/* Called under AddinShmemInitLock from the shmem startup hook. */
void
evc_live_shmem_init(void)
{
	bool		found;

	live_ring = ShmemInitStruct("evcollector live ring", sizeof(LiveRing), &found);
	if (!found)
	{
		live_ring->lock = &(GetNamedLWLockTranche("evcollector_live"))->lock;
		live_ring->reader_procno = -1;
		live_ring->head = 0;
		live_ring->records = 0;
		live_ring->dropped = 0;
	}
}

static void
ring_copy_in(uint64 at, const void *src, size_t n)
{
	size_t		off = at % LIVE_RING_BYTES;
	size_t		first = Min(n, LIVE_RING_BYTES - off);

	memcpy(live_ring->data + off, src, first);
	if (first < n)
		memcpy(live_ring->data, (const char *) src + first, n - first);
}

static void
ring_copy_out(uint64 at, void *dst, size_t n)
{
	size_t		off = at % LIVE_RING_BYTES;
	size_t		first = Min(n, LIVE_RING_BYTES - off);

	memcpy(dst, live_ring->data + off, first);
	if (first < n)
		memcpy((char *) dst + first, live_ring->data, n - first);
}

/* Copy the committed transaction's records in, and wake the reader. */
static void
ring_publish(StringInfo recs)
{
	int			procno;

	LWLockAcquire(live_ring->lock, LW_EXCLUSIVE);
	for (int pos = 0; pos < recs->len;)
	{
		LiveRecordHeader h;

		memcpy(&h, recs->data + pos, sizeof(h));
		ring_copy_in(live_ring->head, recs->data + pos, h.len);
		live_ring->head += h.len;
		live_ring->records++;
		pos += h.len;
	}
	procno = live_ring->reader_procno;
	LWLockRelease(live_ring->lock);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

static void
live_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pending != NULL && pending->len > 0 && live_ring != NULL)
				ring_publish(pending);
			pending = NULL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/*
			 * A prepared transaction may commit anywhere, later: its
			 * aggregates reach the gateway's clients by catch-up only.
			 * The sink never prepares.
			 */
			pending = NULL;
			break;
		default:
			break;
	}
}

void
evc_live_push_at_commit(int window_seconds, const char *room, const char *json)
{
	LiveRecordHeader h;
	size_t		room_len = strlen(room);
	size_t		json_len = strlen(json);
	size_t		len = MAXALIGN(sizeof(h) + room_len + 1 + json_len + 1);
	static const char zeros[MAXIMUM_ALIGNOF];

	if (live_ring == NULL)
		return;					/* not preloaded: no gateway either */
	if (len > LIVE_RING_BYTES / 16)
	{
		/* cannot happen with the sink's bounds (under 8 kB); counted */
		LWLockAcquire(live_ring->lock, LW_EXCLUSIVE);
		live_ring->dropped++;
		LWLockRelease(live_ring->lock);
		return;
	}
	if (!callback_registered)
	{
		RegisterXactCallback(live_xact_callback, NULL);
		callback_registered = true;
	}
	if (pending == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		pending = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	h.len = (uint32) len;
	h.window_seconds = window_seconds;
	h.room_len = (uint32) room_len;
	h.json_len = (uint32) json_len;
	appendBinaryStringInfo(pending, (const char *) &h, sizeof(h));
	appendBinaryStringInfo(pending, room, room_len + 1);
	appendBinaryStringInfo(pending, json, json_len + 1);
	appendBinaryStringInfo(pending, zeros, len - (sizeof(h) + room_len + json_len + 2));
}

uint64
evc_live_ring_attach(void)
{
	uint64		head;

	LWLockAcquire(live_ring->lock, LW_EXCLUSIVE);
	live_ring->reader_procno = MyProc->pgprocno;
	head = live_ring->head;
	LWLockRelease(live_ring->lock);
	return head;
}

void
evc_live_ring_detach(void)
{
	if (live_ring == NULL)
		return;
	LWLockAcquire(live_ring->lock, LW_EXCLUSIVE);
	if (live_ring->reader_procno == MyProc->pgprocno)
		live_ring->reader_procno = -1;
	LWLockRelease(live_ring->lock);
}

void
evc_live_ring_read(uint64 *cursor, StringInfo buf, int max_bytes, bool *lost)
{
	uint64		head;
	uint64		at;

	*lost = false;
	LWLockAcquire(live_ring->lock, LW_SHARED);
	head = live_ring->head;
	if (head - *cursor > LIVE_RING_BYTES)
	{
		*lost = true;
		*cursor = head;
	}
	for (at = *cursor; at < head;)
	{
		LiveRecordHeader h;

		ring_copy_out(at, &h, sizeof(h));
		if (buf->len + (int) h.len > max_bytes && buf->len > 0)
			break;
		enlargeStringInfo(buf, h.len);
		ring_copy_out(at, buf->data + buf->len, h.len);
		buf->len += h.len;
		at += h.len;
	}
	LWLockRelease(live_ring->lock);
	*cursor = at;
}

bool
evc_live_ring_next(StringInfo buf, int *pos, EvcLiveRecord *rec)
{
	LiveRecordHeader h;
	const char *p;

	if (*pos + (int) sizeof(h) > buf->len)
		return false;
	memcpy(&h, buf->data + *pos, sizeof(h));
	p = buf->data + *pos + sizeof(h);
	rec->window_seconds = h.window_seconds;
	rec->room = p;
	rec->json = p + h.room_len + 1;
	rec->json_len = (int) h.json_len;
	*pos += h.len;
	return true;
}

void
evc_live_ring_stats(EvcLiveRingStats *stats)
{
	memset(stats, 0, sizeof(*stats));
	if (live_ring == NULL)
		return;
	LWLockAcquire(live_ring->lock, LW_SHARED);
	stats->records = live_ring->records;
	stats->bytes = live_ring->head;
	stats->dropped = live_ring->dropped;
	LWLockRelease(live_ring->lock);
}
