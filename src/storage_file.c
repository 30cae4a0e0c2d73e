/*
 * storage_file.c
 *		Owns the file:///dir storage backend: the embedded default.
 *
 * An object is written to a temporary file next to its final name, fsynced,
 * renamed over the final name and the directory fsynced, so a reader sees
 * either the old object or the whole new one, and a crash leaves at most a
 * stray temporary file (named .<name>.tmp.<pid>) but never a torn object.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "storage.h"

typedef struct FileStorage
{
	EvcStorage	base;
	char	   *dir;
} FileStorage;

static void
mkdir_parents(char *path)
{
	for (char *p = path + 1; *p; p++)
	{
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, pg_dir_create_mode) != 0 && errno != EEXIST)
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

static void
file_put(EvcStorage *st, const char *key, const char *data, size_t len,
		 const char *content_type, const char *sha256_hex)
{
	FileStorage *fs = (FileStorage *) st;
	char	   *path = psprintf("%s/%s", fs->dir, key);
	char	   *slash;
	char	   *tmp;
	int			fd;
	size_t		done = 0;

	mkdir_parents(path);
	slash = strrchr(path, '/');
	tmp = psprintf("%.*s/.%s.tmp.%d", (int) (slash - path), path, slash + 1, MyProcPid);

	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", tmp)));
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
	*slash = '\0';
	fsync_path(path, true);
	pfree(tmp);
	pfree(path);
}

static void
file_close(EvcStorage *st)
{
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

static const EvcStorageOps file_ops = {file_put, file_close, file_get};

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
	return &fs->base;
}
