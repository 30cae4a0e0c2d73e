/*-------------------------------------------------------------------------
 *
 * kafka_mock.c
 *	  Test Kafka cluster for evcollector, hosted on librdkafka's mock cluster.
 *
 * This file owns the test Kafka peer: it starts an in-process mock Kafka
 * cluster (rdkafka_mock.h) whose brokers listen on 127.0.0.1, publishes
 * the bootstrap servers and the control address, and serves a line-based
 * fault-injection protocol on stdin and on a loopback TCP control port.
 * Every command gets exactly one reply line: "ok", "ok <data>" or
 * "error: <reason>".  test/kafkactl is the matching shell client.
 *
 * Commands: ping, help, bootstrap, create_topic NAME PARTITIONS [REPL],
 * broker_down ID, broker_up ID, rtt ID MS, push_errors APIKEY CNT ERR...,
 * clear_errors APIKEY, partition_leader TOPIC PARTITION BROKER, quit.
 * APIKEY is a number or a request name ("produce", "offset_commit");
 * ERR is a number or an error name with or without RD_KAFKA_RESP_ERR_.
 * push_errors takes one ERR (repeated CNT times) or exactly CNT of them;
 * the errors are answered to the next matching requests on any broker.
 *
 * Limits of the librdkafka 2.0.2 mock seen through this program: no
 * CreateTopics (topics are pre-created or auto-created with 4 partitions,
 * which cannot be changed); a downed broker refuses connections but stays
 * leader in metadata; partition_leader on an unknown topic creates it;
 * nothing persists and partitions keep only a few MB.
 *
 * Build:
 *	  gcc -O2 -Wall -Wextra -Werror -o .build/bin/kafka_mock test/tools/kafka_mock.c \
 *		  -lrdkafka -lpthread
 *
 * Exit status: 0 on quit, SIGTERM or SIGINT; 2 on a usage or start-up
 * error.  Shutdown destroys the mock cluster and the rd_kafka_t handle,
 * bounded by SHUTDOWN_GRACE_MS: librdkafka 2.0.2 sometimes parks for one
 * second while joining the mock cluster's idle internal broker thread
 * (a wake-up race in its broker teardown).  All listeners and connections
 * are already closed by then, so when the grace period expires we simply
 * _exit(0).
 *
 * IDENTIFICATION
 *	  test/tools/kafka_mock.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_CLIENTS			32
#define MAX_LINE			4096
#define MAX_ARGS			64
#define MAX_TOPICS			64
#define REPLY_SIZE			1024
#define SHUTDOWN_GRACE_MS	300
#define MOCK_DEFAULT_PARTS	4	/* auto-create default of the 2.0.2 mock */

/* One connected control client, or stdin (fd 0). */
typedef struct Conn
{
	int			fd;				/* -1 when the slot is free */
	int			outfd;			/* where replies go */
	size_t		len;			/* bytes buffered in buf */
	char		buf[MAX_LINE];
} Conn;

typedef struct Options
{
	int			brokers;
	int			control_port;
	int			default_partitions;
	bool		verbose;
	const char *info_file;
	int			ntopics;
	const char *topics[MAX_TOPICS];
} Options;

typedef void (*CmdFunc) (int argc, char **argv, char *reply);

typedef struct Command
{
	const char *name;
	int			min_args;		/* not counting the command name */
	int			max_args;		/* -1 = unlimited */
	CmdFunc		func;
	const char *usage;
} Command;

typedef struct ApiKeyName
{
	int			key;
	const char *name;
} ApiKeyName;

static rd_kafka_t *rk;
static rd_kafka_mock_cluster_t *mcluster;
static int	broker_count;
static int	signal_pipe[2] = {-1, -1};
static bool want_quit;
static bool verbose;
static Conn conns[MAX_CLIENTS + 1];	/* slot 0 is stdin */

