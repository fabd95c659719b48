/* The case store: reports, requests, the sweep's overdue and escalation steps, answers,
 * queries, CSV, persistence and the decision-log events of every step; on PostgreSQL also
 * several replicas writing one database at once, and the database going away. */
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"
#include "codec.h"
#include "dates.h"
#include "decision_log.h"
#include "facts.h"
#include "pg_scratch.h"
#include "store.h"
#include "testing.h"

static char scratch[] = "/tmp/epcs-test-cases-XXXXXX";

/* A store's place: where the backend keeps it (a directory for SQLite, a schema's connection
 * string for PostgreSQL) and the data directory that its decision log's journals go to. */
struct place {
    char where[800];
    char dir[300];
};

/*
 * Every test runs against each backend of the case store (with a decision log to take its
 * events), through the ops; a second backend is one more row. The tests of what a SQLite file
 * holds (its format, a write it refuses, the outbox table) run for the rows that name their
 * SQLite file, and open it themselves; those of several replicas on one database and of an
 * outage for the rows with `own_tests`.
 */
struct backend {
    const struct epcs_cases_ops *cases;
    const struct epcs_decision_log_ops *log;
    /** Makes a fresh, empty place named `name` into `place`. 0, or -1. */
    int (*prepare)(const char *name, struct place *place);
    /** The store's SQLite file in the data directory; NULL for a backend of another kind. */
    const char *sqlite_file;
    /** Nonzero when a decision log whose queue is full refuses a step (its entries queue). */
    int full_log_refuses;
    /** The tests that look beneath the interface in this backend's terms, or NULL. */
    void (*own_tests)(void);
};

static int sqlite_prepare(const char *name, struct place *place)
{
    snprintf(place->dir, sizeof(place->dir), "%s/%s", scratch, name);
    snprintf(place->where, sizeof(place->where), "%s", place->dir);
    return mkdir(place->dir, 0700);
}

/* Each place a schema of its own, so that its ids start at 1. */
static int pg_prepare(const char *name, struct place *place)
{
    char schema[64];
    snprintf(schema, sizeof(schema), "test_cases_%s", name);
    snprintf(place->dir, sizeof(place->dir), "%s/%s", scratch, name);
    return mkdir(place->dir, 0700) == 0 &&
                   epcs_test_pg_schema(schema, place->where, sizeof(place->where)) == 0
               ? 0
               : -1;
}

static void pg_tests(void);

static const struct backend backends[] = {
    {.cases = &epcs_cases_sqlite,
     .log = &epcs_decision_log_sqlite,
     .prepare = sqlite_prepare,
     .sqlite_file = "cases.db",
     .full_log_refuses = 1},
    {.cases = &epcs_cases_postgresql,
     .log = &epcs_decision_log_postgresql,
     .prepare = pg_prepare,
     .own_tests = pg_tests},
};

static const struct backend *backend;
/* The place of the tests that go on from each other's cases (flow, reopen, refused). */
static struct place main_place;

static struct epcs_decision_log *open_log(const struct place *place, enum epcs_audit_mode mode,
                                          size_t queue_limit)
{
    char err[512] = "";
    struct epcs_decision_log *log =
        backend->log->open(place->where, place->dir, mode, queue_limit, err, sizeof(err));
    if (log == NULL)
        fprintf(stderr, "cannot open the decision log: %s\n", err);
    return log;
}

static struct epcs_cases *open_cases(const struct place *place, struct epcs_decision_log *log)
{
    char err[1024] = "";
    struct epcs_cases *cases = backend->cases->open(place->where, log, err, sizeof(err));
    if (cases == NULL)
        fprintf(stderr, "cannot open the case store: %s\n", err);
    return cases;
}

static struct epcs_cases_reader *open_reader(const struct place *place)
{
    char err[512] = "";
    struct epcs_cases_reader *reader = backend->cases->reader_open(place->where, err, sizeof(err));
    if (reader == NULL)
        fprintf(stderr, "cannot open a reader: %s\n", err);
    return reader;
}

#define HOUR_US (3600LL * 1000000)
#define DAY_US (24 * HOUR_US)

static const char PENALTY_OVERDUE[] = "Art. 261(6)4: administrative fine of up to KRW 3 million";
static const char PENALTY_TWICE[] =
    "Art. 256(3)1(e): imprisonment of up to 2 years or a fine of up to KRW 4 million";

/* 2026-03-02T00:00:00Z, the moment every test case starts from. */
static int64_t t0(void)
{
    return (int64_t)epcs_days_from_civil(2026, 3, 2) * DAY_US;
}

static void pack_str(msgpack_packer *pk, const char *text)
{
    msgpack_pack_str(pk, strlen(text));
    msgpack_pack_str_body(pk, text, strlen(text));
}

static void pack_deletion_request(msgpack_packer *pk, double due_hours)
{
    msgpack_pack_map(pk, 7);
    pack_str(pk, "kind");
    pack_str(pk, "deletion_request");
    pack_str(pk, "to");
    pack_str(pk, "platform");
    pack_str(pk, "article");
    pack_str(pk, "82-4(3)");
    pack_str(pk, "due_hours");
    msgpack_pack_double(pk, due_hours);
    pack_str(pk, "objection_days");
    msgpack_pack_int(pk, 3);
    pack_str(pk, "overdue");
    msgpack_pack_map(pk, 2);
    pack_str(pk, "article");
    pack_str(pk, "261(6)4");
    pack_str(pk, "penalty");
    pack_str(pk, PENALTY_OVERDUE);
    pack_str(pk, "escalation");
    msgpack_pack_map(pk, 5);
    pack_str(pk, "after");
    msgpack_pack_int(pk, 2);
    pack_str(pk, "kind");
    pack_str(pk, "referral");
    pack_str(pk, "to");
    pack_str(pk, "prosecutors");
    pack_str(pk, "article");
    pack_str(pk, "256(3)1(e)");
    pack_str(pk, "penalty");
    pack_str(pk, PENALTY_TWICE);
}

static void pack_referral(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    pack_str(pk, "kind");
    pack_str(pk, "referral");
    pack_str(pk, "to");
    pack_str(pk, "prosecutors");
    pack_str(pk, "article");
    pack_str(pk, "250(1)");
    pack_str(pk, "due_hours");
    msgpack_pack_int(pk, 24);
}

/* A verdict as the check path packs it; `actions` 0: none, 1: deletion request, 2: both. */
static void make_verdict(struct epcs_buf *out, const char *verdict, int actions)
{
    msgpack_packer pk;
    epcs_buf_reset(out);
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    msgpack_pack_map(&pk, 4 + (actions > 0));
    pack_str(&pk, "verdict");
    pack_str(&pk, verdict);
    pack_str(&pk, "area");
    pack_str(&pk, "false_information");
    pack_str(&pk, "article");
    pack_str(&pk, "250(1)");
    pack_str(&pk, "ruleset");
    pack_str(&pk, "rs-0123456789abcdef");
    if (actions > 0) {
        pack_str(&pk, "actions");
        msgpack_pack_array(&pk, (size_t)actions);
        pack_deletion_request(&pk, 1);
        if (actions > 1)
            pack_referral(&pk);
    }
}

static const char facts_bytes[] = "\x81\xa6intent\xa8to_elect";
/* The check a report stands for, as the decision log keeps it. */
static const char check_bytes[] = "\x82\xa8"
                                  "election\xa4na22\xa4"
                                  "area\xb1"
                                  "false_information";

/* The decision of a report with `verdict`, as cases_api hands it to the store. */
static struct epcs_decision report_decision(const char *verdict)
{
    enum epcs_verdict_kind kind = strcmp(verdict, "prohibited") == 0 ? EPCS_VERDICT_PROHIBITED
                                  : strcmp(verdict, "allowed") == 0  ? EPCS_VERDICT_ALLOWED
                                                                     : EPCS_VERDICT_NEEDS_FACTS;
    return (struct epcs_decision){.election = "na22",
                                  .date = epcs_days_from_civil(2024, 3, 1),
                                  .area = "false_information",
                                  .area_index = -1,
                                  .verdict = kind,
                                  .ruleset = "rs-0123456789abcdef",
                                  .check_msgpack = check_bytes,
                                  .check_len = sizeof(check_bytes) - 1,
                                  .latency_us = 120};
}

/* Staff's filing of `url` at t0 with `verdict` and `decision` (NULL: none logged), the other
 * fields those of a false fact on naver. */
static struct epcs_case_report staff_filing(const char *filer, const char *url,
                                            const struct epcs_buf *verdict,
                                            const struct epcs_decision *decision)
{
    return (struct epcs_case_report){.filed_by = filer,
                                     .url = url,
                                     .platform = "naver",
                                     .election = "na22",
                                     .category = "false_fact",
                                     .date = "2024-03-01",
                                     .facts = facts_bytes,
                                     .facts_len = sizeof(facts_bytes) - 1,
                                     .verdict = verdict->data,
                                     .verdict_len = verdict->len,
                                     .decision = decision,
                                     .by_staff = 1,
                                     .now_us = t0()};
}

/* The postings filed so far, counted afresh for each backend: URLs carry the number. */
static int postings;

static uint64_t file(struct epcs_cases *cases, const char *platform, const char *verdict,
                     int actions, int64_t now, struct epcs_buf *out)
{
    struct epcs_buf bytes = {0};
    make_verdict(&bytes, verdict, actions);
    struct epcs_decision decision = report_decision(verdict);
    /* Each filing is of a posting of its own: the same one would join its report. */
    char url[64];
    snprintf(url, sizeof(url), "https://blog.example/p/%d?a=1,b=\"2\"", ++postings);
    struct epcs_case_report report = staff_filing("nec", url, &bytes, &decision);
    report.platform = platform;
    report.now_us = now;
    msgpack_packer pk;
    epcs_buf_reset(out);
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    struct epcs_case_filed filed;
    char err[256] = "";
    int rc = epcs_cases_file(cases, &report, &pk, &filed, err, sizeof(err));
    EXPECT_INT(rc, EPCS_CASES_OK);
    if (rc != EPCS_CASES_OK)
        fprintf(stderr, "filing failed: %s\n", err);
    EXPECT_INT(filed.joined, 0);
    epcs_buf_free(&bytes);
    return filed.id;
}

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    for (uint32_t i = 0; map != NULL && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size;
         i++) {
        if (epcs_str_eq(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    }
    return &nil;
}

/* A string member as a NUL-terminated copy in the zone ("(nil)" when absent or not text). */
static const char *text(msgpack_zone *zone, const msgpack_object *map, const char *key)
{
    const msgpack_object *value = get(map, key);
    if (value->type != MSGPACK_OBJECT_STR)
        return "(nil)";
    char *copy = msgpack_zone_malloc(zone, value->via.str.size + 1);
    memcpy(copy, value->via.str.ptr, value->via.str.size);
    copy[value->via.str.size] = '\0';
    return copy;
}

static long long number(const msgpack_object *map, const char *key)
{
    const msgpack_object *value = get(map, key);
    return value->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)value->via.u64 : -1;
}

static const msgpack_object *item(const msgpack_object *array, uint32_t i)
{
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    if (array->type != MSGPACK_OBJECT_ARRAY || i >= array->via.array.size)
        return &nil;
    return &array->via.array.ptr[i];
}

