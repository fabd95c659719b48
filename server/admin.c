/* Staff and admin routes: the decision log (list, show, replay) and API keys. */
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
#include "query.h"
#include "rule_store.h"
#include "server.h"

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

/* ---- decisions ---------------------------------------------------------------------------- */

static sqlite3 *decision_reader(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    if (worker->server->decisions == NULL) {
        epcs_respond_error(req, 404, "not_found", NULL,
                           "the decision log is off (epcsd runs with --audit off)");
        return NULL;
    }
    if (worker->reader == NULL) {
        char err[512];
        worker->reader =
            epcs_decision_log_reader(worker->server->config.data_dir, err, sizeof(err));
        if (worker->reader == NULL) {
            epcs_log(EPCS_LOG_ERROR, "decisions", "cannot read the decision log: %s", err);
            epcs_respond_error(req, 500, "internal", NULL, "the decision log cannot be read");
        }
    }
    return worker->reader;
}

static int list_decisions(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_decision_query query;
    struct epcs_query params;
    if (read_decision_query(req, &query, &params) != 0)
        return 0;
    sqlite3 *reader = decision_reader(req);
    if (reader == NULL)
        return 0;
    char err[256];
    if (epcs_decision_log_query(reader, &query, epcs_response_begin(worker), err, sizeof(err)) !=
        0) {
        epcs_log(EPCS_LOG_ERROR, "decisions", "query failed: %s", err);
        return epcs_respond_error(req, 500, "internal", NULL, "the decision log query failed");
    }
    return epcs_response_send(req, 200, epcs_response_format(req));
}

/* The check as logged, with the date it was decided for when the client had left it out. */
static int check_with_date(struct epcs_worker *worker, const char *request, size_t len,
                           const char *date, msgpack_object *check)
{
    size_t offset = 0;
    if (msgpack_unpack(request, len, &offset, &worker->zone, check) != MSGPACK_UNPACK_SUCCESS ||
        check->type != MSGPACK_OBJECT_MAP)
        return -1;
    for (uint32_t i = 0; i < check->via.map.size; i++) {
        if (epcs_str_eq(&check->via.map.ptr[i].key, "date"))
            return 0;
    }
    uint32_t size = check->via.map.size;
    msgpack_object_kv *entries = msgpack_zone_malloc(&worker->zone, sizeof(*entries) * (size + 1));
    char *date_copy = msgpack_zone_malloc(&worker->zone, 10);
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

/* The engine of stored ruleset `id`: the running one when it is that, else rebuilt from the
 * rule store. `*owned` is set when the caller must destroy it. */
static struct epcs_engine *engine_for_version(h2o_req_t *req, const char *id, int *owned)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_server *server = worker->server;
    *owned = 0;
    struct epcs_engine *running = epcs_engine_or_503(req);
    if (running == NULL)
        return NULL;
    if (strcmp(epcs_engine_ruleset(running)->id, id) == 0)
        return running;
    char dir[] = "/tmp/epcs-replay-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        epcs_respond_error(req, 500, "internal", NULL, "no scratch directory for the replay");
        return NULL;
    }
    struct epcs_engine *engine = NULL;
    struct epcs_rule_error err = {.line = 0};
    struct epcs_ruleset *ruleset = NULL;
    if (epcs_rule_store_restore(server->config.data_dir, id, dir) != 0) {
        epcs_respond_error(req, 500, "internal", NULL,
                           "ruleset %s is not in the rule store under %s", id,
                           server->config.data_dir);
    } else if ((ruleset = epcs_ruleset_load(dir, server->plugins, &server->config.lua, &err)) ==
                   NULL ||
               (engine = epcs_engine_create(ruleset, &err)) == NULL) {
        epcs_respond_error(req, 500, "internal", NULL, "stored ruleset %s does not load: %s", id,
                           err.message);
    }
    epcs_ruleset_release(ruleset);
    remove_scratch_dir(dir);
    *owned = engine != NULL;
    return engine;
}