/* Kafka protocol API keys, names compared ignoring case and underscores. */
static const ApiKeyName api_keys[] = {
	{0, "Produce"}, {1, "Fetch"}, {2, "ListOffsets"}, {3, "Metadata"},
	{4, "LeaderAndIsr"}, {5, "StopReplica"}, {6, "UpdateMetadata"},
	{7, "ControlledShutdown"}, {8, "OffsetCommit"}, {9, "OffsetFetch"},
	{10, "FindCoordinator"}, {11, "JoinGroup"}, {12, "Heartbeat"},
	{13, "LeaveGroup"}, {14, "SyncGroup"}, {15, "DescribeGroups"},
	{16, "ListGroups"}, {17, "SaslHandshake"}, {18, "ApiVersions"},
	{19, "CreateTopics"}, {20, "DeleteTopics"}, {21, "DeleteRecords"},
	{22, "InitProducerId"}, {23, "OffsetForLeaderEpoch"},
	{24, "AddPartitionsToTxn"}, {25, "AddOffsetsToTxn"}, {26, "EndTxn"},
	{27, "WriteTxnMarkers"}, {28, "TxnOffsetCommit"}, {29, "DescribeAcls"},
	{30, "CreateAcls"}, {31, "DeleteAcls"}, {32, "DescribeConfigs"},
	{33, "AlterConfigs"}, {36, "SaslAuthenticate"},
	{37, "CreatePartitions"}, {42, "DeleteGroups"}, {43, "ElectLeaders"},
	{44, "IncrementalAlterConfigs"}, {47, "OffsetDelete"},
};

static void cmd_ping(int argc, char **argv, char *reply);
static void cmd_help(int argc, char **argv, char *reply);
static void cmd_bootstrap(int argc, char **argv, char *reply);
static void cmd_create_topic(int argc, char **argv, char *reply);
static void cmd_broker_down(int argc, char **argv, char *reply);
static void cmd_broker_up(int argc, char **argv, char *reply);
static void cmd_rtt(int argc, char **argv, char *reply);
static void cmd_push_errors(int argc, char **argv, char *reply);
static void cmd_clear_errors(int argc, char **argv, char *reply);
static void cmd_partition_leader(int argc, char **argv, char *reply);
static void cmd_quit(int argc, char **argv, char *reply);

static const Command commands[] = {
	{"ping", 0, 0, cmd_ping, "ping"},
	{"help", 0, 0, cmd_help, "help"},
	{"bootstrap", 0, 0, cmd_bootstrap, "bootstrap"},
	{"create_topic", 2, 3, cmd_create_topic,
	"create_topic NAME PARTITIONS [REPLICATION]"},
	{"broker_down", 1, 1, cmd_broker_down, "broker_down ID"},
	{"broker_up", 1, 1, cmd_broker_up, "broker_up ID"},
	{"rtt", 2, 2, cmd_rtt, "rtt ID MS"},
	{"push_errors", 3, -1, cmd_push_errors, "push_errors APIKEY CNT ERR..."},
	{"clear_errors", 1, 1, cmd_clear_errors, "clear_errors APIKEY"},
	{"partition_leader", 3, 3, cmd_partition_leader,
	"partition_leader TOPIC PARTITION BROKER"},
	{"quit", 0, 0, cmd_quit, "quit"},
};

#define lengthof(array) (sizeof(array) / sizeof((array)[0]))


/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "kafka_mock: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void
set_reply(char *reply, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(reply, REPLY_SIZE, fmt, ap);
	va_end(ap);
}

/* Reply "ok" or "error: <librdkafka reason>" for a mock API result. */
static void
reply_for_err(char *reply, rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		set_reply(reply, "ok");
	else
		set_reply(reply, "error: %s: %s",
				  rd_kafka_err2name(err), rd_kafka_err2str(err));
}

/* Parse a whole decimal string into [min, max]; false if it is not one. */
static bool
parse_int(const char *s, long min, long max, long *out)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Compare two names ignoring case and underscores. */
static bool
name_matches(const char *a, const char *b)
{
	for (;;)
	{
		while (*a == '_')
			a++;
		while (*b == '_')
			b++;
		if (tolower((unsigned char) *a) != tolower((unsigned char) *b))
			return false;
		if (*a == '\0')
			return true;
		a++;
		b++;
	}
}

