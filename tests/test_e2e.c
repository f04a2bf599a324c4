/*  test_e2e.c - end to end: the real drover binaries, started as processes
    on loopback ports, driven through their command lines.

    The binary comes from $DROVER (set by tests/meson.build). Every process a
    test starts dies with the test (PR_SET_PDEATHSIG) and is killed in the
    test's teardown, so a failing test leaves nothing behind.
*/
#include "procs.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

//  --------------------------------------------------------------------------
//  Processes

static void
s_setup (void)
{
    procs_setup ("e2e");
}

//  Starts a broker on a free port; returns its endpoint (caller frees).
static char *
s_start_broker (void)
{
    int port = procs_free_port ();
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    procs_spawn ("exec %s broker --listen %s --sink-listen tcp://127.0.0.1:%d "
                 "--heartbeat-ms 200 > %s/broker.log 2>&1",
                 procs_drover (), endpoint, procs_free_port (), procs_dir ());
    return endpoint;
}

static void
s_start_worker (const char *endpoint, int children, const char *extra)
{
    procs_spawn ("exec %s worker --connect %s -j %d %s >> %s/worker.log 2>&1",
                 procs_drover (), endpoint, children, extra ? extra : "",
                 procs_dir ());
}

TestSuite (e2e, .init = s_setup, .fini = procs_teardown, .timeout = 180);

//  --------------------------------------------------------------------------

Test (e2e, map_ordered_echo_over_two_nodes_returns_the_input)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2, NULL);
    s_start_worker (endpoint, 2, NULL);
    char *input = procs_path ("input"), *output = procs_path ("output");
    procs_write_lines (input, 20000, "line %zu of the input");
    int64_t start = zclock_mono ();
    int rc = procs_run (120000, "%s map --connect %s --ordered echo < %s > %s",
                        procs_drover (), endpoint, input, output);
    int64_t elapsed = zclock_mono () - start;
    cr_assert_eq (rc, 0, "drover map exited %d", rc);
    char *expected = procs_read (input, NULL), *got = procs_read (output, NULL);
    cr_assert (strcmp (expected, got) == 0, "output differs from input");
    fprintf (stderr,
             "e2e: 20000 echo tasks over 2 nodes x 2 children: "
             "%lld ms, %.0f tasks/s\n",
             (long long)elapsed, 20000.0 * 1000 / (double)elapsed);
    free (expected);
    free (got);
    free (input);
    free (output);
    free (endpoint);
}

Test (e2e, map_in_local_mode_returns_the_input_and_leaves_nothing)
{
    char *input = procs_path ("input"), *output = procs_path ("output");
    char *errors = procs_path ("errors");
    procs_write_lines (input, 20000, "local %zu");
    int64_t start = zclock_mono ();
    int rc = procs_run (
        120000, "DROVER_CONNECT= %s map -j 2 --ordered echo < %s > %s 2> %s",
        procs_drover (), input, output, errors);
    int64_t elapsed = zclock_mono () - start;
    cr_assert_eq (rc, 0, "drover map -j 2 exited %d", rc);
    char *expected = procs_read (input, NULL), *got = procs_read (output, NULL);
    cr_assert (strcmp (expected, got) == 0, "output differs from input");
    //  The broker runs in drover map's process: its log lines stay out of
    //  the user's way (-v shows them)
    char *logged = procs_read (errors, NULL);
    cr_assert_str_eq (logged, "", "drover map -j 2 wrote to stderr");
    free (logged);
    free (errors);
    fprintf (stderr,
             "e2e: 20000 echo tasks in local mode, 2 children: "
             "%lld ms, %.0f tasks/s\n",
             (long long)elapsed, 20000.0 * 1000 / (double)elapsed);
    //  No broker or worker of that map is left
    rc = procs_run (10000, "! pgrep -f '%s (broker|worker)' >/dev/null",
                    procs_drover ());
    cr_assert_eq (rc, 0, "a local-mode process outlived drover map");
    free (expected);
    free (got);
    free (input);
    free (output);
}

Test (e2e, sha256_matches_an_independent_computation)
{
    cr_assert (sodium_init () >= 0);
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2, NULL);
    char *input = procs_path ("input"), *output = procs_path ("output");
    procs_write_lines (input, 300, "payload number %zu");
    int rc = procs_run (60000, "%s map --connect %s --ordered sha256 < %s > %s",
                        procs_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *got = procs_read (output, NULL);
    char *line = got;
    for (size_t i = 0; i < 300; i++) {
        char payload[64];
        snprintf (payload, sizeof payload, "payload number %zu", i);
        unsigned char hash[crypto_hash_sha256_BYTES];
        crypto_hash_sha256 (hash, (unsigned char *)payload, strlen (payload));
        char hex[2 * crypto_hash_sha256_BYTES + 1];
        sodium_bin2hex (hex, sizeof hex, hash, sizeof hash);
        cr_assert (strncmp (line, hex, 64) == 0 && line[64] == '\n',
                   "line %zu: %.64s, expected %s", i, line, hex);
        line += 65;
    }
    cr_assert_eq (*line, 0);
    free (got);
    free (input);
    free (output);
    free (endpoint);
}

