/*
 * The read-only endpoints (health, areas, elections and their calendars, the stored rules) and
 * the staff's rule reload and impact analysis. Whatever reads the rule store, compiles rules or
 * decides many checks runs on libuv's thread pool (offload.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "ical.h"
#include "impact.h"
#include "log.h"
#include "offload.h"
#include "rule_store.h"
#include "http.h"

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

int epcs_handle_healthz(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
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

static int handle_areas(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
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

static int handle_rules(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    const struct epcs_plugin_set *plugins = worker->server->plugins;
    char loaded[EPCS_INSTANT_S_LEN];
    epcs_instant_format_s(ruleset->loaded_at, loaded);
    struct epcs_rules_state state;
    epcs_server_rules_state(worker->server, &state);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 7 + (ruleset->label != NULL) + state.refused);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
    /* What POST /v1/admin/rules/activate is given back: the view the staff member decided on. */
    epcs_pack_cstr(pk, "epoch");
    msgpack_pack_uint64(pk, atomic_load(&worker->server->rules_epoch));
    /* Served from the rule store, not the directory: the directory failed at start. */
    epcs_pack_cstr(pk, "fallback");
    if (state.fallback)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (state.refused) {
        char at[EPCS_INSTANT_S_LEN];
        epcs_instant_format_s(state.refused_at, at);
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

static int handle_elections(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
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

static int show_election(h2o_req_t *req, const char *id, size_t len, int calendar)
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
                                  epcs_quote_len(len), id);
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

/*
 * GET /v1/rules/versions, /v1/rules/{id}, /v1/rules/{id}/files/{name}, /v1/rules/{a}/diff/{b}:
 * reads of the rule store's files, on the thread pool.
 */
struct stored_job {
    struct epcs_offload base;
    /* The server's, which outlives every job. */
    struct epcs_rule_store *store;
    /* The path after /v1/rules/, and the whole path for a "no route". */
    char *rest;
    size_t len;
    char path[256];
    msgpack_zone zone;
    int zone_ready;
    /* A file read from the store, before it is decoded or sent. */
    struct epcs_buf text;
    struct epcs_buf out;
    /* `out` is a rule file's text, not a document. */
    int lua;
};

static struct stored_job *stored_of(struct epcs_offload *base)
{
    return H2O_STRUCT_FROM_MEMBER(struct stored_job, base, base);
}

/* Decodes the JSON text the store gave into the job's zone (copied: the text buffer is
 * reused). 0, or -1. */
static int decode_stored(struct stored_job *job, msgpack_object *document)
{
    struct epcs_decode_error err;
    char *copy = msgpack_zone_malloc(&job->zone, job->text.len + 1);
    if (copy == NULL || job->text.failed)
        return -1;
    memcpy(copy, job->text.data, job->text.len);
    return epcs_json_decode(copy, job->text.len, &job->zone, document, &err);
}

/* The database behind the rule store is away for now: the client may try again. -1. */
static int store_unavailable(struct stored_job *job)
{
    epcs_offload_fail(&job->base, 503, "store_unavailable", NULL,
                      "the rule store cannot be reached now; try again");
    return -1;
}

/* Reads a stored manifest into the job's zone. 0, or -1 after choosing the 404, 500 or 503. */
static int load_manifest(struct stored_job *job, const char *id, size_t len,
                         msgpack_object *manifest)
{
    char key[32];
    snprintf(key, sizeof(key), "%.*s", (int)(len < sizeof(key) ? len : sizeof(key) - 1), id);
    epcs_buf_reset(&job->text);
    int rc = epcs_rule_store_valid_id(id, len)
                 ? epcs_rule_store_manifest(job->store, key, &job->text)
                 : 1;
    if (rc == 1) {
        epcs_offload_fail(&job->base, 404, "unknown_ruleset", "ruleset",
                          "no stored ruleset '%.*s'; GET /v1/rules/versions lists them",
                          epcs_quote_len(len), id);
        return -1;
    }
    if (rc == EPCS_RULE_STORE_UNREACHABLE)
        return store_unavailable(job);
    if (rc != 0 || decode_stored(job, manifest) != 0) {
        epcs_log(EPCS_LOG_ERROR, "store", "cannot read the manifest of %s", key);
        epcs_offload_fail(&job->base, 500, "internal", NULL, "stored ruleset unreadable");
        return -1;
    }
    /* The routes read these two fields without looking again. */
    const msgpack_object *ruleset = epcs_map_get(manifest, "ruleset");
    const msgpack_object *files = epcs_map_get(manifest, "files");
    if (ruleset == NULL || ruleset->type != MSGPACK_OBJECT_STR || files == NULL ||
        files->type != MSGPACK_OBJECT_ARRAY) {
        epcs_log(EPCS_LOG_ERROR, "store", "the manifest of %s lacks ruleset or files", key);
        epcs_offload_fail(&job->base, 500, "internal", NULL, "the stored manifest of %s is damaged",
                          key);
        return -1;
    }
    return 0;
}

/* The stored file `name` of a manifest, or NULL. */
static const msgpack_object *manifest_file(const msgpack_object *manifest, const char *name,
                                           size_t len)
{
    const msgpack_object *files = epcs_map_get(manifest, "files");
    for (uint32_t i = 0; files && files->type == MSGPACK_OBJECT_ARRAY && i < files->via.array.size;
         i++) {
        const msgpack_object *file_name = epcs_map_get(&files->via.array.ptr[i], "name");
        if (file_name && file_name->type == MSGPACK_OBJECT_STR && file_name->via.str.size == len &&
            memcmp(file_name->via.str.ptr, name, len) == 0)
            return &files->via.array.ptr[i];
    }
    return NULL;
}

static void read_rule_file(struct stored_job *job, const msgpack_object *manifest, const char *name,
                           size_t len)
{
    const msgpack_object *file = manifest_file(manifest, name, len);
    const msgpack_object *hash = file ? epcs_map_get(file, "sha256") : NULL;
    char sha256[65];
    if (hash == NULL || hash->type != MSGPACK_OBJECT_STR || hash->via.str.size != 64) {
        epcs_offload_fail(&job->base, 404, "not_found", NULL, "no file '%.*s' in that ruleset",
                          epcs_quote_len(len), name);
        return;
    }
    snprintf(sha256, sizeof(sha256), "%.*s", 64, hash->via.str.ptr);
    int rc = epcs_rule_store_blob(job->store, sha256, &job->out);
    if (rc == EPCS_RULE_STORE_UNREACHABLE) {
        store_unavailable(job);
        return;
    }
    if (rc != 0 || job->out.failed) {
        epcs_offload_fail(&job->base, 500, "internal", NULL, "stored file unreadable");
        return;
    }
    job->lua = 1;
}

/* Which files an amendment added, removed or changed, by name and SHA-256. */
static void pack_diff(msgpack_packer *pk, const msgpack_object *from, const msgpack_object *to)
{
    static const char *const groups[] = {"added", "removed", "changed", "unchanged"};
    msgpack_pack_map(pk, 6);
    epcs_pack_cstr(pk, "from");
    msgpack_pack_object(pk, *epcs_map_get(from, "ruleset"));
    epcs_pack_cstr(pk, "to");
    msgpack_pack_object(pk, *epcs_map_get(to, "ruleset"));
    for (int group = 0; group < 4; group++) {
        /* Two passes: count, then pack, so the array header is right. */
        const msgpack_object *side = group == 1 ? from : to;
        const msgpack_object *other = group == 1 ? to : from;
        const msgpack_object *files = epcs_map_get(side, "files");
        uint32_t count = files && files->type == MSGPACK_OBJECT_ARRAY ? files->via.array.size : 0;
        for (int pass = 0; pass < 2; pass++) {
            size_t matched = 0;
            for (uint32_t i = 0; i < count; i++) {
                const msgpack_object *name = epcs_map_get(&files->via.array.ptr[i], "name");
                const msgpack_object *hash = epcs_map_get(&files->via.array.ptr[i], "sha256");
                if (name == NULL || hash == NULL || name->type != MSGPACK_OBJECT_STR)
                    continue;
                const msgpack_object *twin =
                    manifest_file(other, name->via.str.ptr, name->via.str.size);
                const msgpack_object *twin_hash = twin ? epcs_map_get(twin, "sha256") : NULL;
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
}

static void list_versions(struct stored_job *job, msgpack_packer *pk)
{
    msgpack_object list;
    int rc = epcs_rule_store_list(job->store, &job->text);
    if (rc == EPCS_RULE_STORE_UNREACHABLE) {
        store_unavailable(job);
        return;
    }
    if (rc != 0 || decode_stored(job, &list) != 0) {
        epcs_offload_fail(&job->base, 500, "internal", NULL, "rule store unreadable");
        return;
    }
    msgpack_pack_object(pk, list);
    epcs_offload_finish(&job->base, &job->out);
}

/* One version ({id}), one of its files ({id}/files/{name}) or a diff ({a}/diff/{b}). */
static void read_version(struct stored_job *job, msgpack_packer *pk)
{
    const char *rest = job->rest, *slash = memchr(rest, '/', job->len);
    size_t id_len = slash ? (size_t)(slash - rest) : job->len;
    msgpack_object manifest, other;
    if (load_manifest(job, rest, id_len, &manifest) != 0)
        return;
    if (slash == NULL) {
        msgpack_pack_object(pk, manifest);
        epcs_offload_finish(&job->base, &job->out);
        return;
    }
    const char *tail = slash + 1;
    size_t tail_len = job->len - id_len - 1;
    if (tail_len > 6 && memcmp(tail, "files/", 6) == 0) {
        read_rule_file(job, &manifest, tail + 6, tail_len - 6);
    } else if (tail_len > 5 && memcmp(tail, "diff/", 5) == 0) {
        if (load_manifest(job, tail + 5, tail_len - 5, &other) != 0)
            return;
        pack_diff(pk, &manifest, &other);
        epcs_offload_finish(&job->base, &job->out);
    } else {
        epcs_offload_fail(&job->base, 404, "not_found", NULL, "no route %s", job->path);
    }
}

static void cb_stored_work(struct epcs_offload *base)
{
    struct stored_job *job = stored_of(base);
    if (!msgpack_zone_init(&job->zone, 4096)) {
        epcs_offload_fail(base, 500, "internal", NULL, "out of memory");
        return;
    }
    job->zone_ready = 1;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
    if (h2o_memis(job->rest, job->len, H2O_STRLIT("versions")))
        list_versions(job, &pk);
    else
        read_version(job, &pk);
}

static void respond_stored(struct epcs_offload *base, h2o_req_t *req)
{
    struct stored_job *job = stored_of(base);
    if (job->lua)
        epcs_response_send_buf(req, 200, "text/x-lua; charset=utf-8", &job->out);
    else
        epcs_offload_send(base, req, 200, &job->out);
}

static void cb_stored_destroy(struct epcs_offload *base, int answered)
{
    (void)answered;
    struct stored_job *job = stored_of(base);
    if (job->zone_ready)
        msgpack_zone_destroy(&job->zone);
    epcs_buf_free(&job->text);
    epcs_buf_free(&job->out);
    free(job->rest);
    free(job);
}

static const struct epcs_offload_ops stored_ops = {.what = "reading the rule store",
                                                   .work = cb_stored_work,
                                                   .respond = respond_stored,
                                                   .destroy = cb_stored_destroy};

static int handle_stored_rules(h2o_req_t *req, h2o_iovec_t param)
{
    const char *rest = param.base;
    size_t len = param.len;
    struct stored_job *job = calloc(1, sizeof(*job));
    char *copy = job != NULL ? malloc(len + 1) : NULL;
    if (copy == NULL) {
        free(job);
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    }
    memcpy(copy, rest, len);
    copy[len] = '\0';
    job->rest = copy;
    job->len = len;
    job->store = epcs_worker_of(req)->server->rule_store;
    snprintf(job->path, sizeof(job->path), "%.*s", (int)req->path_normalized.len,
             req->path_normalized.base);
    return epcs_offload_start(req, &job->base, &stored_ops);
}

/* ---- staff -------------------------------------------------------------------------------- */

/* POST /v1/admin/rules/reload: compiling, the rule tests, storing and the activation history
 * run on the thread pool; epcs_server_reload is any thread's to call. */
struct reload_job {
    struct epcs_offload base;
    struct epcs_server *server;
    char by[EPCS_KEY_ID_LEN + EPCS_KEY_PARTNER_MAX + 16];
    int refused;
    struct epcs_buf out;
};

static struct reload_job *reload_of(struct epcs_offload *base)
{
    return H2O_STRUCT_FROM_MEMBER(struct reload_job, base, base);
}

static void cb_reload_work(struct epcs_offload *base)
{
    struct reload_job *job = reload_of(base);
    struct epcs_reload_outcome outcome;
    epcs_server_reload(job->server, job->by, "POST /v1/admin/rules/reload", &outcome);
    job->refused = strcmp(outcome.status, "refused") == 0;
    msgpack_packer packer, *pk = &packer;
    msgpack_packer_init(pk, &job->out, epcs_buf_msgpack_write);
    msgpack_pack_map(pk, job->refused ? 6 : 4);
    epcs_pack_cstr(pk, "status");
    epcs_pack_cstr(pk, outcome.status);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, job->refused ? outcome.previous : outcome.ruleset);
    if (job->refused) {
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
    epcs_offload_finish(base, &job->out);
}

static void respond_reload(struct epcs_offload *base, h2o_req_t *req)
{
    struct reload_job *job = reload_of(base);
    /* The running rules stay after a refusal; the candidate's faults are the client's to fix. */
    epcs_offload_send(base, req, job->refused ? 422 : 200, &job->out);
}

static void cb_reload_destroy(struct epcs_offload *base, int answered)
{
    struct reload_job *job = reload_of(base);
    if (!answered)
        epcs_log(EPCS_LOG_INFO, "rules",
                 "a reload by %s is done; its client left before the "
                 "answer",
                 job->by);
    epcs_buf_free(&job->out);
    free(job);
}

static const struct epcs_offload_ops reload_ops = {.what = "reloading the rules",
                                                   .work = cb_reload_work,
                                                   .respond = respond_reload,
                                                   .destroy = cb_reload_destroy};

static int handle_admin_reload(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    struct reload_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    job->server = worker->server;
    if (worker->key != NULL)
        snprintf(job->by, sizeof(job->by), "key %s (%s)", worker->key->id, worker->key->partner);
    else
        snprintf(job->by, sizeof(job->by), "%s", worker->partner);
    return epcs_offload_start(req, &job->base, &reload_ops);
}

/*
 * POST /v1/admin/rules/activate {"ruleset": "rs-...", "epoch": N}: a stored version becomes the
 * active ruleset of every replica, if the epoch is still the one the staff member saw in
 * GET /v1/rules. Restoring, compiling, the rule tests and the compare-and-set run on the
 * thread pool.
 */
struct activate_job {
    struct epcs_offload base;
    struct epcs_server *server;
    char by[EPCS_KEY_ID_LEN + EPCS_KEY_PARTNER_MAX + 16];
    char ruleset[24];
    uint64_t epoch;
    struct epcs_activation_outcome outcome;
    struct epcs_buf out;
};

static struct activate_job *activate_of(struct epcs_offload *base)
{
    return H2O_STRUCT_FROM_MEMBER(struct activate_job, base, base);
}

static void cb_activate_work(struct epcs_offload *base)
{
    struct activate_job *job = activate_of(base);
    struct epcs_activation_outcome *outcome = &job->outcome;
    epcs_server_activate(job->server, job->ruleset, job->epoch, job->by, outcome);
    switch (outcome->status) {
    case EPCS_ACTIVATION_STALE:
        epcs_offload_fail(base, 409, "stale_epoch", "epoch",
                          "the rules moved on since epoch %llu: epoch %llu serves %s; read "
                          "GET /v1/rules again and decide on what it says",
                          (unsigned long long)job->epoch, (unsigned long long)outcome->epoch,
                          outcome->active);
        return;
    case EPCS_ACTIVATION_UNKNOWN:
        epcs_offload_fail(base, 404, "unknown_ruleset", "ruleset",
                          "no stored ruleset %s; GET /v1/rules/versions lists them", job->ruleset);
        return;
    case EPCS_ACTIVATION_REFUSED:
        epcs_offload_fail(base, 422, "rules_refused", "ruleset", "%s", outcome->message);
        return;
    case EPCS_ACTIVATION_STORE_FAILED:
        epcs_offload_fail(base, 503, "store_unavailable", NULL, "%s; nothing was activated",
                          outcome->message);
        return;
    case EPCS_ACTIVATION_DONE:
    case EPCS_ACTIVATION_UNCHANGED:
        break;
    }
    int done = outcome->status == EPCS_ACTIVATION_DONE;
    msgpack_packer packer, *pk = &packer;
    msgpack_packer_init(pk, &job->out, epcs_buf_msgpack_write);
    msgpack_pack_map(pk, 3 + done);
    epcs_pack_cstr(pk, "status");
    epcs_pack_cstr(pk, done ? "activated" : "unchanged");
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, job->ruleset);
    if (done) {
        epcs_pack_cstr(pk, "previous");
        epcs_pack_cstr(pk, outcome->previous);
    }
    epcs_pack_cstr(pk, "epoch");
    msgpack_pack_uint64(pk, outcome->epoch);
    epcs_offload_finish(base, &job->out);
}

static void respond_activate(struct epcs_offload *base, h2o_req_t *req)
{
    epcs_offload_send(base, req, 200, &activate_of(base)->out);
}

static void cb_activate_destroy(struct epcs_offload *base, int answered)
{
    struct activate_job *job = activate_of(base);
    if (!answered)
        epcs_log(EPCS_LOG_INFO, "rules",
                 "an activation of %s by %s is done; its client left before the answer",
                 job->ruleset, job->by);
    epcs_buf_free(&job->out);
    free(job);
}

static const struct epcs_offload_ops activate_ops = {.what = "activating a ruleset",
                                                     .work = cb_activate_work,
                                                     .respond = respond_activate,
                                                     .destroy = cb_activate_destroy};

/* The body's ruleset and epoch, or an answered 400 naming the field (-1). */
static int activation_fields(h2o_req_t *req, const msgpack_object *body, struct activate_job *job)
{
    if (body->type != MSGPACK_OBJECT_MAP)
        return epcs_respond_error(req, 400, "bad_request", NULL,
                                  "the body must be a map: {\"ruleset\": ..., \"epoch\": ...}"),
               -1;
    const msgpack_object *ruleset = epcs_map_get(body, "ruleset"),
                         *epoch = epcs_map_get(body, "epoch");
    if (ruleset == NULL || ruleset->type != MSGPACK_OBJECT_STR ||
        !epcs_rule_store_valid_id(ruleset->via.str.ptr, ruleset->via.str.size))
        return epcs_respond_error(req, 400, "bad_request", "ruleset",
                                  "ruleset must be a version id (rs- and 16 hex digits), as "
                                  "GET /v1/rules/versions lists them"),
               -1;
    if (epoch == NULL || epoch->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return epcs_respond_error(req, 400, "bad_request", "epoch",
                                  "epoch must be the whole number GET /v1/rules says, the view "
                                  "the activation is decided on"),
               -1;
    snprintf(job->ruleset, sizeof(job->ruleset), "%.*s", (int)ruleset->via.str.size,
             ruleset->via.str.ptr);
    job->epoch = epoch->via.u64;
    return 0;
}

static int handle_admin_activate(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    msgpack_object body;
    if (epcs_read_body(req, worker->server->config.max_body, &body, NULL) != 0)
        return 0;
    struct activate_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    if (activation_fields(req, &body, job) != 0) {
        free(job);
        return 0;
    }
    job->server = worker->server;
    if (worker->key != NULL)
        snprintf(job->by, sizeof(job->by), "key %s (%s)", worker->key->id, worker->key->partner);
    else
        snprintf(job->by, sizeof(job->by), "%s", worker->partner);
    return epcs_offload_start(req, &job->base, &activate_ops);
}

/*
 * POST /v1/admin/rules/impact: a body of up to --max-batch-body (JSON takes milliseconds to
 * decode), loading the candidate, reading the log's recent checks and deciding every check
 * under both rulesets (with engines of the pool thread's own) all run on the thread pool; the
 * loop only checks the body's size and type.
 */
struct impact_job {
    struct epcs_offload base;
    struct epcs_server *server;
    /* The ruleset the worker ran when asked, held for the job; NULL when it had none. */
    struct epcs_ruleset *active;
    char *body;
    size_t body_len;
    int is_msgpack;
    /* The field a refusal of the body names (a copy: the decoder's error is the work's). */
    char field[128];
    msgpack_zone zone;
    int zone_ready;
    int status;
    struct epcs_buf out;
};

static struct impact_job *impact_of(struct epcs_offload *base)
{
    return H2O_STRUCT_FROM_MEMBER(struct impact_job, base, base);
}

/* The body's {recent: N} or {checks: [...]} as the checks to decide, in the job's zone. 0, or
 * -1 after choosing the 400, 404, 413 or 500. */
static int impact_checks(struct impact_job *job, const msgpack_object *body, msgpack_object *checks)
{
    const struct epcs_config *config = &job->server->config;
    const msgpack_object *recent = epcs_map_get(body, "recent"),
                         *given = epcs_map_get(body, "checks");
    char err[256];
    if (recent == NULL && (given == NULL || given->type != MSGPACK_OBJECT_ARRAY))
        return epcs_offload_fail(&job->base, 400, "bad_request", "checks",
                                 "checks must be a list of checks as for /v1/check/batch, or "
                                 "give recent: N to take the latest N logged checks"),
               -1;
    if (recent == NULL && given->via.array.size > config->max_batch)
        return epcs_offload_fail(&job->base, 413, "too_large", "checks",
                                 "%u checks; the limit is %zu", given->via.array.size,
                                 config->max_batch),
               -1;
    if (recent == NULL)
        return *checks = *given, 0;
    if (given != NULL)
        return epcs_offload_fail(&job->base, 400, "bad_request", "recent",
                                 "give checks or recent, not both"),
               -1;
    if (recent->type != MSGPACK_OBJECT_POSITIVE_INTEGER || recent->via.u64 == 0 ||
        recent->via.u64 > config->max_batch)
        return epcs_offload_fail(&job->base, 400, "bad_request", "recent",
                                 "recent must be a number of logged checks from 1 to %zu",
                                 config->max_batch),
               -1;
    if (job->server->decisions == NULL)
        return epcs_offload_fail(&job->base, 404, "not_found", NULL,
                                 "the decision log is off (epcsd runs with --audit off)"),
               -1;
    int rc = epcs_recent_checks(job->server->decisions, (size_t)recent->via.u64, &job->zone, checks,
                                err, sizeof(err));
    if (rc == 0)
        return 0;
    if (rc == EPCS_DECISION_LOG_UNREACHABLE)
        return epcs_offload_fail(&job->base, 503, "store_unavailable", NULL,
                                 "the decision log cannot be reached now; try again"),
               -1;
    epcs_log(EPCS_LOG_ERROR, "decisions", "reading recent checks: %s", err);
    epcs_offload_fail(&job->base, 500, "internal", NULL, "the decision log cannot be read");
    return -1;
}

/* Decodes and checks the body: the candidate's directory into `candidate` and the checks. 0,
 * or -1 after choosing the error. */
static int read_impact(struct impact_job *job, char *candidate, size_t size, msgpack_object *checks)
{
    struct epcs_decode_error decode_error;
    msgpack_object body;
    int decoded =
        job->is_msgpack
            ? epcs_msgpack_decode(job->body, job->body_len, &job->zone, &body, &decode_error)
            : epcs_json_decode(job->body, job->body_len, &job->zone, &body, &decode_error);
    if (decoded != 0) {
        snprintf(job->field, sizeof(job->field), "%s", decode_error.field);
        epcs_offload_fail(&job->base, 400, "bad_request", job->field, "%s", decode_error.message);
        return -1;
    }
    const msgpack_object *dir = epcs_map_get(&body, "candidate");
    if (dir == NULL || dir->type != MSGPACK_OBJECT_STR || dir->via.str.size == 0 ||
        dir->via.str.size > 1024) {
        epcs_offload_fail(&job->base, 400, "bad_request", "candidate",
                          "candidate must name the directory holding the amended rules");
        return -1;
    }
    snprintf(candidate, size, "%.*s", (int)dir->via.str.size, dir->via.str.ptr);
    if (impact_checks(job, &body, checks) != 0)
        return -1;
    if (job->active == NULL) {
        epcs_offload_fail(&job->base, 503, "not_ready", NULL, "no rule engine is available");
        return -1;
    }
    return 0;
}

static void pack_refusal(msgpack_packer *pk, const struct epcs_rule_error *err)
{
    msgpack_pack_map(pk, 4);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, "rules_refused");
    epcs_pack_cstr(pk, "message");
    epcs_pack_cstr(pk, err->message);
    epcs_pack_cstr(pk, "file");
    epcs_pack_cstr(pk, err->file);
    epcs_pack_cstr(pk, "line");
    msgpack_pack_int(pk, err->line);
}

static void cb_impact_work(struct epcs_offload *base)
{
    struct impact_job *job = impact_of(base);
    struct epcs_server *server = job->server;
    if (!msgpack_zone_init(&job->zone, 4096)) {
        epcs_offload_fail(base, 500, "internal", NULL, "out of memory");
        return;
    }
    job->zone_ready = 1;
    char candidate[1100], err[512];
    msgpack_object checks;
    if (read_impact(job, candidate, sizeof(candidate), &checks) != 0)
        return;
    struct epcs_rule_error rule_err;
    struct epcs_ruleset *amended =
        epcs_ruleset_load(candidate, server->plugins, &server->config.lua, &rule_err);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
    if (amended == NULL) {
        job->status = 422;
        pack_refusal(&pk, &rule_err);
    } else if (epcs_impact_run(server->plugins, job->active, amended, &checks, &job->out, err,
                               sizeof(err)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "rules", "impact analysis of %s failed: %s", candidate, err);
        epcs_offload_fail(base, 500, "internal", NULL, "impact analysis failed");
    } else {
        job->status = 200;
    }
    epcs_ruleset_release(amended);
    if (job->status != 0)
        epcs_offload_finish(base, &job->out);
}

static void respond_impact(struct epcs_offload *base, h2o_req_t *req)
{
    struct impact_job *job = impact_of(base);
    epcs_offload_send(base, req, job->status, &job->out);
}

static void cb_impact_destroy(struct epcs_offload *base, int answered)
{
    (void)answered;
    struct impact_job *job = impact_of(base);
    epcs_ruleset_release(job->active);
    if (job->zone_ready)
        msgpack_zone_destroy(&job->zone);
    free(job->body);
    epcs_buf_free(&job->out);
    free(job);
}

static const struct epcs_offload_ops impact_ops = {.what = "an impact analysis",
                                                   .work = cb_impact_work,
                                                   .respond = respond_impact,
                                                   .destroy = cb_impact_destroy};

/* {candidate: "directory", checks: [...] | recent: N}: the impact report of epcsd --impact over
 * HTTP, on supplied checks or on the latest N checks of the decision log. */
static int handle_admin_impact(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    int media = epcs_body_media(req, worker->server->config.max_batch_body);
    if (media < 0)
        return 0;
    struct impact_job *job = calloc(1, sizeof(*job));
    char *body = job != NULL ? malloc(req->entity.len) : NULL;
    if (body == NULL) {
        free(job);
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    }
    job->server = worker->server;
    job->body = memcpy(body, req->entity.base, req->entity.len);
    job->body_len = req->entity.len;
    job->is_msgpack = media == 1;
    /* Without an engine (memory ran short) the body is still checked first: 503 after it. */
    struct epcs_engine *engine = epcs_worker_engine(worker);
    if (engine != NULL) {
        job->active = epcs_engine_ruleset(engine);
        epcs_ruleset_retain(job->active);
    }
    return epcs_offload_start(req, &job->base, &impact_ops);
}

static int handle_election(h2o_req_t *req, h2o_iovec_t id)
{
    return show_election(req, id.base, id.len, 0);
}

static int handle_calendar(h2o_req_t *req, h2o_iovec_t id)
{
    return show_election(req, id.base, id.len, 1);
}

/* An election's paths other than its own and its calendar are 404 for partners: the last row,
 * without a handler. */
static const struct epcs_route_row meta_rows[] = {
    {"GET", "/v1/areas", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "areas", handle_areas},
    {"GET", "/v1/rules", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "rules", handle_rules},
    {"GET", "/v1/rules/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "rules_stored",
     handle_stored_rules},
    {"GET", "/v1/elections", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "elections", handle_elections},
    {"GET", "/v1/elections/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "election", handle_election},
    {"GET", "/v1/elections/{id}/calendar", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "election",
     handle_calendar},
    {NULL, "/v1/elections/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "election", NULL},
    {"POST", "/v1/admin/rules/reload", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "admin_reload",
     handle_admin_reload},
    {"POST", "/v1/admin/rules/impact", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "admin_impact",
     handle_admin_impact},
    {"POST", "/v1/admin/rules/activate", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "admin_activate",
     handle_admin_activate},
};

const struct epcs_route_group epcs_meta_routes = {meta_rows,
                                                  sizeof(meta_rows) / sizeof(meta_rows[0])};
