/*
 * evcollector.c
 *		Module entry point: _PG_init and the SQL functions that describe the
 *		running extension itself (version, workers).
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "core/launcher.h"
#include "core/shmem.h"
#include "jsonschema/validate.h"

PG_MODULE_MAGIC;


void		_PG_init(void);

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	evc_define_gucs(process_shared_preload_libraries_in_progress);
	evc_validate_define_gucs();

	/*
	 * Shared memory and workers can only be set up by the postmaster.  When
	 * the library is loaded later, by a backend, the SQL functions that need
	 * them say so with a hint (evc_require_preload).
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	evc_shmem_install_hooks();
	evc_launcher_register();
}

PG_FUNCTION_INFO_V1(evc_version);
Datum
evc_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(EVC_VERSION_STR));
}

static const char *
worker_kind_name(EvcWorkerKind kind)
{
	switch (kind)
	{
		case EVC_WORKER_LAUNCHER:
			return "launcher";
		case EVC_WORKER_RELAY:
			return "relay";
		case EVC_WORKER_CONSUMER:
			return "consumer";
		case EVC_WORKER_GATEWAY:
			return "gateway";
	}
	return "unknown";
}

/*
 * evc_workers(): one row per supervised process, running or not.
 * A copy of the registry is taken under the lock, then turned into rows.
 */
PG_FUNCTION_INFO_V1(evc_workers);
Datum
evc_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EvcWorkerSlot *copy;

	evc_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	copy = palloc(sizeof(EvcWorkerSlot) * EVC_MAX_WORKERS);
	LWLockAcquire(evc_shared->lock, LW_SHARED);
	memcpy(copy, evc_shared->workers, sizeof(EvcWorkerSlot) * EVC_MAX_WORKERS);
	LWLockRelease(evc_shared->lock);

	for (int i = 0; i < EVC_MAX_WORKERS; i++)
	{
		EvcWorkerSlot *w = &copy[i];
		Datum		values[8];
		bool		nulls[8] = {0};

		if (!w->in_use)
			continue;
		values[0] = CStringGetTextDatum(worker_kind_name(w->kind));
		values[1] = CStringGetTextDatum(w->name);
		values[2] = Int32GetDatum(w->pid);
		nulls[2] = (w->pid == 0);
		values[3] = TimestampTzGetDatum(w->started_at);
		nulls[3] = (w->started_at == 0);
		values[4] = TimestampTzGetDatum(w->stopped_at);
		nulls[4] = (w->stopped_at == 0);
		values[5] = Int64GetDatum(w->starts);
		values[6] = CStringGetTextDatum(w->last_error);
		nulls[6] = (w->last_error[0] == '\0');
		values[7] = TimestampTzGetDatum(w->last_error_at);
		nulls[7] = (w->last_error_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * evc.wake_launcher(): set the launcher's latch at commit.  Without shared
 * memory (not preloaded) there is no launcher to wake, which is fine.
 */
PG_FUNCTION_INFO_V1(evc_wake_launcher);
Datum
evc_wake_launcher(PG_FUNCTION_ARGS)
{
	if (evc_shmem_attached())
		evc_wake_at_commit(EVC_WORKER_LAUNCHER);
	PG_RETURN_VOID();
}
