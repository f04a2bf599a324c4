/*  test_sink.c - the sink actor with a data directory: results survive
    restarts, STORED waits for the journal, retention, compaction, a full
    disk and a damaged journal. Fake peers (a broker that accepts every
    claim, nodes, clients) speak DTP to it over real TCP sockets.
*/
#include "drover_journal.h"
#include "drover_sink.h"
#include "drover_wire.h"
#include "id_map.h"
#include "name_table.h"

#include "leak_check.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Directories

static int
s_remove_entry (const char *path, const struct stat *info, int flag,
                struct FTW *ftw)
{
    (void)info;
    (void)flag;
    (void)ftw;
    remove (path);
    return 0;
}

//  A fresh directory under /tmp; caller frees and s_rmtree()s it.
static char *
s_tmpdir (void)
{
    char *dir = strdup ("/tmp/drover-sink-XXXXXX");
    cr_assert_not_null (mkdtemp (dir));
    return dir;
}

static void
s_rmtree (char **dir_p)
{
    nftw (*dir_p, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free (*dir_p);
    *dir_p = NULL;
}

//  Octets in the journal segments of dir.
static uint64_t
s_segments_size (const char *dir)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle, "%s: %s", dir, strerror (errno));
    uint64_t size = 0;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t length = strlen (entry->d_name);
        if (length < 4 || strcmp (entry->d_name + length - 4, ".drj"))
            continue;
        char path[PATH_MAX];
        snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
        struct stat info;
        if (stat (path, &info) == 0)
            size += (uint64_t)info.st_size;
    }
    closedir (handle);
    return size;
}

//  True when some journal segment of dir holds the octets.
static bool
s_segments_hold (const char *dir, const void *data, size_t size)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle);
    bool found = false;
    struct dirent *entry;
    while (!found && (entry = readdir (handle))) {
        size_t length = strlen (entry->d_name);
        if (length < 4 || strcmp (entry->d_name + length - 4, ".drj"))
            continue;
        char path[PATH_MAX];
        snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
        zchunk_t *chunk = NULL;
        FILE *file = fopen (path, "rb");
        struct stat info;
        if (file && fstat (fileno (file), &info) == 0)
            chunk = zchunk_read (file, (size_t)info.st_size);
        if (file)
            fclose (file);
        if (chunk)
            found =
                memmem (zchunk_data (chunk), zchunk_size (chunk), data, size)
                != NULL;
        zchunk_destroy (&chunk);
    }
    closedir (handle);
    return found;
}

//  --------------------------------------------------------------------------
//  Payloads: "result-ID:" then filler, size octets in all

static size_t
s_payload (uint64_t id, size_t size, char *buffer)
{
    int head =
        snprintf (buffer, size + 1, "result-%llu:", (unsigned long long)id);
    for (size_t i = (size_t)head; i < size; i++)
        buffer[i] = (char)('a' + (id + i) % 26);
    return size;
}

//  --------------------------------------------------------------------------
//  A fake broker: WELCOMEs the sink, accepts every claim (verdict 0),
//  counts the STOREDs it gets, and sends the sink RESULTs on request.
//  Pipe: "ENDPOINT" -> endpoint; "RESULT" id -> sends a failure result
//  for id, answers "OK"; "COUNTS" -> claims granted, STOREDs (code 0) of
//  the RESULTs it sent, STOREDs (code 0) that confirm claims (uint64s).

static void
s_fake_broker_actor (zsock_t *pipe, void *args)
{
    (void)args;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (port > 0);
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    zframe_t *sink = NULL;
    uint64_t claims = 0, stored = 0, confirmed = 0;
    zhashx_t *sent = zhashx_new (); //  ids of the RESULTs it sent
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe) {
            zmsg_t *msg = zmsg_recv (pipe);
            char *command = msg ? zmsg_popstr (msg) : NULL;
            bool done = !command || streq (command, "$TERM");
            if (!done && streq (command, "ENDPOINT"))
                zstr_send (pipe, endpoint);
            else if (!done && streq (command, "COUNTS"))
                zsock_send (pipe, "888", claims, stored, confirmed);
            else if (!done && streq (command, "RESULT")) {
                char *id = zmsg_popstr (msg);
                drover_task_t item = {.id = strtoull (id, NULL, 10),
                                      .attempt = 1,
                                      .code = DROVER_EFAILED,
                                      .reason = "it failed for good"};
                drover_msg_t result;
                drover_msg_init (&result, DROVER_RESULT);
                result.tasks = &item;
                result.task_count = 1;
                assert (sink);
                drover_wire_send (router, sink, &result, NULL);
                zhashx_insert (sent, id, "");
                zstr_free (&id);
                zstr_send (pipe, "OK");
            }
            zstr_free (&command);
            zmsg_destroy (&msg);
            if (done)
                break;
            continue;
        }
        if (which != router)
            break;
        drover_packet_t *packet;
        int rc = drover_packet_recv (router, true, &packet);
        if (!packet)
            continue;
        drover_msg_t *msg = drover_packet_msg (packet);
        zframe_t *from = drover_packet_routing_id (packet);
        if (rc == 0 && msg->command == DROVER_HELLO) {
            zframe_destroy (&sink);
            sink = zframe_dup (from);
            drover_msg_t welcome;
            drover_msg_init (&welcome, DROVER_WELCOME);
            welcome.instance = "fake-broker";
            welcome.heartbeat_ms = 1000;
            welcome.liveness = 60; //  never expire a slow test's peers
            welcome.max_payload = 1 << 28;
            welcome.max_batch = DROVER_MAX_BATCH;
            drover_wire_send (router, from, &welcome, NULL);
        }
        else if (rc == 0 && msg->command == DROVER_DONE) {
            claims += msg->task_count;
            for (size_t i = 0; i < msg->task_count; i++)
                msg->tasks[i].code = 0;
            drover_wire_send (router, from, msg, NULL);
        }
        else if (rc == 0 && msg->command == DROVER_STORED)
            for (size_t i = 0; i < msg->task_count; i++) {
                char key[32];
                snprintf (key, sizeof key, "%llu",
                          (unsigned long long)msg->tasks[i].id);
                if (msg->tasks[i].code != 0)
                    continue;
                if (zhashx_lookup (sent, key))
                    stored++;
                else
                    confirmed++;
            }
        drover_packet_destroy (&packet);
    }
    zpoller_destroy (&poller);
    zhashx_destroy (&sent);
    zframe_destroy (&sink);
    zstr_free (&endpoint);
    zsock_destroy (&router);
}

static zactor_t *
s_fake_broker (char **endpoint)
{
    zactor_t *broker = zactor_new (s_fake_broker_actor, NULL);
    cr_assert_not_null (broker);
    zstr_send (broker, "ENDPOINT");
    *endpoint = zstr_recv (broker);
    return broker;
}

//  STOREDs with code 0 the broker got for the RESULTs it sent.
static uint64_t
s_broker_stored (zactor_t *broker)
{
    zstr_send (broker, "COUNTS");
    uint64_t claims = 0, stored = 0, confirmed = 0;
    zsock_recv (broker, "888", &claims, &stored, &confirmed);
    return stored;
}

//  STOREDs with code 0 the broker got that confirm claims.
static uint64_t
s_broker_confirmed (zactor_t *broker)
{
    zstr_send (broker, "COUNTS");
    uint64_t claims = 0, stored = 0, confirmed = 0;
    zsock_recv (broker, "888", &claims, &stored, &confirmed);
    return confirmed;
}

