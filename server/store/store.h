#ifndef EPCS_STORE_H
#define EPCS_STORE_H

#include <msgpack.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cases.h"
#include "decision_log.h"
#include "key_store.h"
#include "replicas.h"
#include "rule_store.h"

/*
 * The stores as interfaces. Each store is a table of operations (an ops struct) that a backend
 * fills; a handle begins with the ops of the backend that made it, and the epcs_decision_log_*,
 * epcs_cases_*, epcs_rule_store_*, epcs_key_store_* and epcs_replicas_* functions callers use
 * call through it. Today's backends are the embedded ones (SQLite with page and journal files
 * for the decision log and the case store, plain files for the rule store and the keys, this
 * process alone for the replica registry) and PostgreSQL for every store; another backend is
 * one more table behind the same calls, and the store tests run against every table.
 *
 * No operation names a backend's types: readers are opaque handles, errors are 0/-1 (1 for "not
 * found" where said) with a message in the caller's buffer (the rule store logs its own, as it
 * always has), and results are packed to the caller's msgpack_packer or appended to its epcs_buf
 * exactly as the routes answer them. What each operation does, and what it may be given, is
 * documented at its wrapper in decision_log.h, cases.h or rule_store.h; the members below note
 * only what differs.
 */

/** The decision log's operations (see decision_log.h for each). */
struct epcs_decision_log_ops {
    /** Names the backend in messages and in the store tests ("sqlite"). */
    const char *name;
    /**
     * `where` is the backend's place: the data directory for SQLite (which keeps its files
     * there), a connection string for PostgreSQL; `data_dir` holds the workers' journals.
     * NULL with `err`.
     */
    struct epcs_decision_log *(*open)(const char *where, const char *data_dir,
                                      enum epcs_audit_mode mode, size_t queue_limit, char *err,
                                      size_t err_size);
    /** Never given NULL (the wrapper takes care of it). */
    void (*close)(struct epcs_decision_log *log);
    enum epcs_audit_mode (*mode)(const struct epcs_decision_log *log);
    int (*attach)(struct epcs_decision_log *log, struct epcs_decision_stage *stage, char *err,
                  size_t err_size);
    void (*detach)(struct epcs_decision_log *log, struct epcs_decision_stage *stage);
    uint64_t (*next_id)(struct epcs_decision_log *log, struct epcs_decision_stage *stage);
    /** The hot path of every check: no allocation beyond the backend's own queueing. */
    int (*append)(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                  const struct epcs_decision *decisions, size_t count, const char *partner,
                  uint64_t *ticket);
    int (*stage)(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                 const struct epcs_decision *decisions, size_t count, const char *partner);
    int (*flush)(struct epcs_decision_log *log, struct epcs_decision_stage *stage);
    int (*event)(struct epcs_decision_log *log, const char *partner, const char *event,
                 const char *election, uint64_t subject, const char *detail, size_t detail_len,
                 uint64_t *id, uint64_t *ticket);
    int (*forward)(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                   const struct epcs_decision *decisions, const char *const *partners,
                   size_t decision_count, const struct epcs_decision_event *events,
                   size_t event_count, uint64_t *ticket);
    int (*wait)(struct epcs_decision_log *log, uint64_t ticket);
    uint64_t (*committed)(const struct epcs_decision_log *log);
    void (*on_commit)(struct epcs_decision_log *log, void (*fn)(void *ctx), void *ctx);
    void (*stats)(struct epcs_decision_log *log, struct epcs_decision_log_stats *stats);
    /**
     * A reader of the caller's own on what the log at `where` (as for open) holds, with or
     * without an open log (the store tests read what a closed log left). NULL with `err`.
     */
    struct epcs_decision_reader *(*reader_open)(const char *where, char *err, size_t err_size);
    /** Closes a reader from reader_open. Accepts NULL. */
    void (*reader_close)(struct epcs_decision_reader *reader);
    struct epcs_decision_reader *(*reader_acquire)(struct epcs_decision_log *log, char *err,
                                                   size_t err_size);
    void (*reader_release)(struct epcs_decision_log *log, struct epcs_decision_reader *reader);
    /** `log` may be NULL here: no page is skipped. */
    int (*query)(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                 const struct epcs_decision_query *query, msgpack_packer *pk, char *err,
                 size_t err_size);
    int (*get)(struct epcs_decision_reader *reader, uint64_t id, msgpack_packer *pk,
               struct epcs_buf *request, char *ruleset, size_t ruleset_size, char *date, char *err,
               size_t err_size);
    int (*recent)(struct epcs_decision_reader *reader, size_t limit,
                  int (*fn)(void *ctx, const void *request, size_t len, const char *date),
                  void *ctx, char *err, size_t err_size);
};

/** What every decision log handle begins with; the backend's state follows. */
struct epcs_decision_log {
    const struct epcs_decision_log_ops *ops;
};

