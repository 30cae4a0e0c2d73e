/*
 * gateway/keys.c
 *		Owns the gateway's write keys: evc_gateway_key_create and
 *		evc_gateway_key_revoke, and the check of a request's key.
 *
 * A key is "evk_<id>_<secret>": the id finds the row of evc.gateway_keys,
 * the secret (32 random bytes, hex) is checked against the SHA-256 stored
 * there.  Only the hash is stored, so the secret is shown once, by
 * evc_gateway_key_create.  SHA-256 is PostgreSQL's own (common/cryptohash):
 * pgcrypto is not installed by default.  The comparison is constant-time
 * (timingsafe_bcmp from src/port), so the time it takes tells nothing of
 * how much of a guess was right.  A plain hash, not a slow one, is right
 * here: the secret is 256 random bits, not a password a person chose.
 *
 * Each key is read once per group (a group is one transaction), so a
 * revoke or an expiry takes effect from the next group.
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "gateway/gateway_int.h"
#include "registry/registry.h"
#include "util/fmgr_args.h"
#include "util/spi_plans.h"

#define KEY_PREFIX "evk_"
#define SECRET_BYTES 32

static void
sha256(const char *data, size_t len, uint8 *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, out, PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

static EvcGwRole
role_from_name(const char *role, bool missing_ok)
{
	if (strcmp(role, "read") == 0)
		return EVC_GW_ROLE_READ;
	if (strcmp(role, "write") == 0)
		return EVC_GW_ROLE_WRITE;
	if (strcmp(role, "admin") == 0)
		return EVC_GW_ROLE_ADMIN;
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid gateway key role \"%s\"", role),
				 errhint("A key's role is read, write or admin.")));
	return EVC_GW_ROLE_NONE;
}

/*
 * evc_gateway_key_create(client, role, expires_at, comment) returns text:
 * the key, shown this once.
 */
