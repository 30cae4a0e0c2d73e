/*
 * gateway/gateway.c
 *		Owns the gateway worker: its start-up, its one wait on sockets,
 *		latch, signals and postmaster death together, and its main loop
 *		(service the sockets, commit what arrived as one group, answer).
 *
 * libwebsockets owns the poll() here; Debian builds it without external
 * poll support, so the sockets cannot be added to a WaitEventSet.  The
 * other way round works: two descriptors of ours are adopted into its
 * poll (see README.md, "One wait"):
 *   - a signalfd for SIGURG, the signal SetLatch sends to a sleeping
 *     process.  The loop marks its latch maybe_sleeping before each poll,
 *     exactly as WaitEventSetWait does, so a SetLatch from any process
 *     sends SIGURG and the poll returns; our own signal handlers (SIGTERM,
 *     SIGHUP, SIGUSR1) raise SIGURG too.
 *   - the postmaster-death pipe, which becomes readable when the
 *     postmaster is gone.
 * Nothing polls on a timer: the only timer is the deferred statistics
 * flush evc_stats_report_idle asks for.
 */
#include "postgres.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/procsignal.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#include "core/stats.h"
#include "core/worker.h"
#include "gateway/gateway.h"
#include "gateway/gateway_int.h"
#include "gateway/server.h"
#include "gateway/live_server.h"

EvcWorkerSlot *evc_gw_slot = NULL;
static int	wake_fd = -1;
static volatile bool postmaster_gone = false;

/* The settings the server was built with; a reload that changes one
 * restarts the worker (the launcher starts it again at once). */
typedef struct GwBuiltWith
{
	char	   *listen;
	char	   *tls_cert;
	char	   *tls_key;
	int			max_header;
	int			idle_timeout;
	int			read_timeout;
	int			max_connections;
	bool		auth;
} GwBuiltWith;

static GwBuiltWith built;

/* Raise SIGURG for ourselves: blocked, so it only marks wake_fd readable. */
static void
wake_self(void)
{
	int			save_errno = errno;

	kill(MyProcPid, SIGURG);
	errno = save_errno;
}

static void
gw_sigterm(SIGNAL_ARGS)
{
	die(postgres_signal_arg);
	wake_self();
}

static void
gw_sighup(SIGNAL_ARGS)
{
	SignalHandlerForConfigReload(postgres_signal_arg);
	wake_self();
}

static void
gw_sigusr1(SIGNAL_ARGS)
{
	procsignal_sigusr1_handler(postgres_signal_arg);
	wake_self();
}

/*
 * SIGURG is already blocked where PostgreSQL takes latch wake-ups through a
 * signalfd of its own (Linux); block it anyway, so that it never runs a
 * handler and always waits in the signalfd.  Two signalfds on one signal
 * are fine: whichever reads first clears it, and the latch's is_set, not
 * the signal, is what the loop looks at.
 */
static void
wake_setup(void)
{
	sigset_t	mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGURG);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	wake_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (wake_fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create the gateway's signalfd: %m")));
	pqsignal(SIGTERM, gw_sigterm);
	pqsignal(SIGHUP, gw_sighup);
	pqsignal(SIGUSR1, gw_sigusr1);
}

#define WATCH_WAKE 1
#define WATCH_POSTMASTER 2

/*
 * Each connection is a descriptor: raise the soft limit (often 1024) to
 * what gateway_max_connections needs, up to the hard limit, as nginx's
 * worker_rlimit_nofile does.  Past the hard limit, say so once.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t		want = (rlim_t) evc_gw_max_connections + 128;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want) ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
		ereport(LOG,
				(errmsg("evcollector gateway can hold only about %ld connections",
						(long) rl.rlim_cur - 128),
				 errdetail("evcollector.gateway_max_connections is %d, and the open files limit is %ld.",
						   evc_gw_max_connections, (long) rl.rlim_cur),
				 errhint("Raise the server's hard limit of open files (LimitNOFILE, ulimit -Hn).")));
}

static void
on_watched_fd(int tag, int fd, bool closed)
{
	if (tag == WATCH_WAKE)
	{
		struct signalfd_siginfo si;

		while (read(fd, &si, sizeof(si)) == sizeof(si))
			;
	}
	else
		postmaster_gone = true;
}

static void
remember_settings(void)
{
	built.listen = MemoryContextStrdup(TopMemoryContext, evc_gw_listen);
	built.tls_cert = MemoryContextStrdup(TopMemoryContext, evc_gw_tls_cert);
	built.tls_key = MemoryContextStrdup(TopMemoryContext, evc_gw_tls_key);
	built.max_header = evc_gw_max_header_bytes;
	built.idle_timeout = evc_gw_idle_timeout_s;
	built.read_timeout = evc_gw_read_timeout_s;
	built.max_connections = evc_gw_max_connections;
	built.auth = evc_gw_auth;
}

static bool
settings_changed(void)
{
	return strcmp(built.listen, evc_gw_listen) != 0 ||
		strcmp(built.tls_cert, evc_gw_tls_cert) != 0 ||
		strcmp(built.tls_key, evc_gw_tls_key) != 0 ||
		built.max_header != evc_gw_max_header_bytes ||
		built.idle_timeout != evc_gw_idle_timeout_s ||
		built.read_timeout != evc_gw_read_timeout_s ||
		built.max_connections != evc_gw_max_connections ||
		built.auth != evc_gw_auth;
}

/*
 * Settings that cannot serve: say so once and wait for a reload that
 * fixes them, rather than exit and be restarted into the same error.
 */
