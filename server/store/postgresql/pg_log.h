#ifndef EPCS_PG_LOG_H
#define EPCS_PG_LOG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "decision.h"
#include "decision_log.h"

/*
 * The decision log's tables on PostgreSQL (postgresql/decision_log.c), for the stores that must
 * write entries of the log inside a transaction of their own: a case step's events commit with
 * the step (CLUSTER.md), so they never pass through the log's writer or its journals.
 *
 * Such entries are rows of epcs_decision_entries, one each, beside the writer's pages in
 * epcs_decision_pages; the log's readers merge both by id, so GET /v1/decisions lists and gets
 * them exactly as the entries the writer stored. The tables exist once a decision log has been
 * opened on the database (epcs_decision_log_open with its URI).
 */

/**
 * Inserts `decisions` (the i-th made for `partners[i]`) and `events` as entries of the decision
 * log, on `conn` inside the transaction its caller has open (nothing is committed here, and a
 * rollback takes them back). Their ids are the caller's, from epcs_decision_log_next_id on the
 * log opened on this database; on PostgreSQL no stage need be given (NULL), since the writer
 * does not wait for these ids. A decision without a time gets the current one. Returns 0, or -1
 * with `err` filled (an id already used included: ids are never reused).
 */
int epcs_pg_log_insert(PGconn *conn, const struct epcs_decision *decisions,
                       const char *const *partners, size_t decision_count,
                       const struct epcs_decision_event *events, size_t event_count, char *err,
                       size_t err_size);

#endif
