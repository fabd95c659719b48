/* The read-only endpoints: health, areas, elections and their calendars. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "ical.h"
#include "impact.h"
#include "log.h"
#include "rule_store.h"
#include "server.h"

static const char *fact_type_name(enum epcs_fact_type type)
{
    switch (type) {
    case EPCS_FACT_BOOL:
        return "boolean";
    case EPCS_FACT_ENUM:
        return "enum";
    case EPCS_FACT_DATE:
        return "date";
    case EPCS_FACT_STRING:
        return "string";
    }
    return "?";
}

static void pack_versions(msgpack_packer *pk, const struct epcs_area_rules *area);

int epcs_handle_healthz(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 3);
    epcs_pack_cstr(pk, "status");
    epcs_pack_cstr(pk, "ok");
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, epcs_engine_ruleset(engine)->id);
    epcs_pack_cstr(pk, "areas");
    msgpack_pack_uint64(pk, worker->server->plugins->count);
    return epcs_response_send(req, 200, epcs_response_format(req));
}

static void pack_string_list(msgpack_packer *pk, const char *const *items)
{
    size_t count = 0;
    while (items[count] != NULL)
        count++;
    msgpack_pack_array(pk, count);
    for (size_t i = 0; i < count; i++)
        epcs_pack_cstr(pk, items[i]);
}

static void pack_facts(msgpack_packer *pk, const struct epcs_fact_spec *facts)
{
    size_t count = 0;
    while (facts != NULL && facts[count].path != NULL)
        count++;
    msgpack_pack_array(pk, count);
    for (size_t i = 0; i < count; i++) {
        msgpack_pack_map(pk, facts[i].values != NULL ? 3 : 2);
        epcs_pack_cstr(pk, "path");
        epcs_pack_cstr(pk, facts[i].path);
        epcs_pack_cstr(pk, "type");
        epcs_pack_cstr(pk, fact_type_name(facts[i].type));
        if (facts[i].values != NULL) {
            epcs_pack_cstr(pk, "values");
            pack_string_list(pk, facts[i].values);
        }
    }
}

int epcs_handle_areas(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    const struct epcs_plugin_set *plugins = worker->server->plugins;
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 2);
    epcs_pack_cstr(pk, "areas");
    msgpack_pack_array(pk, plugins->count);
    for (size_t i = 0; i < plugins->count; i++) {
        const struct epcs_plugin *desc = plugins->items[i].desc;
        const struct epcs_area_rules *area = &ruleset->areas[i];
        msgpack_pack_map(pk, 7);
        epcs_pack_cstr(pk, "name");
        epcs_pack_cstr(pk, desc->name);
        epcs_pack_cstr(pk, "article");
        epcs_pack_cstr(pk, desc->article);
        epcs_pack_cstr(pk, "description");
        epcs_pack_cstr(pk, desc->description);
        epcs_pack_cstr(pk, "rule_file");
        epcs_pack_cstr(pk, desc->rule_file);
        epcs_pack_cstr(pk, "activities");
        pack_string_list(pk, desc->activity_kinds);
        epcs_pack_cstr(pk, "facts");
        pack_facts(pk, desc->facts);
        epcs_pack_cstr(pk, "versions");
        pack_versions(pk, area);
    }
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
    return epcs_response_send(req, 200, epcs_response_format(req));
}

static void pack_versions(msgpack_packer *pk, const struct epcs_area_rules *area)
{
    msgpack_pack_array(pk, area->version_count);
    for (size_t v = 0; v < area->version_count; v++) {
        const struct epcs_rule_version *version = &area->versions[v];
        msgpack_pack_map(pk, version->has_promulgated ? 3 : 2);
        epcs_pack_cstr(pk, "id");
        epcs_pack_cstr(pk, version->id);
        epcs_pack_cstr(pk, "effective_from");
        epcs_pack_day(pk, version->effective_from);
        if (version->has_promulgated) {
            epcs_pack_cstr(pk, "promulgated");
            epcs_pack_day(pk, version->promulgated);
        }
    }
}

int epcs_handle_rules(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    const struct epcs_plugin_set *plugins = worker->server->plugins;
    char loaded[32];
    struct tm tm;
    gmtime_r(&ruleset->loaded_at, &tm);
    strftime(loaded, sizeof(loaded), "%Y-%m-%dT%H:%M:%SZ", &tm);
    struct epcs_rules_state state;
    epcs_server_rules_state(worker->server, &state);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 6 + (ruleset->label != NULL) + state.refused);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
    /* Served from the rule store, not the directory: the directory failed at start. */
    epcs_pack_cstr(pk, "fallback");
    if (state.fallback)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (state.refused) {
        char at[32];
        struct tm refused_tm;
        gmtime_r(&state.refused_at, &refused_tm);
        strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &refused_tm);
        epcs_pack_cstr(pk, "refused");
        msgpack_pack_map(pk, 4);
        epcs_pack_cstr(pk, "at");
        epcs_pack_cstr(pk, at);
        epcs_pack_cstr(pk, "file");
        epcs_pack_cstr(pk, state.error.file);
        epcs_pack_cstr(pk, "line");
        msgpack_pack_int(pk, state.error.line);
        epcs_pack_cstr(pk, "message");
        epcs_pack_cstr(pk, state.error.message);
    }
    if (ruleset->label != NULL) {
        epcs_pack_cstr(pk, "label");
        epcs_pack_cstr(pk, ruleset->label);
    }
    epcs_pack_cstr(pk, "directory");
    epcs_pack_cstr(pk, ruleset->dir);
    epcs_pack_cstr(pk, "loaded_at");
    epcs_pack_cstr(pk, loaded);
    epcs_pack_cstr(pk, "files");
    msgpack_pack_array(pk, ruleset->file_count);
    for (size_t i = 0; i < ruleset->file_count; i++) {
        const struct epcs_rule_file *file = &ruleset->files[i];
        msgpack_pack_map(pk, 4);
        epcs_pack_cstr(pk, "name");
        epcs_pack_cstr(pk, file->name);
        epcs_pack_cstr(pk, "sha256");
        epcs_pack_cstr(pk, file->sha256);
        epcs_pack_cstr(pk, "bytes");
        msgpack_pack_uint64(pk, file->length);
        epcs_pack_cstr(pk, "area");
        if (i == 0)
            msgpack_pack_nil(pk);
        else
            epcs_pack_cstr(pk, plugins->items[i - 1].desc->name);
    }
    epcs_pack_cstr(pk, "areas");
    msgpack_pack_array(pk, plugins->count);
    for (size_t i = 0; i < plugins->count; i++) {
        msgpack_pack_map(pk, 2);
        epcs_pack_cstr(pk, "name");
        epcs_pack_cstr(pk, plugins->items[i].desc->name);
        epcs_pack_cstr(pk, "versions");
        pack_versions(pk, &ruleset->areas[i]);
    }
    return epcs_response_send(req, 200, epcs_response_format(req));
}

