/*  test_jobs.c - resumable map jobs (drover map --job DIR): maps killed
    with SIGKILL halfway and run again, complete jobs run again, jobs run
    again with another input or handler, and job logs with a torn tail.

    The tasks run an exec handler that appends its input to a record file
    before it answers, so a test can count how often each input ran. The
    binary comes from $DROVER (tests/meson.build).
*/
#include "drover_job.h"
#include "procs.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define INPUTS 400 //  inputs of the killed maps
#define WINDOW 16  //  their window: at most this many in flight at the kill

//  Appends the input to rec, then echoes it; a little slow, so that a map
//  can be killed halfway
#define REC_HANDLER                                                            \
    "'rec=exec:read x; echo \"$x\" >> %s/rec; sleep 0.01; echo \"$x\"'"

static void
s_setup (void)
{
    procs_setup ("jobs");
}

TestSuite (jobs, .init = s_setup, .fini = procs_teardown, .timeout = 120);

//  --------------------------------------------------------------------------
//  Helpers

static pid_t s_broker;  //  the broker s_start_cluster started
static int s_sink_port; //  its sink's port

//  Starts a broker (no durability) at endpoint.
static void
s_start_broker (const char *endpoint)
{
    s_broker =
        procs_spawn ("exec %s broker --listen %s --sink-listen "
                     "tcp://127.0.0.1:%d --heartbeat-ms 200 >> "
                     "%s/broker.log 2>&1",
                     procs_drover (), endpoint, s_sink_port, procs_dir ());
}

//  Starts a broker and a worker with the rec handler; returns the
//  broker's endpoint (caller frees).
static char *
s_start_cluster (void)
{
    int port = procs_free_port ();
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    s_sink_port = procs_free_port ();
    s_start_broker (endpoint);
    char *handler = zsys_sprintf (REC_HANDLER, procs_dir ());
    procs_spawn ("exec %s worker --connect %s -j 4 --handler %s >> "
                 "%s/worker.log 2>&1",
                 procs_drover (), endpoint, handler, procs_dir ());
    free (handler);
    return endpoint;
}

//  Complete lines in a file (a killed writer may leave half a line).
static size_t
s_lines (const char *path)
{
    char *text = procs_read (path, NULL);
    size_t count = 0;
    for (char *c = text; *c; c++)
        count += *c == '\n';
    free (text);
    return count;
}

//  Waits until a file has at least count lines; false at the deadline.
static bool
s_wait_lines (const char *path, size_t count, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        if (s_lines (path) >= count)
            return true;
        usleep (5000); //  polling a file, with a deadline
    }
    return false;
}

//  Counts the executions of each input "job N" in the record: runs[N].
//  Returns the total.
static size_t
s_count_runs (size_t *runs, size_t count)
{
    memset (runs, 0, count * sizeof (size_t));
    char *path = procs_path ("rec");
    char *text = procs_read (path, NULL);
    size_t total = 0;
    for (char *line = strtok (text, "\n"); line; line = strtok (NULL, "\n")) {
        size_t n;
        cr_assert_eq (sscanf (line, "job %zu", &n), 1, "record: '%s'", line);
        cr_assert_lt (n, count);
        runs[n]++;
        total++;
    }
    free (text);
    free (path);
    return total;
}

//  Asserts that every complete line of a killed run's output ran once.
static size_t
s_assert_printed_ran_once (const char *first_output, const size_t *runs)
{
    char *text = procs_read (first_output, NULL);
    char *end = strrchr (text, '\n');
    if (end)
        end[1] = 0;
    else
        *text = 0;
    size_t printed = 0;
    for (char *line = strtok (text, "\n"); line; line = strtok (NULL, "\n")) {
        size_t n;
        cr_assert_eq (sscanf (line, "job %zu", &n), 1);
        cr_assert_lt (n, INPUTS);
        cr_assert_eq (runs[n], 1,
                      "input %zu, printed before the kill, ran %zu times", n,
                      runs[n]);
        printed++;
    }
    free (text);
    return printed;
}

