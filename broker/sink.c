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
#include "id_map.h"
#include "name_table.h"
#include "routing_table.h"
#include "sink_journal.h"

#include <stddef.h>

typedef struct s_peer_t s_peer_t;
typedef struct s_result_t s_result_t;

//  One outcome: stored, or held while the broker decides a claim.
struct s_result_t {
    drover_task_t item;     //  id, attempt, code and details; reason owned,
                            //  node held in the sink's names
    zframe_t *payload;      //  the result octets
    s_peer_t *node;         //  claims, and results not yet journaled: the
                            //  node to answer STORED (held); NULL: the broker
    s_result_t *next_claim; //  claims: the next claim of the same id
    s_result_t *older;      //  ages: the result stored before, or NULL
    s_result_t *newer;      //  ages: the result stored after, or NULL
    int64_t claimed_at;     //  claims: when the claim last went out (ms)
    int64_t stored_at;      //  when it was stored, or read back (ms)
    bool claimed;           //  a node's result, claimed from the broker: the
                            //  broker hears STORED too once it is stored
    bool journaled;         //  stored: its record is committed (or there is
                            //  no journal), so it is acknowledged and served
    bool delivered;         //  sent to a watcher at least once
    bool aged;              //  result_ttl_ms has passed since stored_at
    bool aging;             //  in the sink's ages
    sink_home_t home;       //  its journal record
};

//  One STORED item: the fields it has of a drover_task_t.
typedef struct {
    uint64_t id;
    uint32_t attempt;
    int32_t code;
} s_stored_t;

//  STORED items waiting to go to one peer.
typedef struct s_acks_t s_acks_t;
struct s_acks_t {
    zframe_t *to;      //  the node's routing id (not owned); NULL: the
                       //  broker
    s_stored_t *items; //  the acknowledgements
    size_t count;      //  how many
    size_t max;        //  room in items
    s_acks_t *next;    //  the next peer with items to send, or NULL
};

//  A client that watches tasks.
typedef struct {
    zframe_t *routing_id; //  where to send (its peer's)
    size_t watching;      //  ids it waits for
    bool release;         //  forget results once delivered
    drover_task_t *batch; //  RESULT items waiting to be sent
    zframe_t **frames;    //  their payloads (not owned)
    size_t batch_count;   //  how many
} s_client_t;

//  A peer on the router that sent RESULT or WATCH: a node, a client, or
//  both, found with one lookup per message. It goes once it has been
//  silent for heartbeat_ms * liveness (a client's watches go then) and no
//  result waits to answer it.
struct s_peer_t {
    routing_key_t key;    //  the table key: its routing id's octets
    zframe_t *routing_id; //  where to send
    int64_t last_recv;    //  when it last sent anything (ms)
    size_t holds;         //  results that answer it STORED once decided
    s_acks_t acks;        //  STORED items waiting to go to it
    const char *name;     //  node name of its last result (held), or NULL
    s_client_t *client;   //  its watches, or NULL: it watches nothing
};

typedef drover_sink_t s_sink_t; //  the sink is the actor's state

struct drover_sink_t {
    drover_sink_config_t config; //  settings (strings not owned)
    char *endpoint;              //  bound endpoint
    char *advertise;             //  endpoint told to the broker
    zsock_t *pipe;               //  actor pipe
    zsock_t *router;             //  nodes and clients
    zsock_t *broker;             //  session with the broker, or NULL
    zloop_t *loop;               //  reactor
    bool shared_loop;            //  the caller's reactor (attached)
    int tick_timer;              //  its timers in that reactor
    int journal_timer;           //  (or -1)
    id_map_t *results;           //  id -> s_result_t stored, owned
    id_map_t *claims;            //  id -> s_result_t held for the broker's
                                 //  verdict (other attempts of the id
                                 //  chained from it), owned
    id_map_t *watchers;          //  id -> s_client_t (one per id)
    zhashx_t *peers;             //  routing id -> s_peer_t, owned
    name_table_t *names;         //  node names of results
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
    drover_task_t *replies;      //  room for the items of one STORED
    uint64_t stored, stale, full, malformed; //  counters
    uint64_t expired;           //  results forgotten by result_ttl_ms
    uint64_t restored;          //  results read back from the journal
    uint64_t unjournaled;       //  accepted results waiting for their record
    unsigned broker_generation; //  bumped on each new broker socket
    int64_t now;                //  the time of this turn (ms); 0: not read
    s_acks_t broker_acks;       //  STORED items to send the broker
    s_acks_t *acking;           //  first of the peers with STORED items to
    s_acks_t *acking_last;      //  send, and the last
    s_result_t *oldest;         //  ages: stored results by stored_at
    s_result_t *newest;         //  (result_ttl_ms), oldest first
    sink_journal_t *journal;    //  the durable store, or NULL
    char *data_dir;             //  config.data_dir, our copy
};

