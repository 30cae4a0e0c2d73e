/*
 * worker_xact.c
 *		Owns the transaction bracket of a background worker's database
 *		steps: start the transaction, connect SPI, push a snapshot, show
 *		the step in pg_stat_activity; then the same in reverse.
 *
 * Only for workers, outside any transaction: a SQL function runs inside
 * its caller's.  An error between the two calls is handled by the
 * worker's own PG_CATCH, whose AbortCurrentTransaction also ends SPI and
 * the snapshot.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "util/worker_xact.h"

/*
 * Where a worker's loop allocates between its steps, if it says so.
 * CommitTransactionCommand leaves TopMemoryContext current, which is never
 * reset: the relay's loop allocates in a context of its own, reset every
 * round, and after its first step went on in TopMemoryContext, leaking 32
 * bytes an event (its settle's arrays).  Only a worker whose code after a
 * step keeps nothing it allocated without naming a context may set it: the
 * launcher, for one, keeps the handles RegisterDynamicBackgroundWorker
 * allocates after its step.
 */
static MemoryContext home_cxt = NULL;

void
evc_worker_xact_home(MemoryContext cxt)
{
	home_cxt = cxt;
}

void
evc_worker_xact_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
evc_worker_xact_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (home_cxt != NULL)
		MemoryContextSwitchTo(home_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}