/* APIKEY: a number or a protocol request name such as "produce". */
static bool
parse_api_key(const char *s, int16_t *out)
{
	long		v;
	size_t		i;

	if (parse_int(s, 0, INT16_MAX, &v))
	{
		*out = (int16_t) v;
		return true;
	}
	for (i = 0; i < lengthof(api_keys); i++)
	{
		if (name_matches(s, api_keys[i].name))
		{
			*out = (int16_t) api_keys[i].key;
			return true;
		}
	}
	return false;
}

/* ERR: a number or an error name, with or without RD_KAFKA_RESP_ERR_. */
static bool
parse_error(const char *s, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *descs;
	size_t		ndescs;
	size_t		i;
	long		v;
	const char *prefix = "RD_KAFKA_RESP_ERR_";

	if (parse_int(s, INT16_MIN, INT16_MAX, &v))
	{
		*out = (rd_kafka_resp_err_t) v;
		return true;
	}
	if (strncasecmp(s, prefix, strlen(prefix)) == 0)
		s += strlen(prefix);
	rd_kafka_get_err_descs(&descs, &ndescs);
	for (i = 0; i < ndescs; i++)
	{
		if (descs[i].name != NULL && strcasecmp(s, descs[i].name) == 0)
		{
			*out = descs[i].code;
			return true;
		}
	}
	return false;
}

static bool
parse_broker_id(const char *s, int32_t *out, char *reply)
{
	long		v;

	if (!parse_int(s, 1, broker_count, &v))
	{
		set_reply(reply, "error: broker id must be 1..%d, not \"%s\"",
				  broker_count, s);
		return false;
	}
	*out = (int32_t) v;
	return true;
}


/* ---------------------------------------------------------------------
 * Commands
 * ---------------------------------------------------------------------
 */

static void
cmd_ping(int argc, char **argv, char *reply)
{
	(void) argc;
	(void) argv;
	set_reply(reply, "ok pong");
}

static void
cmd_help(int argc, char **argv, char *reply)
{
	size_t		i;
	size_t		off;

	(void) argc;
	(void) argv;
	off = snprintf(reply, REPLY_SIZE, "ok");
	for (i = 0; i < lengthof(commands) && off < REPLY_SIZE; i++)
		off += snprintf(reply + off, REPLY_SIZE - off, "%s%s",
						i == 0 ? " " : " | ", commands[i].usage);
}

static void
cmd_bootstrap(int argc, char **argv, char *reply)
{
	(void) argc;
	(void) argv;
	set_reply(reply, "ok %s", rd_kafka_mock_cluster_bootstraps(mcluster));
}

/* Create a topic; shared by the command and by --topic. */
static rd_kafka_resp_err_t
create_topic(const char *name, int partitions, int replication)
{
	return rd_kafka_mock_topic_create(mcluster, name, partitions, replication);
}

static void
cmd_create_topic(int argc, char **argv, char *reply)
{
	long		parts;
	long		repl = broker_count < 3 ? broker_count : 3;

	if (!parse_int(argv[2], 1, 100000, &parts))
	{
		set_reply(reply, "error: invalid partition count \"%s\"", argv[2]);
		return;
	}
	if (argc > 3 && !parse_int(argv[3], 1, broker_count, &repl))
	{
		set_reply(reply, "error: replication must be 1..%d, not \"%s\"",
				  broker_count, argv[3]);
		return;
	}
	reply_for_err(reply, create_topic(argv[1], (int) parts, (int) repl));
}

static void
cmd_broker_down(int argc, char **argv, char *reply)
{
	int32_t		id;

	(void) argc;
	if (parse_broker_id(argv[1], &id, reply))
		reply_for_err(reply, rd_kafka_mock_broker_set_down(mcluster, id));
}