//  Waits up to 5 s for the broker to have count claims confirmed.
static uint64_t
s_wait_confirmed (zactor_t *broker, uint64_t count)
{
    int64_t deadline = zclock_mono () + 5000;
    while (s_broker_confirmed (broker) < count && zclock_mono () < deadline)
        zclock_sleep (10);
    return s_broker_confirmed (broker);
}

//  --------------------------------------------------------------------------
//  The sink

typedef struct {
    const char *broker;     //  fake broker endpoint
    const char *dir;        //  data directory
    uint64_t ttl_ms;        //  result_ttl_ms
    uint64_t segment_size;  //  0: the default
    uint32_t sync_interval; //  0: the default
} s_setup_t;

static zactor_t *
s_sink (const s_setup_t *setup, char **endpoint)
{
    drover_sink_config_t config = drover_sink_config_default ();
    config.endpoint = "tcp://127.0.0.1:*";
    config.broker = setup->broker;
    config.data_dir = setup->dir;
    config.result_ttl_ms = setup->ttl_ms;
    config.segment_size = setup->segment_size;
    if (setup->sync_interval)
        config.sync_interval_ms = setup->sync_interval;
    config.max_results = 64 << 20;
    char *error = NULL;
    zactor_t *sink = drover_sink_new (&config, &error);
    cr_assert_not_null (sink, "sink: %s", error ? error : "");
    *endpoint = drover_sink_endpoint (sink);
    return sink;
}

static drover_sink_stats_t
s_stats (zactor_t *sink)
{
    drover_sink_stats_t stats;
    cr_assert_eq (drover_sink_stats (sink, &stats), 0);
    return stats;
}

//  --------------------------------------------------------------------------
//  Nodes and clients

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

//  The next message that is not a HEARTBEAT within ms, or NULL.
static drover_packet_t *
s_next (zsock_t *sock, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    zpoller_t *poller = zpoller_new (sock, NULL);
    drover_packet_t *packet = NULL;
    while (!packet && zclock_mono () < deadline) {
        if (!zpoller_wait (poller, (int)(deadline - zclock_mono ())))
            break;
        int rc = drover_packet_recv (sock, false, &packet);
        cr_assert_not_null (packet);
        cr_assert_eq (rc, 0, "malformed: %s", drover_packet_error (packet));
        if (drover_packet_msg (packet)->command == DROVER_HEARTBEAT)
            drover_packet_destroy (&packet);
    }
    zpoller_destroy (&poller);
    return packet;
}

//  True when nothing but heartbeats arrive within ms.
static bool
s_silent (zsock_t *sock, int ms)
{
    drover_packet_t *packet = s_next (sock, ms);
    bool silent = packet == NULL;
    drover_packet_destroy (&packet);
    return silent;
}

//  A node sends one RESULT with the results of ids, attempt 1, payloads of
//  size octets.
static void
s_node_send (zsock_t *node, const uint64_t *ids, size_t count, size_t size)
{
    drover_task_t *items =
        (drover_task_t *)calloc (count, sizeof (drover_task_t));
    char *payloads = (char *)malloc (count * (size + 1));
    cr_assert (items && payloads);
    for (size_t i = 0; i < count; i++) {
        char *payload = payloads + i * (size + 1);
        items[i] = (drover_task_t){.id = ids[i], .attempt = 1, .node = "n1"};
        items[i].payload =
            (drover_bytes_t){payload, s_payload (ids[i], size, payload)};
    }
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = items;
    msg.task_count = count;
    s_send (node, &msg);
    free (payloads);
    free (items);
}

//  Gathers STORED items until want arrived or ms passed; returns how many.
static size_t
s_node_stored (zsock_t *node, uint64_t *ids, int *codes, size_t want, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    size_t got = 0;
    while (got < want && zclock_mono () < deadline) {
        drover_packet_t *packet =
            s_next (node, (int)(deadline - zclock_mono ()));
        if (!packet)
            break;
        drover_msg_t *msg = drover_packet_msg (packet);
        cr_assert_eq (msg->command, DROVER_STORED, "got %s",
                      drover_command_name (msg->command));
        for (size_t i = 0; i < msg->task_count; i++) {
            cr_assert (got < want, "more STORED items than results");
            ids[got] = msg->tasks[i].id;
            codes[got++] = msg->tasks[i].code;
        }
        drover_packet_destroy (&packet);
    }
    return got;
}

//  A node stores the results of ids (payloads of size octets) and checks
//  that each is STORED with code 0.
static void
s_store (const char *sink_endpoint, const uint64_t *ids, size_t count,
         size_t size)
{
    zsock_t *node = s_connect (sink_endpoint);
    s_node_send (node, ids, count, size);
    uint64_t *acked = (uint64_t *)calloc (count, sizeof (uint64_t));
    int *codes = (int *)calloc (count, sizeof (int));
    cr_assert_eq (s_node_stored (node, acked, codes, count, 5000), count,
                  "every result is STORED");
    for (size_t i = 0; i < count; i++)
        cr_assert_eq (codes[i], 0, "task %llu: STORED %s",
                      (unsigned long long)acked[i], drover_strcode (codes[i]));
    free (codes);
    free (acked);
    zsock_destroy (&node);
}

static void
s_watch (zsock_t *client, const uint64_t *ids, size_t count, bool release)
{
    drover_msg_t watch;
    drover_msg_init (&watch, DROVER_WATCH);
    watch.ids = (uint64_t *)ids;
    watch.id_count = count;
    watch.release = release;
    s_send (client, &watch);
}

//  Receives RESULTs until one for each of ids came, and checks each:
//  exactly once, and with the payload s_payload made (size octets; 0: do
//  not check). Then checks that no more come within quiet_ms.
static void
s_expect_results (zsock_t *client, const uint64_t *ids, size_t count,
                  size_t size, int quiet_ms)
{
    bool *seen = (bool *)calloc (count + 1, sizeof (bool));
    char *expected = (char *)malloc (size + 1);
    cr_assert (seen && expected);
    size_t got = 0;
    int64_t deadline = zclock_mono () + 5000;
    while (got < count) {
        drover_packet_t *packet =
            s_next (client, (int)(deadline - zclock_mono ()));
        cr_assert_not_null (packet, "%zu of %zu results came", got, count);
        drover_msg_t *msg = drover_packet_msg (packet);
        cr_assert_eq (msg->command, DROVER_RESULT, "got %s",
                      drover_command_name (msg->command));
        for (size_t i = 0; i < msg->task_count; i++) {
            drover_task_t *item = &msg->tasks[i];
            size_t index = 0;
            while (index < count && ids[index] != item->id)
                index++;
            cr_assert (index < count, "an unexpected result, task %llu",
                       (unsigned long long)item->id);
            cr_assert (!seen[index], "task %llu came twice",
                       (unsigned long long)item->id);
            seen[index] = true;
            got++;
            if (size) {
                s_payload (item->id, size, expected);
                cr_assert_eq (item->payload.size, size);
                cr_assert (memcmp (item->payload.data, expected, size) == 0,
                           "task %llu: wrong payload",
                           (unsigned long long)item->id);
            }
        }
        drover_packet_destroy (&packet);
    }
    if (quiet_ms)
        cr_assert (s_silent (client, quiet_ms), "no result comes twice");
    free (expected);
    free (seen);
}