//  Runs a map in the background, kills it with SIGKILL once it printed
//  half of the inputs (and the broker too, restarted without the tasks it
//  held, when restart_broker), and runs it again to the end: the second
//  run must print every input exactly once, in order. The map's tasks
//  hold chunk inputs each (1: one).
static void
s_kill_and_resume (const char *map_command, const char *endpoint,
                   bool restart_broker, size_t chunk)
{
    char *input = procs_path ("input"), *first = procs_path ("first"),
         *second = procs_path ("second"), *errors = procs_path ("errors");
    procs_write_lines (input, INPUTS, "job %zu");
    pid_t map = procs_spawn ("exec %s < %s > %s 2> %s/first.log", map_command,
                             input, first, procs_dir ());
    cr_assert (s_wait_lines (first, INPUTS / 2, 60000),
               "the first run printed %zu lines", s_lines (first));
    procs_kill_9 (map);
    if (restart_broker) {
        procs_kill_9 (s_broker);
        s_start_broker (endpoint);
    }
    size_t printed_at_kill = s_lines (first);
    cr_assert_lt (printed_at_kill, INPUTS, "killed too late to test resume");

    int rc = procs_run (60000, "exec %s < %s > %s 2> %s", map_command, input,
                        second, errors);
    char *stderr_text = procs_read (errors, NULL);
    cr_assert_eq (rc, 0, "the re-run exited %d: %s", rc, stderr_text);
    char *expected = procs_read (input, NULL), *got = procs_read (second, NULL);
    cr_assert (strcmp (expected, got) == 0,
               "the re-run did not print every input once, in order");
    cr_assert (strstr (stderr_text, "came from the job log"), "%s",
               stderr_text);
    fprintf (stderr, "jobs: %s\n", stderr_text);

    if (endpoint)
        procs_wait_idle (endpoint);
    size_t runs[INPUTS];
    size_t total = s_count_runs (runs, INPUTS);
    for (size_t i = 0; i < INPUTS; i++)
        cr_assert_geq (runs[i], 1, "input %zu never ran", i);
    size_t printed = s_assert_printed_ran_once (first, runs);
    cr_assert_geq (printed, INPUTS / 2);
    //  Only tasks in flight at the kill may have run twice
    cr_assert_leq (total, INPUTS + WINDOW * chunk,
                   "%zu executions for %d inputs with a window of %d tasks "
                   "of %zu",
                   total, INPUTS, WINDOW, chunk);
    fprintf (stderr,
             "jobs: killed after %zu of %d printed; %zu executions in all\n",
             printed_at_kill, INPUTS, total);
    free (stderr_text);
    free (expected);
    free (got);
    free (input);
    free (first);
    free (second);
    free (errors);
}

//  The newest segment file of a job log (caller frees).
static char *
s_newest_segment (const char *dir)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle);
    char *newest = NULL;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t size = strlen (entry->d_name);
        if (size < 5 || strcmp (entry->d_name + size - 4, ".drj"))
            continue;
        if (!newest || strcmp (entry->d_name, newest) > 0) {
            free (newest);
            newest = strdup (entry->d_name);
        }
    }
    closedir (handle);
    cr_assert_not_null (newest, "no segment in %s", dir);
    char *path = zsys_sprintf ("%s/%s", dir, newest);
    free (newest);
    return path;
}

//  --------------------------------------------------------------------------
//  Tests

Test (jobs, killed_map_resumes_with_every_result_once_and_no_rerun)
{
    char *endpoint = s_start_cluster ();
    char *command =
        zsys_sprintf ("%s map --connect %s --ordered -w %d --job %s/job rec",
                      procs_drover (), endpoint, WINDOW, procs_dir ());
    s_kill_and_resume (command, endpoint, false, 1);
    free (command);
    free (endpoint);
}

