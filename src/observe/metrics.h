/*
 * metrics.h
 *		evc_metrics() and the Metrics message the relay publishes.
 */
#ifndef EVC_METRICS_H
#define EVC_METRICS_H

#define EVC_CONTENT_TYPE_METRICS "application/x-protobuf; proto=evcollector.Metrics"

extern void evc_metrics_publish(void);

#endif
