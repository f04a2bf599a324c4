/*  drover_client.h - libdrover's client: a session with a Drover cluster.

    A client connects to the broker (the only endpoint a user configures),
    learns the sink's endpoint from it, and then submits tasks, waits for
    their results, asks their state, cancels them, reads the cluster's
    counters, and lists and retries dead letters. To run one handler over a stream of inputs, see drover_map.h.

        drover_client_t *client = drover_client_new ();
        if (drover_client_connect (client, "tcp://127.0.0.1:5555", 5000) == 0
            && drover_client_submit (client, "echo", "hi", 2, NULL, &id) == 0
            && drover_client_wait (client, &id, 1, -1, true, &result) == 0)
            printf ("%.*s\n", (int) result->payload_size, result->payload);
        drover_result_destroy (&result);
        drover_client_destroy (&client);

    Every function that can fail returns 0 or a negative DROVER_E* code
    (drover_error.h); drover_client_reason tells what went wrong in words.
    A client belongs to one thread; it never starts threads of its own and
    does its network work (heartbeats included) inside the calls that wait.
    Timeouts are in milliseconds: -1 waits for ever, 0 does not wait. A
    wait that a signal interrupts returns DROVER_ETIMEDOUT early.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLIENT_H_INCLUDED
#define DROVER_CLIENT_H_INCLUDED

#include "drover_error.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drover_client_t drover_client_t;

/*  Options of submitted tasks. A zeroed struct (or NULL where a function
    takes a pointer) gives the defaults (SPEC.md 5.6, 7.4, 7.5). */
typedef struct {
    const char *queue;           /* queue name; NULL: "default" */
    uint64_t timeout_ms;         /* hard time limit of one attempt (SIGKILL);
                                    0: none */
    uint32_t max_attempts;       /* attempts allowed to a failing task; 0:
                                    the broker's default (1: no retry) */
    uint64_t soft_timeout_ms;    /* soft time limit of one attempt (SIGTERM
                                    to the child's process group); 0: none */
    uint64_t retry_delay_ms;     /* backoff before the first retry, doubled
                                    for each further one; 0: the broker's
                                    default */
    uint64_t retry_max_delay_ms; /* cap of that backoff; 0: the broker's */
    uint64_t retry_on;           /* the failure codes that retry: bit N for
                                    code -N (drover_retry_on_parse makes
                                    one); 0: failed, crashed, timelimit and
                                    memlimit */
} drover_task_options_t;

/*  Parses a set of failure codes for drover_task_options_t.retry_on from
    text: comma-separated names, each a code's short name in any case
    ("failed", "crashed", "timelimit", "memlimit", "lost", "handler"...:
    drover_strcode without "DROVER_E"), its full name ("DROVER_EFAILED"),
    "timeout" (the same as timelimit) or "default" (the broker's default
    set). Returns 0 and sets *retry_on_p; or DROVER_EINVAL for an empty
    text or name or an unknown name, with *bad_p (when bad_p is not NULL)
    at the start of the name that is wrong, in text. */
int drover_retry_on_parse (const char *text, uint64_t *retry_on_p,
                           const char **bad_p);

/*  Some octets: a task's input. */
typedef struct {
    const void *data; /* the octets; may be NULL when size is 0 */
    size_t size;      /* how many */
} drover_payload_t;

/*  The outcome of a task. Caller owns it: drover_result_destroy. */
typedef struct {
    uint64_t index;       /* drover_map: index of the input, from 0; else 0 */
    uint64_t id;          /* the task; 0 if the broker never accepted it */
    int code;             /* 0: success; else a DROVER_E* code */
    const char *reason;   /* why it failed (stderr tail...), or NULL */
    uint32_t attempt;     /* the attempt that produced this outcome */
    const char *node;     /* node that ran that attempt, or NULL */
    uint64_t elapsed_us;  /* run time of that attempt */
    int signal;           /* signal that killed the child, or 0 */
    int exit_status;      /* exit status of an exec handler, or 0 */
    uint64_t max_rss_kb;  /* peak memory of the child, or 0 */
    uint64_t cpu_us;      /* user + system CPU time of that attempt */
    const void *payload;  /* the result octets (empty for failures) */
    size_t payload_size;  /* how many */
    void *private_frame_; /* the library's: holds the payload octets */
} drover_result_t;

