/*  drover_map.h - run one handler over a stream of inputs, like Python's
    Pool.imap (ordered) and Pool.imap_unordered.

    The map pulls inputs from a callback only while fewer than `window`
    tasks are in flight (read but not yet handed back), so inputs far larger
    than memory stream through in bounded space; it submits them in batches,
    watches their results on the sink, heartbeats the sink while waiting,
    backs off and retries when the broker answers DROVER_EFULL, and
    submits its tasks again (same ids) when the broker restarts.

        static int
        s_next_line (void *arg, drover_payload_t *input)
        {   //  1: an input; 0: no more; DROVER_ETIMEDOUT: none ready yet
            ...
        }

        drover_map_options_t options = {.window = 1000, .ordered = true};
        drover_map_t *map =
            drover_map_new (client, "sha256", &options, s_next_line, &reader);
        drover_result_t *result;
        while (drover_map_next (map, -1, &result) == 0 && result) {
            //  result->index is the input's index; result->code its outcome
            drover_result_destroy (&result);
        }
        drover_map_destroy (&map);

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_MAP_H_INCLUDED
#define DROVER_MAP_H_INCLUDED

#include "drover_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drover_map_t drover_map_t;
typedef struct drover_job_t drover_job_t;

/*  Chunk sizes (drover_map_options_t.chunksize): automatic, and the most
    inputs of one chunk in automatic mode. */
#define DROVER_MAP_CHUNK_AUTO     0xFFFFFFFFu
#define DROVER_MAP_AUTO_MAX_ITEMS 4096
#define DROVER_MAP_MAX_CHUNKSIZE  1048576 /* the protocol's most items */

/*  Options of a map. A zeroed struct gives the defaults. */
typedef struct {
    drover_task_options_t task; /* options of every task */
    size_t window;              /* most tasks in flight; 0: 1000 */
    bool ordered;               /* hand results back in input order */
    drover_job_t *job;          /* a job log (drover_job.h), or NULL: inputs
                                   with a logged result are not run again
                                   (see drover_map_from_log); must outlive
                                   the map */
    uint32_t chunksize;         /* inputs per task, like Pool.map's
                                   chunksize (SPEC.md 7.7): 0 or 1: one
                                   task per input; N: up to N (fewer when
                                   the input pauses or a chunk would pass
                                   the payload limit); DROVER_MAP_CHUNK_AUTO:
                                   one input per task until results tell
                                   the time an input takes, then chunks of
                                   about 10 ms of work (at most 16 KiB of
                                   input and DROVER_MAP_AUTO_MAX_ITEMS
                                   inputs). An input of a chunk shares its
                                   chunk's id, attempt and times; the chunk
                                   is retried as a whole. A chunk that
                                   fails for good because its child crashed
                                   or passed a time or memory limit is
                                   split: each of its inputs runs again as
                                   a task of its own (at most `window` at a
                                   time, with these options), and each
                                   input's result is its own task's. A job
                                   log needs a fixed size (the same on
                                   every run). */
} drover_map_options_t;

/*  Gives the map its next input. Fill *input and return 1; return 0 when
    there are no more inputs; return DROVER_ETIMEDOUT when none is ready
    yet (the map asks again when the fd given to drover_map_set_input_fd
    is readable, or soon if none was given); any other negative code stops
    the map, and drover_map_next returns it. The octets must stay valid
    until the next call: the map copies them. */
typedef int (drover_map_input_fn) (void *arg, drover_payload_t *input);

/*  Creates a map of handler over the inputs input_fn gives, on a connected
    client, which must outlive the map. options may be NULL. Returns NULL
    for an invalid handler or queue name or retry_on set, a chunksize over
    DROVER_MAP_MAX_CHUNKSIZE or automatic with a job log, a client that
    is not connected, or when out of memory. */
drover_map_t *drover_map_new (drover_client_t *client, const char *handler,
                              const drover_map_options_t *options,
                              drover_map_input_fn *input_fn, void *arg);

/*  Destroys a map and NULLs the pointer. Tasks still in flight keep
    running (drover_map_cancel stops them); their results are dropped.
    NULL-safe. */
void drover_map_destroy (drover_map_t **self_p);

/*  Tells the map that input_fn's inputs come from fd, so that after
    input_fn said DROVER_ETIMEDOUT the map waits for fd to become readable
    while it waits for results. */
void drover_map_set_input_fd (drover_map_t *self, int fd);

/*  Waits up to timeout_ms for the next result: in input order if the map
    is ordered, else in the order results come. Returns 0 with *result_p
    set (caller owns it), or 0 with *result_p NULL when every input has had
    its result. A task that failed is a result with a negative code, not an
    error. Returns DROVER_ETIMEDOUT when the timeout passed (call again);
    other codes stop the map: the input callback's error, DROVER_ECONNECT
    when the broker stopped answering, DROVER_EPROTO for a broken peer. */
int drover_map_next (drover_map_t *self, int timeout_ms,
                     drover_result_t **result_p);

/*  Stops the map: reads no more inputs, and cancels the tasks in flight
    (waiting up to timeout_ms for the broker to accept them and answer).
    Their results (DROVER_ECANCELLED, or a result that was faster) still
    come through drover_map_next. */
int drover_map_cancel (drover_map_t *self, int timeout_ms);

/*  Inputs read so far, results handed back so far (one per input, with
    chunks too), and tasks in flight (read and not handed back), for
    progress reports. */
uint64_t drover_map_inputs (drover_map_t *self);
uint64_t drover_map_outputs (drover_map_t *self);
size_t drover_map_in_flight (drover_map_t *self);

/*  Tasks the map submitted again, under their ids, because the broker
    restarted and lost them (SPEC.md 7.6): the map keeps the input of
    every task in flight until its result comes (so memory is bounded by
    the window times the largest input), and hands back exactly one
    result per input all the same. */
uint64_t drover_map_resubmitted (drover_map_t *self);

/*  With a job log: results handed back from the log (not run), one per
    input (a chunk's inputs each count), and tasks of the log without a
    logged result that the broker or the sink still held (their results
    came without a new run). Tasks that neither held were submitted again
    under their ids (drover_map_resubmitted). */
uint64_t drover_map_from_log (drover_map_t *self);
uint64_t drover_map_found (drover_map_t *self);

#ifdef __cplusplus
}
#endif

#endif