//  Asks the sink the STATUS of one task; returns the reply (destroy it).
static drover_packet_t *
s_status (zsock_t *client, uint64_t id)
{
    drover_msg_t status;
    drover_msg_init (&status, DROVER_STATUS);
    status.ref = 9;
    status.ids = &id;
    status.id_count = 1;
    s_send (client, &status);
    drover_packet_t *packet = s_next (client, 5000);
    cr_assert_not_null (packet);
    drover_msg_t *reply = drover_packet_msg (packet);
    cr_assert_eq (reply->command, DROVER_STATUS_REPLY);
    cr_assert_eq (reply->ref, 9);
    cr_assert_eq (reply->task_count, 1);
    return packet;
}

//  The sink's STATUS of one task.
static uint32_t
s_state (zsock_t *client, uint64_t id)
{
    drover_packet_t *packet = s_status (client, id);
    uint32_t state = drover_packet_msg (packet)->tasks[0].state;
    drover_packet_destroy (&packet);
    return state;
}

//  Polls STATUS until the task has the state, for up to ms. Returns the
//  last state seen.
static uint32_t
s_wait_state (zsock_t *client, uint64_t id, uint32_t state, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    uint32_t seen = s_state (client, id);
    while (seen != state && zclock_mono () < deadline) {
        zclock_sleep (20);
        seen = s_state (client, id);
    }
    return seen;
}

//  --------------------------------------------------------------------------
//  Reading a journal the way the sink writes it

typedef struct {
    zhashx_t *results; //  id (decimal) -> payload (zchunk)
    size_t forgets;    //  forget items
    size_t other;      //  records of other kinds
} s_journal_view_t;

static int
s_view_record (const drover_frame_t *frames, size_t frame_count,
               uint64_t segment, void *arg)
{
    (void)segment;
    s_journal_view_t *view = (s_journal_view_t *)arg;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HEARTBEAT);
    if (drover_msg_decode (&msg, frames, frame_count) != 0) {
        view->other++;
        return 0;
    }
    char key[32];
    if (msg.command == DROVER_RESULT)
        for (size_t i = 0; i < msg.task_count; i++) {
            snprintf (key, sizeof key, "%llu",
                      (unsigned long long)msg.tasks[i].id);
            zchunk_t *chunk = zchunk_new (msg.tasks[i].payload.data,
                                          msg.tasks[i].payload.size);
            zhashx_update (view->results, key, chunk);
        }
    else if (msg.command == DROVER_STATUS_REPLY)
        for (size_t i = 0; i < msg.task_count; i++) {
            snprintf (key, sizeof key, "%llu",
                      (unsigned long long)msg.tasks[i].id);
            zhashx_delete (view->results, key);
            view->forgets++;
        }
    else
        view->other++;
    drover_msg_reset (&msg);
    return 0;
}

static void
s_chunk_destroy (void **item)
{
    zchunk_destroy ((zchunk_t **)item);
}

//  Replays dir's journal into view (results held at its end).
static void
s_journal_view (const char *dir, s_journal_view_t *view)
{
    memset (view, 0, sizeof *view);
    view->results = zhashx_new ();
    zhashx_set_destructor (view->results, s_chunk_destroy);
    drover_journal_config_t config = drover_journal_config_default ();
    config.dir = dir;
    char *error = NULL;
    drover_journal_t *journal = drover_journal_open (&config, &error);
    cr_assert_not_null (journal, "%s", error ? error : "");
    cr_assert_eq (drover_journal_replay (journal, s_view_record, view, NULL),
                  0);
    drover_journal_close (&journal);
}

//  --------------------------------------------------------------------------

TestSuite (sink, .timeout = 60);

