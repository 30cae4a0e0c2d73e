/*
 * gateway/routes_send.c
 *		Owns the routes that send events: the event collector's POST
 *		/store, the event gateway's POST /<client>/<event>/send_event, and
 *		our POST /v1/events and POST /v1/batch.
 *
 * Each event is checked by evc_send_prepare, the checks of evc_send, in a
 * subtransaction of its own: its error (path and keyword for a schema
 * error) becomes its answer and the group's transaction goes on.  The
 * subtransaction only reads, so it takes no transaction id; the valid
 * event is then written to the outbox in the group's transaction, which
 * the server commits before any answer leaves.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/xact.h"
#include "common/cryptohash.h"
#include "common/sha1.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "gateway/gateway_int.h"
#include "jsonschema/validate.h"
#include "kafka/proto.h"
#include "registry/registry.h"
#include "send/outbox.h"
#include "send/send.h"

/* One event as a send route read it from its request. */
typedef struct SendItem
{
	const char *client;
	const char *event_name;
	Jsonb	   *data;
	Jsonb	   *context;		/* caller's context: sent_at, message_id, user_agent */
	const char *key;			/* partition key, or NULL */
	const char *client_message_id;	/* as the client sent it, when not a UUID */
} SendItem;

/* The outcome of one event: its answer as a JSON object, and a status. */
typedef struct SendResult
{
	int			status;
	StringInfoData json;		/* {"message_id":...} or {"error":{...}} */
} SendResult;

/* An ERROR raised while reading or checking one event, as HTTP. */
static bool
error_to_http(ErrorData *e, int *status, const char **code)
{
	if (e->sqlerrcode == EVC_ERRCODE_VALIDATION_FAILED)
		*status = 422, *code = "schema_violation";
	else if (e->sqlerrcode == EVC_ERRCODE_UNKNOWN_EVENT_TYPE)
		*status = 404, *code = "unknown_event";
	else if (e->sqlerrcode == EVC_ERRCODE_INVALID_NAME)
		*status = 400, *code = "invalid_name";
	else if (e->sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
		*status = 413, *code = "event_too_large";
	else if (e->sqlerrcode == ERRCODE_INVALID_TEXT_REPRESENTATION &&
			 e->message && strstr(e->message, "json") != NULL)
		*status = 400, *code = "invalid_json";
	else if (ERRCODE_TO_CATEGORY(e->sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
			 e->sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE)
		*status = 400, *code = "invalid_event";
	else
		return false;
	return true;
}

static void
result_error(SendResult *r, int status, const char *code, const char *message)
{
	r->status = status;
	resetStringInfo(&r->json);
	appendStringInfoString(&r->json, "{\"error\":{\"code\":");
	escape_json(&r->json, code);
	appendStringInfoString(&r->json, ",\"message\":");
	escape_json(&r->json, message);
	appendStringInfoString(&r->json, "}}");
}

/* "message: detail", as evc_send's error reads in psql. */
static char *
error_text(ErrorData *e)
{
	return e->detail ? psprintf("%s: %s", e->message, e->detail) : pstrdup(e->message);
}

typedef void (*SendStep) (void *arg);

/*
 * Run step in a subtransaction; an ERROR that is bad input becomes the
 * result (false), anything else (out of memory, cancel) is re-thrown and
 * fails the group.
 */
static bool
in_subtransaction(SendStep step, void *arg, SendResult *r)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *e;
		int			status;
		const char *code;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (!error_to_http(e, &status, &code))
			ReThrowError(e);
		result_error(r, status, code, error_text(e));
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* --- reading a request's JSON ------------------------------------------ */

static JsonbValue *
container_get(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	return (v == NULL || v->type == jbvNull) ? NULL : v;
}

static JsonbValue *
object_get(Jsonb *obj, const char *key)
{
	return container_get(&obj->root, key);
}

static Jsonb *
value_as_jsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

static char *
value_as_string(JsonbValue *v, const char *where)
{
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event"),
				 errdetail("At %s: expected a string.", where)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static bool
is_container(JsonbValue *v, bool object)
{
	if (v->type != jbvBinary)
		return false;
	return object ? JsonContainerIsObject(v->val.binary.data) :
		JsonContainerIsArray(v->val.binary.data);
}

/* A canonical 8-4-4-4-12 UUID: kept as it is. */
static bool
looks_like_uuid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/*
 * A message_id that is not a UUID (the seed's clients send any string)
 * becomes a name-based UUID (RFC 4122 version 5) of the client and the
 * string: the same retry gets the same id, so the sinks, which keep one
 * row per message_id, drop the duplicate.
 */
static char *
message_uuid(const char *client, const char *message_id)
{
	/* evcollector's namespace for client message ids (a fixed random UUID). */
	static const uint8 ns[16] = {0x6b, 0x1e, 0x3c, 0x52, 0x9a, 0x4d, 0x4f, 0x0e,
	0x8c, 0x31, 0x5d, 0x27, 0xa0, 0x99, 0x13, 0x64};
	uint8		digest[SHA1_DIGEST_LENGTH];
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA1);
	pg_uuid_t	u;

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, ns, sizeof(ns)) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) client, strlen(client)) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) "/", 1) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) message_id, strlen(message_id)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-1: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	memcpy(u.data, digest, UUID_LEN);
	u.data[6] = (u.data[6] & 0x0f) | 0x50;
	u.data[8] = (u.data[8] & 0x3f) | 0x80;
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&u)));
}

