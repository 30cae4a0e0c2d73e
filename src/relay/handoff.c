/*
 * handoff.c
 *		One helper thread per process that works through items the main
 *		loop posts and serves a library's callbacks, so that the two run on
 *		two cores.
 *
 * The relay does two kinds of work for each event: PostgreSQL work (read
 * the row, later delete it) and librdkafka work (build the message and its
 * headers, queue it, and later take its delivery report and free it).  In
 * one thread they keep one core busy while the other core waits.  This
 * thread takes the librdkafka part: the main loop posts rows as it reads
 * them and goes on reading, and the delivery reports are served here, by
 * the thread that allocated the messages.
 *
 * A thread rather than a second process, because the items point into the
 * main loop's memory and the producer handle is shared; librdkafka is
 * thread-safe and already runs its own threads in this process.  What keeps
 * it safe is the rule for librdkafka's callbacks: nothing on this thread
 * calls a PostgreSQL function.  It blocks every signal, so PostgreSQL's
 * handlers run only on the main thread.
 *
 * The protocol:
 * - evc_handoff_begin names an array, evc_handoff_post says how many of its
 *   items are ready (a count that only grows); the thread does them in
 *   order with the work function.
 * - The serve function runs after each stretch of work and whenever
 *   serve_fd (a pipe librdkafka writes to when it has callbacks) is
 *   readable, while serving is on.  The main loop turns it off around
 *   anything that replaces what it serves.
 * - The thread waits in poll(2) on serve_fd and on a pipe the main loop
 *   writes to when it posts while the thread waits, and it wakes the main
 *   loop by writing to wake_fd, a pipe in the main loop's WaitEventSet.
 *   Neither side ever sleeps blind.
 */
#include "postgres.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include "relay/handoff_int.h"
#include "util/port.h"

typedef struct Handoff
{
	pthread_mutex_t lock;
	pthread_cond_t idle_cv;		/* the thread put its work down */
	EvcHandoffWork work;
	EvcHandoffServe serve;
	int			serve_fd;		/* readable: there is something to serve */
	int			wake_fd;		/* written to wake the main loop */
	int			post_pipe[2];	/* written to wake the thread */
	void	   *items;
	int			posted;			/* items [0, posted) may be done */
	int			done;			/* items [0, done) are done */
	bool		working;		/* doing items, unlocked */
	bool		serving;		/* serving is on */
	bool		in_serve;		/* serving, unlocked */
	bool		sleeping;		/* in poll(2): posting must write */
	bool		main_waiting;	/* wake the main loop when all is done */
	pg_atomic_uint32 cancel;	/* set under the lock, read by work unlocked */
} Handoff;

static Handoff h = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.idle_cv = PTHREAD_COND_INITIALIZER,
	.post_pipe = {-1, -1},
};
static bool started = false;

