/*
 * live_packet.c
 *		Owns the Engine.IO 4 / Socket.IO 5 packet codec (see live_packet.h).
 *
 * Input comes straight off the network, so every decoder checks lengths
 * before it reads, refuses nesting deeper than EVC_JSON_MAX_DEPTH before
 * PostgreSQL's recursive-descent JSON parser sees it (in the backend that
 * parser calls check_stack_depth(), whose ERROR would fail the gateway's
 * whole loop; in the fuzz target it has no check at all), and reports bad
 * input as a reason string, never with ereport.
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include <limits.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "gateway/live_packet.h"

/* ---- JSON helpers over PostgreSQL's jsonapi ---- */

/* Deeper than max, or unbalanced: checked without recursion. */
static bool
json_too_deep(const char *p, size_t len, int max)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = p[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > max)
				return true;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return false;
}

static JsonLexContext *
json_lexer(EvcSlice json)
{
	/* jsonapi takes a non-const pointer but never writes through it */
	return makeJsonLexContextCstringLen((char *) json.p, (int) json.len, PG_UTF8, true);
}

static void
json_lexer_free(JsonLexContext *lex)
{
	if (lex->strval)
	{
		pfree(lex->strval->data);
		pfree(lex->strval);
	}
	pfree(lex);
}

/*
 * Valid JSON, no deeper than the limit.  Checked before the walk with
 * callbacks: PostgreSQL 15's parser leaks the token it copied for a scalar
 * callback when the next token fails to lex.  In the backend the caller's
 * memory context would take it back, but the fuzz target would count it,
 * and client packets are small enough to be read twice.
 */
static const char *
json_check(EvcSlice json)
{
	JsonLexContext *lex;
	JsonParseErrorType rc;

	if (json.len == 0)
		return "the JSON body is empty";
	if (json.len > INT_MAX / 2)
		return "the JSON body is too long";
	if (json_too_deep(json.p, json.len, EVC_JSON_MAX_DEPTH))
		return "the JSON body is nested too deeply";
	lex = makeJsonLexContextCstringLen((char *) json.p, (int) json.len, PG_UTF8, false);
	rc = pg_parse_json(lex, &nullSemAction);
	pfree(lex);
	return rc == JSON_SUCCESS ? NULL : "the JSON body is not valid JSON";
}

/* What the top-level array walk collects. */
typedef struct ArrayWalk
{
	JsonLexContext *lex;
	bool		top_is_array;
	bool		top_is_object;
	int			nelems;
	int			max;
	bool		too_many;
	EvcSlice   *elems;			/* max slots */
	/* the first element, when it is a string */
	char	   *first_string;
	bool		first_is_string;
	/* evc_json_string_array: every element must be a string */
	bool		want_strings;
	bool		non_string;
	int			max_len;
	bool		too_long;
	char	  **strings;
} ArrayWalk;

static void
walk_array_start(void *state)
{
	ArrayWalk  *w = state;

	if (w->lex->lex_level == 0)
		w->top_is_array = true;
}

static void
walk_object_start(void *state)
{
	ArrayWalk  *w = state;

	if (w->lex->lex_level == 0)
		w->top_is_object = true;
}

static void
walk_elem_start(void *state, bool isnull)
{
	ArrayWalk  *w = state;

	if (w->lex->lex_level != 1)
		return;
	if (w->nelems >= w->max)
	{
		w->too_many = true;
		return;
	}
	if (w->elems)
		w->elems[w->nelems].p = w->lex->token_start;
}

static void
walk_elem_end(void *state, bool isnull)
{
	ArrayWalk  *w = state;

	if (w->lex->lex_level != 1 || w->too_many)
		return;
	if (w->elems)
		w->elems[w->nelems].len = w->lex->prev_token_terminator - w->elems[w->nelems].p;
	w->nelems++;
}

static void
walk_scalar(void *state, char *token, JsonTokenType type)
{
	ArrayWalk  *w = state;

	if (w->lex->lex_level != 1 || w->too_many)
	{
		pfree(token);
		return;
	}
	if (w->nelems == 0 && type == JSON_TOKEN_STRING && w->first_string == NULL)
	{
		w->first_is_string = true;
		w->first_string = token;
		return;
	}
	if (w->want_strings && type == JSON_TOKEN_STRING)
	{
		if (strlen(token) > (size_t) w->max_len || token[0] == '\0')
			w->too_long = true;
		w->strings[w->nelems] = token;
		return;
	}
	pfree(token);
}