Test (e2e, exec_handlers_report_success_exit_status_and_stderr)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2,
                    "--handler 'upper=exec:tr a-z A-Z' "
                    "--handler 'picky=exec:read x; if [ \"$x\" = bad ]; then "
                    "echo \"cannot take $x\" >&2; exit 3; fi; echo \"ok $x\"'");
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors");
    FILE *file = fopen (input, "w");
    fprintf (file, "hello\nworld\n");
    fclose (file);
    //  -c is --connect (and only --connect) in every command
    int rc = procs_run (60000, "%s map -c %s --ordered upper < %s > %s",
                        procs_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *got = procs_read (output, NULL);
    cr_assert_str_eq (got, "HELLO\nWORLD\n");
    free (got);

    file = fopen (input, "w");
    fprintf (file, "good\nbad\nfine\n");
    fclose (file);
    rc = procs_run (
        60000, "%s map --connect %s --ordered --json picky < %s > %s 2> %s",
        procs_drover (), endpoint, input, output, errors);
    cr_assert_neq (rc, 0, "a failed task makes map exit non-zero");
    got = procs_read (output, NULL);
    char *stderr_text = procs_read (errors, NULL);
    cr_assert (strstr (got, "ok good"), "%s", got);
    cr_assert (strstr (got, "ok fine"), "%s", got);
    cr_assert (strstr (stderr_text, "input 1"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "cannot take bad"), "%s", stderr_text);
    cr_assert (strstr (got, "\"index\":1") || strstr (got, "\"index\": 1"),
               "json names the failed input: %s", got);
    free (got);
    free (stderr_text);
    free (input);
    free (output);
    free (errors);
    free (endpoint);
}

Test (e2e, fail_and_crash_are_reported_and_the_rest_completes)
{
    char *endpoint = s_start_broker ();
    //  One handler that fails input 10 and crashes its child on input 20
    s_start_worker (endpoint, 2,
                    "--handler 'mixed=exec:read x; case $x in "
                    "fail*) echo \"failing $x\" >&2; exit 1;; "
                    "crash*) kill -ABRT $PPID; sleep 5;; "
                    "*) echo \"$x\";; esac'");
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors");
    FILE *file = fopen (input, "w");
    for (int i = 0; i < 50; i++)
        fprintf (file, "%s %d\n",
                 i == 10   ? "fail"
                 : i == 20 ? "crash"
                           : "ok",
                 i);
    fclose (file);
    int rc =
        procs_run (60000, "%s map --connect %s --ordered mixed < %s > %s 2> %s",
                   procs_drover (), endpoint, input, output, errors);
    cr_assert_neq (rc, 0, "failures make map exit non-zero");
    char *stderr_text = procs_read (errors, NULL);
    cr_assert (strstr (stderr_text, "input 10"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "failing fail 10"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "input 20"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "CRASHED"), "%s", stderr_text);
    free (stderr_text);
    char *got = procs_read (output, NULL);
    for (int i = 0; i < 50; i++) {
        char line[32];
        snprintf (line, sizeof line, "ok %d\n", i);
        if (i != 10 && i != 20)
            cr_assert (strstr (got, line), "missing %s", line);
    }
    free (got);

    //  The built-in fail and crash handlers too: every input reported
    procs_write_lines (input, 5, "item %zu");
    rc = procs_run (60000, "%s map --connect %s fail < %s > %s 2> %s",
                    procs_drover (), endpoint, input, output, errors);
    cr_assert_neq (rc, 0);
    stderr_text = procs_read (errors, NULL);
    cr_assert (strstr (stderr_text, "input 4"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "item 4"), "the message: %s", stderr_text);
    free (stderr_text);
    size_t printed;
    free (procs_read (output, &printed));
    cr_assert_eq (printed, 0, "failures print nothing in completion order");
    rc = procs_run (60000, "%s map --connect %s crash < %s > %s 2> %s",
                    procs_drover (), endpoint, input, output, errors);
    cr_assert_neq (rc, 0);
    stderr_text = procs_read (errors, NULL);
    cr_assert (strstr (stderr_text, "input 0"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "CRASHED"), "%s", stderr_text);
    free (stderr_text);

    //  The node survived all of that and still serves
    rc = procs_run (60000, "%s map --connect %s --ordered echo < %s > %s",
                    procs_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *expected = procs_read (input, NULL);
    got = procs_read (output, NULL);
    cr_assert_str_eq (got, expected);
    free (expected);
    free (got);
    free (input);
    free (output);
    free (errors);
    free (endpoint);
}

Test (e2e, chunked_maps_return_every_input_in_order_and_fail_per_input)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2,
                    "--handler 'mixed=exec:read x; case $x in "
                    "fail*) echo \"failing $x\" >&2; exit 1;; "
                    "*) echo \"$x\";; esac'");
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors");
    const char *sizes[] = {"7", "auto"};
    for (size_t i = 0; i < 2; i++) {
        procs_write_lines (input, 20000, "chunked line %zu");
        int rc = procs_run (60000,
                            "%s map --connect %s --ordered --chunksize %s "
                            "echo < %s > %s",
                            procs_drover (), endpoint, sizes[i], input, output);
        cr_assert_eq (rc, 0, "--chunksize %s: exit %d", sizes[i], rc);
        char *expected = procs_read (input, NULL),
             *got = procs_read (output, NULL);
        cr_assert (strcmp (expected, got) == 0,
                   "--chunksize %s: the output differs from the input",
                   sizes[i]);
        free (expected);
        free (got);
    }
    //  One input of a chunk fails: only it, with its own index and reason
    FILE *file = fopen (input, "w");
    for (int i = 0; i < 12; i++)
        fprintf (file, "%s %d\n", i == 5 ? "fail" : "ok", i);
    fclose (file);
    int rc = procs_run (60000,
                        "%s map --connect %s --ordered --chunksize 4 mixed "
                        "< %s > %s 2> %s",
                        procs_drover (), endpoint, input, output, errors);
    cr_assert_eq (rc, 1, "a failed input makes map exit 1");
    char *text = procs_read (errors, NULL);
    cr_assert (strstr (text, "input 5") && strstr (text, "failing fail 5"),
               "%s", text);
    cr_assert_null (strstr (text, "input 4"), "%s", text);
    cr_assert_null (strstr (text, "input 6"), "%s", text);
    free (text);
    char *got = procs_read (output, NULL);
    cr_assert_str_eq (got, "ok 0\nok 1\nok 2\nok 3\nok 4\n\nok 6\nok 7\nok 8\n"
                           "ok 9\nok 10\nok 11\n");
    free (got);
    free (input);
    free (output);
    free (errors);
    free (endpoint);
}