static msgpack_object decode(msgpack_zone *zone, const struct epcs_buf *buf)
{
    msgpack_object object = {.type = MSGPACK_OBJECT_NIL};
    size_t offset = 0;
    msgpack_unpack(buf->data, buf->len, &offset, zone, &object);
    return object;
}

static msgpack_object report(struct epcs_cases_reader *db, uint64_t id, msgpack_zone *zone,
                             struct epcs_buf *buf)
{
    msgpack_packer pk;
    char err[256];
    epcs_buf_reset(buf);
    msgpack_packer_init(&pk, buf, epcs_buf_msgpack_write);
    EXPECT_INT(backend->cases->get_report(db, id, NULL, &pk, err, sizeof(err)), 0);
    return decode(zone, buf);
}

/* The report's status. */
static const char *status_of(struct epcs_cases_reader *db, uint64_t id, msgpack_zone *zone)
{
    struct epcs_buf buf = {0};
    msgpack_object whole = report(db, id, zone, &buf);
    const char *status = text(zone, &whole, "status");
    epcs_buf_free(&buf);
    return status;
}

/* A member of the document in `buf`, decoded into the zone. */
static const msgpack_object *get_decoded(msgpack_zone *zone, const struct epcs_buf *buf,
                                         const char *key)
{
    msgpack_object *whole = msgpack_zone_malloc(zone, sizeof(*whole));
    *whole = decode(zone, buf);
    return get(whole, key);
}

static int answer(struct epcs_cases *cases, const char *partner, uint64_t request,
                  const char *status, const char *reason, int64_t now, char *detail)
{
    struct epcs_buf out = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_answer in = {.partner = partner,
                                  .request = request,
                                  .status = status,
                                  .reason = reason,
                                  .reason_len = reason != NULL ? strlen(reason) : 0,
                                  .now_us = now};
    uint64_t ticket;
    int rc = epcs_cases_answer(cases, &in, &pk, &ticket, detail, 64);
    epcs_buf_free(&out);
    return rc;
}

/* The statuses of the report's requests, "1:overdue 3:open ..." in id order. */
static const char *statuses(struct epcs_cases_reader *db, uint64_t id, msgpack_zone *zone)
{
    struct epcs_buf buf = {0};
    msgpack_object whole = report(db, id, zone, &buf);
    const msgpack_object *requests = get(&whole, "requests");
    char *out = msgpack_zone_malloc(zone, 512);
    out[0] = '\0';
    for (uint32_t i = 0; requests->type == MSGPACK_OBJECT_ARRAY && i < requests->via.array.size;
         i++) {
        const msgpack_object *request = item(requests, i);
        snprintf(out + strlen(out), 512 - strlen(out), "%s%lld:%s", i ? " " : "",
                 number(request, "id"), text(zone, request, "status"));
    }
    epcs_buf_free(&buf);
    return out;
}

