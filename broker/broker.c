/*  broker.c - the broker actor: sockets, sessions and heartbeats around the
    dispatcher.

    One ROUTER socket serves clients, nodes and the sink (SPEC.md 2.2). Node
    and sink sessions live in a table keyed by routing id; clients keep no
    session. Every event ends with s_flush, which sends what the dispatcher
    decided: DISPATCHes against credit, REVOKEs, and RESULTs of tasks that
    ended without a node's result. It also queues again the retries that
    fell due, and arms a one-shot timer for the next one, so a retry waits
    its backoff and not a heartbeat more.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "actor_start.h"
#include "dispatcher.h"
#include "drover_broker.h"
#include "drover_sink.h"
#include "drover_wire.h"
#include "task_journal.h"
#include "task_payload.h"
#include "token_table.h"

#include <sys/random.h>
#include <sys/stat.h>

//  Messages handled per wakeup before one commit (group commit) and one
//  round of dispatch.
#define S_MAX_DRAIN 256

//  An informational log line, unless the config says quiet
#define s_info(self, ...)                                                      \
    do {                                                                       \
        if (!(self)->config.quiet)                                             \
            zsys_info (__VA_ARGS__);                                           \
    } while (0)

//  Least time between two attempts to mend a lost journal on SUBMIT.
#define S_CHECKPOINT_RETRY_MS 250

//  SUBMIT tokens remembered (SPEC.md 7.6), and the ids they hold in all
//  (32 MiB of ids).
#define S_MAX_TOKENS    65536
#define S_MAX_TOKEN_IDS (4u << 20)

typedef enum { ROLE_NODE, ROLE_SINK } s_role_t;

//  A node or sink session.
typedef struct {
    char *key;               //  routing id in hex: the table key
    zframe_t *routing_id;    //  where to send
    s_role_t role;           //  node or sink
    char *name;              //  its name, for logs
    dispatcher_node_t *node; //  nodes: its dispatcher record
    int64_t last_recv;       //  when it last sent anything (ms)
    int64_t last_send;       //  when we last sent it anything (ms)
} s_peer_t;

typedef struct {
    drover_broker_config_t config; //  settings (strings below are copies)
    char *endpoint;                //  bound endpoint
    char *inproc;                  //  in-process endpoint for the embedded sink
    char *sink_endpoint;           //  endpoint told to peers, or NULL
    char instance[33];             //  id of this broker run
    zsock_t *pipe;                 //  actor pipe
    zsock_t *router;               //  the broker socket
    zloop_t *loop;                 //  reactor
    zactor_t *sink;                //  embedded sink, or NULL
    drover_sink_t *attached_sink;  //  or one in this thread, or NULL
    dispatcher_t *dispatcher;      //  tasks and nodes
    zhashx_t *peers;               //  routing id hex -> s_peer_t, owned
    s_peer_t *sink_peer;           //  the registered sink session, or NULL
    uint64_t malformed;            //  malformed messages received
    drover_task_t *scratch;   //  DROVER_MAX_BATCH items for building replies
    zframe_t **frames;        //  DROVER_MAX_BATCH payload frames
    zframe_t *empty;          //  the empty payload of reported failures
    int retry_timer;          //  zloop timer of the next retry, or -1
    int64_t retry_due;        //  when that timer fires (ms), if armed
    task_journal_t *journal;  //  durable mode: the task journal, or NULL
    token_table_t *tokens;    //  SUBMIT tokens and the ids they were given
    zlistx_t *acks;           //  s_ack_t waiting for the next commit
    int64_t checkpoint_tried; //  when a lost journal was last mended (ms)
    bool queued;              //  a SUBMIT of this drain queued new tasks
} s_broker_t;

//  A SUBMITTED that waits for its tasks to be on disk.
typedef struct {
    zframe_t *routing_id; //  the client
    uint64_t ref;         //  its request
    uint64_t *ids;        //  the ids to acknowledge
    bool *created;        //  which ids are new tasks (NULL: a RETRY, or a
                          //  SUBMIT sent again with its token)
    size_t count;
    char *token; //  the SUBMIT's token, or NULL
} s_ack_t;

static void
s_ack_destroy (void **item)
{
    s_ack_t *ack = (s_ack_t *)*item;
    *item = NULL;
    zframe_destroy (&ack->routing_id);
    free (ack->token);
    free (ack->ids);
    free (ack->created);
    free (ack);
}

static void
s_peer_destroy (void **item)
{
    s_peer_t *peer = (s_peer_t *)*item;
    *item = NULL;
    zframe_destroy (&peer->routing_id);
    free (peer->key);
    free (peer->name);
    free (peer);
}

static void
s_free_payload (void **payload)
{
    task_payload_destroy ((task_payload_t **)payload);
}

drover_broker_config_t
drover_broker_config_default (void)
{
    drover_broker_config_t config = {
        .endpoint = "tcp://127.0.0.1:5555",
        .heartbeat_ms = 1000,
        .liveness = 5,
        .max_payload = 64u << 20,
        .max_queued = 1000000,
        .max_attempts = 1,
        .max_results = 1ull << 30,
        .retry_delay_ms = 1000,
        .retry_max_delay_ms = 60000,
        .max_dead = 10000,
        .fsync = DROVER_FSYNC_BATCH,
        .sync_interval_ms = 200,
        .segment_size = 64u << 20,
        .result_ttl_ms = 24ull * 3600 * 1000,
    };
    return config;
}

static int64_t
s_expiry_ms (s_broker_t *self)
{
    return (int64_t)self->config.heartbeat_ms * self->config.liveness;
}

//  --------------------------------------------------------------------------
//  Sending

static int
s_send (s_broker_t *self, zframe_t *routing_id, drover_msg_t *msg,
        zframe_t **payloads)
{
    if (self->config.verbose)
        zsys_debug ("broker: send %s", drover_command_name (msg->command));
    return drover_wire_send (self->router, routing_id, msg, payloads);
}

static void
s_send_peer (s_broker_t *self, s_peer_t *peer, drover_msg_t *msg,
             zframe_t **payloads)
{
    s_send (self, peer->routing_id, msg, payloads);
    peer->last_send = zclock_mono ();
}

static void
s_send_welcome (s_broker_t *self, zframe_t *routing_id)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_WELCOME);
    msg.instance = self->instance;
    msg.endpoint = self->sink_endpoint;
    msg.heartbeat_ms = self->config.heartbeat_ms;
    msg.liveness = self->config.liveness;
    msg.max_payload = self->config.max_payload;
    msg.max_batch = DROVER_MAX_BATCH;
    s_send (self, routing_id, &msg, NULL);
}

static void
s_send_bye (s_broker_t *self, zframe_t *routing_id, int code,
            const char *reason)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_BYE);
    msg.code = code;
    msg.reason = reason;
    s_send (self, routing_id, &msg, NULL);
}

static void s_commit (s_broker_t *self);

//  One node's DISPATCH.
static void
s_send_dispatch (s_broker_t *self, s_peer_t *peer, dispatcher_task_t **leased,
                 size_t count)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_DISPATCH);
    for (size_t i = 0; i < count; i++) {
        self->scratch[i] = (drover_task_t){
            .id = leased[i]->id,
            .attempt = leased[i]->attempt,
            .handler = dispatcher_task_handler (leased[i]),
            .queue = dispatcher_task_queue (leased[i]),
            .key = leased[i]->key,
            .timeout_ms = leased[i]->timeout_ms,
            .soft_timeout_ms = leased[i]->soft_timeout_ms,
            .items = leased[i]->items,
        };
        self->frames[i] =
            task_payload_lend ((task_payload_t *)leased[i]->payload);
    }
    msg.tasks = self->scratch;
    msg.task_count = count;
    s_send_peer (self, peer, &msg, self->frames);
    for (size_t i = 0; i < count; i++)
        task_payload_unlend ((task_payload_t *)leased[i]->payload,
                             &self->frames[i]);
}

//  Sends DISPATCHes for all the credit that has tasks. In durable mode
//  the leases are written first: no attempt leaves before its record, so
//  a broker restarted after a kill never hands the same attempt number
//  out twice (SPEC.md 7.2).
static void
s_dispatch (s_broker_t *self)
{
    dispatcher_node_t *node;
    dispatcher_task_t *leased[DROVER_MAX_BATCH];
    size_t count;
    if (!self->journal) {
        while ((count = dispatcher_next (self->dispatcher, &node, leased,
                                         DROVER_MAX_BATCH)))
            s_send_dispatch (self, (s_peer_t *)dispatcher_node_peer (node),
                             leased, count);
        return;
    }
    //  Every batch leased (the tasks stay put: nothing frees them before
    //  they are sent), then one write, then the sends
    typedef struct {
        s_peer_t *peer;
        dispatcher_task_t **tasks;
        size_t count;
    } s_batch_t;
    s_batch_t *batches = NULL;
    size_t batch_count = 0;
    while ((count = dispatcher_next (self->dispatcher, &node, leased,
                                     DROVER_MAX_BATCH))) {
        batches =
            (s_batch_t *)realloc (batches, (batch_count + 1) * sizeof *batches);
        assert (batches);
        s_batch_t *batch = &batches[batch_count++];
        batch->peer = (s_peer_t *)dispatcher_node_peer (node);
        batch->count = count;
        batch->tasks =
            (dispatcher_task_t **)malloc (count * sizeof (dispatcher_task_t *));
        assert (batch->tasks);
        memcpy (batch->tasks, leased, count * sizeof (dispatcher_task_t *));
    }
    if (batch_count)
        s_commit (self);
    for (size_t b = 0; b < batch_count; b++) {
        s_send_dispatch (self, batches[b].peer, batches[b].tasks,
                         batches[b].count);
        free (batches[b].tasks);
    }
    free (batches);
}

//  Sends the RESULT of one task that ended without a node's result to the
//  sink, batching up to DROVER_MAX_BATCH; task NULL sends the batch.
static void
s_report_one (s_broker_t *self, dispatcher_task_t *task, size_t *count)
{
    if (task) {
        //  Only failed and cancelled tasks report: they have their trouble
        dispatcher_trouble_t *trouble = task->trouble;
        trouble->reported_at = zclock_mono ();
        drover_task_t *item = &self->scratch[*count];
        *item = trouble->outcome;
        item->id = task->id;
        item->attempt = task->attempt;
        item->code = task->code;
        item->reason = trouble->reason;
        item->node = task->last_node;
        item->payload = (drover_bytes_t){NULL, 0};
        self->frames[(*count)++] = self->empty;
    }
    if (*count == DROVER_MAX_BATCH || (!task && *count > 0)) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_RESULT);
        msg.tasks = self->scratch;
        msg.task_count = *count;
        s_send_peer (self, self->sink_peer, &msg, self->frames);
        *count = 0;
    }
}

//  Sends the sink the RESULTs of tasks that ended without a node's result:
//  with min_age < 0 only those never sent (at the end of the list), else
//  also those sent at least min_age ms ago and not yet DONE.
static void
s_report (s_broker_t *self, int64_t min_age)
{
    if (!self->sink_peer)
        return;
    int64_t now = zclock_mono ();
    size_t count = 0;
    if (min_age >= 0) {
        for (dispatcher_task_t *task =
                 dispatcher_report_first (self->dispatcher);
             task; task = dispatcher_report_next (self->dispatcher))
            if (!task->trouble->reported_at
                || now - task->trouble->reported_at >= min_age)
                s_report_one (self, task, &count);
    }
    else
        for (dispatcher_task_t *task =
                 dispatcher_report_last (self->dispatcher);
             task && !task->trouble->reported_at;
             task = dispatcher_report_prev (self->dispatcher))
            s_report_one (self, task, &count);
    s_report_one (self, NULL, &count);
}

static void
s_revoke (s_broker_t *self)
{
    dispatcher_revoke_t revoke;
    while (dispatcher_revoke_pop (self->dispatcher, &revoke)) {
        s_peer_t *peer = (s_peer_t *)revoke.peer;
        drover_task_t item = {
            .id = revoke.id, .attempt = revoke.attempt, .code = revoke.code};
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_REVOKE);
        msg.tasks = &item;
        msg.task_count = 1;
        s_send_peer (self, peer, &msg, NULL);
    }
}

static int s_handle_retry_timer (zloop_t *loop, int timer_id, void *arg);

//  Arms the retry timer for the next retry, unless it is armed for earlier.
static void
s_arm_retry_timer (s_broker_t *self)
{
    int64_t due = dispatcher_next_due (self->dispatcher);
    if (due < 0 || (self->retry_timer >= 0 && self->retry_due <= due))
        return; //  an early timer finds nothing due, and arms again
    if (self->retry_timer >= 0)
        zloop_timer_end (self->loop, self->retry_timer);
    int64_t delay = due - zclock_mono ();
    self->retry_timer = zloop_timer (self->loop, delay > 0 ? (size_t)delay : 0,
                                     1, s_handle_retry_timer, self);
    self->retry_due = due;
}

static void
s_flush (s_broker_t *self)
{
    dispatcher_tick (self->dispatcher, zclock_mono ());
    s_revoke (self);
    s_report (self, -1);
    s_dispatch (self);
    s_arm_retry_timer (self);
}

static int
s_handle_retry_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    s_broker_t *self = (s_broker_t *)arg;
    //  A one-shot timer ends by itself. A timer already ended may still
    //  fire in the same pass of the loop: it must not forget the new one.
    if (timer_id == self->retry_timer)
        self->retry_timer = -1;
    s_flush (self);
    s_commit (self);
    return 0;
}

//  --------------------------------------------------------------------------
//  Sessions

static void
s_peer_remove (s_broker_t *self, s_peer_t *peer, const char *why)
{
    s_info (self, "broker: %s %s (%s) %s",
            peer->role == ROLE_NODE ? "node" : "sink", peer->name, peer->key,
            why);
    if (peer->node) {
        uint64_t leased = dispatcher_node_leased (peer->node);
        if (leased)
            zsys_warning ("broker: re-queueing %llu tasks of node %s",
                          (unsigned long long)leased, peer->name);
        dispatcher_node_remove (self->dispatcher, &peer->node);
    }
    if (peer == self->sink_peer)
        self->sink_peer = NULL;
    char *key = peer->key;
    peer->key = NULL;
    zhashx_delete (self->peers, key);
    free (key);
}

static void
s_handle_hello (s_broker_t *self, zframe_t *routing_id, const char *key,
                drover_msg_t *msg)
{
    s_role_t role;
    if (streq (msg->role, "client")) {
        s_send_welcome (self, routing_id);
        return;
    }
    else if (streq (msg->role, "node")) {
        if (msg->handler_count == 0 || msg->children == 0) {
            drover_wire_send_error (self->router, routing_id, 0, DROVER_EINVAL,
                                    "node HELLO needs children and handlers");
            return;
        }
        role = ROLE_NODE;
    }
    else if (streq (msg->role, "sink")) {
        if (!msg->endpoint || !*msg->endpoint) {
            drover_wire_send_error (self->router, routing_id, 0, DROVER_EINVAL,
                                    "sink HELLO needs its endpoint");
            return;
        }
        role = ROLE_SINK;
    }
    else {
        drover_wire_send_error (self->router, routing_id, 0, DROVER_EINVAL,
                                "role '%s' is not client, node or sink",
                                msg->role);
        return;
    }
    s_peer_t *old = (s_peer_t *)zhashx_lookup (self->peers, key);
    if (old)
        s_peer_remove (self, old, "said HELLO again");

    s_peer_t *peer = (s_peer_t *)zmalloc (sizeof *peer);
    assert (peer);
    peer->key = strdup (key);
    peer->routing_id = zframe_dup (routing_id);
    peer->role = role;
    peer->name = strdup (msg->name);
    peer->last_recv = peer->last_send = zclock_mono ();
    zhashx_insert (self->peers, key, peer);

    if (role == ROLE_NODE) {
        peer->node =
            dispatcher_node_add (self->dispatcher, msg->name, msg->children,
                                 msg->handlers, msg->handler_count, msg->queues,
                                 msg->queue_count, msg->chunks, peer);
        s_info (self, "broker: node %s joined with %u children", msg->name,
                msg->children);
        s_send_welcome (self, routing_id);
        return;
    }
    //  A (new) sink: every node learns where results now go
    if (self->sink_peer)
        s_peer_remove (self, self->sink_peer, "replaced by a new sink");
    self->sink_peer = peer;
    if (!self->sink_endpoint || strneq (self->sink_endpoint, msg->endpoint)) {
        free (self->sink_endpoint);
        self->sink_endpoint = strdup (msg->endpoint);
        s_info (self, "broker: sink %s at %s", msg->name, msg->endpoint);
        for (s_peer_t *other = (s_peer_t *)zhashx_first (self->peers); other;
             other = (s_peer_t *)zhashx_next (self->peers))
            if (other->role == ROLE_NODE)
                s_send_welcome (self, other->routing_id);
    }
    s_send_welcome (self, routing_id);
    s_report (self, 0);
}

//  --------------------------------------------------------------------------
//  The journal: acknowledgements wait for their records (SPEC.md 12)

//  True unless a failed commit lost journal records; then tries to mend
//  the journal with a checkpoint, at most every S_CHECKPOINT_RETRY_MS.
static bool
s_journal_whole (s_broker_t *self)
{
    if (!self->journal || !task_journal_lost (self->journal))
        return true;
    int64_t now = zclock_mono ();
    if (now - self->checkpoint_tried < S_CHECKPOINT_RETRY_MS)
        return false;
    self->checkpoint_tried = now;
    if (task_journal_checkpoint (self->journal) != 0)
        return false;
    s_info (self,
            "broker: the journal is written again (%llu tasks "
            "checkpointed); submits are accepted",
            (unsigned long long)dispatcher_task_count (self->dispatcher));
    return true;
}

static void
s_refuse_unjournaled (s_broker_t *self, zframe_t *routing_id, uint64_t ref)
{
    drover_wire_send_error (
        self->router, routing_id, ref, DROVER_ESTORAGE,
        "the broker cannot write its journal (%s): nothing was queued; "
        "retry later",
        task_journal_error (self->journal));
}

static void
s_send_submitted (s_broker_t *self, zframe_t *routing_id, uint64_t ref,
                  const char *token, uint64_t *ids, size_t count)
{
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = ref;
    reply.token = token;
    reply.ids = ids;
    reply.id_count = count;
    s_send (self, routing_id, &reply, NULL);
}

//  Answers SUBMITTED now, or after the next commit in durable mode. Takes
//  ids and created (NULL for a RETRY).
static void
s_acknowledge (s_broker_t *self, zframe_t *routing_id, uint64_t ref,
               const char *token, uint64_t *ids, bool *created, size_t count)
{
    if (!self->journal) {
        s_send_submitted (self, routing_id, ref, token, ids, count);
        free (ids);
        free (created);
        return;
    }
    s_ack_t *ack = (s_ack_t *)zmalloc (sizeof *ack);
    assert (ack);
    *ack = (s_ack_t){zframe_dup (routing_id),      ref, ids, created, count,
                     token ? strdup (token) : NULL};
    zlistx_add_end (self->acks, ack);
}

//  A commit failed: the tasks of a waiting SUBMIT are withdrawn (nothing
//  was dispatched since they came) and the client told.
static void
s_refuse_ack (s_broker_t *self, s_ack_t *ack)
{
    if (ack->created || ack->token) {
        for (size_t i = 0; ack->created && i < ack->count; i++) {
            dispatcher_task_t *task =
                dispatcher_lookup (self->dispatcher, ack->ids[i]);
            if (ack->created[i] && task && task->attempt == 0
                && task->state == DROVER_STATE_QUEUED)
                dispatcher_withdraw (self->dispatcher, ack->ids[i]);
        }
        if (ack->token)
            token_table_remove (self->tokens, ack->token);
        s_refuse_unjournaled (self, ack->routing_id, ack->ref);
    }
    else
        drover_wire_send_error (
            self->router, ack->routing_id, ack->ref, DROVER_ESTORAGE,
            "the broker cannot write its journal (%s): the dead letters "
            "were resubmitted, but a broker restart would lose them",
            task_journal_error (self->journal));
}

//  Writes the journal (one fdatasync for every SUBMIT waiting: group
//  commit) and answers the SUBMITs that waited.
static void
s_commit (s_broker_t *self)
{
    if (!self->journal)
        return;
    bool was_lost = task_journal_lost (self->journal);
    bool sync = zlistx_size (self->acks) > 0;
    int rc = 0;
    if (sync || task_journal_pending (self->journal))
        rc = task_journal_commit (self->journal, sync);
    if (rc != 0 && !was_lost)
        zsys_error ("broker: cannot write the journal: %s; submits are "
                    "refused until it can be written",
                    task_journal_error (self->journal));
    s_ack_t *ack;
    while ((ack = (s_ack_t *)zlistx_first (self->acks))) {
        if (rc == 0)
            s_send_submitted (self, ack->routing_id, ack->ref, ack->token,
                              ack->ids, ack->count);
        else
            s_refuse_ack (self, ack);
        zlistx_delete (self->acks, zlistx_cursor (self->acks));
    }
}

//  A SUBMIT whose token the broker remembers gets the ids it was given
//  (SPEC.md 7.6). Returns false for a token it does not know.
static bool
s_submit_again (s_broker_t *self, zframe_t *routing_id, drover_msg_t *msg)
{
    size_t count;
    const uint64_t *known =
        token_table_lookup (self->tokens, msg->token, &count);
    if (!known)
        return false;
    if (count != msg->task_count) {
        drover_wire_send_error (
            self->router, routing_id, msg->ref, DROVER_EINVAL,
            "token %s named a SUBMIT of %zu tasks, this one has %zu: a token "
            "names one request",
            msg->token, count, msg->task_count);
        return true;
    }
    //  Its tasks are on disk, unless its first SUBMIT waits for the same
    //  commit as this one (then both share that commit's fate)
    bool waiting = false;
    for (s_ack_t *ack = (s_ack_t *)zlistx_first (self->acks); ack && !waiting;
         ack = (s_ack_t *)zlistx_next (self->acks))
        waiting = ack->token && streq (ack->token, msg->token);
    if (!waiting) {
        s_send_submitted (self, routing_id, msg->ref, msg->token,
                          (uint64_t *)known, count);
        return true;
    }
    uint64_t *ids = (uint64_t *)malloc (count * sizeof (uint64_t));
    assert (ids);
    memcpy (ids, known, count * sizeof (uint64_t));
    s_acknowledge (self, routing_id, msg->ref, msg->token, ids, NULL, count);
    return true;
}

static void
s_handle_submit (s_broker_t *self, zframe_t *routing_id,
                 drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    if (msg->token && s_submit_again (self, routing_id, msg))
        return;
    if (!s_journal_whole (self)) {
        s_refuse_unjournaled (self, routing_id, msg->ref);
        return;
    }
    if (dispatcher_room (self->dispatcher) < msg->task_count) {
        drover_wire_send_error (
            self->router, routing_id, msg->ref, DROVER_EFULL,
            "the broker holds %llu tasks, its limit: retry later",
            (unsigned long long)dispatcher_task_count (self->dispatcher));
        return;
    }
    for (size_t i = 0; i < msg->task_count; i++) {
        const drover_task_t *task = &msg->tasks[i];
        if (task->payload.size > self->config.max_payload) {
            drover_wire_send_error (
                self->router, routing_id, msg->ref, DROVER_ETOOBIG,
                "tasks[%zu]: payload of %zu octets, the limit is %llu", i,
                task->payload.size,
                (unsigned long long)self->config.max_payload);
            return;
        }
        if (task->retry_delay_ms > DISPATCHER_MAX_DELAY_MS
            || task->retry_max_delay_ms > DISPATCHER_MAX_DELAY_MS) {
            drover_wire_send_error (
                self->router, routing_id, msg->ref, DROVER_EINVAL,
                "tasks[%zu]: retry_%sdelay_ms is %llu, at most %llu ms (7 "
                "days) is allowed",
                i, task->retry_delay_ms > DISPATCHER_MAX_DELAY_MS ? "" : "max_",
                (unsigned long long)(task->retry_delay_ms
                                             > DISPATCHER_MAX_DELAY_MS
                                         ? task->retry_delay_ms
                                         : task->retry_max_delay_ms),
                (unsigned long long)DISPATCHER_MAX_DELAY_MS);
            return;
        }
    }
    uint64_t *ids = (uint64_t *)calloc (msg->task_count, sizeof (uint64_t));
    assert (ids);
    bool *created = (bool *)calloc (msg->task_count, sizeof (bool));
    assert (created);
    if (self->journal)
        task_journal_submit_begin (self->journal, msg->token);
    size_t accepted = 0, new_tasks = 0;
    for (; accepted < msg->task_count; accepted++) {
        zframe_t *frame = drover_packet_take_payload (packet, accepted);
        void *payload = task_payload_take (&frame);
        ids[accepted] = dispatcher_submit (self->dispatcher,
                                           &msg->tasks[accepted], &payload);
        //  A resubmission of a task held already leaves its payload here
        created[accepted] = ids[accepted] && !payload;
        new_tasks += created[accepted];
        s_free_payload (&payload);
        if (!ids[accepted])
            break;
    }
    if (accepted < msg->task_count) {
        //  All or nothing: the lane limit refused one
        for (size_t i = 0; i < accepted; i++)
            if (created[i])
                dispatcher_withdraw (self->dispatcher, ids[i]);
        if (self->journal)
            task_journal_submit_end (self->journal, NULL, 0, 0);
        drover_wire_send_error (self->router, routing_id, msg->ref,
                                DROVER_EFULL,
                                "too many distinct queues and handlers");
    }
    else {
        if (msg->token)
            token_table_insert (self->tokens, msg->token, ids, msg->task_count);
        if (self->journal)
            task_journal_submit_end (self->journal, ids, msg->task_count,
                                     new_tasks);
        self->queued |= new_tasks > 0;
        s_acknowledge (self, routing_id, msg->ref, msg->token, ids, created,
                       msg->task_count);
        return; //  it owns ids and created now
    }
    free (created);
    free (ids);
}

//  STATUS and CANCEL both answer with STATUS_REPLY.
static void
s_handle_status (s_broker_t *self, zframe_t *routing_id, drover_msg_t *msg)
{
    for (size_t i = 0; i < msg->id_count; i++) {
        if (msg->command == DROVER_CANCEL)
            dispatcher_cancel (self->dispatcher, msg->ids[i]);
        dispatcher_task_t *task =
            dispatcher_lookup (self->dispatcher, msg->ids[i]);
        if (!task) //  a dead letter whose failure the sink stored
            task = dispatcher_dead_lookup (self->dispatcher, msg->ids[i]);
        drover_task_t *item = &self->scratch[i];
        *item = (drover_task_t){.id = msg->ids[i]};
        if (!task)
            continue;
        item->state = task->state;
        item->attempt = task->attempt;
        item->max_attempts = task->max_attempts;
        item->handler = dispatcher_task_handler (task);
        item->queue = dispatcher_task_queue (task);
        item->node = task->last_node;
        item->code = task->code;
        item->reason = dispatcher_task_reason (task);
    }
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STATUS_REPLY);
    reply.ref = msg->ref;
    reply.tasks = self->scratch;
    reply.task_count = msg->id_count;
    s_send (self, routing_id, &reply, NULL);
}

static void
s_handle_stats (s_broker_t *self, zframe_t *routing_id, drover_msg_t *msg)
{
    //  On the heap: 4096 of each would crowd an actor thread's stack, and
    //  statics would be shared by every broker in the process
    drover_queue_info_t *queues = (drover_queue_info_t *)calloc (
        DROVER_MAX_BATCH, sizeof (drover_queue_info_t));
    drover_node_info_t *nodes = (drover_node_info_t *)calloc (
        DROVER_MAX_BATCH, sizeof (drover_node_info_t));
    assert (queues && nodes);
    const dispatcher_counters_t *counters =
        dispatcher_counters (self->dispatcher);
    drover_counter_t values[] = {
        {"submitted", counters->submitted},
        {"dispatched", counters->dispatched},
        {"done", counters->done},
        {"failed", counters->failed},
        {"retried", counters->retried},
        {"lost", counters->lost},
        {"stale", counters->stale},
        {"cancelled", counters->cancelled},
        {"held", dispatcher_task_count (self->dispatcher)},
        {"malformed", self->malformed},
        {"retrying", dispatcher_retrying (self->dispatcher)},
        {"dead", dispatcher_dead_count (self->dispatcher)},
        {"dead_dropped", counters->dead_dropped},
        //  Durable mode (zero without --data)
        {"journal_octets",
         self->journal ? task_journal_size (self->journal) : 0},
        {"journal_live_octets",
         self->journal ? task_journal_live (self->journal) : 0},
        {"journal_compactions",
         self->journal ? task_journal_compacted (self->journal) : 0},
        {"journal_lost", self->journal ? task_journal_lost (self->journal) : 0},
    };
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STATS_REPLY);
    reply.ref = msg->ref;
    reply.queue_infos = queues;
    reply.queue_info_count =
        dispatcher_queue_infos (self->dispatcher, queues, DROVER_MAX_BATCH);
    reply.node_infos = nodes;
    reply.node_info_count =
        dispatcher_node_infos (self->dispatcher, nodes, DROVER_MAX_BATCH);
    reply.counters = values;
    reply.counter_count = sizeof values / sizeof values[0];
    s_send (self, routing_id, &reply, NULL);
    free (queues);
    free (nodes);
}

//  Octets a DEAD_REPLY item takes at most besides its strings: key names
//  and numbers.
#define S_DEAD_ITEM_OCTETS 256

//  Adds the DEAD_REPLY items of one dead letter, one per attempt kept, if
//  they all fit in the batch and in a header frame (*octets counts what the
//  items so far take at most); returns false if not.
static bool
s_dead_items (s_broker_t *self, dispatcher_task_t *dead, size_t *count,
              size_t *octets)
{
    const dispatcher_history_t *history = dispatcher_task_history (dead);
    const char *handler = dispatcher_task_handler (dead);
    const char *queue = dispatcher_task_queue (dead);
    const char *reason = dispatcher_task_reason (dead);
    size_t kept = dispatcher_history_size (history);
    if (*count + (kept ? kept : 1) > DROVER_MAX_BATCH)
        return false;
    size_t size = S_DEAD_ITEM_OCTETS + strlen (handler) + strlen (queue)
                  + (reason ? strlen (reason) : 0)
                  + (dead->last_node ? strlen (dead->last_node) : 0);
    for (size_t i = 0; i < kept; i++) {
        const dispatcher_attempt_t *attempt =
            dispatcher_history_get (history, i);
        size += S_DEAD_ITEM_OCTETS + strlen (handler) + strlen (queue)
                + (attempt->reason ? strlen (attempt->reason) : 0)
                + (attempt->node ? strlen (attempt->node) : 0);
    }
    if (*octets + size > DROVER_MAX_HEADER - 1024)
        return false;
    *octets += size;
    drover_task_t common = {
        .id = dead->id,
        .attempt = dead->attempt,
        .code = dead->code,
        .handler = handler,
        .queue = queue,
        .max_attempts = dead->max_attempts,
        .reason = reason,
        .node = dead->last_node,
    };
    if (kept == 0) //  never happens: every way to die records an attempt
        self->scratch[(*count)++] = common;
    for (size_t i = 0; i < kept; i++) {
        const dispatcher_attempt_t *attempt =
            dispatcher_history_get (history, i);
        drover_task_t *item = &self->scratch[(*count)++];
        *item = common;
        item->attempt = attempt->attempt;
        item->code = attempt->code;
        item->reason = attempt->reason;
        item->node = attempt->node;
        item->elapsed_us = attempt->elapsed_us;
        item->cpu_us = attempt->cpu_us;
        item->signal = attempt->signal;
        item->exit_status = attempt->exit_status;
        item->max_rss_kb = attempt->max_rss_kb;
    }
    return true;
}

//  DEAD: the named dead letters, or the oldest, as many as fit in one reply
//  (max_batch items, one header frame).
static void
s_handle_dead (s_broker_t *self, zframe_t *routing_id, drover_msg_t *msg)
{
    size_t count = 0, octets = 0;
    if (msg->id_count > 0) {
        for (size_t i = 0; i < msg->id_count; i++) {
            dispatcher_task_t *dead =
                dispatcher_dead_lookup (self->dispatcher, msg->ids[i]);
            if (dead && !s_dead_items (self, dead, &count, &octets))
                break;
        }
    }
    else
        for (dispatcher_task_t *dead = dispatcher_dead_first (self->dispatcher);
             dead && s_dead_items (self, dead, &count, &octets);
             dead = dispatcher_dead_next (self->dispatcher))
            ;
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_DEAD_REPLY);
    reply.ref = msg->ref;
    reply.tasks = self->scratch;
    reply.task_count = count;
    s_send (self, routing_id, &reply, NULL);
}

static int
s_compare_ids (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  RETRY: submits dead letters again, all of them or none.
static void
s_handle_retry (s_broker_t *self, zframe_t *routing_id, drover_msg_t *msg)
{
    if (!s_journal_whole (self)) {
        s_refuse_unjournaled (self, routing_id, msg->ref);
        return;
    }
    if (msg->all == (msg->id_count > 0)) {
        drover_wire_send_error (self->router, routing_id, msg->ref,
                                DROVER_EINVAL,
                                "RETRY needs either ids or all, %s",
                                msg->all ? "not both" : "and has neither");
        return;
    }
    uint64_t *ids = (uint64_t *)calloc (DROVER_MAX_BATCH, sizeof (uint64_t));
    assert (ids);
    size_t count = 0;
    if (msg->all) {
        //  SUBMITTED carries at most max_batch ids: the oldest go first
        for (dispatcher_task_t *dead = dispatcher_dead_first (self->dispatcher);
             dead && count < DROVER_MAX_BATCH;
             dead = dispatcher_dead_next (self->dispatcher))
            ids[count++] = dead->id;
    }
    else {
        for (size_t i = 0; i < msg->id_count; i++)
            if (!dispatcher_dead_lookup (self->dispatcher, msg->ids[i])) {
                drover_wire_send_error (
                    self->router, routing_id, msg->ref, DROVER_ENOTFOUND,
                    "ids[%zu]: task %llu is not a dead letter (see drover "
                    "dead list); nothing was resubmitted",
                    i, (unsigned long long)msg->ids[i]);
                free (ids);
                return;
            }
        memcpy (ids, msg->ids, msg->id_count * sizeof (uint64_t));
        count = msg->id_count;
        qsort (ids, count, sizeof (uint64_t), s_compare_ids);
        for (size_t i = 1; i < count; i++)
            if (ids[i] == ids[i - 1]) {
                drover_wire_send_error (
                    self->router, routing_id, msg->ref, DROVER_EINVAL,
                    "task %llu is named twice; nothing was resubmitted",
                    (unsigned long long)ids[i]);
                free (ids);
                return;
            }
        memcpy (ids, msg->ids, count * sizeof (uint64_t));
    }
    if (dispatcher_room (self->dispatcher) < count) {
        drover_wire_send_error (
            self->router, routing_id, msg->ref, DROVER_EFULL,
            "the broker holds %llu tasks, its limit: retry later",
            (unsigned long long)dispatcher_task_count (self->dispatcher));
        free (ids);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t old_id = ids[i];
        ids[i] = dispatcher_dead_retry (self->dispatcher, old_id);
        assert (ids[i]); //  checked above: a dead letter, and room
        s_info (self, "broker: dead letter %llu resubmitted as task %llu",
                (unsigned long long)old_id, (unsigned long long)ids[i]);
    }
    s_acknowledge (self, routing_id, msg->ref, NULL, ids, NULL, count);
}

//  The sink claims node results (DONE); the verdict goes back as DONE,
//  item by item: 0 keeps the result, DROVER_ESTALE drops it (SPEC 5.18).
static void
s_handle_claims (s_broker_t *self, s_peer_t *sink, drover_msg_t *msg)
{
    for (size_t i = 0; i < msg->task_count; i++) {
        drover_task_t *claim = &msg->tasks[i];
        int verdict = dispatcher_claim (self->dispatcher, claim->id,
                                        claim->attempt, zclock_mono ());
        if (verdict)
            s_info (self,
                    "broker: stale result of task %llu attempt %u refused",
                    (unsigned long long)claim->id, claim->attempt);
        self->scratch[i] = (drover_task_t){
            .id = claim->id, .attempt = claim->attempt, .code = verdict};
    }
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_DONE);
    reply.tasks = self->scratch;
    reply.task_count = msg->task_count;
    s_send_peer (self, sink, &reply, NULL);
}

//  Commands that need a node or sink session.
static void
s_handle_session (s_broker_t *self, s_peer_t *peer, drover_msg_t *msg)
{
    switch (msg->command) {
        case DROVER_HEARTBEAT: break;
        case DROVER_BYE: s_peer_remove (self, peer, "said BYE"); break;
        case DROVER_CREDIT:
            if (peer->node)
                dispatcher_node_credit (self->dispatcher, peer->node,
                                        msg->credit);
            break;
        case DROVER_DRAIN:
            if (peer->node) {
                s_info (self, "broker: node %s drains", peer->name);
                dispatcher_node_drain (self->dispatcher, peer->node);
            }
            break;
        case DROVER_FAIL:
            for (size_t i = 0; peer->node && i < msg->task_count; i++) {
                drover_task_t *outcome = &msg->tasks[i];
                int64_t now = zclock_mono ();
                if (dispatcher_fail (self->dispatcher, peer->node, outcome,
                                     now)) {
                    s_info (self,
                            "broker: stale FAIL of task %llu attempt %u "
                            "from %s",
                            (unsigned long long)outcome->id, outcome->attempt,
                            peer->name);
                    continue;
                }
                dispatcher_task_t *task =
                    dispatcher_lookup (self->dispatcher, outcome->id);
                assert (task);
                if (task->state == DROVER_STATE_RETRY) {
                    if (self->config.verbose)
                        zsys_debug ("broker: task %llu attempt %u failed on "
                                    "%s: %s; retry in %lld ms",
                                    (unsigned long long)task->id,
                                    outcome->attempt, peer->name,
                                    drover_strcode (task->code),
                                    (long long)(task->trouble->due_ms - now));
                }
                else
                    s_info (self,
                            "broker: task %llu failed for good on %s after "
                            "attempt %u: %s%s",
                            (unsigned long long)task->id, peer->name,
                            outcome->attempt, drover_strcode (task->code),
                            task->trouble->dead_handle
                                ? "; kept as a dead letter"
                                : "");
            }
            break;
        case DROVER_DONE:
            if (peer->role == ROLE_SINK)
                s_handle_claims (self, peer, msg);
            break;
        case DROVER_STORED:
            //  The sink stored outcomes the broker reported, or results it
            //  claimed: their tasks end
            for (size_t i = 0; peer->role == ROLE_SINK && i < msg->task_count;
                 i++) {
                dispatcher_task_t *task =
                    dispatcher_lookup (self->dispatcher, msg->tasks[i].id);
                int32_t code = msg->tasks[i].code;
                //  A result claimed from the broker's previous run: the
                //  task restored at that attempt takes the claim now
                if (task && code == 0 && task->state != DROVER_STATE_REPORTING)
                    dispatcher_claim (self->dispatcher, task->id,
                                      msg->tasks[i].attempt, zclock_mono ());
                //  EFULL: not stored, the report goes again later
                if (task && task->state == DROVER_STATE_REPORTING
                    && task->attempt == msg->tasks[i].attempt
                    && (code == 0 || code == DROVER_ESTALE))
                    dispatcher_done (self->dispatcher, task->id, task->attempt,
                                     task->code);
            }
            break;
        default: break;
    }
}

//  Handles one message; false when none was waiting.
static bool
s_handle_message (s_broker_t *self)
{
    drover_packet_t *packet =
        drover_wire_serve (self->router, "broker", &self->malformed);
    if (!packet)
        return false;
    zframe_t *routing_id = drover_packet_routing_id (packet);
    drover_msg_t *msg = drover_packet_msg (packet);
    char *key = zframe_strhex (routing_id);
    s_peer_t *peer = (s_peer_t *)zhashx_lookup (self->peers, key);
    if (peer)
        peer->last_recv = zclock_mono ();
    if (self->config.verbose)
        zsys_debug ("broker: recv %s from %s",
                    drover_command_name (msg->command),
                    peer ? peer->name : key);

    switch (msg->command) {
        case DROVER_HELLO: s_handle_hello (self, routing_id, key, msg); break;
        case DROVER_SUBMIT: s_handle_submit (self, routing_id, packet); break;
        case DROVER_CANCEL:
        case DROVER_STATUS: s_handle_status (self, routing_id, msg); break;
        case DROVER_STATS: s_handle_stats (self, routing_id, msg); break;
        case DROVER_DEAD: s_handle_dead (self, routing_id, msg); break;
        case DROVER_RETRY: s_handle_retry (self, routing_id, msg); break;
        case DROVER_HEARTBEAT:
        case DROVER_BYE:
        case DROVER_CREDIT:
        case DROVER_DRAIN:
        case DROVER_FAIL:
        case DROVER_DONE:
        case DROVER_STORED:
            if (peer)
                s_handle_session (self, peer, msg);
            else if (msg->command != DROVER_BYE)
                s_send_bye (self, routing_id, DROVER_ESTALE,
                            "unknown session: send HELLO");
            break;
        case DROVER_ERROR:
            zsys_warning ("broker: %s sent ERROR %s: %s",
                          peer ? peer->name : key, drover_strcode (msg->code),
                          msg->reason);
            break;
        default:
            drover_wire_send_error (self->router, routing_id, msg->ref,
                                    DROVER_ECOMMAND,
                                    "the broker does not accept %s",
                                    drover_command_name (msg->command));
    }
    zstr_free (&key);
    drover_packet_destroy (&packet);
    return true;
}

//  Handles what is waiting (up to S_MAX_DRAIN messages), commits once, then
//  dispatches: a task is on disk before it can run.
static int
s_handle_router (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_broker_t *self = (s_broker_t *)arg;
    for (int i = 0; i < S_MAX_DRAIN; i++) {
        if ((i > 0 && !(zsock_events (self->router) & ZMQ_POLLIN))
            || !s_handle_message (self))
            break;
        //  In memory, new tasks for idle children leave at once: else a
        //  drain of many SUBMITs (a map filling its window) holds back the
        //  first DISPATCH until it queued them all, a millisecond or more.
        //  Durable, leases wait for the drain's one journal write.
        if (self->queued && !self->journal)
            s_dispatch (self);
        self->queued = false;
    }
    s_commit (self);
    s_flush (self);
    s_commit (self);
    return 0;
}

//  BATCH: writes that wait for their fdatasync get it within the interval.
static int
s_handle_sync (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_broker_t *self = (s_broker_t *)arg;
    if (task_journal_lost (self->journal))
        s_journal_whole (self);
    else if (task_journal_pending (self->journal)
             || task_journal_unsynced (self->journal))
        s_commit (self);
    return 0;
}

//  Every heartbeat: expire silent sessions, heartbeat quiet ones, resend
//  reports the sink has not acknowledged.
static int
s_handle_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_broker_t *self = (s_broker_t *)arg;
    int64_t now = zclock_mono ();
    zlistx_t *expired = zlistx_new ();
    for (s_peer_t *peer = (s_peer_t *)zhashx_first (self->peers); peer;
         peer = (s_peer_t *)zhashx_next (self->peers))
        if (now - peer->last_recv > s_expiry_ms (self))
            zlistx_add_end (expired, peer);
        else if (now - peer->last_send >= self->config.heartbeat_ms) {
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_HEARTBEAT);
            s_send_peer (self, peer, &msg, NULL);
        }
    for (s_peer_t *peer = (s_peer_t *)zlistx_first (expired); peer;
         peer = (s_peer_t *)zlistx_next (expired))
        s_peer_remove (self, peer, "expired: no heartbeat");
    zlistx_destroy (&expired);
    s_report (self, s_expiry_ms (self));
    //  A granted claim the sink never confirmed: the sink lost the result
    //  and the node that had it is gone too (else it would have sent it
    //  again, and the sink claimed again)
    size_t unconfirmed = dispatcher_expire_claims (
        self->dispatcher, now - 3 * s_expiry_ms (self));
    if (unconfirmed)
        zsys_warning ("broker: %zu results claimed by the sink were never "
                      "stored: their tasks run again",
                      unconfirmed);
    s_flush (self);
    s_commit (self);
    return 0;
}

static int
s_handle_pipe (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    s_broker_t *self = (s_broker_t *)arg;
    char *command = zstr_recv (reader);
    if (!command || streq (command, "$TERM")) {
        zstr_free (&command);
        return -1;
    }
    if (streq (command, "ENDPOINT"))
        zstr_send (reader, self->endpoint);
    else if (streq (command, "SINK"))
        zstr_send (reader, self->sink_endpoint ? self->sink_endpoint : "");
    zstr_free (&command);
    return 0;
}

//  --------------------------------------------------------------------------
//  Life cycle

static void
s_broker_destroy (s_broker_t **self_p)
{
    s_broker_t *self = *self_p;
    if (!self)
        return;
    //  Nodes drain; the sink stops before the socket it talks to
    if (self->router)
        for (s_peer_t *peer = (s_peer_t *)zhashx_first (self->peers); peer;
             peer = (s_peer_t *)zhashx_next (self->peers))
            if (peer->role == ROLE_NODE) {
                drover_msg_t msg;
                drover_msg_init (&msg, DROVER_DRAIN);
                msg.reason = "the broker is shutting down";
                s_send (self, peer->routing_id, &msg, NULL);
            }
    zactor_destroy (&self->sink);
    drover_sink_detach (&self->attached_sink);
    zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zhashx_destroy (&self->peers);
    zlistx_destroy (&self->acks);
    task_journal_destroy (&self->journal);
    token_table_destroy (&self->tokens);
    dispatcher_destroy (&self->dispatcher);
    free (self->scratch);
    free (self->frames);
    zframe_destroy (&self->empty);
    free (self->endpoint);
    free (self->inproc);
    free (self->sink_endpoint);
    free (self);
    *self_p = NULL;
}

//  Writes a new instance id: 128 random bits from the kernel (czmq's
//  randof is seeded with the time in seconds: two brokers started in one
//  second would share an instance, and peers would miss the restart).
static void
s_new_instance (char instance[33])
{
    uint8_t bits[16];
    if (getrandom (bits, sizeof bits, 0) != (ssize_t)sizeof bits) {
        //  No entropy source: the time in microseconds and the pid
        uint64_t now = (uint64_t)zclock_usecs (), pid = (uint64_t)getpid ();
        memcpy (bits, &now, 8);
        memcpy (bits + 8, &pid, 8);
    }
    for (size_t i = 0; i < sizeof bits; i++)
        snprintf (instance + 2 * i, 3, "%02x", bits[i]);
}

//  Opens the task journal in DATA/broker and restores its tasks.
static bool
s_journal_open (s_broker_t *self, char *error, size_t error_size)
{
    const char *data = self->config.data_dir;
    if (mkdir (data, 0755) != 0 && errno != EEXIST) {
        snprintf (error, error_size, "cannot create %s: %s", data,
                  strerror (errno));
        return false;
    }
    char *dir = zsys_sprintf ("%s/broker", data);
    drover_journal_config_t config = drover_journal_config_default ();
    config.dir = dir;
    config.fsync = self->config.fsync;
    if (self->config.sync_interval_ms)
        config.sync_interval_ms = self->config.sync_interval_ms;
    if (self->config.segment_size)
        config.segment_size = self->config.segment_size;
    task_journal_replay_t replay;
    char *reason = NULL;
    self->journal = task_journal_open (&config, self->dispatcher, self->tokens,
                                       &replay, &reason);
    if (!self->journal) {
        snprintf (error, error_size, "%s", reason ? reason : "journal");
        free (reason);
        zstr_free (&dir);
        return false;
    }
    s_info (
        self,
        "broker: journal %s: %llu tasks and %llu dead letters "
        "restored from %llu records (%llu segments, %llu octets) in "
        "%lld ms",
        dir, (unsigned long long)replay.tasks, (unsigned long long)replay.dead,
        (unsigned long long)replay.journal.records,
        (unsigned long long)replay.journal.segments,
        (unsigned long long)replay.journal.bytes, (long long)replay.elapsed_ms);
    if (replay.journal.corrupt || replay.undecodable || replay.unknown)
        zsys_warning ("broker: journal %s: %llu damaged regions (%llu "
                      "octets) set aside in %s/corrupt, %llu undecodable "
                      "and %llu unknown records skipped",
                      dir, (unsigned long long)replay.journal.corrupt,
                      (unsigned long long)replay.journal.corrupt_bytes, dir,
                      (unsigned long long)replay.undecodable,
                      (unsigned long long)replay.unknown);
    zstr_free (&dir);
    return true;
}

//  Sets up the broker; on failure returns NULL and a reason in error.
static s_broker_t *
s_broker_new (zsock_t *pipe, const drover_broker_config_t *config, char *error,
              size_t error_size)
{
    s_broker_t *self = (s_broker_t *)zmalloc (sizeof *self);
    assert (self);
    self->pipe = pipe;
    self->config = *config;
    s_new_instance (self->instance);
    self->peers = zhashx_new ();
    zhashx_set_destructor (self->peers, s_peer_destroy);
    dispatcher_config_t dispatcher_config = {
        .max_attempts = config->max_attempts ? config->max_attempts : 1,
        .max_losses = 5,
        .max_queued = config->max_queued,
        .retry_delay_ms = config->retry_delay_ms,
        .retry_max_delay_ms = config->retry_max_delay_ms,
        .max_dead = config->max_dead,
        //  Ids stay unique across restarts, durable or not (SPEC 7.6)
        .first_id = ((uint64_t)zclock_time () << 20) + 1,
    };
    self->retry_timer = -1;
    self->dispatcher = dispatcher_new (&dispatcher_config, s_free_payload);
    self->tokens = token_table_new (S_MAX_TOKENS, S_MAX_TOKEN_IDS);
    self->acks = zlistx_new ();
    assert (self->acks);
    zlistx_set_destructor (self->acks, s_ack_destroy);
    if (config->data_dir && !s_journal_open (self, error, error_size)) {
        s_broker_destroy (&self);
        return NULL;
    }
    self->scratch =
        (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
    self->frames = (zframe_t **)calloc (DROVER_MAX_BATCH, sizeof (zframe_t *));
    self->empty = zframe_new_empty ();
    assert (self->scratch && self->frames && self->empty);

    self->router = zsock_new (ZMQ_ROUTER);
    assert (self->router);
    zsock_set_maxmsgsize (self->router,
                          (int64_t)config->max_payload + DROVER_MAX_HEADER);
    zsock_set_linger (self->router, 200);
    //  ZMTP heartbeats too, so ZeroMQ drops a half-open TCP connection;
    //  three expiry times, so the session logic (which recovers leases)
    //  always acts first and a slow peer is not cut off mid-message
    zsock_set_heartbeat_ivl (self->router, (int)config->heartbeat_ms);
    zsock_set_heartbeat_timeout (
        self->router, (int)(3 * config->heartbeat_ms * config->liveness));
    zsock_set_sndhwm (self->router, 100000);
    zsock_set_rcvhwm (self->router, 100000);
    if (zsock_bind (self->router, "%s", config->endpoint) < 0) {
        snprintf (error, error_size, "cannot bind %s: %s", config->endpoint,
                  zmq_strerror (zmq_errno ()));
        s_broker_destroy (&self);
        return NULL;
    }
    self->endpoint = zsock_last_endpoint (self->router);
    if (config->local_endpoint
        && zsock_bind (self->router, "%s", config->local_endpoint) < 0) {
        snprintf (error, error_size, "cannot bind %s: %s",
                  config->local_endpoint, zmq_strerror (zmq_errno ()));
        s_broker_destroy (&self);
        return NULL;
    }
    self->inproc = zsys_sprintf ("inproc://drover-broker-%s", self->instance);
    int rc = zsock_bind (self->router, "%s", self->inproc);
    assert (rc == 0);

    self->loop = zloop_new ();
    zloop_reader (self->loop, self->router, s_handle_router, self);
    zloop_reader (self->loop, pipe, s_handle_pipe, self);
    if (self->journal)
        zloop_timer (self->loop, self->config.sync_interval_ms, 0,
                     s_handle_sync, self);
    zloop_timer (self->loop, config->heartbeat_ms, 0, s_handle_tick, self);

    if (config->sink_endpoint) {
        drover_sink_config_t sink_config = drover_sink_config_default ();
        sink_config.endpoint = config->sink_endpoint;
        sink_config.advertise = config->sink_advertise;
        sink_config.local_endpoint = config->sink_local_endpoint;
        sink_config.broker = self->inproc;
        sink_config.max_results = config->max_results;
        sink_config.verbose = config->verbose;
        sink_config.quiet = config->quiet;
        sink_config.result_ttl_ms = config->result_ttl_ms;
        char *sink_data = config->data_dir
                              ? zsys_sprintf ("%s/sink", config->data_dir)
                              : NULL;
        sink_config.data_dir = sink_data;
        sink_config.fsync = config->fsync;
        sink_config.sync_interval_ms = config->sync_interval_ms;
        sink_config.segment_size = config->segment_size;
        char *sink_error = NULL;
        if (config->sink_same_thread)
            self->attached_sink =
                drover_sink_attach (self->loop, &sink_config, &sink_error);
        else
            self->sink = drover_sink_new (&sink_config, &sink_error);
        zstr_free (&sink_data);
        if (!self->sink && !self->attached_sink) {
            snprintf (error, error_size, "embedded sink: %s",
                      sink_error ? sink_error : "cannot start");
            free (sink_error);
            s_broker_destroy (&self);
            return NULL;
        }
        //  Peers learn of it when it registers, as for any sink
    }
    return self;
}

static void
s_broker_actor (zsock_t *pipe, void *args)
{
    char error[256] = "";
    s_broker_t *self = s_broker_new (pipe, (const drover_broker_config_t *)args,
                                     error, sizeof error);
    actor_start_report (pipe, self ? NULL : error);
    if (!self)
        return;
    s_info (self, "broker: listening on %s", self->endpoint);
    zloop_start (self->loop);
    s_broker_destroy (&self);
}

zactor_t *
drover_broker_new (const drover_broker_config_t *config, char **error)
{
    assert (config && config->endpoint);
    return actor_start (s_broker_actor, (void *)config, "broker", error);
}

char *
drover_broker_endpoint (zactor_t *broker)
{
    zstr_send (broker, "ENDPOINT");
    return zstr_recv (broker);
}

char *
drover_broker_sink_endpoint (zactor_t *broker)
{
    zstr_send (broker, "SINK");
    return zstr_recv (broker);
}
