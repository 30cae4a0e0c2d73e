/*
 * storage_s3.c
 *		Owns the s3://bucket/prefix storage backend: PUT Object over libcurl,
 *		signed by libcurl itself (CURLOPT_AWS_SIGV4), for MinIO, AWS S3 and
 *		other S3-compatible servers.
 *
 * With evcollector.s3_endpoint set, requests go path-style to
 * <endpoint>/<bucket>/<key>, as MinIO and s3rver want; without it, to AWS
 * virtual-host style https://<bucket>.s3.<region>.amazonaws.com/<key>.
 * Every request carries x-amz-content-sha256 with the payload's hash, so
 * the signature covers the body.
 *
 * Puts go through libcurl's multi interface: a batch of objects
 * (put_many; a single put is a batch of one) is put with at most
 * evcollector.s3_max_concurrency requests in flight, each on an easy
 * handle of a small pool.  The multi handle owns the connections and keeps
 * them alive from one batch to the next.  The worker waits on one
 * WaitEventSet holding libcurl's sockets, its latch and postmaster death,
 * for at most libcurl's next timer, and checks for interrupts after every
 * wait, so SIGTERM stops it at once even when the server does not answer;
 * with nothing in flight (only retries waiting) it waits on its latch.
 *
 * A 5xx answer, a timeout or a refused connection is retried, for that
 * object only, a few times with a short backoff while the others go on; if
 * the store is still away the batch fails with ERRCODE_CONNECTION_FAILURE
 * and the consumer retries it later with a longer backoff.  A 4xx answer
 * (bad credentials, no such bucket, a key too long) fails the whole batch
 * at once with the server's error code in the detail: the transfers still
 * in flight are dropped, and the landing commits nothing.  The secret key
 * never appears in a message.
 *
 * libcurl is initialised here, in the worker that opens the store, never in
 * _PG_init: curl_global_init may start threads, and the postmaster must stay
 * single-threaded.  Callbacks run inside curl_multi_perform and
 * curl_easy_perform, in the worker's own thread, and only copy bytes into
 * the transfer's buffer or read flags; they never call into PostgreSQL.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "core/guc.h"
#include "storage/storage.h"

#define S3_ATTEMPTS 4
#define S3_FIRST_BACKOFF_MS 250
#define S3_BODY_KEEP 1024
#define S3_MAX_CONCURRENCY 64	/* the top of evcollector.s3_max_concurrency */
#define S3_WAIT_MAX_MS 100		/* the wait when libcurl reports no socket */

/* Response body, kept for error messages only. */
typedef struct S3Body
{
	size_t		len;
	char		data[S3_BODY_KEEP + 1];
} S3Body;

/* One request slot of the pool: an easy handle and what its PUT uses. */
typedef struct S3Transfer
{
	CURL	   *easy;
	struct curl_slist *headers; /* libcurl's, freed with curl_slist_free_all */
	int			obj;			/* the object of the batch, or -1: idle */
	S3Body		body;
} S3Transfer;

typedef struct S3Storage
{
	EvcStorage	base;
	CURL	   *curl;			/* for GET; reused, so connections are kept alive */
	CURLM	   *multi;			/* for PUT: holds the connections the pool shares */
	S3Transfer	pool[S3_MAX_CONCURRENCY];
	int			npool;			/* slots with an easy handle */
	char	   *bucket;
	char	   *base_url;		/* up to the bucket, no trailing slash */
	char	   *sigv4;			/* "aws:amz:<region>:s3" */
	char	   *userpwd;		/* access:secret; never logged */
} S3Storage;

static bool curl_initialised = false;

static size_t
s3_keep_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	S3Body	   *body = userdata;
	size_t		n = size * nmemb;
	size_t		room = S3_BODY_KEEP - body->len;

	memcpy(body->data + body->len, ptr, Min(n, room));
	body->len += Min(n, room);
	body->data[body->len] = '\0';
	return n;
}

static int
s3_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			curl_off_t ultotal, curl_off_t ulnow)
{
	return evc_storage_interrupted() ? 1 : 0;
}

