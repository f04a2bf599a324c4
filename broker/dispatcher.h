/*  dispatcher.h - the broker's task states, queues, leases and credit-based
    dispatch, without sockets.

    The dispatcher owns every task from SUBMIT until the sink has stored its
    outcome (SPEC.md section 7). Nodes receive tasks only against their
    credit, from the (queue, handler) lanes they serve, oldest task first.
    What the broker must send as a consequence (RESULTs of tasks that ended
    without a node's result, REVOKEs of leases) collects in two outboxes the
    broker drains after each event, so this module stays pure and testable.

    Failed attempts retry after a backoff (SPEC.md 7.4). The dispatcher has
    no clock: callers pass the time (zclock_mono milliseconds, or fake times
    in tests) to dispatcher_fail and dispatcher_tick, and ask
    dispatcher_next_due when the next retry falls due. Waiting retries sit
    in a min-heap on their due time, so a tick costs O(log n) per task it
    requeues and nothing for the others. Tasks that fail for good become
    dead letters: they keep their payload and the history of their last
    DISPATCHER_HISTORY failed attempts until retried or evicted.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_DISPATCHER_H_INCLUDED
#define DROVER_DISPATCHER_H_INCLUDED

#include "drover_msg.h"

typedef struct dispatcher_t dispatcher_t;
typedef struct dispatcher_node_t dispatcher_node_t;
typedef struct lane_t lane_t;

//  Most (queue, handler) pairs the dispatcher tracks.
#define DISPATCHER_MAX_LANES 65536

//  Frees a task's payload; the dispatcher never looks inside one.
typedef void (payload_free_fn) (void **payload);

//  Attempts a task remembers for DEAD.
#define DISPATCHER_HISTORY 16

//  Longest retry backoff the dispatcher waits; longer ones are cut to it.
#define DISPATCHER_MAX_DELAY_MS (7ull * 24 * 3600 * 1000)

typedef struct {
    uint32_t max_attempts;       //  default attempts for failures (>= 1)
    uint32_t max_losses;         //  node losses a task survives before ELOST
    uint64_t max_queued;         //  tasks held at most (any state)
    uint64_t retry_delay_ms;     //  default backoff of a first retry; 0: 1000
    uint64_t retry_max_delay_ms; //  default cap of backoffs; 0: 60000
    uint64_t max_dead;           //  dead letters kept; past it the oldest
                                 //  is dropped (0: none kept)
    uint64_t seed;               //  seed of the backoff jitter; 0: random
    uint64_t first_id;           //  id of the first task; 0: 1
} dispatcher_config_t;

//  One failed (or lost) attempt, as DEAD reports it.
typedef struct {
    uint32_t attempt;    //  attempt number
    int32_t code;        //  why it failed, a DROVER_E* code
    char *reason;        //  the node's reason, or NULL
    char *node;          //  the node that ran it, or NULL
    uint64_t elapsed_us; //  wall time
    uint64_t cpu_us;     //  user + system CPU time
    int32_t signal;      //  signal that killed the child, or 0
    int32_t exit_status; //  exit status of an exec handler, or 0
    uint64_t max_rss_kb; //  peak resident memory of the child
} dispatcher_attempt_t;

//  The last DISPATCHER_HISTORY failed attempts of a task, a ring.
typedef struct {
    dispatcher_attempt_t ring[DISPATCHER_HISTORY]; //  slot: attempt % size
    uint32_t recorded; //  attempts recorded in all, kept or not
} dispatcher_history_t;

//  What a task keeps once something went wrong with it: an attempt failed
//  or was lost, or it was cancelled. Most tasks never need it, so it is
//  allocated only then (it is larger than a whole queued task).
typedef struct {
    uint32_t failures;             //  attempts that failed (count against max)
    uint32_t losses;               //  attempts lost with their node
    char *reason;                  //  why it last failed or ended, or NULL
    drover_task_t outcome;         //  details of the last failed attempt
    dispatcher_history_t *history; //  failed attempts, or NULL if none
    int64_t due_ms;                //  while retrying: when it is queued again
    size_t retry_index;  //  while retrying: its place in the retry heap
    int64_t reported_at; //  when its RESULT last went to the sink (ms;
                         //  the broker sets it)
    void *dead_handle;   //  its place in the dead-letter list, or NULL
} dispatcher_trouble_t;

//  One task, kept small: a broker holds a million queued tasks in some 200
//  octets each (this struct, its payload, its slot in the task index).
//  Read-only outside dispatcher.c, but for the fields the broker sets.
typedef struct dispatcher_task_t dispatcher_task_t;
struct dispatcher_task_t {
    uint64_t id;              //  assigned by the dispatcher, from 1
    lane_t *lane;             //  its (queue, handler)
    char *key;                //  user key, or NULL
    void *payload;            //  the input, owned; NULL once not needed
    uint64_t timeout_ms;      //  time limit of one attempt, 0: none
    uint64_t soft_timeout_ms; //  soft time limit of one attempt, 0: none
    uint64_t retry_on;        //  codes that retry: bit N for code -N
    //  Backoffs are cut to DISPATCHER_MAX_DELAY_MS, which fits 32 bits
    uint32_t retry_delay_ms;     //  backoff before the first retry
    uint32_t retry_max_delay_ms; //  cap of the backoff
    uint32_t max_attempts;       //  attempts allowed for failures
    uint32_t attempt;            //  attempts dispatched so far
    uint32_t items;              //  inputs in its chunk; 0: not a chunk
    int32_t code;                //  last failure's code, or final outcome
    drover_state_t state;        //  where it is in SPEC.md section 7.1
    bool failed_attempt;     //  its newest attempt FAILed: a result of it is
                             //  stale
    bool claimed;            //  its result waits to be stored (REPORTING, code
                             //  0): it is in the claims list
    dispatcher_node_t *node; //  lease holder while leased, else NULL
    char *last_node;         //  name of the node of the last attempt
    //  Its neighbours in the one list it is in: its lane's queue while
    //  queued, its node's leases while leased, the reports or the claims
    //  while reporting (task_list.h)
    dispatcher_task_t *prev, *next;
    int64_t claimed_at;            //  when its claim was last granted (ms)
    dispatcher_trouble_t *trouble; //  NULL until something went wrong
    uint64_t journal_home;  //  the journal segment holding its newest full
                            //  record (the broker's journal sets it)
    uint64_t journal_bytes; //  octets the journal counts as live for it
};

//  Its queue and handler names.
const char *dispatcher_task_queue (const dispatcher_task_t *task);
const char *dispatcher_task_handler (const dispatcher_task_t *task);

//  The reason of its last failure or of its outcome, or NULL.
const char *dispatcher_task_reason (const dispatcher_task_t *task);

//  Its failed attempts, or NULL if none.
const dispatcher_history_t *
dispatcher_task_history (const dispatcher_task_t *task);

//  A REVOKE to send.
typedef struct {
    void *peer;       //  the node's peer handle (dispatcher_node_add)
    uint64_t id;      //  task
    uint32_t attempt; //  attempt to stop
    int32_t code;     //  why (DROVER_ECANCELLED, DROVER_ESTALE)
} dispatcher_revoke_t;

dispatcher_t *dispatcher_new (const dispatcher_config_t *config,
                              payload_free_fn *free_payload);
void dispatcher_destroy (dispatcher_t **self_p);

//  Tasks the dispatcher can still take.
uint64_t dispatcher_room (dispatcher_t *self);

//  A task with spec->id set is a resubmission (SPEC 7.6): when the
//  dispatcher holds that id already (live or dead) it returns the id and
//  leaves the payload with the caller; else it creates the task under it.
//  Queues one task (SUBMIT item), taking ownership of payload. Returns the
//  new task's id, or 0 if the dispatcher is full (check room first) or the
//  task would need a lane over DISPATCHER_MAX_LANES. Zero retry options
//  take the defaults (config, DROVER_RETRY_ON_DEFAULT).
uint64_t dispatcher_submit (dispatcher_t *self, const drover_task_t *spec,
                            void **payload_p);

//  Adds a node that serves handlers in queues (NULL/0: "default"), and
//  their chunks when chunks is true (SPEC 7.7); peer is the caller's
//  handle for it, returned in revokes and dispatch.
dispatcher_node_t *dispatcher_node_add (dispatcher_t *self, const char *name,
                                        uint32_t children,
                                        const char **handlers,
                                        size_t handler_count,
                                        const char **queues, size_t queue_count,
                                        bool chunks, void *peer);

//  Removes a node: its leases are released (lost attempts, SPEC 7.4).
void dispatcher_node_remove (dispatcher_t *self, dispatcher_node_t **node_p);

//  Adds credit to a node.
void dispatcher_node_credit (dispatcher_t *self, dispatcher_node_t *node,
                             uint32_t credit);

//  The node drains: its credit is dropped and it gets no more tasks.
void dispatcher_node_drain (dispatcher_t *self, dispatcher_node_t *node);

void *dispatcher_node_peer (dispatcher_node_t *node);
const char *dispatcher_node_name (dispatcher_node_t *node);
uint64_t dispatcher_node_leased (dispatcher_node_t *node);

//  Leases up to max tasks to one node that has credit and matching tasks,
//  the least recently served first. Fills tasks[] and returns how many
//  (0: nothing to dispatch), with *node_p the node. Each task's attempt is
//  already incremented.
size_t dispatcher_next (dispatcher_t *self, dispatcher_node_t **node_p,
                        dispatcher_task_t **tasks, size_t max);

//  A node reports a failed attempt at now_ms. A code in the task's retry_on
//  with attempts left makes it wait in DROVER_STATE_RETRY for its backoff;
//  any other fails it for good: it is reported and becomes a dead letter.
//  A code >= 0 counts as DROVER_EFAILED. Returns 0 when acted on,
//  DROVER_ESTALE when (node, id, attempt) is not the current lease.
int dispatcher_fail (dispatcher_t *self, dispatcher_node_t *node,
                     const drover_task_t *outcome, int64_t now_ms);

//  Queues again the retrying tasks due at now_ms or before, earliest first.
//  Returns how many.
size_t dispatcher_tick (dispatcher_t *self, int64_t now_ms);

//  When the next retry falls due (the time base of dispatcher_fail), or -1
//  when no task is retrying.
int64_t dispatcher_next_due (dispatcher_t *self);

//  The sink stored an outcome with code: the task ends and leaves the task
//  table. A dead letter stays in the dead-letter list (state FAILED), unless
//  code is 0 (a superseded attempt succeeded after all). Returns 0, or
//  DROVER_ENOTFOUND for a task the dispatcher does not hold.
int dispatcher_done (dispatcher_t *self, uint64_t id, uint32_t attempt,
                     int32_t code);

//  Removes a task that was just submitted and never dispatched, silently
//  (an all-or-nothing SUBMIT that failed part way).
void dispatcher_withdraw (dispatcher_t *self, uint64_t id);

//  The sink claims a node's result for (id, attempt) at now_ms (SPEC
//  5.18). Returns 0 when attempt is the task's newest attempt and it has
//  no final outcome yet, or when that same claim was granted already:
//  the task waits (REPORTING, code 0) until the sink says it stored the
//  result (dispatcher_done). Else DROVER_ESTALE (counted as stale).
int dispatcher_claim (dispatcher_t *self, uint64_t id, uint32_t attempt,
                      int64_t now_ms);

//  Queues again the tasks whose claims were granted before before_ms and
//  never confirmed: the sink lost the result. Returns how many.
size_t dispatcher_expire_claims (dispatcher_t *self, int64_t before_ms);

//  Cancels a queued, retrying or leased task. Returns its state after the
//  cancel; DROVER_STATE_UNKNOWN if the dispatcher does not hold it.
drover_state_t dispatcher_cancel (dispatcher_t *self, uint64_t id);

//  Looks a task up; NULL if not held.
dispatcher_task_t *dispatcher_lookup (dispatcher_t *self, uint64_t id);

//  Attempts kept in a history (at most DISPATCHER_HISTORY); 0 for NULL.
size_t dispatcher_history_size (const dispatcher_history_t *history);

//  The index-th kept attempt, oldest first.
const dispatcher_attempt_t *
dispatcher_history_get (const dispatcher_history_t *history, size_t index);

//  --------------------------------------------------------------------------
//  Dead letters: tasks that failed for good, oldest first. A dead letter is
//  a dispatcher_task_t; its state is REPORTING until the sink stored its
//  failure, then FAILED (it is no longer held: dispatcher_lookup misses it).

//  Looks a dead letter up; NULL if there is none with this id.
dispatcher_task_t *dispatcher_dead_lookup (dispatcher_t *self, uint64_t id);

//  Iterates the dead letters, oldest first.
dispatcher_task_t *dispatcher_dead_first (dispatcher_t *self);
dispatcher_task_t *dispatcher_dead_next (dispatcher_t *self);

//  Dead letters kept.
size_t dispatcher_dead_count (dispatcher_t *self);

//  Submits a dead letter again as a new task (its handler, queue, options
//  and payload, which moves to the new task) and removes it from the list.
//  Returns the new id, or 0 if id is no dead letter or there is no room.
uint64_t dispatcher_dead_retry (dispatcher_t *self, uint64_t id);

//  Outbox of tasks in DROVER_STATE_REPORTING: their RESULT goes to the
//  sink, again until DONE. Iterate with first/next; the list is owned.
dispatcher_task_t *dispatcher_report_first (dispatcher_t *self);
dispatcher_task_t *dispatcher_report_next (dispatcher_t *self);
//  The same list from its newest task back, for finding unsent reports.
dispatcher_task_t *dispatcher_report_last (dispatcher_t *self);
dispatcher_task_t *dispatcher_report_prev (dispatcher_t *self);

//  Takes the next REVOKE to send; false when there is none.
bool dispatcher_revoke_pop (dispatcher_t *self, dispatcher_revoke_t *revoke);

//  Statistics.
typedef struct {
    uint64_t submitted, dispatched, done, failed, retried, lost, stale,
        cancelled;
    uint64_t dead_dropped; //  dead letters evicted (or never kept)
} dispatcher_counters_t;
const dispatcher_counters_t *dispatcher_counters (dispatcher_t *self);
uint64_t dispatcher_task_count (dispatcher_t *self);

//  Tasks waiting out a retry backoff.
size_t dispatcher_retrying (dispatcher_t *self);

//  Fills infos with up to max queues (name, queued, leased); returns the
//  number of queues.
size_t dispatcher_queue_infos (dispatcher_t *self, drover_queue_info_t *infos,
                               size_t max);

//  Fills infos with up to max nodes; returns the number of nodes.
size_t dispatcher_node_infos (dispatcher_t *self, drover_node_info_t *infos,
                              size_t max);

//  --------------------------------------------------------------------------
//  Durability. The broker's journal (task_journal.c) observes every state
//  change that must survive a restart, and rebuilds the tasks from its
//  records with the restore calls, which act like the live ones but notify
//  nobody, send nothing and count nothing.

typedef enum {
    DISPATCHER_EVENT_SUBMIT,   //  a task was created, queued
    DISPATCHER_EVENT_LEASE,    //  a task was leased: task->attempt is new
    DISPATCHER_EVENT_FAILURE,  //  an attempt failed or its node was lost:
                               //  the newest entry of its history
    DISPATCHER_EVENT_REPORT,   //  a task has its final outcome (task->code,
                               //  its reason) and is REPORTING
    DISPATCHER_EVENT_END,      //  a task left the task table with code (its
                               //  result was claimed or its outcome stored)
    DISPATCHER_EVENT_WITHDRAW, //  a task was removed as if never submitted
    DISPATCHER_EVENT_UNDEAD,   //  a task left the dead-letter list
    DISPATCHER_EVENT_FREE,     //  a task's memory is about to be freed
} dispatcher_event_t;

typedef void (dispatcher_observer_fn) (void *arg, dispatcher_event_t event,
                                       dispatcher_task_t *task, int32_t code);

//  Calls fn on every event from now on (NULL: none).
void dispatcher_set_observer (dispatcher_t *self, dispatcher_observer_fn *fn,
                              void *arg);

//  Iterates every task the dispatcher remembers: those in the task table,
//  then the dead letters that left it. Do not change the dispatcher while
//  iterating.
dispatcher_task_t *dispatcher_all_first (dispatcher_t *self);
dispatcher_task_t *dispatcher_all_next (dispatcher_t *self);

//  Restores a task under spec->id (never 0), queued, taking the payload;
//  a task remembered under that id (held or dead) is replaced. Ids handed
//  out later are above it. Returns the task.
dispatcher_task_t *dispatcher_restore_task (dispatcher_t *self,
                                            const drover_task_t *spec,
                                            void **payload_p);

//  The task remembered under id, held or dead; NULL if none.
dispatcher_task_t *dispatcher_restore_lookup (dispatcher_t *self, uint64_t id);

//  The task was leased with attempt: it stays queued, and its next
//  dispatch is attempt + 1 (a lease lost in a restart is a lost attempt).
void dispatcher_restore_lease (dispatcher_t *self, dispatcher_task_t *task,
                               uint32_t attempt);

//  An attempt of the task failed (a code of DROVER_ELOST: its node was
//  lost), with the outcome's details for its history.
void dispatcher_restore_failure (dispatcher_t *self, dispatcher_task_t *task,
                                 const drover_task_t *outcome);

//  The task got its final outcome: it is REPORTING, and a dead letter
//  unless code is DROVER_ECANCELLED.
void dispatcher_restore_report (dispatcher_t *self, dispatcher_task_t *task,
                                int32_t code, const char *reason);

//  The task left the task table with code (as dispatcher_done).
void dispatcher_restore_end (dispatcher_t *self, dispatcher_task_t *task,
                             int32_t code);

//  The task was withdrawn: forgotten.
void dispatcher_restore_withdraw (dispatcher_t *self, dispatcher_task_t *task);

//  The task left the dead-letter list.
void dispatcher_restore_undead (dispatcher_t *self, dispatcher_task_t *task);

#endif
