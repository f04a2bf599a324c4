/*  drover_cluster.h - a private local cluster, for `drover map -j N`
    without --connect: a broker (with its embedded sink) and one worker
    node with N children, run from the drover executable itself, reached
    over ipc:// endpoints in a new private directory.

    Nothing outlives the process that started the cluster: the broker and
    the worker get PR_SET_PDEATHSIG (SIGKILL) and their own process groups
    (so a Ctrl-C on the terminal reaches only the client, which tears the
    cluster down in order). drover_cluster_stop sends SIGTERM, waits up to
    a deadline, then SIGKILLs the process groups, and removes the
    directory. A directory left behind by a client killed with SIGKILL is
    removed by the next start (it names its owner's pid in DIR/owner).
    Internal to the drover tool; not installed.

    PR_SET_PDEATHSIG fires when the thread that started the cluster ends:
    start it from the thread that lives longest (the main thread).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLUSTER_H_INCLUDED
#define DROVER_CLUSTER_H_INCLUDED

#include "drover_error.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct drover_cluster_t drover_cluster_t;

/*  How to start a cluster. */
typedef struct {
    const char *exe;                /* the drover executable to run */
    int jobs;                       /* children of the worker node */
    const char *const *worker_args; /* more arguments for `drover worker` */
    size_t worker_arg_count;        /* how many */
    bool verbose;                   /* pass -v; their stdout to our stderr */
    bool caller_runs_broker;        /* start the worker only: the caller
                                       runs the broker (a thread of its own
                                       process) bound at the endpoints of
                                       drover_cluster_endpoint and
                                       drover_cluster_sink_endpoint */
} drover_cluster_config_t;

/*  Creates a cluster, not started. Returns NULL when out of memory. */
drover_cluster_t *drover_cluster_new (void);

/*  Stops the cluster if it runs (drover_cluster_stop with 3 s), frees it,
    and NULLs the pointer. NULL-safe. */
void drover_cluster_destroy (drover_cluster_t **self_p);

/*  Makes the private directory and starts `exe broker --listen
    ipc://DIR/broker --sink-listen ipc://DIR/sink` and `exe worker
    --connect ipc://DIR/broker -j JOBS [worker_args]`. Their stdin and
    stdout are /dev/null (stdout goes to our stderr when verbose); their
    stderr is ours. Returns 0, or DROVER_ESYSTEM when it could not make
    the directory or run exe (drover_cluster_reason says why). */
int drover_cluster_start (drover_cluster_t *self,
                          const drover_cluster_config_t *config);

/*  Gives the broker more arguments (`--data DIR --fsync never`...), for
    the next drover_cluster_start; args must stay valid until then. */
void drover_cluster_set_broker_args (drover_cluster_t *self,
                                     const char *const *args, size_t count);

/*  Waits until the broker and the sink listen (their ipc sockets exist).
    Returns 0; DROVER_ECONNECT when the broker or worker exited meanwhile;
    DROVER_ETIMEDOUT after timeout_ms or when a signal came. */
int drover_cluster_wait_ready (drover_cluster_t *self, int timeout_ms);

/*  The broker's endpoint, to connect a client to, and its sink's (NULL
    before start). */
const char *drover_cluster_endpoint (drover_cluster_t *self);
const char *drover_cluster_sink_endpoint (drover_cluster_t *self);

/*  Returns 0 while the broker (unless the caller runs it) and the worker
    run, else DROVER_ECONNECT,
    with the reason ("the local worker exited with status 1"). */
int drover_cluster_check (drover_cluster_t *self);

/*  Stops the cluster: SIGTERM to the worker, then to the broker, waiting
    up to timeout_ms in all; then SIGKILL to what is left (their whole
    process groups); removes the directory. Idempotent. Returns 0, or
    DROVER_ETIMEDOUT when something had to be killed. */
int drover_cluster_stop (drover_cluster_t *self, int timeout_ms);

/*  Why the last call failed, in words. */
const char *drover_cluster_reason (drover_cluster_t *self);

/*  The pid of the broker (index 0) or the worker (index 1), or 0 when it
    is not running (or the caller runs the broker); and the private directory (NULL before start). */
pid_t drover_cluster_pid (drover_cluster_t *self, size_t index);
const char *drover_cluster_dir (drover_cluster_t *self);

#endif