static void
cmd_broker_up(int argc, char **argv, char *reply)
{
	int32_t		id;

	(void) argc;
	if (parse_broker_id(argv[1], &id, reply))
		reply_for_err(reply, rd_kafka_mock_broker_set_up(mcluster, id));
}

static void
cmd_rtt(int argc, char **argv, char *reply)
{
	int32_t		id;
	long		ms;

	(void) argc;
	if (!parse_broker_id(argv[1], &id, reply))
		return;
	if (!parse_int(argv[2], 0, INT_MAX, &ms))
	{
		set_reply(reply, "error: invalid rtt \"%s\"", argv[2]);
		return;
	}
	reply_for_err(reply, rd_kafka_mock_broker_set_rtt(mcluster, id, (int) ms));
}

/*
 * push_errors APIKEY CNT ERR...: either one ERR (repeated CNT times) or
 * exactly CNT of them, returned in order to the next CNT requests.
 */
static void
cmd_push_errors(int argc, char **argv, char *reply)
{
	int16_t		apikey;
	long		cnt;
	int			nerr = argc - 3;
	rd_kafka_resp_err_t errs[MAX_ARGS * 16];
	long		i;

	if (!parse_api_key(argv[1], &apikey))
	{
		set_reply(reply, "error: unknown api key \"%s\"", argv[1]);
		return;
	}
	if (!parse_int(argv[2], 1, (long) lengthof(errs), &cnt))
	{
		set_reply(reply, "error: count must be 1..%d, not \"%s\"",
				  (int) lengthof(errs), argv[2]);
		return;
	}
	if (nerr != 1 && nerr != cnt)
	{
		set_reply(reply, "error: give 1 or %ld error codes, not %d", cnt, nerr);
		return;
	}
	for (i = 0; i < cnt; i++)
	{
		const char *name = argv[3 + (nerr == 1 ? 0 : i)];

		if (!parse_error(name, &errs[i]))
		{
			set_reply(reply, "error: unknown error code \"%s\"", name);
			return;
		}
	}
	rd_kafka_mock_push_request_errors_array(mcluster, apikey, (size_t) cnt,
											errs);
	set_reply(reply, "ok");
}

static void
cmd_clear_errors(int argc, char **argv, char *reply)
{
	int16_t		apikey;

	(void) argc;
	if (!parse_api_key(argv[1], &apikey))
	{
		set_reply(reply, "error: unknown api key \"%s\"", argv[1]);
		return;
	}
	rd_kafka_mock_clear_request_errors(mcluster, apikey);
	set_reply(reply, "ok");
}

static void
cmd_partition_leader(int argc, char **argv, char *reply)
{
	long		part;
	int32_t		id;

	(void) argc;
	if (!parse_int(argv[2], 0, INT32_MAX, &part))
	{
		set_reply(reply, "error: invalid partition \"%s\"", argv[2]);
		return;
	}
	if (!parse_broker_id(argv[3], &id, reply))
		return;
	reply_for_err(reply,
				  rd_kafka_mock_partition_set_leader(mcluster, argv[1],
													 (int32_t) part, id));
}

static void
cmd_quit(int argc, char **argv, char *reply)
{
	(void) argc;
	(void) argv;
	want_quit = true;
	set_reply(reply, "ok");
}


/* ---------------------------------------------------------------------
 * Protocol: split a line, dispatch it, write one reply line
 * ---------------------------------------------------------------------
 */

/* Split line into argv; returns the count, or -1 if there are too many. */
static int
split_line(char *line, char **argv)
{
	int			argc = 0;
	char	   *save = NULL;
	char	   *tok;

	for (tok = strtok_r(line, " \t\r", &save);
		 tok != NULL;
		 tok = strtok_r(NULL, " \t\r", &save))
	{
		if (argc == MAX_ARGS)
			return -1;
		argv[argc++] = tok;
	}
	return argc;
}

