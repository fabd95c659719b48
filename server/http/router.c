/* The route table: rows registered by the handler groups, matched against each request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "http.h"

#define ALLOW_MAX 64
/* Path lengths the router keeps a first row for (see first_fit); longer paths scan them all. */
#define FIT_LENGTHS 64

/* A distinct pattern of the registered rows, split where its `{name}` is, with what its rows
 * have in common. */
struct route_pattern {
    const char *pattern;
    enum epcs_route_match match;
    const char *head;
    size_t head_len;
    /* After the `{name}`; has_param says whether there is one. */
    const char *tail;
    size_t tail_len;
    int has_param;
    unsigned specificity;
    enum epcs_role role;
    unsigned slot;
    /* Its rows' methods in registration order, as a 405 lists them; "" with an any-method row. */
    char allow[ALLOW_MAX];
};

struct route_entry {
    const struct epcs_route_row *row;
    size_t pattern;
    size_t method_len;
};

struct epcs_router {
    struct route_pattern *patterns;
    size_t pattern_count;
    /* The rows in registration order (what Allow lists), and the same rows as requests are
     * matched against them: most specific pattern first, a pattern's rows together. */
    struct route_entry *entries;
    struct route_entry *matched;
    size_t entry_count;
    /* For a path of length L < FIT_LENGTHS, the first row of `matched` whose pattern has at
     * most L literal bytes: the rows before it are all longer than the path, and a pattern
     * never takes a path shorter than its literal text. The most specific rows are the long
     * ones, so without this a short path (a check's /v1/check) was compared with nearly every
     * row before reaching its own: some 680 instructions a check under callgrind, 4 % of the
     * lean check path. */
    size_t first_fit[FIT_LENGTHS];
    const char *labels[EPCS_ROUTE_SLOTS];
    unsigned label_count;
};

struct epcs_router *epcs_router_create(void)
{
    return calloc(1, sizeof(struct epcs_router));
}

void epcs_router_destroy(struct epcs_router *router)
{
    if (router == NULL)
        return;
    free(router->patterns);
    free(router->entries);
    free(router->matched);
    free(router);
}

/* Splits `row`'s pattern into `out`. 0, or -1 with `err` saying what is wrong with it. */
static int parse_pattern(const struct epcs_route_row *row, struct route_pattern *out, char *err,
                         size_t err_size)
{
    const char *text = row->pattern;
    if (text == NULL || text[0] != '/' || row->label == NULL || row->label[0] == '\0')
        return snprintf(err, err_size, "route %s: a pattern starts with '/', a row has a label",
                        text != NULL ? text : "(null)"),
               -1;
    const char *open = strchr(text, '{');
    const char *close = open != NULL ? strchr(open, '}') : NULL;
    *out = (struct route_pattern){.pattern = text,
                                  .match = row->match,
                                  .head = text,
                                  .head_len = open != NULL ? (size_t)(open - text) : strlen(text),
                                  .role = row->role};
    if (open != NULL) {
        if (close == NULL || close == open + 1 ||
            memchr(open + 1, '/', (size_t)(close - open - 1)) || strpbrk(close + 1, "{}") != NULL ||
            row->match != EPCS_MATCH_EXACT)
            return snprintf(err, err_size,
                            "route %s: one {name} at most, of a segment, in an exact pattern",
                            text),
                   -1;
        out->has_param = 1;
        out->tail = close + 1;
        out->tail_len = strlen(out->tail);
    } else if (strchr(text, '}') != NULL) {
        return snprintf(err, err_size, "route %s: '}' without '{'", text), -1;
    }
    out->specificity =
        (unsigned)(out->head_len + out->tail_len) * 2 + (row->match == EPCS_MATCH_EXACT);
    return 0;
}

/* The slot of `label`, new labels taking the next one; -1 when there is no slot left. */
static int label_slot(struct epcs_router *router, const char *label)
{
    for (unsigned i = 0; i < router->label_count; i++) {
        if (strcmp(router->labels[i], label) == 0)
            return (int)i;
    }
    /* The last slot stays the not-found label's. */
    if (router->label_count + 1 >= EPCS_ROUTE_SLOTS)
        return -1;
    router->labels[router->label_count] = label;
    return (int)router->label_count++;
}

static struct route_pattern *find_pattern(struct epcs_router *router, const char *text,
                                          enum epcs_route_match match, size_t *index)
{
    for (size_t i = 0; i < router->pattern_count; i++) {
        if (router->patterns[i].match == match && strcmp(router->patterns[i].pattern, text) == 0) {
            *index = i;
            return &router->patterns[i];
        }
    }
    return NULL;
}

/* Whether `row` may join the rows of pattern `index`: one method once, an any-method row
 * alone, and an Allow value that fits. 0, or -1 with `err` filled. */
