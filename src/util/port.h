/*
 * port.h
 *		The few calls evcollector makes that are not in POSIX: each is a
 *		glibc / Linux extension, and each has a portable fallback here.
 *
 * Nothing outside this header may call pipe2(), pthread_timedjoin_np() or
 * mallopt() directly.  Keeping them here is what lets the rest of the tree
 * build on any platform PostgreSQL supports; the fallbacks are weaker (a
 * non-atomic close-on-exec, an unbounded join turned into a detach, no
 * allocator tuning) but correct.
 *
 * Threads: evc_thread_start() is the only way the extension starts a
 * thread.  It blocks every signal first, so that no PostgreSQL signal
 * handler (SIGTERM's die, SIGHUP's reload, latch wake-ups) ever runs on a
 * thread that is not the backend's own.
 */
#ifndef EVC_UTIL_PORT_H
#define EVC_UTIL_PORT_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/*
 * A pipe whose both ends are non-blocking and close-on-exec.  Returns 0, or
 * -1 with errno set.
 */
static inline int
evc_pipe_nonblock(int fds[2])
{
#ifdef __linux__
	return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
#else
	if (pipe(fds) != 0)
		return -1;
	for (int i = 0; i < 2; i++)
	{
		if (fcntl(fds[i], F_SETFL, O_NONBLOCK) != 0 ||
			fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0)
		{
			int			save = errno;

			close(fds[0]);
			close(fds[1]);
			errno = save;
			return -1;
		}
	}
	return 0;
#endif
}

/*
 * Start a thread with every signal blocked (it inherits the mask), then
 * restore the caller's mask.  Returns pthread_create's result.
 */
static inline int
evc_thread_start(pthread_t *thread, void *(*fn) (void *), void *arg)
{
	sigset_t	all,
				old;
	int			rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/*
 * Wait at most timeout_ms for a thread to end.  Returns true when it did.
 * Without glibc's timed join, the thread is detached and left to finish on
 * its own: the caller is exiting and must not hang on it.
 */
static inline bool
evc_thread_join_timed(pthread_t thread, long timeout_ms)
{
#ifdef __GLIBC__
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	return pthread_timedjoin_np(thread, NULL, &ts) == 0;
#else
	pthread_detach(thread);
	return false;
#endif
}

/*
 * Tune glibc's allocator for a process that allocates and frees many small
 * blocks per message (librdkafka does: the message, its header list, each
 * header).  With fastbins those frees pile up and are consolidated again and
 * again; without them, and with freed memory kept rather than returned to
 * the kernel and faulted in again, the churn is cheap.  Elsewhere a no-op.
 */
static inline void
evc_malloc_tune_for_churn(void)
{
#ifdef __GLIBC__
	mallopt(M_MXFAST, 0);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
#endif
}

#endif							/* EVC_UTIL_PORT_H */