/*  Destroys a result and NULLs the pointer. NULL-safe. */
void drover_result_destroy (drover_result_t **self_p);

/*  Task states, as drover_status_t reports them (SPEC.md 5.9). */
typedef enum {
    DROVER_TASK_UNKNOWN = 0,   /* neither the broker nor the sink knows it */
    DROVER_TASK_QUEUED = 1,    /* waiting for a node */
    DROVER_TASK_LEASED = 2,    /* an attempt runs on a node */
    DROVER_TASK_RETRYING = 3,  /* failed, waiting to run again */
    DROVER_TASK_REPORTING = 4, /* outcome known, being stored */
    DROVER_TASK_DONE = 5,      /* succeeded; result stored */
    DROVER_TASK_FAILED = 6,    /* failed for good; outcome stored */
    DROVER_TASK_CANCELLED = 7, /* cancelled */
} drover_task_state_t;

/*  The state of one task. */
typedef struct {
    uint64_t id;            /* the task */
    int state;              /* a drover_task_state_t */
    const char *state_name; /* "queued", "done"...: static text */
    uint32_t attempt;       /* attempts dispatched so far */
    uint32_t max_attempts;  /* attempts allowed, 0 if not said */
    const char *handler;    /* NULL if not said */
    const char *queue;      /* NULL if not said */
    const char *node;       /* node running it or that ran it, or NULL */
    int code;               /* last failure's code, or 0 */
    const char *reason;     /* last failure's reason, or NULL */
} drover_status_t;

/*  Frees an array of states (from status or cancel) and NULLs the
    pointer. NULL-safe. */
void drover_status_destroy (drover_status_t **self_p);

/*  The cluster's counters, as STATS_REPLY carries them. */
typedef struct {
    const char *name; /* queue name */
    uint64_t queued;  /* tasks waiting */
    uint64_t leased;  /* tasks running */
} drover_stats_queue_t;

typedef struct {
    const char *name;  /* node name */
    uint32_t children; /* children it runs */
    uint64_t credit;   /* tasks it asked for and did not get yet */
    uint64_t leased;   /* tasks it runs */
    uint64_t done;     /* attempts it finished */
} drover_stats_node_t;

typedef struct {
    const char *name; /* "submitted", "done", "failed", "retried"... */
    uint64_t value;   /* its value */
} drover_stats_counter_t;

typedef struct {
    drover_stats_queue_t *queues;     /* one per queue */
    size_t queue_count;               /* how many */
    drover_stats_node_t *nodes;       /* one per node */
    size_t node_count;                /* how many */
    drover_stats_counter_t *counters; /* named counters */
    size_t counter_count;             /* how many */
} drover_stats_t;

/*  Frees stats and NULLs the pointer. NULL-safe. */
void drover_stats_destroy (drover_stats_t **self_p);

/*  One attempt of a dead letter, as the broker recorded it. */
typedef struct {
    uint32_t attempt;    /* the attempt number, from 1 */
    int code;            /* how it ended: a DROVER_E* code */
    const char *reason;  /* why (stderr tail...), or NULL */
    const char *node;    /* the node that ran it, or NULL */
    uint64_t elapsed_us; /* its wall time */
    uint64_t cpu_us;     /* its user + system CPU time */
    int signal;          /* signal that killed the child, or 0 */
    int exit_status;     /* exit status of an exec handler, or 0 */
    uint64_t max_rss_kb; /* peak memory of the child, or 0 */
} drover_attempt_t;

/*  A dead letter: a task that failed for good, kept by the broker with
    its payload and the history of its attempts (SPEC.md 7.4). */