/* Percent-encode a key, keeping '/' and RFC 3986 unreserved characters. */
static char *
s3_encode_key(const char *key)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = key; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/')
			appendStringInfoChar(&buf, c);
		else
			appendStringInfo(&buf, "%%%02X", c);
	}
	return buf.data;
}

/* The S3 <Code> element of an error body, or "" when there is none. */
static char *
s3_error_code(const char *body)
{
	const char *start = strstr(body, "<Code>");
	const char *end;

	if (start == NULL)
		return "";
	start += 6;
	end = strstr(start, "</Code>");
	if (end == NULL)
		return "";
	return pnstrdup(start, end - start);
}

static int
s3_errcode_for_status(long status)
{
	switch (status)
	{
		case 401:
		case 403:
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		case 404:
			return ERRCODE_UNDEFINED_OBJECT;
		default:
			return ERRCODE_INVALID_PARAMETER_VALUE;
	}
}

/* Set up one PUT of data to url on c; the body is kept in body. */
static void
s3_setup_put(S3Storage *s3, CURL *c, const char *url, const char *data, size_t len,
			 struct curl_slist *headers, S3Body *body)
{
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s3->sigv4);
	curl_easy_setopt(c, CURLOPT_USERPWD, s3->userpwd);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	/* A stalled server: less than 1 kB/s for 10 s counts as a timeout. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 10L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s3_keep_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, s3_progress);
	body->len = 0;
	body->data[0] = '\0';
}

/*
 * Where the objects of one batch stand.  Each object is in one of four
 * states: not started (index >= next), in flight (a transfer holds it),
 * waiting for a retry (retry_at set), or done.  The first failure that
 * retrying will not mend ends the batch and is kept for the error.
 */
typedef struct S3Batch
{
	const EvcStorageObject *objs;
	int			nobjs;
	int			concurrency;
	int			next;			/* first object not started yet */
	int			done;
	int			in_flight;
	int			waiting;		/* objects with retry_at set */
	int		   *attempts;
	TimestampTz *retry_at;		/* 0 when not waiting */
	/* the failure: */
	int			failed;			/* the object, or -1 */
	long		status;			/* its HTTP status, or 0 */
	CURLcode	cerr;
	char		body[S3_BODY_KEEP + 1];
} S3Batch;

