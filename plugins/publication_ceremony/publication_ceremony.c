/*
 * The publication_ceremony area (Art. 103(5)). The legal logic is in
 * lua_rules/publication_ceremony.lua; this plugin declares the facts the rules read and hands
 * evaluations to them.
 */
#include <epcs/plugin.h>

static const struct epcs_host_api *host;

static const char *const activity_kinds[] = {"publication_ceremony", NULL};

/* No actor fact: Art. 103(5) binds anyone, whoever wrote the book. */
static const struct epcs_fact_spec facts[] = {
    {"activity.book_related_to_candidate", EPCS_FACT_BOOL, NULL},
    {NULL, 0, NULL},
};

static int cb_init(const struct epcs_host_api *api, void **state)
{
    if (api->struct_size < sizeof(struct epcs_host_api))
        return -1;
    host = api;
    *state = NULL;
    return 0;
}

static int cb_evaluate(void *state, struct epcs_eval *eval)
{
    return host->run_rules(eval);
}

static int cb_calendar(void *state, struct epcs_calendar *calendar)
{
    return host->run_calendar(calendar);
}

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
    .init = cb_init,
    .validate = NULL, /* one boolean: its type says all there is to check */
    .evaluate = cb_evaluate,
    .calendar = cb_calendar,
    .destroy = NULL,
};

EPCS_PLUGIN_EXPORT const struct epcs_plugin *EPCS_PLUGIN_ENTRY(void)
{
    return &descriptor;
}
