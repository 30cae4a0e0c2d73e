/*
 * handoff_int.h
 *		One helper thread per process that works through items the main
 *		loop posts and serves a library's callbacks, so that the two run on
 *		two cores.
 */
#ifndef EVC_RELAY_HANDOFF_INT_H
#define EVC_RELAY_HANDOFF_INT_H

#include "port/atomics.h"

/*
 * Both run on the helper thread, so they must not call any PostgreSQL
 * function (no palloc, no elog).  The work function does items [from, to)
 * of the posted array, reading cancel (pg_atomic_read_u32) between items
 * and stopping early when it is set.
 */
typedef void (*EvcHandoffWork) (void *items, int from, int to, pg_atomic_uint32 *cancel);
typedef void (*EvcHandoffServe) (void);

extern void evc_handoff_start(EvcHandoffWork work, EvcHandoffServe serve, int serve_fd, int wake_fd);
extern void evc_handoff_begin(void *items);
extern void evc_handoff_post(int count);
extern bool evc_handoff_done(void);
extern void evc_handoff_cancel(void);
extern void evc_handoff_serving(bool on);
extern void evc_handoff_wake_main(void);

#endif