static void
dispatch(int argc, char **argv, char *reply)
{
	size_t		i;

	for (i = 0; i < lengthof(commands); i++)
	{
		const Command *c = &commands[i];

		if (strcmp(argv[0], c->name) != 0)
			continue;
		if (argc - 1 < c->min_args ||
			(c->max_args >= 0 && argc - 1 > c->max_args))
			set_reply(reply, "error: usage: %s", c->usage);
		else
			c->func(argc, argv, reply);
		return;
	}
	set_reply(reply, "error: unknown command \"%s\"", argv[0]);
}

/* Write all of buf; errors (e.g. a vanished client) are ignored. */
static void
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t) n;
	}
}

static void
handle_line(Conn *conn, char *line)
{
	char	   *argv[MAX_ARGS];
	char		reply[REPLY_SIZE + 1];
	int			argc = split_line(line, argv);
	char	   *nl;

	if (argc == 0)
		return;
	if (argc < 0)
		set_reply(reply, "error: more than %d words", MAX_ARGS);
	else
		dispatch(argc, argv, reply);
	while ((nl = strpbrk(reply, "\r\n")) != NULL)
		*nl = ' ';
	strcat(reply, "\n");
	write_all(conn->outfd, reply, strlen(reply));
}


/* ---------------------------------------------------------------------
 * Connections: stdin and control clients
 * ---------------------------------------------------------------------
 */

static void
conn_close(Conn *conn)
{
	if (conn->fd > STDIN_FILENO)
		close(conn->fd);
	conn->fd = -1;
	conn->len = 0;
}

/* Consume complete lines from conn->buf. */
static void
conn_process(Conn *conn)
{
	char	   *start = conn->buf;
	char	   *nl;

	while (!want_quit &&
		   (nl = memchr(start, '\n', conn->len - (start - conn->buf))) != NULL)
	{
		*nl = '\0';
		handle_line(conn, start);
		start = nl + 1;
	}
	conn->len -= start - conn->buf;
	memmove(conn->buf, start, conn->len);
}

/* Read from a connection; on EOF handle a final unterminated line. */
static void
conn_read(Conn *conn)
{
	ssize_t		n;

	if (conn->len == sizeof(conn->buf) - 1)
	{
		const char *msg = "error: line too long\n";

		write_all(conn->outfd, msg, strlen(msg));
		conn->len = 0;
	}
	n = read(conn->fd, conn->buf + conn->len, sizeof(conn->buf) - 1 - conn->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
	{
		if (conn->len > 0 && !want_quit)
		{
			conn->buf[conn->len] = '\0';
			handle_line(conn, conn->buf);
		}
		conn_close(conn);
		return;
	}
	conn->len += (size_t) n;
	conn_process(conn);
}

static void
accept_client(int listen_fd)
{
	int			fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	int			i;

	if (fd < 0)
		return;
	for (i = 1; i <= MAX_CLIENTS; i++)
	{
		if (conns[i].fd < 0)
		{
			conns[i].fd = fd;
			conns[i].outfd = fd;
			conns[i].len = 0;
			return;
		}
	}
	write_all(fd, "error: too many clients\n", 24);
	close(fd);
}


/* ---------------------------------------------------------------------
 * Signals and shutdown
 * ---------------------------------------------------------------------
 */

static void
handle_term(int signo)
{
	int			save_errno = errno;
	char		c = (char) signo;

	if (write(signal_pipe[1], &c, 1) < 0)
	{
		/* pipe full: a wake-up is already pending */
	}
	errno = save_errno;
}

/* Shutdown grace period expired: everything visible is closed; leave. */
static void
handle_alarm(int signo)
{
	static const char msg[] =
		"kafka_mock: shutdown grace period expired, exiting\n";

	(void) signo;
	if (verbose && write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
	{
		/* nothing more we can do */
	}
	_exit(0);
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		die("pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = handle_term;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = handle_alarm;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static void
shutdown_and_exit(int listen_fd)
{
	struct itimerval grace;
	int			i;

	for (i = 1; i <= MAX_CLIENTS; i++)
		if (conns[i].fd >= 0)
			conn_close(&conns[i]);
	close(listen_fd);
	fflush(stdout);

	memset(&grace, 0, sizeof(grace));
	grace.it_value.tv_sec = SHUTDOWN_GRACE_MS / 1000;
	grace.it_value.tv_usec = (SHUTDOWN_GRACE_MS % 1000) * 1000;
	setitimer(ITIMER_REAL, &grace, NULL);

	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(rk);
	exit(0);
}


/* ---------------------------------------------------------------------
 * Start-up
 * ---------------------------------------------------------------------
 */

static void
log_cb(const rd_kafka_t *r, int level, const char *fac, const char *buf)
{
	(void) r;
	fprintf(stderr, "kafka_mock: rdkafka %d %s: %s\n", level, fac, buf);
}

static void
conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
		RD_KAFKA_CONF_OK)
		die("config %s=%s: %s", name, value, errstr);
}

/* The producer handle exists only to host the mock cluster. */
static void
start_cluster(const Options *opt)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];

	rd_kafka_conf_set_log_cb(conf, log_cb);
	conf_set(conf, "log_level", opt->verbose ? "7" : "3");
	if (opt->verbose)
		conf_set(conf, "debug", "mock,broker,protocol");
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		die("rd_kafka_new: %s", errstr);
	mcluster = rd_kafka_mock_cluster_new(rk, opt->brokers);
	if (mcluster == NULL)
		die("rd_kafka_mock_cluster_new failed");
	broker_count = opt->brokers;
}

