#include "impact.h"

#include <stdlib.h>
#include <string.h>

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
    for (uint32_t i = 0; answer->type == MSGPACK_OBJECT_MAP && i < answer->via.map.size; i++) {
        const msgpack_object *value = &answer->via.map.ptr[i].val;
        if (epcs_str_eq(&answer->via.map.ptr[i].key, "area") && value->type == MSGPACK_OBJECT_STR) {
            snprintf(buf, size, "%.*s", (int)value->via.str.size, value->via.str.ptr);
            return buf;
        }
    }
    return "(all areas)";
}

/* Decides one check and packs its answer, or its error, to `pk`. */
static void decide(struct epcs_worker *worker, struct epcs_engine *engine,
                   const msgpack_object *check, msgpack_packer *pk)
{
    struct epcs_decision decision;
    struct epcs_check_error err;
    memset(&decision, 0, sizeof(decision));
    if (epcs_check_run(worker, engine, check, pk, &decision, &err) == 0)
        return;
    msgpack_pack_map(pk, 2);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, err.code);
    epcs_pack_cstr(pk, "message");
    epcs_pack_cstr(pk, err.message);
}

struct count {
    char area[64];
    size_t changed;
};

int epcs_impact_run(struct epcs_server *server, struct epcs_ruleset *active,
                    struct epcs_ruleset *candidate, const msgpack_object *checks, FILE *out)
{
    struct epcs_rule_error err;
    struct epcs_engine *before = epcs_engine_create(active, &err);
    struct epcs_engine *after = before ? epcs_engine_create(candidate, &err) : NULL;
    struct epcs_worker *worker = calloc(1, sizeof(*worker));
    struct count *counts = calloc(checks->via.array.size + 1, sizeof(*counts));
    int rc = -1;
    if (after == NULL || worker == NULL || counts == NULL) {
        fprintf(stderr, "epcsd: %s\n", after == NULL ? err.message : "out of memory");
        goto done;
    }
    worker->server = server;
    msgpack_zone_init(&worker->zone, 4096);
    worker->zone_ready = 1;
    msgpack_packer_init(&worker->scratch_packer, &worker->scratch, epcs_buf_msgpack_write);

    struct epcs_buf answers = {0}, report = {0}, sign_before = {0}, sign_after = {0};
    msgpack_packer answer_pk, report_pk, changes_pk;
    struct epcs_buf changes = {0};
    msgpack_packer_init(&answer_pk, &answers, epcs_buf_msgpack_write);
    msgpack_packer_init(&report_pk, &report, epcs_buf_msgpack_write);
    msgpack_packer_init(&changes_pk, &changes, epcs_buf_msgpack_write);
    size_t changed = 0, areas = 0;
    for (uint32_t i = 0; i < checks->via.array.size; i++) {
        const msgpack_object *check = &checks->via.array.ptr[i];
        epcs_buf_reset(&answers);
        decide(worker, before, check, &answer_pk);
        size_t split = answers.len;
        decide(worker, after, check, &answer_pk);
        msgpack_object old_answer, new_answer;
        size_t offset = 0, second = split;
        if (answers.failed ||
            msgpack_unpack(answers.data, split, &offset, &worker->zone, &old_answer) !=
                MSGPACK_UNPACK_SUCCESS ||
            msgpack_unpack(answers.data, answers.len, &second, &worker->zone, &new_answer) !=
                MSGPACK_UNPACK_SUCCESS) {
            fprintf(stderr, "epcsd: out of memory deciding check %u\n", i);
            goto unreadable;
        }
        epcs_answer_signature(&old_answer, &sign_before);
        epcs_answer_signature(&new_answer, &sign_after);
        if (sign_before.len == sign_after.len &&
            memcmp(sign_before.data, sign_after.data, sign_before.len) == 0)
            continue;
        changed++;
        char area[64];
        const char *name = area_of(&old_answer, area, sizeof(area));
        size_t a = 0;
        while (a < areas && strcmp(counts[a].area, name) != 0)
            a++;
        if (a == areas)
            snprintf(counts[areas++].area, sizeof(counts[0].area), "%s", name);
        counts[a].changed++;
        msgpack_pack_map(&changes_pk, 4);
        epcs_pack_cstr(&changes_pk, "index");
        msgpack_pack_uint32(&changes_pk, i);
        epcs_pack_cstr(&changes_pk, "check");
        msgpack_pack_object(&changes_pk, *check);
        epcs_pack_cstr(&changes_pk, "before");
        msgpack_pack_object(&changes_pk, old_answer);
        epcs_pack_cstr(&changes_pk, "after");
        msgpack_pack_object(&changes_pk, new_answer);
    }
    msgpack_pack_map(&report_pk, 6);
    epcs_pack_cstr(&report_pk, "active");
    epcs_pack_cstr(&report_pk, active->id);
    epcs_pack_cstr(&report_pk, "candidate");
    epcs_pack_cstr(&report_pk, candidate->id);
    epcs_pack_cstr(&report_pk, "checks");
    msgpack_pack_uint32(&report_pk, checks->via.array.size);
    epcs_pack_cstr(&report_pk, "changed");
    msgpack_pack_uint64(&report_pk, changed);
    epcs_pack_cstr(&report_pk, "changed_by_area");
    msgpack_pack_map(&report_pk, areas);
    for (size_t a = 0; a < areas; a++) {
        epcs_pack_cstr(&report_pk, counts[a].area);
        msgpack_pack_uint64(&report_pk, counts[a].changed);
    }
    epcs_pack_cstr(&report_pk, "changes");
    msgpack_pack_array(&report_pk, changed);
    epcs_buf_append_buf(&report, &changes);

    msgpack_object document;
    size_t offset = 0;
    struct epcs_buf json = {0};
    if (msgpack_unpack(report.data, report.len, &offset, &worker->zone, &document) ==
            MSGPACK_UNPACK_SUCCESS &&
        epcs_json_encode(&document, &json) == 0) {
        fprintf(out, "%.*s\n", (int)json.len, json.data);
        rc = 0;
    } else {
        fprintf(stderr, "epcsd: the impact report could not be encoded\n");
    }
    epcs_buf_free(&json);
unreadable:
    epcs_buf_free(&answers);
    epcs_buf_free(&report);
    epcs_buf_free(&changes);
    epcs_buf_free(&sign_before);
    epcs_buf_free(&sign_after);
    epcs_buf_free(&worker->scratch);
    msgpack_zone_destroy(&worker->zone);
done:
    free(counts);
    free(worker);
    epcs_engine_destroy(before);
    epcs_engine_destroy(after);
    return rc;
}
