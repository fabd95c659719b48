/*
 * The resignation area (Arts. 53, 60(2)). The legal logic is in lua_rules/resignation.lua; this
 * plugin declares the facts the rules read and hands evaluations to them.
 */
#include <epcs/plugin.h>

EPCS_PLUGIN_DELEGATE_TO_RULES

static const char *const activity_kinds[] = {"run_for_office", "become_campaign_official", NULL};

static const char *const seats[] = {"constituency", "proportional", NULL};

/* The race run for in a nationwide local election (a one-race election names it itself); the
 * advertising area declares the same fact with the same values. */
static const char *const local_races[] = {"governor", "local_head", "council", NULL};

/* actor.kind is the host's: every area shares the actors of SPEC section 5. */
static const struct epcs_fact_spec facts[] = {
    {"activity.seat", EPCS_FACT_ENUM, seats},
    {"activity.received_date", EPCS_FACT_DATE, NULL},
    {"activity.local_race", EPCS_FACT_ENUM, local_races},
    /* A head or council member running for the head or council of the local government they
     * serve (Art. 53(1) proviso, 53(2)4). */
    {"activity.same_local_government", EPCS_FACT_BOOL, NULL},
    /* A head running for an Assembly constituency overlapping their jurisdiction (Art. 53(5)). */
    {"activity.constituency_overlaps_jurisdiction", EPCS_FACT_BOOL, NULL},
    {NULL, 0, NULL},
};

static const struct epcs_plugin descriptor = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_plugin),
    .name = "resignation",
    .article = "53",
    .description = "Public officials (elected ones too), journalists and others must resign by "
                   "D-90 (constituency, presidency), D-30 (proportional, by-elections, elected "
                   "officials moving between offices) or D-120 (a head running where they govern) "
                   "to run, and by D-90 to become campaign officials; judged by the day the "
                   "resignation was received.",
    .rule_file = "resignation.lua",
    .activity_kinds = activity_kinds,
    .facts = facts,
    .init = epcs_rules_init,
    .validate = NULL, /* types and enums say all there is to check */
    .evaluate = epcs_rules_evaluate,
    .calendar = epcs_rules_calendar,
    .destroy = NULL,
};

EPCS_PLUGIN_EXPORT const struct epcs_plugin *EPCS_PLUGIN_ENTRY(void)
{
    return &descriptor;
}