/* --topic NAME:PARTITIONS */
static void
create_initial_topic(const char *spec)
{
	const char *colon = strrchr(spec, ':');
	char		name[256];
	long		parts;
	rd_kafka_resp_err_t err;

	if (colon == NULL || colon == spec || (size_t) (colon - spec) >= sizeof(name) ||
		!parse_int(colon + 1, 1, 100000, &parts))
		die("--topic wants NAME:PARTITIONS, not \"%s\"", spec);
	memcpy(name, spec, colon - spec);
	name[colon - spec] = '\0';
	err = create_topic(name, (int) parts, broker_count < 3 ? broker_count : 3);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		die("creating topic %s: %s", name, rd_kafka_err2str(err));
}

static int
open_control(int port)
{
	struct sockaddr_in addr;
	int			fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int			one = 1;

	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons((uint16_t) port);
	if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
		die("bind 127.0.0.1:%d: %s", port, strerror(errno));
	if (listen(fd, 16) != 0)
		die("listen: %s", strerror(errno));
	return fd;
}

static int
bound_port(int fd)
{
	struct sockaddr_in addr;
	socklen_t	len = sizeof(addr);

	if (getsockname(fd, (struct sockaddr *) &addr, &len) != 0)
		die("getsockname: %s", strerror(errno));
	return ntohs(addr.sin_port);
}

/* Write the info file next to its final name, then rename it into place. */
static void
write_info_file(const char *path, const char *bootstrap, int port)
{
	char		tmp[PATH_MAX];
	FILE	   *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int) getpid()) >=
		(int) sizeof(tmp))
		die("--info-file path too long");
	f = fopen(tmp, "w");
	if (f == NULL)
		die("cannot write %s: %s", tmp, strerror(errno));
	fprintf(f, "bootstrap=%s\ncontrol=127.0.0.1:%d\n", bootstrap, port);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
		die("cannot write %s: %s", tmp, strerror(errno));
	if (rename(tmp, path) != 0)
		die("cannot rename %s to %s: %s", tmp, path, strerror(errno));
}

/*
 * If we were started with fd 0, 1 or 2 closed, park /dev/null there so
 * that sockets opened later cannot be mistaken for stdin or stdout.
 */
static void
ensure_std_fds(void)
{
	int			fd;

	for (fd = 0; fd <= 2; fd++)
	{
		if (fcntl(fd, F_GETFD) == -1 &&
			open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
			exit(2);
	}
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: kafka_mock [--brokers N] [--control-port P] "
			"[--info-file PATH]\n"
			"                  [--topic NAME:PARTITIONS]... "
			"[--default-partitions N] [--verbose]\n");
	exit(2);
}