/* The events of the report's history, "report_filed request_sent ...". */
static const char *history(struct epcs_cases_reader *db, uint64_t id, msgpack_zone *zone)
{
    struct epcs_buf buf = {0};
    msgpack_object whole = report(db, id, zone, &buf);
    const msgpack_object *steps = get(&whole, "history");
    char *out = msgpack_zone_malloc(zone, 1024);
    out[0] = '\0';
    for (uint32_t i = 0; steps->type == MSGPACK_OBJECT_ARRAY && i < steps->via.array.size; i++) {
        const msgpack_object *step = item(steps, i);
        const msgpack_object *request = get(step, "request");
        char subject[24] = "";
        if (request->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            snprintf(subject, sizeof(subject), "(%llu)", (unsigned long long)request->via.u64);
        snprintf(out + strlen(out), 1024 - strlen(out), "%s%s%s", i ? " " : "",
                 text(zone, step, "event"), subject);
    }
    epcs_buf_free(&buf);
    return out;
}

static void test_actions_are_checked(void)
{
    struct epcs_buf verdict = {0};
    char why[256];
    make_verdict(&verdict, "prohibited", 2);
    EXPECT_INT(epcs_cases_check_actions(verdict.data, verdict.len, "naver", why, sizeof(why)), 2);
    make_verdict(&verdict, "allowed", 0);
    EXPECT_INT(epcs_cases_check_actions(verdict.data, verdict.len, "naver", why, sizeof(why)), 0);

    /* Each way the rules can get an action wrong is named. */
    static const struct {
        const char *bytes;
        const char *message;
    } bad[] = {
        {"\x81\xa7"
         "actions"
         "\x91\x81\xa4kind\xa4mail",
         "actions[0]: kind must be"},
        {"\x81\xa7"
         "actions"
         "\x91\x83\xa4kind\xa8referral\xa2to\xa3"
         "A B\xa7"
         "article\xa1x",
         "actions[0]: to 'A B' is not a partner id"},
        {"\x81\xa7"
         "actions"
         "\x91\x83\xa4kind\xa8referral\xa2to\xa6police\xa7"
         "article\xa0",
         "actions[0]: article must be"},
        {"\x81\xa7"
         "actions"
         "\x91\x84\xa4kind\xa8referral\xa2to\xa6police\xa7"
         "article\xa1x"
         "\xa9"
         "due_hours\x00",
         "actions[0]: due_hours must be a number above 0"},
        {"\x81\xa7"
         "actions"
         "\x91\x84\xa4kind\xa8referral\xa2to\xa6police\xa7"
         "article\xa1x"
         "\xaa"
         "escalation\x80",
         "actions[0]: escalation must be a map whose after"},
        {"\x81\xa7"
         "actions"
         "\x91\x84\xa4kind\xa8referral\xa2to\xa6police\xa7"
         "article\xa1x"
         "\xaa"
         "escalation\x81\xa5"
         "after\x02",
         "actions[0]: escalation: kind must be"},
        {"\x81\xa7"
         "actions"
         "\xa1x",
         "actions is not a list"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* Each body is the actions entry of a verdict that is otherwise complete. */
        struct epcs_buf whole = {0};
        msgpack_packer pk;
        msgpack_packer_init(&pk, &whole, epcs_buf_msgpack_write);
        msgpack_pack_map(&pk, 4);
        pack_str(&pk, "verdict");
        pack_str(&pk, "prohibited");
        pack_str(&pk, "article");
        pack_str(&pk, "250(1)");
        pack_str(&pk, "ruleset");
        pack_str(&pk, "rs-0123456789abcdef");
        epcs_buf_append_str(&whole, bad[i].bytes + 1);
        /* The literal's last byte may be \x00, which the _str append stops before. */
        if (strstr(bad[i].message, "due_hours") != NULL)
            epcs_buf_append(&whole, "", 1);
        why[0] = '\0';
        EXPECT_INT(epcs_cases_check_actions(whole.data, whole.len, "naver", why, sizeof(why)), -1);
        EXPECT_CONTAINS(why, bad[i].message);
        epcs_buf_free(&whole);
    }
    epcs_buf_free(&verdict);
}

/* Events in the decision log, in id order: "report_filed:1 request_sent:1 ...". */
static const char *events_in(const char *where, msgpack_zone *zone)
{
    char err[256];
    struct epcs_decision_reader *reader = backend->log->reader_open(where, err, sizeof(err));
    EXPECT(reader != NULL);
    struct epcs_buf buf = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    struct epcs_decision_query query = {.limit = 1000};
    EXPECT_INT(backend->log->query(NULL, reader, &query, &pk, err, sizeof(err)), 0);
    msgpack_object page = decode(zone, &buf);
    const msgpack_object *entries = get(&page, "decisions");
    char *out = msgpack_zone_malloc(zone, 4096);
    out[0] = '\0';
    for (uint32_t i = 0; entries->type == MSGPACK_OBJECT_ARRAY && i < entries->via.array.size;
         i++) {
        const msgpack_object *entry = item(entries, i);
        if (get(entry, "event")->type != MSGPACK_OBJECT_STR)
            snprintf(out + strlen(out), 4096 - strlen(out), "%sdecision:%s", i ? " " : "",
                     text(zone, entry, "partner"));
        else
            snprintf(out + strlen(out), 4096 - strlen(out), "%s%s:%s:%lld", i ? " " : "",
                     text(zone, entry, "event"), text(zone, entry, "partner"),
                     number(entry, "subject"));
    }
    epcs_buf_free(&buf);
    backend->log->reader_close(reader);
    return out;
}

static const char *logged_events(msgpack_zone *zone)
{
    return events_in(main_place.where, zone);
}

static void test_flow(void)
{
    char err[256], detail[64];
    struct epcs_decision_log *log = open_log(&main_place, EPCS_AUDIT_SYNC, 1000);
    EXPECT(log != NULL);
    struct epcs_cases *cases = open_cases(&main_place, log);
    EXPECT(cases != NULL);
    struct epcs_cases_reader *db = open_reader(&main_place);
    EXPECT(db != NULL);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    struct epcs_buf out = {0};
    int64_t now = t0();

    uint64_t id = file(cases, "naver", "prohibited", 2, now, &out);
    EXPECT_INT(id, 1);
    /* The answer to the filing is the report as stored. */
    msgpack_object filed = decode(&zone, &out);
    EXPECT_STR(text(&zone, &filed, "status"), "open");
    EXPECT_STR(text(&zone, &filed, "filed_at"), "2026-03-02T00:00:00.000000Z");
    EXPECT_STR(text(&zone, &filed, "article"), "250(1)");
    /* The store gave the decision its id and put it in the answer, as /v1/check does. */
    long long decision = number(&filed, "decision");
    EXPECT(decision > 0);
    EXPECT_INT(number(get(&filed, "answer"), "decision"), decision);
    EXPECT_INT(number(&filed, "request_count"), 2);
    EXPECT_STR(text(&zone, get(&filed, "facts"), "intent"), "to_elect");
    EXPECT_STR(text(&zone, get(&filed, "answer"), "area"), "false_information");
    const msgpack_object *deletion = item(get(&filed, "requests"), 0);
    EXPECT_STR(text(&zone, deletion, "kind"), "deletion_request");
    EXPECT_STR(text(&zone, deletion, "to"), "naver");
    EXPECT_STR(text(&zone, deletion, "due"), "2026-03-02T01:00:00.000000Z");
    EXPECT_STR(text(&zone, deletion, "objection_until"), "2026-03-05T00:00:00.000000Z");
    EXPECT_INT(number(deletion, "attempt"), 1);
    EXPECT(get(deletion, "follows")->type == MSGPACK_OBJECT_NIL);
    EXPECT(get(deletion, "answer")->type == MSGPACK_OBJECT_NIL);
    EXPECT_STR(text(&zone, get(get(deletion, "action"), "escalation"), "to"), "prosecutors");
    const msgpack_object *referral = item(get(&filed, "requests"), 1);
    EXPECT_STR(text(&zone, referral, "to"), "prosecutors");
    EXPECT_STR(text(&zone, referral, "due"), "2026-03-03T00:00:00.000000Z");
    EXPECT(get(referral, "objection_until")->type == MSGPACK_OBJECT_NIL);
    EXPECT_STR(history(db, id, &zone), "report_filed request_sent(1) request_sent(2)");

    /* Another partner's request does not exist for it. */
    EXPECT_INT(answer(cases, "kakao", 1, "done", NULL, now, detail), EPCS_CASES_NOT_FOUND);
    EXPECT_INT(answer(cases, "naver", 2, "done", NULL, now, detail), EPCS_CASES_NOT_FOUND);
    EXPECT_INT(answer(cases, "naver", 99, "done", NULL, now, detail), EPCS_CASES_NOT_FOUND);
    /* A referral sets no objection period. */
    EXPECT_INT(answer(cases, "prosecutors", 2, "objected", "no", now, detail),
               EPCS_CASES_NO_OBJECTION);

    /* Nothing is due before its time; then the deletion request is overdue and sent again. */
    EXPECT_INT(epcs_cases_sweep(cases, now + HOUR_US - 1, 100, err, sizeof(err)), 0);
    EXPECT_INT(epcs_cases_sweep(cases, now + HOUR_US, 100, err, sizeof(err)), 1);
    EXPECT_STR(statuses(db, id, &zone), "1:overdue 2:open 3:open");
    msgpack_object whole = report(db, id, &zone, &out);
    const msgpack_object *second = item(get(&whole, "requests"), 2);
    EXPECT_INT(number(second, "attempt"), 2);
    EXPECT_INT(number(second, "follows"), 1);
    EXPECT_STR(text(&zone, second, "to"), "naver");
    EXPECT_STR(text(&zone, second, "due"), "2026-03-02T02:00:00.000000Z");
    /* The second attempt has its own objection period, from when it was sent. */
    EXPECT_STR(text(&zone, second, "objection_until"), "2026-03-05T01:00:00.000000Z");
    const msgpack_object *overdue_step = item(get(&whole, "history"), 3);
    EXPECT_STR(text(&zone, overdue_step, "event"), "request_overdue");
    EXPECT_STR(text(&zone, overdue_step, "by"), "epcs");
    EXPECT_STR(text(&zone, get(get(overdue_step, "detail"), "overdue"), "article"), "261(6)4");

    /* The second attempt ignored too: the ignored attempts are escalated to the prosecutors. */
    EXPECT_INT(epcs_cases_sweep(cases, now + 2 * HOUR_US, 100, err, sizeof(err)), 1);
    EXPECT_STR(statuses(db, id, &zone), "1:escalated 2:open 3:escalated 4:open");
    whole = report(db, id, &zone, &out);
    const msgpack_object *escalation = item(get(&whole, "requests"), 3);
    EXPECT_STR(text(&zone, escalation, "kind"), "referral");
    EXPECT_STR(text(&zone, escalation, "to"), "prosecutors");
    EXPECT_STR(text(&zone, escalation, "article"), "256(3)1(e)");
    EXPECT_INT(number(escalation, "follows"), 3);
    /* The escalation names no due time of its own. */
    EXPECT(get(escalation, "due")->type == MSGPACK_OBJECT_NIL);
    EXPECT_STR(history(db, id, &zone),
               "report_filed request_sent(1) request_sent(2) request_overdue(1) request_sent(3) "
               "request_overdue(3) request_sent(4) request_escalated(1) request_escalated(3)");
    EXPECT_INT(answer(cases, "naver", 3, "done", NULL, now + 3 * HOUR_US, detail),
               EPCS_CASES_CLOSED);
    EXPECT_STR(detail, "escalated");

    /* The prosecutors answer; with nothing pending the report closes. */
    EXPECT_INT(answer(cases, "prosecutors", 4, "data_submitted", NULL, now + 3 * HOUR_US, detail),
               EPCS_CASES_OK);
    EXPECT_STR(status_of(db, id, &zone), "open");
    EXPECT_INT(answer(cases, "prosecutors", 2, "done", "indicted", now + 4 * HOUR_US, detail),
               EPCS_CASES_OK);
    whole = report(db, id, &zone, &out);
    EXPECT_STR(text(&zone, &whole, "status"), "closed");
    EXPECT_STR(text(&zone, &whole, "updated_at"), "2026-03-02T04:00:00.000000Z");
    const msgpack_object *answered = get(item(get(&whole, "requests"), 1), "answer");
    EXPECT_STR(text(&zone, answered, "status"), "done");
    EXPECT_STR(text(&zone, answered, "reason"), "indicted");
    EXPECT_STR(text(&zone, answered, "at"), "2026-03-02T04:00:00.000000Z");
    EXPECT_INT(answer(cases, "prosecutors", 2, "done", NULL, now + 5 * HOUR_US, detail),
               EPCS_CASES_CLOSED);
    EXPECT_STR(detail, "done");

    /* Report 2: the platform answers the first attempt late, which answers the second too. */
    uint64_t late = file(cases, "kakao", "prohibited", 1, now, &out);
    EXPECT_INT(late, 2);
    long long late_decision = number(get_decoded(&zone, &out, "answer"), "decision");
    EXPECT_INT(epcs_cases_sweep(cases, now + HOUR_US, 100, err, sizeof(err)), 1);
    EXPECT_STR(statuses(db, late, &zone), "5:overdue 6:open");
    EXPECT_INT(answer(cases, "kakao", 5, "done", NULL, now + HOUR_US + 1, detail), EPCS_CASES_OK);
    whole = report(db, late, &zone, &out);
    EXPECT_STR(statuses(db, late, &zone), "5:done 6:done");
    EXPECT_INT(number(get(item(get(&whole, "requests"), 1), "answer"), "via"), 5);
    EXPECT_STR(text(&zone, &whole, "status"), "closed");
    const msgpack_object *late_step = item(get(&whole, "history"), 4);
    EXPECT_STR(text(&zone, late_step, "event"), "request_answered");
    EXPECT(get(get(late_step, "detail"), "late")->type == MSGPACK_OBJECT_BOOLEAN &&
           get(get(late_step, "detail"), "late")->via.boolean);
    /* Nothing open remains to fall due. */
    EXPECT_INT(epcs_cases_sweep(cases, now + 100 * DAY_US, 100, err, sizeof(err)), 0);

    /* Report 3: objections within the period count, after it they do not. */
    uint64_t objected = file(cases, "naver", "prohibited", 1, now, &out);
    EXPECT_INT(answer(cases, "naver", 7, "objected", "satire", now + 3 * DAY_US + 1, detail),
               EPCS_CASES_TOO_LATE);
    EXPECT_STR(detail, "2026-03-05T00:00:00.000000Z");
    EXPECT_INT(answer(cases, "naver", 7, "objected", "satire", now + 3 * DAY_US, detail),
               EPCS_CASES_OK);
    EXPECT_STR(status_of(db, objected, &zone), "closed");

    /* Reports whose verdict asks for nothing. */
    uint64_t allowed = file(cases, "naver", "allowed", 0, now, &out);
    uint64_t unclear = file(cases, "naver", "needs_facts", 0, now, &out);
    EXPECT_STR(status_of(db, allowed, &zone), "no_action");
    EXPECT_STR(status_of(db, unclear, &zone), "needs_facts");
    EXPECT_STR(history(db, unclear, &zone), "report_filed");

    /* Queues: each partner's own, by status, paged. */
    struct epcs_request_query queue = {.partner = "naver", .status = "all", .limit = 2};
    msgpack_packer pk;
    epcs_buf_reset(&out);
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    EXPECT_INT(backend->cases->list_requests(db, &queue, &pk, err, sizeof(err)), 0);
    whole = decode(&zone, &out);
    EXPECT_INT(number(item(get(&whole, "requests"), 0), "id"), 1);
    EXPECT_INT(number(item(get(&whole, "requests"), 1), "id"), 3);
    EXPECT_INT(number(&whole, "next"), 3);
    queue.after = 3;
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->list_requests(db, &queue, &pk, err, sizeof(err)), 0);
    whole = decode(&zone, &out);
    EXPECT_INT(get(&whole, "requests")->via.array.size, 1);
    EXPECT_INT(number(item(get(&whole, "requests"), 0), "id"), 7);
    EXPECT(get(&whole, "next")->type == MSGPACK_OBJECT_NIL);
    queue =
        (struct epcs_request_query){.partner = "prosecutors", .status = "escalated", .limit = 9};
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->list_requests(db, &queue, &pk, err, sizeof(err)), 0);
    EXPECT_INT(get_decoded(&zone, &out, "requests")->via.array.size, 0);
    queue = (struct epcs_request_query){.partner = "naver", .status = "escalated", .limit = 9};
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->list_requests(db, &queue, &pk, err, sizeof(err)), 0);
    whole = decode(&zone, &out);
    EXPECT_INT(get(&whole, "requests")->via.array.size, 2);

    /* Staff lists, filtered. */
    struct epcs_report_query filter = {.status = "closed", .limit = 10};
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->list_reports(db, &filter, &pk, err, sizeof(err)), 0);
    whole = decode(&zone, &out);
    EXPECT_INT(get(&whole, "reports")->via.array.size, 3);
    EXPECT_INT(number(item(get(&whole, "reports"), 2), "id"), 3);
    filter = (struct epcs_report_query){.platform = "kakao", .limit = 10};
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->list_reports(db, &filter, &pk, err, sizeof(err)), 0);
    whole = decode(&zone, &out);
    EXPECT_INT(get(&whole, "reports")->via.array.size, 1);
    EXPECT_INT(number(item(get(&whole, "reports"), 0), "request_count"), 2);
    filter = (struct epcs_report_query){.from_us = now + 1, .limit = 10};
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->list_reports(db, &filter, &pk, err, sizeof(err)), 0);
    EXPECT_INT(get_decoded(&zone, &out, "reports")->via.array.size, 0);

    /* The CSV export, exactly; the URL holds a comma and quotes. */
    filter = (struct epcs_report_query){.platform = "kakao", .limit = 10};
    struct epcs_buf csv = {0};
    uint64_t next = 9;
    EXPECT_INT(backend->cases->export_reports(db, &filter, &csv, &next, err, sizeof(err)), 0);
    epcs_buf_append(&csv, "", 1);
    char line[512];
    snprintf(line, sizeof(line),
             "id,filed_at,filed_by,status,url,platform,election,category,date,verdict,article,"
             "ruleset,decision,request_count,updated_at\r\n"
             "2,2026-03-02T00:00:00.000000Z,nec,closed,\"https://blog.example/p/2?a=1,b=\"\"2\"\""
             "\",kakao,na22,false_fact,2024-03-01,prohibited,250(1),rs-0123456789abcdef,%lld,2,"
             "2026-03-02T01:00:00.000001Z\r\n",
             late_decision);
    EXPECT_STR(csv.data, line);
    EXPECT_INT(next, 0);
    filter = (struct epcs_report_query){.limit = 1};
    epcs_buf_reset(&csv);
    EXPECT_INT(backend->cases->export_reports(db, &filter, &csv, &next, err, sizeof(err)), 0);
    EXPECT_INT(next, 1);

    backend->cases->reader_close(db);
    epcs_cases_close(cases);
    epcs_decision_log_close(log);

    /* Every step went to the decision log, in order, with whom it concerns. */
    EXPECT_CONTAINS(logged_events(&zone),
                    "decision:nec report_filed:nec:1 request_sent:naver:1 "
                    "request_sent:prosecutors:2 "
                    "request_overdue:naver:1 request_sent:naver:3 request_overdue:naver:3 "
                    "request_sent:prosecutors:4 request_escalated:naver:1 "
                    "request_escalated:naver:3 request_answered:prosecutors:4 "
                    "request_answered:prosecutors:2 report_closed:nec:1 decision:nec "
                    "report_filed:nec:2");
    epcs_buf_free(&out);
    epcs_buf_free(&csv);
    msgpack_zone_destroy(&zone);
}

