/*
 * gateway/limits.c
 *		Owns the per-client request rate (evcollector.gateway_rate_limit):
 *		a token bucket per client, refilled at the rate and holding at
 *		most one second of it, so a client may burst to the rate and
 *		never beyond.
 *
 * The buckets live in the worker's memory: there is one gateway per
 * server, so nothing needs sharing.
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "gateway/gateway_int.h"
#include "registry/registry.h"

typedef struct RateBucket
{
	char		client[EVC_NAME_MAX + 1];	/* hash key */
	double		tokens;
	TimestampTz refilled_at;
} RateBucket;

static HTAB *buckets = NULL;

bool
evc_gw_rate_allow(const char *client)
{
	RateBucket *b;
	bool		found;
	char		key[EVC_NAME_MAX + 1];
	TimestampTz now;
	double		rate = evc_gw_rate_limit;

	if (evc_gw_rate_limit <= 0)
		return true;
	if (buckets == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(key);
		ctl.entrysize = sizeof(RateBucket);
		buckets = hash_create("evcollector gateway rate buckets", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, client, sizeof(key));
	b = hash_search(buckets, key, HASH_ENTER, &found);
	now = GetCurrentTimestamp();
	if (!found)
	{
		b->tokens = rate;
		b->refilled_at = now;
	}
	else
	{
		b->tokens = Min(rate, b->tokens + rate * (double) (now - b->refilled_at) / USECS_PER_SEC);
		b->refilled_at = now;
	}
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}
