/*
 * Staff and admin routes: the decision log (list, show, replay) and API keys. Reads of the log
 * (SQLite and its page file), replays (a stored ruleset restored, compiled and run) and writes
 * of the key store (the keys file under its lock, fsync'd, or PostgreSQL) run on libuv's thread
 * pool (offload.h), reads on connections of the log's own reader pool; the event loop only
 * parses the request and sends the answer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dates.h"
#include "impact.h"
#include "log.h"
#include "offload.h"
#include "query.h"
#include "rule_store.h"
#include "http.h"

#define DECISIONS_DEFAULT_LIMIT 100
#define DECISIONS_MAX_LIMIT 1000
/* One of each filter. */
#define DECISIONS_MAX_FILTERS 8

/* ---- query strings ------------------------------------------------------------------------ */

/* The query's filters, pointing into `params`. 0, or answers 400. */
static int read_decision_query(h2o_req_t *req, struct epcs_decision_query *query,
                               struct epcs_query *params)
{
    memset(query, 0, sizeof(*query));
    query->limit = DECISIONS_DEFAULT_LIMIT;
    if (epcs_query_read(req, params, DECISIONS_MAX_FILTERS) != 0)
        return -1;
    for (size_t i = 0; i < params->count; i++) {
        const char *name = params->names[i];
        char *value = params->values[i];
        if (strcmp(name, "from") == 0 || strcmp(name, "to") == 0) {
            int64_t us;
            if (epcs_parse_instant(value, &us) != 0)
                return epcs_respond_error(req, 400, "bad_request", name,
                                          "%s must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
                                          name),
                       -1;
            *(strcmp(name, "from") == 0 ? &query->from_us : &query->to_us) = us;
        } else if (strcmp(name, "after") == 0) {
            if (epcs_parse_unsigned(value, &query->after) != 0)
                return epcs_respond_error(req, 400, "bad_request", "after",
                                          "after must be a decision id (the previous page's next)"),
                       -1;
        } else if (strcmp(name, "limit") == 0) {
            uint64_t limit;
            if (epcs_parse_unsigned(value, &limit) != 0 || limit == 0 ||
                limit > DECISIONS_MAX_LIMIT)
                return epcs_respond_error(req, 400, "bad_request", "limit",
                                          "limit must be a whole number from 1 to %d",
                                          DECISIONS_MAX_LIMIT),
                       -1;
            query->limit = (size_t)limit;
        } else if (strcmp(name, "verdict") == 0) {
            if (strcmp(value, "allowed") != 0 && strcmp(value, "prohibited") != 0 &&
                strcmp(value, "needs_facts") != 0)
                return epcs_respond_error(req, 400, "bad_request", "verdict",
                                          "verdict must be allowed, prohibited or needs_facts"),
                       -1;
            query->verdict = value;
        } else if (strcmp(name, "partner") == 0) {
            query->partner = value;
        } else if (strcmp(name, "area") == 0) {
            query->area = value;
        } else if (strcmp(name, "election") == 0) {
            query->election = value;
        } else {
            return epcs_respond_error(req, 400, "bad_request", name,
                                      "unknown filter '%s': from, to, partner, area, verdict, "
                                      "election, after, limit",
                                      name),
                   -1;
        }
    }
    if (query->from_us && query->to_us && query->to_us <= query->from_us)
        return epcs_respond_error(req, 400, "bad_request", "to", "to must come after from"), -1;
    return 0;
}

/* ---- jobs on the thread pool ------------------------------------------------------------- */

enum admin_kind { JOB_LIST, JOB_SHOW, JOB_REPLAY, JOB_KEY_CREATE, JOB_KEY_REVOKE };

/*
 * One read of the decision log, replay or key write, with what it needs copied out of the
 * request: the work runs on a pool thread, and the client may be gone when it is done.
 */
