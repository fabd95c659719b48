/* GET /metrics (Prometheus text format), GET /readyz and GET /v1/admin/cluster. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "http.h"

void epcs_metrics_count_verdict(struct epcs_worker *worker, int area_index,
                                enum epcs_verdict_kind verdict)
{
    size_t row = area_index >= 0 ? (size_t)area_index : worker->server->plugins->count;
    atomic_fetch_add_explicit(&worker->metrics.verdicts[row][verdict], 1, memory_order_relaxed);
}

static void emit(struct epcs_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct epcs_buf *out, const char *fmt, ...)
{
    char line[4096];
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);
    if (len > 0)
        epcs_buf_append(out, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
}

static uint64_t load(_Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* Label values here are our own identifiers, but escape as the format asks all the same. */
static void label_value(const char *text, char *out, size_t size)
{
    size_t at = 0;
    for (; *text != '\0' && at + 3 < size; text++) {
        if (*text == '"' || *text == '\\')
            out[at++] = '\\';
        out[at++] = *text == '\n' ? ' ' : *text;
    }
    out[at] = '\0';
}

static const double bucket_seconds[EPCS_LATENCY_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1, 10};

static void emit_requests(struct epcs_server *server, struct epcs_buf *out)
{
    static const int codes[] = {EPCS_STATUS_CODES};
    emit(out, "# HELP epcs_requests_total Requests answered, by route and HTTP status.\n"
              "# TYPE epcs_requests_total counter\n");
    unsigned routes = epcs_router_slots(server->router);
    for (unsigned route = 0; route < routes; route++) {
        for (int slot = 0; slot < EPCS_STATUS_SLOTS; slot++) {
            uint64_t total = 0;
            for (int w = 0; w < server->worker_count; w++)
                total += load(&server->workers[w].metrics.responses[route][slot]);
            if (total == 0)
                continue;
            char status[8];
            if (slot < (int)(sizeof(codes) / sizeof(codes[0])))
                snprintf(status, sizeof(status), "%d", codes[slot]);
            else
                snprintf(status, sizeof(status), "other");
            emit(out, "epcs_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                 epcs_router_label(server->router, route), status, (unsigned long long)total);
        }
    }
    emit(out, "# HELP epcs_request_duration_seconds Time from a request's arrival to its answer.\n"
              "# TYPE epcs_request_duration_seconds histogram\n");
    for (unsigned route = 0; route < routes; route++) {
        uint64_t buckets[EPCS_LATENCY_BUCKETS + 1] = {0}, sum_us = 0, count = 0;
        for (int w = 0; w < server->worker_count; w++) {
            struct epcs_worker_metrics *metrics = &server->workers[w].metrics;
            for (int b = 0; b <= EPCS_LATENCY_BUCKETS; b++)
                buckets[b] += load(&metrics->latency[route][b]);
            sum_us += load(&metrics->latency_sum_us[route]);
        }
        for (int b = 0; b <= EPCS_LATENCY_BUCKETS; b++)
            count += buckets[b];
        if (count == 0)
            continue;
        uint64_t cumulative = 0;
        const char *name = epcs_router_label(server->router, route);
        for (int b = 0; b < EPCS_LATENCY_BUCKETS; b++) {
            cumulative += buckets[b];
            emit(out, "epcs_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", name,
                 bucket_seconds[b], (unsigned long long)cumulative);
        }
        emit(out, "epcs_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name,
             (unsigned long long)count);
        emit(out, "epcs_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
             (double)sum_us / 1e6);
        emit(out, "epcs_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
             (unsigned long long)count);
    }
}

static void emit_verdicts(struct epcs_server *server, struct epcs_buf *out)
{
    static const enum epcs_verdict_kind kinds[] = {EPCS_VERDICT_ALLOWED, EPCS_VERDICT_NEEDS_FACTS,
                                                   EPCS_VERDICT_PROHIBITED};
    emit(out, "# HELP epcs_verdicts_total Verdicts given, by area (\"all\": area omitted, "
              "strictest of every matching area).\n"
              "# TYPE epcs_verdicts_total counter\n");
    for (size_t row = 0; row <= server->plugins->count; row++) {
        const char *area =
            row < server->plugins->count ? server->plugins->items[row].desc->name : "all";
        for (size_t k = 0; k < 3; k++) {
            uint64_t total = 0;
            for (int w = 0; w < server->worker_count; w++)
                total += load(&server->workers[w].metrics.verdicts[row][kinds[k]]);
            emit(out, "epcs_verdicts_total{area=\"%s\",verdict=\"%s\"} %llu\n", area,
                 epcs_verdict_name(kinds[k]), (unsigned long long)total);
        }
    }
}

static void emit_connections(struct epcs_server *server, struct epcs_buf *out)
{
    uint64_t open = 0, refused = 0, dropped = 0, goaways = 0, deferred = 0;
    for (int w = 0; w < server->worker_count; w++) {
        struct epcs_guard_counts counts;
        if (server->workers[w].guard == NULL)
            continue;
        epcs_guard_read_counts(server->workers[w].guard, &counts);
        open += counts.open;
        refused += counts.refused;
        dropped += counts.bodies_dropped;
        goaways += counts.goaways;
        deferred += counts.deferred;
    }
    emit(out,
         "# HELP epcs_connections_open Client connections open now.\n"
         "# TYPE epcs_connections_open gauge\n"
         "epcs_connections_open %llu\n"
         "# HELP epcs_connections_refused_total Connections closed when accepted: the workers held "
         "--max-connections.\n"
         "# TYPE epcs_connections_refused_total counter\n"
         "epcs_connections_refused_total %llu\n"
         "# HELP epcs_request_bodies_dropped_total Request bodies not read because the request "
         "had no valid API key.\n"
         "# TYPE epcs_request_bodies_dropped_total counter\n"
         "epcs_request_bodies_dropped_total %llu\n"
         "# HELP epcs_http2_calm_goaways_total HTTP/2 connections ended with GOAWAY "
         "ENHANCE_YOUR_CALM (streams reset, or input piled up, beyond their budget).\n"
         "# TYPE epcs_http2_calm_goaways_total counter\n"
         "epcs_http2_calm_goaways_total %llu\n"
         "# HELP epcs_http2_deferred_total Times an HTTP/2 connection had started its share of "
         "streams for a loop turn and waited for the next.\n"
         "# TYPE epcs_http2_deferred_total counter\n"
         "epcs_http2_deferred_total %llu\n",
         (unsigned long long)open, (unsigned long long)refused, (unsigned long long)dropped,
         (unsigned long long)goaways, (unsigned long long)deferred);
}

static void emit_state(struct epcs_server *server, const struct epcs_ruleset *ruleset,
                       struct epcs_buf *out)
{
    char label[160];
    label_value(ruleset->label != NULL ? ruleset->label : "", label, sizeof(label));
    emit(out,
         "# HELP epcs_ruleset_info The ruleset new requests are decided with.\n"
         "# TYPE epcs_ruleset_info gauge\n"
         "epcs_ruleset_info{ruleset=\"%s\",label=\"%s\"} 1\n",
         ruleset->id, label);
    emit(out,
         "# HELP epcs_rule_reloads_total Rule reloads since start, by outcome.\n"
         "# TYPE epcs_rule_reloads_total counter\n"
         "epcs_rule_reloads_total{outcome=\"activated\"} %llu\n"
         "epcs_rule_reloads_total{outcome=\"unchanged\"} %llu\n"
         "epcs_rule_reloads_total{outcome=\"refused\"} %llu\n",
         (unsigned long long)atomic_load(&server->reloads_activated),
         (unsigned long long)atomic_load(&server->reloads_unchanged),
         (unsigned long long)atomic_load(&server->reloads_refused));
    uint64_t held = 0;
    for (int w = 0; w < server->worker_count; w++)
        held += load(&server->workers[w].metrics.held_answers);
    emit(out,
         "# HELP epcs_workers Worker threads serving requests.\n"
         "# TYPE epcs_workers gauge\n"
         "epcs_workers %d\n"
         "# HELP epcs_held_answers Answers waiting until their decisions are safe (the end "
         "of the turn's journal write, or the commit with --audit sync).\n"
         "# TYPE epcs_held_answers gauge\n"
         "epcs_held_answers %llu\n",
         server->worker_count, (unsigned long long)held);
    if (server->decisions == NULL)
        return;
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(server->decisions, &stats);
    emit(out,
         "# HELP epcs_decision_log_queue_depth Decisions waiting for the decision log's writer.\n"
         "# TYPE epcs_decision_log_queue_depth gauge\n"
         "epcs_decision_log_queue_depth %zu\n"
         "# HELP epcs_decision_log_queue_limit Queue depth at which checks get 503.\n"
         "# TYPE epcs_decision_log_queue_limit gauge\n"
         "epcs_decision_log_queue_limit %zu\n"
         "# HELP epcs_decision_log_written_total Decisions committed to the decision log.\n"
         "# TYPE epcs_decision_log_written_total counter\n"
         "epcs_decision_log_written_total %llu\n"
         "# HELP epcs_decision_log_commits_total Transactions (group commits) of the writer.\n"
         "# TYPE epcs_decision_log_commits_total counter\n"
         "epcs_decision_log_commits_total %llu\n"
         "# HELP epcs_decision_log_journal_writes_total Writes of a loop turn's decisions to "
         "a worker's journal (--audit async).\n"
         "# TYPE epcs_decision_log_journal_writes_total counter\n"
         "epcs_decision_log_journal_writes_total %llu\n"
         "# HELP epcs_decision_log_refused_total Decisions refused (503) for a full queue, a "
         "stalled or a failed log, or a failed journal write.\n"
         "# TYPE epcs_decision_log_refused_total counter\n"
         "epcs_decision_log_refused_total %llu\n"
         "# HELP epcs_decision_log_stalled 1 while writes fail (a full disk); it retries by "
         "itself.\n"
         "# TYPE epcs_decision_log_stalled gauge\n"
         "epcs_decision_log_stalled %d\n"
         "# HELP epcs_decision_log_failed 1 once decisions were lost to a lack of memory; "
         "restart.\n"
         "# TYPE epcs_decision_log_failed gauge\n"
         "epcs_decision_log_failed %d\n",
         stats.queued, stats.queue_limit, (unsigned long long)stats.written,
         (unsigned long long)stats.commits, (unsigned long long)stats.journal_writes,
         (unsigned long long)stats.refused, stats.stalled, stats.failed);
}

static int handle_metrics(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_server *server = worker->server;
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    struct epcs_buf *out = &worker->json;
    epcs_buf_reset(out);
    emit_requests(server, out);
    emit_verdicts(server, out);
    emit_connections(server, out);
    emit_state(server, epcs_engine_ruleset(engine), out);
    return epcs_response_send_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8", out->data,
                                    out->len);
}