static void pack_election(msgpack_packer *pk, const struct epcs_election *election)
{
    msgpack_pack_map(pk, 6 + (election->has_cause_confirmed ? 1 : 0));
    epcs_pack_cstr(pk, "id");
    epcs_pack_cstr(pk, election->id);
    epcs_pack_cstr(pk, "name");
    epcs_pack_cstr(pk, election->name);
    epcs_pack_cstr(pk, "name_ko");
    epcs_pack_cstr(pk, election->name_ko);
    epcs_pack_cstr(pk, "day");
    epcs_pack_day(pk, election->day);
    epcs_pack_cstr(pk, "kind");
    epcs_pack_cstr(pk, election->kind);
    epcs_pack_cstr(pk, "office");
    epcs_pack_cstr(pk, election->office);
    if (election->has_cause_confirmed) {
        epcs_pack_cstr(pk, "cause_confirmed");
        epcs_pack_day(pk, election->cause_confirmed);
    }
}

int epcs_handle_elections(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 2);
    epcs_pack_cstr(pk, "elections");
    msgpack_pack_array(pk, ruleset->election_count);
    for (size_t i = 0; i < ruleset->election_count; i++)
        pack_election(pk, &ruleset->elections[i]);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
    return epcs_response_send(req, 200, epcs_response_format(req));
}

