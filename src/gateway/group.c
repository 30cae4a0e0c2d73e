/*
 * gateway/group.c
 *		Owns the group commit: every request that arrived in one service
 *		round is authenticated, limited and dispatched inside one
 *		transaction, which then commits; only after the commit are the
 *		answers released.  A 2xx from a send route therefore means the
 *		event is in the outbox.
 *
 * Send routes check each event in a subtransaction of its own
 * (routes_send.c), so an invalid one gets its own answer and the others
 * go on.  An ERROR that escapes a handler, or a failed commit, fails the
 * whole group; the group is then run again one request per transaction,
 * so a request that breaks its group fails alone.  A request answered
 * 503 was not committed, and its client may retry it (with the same
 * message_id it is recognisably the same event).
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"

#include "core/shmem.h"
#include "core/stats.h"
#include "gateway/gateway_int.h"
#include "util/worker_xact.h"

/* The client a request counts against for the rate limit. */
static const char *
rate_client(const EvcHttpRequest *req)
{
	if (req->client != NULL)
		return req->client;
	if (req->client_header != NULL)
		return req->client_header;
	return evc_gw_default_client;
}

static void
dispatch_one(GwPending *p)
{
	EvcHttpRequest *req = &p->req;

	req->auth_off = !evc_gw_auth;
	if (req->auth_off)
	{
		req->role = EVC_GW_ROLE_ADMIN;
		req->client = NULL;
	}
	else if (!evc_gw_authenticate(p->authorization, req, &p->resp))
		return;
	if (!evc_gw_rate_allow(rate_client(req)))
	{
		evc_http_error(&p->resp, 429, "rate_limited",
					   "client \"%s\" sent more than evcollector.gateway_rate_limit (%d) requests in a second",
					   rate_client(req), evc_gw_rate_limit);
		return;
	}
	evc_http_dispatch(req, &p->resp);
}

static void
answer_all(dlist_head *group, int status, const char *code, const char *message)
{
	dlist_iter	it;

	dlist_foreach(it, group)
	{
		GwPending  *p = dlist_container(GwPending, node, it.cur);

		evc_http_error(&p->resp, status, code, "%s", message);
	}
}

/* Run the group in one transaction; false (answers unset) if it failed. */
static bool
run_in_one_transaction(dlist_head *group, ErrorData **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		dlist_iter	it;

		evc_worker_xact_begin("evcollector gateway: committing a group");
		dlist_foreach(it, group)
		{
			GwPending  *p = dlist_container(GwPending, node, it.cur);

			resetStringInfo(&p->resp.body);
			p->resp.status = 0;
			dispatch_one(p);
		}
		evc_worker_xact_end();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		*error = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		ok = false;
	}
	PG_END_TRY();
	evc_gw_keys_forget();
	return ok;
}

static void
log_group_error(ErrorData *e, int n)
{
	ereport(LOG,
			(errcode(e->sqlerrcode),
			 errmsg("evcollector gateway could not commit a group of %d requests: %s", n, e->message),
			 e->detail ? errdetail("%s", e->detail) : 0,
			 errhidestmt(true)));
}

void
evc_gw_run_group(dlist_head *group)
{
	ErrorData  *error = NULL;
	int			n = 0;
	dlist_iter	it;

	dlist_foreach(it, group)
		n++;
	if (RecoveryInProgress())
	{
		answer_all(group, 503, "not_accepting",
				   "the database is in recovery and accepts no events; retry against the primary");
		return;
	}
	if (run_in_one_transaction(group, &error))
	{
		/* A group is a batch; bytes in are the request bodies. */
		uint64		bytes = 0;

		dlist_foreach(it, group)
			bytes += dlist_container(GwPending, node, it.cur)->req.body_len;
		evc_stats_add(&evc_gw_slot->counters.batches, 1);
		evc_stats_add(&evc_gw_slot->counters.bytes_in, bytes);
		return;
	}
	log_group_error(error, n);
	if (n == 1)
	{
		answer_all(group, 503, "not_accepting", error->message);
		return;
	}
	/* One at a time: the request that broke the group fails alone. */
	{
		dlist_head	todo;

		dlist_init(&todo);
		while (!dlist_is_empty(group))
			dlist_push_tail(&todo, dlist_pop_head_node(group));
		while (!dlist_is_empty(&todo))
		{
			dlist_head	one;

			dlist_init(&one);
			dlist_push_tail(&one, dlist_pop_head_node(&todo));
			if (!run_in_one_transaction(&one, &error))
			{
				log_group_error(error, 1);
				answer_all(&one, 503, "not_accepting", error->message);
			}
			dlist_push_tail(group, dlist_pop_head_node(&one));
		}
	}
}