Test (e2e, a_chunk_whose_child_crashed_runs_again_as_a_whole)
{
    char *endpoint = s_start_broker ();
    //  Records every run; kills its child the first time it sees "boom 3"
    char *handler =
        zsys_sprintf ("--handler 'flaky=exec:read x; echo \"$x\" >> %s/runs; "
                      "if [ \"$x\" = \"boom 3\" ] && [ ! -e %s/mark ]; then "
                      "touch %s/mark; kill -9 $PPID; sleep 5; fi; echo \"$x\"'",
                      procs_dir (), procs_dir (), procs_dir ());
    s_start_worker (endpoint, 1, handler);
    char *input = procs_path ("input"), *output = procs_path ("output");
    procs_write_lines (input, 8, "boom %zu");
    int rc = procs_run (60000,
                        "%s map --connect %s --ordered --chunksize 4 --retries "
                        "1 flaky < %s > %s",
                        procs_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0, "exit %d", rc);
    char *expected = procs_read (input, NULL), *got = procs_read (output, NULL);
    cr_assert_str_eq (got, expected);
    //  The first chunk (inputs 0-3) ran twice, the second once
    char *runs_path = procs_path ("runs");
    char *runs = procs_read (runs_path, NULL);
    size_t counts[8] = {0};
    for (char *line = strtok (runs, "\n"); line; line = strtok (NULL, "\n")) {
        unsigned n;
        cr_assert_eq (sscanf (line, "boom %u", &n), 1, "%s", line);
        cr_assert_lt (n, 8);
        counts[n]++;
    }
    for (size_t i = 0; i < 8; i++)
        cr_assert_eq (counts[i], i < 4 ? 2 : 1, "input %zu ran %zu times", i,
                      counts[i]);
    free (runs);
    free (runs_path);
    free (expected);
    free (got);
    free (input);
    free (output);
    free (handler);
    free (endpoint);
}

//  A chunk that fails for good as a whole (its child crashed, or it passed
//  its time limit) runs each of its inputs again alone (SPEC.md 7.7): only
//  the input at fault fails. The handlers record every run in DIR/runs.

//  A handler that kills its child (the command's parent) for the inputs
//  matched by a shell case pattern, and echoes the others.
#define CRASH_HANDLER                                                          \
    "--handler 'boom=exec:read x; echo \"$x\" >> %s/runs; case \"$x\" in "     \
    "%s) kill -9 $PPID; sleep 5;; esac; echo \"$x\"'"

