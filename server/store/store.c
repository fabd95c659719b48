/*
 * The store calls callers make, each through the handle's ops (store.h). The few handles that
 * may be NULL (the log off) are answered here, so that no backend repeats it.
 */
#include "store.h"

#include <stdio.h>

#include "pg_store.h"

void epcs_store_set_timeout(int ms)
{
    epcs_pg_set_timeout(ms);
}

/* ---- the decision log ----------------------------------------------------------------------- */

struct epcs_decision_log *epcs_decision_log_open(const char *store_uri, const char *data_dir,
                                                 enum epcs_audit_mode mode, size_t queue_limit,
                                                 char *err, size_t err_size)
{
    if (store_uri != NULL)
        return epcs_decision_log_postgresql.open(store_uri, data_dir, mode, queue_limit, err,
                                                 err_size);
    return epcs_decision_log_sqlite.open(data_dir, data_dir, mode, queue_limit, err, err_size);
}

void epcs_decision_log_close(struct epcs_decision_log *log)
{
    if (log != NULL)
        log->ops->close(log);
}

enum epcs_audit_mode epcs_decision_log_mode(const struct epcs_decision_log *log)
{
    return log != NULL ? log->ops->mode(log) : EPCS_AUDIT_OFF;
}

int epcs_decision_log_attach(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                             char *err, size_t err_size)
{
    return log->ops->attach(log, stage, err, err_size);
}

void epcs_decision_log_detach(struct epcs_decision_log *log, struct epcs_decision_stage *stage)
{
    log->ops->detach(log, stage);
}

uint64_t epcs_decision_log_next_id(struct epcs_decision_log *log, struct epcs_decision_stage *stage)
{
    return log->ops->next_id(log, stage);
}

int epcs_decision_log_append(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                             const struct epcs_decision *decisions, size_t count,
                             const char *partner, uint64_t *ticket)
{
    return log->ops->append(log, stage, decisions, count, partner, ticket);
}

int epcs_decision_log_stage(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                            const struct epcs_decision *decisions, size_t count,
                            const char *partner)
{
    return log->ops->stage(log, stage, decisions, count, partner);
}

int epcs_decision_log_flush(struct epcs_decision_log *log, struct epcs_decision_stage *stage)
{
    return log->ops->flush(log, stage);
}

int epcs_decision_log_event(struct epcs_decision_log *log, const char *partner, const char *event,
                            const char *election, uint64_t subject, const char *detail,
                            size_t detail_len, uint64_t *id, uint64_t *ticket)
{
    if (log != NULL)
        return log->ops->event(log, partner, event, election, subject, detail, detail_len, id,
                               ticket);
    *id = 0;
    if (ticket != NULL)
        *ticket = 0;
    return 0;
}

int epcs_decision_log_forward(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                              const struct epcs_decision *decisions, const char *const *partners,
                              size_t decision_count, const struct epcs_decision_event *events,
                              size_t event_count, uint64_t *ticket)
{
    return log->ops->forward(log, stage, decisions, partners, decision_count, events, event_count,
                             ticket);
}

int epcs_decision_log_wait(struct epcs_decision_log *log, uint64_t ticket)
{
    return log != NULL && ticket != 0 ? log->ops->wait(log, ticket) : 0;
}

uint64_t epcs_decision_log_committed(const struct epcs_decision_log *log)
{
    return log->ops->committed(log);
}

void epcs_decision_log_on_commit(struct epcs_decision_log *log, void (*fn)(void *ctx), void *ctx)
{
    log->ops->on_commit(log, fn, ctx);
}

void epcs_decision_log_stats(struct epcs_decision_log *log, struct epcs_decision_log_stats *stats)
{
    log->ops->stats(log, stats);
}

struct epcs_decision_reader *epcs_decision_log_reader_acquire(struct epcs_decision_log *log,
                                                              char *err, size_t err_size)
{
    return log->ops->reader_acquire(log, err, err_size);
}

void epcs_decision_log_reader_release(struct epcs_decision_log *log,
                                      struct epcs_decision_reader *reader)
{
    log->ops->reader_release(log, reader);
}

int epcs_decision_log_query(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                            const struct epcs_decision_query *query, msgpack_packer *pk, char *err,
                            size_t err_size)
{
    return log->ops->query(log, reader, query, pk, err, err_size);
}

int epcs_decision_log_get(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                          uint64_t id, msgpack_packer *pk, struct epcs_buf *request, char *ruleset,
                          size_t ruleset_size, char *date, char *err, size_t err_size)
{
    return log->ops->get(reader, id, pk, request, ruleset, ruleset_size, date, err, err_size);
}

int epcs_decision_log_recent(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                             size_t limit,
                             int (*fn)(void *ctx, const void *request, size_t len,
                                       const char *date),
                             void *ctx, char *err, size_t err_size)
{
    return log->ops->recent(reader, limit, fn, ctx, err, err_size);
}

/* ---- the case store ------------------------------------------------------------------------- */

