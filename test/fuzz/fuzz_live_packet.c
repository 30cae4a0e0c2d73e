/*
 * fuzz_live_packet.c: libFuzzer target for the live rooms' packet codec
 * (src/gateway/live_packet.c).  The bytes go down the same decoders as a
 * WebSocket frame or a polling body: Engine.IO first, then Socket.IO on
 * every message, then the room list and auth of what decoded.
 *
 * The codec is linked as the gateway runs it, in the backend build (it
 * used to be built a second time with -DFRONTEND by mk/live.mk).  Its
 * decoders report bad input as a reason string and never ereport, so an
 * ERROR that escapes one is a finding here, whatever its SQLSTATE.
 */
#include "postgres.h"

#include "fuzz_pg.h"
#include "gateway/live_packet.h"

static void
sio_message(const char *p, size_t len)
{
	EvcSioPacket pkt;
	char	  **rooms;
	int			n;
	char	   *token;

	if (evc_sio_decode(p, len, &pkt) != NULL)
		return;
	if (pkt.type == EVC_SIO_CONNECT && evc_sio_connect_token(pkt.data, &token) == NULL && token)
		pfree(token);
	for (int i = 0; i < pkt.nargs; i++)
	{
		EvcSlice	v;
		char	   *since;

		if (evc_json_object_slice(pkt.args[i], "last", &v) == NULL && v.p != NULL &&
			evc_json_object_field(v, "start", &since) == NULL && since)
			pfree(since);
		if (evc_json_string_array(pkt.args[i], EVC_LIVE_MAX_ROOMS, EVC_LIVE_MAX_ROOM_LEN, &rooms, &n) == NULL)
		{
			for (int j = 0; j < n; j++)
				pfree(rooms[j]);
			pfree(rooms);
		}
	}
	evc_sio_packet_free(&pkt);
}

typedef struct LiveInput
{
	const char *buf;
	size_t		size;
} LiveInput;

static void
decode_all(void *arg)
{
	LiveInput  *in = arg;
	const char *buf = in->buf;
	size_t		size = in->size;
	EvcEioPacket p;
	size_t		pos = 0;

	/* as one WebSocket text frame */
	if (evc_eio_decode(buf, size, false, &p) == NULL && p.type == EVC_EIO_MESSAGE)
		sio_message(p.data, p.len);
	/* as a polling body */
	while (evc_eio_payload_next(buf, size, &pos, &p) == NULL && p.type != 0)
		if (p.type == EVC_EIO_MESSAGE && !p.binary)
			sio_message(p.data, p.len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	LiveInput	in;

	fuzz_begin();
	/* libFuzzer's own buffer, exactly size bytes: an overread is caught */
	in.buf = (const char *) data;
	in.size = size;
	if (!fuzz_run(decode_all, &in))
		fuzz_fail("the packet codec raised an ERROR: %s", fuzz_last_message);
	return 0;
}
