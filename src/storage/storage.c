/*
 * storage.c
 *		Owns the choice of object-storage backend from evcollector.storage_url
 *		and what every backend shares: the key layout under the URL's prefix
 *		and content hashing.
 *
 * Keys handed to evc_storage_put are relative ("topic/2024/05/01/13/...");
 * the backend puts them under the prefix of the URL.  The full key, prefix
 * included, is what the index tables record, so a reader can fetch the
 * object without knowing the setting that was in force.
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "miscadmin.h"

#include "storage/storage.h"

EvcStorage *
evc_storage_open(const char *url)
{
	if (strncmp(url, "file://", 7) == 0)
		return evc_storage_file_open(url);
	if (strncmp(url, "s3://", 5) == 0)
		return evc_storage_s3_open(url);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown storage URL scheme in \"%s\"", url),
			 errhint("Set evcollector.storage_url to file:///path or s3://bucket/prefix.")));
	return NULL;				/* keep compiler quiet */
}

void
evc_storage_close(EvcStorage *st)
{
	if (st != NULL)
		st->ops->close(st);
}

void
evc_storage_put(EvcStorage *st, const char *key, const char *data, size_t len,
				const char *content_type, const char *sha256_hex)
{
	st->ops->put(st, key, data, len, content_type, sha256_hex);
}

char *
evc_storage_get(EvcStorage *st, const char *full_key, size_t *len)
{
	return st->ops->get(st, full_key, len);
}

void
evc_storage_sync(EvcStorage *st)
{
	if (st->ops->sync != NULL)
		st->ops->sync(st);
}

/* The key as the index records it: prefix/key, or key when no prefix. */
char *
evc_storage_full_key(EvcStorage *st, const char *key)
{
	if (st->prefix == NULL || st->prefix[0] == '\0')
		return pstrdup(key);
	return psprintf("%s/%s", st->prefix, key);
}

/* hex must have room for 65 bytes. */
void
evc_sha256_hex(const char *data, size_t len, char *hex)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[32];

	if (ctx == NULL ||
		pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute sha256: %s", pg_cryptohash_error(ctx))));
	pg_cryptohash_free(ctx);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	hex[64] = '\0';
}

/*
 * Backends' transfer callbacks run inside library calls and must not call
 * into PostgreSQL; reading the interrupt flags is safe, and the caller runs
 * CHECK_FOR_INTERRUPTS once the library has returned.
 */
bool
evc_storage_interrupted(void)
{
	return ProcDiePending || QueryCancelPending;
}
