/*  test_broker.c - the broker and its embedded sink as in-process actors,
    driven by fake clients and nodes that speak DTP over real TCP sockets.
*/
#include "drover_broker.h"
#include "drover_sink.h"
#include "drover_wire.h"

#include "leak_check.h"

#include <criterion/criterion.h>

//  --------------------------------------------------------------------------
//  Fake peers

static zactor_t *
s_broker (uint32_t heartbeat_ms, uint64_t max_queued, uint64_t max_payload)
{
    drover_broker_config_t config = drover_broker_config_default ();
    config.endpoint = "tcp://127.0.0.1:*";
    config.sink_endpoint = "tcp://127.0.0.1:*";
    config.heartbeat_ms = heartbeat_ms;
    //  Short heartbeats test expiry; otherwise a slow run (valgrind) must not
    //  expire the fake peers, which send only when the test says
    config.liveness = heartbeat_ms < 500 ? 3 : 60;
    config.max_queued = max_queued;
    config.max_payload = max_payload;
    char *error = NULL;
    zactor_t *broker = drover_broker_new (&config, &error);
    cr_assert_not_null (broker, "broker: %s", error ? error : "");
    return broker;
}

static zsock_t *
s_connect (const char *endpoint)
{
    zsock_t *sock = zsock_new_dealer (endpoint);
    cr_assert_not_null (sock);
    zsock_set_rcvtimeo (sock, 5000);
    return sock;
}

static void
s_send (zsock_t *sock, drover_msg_t *msg)
{
    cr_assert_eq (drover_wire_send (sock, NULL, msg, NULL), 0);
}

//  Receives the next message that is not a HEARTBEAT, within 5 s.
static drover_packet_t *
s_recv (zsock_t *sock)
{
    while (true) {
        drover_packet_t *packet;
        int rc = drover_packet_recv (sock, false, &packet);
        cr_assert_not_null (packet, "nothing received within the deadline");
        cr_assert_eq (rc, 0, "malformed: %s", drover_packet_error (packet));
        if (drover_packet_msg (packet)->command != DROVER_HEARTBEAT)
            return packet;
        drover_packet_destroy (&packet);
    }
}

static drover_packet_t *
s_expect (zsock_t *sock, drover_command_t command)
{
    drover_packet_t *packet = s_recv (sock);
    drover_msg_t *msg = drover_packet_msg (packet);
    cr_assert_eq (msg->command, command, "expected %s, got %s (%s)",
                  drover_command_name (command),
                  drover_command_name (msg->command),
                  msg->reason ? msg->reason : "");
    return packet;
}

//  True when nothing but heartbeats arrive within ms.
static bool
s_silent (zsock_t *sock, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    zpoller_t *poller = zpoller_new (sock, NULL);
    bool silent = true;
    while (silent && zclock_mono () < deadline) {
        if (!zpoller_wait (poller, (int)(deadline - zclock_mono ())))
            break;
        drover_packet_t *packet;
        drover_packet_recv (sock, false, &packet);
        silent =
            packet && drover_packet_msg (packet)->command == DROVER_HEARTBEAT;
        drover_packet_destroy (&packet);
    }
    zpoller_destroy (&poller);
    return silent;
}

//  A client session: HELLO until WELCOME names a sink. Returns the sink
//  endpoint (caller frees).
static char *
s_client_hello (zsock_t *client)
{
    int64_t deadline = zclock_mono () + 5000;
    while (zclock_mono () < deadline) {
        drover_msg_t hello;
        drover_msg_init (&hello, DROVER_HELLO);
        hello.role = "client";
        hello.name = "test-client";
        s_send (client, &hello);
        drover_packet_t *packet = s_expect (client, DROVER_WELCOME);
        drover_msg_t *welcome = drover_packet_msg (packet);
        cr_assert_str_eq (drover_command_name (welcome->command), "WELCOME");
        cr_assert_eq (welcome->max_batch, DROVER_MAX_BATCH);
        char *sink = welcome->endpoint ? strdup (welcome->endpoint) : NULL;
        drover_packet_destroy (&packet);
        if (sink)
            return sink;
        //  The embedded sink registers asynchronously: ask again soon
        zpoller_t *poller = zpoller_new (client, NULL);
        zpoller_wait (poller, 20);
        zpoller_destroy (&poller);
    }
    cr_assert_fail ("the broker never named a sink");
    return NULL;
}

static zsock_t *
s_node_hello (const char *endpoint, const char *name, uint32_t credit)
{
    zsock_t *node = s_connect (endpoint);
    drover_msg_t hello;
    drover_msg_init (&hello, DROVER_HELLO);
    hello.role = "node";
    hello.name = name;
    hello.children = 2;
    const char *handlers[] = {"echo", "fail"};
    hello.handlers = handlers;
    hello.handler_count = 2;
    s_send (node, &hello);
    drover_packet_t *packet = s_expect (node, DROVER_WELCOME);
    drover_packet_destroy (&packet);
    if (credit) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_CREDIT);
        msg.credit = credit;
        s_send (node, &msg);
    }
    return node;
}

//  Submits count echo tasks with payloads "p0", "p1"... and returns ids.
static void
s_submit (zsock_t *client, size_t count, uint64_t *ids, const char *handler)
{
    drover_task_t tasks[16] = {{0}};
    char payloads[16][24]; //  room for any size_t: -Wformat-truncation
    cr_assert (count <= 16);
    for (size_t i = 0; i < count; i++) {
        snprintf (payloads[i], sizeof payloads[i], "p%zu", i);
        tasks[i].handler = handler;
        tasks[i].payload = (drover_bytes_t){payloads[i], strlen (payloads[i])};
    }
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.ref = 42;
    msg.tasks = tasks;
    msg.task_count = count;
    s_send (client, &msg);
    drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert_eq (reply->ref, 42);
    cr_assert_eq (reply->id_count, count);
    memcpy (ids, reply->ids, count * sizeof (uint64_t));
    drover_packet_destroy (&packet);
}

static void
s_watch (zsock_t *client, const uint64_t *ids, size_t count)
{
    drover_msg_t watch;
    drover_msg_init (&watch, DROVER_WATCH);
    watch.ids = (uint64_t *)ids;
    watch.id_count = count;
    s_send (client, &watch);
}

//  The node sends a RESULT for one task; returns the sink's STORED code.
static int
s_result (zsock_t *to_sink, uint64_t id, uint32_t attempt, const char *data)
{
    drover_task_t item = {.id = id, .attempt = attempt, .node = "n1"};
    item.payload = (drover_bytes_t){data, strlen (data)};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = &item;
    msg.task_count = 1;
    s_send (to_sink, &msg);
    drover_packet_t *packet = s_expect (to_sink, DROVER_STORED);
    drover_msg_t *stored = drover_packet_msg (packet);
    cr_assert_eq (stored->task_count, 1);
    cr_assert_eq (stored->tasks[0].id, id);
    int code = stored->tasks[0].code;
    drover_packet_destroy (&packet);
    return code;
}

TestSuite (broker, .timeout = 60);