static int show_or_replay(h2o_req_t *req, uint64_t id, int replay)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    sqlite3 *reader = decision_reader(req);
    if (reader == NULL)
        return 0;
    struct epcs_buf original = {0}, request = {0};
    msgpack_packer original_pk;
    msgpack_packer_init(&original_pk, &original, epcs_buf_msgpack_write);
    char ruleset_id[64] = "", date[11] = "", err[256];
    int found = epcs_decision_log_get(reader, id, &original_pk, replay ? &request : NULL,
                                      ruleset_id, sizeof(ruleset_id), date, err, sizeof(err));
    int rc = 0;
    if (found == 2) {
        rc = epcs_respond_error(req, 409, "not_a_decision", "id",
                                "%llu is a case event, not a decision: there is no check to "
                                "replay",
                                (unsigned long long)id);
        goto done;
    }
    if (found != 0) {
        if (found < 0)
            epcs_log(EPCS_LOG_ERROR, "decisions", "reading decision %llu: %s",
                     (unsigned long long)id, err);
        rc = found > 0 ? epcs_respond_error(req, 404, "unknown_decision", "id",
                                            "no decision %llu in the log", (unsigned long long)id)
                       : epcs_respond_error(req, 500, "internal", NULL,
                                            "the decision log cannot be read");
        goto done;
    }
    if (!replay) {
        msgpack_packer *pk = epcs_response_begin(worker);
        epcs_buf_append_buf(pk->data, &original);
        rc = epcs_response_send(req, 200, epcs_response_format(req));
        goto done;
    }
    int owned;
    struct epcs_engine *engine = engine_for_version(req, ruleset_id, &owned);
    if (engine == NULL)
        goto done;
    msgpack_object check, logged;
    size_t offset = 0;
    struct epcs_buf replayed = {0};
    msgpack_packer replayed_pk;
    msgpack_packer_init(&replayed_pk, &replayed, epcs_buf_msgpack_write);
    struct epcs_decision decision = {.id = 0};
    struct epcs_check_error check_err;
    if (check_with_date(worker, request.data, request.len, date, &check) != 0 ||
        msgpack_unpack(original.data, original.len, &offset, &worker->zone, &logged) !=
            MSGPACK_UNPACK_SUCCESS) {
        rc = epcs_respond_error(req, 500, "internal", NULL, "decision %llu is unreadable",
                                (unsigned long long)id);
    } else if (epcs_check_run(worker, engine, &check, &replayed_pk, &decision, &check_err) != 0) {
        rc = epcs_respond_error(req, check_err.status, check_err.code,
                                check_err.field[0] ? check_err.field : NULL, "replay: %s",
                                check_err.message);
    } else {
        const msgpack_object *answer = NULL;
        for (uint32_t i = 0; logged.type == MSGPACK_OBJECT_MAP && i < logged.via.map.size; i++) {
            if (epcs_str_eq(&logged.via.map.ptr[i].key, "answer"))
                answer = &logged.via.map.ptr[i].val;
        }
        msgpack_object again = {.type = MSGPACK_OBJECT_NIL};
        offset = 0;
        /* An answer that cannot be read back (memory ran out) signs as different. */
        if (replayed.failed || msgpack_unpack(replayed.data, replayed.len, &offset, &worker->zone,
                                              &again) != MSGPACK_UNPACK_SUCCESS)
            again.type = MSGPACK_OBJECT_NIL;
        struct epcs_buf before = {0}, after = {0};
        if (answer != NULL)
            epcs_answer_signature(answer, &before);
        epcs_answer_signature(&again, &after);
        int same = answer != NULL && before.len == after.len &&
                   memcmp(before.data, after.data, before.len) == 0;
        epcs_buf_free(&before);
        epcs_buf_free(&after);
        msgpack_packer *pk = epcs_response_begin(worker);
        msgpack_pack_map(pk, 4);
        epcs_pack_cstr(pk, "ruleset");
        epcs_pack_cstr(pk, ruleset_id);
        epcs_pack_cstr(pk, "same");
        if (same)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        epcs_pack_cstr(pk, "logged");
        epcs_buf_append_buf(pk->data, &original);
        epcs_pack_cstr(pk, "replayed");
        epcs_buf_append_buf(pk->data, &replayed);
        rc = epcs_response_send(req, 200, epcs_response_format(req));
    }
    epcs_buf_free(&replayed);
    if (owned)
        epcs_engine_destroy(engine);
done:
    epcs_buf_free(&original);
    epcs_buf_free(&request);
    return rc;
}

struct recent_checks {
    struct epcs_worker *worker;
    msgpack_object *items;
    size_t count;
};

static int cb_recent_check(void *ctx, const void *request, size_t len, const char *date)
{
    struct recent_checks *recent = ctx;
    /* Decoded strings point into their buffer, which must outlive this row: copy it. */
    char *copy = msgpack_zone_malloc(&recent->worker->zone, len ? len : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, request, len);
    return check_with_date(recent->worker, copy, len, date, &recent->items[recent->count++]);
}

int epcs_recent_checks(h2o_req_t *req, size_t limit, msgpack_object *checks)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    sqlite3 *reader = decision_reader(req);
    if (reader == NULL)
        return -1;
    struct recent_checks recent = {
        .worker = worker,
        .items = msgpack_zone_malloc(&worker->zone, sizeof(msgpack_object) * (limit ? limit : 1))};
    char err[256];
    if (recent.items == NULL ||
        epcs_decision_log_recent(reader, limit, cb_recent_check, &recent, err, sizeof(err)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "decisions", "reading recent checks: %s",
                 recent.items == NULL ? "out of memory" : err);
        epcs_respond_error(req, 500, "internal", NULL, "the decision log cannot be read");
        return -1;
    }
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