LEAK_CHECKED_TEST (sink, results_survive_a_restart_exactly_once)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint, .dir = dir};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);

    //  20 node results, in batches, and one final failure from the broker
    uint64_t ids[21];
    for (size_t i = 0; i < 21; i++)
        ids[i] = 1000 + i;
    for (size_t i = 0; i < 20; i += 5)
        s_store (endpoint, ids + i, 5, 100 + i);
    zstr_sendx (broker, "RESULT", "1020", NULL);
    char *ok = zstr_recv (broker);
    zstr_free (&ok);
    int64_t deadline = zclock_mono () + 5000;
    while (s_broker_stored (broker) < 1 && zclock_mono () < deadline)
        zclock_sleep (10);
    cr_assert_eq (s_broker_stored (broker), 1, "the broker got STORED");
    cr_assert_eq (s_wait_confirmed (broker, 20), 20,
                  "the broker heard each claimed result was stored");
    cr_assert_eq (s_stats (sink).results, 21);

    zactor_destroy (&sink);
    zstr_free (&endpoint);
    sink = s_sink (&setup, &endpoint);
    drover_sink_stats_t stats = s_stats (sink);
    cr_assert_eq (stats.restored, 21);
    cr_assert_eq (stats.skipped, 0);

    zsock_t *client = s_connect (endpoint);
    s_watch (client, ids, 21, false);
    //  Payload sizes differ per batch: check those of each batch
    bool seen[21] = {false};
    char expected[200];
    for (size_t got = 0; got < 21;) {
        drover_packet_t *packet = s_next (client, 5000);
        cr_assert_not_null (packet, "%zu of 21 results came", got);
        drover_msg_t *msg = drover_packet_msg (packet);
        cr_assert_eq (msg->command, DROVER_RESULT);
        for (size_t i = 0; i < msg->task_count; i++) {
            drover_task_t *item = &msg->tasks[i];
            cr_assert (item->id >= 1000 && item->id <= 1020);
            size_t index = item->id - 1000;
            cr_assert (!seen[index], "task %llu came twice",
                       (unsigned long long)item->id);
            seen[index] = true;
            got++;
            if (index == 20) {
                cr_assert_eq (item->code, DROVER_EFAILED);
                cr_assert_str_eq (item->reason, "it failed for good");
                cr_assert_eq (item->payload.size, 0);
                continue;
            }
            size_t size = 100 + index / 5 * 5;
            s_payload (item->id, size, expected);
            cr_assert_eq (item->code, 0);
            cr_assert_str_eq (item->node, "n1");
            cr_assert_eq (item->payload.size, size);
            cr_assert (memcmp (item->payload.data, expected, size) == 0);
        }
        drover_packet_destroy (&packet);
    }
    cr_assert (s_silent (client, 200), "every result came once");

    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (sink, stored_comes_only_after_the_record_is_on_disk)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint, .dir = dir};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);

    //  Pipelined: 10 RESULTs of 10 before any STORED is read
    enum { COUNT = 100, SIZE = 300 };
    uint64_t ids[COUNT];
    for (size_t i = 0; i < COUNT; i++)
        ids[i] = 5000 + i;
    zsock_t *node = s_connect (endpoint);
    for (size_t i = 0; i < COUNT; i += 10)
        s_node_send (node, ids + i, 10, SIZE);
    uint64_t acked[COUNT];
    int codes[COUNT];
    char payload[SIZE + 1];
    size_t got = 0;
    while (got < COUNT) {
        size_t more =
            s_node_stored (node, acked + got, codes + got, COUNT - got, 5000);
        cr_assert (more > 0, "%zu of %d STORED", got, COUNT);
        //  Each result is in a segment file when its STORED arrives
        for (size_t i = got; i < got + more; i++) {
            cr_assert_eq (codes[i], 0);
            s_payload (acked[i], SIZE, payload);
            cr_assert (s_segments_hold (dir, payload, SIZE),
                       "task %llu STORED before its record was written",
                       (unsigned long long)acked[i]);
        }
        got += more;
    }
    cr_assert_eq (s_wait_confirmed (broker, COUNT), COUNT);
    zsock_destroy (&node);
    zactor_destroy (&sink);
    zstr_free (&endpoint);

    //  And a replay of the journal has every result that was STORED
    s_journal_view_t view;
    s_journal_view (dir, &view);
    cr_assert_eq (zhashx_size (view.results), COUNT);
    cr_assert_eq (view.other, 0);
    for (size_t i = 0; i < COUNT; i++) {
        char key[32];
        snprintf (key, sizeof key, "%llu", (unsigned long long)acked[i]);
        zchunk_t *chunk = (zchunk_t *)zhashx_lookup (view.results, key);
        cr_assert_not_null (chunk, "task %s STORED but not journaled", key);
        s_payload (acked[i], SIZE, payload);
        cr_assert_eq (zchunk_size (chunk), SIZE);
        cr_assert (memcmp (zchunk_data (chunk), payload, SIZE) == 0);
    }
    zhashx_destroy (&view.results);

    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (sink, released_results_stay_forgotten_after_a_restart)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint, .dir = dir};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);

    uint64_t released[10], kept[2] = {7001, 7002};
    for (size_t i = 0; i < 10; i++)
        released[i] = 7100 + i;
    s_store (endpoint, released, 10, 64);
    s_store (endpoint, kept, 2, 64);
    zsock_t *client = s_connect (endpoint);
    s_watch (client, released, 10, true);
    s_expect_results (client, released, 10, 64, 0);
    int64_t deadline = zclock_mono () + 5000;
    while (s_stats (sink).results > 2 && zclock_mono () < deadline)
        zclock_sleep (10);
    cr_assert_eq (s_stats (sink).results, 2, "released results forgotten");
    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);

    sink = s_sink (&setup, &endpoint);
    cr_assert_eq (s_stats (sink).restored, 2);
    client = s_connect (endpoint);
    s_watch (client, released, 10, false);
    cr_assert (s_silent (client, 300), "a released result came back");
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq (s_state (client, released[i]), DROVER_STATE_UNKNOWN);
    s_watch (client, kept, 2, false);
    s_expect_results (client, kept, 2, 64, 100);

    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (
    sink, a_delivered_result_expires_after_its_ttl_an_undelivered_one_not)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint, .dir = dir, .ttl_ms = 300};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);

    uint64_t delivered = 8001, undelivered = 8002;
    int64_t stored_at = zclock_mono ();
    s_store (endpoint, &delivered, 1, 32);
    s_store (endpoint, &undelivered, 1, 32);
    zsock_t *client = s_connect (endpoint);
    s_watch (client, &delivered, 1, false);
    s_expect_results (client, &delivered, 1, 32, 0);

    //  Gone once the ttl passed, and not much later
    cr_assert_eq (s_wait_state (client, delivered, DROVER_STATE_UNKNOWN, 3000),
                  DROVER_STATE_UNKNOWN, "the delivered result expired");
    int64_t took = zclock_mono () - stored_at;
    cr_assert (took >= 300, "expired after %lld ms, before its ttl",
               (long long)took);
    //  The undelivered one stays, well past its ttl
    zclock_sleep (400);
    cr_assert_eq (s_state (client, undelivered), DROVER_STATE_DONE);
    cr_assert_eq (s_stats (sink).expired, 1);

    //  Delivered now, it goes too
    s_watch (client, &undelivered, 1, false);
    s_expect_results (client, &undelivered, 1, 32, 0);
    cr_assert_eq (
        s_wait_state (client, undelivered, DROVER_STATE_UNKNOWN, 3000),
        DROVER_STATE_UNKNOWN, "expired once delivered");

    //  And neither comes back after a restart
    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    sink = s_sink (&setup, &endpoint);
    cr_assert_eq (s_stats (sink).restored, 0);

    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (sink, compaction_bounds_the_journal_and_keeps_an_old_result)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {
        .broker = broker_endpoint, .dir = dir, .segment_size = 8192};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);

    //  An old result nobody takes, then many that are taken and released
    uint64_t keeper = 9000;
    s_store (endpoint, &keeper, 1, 500);
    enum { ROUNDS = 40, BATCH = 10, SIZE = 2000 };
    zsock_t *client = s_connect (endpoint);
    uint64_t written = 0;
    for (size_t round = 0; round < ROUNDS; round++) {
        uint64_t ids[BATCH];
        for (size_t i = 0; i < BATCH; i++)
            ids[i] = 10000 + round * BATCH + i;
        s_store (endpoint, ids, BATCH, SIZE);
        s_watch (client, ids, BATCH, true);
        s_expect_results (client, ids, BATCH, SIZE, 0);
        written += BATCH * SIZE;
    }
    //  The journal shrinks to a few segments: far below what was written
    uint64_t bound = 64 * 1024;
    int64_t deadline = zclock_mono () + 5000;
    while (s_segments_size (dir) > bound && zclock_mono () < deadline)
        zclock_sleep (20);
    uint64_t size = s_segments_size (dir);
    cr_assert (size <= bound, "%llu octets on disk after %llu written",
               (unsigned long long)size, (unsigned long long)written);
    drover_sink_stats_t stats = s_stats (sink);
    cr_log_info ("compaction: %llu octets written, %llu on disk, %llu "
                 "records relocated",
                 (unsigned long long)written, (unsigned long long)size,
                 (unsigned long long)stats.relocated);
    cr_assert_eq (stats.results, 1);
    cr_assert_geq (stats.relocated, 1, "the old result was written again");
    cr_assert (stats.journal_octets <= bound);

    //  It survives compaction and a restart
    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    sink = s_sink (&setup, &endpoint);
    cr_assert_eq (s_stats (sink).restored, 1);
    client = s_connect (endpoint);
    uint64_t gone = 10000;
    s_watch (client, &gone, 1, false);
    s_watch (client, &keeper, 1, false);
    s_expect_results (client, &keeper, 1, 500, 200);

    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (sink, a_full_disk_delays_stored_and_loses_nothing)
{
    //  A small tmpfs of our own: a private mount namespace, before any
    //  thread starts (unshare refuses a multithreaded process)
    if (unshare (CLONE_NEWNS) != 0)
        cr_skip_test ("cannot unshare the mount namespace: %s",
                      strerror (errno));
    cr_assert_eq (mount ("none", "/", "none", MS_REC | MS_PRIVATE, NULL), 0,
                  "%s", strerror (errno));
    char *tmp = s_tmpdir ();
    cr_assert_eq (mount ("tmpfs", tmp, "tmpfs", 0, "size=512k"), 0, "%s",
                  strerror (errno));
    char *dir = zsys_sprintf ("%s/sink", tmp);
    char *filler = zsys_sprintf ("%s/filler", tmp);
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint, .dir = dir};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);
    uint64_t before = 11001, during = 11002;
    s_store (endpoint, &before, 1, 1000);

    //  Fill the disk
    int fd = open (filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert (fd >= 0);
    char block[4096];
    memset (block, 'x', sizeof block);
    while (write (fd, block, sizeof block) > 0)
        ;
    while (write (fd, block, 1) > 0)
        ;
    close (fd);

    //  The result is accepted but cannot be journaled: no STORED
    zsock_t *node = s_connect (endpoint);
    zsock_t *client = s_connect (endpoint);
    s_watch (client, &during, 1, false);
    s_node_send (node, &during, 1, 20000);
    cr_assert (s_silent (node, 1200), "STORED for a result not on disk");
    drover_sink_stats_t stats = s_stats (sink);
    cr_assert (stats.storage_failing);
    cr_assert_geq (stats.storage_failures, 1);
    cr_assert_eq (stats.unjournaled, 1);
    cr_assert_eq (s_broker_confirmed (broker), 1, "only the first confirmed");
    //  Sent again: no ESTALE either, and still nothing published
    s_node_send (node, &during, 1, 20000);
    cr_assert (s_silent (node, 800), "an answer to a result not on disk");
    cr_assert (s_silent (client, 10), "a result published before on disk");
    zsock_t *asker = s_connect (endpoint);
    cr_assert_eq (s_state (asker, during), DROVER_STATE_REPORTING);

    //  Room again: STORED, published, and kept
    cr_assert_eq (unlink (filler), 0);
    uint64_t acked;
    int code;
    cr_assert_eq (s_node_stored (node, &acked, &code, 1, 5000), 1,
                  "STORED once the disk has room");
    cr_assert_eq (acked, during);
    cr_assert_eq (code, 0);
    s_expect_results (client, &during, 1, 20000, 300);
    cr_assert (s_silent (node, 100), "one STORED only");
    cr_assert_eq (s_wait_confirmed (broker, 2), 2);
    stats = s_stats (sink);
    cr_assert (!stats.storage_failing);
    cr_assert_eq (stats.unjournaled, 0);

    zsock_destroy (&asker);
    zsock_destroy (&client);
    zsock_destroy (&node);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    sink = s_sink (&setup, &endpoint);
    cr_assert_eq (s_stats (sink).restored, 2);
    client = s_connect (endpoint);
    uint64_t both[2] = {before, during};
    s_watch (client, &both[0], 1, false);
    s_expect_results (client, &both[0], 1, 1000, 0);
    s_watch (client, &both[1], 1, false);
    s_expect_results (client, &both[1], 1, 20000, 100);

    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&filler);
    zstr_free (&dir);
    umount2 (tmp, MNT_DETACH);
    s_rmtree (&tmp);
}