/* The items sit back to back in worker->scratch; read them back as one array for iCalendar. */
static int send_icalendar(h2o_req_t *req, const struct epcs_ruleset *ruleset,
                          const struct epcs_election *election, size_t count)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    msgpack_object items = {.type = MSGPACK_OBJECT_ARRAY};
    msgpack_object *slots = msgpack_zone_malloc(&worker->zone, sizeof(*slots) * (count + 1));
    size_t offset = 0;
    for (size_t i = 0; slots != NULL && i < count; i++) {
        if (msgpack_unpack(worker->scratch.data, worker->scratch.len, &offset, &worker->zone,
                           &slots[i]) < 0)
            slots = NULL;
    }
    epcs_buf_reset(&worker->json);
    if (slots == NULL) {
        epcs_log(EPCS_LOG_ERROR, "http", "cannot read calendar items back");
        return epcs_respond_error(req, 500, "internal", NULL, "calendar could not be built");
    }
    items.via.array.ptr = slots;
    items.via.array.size = (uint32_t)count;
    if (epcs_ical_render(election, &items, ruleset->id, ruleset->loaded_at, &worker->json) != 0)
        return epcs_respond_error(req, 500, "internal", NULL, "calendar could not be built");
    return epcs_response_send_bytes(req, 200, "text/calendar; charset=utf-8", worker->json.data,
                                    worker->json.len);
}

int epcs_handle_election(h2o_req_t *req, const char *id, size_t len, int calendar)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    const struct epcs_election *election = epcs_ruleset_election(ruleset, id, len);
    if (election == NULL)
        return epcs_respond_error(req, 404, "unknown_election", "election",
                                  "no election '%.*s'; GET /v1/elections lists them",
                                  (int)(len > 64 ? 64 : len), id);
    if (!calendar) {
        msgpack_packer *pk = epcs_response_begin(worker);
        msgpack_pack_map(pk, 2);
        epcs_pack_cstr(pk, "election");
        pack_election(pk, election);
        epcs_pack_cstr(pk, "ruleset");
        epcs_pack_cstr(pk, ruleset->id);
        return epcs_response_send(req, 200, epcs_response_format(req));
    }
    /* Items go to the scratch buffer first: their count is known only once every area ran. */
    const struct epcs_plugin_set *plugins = worker->server->plugins;
    epcs_buf_reset(&worker->scratch);
    size_t items = 0;
    for (size_t i = 0; i < plugins->count; i++) {
        struct epcs_calendar listing = {.engine = engine,
                                        .area_index = i,
                                        .election = election,
                                        .packer = &worker->scratch_packer};
        const struct epcs_plugin *desc = plugins->items[i].desc;
        if (desc->calendar(plugins->items[i].state, &listing) != 0) {
            epcs_log(EPCS_LOG_ERROR, desc->name, "calendar failed: %s", listing.error.message);
            return epcs_respond_error(req, 500, "rule_failed", NULL, "%s", listing.error.message);
        }
        items += listing.item_count;
    }
    if (epcs_accepts(req, "text/calendar"))
        return send_icalendar(req, ruleset, election, items);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 3);
    epcs_pack_cstr(pk, "election");
    pack_election(pk, election);
    epcs_pack_cstr(pk, "items");
    msgpack_pack_array(pk, items);
    epcs_buf_append_buf(&worker->body, &worker->scratch);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
    return epcs_response_send(req, 200, epcs_response_format(req));
}

/* ---- stored rulesets ---------------------------------------------------------------------- */

static const msgpack_object *map_get(const msgpack_object *map, const char *key);

