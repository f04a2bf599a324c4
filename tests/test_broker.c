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
    char payloads[16][8];
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
