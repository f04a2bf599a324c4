/*  test_client.c - libdrover's client against a scripted fake broker and
    fake sink (ROUTER sockets inside the test, speaking DTP through
    proto/drover_wire), the JSON writer, the id table, and the local
    cluster with a fake drover executable.

    The client is blocking, so each test runs it in a thread of its own (a
    "job") while the test's main thread plays the broker and the sink. The
    job only records what it saw; the main thread asserts. Every wait
    polls with a deadline; nothing sleeps to wait.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_client.h"
#include "drover_client_internal.h"
#include "drover_cluster.h"
#include "drover_json.h"
#include "drover_map.h"
#include "drover_wire.h"
#include "id_map.h"
#include "leak_check.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  One test at a time: with several at once, Criterion 2.4.1's runner
//  itself leaks a few objects now and then (seen under LeakSanitizer; none
//  of them ours), and the timing assertions are steadier. --jobs still
//  overrides this.

int
main (int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize ();
    criterion_options.jobs = 1;
    int result = 0;
    if (criterion_handle_args (argc, argv, true))
        result = !criterion_run_all_tests (tests);
    criterion_finalize (tests);
    return result;
}

//  A test with a timeout whose body must not leak (leak_check.h)
#define CLIENT_TEST(Name, Seconds)                                             \
    static void client_##Name##_body_ (void);                                  \
    Test (client, Name, .timeout = Seconds)                                    \
    {                                                                          \
        leak_check_t before_ = leak_check_begin ();                            \
        client_##Name##_body_ ();                                              \
        leak_check_end (before_);                                              \
    }                                                                          \
    static void client_##Name##_body_ (void)

//  --------------------------------------------------------------------------
//  Jobs: client code running in a thread of its own

typedef struct job_t job_t;
typedef void (job_fn) (job_t *job);

struct job_t {
    job_fn *fn;                  //  what the thread runs
    pthread_t thread;            //  the thread
    atomic_int done;             //  set when fn returned
    char endpoint[64];           //  the fake broker's endpoint
    int timeout_ms;              //  for connect and requests
    int rc[8];                   //  return codes, in order of the calls
    char reason[8][256];         //  drover_client_reason after each call
    uint64_t ids[64];            //  task ids the client got
    size_t id_count;             //  how many
    drover_result_t *result[8];  //  results the client got
    drover_status_t *statuses;   //  from status or cancel
    drover_stats_t *stats;       //  from stats
    drover_dead_list_t *dead[4]; //  from dead
    uint64_t *new_ids[4];        //  from retry
    size_t new_count[4];         //  how many
    int64_t elapsed_ms;          //  how long a timed call took
    void *extra;                 //  per test
};

static void *
s_job_main (void *arg)
{
    job_t *job = (job_t *)arg;
    job->fn (job);
    atomic_store (&job->done, 1);
    return NULL;
}

static void
s_job_start (job_t *job, job_fn *fn)
{
    job->fn = fn;
    atomic_store (&job->done, 0);
    if (!job->timeout_ms)
        job->timeout_ms = 2000;
    cr_assert_eq (pthread_create (&job->thread, NULL, s_job_main, job), 0);
}

static void
s_job_join (job_t *job)
{
    pthread_join (job->thread, NULL);
    for (size_t i = 0; i < 8; i++)
        drover_result_destroy (&job->result[i]);
    drover_status_destroy (&job->statuses);
    drover_stats_destroy (&job->stats);
    for (size_t i = 0; i < 4; i++) {
        drover_dead_list_destroy (&job->dead[i]);
        free (job->new_ids[i]);
    }
}

//  Records a return code and the reason that came with it.
static int
s_note (job_t *job, drover_client_t *client, size_t index, int rc)
{
    job->rc[index] = rc;
    snprintf (job->reason[index], sizeof job->reason[index], "%s",
              drover_client_reason (client));
    return rc;
}

//  Connects a client for a job; NULL (with rc[0] set) on failure.
static drover_client_t *
s_job_connect (job_t *job)
{
    drover_client_t *client = drover_client_new ();
    if (s_note (job, client, 0,
                drover_client_connect (client, job->endpoint, job->timeout_ms)))
        drover_client_destroy (&client);
    return client;
}

//  --------------------------------------------------------------------------
//  The fake broker and sink

typedef struct {
    zsock_t *broker;       //  ROUTER the client connects to
    zsock_t *sink;         //  ROUTER named in WELCOME
    char broker_ep[64];    //  tcp://127.0.0.1:port
    char sink_ep[64];      //  tcp://127.0.0.1:port
    uint32_t max_batch;    //  announced in WELCOME
    uint32_t heartbeat_ms; //  announced in WELCOME
    uint32_t liveness;     //  announced in WELCOME
    uint64_t max_payload;  //  announced in WELCOME
    bool no_sink;          //  WELCOME without endpoint
    const char *instance;  //  announced in WELCOME
    bool drop_submits;     //  a dying broker: SUBMITs go unanswered
    size_t hellos;         //  HELLOs after the first
    size_t again;          //  SUBMIT items with an id (resubmissions)
    size_t again_wrong;    //  of which with another input than before
    uint64_t *again_ids;   //  their ids, in order
    //  Automatic serving (s_fake_step)
    int efull;               //  refuse this many SUBMITs with EFULL
    size_t hold;             //  sink: keep results until this many
                             //  are watched (or the client is idle)
    bool never;              //  sink: never send results
    uint64_t next_id;        //  next task id
    char **payloads;         //  input of each task, by id
    size_t payload_capacity; //  entries in payloads
    uint64_t *pending;       //  watched ids without a result sent
    size_t pending_count;    //  how many
    zframe_t *sink_client;   //  routing id of the client at the sink
    size_t outstanding;      //  tasks submitted, result not sent
    size_t max_outstanding;  //  most outstanding at any time
    size_t submits;          //  SUBMIT messages
    size_t submitted;        //  tasks accepted
    size_t largest_submit;   //  most tasks in one SUBMIT
    size_t submit_sizes[8];  //  tasks of the first SUBMITs
    size_t watch_messages;   //  WATCH messages
    size_t heartbeats;       //  HEARTBEATs from the client
    size_t cancelled;        //  ids in CANCELs
    int64_t last_heard;      //  when the client last sent anything
    const drover_task_options_t *expect; //  options every SUBMIT task
                                         //  must carry, or NULL
    size_t options_wrong;                //  SUBMIT tasks whose options differ
} fake_t;

static void
s_fake_init (fake_t *fake)
{
    memset (fake, 0, sizeof *fake);
    fake->broker = zsock_new (ZMQ_ROUTER);
    fake->sink = zsock_new (ZMQ_ROUTER);
    cr_assert (fake->broker && fake->sink);
    int port = zsock_bind (fake->broker, "tcp://127.0.0.1:*");
    cr_assert_gt (port, 0);
    snprintf (fake->broker_ep, sizeof fake->broker_ep, "tcp://127.0.0.1:%d",
              port);
    port = zsock_bind (fake->sink, "tcp://127.0.0.1:*");
    cr_assert_gt (port, 0);
    snprintf (fake->sink_ep, sizeof fake->sink_ep, "tcp://127.0.0.1:%d", port);
    fake->max_batch = 64;
    fake->heartbeat_ms = 1000;
    fake->liveness = 5;
    fake->max_payload = 1 << 20;
    fake->next_id = 1;
    fake->hold = 1;
    fake->instance = "fake-broker";
    fake->last_heard = zclock_mono ();
}

static void
s_fake_destroy (fake_t *fake)
{
    zsock_destroy (&fake->broker);
    zsock_destroy (&fake->sink);
    for (size_t i = 0; i < fake->payload_capacity; i++)
        free (fake->payloads[i]);
    free (fake->payloads);
    free (fake->pending);
    free (fake->again_ids);
    zframe_destroy (&fake->sink_client);
}

//  Receives one message within timeout_ms, or NULL.
static drover_packet_t *
s_recv (zsock_t *router, int timeout_ms, int *rc_p)
{
    zpoller_t *poller = zpoller_new (router, NULL);
    void *which = zpoller_wait (poller, timeout_ms);
    zpoller_destroy (&poller);
    if (!which)
        return NULL;
    drover_packet_t *packet;
    int rc = drover_packet_recv (router, true, &packet);
    if (rc_p)
        *rc_p = rc;
    return packet;
}

//  Receives one message of the given command, or fails the test.
static drover_packet_t *
s_expect (zsock_t *router, drover_command_t command)
{
    int rc = -1;
    drover_packet_t *packet = s_recv (router, 5000, &rc);
    cr_assert_not_null (packet, "expected %s, got nothing",
                        drover_command_name (command));
    cr_assert_eq (rc, 0, "expected %s, got a malformed message: %s",
                  drover_command_name (command), drover_packet_error (packet));
    cr_assert_eq (drover_packet_msg (packet)->command, command,
                  "expected %s, got %s", drover_command_name (command),
                  drover_command_name (drover_packet_msg (packet)->command));
    return packet;
}

static void
s_send (zsock_t *router, drover_packet_t *to, drover_msg_t *msg)
{
    cr_assert_eq (
        drover_wire_send (router, drover_packet_routing_id (to), msg, NULL), 0);
}

static void
s_welcome (fake_t *fake, drover_packet_t *hello)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_WELCOME);
    msg.instance = fake->instance;
    msg.endpoint = fake->no_sink ? NULL : fake->sink_ep;
    msg.heartbeat_ms = fake->heartbeat_ms;
    msg.liveness = fake->liveness;
    msg.max_payload = fake->max_payload;
    msg.max_batch = fake->max_batch;
    s_send (fake->broker, hello, &msg);
}

//  The fake sink sends one successful RESULT of task id to the peer of
//  packet.
static void
s_send_result (fake_t *fake, drover_packet_t *to, uint64_t id,
               const char *payload)
{
    drover_task_t item = {
        .id = id, .attempt = 1, .payload = {payload, strlen (payload)}};
    drover_msg_t result;
    drover_msg_init (&result, DROVER_RESULT);
    result.tasks = &item;
    result.task_count = 1;
    s_send (fake->sink, to, &result);
}

//  Takes HELLO and answers WELCOME.
static void
s_handshake (fake_t *fake)
{
    drover_packet_t *hello = s_expect (fake->broker, DROVER_HELLO);
    drover_msg_t *msg = drover_packet_msg (hello);
    cr_assert_str_eq (msg->role, "client");
    cr_assert_not_null (msg->name);
    s_welcome (fake, hello);
    drover_packet_destroy (&hello);
}

static void
s_fake_store_payload (fake_t *fake, uint64_t id, const drover_bytes_t *payload)
{
    if (id >= fake->payload_capacity) {
        size_t capacity = fake->payload_capacity ? fake->payload_capacity : 64;
        while (capacity <= id)
            capacity *= 2;
        fake->payloads =
            (char **)realloc (fake->payloads, capacity * sizeof (char *));
        memset (fake->payloads + fake->payload_capacity, 0,
                (capacity - fake->payload_capacity) * sizeof (char *));
        fake->payload_capacity = capacity;
    }
    fake->payloads[id] = strndup ((const char *)payload->data, payload->size);
}

//  Sends the results of every pending watched task, newest first, as many
//  per message as max_batch allows. Inputs starting with "fail" fail.
static void
s_fake_release (fake_t *fake)
{
    drover_task_t *items =
        (drover_task_t *)calloc (fake->max_batch, sizeof (drover_task_t));
    char **texts = (char **)calloc (fake->max_batch, sizeof (char *));
    size_t count = 0;
    while (fake->pending_count) {
        uint64_t id = fake->pending[--fake->pending_count];
        const char *input = id < fake->payload_capacity && fake->payloads[id]
                                ? fake->payloads[id]
                                : "";
        drover_task_t *item = &items[count];
        *item = (drover_task_t){
            .id = id, .attempt = 1, .node = "fake:1", .elapsed_us = 1500};
        if (strncmp (input, "fail", 4) == 0) {
            item->code = DROVER_EFAILED;
            item->reason = "failed on purpose";
        }
        else {
            texts[count] = zsys_sprintf ("R:%s", input);
            item->payload.data = texts[count];
            item->payload.size = strlen (texts[count]);
        }
        count++;
        fake->outstanding--;
        if (count == fake->max_batch || fake->pending_count == 0) {
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_RESULT);
            msg.tasks = items;
            msg.task_count = count;
            cr_assert_eq (
                drover_wire_send (fake->sink, fake->sink_client, &msg, NULL),
                0);
            for (size_t i = 0; i < count; i++)
                zstr_free (&texts[i]);
            count = 0;
        }
    }
    free (items);
    free (texts);
}

static void
s_fake_broker_message (fake_t *fake, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    if (msg->command == DROVER_HELLO) {
        fake->hellos++;
        s_welcome (fake, packet);
    }
    else if (msg->command == DROVER_SUBMIT) {
        if (fake->submits < 8)
            fake->submit_sizes[fake->submits] = msg->task_count;
        fake->submits++;
        if (msg->task_count > fake->largest_submit)
            fake->largest_submit = msg->task_count;
        if (fake->drop_submits)
            return;
        if (fake->efull > 0) {
            fake->efull--;
            drover_wire_send_error (fake->broker,
                                    drover_packet_routing_id (packet), msg->ref,
                                    DROVER_EFULL, "queue full: retry later");
            return;
        }
        uint64_t ids[DROVER_MAX_BATCH];
        size_t again_before = fake->again;
        for (size_t i = 0; i < msg->task_count; i++) {
            const drover_task_t *task = &msg->tasks[i];
            const drover_task_options_t *expect = fake->expect;
            if (expect
                && (task->timeout_ms != expect->timeout_ms
                    || task->max_attempts != expect->max_attempts
                    || task->soft_timeout_ms != expect->soft_timeout_ms
                    || task->retry_delay_ms != expect->retry_delay_ms
                    || task->retry_max_delay_ms != expect->retry_max_delay_ms
                    || task->retry_on != expect->retry_on
                    || !task->queue != !expect->queue
                    || (task->queue && strcmp (task->queue, expect->queue))))
                fake->options_wrong++;
            if (task->id) {
                //  Submitted again under its id: the same input as before
                const char *before = task->id < fake->payload_capacity
                                         ? fake->payloads[task->id]
                                         : NULL;
                if (!before || strlen (before) != task->payload.size
                    || memcmp (before, task->payload.data, task->payload.size))
                    fake->again_wrong++;
                fake->again_ids = (uint64_t *)realloc (
                    fake->again_ids, (fake->again + 1) * sizeof (uint64_t));
                fake->again_ids[fake->again++] = task->id;
                ids[i] = task->id;
                continue;
            }
            ids[i] = fake->next_id++;
            s_fake_store_payload (fake, ids[i], &msg->tasks[i].payload);
        }
        size_t fresh = msg->task_count - (fake->again - again_before);
        fake->submitted += fresh;
        fake->outstanding += fresh;
        if (fake->outstanding > fake->max_outstanding)
            fake->max_outstanding = fake->outstanding;
        drover_msg_t reply;
        drover_msg_init (&reply, DROVER_SUBMITTED);
        reply.ref = msg->ref;
        reply.ids = ids;
        reply.id_count = msg->task_count;
        s_send (fake->broker, packet, &reply);
    }
    else if (msg->command == DROVER_CANCEL || msg->command == DROVER_STATUS) {
        drover_task_t *items =
            (drover_task_t *)calloc (msg->id_count + 1, sizeof (drover_task_t));
        for (size_t i = 0; i < msg->id_count; i++)
            items[i] = (drover_task_t){.id = msg->ids[i],
                                       .state = msg->command == DROVER_CANCEL
                                                    ? DROVER_STATE_CANCELLED
                                                    : DROVER_STATE_QUEUED};
        if (msg->command == DROVER_CANCEL)
            fake->cancelled += msg->id_count;
        drover_msg_t reply;
        drover_msg_init (&reply, DROVER_STATUS_REPLY);
        reply.ref = msg->ref;
        reply.tasks = items;
        reply.task_count = msg->id_count;
        s_send (fake->broker, packet, &reply);
        free (items);
    }
}

static void
s_fake_sink_message (fake_t *fake, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    zframe_destroy (&fake->sink_client);
    fake->sink_client = zframe_dup (drover_packet_routing_id (packet));
    if (msg->command == DROVER_WATCH) {
        fake->watch_messages++;
        fake->pending = (uint64_t *)realloc (
            fake->pending,
            (fake->pending_count + msg->id_count + 1) * sizeof (uint64_t));
        for (size_t i = 0; i < msg->id_count; i++) {
            bool known = false; //  a WATCH again adds nothing
            for (size_t j = 0; j < fake->pending_count && !known; j++)
                known = fake->pending[j] == msg->ids[i];
            if (!known)
                fake->pending[fake->pending_count++] = msg->ids[i];
        }
    }
    else if (msg->command == DROVER_HEARTBEAT) {
        fake->heartbeats++;
        drover_msg_t reply;
        drover_msg_init (&reply, DROVER_HEARTBEAT);
        s_send (fake->sink, packet, &reply);
    }
}

//  Serves one message (or none within timeout_ms) from either socket,
//  then sends results as the hold policy allows.
static void
s_fake_step (fake_t *fake, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (fake->broker, fake->sink, NULL);
    zsock_t *which = (zsock_t *)zpoller_wait (poller, timeout_ms);
    zpoller_destroy (&poller);
    if (which) {
        drover_packet_t *packet;
        int rc = drover_packet_recv (which, true, &packet);
        cr_assert_eq (rc, 0, "the client sent a malformed message: %s",
                      packet ? drover_packet_error (packet) : "");
        fake->last_heard = zclock_mono ();
        if (which == fake->broker)
            s_fake_broker_message (fake, packet);
        else
            s_fake_sink_message (fake, packet);
        drover_packet_destroy (&packet);
    }
    bool idle = zclock_mono () - fake->last_heard >= 20;
    if (!fake->never && fake->pending_count && fake->sink_client
        && (fake->pending_count >= fake->hold || idle))
        s_fake_release (fake);
}

//  Serves until the job is done, or fails the test after timeout_ms.
static void
s_fake_serve (fake_t *fake, job_t *job, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (!atomic_load (&job->done) && zclock_mono () < deadline)
        s_fake_step (fake, 5);
    cr_assert (atomic_load (&job->done), "the client did not finish in %d ms",
               timeout_ms);
}

//  Serves until cond holds, or fails the test after 5 s.
#define FAKE_UNTIL(fake, cond)                                                 \
    do {                                                                       \
        int64_t until_ = zclock_mono () + 5000;                                \
        while (!(cond) && zclock_mono () < until_)                             \
            s_fake_step ((fake), 5);                                           \
        cr_assert ((cond), "the fake never saw " #cond);                       \
    } while (0)

//  Sends the results of count tasks in one RESULT, as s_fake_release
//  would, whether or not they are pending (a sink that repeats itself).
static void
s_fake_results (fake_t *fake, const uint64_t *ids, size_t count)
{
    cr_assert_not_null (fake->sink_client);
    drover_task_t items[16];
    char texts[16][80];
    cr_assert_leq (count, 16);
    for (size_t i = 0; i < count; i++) {
        const char *input =
            ids[i] < fake->payload_capacity ? fake->payloads[ids[i]] : NULL;
        cr_assert_not_null (input, "no input for task %" PRIu64, ids[i]);
        snprintf (texts[i], sizeof texts[i], "R:%s", input);
        items[i] = (drover_task_t){.id = ids[i],
                                   .attempt = 1,
                                   .node = "fake:1",
                                   .payload = {texts[i], strlen (texts[i])}};
    }
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = items;
    msg.task_count = count;
    cr_assert_eq (drover_wire_send (fake->sink, fake->sink_client, &msg, NULL),
                  0);
}

//  --------------------------------------------------------------------------
//  The id table

CLIENT_TEST (id_map_try_set_and_keys, 30)
{
    id_map_t *map = id_map_new ();
    cr_assert_not_null (map);
    static int values[20000];
    //  Sequential and scattered keys, with removals in between
    for (uint64_t key = 1; key <= 20000; key++)
        cr_assert_eq (id_map_try_set (map, key * 7919, &values[key - 1]), 0);
    cr_assert_eq (id_map_size (map), 20000);
    for (uint64_t key = 1; key <= 20000; key += 2)
        cr_assert_eq (id_map_remove (map, key * 7919), &values[key - 1]);
    cr_assert_eq (id_map_size (map), 10000);
    for (uint64_t key = 1; key <= 20000; key++)
        cr_assert_eq (id_map_lookup (map, key * 7919),
                      key % 2 ? NULL : &values[key - 1]);
    cr_assert_null (id_map_lookup (map, 0));
    cr_assert_null (id_map_remove (map, 12345));
    //  Replacing keeps one entry
    cr_assert_eq (id_map_try_set (map, 2 * 7919, &values[0]), 0);
    cr_assert_eq (id_map_lookup (map, 2 * 7919), &values[0]);
    uint64_t keys[16];
    cr_assert_eq (id_map_keys (map, keys, 16), 16);
    for (uint64_t key = 2; key <= 20000; key += 2)
        cr_assert_not_null (id_map_remove (map, key * 7919));
    cr_assert_eq (id_map_size (map), 0);
    cr_assert_eq (id_map_keys (map, keys, 16), 0);
    id_map_destroy (&map);
    id_map_destroy (&map); //  idempotent
    cr_assert_null (map);
}

//  --------------------------------------------------------------------------
//  JSON

//  Writes with fn into a string; caller frees.
static char *
s_json_string (const void *data, size_t size)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream (&text, &length);
    cr_assert_eq (drover_json_write_string (out, data, size), 0);
    fclose (out);
    return text;
}

static void
s_assert_json (const char *data, size_t size, const char *expected)
{
    char *text = s_json_string (data, size);
    cr_assert_str_eq (text, expected);
    free (text);
}

CLIENT_TEST (json_escaping, 10)
{
    s_assert_json ("", 0, "\"\"");
    s_assert_json ("plain text", 10, "\"plain text\"");
    s_assert_json ("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    s_assert_json ("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    s_assert_json ("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
    s_assert_json ("a\0b", 3, "\"a\\u0000b\"");
    //  Valid UTF-8 passes as it is: 2, 3 and 4 octets
    s_assert_json ("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
                   "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    //  Line and paragraph separators are escaped for JavaScript
    s_assert_json ("\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\"");
}

CLIENT_TEST (json_invalid_utf8, 10)
{
    //  Each octet that is not valid UTF-8 becomes U+FFFD
    s_assert_json ("\xff", 1, "\"\\ufffd\"");
    s_assert_json ("a\x80z", 3, "\"a\\ufffdz\"");
    s_assert_json ("\xc0\x80", 2, "\"\\ufffd\\ufffd\""); //  overlong NUL
    s_assert_json ("\xed\xa0\x80", 3,
                   "\"\\ufffd\\ufffd\\ufffd\""); //  surrogate
    s_assert_json ("\xf4\x90\x80\x80", 4,
                   "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  //  over U+10FFFF
    s_assert_json ("\xe2\x82", 2, "\"\\ufffd\\ufffd\""); //  truncated
    s_assert_json ("\xe2\x82\"", 3, "\"\\ufffd\\ufffd\\\"\"");
    cr_assert (drover_json_utf8_valid ("\xf4\x8f\xbf\xbf", 4)); //  U+10FFFF
    cr_assert_not (drover_json_utf8_valid ("\xf5\x80\x80\x80", 4));
    cr_assert (drover_json_utf8_valid (NULL, 0));
}

CLIENT_TEST (json_result, 10)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream (&text, &length);
    drover_result_t ok = {.index = 3,
                          .id = 42,
                          .attempt = 1,
                          .node = "host:7",
                          .elapsed_us = 1500000,
                          .payload = "out\n",
                          .payload_size = 4};
    cr_assert_eq (drover_json_write_result (out, &ok), 0);
    drover_result_t failed = {.index = 4,
                              .code = DROVER_ECRASHED,
                              .reason = "killed \"hard\"",
                              .attempt = 2,
                              .signal = 9,
                              .exit_status = 0,
                              .cpu_us = 250000,
                              .max_rss_kb = 51200,
                              .payload = "\xff\x00",
                              .payload_size = 2};
    cr_assert_eq (drover_json_write_result (out, &failed), 0);
    fclose (out);
    cr_assert_str_eq (
        text,
        "{\"index\":3,\"id\":42,\"status\":\"ok\",\"attempts\":1,\"node\":"
        "\"host:7\",\"elapsed\":1.500000,\"cpu\":0.000000,\"max_rss_kb\":0,"
        "\"result\":\"out\\n\"}\n"
        "{\"index\":4,\"id\":null,\"status\":\"crashed\",\"attempts\":2,"
        "\"node\":null,\"elapsed\":0.000000,\"cpu\":0.250000,\"max_rss_kb\":"
        "51200,\"result\":\"\\ufffd\\u0000\",\"result_base64\":\"/wA=\","
        "\"code\":\"DROVER_ECRASHED\",\"error\":\"killed \\\"hard\\\"\","
        "\"signal\":9,\"exit_status\":0}\n");
    free (text);
    cr_assert_str_eq (drover_json_status (0), "ok");
    cr_assert_str_eq (drover_json_status (DROVER_ETIMELIMIT), "timeout");
    cr_assert_str_eq (drover_json_status (DROVER_EFAILED), "failed");
    cr_assert_str_eq (drover_json_status (DROVER_EMEMLIMIT), "memlimit");
}

CLIENT_TEST (json_base64, 10)
{
    const char *cases[][2] = {{"", "\"\""},
                              {"f", "\"Zg==\""},
                              {"fo", "\"Zm8=\""},
                              {"foo", "\"Zm9v\""},
                              {"foobar", "\"Zm9vYmFy\""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = NULL;
        size_t length = 0;
        FILE *out = open_memstream (&text, &length);
        cr_assert_eq (
            drover_json_write_base64 (out, cases[i][0], strlen (cases[i][0])),
            0);
        fclose (out);
        cr_assert_str_eq (text, cases[i][1]);
        free (text);
    }
}

//  --------------------------------------------------------------------------
//  Connecting

static void
s_job_connect_and_wait (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    job->ids[0] = 5;
    job->id_count = drover_client_max_batch (client);
    s_note (
        job, client, 1,
        drover_client_wait (client, job->ids, 1, 5000, true, &job->result[0]));
    drover_client_destroy (&client);
}

CLIENT_TEST (connect_and_wait, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 7;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_connect_and_wait);
    s_handshake (&fake);
    //  The client learns the sink from WELCOME and watches there
    drover_packet_t *watch = s_expect (fake.sink, DROVER_WATCH);
    drover_msg_t *msg = drover_packet_msg (watch);
    cr_assert_eq (msg->id_count, 1);
    cr_assert_eq (msg->ids[0], 5);
    cr_assert (msg->release);
    //  A result for a task nobody watches is dropped; then the real one
    drover_task_t items[2] = {{.id = 99, .attempt = 1},
                              {.id = 5,
                               .attempt = 2,
                               .code = DROVER_EFAILED,
                               .reason = "bad input",
                               .node = "n1:1",
                               .elapsed_us = 77,
                               .signal = 0,
                               .exit_status = 3,
                               .max_rss_kb = 1024,
                               .cpu_us = 66,
                               .payload = {"partial", 7}}};
    drover_msg_t result;
    drover_msg_init (&result, DROVER_RESULT);
    result.tasks = items;
    result.task_count = 2;
    s_send (fake.sink, watch, &result);
    drover_packet_destroy (&watch);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[0], 0, "%s", job.reason[0]);
    cr_assert_eq (job.id_count, 7, "max_batch from WELCOME");
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    drover_result_t *got = job.result[0];
    cr_assert_not_null (got);
    cr_assert_eq (got->id, 5);
    cr_assert_eq (got->code, DROVER_EFAILED);
    cr_assert_str_eq (got->reason, "bad input");
    cr_assert_eq (got->attempt, 2);
    cr_assert_str_eq (got->node, "n1:1");
    cr_assert_eq (got->elapsed_us, 77);
    cr_assert_eq (got->exit_status, 3);
    cr_assert_eq (got->max_rss_kb, 1024);
    cr_assert_eq (got->cpu_us, 66);
    cr_assert_eq (got->payload_size, 7);
    cr_assert_arr_eq (got->payload, "partial", 7);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  job->extra: the sink endpoint to set before connecting
static void
s_job_sink_set_and_wait (job_t *job)
{
    drover_client_t *client = drover_client_new ();
    s_note (job, client, 0, drover_client_set_sink_endpoint (client, ""));
    s_note (job, client, 1,
            drover_client_set_sink_endpoint (client, (const char *)job->extra));
    if (s_note (
            job, client, 2,
            drover_client_connect (client, job->endpoint, job->timeout_ms))) {
        drover_client_destroy (&client);
        return;
    }
    s_note (job, client, 3,
            drover_client_set_sink_endpoint (client, (const char *)job->extra));
    job->ids[0] = 5;
    s_note (
        job, client, 4,
        drover_client_wait (client, job->ids, 1, 5000, true, &job->result[0]));
    drover_client_destroy (&client);
}

//  A sink endpoint set by the caller wins over the one WELCOME names (here
//  one nobody listens at); it is set before connecting, and not empty
CLIENT_TEST (sink_endpoint_set_by_the_caller, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    char sink_ep[64];
    strcpy (sink_ep, fake.sink_ep);
    strcpy (fake.sink_ep, "ipc:///nonexistent/drover-test-sink");
    job_t job = {.timeout_ms = 5000, .extra = sink_ep};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_sink_set_and_wait);
    s_handshake (&fake);
    drover_packet_t *watch = s_expect (fake.sink, DROVER_WATCH);
    cr_assert_eq (drover_packet_msg (watch)->ids[0], 5);
    s_send_result (&fake, watch, 5, "done");
    drover_packet_destroy (&watch);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[0], DROVER_EINVAL);
    cr_assert (strstr (job.reason[0], "no sink endpoint"), "%s", job.reason[0]);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (job.rc[2], 0, "%s", job.reason[2]);
    cr_assert_eq (job.rc[3], DROVER_EINVAL, "set after connect");
    cr_assert (strstr (job.reason[3], "before drover_client_connect"), "%s",
               job.reason[3]);
    cr_assert_eq (job.rc[4], 0, "%s", job.reason[4]);
    cr_assert_not_null (job.result[0]);
    cr_assert_eq (job.result[0]->payload_size, 4);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_connect_only (job_t *job)
{
    int64_t start = zclock_mono ();
    drover_client_t *client = s_job_connect (job);
    job->elapsed_ms = zclock_mono () - start;
    drover_client_destroy (&client);
}

CLIENT_TEST (connect_timeout, 20)
{
    //  A broker that never answers
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 300};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_connect_only);
    drover_packet_t *hello = s_expect (fake.broker, DROVER_HELLO);
    drover_packet_destroy (&hello);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[0], DROVER_ECONNECT);
    cr_assert (strstr (job.reason[0], "no answer"), "%s", job.reason[0]);
    cr_assert_geq (job.elapsed_ms, 280);
    cr_assert_lt (job.elapsed_ms, 3000);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (connect_refused, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_connect_only);
    drover_packet_t *hello = s_expect (fake.broker, DROVER_HELLO);
    drover_wire_send_error (fake.broker, drover_packet_routing_id (hello), 0,
                            DROVER_EDENIED,
                            "clients from here are not allowed");
    drover_packet_destroy (&hello);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[0], DROVER_EDENIED);
    cr_assert (strstr (job.reason[0], "not allowed"), "%s", job.reason[0]);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (connect_bad_endpoint, 10)
{
    drover_client_t *client = drover_client_new ();
    cr_assert_eq (drover_client_connect (client, "nonsense", 100),
                  DROVER_EINVAL);
    cr_assert (strstr (drover_client_reason (client), "nonsense"));
    cr_assert_eq (drover_client_connect (client, NULL, 100), DROVER_EINVAL);
    uint64_t id;
    cr_assert_eq (drover_client_submit (client, "echo", "x", 1, NULL, &id),
                  DROVER_EINVAL);
    drover_client_destroy (&client);
    drover_client_destroy (&client);
}

//  --------------------------------------------------------------------------
//  Submitting

static void
s_job_submit_batch (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    drover_payload_t payloads[8];
    char texts[8][8];
    for (size_t i = 0; i < 8; i++) {
        snprintf (texts[i], sizeof texts[i], "p%zu", i);
        payloads[i] = (drover_payload_t){texts[i], strlen (texts[i])};
    }
    drover_task_options_t options = {
        .queue = "fast", .timeout_ms = 2500, .max_attempts = 3};
    s_note (job, client, 1,
            drover_client_submit_batch (client, "echo", payloads, 8, &options,
                                        job->ids));
    s_note (
        job, client, 2,
        drover_client_submit (client, "upper", "one", 3, NULL, &job->ids[8]));
    //  Bad names are refused here, without a round trip
    uint64_t id;
    s_note (job, client, 3,
            drover_client_submit (client, "has space", "x", 1, NULL, &id));
    drover_client_destroy (&client);
}

CLIENT_TEST (submit_batch_in_order, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 3;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_submit_batch);
    s_handshake (&fake);
    //  8 tasks in SUBMITs of 3, 3 and 2; answered in reverse order, ids
    //  chosen so that the order of the answers would show
    drover_packet_t *submits[3];
    size_t sizes[3] = {3, 3, 2};
    for (size_t s = 0; s < 3; s++) {
        submits[s] = s_expect (fake.broker, DROVER_SUBMIT);
        drover_msg_t *msg = drover_packet_msg (submits[s]);
        cr_assert_eq (msg->task_count, sizes[s]);
        for (size_t i = 0; i < msg->task_count; i++) {
            char expected[8];
            snprintf (expected, sizeof expected, "p%zu", 3 * s + i);
            cr_assert_str_eq (msg->tasks[i].handler, "echo");
            cr_assert_str_eq (msg->tasks[i].queue, "fast");
            cr_assert_eq (msg->tasks[i].timeout_ms, 2500);
            cr_assert_eq (msg->tasks[i].max_attempts, 3);
            cr_assert_eq (msg->tasks[i].payload.size, strlen (expected));
            cr_assert_arr_eq (msg->tasks[i].payload.data, expected,
                              strlen (expected));
        }
    }
    for (size_t s = 3; s-- > 0;) {
        drover_msg_t *msg = drover_packet_msg (submits[s]);
        uint64_t ids[3];
        for (size_t i = 0; i < msg->task_count; i++)
            ids[i] = 100 + 3 * s + i;
        drover_msg_t reply;
        drover_msg_init (&reply, DROVER_SUBMITTED);
        reply.ref = msg->ref;
        reply.ids = ids;
        reply.id_count = msg->task_count;
        s_send (fake.broker, submits[s], &reply);
        drover_packet_destroy (&submits[s]);
    }
    drover_packet_t *single = s_expect (fake.broker, DROVER_SUBMIT);
    drover_msg_t *msg = drover_packet_msg (single);
    cr_assert_eq (msg->task_count, 1);
    cr_assert_str_eq (msg->tasks[0].handler, "upper");
    cr_assert_null (msg->tasks[0].queue);
    uint64_t id = 500;
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = msg->ref;
    reply.ids = &id;
    reply.id_count = 1;
    s_send (fake.broker, single, &reply);
    drover_packet_destroy (&single);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    for (size_t i = 0; i < 8; i++)
        cr_assert_eq (job.ids[i], 100 + i);
    cr_assert_eq (job.rc[2], 0, "%s", job.reason[2]);
    cr_assert_eq (job.ids[8], 500);
    cr_assert_eq (job.rc[3], DROVER_EINVAL);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_submit_one (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    for (size_t i = 1; i < 4; i++)
        s_note (
            job, client, i,
            drover_client_submit (client, "echo", "x", 1, NULL, &job->ids[i]));
    drover_client_destroy (&client);
}

CLIENT_TEST (submit_efull_and_errors, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_submit_one);
    s_handshake (&fake);
    //  1: backpressure reaches the caller
    drover_packet_t *submit = s_expect (fake.broker, DROVER_SUBMIT);
    drover_msg_t *msg = drover_packet_msg (submit);
    drover_wire_send_error (fake.broker, drover_packet_routing_id (submit),
                            msg->ref, DROVER_EFULL,
                            "queue default is full: retry later");
    drover_packet_destroy (&submit);
    //  2: an ERROR for another ref and a SUBMITTED for an unknown ref are
    //  ignored; then the ERROR for this one counts
    submit = s_expect (fake.broker, DROVER_SUBMIT);
    msg = drover_packet_msg (submit);
    drover_wire_send_error (fake.broker, drover_packet_routing_id (submit),
                            msg->ref + 1000, DROVER_EPROTO, "not yours");
    uint64_t stray = 77;
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = msg->ref + 1001;
    reply.ids = &stray;
    reply.id_count = 1;
    s_send (fake.broker, submit, &reply);
    drover_wire_send_error (fake.broker, drover_packet_routing_id (submit),
                            msg->ref, DROVER_EHANDLER, "no node runs 'echo'");
    drover_packet_destroy (&submit);
    //  3: works
    submit = s_expect (fake.broker, DROVER_SUBMIT);
    msg = drover_packet_msg (submit);
    uint64_t id = 9;
    reply.ref = msg->ref;
    reply.ids = &id;
    s_send (fake.broker, submit, &reply);
    drover_packet_destroy (&submit);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], DROVER_EFULL);
    cr_assert (strstr (job.reason[1], "retry later"), "%s", job.reason[1]);
    cr_assert_eq (job.rc[2], DROVER_EHANDLER);
    cr_assert (strstr (job.reason[2], "no node"), "%s", job.reason[2]);
    cr_assert_eq (job.rc[3], 0);
    cr_assert_eq (job.ids[3], 9);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  --------------------------------------------------------------------------
//  Waiting and liveness

static void
s_job_wait_timeout (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t ids[2] = {3, 4};
    int64_t start = zclock_mono ();
    s_note (job, client, 1,
            drover_client_wait (client, ids, 2, 200, false, job->result));
    job->elapsed_ms = zclock_mono () - start;
    //  Ids twice, and id 0, are refused
    uint64_t twice[2] = {3, 3};
    s_note (job, client, 2,
            drover_client_wait (client, twice, 2, 0, false, job->result + 2));
    drover_client_destroy (&client);
}

CLIENT_TEST (wait_timeout, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.never = true;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_wait_timeout);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[0], 0);
    cr_assert_eq (job.rc[1], DROVER_ETIMEDOUT);
    cr_assert_null (job.result[0]);
    cr_assert_null (job.result[1]);
    cr_assert_geq (job.elapsed_ms, 190);
    cr_assert_lt (job.elapsed_ms, 3000);
    cr_assert_eq (job.rc[2], DROVER_EINVAL);
    cr_assert_geq (fake.watch_messages, 1);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_wait_long (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t id = 11;
    s_note (job, client, 1,
            drover_client_wait (client, &id, 1, 700, true, job->result));
    drover_client_destroy (&client);
}

CLIENT_TEST (heartbeats_the_sink, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.never = true;
    fake.heartbeat_ms = 50;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_wait_long);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], DROVER_ETIMEDOUT);
    //  About 700 / 50 heartbeats, each answered: no need to watch again
    cr_assert_geq (fake.heartbeats, 5, "%zu heartbeats", fake.heartbeats);
    cr_assert_eq (fake.watch_messages, 1);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (watches_again_when_sink_is_silent, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.never = true;
    fake.heartbeat_ms = 30;
    fake.liveness = 2;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_wait_long);
    s_handshake (&fake);
    //  A sink that answers nothing: the client watches again (and asks
    //  the broker whether the sink moved)
    size_t watches = 0, heartbeats = 0, hellos = 0;
    int64_t deadline = zclock_mono () + 5000;
    while (!atomic_load (&job.done) && zclock_mono () < deadline) {
        zpoller_t *poller = zpoller_new (fake.sink, fake.broker, NULL);
        zsock_t *which = (zsock_t *)zpoller_wait (poller, 10);
        zpoller_destroy (&poller);
        if (!which)
            continue;
        drover_packet_t *packet;
        cr_assert_eq (drover_packet_recv (which, true, &packet), 0);
        drover_msg_t *msg = drover_packet_msg (packet);
        if (msg->command == DROVER_WATCH)
            watches++;
        else if (msg->command == DROVER_HEARTBEAT)
            heartbeats++;
        else if (msg->command == DROVER_HELLO) {
            hellos++;
            s_welcome (&fake, packet);
        }
        drover_packet_destroy (&packet);
    }
    cr_assert (atomic_load (&job.done));
    cr_assert_eq (job.rc[1], DROVER_ETIMEDOUT);
    cr_assert_geq (watches, 3, "%zu WATCHes", watches);
    cr_assert_geq (heartbeats, 2, "%zu HEARTBEATs", heartbeats);
    cr_assert_geq (hellos, 1, "%zu HELLOs", hellos);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (learns_a_late_sink, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.no_sink = true;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_wait_long);
    s_handshake (&fake);
    //  The client watches a task but knows no sink: it says HELLO again
    //  until a WELCOME names one, then watches there
    drover_packet_t *hello = s_expect (fake.broker, DROVER_HELLO);
    fake.no_sink = false;
    s_welcome (&fake, hello);
    drover_packet_destroy (&hello);
    fake.hold = 1;
    fake.next_id = 12;
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (job.result[0]->id, 11);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  A restarted sink holds no watches: it answers the client's HEARTBEAT
//  with BYE (SPEC.md 6), and the client watches every task again at once,
//  without waiting to find the sink silent.
CLIENT_TEST (sink_bye_watches_again, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.heartbeat_ms = 50;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_wait_long);
    s_handshake (&fake);
    drover_packet_t *packet = s_expect (fake.sink, DROVER_WATCH);
    drover_packet_destroy (&packet);
    packet = s_expect (fake.sink, DROVER_HEARTBEAT);
    drover_msg_t bye;
    drover_msg_init (&bye, DROVER_BYE);
    bye.code = DROVER_ESTALE;
    bye.reason = "no watches of yours: WATCH again";
    s_send (fake.sink, packet, &bye);
    int64_t said = zclock_mono ();
    drover_packet_destroy (&packet);
    packet = s_expect (fake.sink, DROVER_WATCH);
    int64_t took = zclock_mono () - said;
    drover_msg_t *watch = drover_packet_msg (packet);
    cr_assert_eq (watch->id_count, 1);
    cr_assert_eq (watch->ids[0], 11);
    cr_assert (watch->release, "the new WATCH keeps release");
    //  Well before the sink could look silent (250 ms + 50 ms)
    cr_assert_lt (took, 150, "watched again %" PRId64 " ms after BYE", took);
    s_send_result (&fake, packet, 11, "ok");
    drover_packet_destroy (&packet);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (job.result[0]->id, 11);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  --------------------------------------------------------------------------
//  Broker restarts

static void
s_job_submit_across_restart (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    s_note (job, client, 1,
            drover_client_submit (client, "echo", "x", 1, NULL, &job->ids[0]));
    job->id_count = drover_client_broker_restarts (client);
    //  The caller owns the resubmission of what it submitted before
    drover_payload_t payload = {"lost", 4};
    job->ids[1] = 42;
    s_note (job, client, 2,
            drover_client_resubmit (client, "echo", &payload, 1, NULL,
                                    &job->ids[1]));
    job->ids[2] = 0;
    s_note (job, client, 3,
            drover_client_resubmit (client, "echo", &payload, 1, NULL,
                                    &job->ids[2]));
    drover_client_destroy (&client);
}

//  A SUBMIT the broker leaves unanswered makes the client ask the broker
//  (HELLO) after half the request timeout; a WELCOME with a new instance
//  counts the restart and sends the lost SUBMIT again as it was, with its
//  token, so that a broker that journaled it answers with the same ids.
CLIENT_TEST (broker_restart_sends_lost_submits_again_with_their_token, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 1000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_submit_across_restart);
    s_handshake (&fake);
    drover_packet_t *lost = s_expect (fake.broker, DROVER_SUBMIT);
    int64_t sent = zclock_mono ();
    char *token = strdup (drover_packet_msg (lost)->token);
    uint64_t lost_ref = drover_packet_msg (lost)->ref;
    drover_packet_destroy (&lost);
    fake.instance = "fake-broker-2";
    drover_packet_t *hello = s_expect (fake.broker, DROVER_HELLO);
    int64_t asked = zclock_mono () - sent;
    cr_assert_geq (asked, 400, "asked after %" PRId64 " ms", asked);
    cr_assert_lt (asked, 900, "asked after %" PRId64 " ms", asked);
    s_welcome (&fake, hello);
    drover_packet_destroy (&hello);
    //  The lost SUBMIT again, same ref and token
    drover_packet_t *repeat = s_expect (fake.broker, DROVER_SUBMIT);
    drover_msg_t *msg = drover_packet_msg (repeat);
    cr_assert_eq (msg->ref, lost_ref);
    cr_assert_str_eq (msg->token, token);
    cr_assert_eq (msg->tasks[0].id, 0);
    uint64_t first_id = 7;
    drover_msg_t answer;
    drover_msg_init (&answer, DROVER_SUBMITTED);
    answer.ref = msg->ref;
    answer.ids = &first_id;
    answer.id_count = 1;
    s_send (fake.broker, repeat, &answer);
    drover_packet_destroy (&repeat);
    free (token);
    //  The resubmission carries the task's id and input
    drover_packet_t *again = s_expect (fake.broker, DROVER_SUBMIT);
    msg = drover_packet_msg (again);
    cr_assert_eq (msg->task_count, 1);
    cr_assert_eq (msg->tasks[0].id, 42);
    cr_assert_str_eq (msg->tasks[0].handler, "echo");
    cr_assert_eq (msg->tasks[0].payload.size, 4);
    cr_assert_arr_eq (msg->tasks[0].payload.data, "lost", 4);
    uint64_t id = 42;
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = msg->ref;
    reply.ids = &id;
    reply.id_count = 1;
    s_send (fake.broker, again, &reply);
    drover_packet_destroy (&again);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (job.ids[0], 7);
    cr_assert_eq (job.id_count, 1, "one restart seen");
    cr_assert_eq (job.rc[2], 0, "%s", job.reason[2]);
    cr_assert_eq (job.ids[1], 42);
    cr_assert_eq (job.rc[3], DROVER_EINVAL, "id 0 cannot be resubmitted");
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  --------------------------------------------------------------------------
//  Status, cancel, stats

static void
s_job_status (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t ids[3] = {1, 2, 3};
    s_note (job, client, 1,
            drover_client_status (client, ids, 3, &job->statuses));
    drover_client_destroy (&client);
}

//  A question for the sink before the broker named one makes the client
//  ask the broker again (HELLO): a map resuming a job asks the sink about
//  its tasks before it watches anything, and would otherwise never learn
//  the sink. (drover_client_status answers from the broker alone then.)
CLIENT_TEST (a_sink_request_without_a_sink_asks_the_broker_again, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.no_sink = true;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_status);
    s_handshake (&fake);
    drover_packet_t *ask = s_expect (fake.broker, DROVER_STATUS);
    drover_msg_t *msg = drover_packet_msg (ask);
    drover_task_t items[3] = {{.id = 1, .state = DROVER_STATE_UNKNOWN},
                              {.id = 2, .state = DROVER_STATE_UNKNOWN},
                              {.id = 3, .state = DROVER_STATE_UNKNOWN}};
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STATUS_REPLY);
    reply.ref = msg->ref;
    reply.tasks = items;
    reply.task_count = 3;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    drover_packet_t *hello = s_expect (fake.broker, DROVER_HELLO);
    drover_packet_destroy (&hello);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (job.statuses[2].state, DROVER_TASK_UNKNOWN);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (status_falls_back_to_sink, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_status);
    s_handshake (&fake);
    drover_packet_t *ask = s_expect (fake.broker, DROVER_STATUS);
    drover_msg_t *msg = drover_packet_msg (ask);
    cr_assert_eq (msg->id_count, 3);
    drover_task_t items[3] = {{.id = 1,
                               .state = DROVER_STATE_LEASED,
                               .attempt = 1,
                               .max_attempts = 3,
                               .handler = "echo",
                               .queue = "default",
                               .node = "n:1"},
                              {.id = 2, .state = DROVER_STATE_UNKNOWN},
                              {.id = 3, .state = DROVER_STATE_UNKNOWN}};
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STATUS_REPLY);
    reply.ref = msg->ref;
    reply.tasks = items;
    reply.task_count = 3;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    //  The sink is asked about the two the broker no longer knows
    ask = s_expect (fake.sink, DROVER_STATUS);
    msg = drover_packet_msg (ask);
    cr_assert_eq (msg->id_count, 2);
    cr_assert_eq (msg->ids[0], 2);
    cr_assert_eq (msg->ids[1], 3);
    drover_task_t stored[2] = {{.id = 2,
                                .state = DROVER_STATE_FAILED,
                                .attempt = 2,
                                .node = "n:2",
                                .code = DROVER_ETIMELIMIT,
                                .reason = "too slow"},
                               {.id = 3, .state = DROVER_STATE_UNKNOWN}};
    reply.ref = msg->ref;
    reply.tasks = stored;
    reply.task_count = 2;
    s_send (fake.sink, ask, &reply);
    drover_packet_destroy (&ask);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    drover_status_t *statuses = job.statuses;
    cr_assert_eq (statuses[0].id, 1);
    cr_assert_eq (statuses[0].state, DROVER_TASK_LEASED);
    cr_assert_str_eq (statuses[0].state_name, "leased");
    cr_assert_eq (statuses[0].max_attempts, 3);
    cr_assert_str_eq (statuses[0].handler, "echo");
    cr_assert_str_eq (statuses[0].node, "n:1");
    cr_assert_eq (statuses[1].state, DROVER_TASK_FAILED);
    cr_assert_eq (statuses[1].code, DROVER_ETIMELIMIT);
    cr_assert_str_eq (statuses[1].reason, "too slow");
    cr_assert_str_eq (statuses[1].node, "n:2");
    cr_assert_eq (statuses[2].state, DROVER_TASK_UNKNOWN);
    cr_assert_null (statuses[2].node);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_cancel (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t ids[2] = {8, 9};
    s_note (job, client, 1,
            drover_client_cancel (client, ids, 2, &job->statuses));
    drover_client_destroy (&client);
}

CLIENT_TEST (cancel, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_cancel);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (fake.cancelled, 2);
    cr_assert_eq (job.statuses[0].id, 8);
    cr_assert_eq (job.statuses[1].state, DROVER_TASK_CANCELLED);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_stats (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    s_note (job, client, 1, drover_client_stats (client, &job->stats));
    drover_client_destroy (&client);
}

CLIENT_TEST (stats_decoding, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_stats);
    s_handshake (&fake);
    drover_packet_t *ask = s_expect (fake.broker, DROVER_STATS);
    drover_queue_info_t queues[2] = {{"default", 10, 4}, {"slow", 0, 1}};
    drover_node_info_t nodes[1] = {{"box:42", 8, 3, 5, 1000}};
    drover_counter_t counters[3] = {
        {"submitted", 1015}, {"done", 1000}, {"failed", 1}};
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_STATS_REPLY);
    reply.ref = drover_packet_msg (ask)->ref;
    reply.queue_infos = queues;
    reply.queue_info_count = 2;
    reply.node_infos = nodes;
    reply.node_info_count = 1;
    reply.counters = counters;
    reply.counter_count = 3;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    drover_stats_t *stats = job.stats;
    cr_assert_eq (stats->queue_count, 2);
    cr_assert_str_eq (stats->queues[1].name, "slow");
    cr_assert_eq (stats->queues[0].queued, 10);
    cr_assert_eq (stats->queues[0].leased, 4);
    cr_assert_eq (stats->node_count, 1);
    cr_assert_str_eq (stats->nodes[0].name, "box:42");
    cr_assert_eq (stats->nodes[0].children, 8);
    cr_assert_eq (stats->nodes[0].credit, 3);
    cr_assert_eq (stats->nodes[0].leased, 5);
    cr_assert_eq (stats->nodes[0].done, 1000);
    cr_assert_eq (stats->counter_count, 3);
    cr_assert_str_eq (stats->counters[2].name, "failed");
    cr_assert_eq (stats->counters[0].value, 1015);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  --------------------------------------------------------------------------
//  A hostile broker and sink

static void
s_job_hostile (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    for (size_t i = 1; i < 7; i++)
        s_note (
            job, client, i,
            drover_client_submit (client, "echo", "x", 1, NULL, &job->ids[i]));
    uint64_t id = 5;
    s_note (job, client, 7,
            drover_client_wait (client, &id, 1, 3000, true, job->result));
    drover_client_destroy (&client);
}

//  Sends raw frames after a routing id.
static void
s_send_raw (zsock_t *router, drover_packet_t *to, const char *const *frames,
            const size_t *sizes, size_t count)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg,
                 &(zframe_t *){zframe_dup (drover_packet_routing_id (to))});
    for (size_t i = 0; i < count; i++)
        zmsg_addmem (msg, frames[i], sizes[i]);
    cr_assert_eq (zmsg_send (&msg, router), 0);
}

CLIENT_TEST (hostile_replies, 30)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_hostile);
    s_handshake (&fake);

    //  1: garbage
    drover_packet_t *submit = s_expect (fake.broker, DROVER_SUBMIT);
    const char *garbage[] = {"hello", "world"};
    size_t garbage_sizes[] = {5, 5};
    s_send_raw (fake.broker, submit, garbage, garbage_sizes, 2);
    drover_packet_destroy (&submit);

    //  2: a header that lies about its size (an array of 2^32-1 elements)
    submit = s_expect (fake.broker, DROVER_SUBMIT);
    const char command = DROVER_SUBMITTED;
    const char *lying[] = {DROVER_SIGNATURE, &command,
                           "\x82\xa3ref\x01\xa3ids\xdd\xff\xff\xff\xff"};
    size_t lying_sizes[] = {4, 1, 15};
    s_send_raw (fake.broker, submit, lying, lying_sizes, 3);
    drover_packet_destroy (&submit);

    //  3: SUBMITTED with two ids for one task
    submit = s_expect (fake.broker, DROVER_SUBMIT);
    uint64_t ids[2] = {1, 2};
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = drover_packet_msg (submit)->ref;
    reply.ids = ids;
    reply.id_count = 2;
    s_send (fake.broker, submit, &reply);
    drover_packet_destroy (&submit);

    //  4: the wrong kind of reply for the ref
    submit = s_expect (fake.broker, DROVER_SUBMIT);
    drover_msg_init (&reply, DROVER_STATS_REPLY);
    reply.ref = drover_packet_msg (submit)->ref;
    s_send (fake.broker, submit, &reply);
    drover_packet_destroy (&submit);

    //  5: another protocol version, then (too late) nothing more: the
    //  client must not hang beyond its timeout... but we answer well
    submit = s_expect (fake.broker, DROVER_SUBMIT);
    const char *version[] = {"DRV\x02", &command, "\x80"};
    size_t version_sizes[] = {4, 1, 1};
    s_send_raw (fake.broker, submit, version, version_sizes, 3);
    drover_packet_destroy (&submit);

    //  6: an ERROR that says nothing failed (code 0)
    submit = s_expect (fake.broker, DROVER_SUBMIT);
    drover_wire_send_error (fake.broker, drover_packet_routing_id (submit),
                            drover_packet_msg (submit)->ref, 0, "all fine?");
    drover_packet_destroy (&submit);

    //  7: the sink: garbage, a RESULT with a missing payload frame, an
    //  unknown command, then the real result
    drover_packet_t *watch = s_expect (fake.sink, DROVER_WATCH);
    s_send_raw (fake.sink, watch, garbage, garbage_sizes, 2);
    const char result_command = DROVER_RESULT;
    const char *no_payload[] = {DROVER_SIGNATURE, &result_command,
                                "\x81\xa5tasks\x91\x83\xa2id\x05\xa7"
                                "attempt\x01\xa4"
                                "code\x00"};
    size_t no_payload_sizes[] = {4, 1, 28};
    s_send_raw (fake.sink, watch, no_payload, no_payload_sizes, 3);
    const char unknown = 0x7f;
    const char *strange[] = {DROVER_SIGNATURE, &unknown, "\x80"};
    size_t strange_sizes[] = {4, 1, 1};
    s_send_raw (fake.sink, watch, strange, strange_sizes, 3);
    s_send_result (&fake, watch, 5, "fine");
    drover_packet_destroy (&watch);

    s_fake_serve (&fake, &job, 10000);
    cr_assert_eq (job.rc[1], DROVER_EPROTO, "%s", job.reason[1]);
    cr_assert_eq (job.rc[2], DROVER_EPROTO, "%s", job.reason[2]);
    cr_assert_eq (job.rc[3], DROVER_EPROTO, "%s", job.reason[3]);
    cr_assert_eq (job.rc[4], DROVER_EPROTO, "%s", job.reason[4]);
    cr_assert_eq (job.rc[5], DROVER_EPROTO, "%s", job.reason[5]);
    cr_assert_eq (job.rc[6], DROVER_EPROTO, "%s", job.reason[6]);
    cr_assert_eq (job.rc[7], 0, "%s", job.reason[7]);
    cr_assert_eq (job.result[0]->payload_size, 4);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (broker_bye_starts_new_session, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_submit_one);
    s_handshake (&fake);
    //  The broker forgot us: BYE instead of an answer
    drover_packet_t *submit = s_expect (fake.broker, DROVER_SUBMIT);
    drover_msg_t bye;
    drover_msg_init (&bye, DROVER_BYE);
    bye.code = DROVER_ESTALE;
    bye.reason = "unknown session: send HELLO";
    s_send (fake.broker, submit, &bye);
    zframe_t *old_id = zframe_dup (drover_packet_routing_id (submit));
    drover_packet_destroy (&submit);
    //  The next request comes on a new socket, after HELLO
    drover_packet_t *hello = s_expect (fake.broker, DROVER_HELLO);
    cr_assert_not (zframe_eq (old_id, drover_packet_routing_id (hello)));
    zframe_destroy (&old_id);
    s_welcome (&fake, hello);
    drover_packet_destroy (&hello);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], DROVER_ESTALE);
    cr_assert_eq (job.rc[2], 0, "%s", job.reason[2]);
    cr_assert_eq (job.rc[3], 0, "%s", job.reason[3]);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_status_seven (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t ids[7] = {1, 2, 3, 4, 5, 6, 7};
    s_note (job, client, 1,
            drover_client_status (client, ids, 7, &job->statuses));
    drover_client_destroy (&client);
}

//  A WELCOME with another max_batch while STATUS replies are on their way
//  (a restarted or hostile broker) must not change how they are read.
static void
s_status_with_new_max_batch (uint32_t new_max_batch)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 3;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_status_seven);
    s_handshake (&fake);
    drover_packet_t *asks[3];
    for (size_t b = 0; b < 3; b++)
        asks[b] = s_expect (fake.broker, DROVER_STATUS);
    fake.max_batch = new_max_batch;
    s_welcome (&fake, asks[0]);
    for (size_t b = 0; b < 3; b++) {
        drover_msg_t *msg = drover_packet_msg (asks[b]);
        drover_task_t items[3];
        for (size_t i = 0; i < msg->id_count; i++)
            items[i] = (drover_task_t){.id = msg->ids[i],
                                       .state = DROVER_STATE_QUEUED,
                                       .attempt = (uint32_t)msg->ids[i]};
        drover_msg_t reply;
        drover_msg_init (&reply, DROVER_STATUS_REPLY);
        reply.ref = msg->ref;
        reply.tasks = items;
        reply.task_count = msg->id_count;
        s_send (fake.broker, asks[b], &reply);
        drover_packet_destroy (&asks[b]);
    }
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    for (size_t i = 0; i < 7; i++) {
        cr_assert_eq (job.statuses[i].id, i + 1);
        cr_assert_eq (job.statuses[i].state, DROVER_TASK_QUEUED);
        cr_assert_eq (job.statuses[i].attempt, i + 1);
    }
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (status_survives_a_smaller_max_batch, 20)
{
    s_status_with_new_max_batch (1);
}

CLIENT_TEST (status_survives_a_larger_max_batch, 20)
{
    s_status_with_new_max_batch (64);
}

//  The flood test's handshake between the client thread and the flood:
//  the client must not close its socket while the fake broker is half way
//  through sending a message (libzmq 4.3.4 aborts then: "Resource
//  temporarily unavailable (src/session_base.cpp:260)").
typedef struct {
    atomic_int flooded;  //  the backlog is queued
    atomic_int answered; //  the client's request returned
    atomic_int stopped;  //  the flood stopped
} s_flood_t;

static void
s_job_status_timed (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    //  Waits (without reading) until the broker has queued its flood
    s_flood_t *flood = (s_flood_t *)job->extra;
    int64_t deadline = zclock_mono () + 10000;
    zpoller_t *poller = zpoller_new (NULL);
    while (!atomic_load (&flood->flooded) && zclock_mono () < deadline)
        zpoller_wait (poller, 5);
    uint64_t id = 1;
    int64_t start = zclock_mono ();
    s_note (job, client, 1,
            drover_client_status (client, &id, 1, &job->statuses));
    job->elapsed_ms = zclock_mono () - start;
    atomic_store (&flood->answered, 1);
    while (!atomic_load (&flood->stopped) && zclock_mono () < deadline + 10000)
        zpoller_wait (poller, 5);
    zpoller_destroy (&poller);
    drover_client_destroy (&client);
}

//  A broker that answers nothing but never stops sending HEARTBEATs must
//  not hold a request past its timeout.
CLIENT_TEST (flood_does_not_hold_past_the_deadline, 60)
{
    fake_t fake;
    s_fake_init (&fake);
    zsock_set_sndhwm (fake.broker, 0); //  queue all of the flood
    s_flood_t flood = {0, 0, 0};
    job_t job = {.timeout_ms = 300, .extra = &flood};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_status_timed);
    drover_packet_t *hello = s_expect (fake.broker, DROVER_HELLO);
    s_welcome (&fake, hello);
    //  A backlog of HEARTBEATs first (a second's worth), then the flood
    //  goes on while the client waits for its answer
    drover_msg_t heartbeat;
    drover_msg_init (&heartbeat, DROVER_HEARTBEAT);
    int64_t backlog_until = zclock_mono () + 1000;
    for (size_t sent = 0; sent < 500000 && zclock_mono () < backlog_until;
         sent++)
        drover_wire_send (fake.broker, drover_packet_routing_id (hello),
                          &heartbeat, NULL);
    atomic_store (&flood.flooded, 1);
    drover_packet_t *ask = s_expect (fake.broker, DROVER_STATUS);
    //  About 100,000 HEARTBEATs a second, without a break: a flood, but
    //  one the client's receive queue (2,000,000) always holds; an
    //  unbounded one overran it, and libzmq 4.3.4 can abort then
    //  ("Resource temporarily unavailable (src/session_base.cpp:260)")
    int64_t deadline = zclock_mono () + 10000;
    zpoller_t *pace = zpoller_new (NULL);
    while (!atomic_load (&flood.answered) && zclock_mono () < deadline) {
        for (int i = 0; i < 100; i++)
            drover_wire_send (fake.broker, drover_packet_routing_id (ask),
                              &heartbeat, NULL);
        zpoller_wait (pace, 1);
    }
    zpoller_destroy (&pace);
    atomic_store (&flood.stopped, 1);
    deadline = zclock_mono () + 10000;
    pace = zpoller_new (NULL);
    while (!atomic_load (&job.done) && zclock_mono () < deadline)
        zpoller_wait (pace, 5); //  the client closes, with a deadline
    zpoller_destroy (&pace);
    drover_packet_destroy (&ask);
    drover_packet_destroy (&hello);
    cr_assert (atomic_load (&job.done), "the flood held the client");
    cr_assert_eq (job.rc[1], DROVER_ETIMEDOUT, "%s", job.reason[1]);
    cr_assert_lt (job.elapsed_ms, 1000, "held %" PRId64 " ms", job.elapsed_ms);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  --------------------------------------------------------------------------
//  Map

//  Makes inputs "in-0", "in-1"...; every tenth is "fail-N" when asked.
typedef struct {
    size_t count;    //  inputs to give
    size_t next;     //  next input
    bool failures;   //  make every tenth fail
    int later_every; //  say "none ready yet" every Nth call (0: never)
    size_t big_at;   //  give a big input at this index (+1; 0: never)
    size_t calls;    //  calls so far
    char text[64];   //  the current input
    char big[64];    //  the big input
} s_inputs_t;

static int
s_next_input (void *arg, drover_payload_t *input)
{
    s_inputs_t *self = (s_inputs_t *)arg;
    self->calls++;
    if (self->later_every && self->calls % (size_t)self->later_every == 0)
        return DROVER_ETIMEDOUT;
    if (self->next == self->count)
        return 0;
    if (self->big_at && self->next + 1 == self->big_at) {
        memset (self->big, 'B', sizeof self->big);
        input->data = self->big;
        input->size = sizeof self->big;
        self->next++;
        return 1;
    }
    snprintf (self->text, sizeof self->text, "%s-%zu",
              self->failures && self->next % 10 == 3 ? "fail" : "in",
              self->next);
    self->next++;
    input->data = self->text;
    input->size = strlen (self->text);
    return 1;
}

//  What a map job saw.
typedef struct {
    drover_map_options_t options; //  how to map
    s_inputs_t inputs;            //  what to map
    uint64_t *order;              //  indexes in the order they came
    size_t results;               //  results received
    size_t failed;                //  of which failures
    size_t wrong;                 //  results that do not fit their input
    size_t too_big;               //  DROVER_ETOOBIG results
    size_t in_flight_max;         //  most in flight seen
    int rc;                       //  drover_map_next's last code
} s_map_job_t;

static void
s_job_map (job_t *job)
{
    s_map_job_t *mapping = (s_map_job_t *)job->extra;
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    drover_map_t *map = drover_map_new (client, "echo", &mapping->options,
                                        s_next_input, &mapping->inputs);
    if (!map) {
        job->rc[1] = DROVER_ENOMEM;
        drover_client_destroy (&client);
        return;
    }
    while (true) {
        drover_result_t *result = NULL;
        int rc = drover_map_next (map, 10000, &result);
        mapping->rc = rc;
        if (drover_map_in_flight (map) > mapping->in_flight_max)
            mapping->in_flight_max = drover_map_in_flight (map);
        if (rc || !result)
            break;
        mapping->order[mapping->results++] = result->index;
        char expected[80];
        if (result->code == DROVER_ETOOBIG)
            mapping->too_big++;
        else if (result->code) {
            mapping->failed++;
            snprintf (expected, sizeof expected, "fail-%" PRIu64,
                      result->index);
            if (result->code != DROVER_EFAILED || result->id == 0
                || !result->reason
                || strcmp (result->reason, "failed on purpose"))
                mapping->wrong++;
        }
        else {
            snprintf (expected, sizeof expected, "R:in-%" PRIu64,
                      result->index);
            if (result->payload_size != strlen (expected)
                || memcmp (result->payload, expected, result->payload_size)
                || result->id == 0 || result->attempt != 1)
                mapping->wrong++;
        }
        drover_result_destroy (&result);
    }
    snprintf (job->reason[1], sizeof job->reason[1], "%s",
              drover_client_reason (client));
    drover_map_destroy (&map);
    drover_client_destroy (&client);
}

//  Runs a map of count inputs against the fake; returns what it saw.
static void
s_run_map (fake_t *fake, s_map_job_t *mapping, size_t count)
{
    mapping->inputs.count = count;
    mapping->order = (uint64_t *)calloc (count + 1, sizeof (uint64_t));
    job_t job = {.timeout_ms = 5000, .extra = mapping};
    strcpy (job.endpoint, fake->broker_ep);
    s_job_start (&job, s_job_map);
    s_fake_serve (fake, &job, 60000);
    cr_assert_eq (job.rc[0], 0, "%s", job.reason[0]);
    cr_assert_eq (mapping->rc, 0, "map stopped: %s", job.reason[1]);
    s_job_join (&job);
}

CLIENT_TEST (map_ordered_window, 90)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 16;
    fake.hold = 100; //  results come when the whole window is out
    s_map_job_t mapping = {.options = {.window = 100, .ordered = true},
                           .inputs = {.failures = true}};
    s_run_map (&fake, &mapping, 2500);
    cr_assert_eq (mapping.results, 2500);
    for (size_t i = 0; i < 2500; i++)
        cr_assert_eq (mapping.order[i], i, "result %zu came as %" PRIu64, i,
                      mapping.order[i]);
    cr_assert_eq (mapping.wrong, 0);
    cr_assert_eq (mapping.failed, 250);
    cr_assert_eq (fake.submitted, 2500);
    cr_assert_leq (fake.max_outstanding, 100, "%zu tasks outstanding",
                   fake.max_outstanding);
    cr_assert_geq (fake.max_outstanding, 25);
    cr_assert_leq (fake.largest_submit, 16);
    cr_assert_leq (mapping.in_flight_max, 100);
    free (mapping.order);
    s_fake_destroy (&fake);
}

//  An idle map starts with a small SUBMIT, so that the nodes get work
//  before the broker queued the whole window; then each SUBMIT carries at
//  most as many tasks as are in flight already (up to max_batch)
CLIENT_TEST (map_first_submits_are_small_then_double, 30)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 4096;
    fake.hold = 1000; //  results once the client waits
    s_map_job_t mapping = {.options = {.window = 1000}};
    s_run_map (&fake, &mapping, 200);
    cr_assert_eq (mapping.results, 200);
    cr_assert_eq (mapping.wrong, 0);
    cr_assert_eq (fake.submits, 4);
    size_t expected[] = {32, 32, 64, 72};
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq (fake.submit_sizes[i], expected[i],
                      "SUBMIT %zu carried %zu tasks, not %zu", i,
                      fake.submit_sizes[i], expected[i]);
    free (mapping.order);
    s_fake_destroy (&fake);
}

CLIENT_TEST (map_unordered_window, 90)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 32;
    fake.hold = 50;
    s_map_job_t mapping = {.options = {.window = 50},
                           .inputs = {.failures = true}};
    s_run_map (&fake, &mapping, 2000);
    cr_assert_eq (mapping.results, 2000);
    bool *seen = (bool *)calloc (2000, sizeof (bool));
    bool out_of_order = false;
    for (size_t i = 0; i < 2000; i++) {
        cr_assert_lt (mapping.order[i], 2000);
        cr_assert_not (seen[mapping.order[i]], "index %" PRIu64 " twice",
                       mapping.order[i]);
        seen[mapping.order[i]] = true;
        out_of_order |= mapping.order[i] != i;
    }
    free (seen);
    //  The fake sends newest first: results did come out of order
    cr_assert (out_of_order);
    cr_assert_eq (mapping.wrong, 0);
    cr_assert_eq (mapping.failed, 200);
    cr_assert_leq (fake.max_outstanding, 50, "%zu tasks outstanding",
                   fake.max_outstanding);
    free (mapping.order);
    s_fake_destroy (&fake);
}

CLIENT_TEST (map_backs_off_on_efull, 60)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 10;
    fake.efull = 5;
    s_map_job_t mapping = {.options = {.window = 30, .ordered = true}};
    s_run_map (&fake, &mapping, 100);
    cr_assert_eq (mapping.results, 100);
    cr_assert_eq (mapping.wrong, 0);
    cr_assert_eq (fake.efull, 0);
    cr_assert_eq (fake.submitted, 100);
    cr_assert_leq (fake.max_outstanding, 30);
    free (mapping.order);
    s_fake_destroy (&fake);
}

CLIENT_TEST (map_slow_input_and_big_input, 60)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_payload = 32;
    s_map_job_t mapping = {.options = {.window = 8, .ordered = true},
                           .inputs = {.later_every = 3, .big_at = 5}};
    s_run_map (&fake, &mapping, 40);
    cr_assert_eq (mapping.results, 40);
    for (size_t i = 0; i < 40; i++)
        cr_assert_eq (mapping.order[i], i);
    //  The big input failed here, without going to the broker
    cr_assert_eq (mapping.too_big, 1);
    cr_assert_eq (fake.submitted, 39);
    cr_assert_eq (mapping.wrong, 0);
    free (mapping.order);
    s_fake_destroy (&fake);
}

static void
s_job_map_cancel (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    s_inputs_t inputs = {.count = 1000};
    drover_map_options_t options = {.window = 20};
    drover_map_t *map =
        drover_map_new (client, "echo", &options, s_next_input, &inputs);
    drover_result_t *result = NULL;
    s_note (job, client, 1, drover_map_next (map, 300, &result));
    job->id_count = drover_map_in_flight (map);
    s_note (job, client, 2, drover_map_cancel (map, 3000));
    drover_map_destroy (&map);
    drover_client_destroy (&client);
}

CLIENT_TEST (map_cancel, 30)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.never = true;
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_map_cancel);
    s_fake_serve (&fake, &job, 10000);
    cr_assert_eq (job.rc[1], DROVER_ETIMEDOUT);
    cr_assert_eq (job.id_count, 20);
    cr_assert_eq (job.rc[2], 0, "%s", job.reason[2]);
    cr_assert_eq (fake.submitted, 20);
    cr_assert_eq (fake.cancelled, 20);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_map_two (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    s_inputs_t inputs = {.count = 2};
    drover_map_options_t options = {.window = 2, .ordered = true};
    drover_map_t *map =
        drover_map_new (client, "echo", &options, s_next_input, &inputs);
    int rc;
    drover_result_t *result = NULL;
    while ((rc = drover_map_next (map, 3000, &result)) == 0 && result)
        drover_result_destroy (&result);
    s_note (job, client, 1, rc);
    drover_map_destroy (&map);
    drover_client_destroy (&client);
}

//  A broker that gives one task id to two inputs: only one result can
//  come, so the map stops at once rather than wait for ever.
CLIENT_TEST (map_refuses_duplicate_ids, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_map_two);
    s_handshake (&fake);
    drover_packet_t *submit = s_expect (fake.broker, DROVER_SUBMIT);
    drover_msg_t *msg = drover_packet_msg (submit);
    cr_assert_eq (msg->task_count, 2);
    uint64_t ids[2] = {7, 7};
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = msg->ref;
    reply.ids = ids;
    reply.id_count = 2;
    s_send (fake.broker, submit, &reply);
    drover_packet_destroy (&submit);
    s_fake_serve (&fake, &job, 10000);
    cr_assert_eq (job.rc[1], DROVER_EPROTO, "%s", job.reason[1]);
    cr_assert (strstr (job.reason[1], "in use"), "%s", job.reason[1]);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

//  The broker restarts while a map has 5 tasks waiting for results and a
//  SUBMIT of 3 more unanswered: the map asks the broker after a silence,
//  learns of the restart from WELCOME, sends the lost SUBMIT again (its
//  token: 3 new tasks, never 6) and the 5 again under their ids with their
//  inputs (and the 3 too, under their new ids, when their SUBMITTED came
//  first: the broker deduplicates ids); a sink that repeats results does
//  not make any input's result come twice.
CLIENT_TEST (map_resubmits_after_broker_restart, 30)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.never = true;
    fake.max_batch = 16;
    fake.heartbeat_ms = 50;
    fake.liveness = 4;
    s_map_job_t mapping = {.options = {.window = 8, .ordered = true}};
    mapping.inputs.count = 12;
    mapping.order = (uint64_t *)calloc (13, sizeof (uint64_t));
    job_t job = {.timeout_ms = 5000, .extra = &mapping};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_map);
    FAKE_UNTIL (&fake, fake.submitted == 8 && fake.pending_count == 8);
    //  Three results free room in the window; the broker dies before it
    //  answers the SUBMIT that refills it
    fake.drop_submits = true;
    uint64_t first[3] = {1, 2, 3};
    s_fake_results (&fake, first, 3);
    FAKE_UNTIL (&fake, fake.submits == 2);
    fake.drop_submits = false;
    fake.instance = "fake-broker-2";
    fake.next_id = 1000;
    FAKE_UNTIL (&fake, fake.again >= 5 && fake.submitted == 11);
    cr_assert_geq (fake.hellos, 1);
    cr_assert_eq (fake.again_wrong, 0, "resubmitted with other inputs");
    size_t again = fake.again;
    cr_assert (again == 5 || again == 8, "%zu resubmitted", again);
    bool seen[9] = {false}, seen_new[3] = {false};
    for (size_t i = 0; i < again; i++) {
        uint64_t id = fake.again_ids[i];
        if (id >= 1000 && id <= 1002 && !seen_new[id - 1000])
            seen_new[id - 1000] = true;
        else {
            cr_assert (id >= 4 && id <= 8 && !seen[id],
                       "task %" PRIu64 " resubmitted", id);
            seen[id] = true;
        }
    }
    //  A result twice, then the sink sends every result it has, old ones
    //  again among them
    uint64_t twice[2] = {5, 1};
    s_fake_results (&fake, twice, 2);
    fake.never = false;
    s_fake_serve (&fake, &job, 10000);
    cr_assert_eq (job.rc[0], 0, "%s", job.reason[0]);
    cr_assert_eq (mapping.rc, 0, "map stopped: %s", job.reason[1]);
    cr_assert_eq (mapping.results, 12);
    for (size_t i = 0; i < 12; i++)
        cr_assert_eq (mapping.order[i], i);
    cr_assert_eq (mapping.wrong, 0, "results that do not fit their input");
    cr_assert_eq (fake.again, again, "nothing submitted again twice");
    cr_assert_eq (fake.submitted, 12, "no task created twice");
    s_job_join (&job);
    free (mapping.order);
    s_fake_destroy (&fake);
}

CLIENT_TEST (map_refuses_bad_handler, 10)
{
    drover_client_t *client = drover_client_new ();
    s_inputs_t inputs = {.count = 1};
    //  Not connected, and a bad name: no map
    cr_assert_null (
        drover_map_new (client, "echo", NULL, s_next_input, &inputs));
    cr_assert_null (
        drover_map_new (client, "bad name", NULL, s_next_input, &inputs));
    drover_client_destroy (&client);
}

//  --------------------------------------------------------------------------
//  The local cluster, with a fake drover executable

//  Writes a shell script that plays `drover`: creates the ipc socket
//  files it is told to listen on, then sleeps; a worker exits with
//  worker_status when it is not 0. Returns the script's path (static).
static const char *
s_fake_drover (int worker_status)
{
    static char path[128];
    static char dir[64];
    strcpy (dir, "/tmp/drover-test-XXXXXX");
    cr_assert_not_null (mkdtemp (dir));
    snprintf (path, sizeof path, "%s/drover", dir);
    FILE *file = fopen (path, "w");
    cr_assert_not_null (file);
    fprintf (file,
             "#!/bin/sh\n"
             "if [ \"$1\" = worker ] && [ %d -ne 0 ]; then exit %d; fi\n"
             "if [ \"$1\" = broker ]; then\n"
             "  for arg; do case $arg in ipc://*) : > \"${arg#ipc://}\";; "
             "esac; done\n"
             "fi\n"
             "exec sleep 60\n",
             worker_status, worker_status);
    fclose (file);
    chmod (path, 0755);
    return path;
}

static void
s_remove_fake_drover (const char *path)
{
    unlink (path);
    char dir[128];
    snprintf (dir, sizeof dir, "%s", path);
    *strrchr (dir, '/') = 0;
    rmdir (dir);
}

//  True once pid is gone (or a zombie nobody waits for), within 10 s.
static bool
s_gone (pid_t pid)
{
    int64_t deadline = zclock_mono () + 10000;
    while (zclock_mono () < deadline) {
        if (kill (pid, 0) == -1 && errno == ESRCH)
            return true;
        char path[64], stat[256] = "";
        snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *file = fopen (path, "r");
        if (file) {
            size_t got = fread (stat, 1, sizeof stat - 1, file);
            stat[got] = 0;
            fclose (file);
            char *close = strrchr (stat, ')');
            if (close && close[1] == ' ' && close[2] == 'Z')
                return true;
        }
        zpoller_t *poller = zpoller_new (NULL);
        zpoller_wait (poller, 10); //  a short pause between looks
        zpoller_destroy (&poller);
    }
    return false;
}

CLIENT_TEST (cluster_start_and_stop, 30)
{
    const char *exe = s_fake_drover (0);
    drover_cluster_t *cluster = drover_cluster_new ();
    const char *extra[] = {"--handler", "x=exec:cat"};
    drover_cluster_config_t config = {exe, 3, extra, 2, false, false};
    cr_assert_eq (drover_cluster_start (cluster, &config), 0, "%s",
                  drover_cluster_reason (cluster));
    cr_assert_eq (drover_cluster_wait_ready (cluster, 10000), 0, "%s",
                  drover_cluster_reason (cluster));
    const char *endpoint = drover_cluster_endpoint (cluster);
    cr_assert_eq (strncmp (endpoint, "ipc://", 6), 0);
    char dir[128];
    snprintf (dir, sizeof dir, "%s", drover_cluster_dir (cluster));
    struct stat info;
    cr_assert_eq (stat (dir, &info), 0);
    cr_assert_eq (info.st_mode & 0777, 0700, "the directory is private");
    pid_t broker = drover_cluster_pid (cluster, 0);
    pid_t worker = drover_cluster_pid (cluster, 1);
    cr_assert (broker > 0 && worker > 0);
    cr_assert_eq (drover_cluster_check (cluster), 0);
    //  SIGTERM stops them; under valgrind a SIGTERM that comes while it
    //  starts a process is lost, and then SIGKILL does it (ETIMEDOUT)
    int rc = drover_cluster_stop (cluster, 10000);
    cr_assert (rc == 0 || rc == DROVER_ETIMEDOUT, "%s",
               drover_cluster_reason (cluster));
    cr_assert (s_gone (broker));
    cr_assert (s_gone (worker));
    cr_assert_neq (stat (dir, &info), 0, "the directory is removed");
    cr_assert_eq (drover_cluster_stop (cluster, 2000), 0); //  idempotent
    drover_cluster_destroy (&cluster);
    s_remove_fake_drover (exe);
}

//  caller_runs_broker: only the worker is started; the cluster waits for
//  the caller's broker to listen, watches the worker alone, stops it
CLIENT_TEST (cluster_with_the_broker_in_the_caller, 30)
{
    const char *exe = s_fake_drover (0);
    drover_cluster_t *cluster = drover_cluster_new ();
    drover_cluster_config_t config = {
        .exe = exe, .jobs = 1, .caller_runs_broker = true};
    cr_assert_eq (drover_cluster_start (cluster, &config), 0, "%s",
                  drover_cluster_reason (cluster));
    cr_assert_eq (drover_cluster_pid (cluster, 0), 0, "no broker process");
    pid_t worker = drover_cluster_pid (cluster, 1);
    cr_assert_gt (worker, 0);
    cr_assert_eq (drover_cluster_check (cluster), 0, "%s",
                  drover_cluster_reason (cluster));
    //  Not ready until the caller's broker listens
    cr_assert_eq (drover_cluster_wait_ready (cluster, 50), DROVER_ETIMEDOUT);
    const char *sink_endpoint = drover_cluster_sink_endpoint (cluster);
    cr_assert_eq (strncmp (sink_endpoint, "ipc://", 6), 0);
    zsock_t *broker = zsock_new (ZMQ_ROUTER);
    zsock_t *sink = zsock_new (ZMQ_ROUTER);
    cr_assert_eq (zsock_bind (broker, "%s", drover_cluster_endpoint (cluster)),
                  0);
    cr_assert_eq (zsock_bind (sink, "%s", sink_endpoint), 0);
    cr_assert_eq (drover_cluster_wait_ready (cluster, 10000), 0, "%s",
                  drover_cluster_reason (cluster));
    int rc = drover_cluster_stop (cluster, 10000);
    cr_assert (rc == 0 || rc == DROVER_ETIMEDOUT, "%s",
               drover_cluster_reason (cluster));
    cr_assert (s_gone (worker));
    zsock_destroy (&sink);
    zsock_destroy (&broker);
    drover_cluster_destroy (&cluster);
    s_remove_fake_drover (exe);
}

CLIENT_TEST (cluster_sees_a_dead_worker, 30)
{
    const char *exe = s_fake_drover (3);
    drover_cluster_t *cluster = drover_cluster_new ();
    drover_cluster_config_t config = {exe, 1, NULL, 0, false, false};
    cr_assert_eq (drover_cluster_start (cluster, &config), 0);
    int rc = drover_cluster_wait_ready (cluster, 10000);
    if (rc == 0) //  the broker may listen before the worker exits
        while ((rc = drover_cluster_check (cluster)) == 0) {
            zpoller_t *poller = zpoller_new (NULL);
            zpoller_wait (poller, 10);
            zpoller_destroy (&poller);
        }
    cr_assert_eq (rc, DROVER_ECONNECT);
    cr_assert (strstr (drover_cluster_reason (cluster), "worker (pid"), "%s",
               drover_cluster_reason (cluster));
    cr_assert (strstr (drover_cluster_reason (cluster), "status 3"));
    drover_cluster_destroy (&cluster);
    s_remove_fake_drover (exe);
}

CLIENT_TEST (cluster_cannot_run_exe, 30)
{
    drover_cluster_t *cluster = drover_cluster_new ();
    drover_cluster_config_t config = {
        "/nonexistent/drover", 1, NULL, 0, false, false};
    cr_assert_eq (drover_cluster_start (cluster, &config), DROVER_ESYSTEM);
    cr_assert (strstr (drover_cluster_reason (cluster), "/nonexistent/drover"),
               "%s", drover_cluster_reason (cluster));
    cr_assert_null (drover_cluster_dir (cluster));
    drover_cluster_destroy (&cluster);
}

CLIENT_TEST (cluster_dies_with_its_client, 30)
{
    const char *exe = s_fake_drover (0);
    int report[2];
    cr_assert_eq (pipe (report), 0);
    pid_t client = fork ();
    cr_assert_neq (client, -1);
    if (client == 0) {
        //  The client: starts a cluster, tells its pids, waits for death
        drover_cluster_t *cluster = drover_cluster_new ();
        drover_cluster_config_t config = {exe, 1, NULL, 0, false, false};
        pid_t pids[2] = {0, 0};
        char dir[128] = "";
        if (drover_cluster_start (cluster, &config) == 0
            && drover_cluster_wait_ready (cluster, 10000) == 0) {
            pids[0] = drover_cluster_pid (cluster, 0);
            pids[1] = drover_cluster_pid (cluster, 1);
            snprintf (dir, sizeof dir, "%s", drover_cluster_dir (cluster));
        }
        ssize_t written = write (report[1], pids, sizeof pids);
        written = write (report[1], dir, sizeof dir);
        (void)written;
        pause ();
        _exit (0);
    }
    close (report[1]);
    pid_t pids[2];
    char dir[128];
    cr_assert_eq (read (report[0], pids, sizeof pids), (ssize_t)sizeof pids);
    cr_assert_eq (read (report[0], dir, sizeof dir), (ssize_t)sizeof dir);
    close (report[0]);
    cr_assert (pids[0] > 0 && pids[1] > 0);
    kill (client, SIGKILL);
    waitpid (client, NULL, 0);
    //  PR_SET_PDEATHSIG: nothing outlives the client
    cr_assert (s_gone (pids[0]), "the broker outlived its client");
    cr_assert (s_gone (pids[1]), "the worker outlived its client");
    //  The next cluster removes the directory the dead client left (or
    //  another test's cluster did already)
    struct stat info;
    drover_cluster_t *cluster = drover_cluster_new ();
    drover_cluster_config_t config = {exe, 1, NULL, 0, false, false};
    cr_assert_eq (drover_cluster_start (cluster, &config), 0);
    cr_assert_neq (stat (dir, &info), 0, "%s was not swept", dir);
    drover_cluster_destroy (&cluster);
    s_remove_fake_drover (exe);
}

//  --------------------------------------------------------------------------
//  Task options: time limits and retry policy (SPEC.md 5.6, 7.4, 7.5)

CLIENT_TEST (retry_on_parse, 10)
{
    uint64_t set = 0;
    const char *bad = NULL;
    cr_assert_eq (drover_retry_on_parse ("failed", &set, &bad), 0);
    cr_assert_eq (set, 1ull << 12);
    cr_assert_eq (drover_retry_on_parse (
                      "failed,crashed,timelimit,memlimit,handler", &set, &bad),
                  0);
    cr_assert_eq (set,
                  DROVER_RETRY_ON_DEFAULT | DROVER_RETRY_BIT (DROVER_EHANDLER));
    //  Full names, any case, spaces around names, aliases
    cr_assert_eq (
        drover_retry_on_parse (" DROVER_ELOST , Crashed,timeout ", &set, &bad),
        0);
    cr_assert_eq (set, DROVER_RETRY_BIT (DROVER_ELOST)
                           | DROVER_RETRY_BIT (DROVER_ECRASHED)
                           | DROVER_RETRY_BIT (DROVER_ETIMELIMIT));
    cr_assert_eq (drover_retry_on_parse ("default,lost", &set, &bad), 0);
    cr_assert_eq (set,
                  DROVER_RETRY_ON_DEFAULT | DROVER_RETRY_BIT (DROVER_ELOST));
    cr_assert_eq (drover_retry_on_parse ("drover_ememlimit", &set, &bad), 0);
    cr_assert_eq (set, 1ull << 22);
    //  Wrong names say where they are, and leave the set alone
    set = 77;
    const char *text = "failed,bogus,crashed";
    cr_assert_eq (drover_retry_on_parse (text, &set, &bad), DROVER_EINVAL);
    cr_assert_eq (bad, text + 7);
    cr_assert_eq (set, 77);
    text = "failed,,crashed";
    cr_assert_eq (drover_retry_on_parse (text, &set, &bad), DROVER_EINVAL);
    cr_assert_eq (bad, text + 7);
    text = "failed,";
    cr_assert_eq (drover_retry_on_parse (text, &set, &bad), DROVER_EINVAL);
    cr_assert_eq (bad, text + 7);
    cr_assert_eq (drover_retry_on_parse ("", &set, &bad), DROVER_EINVAL);
    cr_assert_eq (drover_retry_on_parse (NULL, &set, NULL), DROVER_EINVAL);
    cr_assert_eq (drover_retry_on_parse ("DROVER_E", &set, NULL),
                  DROVER_EINVAL);
    cr_assert_eq (drover_retry_on_parse ("DROVER_OK", &set, NULL),
                  DROVER_EINVAL);
    cr_assert_eq (drover_retry_on_parse ("failedx", &set, NULL), DROVER_EINVAL);
    cr_assert_eq (drover_retry_on_parse ("fail", &set, NULL), DROVER_EINVAL);
    cr_assert_eq (set, 77);
}

static const drover_task_options_t s_all_options = {
    .queue = "slow",
    .timeout_ms = 9000,
    .max_attempts = 4,
    .soft_timeout_ms = 7000,
    .retry_delay_ms = 250,
    .retry_max_delay_ms = 4000,
    .retry_on = DROVER_RETRY_BIT (DROVER_ECRASHED)
                | DROVER_RETRY_BIT (DROVER_EMEMLIMIT)};

static void
s_job_submit_options (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    s_note (job, client, 1,
            drover_client_submit (client, "echo", "x", 1, &s_all_options,
                                  &job->ids[0]));
    //  A set with a bit that stands for no code is refused here
    drover_task_options_t bad = s_all_options;
    bad.retry_on |= 1ull << 40;
    uint64_t id;
    s_note (job, client, 2,
            drover_client_submit (client, "echo", "x", 1, &bad, &id));
    bad.retry_on = 1; //  bit 0 is code 0: success
    s_note (job, client, 3,
            drover_client_submit (client, "echo", "x", 1, &bad, &id));
    drover_map_options_t map_options = {.task = bad};
    s_inputs_t inputs = {.count = 1};
    drover_map_t *map =
        drover_map_new (client, "echo", &map_options, s_next_input, &inputs);
    job->rc[4] = map ? 0 : DROVER_EINVAL;
    drover_map_destroy (&map);
    drover_client_destroy (&client);
}

CLIENT_TEST (submit_options_reach_submit, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_submit_options);
    s_handshake (&fake);
    drover_packet_t *submit = s_expect (fake.broker, DROVER_SUBMIT);
    drover_msg_t *msg = drover_packet_msg (submit);
    cr_assert_eq (msg->task_count, 1);
    const drover_task_t *task = &msg->tasks[0];
    cr_assert_str_eq (task->queue, "slow");
    cr_assert_eq (task->timeout_ms, 9000);
    cr_assert_eq (task->max_attempts, 4);
    cr_assert_eq (task->soft_timeout_ms, 7000);
    cr_assert_eq (task->retry_delay_ms, 250);
    cr_assert_eq (task->retry_max_delay_ms, 4000);
    cr_assert_eq (task->retry_on, (1ull << 13) | (1ull << 22));
    uint64_t id = 31;
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = msg->ref;
    reply.ids = &id;
    reply.id_count = 1;
    s_send (fake.broker, submit, &reply);
    drover_packet_destroy (&submit);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (job.ids[0], 31);
    cr_assert_eq (job.rc[2], DROVER_EINVAL);
    cr_assert (strstr (job.reason[2], "retry_on"), "%s", job.reason[2]);
    cr_assert_eq (job.rc[3], DROVER_EINVAL);
    cr_assert_eq (job.rc[4], DROVER_EINVAL, "a map with a bad retry_on");
    cr_assert_eq (fake.submits, 0, "refused options were sent");
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (map_options_reach_submit, 30)
{
    fake_t fake;
    s_fake_init (&fake);
    fake.max_batch = 8;
    fake.expect = &s_all_options;
    s_map_job_t mapping = {.options = {.task = s_all_options, .window = 20}};
    s_run_map (&fake, &mapping, 50);
    cr_assert_eq (mapping.results, 50);
    cr_assert_eq (fake.submitted, 50);
    cr_assert_eq (fake.options_wrong, 0, "%zu tasks without their options",
                  fake.options_wrong);
    free (mapping.order);
    s_fake_destroy (&fake);
}

//  --------------------------------------------------------------------------
//  Dead letters (SPEC.md 5.20, 5.21)

static void
s_job_dead (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t ids[3] = {7, 9, 11};
    s_note (job, client, 1, drover_client_dead (client, ids, 3, &job->dead[0]));
    s_note (job, client, 2,
            drover_client_dead (client, NULL, 0, &job->dead[1]));
    drover_client_destroy (&client);
}

CLIENT_TEST (dead_reply_grouped_by_task, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_dead);
    s_handshake (&fake);
    drover_packet_t *ask = s_expect (fake.broker, DROVER_DEAD);
    drover_msg_t *msg = drover_packet_msg (ask);
    cr_assert_eq (msg->id_count, 3);
    cr_assert_eq (msg->ids[0], 7);
    cr_assert_eq (msg->ids[2], 11);
    //  Task 9 with two attempts, task 7 with three (one given out of
    //  order); 11 is not a dead letter
    drover_task_t items[5] = {
        {.id = 9,
         .attempt = 1,
         .code = DROVER_EFAILED,
         .handler = "resize",
         .queue = "images",
         .max_attempts = 2,
         .node = "a:1",
         .reason = "bad header",
         .exit_status = 1,
         .elapsed_us = 1000,
         .cpu_us = 900,
         .max_rss_kb = 3000},
        {.id = 9,
         .attempt = 2,
         .code = DROVER_EMEMLIMIT,
         .node = "b:2",
         .reason = "over 100 MB",
         .signal = 9,
         .elapsed_us = 2000000,
         .cpu_us = 1500000,
         .max_rss_kb = 102400},
        {.id = 7, .attempt = 1, .code = DROVER_ECRASHED, .signal = 11},
        {.id = 7,
         .attempt = 3,
         .code = DROVER_ETIMELIMIT,
         .handler = "echo",
         .signal = 9},
        {.id = 7, .attempt = 2, .code = DROVER_ELOST, .node = "c:3"}};
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_DEAD_REPLY);
    reply.ref = msg->ref;
    reply.tasks = items;
    reply.task_count = 5;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    //  Without ids: the list asks for none; an empty list is fine
    ask = s_expect (fake.broker, DROVER_DEAD);
    msg = drover_packet_msg (ask);
    cr_assert_eq (msg->id_count, 0);
    reply.ref = msg->ref;
    reply.tasks = NULL;
    reply.task_count = 0;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    s_fake_serve (&fake, &job, 5000);

    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    drover_dead_list_t *list = job.dead[0];
    cr_assert_eq (list->task_count, 2);
    drover_dead_t *first = &list->tasks[0];
    cr_assert_eq (first->id, 9);
    cr_assert_str_eq (first->handler, "resize");
    cr_assert_str_eq (first->queue, "images");
    cr_assert_eq (first->max_attempts, 2);
    cr_assert_eq (first->attempt_count, 2);
    cr_assert_eq (first->code, DROVER_EMEMLIMIT, "the last attempt's code");
    cr_assert_str_eq (first->reason, "over 100 MB");
    const drover_attempt_t *attempt = &first->attempts[0];
    cr_assert_eq (attempt->attempt, 1);
    cr_assert_eq (attempt->code, DROVER_EFAILED);
    cr_assert_str_eq (attempt->node, "a:1");
    cr_assert_str_eq (attempt->reason, "bad header");
    cr_assert_eq (attempt->exit_status, 1);
    cr_assert_eq (attempt->elapsed_us, 1000);
    cr_assert_eq (attempt->cpu_us, 900);
    cr_assert_eq (attempt->max_rss_kb, 3000);
    attempt = &first->attempts[1];
    cr_assert_eq (attempt->attempt, 2);
    cr_assert_eq (attempt->signal, 9);
    cr_assert_eq (attempt->cpu_us, 1500000);
    cr_assert_eq (attempt->max_rss_kb, 102400);
    drover_dead_t *second = &list->tasks[1];
    cr_assert_eq (second->id, 7);
    cr_assert_str_eq (second->handler, "echo", "taken from any attempt");
    cr_assert_null (second->queue);
    cr_assert_eq (second->max_attempts, 0);
    cr_assert_eq (second->attempt_count, 3);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq (second->attempts[i].attempt, i + 1, "attempt order");
    cr_assert_eq (second->attempts[0].signal, 11);
    cr_assert_str_eq (second->attempts[1].node, "c:3");
    cr_assert_null (second->attempts[0].node);
    cr_assert_null (second->attempts[0].reason);
    cr_assert_eq (second->code, DROVER_ETIMELIMIT);
    cr_assert_eq (job.rc[2], 0, "%s", job.reason[2]);
    cr_assert_eq (job.dead[1]->task_count, 0);
    cr_assert_null (job.dead[1]->tasks);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_dead_one (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t id = 5;
    for (size_t i = 1; i <= 3; i++)
        s_note (job, client, i,
                drover_client_dead (client, &id, 1, &job->dead[i]));
    drover_client_destroy (&client);
}

CLIENT_TEST (dead_reply_hostile, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_dead_one);
    s_handshake (&fake);
    //  1: a task that was not asked for; 2: one attempt twice; 3: ERROR
    drover_task_t stranger[1] = {{.id = 6, .attempt = 1, .code = -12}};
    drover_task_t twice[2] = {{.id = 5, .attempt = 1, .code = -12},
                              {.id = 5, .attempt = 1, .code = -13}};
    drover_task_t *replies[2] = {stranger, twice};
    size_t counts[2] = {1, 2};
    for (size_t i = 0; i < 2; i++) {
        drover_packet_t *ask = s_expect (fake.broker, DROVER_DEAD);
        drover_msg_t reply;
        drover_msg_init (&reply, DROVER_DEAD_REPLY);
        reply.ref = drover_packet_msg (ask)->ref;
        reply.tasks = replies[i];
        reply.task_count = counts[i];
        s_send (fake.broker, ask, &reply);
        drover_packet_destroy (&ask);
    }
    drover_packet_t *ask = s_expect (fake.broker, DROVER_DEAD);
    drover_wire_send_error (fake.broker, drover_packet_routing_id (ask),
                            drover_packet_msg (ask)->ref, DROVER_ECOMMAND,
                            "DEAD is not a command this broker knows");
    drover_packet_destroy (&ask);
    s_fake_serve (&fake, &job, 5000);
    cr_assert_eq (job.rc[1], DROVER_EPROTO);
    cr_assert (strstr (job.reason[1], "not asked"), "%s", job.reason[1]);
    cr_assert_null (job.dead[1]);
    cr_assert_eq (job.rc[2], DROVER_EPROTO);
    cr_assert (strstr (job.reason[2], "twice"), "%s", job.reason[2]);
    cr_assert_null (job.dead[2]);
    cr_assert_eq (job.rc[3], DROVER_ECOMMAND);
    cr_assert (strstr (job.reason[3], "DEAD"), "%s", job.reason[3]);
    cr_assert_null (job.dead[3]);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

static void
s_job_retry (job_t *job)
{
    drover_client_t *client = s_job_connect (job);
    if (!client)
        return;
    uint64_t ids[2] = {7, 9};
    s_note (job, client, 1,
            drover_client_retry (client, ids, 2, false, &job->new_ids[0],
                                 &job->new_count[0]));
    s_note (job, client, 2,
            drover_client_retry (client, ids, 2, false, &job->new_ids[1],
                                 &job->new_count[1]));
    s_note (job, client, 3,
            drover_client_retry (client, NULL, 0, true, &job->new_ids[2],
                                 &job->new_count[2]));
    //  Refused here: ids and all, neither, an id twice
    uint64_t *none = NULL;
    size_t none_count = 0;
    int both = drover_client_retry (client, ids, 2, true, &none, &none_count);
    int neither =
        drover_client_retry (client, NULL, 0, false, &none, &none_count);
    s_note (job, client, 4, both == neither ? both : 0);
    uint64_t twice[2] = {7, 7};
    s_note (job, client, 5,
            drover_client_retry (client, twice, 2, false, &none, &none_count));
    //  A reply with the wrong number of ids
    s_note (job, client, 6,
            drover_client_retry (client, ids, 2, false, &job->new_ids[3],
                                 &job->new_count[3]));
    drover_client_destroy (&client);
}

CLIENT_TEST (retry_dead_letters, 20)
{
    fake_t fake;
    s_fake_init (&fake);
    job_t job = {.timeout_ms = 5000};
    strcpy (job.endpoint, fake.broker_ep);
    s_job_start (&job, s_job_retry);
    s_handshake (&fake);
    //  1: both retried
    drover_packet_t *ask = s_expect (fake.broker, DROVER_RETRY);
    drover_msg_t *msg = drover_packet_msg (ask);
    cr_assert_eq (msg->id_count, 2);
    cr_assert_eq (msg->ids[0], 7);
    cr_assert_eq (msg->ids[1], 9);
    cr_assert_not (msg->all);
    uint64_t fresh[2] = {107, 109};
    drover_msg_t reply;
    drover_msg_init (&reply, DROVER_SUBMITTED);
    reply.ref = msg->ref;
    reply.ids = fresh;
    reply.id_count = 2;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    //  2: not dead letters any more
    ask = s_expect (fake.broker, DROVER_RETRY);
    drover_wire_send_error (fake.broker, drover_packet_routing_id (ask),
                            drover_packet_msg (ask)->ref, DROVER_ENOTFOUND,
                            "task 7 is not a dead letter");
    drover_packet_destroy (&ask);
    //  3: all
    ask = s_expect (fake.broker, DROVER_RETRY);
    msg = drover_packet_msg (ask);
    cr_assert_eq (msg->id_count, 0);
    cr_assert (msg->all);
    uint64_t every[3] = {201, 202, 203};
    reply.ref = msg->ref;
    reply.ids = every;
    reply.id_count = 3;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    //  6: one id for two tasks
    ask = s_expect (fake.broker, DROVER_RETRY);
    reply.ref = drover_packet_msg (ask)->ref;
    reply.ids = fresh;
    reply.id_count = 1;
    s_send (fake.broker, ask, &reply);
    drover_packet_destroy (&ask);
    s_fake_serve (&fake, &job, 5000);

    cr_assert_eq (job.rc[1], 0, "%s", job.reason[1]);
    cr_assert_eq (job.new_count[0], 2);
    cr_assert_eq (job.new_ids[0][0], 107);
    cr_assert_eq (job.new_ids[0][1], 109);
    cr_assert_eq (job.rc[2], DROVER_ENOTFOUND);
    cr_assert (strstr (job.reason[2], "task 7"), "%s", job.reason[2]);
    cr_assert_null (job.new_ids[1]);
    cr_assert_eq (job.new_count[1], 0);
    cr_assert_eq (job.rc[3], 0, "%s", job.reason[3]);
    cr_assert_eq (job.new_count[2], 3);
    cr_assert_eq (job.new_ids[2][2], 203);
    cr_assert_eq (job.rc[4], DROVER_EINVAL);
    cr_assert_eq (job.rc[5], DROVER_EINVAL);
    cr_assert (strstr (job.reason[5], "twice"), "%s", job.reason[5]);
    cr_assert_eq (job.rc[6], DROVER_EPROTO);
    cr_assert_null (job.new_ids[3]);
    s_job_join (&job);
    s_fake_destroy (&fake);
}

CLIENT_TEST (json_dead, 10)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream (&text, &length);
    drover_attempt_t attempts[2] = {{.attempt = 1,
                                     .code = DROVER_EFAILED,
                                     .reason = "exit 3",
                                     .node = "a:1",
                                     .elapsed_us = 500000,
                                     .cpu_us = 125000,
                                     .exit_status = 3,
                                     .max_rss_kb = 2048},
                                    {.attempt = 2,
                                     .code = DROVER_EMEMLIMIT,
                                     .signal = 9,
                                     .max_rss_kb = 204800}};
    drover_dead_t dead = {.id = 12,
                          .handler = "resize",
                          .code = DROVER_EMEMLIMIT,
                          .reason = "over 200 MB",
                          .attempts = attempts,
                          .attempt_count = 2};
    cr_assert_eq (drover_json_write_dead (out, &dead), 0);
    fclose (out);
    //  An attempt without a reason gets the code's description
    char *expected = zsys_sprintf (
        "{\"id\":12,\"handler\":\"resize\",\"queue\":null,\"max_attempts\":"
        "null,\"status\":\"memlimit\",\"code\":\"DROVER_EMEMLIMIT\",\"error\":"
        "\"over 200 MB\",\"history\":["
        "{\"attempt\":1,\"node\":\"a:1\",\"status\":\"failed\",\"code\":"
        "\"DROVER_EFAILED\",\"error\":\"exit 3\",\"signal\":0,\"exit_status\":"
        "3,\"elapsed\":0.500000,\"cpu\":0.125000,\"max_rss_kb\":2048},"
        "{\"attempt\":2,\"node\":null,\"status\":\"memlimit\",\"code\":"
        "\"DROVER_EMEMLIMIT\",\"error\":\"%s\",\"signal\":9,\"exit_status\":0,"
        "\"elapsed\":0.000000,\"cpu\":0.000000,\"max_rss_kb\":204800}]}\n",
        drover_strerror (DROVER_EMEMLIMIT));
    cr_assert_str_eq (text, expected);
    zstr_free (&expected);
    free (text);
}
