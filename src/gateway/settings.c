/*
 * gateway/settings.c
 *		Owns the evcollector.gateway_* settings: their definitions, ranges
 *		and check hooks, and the parsing of the listen address.
 *
 * Settings that the library takes when the server is built (the address,
 * TLS, the header buffer) are PGC_SIGHUP like the rest: the worker compares
 * them after each reload and restarts itself when one changed, so nothing
 * needs a server restart.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>

#include "utils/guc.h"

#include "core/guc.h"
#include "gateway/gateway.h"
#include "gateway/gateway_int.h"
#include "gateway/live_server.h"
#include "registry/registry.h"

char	   *evc_gw_listen = NULL;
char	   *evc_gw_tls_cert = NULL;
char	   *evc_gw_tls_key = NULL;
bool		evc_gw_auth = true;
char	   *evc_gw_default_client = NULL;
int			evc_gw_max_body_kb = 1024;
int			evc_gw_max_header_bytes = 8192;
int			evc_gw_max_connections = 10000;
int			evc_gw_rate_limit = 0;
int			evc_gw_idle_timeout_s = 60;
int			evc_gw_read_timeout_s = 10;
bool		evc_gw_access_log = false;
int			evc_gw_batch_max = 1000;
int			evc_gw_group_max = 1000;

/*
 * "host:port", "[v6]:port" or ":port" (every interface).  host gets the
 * address without brackets, "" for every interface.
 */
bool
evc_gw_parse_listen(const char *listen, char *host, size_t hostlen, int *port,
					const char **why)
{
	const char *colon;
	const char *h = listen;
	size_t		hl;
	char	   *end;
	long		p;

	if (listen[0] == '[')
	{
		const char *close = strchr(listen, ']');

		if (close == NULL || close[1] != ':')
		{
			*why = "an IPv6 address must be written [address]:port";
			return false;
		}
		h = listen + 1;
		hl = close - h;
		colon = close + 1;
	}
	else
	{
		colon = strrchr(listen, ':');
		if (colon == NULL)
		{
			*why = "it has no \":port\"";
			return false;
		}
		hl = colon - listen;
	}
	if (hl >= hostlen)
	{
		*why = "the host is too long";
		return false;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535)
	{
		*why = "the port is not a number from 1 to 65535";
		return false;
	}
	*port = (int) p;
	return true;
}

/* 127.0.0.0/8, ::1 and "localhost" only: an unauthenticated gateway must
 * not be reachable from another machine. */
bool
evc_gw_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

static bool
check_listen(char **newval, void **extra, GucSource source)
{
	char		host[256];
	int			port;
	const char *why;

	if (*newval == NULL || **newval == '\0')
		return true;
	if (!evc_gw_parse_listen(*newval, host, sizeof(host), &port, &why))
	{
		GUC_check_errdetail("\"%s\" is not host:port: %s.", *newval, why);
		return false;
	}
	return true;
}

static bool
check_file_setting(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && **newval != '\0' && !is_absolute_path(*newval))
	{
		GUC_check_errdetail("The path must be absolute.");
		return false;
	}
	return true;
}

static bool
check_default_client(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL || **newval == '\0' || strlen(*newval) > EVC_NAME_MAX ||
		strchr(*newval, '.') != NULL)
	{
		GUC_check_errdetail("A client name has 1 to %d characters and no \".\".", EVC_NAME_MAX);
		return false;
	}
	if (!evc_valid_topic_fragment(*newval, &why))
	{
		GUC_check_errdetail("\"%s\" cannot be a client name: %s.", *newval, why);
		return false;
	}
	return true;
}

void
evc_gateway_define_gucs(void)
{
	DefineCustomStringVariable("evcollector.gateway_listen",
							   "Address (host:port) the HTTP gateway listens on; empty: no gateway.",
							   "For example 127.0.0.1:8080, [::1]:8080, or :8080 for every interface.",
							   &evc_gw_listen, "",
							   PGC_SIGHUP, 0, check_listen, NULL, NULL);
	DefineCustomStringVariable("evcollector.gateway_tls_cert",
							   "PEM certificate file of the gateway; with gateway_tls_key it serves HTTPS.",
							   NULL, &evc_gw_tls_cert, "",
							   PGC_SIGHUP, 0, check_file_setting, NULL, NULL);
	DefineCustomStringVariable("evcollector.gateway_tls_key",
							   "PEM private key file of the gateway.",
							   NULL, &evc_gw_tls_key, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, check_file_setting, NULL, NULL);
	DefineCustomBoolVariable("evcollector.gateway_auth",
							 "Whether the gateway requires a write key (off is refused unless it listens on loopback).",
							 NULL, &evc_gw_auth, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("evcollector.gateway_default_client",
							   "Client of a POST /store that names none (no key, no X-Evc-Client header).",
							   NULL, &evc_gw_default_client, "default",
							   PGC_SIGHUP, 0, check_default_client, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_max_body",
							"Largest request body the gateway accepts (413 above).",
							NULL, &evc_gw_max_body_kb, 1024, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_max_header",
							"Room for a request's headers, in bytes (431 above).",
							NULL, &evc_gw_max_header_bytes, 8192, 1024, 65535,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_max_connections",
							"Most connections the gateway holds open at once; more are refused.",
							NULL, &evc_gw_max_connections, 10000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_rate_limit",
							"Requests per second each client may make (429 above); 0: no limit.",
							NULL, &evc_gw_rate_limit, 0, 0, 10000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_idle_timeout",
							"How long a keep-alive connection may stay idle between requests.",
							NULL, &evc_gw_idle_timeout_s, 60, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_read_timeout",
							"How long a client may take to send a request's headers and body.",
							NULL, &evc_gw_read_timeout_s, 10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomBoolVariable("evcollector.gateway_access_log",
							 "Whether the gateway logs one line per request.",
							 NULL, &evc_gw_access_log, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_batch_max",
							"Most events one POST /v1/batch may carry (413 above).",
							NULL, &evc_gw_batch_max, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evcollector.gateway_group_max",
							"Most requests the gateway commits in one transaction.",
							NULL, &evc_gw_group_max, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	evc_live_define_gucs();
}
