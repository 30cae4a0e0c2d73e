/*
 * gateway/sock_read.c
 *		How many bytes the gateway has read from a TCP socket, from the
 *		kernel's own counters.  Linux only: elsewhere the answer is
 *		"unknown", and the caller takes the safe side.
 *
 * server.c asks this to tell a request that libwebsockets read off the
 * socket from one it took out of its buffer list (the bytes left over from
 * the read of the request before it): lws reads the socket only once that
 * list is empty, so if no byte was read from the socket since the previous
 * request ended, the next one came out of the list.  README.md,
 * "Pipelining", says why that matters.
 *
 * <linux/tcp.h> has the byte counters that glibc's <netinet/tcp.h> lacks,
 * and the two cannot be included together, so the few TCP state numbers
 * needed are spelled out here (the kernel's include/net/tcp_states.h).
 */
#include "postgres.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#ifdef __linux__
#include <linux/sockios.h>
#include <linux/tcp.h>
#endif

#include "gateway/gateway_int.h"

#ifdef __linux__

/* States in which the peer's FIN has come in (tcp_states.h). */
#define EVC_TCP_TIME_WAIT	6
#define EVC_TCP_CLOSE_WAIT	8
#define EVC_TCP_LAST_ACK	9
#define EVC_TCP_CLOSING		11

/*
 * tcpi_bytes_received counts sequence space, so a FIN the peer sent counts
 * as one byte, which SIOCINQ (bytes not read yet) never does.
 */
static bool
peer_fin_received(uint8 state)
{
	return state == EVC_TCP_CLOSE_WAIT || state == EVC_TCP_LAST_ACK ||
		state == EVC_TCP_CLOSING || state == EVC_TCP_TIME_WAIT;
}

/* Bytes the peer sent that reached this socket, in order; false on error. */
static bool
bytes_received(int fd, uint64 *received)
{
	struct tcp_info ti;
	socklen_t	len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
		len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
		return false;
	*received = ti.tcpi_bytes_received - (peer_fin_received(ti.tcpi_state) ? 1 : 0);
	return true;
}
#endif

/*
 * Bytes read from the socket so far: received minus not yet read.  Bytes
 * that arrive between the two calls would be counted as unread and not as
 * received; when some are unread the counter is read again, and the answer
 * kept only if it did not move.  False when it cannot be known.
 */
bool
evc_gw_socket_bytes_read(int fd, uint64 *bytes)
{
#ifdef __linux__
	for (int attempt = 0; attempt < 3; attempt++)
	{
		uint64		before,
					after;
		int			unread;

		if (!bytes_received(fd, &before) || ioctl(fd, SIOCINQ, &unread) != 0 || unread < 0)
			return false;
		if (unread == 0)
		{
			*bytes = before;
			return true;
		}
		if (!bytes_received(fd, &after))
			return false;
		if (after == before && before >= (uint64) unread)
		{
			*bytes = before - unread;
			return true;
		}
	}
#endif
	return false;
}