typedef struct {
    uint64_t id;                /* the task */
    const char *handler;        /* its handler, or NULL if not said */
    const char *queue;          /* its queue, or NULL if not said */
    uint32_t max_attempts;      /* attempts it was allowed, 0 if not said */
    int code;                   /* the last attempt's code */
    const char *reason;         /* the last attempt's reason, or NULL */
    drover_attempt_t *attempts; /* its attempts, oldest first (at most the
                                   last 16) */
    size_t attempt_count;       /* how many, at least 1 */
} drover_dead_t;

/*  Dead letters, from drover_client_dead. */
typedef struct {
    drover_dead_t *tasks; /* one per dead letter, oldest first */
    size_t task_count;    /* how many */
} drover_dead_list_t;

/*  Frees a list of dead letters and NULLs the pointer. NULL-safe. */
void drover_dead_list_destroy (drover_dead_list_t **self_p);

/*  Creates a client, not connected yet. Returns NULL when out of memory. */
drover_client_t *drover_client_new (void);

/*  Destroys a client and NULLs the pointer; results it still holds are
    dropped. Destroy its maps first. NULL-safe. */
void drover_client_destroy (drover_client_t **self_p);

/*  Connects to the broker at endpoint ("tcp://host:port", "ipc://path"),
    says HELLO and waits for WELCOME, then connects to the sink it names.
    timeout_ms bounds the handshake and, afterwards, each request (submit,
    status, cancel, stats). Returns 0; DROVER_ECONNECT when the broker did
    not answer in time; DROVER_EINVAL for a bad endpoint or a second
    connect; the broker's code when it refused. */
int drover_client_connect (drover_client_t *self, const char *endpoint,
                           int timeout_ms);

/*  Before drover_client_connect: reach the sink at endpoint, whatever
    sink the broker names. For a sink whose advertised address does not
    route from here (a port mapped by docker, say), and for a client in
    the process of a broker with an embedded sink, which reaches both over
    inproc:// (see drover_broker_config_t's local endpoints). Returns 0,
    or DROVER_EINVAL when endpoint is empty or the client is connected. */
int drover_client_set_sink_endpoint (drover_client_t *self,
                                     const char *endpoint);

/*  Says in words why the last call failed, and what to do; "" if nothing
    failed yet. The client owns the text, valid until the next call. */
const char *drover_client_reason (drover_client_t *self);

/*  The most tasks one message may carry, and the largest payload the
    cluster accepts, as the broker's WELCOME said (0 before connect). */
size_t drover_client_max_batch (drover_client_t *self);
uint64_t drover_client_max_payload (drover_client_t *self);

/*  Submits one task: handler (a name the nodes registered) run on the
    size octets at payload. options may be NULL. On success sets *id_p.
    Returns DROVER_EFULL when the broker's queue is full (retry later),
    DROVER_ETOOBIG for a payload over the cluster's limit, DROVER_EINVAL
    for a bad handler or queue name, DROVER_ETIMEDOUT without an answer,
    DROVER_ESTALE when the broker restarted before it answered (submit
    again). A broker without durability forgets its tasks when it
    restarts: a caller of drover_client_submit or _submit_batch that
    still waits for tasks owns their resubmission (drover_map does its
    own): keep their payloads, and when drover_client_broker_restarts
    grows, give them to drover_client_resubmit. */
int drover_client_submit (drover_client_t *self, const char *handler,
                          const void *payload, size_t size,
                          const drover_task_options_t *options, uint64_t *id_p);

/*  Submits count tasks of one handler, one per payload, in messages of at
    most max_batch tasks (each is accepted whole or not at all). Sets
    ids[i] to the id of payloads[i], or to 0 when its message was refused;
    returns 0 when all were accepted, else the first refusal's code. */
int drover_client_submit_batch (drover_client_t *self, const char *handler,
                                const drover_payload_t *payloads, size_t count,
                                const drover_task_options_t *options,
                                uint64_t *ids);

