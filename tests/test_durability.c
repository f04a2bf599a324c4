/*  test_durability.c - the durable broker (drover broker --data): real
    brokers killed with SIGKILL and restarted on the same data directory,
    journals damaged by hand, a disk that fills up, and compaction. A
    checker (checker.h) tells lost, duplicated and unexpected results.

    Suite `durability` runs in .ci/run; suite `durability_large` (the
    recovery of 1,000,000 tasks) runs on demand:
        meson test -C build durability-large --print-errorlogs -v

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "checker.h"
#include "drover_client.h"
#include "drover_map.h"
#include "procs.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define HEARTBEAT_MS 100
#define LIVENESS     5

static void
s_setup (void)
{
    procs_setup ("durability");
}

//  --------------------------------------------------------------------------
//  A durable cluster: one broker (embedded sink) on a data directory

typedef struct {
    char *endpoint;      //  the broker's
    char *sink_endpoint; //  its embedded sink's
    char *data;          //  the data directory
    const char *options; //  more broker options
    pid_t broker;        //  the running broker, or 0
    int starts;          //  brokers started so far
} s_cluster_t;

static void
s_broker_start (s_cluster_t *cluster)
{
    cluster->starts++;
    cluster->broker =
        procs_spawn ("exec %s broker --listen %s --sink-listen %s --data %s "
                     "--heartbeat-ms %d --liveness %d %s >> %s/broker.log 2>&1",
                     procs_drover (), cluster->endpoint, cluster->sink_endpoint,
                     cluster->data, HEARTBEAT_MS, LIVENESS,
                     cluster->options ? cluster->options : "", procs_dir ());
}

static s_cluster_t
s_cluster_start (const char *data, const char *options)
{
    s_cluster_t cluster = {0};
    cluster.endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", procs_free_port ());
    cluster.sink_endpoint =
        zsys_sprintf ("tcp://127.0.0.1:%d", procs_free_port ());
    cluster.data = data ? strdup (data) : procs_path ("data");
    cluster.options = options;
    s_broker_start (&cluster);
    return cluster;
}

static void
s_cluster_free (s_cluster_t *cluster)
{
    free (cluster->endpoint);
    free (cluster->sink_endpoint);
    free (cluster->data);
}

static pid_t
s_start_node (s_cluster_t *cluster, const char *name, int children)
{
    return procs_spawn ("exec %s worker --connect %s -j %d --name %s "
                        ">> %s/%s.log 2>&1",
                        procs_drover (), cluster->endpoint, children, name,
                        procs_dir (), name);
}

static bool
s_log_has (const char *needle)
{
    char *path = procs_path ("broker.log");
    char *text = procs_read (path, NULL);
    bool found = strstr (text, needle) != NULL;
    free (text);
    free (path);
    return found;
}

//  Polls the broker's log for needle; fails the test after timeout_ms.
static void
s_wait_log (const char *needle, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (!s_log_has (needle) && zclock_mono () < deadline)
        usleep (5000); //  polling a log, with a deadline
    cr_assert (s_log_has (needle), "the broker never logged '%s'", needle);
}

//  A client connected to the cluster (retrying while the broker starts),
//  whose requests time out after timeout_ms.
static drover_client_t *
s_client_timeout (s_cluster_t *cluster, int timeout_ms)
{
    int64_t deadline = zclock_mono () + 10000;
    while (zclock_mono () < deadline) {
        drover_client_t *client = drover_client_new ();
        cr_assert_not_null (client);
        if (drover_client_connect (client, cluster->endpoint, timeout_ms) == 0)
            return client;
        drover_client_destroy (&client);
        usleep (20000); //  the broker is starting, with a deadline
    }
    cr_assert_fail ("no broker at %s after 10 s", cluster->endpoint);
    return NULL;
}

static drover_client_t *
s_client (s_cluster_t *cluster)
{
    return s_client_timeout (cluster, 5000);
}

//  Kills the broker with SIGKILL and starts it again on the same data.
static void
s_broker_restart (s_cluster_t *cluster)
{
    procs_kill_9 (cluster->broker);
    s_broker_start (cluster);
}

//  The payload of input i.
static size_t
s_payload (char *buffer, size_t size, size_t i)
{
    return (size_t)snprintf (buffer, size, "task %zu", i);
}

//  Submits inputs [first, first + count) of echo, in batches, recording
//  each acknowledged id in ids[i] and the checker.
static void
s_submit_range (drover_client_t *client, checker_t *checker, uint64_t *ids,
                size_t first, size_t count, const char *handler)
{
    char (*texts)[32] = calloc (count, 32);
    drover_payload_t *payloads =
        (drover_payload_t *)calloc (count, sizeof (drover_payload_t));
    if (!texts || !payloads)
        abort ();
    for (size_t i = 0; i < count; i++) {
        payloads[i].size = s_payload (texts[i], 32, first + i);
        payloads[i].data = texts[i];
        checker_expect (checker, first + i, texts[i], payloads[i].size);
    }
    int rc = drover_client_submit_batch (client, handler, payloads, count, NULL,
                                         ids + first);
    cr_assert_eq (rc, 0, "submit: %s", drover_client_reason (client));
    for (size_t i = 0; i < count; i++)
        cr_assert_eq (checker_submit (checker, first + i, ids[first + i]), 0);
    free (payloads);
    free (texts);
}

//  Waits up to timeout_ms for the results of ids[0..count) and feeds them
//  to the checker (index i for ids[i]; ids 0 are skipped). Returns how
//  many came.
static size_t
s_collect (drover_client_t *client, checker_t *checker, const uint64_t *ids,
           size_t count, int timeout_ms)
{
    size_t came = 0;
    int64_t deadline = zclock_mono () + timeout_ms;
    for (size_t first = 0; first < count; first += 1000) {
        size_t slice = count - first < 1000 ? count - first : 1000;
        drover_result_t **results =
            (drover_result_t **)calloc (slice, sizeof (drover_result_t *));
        uint64_t *watch = (uint64_t *)calloc (slice, sizeof (uint64_t));
        size_t *index = (size_t *)calloc (slice, sizeof (size_t));
        size_t watched = 0;
        for (size_t i = 0; i < slice; i++)
            if (ids[first + i]) {
                index[watched] = first + i;
                watch[watched++] = ids[first + i];
            }
        int64_t left = deadline - zclock_mono ();
        if (watched)
            drover_client_wait (client, watch, watched,
                                left > 0 ? (int)left : 0, true, results);
        for (size_t i = 0; i < watched; i++)
            if (results[i]) {
                came++;
                checker_result (checker, index[i], results[i]->id,
                                results[i]->code == 0 ? "ok" : "failed",
                                results[i]->attempt, results[i]->node,
                                results[i]->payload, results[i]->payload_size);
                drover_result_destroy (&results[i]);
            }
        free (results);
        free (watch);
        free (index);
    }
    return came;
}

static void
s_assert_clean (checker_t *checker, size_t expected_ok)
{
    checker_report_t report = checker_report (checker);
    if (!checker_ok (&report) || report.ok != expected_ok)
        checker_print (checker, stderr);
    cr_assert_eq (report.lost, 0, "lost %zu results", report.lost);
    cr_assert_eq (report.duplicated, 0, "%zu duplicated", report.duplicated);
    cr_assert_eq (report.unexpected, 0, "%zu unexpected", report.unexpected);
    cr_assert_eq (report.mismatched, 0, "%zu wrong", report.mismatched);
    cr_assert_eq (report.ok, expected_ok, "%zu of %zu ok", report.ok,
                  expected_ok);
}

//  Octets in the files of a directory tree.
static uint64_t
s_du (const char *path)
{
    struct stat info;
    if (lstat (path, &info) != 0)
        return 0;
    if (!S_ISDIR (info.st_mode))
        return (uint64_t)info.st_size;
    uint64_t total = 0;
    DIR *dir = opendir (path);
    struct dirent *entry;
    while (dir && (entry = readdir (dir)))
        if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, "..")) {
            char *child = zsys_sprintf ("%s/%s", path, entry->d_name);
            total += s_du (child);
            free (child);
        }
    if (dir)
        closedir (dir);
    return total;
}

TestSuite (durability, .init = s_setup, .fini = procs_teardown, .timeout = 120);

//  --------------------------------------------------------------------------
//  1. Queued tasks survive kill -9 of the broker

#define QUEUED 10000

Test (durability, queued_tasks_survive_kill_9_of_the_broker)
{
    s_cluster_t cluster = s_cluster_start (NULL, NULL);
    drover_client_t *client = s_client (&cluster);
    checker_t *checker = checker_new ();
    uint64_t *ids = (uint64_t *)calloc (QUEUED, sizeof (uint64_t));
    s_submit_range (client, checker, ids, 0, QUEUED, "echo");
    drover_client_destroy (&client);

    //  Every submit was acknowledged: all of them are on disk
    s_broker_restart (&cluster);
    int64_t restarted = zclock_mono ();
    s_wait_log ("10000 tasks and 0 dead letters restored", 20000);
    int64_t restored = zclock_mono () - restarted;
    s_start_node (&cluster, "A", 2);
    client = s_client (&cluster);
    size_t came = s_collect (client, checker, ids, QUEUED, 60000);
    fprintf (stderr,
             "durability: %d queued tasks restored %lld ms after the "
             "restart; %zu results\n",
             QUEUED, (long long)restored, came);
    s_assert_clean (checker, QUEUED);
    drover_client_destroy (&client);
    checker_destroy (&checker);
    free (ids);
    s_cluster_free (&cluster);
}

static uint64_t s_counter (drover_client_t *client, const char *name);

//  --------------------------------------------------------------------------
//  1b. Queued chunks survive as chunks: fail answers per input with the
//      input as its reason, which only a chunk run gives

#define CHUNK_INPUTS 40

static int
s_next_chunk_input (void *arg, drover_payload_t *input)
{
    size_t *next = (size_t *)arg;
    static char text[32];
    if (*next == CHUNK_INPUTS)
        return 0;
    input->data = text;
    input->size = s_payload (text, sizeof text, (*next)++);
    return 1;
}

Test (durability, queued_chunks_survive_kill_9_of_the_broker_as_chunks)
{
    s_cluster_t cluster = s_cluster_start (NULL, NULL);
    drover_client_t *client = s_client (&cluster);
    size_t next = 0;
    drover_map_options_t options = {.ordered = true, .chunksize = 4};
    drover_map_t *map =
        drover_map_new (client, "fail", &options, s_next_chunk_input, &next);
    cr_assert_not_null (map);
    //  No node: the ten chunks wait in the broker once it took them
    int64_t deadline = zclock_mono () + 10000;
    while (zclock_mono () < deadline
           && s_counter (client, "submitted") < CHUNK_INPUTS / 4) {
        drover_result_t *result = NULL;
        cr_assert_eq (drover_map_next (map, 50, &result), DROVER_ETIMEDOUT);
    }
    cr_assert_eq (s_counter (client, "submitted"), CHUNK_INPUTS / 4);
    s_broker_restart (&cluster);
    s_wait_log ("10 tasks and 0 dead letters restored", 20000);
    s_start_node (&cluster, "A", 2);
    for (size_t i = 0; i < CHUNK_INPUTS; i++) {
        drover_result_t *result = NULL;
        int rc = drover_map_next (map, 30000, &result);
        cr_assert_eq (rc, 0, "input %zu: %s", i, drover_client_reason (client));
        cr_assert_not_null (result);
        char expected[32];
        s_payload (expected, sizeof expected, i);
        cr_assert_eq (result->index, i);
        cr_assert_eq (result->code, DROVER_EFAILED, "input %zu: %s", i,
                      drover_strcode (result->code));
        cr_assert_str_eq (result->reason, expected,
                          "input %zu did not run on its own", i);
        drover_result_destroy (&result);
    }
    drover_map_destroy (&map);
    drover_client_destroy (&client);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  2. kill -9 the broker again and again during ingest, then during
//     dispatch: no acknowledged submit is lost, none is queued twice

#define INGEST_BATCH 50
#define INGEST_MAX   40000

//  A broker's counter, by name (fails the test if it has none).
static uint64_t
s_counter (drover_client_t *client, const char *name)
{
    drover_stats_t *stats = NULL;
    int rc = drover_client_stats (client, &stats);
    cr_assert_eq (rc, 0, "stats: %s", drover_client_reason (client));
    uint64_t value = UINT64_MAX;
    for (size_t i = 0; i < stats->counter_count; i++)
        if (streq (stats->counters[i].name, name))
            value = stats->counters[i].value;
    drover_stats_destroy (&stats);
    cr_assert_neq (value, UINT64_MAX, "no counter %s", name);
    return value;
}

//  Kills the broker kills times, min_ms to max_ms apart (the fault
//  schedule: these waits are the test's input, not polling). Runs on the
//  test's main thread: a process forked by another thread would die with
//  that thread (PR_SET_PDEATHSIG follows the forking thread).
static void
s_kill_repeatedly (s_cluster_t *cluster, int kills, int min_ms, int max_ms)
{
    for (int i = 0; i < kills; i++) {
        usleep ((useconds_t)(min_ms + randof (max_ms - min_ms)) * 1000);
        s_broker_restart (cluster);
    }
}

//  Submits batches until told to stop, on a thread of its own.
typedef struct {
    drover_client_t *client;
    checker_t *checker;
    uint64_t *ids;
    size_t acked;      //  inputs acknowledged
    volatile int stop; //  set by the main thread
} s_ingest_t;

static void *
s_ingest (void *arg)
{
    s_ingest_t *ingest = (s_ingest_t *)arg;
    while (!ingest->stop && ingest->acked + INGEST_BATCH <= INGEST_MAX) {
        s_submit_range (ingest->client, ingest->checker, ingest->ids,
                        ingest->acked, INGEST_BATCH, "echo");
        ingest->acked += INGEST_BATCH;
    }
    return NULL;
}

Test (durability,
      repeated_kill_9_loses_no_acknowledged_submit_and_queues_none_twice)
{
    s_cluster_t cluster = s_cluster_start (NULL, NULL);
    //  A submit may meet several dead brokers in a row: the client sends
    //  it again to each new one, for as long as its timeout
    drover_client_t *client = s_client_timeout (&cluster, 30000);
    checker_t *checker = checker_new ();
    uint64_t *ids = (uint64_t *)calloc (INGEST_MAX, sizeof (uint64_t));

    //  Ingest under 10 kills, with no node: every task stays queued
    s_ingest_t ingest = {client, checker, ids, 0, 0};
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_ingest, &ingest), 0);
    s_kill_repeatedly (&cluster, 10, 150, 350);
    ingest.stop = 1;
    pthread_join (thread, NULL);
    size_t acked = ingest.acked;
    uint64_t held = s_counter (client, "held");
    fprintf (stderr,
             "durability: %d broker kills during ingest: %zu tasks "
             "acknowledged, %llu held after the last restart\n",
             10, acked, (unsigned long long)held);
    cr_assert_eq (held, acked, "acknowledged %zu tasks, the broker holds %llu",
                  acked, (unsigned long long)held);

    //  Dispatch under 5 more kills: every result exactly once
    s_start_node (&cluster, "A", 2);
    s_kill_repeatedly (&cluster, 5, 100, 300);
    size_t came = s_collect (client, checker, ids, acked, 60000);
    fprintf (stderr,
             "durability: %d more kills during dispatch: %zu of %zu "
             "results\n",
             5, came, acked);
    s_assert_clean (checker, acked);
    drover_client_destroy (&client);
    checker_destroy (&checker);
    free (ids);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  3. Damage in the middle of an old segment: found, set aside, reported;
//     nothing damaged runs; everything else survives

//  The journal segments of the broker, oldest first (at most max).
static size_t
s_segments (s_cluster_t *cluster, char **paths, size_t max)
{
    char *dir_path = zsys_sprintf ("%s/broker", cluster->data);
    DIR *dir = opendir (dir_path);
    cr_assert_not_null (dir, "no journal in %s", dir_path);
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)) && count < max)
        if (strstr (entry->d_name, ".drj"))
            paths[count++] = zsys_sprintf ("%s/%s", dir_path, entry->d_name);
    closedir (dir);
    free (dir_path);
    //  Names are the segment numbers in fixed-width hex
    for (size_t i = 1; i < count; i++)
        for (size_t k = i; k > 0 && strcmp (paths[k - 1], paths[k]) > 0; k--) {
            char *swap = paths[k];
            paths[k] = paths[k - 1];
            paths[k - 1] = swap;
        }
    return count;
}

//  Offset of needle in the file at path, or -1.
static long
s_find_in_file (const char *path, const char *needle)
{
    size_t size;
    char *text = procs_read (path, &size);
    long offset = -1;
    size_t length = strlen (needle);
    for (size_t i = 0; i + length <= size && offset < 0; i++)
        if (memcmp (text + i, needle, length) == 0)
            offset = (long)i;
    free (text);
    return offset;
}

//  Queues 300 tasks, one per SUBMIT (one record each), in three broker
//  runs (three segments), then damages the record of input 50 in the
//  oldest segment with damage(path, offset of its payload).
static void
s_damage_scenario (void (*damage) (const char *path, long offset),
                   const char *what)
{
    s_cluster_t cluster = s_cluster_start (NULL, "--fsync never");
    checker_t *checker = checker_new ();
    uint64_t ids[300] = {0};
    for (size_t run = 0; run < 3; run++) {
        drover_client_t *client = s_client (&cluster);
        for (size_t i = run * 100; i < run * 100 + 100; i++)
            s_submit_range (client, checker, ids, i, 1, "echo");
        drover_client_destroy (&client);
        s_broker_restart (&cluster);
    }
    procs_kill_9 (cluster.broker);
    char *segments[8];
    size_t count = s_segments (&cluster, segments, 8);
    cr_assert_geq (count, 3, "%zu segments", count);
    long offset = s_find_in_file (segments[0], "task 50");
    cr_assert_geq (offset, 0, "input 50 is not in the oldest segment");
    damage (segments[0], offset);

    s_broker_start (&cluster);
    s_wait_log ("damaged regions", 10000);
    char *corrupt = zsys_sprintf ("%s/broker/corrupt", cluster.data);
    cr_assert_gt (s_du (corrupt), 0, "nothing set aside in %s", corrupt);
    s_start_node (&cluster, "A", 2);
    drover_client_t *client = s_client (&cluster);
    //  Input 50 is gone; every other task runs, with its own payload
    uint64_t lost_id = ids[50];
    ids[50] = 0;
    size_t came = s_collect (client, checker, ids, 300, 30000);
    drover_status_t *status = NULL;
    cr_assert_eq (drover_client_status (client, &lost_id, 1, &status), 0);
    cr_assert_eq (status[0].state, DROVER_TASK_UNKNOWN,
                  "the damaged task is %s", status[0].state_name);
    drover_status_destroy (&status);
    checker_report_t report = checker_report (checker);
    fprintf (stderr,
             "durability: %s in an old segment: set aside, %zu of 299 other "
             "tasks done\n",
             what, came);
    cr_assert_eq (came, 299);
    cr_assert_eq (report.ok, 299);
    cr_assert_eq (report.duplicated + report.unexpected + report.mismatched, 0);
    for (size_t i = 0; i < count; i++)
        free (segments[i]);
    free (corrupt);
    drover_client_destroy (&client);
    checker_destroy (&checker);
    s_cluster_free (&cluster);
}

static void
s_flip_bit (const char *path, long offset)
{
    int fd = open (path, O_RDWR);
    cr_assert_geq (fd, 0);
    char octet;
    cr_assert_eq (pread (fd, &octet, 1, offset + 5), 1);
    octet ^= 0x01; //  "task 50" becomes "task 51"
    cr_assert_eq (pwrite (fd, &octet, 1, offset + 5), 1);
    close (fd);
}

//  Cuts 3 octets out of the record, so that what follows shifts.
static void
s_cut_record (const char *path, long offset)
{
    size_t size;
    char *text = procs_read (path, &size);
    FILE *file = fopen (path, "w");
    cr_assert_not_null (file);
    cr_assert_eq (fwrite (text, 1, (size_t)offset, file), (size_t)offset);
    size_t rest = size - (size_t)offset - 3;
    cr_assert_eq (fwrite (text + offset + 3, 1, rest, file), rest);
    fclose (file);
    free (text);
}

Test (durability, a_flipped_bit_in_an_old_segment_is_set_aside)
{
    s_damage_scenario (s_flip_bit, "a flipped bit");
}

Test (durability, a_record_cut_short_in_an_old_segment_is_set_aside)
{
    s_damage_scenario (s_cut_record, "a record cut short");
}

//  --------------------------------------------------------------------------
//  4. The disk fills up during submits: clear errors, nothing acknowledged
//     is lost, and submits work again once there is room

#define FULL_PAYLOAD 4096
#define FULL_BATCH   8
#define FULL_MAX     4000

//  Mounts a tmpfs of size octets at path, in a mount namespace of this
//  test's own (the broker started later inherits it).
static void
s_small_disk (const char *path, const char *size)
{
    cr_assert_eq (unshare (CLONE_NEWNS), 0,
                  "unshare(CLONE_NEWNS): %s (the test needs root)",
                  strerror (errno));
    cr_assert_eq (mount ("none", "/", "none", MS_REC | MS_PRIVATE, NULL), 0,
                  "private mounts: %s", strerror (errno));
    cr_assert_eq (mkdir (path, 0755), 0);
    char *options = zsys_sprintf ("size=%s", size);
    cr_assert_eq (mount ("tmpfs", path, "tmpfs", 0, options), 0,
                  "mount tmpfs: %s", strerror (errno));
    free (options);
}

//  Submits FULL_BATCH tasks of FULL_PAYLOAD octets (inputs first...);
//  returns the submit's code, and records the ids when acknowledged.
static int
s_submit_big (drover_client_t *client, checker_t *checker, uint64_t *ids,
              size_t first)
{
    char *texts = (char *)malloc (FULL_BATCH * FULL_PAYLOAD);
    if (!texts)
        abort ();
    drover_payload_t payloads[FULL_BATCH];
    for (size_t i = 0; i < FULL_BATCH; i++) {
        char *text = texts + i * FULL_PAYLOAD;
        memset (text, 'x', FULL_PAYLOAD);
        s_payload (text, FULL_PAYLOAD, first + i);
        text[strlen (text)] = 'x';
        payloads[i] = (drover_payload_t){text, FULL_PAYLOAD};
    }
    int rc = drover_client_submit_batch (client, "echo", payloads, FULL_BATCH,
                                         NULL, ids + first);
    for (size_t i = 0; rc == 0 && i < FULL_BATCH; i++) {
        checker_expect (checker, first + i, payloads[i].data, FULL_PAYLOAD);
        cr_assert_eq (checker_submit (checker, first + i, ids[first + i]), 0);
    }
    free (texts);
    return rc;
}

Test (durability, a_full_disk_refuses_submits_clearly_and_recovers)
{
    char *data = procs_path ("data");
    s_small_disk (data, "1m");
    //  Leave about 192 KiB free
    struct statvfs disk;
    cr_assert_eq (statvfs (data, &disk), 0);
    uint64_t free_octets = (uint64_t)disk.f_bavail * disk.f_frsize;
    char *filler = zsys_sprintf ("%s/filler", data);
    cr_assert_eq (procs_run (10000, "head -c %llu /dev/zero > %s",
                             (unsigned long long)(free_octets - (192 << 10)),
                             filler),
                  0);
    s_cluster_t cluster = s_cluster_start (data, "--segment-size 65536");
    drover_client_t *client = s_client (&cluster);
    checker_t *checker = checker_new ();
    uint64_t *ids = (uint64_t *)calloc (FULL_MAX, sizeof (uint64_t));

    size_t acked = 0;
    int rc = 0;
    while (acked + FULL_BATCH <= FULL_MAX
           && (rc = s_submit_big (client, checker, ids, acked)) == 0)
        acked += FULL_BATCH;
    cr_assert_eq (rc, DROVER_ESTORAGE, "the full disk gave %s: %s",
                  drover_strcode (rc), drover_client_reason (client));
    cr_assert (strstr (drover_client_reason (client), "journal"), "%s",
               drover_client_reason (client));
    fprintf (stderr, "durability: disk full after %zu acknowledged tasks: %s\n",
             acked, drover_client_reason (client));
    //  Still full: still refused, and the broker serves the rest
    cr_assert_eq (s_submit_big (client, checker, ids, acked), DROVER_ESTORAGE);
    cr_assert_eq (kill (cluster.broker, 0), 0, "the broker died");
    cr_assert_eq (s_counter (client, "journal_lost"), 1);

    //  Room again: submits are accepted once a checkpoint succeeds
    cr_assert_eq (unlink (filler), 0);
    int64_t freed = zclock_mono (), deadline = freed + 10000;
    while ((rc = s_submit_big (client, checker, ids, acked)) != 0
           && zclock_mono () < deadline)
        usleep (20000); //  the broker retries its checkpoint, with a deadline
    cr_assert_eq (rc, 0, "no submit accepted 10 s after the disk had room: %s",
                  drover_client_reason (client));
    fprintf (stderr, "durability: submits accepted again %lld ms after room\n",
             (long long)(zclock_mono () - freed));
    acked += FULL_BATCH;
    drover_client_destroy (&client);

    //  What was acknowledged survives a kill -9, and runs exactly once
    s_broker_restart (&cluster);
    s_start_node (&cluster, "A", 2);
    client = s_client (&cluster);
    size_t came = s_collect (client, checker, ids, acked, 30000);
    cr_assert_eq (came, acked);
    s_assert_clean (checker, acked);
    drover_client_destroy (&client);
    checker_destroy (&checker);
    free (ids);
    free (filler);
    free (data);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  5. Compaction: after many finished tasks the journal is small, and an
//     old task that never ran does not pin it

#define COMPACT_TASKS 20000
#define SEGMENT_SIZE  65536

Test (durability, compaction_keeps_the_journal_proportional_to_live_tasks)
{
    s_cluster_t cluster = s_cluster_start (NULL, "--segment-size 65536");
    drover_client_t *client = s_client (&cluster);
    checker_t *checker = checker_new ();
    //  The oldest task: no node serves its handler
    uint64_t pinned = 0;
    cr_assert_eq (
        drover_client_submit (client, "nobody", "old", 3, NULL, &pinned), 0);
    s_start_node (&cluster, "A", 2);
    uint64_t *ids = (uint64_t *)calloc (COMPACT_TASKS, sizeof (uint64_t));
    for (size_t first = 0; first < COMPACT_TASKS; first += 1000)
        s_submit_range (client, checker, ids, first, 1000, "echo");
    size_t came = s_collect (client, checker, ids, COMPACT_TASKS, 60000);
    cr_assert_eq (came, COMPACT_TASKS);
    s_assert_clean (checker, COMPACT_TASKS);

    //  Every task ran and was claimed: only the pinned one is live
    char *journal = zsys_sprintf ("%s/broker", cluster.data);
    int64_t deadline = zclock_mono () + 10000;
    while (s_counter (client, "held") != 1 && zclock_mono () < deadline)
        usleep (10000); //  the last claims, with a deadline
    cr_assert_eq (s_counter (client, "held"), 1);
    uint64_t written = s_counter (client, "journal_compactions");
    uint64_t size = s_du (journal);
    fprintf (stderr,
             "durability: %d tasks through a journal of %d-octet segments: "
             "%llu compactions, %llu octets left on disk\n",
             COMPACT_TASKS, SEGMENT_SIZE, (unsigned long long)written,
             (unsigned long long)size);
    cr_assert_gt (written, 0, "no segment was compacted");
    cr_assert_leq (size, 4 * SEGMENT_SIZE, "the journal holds %llu octets",
                   (unsigned long long)size);

    //  The pinned task survived its segments' compaction
    drover_client_destroy (&client);
    s_broker_restart (&cluster);
    client = s_client (&cluster);
    drover_status_t *status = NULL;
    cr_assert_eq (drover_client_status (client, &pinned, 1, &status), 0);
    cr_assert_eq (status[0].state, DROVER_TASK_QUEUED, "the old task is %s",
                  status[0].state_name);
    drover_status_destroy (&status);
    cr_assert_eq (s_counter (client, "held"), 1);
    drover_client_destroy (&client);
    checker_destroy (&checker);
    free (journal);
    free (ids);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  Bad settings: one clear line and a non-zero exit

//  Runs drover with args; asserts its exit status and that stderr is one
//  line containing needle.
static void
s_assert_refused (const char *args, int status, const char *needle)
{
    char *errors = procs_path ("errors");
    int rc = procs_run (10000, "%s %s < /dev/null > /dev/null 2> %s",
                        procs_drover (), args, errors);
    char *text = procs_read (errors, NULL);
    cr_assert_eq (rc, status, "'drover %s' exited %d: %s", args, rc, text);
    char *newline = strchr (text, '\n');
    cr_assert (newline && newline[1] == 0,
               "'drover %s': one line expected, got: %s", args, text);
    cr_assert (strstr (text, needle), "'drover %s' said: %s", args, text);
    free (text);
    free (errors);
}

Test (durability, bad_data_settings_are_refused_clearly)
{
    s_assert_refused ("broker --data /tmp --fsync sometimes", 2,
                      "--fsync: expected always, batch or never");
    s_assert_refused ("sink --data /tmp --fsync 1", 2,
                      "--fsync: expected always, batch or never");
    //  A data directory that is a file
    char *file = procs_path ("a-file");
    cr_assert_eq (procs_run (5000, "touch %s", file), 0);
    char *args = zsys_sprintf ("broker --listen tcp://127.0.0.1:%d --data %s",
                               procs_free_port (), file);
    s_assert_refused (args, 1, file);
    free (args);
    //  Two brokers on one data directory: the second says who holds it
    s_cluster_t cluster = s_cluster_start (NULL, NULL);
    s_wait_log ("broker: listening", 10000);
    args = zsys_sprintf ("broker --listen tcp://127.0.0.1:%d --no-sink "
                         "--data %s",
                         procs_free_port (), cluster.data);
    s_assert_refused (args, 1, "another process uses");
    free (args);
    free (file);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  7. (large, on demand) Recovery of a journal of 1,000,000 queued tasks:
//     time and memory

#define LARGE_TASKS 1000000

//  Resident memory of pid in kB.
static long
s_rss_kb (pid_t pid)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *file = fopen (path, "r"); //  /proc files have no size to read
    long kb = -1;
    while (file && fgets (line, sizeof line, file))
        if (strncmp (line, "VmRSS:", 6) == 0)
            kb = atol (line + 6);
    if (file)
        fclose (file);
    return kb;
}

TestSuite (durability_large, .init = s_setup, .fini = procs_teardown,
           .timeout = 900);

Test (durability_large, restart_with_a_million_queued_tasks)
{
    s_cluster_t cluster = s_cluster_start (NULL, "--max-queued 2000000");
    drover_client_t *client = s_client_timeout (&cluster, 120000);
    //  16-octet payloads, as the issue says
    drover_payload_t *payloads =
        (drover_payload_t *)calloc (LARGE_TASKS, sizeof (drover_payload_t));
    uint64_t *ids = (uint64_t *)calloc (LARGE_TASKS, sizeof (uint64_t));
    char (*texts)[17] = calloc (LARGE_TASKS, 17);
    for (size_t i = 0; i < LARGE_TASKS; i++) {
        snprintf (texts[i], 17, "task %010zu", i);
        payloads[i] = (drover_payload_t){texts[i], 16};
    }
    long empty_rss = s_rss_kb (cluster.broker);
    int64_t start = zclock_mono ();
    for (size_t first = 0; first < LARGE_TASKS; first += 40960) {
        size_t count =
            LARGE_TASKS - first < 40960 ? LARGE_TASKS - first : 40960;
        cr_assert_eq (drover_client_submit_batch (client, "echo",
                                                  payloads + first, count, NULL,
                                                  ids + first),
                      0, "%s", drover_client_reason (client));
    }
    int64_t ingest_ms = zclock_mono () - start;
    long live_rss = s_rss_kb (cluster.broker);
    drover_client_destroy (&client);
    char *journal = zsys_sprintf ("%s/broker", cluster.data);
    uint64_t size = s_du (journal);

    procs_kill_9 (cluster.broker);
    int64_t restarted = zclock_mono ();
    s_broker_start (&cluster);
    s_wait_log ("1000000 tasks and 0 dead letters restored", 300000);
    int64_t recovery_ms = zclock_mono () - restarted;
    client = s_client (&cluster);
    cr_assert_eq (s_counter (client, "held"), LARGE_TASKS);
    long restored_rss = s_rss_kb (cluster.broker);
    fprintf (stderr,
             "durability: %d tasks of 16 octets: ingest %lld ms (%.0f "
             "tasks/s, fsync batch), journal %llu octets; broker RSS %ld kB "
             "empty, %ld kB holding them (%.0f octets per task); after kill "
             "-9, restored in %lld ms (log seen), RSS %ld kB\n",
             LARGE_TASKS, (long long)ingest_ms,
             LARGE_TASKS * 1000.0 / (double)(ingest_ms ? ingest_ms : 1),
             (unsigned long long)size, empty_rss, live_rss,
             (double)(live_rss - empty_rss) * 1024 / LARGE_TASKS,
             (long long)recovery_ms, restored_rss);
    drover_client_destroy (&client);
    free (journal);
    free (texts);
    free (ids);
    free (payloads);
    s_cluster_free (&cluster);
}
