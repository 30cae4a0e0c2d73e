/*
 * fuzz_sink_decode.c
 *		A sink's decode-and-check of one Kafka message (decode_message in
 *		src/consume/sinks.c), on any bytes, for each sink kind.
 *
 * decode_message is static, so this file includes sinks.c itself: the
 * code under test is compiled unchanged, and nothing in sinks.c is
 * exported for the fuzzer's sake.
 *
 * A message the check accepts is one the sinks go on to land, so it must
 * keep the check's promises: its data_json is a JSON object that jsonb
 * accepts (the table sink casts it), sent_at parses, and its archive line
 * (append_archive_line) is one line of valid JSON, as JSON Lines requires.
 * A message it refuses must say why.
 */
#include "../../src/consume/sinks.c"

#include "fuzz_pg.h"

typedef struct SinkCase
{
	EvcConsumerConfig cfg;
	EvcMessage	msg;
} SinkCase;

static void
check_one(void *arg)
{
	SinkCase   *sc = arg;
	DecodedEvent d;
	EvcPartitionBatch pb = {"fuzz.topic", 3, 1, 1, &sc->msg};
	StringInfoData line;
	char	   *nl;

	decode_message(&sc->cfg, &sc->msg, &d);
	if (d.ev == NULL)
	{
		if (d.error == NULL || d.error[0] == '\0')
			fuzz_fail("a message was refused without a reason");
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "fuzz: refused: %s\n", d.error);
		return;
	}
	if (d.error != NULL)
		fuzz_fail("a message was both accepted and refused: %s", d.error);
	if (fuzz_parse_jsonb(d.ev->data_json) == NULL)
		fuzz_fail("accepted data_json that jsonb refuses: %s", fuzz_last_message);
	initStringInfo(&line);
	append_archive_line(&line, &pb, &d);
	nl = strchr(line.data, '\n');
	if (nl == NULL || nl[1] != '\0')
		fuzz_fail("the archive line of an accepted event is not one line");
	if (fuzz_parse_jsonb(line.data) == NULL)
		fuzz_fail("the archive line of an accepted event is not JSON: %s", fuzz_last_message);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SinkCase	sc;

	if (size < 1)
		return 0;
	fuzz_begin();
	memset(&sc, 0, sizeof(sc));
	sc.cfg.name = "fuzz";
	sc.cfg.sink = (EvcSinkKind) (data[0] % 4);
	sc.msg.offset = 42;
	sc.msg.timestamp_ms = 1764586052000;
	/* exactly the payload's bytes, so an overread is caught at once */
	sc.msg.len = size - 1;
	sc.msg.payload = fuzz_cstring(data + 1, size - 1);
	fuzz_run(check_one, &sc);
	return 0;
}