static int check_methods(const struct epcs_router *router, size_t index,
                         const struct epcs_route_row *row, char *err, size_t err_size)
{
    size_t allow_len = row->method != NULL ? strlen(row->method) : 0;
    for (size_t i = 0; i < router->entry_count; i++) {
        const struct epcs_route_row *other = router->entries[i].row;
        if (router->entries[i].pattern != index)
            continue;
        if (other->method == NULL || row->method == NULL)
            return snprintf(err, err_size, "route %s: an any-method row beside other rows",
                            row->pattern),
                   -1;
        if (strcmp(other->method, row->method) == 0)
            return snprintf(err, err_size, "route %s %s: registered twice", row->method,
                            row->pattern),
                   -1;
        allow_len += strlen(other->method) + 2;
    }
    if (allow_len >= ALLOW_MAX)
        return snprintf(err, err_size, "route %s: too many methods", row->pattern), -1;
    return 0;
}

/* Registers one row. 0, or -1 with `err` filled (epcs_router_add undoes the group). */
static int add_row(struct epcs_router *router, const struct epcs_route_row *row, char *err,
                   size_t err_size)
{
    struct route_pattern parsed;
    if (parse_pattern(row, &parsed, err, err_size) != 0)
        return -1;
    if (strcmp(row->label, EPCS_ROUTE_NOT_FOUND_LABEL) == 0)
        return snprintf(err, err_size, "route %s: the label %s is the router's", row->pattern,
                        row->label),
               -1;
    size_t index = router->pattern_count;
    const struct route_pattern *pattern = find_pattern(router, row->pattern, row->match, &index);
    if (pattern == NULL) {
        int slot = label_slot(router, row->label);
        if (slot < 0)
            return snprintf(err, err_size, "route %s: more than %d labels", row->pattern,
                            EPCS_ROUTE_SLOTS - 1),
                   -1;
        parsed.slot = (unsigned)slot;
        router->patterns[router->pattern_count++] = parsed;
    } else if (pattern->role != row->role ||
               strcmp(router->labels[pattern->slot], row->label) != 0) {
        return snprintf(err, err_size, "route %s: its rows differ in role or label", row->pattern),
               -1;
    } else if (check_methods(router, index, row, err, err_size) != 0) {
        return -1;
    }
    router->entries[router->entry_count++] = (struct route_entry){
        .row = row, .pattern = index, .method_len = row->method ? strlen(row->method) : 0};
    return 0;
}

/* Each pattern's Allow value: its rows' methods in the order they were registered. */
static void build_allow(struct epcs_router *router)
{
    for (size_t p = 0; p < router->pattern_count; p++)
        router->patterns[p].allow[0] = '\0';
    for (size_t i = 0; i < router->entry_count; i++) {
        const struct route_entry *entry = &router->entries[i];
        char *allow = router->patterns[entry->pattern].allow;
        size_t len = strlen(allow);
        if (entry->row->method != NULL)
            snprintf(allow + len, ALLOW_MAX - len, "%s%s", len > 0 ? ", " : "", entry->row->method);
    }
}

/* Orders `matched` so that the first pattern that takes a path is the one that wins: more
 * specific first, then the one registered first; each pattern's rows in registration order. */
static void build_match_order(struct epcs_router *router)
{
    size_t n = 0;
    for (size_t i = 0; i < router->entry_count; i++) {
        struct route_entry entry = router->entries[i];
        const struct route_pattern *pattern = &router->patterns[entry.pattern];
        size_t at = n++;
        while (at > 0) {
            const struct route_entry *before = &router->matched[at - 1];
            const struct route_pattern *other = &router->patterns[before->pattern];
            if (other->specificity > pattern->specificity ||
                (other->specificity == pattern->specificity && before->pattern <= entry.pattern))
                break;
            router->matched[at] = *before;
            at--;
        }
        router->matched[at] = entry;
    }
}

/* Fills first_fit. `matched` is in order of specificity, so its patterns' literal lengths
 * never grow along it and one pass finds every length's first row. */
static void build_first_fit(struct epcs_router *router)
{
    size_t i = 0;
    for (size_t len = FIT_LENGTHS; len-- > 0;) {
        while (i < router->entry_count) {
            const struct route_pattern *pattern = &router->patterns[router->matched[i].pattern];
            if (pattern->head_len + pattern->tail_len <= len)
                break;
            i++;
        }
        router->first_fit[len] = i;
    }
}

