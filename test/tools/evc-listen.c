/*
 * evc-listen.c
 *		Test helper: LISTEN on channels and print each notification with the
 *		time it arrived, as a websocket server would receive them.
 *
 * Usage: evc-listen -d CONNINFO -c CHANNEL [-c CHANNEL ...] [-n COUNT] [-t SECONDS]
 *
 * Prints "listening" once every LISTEN is in force, then one line per
 * notification: <epoch milliseconds> TAB <channel> TAB <payload>.  Exits 0
 * after COUNT notifications (default: never) or when SECONDS pass (default
 * 60); exits 1 if the connection fails.  It waits in select() on the
 * connection's socket, so a notification is printed the moment it arrives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <unistd.h>

#include <libpq-fe.h>

static long long
now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int
main(int argc, char **argv)
{
	const char *conninfo = NULL;
	const char *channels[16];
	int			nchannels = 0;
	long		want = -1;
	long		seconds = 60;
	long		got = 0;
	long long	deadline;
	PGconn	   *conn;
	int			opt;

	while ((opt = getopt(argc, argv, "d:c:n:t:")) != -1)
	{
		switch (opt)
		{
			case 'd': conninfo = optarg; break;
			case 'c':
				if (nchannels < 16)
					channels[nchannels++] = optarg;
				break;
			case 'n': want = atol(optarg); break;
			case 't': seconds = atol(optarg); break;
			default:
				fprintf(stderr, "usage: evc-listen -d CONNINFO -c CHANNEL [-n COUNT] [-t SECONDS]\n");
				return 2;
		}
	}
	if (conninfo == NULL || nchannels == 0)
	{
		fprintf(stderr, "evc-listen: -d and -c are required\n");
		return 2;
	}
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "evc-listen: %s", PQerrorMessage(conn));
		return 1;
	}
	for (int i = 0; i < nchannels; i++)
	{
		char	   *ident = PQescapeIdentifier(conn, channels[i], strlen(channels[i]));
		char		sql[256];
		PGresult   *res;

		snprintf(sql, sizeof(sql), "LISTEN %s", ident);
		PQfreemem(ident);
		res = PQexec(conn, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			fprintf(stderr, "evc-listen: %s", PQerrorMessage(conn));
			return 1;
		}
		PQclear(res);
	}
	printf("listening\n");
	fflush(stdout);

	deadline = now_ms() + seconds * 1000;
	while (want < 0 || got < want)
	{
		int			sock = PQsocket(conn);
		fd_set		fds;
		struct timeval tv;
		long long	left = deadline - now_ms();
		PGnotify   *n;

		if (left <= 0)
			break;
		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		tv.tv_sec = left / 1000;
		tv.tv_usec = (left % 1000) * 1000;
		if (select(sock + 1, &fds, NULL, NULL, &tv) < 0)
			break;
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "evc-listen: %s", PQerrorMessage(conn));
			return 1;
		}
		while ((n = PQnotifies(conn)) != NULL)
		{
			printf("%lld\t%s\t%s\n", now_ms(), n->relname, n->extra);
			fflush(stdout);
			PQfreemem(n);
			got++;
		}
	}
	PQfinish(conn);
	return 0;
}
