/*
 * The legislative_report area (Art. 111). The legal logic is in lua_rules/legislative_report.lua;
 * this plugin declares the facts the rules read and hands evaluations to them.
 */
#include <epcs/plugin.h>

#include <string.h>

EPCS_PLUGIN_DELEGATE_TO_RULES

static const char *const activity_kinds[] = {"report", NULL};

static const char *const channels[] = {
    "rally",
    "briefing_session",
    "report_meeting",
    "congratulatory_speech",
    "greeting",
    "printed_report",
    "recorded_report",
    "phone",
    "mail",
    "email",
    "text_message",
    "sns",
    "messenger",
    "own_homepage",
    "party_homepage",
    "internet_media_homepage",
    NULL,
};

/* actor.kind is the host's: every area shares the actors of SPEC section 5. */
static const struct epcs_fact_spec facts[] = {
    {"activity.channel", EPCS_FACT_ENUM, channels},
    {"activity.leads_to_campaign", EPCS_FACT_BOOL, NULL},
    {"activity.arrival_date", EPCS_FACT_DATE, NULL},
    /* In a by-election: whether the member's constituents vote in it. */
    {"activity.constituents_vote", EPCS_FACT_BOOL, NULL},
    {NULL, 0, NULL},
};

/* Mail cannot arrive before it is sent: such facts were filled in wrongly, and judging by either
 * date alone would hide the mistake behind a verdict. */
static int cb_validate(void *state, struct epcs_facts *request)
{
    struct epcs_fact_value arrival, sent;
    if (epcs_fact_equals(host, request, "activity.channel", "mail") &&
        epcs_fact_read(host, request, "activity.arrival_date", &arrival) &&
        epcs_fact_read(host, request, "date", &sent) && arrival.day < sent.day)
        return host->reject(request, "activity.arrival_date",
                            "activity.arrival_date %.*s is before the day the mail was sent "
                            "(date)",
                            (int)arrival.length, arrival.string);
    return 0;
}

static const struct epcs_plugin descriptor = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_plugin),
    .name = "legislative_report",
    .article = "111",
    .description = "No report of legislative activity by rallies, meetings, speeches, printed or "
                   "recorded reports, phone or mail arriving from D-90 to election day; homepages "
                   "and messages that do not lead to campaigning stay open.",
    .rule_file = "legislative_report.lua",
    .activity_kinds = activity_kinds,
    .facts = facts,
    .init = epcs_rules_init,
    .validate = cb_validate,
    .evaluate = epcs_rules_evaluate,
    .calendar = epcs_rules_calendar,
    .destroy = NULL,
};

EPCS_PLUGIN_EXPORT const struct epcs_plugin *EPCS_PLUGIN_ENTRY(void)
{
    return &descriptor;
}
