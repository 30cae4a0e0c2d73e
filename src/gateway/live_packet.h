/*
 * gateway/live_packet.h: the Engine.IO 4 and Socket.IO 5 packet codec.
 *
 * Pure functions over byte buffers: no sockets, no libwebsockets, no
 * session state and no ereport.  They compile in the backend (as the
 * libFuzzer target test/fuzz/fuzz_live_packet.c links them, feeding them
 * arbitrary bytes) and, with -DFRONTEND against libpgcommon, in the unit
 * tests (test/live/packet_test.c).
 *
 * Decoders never allocate what they return except the de-escaped event
 * name; slices point into the caller's buffer.  Every decoder returns NULL
 * on success and a static, lower-case reason on bad input, which the
 * session turns into the protocol's error (CONNECT_ERROR, a close).
 *
 * There is no Engine.IO/Socket.IO library in C in Debian, so the framing
 * is written here; it is small (a type digit, a namespace, an ack id and a
 * JSON body), and the JSON itself is PostgreSQL's own parser (jsonapi).
 */
#ifndef EVC_GATEWAY_LIVE_PACKET_H
#define EVC_GATEWAY_LIVE_PACKET_H

#include "lib/stringinfo.h"

/* Engine.IO 4 packet types, as they appear on the wire. */
#define EVC_EIO_OPEN	'0'
#define EVC_EIO_CLOSE	'1'
#define EVC_EIO_PING	'2'
#define EVC_EIO_PONG	'3'
#define EVC_EIO_MESSAGE '4'
#define EVC_EIO_UPGRADE '5'
#define EVC_EIO_NOOP	'6'

/* Polling payloads join packets with the ASCII record separator. */
#define EVC_EIO_SEPARATOR '\x1e'

/* Socket.IO 5 packet types. */
typedef enum EvcSioType
{
	EVC_SIO_CONNECT = 0,
	EVC_SIO_DISCONNECT = 1,
	EVC_SIO_EVENT = 2,
	EVC_SIO_ACK = 3,
	EVC_SIO_CONNECT_ERROR = 4,
	EVC_SIO_BINARY_EVENT = 5,
	EVC_SIO_BINARY_ACK = 6
} EvcSioType;

/* Limits of what a client may send; beyond them the packet is refused. */
#define EVC_SIO_MAX_ARGS 16
#define EVC_SIO_MAX_NSP 128
#define EVC_SIO_MAX_NAME 128
#define EVC_JSON_MAX_DEPTH 32
#define EVC_LIVE_MAX_ROOMS 1000
#define EVC_LIVE_MAX_ROOM_LEN 1000

typedef struct EvcEioPacket
{
	char		type;			/* EVC_EIO_*; EVC_EIO_MESSAGE when binary */
	bool		binary;			/* a binary frame, or "b<base64>" in polling */
	const char *data;			/* after the type byte */
	size_t		len;
} EvcEioPacket;

typedef struct EvcSlice
{
	const char *p;
	size_t		len;
} EvcSlice;

typedef struct EvcSioPacket
{
	EvcSioType	type;
	EvcSlice	nsp;			/* "/" when the packet names none */
	int64		ack_id;			/* -1 when none */
	EvcSlice	data;			/* the JSON body, possibly empty */
	/* EVENT and ACK: the array's elements; EVENT's first is the name */
	char	   *event;			/* de-escaped, palloc'd; NULL for ACK */
	int			nargs;			/* arguments after the name */
	EvcSlice	args[EVC_SIO_MAX_ARGS];
} EvcSioPacket;

/* One packet of a WebSocket frame (text or binary). */
extern const char *evc_eio_decode(const char *buf, size_t len, bool binary_frame,
								  EvcEioPacket *out);

/*
 * The next packet of a polling payload: *pos advances past it and its
 * separator.  Returns NULL with out->type 0 when the payload is used up.
 */
extern const char *evc_eio_payload_next(const char *buf, size_t len, size_t *pos,
										EvcEioPacket *out);

extern const char *evc_sio_decode(const char *buf, size_t len, EvcSioPacket *out);
extern void evc_sio_packet_free(EvcSioPacket *pkt);

/* The strings of a JSON array such as register_room's ["r1","r2"]. */
extern const char *evc_json_string_array(EvcSlice json, int max, int max_len,
										 char ***items, int *nitems);

/* A CONNECT's auth payload {"token": "..."}; *token NULL when absent. */
extern const char *evc_sio_connect_token(EvcSlice json, char **token);

/* The value of a string or number field of an object, or NULL. */
extern const char *evc_json_object_field(EvcSlice json, const char *field, char **value);

/* The raw JSON of an object's field; value->p NULL when absent. */
extern const char *evc_json_object_slice(EvcSlice json, const char *field, EvcSlice *value);

/* Encoders append one packet to buf (no Engine.IO type for SIO ones). */
extern void evc_json_quote(StringInfo buf, const char *s);
extern void evc_eio_encode_open(StringInfo buf, const char *sid, int ping_interval_ms,
								int ping_timeout_ms, int max_payload, bool upgrades);
extern void evc_sio_encode_connect(StringInfo buf, const char *sid);
extern void evc_sio_encode_connect_error(StringInfo buf, EvcSlice nsp, const char *message);
extern void evc_sio_encode_event(StringInfo buf, const char *event, const char *json_arg);
extern void evc_sio_encode_ack(StringInfo buf, int64 ack_id, const char *json_arg);

#endif							/* EVC_GATEWAY_LIVE_PACKET_H */