PG_FUNCTION_INFO_V1(evc_gateway_key_create);
Datum
evc_gateway_key_create(PG_FUNCTION_ARGS)
{
	char	   *client = evc_arg_text(fcinfo, 0, "client");
	char	   *role = evc_arg_text(fcinfo, 1, "role");
	uint8		secret[SECRET_BYTES];
	char		hex[SECRET_BYTES * 2 + 1];
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	bytea	   *hash;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Oid			types[4] = {TEXTOID, TEXTOID, BYTEAOID, TIMESTAMPTZOID};
	int64		id;
	bool		isnull;

	evc_check_name("client", client, false);
	(void) role_from_name(role, false);
	if (!pg_strong_random(secret, sizeof(secret)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random key")));
	hex_encode((const char *) secret, sizeof(secret), hex);
	hex[sizeof(hex) - 1] = '\0';
	sha256(hex, strlen(hex), digest);
	hash = (bytea *) palloc(VARHDRSZ + sizeof(digest));
	SET_VARSIZE(hash, VARHDRSZ + sizeof(digest));
	memcpy(VARDATA(hash), digest, sizeof(digest));

	values[0] = CStringGetTextDatum(client);
	values[1] = CStringGetTextDatum(role);
	values[2] = PointerGetDatum(hash);
	values[3] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	if (PG_ARGISNULL(2))
		nulls[3] = 'n';

	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO evc.gateway_keys (client, role, secret_hash, expires_at) "
							  "VALUES ($1, $2, $3, $4) RETURNING id",
							  4, types, values, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into evc.gateway_keys");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(KEY_PREFIX INT64_FORMAT "_%s", id, hex)));
}

/* evc_gateway_key_revoke(id) returns boolean: whether a live key was revoked. */
PG_FUNCTION_INFO_V1(evc_gateway_key_revoke);
Datum
evc_gateway_key_revoke(PG_FUNCTION_ARGS)
{
	Datum		values[1] = {PG_GETARG_DATUM(0)};
	Oid			types[1] = {INT8OID};
	bool		revoked;

	SPI_connect();
	if (SPI_execute_with_args("UPDATE evc.gateway_keys SET revoked_at = now() "
							  "WHERE id = $1 AND revoked_at IS NULL",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update evc.gateway_keys");
	revoked = SPI_processed > 0;
	SPI_finish();
	PG_RETURN_BOOL(revoked);
}

/* Paths that answer without a key: probes and the scrape. */
static bool
path_is_public(const char *path)
{
	return strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
		strcmp(path, "/metrics") == 0 || strcmp(path, "/openapi.json") == 0;
}

/*
 * The key in an Authorization header: "Bearer <key>", or Basic with the key
 * as the password (the schema-registry clients send basic.auth.user.info
 * as "user:password"; the user part is not checked).  NULL when neither.
 * Pure; exported for the fuzz target (test/fuzz/fuzz_gateway_request.c).
 */
char *
evc_gw_key_from_header(const char *authorization)
{
	if (pg_strncasecmp(authorization, "Bearer ", 7) == 0)
		return pstrdup(authorization + 7);
	if (pg_strncasecmp(authorization, "Basic ", 6) == 0)
	{
		const char *b64 = authorization + 6;
		int			len = strlen(b64);
		int			dlen = pg_b64_dec_len(len);
		char	   *dec = palloc(dlen + 1);
		char	   *colon;
		int			n = pg_b64_decode(b64, len, dec, dlen);

		if (n < 0)
			return NULL;
		dec[n] = '\0';
		colon = strchr(dec, ':');
		return colon ? colon + 1 : NULL;
	}
	return NULL;
}

/* One key as read from evc.gateway_keys in this group. */
typedef struct KeyRow
{
	int64		id;
	bool		found;
	char	   *client;
	EvcGwRole	role;
	bool		expired;
	bool		revoked;
	uint8		hash[PG_SHA256_DIGEST_LENGTH];
} KeyRow;

static KeyRow *
key_lookup(int64 id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	KeyRow	   *k = palloc0(sizeof(KeyRow));
	MemoryContext outer = CurrentMemoryContext;

	k->id = id;
	SPI_connect();
	evc_spi_execute_plan(evc_spi_kept_plan(&plan,
										   "SELECT client, role, secret_hash, "
										   "coalesce(expires_at <= now(), false), revoked_at IS NOT NULL "
										   "FROM evc.gateway_keys WHERE id = $1",
										   1, types),
						 values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bytea	   *h = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));

		k->found = VARSIZE_ANY_EXHDR(h) == PG_SHA256_DIGEST_LENGTH;
		memcpy(k->hash, VARDATA_ANY(h), Min(VARSIZE_ANY_EXHDR(h), PG_SHA256_DIGEST_LENGTH));
		/* SPI_finish frees what SPI_getvalue returns: copy it out. */
		k->client = MemoryContextStrdup(outer, SPI_getvalue(tup, desc, 1));
		k->role = role_from_name(SPI_getvalue(tup, desc, 2), true);
		k->expired = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		k->revoked = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	}
	SPI_finish();
	return k;
}

/* Keys read in the current group: few distinct keys, many requests. */
static List *group_keys = NIL;

void
evc_gw_keys_forget(void)
{
	group_keys = NIL;
}

static KeyRow *
key_get(int64 id)
{
	ListCell   *lc;
	KeyRow	   *k;

	foreach(lc, group_keys)
	{
		k = lfirst(lc);
		if (k->id == id)
			return k;
	}
	k = key_lookup(id);
	group_keys = lappend(group_keys, k);
	return k;
}

/*
 * Fill req->role and req->client from the Authorization header.  False,
 * with resp filled (401), when the path needs a key and none valid came.
 */
bool
evc_gw_authenticate(const char *authorization, EvcHttpRequest *req, EvcHttpResponse *resp)
{
	char	   *key;
	char	   *end;
	char	   *secret;
	int64		id;
	KeyRow	   *k;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	req->role = EVC_GW_ROLE_NONE;
	req->client = NULL;
	if (authorization == NULL)
	{
		if (path_is_public(req->path))
			return true;
		evc_http_error(resp, 401, "missing_key",
					   "%s %s needs a key: send Authorization: Bearer <key>", req->method, req->path);
		return false;
	}
	key = evc_gw_key_from_header(authorization);
	if (key == NULL || strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX)) != 0)
	{
		evc_http_error(resp, 401, "invalid_key",
					   "the Authorization header holds no evcollector key (Bearer evk_..., or Basic with the key as password)");
		return false;
	}
	errno = 0;
	id = strtoi64(key + strlen(KEY_PREFIX), &end, 10);
	if (errno != 0 || *end != '_' || strlen(end + 1) != SECRET_BYTES * 2)
	{
		evc_http_error(resp, 401, "invalid_key", "the key is not of the form evk_<id>_<secret>");
		return false;
	}
	secret = end + 1;
	k = key_get(id);
	sha256(secret, strlen(secret), digest);
	if (!k->found || timingsafe_bcmp(digest, k->hash, sizeof(digest)) != 0)
	{
		evc_http_error(resp, 401, "invalid_key", "the key is not known");
		return false;
	}
	if (k->revoked)
	{
		evc_http_error(resp, 401, "key_revoked", "key %lld was revoked", (long long) id);
		return false;
	}
	if (k->expired)
	{
		evc_http_error(resp, 401, "key_expired", "key %lld has expired", (long long) id);
		return false;
	}
	req->role = k->role;
	req->client = k->client;
	return true;
}
