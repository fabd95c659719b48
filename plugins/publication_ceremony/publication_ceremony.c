/*
 * The publication_ceremony area (Art. 103(5)). The legal logic is in
 * lua_rules/publication_ceremony.lua; this plugin declares the facts the rules read and hands
 * evaluations to them.
 */
#include <epcs/plugin.h>

EPCS_PLUGIN_DELEGATE_TO_RULES

static const char *const activity_kinds[] = {"publication_ceremony", NULL};

/* No actor fact: Art. 103(5) binds anyone, whoever wrote the book. */
static const struct epcs_fact_spec facts[] = {
    {"activity.book_related_to_candidate", EPCS_FACT_BOOL, NULL},
    {NULL, 0, NULL},
};

static const struct epcs_plugin descriptor = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_plugin),
    .name = "publication_ceremony",
    .article = "103(5)",
    .description = "No publication ceremony for a book related to a candidate or prospective "
                   "candidate from D-90 to election day, whoever wrote it.",
    .rule_file = "publication_ceremony.lua",
    .activity_kinds = activity_kinds,
    .facts = facts,
    .init = epcs_rules_init,
    .validate = NULL, /* one boolean: its type says all there is to check */
    .evaluate = epcs_rules_evaluate,
    .calendar = epcs_rules_calendar,
    .destroy = NULL,
};

EPCS_PLUGIN_EXPORT const struct epcs_plugin *EPCS_PLUGIN_ENTRY(void)
{
    return &descriptor;
}