/* Reads a stored manifest into the request's zone. 0, 1 (answered 404), -1 (answered 500). */
static int load_manifest(h2o_req_t *req, const char *id, size_t len, msgpack_object *manifest)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    char key[32];
    struct epcs_decode_error err;
    snprintf(key, sizeof(key), "%.*s", (int)(len < sizeof(key) ? len : sizeof(key) - 1), id);
    epcs_buf_reset(&worker->json);
    int rc = epcs_rule_store_valid_id(id, len)
                 ? epcs_rule_store_manifest(worker->server->config.data_dir, key, &worker->json)
                 : 1;
    if (rc == 1)
        return epcs_respond_error(req, 404, "unknown_ruleset", "ruleset",
                                  "no stored ruleset '%.*s'; GET /v1/rules/versions lists them",
                                  (int)(len > 64 ? 64 : len), id),
               1;
    char *copy = rc == 0 ? msgpack_zone_malloc(&worker->zone, worker->json.len + 1) : NULL;
    if (copy == NULL ||
        (memcpy(copy, worker->json.data, worker->json.len),
         epcs_json_decode(copy, worker->json.len, &worker->zone, manifest, &err)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "store", "cannot read the manifest of %s", key);
        return epcs_respond_error(req, 500, "internal", NULL, "stored ruleset unreadable"), -1;
    }
    /* The routes read these two fields without looking again. */
    const msgpack_object *ruleset = map_get(manifest, "ruleset");
    const msgpack_object *files = map_get(manifest, "files");
    if (ruleset == NULL || ruleset->type != MSGPACK_OBJECT_STR || files == NULL ||
        files->type != MSGPACK_OBJECT_ARRAY) {
        epcs_log(EPCS_LOG_ERROR, "store", "the manifest of %s lacks ruleset or files", key);
        return epcs_respond_error(req, 500, "internal", NULL,
                                  "the stored manifest of %s is damaged", key),
               -1;
    }
    return 0;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        if (epcs_str_eq(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* The stored file `name` of a manifest, or NULL. */
static const msgpack_object *manifest_file(const msgpack_object *manifest, const char *name,
                                           size_t len)
{
    const msgpack_object *files = map_get(manifest, "files");
    for (uint32_t i = 0; files && files->type == MSGPACK_OBJECT_ARRAY && i < files->via.array.size;
         i++) {
        const msgpack_object *file_name = map_get(&files->via.array.ptr[i], "name");
        if (file_name && file_name->type == MSGPACK_OBJECT_STR && file_name->via.str.size == len &&
            memcmp(file_name->via.str.ptr, name, len) == 0)
            return &files->via.array.ptr[i];
    }
    return NULL;
}

static int send_rule_file(h2o_req_t *req, const msgpack_object *manifest, const char *name,
                          size_t len)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    const msgpack_object *file = manifest_file(manifest, name, len);
    const msgpack_object *hash = file ? map_get(file, "sha256") : NULL;
    char sha256[65];
    if (hash == NULL || hash->type != MSGPACK_OBJECT_STR || hash->via.str.size != 64)
        return epcs_respond_error(req, 404, "not_found", NULL, "no file '%.*s' in that ruleset",
                                  (int)(len > 64 ? 64 : len), name);
    snprintf(sha256, sizeof(sha256), "%.*s", 64, hash->via.str.ptr);
    epcs_buf_reset(&worker->json);
    if (epcs_rule_store_blob(worker->server->config.data_dir, sha256, &worker->json) != 0)
        return epcs_respond_error(req, 500, "internal", NULL, "stored file unreadable");
    return epcs_response_send_bytes(req, 200, "text/x-lua; charset=utf-8", worker->json.data,
                                    worker->json.len);
}

/* Which files an amendment added, removed or changed, by name and SHA-256. */
static int send_diff(h2o_req_t *req, const msgpack_object *from, const msgpack_object *to)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    static const char *const groups[] = {"added", "removed", "changed", "unchanged"};
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 6);
    epcs_pack_cstr(pk, "from");
    msgpack_pack_object(pk, *map_get(from, "ruleset"));
    epcs_pack_cstr(pk, "to");
    msgpack_pack_object(pk, *map_get(to, "ruleset"));
    for (int group = 0; group < 4; group++) {
        /* Two passes: count, then pack, so the array header is right. */
        const msgpack_object *side = group == 1 ? from : to;
        const msgpack_object *other = group == 1 ? to : from;
        const msgpack_object *files = map_get(side, "files");
        uint32_t count = files && files->type == MSGPACK_OBJECT_ARRAY ? files->via.array.size : 0;
        for (int pass = 0; pass < 2; pass++) {
            size_t matched = 0;
            for (uint32_t i = 0; i < count; i++) {
                const msgpack_object *name = map_get(&files->via.array.ptr[i], "name");
                const msgpack_object *hash = map_get(&files->via.array.ptr[i], "sha256");
                if (name == NULL || hash == NULL || name->type != MSGPACK_OBJECT_STR)
                    continue;
                const msgpack_object *twin =
                    manifest_file(other, name->via.str.ptr, name->via.str.size);
                const msgpack_object *twin_hash = twin ? map_get(twin, "sha256") : NULL;
                int same = twin_hash != NULL && msgpack_object_equal(*hash, *twin_hash);
                int member = (group <= 1 && twin == NULL) || (group == 2 && twin && !same) ||
                             (group == 3 && same);
                if (!member)
                    continue;
                if (pass == 1)
                    msgpack_pack_object(pk, *name);
                matched++;
            }
            if (pass == 0) {
                epcs_pack_cstr(pk, groups[group]);
                msgpack_pack_array(pk, matched);
            }
        }
    }
    return epcs_response_send(req, 200, epcs_response_format(req));
}

