/*  child.h - one child process of a node, seen from the supervisor: how it
    is forked, how a task is written to it and its outcome read back, all
    without blocking, and how it is killed. The same file holds the task
    loop the child runs after fork.

    The supervisor reaps children itself (waitpid on SIGCHLD): child_t
    never waits.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CHILD_H_INCLUDED
#define DROVER_CHILD_H_INCLUDED

#include "worker_private.h"
#include <czmq.h>
#include <sys/types.h>

//  Internal to libdrover: not exported from the shared library
#pragma GCC visibility push(hidden)

typedef struct child_t child_t;

//  What child_send, child_flush and child_receive return.
typedef enum {
    CHILD_DONE = 0, //  the task is written
    CHILD_AGAIN,    //  the channel is busy: poll and call again
    CHILD_OUTCOME,  //  an outcome was read
    CHILD_EOF,      //  the channel is closed: the child is dead or dying
    CHILD_EPROTO,   //  the child sent something malformed
    CHILD_SKIPPED,  //  the child did not start the task (child_skip)
} child_status_t;

//  The outcome of one task, as the child reports it.
typedef struct {
    uint64_t id;               //  task id
    uint32_t attempt;          //  attempt number
    int32_t code;              //  0 or a DROVER_E* code
    int32_t signal;            //  signal that killed an exec command
    int32_t exit_status;       //  exit status of an exec command
    uint64_t max_rss_kb;       //  peak memory of the child or command
    uint64_t cpu_us;           //  CPU time of the task (child and its commands)
    uint64_t cpu_total_us;     //  CPU time of the child since its fork
    uint64_t child_max_rss_kb; //  peak memory of the child process itself
    char *reason;              //  failure message (no NUL inside), or NULL
    zframe_t *payload;         //  result octets (success), or NULL
} child_outcome_t;

//  Forks a child that runs tasks with the handlers of config, which must
//  outlive it. The child leads its own process group, has default signal
//  dispositions, and when the supervisor dies (PR_SET_PDEATHSIG) it kills
//  its whole group: itself and the commands it runs. Returns NULL (and
//  logs why) when fork or pipe fails.
child_t *child_new (const worker_config_t *config);

//  Closes the supervisor's end of the channel and frees the object. The
//  process is neither killed nor reaped. NULL-safe.
void child_destroy (child_t **self_p);

//  The child's pid, which is also its process group id.
pid_t child_pid (child_t *self);

//  The fd to poll for input (outcomes, end of file).
int child_fd (child_t *self);

//  The fd tasks are written to (the child's task pipe), to poll for
//  output while child_writing is true.
int child_wfd (child_t *self);

//  Tasks a child may have been sent without their outcomes: the one it
//  runs and those waiting in its channel (the supervisor pipelines short
//  tasks).
#define CHILD_MAX_TASKS 64

//  Starts writing a task to the child: header (type CHAN_TASK) and
//  payload, which must stay valid until the write completes. No other
//  task may be being written, and fewer than CHILD_MAX_TASKS may wait for
//  their outcomes (the child runs them in order). Returns CHILD_DONE,
//  CHILD_AGAIN (poll child_wfd, then child_flush) or CHILD_EOF.
int child_send (child_t *self, uint64_t id, uint32_t attempt, uint32_t handler,
                uint32_t items, uint64_t max_result, const void *payload,
                size_t size);

//  Goes on writing the task. Returns as child_send.
int child_flush (child_t *self);

//  True while a task is partly written.
bool child_writing (child_t *self);

//  Tasks sent whose outcome has not come.
size_t child_sent (child_t *self);

//  Asks the child not to start task (id, attempt), sent after the one it
//  runs (any of those waiting), if it has not started it yet: child_receive then gives either
//  CHILD_SKIPPED or its outcome. Nothing may be being written. Returns as
//  child_send.
int child_skip (child_t *self, uint64_t id, uint32_t attempt);

//  Reads what the channel has. Returns CHILD_OUTCOME with *outcome filled
//  (free it with child_outcome_reset), CHILD_AGAIN, CHILD_EOF, or
//  CHILD_EPROTO for a frame that is not the outcome of the task sent.
int child_receive (child_t *self, child_outcome_t *outcome);

//  Frees what an outcome holds.
void child_outcome_reset (child_outcome_t *outcome);

//  Sends SIGKILL to the child's whole process group (it and any command
//  it runs).
void child_kill (child_t *self);

//  Sends SIGTERM to the child's whole process group: the soft time limit.
//  An in-process handler dies of it unless it catches it; while an exec
//  handler runs, the child ignores it and only the command gets it, so the
//  child can report how the command ended.
void child_terminate (child_t *self);

#pragma GCC visibility pop

#endif
