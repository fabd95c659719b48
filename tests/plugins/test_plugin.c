/*
 * One source, many plugins: each TEST_PLUGIN_<CASE> build breaks the ABI in one way, so
 * test_loader can prove epcsd refuses it with a clear reason and keeps running.
 */
#include <epcs/plugin.h>

#include <stddef.h>

static const char *const kinds[] = {"post", NULL};
static const char *const colours[] = {"red", "blue", NULL};

static const struct epcs_fact_spec facts[] = {
#ifdef TEST_PLUGIN_FACT_CONFLICT
    /* deepfake declares activity.labeled as a boolean */
    {"activity.labeled", EPCS_FACT_ENUM, colours},
#else
    {"activity.colour", EPCS_FACT_ENUM, colours},
#endif
    {NULL, 0, NULL},
};

static int cb_init(const struct epcs_host_api *host, void **state)
{
    *state = NULL;
#ifdef TEST_PLUGIN_INIT_FAILS
    host->log(EPCS_LOG_ERROR, "init_fails", "refusing to start, as this test plugin must");
    return -1;
#else
    return 0;
#endif
}

#ifndef TEST_PLUGIN_MISSING_CALLBACK
static int cb_evaluate(void *state, struct epcs_eval *eval)
{
    return -1;
}
#endif

static int cb_calendar(void *state, struct epcs_calendar *calendar)
{
    return 0;
}

static const struct epcs_plugin descriptor = {
#ifdef TEST_PLUGIN_WRONG_ABI
    .abi_version = 99,
#else
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
#endif
#ifdef TEST_PLUGIN_SHORT_STRUCT
    .struct_size = offsetof(struct epcs_plugin, init),
#else
    .struct_size = sizeof(struct epcs_plugin),
#endif
#if defined(TEST_PLUGIN_BAD_NAME)
    .name = "Bad Name!",
#elif defined(TEST_PLUGIN_DUPLICATE)
    .name = "deepfake",
#else
    .name = "test_area",
#endif
    .article = "0",
    .description = "A plugin for the loader tests.",
    .rule_file = "test_area.lua",
    .activity_kinds = kinds,
    .facts = facts,
    .init = cb_init,
#ifndef TEST_PLUGIN_MISSING_CALLBACK
    .evaluate = cb_evaluate,
#endif
    .calendar = cb_calendar,
};

EPCS_PLUGIN_EXPORT const struct epcs_plugin *EPCS_PLUGIN_ENTRY(void)
{
#ifdef TEST_PLUGIN_NULL_DESCRIPTOR
    /* The descriptor exists but the entry point withholds it. */
    return descriptor.name == NULL ? &descriptor : NULL;
#else
    return &descriptor;
#endif
}
