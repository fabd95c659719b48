/*
 * The deepfake area (Art. 82-8). The legal logic is in lua_rules/deepfake.lua; this plugin
 * declares the facts the rules read and hands evaluations to them.
 */
#include <epcs/plugin.h>

EPCS_PLUGIN_DELEGATE_TO_RULES

static const char *const activity_kinds[] = {"produce", "edit", "distribute",
                                             "screen",  "post", NULL};

static const char *const purposes[] = {
    "campaign", "primary", "get_out_the_vote", "legislative_report", "satire", "other", NULL};

static const struct epcs_fact_spec facts[] = {
    {"activity.deepfake", EPCS_FACT_BOOL, NULL},
    {"activity.purpose", EPCS_FACT_ENUM, purposes},
    {"activity.labeled", EPCS_FACT_BOOL, NULL},
    {NULL, 0, NULL},
};

static const struct epcs_plugin descriptor = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_plugin),
    .name = "deepfake",
    .article = "82-8",
    .description = "No deepfake video for election campaigning from D-90 to election day; "
                   "outside that window only with an AI label.",
    .rule_file = "deepfake.lua",
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
