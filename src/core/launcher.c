/*
 * launcher.c
 *		Owns the static launcher background worker.
 *
 * The launcher connects to evcollector.database and is the one process the
 * postmaster starts for us.  It supervises the dynamic workers listed by
 * the view evc.wanted_workers: it starts them, restarts one that died with
 * exponential backoff (1 s doubling to 60 s, reset after a minute of good
 * running), and stops one that is no longer wanted.  It sleeps on its latch, wakes when a backend
 * or the postmaster sets it (or on a long safety timeout), reloads settings
 * on SIGHUP and exits at once on SIGTERM through die().  Each tick runs in a
 * memory context that is reset afterwards, and in a short transaction of its
 * own, so that it never holds a lock that DROP EXTENSION or DROP DATABASE
 * would wait for.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/launcher.h"
#include "core/shmem.h"
#include "core/stats.h"
#include "core/worker.h"
#include "gateway/gateway.h"
#include "util/worker_xact.h"

/* Seconds before the postmaster restarts a launcher that died. */
#define LAUNCHER_RESTART_SECS 5

/* Safety net only: every real event sets the latch. */
#define LAUNCHER_IDLE_TIMEOUT_MS (60 * 1000)

static bool extension_seen = false;

/*
 * A dynamic worker the launcher supervises.  Handles are process-local, so
 * they live here, in the launcher's own memory, not in shared memory.
 */
typedef struct Supervised
{
	EvcWorkerKind kind;
	char		name[EVC_WORKER_NAME_LEN];
	char		function[BGW_MAXLEN];
	int32		arg;
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;
	TimestampTz next_start;		/* backoff: not before this time */
	int			failures;		/* consecutive short-lived runs */
	bool		wanted;
} Supervised;

static List *supervised = NIL;	/* in TopMemoryContext */

/* A run shorter than this counts as a failure for the backoff. */
#define HEALTHY_RUN_MS (60 * 1000)
#define BACKOFF_MAX_MS (60 * 1000)

void
evc_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = LAUNCHER_RESTART_SECS;
	strlcpy(worker.bgw_library_name, "evcollector", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "evc_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "evcollector launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "evcollector launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static EvcWorkerKind
kind_from_name(const char *kind)
{
	if (strcmp(kind, "relay") == 0)
		return EVC_WORKER_RELAY;
	if (strcmp(kind, "consumer") == 0)
		return EVC_WORKER_CONSUMER;
	if (strcmp(kind, "gateway") == 0)
		return EVC_WORKER_GATEWAY;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("unknown evcollector worker kind \"%s\"", kind),
			 errdetail("evc.wanted_workers returned a kind other than relay or consumer.")));
	return EVC_WORKER_RELAY;	/* keep compiler quiet */
}

static Supervised *find_supervised(EvcWorkerKind kind, const char *name);

/* Mark a worker wanted, adding it to the supervised list if new. */
static void
want_worker(EvcWorkerKind kind, const char *name, const char *function, int32 arg)
{
	Supervised *w = find_supervised(kind, name);

	if (w == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		w = palloc0(sizeof(Supervised));
		w->kind = kind;
		strlcpy(w->name, name, EVC_WORKER_NAME_LEN);
		supervised = lappend(supervised, w);
		MemoryContextSwitchTo(old);
	}
	strlcpy(w->function, function, BGW_MAXLEN);
	w->arg = arg;
	w->wanted = true;
}

static Supervised *
find_supervised(EvcWorkerKind kind, const char *name)
{
	ListCell   *lc;

	foreach(lc, supervised)
	{
		Supervised *w = lfirst(lc);

		if (w->kind == kind && strcmp(w->name, name) == 0)
			return w;
	}
	return NULL;
}

/*
 * Read the workers the configuration asks for from the view
 * evc.wanted_workers (each migration defines which workers exist) and mark
 * them wanted.  Nothing is wanted while the extension is not installed.
 */
