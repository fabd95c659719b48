#include "impact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "decision.h"

void epcs_answer_signature(const msgpack_object *answer, struct epcs_buf *out)
{
    static const char *const keys[] = {"verdict", "area", "article", "exception", "error"};
    epcs_buf_reset(out);
    for (uint32_t i = 0; answer->type == MSGPACK_OBJECT_MAP && i < answer->via.map.size; i++) {
        const msgpack_object *key = &answer->via.map.ptr[i].key;
        const msgpack_object *value = &answer->via.map.ptr[i].val;
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            if (epcs_str_eq(key, keys[k]) && value->type == MSGPACK_OBJECT_STR) {
                epcs_buf_append_str(out, keys[k]);
                epcs_buf_append(out, "=", 1);
                epcs_buf_append(out, value->via.str.ptr, value->via.str.size);
                epcs_buf_append(out, ";", 1);
            }
        }
        if (epcs_str_eq(key, "results") && value->type == MSGPACK_OBJECT_ARRAY) {
            struct epcs_buf nested = {0};
            for (uint32_t r = 0; r < value->via.array.size; r++) {
                epcs_answer_signature(&value->via.array.ptr[r], &nested);
                epcs_buf_append(out, "[", 1);
                epcs_buf_append_buf(out, &nested);
                epcs_buf_append(out, "]", 1);
            }
            epcs_buf_free(&nested);
        }
    }
}

/* The area a change is counted under: the answering area, or all areas when several answer. */
static const char *area_of(const msgpack_object *answer, char *buf, size_t size)
{
    const msgpack_object *area = epcs_map_get(answer, "area");
    if (area == NULL || area->type != MSGPACK_OBJECT_STR)
        return "(all areas)";
    snprintf(buf, size, "%.*s", (int)area->via.str.size, area->via.str.ptr);
    return buf;
}

/* Decides one check and packs its answer, or its error, to `pk`. */
static void decide(const struct epcs_check_ctx *ctx, struct epcs_engine *engine,
                   const msgpack_object *check, msgpack_packer *pk)
{
    struct epcs_decision decision;
    struct epcs_check_error err;
    memset(&decision, 0, sizeof(decision));
    if (epcs_check_run(ctx, engine, check, pk, &decision, &err) == EPCS_CHECK_DECIDED)
        return;
    msgpack_pack_map(pk, 2);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, epcs_check_failure_name(err.kind));
    epcs_pack_cstr(pk, "message");
    epcs_pack_cstr(pk, err.message);
}

struct count {
    char area[64];
    size_t changed;
};

/* One run: its engines, context and what it has found so far. */
struct impact {
    struct epcs_engine *before, *after;
    struct epcs_check_ctx *ctx;
    /* Both answers of the check at hand, back to back, and the two signatures. */
    struct epcs_buf answers, sign_before, sign_after;
    msgpack_packer answer_pk;
    /* The changes found, packed one after another, and their count per area. */
    struct epcs_buf changes;
    msgpack_packer changes_pk;
    struct count *counts;
    size_t changed, areas;
};

static void impact_free(struct impact *run)
{
    epcs_buf_free(&run->answers);
    epcs_buf_free(&run->sign_before);
    epcs_buf_free(&run->sign_after);
    epcs_buf_free(&run->changes);
    free(run->counts);
    epcs_check_ctx_destroy(run->ctx);
    epcs_engine_destroy(run->before);
    epcs_engine_destroy(run->after);
}

