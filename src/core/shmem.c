/*
 * shmem.c
 *		Owns evcollector's shared memory: the registry of supervised workers
 *		and the latch wake-ups that let backends and workers signal each
 *		other without polling.
 *
 * Shared memory exists only when the library is in shared_preload_libraries;
 * evc_require_preload() turns its absence into a clear error for the SQL
 * functions that need it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "core/shmem.h"
#include "gateway/live.h"

EvcShared  *evc_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Kinds of worker to wake when the current transaction commits. */
static uint32 wake_at_commit_mask = 0;
static bool xact_callback_registered = false;
static int	sent_in_xact = 0;

static void
evc_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EvcShared)));
	RequestNamedLWLockTranche("evcollector", 1);
	evc_live_shmem_request();
}

static void
evc_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	evc_shared = ShmemInitStruct("evcollector", sizeof(EvcShared), &found);
	if (!found)
	{
		memset(evc_shared, 0, sizeof(EvcShared));
		evc_shared->lock = &(GetNamedLWLockTranche("evcollector"))->lock;
		ConditionVariableInit(&evc_shared->outbox_settled);
		pg_atomic_init_u64(&evc_shared->sent, 0);
		pg_atomic_init_u32(&evc_shared->outbox_current, 0);
		pg_atomic_init_u64(&evc_shared->relay_delivered_tick, 0);
		pg_atomic_init_u32(&evc_shared->flush_waiters, 0);
		pg_atomic_init_u32(&evc_shared->relay_mode, 0);
		for (int i = 0; i < EVC_MAX_WORKERS; i++)
			evc_shared->workers[i].pgprocno = -1;
	}
	evc_live_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
evc_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = evc_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = evc_shmem_startup;
}

bool
evc_shmem_attached(void)
{
	return evc_shared != NULL;
}

void
evc_require_preload(void)
{
	if (evc_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evcollector must be loaded via \"shared_preload_libraries\""),
				 errdetail("This function needs the shared memory and background workers that evcollector sets up at server start."),
				 errhint("Add evcollector to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Find the slot of a worker, optionally claiming a free one.  Caller holds
 * evc_shared->lock exclusively when create is true.
 */
static EvcWorkerSlot *
find_slot_locked(EvcWorkerKind kind, const char *name, bool create)
{
	EvcWorkerSlot *free_slot = NULL;

	for (int i = 0; i < EVC_MAX_WORKERS; i++)
	{
		EvcWorkerSlot *slot = &evc_shared->workers[i];

		if (!slot->in_use)
		{
			if (free_slot == NULL)
				free_slot = slot;
			continue;
		}
		if (slot->kind == kind && strcmp(slot->name, name) == 0)
			return slot;
	}
	if (!create || free_slot == NULL)
		return NULL;

	memset(free_slot, 0, sizeof(EvcWorkerSlot));
	free_slot->in_use = true;
	free_slot->kind = kind;
	free_slot->pgprocno = -1;
	strlcpy(free_slot->name, name, EVC_WORKER_NAME_LEN);
	return free_slot;
}

EvcWorkerSlot *
evc_worker_slot(EvcWorkerKind kind, const char *name, bool create)
{
	EvcWorkerSlot *slot;

	LWLockAcquire(evc_shared->lock, create ? LW_EXCLUSIVE : LW_SHARED);
	slot = find_slot_locked(kind, name, create);
	LWLockRelease(evc_shared->lock);
	return slot;
}

/* Called by a worker at start: publish its pid and latch. */
void
evc_worker_attach(EvcWorkerSlot *slot)
{
	LWLockAcquire(evc_shared->lock, LW_EXCLUSIVE);
	slot->pid = MyProcPid;
	slot->pgprocno = MyProc->pgprocno;
	slot->started_at = GetCurrentTimestamp();
	slot->starts++;
	LWLockRelease(evc_shared->lock);
}

/* Called from a worker's exit callback. */
void
evc_worker_detach(EvcWorkerSlot *slot)
{
	LWLockAcquire(evc_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->pgprocno = -1;
		slot->stopped_at = GetCurrentTimestamp();
	}
	LWLockRelease(evc_shared->lock);
}

/* Forget a worker that is no longer configured. */
void
evc_worker_release(EvcWorkerSlot *slot)
{
	LWLockAcquire(evc_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == 0)
		slot->in_use = false;
	LWLockRelease(evc_shared->lock);
}

void
evc_worker_record_error(EvcWorkerSlot *slot, const char *message)
{
	LWLockAcquire(evc_shared->lock, LW_EXCLUSIVE);
	strlcpy(slot->last_error, message ? message : "", EVC_ERROR_LEN);
	slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(evc_shared->lock);
}

/* Set the latch of every running worker of a kind (and name, if given). */
void
evc_wake_worker(EvcWorkerKind kind, const char *name)
{
	if (evc_shared == NULL)
		return;

	LWLockAcquire(evc_shared->lock, LW_SHARED);
	for (int i = 0; i < EVC_MAX_WORKERS; i++)
	{
		EvcWorkerSlot *slot = &evc_shared->workers[i];

		if (!slot->in_use || slot->kind != kind || slot->pgprocno < 0)
			continue;
		if (name != NULL && strcmp(slot->name, name) != 0)
			continue;
		SetLatch(&ProcGlobal->allProcs[slot->pgprocno].procLatch);
	}
	LWLockRelease(evc_shared->lock);
}

/*
 * Wake workers only when the transaction commits, so that a rolled-back
 * transaction causes no work, and the worker never looks before the data
 * it is woken for is visible.
 */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	uint32		mask = wake_at_commit_mask;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			wake_at_commit_mask = 0;
			if (sent_in_xact > 0 && evc_shared != NULL)
				pg_atomic_fetch_add_u64(&evc_shared->sent, sent_in_xact);
			sent_in_xact = 0;
			/* Visible to new snapshots by now: wake. */
			for (int kind = 0; kind < 32; kind++)
			{
				if (mask & (1U << kind))
					evc_wake_worker((EvcWorkerKind) kind, NULL);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit_mask = 0;
			sent_in_xact = 0;
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * The transaction is no longer this session's: COMMIT PREPARED
			 * may run anywhere, and nothing is woken now.  The relay's
			 * snapshots need no word of it: its events go in the first batch
			 * after it commits.  They count as sent, as nearly all prepared
			 * transactions commit.
			 */
			if (sent_in_xact > 0 && evc_shared != NULL)
				pg_atomic_fetch_add_u64(&evc_shared->sent, sent_in_xact);
			wake_at_commit_mask = 0;
			sent_in_xact = 0;
			break;
		default:
			break;
	}
}

/*
 * Count events the current transaction sends; they are added to the shared
 * counter only if it commits.  A rolled-back savepoint still counts, which
 * is why evc.stats calls this number "sent", not "delivered".
 */
void
evc_stats_count_sent(int n)
{
	sent_in_xact += n;
}

/* The current transaction inserted outbox rows: wake the relay at commit. */
void
evc_outbox_note_insert(void)
{
	evc_wake_at_commit(EVC_WORKER_RELAY);
}

/* Will this transaction wake workers of this kind when it commits? */
bool
evc_wake_pending(EvcWorkerKind kind)
{
	return (wake_at_commit_mask & (1U << kind)) != 0;
}

void
evc_wake_at_commit(EvcWorkerKind kind)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit_mask |= (1U << kind);
}
