/*
 * The false_information area (Arts. 82-4, 250, 251, and 82-8 for deepfakes): a reported online
 * posting, and what the commission sends whom about it. The legal logic is in
 * lua_rules/false_information.lua; this plugin declares the facts the rules read, refuses facts
 * that contradict each other and hands evaluations to the rules.
 */
#include <epcs/plugin.h>

#include <string.h>

EPCS_PLUGIN_DELEGATE_TO_RULES

static const char *const activity_kinds[] = {"posting", NULL};

static const char *const categories[] = {"false_fact", "slander", "deepfake", NULL};

static const char *const intents[] = {"to_elect", "to_defeat", NULL};

/* Whom the posting is about: Arts. 250 and 251 protect (prospective) candidates and their
 * spouses, lineal ascendants and descendants and siblings (the *_family values), Art. 250(3)
 * primary contenders and theirs; a party or anyone else is protected only as to whom it is said
 * to support (activity.support_for). */
static const char *const targets[] = {"candidate",
                                      "candidate_family",
                                      "prospective_candidate",
                                      "prospective_candidate_family",
                                      "primary_contender",
                                      "primary_contender_family",
                                      "party",
                                      "other",
                                      NULL};

/* Whose support a false claim about a party or another person or group concerns: a
 * (prospective) candidate's (Art. 250(1)), a primary contender's (250(3)) or nobody's. */
static const char *const support_for[] = {"candidate", "primary_contender", "none", NULL};

/* The deepfake area's list: a deepfake posting is judged by that area's rules. */
static const char *const purposes[] = {
    "campaign", "primary", "get_out_the_vote", "legislative_report", "satire", "other", NULL};

static const struct epcs_fact_spec facts[] = {
    {"activity.category", EPCS_FACT_ENUM, categories},
    {"activity.intent", EPCS_FACT_ENUM, intents},
    {"activity.target", EPCS_FACT_ENUM, targets},
    {"activity.support_for", EPCS_FACT_ENUM, support_for},
    {"activity.poster_identified", EPCS_FACT_BOOL, NULL},
    {"activity.true_facts", EPCS_FACT_BOOL, NULL},
    {"activity.public_interest", EPCS_FACT_BOOL, NULL},
    {"activity.deepfake", EPCS_FACT_BOOL, NULL},
    {"activity.purpose", EPCS_FACT_ENUM, purposes},
    {"activity.labeled", EPCS_FACT_BOOL, NULL},
    {NULL, 0, NULL},
};

/* A posting reported as spreading false facts cannot state true ones: such a report was filled
 * in wrongly (true facts that disparage are slander), and either verdict would hide it. Nor can
 * a posting be about a protected person and about someone else's support at once: support_for
 * describes a party or another person or group as the target, and the rules would read one of
 * the two and silently drop the other. */
static int cb_validate(void *state, struct epcs_facts *request)
{
    struct epcs_fact_value true_facts, support, target;
    (void)state;
    if (epcs_fact_equals(host, request, "activity.category", "false_fact") &&
        epcs_fact_read(host, request, "activity.true_facts", &true_facts) && true_facts.boolean)
        return host->reject(request, "activity.true_facts",
                            "activity.true_facts is true for a posting reported as false_fact; "
                            "report true facts that disparage as slander");
    if (epcs_fact_read(host, request, "activity.support_for", &support) &&
        epcs_fact_read(host, request, "activity.target", &target) &&
        !epcs_fact_equals(host, request, "activity.target", "party") &&
        !epcs_fact_equals(host, request, "activity.target", "other"))
        return host->reject(request, "activity.support_for",
                            "activity.support_for is for a target that is a party or another "
                            "person or group; a posting about a (prospective) candidate, a primary "
                            "contender or their family is judged as about them");
    return 0;
}

static const struct epcs_plugin descriptor = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_plugin),
    .name = "false_information",
    .article = "82-4",
    .description = "Reported postings spreading false facts about or slandering candidates, or "
                   "deepfakes restricted by Art. 82-8: the verdict and the deletion requests and "
                   "referrals the commission sends.",
    .rule_file = "false_information.lua",
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