/* A transfer slot, with its easy handle, lazily made and then kept. */
static S3Transfer *
s3_transfer_slot(S3Storage *s3)
{
	for (int i = 0; i < s3->npool; i++)
	{
		if (s3->pool[i].obj < 0)
			return &s3->pool[i];
	}
	if (s3->npool < S3_MAX_CONCURRENCY)
	{
		S3Transfer *t = &s3->pool[s3->npool];

		t->easy = curl_easy_init();
		if (t->easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
		t->obj = -1;
		s3->npool++;
		return t;
	}
	elog(ERROR, "no free S3 transfer slot");
	return NULL;				/* keep compiler quiet */
}

/* Start the PUT of object i on a free slot. */
static void
s3_transfer_start(S3Storage *s3, S3Batch *b, int i)
{
	const EvcStorageObject *o = &b->objs[i];
	S3Transfer *t = s3_transfer_slot(s3);
	char	   *full = evc_storage_full_key(&s3->base, o->key);
	char	   *url = psprintf("%s/%s", s3->base_url, s3_encode_key(full));
	char	   *sha = psprintf("x-amz-content-sha256: %s", o->sha256_hex);
	char	   *ctype = psprintf("Content-Type: %s", o->content_type);
	struct curl_slist *h1;
	struct curl_slist *h2;
	CURLMcode	mc;

	/*
	 * No "Expect:" line to turn off 100-continue: libcurl 7.88 signs every
	 * header of the list, the empty one too, but does not send it, so a
	 * server that checks signatures (MinIO, AWS) refuses the request with
	 * SignatureDoesNotMatch.  A large body waits for "100 Continue" instead,
	 * one round trip.
	 */
	h1 = curl_slist_append(NULL, sha);
	h2 = h1 ? curl_slist_append(h1, ctype) : NULL;
	if (h2 == NULL)
	{
		curl_slist_free_all(h1);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory for the headers of an S3 request")));
	}
	s3_setup_put(s3, t->easy, url, o->data, o->len, h2, &t->body);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	t->headers = h2;
	t->obj = i;
	mc = curl_multi_add_handle(s3->multi, t->easy);
	if (mc != CURLM_OK)
	{
		curl_slist_free_all(t->headers);
		t->headers = NULL;
		t->obj = -1;
		elog(ERROR, "curl_multi_add_handle failed: %s", curl_multi_strerror(mc));
	}
	b->attempts[i]++;
	b->in_flight++;
	pfree(ctype);
	pfree(sha);
	pfree(url);
	pfree(full);
}

/* Take t's easy handle out of the multi handle and free its slot. */
static void
s3_transfer_release(S3Storage *s3, S3Transfer *t)
{
	curl_multi_remove_handle(s3->multi, t->easy);
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	t->obj = -1;
}

/* Start what may start: retries that are due first, then new objects. */
static void
s3_batch_start_ready(S3Storage *s3, S3Batch *b)
{
	TimestampTz now = b->waiting > 0 ? GetCurrentTimestamp() : 0;

	for (int i = 0; i < b->next && b->waiting > 0 && b->in_flight < b->concurrency; i++)
	{
		if (b->retry_at[i] != 0 && b->retry_at[i] <= now)
		{
			b->retry_at[i] = 0;
			b->waiting--;
			s3_transfer_start(s3, b, i);
		}
	}
	while (b->next < b->nobjs && b->in_flight < b->concurrency)
		s3_transfer_start(s3, b, b->next++);
}

/*
 * A transfer ended: the object is done, waits for a retry (a 5xx, a
 * timeout, a refused connection, with the same backoff as before: 250 ms
 * doubling), or fails the batch (a 4xx, the last attempt, an interrupt).
 */
static void
s3_transfer_ended(S3Storage *s3, S3Batch *b, S3Transfer *t, CURLcode cerr)
{
	int			i = t->obj;
	long		status = 0;

	if (cerr == CURLE_OK)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	b->in_flight--;
	if (cerr == CURLE_OK && status >= 200 && status < 300)
		b->done++;
	else if (cerr != CURLE_ABORTED_BY_CALLBACK && (cerr != CURLE_OK || status >= 500) &&
			 b->attempts[i] < S3_ATTEMPTS)
	{
		b->retry_at[i] = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 S3_FIRST_BACKOFF_MS << (b->attempts[i] - 1));
		b->waiting++;
	}
	else if (b->failed < 0)
	{
		b->failed = i;
		b->status = status;
		b->cerr = cerr;
		memcpy(b->body, t->body.data, t->body.len + 1);
	}
	s3_transfer_release(s3, t);
}

/* Drive the transfers once and collect those that ended. */
static void
s3_batch_perform(S3Storage *s3, S3Batch *b)
{
	int			running;
	int			left;
	CURLMsg    *msg;
	CURLMcode	mc = curl_multi_perform(s3->multi, &running);

	if (mc != CURLM_OK)
		elog(ERROR, "curl_multi_perform failed: %s", curl_multi_strerror(mc));
	while ((msg = curl_multi_info_read(s3->multi, &left)) != NULL)
	{
		S3Transfer *t = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		s3_transfer_ended(s3, b, t, msg->data.result);
	}
}

/*
 * The sockets libcurl wants watched, with the latch and postmaster death,
 * as one WaitEventSet: the wait ends on the first of them, so SIGTERM stops
 * a batch at once whatever the server does.  curl_multi_fdset is the
 * interface libcurl 7.88 offers for that (curl_multi_waitfds is 8.8); it
 * reports no socket at or above FD_SETSIZE, and none while a name is being
 * resolved, and then libcurl's advice is a short wait, which S3_WAIT_MAX_MS
 * bounds.
 */
