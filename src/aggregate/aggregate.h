/*
 * aggregate.h
 *		Windowed aggregation of evc.events: declarations, the invalidation
 *		log, evc_aggregate(), and what the aggregates sink shares with them.
 */
#ifndef EVC_AGGREGATE_H
#define EVC_AGGREGATE_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#define EVC_ERRCODE_INVALID_POINTER		MAKE_SQLSTATE('E','V','A','0','1')
#define EVC_ERRCODE_UNKNOWN_FUNCTION	MAKE_SQLSTATE('E','V','A','0','2')
#define EVC_ERRCODE_INVALID_AGGREGATION MAKE_SQLSTATE('E','V','A','0','3')
#define EVC_ERRCODE_INVALID_WINDOW		MAKE_SQLSTATE('E','V','A','0','4')
#define EVC_ERRCODE_UNKNOWN_AGGREGATION MAKE_SQLSTATE('E','V','A','0','5')

#define EVC_CONTENT_TYPE_AGGREGATE "application/x-protobuf; proto=evcollector.AggregatedEvent"

/* The five functions, in the order they are stored and published. */
#define EVC_AGG_NFUNCS 5
extern const char *const evc_agg_functions[EVC_AGG_NFUNCS];
extern int	evc_agg_function_index(const char *name);

/* Longest window evc_aggregate accepts, and the origin windows align to. */
#define EVC_WINDOW_MAX_SECS (7 * 86400)
#define EVC_WINDOW_ORIGIN "2000-01-01 00:00:00+00"

/* aggregate_decl.c */
extern List *evc_json_pointer_parse(const char *pointer, const char *what);
extern char *evc_json_pointer_sql(const char *pointer);
extern void evc_require_aggregation_admin(const char *action);
extern void evc_aggregate_log_set_enabled(bool enabled);

/* aggregate.c */
extern int64 evc_window_seconds(Interval *window, const char *what);
extern char *evc_window_name(int64 seconds);

#endif
