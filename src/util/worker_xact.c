/*
 * worker_xact.c
 *		Owns the transaction bracket of a background worker's database
 *		steps: start the transaction, connect SPI, push a snapshot, show
 *		the step in pg_stat_activity; then the same in reverse.
 *
 * Only for workers, outside any transaction: a SQL function runs inside
 * its caller's.  An error between the two calls is handled by the
 * worker's own PG_CATCH, whose AbortCurrentTransaction also ends SPI and
 * the snapshot; the catch then switches to a context of its own.
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
 * The memory context current before the transaction: CommitTransactionCommand
 * leaves TopMemoryContext current, and a worker's loop that allocates in a
 * context of its own (reset every round) would otherwise go on in
 * TopMemoryContext after its first step, which is never reset.  The relay
 * leaked 32 bytes an event that way (its settle's arrays, after the read's
 * transaction).
 */
static MemoryContext before_xact = NULL;

void
evc_worker_xact_begin(const char *activity)
{
	before_xact = CurrentMemoryContext;
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
	if (before_xact != NULL)
		MemoryContextSwitchTo(before_xact);
	before_xact = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
}
