#ifndef EPCS_FILES_H
#define EPCS_FILES_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Files epcs replaces must survive a power cut whole: the new content is written under a
 * temporary name and fsync'd, renamed over the old, and the directory fsync'd, since a rename
 * is only durable once the directory entry it changed is on the disk.
 */

/** fsyncs directory `dir`, so the entries made or removed in it last. 0, or -1 with errno. */
int epcs_file_sync_dir(const char *dir);

/** fsyncs the directory that holds `path`. Returns 0, or -1 with errno set. */
int epcs_file_sync_parent(const char *path);

/**
 * Makes directory `path` (mode 0750) and fsyncs it into its parent, so that what is stored in
 * it stays findable after a power cut; one that exists already is fine. 0, or -1 with errno.
 */
int epcs_file_make_dir(const char *path);

/**
 * Replaces `path` with `len` bytes of `data` (file mode `mode`) as described above. Returns 0,
 * or -1 with errno set and `path` unchanged.
 */
int epcs_file_replace(const char *path, const void *data, size_t len, mode_t mode);

#endif
