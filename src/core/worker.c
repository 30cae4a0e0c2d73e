/*
 * worker.c
 *		Owns what every evcollector worker, the launcher included, does the
 *		same way: signal handlers installed before signals are unblocked,
 *		its slot in the shared worker registry (released by an exit callback
 *		registered before any state is built), the connection to
 *		evcollector.database, and the interrupt and reload handling after
 *		each latch wake-up.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"

#include "core/guc.h"
#include "core/worker.h"

static EvcWorkerSlot *my_slot = NULL;

static void
worker_on_exit(int code, Datum arg)
{
	if (my_slot != NULL)
		evc_worker_detach(my_slot);
}

/*
 * The first thing a worker's main function does.  The exit callback is
 * registered before the slot is taken, so that no exit, however early,
 * leaves the slot marked running.
 */
EvcWorkerSlot *
evc_worker_startup(EvcWorkerKind kind, const char *name)
{
	char		appname[NAMEDATALEN];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	before_shmem_exit(worker_on_exit, (Datum) 0);
	my_slot = evc_worker_slot(kind, name, true);
	if (my_slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free evcollector worker slot for \"%s\"", name)));
	evc_worker_attach(my_slot);

	BackgroundWorkerInitializeConnection(evc_database, NULL, 0);
	snprintf(appname, sizeof(appname), "evcollector %s", name);
	pgstat_report_appname(appname);
	return my_slot;
}

/* After every wake-up: die on SIGTERM, reload on SIGHUP. */
void
evc_worker_handle_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}