static WaitEventSet *
s3_wait_set(S3Storage *s3, int *nsockets)
{
	fd_set		rd,
				wr,
				ex;
	int			maxfd = -1;
	int			n = 0;
	WaitEventSet *set;

	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_ZERO(&ex);
	if (curl_multi_fdset(s3->multi, &rd, &wr, &ex, &maxfd) != CURLM_OK)
		maxfd = -1;
	for (int fd = 0; fd <= maxfd; fd++)
		n += (FD_ISSET(fd, &rd) || FD_ISSET(fd, &wr) || FD_ISSET(fd, &ex)) ? 1 : 0;
	set = CreateWaitEventSet(CurrentMemoryContext, n + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int fd = 0; fd <= maxfd; fd++)
	{
		uint32		events = 0;

		if (FD_ISSET(fd, &rd) || FD_ISSET(fd, &ex))
			events |= WL_SOCKET_READABLE;
		if (FD_ISSET(fd, &wr))
			events |= WL_SOCKET_WRITEABLE;
		if (events != 0)
			AddWaitEventToSet(set, events, fd, NULL, NULL);
	}
	*nsockets = n;
	return set;
}

/*
 * Wait for socket activity, libcurl's next timer, the next retry or the
 * latch.  With nothing in flight, only retries wait: that is a wait on the
 * latch alone.
 */
static void
s3_batch_wait(S3Storage *s3, S3Batch *b)
{
	long		timeout = -1;
	long		curl_timeout = -1;
	int			nsockets;
	WaitEventSet *set;
	WaitEvent	ev;

	if (b->waiting > 0 && b->in_flight < b->concurrency)
	{
		TimestampTz now = GetCurrentTimestamp();

		for (int i = 0; i < b->next; i++)
		{
			if (b->retry_at[i] != 0)
			{
				long		ms = (long) Max(0, (b->retry_at[i] - now + 999) / 1000);

				timeout = timeout < 0 ? ms : Min(timeout, ms);
			}
		}
	}
	if (b->in_flight == 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout < 0 ? S3_WAIT_MAX_MS : timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		return;
	}
	curl_multi_timeout(s3->multi, &curl_timeout);
	if (curl_timeout >= 0)
		timeout = timeout < 0 ? curl_timeout : Min(timeout, curl_timeout);
	set = s3_wait_set(s3, &nsockets);
	if (nsockets == 0)
		timeout = timeout < 0 ? S3_WAIT_MAX_MS : Min(timeout, S3_WAIT_MAX_MS);
	if (WaitEventSetWait(set, timeout, &ev, 1, PG_WAIT_EXTENSION) > 0 &&
		(ev.events & WL_LATCH_SET))
		ResetLatch(MyLatch);
	FreeWaitEventSet(set);
}

/* The batch failed: say which object, and why. */
static void
s3_batch_report(S3Storage *s3, S3Batch *b)
{
	char	   *full = evc_storage_full_key(&s3->base, b->objs[b->failed].key);

	if (b->cerr != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not store object \"%s\" in bucket \"%s\"", full, s3->bucket),
				 errdetail("libcurl: %s.", curl_easy_strerror(b->cerr)),
				 errhint("Check that the S3 server at evcollector.s3_endpoint is up; the consumer retries.")));
	if (b->status >= 500)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not store object \"%s\" in bucket \"%s\"", full, s3->bucket),
				 errdetail("The S3 server answered HTTP %ld %s after %d attempts.",
						   b->status, s3_error_code(b->body), S3_ATTEMPTS)));
	ereport(ERROR,
			(errcode(s3_errcode_for_status(b->status)),
			 errmsg("S3 server refused object \"%s\" in bucket \"%s\"", full, s3->bucket),
			 errdetail("HTTP %ld %s.", b->status, s3_error_code(b->body)),
			 errhint("Check evcollector.s3_access_key, evcollector.s3_secret_key, evcollector.s3_region and that the bucket exists.")));
}

/*
 * Put a batch of objects with at most evcollector.s3_max_concurrency
 * requests in flight, through libcurl's multi interface, on the easy
 * handles of the pool; the multi handle keeps their connections alive
 * from one batch to the next.  Returns when every object is stored.  The
 * first failure that retrying will not mend ends the batch: the transfers
 * still in flight are dropped, and the caller commits nothing.
 */