/*  Submits tasks again after a broker restart, under the ids they had:
    payloads[i] under ids[i], with the handler and options of the first
    submit (SPEC.md 7.6). The broker creates the tasks it lost and
    acknowledges those it holds, so none runs twice because of this call,
    and a task that had finished still gives exactly one result. On return
    ids[i] is the id the broker acknowledged (the same one, from a broker
    that implements 7.6; an older one gives new ids). Returns as
    drover_client_submit_batch; DROVER_EINVAL for an id 0. */
int drover_client_resubmit (drover_client_t *self, const char *handler,
                            const drover_payload_t *payloads, size_t count,
                            const drover_task_options_t *options,
                            uint64_t *ids);

/*  How many times this client found that the broker restarted (a WELCOME
    with a new instance). The client asks the broker while a request
    stays unanswered, or watched tasks bring no result, for the cluster's
    heartbeat_ms * liveness (see drover_client_wait: wait in slices to
    look at this between them). */
uint64_t drover_client_broker_restarts (drover_client_t *self);

/*  Waits up to timeout_ms for the results of count distinct tasks. Sets
    results[i] to the result of ids[i] (caller owns each) or to NULL if it
    has not come. Returns 0 when all came, DROVER_ETIMEDOUT when some did
    not (those stay watched: a later wait can still get them), or an error.
    With release, the sink may forget each result once it sent it; without,
    a later wait (from any client) can read it again. A result's code says
    whether the task itself succeeded. */
int drover_client_wait (drover_client_t *self, const uint64_t *ids,
                        size_t count, int timeout_ms, bool release,
                        drover_result_t **results);

/*  Asks the state of count tasks: the broker first, then the sink for the
    ids the broker no longer knows. On success *statuses_p is an array of
    count states, in the order of ids; caller frees it with
    drover_status_destroy. */
int drover_client_status (drover_client_t *self, const uint64_t *ids,
                          size_t count, drover_status_t **statuses_p);

/*  Cancels count tasks: queued ones at once, running ones are revoked;
    finished or unknown ones are unchanged. Their results (code
    DROVER_ECANCELLED) reach the sink as usual. On success *statuses_p holds
    each task's state after the cancel, as drover_client_status gives. */
int drover_client_cancel (drover_client_t *self, const uint64_t *ids,
                          size_t count, drover_status_t **statuses_p);

/*  Reads the broker's queues, nodes and counters. On success *stats_p is
    the caller's: drover_stats_destroy. */
int drover_client_stats (drover_client_t *self, drover_stats_t **stats_p);

/*  Lists dead letters with their histories: those among count ids (ids
    that are not dead letters are left out), or, with count 0, the oldest
    ones whose attempts fit in one reply (max_batch attempts). On success
    *list_p is the caller's: drover_dead_list_destroy. Returns
    DROVER_EPROTO when the broker's reply is not what SPEC.md 5.20 says. */
int drover_client_dead (drover_client_t *self, const uint64_t *ids,
                        size_t count, drover_dead_list_t **list_p);

/*  Submits dead letters again, as new tasks with their handler, queue,
    options and payload: the count tasks of ids, or, with all (and count
    0), every dead letter the broker holds. At most max_batch ids. On
    success *new_ids_p is an array of *new_count_p new task ids, in the
    order of ids (with all: the broker's order); caller frees it with
    free (). Returns DROVER_ENOTFOUND when one of ids is not a dead letter
    (the reason names it; then nothing was submitted), DROVER_EINVAL for
    ids together with all or neither of them. */
int drover_client_retry (drover_client_t *self, const uint64_t *ids,
                         size_t count, bool all, uint64_t **new_ids_p,
                         size_t *new_count_p);

/*  The name of a task state ("queued"), or "unknown". */
const char *drover_task_state_name (int state);

#ifdef __cplusplus
}
#endif

#endif
