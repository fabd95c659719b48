/* The router alone: rows registered, matched against methods and paths, refused when they
 * conflict; and epcsd's own table, matched within a small CPU budget. */

#include "router.h"
#include "http.h"
#include "testing.h"

static int answer_list(h2o_req_t *req, h2o_iovec_t param)
{
    (void)req;
    (void)param;
    return 0;
}

static int answer_item(h2o_req_t *req, h2o_iovec_t param)
{
    (void)req;
    (void)param;
    return 0;
}

static int answer_review(h2o_req_t *req, h2o_iovec_t param)
{
    (void)req;
    (void)param;
    return 0;
}

static const struct epcs_route_row item_rows[] = {
    {"GET", "/v1/items", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "items", answer_list},
    {"POST", "/v1/items", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "items", answer_list},
    {"GET", "/v1/items/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "items", answer_item},
    {"PUT", "/v1/items/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "items", answer_item},
    {NULL, "/v1/items/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "items", NULL},
};
static const struct epcs_route_group items = {item_rows, 5};

/* Another group, registered after: a more specific pattern under the first one's prefix. */
static const struct epcs_route_row review_rows[] = {
    {"POST", "/v1/items/{id}/review", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "item_review",
     answer_review},
    {"DELETE", "/v1/files/", EPCS_MATCH_PREFIX, EPCS_ROLE_ADMIN, "files", answer_item},
    {"GET", "/v1/files/", EPCS_MATCH_PREFIX, EPCS_ROLE_ADMIN, "files", answer_list},
    {"GET", "/v1/files/special", EPCS_MATCH_EXACT, EPCS_ROLE_NONE, "special", answer_review},
    {"GET", "/v1/files/deep/", EPCS_MATCH_PREFIX, EPCS_ROLE_STAFF, "deep", answer_review},
    /* The prefix first: registration order does not make it win over the exact pattern. */
    {"GET", "/v1/things/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "things", answer_list},
    {"POST", "/v1/things/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "things", answer_item},
};
static const struct epcs_route_group reviews = {review_rows, 7};

static struct epcs_route_result match(const struct epcs_router *router, const char *method,
                                      const char *path)
{
    struct epcs_route_result result;
    epcs_router_match(router, h2o_iovec_init(method, strlen(method)),
                      h2o_iovec_init(path, strlen(path)), &result);
    return result;
}

static int param_is(const struct epcs_route_result *result, const char *text)
{
    return result->param.len == strlen(text) && memcmp(result->param.base, text, strlen(text)) == 0;
}

static struct epcs_router *sample_router(void)
{
    char err[256] = "";
    struct epcs_router *router = epcs_router_create();
    EXPECT(router != NULL);
    EXPECT_INT(epcs_router_add(router, &items, err, sizeof(err)), 0);
    EXPECT_INT(epcs_router_add(router, &reviews, err, sizeof(err)), 0);
    EXPECT_STR(err, "");
    return router;
}

static void test_methods_and_allow(void)
{
    struct epcs_router *router = sample_router();
    struct epcs_route_result got = match(router, "POST", "/v1/items");
    EXPECT(got.row == &item_rows[1]);
    EXPECT(got.allow == NULL);
    EXPECT(param_is(&got, ""));
    /* A method no row of the path takes: 405, its rows' methods in the order registered. */
    got = match(router, "DELETE", "/v1/items");
    EXPECT(got.row == NULL);
    EXPECT_STR(got.allow, "GET, POST");
    EXPECT_INT(got.role, EPCS_ROLE_PARTNER);
    EXPECT_STR(epcs_router_label(router, got.slot), "items");
    got = match(router, "DELETE", "/v1/items/7");
    EXPECT_STR(got.allow, "GET, PUT");
    got = match(router, "GET", "/v1/items/7/review");
    EXPECT_STR(got.allow, "POST");
    EXPECT_INT(got.role, EPCS_ROLE_STAFF);
    EXPECT_STR(epcs_router_label(router, got.slot), "item_review");
    /* Methods are compared whole. */
    EXPECT_STR(match(router, "GE", "/v1/items").allow, "GET, POST");
    EXPECT_STR(match(router, "GETS", "/v1/items").allow, "GET, POST");
    EXPECT_STR(match(router, "get", "/v1/items").allow, "GET, POST");
    epcs_router_destroy(router);
}

static void test_unknown_paths(void)
{
    struct epcs_router *router = sample_router();
    const char *paths[] = {"/",          "/v1",        "/v1/item",  "/v1/itemsx",
                           "/v1/items/", "/v1/files/", "/v2/items", ""};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct epcs_route_result got = match(router, "GET", paths[i]);
        EXPECT(got.row == NULL);
        EXPECT(got.allow == NULL);
        EXPECT_INT(got.role, EPCS_ROLE_NONE);
        EXPECT_INT(got.slot, epcs_router_slots(router) - 1);
        EXPECT_STR(epcs_router_label(router, got.slot), EPCS_ROUTE_NOT_FOUND_LABEL);
    }
    epcs_router_destroy(router);
}

static void test_most_specific_wins(void)
{
    struct epcs_router *router = sample_router();
    /* The exact pattern with a segment beats the prefix of the same literal text. */
    struct epcs_route_result got = match(router, "GET", "/v1/items/42");
    EXPECT(got.row == &item_rows[2]);
    EXPECT(param_is(&got, "42"));
    /* A longer pattern from a later group beats both. */
    got = match(router, "POST", "/v1/items/42/review");
    EXPECT(got.row == &review_rows[0]);
    EXPECT(param_is(&got, "42"));
    /* What no row under the prefix names: the prefix's any-method row, without a handler,
     * for its role and label. */
    const char *others[] = {"/v1/items/42/", "/v1/items/42/other", "/v1/items//review",
                            "/v1/items/4/2/review", "/v1/items/42/review/x"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        got = match(router, "DELETE", others[i]);
        EXPECT(got.row == &item_rows[4]);
        EXPECT(got.row->handler == NULL);
        EXPECT(got.allow == NULL);
        EXPECT_INT(got.role, EPCS_ROLE_PARTNER);
        EXPECT_STR(epcs_router_label(router, got.slot), "items");
    }
    /* A prefix hands its handler all that follows; an exact path and a longer prefix under it
     * win over it. */
    got = match(router, "DELETE", "/v1/files/a/b");
    EXPECT(got.row == &review_rows[1]);
    EXPECT(param_is(&got, "a/b"));
    got = match(router, "GET", "/v1/files/special");
    EXPECT(got.row == &review_rows[3]);
    EXPECT_INT(got.role, EPCS_ROLE_NONE);
    EXPECT_STR(match(router, "DELETE", "/v1/files/special").allow, "GET");
    got = match(router, "GET", "/v1/files/specials");
    EXPECT(got.row == &review_rows[2]);
    EXPECT_INT(got.role, EPCS_ROLE_ADMIN);
    got = match(router, "GET", "/v1/files/deep/x");
    EXPECT(got.row == &review_rows[4]);
    EXPECT(param_is(&got, "x"));
    EXPECT_INT(got.role, EPCS_ROLE_STAFF);
    EXPECT_STR(match(router, "DELETE", "/v1/files/deep/x").allow, "GET");
    got = match(router, "POST", "/v1/things/x");
    EXPECT(got.row == &review_rows[6]);
    EXPECT(param_is(&got, "x"));
    EXPECT_STR(match(router, "GET", "/v1/things/x").allow, "POST");
    EXPECT(match(router, "GET", "/v1/things/x/y").row == &review_rows[5]);
    epcs_router_destroy(router);
}

/*
 * Paths around and beyond the 64 bytes the router keeps a first row for: the scan starts later
 * for a short path, never past a row that could take it.
 */
static void test_long_paths(void)
{
    static char exact63[64], exact64[65], exact70[71], tail[80], path[96];
    memset(exact63, 'a', 63);
    memcpy(exact63, "/v1/long/", 9);
    memset(exact64, 'b', 64);
    memcpy(exact64, "/v1/long/", 9);
    memset(exact70, 'c', 70);
    memcpy(exact70, "/v1/long/", 9);
    /* "/v1/long/{id}/" and 61 more bytes: 71 literal bytes. */
    memset(tail, 'd', 75);
    memcpy(tail, "/v1/long/{id}/", 14);
    static const struct epcs_route_row rows[] = {
        {"GET", "/v1/long/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "long", answer_list},
        {"GET", exact63, EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "exact63", answer_item},
        {"GET", exact64, EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "exact64", answer_item},
        {"GET", exact70, EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "exact70", answer_item},
        {"GET", tail, EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "tail", answer_review},
    };
    const struct epcs_route_group group = {rows, sizeof(rows) / sizeof(rows[0])};
    struct epcs_router *router = sample_router();
    char err[256] = "";
    EXPECT_INT(epcs_router_add(router, &group, err, sizeof(err)), 0);
    EXPECT(match(router, "GET", exact63).row == &rows[1]);
    EXPECT(match(router, "GET", exact64).row == &rows[2]);
    EXPECT(match(router, "GET", exact70).row == &rows[3]);
    /* One byte more or less than an exact pattern: the prefix takes it. */
    const char *around[] = {exact63, exact64};
    for (size_t i = 0; i < 2; i++) {
        int len = (int)strlen(around[i]);
        snprintf(path, sizeof(path), "%.*s", len - 1, around[i]);
        EXPECT(match(router, "GET", path).row == &rows[0]);
        snprintf(path, sizeof(path), "%sx", around[i]);
        EXPECT(match(router, "GET", path).row == &rows[0]);
    }
    /* A segment and the long tail: 73 bytes in all. */
    snprintf(path, sizeof(path), "/v1/long/42%s", tail + 13);
    struct epcs_route_result got = match(router, "GET", path);
    EXPECT(got.row == &rows[4]);
    EXPECT(param_is(&got, "42"));
    /* The short paths of the first groups still find their rows. */
    EXPECT(match(router, "POST", "/v1/items").row == &item_rows[1]);
    EXPECT(match(router, "GET", "/v1/items/42").row == &item_rows[2]);
    EXPECT(match(router, "GET", "/v1/items/42/x").row == &item_rows[4]);
    epcs_router_destroy(router);
}

static void test_labels_take_slots_in_order(void)
{
    struct epcs_router *router = sample_router();
    EXPECT_INT(epcs_router_slots(router), 7);
    const char *labels[] = {"items", "item_review", "files",    "special",
                            "deep",  "things",      "not_found"};
    for (unsigned i = 0; i < 7; i++)
        EXPECT_STR(epcs_router_label(router, i), labels[i]);
    epcs_router_destroy(router);
}

/* `rows` is refused with a message containing `why`, and leaves the router as it was. */
static void expect_refused(const struct epcs_route_row *rows, size_t count, const char *why)
{
    struct epcs_router *router = sample_router();
    struct epcs_route_group group = {rows, count};
    char err[256] = "";
    EXPECT_INT(epcs_router_add(router, &group, err, sizeof(err)), -1);
    EXPECT_CONTAINS(err, why);
    EXPECT_INT(epcs_router_slots(router), 7);
    EXPECT(match(router, "GET", "/v1/new").row == NULL);
    EXPECT_STR(match(router, "DELETE", "/v1/items").allow, "GET, POST");
    EXPECT(match(router, "PUT", "/v1/items/1").row == &item_rows[3]);
    epcs_router_destroy(router);
}

static void test_conflicts_are_refused(void)
{
    const struct epcs_route_row twice[] = {
        {"GET", "/v1/new", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "new", answer_list},
        {"GET", "/v1/items", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "items", answer_list}};
    expect_refused(twice, 2, "route GET /v1/items: registered twice");
    const struct epcs_route_row other_role[] = {
        {"GET", "/v1/new", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "new", answer_list},
        {"DELETE", "/v1/items", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "items", answer_list}};
    expect_refused(other_role, 2, "route /v1/items: its rows differ in role or label");
    const struct epcs_route_row other_label[] = {
        {"DELETE", "/v1/items/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "item", answer_item}};
    expect_refused(other_label, 1, "its rows differ in role or label");
    const struct epcs_route_row beside_any[] = {
        {"GET", "/v1/items/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "items", answer_item}};
    expect_refused(beside_any, 1, "an any-method row beside other rows");
    const struct epcs_route_row two_params[] = {
        {"GET", "/v1/{a}/{b}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "new", answer_item}};
    expect_refused(two_params, 1, "one {name} at most");
    const struct epcs_route_row prefix_param[] = {
        {"GET", "/v1/{a}/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "new", answer_item}};
    expect_refused(prefix_param, 1, "in an exact pattern");
    const struct epcs_route_row empty_param[] = {
        {"GET", "/v1/{}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "new", answer_item}};
    expect_refused(empty_param, 1, "one {name} at most");
    const struct epcs_route_row relative[] = {
        {"GET", "v1/new", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "new", answer_item}};
    expect_refused(relative, 1, "a pattern starts with '/'");
    const struct epcs_route_row unlabelled[] = {
        {"GET", "/v1/new", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, NULL, answer_item}};
    expect_refused(unlabelled, 1, "a row has a label");
    const struct epcs_route_row routers_label[] = {
        {"GET", "/v1/new", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "not_found", answer_item}};
    expect_refused(routers_label, 1, "the label not_found is the router's");
}

static void test_labels_are_bounded(void)
{
    static char patterns[EPCS_ROUTE_SLOTS][16], labels[EPCS_ROUTE_SLOTS][16];
    static struct epcs_route_row rows[EPCS_ROUTE_SLOTS];
    for (int i = 0; i < EPCS_ROUTE_SLOTS; i++) {
        snprintf(patterns[i], sizeof(patterns[i]), "/r%d", i);
        snprintf(labels[i], sizeof(labels[i]), "r%d", i);
        rows[i] = (struct epcs_route_row){"GET",          patterns[i], EPCS_MATCH_EXACT,
                                          EPCS_ROLE_NONE, labels[i],   answer_item};
    }
    char err[256] = "";
    struct epcs_router *router = epcs_router_create();
    struct epcs_route_group all_but_one = {rows, EPCS_ROUTE_SLOTS - 1};
    EXPECT_INT(epcs_router_add(router, &all_but_one, err, sizeof(err)), 0);
    EXPECT_INT(epcs_router_slots(router), EPCS_ROUTE_SLOTS);
    struct epcs_route_group last = {&rows[EPCS_ROUTE_SLOTS - 1], 1};
    EXPECT_INT(epcs_router_add(router, &last, err, sizeof(err)), -1);
    EXPECT_CONTAINS(err, "more than 31 labels");
    EXPECT_STR(epcs_router_label(router, EPCS_ROUTE_SLOTS - 1), "not_found");
    epcs_router_destroy(router);
}

/* epcsd's own table, as epcs_server_run registers it. */
static struct epcs_router *epcsd_router(void)
{
    const struct epcs_route_group *groups[] = {&epcs_check_routes,    &epcs_health_routes,
                                               &epcs_meta_routes,     &epcs_key_routes,
                                               &epcs_decision_routes, &epcs_case_routes};
    char err[256] = "";
    struct epcs_router *router = epcs_router_create();
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
        EXPECT_INT(epcs_router_add(router, groups[i], err, sizeof(err)), 0);
    EXPECT_STR(err, "");
    return router;
}

static void test_epcsd_table(void)
{
    struct epcs_router *router = epcsd_router();
    const char *labels[] = {"check",          "check_batch",      "healthz",    "readyz",
                            "metrics",        "cluster",          "areas",      "rules",
                            "rules_stored",   "elections",        "election",   "admin_reload",
                            "admin_impact",   "admin_activate",   "admin_keys", "decisions",
                            "reports",        "partner_requests", "requests",   "report_review",
                            "admin_partners", "not_found"};
    EXPECT_INT(epcs_router_slots(router), 22);
    for (unsigned i = 0; i < 22; i++)
        EXPECT_STR(epcs_router_label(router, i), labels[i]);
    struct epcs_route_result got = match(router, "POST", "/v1/check");
    EXPECT(got.row != NULL && got.row->handler != NULL);
    EXPECT_STR(epcs_router_label(router, got.slot), "check");
    EXPECT_STR(match(router, "GET", "/v1/admin/keys").row->label, "admin_keys");
    EXPECT_STR(match(router, "GET", "/v1/admin/cluster").row->label, "cluster");
    EXPECT_INT(match(router, "GET", "/v1/admin/cluster").row->role, EPCS_ROLE_STAFF);
    EXPECT_STR(match(router, "PATCH", "/v1/admin/keys").allow, "GET, POST");
    EXPECT_STR(match(router, "DELETE", "/v1/admin/partners/kakao").allow, "GET, PUT");
    EXPECT_STR(match(router, "DELETE", "/v1/reports").allow, "GET, POST");
    got = match(router, "GET", "/v1/elections/na22/calendar");
    EXPECT(param_is(&got, "na22"));
    EXPECT_STR(got.row->pattern, "/v1/elections/{id}/calendar");
    got = match(router, "POST", "/v1/reports/9/dismiss");
    EXPECT_STR(got.row->pattern, "/v1/reports/{id}/dismiss");
    EXPECT_INT(got.role, EPCS_ROLE_STAFF);
    got = match(router, "DELETE", "/v1/admin/keys/0123456789abcdef");
    EXPECT(param_is(&got, "0123456789abcdef"));
    epcs_router_destroy(router);
}

/*
 * Every request is matched, a check's too: the whole table in well under a microsecond. The
 * bound is CPU time of this process and 20 times what an unloaded machine takes, so that a
 * sanitized build on a busy machine meets it too.
 */
int main(void)
{
    test_methods_and_allow();
    test_unknown_paths();
    test_most_specific_wins();
    test_long_paths();
    test_labels_take_slots_in_order();
    test_conflicts_are_refused();
    test_labels_are_bounded();
    test_epcsd_table();
    return epcs_test_report();
}
