/*-------------------------------------------------------------------------
 *
 * asan_first.c
 *	  Preloaded after the ASan runtime into a postmaster that was not built
 *	  with ASan (SANITIZE=1, test/lib.sh), so that the runtime starts cleanly.
 *
 * The ASan runtime preloaded into an uninstrumented program initialises on
 * the first call it intercepts, usually a malloc.  In Debian's postgres that
 * first malloc happens inside glibc, under a lock: libgpg-error's and
 * gnutls's constructors call bindtextdomain, p11-kit's calls newlocale, and
 * each allocates while holding a glibc rwlock.  ASan's start-up then calls
 * dlerror, which takes the same lock through gettext, and unlocks it as a
 * writer; the rwlock's reader count wraps and the next textdomain or
 * freelocale waits for ever (google/sanitizers#1270).  postgres -V, and so
 * pg_ctl start, hang.
 *
 * This library interposes those two calls and makes one allocation before
 * passing each on, so that ASan has started before glibc takes its lock.
 *
 * It also removes LD_PRELOAD from the postmaster's environment: the backends
 * are forked and keep the runtime, while the programs the server runs (COPY
 * ... FROM PROGRAM, archive_command) are not ours and start without it.
 *
 * IDENTIFICATION
 *	  test/sanitize/asan_first.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One allocation the compiler may not remove: it starts the ASan runtime. */
static void
start_asan(void)
{
	void	   *volatile p = malloc(1);

	free(p);
}

char *
bindtextdomain(const char *domain, const char *dir)
{
	static char *(*real) (const char *, const char *);

	if (real == NULL)
	{
		start_asan();
		real = (char *(*) (const char *, const char *)) dlsym(RTLD_NEXT, "bindtextdomain");
	}
	return real(domain, dir);
}

locale_t
newlocale(int mask, const char *locale, locale_t base)
{
	static locale_t (*real) (int, const char *, locale_t);

	if (real == NULL)
	{
		start_asan();
		real = (locale_t (*) (int, const char *, locale_t)) dlsym(RTLD_NEXT, "newlocale");
	}
	return real(mask, locale, base);
}

__attribute__((constructor))
static void
strip_preload_in_postgres(void)
{
	char		exe[4096];
	ssize_t		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return;
	exe[n] = '\0';
	if (strcmp(exe + (n > 9 ? n - 9 : 0), "/postgres") == 0)
		unsetenv("LD_PRELOAD");
}
