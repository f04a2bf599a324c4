/*  dispatcher.c - task states, lanes, leases and credit-based dispatch.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "dispatcher.h"
#include "id_index.h"
#include "task_list.h"

#include <czmq.h>

//  A lane holds the queued tasks of one (queue, handler) pair, oldest
//  first. Lanes live as long as the dispatcher.
struct lane_t {
    char *queue;       //  queue name
    char *handler;     //  handler name
    bool chunked;      //  its tasks are chunks (SPEC 7.7): for nodes that
                       //  run them
    task_list_t tasks; //  queued tasks, oldest first (not owned)
    uint64_t leased;   //  its tasks leased to nodes
};

struct dispatcher_node_t {
    char *name;         //  node name, for logs and stats
    uint32_t children;  //  children it runs
    uint64_t credit;    //  tasks it asked for and did not get
    uint64_t done;      //  attempts it finished (done or failed)
    bool draining;      //  it takes no more tasks
    lane_t **lanes;     //  the lanes it serves
    size_t lane_count;  //  how many
    task_list_t leases; //  tasks leased to it (not owned)
    void *peer;         //  the broker's handle for it
    void *ready_handle; //  place in the dispatcher's ready list
};

struct dispatcher_t {
    dispatcher_config_t config;       //  limits and policy
    payload_free_fn *free_payload;    //  frees payloads
    id_index_t *tasks;                //  dispatcher_task_t held, by id (owned,
                                      //  unless also a dead letter)
    zhashx_t *lanes;                  //  "queue\x1fhandler" (+ "\x1fchunks")
                                      //  -> lane_t, owned
    zlistx_t *nodes;                  //  dispatcher_node_t, owned
    zlistx_t *ready;                  //  nodes with credit, least recently
                                      //  served first (not owned)
    task_list_t reports;              //  tasks in REPORTING (not owned)
    dispatcher_task_t *report_cursor; //  report_first/next/last/prev
    task_list_t claims;               //  claimed tasks, oldest claim first
                                      //  (not owned)
    zlistx_t *revokes;                //  dispatcher_revoke_t, owned
    dispatcher_task_t **retries;      //  retrying tasks, a min-heap on
                                      //  (due_ms, id) (not owned)
    size_t retry_count;               //  tasks in the heap
    size_t retry_alloc;               //  slots allocated
    zlistx_t *dead;                   //  dead letters, oldest first (owned,
                                      //  with the task table)
    id_index_t *dead_index;           //  dead letters by id (not owned)
    uint64_t rng;                     //  state of the jitter generator
    uint64_t next_id;                 //  id of the next task
    dispatcher_counters_t counters;   //  statistics
    dispatcher_observer_fn *observer; //  told of state changes, or NULL
    void *observer_arg;               //  its argument
    bool all_dead;                    //  all_first/next: in the dead list
};

static void
s_notify (dispatcher_t *self, dispatcher_event_t event, dispatcher_task_t *task,
          int32_t code)
{
    if (self->observer)
        self->observer (self->observer_arg, event, task, code);
}

static void
s_history_destroy (dispatcher_history_t **history_p)
{
    dispatcher_history_t *history = *history_p;
    if (!history)
        return;
    for (size_t i = 0; i < DISPATCHER_HISTORY; i++) {
        free (history->ring[i].reason);
        free (history->ring[i].node);
    }
    free (history);
    *history_p = NULL;
}

//  The task's trouble record, allocated when first needed.
static dispatcher_trouble_t *
s_trouble (dispatcher_task_t *task)
{
    if (!task->trouble) {
        task->trouble =
            (dispatcher_trouble_t *)zmalloc (sizeof (dispatcher_trouble_t));
        assert (task->trouble);
        task->trouble->retry_index = SIZE_MAX;
    }
    return task->trouble;
}

static bool
s_is_dead (const dispatcher_task_t *task)
{
    return task->trouble && task->trouble->dead_handle;
}

//  Frees a task and what it owns: neither the task table nor the dead-letter
//  list may hold it any more.
static void
s_task_destroy (dispatcher_t *self, dispatcher_task_t **task_p)
{
    dispatcher_task_t *task = *task_p;
    s_notify (self, DISPATCHER_EVENT_FREE, task, 0);
    if (task->payload && self->free_payload)
        self->free_payload (&task->payload);
    if (task->trouble) {
        s_history_destroy (&task->trouble->history);
        free (task->trouble->reason);
        free (task->trouble);
    }
    free (task->key);
    free (task->last_node);
    free (task);
    *task_p = NULL;
}

static void
s_lane_destroy (void **item)
{
    lane_t *lane = (lane_t *)*item;
    *item = NULL;
    free (lane->queue);
    free (lane->handler);
    free (lane);
}

static void
s_revoke_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_node_destroy (void **item)
{
    dispatcher_node_t *node = (dispatcher_node_t *)*item;
    *item = NULL;
    free (node->lanes);
    free (node->name);
    free (node);
}

dispatcher_t *
dispatcher_new (const dispatcher_config_t *config,
                payload_free_fn *free_payload)
{
    assert (config);
    assert (config->max_attempts >= 1);
    dispatcher_t *self = (dispatcher_t *)zmalloc (sizeof *self);
    assert (self);
    self->config = *config;
    self->free_payload = free_payload;
    self->tasks = id_index_new (offsetof (dispatcher_task_t, id));
    self->dead = zlistx_new ();
    self->dead_index = id_index_new (offsetof (dispatcher_task_t, id));
    assert (self->dead);
    if (!self->config.retry_delay_ms)
        self->config.retry_delay_ms = 1000;
    if (!self->config.retry_max_delay_ms)
        self->config.retry_max_delay_ms = 60000;
    self->rng = config->seed ? config->seed
                             : (uint64_t)zclock_time () ^ (uintptr_t)self
                                   ^ ((uint64_t)randof (1 << 30) << 32);
    self->lanes = zhashx_new ();
    zhashx_set_destructor (self->lanes, s_lane_destroy);
    self->nodes = zlistx_new ();
    zlistx_set_destructor (self->nodes, s_node_destroy);
    self->ready = zlistx_new ();
    self->revokes = zlistx_new ();
    zlistx_set_destructor (self->revokes, s_revoke_destroy);
    self->next_id = config->first_id ? config->first_id : 1;
    return self;
}

void
dispatcher_destroy (dispatcher_t **self_p)
{
    if (*self_p)
        (*self_p)->observer = NULL;
    assert (self_p);
    dispatcher_t *self = *self_p;
    if (!self)
        return;
    //  Dead letters are freed with the list, held tasks with the table
    for (dispatcher_task_t *task =
             (dispatcher_task_t *)id_index_first (self->tasks);
         task; task = (dispatcher_task_t *)id_index_next (self->tasks))
        if (!s_is_dead (task))
            s_task_destroy (self, &task);
    dispatcher_task_t *task;
    while ((task = (dispatcher_task_t *)zlistx_detach (self->dead, NULL)))
        s_task_destroy (self, &task);
    zlistx_destroy (&self->dead);
    id_index_destroy (&self->dead_index);
    free (self->retries);
    zlistx_destroy (&self->revokes);
    zlistx_destroy (&self->ready);
    zlistx_destroy (&self->nodes);
    id_index_destroy (&self->tasks);
    zhashx_destroy (&self->lanes);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Lanes

//  The key of a lane: queue, handler and whether it holds chunks.
static char *
s_lane_key (const char *queue, const char *handler, bool chunked)
{
    char *key = zsys_sprintf ("%s\x1f%s%s", queue, handler,
                              chunked ? "\x1f"
                                        "chunks"
                                      : "");
    assert (key);
    return key;
}

static lane_t *
s_lane_require (dispatcher_t *self, const char *queue, const char *handler,
                bool chunked)
{
    char *key = s_lane_key (queue, handler, chunked);
    lane_t *lane = (lane_t *)zhashx_lookup (self->lanes, key);
    if (!lane) {
        lane = (lane_t *)zmalloc (sizeof *lane);
        assert (lane);
        lane->queue = strdup (queue);
        lane->handler = strdup (handler);
        lane->chunked = chunked;
        assert (lane->queue && lane->handler);
        zhashx_insert (self->lanes, key, lane);
    }
    zstr_free (&key);
    return lane;
}

//  Queues a task at the tail (new and retried tasks) or head (tasks whose
//  node was lost: they keep their place).
static void
s_enqueue (dispatcher_task_t *task, bool at_head)
{
    task->state = DROVER_STATE_QUEUED;
    task->node = NULL;
    if (at_head)
        task_list_add_start (&task->lane->tasks, task);
    else
        task_list_add_end (&task->lane->tasks, task);
}

static void
s_dequeue (dispatcher_task_t *task)
{
    assert (task->state == DROVER_STATE_QUEUED);
    task_list_remove (&task->lane->tasks, task);
}

//  --------------------------------------------------------------------------
//  Tasks

uint64_t
dispatcher_room (dispatcher_t *self)
{
    uint64_t held = id_index_size (self->tasks);
    return held >= self->config.max_queued ? 0 : self->config.max_queued - held;
}

//  A backoff as a task keeps it: waits are cut to DISPATCHER_MAX_DELAY_MS
//  anyway (s_backoff), so a longer one means the same.
static uint32_t
s_delay (uint64_t delay_ms)
{
    return (uint32_t)(delay_ms < DISPATCHER_MAX_DELAY_MS
                          ? delay_ms
                          : DISPATCHER_MAX_DELAY_MS);
}

uint64_t
dispatcher_submit (dispatcher_t *self, const drover_task_t *spec,
                   void **payload_p)
{
    assert (self);
    assert (spec && spec->handler);
    if (dispatcher_room (self) == 0)
        return 0;
    //  Lanes live as long as the dispatcher: bound them too
    if (zhashx_size (self->lanes) >= DISPATCHER_MAX_LANES) {
        char *key = s_lane_key (spec->queue ? spec->queue : "default",
                                spec->handler, spec->items > 0);
        bool known = zhashx_lookup (self->lanes, key) != NULL;
        zstr_free (&key);
        if (!known)
            return 0;
    }
    if (spec->id
        && (dispatcher_lookup (self, spec->id)
            || dispatcher_dead_lookup (self, spec->id)))
        return spec->id; //  a resubmission of a task held already
    dispatcher_task_t *task = (dispatcher_task_t *)zmalloc (sizeof *task);
    assert (task);
    if (spec->id)
        task->id = spec->id;
    else {
        //  Skip ids that resubmissions took
        while (dispatcher_lookup (self, self->next_id)
               || dispatcher_dead_lookup (self, self->next_id))
            self->next_id++;
        task->id = self->next_id++;
    }
    task->lane = s_lane_require (self, spec->queue ? spec->queue : "default",
                                 spec->handler, spec->items > 0);
    task->items = spec->items;
    task->key = spec->key ? strdup (spec->key) : NULL;
    task->timeout_ms = spec->timeout_ms;
    task->soft_timeout_ms = spec->soft_timeout_ms;
    task->retry_delay_ms =
        s_delay (spec->retry_delay_ms ? spec->retry_delay_ms
                                      : self->config.retry_delay_ms);
    task->retry_max_delay_ms =
        s_delay (spec->retry_max_delay_ms ? spec->retry_max_delay_ms
                                          : self->config.retry_max_delay_ms);
    task->retry_on = spec->retry_on ? spec->retry_on : DROVER_RETRY_ON_DEFAULT;
    task->max_attempts =
        spec->max_attempts ? spec->max_attempts : self->config.max_attempts;
    task->payload = payload_p ? *payload_p : NULL;
    if (payload_p)
        *payload_p = NULL;
    id_index_insert (self->tasks, task);
    s_enqueue (task, false);
    self->counters.submitted++;
    s_notify (self, DISPATCHER_EVENT_SUBMIT, task, 0);
    return task->id;
}

dispatcher_task_t *
dispatcher_lookup (dispatcher_t *self, uint64_t id)
{
    return (dispatcher_task_t *)id_index_lookup (self->tasks, id);
}

const char *
dispatcher_task_queue (const dispatcher_task_t *task)
{
    return task->lane->queue;
}

const char *
dispatcher_task_handler (const dispatcher_task_t *task)
{
    return task->lane->handler;
}

const char *
dispatcher_task_reason (const dispatcher_task_t *task)
{
    return task->trouble ? task->trouble->reason : NULL;
}

const dispatcher_history_t *
dispatcher_task_history (const dispatcher_task_t *task)
{
    return task->trouble ? task->trouble->history : NULL;
}

static void
s_release_lease (dispatcher_task_t *task)
{
    assert (task->state == DROVER_STATE_LEASED);
    task_list_remove (&task->node->leases, task);
    task->lane->leased--;
    task->node = NULL;
}

//  The task ended without a node's result: its outcome goes to the sink.
static void
s_report (dispatcher_t *self, dispatcher_task_t *task, int32_t code)
{
    task->state = DROVER_STATE_REPORTING;
    task->code = code;
    s_trouble (task)->reported_at = 0;
    task_list_add_end (&self->reports, task);
    s_notify (self, DISPATCHER_EVENT_REPORT, task, code);
}

static void
s_set_text (char **field, const char *text)
{
    free (*field);
    *field = text ? strdup (text) : NULL;
}

//  --------------------------------------------------------------------------
//  Retries: a binary min-heap of retrying tasks on (due_ms, id); each task
//  knows its index, so a cancel removes it in O(log n)

static bool
s_due_before (const dispatcher_task_t *a, const dispatcher_task_t *b)
{
    int64_t a_due = a->trouble->due_ms, b_due = b->trouble->due_ms;
    return a_due < b_due || (a_due == b_due && a->id < b->id);
}

static void
s_heap_place (dispatcher_t *self, size_t index, dispatcher_task_t *task)
{
    self->retries[index] = task;
    task->trouble->retry_index = index;
}

static void
s_heap_up (dispatcher_t *self, size_t index)
{
    dispatcher_task_t *task = self->retries[index];
    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (!s_due_before (task, self->retries[parent]))
            break;
        s_heap_place (self, index, self->retries[parent]);
        index = parent;
    }
    s_heap_place (self, index, task);
}

static void
s_heap_down (dispatcher_t *self, size_t index)
{
    dispatcher_task_t *task = self->retries[index];
    while (true) {
        size_t child = 2 * index + 1;
        if (child >= self->retry_count)
            break;
        if (child + 1 < self->retry_count
            && s_due_before (self->retries[child + 1], self->retries[child]))
            child++;
        if (!s_due_before (self->retries[child], task))
            break;
        s_heap_place (self, index, self->retries[child]);
        index = child;
    }
    s_heap_place (self, index, task);
}

static void
s_retry_add (dispatcher_t *self, dispatcher_task_t *task, int64_t due_ms)
{
    if (self->retry_count == self->retry_alloc) {
        self->retry_alloc = self->retry_alloc ? self->retry_alloc * 2 : 64;
        self->retries = (dispatcher_task_t **)realloc (
            self->retries, self->retry_alloc * sizeof (dispatcher_task_t *));
        assert (self->retries);
    }
    //  Only a failed task retries: it has its trouble record
    assert (task->trouble);
    task->state = DROVER_STATE_RETRY;
    task->trouble->due_ms = due_ms;
    s_heap_place (self, self->retry_count++, task);
    s_heap_up (self, task->trouble->retry_index);
}

static void
s_retry_remove (dispatcher_t *self, dispatcher_task_t *task)
{
    assert (task->state == DROVER_STATE_RETRY);
    size_t index = task->trouble->retry_index;
    assert (index < self->retry_count && self->retries[index] == task);
    dispatcher_task_t *last = self->retries[--self->retry_count];
    if (index < self->retry_count) {
        s_heap_place (self, index, last);
        s_heap_up (self, index);
        s_heap_down (self, last->trouble->retry_index);
    }
    task->trouble->retry_index = SIZE_MAX;
}

//  A random number in [0, bound], from a xorshift64* generator.
static uint64_t
s_random (dispatcher_t *self, uint64_t bound)
{
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    uint64_t value = self->rng * 0x2545f4914f6cdd1dULL;
    return bound == UINT64_MAX ? value : value % (bound + 1);
}

//  The wait after the task's n-th failure (SPEC.md 7.4): d = min(max,
//  base * 2^(n-1)), then d/2 + random(0, d/2), so within [d/2, d].
static uint64_t
s_backoff (dispatcher_t *self, dispatcher_task_t *task)
{
    uint64_t max = task->retry_max_delay_ms;
    if (max > DISPATCHER_MAX_DELAY_MS)
        max = DISPATCHER_MAX_DELAY_MS;
    uint64_t base = task->retry_delay_ms;
    uint32_t failures = task->trouble->failures;
    uint32_t shift = failures > 0 ? failures - 1 : 0;
    uint64_t delay = max;
    if (shift < 63 && base <= (max >> shift))
        delay = base << shift;
    uint64_t half = delay / 2;
    return half + s_random (self, delay - half);
}

size_t
dispatcher_tick (dispatcher_t *self, int64_t now_ms)
{
    size_t requeued = 0;
    while (self->retry_count > 0
           && self->retries[0]->trouble->due_ms <= now_ms) {
        dispatcher_task_t *task = self->retries[0];
        s_retry_remove (self, task);
        s_enqueue (task, false);
        requeued++;
    }
    return requeued;
}

int64_t
dispatcher_next_due (dispatcher_t *self)
{
    return self->retry_count > 0 ? self->retries[0]->trouble->due_ms : -1;
}

size_t
dispatcher_retrying (dispatcher_t *self)
{
    return self->retry_count;
}

//  --------------------------------------------------------------------------
//  Attempt histories

static void
s_record (dispatcher_task_t *task, const drover_task_t *outcome,
          const char *node)
{
    dispatcher_trouble_t *trouble = s_trouble (task);
    if (!trouble->history) {
        trouble->history =
            (dispatcher_history_t *)zmalloc (sizeof (dispatcher_history_t));
        assert (trouble->history);
    }
    dispatcher_history_t *history = trouble->history;
    dispatcher_attempt_t *slot =
        &history->ring[history->recorded % DISPATCHER_HISTORY];
    free (slot->reason);
    free (slot->node);
    *slot = (dispatcher_attempt_t){
        .attempt = outcome->attempt,
        .code = outcome->code,
        .reason = outcome->reason ? strdup (outcome->reason) : NULL,
        .node = node ? strdup (node) : NULL,
        .elapsed_us = outcome->elapsed_us,
        .cpu_us = outcome->cpu_us,
        .signal = outcome->signal,
        .exit_status = outcome->exit_status,
        .max_rss_kb = outcome->max_rss_kb,
    };
    history->recorded++;
}

size_t
dispatcher_history_size (const dispatcher_history_t *history)
{
    if (!history)
        return 0;
    return history->recorded < DISPATCHER_HISTORY ? history->recorded
                                                  : DISPATCHER_HISTORY;
}

const dispatcher_attempt_t *
dispatcher_history_get (const dispatcher_history_t *history, size_t index)
{
    size_t kept = dispatcher_history_size (history);
    assert (index < kept);
    size_t oldest = history->recorded - kept;
    return &history->ring[(oldest + index) % DISPATCHER_HISTORY];
}

//  --------------------------------------------------------------------------
//  Dead letters

static void
s_dead_unlink (dispatcher_t *self, dispatcher_task_t *task)
{
    assert (s_is_dead (task));
    zlistx_detach (self->dead, task->trouble->dead_handle);
    task->trouble->dead_handle = NULL;
    id_index_remove (self->dead_index, task->id);
}

//  Takes a dead letter out of the list; frees it unless the table holds it.
static void
s_dead_drop (dispatcher_t *self, dispatcher_task_t *task)
{
    s_notify (self, DISPATCHER_EVENT_UNDEAD, task, 0);
    s_dead_unlink (self, task);
    if (task->state == DROVER_STATE_FAILED)
        s_task_destroy (self, &task);
    else if (task->payload && self->free_payload)
        self->free_payload (&task->payload);
}

//  The task failed for good: report it and keep it as a dead letter, the
//  oldest dropped past max_dead.
static void
s_fail_for_good (dispatcher_t *self, dispatcher_task_t *task, int32_t code)
{
    self->counters.failed++;
    s_report (self, task, code);
    if (self->config.max_dead == 0) {
        self->counters.dead_dropped++;
        if (task->payload && self->free_payload)
            self->free_payload (&task->payload);
        return;
    }
    while (zlistx_size (self->dead) >= self->config.max_dead) {
        s_dead_drop (self, (dispatcher_task_t *)zlistx_first (self->dead));
        self->counters.dead_dropped++;
    }
    task->trouble->dead_handle = zlistx_add_end (self->dead, task);
    id_index_insert (self->dead_index, task);
}

dispatcher_task_t *
dispatcher_dead_lookup (dispatcher_t *self, uint64_t id)
{
    return (dispatcher_task_t *)id_index_lookup (self->dead_index, id);
}

dispatcher_task_t *
dispatcher_dead_first (dispatcher_t *self)
{
    return (dispatcher_task_t *)zlistx_first (self->dead);
}

dispatcher_task_t *
dispatcher_dead_next (dispatcher_t *self)
{
    return (dispatcher_task_t *)zlistx_next (self->dead);
}

size_t
dispatcher_dead_count (dispatcher_t *self)
{
    return zlistx_size (self->dead);
}

uint64_t
dispatcher_dead_retry (dispatcher_t *self, uint64_t id)
{
    dispatcher_task_t *dead = dispatcher_dead_lookup (self, id);
    if (!dead || dispatcher_room (self) == 0)
        return 0;
    drover_task_t spec = {
        .handler = dead->lane->handler,
        .queue = dead->lane->queue,
        .key = dead->key,
        .timeout_ms = dead->timeout_ms,
        .soft_timeout_ms = dead->soft_timeout_ms,
        .max_attempts = dead->max_attempts,
        .retry_delay_ms = dead->retry_delay_ms,
        .retry_max_delay_ms = dead->retry_max_delay_ms,
        .retry_on = dead->retry_on,
        .items = dead->items,
    };
    //  Its lane exists, so the lane limit cannot refuse it
    uint64_t new_id = dispatcher_submit (self, &spec, &dead->payload);
    assert (new_id);
    s_dead_drop (self, dead);
    return new_id;
}

//  --------------------------------------------------------------------------
//  Task outcomes

static void
s_remove (dispatcher_t *self, dispatcher_task_t *task)
{
    if (task->state == DROVER_STATE_QUEUED)
        s_dequeue (task);
    else if (task->state == DROVER_STATE_LEASED)
        s_release_lease (task);
    else if (task->state == DROVER_STATE_RETRY)
        s_retry_remove (self, task);
    else if (task->claimed) {
        task_list_remove (&self->claims, task);
        task->claimed = false;
    }
    else if (task->state == DROVER_STATE_REPORTING)
        task_list_remove (&self->reports, task);
    id_index_remove (self->tasks, task->id);
    if (s_is_dead (task))
        task->state = DROVER_STATE_FAILED; //  the dead-letter list keeps it
    else
        s_task_destroy (self, &task);
}

int
dispatcher_fail (dispatcher_t *self, dispatcher_node_t *node,
                 const drover_task_t *outcome, int64_t now_ms)
{
    dispatcher_task_t *task = dispatcher_lookup (self, outcome->id);
    if (!task || task->state != DROVER_STATE_LEASED || task->node != node
        || task->attempt != outcome->attempt) {
        self->counters.stale++;
        return DROVER_ESTALE;
    }
    s_release_lease (task);
    node->done++;
    dispatcher_trouble_t *trouble = s_trouble (task);
    trouble->failures++;
    task->failed_attempt = true;
    trouble->outcome = *outcome;
    if (trouble->outcome.code >= 0) //  a failure needs a failure's code
        trouble->outcome.code = DROVER_EFAILED;
    trouble->outcome.handler = trouble->outcome.queue = NULL;
    trouble->outcome.key = trouble->outcome.reason = NULL;
    trouble->outcome.node = NULL;
    trouble->outcome.payload = (drover_bytes_t){NULL, 0};
    int32_t code = trouble->outcome.code;
    task->code = code;
    s_set_text (&trouble->reason, outcome->reason);
    drover_task_t recorded = trouble->outcome;
    recorded.reason = outcome->reason;
    s_record (task, &recorded, outcome->node ? outcome->node : node->name);
    s_notify (self, DISPATCHER_EVENT_FAILURE, task, code);

    bool retryable = code >= -63 && (task->retry_on & DROVER_RETRY_BIT (code));
    if (retryable && trouble->failures < task->max_attempts) {
        self->counters.retried++;
        s_retry_add (self, task, now_ms + (int64_t)s_backoff (self, task));
    }
    else
        s_fail_for_good (self, task, code);
    return 0;
}

int
dispatcher_done (dispatcher_t *self, uint64_t id, uint32_t attempt,
                 int32_t code)
{
    dispatcher_task_t *task = dispatcher_lookup (self, id);
    if (!task)
        return DROVER_ENOTFOUND;
    if (task->state == DROVER_STATE_LEASED) {
        task->node->done++;
        if (task->attempt != attempt) {
            //  A superseded attempt's result won: stop the current one
            dispatcher_revoke_t *revoke =
                (dispatcher_revoke_t *)zmalloc (sizeof *revoke);
            assert (revoke);
            *revoke = (dispatcher_revoke_t){task->node->peer, task->id,
                                            task->attempt, DROVER_ESTALE};
            zlistx_add_end (self->revokes, revoke);
        }
    }
    if (task->state != DROVER_STATE_REPORTING)
        self->counters.done++;
    if (code == 0 && s_is_dead (task))
        //  A superseded attempt's success won at the sink: not dead
        s_dead_drop (self, task);
    s_notify (self, DISPATCHER_EVENT_END, task, code);
    s_remove (self, task);
    return 0;
}

void
dispatcher_withdraw (dispatcher_t *self, uint64_t id)
{
    dispatcher_task_t *task = dispatcher_lookup (self, id);
    assert (task && task->state == DROVER_STATE_QUEUED && task->attempt == 0);
    self->counters.submitted--;
    s_notify (self, DISPATCHER_EVENT_WITHDRAW, task, 0);
    s_remove (self, task);
}

int
dispatcher_claim (dispatcher_t *self, uint64_t id, uint32_t attempt,
                  int64_t now_ms)
{
    dispatcher_task_t *task = dispatcher_lookup (self, id);
    if (task && task->claimed && task->attempt == attempt) {
        //  The sink asks again (it restarted before storing): still yes
        task->claimed_at = now_ms;
        task_list_move_end (&self->claims, task);
        return 0;
    }
    if (!task || task->attempt != attempt || attempt == 0
        || task->failed_attempt || task->state == DROVER_STATE_REPORTING) {
        self->counters.stale++;
        return DROVER_ESTALE;
    }
    //  Leased, or queued/retrying after its node was lost: no newer
    //  attempt exists, so this result is the task's. It ends when the
    //  sink has stored it (STORED): a sink that dies first loses nothing
    if (task->state == DROVER_STATE_LEASED) {
        task->node->done++;
        s_release_lease (task);
    }
    else if (task->state == DROVER_STATE_QUEUED)
        s_dequeue (task);
    else if (task->state == DROVER_STATE_RETRY)
        s_retry_remove (self, task);
    self->counters.done++;
    task->state = DROVER_STATE_REPORTING;
    task->code = 0;
    task->claimed = true;
    task->claimed_at = now_ms;
    task_list_add_end (&self->claims, task);
    return 0;
}

size_t
dispatcher_expire_claims (dispatcher_t *self, int64_t before_ms)
{
    size_t count = 0;
    dispatcher_task_t *task;
    while ((task = self->claims.head) && task->claimed_at < before_ms) {
        task_list_remove (&self->claims, task);
        task->claimed = false;
        self->counters.done--;
        s_enqueue (task, true);
        count++;
    }
    return count;
}

drover_state_t
dispatcher_cancel (dispatcher_t *self, uint64_t id)
{
    dispatcher_task_t *task = dispatcher_lookup (self, id);
    if (!task)
        return DROVER_STATE_UNKNOWN;
    if (task->state == DROVER_STATE_QUEUED)
        s_dequeue (task);
    else if (task->state == DROVER_STATE_RETRY)
        s_retry_remove (self, task);
    else if (task->state == DROVER_STATE_LEASED) {
        dispatcher_revoke_t *revoke =
            (dispatcher_revoke_t *)zmalloc (sizeof *revoke);
        assert (revoke);
        *revoke = (dispatcher_revoke_t){task->node->peer, task->id,
                                        task->attempt, DROVER_ECANCELLED};
        zlistx_add_end (self->revokes, revoke);
        s_release_lease (task);
    }
    else
        return task->state;
    self->counters.cancelled++;
    s_set_text (&s_trouble (task)->reason, "cancelled by a client");
    s_report (self, task, DROVER_ECANCELLED);
    if (task->payload && self->free_payload)
        self->free_payload (&task->payload);
    return task->state;
}

//  --------------------------------------------------------------------------
//  Nodes

dispatcher_node_t *
dispatcher_node_add (dispatcher_t *self, const char *name, uint32_t children,
                     const char **handlers, size_t handler_count,
                     const char **queues, size_t queue_count, bool chunks,
                     void *peer)
{
    static const char *default_queue = "default";
    if (queue_count == 0) {
        queues = &default_queue;
        queue_count = 1;
    }
    dispatcher_node_t *node = (dispatcher_node_t *)zmalloc (sizeof *node);
    assert (node);
    node->name = strdup (name);
    node->children = children;
    node->peer = peer;
    node->lanes = (lane_t **)calloc (2 * handler_count * queue_count + 1,
                                     sizeof (lane_t *));
    assert (node->name && node->lanes);
    for (int chunked = 0; chunked <= (chunks ? 1 : 0); chunked++)
        for (size_t q = 0; q < queue_count; q++)
            for (size_t h = 0; h < handler_count; h++) {
                lane_t *lane =
                    s_lane_require (self, queues[q], handlers[h], chunked);
                bool known = false;
                for (size_t i = 0; i < node->lane_count; i++)
                    known |= node->lanes[i] == lane;
                if (!known)
                    node->lanes[node->lane_count++] = lane;
            }
    zlistx_add_end (self->nodes, node);
    return node;
}

void
dispatcher_node_remove (dispatcher_t *self, dispatcher_node_t **node_p)
{
    dispatcher_node_t *node = *node_p;
    if (!node)
        return;
    dispatcher_task_t *task;
    //  Tasks go back to the head of their lanes, in lease order
    while ((task = node->leases.tail)) {
        s_release_lease (task);
        s_trouble (task)->losses++;
        self->counters.lost++;
        drover_task_t lost = {.id = task->id,
                              .attempt = task->attempt,
                              .code = DROVER_ELOST,
                              .reason = "the node running it was lost"};
        s_record (task, &lost, node->name);
        s_notify (self, DISPATCHER_EVENT_FAILURE, task, DROVER_ELOST);
        dispatcher_trouble_t *trouble = task->trouble;
        if (trouble->losses > self->config.max_losses) {
            s_set_text (&trouble->reason,
                        "the nodes running this task were lost too often");
            trouble->outcome = (drover_task_t){.code = DROVER_ELOST};
            s_fail_for_good (self, task, DROVER_ELOST);
        }
        else
            s_enqueue (task, true);
    }
    if (node->ready_handle)
        zlistx_detach (self->ready, node->ready_handle);
    void *handle = zlistx_find (self->nodes, node);
    assert (handle);
    zlistx_delete (self->nodes, handle);
    *node_p = NULL;
}

void
dispatcher_node_credit (dispatcher_t *self, dispatcher_node_t *node,
                        uint32_t credit)
{
    if (node->draining || credit == 0)
        return;
    node->credit += credit;
    if (!node->ready_handle)
        node->ready_handle = zlistx_add_end (self->ready, node);
}

void
dispatcher_node_drain (dispatcher_t *self, dispatcher_node_t *node)
{
    node->draining = true;
    node->credit = 0;
    if (node->ready_handle) {
        zlistx_detach (self->ready, node->ready_handle);
        node->ready_handle = NULL;
    }
}

void *
dispatcher_node_peer (dispatcher_node_t *node)
{
    return node->peer;
}

const char *
dispatcher_node_name (dispatcher_node_t *node)
{
    return node->name;
}

uint64_t
dispatcher_node_leased (dispatcher_node_t *node)
{
    return node->leases.size;
}

//  The node's lane whose head task is the oldest, or NULL.
static lane_t *
s_oldest_lane (dispatcher_node_t *node)
{
    lane_t *oldest = NULL;
    uint64_t oldest_id = UINT64_MAX;
    for (size_t i = 0; i < node->lane_count; i++) {
        dispatcher_task_t *head = node->lanes[i]->tasks.head;
        if (head && head->id < oldest_id) {
            oldest = node->lanes[i];
            oldest_id = head->id;
        }
    }
    return oldest;
}

size_t
dispatcher_next (dispatcher_t *self, dispatcher_node_t **node_p,
                 dispatcher_task_t **tasks, size_t max)
{
    *node_p = NULL;
    for (dispatcher_node_t *node =
             (dispatcher_node_t *)zlistx_first (self->ready);
         node; node = (dispatcher_node_t *)zlistx_next (self->ready)) {
        size_t count = 0;
        lane_t *lane;
        while (count < max && node->credit > 0
               && (lane = s_oldest_lane (node))) {
            dispatcher_task_t *task = lane->tasks.head;
            s_dequeue (task);
            task->state = DROVER_STATE_LEASED;
            task->node = node;
            task->attempt++;
            task->failed_attempt = false;
            task_list_add_end (&node->leases, task);
            s_set_text (&task->last_node, node->name);
            lane->leased++;
            node->credit--;
            self->counters.dispatched++;
            s_notify (self, DISPATCHER_EVENT_LEASE, task, 0);
            tasks[count++] = task;
        }
        if (count == 0)
            continue;
        //  Served: to the back of the line, or out of it without credit
        zlistx_detach (self->ready, node->ready_handle);
        node->ready_handle =
            node->credit > 0 ? zlistx_add_end (self->ready, node) : NULL;
        *node_p = node;
        return count;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Outboxes and statistics

dispatcher_task_t *
dispatcher_report_first (dispatcher_t *self)
{
    self->report_cursor = self->reports.head;
    return self->report_cursor;
}

dispatcher_task_t *
dispatcher_report_next (dispatcher_t *self)
{
    if (self->report_cursor)
        self->report_cursor = self->report_cursor->next;
    return self->report_cursor;
}

dispatcher_task_t *
dispatcher_report_last (dispatcher_t *self)
{
    self->report_cursor = self->reports.tail;
    return self->report_cursor;
}

dispatcher_task_t *
dispatcher_report_prev (dispatcher_t *self)
{
    if (self->report_cursor)
        self->report_cursor = self->report_cursor->prev;
    return self->report_cursor;
}

bool
dispatcher_revoke_pop (dispatcher_t *self, dispatcher_revoke_t *revoke)
{
    dispatcher_revoke_t *item =
        (dispatcher_revoke_t *)zlistx_detach (self->revokes, NULL);
    if (!item)
        return false;
    *revoke = *item;
    free (item);
    return true;
}

const dispatcher_counters_t *
dispatcher_counters (dispatcher_t *self)
{
    return &self->counters;
}

uint64_t
dispatcher_task_count (dispatcher_t *self)
{
    return id_index_size (self->tasks);
}

size_t
dispatcher_queue_infos (dispatcher_t *self, drover_queue_info_t *infos,
                        size_t max)
{
    size_t count = 0;
    for (lane_t *lane = (lane_t *)zhashx_first (self->lanes); lane;
         lane = (lane_t *)zhashx_next (self->lanes)) {
        size_t i = 0;
        while (i < count && strcmp (infos[i].name, lane->queue))
            i++;
        if (i == count) {
            if (count == max)
                continue;
            infos[count++] = (drover_queue_info_t){lane->queue, 0, 0};
        }
        infos[i].queued += lane->tasks.size;
        infos[i].leased += lane->leased;
    }
    return count;
}

size_t
dispatcher_node_infos (dispatcher_t *self, drover_node_info_t *infos,
                       size_t max)
{
    size_t count = 0;
    for (dispatcher_node_t *node =
             (dispatcher_node_t *)zlistx_first (self->nodes);
         node && count < max;
         node = (dispatcher_node_t *)zlistx_next (self->nodes))
        infos[count++] =
            (drover_node_info_t){node->name, node->children, node->credit,
                                 node->leases.size, node->done};
    return count;
}

//  --------------------------------------------------------------------------
//  Durability

void
dispatcher_set_observer (dispatcher_t *self, dispatcher_observer_fn *fn,
                         void *arg)
{
    self->observer = fn;
    self->observer_arg = arg;
}

dispatcher_task_t *
dispatcher_all_first (dispatcher_t *self)
{
    self->all_dead = false;
    dispatcher_task_t *task = (dispatcher_task_t *)id_index_first (self->tasks);
    return task ? task : dispatcher_all_next (self);
}

dispatcher_task_t *
dispatcher_all_next (dispatcher_t *self)
{
    dispatcher_task_t *task;
    if (!self->all_dead) {
        if ((task = (dispatcher_task_t *)id_index_next (self->tasks)))
            return task;
        self->all_dead = true;
        task = (dispatcher_task_t *)zlistx_first (self->dead);
    }
    else
        task = (dispatcher_task_t *)zlistx_next (self->dead);
    //  Dead letters still held were listed with the table
    while (task && task->state != DROVER_STATE_FAILED)
        task = (dispatcher_task_t *)zlistx_next (self->dead);
    return task;
}

dispatcher_task_t *
dispatcher_restore_lookup (dispatcher_t *self, uint64_t id)
{
    dispatcher_task_t *task = dispatcher_lookup (self, id);
    return task ? task : dispatcher_dead_lookup (self, id);
}

//  Forgets a task wherever it is, silently.
static void
s_forget (dispatcher_t *self, dispatcher_task_t *task)
{
    if (s_is_dead (task))
        s_dead_unlink (self, task);
    if (dispatcher_lookup (self, task->id) == task)
        s_remove (self, task);
    else
        s_task_destroy (self, &task);
}

dispatcher_task_t *
dispatcher_restore_task (dispatcher_t *self, const drover_task_t *spec,
                         void **payload_p)
{
    assert (spec->id);
    dispatcher_task_t *old = dispatcher_restore_lookup (self, spec->id);
    if (old)
        s_forget (self, old);
    //  The limits held when the task was taken: do not refuse it now
    uint64_t max_queued = self->config.max_queued;
    self->config.max_queued = UINT64_MAX;
    dispatcher_observer_fn *observer = self->observer;
    self->observer = NULL;
    uint64_t id = dispatcher_submit (self, spec, payload_p);
    self->observer = observer;
    self->config.max_queued = max_queued;
    if (!id)
        return NULL; //  over DISPATCHER_MAX_LANES
    self->counters.submitted--;
    if (self->next_id <= id)
        self->next_id = id + 1;
    return dispatcher_lookup (self, id);
}

void
dispatcher_restore_lease (dispatcher_t *self, dispatcher_task_t *task,
                          uint32_t attempt)
{
    (void)self;
    if (task->attempt < attempt)
        task->attempt = attempt;
    task->failed_attempt = false;
}

void
dispatcher_restore_failure (dispatcher_t *self, dispatcher_task_t *task,
                            const drover_task_t *outcome)
{
    (void)self;
    if (task->attempt < outcome->attempt)
        task->attempt = outcome->attempt;
    s_record (task, outcome, outcome->node);
    dispatcher_trouble_t *trouble = task->trouble;
    if (outcome->code == DROVER_ELOST)
        trouble->losses++;
    else {
        trouble->failures++;
        task->failed_attempt = true;
    }
    task->code = outcome->code;
    s_set_text (&trouble->reason, outcome->reason);
    s_set_text (&task->last_node, outcome->node);
    trouble->outcome = *outcome;
    trouble->outcome.handler = trouble->outcome.queue = NULL;
    trouble->outcome.key = trouble->outcome.reason = NULL;
    trouble->outcome.node = NULL;
    trouble->outcome.payload = (drover_bytes_t){NULL, 0};
}

void
dispatcher_restore_report (dispatcher_t *self, dispatcher_task_t *task,
                           int32_t code, const char *reason)
{
    if (task->state != DROVER_STATE_QUEUED)
        return; //  reported already, or a dead letter no longer held
    s_dequeue (task);
    s_set_text (&s_trouble (task)->reason, reason);
    if (code == DROVER_ECANCELLED) {
        s_report (self, task, code);
        if (task->payload && self->free_payload)
            self->free_payload (&task->payload);
    }
    else {
        task->trouble->outcome.code = code;
        s_fail_for_good (self, task, code);
        self->counters.failed--;
    }
}

void
dispatcher_restore_end (dispatcher_t *self, dispatcher_task_t *task,
                        int32_t code)
{
    if (dispatcher_lookup (self, task->id) != task)
        return; //  a dead letter that left the table already
    if (code == 0 && s_is_dead (task))
        s_dead_drop (self, task);
    s_remove (self, task);
}

void
dispatcher_restore_withdraw (dispatcher_t *self, dispatcher_task_t *task)
{
    s_forget (self, task);
}

void
dispatcher_restore_undead (dispatcher_t *self, dispatcher_task_t *task)
{
    if (s_is_dead (task))
        s_dead_drop (self, task);
}