static long
int_arg(const char *opt, const char *val, long min, long max)
{
	long		v;

	if (val == NULL || !parse_int(val, min, max, &v))
		die("%s wants an integer in %ld..%ld", opt, min, max);
	return v;
}

static void
parse_options(int argc, char **argv, Options *opt)
{
	int			i;

	memset(opt, 0, sizeof(*opt));
	opt->brokers = 3;
	opt->default_partitions = MOCK_DEFAULT_PARTS;
	for (i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--verbose") == 0)
		{
			opt->verbose = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || v == NULL)
			usage();
		else if (strcmp(a, "--brokers") == 0)
			opt->brokers = (int) int_arg(a, v, 1, 64);
		else if (strcmp(a, "--control-port") == 0)
			opt->control_port = (int) int_arg(a, v, 0, 65535);
		else if (strcmp(a, "--default-partitions") == 0)
			opt->default_partitions = (int) int_arg(a, v, 1, 100000);
		else if (strcmp(a, "--info-file") == 0)
			opt->info_file = v;
		else if (strcmp(a, "--topic") == 0 && opt->ntopics < MAX_TOPICS)
			opt->topics[opt->ntopics++] = v;
		else
			usage();
		i++;
	}

	/*
	 * The 2.0.2 mock API has no setter for the auto-create partition count
	 * (fixed at 4), so only that value is accepted.
	 */
	if (opt->default_partitions != MOCK_DEFAULT_PARTS)
		die("--default-partitions: librdkafka's mock cluster auto-creates "
			"topics with %d partitions and cannot be changed; "
			"pre-create topics with --topic NAME:PARTITIONS",
			MOCK_DEFAULT_PARTS);
}


/* ---------------------------------------------------------------------
 * Main loop
 * ---------------------------------------------------------------------
 */

static void
serve(int listen_fd)
{
	struct pollfd pfds[MAX_CLIENTS + 3];
	int			owner[MAX_CLIENTS + 3];

	while (!want_quit)
	{
		int			n = 0;
		int			i;

		pfds[n].fd = signal_pipe[0];
		pfds[n].events = POLLIN;
		owner[n++] = -1;
		pfds[n].fd = listen_fd;
		pfds[n].events = POLLIN;
		owner[n++] = -2;
		for (i = 0; i <= MAX_CLIENTS; i++)
		{
			if (conns[i].fd < 0)
				continue;
			pfds[n].fd = conns[i].fd;
			pfds[n].events = POLLIN;
			owner[n++] = i;
		}

		if (poll(pfds, n, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pfds[0].revents)
			return;
		if (pfds[1].revents & POLLIN)
			accept_client(listen_fd);
		for (i = 2; i < n && !want_quit; i++)
			if (pfds[i].revents)
				conn_read(&conns[owner[i]]);
	}
}

int
main(int argc, char **argv)
{
	Options		opt;
	int			listen_fd;
	int			port;
	const char *bootstrap;
	int			i;

	ensure_std_fds();
	parse_options(argc, argv, &opt);
	setup_signals();
	verbose = opt.verbose;
	listen_fd = open_control(opt.control_port);
	port = bound_port(listen_fd);
	start_cluster(&opt);
	for (i = 0; i < opt.ntopics; i++)
		create_initial_topic(opt.topics[i]);

	bootstrap = rd_kafka_mock_cluster_bootstraps(mcluster);
	if (opt.info_file != NULL)
		write_info_file(opt.info_file, bootstrap, port);
	printf("bootstrap=%s\ncontrol=127.0.0.1:%d\n", bootstrap, port);
	fflush(stdout);

	for (i = 0; i <= MAX_CLIENTS; i++)
		conns[i].fd = -1;
	conns[0].fd = STDIN_FILENO;
	conns[0].outfd = STDOUT_FILENO;

	serve(listen_fd);
	shutdown_and_exit(listen_fd);
	return 0;
}