static void
s3_put_many(EvcStorage *st, const EvcStorageObject *objs, int nobjs)
{
	S3Storage  *s3 = (S3Storage *) st;
	S3Batch    *b = palloc0(sizeof(S3Batch));

	b->objs = objs;
	b->nobjs = nobjs;
	b->concurrency = Max(1, Min(Min(evc_s3_max_concurrency, S3_MAX_CONCURRENCY), nobjs));
	b->attempts = palloc0(sizeof(int) * nobjs);
	b->retry_at = palloc0(sizeof(TimestampTz) * nobjs);
	b->failed = -1;
	curl_multi_setopt(s3->multi, CURLMOPT_MAXCONNECTS, (long) Max(evc_s3_max_concurrency, 1));

	PG_TRY();
	{
		s3_batch_start_ready(s3, b);
		for (;;)
		{
			s3_batch_perform(s3, b);
			if (b->failed >= 0 || b->done == nobjs)
				break;
			CHECK_FOR_INTERRUPTS();
			if (b->in_flight < b->concurrency &&
				(b->next < nobjs || b->waiting > 0))
			{
				int			before = b->in_flight;

				s3_batch_start_ready(s3, b);
				if (b->in_flight > before)
					continue;
			}
			s3_batch_wait(s3, b);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		for (int i = 0; i < s3->npool; i++)
		{
			if (s3->pool[i].obj >= 0)
				s3_transfer_release(s3, &s3->pool[i]);
		}
	}
	PG_END_TRY();

	if (b->failed >= 0)
	{
		if (b->cerr == CURLE_ABORTED_BY_CALLBACK)
			CHECK_FOR_INTERRUPTS();
		s3_batch_report(s3, b);
	}
	pfree(b->retry_at);
	pfree(b->attempts);
	pfree(b);
}

/* One object, put as a batch of one: the retries are the same. */
static void
s3_put(EvcStorage *st, const char *key, const char *data, size_t len,
	   const char *content_type, const char *sha256_hex)
{
	EvcStorageObject obj = {key, data, len, content_type, sha256_hex};

	s3_put_many(st, &obj, 1);
}

static void
s3_close(EvcStorage *st)
{
	S3Storage  *s3 = (S3Storage *) st;

	for (int i = 0; i < s3->npool; i++)
	{
		if (s3->pool[i].obj >= 0)
			s3_transfer_release(s3, &s3->pool[i]);
		curl_easy_cleanup(s3->pool[i].easy);
	}
	s3->npool = 0;
	if (s3->multi)
		curl_multi_cleanup(s3->multi);
	s3->multi = NULL;
	if (s3->curl)
		curl_easy_cleanup(s3->curl);
	s3->curl = NULL;
}

/*
 * A GET's body, gathered with malloc by the write callback (which must not
 * call into PostgreSQL) and copied into palloc'd memory afterwards.
 */
typedef struct S3Download
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		too_big;
} S3Download;

#define S3_GET_MAX ((size_t) MaxAllocSize - 1)
#define SHA256_OF_NOTHING "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static size_t
s3_keep_download(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	S3Download *d = userdata;
	size_t		n = size * nmemb;

	if (d->len + n > S3_GET_MAX)
	{
		d->too_big = true;
		return 0;				/* aborts the transfer */
	}
	if (d->len + n + 1 > d->cap)
	{
		size_t		cap = Max(d->cap * 2, d->len + n + 1);
		char	   *p = realloc(d->data, cap);

		if (p == NULL)
			return 0;
		d->data = p;
		d->cap = cap;
	}
	memcpy(d->data + d->len, ptr, n);
	d->len += n;
	return n;
}

