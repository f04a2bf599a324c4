/*  sink.c - the sink actor: keeps the first outcome of each task, tells the
    broker, acknowledges senders and streams results to watching clients.

    One ROUTER socket serves nodes (RESULT), clients (WATCH, STATUS,
    HEARTBEAT); one DEALER socket is the sink's session with the broker
    (HELLO, DONE, HEARTBEAT; the broker's own RESULTs arrive there).

    Each wakeup serves the messages that are ready (up to SINK_TURN_MAX),
    then ends the turn: with a journal, the results accepted during the
    turn are committed together (one fdatasync), and only then are they
    acknowledged (STORED) and published to watchers. Without a journal a
    result is acknowledged and published as soon as it is accepted.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "actor_start.h"
#include "drover_sink.h"
#include "drover_wire.h"
#include "id_table.h"
#include "sink_journal.h"

#include <stddef.h>

//  One outcome: stored, or held while the broker decides a claim.
typedef struct {
    drover_task_t item; //  id, attempt, code and details; strings owned
    zframe_t *payload;  //  the result octets
    zframe_t *node;     //  claims, and results not yet journaled: the node
                        //  to answer STORED; NULL: the broker
    int64_t claimed_at; //  claims: when the claim last went out (ms)
    int64_t stored_at;  //  when it was stored, or read back (ms)
    bool claimed;       //  a node's result, claimed from the broker: the
                        //  broker hears STORED too once it is stored
    bool journaled;     //  stored: its record is committed (or there is
                        //  no journal), so it is acknowledged and served
    bool delivered;     //  sent to a watcher at least once
    bool aged;          //  result_ttl_ms has passed since stored_at
    void *age_handle;   //  its place in the sink's ages, or NULL
    sink_home_t home;   //  its journal record
} s_result_t;

//  STORED items waiting to go to one peer.
typedef struct {
    zframe_t *to;         //  the node's routing id; NULL: the broker
    drover_task_t *items; //  the acknowledgements
    size_t count;         //  how many
    size_t max;           //  room in items
} s_acks_t;

//  A client that watches tasks.
typedef struct {
    char *key;            //  routing id in hex
    zframe_t *routing_id; //  where to send
    size_t watching;      //  ids it waits for
    bool release;         //  forget results once delivered
    int64_t last_recv;    //  when it last sent anything (ms)
    drover_task_t *batch; //  RESULT items waiting to be sent
    zframe_t **frames;    //  their payloads (not owned)
    size_t batch_count;   //  how many
} s_client_t;

typedef struct {
    drover_sink_config_t config; //  settings (strings not owned)
    char *endpoint;              //  bound endpoint
    char *advertise;             //  endpoint told to the broker
    zsock_t *pipe;               //  actor pipe
    zsock_t *router;             //  nodes and clients
    zsock_t *broker;             //  session with the broker, or NULL
    zloop_t *loop;               //  reactor
    zhashx_t *results;           //  id -> s_result_t, owned
    zhashx_t *claims;            //  (id, attempt) -> s_result_t held for
                                 //  the broker's verdict, owned
    zhashx_t *watchers;          //  id -> s_client_t (one per id)
    zhashx_t *clients;           //  routing id hex -> s_client_t, owned
    zlistx_t *pending;           //  clients with a batch to send
    uint64_t stored_octets;      //  payload octets held
    uint32_t heartbeat_ms;       //  from the broker's WELCOME
    uint32_t liveness;           //  from the broker's WELCOME
    bool welcomed;               //  the broker answered HELLO
    int64_t broker_recv;         //  when the broker last spoke (ms)
    int64_t broker_send;         //  when we last spoke to it (ms)
    int64_t hello_sent;          //  when we last sent HELLO (ms)
    drover_task_t *dones;        //  DONE items waiting to be sent
    size_t done_count;           //  how many
    uint64_t stored, stale, full, malformed; //  counters
    uint64_t expired;           //  results forgotten by result_ttl_ms
    uint64_t restored;          //  results read back from the journal
    uint64_t unjournaled;       //  accepted results waiting for their record
    unsigned broker_generation; //  bumped on each new broker socket
    zhashx_t *acks;             //  peer key -> s_acks_t, STORED items to send
    zlistx_t *ages;             //  stored results by stored_at (result_ttl_ms)
    sink_journal_t *journal;    //  the durable store, or NULL
    char *data_dir;             //  config.data_dir, our copy
} s_sink_t;

//  Most messages served per wakeup before the turn ends (and commits).
#define SINK_TURN_MAX 256

//  Most results aged per tick.
#define SINK_EXPIRE_MAX 100000

//  Claims are keyed by (id, attempt): a pointer to the result's item.
static size_t
s_claim_hash (const void *key)
{
    const drover_task_t *item = (const drover_task_t *)key;
    uint64_t both = item->id ^ ((uint64_t)item->attempt << 47);
    return id_table_hash (both);
}

static int
s_claim_compare (const void *a, const void *b)
{
    const drover_task_t *x = (const drover_task_t *)a,
                        *y = (const drover_task_t *)b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->attempt < y->attempt ? -1 : x->attempt > y->attempt;
}

//  Most tasks one client may watch at once.
#define SINK_MAX_WATCHED 1000000

static void
s_free_key (void **key)
{
    free (*key);
    *key = NULL;
}

static void
s_result_destroy (void **item)
{
    s_result_t *result = (s_result_t *)*item;
    *item = NULL;
    zframe_destroy (&result->payload);
    zframe_destroy (&result->node);
    free ((char *)result->item.reason);
    free ((char *)result->item.node);
    free (result);
}

static void
s_client_destroy (void **item)
{
    s_client_t *client = (s_client_t *)*item;
    *item = NULL;
    zframe_destroy (&client->routing_id);
    free (client->batch);
    free (client->frames);
    free (client->key);
    free (client);
}

static void
s_acks_destroy (void **item)
{
    s_acks_t *acks = (s_acks_t *)*item;
    *item = NULL;
    zframe_destroy (&acks->to);
    free (acks->items);
    free (acks);
}

//  --------------------------------------------------------------------------
//  The broker session

static void
s_broker_send (s_sink_t *self, drover_msg_t *msg)
{
    if (!self->broker)
        return;
    drover_wire_send (self->broker, NULL, msg, NULL);
    self->broker_send = zclock_mono ();
}

static void
s_send_hello (s_sink_t *self)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    msg.role = "sink";
    char name[64];
    snprintf (name, sizeof name, "sink:%d", (int)getpid ());
    msg.name = name;
    msg.endpoint = self->advertise;
    s_broker_send (self, &msg);
    self->hello_sent = zclock_mono ();
}

static void
s_flush_done (s_sink_t *self)
{
    if (self->done_count == 0)
        return;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_DONE);
    msg.tasks = self->dones;
    msg.task_count = self->done_count;
    s_broker_send (self, &msg);
    self->done_count = 0;
}

static int s_handle_broker (zloop_t *loop, zsock_t *reader, void *arg);

//  (Re)opens the session with the broker on a new socket.
static void
s_broker_connect (s_sink_t *self)
{
    if (self->broker) {
        zloop_reader_end (self->loop, self->broker);
        zsock_destroy (&self->broker);
    }
    self->broker = zsock_new (ZMQ_DEALER);
    assert (self->broker);
    zsock_set_linger (self->broker, 200);
    //  ZMTP heartbeats notice a half-open connection; reconnects back off
    zsock_set_heartbeat_ivl (self->broker, (int)self->heartbeat_ms);
    zsock_set_heartbeat_timeout (
        self->broker, (int)(3 * self->heartbeat_ms * self->liveness));
    zsock_set_reconnect_ivl (self->broker, 100);
    zsock_set_reconnect_ivl_max (self->broker, 5000);
    zsock_set_sndhwm (self->broker, 100000);
    zsock_connect (self->broker, "%s", self->config.broker);
    zloop_reader (self->loop, self->broker, s_handle_broker, self);
    self->broker_generation++;
    self->welcomed = false;
    self->broker_recv = zclock_mono ();
    s_send_hello (self);
}

//  --------------------------------------------------------------------------
//  Results

static s_client_t *
s_client_require (s_sink_t *self, zframe_t *routing_id, const char *key)
{
    s_client_t *client = (s_client_t *)zhashx_lookup (self->clients, key);
    if (!client) {
        client = (s_client_t *)zmalloc (sizeof *client);
        assert (client);
        client->key = strdup (key);
        client->routing_id = zframe_dup (routing_id);
        client->batch =
            (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
        client->frames =
            (zframe_t **)calloc (DROVER_MAX_BATCH, sizeof (zframe_t *));
        assert (client->batch && client->frames);
        zhashx_insert (self->clients, key, client);
    }
    client->last_recv = zclock_mono ();
    return client;
}
//  Forgets a stored result: released, or past its retention. With a
//  journal, a forget record says so (record false: replay, which needs
//  none).
static void
s_forget (s_sink_t *self, s_result_t *result, bool record)
{
    if (result->age_handle) {
        zlistx_delete (self->ages, result->age_handle);
        result->age_handle = NULL;
    }
    self->stored_octets -= zframe_size (result->payload);
    if (self->journal) {
        if (record)
            sink_journal_forget (self->journal, &result->home);
        else
            sink_journal_unlink (self->journal, &result->home);
    }
    zhashx_delete (self->results, &result->item.id);
}

static void
s_client_flush (s_sink_t *self, s_client_t *client)
{
    if (client->batch_count == 0)
        return;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = client->batch;
    msg.task_count = client->batch_count;
    int rc = drover_wire_send (self->router, client->routing_id, &msg,
                               client->frames);
    client->batch_count = 0;
    if (rc) {
        //  The client is gone or not reading: keep the results, it will
        //  WATCH them again (or expire)
        zsys_warning ("sink: cannot deliver %zu results to client %s",
                      msg.task_count, client->key);
        return;
    }
    //  Released results go only now: their frames were in the batch. So do
    //  results past their retention, now that they reached a watcher.
    for (size_t i = 0; i < msg.task_count; i++) {
        s_result_t *result =
            (s_result_t *)zhashx_lookup (self->results, &client->batch[i].id);
        if (!result)
            continue;
        result->delivered = true;
        if (client->release || result->aged) {
            if (!client->release)
                self->expired++;
            s_forget (self, result, true);
        }
    }
}

static void
s_client_add (s_sink_t *self, s_client_t *client, s_result_t *result)
{
    if (client->batch_count == 0)
        zlistx_add_end (self->pending, client);
    client->batch[client->batch_count] = result->item;
    client->frames[client->batch_count] = result->payload;
    if (++client->batch_count == DROVER_MAX_BATCH)
        s_client_flush (self, client); //  stays in pending: harmless
}

//  Sends every client its batch.
static void
s_flush_pending (s_sink_t *self)
{
    s_client_t *client;
    while ((client = (s_client_t *)zlistx_detach (self->pending, NULL)))
        s_client_flush (self, client);
}

//  Makes a result of an item, taking its payload.
static s_result_t *
s_result_new (const drover_task_t *item, zframe_t **payload_p)
{
    s_result_t *result = (s_result_t *)zmalloc (sizeof *result);
    assert (result);
    result->item = *item;
    result->item.payload = (drover_bytes_t){NULL, 0};
    result->item.reason = item->reason ? strdup (item->reason) : NULL;
    result->item.node = item->node ? strdup (item->node) : NULL;
    //  Only the fields of a RESULT item: the others pointed into a message
    result->item.handler = NULL;
    result->item.queue = NULL;
    result->item.key = NULL;
    result->payload = *payload_p;
    *payload_p = NULL;
    result->home.item = &result->item;
    result->home.payload = result->payload;
    return result;
}

//  Whether the store can take size more octets; counts a refusal.
static bool
s_room_for (s_sink_t *self, size_t size)
{
    if (self->stored_octets + size <= self->config.max_results)
        return true;
    self->full++;
    return false;
}

//  Queues one STORED item for a node (to) or the broker (to NULL); sent at
//  the end of the turn, batched per peer.
static void
s_ack (s_sink_t *self, zframe_t *to, uint64_t id, uint32_t attempt, int code)
{
    char *key = to ? zframe_strhex (to) : strdup ("broker");
    s_acks_t *acks = (s_acks_t *)zhashx_lookup (self->acks, key);
    if (!acks) {
        acks = (s_acks_t *)zmalloc (sizeof *acks);
        assert (acks);
        acks->to = to ? zframe_dup (to) : NULL;
        zhashx_insert (self->acks, key, acks);
    }
    free (key);
    if (acks->count == acks->max) {
        acks->max = acks->max ? 2 * acks->max : 16;
        acks->items = (drover_task_t *)realloc (
            acks->items, acks->max * sizeof (drover_task_t));
        assert (acks->items);
    }
    acks->items[acks->count++] =
        (drover_task_t){.id = id, .attempt = attempt, .code = code};
    if (self->config.verbose || code == DROVER_ESTALE)
        zsys_debug ("sink: task %llu attempt %u: STORED %s",
                    (unsigned long long)id, attempt, drover_strcode (code));
}

//  Sends the queued STORED items.
static void
s_flush_acks (s_sink_t *self)
{
    if (zhashx_size (self->acks) == 0)
        return;
    for (s_acks_t *acks = (s_acks_t *)zhashx_first (self->acks); acks;
         acks = (s_acks_t *)zhashx_next (self->acks))
        for (size_t sent = 0; sent < acks->count;) {
            size_t count = acks->count - sent;
            if (count > DROVER_MAX_BATCH)
                count = DROVER_MAX_BATCH;
            drover_msg_t reply;
            drover_msg_init (&reply, DROVER_STORED);
            reply.tasks = acks->items + sent;
            reply.task_count = count;
            if (acks->to)
                drover_wire_send (self->router, acks->to, &reply, NULL);
            else
                s_broker_send (self, &reply);
            sent += count;
        }
    zhashx_purge (self->acks);
}

//  A stored result is safe (journaled, or there is no journal): its sender
//  hears STORED (and the broker, for a claimed result: that ends the task
//  there, SPEC 5.18), its watcher gets it, its retention starts.
static void
s_publish (s_sink_t *self, s_result_t *result)
{
    result->journaled = true;
    result->stored_at = zclock_mono ();
    if (self->config.result_ttl_ms)
        result->age_handle = zlistx_add_end (self->ages, result);
    s_ack (self, result->node, result->item.id, result->item.attempt, 0);
    if (result->claimed)
        s_ack (self, NULL, result->item.id, result->item.attempt, 0);
    zframe_destroy (&result->node);
    s_client_t *client =
        (s_client_t *)zhashx_lookup (self->watchers, &result->item.id);
    if (client) {
        zhashx_delete (self->watchers, &result->item.id);
        client->watching--;
        s_client_add (self, client, result);
    }
}

static void
s_committed (sink_home_t *home, void *arg)
{
    s_sink_t *self = (s_sink_t *)arg;
    s_result_t *result =
        (s_result_t *)((char *)home - offsetof (s_result_t, home));
    self->unjournaled--;
    s_publish (self, result);
}

//  Keeps a result as its task's one result. With a journal it waits for
//  its record to be committed (at the end of the turn) before anybody
//  hears of it; its node (result->node, or the broker) hears STORED then.
static void
s_accept (s_sink_t *self, s_result_t *result)
{
    zhashx_insert (self->results, &result->item.id, result);
    self->stored++;
    if (self->journal) {
        result->journaled = false;
        self->unjournaled++;
        sink_journal_add (self->journal, &result->home);
    }
    else
        s_publish (self, result);
}

//  Sends the broker a claim for a held result (SPEC 5.18).
static void
s_claim (s_sink_t *self, s_result_t *result)
{
    result->claimed_at = zclock_mono ();
    self->dones[self->done_count++] =
        (drover_task_t){.id = result->item.id,
                        .attempt = result->item.attempt,
                        .code = result->item.code};
    if (self->done_count == DROVER_MAX_BATCH)
        s_flush_done (self);
}

//  RESULT from a node: each result is held and claimed from the broker;
//  the node hears STORED when the verdict comes (with a journal: once the
//  result is journaled). Even a result for a task that has one is claimed:
//  the broker may hold that task again (a client resubmitted it after a
//  restart), and only the claim ends it there; the verdict then finds the
//  stored result and drops the new one. Results the sink cannot take are
//  answered at once. A result sent again while its record waits for the
//  journal is not answered: STORED comes when the record is on disk (an
//  ESTALE now would make the node forget a result the sink may lose).
static void
s_handle_node_result (s_sink_t *self, zframe_t *routing_id,
                      drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    for (size_t i = 0; i < msg->task_count; i++) {
        drover_task_t *item = &msg->tasks[i];
        zframe_t *payload = drover_packet_take_payload (packet, i);
        s_result_t *stored =
            (s_result_t *)zhashx_lookup (self->results, &item->id);
        s_result_t *held = (s_result_t *)zhashx_lookup (self->claims, item);
        if (stored && !stored->journaled) {
            if (stored->node && stored->item.attempt == item->attempt) {
                //  Answer the newest sender
                zframe_destroy (&stored->node);
                stored->node = zframe_dup (routing_id);
            }
        }
        else if (held) {
            //  Sent again while its claim is out: answer the newest sender
            zframe_destroy (&held->node);
            held->node = zframe_dup (routing_id);
        }
        //  A task that has its result already is claimed whatever the
        //  room (the claim is what ends it at the broker): never EFULL
        else if (!stored && !s_room_for (self, zframe_size (payload)))
            s_ack (self, routing_id, item->id, item->attempt, DROVER_EFULL);
        else {
            self->stored_octets += zframe_size (payload);
            s_result_t *result = s_result_new (item, &payload);
            result->node = zframe_dup (routing_id);
            result->claimed = true;
            zhashx_insert (self->claims, &result->item, result);
            s_claim (self, result);
        }
        zframe_destroy (&payload);
    }
}

//  RESULT from the broker: final outcomes, stored at once (SPEC 5.18). One
//  sent again while its record waits for the journal is not answered.
static void
s_handle_broker_result (s_sink_t *self, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    for (size_t i = 0; i < msg->task_count; i++) {
        drover_task_t *item = &msg->tasks[i];
        zframe_t *payload = drover_packet_take_payload (packet, i);
        s_result_t *stored =
            (s_result_t *)zhashx_lookup (self->results, &item->id);
        if (stored && !stored->journaled)
            ; //  answered when journaled
        else if (stored) {
            self->stale++;
            s_ack (self, NULL, item->id, item->attempt, DROVER_ESTALE);
        }
        else if (!s_room_for (self, zframe_size (payload)))
            s_ack (self, NULL, item->id, item->attempt, DROVER_EFULL);
        else {
            self->stored_octets += zframe_size (payload);
            s_accept (self, s_result_new (item, &payload));
        }
        zframe_destroy (&payload);
    }
}

//  DONE from the broker: its verdicts on claims (SPEC 5.18). A result it
//  accepts is kept and published, and its node and the broker hear STORED
//  once it is stored (with a journal: once journaled). One it refuses is
//  dropped (STORED DROVER_ESTALE). One it accepts for a task whose result
//  the sink holds already is dropped too, and the broker hears STORED: the
//  task has its result; if that result still waits for the journal, nobody
//  hears anything yet (the node sends again and the claim comes again).
static void
s_handle_verdicts (s_sink_t *self, drover_msg_t *msg)
{
    for (size_t i = 0; i < msg->task_count; i++) {
        s_result_t *result =
            (s_result_t *)zhashx_lookup (self->claims, &msg->tasks[i]);
        if (!result)
            continue; //  decided already, or never ours
        zhashx_delete (self->claims, &msg->tasks[i]);
        s_result_t *stored =
            (s_result_t *)zhashx_lookup (self->results, &result->item.id);
        int code = msg->tasks[i].code;
        if (code == 0 && !stored) {
            s_accept (self, result);
            continue;
        }
        self->stale++;
        self->stored_octets -= zframe_size (result->payload);
        zsys_info ("sink: stale result of task %llu attempt %u dropped",
                   (unsigned long long)result->item.id, result->item.attempt);
        if (code != 0 || stored->journaled) {
            s_ack (self, result->node, result->item.id, result->item.attempt,
                   DROVER_ESTALE);
            if (code == 0)
                s_ack (self, NULL, result->item.id, result->item.attempt, 0);
        }
        s_result_destroy ((void **)&result);
    }
}

//  Claims again those the broker has not decided in time, or all of them
//  (a new session with the broker).
static void
s_reclaim (s_sink_t *self, bool all)
{
    int64_t now = zclock_mono ();
    int64_t expiry = (int64_t)self->heartbeat_ms * self->liveness;
    for (s_result_t *result = (s_result_t *)zhashx_first (self->claims); result;
         result = (s_result_t *)zhashx_next (self->claims))
        if (all || now - result->claimed_at > expiry)
            s_claim (self, result);
    s_flush_done (self);
}

//  Results past result_ttl_ms: forgotten if delivered, else marked so that
//  their first delivery forgets them. Each result is looked at once.
static void
s_expire (s_sink_t *self)
{
    uint64_t ttl = self->config.result_ttl_ms;
    if (ttl == 0)
        return;
    s_flush_pending (self); //  no batch may hold what goes now
    int64_t now = zclock_mono ();
    s_result_t *result;
    for (size_t count = 0; count < SINK_EXPIRE_MAX
                           && (result = (s_result_t *)zlistx_first (self->ages))
                           && (uint64_t)(now - result->stored_at) >= ttl;
         count++) {
        zlistx_delete (self->ages, result->age_handle);
        result->age_handle = NULL;
        result->aged = true;
        if (result->delivered) {
            self->expired++;
            s_forget (self, result, true);
        }
    }
}

//  The end of a turn: commit what the turn journaled, then acknowledge
//  and publish what is safe, and send what waits.
static void
s_turn_end (s_sink_t *self)
{
    if (self->journal)
        sink_journal_commit (self->journal, s_committed, self);
    s_flush_acks (self);
    s_flush_pending (self);
    s_flush_done (self);
}

static void
s_handle_watch (s_sink_t *self, zframe_t *routing_id, const char *key,
                drover_msg_t *msg)
{
    s_client_t *client = s_client_require (self, routing_id, key);
    if (client->watching + msg->id_count > SINK_MAX_WATCHED) {
        drover_wire_send_error (self->router, routing_id, msg->ref,
                                DROVER_EFULL,
                                "you watch %zu tasks, the limit is %d: wait "
                                "for some results first",
                                client->watching, SINK_MAX_WATCHED);
        return;
    }
    client->release = msg->release;
    for (size_t i = 0; i < msg->id_count; i++) {
        s_result_t *result =
            (s_result_t *)zhashx_lookup (self->results, &msg->ids[i]);
        if (result && result->journaled) {
            s_client_add (self, client, result);
            continue;
        }
        //  No result yet, or one waiting for the journal: it comes when
        //  it is safe
        s_client_t *other =
            (s_client_t *)zhashx_lookup (self->watchers, &msg->ids[i]);
        if (other == client)
            continue;
        if (other) {
            other->watching--; //  the newest watcher wins
            zhashx_update (self->watchers, &msg->ids[i], client);
        }
        else {
            //  The key in the message goes away: the table keeps a copy
            uint64_t *id = (uint64_t *)malloc (sizeof *id);
            assert (id);
            *id = msg->ids[i];
            zhashx_insert (self->watchers, id, client);
        }
        client->watching++;
    }
    s_flush_pending (self);
}

static void
s_handle_status (s_sink_t *self, zframe_t *routing_id, drover_msg_t *msg)
{
    drover_task_t *items =
        (drover_task_t *)calloc (msg->id_count + 1, sizeof (drover_task_t));
    assert (items);
    for (size_t i = 0; i < msg->id_count; i++) {
        s_result_t *result =
            (s_result_t *)zhashx_lookup (self->results, &msg->ids[i]);
        items[i].id = msg->ids[i];
        if (!result)
            continue;
        items[i] = result->item;
        items[i].payload = (drover_bytes_t){NULL, 0};
        //  A result waiting for the journal is reported, not yet stored
        items[i].state = !result->journaled       ? DROVER_STATE_REPORTING
                         : result->item.code == 0 ? DROVER_STATE_DONE
                         : result->item.code == DROVER_ECANCELLED
                             ? DROVER_STATE_CANCELLED
                             : DROVER_STATE_FAILED;
    }
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STATUS_REPLY);
    reply.ref = msg->ref;
    reply.tasks = items;
    reply.task_count = msg->id_count;
    drover_wire_send (self->router, routing_id, &reply, NULL);
    free (items);
}

//  --------------------------------------------------------------------------
//  Sockets

static void
s_serve_router (s_sink_t *self)
{
    drover_packet_t *packet =
        drover_wire_serve (self->router, "sink", &self->malformed);
    if (!packet)
        return;
    zframe_t *routing_id = drover_packet_routing_id (packet);
    drover_msg_t *msg = drover_packet_msg (packet);
    char *key = zframe_strhex (routing_id);
    if (self->config.verbose)
        zsys_debug ("sink: recv %s from %s", drover_command_name (msg->command),
                    key);
    s_client_t *client = (s_client_t *)zhashx_lookup (self->clients, key);
    if (client)
        client->last_recv = zclock_mono ();
    switch (msg->command) {
        case DROVER_RESULT:
            s_handle_node_result (self, routing_id, packet);
            break;
        case DROVER_WATCH: s_handle_watch (self, routing_id, key, msg); break;
        case DROVER_STATUS: s_handle_status (self, routing_id, msg); break;
        case DROVER_HEARTBEAT: {
            //  A client whose watches this sink does not hold (it restarted,
            //  or forgot them) must WATCH again (SPEC 6)
            drover_msg_t reply;
            drover_msg_init (&reply, DROVER_HEARTBEAT);
            if (!client || client->watching == 0) {
                drover_msg_init (&reply, DROVER_BYE);
                reply.code = DROVER_ESTALE;
                reply.reason = "this sink holds no watches of yours";
            }
            drover_wire_send (self->router, routing_id, &reply, NULL);
            break;
        }
        case DROVER_ERROR: break;
        default:
            drover_wire_send_error (self->router, routing_id, msg->ref,
                                    DROVER_ECOMMAND,
                                    "the sink does not accept %s",
                                    drover_command_name (msg->command));
    }
    zstr_free (&key);
    drover_packet_destroy (&packet);
}

static int
s_handle_router (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_sink_t *self = (s_sink_t *)arg;
    for (int count = 0; count < SINK_TURN_MAX; count++) {
        if (count > 0 && !(zsock_events (self->router) & ZMQ_POLLIN))
            break;
        s_serve_router (self);
    }
    s_turn_end (self);
    return 0;
}

static void
s_serve_broker (s_sink_t *self)
{
    drover_packet_t *packet;
    int rc = drover_packet_recv (self->broker, false, &packet);
    if (!packet)
        return;
    self->broker_recv = zclock_mono ();
    drover_msg_t *msg = drover_packet_msg (packet);
    if (rc)
        zsys_warning ("sink: malformed message from the broker: %s",
                      drover_packet_error (packet));
    else
        switch (msg->command) {
            case DROVER_WELCOME:
                self->heartbeat_ms = msg->heartbeat_ms;
                self->liveness = msg->liveness;
                if (!self->welcomed) {
                    zsys_info ("sink: registered with the broker at %s as %s",
                               self->config.broker, self->advertise);
                    self->welcomed = true;
                    s_reclaim (self, true); //  a new session decides anew
                }
                break;
            case DROVER_RESULT: s_handle_broker_result (self, packet); break;
            case DROVER_DONE: s_handle_verdicts (self, msg); break;
            case DROVER_BYE: s_broker_connect (self); break;
            case DROVER_ERROR:
                zsys_error ("sink: the broker refused us: %s", msg->reason);
                break;
            default: break;
        }
    drover_packet_destroy (&packet);
}

static int
s_handle_broker (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_sink_t *self = (s_sink_t *)arg;
    unsigned generation = self->broker_generation;
    for (int count = 0; count < SINK_TURN_MAX; count++) {
        if (count > 0
            && (self->broker_generation != generation
                || !(zsock_events (self->broker) & ZMQ_POLLIN)))
            break;
        s_serve_broker (self);
    }
    s_turn_end (self);
    return 0;
}

//  Drops every watch of a client.
static void
s_forget_watches (s_sink_t *self, s_client_t *client)
{
    if (client->watching == 0)
        return;
    zlistx_t *ids = zlistx_new ();
    for (void *watcher = zhashx_first (self->watchers); watcher;
         watcher = zhashx_next (self->watchers))
        if (watcher == client)
            zlistx_add_end (ids, (void *)zhashx_cursor (self->watchers));
    for (void *id = zlistx_first (ids); id; id = zlistx_next (ids))
        zhashx_delete (self->watchers, id);
    zlistx_destroy (&ids);
    client->watching = 0;
}

static int
s_handle_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_sink_t *self = (s_sink_t *)arg;
    int64_t now = zclock_mono ();
    int64_t expiry = (int64_t)self->heartbeat_ms * self->liveness;
    if (!self->welcomed && now - self->hello_sent >= self->heartbeat_ms)
        s_send_hello (self);
    else if (self->welcomed && now - self->broker_recv > expiry) {
        zsys_warning ("sink: the broker is silent; reconnecting");
        s_broker_connect (self);
    }
    else if (now - self->broker_send >= self->heartbeat_ms) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HEARTBEAT);
        s_broker_send (self, &msg);
    }
    if (self->welcomed)
        s_reclaim (self, false);
    //  Forget the watches of silent clients
    zlistx_t *gone = zlistx_new ();
    for (s_client_t *client = (s_client_t *)zhashx_first (self->clients);
         client; client = (s_client_t *)zhashx_next (self->clients))
        if (now - client->last_recv > expiry)
            zlistx_add_end (gone, client);
    for (s_client_t *client = (s_client_t *)zlistx_first (gone); client;
         client = (s_client_t *)zlistx_next (gone)) {
        s_forget_watches (self, client);
        zhashx_delete (self->clients, client->key);
    }
    zlistx_destroy (&gone);
    s_expire (self);
    s_turn_end (self);
    return 0;
}

//  With a journal: commits that wait (an fdatasync due, a retry after a
//  failed commit) and compaction go on while no message arrives.
static int
s_handle_journal_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_turn_end ((s_sink_t *)arg);
    return 0;
}

static void
s_stats (s_sink_t *self, drover_sink_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    stats->results = zhashx_size (self->results);
    stats->unjournaled = self->unjournaled;
    stats->stored_octets = self->stored_octets;
    stats->restored = self->restored;
    stats->expired = self->expired;
    stats->stored = self->stored;
    stats->stale = self->stale;
    stats->full = self->full;
    stats->malformed = self->malformed;
    if (self->journal) {
        sink_journal_stats_t journal;
        sink_journal_stats (self->journal, &journal);
        stats->skipped = journal.skipped;
        stats->corrupt = journal.corrupt;
        stats->journal_octets = journal.journal_octets;
        stats->live_octets = journal.live_octets;
        stats->relocated = journal.relocated;
        stats->storage_failures = journal.failures;
        stats->storage_failing = journal.failing;
    }
}

static int
s_handle_pipe (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    s_sink_t *self = (s_sink_t *)arg;
    char *command = zstr_recv (reader);
    if (!command || streq (command, "$TERM")) {
        zstr_free (&command);
        return -1;
    }
    if (streq (command, "ENDPOINT"))
        zstr_send (reader, self->advertise);
    else if (streq (command, "STATS")) {
        drover_sink_stats_t stats;
        s_stats (self, &stats);
        zframe_t *frame = zframe_new (&stats, sizeof stats);
        zframe_send (&frame, reader, 0);
    }
    zstr_free (&command);
    return 0;
}

//  --------------------------------------------------------------------------
//  Replay

//  A result read back from the journal: it replaces an earlier record of
//  the same task (a relocated copy), and counts as not yet delivered.
static void
s_replay_result (const drover_task_t *item, zframe_t **payload_p,
                 uint64_t segment, void *arg)
{
    s_sink_t *self = (s_sink_t *)arg;
    s_result_t *old = (s_result_t *)zhashx_lookup (self->results, &item->id);
    if (old)
        s_forget (self, old, false);
    s_result_t *result = s_result_new (item, payload_p);
    self->stored_octets += zframe_size (result->payload);
    zhashx_insert (self->results, &result->item.id, result);
    result->journaled = true;
    result->stored_at = zclock_mono ();
    if (self->config.result_ttl_ms)
        result->age_handle = zlistx_add_end (self->ages, result);
    sink_journal_link (self->journal, &result->home, segment);
}

static void
s_replay_forget (uint64_t id, void *arg)
{
    s_sink_t *self = (s_sink_t *)arg;
    s_result_t *result = (s_result_t *)zhashx_lookup (self->results, &id);
    if (result)
        s_forget (self, result, false);
}

//  Opens the journal and reads it back into the store.
static int
s_journal_open (s_sink_t *self, char *error, size_t error_size)
{
    const drover_sink_config_t *config = &self->config;
    sink_journal_config_t journal_config = {
        .dir = config->data_dir,
        .fsync = config->fsync,
        .sync_interval_ms = config->sync_interval_ms,
        .segment_size = config->segment_size,
    };
    char *reason = NULL;
    int64_t started = zclock_mono ();
    self->journal = sink_journal_open (&journal_config, &reason);
    if (self->journal
        && sink_journal_replay (self->journal, s_replay_result, s_replay_forget,
                                self, &reason))
        sink_journal_close (&self->journal);
    if (!self->journal) {
        snprintf (error, error_size, "journal %s: %s", config->data_dir,
                  reason ? reason : "cannot open");
        free (reason);
        return -1;
    }
    self->restored = zhashx_size (self->results);
    sink_journal_stats_t stats;
    sink_journal_stats (self->journal, &stats);
    zsys_info ("sink: journal %s: %llu results restored (%llu octets) from "
               "%llu records, %llu octets, in %lld ms; %llu records skipped, "
               "%llu corrupt regions (%llu octets), %llu torn octets",
               config->data_dir, (unsigned long long)self->restored,
               (unsigned long long)self->stored_octets,
               (unsigned long long)stats.records,
               (unsigned long long)stats.journal_octets,
               (long long)(zclock_mono () - started),
               (unsigned long long)stats.skipped,
               (unsigned long long)stats.corrupt,
               (unsigned long long)stats.corrupt_bytes,
               (unsigned long long)stats.torn_bytes);
    if (self->stored_octets > config->max_results)
        zsys_warning ("sink: the journal holds %llu octets of results, over "
                      "the limit of %llu: new results are refused until "
                      "clients take some",
                      (unsigned long long)self->stored_octets,
                      (unsigned long long)config->max_results);
    return 0;
}

//  --------------------------------------------------------------------------
//  Life cycle

static void
s_sink_destroy (s_sink_t **self_p)
{
    s_sink_t *self = *self_p;
    if (!self)
        return;
    //  The journal first: it writes what is staged, from the results
    sink_journal_close (&self->journal);
    zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zsock_destroy (&self->broker);
    zhashx_destroy (&self->watchers);
    zlistx_destroy (&self->pending);
    zhashx_destroy (&self->clients);
    zhashx_destroy (&self->acks);
    zlistx_destroy (&self->ages);
    zhashx_destroy (&self->results);
    if (self->claims)
        for (void *result = zhashx_first (self->claims); result;
             result = zhashx_next (self->claims))
            s_result_destroy (&result);
    zhashx_destroy (&self->claims);
    free (self->dones);
    free (self->data_dir);
    free (self->endpoint);
    free (self->advertise);
    free (self);
    *self_p = NULL;
}

//  The endpoint told to the broker: the configured one, else the bound one,
//  with a wildcard address replaced by this host's name. Caller frees.
static char *
s_advertised (const char *advertise, const char *bound)
{
    if (advertise)
        return strdup (advertise);
    const char *wildcard = strstr (bound, "://0.0.0.0:");
    if (!wildcard)
        return strdup (bound);
    char host[256] = "localhost";
    gethostname (host, sizeof host - 1);
    return zsys_sprintf ("%.*s://%s%s", (int)(wildcard - bound), bound, host,
                         wildcard + strlen ("://0.0.0.0"));
}

static s_sink_t *
s_sink_new (zsock_t *pipe, const drover_sink_config_t *config, char *error,
            size_t error_size)
{
    s_sink_t *self = (s_sink_t *)zmalloc (sizeof *self);
    assert (self);
    self->pipe = pipe;
    self->config = *config;
    if (config->data_dir) {
        //  The caller may free its string once the sink runs
        self->data_dir = strdup (config->data_dir);
        assert (self->data_dir);
        self->config.data_dir = self->data_dir;
    }
    self->heartbeat_ms = 1000;
    self->liveness = 5;
    self->results = id_table_new ();
    zhashx_set_destructor (self->results, s_result_destroy);
    self->claims = zhashx_new ();
    assert (self->claims);
    zhashx_set_key_hasher (self->claims, s_claim_hash);
    zhashx_set_key_comparator (self->claims, s_claim_compare);
    zhashx_set_key_duplicator (self->claims, NULL);
    zhashx_set_key_destructor (self->claims, NULL);
    self->watchers = id_table_new ();
    zhashx_set_key_destructor (self->watchers, s_free_key);
    self->pending = zlistx_new ();
    self->clients = zhashx_new ();
    zhashx_set_destructor (self->clients, s_client_destroy);
    self->acks = zhashx_new ();
    zhashx_set_destructor (self->acks, s_acks_destroy);
    self->ages = zlistx_new ();
    self->dones =
        (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
    assert (self->dones);

    //  The results come back before anybody is served
    if (self->data_dir && s_journal_open (self, error, error_size)) {
        s_sink_destroy (&self);
        return NULL;
    }

    self->router = zsock_new (ZMQ_ROUTER);
    assert (self->router);
    zsock_set_maxmsgsize (self->router, -1);
    //  A full or vanished client makes sends fail instead of dropping
    //  results silently (s_client_flush keeps them then)
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_linger (self->router, 200);
    zsock_set_heartbeat_ivl (self->router, 1000);
    zsock_set_heartbeat_timeout (self->router, 5000);
    zsock_set_sndhwm (self->router, 100000);
    zsock_set_rcvhwm (self->router, 100000);
    if (zsock_bind (self->router, "%s", config->endpoint) < 0) {
        snprintf (error, error_size, "cannot bind %s: %s", config->endpoint,
                  zmq_strerror (zmq_errno ()));
        s_sink_destroy (&self);
        return NULL;
    }
    self->endpoint = zsock_last_endpoint (self->router);
    self->advertise = s_advertised (config->advertise, self->endpoint);
    self->loop = zloop_new ();
    zloop_reader (self->loop, self->router, s_handle_router, self);
    zloop_reader (self->loop, pipe, s_handle_pipe, self);
    zloop_timer (self->loop, 250, 0, s_handle_tick, self);
    if (self->journal) {
        //  Often enough for an fdatasync due after sync_interval_ms
        uint32_t interval =
            config->sync_interval_ms ? config->sync_interval_ms : 200;
        interval = interval < 10 ? 10 : interval > 250 ? 250 : interval;
        zloop_timer (self->loop, interval, 0, s_handle_journal_tick, self);
    }
    s_broker_connect (self);
    return self;
}

static void
s_sink_actor (zsock_t *pipe, void *args)
{
    char error[512] = "";
    s_sink_t *self = s_sink_new (pipe, (const drover_sink_config_t *)args,
                                 error, sizeof error);
    actor_start_report (pipe, self ? NULL : error);
    if (!self)
        return;
    zsys_info ("sink: listening on %s", self->endpoint);
    zloop_start (self->loop);
    s_sink_destroy (&self);
}

drover_sink_config_t
drover_sink_config_default (void)
{
    return (drover_sink_config_t){
        .max_results = 1ull << 30,
        .fsync = DROVER_FSYNC_BATCH,
        .sync_interval_ms = 200,
        .result_ttl_ms = 24ull * 3600 * 1000,
    };
}

zactor_t *
drover_sink_new (const drover_sink_config_t *config, char **error)
{
    assert (config && config->endpoint && config->broker);
    return actor_start (s_sink_actor, (void *)config, "sink", error);
}

char *
drover_sink_endpoint (zactor_t *sink)
{
    zstr_send (sink, "ENDPOINT");
    return zstr_recv (sink);
}

int
drover_sink_stats (zactor_t *sink, drover_sink_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    if (zstr_send (sink, "STATS"))
        return DROVER_EIO;
    zframe_t *frame = zframe_recv (sink);
    if (!frame || zframe_size (frame) != sizeof *stats) {
        zframe_destroy (&frame);
        return DROVER_EIO;
    }
    memcpy (stats, zframe_data (frame), sizeof *stats);
    zframe_destroy (&frame);
    return 0;
}
