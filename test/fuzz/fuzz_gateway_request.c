/*
 * fuzz_gateway_request.c
 *		The gateway's request handling on raw bytes, without a socket and
 *		without SPI: everything the server does to a request before the
 *		database is touched.
 *
 * The input is an HTTP/1.1 request as a client writes it: a request line
 * ("POST /store?x=1 HTTP/1.1"), header lines, an empty line, the body.
 * libwebsockets' part (splitting that, percent-decoding the path) is done
 * here in its place; what follows is the gateway's own code:
 *
 *   - the Authorization header: Bearer, or Basic with the key as the
 *     password (evc_gw_key_from_header, keys.c);
 *   - the query string (evc_reg_query_param and _flag, registry_guard.c);
 *   - routing: the send routes' paths (/store, /v1/events, /v1/batch,
 *     /<client>/<event>/send_event) and the registry's route table and
 *     subject parser (split_path, match, resolve_subject);
 *   - on a send route: which client it sends as (send_client), the
 *     Content-Type and empty-body checks (body_precheck), the JSON parse
 *     (parse_step), /v1/batch's split into its events (batch_split), and
 *     each event's reading and normalisation (prepare_read: event_name,
 *     data, key; build_context: unknown context fields refused, sent_at as
 *     Unix seconds or RFC 3339, message_id made a UUID).  evc_send_prepare,
 *     the registry lookup and the schema check that come next need SPI.
 *
 * routes_send.c and routes_registry.c are included, as sink_decode includes
 * sinks.c, because those functions are static; the errors an event step
 * raises are caught as in_subtransaction catches them, without the
 * subtransaction (nothing here writes).
 *
 * What it checks beyond "no crash, no leak, no UB":
 *   - every refusal is an answer, not an escaping ERROR: an ERROR raised on
 *     bad input maps to a 4xx (error_to_http) and its SQLSTATE is not XX000;
 *   - every answer is 4xx with a JSON body that jsonb accepts, of the
 *     route's shape ({"error": {"code", "message"}} or, for Confluent
 *     routes, {"error_code", "message"});
 *   - an accepted event has data, a name, and a context that is a valid
 *     jsonb object of strings (sent_at, message_id, user_agent); its
 *     message_id is a UUID, the same one for the same client id; a sent_at
 *     made from Unix seconds parses as evc_send parses it;
 *   - a batch splits into as many events as the array has.
 */
#include "../../src/gateway/routes_send.c"
#include "../../src/gateway/routes_registry.c"

#include "fuzz_pg.h"

#define FUZZ_KEY_CLIENT "fuzzclient"

typedef struct FuzzRequest
{
	const char *data;
	size_t		size;
	EvcHttpRequest req;
	const char *authorization;
} FuzzRequest;

/* --- checks on answers ---------------------------------------------------- */

static void
check_error_answer(int status, const char *body, bool confluent, const char *where)
{
	Jsonb	   *j;
	JsonbValue *v;

	if (status < 400 || status > 499)
		fuzz_fail("%s: a refusal with status %d: %s", where, status, body);
	j = fuzz_parse_jsonb(body);
	if (j == NULL)
		fuzz_fail("%s: an error body that jsonb refuses (%s): %s", where, fuzz_last_message, body);
	if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
		fuzz_fail("%s: an error body that is not an object: %s", where, body);
	if (confluent)
	{
		v = getKeyJsonValueFromContainer(&j->root, "error_code", 10, NULL);
		if (v == NULL || v->type != jbvNumeric)
			fuzz_fail("%s: a registry error without error_code: %s", where, body);
		v = getKeyJsonValueFromContainer(&j->root, "message", 7, NULL);
		if (v == NULL || v->type != jbvString)
			fuzz_fail("%s: a registry error without message: %s", where, body);
	}
	else
	{
		v = getKeyJsonValueFromContainer(&j->root, "error", 5, NULL);
		if (v == NULL || v->type != jbvBinary)
			fuzz_fail("%s: an error without {\"error\": {...}}: %s", where, body);
	}
}

static void
check_resp(EvcHttpResponse *resp, const char *where)
{
	bool		confluent = resp->content_type != NULL &&
		strcmp(resp->content_type, EVC_REG_CONTENT_TYPE) == 0;

	check_error_answer(resp->status, resp->body.data, confluent, where);
}

/* --- an event step, caught as in_subtransaction catches it ----------------- */