/* sent_at as the seed sends it (Unix seconds) or as RFC 3339 text. */
static char *
sent_at_text(JsonbValue *v)
{
	double		secs;

	if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);
		char	   *end;

		secs = strtod(s, &end);
		if (*s == '\0' || *end != '\0')
			return s;			/* RFC 3339; evc_send parses and checks it */
	}
	else if (v->type == jbvNumeric)
		secs = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
												  NumericGetDatum(v->val.numeric)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event context"),
				 errdetail("At /context/sent_at: expected Unix seconds or an RFC 3339 timestamp.")));
	if (!(secs > -1e11 && secs < 1e11))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("invalid event context"),
				 errdetail("At /context/sent_at: %g is out of range for Unix seconds.", secs)));
	return pstrdup(timestamptz_to_str((TimestampTz) ((secs - ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)) * USECS_PER_SEC)));
}

static bool
context_key_known(const char *key, int len)
{
	static const char *const known[] = {"sent_at", "received_at", "processed_at",
	"message_id", "user_agent"};

	for (int i = 0; i < lengthof(known); i++)
		if ((int) strlen(known[i]) == len && memcmp(known[i], key, len) == 0)
			return true;
	return false;
}

/*
 * The context evc_send takes: sent_at, message_id (as a UUID) and
 * user_agent.  received_at and processed_at, which the seed's clients may
 * send, are evcollector's to set and are dropped.
 */