//  Appends the RESULT record of one result, as the sink would.
static void
s_append_result (drover_journal_t *journal, uint64_t id, size_t size)
{
    char payload[256];
    drover_task_t item = {.id = id, .attempt = 1, .node = "n1"};
    item.payload = (drover_bytes_t){payload, s_payload (id, size, payload)};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = &item;
    msg.task_count = 1;
    cr_assert_eq (drover_journal_append_msg (journal, &msg), 0);
}

LEAK_CHECKED_TEST (sink, garbage_in_the_journal_is_counted_and_skipped)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    drover_journal_config_t config = drover_journal_config_default ();
    config.dir = dir;
    char *error = NULL;
    drover_journal_t *journal = drover_journal_open (&config, &error);
    cr_assert_not_null (journal, "%s", error ? error : "");
    cr_assert_eq (drover_journal_replay (journal, NULL, NULL, NULL), 0);
    s_append_result (journal, 1, 40);
    //  A record that is no message
    drover_frame_t garbage[1] = {{"not a message", 13}};
    cr_assert_eq (drover_journal_append (journal, garbage, 1), 0);
    //  A RESULT whose header is no msgpack map
    uint8_t command = DROVER_RESULT;
    drover_frame_t bogus[4] = {{DROVER_SIGNATURE, DROVER_SIGNATURE_SIZE},
                               {&command, 1},
                               {"\xc1\xc1", 2},
                               {"x", 1}};
    cr_assert_eq (drover_journal_append (journal, bogus, 4), 0);
    //  A message the sink never writes
    drover_msg_t heartbeat;
    drover_msg_init (&heartbeat, DROVER_HEARTBEAT);
    cr_assert_eq (drover_journal_append_msg (journal, &heartbeat), 0);
    //  A result whose record is damaged on disk (below), then a good one
    s_append_result (journal, 3, 40);
    s_append_result (journal, 2, 40);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    drover_journal_close (&journal);
    char payload[64];
    s_payload (3, 40, payload);
    DIR *handle = opendir (dir);
    struct dirent *entry;
    bool damaged = false;
    while ((entry = readdir (handle)))
        if (strstr (entry->d_name, ".drj")) {
            char *path = zsys_sprintf ("%s/%s", dir, entry->d_name);
            FILE *file = fopen (path, "r+b");
            struct stat info;
            cr_assert_eq (fstat (fileno (file), &info), 0);
            zchunk_t *chunk = zchunk_read (file, (size_t)info.st_size);
            char *at = (char *)memmem (zchunk_data (chunk), zchunk_size (chunk),
                                       payload, 40);
            cr_assert_not_null (at);
            fseek (file, (long)(at - (char *)zchunk_data (chunk)) + 20,
                   SEEK_SET);
            fputc ('#', file);
            fclose (file);
            zchunk_destroy (&chunk);
            zstr_free (&path);
            damaged = true;
        }
    closedir (handle);
    cr_assert (damaged);

    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint, .dir = dir};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);
    drover_sink_stats_t stats = s_stats (sink);
    cr_assert_eq (stats.restored, 2);
    cr_assert_eq (stats.skipped, 3, "the garbage, the bogus, the heartbeat");
    cr_assert_eq (stats.corrupt, 1, "the damaged record");

    zsock_t *client = s_connect (endpoint);
    uint64_t ids[3] = {1, 2, 3};
    s_watch (client, ids, 3, false);
    s_expect_results (client, ids, 2, 40, 300);
    //  And it keeps serving: a new result is stored and survives
    uint64_t fresh = 4;
    s_watch (client, &fresh, 1, false);
    s_store (endpoint, &fresh, 1, 40);
    s_expect_results (client, &fresh, 1, 40, 0);

    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (sink, a_journal_in_use_stops_the_sink_from_starting)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    drover_journal_config_t journal_config = drover_journal_config_default ();
    journal_config.dir = dir;
    char *error = NULL;
    drover_journal_t *journal = drover_journal_open (&journal_config, &error);
    cr_assert_not_null (journal);

    drover_sink_config_t config = drover_sink_config_default ();
    config.endpoint = "tcp://127.0.0.1:*";
    config.broker = "tcp://127.0.0.1:1";
    config.data_dir = dir;
    cr_assert_null (drover_sink_new (&config, &error));
    cr_assert_not_null (error);
    cr_assert (strstr (error, dir) && strstr (error, "another process"), "%s",
               error);
    free (error);

    drover_journal_close (&journal);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (sink, without_a_data_dir_results_live_in_memory_as_before)
{
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);
    uint64_t ids[3] = {12001, 12002, 12003};
    s_store (endpoint, ids, 3, 50);
    zsock_t *client = s_connect (endpoint);
    s_watch (client, ids, 3, true);
    s_expect_results (client, ids, 3, 50, 100);
    int64_t deadline = zclock_mono () + 5000;
    while (s_stats (sink).results > 0 && zclock_mono () < deadline)
        zclock_sleep (10);
    drover_sink_stats_t stats = s_stats (sink);
    cr_assert_eq (stats.results, 0, "released");
    cr_assert_eq (stats.journal_octets, 0);
    //  A second result for a task the sink holds is stale, though the
    //  (fake) broker accepts its claim
    uint64_t held = 12004;
    s_store (endpoint, &held, 1, 50);
    zsock_t *node = s_connect (endpoint);
    s_node_send (node, &held, 1, 50);
    uint64_t acked;
    int code;
    cr_assert_eq (s_node_stored (node, &acked, &code, 1, 5000), 1);
    cr_assert_eq (acked, held);
    cr_assert_eq (code, DROVER_ESTALE);
    zsock_destroy (&node);
    cr_assert_eq (s_stats (sink).stale, 1);
    //  The broker heard of each stored result, and of the task whose
    //  result the sink held already (it ends there too)
    cr_assert_eq (s_wait_confirmed (broker, 5), 5);

    zsock_destroy (&client);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
}

