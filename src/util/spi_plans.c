/*
 * spi_plans.c
 *		Owns the kept SPI plans of the workers and SQL functions: a
 *		statement run for every batch is parsed and planned once per
 *		process, and each execution is checked the same way.
 *
 * A kept plan lives in CacheMemoryContext until the process exits; the
 * caller holds it in a static slot.  Kept plans are revalidated by the
 * plan cache, so a table dropped and recreated (DROP and CREATE EXTENSION
 * while a worker runs) is planned again at its next execution rather
 * than used stale.  Every caller must be connected to SPI.
 */
#include "postgres.h"

#include "utils/plancache.h"

#include "util/spi_plans.h"

/*
 * The plan in *slot, prepared and kept on first use.  A statement that
 * cannot be prepared is one of ours written wrong, hence elog.
 */
SPIPlanPtr
evc_spi_kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/*
 * Execute a plan read-write with no row limit, and fail unless SPI
 * returns expected.  SPI leaves its own procedure context current after
 * each call; the caller's is made current again, so that a caller working
 * in a short-lived context (a sink's per-partition one) does not find its
 * later allocations living until SPI_finish.  SPI_processed and
 * SPI_tuptable are as SPI left them.
 */
void
evc_spi_execute_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	MemoryContextSwitchTo(cxt);
	if (rc != expected)
	{
		CachedPlanSource *source = linitial(SPI_plan_get_plan_sources(plan));

		elog(ERROR, "SPI_execute_plan returned %s instead of %s for \"%s\"",
			 SPI_result_code_string(rc), SPI_result_code_string(expected),
			 source->query_string);
	}
}
