/*
 * wait.c
 *		librdkafka's blocking metadata and watermark calls, cut into slices
 *		with an interrupt check between them.
 *
 * rd_kafka_metadata and rd_kafka_query_watermark_offsets block for their
 * whole timeout when no broker answers.  Called as one, a worker told to
 * stop (SIGTERM, pg_ctl stop -m fast) during a broker outage would wait the
 * timeout out first.  Each call here asks again with a longer wait each
 * time (250 ms, doubling, at most 2 s a slice), so a slow broker still gets
 * to answer and a stop waits at most one slice.  librdkafka has no
 * cancellable form of either call, hence the slices.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/timestamp.h"

#include "kafka/kafka.h"

#define FIRST_SLICE_MS 250
#define LONGEST_SLICE_MS 2000

/* The next slice: doubled, at most LONGEST_SLICE_MS, and never past the deadline. */
static int
next_slice(int slice_ms, TimestampTz deadline)
{
	long		left_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

	slice_ms = Min(slice_ms * 2, LONGEST_SLICE_MS);
	return (int) Max(Min((long) slice_ms, left_ms), 1);
}

/*
 * rd_kafka_metadata(rk, false, only, md, timeout_ms), answered or timed
 * out within about timeout_ms.
 */
rd_kafka_resp_err_t
evc_kafka_metadata(rd_kafka_t *rk, rd_kafka_topic_t *only, const struct rd_kafka_metadata **md,
				   int timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	int			slice_ms = Min(FIRST_SLICE_MS, timeout_ms);

	for (;;)
	{
		rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, only, md, slice_ms);

		if (err != RD_KAFKA_RESP_ERR__TIMED_OUT || GetCurrentTimestamp() >= deadline)
			return err;
		CHECK_FOR_INTERRUPTS();
		slice_ms = next_slice(slice_ms, deadline);
	}
}

/* rd_kafka_query_watermark_offsets, the same way. */
rd_kafka_resp_err_t
evc_kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *low,
					 int64_t *high, int timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	int			slice_ms = Min(FIRST_SLICE_MS, timeout_ms);

	for (;;)
	{
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, partition, low, high,
																   slice_ms);

		if (err != RD_KAFKA_RESP_ERR__TIMED_OUT || GetCurrentTimestamp() >= deadline)
			return err;
		CHECK_FOR_INTERRUPTS();
		slice_ms = next_slice(slice_ms, deadline);
	}
}
