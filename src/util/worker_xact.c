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
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "util/worker_xact.h"

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
	pgstat_report_activity(STATE_IDLE, NULL);
}