LEAK_CHECKED_TEST (broker, a_task_travels_client_broker_node_sink_client)
{
    zactor_t *broker = s_broker (1000, 1000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 2);
    zsock_t *node_sink = s_connect (sink_endpoint);
    zsock_t *client_sink = s_connect (sink_endpoint);

    uint64_t ids[3];
    s_submit (client, 3, ids, "echo");
    cr_assert (ids[0] < ids[1] && ids[1] < ids[2]);

    //  Credit 2: exactly two tasks, with their payloads, in order
    drover_packet_t *packet = s_expect (node, DROVER_DISPATCH);
    drover_msg_t *dispatch = drover_packet_msg (packet);
    size_t got = dispatch->task_count;
    cr_assert (got >= 1 && got <= 2);
    cr_assert_eq (dispatch->tasks[0].id, ids[0]);
    cr_assert_eq (dispatch->tasks[0].attempt, 1);
    cr_assert_str_eq (dispatch->tasks[0].handler, "echo");
    cr_assert_eq (dispatch->tasks[0].payload.size, 2);
    cr_assert (memcmp (dispatch->tasks[0].payload.data, "p0", 2) == 0);
    drover_packet_destroy (&packet);
    if (got == 1) {
        packet = s_expect (node, DROVER_DISPATCH);
        cr_assert_eq (drover_packet_msg (packet)->task_count, 1);
        drover_packet_destroy (&packet);
    }
    cr_assert (s_silent (node, 200), "no third task without credit");

    cr_assert_eq (s_result (node_sink, ids[0], 1, "r0"), 0);
    s_watch (client_sink, ids, 1);
    packet = s_expect (client_sink, DROVER_RESULT);
    drover_msg_t *result = drover_packet_msg (packet);
    cr_assert_eq (result->task_count, 1);
    cr_assert_eq (result->tasks[0].id, ids[0]);
    cr_assert_eq (result->tasks[0].code, 0);
    cr_assert_str_eq (result->tasks[0].node, "n1");
    cr_assert_eq (result->tasks[0].payload.size, 2);
    cr_assert (memcmp (result->tasks[0].payload.data, "r0", 2) == 0);
    drover_packet_destroy (&packet);

    //  A second result for the same task is stale
    cr_assert_eq (s_result (node_sink, ids[0], 1, "again"), DROVER_ESTALE);

    //  More credit: the third task
    drover_msg_t credit;
    drover_msg_init (&credit, DROVER_CREDIT);
    credit.credit = 1;
    s_send (node, &credit);
    packet = s_expect (node, DROVER_DISPATCH);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].id, ids[2]);
    drover_packet_destroy (&packet);

    //  A watch before the result exists is answered when it arrives
    s_watch (client_sink, &ids[2], 1);
    cr_assert_eq (s_result (node_sink, ids[2], 1, "r2"), 0);
    packet = s_expect (client_sink, DROVER_RESULT);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].id, ids[2]);
    drover_packet_destroy (&packet);

    //  Status: done at the sink, unknown at the broker once DONE arrived
    int64_t deadline = zclock_mono () + 5000;
    uint32_t state = DROVER_STATE_LEASED;
    while (state != DROVER_STATE_UNKNOWN && zclock_mono () < deadline) {
        drover_msg_t status;
        drover_msg_init (&status, DROVER_STATUS);
        status.ref = 7;
        status.ids = &ids[2];
        status.id_count = 1;
        s_send (client, &status);
        packet = s_expect (client, DROVER_STATUS_REPLY);
        state = drover_packet_msg (packet)->tasks[0].state;
        drover_packet_destroy (&packet);
    }
    cr_assert_eq (state, DROVER_STATE_UNKNOWN, "the broker forgot it");
    drover_msg_t status;
    drover_msg_init (&status, DROVER_STATUS);
    status.ref = 8;
    status.ids = &ids[2];
    status.id_count = 1;
    s_send (client_sink, &status);
    packet = s_expect (client_sink, DROVER_STATUS_REPLY);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].state,
                  DROVER_STATE_DONE);
    drover_packet_destroy (&packet);

    zsock_destroy (&client_sink);
    zsock_destroy (&node_sink);
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, a_failed_task_reaches_the_client_as_a_failure)
{
    zactor_t *broker = s_broker (1000, 1000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 1);
    zsock_t *client_sink = s_connect (sink_endpoint);
    uint64_t id;
    s_submit (client, 1, &id, "fail");
    s_watch (client_sink, &id, 1);
    drover_packet_t *packet = s_expect (node, DROVER_DISPATCH);
    drover_packet_destroy (&packet);

    drover_task_t item = {.id = id,
                          .attempt = 1,
                          .code = DROVER_EFAILED,
                          .reason = "it went wrong",
                          .exit_status = 3};
    drover_msg_t fail;
    drover_msg_init (&fail, DROVER_FAIL);
    fail.tasks = &item;
    fail.task_count = 1;
    s_send (node, &fail);

    packet = s_expect (client_sink, DROVER_RESULT);
    drover_msg_t *result = drover_packet_msg (packet);
    cr_assert_eq (result->tasks[0].id, id);
    cr_assert_eq (result->tasks[0].code, DROVER_EFAILED);
    cr_assert_str_eq (result->tasks[0].reason, "it went wrong");
    cr_assert_eq (result->tasks[0].exit_status, 3);
    cr_assert_str_eq (result->tasks[0].node, "n1");
    cr_assert_eq (result->tasks[0].payload.size, 0);
    drover_packet_destroy (&packet);

    //  A late FAIL of the same attempt is stale and counted
    s_send (node, &fail);
    drover_msg_t stats;
    drover_msg_init (&stats, DROVER_STATS);
    stats.ref = 1;
    uint64_t stale = 0;
    int64_t deadline = zclock_mono () + 5000;
    while (stale == 0 && zclock_mono () < deadline) {
        s_send (client, &stats);
        packet = s_expect (client, DROVER_STATS_REPLY);
        drover_msg_t *reply = drover_packet_msg (packet);
        for (size_t i = 0; i < reply->counter_count; i++)
            if (streq (reply->counters[i].name, "stale"))
                stale = reply->counters[i].value;
        cr_assert_eq (reply->node_info_count, 1);
        cr_assert_str_eq (reply->node_infos[0].name, "n1");
        drover_packet_destroy (&packet);
    }
    cr_assert_eq (stale, 1);

    zsock_destroy (&client_sink);
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, a_silent_node_loses_its_tasks_to_another)
{
    zactor_t *broker = s_broker (100, 1000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *dead = s_node_hello (endpoint, "dead", 1);
    uint64_t id;
    s_submit (client, 1, &id, "echo");
    drover_packet_t *packet = s_expect (dead, DROVER_DISPATCH);
    drover_packet_destroy (&packet);
    int64_t lost_at = zclock_mono ();
    zsock_destroy (&dead); //  it stops heartbeating

    zsock_t *alive = s_node_hello (endpoint, "alive", 1);
    //  Keep the live node alive while waiting for the re-dispatch
    drover_msg_t heartbeat;
    drover_msg_init (&heartbeat, DROVER_HEARTBEAT);
    zpoller_t *poller = zpoller_new (alive, NULL);
    packet = NULL;
    while (!packet) {
        s_send (alive, &heartbeat);
        cr_assert (zclock_mono () - lost_at < 5000, "no re-dispatch");
        if (!zpoller_wait (poller, 50))
            continue;
        cr_assert_eq (drover_packet_recv (alive, false, &packet), 0);
        if (drover_packet_msg (packet)->command != DROVER_DISPATCH)
            drover_packet_destroy (&packet); //  the broker's heartbeats
    }
    zpoller_destroy (&poller);
    drover_msg_t *dispatch = drover_packet_msg (packet);
    cr_assert_eq (dispatch->tasks[0].id, id);
    cr_assert_eq (dispatch->tasks[0].attempt, 2);
    int64_t took = zclock_mono () - lost_at;
    cr_assert (took >= 200 && took < 2000,
               "detected after %lld ms, expected 200-2000 (3 x 100 ms)",
               (long long)took);
    drover_packet_destroy (&packet);

    zsock_destroy (&alive);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, limits_give_explicit_errors)
{
    zactor_t *broker = s_broker (1000, 2, 16);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);

    //  A payload over max_payload
    char big[17] = "0123456789abcdef";
    drover_task_t task = {.handler = "echo"};
    task.payload = (drover_bytes_t){big, 17};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.ref = 5;
    msg.tasks = &task;
    msg.task_count = 1;
    s_send (client, &msg);
    drover_packet_t *packet = s_expect (client, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_ETOOBIG);
    cr_assert_eq (drover_packet_msg (packet)->ref, 5);
    drover_packet_destroy (&packet);

    //  Two tasks fit, a third is refused with EFULL (backpressure)
    uint64_t ids[2];
    s_submit (client, 2, ids, "echo");
    msg.ref = 6;
    task.payload.size = 1;
    s_send (client, &msg);
    packet = s_expect (client, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_EFULL);
    cr_assert_eq (drover_packet_msg (packet)->ref, 6);
    drover_packet_destroy (&packet);

    zsock_destroy (&client);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, garbage_gets_an_error_and_the_broker_goes_on)
{
    zactor_t *broker = s_broker (1000, 100, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *hostile = s_connect (endpoint);
    const char *garbage[] = {"x", "DRV\x01", "DRV\x09"};
    for (size_t i = 0; i < 3; i++) {
        zmsg_t *zmsg = zmsg_new ();
        zmsg_addstr (zmsg, garbage[i]);
        zmsg_addmem (zmsg, "\x01", 1);
        zmsg_addmem (zmsg, "\x80", 1);
        zmsg_send (&zmsg, hostile);
        drover_packet_t *packet = s_expect (hostile, DROVER_ERROR);
        int code = drover_packet_msg (packet)->code;
        cr_assert_eq (code, i == 2 ? DROVER_EVERSION : DROVER_EPROTO,
                      "garbage %zu: %s", i, drover_strcode (code));
        drover_packet_destroy (&packet);
    }
    //  A command the broker does not take
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_WATCH);
    uint64_t id = 1;
    msg.ids = &id;
    msg.id_count = 1;
    s_send (hostile, &msg);
    drover_packet_t *packet = s_expect (hostile, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_ECOMMAND);
    drover_packet_destroy (&packet);
    //  Session commands without a session
    drover_msg_init (&msg, DROVER_CREDIT);
    msg.credit = 3;
    s_send (hostile, &msg);
    packet = s_expect (hostile, DROVER_BYE);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_ESTALE);
    drover_packet_destroy (&packet);
    //  A node HELLO without handlers
    drover_msg_init (&msg, DROVER_HELLO);
    msg.role = "node";
    msg.name = "bad";
    msg.children = 1;
    s_send (hostile, &msg);
    packet = s_expect (hostile, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_EINVAL);
    drover_packet_destroy (&packet);

    //  Everyone else is still served
    zsock_t *client = s_connect (endpoint);
    char *sink = s_client_hello (client);
    zstr_free (&sink);
    zsock_destroy (&client);
    zsock_destroy (&hostile);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, cancel_reports_the_task_as_cancelled)
{
    zactor_t *broker = s_broker (1000, 100, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *client_sink = s_connect (sink_endpoint);
    uint64_t id;
    s_submit (client, 1, &id, "echo");
    drover_msg_t cancel;
    drover_msg_init (&cancel, DROVER_CANCEL);
    cancel.ref = 9;
    cancel.ids = &id;
    cancel.id_count = 1;
    s_send (client, &cancel);
    drover_packet_t *packet = s_expect (client, DROVER_STATUS_REPLY);
    cr_assert_eq (drover_packet_msg (packet)->ref, 9);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].state,
                  DROVER_STATE_REPORTING);
    drover_packet_destroy (&packet);
    s_watch (client_sink, &id, 1);
    packet = s_expect (client_sink, DROVER_RESULT);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].code, DROVER_ECANCELLED);
    drover_packet_destroy (&packet);
    zsock_destroy (&client_sink);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, a_standalone_sink_registers_and_nodes_learn_of_it)
{
    drover_broker_config_t config = drover_broker_config_default ();
    config.endpoint = "tcp://127.0.0.1:*";
    zactor_t *broker = drover_broker_new (&config, NULL);
    cr_assert_not_null (broker);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *node = s_node_hello (endpoint, "n1", 0);
    char *none = drover_broker_sink_endpoint (broker);
    cr_assert_str_eq (none, "", "no sink yet");
    zstr_free (&none);

    drover_sink_config_t sink_config = {.endpoint = "tcp://127.0.0.1:*",
                                        .broker = endpoint,
                                        .max_results = 1 << 20};
    zactor_t *sink = drover_sink_new (&sink_config, NULL);
    cr_assert_not_null (sink);
    char *sink_endpoint = drover_sink_endpoint (sink);
    drover_packet_t *packet = s_expect (node, DROVER_WELCOME);
    cr_assert_str_eq (drover_packet_msg (packet)->endpoint, sink_endpoint);
    drover_packet_destroy (&packet);

    //  A sink that cannot bind does not start, and says why
    drover_sink_config_t clash = sink_config;
    clash.endpoint = sink_endpoint;
    char *error = NULL;
    cr_assert_null (drover_sink_new (&clash, &error));
    cr_assert (strstr (error, "cannot bind"), "%s", error);
    free (error);

    zstr_free (&sink_endpoint);
    zactor_destroy (&sink);
    zsock_destroy (&node);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

//  --------------------------------------------------------------------------
//  Retries and dead letters

//  A broker whose default backoff is retry_ms (so d = retry_ms, capped).
static zactor_t *
s_broker_retrying (uint64_t retry_ms, uint64_t max_dead)
{
    drover_broker_config_t config = drover_broker_config_default ();
    config.endpoint = "tcp://127.0.0.1:*";
    config.sink_endpoint = "tcp://127.0.0.1:*";
    config.heartbeat_ms = 1000; //  retries must not wait for a heartbeat
    config.liveness = 60;
    config.retry_delay_ms = retry_ms;
    config.retry_max_delay_ms = retry_ms;
    config.max_dead = max_dead;
    char *error = NULL;
    zactor_t *broker = drover_broker_new (&config, &error);
    cr_assert_not_null (broker, "broker: %s", error ? error : "");
    return broker;
}

//  Submits one task as spec says, with payload; returns its id.
static uint64_t
s_submit_one (zsock_t *client, drover_task_t spec, const char *payload)
{
    spec.payload = (drover_bytes_t){payload, strlen (payload)};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.ref = 43;
    msg.tasks = &spec;
    msg.task_count = 1;
    s_send (client, &msg);
    drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert_eq (reply->ref, 43);
    cr_assert_eq (reply->id_count, 1);
    uint64_t id = reply->ids[0];
    drover_packet_destroy (&packet);
    return id;
}

//  The node FAILs an attempt with code; the reason names the attempt.
static void
s_fail (zsock_t *node, uint64_t id, uint32_t attempt, int32_t code)
{
    char reason[32];
    snprintf (reason, sizeof reason, "attempt %u failed", attempt);
    drover_task_t item = {.id = id,
                          .attempt = attempt,
                          .code = code,
                          .reason = reason,
                          .node = "n1",
                          .elapsed_us = 1000 * attempt,
                          .cpu_us = 700 * attempt,
                          .signal = attempt == 2 ? 9 : 0,
                          .exit_status = attempt == 2 ? 0 : 1,
                          .max_rss_kb = 4096 + attempt};
    drover_msg_t fail;
    drover_msg_init (&fail, DROVER_FAIL);
    fail.tasks = &item;
    fail.task_count = 1;
    s_send (node, &fail);
}

//  Expects the DISPATCH of one task; returns its attempt.
static uint32_t
s_expect_dispatch (zsock_t *node, uint64_t id, const char *payload)
{
    drover_packet_t *packet = s_expect (node, DROVER_DISPATCH);
    drover_msg_t *dispatch = drover_packet_msg (packet);
    cr_assert_eq (dispatch->task_count, 1);
    cr_assert_eq (dispatch->tasks[0].id, id);
    cr_assert_eq (dispatch->tasks[0].payload.size, strlen (payload));
    cr_assert (
        memcmp (dispatch->tasks[0].payload.data, payload, strlen (payload))
        == 0);
    uint32_t attempt = dispatch->tasks[0].attempt;
    drover_packet_destroy (&packet);
    return attempt;
}

//  The local endpoints of a local cluster (drover map -j N): a client in
//  the broker's process reaches the broker and its embedded sink over
//  inproc, the node over tcp; the endpoint told to peers stays the tcp one.
//  An endpoint that cannot be bound stops the broker from starting.
LEAK_CHECKED_TEST (broker, local_endpoints_serve_a_client_in_this_process)
{
    drover_broker_config_t config = drover_broker_config_default ();
    config.endpoint = "tcp://127.0.0.1:*";
    config.sink_endpoint = "tcp://127.0.0.1:*";
    config.local_endpoint = "inproc://test-local/broker";
    config.sink_local_endpoint = "inproc://test-local/sink";
    config.liveness = 60;
    config.quiet = true;
    config.sink_same_thread = true; //  as in a local cluster
    char *error = NULL;
    zactor_t *broker = drover_broker_new (&config, &error);
    cr_assert_not_null (broker, "broker: %s", error ? error : "");
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (config.local_endpoint);
    char *sink_endpoint = s_client_hello (client);
    cr_assert (!strncmp (sink_endpoint, "tcp://127.0.0.1:", 16), "%s",
               sink_endpoint);
    zsock_t *client_sink = s_connect (config.sink_local_endpoint);
    zsock_t *node = s_node_hello (endpoint, "n1", 1);
    zsock_t *node_sink = s_connect (sink_endpoint);

    uint64_t id;
    s_submit (client, 1, &id, "echo");
    uint32_t attempt = s_expect_dispatch (node, id, "p0");
    cr_assert_eq (s_result (node_sink, id, attempt, "r0"), 0);
    s_watch (client_sink, &id, 1);
    drover_packet_t *packet = s_expect (client_sink, DROVER_RESULT);
    drover_msg_t *result = drover_packet_msg (packet);
    cr_assert_eq (result->tasks[0].id, id);
    cr_assert_eq (result->tasks[0].payload.size, 2);
    cr_assert (memcmp (result->tasks[0].payload.data, "r0", 2) == 0);
    drover_packet_destroy (&packet);

    //  Taken: neither endpoint can be bound by a second broker
    const char *taken[][2] = {
        {config.local_endpoint, NULL},
        {"inproc://test-local/free", config.sink_local_endpoint}};
    for (size_t i = 0; i < 2; i++) {
        drover_broker_config_t clash = config;
        clash.local_endpoint = taken[i][0];
        clash.sink_local_endpoint = taken[i][1];
        cr_assert_null (drover_broker_new (&clash, &error));
        cr_assert (strstr (error, "cannot bind"), "%s", error);
        cr_assert (strstr (error, "inproc://test-local/"), "%s", error);
        free (error);
        error = NULL;
    }

    zsock_destroy (&node_sink);
    zsock_destroy (&node);
    zsock_destroy (&client_sink);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

//  Sends a SUBMIT of count echo tasks (payload "x") without waiting.
static void
s_submit_many (zsock_t *client, uint64_t ref, size_t count)
{
    drover_task_t *tasks = (drover_task_t *)calloc (count, sizeof *tasks);
    cr_assert_not_null (tasks);
    for (size_t i = 0; i < count; i++)
        tasks[i] = (drover_task_t){.handler = "echo", .payload = {"x", 1}};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.ref = ref;
    msg.tasks = tasks;
    msg.task_count = count;
    s_send (client, &msg);
    free (tasks);
}

//  SPEC 7.3: tasks a node has credit for leave after the SUBMIT that
//  queued them, not after the broker read every message waiting: a large
//  SUBMIT and a small one read in one pass make two DISPATCHes, the first
//  with the large one's tasks alone
LEAK_CHECKED_TEST (broker, each_submit_is_dispatched_before_the_next_is_read)
{
    zactor_t *broker = s_broker (1000, 10000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 2002);
    //  A first task shows the broker has the node's credit
    s_submit_many (client, 1, 1);
    drover_packet_t *packet = s_expect (node, DROVER_DISPATCH);
    cr_assert_eq (drover_packet_msg (packet)->task_count, 1);
    drover_packet_destroy (&packet);
    //  The small SUBMIT arrives while the broker queues the large one
    s_submit_many (client, 2, 2000);
    s_submit_many (client, 3, 1);
    packet = s_expect (node, DROVER_DISPATCH);
    cr_assert_eq (drover_packet_msg (packet)->task_count, 2000);
    drover_packet_destroy (&packet);
    packet = s_expect (node, DROVER_DISPATCH);
    cr_assert_eq (drover_packet_msg (packet)->task_count, 1);
    drover_packet_destroy (&packet);
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

//  Asks STATS for one counter.
static uint64_t
s_counter (zsock_t *client, const char *name)
{
    drover_msg_t stats;
    drover_msg_init (&stats, DROVER_STATS);
    stats.ref = 1;
    s_send (client, &stats);
    drover_packet_t *packet = s_expect (client, DROVER_STATS_REPLY);
    drover_msg_t *reply = drover_packet_msg (packet);
    uint64_t value = UINT64_MAX;
    for (size_t i = 0; i < reply->counter_count; i++)
        if (streq (reply->counters[i].name, name))
            value = reply->counters[i].value;
    drover_packet_destroy (&packet);
    cr_assert_neq (value, UINT64_MAX, "no counter '%s' in STATS", name);
    return value;
}

//  Polls STATUS until the task is in state, within 5 s; returns the reply.
static drover_packet_t *
s_await_state (zsock_t *client, uint64_t id, uint32_t state)
{
    int64_t deadline = zclock_mono () + 5000;
    while (true) {
        drover_msg_t status;
        drover_msg_init (&status, DROVER_STATUS);
        status.ref = 11;
        status.ids = &id;
        status.id_count = 1;
        s_send (client, &status);
        drover_packet_t *packet = s_expect (client, DROVER_STATUS_REPLY);
        uint32_t now = drover_packet_msg (packet)->tasks[0].state;
        if (now == state)
            return packet;
        drover_packet_destroy (&packet);
        cr_assert (zclock_mono () < deadline, "task %llu stays %s, not %s",
                   (unsigned long long)id, drover_state_name ((int)now),
                   drover_state_name ((int)state));
        zpoller_t *poller = zpoller_new (client, NULL); //  pause 5 ms
        zpoller_wait (poller, 5);
        zpoller_destroy (&poller);
    }
}

//  Drives a task with max_attempts 2 to death: FAIL, retry, FAIL. Returns
//  its id once the sink stored its failure.
static uint64_t
s_dead_letter (zsock_t *client, zsock_t *node, const char *payload)
{
    drover_task_t spec = {.handler = "fail",
                          .max_attempts = 2,
                          .retry_delay_ms = 20,
                          .retry_max_delay_ms = 20};
    uint64_t id = s_submit_one (client, spec, payload);
    cr_assert_eq (s_expect_dispatch (node, id, payload), 1);
    s_fail (node, id, 1, DROVER_EFAILED);
    cr_assert_eq (s_expect_dispatch (node, id, payload), 2);
    s_fail (node, id, 2, DROVER_ECRASHED);
    drover_packet_t *packet = s_await_state (client, id, DROVER_STATE_FAILED);
    drover_packet_destroy (&packet);
    return id;
}

LEAK_CHECKED_TEST (broker, a_failed_attempt_is_dispatched_again_after_backoff)
{
    zactor_t *broker = s_broker_retrying (60, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    zsock_t *client_sink = s_connect (sink_endpoint);

    //  No retry options: the broker's defaults (60 ms, capped at 60 ms)
    drover_task_t spec = {
        .handler = "fail", .max_attempts = 3, .soft_timeout_ms = 250};
    uint64_t id = s_submit_one (client, spec, "input");
    s_watch (client_sink, &id, 1);
    drover_packet_t *packet = s_expect (node, DROVER_DISPATCH);
    drover_msg_t *dispatch = drover_packet_msg (packet);
    cr_assert_eq (dispatch->tasks[0].attempt, 1);
    cr_assert_eq (dispatch->tasks[0].soft_timeout_ms, 250,
                  "DISPATCH carries the soft time limit");
    drover_packet_destroy (&packet);

    for (uint32_t attempt = 1; attempt < 3; attempt++) {
        int64_t failed_at = zclock_mono ();
        s_fail (node, id, attempt, DROVER_EFAILED);
        cr_assert_eq (s_expect_dispatch (node, id, "input"), attempt + 1);
        int64_t waited = zclock_mono () - failed_at;
        //  Within [d/2, d] = [30, 60] ms, and not a heartbeat (1 s) late
        cr_assert (waited >= 29 && waited < 60 + 150,
                   "attempt %u retried after %lld ms, expected 30-60",
                   attempt + 1, (long long)waited);
    }
    cr_assert_eq (s_counter (client, "retried"), 2);
    s_fail (node, id, 3, DROVER_EFAILED);

    //  Out of attempts: the client sees the last failure
    packet = s_expect (client_sink, DROVER_RESULT);
    drover_msg_t *result = drover_packet_msg (packet);
    cr_assert_eq (result->tasks[0].id, id);
    cr_assert_eq (result->tasks[0].code, DROVER_EFAILED);
    cr_assert_str_eq (result->tasks[0].reason, "attempt 3 failed");
    cr_assert_eq (result->tasks[0].cpu_us, 2100);
    drover_packet_destroy (&packet);
    cr_assert (s_silent (node, 200), "no fourth attempt");

    //  The broker still knows it, as failed, once the sink stored it
    packet = s_await_state (client, id, DROVER_STATE_FAILED);
    drover_task_t *status = &drover_packet_msg (packet)->tasks[0];
    cr_assert_eq (status->code, DROVER_EFAILED);
    cr_assert_str_eq (status->reason, "attempt 3 failed");
    cr_assert_eq (status->attempt, 3);
    cr_assert_eq (status->max_attempts, 3);
    drover_packet_destroy (&packet);
    cr_assert_eq (s_counter (client, "dead"), 1);
    cr_assert_eq (s_counter (client, "retrying"), 0);
    cr_assert_eq (s_counter (client, "held"), 0);

    zsock_destroy (&client_sink);
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, a_code_outside_retry_on_fails_at_once)
{
    zactor_t *broker = s_broker_retrying (20, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    drover_task_t spec = {.handler = "fail",
                          .max_attempts = 5,
                          .retry_on = DROVER_RETRY_BIT (DROVER_ETIMELIMIT)};
    uint64_t id = s_submit_one (client, spec, "x");
    cr_assert_eq (s_expect_dispatch (node, id, "x"), 1);
    s_fail (node, id, 1, DROVER_ECRASHED);
    drover_packet_t *packet = s_await_state (client, id, DROVER_STATE_FAILED);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].code, DROVER_ECRASHED);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].attempt, 1);
    drover_packet_destroy (&packet);
    cr_assert (s_silent (node, 100), "not retried");
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, dead_lists_each_attempt_of_each_dead_letter)
{
    zactor_t *broker = s_broker_retrying (20, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    uint64_t first = s_dead_letter (client, node, "one");
    uint64_t second = s_dead_letter (client, node, "two");

    drover_msg_t dead;
    drover_msg_init (&dead, DROVER_DEAD);
    dead.ref = 21;
    s_send (client, &dead);
    drover_packet_t *packet = s_expect (client, DROVER_DEAD_REPLY);
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert_eq (reply->ref, 21);
    cr_assert_eq (reply->task_count, 4, "two attempts of two dead letters");
    for (size_t i = 0; i < 4; i++) {
        drover_task_t *item = &reply->tasks[i];
        uint32_t attempt = (uint32_t)(i % 2) + 1;
        char reason[32];
        snprintf (reason, sizeof reason, "attempt %u failed", attempt);
        cr_assert_eq (item->id, i < 2 ? first : second, "oldest first");
        cr_assert_eq (item->attempt, attempt, "in attempt order");
        cr_assert_eq (item->code,
                      attempt == 1 ? DROVER_EFAILED : DROVER_ECRASHED);
        cr_assert_str_eq (item->handler, "fail");
        cr_assert_str_eq (item->queue, "default");
        cr_assert_eq (item->max_attempts, 2);
        cr_assert_str_eq (item->reason, reason);
        cr_assert_str_eq (item->node, "n1");
        cr_assert_eq (item->elapsed_us, 1000 * attempt);
        cr_assert_eq (item->cpu_us, 700 * attempt);
        cr_assert_eq (item->signal, attempt == 2 ? 9 : 0);
        cr_assert_eq (item->exit_status, attempt == 2 ? 0 : 1);
        cr_assert_eq (item->max_rss_kb, 4096 + attempt);
    }
    drover_packet_destroy (&packet);

    //  With ids: only those that are dead letters
    uint64_t ids[] = {999, second};
    dead.ids = ids;
    dead.id_count = 2;
    s_send (client, &dead);
    packet = s_expect (client, DROVER_DEAD_REPLY);
    reply = drover_packet_msg (packet);
    cr_assert_eq (reply->task_count, 2);
    cr_assert_eq (reply->tasks[0].id, second);
    cr_assert_eq (reply->tasks[1].id, second);
    drover_packet_destroy (&packet);
    cr_assert_eq (s_counter (client, "dead"), 2);

    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, retry_resubmits_a_dead_letter_as_a_new_task)
{
    zactor_t *broker = s_broker_retrying (20, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    zsock_t *node_sink = s_connect (sink_endpoint);
    zsock_t *client_sink = s_connect (sink_endpoint);
    uint64_t old_id = s_dead_letter (client, node, "payload");

    drover_msg_t retry;
    drover_msg_init (&retry, DROVER_RETRY);
    retry.ref = 31;
    retry.ids = &old_id;
    retry.id_count = 1;
    s_send (client, &retry);
    drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert_eq (reply->ref, 31);
    cr_assert_eq (reply->id_count, 1);
    uint64_t new_id = reply->ids[0];
    drover_packet_destroy (&packet);
    cr_assert_gt (new_id, old_id, "a new id");

    //  The new task runs with the old handler and payload, from attempt 1
    packet = s_expect (node, DROVER_DISPATCH);
    drover_msg_t *dispatch = drover_packet_msg (packet);
    cr_assert_eq (dispatch->tasks[0].id, new_id);
    cr_assert_eq (dispatch->tasks[0].attempt, 1);
    cr_assert_str_eq (dispatch->tasks[0].handler, "fail");
    cr_assert_eq (dispatch->tasks[0].payload.size, 7);
    cr_assert (memcmp (dispatch->tasks[0].payload.data, "payload", 7) == 0);
    drover_packet_destroy (&packet);
    cr_assert_eq (s_result (node_sink, new_id, 1, "fine"), 0);

    //  It left the dead-letter list; the old id keeps its failure
    cr_assert_eq (s_counter (client, "dead"), 0);
    drover_msg_t dead;
    drover_msg_init (&dead, DROVER_DEAD);
    dead.ref = 32;
    s_send (client, &dead);
    packet = s_expect (client, DROVER_DEAD_REPLY);
    cr_assert_eq (drover_packet_msg (packet)->task_count, 0);
    drover_packet_destroy (&packet);
    uint64_t ids[] = {old_id, new_id};
    s_watch (client_sink, ids, 2);
    int32_t codes[2] = {1, 1};
    while (codes[0] == 1 || codes[1] == 1) {
        packet = s_expect (client_sink, DROVER_RESULT);
        drover_msg_t *result = drover_packet_msg (packet);
        for (size_t i = 0; i < result->task_count; i++)
            codes[result->tasks[i].id == new_id] = result->tasks[i].code;
        drover_packet_destroy (&packet);
    }
    cr_assert_eq (codes[0], DROVER_ECRASHED);
    cr_assert_eq (codes[1], 0);

    //  RETRY with all: nothing left, so no ids
    retry.ids = NULL;
    retry.id_count = 0;
    retry.all = true;
    s_send (client, &retry);
    packet = s_expect (client, DROVER_SUBMITTED);
    cr_assert_eq (drover_packet_msg (packet)->id_count, 0);
    drover_packet_destroy (&packet);

    zsock_destroy (&client_sink);
    zsock_destroy (&node_sink);
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, retry_all_resubmits_every_dead_letter_oldest_first)
{
    zactor_t *broker = s_broker_retrying (20, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    uint64_t first = s_dead_letter (client, node, "one");
    uint64_t second = s_dead_letter (client, node, "two");
    drover_msg_t retry;
    drover_msg_init (&retry, DROVER_RETRY);
    retry.ref = 41;
    retry.all = true;
    s_send (client, &retry);
    drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert_eq (reply->id_count, 2);
    uint64_t ids[2] = {reply->ids[0], reply->ids[1]};
    drover_packet_destroy (&packet);
    cr_assert (ids[0] > second && ids[1] > ids[0]);
    (void)first;
    //  Both are dispatched, in order, with their payloads
    packet = s_expect (node, DROVER_DISPATCH);
    drover_msg_t *dispatch = drover_packet_msg (packet);
    cr_assert_eq (dispatch->tasks[0].id, ids[0]);
    cr_assert (memcmp (dispatch->tasks[0].payload.data, "one", 3) == 0);
    size_t got = dispatch->task_count;
    drover_packet_destroy (&packet);
    if (got == 1) {
        packet = s_expect (node, DROVER_DISPATCH);
        cr_assert_eq (drover_packet_msg (packet)->tasks[0].id, ids[1]);
        drover_packet_destroy (&packet);
    }
    cr_assert_eq (s_counter (client, "dead"), 0);
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, retry_of_an_unknown_id_resubmits_nothing)
{
    zactor_t *broker = s_broker_retrying (20, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    uint64_t dead_id = s_dead_letter (client, node, "one");

    uint64_t ids[] = {dead_id, 424242};
    drover_msg_t retry;
    drover_msg_init (&retry, DROVER_RETRY);
    retry.ref = 51;
    retry.ids = ids;
    retry.id_count = 2;
    s_send (client, &retry);
    drover_packet_t *packet = s_expect (client, DROVER_ERROR);
    drover_msg_t *error = drover_packet_msg (packet);
    cr_assert_eq (error->ref, 51);
    cr_assert_eq (error->code, DROVER_ENOTFOUND);
    cr_assert (strstr (error->reason, "424242"), "names the id: %s",
               error->reason);
    drover_packet_destroy (&packet);
    cr_assert (s_silent (node, 100), "nothing was resubmitted");
    cr_assert_eq (s_counter (client, "dead"), 1, "the dead letter stays");
    cr_assert_eq (s_counter (client, "held"), 0);

    //  A named twice is refused too; neither ids nor all is invalid
    uint64_t twice[] = {dead_id, dead_id};
    retry.ids = twice;
    s_send (client, &retry);
    packet = s_expect (client, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_EINVAL);
    drover_packet_destroy (&packet);
    retry.ids = NULL;
    retry.id_count = 0;
    s_send (client, &retry);
    packet = s_expect (client, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_EINVAL);
    drover_packet_destroy (&packet);
    cr_assert_eq (s_counter (client, "dead"), 1);

    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, the_dead_letter_list_drops_the_oldest)
{
    zactor_t *broker = s_broker_retrying (20, 1);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    uint64_t first = s_dead_letter (client, node, "one");
    uint64_t second = s_dead_letter (client, node, "two");
    cr_assert_eq (s_counter (client, "dead"), 1);
    cr_assert_eq (s_counter (client, "dead_dropped"), 1);
    drover_msg_t dead;
    drover_msg_init (&dead, DROVER_DEAD);
    dead.ref = 61;
    s_send (client, &dead);
    drover_packet_t *packet = s_expect (client, DROVER_DEAD_REPLY);
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert_eq (reply->task_count, 2);
    cr_assert_eq (reply->tasks[0].id, second);
    drover_packet_destroy (&packet);
    //  The dropped one is unknown to the broker (the sink has its failure)
    packet = s_await_state (client, first, DROVER_STATE_UNKNOWN);
    drover_packet_destroy (&packet);
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, cancel_stops_a_retrying_task)
{
    zactor_t *broker = s_broker_retrying (5000, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 10);
    drover_task_t spec = {.handler = "fail", .max_attempts = 3};
    uint64_t id = s_submit_one (client, spec, "x");
    cr_assert_eq (s_expect_dispatch (node, id, "x"), 1);
    s_fail (node, id, 1, DROVER_EFAILED);
    drover_packet_t *packet = s_await_state (client, id, DROVER_STATE_RETRY);
    drover_packet_destroy (&packet);
    cr_assert_eq (s_counter (client, "retrying"), 1);
    drover_msg_t cancel;
    drover_msg_init (&cancel, DROVER_CANCEL);
    cancel.ref = 71;
    cancel.ids = &id;
    cancel.id_count = 1;
    s_send (client, &cancel);
    packet = s_expect (client, DROVER_STATUS_REPLY);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].state,
                  DROVER_STATE_REPORTING);
    drover_packet_destroy (&packet);
    cr_assert_eq (s_counter (client, "retrying"), 0);
    cr_assert_eq (s_counter (client, "dead"), 0, "cancelled is not dead");
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, an_absurd_retry_delay_is_refused)
{
    zactor_t *broker = s_broker_retrying (20, 100);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    drover_task_t task = {.handler = "echo", .retry_delay_ms = UINT64_MAX};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.ref = 81;
    msg.tasks = &task;
    msg.task_count = 1;
    s_send (client, &msg);
    drover_packet_t *packet = s_expect (client, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_EINVAL);
    cr_assert (strstr (drover_packet_msg (packet)->reason, "retry_delay_ms"));
    drover_packet_destroy (&packet);
    zsock_destroy (&client);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, a_dead_reply_fits_in_one_header_frame)
{
    zactor_t *broker = s_broker_retrying (20, 1000);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *node = s_node_hello (endpoint, "n1", 400);
    //  400 dead letters with 4000-octet reasons: 1.6 MB of history
    enum { COUNT = 400, PER_FAIL = 100 };
    static drover_task_t tasks[COUNT];
    for (size_t i = 0; i < COUNT; i++)
        tasks[i] = (drover_task_t){.handler = "fail", .max_attempts = 1};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.ref = 91;
    msg.tasks = tasks;
    msg.task_count = COUNT;
    s_send (client, &msg);
    drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
    cr_assert_eq (drover_packet_msg (packet)->id_count, COUNT);
    uint64_t first = drover_packet_msg (packet)->ids[0];
    drover_packet_destroy (&packet);
    size_t dispatched = 0;
    while (dispatched < COUNT) {
        packet = s_expect (node, DROVER_DISPATCH);
        dispatched += drover_packet_msg (packet)->task_count;
        drover_packet_destroy (&packet);
    }
    char *reason = (char *)malloc (4001);
    memset (reason, 'r', 4000);
    reason[4000] = 0;
    for (size_t i = 0; i < COUNT; i += PER_FAIL) {
        static drover_task_t items[PER_FAIL];
        for (size_t j = 0; j < PER_FAIL; j++)
            items[j] = (drover_task_t){.id = first + i + j,
                                       .attempt = 1,
                                       .code = DROVER_EFAILED,
                                       .reason = reason};
        drover_msg_init (&msg, DROVER_FAIL);
        msg.tasks = items;
        msg.task_count = PER_FAIL;
        s_send (node, &msg);
    }
    free (reason);
    int64_t deadline = zclock_mono () + 10000;
    while (s_counter (client, "dead") < COUNT)
        cr_assert (zclock_mono () < deadline, "not all dead");

    drover_msg_t dead;
    drover_msg_init (&dead, DROVER_DEAD);
    dead.ref = 92;
    s_send (client, &dead);
    packet = s_expect (client, DROVER_DEAD_REPLY); //  it decodes
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert (reply->task_count > 100 && reply->task_count < COUNT,
               "%zu items: as many as fit in 1 MiB", reply->task_count);
    for (size_t i = 0; i < reply->task_count; i++)
        cr_assert_eq (reply->tasks[i].id, first + i, "oldest first");
    drover_packet_destroy (&packet);

    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

//  --------------------------------------------------------------------------
//  Only the current attempt's result is kept (SPEC 5.18, 7.2)

LEAK_CHECKED_TEST (broker, a_late_result_of_a_superseded_attempt_is_refused)
{
    zactor_t *broker = s_broker (100, 1000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *slow = s_node_hello (endpoint, "slow", 1);
    uint64_t id;
    s_submit (client, 1, &id, "echo");
    cr_assert_gt (id, 1ull << 40, "ids start at the broker's start time");
    drover_packet_t *packet = s_expect (slow, DROVER_DISPATCH);
    drover_packet_destroy (&packet);

    //  The slow node goes silent and is declared lost; another node gets
    //  attempt 2 (the live node heartbeats while it waits)
    zsock_t *alive = s_node_hello (endpoint, "alive", 1);
    drover_msg_t heartbeat;
    drover_msg_init (&heartbeat, DROVER_HEARTBEAT);
    zpoller_t *poller = zpoller_new (alive, NULL);
    packet = NULL;
    int64_t deadline = zclock_mono () + 5000;
    while (!packet) {
        s_send (alive, &heartbeat);
        cr_assert (zclock_mono () < deadline, "no re-dispatch");
        if (!zpoller_wait (poller, 50))
            continue;
        cr_assert_eq (drover_packet_recv (alive, false, &packet), 0);
        if (drover_packet_msg (packet)->command != DROVER_DISPATCH)
            drover_packet_destroy (&packet);
    }
    zpoller_destroy (&poller);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].attempt, 2);
    drover_packet_destroy (&packet);

    //  The slow node's attempt 1 finishes first: refused, although no
    //  result is stored yet; then attempt 2's result is kept
    zsock_t *slow_sink = s_connect (sink_endpoint);
    zsock_t *alive_sink = s_connect (sink_endpoint);
    cr_assert_eq (s_result (slow_sink, id, 1, "late"), DROVER_ESTALE);
    cr_assert_eq (s_result (alive_sink, id, 2, "current"), 0);
    zsock_t *client_sink = s_connect (sink_endpoint);
    s_watch (client_sink, &id, 1);
    packet = s_expect (client_sink, DROVER_RESULT);
    drover_msg_t *result = drover_packet_msg (packet);
    cr_assert_eq (result->tasks[0].attempt, 2);
    cr_assert_eq (result->tasks[0].payload.size, 7);
    cr_assert (memcmp (result->tasks[0].payload.data, "current", 7) == 0);
    drover_packet_destroy (&packet);

    zsock_destroy (&client_sink);
    zsock_destroy (&alive_sink);
    zsock_destroy (&slow_sink);
    zsock_destroy (&alive);
    zsock_destroy (&slow);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

LEAK_CHECKED_TEST (broker, a_resubmission_keeps_its_id_and_is_not_doubled)
{
    zactor_t *broker = s_broker (1000, 1000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    drover_task_t task = {.id = 4242, .handler = "echo"};
    task.payload = (drover_bytes_t){"x", 1};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.tasks = &task;
    msg.task_count = 1;
    for (uint64_t ref = 1; ref <= 2; ref++) {
        msg.ref = ref;
        s_send (client, &msg);
        drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
        cr_assert_eq (drover_packet_msg (packet)->ids[0], 4242);
        drover_packet_destroy (&packet);
    }
    zsock_t *node = s_node_hello (endpoint, "n1", 5);
    drover_packet_t *packet = s_expect (node, DROVER_DISPATCH);
    cr_assert_eq (drover_packet_msg (packet)->task_count, 1);
    cr_assert_eq (drover_packet_msg (packet)->tasks[0].id, 4242);
    drover_packet_destroy (&packet);
    cr_assert (s_silent (node, 200), "the second SUBMIT made no second task");
    zsock_destroy (&node);
    zsock_destroy (&client);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

//  SPEC 7.6: a SUBMIT sent again with its token (a lost reply, a broker
//  restart) is answered with the ids it was given and creates nothing; a
//  token names one request.
LEAK_CHECKED_TEST (broker, a_submit_repeated_with_its_token_creates_nothing)
{
    zactor_t *broker = s_broker (1000, 1000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    drover_task_t tasks[2] = {{.handler = "echo"}, {.handler = "echo"}};
    tasks[0].payload = (drover_bytes_t){"a", 1};
    tasks[1].payload = (drover_bytes_t){"b", 1};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.tasks = tasks;
    msg.task_count = 2;
    msg.token = "c0ffee:1";
    uint64_t first[2] = {0};
    for (uint64_t ref = 1; ref <= 2; ref++) {
        msg.ref = ref;
        s_send (client, &msg);
        drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
        drover_msg_t *reply = drover_packet_msg (packet);
        cr_assert_eq (reply->ref, ref);
        cr_assert_str_eq (reply->token, "c0ffee:1", "the token is echoed");
        cr_assert_eq (reply->id_count, 2);
        if (ref == 1)
            memcpy (first, reply->ids, sizeof first);
        else
            cr_assert_arr_eq (reply->ids, first, sizeof first,
                              "the same ids again");
        drover_packet_destroy (&packet);
    }
    cr_assert_eq (s_counter (client, "held"), 2, "no second pair of tasks");
    //  The same token on another request is refused
    msg.ref = 3;
    msg.task_count = 1;
    s_send (client, &msg);
    drover_packet_t *packet = s_expect (client, DROVER_ERROR);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_EINVAL);
    cr_assert (strstr (drover_packet_msg (packet)->reason, "token"));
    drover_packet_destroy (&packet);
    cr_assert_eq (s_counter (client, "held"), 2);
    zsock_destroy (&client);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}

//  A durable broker's settings, its data directory made from template
//  data (mkdtemp), which must outlive them.
static drover_broker_config_t
s_durable_config (char *data)
{
    cr_assert_not_null (mkdtemp (data));
    drover_broker_config_t config = drover_broker_config_default ();
    config.endpoint = "tcp://127.0.0.1:*";
    config.sink_endpoint = "tcp://127.0.0.1:*";
    config.liveness = 60;
    config.data_dir = data;
    return config;
}

static void
s_remove_dir (const char *dir)
{
    char *remove = zsys_sprintf ("rm -rf %s", dir);
    cr_assert_eq (system (remove), 0);
    zstr_free (&remove);
}

//  SPEC 12 and 7.6: a durable broker restarted on its data directory
//  holds its tasks and knows their SUBMIT's token: the SUBMIT sent again
//  gets the same ids and creates nothing.
LEAK_CHECKED_TEST (broker, a_durable_broker_remembers_tokens_across_a_restart)
{
    char data[] = "/tmp/drover-broker-data-XXXXXX";
    drover_broker_config_t config = s_durable_config (data);
    drover_task_t task = {.handler = "echo"};
    task.payload = (drover_bytes_t){"kept", 4};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.tasks = &task;
    msg.task_count = 1;
    msg.token = "d00d:7";
    uint64_t ids[2] = {0};
    for (int run = 0; run < 2; run++) {
        char *error = NULL;
        zactor_t *broker = drover_broker_new (&config, &error);
        cr_assert_not_null (broker, "broker: %s", error ? error : "");
        char *endpoint = drover_broker_endpoint (broker);
        zsock_t *client = s_connect (endpoint);
        msg.ref = 7;
        s_send (client, &msg);
        drover_packet_t *packet = s_expect (client, DROVER_SUBMITTED);
        ids[run] = drover_packet_msg (packet)->ids[0];
        drover_packet_destroy (&packet);
        //  SPEC 12: acknowledged only once written (the journal's files
        //  hold the payload when SUBMITTED arrives)
        char *grep = zsys_sprintf ("grep -qs kept %s/broker/*.drj", data);
        cr_assert_eq (system (grep), 0, "SUBMITTED before the record");
        zstr_free (&grep);
        cr_assert_eq (s_counter (client, "held"), 1);
        zsock_destroy (&client);
        zstr_free (&endpoint);
        zactor_destroy (&broker);
    }
    cr_assert_eq (ids[1], ids[0], "the restarted broker gave the same id");
    s_remove_dir (data);
}

//  An embedded sink in the broker's own thread (sink_same_thread) is the
//  same sink: it stores a node's result after the broker's verdict, keeps
//  it in its journal, and has it again after a restart; a broker stopped
//  with it leaves nothing behind (LEAK_CHECKED)
LEAK_CHECKED_TEST (broker, a_sink_in_the_broker_thread_stores_and_restores)
{
    char data[] = "/tmp/drover-broker-data-XXXXXX";
    drover_broker_config_t config = s_durable_config (data);
    config.sink_same_thread = true;
    uint64_t id = 0;
    for (int run = 0; run < 2; run++) {
        char *error = NULL;
        zactor_t *broker = drover_broker_new (&config, &error);
        cr_assert_not_null (broker, "broker: %s", error ? error : "");
        char *endpoint = drover_broker_endpoint (broker);
        zsock_t *client = s_connect (endpoint);
        char *sink_endpoint = s_client_hello (client);
        zsock_t *client_sink = s_connect (sink_endpoint);
        if (run == 0) {
            zsock_t *node = s_node_hello (endpoint, "n1", 1);
            zsock_t *node_sink = s_connect (sink_endpoint);
            s_submit (client, 1, &id, "echo");
            uint32_t attempt = s_expect_dispatch (node, id, "p0");
            cr_assert_eq (s_result (node_sink, id, attempt, "r0"), 0);
            zsock_destroy (&node_sink);
            zsock_destroy (&node);
        }
        s_watch (client_sink, &id, 1);
        drover_packet_t *packet = s_expect (client_sink, DROVER_RESULT);
        drover_msg_t *result = drover_packet_msg (packet);
        cr_assert_eq (result->tasks[0].id, id, "run %d", run);
        cr_assert_eq (result->tasks[0].payload.size, 2);
        cr_assert (memcmp (result->tasks[0].payload.data, "r0", 2) == 0);
        drover_packet_destroy (&packet);
        zsock_destroy (&client_sink);
        zsock_destroy (&client);
        zstr_free (&sink_endpoint);
        zstr_free (&endpoint);
        zactor_destroy (&broker);
    }
    s_remove_dir (data);
}

LEAK_CHECKED_TEST (broker, the_sink_tells_a_client_it_holds_no_watches_of)
{
    zactor_t *broker = s_broker (1000, 1000, 1 << 20);
    char *endpoint = drover_broker_endpoint (broker);
    zsock_t *client = s_connect (endpoint);
    char *sink_endpoint = s_client_hello (client);
    zsock_t *client_sink = s_connect (sink_endpoint);
    drover_msg_t heartbeat;
    drover_msg_init (&heartbeat, DROVER_HEARTBEAT);
    s_send (client_sink, &heartbeat);
    drover_packet_t *packet = s_expect (client_sink, DROVER_BYE);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_ESTALE);
    drover_packet_destroy (&packet);
    //  With a watch in place, a heartbeat is answered in kind
    uint64_t id = 77;
    s_watch (client_sink, &id, 1);
    s_send (client_sink, &heartbeat);
    zpoller_t *poller = zpoller_new (client_sink, NULL);
    cr_assert_not_null (zpoller_wait (poller, 5000));
    zpoller_destroy (&poller);
    cr_assert_eq (drover_packet_recv (client_sink, false, &packet), 0);
    cr_assert_eq (drover_packet_msg (packet)->command, DROVER_HEARTBEAT);
    drover_packet_destroy (&packet);
    zsock_destroy (&client_sink);
    zsock_destroy (&client);
    zstr_free (&sink_endpoint);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
}