int epcs_handle_decisions(h2o_req_t *req, const char *rest, size_t len)
{
    if (len == 0)
        return epcs_method_is(req, "GET") ? list_decisions(req)
                                          : epcs_method_not_allowed(req, "GET");
    const char *slash = memchr(rest, '/', len);
    size_t id_len = slash != NULL ? (size_t)(slash - rest) : len;
    int replay = slash != NULL && h2o_memis(slash, len - id_len, H2O_STRLIT("/replay"));
    uint64_t id;
    if ((slash != NULL && !replay) || id_len == 0 || id_len > EPCS_ID_TEXT_MAX)
        return epcs_respond_error(req, 404, "not_found", NULL, "no route %.*s",
                                  (int)req->path_normalized.len, req->path_normalized.base);
    if (epcs_parse_unsigned_span(rest, id_len, &id) != 0)
        return epcs_respond_error(req, 400, "bad_request", "id",
                                  "a decision id is a whole number, as in the verdict's decision");
    if (replay)
        return epcs_method_is(req, "POST") ? show_or_replay(req, id, 1)
                                           : epcs_method_not_allowed(req, "POST");
    return epcs_method_is(req, "GET") ? show_or_replay(req, id, 0)
                                      : epcs_method_not_allowed(req, "GET");
}

/* ---- keys --------------------------------------------------------------------------------- */

static void pack_key(msgpack_packer *pk, const struct epcs_key *key, const char *token)
{
    msgpack_pack_map(pk, token != NULL ? 6 : 5);
    epcs_pack_cstr(pk, "id");
    epcs_pack_cstr(pk, key->id);
    epcs_pack_cstr(pk, "partner");
    epcs_pack_cstr(pk, key->partner);
    epcs_pack_cstr(pk, "role");
    epcs_pack_cstr(pk, epcs_role_name(key->role));
    epcs_pack_cstr(pk, "rate");
    msgpack_pack_double(pk, key->rate);
    epcs_pack_cstr(pk, "created");
    epcs_pack_cstr(pk, key->created);
    if (token != NULL) {
        epcs_pack_cstr(pk, "token");
        epcs_pack_cstr(pk, token);
    }
}

static int create_key(h2o_req_t *req)
{
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
    char token[EPCS_KEY_TOKEN_LEN + 1], err[512];
    struct epcs_key key;
    if (epcs_keys_file_add(worker->server->keys_path, partner, epcs_role_parse(role), rate, token,
                           &key, err, sizeof(err)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot add a key: %s", err);
        return epcs_respond_error(req, strstr(err, "partner") != NULL ? 400 : 500,
                                  strstr(err, "partner") != NULL ? "bad_request" : "internal",
                                  strstr(err, "partner") != NULL ? "partner" : NULL, "%s", err);
    }
    epcs_log(EPCS_LOG_INFO, "keys", "key %s for partner %s (%s) created by %s", key.id, key.partner,
             epcs_role_name(key.role), worker->partner);
    epcs_server_reload_keys(worker->server, 1);
    pack_key(epcs_response_begin(worker), &key, token);
    return epcs_response_send(req, 201, epcs_response_format(req));
}

int epcs_handle_admin_keys(h2o_req_t *req, const char *rest, size_t len)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    if (worker->server->config.no_auth)
        return epcs_respond_error(req, 404, "not_found", NULL,
                                  "epcsd runs with --no-auth: there are no keys");
    if (len == 0) {
        if (epcs_method_is(req, "POST"))
            return create_key(req);
        if (!epcs_method_is(req, "GET"))
            return epcs_method_not_allowed(req, "GET, POST");
        struct epcs_keyring *keyring = epcs_worker_keyring(worker);
        msgpack_packer *pk = epcs_response_begin(worker);
        msgpack_pack_map(pk, 1);
        epcs_pack_cstr(pk, "keys");
        msgpack_pack_array(pk, keyring->count);
        for (size_t i = 0; i < keyring->count; i++)
            pack_key(pk, &keyring->keys[i], NULL);
        return epcs_response_send(req, 200, epcs_response_format(req));
    }
    if (!epcs_method_is(req, "DELETE"))
        return epcs_method_not_allowed(req, "DELETE");
    char id[EPCS_KEY_ID_LEN + 1], err[512];
    if (len != EPCS_KEY_ID_LEN)
        return epcs_respond_error(req, 404, "unknown_key", "id", "no key %.*s",
                                  (int)(len > 32 ? 32 : len), rest);
    memcpy(id, rest, len);
    id[len] = '\0';
    int rc = epcs_keys_file_revoke(worker->server->keys_path, id, err, sizeof(err));
    if (rc < 0) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot revoke key %s: %s", id, err);
        return epcs_respond_error(req, 500, "internal", NULL, "%s", err);
    }
    if (rc > 0)
        return epcs_respond_error(req, 404, "unknown_key", "id", "no key %s", id);
    epcs_log(EPCS_LOG_INFO, "keys", "key %s revoked by %s", id, worker->partner);
    epcs_server_reload_keys(worker->server, 1);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 1);
    epcs_pack_cstr(pk, "revoked");
    epcs_pack_cstr(pk, id);
    return epcs_response_send(req, 200, epcs_response_format(req));
}