//  Most messages served per wakeup before the turn ends (and commits).
#define SINK_TURN_MAX 256

//  An informational log line, unless the config says quiet
#define s_info(self, ...)                                                      \
    do {                                                                       \
        if (!(self)->config.quiet)                                             \
            zsys_info (__VA_ARGS__);                                           \
    } while (0)

//  Most results aged per tick.
#define SINK_EXPIRE_MAX 100000

//  Most STORED items a peer keeps room for between turns.
#define SINK_ACKS_KEPT DROVER_MAX_BATCH

//  Most tasks one client may watch at once.
#define SINK_MAX_WATCHED 1000000

//  The time of the turn (ms): the clock is read once per turn, not once or
//  twice per result.
static int64_t
s_now (s_sink_t *self)
{
    if (self->now == 0)
        self->now = zclock_mono ();
    return self->now;
}

//  Time has passed (a reactor event, or a commit that may have waited for
//  the disk): s_now reads the clock again.
static void
s_clock_stale (s_sink_t *self)
{
    self->now = 0;
}

static void
s_client_destroy (s_client_t **client_p)
{
    s_client_t *client = *client_p;
    if (!client)
        return;
    free (client->batch);
    free (client->frames);
    free (client);
    *client_p = NULL;
}

//  A peer that sent its first RESULT or WATCH.
static s_peer_t *
s_peer_new (s_sink_t *self, zframe_t *routing_id)
{
    s_peer_t *peer = (s_peer_t *)zmalloc (sizeof *peer);
    assert (peer);
    peer->routing_id = zframe_dup (routing_id);
    peer->key = routing_key (peer->routing_id);
    peer->acks.to = peer->routing_id;
    peer->last_recv = s_now (self);
    zhashx_insert (self->peers, &peer->key, peer);
    return peer;
}

static void
s_peer_destroy (s_sink_t *self, s_peer_t **peer_p)
{
    s_peer_t *peer = *peer_p;
    s_client_destroy (&peer->client);
    name_table_release (self->names, peer->name);
    free (peer->acks.items);
    zframe_destroy (&peer->routing_id);
    free (peer);
    *peer_p = NULL;
}

//  A result holds its node until it answers it.
static s_peer_t *
s_peer_hold (s_peer_t *peer)
{
    peer->holds++;
    return peer;
}

static void
s_peer_release (s_peer_t **peer_p)
{
    if (*peer_p) {
        assert ((*peer_p)->holds > 0);
        (*peer_p)->holds--;
        *peer_p = NULL;
    }
}

