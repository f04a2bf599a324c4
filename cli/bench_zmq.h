/*  bench_zmq.h - the ceiling of `drover bench`: the message flow of a task
    queue through plain ZeroMQ sockets, with no Drover logic, so that every
    Drover figure can be told as a fraction of what ZeroMQ itself allows on
    the machine.

    Two patterns, each with N worker processes (forked, each with its own
    ZeroMQ context, as Drover's children are processes) that echo every
    message they get to a collector:

    - push-pull: a producer thread PUSHes messages to the workers (PULL),
      which PUSH them on to the collector (PULL);
    - router-credit: a router thread (ROUTER) sends one message per credit
      to the workers (DEALER), each of which sends `credits` credits
      first, then one more after each result it PUSHes to the collector
      (PULL): the pull-based dispatch of Drover's broker (one credit: a
      child that asks for its next task when done, as a node without
      lookahead does).

    The collector is the calling thread. Both run over ipc (in a private
    directory, as the local cluster does) or tcp loopback. A warm-up round
    goes first; then the clock (CLOCK_MONOTONIC) runs from the moment the
    producer is told to send until the collector has every message.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLI_BENCH_ZMQ_H_INCLUDED
#define DROVER_CLI_BENCH_ZMQ_H_INCLUDED

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    BENCH_PUSH_PULL,     //  producer -> workers -> collector
    BENCH_ROUTER_CREDIT, //  credit-based load balancer
} bench_pattern_t;

typedef struct {
    bench_pattern_t pattern; //  which flow
    bool tcp;                //  tcp loopback; else ipc
    size_t payload;          //  octets per message
    size_t messages;         //  messages measured
    size_t warmup;           //  messages sent before the clock starts
    int workers;             //  worker processes
    int credits;             //  router-credit: credits each worker keeps
                             //  out (1: a task at a time, as a child)
} bench_zmq_config_t;

/*  "push-pull" or "router-credit". */
const char *bench_zmq_pattern_name (bench_pattern_t pattern);

/*  Runs one ceiling measurement. Returns 0 with *seconds_p set; or -1
    with a reason in error (what failed, and why). Stops early, with -1,
    when *stop becomes non-zero (a signal handler sets it). */
int bench_zmq_run (const bench_zmq_config_t *config,
                   const volatile sig_atomic_t *stop, double *seconds_p,
                   char *error, size_t error_size);

#endif
