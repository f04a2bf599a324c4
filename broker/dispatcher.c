/*  dispatcher.c - task states, lanes, leases and credit-based dispatch.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "dispatcher.h"

#include <czmq.h>

//  A lane holds the queued tasks of one (queue, handler) pair, oldest
//  first. Lanes live as long as the dispatcher.
struct lane_t {
    char *queue;     //  queue name
    char *handler;   //  handler name
    zlistx_t *tasks; //  queued tasks, oldest first (not owned)
    uint64_t leased; //  its tasks leased to nodes
};

struct dispatcher_node_t {
    char *name;         //  node name, for logs and stats
    uint32_t children;  //  children it runs
    uint64_t credit;    //  tasks it asked for and did not get
    uint64_t done;      //  attempts it finished (done or failed)
    bool draining;      //  it takes no more tasks
    lane_t **lanes;     //  the lanes it serves
    size_t lane_count;  //  how many
    zlistx_t *leases;   //  tasks leased to it (not owned)
    void *peer;         //  the broker's handle for it
    void *ready_handle; //  place in the dispatcher's ready list
};

struct dispatcher_t {
    dispatcher_config_t config;     //  limits and policy
    payload_free_fn *free_payload;  //  frees payloads
    zhashx_t *tasks;                //  id -> dispatcher_task_t, owned
    zhashx_t *lanes;                //  "queue\x1fhandler" -> lane_t, owned
    zlistx_t *nodes;                //  dispatcher_node_t, owned
    zlistx_t *ready;                //  nodes with credit, least recently
                                    //  served first (not owned)
    zlistx_t *reports;              //  tasks in REPORTING (not owned)
    zlistx_t *revokes;              //  dispatcher_revoke_t, owned
    uint64_t next_id;               //  id of the next task
    dispatcher_counters_t counters; //  statistics
};

//  --------------------------------------------------------------------------
//  Task ids as zhashx keys: the key is a pointer to the task's id

static size_t
s_id_hash (const void *key)
{
    uint64_t id = *(const uint64_t *)key;
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id;
}

static int
s_id_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
s_task_destroy (void **item)
{
    dispatcher_task_t *task = (dispatcher_task_t *)*item;
    *item = NULL;
    free (task->key);
    free (task->reason);
    free (task->last_node);
    free (task);
}

static void
s_lane_destroy (void **item)
{
    lane_t *lane = (lane_t *)*item;
    *item = NULL;
    zlistx_destroy (&lane->tasks);
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
    zlistx_destroy (&node->leases);
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
    self->tasks = zhashx_new ();
    zhashx_set_key_hasher (self->tasks, s_id_hash);
    zhashx_set_key_comparator (self->tasks, s_id_compare);
    zhashx_set_key_duplicator (self->tasks, NULL);
    zhashx_set_key_destructor (self->tasks, NULL);
    zhashx_set_destructor (self->tasks, s_task_destroy);
    self->lanes = zhashx_new ();
    zhashx_set_destructor (self->lanes, s_lane_destroy);
    self->nodes = zlistx_new ();
    zlistx_set_destructor (self->nodes, s_node_destroy);
    self->ready = zlistx_new ();
    self->reports = zlistx_new ();
    self->revokes = zlistx_new ();
    zlistx_set_destructor (self->revokes, s_revoke_destroy);
    self->next_id = 1;
    return self;
}

void
dispatcher_destroy (dispatcher_t **self_p)
{
    assert (self_p);
    dispatcher_t *self = *self_p;
    if (!self)
        return;
    for (dispatcher_task_t *task =
             (dispatcher_task_t *)zhashx_first (self->tasks);
         task; task = (dispatcher_task_t *)zhashx_next (self->tasks))
        if (task->payload && self->free_payload)
            self->free_payload (&task->payload);
    zlistx_destroy (&self->revokes);
    zlistx_destroy (&self->reports);
    zlistx_destroy (&self->ready);
    zlistx_destroy (&self->nodes);
    zhashx_destroy (&self->tasks);
    zhashx_destroy (&self->lanes);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Lanes

static lane_t *
s_lane_require (dispatcher_t *self, const char *queue, const char *handler)
{
    char *key = zsys_sprintf ("%s\x1f%s", queue, handler);
    assert (key);
    lane_t *lane = (lane_t *)zhashx_lookup (self->lanes, key);
    if (!lane) {
        lane = (lane_t *)zmalloc (sizeof *lane);
        assert (lane);
        lane->queue = strdup (queue);
        lane->handler = strdup (handler);
        lane->tasks = zlistx_new ();
        assert (lane->queue && lane->handler && lane->tasks);
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
    task->queue_handle = at_head ? zlistx_add_start (task->lane->tasks, task)
                                 : zlistx_add_end (task->lane->tasks, task);
}

static void
s_dequeue (dispatcher_task_t *task)
{
    assert (task->state == DROVER_STATE_QUEUED);
    zlistx_detach (task->lane->tasks, task->queue_handle);
    task->queue_handle = NULL;
}

//  --------------------------------------------------------------------------
//  Tasks

uint64_t
dispatcher_room (dispatcher_t *self)
{
    uint64_t held = zhashx_size (self->tasks);
    return held >= self->config.max_queued ? 0 : self->config.max_queued - held;
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
        char *key = zsys_sprintf (
            "%s\x1f%s", spec->queue ? spec->queue : "default", spec->handler);
        bool known = zhashx_lookup (self->lanes, key) != NULL;
        zstr_free (&key);
        if (!known)
            return 0;
    }
    dispatcher_task_t *task = (dispatcher_task_t *)zmalloc (sizeof *task);
    assert (task);
    task->id = self->next_id++;
    task->lane = s_lane_require (self, spec->queue ? spec->queue : "default",
                                 spec->handler);
    task->queue = task->lane->queue;
    task->handler = task->lane->handler;
    task->key = spec->key ? strdup (spec->key) : NULL;
    task->timeout_ms = spec->timeout_ms;
    task->max_attempts =
        spec->max_attempts ? spec->max_attempts : self->config.max_attempts;
    task->payload = payload_p ? *payload_p : NULL;
    if (payload_p)
        *payload_p = NULL;
    zhashx_insert (self->tasks, &task->id, task);
    s_enqueue (task, false);
    self->counters.submitted++;
    return task->id;
}

dispatcher_task_t *
dispatcher_lookup (dispatcher_t *self, uint64_t id)
{
    return (dispatcher_task_t *)zhashx_lookup (self->tasks, &id);
}

static void
s_release_lease (dispatcher_task_t *task)
{
    assert (task->state == DROVER_STATE_LEASED);
    dispatcher_node_t *node = task->node;
    zlistx_detach (node->leases, task->lease_handle);
    task->lease_handle = NULL;
    task->lane->leased--;
    task->node = NULL;
}

//  The task ended without a node's result: its outcome goes to the sink.
static void
s_report (dispatcher_t *self, dispatcher_task_t *task, int32_t code)
{
    task->state = DROVER_STATE_REPORTING;
    task->code = code;
    task->reported_at = 0;
    task->report_handle = zlistx_add_end (self->reports, task);
    if (task->payload && self->free_payload)
        self->free_payload (&task->payload);
}

static void
s_set_text (char **field, const char *text)
{
    free (*field);
    *field = text ? strdup (text) : NULL;
}

static void
s_remove (dispatcher_t *self, dispatcher_task_t *task)
{
    if (task->state == DROVER_STATE_QUEUED)
        s_dequeue (task);
    else if (task->state == DROVER_STATE_LEASED)
        s_release_lease (task);
    else if (task->state == DROVER_STATE_REPORTING)
        zlistx_detach (self->reports, task->report_handle);
    if (task->payload && self->free_payload)
        self->free_payload (&task->payload);
    zhashx_delete (self->tasks, &task->id);
}

int
dispatcher_fail (dispatcher_t *self, dispatcher_node_t *node,
                 const drover_task_t *outcome)
{
    dispatcher_task_t *task = dispatcher_lookup (self, outcome->id);
    if (!task || task->state != DROVER_STATE_LEASED || task->node != node
        || task->attempt != outcome->attempt) {
        self->counters.stale++;
        return DROVER_ESTALE;
    }
    s_release_lease (task);
    node->done++;
    task->failures++;
    task->code = outcome->code;
    s_set_text (&task->reason, outcome->reason);
    task->outcome = *outcome;
    task->outcome.reason = NULL;
    task->outcome.node = NULL;
    task->outcome.payload = (drover_bytes_t){NULL, 0};
    bool retryable = outcome->code == DROVER_EFAILED
                     || outcome->code == DROVER_ECRASHED
                     || outcome->code == DROVER_ETIMELIMIT;
    if (retryable && task->failures < task->max_attempts) {
        self->counters.retried++;
        s_enqueue (task, false);
    }
    else {
        self->counters.failed++;
        s_report (self, task, outcome->code);
    }
    return 0;
}

int
dispatcher_done (dispatcher_t *self, uint64_t id, uint32_t attempt)
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
    s_remove (self, task);
    return 0;
}

drover_state_t
dispatcher_cancel (dispatcher_t *self, uint64_t id)
{
    dispatcher_task_t *task = dispatcher_lookup (self, id);
    if (!task)
        return DROVER_STATE_UNKNOWN;
    if (task->state == DROVER_STATE_QUEUED)
        s_dequeue (task);
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
    s_set_text (&task->reason, "cancelled by a client");
    s_report (self, task, DROVER_ECANCELLED);
    return task->state;
}

//  --------------------------------------------------------------------------
//  Nodes

dispatcher_node_t *
dispatcher_node_add (dispatcher_t *self, const char *name, uint32_t children,
                     const char **handlers, size_t handler_count,
                     const char **queues, size_t queue_count, void *peer)
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
    node->leases = zlistx_new ();
    node->lanes =
        (lane_t **)calloc (handler_count * queue_count + 1, sizeof (lane_t *));
    assert (node->name && node->leases && node->lanes);
    for (size_t q = 0; q < queue_count; q++)
        for (size_t h = 0; h < handler_count; h++) {
            lane_t *lane = s_lane_require (self, queues[q], handlers[h]);
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
    while ((task = (dispatcher_task_t *)zlistx_last (node->leases))) {
        s_release_lease (task);
        task->losses++;
        self->counters.lost++;
        if (task->losses > self->config.max_losses) {
            self->counters.failed++;
            s_set_text (&task->reason,
                        "the nodes running this task were lost too often");
            s_report (self, task, DROVER_ELOST);
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
    return zlistx_size (node->leases);
}

//  The node's lane whose head task is the oldest, or NULL.
static lane_t *
s_oldest_lane (dispatcher_node_t *node)
{
    lane_t *oldest = NULL;
    uint64_t oldest_id = UINT64_MAX;
    for (size_t i = 0; i < node->lane_count; i++) {
        dispatcher_task_t *head =
            (dispatcher_task_t *)zlistx_head (node->lanes[i]->tasks);
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
            dispatcher_task_t *task =
                (dispatcher_task_t *)zlistx_head (lane->tasks);
            s_dequeue (task);
            task->state = DROVER_STATE_LEASED;
            task->node = node;
            task->attempt++;
            task->lease_handle = zlistx_add_end (node->leases, task);
            s_set_text (&task->last_node, node->name);
            lane->leased++;
            node->credit--;
            self->counters.dispatched++;
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
    return (dispatcher_task_t *)zlistx_first (self->reports);
}

dispatcher_task_t *
dispatcher_report_next (dispatcher_t *self)
{
    return (dispatcher_task_t *)zlistx_next (self->reports);
}

dispatcher_task_t *
dispatcher_report_last (dispatcher_t *self)
{
    return (dispatcher_task_t *)zlistx_last (self->reports);
}

dispatcher_task_t *
dispatcher_report_prev (dispatcher_t *self)
{
    return (dispatcher_task_t *)zlistx_prev (self->reports);
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
    return zhashx_size (self->tasks);
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
        infos[i].queued += zlistx_size (lane->tasks);
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
                                 zlistx_size (node->leases), node->done};
    return count;
}
