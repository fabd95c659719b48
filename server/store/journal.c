/* Journal segments: records framed by length and checksum, each appended with one write(2). */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "codec.h"
#include "files.h"

/* The file starts with this, so a stray file with a journal's name is never read as one. */
#define SEGMENT_MAGIC "epcs-journal-1\n\0"
#define SEGMENT_HEADER 16

/*
 * A record: this frame, then `len` payload bytes. The checksum covers the payload and the
 * count, so bytes of a record the process did not finish writing (or of one written over
 * after a failed write) never pass for a record. Native byte order: a journal is read back
 * by an epcsd on the same machine, at its next start.
 */
#define RECORD_MAGIC 0x4a435045u /* "EPCJ" */

struct record_frame {
    uint32_t magic;
    uint32_t count;
    uint64_t len;
    uint64_t checksum;
};

static uint64_t record_checksum(const void *payload, size_t len, uint32_t count)
{
    return epcs_hash_bytes(payload, len) ^ ((uint64_t)count << 32 | RECORD_MAGIC);
}

static struct epcs_journal *journal_alloc(const char *path)
{
    size_t len = strlen(path) + 1;
    struct epcs_journal *journal = calloc(1, sizeof(*journal) + len);
    if (journal == NULL)
        return NULL;
    memcpy(journal->path, path, len);
    journal->fd = -1;
    return journal;
}

struct epcs_journal *epcs_journal_named(const char *path)
{
    return journal_alloc(path);
}

/* Writes all of `iov` at `offset`, resuming after short writes. 0, or -1 with errno. */
static int write_all_at(int fd, struct iovec *iov, int count, off_t offset)
{
    while (count > 0) {
        ssize_t wrote = pwritev(fd, iov, count, offset);
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote < 0)
            return -1;
        if (wrote == 0) {
            errno = EIO;
            return -1;
        }
        offset += wrote;
        while (count > 0 && (size_t)wrote >= iov->iov_len) {
            wrote -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + wrote;
            iov->iov_len -= (size_t)wrote;
        }
    }
    return 0;
}

struct epcs_journal *epcs_journal_create(const char *dir, const char *name, int sync_dir, char *err,
                                         size_t err_size)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct epcs_journal *journal = journal_alloc(path);
    if (journal == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    journal->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    struct iovec header = {.iov_base = SEGMENT_MAGIC, .iov_len = SEGMENT_HEADER};
    if (journal->fd < 0 || write_all_at(journal->fd, &header, 1, 0) != 0 ||
        (sync_dir && epcs_file_sync_dir(dir) != 0)) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        if (journal->fd >= 0)
            unlink(path);
        epcs_journal_close(journal);
        return NULL;
    }
    journal->size = SEGMENT_HEADER;
    return journal;
}

int epcs_journal_append(struct epcs_journal *journal, const void *payload, size_t len,
                        uint32_t count, char *err, size_t err_size)
{
    struct record_frame frame = {.magic = RECORD_MAGIC,
                                 .count = count,
                                 .len = len,
                                 .checksum = record_checksum(payload, len, count)};
    struct iovec iov[2] = {{.iov_base = &frame, .iov_len = sizeof(frame)},
                           {.iov_base = (void *)payload, .iov_len = len}};
    if (write_all_at(journal->fd, iov, 2, (off_t)journal->size) != 0) {
        int saved = errno;
        /* What the failed write took is given back. Should that fail too, nothing is lost:
         * the next record is written where this one began, over it. */
        int cut = ftruncate(journal->fd, (off_t)journal->size);
        (void)cut;
        /* Named as in the data directory, as the decision log names its other files. */
        const char *name = strrchr(journal->path, '/');
        snprintf(err, err_size, "%s: %s", name != NULL ? name + 1 : journal->path, strerror(saved));
        errno = saved;
        return -1;
    }
    journal->size += sizeof(frame) + len;
    return 0;
}

/* The whole file at `path` in a malloc'd buffer. 0, or -1 with `err` filled. */
static int read_whole(const char *path, char **data, size_t *size, char *err, size_t err_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *size = (size_t)st.st_size;
    *data = malloc(*size ? *size : 1);
    size_t done = 0;
    while (*data != NULL && done < *size) {
        ssize_t got = read(fd, *data + done, *size - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(err, err_size, "%s: %s", path,
                     got < 0 ? strerror(errno) : "shorter than it was");
            free(*data);
            close(fd);
            return -1;
        }
        done += (size_t)got;
    }
    close(fd);
    if (*data == NULL) {
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    return 0;
}

int epcs_journal_read(const char *path,
                      int (*fn)(void *ctx, const char *payload, size_t len, uint32_t count),
                      void *ctx, size_t *torn, char *err, size_t err_size)
{
    char *data;
    size_t size;
    *torn = 0;
    if (read_whole(path, &data, &size, err, err_size) != 0)
        return -1;
    int rc = 0;
    size_t at = SEGMENT_HEADER;
    if (size < SEGMENT_HEADER) {
        /* Created, and stopped before its header was written: it holds nothing. */
        *torn = size;
        at = size;
    } else if (memcmp(data, SEGMENT_MAGIC, SEGMENT_HEADER) != 0) {
        snprintf(err, err_size, "%s is not a journal segment of the decision log: move it aside",
                 path);
        rc = -1;
        at = size;
    }
    while (rc == 0 && at < size) {
        struct record_frame frame;
        size_t left = size - at;
        if (left >= sizeof(frame))
            memcpy(&frame, data + at, sizeof(frame));
        if (left < sizeof(frame) || frame.magic != RECORD_MAGIC ||
            frame.len > left - sizeof(frame) ||
            frame.checksum != record_checksum(data + at + sizeof(frame), frame.len, frame.count)) {
            *torn = left;
            break;
        }
        rc = fn(ctx, data + at + sizeof(frame), frame.len, frame.count);
        at += sizeof(frame) + frame.len;
    }
    free(data);
    return rc != 0 ? -1 : 0;
}

void epcs_journal_close(struct epcs_journal *journal)
{
    if (journal == NULL)
        return;
    if (journal->fd >= 0)
        close(journal->fd);
    free(journal);
}

int epcs_journal_delete(struct epcs_journal *journal)
{
    int rc = unlink(journal->path);
    int saved = errno;
    epcs_journal_close(journal);
    errno = saved;
    return rc;
}
