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
 * A 5xx answer, a timeout or a refused connection is retried here a few
 * times with a short backoff, waiting on the latch; if the store is still
 * away the put fails with ERRCODE_CONNECTION_FAILURE and the consumer
 * retries the whole batch later with a longer backoff.  A 4xx answer (bad
 * credentials, no such bucket) fails at once with the server's error code
 * in the detail.  The secret key never appears in a message.
 *
 * libcurl is initialised here, in the worker that opens the store, never in
 * _PG_init: curl_global_init may start threads, and the postmaster must stay
 * single-threaded.  Callbacks run inside curl_easy_perform and only copy
 * bytes or read flags; they never call into PostgreSQL.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "core/guc.h"
#include "storage/storage.h"

#define S3_ATTEMPTS 4
#define S3_FIRST_BACKOFF_MS 250
#define S3_BODY_KEEP 1024

typedef struct S3Storage
{
	EvcStorage	base;
	CURL	   *curl;			/* reused, so connections are kept alive */
	char	   *bucket;
	char	   *base_url;		/* up to the bucket, no trailing slash */
	char	   *sigv4;			/* "aws:amz:<region>:s3" */
	char	   *userpwd;		/* access:secret; never logged */
} S3Storage;

static bool curl_initialised = false;

/* Response body, kept for error messages only. */
typedef struct S3Body
{
	size_t		len;
	char		data[S3_BODY_KEEP + 1];
} S3Body;

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

/* One attempt.  Returns the HTTP status, or 0 with *cerr set. */
static long
s3_put_once(S3Storage *s3, const char *url, const char *data, size_t len,
			struct curl_slist *headers, S3Body *body, CURLcode *cerr)
{
	CURL	   *c = s3->curl;
	long		status = 0;

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
	*cerr = curl_easy_perform(c);
	if (*cerr == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

static void
s3_put(EvcStorage *st, const char *key, const char *data, size_t len,
	   const char *content_type, const char *sha256_hex)
{
	S3Storage  *s3 = (S3Storage *) st;
	char	   *full = evc_storage_full_key(st, key);
	char	   *url = psprintf("%s/%s", s3->base_url, s3_encode_key(full));
	struct curl_slist *headers = NULL;
	S3Body		body;
	CURLcode	cerr = CURLE_OK;
	long		status = 0;
	int			backoff = S3_FIRST_BACKOFF_MS;
	char	   *h;

	h = psprintf("x-amz-content-sha256: %s", sha256_hex);
	headers = curl_slist_append(headers, h);
	h = psprintf("Content-Type: %s", content_type);
	headers = curl_slist_append(headers, h);

	/*
	 * No "Expect:" line to turn off 100-continue: libcurl 7.88 signs every
	 * header of the list, the empty one too, but does not send it, so a
	 * server that checks signatures (MinIO, AWS) refuses the request with
	 * SignatureDoesNotMatch.  A large body waits for "100 Continue" instead,
	 * one round trip.
	 */

	for (int attempt = 1; attempt <= S3_ATTEMPTS; attempt++)
	{
		status = s3_put_once(s3, url, data, len, headers, &body, &cerr);
		if (cerr == CURLE_ABORTED_BY_CALLBACK)
		{
			CHECK_FOR_INTERRUPTS();
			break;
		}
		if (cerr == CURLE_OK && status >= 200 && status < 300)
		{
			curl_slist_free_all(headers);
			return;
		}
		if (cerr == CURLE_OK && status < 500)
			break;				/* a 4xx: retrying will not help */
		if (attempt == S3_ATTEMPTS)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 backoff, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		backoff *= 2;
	}
	curl_slist_free_all(headers);

	if (cerr != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not store object \"%s\" in bucket \"%s\"", full, s3->bucket),
				 errdetail("libcurl: %s.", curl_easy_strerror(cerr)),
				 errhint("Check that the S3 server at evcollector.s3_endpoint is up; the consumer retries.")));
	if (status >= 500)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not store object \"%s\" in bucket \"%s\"", full, s3->bucket),
				 errdetail("The S3 server answered HTTP %ld %s after %d attempts.",
						   status, s3_error_code(body.data), S3_ATTEMPTS)));
	ereport(ERROR,
			(errcode(s3_errcode_for_status(status)),
			 errmsg("S3 server refused object \"%s\" in bucket \"%s\"", full, s3->bucket),
			 errdetail("HTTP %ld %s.", status, s3_error_code(body.data)),
			 errhint("Check evcollector.s3_access_key, evcollector.s3_secret_key, evcollector.s3_region and that the bucket exists.")));
}

static void
s3_close(EvcStorage *st)
{
	S3Storage  *s3 = (S3Storage *) st;

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

static const EvcStorageOps s3_ops = {s3_put, s3_close, s3_get, NULL};

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
	if (s3->curl == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return &s3->base;
}