struct admin_job {
    struct epcs_offload base;
    enum admin_kind kind;
    struct epcs_server *server;
    /* A listing's filters, pointing into `params`. */
    struct epcs_query params;
    struct epcs_decision_query query;
    uint64_t id;
    /* Replay: the ruleset the worker ran when asked, held for the job. */
    struct epcs_ruleset *running;
    /* Replay: the field its check's error names (a copy: the error is the work's). */
    char field[128];
    /* Keys: the key to make, or the id to revoke. */
    char partner[EPCS_KEY_PARTNER_MAX];
    enum epcs_role role;
    double rate;
    char key_id[EPCS_KEY_ID_LEN + 1];
    struct epcs_buf out;
};

static struct admin_job *admin_of(struct epcs_offload *base)
{
    return H2O_STRUCT_FROM_MEMBER(struct admin_job, base, base);
}

/* A job for the request's server; NULL after answering 500. */
static struct admin_job *admin_create(h2o_req_t *req, enum admin_kind kind)
{
    struct admin_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        epcs_respond_error(req, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    job->kind = kind;
    job->server = epcs_worker_of(req)->server;
    return job;
}

static void respond_admin(struct epcs_offload *base, h2o_req_t *req)
{
    struct admin_job *job = admin_of(base);
    epcs_offload_send(base, req, job->kind == JOB_KEY_CREATE ? 201 : 200, &job->out);
}

static void admin_free(struct admin_job *job)
{
    epcs_ruleset_release(job->running);
    epcs_buf_free(&job->out);
    free(job);
}

static void cb_admin_destroy(struct epcs_offload *base, int answered)
{
    struct admin_job *job = admin_of(base);
    if (!answered && (job->kind == JOB_KEY_CREATE || job->kind == JOB_KEY_REVOKE))
        epcs_log(EPCS_LOG_INFO, "keys", "%s is done; its client left before the answer",
                 base->ops->what);
    admin_free(job);
}

static void cb_admin_work(struct epcs_offload *base);

static const struct epcs_offload_ops admin_ops[] = {
    [JOB_LIST] = {.what = "listing decisions",
                  .work = cb_admin_work,
                  .respond = respond_admin,
                  .destroy = cb_admin_destroy},
    [JOB_SHOW] = {.what = "reading a decision",
                  .work = cb_admin_work,
                  .respond = respond_admin,
                  .destroy = cb_admin_destroy},
    [JOB_REPLAY] = {.what = "replaying a decision",
                    .work = cb_admin_work,
                    .respond = respond_admin,
                    .destroy = cb_admin_destroy},
    [JOB_KEY_CREATE] = {.what = "creating a key",
                        .work = cb_admin_work,
                        .respond = respond_admin,
                        .destroy = cb_admin_destroy},
    [JOB_KEY_REVOKE] = {.what = "revoking a key",
                        .work = cb_admin_work,
                        .respond = respond_admin,
                        .destroy = cb_admin_destroy},
};

static int admin_start(h2o_req_t *req, struct admin_job *job)
{
    return epcs_offload_start(req, &job->base, &admin_ops[job->kind]);
}

/* ---- decisions ---------------------------------------------------------------------------- */

/* A reader of the log's pool; NULL after choosing the 500. */
static struct epcs_decision_reader *decision_reader(struct admin_job *job)
{
    char err[512];
    struct epcs_decision_reader *db =
        epcs_decision_log_reader_acquire(job->server->decisions, err, sizeof(err));
    if (db == NULL) {
        epcs_log(EPCS_LOG_ERROR, "decisions", "cannot read the decision log: %s", err);
        epcs_offload_fail(&job->base, 500, "internal", NULL, "the decision log cannot be read");
    }
    return db;
}

/* The database behind the decision log is away for now: the client may try again. */
static void log_unavailable(struct admin_job *job, const char *err)
{
    epcs_log(EPCS_LOG_WARN, "decisions", "cannot read the decision log: %s", err);
    epcs_offload_fail(&job->base, 503, "store_unavailable", NULL,
                      "the decision log cannot be reached now; try again");
}

static void list_work(struct admin_job *job)
{
    struct epcs_decision_log *log = job->server->decisions;
    struct epcs_decision_reader *db = decision_reader(job);
    if (db == NULL)
        return;
    char err[256];
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
    int rc = epcs_decision_log_query(log, db, &job->query, &pk, err, sizeof(err));
    epcs_decision_log_reader_release(log, db);
    if (rc == EPCS_DECISION_LOG_UNREACHABLE) {
        log_unavailable(job, err);
        return;
    }
    if (rc != 0) {
        epcs_log(EPCS_LOG_ERROR, "decisions", "query failed: %s", err);
        epcs_offload_fail(&job->base, 500, "internal", NULL, "the decision log query failed");
        return;
    }
    epcs_offload_finish(&job->base, &job->out);
}

/*
 * Reads decision `id` into `original` (and its check, ruleset and date when `request` is not
 * NULL). 0, or -1 after choosing the error: 404, 409 for a case event asked for its check, 500.
 */
static int read_decision(struct admin_job *job, struct epcs_buf *original, struct epcs_buf *request,
                         char *ruleset, size_t ruleset_size, char *date)
{
    struct epcs_decision_log *log = job->server->decisions;
    struct epcs_decision_reader *db = decision_reader(job);
    if (db == NULL)
        return -1;
    msgpack_packer pk;
    msgpack_packer_init(&pk, original, epcs_buf_msgpack_write);
    char err[256];
    unsigned long long id = (unsigned long long)job->id;
    int found = epcs_decision_log_get(log, db, job->id, &pk, request, ruleset, ruleset_size, date,
                                      err, sizeof(err));
    epcs_decision_log_reader_release(log, db);
    if (found == 2)
        epcs_offload_fail(&job->base, 409, "not_a_decision", "id",
                          "%llu is a case event, not a decision: there is no check to replay", id);
    else if (found > 0)
        epcs_offload_fail(&job->base, 404, "unknown_decision", "id", "no decision %llu in the log",
                          id);
    else if (found == EPCS_DECISION_LOG_UNREACHABLE)
        log_unavailable(job, err);
    else if (found < 0)
        epcs_log(EPCS_LOG_ERROR, "decisions", "reading decision %llu: %s", id, err),
            epcs_offload_fail(&job->base, 500, "internal", NULL, "the decision log cannot be read");
    return found == 0 ? 0 : -1;
}

static void show_work(struct admin_job *job)
{
    if (read_decision(job, &job->out, NULL, NULL, 0, NULL) == 0)
        epcs_offload_finish(&job->base, &job->out);
}

/* The check as logged, with the date it was decided for when the client had left it out;
 * decoded into `zone`, which must outlive it as the request bytes must. */
static int check_with_date(msgpack_zone *zone, const char *request, size_t len, const char *date,
                           msgpack_object *check)
{
    size_t offset = 0;
    if (msgpack_unpack(request, len, &offset, zone, check) != MSGPACK_UNPACK_SUCCESS ||
        check->type != MSGPACK_OBJECT_MAP)
        return -1;
    for (uint32_t i = 0; i < check->via.map.size; i++) {
        if (epcs_str_eq(&check->via.map.ptr[i].key, "date"))
            return 0;
    }
    uint32_t size = check->via.map.size;
    msgpack_object_kv *entries = msgpack_zone_malloc(zone, sizeof(*entries) * (size + 1));
    char *date_copy = msgpack_zone_malloc(zone, 10);
    if (entries == NULL || date_copy == NULL)
        return -1;
    memcpy(entries, check->via.map.ptr, sizeof(*entries) * size);
    memcpy(date_copy, date, 10);
    entries[size].key.type = MSGPACK_OBJECT_STR;
    entries[size].key.via.str.ptr = "date";
    entries[size].key.via.str.size = 4;
    entries[size].val.type = MSGPACK_OBJECT_STR;
    entries[size].val.via.str.ptr = date_copy;
    entries[size].val.via.str.size = 10;
    check->via.map.ptr = entries;
    check->via.map.size = size + 1;
    return 0;
}

/* A restored ruleset is a flat directory of files. */
static void remove_scratch_dir(const char *dir)
{
    DIR *listing = opendir(dir);
    struct dirent *entry;
    char path[4200];
    while (listing != NULL && (entry = readdir(listing)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        unlink(path);
    }
    if (listing != NULL)
        closedir(listing);
    if (rmdir(dir) != 0)
        epcs_log(EPCS_LOG_WARN, "decisions", "could not remove %s: %s", dir, strerror(errno));
}

/* An engine of stored ruleset `id`, built on this thread (an engine is one thread's): of the
 * ruleset the worker ran when it is that one, else restored from the rule store. NULL after
 * choosing the error (503 when the worker had no engine, as a check would get). */
static struct epcs_engine *replay_engine(struct admin_job *job, const char *id)
{
    struct epcs_server *server = job->server;
    struct epcs_rule_error err = {.line = 0};
    struct epcs_engine *engine = NULL;
    if (job->running == NULL) {
        epcs_offload_fail(&job->base, 503, "not_ready", NULL, "no rule engine is available");
        return NULL;
    }
    if (strcmp(job->running->id, id) == 0) {
        if ((engine = epcs_engine_create(job->running, &err)) == NULL)
            epcs_offload_fail(&job->base, 503, "not_ready", NULL, "no rule engine is available");
        return engine;
    }
    char dir[] = "/tmp/epcs-replay-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        epcs_offload_fail(&job->base, 500, "internal", NULL, "no scratch directory for the replay");
        return NULL;
    }
    struct epcs_ruleset *ruleset = NULL;
    if (epcs_rule_store_restore(server->rule_store, id, dir) != 0)
        epcs_offload_fail(&job->base, 500, "internal", NULL,
                          "ruleset %s is not in the rule store under %s", id,
                          server->config.data_dir);
    else if ((ruleset = epcs_ruleset_load(dir, server->plugins, &server->config.lua, &err)) ==
                 NULL ||
             (engine = epcs_engine_create(ruleset, &err)) == NULL)
        epcs_offload_fail(&job->base, 500, "internal", NULL, "stored ruleset %s does not load: %s",
                          id, err.message);
    epcs_ruleset_release(ruleset);
    remove_scratch_dir(dir);
    return engine;
}

/* Whether a replayed answer signs as the logged one (verdict, area, article, exception). */
static int same_answer(msgpack_zone *zone, const msgpack_object *logged,
                       const struct epcs_buf *replayed)
{
    const msgpack_object *answer = epcs_map_get(logged, "answer");
    msgpack_object again = {.type = MSGPACK_OBJECT_NIL};
    size_t offset = 0;
    /* An answer that cannot be read back (memory ran out) signs as different. */
    if (replayed->failed || msgpack_unpack(replayed->data, replayed->len, &offset, zone, &again) !=
                                MSGPACK_UNPACK_SUCCESS)
        again.type = MSGPACK_OBJECT_NIL;
    struct epcs_buf before = {0}, after = {0};
    if (answer != NULL)
        epcs_answer_signature(answer, &before);
    epcs_answer_signature(&again, &after);
    int same = answer != NULL && !before.failed && !after.failed && before.len == after.len &&
               memcmp(before.data, after.data, before.len) == 0;
    epcs_buf_free(&before);
    epcs_buf_free(&after);
    return same;
}

/* Decides the logged check again with `engine` and packs {ruleset, same, logged, replayed}. */
static void replay_with(struct admin_job *job, struct epcs_check_ctx *ctx,
                        struct epcs_engine *engine, const struct epcs_buf *original,
                        const struct epcs_buf *request, const char *ruleset, const char *date)
{
    msgpack_object check, logged;
    size_t offset = 0;
    struct epcs_buf replayed = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &replayed, epcs_buf_msgpack_write);
    struct epcs_decision decision = {.id = 0};
    struct epcs_check_error err;
    if (check_with_date(ctx->zone, request->data, request->len, date, &check) != 0 ||
        msgpack_unpack(original->data, original->len, &offset, ctx->zone, &logged) !=
            MSGPACK_UNPACK_SUCCESS) {
        epcs_offload_fail(&job->base, 500, "internal", NULL, "decision %llu is unreadable",
                          (unsigned long long)job->id);
    } else if (epcs_check_run(ctx, engine, &check, &pk, &decision, &err) != EPCS_CHECK_DECIDED) {
        snprintf(job->field, sizeof(job->field), "%s", err.field);
        epcs_offload_fail(&job->base, epcs_check_failure_status(err.kind),
                          epcs_check_failure_name(err.kind), job->field[0] ? job->field : NULL,
                          "replay: %s", err.message);
    } else {
        int same = same_answer(ctx->zone, &logged, &replayed);
        msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
        msgpack_pack_map(&pk, 4);
        epcs_pack_cstr(&pk, "ruleset");
        epcs_pack_cstr(&pk, ruleset);
        epcs_pack_cstr(&pk, "same");
        if (same)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        epcs_pack_cstr(&pk, "logged");
        epcs_buf_append_buf(&job->out, original);
        epcs_pack_cstr(&pk, "replayed");
        epcs_buf_append_buf(&job->out, &replayed);
        epcs_offload_finish(&job->base, &job->out);
    }
    epcs_buf_free(&replayed);
}

