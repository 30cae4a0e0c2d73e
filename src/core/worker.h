/*
 * worker.h
 *		Start-up and main-loop plumbing shared by the launcher and the
 *		dynamic workers (relay, consumers) it supervises.
 */
#ifndef EVC_WORKER_H
#define EVC_WORKER_H

#include "core/shmem.h"

extern EvcWorkerSlot *evc_worker_startup(EvcWorkerKind kind, const char *name);
extern void evc_worker_handle_interrupts(void);

#endif