static const char *
walk_json(EvcSlice json, ArrayWalk *w)
{
	JsonSemAction sem = {0};
	JsonParseErrorType rc;

	const char *why = json_check(json);

	if (why)
		return why;
	w->lex = json_lexer(json);
	sem.semstate = w;
	sem.array_start = walk_array_start;
	sem.object_start = walk_object_start;
	sem.array_element_start = walk_elem_start;
	sem.array_element_end = walk_elem_end;
	sem.scalar = walk_scalar;
	rc = pg_parse_json(w->lex, &sem);
	json_lexer_free(w->lex);
	w->lex = NULL;
	if (rc != JSON_SUCCESS)
		return "the JSON body is not valid JSON";
	if (w->too_many)
		return "the JSON array has too many elements";
	return NULL;
}

const char *
evc_json_string_array(EvcSlice json, int max, int max_len, char ***items, int *nitems)
{
	ArrayWalk	w = {0};
	const char *why;

	*items = NULL;
	*nitems = 0;
	w.max = max;
	w.max_len = max_len;
	w.want_strings = true;
	w.strings = palloc0(sizeof(char *) * (max + 1));
	why = walk_json(json, &w);
	if (why == NULL && !w.top_is_array)
		why = "expected a JSON array of strings";
	/* the first string went to first_string; put it in its slot */
	if (w.first_string)
	{
		w.strings[0] = w.first_string;
		if (strlen(w.first_string) > (size_t) max_len || w.first_string[0] == '\0')
			w.too_long = true;
	}
	for (int i = 0; why == NULL && i < w.nelems; i++)
		if (w.strings[i] == NULL)
			why = "expected a JSON array of strings";
	if (why == NULL && w.too_long)
		why = "a room name is empty or too long";
	if (why != NULL)
	{
		for (int i = 0; i < max; i++)
			if (w.strings[i])
				pfree(w.strings[i]);
		pfree(w.strings);
		return why;
	}
	*items = w.strings;
	*nitems = w.nelems;
	return NULL;
}

/* ---- object fields ---- */

typedef struct FieldWalk
{
	JsonLexContext *lex;
	const char *want;
	bool		in_field;
	bool		top_is_object;
	char	   *value;
	bool		bad_type;
} FieldWalk;

static void
field_start(void *state, char *fname, bool isnull)
{
	FieldWalk  *w = state;

	w->in_field = (w->lex->lex_level == 1 && strcmp(fname, w->want) == 0);
	pfree(fname);
}

static void
field_scalar(void *state, char *token, JsonTokenType type)
{
	FieldWalk  *w = state;

	if (w->in_field && w->lex->lex_level == 1 && w->value == NULL &&
		(type == JSON_TOKEN_STRING || type == JSON_TOKEN_NUMBER))
	{
		w->value = token;
		w->in_field = false;
		return;
	}
	if (w->in_field && w->lex->lex_level == 1 && type != JSON_TOKEN_NULL)
		w->bad_type = true;
	pfree(token);
}

static void
field_nested_start(void *state)
{
	FieldWalk  *w = state;

	if (w->in_field && w->lex->lex_level == 1)
		w->bad_type = true;
}

static void
field_object_start(void *state)
{
	FieldWalk  *w = state;

	if (w->lex->lex_level == 0)
		w->top_is_object = true;
	field_nested_start(state);
}

const char *
evc_json_object_field(EvcSlice json, const char *field, char **value)
{
	FieldWalk	w = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType rc;

	const char *why = json_check(json);

	*value = NULL;
	if (why)
		return why;
	w.lex = json_lexer(json);
	w.want = field;
	sem.semstate = &w;
	sem.object_start = field_object_start;
	sem.array_start = field_nested_start;
	sem.object_field_start = field_start;
	sem.scalar = field_scalar;
	rc = pg_parse_json(w.lex, &sem);
	json_lexer_free(w.lex);
	if (rc != JSON_SUCCESS || !w.top_is_object || w.bad_type)
	{
		if (w.value)
			pfree(w.value);
		if (rc != JSON_SUCCESS)
			return "the JSON body is not valid JSON";
		return w.top_is_object ? "a field has the wrong type" : "expected a JSON object";
	}
	*value = w.value;
	return NULL;
}

/* ---- a field's raw value ---- */

typedef struct SliceWalk
{
	JsonLexContext *lex;
	const char *want;
	bool		top_is_object;
	bool		in_field;
	bool		found;
	EvcSlice	value;
} SliceWalk;

static void
slice_object_start(void *state)
{
	SliceWalk  *w = state;

	if (w->lex->lex_level == 0)
		w->top_is_object = true;
}

static void
slice_field_start(void *state, char *fname, bool isnull)
{
	SliceWalk  *w = state;

	/* the lexer has read past the colon: token_start is the value's */
	if (w->lex->lex_level == 1 && !w->found && strcmp(fname, w->want) == 0)
	{
		w->in_field = true;
		w->value.p = w->lex->token_start;
	}
	pfree(fname);
}

