/*
 * fuzz_proto_decode.c
 *		The protobuf decoding of every message type that the consumers and
 *		evc_decode accept (proto/evcollector.proto, src/kafka/proto.c), and
 *		the relay's stamp of processed_at.
 *
 * Input: one byte choosing what to run, then the message bytes.
 *	0-6	evc_decode(bytes, <type>) for each type it knows.  Bytes that are
 *		not that message must be refused as such (22P03); a message that
 *		decodes must come out as JSON that jsonb accepts, in valid UTF-8.
 *	7	evc_decode_event_jsonb, as evc_decode_event() calls it.
 *	8	evc_event_set_processed_at, whose splice of the encoded bytes must
 *		give the message protobuf-c gives by decoding, setting the field
 *		and encoding again.
 */
#include "fuzz_pg.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "evcollector.pb-c.h"

#include "kafka/proto.h"

extern Datum evc_decode(PG_FUNCTION_ARGS);

static const char *const types[] = {
	"Event", "EventContext", "SchemaRecord", "AggregatedEvent", "WorkerMetrics",
	"PartitionLag", "evcollector.Metrics",
};

typedef struct ProtoCase
{
	int			mode;
	const uint8 *bytes;
	size_t		len;
} ProtoCase;

static void
decode(void *arg)
{
	ProtoCase  *pc = arg;
	bytea	   *b = palloc(VARHDRSZ + pc->len);

	Datum		json;
	char	   *text;

	SET_VARSIZE(b, VARHDRSZ + pc->len);
	memcpy(VARDATA(b), pc->bytes, pc->len);
	json = DirectFunctionCall2(evc_decode, PointerGetDatum(b), CStringGetTextDatum(types[pc->mode]));
	/* jsonb_in checks no encoding: the decoder must have */
	text = DatumGetCString(DirectFunctionCall1(jsonb_out, json));
	if (!pg_verifymbstr(text, strlen(text), true))
		fuzz_fail("evc_decode made a jsonb that is not valid UTF-8");
}

static void
decode_event(void *arg)
{
	ProtoCase  *pc = arg;
	Jsonb	   *jb = evc_decode_event_jsonb(pc->bytes, pc->len);
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

	if (!pg_verifymbstr(text, strlen(text), true))
		fuzz_fail("evc_decode_event made a jsonb that is not valid UTF-8");
}

/* An Event re-encoded by protobuf-c, or NULL when it does not decode. */
static ProtobufCBinaryData
canonical(const uint8 *bytes, size_t len, const char *processed_at)
{
	ProtobufCBinaryData out = {0, NULL};
	Evcollector__Event *ev = evcollector__event__unpack(&evc_pb_allocator, len, bytes);
	Evcollector__EventContext fresh = EVCOLLECTOR__EVENT_CONTEXT__INIT;

	if (ev == NULL)
		return out;
	if (processed_at)
	{
		if (ev->context == NULL)
			ev->context = &fresh;
		ev->context->processed_at = (char *) processed_at;
	}
	out.len = evcollector__event__get_packed_size(ev);
	out.data = palloc(out.len + 1);
	evcollector__event__pack(ev, out.data);
	/*
	 * protobuf-c reads some bytes it cannot write back (a field numbered 0,
	 * which protobuf does not have): such an event does not decode
	 */
	if (evcollector__event__unpack(&evc_pb_allocator, out.len, out.data) == NULL)
		out.data = NULL;
	return out;
}

static void
stamp(void *arg)
{
	ProtoCase  *pc = arg;
	const char *at = "2026-12-01T10:47:32.123456Z";
	size_t		outlen = pc->len + EVC_PROCESSED_AT_MAX;
	uint8	   *out = palloc(outlen);
	size_t		n = evc_event_set_processed_at(pc->bytes, pc->len, at, out, outlen);
	ProtobufCBinaryData want = canonical(pc->bytes, pc->len, at);
	ProtobufCBinaryData got;

	if (n > outlen)
		fuzz_fail("the stamp wrote %zu bytes into %zu", n, outlen);
	/* what the consumers decoded before the stamp, they decode after it */
	if (evcollector__event__unpack(&evc_pb_allocator, pc->len, pc->bytes) != NULL &&
		evcollector__event__unpack(&evc_pb_allocator, n, out) == NULL)
		fuzz_fail("a stamped event does not decode");
	if (want.data == NULL)
		return;
	got = canonical(out, n, NULL);
	if (got.data == NULL)
		fuzz_fail("a stamped event does not round-trip through protobuf-c");
	if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0)
		fuzz_fail("the stamp's splice and protobuf-c disagree");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ProtoCase	pc;

	if (size < 1)
		return 0;
	fuzz_begin();
	pc.mode = data[0] % 9;
	/* a copy of exactly the message, so an overread is caught at once */
	pc.len = size - 1;
	pc.bytes = (const uint8 *) fuzz_cstring(data + 1, size - 1);
	if (pc.mode < 7)
	{
		if (!fuzz_run(decode, &pc) &&
			fuzz_last_sqlerrcode != ERRCODE_INVALID_BINARY_REPRESENTATION &&
			fuzz_last_sqlerrcode != ERRCODE_CHARACTER_NOT_IN_REPERTOIRE)
			fuzz_fail("evc_decode raised: %s", fuzz_last_message);
	}
	else if (pc.mode == 7)
	{
		if (!fuzz_run(decode_event, &pc) &&
			fuzz_last_sqlerrcode != ERRCODE_INVALID_BINARY_REPRESENTATION &&
			fuzz_last_sqlerrcode != ERRCODE_CHARACTER_NOT_IN_REPERTOIRE)
			fuzz_fail("evc_decode_event raised: %s", fuzz_last_message);
	}
	else
		fuzz_run(stamp, &pc);
	return 0;
}
