/*
 * packet_test.c: unit tests of the Engine.IO/Socket.IO codec
 * (src/gateway/live_packet.c), built as a frontend program against
 * libpgcommon by mk/live.mk.  Prints TAP.
 */
#include "postgres_fe.h"

#include "gateway/live_packet.h"

static int	ntests = 0;
static int	nfailed = 0;

static void
ok(bool cond, const char *name)
{
	ntests++;
	if (!cond)
		nfailed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", ntests, name);
}

static bool
slice_is(EvcSlice s, const char *want)
{
	return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static const char *
sio(const char *text, EvcSioPacket *pkt)
{
	return evc_sio_decode(text, strlen(text), pkt);
}

static void
test_eio(void)
{
	EvcEioPacket p;
	const char *payload = "4hello\x1e" "2\x1e" "bAAEC";
	size_t		pos = 0;
	int			n = 0;
	char		types[8];

	ok(evc_eio_decode("2probe", 6, false, &p) == NULL && p.type == EVC_EIO_PING &&
	   p.len == 5 && memcmp(p.data, "probe", 5) == 0, "eio: 2probe is a ping with data probe");
	ok(evc_eio_decode("", 0, false, &p) != NULL, "eio: an empty packet is refused");
	ok(evc_eio_decode("7", 1, false, &p) != NULL, "eio: type 7 is refused");
	ok(evc_eio_decode("\x01\x02", 2, true, &p) == NULL && p.binary && p.type == EVC_EIO_MESSAGE,
	   "eio: a binary frame is a binary message");
	while (n < 8)
	{
		const char *why = evc_eio_payload_next(payload, strlen(payload), &pos, &p);

		if (why || p.type == 0)
			break;
		types[n++] = p.binary ? 'b' : p.type;
	}
	ok(n == 3 && types[0] == '4' && types[1] == '2' && types[2] == 'b',
	   "eio: a polling payload splits on the record separator");
	pos = 0;
	ok(evc_eio_payload_next("4a\x1e", 3, &pos, &p) != NULL,
	   "eio: a payload that ends with a separator is refused (an empty packet)");
	pos = 0;
	evc_eio_payload_next("4a\x1e\x1e" "2", 5, &pos, &p);
	ok(evc_eio_payload_next("4a\x1e\x1e" "2", 5, &pos, &p) != NULL,
	   "eio: an empty packet between separators is refused");
}

static void
test_sio(void)
{
	EvcSioPacket p;
	char	  **rooms;
	int			nrooms;
	char	   *token;

	ok(sio("0", &p) == NULL && p.type == EVC_SIO_CONNECT && slice_is(p.nsp, "/") && p.data.len == 0,
	   "sio: 0 is a CONNECT to /");
	ok(sio("0{\"token\":\"k1\"}", &p) == NULL && evc_sio_connect_token(p.data, &token) == NULL &&
	   token && strcmp(token, "k1") == 0, "sio: CONNECT with auth {token}");
	ok(sio("0/admin,{\"token\":\"k\"}", &p) == NULL && slice_is(p.nsp, "/admin"),
	   "sio: CONNECT to a namespace");
	ok(sio("0{\"token\":{\"a\":1}}", &p) != NULL, "sio: a token that is not a string is refused");
	ok(sio("0[1]", &p) != NULL, "sio: CONNECT with an array is refused");
	ok(sio("1", &p) == NULL && p.type == EVC_SIO_DISCONNECT, "sio: 1 is a DISCONNECT");

	ok(sio("2[\"register_room\",[\"r1\",\"r2\"]]", &p) == NULL && p.type == EVC_SIO_EVENT &&
	   strcmp(p.event, "register_room") == 0 && p.nargs == 1 &&
	   slice_is(p.args[0], "[\"r1\",\"r2\"]") && p.ack_id == -1,
	   "sio: an EVENT's name and argument");
	ok(evc_json_string_array(p.args[0], 10, 100, &rooms, &nrooms) == NULL && nrooms == 2 &&
	   strcmp(rooms[0], "r1") == 0 && strcmp(rooms[1], "r2") == 0,
	   "sio: register_room's array of rooms");
	evc_sio_packet_free(&p);
	ok(sio("2/x,17[\"a\", {\"b\": [1, 2]} , 3]", &p) == NULL && p.ack_id == 17 &&
	   slice_is(p.nsp, "/x") && p.nargs == 2 && slice_is(p.args[0], "{\"b\": [1, 2]}") &&
	   slice_is(p.args[1], "3"), "sio: namespace, ack id and two arguments");
	evc_sio_packet_free(&p);
	ok(sio("2[\"a\\u0041\"]", &p) == NULL && strcmp(p.event, "aA") == 0,
	   "sio: the event name is de-escaped");
	evc_sio_packet_free(&p);
	ok(sio("3[1]", &p) != NULL, "sio: an ACK without an id is refused");
	ok(sio("35[true]", &p) == NULL && p.ack_id == 5 && p.nargs == 1, "sio: an ACK");
	ok(sio("2[1,2]", &p) != NULL, "sio: an EVENT whose first element is not a string");
	ok(sio("2[]", &p) != NULL, "sio: an EVENT with no name");
	ok(sio("2{\"a\":1}", &p) != NULL, "sio: an EVENT that is an object");
	ok(sio("2[\"a\"", &p) != NULL, "sio: truncated JSON");
	ok(sio("2", &p) != NULL, "sio: an EVENT with no data");
	ok(sio("51-[\"a\",{\"_placeholder\":true,\"num\":0}]", &p) != NULL, "sio: binary events are refused");
	ok(sio("4{\"message\":\"x\"}", &p) != NULL, "sio: a client's CONNECT_ERROR is refused");
	ok(sio("9", &p) != NULL && sio("", &p) != NULL, "sio: unknown and empty types");
	ok(sio("21234567890[\"a\"]", &p) != NULL, "sio: a ten-digit ack id is refused");
	{
		char		deep[200];

		memset(deep, '[', sizeof(deep));
		memcpy(deep, "2[\"a\",", 6);
		deep[sizeof(deep) - 1] = '\0';
		ok(sio(deep, &p) != NULL, "sio: nesting deeper than the limit is refused");
	}
	{
		StringInfoData many;

		initStringInfo(&many);
		appendStringInfoString(&many, "2[\"a\"");
		for (int i = 0; i < EVC_SIO_MAX_ARGS + 1; i++)
			appendStringInfoString(&many, ",1");
		appendStringInfoChar(&many, ']');
		ok(sio(many.data, &p) != NULL, "sio: more arguments than the limit are refused");
	}
	ok(evc_json_string_array((EvcSlice) {"[\"a\",1]", 7}, 10, 100, &rooms, &nrooms) != NULL,
	   "rooms: a number in the room list is refused");
	ok(evc_json_string_array((EvcSlice) {"[\"\"]", 4}, 10, 100, &rooms, &nrooms) != NULL,
	   "rooms: an empty room name is refused");
	ok(evc_json_string_array((EvcSlice) {"[\"a\",\"b\",\"c\"]", 13}, 2, 100, &rooms, &nrooms) != NULL,
	   "rooms: more rooms than the limit are refused");
	ok(evc_json_string_array((EvcSlice) {"[]", 2}, 2, 100, &rooms, &nrooms) == NULL && nrooms == 0,
	   "rooms: an empty list is a list");
}

static void
test_fields(void)
{
	EvcSlice	v;
	char	   *since;
	const char *obj = "{\"a\": 1, \"last\": {\"start\": \"2026-01-01T00:00:00Z\", \"x\": [1]} , \"since\":\"t\"}";

	ok(evc_json_object_slice((EvcSlice) {obj, strlen(obj)}, "last", &v) == NULL &&
	   slice_is(v, "{\"start\": \"2026-01-01T00:00:00Z\", \"x\": [1]}"), "fields: an object's raw value");
	ok(evc_json_object_slice((EvcSlice) {obj, strlen(obj)}, "nope", &v) == NULL && v.p == NULL,
	   "fields: an absent field");
	ok(evc_json_object_field((EvcSlice) {obj, strlen(obj)}, "since", &since) == NULL &&
	   since && strcmp(since, "t") == 0, "fields: a string field");
	ok(evc_json_object_field((EvcSlice) {obj, strlen(obj)}, "last", &since) != NULL,
	   "fields: an object where a string is wanted is refused");
	ok(evc_json_object_slice((EvcSlice) {"[1]", 3}, "a", &v) != NULL, "fields: not an object");
}

static void
test_encode(void)
{
	StringInfoData b;

	initStringInfo(&b);
	evc_eio_encode_open(&b, "abc", 25000, 20000, 1000000, true);
	ok(strcmp(b.data, "0{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
			  "\"pingTimeout\":20000,\"maxPayload\":1000000}") == 0, "encode: Engine.IO open");
	resetStringInfo(&b);
	evc_sio_encode_event(&b, "live_aggregations_1", "{\"room\":\"r\\\"1\"}");
	ok(strcmp(b.data, "2[\"live_aggregations_1\",{\"room\":\"r\\\"1\"}]") == 0, "encode: EVENT");
	resetStringInfo(&b);
	evc_sio_encode_ack(&b, 12, "{\"ok\":true}");
	ok(strcmp(b.data, "312[{\"ok\":true}]") == 0, "encode: ACK");
	resetStringInfo(&b);
	evc_sio_encode_connect_error(&b, (EvcSlice) {"/", 1}, "bad \"key\"\n");
	ok(strcmp(b.data, "4{\"message\":\"bad \\\"key\\\"\\n\"}") == 0, "encode: CONNECT_ERROR");
	resetStringInfo(&b);
	evc_sio_encode_connect(&b, "s1");
	ok(strcmp(b.data, "0{\"sid\":\"s1\"}") == 0, "encode: CONNECT");
}

int
main(void)
{
	test_eio();
	test_sio();
	test_fields();
	test_encode();
	printf("1..%d\n", ntests);
	return nfailed ? 1 : 0;
}
