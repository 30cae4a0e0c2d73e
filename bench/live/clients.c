/*
 * bench/live/clients.c: N WebSocket clients over R rooms (client i joins
 * room i % R) in one process on one epoll, each counting what it receives.
 * The same command line and the same output as clients.js, at a fraction of
 * its cost per message, so that on a small machine the clients are not what
 * the benchmark measures (see docs/live.md, "Benchmark").
 *
 *   clients WS_URL_PREFIX N R EXPECTED OUT [TIMEOUT_S]
 *
 * WS_URL_PREFIX is the URL up to "rooms=", e.g.
 * ws://127.0.0.1:8080/v1/live?window=1m&rooms=  Prints "ready" once every
 * client is open, then waits for EXPECTED messages in all (or the timeout)
 * and writes to OUT: {deliveries, first, last, cpu_ms, keys: {key: last
 * receipt ms}} where key is room|function|start (first 19 characters)|revision
 * and cpu_ms the CPU time the clients used from the first receipt on.
 *
 * Only what a server sends to a client is understood: unmasked frames,
 * text, ping and close.  Anything else (a fragmented or binary frame, a
 * message that is not a flat JSON object with those fields) is an error and
 * the run fails: a client that silently miscounted would make the figures
 * lie.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTING 200
#define KEY_MAX 256

typedef struct Conn
{
	int			fd;
	int			room;
	int			state;			/* 0 connecting, 1 handshake sent, 2 open, 3 closed */
	char	   *buf;
	size_t		len;
	size_t		cap;
} Conn;

typedef struct Key
{
	char	   *k;
	long long	t;
} Key;

static Conn *conns;
static int	nconns, nrooms;
static long long expected, deliveries, first_ms, last_ms;
static int	nopen, nconnecting, nextconn;
static struct sockaddr_in addr;
static char host[256], path_prefix[4096];
static int	ep;
static long long first_cpu_us;	/* this process's CPU time at the first message */
static Key *keys;
static size_t nkeys, keycap;

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long
cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static uint64_t
hash_str(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h;
}

static void
key_set(const char *k, long long t)
{
	size_t		i;

	if (nkeys * 2 >= keycap)
	{
		Key		   *old = keys;
		size_t		oldcap = keycap;

		keycap = keycap ? keycap * 2 : 4096;
		keys = calloc(keycap, sizeof(Key));
		nkeys = 0;
		for (size_t j = 0; j < oldcap; j++)
			if (old[j].k)
			{
				for (i = hash_str(old[j].k) & (keycap - 1); keys[i].k; i = (i + 1) & (keycap - 1))
					;
				keys[i] = old[j];
				nkeys++;
			}
		free(old);
	}
	for (i = hash_str(k) & (keycap - 1); keys[i].k; i = (i + 1) & (keycap - 1))
		if (strcmp(keys[i].k, k) == 0)
		{
			keys[i].t = t;
			return;
		}
	keys[i].k = strdup(k);
	keys[i].t = t;
	nkeys++;
}

static void
write_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++)
	{
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char) *s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void
finish(const char *out)
{
	FILE	   *f = fopen(out, "w");
	int			comma = 0;

	if (f == NULL)
		die("cannot write %s: %s", out, strerror(errno));
	fprintf(f, "{\"deliveries\":%lld,\"first\":%lld,\"last\":%lld,\"cpu_ms\":%lld,\"keys\":{",
			deliveries, first_ms, last_ms, first_ms ? (cpu_us() - first_cpu_us) / 1000 : 0);
	for (size_t i = 0; i < keycap; i++)
		if (keys[i].k)
		{
			if (comma)
				fputc(',', f);
			comma = 1;
			write_json_string(f, keys[i].k);
			fprintf(f, ":%lld", keys[i].t);
		}
	fputs("}}", f);
	if (fclose(f) != 0)
		die("cannot write %s: %s", out, strerror(errno));
	exit(0);
}

/* ---- a flat JSON object: the fields we need, as their raw text ---- */

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* A string token at p (at its quote): its body in [*s, *e), returns past it. */
static const char *
scan_string(const char *p, const char *end, const char **s, const char **e)
{
	if (p >= end || *p != '"')
		return NULL;
	*s = ++p;
	while (p < end && *p != '"')
		p += (*p == '\\') ? 2 : 1;
	if (p >= end)
		return NULL;
	*e = p;
	return p + 1;
}