static void replay_work(struct admin_job *job)
{
    struct epcs_buf original = {0}, request = {0};
    char ruleset[64] = "", date[11] = "";
    struct epcs_engine *engine = NULL;
    struct epcs_check_ctx *ctx = NULL;
    if (read_decision(job, &original, &request, ruleset, sizeof(ruleset), date) == 0 &&
        (engine = replay_engine(job, ruleset)) != NULL) {
        if ((ctx = epcs_check_ctx_create(job->server->plugins)) == NULL)
            epcs_offload_fail(&job->base, 500, "internal", NULL, "out of memory");
        else
            replay_with(job, ctx, engine, &original, &request, ruleset, date);
    }
    epcs_check_ctx_destroy(ctx);
    epcs_engine_destroy(engine);
    epcs_buf_free(&original);
    epcs_buf_free(&request);
}

struct recent_checks {
    msgpack_zone *zone;
    msgpack_object *items;
    size_t count;
};

static int cb_recent_check(void *ctx, const void *request, size_t len, const char *date)
{
    struct recent_checks *recent = ctx;
    /* Decoded strings point into their buffer, which must outlive this row: copy it. */
    char *copy = msgpack_zone_malloc(recent->zone, len ? len : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, request, len);
    return check_with_date(recent->zone, copy, len, date, &recent->items[recent->count++]);
}

