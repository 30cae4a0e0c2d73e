/*
 * relay.c
 *		Owns the relay worker: it moves committed rows of the outbox tables
 *		to Kafka with librdkafka's idempotent producer, batch by batch, each
 *		batch cut between two snapshots (ticks), and rotates the tables.  This file is its life: start-up,
 *		the main loop, waiting, the transaction bracket of each step, and
 *		the metrics it publishes.  See README.md for the design.
 *
 * Batch by batch: read up to evcollector.relay_batch_size rows of the tick's
 * batch (a short transaction; relay_read.c), produce them
 * (relay_produce.c), wait for every delivery report with no transaction
 * open, then settle the batch (relay_settle.c); between batches, rotate
 * the tables (relay_rotate.c).
 *
 * This thread never sleeps except in a WaitEventSet that holds its latch
 * (set at commit by evc_send) and a pipe the producer thread writes to
 * when a batch's last report is in or it has produced all it was given.
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "core/shmem.h"
#include "core/worker.h"
#include "observe/metrics.h"
#include "relay/relay.h"
#include "relay/relay_int.h"
#include "util/port.h"

static int	io_pipe[2] = {-1, -1};		/* wakes the main loop */
static WaitEventSet *wait_set = NULL;		/* latch and io_pipe */
static WaitEventSet *kafka_wait_set = NULL;	/* io_pipe only */
EvcWorkerSlot *evc_relay_slot = NULL;	/* this worker's, for its counters */

/* Longest sleep when nothing is due: a safety net, commits set the latch. */
#define RELAY_IDLE_MS (60 * 1000)
/* Pause after a batch failed with an error, doubling up to the maximum. */
#define RELAY_ERROR_BACKOFF_MIN_MS 500
#define RELAY_ERROR_BACKOFF_MAX_MS (30 * 1000)