static void
drain(int fd)
{
	char		buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Write one byte to a non-blocking pipe; a full pipe already holds a wakeup. */
static void
poke(int fd)
{
	if (write(fd, "h", 1) < 0)
	{
		/* EAGAIN: the reader has a wakeup pending already */
	}
}

/* With the lock held: do the posted items, if any.  Returns whether it did. */
static bool
do_posted(void)
{
	void	   *items;
	int			from,
				to;

	if (h.done >= h.posted)
		return false;
	items = h.items;
	from = h.done;
	to = h.posted;
	h.working = true;
	pthread_mutex_unlock(&h.lock);

	h.work(items, from, to, &h.cancel);

	pthread_mutex_lock(&h.lock);
	h.working = false;
	if (!pg_atomic_read_u32(&h.cancel))
		h.done = to;
	pthread_cond_broadcast(&h.idle_cv);
	if (h.done >= h.posted && h.main_waiting)
	{
		h.main_waiting = false;
		poke(h.wake_fd);
	}
	return true;
}

/* With the lock held: serve, if serving is on. */
static void
do_serve(void)
{
	if (!h.serving)
		return;
	h.in_serve = true;
	pthread_mutex_unlock(&h.lock);

	h.serve();

	pthread_mutex_lock(&h.lock);
	h.in_serve = false;
	pthread_cond_broadcast(&h.idle_cv);
}

static void *
handoff_main(void *arg)
{
	pthread_mutex_lock(&h.lock);
	for (;;)
	{
		struct pollfd fds[2];

		/* Drain before serving: what arrives after it writes again. */
		drain(h.serve_fd);
		drain(h.post_pipe[0]);
		while (do_posted())
			do_serve();
		do_serve();
		if (h.done < h.posted)
			continue;

		h.sleeping = true;
		pthread_mutex_unlock(&h.lock);
		fds[0].fd = h.serve_fd;
		fds[0].events = POLLIN;
		fds[1].fd = h.post_pipe[0];
		fds[1].events = POLLIN;
		(void) poll(fds, 2, 1000);
		pthread_mutex_lock(&h.lock);
		h.sleeping = false;
	}
	return NULL;
}

/*
 * Start the thread, once per process.  work and serve run on it; serving
 * starts off (evc_handoff_serving).  serve_fd and wake_fd must be
 * non-blocking pipe ends.
 */
void
evc_handoff_start(EvcHandoffWork work, EvcHandoffServe serve, int serve_fd, int wake_fd)
{
	pthread_t	thread;
	int			rc;

	if (started)
		return;
	if (evc_pipe_nonblock(h.post_pipe) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create pipe for the relay's producer thread: %m")));
	h.work = work;
	h.serve = serve;
	h.serve_fd = serve_fd;
	h.wake_fd = wake_fd;
	/* Before the thread exists: nothing else reads it yet. */
	pg_atomic_init_u32(&h.cancel, 0);
	/* With every signal blocked: no PostgreSQL handler runs on it. */
	rc = evc_thread_start(&thread, handoff_main, NULL);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not start the relay's producer thread"),
				 errdetail("pthread_create failed: %s.", strerror(rc))));
	pthread_detach(thread);
	started = true;
}

/*
 * Name the array whose items are posted next.  The previous array must be
 * done (evc_handoff_done) or cancelled.
 */
void
evc_handoff_begin(void *items)
{
	pthread_mutex_lock(&h.lock);
	Assert(h.done >= h.posted && !h.working);
	h.items = items;
	h.posted = h.done = 0;
	pthread_mutex_unlock(&h.lock);
}

/* Items [0, count) of the array are ready. */
void
evc_handoff_post(int count)
{
	pthread_mutex_lock(&h.lock);
	if (count > h.posted)
	{
		h.posted = count;
		if (h.sleeping)
			poke(h.post_pipe[1]);
	}
	pthread_mutex_unlock(&h.lock);
}

/*
 * Is every posted item done?  If not, the thread writes to wake_fd once it
 * is, so the caller can wait there.
 */
bool
evc_handoff_done(void)
{
	bool		done;

	pthread_mutex_lock(&h.lock);
	done = (h.done >= h.posted);
	h.main_waiting = !done;
	pthread_mutex_unlock(&h.lock);
	return done;
}

/*
 * Stop: the thread finishes the item at hand and takes no more of this
 * array.  Returns once it has put the array down, so its memory may go.
 */
void
evc_handoff_cancel(void)
{
	pthread_mutex_lock(&h.lock);
	pg_atomic_write_u32(&h.cancel, 1);
	while (h.working)
		pthread_cond_wait(&h.idle_cv, &h.lock);
	h.done = h.posted;
	pg_atomic_write_u32(&h.cancel, 0);
	h.main_waiting = false;
	pthread_mutex_unlock(&h.lock);
}

/*
 * Turn serving on or off.  Turning it off returns once the thread is out of
 * the serve and work functions, so what they use may then be destroyed.
 */
void
evc_handoff_serving(bool on)
{
	pthread_mutex_lock(&h.lock);
	h.serving = on;
	while (!on && (h.in_serve || h.working))
		pthread_cond_wait(&h.idle_cv, &h.lock);
	if (on && h.sleeping)
		poke(h.post_pipe[1]);
	pthread_mutex_unlock(&h.lock);
}

/* On the thread: wake the main loop. */
void
evc_handoff_wake_main(void)
{
	poke(h.wake_fd);
}
