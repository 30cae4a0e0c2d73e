/*
 * spi_plans.h
 *		Kept SPI plans: prepared once per process, executed many times.
 */
#ifndef EVC_UTIL_SPI_PLANS_H
#define EVC_UTIL_SPI_PLANS_H

#include "executor/spi.h"

extern SPIPlanPtr evc_spi_kept_plan(SPIPlanPtr *slot, const char *sql, int nargs,
									Oid *argtypes);
extern void evc_spi_execute_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
								 int expected);

#endif							/* EVC_UTIL_SPI_PLANS_H */
