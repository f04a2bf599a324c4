/*  test_wire.c - Drover messages over real CZMQ sockets (proto/drover_wire).

    Each test creates its own sockets (Criterion forks a child per test),
    on inproc:// or tcp://127.0.0.1:*. Nothing sleeps: every receive blocks
    with a receive timeout, so a lost message fails the test instead of
    hanging it.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_wire.h"
#include "leak_check.h"
#include "msg_fixtures.h"

#include <criterion/criterion.h>
#include <string.h>

TestSuite (wire, .timeout = 60);

//  How long a receive may wait for a message that must arrive
#define RECV_TIMEOUT_MS 5000
//  How long to wait for a message that must not arrive
#define SILENCE_MS 200

#define IDENTITY "client-7"

//  A ROUTER bound to endpoint and a DEALER with routing id IDENTITY
//  connected to it.
typedef struct {
    zsock_t *router; //  the broker side
    zsock_t *dealer; //  the peer side
} s_pair_t;

static s_pair_t
s_pair_new (const char *endpoint)
{
    s_pair_t pair;
    pair.router = zsock_new (ZMQ_ROUTER);
    cr_assert_not_null (pair.router);
    zsock_set_rcvtimeo (pair.router, RECV_TIMEOUT_MS);
    cr_assert_geq (zsock_bind (pair.router, "%s", endpoint), 0, "bind %s",
                   endpoint);
    //  With tcp://127.0.0.1:*, the endpoint that was bound, port included
    const char *bound = zsock_endpoint (pair.router);
    cr_assert_not_null (bound);
    pair.dealer = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (pair.dealer);
    zsock_set_identity (pair.dealer, IDENTITY);
    zsock_set_rcvtimeo (pair.dealer, RECV_TIMEOUT_MS);
    cr_assert_eq (zsock_connect (pair.dealer, "%s", bound), 0, "connect %s",
                  bound);
    return pair;
}

static void
s_pair_destroy (s_pair_t *pair)
{
    zsock_destroy (&pair->dealer);
    zsock_destroy (&pair->router);
}

//  Receives one packet that must decode
static drover_packet_t *
s_recv (zsock_t *sock, bool routed)
{
    drover_packet_t *packet = NULL;
    int rc = drover_packet_recv (sock, routed, &packet);
    cr_assert_eq (rc, 0, "receive: %s: %s", drover_strcode (rc),
                  packet ? drover_packet_error (packet) : "nothing arrived");
    cr_assert_not_null (packet);
    return packet;
}

//  Asserts that the packet came from the DEALER named IDENTITY
static void
s_assert_from_dealer (drover_packet_t *packet)
{
    zframe_t *routing_id = drover_packet_routing_id (packet);
    cr_assert_not_null (routing_id);
    cr_assert (zframe_streq (routing_id, IDENTITY), "routing id %s",
               zframe_strhex (routing_id));
}

static void
s_assert_equal (const drover_msg_t *expected, const drover_msg_t *actual)
{
    char why[256];
    cr_assert (fx_msg_equal (expected, actual, why, sizeof why), "%s", why);
}

//  Payloads of several sizes: empty, small, and large enough that ZeroMQ
//  shares the buffer instead of copying it.
#define PAYLOADS 4
static const size_t s_payload_sizes[PAYLOADS] = {0, 5, 100000, 300};

static uint8_t *
s_payload_new (size_t index)
{
    size_t size = s_payload_sizes[index];
    uint8_t *data = (uint8_t *)malloc (size ? size : 1);
    cr_assert_not_null (data);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)(i * 31 + index * 7);
    return data;
}

//  A sample of command with PAYLOADS tasks carrying data[i]
static void
s_message_with_payloads (drover_msg_t *msg, drover_task_t *tasks, int command,
                         uint8_t **data)
{
    fx_sample (msg, command);
    for (size_t i = 0; i < PAYLOADS; i++) {
        tasks[i] = msg->tasks[i % msg->task_count];
        if (tasks[i].id)
            tasks[i].id = 100 + i;
        tasks[i].payload = (drover_bytes_t){data[i], s_payload_sizes[i]};
    }
    msg->tasks = tasks;
    msg->task_count = PAYLOADS;
}

//  --------------------------------------------------------------------------

LEAK_CHECKED_TEST (wire, payload_commands_round_trip)
{
    static const int commands[] = {DROVER_SUBMIT, DROVER_DISPATCH,
                                   DROVER_RESULT};
    s_pair_t pair = s_pair_new ("inproc://wire-round-trip");
    uint8_t *data[PAYLOADS];
    for (size_t i = 0; i < PAYLOADS; i++)
        data[i] = s_payload_new (i);

    for (size_t c = 0; c < 3; c++) {
        drover_msg_t msg;
        drover_task_t tasks[PAYLOADS];
        s_message_with_payloads (&msg, tasks, commands[c], data);

        //  DEALER -> ROUTER: the router sees who sent it
        cr_assert_eq (drover_wire_send (pair.dealer, NULL, &msg, NULL), 0);
        drover_packet_t *packet = s_recv (pair.router, true);
        s_assert_from_dealer (packet);
        drover_msg_t *received = drover_packet_msg (packet);
        s_assert_equal (&msg, received);
        cr_assert_str_empty (drover_packet_error (packet));

        //  ROUTER -> DEALER, by routing id, the decoded message as it is
        cr_assert_eq (drover_wire_send (pair.router,
                                        drover_packet_routing_id (packet),
                                        received, NULL),
                      0);
        drover_packet_t *reply = s_recv (pair.dealer, false);
        cr_assert_null (drover_packet_routing_id (reply));
        s_assert_equal (&msg, drover_packet_msg (reply));
        for (size_t i = 0; i < PAYLOADS; i++)
            if (s_payload_sizes[i])
                cr_assert_arr_eq (
                    drover_packet_msg (reply)->tasks[i].payload.data, data[i],
                    s_payload_sizes[i]);
        drover_packet_destroy (&reply);
        drover_packet_destroy (&packet);
        cr_assert_null (packet);
    }
    drover_packet_destroy (&(drover_packet_t *){NULL}); //  NULL-safe
    for (size_t i = 0; i < PAYLOADS; i++)
        free (data[i]);
    s_pair_destroy (&pair);
}

LEAK_CHECKED_TEST (wire, every_command_crosses_the_wire)
{
    s_pair_t pair = s_pair_new ("inproc://wire-every-command");
    for (size_t c = 0; c < FX_COMMAND_COUNT; c++) {
        drover_msg_t msg;
        fx_sample (&msg, fx_command (c));
        cr_assert_eq (drover_wire_send (pair.dealer, NULL, &msg, NULL), 0);
        drover_packet_t *packet = s_recv (pair.router, true);
        s_assert_from_dealer (packet);
        s_assert_equal (&msg, drover_packet_msg (packet));
        drover_packet_destroy (&packet);
    }
    s_pair_destroy (&pair);
}

//  A broker keeps received payload frames and sends them on without
//  copying: take them out of the packet, destroy the packet, resend them
//  (twice), and they are still the caller's and intact.
LEAK_CHECKED_TEST (wire, taken_payloads_outlive_the_packet_and_resend)
{
    s_pair_t pair = s_pair_new ("inproc://wire-take");
    uint8_t *data[PAYLOADS];
    for (size_t i = 0; i < PAYLOADS; i++)
        data[i] = s_payload_new (i);
    drover_msg_t msg;
    drover_task_t tasks[PAYLOADS];
    s_message_with_payloads (&msg, tasks, DROVER_SUBMIT, data);
    cr_assert_eq (drover_wire_send (pair.dealer, NULL, &msg, NULL), 0);

    drover_packet_t *packet = s_recv (pair.router, true);
    drover_msg_t *submit = drover_packet_msg (packet);
    zframe_t *frames[PAYLOADS];
    for (size_t i = 0; i < PAYLOADS; i++) {
        frames[i] = drover_packet_take_payload (packet, i);
        cr_assert_not_null (frames[i]);
        //  The decoded payload points into the frame: no copy
        cr_assert_eq (zframe_size (frames[i]), s_payload_sizes[i]);
        if (s_payload_sizes[i])
            cr_assert_eq (submit->tasks[i].payload.data,
                          (const void *)zframe_data (frames[i]));
        cr_assert_null (drover_packet_take_payload (packet, i),
                        "a payload can be taken once");
    }
    zframe_t *routing_id = zframe_dup (drover_packet_routing_id (packet));
    drover_packet_destroy (&packet);

    //  The broker dispatches the tasks with the frames it kept
    drover_msg_t dispatch;
    drover_task_t dispatched[PAYLOADS];
    s_message_with_payloads (&dispatch, dispatched, DROVER_DISPATCH, data);
    for (size_t i = 0; i < PAYLOADS; i++)
        dispatched[i].payload = (drover_bytes_t){NULL, 0}; //  not used
    for (int round = 0; round < 2; round++) {
        cr_assert_eq (
            drover_wire_send (pair.router, routing_id, &dispatch, frames), 0);
        drover_packet_t *reply = s_recv (pair.dealer, false);
        drover_msg_t *received = drover_packet_msg (reply);
        cr_assert_eq (received->command, DROVER_DISPATCH);
        cr_assert_eq (received->task_count, PAYLOADS);
        for (size_t i = 0; i < PAYLOADS; i++) {
            cr_assert_eq (received->tasks[i].id, dispatched[i].id);
            cr_assert_eq (received->tasks[i].payload.size, s_payload_sizes[i]);
            if (s_payload_sizes[i])
                cr_assert_arr_eq (received->tasks[i].payload.data, data[i],
                                  s_payload_sizes[i]);
        }
        drover_packet_destroy (&reply);
        //  The frames are still ours, unchanged
        for (size_t i = 0; i < PAYLOADS; i++) {
            cr_assert_eq (zframe_size (frames[i]), s_payload_sizes[i]);
            if (s_payload_sizes[i])
                cr_assert_arr_eq (zframe_data (frames[i]), data[i],
                                  s_payload_sizes[i]);
        }
    }
    for (size_t i = 0; i < PAYLOADS; i++) {
        zframe_destroy (&frames[i]);
        free (data[i]);
    }
    zframe_destroy (&routing_id);
    s_pair_destroy (&pair);
}

//  Malformed multipart messages, sent raw: the receiver gets the decoder's
//  code, the packet still carries the sender's routing id so the receiver
//  can answer ERROR, and the next good message decodes.
LEAK_CHECKED_TEST (wire, malformed_messages_keep_the_routing_id)
{
    static const struct {
        const char *name;      //  what is wrong
        int code;              //  what the receiver must get
        size_t frame_count;    //  frames to send
        const char *frames[5]; //  their contents (strings)
        size_t sizes[5];       //  their sizes
    } cases[] = {
        {"one frame", DROVER_EPROTO, 1, {"hello"}, {5}},
        {"two frames", DROVER_EPROTO, 2, {"DRV\x01", "\x15"}, {4, 1}},
        {"empty frames", DROVER_EPROTO, 3, {"", "", ""}, {0, 0, 0}},
        {"wrong signature",
         DROVER_EPROTO,
         3,
         {"DRX\x01", "\x15", "\x81\xa3ref\x01"},
         {4, 1, 6}},
        {"version 2",
         DROVER_EVERSION,
         3,
         {"DRV\x02", "\x15", "\x81\xa3ref\x01"},
         {4, 1, 6}},
        {"unknown command",
         DROVER_ECOMMAND,
         3,
         {"DRV\x01", "\x7f", "\x81\xa3ref\x01"},
         {4, 1, 6}},
        {"command of 2 octets",
         DROVER_EPROTO,
         3,
         {"DRV\x01", "\x15\x15", "\x81\xa3ref\x01"},
         {4, 2, 6}},
        {"header not msgpack",
         DROVER_EPROTO,
         3,
         {"DRV\x01", "\x15", "\xc1"},
         {4, 1, 1}},
        {"header not a map",
         DROVER_EPROTO,
         3,
         {"DRV\x01", "\x15", "\x91\x01"},
         {4, 1, 2}},
        {"missing ref",
         DROVER_EPROTO,
         3,
         {"DRV\x01", "\x15", "\x80"},
         {4, 1, 1}},
        {"payload for STATS",
         DROVER_EPROTO,
         4,
         {"DRV\x01", "\x15", "\x81\xa3ref\x01", "payload"},
         {4, 1, 6, 7}},
        {"payload for RETRY",
         DROVER_EPROTO,
         4,
         {"DRV\x01", "\x19", "\x81\xa3ref\x01", "payload"},
         {4, 1, 6, 7}},
        {"DEAD_REPLY without tasks",
         DROVER_EPROTO,
         3,
         {"DRV\x01", "\x18", "\x81\xa3ref\x01"},
         {4, 1, 6}},
        {"RETRY with all = 1",
         DROVER_EPROTO,
         3,
         {"DRV\x01", "\x19",
          "\x82\xa3ref\x01\xa3"
          "all\x01"},
         {4, 1, 11}},
        {"SUBMIT without its payload",
         DROVER_EPROTO,
         3,
         {"DRV\x01", "\x10",
          "\x82\xa3ref\x01\xa5tasks\x91\x81\xa7handler\xa1h"},
         {4, 1, 24}},
    };
    s_pair_t pair = s_pair_new ("inproc://wire-malformed");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        zmsg_t *raw = zmsg_new ();
        for (size_t f = 0; f < cases[c].frame_count; f++)
            zmsg_addmem (raw, cases[c].frames[f], cases[c].sizes[f]);
        cr_assert_eq (zmsg_send (&raw, pair.dealer), 0);

        drover_packet_t *packet = NULL;
        int rc = drover_packet_recv (pair.router, true, &packet);
        cr_assert_eq (rc, cases[c].code, "%s: got %s (%s)", cases[c].name,
                      drover_strcode (rc),
                      packet ? drover_packet_error (packet) : "");
        cr_assert_not_null (packet, "%s", cases[c].name);
        s_assert_from_dealer (packet);
        const char *error = drover_packet_error (packet);
        cr_assert_str_neq (error, "", "%s: no reason", cases[c].name);

        //  The receiver answers ERROR to the sender, naming what was wrong
        cr_assert_eq (drover_wire_send_error (pair.router,
                                              drover_packet_routing_id (packet),
                                              0, rc, "malformed: %s", error),
                      0);
        drover_packet_t *reply = s_recv (pair.dealer, false);
        drover_msg_t *answer = drover_packet_msg (reply);
        cr_assert_eq (answer->command, DROVER_ERROR);
        cr_assert_eq (answer->code, cases[c].code);
        char expected[256];
        snprintf (expected, sizeof expected, "malformed: %s", error);
        cr_assert_str_eq (answer->reason, expected);
        drover_packet_destroy (&reply);
        drover_packet_destroy (&packet);
    }
    //  The stream is not disturbed: a good message still decodes
    drover_msg_t msg;
    fx_sample (&msg, DROVER_STATS);
    cr_assert_eq (drover_wire_send (pair.dealer, NULL, &msg, NULL), 0);
    drover_packet_t *packet = s_recv (pair.router, true);
    s_assert_equal (&msg, drover_packet_msg (packet));
    drover_packet_destroy (&packet);
    s_pair_destroy (&pair);
}

//  Makes the ROUTER know the DEALER: returns the routing id it sends to
static zframe_t *
s_introduce (s_pair_t *pair)
{
    drover_msg_t hello;
    fx_sample (&hello, DROVER_HELLO);
    cr_assert_eq (drover_wire_send (pair->dealer, NULL, &hello, NULL), 0);
    drover_packet_t *packet = s_recv (pair->router, true);
    s_assert_from_dealer (packet);
    zframe_t *routing_id = zframe_dup (drover_packet_routing_id (packet));
    drover_packet_destroy (&packet);
    return routing_id;
}

//  Asserts that nothing arrives on sock within SILENCE_MS
static void
s_assert_silence (zsock_t *sock, const char *context)
{
    zsock_set_rcvtimeo (sock, SILENCE_MS);
    drover_packet_t *packet = NULL;
    int rc =
        drover_packet_recv (sock, zsock_type (sock) == ZMQ_ROUTER, &packet);
    cr_assert_eq (rc, DROVER_EIO, "%s: something arrived (%s)", context,
                  drover_strcode (rc));
    cr_assert_null (packet, "%s", context);
    zsock_set_rcvtimeo (sock, RECV_TIMEOUT_MS);
}

LEAK_CHECKED_TEST (wire, send_error_round_trip)
{
    s_pair_t pair = s_pair_new ("inproc://wire-error");
    zframe_t *routing_id = s_introduce (&pair);

    cr_assert_eq (drover_wire_send_error (pair.router, routing_id, 4242,
                                          DROVER_EFULL,
                                          "queue %s is full (%d tasks): retry "
                                          "later",
                                          "images", 10000),
                  0);
    drover_packet_t *packet = s_recv (pair.dealer, false);
    drover_msg_t *error = drover_packet_msg (packet);
    cr_assert_eq (error->command, DROVER_ERROR);
    cr_assert_eq (error->ref, 4242);
    cr_assert_eq (error->code, DROVER_EFULL);
    cr_assert_str_eq (error->reason,
                      "queue images is full (10000 tasks): retry later");
    drover_packet_destroy (&packet);

    //  Every code, ref 0 and the largest ref
    for (int code = DROVER_ELAST; code <= 0; code++) {
        uint64_t ref = code % 2 ? UINT64_MAX : 0;
        cr_assert_eq (drover_wire_send_error (pair.router, routing_id, ref,
                                              code, "%s",
                                              drover_strcode (code)),
                      0);
        packet = s_recv (pair.dealer, false);
        error = drover_packet_msg (packet);
        cr_assert_eq (error->ref, ref);
        cr_assert_eq (error->code, code);
        cr_assert_str_eq (error->reason, drover_strcode (code));
        drover_packet_destroy (&packet);
    }

    //  A long reason is cut, not refused
    char *longer = (char *)malloc (3001);
    cr_assert_not_null (longer);
    memset (longer, 'x', 3000);
    longer[3000] = 0;
    cr_assert_eq (drover_wire_send_error (pair.router, routing_id, 1,
                                          DROVER_EINVAL, "%s", longer),
                  0);
    packet = s_recv (pair.dealer, false);
    error = drover_packet_msg (packet);
    size_t length = strlen (error->reason);
    cr_assert_gt (length, 0);
    cr_assert_lt (length, 3000);
    cr_assert_leq (length, DROVER_MAX_TEXT);
    cr_assert_eq (strncmp (error->reason, longer, length), 0);
    drover_packet_destroy (&packet);
    free (longer);

    //  A code that is no DROVER_E* code is refused, and nothing is sent
    cr_assert_eq (drover_wire_send_error (pair.router, routing_id, 1, 3,
                                          "positive codes do not exist"),
                  DROVER_EINVAL);
    s_assert_silence (pair.dealer, "ERROR with code 3");
    zframe_destroy (&routing_id);
    s_pair_destroy (&pair);
}

//  A message the encoder refuses sends nothing at all, not a partial
//  multipart message: the next message arrives intact.
LEAK_CHECKED_TEST (wire, invalid_message_sends_nothing)
{
    s_pair_t pair = s_pair_new ("inproc://wire-invalid");
    drover_msg_t msg;
    fx_sample (&msg, DROVER_SUBMIT);
    msg.tasks[1].handler = "not a name";
    cr_assert_eq (drover_wire_send (pair.dealer, NULL, &msg, NULL),
                  DROVER_EINVAL);
    drover_msg_init (&msg, (drover_command_t)0x7f);
    cr_assert_eq (drover_wire_send (pair.dealer, NULL, &msg, NULL),
                  DROVER_EINVAL);
    s_assert_silence (pair.router, "after invalid messages");

    fx_sample (&msg, DROVER_HEARTBEAT);
    cr_assert_eq (drover_wire_send (pair.dealer, NULL, &msg, NULL), 0);
    drover_packet_t *packet = s_recv (pair.router, true);
    cr_assert_eq (drover_packet_msg (packet)->command, DROVER_HEARTBEAT);
    drover_packet_destroy (&packet);
    s_pair_destroy (&pair);
}

LEAK_CHECKED_TEST (wire, receive_times_out_with_eio)
{
    s_pair_t pair = s_pair_new ("inproc://wire-timeout");
    zsock_set_rcvtimeo (pair.dealer, 50);
    drover_packet_t *packet = (drover_packet_t *)&pair; //  must be NULLed
    cr_assert_eq (drover_packet_recv (pair.dealer, false, &packet), DROVER_EIO);
    cr_assert_null (packet);
    s_pair_destroy (&pair);
}

//  drover_wire_send never blocks: a DEALER with no peer to take the
//  message gives DROVER_EIO at once.
LEAK_CHECKED_TEST (wire, send_without_peer_gives_eio)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (dealer);
    drover_msg_t msg;
    fx_sample (&msg, DROVER_RESULT);
    cr_assert_eq (drover_wire_send (dealer, NULL, &msg, NULL), DROVER_EIO);
    zsock_destroy (&dealer);
}

//  Two peers over TCP: the ROUTER answers each by its routing id, and each
//  gets its own answer.
LEAK_CHECKED_TEST (wire, routing_ids_over_tcp)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    cr_assert_not_null (router);
    zsock_set_rcvtimeo (router, RECV_TIMEOUT_MS);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    cr_assert_gt (port, 0);
    const char *endpoint = zsock_endpoint (router);
    cr_assert_not_null (endpoint);
    char expected[64];
    snprintf (expected, sizeof expected, "tcp://127.0.0.1:%d", port);
    cr_assert_str_eq (endpoint, expected);

    static const char *names[] = {"node-a", "node-b"};
    zsock_t *dealers[2];
    for (size_t i = 0; i < 2; i++) {
        dealers[i] = zsock_new (ZMQ_DEALER);
        cr_assert_not_null (dealers[i]);
        zsock_set_identity (dealers[i], names[i]);
        zsock_set_rcvtimeo (dealers[i], RECV_TIMEOUT_MS);
        cr_assert_eq (zsock_connect (dealers[i], "%s", endpoint), 0);
        drover_msg_t msg;
        fx_sample (&msg, DROVER_STATUS);
        msg.ref = 1000 + i;
        cr_assert_eq (drover_wire_send (dealers[i], NULL, &msg, NULL), 0);
    }
    for (size_t i = 0; i < 2; i++) {
        drover_packet_t *packet = s_recv (router, true);
        drover_msg_t *status = drover_packet_msg (packet);
        zframe_t *routing_id = drover_packet_routing_id (packet);
        size_t peer = zframe_streq (routing_id, names[0]) ? 0 : 1;
        cr_assert (zframe_streq (routing_id, names[peer]));
        cr_assert_eq (status->ref, 1000 + peer, "the ref its peer sent");
        drover_msg_t reply;
        fx_sample (&reply, DROVER_STATUS_REPLY);
        reply.ref = status->ref;
        cr_assert_eq (drover_wire_send (router, routing_id, &reply, NULL), 0);
        drover_packet_destroy (&packet);
    }
    for (size_t i = 0; i < 2; i++) {
        drover_packet_t *packet = s_recv (dealers[i], false);
        cr_assert_eq (drover_packet_msg (packet)->command, DROVER_STATUS_REPLY);
        cr_assert_eq (drover_packet_msg (packet)->ref, 1000 + i);
        drover_packet_destroy (&packet);
        zsock_destroy (&dealers[i]);
    }
    zsock_destroy (&router);
}
