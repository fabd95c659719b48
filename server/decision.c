#include "decision.h"

#include "dates.h"
#include "log.h"

static epcs_decision_sink_fn sink;
static void *sink_ctx;

void epcs_decisions_set_sink(epcs_decision_sink_fn fn, void *ctx)
{
    sink = fn;
    sink_ctx = ctx;
}

void epcs_decision_record(const struct epcs_decision *decision)
{
    if (sink != NULL)
        sink(sink_ctx, decision);
}

void epcs_decision_log_sink(void *ctx, const struct epcs_decision *decision)
{
    char date[11];
    epcs_date_format(decision->date, date);
    epcs_log(EPCS_LOG_DEBUG, "decision", "%s %s %s on %s by %s in %llu us", decision->election,
             decision->area ? decision->area : "(all areas)", epcs_verdict_name(decision->verdict),
             date, decision->ruleset, (unsigned long long)decision->latency_us);
}
