/*
 * evc-produce.c
 *		Test helper: produce evcollector.Event messages (protobuf, with the
 *		message_id, schema_version and content-type headers that evc_send
 *		sets) or garbage bytes to a Kafka topic, fast.
 *
 * Usage: evc-produce -b BROKERS -t TOPIC -n COUNT [-s FIRST] [-g TAG]
 *			[-p PARTITION] [-i IMAGE_BYTES] [-S] [-G] [-e EVENT]
 *
 *	-s FIRST	sequence number of the first event (default 0)
 *	-g TAG		run tag: message ids are derived from TAG and the sequence
 *				number, so producing the same range again repeats them
 *	-p N		produce to partition N (default: by key)
 *	-i BYTES	image events with a blob of BYTES bytes (content differs per
 *				sequence number unless -S: the same image every time)
 *	-G			garbage: random bytes instead of protobuf
 *
 * Prints "produced N" and exits 0 when every message was acknowledged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "evcollector.pb-c.h"

static int	failed = 0;

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void) rk;
	(void) opaque;
	if (m->err)
	{
		if (failed++ < 5)
			fprintf(stderr, "evc-produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
	}
}

static uint32_t
fnv1a(const char *s)
{
	uint32_t	h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	return h;
}

static uint64_t
splitmix(uint64_t *x)
{
	uint64_t	z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int
main(int argc, char **argv)
{
	const char *brokers = NULL,
			   *topic = NULL,
			   *tag = "t",
			   *event = "page_view";
	long		count = 0,
				first = 0,
				image_bytes = 0;
	int			partition = RD_KAFKA_PARTITION_UA,
				same_image = 0,
				garbage = 0,
				opt;
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	uint32_t	taghash;
	char		now[32];
	time_t		t = time(NULL);
	unsigned char *blob = NULL;
	size_t		bufsize = 1 << 16;
	uint8_t    *buf;

	while ((opt = getopt(argc, argv, "b:t:n:s:g:p:i:SGe:")) != -1)
	{
		switch (opt)
		{
			case 'b': brokers = optarg; break;
			case 't': topic = optarg; break;
			case 'n': count = atol(optarg); break;
			case 's': first = atol(optarg); break;
			case 'g': tag = optarg; break;
			case 'p': partition = atoi(optarg); break;
			case 'i': image_bytes = atol(optarg); break;
			case 'S': same_image = 1; break;
			case 'G': garbage = 1; break;
			case 'e': event = optarg; break;
			default:
				fprintf(stderr, "usage: evc-produce -b BROKERS -t TOPIC -n COUNT [-s FIRST] [-g TAG] [-p N] [-i BYTES] [-S] [-G] [-e EVENT]\n");
				return 2;
		}
	}
	if (!brokers || !topic || count <= 0)
	{
		fprintf(stderr, "evc-produce: -b, -t and -n are required\n");
		return 2;
	}
	taghash = fnv1a(tag);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "queue.buffering.max.kbytes", "262144", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)))
	{
		fprintf(stderr, "evc-produce: %s\n", errstr);
		return 2;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk)
	{
		fprintf(stderr, "evc-produce: %s\n", errstr);
		return 2;
	}
	if (image_bytes > 0)
	{
		blob = malloc(image_bytes);
		bufsize += image_bytes;
	}
	buf = malloc(bufsize);

	for (long seq = first; seq < first + count; seq++)
	{
		char		msgid[40], key[32], data[512], version[8];
		size_t		len;
		rd_kafka_headers_t *hdrs = rd_kafka_headers_new(3);
		rd_kafka_resp_err_t err;

		snprintf(msgid, sizeof(msgid), "%08x-0000-4000-8000-%012lx", taghash, (unsigned long) seq);
		snprintf(key, sizeof(key), "k%ld", seq);
		if (garbage)
		{
			uint64_t	x = seq * 7919 + taghash;

			len = 20 + seq % 50;
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t) splitmix(&x);
			buf[0] = 0xff;		/* never a valid protobuf field tag */
		}
		else
		{
			Evcollector__Event ev = EVCOLLECTOR__EVENT__INIT;
			Evcollector__EventContext ctx = EVCOLLECTOR__EVENT_CONTEXT__INIT;

			ctx.sent_at = now;
			ctx.received_at = now;
			ctx.processed_at = now;
			ctx.message_id = msgid;
			ctx.user_agent = "evc-produce";
			ev.client = "test";
			ev.event_name = (char *) event;
			ev.schema_version = 1;
			ev.context = &ctx;
			if (image_bytes > 0)
			{
				uint64_t	x = same_image ? 42 : (uint64_t) seq * 31 + taghash;

				for (long i = 0; i < image_bytes; i++)
					blob[i] = (unsigned char) splitmix(&x);
				snprintf(data, sizeof(data),
						 "{\"source\": \"cam-%ld\", \"width\": 640, \"height\": 480, \"metadata\": {\"seq\": %ld}}",
						 seq % 4, seq);
				ev.blob.data = blob;
				ev.blob.len = image_bytes;
				ev.blob_content_type = "image/png";
			}
			else
				snprintf(data, sizeof(data), "{\"seq\": %ld, \"tag\": \"%s\", \"text\": \"caf\\u00e9 \\\"quoted\\\"\"}", seq, tag);
			ev.data_json = data;
			len = evcollector__event__pack(&ev, buf);
		}
		rd_kafka_header_add(hdrs, "message_id", -1, msgid, -1);
		snprintf(version, sizeof(version), "1");
		rd_kafka_header_add(hdrs, "schema_version", -1, version, -1);
		rd_kafka_header_add(hdrs, "content-type", -1, "application/x-protobuf", -1);
		for (;;)
		{
			err = rd_kafka_producev(rk,
									RD_KAFKA_V_TOPIC(topic),
									RD_KAFKA_V_PARTITION(partition),
									RD_KAFKA_V_KEY(key, strlen(key)),
									RD_KAFKA_V_VALUE(buf, len),
									RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
									RD_KAFKA_V_HEADERS(hdrs),
									RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			rd_kafka_poll(rk, 50);
		}
		if (err)
		{
			rd_kafka_headers_destroy(hdrs);
			fprintf(stderr, "evc-produce: %s\n", rd_kafka_err2str(err));
			return 1;
		}
		rd_kafka_poll(rk, 0);
	}
	if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		fprintf(stderr, "evc-produce: flush timed out\n");
		return 1;
	}
	rd_kafka_destroy(rk);
	if (failed)
	{
		fprintf(stderr, "evc-produce: %d deliveries failed\n", failed);
		return 1;
	}
	printf("produced %ld\n", count);
	return 0;
}