//  --------------------------------------------------------------------------
//  A broker the test plays itself: it decides each claim when the test
//  says, and keeps the sink's session alive while the test waits. Its
//  WELCOME makes a peer that is silent for 400 ms expire at the sink.

#define PLAYED_HEARTBEAT_MS 100
#define PLAYED_LIVENESS     4

typedef struct {
    zsock_t *router;  //  where the sink connects
    char *endpoint;   //  its endpoint
    zframe_t *sink;   //  the sink's routing id, once it said HELLO
    int64_t beat;     //  when it last sent the sink a HEARTBEAT
    size_t confirmed; //  STORED items with code 0 it got
} s_played_t;

static void
s_played_start (s_played_t *self)
{
    memset (self, 0, sizeof *self);
    self->router = zsock_new (ZMQ_ROUTER);
    cr_assert_not_null (self->router);
    int port = zsock_bind (self->router, "tcp://127.0.0.1:*");
    cr_assert (port > 0);
    self->endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
}

static void
s_played_stop (s_played_t *self)
{
    zframe_destroy (&self->sink);
    zstr_free (&self->endpoint);
    zsock_destroy (&self->router);
}

static void
s_played_send (s_played_t *self, drover_msg_t *msg)
{
    cr_assert_not_null (self->sink, "the sink never said HELLO");
    cr_assert_eq (drover_wire_send (self->router, self->sink, msg, NULL), 0);
}

//  The next message from the sink that is neither HELLO nor HEARTBEAT nor
//  STORED (those are answered or counted) within ms, or NULL. Meanwhile
//  the sink hears a HEARTBEAT every 50 ms.
static drover_packet_t *
s_played_next (s_played_t *self, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    zpoller_t *poller = zpoller_new (self->router, NULL);
    drover_packet_t *packet = NULL;
    while (!packet && zclock_mono () < deadline) {
        if (self->sink && zclock_mono () - self->beat >= 50) {
            drover_msg_t beat;
            drover_msg_init (&beat, DROVER_HEARTBEAT);
            s_played_send (self, &beat);
            self->beat = zclock_mono ();
        }
        int64_t wait = deadline - zclock_mono ();
        if (!zpoller_wait (poller, (int)(wait < 50 ? wait : 50)))
            continue;
        int rc = drover_packet_recv (self->router, true, &packet);
        cr_assert_not_null (packet);
        cr_assert_eq (rc, 0, "malformed: %s", drover_packet_error (packet));
        drover_msg_t *msg = drover_packet_msg (packet);
        if (msg->command == DROVER_HELLO) {
            zframe_destroy (&self->sink);
            self->sink = zframe_dup (drover_packet_routing_id (packet));
            drover_msg_t welcome;
            drover_msg_init (&welcome, DROVER_WELCOME);
            welcome.instance = "played-broker";
            welcome.heartbeat_ms = PLAYED_HEARTBEAT_MS;
            welcome.liveness = PLAYED_LIVENESS;
            welcome.max_payload = 1 << 28;
            welcome.max_batch = DROVER_MAX_BATCH;
            s_played_send (self, &welcome);
        }
        else if (msg->command == DROVER_STORED)
            for (size_t i = 0; i < msg->task_count; i++)
                self->confirmed += msg->tasks[i].code == 0;
        else if (msg->command != DROVER_HEARTBEAT)
            continue;
        drover_packet_destroy (&packet);
    }
    zpoller_destroy (&poller);
    return packet;
}

//  Keeps the session alive for ms; claims that come meanwhile (sent again
//  while undecided) are dropped.
static void
s_played_wait (s_played_t *self, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    while (zclock_mono () < deadline) {
        drover_packet_t *packet =
            s_played_next (self, (int)(deadline - zclock_mono ()));
        drover_packet_destroy (&packet);
    }
}

//  Waits for the claim of (id, attempt), dropping others.
static void
s_played_claim (s_played_t *self, uint64_t id, uint32_t attempt)
{
    int64_t deadline = zclock_mono () + 5000;
    while (zclock_mono () < deadline) {
        drover_packet_t *packet =
            s_played_next (self, (int)(deadline - zclock_mono ()));
        cr_assert_not_null (packet, "no claim of task %llu attempt %u",
                            (unsigned long long)id, attempt);
        drover_msg_t *msg = drover_packet_msg (packet);
        bool found = false;
        if (msg->command == DROVER_DONE)
            for (size_t i = 0; i < msg->task_count; i++)
                found |=
                    msg->tasks[i].id == id && msg->tasks[i].attempt == attempt;
        drover_packet_destroy (&packet);
        if (found)
            return;
    }
    cr_assert_fail ("no claim of task %llu attempt %u", (unsigned long long)id,
                    attempt);
}

//  The verdict on the claim of (id, attempt).
static void
s_played_verdict (s_played_t *self, uint64_t id, uint32_t attempt, int code)
{
    drover_task_t item = {.id = id, .attempt = attempt, .code = code};
    drover_msg_t done;
    drover_msg_init (&done, DROVER_DONE);
    done.tasks = &item;
    done.task_count = 1;
    s_played_send (self, &done);
}

//  Waits up to 5 s for count STORED items with code 0 in all.
static size_t
s_played_confirmed (s_played_t *self, size_t count)
{
    int64_t deadline = zclock_mono () + 5000;
    while (self->confirmed < count && zclock_mono () < deadline) {
        drover_packet_t *packet = s_played_next (self, 20);
        drover_packet_destroy (&packet);
    }
    return self->confirmed;
}

//  A sink on the played broker, once its session is up.
static zactor_t *
s_played_sink (s_played_t *broker, char **endpoint)
{
    s_setup_t setup = {.broker = broker->endpoint};
    zactor_t *sink = s_sink (&setup, endpoint);
    int64_t deadline = zclock_mono () + 5000;
    while (!broker->sink && zclock_mono () < deadline)
        s_played_wait (broker, 20);
    cr_assert_not_null (broker->sink, "the sink never said HELLO");
    s_played_wait (broker, 50);
    return sink;
}

//  A node sends the result of one attempt, run on the node named name.
static void
s_node_send_one (zsock_t *node, uint64_t id, uint32_t attempt, const char *name,
                 size_t size)
{
    char payload[256];
    cr_assert (size < sizeof payload);
    drover_task_t item = {.id = id, .attempt = attempt, .node = name};
    item.payload = (drover_bytes_t){payload, s_payload (id, size, payload)};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = &item;
    msg.task_count = 1;
    s_send (node, &msg);
}

//  Expects exactly one STORED item, for id with code, within ms.
static void
s_expect_stored (zsock_t *node, uint64_t id, int code, int ms)
{
    uint64_t acked;
    int acked_code;
    cr_assert_eq (s_node_stored (node, &acked, &acked_code, 1, ms), 1,
                  "no STORED for task %llu", (unsigned long long)id);
    cr_assert_eq (acked, id);
    cr_assert_eq (acked_code, code, "task %llu: STORED %s, not %s",
                  (unsigned long long)id, drover_strcode (acked_code),
                  drover_strcode (code));
}

//  The node name the sink's STATUS gives for a task.
static char *
s_node_of (zsock_t *client, uint64_t id)
{
    drover_packet_t *packet = s_status (client, id);
    const char *node = drover_packet_msg (packet)->tasks[0].node;
    char *copy = node ? strdup (node) : NULL;
    drover_packet_destroy (&packet);
    return copy;
}