struct epcs_cases *epcs_cases_open(const char *store_uri, const char *data_dir,
                                   struct epcs_decision_log *log, char *err, size_t err_size)
{
    if (store_uri != NULL)
        return epcs_cases_postgresql.open(store_uri, log, err, err_size);
    return epcs_cases_sqlite.open(data_dir, log, err, err_size);
}

void epcs_cases_close(struct epcs_cases *cases)
{
    if (cases != NULL)
        cases->ops->close(cases);
}

int epcs_cases_file(struct epcs_cases *cases, const struct epcs_case_report *report,
                    msgpack_packer *pk, struct epcs_case_filed *filed, char *err, size_t err_size)
{
    return cases->ops->file(cases, report, pk, filed, err, err_size);
}

int epcs_cases_answer(struct epcs_cases *cases, const struct epcs_case_answer *answer,
                      msgpack_packer *pk, uint64_t *ticket, char *detail, size_t detail_size)
{
    return cases->ops->answer(cases, answer, pk, ticket, detail, detail_size);
}

int epcs_cases_review(struct epcs_cases *cases, const struct epcs_case_review *review,
                      msgpack_packer *pk, uint64_t *ticket, char *detail, size_t detail_size)
{
    return cases->ops->review(cases, review, pk, ticket, detail, detail_size);
}

int epcs_cases_set_policy(struct epcs_cases *cases, const struct epcs_case_policy *policy,
                          msgpack_packer *pk, uint64_t *ticket, char *err, size_t err_size)
{
    return cases->ops->set_policy(cases, policy, pk, ticket, err, err_size);
}

int epcs_cases_sweep(struct epcs_cases *cases, int64_t now_us, size_t limit, char *err,
                     size_t err_size)
{
    return cases->ops->sweep(cases, now_us, limit, err, err_size);
}

struct epcs_cases_reader *epcs_cases_reader_acquire(struct epcs_cases *cases, char *err,
                                                    size_t err_size)
{
    return cases->ops->reader_acquire(cases, err, err_size);
}

void epcs_cases_reader_release(struct epcs_cases *cases, struct epcs_cases_reader *reader)
{
    cases->ops->reader_release(cases, reader);
}

int epcs_cases_get_policy(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                          const char *partner, msgpack_packer *pk, char *err, size_t err_size)
{
    return cases->ops->get_policy(reader, partner, pk, err, err_size);
}

int epcs_cases_get_report(struct epcs_cases *cases, struct epcs_cases_reader *reader, uint64_t id,
                          const char *filer, msgpack_packer *pk, char *err, size_t err_size)
{
    return cases->ops->get_report(reader, id, filer, pk, err, err_size);
}

int epcs_cases_list_reports(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                            const struct epcs_report_query *query, msgpack_packer *pk, char *err,
                            size_t err_size)
{
    return cases->ops->list_reports(reader, query, pk, err, err_size);
}

int epcs_cases_export_csv(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                          const struct epcs_report_query *query, struct epcs_buf *out,
                          uint64_t *next, char *err, size_t err_size)
{
    return cases->ops->export_reports(reader, query, out, next, err, err_size);
}

int epcs_cases_get_request(struct epcs_cases *cases, struct epcs_cases_reader *reader, uint64_t id,
                           const char *partner, msgpack_packer *pk, char *err, size_t err_size)
{
    return cases->ops->get_request(reader, id, partner, pk, err, err_size);
}

int epcs_cases_list_requests(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                             const struct epcs_request_query *query, msgpack_packer *pk, char *err,
                             size_t err_size)
{
    return cases->ops->list_requests(reader, query, pk, err, err_size);
}

int epcs_cases_export_requests_csv(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                                   const struct epcs_request_query *query, struct epcs_buf *out,
                                   uint64_t *next, char *err, size_t err_size)
{
    return cases->ops->export_requests(reader, query, out, next, err, err_size);
}

/* ---- the rule store ------------------------------------------------------------------------- */

struct epcs_rule_store *epcs_rule_store_open(const char *store_uri, const char *data_dir, char *err,
                                             size_t err_size)
{
    if (store_uri != NULL)
        return epcs_rule_store_postgresql.open(store_uri, err, err_size);
    return epcs_rule_store_files.open(data_dir, err, err_size);
}

void epcs_rule_store_close(struct epcs_rule_store *store)
{
    if (store != NULL)
        store->ops->close(store);
}

int epcs_rule_store_save(struct epcs_rule_store *store, const struct epcs_ruleset *ruleset)
{
    return store->ops->save(store, ruleset);
}

int epcs_rule_store_activate(struct epcs_rule_store *store,
                             const struct epcs_rule_activation *activation, uint64_t *epoch)
{
    return store->ops->activate(store, activation, epoch);
}

int epcs_rule_store_record_activation(struct epcs_rule_store *store, const char *from,
                                      const char *to, const char *by, const char *why)
{
    const struct epcs_rule_activation activation = {
        .from = from, .to = to, .by = by, .why = why, .expected_epoch = EPCS_RULE_EPOCH_ANY};
    uint64_t epoch;
    return store->ops->activate(store, &activation, &epoch) == 0 ? 0 : -1;
}