/**
 * The case store's operations (see cases.h for each). A read whose database cannot be reached
 * returns EPCS_CASES_READ_UNAVAILABLE, a write EPCS_CASES_UNAVAILABLE.
 */
struct epcs_cases_ops {
    /** Names the backend in messages and in the store tests ("sqlite"). */
    const char *name;
    /**
     * `where` is the backend's place: the data directory for SQLite, a connection string for
     * PostgreSQL (whose `log`, if any, must be PostgreSQL's on the same database). NULL with
     * `err`.
     */
    struct epcs_cases *(*open)(const char *where, struct epcs_decision_log *log, char *err,
                               size_t err_size);
    /** Never given NULL (the wrapper takes care of it). */
    void (*close)(struct epcs_cases *cases);
    int (*file)(struct epcs_cases *cases, const struct epcs_case_report *report, msgpack_packer *pk,
                struct epcs_case_filed *filed, char *err, size_t err_size);
    int (*answer)(struct epcs_cases *cases, const struct epcs_case_answer *answer,
                  msgpack_packer *pk, uint64_t *ticket, char *detail, size_t detail_size);
    int (*review)(struct epcs_cases *cases, const struct epcs_case_review *review,
                  msgpack_packer *pk, uint64_t *ticket, char *detail, size_t detail_size);
    int (*set_policy)(struct epcs_cases *cases, const struct epcs_case_policy *policy,
                      msgpack_packer *pk, uint64_t *ticket, char *err, size_t err_size);
    int (*sweep)(struct epcs_cases *cases, int64_t now_us, size_t limit, char *err,
                 size_t err_size);
    /** A reader of the caller's own on the store at `where` (as for open), open or not. NULL
     * with `err`. */
    struct epcs_cases_reader *(*reader_open)(const char *where, char *err, size_t err_size);
    /** Closes a reader from reader_open. Accepts NULL. */
    void (*reader_close)(struct epcs_cases_reader *reader);
    struct epcs_cases_reader *(*reader_acquire)(struct epcs_cases *cases, char *err,
                                                size_t err_size);
    void (*reader_release)(struct epcs_cases *cases, struct epcs_cases_reader *reader);
    int (*get_policy)(struct epcs_cases_reader *reader, const char *partner, msgpack_packer *pk,
                      char *err, size_t err_size);
    int (*get_report)(struct epcs_cases_reader *reader, uint64_t id, const char *filer,
                      msgpack_packer *pk, char *err, size_t err_size);
    int (*list_reports)(struct epcs_cases_reader *reader, const struct epcs_report_query *query,
                        msgpack_packer *pk, char *err, size_t err_size);
    int (*export_reports)(struct epcs_cases_reader *reader, const struct epcs_report_query *query,
                          struct epcs_buf *out, uint64_t *next, char *err, size_t err_size);
    int (*get_request)(struct epcs_cases_reader *reader, uint64_t id, const char *partner,
                       msgpack_packer *pk, char *err, size_t err_size);
    int (*list_requests)(struct epcs_cases_reader *reader, const struct epcs_request_query *query,
                         msgpack_packer *pk, char *err, size_t err_size);
    int (*export_requests)(struct epcs_cases_reader *reader, const struct epcs_request_query *query,
                           struct epcs_buf *out, uint64_t *next, char *err, size_t err_size);
};

/** What every case store handle begins with; the backend's state follows. */
struct epcs_cases {
    const struct epcs_cases_ops *ops;
};

/**
 * The rule store's operations (see rule_store.h for each; valid_id needs no store, and restore
 * is made of manifest and blob for every backend, in rule_versions.c).
 */
struct epcs_rule_store_ops {
    /** Names the backend in messages and in the store tests ("files"). */
    const char *name;
    /**
     * `where` is the backend's place: the data directory for files, a connection string for
     * PostgreSQL. NULL with `err` filled.
     */
    struct epcs_rule_store *(*open)(const char *where, char *err, size_t err_size);
    /** Never given NULL (the wrapper takes care of it). */
    void (*close)(struct epcs_rule_store *store);
    int (*save)(struct epcs_rule_store *store, const struct epcs_ruleset *ruleset);
    int (*activate)(struct epcs_rule_store *store, const struct epcs_rule_activation *activation,
                    uint64_t *epoch);
    int (*active)(struct epcs_rule_store *store, char id[24], uint64_t *epoch);
    /** The file backend serves one epcsd: it has nothing to follow and never calls `changed`. */
    int (*follow)(struct epcs_rule_store *store, void (*changed)(void *ctx), void *ctx);
    void (*unfollow)(struct epcs_rule_store *store);
    int (*manifest)(struct epcs_rule_store *store, const char *id, struct epcs_buf *out);
    int (*blob)(struct epcs_rule_store *store, const char *sha256, struct epcs_buf *out);
    int (*list)(struct epcs_rule_store *store, struct epcs_buf *out);
    /** Where the versions are, for messages ("<data>/rulesets", a connection string). */
    const char *(*where)(const struct epcs_rule_store *store);
};