/* Add "key": "value" to the object being built, opening it first. */
static void
push_string(JsonbParseState **st, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	if (*st == NULL)
		(void) pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	(void) pushJsonbValue(st, WJB_KEY, &k);
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static Jsonb *
build_context(const EvcHttpRequest *req, SendItem *item, JsonbValue *ctx)
{
	JsonbParseState *st = NULL;
	JsonbValue *v;
	Jsonb	   *c = NULL;

	if (ctx != NULL && !is_container(ctx, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event context"),
				 errdetail("At /context: expected an object.")));
	if (ctx != NULL)
	{
		JsonbIterator *it;
		JsonbValue	k;
		JsonbIteratorToken tok;

		c = value_as_jsonb(ctx);
		/* The seed's five fields; anything else is refused, not dropped. */
		it = JsonbIteratorInit(&c->root);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			if (!context_key_known(k.val.string.val, k.val.string.len))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid event context"),
						 errdetail("At /context/%.*s: unknown context field.",
								   (int) k.val.string.len, k.val.string.val),
						 errhint("The context may have sent_at, received_at, processed_at, message_id and user_agent.")));
		}
	}
	/* Built as a Jsonb directly: no JSON text to print and parse again. */
	if (c && (v = object_get(c, "sent_at")) != NULL)
		push_string(&st, "sent_at", sent_at_text(v));
	if (c && (v = object_get(c, "message_id")) != NULL)
	{
		char	   *mid = value_as_string(v, "/context/message_id");

		if (!looks_like_uuid(mid))
		{
			item->client_message_id = mid;
			mid = message_uuid(item->client, mid);
		}
		push_string(&st, "message_id", mid);
	}
	if (c && (v = object_get(c, "user_agent")) != NULL)
		push_string(&st, "user_agent", value_as_string(v, "/context/user_agent"));
	else if (req->user_agent != NULL)
	{
		/* a header is any bytes; the context is jsonb, which is UTF-8 */
		char	   *ua = pstrdup(req->user_agent);

		evc_http_utf8_clean(ua);
		push_string(&st, "user_agent", ua);
	}
	if (st == NULL)
		return NULL;			/* nothing to say: evc_send's defaults */
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* --- sending ------------------------------------------------------------ */

typedef struct PrepareArgs
{
	const EvcHttpRequest *req;
	JsonbValue *event;			/* the request's event object (not /send_event) */
	const char *client;			/* from the path, the key or the header */
	const char *event_name;		/* from the path, or NULL */
	Jsonb	   *data;			/* /send_event's body */
	SendItem	item;
	EvcPreparedEvent ev;
} PrepareArgs;

/*
 * Read one event off the request into a->item: its name, data, key and
 * context.  Pure (no SPI, no registry), so the fuzz target runs it alone.
 */
static void
prepare_read(PrepareArgs *a)
{
	SendItem   *it = &a->item;
	JsonbValue *ctx = NULL;

	it->client = a->client;
	it->event_name = a->event_name;
	it->data = a->data;
	if (a->event != NULL)
	{
		JsonbContainer *obj;
		JsonbValue *v;

		if (!is_container(a->event, true))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid event"),
					 errdetail("An event is a JSON object with event_name and data.")));
		/* read in place: the body outlives the event */
		obj = a->event->val.binary.data;
		if ((v = container_get(obj, "event_name")) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid event"),
					 errdetail("At /event_name: required.")));
		it->event_name = value_as_string(v, "/event_name");
		if ((v = container_get(obj, "data")) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid event"),
					 errdetail("At /data: required.")));
		it->data = value_as_jsonb(v);
		if ((v = container_get(obj, "key")) != NULL)
			it->key = value_as_string(v, "/key");
		ctx = container_get(obj, "context");
	}
	it->context = build_context(a->req, it, ctx);
}

/*
 * Read and check one event.  memo carries the event type from one event
 * of a batch to the next (EvcSendMemo), and last_topic the copy of the
 * topic the event before made: the registry's cached topic lives only
 * until its next lookup, so each event needs a copy, but not its own.
 */
static void
prepare_event(PrepareArgs *a, EvcSendMemo *memo, const char **last_topic)
{
	SendItem   *it = &a->item;
	EvcSendContext c = {0};

	prepare_read(a);
	c.jsonb = it->context;
	evc_send_prepare_fields(it->client, it->event_name, it->data, &c, memo, &a->ev);
	if (*last_topic == NULL || strcmp(*last_topic, a->ev.topic) != 0)
		*last_topic = pstrdup(a->ev.topic);
	a->ev.topic = *last_topic;
}

static void
prepare_step(void *arg)
{
	const char *topic = NULL;

	prepare_event((PrepareArgs *) arg, NULL, &topic);
}

static void send_enqueue(PrepareArgs *a0, SendResult *r);