static void
slice_field_end(void *state, char *fname, bool isnull)
{
	SliceWalk  *w = state;

	if (w->in_field && w->lex->lex_level == 1)
	{
		w->value.len = w->lex->prev_token_terminator - w->value.p;
		w->in_field = false;
		w->found = true;
	}
	/* fname is the pointer slice_field_start got, and freed */
}

const char *
evc_json_object_slice(EvcSlice json, const char *field, EvcSlice *value)
{
	SliceWalk	w = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType rc;
	const char *why = json_check(json);

	value->p = NULL;
	value->len = 0;
	if (why)
		return why;
	w.lex = json_lexer(json);
	w.want = field;
	sem.semstate = &w;
	sem.object_start = slice_object_start;
	sem.object_field_start = slice_field_start;
	sem.object_field_end = slice_field_end;
	rc = pg_parse_json(w.lex, &sem);
	json_lexer_free(w.lex);
	if (rc != JSON_SUCCESS)
		return "the JSON body is not valid JSON";
	if (!w.top_is_object)
		return "expected a JSON object";
	if (w.found)
		*value = w.value;
	return NULL;
}

const char *
evc_sio_connect_token(EvcSlice json, char **token)
{
	*token = NULL;
	if (json.len == 0)
		return NULL;			/* "40" alone: no auth */
	return evc_json_object_field(json, "token", token);
}

/* ---- Engine.IO ---- */

const char *
evc_eio_decode(const char *buf, size_t len, bool binary_frame, EvcEioPacket *out)
{
	memset(out, 0, sizeof(*out));
	if (binary_frame)
	{
		/* Over WebSocket a binary frame is a message with no type byte. */
		out->type = EVC_EIO_MESSAGE;
		out->binary = true;
		out->data = buf;
		out->len = len;
		return NULL;
	}
	if (len == 0)
		return "empty Engine.IO packet";
	if (buf[0] < EVC_EIO_OPEN || buf[0] > EVC_EIO_NOOP)
		return "unknown Engine.IO packet type";
	out->type = buf[0];
	out->data = buf + 1;
	out->len = len - 1;
	return NULL;
}

const char *
evc_eio_payload_next(const char *buf, size_t len, size_t *pos, EvcEioPacket *out)
{
	const char *start;
	const char *sep;
	size_t		n;

	memset(out, 0, sizeof(*out));
	if (*pos > len)
		return "payload position past its end";
	if (*pos == len)
		return NULL;			/* used up: out->type stays 0 */
	start = buf + *pos;
	sep = memchr(start, EVC_EIO_SEPARATOR, len - *pos);
	n = sep ? (size_t) (sep - start) : len - *pos;
	*pos += n + (sep ? 1 : 0);
	if (sep && *pos == len)
		return "polling payload ends with a separator";
	if (n > 0 && start[0] == 'b')
	{
		/* "b<base64>": a binary message, which the live rooms never take */
		out->type = EVC_EIO_MESSAGE;
		out->binary = true;
		out->data = start + 1;
		out->len = n - 1;
		return NULL;
	}
	return evc_eio_decode(start, n, false, out);
}

/* ---- Socket.IO ---- */

void
evc_sio_packet_free(EvcSioPacket *pkt)
{
	if (pkt->event)
		pfree(pkt->event);
	pkt->event = NULL;
}

/* The body of an EVENT or ACK: a JSON array; EVENT's first is its name. */
static const char *
sio_decode_array(EvcSioPacket *out)
{
	ArrayWalk	w = {0};
	EvcSlice	elems[EVC_SIO_MAX_ARGS + 1];
	const char *why;

	w.max = EVC_SIO_MAX_ARGS + 1;
	w.elems = elems;
	why = walk_json(out->data, &w);
	if (why == NULL && !w.top_is_array)
		why = "the packet's data is not a JSON array";
	if (why == NULL && out->type == EVC_SIO_EVENT &&
		(!w.first_is_string || w.nelems == 0))
		why = "an EVENT's first element is not the event name";
	if (why == NULL && out->type == EVC_SIO_EVENT &&
		strlen(w.first_string) > EVC_SIO_MAX_NAME)
		why = "the event name is too long";
	if (why != NULL)
	{
		if (w.first_string)
			pfree(w.first_string);
		return why;
	}
	if (out->type == EVC_SIO_EVENT)
	{
		out->event = w.first_string;
		out->nargs = w.nelems - 1;
		memcpy(out->args, elems + 1, sizeof(EvcSlice) * out->nargs);
	}
	else
	{
		if (w.first_string)
			pfree(w.first_string);
		if (w.nelems > EVC_SIO_MAX_ARGS)
			return "the JSON array has too many elements";
		out->nargs = w.nelems;
		memcpy(out->args, elems, sizeof(EvcSlice) * out->nargs);
	}
	return NULL;
}