Test (jobs, map_and_broker_killed_resume_on_the_restarted_broker)
{
    char *endpoint = s_start_cluster ();
    char *command =
        zsys_sprintf ("%s map --connect %s --ordered -w %d --job %s/job rec",
                      procs_drover (), endpoint, WINDOW, procs_dir ());
    s_kill_and_resume (command, endpoint, true, 1);
    free (command);
    free (endpoint);
}

Test (jobs, killed_local_mode_map_resumes_on_a_new_cluster)
{
    char *handler = zsys_sprintf (REC_HANDLER, procs_dir ());
    char *command =
        zsys_sprintf ("env DROVER_CONNECT= %s map -j 2 --ordered "
                      "-w %d --job %s/job --handler %s rec",
                      procs_drover (), WINDOW, procs_dir (), handler);
    s_kill_and_resume (command, NULL, false, 1);
    free (command);
    free (handler);
}

Test (jobs, killed_chunked_map_resumes_with_every_result_once)
{
    char *endpoint = s_start_cluster ();
    char *command =
        zsys_sprintf ("%s map --connect %s --ordered -w %d "
                      "--chunksize 5 --job %s/job rec",
                      procs_drover (), endpoint, WINDOW, procs_dir ());
    s_kill_and_resume (command, endpoint, false, 5);
    free (command);
    free (endpoint);
}

Test (jobs, complete_job_run_again_runs_nothing_and_prints_the_same)
{
    char *endpoint = s_start_cluster ();
    char *input = procs_path ("input"), *first = procs_path ("first"),
         *second = procs_path ("second"), *errors = procs_path ("errors"),
         *rec = procs_path ("rec");
    procs_write_lines (input, 60, "job %zu");
    int rc = procs_run (60000,
                        "%s map --connect %s --job %s/job --json rec < %s > %s",
                        procs_drover (), endpoint, procs_dir (), input, first);
    cr_assert_eq (rc, 0);
    procs_wait_idle (endpoint);
    size_t runs[INPUTS];
    cr_assert_eq (s_count_runs (runs, INPUTS), 60);
    rc = procs_run (60000,
                    "%s map --connect %s --job %s/job --json rec < %s > %s "
                    "2> %s",
                    procs_drover (), endpoint, procs_dir (), input, second,
                    errors);
    char *stderr_text = procs_read (errors, NULL);
    cr_assert_eq (rc, 0, "%s", stderr_text);
    cr_assert (strstr (stderr_text, "complete: all 60 results came from the "
                                    "job log; nothing was run"),
               "%s", stderr_text);
    procs_wait_idle (endpoint);
    cr_assert_eq (s_count_runs (runs, INPUTS), 60, "a task ran again");
    //  Unordered, the JSON lines come in another order: compare them sorted
    cr_assert_eq (procs_run (10000,
                             "sort %s > %s.sorted && sort %s > %s.sorted "
                             "&& cmp -s %s.sorted %s.sorted",
                             first, first, second, second, first, second),
                  0, "the re-run printed other results");
    cr_assert_eq (s_lines (second), 60);
    free (stderr_text);
    free (input);
    free (first);
    free (second);
    free (errors);
    free (rec);
    free (endpoint);
}