//  Counts the runs of each input "item N" in DIR/runs: runs[N].
static void
s_count_item_runs (size_t *runs, size_t count)
{
    memset (runs, 0, count * sizeof (size_t));
    char *path = procs_path ("runs");
    char *text = procs_read (path, NULL);
    for (char *line = strtok (text, "\n"); line; line = strtok (NULL, "\n")) {
        unsigned n;
        cr_assert_eq (sscanf (line, "item %u", &n), 1, "%s", line);
        cr_assert_lt (n, count);
        runs[n]++;
    }
    free (text);
    free (path);
}

//  The ordered output of count inputs "item N" of which the bad ones
//  failed (an empty line each).
static char *
s_expected_with_gaps (size_t count, const size_t *bad, size_t bad_count)
{
    char *text = (char *)calloc (count * 16 + 1, 1);
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        bool failed = false;
        for (size_t j = 0; j < bad_count; j++)
            failed |= bad[j] == i;
        at += (size_t)(failed ? sprintf (text + at, "\n")
                              : sprintf (text + at, "item %zu\n", i));
    }
    return text;
}

//  Checks map --json output: every index 0..count-1 exactly once, the bad
//  ones failed with code (and their own task id), the others with their
//  input as result.
static void
s_check_json_results (const char *path, size_t count, const size_t *bad,
                      size_t bad_count, const char *code)
{
    char *text = procs_read (path, NULL);
    bool *seen = (bool *)calloc (count, sizeof (bool));
    size_t lines = 0;
    for (char *line = strtok (text, "\n"); line; line = strtok (NULL, "\n")) {
        unsigned long long index;
        cr_assert_eq (sscanf (line, "{\"index\":%llu,", &index), 1, "%s", line);
        cr_assert_lt (index, count, "%s", line);
        cr_assert_not (seen[index], "input %llu came twice", index);
        seen[index] = true;
        lines++;
        bool failed = false;
        for (size_t j = 0; j < bad_count; j++)
            failed |= bad[j] == index;
        if (failed) {
            char want[64];
            snprintf (want, sizeof want, "\"code\":\"%s\"", code);
            cr_assert (strstr (line, want), "input %llu: %s", index, line);
            cr_assert_null (strstr (line, "\"id\":null"), "%s", line);
        }
        else {
            char want[64];
            snprintf (want, sizeof want, "\"result\":\"item %llu\\n\"", index);
            cr_assert (strstr (line, want), "input %llu: %s", index, line);
            cr_assert_null (strstr (line, "\"code\""), "%s", line);
        }
    }
    cr_assert_eq (lines, count);
    free (seen);
    free (text);
}

//  Lines of text that contain what.
static size_t
s_count_lines_with (const char *text, const char *what)
{
    size_t count = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr (line, '\n');
        size_t size = end ? (size_t)(end - line) : strlen (line);
        const char *found = strstr (line, what);
        if (found && found < line + size)
            count++;
        line = end ? end + 1 : NULL;
    }
    return count;
}

//  Runs `drover map --ordered --chunksize 4 OPTIONS handler` at endpoint
//  over inputs "item 0" to "item 11" and checks that only input bad
//  failed, alone (its own task), with code: every other line is its input
//  (echoed), and map exits 1.
static void
s_map_fails_only (const char *endpoint, const char *options,
                  const char *handler, size_t bad, const char *code)
{
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors");
    procs_write_lines (input, 12, "item %zu");
    int rc = procs_run (60000,
                        "%s map --connect %s --ordered --chunksize 4 %s %s "
                        "< %s > %s 2> %s",
                        procs_drover (), endpoint, options, handler, input,
                        output, errors);
    char *text = procs_read (errors, NULL);
    cr_assert_eq (rc, 1, "a failed input makes map exit 1: %s", text);
    char *expected = s_expected_with_gaps (12, &bad, 1),
         *got = procs_read (output, NULL);
    cr_assert_str_eq (got, expected);
    cr_assert_eq (s_count_lines_with (text, "drover map: input "), 1, "%s",
                  text);
    char own[64];
    snprintf (own, sizeof own, "drover map: input %zu (task ", bad);
    cr_assert (strstr (text, own), "%s", text);
    cr_assert (strstr (text, code), "%s", text);
    free (text);
    free (expected);
    free (got);
    free (input);
    free (output);
    free (errors);
}

