#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int epcs_file_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int epcs_file_sync_parent(const char *path)
{
    char dir[4200];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    return epcs_file_sync_dir(dir);
}

int epcs_file_replace(const char *path, const void *data, size_t len, mode_t mode)
{
    char temporary[4200];
    snprintf(temporary, sizeof(temporary), "%s.tmp%ld", path, (long)getpid());
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    const char *at = data;
    size_t left = len;
    int failed = 0;
    while (left > 0 && !failed) {
        ssize_t wrote = write(fd, at, left);
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote <= 0) {
            if (wrote == 0)
                errno = EIO;
            failed = 1;
            break;
        }
        at += wrote;
        left -= (size_t)wrote;
    }
    failed = failed || fsync(fd) != 0;
    int saved = errno;
    failed = close(fd) != 0 || failed;
    if (failed || rename(temporary, path) != 0) {
        saved = failed ? saved : errno;
        unlink(temporary);
        errno = saved;
        return -1;
    }
    return epcs_file_sync_parent(path);
}

int epcs_file_make_dir(const char *path)
{
    if (mkdir(path, 0750) == 0)
        return epcs_file_sync_parent(path);
    return errno == EEXIST ? 0 : -1;
}