LEAK_CHECKED_TEST (sink,
                   a_node_silent_past_its_expiry_hears_stored_for_its_claim)
{
    s_played_t broker;
    s_played_start (&broker);
    char *endpoint;
    zactor_t *sink = s_played_sink (&broker, &endpoint);

    zsock_t *node = s_connect (endpoint);
    uint64_t id = 13001;
    s_node_send_one (node, id, 1, "n1", 40);
    s_played_claim (&broker, id, 1);
    //  The node says nothing for three times its expiry; the claim waits
    s_played_wait (&broker, 3 * PLAYED_HEARTBEAT_MS * PLAYED_LIVENESS);
    s_played_verdict (&broker, id, 1, 0);
    s_expect_stored (node, id, 0, 2000);
    cr_assert_eq (s_played_confirmed (&broker, 1), 1);
    cr_assert (s_silent (node, 100), "one STORED only");

    zsock_destroy (&node);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    s_played_stop (&broker);
}

LEAK_CHECKED_TEST (sink,
                   a_result_sent_again_while_claimed_answers_the_newest_node)
{
    s_played_t broker;
    s_played_start (&broker);
    char *endpoint;
    zactor_t *sink = s_played_sink (&broker, &endpoint);

    zsock_t *first = s_connect (endpoint);
    zsock_t *second = s_connect (endpoint);
    uint64_t id = 13101;
    s_node_send_one (first, id, 1, "n1", 40);
    s_played_claim (&broker, id, 1);
    s_node_send_one (second, id, 1, "n2", 40);
    //  A STATUS behind it on the same socket: the sink has read it
    cr_assert_eq (s_state (second, id), DROVER_STATE_UNKNOWN);
    s_played_verdict (&broker, id, 1, 0);
    s_expect_stored (second, id, 0, 2000);
    cr_assert (s_silent (first, 200),
               "STORED to a node that was not the newest");
    cr_assert_eq (s_played_confirmed (&broker, 1), 1);
    char *node = s_node_of (second, id);
    cr_assert_str_eq (node, "n1", "the result kept is the first one");
    free (node);
    drover_sink_stats_t stats = s_stats (sink);
    cr_assert_eq (stats.stored, 1);
    cr_assert_eq (stats.stale, 0);

    zsock_destroy (&second);
    zsock_destroy (&first);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    s_played_stop (&broker);
}

LEAK_CHECKED_TEST (sink, claims_of_two_attempts_of_a_task_are_decided_apart)
{
    s_played_t broker;
    s_played_start (&broker);
    char *endpoint;
    zactor_t *sink = s_played_sink (&broker, &endpoint);

    //  Two tasks, each with a late result of attempt 1 (node a) and one of
    //  attempt 2 (node b), both held at once
    zsock_t *a = s_connect (endpoint);
    zsock_t *b = s_connect (endpoint);
    uint64_t ids[2] = {13201, 13202};
    for (size_t i = 0; i < 2; i++) {
        s_node_send_one (a, ids[i], 1, "a", 40);
        s_played_claim (&broker, ids[i], 1);
        s_node_send_one (b, ids[i], 2, "b", 40);
        s_played_claim (&broker, ids[i], 2);
    }
    //  The first task: attempt 1 refused, then attempt 2 granted
    s_played_verdict (&broker, ids[0], 1, DROVER_ESTALE);
    s_expect_stored (a, ids[0], DROVER_ESTALE, 2000);
    s_played_verdict (&broker, ids[0], 2, 0);
    s_expect_stored (b, ids[0], 0, 2000);
    //  The second: attempt 2 granted, then attempt 1 granted too (the
    //  broker granted it before): the task has its result, 1 is stale
    s_played_verdict (&broker, ids[1], 2, 0);
    s_expect_stored (b, ids[1], 0, 2000);
    s_played_verdict (&broker, ids[1], 1, 0);
    s_expect_stored (a, ids[1], DROVER_ESTALE, 2000);
    //  The broker hears of both stored results, and of the stale grant
    cr_assert_eq (s_played_confirmed (&broker, 3), 3);
    //  Verdicts for claims it no longer holds are ignored
    s_played_verdict (&broker, ids[0], 1, 0);
    s_played_verdict (&broker, ids[1], 2, 0);
    cr_assert (s_silent (a, 200) && s_silent (b, 10),
               "a verdict answered twice");

    drover_sink_stats_t stats = s_stats (sink);
    cr_assert_eq (stats.results, 2);
    cr_assert_eq (stats.stored, 2);
    cr_assert_eq (stats.stale, 2);
    zsock_t *client = s_connect (endpoint);
    for (size_t i = 0; i < 2; i++) {
        char *node = s_node_of (client, ids[i]);
        cr_assert_str_eq (node, "b", "task %llu ran on %s",
                          (unsigned long long)ids[i], node);
        free (node);
    }

    zsock_destroy (&client);
    zsock_destroy (&b);
    zsock_destroy (&a);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    s_played_stop (&broker);
}

LEAK_CHECKED_TEST (sink,
                   a_silent_client_loses_its_watches_a_live_one_keeps_them)
{
    s_played_t broker;
    s_played_start (&broker);
    char *endpoint;
    zactor_t *sink = s_played_sink (&broker, &endpoint);

    zsock_t *silent = s_connect (endpoint);
    zsock_t *live = s_connect (endpoint);
    uint64_t ids[2] = {13301, 13302};
    s_watch (silent, &ids[0], 1, false);
    s_watch (live, &ids[1], 1, false);
    drover_msg_t beat;
    drover_msg_init (&beat, DROVER_HEARTBEAT);
    for (int i = 0; i < 12; i++) {
        s_played_wait (&broker, PLAYED_HEARTBEAT_MS);
        s_send (live, &beat);
    }
    //  Its watches gone, the silent client is told to WATCH again
    s_send (silent, &beat);
    drover_packet_t *packet = s_next (silent, 2000);
    cr_assert_not_null (packet);
    cr_assert_eq (drover_packet_msg (packet)->command, DROVER_BYE);
    cr_assert_eq (drover_packet_msg (packet)->code, DROVER_ESTALE);
    drover_packet_destroy (&packet);

    zsock_t *node = s_connect (endpoint);
    s_node_send (node, ids, 2, 40);
    s_played_claim (&broker, ids[1], 1);
    s_played_verdict (&broker, ids[0], 1, 0);
    s_played_verdict (&broker, ids[1], 1, 0);
    s_expect_results (live, &ids[1], 1, 40, 0);
    cr_assert (s_silent (silent, 200), "a result for forgotten watches");
    cr_assert_eq (s_played_confirmed (&broker, 2), 2);

    zsock_destroy (&node);
    zsock_destroy (&live);
    zsock_destroy (&silent);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    s_played_stop (&broker);
}

//  Checks the node name STATUS gives for each of count tasks.
static void
s_expect_nodes (const char *endpoint, const uint64_t *ids,
                const char *const *names, size_t count)
{
    zsock_t *client = s_connect (endpoint);
    for (size_t i = 0; i < count; i++) {
        char *node = s_node_of (client, ids[i]);
        if (names[i])
            cr_assert_str_eq (node, names[i], "task %llu ran on %s",
                              (unsigned long long)ids[i], node);
        else
            cr_assert_null (node);
        free (node);
    }
    zsock_destroy (&client);
}