Test (e2e, a_chunk_whose_child_crashes_for_good_fails_only_the_input_at_fault)
{
    char *endpoint = s_start_broker ();
    char *handler = zsys_sprintf (CRASH_HANDLER, procs_dir (), "\"item 5\"");
    s_start_worker (endpoint, 2, handler);
    //  Inputs 4-7 are a chunk; its child crashes at input 5, twice; then
    //  input 5 fails alone, as its own task, crashed
    s_map_fails_only (endpoint, "--retries 1 --retry-delay-ms 10", "boom", 5,
                      "DROVER_ECRASHED");
    //  The chunk ran twice (up to its crash), then each input alone, with
    //  the map's retries: input 5 crashed twice more
    size_t runs[12];
    s_count_item_runs (runs, 12);
    size_t want[12] = {1, 1, 1, 1, 3, 4, 1, 1, 1, 1, 1, 1};
    for (size_t i = 0; i < 12; i++)
        cr_assert_eq (runs[i], want[i], "input %zu ran %zu times", i, runs[i]);
    free (handler);
    free (endpoint);
}

Test (e2e, a_chunk_past_its_time_limit_fails_only_the_slow_input)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2,
                    "--handler 'nap=exec:read x; case \"$x\" in "
                    "\"item 6\") sleep 30;; esac; echo \"$x\"'");
    s_map_fails_only (endpoint, "--retries 0 --timeout-ms 1500", "nap", 6,
                      "DROVER_ETIMELIMIT");
    free (endpoint);
}

Test (e2e, split_chunks_keep_the_order_and_give_each_input_once)
{
    char *endpoint = s_start_broker ();
    //  Two culprits in one chunk of 7 (98-104), one in another
    char *handler = zsys_sprintf (CRASH_HANDLER, procs_dir (),
                                  "\"item 100\"|\"item 103\"|\"item 250\"");
    s_start_worker (endpoint, 2, handler);
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors");
    procs_write_lines (input, 300, "item %zu");
    size_t bad[] = {100, 103, 250};
    //  In order, with a window of 3 tasks (fewer than a chunk's inputs)
    int rc = procs_run (120000,
                        "%s map --connect %s --ordered -w 3 --chunksize 7 "
                        "--retries 0 boom < %s > %s 2> %s",
                        procs_drover (), endpoint, input, output, errors);
    char *text = procs_read (errors, NULL);
    cr_assert_eq (rc, 1, "%s", text);
    char *expected = s_expected_with_gaps (300, bad, 3),
         *got = procs_read (output, NULL);
    cr_assert_str_eq (got, expected);
    cr_assert_eq (s_count_lines_with (text, "drover map: input "), 3, "%s",
                  text);
    cr_assert_eq (s_count_lines_with (text, "DROVER_ECRASHED"), 3, "%s", text);
    free (text);
    free (got);
    //  As they come, in JSON: each input once, with its own outcome
    rc = procs_run (120000,
                    "%s map --connect %s --json --chunksize 7 --retries 0 "
                    "boom < %s > %s 2> %s",
                    procs_drover (), endpoint, input, output, errors);
    cr_assert_eq (rc, 1);
    s_check_json_results (output, 300, bad, 3, "DROVER_ECRASHED");
    free (expected);
    free (input);
    free (output);
    free (errors);
    free (handler);
    free (endpoint);
}

Test (e2e, a_job_logs_a_split_chunk_once_and_a_rerun_runs_nothing)
{
    char *endpoint = s_start_broker ();
    char *handler = zsys_sprintf (CRASH_HANDLER, procs_dir (), "\"item 5\"");
    s_start_worker (endpoint, 2, handler);
    char *input = procs_path ("input"), *first = procs_path ("first"),
         *second = procs_path ("second"), *errors = procs_path ("errors");
    procs_write_lines (input, 12, "item %zu");
    size_t bad[] = {5};
    char *command = zsys_sprintf (
        "%s map --connect %s --json --chunksize 4 --retries 0 --job %s/job "
        "boom < %s",
        procs_drover (), endpoint, procs_dir (), input);
    int rc = procs_run (60000, "%s > %s 2> %s", command, first, errors);
    cr_assert_eq (rc, 1);
    s_check_json_results (first, 12, bad, 1, "DROVER_ECRASHED");
    size_t runs[12], again[12];
    procs_wait_idle (endpoint);
    s_count_item_runs (runs, 12);
    //  Run again: every result, the split chunk's too, comes from the log
    rc = procs_run (60000, "%s > %s 2> %s", command, second, errors);
    char *text = procs_read (errors, NULL);
    cr_assert_eq (rc, 1, "%s", text);
    cr_assert (strstr (text, "is complete: all 12 results came from the job "
                             "log; nothing was run"),
               "%s", text);
    s_check_json_results (second, 12, bad, 1, "DROVER_ECRASHED");
    s_count_item_runs (again, 12);
    cr_assert_eq (memcmp (runs, again, sizeof runs), 0, "an input ran again");
    free (text);
    free (command);
    free (input);
    free (first);
    free (second);
    free (errors);
    free (handler);
    free (endpoint);
}

