/*  local_cluster.c - a broker thread and a worker process, reached over
    inproc:// by a client in this process.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "local_cluster.h"
#include "drover_broker.h"
#include "drover_cluster.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STOP_MS 3000 //  local_cluster_destroy waits this long

struct local_cluster_t {
    drover_cluster_t *cluster; //  the directory and the worker process
    zactor_t *broker;          //  the broker thread, with its sink
    char *inproc;              //  inproc://drover-XXXXXX/broker
    char *sink_inproc;         //  inproc://drover-XXXXXX/sink
    char reason[512];          //  why the last call failed
};

void
local_cluster_destroy (local_cluster_t **self_p)
{
    assert (self_p);
    local_cluster_t *self = *self_p;
    if (!self)
        return;
    local_cluster_stop (self, STOP_MS);
    drover_cluster_destroy (&self->cluster);
    free (self->inproc);
    free (self->sink_inproc);
    free (self);
    *self_p = NULL;
}

local_cluster_t *
local_cluster_start (const local_cluster_config_t *config, int timeout_ms,
                     char *error, size_t error_size)
{
    assert (config && config->exe);
    local_cluster_t *self = (local_cluster_t *)calloc (1, sizeof *self);
    if (!self || !(self->cluster = drover_cluster_new ())) {
        snprintf (error, error_size, "out of memory");
        free (self);
        return NULL;
    }
    drover_cluster_config_t cluster_config = {
        .exe = config->exe,
        .jobs = config->jobs,
        .worker_args = config->worker_args,
        .worker_arg_count = config->worker_arg_count,
        .verbose = config->verbose,
        .caller_runs_broker = true};
    if (drover_cluster_start (self->cluster, &cluster_config)) {
        snprintf (error, error_size, "%s",
                  drover_cluster_reason (self->cluster));
        local_cluster_destroy (&self);
        return NULL;
    }
    //  inproc names are per process: the directory's name is unique here
    const char *dir = drover_cluster_dir (self->cluster);
    const char *name = strrchr (dir, '/') ? strrchr (dir, '/') + 1 : dir;
    self->inproc = zsys_sprintf ("inproc://%s/broker", name);
    self->sink_inproc = zsys_sprintf ("inproc://%s/sink", name);
    assert (self->inproc && self->sink_inproc);

    drover_broker_config_t broker_config = drover_broker_config_default ();
    broker_config.endpoint = drover_cluster_endpoint (self->cluster);
    broker_config.sink_endpoint = drover_cluster_sink_endpoint (self->cluster);
    broker_config.local_endpoint = self->inproc;
    broker_config.sink_local_endpoint = self->sink_inproc;
    broker_config.verbose = config->verbose;
    broker_config.quiet = !config->verbose;
    broker_config.sink_same_thread = true;
    char *broker_error = NULL;
    self->broker = drover_broker_new (&broker_config, &broker_error);
    if (!self->broker) {
        snprintf (error, error_size, "the local broker cannot start: %s",
                  broker_error ? broker_error : "out of memory");
        free (broker_error);
        local_cluster_destroy (&self);
        return NULL;
    }
    if (drover_cluster_wait_ready (self->cluster, timeout_ms)) {
        snprintf (error, error_size, "%s",
                  drover_cluster_reason (self->cluster));
        local_cluster_destroy (&self);
        return NULL;
    }
    return self;
}

int
local_cluster_stop (local_cluster_t *self, int timeout_ms)
{
    assert (self);
    //  The worker first: draining, it still hands its results to the sink
    int rc = drover_cluster_stop (self->cluster, timeout_ms);
    if (rc)
        snprintf (self->reason, sizeof self->reason, "%s",
                  drover_cluster_reason (self->cluster));
    zactor_destroy (&self->broker);
    return rc;
}

int
local_cluster_connect (local_cluster_t *self, drover_client_t *client,
                       int timeout_ms)
{
    assert (self && client);
    int rc = drover_client_set_sink_endpoint (client, self->sink_inproc);
    return rc ? rc : drover_client_connect (client, self->inproc, timeout_ms);
}

const char *
local_cluster_endpoint (local_cluster_t *self)
{
    assert (self);
    return drover_cluster_endpoint (self->cluster);
}

int
local_cluster_check (local_cluster_t *self)
{
    assert (self);
    int rc = drover_cluster_check (self->cluster);
    if (rc)
        snprintf (self->reason, sizeof self->reason, "%s",
                  drover_cluster_reason (self->cluster));
    return rc;
}

const char *
local_cluster_reason (local_cluster_t *self)
{
    assert (self);
    return self->reason;
}