static void test_reopen_keeps_everything(void)
{
    struct epcs_cases *cases = open_cases(&main_place, NULL);
    EXPECT(cases != NULL);
    struct epcs_cases_reader *db = open_reader(&main_place);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    EXPECT_STR(statuses(db, 1, &zone), "1:escalated 2:done 3:escalated 4:data_submitted");
    /* Ids go on from where they were, never reused. */
    struct epcs_buf out = {0};
    EXPECT_INT(file(cases, "naver", "prohibited", 1, t0(), &out), 6);
    EXPECT_STR(statuses(db, 6, &zone), "8:open");
    backend->cases->reader_close(db);
    epcs_cases_close(cases);
    epcs_buf_free(&out);
    msgpack_zone_destroy(&zone);
}

static void test_refused_event_stores_nothing(void)
{
    char err[256];
    /* A log that holds nothing refuses every event. */
    struct epcs_decision_log *log = open_log(&main_place, EPCS_AUDIT_ASYNC, 0);
    EXPECT(log != NULL);
    struct epcs_cases *cases = open_cases(&main_place, log);
    struct epcs_buf verdict = {0}, out = {0};
    make_verdict(&verdict, "prohibited", 2);
    struct epcs_case_report report = {.filed_by = "nec",
                                      .url = "https://x.example/",
                                      .platform = "naver",
                                      .election = "na22",
                                      .category = "slander",
                                      .date = "2024-03-01",
                                      .facts = "\x80",
                                      .facts_len = 1,
                                      .verdict = verdict.data,
                                      .verdict_len = verdict.len,
                                      .by_staff = 1,
                                      .now_us = t0()};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_filed filed;
    EXPECT_INT(epcs_cases_file(cases, &report, &pk, &filed, err, sizeof(err)),
               EPCS_CASES_LOG_REFUSED);
    EXPECT_INT(out.len, 0);
    char detail[64];
    /* Refusals that change nothing need no event. */
    EXPECT_INT(answer(cases, "naver", 3, "done", NULL, t0(), detail), EPCS_CASES_CLOSED);
    /* An answer, or a sweep step, the log refuses is not stored either. */
    EXPECT_INT(answer(cases, "naver", 8, "done", NULL, t0(), detail), EPCS_CASES_LOG_REFUSED);
    err[0] = '\0';
    EXPECT_INT(epcs_cases_sweep(cases, t0() + 1000 * DAY_US, 10, err, sizeof(err)), -1);
    EXPECT_STR(err, "the decision log cannot take a step now (its queue is full)");
    struct epcs_cases_reader *db = open_reader(&main_place);
    struct epcs_report_query all = {.limit = 100};
    struct epcs_buf listed = {0};
    msgpack_packer listed_pk;
    msgpack_packer_init(&listed_pk, &listed, epcs_buf_msgpack_write);
    EXPECT_INT(backend->cases->list_reports(db, &all, &listed_pk, err, sizeof(err)), 0);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object page = decode(&zone, &listed);
    EXPECT_INT(get(&page, "reports")->via.array.size, 6);
    EXPECT_STR(statuses(db, 6, &zone), "8:open");
    EXPECT_STR(history(db, 6, &zone), "report_filed request_sent(8)");
    backend->cases->reader_close(db);
    epcs_cases_close(cases);
    epcs_decision_log_close(log);
    epcs_buf_free(&verdict);
    epcs_buf_free(&out);
    epcs_buf_free(&listed);
    msgpack_zone_destroy(&zone);
}

static void test_other_schema_is_refused(void)
{
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/%s", main_place.dir, backend->sqlite_file);
    sqlite3 *db = NULL;
    EXPECT_INT(sqlite3_open(path, &db), SQLITE_OK);
    EXPECT_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    EXPECT(backend->cases->open(main_place.where, NULL, err, sizeof(err)) == NULL);
    EXPECT_CONTAINS(err, "has case store format 99, this epcsd writes 2");
}

/* A fresh place of its own, for a test that needs an empty store. */
static const struct place *fresh_place(const char *name)
{
    static struct place place;
    EXPECT_INT(backend->prepare(name, &place), 0);
    return &place;
}

/* Partner text a spreadsheet would run as a formula (OWASP CSV injection) is exported as text:
 * a cell starting with = + - @, a tab or a carriage return gets a leading apostrophe. */