Test (e2e, a_job_killed_while_a_chunk_is_split_resumes_with_each_input_once)
{
    char *endpoint = s_start_broker ();
    //  Input 5 crashes its child; inputs 6 and 7 take a while alone, so
    //  that the map is killed while the chunk's inputs run one by one
    char *handler = zsys_sprintf (
        "--handler 'boom=exec:read x; echo \"$x\" >> %s/runs; case \"$x\" in "
        "\"item 5\") kill -9 $PPID; sleep 5;; "
        "\"item 6\"|\"item 7\") sleep 1;; esac; echo \"$x\"'",
        procs_dir ());
    s_start_worker (endpoint, 2, handler);
    char *input = procs_path ("input"), *first = procs_path ("first"),
         *second = procs_path ("second"), *errors = procs_path ("errors");
    procs_write_lines (input, 12, "item %zu");
    size_t bad[] = {5};
    char *command = zsys_sprintf (
        "%s map --connect %s --json --chunksize 4 --retries 0 --job %s/job "
        "boom < %s",
        procs_drover (), endpoint, procs_dir (), input);
    pid_t map = procs_spawn ("exec %s > %s 2> %s/first.log", command, first,
                             procs_dir ());
    //  Input 4 runs a second time: the chunk 4-7 crashed and is split
    size_t runs[12];
    int64_t deadline = zclock_mono () + 30000;
    do {
        usleep (10000); //  polling a file, with a deadline
        s_count_item_runs (runs, 12);
    } while (runs[4] < 2 && zclock_mono () < deadline);
    cr_assert_eq (runs[4], 2, "the chunk was not split");
    procs_kill_9 (map);
    //  The re-run runs the chunk again (its outcomes were not logged) and
    //  prints every input once
    int rc = procs_run (60000, "%s > %s 2> %s", command, second, errors);
    char *text = procs_read (errors, NULL);
    cr_assert_eq (rc, 1, "%s", text);
    s_check_json_results (second, 12, bad, 1, "DROVER_ECRASHED");
    free (text);
    //  Then the split chunk's outcomes are in the log: a third run runs
    //  nothing and prints the same (once the killed run's tasks are over)
    size_t again[12];
    procs_wait_idle (endpoint);
    s_count_item_runs (runs, 12);
    rc = procs_run (60000, "%s > %s 2> %s", command, second, errors);
    cr_assert_eq (rc, 1);
    s_check_json_results (second, 12, bad, 1, "DROVER_ECRASHED");
    s_count_item_runs (again, 12);
    cr_assert_eq (memcmp (runs, again, sizeof runs), 0, "an input ran again");
    free (command);
    free (input);
    free (first);
    free (second);
    free (errors);
    free (handler);
    free (endpoint);
}

Test (e2e, a_slow_task_does_not_delay_what_an_idle_child_can_run)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2, NULL);
    char *output = procs_path ("output");
    //  One 4 s task first, then 20 quick ones; completion order output
    int64_t start = zclock_mono ();
    pid_t map =
        procs_spawn ("(echo 4000; for i in $(seq 20); do echo 1; done) | "
                     "%s map --connect %s --json sleep > %s",
                     procs_drover (), endpoint, output);
    //  The 20 quick tasks finish on the idle child long before the slow one
    int64_t deadline = start + 3500;
    size_t lines = 0;
    while (lines < 20 && zclock_mono () < deadline) {
        struct stat info;
        if (stat (output, &info) == 0 && info.st_size > 0) {
            char *text = procs_read (output, NULL);
            lines = 0;
            for (char *p = text; (p = strchr (p, '\n')); p++)
                lines++;
            free (text);
        }
        if (lines < 20)
            usleep (20000); //  polling a file with a deadline
    }
    cr_assert_eq (lines, 20, "only %zu quick tasks done after 3.5 s", lines);
    cr_assert_eq (procs_wait (map, 20000), 0);
    char *text = procs_read (output, NULL);
    char *last = strrchr (text, '{');
    cr_assert (strstr (last, "4000"), "the slow task finished last: %s", last);
    free (text);
    free (output);
    free (endpoint);
}

