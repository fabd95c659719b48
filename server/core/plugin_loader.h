#ifndef EPCS_PLUGIN_LOADER_H
#define EPCS_PLUGIN_LOADER_H

#include <stddef.h>

#include "epcs/plugin.h"
#include "facts.h"

/** A plugin that passed every check and whose init succeeded. */
struct epcs_loaded_plugin {
    void *handle;
    const struct epcs_plugin *desc;
    void *state;
    char *path;
};

/** The plugins epcsd runs with, sorted by file name, and the fact vocabulary they define. */
struct epcs_plugin_set {
    struct epcs_loaded_plugin *items;
    size_t count;
    struct epcs_vocab *vocab;
};

/**
 * Loads every "*.so" in `dir`, in file-name order. A plugin that cannot be opened, has no entry
 * symbol, speaks another ABI, has an incomplete descriptor, repeats an earlier plugin's name or
 * conflicts with its facts, or whose init fails is refused with one log line and skipped; the
 * others load. Returns the set (possibly empty), or NULL when `dir` cannot be read or memory
 * runs out (logged). The caller owns the set.
 */
struct epcs_plugin_set *epcs_plugins_load(const char *dir, const struct epcs_host_api *host);

/** Index of the plugin named [name, name+len), or -1. */
int epcs_plugins_find(const struct epcs_plugin_set *set, const char *name, size_t len);

/** True when the plugin lists `kind` (len bytes) among its activity kinds. */
int epcs_plugin_covers(const struct epcs_plugin *plugin, const char *kind, size_t len);

/** Calls every plugin's destroy, closes the objects. Accepts NULL. */
void epcs_plugins_destroy(struct epcs_plugin_set *set);

#endif