static void
read_wanted_workers(void)
{
	ListCell   *lc;

	foreach(lc, supervised)
		((Supervised *) lfirst(lc))->wanted = false;

	evc_worker_xact_begin("evcollector launcher: reading wanted workers");

	extension_seen = OidIsValid(get_extension_oid("evcollector", true));
	if (extension_seen &&
		SPI_execute("SELECT kind, name, function, arg FROM evc.wanted_workers", true, 0) == SPI_OK_SELECT)
	{
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			want_worker(kind_from_name(SPI_getvalue(tup, desc, 1)), SPI_getvalue(tup, desc, 2),
						SPI_getvalue(tup, desc, 3), atoi(SPI_getvalue(tup, desc, 4)));
		}
	}
	/* The gateway is wanted by a setting, not by a table. */
	if (extension_seen && evc_gw_listen != NULL && evc_gw_listen[0] != '\0')
		want_worker(EVC_WORKER_GATEWAY, "gateway", "evc_gateway_main", 0);

	evc_worker_xact_end();
}

static bool
start_worker(Supervised *w)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* The launcher restarts it, with backoff; the postmaster must not. */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "evcollector", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, w->function, BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "evcollector %s", w->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "evcollector %s",
			 w->kind == EVC_WORKER_RELAY ? "relay" :
			 w->kind == EVC_WORKER_GATEWAY ? "gateway" : "consumer");
	strlcpy(worker.bgw_extra, w->name, BGW_EXTRALEN);
	worker.bgw_main_arg = Int32GetDatum(w->arg);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &w->handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start evcollector worker \"%s\"", w->name),
				 errdetail("All background worker slots are in use."),
				 errhint("Raise max_worker_processes; evcollector needs one for the launcher, one for the relay and one per enabled consumer.")));
		w->handle = NULL;
		return false;
	}
	w->started_at = GetCurrentTimestamp();
	return true;
}

static int64
backoff_ms(int failures)
{
	int64		ms = 1000;

	for (int i = 1; i < failures && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	return Min(ms, BACKOFF_MAX_MS);
}

/*
 * Start what is wanted and not running (once its backoff has passed), stop
 * what runs and is no longer wanted, and notice workers that died.  Returns
 * how long the launcher may sleep before a backoff expires.
 */
static long
supervise_workers(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = LAUNCHER_IDLE_TIMEOUT_MS;
	ListCell   *lc;

	foreach(lc, supervised)
	{
		Supervised *w = lfirst(lc);
		pid_t		pid;

		if (w->handle != NULL &&
			GetBackgroundWorkerPid(w->handle, &pid) == BGWH_STOPPED)
		{
			pfree(w->handle);
			w->handle = NULL;
			if (TimestampDifferenceExceeds(w->started_at, now, HEALTHY_RUN_MS))
				w->failures = 1;
			else
				w->failures++;
			w->next_start = TimestampTzPlusMilliseconds(now, backoff_ms(w->failures));
			if (w->wanted)
				ereport(LOG,
						(errmsg("evcollector worker \"%s\" stopped; restarting it in %lld ms",
								w->name, (long long) backoff_ms(w->failures))));
		}

		if (!w->wanted && w->handle != NULL)
			TerminateBackgroundWorker(w->handle);
		else if (w->wanted && w->handle == NULL)
		{
			if (now >= w->next_start)
			{
				if (!start_worker(w))
					w->next_start = TimestampTzPlusMilliseconds(now, BACKOFF_MAX_MS);
			}
			if (w->handle == NULL)
			{
				long		ms = TimestampDifferenceMilliseconds(now, w->next_start);

				sleep_ms = Min(sleep_ms, Max(ms, 10));
			}
		}
	}

	/* Forget workers that are neither wanted nor running. */
	foreach(lc, supervised)
	{
		Supervised *w = lfirst(lc);

		if (!w->wanted && w->handle == NULL)
		{
			EvcWorkerSlot *slot = evc_worker_slot(w->kind, w->name, false);

			if (slot != NULL)
				evc_worker_release(slot);
			supervised = foreach_delete_current(supervised, lc);
			pfree(w);
		}
	}
	return sleep_ms;
}

void
evc_launcher_main(Datum main_arg)
{
	MemoryContext tick_context;

	/* As every worker: handlers, then its slot, then evcollector.database. */
	(void) evc_worker_startup(EVC_WORKER_LAUNCHER, "launcher");
	tick_context = AllocSetContextCreate(TopMemoryContext,
										 "evcollector launcher tick",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(tick_context);
		long		sleep_ms;

		read_wanted_workers();
		sleep_ms = supervise_workers();
		MemoryContextSwitchTo(old);
		MemoryContextReset(tick_context);

		/* Between transactions, as an idle backend: flush our statistics. */
		sleep_ms = evc_stats_report_idle(sleep_ms);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		evc_worker_handle_interrupts();
	}
}
