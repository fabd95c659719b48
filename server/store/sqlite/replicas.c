/*
 * The registry of the embedded store (epcs_replicas_embedded, store.h): one epcsd, whose row
 * is made in memory from what it says of itself with each beat, by its own clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dates.h"
#include "replica_rows.h"

struct embedded_replicas {
    struct epcs_replicas base;
    struct epcs_replica_row self;
};

static struct epcs_replicas *embedded_open(const char *where, const char *audit, char *err,
                                           size_t err_size)
{
    (void)where;
    struct embedded_replicas *replicas = calloc(1, sizeof(*replicas));
    if (replicas == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    epcs_replica_rows_init(&replicas->base, &epcs_replicas_embedded, 1);
    struct epcs_replica_row *self = &replicas->self;
    self->run = 1;
    if (gethostname(self->host, sizeof(self->host) - 1) != 0)
        snprintf(self->host, sizeof(self->host), "unknown");
    self->pid = (long)getpid();
    snprintf(self->audit, sizeof(self->audit), "%s", audit);
    self->started_us = epcs_now_us();
    return &replicas->base;
}

static void embedded_close(struct epcs_replicas *base)
{
    epcs_replica_rows_free(base);
    free(base);
}

static int embedded_beat(struct epcs_replicas *base, const struct epcs_replica_status *status,
                         char *err, size_t err_size)
{
    struct embedded_replicas *replicas = (struct embedded_replicas *)base;
    struct epcs_replica_row *row = malloc(sizeof(*row));
    if (row == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    replicas->self.heartbeat_us = epcs_now_us();
    replicas->self.status = *status;
    *row = replicas->self;
    epcs_replica_rows_replace(base, row, 1, row->heartbeat_us);
    return 0;
}

const struct epcs_replicas_ops epcs_replicas_embedded = {
    .name = "embedded",
    .open = embedded_open,
    .close = embedded_close,
    .beat = embedded_beat,
};
