/*
 * The advertising area (Art. 93). The legal logic is in lua_rules/advertising.lua; this plugin
 * declares the facts the rules read and hands evaluations to them.
 */
#include <epcs/plugin.h>

#include <string.h>

EPCS_PLUGIN_DELEGATE_TO_RULES

static const char *const activity_kinds[] = {"advertisement", NULL};

static const char *const media[] = {"broadcast", "newspaper", "magazine", "internet",
                                    "outdoor",   "other",     NULL};

static const char *const names_shown[] = {"party", "candidate", "prospective_candidate", "none",
                                          NULL};

static const char *const advertisers[] = {"candidate", "recommending_party", "other", NULL};

static const char *const local_races[] = {"governor", "local_head", "council", NULL};

static const char *const seats[] = {"constituency", "proportional", NULL};

static const struct epcs_fact_spec facts[] = {
    {"activity.medium", EPCS_FACT_ENUM, media},
    {"activity.shows_name", EPCS_FACT_ENUM, names_shown},
    {"activity.appears", EPCS_FACT_BOOL, NULL},
    {"activity.authorized_by", EPCS_FACT_STRING, NULL},
    {"activity.regular_commercial", EPCS_FACT_BOOL, NULL},
    {"activity.related_to_election", EPCS_FACT_BOOL, NULL},
    {"activity.representative_is_prospective_candidate", EPCS_FACT_BOOL, NULL},
    {"activity.advertiser", EPCS_FACT_ENUM, advertisers},
    {"activity.party_recommended", EPCS_FACT_BOOL, NULL},
    {"activity.local_race", EPCS_FACT_ENUM, local_races},
    {"activity.seat", EPCS_FACT_ENUM, seats},
    {"activity.periodical_sale", EPCS_FACT_BOOL, NULL},
    {"activity.ordinary_manner", EPCS_FACT_BOOL, NULL},
    {NULL, 0, NULL},
};

/* Index past the run of digits starting at `at`. */
static size_t skip_digits(const char *text, size_t len, size_t at)
{
    while (at < len && text[at] >= '0' && text[at] <= '9')
        at++;
    return at;
}

/* An article as the Act numbers it: "69", "82-8", "70(1)", "52(1)5". */
static int is_article(const char *text, size_t len)
{
    size_t at = skip_digits(text, len, 0);
    if (at == 0 || len > 16)
        return 0;
    if (at < len && text[at] == '-') {
        size_t branch = skip_digits(text, len, at + 1);
        if (branch == at + 1)
            return 0;
        at = branch;
    }
    if (at < len && text[at] == '(') {
        size_t paragraph = skip_digits(text, len, at + 1);
        if (paragraph == at + 1 || paragraph >= len || text[paragraph] != ')')
            return 0;
        at = skip_digits(text, len, paragraph + 1);
    }
    return at == len;
}

/* authorized_by opens the Act-provided-method exception; free text there would let any ad
 * claim it. party_recommended describes a candidate placing the ad, and a head's race has no
 * seat: either contradiction would decide the method on a fact that cannot be. */
static int cb_validate(void *state, struct epcs_facts *request)
{
    struct epcs_fact_value by, fact;
    (void)state;
    if (epcs_fact_read(host, request, "activity.authorized_by", &by) &&
        !is_article(by.string, by.length))
        return host->reject(request, "activity.authorized_by",
                            "activity.authorized_by must name an article of the Act, e.g. \"69\" "
                            "or \"70(1)\"");
    if (epcs_fact_read(host, request, "activity.party_recommended", &fact) &&
        epcs_fact_read(host, request, "activity.advertiser", &by) &&
        !epcs_fact_equals(host, request, "activity.advertiser", "candidate"))
        return host->reject(request, "activity.party_recommended",
                            "activity.party_recommended describes a candidate placing the ad, "
                            "but activity.advertiser is '%.*s'",
                            (int)by.length, by.string);
    if (epcs_fact_read(host, request, "activity.seat", &fact) &&
        (epcs_fact_equals(host, request, "activity.local_race", "governor") ||
         epcs_fact_equals(host, request, "activity.local_race", "local_head")))
        return host->reject(request, "activity.seat",
                            "activity.seat names a council or National Assembly seat, but "
                            "activity.local_race is a head's race, which has none");
    return 0;
}

static const struct epcs_plugin descriptor = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_plugin),
    .name = "advertising",
    .article = "93",
    .description = "No ad showing a party's or candidate's name by a method the Act does not "
                   "provide (Arts. 69, 70, 82-7) from D-120 (93(1)) and D-90 (93(2)) to "
                   "election day, and no candidate in ads from D-90.",
    .rule_file = "advertising.lua",
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