int epcs_handle_stored_rules(h2o_req_t *req, const char *rest, size_t len)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    if (h2o_memis(rest, len, H2O_STRLIT("versions"))) {
        struct epcs_decode_error err;
        msgpack_object list;
        epcs_buf_reset(&worker->json);
        char *copy = NULL;
        if (epcs_rule_store_list(worker->server->config.data_dir, &worker->json) != 0 ||
            (copy = msgpack_zone_malloc(&worker->zone, worker->json.len + 1)) == NULL ||
            epcs_json_decode(memcpy(copy, worker->json.data, worker->json.len), worker->json.len,
                             &worker->zone, &list, &err) != 0)
            return epcs_respond_error(req, 500, "internal", NULL, "rule store unreadable");
        msgpack_pack_object(epcs_response_begin(worker), list);
        return epcs_response_send(req, 200, epcs_response_format(req));
    }
    const char *slash = memchr(rest, '/', len);
    size_t id_len = slash ? (size_t)(slash - rest) : len;
    msgpack_object manifest;
    if (load_manifest(req, rest, id_len, &manifest) != 0)
        return 0;
    if (slash == NULL) {
        msgpack_packer *pk = epcs_response_begin(worker);
        msgpack_pack_object(pk, manifest);
        return epcs_response_send(req, 200, epcs_response_format(req));
    }
    const char *tail = slash + 1;
    size_t tail_len = len - id_len - 1;
    if (tail_len > 6 && memcmp(tail, "files/", 6) == 0)
        return send_rule_file(req, &manifest, tail + 6, tail_len - 6);
    if (tail_len > 5 && memcmp(tail, "diff/", 5) == 0) {
        msgpack_object other;
        if (load_manifest(req, tail + 5, tail_len - 5, &other) != 0)
            return 0;
        return send_diff(req, &manifest, &other);
    }
    return epcs_respond_error(req, 404, "not_found", NULL, "no route %.*s",
                              (int)req->path_normalized.len, req->path_normalized.base);
}

/* ---- staff -------------------------------------------------------------------------------- */

int epcs_handle_admin_reload(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_reload_outcome outcome;
    char by[EPCS_KEY_ID_LEN + EPCS_KEY_PARTNER_MAX + 16];
    if (worker->key != NULL)
        snprintf(by, sizeof(by), "key %s (%s)", worker->key->id, worker->key->partner);
    else
        snprintf(by, sizeof(by), "%s", worker->partner);
    epcs_server_reload(worker->server, by, "POST /v1/admin/rules/reload", &outcome);
    int refused = strcmp(outcome.status, "refused") == 0;
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, refused ? 6 : 4);
    epcs_pack_cstr(pk, "status");
    epcs_pack_cstr(pk, outcome.status);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, refused ? outcome.previous : outcome.ruleset);
    if (refused) {
        epcs_pack_cstr(pk, "error");
        epcs_pack_cstr(pk, "rules_refused");
        epcs_pack_cstr(pk, "message");
        epcs_pack_cstr(pk, outcome.error.message);
        epcs_pack_cstr(pk, "file");
        epcs_pack_cstr(pk, outcome.error.file);
        epcs_pack_cstr(pk, "line");
        msgpack_pack_int(pk, outcome.error.line);
    } else {
        epcs_pack_cstr(pk, "previous");
        epcs_pack_cstr(pk, outcome.previous);
        epcs_pack_cstr(pk, "milliseconds");
        msgpack_pack_double(pk, outcome.milliseconds);
    }
    /* The running rules stay after a refusal; the candidate's faults are the client's to fix. */
    return epcs_response_send(req, refused ? 422 : 200, epcs_response_format(req));
}

