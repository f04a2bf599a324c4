/*  node.h - the supervisor of a worker node: the only process of a node
    that speaks DTP (proto/SPEC.md, the node role). One zloop reactor
    serves the broker DEALER, the sink DEALER, the children's channels,
    a signalfd (SIGCHLD, SIGTERM, SIGINT) and a timer; it never runs a
    task and never blocks on a child, so heartbeats go on while tasks run.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_NODE_H_INCLUDED
#define DROVER_NODE_H_INCLUDED

#include "worker_private.h"

//  Internal to libdrover: not exported from the shared library
#pragma GCC visibility push(hidden)

typedef struct node_t node_t;

//  Creates a node with the settings of config, which must outlive it and
//  have at least one handler and a name. Returns NULL when out of memory.
node_t *node_new (const worker_config_t *config);

//  Destroys the node. NULL-safe.
void node_destroy (node_t **self_p);

//  Runs the node until it has drained (returns 0) or was stopped hard
//  (DROVER_ESHUTDOWN), or fails to start (DROVER_EINVAL for an endpoint
//  ZeroMQ refuses, DROVER_ESYSTEM). Call once.
int node_run (node_t *self);

#pragma GCC visibility pop

#endif