static void
s_result_destroy (s_sink_t *self, s_result_t **result_p)
{
    s_result_t *result = *result_p;
    zframe_destroy (&result->payload);
    s_peer_release (&result->node);
    free ((char *)result->item.reason);
    name_table_release (self->names, result->item.node);
    free (result);
    *result_p = NULL;
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

//  The ages: stored results in the order their retention started, a list
//  threaded through them (older, newer), so that aging allocates nothing.
static void
s_ages_add (s_sink_t *self, s_result_t *result)
{
    assert (!result->aging);
    result->aging = true;
    result->older = self->newest;
    result->newer = NULL;
    if (self->newest)
        self->newest->newer = result;
    else
        self->oldest = result;
    self->newest = result;
}

static void
s_ages_remove (s_sink_t *self, s_result_t *result)
{
    if (!result->aging)
        return;
    if (result->older)
        result->older->newer = result->newer;
    else
        self->oldest = result->newer;
    if (result->newer)
        result->newer->older = result->older;
    else
        self->newest = result->older;
    result->older = result->newer = NULL;
    result->aging = false;
}

//  The claim held for (id, attempt), or NULL.
static s_result_t *
s_claim_find (s_sink_t *self, uint64_t id, uint32_t attempt)
{
    s_result_t *claim = (s_result_t *)id_map_lookup (self->claims, id);
    while (claim && claim->item.attempt != attempt)
        claim = claim->next_claim;
    return claim;
}

//  Holds a claim, for an (id, attempt) the sink holds none for.
static void
s_claim_hold (s_sink_t *self, s_result_t *result)
{
    s_result_t *first =
        (s_result_t *)id_map_lookup (self->claims, result->item.id);
    if (first) {
        result->next_claim = first->next_claim;
        first->next_claim = result;
    }
    else
        id_map_set (self->claims, result->item.id, result);
}

//  Takes the claim of (id, attempt) out of those held: returns it, or
//  NULL if the sink holds none.
static s_result_t *
s_claim_take (s_sink_t *self, uint64_t id, uint32_t attempt)
{
    s_result_t *first = (s_result_t *)id_map_lookup (self->claims, id);
    if (!first)
        return NULL;
    s_result_t *claim = first;
    if (first->item.attempt == attempt) {
        if (first->next_claim)
            id_map_set (self->claims, id, first->next_claim);
        else
            id_map_remove (self->claims, id);
    }
    else {
        s_result_t *before = first;
        while (before->next_claim
               && before->next_claim->item.attempt != attempt)
            before = before->next_claim;
        claim = before->next_claim;
        if (!claim)
            return NULL;
        before->next_claim = claim->next_claim;
    }
    claim->next_claim = NULL;
    return claim;
}

//  The peer's watches, made at its first WATCH.
static s_client_t *
s_client_require (s_peer_t *peer)
{
    if (!peer->client) {
        s_client_t *client = (s_client_t *)zmalloc (sizeof *client);
        assert (client);
        client->routing_id = peer->routing_id;
        client->batch =
            (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
        client->frames =
            (zframe_t **)calloc (DROVER_MAX_BATCH, sizeof (zframe_t *));
        assert (client->batch && client->frames);
        peer->client = client;
    }
    return peer->client;
}

//  Forgets a stored result: released, or past its retention. With a
//  journal, a forget record says so (record false: replay, which needs
//  none).
static void
s_forget (s_sink_t *self, s_result_t *result, bool record)
{
    s_ages_remove (self, result);
    self->stored_octets -= zframe_size (result->payload);
    if (self->journal) {
        if (record)
            sink_journal_forget (self->journal, &result->home);
        else
            sink_journal_unlink (self->journal, &result->home);
    }
    id_map_remove (self->results, result->item.id);
    s_result_destroy (self, &result);
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
        char *key = zframe_strhex (client->routing_id);
        zsys_warning ("sink: cannot deliver %zu results to client %s",
                      msg.task_count, key);
        zstr_free (&key);
        return;
    }
    //  Released results go only now: their frames were in the batch. So do
    //  results past their retention, now that they reached a watcher.
    for (size_t i = 0; i < msg.task_count; i++) {
        s_result_t *result =
            (s_result_t *)id_map_lookup (self->results, client->batch[i].id);
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

//  The node name of a result from peer, held: the name of its last result
//  (no lookup) when it is the same.
static const char *
s_node_name (s_sink_t *self, s_peer_t *peer, const char *name)
{
    if (!name)
        return NULL;
    if (!peer->name || strcmp (peer->name, name) != 0) {
        name_table_release (self->names, peer->name);
        peer->name = name_table_hold (self->names, name);
    }
    return name_table_hold_again (peer->name);
}

//  Makes a result of an item from peer (NULL: the broker, or the journal),
//  taking its payload.
static s_result_t *
s_result_new (s_sink_t *self, const drover_task_t *item, zframe_t **payload_p,
              s_peer_t *peer)
{
    s_result_t *result = (s_result_t *)zmalloc (sizeof *result);
    assert (result);
    result->item = *item;
    result->item.payload = (drover_bytes_t){NULL, 0};
    result->item.reason = item->reason ? strdup (item->reason) : NULL;
    result->item.node = peer ? s_node_name (self, peer, item->node)
                             : name_table_hold (self->names, item->node);
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

//  Queues one STORED item for a node (its acks) or the broker (the sink's
//  broker_acks); sent at the end of the turn, batched per peer.
static void
s_ack (s_sink_t *self, s_acks_t *acks, uint64_t id, uint32_t attempt, int code)
{
    if (acks->count == 0) {
        if (self->acking_last)
            self->acking_last->next = acks;
        else
            self->acking = acks;
        self->acking_last = acks;
    }
    if (acks->count == acks->max) {
        acks->max = acks->max ? 2 * acks->max : 16;
        acks->items = (s_stored_t *)realloc (acks->items,
                                             acks->max * sizeof (s_stored_t));
        assert (acks->items);
    }
    acks->items[acks->count++] = (s_stored_t){id, attempt, code};
    if (self->config.verbose || code == DROVER_ESTALE)
        zsys_debug ("sink: task %llu attempt %u: STORED %s",
                    (unsigned long long)id, attempt, drover_strcode (code));
}

//  Where the STORED of a result goes: its node, or the broker.
static s_acks_t *
s_acks_of (s_sink_t *self, s_peer_t *node)
{
    return node ? &node->acks : &self->broker_acks;
}

//  Sends the queued STORED items.
static void
s_flush_acks (s_sink_t *self)
{
    s_acks_t *acks = self->acking;
    self->acking = self->acking_last = NULL;
    while (acks) {
        for (size_t sent = 0; sent < acks->count;) {
            size_t count = acks->count - sent;
            if (count > DROVER_MAX_BATCH)
                count = DROVER_MAX_BATCH;
            for (size_t i = 0; i < count; i++) {
                s_stored_t *item = &acks->items[sent + i];
                self->replies[i] = (drover_task_t){.id = item->id,
                                                   .attempt = item->attempt,
                                                   .code = item->code};
            }
            drover_msg_t reply;
            drover_msg_init (&reply, DROVER_STORED);
            reply.tasks = self->replies;
            reply.task_count = count;
            if (acks->to)
                drover_wire_send (self->router, acks->to, &reply, NULL);
            else
                s_broker_send (self, &reply);
            sent += count;
        }
        acks->count = 0;
        if (acks->max > SINK_ACKS_KEPT) {
            //  A burst: give its room back
            free (acks->items);
            acks->items = NULL;
            acks->max = 0;
        }
        s_acks_t *next = acks->next;
        acks->next = NULL;
        acks = next;
    }
}

//  A stored result is safe (journaled, or there is no journal): its sender
//  hears STORED (and the broker, for a claimed result: that ends the task
//  there, SPEC 5.18), its watcher gets it, its retention starts.
static void
s_publish (s_sink_t *self, s_result_t *result)
{
    result->journaled = true;
    result->stored_at = s_now (self);
    if (self->config.result_ttl_ms)
        s_ages_add (self, result);
    s_ack (self, s_acks_of (self, result->node), result->item.id,
           result->item.attempt, 0);
    if (result->claimed)
        s_ack (self, &self->broker_acks, result->item.id, result->item.attempt,
               0);
    s_peer_release (&result->node);
    s_client_t *client =
        (s_client_t *)id_map_remove (self->watchers, result->item.id);
    if (client) {
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
    id_map_set (self->results, result->item.id, result);
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
    result->claimed_at = s_now (self);
    self->dones[self->done_count++] =
        (drover_task_t){.id = result->item.id,
                        .attempt = result->item.attempt,
                        .code = result->item.code};
    if (self->done_count == DROVER_MAX_BATCH)
        s_flush_done (self);
}

//  A held result is sent again: the newest sender hears STORED.
static void
s_answer_newest (s_result_t *result, s_peer_t *peer)
{
    s_peer_release (&result->node);
    result->node = s_peer_hold (peer);
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
s_handle_node_result (s_sink_t *self, s_peer_t *peer, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    for (size_t i = 0; i < msg->task_count; i++) {
        drover_task_t *item = &msg->tasks[i];
        zframe_t *payload = drover_packet_take_payload (packet, i);
        s_result_t *stored =
            (s_result_t *)id_map_lookup (self->results, item->id);
        s_result_t *held = s_claim_find (self, item->id, item->attempt);
        if (stored && !stored->journaled) {
            if (stored->node && stored->item.attempt == item->attempt)
                s_answer_newest (stored, peer);
        }
        else if (held)
            //  Sent again while its claim is out
            s_answer_newest (held, peer);
        //  A task that has its result already is claimed whatever the
        //  room (the claim is what ends it at the broker): never EFULL
        else if (!stored && !s_room_for (self, zframe_size (payload)))
            s_ack (self, &peer->acks, item->id, item->attempt, DROVER_EFULL);
        else {
            self->stored_octets += zframe_size (payload);
            s_result_t *result = s_result_new (self, item, &payload, peer);
            result->node = s_peer_hold (peer);
            result->claimed = true;
            s_claim_hold (self, result);
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
            (s_result_t *)id_map_lookup (self->results, item->id);
        if (stored && !stored->journaled)
            ; //  answered when journaled
        else if (stored) {
            self->stale++;
            s_ack (self, &self->broker_acks, item->id, item->attempt,
                   DROVER_ESTALE);
        }
        else if (!s_room_for (self, zframe_size (payload)))
            s_ack (self, &self->broker_acks, item->id, item->attempt,
                   DROVER_EFULL);
        else {
            self->stored_octets += zframe_size (payload);
            s_accept (self, s_result_new (self, item, &payload, NULL));
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
            s_claim_take (self, msg->tasks[i].id, msg->tasks[i].attempt);
        if (!result)
            continue; //  decided already, or never ours
        s_result_t *stored =
            (s_result_t *)id_map_lookup (self->results, result->item.id);
        int code = msg->tasks[i].code;
        if (code == 0 && !stored) {
            s_accept (self, result);
            continue;
        }
        self->stale++;
        self->stored_octets -= zframe_size (result->payload);
        s_info (self, "sink: stale result of task %llu attempt %u dropped",
                (unsigned long long)result->item.id, result->item.attempt);
        if (code != 0 || stored->journaled) {
            s_ack (self, s_acks_of (self, result->node), result->item.id,
                   result->item.attempt, DROVER_ESTALE);
            if (code == 0)
                s_ack (self, &self->broker_acks, result->item.id,
                       result->item.attempt, 0);
        }
        s_result_destroy (self, &result);
    }
}

//  Claims again those the broker has not decided in time, or all of them
//  (a new session with the broker).
static void
s_reclaim (s_sink_t *self, bool all)
{
    int64_t now = zclock_mono ();
    int64_t expiry = (int64_t)self->heartbeat_ms * self->liveness;
    uint64_t id;
    for (s_result_t *first = (s_result_t *)id_map_first (self->claims, &id);
         first; first = (s_result_t *)id_map_next (self->claims, &id))
        for (s_result_t *result = first; result; result = result->next_claim)
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
    for (size_t count = 0; count < SINK_EXPIRE_MAX && (result = self->oldest)
                           && (uint64_t)(now - result->stored_at) >= ttl;
         count++) {
        s_ages_remove (self, result);
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
    if (self->journal) {
        s_clock_stale (self); //  what it publishes is stored after it
        sink_journal_commit (self->journal, s_committed, self);
    }
    s_flush_acks (self);
    s_flush_pending (self);
    s_flush_done (self);
}

static void
s_handle_watch (s_sink_t *self, s_peer_t *peer, drover_msg_t *msg)
{
    s_client_t *client = s_client_require (peer);
    if (client->watching + msg->id_count > SINK_MAX_WATCHED) {
        drover_wire_send_error (self->router, peer->routing_id, msg->ref,
                                DROVER_EFULL,
                                "you watch %zu tasks, the limit is %d: wait "
                                "for some results first",
                                client->watching, SINK_MAX_WATCHED);
        return;
    }
    client->release = msg->release;
    for (size_t i = 0; i < msg->id_count; i++) {
        s_result_t *result =
            (s_result_t *)id_map_lookup (self->results, msg->ids[i]);
        if (result && result->journaled) {
            s_client_add (self, client, result);
            continue;
        }
        //  No result yet, or one waiting for the journal: it comes when
        //  it is safe. The newest watcher wins.
        s_client_t *other =
            (s_client_t *)id_map_set (self->watchers, msg->ids[i], client);
        if (other == client)
            continue;
        if (other)
            other->watching--;
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
            (s_result_t *)id_map_lookup (self->results, msg->ids[i]);
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
    if (self->config.verbose) {
        char *key = zframe_strhex (routing_id);
        zsys_debug ("sink: recv %s from %s", drover_command_name (msg->command),
                    key);
        zstr_free (&key);
    }
    routing_key_t key = routing_key (routing_id);
    s_peer_t *peer = (s_peer_t *)zhashx_lookup (self->peers, &key);
    if (peer)
        peer->last_recv = s_now (self);
    else if (msg->command == DROVER_RESULT || msg->command == DROVER_WATCH)
        peer = s_peer_new (self, routing_id);
    switch (msg->command) {
        case DROVER_RESULT: s_handle_node_result (self, peer, packet); break;
        case DROVER_WATCH: s_handle_watch (self, peer, msg); break;
        case DROVER_STATUS: s_handle_status (self, routing_id, msg); break;
        case DROVER_HEARTBEAT: {
            //  A client whose watches this sink does not hold (it restarted,
            //  or forgot them) must WATCH again (SPEC 6)
            s_client_t *client = peer ? peer->client : NULL;
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
    drover_packet_destroy (&packet);
}

static int
s_handle_router (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    s_sink_t *self = (s_sink_t *)arg;
    s_clock_stale (self);
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
    self->broker_recv = s_now (self);
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
                    s_info (self,
                            "sink: registered with the broker at %s as %s",
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
    s_clock_stale (self);
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
    uint64_t *ids = (uint64_t *)malloc (client->watching * sizeof *ids);
    assert (ids);
    size_t count = 0;
    uint64_t id;
    for (void *watcher = id_map_first (self->watchers, &id); watcher;
         watcher = id_map_next (self->watchers, &id))
        if (watcher == client) {
            assert (count < client->watching);
            ids[count++] = id;
        }
    for (size_t i = 0; i < count; i++)
        id_map_remove (self->watchers, ids[i]);
    free (ids);
    client->watching = 0;
}

//  Peers silent for expiry: clients lose their watches, and a peer goes
//  once nothing waits for it (results held for it, STORED to send).
static void
s_expire_peers (s_sink_t *self, int64_t now, int64_t expiry)
{
    zlistx_t *gone = zlistx_new ();
    for (s_peer_t *peer = (s_peer_t *)zhashx_first (self->peers); peer;
         peer = (s_peer_t *)zhashx_next (self->peers)) {
        if (now - peer->last_recv <= expiry)
            continue;
        if (peer->client) {
            s_forget_watches (self, peer->client);
            s_client_destroy (&peer->client);
        }
        if (peer->holds == 0 && peer->acks.count == 0)
            zlistx_add_end (gone, peer);
    }
    for (s_peer_t *peer = (s_peer_t *)zlistx_first (gone); peer;
         peer = (s_peer_t *)zlistx_next (gone)) {
        zhashx_delete (self->peers, &peer->key);
        s_peer_destroy (self, &peer);
    }
    zlistx_destroy (&gone);
}

static int
s_handle_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_sink_t *self = (s_sink_t *)arg;
    s_clock_stale (self);
    int64_t now = s_now (self);
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
    s_expire_peers (self, now, expiry);
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
    s_sink_t *self = (s_sink_t *)arg;
    s_clock_stale (self);
    s_turn_end (self);
    return 0;
}

static void
s_stats (s_sink_t *self, drover_sink_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    stats->results = id_map_size (self->results);
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
    s_result_t *old = (s_result_t *)id_map_lookup (self->results, item->id);
    if (old)
        s_forget (self, old, false);
    s_result_t *result = s_result_new (self, item, payload_p, NULL);
    self->stored_octets += zframe_size (result->payload);
    id_map_set (self->results, item->id, result);
    result->journaled = true;
    result->stored_at = zclock_mono ();
    if (self->config.result_ttl_ms)
        s_ages_add (self, result);
    sink_journal_link (self->journal, &result->home, segment);
}

static void
s_replay_forget (uint64_t id, void *arg)
{
    s_sink_t *self = (s_sink_t *)arg;
    s_result_t *result = (s_result_t *)id_map_lookup (self->results, id);
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
    self->restored = id_map_size (self->results);
    sink_journal_stats_t stats;
    sink_journal_stats (self->journal, &stats);
    s_info (self,
            "sink: journal %s: %llu results restored (%llu octets) from "
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

//  Destroys a table of results and the results (claims: with those
//  chained to them).
static void
s_results_destroy (s_sink_t *self, id_map_t **table_p)
{
    id_map_t *table = *table_p;
    if (!table)
        return;
    uint64_t id;
    for (s_result_t *first = (s_result_t *)id_map_first (table, &id); first;
         first = (s_result_t *)id_map_next (table, &id))
        for (s_result_t *result = first, *next; result; result = next) {
            next = result->next_claim;
            s_result_destroy (self, &result);
        }
    id_map_destroy (table_p);
}

static void
s_sink_destroy (s_sink_t **self_p)
{
    s_sink_t *self = *self_p;
    if (!self)
        return;
    //  The journal first: it writes what is staged, from the results
    sink_journal_close (&self->journal);
    if (self->shared_loop) {
        //  Out of the caller's reactor, which goes on
        zloop_reader_end (self->loop, self->router);
        if (self->broker)
            zloop_reader_end (self->loop, self->broker);
        zloop_timer_end (self->loop, self->tick_timer);
        if (self->journal_timer >= 0)
            zloop_timer_end (self->loop, self->journal_timer);
    }
    else
        zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zsock_destroy (&self->broker);
    id_map_destroy (&self->watchers);
    zlistx_destroy (&self->pending);
    //  Results, then what they hold: their nodes and names
    s_results_destroy (self, &self->results);
    s_results_destroy (self, &self->claims);
    if (self->peers)
        for (s_peer_t *peer = (s_peer_t *)zhashx_first (self->peers); peer;
             peer = (s_peer_t *)zhashx_next (self->peers))
            s_peer_destroy (self, &peer);
    zhashx_destroy (&self->peers);
    name_table_destroy (&self->names);
    free (self->broker_acks.items);
    free (self->dones);
    free (self->replies);
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

//  A sink on the actor's pipe in a reactor of its own, or (pipe NULL) in
//  the caller's reactor loop.
static s_sink_t *
s_sink_new (zsock_t *pipe, zloop_t *loop, const drover_sink_config_t *config,
            char *error, size_t error_size)
{
    s_sink_t *self = (s_sink_t *)zmalloc (sizeof *self);
    assert (self);
    self->pipe = pipe;
    self->journal_timer = -1;
    self->config = *config;
    if (config->data_dir) {
        //  The caller may free its string once the sink runs
        self->data_dir = strdup (config->data_dir);
        assert (self->data_dir);
        self->config.data_dir = self->data_dir;
    }
    self->heartbeat_ms = 1000;
    self->liveness = 5;
    self->results = id_map_new ();
    self->claims = id_map_new ();
    self->watchers = id_map_new ();
    assert (self->results && self->claims && self->watchers);
    self->peers = routing_table_new ();
    self->names = name_table_new ();
    self->pending = zlistx_new ();
    self->dones =
        (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
    self->replies =
        (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
    assert (self->dones && self->replies);

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
    if (config->local_endpoint
        && zsock_bind (self->router, "%s", config->local_endpoint) < 0) {
        snprintf (error, error_size, "cannot bind %s: %s",
                  config->local_endpoint, zmq_strerror (zmq_errno ()));
        s_sink_destroy (&self);
        return NULL;
    }
    self->advertise = s_advertised (config->advertise, self->endpoint);
    self->shared_loop = loop != NULL;
    self->loop = loop ? loop : zloop_new ();
    zloop_reader (self->loop, self->router, s_handle_router, self);
    if (pipe)
        zloop_reader (self->loop, pipe, s_handle_pipe, self);
    self->tick_timer = zloop_timer (self->loop, 250, 0, s_handle_tick, self);
    if (self->journal) {
        //  Often enough for an fdatasync due after sync_interval_ms
        uint32_t interval =
            config->sync_interval_ms ? config->sync_interval_ms : 200;
        interval = interval < 10 ? 10 : interval > 250 ? 250 : interval;
        self->journal_timer =
            zloop_timer (self->loop, interval, 0, s_handle_journal_tick, self);
    }
    s_broker_connect (self);
    return self;
}

static void
s_sink_actor (zsock_t *pipe, void *args)
{
    char error[512] = "";
    s_sink_t *self = s_sink_new (pipe, NULL, (const drover_sink_config_t *)args,
                                 error, sizeof error);
    actor_start_report (pipe, self ? NULL : error);
    if (!self)
        return;
    s_info (self, "sink: listening on %s", self->endpoint);
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

drover_sink_t *
drover_sink_attach (zloop_t *loop, const drover_sink_config_t *config,
                    char **error)
{
    assert (loop && config && config->endpoint && config->broker);
    char reason[512] = "";
    s_sink_t *self = s_sink_new (NULL, loop, config, reason, sizeof reason);
    if (!self && error)
        *error = strdup (reason);
    else if (self)
        s_info (self, "sink: listening on %s (in the caller's thread)",
                self->endpoint);
    return self;
}

void
drover_sink_detach (drover_sink_t **self_p)
{
    assert (self_p);
    s_sink_destroy (self_p);
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