int epcs_router_add(struct epcs_router *router, const struct epcs_route_group *group, char *err,
                    size_t err_size)
{
    size_t patterns = router->pattern_count + group->count;
    size_t entries = router->entry_count + group->count;
    struct route_pattern *more_patterns =
        realloc(router->patterns, (patterns ? patterns : 1) * sizeof(*router->patterns));
    if (more_patterns != NULL)
        router->patterns = more_patterns;
    struct route_entry *more_entries =
        more_patterns != NULL
            ? realloc(router->entries, (entries ? entries : 1) * sizeof(*router->entries))
            : NULL;
    if (more_entries != NULL)
        router->entries = more_entries;
    struct route_entry *more_matched =
        more_entries != NULL
            ? realloc(router->matched, (entries ? entries : 1) * sizeof(*router->matched))
            : NULL;
    if (more_matched == NULL)
        return snprintf(err, err_size, "out of memory registering routes"), -1;
    router->matched = more_matched;
    /* All of the group or none of it: rows only append, so a refusal cuts them off again. */
    size_t pattern_count = router->pattern_count, entry_count = router->entry_count;
    unsigned label_count = router->label_count;
    for (size_t i = 0; i < group->count; i++) {
        if (add_row(router, &group->rows[i], err, err_size) != 0) {
            router->pattern_count = pattern_count;
            router->entry_count = entry_count;
            router->label_count = label_count;
            return -1;
        }
    }
    build_allow(router);
    build_match_order(router);
    build_first_fit(router);
    return 0;
}

/* Whether `pattern` takes `path`; `param` gets its `{name}` segment or the rest of a prefix. */
static int pattern_takes(const struct route_pattern *pattern, h2o_iovec_t path, h2o_iovec_t *param)
{
    if (!pattern->has_param) {
        if (pattern->match == EPCS_MATCH_EXACT)
            return path.len == pattern->head_len &&
                   memcmp(path.base, pattern->head, pattern->head_len) == 0;
        if (path.len <= pattern->head_len || memcmp(path.base, pattern->head, pattern->head_len))
            return 0;
        *param = h2o_iovec_init(path.base + pattern->head_len, path.len - pattern->head_len);
        return 1;
    }
    size_t fixed = pattern->head_len + pattern->tail_len;
    if (path.len <= fixed || memcmp(path.base, pattern->head, pattern->head_len) != 0 ||
        memcmp(path.base + path.len - pattern->tail_len, pattern->tail, pattern->tail_len) != 0)
        return 0;
    const char *segment = path.base + pattern->head_len;
    size_t segment_len = path.len - fixed;
    if (memchr(segment, '/', segment_len) != NULL)
        return 0;
    *param = h2o_iovec_init(segment, segment_len);
    return 1;
}

void epcs_router_match(const struct epcs_router *router, h2o_iovec_t method, h2o_iovec_t path,
                       struct epcs_route_result *out)
{
    const struct route_pattern *best = NULL;
    size_t best_index = 0;
    *out = (struct epcs_route_result){
        .param = h2o_iovec_init("", 0), .role = EPCS_ROLE_NONE, .slot = router->label_count};
    /* Most specific first: the first pattern that takes the path wins, and the scan ends with
     * its rows. It starts at the first row short enough to take the path. */
    size_t first = path.len < FIT_LENGTHS ? router->first_fit[path.len] : 0;
    for (size_t i = first; i < router->entry_count; i++) {
        const struct route_entry *entry = &router->matched[i];
        if (best != NULL && entry->pattern != best_index)
            break;
        if (best == NULL) {
            const struct route_pattern *pattern = &router->patterns[entry->pattern];
            h2o_iovec_t param = h2o_iovec_init("", 0);
            if (!pattern_takes(pattern, path, &param))
                continue;
            best = pattern;
            best_index = entry->pattern;
            out->param = param;
        }
        if (entry->row->method == NULL ||
            h2o_memis(method.base, method.len, entry->row->method, entry->method_len)) {
            out->row = entry->row;
            break;
        }
    }
    if (best == NULL)
        return;
    out->role = best->role;
    out->slot = best->slot;
    if (out->row == NULL)
        out->allow = best->allow;
}

int epcs_router_answer(h2o_req_t *req, const struct epcs_route_result *result)
{
    if (result->row != NULL && result->row->handler != NULL)
        return result->row->handler(req, result->param);
    if (result->row == NULL && result->allow != NULL) {
        const char *allow = result->allow;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
        return epcs_respond_error(req, 405, "method_not_allowed", NULL, "%.*s %.*s: use %s",
                                  (int)req->method.len, req->method.base,
                                  (int)req->path_normalized.len, req->path_normalized.base, allow);
    }
    return epcs_respond_error(req, 404, "not_found", NULL, "no route %.*s",
                              (int)req->path_normalized.len, req->path_normalized.base);
}

unsigned epcs_router_slots(const struct epcs_router *router)
{
    return router->label_count + 1;
}

const char *epcs_router_label(const struct epcs_router *router, unsigned slot)
{
    return slot < router->label_count ? router->labels[slot] : EPCS_ROUTE_NOT_FOUND_LABEL;
}
