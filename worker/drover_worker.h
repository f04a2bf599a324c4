/*  drover_worker.h - run a Drover worker node: a supervisor process that
    pre-forks N children, asks the broker for tasks, runs each task in a
    child and sends the outcome on (proto/SPEC.md, the node role).

    A program embeds handlers like this:

        static int
        s_upper (const void *input, size_t size, drover_output_t *output,
                 void *arg)
        {
            char *text = malloc (size ? size : 1);
            if (!text)
                return drover_output_fail (output, "out of memory");
            for (size_t i = 0; i < size; i++)
                text[i] = toupper (((const unsigned char *) input)[i]);
            int rc = drover_output_write (output, text, size);
            free (text);
            return rc;
        }

        drover_worker_t *worker = drover_worker_new ();
        drover_worker_set_endpoint (worker, "tcp://127.0.0.1:5555");
        drover_worker_add_handler (worker, "upper", s_upper, NULL);
        int rc = drover_worker_run (worker);     //  until SIGTERM
        drover_worker_destroy (&worker);

    Handlers run in child processes, one task at a time per child, never in
    the supervisor: a handler may block, crash or leak without hurting the
    node. A handler must not call exit() (return a failure instead) and
    must not touch ZeroMQ sockets created before drover_worker_run.

    Every function that can fail returns 0 or a negative DROVER_E* code
    (drover_error.h); drover_strerror() describes it.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_WORKER_H_INCLUDED
#define DROVER_WORKER_H_INCLUDED

#include "drover_error.h"
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*  A worker node: its settings and the handlers it runs. */
typedef struct drover_worker_t drover_worker_t;

/*  Where a handler puts its result, or its failure message. */
typedef struct drover_output_t drover_output_t;

/*  A C handler. It runs in a child process with the task's payload as
    input (size octets; input is never NULL) and arg as registered.
    Returns 0 when the task succeeded: the octets written to output are
    its result. Any other return value fails the attempt (DROVER_EFAILED)
    with the message given to drover_output_fail, if any. */
typedef int (drover_handler_fn) (const void *input, size_t size,
                                 drover_output_t *output, void *arg);

/*  Limits of the settings below. */
#define DROVER_WORKER_MAX_CHILDREN  4096 /* children of one node */
#define DROVER_WORKER_MAX_LOOKAHEAD 4096 /* tasks held beyond children */
#define DROVER_WORKER_MAX_HANDLERS  4096 /* handlers of one node */
#define DROVER_WORKER_MAX_QUEUES    4096 /* queues one node serves */

/*  Creates a node with default settings: broker tcp://127.0.0.1:5555, one
    child per CPU, automatic lookahead, children never retired, name host:pid, the
    default queue, drain deadline 60 s, kill grace 5 s, no memory limit,
    no handlers. Returns NULL when out
    of memory. */
drover_worker_t *drover_worker_new (void);

/*  Destroys the node and NULLs the pointer. NULL-safe. */
void drover_worker_destroy (drover_worker_t **self_p);

/*  Sets the broker's endpoint, e.g. "tcp://127.0.0.1:5555". Returns
    DROVER_EINVAL when it is not of the form TRANSPORT://ADDRESS. */
int drover_worker_set_endpoint (drover_worker_t *self, const char *endpoint);

/*  Sets how many children run tasks, 1 to DROVER_WORKER_MAX_CHILDREN. */
int drover_worker_set_children (drover_worker_t *self, unsigned children);

/*  Sets how many tasks the node may hold beyond one per child, 0 to
    DROVER_WORKER_MAX_LOOKAHEAD (0 is fairest: a queued task never waits
    behind a slow one), or DROVER_WORKER_LOOKAHEAD_AUTO (the default): one
    per child while the node's recent tasks are short (a moving average
    under DROVER_WORKER_SHORT_TASK_MS), so that no child waits for a round
    trip to the broker between short tasks, and none while they are long,
    where that round trip costs nothing and fairness matters. */
#define DROVER_WORKER_LOOKAHEAD_AUTO 0xFFFFFFFFu
#define DROVER_WORKER_SHORT_TASK_MS  100
int drover_worker_set_lookahead (drover_worker_t *self, unsigned lookahead);

/*  Replaces each child after it has run this many tasks; 0 never does
    (like multiprocessing's maxtasksperchild). */
int drover_worker_set_max_tasks_per_child (drover_worker_t *self,
                                           unsigned tasks);

