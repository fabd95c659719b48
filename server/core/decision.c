#include "decision.h"

#include "dates.h"
#include "log.h"

void epcs_decision_debug(const struct epcs_decision *decision, const char *partner)
{
    if (!epcs_log_enabled(EPCS_LOG_DEBUG))
        return;
    char date[11];
    epcs_date_format(decision->date, date);
    epcs_log(EPCS_LOG_DEBUG, "decision", "%llu for %s: %s %s %s on %s by %s in %llu us",
             (unsigned long long)decision->id, partner, decision->election,
             decision->area ? decision->area : "(all areas)", epcs_verdict_name(decision->verdict),
             date, decision->ruleset, (unsigned long long)decision->latency_us);
}