/* Check one event, and enqueue it when valid; the result says which. */
static void
send_one(const EvcHttpRequest *req, const char *client, const char *event_name,
		 JsonbValue *event, Jsonb *data, SendResult *r)
{
	PrepareArgs a;

	memset(&a, 0, sizeof(a));
	a.req = req;
	a.client = client;
	a.event_name = event_name;
	a.event = event;
	a.data = data;
	if (!in_subtransaction(prepare_step, &a, r))
		return;
	send_enqueue(&a, r);
}

/* A checked event as an outbox row. */
static void
outbox_row(const PrepareArgs *a, EvcOutboxRow *row)
{
	row->topic = a->ev.topic;
	row->key = a->item.key;
	row->keylen = a->item.key ? strlen(a->item.key) : 0;
	row->payload = a->ev.payload;
	row->message_id = a->ev.message_id;
	row->schema_version = a->ev.schema_version;
	row->content_type = EVC_CONTENT_TYPE_EVENT;
}

/* n in decimal, without a trip through snprintf (several per event). */
static void
append_int(StringInfo buf, int n)
{
	char		digits[12];

	appendBinaryStringInfo(buf, digits, pg_ltoa(n, digits));
}

/*
 * escape_json of a topic, which is the same for every event of a batch:
 * the escaped text of the last one is kept and compared, which costs less
 * than escaping it (one call per byte) for each event.
 */
static void
append_topic_json(StringInfo buf, const char *topic)
{
	static char last[NAMEDATALEN * 4];
	static StringInfoData escaped;

	if (escaped.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&escaped);
		MemoryContextSwitchTo(old);
	}
	if (strcmp(last, topic) != 0)
	{
		if (strlen(topic) >= sizeof(last))
		{
			escape_json(buf, topic);
			return;
		}
		resetStringInfo(&escaped);
		escape_json(&escaped, topic);
		strlcpy(last, topic, sizeof(last));
	}
	appendBinaryStringInfo(buf, escaped.data, escaped.len);
}

/* The answer to an event that was written to the outbox. */
static void
result_accepted(const PrepareArgs *a, SendResult *r)
{
	r->status = 200;
	resetStringInfo(&r->json);
	/* uuid_out's hex digits and dashes need no escaping */
	appendStringInfoString(&r->json, "{\"message_id\":\"");
	appendStringInfoString(&r->json, a->ev.message_id_text);
	appendStringInfoChar(&r->json, '"');
	if (a->item.client_message_id)
	{
		appendStringInfoString(&r->json, ",\"client_message_id\":");
		escape_json(&r->json, a->item.client_message_id);
	}
	appendStringInfoString(&r->json, ",\"topic\":");
	append_topic_json(&r->json, a->ev.topic);
	appendStringInfoString(&r->json, ",\"schema_version\":");
	append_int(&r->json, a->ev.schema_version);
	appendStringInfoChar(&r->json, '}');
}

/* Write a checked event to the outbox, in the group's transaction. */
static void
send_enqueue(PrepareArgs *a, SendResult *r)
{
	EvcOutboxRow row;

	outbox_row(a, &row);
	evc_outbox_enqueue_many(&row, 1);
	result_accepted(a, r);
}

/* --- the routes --------------------------------------------------------- */

typedef struct ParseArgs
{
	const EvcHttpRequest *req;
	Jsonb	   *body;
} ParseArgs;

static void
parse_step(void *arg)
{
	ParseArgs  *a = arg;

	/*
	 * jsonb_in takes a C string in the database encoding: a NUL would end
	 * the body early, and bytes that are not UTF-8 would go into the event
	 * (and into jsonb's error messages) as they are.
	 */
	if (memchr(a->req->body, '\0', a->req->body_len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type json"),
				 errdetail("The body contains a NUL byte.")));
	if (!pg_verifymbstr(a->req->body, a->req->body_len, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type json"),
				 errdetail("The body is not valid UTF-8.")));
	a->body = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												 CStringGetDatum(pnstrdup(a->req->body, a->req->body_len))));
}

