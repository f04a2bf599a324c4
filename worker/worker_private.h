/*  worker_private.h - what the modules of worker/ share and the public
    header does not show: the handler table, the node's settings and the
    output buffer a handler writes to.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_WORKER_PRIVATE_H_INCLUDED
#define DROVER_WORKER_PRIVATE_H_INCLUDED

#include "drover_worker.h"
#include <stdint.h>

//  Internal to libdrover: not exported from the shared library
#pragma GCC visibility push(hidden)

typedef enum {
    HANDLER_FUNCTION, //  a C function (built-ins are C functions too)
    HANDLER_EXEC,     //  a shell command run per task
} handler_kind_t;

//  One handler a node runs.
typedef struct {
    char *name;            //  what clients call it: a DTP name
    handler_kind_t kind;   //  how a child runs it
    drover_handler_fn *fn; //  HANDLER_FUNCTION: the function
    void *arg;             //  HANDLER_FUNCTION: its last argument
    char *command;         //  HANDLER_EXEC: the command for /bin/sh -c
} handler_t;

//  The settings of a node, fixed while it runs. The children get a copy of
//  it when they are forked.
typedef struct {
    char *endpoint;               //  the broker's endpoint
    char *name;                   //  node name for HELLO and FAIL, host:pid
    uint32_t children;            //  children to keep running
    uint32_t lookahead;           //  tasks held beyond one per child
    bool lookahead_auto;          //  lookahead: one per child while tasks
                                  //  are short, else none (node.c)
    uint32_t max_tasks_per_child; //  retire a child after this many; 0: never
    uint32_t drain_timeout_ms;    //  drain deadline; 0: none
    uint32_t kill_grace_ms;       //  soft limit to SIGKILL without a hard one
    uint64_t max_memory_kb;       //  resident memory of a child's process
                                  //  group that kills it; 0: no limit
    bool batch_children;          //  children run under SCHED_BATCH
    bool verbose;                 //  trace every message
    handler_t *handlers;          //  the handler table, in registration order
    size_t handler_count;         //  entries in handlers
    char **queues;                //  queues served; none: "default"
    size_t queue_count;           //  entries in queues
} worker_config_t;

//  A handler's result buffer (drover_output_write) or failure message.
struct drover_output_t {
    uint8_t *data;   //  the result so far (malloc'd), or NULL
    size_t size;     //  octets in data
    size_t capacity; //  octets allocated for data
    size_t limit;    //  largest result the supervisor accepts
    int error;       //  DROVER_ETOOBIG or DROVER_ENOMEM once a write
                     //  failed: the attempt fails with it
    char *message;   //  failure message (malloc'd), or NULL
};

//  Prepares an empty output that accepts up to limit octets.
void output_init (drover_output_t *self, size_t limit);

//  Empties the output but keeps its buffer, for the next input of a chunk.
void output_clear (drover_output_t *self);

//  Frees what the output holds and empties it.
void output_reset (drover_output_t *self);

//  True when name is a valid DTP name: 1 to 255 octets of 0x21..0x7E.
bool worker_name_valid (const char *name);

#pragma GCC visibility pop

#endif
