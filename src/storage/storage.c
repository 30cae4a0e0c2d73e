/*
 * storage.c
 *		Owns the choice of object-storage backend from evcollector.storage_url
 *		and what every backend shares: the key layout under the URL's prefix
 *		and content hashing.
 *
 * Keys handed to evc_storage_put_at_sync are relative ("topic/2024/05/01/13/...");
 * the backend puts them under the prefix of the URL.  The full key, prefix
 * included, is what the index tables record, so a reader can fetch the
 * object without knowing the setting that was in force.
 *
 * Objects handed to evc_storage_put_at_sync are gathered, copied, in a
 * queue that belongs to the current transaction, and go to the backend's
 * put_many together when the landing syncs: the archive and images sinks
 * land partition after partition, each with a few objects, and a backend
 * that puts concurrently (S3) needs them all at once to keep its requests
 * in flight.  The queue lives in a child of TopTransactionContext, so a
 * landing that fails forgets its queue with its transaction.  Its copies
 * are bounded: an object that would take it past QUEUE_MAX_BYTES is put
 * at once, with what the queue holds, without being copied.
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/cryptohash.h"
#include "miscadmin.h"
#include "utils/memutils.h"

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

#define QUEUE_MAX_BYTES ((size_t) 16 * 1024 * 1024)

struct EvcStorageQueue
{
	MemoryContext cxt;			/* holds the queue and its copies */
	EvcStorage *st;
	EvcStorageObject *objs;
	int			nobjs;
	int			capacity;
	size_t		bytes;
	MemoryContextCallback forget;
};

/* The queue's context is going away, with its transaction or after a flush. */
static void
queue_forget(void *arg)
{
	EvcStorageQueue *q = arg;

	q->st->queue = NULL;
}

static EvcStorageQueue *
queue_create(EvcStorage *st)
{
	MemoryContext cxt;
	EvcStorageQueue *q;

	if (!IsTransactionState())
		elog(ERROR, "objects can be put at sync only inside a transaction");
	cxt = AllocSetContextCreate(TopTransactionContext, "evcollector storage queue",
								ALLOCSET_DEFAULT_SIZES);
	q = MemoryContextAllocZero(cxt, sizeof(*q));
	q->cxt = cxt;
	q->st = st;
	q->capacity = 64;
	q->objs = MemoryContextAlloc(cxt, sizeof(EvcStorageObject) * q->capacity);
	q->forget.func = queue_forget;
	q->forget.arg = q;
	MemoryContextRegisterResetCallback(cxt, &q->forget);
	st->queue = q;
	return q;
}

/* Put what the queue holds, and extra (not copied) when it is not NULL. */
static void
queue_flush(EvcStorage *st, const EvcStorageObject *extra)
{
	EvcStorageQueue *q = st->queue;

	if (q == NULL && extra == NULL)
		return;
	if (q == NULL)
	{
		st->ops->put_many(st, extra, 1);
		return;
	}
	if (extra != NULL)
	{
		if (q->nobjs == q->capacity)
		{
			q->capacity++;
			q->objs = repalloc(q->objs, sizeof(EvcStorageObject) * q->capacity);
		}
		q->objs[q->nobjs++] = *extra;
	}
	st->ops->put_many(st, q->objs, q->nobjs);
	MemoryContextDelete(q->cxt);	/* queue_forget clears st->queue */
}

void
evc_storage_close(EvcStorage *st)
{
	if (st == NULL)
		return;
	if (st->queue != NULL)
		MemoryContextDelete(st->queue->cxt);
	st->ops->close(st);
}

/*
 * Put several objects, concurrently where the backend can.  Returns when
 * all of them were put; an error fails the whole batch.
 */
void
evc_storage_put_many(EvcStorage *st, const EvcStorageObject *objs, int nobjs)
{
	if (nobjs <= 0)
		return;
	if (st->ops->put_many != NULL)
	{
		st->ops->put_many(st, objs, nobjs);
		return;
	}
	for (int i = 0; i < nobjs; i++)
		st->ops->put(st, objs[i].key, objs[i].data, objs[i].len,
					 objs[i].content_type, objs[i].sha256_hex);
}

/*
 * Put an object by the next evc_storage_sync of this transaction: it is
 * durable once that sync has returned, as after put.  A backend without
 * put_many gains nothing by waiting, so it is put at once.
 */
void
evc_storage_put_at_sync(EvcStorage *st, const EvcStorageObject *obj)
{
	EvcStorageQueue *q;
	EvcStorageObject *copy;
	char	   *data;

	if (st->ops->put_many == NULL)
	{
		st->ops->put(st, obj->key, obj->data, obj->len, obj->content_type, obj->sha256_hex);
		return;
	}
	q = st->queue;
	if ((q ? q->bytes : 0) + obj->len > QUEUE_MAX_BYTES)
	{
		queue_flush(st, obj);
		return;
	}
	if (q == NULL)
		q = queue_create(st);
	if (q->nobjs == q->capacity)
	{
		q->capacity *= 2;
		q->objs = repalloc(q->objs, sizeof(EvcStorageObject) * q->capacity);
	}
	data = MemoryContextAlloc(q->cxt, Max(obj->len, 1));
	memcpy(data, obj->data, obj->len);
	copy = &q->objs[q->nobjs++];
	copy->key = MemoryContextStrdup(q->cxt, obj->key);
	copy->data = data;
	copy->len = obj->len;
	copy->content_type = MemoryContextStrdup(q->cxt, obj->content_type);
	copy->sha256_hex = MemoryContextStrdup(q->cxt, obj->sha256_hex);
	q->bytes += obj->len;
}

char *
evc_storage_get(EvcStorage *st, const char *full_key, size_t *len)
{
	return st->ops->get(st, full_key, len);
}

void
evc_storage_sync(EvcStorage *st)
{
	queue_flush(st, NULL);
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
