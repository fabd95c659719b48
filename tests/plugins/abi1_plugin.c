/*
 * The publication_ceremony area as a plugin built against ABI 1's header (tests/plugins/abi1),
 * whose struct epcs_fact_value carries no size. It declares the real area's fact and rule file,
 * so its verdicts must be the shipped plugin's, and one more fact, activity.abi_probe: when a
 * request carries it, validate refuses the facts with a message that spells out everything the
 * host wrote into its fact values, for the tests to compare with what they sent.
 *
 * Every read lands twice: in a heap block of exactly the ABI 1 size, where AddressSanitizer
 * reports a write past it, and in a struct followed by guard bytes, which every build checks.
 */
#include <epcs/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_BYTE 0xA5

EPCS_PLUGIN_DELEGATE_TO_RULES

static const char *const activity_kinds[] = {"publication_ceremony", NULL};

static const struct epcs_fact_spec facts[] = {
    {"activity.book_related_to_candidate", EPCS_FACT_BOOL, NULL},
    {"activity.abi_probe", EPCS_FACT_STRING, NULL},
    {"activity.abi_day", EPCS_FACT_DATE, NULL},
    {NULL, 0, NULL},
};

struct guarded_value {
    struct epcs_fact_value value;
    unsigned char guard[64];
};

/* Returns 1 present, 0 absent, -1 when the host wrote past the ABI 1 struct or the two reads
 * disagree (both already reported through reject). */
static int read_fact(struct epcs_facts *request, const char *path, struct epcs_fact_value *out)
{
    struct epcs_fact_value *exact = malloc(sizeof(*exact));
    struct guarded_value guarded;
    if (exact == NULL)
        return host->reject(request, path, "abi1 test plugin: out of memory");
    memset(exact, 0, sizeof(*exact));
    memset(&guarded, GUARD_BYTE, sizeof(guarded));
    int present = host->fact(request, path, exact);
    int again = host->fact(request, path, &guarded.value);
    for (size_t i = 0; i < sizeof(guarded.guard); i++) {
        if (guarded.guard[i] != GUARD_BYTE) {
            free(exact);
            return host->reject(request, path,
                                "abi1 test plugin: the host wrote past the %zu-byte fact value "
                                "reading %s",
                                sizeof(struct epcs_fact_value), path);
        }
    }
    int same = present == again &&
               (!present ||
                (exact->type == guarded.value.type && exact->boolean == guarded.value.boolean &&
                 exact->string == guarded.value.string && exact->length == guarded.value.length &&
                 exact->day == guarded.value.day));
    *out = *exact;
    free(exact);
    if (!same)
        return host->reject(request, path, "abi1 test plugin: two reads of %s disagree", path);
    return present;
}

/* Appends "path=<type>:<value>" for one fact, or "path=absent". Returns -1 when read_fact
 * refused the facts. */
static int describe(struct epcs_facts *request, const char *path, char *text, size_t size)
{
    struct epcs_fact_value value = {0};
    size_t used = strlen(text);
    int present = read_fact(request, path, &value);
    if (present < 0)
        return -1;
    if (!present) {
        snprintf(text + used, size - used, " %s=absent", path);
        return 0;
    }
    switch (value.type) {
    case EPCS_FACT_BOOL:
        snprintf(text + used, size - used, " %s=bool:%d", path, value.boolean);
        break;
    case EPCS_FACT_DATE:
        snprintf(text + used, size - used, " %s=date:%d:%.*s", path, (int)value.day,
                 value.string != NULL ? (int)value.length : 0,
                 value.string != NULL ? value.string : "");
        break;
    default:
        snprintf(text + used, size - used, " %s=%d:%.*s", path, (int)value.type, (int)value.length,
                 value.string);
    }
    return 0;
}

static int cb_validate(void *state, struct epcs_facts *request)
{
    static const char *const paths[] = {"actor.kind",
                                        "activity.kind",
                                        "activity.book_related_to_candidate",
                                        "activity.abi_day",
                                        "date",
                                        "activity.abi_probe",
                                        NULL};
    char text[512] = "read:";
    (void)state;
    for (const char *const *path = paths; *path != NULL; path++) {
        if (describe(request, *path, text, sizeof(text)) != 0)
            return -1;
    }
    /* epcs_fact_equals is inline: this is ABI 1's copy of it, calling host->fact. */
    if (epcs_fact_equals(host, request, "activity.abi_probe", "echo"))
        return host->reject(request, "activity.abi_probe", "%s", text);
    return 0;
}

static const struct epcs_plugin descriptor = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_plugin),
    .name = "publication_ceremony",
    .article = "103(5)",
    .description = "Art. 103(5), as a plugin built against ABI 1's header.",
    .rule_file = "publication_ceremony.lua",
    .activity_kinds = activity_kinds,
    .facts = facts,
    .init = epcs_rules_init,
    .validate = cb_validate,
    .evaluate = epcs_rules_evaluate,
    .calendar = epcs_rules_calendar,
};

EPCS_PLUGIN_EXPORT const struct epcs_plugin *EPCS_PLUGIN_ENTRY(void)
{
    return &descriptor;
}