int epcs_rule_store_active(struct epcs_rule_store *store, char id[24], uint64_t *epoch)
{
    uint64_t ignored;
    return store->ops->active(store, id, epoch != NULL ? epoch : &ignored);
}

int epcs_rule_store_last_active(struct epcs_rule_store *store, char id[24])
{
    return epcs_rule_store_active(store, id, NULL) == 0 ? 0 : 1;
}

int epcs_rule_store_follow(struct epcs_rule_store *store, void (*changed)(void *ctx), void *ctx)
{
    return store->ops->follow(store, changed, ctx);
}

void epcs_rule_store_unfollow(struct epcs_rule_store *store)
{
    if (store != NULL)
        store->ops->unfollow(store);
}

int epcs_rule_store_manifest(struct epcs_rule_store *store, const char *id, struct epcs_buf *out)
{
    return store->ops->manifest(store, id, out);
}

int epcs_rule_store_blob(struct epcs_rule_store *store, const char *sha256, struct epcs_buf *out)
{
    return store->ops->blob(store, sha256, out);
}

int epcs_rule_store_list(struct epcs_rule_store *store, struct epcs_buf *out)
{
    return store->ops->list(store, out);
}

/* ---- the key store -------------------------------------------------------------------------- */

struct epcs_key_store *epcs_key_store_open(const char *store_uri, const char *keys_path, char *err,
                                           size_t err_size)
{
    if (store_uri != NULL)
        return epcs_key_store_postgresql.open(store_uri, err, err_size);
    return epcs_key_store_file.open(keys_path, err, err_size);
}

void epcs_key_store_close(struct epcs_key_store *store)
{
    if (store != NULL)
        store->ops->close(store);
}

const char *epcs_key_store_where(const struct epcs_key_store *store)
{
    return store->ops->where(store);
}

int epcs_key_store_load(struct epcs_key_store *store, struct epcs_key_record **records,
                        size_t *count, char *err, size_t err_size)
{
    return store->ops->load(store, records, count, err, err_size);
}

int epcs_key_store_create(struct epcs_key_store *store, const char *partner, enum epcs_role role,
                          double rate, char token[EPCS_KEY_TOKEN_LEN + 1],
                          struct epcs_key_record *record, char *err, size_t err_size)
{
    return store->ops->create(store, partner, role, rate, token, record, err, err_size);
}

int epcs_key_store_revoke(struct epcs_key_store *store, const char *id, char *err, size_t err_size)
{
    /* Nothing else can name a key: the backends need not look further. */
    if (!epcs_key_id_valid(id))
        return 1;
    return store->ops->revoke(store, id, err, err_size);
}

int epcs_key_store_stale(struct epcs_key_store *store)
{
    return store->ops->stale(store);
}

int epcs_key_store_follow(struct epcs_key_store *store, void (*changed)(void *ctx), void *ctx)
{
    return store->ops->follow != NULL ? store->ops->follow(store, changed, ctx) : 0;
}

void epcs_key_store_unfollow(struct epcs_key_store *store)
{
    if (store != NULL && store->ops->unfollow != NULL)
        store->ops->unfollow(store);
}

int epcs_key_store_shares_usage(const struct epcs_key_store *store)
{
    return store->ops->exchange_usage != NULL;
}

static int no_sharing(const struct epcs_key_store *store, char *err, size_t err_size)
{
    snprintf(err, err_size, "the %s key store shares no rate usage", store->ops->name);
    return -1;
}

int epcs_key_store_exchange_usage(struct epcs_key_store *store, const char *const *ids,
                                  const double *used, size_t count, double *totals, char *err,
                                  size_t err_size)
{
    if (store->ops->exchange_usage == NULL)
        return no_sharing(store, err, err_size);
    if (count > EPCS_KEY_EXCHANGE_MAX) {
        snprintf(err, err_size, "%zu keys in one exchange, at most %d", count,
                 EPCS_KEY_EXCHANGE_MAX);
        return -1;
    }
    return count == 0 ? 0
                      : store->ops->exchange_usage(store, ids, used, count, totals, err, err_size);
}

/* ---- the replicas --------------------------------------------------------------------------- */

struct epcs_replicas *epcs_replicas_open(const char *store_uri, const char *audit, char *err,
                                         size_t err_size)
{
    if (store_uri != NULL)
        return epcs_replicas_postgresql.open(store_uri, audit, err, err_size);
    return epcs_replicas_embedded.open(NULL, audit, err, err_size);
}

void epcs_replicas_close(struct epcs_replicas *replicas)
{
    if (replicas != NULL)
        replicas->ops->close(replicas);
}

int epcs_replicas_beat(struct epcs_replicas *replicas, const struct epcs_replica_status *status,
                       char *err, size_t err_size)
{
    return replicas->ops->beat(replicas, status, err, err_size);
}
