/*
 * worker_xact.h
 *		The bracket of every database step a background worker takes
 *		(pg_cron's model): a transaction, its snapshot and SPI, and what
 *		pg_stat_activity shows, opened and closed the same way each time.
 */
#ifndef EVC_UTIL_WORKER_XACT_H
#define EVC_UTIL_WORKER_XACT_H

extern void evc_worker_xact_begin(const char *activity);
extern void evc_worker_xact_end(void);
extern void evc_worker_xact_home(MemoryContext cxt);

#endif							/* EVC_UTIL_WORKER_XACT_H */
