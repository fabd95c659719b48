#ifndef EPCS_FLAGS_H
#define EPCS_FLAGS_H

#include "config.h"

/*
 * epcsd's command line: the flags, one row each in config.c's table, parsed into the
 * server's configuration (http/config.h).
 */

/**
 * Fills `config` from argv. Returns 0 to run, 1 when --help or --version was answered (exit 0),
 * -1 after printing an error naming the flag (exit 2).
 */
int epcs_config_parse(struct epcs_config *config, int argc, char **argv);
/** The PostgreSQL connection string --store names, or NULL for the embedded stores. */
const char *epcs_config_store_uri(const struct epcs_config *config);
/** Frees what the config owns (plugins_dir); the config may be parsed again afterwards. */
void epcs_config_dispose(struct epcs_config *config);

#endif