/* {candidate: "directory", checks: [...] | recent: N}: the impact report of epcsd --impact over
 * HTTP, on supplied checks or on the latest N checks of the decision log. */
int epcs_handle_admin_impact(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    msgpack_object body;
    struct epcs_decode_error decode_error;
    if (epcs_read_body(req, worker->server->config.max_batch_body, &body, NULL) != 0)
        return 0;
    const msgpack_object *candidate = map_get(&body, "candidate");
    const msgpack_object *checks = map_get(&body, "checks");
    if (candidate == NULL || candidate->type != MSGPACK_OBJECT_STR ||
        candidate->via.str.size == 0 || candidate->via.str.size > 1024)
        return epcs_respond_error(req, 400, "bad_request", "candidate",
                                  "candidate must name the directory holding the amended rules");
    const msgpack_object *recent = map_get(&body, "recent");
    msgpack_object logged;
    if (recent != NULL) {
        if (checks != NULL)
            return epcs_respond_error(req, 400, "bad_request", "recent",
                                      "give checks or recent, not both");
        if (recent->type != MSGPACK_OBJECT_POSITIVE_INTEGER || recent->via.u64 == 0 ||
            recent->via.u64 > worker->server->config.max_batch)
            return epcs_respond_error(req, 400, "bad_request", "recent",
                                      "recent must be a number of logged checks from 1 to %zu",
                                      worker->server->config.max_batch);
        if (epcs_recent_checks(req, (size_t)recent->via.u64, &logged) != 0)
            return 0;
        checks = &logged;
    }
    if (checks == NULL || checks->type != MSGPACK_OBJECT_ARRAY)
        return epcs_respond_error(req, 400, "bad_request", "checks",
                                  "checks must be a list of checks as for /v1/check/batch, or "
                                  "give recent: N to take the latest N logged checks");
    if (checks->via.array.size > worker->server->config.max_batch)
        return epcs_respond_error(req, 413, "too_large", "checks", "%u checks; the limit is %zu",
                                  checks->via.array.size, worker->server->config.max_batch);
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    char dir[1100];
    snprintf(dir, sizeof(dir), "%.*s", (int)candidate->via.str.size, candidate->via.str.ptr);
    struct epcs_rule_error err;
    struct epcs_ruleset *amended =
        epcs_ruleset_load(dir, worker->server->plugins, &worker->server->config.lua, &err);
    if (amended == NULL) {
        msgpack_packer *pk = epcs_response_begin(worker);
        msgpack_pack_map(pk, 4);
        epcs_pack_cstr(pk, "error");
        epcs_pack_cstr(pk, "rules_refused");
        epcs_pack_cstr(pk, "message");
        epcs_pack_cstr(pk, err.message);
        epcs_pack_cstr(pk, "file");
        epcs_pack_cstr(pk, err.file);
        epcs_pack_cstr(pk, "line");
        msgpack_pack_int(pk, err.line);
        return epcs_response_send(req, 422, epcs_response_format(req));
    }
    char *report = NULL;
    size_t report_len = 0;
    FILE *out = open_memstream(&report, &report_len);
    int rc = out != NULL ? epcs_impact_run(worker->server, epcs_engine_ruleset(engine), amended,
                                           checks, out)
                         : -1;
    if (out != NULL)
        fclose(out);
    epcs_ruleset_release(amended);
    msgpack_object document;
    char *copy = rc == 0 ? msgpack_zone_malloc(&worker->zone, report_len + 1) : NULL;
    if (copy == NULL || epcs_json_decode(memcpy(copy, report, report_len), report_len,
                                         &worker->zone, &document, &decode_error) != 0) {
        free(report);
        return epcs_respond_error(req, 500, "internal", NULL, "impact analysis failed");
    }
    free(report);
    msgpack_pack_object(epcs_response_begin(worker), document);
    return epcs_response_send(req, 200, epcs_response_format(req));
}
