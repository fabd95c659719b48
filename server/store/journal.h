#ifndef EPCS_JOURNAL_H
#define EPCS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Journal segments: append-only files of records, each written with one write(2) and framed
 * by its length and a checksum, so that a record cut short by a crash is recognised and
 * ignored with everything after it. The decision log's workers write the decisions of a loop
 * turn here before their answers go out (decision_pages.h says what a record holds).
 */

/** Journal segments are named EPCS_JOURNAL_PREFIX + anything, in the data directory. */
#define EPCS_JOURNAL_PREFIX "decisions.journal."

/** One segment file. The first two fields are for the owner's lists and bookkeeping. */
struct epcs_journal {
    struct epcs_journal *next;
    /** The highest decision log ticket of any record in the segment. */
    uint64_t last_ticket;
    /** -1 for a segment only named (one of an earlier run, to be deleted). */
    int fd;
    /** Bytes written whole: the next record goes here. */
    uint64_t size;
    char path[];
};

/**
 * Creates segment `name` in `dir` (which must not exist yet) with its file header, and fsyncs
 * the directory when `sync_dir` is set. The caller owns the result (epcs_journal_close or
 * epcs_journal_delete). NULL with `err` filled.
 */
struct epcs_journal *epcs_journal_create(const char *dir, const char *name, int sync_dir, char *err,
                                         size_t err_size);

/** A segment known by its path only (not opened), e.g. one of an earlier run. NULL: memory. */
struct epcs_journal *epcs_journal_named(const char *path);

/**
 * Appends one record of `len` payload bytes holding `count` entries with a single write(2)
 * (pwritev of the frame and the payload). Returns 0, or -1 with `err` filled: the segment is
 * then cut back to where the record began, so the next one follows the last whole record.
 */
int epcs_journal_append(struct epcs_journal *journal, const void *payload, size_t len,
                        uint32_t count, char *err, size_t err_size);

/**
 * Reads every whole record of the segment at `path`, oldest first, calling `fn` with each
 * record's payload (valid during the call only). Stops at the first record that is cut short
 * or damaged and sets *torn to the bytes from there to the end (0 when none). Returns 0, or -1
 * with `err` filled when the file cannot be read, is not a journal segment, or `fn` returned
 * nonzero (it fills `err` then).
 */
int epcs_journal_read(const char *path,
                      int (*fn)(void *ctx, const char *payload, size_t len, uint32_t count),
                      void *ctx, size_t *torn, char *err, size_t err_size);

/** Closes the segment and frees it, keeping the file. Accepts NULL. */
void epcs_journal_close(struct epcs_journal *journal);

/** Closes the segment, deletes its file and frees it. 0, or -1 with errno when unlink failed. */
int epcs_journal_delete(struct epcs_journal *journal);

#endif
