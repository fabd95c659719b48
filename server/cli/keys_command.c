/* `epcsd keys ...`: API keys managed from the command line, in the keys file or PostgreSQL. */
#include "keys_command.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key_store.h"

static void keys_usage(FILE *out)
{
    fputs("usage: epcsd keys create --partner ID --role partner|staff|admin [--rate N] [--keys "
          "FILE | --store URI]\n"
          "       epcsd keys revoke ID [--keys FILE | --store URI]\n"
          "       epcsd keys list [--keys FILE | --store URI]\n"
          "\n"
          "The keys file defaults to var/keys (--data's default); give the same --keys FILE\n"
          "the server runs with, or the same --store postgresql://... URI for a cluster's keys.\n"
          "create prints the new token once: only its SHA-256 is kept.\n"
          "A running epcsd notices the change within a second.\n",
          out);
}

struct keys_args {
    const char *action, *path, *store, *partner, *role, *rate, *id;
};

/* The options into `args`. 0, or 2 (the exit status) after saying what is wrong. */
static int parse_args(int argc, char **argv, struct keys_args *args)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **target = strcmp(arg, "--keys") == 0      ? &args->path
                              : strcmp(arg, "--store") == 0   ? &args->store
                              : strcmp(arg, "--partner") == 0 ? &args->partner
                              : strcmp(arg, "--role") == 0    ? &args->role
                              : strcmp(arg, "--rate") == 0    ? &args->rate
                                                              : NULL;
        if (target != NULL) {
            if (i + 1 == argc) {
                fprintf(stderr, "epcsd keys: %s needs a value\n", arg);
                return 2;
            }
            *target = argv[++i];
        } else if (arg[0] != '-' && args->id == NULL && strcmp(args->action, "revoke") == 0) {
            args->id = arg;
        } else {
            fprintf(stderr, "epcsd keys: unexpected argument '%s'\n", arg);
            keys_usage(stderr);
            return 2;
        }
    }
    if (args->store != NULL && strcmp(args->store, "sqlite") == 0)
        args->store = NULL;
    if (args->store != NULL && strncmp(args->store, "postgresql://", 13) != 0 &&
        strncmp(args->store, "postgres://", 11) != 0) {
        fprintf(stderr, "epcsd keys: --store must be sqlite or a postgresql:// URI, got '%.64s'\n",
                args->store);
        return 2;
    }
    if (args->store != NULL && args->path != NULL) {
        fprintf(stderr,
                "epcsd keys: --keys names a keys file, --store %s keeps the keys in "
                "PostgreSQL: give one of them\n",
                "postgresql://...");
        return 2;
    }
    if (args->path == NULL)
        args->path = "var/keys";
    return 0;
}

static int create(struct epcs_key_store *store, const struct keys_args *args)
{
    if (args->partner == NULL || args->role == NULL) {
        fprintf(stderr, "epcsd keys create: --partner and --role are required\n");
        return 2;
    }
    char *end;
    double rate = strtod(args->rate, &end);
    if (*end != '\0') {
        fprintf(stderr, "epcsd keys create: --rate must be a number, got '%s'\n", args->rate);
        return 2;
    }
    char token[EPCS_KEY_TOKEN_LEN + 1], err[512];
    struct epcs_key_record key;
    if (epcs_key_store_create(store, args->partner, epcs_role_parse(args->role), rate, token, &key,
                              err, sizeof(err)) != 0) {
        fprintf(stderr, "epcsd keys create: %s\n", err);
        return 1;
    }
    fprintf(stderr, "key %s for partner %s (%s) added to %s; the token follows, shown once\n",
            key.id, key.partner, epcs_role_name(key.role), epcs_key_store_where(store));
    printf("%s\n", token);
    return 0;
}

static int revoke(struct epcs_key_store *store, const struct keys_args *args)
{
    if (args->id == NULL) {
        fprintf(stderr, "epcsd keys revoke: which key id? (epcsd keys list shows them)\n");
        return 2;
    }
    char err[512];
    int rc = epcs_key_store_revoke(store, args->id, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "epcsd keys revoke: %s\n", err);
        return 1;
    }
    if (rc > 0) {
        fprintf(stderr, "epcsd keys revoke: no key %s in %s\n", args->id,
                epcs_key_store_where(store));
        return 1;
    }
    fprintf(stderr, "key %s revoked in %s\n", args->id, epcs_key_store_where(store));
    return 0;
}

static int list(struct epcs_key_store *store)
{
    char err[512];
    struct epcs_key_record *keys;
    size_t count;
    if (epcs_key_store_load(store, &keys, &count, err, sizeof(err)) != 0) {
        fprintf(stderr, "epcsd keys list: %s\n", err);
        return 1;
    }
    printf("%-16s  %-20s  %-7s  %-8s  %s\n", "id", "partner", "role", "rate", "created");
    for (size_t i = 0; i < count; i++) {
        const struct epcs_key_record *key = &keys[i];
        char rate[32];
        if (key->rate > 0)
            snprintf(rate, sizeof(rate), "%g/s", key->rate);
        else
            snprintf(rate, sizeof(rate), "default");
        printf("%-16s  %-20s  %-7s  %-8s  %s\n", key->id, key->partner, epcs_role_name(key->role),
               rate, key->created);
    }
    free(keys);
    return 0;
}

int epcs_keys_command(int argc, char **argv)
{
    if (argc < 1) {
        keys_usage(stderr);
        return 2;
    }
    struct keys_args args = {.action = argv[0], .rate = "0"};
    if (strcmp(args.action, "--help") == 0 || strcmp(args.action, "help") == 0) {
        keys_usage(stdout);
        return 0;
    }
    if (strcmp(args.action, "create") != 0 && strcmp(args.action, "revoke") != 0 &&
        strcmp(args.action, "list") != 0) {
        fprintf(stderr, "epcsd keys: unknown action '%s'\n", args.action);
        keys_usage(stderr);
        return 2;
    }
    int rc = parse_args(argc, argv, &args);
    if (rc != 0)
        return rc;
    char err[512];
    struct epcs_key_store *store = epcs_key_store_open(args.store, args.path, err, sizeof(err));
    if (store == NULL) {
        fprintf(stderr, "epcsd keys %s: %s\n", args.action, err);
        return 1;
    }
    if (strcmp(args.action, "create") == 0)
        rc = create(store, &args);
    else if (strcmp(args.action, "revoke") == 0)
        rc = revoke(store, &args);
    else
        rc = list(store);
    epcs_key_store_close(store);
    return rc;
}
