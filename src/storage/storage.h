/*
 * storage.h
 *		Object storage for the sinks: one interface, two backends chosen by
 *		evcollector.storage_url (file:///dir and s3://bucket/prefix).
 */
#ifndef EVC_STORAGE_H
#define EVC_STORAGE_H

typedef struct EvcStorage EvcStorage;
typedef struct EvcStorageQueue EvcStorageQueue;

/* One object to put: its relative key, body, content type and body hash. */
typedef struct EvcStorageObject
{
	const char *key;
	const char *data;
	size_t		len;
	const char *content_type;
	const char *sha256_hex;
} EvcStorageObject;

/*
 * An object is durable once put and then sync have returned; a backend
 * whose put makes it durable by itself has no sync.  The consumer puts a
 * landing's objects, then syncs once, before the transaction that indexes
 * them commits.
 *
 * A failed put or sync raises ERROR.  The SQLSTATE tells the caller what to do:
 * ERRCODE_CONNECTION_FAILURE (or other class 08 / 58) means the store is
 * unavailable and the put may be retried later; any other code means the
 * request is wrong (credentials, bucket) and needs an operator, although
 * the consumer still retries it with a long backoff.
 */
typedef struct EvcStorageOps
{
	void		(*put) (EvcStorage *st, const char *key, const char *data,
						size_t len, const char *content_type,
						const char *sha256_hex);
	void		(*close) (EvcStorage *st);
	/* Read a whole object by its full key (as the index rows record it). */
	char	   *(*get) (EvcStorage *st, const char *full_key, size_t *len);
	void		(*sync) (EvcStorage *st);	/* may be NULL */

	/*
	 * Put several objects, concurrently where the backend can; returns when
	 * every one was put as put would, or raises ERROR for the whole batch.
	 * NULL means put them one by one.
	 */
	void		(*put_many) (EvcStorage *st, const EvcStorageObject *objs, int nobjs);
} EvcStorageOps;

struct EvcStorage
{
	const EvcStorageOps *ops;
	char	   *url;			/* evcollector.storage_url it was opened with */
	char	   *prefix;			/* key prefix, no leading or trailing slash */
	EvcStorageQueue *queue;		/* objects put at sync; see storage.c */
};

extern EvcStorage *evc_storage_open(const char *url);
extern void evc_storage_close(EvcStorage *st);
extern void evc_storage_put_many(EvcStorage *st, const EvcStorageObject *objs,
								 int nobjs);
extern void evc_storage_put_at_sync(EvcStorage *st, const EvcStorageObject *obj);
extern void evc_storage_sync(EvcStorage *st);
extern char *evc_storage_full_key(EvcStorage *st, const char *key);
extern char *evc_storage_get(EvcStorage *st, const char *full_key, size_t *len);
extern void evc_sha256_hex(const char *data, size_t len, char *hex);

/* Backends. */
extern EvcStorage *evc_storage_file_open(const char *url);
extern EvcStorage *evc_storage_s3_open(const char *url);

/* Set by backends' transfer callbacks; checked to exit promptly. */
extern bool evc_storage_interrupted(void);

#endif