Test (e2e, a_node_started_before_the_broker_connects_when_it_comes_up)
{
    int port = procs_free_port ();
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    s_start_worker (endpoint, 1, NULL);
    //  Let the node try for a while with nobody there
    pid_t probe = procs_spawn ("sleep 1");
    procs_wait (probe, 5000);
    procs_spawn ("exec %s broker --listen %s --sink-listen tcp://127.0.0.1:%d "
                 "> %s/broker.log 2>&1",
                 procs_drover (), endpoint, procs_free_port (), procs_dir ());
    char *input = procs_path ("input"), *output = procs_path ("output");
    procs_write_lines (input, 10, "late %zu");
    int rc = procs_run (30000, "%s map --connect %s --ordered echo < %s > %s",
                        procs_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *expected = procs_read (input, NULL), *got = procs_read (output, NULL);
    cr_assert_str_eq (got, expected);
    free (expected);
    free (got);
    free (input);
    free (output);
    free (endpoint);
}

Test (e2e, a_1_mib_payload_round_trips)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 1, NULL);
    char *input = procs_path ("big"), *output = procs_path ("output"),
         *id_file = procs_path ("id");
    FILE *file = fopen (input, "wb");
    for (size_t i = 0; i < (1u << 20); i++)
        fputc ("abcdefghijklmnopqrstuvwxyz0123456789"[i * 7919 % 36], file);
    fclose (file);
    int rc = procs_run (30000, "%s submit --connect %s echo - < %s > %s",
                        procs_drover (), endpoint, input, id_file);
    cr_assert_eq (rc, 0);
    char *id = procs_read (id_file, NULL);
    *strchrnul (id, '\n') = 0;
    cr_assert (strlen (id) > 0);
    rc = procs_run (30000, "%s result --connect %s --timeout 20 %s > %s",
                    procs_drover (), endpoint, id, output);
    cr_assert_eq (rc, 0);
    size_t sent_size, got_size;
    char *sent = procs_read (input, &sent_size),
         *got = procs_read (output, &got_size);
    cr_assert (got_size == sent_size || got_size == sent_size + 1,
               "sent %zu octets, got %zu", sent_size, got_size);
    cr_assert (memcmp (sent, got, sent_size) == 0);
    free (sent);
    free (got);
    free (id);
    free (input);
    free (output);
    free (id_file);
    free (endpoint);
}

Test (e2e, bad_command_lines_say_what_to_do_and_exit_2)
{
    const char *cases[] = {
        "",                          //  no command
        "frobnicate",                //  unknown command
        "broker --bogus",            //  unknown option
        "broker --heartbeat-ms abc", //  not a number
        "worker -j 0",               //  out of range
        "worker --handler nonsense", //  bad handler spec
        "map",                       //  missing handler
        "map --window",              //  missing value
        "map --chunksize 0 echo",    //  out of range
        "worker --lookahead some",   //  neither a number nor auto
        "submit",                    //  missing handler
        "wait",                      //  missing ids
        "status notanumber",         //  bad id
    };
    char *errors = procs_path ("errors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = procs_run (10000, "%s %s < /dev/null > /dev/null 2> %s",
                            procs_drover (), cases[i], errors);
        cr_assert_eq (rc, 2, "'drover %s' exited %d", cases[i], rc);
        char *text = procs_read (errors, NULL);
        char *newline = strchr (text, '\n');
        cr_assert (newline && newline[1] == 0,
                   "'drover %s': one line expected, got: %s", cases[i], text);
        free (text);
    }
    const char *commands[] = {"broker", "sink",   "worker", "map",    "submit",
                              "wait",   "result", "status", "cancel", "stats"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        int rc = procs_run (10000, "%s %s --help | grep -q usage",
                            procs_drover (), commands[i]);
        cr_assert_eq (rc, 0, "'drover %s --help'", commands[i]);
    }
    free (errors);
}

//  Counts the processes of local clusters (a broker run as a process, and
//  the worker, on ipc; drover map runs its broker as a thread).
static int
s_local_processes (void)
{
    char *command = zsys_sprintf (
        "pgrep -f '%s (broker|worker) .*ipc://' | wc -l", procs_drover ());
    FILE *pipe = popen (command, "r");
    free (command);
    int count = -1;
    cr_assert (fscanf (pipe, "%d", &count) == 1);
    pclose (pipe);
    return count;
}

Test (e2e, ctrl_c_tears_the_local_cluster_down)
{
    char *input = procs_path ("input");
    procs_write_lines (input, 4, "3000");
    pid_t map =
        procs_spawn ("DROVER_CONNECT= exec %s map -j 2 sleep < %s > /dev/null",
                     procs_drover (), input);
    //  Wait until the cluster runs, then press Ctrl-C
    int64_t deadline = zclock_mono () + 10000;
    while (s_local_processes () < 1 && zclock_mono () < deadline)
        usleep (20000); //  polling for processes, with a deadline
    cr_assert_geq (s_local_processes (), 1, "the local worker never started");
    kill (map, SIGINT);
    int rc = procs_wait (map, 10000);
    cr_assert_eq (rc, 130, "drover map exited %d after Ctrl-C", rc);
    deadline = zclock_mono () + 5000;
    while (s_local_processes () > 0 && zclock_mono () < deadline)
        usleep (20000);
    cr_assert_eq (s_local_processes (), 0, "processes outlived drover map");
    free (input);
}

//  Runs a drover command and returns its stdout (caller frees).
static char *
s_output (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *command = zsys_vprintf (format, args);
    va_end (args);
    char *path = procs_path ("command.out");
    int rc = procs_run (30000, "%s > %s", command, path);
    cr_assert_eq (rc, 0, "'%s' exited %d", command, rc);
    char *text = procs_read (path, NULL);
    free (path);
    free (command);
    return text;
}

