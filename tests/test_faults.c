/*  test_faults.c - the fault suite: real drover processes on loopback,
    killed and stopped at chosen moments, and a checker (checker.h) that
    every scenario asks for lost, duplicated and unexpected results.

    The binary comes from $DROVER (set by tests/meson.build). Every process
    a test starts gets PR_SET_PDEATHSIG and its own process group, and is
    killed in the suite's teardown, so a failing test leaves nothing behind.
    Heartbeats are short (100 ms x 5), so a lost node or sink is found in
    half a second; each scenario prints what it measured to stderr.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "checker.h"
#include "drover_client.h"
#include "leak_check.h"
#include "procs.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

//  Cluster timing of every scenario: a peer silent for HEARTBEAT_MS x
//  LIVENESS is lost
#define HEARTBEAT_MS 100
#define LIVENESS     5
#define DETECTION_MS (HEARTBEAT_MS * LIVENESS)

//  --------------------------------------------------------------------------
//  Processes (tests/procs.c)

static void
s_setup (void)
{
    procs_setup ("faults");
}

static size_t
s_count_lines (const char *path)
{
    char *text = procs_read (path, NULL);
    size_t lines = 0;
    for (char *p = text; (p = strchr (p, '\n')); p++)
        lines++;
    free (text);
    return lines;
}

static bool
s_file_has (const char *path, const char *needle)
{
    char *text = procs_read (path, NULL);
    bool found = strstr (text, needle) != NULL;
    free (text);
    return found;
}

//  Writes count lines "FORMAT" (with the line's number) to path; the line
//  at poison_at (if < count) is poison instead.
static void
s_write_inputs (const char *path, size_t count, const char *format,
                size_t poison_at, const char *poison)
{
    FILE *file = fopen (path, "w");
    cr_assert_not_null (file);
    for (size_t i = 0; i < count; i++) {
        if (i == poison_at && poison)
            fputs (poison, file);
        else
            fprintf (file, format, i);
        fputc ('\n', file);
    }
    fclose (file);
}

//  --------------------------------------------------------------------------
//  Looking at processes through /proc

//  True while pid exists and is not a zombie.
static bool
s_alive (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    char line[512] = "";
    char *got = fgets (line, sizeof line, file);
    fclose (file);
    char *paren = got ? strrchr (line, ')') : NULL;
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

//  The children of pid (of all its threads); returns how many (at most max).
static size_t
s_children_of (pid_t pid, pid_t *pids, size_t max)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *tasks = opendir (path);
    if (!tasks)
        return 0;
    size_t count = 0;
    struct dirent *task;
    while ((task = readdir (tasks))) {
        if (task->d_name[0] == '.')
            continue;
        char *children_path =
            zsys_sprintf ("/proc/%d/task/%s/children", (int)pid, task->d_name);
        FILE *file = fopen (children_path, "r");
        free (children_path);
        if (!file)
            continue;
        int child;
        while (count < max && fscanf (file, "%d", &child) == 1)
            pids[count++] = (pid_t)child;
        fclose (file);
    }
    closedir (tasks);
    return count;
}

//  True when pid runs the same executable as other.
static bool
s_same_exe (pid_t pid, pid_t other)
{
    char path[64], exe[PATH_MAX] = "", other_exe[PATH_MAX] = "";
    snprintf (path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t size = readlink (path, exe, sizeof exe - 1);
    snprintf (path, sizeof path, "/proc/%d/exe", (int)other);
    ssize_t other_size = readlink (path, other_exe, sizeof other_exe - 1);
    return size > 0 && size == other_size && memcmp (exe, other_exe, size) == 0;
}

//  The live children of node supervisor `node` that run tasks (forks of the
//  drover binary, not the exec handlers' orphans a subreaper adopts);
//  returns how many, and how many of them are busy: running a command
//  whose own child (the handler's `sleep`) has started.
static size_t
s_node_children (pid_t node, pid_t *pids, size_t max, size_t *busy)
{
    pid_t all[64];
    size_t all_count = s_children_of (node, all, 64);
    size_t count = 0;
    *busy = 0;
    for (size_t i = 0; i < all_count && count < max; i++) {
        if (!s_alive (all[i]) || !s_same_exe (all[i], node))
            continue;
        pid_t commands[8], grandchildren[8];
        size_t command_count = s_children_of (all[i], commands, 8);
        bool is_busy = false;
        for (size_t k = 0; k < command_count; k++)
            if (s_alive (commands[k])
                && s_children_of (commands[k], grandchildren, 8) > 0)
                is_busy = true;
        //  Busy children first, so pids[0] is busy when any is
        if (is_busy) {
            memmove (pids + 1, pids, count * sizeof (pid_t));
            pids[0] = all[i];
            (*busy)++;
        }
        else
            pids[count] = all[i];
        count++;
    }
    return count;
}

//  Polls until `node` has at least `busy_wanted` busy children; returns the
//  number of children (their pids in pids, busy first), or fails the test.
static size_t
s_wait_busy (pid_t node, size_t busy_wanted, pid_t *pids, size_t max,
             int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    size_t count = 0, busy = 0;
    while (zclock_mono () < deadline) {
        count = s_node_children (node, pids, max, &busy);
        if (busy >= busy_wanted)
            return count;
        usleep (2000); //  polling /proc, with a deadline
    }
    cr_assert_fail ("node %d: %zu of %zu children busy after %d ms, wanted %zu",
                    (int)node, busy, count, timeout_ms, busy_wanted);
    return 0;
}

//  Polls until the file at path contains needle; returns the ms it took,
//  or -1 after timeout_ms.
static int64_t
s_wait_text (const char *path, const char *needle, int timeout_ms)
{
    int64_t start = zclock_mono (), deadline = start + timeout_ms;
    while (zclock_mono () < deadline) {
        if (s_file_has (path, needle))
            return zclock_mono () - start;
        usleep (5000); //  polling a log, with a deadline
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  A cluster

typedef struct {
    char *endpoint;      //  the broker's
    char *sink_endpoint; //  the sink's (embedded or stand-alone)
    pid_t broker;        //  broker process
    pid_t sink;          //  stand-alone sink process, or 0
} s_cluster_t;

//  Starts a broker (with an embedded sink unless own_sink, then a
//  stand-alone one) on free ports; logs go to broker.log and sink.log.
static s_cluster_t
s_cluster_start (bool own_sink)
{
    s_cluster_t cluster = {0};
    cluster.endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", procs_free_port ());
    cluster.sink_endpoint =
        zsys_sprintf ("tcp://127.0.0.1:%d", procs_free_port ());
    cluster.broker =
        procs_spawn ("exec %s broker --listen %s %s %s --heartbeat-ms %d "
                     "--liveness %d >> %s/broker.log 2>&1",
                     procs_drover (), cluster.endpoint,
                     own_sink ? "--no-sink" : "--sink-listen",
                     own_sink ? "" : cluster.sink_endpoint, HEARTBEAT_MS,
                     LIVENESS, procs_dir ());
    if (own_sink)
        cluster.sink = procs_spawn ("exec %s sink --listen %s --broker %s "
                                    ">> %s/sink.log 2>&1",
                                    procs_drover (), cluster.sink_endpoint,
                                    cluster.endpoint, procs_dir ());
    return cluster;
}

static void
s_cluster_free (s_cluster_t *cluster)
{
    free (cluster->endpoint);
    free (cluster->sink_endpoint);
}

//  Starts a node supervisor named name (exec'd, so its pid is the
//  supervisor's) with children and extra options; log in NAME.log.
static pid_t
s_start_node (s_cluster_t *cluster, const char *name, int children,
              const char *extra)
{
    return procs_spawn ("exec %s worker --connect %s -j %d --name %s %s "
                        ">> %s/%s.log 2>&1",
                        procs_drover (), cluster->endpoint, children, name,
                        extra ? extra : "", procs_dir (), name);
}

//  Waits until the broker has logged that node `name` joined.
static void
s_wait_joined (const char *name)
{
    char *log = procs_path ("broker.log");
    char *needle = zsys_sprintf ("node %s joined", name);
    int64_t took = s_wait_text (log, needle, 10000);
    cr_assert_geq (took, 0, "node %s never joined the broker", name);
    free (needle);
    free (log);
}

//  Starts `drover map --json` of handler over inputs, to output, stderr
//  to map.err; extra options may be NULL.
static pid_t
s_start_map (s_cluster_t *cluster, const char *handler, const char *inputs,
             const char *output, const char *extra)
{
    return procs_spawn (
        "exec %s map --connect %s --json --quiet %s %s < %s > %s "
        "2> %s/map.err",
        procs_drover (), cluster->endpoint, extra ? extra : "", handler, inputs,
        output, procs_dir ());
}

//  Runs the checker over the inputs and the map's output; fails the test
//  on any lost, duplicated, unexpected, mismatched or malformed result.
static checker_t *
s_check (const char *inputs, const char *output, const char *echo_suffix)
{
    checker_t *checker = checker_new ();
    cr_assert_not_null (checker);
    char *input_text = procs_read (inputs, NULL),
         *output_text = procs_read (output, NULL);
    checker_submit_lines (checker, input_text, echo_suffix);
    checker_feed_json (checker, output_text);
    free (input_text);
    free (output_text);
    checker_report_t report = checker_report (checker);
    if (!checker_ok (&report)) {
        checker_print (checker, stderr);
        char *errors = procs_path ("map.err");
        char *text = procs_read (errors, NULL);
        fprintf (stderr, "map's stderr:\n%s\n", text);
        free (text);
        free (errors);
    }
    cr_assert_eq (report.lost, 0, "lost %zu results", report.lost);
    cr_assert_eq (report.duplicated, 0, "%zu inputs had several results",
                  report.duplicated);
    cr_assert_eq (report.unexpected, 0, "%zu unexpected results",
                  report.unexpected);
    cr_assert_eq (report.mismatched, 0, "%zu wrong results", report.mismatched);
    cr_assert_eq (report.malformed, 0, "%zu malformed output lines",
                  report.malformed);
    return checker;
}

//  The pids of node's children, for later checks (at most 8).
typedef struct {
    pid_t pids[8]; //  the children
    size_t count;  //  how many
} s_pids_t;

//  Polls until none of pids is alive; returns the ms it took, or -1.
static int64_t
s_wait_gone (const s_pids_t *children, int timeout_ms)
{
    int64_t start = zclock_mono (), deadline = start + timeout_ms;
    while (zclock_mono () < deadline) {
        size_t alive = 0;
        for (size_t i = 0; i < children->count; i++)
            if (s_alive (children->pids[i]))
                alive++;
        if (alive == 0)
            return zclock_mono () - start;
        usleep (2000); //  polling /proc, with a deadline
    }
    return -1;
}

//  How many processes are alive in process group pgid (/proc scan).
static size_t
s_group_members (pid_t pgid)
{
    DIR *proc = opendir ("/proc");
    cr_assert_not_null (proc);
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (proc))) {
        int pid = atoi (entry->d_name);
        if (pid <= 0)
            continue;
        char path[64], line[512] = "";
        snprintf (path, sizeof path, "/proc/%d/stat", pid);
        FILE *file = fopen (path, "r");
        if (!file)
            continue;
        char *got = fgets (line, sizeof line, file);
        fclose (file);
        char *paren = got ? strrchr (line, ')') : NULL;
        char state;
        int parent, group;
        if (paren
            && sscanf (paren + 1, " %c %d %d", &state, &parent, &group) == 3
            && group == (int)pgid && state != 'Z' && state != 'X')
            count++;
    }
    closedir (proc);
    return count;
}

TestSuite (faults, .init = s_setup, .fini = procs_teardown, .timeout = 60);

//  --------------------------------------------------------------------------
//  1. kill -9 a child in the middle of a task

//  Each task sleeps 0.2 s in a command, so a child with a running `sleep`
//  is in the middle of a task.
#define SLOW_HANDLER(seconds)                                                  \
    "--handler 'slow=exec:read x; sleep " seconds "; echo \"$x\"'"

//  Kills one busy child of a one-node cluster during a map of 20 tasks;
//  returns the checker (caller destroys) and the map's exit status.
static checker_t *
s_kill_child_during_map (const char *map_options, int *map_rc)
{
    s_cluster_t cluster = s_cluster_start (false);
    pid_t node = s_start_node (&cluster, "A", 2, SLOW_HANDLER ("0.2"));
    s_wait_joined ("A");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 20, "task %zu", SIZE_MAX, NULL);
    int64_t start = zclock_mono ();
    pid_t map = s_start_map (&cluster, "slow", inputs, output, map_options);

    //  Once both children run a task, kill the first
    pid_t children[8];
    size_t count = s_wait_busy (node, 2, children, 8, 10000);
    cr_assert_eq (count, 2);
    pid_t victim = children[0];
    cr_assert_eq (kill (victim, SIGKILL), 0);
    int64_t killed = zclock_mono ();

    //  The node replaces it at once (it died running a task)
    int64_t replaced = -1;
    while (replaced < 0 && zclock_mono () < killed + 5000) {
        size_t busy;
        pid_t now[8];
        size_t now_count = s_node_children (node, now, 8, &busy);
        bool victim_there = false;
        for (size_t i = 0; i < now_count; i++)
            victim_there |= now[i] == victim;
        if (now_count == 2 && !victim_there)
            replaced = zclock_mono () - killed;
        else
            usleep (1000); //  polling /proc, with a deadline
    }
    cr_assert_geq (replaced, 0, "the killed child was not replaced in 5 s");

    *map_rc = procs_wait (map, 20000);
    int64_t finished = zclock_mono ();
    cr_assert_neq (*map_rc, -1, "the map did not finish in 20 s");
    //  20 tasks of 0.2 s on 2 children take 2 s; a crash costs one task
    cr_assert_lt (finished - start, 5000, "the map took %lld ms",
                  (long long)(finished - start));
    fprintf (stderr,
             "faults: kill -9 child mid-task (%s): child replaced after "
             "%lld ms, map done %lld ms after the kill\n",
             map_options, (long long)replaced, (long long)(finished - killed));
    cr_assert (s_alive (node), "the node survived its child's death");
    checker_t *checker = s_check (inputs, output, "\n");
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
    return checker;
}

Test (faults, kill_9_child_mid_task_reports_it_crashed)
{
    int map_rc;
    checker_t *checker = s_kill_child_during_map ("--retries 0", &map_rc);
    cr_assert_eq (map_rc, 1, "a crashed task makes map exit 1, not %d", map_rc);
    cr_assert_eq (checker_count_status (checker, "crashed"), 1);
    cr_assert_eq (checker_count_status (checker, "ok"), 19);
    checker_destroy (&checker);
}

Test (faults, kill_9_child_mid_task_is_retried_and_succeeds)
{
    int map_rc;
    checker_t *checker = s_kill_child_during_map ("--retries 2", &map_rc);
    cr_assert_eq (map_rc, 0, "every task succeeds in the end, map exit %d",
                  map_rc);
    cr_assert_eq (checker_count_status (checker, "ok"), 20);
    cr_assert_eq (checker_count_attempts (checker, 2), 1,
                  "exactly the killed task ran twice");
    checker_destroy (&checker);
}

//  --------------------------------------------------------------------------
//  2. kill -9 a node supervisor while all its children are busy

//  Node A runs `slow` in 5 s, node B in 0.2 s: A's tasks can only finish in
//  time if they are dispatched again to B once A is found lost.
static void
s_kill_node_while_busy (bool check_grandchildren)
{
    s_cluster_t cluster = s_cluster_start (false);
    pid_t node_a = s_start_node (&cluster, "A", 2, SLOW_HANDLER ("5"));
    s_start_node (&cluster, "B", 2, SLOW_HANDLER ("0.2"));
    s_wait_joined ("A");
    s_wait_joined ("B");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 16, "task %zu", SIZE_MAX, NULL);
    pid_t map = s_start_map (&cluster, "slow", inputs, output, NULL);

    s_pids_t children;
    children.count = s_wait_busy (node_a, 2, children.pids, 8, 10000);
    cr_assert_eq (children.count, 2);
    for (size_t i = 0; i < children.count; i++)
        procs_track_group (children.pids[i]);
    procs_kill_9 (node_a);
    int64_t killed = zclock_mono ();

    //  Its children die with it (PR_SET_PDEATHSIG)
    int64_t gone = s_wait_gone (&children, 2000);
    cr_assert_geq (gone, 0, "children of the killed node still run");
    char *log = procs_path ("broker.log");
    cr_assert_geq (
        s_wait_text (log, "re-queueing 2 tasks of node A", DETECTION_MS + 2000),
        0, "the broker did not re-queue A's tasks");
    int64_t detected = zclock_mono () - killed;
    cr_assert_lt (detected, DETECTION_MS + 400,
                  "node A was found lost after %lld ms", (long long)detected);
    int rc = procs_wait (map, 10000);
    int64_t finished = zclock_mono () - killed;
    cr_assert_eq (rc, 0, "map exit %d", rc);
    //  Bound: detection, plus one 0.2 s task, plus slack
    cr_assert_lt (finished, DETECTION_MS + 1500,
                  "A's tasks were done %lld ms after the kill",
                  (long long)finished);
    fprintf (stderr,
             "faults: kill -9 node: children gone after %lld ms, node lost "
             "after %lld ms (bound %d ms), map done on B %lld ms after "
             "the kill\n",
             (long long)gone, (long long)detected, DETECTION_MS,
             (long long)finished);
    checker_t *checker = s_check (inputs, output, "\n");
    cr_assert_eq (checker_count_status (checker, "ok"), 16);
    size_t redone = 0;
    for (size_t i = 0; i < 16; i++) {
        const checker_entry_t *entry = checker_entry (checker, i);
        cr_assert (entry && entry->node, "input %zu names no node", i);
        cr_assert_str_eq (entry->node, "B", "input %zu ran on %s", i,
                          entry->node);
        if (entry->attempts > 1)
            redone++;
    }
    cr_assert_eq (redone, 2, "the two tasks of A ran again: %zu", redone);
    checker_destroy (&checker);

    if (check_grandchildren) {
        //  Each child led its own process group, where its command and the
        //  command's `sleep 5` ran: nothing of it may be left
        int64_t deadline = zclock_mono () + 1000;
        size_t left = 0;
        do {
            left = 0;
            for (size_t i = 0; i < children.count; i++)
                left += s_group_members (children.pids[i]);
            if (left)
                usleep (5000); //  polling /proc, with a deadline
        } while (left && zclock_mono () < deadline);
        cr_assert_eq (left, 0,
                      "%zu processes of the killed node's tasks outlived it "
                      "by 1 s",
                      left);
    }
    free (log);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

Test (faults, kill_9_busy_node_its_tasks_run_elsewhere)
{
    s_kill_node_while_busy (false);
}

//  The node's children die with it and take their process groups along
//  (worker/child.c): the exec command's `sleep 5`, which no PDEATHSIG
//  reaches, must be gone too.
Test (faults, kill_9_busy_node_leaves_no_grandchildren)
{
    s_kill_node_while_busy (true);
}

//  --------------------------------------------------------------------------
//  4. A poison task among 1,000 good ones

Test (faults, poison_task_fails_for_good_and_the_rest_completes)
{
    s_cluster_t cluster = s_cluster_start (false);
    char *poison_log = procs_path ("poison.runs");
    //  Each result names the child that ran it ($PPID of the command)
    char *handler =
        zsys_sprintf ("--handler 'mixed=exec:read x; case $x in "
                      "poison*) echo run >> %s; kill -ABRT $PPID; sleep 1;; "
                      "*) echo \"$x $PPID\";; esac'",
                      poison_log);
    pid_t node = s_start_node (&cluster, "A", 2, handler);
    free (handler);
    s_wait_joined ("A");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 1001, "good %zu", 500, "poison");
    int64_t start = zclock_mono ();
    pid_t map = s_start_map (&cluster, "mixed", inputs, output, "--retries 2");
    int rc = procs_wait (map, 40000);
    int64_t elapsed = zclock_mono () - start;
    cr_assert_eq (rc, 1, "map exits 1 for the failed task, not %d", rc);
    cr_assert_lt (elapsed, 30000, "1,001 tasks took %lld ms",
                  (long long)elapsed);

    checker_t *checker = s_check (inputs, output, NULL);
    checker_report_t report = checker_report (checker);
    cr_assert_eq (report.ok, 1000);
    cr_assert_eq (report.failed, 1);
    const checker_entry_t *poison = checker_entry (checker, 500);
    cr_assert_str_eq (poison->status, "crashed");
    cr_assert_eq (poison->attempts, 3, "the poison ran %u times",
                  poison->attempts);
    cr_assert_eq (s_count_lines (poison_log), 3,
                  "the poison ran exactly its 3 attempts");

    //  Good results are their input and the child that ran them; the
    //  children that ran tasks are the 2 first and 3 replacements at most
    zlistx_t *child_pids = zlistx_new ();
    zlistx_set_comparator (child_pids, (zlistx_comparator_fn *)strcmp);
    zlistx_set_duplicator (child_pids, (zlistx_duplicator_fn *)strdup);
    zlistx_set_destructor (child_pids, (zlistx_destructor_fn *)zstr_free);
    for (size_t i = 0; i < 1001; i++) {
        if (i == 500)
            continue;
        const checker_entry_t *entry = checker_entry (checker, i);
        char good[32];
        int length = snprintf (good, sizeof good, "good %zu ", i);
        cr_assert (entry->result_size > (size_t)length
                       && memcmp (entry->result, good, (size_t)length) == 0,
                   "input %zu: %s", i, entry->result);
        const char *child_pid = entry->result + length;
        if (!zlistx_find (child_pids, (void *)child_pid))
            zlistx_add_end (child_pids, (void *)child_pid);
    }
    size_t forks = zlistx_size (child_pids);
    zlistx_destroy (&child_pids);
    cr_assert_leq (forks, 5, "%zu children ran good tasks: forking in a loop",
                   forks);
    size_t busy;
    pid_t now[8];
    cr_assert_eq (s_node_children (node, now, 8, &busy), 2,
                  "the node still has its 2 children");
    fprintf (stderr,
             "faults: poison task among 1,000: crashed after 3 attempts, "
             "%zu children ran tasks, map done in %lld ms\n",
             forks, (long long)elapsed);
    checker_destroy (&checker);
    free (poison_log);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  5. SIGTERM a busy node

Test (faults, sigterm_busy_node_drains_and_exits_0)
{
    s_cluster_t cluster = s_cluster_start (false);
    pid_t node_a = s_start_node (&cluster, "A", 2, SLOW_HANDLER ("0.5"));
    s_start_node (&cluster, "B", 2, SLOW_HANDLER ("0.2"));
    s_wait_joined ("A");
    s_wait_joined ("B");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 30, "task %zu", SIZE_MAX, NULL);
    pid_t map = s_start_map (&cluster, "slow", inputs, output, NULL);

    pid_t children[8];
    cr_assert_eq (s_wait_busy (node_a, 2, children, 8, 10000), 2);
    cr_assert_eq (kill (node_a, SIGTERM), 0);
    int64_t signalled = zclock_mono ();
    int rc = procs_wait (node_a, 5000);
    int64_t drained = zclock_mono () - signalled;
    cr_assert_eq (rc, 0, "node A exit status %d after SIGTERM", rc);
    //  Its running tasks take 0.5 s at most
    cr_assert_lt (drained, 2000, "A took %lld ms to drain", (long long)drained);
    rc = procs_wait (map, 20000);
    int64_t finished = zclock_mono () - signalled;
    cr_assert_eq (rc, 0, "map exit %d", rc);
    fprintf (stderr,
             "faults: SIGTERM busy node: drained and exited 0 after %lld ms, "
             "map done %lld ms after the signal\n",
             (long long)drained, (long long)finished);
    checker_t *checker = s_check (inputs, output, "\n");
    cr_assert_eq (checker_count_status (checker, "ok"), 30);
    //  A finished what it ran: no task was run twice
    cr_assert_eq (checker_count_attempts (checker, 2), 0,
                  "a drained node's tasks are not run again");
    size_t on_a = 0;
    for (size_t i = 0; i < 30; i++)
        on_a += strcmp (checker_entry (checker, i)->node, "A") == 0;
    cr_assert_geq (on_a, 2, "A's running tasks were reported by A");
    char *log = procs_path ("A.log");
    cr_assert (s_file_has (log, "drained"), "A logged its drain");
    free (log);
    checker_destroy (&checker);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  6. kill -9 the sink mid-run, restart it on the same endpoint

//  The client's DEALER reconnects by itself to the new sink on the same
//  endpoint; the new sink, which holds no watches of the client, answers
//  its HEARTBEAT with BYE (SPEC.md 6) and the client watches every task it
//  waits for again.
Test (faults, kill_9_sink_between_results_then_restart_completes_the_map)
{
    s_cluster_t cluster = s_cluster_start (true);
    char *started = procs_path ("started");
    char *handler =
        zsys_sprintf ("--handler 'slow=exec:read x; echo \"$x\" >> %s; "
                      "sleep 0.5; echo \"$x\"'",
                      started);
    pid_t node = s_start_node (&cluster, "A", 2, handler);
    free (handler);
    s_wait_joined ("A");
    char *sink_log = procs_path ("sink.log");
    cr_assert_geq (s_wait_text (sink_log, "registered", 10000), 0,
                   "the sink never registered");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 12, "task %zu", SIZE_MAX, NULL);
    pid_t map = s_start_map (&cluster, "slow", inputs, output, NULL);

    //  Kill the sink when the second pair of tasks runs and every result
    //  of the first pair has reached the map: no result lives only in the
    //  sink (it keeps them in memory, by design until durability lands)
    int64_t deadline = zclock_mono () + 10000;
    bool ready = false;
    while (!ready && zclock_mono () < deadline) {
        pid_t children[8];
        size_t busy;
        s_node_children (node, children, 8, &busy);
        size_t started_count = s_count_lines (started);
        ready = busy == 2 && started_count >= 4
                && s_count_lines (output) == started_count - 2;
        if (!ready)
            usleep (2000); //  polling files, with a deadline
    }
    cr_assert (ready, "never saw two tasks running and the others done");
    procs_kill_9 (cluster.sink);
    int64_t killed = zclock_mono ();
    size_t done_before = s_count_lines (output);
    cluster.sink = procs_spawn (
        "exec %s sink --listen %s --broker %s >> %s/sink2.log 2>&1",
        procs_drover (), cluster.sink_endpoint, cluster.endpoint, procs_dir ());
    int rc = procs_wait (map, 20000);
    int64_t finished = zclock_mono () - killed;
    cr_assert_eq (rc, 0, "map exit %d", rc);
    //  Bound: the node sends unstored results again after DETECTION_MS;
    //  the client watches again after as long; then 4 more pairs of 0.5 s
    cr_assert_lt (finished, 2 * DETECTION_MS + 4 * 500 + 2000,
                  "the map finished %lld ms after the sink was killed",
                  (long long)finished);
    fprintf (stderr,
             "faults: kill -9 sink (%zu results delivered, 2 running), "
             "restart: map done %lld ms after the kill\n",
             done_before, (long long)finished);
    checker_t *checker = s_check (inputs, output, "\n");
    cr_assert_eq (checker_count_status (checker, "ok"), 12);
    checker_destroy (&checker);
    free (sink_log);
    free (started);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

//  What holds today: a node keeps the results the dead sink never
//  STORED and sends them to the new one; a client that connects after the
//  restart gets every result. Through libdrover, ids known at submit.
Test (faults, kill_9_sink_node_redelivers_unstored_results)
{
    s_cluster_t cluster = s_cluster_start (true);
    char *started = procs_path ("started");
    char *handler = zsys_sprintf ("--handler 'slow=exec:read x; echo \"$x\" "
                                  ">> %s; sleep 0.3; echo \"$x\"'",
                                  started);
    pid_t node = s_start_node (&cluster, "A", 2, handler);
    free (handler);
    s_wait_joined ("A");
    char *sink_log = procs_path ("sink.log");
    cr_assert_geq (s_wait_text (sink_log, "registered", 10000), 0,
                   "the sink never registered");
    char *node_log = procs_path ("A.log");
    cr_assert_geq (s_wait_text (node_log, "sending results to sink", 10000), 0,
                   "the node never learnt the sink");

    //  Six tasks: the first pair runs when the sink dies, and the second
    //  pair is started only after the first pair's results went to it
    checker_t *checker = checker_new ();
    drover_client_t *client = drover_client_new ();
    cr_assert_eq (drover_client_connect (client, cluster.endpoint, 5000), 0,
                  "%s", drover_client_reason (client));
    enum { TASKS = 6 };
    char inputs[TASKS][16];
    drover_payload_t payloads[TASKS];
    uint64_t ids[TASKS];
    for (size_t i = 0; i < TASKS; i++) {
        snprintf (inputs[i], sizeof inputs[i], "task %zu", i);
        payloads[i] = (drover_payload_t){inputs[i], strlen (inputs[i])};
    }
    cr_assert_eq (
        drover_client_submit_batch (client, "slow", payloads, TASKS, NULL, ids),
        0, "%s", drover_client_reason (client));
    for (size_t i = 0; i < TASKS; i++) {
        cr_assert_eq (checker_submit (checker, i, ids[i]), 0);
        char expected[32];
        int size = snprintf (expected, sizeof expected, "%s\n", inputs[i]);
        checker_expect (checker, i, expected, (size_t)size);
    }
    drover_client_destroy (&client);
    pid_t children[8];
    s_wait_busy (node, 2, children, 8, 10000);
    procs_kill_9 (cluster.sink);
    int64_t killed = zclock_mono ();
    //  Results of the first pair go to the dead sink; wait for the next
    int64_t deadline = killed + 5000;
    while (s_count_lines (started) < 4 && zclock_mono () < deadline)
        usleep (5000); //  polling a file, with a deadline
    cr_assert_geq (s_count_lines (started), 4, "the node stopped working");
    cluster.sink = procs_spawn (
        "exec %s sink --listen %s --broker %s >> %s/sink2.log 2>&1",
        procs_drover (), cluster.sink_endpoint, cluster.endpoint, procs_dir ());
    int64_t restarted = zclock_mono ();

    client = drover_client_new ();
    cr_assert_eq (drover_client_connect (client, cluster.endpoint, 5000), 0,
                  "%s", drover_client_reason (client));
    drover_result_t *results[TASKS] = {NULL};
    int rc = drover_client_wait (client, ids, TASKS, 10000, true, results);
    int64_t finished = zclock_mono ();
    for (size_t i = 0; i < TASKS; i++)
        if (results[i]) {
            checker_result (checker, i, results[i]->id,
                            results[i]->code ? "failed" : "ok",
                            results[i]->attempt, results[i]->node,
                            results[i]->payload, results[i]->payload_size);
            drover_result_destroy (&results[i]);
        }
    checker_report_t report = checker_report (checker);
    if (!checker_ok (&report))
        checker_print (checker, stderr);
    cr_assert_eq (rc, 0, "waiting for the results: %s",
                  drover_client_reason (client));
    cr_assert (checker_ok (&report));
    cr_assert_eq (report.ok, TASKS);
    //  Every result came from the first attempt: kept, not run again
    cr_assert_eq (checker_count_attempts (checker, 2), 0);
    //  Bound: the node sends unstored results again after DETECTION_MS;
    //  the last pair runs 0.3 s
    cr_assert_lt (finished - restarted, DETECTION_MS + 300 + 1500,
                  "results came %lld ms after the restart",
                  (long long)(finished - restarted));
    fprintf (stderr,
             "faults: kill -9 sink, restart: the node's unstored results "
             "delivered, all %d results read %lld ms after the restart "
             "(%lld ms after the kill)\n",
             TASKS, (long long)(finished - restarted),
             (long long)(finished - killed));
    drover_client_destroy (&client);
    checker_destroy (&checker);
    free (node_log);
    free (sink_log);
    free (started);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  7. kill -9 the broker mid-map, restart it (in memory)

//  Issue 4's "client-side recovery". A restarted in-memory broker (and
//  its embedded sink) has forgotten every task the map submitted; the map
//  asks the broker after a silence, sees the new instance in WELCOME and
//  resubmits what it still waits for under the same ids (the broker
//  deduplicates); the new sink answers BYE to the client's HEARTBEAT, so
//  the client watches again. Every result comes exactly once.
Test (faults, kill_9_broker_mid_map_then_restart_completes_the_map)
{
    s_cluster_t cluster = s_cluster_start (false);
    s_start_node (&cluster, "A", 2, SLOW_HANDLER ("0.2"));
    s_wait_joined ("A");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 20, "task %zu", SIZE_MAX, NULL);
    pid_t map = s_start_map (&cluster, "slow", inputs, output, NULL);
    int64_t deadline = zclock_mono () + 10000;
    while (s_count_lines (output) < 4 && zclock_mono () < deadline)
        usleep (5000); //  polling a file, with a deadline
    cr_assert_geq (s_count_lines (output), 4, "the map never got going");
    procs_kill_9 (cluster.broker);
    int64_t killed = zclock_mono ();
    cluster.broker =
        procs_spawn ("exec %s broker --listen %s --sink-listen %s "
                     "--heartbeat-ms %d --liveness %d >> %s/broker2.log 2>&1",
                     procs_drover (), cluster.endpoint, cluster.sink_endpoint,
                     HEARTBEAT_MS, LIVENESS, procs_dir ());
    int rc = procs_wait (map, 20000);
    int64_t finished = zclock_mono () - killed;
    fprintf (stderr,
             "faults: kill -9 broker, restart: map exit %d %lld ms after the "
             "kill\n",
             rc, (long long)finished);
    cr_assert_eq (rc, 0, "map exit %d", rc);
    checker_t *checker = s_check (inputs, output, "\n");
    cr_assert_eq (checker_count_status (checker, "ok"), 20);
    checker_destroy (&checker);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  3. SIGSTOP past the limits: a stopped child meets its hard time limit;
//     a stopped node is declared lost and its late results are refused

Test (faults, sigstop_child_past_its_hard_limit_times_out_and_retries)
{
    s_cluster_t cluster = s_cluster_start (false);
    pid_t node = s_start_node (&cluster, "A", 2, SLOW_HANDLER ("0.2"));
    s_wait_joined ("A");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 20, "task %zu", SIZE_MAX, NULL);
    pid_t map = s_start_map (&cluster, "slow", inputs, output,
                             "--timeout-ms 800 --retries 1");
    pid_t children[8];
    cr_assert_eq (s_wait_busy (node, 2, children, 8, 10000), 2);
    pid_t victim = children[0];
    cr_assert_eq (kill (victim, SIGSTOP), 0);
    int64_t stopped = zclock_mono ();
    //  The hard limit kills the stopped child (SIGKILL reaches it)
    int64_t killed = -1;
    while (killed < 0 && zclock_mono () < stopped + 5000) {
        if (!s_alive (victim))
            killed = zclock_mono () - stopped;
        else
            usleep (2000); //  polling /proc, with a deadline
    }
    cr_assert_geq (killed, 0, "the stopped child outlived its time limit");
    cr_assert_lt (killed, 800 + 500, "killed %lld ms after SIGSTOP",
                  (long long)killed);
    int rc = procs_wait (map, 20000);
    int64_t finished = zclock_mono () - stopped;
    cr_assert_eq (rc, 0, "the timed-out task succeeded on retry, map exit %d",
                  rc);
    checker_t *checker = s_check (inputs, output, "\n");
    cr_assert_eq (checker_count_status (checker, "ok"), 20);
    cr_assert_eq (checker_count_attempts (checker, 2), 1,
                  "exactly the stopped task ran twice");
    fprintf (stderr,
             "faults: SIGSTOP child past its 800 ms limit: killed %lld ms "
             "after the stop, map done %lld ms after it\n",
             (long long)killed, (long long)finished);
    checker_destroy (&checker);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

Test (faults, sigstop_node_is_lost_and_its_late_results_are_refused)
{
    s_cluster_t cluster = s_cluster_start (false);
    pid_t a = s_start_node (&cluster, "A", 2, SLOW_HANDLER ("0.5"));
    s_wait_joined ("A");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 12, "task %zu", SIZE_MAX, NULL);
    pid_t map = s_start_map (&cluster, "slow", inputs, output, NULL);
    pid_t children[8];
    cr_assert_eq (s_wait_busy (a, 2, children, 8, 10000), 2);
    //  Stop the supervisor (its children finish their commands meanwhile)
    cr_assert_eq (kill (a, SIGSTOP), 0);
    int64_t stopped = zclock_mono ();
    pid_t b = s_start_node (&cluster, "B", 2, SLOW_HANDLER ("0.5"));
    char *log = procs_path ("broker.log");
    int64_t lost = s_wait_text (log, "node A", 10000);
    cr_assert_geq (lost, 0);
    lost = s_wait_text (log, "expired", 5000);
    cr_assert_geq (lost, 0, "node A was never declared lost");
    lost = zclock_mono () - stopped;
    //  A wakes up after B took over its tasks: its late results come in
    int rc = procs_wait (map, 30000);
    cr_assert_eq (rc, 0, "map exit %d", rc);
    cr_assert_eq (kill (a, SIGCONT), 0);
    int64_t refused = s_wait_text (log, "stale result of task", 10000);
    cr_assert_geq (refused, 0, "the broker refused none of A's late results");
    checker_t *checker = s_check (inputs, output, "\n");
    cr_assert_eq (checker_count_status (checker, "ok"), 12);
    fprintf (stderr,
             "faults: SIGSTOP node: declared lost %lld ms after the stop, "
             "its late results refused %lld ms after SIGCONT\n",
             (long long)lost, (long long)refused);
    checker_destroy (&checker);
    (void)b;
    free (log);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  8. A task over --max-memory-per-child is killed and reported as such

Test (faults, a_task_over_the_memory_limit_is_killed_and_reported)
{
    s_cluster_t cluster = s_cluster_start (false);
    //  Input 3 makes sort hold a 150 MB line for 5 s: grandchildren of the
    //  child. sort waits for the end of its input, which comes only after
    //  the sleep, so the memory stays resident until then: the check, every
    //  60 ms and later under load, cannot miss it (sorting a 150 MB line
    //  and exiting at once is over in some 50 to 75 ms, less than the
    //  interval between two checks)
    pid_t node = s_start_node (
        &cluster, "A", 2,
        "--max-memory-per-child 65536 "
        "--handler 'mem=exec:read x; case $x in big*) { head -c 150000000 "
        "/dev/zero; sleep 5; } | sort > /dev/null; echo no;; "
        "*) echo \"$x\";; esac'");
    s_wait_joined ("A");
    char *inputs = procs_path ("inputs"), *output = procs_path ("output");
    s_write_inputs (inputs, 10, "task %zu", 3, "big");
    int64_t start = zclock_mono ();
    pid_t map = s_start_map (&cluster, "mem", inputs, output, NULL);
    int rc = procs_wait (map, 20000);
    int64_t took = zclock_mono () - start;
    cr_assert_eq (rc, 1, "the killed task makes map exit 1, not %d", rc);
    checker_t *checker = s_check (inputs, output, "\n");
    cr_assert_eq (checker_count_status (checker, "memlimit"), 1);
    cr_assert_eq (checker_count_status (checker, "ok"), 9);
    char *text = procs_read (output, NULL);
    cr_assert (strstr (text, "max_rss_kb"), "%s", text);
    free (text);
    cr_assert (s_alive (node), "the node survived");
    fprintf (stderr,
             "faults: memory limit: task killed and map done in "
             "%lld ms (the task would have run 5 s)\n",
             (long long)took);
    cr_assert_lt (took, 4000);
    checker_destroy (&checker);
    free (inputs);
    free (output);
    s_cluster_free (&cluster);
}

//  --------------------------------------------------------------------------
//  The checker itself: it must be able to fail

TestSuite (faults_checker);

LEAK_CHECKED_TEST (faults_checker, a_clean_run_passes)
{
    checker_t *checker = checker_new ();
    cr_assert_eq (checker_submit_lines (checker, "a\nb\nc\n", ""), 3);
    cr_assert_eq (
        checker_feed_json (checker,
                           "{\"index\":2,\"id\":3,\"status\":\"ok\","
                           "\"attempts\":1,\"node\":\"n:1\",\"elapsed\":"
                           "0.000070,\"result\":\"c\"}\n"
                           "{\"index\":0,\"id\":1,\"status\":\"ok\","
                           "\"attempts\":2,\"node\":null,\"result\":\"a\"}\n"
                           "{\"index\":1,\"id\":2,\"status\":\"crashed\","
                           "\"attempts\":3,\"node\":\"n:1\",\"elapsed\":1e-3,"
                           "\"result\":\"\",\"code\":\"DROVER_ECRASHED\","
                           "\"error\":\"killed by \\\"SIGABRT\\\"\","
                           "\"signal\":6}\n"),
        3);
    checker_report_t report = checker_report (checker);
    cr_assert (checker_ok (&report));
    cr_assert_eq (report.submitted, 3);
    cr_assert_eq (report.ok, 2);
    cr_assert_eq (report.failed, 1);
    cr_assert_eq (checker_count_status (checker, "crashed"), 1);
    cr_assert_eq (checker_count_attempts (checker, 2), 2);
    const checker_entry_t *entry = checker_entry (checker, 2);
    cr_assert_eq (entry->id, 3);
    cr_assert_str_eq (entry->node, "n:1");
    cr_assert_str_eq (entry->result, "c");
    cr_assert_null (checker_entry (checker, 0)->node);
    checker_destroy (&checker);
    cr_assert_null (checker);
}

LEAK_CHECKED_TEST (faults_checker, finds_a_lost_result)
{
    checker_t *checker = checker_new ();
    checker_submit_lines (checker, "a\nb\nc", "");
    checker_feed_json (checker, "{\"index\":0,\"id\":1,\"status\":\"ok\","
                                "\"attempts\":1,\"result\":\"a\"}\n"
                                "{\"index\":2,\"id\":3,\"status\":\"ok\","
                                "\"attempts\":1,\"result\":\"c\"}\n");
    checker_report_t report = checker_report (checker);
    cr_assert_not (checker_ok (&report));
    cr_assert_eq (report.lost, 1);
    cr_assert_eq (report.duplicated + report.unexpected + report.mismatched, 0);
    cr_assert_eq (checker_entry (checker, 1)->results, 0);
    checker_destroy (&checker);
}

LEAK_CHECKED_TEST (faults_checker, finds_a_duplicated_result)
{
    checker_t *checker = checker_new ();
    checker_submit_lines (checker, "a\nb\n", NULL);
    const char *line = "{\"index\":1,\"id\":2,\"status\":\"ok\",\"attempts\":1,"
                       "\"result\":\"b\"}\n";
    checker_feed_json (checker, line);
    checker_feed_json (checker, "{\"index\":0,\"status\":\"ok\","
                                "\"attempts\":1,\"id\":1,\"result\":\"a\"}");
    checker_feed_json (checker, line);
    checker_report_t report = checker_report (checker);
    cr_assert_not (checker_ok (&report));
    cr_assert_eq (report.duplicated, 1);
    cr_assert_eq (report.lost + report.unexpected, 0);
    cr_assert_eq (report.results, 3);
    checker_destroy (&checker);
}

LEAK_CHECKED_TEST (faults_checker, finds_unexpected_results)
{
    //  Through the libdrover-style calls: ids known at submit
    checker_t *checker = checker_new ();
    cr_assert_eq (checker_submit (checker, 0, 10), 0);
    cr_assert_eq (checker_submit (checker, 1, 11), 0);
    cr_assert_eq (checker_submit (checker, 1, 12), -1, "index submitted twice");
    cr_assert_eq (checker_submit (checker, 2, 10), -1, "id of another input");
    checker_result (checker, 0, 10, "ok", 1, "n", "x", 1);
    checker_result (checker, 1, 11, "failed", 1, NULL, NULL, 0);
    checker_report_t report = checker_report (checker);
    cr_assert (checker_ok (&report));
    //  An input never submitted, an id of another input, an unknown id
    checker_result (checker, 7, 17, "ok", 1, NULL, "y", 1);
    checker_result (checker, 0, 11, "ok", 1, NULL, "x", 1);
    checker_result (checker, 1, 99, "ok", 1, NULL, "x", 1);
    report = checker_report (checker);
    cr_assert_not (checker_ok (&report));
    cr_assert_eq (report.unexpected, 3);
    cr_assert_eq (report.lost + report.duplicated, 0);
    checker_destroy (&checker);

    //  From map output: an index past the inputs, and an id that a first
    //  result bound to another input
    checker = checker_new ();
    checker_submit_lines (checker, "a\nb\n", NULL);
    checker_feed_json (checker,
                       "{\"index\":0,\"id\":5,\"status\":\"ok\",\"attempts\":1,"
                       "\"result\":\"a\"}\n"
                       "{\"index\":1,\"id\":5,\"status\":\"ok\",\"attempts\":1,"
                       "\"result\":\"b\"}\n"
                       "{\"index\":9,\"id\":6,\"status\":\"ok\",\"attempts\":1,"
                       "\"result\":\"z\"}\n");
    report = checker_report (checker);
    cr_assert_eq (report.unexpected, 2);
    cr_assert_eq (report.lost, 1, "input 1 has no result of its own");
    checker_destroy (&checker);
}

LEAK_CHECKED_TEST (faults_checker, finds_wrong_and_malformed_results)
{
    checker_t *checker = checker_new ();
    checker_submit_lines (checker, "caf\xc3\xa9\nb\nc\n", "");
    checker_feed_json (checker,
                       //  \u escapes and base64 decode to the expected octets
                       "{\"index\":0,\"id\":1,\"status\":\"ok\",\"attempts\":1,"
                       "\"result\":\"caf\\u00e9\"}\n"
                       "{\"index\":1,\"id\":2,\"status\":\"ok\",\"attempts\":1,"
                       "\"result\":\"\\ufffd\",\"result_base64\":\"Yg==\"}\n"
                       //  a wrong result, then lines that do not parse
                       "{\"index\":2,\"id\":3,\"status\":\"ok\",\"attempts\":1,"
                       "\"result\":\"C\"}\n"
                       "{\"index\":3,\"status\":\"ok\"\n"
                       "not json\n"
                       "{\"index\":\"4\",\"status\":\"ok\"}\n");
    checker_report_t report = checker_report (checker);
    cr_assert_not (checker_ok (&report));
    cr_assert_eq (report.mismatched, 1);
    cr_assert_eq (report.malformed, 3);
    cr_assert_eq (report.ok, 3);
    cr_assert_eq (report.lost + report.duplicated + report.unexpected, 0);
    checker_destroy (&checker);
}