static int impact_init(struct impact *run, const struct epcs_plugin_set *plugins,
                       struct epcs_ruleset *active, struct epcs_ruleset *candidate, size_t checks,
                       char *err, size_t err_size)
{
    struct epcs_rule_error rule_err;
    memset(run, 0, sizeof(*run));
    msgpack_packer_init(&run->answer_pk, &run->answers, epcs_buf_msgpack_write);
    msgpack_packer_init(&run->changes_pk, &run->changes, epcs_buf_msgpack_write);
    run->before = epcs_engine_create(active, &rule_err);
    run->after = run->before != NULL ? epcs_engine_create(candidate, &rule_err) : NULL;
    if (run->after == NULL) {
        snprintf(err, err_size, "%s", rule_err.message);
        return -1;
    }
    run->ctx = epcs_check_ctx_create(plugins);
    run->counts = calloc(checks + 1, sizeof(*run->counts));
    if (run->ctx == NULL || run->counts == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    return 0;
}

/* Counts a change under the area that answered before and packs it. */
static void record_change(struct impact *run, uint32_t index, const msgpack_object *check,
                          const msgpack_object *old_answer, const msgpack_object *new_answer)
{
    char area[64];
    const char *name = area_of(old_answer, area, sizeof(area));
    size_t a = 0;
    while (a < run->areas && strcmp(run->counts[a].area, name) != 0)
        a++;
    if (a == run->areas)
        snprintf(run->counts[run->areas++].area, sizeof(run->counts[0].area), "%s", name);
    run->counts[a].changed++;
    run->changed++;
    msgpack_packer *pk = &run->changes_pk;
    msgpack_pack_map(pk, 4);
    epcs_pack_cstr(pk, "index");
    msgpack_pack_uint32(pk, index);
    epcs_pack_cstr(pk, "check");
    msgpack_pack_object(pk, *check);
    epcs_pack_cstr(pk, "before");
    msgpack_pack_object(pk, *old_answer);
    epcs_pack_cstr(pk, "after");
    msgpack_pack_object(pk, *new_answer);
}

/* Decides check `index` both ways and records it when its answer changes. 0, or -1. */
static int compare_one(struct impact *run, uint32_t index, const msgpack_object *check)
{
    /* The answers are copied into `changes` once compared: the zone holds one check's. */
    msgpack_zone_clear(run->ctx->zone);
    epcs_buf_reset(&run->answers);
    decide(run->ctx, run->before, check, &run->answer_pk);
    size_t split = run->answers.len;
    decide(run->ctx, run->after, check, &run->answer_pk);
    msgpack_object old_answer, new_answer;
    size_t offset = 0, second = split;
    if (run->answers.failed ||
        msgpack_unpack(run->answers.data, split, &offset, run->ctx->zone, &old_answer) !=
            MSGPACK_UNPACK_SUCCESS ||
        msgpack_unpack(run->answers.data, run->answers.len, &second, run->ctx->zone, &new_answer) !=
            MSGPACK_UNPACK_SUCCESS)
        return -1;
    epcs_answer_signature(&old_answer, &run->sign_before);
    epcs_answer_signature(&new_answer, &run->sign_after);
    if (run->sign_before.len != run->sign_after.len ||
        memcmp(run->sign_before.data, run->sign_after.data, run->sign_before.len) != 0)
        record_change(run, index, check, &old_answer, &new_answer);
    return 0;
}

static void pack_report(const struct impact *run, const struct epcs_ruleset *active,
                        const struct epcs_ruleset *candidate, uint32_t checks, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 6);
    epcs_pack_cstr(pk, "active");
    epcs_pack_cstr(pk, active->id);
    epcs_pack_cstr(pk, "candidate");
    epcs_pack_cstr(pk, candidate->id);
    epcs_pack_cstr(pk, "checks");
    msgpack_pack_uint32(pk, checks);
    epcs_pack_cstr(pk, "changed");
    msgpack_pack_uint64(pk, run->changed);
    epcs_pack_cstr(pk, "changed_by_area");
    msgpack_pack_map(pk, run->areas);
    for (size_t a = 0; a < run->areas; a++) {
        epcs_pack_cstr(pk, run->counts[a].area);
        msgpack_pack_uint64(pk, run->counts[a].changed);
    }
    epcs_pack_cstr(pk, "changes");
    msgpack_pack_array(pk, run->changed);
    epcs_buf_append_buf(pk->data, &run->changes);
}

int epcs_impact_run(const struct epcs_plugin_set *plugins, struct epcs_ruleset *active,
                    struct epcs_ruleset *candidate, const msgpack_object *checks,
                    struct epcs_buf *out, char *err, size_t err_size)
{
    struct impact run;
    uint32_t count = checks->via.array.size;
    int rc = impact_init(&run, plugins, active, candidate, count, err, err_size);
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        if (compare_one(&run, i, &checks->via.array.ptr[i]) != 0) {
            snprintf(err, err_size, "out of memory deciding check %u", i);
            rc = -1;
        }
    }
    if (rc == 0) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
        pack_report(&run, active, candidate, count, &pk);
        if (out->failed) {
            snprintf(err, err_size, "out of memory packing the impact report");
            rc = -1;
        }
    }
    impact_free(&run);
    return rc;
}