Test (e2e, dead_letters_keep_their_history_and_can_be_retried)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2, NULL);
    char *input = procs_path ("input"), *output = procs_path ("output");
    procs_write_lines (input, 2, "doomed %zu");
    int rc =
        procs_run (30000,
                   "%s map --connect %s --retries 1 --retry-delay-ms 20 fail "
                   "< %s > %s 2>/dev/null",
                   procs_drover (), endpoint, input, output);
    cr_assert_eq (rc, 1);
    char *list = s_output ("%s dead list --connect %s --json", procs_drover (),
                           endpoint);
    //  Two dead letters, each with both attempts and the handler's message
    cr_assert (strstr (list, "\"error\":\"doomed 0\""), "%s", list);
    cr_assert (strstr (list, "\"error\":\"doomed 1\""), "%s", list);
    size_t attempts = 0;
    for (char *p = list; (p = strstr (p, "\"attempt\":")); p++)
        attempts++;
    cr_assert_eq (attempts, 4, "2 tasks x 2 attempts: %s", list);
    free (list);
    char *ids = s_output ("%s dead retry --connect %s --all", procs_drover (),
                          endpoint);
    size_t lines = 0;
    for (char *p = ids; (p = strchr (p, '\n')); p++)
        lines++;
    cr_assert_eq (lines, 2, "two new task ids: %s", ids);
    free (ids);
    free (input);
    free (output);
    free (endpoint);
}

Test (e2e, cancel_stops_a_running_task_and_reports_it_cancelled)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 1,
                    "--kill-grace-ms 300 --handler 'hang=exec:read x; "
                    "echo $PPID > \"$x\"; sleep 30'");
    char *pid_file = procs_path ("pid");
    char *id = s_output ("echo %s | %s submit --connect %s hang -", pid_file,
                         procs_drover (), endpoint);
    *strchrnul (id, '\n') = 0;
    //  Wait for the task to run: its child wrote its pid
    int64_t deadline = zclock_mono () + 10000;
    struct stat info;
    while ((stat (pid_file, &info) || info.st_size == 0)
           && zclock_mono () < deadline)
        usleep (10000); //  polling a file, with a deadline
    char *text = procs_read (pid_file, NULL);
    pid_t child = (pid_t)atoi (text);
    free (text);
    cr_assert_gt (child, 0);
    int64_t start = zclock_mono ();
    char *state =
        s_output ("%s cancel --connect %s %s", procs_drover (), endpoint, id);
    free (state);
    //  The child's process group is stopped (SIGTERM kills sleep at once)
    deadline = zclock_mono () + 5000;
    while (kill (-child, 0) == 0 && zclock_mono () < deadline)
        usleep (10000); //  polling for the process group, with a deadline
    cr_assert_neq (kill (-child, 0), 0, "the cancelled task still runs");
    int64_t took = zclock_mono () - start;
    int rc = procs_run (10000, "%s wait --connect %s --timeout 5 %s 2> %s",
                        procs_drover (), endpoint, id, pid_file);
    cr_assert_eq (rc, 1, "a cancelled task is not a success");
    text = procs_read (pid_file, NULL);
    cr_assert (strstr (text, "CANCELLED"), "%s", text);
    free (text);
    fprintf (stderr,
             "e2e: cancel of a running task: its process group gone "
             "after %lld ms\n",
             (long long)took);
    free (id);
    free (pid_file);
    free (endpoint);
}

Test (e2e, sigterm_stops_the_broker_and_the_sink_cleanly)
{
    int port = procs_free_port ();
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    pid_t broker =
        procs_spawn ("exec %s broker --no-sink --listen %s > %s/b.log "
                     "2>&1",
                     procs_drover (), endpoint, procs_dir ());
    pid_t sink = procs_spawn (
        "exec %s sink --listen tcp://127.0.0.1:%d --broker "
        "%s > %s/s.log 2>&1",
        procs_drover (), procs_free_port (), endpoint, procs_dir ());
    //  Both serve: a map through them completes
    s_start_worker (endpoint, 1, NULL);
    char *input = procs_path ("input"), *output = procs_path ("output");
    procs_write_lines (input, 5, "x %zu");
    cr_assert_eq (procs_run (30000, "%s map --connect %s echo < %s > %s",
                             procs_drover (), endpoint, input, output),
                  0);
    kill (sink, SIGTERM);
    kill (broker, SIGTERM);
    cr_assert_eq (procs_wait (sink, 5000), 0, "the sink's exit on SIGTERM");
    cr_assert_eq (procs_wait (broker, 5000), 0, "the broker's exit on SIGTERM");
    free (input);
    free (output);
    free (endpoint);
}
