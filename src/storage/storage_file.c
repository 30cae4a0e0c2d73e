/*
 * storage_file.c
 *		Owns the file:///dir storage backend: the embedded default.
 *
 * An object is written to a temporary file next to its final name, fsynced
 * and renamed over the final name, so a reader sees either the old object
 * or the whole new one, and a crash leaves at most a stray temporary file
 * (named .<name>.tmp.<pid>) but never a torn object.  The renames are made
 * durable by sync, which fsyncs each directory that gained an entry (a new
 * object or a new subdirectory) once, however many objects went into it:
 * the consumer calls it once per landing, before it commits.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "storage/storage.h"

typedef struct FileStorage
{
	EvcStorage	base;
	char	   *dir;
	MemoryContext cxt;			/* what follows lives here */
	char	   *made_dir;		/* the directory of the last object written */
	List	   *unsynced;		/* directories to fsync, of char * */
} FileStorage;

/* Remember a directory that gained an entry, once. */
static void
note_unsynced(FileStorage *fs, const char *dir)
{
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, fs->unsynced)
	{
		if (strcmp(lfirst(lc), dir) == 0)
			return;
	}
	old = MemoryContextSwitchTo(fs->cxt);
	fs->unsynced = lappend(fs->unsynced, pstrdup(dir));
	MemoryContextSwitchTo(old);
}

/* Create the directories above path; a new one is an entry in its parent. */
static void
mkdir_parents(FileStorage *fs, char *path)
{
	for (char *p = path + 1; *p; p++)
	{
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, pg_dir_create_mode) == 0)
		{
			char	   *slash = strrchr(path, '/');

			*slash = '\0';
			note_unsynced(fs, slash == path ? "/" : path);
			*slash = '/';
		}
		else if (errno != EEXIST)
		{
			int			save = errno;

			*p = '/';
			errno = save;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create directory for \"%s\": %m", path)));
		}
		*p = '/';
	}
}

static void
fsync_path(const char *path, bool isdir)
{
	int			fd = OpenTransientFile(path, isdir ? O_RDONLY : O_RDWR);

	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", path)));
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync \"%s\": %m", path)));
	CloseTransientFile(fd);
}

/*
 * Open the temporary file.  The object's directory is made only when it is
 * not the last one written to, or when it went away since.
 */
static int
open_temporary(FileStorage *fs, char *path, const char *objdir, const char *tmp)
{
	int			fd = -1;

	if (fs->made_dir != NULL && strcmp(fs->made_dir, objdir) == 0)
		fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		mkdir_parents(fs, path);
		fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	}
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", tmp)));
	if (fs->made_dir == NULL || strcmp(fs->made_dir, objdir) != 0)
	{
		if (fs->made_dir != NULL)
			pfree(fs->made_dir);
		fs->made_dir = MemoryContextStrdup(fs->cxt, objdir);
	}
	return fd;
}

static void
file_put(EvcStorage *st, const char *key, const char *data, size_t len,
		 const char *content_type, const char *sha256_hex)
{
	FileStorage *fs = (FileStorage *) st;
	char	   *path = psprintf("%s/%s", fs->dir, key);
	char	   *slash = strrchr(path, '/');
	char	   *objdir = pnstrdup(path, slash - path);
	char	   *tmp = psprintf("%s/.%s.tmp.%d", objdir, slash + 1, MyProcPid);
	int			fd;
	size_t		done = 0;

	fd = open_temporary(fs, path, objdir, tmp);
	while (done < len)
	{
		ssize_t		n = write(fd, data + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			if (n == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write \"%s\": %m", tmp)));
		}
		done += n;
	}
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync \"%s\": %m", tmp)));
	CloseTransientFile(fd);

	if (rename(tmp, path) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not rename \"%s\" to \"%s\": %m", tmp, path)));
	note_unsynced(fs, objdir);
	pfree(tmp);
	pfree(objdir);
	pfree(path);
}

/* Make the renames and new directories durable: one fsync per directory. */
static void
file_sync(EvcStorage *st)
{
	FileStorage *fs = (FileStorage *) st;

	while (fs->unsynced != NIL)
	{
		char	   *dir = linitial(fs->unsynced);

		fsync_path(dir, true);
		fs->unsynced = list_delete_first(fs->unsynced);
		pfree(dir);
	}
}

static void
file_close(EvcStorage *st)
{
	FileStorage *fs = (FileStorage *) st;

	MemoryContextDelete(fs->cxt);
}

/* Objects are at most evcollector.max_file_size, which is at most 1 GB. */
static char *
file_get(EvcStorage *st, const char *full_key, size_t *len)
{
	FileStorage *fs = (FileStorage *) st;
	char	   *path = psprintf("%s/%s", fs->dir, full_key);
	struct stat sb;
	char	   *data;
	int			fd;
	size_t		done = 0;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", path)));
	if (fstat(fd, &sb) != 0 || sb.st_size > MaxAllocSize - 1)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read \"%s\": %m", path)));
	data = palloc(sb.st_size + 1);
	while (done < (size_t) sb.st_size)
	{
		ssize_t		n = read(fd, data + done, sb.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read \"%s\": %m", path)));
		done += n;
	}
	CloseTransientFile(fd);
	data[done] = '\0';
	*len = done;
	return data;
}

/* No put_many: objects are put one by one, each as it comes. */
static const EvcStorageOps file_ops = {file_put, file_close, file_get, file_sync, NULL};

EvcStorage *
evc_storage_file_open(const char *url)
{
	FileStorage *fs = palloc0(sizeof(FileStorage));
	size_t		len;

	fs->base.ops = &file_ops;
	fs->base.url = pstrdup(url);
	fs->base.prefix = "";
	fs->dir = pstrdup(url + strlen("file://"));
	len = strlen(fs->dir);
	while (len > 1 && fs->dir[len - 1] == '/')
		fs->dir[--len] = '\0';
	fs->cxt = AllocSetContextCreate(CurrentMemoryContext, "evcollector file storage",
									ALLOCSET_SMALL_SIZES);
	return &fs->base;
}