/* Ready: rules to decide with, and a decision log able to take what is decided. */
static int handle_readyz(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_server *server = worker->server;
    struct epcs_engine *engine = epcs_worker_engine(worker);
    struct epcs_readiness readiness;
    epcs_server_readiness(server, engine != NULL, &readiness);
    int ready = readiness.ready, behind = readiness.behind;
    struct epcs_rules_state rules;
    epcs_server_rules_state(server, &rules);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 7 + (size_t)!ready);
    epcs_pack_cstr(pk, "ready");
    if (ready)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    epcs_pack_cstr(pk, "ruleset");
    if (engine != NULL)
        epcs_pack_cstr(pk, epcs_engine_ruleset(engine)->id);
    else
        msgpack_pack_nil(pk);
    /* current: the rules directory's; refused: its latest edit was refused and the running
     * rules stay; fallback: it failed at start and the last activated ruleset is served;
     * behind: another replica activated a ruleset this one cannot serve. */
    epcs_pack_cstr(pk, "rules");
    epcs_pack_cstr(pk, behind           ? "behind"
                       : rules.fallback ? "fallback"
                       : rules.refused  ? "refused"
                                        : "current");
    epcs_pack_cstr(pk, "decision_log");
    epcs_pack_cstr(pk, readiness.log_state);
    /* up: the stores answer (the embedded ones always do); down: PostgreSQL is away. */
    epcs_pack_cstr(pk, "store");
    epcs_pack_cstr(pk, readiness.store_down ? "down" : "up");
    epcs_pack_cstr(pk, "queued");
    msgpack_pack_uint64(pk, readiness.queued);
    /* Whether keys are asked, not how many there are: readiness is open to anyone. */
    epcs_pack_cstr(pk, "auth");
    epcs_pack_cstr(pk, server->config.no_auth ? "off" : "keys");
    if (!ready) {
        epcs_pack_cstr(pk, "reason");
        epcs_pack_cstr(pk, readiness.reason);
    }
    return epcs_response_send(req, ready ? 200 : 503, epcs_response_format(req));
}

/* The replicas as the beat last read them: no round trip to the database here. */
static int handle_cluster(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    epcs_replicas_pack(worker->server->replicas, epcs_response_begin(worker));
    return epcs_response_send(req, 200, epcs_response_format(req));
}

/* Probes need no key; /healthz is api.c's. */
static const struct epcs_route_row health_rows[] = {
    {"GET", "/healthz", EPCS_MATCH_EXACT, EPCS_ROLE_NONE, "healthz", epcs_handle_healthz},
    {"GET", "/readyz", EPCS_MATCH_EXACT, EPCS_ROLE_NONE, "readyz", handle_readyz},
    {"GET", "/metrics", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "metrics", handle_metrics},
    {"GET", "/v1/admin/cluster", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "cluster", handle_cluster},
};

const struct epcs_route_group epcs_health_routes = {health_rows,
                                                    sizeof(health_rows) / sizeof(health_rows[0])};