/* The checks before the body is parsed: false with the answer in resp. */
static bool
body_precheck(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	if (req->content_type != NULL &&
		pg_strncasecmp(req->content_type, "application/json", 16) != 0)
	{
		evc_http_error(resp, 415, "unsupported_media_type",
					   "Content-Type is \"%s\"; the send routes take application/json", req->content_type);
		return false;
	}
	if (req->body_len == 0)
	{
		evc_http_error(resp, 400, "invalid_json", "the request has no body; it must be JSON");
		return false;
	}
	return true;
}

/* The body as JSON, or false with the answer (415, 400) in resp. */
static bool
parse_body(const EvcHttpRequest *req, EvcHttpResponse *resp, Jsonb **body)
{
	ParseArgs	a = {req, NULL};
	SendResult	r;

	if (!body_precheck(req, resp))
		return false;
	initStringInfo(&r.json);
	if (!in_subtransaction(parse_step, &a, &r))
	{
		resp->status = r.status;
		resetStringInfo(&resp->body);
		appendBinaryStringInfo(&resp->body, r.json.data, r.json.len);
		return false;
	}
	*body = a.body;
	return true;
}

/*
 * The client the events go to.  With a key, only the key's own; with the
 * gateway open (auth off), the named one, the X-Evc-Client header, or
 * evcollector.gateway_default_client.  NULL, with resp filled, if the
 * caller may not send as it.
 */
static const char *
send_client(const EvcHttpRequest *req, const char *named, EvcHttpResponse *resp)
{
	const char *client = named ? named : req->client_header;

	if (!req->auth_off)
	{
		if (req->role < EVC_GW_ROLE_WRITE)
		{
			evc_http_error(resp, 403, "forbidden", "a read-only key cannot send events");
			return NULL;
		}
		if (client != NULL && strcmp(client, req->client) != 0)
		{
			evc_http_error(resp, 403, "forbidden",
						   "the key of client \"%s\" cannot send as client \"%s\"", req->client, client);
			return NULL;
		}
		return req->client;
	}
	return client ? client : evc_gw_default_client;
}

static void
answer_result(EvcHttpResponse *resp, SendResult *r)
{
	resp->status = r->status;
	resetStringInfo(&resp->body);
	appendBinaryStringInfo(&resp->body, r->json.data, r->json.len);
}

/* POST /store and POST /v1/events: one event object. */
static void
route_one_event(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	Jsonb	   *body;
	const char *client;
	JsonbValue	whole;
	JsonbValue *v;
	char	   *named = NULL;
	SendResult	r;

	if (!parse_body(req, resp, &body))
		return;
	if (!JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body))
	{
		evc_http_error(resp, 400, "invalid_event",
					   "the body must be a JSON object with event_name, context and data");
		return;
	}
	if ((v = object_get(body, "client")) != NULL && v->type == jbvString)
		named = pnstrdup(v->val.string.val, v->val.string.len);
	if ((client = send_client(req, named, resp)) == NULL)
		return;
	whole.type = jbvBinary;
	whole.val.binary.data = &body->root;
	whole.val.binary.len = VARSIZE(body) - VARHDRSZ;
	initStringInfo(&r.json);
	send_one(req, client, NULL, &whole, NULL, &r);
	answer_result(resp, &r);
}

/* POST /v1/batch: an array of event objects, a result per index. */
typedef struct BatchArgs
{
	const EvcHttpRequest *req;
	const char *client;
	JsonbValue *items;
	int			n;
	PrepareArgs *prepared;
} BatchArgs;

static void
batch_step(void *arg)
{
	BatchArgs  *b = arg;
	EvcSendMemo memo = {0};
	const char *topic = NULL;

	for (int i = 0; i < b->n; i++)
	{
		PrepareArgs *a = &b->prepared[i];

		memset(a, 0, sizeof(*a));
		a->req = b->req;
		a->client = b->client;
		a->event = &b->items[i];
		prepare_event(a, &memo, &topic);
	}
}

/*
 * Check every event of a batch in one subtransaction, rather than one
 * each: true when all are valid.  When one is not, nothing of this pass is
 * kept (the checks only read, so doing them again is safe) and the caller
 * checks them one by one, so each gets its own answer.
 */
