/*
 * launcher.c
 *		Owns the static launcher background worker.
 *
 * The launcher connects to evcollector.database and is the one process the
 * postmaster starts for us.  It sleeps on its latch, wakes when a backend
 * or the postmaster sets it (or on a long safety timeout), reloads settings
 * on SIGHUP and exits at once on SIGTERM through die().  Each tick runs in a
 * memory context that is reset afterwards, and in a short transaction of its
 * own, so that it never holds a lock that DROP EXTENSION or DROP DATABASE
 * would wait for.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "guc.h"
#include "launcher.h"
#include "shmem.h"

/* Seconds before the postmaster restarts a launcher that died. */
#define LAUNCHER_RESTART_SECS 5

/* Safety net only: every real event sets the latch. */
#define LAUNCHER_IDLE_TIMEOUT_MS (60 * 1000)

static EvcWorkerSlot *launcher_slot = NULL;
static bool extension_seen = false;

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

static void
launcher_on_exit(int code, Datum arg)
{
	if (launcher_slot != NULL)
		evc_worker_detach(launcher_slot);
}

/*
 * Look at the configuration in the database.  The extension may not be
 * created yet, or may be dropped at any time: the launcher then idles.
 */
static void
launcher_tick(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "evcollector launcher: checking configuration");

	installed = OidIsValid(get_extension_oid("evcollector", true));

	PopActiveSnapshot();
	CommitTransactionCommand();

	if (installed != extension_seen)
	{
		ereport(LOG,
				(errmsg("evcollector launcher: extension %s in database \"%s\"",
						installed ? "found" : "not installed", evc_database)));
		extension_seen = installed;
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
evc_launcher_main(Datum main_arg)
{
	MemoryContext tick_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* Cleanup first, then state, so an early exit leaves no stale slot. */
	before_shmem_exit(launcher_on_exit, (Datum) 0);
	launcher_slot = evc_worker_slot(EVC_WORKER_LAUNCHER, "launcher", true);
	if (launcher_slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free evcollector worker slot for the launcher")));
	evc_worker_attach(launcher_slot);

	BackgroundWorkerInitializeConnection(evc_database, NULL, 0);
	pgstat_report_appname("evcollector launcher");

	tick_context = AllocSetContextCreate(TopMemoryContext,
										 "evcollector launcher tick",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(tick_context);

		launcher_tick();
		MemoryContextSwitchTo(old);
		MemoryContextReset(tick_context);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_IDLE_TIMEOUT_MS,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}