int epcs_recent_checks(struct epcs_decision_log *log, size_t limit, msgpack_zone *zone,
                       msgpack_object *checks, char *err, size_t err_size)
{
    struct recent_checks recent = {
        .zone = zone,
        .items = msgpack_zone_malloc(zone, sizeof(msgpack_object) * (limit ? limit : 1))};
    if (recent.items == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    struct epcs_decision_reader *db = epcs_decision_log_reader_acquire(log, err, err_size);
    if (db == NULL)
        return -1;
    int rc = epcs_decision_log_recent(log, db, limit, cb_recent_check, &recent, err, err_size);
    epcs_decision_log_reader_release(log, db);
    if (rc != 0)
        return rc;
    /* Newest first from the log; oldest first in the report, as they were decided. */
    for (size_t i = 0; i < recent.count / 2; i++) {
        msgpack_object swap = recent.items[i];
        recent.items[i] = recent.items[recent.count - 1 - i];
        recent.items[recent.count - 1 - i] = swap;
    }
    checks->type = MSGPACK_OBJECT_ARRAY;
    checks->via.array.size = (uint32_t)recent.count;
    checks->via.array.ptr = recent.items;
    return 0;
}

/* Whether the decision log is off, after answering 404 if it is. */
static int log_is_off(h2o_req_t *req)
{
    if (epcs_worker_of(req)->server->decisions != NULL)
        return 0;
    epcs_respond_error(req, 404, "not_found", NULL,
                       "the decision log is off (epcsd runs with --audit off)");
    return 1;
}

static int list_decisions(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct admin_job *job = admin_create(req, JOB_LIST);
    if (job == NULL)
        return 0;
    /* The filters point into the job's copy of the query string. */
    if (read_decision_query(req, &job->query, &job->params) != 0 || log_is_off(req)) {
        admin_free(job);
        return 0;
    }
    return admin_start(req, job);
}

static int show_or_replay(h2o_req_t *req, uint64_t id, int replay)
{
    if (log_is_off(req))
        return 0;
    /* Without an engine (memory ran short) the decision is still looked up first: 503 after. */
    struct epcs_engine *running = replay ? epcs_worker_engine(epcs_worker_of(req)) : NULL;
    struct admin_job *job = admin_create(req, replay ? JOB_REPLAY : JOB_SHOW);
    if (job == NULL)
        return 0;
    job->id = id;
    if (running != NULL) {
        job->running = epcs_engine_ruleset(running);
        epcs_ruleset_retain(job->running);
    }
    return admin_start(req, job);
}

/* The id of /v1/decisions/{id}: 0, or -1 after answering 404 (too long for one) or 400. */
static int read_decision_id(h2o_req_t *req, h2o_iovec_t text, uint64_t *id)
{
    if (text.len > EPCS_ID_TEXT_MAX)
        return epcs_respond_error(req, 404, "not_found", NULL, "no route %.*s",
                                  (int)req->path_normalized.len, req->path_normalized.base),
               -1;
    if (epcs_parse_unsigned_span(text.base, text.len, id) != 0)
        return epcs_respond_error(req, 400, "bad_request", "id",
                                  "a decision id is a whole number, as in the verdict's decision"),
               -1;
    return 0;
}

static int show_decision(h2o_req_t *req, h2o_iovec_t param)
{
    uint64_t id;
    return read_decision_id(req, param, &id) != 0 ? 0 : show_or_replay(req, id, 0);
}

static int replay_decision(h2o_req_t *req, h2o_iovec_t param)
{
    uint64_t id;
    return read_decision_id(req, param, &id) != 0 ? 0 : show_or_replay(req, id, 1);
}

/* ---- keys --------------------------------------------------------------------------------- */

/* A key as the routes show it: a stored record's fields, or a key's in memory. */
#define PACK_KEY(pk, key, token)                                                                   \
    pack_key(pk, (key)->id, (key)->partner, (key)->role, (key)->rate, (key)->created, token)

static void pack_key(msgpack_packer *pk, const char *id, const char *partner, enum epcs_role role,
                     double rate, const char *created, const char *token)
{
    msgpack_pack_map(pk, token != NULL ? 6 : 5);
    epcs_pack_cstr(pk, "id");
    epcs_pack_cstr(pk, id);
    epcs_pack_cstr(pk, "partner");
    epcs_pack_cstr(pk, partner);
    epcs_pack_cstr(pk, "role");
    epcs_pack_cstr(pk, epcs_role_name(role));
    epcs_pack_cstr(pk, "rate");
    msgpack_pack_double(pk, rate);
    epcs_pack_cstr(pk, "created");
    epcs_pack_cstr(pk, created);
    if (token != NULL) {
        epcs_pack_cstr(pk, "token");
        epcs_pack_cstr(pk, token);
    }
}

/* The database behind the key store is away for now: the client may try again. */
static void key_store_unavailable(struct admin_job *job)
{
    epcs_offload_fail(&job->base, 503, "store_unavailable", NULL,
                      "the key store cannot be reached now; try again");
}

/* Adds the key to the key store (durable before it returns) and reads the keys again. */
static void create_key_work(struct admin_job *job)
{
    struct epcs_server *server = job->server;
    char token[EPCS_KEY_TOKEN_LEN + 1], err[512];
    struct epcs_key_record key;
    int rc = epcs_key_store_create(server->key_store, job->partner, job->role, job->rate, token,
                                   &key, err, sizeof(err));
    if (rc == EPCS_KEY_STORE_UNREACHABLE) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot add a key: %s", err);
        key_store_unavailable(job);
        return;
    }
    if (rc != 0) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot add a key: %s", err);
        int theirs = strstr(err, "partner") != NULL;
        epcs_offload_fail(&job->base, theirs ? 400 : 500, theirs ? "bad_request" : "internal",
                          theirs ? "partner" : NULL, "%s", err);
        return;
    }
    epcs_log(EPCS_LOG_INFO, "keys", "key %s for partner %s (%s) created by %s", key.id, key.partner,
             epcs_role_name(key.role), job->base.partner);
    epcs_server_reload_keys(server, 1);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
    PACK_KEY(&pk, &key, token);
    epcs_offload_finish(&job->base, &job->out);
}