static bool
batch_prepare_all(const EvcHttpRequest *req, const char *client, JsonbValue *items, int n,
				  PrepareArgs **prepared, SendResult *scratch)
{
	BatchArgs	b;

	b.req = req;
	b.client = client;
	b.items = items;
	b.n = n;
	b.prepared = palloc(sizeof(PrepareArgs) * n);
	*prepared = b.prepared;
	return in_subtransaction(batch_step, &b, scratch);
}

/* A batch's events, n of them (its JB_ROOT_COUNT), into *items; how many. */
static int
batch_split(Jsonb *body, int n, JsonbValue **items)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			nitems = 0;

	*items = palloc(sizeof(JsonbValue) * n);
	it = JsonbIteratorInit(&body->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM && nitems < n)
			(*items)[nitems++] = v;
	return nitems;
}

/* One result of a batch, spliced into its answer. */
static void
batch_append_result(StringInfo body, int index, SendResult *r)
{
	if (index > 0)
		appendStringInfoChar(body, ',');
	appendStringInfoString(body, "{\"index\":");
	append_int(body, index);
	appendStringInfoString(body, ",\"status\":");
	append_int(body, r->status);
	appendStringInfoChar(body, ',');
	/* r->json is an object: splice its members after ours. */
	appendBinaryStringInfo(body, r->json.data + 1, r->json.len - 1);
}

/* Every event of a batch valid and prepared: one insert, and their answers. */
static void
batch_answer_accepted(PrepareArgs *prepared, int nitems, EvcHttpResponse *resp)
{
	/* One multi-row insert, the rows in the batch's order. */
	EvcOutboxRow *rows = palloc(sizeof(EvcOutboxRow) * nitems);
	SendResult	r;

	for (int i = 0; i < nitems; i++)
		outbox_row(&prepared[i], &rows[i]);
	evc_outbox_enqueue_many(rows, nitems);

	initStringInfo(&r.json);
	resetStringInfo(&resp->body);
	appendStringInfoString(&resp->body, "{\"results\":[");
	for (int i = 0; i < nitems; i++)
	{
		result_accepted(&prepared[i], &r);
		batch_append_result(&resp->body, i, &r);
	}
	appendStringInfoString(&resp->body, "],\"accepted\":");
	append_int(&resp->body, nitems);
	appendStringInfoString(&resp->body, ",\"rejected\":0}");
	resp->status = 200;
}

/* A batch's events checked and enqueued, their results into resp. */
static void
batch_send(const EvcHttpRequest *req, const char *client, JsonbValue *items, int nitems,
		   EvcHttpResponse *resp)
{
	PrepareArgs *prepared;
	int			accepted = 0;
	SendResult	r;

	initStringInfo(&r.json);
	/* Usually every event is valid: check them all in one subtransaction. */
	if (batch_prepare_all(req, client, items, nitems, &prepared, &r))
	{
		batch_answer_accepted(prepared, nitems, resp);
		return;
	}
	resetStringInfo(&resp->body);
	appendStringInfoString(&resp->body, "{\"results\":[");
	for (int i = 0; i < nitems; i++)
	{
		send_one(req, client, NULL, &items[i], NULL, &r);
		if (r.status == 200)
			accepted++;
		batch_append_result(&resp->body, i, &r);
	}
	appendStringInfoString(&resp->body, "],\"accepted\":");
	append_int(&resp->body, accepted);
	appendStringInfoString(&resp->body, ",\"rejected\":");
	append_int(&resp->body, nitems - accepted);
	appendStringInfoChar(&resp->body, '}');
	resp->status = 200;
}

/* --- the batch read from its text, without jsonb ------------------------- */

/*
 * A batch whose events are all plain (an object with a string event_name,
 * data, maybe a string key, no context) and valid is read, checked and
 * encoded straight from the body's text (evc_jtext_read): jsonb_in of the
 * whole array and a jsonb copy of each event's data were a fifth of the
 * batch's time.  Anything else, and any doubt, goes the jsonb way, which
 * gives every answer (each error, by index) as it always has.
 */