/*  When batch is true (the default) and the node runs under the kernel's
    normal policy (SCHED_OTHER), its children, and the commands they start,
    run under SCHED_BATCH. Both share the CPU alike; a batch process only
    never preempts a normal one when it wakes up, so a child given a task
    does not push the supervisor off its core while the supervisor feeds
    the other children and sends results on. With false, or when the node
    runs under another policy (e.g. started with chrt), the children keep
    the node's. Pass false for handlers that should run the moment they
    wake up on a busy machine. */
int drover_worker_set_batch_children (drover_worker_t *self, bool batch);

/*  Sets how long a drain (SIGTERM, or DRAIN from the broker) may take
    before the node kills its children and leaves; 0 waits for ever. */
int drover_worker_set_drain_timeout (drover_worker_t *self, unsigned msecs);

/*  Sets how long a task that passed its soft time limit (SIGTERM) may take
    to end before its process group is killed (SIGKILL), when the task has
    no hard limit of its own. Default 5000 ms; 0 kills at the soft limit. */
int drover_worker_set_kill_grace (drover_worker_t *self, unsigned msecs);

/*  Limits the resident memory of each child, with the commands it runs
    (its whole process group), to kbytes KiB; 0, the default, sets no
    limit. The node checks a running task at least every 100 ms: over the
    limit, the group is killed, the child replaced and the attempt fails
    with DROVER_EMEMLIMIT. A child whose own peak passed the limit during
    a task that finished is replaced after it. */
int drover_worker_set_max_memory_per_child (drover_worker_t *self,
                                            unsigned long long kbytes);

/*  Sets the node's name in the broker's logs and stats: 1 to 255
    printable ASCII characters, no space. Default: host:pid. */
int drover_worker_set_name (drover_worker_t *self, const char *name);

/*  Adds a queue the node serves (a name, as above). With none it serves
    the queue "default". */
int drover_worker_add_queue (drover_worker_t *self, const char *queue);

/*  Logs every message sent and received when verbose is true. */
void drover_worker_set_verbose (drover_worker_t *self, bool verbose);

/*  Registers a C handler under name (a name, as above). Returns
    DROVER_EINVAL when name is taken or invalid. */
int drover_worker_add_handler (drover_worker_t *self, const char *name,
                               drover_handler_fn *fn, void *arg);

/*  Registers a handler that runs command through /bin/sh -c for each task,
    with the payload on its standard input; its standard output is the
    result. A non-zero exit fails the attempt (DROVER_EFAILED) with the
    exit status and the tail of its standard error; death by a signal is
    DROVER_ECRASHED. Clients name the handler, never the command. */
int drover_worker_add_exec (drover_worker_t *self, const char *name,
                            const char *command);

/*  Registers the built-in handler builtin under name:
        echo    returns the payload
        sleep   sleeps for the payload's number of milliseconds, returns it
        fail    fails with the payload as the message
        crash   the child aborts (SIGABRT), for tests
        sha256  returns the lowercase hex SHA-256 of the payload
    Returns DROVER_EHANDLER when there is no such built-in. */
int drover_worker_add_builtin (drover_worker_t *self, const char *name,
                               const char *builtin);

/*  Registers every built-in under its own name, skipping names already
    taken. */
int drover_worker_add_builtins (drover_worker_t *self);

/*  Runs the node until it is told to stop: SIGTERM, SIGINT or DRAIN from
    the broker drain it (no new tasks; leased tasks finish and their
    outcomes are delivered; then BYE) and it returns 0. A second signal, or
    the drain deadline, kills the children and returns DROVER_ESHUTDOWN.
    Returns DROVER_EINVAL without handlers or with an endpoint ZeroMQ
    refuses, DROVER_ESYSTEM when a system call fails. While it runs it
    blocks SIGCHLD, SIGTERM and SIGINT in the calling thread (the mask is
    restored when it returns), reaps every child process and orphaned
    descendant of the process (PR_SET_CHILD_SUBREAPER), and logs through
    CZMQ (zsys_*). Call it from the main thread before creating ZeroMQ
    sockets elsewhere, and fork nothing else you want to wait for. */
int drover_worker_run (drover_worker_t *self);

/*  Appends size octets to the handler's result. Returns DROVER_ETOOBIG
    when the result would pass the cluster's largest payload, then the
    attempt fails with DROVER_ETOOBIG whatever the handler returns. */
int drover_output_write (drover_output_t *output, const void *data,
                         size_t size);

/*  Sets the failure message of the attempt (printf format; truncated to
    4096 octets) and returns DROVER_EFAILED, so a handler can say
    `return drover_output_fail (output, "no such file: %s", path);`. */
int drover_output_fail (drover_output_t *output, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