static void
drain_pipe(void)
{
	char		buf[64];

	while (read(io_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * Set when the latch fired (a commit sent events, or a signal came) while
 * the relay was busy; the main loop then reads the outbox again instead of
 * sleeping.  The latch itself is reset at once, or a set latch would make
 * every wait in a batch return at once and spin.
 */
bool evc_relay_work_signalled = false;

/* Wait on the latch and on the producer thread. */
static void
relay_wait(long timeout_ms)
{
	WaitEvent	event;

	if (WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION) > 0 &&
		(event.events & WL_LATCH_SET))
	{
		ResetLatch(MyLatch);
		evc_relay_work_signalled = true;
	}
	drain_pipe();
	evc_relay_service();
}

/*
 * Wait for the producer thread only, while a batch is in flight.  The
 * latch is left alone: a commit in the meantime finds it still set and
 * costs the sender no signal, and the main loop sees it once the batch is
 * settled.  Signals are seen at the next timeout, so callers keep it short.
 */
void
evc_relay_wait_kafka(long timeout_ms)
{
	WaitEvent	event;

	(void) WaitEventSetWait(kafka_wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
	drain_pipe();
	evc_relay_service();
}

/*
 * In a catch block: copy the error into cxt and leave the transaction it
 * broke off, so that the loop can go on.
 */
static ErrorData *
catch_error(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	SPI_finish();
	return edata;
}

/*
 * Log an error the loop caught, whole: its SQLSTATE, detail, hint and
 * context as it was raised, under what the relay does about it.  Not at
 * ERROR: the relay handled it and goes on.  hint stands in when the error
 * brought none.
 */
static void
log_caught_error(int elevel, const char *what, const ErrorData *edata, const char *hint)
{
	ereport(elevel,
			(errcode(edata->sqlerrcode),
			 errmsg("evcollector relay: %s: %s", what, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->detail_log ? errdetail_log("%s", edata->detail_log) : 0,
			 edata->hint ? errhint("%s", edata->hint) : hint ? errhint("%s", hint) : 0,
			 edata->context ? errcontext("%s", edata->context) : 0));
}

/*
 * Every evcollector.metrics_interval, publish a Metrics message through the
 * outbox; the commit wakes the relay, which then sends it like any event.
 * The relay publishes because it is the one worker that always runs.
 */
static TimestampTz metrics_due_at = 0;

static void
relay_publish_metrics(long *next_due_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = TimestampTzPlusMilliseconds(now, evc_metrics_interval_ms);
	long		until;

	if (evc_metrics_interval_ms <= 0)
	{
		metrics_due_at = 0;
		return;
	}
	if (metrics_due_at == 0 || metrics_due_at > next)
		metrics_due_at = next;	/* first time, or the interval was shortened */
	if (now >= metrics_due_at)
	{
		MemoryContext cxt = CurrentMemoryContext;

		/* A failure here must not hold up delivery: log it, try next time. */
		metrics_due_at = next;
		PG_TRY();
		{
			evc_worker_xact_begin("evcollector relay: publishing metrics");
			if (OidIsValid(get_extension_oid("evcollector", true)))
				evc_metrics_publish();
			evc_worker_xact_end();
		}
		PG_CATCH();
		{
			ErrorData  *edata = catch_error(cxt);

			pgstat_report_activity(STATE_IDLE, NULL);
			log_caught_error(WARNING, "could not publish metrics", edata,
							 "The next attempt is in evcollector.metrics_interval.");
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	until = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), metrics_due_at), 1);
	*next_due_ms = (*next_due_ms < 0) ? until : Min(*next_due_ms, until);
}

/*
 * After a batch failed: forget the batches in flight (their rows stay in
 * the outbox and are read again), record and log the error, and return how
 * long to pause, doubling the next pause.
 */
static long
relay_batch_failed(long *error_backoff_ms)
{
	ErrorData  *edata = catch_error(TopMemoryContext);
	long		pause = *error_backoff_ms;
	char		what[64];

	evc_relay_abandon_batches();	/* late reports are ignored */
	evc_worker_record_error(evc_relay_slot, edata->message);
	snprintf(what, sizeof(what), "batch failed, retrying in %ld ms", pause);
	log_caught_error(LOG, what, edata, NULL);
	FreeErrorData(edata);
	*error_backoff_ms = Min(pause * 2, RELAY_ERROR_BACKOFF_MAX_MS);
	return pause;
}

static void
relay_setup(void)
{
	if (evc_pipe_nonblock(io_pipe) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create pipe for librdkafka events: %m")));
	/* What another database's relay published is not this one's. */
	pg_atomic_write_u32(&evc_shared->outbox_current, 0);
	pg_memory_barrier();
	evc_shared->relay_database = MyDatabaseId;
	evc_relay_produce_init(io_pipe[1]);
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, io_pipe[0], NULL, NULL);
	kafka_wait_set = CreateWaitEventSet(TopMemoryContext, 2);
	AddWaitEventToSet(kafka_wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(kafka_wait_set, WL_SOCKET_READABLE, io_pipe[0], NULL, NULL);
}

void
evc_relay_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	long		stats_due_ms;
	long		timeout_ms;

	/* Static: they are changed inside PG_TRY and read after a longjmp. */
	static long error_backoff_ms = RELAY_ERROR_BACKOFF_MIN_MS;
	static long next_due_ms;
	static int	n;
	static bool full;

	evc_relay_slot = evc_worker_startup(EVC_WORKER_RELAY, "relay");
	/* A relay before this one (killed, crashed) may have left its mode. */
	pg_atomic_write_u32(&evc_shared->relay_mode, 0);

	/*
	 * librdkafka allocates and frees several small blocks for every message;
	 * glibc's fastbin consolidation of them was the relay's top cost.
	 */
	evc_malloc_tune_for_churn();

	/*
	 * The relay's own commits need not wait for the WAL flush: a settle
	 * lost in a crash only means its rows are still in the outbox and are
	 * sent again, with the same message_id, which at-least-once allows.
	 * The senders' commits, which make events exist, stay as configured.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	relay_setup();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "evcollector relay loop",
									 ALLOCSET_DEFAULT_SIZES);
	/*
	 * After each step's transaction, back to the loop's memory: what the
	 * relay keeps across rounds it allocates in TopMemoryContext by name.
	 */
	evc_worker_xact_home(loop_cxt);
	for (;;)
	{
		next_due_ms = -1;
		n = 0;
		full = false;

		/* Reset first: a commit while we work sets it again. */
		ResetLatch(MyLatch);
		evc_relay_work_signalled = false;
		evc_worker_handle_interrupts();

		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			n = evc_relay_batch(&next_due_ms, &full);
			if (n >= 0)
			{
				evc_relay_rotate(&next_due_ms);
				relay_publish_metrics(&next_due_ms);
			}
			MemoryContextSwitchTo(old);
			error_backoff_ms = RELAY_ERROR_BACKOFF_MIN_MS;
		}
		PG_CATCH();
		{
			next_due_ms = relay_batch_failed(&error_backoff_ms);
			n = 0;
			full = false;
		}
		PG_END_TRY();
		MemoryContextReset(loop_cxt);

		if (n < 0)
		{
			/* DROP EXTENSION: tell the launcher, which will not restart us. */
			pg_atomic_write_u32(&evc_shared->outbox_current, 0);
			evc_wake_worker(EVC_WORKER_LAUNCHER, NULL);
			proc_exit(0);
		}

		/*
		 * Between transactions, as a backend is when idle: flush this
		 * process's statistics, or the relay's deletes never reach
		 * pg_stat_user_tables and autovacuum (pg_net#254).  It flushes at
		 * most once a second; when it held some back, it says how soon to
		 * call again, and the wait below is no longer than that.
		 */
		stats_due_ms = pgstat_report_stat(false);
		if (full || evc_relay_work_signalled)
			continue;			/* more is waiting */
		timeout_ms = next_due_ms >= 0 ? Min(next_due_ms, RELAY_IDLE_MS) : RELAY_IDLE_MS;
		if (stats_due_ms > 0)
			timeout_ms = Min(timeout_ms, stats_due_ms);
		relay_wait(timeout_ms);
	}
}
