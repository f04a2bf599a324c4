/*  sink.c - the sink actor: keeps the first outcome of each task, tells the
    broker, acknowledges senders and streams results to watching clients.

    One ROUTER socket serves nodes (RESULT), clients (WATCH, STATUS,
    HEARTBEAT); one DEALER socket is the sink's session with the broker
    (HELLO, DONE, HEARTBEAT; the broker's own RESULTs arrive there).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "actor_start.h"
#include "drover_sink.h"
#include "drover_wire.h"
#include "id_table.h"

//  One outcome: stored, or held while the broker decides a claim.
typedef struct {
    drover_task_t item; //  id, attempt, code and details; strings owned
    zframe_t *payload;  //  the result octets
    zframe_t *node;     //  claims: the node to answer STORED, or NULL
    int64_t claimed_at; //  claims: when the claim last went out (ms)
} s_result_t;

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
    int64_t claim_expiry; //  resend claims undecided this long (ms)
} s_sink_t;

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
    //  Released results go only now: their frames were in the batch
    if (client->release)
        for (size_t i = 0; i < msg.task_count; i++) {
            s_result_t *result = (s_result_t *)zhashx_lookup (
                self->results, &client->batch[i].id);
            if (result) {
                self->stored_octets -= zframe_size (result->payload);
                zhashx_delete (self->results, &client->batch[i].id);
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
    result->payload = *payload_p;
    *payload_p = NULL;
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

//  Keeps a result as its task's one result and hands it to its watcher.
static void
s_keep (s_sink_t *self, s_result_t *result)
{
    zhashx_insert (self->results, &result->item.id, result);
    self->stored++;
    s_client_t *client =
        (s_client_t *)zhashx_lookup (self->watchers, &result->item.id);
    if (client) {
        zhashx_delete (self->watchers, &result->item.id);
        client->watching--;
        s_client_add (self, client, result);
    }
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

static void
s_send_stored (zsock_t *sock, zframe_t *routing_id, drover_task_t *acks,
               size_t count)
{
    if (count == 0)
        return;
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STORED);
    reply.tasks = acks;
    reply.task_count = count;
    drover_wire_send (sock, routing_id, &reply, NULL);
}

//  RESULT from a node: each result is held and claimed from the broker;
//  the node hears STORED when the verdict comes. Even a result for a task
//  that has one is claimed: the broker may hold that task again (a client
//  resubmitted it after a restart), and only the claim ends it there; the
//  verdict then finds the stored result and drops the new one. Results the
//  sink cannot take are answered at once.
static void
s_handle_node_result (s_sink_t *self, zframe_t *routing_id,
                      drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    drover_task_t *acks =
        (drover_task_t *)calloc (msg->task_count + 1, sizeof (drover_task_t));
    assert (acks);
    size_t ack_count = 0;
    for (size_t i = 0; i < msg->task_count; i++) {
        drover_task_t *item = &msg->tasks[i];
        zframe_t *payload = drover_packet_take_payload (packet, i);
        s_result_t *held = (s_result_t *)zhashx_lookup (self->claims, item);
        int code = 0;
        if (held) {
            //  Sent again while its claim is out: answer the newest sender
            zframe_destroy (&held->node);
            held->node = zframe_dup (routing_id);
        }
        else if (!s_room_for (self, zframe_size (payload)))
            code = DROVER_EFULL;
        else {
            self->stored_octets += zframe_size (payload);
            s_result_t *result = s_result_new (item, &payload);
            result->node = zframe_dup (routing_id);
            zhashx_insert (self->claims, &result->item, result);
            s_claim (self, result);
        }
        zframe_destroy (&payload);
        if (code) {
            acks[ack_count++] = (drover_task_t){
                .id = item->id, .attempt = item->attempt, .code = code};
            if (self->config.verbose || code == DROVER_ESTALE)
                zsys_debug ("sink: task %llu attempt %u: %s",
                            (unsigned long long)item->id, item->attempt,
                            drover_strcode (code));
        }
    }
    s_send_stored (self->router, routing_id, acks, ack_count);
    free (acks);
    s_flush_done (self);
}

//  RESULT from the broker: final outcomes, stored at once (SPEC 5.18).
static void
s_handle_broker_result (s_sink_t *self, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    drover_task_t *acks =
        (drover_task_t *)calloc (msg->task_count + 1, sizeof (drover_task_t));
    assert (acks);
    for (size_t i = 0; i < msg->task_count; i++) {
        drover_task_t *item = &msg->tasks[i];
        zframe_t *payload = drover_packet_take_payload (packet, i);
        acks[i] = (drover_task_t){.id = item->id, .attempt = item->attempt};
        if (zhashx_lookup (self->results, &item->id)) {
            self->stale++;
            acks[i].code = DROVER_ESTALE;
        }
        else if (!s_room_for (self, zframe_size (payload)))
            acks[i].code = DROVER_EFULL;
        else {
            self->stored_octets += zframe_size (payload);
            s_keep (self, s_result_new (item, &payload));
        }
        zframe_destroy (&payload);
    }
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STORED);
    reply.tasks = acks;
    reply.task_count = msg->task_count;
    s_broker_send (self, &reply);
    free (acks);
    s_flush_pending (self);
}

//  DONE from the broker: its verdicts on claims. A result it accepts is
//  kept and published; one it refuses is dropped. Either way its node
//  hears STORED, batched per node.
static void
s_handle_verdicts (s_sink_t *self, drover_msg_t *msg)
{
    s_result_t **decided =
        (s_result_t **)calloc (msg->task_count + 1, sizeof (s_result_t *));
    drover_task_t *acks =
        (drover_task_t *)calloc (msg->task_count + 1, sizeof (drover_task_t));
    bool *kept = (bool *)calloc (msg->task_count + 1, sizeof (bool));
    assert (decided && acks && kept);
    size_t count = 0;
    for (size_t i = 0; i < msg->task_count; i++) {
        s_result_t *result =
            (s_result_t *)zhashx_lookup (self->claims, &msg->tasks[i]);
        if (!result)
            continue; //  decided already, or never ours
        zhashx_delete (self->claims, &msg->tasks[i]);
        int code = msg->tasks[i].code;
        if (code == 0 && zhashx_lookup (self->results, &result->item.id))
            code = DROVER_ESTALE;
        if (code == 0) {
            s_keep (self, result);
            kept[count] = true;
        }
        else {
            self->stale++;
            code = DROVER_ESTALE;
            self->stored_octets -= zframe_size (result->payload);
            zsys_info ("sink: stale result of task %llu attempt %u dropped",
                       (unsigned long long)result->item.id,
                       result->item.attempt);
        }
        acks[count] = (drover_task_t){.id = result->item.id,
                                      .attempt = result->item.attempt,
                                      .code = code};
        decided[count++] = result;
    }
    //  STORED to each node, for all of its results at once
    drover_task_t *batch =
        (drover_task_t *)calloc (count + 1, sizeof (drover_task_t));
    bool *sent = (bool *)calloc (count + 1, sizeof (bool));
    assert (batch && sent);
    for (size_t i = 0; i < count; i++) {
        if (sent[i] || !decided[i]->node)
            continue;
        size_t batch_count = 0;
        for (size_t j = i; j < count; j++)
            if (!sent[j] && decided[j]->node
                && zframe_eq (decided[j]->node, decided[i]->node)) {
                batch[batch_count++] = acks[j];
                sent[j] = true;
            }
        s_send_stored (self->router, decided[i]->node, batch, batch_count);
    }
    for (size_t i = 0; i < count; i++) {
        zframe_destroy (&decided[i]->node);
        if (!kept[i])
            s_result_destroy ((void **)&decided[i]);
    }
    free (batch);
    free (sent);
    free (kept);
    free (acks);
    free (decided);
    s_flush_pending (self);
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
        if (result) {
            s_client_add (self, client, result);
            continue;
        }
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
        items[i].state = result->item.code == 0 ? DROVER_STATE_DONE
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

static int
s_handle_router (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_sink_t *self = (s_sink_t *)arg;
    drover_packet_t *packet =
        drover_wire_serve (self->router, "sink", &self->malformed);
    if (!packet)
        return 0;
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
    return 0;
}

static int
s_handle_broker (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_sink_t *self = (s_sink_t *)arg;
    drover_packet_t *packet;
    int rc = drover_packet_recv (self->broker, false, &packet);
    if (!packet)
        return 0;
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
    return 0;
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
    zstr_free (&command);
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
    zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zsock_destroy (&self->broker);
    zhashx_destroy (&self->watchers);
    zlistx_destroy (&self->pending);
    zhashx_destroy (&self->clients);
    zhashx_destroy (&self->results);
    if (self->claims)
        for (void *result = zhashx_first (self->claims); result;
             result = zhashx_next (self->claims))
            s_result_destroy (&result);
    zhashx_destroy (&self->claims);
    free (self->dones);
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
    self->dones =
        (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
    assert (self->dones);

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
    s_broker_connect (self);
    return self;
}

static void
s_sink_actor (zsock_t *pipe, void *args)
{
    char error[256] = "";
    s_sink_t *self = s_sink_new (pipe, (const drover_sink_config_t *)args,
                                 error, sizeof error);
    actor_start_report (pipe, self ? NULL : error);
    if (!self)
        return;
    zsys_info ("sink: listening on %s", self->endpoint);
    zloop_start (self->loop);
    s_sink_destroy (&self);
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