static char *
s3_get(EvcStorage *st, const char *full_key, size_t *len)
{
	S3Storage  *s3 = (S3Storage *) st;
	char	   *url = psprintf("%s/%s", s3->base_url, s3_encode_key(full_key));
	struct curl_slist *headers = NULL;
	S3Download	d = {0};
	CURLcode	cerr;
	long		status = 0;
	char	   *result;
	char	   *code;

	headers = curl_slist_append(headers, "x-amz-content-sha256: " SHA256_OF_NOTHING);
	curl_easy_reset(s3->curl);
	curl_easy_setopt(s3->curl, CURLOPT_URL, url);
	curl_easy_setopt(s3->curl, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(s3->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(s3->curl, CURLOPT_AWS_SIGV4, s3->sigv4);
	curl_easy_setopt(s3->curl, CURLOPT_USERPWD, s3->userpwd);
	curl_easy_setopt(s3->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s3->curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(s3->curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(s3->curl, CURLOPT_LOW_SPEED_TIME, 10L);
	curl_easy_setopt(s3->curl, CURLOPT_WRITEFUNCTION, s3_keep_download);
	curl_easy_setopt(s3->curl, CURLOPT_WRITEDATA, &d);
	curl_easy_setopt(s3->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(s3->curl, CURLOPT_XFERINFOFUNCTION, s3_progress);
	cerr = curl_easy_perform(s3->curl);
	if (cerr == CURLE_OK)
		curl_easy_getinfo(s3->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);

	if (cerr == CURLE_OK && status >= 200 && status < 300)
	{
		result = palloc(d.len + 1);
		if (d.len > 0)
			memcpy(result, d.data, d.len);
		result[d.len] = '\0';
		*len = d.len;
		free(d.data);
		return result;
	}
	code = pnstrdup(d.data ? d.data : "", Min(d.len, S3_BODY_KEEP));
	free(d.data);
	CHECK_FOR_INTERRUPTS();
	if (cerr != CURLE_OK)
		ereport(ERROR,
				(errcode(d.too_big ? ERRCODE_PROGRAM_LIMIT_EXCEEDED : ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read object \"%s\" from bucket \"%s\"", full_key, s3->bucket),
				 errdetail("libcurl: %s.", curl_easy_strerror(cerr))));
	ereport(ERROR,
			(errcode(status >= 500 ? ERRCODE_CONNECTION_FAILURE : s3_errcode_for_status(status)),
			 errmsg("could not read object \"%s\" from bucket \"%s\"", full_key, s3->bucket),
			 errdetail("HTTP %ld %s.", status, s3_error_code(code))));
	return NULL;
}

static const EvcStorageOps s3_ops = {s3_put, s3_close, s3_get, NULL, s3_put_many};

EvcStorage *
evc_storage_s3_open(const char *url)
{
	S3Storage  *s3 = palloc0(sizeof(S3Storage));
	const char *bucket = url + strlen("s3://");
	size_t		blen = strcspn(bucket, "/");
	char	   *prefix;
	size_t		plen;

	if (!curl_initialised)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not initialise libcurl")));
		curl_initialised = true;
	}

	s3->base.ops = &s3_ops;
	s3->base.url = pstrdup(url);
	s3->bucket = pnstrdup(bucket, blen);
	prefix = pstrdup(bucket + blen);
	while (*prefix == '/')
		prefix++;
	plen = strlen(prefix);
	while (plen > 0 && prefix[plen - 1] == '/')
		prefix[--plen] = '\0';
	s3->base.prefix = prefix;

	if (evc_s3_endpoint != NULL && evc_s3_endpoint[0] != '\0')
	{
		size_t		elen = strlen(evc_s3_endpoint);

		while (elen > 0 && evc_s3_endpoint[elen - 1] == '/')
			elen--;
		s3->base_url = psprintf("%.*s/%s", (int) elen, evc_s3_endpoint, s3->bucket);
	}
	else
		s3->base_url = psprintf("https://%s.s3.%s.amazonaws.com", s3->bucket, evc_s3_region);
	s3->sigv4 = psprintf("aws:amz:%s:s3", evc_s3_region);
	s3->userpwd = psprintf("%s:%s", evc_s3_access_key ? evc_s3_access_key : "",
						   evc_s3_secret_key ? evc_s3_secret_key : "");
	s3->curl = curl_easy_init();
	s3->multi = curl_multi_init();
	if (s3->curl == NULL || s3->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return &s3->base;
}