typedef struct TextBatchArgs
{
	const EvcHttpRequest *req;
	const char *client;
	const EvcJtextValue *root;
	int			n;
	const char *user_agent;		/* the header's, made valid UTF-8, or NULL */
	PrepareArgs *prepared;
	bool		ok;				/* every event was prepared */
} TextBatchArgs;

/* A member as container_get reads it: NULL when absent or JSON null. */
static const EvcJtextValue *
text_member(const EvcJtextValue *obj, const char *key)
{
	const EvcJtextValue *v = evc_jtext_object_field(obj, key);

	return (v == NULL || evc_jtext_is_null(v)) ? NULL : v;
}

/* A member that must be a string, pnstrdup'd; false when it is not one. */
static bool
text_string(const EvcJtextValue *v, const char **out)
{
	int			len;
	const char *s = evc_jtext_string(v, &len);

	if (s == NULL)
		return false;
	*out = pnstrdup(s, len);
	return true;
}

/* prepare_read's reading of a plain event; false for anything else. */
static bool
text_event_read(const EvcJtextValue *ev, SendItem *it, const EvcJtextValue **data)
{
	const EvcJtextValue *v;

	if (!evc_jtext_is_object(ev) ||
		(v = text_member(ev, "event_name")) == NULL || !text_string(v, &it->event_name) ||
		(*data = text_member(ev, "data")) == NULL ||
		text_member(ev, "context") != NULL)
		return false;
	if ((v = text_member(ev, "key")) != NULL && !text_string(v, &it->key))
		return false;
	return true;
}

static void
text_batch_step(void *arg)
{
	TextBatchArgs *b = arg;
	EvcSendMemo memo = {0};
	EvcSendContext c = {0};
	const char *topic = NULL;

	b->ok = false;
	c.user_agent = b->user_agent;
	for (int i = 0; i < b->n; i++)
	{
		PrepareArgs *a = &b->prepared[i];
		const EvcJtextValue *data;

		memset(a, 0, sizeof(*a));
		a->req = b->req;
		a->client = a->item.client = b->client;
		if (!text_event_read(evc_jtext_array_element(b->root, i), &a->item, &data) ||
			!evc_send_prepare_text(b->client, a->item.event_name, data, &c, &memo, &a->ev))
			return;
		if (topic == NULL || strcmp(topic, a->ev.topic) != 0)
			topic = pstrdup(a->ev.topic);
		a->ev.topic = topic;
	}
	b->ok = true;
}

/*
 * The batch the text way: true when it was answered (every event
 * accepted, or the caller may not send), false when the jsonb way must
 * answer it.  The checks only read, so what this did is dropped.
 */
static bool
route_batch_text(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	TextBatchArgs b = {0};
	SendResult	r;

	/* parse_step's refusals are the jsonb way's to give */
	if (memchr(req->body, '\0', req->body_len) != NULL ||
		!pg_verifymbstr(req->body, req->body_len, true) ||
		(b.root = evc_jtext_read(req->body, req->body_len)) == NULL)
		return false;
	b.n = evc_jtext_array_length(b.root);
	if (b.n <= 0 || b.n > evc_gw_batch_max)
		return false;
	if ((b.client = send_client(req, NULL, resp)) == NULL)
		return true;
	b.req = req;
	if (req->user_agent != NULL)
	{
		char	   *ua = pstrdup(req->user_agent);

		evc_http_utf8_clean(ua);
		b.user_agent = ua;
	}
	b.prepared = palloc(sizeof(PrepareArgs) * b.n);
	initStringInfo(&r.json);
	if (!in_subtransaction(text_batch_step, &b, &r) || !b.ok)
		return false;
	batch_answer_accepted(b.prepared, b.n, resp);
	return true;
}

