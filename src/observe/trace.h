/*
 * trace.h
 *		The delivery ring behind evc_trace(): the relay notes each batch's
 *		acknowledged deliveries here, between begin and end, under one
 *		acquisition of the shared lock.
 */
#ifndef EVC_OBSERVE_TRACE_H
#define EVC_OBSERVE_TRACE_H

#include "datatype/timestamp.h"

extern void evc_trace_begin_notes(void);
extern void evc_trace_note_delivery(const char *message_id, const char *topic,
									int32 partition, int64 offset, TimestampTz acked_at);
extern void evc_trace_end_notes(void);

#endif							/* EVC_OBSERVE_TRACE_H */