static void revoke_key_work(struct admin_job *job)
{
    struct epcs_server *server = job->server;
    char err[512];
    int rc = epcs_key_store_revoke(server->key_store, job->key_id, err, sizeof(err));
    if (rc == EPCS_KEY_STORE_UNREACHABLE) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot revoke key %s: %s", job->key_id, err);
        key_store_unavailable(job);
        return;
    }
    if (rc < 0) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot revoke key %s: %s", job->key_id, err);
        epcs_offload_fail(&job->base, 500, "internal", NULL, "%s", err);
        return;
    }
    if (rc > 0) {
        epcs_offload_fail(&job->base, 404, "unknown_key", "id", "no key %s", job->key_id);
        return;
    }
    epcs_log(EPCS_LOG_INFO, "keys", "key %s revoked by %s", job->key_id, job->base.partner);
    epcs_server_reload_keys(server, 1);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
    msgpack_pack_map(&pk, 1);
    epcs_pack_cstr(&pk, "revoked");
    epcs_pack_cstr(&pk, job->key_id);
    epcs_offload_finish(&job->base, &job->out);
}

static void cb_admin_work(struct epcs_offload *base)
{
    struct admin_job *job = admin_of(base);
    switch (job->kind) {
    case JOB_LIST:
        list_work(job);
        break;
    case JOB_SHOW:
        show_work(job);
        break;
    case JOB_REPLAY:
        replay_work(job);
        break;
    case JOB_KEY_CREATE:
        create_key_work(job);
        break;
    case JOB_KEY_REVOKE:
        revoke_key_work(job);
        break;
    }
}