/* Any value: strings and scalars by their text, objects and arrays skipped. */
static const char *
scan_value(const char *p, const char *end, const char **s, const char **e)
{
	int			depth = 0;

	if (p < end && *p == '"')
		return scan_string(p, end, s, e);
	*s = p;
	while (p < end)
	{
		if (*p == '"')
		{
			const char *a,
					   *b;

			if ((p = scan_string(p, end, &a, &b)) == NULL)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
		{
			if (depth == 0)
				break;
			depth--;
		}
		else if (*p == ',' && depth == 0)
			break;
		p++;
	}
	*e = p;
	while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\n' || (*e)[-1] == '\r' || (*e)[-1] == '\t'))
		(*e)--;
	return p;
}

static void
on_message(const char *msg, size_t len)
{
	long long	t = now_ms();
	const char *p = msg,
			   *end = msg + len;
	const char *want[4] = {"room", "function", "start", "revision"};
	const char *vs[4] = {0},
			   *ve[4] = {0};
	char		key[KEY_MAX];
	int			n = 0;

	p = skip_ws(p, end);
	if (p >= end || *p++ != '{')
		die("a message is not a JSON object: %.*s", (int) len, msg);
	for (;;)
	{
		const char *ks,
				   *ke,
				   *s,
				   *e;

		p = skip_ws(p, end);
		if (p < end && *p == '}')
			break;
		if ((p = scan_string(p, end, &ks, &ke)) == NULL)
			die("a message is not flat JSON: %.*s", (int) len, msg);
		p = skip_ws(p, end);
		if (p >= end || *p++ != ':')
			die("a message is not flat JSON: %.*s", (int) len, msg);
		p = skip_ws(p, end);
		if ((p = scan_value(p, end, &s, &e)) == NULL)
			die("a message is not flat JSON: %.*s", (int) len, msg);
		if (ke - ks == 5 && memcmp(ks, "error", 5) == 0)
		{
			fprintf(stderr, "error: %.*s\n", (int) len, msg);
			return;
		}
		for (int i = 0; i < 4; i++)
			if ((size_t) (ke - ks) == strlen(want[i]) && memcmp(ks, want[i], ke - ks) == 0)
			{
				vs[i] = s;
				ve[i] = e;
			}
		p = skip_ws(p, end);
		if (p < end && *p == ',')
			p++;
	}
	for (int i = 0; i < 4; i++)
	{
		int			l;

		if (vs[i] == NULL)
			die("a message lacks \"%s\": %.*s", want[i], (int) len, msg);
		l = (int) (ve[i] - vs[i]);
		if (i == 2 && l > 19)
			l = 19;
		if (n + l + 2 > KEY_MAX)
			die("a message's key is too long: %.*s", (int) len, msg);
		memcpy(key + n, vs[i], l);
		n += l;
		key[n++] = i < 3 ? '|' : '\0';
	}
	key_set(key, t);
	if (!first_ms)
	{
		first_ms = t;
		first_cpu_us = cpu_us();
	}
	last_ms = t;
	deliveries++;
}

/* ---- connections ---- */

static void
conn_start(int i)
{
	Conn	   *c = &conns[i];
	struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
	int			one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s (raise the open files limit)", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->room = i % nrooms;
	if (connect(c->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0 && errno != EINPROGRESS)
		die("connect: %s", strerror(errno));
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	nconnecting++;
}

static void
send_all(Conn *c, const char *p, size_t n)
{
	while (n > 0)
	{
		ssize_t		w = write(c->fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		/* requests and pongs are tiny: a full socket here is a broken peer */
		if (w <= 0)
			die("write: %s", w < 0 ? strerror(errno) : "nothing written");
		p += w;
		n -= (size_t) w;
	}
}

static void
send_handshake(int i)
{
	Conn	   *c = &conns[i];
	char		req[8192];
	int			n;
	int			err = 0;
	socklen_t	el = sizeof(err);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0)
		die("connect: %s", strerror(err));
	n = snprintf(req, sizeof(req),
				 "GET %sbench-%d HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
				 path_prefix, c->room, host);
	send_all(c, req, (size_t) n);
	c->state = 1;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* The frames in c->buf; returns how many bytes they used. */
static size_t
parse_frames(Conn *c)
{
	size_t		pos = 0;

	while (c->len - pos >= 2)
	{
		unsigned char *b = (unsigned char *) c->buf + pos;
		uint64_t	plen = b[1] & 0x7f;
		size_t		hl = 2;
		int			op = b[0] & 0x0f;

		if (b[1] & 0x80)
			die("a server frame is masked");
		if (plen == 126)
		{
			if (c->len - pos < 4)
				break;
			plen = ((uint64_t) b[2] << 8) | b[3];
			hl = 4;
		}
		else if (plen == 127)
		{
			if (c->len - pos < 10)
				break;
			plen = 0;
			for (int k = 0; k < 8; k++)
				plen = (plen << 8) | b[2 + k];
			hl = 10;
		}
		if (c->len - pos < hl + plen)
			break;
		if (!(b[0] & 0x80) || op == 0 || op == 2)
			die("a fragmented or binary frame (0x%02x)", b[0]);
		if (op == 1)
			on_message((char *) b + hl, (size_t) plen);
		else if (op == 8)
		{
			fprintf(stderr, "closed by the server: %.*s\n", (int) (plen > 2 ? plen - 2 : 0), (char *) b + hl + 2);
			c->state = 3;
		}
		else if (op == 9 && plen <= 125)
		{
			/* a pong, masked with a zero key, echoing the ping */
			char		pong[6 + 125];

			pong[0] = (char) 0x8a;
			pong[1] = (char) (0x80 | plen);
			memset(pong + 2, 0, 4);
			memcpy(pong + 6, b + hl, plen);
			send_all(c, pong, 6 + plen);
		}
		pos += hl + plen;
	}
	return pos;
}

static void
on_readable(int i, const char *out)
{
	Conn	   *c = &conns[i];

	for (;;)
	{
		ssize_t		r;

		if (c->cap - c->len < 65536)
		{
			c->cap = c->cap ? c->cap * 2 : 65536 + 4096;
			c->buf = realloc(c->buf, c->cap);
		}
		r = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0)
		{
			if (c->state != 3)
				fprintf(stderr, "socket closed: %s\n", r < 0 ? strerror(errno) : "by the server");
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			close(c->fd);
			c->state = 3;
			return;
		}
		c->len += (size_t) r;
		if (c->state == 1)
		{
			char	   *hdr_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
			size_t		hl;

			if (hdr_end == NULL)
				continue;
			if (c->len < 12 || memcmp(c->buf, "HTTP/1.1 101", 12) != 0)
				die("the upgrade was refused: %.*s", (int) (hdr_end - c->buf), c->buf);
			hl = (size_t) (hdr_end - c->buf) + 4;
			memmove(c->buf, c->buf + hl, c->len - hl);
			c->len -= hl;
			c->state = 2;
			nconnecting--;
			if (++nopen == nconns)
			{
				printf("ready\n");
				fflush(stdout);
			}
		}
		if (c->state >= 2)
		{
			size_t		used = parse_frames(c);

			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
			if (expected > 0 && deliveries >= expected)
				finish(out);
		}
	}
}

static void
parse_url(const char *url)
{
	const char *p,
			   *slash,
			   *colon;
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM},
			   *res;
	char		port[16];

	if (strncmp(url, "ws://", 5) != 0)
		die("the URL must start with ws://");
	p = url + 5;
	slash = strchr(p, '/');
	colon = memchr(p, ':', slash ? (size_t) (slash - p) : strlen(p));
	if (slash == NULL || colon == NULL || colon - p >= (long) sizeof(host) || slash - colon > 15)
		die("the URL must be ws://host:port/path...");
	memcpy(host, p, colon - p);
	host[colon - p] = '\0';
	memcpy(port, colon + 1, slash - colon - 1);
	port[slash - colon - 1] = '\0';
	snprintf(path_prefix, sizeof(path_prefix), "%s", slash);
	if (getaddrinfo(host, port, &hints, &res) != 0)
		die("cannot resolve %s", host);
	memcpy(&addr, res->ai_addr, sizeof(addr));
	freeaddrinfo(res);
}

int
main(int argc, char **argv)
{
	struct rlimit rl;
	long long	deadline = 0,
				last_report;
	const char *out;
	struct epoll_event evs[512];

	if (argc < 6)
		die("usage: clients WS_URL_PREFIX N R EXPECTED OUT [TIMEOUT_S]");
	parse_url(argv[1]);
	nconns = atoi(argv[2]);
	nrooms = atoi(argv[3]);
	expected = atoll(argv[4]);
	out = argv[5];
	if (nconns <= 0 || nrooms <= 0)
		die("N and R must be positive");
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	conns = calloc(nconns, sizeof(Conn));
	ep = epoll_create1(EPOLL_CLOEXEC);
	last_report = now_ms();
	for (;;)
	{
		int			n;
		long long	t;

		while (nextconn < nconns && nconnecting < MAX_CONNECTING)
			conn_start(nextconn++);
		n = epoll_wait(ep, evs, 512, 100);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int k = 0; k < n; k++)
		{
			int			i = (int) evs[k].data.u32;

			if (conns[i].state == 0)
				send_handshake(i);
			else if (conns[i].state != 3)
				on_readable(i, out);
		}
		t = now_ms();
		if (nopen == nconns && deadline == 0)
			deadline = t + (argc > 6 ? atoi(argv[6]) : 120) * 1000LL;
		if (deadline && t >= deadline)
			finish(out);
		if (nopen < nconns && t - last_report >= 5000)
		{
			fprintf(stderr, "open %d of %d\n", nopen, nconns);
			last_report = t;
		}
	}
}