LEAK_CHECKED_TEST (sink,
                   each_result_keeps_the_name_of_its_node_across_a_restart)
{
    char *tmp = s_tmpdir ();
    char *dir = zsys_sprintf ("%s/sink", tmp);
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint, .dir = dir};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);

    //  One node renames itself, another shares a name; one result has none
    const char *names[6] = {"alpha", "alpha", "beta", "alpha", NULL, "gamma"};
    uint64_t ids[6] = {13401, 13402, 13403, 13404, 13405, 13406};
    zsock_t *one = s_connect (endpoint);
    zsock_t *other = s_connect (endpoint);
    for (size_t i = 0; i < 6; i++) {
        zsock_t *node = i == 3 || i == 5 ? other : one;
        s_node_send_one (node, ids[i], 1, names[i], 40);
        s_expect_stored (node, ids[i], 0, 5000);
    }
    s_expect_nodes (endpoint, ids, names, 6);
    zactor_destroy (&sink);
    zstr_free (&endpoint);

    sink = s_sink (&setup, &endpoint);
    cr_assert_eq (s_stats (sink).restored, 6);
    s_expect_nodes (endpoint, ids, names, 6);
    //  Those released go; the others keep their names
    zsock_t *client = s_connect (endpoint);
    s_watch (client, ids, 3, true);
    s_expect_results (client, ids, 3, 40, 0);
    zsock_destroy (&client);
    const char *gone[3] = {NULL, NULL, NULL};
    s_expect_nodes (endpoint, ids, gone, 3);
    s_expect_nodes (endpoint, ids + 3, names + 3, 3);

    zsock_destroy (&other);
    zsock_destroy (&one);
    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
    zstr_free (&dir);
    s_rmtree (&tmp);
}

LEAK_CHECKED_TEST (sink, nodes_whose_routing_ids_share_a_prefix_hear_their_own)
{
    char *broker_endpoint;
    zactor_t *broker = s_fake_broker (&broker_endpoint);
    s_setup_t setup = {.broker = broker_endpoint};
    char *endpoint;
    zactor_t *sink = s_sink (&setup, &endpoint);

    const char *identities[4] = {"node-1", "node-12", "node-2", "Node-1"};
    zsock_t *nodes[4];
    for (size_t i = 0; i < 4; i++) {
        nodes[i] = zsock_new (ZMQ_DEALER);
        cr_assert_not_null (nodes[i]);
        zsock_set_identity (nodes[i], identities[i]);
        zsock_set_rcvtimeo (nodes[i], 5000);
        cr_assert_eq (zsock_connect (nodes[i], "%s", endpoint), 0);
    }
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < 4; i++)
            s_node_send_one (nodes[i], 13500 + 10 * round + i, 1, "n", 40);
        for (size_t i = 0; i < 4; i++)
            s_expect_stored (nodes[i], 13500 + 10 * round + i, 0, 5000);
    }
    for (size_t i = 0; i < 4; i++) {
        cr_assert (s_silent (nodes[i], i == 0 ? 200 : 10), "a STORED too many");
        zsock_destroy (&nodes[i]);
    }

    zactor_destroy (&sink);
    zstr_free (&endpoint);
    zactor_destroy (&broker);
    zstr_free (&broker_endpoint);
}

//  --------------------------------------------------------------------------
//  The sink's tables (id_map is proto's: the node and the client use it too)

LEAK_CHECKED_TEST (sink, id_map_agrees_with_an_array_as_it_grows_and_shrinks)
{
    enum { IDS = 4096, STEPS = 200000 };
    //  The model: the value of each id (1 to IDS), or NULL
    void **model = (void **)calloc (IDS + 1, sizeof (void *));
    char *values = (char *)malloc (STEPS + 1);
    cr_assert (model && values);
    id_map_t *map = id_map_new ();
    size_t size = 0;
    unsigned seed = 7;
    for (size_t step = 0; step < STEPS; step++) {
        //  Keys with high bits too: they must be hashed
        uint64_t id = 1 + (uint64_t)rand_r (&seed) % IDS;
        uint64_t key = id << 40 | id;
        //  A removal phase in the middle: the map empties and shrinks
        bool draining = step > STEPS / 2 && step < STEPS / 2 + STEPS / 8;
        int op = draining ? 1 : rand_r (&seed) % 4;
        void *value = values + step;
        if (op == 0) {
            cr_assert_eq (id_map_set (map, key, value), model[id]);
            size += model[id] == NULL;
            model[id] = value;
        }
        else if (op == 3) {
            cr_assert_eq (id_map_try_set (map, key, value), 0);
            size += model[id] == NULL;
            model[id] = value;
        }
        else if (op == 1) {
            cr_assert_eq (id_map_remove (map, key), model[id]);
            size -= model[id] != NULL;
            model[id] = NULL;
        }
        else
            cr_assert_eq (id_map_lookup (map, key), model[id]);
        if (step % 10007 == 0 || step == STEPS / 2 + STEPS / 8) {
            cr_assert_eq (id_map_size (map), size);
            //  The ids copied out are those of the model
            uint64_t *ids = (uint64_t *)calloc (size + 1, sizeof (uint64_t));
            cr_assert (ids);
            cr_assert_eq (id_map_keys (map, ids, size + 1), size);
            for (size_t k = 0; k < size; k++)
                cr_assert (model[ids[k] & ((1ULL << 40) - 1)], "id %llx",
                           (unsigned long long)ids[k]);
            if (size > 1)
                cr_assert_eq (id_map_keys (map, ids, 1), 1);
            free (ids);
            size_t seen = 0;
            uint64_t at;
            for (void *found = id_map_first (map, &at); found;
                 found = id_map_next (map, &at)) {
                uint64_t which = at & ((1ULL << 40) - 1);
                cr_assert (which >= 1 && which <= IDS
                           && at == (which << 40 | which));
                cr_assert_eq (found, model[which], "id %llu",
                              (unsigned long long)which);
                seen++;
            }
            cr_assert_eq (seen, size);
        }
    }
    //  Ids a power of two apart, far more than fit at first
    for (uint64_t i = 1; i <= 1000; i++)
        cr_assert_null (id_map_set (map, i << 32, values + i));
    for (uint64_t i = 1; i <= 1000; i++)
        cr_assert_eq (id_map_lookup (map, i << 32), values + i);
    for (uint64_t i = 1; i <= 1000; i += 2)
        cr_assert_eq (id_map_remove (map, i << 32), values + i);
    for (uint64_t i = 1; i <= 1000; i++)
        cr_assert_eq (id_map_lookup (map, i << 32), i % 2 ? NULL : values + i);
    id_map_destroy (&map);
    cr_assert_null (map);
    id_map_destroy (&map);
    free (values);
    free (model);
}

LEAK_CHECKED_TEST (sink, name_table_shares_equal_names_until_the_last_holder)
{
    name_table_t *names = name_table_new ();
    char name[16] = "node-1";
    const char *held = name_table_hold (names, name);
    cr_assert (held != name);
    cr_assert_str_eq (held, "node-1");
    cr_assert_eq (name_table_hold (names, "node-1"), held, "one copy");
    cr_assert_eq (name_table_hold_again (held), held);
    cr_assert_null (name_table_hold (names, NULL));
    cr_assert_null (name_table_hold_again (NULL));
    name_table_release (names, NULL);
    const char *other = name_table_hold (names, "node-2");
    cr_assert (other != held);
    cr_assert_eq (name_table_size (names), 2);
    //  Three holders: it goes with the third release
    for (int i = 0; i < 3; i++) {
        cr_assert_eq (name_table_size (names), 2);
        name_table_release (names, held);
    }
    cr_assert_eq (name_table_size (names), 1);
    held = name_table_hold (names, name);
    cr_assert_str_eq (held, "node-1");
    cr_assert_eq (name_table_size (names), 2);
    //  Names still held go with the table
    name_table_destroy (&names);
    cr_assert_null (names);
}