//  --retry-failed: the re-run runs again what failed and takes the rest
//  from the log, one input per task or in chunks (a chunk with a failed
//  input, which the log holds as one result, runs again whole)
Test (jobs, retry_failed_runs_the_failures_again_in_chunks_too)
{
    const char *chunksizes[] = {"1", "4"};
    //  Of inputs 0-9, 3 and 7 fail until the file ok exists: chunks of 4
    //  are 0-3, 4-7 and 8-9, so only 8 and 9 come from the log
    const char *from_log[] = {"8 of 10 results came from the job log",
                              "2 of 10 results came from the job log"};
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors"), *ok = procs_path ("ok");
    procs_write_lines (input, 10, "%zu");
    for (size_t i = 0; i < 2; i++) {
        unlink (ok);
        const char *map =
            "DROVER_CONNECT= %s map -j 2 --ordered --chunksize %s "
            "--handler 'f=exec:read x; if [ ! -e %s ]; then "
            "case $x in *3|*7) echo no >&2; exit 1;; esac; fi; "
            "echo ok:$x' --job %s/job-%s %s f < %s > %s 2> %s";
        int rc =
            procs_run (60000, map, procs_drover (), chunksizes[i], ok,
                       procs_dir (), chunksizes[i], "", input, output, errors);
        cr_assert_eq (rc, 1, "chunksize %s: the failures make exit 1",
                      chunksizes[i]);
        cr_assert_eq (s_lines (output), 10);
        procs_write_lines (ok, 0, "");
        rc = procs_run (60000, map, procs_drover (), chunksizes[i], ok,
                        procs_dir (), chunksizes[i], "--retry-failed", input,
                        output, errors);
        char *said = procs_read (errors, NULL);
        cr_assert_eq (rc, 0, "chunksize %s: %s", chunksizes[i], said);
        cr_assert (strstr (said, from_log[i]), "chunksize %s: %s",
                   chunksizes[i], said);
        free (said);
        char *got = procs_read (output, NULL);
        cr_assert_str_eq (got,
                          "ok:0\nok:1\nok:2\nok:3\nok:4\nok:5\nok:6\nok:7\n"
                          "ok:8\nok:9\n",
                          "chunksize %s", chunksizes[i]);
        free (got);
    }
    free (input);
    free (output);
    free (errors);
    free (ok);
}

Test (jobs, rerun_with_another_input_or_handler_is_refused)
{
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors");
    procs_write_lines (input, 50, "line %zu");
    int rc = procs_run (60000,
                        "DROVER_CONNECT= %s map -j 2 --ordered --job %s/job "
                        "echo < %s > %s",
                        procs_drover (), procs_dir (), input, output);
    cr_assert_eq (rc, 0);

    //  Line 8 changed
    rc = procs_run (60000,
                    "sed 's/^line 7$/line seven/' %s | DROVER_CONNECT= %s map "
                    "-j 2 --ordered --job %s/job echo > %s 2> %s",
                    input, procs_drover (), procs_dir (), output, errors);
    char *text = procs_read (errors, NULL);
    cr_assert_eq (rc, 2, "exit %d: %s", rc, text);
    cr_assert (strstr (text, "input line 8 differs from the job's; use a new "
                             "--job directory"),
               "%s", text);
    free (text);

    //  Fewer lines
    rc = procs_run (60000,
                    "head -n 20 %s | DROVER_CONNECT= %s map -j 2 --ordered "
                    "--job %s/job echo > %s 2> %s",
                    input, procs_drover (), procs_dir (), output, errors);
    text = procs_read (errors, NULL);
    cr_assert_eq (rc, 2, "exit %d: %s", rc, text);
    cr_assert (strstr (text, "the input has 20 lines, but the job's had at "
                             "least 50"),
               "%s", text);
    free (text);

    //  Another handler, and another ordering: refused before anything runs
    rc = procs_run (60000,
                    "DROVER_CONNECT= %s map -j 2 --ordered --job %s/job "
                    "sha256 < %s > %s 2> %s",
                    procs_drover (), procs_dir (), input, output, errors);
    text = procs_read (errors, NULL);
    cr_assert_eq (rc, 2, "exit %d: %s", rc, text);
    cr_assert (strstr (text, "is for handler 'echo'")
                   && strstr (text, "'sha256'")
                   && strstr (text, "use a new --job directory"),
               "%s", text);
    free (text);
    rc = procs_run (60000,
                    "DROVER_CONNECT= %s map -j 2 --job %s/job echo < %s > %s "
                    "2> %s",
                    procs_drover (), procs_dir (), input, output, errors);
    text = procs_read (errors, NULL);
    cr_assert_eq (rc, 2, "exit %d: %s", rc, text);
    cr_assert (strstr (text, "unordered"), "%s", text);
    free (text);

    //  Another chunk size cuts the inputs into other tasks: refused; and
    //  automatic chunks cannot make a job
    rc = procs_run (60000,
                    "DROVER_CONNECT= %s map -j 2 --ordered --chunksize 3 --job "
                    "%s/job echo < %s > %s 2> %s",
                    procs_drover (), procs_dir (), input, output, errors);
    text = procs_read (errors, NULL);
    cr_assert_eq (rc, 2, "exit %d: %s", rc, text);
    cr_assert (strstr (text, "--chunksize 3")
                   && strstr (text, "one input per "
                                    "task"),
               "%s", text);
    free (text);
    rc = procs_run (60000,
                    "DROVER_CONNECT= %s map -j 2 --ordered --chunksize auto "
                    "--job %s/job echo < %s > %s 2> %s",
                    procs_drover (), procs_dir (), input, output, errors);
    text = procs_read (errors, NULL);
    cr_assert_eq (rc, 2, "exit %d: %s", rc, text);
    cr_assert (strstr (text, "--chunksize auto cannot go with --job"), "%s",
               text);
    free (text);

    //  The job itself is intact: the same command still resumes it
    rc = procs_run (60000,
                    "DROVER_CONNECT= %s map -j 2 --ordered --job %s/job "
                    "echo < %s > %s 2> %s",
                    procs_drover (), procs_dir (), input, output, errors);
    cr_assert_eq (rc, 0);
    char *expected = procs_read (input, NULL), *got = procs_read (output, NULL);
    cr_assert_str_eq (got, expected);
    free (expected);
    free (got);
    free (input);
    free (output);
    free (errors);
}