static void
idle_until_reloaded(const char *why, const char *hint)
{
	ereport(LOG,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("evcollector gateway is not serving"),
			 errdetail("%s", why),
			 hint ? errhint("%s", hint) : 0));
	while (!settings_changed())
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		evc_worker_handle_interrupts();
	}
}

/* The requests that came in this round, in groups of gateway_group_max. */
static void
commit_incoming(void)
{
	dlist_head *incoming = evc_gw_server_incoming();

	while (!dlist_is_empty(incoming))
	{
		dlist_head	group;
		int			n = 0;

		dlist_init(&group);
		while (!dlist_is_empty(incoming) && n < evc_gw_group_max)
		{
			dlist_push_tail(&group, dlist_pop_head_node(incoming));
			n++;
		}
		evc_gw_run_group(&group);
		while (!dlist_is_empty(&group))
			evc_gw_server_answered(dlist_container(GwPending, node,
												   dlist_pop_head_node(&group)));
	}
}

static void
serve(void)
{
	for (;;)
	{
		long		flush_ms;

		/* As WaitEventSetWait does: from here, a SetLatch sends SIGURG. */
		MyLatch->maybe_sleeping = true;
		pg_memory_barrier();
		if (MyLatch->is_set || InterruptPending || ConfigReloadPending)
			evc_gw_server_cancel_wait();
		evc_gw_server_service();
		MyLatch->maybe_sleeping = false;

		if (postmaster_gone)
			proc_exit(1);
		ResetLatch(MyLatch);
		evc_worker_handle_interrupts();
		commit_incoming();
		evc_live_after_service();
		if (settings_changed())
		{
			ereport(LOG,
					(errmsg("evcollector gateway rebuilding its server to apply changed settings")));
			return;
		}

		flush_ms = evc_stats_report_idle(-1);
		if (flush_ms >= 0)
			evc_gw_server_wake_after(Max(flush_ms, 1));
	}
}

static void
gateway_on_exit(int code, Datum arg)
{
	evc_gw_server_stop();
}

/*
 * Check the settings and build the server; NULL when serving, else why not
 * (with a hint, or NULL).
 */
static char *
build_server(const char **hint)
{
	char		host[256];
	int			port;
	const char *why;
	char	   *start_why;

	*hint = NULL;
	if (!evc_gw_parse_listen(evc_gw_listen, host, sizeof(host), &port, &why))
		return psprintf("evcollector.gateway_listen \"%s\" is not host:port: %s.", evc_gw_listen, why);
	if (!evc_gw_auth && !evc_gw_host_is_loopback(host))
	{
		*hint = "Turn evcollector.gateway_auth on, or listen on 127.0.0.1 or [::1]; a gateway without keys is for demos on one machine.";
		return psprintf("evcollector.gateway_auth is off and evcollector.gateway_listen \"%s\" is not a loopback address.",
						evc_gw_listen);
	}
	if ((evc_gw_tls_cert[0] == '\0') != (evc_gw_tls_key[0] == '\0'))
	{
		*hint = "Set both to serve HTTPS, or neither to serve HTTP.";
		return pstrdup("Only one of evcollector.gateway_tls_cert and evcollector.gateway_tls_key is set.");
	}
	raise_fd_limit();
	if (!evc_gw_server_start(host, port, &start_why))
	{
		evc_gw_server_stop();
		return psprintf("The gateway could not serve on \"%s\": %s.", evc_gw_listen, start_why);
	}
	if (!evc_gw_server_watch_fd(wake_fd, WATCH_WAKE, on_watched_fd) ||
		!evc_gw_server_watch_fd(postmaster_alive_fds[POSTMASTER_FD_WATCH], WATCH_POSTMASTER, on_watched_fd))
	{
		evc_gw_server_stop();
		return pstrdup("Its wake-up descriptors could not be added to the server's poll.");
	}
	return NULL;
}

void
evc_gateway_main(Datum main_arg)
{
	evc_gw_slot = evc_worker_startup(EVC_WORKER_GATEWAY, "gateway");
	wake_setup();
	before_shmem_exit(gateway_on_exit, (Datum) 0);

	/* Serve until a reload changes what the server was built with; rebuild. */
	for (;;)
	{
		const char *hint;
		char	   *why;

		remember_settings();
		why = build_server(&hint);
		if (why != NULL)
		{
			idle_until_reloaded(why, hint);
			continue;
		}
		ereport(LOG,
				(errmsg("evcollector gateway listening on %s (%s)", evc_gw_listen,
						evc_gw_tls_cert[0] ? "HTTPS" : "HTTP")));
		serve();
		evc_gw_server_stop();
	}
}