const char *
evc_sio_decode(const char *buf, size_t len, EvcSioPacket *out)
{
	size_t		i = 1;

	memset(out, 0, sizeof(*out));
	out->ack_id = -1;
	out->nsp.p = "/";
	out->nsp.len = 1;
	if (len == 0 || buf[0] < '0' || buf[0] > '6')
		return "unknown Socket.IO packet type";
	out->type = (EvcSioType) (buf[0] - '0');
	if (out->type == EVC_SIO_BINARY_EVENT || out->type == EVC_SIO_BINARY_ACK)
		return "binary Socket.IO packets are not accepted";
	if (out->type == EVC_SIO_CONNECT_ERROR)
		return "CONNECT_ERROR is sent by servers only";

	/* "/nsp," */
	if (i < len && buf[i] == '/')
	{
		const char *comma = memchr(buf + i, ',', len - i);
		size_t		n = comma ? (size_t) (comma - (buf + i)) : len - i;

		if (n > EVC_SIO_MAX_NSP)
			return "the namespace is too long";
		out->nsp.p = buf + i;
		out->nsp.len = n;
		i += n + (comma ? 1 : 0);
	}
	/* ack id: digits, at most nine so that it fits any client's integer */
	if (i < len && buf[i] >= '0' && buf[i] <= '9')
	{
		int			digits = 0;

		out->ack_id = 0;
		while (i < len && buf[i] >= '0' && buf[i] <= '9')
		{
			if (++digits > 9)
				return "the ack id is too long";
			out->ack_id = out->ack_id * 10 + (buf[i] - '0');
			i++;
		}
	}
	out->data.p = buf + i;
	out->data.len = len - i;

	switch (out->type)
	{
		case EVC_SIO_CONNECT:
			if (out->ack_id >= 0)
				return "a CONNECT carries no ack id";
			if (out->data.len > 0)
			{
				char	   *token;
				const char *why = evc_sio_connect_token(out->data, &token);

				if (why)
					return why;
				if (token)
					pfree(token);
			}
			return NULL;
		case EVC_SIO_DISCONNECT:
			if (out->data.len > 0 || out->ack_id >= 0)
				return "a DISCONNECT carries no data";
			return NULL;
		case EVC_SIO_EVENT:
		case EVC_SIO_ACK:
			if (out->type == EVC_SIO_ACK && out->ack_id < 0)
				return "an ACK has no ack id";
			return sio_decode_array(out);
		default:
			return "unknown Socket.IO packet type";
	}
}

/* ---- encoders ---- */

void
evc_json_quote(StringInfo buf, const char *s)
{
	appendStringInfoCharMacro(buf, '"');
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		switch (*p)
		{
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				if (*p < 0x20)
					appendStringInfo(buf, "\\u%04x", *p);
				else
					appendStringInfoCharMacro(buf, (char) *p);
		}
	}
	appendStringInfoCharMacro(buf, '"');
}

void
evc_eio_encode_open(StringInfo buf, const char *sid, int ping_interval_ms,
					int ping_timeout_ms, int max_payload, bool upgrades)
{
	appendStringInfoString(buf, "0{\"sid\":");
	evc_json_quote(buf, sid);
	appendStringInfo(buf, ",\"upgrades\":%s,\"pingInterval\":%d,\"pingTimeout\":%d,\"maxPayload\":%d}",
					 upgrades ? "[\"websocket\"]" : "[]", ping_interval_ms, ping_timeout_ms, max_payload);
}

void
evc_sio_encode_connect(StringInfo buf, const char *sid)
{
	appendStringInfoString(buf, "0{\"sid\":");
	evc_json_quote(buf, sid);
	appendStringInfoChar(buf, '}');
}

void
evc_sio_encode_connect_error(StringInfo buf, EvcSlice nsp, const char *message)
{
	appendStringInfoChar(buf, '4');
	if (!(nsp.len == 1 && nsp.p[0] == '/'))
	{
		appendBinaryStringInfo(buf, nsp.p, (int) nsp.len);
		appendStringInfoChar(buf, ',');
	}
	appendStringInfoString(buf, "{\"message\":");
	evc_json_quote(buf, message);
	appendStringInfoChar(buf, '}');
}

void
evc_sio_encode_event(StringInfo buf, const char *event, const char *json_arg)
{
	appendStringInfoString(buf, "2[");
	evc_json_quote(buf, event);
	if (json_arg)
	{
		appendStringInfoChar(buf, ',');
		appendStringInfoString(buf, json_arg);
	}
	appendStringInfoChar(buf, ']');
}

void
evc_sio_encode_ack(StringInfo buf, int64 ack_id, const char *json_arg)
{
	appendStringInfo(buf, "3" INT64_FORMAT "[", ack_id);
	if (json_arg)
		appendStringInfoString(buf, json_arg);
	appendStringInfoChar(buf, ']');
}