/** What every rule store handle begins with; the backend's state follows. */
struct epcs_rule_store {
    const struct epcs_rule_store_ops *ops;
};

/**
 * The key store's operations (see key_store.h for each). A backend that shares no usage (the
 * keys file) leaves exchange_usage NULL; one with nothing to follow leaves follow and unfollow
 * NULL.
 */
struct epcs_key_store_ops {
    /** Names the backend in messages and in the store tests ("file"). */
    const char *name;
    /** `where` is the keys file's path, or a connection string for PostgreSQL. */
    struct epcs_key_store *(*open)(const char *where, char *err, size_t err_size);
    /** Never given NULL (the wrapper takes care of it). */
    void (*close)(struct epcs_key_store *store);
    const char *(*where)(const struct epcs_key_store *store);
    int (*load)(struct epcs_key_store *store, struct epcs_key_record **records, size_t *count,
                char *err, size_t err_size);
    /** Mints the key with epcs_key_mint and stores it, minting again while its id is taken. */
    int (*create)(struct epcs_key_store *store, const char *partner, enum epcs_role role,
                  double rate, char *token, struct epcs_key_record *record, char *err,
                  size_t err_size);
    int (*revoke)(struct epcs_key_store *store, const char *id, char *err, size_t err_size);
    int (*stale)(struct epcs_key_store *store);
    int (*follow)(struct epcs_key_store *store, void (*changed)(void *ctx), void *ctx);
    void (*unfollow)(struct epcs_key_store *store);
    int (*exchange_usage)(struct epcs_key_store *store, const char *const *ids, const double *used,
                          size_t count, double *totals, char *err, size_t err_size);
};

/** What every key store handle begins with; the backend's state follows. */
struct epcs_key_store {
    const struct epcs_key_store_ops *ops;
};

/** The replica registry's operations (see replicas.h). */
struct epcs_replicas_ops {
    /** Names the backend in messages and in the store tests ("embedded"). */
    const char *name;
    /** `where` is a connection string for PostgreSQL; the embedded registry ignores it. */
    struct epcs_replicas *(*open)(const char *where, const char *audit, char *err, size_t err_size);
    /** Never given NULL (the wrapper takes care of it). */
    void (*close)(struct epcs_replicas *replicas);
    int (*beat)(struct epcs_replicas *replicas, const struct epcs_replica_status *status, char *err,
                size_t err_size);
};

struct epcs_replica_row;

/**
 * What every registry handle begins with: its ops, then the last read, which both backends
 * keep alike (replica_rows.c) and the calls that only read it use without the ops.
 */
struct epcs_replicas {
    const struct epcs_replicas_ops *ops;
    uint64_t run;
    /* Guards what follows: the beat replaces it while routes pack it. */
    pthread_mutex_t lock;
    struct epcs_replica_row *rows;
    size_t count;
    unsigned live;
    /* The store's clock at the last read (0: none yet), and the monotonic clock's then. */
    int64_t read_us;
    int64_t read_mono_ns;
};

/**
 * How long a connection attempt or one statement of a PostgreSQL backend may take before the
 * database counts as unreachable (--store-timeout); set once, before any store opens.
 */
void epcs_store_set_timeout(int ms);

/** The decision log in SQLite (<data>/decisions.db) and page files (sqlite/decision_log.c). */
extern const struct epcs_decision_log_ops epcs_decision_log_sqlite;
/** The decision log in PostgreSQL tables, shared by every replica (postgresql/decision_log.c). */
extern const struct epcs_decision_log_ops epcs_decision_log_postgresql;
/** The case store in SQLite (<data>/cases.db) (sqlite/cases.c). */
extern const struct epcs_cases_ops epcs_cases_sqlite;
/** The case store in PostgreSQL tables, shared by every replica (postgresql/cases.c). */
extern const struct epcs_cases_ops epcs_cases_postgresql;
/** The rule store in files under <data>/rulesets (files/rule_store.c). */
extern const struct epcs_rule_store_ops epcs_rule_store_files;
/** The rule store in PostgreSQL tables, shared by every replica (postgresql/rule_store.c). */
extern const struct epcs_rule_store_ops epcs_rule_store_postgresql;
/** The keys file, one line a key (files/key_store.c). */
extern const struct epcs_key_store_ops epcs_key_store_file;
/** The keys in PostgreSQL, and the replicas' shared rate usage (postgresql/key_store.c). */
extern const struct epcs_key_store_ops epcs_key_store_postgresql;
/** One epcsd alone, in memory (sqlite/replicas.c). */
extern const struct epcs_replicas_ops epcs_replicas_embedded;
/** The replicas on one PostgreSQL database, a run of epcs_runs each (postgresql/replicas.c). */
extern const struct epcs_replicas_ops epcs_replicas_postgresql;

#endif