Test (jobs, job_log_with_a_torn_tail_resumes_with_a_warning)
{
    char *endpoint = s_start_cluster ();
    char *input = procs_path ("input"), *output = procs_path ("output"),
         *errors = procs_path ("errors"), *job = procs_path ("job");
    procs_write_lines (input, 100, "job %zu");
    int rc = procs_run (60000,
                        "%s map --connect %s --ordered --job %s rec < %s > %s",
                        procs_drover (), endpoint, job, input, output);
    cr_assert_eq (rc, 0);
    //  Cut the newest segment in the middle of its last record
    char *segment = s_newest_segment (job);
    struct stat info;
    cr_assert_eq (stat (segment, &info), 0);
    cr_assert_gt (info.st_size, 40);
    cr_assert_eq (truncate (segment, info.st_size - 7), 0);

    rc = procs_run (
        60000, "%s map --connect %s --ordered --job %s rec < %s > %s 2> %s",
        procs_drover (), endpoint, job, input, output, errors);
    char *text = procs_read (errors, NULL);
    cr_assert_eq (rc, 0, "exit %d: %s", rc, text);
    cr_assert (strstr (text, "warning: the job log in"), "%s", text);
    char *expected = procs_read (input, NULL), *got = procs_read (output, NULL);
    cr_assert_str_eq (got, expected);
    //  Only the result that was cut off may have run again
    procs_wait_idle (endpoint);
    size_t runs[INPUTS];
    cr_assert_leq (s_count_runs (runs, INPUTS), 101);
    free (text);
    free (expected);
    free (got);
    free (segment);
    free (input);
    free (output);
    free (errors);
    free (job);
    free (endpoint);
}