static int create_key(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    msgpack_object body;
    if (epcs_read_body(req, worker->server->config.max_body, &body, NULL) != 0)
        return 0;
    char partner[EPCS_KEY_PARTNER_MAX] = "", role[16] = "";
    double rate = 0;
    for (uint32_t i = 0; body.type == MSGPACK_OBJECT_MAP && i < body.via.map.size; i++) {
        const msgpack_object *key = &body.via.map.ptr[i].key;
        const msgpack_object *value = &body.via.map.ptr[i].val;
        if (epcs_str_eq(key, "partner") && value->type == MSGPACK_OBJECT_STR &&
            value->via.str.size < sizeof(partner))
            snprintf(partner, sizeof(partner), "%.*s", (int)value->via.str.size,
                     value->via.str.ptr);
        else if (epcs_str_eq(key, "role") && value->type == MSGPACK_OBJECT_STR &&
                 value->via.str.size < sizeof(role))
            snprintf(role, sizeof(role), "%.*s", (int)value->via.str.size, value->via.str.ptr);
        else if (epcs_str_eq(key, "rate") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            rate = (double)value->via.u64;
        else if (epcs_str_eq(key, "rate") && value->type == MSGPACK_OBJECT_FLOAT64 &&
                 value->via.f64 >= 0)
            rate = value->via.f64;
        else
            return epcs_respond_error(req, 400, "bad_request", NULL,
                                      "the body is {partner: id, role: partner|staff|admin, "
                                      "rate?: requests a second}; '%.*s' is not one of them or "
                                      "has the wrong type",
                                      key->type == MSGPACK_OBJECT_STR ? (int)key->via.str.size : 0,
                                      key->type == MSGPACK_OBJECT_STR ? key->via.str.ptr : "");
    }
    if (partner[0] == '\0')
        return epcs_respond_error(req, 400, "bad_request", "partner", "partner is required");
    if (epcs_role_parse(role) == EPCS_ROLE_NONE)
        return epcs_respond_error(req, 400, "bad_request", "role",
                                  "role must be partner, staff or admin");
    struct admin_job *job = admin_create(req, JOB_KEY_CREATE);
    if (job == NULL)
        return 0;
    memcpy(job->partner, partner, sizeof(partner));
    job->role = epcs_role_parse(role);
    job->rate = rate;
    return admin_start(req, job);
}

static int list_keys(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_keyring *keyring = epcs_worker_keyring(worker);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 1);
    epcs_pack_cstr(pk, "keys");
    msgpack_pack_array(pk, keyring->count);
    for (size_t i = 0; i < keyring->count; i++)
        PACK_KEY(pk, &keyring->keys[i], NULL);
    return epcs_response_send(req, 200, epcs_response_format(req));
}