static void
route_batch_in(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	Jsonb	   *body;
	const char *client;
	JsonbValue *items;
	int			nitems;
	int			n;

	if (!body_precheck(req, resp) || route_batch_text(req, resp))
		return;
	if (!parse_body(req, resp, &body))
		return;
	if (!JB_ROOT_IS_ARRAY(body) || JB_ROOT_IS_SCALAR(body))
	{
		evc_http_error(resp, 400, "invalid_batch", "the body must be a JSON array of events");
		return;
	}
	n = JB_ROOT_COUNT(body);
	if (n == 0 || n > evc_gw_batch_max)
	{
		evc_http_error(resp, n == 0 ? 400 : 413, n == 0 ? "invalid_batch" : "batch_too_large",
					   "the batch has %d events; evcollector.gateway_batch_max allows 1 to %d",
					   n, evc_gw_batch_max);
		return;
	}
	if ((client = send_client(req, NULL, resp)) == NULL)
		return;
	nitems = batch_split(body, n, &items);
	batch_send(req, client, items, nitems, resp);
}

/*
 * POST /v1/batch.  Everything a batch allocates (the parsed body, each
 * event's payload and copies, the insert's tuples) is dead once its rows
 * are in the outbox and its answer written; the answer itself lives in
 * resp's own context.  So the batch works in a context of its own, freed
 * here: left in the group's transaction, a group of 64 batches held some
 * 20 MB until its commit, which PostgreSQL 15 frees and glibc gives back,
 * and the next group faulted its pages in again (a tenth of the worker's
 * time).  Freed per batch, the memory is reused while still mapped.  An
 * ERROR escaping leaves the context to its parent, the transaction's.
 */
static void
route_batch(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
													"evcollector gateway batch",
													ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(batch_cxt);

	route_batch_in(req, resp);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(batch_cxt);
}

/* POST /<client>/<event>/send_event: the body is the data. */
static void
route_send_event(const EvcHttpRequest *req, EvcHttpResponse *resp, const char *path_client,
				 const char *event_name)
{
	Jsonb	   *body;
	const char *client;
	SendResult	r;

	if ((client = send_client(req, path_client, resp)) == NULL)
		return;
	if (!parse_body(req, resp, &body))
		return;
	initStringInfo(&r.json);
	send_one(req, client, event_name, NULL, body, &r);
	answer_result(resp, &r);
}

/* "/a/b/send_event": a and b, or false. */
static bool
split_send_event(const char *path, char **client, char **event)
{
	const char *p;
	const char *s1;
	const char *s2;

	/* (path + 1 is past the end of "": look at path[0] first) */
	if (path[0] != '/')
		return false;
	p = path + 1;
	s1 = strchr(p, '/');
	if (s1 == NULL || s1 == p)
		return false;
	s2 = strchr(s1 + 1, '/');
	if (s2 == NULL || s2 == s1 + 1 || strcmp(s2, "/send_event") != 0)
		return false;
	*client = pnstrdup(p, s1 - p);
	*event = pnstrdup(s1 + 1, s2 - s1 - 1);
	return true;
}

bool
evc_http_route_send(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	char	   *client;
	char	   *event;
	bool		is_post = strcmp(req->method, "POST") == 0;

	if (strcmp(req->path, "/store") == 0 || strcmp(req->path, "/v1/events") == 0)
	{
		if (!is_post)
			evc_http_error(resp, 405, "method_not_allowed", "%s takes POST", req->path);
		else
			route_one_event(req, resp);
		return true;
	}
	if (strcmp(req->path, "/v1/batch") == 0)
	{
		if (!is_post)
			evc_http_error(resp, 405, "method_not_allowed", "%s takes POST", req->path);
		else
			route_batch(req, resp);
		return true;
	}
	if (split_send_event(req->path, &client, &event))
	{
		if (!is_post)
			evc_http_error(resp, 405, "method_not_allowed", "%s takes POST", req->path);
		else
			route_send_event(req, resp, client, event);
		return true;
	}
	return false;
}
