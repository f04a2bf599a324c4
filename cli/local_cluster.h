/*  local_cluster.h - the private local cluster of `drover map -j N` and
    `drover bench`: the broker, with its embedded sink in the same thread,
    runs as a thread of this process, and one `drover worker` node with N
    children runs as a process of its own (client/drover_cluster.h starts
    and stops it).

    A client in this process reaches the broker and the sink over
    inproc://, so that a request crosses no ZeroMQ I/O thread on its way to
    the broker and a result none on its way back: over ipc:// each message
    wakes the sender's I/O thread, the receiver's I/O thread and then the
    receiver, three wake-ups where inproc has one; and a result's claim
    (sink to broker and back) wakes no thread at all. The node reaches the
    broker and the sink over ipc:// in the cluster's private directory, as
    any other process may (`drover map --connect`).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLI_LOCAL_CLUSTER_H_INCLUDED
#define DROVER_CLI_LOCAL_CLUSTER_H_INCLUDED

#include "drover_client.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct local_cluster_t local_cluster_t;

typedef struct {
    const char *exe;                /* the drover executable */
    int jobs;                       /* children of the node */
    const char *const *worker_args; /* more arguments for `drover worker` */
    size_t worker_arg_count;        /* how many */
    bool verbose;                   /* log every message; the worker's
                                       stdout to our stderr */
} local_cluster_config_t;

/*  Starts the broker and the worker, and waits up to timeout_ms until both
    listen and run. Returns the cluster, or NULL with the reason in error. */
local_cluster_t *local_cluster_start (const local_cluster_config_t *config,
                                      int timeout_ms, char *error,
                                      size_t error_size);

/*  Stops the worker (SIGTERM, SIGKILL after timeout_ms), then the broker,
    and removes the directory. Returns 0, or DROVER_ETIMEDOUT when the
    worker had to be killed. Idempotent. */
int local_cluster_stop (local_cluster_t *self, int timeout_ms);

/*  Stops the cluster (3 s), frees it, NULLs the pointer. NULL-safe. */
void local_cluster_destroy (local_cluster_t **self_p);

/*  Connects client (new, not connected) to the broker and the sink over
    inproc. Returns what drover_client_connect returns. */
int local_cluster_connect (local_cluster_t *self, drover_client_t *client,
                           int timeout_ms);

/*  The broker's ipc:// endpoint, for other processes. */
const char *local_cluster_endpoint (local_cluster_t *self);

/*  Returns 0 while the worker runs, else DROVER_ECONNECT, with the reason
    in local_cluster_reason ("the local worker exited with status 1"). */
int local_cluster_check (local_cluster_t *self);

/*  Why the last call failed, in words. */
const char *local_cluster_reason (local_cluster_t *self);

#endif