static int revoke_key(h2o_req_t *req, h2o_iovec_t id)
{
    if (id.len != EPCS_KEY_ID_LEN)
        return epcs_respond_error(req, 404, "unknown_key", "id", "no key %.*s",
                                  (int)(id.len > 32 ? 32 : id.len), id.base);
    struct admin_job *job = admin_create(req, JOB_KEY_REVOKE);
    if (job == NULL)
        return 0;
    memcpy(job->key_id, id.base, id.len);
    job->key_id[id.len] = '\0';
    return admin_start(req, job);
}

static int no_keys(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    return epcs_respond_error(req, 404, "not_found", NULL,
                              "epcsd runs with --no-auth: there are no keys");
}

/* Paths under /v1/decisions/ that name no decision (or its replay) are 404 for staff. */
static const struct epcs_route_row decision_rows[] = {
    {"GET", "/v1/decisions", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "decisions", list_decisions},
    {"GET", "/v1/decisions/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "decisions", show_decision},
    {"POST", "/v1/decisions/{id}/replay", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "decisions",
     replay_decision},
    {NULL, "/v1/decisions/", EPCS_MATCH_PREFIX, EPCS_ROLE_STAFF, "decisions", NULL},
};

const struct epcs_route_group epcs_decision_routes = {decision_rows, sizeof(decision_rows) /
                                                                         sizeof(decision_rows[0])};

/* A key id is whatever follows the prefix: a wrong one is an unknown key, not a wrong path. */
static const struct epcs_route_row key_rows[] = {
    {"GET", "/v1/admin/keys", EPCS_MATCH_EXACT, EPCS_ROLE_ADMIN, "admin_keys", list_keys},
    {"POST", "/v1/admin/keys", EPCS_MATCH_EXACT, EPCS_ROLE_ADMIN, "admin_keys", create_key},
    {"DELETE", "/v1/admin/keys/", EPCS_MATCH_PREFIX, EPCS_ROLE_ADMIN, "admin_keys", revoke_key},
};

const struct epcs_route_group epcs_key_routes = {key_rows, sizeof(key_rows) / sizeof(key_rows[0])};

static const struct epcs_route_row no_key_rows[] = {
    {NULL, "/v1/admin/keys", EPCS_MATCH_EXACT, EPCS_ROLE_ADMIN, "admin_keys", no_keys},
    {NULL, "/v1/admin/keys/", EPCS_MATCH_PREFIX, EPCS_ROLE_ADMIN, "admin_keys", no_keys},
};

const struct epcs_route_group epcs_no_key_routes = {no_key_rows,
                                                    sizeof(no_key_rows) / sizeof(no_key_rows[0])};
