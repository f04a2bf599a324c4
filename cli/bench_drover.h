/*  bench_drover.h - the Drover side of `drover bench`: a cluster to
    measure (a private local one, started from the drover executable, or a
    running one reached with --connect), and the workloads run on it.

    Every task is its own task (its own id, lease and result) and every
    result is checked: a failed task, or an echo that does not give back
    its payload, fails the measurement. Times are CLOCK_MONOTONIC.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLI_BENCH_DROVER_H_INCLUDED
#define DROVER_CLI_BENCH_DROVER_H_INCLUDED

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bench_drover_t bench_drover_t;

/*  Where to measure. */
typedef struct {
    const char *endpoint;              /* a running cluster; NULL: local */
    const char *exe;                   /* local: the drover executable */
    int jobs;                          /* local: children of its node */
    bool broker_process;               /* local: the broker runs as a
                                          process of its own (to measure
                                          its memory, or with broker_args),
                                          not as a thread of this one */
    const char *const *broker_args;    /* local: more broker arguments */
    size_t broker_arg_count;           /* how many */
    int timeout_ms;                    /* connect and request timeout */
    const volatile sig_atomic_t *stop; /* set by a signal: give up */
} bench_drover_config_t;

/*  Starts a local cluster (and waits until it listens) or connects to a
    running one. Returns NULL with the reason in error. */
bench_drover_t *bench_drover_new (const bench_drover_config_t *config,
                                  char *error, size_t error_size);

/*  Stops a local cluster, disconnects, frees, and NULLs the pointer.
    NULL-safe. */
void bench_drover_destroy (bench_drover_t **self_p);

/*  The broker's endpoint. */
const char *bench_drover_endpoint (bench_drover_t *self);

/*  The largest payload the cluster accepts. */
uint64_t bench_drover_max_payload (bench_drover_t *self);

/*  Why the last call failed, in words. */
const char *bench_drover_reason (bench_drover_t *self);

/*  The children of all nodes of the cluster, as its broker counts them.
    Returns 0, or -1 (see bench_drover_reason). */
int bench_drover_children (bench_drover_t *self, long *children_p);

/*  A batch of tasks: tasks times handler on the same payload. */
typedef struct {
    const char *handler; /* "echo", "sleep" */
    const void *payload; /* the input of every task */
    size_t payload_size; /* its size */
    size_t tasks;        /* how many tasks (inputs, with chunks) */
    size_t window;       /* most tasks in flight (drover_map's window) */
    uint32_t chunksize;  /* drover_map's chunksize: 0, N or
                            DROVER_MAP_CHUNK_AUTO */
} bench_load_t;

/*  Runs the tasks through drover_map (unordered, batched submits) and
    waits for every result. Returns 0 with the time from the first submit
    to the last result in *seconds_p; or -1 (see bench_drover_reason). */
int bench_drover_map (bench_drover_t *self, const bench_load_t *load,
                      double *seconds_p);

/*  Runs echo tasks one at a time (submit, then wait for the result):
    warmup of them, then count whose round trips (submit to result, at the
    client) go to samples_us, in microseconds. Returns 0 or -1. */
int bench_drover_latency (bench_drover_t *self, size_t warmup, size_t count,
                          double *samples_us);

/*  Submits tasks echo tasks of payload_size octets to a queue no node
    serves, so that they stay queued (for the broker's memory). Returns 0
    or -1. */
int bench_drover_fill (bench_drover_t *self, size_t tasks, size_t payload_size);

/*  The resident memory of the local cluster's broker process, in KiB; -1
    when there is none (--connect, or not broker_process) or /proc cannot
    tell. */
long bench_drover_broker_rss_kb (bench_drover_t *self);

/*  A `drover map -j JOBS` process to measure, on its own local cluster. */
typedef struct {
    const char *exe;                   /* the drover executable */
    int jobs;                          /* children of its cluster */
    size_t lines;                      /* numbered input lines */
    const char *chunksize;             /* --chunksize */
    const volatile sig_atomic_t *stop; /* set by a signal: give up */
} bench_map_process_t;

/*  Runs `exe map -j JOBS --chunksize CHUNKSIZE echo` on lines numbered lines, checks that as many come out, and
    gives its peak resident memory (KiB: of the process that holds its
    local broker and sink, not of its worker) and its time. Returns 0, or
    -1 with the reason in error. */
int bench_drover_map_process (const bench_map_process_t *map, long *peak_kb,
                              double *seconds_p, char *error,
                              size_t error_size);

/*  A new private directory for a durable broker's --data; caller frees
    it after bench_drover_remove_dir. NULL with the reason in error. */
char *bench_drover_make_dir (char *error, size_t error_size);

/*  Removes a directory and everything in it. */
void bench_drover_remove_dir (const char *path);

#endif