//  The log itself: what is logged comes back whole after a reopen.
Test (jobs, job_log_gives_back_ids_and_results_after_a_reopen)
{
    char *dir = procs_path ("job");
    drover_task_options_t task = {.timeout_ms = 5000};
    drover_job_config_t config = {dir,   "echo", NULL,  true,
                                  false, false,  &task, 0};
    bool refused = true;
    char *error = NULL;
    drover_job_t *job = drover_job_open (&config, &refused, &error);
    cr_assert_not_null (job, "%s", error);
    cr_assert (drover_job_stats (job)->fresh);
    uint64_t indexes[] = {0, 1, 2, 5}, ids[] = {101, 102, 103, 106};
    uint64_t digests[4];
    for (int i = 0; i < 4; i++)
        digests[i] = drover_job_digest (&i, sizeof i);
    cr_assert_eq (drover_job_log_submitted (job, indexes, ids, digests, 4), 0);
    drover_result_t done = {.id = 102,
                            .code = 0,
                            .attempt = 2,
                            .node = "host:1",
                            .elapsed_us = 7,
                            .payload = "out",
                            .payload_size = 3};
    drover_result_t failed = {
        .id = 106, .code = DROVER_EFAILED, .attempt = 1, .reason = "no"};
    uint64_t seq = 0;
    cr_assert_eq (drover_job_log_result (job, &done, &seq), 0);
    cr_assert_eq (drover_job_log_result (job, &failed, &seq), 0);
    cr_assert_eq (drover_job_sync_to (job, seq), 0);
    drover_job_destroy (&job);

    //  Another handler is refused
    config.handler = "sha256";
    cr_assert_null (drover_job_open (&config, &refused, &error));
    cr_assert (refused);
    cr_assert (strstr (error, "use a new --job directory"), "%s", error);
    free (error);

    config.handler = "echo";
    job = drover_job_open (&config, &refused, &error);
    cr_assert_not_null (job, "%s", error);
    const drover_job_stats_t *stats = drover_job_stats (job);
    cr_assert (!stats->fresh);
    cr_assert_eq (stats->known, 6);
    cr_assert_eq (stats->results, 2);
    cr_assert_eq (stats->failed, 1);
    cr_assert_eq (stats->pending, 2);
    uint64_t id;
    drover_result_t *result;
    int zero = 0, one = 1, three = 3;
    cr_assert_eq (
        drover_job_lookup (job, 0, drover_job_digest (&zero, 4), &id, &result),
        DROVER_JOB_PENDING);
    cr_assert_eq (id, 101);
    cr_assert_eq (
        drover_job_lookup (job, 1, drover_job_digest (&one, 4), &id, &result),
        DROVER_JOB_DONE);
    cr_assert_eq (id, 102);
    cr_assert_eq (result->attempt, 2);
    cr_assert_str_eq (result->node, "host:1");
    cr_assert_eq (result->elapsed_us, 7);
    cr_assert_eq (result->payload_size, 3);
    cr_assert (memcmp (result->payload, "out", 3) == 0);
    drover_result_destroy (&result);
    cr_assert_eq (drover_job_lookup (job, 3, 42, &id, &result), DROVER_JOB_NEW);
    cr_assert_eq (
        drover_job_lookup (job, 5, drover_job_digest (&three, 4), &id, &result),
        DROVER_JOB_DONE);
    cr_assert_eq (result->code, DROVER_EFAILED);
    cr_assert_str_eq (result->reason, "no");
    cr_assert_null (result->node);
    drover_result_destroy (&result);
    //  Input 2 is not what the log says
    cr_assert_eq (
        drover_job_lookup (job, 2, drover_job_digest (&one, 4), &id, &result),
        DROVER_EINVAL);
    cr_assert (drover_job_refused (job));
    cr_assert (strstr (drover_job_error (job), "input line 3 differs"));
    cr_assert_eq (drover_job_check_end (job, 5), DROVER_EINVAL);
    cr_assert_eq (drover_job_check_end (job, 6), 0);
    drover_job_destroy (&job);

    //  With retry_failed, the failure is not a result
    config.retry_failed = true;
    job = drover_job_open (&config, &refused, &error);
    cr_assert_not_null (job, "%s", error);
    cr_assert_eq (drover_job_stats (job)->results, 1);
    cr_assert_eq (
        drover_job_lookup (job, 5, drover_job_digest (&three, 4), &id, &result),
        DROVER_JOB_NEW);
    drover_job_destroy (&job);
    free (dir);
}