static void test_csv_cells_are_not_formulas(void)
{
    char err[256], detail[64];
    const struct place *place = fresh_place("csv");
    struct epcs_cases *cases = open_cases(place, NULL);
    EXPECT(cases != NULL);
    struct epcs_buf verdict = {0}, out = {0};
    make_verdict(&verdict, "prohibited", 1);
    struct epcs_case_report report = {.filed_by = "=1+2",
                                      .url = "https://x.example/=p",
                                      .platform = "-naver",
                                      .election = "@na22",
                                      .category = "+false_fact",
                                      .date = "\t2024-03-01",
                                      .facts = "\x80",
                                      .facts_len = 1,
                                      .verdict = verdict.data,
                                      .verdict_len = verdict.len,
                                      .by_staff = 1,
                                      .now_us = t0()};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_filed filed;
    EXPECT_INT(epcs_cases_file(cases, &report, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(
        answer(cases, "-naver", 1, "done", "\r=HYPERLINK(\"http://evil\",\"x\")", t0(), detail),
        EPCS_CASES_OK);
    struct epcs_cases_reader *db = open_reader(place);
    struct epcs_report_query all = {.limit = 10};
    struct epcs_buf csv = {0};
    uint64_t next = 9;
    EXPECT_INT(backend->cases->export_reports(db, &all, &csv, &next, err, sizeof(err)), 0);
    epcs_buf_append(&csv, "", 1);
    EXPECT_STR(csv.data,
               "id,filed_at,filed_by,status,url,platform,election,category,date,verdict,article,"
               "ruleset,decision,request_count,updated_at\r\n"
               "1,2026-03-02T00:00:00.000000Z,'=1+2,closed,https://x.example/=p,'-naver,'@na22,"
               "'+false_fact,'\t2024-03-01,prohibited,250(1),rs-0123456789abcdef,,1,"
               "2026-03-02T00:00:00.000000Z\r\n");
    struct epcs_request_query queue = {.partner = "-naver", .status = "all", .limit = 10};
    epcs_buf_reset(&csv);
    EXPECT_INT(backend->cases->export_requests(db, &queue, &csv, &next, err, sizeof(err)), 0);
    epcs_buf_append(&csv, "", 1);
    EXPECT_STR(csv.data,
               "id,report,kind,to,article,attempt,status,created,due,objection_until,follows,url,"
               "platform,election,category,answered_at,reason,via\r\n"
               "1,1,deletion_request,'-naver,82-4(3),1,done,2026-03-02T00:00:00.000000Z,"
               "2026-03-02T01:00:00.000000Z,2026-03-05T00:00:00.000000Z,,https://x.example/=p,"
               "'-naver,'@na22,'+false_fact,2026-03-02T00:00:00.000000Z,"
               "\"'\r=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",\r\n");
    backend->cases->reader_close(db);
    epcs_cases_close(cases);
    epcs_buf_free(&verdict);
    epcs_buf_free(&out);
    epcs_buf_free(&csv);
}

/* A step SQLite refuses halfway (here a trigger a test installs) is rolled back whole: the
 * decision log gets none of its events, so no event cites a report or request id that SQLite
 * hands out again to the next step. */
static void test_rolled_back_step_leaves_no_event(void)
{
    char err[256];
    const char *dir = fresh_place("rollback")->dir;
    struct epcs_decision_log *log =
        backend->log->open(dir, dir, EPCS_AUDIT_SYNC, 1000, err, sizeof(err));
    struct epcs_cases *cases = backend->cases->open(dir, log, err, sizeof(err));
    EXPECT(cases != NULL);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, backend->sqlite_file);
    sqlite3 *other = NULL;
    EXPECT_INT(sqlite3_open(path, &other), SQLITE_OK);
    EXPECT_INT(sqlite3_exec(other,
                            "CREATE TRIGGER refuse BEFORE INSERT ON requests BEGIN "
                            "SELECT RAISE(ABORT, 'refused by the test'); END",
                            NULL, NULL, NULL),
               SQLITE_OK);
    struct epcs_buf verdict = {0}, out = {0};
    make_verdict(&verdict, "prohibited", 1);
    struct epcs_case_report report = {.filed_by = "nec",
                                      .url = "https://x.example/refused",
                                      .platform = "naver",
                                      .election = "na22",
                                      .category = "slander",
                                      .date = "2024-03-01",
                                      .facts = "\x80",
                                      .facts_len = 1,
                                      .verdict = verdict.data,
                                      .verdict_len = verdict.len,
                                      .by_staff = 1,
                                      .now_us = t0()};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_filed filed;
    EXPECT_INT(epcs_cases_file(cases, &report, &pk, &filed, err, sizeof(err)), EPCS_CASES_FAILED);
    EXPECT_CONTAINS(err, "refused by the test");
    EXPECT_INT(sqlite3_exec(other, "DROP TRIGGER refuse", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    report.url = "https://x.example/stored";
    EXPECT_INT(epcs_cases_file(cases, &report, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(filed.id, 1);
    epcs_cases_close(cases);
    epcs_decision_log_close(log);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    /* Report 1 and request 1 are the stored ones, each logged once. */
    EXPECT_STR(events_in(dir, &zone), "report_filed:nec:1 request_sent:naver:1");
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&verdict);
    epcs_buf_free(&out);
}

static long long outbox_rows(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, backend->sqlite_file);
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    long long count = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        count = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return count;
}

static void sql(const char *dir, const char *statement)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, backend->sqlite_file);
    sqlite3 *db = NULL;
    EXPECT_INT(sqlite3_open(path, &db), SQLITE_OK);
    char *message = NULL;
    EXPECT_INT(sqlite3_exec(db, statement, NULL, NULL, &message), SQLITE_OK);
    if (message != NULL)
        fprintf(stderr, "%s: %s\n", statement, message);
    sqlite3_free(message);
    sqlite3_close(db);
}

/* What a stop leaves in the outbox goes to the decision log at the next start, before anything
 * else and with the ids it was given; what the log holds already is not logged again. */
static void test_outbox_survives_a_stop(void)
{
    char err[256];
    const char *dir = fresh_place("outbox")->dir;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    struct epcs_buf out = {0};
    struct epcs_decision_log *log =
        backend->log->open(dir, dir, EPCS_AUDIT_ASYNC, 1000, err, sizeof(err));
    struct epcs_cases *cases = backend->cases->open(dir, log, err, sizeof(err));
    EXPECT(cases != NULL);
    EXPECT_INT(file(cases, "naver", "prohibited", 1, t0(), &out), 1);
    epcs_cases_close(cases);
    epcs_decision_log_close(log);
    /* A clean stop leaves nothing behind. */
    EXPECT_INT(outbox_rows(dir), 0);
    EXPECT_STR(events_in(dir, &zone), "decision:nec report_filed:nec:1 request_sent:naver:1");

    /* A stop after the log committed report_filed but before the store deleted its row, and
     * one after the store committed an answer but before it handed the answer over. */
    struct epcs_cases_reader *reader = backend->cases->reader_open(dir, err, sizeof(err));
    msgpack_object whole = report(reader, 1, &zone, &out);
    backend->cases->reader_close(reader);
    long long filed = number(item(get(&whole, "history"), 0), "decision");
    long long sent = number(item(get(&whole, "history"), 1), "decision");
    char statement[512];
    snprintf(statement, sizeof(statement),
             "INSERT INTO outbox(id, kind, at_us, partner, election, event, subject) VALUES "
             "(%lld, 1, 1, 'nec', 'na22', 'report_filed', 1), "
             "(%lld, 1, 2, 'naver', 'na22', 'request_answered', 1)",
             filed, sent + 5);
    sql(dir, statement);
    log = backend->log->open(dir, dir, EPCS_AUDIT_ASYNC, 1000, err, sizeof(err));
    cases = backend->cases->open(dir, log, err, sizeof(err));
    EXPECT(cases != NULL);
    /* Handed over and committed before the store opened: the outbox is empty again. */
    EXPECT_INT(outbox_rows(dir), 0);
    /* This run's ids come after the recovered ones. */
    EXPECT_INT(file(cases, "kakao", "prohibited", 1, t0(), &out), 2);
    epcs_cases_close(cases);
    epcs_decision_log_close(log);
    const char *expected = "decision:nec report_filed:nec:1 request_sent:naver:1 "
                           "request_answered:naver:1 decision:nec report_filed:nec:2 "
                           "request_sent:kakao:2";
    EXPECT_STR(events_in(dir, &zone), expected);
    struct epcs_decision_reader *decisions = backend->log->reader_open(dir, err, sizeof(err));
    struct epcs_buf entry = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &entry, epcs_buf_msgpack_write);
    EXPECT_INT(backend->log->get(decisions, (uint64_t)sent + 5, &pk, NULL, NULL, 0, NULL, err,
                                 sizeof(err)),
               0);
    msgpack_object answered = decode(&zone, &entry);
    EXPECT_STR(text(&zone, &answered, "event"), "request_answered");
    EXPECT_INT(number(&answered, "id"), sent + 5);
    EXPECT_STR(text(&zone, &answered, "at"), "1970-01-01T00:00:00.000002Z");
    backend->log->reader_close(decisions);

    /* Opened again, nothing is logged twice. */
    log = backend->log->open(dir, dir, EPCS_AUDIT_ASYNC, 1000, err, sizeof(err));
    cases = backend->cases->open(dir, log, err, sizeof(err));
    epcs_cases_close(cases);
    epcs_decision_log_close(log);
    EXPECT_STR(events_in(dir, &zone), expected);
    epcs_buf_free(&entry);
    epcs_buf_free(&out);
    msgpack_zone_destroy(&zone);
}

/* Spellings of one posting that name the same one, and those that do not. */
static void test_postings(void)
{
    static const struct {
        const char *url, *posting;
    } cases[] = {
        {"https://blog.naver.com/x/1", "https://blog.naver.com/x/1"},
        {"HTTPS://Blog.Naver.COM/x/1", "https://blog.naver.com/x/1"},
        {"https://blog.naver.com:443/x/1#comment-3", "https://blog.naver.com/x/1"},
        {"http://blog.naver.com:80/x/1", "http://blog.naver.com/x/1"},
        {"http://blog.naver.com:443/x/1", "http://blog.naver.com:443/x/1"},
        {"https://blog.naver.com./x/1", "https://blog.naver.com/x/1"},
        {"https://blog.naver.com", "https://blog.naver.com/"},
        {"https://blog.naver.com?q=1", "https://blog.naver.com/?q=1"},
        {"https://blog.naver.com:/x", "https://blog.naver.com/x"},
        {"https://blog.naver.com/%7Euser/%2fa%2Fb?q=%e2%82%ac&r=%41",
         "https://blog.naver.com/~user/%2Fa%2Fb?q=%E2%82%AC&r=A"},
        {"https://blog.naver.com/X/1?Q=A", "https://blog.naver.com/X/1?Q=A"},
        {"https://User:Pass@Blog.Naver.com/x", "https://User:Pass@blog.naver.com/x"},
        {"https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"},
        {"https://[2001:db8::1]:8443/x", "https://[2001:db8::1]:8443/x"},
        {"https://blog.naver.com/100%", "https://blog.naver.com/100%"},
        {"https://blog.naver.com/%zz", "https://blog.naver.com/%zz"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char posting[EPCS_CASES_POSTING_MAX] = "";
        EXPECT_INT(epcs_cases_posting(cases[i].url, posting, sizeof(posting)), 0);
        EXPECT_STR(posting, cases[i].posting);
    }
    char small[16];
    EXPECT_INT(epcs_cases_posting("ftp://x.example/", small, sizeof(small)), -1);
    EXPECT_INT(epcs_cases_posting("https://", small, sizeof(small)), -1);
    EXPECT_INT(epcs_cases_posting("https:///x", small, sizeof(small)), -1);
    EXPECT_INT(epcs_cases_posting("https://x.example/long/path", small, sizeof(small)), -1);
}

/* A partner's report: its requests held, not due, not swept, until staff confirm them; the
 * same partner filing it again changes nothing; a staff policy of "send" sends at once. */
static void test_held_until_confirmed(void)
{
    char err[256], detail[64];
    const struct place *place = fresh_place("held");
    struct epcs_decision_log *log = open_log(place, EPCS_AUDIT_ASYNC, 1000);
    struct epcs_cases *cases = open_cases(place, log);
    EXPECT(cases != NULL);
    struct epcs_cases_reader *db = open_reader(place);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    struct epcs_buf verdict = {0}, out = {0};
    make_verdict(&verdict, "prohibited", 1);
    struct epcs_decision decision = report_decision("prohibited");
    /* A partner's: its requests are held. */
    struct epcs_case_report filing =
        staff_filing("kakao", "https://Blog.Example/held#top", &verdict, &decision);
    filing.by_staff = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_filed filed;
    EXPECT_INT(epcs_cases_file(cases, &filing, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(filed.id, 1);
    EXPECT_INT(filed.joined, 0);
    const msgpack_object *joined = get_decoded(&zone, &out, "joined");
    EXPECT(joined->type == MSGPACK_OBJECT_BOOLEAN && !joined->via.boolean);
    msgpack_object whole = report(db, 1, &zone, &out);
    EXPECT_STR(text(&zone, &whole, "posting"), "https://blog.example/held");
    EXPECT_STR(text(&zone, &whole, "status"), "held");
    EXPECT_STR(statuses(db, 1, &zone), "1:held");
    EXPECT(get(item(get(&whole, "requests"), 0), "due")->type == MSGPACK_OBJECT_NIL);
    EXPECT_INT(epcs_cases_sweep(cases, t0() + 100 * DAY_US, 10, err, sizeof(err)), 0);
    EXPECT_INT(answer(cases, "naver", 1, "done", NULL, t0(), detail), EPCS_CASES_NOT_FOUND);
    struct epcs_request_query queue = {.partner = "naver", .status = "all", .limit = 10};
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->list_requests(db, &queue, &pk, err, sizeof(err)), 0);
    EXPECT_INT(get_decoded(&zone, &out, "requests")->via.array.size, 0);

    /* The same partner again: nothing changes, and the answer says it joined. */
    epcs_buf_reset(&out);
    filing.now_us = t0() + HOUR_US;
    EXPECT_INT(epcs_cases_file(cases, &filing, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(filed.id, 1);
    EXPECT_INT(filed.joined, 1);
    joined = get_decoded(&zone, &out, "joined");
    EXPECT(joined->type == MSGPACK_OBJECT_BOOLEAN && joined->via.boolean);
    EXPECT_STR(history(db, 1, &zone), "report_filed request_held(1)");

    /* Staff confirm two days later: due and objection period count from then. */
    struct epcs_case_review review = {.staff = "nec", .report = 1, .now_us = t0() + 2 * DAY_US};
    uint64_t ticket;
    epcs_buf_reset(&out);
    EXPECT_INT(epcs_cases_review(cases, &review, &pk, &ticket, detail, sizeof(detail)),
               EPCS_CASES_OK);
    whole = decode(&zone, &out);
    const msgpack_object *sent = item(get(&whole, "requests"), 0);
    EXPECT_STR(text(&zone, sent, "created"), "2026-03-02T00:00:00.000000Z");
    EXPECT_STR(text(&zone, sent, "sent"), "2026-03-04T00:00:00.000000Z");
    EXPECT_STR(text(&zone, sent, "due"), "2026-03-04T01:00:00.000000Z");
    EXPECT_STR(text(&zone, sent, "objection_until"), "2026-03-07T00:00:00.000000Z");
    EXPECT_STR(history(db, 1, &zone),
               "report_filed request_held(1) report_confirmed request_sent(1)");
    epcs_buf_reset(&out);
    EXPECT_INT(epcs_cases_review(cases, &review, &pk, &ticket, detail, sizeof(detail)),
               EPCS_CASES_NOT_HELD);
    EXPECT_STR(detail, "open");
    review.report = 9;
    EXPECT_INT(epcs_cases_review(cases, &review, &pk, &ticket, detail, sizeof(detail)),
               EPCS_CASES_NOT_FOUND);

    /* The policy: held by default; "send" from the change on. */
    epcs_buf_reset(&out);
    EXPECT_INT(backend->cases->get_policy(db, "kakao", &pk, err, sizeof(err)), 0);
    whole = decode(&zone, &out);
    EXPECT_STR(text(&zone, &whole, "reports"), "hold");
    struct epcs_case_policy policy = {
        .partner = "kakao", .send = 1, .by = "nec", .now_us = t0() + 3 * DAY_US};
    epcs_buf_reset(&out);
    EXPECT_INT(epcs_cases_set_policy(cases, &policy, &pk, &ticket, err, sizeof(err)),
               EPCS_CASES_OK);
    whole = decode(&zone, &out);
    EXPECT_STR(text(&zone, &whole, "reports"), "send");
    EXPECT_STR(text(&zone, &whole, "set_by"), "nec");
    EXPECT_STR(text(&zone, &whole, "set_at"), "2026-03-05T00:00:00.000000Z");
    filing.url = "https://blog.example/sent";
    epcs_buf_reset(&out);
    EXPECT_INT(epcs_cases_file(cases, &filing, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_STR(statuses(db, filed.id, &zone), "2:open");
    backend->cases->reader_close(db);
    epcs_cases_close(cases);
    epcs_decision_log_close(log);
    EXPECT_CONTAINS(events_in(place->where, &zone), "report_confirmed:kakao:1 request_sent:naver:1 "
                                                    "partner_policy_set:kakao:0 decision:kakao "
                                                    "report_filed:kakao:2 request_sent:naver:2");
    epcs_buf_free(&verdict);
    epcs_buf_free(&out);
    msgpack_zone_destroy(&zone);
}

static const char format_1_schema[] =
    "CREATE TABLE IF NOT EXISTS reports ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  filed_us INTEGER NOT NULL,"
    "  filed_by TEXT NOT NULL,"
    "  url TEXT NOT NULL,"
    "  platform TEXT NOT NULL,"
    "  election TEXT NOT NULL,"
    "  category TEXT NOT NULL,"
    "  date TEXT NOT NULL,"
    "  facts BLOB NOT NULL,"
    "  verdict TEXT NOT NULL,"
    "  article TEXT NOT NULL,"
    "  ruleset TEXT NOT NULL,"
    "  decision INTEGER,"
    "  answer BLOB NOT NULL,"
    "  status TEXT NOT NULL,"
    "  updated_us INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS reports_by_time ON reports(filed_us);"
    "CREATE INDEX IF NOT EXISTS reports_by_status ON reports(status, id);"
    "CREATE TABLE IF NOT EXISTS requests ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  report INTEGER NOT NULL REFERENCES reports(id),"
    "  chain INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  follows INTEGER REFERENCES requests(id),"
    "  kind TEXT NOT NULL,"
    "  partner TEXT NOT NULL,"
    "  article TEXT NOT NULL,"
    "  action BLOB NOT NULL,"
    "  created_us INTEGER NOT NULL,"
    "  due_us INTEGER,"
    "  objection_until_us INTEGER,"
    "  status TEXT NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  answered_us INTEGER,"
    "  answered_via INTEGER REFERENCES requests(id),"
    "  reason TEXT,"
    "  data BLOB);"
    "CREATE INDEX IF NOT EXISTS requests_by_partner ON requests(partner, status, id);"
    "CREATE INDEX IF NOT EXISTS requests_by_due ON requests(status, due_us);"
    "CREATE INDEX IF NOT EXISTS requests_by_report ON requests(report, id);"
    "CREATE INDEX IF NOT EXISTS requests_by_chain ON requests(chain, id);"
    "CREATE TABLE IF NOT EXISTS history ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  report INTEGER NOT NULL REFERENCES reports(id),"
    "  request INTEGER REFERENCES requests(id),"
    "  at_us INTEGER NOT NULL,"
    "  event TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  detail BLOB,"
    "  log_id INTEGER);"
    "CREATE INDEX IF NOT EXISTS history_by_report ON history(report, id);";

/* A case store of format 1 (before outboxes, postings and reporters) is upgraded in place,
 * every report and request kept, and later reports of its postings join them. */
static void test_upgrade_from_format_1(void)
{
    char err[256];
    const char *dir = fresh_place("format1")->dir;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, backend->sqlite_file);
    sqlite3 *old = NULL;
    EXPECT_INT(sqlite3_open(path, &old), SQLITE_OK);
    EXPECT_INT(sqlite3_exec(old, format_1_schema, NULL, NULL, NULL), SQLITE_OK);
    EXPECT_INT(sqlite3_exec(
                   old,
                   "PRAGMA user_version = 1;"
                   "INSERT INTO reports VALUES(1, 1000, 'nec', 'HTTPS://Old.Example/p#x', 'naver', "
                   "'na22', 'false_fact', '2024-03-01', x'80', 'prohibited', '250(1)', 'rs-1', 7, "
                   "x'80', 'open', 1000);"
                   "INSERT INTO requests(id, report, chain, attempt, kind, partner, article, "
                   "action, created_us, due_us, status, updated_us) VALUES(1, 1, 1, 1, "
                   "'deletion_request', 'naver', '82-4(3)', x'80', 1000, 2000, 'open', 1000);",
                   NULL, NULL, NULL),
               SQLITE_OK);
    sqlite3_close(old);
    struct epcs_cases *cases = backend->cases->open(dir, NULL, err, sizeof(err));
    EXPECT(cases != NULL);
    struct epcs_cases_reader *db = backend->cases->reader_open(dir, err, sizeof(err));
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    struct epcs_buf out = {0};
    msgpack_object whole = report(db, 1, &zone, &out);
    EXPECT_STR(text(&zone, &whole, "posting"), "https://old.example/p");
    EXPECT_STR(text(&zone, item(get(&whole, "reporters"), 0), "partner"), "nec");
    EXPECT_STR(text(&zone, item(get(&whole, "requests"), 0), "sent"),
               "1970-01-01T00:00:00.001000Z");
    struct epcs_buf verdict = {0};
    make_verdict(&verdict, "prohibited", 1);
    struct epcs_case_report again = {.filed_by = "kakao",
                                     .url = "https://old.example/p",
                                     .platform = "naver",
                                     .election = "na22",
                                     .category = "false_fact",
                                     .date = "2024-03-01",
                                     .facts = "\x80",
                                     .facts_len = 1,
                                     .verdict = verdict.data,
                                     .verdict_len = verdict.len,
                                     .now_us = t0()};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_filed filed;
    epcs_buf_reset(&out);
    EXPECT_INT(epcs_cases_file(cases, &again, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(filed.id, 1);
    EXPECT_INT(filed.joined, 1);
    backend->cases->reader_close(db);
    epcs_cases_close(cases);
    epcs_buf_free(&verdict);
    epcs_buf_free(&out);
    msgpack_zone_destroy(&zone);
}

/* A write retried under its Idempotency-Key: the first answer again, byte for byte, and
 * nothing stored twice; the key with another request is refused; keys are per partner. */
static void test_idempotent_writes(void)
{
    char err[256] = "", detail[64] = "";
    const struct place *place = fresh_place("idempotency");
    struct epcs_cases *cases = open_cases(place, NULL);
    EXPECT(cases != NULL);
    if (cases == NULL)
        return;
    struct epcs_buf verdict = {0}, first = {0}, again = {0};
    make_verdict(&verdict, "prohibited", 1);
    struct epcs_decision decision = report_decision("prohibited");
    struct epcs_case_report filing =
        staff_filing("nec", "https://blog.example/retried", &verdict, &decision);
    filing.idempotency.key = "retry-1";
    memset(filing.idempotency.request_sha256, 0xa1, 32);
    struct epcs_case_filed filed, replayed;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &first, epcs_buf_msgpack_write);
    EXPECT_INT(epcs_cases_file(cases, &filing, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(filed.replayed, 0);
    /* The retry comes later: it still gets the answer of then. */
    filing.now_us = t0() + 60000000;
    msgpack_packer_init(&pk, &again, epcs_buf_msgpack_write);
    EXPECT_INT(epcs_cases_file(cases, &filing, &pk, &replayed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(replayed.replayed, 1);
    EXPECT_INT(replayed.id, filed.id);
    EXPECT_INT(replayed.joined, 0);
    EXPECT(again.len == first.len && memcmp(again.data, first.data, first.len) == 0);
    struct epcs_cases_reader *db = open_reader(place);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    EXPECT_STR(statuses(db, filed.id, &zone), "1:open");
    EXPECT_STR(history(db, filed.id, &zone), "report_filed request_sent(1)");

    /* The key again with another request: refused, and nothing is filed. */
    filing.url = "https://blog.example/another";
    filing.idempotency.request_sha256[0] ^= 1;
    epcs_buf_reset(&again);
    EXPECT_INT(epcs_cases_file(cases, &filing, &pk, &replayed, err, sizeof(err)),
               EPCS_CASES_KEY_REUSED);
    EXPECT_INT(again.len, 0);
    struct epcs_report_query all = {.limit = 100};
    struct epcs_buf listed = {0};
    msgpack_packer_init(&pk, &listed, epcs_buf_msgpack_write);
    EXPECT_INT(backend->cases->list_reports(db, &all, &pk, err, sizeof(err)), 0);
    EXPECT_INT(get_decoded(&zone, &listed, "reports")->via.array.size, 1);
    /* Another partner's key of the same name is its own. */
    filing.filed_by = "kakao";
    msgpack_packer_init(&pk, &again, epcs_buf_msgpack_write);
    EXPECT_INT(epcs_cases_file(cases, &filing, &pk, &replayed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(replayed.replayed, 0);
    EXPECT(replayed.id != filed.id);
    epcs_buf_free(&listed);

    /* An answer retried: the first answer, the request answered once. */
    struct epcs_buf done = {0}, done_again = {0};
    struct epcs_case_answer in = {.partner = "naver",
                                  .request = 1,
                                  .status = "done",
                                  .now_us = t0() + 1000000,
                                  .idempotency = {.key = "answer-1"}};
    memset(in.idempotency.request_sha256, 0xb2, 32);
    uint64_t ticket;
    msgpack_packer_init(&pk, &done, epcs_buf_msgpack_write);
    EXPECT_INT(epcs_cases_answer(cases, &in, &pk, &ticket, detail, sizeof(detail)), EPCS_CASES_OK);
    in.now_us += 1000000;
    msgpack_packer_init(&pk, &done_again, epcs_buf_msgpack_write);
    EXPECT_INT(epcs_cases_answer(cases, &in, &pk, &ticket, detail, sizeof(detail)), EPCS_CASES_OK);
    EXPECT(done_again.len == done.len && memcmp(done_again.data, done.data, done.len) == 0);
    EXPECT_STR(history(db, filed.id, &zone), "report_filed request_sent(1) request_answered(1) "
                                             "report_closed");
    /* Without the key it is a new answer, to a request closed by the first. */
    EXPECT_INT(answer(cases, "naver", 1, "done", NULL, t0() + 3000000, detail), EPCS_CASES_CLOSED);
    in.idempotency.request_sha256[0] ^= 1;
    EXPECT_INT(epcs_cases_answer(cases, &in, &pk, &ticket, detail, sizeof(detail)),
               EPCS_CASES_KEY_REUSED);
    backend->cases->reader_close(db);
    epcs_cases_close(cases);
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&verdict);
    epcs_buf_free(&first);
    epcs_buf_free(&again);
    epcs_buf_free(&done);
    epcs_buf_free(&done_again);
}

/* A decision log whose queue is full takes a step on PostgreSQL: the step's entries never enter
 * its queue, they commit with the step, and under --audit sync nothing waits for the writer. */
static void test_full_log_takes_steps(void)
{
    char err[256] = "", detail[64] = "";
    const struct place *place = fresh_place("fullqueue");
    struct epcs_decision_log *log = open_log(place, EPCS_AUDIT_SYNC, 0);
    struct epcs_cases *cases = open_cases(place, log);
    EXPECT(cases != NULL);
    if (cases == NULL)
        return;
    struct epcs_buf verdict = {0}, out = {0};
    make_verdict(&verdict, "prohibited", 1);
    struct epcs_decision decision = report_decision("prohibited");
    struct epcs_case_report report =
        staff_filing("nec", "https://x.example/full", &verdict, &decision);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_filed filed;
    EXPECT_INT(epcs_cases_file(cases, &report, &pk, &filed, err, sizeof(err)), EPCS_CASES_OK);
    EXPECT_INT(filed.ticket, 0);
    struct epcs_case_answer done = {
        .partner = "naver", .request = 1, .status = "done", .now_us = t0() + 1};
    uint64_t ticket = 99;
    EXPECT_INT(epcs_cases_answer(cases, &done, &pk, &ticket, detail, sizeof(detail)),
               EPCS_CASES_OK);
    EXPECT_INT(ticket, 0);
    EXPECT_INT(epcs_cases_sweep(cases, t0() + 100 * DAY_US, 10, err, sizeof(err)), 0);
    epcs_cases_close(cases);
    epcs_decision_log_close(log);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    EXPECT_STR(events_in(place->where, &zone), "decision:nec report_filed:nec:1 "
                                               "request_sent:naver:1 request_answered:naver:1 "
                                               "report_closed:nec:1");
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&verdict);
    epcs_buf_free(&out);
}

/* ---- several replicas on one PostgreSQL database -------------------------------------------- */

/* The first column of the one row `sql` gives at `where`, or -1. */
static long long pg_number(const char *where, const char *sql)
{
    PGconn *conn = PQconnectdb(where);
    PGresult *result = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, sql) : NULL;
    long long value = -1;
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1)
        value = strtoll(PQgetvalue(result, 0, 0), NULL, 10);
    else
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
    PQclear(result);
    PQfinish(conn);
    return value;
}

/* One epcsd of a cluster: a store handle and a decision log of its own (its journals in a
 * directory of its own) on the shared database. */
struct replica {
    struct place place;
    struct epcs_decision_log *log;
    struct epcs_cases *cases;
};

static int replica_open(struct replica *replica, const struct place *shared, const char *name)
{
    replica->place = *shared;
    int len = snprintf(replica->place.dir, sizeof(replica->place.dir), "%s/%s", shared->dir, name);
    if (len < 0 || (size_t)len >= sizeof(replica->place.dir) ||
        mkdir(replica->place.dir, 0700) != 0)
        return -1;
    replica->log = open_log(&replica->place, EPCS_AUDIT_SYNC, 1000);
    replica->cases = replica->log != NULL ? open_cases(&replica->place, replica->log) : NULL;
    return replica->cases != NULL ? 0 : -1;
}

/* Two replicas on a fresh place `name`: its place. */
static const struct place *two_replicas(const char *name, struct replica *a, struct replica *b)
{
    const struct place *shared = fresh_place(name);
    EXPECT_INT(replica_open(a, shared, "a"), 0);
    EXPECT_INT(replica_open(b, shared, "b"), 0);
    return shared;
}

static void replica_close(struct replica *replica)
{
    epcs_cases_close(replica->cases);
    epcs_decision_log_close(replica->log);
}

/* A filing of `url` by `filer` (with `key`, or none) on `cases`, made from any thread: no
 * expectation is counted here. The outcome, with `err`. */
static int file_url(struct epcs_cases *cases, const char *filer, const char *url, const char *key,
                    struct epcs_buf *out, struct epcs_case_filed *filed, char *err, size_t err_size)
{
    struct epcs_buf verdict = {0};
    make_verdict(&verdict, "prohibited", 1);
    struct epcs_decision decision = report_decision("prohibited");
    struct epcs_case_report report = staff_filing(filer, url, &verdict, &decision);
    report.idempotency.key = key;
    memset(report.idempotency.request_sha256, 0xc3, 32);
    msgpack_packer pk;
    epcs_buf_reset(out);
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    int rc = epcs_cases_file(cases, &report, &pk, filed, err, err_size);
    epcs_buf_free(&verdict);
    return rc;
}

/* Two replicas take ids from the database: reports, requests and decisions never collide, and
 * what one stored the other reads as it is. */
static void test_pg_replicas_give_distinct_ids(void)
{
    struct replica a, b;
    const struct place *shared = two_replicas("replicas", &a, &b);
    enum { EACH = 5 };
    uint64_t reports[2 * EACH];
    long long decisions[2 * EACH];
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    struct epcs_buf out = {0}, seen = {0};
    for (int i = 0; i < 2 * EACH; i++) {
        struct replica *on = i % 2 == 0 ? &a : &b;
        reports[i] = file(on->cases, "naver", "prohibited", 2, t0(), &out);
        decisions[i] = number(get_decoded(&zone, &out, "answer"), "decision");
    }
    for (int i = 0; i < 2 * EACH; i++) {
        EXPECT_INT(reports[i], i + 1);
        for (int j = 0; j < i; j++)
            EXPECT(decisions[i] != decisions[j]);
    }
    /* Each replica's decisions carry its own run. */
    EXPECT((decisions[0] >> 32) != (decisions[1] >> 32));
    EXPECT_INT(pg_number(shared->where, "SELECT count(DISTINCT id) FROM epcs_case_requests"),
               4 * EACH);
    EXPECT_INT(pg_number(shared->where, "SELECT max(id) FROM epcs_case_requests"), 4 * EACH);
    /* A report filed on one replica, read through the other's pool: the same bytes. */
    char err[256];
    struct epcs_cases_reader *on_a = epcs_cases_reader_acquire(a.cases, err, sizeof(err));
    struct epcs_cases_reader *on_b = epcs_cases_reader_acquire(b.cases, err, sizeof(err));
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    epcs_buf_reset(&out);
    EXPECT_INT(epcs_cases_get_report(a.cases, on_a, reports[2], NULL, &pk, err, sizeof(err)), 0);
    msgpack_packer_init(&pk, &seen, epcs_buf_msgpack_write);
    EXPECT_INT(epcs_cases_get_report(b.cases, on_b, reports[2], NULL, &pk, err, sizeof(err)), 0);
    EXPECT(out.len > 0 && out.len == seen.len && memcmp(out.data, seen.data, out.len) == 0);
    epcs_cases_reader_release(a.cases, on_a);
    epcs_cases_reader_release(b.cases, on_b);
    replica_close(&a);
    replica_close(&b);
    epcs_buf_free(&out);
    epcs_buf_free(&seen);
    msgpack_zone_destroy(&zone);
}

struct sweeper {
    struct epcs_cases *cases;
    pthread_barrier_t *start;
    int64_t now;
    int handled;
    char err[256];
};

static void *cb_sweep(void *arg)
{
    struct sweeper *sweeper = arg;
    pthread_barrier_wait(sweeper->start);
    sweeper->handled =
        epcs_cases_sweep(sweeper->cases, sweeper->now, 10000, sweeper->err, sizeof(sweeper->err));
    return NULL;
}

/* Both replicas sweep at once; the number of requests they handled together. */
static int sweep_on_both(struct replica *a, struct replica *b, int64_t now)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    struct sweeper sweepers[2] = {{.cases = a->cases, .start = &start, .now = now},
                                  {.cases = b->cases, .start = &start, .now = now}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, cb_sweep, &sweepers[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; i++) {
        EXPECT(sweepers[i].handled >= 0);
        if (sweepers[i].handled < 0)
            fprintf(stderr, "a sweep failed: %s\n", sweepers[i].err);
    }
    return sweepers[0].handled + sweepers[1].handled;
}

/* The sweep runs on every replica at once and takes every step exactly once: each request is
 * overdue once, each chain escalated once, each step one history row and one logged event. */
static void test_pg_sweeps_take_each_step_once(void)
{
    struct replica a, b;
    const struct place *shared = two_replicas("sweeps", &a, &b);
    enum { REPORTS = 60 };
    struct epcs_buf out = {0};
    for (int i = 0; i < REPORTS; i++)
        file(i % 2 ? a.cases : b.cases, "naver", "prohibited", 1, t0(), &out);
    /* Every deletion request is due after an hour, and sent again then. */
    EXPECT_INT(sweep_on_both(&a, &b, t0() + HOUR_US), REPORTS);
    const char *where = shared->where;
    EXPECT_INT(pg_number(where, "SELECT count(*) FROM epcs_case_history"
                                " WHERE event = 'request_overdue'"),
               REPORTS);
    EXPECT_INT(pg_number(where, "SELECT count(DISTINCT request) FROM epcs_case_history"
                                " WHERE event = 'request_overdue'"),
               REPORTS);
    EXPECT_INT(pg_number(where, "SELECT count(*) FROM epcs_case_requests"), 2 * REPORTS);
    /* The second attempts ignored too: each chain is escalated once, to one referral. */
    EXPECT_INT(sweep_on_both(&a, &b, t0() + 2 * HOUR_US), REPORTS);
    EXPECT_INT(pg_number(where, "SELECT count(*) FROM epcs_case_history"
                                " WHERE event = 'request_escalated'"),
               2 * REPORTS);
    EXPECT_INT(pg_number(where, "SELECT count(*) FROM epcs_case_requests WHERE kind = 'referral'"),
               REPORTS);
    EXPECT_INT(pg_number(where, "SELECT count(*) FROM epcs_case_requests"
                                " WHERE status = 'escalated'"),
               2 * REPORTS);
    EXPECT_INT(sweep_on_both(&a, &b, t0() + 3 * HOUR_US), 0);
    /* Every step once in the decision log, beside its report's decision. */
    EXPECT_INT(pg_number(where, "SELECT count(DISTINCT h.log_id) FROM epcs_case_history h"
                                " JOIN epcs_decision_entries e ON e.id = h.log_id"),
               pg_number(where, "SELECT count(*) FROM epcs_case_history"));
    EXPECT_INT(pg_number(where, "SELECT count(*) FROM epcs_decision_entries"),
               pg_number(where, "SELECT count(*) FROM epcs_case_history") + REPORTS);
    replica_close(&a);
    replica_close(&b);
    epcs_buf_free(&out);
}

/* Two filings at once, one on each replica: what each got. */
struct filer {
    struct epcs_cases *cases;
    pthread_barrier_t *start;
    const char *partner;
    /* The URL and the Idempotency-Key (NULL: none) of each round, the round's number after. */
    const char *url, *key;
    int rounds;
    int rc[16];
    struct epcs_case_filed filed[16];
    struct epcs_buf out[16];
    /* Why the last filing that failed did. */
    char err[512];
};

static void *cb_file(void *arg)
{
    struct filer *filer = arg;
    for (int round = 0; round < filer->rounds; round++) {
        char url[128], key[64];
        snprintf(url, sizeof(url), "%s%d", filer->url, round);
        if (filer->key != NULL)
            snprintf(key, sizeof(key), "%s%d", filer->key, round);
        pthread_barrier_wait(filer->start);
        filer->rc[round] =
            file_url(filer->cases, filer->partner, url, filer->key != NULL ? key : NULL,
                     &filer->out[round], &filer->filed[round], filer->err, sizeof(filer->err));
    }
    return NULL;
}

static void file_on_both(struct filer *filers)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        filers[i].start = &start;
        pthread_create(&threads[i], NULL, cb_file, &filers[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
}

static void free_filers(struct filer *filers)
{
    for (int i = 0; i < 2; i++) {
        for (int round = 0; round < filers[i].rounds; round++)
            epcs_buf_free(&filers[i].out[round]);
    }
}

/* Two partners report one posting at once, on two replicas: one report, which the other
 * joins. */
static void test_pg_one_posting_at_once_makes_one_report(void)
{
    struct replica a, b;
    const struct place *shared = two_replicas("posting", &a, &b);
    enum { ROUNDS = 12 };
    struct filer filers[2] = {
        {.cases = a.cases, .partner = "nec", .url = "https://race.example/p/", .rounds = ROUNDS},
        {.cases = b.cases, .partner = "kakao", .url = "https://race.example/p/", .rounds = ROUNDS}};
    file_on_both(filers);
    for (int round = 0; round < ROUNDS; round++) {
        EXPECT_INT(filers[0].rc[round], EPCS_CASES_OK);
        EXPECT_INT(filers[1].rc[round], EPCS_CASES_OK);
        EXPECT_INT(filers[0].filed[round].id, filers[1].filed[round].id);
        EXPECT_INT(filers[0].filed[round].joined + filers[1].filed[round].joined, 1);
    }
    EXPECT_INT(pg_number(shared->where, "SELECT count(*) FROM epcs_case_reports"), ROUNDS);
    EXPECT_INT(pg_number(shared->where, "SELECT count(*) FROM epcs_case_reporters"), 2 * ROUNDS);
    EXPECT_INT(pg_number(shared->where, "SELECT count(*) FROM epcs_case_requests"), ROUNDS);
    free_filers(filers);
    replica_close(&a);
    replica_close(&b);
}

/* One filing sent to two replicas at once under one Idempotency-Key (a proxy's retry): one
 * report, and both answers are its first answer, byte for byte. */
static void test_pg_one_key_at_once_makes_one_report(void)
{
    struct replica a, b;
    const struct place *shared = two_replicas("key", &a, &b);
    enum { ROUNDS = 12 };
    struct filer filers[2] = {{.cases = a.cases,
                               .partner = "nec",
                               .url = "https://key.example/p/",
                               .key = "retry-",
                               .rounds = ROUNDS},
                              {.cases = b.cases,
                               .partner = "nec",
                               .url = "https://key.example/p/",
                               .key = "retry-",
                               .rounds = ROUNDS}};
    file_on_both(filers);
    for (int round = 0; round < ROUNDS; round++) {
        EXPECT_INT(filers[0].rc[round], EPCS_CASES_OK);
        EXPECT_INT(filers[1].rc[round], EPCS_CASES_OK);
        EXPECT_INT(filers[0].filed[round].id, filers[1].filed[round].id);
        EXPECT_INT(filers[0].filed[round].replayed + filers[1].filed[round].replayed, 1);
        const struct epcs_buf *first = &filers[0].out[round], *second = &filers[1].out[round];
        EXPECT(first->len > 0 && first->len == second->len &&
               memcmp(first->data, second->data, first->len) == 0);
    }
    EXPECT_INT(pg_number(shared->where, "SELECT count(*) FROM epcs_case_reports"), ROUNDS);
    EXPECT_INT(pg_number(shared->where, "SELECT count(*) FROM epcs_case_idempotency"), ROUNDS);
    EXPECT_INT(pg_number(shared->where, "SELECT count(*) FROM epcs_case_history"), 2 * ROUNDS);
    free_filers(filers);
    replica_close(&a);
    replica_close(&b);
}

struct policy_setter {
    struct epcs_cases *cases;
    pthread_barrier_t *start;
    int rounds;
    int rc[16];
};

static void *cb_set_policy(void *arg)
{
    struct policy_setter *setter = arg;
    for (int round = 0; round < setter->rounds; round++) {
        /* Every round turns the policy over: send, hold, send, ... */
        struct epcs_case_policy policy = {
            .partner = "kakao", .send = round % 2 == 0, .by = "nec", .now_us = t0() + round};
        struct epcs_buf out = {0};
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
        uint64_t ticket;
        char err[256];
        pthread_barrier_wait(setter->start);
        setter->rc[round] =
            epcs_cases_set_policy(setter->cases, &policy, &pk, &ticket, err, sizeof(err));
        epcs_buf_free(&out);
    }
    return NULL;
}

/* Staff change a partner's policy on two replicas at once: one change, one event, each time;
 * the other finds it in force and changes nothing. */
static void test_pg_one_policy_change_at_once(void)
{
    struct replica a, b;
    const struct place *shared = two_replicas("policy", &a, &b);
    enum { ROUNDS = 10 };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    struct policy_setter setters[2] = {{.cases = a.cases, .start = &start, .rounds = ROUNDS},
                                       {.cases = b.cases, .start = &start, .rounds = ROUNDS}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, cb_set_policy, &setters[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    for (int round = 0; round < ROUNDS; round++) {
        EXPECT_INT(setters[0].rc[round], EPCS_CASES_OK);
        EXPECT_INT(setters[1].rc[round], EPCS_CASES_OK);
    }
    EXPECT_INT(pg_number(shared->where,
                         "SELECT count(*) FROM epcs_decision_entries WHERE partner = 'kakao'"),
               ROUNDS);
    EXPECT_INT(pg_number(shared->where, "SELECT count(*) FROM epcs_case_policies"
                                        " WHERE partner = 'kakao' AND reports = 'hold'"),
               1);
    replica_close(&a);
    replica_close(&b);
}

/* The outage test's store connects as a role of its own, which the test can keep out of the
 * database (NOLOGIN, its sessions ended) without touching anyone else's sessions. */
#define PG_CASES_ROLE "epcs_test_cases"

static void pg_admin(const char *admin, const char *sql)
{
    EXPECT_INT(epcs_test_pg_exec(admin, sql, NULL), 0);
}

/* Keeps the role's sessions out of the database, or lets them in again. */
static void pg_outage(const char *admin, int begin)
{
    pg_admin(admin,
             begin ? "ALTER ROLE " PG_CASES_ROLE " NOLOGIN" : "ALTER ROLE " PG_CASES_ROLE " LOGIN");
    if (begin)
        pg_admin(admin, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                        " WHERE usename = '" PG_CASES_ROLE "'");
    /* A session leaves the server's tables a moment before its socket closes. */
    usleep(100 * 1000);
}

static double seconds_since(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* The database away: writes are EPCS_CASES_UNAVAILABLE at once and store nothing, reads
 * EPCS_CASES_READ_UNAVAILABLE, the sweep fails; once it is back everything works by itself,
 * also after the sessions of the pool were ended under it. */
static void test_pg_outage_is_unavailable_then_recovers(void)
{
    struct place place;
    char admin[800];
    EXPECT_INT(backend->prepare("outage", &place), 0);
    snprintf(admin, sizeof(admin), "%s", place.where);
    pg_admin(admin, "DO $$ BEGIN CREATE ROLE " PG_CASES_ROLE " LOGIN;"
                    " EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
                    "ALTER ROLE " PG_CASES_ROLE " LOGIN;"
                    "GRANT ALL ON SCHEMA test_cases_outage TO " PG_CASES_ROLE);
    const char *user = strstr(admin, "user=epcs");
    EXPECT(user != NULL);
    if (user == NULL)
        return;
    snprintf(place.where, sizeof(place.where), "%.*suser=" PG_CASES_ROLE "%s", (int)(user - admin),
             admin, user + 9);
    struct epcs_cases *cases = open_cases(&place, NULL);
    EXPECT(cases != NULL);
    if (cases == NULL)
        return;
    struct epcs_buf out = {0};
    struct epcs_case_filed filed;
    char err[512] = "", detail[512] = "";
    EXPECT_INT(file_url(cases, "nec", "https://outage.example/before", NULL, &out, &filed, err,
                        sizeof(err)),
               EPCS_CASES_OK);

    pg_outage(admin, 1);
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    EXPECT_INT(file_url(cases, "nec", "https://outage.example/during", NULL, &out, &filed, err,
                        sizeof(err)),
               EPCS_CASES_UNAVAILABLE);
    EXPECT_CONTAINS(err, "role \"" PG_CASES_ROLE "\" is not permitted to log in");
    EXPECT(seconds_since(&started) < 2.0);
    EXPECT_INT(out.len, 0);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, epcs_buf_msgpack_write);
    struct epcs_case_answer done = {
        .partner = "naver", .request = 1, .status = "done", .now_us = t0() + 1};
    uint64_t ticket;
    EXPECT_INT(epcs_cases_answer(cases, &done, &pk, &ticket, detail, sizeof(detail)),
               EPCS_CASES_UNAVAILABLE);
    struct epcs_cases_reader *reader = epcs_cases_reader_acquire(cases, err, sizeof(err));
    EXPECT(reader != NULL);
    EXPECT_INT(epcs_cases_get_report(cases, reader, 1, NULL, &pk, err, sizeof(err)),
               EPCS_CASES_READ_UNAVAILABLE);
    epcs_cases_reader_release(cases, reader);
    EXPECT_INT(epcs_cases_sweep(cases, t0() + 100 * DAY_US, 10, err, sizeof(err)), -1);

    /* Back: the next write works, and the one refused stored nothing. */
    pg_outage(admin, 0);
    EXPECT_INT(file_url(cases, "nec", "https://outage.example/after", NULL, &out, &filed, err,
                        sizeof(err)),
               EPCS_CASES_OK);
    EXPECT_INT(filed.id, 2);
    EXPECT_INT(pg_number(admin, "SELECT count(*) FROM epcs_case_reports"), 2);
    EXPECT_INT(pg_number(admin, "SELECT count(*) FROM epcs_case_reports"
                                " WHERE url = 'https://outage.example/during'"),
               0);
    /* The sessions ended under an idle pool (a failover): the next write does not meet them. */
    pg_admin(admin, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                    " WHERE usename = '" PG_CASES_ROLE "'");
    usleep(100 * 1000);
    EXPECT_INT(epcs_cases_answer(cases, &done, &pk, &ticket, detail, sizeof(detail)),
               EPCS_CASES_OK);
    epcs_cases_close(cases);
    epcs_buf_free(&out);
}

static void pg_tests(void)
{
    test_pg_replicas_give_distinct_ids();
    test_pg_sweeps_take_each_step_once();
    test_pg_one_posting_at_once_makes_one_report();
    test_pg_one_key_at_once_makes_one_report();
    test_pg_one_policy_change_at_once();
    test_pg_outage_is_unavailable_then_recovers();
}

int main(void)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        backend = &backends[i];
        /* The tests of what the store's SQLite file holds open it themselves. */
        int sqlite = backend->sqlite_file != NULL;
        if (mkdtemp(strcpy(scratch, "/tmp/epcs-test-cases-XXXXXX")) == NULL)
            return 1;
        fprintf(stderr, "case store backend %s\n", backend->cases->name);
        postings = 0;
        if (backend->prepare("main", &main_place) != 0)
            return 1;
        test_actions_are_checked();
        test_flow();
        test_reopen_keeps_everything();
        if (backend->full_log_refuses)
            test_refused_event_stores_nothing();
        else
            test_full_log_takes_steps();
        if (sqlite)
            test_other_schema_is_refused();
        test_csv_cells_are_not_formulas();
        if (sqlite) {
            test_rolled_back_step_leaves_no_event();
            test_outbox_survives_a_stop();
        }
        test_postings();
        test_held_until_confirmed();
        test_idempotent_writes();
        if (sqlite)
            test_upgrade_from_format_1();
        if (backend->own_tests != NULL)
            backend->own_tests();
        char command[128];
        snprintf(command, sizeof(command), "rm -rf %s", scratch);
        if (system(command) != 0)
            return 1;
    }
    return epcs_test_report();
}