/* true when step returned; false, with r filled, when it raised bad input. */
static bool
try_step(SendStep step, void *arg, SendResult *r, const char *where)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		step(arg);
	}
	PG_CATCH();
	{
		ErrorData  *e;
		int			status;
		const char *code;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		if (e->sqlerrcode == ERRCODE_INTERNAL_ERROR)
			fuzz_fail("%s: internal error (XX000): %s", where, e->message);
		if (!error_to_http(e, &status, &code))
			fuzz_fail("%s: an ERROR the send routes re-throw, failing the group (SQLSTATE %s): %s",
					  where, unpack_sql_state(e->sqlerrcode), e->message);
		result_error(r, status, code, error_text(e));
		check_error_answer(r->status, r->json.data, false, where);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static void
read_step(void *arg)
{
	prepare_read((PrepareArgs *) arg);
}

/* The context as evc_send will read it: an object of strings. */
static void
check_context(const char *client, SendItem *it)
{
	char	   *text;
	Jsonb	   *j;
	JsonbIterator *iter;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (it->context == NULL)
		return;
	text = JsonbToCString(NULL, &it->context->root, VARSIZE(it->context));
	j = fuzz_parse_jsonb(text);
	if (j == NULL)
		fuzz_fail("an accepted event's context is not valid jsonb (%s): %s", fuzz_last_message, text);
	if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
		fuzz_fail("an accepted event's context is not an object: %s", text);
	iter = JsonbIteratorInit(&it->context->root);
	while ((tok = JsonbIteratorNext(&iter, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&iter, &v, true);
		if (tok != WJB_VALUE || v.type != jbvString)
			fuzz_fail("an accepted event's context has a non-string: %s", text);
		if (k.val.string.len == 10 && memcmp(k.val.string.val, "message_id", 10) == 0)
		{
			char	   *mid = pnstrdup(v.val.string.val, v.val.string.len);

			if (!looks_like_uuid(mid))
				fuzz_fail("an accepted event's message_id is not a UUID: %s", mid);
			if (it->client_message_id &&
				strcmp(message_uuid(client, it->client_message_id), mid) != 0)
				fuzz_fail("a client message_id gave two UUIDs: %s", it->client_message_id);
		}
		else if (!(k.val.string.len == 7 && memcmp(k.val.string.val, "sent_at", 7) == 0) &&
				 !(k.val.string.len == 10 && memcmp(k.val.string.val, "user_agent", 10) == 0))
			fuzz_fail("an accepted event's context has %.*s: %s",
					  (int) k.val.string.len, k.val.string.val, text);
	}
}

/* sent_at made from Unix seconds must parse as evc_send parses it. */
static void
check_sent_at(Jsonb *event, SendItem *it)
{
	JsonbValue *ctx;
	JsonbValue *sent;
	JsonbValue *out;
	Jsonb	   *c;
	TimestampTz ts;

	if (event == NULL || it->context == NULL ||
		(ctx = object_get(event, "context")) == NULL)
		return;
	c = JsonbValueToJsonb(ctx);
	if ((sent = object_get(c, "sent_at")) == NULL || sent->type != jbvNumeric)
		return;
	out = object_get(it->context, "sent_at");
	if (out == NULL || out->type != jbvString)
		fuzz_fail("a numeric sent_at was accepted and lost");
	if (!evc_parse_timestamp(pnstrdup(out->val.string.val, out->val.string.len), &ts))
		fuzz_fail("a numeric sent_at became \"%.*s\", which evc_send does not parse",
				  out->val.string.len, out->val.string.val);
}

/* One event off the request: refused with an answer, or accepted clean. */
static void
one_event(const EvcHttpRequest *req, const char *client, const char *event_name,
		  JsonbValue *event, Jsonb *data)
{
	PrepareArgs a;
	SendResult	r;
	char	   *text;

	memset(&a, 0, sizeof(a));
	a.req = req;
	a.client = client;
	a.event_name = event_name;
	a.event = event;
	a.data = data;
	a.item.client = client;
	initStringInfo(&r.json);
	if (!try_step(read_step, &a, &r, "an event"))
		return;
	if (a.item.event_name == NULL || a.item.data == NULL || a.item.client == NULL)
		fuzz_fail("an event was accepted without a name, data or client");
	text = JsonbToCString(NULL, &a.item.data->root, VARSIZE(a.item.data));
	if (fuzz_parse_jsonb(text) == NULL)
		fuzz_fail("an accepted event's data is not valid jsonb (%s): %s", fuzz_last_message, text);
	check_context(client, &a.item);
	if (event != NULL && event->type == jbvBinary)
		check_sent_at(JsonbValueToJsonb(event), &a.item);
}

/* --- the send routes, up to evc_send_prepare ------------------------------ */

static bool
body_json(const EvcHttpRequest *req, EvcHttpResponse *resp, Jsonb **body)
{
	ParseArgs	a = {req, NULL};
	SendResult	r;

	if (!body_precheck(req, resp))
	{
		check_resp(resp, "the body's checks");
		return false;
	}
	initStringInfo(&r.json);
	if (!try_step(parse_step, &a, &r, "the body's JSON"))
		return false;
	*body = a.body;
	return true;
}

static void
send_route(const EvcHttpRequest *req, EvcHttpResponse *resp, const char *path_client,
		   const char *event_name, bool batch)
{
	Jsonb	   *body;
	const char *client;
	char	   *named = NULL;
	JsonbValue *v;

	if (event_name != NULL)
	{
		/* /send_event: the client first, then the body is the data */
		if ((client = send_client(req, path_client, resp)) == NULL)
		{
			check_resp(resp, "the sending client");
			return;
		}
		if (body_json(req, resp, &body))
			one_event(req, client, event_name, NULL, body);
		return;
	}
	if (!body_json(req, resp, &body))
		return;
	if (batch)
	{
		JsonbValue *items;
		int			n;

		if (!JB_ROOT_IS_ARRAY(body) || JB_ROOT_IS_SCALAR(body))
			return;				/* 400 invalid_batch */
		n = JB_ROOT_COUNT(body);
		if (n == 0 || n > evc_gw_batch_max)
			return;
		if ((client = send_client(req, NULL, resp)) == NULL)
		{
			check_resp(resp, "the sending client");
			return;
		}
		if (batch_split(body, n, &items) != n)
			fuzz_fail("a batch of %d events split into another number", n);
		for (int i = 0; i < n; i++)
			one_event(req, client, NULL, &items[i], NULL);
		return;
	}
	if (!JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body))
		return;					/* 400 invalid_event */
	if ((v = object_get(body, "client")) != NULL && v->type == jbvString)
		named = pnstrdup(v->val.string.val, v->val.string.len);
	if ((client = send_client(req, named, resp)) == NULL)
	{
		check_resp(resp, "the sending client");
		return;
	}
	{
		JsonbValue	whole;

		whole.type = jbvBinary;
		whole.val.binary.data = &body->root;
		whole.val.binary.len = VARSIZE(body) - VARHDRSZ;
		one_event(req, client, NULL, &whole, NULL);
	}
}

/* --- the registry's route table, up to evc_reg_run ------------------------ */

static void
registry_route(const EvcHttpRequest *req, EvcHttpResponse *resp)
{
	char	   *seg[MAX_SEGMENTS];
	int			n;

	if (!split_path(req->path, seg, &n))
		return;
	for (int i = 0; i < n; i++)
		if (seg[i][0] == '\0' || strchr(seg[i], '/') != NULL)
			fuzz_fail("split_path gave an empty segment or one with a slash");
	for (int i = 0; i < lengthof(routes); i++)
	{
		EvcRegCall	call = {0};

		call.req = req;
		call.resp = resp;
		call.confluent = routes[i].confluent;
		if (!match(&routes[i], seg, n, &call))
			continue;
		if (strcmp(req->method, routes[i].method) != 0)
			continue;
		if (!resolve_subject(&call, routes[i].handler))
			check_resp(resp, "the registry's subject");
		else if (call.subject && call.client &&
				 (strchr(call.client, '.') != NULL || call.event[0] == '\0'))
			fuzz_fail("subject %s split into client %s and event %s",
					  call.subject, call.client, call.event);
		return;
	}
}

/* --- the request ----------------------------------------------------------- */

static void
check_request(void *arg)
{
	FuzzRequest *fr = arg;
	EvcHttpRequest *req = &fr->req;
	EvcHttpResponse resp;
	char	   *client;
	char	   *event;
	static const char *const params[] = {"version", "verbose", "defaultToGlobal", "normalize"};

	memset(&resp, 0, sizeof(resp));
	initStringInfo(&resp.body);

	/* who is asking: a key stands for the client FUZZ_KEY_CLIENT */
	req->auth_off = true;
	if (fr->authorization != NULL)
	{
		char	   *key = evc_gw_key_from_header(fr->authorization);

		if (key != NULL)
		{
			(void) strlen(key);
			req->auth_off = false;
			req->client = FUZZ_KEY_CLIENT;
			req->role = key[0] == 'r' ? EVC_GW_ROLE_READ : EVC_GW_ROLE_WRITE;
		}
	}

	for (int i = 0; i < lengthof(params); i++)
	{
		const char *v = evc_reg_query_param(req->query, params[i]);

		if (v != NULL && strlen(v) > strlen(req->query))
			fuzz_fail("a query parameter longer than its query string");
		(void) evc_reg_query_flag(req->query, params[i]);
	}

	/* the send routes, as evc_http_route_send tells them apart */
	if (strcmp(req->path, "/store") == 0 || strcmp(req->path, "/v1/events") == 0 ||
		strcmp(req->path, "/v1/batch") == 0)
	{
		if (strcmp(req->method, "POST") == 0)
			send_route(req, &resp, NULL, NULL, strcmp(req->path, "/v1/batch") == 0);
		return;
	}
	if (split_send_event(req->path, &client, &event))
	{
		if (client[0] == '\0' || event[0] == '\0' || strchr(client, '/') || strchr(event, '/'))
			fuzz_fail("split_send_event gave client \"%s\", event \"%s\"", client, event);
		if (strcmp(req->method, "POST") == 0)
			send_route(req, &resp, client, event, false);
		return;
	}
	registry_route(req, &resp);
}

/* --- splitting the bytes, as libwebsockets would -------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The path percent-decoded (%00 kept as it is: a C string ends at NUL). */
static char *
decode_path(const char *p, size_t len)
{
	char	   *out = palloc(len + 1);
	size_t		o = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (p[i] == '%' && i + 2 < len + 0 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0 &&
			(hexval(p[i + 1]) | hexval(p[i + 2])) != 0)
		{
			out[o++] = (char) (hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
			i += 2;
		}
		else
			out[o++] = p[i];
	}
	out[o] = '\0';
	return out;
}

static const char *
header_value(const char *line, size_t len, const char *name)
{
	size_t		nlen = strlen(name);
	size_t		i;

	if (len <= nlen || pg_strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return NULL;
	for (i = nlen + 1; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	return pnstrdup(line + i, len - i);
}

static void
split_request(FuzzRequest *fr)
{
	const char *d = fr->data;
	size_t		size = fr->size;
	const char *end = d + size;
	const char *head_end = NULL;
	const char *line = d;
	bool		first = true;

	for (const char *p = d; p + 1 < end; p++)
	{
		if (p[0] == '\n' && p[1] == '\n')
		{
			head_end = p + 1;
			fr->req.body = p + 2;
			break;
		}
		if (p + 3 < end && memcmp(p, "\r\n\r\n", 4) == 0)
		{
			head_end = p + 2;
			fr->req.body = p + 4;
			break;
		}
	}
	if (head_end == NULL)
	{
		head_end = end;
		fr->req.body = end;
	}
	fr->req.body_len = end - fr->req.body;

	fr->req.method = "GET";
	fr->req.path = "/";
	while (line < head_end)
	{
		const char *nl = memchr(line, '\n', head_end - line);
		size_t		len = (nl ? nl : head_end) - line;
		const char *v;

		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (first)
		{
			const char *sp = memchr(line, ' ', len);
			const char *target = sp ? sp + 1 : line + len;
			const char *tend = memchr(target, ' ', line + len - target);
			const char *q;

			if (tend == NULL)
				tend = line + len;
			fr->req.method = pnstrdup(line, sp ? sp - line : len);
			q = memchr(target, '?', tend - target);
			fr->req.path = decode_path(target, (q ? q : tend) - target);
			if (q)
				fr->req.query = pnstrdup(q + 1, tend - q - 1);
			first = false;
		}
		else if ((v = header_value(line, len, "Content-Type")) != NULL)
			fr->req.content_type = v;
		else if ((v = header_value(line, len, "User-Agent")) != NULL)
			fr->req.user_agent = v;
		else if ((v = header_value(line, len, "X-Evc-Client")) != NULL)
			fr->req.client_header = v;
		else if ((v = header_value(line, len, "Authorization")) != NULL)
			fr->authorization = v;
		line = nl ? nl + 1 : head_end;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzRequest fr;
	MemoryContext old;

	fuzz_begin();
	memset(&fr, 0, sizeof(fr));
	/* libFuzzer's own buffer: the body is exactly its bytes, unterminated */
	fr.data = (const char *) data;
	fr.size = size;
	old = MemoryContextSwitchTo(fuzz_keep_cxt);
	split_request(&fr);
	MemoryContextSwitchTo(old);
	evc_gw_default_client = "default";
	/* handlers answer bad input; they never let an ERROR escape (http.h) */
	if (!fuzz_run(check_request, &fr))
		fuzz_fail("an ERROR escaped the request's handling: %s", fuzz_last_message);
	return 0;
}
