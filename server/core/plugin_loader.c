#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The members an ABI-1 descriptor must have; struct_size below this cannot be read safely. */
#define DESCRIPTOR_V1_SIZE (offsetof(struct epcs_plugin, destroy) + sizeof(void (*)(void *)))

static int valid_name(const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > 32)
        return 0;
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return 0;
    }
    return 1;
}

/* Returns NULL when the descriptor is usable, else why not. */
static const char *check_descriptor(const struct epcs_plugin *desc, char *why, size_t why_size)
{
    if (desc->abi_version != EPCS_PLUGIN_ABI_VERSION) {
        snprintf(why, why_size, "plugin ABI version %u, epcsd speaks %u", desc->abi_version,
                 EPCS_PLUGIN_ABI_VERSION);
        return why;
    }
    if (desc->struct_size < DESCRIPTOR_V1_SIZE) {
        snprintf(why, why_size, "descriptor is %u bytes, ABI %u needs at least %zu",
                 desc->struct_size, EPCS_PLUGIN_ABI_VERSION, (size_t)DESCRIPTOR_V1_SIZE);
        return why;
    }
    if (!valid_name(desc->name))
        return "name must be 1-32 characters of a-z, 0-9 and '_'";
    if (desc->article == NULL || desc->article[0] == '\0')
        return "no article";
    if (desc->description == NULL)
        return "no description";
    if (desc->rule_file == NULL || desc->rule_file[0] == '\0' || strchr(desc->rule_file, '/'))
        return "rule_file must be a file name inside the rules directory";
    if (desc->activity_kinds == NULL || desc->activity_kinds[0] == NULL)
        return "no activity kinds";
    if (desc->init == NULL || desc->evaluate == NULL || desc->calendar == NULL)
        return "init, evaluate and calendar callbacks are required";
    return NULL;
}

static int has_suffix(const char *name, const char *suffix)
{
    size_t name_len = strlen(name), suffix_len = strlen(suffix);
    return name_len > suffix_len && strcmp(name + name_len - suffix_len, suffix) == 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_one(struct epcs_plugin_set *set, const char *path,
                     const struct epcs_host_api *host)
{
    char why[256];
    const char *refusal = NULL;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        epcs_log(EPCS_LOG_ERROR, "loader", "refused %s: %s", path, dlerror());
        return;
    }
    epcs_plugin_entry_fn entry;
    /* POSIX's sanctioned way to turn dlsym's void * into a function pointer. */
    *(void **)&entry = dlsym(handle, EPCS_PLUGIN_ENTRY_SYMBOL);
    const struct epcs_plugin *desc = entry != NULL ? entry() : NULL;
    if (entry == NULL) {
        refusal = "no " EPCS_PLUGIN_ENTRY_SYMBOL " symbol";
    } else if (desc == NULL) {
        refusal = EPCS_PLUGIN_ENTRY_SYMBOL " returned no descriptor";
    } else if ((refusal = check_descriptor(desc, why, sizeof(why))) == NULL) {
        for (size_t i = 0; i < set->count; i++) {
            if (strcmp(set->items[i].desc->name, desc->name) == 0) {
                snprintf(why, sizeof(why), "area '%s' is already provided by %s", desc->name,
                         set->items[i].path);
                refusal = why;
            }
        }
    }
    if (refusal != NULL) {
        epcs_log(EPCS_LOG_ERROR, "loader", "refused %s: %s", path, refusal);
        dlclose(handle);
        return;
    }
    struct epcs_loaded_plugin *grown = realloc(set->items, sizeof(*grown) * (set->count + 1));
    char *path_copy = strdup(path);
    if (grown == NULL || path_copy == NULL) {
        epcs_log(EPCS_LOG_ERROR, "loader", "refused %s: out of memory", path);
        if (grown != NULL)
            set->items = grown;
        free(path_copy);
        dlclose(handle);
        return;
    }
    set->items = grown;
    void *state = NULL;
    if (desc->init(host, &state) != 0) {
        epcs_log(EPCS_LOG_ERROR, "loader", "refused %s: init failed", path);
        free(path_copy);
        dlclose(handle);
        return;
    }
    if (epcs_vocab_add_plugin(set->vocab, desc, why, sizeof(why)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "loader", "refused %s: %s", path, why);
        if (desc->destroy != NULL)
            desc->destroy(state);
        free(path_copy);
        dlclose(handle);
        return;
    }
    set->items[set->count++] = (struct epcs_loaded_plugin){
        .handle = handle, .desc = desc, .state = state, .path = path_copy};
    epcs_log(EPCS_LOG_INFO, "loader", "loaded area '%s' (Art. %s) from %s", desc->name,
             desc->article, path);
}

struct epcs_plugin_set *epcs_plugins_load(const char *dir, const struct epcs_host_api *host)
{
    DIR *listing = opendir(dir);
    if (listing == NULL) {
        epcs_log(EPCS_LOG_ERROR, "loader", "cannot read plugin directory %s: %s", dir,
                 strerror(errno));
        return NULL;
    }
    struct epcs_plugin_set *set = calloc(1, sizeof(*set));
    char **names = NULL;
    size_t count = 0;
    int failed = set == NULL || (set->vocab = epcs_vocab_create()) == NULL;
    struct dirent *entry;
    while (!failed && (entry = readdir(listing)) != NULL) {
        if (!has_suffix(entry->d_name, ".so"))
            continue;
        char **grown = realloc(names, sizeof(*grown) * (count + 1));
        char *name = strdup(entry->d_name);
        if (grown != NULL)
            names = grown;
        if (grown == NULL || name == NULL) {
            free(name);
            failed = 1;
            break;
        }
        names[count++] = name;
    }
    closedir(listing);
    if (!failed) {
        /* File-name order makes "which of two duplicates wins" the same on every start. */
        if (count > 1)
            qsort(names, count, sizeof(*names), compare_names);
        for (size_t i = 0; i < count; i++) {
            char path[4096];
            if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path)) {
                epcs_log(EPCS_LOG_ERROR, "loader", "refused %s/%s: path too long", dir, names[i]);
                continue;
            }
            load_one(set, path, host);
        }
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    if (failed) {
        epcs_log(EPCS_LOG_ERROR, "loader", "out of memory while listing %s", dir);
        epcs_plugins_destroy(set);
        return NULL;
    }
    return set;
}

int epcs_plugins_find(const struct epcs_plugin_set *set, const char *name, size_t len)
{
    for (size_t i = 0; i < set->count; i++) {
        const char *candidate = set->items[i].desc->name;
        if (strlen(candidate) == len && memcmp(candidate, name, len) == 0)
            return (int)i;
    }
    return -1;
}

int epcs_plugin_covers(const struct epcs_plugin *plugin, const char *kind, size_t len)
{
    for (const char *const *k = plugin->activity_kinds; *k != NULL; k++) {
        if (strlen(*k) == len && memcmp(*k, kind, len) == 0)
            return 1;
    }
    return 0;
}

void epcs_plugins_destroy(struct epcs_plugin_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->count; i++) {
        struct epcs_loaded_plugin *plugin = &set->items[i];
        if (plugin->desc->destroy != NULL)
            plugin->desc->destroy(plugin->state);
        dlclose(plugin->handle);
        free(plugin->path);
    }
    free(set->items);
    epcs_vocab_destroy(set->vocab);
    free(set);
}
